//! Python's `cryptography` (45 or later, from the venv `scripts/install-deps` makes in
//! `target/peers-venv`, or the python `P11SMIME_PY` names) as a sender: S/MIME enveloped
//! messages from its `PKCS7EnvelopeBuilder`, in each encoding and content cipher it offers,
//! decrypted by p11smime through the SoftHSM2 token to the exact content.
//!
//! The builder offers AES-128-CBC (its default) and AES-256-CBC, RSA PKCS#1 v1.5 key transport
//! only (no OAEP), the encodings S/MIME, DER and PEM, and the options Binary (the data as it is),
//! none (lines made CRLF) and Text (a text/plain header added, lines made CRLF).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use common::*;

use std::path::PathBuf;
use std::process::Command;

/// Writes one message per case given as `label:encoding:cipher:option:recipients:data`.
const SENDER: &str = r#"
import sys
try:
    import cryptography
    from cryptography import x509
    from cryptography.hazmat.primitives.ciphers import algorithms
    from cryptography.hazmat.primitives.serialization import Encoding, pkcs7
except ImportError as e:
    sys.exit(f"{sys.executable}: {e}: run scripts/install-deps")
if int(cryptography.__version__.split(".")[0]) < 45:
    sys.exit(f"cryptography {cryptography.__version__} is too old (45 or later): run scripts/install-deps")
fixtures, out = sys.argv[1], sys.argv[2]
encodings = {"smime": Encoding.SMIME, "der": Encoding.DER, "pem": Encoding.PEM}
ciphers = {"aes128": algorithms.AES128, "aes256": algorithms.AES256}
options = {"binary": [pkcs7.PKCS7Options.Binary], "none": [], "text": [pkcs7.PKCS7Options.Text]}
for case in sys.argv[3:]:
    label, encoding, cipher, option, recipients, data = case.split(":")
    builder = pkcs7.PKCS7EnvelopeBuilder().set_data(open(f"{out}/{data}", "rb").read())
    if cipher != "default":
        builder = builder.set_content_encryption_algorithm(ciphers[cipher])
    for name in recipients.split(","):
        pem = open(f"{fixtures}/{name}.pem", "rb").read()
        builder = builder.add_recipient(x509.load_pem_x509_certificate(pem))
    message = builder.encrypt(encodings[encoding], options[option])
    open(f"{out}/{label}.p7m", "wb").write(message)
print(cryptography.__version__)
"#;

/// The venv's python, or a test failure saying how to make it.
fn python() -> PathBuf {
    let path = std::env::var_os("P11SMIME_PY")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target/peers-venv/bin/python"));
    assert!(
        path.is_file(),
        "python with cryptography>=45 not found at {}: run scripts/install-deps \
         (or set P11SMIME_PY to a python that has it)",
        path.display()
    );
    path
}

/// A mail body with LF line ends, as a program would hand it over.
const TEXT: &[u8] =
    b"Content-Type: text/plain; charset=utf-8\n\nGr\xc3\xbc\xc3\x9fe from python.\n\
    A second line, and a long one: 0123456789 0123456789 0123456789 0123456789 0123456789.\n";

/// What the builder encrypts for `option`: the data as it is, or with CRLF line ends (and a
/// text/plain header for Text).
fn expected(option: &str, data: &[u8]) -> Vec<u8> {
    if option == "binary" {
        return data.to_vec();
    }
    let mut out = if option == "text" {
        b"Content-Type: text/plain\r\n\r\n".to_vec()
    } else {
        Vec::new()
    };
    for &b in data {
        if b == b'\n' {
            out.push(b'\r');
        }
        out.push(b);
    }
    out
}

#[test]
fn cryptography_envelopes_decrypt_exactly() {
    let python = python();
    let token = TestToken::new();
    let bytes = varied_bytes(3000);
    std::fs::write(token.path("bytes.in"), &bytes).unwrap();
    std::fs::write(token.path("text.in"), TEXT).unwrap();
    let data = |name: &str| -> &[u8] { if name == "bytes.in" { &bytes } else { TEXT } };

    // label, encoding, cipher, option, recipients, data
    let cases = [
        (
            "smime-aes128",
            "smime",
            "aes128",
            "binary",
            "alice-enc",
            "bytes.in",
        ),
        (
            "der-aes128",
            "der",
            "aes128",
            "binary",
            "alice-enc",
            "bytes.in",
        ),
        (
            "pem-aes128",
            "pem",
            "aes128",
            "binary",
            "alice-enc",
            "bytes.in",
        ),
        (
            "smime-aes256",
            "smime",
            "aes256",
            "binary",
            "alice-enc",
            "bytes.in",
        ),
        (
            "der-aes256",
            "der",
            "aes256",
            "binary",
            "alice-enc",
            "bytes.in",
        ),
        (
            "pem-aes256",
            "pem",
            "aes256",
            "binary",
            "alice-enc",
            "bytes.in",
        ),
        (
            "smime-default-crlf",
            "smime",
            "default",
            "none",
            "alice-enc",
            "text.in",
        ),
        (
            "der-aes256-text",
            "der",
            "aes256",
            "text",
            "alice-enc",
            "text.in",
        ),
        (
            "smime-two-recipients",
            "smime",
            "aes256",
            "binary",
            "bob-enc,alice-enc",
            "text.in",
        ),
    ];
    let specs: Vec<String> = cases
        .iter()
        .map(|(l, e, c, o, r, d)| format!("{l}:{e}:{c}:{o}:{r}:{d}"))
        .collect();
    let out = Command::new(&python)
        .arg("-c")
        .arg(SENDER)
        .arg(fixture(""))
        .arg(token.dir.path())
        .args(&specs)
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run {}: {e}: run scripts/install-deps",
                python.display()
            )
        });
    assert!(
        out.status.success(),
        "the python sender failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let version = String::from_utf8_lossy(&out.stdout);
    assert!(!version.trim().is_empty(), "the sender printed no version");

    for (label, encoding, cipher, option, _, data_file) in cases {
        let msg = token.path(&format!("{label}.p7m"));
        let raw = std::fs::read(&msg).unwrap();
        if encoding == "smime" {
            assert!(
                contains(&raw, b"application/pkcs7-mime"),
                "{label}: not an S/MIME entity"
            );
        }
        let name = format!(
            "cryptography {} {label} ({cipher}, {option})",
            version.trim()
        );
        assert_plaintext(
            &token.decrypt(&msg),
            &expected(option, data(data_file)),
            &name,
        );
    }
}
