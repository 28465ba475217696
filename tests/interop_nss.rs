//! Interoperability with NSS (what Thunderbird uses): messages made by `cmsutil -E` are
//! decrypted by `p11smime decrypt` with keys on a SoftHSM2 token.
//!
//! `cmsutil -E` always writes BER with indefinite lengths and a constructed (chunked)
//! encryptedContent, uses issuerAndSerialNumber and PKCS#1 v1.5 key transport, and for an
//! RSA-2048 recipient without a stored S/MIME profile picks AES-128-CBC. It has no cipher
//! option: AES-256 needs a profile written straight into the cert DB (see `aes256_profile`).
//!
//! The NSS tools come from `libnss3-tools` (`scripts/install-deps`); a missing tool fails the
//! test instead of skipping it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use common::nss::NssDb;
use common::*;

use std::path::{Path, PathBuf};
use std::process::Command;

/// DER of the content-encryption algorithm OIDs, to check what the peer actually produced.
const OID_AES128_CBC: &[u8] = &[
    0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x01, 0x02,
];
const OID_AES256_CBC: &[u8] = &[
    0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x01, 0x2A,
];
/// SMIMECapabilities: SEQUENCE { SEQUENCE { aes256-CBC } }.
const CAPS_AES256: &str = "300d300b060960864801650304012a";

/// A fresh NSS cert DB (no password) under the token's scratch dir, holding `certs` as
/// (nickname, fixture) with no trust flags. `email_cert` imports with `certutil -E` (which also
/// creates the S/MIME profile object) instead of `-A`.
fn nss_db(token: &TestToken, name: &str, certs: &[(&str, &str)], email_cert: bool) -> NssDb {
    let db = NssDb::create(&token.path(name), None);
    for (nick, file) in certs {
        run_ok(
            db.certutil(if email_cert { "-E" } else { "-A" })
                .args(["-n", nick, "-t", ",,", "-i"])
                .arg(fixture(file)),
        );
    }
    db
}

/// `cmsutil -E -r RECIPIENTS` of `plaintext`; returns the message file.
fn cmsutil_encrypt(db: &NssDb, recipients: &str, plaintext: &[u8], name: &str) -> PathBuf {
    let dir = db.dir.parent().unwrap();
    let input = dir.join(format!("{name}.in"));
    let output = dir.join(format!("{name}.p7m"));
    std::fs::write(&input, plaintext).unwrap();
    run_ok(
        db.cmsutil("-E")
            .args(["-r", recipients])
            .arg("-i")
            .arg(&input)
            .arg("-o")
            .arg(&output),
    );
    let msg = std::fs::read(&output).unwrap();
    // What makes NSS output worth testing: BER, indefinite length from the outer SEQUENCE on.
    assert_eq!(
        msg.get(..2),
        Some(&[0x30, 0x80][..]),
        "cmsutil output is not indefinite-length BER"
    );
    output
}

/// The number of OCTET STRING chunks in the constructed encryptedContent, from
/// `openssl asn1parse` (ContentInfo d0 > [0] d1 > EnvelopedData d2 > EncryptedContentInfo d3 >
/// [0] d4 constructed, indefinite > OCTET STRING chunks d5).
fn encrypted_content_chunks(msg: &Path) -> usize {
    let out = run_ok(
        Command::new("openssl")
            .args(["asn1parse", "-inform", "DER", "-in"])
            .arg(msg),
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let mut lines = text.lines();
    assert!(
        lines
            .by_ref()
            .any(|l| l.contains("d=4") && l.contains("l=inf") && l.contains("cont [ 0 ]")),
        "no constructed indefinite-length encryptedContent in {}",
        msg.display()
    );
    lines
        .take_while(|l| l.contains("d=5"))
        .filter(|l| l.contains("prim: OCTET STRING"))
        .count()
}

/// Writes an S/MIME profile (SMIMECapabilities `caps_hex`) for `email` straight into the
/// SQLite cert DB. NSS 3.87 stores the profile's CKA_NSS_EMAIL with a trailing NUL but looks it
/// up without one, so profiles saved by NSS itself are never found; this fixes the one object
/// `certutil -E` created. Fails the test unless exactly one object was updated.
fn aes256_profile(db: &NssDb, email: &str, caps_hex: &str) {
    let python = require("python3", "python3");
    const SCRIPT: &str = r#"
import sqlite3, sys
db, email, caps = sys.argv[1:]
con = sqlite3.connect(db)
# a0=CKA_CLASS (CKO_NSS_SMIME=0xce534352), a11=CKA_VALUE, ace534352=CKA_NSS_EMAIL
n = con.execute("UPDATE nssPublic SET a11=?, ace534352=? WHERE a0=? AND ace534352 IN (?,?)",
    (bytes.fromhex(caps), email.encode(), bytes.fromhex('ce534352'),
     email.encode() + b'\0', email.encode())).rowcount
con.commit()
sys.exit(0 if n == 1 else 1)
"#;
    run_ok(
        Command::new(python)
            .arg("-c")
            .arg(SCRIPT)
            .arg(db.dir.join("cert9.db"))
            .arg(email)
            .arg(caps_hex),
    );
}

#[test]
fn nss_default_aes128_ber_chunked_decrypts() {
    let token = TestToken::new();
    let db = nss_db(&token, "nssdb", &[("alice", "alice-enc.pem")], false);
    let msg = cmsutil_encrypt(&db, "alice", SAMPLE, "sample");
    let der = std::fs::read(&msg).unwrap();
    assert!(
        contains(&der, OID_AES128_CBC),
        "NSS did not pick AES-128-CBC"
    );
    assert!(
        encrypted_content_chunks(&msg) >= 2,
        "NSS encryptedContent is not chunked"
    );
    assert_plaintext(&token.decrypt(&msg), SAMPLE, "NSS AES-128 to alice-enc");
}

#[test]
fn nss_large_content_decrypts_byte_exact() {
    let token = TestToken::new();
    // 200 KiB + 5: every byte value, and a partial last block.
    let content = varied_bytes(200 * 1024 + 5);
    let db = nss_db(&token, "nssdb", &[("alice", "alice-enc.pem")], false);
    let msg = cmsutil_encrypt(&db, "alice", &content, "large");
    // NSS encrypts its input in one update: one big chunk, then the final padded block.
    let chunks = encrypted_content_chunks(&msg);
    assert!(chunks >= 2, "expected several chunks, got {chunks}");
    assert_plaintext(&token.decrypt(&msg), &content, "NSS 200 KiB to alice-enc");
}

#[test]
fn nss_to_retired_expired_key_decrypts() {
    let token = TestToken::new();
    let db = nss_db(&token, "nssdb", &[("retired", "alice-retired.pem")], false);
    let msg = cmsutil_encrypt(&db, "retired", SAMPLE, "retired");
    assert_plaintext(
        &token.decrypt(&msg),
        SAMPLE,
        "NSS to the expired retired key (id 03)",
    );
}

#[test]
fn nss_two_recipients_bob_first_decrypts_with_alice() {
    let token = TestToken::new();
    let db = nss_db(
        &token,
        "nssdb",
        &[("bob", "bob-enc.pem"), ("alice", "alice-enc.pem")],
        false,
    );
    let msg = cmsutil_encrypt(&db, "bob,alice", SAMPLE, "two");
    assert_plaintext(&token.decrypt(&msg), SAMPLE, "NSS to bob + alice");
}

#[test]
fn nss_to_bob_only_fails_no_key() {
    let token = TestToken::new();
    let db = nss_db(&token, "nssdb", &[("bob", "bob-enc.pem")], false);
    let msg = cmsutil_encrypt(&db, "bob", SAMPLE, "bob");
    let out = token.decrypt(&msg);
    let stderr = assert_fails(&out, 4, "NSS to bob only");
    assert!(
        out.stdout.is_empty(),
        "NSS to bob only: stdout not empty: {:?}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(
        stderr.contains("not encrypted to any key on the token"),
        "NSS to bob only: unexpected message: {stderr}"
    );
}

#[test]
fn nss_aes256_via_smime_profile_decrypts() {
    let token = TestToken::new();
    let db = nss_db(&token, "nssdb", &[("alice", "alice-enc.pem")], true);
    aes256_profile(&db, "alice@example.test", CAPS_AES256);
    let msg = cmsutil_encrypt(&db, "alice@example.test", SAMPLE, "aes256");
    let der = std::fs::read(&msg).unwrap();
    assert!(
        contains(&der, OID_AES256_CBC),
        "the S/MIME profile workaround did not make NSS pick AES-256-CBC"
    );
    assert_plaintext(&token.decrypt(&msg), SAMPLE, "NSS AES-256 to alice-enc");
}
