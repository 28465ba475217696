//! Batches: files, a plain directory, a Maildir and an mbox decrypted into an output directory
//! with one login (counted with pkcs11-spy), readable messages in the mailboxes, unencrypted
//! messages copied unchanged, failures reported while the batch goes on (exit 8), nothing
//! overwritten, and a PIN failure that stops the batch with the rest reported.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use common::*;
use serde_json::Value;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

fn message(n: usize) -> String {
    format!(
        "From: sender{n}@example.test\nSubject: message {n}\nContent-Type: text/plain\n\nBody number {n}.\nFrom the archive.\n"
    )
}

fn encrypt_to(token: &TestToken, cert: &str, plain: &str) -> Vec<u8> {
    let input = token.write("plain.tmp", plain.as_bytes());
    run_ok(
        Command::new("openssl")
            .args(["cms", "-encrypt", "-aes128", "-in"])
            .arg(&input)
            .arg(fixture(cert)),
    )
    .stdout
}

struct Mail {
    inputs: Vec<PathBuf>,
}

/// Three encrypted files, a plain one and one for bob in `in/`; a Maildir `in/box` with two
/// encrypted messages and a plain one; an mbox with encrypted, plain, encrypted.
fn mail(token: &TestToken) -> Mail {
    let dir = token.path("in");
    std::fs::create_dir_all(&dir).unwrap();
    let mut inputs = Vec::new();
    for n in 1..=3 {
        let p = dir.join(format!("m{n}.eml"));
        std::fs::write(&p, encrypt_to(token, "alice-enc.pem", &message(n))).unwrap();
        inputs.push(p);
    }
    let plain = dir.join("plain.eml");
    std::fs::write(&plain, message(4)).unwrap();
    inputs.push(plain);
    let bob = dir.join("for-bob.eml");
    std::fs::write(&bob, encrypt_to(token, "bob-enc.pem", &message(5))).unwrap();
    inputs.push(bob);

    let maildir = dir.join("box");
    for sub in ["cur", "new", "tmp"] {
        std::fs::create_dir_all(maildir.join(sub)).unwrap();
    }
    std::fs::write(
        maildir.join("cur/1700000000.1.host:2,S"),
        encrypt_to(token, "alice-enc.pem", &message(6)),
    )
    .unwrap();
    std::fs::write(
        maildir.join("new/1700000001.2.host"),
        encrypt_to(token, "alice-retired.pem", &message(7)),
    )
    .unwrap();
    std::fs::write(maildir.join("cur/1700000002.3.host:2,"), message(8)).unwrap();
    inputs.push(maildir);

    let mut mbox = Vec::new();
    for (n, encrypted) in [(9, true), (10, false), (11, true)] {
        mbox.extend_from_slice(b"From sender@example.test Sun Nov 22 05:00:00 2026\n");
        if encrypted {
            mbox.extend_from_slice(&encrypt_to(token, "alice-enc.pem", &message(n)));
        } else {
            mbox.extend_from_slice(message(n).as_bytes());
        }
        mbox.extend_from_slice(b"\n");
    }
    let mbox_path = dir.join("archive.mbox");
    std::fs::write(&mbox_path, mbox).unwrap();
    inputs.push(mbox_path);
    Mail { inputs }
}

fn run_batch(
    token: &TestToken,
    out: &Path,
    inputs: &[PathBuf],
    pin_env: &str,
) -> (std::process::Output, usize) {
    let log = token.path("spy.log");
    let _ = std::fs::remove_file(&log);
    let pin = format!("env:{pin_env}");
    let mut args = vec![
        "decrypt",
        "--pin",
        pin.as_str(),
        "--json",
        "--out-dir",
        path_str(out),
    ];
    args.extend(inputs.iter().map(|p| path_str(p)));
    let result = token
        .p11smime(&args)
        .env("P11SMIME_MODULE", spy_module())
        .env("PKCS11SPY", softhsm_module())
        .env("PKCS11SPY_OUTPUT", &log)
        .env("WRONG_PIN", "000000")
        .output()
        .unwrap();
    let logins = std::fs::read_to_string(&log)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains("C_Login"))
        .count();
    (result, logins)
}

fn body(path: &Path) -> String {
    let raw = std::fs::read(path).unwrap();
    let parsed = mail_parser::MessageParser::default().parse(&raw).unwrap();
    parsed.body_text(0).unwrap().replace("\r\n", "\n")
}

#[test]
fn a_whole_archive_with_one_login() {
    let token = TestToken::new();
    let m = mail(&token);
    let out = token.path("out");
    let (result, logins) = run_batch(&token, &out, &m.inputs, "TEST_PIN");
    let stderr = String::from_utf8_lossy(&result.stderr);
    assert_eq!(
        result.status.code(),
        Some(8),
        "one message was for bob: {stderr}"
    );
    assert_eq!(logins, 1, "one login for the whole batch");
    assert!(
        stderr.contains("for-bob.eml: this message is not encrypted to any key on the token"),
        "{stderr}"
    );
    let report: Value = serde_json::from_slice(&result.stdout).unwrap();
    assert_eq!(report["decrypted"], 7, "{report}");
    assert_eq!(report["copied"], 3, "{report}");
    assert_eq!(report["failed"], 1, "{report}");

    // Files: the decrypted content under the same name, 0600; the plain one unchanged.
    for n in 1..=3 {
        let p = out.join(format!("m{n}.eml"));
        assert_eq!(body(&p), format!("Body number {n}.\nFrom the archive.\n"));
        assert_eq!(
            std::fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }
    assert_eq!(
        std::fs::read_to_string(out.join("plain.eml")).unwrap(),
        message(4)
    );
    assert!(
        !out.join("for-bob.eml").exists(),
        "a failed file leaves nothing"
    );

    // The Maildir: same structure and names, readable messages, the plain one unchanged.
    assert!(out.join("box/tmp").is_dir());
    assert_eq!(
        body(&out.join("box/cur/1700000000.1.host:2,S")),
        "Body number 6.\nFrom the archive.\n"
    );
    assert_eq!(
        body(&out.join("box/new/1700000001.2.host")),
        "Body number 7.\nFrom the archive.\n"
    );
    assert_eq!(
        std::fs::read_to_string(out.join("box/cur/1700000002.3.host:2,")).unwrap(),
        message(8)
    );
    assert_eq!(
        std::fs::read_dir(out.join("box/tmp")).unwrap().count(),
        0,
        "tmp/ is left empty"
    );

    // The mbox: three messages again, readable, with their From lines.
    let mbox = std::fs::read_to_string(out.join("archive.mbox")).unwrap();
    assert_eq!(
        mbox.matches("From sender@example.test Sun Nov 22").count(),
        3,
        "{mbox}"
    );
    assert!(mbox.contains("Body number 9."), "{mbox}");
    assert!(mbox.contains("Body number 11."), "{mbox}");
    assert!(!mbox.contains("pkcs7"), "no encrypted message left: {mbox}");
    // A line starting "From " inside a message is quoted, so the mbox still has three messages.
    assert!(mbox.contains("\n>From the archive."), "{mbox}");

    // Again into the same directory: nothing is overwritten.
    let (again, _) = run_batch(&token, &out, &m.inputs[..1], "TEST_PIN");
    assert!(
        again.status.success(),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
    assert!(out.join("m1.1.eml").exists());
    assert_eq!(
        body(&out.join("m1.eml")),
        "Body number 1.\nFrom the archive.\n"
    );
}

#[test]
fn a_wrong_pin_stops_the_batch_after_one_attempt() {
    let token = TestToken::new();
    let m = mail(&token);
    let out = token.path("out");
    let (result, logins) = run_batch(&token, &out, &m.inputs, "WRONG_PIN");
    assert_fails(&result, 5, "wrong PIN in a batch");
    assert_eq!(
        logins, 1,
        "one wrong PIN is one attempt, never retried per message"
    );
    let report: Value = serde_json::from_slice(&result.stdout).unwrap();
    assert_eq!(report["decrypted"], 0);
    assert!(report["not_processed"].as_u64().unwrap() >= 5, "{report}");
    assert!(
        report["stopped"]
            .as_str()
            .unwrap()
            .contains("PIN incorrect"),
        "{report}"
    );
}

#[test]
fn batch_usage_errors() {
    let token = TestToken::new();
    let a = token.write("a.eml", b"x");
    let b = token.write("b.eml", b"x");
    // Several inputs without --out-dir.
    let out = token
        .p11smime(&["decrypt", path_str(&a), path_str(&b)])
        .output()
        .unwrap();
    let stderr = assert_fails(&out, 2, "several inputs, no --out-dir");
    assert!(stderr.contains("--out-dir"), "{stderr}");
    // -o and --out-dir together.
    let dir = token.path("o");
    let out = token
        .p11smime(&[
            "decrypt",
            "-o",
            path_str(&a),
            "--out-dir",
            path_str(&dir),
            path_str(&b),
        ])
        .output()
        .unwrap();
    assert_fails(&out, 2, "-o with --out-dir");
}

/// `--unwrap` in a batch: every layer of every message off, each signature verified; a message
/// whose signature does not hold fails (exit 8) and the batch goes on.
#[test]
fn unwrap_in_a_batch_verifies_each_message() {
    let token = TestToken::new();
    let dir = token.path("in");
    std::fs::create_dir_all(&dir).unwrap();
    let (cert, key) = (fixture("alice-sign.pem"), fixture("alice-sign.key.pem"));
    let signed = run_ok(
        Command::new("openssl")
            .args([
                "cms",
                "-sign",
                "-signer",
                path_str(&cert),
                "-inkey",
                path_str(&key),
                "-in",
            ])
            .arg(token.write("m1.txt", message(1).as_bytes())),
    )
    .stdout;
    let signed_text = String::from_utf8(signed).unwrap();
    std::fs::write(
        dir.join("signed-enc.eml"),
        encrypt_to(&token, "alice-enc.pem", &signed_text),
    )
    .unwrap();
    std::fs::write(
        dir.join("enc.eml"),
        encrypt_to(&token, "alice-enc.pem", &message(2)),
    )
    .unwrap();
    let ca = fixture("ca.pem");
    let run = |out: &str, extra: &[&str]| {
        let out_dir = token.path(out);
        let mut args = vec![
            "decrypt",
            "--pin",
            "env:TEST_PIN",
            "--unwrap",
            "--no-system-ca",
            "--out-dir",
            path_str(&out_dir),
        ];
        args.extend_from_slice(extra);
        args.push(path_str(&dir));
        (token.p11smime(&args).output().unwrap(), out_dir)
    };
    let (ok, out) = run("good", &["--ca", path_str(&ca)]);
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let inner = std::fs::read_to_string(out.join("signed-enc.eml")).unwrap();
    assert!(
        !inner.contains("multipart/signed"),
        "the signed layer is off too: {inner}"
    );
    assert_eq!(
        body(&out.join("signed-enc.eml")),
        "Body number 1.\nFrom the archive.\n"
    );
    assert_eq!(
        body(&out.join("enc.eml")),
        "Body number 2.\nFrom the archive.\n"
    );
    // Without the anchor the signed message fails; the other still comes out.
    let (bad, out) = run("untrusted", &[]);
    let stderr = assert_fails(&bad, 8, "an untrusted signature in a batch");
    assert!(
        stderr.contains("signed-enc.eml") && stderr.contains("signature does not hold"),
        "{stderr}"
    );
    assert!(!out.join("signed-enc.eml").exists());
    assert_eq!(
        body(&out.join("enc.eml")),
        "Body number 2.\nFrom the archive.\n"
    );
}

/// A directory of messages on a software token is decrypted on several sessions at once (the
/// token allows it; a card in a reader gets one), still with one login and every result in
/// its place.
#[test]
fn a_directory_is_decrypted_on_several_sessions_with_one_login() {
    let token = TestToken::new();
    let dir = token.path("in");
    std::fs::create_dir_all(&dir).unwrap();
    for n in 0..40 {
        let body = format!("Content-Type: text/plain\n\nMessage {n} of the directory.\n");
        let msg = openssl_encrypt(
            token.dir.path(),
            body.as_bytes(),
            &["-aes128", "-outform", "DER"],
            &["alice-enc.pem"],
        );
        std::fs::rename(msg, dir.join(format!("m{n:02}.p7m"))).unwrap();
    }
    let out = token.path("out");
    let log = token.path("sessions.log");
    let result = token
        .spied(
            &[
                "decrypt",
                "--pin",
                "env:TEST_PIN",
                "--out-dir",
                path_str(&out),
                path_str(&dir),
            ],
            &log,
        )
        .env("P11SMIME_SESSIONS", "3")
        .output()
        .unwrap();
    assert!(result.status.success(), "{}", report(&result));
    let calls = std::fs::read_to_string(&log).unwrap();
    assert_eq!(count_calls(&calls, "C_Login"), 1, "one login");
    // The first session, then one per worker that got work (all three, in practice).
    let sessions = count_calls(&calls, "C_OpenSession");
    assert!((3..=4).contains(&sessions), "{sessions} sessions");
    for n in 0..40 {
        let got = std::fs::read_to_string(out.join(format!("m{n:02}.p7m"))).unwrap();
        assert_eq!(
            got,
            format!("Content-Type: text/plain\n\nMessage {n} of the directory.\n")
        );
    }
}
