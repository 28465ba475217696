//! Cryptographic hygiene (issue 8, item 4).
//!
//! No padding or tag oracle: a bad CBC padding, a bad GCM tag, a bad OAEP encoding (on the
//! token, and in the software decoding p11smime falls back to) and a bad PKCS#1 v1.5 block all
//! give the same message and exit code, directly and through the session agent; each is made by
//! flipping one byte of an openssl-made message. Weak algorithms are read with a warning (RC2 and
//! 3DES: tests/legacy_ciphers.rs) and never produced.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use common::fault::{self, injected};
use common::*;
use std::path::{Path, PathBuf};
use std::process::Output;

/// A copy of `msg` named `name` with the byte at `at` XOR-ed with `mask`.
fn flipped(token: &TestToken, msg: &Path, name: &str, at: usize, mask: u8) -> PathBuf {
    let mut der = std::fs::read(msg).unwrap();
    der[at] ^= mask;
    token.write(name, &der)
}

/// Where the encryptedKey (256 bytes: the fixture keys are RSA-2048) starts in `msg`.
fn encrypted_key_at(msg: &Path) -> usize {
    let der = std::fs::read(msg).unwrap();
    find(&der, &[0x04, 0x82, 0x01, 0x00], 0).expect("a 256-byte encryptedKey") + 4
}

fn len(msg: &Path) -> usize {
    std::fs::metadata(msg).unwrap().len() as usize
}

struct Damaged {
    what: &'static str,
    path: PathBuf,
    oaep: bool,
}

/// One message of each kind, each broken in the one place that kind can be broken.
fn damaged_messages(token: &TestToken) -> Vec<Damaged> {
    let dir = token.dir.path();
    let enc = fixture("alice-enc.pem");
    let cbc = openssl_encrypt(
        dir,
        SAMPLE,
        &["-aes256", "-outform", "DER"],
        &["alice-enc.pem"],
    );
    let gcm = openssl_encrypt(
        dir,
        SAMPLE,
        &["-aes-256-gcm", "-outform", "DER"],
        &["alice-enc.pem"],
    );
    let oaep = |md: &str| {
        openssl_encrypt(
            dir,
            SAMPLE,
            &[
                "-aes256",
                "-recip",
                path_str(&enc),
                "-keyopt",
                "rsa_padding_mode:oaep",
                "-keyopt",
                &format!("rsa_oaep_md:{md}"),
                "-outform",
                "DER",
            ],
            &[],
        )
    };
    let (oaep1, oaep256) = (oaep("sha1"), oaep("sha256"));
    // Every valid message opens: the failures below come from the one flipped byte.
    for m in [&cbc, &gcm, &oaep1, &oaep256] {
        assert_plaintext(&token.decrypt(m), SAMPLE, &m.display().to_string());
    }
    vec![
        Damaged {
            what: "bad CBC padding",
            // The last byte of the next-to-last block flips the last plaintext byte, the
            // padding length, to 0x80 or more: never valid padding for a 16-byte block.
            path: flipped(token, &cbc, "cbc-padding.p7m", len(&cbc) - 17, 0x80),
            oaep: false,
        },
        Damaged {
            what: "bad GCM tag",
            // The mac is the last field of openssl's AuthEnvelopedData.
            path: flipped(token, &gcm, "gcm-tag.p7m", len(&gcm) - 1, 0x01),
            oaep: false,
        },
        Damaged {
            what: "bad PKCS#1 v1.5 block",
            path: flipped(token, &cbc, "pkcs1.p7m", encrypted_key_at(&cbc) + 100, 0x01),
            oaep: false,
        },
        Damaged {
            what: "bad OAEP (SHA-1, on the token)",
            path: flipped(
                token,
                &oaep1,
                "oaep1.p7m",
                encrypted_key_at(&oaep1) + 100,
                0x01,
            ),
            oaep: true,
        },
        Damaged {
            what: "bad OAEP (SHA-256, decoded in software)",
            path: flipped(
                token,
                &oaep256,
                "oaep256.p7m",
                encrypted_key_at(&oaep256) + 100,
                0x01,
            ),
            oaep: true,
        },
    ]
}

/// Decrypts `msg` to a file; asserts it failed as a damaged message does (exit 3, nothing on
/// stdout, no output or temporary file) and returns stderr.
fn failure(token: &TestToken, out: Output, target: &Path, what: &str) -> String {
    let stderr = assert_fails(&out, 3, what);
    assert!(out.stdout.is_empty(), "{what}");
    assert!(!target.exists(), "{what}: no output");
    let leftovers: Vec<_> = std::fs::read_dir(token.path("out"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(leftovers.is_empty(), "{what}: {leftovers:?}");
    stderr
}

fn decrypt_args<'a>(target: &'a Path, msg: &'a Path) -> [&'a str; 6] {
    [
        "decrypt",
        "--pin",
        "env:TEST_PIN",
        "-o",
        path_str(target),
        path_str(msg),
    ]
}

#[test]
fn every_padding_and_tag_failure_is_the_same_error() {
    let token = TestToken::new();
    std::fs::create_dir(token.path("out")).unwrap();
    let target = token.path("out").join("plain.eml");
    let damaged = damaged_messages(&token);

    let mut seen: Vec<(String, String)> = Vec::new();
    for d in &damaged {
        let out = token
            .p11smime(&decrypt_args(&target, &d.path))
            .output()
            .unwrap();
        let stderr = failure(&token, out, &target, d.what);
        assert!(stderr.contains("decryption failed"), "{}: {stderr}", d.what);
        seen.push((d.what.to_string(), stderr));
    }

    // The software OAEP decoding, forced for SHA-1 too by hiding the token's OAEP: the
    // fallback is taken (the token answers CKR_MECHANISM_INVALID, raw RSA follows) and fails
    // the same way.
    for d in damaged.iter().filter(|d| d.oaep) {
        let (out, log) = fault::run(
            &token,
            "no-mechanism CKM_RSA_PKCS_OAEP",
            &decrypt_args(&target, &d.path),
        );
        assert_eq!(
            injected(&log, "C_DecryptInit"),
            ["C_DecryptInit CKR_MECHANISM_INVALID injected"],
            "{}",
            d.what
        );
        assert!(log.contains("C_Decrypt CKR_OK"), "raw RSA ran: {log}");
        let what = format!("{}, software fallback", d.what);
        seen.push((what.clone(), failure(&token, out, &target, &what)));
    }

    // Through the session agent: it answers one "Failed" for all, and the command says the same.
    let start = [
        "agent",
        "start",
        "--idle-timeout",
        "60s",
        "--pin",
        "env:TEST_PIN",
    ];
    let out = token.p11smime(&start).output().unwrap();
    assert!(out.status.success(), "{}", report(&out));
    for d in &damaged {
        let out = token
            .p11smime(&["decrypt", "-o", path_str(&target), path_str(&d.path)])
            .output()
            .unwrap();
        let what = format!("{}, through the agent", d.what);
        seen.push((what.clone(), failure(&token, out, &target, &what)));
    }
    let status = token.p11smime(&["agent", "status", "--json"]).output();
    let _ = token.p11smime(&["agent", "stop"]).output();
    let status: serde_json::Value = serde_json::from_slice(&status.unwrap().stdout).unwrap();
    assert_eq!(
        status["requests"].as_u64(),
        Some(damaged.len() as u64),
        "the agent served each request: {status}"
    );

    let (first_what, first) = &seen[0];
    for (what, stderr) in &seen[1..] {
        assert_eq!(
            stderr, first,
            "{what} must fail exactly as {first_what} does"
        );
    }
}

#[test]
fn weak_algorithms_are_never_produced() {
    let token = TestToken::new();
    let entity = token.write("entity.txt", SAMPLE);
    let bob = fixture("bob-enc.pem");
    let signed = token.path("signed.eml");
    let sent = token.path("sent.p7m");
    let refused = |args: &[&str], what: &str| {
        let out = token.p11smime(args).output().unwrap();
        assert_fails(&out, 2, what);
        assert!(out.stdout.is_empty(), "{what}");
    };
    for digest in ["sha1", "md5", "sha224"] {
        refused(
            &[
                "sign",
                "--pin",
                "env:TEST_PIN",
                "--digest",
                digest,
                "-o",
                path_str(&signed),
                path_str(&entity),
            ],
            &format!("sign --digest {digest}"),
        );
    }
    for cipher in [
        "des3",
        "des-ede3-cbc",
        "3des",
        "rc2",
        "rc2-40-cbc",
        "des-cbc",
    ] {
        refused(
            &[
                "encrypt",
                "--cipher",
                cipher,
                "-r",
                path_str(&bob),
                "-o",
                path_str(&sent),
                path_str(&entity),
            ],
            &format!("encrypt --cipher {cipher}"),
        );
    }
    assert!(!signed.exists() && !sent.exists());

    // What is produced by default: AES-256-CBC, and a SHA-256 signature.
    let out = token
        .p11smime(&[
            "encrypt",
            "--no-self",
            "-r",
            path_str(&bob),
            "--outform",
            "der",
            "-o",
            path_str(&sent),
            path_str(&entity),
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", report(&out));
    let printed = run_ok(
        std::process::Command::new("openssl")
            .args(["cms", "-cmsout", "-print", "-inform", "DER", "-in"])
            .arg(&sent),
    );
    let printed = String::from_utf8_lossy(&printed.stdout);
    assert!(printed.contains("aes-256-cbc"), "{printed}");

    let out = token
        .p11smime(&[
            "sign",
            "--pin",
            "env:TEST_PIN",
            "--outform",
            "der",
            "-o",
            path_str(&signed),
            path_str(&entity),
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", report(&out));
    let printed = run_ok(
        std::process::Command::new("openssl")
            .args(["cms", "-cmsout", "-print", "-inform", "DER", "-in"])
            .arg(&signed),
    );
    let printed = String::from_utf8_lossy(&printed.stdout);
    assert!(printed.contains("sha256"), "{printed}");
    assert!(!printed.contains("sha1"), "{printed}");
}

/// Reading old mail signed with SHA-1 works, with a warning naming SHA-1.
#[test]
fn verifying_a_sha1_signature_warns() {
    let token = TestToken::new();
    let entity = token.write("entity.txt", SAMPLE);
    let signed = token.path("sha1.eml");
    run_ok(
        std::process::Command::new("openssl")
            .args(["cms", "-sign", "-md", "sha1", "-in"])
            .arg(&entity)
            .arg("-signer")
            .arg(fixture("alice-sign.pem"))
            .arg("-inkey")
            .arg(fixture("alice-sign.key.pem"))
            .arg("-out")
            .arg(&signed),
    );
    let ca = fixture("ca.pem");
    let out = token
        .p11smime(&[
            "verify",
            "--ca",
            path_str(&ca),
            "--no-system-ca",
            "--revocation",
            "off",
            path_str(&signed),
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "still readable: {}", report(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr
            .lines()
            .any(|l| l.contains("warning") && l.contains("SHA-1")),
        "{stderr}"
    );
}

/// A recipient certificate with an RSA key under 2048 bits is not encrypted to.
#[test]
fn encrypting_to_rsa_1024_is_refused() {
    let token = TestToken::new();
    let entity = token.write("entity.txt", SAMPLE);
    let cert = token.path("weak.pem");
    run_ok(
        std::process::Command::new("openssl")
            .args([
                "req", "-x509", "-newkey", "rsa:1024", "-nodes", "-days", "30",
            ])
            .args(["-subj", "/CN=Weak Key/emailAddress=weak@example.test"])
            .args(["-addext", "keyUsage=keyEncipherment", "-keyout"])
            .arg(token.path("weak.key.pem"))
            .arg("-out")
            .arg(&cert),
    );
    let sent = token.path("sent.p7m");
    let out = token
        .p11smime(&[
            "encrypt",
            "--no-self",
            "-r",
            path_str(&cert),
            "-o",
            path_str(&sent),
            path_str(&entity),
        ])
        .output()
        .unwrap();
    assert!(!out.status.success(), "{}", report(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("1024"));
    assert!(!sent.exists());
}

/// Old mail to an RSA-1024 key on the card is still read, with a warning that says so.
#[test]
fn a_message_opened_by_a_short_rsa_key_reads_with_a_warning() {
    let dir = tempfile::tempdir().unwrap();
    let cert = dir.path().join("weak.pem");
    let key = dir.path().join("weak.key.pem");
    run_ok(
        std::process::Command::new("openssl")
            .args([
                "req", "-x509", "-newkey", "rsa:1024", "-nodes", "-days", "30",
            ])
            .args(["-subj", "/CN=Old Weak Key/emailAddress=weak@example.test"])
            .args(["-addext", "keyUsage=keyEncipherment", "-keyout"])
            .arg(&key)
            .arg("-out")
            .arg(&cert),
    );
    let spec = format!("enc:01:{}:{}", path_str(&cert), path_str(&key));
    run_ok(
        std::process::Command::new(root().join("scripts/provision-token"))
            .arg(dir.path())
            .args(["--label", "Weak", "--quiet", &spec])
            .env("P11SMIME_SOFTHSM_MODULE", softhsm_module())
            .stdin(std::process::Stdio::null()),
    );
    let conf = dir.path().join("softhsm2.conf");
    let token = TestToken { dir, conf };
    let plain = token.write("plain.in", SAMPLE);
    let msg = token.path("old.p7m");
    run_ok(
        std::process::Command::new("openssl")
            .args(["cms", "-encrypt", "-binary", "-aes256", "-in"])
            .arg(&plain)
            .arg("-out")
            .arg(&msg)
            .arg(&cert),
    );
    let out = token.decrypt(&msg);
    assert_plaintext(&out, SAMPLE, "decrypt with the RSA-1024 key");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr
            .lines()
            .any(|l| l.contains("warning") && l.contains("1024 bits")),
        "{stderr}"
    );
}
