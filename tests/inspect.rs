//! `p11smime inspect`: what a message is without a PIN (no C_Login at all, counted with
//! pkcs11-spy): layers, recipients and which token certificate matches each, cipher, signers.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use common::*;
use serde_json::Value;

const MAIL: &[u8] = b"Content-Type: text/plain\n\nhi\n";

/// Runs `inspect --json` through pkcs11-spy; returns the layers and the number of C_Login.
fn inspect(token: &TestToken, msg: &[u8], extra: &[&str]) -> (Value, usize) {
    let path = token.path("msg.eml");
    std::fs::write(&path, msg).unwrap();
    let ca = fixture("ca.pem");
    let mut args = vec!["inspect", "--json", "--ca", path_str(&ca), "--no-system-ca"];
    args.extend_from_slice(extra);
    args.push(path_str(&path));
    let log = token.path("spy.log");
    let out = token
        .p11smime(&args)
        .env("P11SMIME_MODULE", spy_module())
        .env("PKCS11SPY", softhsm_module())
        .env("PKCS11SPY_OUTPUT", &log)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let logins = std::fs::read_to_string(&log)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains("C_Login"))
        .count();
    (serde_json::from_slice(&out.stdout).unwrap(), logins)
}

#[test]
fn encrypted_message_names_its_recipients_and_the_matching_certificates() {
    let token = TestToken::new();
    let msg = openssl_piped(
        &[
            "cms",
            "-encrypt",
            "-aes-256-gcm",
            path_str(&fixture("bob-enc.pem")),
            path_str(&fixture("alice-retired.pem")),
            path_str(&fixture("alice-ec.pem")),
        ],
        MAIL,
    );
    let (layers, logins) = inspect(&token, &msg, &[]);
    assert_eq!(logins, 0, "inspect never logs in");
    let layer = &layers[0];
    assert_eq!(layer["layer"], "encrypted");
    assert_eq!(layer["content_type"], "authEnvelopedData");
    assert_eq!(layer["cipher"], "AES-256-GCM");
    let recipients = layer["recipients"].as_array().unwrap();
    assert_eq!(recipients.len(), 3);
    let matched: Vec<&str> = recipients
        .iter()
        .flat_map(|r| r["matches"].as_array().unwrap())
        .map(|m| m.as_str().unwrap())
        .collect();
    assert_eq!(matched.len(), 2, "{recipients:?}");
    assert!(
        matched
            .iter()
            .any(|m| m.starts_with("Retired Key Management Certificate 1 (id 03"))
    );
    assert!(
        matched
            .iter()
            .any(|m| m.starts_with("Alice EC Key Management Certificate (id 04"))
    );
    assert!(
        recipients
            .iter()
            .any(|r| r["matches"].as_array().unwrap().is_empty()),
        "bob is not ours"
    );
}

#[test]
fn signed_layers_are_verified_and_read_through() {
    let token = TestToken::new();
    let (cert, key) = (fixture("alice-sign.pem"), fixture("alice-sign.key.pem"));
    let signer = [
        "cms",
        "-sign",
        "-signer",
        path_str(&cert),
        "-inkey",
        path_str(&key),
    ];
    let signed = openssl_piped(&signer, MAIL);
    let (layers, _) = inspect(&token, &signed, &[]);
    assert_eq!(layers.as_array().unwrap().len(), 2, "{layers}");
    assert_eq!(layers[0]["layer"], "signed");
    assert_eq!(layers[0]["form"], "multipart/signed");
    assert_eq!(layers[0]["signers"][0]["trusted"], true);
    assert_eq!(layers[0]["signers"][0]["emails"][0], "alice@example.test");
    assert_eq!(layers[1]["layer"], "content");
    assert_eq!(layers[1]["content_type"], "text/plain");
    // Signed, then encrypted inside: the encrypted layer is as deep as inspect goes.
    let enc = openssl_piped(
        &[
            "cms",
            "-encrypt",
            "-aes128",
            path_str(&fixture("alice-enc.pem")),
        ],
        MAIL,
    );
    let outer = openssl_piped(&signer, &enc);
    let (layers, logins) = inspect(&token, &outer, &[]);
    assert_eq!(logins, 0);
    let kinds: Vec<&str> = layers
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["layer"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["signed", "encrypted"]);
}

#[test]
fn without_a_token_the_message_is_still_described() {
    let token = TestToken::new();
    let msg = openssl_piped(
        &[
            "cms",
            "-encrypt",
            "-aes128",
            path_str(&fixture("alice-enc.pem")),
        ],
        MAIL,
    );
    let path = token.path("msg.eml");
    std::fs::write(&path, &msg).unwrap();
    let out = token
        .p11smime(&["inspect", path_str(&path)])
        .env("P11SMIME_MODULE", "/nonexistent/module.so")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("layer 1: encrypted (envelopedData, AES-128-CBC)"),
        "{text}"
    );
    assert!(text.contains("no token found"), "{text}");
    // Garbage is bad input, as for every command.
    std::fs::write(&path, b"\x30\x82\x01").unwrap();
    assert_fails(
        &token
            .p11smime(&["inspect", path_str(&path)])
            .output()
            .unwrap(),
        3,
        "truncated",
    );
}
