//! `p11smime sign` through the SoftHSM2 token, checked by `openssl cms -verify` and
//! `openssl smime -verify`: every form and algorithm, the signed attributes, the PIN
//! behaviour of a CAC-like always-authenticate key, and content that must survive byte for byte.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use common::*;
use mail_parser::{MessageParser, MimeHeaders};
use std::path::{Path, PathBuf};
use std::process::Command;

const MAIL: &str = "From: alice@example.test\nTo: bob@example.test\nSubject: Quarterly\nDate: Sun, 22 Nov 2026 05:00:00 +0000\nMessage-ID: <q1@example.test>\nContent-Type: text/plain; charset=utf-8\n\nGrüße aus Köln.\nFrom the card, with a long line: LONGLINE\n";

fn mail() -> String {
    MAIL.replace("LONGLINE", &"x".repeat(1200))
}

fn sign(token: &TestToken, args: &[&str], input: &Path, out: &Path) {
    let mut all = vec!["sign", "--pin", "env:TEST_PIN", "-o", path_str(out)];
    all.extend_from_slice(args);
    all.push(path_str(input));
    run_ok(&mut token.p11smime(&all));
}

fn openssl_verify(args: &[&str], input: &Path) -> std::process::Output {
    let mut cmd = Command::new("openssl");
    cmd.args(["cms", "-verify", "-CAfile"])
        .arg(fixture("ca.pem"))
        .args(args)
        .arg("-in")
        .arg(input);
    run_ok(&mut cmd)
}

fn write_input(token: &TestToken, text: &str) -> PathBuf {
    let p = token.path("mail.txt");
    std::fs::write(&p, text).unwrap();
    p
}

#[test]
fn clear_signed_message_verifies_and_keeps_the_outer_headers() {
    let token = TestToken::new();
    let input = write_input(&token, &mail());
    let out = token.path("signed.eml");
    sign(&token, &[], &input, &out);
    let text = std::fs::read_to_string(&out).unwrap();
    for h in [
        "From: alice@example.test\r\n",
        "To: bob@example.test\r\n",
        "Subject: Quarterly\r\n",
        "Message-ID: <q1@example.test>\r\n",
    ] {
        assert!(
            text.starts_with("From: ") && text.contains(h),
            "missing {h:?} in\n{text}"
        );
    }
    assert!(
        text.contains("multipart/signed; protocol=\"application/pkcs7-signature\"; micalg=sha-256")
    );
    assert!(
        !text.replace("\r\n", "").contains('\n'),
        "only CRLF line endings"
    );
    assert!(text.is_ascii(), "7-bit output");
    assert!(text.lines().all(|l| l.len() <= 998));

    let verified = openssl_verify(&[], &out).stdout;
    run_ok(
        Command::new("openssl")
            .args(["smime", "-verify", "-purpose", "smimesign", "-CAfile"])
            .arg(fixture("ca.pem"))
            .arg("-in")
            .arg(&out)
            .arg("-out")
            .arg(token.path("smime-out")),
    );
    // What openssl verified decodes back to the original text.
    let entity = MessageParser::default().parse(&verified).unwrap();
    let body = entity.body_text(0).unwrap();
    assert_eq!(
        body.replace("\r\n", "\n"),
        mail().split("\n\n").nth(1).unwrap()
    );
}

#[test]
fn opaque_pem_der_pss_and_digests_verify() {
    let token = TestToken::new();
    let input = write_input(&token, &mail());
    let cases: Vec<(&str, Vec<&str>, Vec<&str>)> = vec![
        ("opaque message", vec!["--opaque"], vec![]),
        (
            "opaque DER",
            vec!["--opaque", "--outform", "der"],
            vec!["-inform", "DER"],
        ),
        (
            "opaque PEM",
            vec!["--opaque", "--outform", "pem"],
            vec!["-inform", "PEM"],
        ),
        ("SHA-384", vec!["--digest", "sha384"], vec![]),
        ("SHA-512", vec!["--digest", "sha512"], vec![]),
        ("RSA-PSS SHA-256", vec!["--pss"], vec![]),
        (
            "RSA-PSS SHA-512",
            vec!["--pss", "--digest", "sha512"],
            vec![],
        ),
    ];
    for (name, args, verify_args) in cases {
        let out = token.path("out");
        sign(&token, &args, &input, &out);
        let verified = openssl_verify(&verify_args, &out);
        assert!(
            String::from_utf8_lossy(&verified.stdout).contains("Gr=C3=BC=C3=9Fe"),
            "{name}: content"
        );
    }
}

#[test]
fn detached_der_signature_verifies_against_the_signed_entity() {
    let token = TestToken::new();
    let input = write_input(&token, &mail());
    let message = token.path("signed.eml");
    sign(&token, &[], &input, &message);
    // The first part of the multipart/signed, exactly as sent, is what the signature covers.
    let raw = std::fs::read(&message).unwrap();
    let parsed = MessageParser::default().parse(&raw).unwrap();
    let first = &parsed.parts[1];
    let content = token.path("content");
    std::fs::write(
        &content,
        &raw[first.offset_header as usize..first.offset_end as usize],
    )
    .unwrap();
    let sig = token.path("sig.p7s");
    sign(&token, &["--outform", "der"], &input, &sig);
    openssl_verify(
        &["-inform", "DER", "-binary", "-content", path_str(&content)],
        &sig,
    );
}

#[test]
fn ecdsa_signature_from_the_ec_key_verifies() {
    let token = TestToken::new();
    let input = write_input(&token, &mail());
    let out = token.path("ec.eml");
    sign(&token, &["--key", "id:04"], &input, &out);
    // The fixture EC certificate is for key agreement; openssl checks the signature itself.
    openssl_verify(&["-purpose", "any"], &out);
    let print = run_ok(
        Command::new("openssl")
            .args(["cms", "-cmsout", "-print", "-in"])
            .arg(&out),
    );
    assert!(String::from_utf8_lossy(&print.stdout).contains("ecdsa-with-SHA256"));
}

#[test]
fn signed_attributes_name_the_encryption_certificate_and_capabilities() {
    let token = TestToken::new();
    let input = write_input(&token, &mail());
    let out = token.path("signed.der");
    sign(&token, &["--opaque", "--outform", "der"], &input, &out);
    let print = run_ok(
        Command::new("openssl")
            .args(["cms", "-cmsout", "-print", "-inform", "DER", "-in"])
            .arg(&out),
    );
    let text = String::from_utf8_lossy(&print.stdout);
    for attr in [
        "contentType",
        "signingTime",
        "messageDigest",
        "S/MIME Capabilities",
        "id-smime-aa-encrypKeyPref",
        "1.3.6.1.4.1.311.16.4",
    ] {
        assert!(text.contains(attr), "missing {attr} in\n{text}");
    }
    // The key-management certificate travels with the signature, so replies can use it.
    let certs = token.path("certs.pem");
    run_ok(
        Command::new("openssl")
            .args(["pkcs7", "-print_certs", "-inform", "DER", "-in"])
            .arg(&out)
            .arg("-out")
            .arg(&certs),
    );
    let certs = std::fs::read_to_string(&certs).unwrap();
    assert_eq!(certs.matches("BEGIN CERTIFICATE").count(), 2, "{certs}");
    let enc = std::fs::read_to_string(fixture("alice-enc.pem")).unwrap();
    let body = |pem: &str| {
        pem.lines()
            .filter(|l| !l.starts_with("-----"))
            .collect::<String>()
    };
    assert!(body(&certs).contains(&body(&enc)));
}

#[test]
fn always_authenticate_key_logs_in_twice_and_a_wrong_pin_once() {
    let token = TestToken::new();
    let input = write_input(&token, &mail());
    let log = token.path("spy.log");
    let spy = |pin_var: &str, pin: &str, output: &Path| {
        let _ = std::fs::remove_file(&log);
        let out = token
            .p11smime(&[
                "sign",
                "--pin",
                &format!("env:{pin_var}"),
                "-o",
                path_str(output),
                path_str(&input),
            ])
            .env(pin_var, pin)
            .env("P11SMIME_MODULE", spy_module())
            .env("PKCS11SPY", softhsm_module())
            .env("PKCS11SPY_OUTPUT", &log)
            .output()
            .unwrap();
        let calls: Vec<String> = std::fs::read_to_string(&log)
            .unwrap()
            .lines()
            .filter(|l| l.contains(": C_"))
            .map(|l| l.split(": ").nth(1).unwrap_or_default().trim().to_string())
            .collect();
        (out, calls)
    };
    let (out, calls) = spy("GOOD_PIN", PIN, &token.path("good.eml"));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let logins = calls.iter().filter(|c| *c == "C_Login").count();
    assert_eq!(
        logins, 2,
        "user login plus the context-specific one: {calls:?}"
    );
    let init = calls.iter().position(|c| c == "C_SignInit").unwrap();
    assert_eq!(
        calls[init + 1],
        "C_Login",
        "context login right after C_SignInit"
    );

    let failed_output = token.path("bad.eml");
    let (out, calls) = spy("BAD_PIN", "000000", &failed_output);
    let stderr = assert_fails(&out, 5, "wrong PIN for signing");
    assert_eq!(calls.iter().filter(|c| *c == "C_Login").count(), 1);
    assert!(!calls.iter().any(|c| c.starts_with("C_Sign")));
    assert!(!stderr.contains("000000"));
    assert!(!failed_output.exists(), "no output file after a failure");
}

#[test]
fn multipart_with_binary_attachment_survives_byte_for_byte() {
    let token = TestToken::new();
    let attachment = varied_bytes(50_000);
    let mut raw = "From: alice@example.test\nSubject: drawing\nMIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=\"zz\"\n\n--zz\nContent-Type: text/plain; charset=utf-8\n\nSee the drawing. Übersicht attached.\n--zz\nContent-Type: application/octet-stream; name=\"part.bin\"\nContent-Disposition: attachment; filename=\"part.bin\"\nContent-Transfer-Encoding: binary\n\n".as_bytes().to_vec();
    raw.extend_from_slice(&attachment);
    raw.extend_from_slice(b"\n--zz--\n");
    let input = token.path("mixed.eml");
    std::fs::write(&input, &raw).unwrap();
    let out = token.path("signed.eml");
    sign(&token, &[], &input, &out);
    let verified = openssl_verify(&[], &out).stdout;
    let entity = MessageParser::default().parse(&verified).unwrap();
    let att = entity
        .attachments()
        .find(|a| a.attachment_name() == Some("part.bin"))
        .expect("the attachment is still there");
    assert!(
        att.contents() == attachment.as_slice(),
        "attachment bytes changed"
    );
    assert_eq!(
        entity.body_text(0).unwrap().trim_end(),
        "See the drawing. Übersicht attached."
    );
}

#[test]
fn no_usable_key_and_no_pin_are_reported() {
    let token = TestToken::new();
    let input = write_input(&token, &mail());
    let out = token
        .p11smime(&[
            "sign",
            "--pin",
            "env:TEST_PIN",
            "--key",
            "id:77",
            path_str(&input),
        ])
        .output()
        .unwrap();
    assert_fails(&out, 4, "--key naming nothing");
    assert!(out.stdout.is_empty());
    let out = token
        .p11smime(&["sign", "--pin", "env:NO_SUCH_VAR", path_str(&input)])
        .output()
        .unwrap();
    assert_fails(&out, 5, "PIN source missing");
    assert!(out.stdout.is_empty());
}

/// A signed message saved with LF line endings (an mbox, a mail client's "save as") still
/// verifies, as with openssl: the signed part is canonicalised to CRLF. A changed byte still fails.
#[test]
fn a_signed_message_saved_with_lf_endings_verifies() {
    let token = TestToken::new();
    let input = write_input(&token, &mail());
    let out = token.path("signed.eml");
    sign(&token, &[], &input, &out);
    let lf = std::fs::read_to_string(&out).unwrap().replace("\r\n", "\n");
    let saved = token.write("saved-lf.eml", lf.as_bytes());
    let ca = fixture("ca.pem");
    let verify = |p: &Path| {
        token
            .p11smime(&[
                "verify",
                "--ca",
                path_str(&ca),
                "--no-system-ca",
                path_str(p),
            ])
            .output()
            .unwrap()
    };
    let good = verify(&saved);
    assert!(
        good.status.success(),
        "{}",
        String::from_utf8_lossy(&good.stderr)
    );
    let changed = token.write(
        "changed-lf.eml",
        lf.replacen("Gr=C3=BC", "Gr=C3=BD", 1).as_bytes(),
    );
    assert_fails(
        &verify(&changed),
        7,
        "a changed byte in an LF-saved message",
    );
}
