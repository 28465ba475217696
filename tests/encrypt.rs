//! `p11smime encrypt`: what it writes decrypts with openssl for every cipher and padding, the
//! sender's copy opens with the token, `--sign` gives a signed-then-encrypted message, and
//! recipients that cannot be used are reported.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use common::*;
use std::path::{Path, PathBuf};
use std::process::Command;

const MAIL: &str = "From: alice@example.test\nTo: bob@example.test\nSubject: Reply\n\
Content-Type: text/plain; charset=utf-8\n\nDanke, Bob.\nFrom Alice\n";

fn input(token: &TestToken) -> PathBuf {
    let p = token.path("mail.txt");
    std::fs::write(&p, MAIL).unwrap();
    p
}

fn openssl_decrypt(msg: &Path, key: &str, inform: &str) -> Vec<u8> {
    run_ok(
        Command::new("openssl")
            .args(["cms", "-decrypt", "-binary", "-inform", inform, "-inkey"])
            .arg(fixture(key))
            .arg("-in")
            .arg(msg),
    )
    .stdout
}

/// The decrypted entity, decoded: what a mail client shows.
fn body_text(entity: &[u8]) -> String {
    let parsed = mail_parser::MessageParser::default().parse(entity).unwrap();
    parsed.body_text(0).unwrap().replace("\r\n", "\n")
}

#[test]
fn every_cipher_and_padding_decrypts_with_openssl_and_the_sender_copy_with_the_token() {
    let token = TestToken::new();
    let mail = input(&token);
    let bob = fixture("bob-enc.pem");
    let cases: &[&[&str]] = &[
        &["--cipher", "aes128-cbc"],
        &["--cipher", "aes192-cbc"],
        &["--cipher", "aes256-cbc"],
        &["--cipher", "aes128-gcm"],
        &["--cipher", "aes256-gcm"],
        &["--oaep"],
        &["--oaep=sha1", "--cipher", "aes128-cbc"],
        &["--oaep", "--cipher", "aes256-gcm"],
    ];
    for extra in cases {
        let out = token.path("enc.eml");
        let mut args = vec!["encrypt", "-r", path_str(&bob), "-o", path_str(&out)];
        args.extend_from_slice(extra);
        args.push(path_str(&mail));
        run_ok(&mut token.p11smime(&args));
        let text = std::fs::read_to_string(&out).unwrap();
        assert!(
            text.starts_with("From: alice@example.test\r\n"),
            "{extra:?}: outer headers kept"
        );
        let gcm = extra.iter().any(|a| a.ends_with("gcm"));
        let smime_type = if gcm {
            "smime-type=authEnveloped-data"
        } else {
            "smime-type=enveloped-data"
        };
        assert!(text.contains(smime_type), "{extra:?}");
        // Bob reads it with openssl and his own key.
        let plain = openssl_decrypt(&out, "bob-enc.key.pem", "SMIME");
        assert_eq!(body_text(&plain), "Danke, Bob.\nFrom Alice\n", "{extra:?}");
        // Alice reads her sent copy with the key on her token.
        let own = token.decrypt(&out);
        assert_plaintext(&own, &plain, &format!("{extra:?}: sender's copy"));
    }
}

#[test]
fn der_and_pem_output_and_no_self() {
    let token = TestToken::new();
    let mail = input(&token);
    let bob = fixture("bob-enc.pem");
    for (form, inform) in [("der", "DER"), ("pem", "PEM")] {
        let out = token.path("enc.p7m");
        run_ok(&mut token.p11smime(&[
            "encrypt",
            "-r",
            path_str(&bob),
            "--outform",
            form,
            "--no-self",
            "-o",
            path_str(&out),
            path_str(&mail),
        ]));
        let plain = openssl_decrypt(&out, "bob-enc.key.pem", inform);
        assert_eq!(body_text(&plain), "Danke, Bob.\nFrom Alice\n");
        // --no-self: the token cannot open it, and says whom it is for.
        let stderr = assert_fails(&token.decrypt(&out), 4, "--no-self copy");
        assert!(
            stderr.contains("Bob") || stderr.contains("serial"),
            "{stderr}"
        );
    }
}

#[test]
fn sign_then_encrypt_gives_a_verifiable_inner_signature() {
    let token = TestToken::new();
    let mail = input(&token);
    let out = token.path("signed-enc.eml");
    run_ok(&mut token.p11smime(&[
        "encrypt",
        "-r",
        path_str(&fixture("bob-enc.pem")),
        "--sign",
        "--pin",
        "env:TEST_PIN",
        "-o",
        path_str(&out),
        path_str(&mail),
    ]));
    let inner = openssl_decrypt(&out, "bob-enc.key.pem", "SMIME");
    assert!(String::from_utf8_lossy(&inner).contains("multipart/signed"));
    let inner_path = token.path("inner.eml");
    std::fs::write(&inner_path, &inner).unwrap();
    run_ok(
        Command::new("openssl")
            .args(["cms", "-verify", "-CAfile"])
            .arg(fixture("ca.pem"))
            .arg("-in")
            .arg(&inner_path),
    );
    let verified = token
        .p11smime(&[
            "verify",
            "--ca",
            path_str(&fixture("ca.pem")),
            "--no-system-ca",
            path_str(&inner_path),
        ])
        .output()
        .unwrap();
    assert!(
        verified.status.success(),
        "{}",
        String::from_utf8_lossy(&verified.stderr)
    );
}

#[test]
fn unusable_recipients_are_reported() {
    let token = TestToken::new();
    let mail = input(&token);
    let cert_dir = token.path("certs");
    std::fs::create_dir(&cert_dir).unwrap();
    let run = |args: &[&str]| {
        token
            .p11smime(args)
            .env("P11SMIME_CERT_DIR", &cert_dir)
            .output()
            .unwrap()
    };
    // An address with no certificate in the directory.
    let out = run(&["encrypt", "-r", "carol@example.test", path_str(&mail)]);
    let stderr = assert_fails(&out, 4, "unknown address");
    assert!(stderr.contains("carol@example.test"), "{stderr}");
    assert!(out.stdout.is_empty());
    // The same address once its certificate is in the directory.
    std::fs::copy(
        fixture("bob-enc.pem"),
        cert_dir.join("bob@example.test.pem"),
    )
    .unwrap();
    let out = run(&[
        "encrypt",
        "-r",
        "Bob@Example.test",
        "--no-self",
        path_str(&mail),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Neither a file nor an address.
    assert_fails(
        &run(&["encrypt", "-r", "nobody", path_str(&mail)]),
        2,
        "bad -r",
    );
    // A certificate file that holds no certificate is bad input.
    let junk = token.path("junk.pem");
    std::fs::write(&junk, "not a certificate\n").unwrap();
    assert_fails(
        &run(&[
            "encrypt",
            "-r",
            path_str(&junk),
            "--no-self",
            path_str(&mail),
        ]),
        3,
        "junk -r",
    );
    // Missing -r is a usage error.
    assert_fails(&run(&["encrypt", path_str(&mail)]), 2, "no -r");
}

/// The round a correspondent makes: verify a signed mail with --remember, then encrypt to the
/// address; the certificate kept is the one the signer named for encryption, not the signing one.
#[test]
fn remember_from_a_signature_then_encrypt_by_address() {
    let token = TestToken::new();
    let mail = input(&token);
    let cert_dir = token.path("certs");
    let signed = token.path("signed.eml");
    run_ok(&mut token.p11smime(&[
        "sign",
        "--pin",
        "env:TEST_PIN",
        "-o",
        path_str(&signed),
        path_str(&mail),
    ]));
    run_ok(
        token
            .p11smime(&[
                "verify",
                "--ca",
                path_str(&fixture("ca.pem")),
                "--no-system-ca",
                "--remember",
                path_str(&signed),
            ])
            .env("P11SMIME_CERT_DIR", &cert_dir),
    );
    let kept = std::fs::read_to_string(cert_dir.join("alice@example.test.pem")).unwrap();
    let enc = std::fs::read_to_string(fixture("alice-enc.pem")).unwrap();
    assert_eq!(
        kept.trim(),
        enc.trim(),
        "the key-management certificate is kept"
    );
    let out = token.path("to-alice.eml");
    run_ok(
        token
            .p11smime(&[
                "encrypt",
                "-r",
                "alice@example.test",
                "--no-self",
                "-o",
                path_str(&out),
                path_str(&mail),
            ])
            .env("P11SMIME_CERT_DIR", &cert_dir),
    );
    let plain = token.decrypt(&out);
    assert!(
        plain.status.success(),
        "{}",
        String::from_utf8_lossy(&plain.stderr)
    );
    assert_eq!(body_text(&plain.stdout), "Danke, Bob.\nFrom Alice\n");
}

#[test]
fn certs_export_writes_the_certificate_to_hand_out() {
    let token = TestToken::new();
    let out =
        run_ok(&mut token.p11smime(&["certs", "--export", "Alice Key Management Certificate"]));
    let enc = std::fs::read_to_string(fixture("alice-enc.pem")).unwrap();
    assert_eq!(String::from_utf8(out.stdout).unwrap().trim(), enc.trim());
    let bad = token
        .p11smime(&["certs", "--export", "id:99"])
        .output()
        .unwrap();
    assert_fails(&bad, 4, "--export naming nothing");
}

/// The recipient SET is written in DER order (X.690 §11.6: sorted by encoding), so the output
/// is the same shape on every run, whatever the random encrypted keys.
#[test]
fn recipient_infos_are_in_der_order() {
    use p11smime::cms::ber::Reader;
    let token = TestToken::new();
    let mail = input(&token);
    let out = token.path("enc.der");
    let mut orders = Vec::new();
    for _ in 0..6 {
        run_ok(&mut token.p11smime(&[
            "encrypt",
            "-r",
            path_str(&fixture("bob-enc.pem")),
            "-r",
            path_str(&fixture("alice-retired.pem")),
            "--outform",
            "der",
            "-o",
            path_str(&out),
            path_str(&mail),
        ]));
        let der = std::fs::read(&out).unwrap();
        let ci = Reader::new(&der).read("ContentInfo").unwrap();
        let mut fields = ci.children().unwrap();
        fields.read("oid").unwrap();
        let ed = fields
            .read("[0]")
            .unwrap()
            .children()
            .unwrap()
            .read("EnvelopedData")
            .unwrap();
        let mut ed_fields = ed.children().unwrap();
        ed_fields.read("version").unwrap();
        let set = ed_fields.read("recipientInfos").unwrap();
        let infos: Vec<Vec<u8>> = set
            .children()
            .unwrap()
            .map(|e| e.unwrap().raw.to_vec())
            .collect();
        assert_eq!(
            infos.len(),
            3,
            "bob, the retired certificate and the sender's own copy"
        );
        let mut sorted = infos.clone();
        sorted.sort();
        assert_eq!(infos, sorted, "not in DER order");
        // Everything but the 256-byte RSA-2048 encrypted key (random each run): who, in which order.
        orders.push(
            infos
                .iter()
                .map(|i| i[..i.len() - 256].to_vec())
                .collect::<Vec<_>>(),
        );
    }
    assert!(
        orders.windows(2).all(|w| w[0] == w[1]),
        "the order changed between runs"
    );
}

/// EC recipients get ephemeral-static ECDH (RFC 5753): openssl decrypts with the EC key for
/// every curve and cipher, and the token decrypts the same message with its own EC key.
#[test]
fn ec_recipients_on_every_curve_decrypt_with_openssl_and_the_token() {
    let token = TestToken::new();
    let mail = input(&token);
    for (cert, key, scheme) in [
        (
            "alice-ec.pem",
            "alice-ec.key.pem",
            "dhSinglePass-stdDH-sha256kdf-scheme",
        ),
        (
            "alice-ec384.pem",
            "alice-ec384.key.pem",
            "dhSinglePass-stdDH-sha384kdf-scheme",
        ),
        (
            "alice-ec521.pem",
            "alice-ec521.key.pem",
            "dhSinglePass-stdDH-sha512kdf-scheme",
        ),
    ] {
        for cipher in ["aes128-cbc", "aes256-cbc", "aes256-gcm"] {
            let out = token.path("ec.eml");
            run_ok(&mut token.p11smime(&[
                "encrypt",
                "-r",
                path_str(&fixture(cert)),
                "--no-self",
                "--cipher",
                cipher,
                "-o",
                path_str(&out),
                path_str(&mail),
            ]));
            let print = run_ok(
                Command::new("openssl")
                    .args(["cms", "-cmsout", "-print", "-in"])
                    .arg(&out),
            );
            assert!(
                String::from_utf8_lossy(&print.stdout).contains(scheme),
                "{cert} {cipher}: {scheme}"
            );
            let plain = openssl_decrypt(&out, key, "SMIME");
            assert_eq!(
                body_text(&plain),
                "Danke, Bob.\nFrom Alice\n",
                "{cert} {cipher}"
            );
            assert_plaintext(
                &token.decrypt(&out),
                &plain,
                &format!("{cert} {cipher} on the token"),
            );
        }
    }
    // RSA and EC recipients together, and the own copy: each reader opens it.
    let out = token.path("mixed.eml");
    run_ok(&mut token.p11smime(&[
        "encrypt",
        "-r",
        path_str(&fixture("bob-enc.pem")),
        "-r",
        path_str(&fixture("alice-ec384.pem")),
        "-o",
        path_str(&out),
        path_str(&mail),
    ]));
    let by_bob = openssl_decrypt(&out, "bob-enc.key.pem", "SMIME");
    let by_ec = openssl_decrypt(&out, "alice-ec384.key.pem", "SMIME");
    assert_eq!(by_bob, by_ec);
    assert_plaintext(
        &token.decrypt(&out),
        &by_bob,
        "mixed recipients on the token",
    );
}

/// With the card out (the module loads, no token), encrypt still encrypts to the recipients and
/// says the sender's copy is missing; with --sign the card is required.
#[test]
fn without_the_card_encrypt_warns_about_the_own_copy() {
    let token = TestToken::new();
    let mail = input(&token);
    let empty = token.path("empty");
    std::fs::create_dir_all(empty.join("tokens")).unwrap();
    let conf = empty.join("softhsm2.conf");
    std::fs::write(
        &conf,
        format!(
            "directories.tokendir = {}\nobjectstore.backend = file\n",
            empty.join("tokens").display()
        ),
    )
    .unwrap();
    let out = token.path("enc.eml");
    let bob = fixture("bob-enc.pem");
    let done = token
        .p11smime(&[
            "encrypt",
            "-r",
            path_str(&bob),
            "-o",
            path_str(&out),
            path_str(&mail),
        ])
        .env("SOFTHSM2_CONF", &conf)
        .output()
        .unwrap();
    assert!(
        done.status.success(),
        "{}",
        String::from_utf8_lossy(&done.stderr)
    );
    assert!(
        String::from_utf8_lossy(&done.stderr).contains("the sent copy is not encrypted to you")
    );
    assert_eq!(
        body_text(&openssl_decrypt(&out, "bob-enc.key.pem", "SMIME")),
        "Danke, Bob.\nFrom Alice\n"
    );
    let signed = token
        .p11smime(&[
            "encrypt",
            "-r",
            path_str(&bob),
            "--sign",
            "--pin",
            "env:TEST_PIN",
            path_str(&mail),
        ])
        .env("SOFTHSM2_CONF", &conf)
        .output()
        .unwrap();
    assert_fails(&signed, 6, "--sign without the card");
}

/// A path that is a pipe (`<(...)` in a shell, /dev/stdin) is read once, as stdin is: the input
/// has no length to plan with and cannot be read twice.
#[test]
fn a_pipe_given_as_the_input_path() {
    use std::io::Write;
    use std::process::Stdio;
    let token = TestToken::new();
    let out = token.path("enc.p7m");
    let mut child = token
        .p11smime(&[
            "encrypt",
            "-r",
            path_str(&fixture("bob-enc.pem")),
            "--outform",
            "der",
            "--no-self",
            "-o",
            path_str(&out),
            "/dev/stdin",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(MAIL.as_bytes())
        .unwrap();
    let result = child.wait_with_output().unwrap();
    assert!(result.status.success(), "{}", report(&result));
    let plain = openssl_decrypt(&out, "bob-enc.key.pem", "DER");
    assert_eq!(body_text(&plain), "Danke, Bob.\nFrom Alice\n");
}
