//! The shapes nested mail arrives in, through `decrypt` (one layer, the default), `--unwrap`
//! (every layer, each signature verified) and `--message` (the mail's own headers on top):
//! signed-then-encrypted, encrypted-then-signed, opaque signed-data inside, triple wrap, and an
//! encrypted attachment forwarded inside an ordinary multipart. Messages are made by openssl
//! and by p11smime itself, decrypted by the token.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use common::*;
use std::path::{Path, PathBuf};

const MAIL: &str = "From: alice@example.test\nTo: bob@example.test\nSubject: Nested\n\
Date: Sun, 22 Nov 2026 05:00:00 +0000\nMessage-ID: <n1@example.test>\n\
Content-Type: text/plain; charset=utf-8\n\nInner text.\n";

fn sign_opts(extra: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = ["cms", "-sign", "-signer"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    v.push(path_str(&fixture("alice-sign.pem")).into());
    v.push("-inkey".into());
    v.push(path_str(&fixture("alice-sign.key.pem")).into());
    v.extend(extra.iter().map(|s| s.to_string()));
    v
}

fn encrypt_opts() -> Vec<String> {
    vec![
        "cms".into(),
        "-encrypt".into(),
        "-aes256".into(),
        path_str(&fixture("alice-enc.pem")).into(),
    ]
}

fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

fn write(token: &TestToken, name: &str, bytes: &[u8]) -> PathBuf {
    let p = token.path(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

fn decrypt(token: &TestToken, msg: &Path, extra: &[&str]) -> std::process::Output {
    let ca = fixture("ca.pem");
    let mut args = vec!["decrypt", "--pin", "env:TEST_PIN"];
    args.extend_from_slice(extra);
    if extra.contains(&"--unwrap") {
        args.extend_from_slice(&["--ca", path_str(&ca), "--no-system-ca"]);
    }
    args.push(path_str(msg));
    token.p11smime(&args).output().unwrap()
}

fn text_of(entity: &[u8]) -> String {
    let parsed = mail_parser::MessageParser::default().parse(entity).unwrap();
    parsed.body_text(0).unwrap().replace("\r\n", "\n")
}

#[test]
fn signed_then_encrypted_by_p11smime() {
    let token = TestToken::new();
    let input = write(&token, "mail.txt", MAIL.as_bytes());
    let msg = token.path("se.eml");
    run_ok(&mut token.p11smime(&[
        "encrypt",
        "-r",
        path_str(&fixture("alice-enc.pem")),
        "--no-self",
        "--sign",
        "--pin",
        "env:TEST_PIN",
        "-o",
        path_str(&msg),
        path_str(&input),
    ]));
    // Default: one layer off; the signed entity stays signed for the mail client.
    let one = decrypt(&token, &msg, &[]);
    assert!(
        one.status.success(),
        "{}",
        String::from_utf8_lossy(&one.stderr)
    );
    assert!(String::from_utf8_lossy(&one.stdout).contains("multipart/signed"));
    // --unwrap: to the text, both layers reported.
    let all = decrypt(&token, &msg, &["--unwrap"]);
    assert!(
        all.status.success(),
        "{}",
        String::from_utf8_lossy(&all.stderr)
    );
    assert_eq!(text_of(&all.stdout), "Inner text.\n");
    let stderr = String::from_utf8_lossy(&all.stderr);
    assert!(
        stderr.contains("layer: encrypted with AES-256-CBC"),
        "{stderr}"
    );
    assert!(
        stderr.contains("layer: signed by alice@example.test (good, trusted)"),
        "{stderr}"
    );
    // --message: the mail's own headers over the readable entity.
    let readable = decrypt(&token, &msg, &["--unwrap", "--message"]);
    let text = String::from_utf8(readable.stdout).unwrap();
    for h in [
        "From: alice@example.test\r\n",
        "Subject: Nested\r\n",
        "Message-ID: <n1@example.test>\r\n",
    ] {
        assert!(text.contains(h), "missing {h:?} in\n{text}");
    }
    assert_eq!(text_of(text.as_bytes()), "Inner text.\n");
    assert!(!text.contains("pkcs7"), "no S/MIME layer left:\n{text}");
}

#[test]
fn encrypted_then_signed_by_openssl_and_a_bad_signature_stops() {
    let token = TestToken::new();
    let enc = openssl_piped(&strs(&encrypt_opts()), MAIL.as_bytes());
    let signed = openssl_piped(&strs(&sign_opts(&[])), &enc);
    let msg = write(&token, "es.eml", &signed);
    let all = decrypt(&token, &msg, &["--unwrap"]);
    assert!(
        all.status.success(),
        "{}",
        String::from_utf8_lossy(&all.stderr)
    );
    assert_eq!(text_of(&all.stdout), "Inner text.\n");

    // The same message with no trust anchor: exit 7, and -o writes nothing.
    let out = token.path("out.eml");
    let bad = token
        .p11smime(&[
            "decrypt",
            "--pin",
            "env:TEST_PIN",
            "--unwrap",
            "--no-system-ca",
            "-o",
            path_str(&out),
            path_str(&msg),
        ])
        .output()
        .unwrap();
    let stderr = assert_fails(&bad, 7, "untrusted signature layer");
    assert!(stderr.contains("layer 1 is signed"), "{stderr}");
    assert!(!out.exists(), "nothing written after a failed signature");
    // --no-verify reads on, and says so.
    let on = token
        .p11smime(&[
            "decrypt",
            "--pin",
            "env:TEST_PIN",
            "--unwrap",
            "--no-verify",
            "--no-system-ca",
            path_str(&msg),
        ])
        .output()
        .unwrap();
    assert!(
        on.status.success(),
        "{}",
        String::from_utf8_lossy(&on.stderr)
    );
    assert!(String::from_utf8_lossy(&on.stderr).contains("NOT verified"));
    assert_eq!(text_of(&on.stdout), "Inner text.\n");

    // A changed byte in the signed layer: exit 7 even with the right anchor.
    let text = String::from_utf8_lossy(&signed).to_string();
    assert!(text.contains("name=\"smime.p7m\""), "{text}");
    let tampered = text.replacen("name=\"smime.p7m\"", "name=\"smime.p7M\"", 1);
    let msg2 = write(&token, "tampered.eml", tampered.as_bytes());
    let bad = decrypt(&token, &msg2, &["--unwrap"]);
    let stderr = assert_fails(&bad, 7, "changed byte in the signed layer");
    assert!(stderr.contains("changed"), "{stderr}");
    assert!(bad.stdout.is_empty());
}

#[test]
fn opaque_signed_inside_encrypted_and_triple_wrap() {
    let token = TestToken::new();
    // Opaque signed-data inside an encryption layer.
    let opaque = openssl_piped(&strs(&sign_opts(&["-nodetach"])), MAIL.as_bytes());
    let enc = openssl_piped(&strs(&encrypt_opts()), &opaque);
    let msg = write(&token, "opaque-in-enc.eml", &enc);
    let all = decrypt(&token, &msg, &["--unwrap"]);
    assert!(
        all.status.success(),
        "{}",
        String::from_utf8_lossy(&all.stderr)
    );
    assert_eq!(text_of(&all.stdout), "Inner text.\n");
    // Triple wrap: signed, encrypted, signed again.
    let inner = openssl_piped(&strs(&sign_opts(&[])), MAIL.as_bytes());
    let enc = openssl_piped(&strs(&encrypt_opts()), &inner);
    let outer = openssl_piped(&strs(&sign_opts(&[])), &enc);
    let msg = write(&token, "triple.eml", &outer);
    let all = decrypt(&token, &msg, &["--unwrap"]);
    assert!(
        all.status.success(),
        "{}",
        String::from_utf8_lossy(&all.stderr)
    );
    assert_eq!(text_of(&all.stdout), "Inner text.\n");
    let stderr = String::from_utf8_lossy(&all.stderr);
    assert_eq!(stderr.matches("layer: signed by").count(), 2, "{stderr}");
    assert_eq!(stderr.matches("layer: encrypted").count(), 1, "{stderr}");
}

#[test]
fn a_forwarded_encrypted_attachment_is_one_layer() {
    use base64::Engine;
    let token = TestToken::new();
    let enc = openssl_piped(
        &[
            "cms",
            "-encrypt",
            "-aes128",
            "-outform",
            "DER",
            path_str(&fixture("alice-enc.pem")),
        ],
        MAIL.as_bytes(),
    );
    let b64 = base64::engine::general_purpose::STANDARD.encode(&enc);
    let fwd = format!(
        "From: gateway@example.test\nSubject: Fwd: nested\nMIME-Version: 1.0\n\
         Content-Type: multipart/mixed; boundary=\"F\"\n\n--F\nContent-Type: text/plain\n\nForwarded.\n\
         --F\nContent-Type: application/pkcs7-mime; smime-type=enveloped-data; name=\"smime.p7m\"\n\
         Content-Transfer-Encoding: base64\n\n{b64}\n--F--\n"
    );
    let msg = write(&token, "fwd.eml", fwd.as_bytes());
    let all = decrypt(&token, &msg, &["--unwrap", "--message"]);
    assert!(
        all.status.success(),
        "{}",
        String::from_utf8_lossy(&all.stderr)
    );
    let text = String::from_utf8(all.stdout).unwrap();
    assert!(
        text.starts_with("From: gateway@example.test\r\nSubject: Fwd: nested\r\n"),
        "{text}"
    );
    assert_eq!(text_of(text.as_bytes()), "Inner text.\n");
}
