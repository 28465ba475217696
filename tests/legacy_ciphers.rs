//! Legacy content ciphers found in old mail archives (issue 4): RC2-CBC with 40-, 64- and
//! 128-bit effective keys and 3DES, written by `openssl cms` (RC2 needs OpenSSL 3's legacy
//! provider), decrypted through the SoftHSM2 token to the exact bytes, each with its warning.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use common::*;

use cms::content_info::ContentInfo;
use cms::enveloped_data::EnvelopedData;
use der::asn1::OctetString;
use der::{Any, Decode, Encode};
use std::path::{Path, PathBuf};

/// openssl's options to write RC2 with OpenSSL 3 (the legacy provider, and the default one for
/// everything else).
const LEGACY: [&str; 4] = ["-provider", "legacy", "-provider", "default"];

fn rc2_message(dir: &Path, plaintext: &[u8], cipher: &str) -> PathBuf {
    let mut opts = vec![cipher];
    opts.extend(LEGACY);
    opts.extend(["-outform", "DER"]);
    openssl_encrypt(dir, plaintext, &opts, &["alice-enc.pem"])
}

/// Asserts the warning line the CLI prints for a weak cipher, naming `what`.
fn assert_warns(out: &std::process::Output, what: &str, name: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr
            .lines()
            .any(|l| l.starts_with("p11smime: warning: ") && l.contains(what)),
        "{name}: no warning about {what:?} in stderr: {stderr}"
    );
    assert!(
        stderr.contains("ask the sender to use AES"),
        "{name}: {stderr}"
    );
}

#[test]
fn rc2_40_64_128_decrypt_with_a_warning() {
    let token = TestToken::new();
    let content = varied_bytes(5000);
    for (cipher, bits, extra) in [
        ("-rc2-40-cbc", 40, "anyone can read such mail"),
        ("-rc2-64-cbc", 64, "brute force"),
        ("-rc2-cbc", 128, "legacy cipher"),
    ] {
        for (what, plaintext) in [("sample", SAMPLE), ("5000 varied bytes", &content[..])] {
            let name = format!("{cipher} {what}");
            let msg = rc2_message(token.dir.path(), plaintext, cipher);
            let out = token.decrypt(&msg);
            assert_plaintext(&out, plaintext, &name);
            assert_warns(&out, &format!("RC2 with a {bits}-bit key"), &name);
            assert_warns(&out, extra, &name);
        }
    }
}

/// The same through the S/MIME entity openssl writes, and `--json`'s cipher name.
#[test]
fn rc2_smime_entity_and_json_report() {
    let token = TestToken::new();
    let mut opts = vec!["-rc2-40-cbc"];
    opts.extend(LEGACY);
    opts.extend(["-outform", "SMIME"]);
    let msg = openssl_encrypt(token.dir.path(), SAMPLE, &opts, &["alice-enc.pem"]);
    let out = token.decrypt(&msg);
    assert_plaintext(&out, SAMPLE, "RC2-40 S/MIME entity");
    assert_warns(&out, "RC2 with a 40-bit key", "RC2-40 S/MIME entity");

    let plain = token.path("plain.out");
    let out = token
        .p11smime(&["decrypt", "--pin", "env:TEST_PIN", "--json", "-o"])
        .arg(&plain)
        .arg(&msg)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(std::fs::read(&plain).unwrap(), SAMPLE);
    let json = String::from_utf8_lossy(&out.stdout);
    assert!(json.contains("RC2-40-CBC"), "{json}");
    assert!(
        json.contains("40-bit key"),
        "the warning belongs in the JSON too: {json}"
    );
}

/// The old parameter form, the IV alone: the effective key size is the key's own (5 bytes: 40
/// bits, 16 bytes: 128 bits). openssl never writes it, so its message is rewritten.
#[test]
fn rc2_with_only_an_iv_takes_the_key_size() {
    let token = TestToken::new();
    for (cipher, bits) in [("-rc2-40-cbc", 40), ("-rc2-cbc", 128)] {
        let msg = rc2_message(token.dir.path(), SAMPLE, cipher);
        let der = std::fs::read(&msg).unwrap();
        let ci = ContentInfo::from_der(&der).unwrap();
        let mut env: EnvelopedData = ci.content.decode_as().unwrap();
        let alg = &mut env.encrypted_content.content_enc_alg;
        let params = alg.parameters.take().unwrap();
        // RC2CBCParameter ::= SEQUENCE { version INTEGER, iv OCTET STRING }: keep the IV.
        let seq: Vec<Any> = params.decode_as().unwrap();
        assert_eq!(seq.len(), 2, "{cipher}: openssl wrote a version and an IV");
        let iv: OctetString = seq[1].decode_as().unwrap();
        alg.parameters = Some(Any::encode_from(&iv).unwrap());
        let rewritten = ContentInfo {
            content_type: ci.content_type,
            content: Any::encode_from(&env).unwrap(),
        };
        let path = token.path(&format!("iv-only{cipher}.p7m"));
        std::fs::write(&path, rewritten.to_der().unwrap()).unwrap();
        let name = format!("{cipher} with only an IV");
        let out = token.decrypt(&path);
        assert_plaintext(&out, SAMPLE, &name);
        assert_warns(&out, &format!("RC2 with a {bits}-bit key"), &name);
    }
}

#[test]
fn triple_des_decrypts_with_a_warning() {
    let token = TestToken::new();
    let msg = openssl_encrypt(
        token.dir.path(),
        SAMPLE,
        &["-des3", "-outform", "DER"],
        &["alice-enc.pem"],
    );
    let out = token.decrypt(&msg);
    assert_plaintext(&out, SAMPLE, "3DES");
    assert_warns(&out, "3DES", "3DES");
}

/// AES is not weak: no warning at all.
#[test]
fn aes_has_no_warning() {
    let token = TestToken::new();
    let msg = openssl_encrypt(
        token.dir.path(),
        SAMPLE,
        &["-aes256", "-outform", "DER"],
        &["alice-enc.pem"],
    );
    let out = token.decrypt(&msg);
    assert_plaintext(&out, SAMPLE, "AES-256");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("warning"), "{stderr}");
}
