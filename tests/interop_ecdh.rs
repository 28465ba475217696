//! EC recipients (KeyAgreeRecipientInfo, ephemeral-static ECDH as RFC 5753 has it): messages
//! written by `openssl cms -encrypt` to Alice's EC certificates, opened by the p11smime binary
//! with the EC keys on a SoftHSM2 token (P-256 id 04, P-384 id 05, P-521 id 06) through
//! CKM_ECDH1_DERIVE. Every KDF digest, the cofactor schemes, every AES wrap size, AES-GCM
//! (AuthEnvelopedData), recipients named by subject key identifier, mixed RSA and EC recipients,
//! and the failures: a message for another EC key costs no PIN attempt.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use common::*;
use std::path::{Path, PathBuf};
use std::process::Command;

/// `openssl cms -encrypt` of `plaintext` to certificate files; options first, files last.
fn encrypt_to(
    dir: &Path,
    name: &str,
    plaintext: &[u8],
    opts: &[&str],
    certs: &[PathBuf],
) -> PathBuf {
    let input = dir.join("plain.in");
    std::fs::write(&input, plaintext).unwrap();
    let out = dir.join(format!("{name}.p7m"));
    let mut cmd = Command::new("openssl");
    cmd.args(["cms", "-encrypt", "-binary"]).args(opts);
    cmd.arg("-in").arg(&input).arg("-out").arg(&out);
    cmd.args(certs);
    run_ok(&mut cmd);
    out
}

/// Options that pass `-keyopt` settings to the EC recipient `cert` (openssl wants `-recip`).
fn keyopts<'a>(cert: &'a str, content: &'a str, opts: &[&'a str]) -> Vec<&'a str> {
    let mut v = vec![content, "-recip", cert];
    for o in opts {
        v.extend(["-keyopt", o]);
    }
    v.extend(["-outform", "DER"]);
    v
}

/// What openssl wrote, for failure messages: the scheme and wrap it chose.
fn scheme_of(msg: &Path) -> String {
    let out = run_ok(
        Command::new("openssl")
            .args(["cms", "-cmsout", "-print", "-inform", "DER", "-in"])
            .arg(msg),
    );
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    text.lines()
        .filter(|l| l.contains("dhSinglePass") || l.contains("wrap"))
        .map(str::trim)
        .collect::<Vec<_>>()
        .join("; ")
}

#[test]
fn every_kdf_wrap_and_content_cipher_decrypts_on_the_token() {
    let token = TestToken::new();
    let dir = token.dir.path();
    let p256 = fixture("alice-ec.pem");
    let p256 = path_str(&p256);
    let mut cases: Vec<(&str, Vec<&str>)> = vec![
        (
            "default (SHA-1 KDF), AES-128",
            vec!["-aes128", "-outform", "DER"],
        ),
        (
            "default, AES-192 (AES-192 wrap)",
            vec!["-aes192", "-outform", "DER"],
        ),
        (
            "default, AES-256 (AES-256 wrap)",
            vec!["-aes256", "-outform", "DER"],
        ),
        (
            "AuthEnvelopedData AES-256-GCM",
            vec!["-aes-256-gcm", "-outform", "DER"],
        ),
        (
            "AuthEnvelopedData AES-128-GCM",
            vec!["-aes-128-gcm", "-outform", "DER"],
        ),
        ("rKeyId", vec!["-aes256", "-keyid", "-outform", "DER"]),
        (
            "rKeyId with GCM",
            vec!["-aes-256-gcm", "-keyid", "-outform", "DER"],
        ),
        (
            "streamed BER",
            vec!["-aes256", "-stream", "-outform", "DER"],
        ),
        ("S/MIME entity", vec!["-aes128", "-outform", "SMIME"]),
    ];
    let with_keyopts: Vec<(&str, Vec<&str>)> = vec![
        (
            "SHA-224 KDF",
            keyopts(p256, "-aes128", &["ecdh_kdf_md:sha224"]),
        ),
        (
            "SHA-256 KDF",
            keyopts(p256, "-aes128", &["ecdh_kdf_md:sha256"]),
        ),
        (
            "SHA-256 KDF, AES-256",
            keyopts(p256, "-aes256", &["ecdh_kdf_md:sha256"]),
        ),
        (
            "SHA-384 KDF",
            keyopts(p256, "-aes256", &["ecdh_kdf_md:sha384"]),
        ),
        (
            "SHA-512 KDF",
            keyopts(p256, "-aes256", &["ecdh_kdf_md:sha512"]),
        ),
        (
            "SHA-512 KDF, GCM",
            keyopts(p256, "-aes-256-gcm", &["ecdh_kdf_md:sha512"]),
        ),
        (
            "cofactor DH, SHA-1 KDF",
            keyopts(p256, "-aes128", &["ecdh_cofactor_mode:1"]),
        ),
        (
            "cofactor DH, SHA-256 KDF",
            keyopts(
                p256,
                "-aes256",
                &["ecdh_cofactor_mode:1", "ecdh_kdf_md:sha256"],
            ),
        ),
    ];
    cases.extend(with_keyopts);
    assert!(cases.len() >= 17, "the matrix must not shrink unnoticed");
    for (i, (name, opts)) in cases.iter().enumerate() {
        // Options naming the recipient with -recip carry it already.
        let certs: Vec<PathBuf> = if opts.contains(&"-recip") {
            vec![]
        } else {
            vec![fixture("alice-ec.pem")]
        };
        let msg = encrypt_to(dir, &format!("p256-{i}"), SAMPLE, opts, &certs);
        let what = if opts.contains(&"SMIME") {
            name.to_string()
        } else {
            format!("{name} [{}]", scheme_of(&msg))
        };
        assert_plaintext(&token.decrypt(&msg), SAMPLE, &what);
    }
}

/// The cofactor option must really change the scheme openssl writes, or the cofactor cases
/// above test nothing new.
#[test]
fn openssl_writes_the_schemes_the_matrix_claims() {
    let token = TestToken::new();
    let cert = fixture("alice-ec.pem");
    let cert = path_str(&cert);
    let dir = token.dir.path();
    let cases = [
        (vec![], "dhSinglePass-stdDH-sha1kdf-scheme"),
        (
            vec!["ecdh_kdf_md:sha384"],
            "dhSinglePass-stdDH-sha384kdf-scheme",
        ),
        (
            vec!["ecdh_cofactor_mode:1"],
            "dhSinglePass-cofactorDH-sha1kdf-scheme",
        ),
        (
            vec!["ecdh_cofactor_mode:1", "ecdh_kdf_md:sha512"],
            "dhSinglePass-cofactorDH-sha512kdf-scheme",
        ),
    ];
    for (i, (opts, scheme)) in cases.iter().enumerate() {
        let msg = encrypt_to(
            dir,
            &format!("scheme-{i}"),
            SAMPLE,
            &keyopts(cert, "-aes256", opts),
            &[],
        );
        let printed = scheme_of(&msg);
        assert!(printed.contains(scheme), "{opts:?}: {printed}");
        assert!(printed.contains("id-aes256-wrap"), "{opts:?}: {printed}");
        assert_plaintext(&token.decrypt(&msg), SAMPLE, scheme);
    }
}

#[test]
fn p384_and_p521_keys_decrypt() {
    let token = TestToken::new();
    let dir = token.dir.path();
    let content = varied_bytes(5000);
    for (curve, file) in [("P-384", "alice-ec384.pem"), ("P-521", "alice-ec521.pem")] {
        let cert = fixture(file);
        let cert = path_str(&cert);
        let cases: Vec<(&str, Vec<&str>)> = vec![
            ("default", vec!["-aes256", "-outform", "DER"]),
            (
                "GCM, rKeyId",
                vec!["-aes-256-gcm", "-keyid", "-outform", "DER"],
            ),
            (
                "SHA-256 KDF",
                keyopts(cert, "-aes128", &["ecdh_kdf_md:sha256"]),
            ),
            (
                "SHA-384 KDF",
                keyopts(cert, "-aes256", &["ecdh_kdf_md:sha384"]),
            ),
            (
                "SHA-512 KDF",
                keyopts(cert, "-aes256", &["ecdh_kdf_md:sha512"]),
            ),
            (
                "cofactor DH",
                keyopts(cert, "-aes192", &["ecdh_cofactor_mode:1"]),
            ),
        ];
        for (i, (name, opts)) in cases.iter().enumerate() {
            let certs: Vec<PathBuf> = if opts.contains(&"-recip") {
                vec![]
            } else {
                vec![fixture(file)]
            };
            let msg = encrypt_to(dir, &format!("{curve}-{i}"), &content, opts, &certs);
            let out = token.decrypt(&msg);
            assert_plaintext(&out, &content, &format!("{curve} {name}"));
        }
    }
}

/// RSA and EC recipients in one message, in both orders; and all three EC keys at once.
#[test]
fn mixed_rsa_and_ec_recipients() {
    let token = TestToken::new();
    let dir = token.dir.path();
    let sets: [(&str, &[&str]); 4] = [
        (
            "bob (RSA, not ours) then alice-ec",
            &["bob-enc.pem", "alice-ec.pem"],
        ),
        ("alice-ec then bob (RSA)", &["alice-ec.pem", "bob-enc.pem"]),
        (
            "alice-enc (RSA, ours) and alice-ec",
            &["alice-enc.pem", "alice-ec.pem"],
        ),
        (
            "three EC curves",
            &["alice-ec521.pem", "alice-ec384.pem", "alice-ec.pem"],
        ),
    ];
    for (i, (name, recips)) in sets.iter().enumerate() {
        let certs: Vec<PathBuf> = recips.iter().map(|r| fixture(r)).collect();
        for (j, opts) in [["-aes256", "-outform"], ["-aes-256-gcm", "-outform"]]
            .iter()
            .enumerate()
        {
            let mut opts = opts.to_vec();
            opts.push("DER");
            let msg = encrypt_to(dir, &format!("mixed-{i}-{j}"), SAMPLE, &opts, &certs);
            assert_plaintext(&token.decrypt(&msg), SAMPLE, name);
        }
    }
    // bob's EC-free message is opened by the RSA key only when forced onto an EC recipient it
    // cannot open: a forced RSA key on an EC-only message fails as "not this key".
    let msg = encrypt_to(
        dir,
        "forced-rsa",
        SAMPLE,
        &["-aes256", "-outform", "DER"],
        &[fixture("alice-ec.pem")],
    );
    let out = token
        .p11smime(&[
            "decrypt",
            "--pin",
            "env:TEST_PIN",
            "--key",
            "id:02",
            path_str(&msg),
        ])
        .output()
        .unwrap();
    assert_fails(&out, 3, "--key id:02 (RSA) on an EC message");
    // The P-384 key forced onto a P-256 message: the point is not on its curve.
    let out = token
        .p11smime(&[
            "decrypt",
            "--pin",
            "env:TEST_PIN",
            "--key",
            "id:05",
            path_str(&msg),
        ])
        .output()
        .unwrap();
    assert_fails(&out, 3, "--key id:05 (P-384) on a P-256 message");
    // The right key forced works.
    let out = token
        .p11smime(&[
            "decrypt",
            "--pin",
            "env:TEST_PIN",
            "--key",
            "id:04",
            path_str(&msg),
        ])
        .output()
        .unwrap();
    assert_plaintext(&out, SAMPLE, "--key id:04");
}

/// A P-256 certificate made now, with a key that is on no token.
fn stranger(dir: &Path) -> PathBuf {
    let cert = dir.join("stranger.pem");
    run_ok(
        Command::new("openssl")
            .args(["req", "-x509", "-newkey", "ec", "-pkeyopt"])
            .args(["ec_paramgen_curve:P-256", "-nodes", "-days", "1"])
            .args(["-subj", "/O=p11smime TEST ONLY/CN=Stranger"])
            .arg("-keyout")
            .arg(dir.join("stranger.key.pem"))
            .arg("-out")
            .arg(&cert),
    );
    cert
}

#[test]
fn a_message_for_another_ec_key_costs_no_pin_attempt() {
    let token = TestToken::new();
    let dir = token.dir.path();
    let cert = stranger(dir);
    for (name, opts) in [
        ("issuer and serial", vec!["-aes256", "-outform", "DER"]),
        ("rKeyId", vec!["-aes-256-gcm", "-keyid", "-outform", "DER"]),
    ] {
        let msg = encrypt_to(dir, "stranger", SAMPLE, &opts, std::slice::from_ref(&cert));
        let (out, logins) = with_spy(
            &token,
            &["decrypt", "--pin", "env:TEST_PIN", path_str(&msg)],
        );
        let stderr = assert_fails(&out, 4, name);
        assert_eq!(
            logins, 0,
            "{name}: no C_Login for a message that is not ours"
        );
        assert!(out.stdout.is_empty());
        assert!(stderr.contains("ECDH"), "{name}: {stderr}");
        assert!(stderr.contains("the token holds"), "{name}: {stderr}");
    }
    // Forcing our P-256 key onto it runs ECDH and fails as "not this key", nothing printed.
    let msg = encrypt_to(
        dir,
        "stranger-forced",
        SAMPLE,
        &["-aes256", "-outform", "DER"],
        &[cert],
    );
    let out = token
        .p11smime(&[
            "decrypt",
            "--pin",
            "env:TEST_PIN",
            "--key",
            "id:04",
            path_str(&msg),
        ])
        .output()
        .unwrap();
    let stderr = assert_fails(&out, 3, "--key id:04 on a message for another EC key");
    assert!(stderr.contains("decryption failed"), "{stderr}");
    assert!(out.stdout.is_empty());
}

/// The shared secret never stays on the token: one C_DeriveKey, its value read, the derived
/// session object destroyed, and a single login.
#[test]
fn the_derived_secret_is_destroyed_at_once() {
    let token = TestToken::new();
    let msg = encrypt_to(
        token.dir.path(),
        "spy",
        SAMPLE,
        &["-aes128", "-outform", "DER"],
        &[fixture("alice-ec.pem")],
    );
    let (out, log) = token.spy_run(&["decrypt", "--pin", "env:TEST_PIN", path_str(&msg)]);
    assert_plaintext(&out, SAMPLE, "through pkcs11-spy");
    assert_eq!(count_calls(&log, "C_Login"), 1);
    assert_eq!(count_calls(&log, "C_DeriveKey"), 1, "one ECDH");
    assert!(log.contains("CKM_ECDH1_DERIVE") && log.contains("CKD_NULL"));
    assert_eq!(
        count_calls(&log, "C_DestroyObject"),
        1,
        "the derived object is destroyed"
    );
    let derive = log.find("C_DeriveKey").unwrap();
    let destroy = log.find("C_DestroyObject").unwrap();
    assert!(derive < destroy);
    // Session object, not a token object.
    let template = &log[derive..destroy];
    assert!(
        template
            .lines()
            .any(|l| l.contains("CKA_TOKEN") && l.contains("False")),
        "{template}"
    );
}
