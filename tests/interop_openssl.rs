//! Messages written by `openssl cms` / `openssl smime`, decrypted by p11smime with the key on a
//! SoftHSM2 token: every cipher, padding, encoding and recipient form of issue 2.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use common::*;

/// One openssl invocation per case; the token decrypts each to the original bytes.
#[test]
fn every_cipher_padding_and_encoding_decrypts() {
    let token = TestToken::new();
    let enc = fixture("alice-enc.pem");
    let enc = path_str(&enc);
    let cases: Vec<(&str, Vec<&str>, Vec<&str>)> = vec![
        (
            "AES-128-CBC",
            vec!["-aes128", "-outform", "DER"],
            vec!["alice-enc.pem"],
        ),
        (
            "AES-192-CBC",
            vec!["-aes192", "-outform", "DER"],
            vec!["alice-enc.pem"],
        ),
        (
            "AES-256-CBC",
            vec!["-aes256", "-outform", "DER"],
            vec!["alice-enc.pem"],
        ),
        (
            "3DES-CBC",
            vec!["-des3", "-outform", "DER"],
            vec!["alice-enc.pem"],
        ),
        (
            "AES-128-GCM",
            vec!["-aes-128-gcm", "-outform", "DER"],
            vec!["alice-enc.pem"],
        ),
        (
            "AES-192-GCM",
            vec!["-aes-192-gcm", "-outform", "DER"],
            vec!["alice-enc.pem"],
        ),
        (
            "AES-256-GCM",
            vec!["-aes-256-gcm", "-outform", "DER"],
            vec!["alice-enc.pem"],
        ),
        (
            "AES-256-GCM streamed BER",
            vec!["-aes-256-gcm", "-stream", "-outform", "DER"],
            vec!["alice-enc.pem"],
        ),
        (
            "OAEP SHA-1",
            vec![
                "-aes256",
                "-recip",
                enc,
                "-keyopt",
                "rsa_padding_mode:oaep",
                "-outform",
                "DER",
            ],
            vec![],
        ),
        (
            "OAEP SHA-256 (raw-RSA fallback on SoftHSM2)",
            vec![
                "-aes256",
                "-recip",
                enc,
                "-keyopt",
                "rsa_padding_mode:oaep",
                "-keyopt",
                "rsa_oaep_md:sha256",
                "-outform",
                "DER",
            ],
            vec![],
        ),
        (
            "OAEP SHA-384",
            vec![
                "-aes256",
                "-recip",
                enc,
                "-keyopt",
                "rsa_padding_mode:oaep",
                "-keyopt",
                "rsa_oaep_md:sha384",
                "-outform",
                "DER",
            ],
            vec![],
        ),
        (
            "OAEP SHA-512 with MGF1 SHA-1",
            vec![
                "-aes256",
                "-recip",
                enc,
                "-keyopt",
                "rsa_padding_mode:oaep",
                "-keyopt",
                "rsa_oaep_md:sha512",
                "-keyopt",
                "rsa_mgf1_md:sha1",
                "-outform",
                "DER",
            ],
            vec![],
        ),
        (
            "OAEP SHA-256 with a label",
            vec![
                "-aes128",
                "-recip",
                enc,
                "-keyopt",
                "rsa_padding_mode:oaep",
                "-keyopt",
                "rsa_oaep_md:sha256",
                "-keyopt",
                "rsa_oaep_label:74657374",
                "-outform",
                "DER",
            ],
            vec![],
        ),
        (
            "OAEP SHA-1 with a label",
            vec![
                "-aes128",
                "-recip",
                enc,
                "-keyopt",
                "rsa_padding_mode:oaep",
                "-keyopt",
                "rsa_oaep_label:0102",
                "-outform",
                "DER",
            ],
            vec![],
        ),
        (
            "streamed BER",
            vec!["-aes256", "-stream", "-outform", "DER"],
            vec!["alice-enc.pem"],
        ),
        (
            "PEM",
            vec!["-aes256", "-outform", "PEM"],
            vec!["alice-enc.pem"],
        ),
        (
            "streamed PEM",
            vec!["-aes256", "-stream", "-outform", "PEM"],
            vec!["alice-enc.pem"],
        ),
        (
            "S/MIME entity",
            vec!["-aes256", "-outform", "SMIME"],
            vec!["alice-enc.pem"],
        ),
        (
            "streamed S/MIME entity",
            vec!["-aes256", "-stream", "-outform", "SMIME"],
            vec!["alice-enc.pem"],
        ),
        (
            "recipient by subjectKeyIdentifier",
            vec!["-aes256", "-keyid", "-outform", "DER"],
            vec!["alice-enc.pem"],
        ),
        (
            "two recipients, ours second",
            vec!["-aes256", "-outform", "DER"],
            vec!["bob-enc.pem", "alice-enc.pem"],
        ),
        (
            "the expired retired key",
            vec!["-aes256", "-outform", "DER"],
            vec!["alice-retired.pem"],
        ),
    ];
    assert!(cases.len() >= 20, "the matrix must not shrink unnoticed");
    for (name, opts, recips) in &cases {
        let msg = openssl_encrypt(token.dir.path(), SAMPLE, opts, recips);
        assert_plaintext(&token.decrypt(&msg), SAMPLE, name);
    }
}

/// A whole RFC 5322 message from `openssl smime` (legacy x-pkcs7-mime type), with LF and CRLF
/// line endings, and the same message read from stdin.
#[test]
fn whole_mail_message_from_file_and_stdin() {
    let token = TestToken::new();
    let input = token.path("in.txt");
    std::fs::write(&input, SAMPLE).unwrap();
    let msg = token.path("mail.eml");
    run_ok(
        std::process::Command::new("openssl")
            .args(["smime", "-encrypt", "-binary", "-aes256"])
            .args(["-from", "sender@example.test", "-to", "alice@example.test"])
            .args(["-subject", "Quarterly numbers", "-in"])
            .arg(&input)
            .arg("-out")
            .arg(&msg)
            .arg(fixture("alice-enc.pem")),
    );
    let text = std::fs::read_to_string(&msg).unwrap();
    assert!(text.contains("application/x-pkcs7-mime"), "{text}");
    let crlf = token.path("mail-crlf.eml");
    std::fs::write(&crlf, text.replace("\r\n", "\n").replace('\n', "\r\n")).unwrap();
    for m in [&msg, &crlf] {
        assert_plaintext(&token.decrypt(m), SAMPLE, "mail message");
    }
    let out = token
        .p11smime(&["decrypt", "--pin", "env:TEST_PIN", "-"])
        .stdin(std::fs::File::open(&msg).unwrap())
        .output()
        .unwrap();
    assert_plaintext(&out, SAMPLE, "mail message on stdin");
}

/// An `smime.p7m` attachment inside a forwarded multipart message, and bare base64.
#[test]
fn attachment_inside_multipart_and_bare_base64() {
    use base64::Engine;
    let token = TestToken::new();
    let der = openssl_encrypt(
        token.dir.path(),
        SAMPLE,
        &["-aes128", "-outform", "DER"],
        &["alice-enc.pem"],
    );
    let b64 = base64::engine::general_purpose::STANDARD.encode(std::fs::read(&der).unwrap());
    let wrapped: String = b64
        .as_bytes()
        .chunks(76)
        .map(|c| format!("{}\n", String::from_utf8_lossy(c)))
        .collect();
    let mail = format!(
        "From: gateway@example.test\nTo: alice@example.test\nSubject: Fwd: secret\nMIME-Version: 1.0\n\
         Content-Type: multipart/mixed; boundary=\"XYZ\"\n\n--XYZ\nContent-Type: text/plain\n\n\
         See attached.\n--XYZ\nContent-Type: application/octet-stream; name=\"smime.p7m\"\n\
         Content-Disposition: attachment; filename=\"smime.p7m\"\nContent-Transfer-Encoding: base64\n\n\
         {wrapped}--XYZ--\n"
    );
    let path = token.path("forwarded.eml");
    std::fs::write(&path, &mail).unwrap();
    assert_plaintext(&token.decrypt(&path), SAMPLE, "smime.p7m attachment");
    let path = token.path("bare.b64");
    std::fs::write(&path, &wrapped).unwrap();
    assert_plaintext(&token.decrypt(&path), SAMPLE, "bare base64");
}

/// Content larger than one BER chunk and than the CBC batch, byte-exact, CBC and GCM.
#[test]
fn large_content_is_byte_exact() {
    let token = TestToken::new();
    let content: Vec<u8> = (0..3_000_000u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    for opts in [
        &["-aes256", "-stream", "-outform", "DER"][..],
        &["-aes-256-gcm", "-outform", "DER"][..],
    ] {
        let msg = openssl_encrypt(token.dir.path(), &content, opts, &["alice-enc.pem"]);
        let out = token.decrypt(&msg);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.stdout == content, "large content differs for {opts:?}");
    }
}

/// Shapes gateways produce: a binary (not base64) body with another name and no smime-type,
/// and an attachment sent as application/octet-stream whose name ends in .P7M; `inspect`
/// recognises each too.
#[test]
fn binary_transfer_encoding_and_other_names() {
    use base64::Engine;
    let token = TestToken::new();
    let der = std::fs::read(openssl_encrypt(
        token.dir.path(),
        SAMPLE,
        &["-aes128", "-outform", "DER"],
        &["alice-enc.pem"],
    ))
    .unwrap();
    let mut binary = b"From: gateway@example.test\r\nSubject: binary\r\nMIME-Version: 1.0\r\n\
        Content-Type: application/pkcs7-mime; name=\"mail.bin\"\r\n\
        Content-Transfer-Encoding: binary\r\n\r\n"
        .to_vec();
    binary.extend_from_slice(&der);
    let b64 = base64::engine::general_purpose::STANDARD.encode(&der);
    let named = format!(
        "From: gateway@example.test\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=X\r\n\r\n\
         --X\r\nContent-Type: application/octet-stream; name=\"Nachricht.P7M\"\r\n\
         Content-Transfer-Encoding: base64\r\n\r\n{b64}\r\n--X--\r\n"
    );
    for (name, msg) in [("binary.eml", binary), ("named.eml", named.into_bytes())] {
        let path = token.write(name, &msg);
        assert_plaintext(&token.decrypt(&path), SAMPLE, name);
        let out = run_ok(&mut token.p11smime(&["inspect", path_str(&path)]));
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.contains("layer 1: encrypted (envelopedData, AES-128-CBC)"),
            "{name}: {text}"
        );
        assert!(
            text.contains("Alice Key Management Certificate (id 02"),
            "{name}: {text}"
        );
    }
}
