//! Interoperability of `p11smime sign` with real verifiers: signatures made with alice's
//! signature key on a SoftHSM2 token (id 01, RSA, CKA_ALWAYS_AUTHENTICATE) are checked by
//! GnuPG's `gpgsm --verify` and by NSS's `cmsutil -D` (what Thunderbird uses), as clear-text
//! `multipart/signed` (detached), as a bare detached `.p7s` and as opaque signed-data, with
//! PKCS#1 v1.5 and RSA-PSS. Each positive check has a negative twin: the same check on a
//! message whose signed content was changed by one byte must not report a good signature.
//!
//! The content signed is a message with From/To/Subject and a UTF-8 body with LF line endings
//! and a line starting with "From ", so p11smime's transport-safe encoding (CRLF, 7-bit) is what
//! gets signed. The exact signed bytes are therefore taken from p11smime's own output: the first
//! part of the `multipart/signed` body, or the content gpgsm/cmsutil extract from the opaque
//! form.
//!
//! How the peers report (gpgsm 2.2.40, NSS 3.87):
//! * gpgsm with `--status-fd 1`: `[GNUPG:] GOODSIG <SHA-1 fpr> <subject>`, `VALIDSIG <fpr> ...
//!   <pubkey algo 1=RSA> <hash algo 8/9/10=SHA-256/384/512> ...`, `TRUST_FULLY`, exit 0; a bad
//!   digest or signature gives `BADSIG <fpr> ...` and exit 2. It verifies RSA-PSS too.
//! * `cmsutil -D` without `-h`: exit 0 and only the content on stdout when the signature is good
//!   and the signer chains to a CA trusted for e-mail; otherwise exit 1 and, on stderr,
//!   `signer 0 status = DigestMismatch|BadSignature|SigningCertNotTrusted`. With `-h 0` it prints
//!   `signer0.id="..."; signer0.status=GoodSignature;` but **exits 0 whatever the status**, so
//!   the tests check both the exit code (no `-h`) and the status text (`-h 0`).
//! * NSS trust: the CA needs the e-mail trust flag `C` (`-t ",C,"`); with `",,"` or `"C,,"`
//!   the signer is `SigningCertNotTrusted` (SEC_ERROR_UNTRUSTED_ISSUER).
//!
//! A missing peer fails the test with an install hint instead of skipping it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use common::gpgsm::{Gpgsm, sha1_fpr};
use common::mime::{altered, split_multipart_signed};
use common::nss::{NssDb, cmsutil_decode};
use common::*;

use std::path::{Path, PathBuf};
use std::process::Output;

/// The message signed: LF line endings, non-ASCII body, a body line starting with "From ".
const MESSAGE: &str = "From: Alice Tester <alice@example.test>\n\
                       To: Bob Other <bob@example.test>\n\
                       Subject: Signed on the card\n\
                       \n\
                       Grüße\n\
                       From the card\n";

/// DER of the rsassaPss OID (1.2.840.113549.1.1.10).
const OID_RSASSA_PSS: &[u8] = &[
    0x06, 0x09, 0x2A, 0x86, 0x48, 0x86, 0xF7, 0x0D, 0x01, 0x01, 0x0A,
];

/// Writes MESSAGE into the token's scratch dir and runs `p11smime sign` on it with `extra`
/// options; returns the output file.
fn sign(token: &TestToken, name: &str, extra: &[&str]) -> PathBuf {
    let input = token.path("message.eml");
    std::fs::write(&input, MESSAGE).unwrap();
    let output = token.path(name);
    let out = token
        .p11smime(&["sign", "--pin", "env:TEST_PIN"])
        .args(extra)
        .arg("-o")
        .arg(&output)
        .arg(&input)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "p11smime sign {extra:?} failed: exit {:?}, stderr: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
    output
}

/// The signed entity must be what p11smime promises: CRLF line endings only, 7-bit, and no
/// line starting with "From " (which mail transports mangle).
fn assert_transport_safe(entity: &[u8]) {
    assert!(entity.is_ascii(), "signed entity is not 7-bit");
    for (i, b) in entity.iter().enumerate() {
        if *b == b'\n' {
            assert!(i > 0 && entity[i - 1] == b'\r', "bare LF at {i}");
        }
        if *b == b'\r' {
            assert_eq!(entity.get(i + 1), Some(&b'\n'), "bare CR at {i}");
        }
    }
    let text = String::from_utf8_lossy(entity);
    assert!(
        !text.starts_with("From ") && !text.contains("\r\nFrom "),
        "a signed line starts with \"From \": {text:?}"
    );
    assert!(
        text.ends_with("\r\n"),
        "signed entity does not end with CRLF: {text:?}"
    );
}

/// A copy of a definite-length DER SignedData with the last byte of the signature value flipped.
/// Insists the signature value (RSA-2048: `04 82 01 00` + 256 bytes) is the last element.
fn with_flipped_signature(der: &[u8]) -> Vec<u8> {
    let n = der.len();
    assert!(
        n > 260 && der[n - 260..n - 256] == [0x04, 0x82, 0x01, 0x00],
        "the RSA signature value is not the last element of the SignedData"
    );
    let mut out = der.to_vec();
    out[n - 1] ^= 0x01;
    out
}

// ---------------------------------------------------------------------------------------------
// gpgsm: each GNUPGHOME holds only the test CA (trusted); the signer's certificate comes with
// the signature.

fn gpgsm_report(out: &Output) -> String {
    format!(
        "exit {:?}\nstatus:\n{}\nstderr:\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// gpgsm says: good signature by alice-sign, valid, fully trusted, made with `hash_algo`
/// (libgcrypt numbers: 8 = SHA-256, 9 = SHA-384, 10 = SHA-512); and exits 0.
fn assert_gpgsm_good(out: &Output, hash_algo: u32, what: &str) {
    let report = gpgsm_report(out);
    let status = String::from_utf8_lossy(&out.stdout);
    let fpr = sha1_fpr("alice-sign.pem");
    assert_eq!(out.status.code(), Some(0), "{what}: gpgsm failed: {report}");
    assert!(
        status.contains(&format!("[GNUPG:] GOODSIG {fpr} "))
            && status.contains("Alice Tester")
            && status.contains("alice@example.test"),
        "{what}: no GOODSIG for alice-sign ({fpr}): {report}"
    );
    let validsig = status
        .lines()
        .find(|l| l.starts_with(&format!("[GNUPG:] VALIDSIG {fpr} ")))
        .unwrap_or_else(|| panic!("{what}: no VALIDSIG for alice-sign: {report}"));
    // VALIDSIG <fpr> <date> <created> <expires> <version> <reserved> <pk algo> <hash algo> ...
    let fields: Vec<&str> = validsig.split_whitespace().collect();
    assert_eq!(
        (fields.get(8), fields.get(9)),
        (Some(&"1"), Some(&hash_algo.to_string().as_str())),
        "{what}: VALIDSIG is not RSA with hash algo {hash_algo}: {validsig}"
    );
    assert!(
        status.contains("[GNUPG:] TRUST_FULLY"),
        "{what}: signer not fully trusted: {report}"
    );
    assert!(
        !status.contains("BADSIG") && !status.contains("ERRSIG"),
        "{what}: {report}"
    );
}

/// gpgsm must not call it good: BADSIG, no GOODSIG, non-zero exit.
fn assert_gpgsm_bad(out: &Output, what: &str) {
    let report = gpgsm_report(out);
    let status = String::from_utf8_lossy(&out.stdout);
    assert!(
        !status.contains("GOODSIG") && !status.contains("VALIDSIG"),
        "{what}: gpgsm accepted an altered message: {report}"
    );
    assert!(
        status.contains(&format!("[GNUPG:] BADSIG {} ", sha1_fpr("alice-sign.pem"))),
        "{what}: no BADSIG: {report}"
    );
    assert_ne!(out.status.code(), Some(0), "{what}: {report}");
}

#[test]
fn gpgsm_verifies_multipart_signed_and_detached_der() {
    let token = TestToken::new();
    let gpg = Gpgsm::new(&[]);

    // The clear-text multipart/signed mail: its own first part against its own signature.
    let msg = std::fs::read(sign(&token, "signed.eml", &[])).unwrap();
    let (content, sig) = split_multipart_signed(&msg);
    assert_transport_safe(&content);
    let content_file = token.write("content.txt", &content);
    let sig_file = token.write("embedded.p7s", &sig);
    assert_gpgsm_good(
        &gpg.verify(&sig_file, Some(&content_file), None),
        8,
        "gpgsm: multipart/signed",
    );

    // `--outform der`: a bare detached signature over the same transport-safe entity.
    let p7s = sign(&token, "detached.p7s", &["--outform", "der"]);
    assert_gpgsm_good(
        &gpg.verify(&p7s, Some(&content_file), None),
        8,
        "gpgsm: --outform der detached",
    );

    // Negative: one byte of the signed content changed.
    let bad = token.write("content-altered.txt", &altered(&content));
    assert_gpgsm_bad(
        &gpg.verify(&p7s, Some(&bad), None),
        "gpgsm: detached, altered content",
    );
    assert_gpgsm_bad(
        &gpg.verify(&sig_file, Some(&bad), None),
        "gpgsm: multipart/signed, altered content",
    );
    gpg.stop();
}

#[test]
fn gpgsm_verifies_opaque_signed_data() {
    let token = TestToken::new();
    let gpg = Gpgsm::new(&[]);
    let msg = std::fs::read(sign(&token, "signed.eml", &[])).unwrap();
    let (entity, _) = split_multipart_signed(&msg);

    let p7m = sign(&token, "opaque.p7m", &["--opaque", "--outform", "der"]);
    let extracted = token.path("opaque.out");
    assert_gpgsm_good(
        &gpg.verify(&p7m, None, Some(&extracted)),
        8,
        "gpgsm: opaque",
    );
    let got = std::fs::read(&extracted).unwrap();
    assert!(
        got == entity,
        "gpgsm: opaque content differs from the multipart/signed first part:\n{:?}\n{:?}",
        String::from_utf8_lossy(&got),
        String::from_utf8_lossy(&entity)
    );

    // Negative: one byte of the encapsulated content changed.
    let bad = token.write(
        "opaque-altered.p7m",
        &altered(&std::fs::read(&p7m).unwrap()),
    );
    assert_gpgsm_bad(
        &gpg.verify(&bad, None, Some(&token.path("opaque-altered.out"))),
        "gpgsm: opaque, altered content",
    );
    gpg.stop();
}

#[test]
fn gpgsm_verifies_rsa_pss() {
    let token = TestToken::new();
    let gpg = Gpgsm::new(&[]);

    let msg = std::fs::read(sign(&token, "pss.eml", &["--pss"])).unwrap();
    let (content, sig) = split_multipart_signed(&msg);
    assert!(
        contains(&sig, OID_RSASSA_PSS),
        "--pss did not give an rsassaPss signature"
    );
    let content_file = token.write("content.txt", &content);
    let sig_file = token.write("pss.p7s", &sig);
    assert_gpgsm_good(
        &gpg.verify(&sig_file, Some(&content_file), None),
        8,
        "gpgsm: RSA-PSS multipart/signed",
    );

    let p7m = sign(
        &token,
        "pss.p7m",
        &["--pss", "--opaque", "--outform", "der"],
    );
    let p7m_der = std::fs::read(&p7m).unwrap();
    assert!(
        contains(&p7m_der, OID_RSASSA_PSS),
        "opaque --pss is not PSS"
    );
    assert_gpgsm_good(
        &gpg.verify(&p7m, None, Some(&token.path("pss.out"))),
        8,
        "gpgsm: RSA-PSS opaque",
    );

    // Negatives: altered content (digest mismatch), and a flipped PSS signature value (shows
    // gpgsm really checks the PSS signature, not just the digest).
    let bad = token.write("content-altered.txt", &altered(&content));
    assert_gpgsm_bad(
        &gpg.verify(&sig_file, Some(&bad), None),
        "gpgsm: RSA-PSS, altered content",
    );
    let bad_sig = token.write("pss-badsig.p7s", &with_flipped_signature(&sig));
    assert_gpgsm_bad(
        &gpg.verify(&bad_sig, Some(&content_file), None),
        "gpgsm: RSA-PSS, flipped signature value",
    );
    gpg.stop();
}

#[test]
fn gpgsm_verifies_sha512() {
    let token = TestToken::new();
    let gpg = Gpgsm::new(&[]);
    let msg = std::fs::read(sign(&token, "sha512.eml", &["--digest", "sha512"])).unwrap();
    assert!(
        contains(&msg, b"micalg=sha-512"),
        "multipart/signed micalg is not sha-512"
    );
    let (content, sig) = split_multipart_signed(&msg);
    let content_file = token.write("content.txt", &content);
    let sig_file = token.write("sha512.p7s", &sig);
    assert_gpgsm_good(
        &gpg.verify(&sig_file, Some(&content_file), None),
        10,
        "gpgsm: SHA-512",
    );
    gpg.stop();
}

// ---------------------------------------------------------------------------------------------
// NSS cmsutil

/// A fresh NSS cert DB (no password) holding the test CA, trusted for e-mail. The signer's
/// certificate comes with the signature.
fn nss_db(token: &TestToken) -> NssDb {
    let db = NssDb::create(&token.path("nssdb"), None);
    db.trust_test_ca();
    db
}

/// cmsutil's verdict on a signed message: the exit code without `-h` (0 only for a good
/// signature from a trusted signer; the content on stdout must be `expected`), and the status
/// line with `-h 0` (`signer0.status=GoodSignature`, signer "Alice Tester").
fn assert_nss_good(db: &NssDb, input: &Path, content: Option<&Path>, expected: &[u8], what: &str) {
    let plain = cmsutil_decode(db, input, content, &[]);
    assert_eq!(
        plain.status.code(),
        Some(0),
        "{what}: cmsutil -D failed: {}",
        report(&plain)
    );
    assert!(
        plain.stdout == expected,
        "{what}: cmsutil -D printed other content: {}",
        report(&plain)
    );
    let headers = cmsutil_decode(db, input, content, &["-h", "0"]);
    let text = String::from_utf8_lossy(&headers.stdout);
    assert!(
        text.contains("type=signedData; nsigners=1;")
            && text.contains("signer0.id=\"Alice Tester\"; signer0.status=GoodSignature;"),
        "{what}: cmsutil -D -h 0 did not report a good signature by Alice Tester: {}",
        report(&headers)
    );
}

/// cmsutil must not call it good: exit non-zero and `signer 0 status = <status>` on stderr
/// without `-h`, and `signer0.status=<status>` with `-h 0` (which exits 0 regardless).
fn assert_nss_bad(db: &NssDb, input: &Path, content: Option<&Path>, status: &str, what: &str) {
    let plain = cmsutil_decode(db, input, content, &[]);
    let rep = report(&plain);
    assert_ne!(plain.status.code(), Some(0), "{what}: {rep}");
    assert!(
        String::from_utf8_lossy(&plain.stderr).contains(&format!("signer 0 status = {status}")),
        "{what}: expected status {status}: {rep}"
    );
    let headers = cmsutil_decode(db, input, content, &["-h", "0"]);
    let text = String::from_utf8_lossy(&headers.stdout);
    assert!(
        !text.contains("GoodSignature") && text.contains(&format!("signer0.status={status};")),
        "{what}: cmsutil -D -h 0: {}",
        report(&headers)
    );
}

#[test]
fn nss_verifies_opaque_signed_data() {
    let token = TestToken::new();
    let db = nss_db(&token);
    let msg = std::fs::read(sign(&token, "signed.eml", &[])).unwrap();
    let (entity, _) = split_multipart_signed(&msg);
    assert_transport_safe(&entity);

    let p7m = sign(&token, "opaque.p7m", &["--opaque", "--outform", "der"]);
    assert_nss_good(&db, &p7m, None, &entity, "NSS: opaque");

    let bad = token.write(
        "opaque-altered.p7m",
        &altered(&std::fs::read(&p7m).unwrap()),
    );
    assert_nss_bad(
        &db,
        &bad,
        None,
        "DigestMismatch",
        "NSS: opaque, altered content",
    );
}

#[test]
fn nss_verifies_multipart_signed_and_detached_der() {
    let token = TestToken::new();
    let db = nss_db(&token);
    let msg = std::fs::read(sign(&token, "signed.eml", &[])).unwrap();
    let (content, sig) = split_multipart_signed(&msg);
    assert_transport_safe(&content);
    let content_file = token.write("content.txt", &content);
    let sig_file = token.write("embedded.p7s", &sig);
    assert_nss_good(
        &db,
        &sig_file,
        Some(&content_file),
        &content,
        "NSS: multipart/signed",
    );

    let p7s = sign(&token, "detached.p7s", &["--outform", "der"]);
    assert_nss_good(
        &db,
        &p7s,
        Some(&content_file),
        &content,
        "NSS: --outform der detached",
    );

    let bad = token.write("content-altered.txt", &altered(&content));
    assert_nss_bad(
        &db,
        &p7s,
        Some(&bad),
        "DigestMismatch",
        "NSS: detached, altered content",
    );
    assert_nss_bad(
        &db,
        &sig_file,
        Some(&bad),
        "DigestMismatch",
        "NSS: multipart/signed, altered content",
    );
}

#[test]
fn nss_verifies_rsa_pss() {
    let token = TestToken::new();
    let db = nss_db(&token);
    let msg = std::fs::read(sign(&token, "pss.eml", &["--pss"])).unwrap();
    let (content, sig) = split_multipart_signed(&msg);
    assert!(
        contains(&sig, OID_RSASSA_PSS),
        "--pss did not give an rsassaPss signature"
    );
    let content_file = token.write("content.txt", &content);
    let sig_file = token.write("pss.p7s", &sig);
    assert_nss_good(
        &db,
        &sig_file,
        Some(&content_file),
        &content,
        "NSS: RSA-PSS multipart/signed",
    );

    let p7m = sign(
        &token,
        "pss.p7m",
        &["--pss", "--opaque", "--outform", "der"],
    );
    assert_nss_good(&db, &p7m, None, &content, "NSS: RSA-PSS opaque");

    let bad = token.write("content-altered.txt", &altered(&content));
    assert_nss_bad(
        &db,
        &sig_file,
        Some(&bad),
        "DigestMismatch",
        "NSS: RSA-PSS, altered content",
    );
    let bad_sig = token.write("pss-badsig.p7s", &with_flipped_signature(&sig));
    assert_nss_bad(
        &db,
        &bad_sig,
        Some(&content_file),
        "BadSignature",
        "NSS: RSA-PSS, flipped signature value",
    );
}

#[test]
fn nss_verifies_sha512() {
    let token = TestToken::new();
    let db = nss_db(&token);
    let msg = std::fs::read(sign(&token, "sha512.eml", &["--digest", "sha512"])).unwrap();
    let (content, sig) = split_multipart_signed(&msg);
    let content_file = token.write("content.txt", &content);
    let sig_file = token.write("sha512.p7s", &sig);
    assert_nss_good(
        &db,
        &sig_file,
        Some(&content_file),
        &content,
        "NSS: SHA-512",
    );
}
