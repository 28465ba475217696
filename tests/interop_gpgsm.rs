//! Interoperability with GnuPG: messages made by `gpgsm --encrypt` are decrypted by
//! `p11smime decrypt` with keys on a SoftHSM2 token.
//!
//! `gpgsm` writes BER with indefinite lengths and 4096-byte encryptedContent chunks,
//! issuerAndSerialNumber and PKCS#1 v1.5 key transport; its default cipher is AES-128-CBC.
//! Each test has its own short GNUPGHOME in /tmp (the agent's Unix sockets live there), trusts
//! the test CA through `trustlist.txt`, and stops the gpg-agent that gpgsm starts, even when
//! the test fails (`Gpgsm`'s `Drop`).
//!
//! gpgsm comes from `scripts/install-deps`; a missing tool fails the test instead of skipping it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use common::gpgsm::Gpgsm;
use common::*;

use std::path::Path;

/// DER of the content-encryption algorithm OIDs, to check what the peer actually produced.
const OID_AES128_CBC: &[u8] = &[
    0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x01, 0x02,
];
const OID_AES256_CBC: &[u8] = &[
    0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x01, 0x2A,
];
const OID_DES_EDE3_CBC: &[u8] = &[0x06, 0x08, 0x2A, 0x86, 0x48, 0x86, 0xF7, 0x0D, 0x03, 0x07];

/// Binary gpgsm output: indefinite-length BER with `oid` as the content cipher.
fn assert_binary_with(msg: &Path, oid: &[u8], what: &str) {
    let der = std::fs::read(msg).unwrap();
    assert_eq!(
        der.get(..2),
        Some(&[0x30, 0x80][..]),
        "{what}: gpgsm output is not indefinite-length BER"
    );
    assert!(contains(&der, oid), "{what}: unexpected content cipher");
}

#[test]
fn gpgsm_default_aes128_binary_decrypts() {
    let token = TestToken::new();
    let gpg = Gpgsm::new(&["alice-enc.pem"]);
    let msg = gpg.encrypt(&token, "default", &["alice"], SAMPLE, &[]);
    assert_binary_with(&msg, OID_AES128_CBC, "gpgsm default");
    assert_plaintext(&token.decrypt(&msg), SAMPLE, "gpgsm default (AES-128)");
    gpg.stop();
}

#[test]
fn gpgsm_aes256_decrypts() {
    let token = TestToken::new();
    let gpg = Gpgsm::new(&["alice-enc.pem"]);
    let msg = gpg.encrypt(
        &token,
        "aes256",
        &["alice"],
        SAMPLE,
        &["--cipher-algo", "AES256"],
    );
    assert_binary_with(&msg, OID_AES256_CBC, "gpgsm AES256");
    assert_plaintext(&token.decrypt(&msg), SAMPLE, "gpgsm --cipher-algo AES256");
    gpg.stop();
}

#[test]
fn gpgsm_3des_decrypts() {
    let token = TestToken::new();
    let gpg = Gpgsm::new(&["alice-enc.pem"]);
    let msg = gpg.encrypt(
        &token,
        "3des",
        &["alice"],
        SAMPLE,
        &["--cipher-algo", "3DES"],
    );
    assert_binary_with(&msg, OID_DES_EDE3_CBC, "gpgsm 3DES");
    assert_plaintext(&token.decrypt(&msg), SAMPLE, "gpgsm --cipher-algo 3DES");
    gpg.stop();
}

#[test]
fn gpgsm_armor_decrypts() {
    let token = TestToken::new();
    let gpg = Gpgsm::new(&["alice-enc.pem"]);
    let msg = gpg.encrypt(&token, "armor", &["alice"], SAMPLE, &["--armor"]);
    let text = std::fs::read_to_string(&msg).unwrap();
    assert!(
        text.starts_with("-----BEGIN ENCRYPTED MESSAGE-----\n")
            && text.trim_end().ends_with("-----END ENCRYPTED MESSAGE-----"),
        "unexpected gpgsm armor: {text}"
    );
    assert_plaintext(&token.decrypt(&msg), SAMPLE, "gpgsm --armor");
    gpg.stop();
}

#[test]
fn gpgsm_bare_base64_decrypts() {
    let token = TestToken::new();
    let gpg = Gpgsm::new(&["alice-enc.pem"]);
    let msg = gpg.encrypt(&token, "base64", &["alice"], SAMPLE, &["--base64"]);
    let text = std::fs::read_to_string(&msg).unwrap();
    assert!(
        text.starts_with("MIAGCSqGSIb3DQEHA") && !text.contains("-----"),
        "unexpected gpgsm --base64 output: {text}"
    );
    assert_plaintext(&token.decrypt(&msg), SAMPLE, "gpgsm --base64");
    gpg.stop();
}

#[test]
fn gpgsm_large_content_decrypts_byte_exact() {
    let token = TestToken::new();
    let gpg = Gpgsm::new(&["alice-enc.pem"]);
    // 200 KiB + 5: every byte value, many 4096-byte chunks and a partial last block.
    let content = varied_bytes(200 * 1024 + 5);
    let msg = gpg.encrypt(&token, "large", &["alice"], &content, &[]);
    assert_binary_with(&msg, OID_AES128_CBC, "gpgsm large");
    assert_plaintext(&token.decrypt(&msg), &content, "gpgsm 200 KiB");
    gpg.stop();
}
