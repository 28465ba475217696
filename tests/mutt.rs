//! The mutt recipes in `docs/mutt.md`, run as mutt runs them: each command line is read from the
//! document (so the two cannot drift apart), its `%f`/`%s`/`%c`/`%d` are filled in with real
//! files as mutt's `smime.c` fills them, and it runs under `sh -c` with the PIN and a newline on
//! stdin where mutt writes the passphrase. The results are checked the way mutt uses them, and
//! with openssl:
//!
//! * decrypt: stdout is the entity, byte for byte; nothing on stdout after a failure (mutt then
//!   says "Decryption failed" and forgets the PIN).
//! * sign: mutt writes the entity it will send to `%f` with LF line endings, already 7-bit, and
//!   attaches stdout as the signature. The signature must verify over that entity in canonical
//!   (CRLF) form: with `openssl cms -verify -content` on the LF file (openssl canonicalises
//!   without `-binary`), on the whole message as mutt sends it, and with the verify recipe.
//! * encrypt: `%c` is a space-separated list of certificate files; stdout (DER) must open with
//!   each recipient's key (openssl) and with the token (the self copy).
//! * verify: `%f` is the signed part with CRLF line endings (mutt's `crypt_write_signed`), `%s`
//!   the DER signature; mutt calls it good only with exit status 0 and a first stderr line of
//!   "Verification successful".
//! * verify opaque: `%s` is the DER signed-data; stdout is the content, and the first stderr line
//!   decides.
//! * get signer cert: `%f` is the whole message as stored (LF), `%c` the file to write.
//! * the openssl lines that involve no key (pk7out, get_cert, get_cert_email) are run too, on
//!   messages p11smime signed.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use common::mime::altered;
use common::*;

use base64::Engine;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

const DOC: &str = "docs/mutt.md";

/// Every `smime_*_command` the document sets, each exercised below.
const TESTED: &[&str] = &[
    "smime_decrypt_command",
    "smime_sign_command",
    "smime_encrypt_command",
    "smime_verify_command",
    "smime_verify_opaque_command",
    "smime_get_signer_cert_command",
    "smime_pk7out_command",
    "smime_get_cert_command",
    "smime_get_cert_email_command",
    "smime_import_cert_command",
];

/// The entity mutt writes to `%f` for `smime_sign_command` (`smime_sign_message`): made 7-bit
/// by mutt already, LF line endings, with protected headers (`crypt_protected_headers_write`)
/// and an attachment with a 950-character line, which mutt sends as it is.
fn mutt_entity() -> Vec<u8> {
    let mut e = String::from(
        "Content-Type: multipart/mixed; boundary=\"b7ZqXyWvUtSrQpOn\"; protected-headers=\"v1\"\n\
         Content-Disposition: inline\n\
         Subject: Quarterly figures\n\
         \n\
         --b7ZqXyWvUtSrQpOn\n\
         Content-Type: text/plain; charset=utf-8\n\
         Content-Disposition: inline\n\
         Content-Transfer-Encoding: quoted-printable\n\
         \n\
         Gr=C3=BC=C3=9Fe aus K=C3=B6ln,\n\
         =46rom the card.\n\
         \n\
         --b7ZqXyWvUtSrQpOn\n\
         Content-Type: text/plain; charset=us-ascii\n\
         Content-Disposition: attachment; filename=\"notes.txt\"\n\
         \n",
    );
    e.push_str(&"0123456789".repeat(95));
    e.push_str("\n\n--b7ZqXyWvUtSrQpOn--\n");
    e.into_bytes()
}

fn crlf(lf: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(lf.len() + lf.len() / 16);
    for &b in lf {
        if b == b'\n' && out.last() != Some(&b'\r') {
            out.push(b'\r');
        }
        out.push(b);
    }
    out
}

fn base64_lines(der: &[u8]) -> String {
    let text = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = String::new();
    for chunk in text.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(chunk).unwrap());
        out.push('\n');
    }
    out
}

/// The message mutt sends after signing: its headers over a multipart/signed of the entity and
/// the signature, written with LF (the MTA makes the line endings CRLF on the way).
fn mutt_signed_message(entity: &[u8], signature: &[u8]) -> Vec<u8> {
    let mut msg = b"From: Alice Tester <alice@example.test>\n\
                    To: Bob Other <bob@example.test>\n\
                    Subject: ...\n\
                    MIME-Version: 1.0\n"
        .to_vec();
    msg.extend_from_slice(signed_entity(entity, signature).as_slice());
    msg
}

/// The multipart/signed entity mutt builds around `entity` (what it encrypts for "both").
fn signed_entity(entity: &[u8], signature: &[u8]) -> Vec<u8> {
    let mut out = b"Content-Type: multipart/signed; micalg=sha-256;\n\
                    \tprotocol=\"application/x-pkcs7-signature\"; boundary=\"sIgNeD4mUtT\"\n\
                    \n\
                    This is an S/MIME signed message\n\
                    \n\
                    --sIgNeD4mUtT\n"
        .to_vec();
    out.extend_from_slice(entity);
    out.extend_from_slice(
        b"\n--sIgNeD4mUtT\n\
          Content-Type: application/x-pkcs7-signature; name=\"smime.p7s\"\n\
          Content-Transfer-Encoding: base64\n\
          Content-Disposition: attachment; filename=\"smime.p7s\"\n\
          \n",
    );
    out.extend_from_slice(base64_lines(signature).as_bytes());
    out.extend_from_slice(b"\n--sIgNeD4mUtT--\n");
    out
}

/// An opaque signed message as stored in a mailbox (LF).
fn opaque_message(der: &[u8]) -> Vec<u8> {
    let mut msg = b"From: Alice Tester <alice@example.test>\n\
                    To: Bob Other <bob@example.test>\n\
                    Subject: ...\n\
                    MIME-Version: 1.0\n\
                    Content-Type: application/x-pkcs7-mime; smime-type=signed-data; name=\"smime.p7m\"\n\
                    Content-Transfer-Encoding: base64\n\
                    Content-Disposition: attachment; filename=\"smime.p7m\"\n\
                    \n"
    .to_vec();
    msg.extend_from_slice(base64_lines(der).as_bytes());
    msg
}

// ---------------------------------------------------------------------------------------------
// The recipes

/// The value of the one `set NAME="..."` line in the document.
fn recipe(name: &str) -> String {
    let text = std::fs::read_to_string(root().join(DOC)).unwrap();
    let prefix = format!("set {name}=\"");
    let lines: Vec<&str> = text.lines().filter(|l| l.starts_with(&prefix)).collect();
    assert_eq!(lines.len(), 1, "{DOC} must set {name} exactly once");
    let value = lines[0][prefix.len()..]
        .strip_suffix('"')
        .unwrap_or_else(|| panic!("{DOC}: {name} has no closing quote"));
    // Inside double quotes mutt's muttrc parser would act on these; the recipes do without.
    assert!(
        !value.contains(['"', '\\', '`', '$']),
        "{DOC}: {name} contains a character mutt's muttrc parser interprets: {value}"
    );
    value.to_string()
}

/// mutt's substitution of `%x` in a command (`_mutt_fmt_smime_command`), for the letters the
/// test gives; any other letter fails the test, so that the document cannot use one unnoticed.
fn expand(command: &str, subs: &[(char, &str)]) -> String {
    let mut out = String::new();
    let mut chars = command.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let letter = chars.next().expect("a lone % at the end");
        if letter == '%' {
            out.push('%');
            continue;
        }
        let (_, value) = subs
            .iter()
            .find(|(l, _)| *l == letter)
            .unwrap_or_else(|| panic!("{command:?} uses %{letter}, which this test does not fill"));
        out.push_str(value);
    }
    out
}

/// A token, and a home directory with mutt's `~/.smime` layout: the CA bundle the verify
/// recipes name, and a certificate store with Bob's certificate.
struct Mutt {
    token: TestToken,
    home: PathBuf,
    /// More environment for the commands (pkcs11-spy).
    extra_env: std::cell::RefCell<Vec<(String, PathBuf)>>,
}

impl Mutt {
    fn new() -> Self {
        Self::with_ca(&fixture("ca.pem"))
    }

    /// `ca` as `~/.smime/ca-bundle.crt`.
    fn with_ca(ca: &Path) -> Self {
        let token = TestToken::new();
        let home = token.path("home");
        std::fs::create_dir_all(home.join(".smime/certificates")).unwrap();
        std::fs::create_dir_all(home.join(".smime/keys")).unwrap();
        std::fs::copy(ca, home.join(".smime/ca-bundle.crt")).unwrap();
        Mutt {
            token,
            home,
            extra_env: Default::default(),
        }
    }

    /// A correspondent's certificate in mutt's store, under a hash-like name as smime_keys
    /// gives it; returns the path mutt puts in `%c`.
    fn store_cert(&self, fixture_name: &str, hash: &str) -> String {
        let path = self.home.join(".smime/certificates").join(hash);
        std::fs::copy(fixture(fixture_name), &path).unwrap();
        path_str(&path).to_string()
    }

    /// Runs recipe `name` with `subs` under `sh -c`; mutt writes `pin` and a newline on the
    /// command's stdin (or nothing) and closes it.
    fn run(&self, name: &str, subs: &[(char, &str)], pin: Option<&str>) -> Output {
        let command = expand(&recipe(name), subs);
        let bin = Path::new(env!("CARGO_BIN_EXE_p11smime")).parent().unwrap();
        let path = std::env::var_os("PATH").unwrap_or_default();
        let path = std::env::join_paths(
            std::iter::once(bin.to_path_buf()).chain(std::env::split_paths(&path)),
        )
        .unwrap();
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(&command)
            .env("PATH", path)
            .env("HOME", &self.home)
            .env("SOFTHSM2_CONF", &self.token.conf)
            .env("P11SMIME_MODULE", softhsm_module())
            .env_remove("P11SMIME_TOKEN")
            .env_remove("P11SMIME_CERT_DIR")
            // The test's own agent socket (the recipes start an agent: `--agent auto`).
            .env("P11SMIME_AGENT_SOCKET", self.token.agent_socket())
            .env_remove("P11SMIME_AGENT")
            .envs(self.extra_env.borrow().iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        if let Some(pin) = pin {
            // A command that stops before reading the PIN closes the pipe; so does mutt's write.
            let _ = stdin.write_all(format!("{pin}\n").as_bytes());
        }
        drop(stdin);
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !stderr.contains("panicked") && !stderr.contains("RUST_BACKTRACE"),
            "{name}: {command}: panicked: {stderr}"
        );
        out
    }

    /// The sign recipe on `entity` (written to a file as mutt does); returns the file and the
    /// signature.
    fn sign(&self, entity: &[u8]) -> (PathBuf, Vec<u8>) {
        let file = self.token.write("entity-to-sign", entity);
        let out = self.run(
            "smime_sign_command",
            &[('f', path_str(&file)), ('d', "sha256")],
            Some(PIN),
        );
        assert!(out.status.success(), "sign: {}", report(&out));
        // mutt shows anything on stderr and waits for a key before sending.
        assert!(out.stderr.is_empty(), "sign: {}", report(&out));
        assert_eq!(out.stdout.first(), Some(&0x30), "DER on stdout");
        (file, out.stdout)
    }

    fn decrypt(&self, der: &Path, pin: &str) -> Output {
        self.run("smime_decrypt_command", &[('f', path_str(der))], Some(pin))
    }

    /// The verify recipe on `signed` (the signed part as mutt writes it, CRLF) and `signature`.
    fn verify(&self, signed: &[u8], signature: &[u8]) -> Output {
        let f = self.token.write("signed-part", signed);
        let s = self.token.write("signed-part.sig", signature);
        self.run(
            "smime_verify_command",
            &[('f', path_str(&f)), ('s', path_str(&s))],
            None,
        )
    }

    fn verify_opaque(&self, der: &[u8]) -> Output {
        let s = self.token.write("opaque.p7m", der);
        self.run("smime_verify_opaque_command", &[('s', path_str(&s))], None)
    }
}

fn first_line(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr)
        .lines()
        .next()
        .unwrap_or_default()
        .to_string()
}

/// mutt's reading of `smime_verify_command`: exit status 0 and "verification successful" as
/// the first line of stderr (compared without regard to case).
fn mutt_says_good(out: &Output) -> bool {
    out.status.success() && first_line(out).eq_ignore_ascii_case("verification successful")
}

fn openssl_cms_verify(args: &[&str]) -> Output {
    run_ok(
        Command::new("openssl")
            .args(["cms", "-verify", "-purpose", "smimesign", "-CAfile"])
            .arg(fixture("ca.pem"))
            .args(args),
    )
}

/// The base64 body of each certificate in a PEM text.
fn pem_bodies(pem: &str) -> Vec<String> {
    pem.split("-----BEGIN CERTIFICATE-----")
        .skip(1)
        .map(|c| {
            c.split("-----END CERTIFICATE-----")
                .next()
                .unwrap()
                .split_whitespace()
                .collect()
        })
        .collect()
}

fn fixture_body(name: &str) -> String {
    pem_bodies(&std::fs::read_to_string(fixture(name)).unwrap()).remove(0)
}

// ---------------------------------------------------------------------------------------------
// The tests

#[test]
fn every_command_in_the_document_is_tested() {
    let text = std::fs::read_to_string(root().join(DOC)).unwrap();
    let set: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("set smime_"))
        .filter_map(|l| l.split_once('=').map(|(name, _)| name.trim()))
        .filter(|name| name.ends_with("_command"))
        .collect();
    for name in &set {
        let full = format!("smime_{name}");
        assert!(
            TESTED.contains(&full.as_str()),
            "{DOC} sets {full}, which tests/mutt.rs does not run"
        );
    }
    for name in TESTED {
        recipe(name);
    }
    // The settings the recipes rely on.
    for line in [
        "set crypt_use_gpgme = no",
        "set smime_is_default = yes",
        "set smime_self_encrypt = no",
        "set smime_sign_digest_alg = \"sha256\"",
    ] {
        assert!(text.lines().any(|l| l == line), "{DOC} lacks {line:?}");
    }
    assert!(
        text.lines()
            .any(|l| l.starts_with("set smime_default_key = \"")),
        "{DOC} sets no smime_default_key, without which mutt neither signs nor decrypts"
    );
}

#[test]
fn decrypt_gives_the_exact_entity_and_nothing_after_a_failure() {
    let mutt = Mutt::new();
    let dir = mutt.token.dir.path();
    let entity = crlf(&mutt_entity());
    let msg = openssl_encrypt(
        dir,
        &entity,
        &["-aes256", "-outform", "DER"],
        &["alice-enc.pem"],
    );
    // A wrong PIN: one failed login, no output (mutt: "Decryption failed", PIN forgotten),
    // and no agent started with it.
    let out = mutt.decrypt(&msg, "000000");
    let stderr = assert_fails(&out, 5, "decrypt recipe, wrong PIN");
    assert!(out.stdout.is_empty());
    assert!(!stderr.contains("000000"), "{stderr}");
    assert!(!mutt.token.agent_socket().exists());

    let out = mutt.decrypt(&msg, PIN);
    assert_plaintext(&out, &entity, "decrypt recipe");

    // A message for someone else: no key on the token, no output.
    let for_bob = openssl_encrypt(
        dir,
        &entity,
        &["-aes128", "-outform", "DER"],
        &["bob-enc.pem"],
    );
    let out = mutt.decrypt(&for_bob, PIN);
    assert_fails(&out, 4, "decrypt recipe, message for Bob");
    assert!(out.stdout.is_empty());
}

#[test]
fn sign_gives_a_signature_over_the_entity_mutt_sends() {
    let mutt = Mutt::new();
    let entity = mutt_entity();
    let (file, sig) = mutt.sign(&entity);
    let sig_file = mutt.token.write("smime.p7s", &sig);

    // openssl, text mode: the LF file as mutt wrote it, canonicalised to CRLF.
    let content = mutt.token.path("openssl-content");
    openssl_cms_verify(&[
        "-inform",
        "DER",
        "-in",
        path_str(&sig_file),
        "-content",
        path_str(&file),
        "-out",
        path_str(&content),
    ]);
    assert_eq!(std::fs::read(&content).unwrap(), crlf(&entity));

    // The message as mutt sends it (LF here; the MTA writes CRLF), checked by openssl ...
    let message = mutt_signed_message(&entity, &sig);
    let lf = mutt.token.write("sent-lf.eml", &message);
    run_ok(
        Command::new("openssl")
            .args(["smime", "-verify", "-CAfile"])
            .arg(fixture("ca.pem"))
            .arg("-in")
            .arg(&lf)
            .args(["-out", "/dev/null"]),
    );
    // ... and by p11smime as it arrives over SMTP (CRLF).
    let wire = mutt.token.write("sent-crlf.eml", &crlf(&message));
    run_ok(
        mutt.token
            .p11smime(&["verify", "--no-system-ca", "--ca"])
            .arg(fixture("ca.pem"))
            .arg(&wire),
    );

    // The receiving mutt with the verify recipe: the signed part in CRLF, the signature.
    let out = mutt.verify(&crlf(&entity), &sig);
    assert!(mutt_says_good(&out), "verify recipe: {}", report(&out));
    assert!(out.stdout.is_empty(), "{}", report(&out));
}

#[test]
fn verify_fails_for_a_changed_byte_and_an_untrusted_signer() {
    let mutt = Mutt::new();
    let entity = mutt_entity();
    let (_, sig) = mutt.sign(&entity);

    let out = mutt.verify(&altered(&crlf(&entity)), &sig);
    assert_eq!(out.status.code(), Some(7), "{}", report(&out));
    assert!(!mutt_says_good(&out));
    assert_eq!(first_line(&out), "Verification failure");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("BAD signature"),
        "{}",
        report(&out)
    );

    // A good signature from a signer the CA bundle does not vouch for.
    let stranger = Mutt::with_ca(&fixture("bob-enc.pem"));
    let out = stranger.verify(&crlf(&entity), &sig);
    assert_eq!(out.status.code(), Some(7), "{}", report(&out));
    assert_eq!(first_line(&out), "Verification failure");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("NOT TRUSTED"),
        "{}",
        report(&out)
    );
}

#[test]
fn encrypt_reaches_every_certificate_in_the_list_and_the_token() {
    let mutt = Mutt::new();
    let entity = mutt_entity();
    let file = mutt.token.write("entity-to-encrypt", &entity);
    // %c: the recipients' files from smime_certificates, separated by spaces.
    let certs = format!(
        "{} {}",
        mutt.store_cert("bob-enc.pem", "5a1e3b2c.0"),
        mutt.store_cert("alice-ec.pem", "9f8e7d6c.0")
    );
    // mutt passes a pipe on stdin and closes it at once: no PIN for encryption.
    let out = mutt.run(
        "smime_encrypt_command",
        &[('f', path_str(&file)), ('c', &certs)],
        None,
    );
    assert!(out.status.success(), "encrypt recipe: {}", report(&out));
    assert!(out.stderr.is_empty(), "{}", report(&out));
    let der = mutt.token.write("smime.p7m", &out.stdout);

    for (cert, key) in [
        ("bob-enc.pem", "bob-enc.key.pem"),
        ("alice-ec.pem", "alice-ec.key.pem"),
        // The self copy, to the token's key-management certificate.
        ("alice-enc.pem", "alice-enc.key.pem"),
    ] {
        let plain = run_ok(
            Command::new("openssl")
                .args(["cms", "-decrypt", "-inform", "DER", "-in"])
                .arg(&der)
                .arg("-recip")
                .arg(fixture(cert))
                .arg("-inkey")
                .arg(fixture(key)),
        );
        assert_eq!(plain.stdout, crlf(&entity), "openssl with {key}");
    }
    let out = mutt.decrypt(&der, PIN);
    assert_plaintext(&out, &crlf(&entity), "decrypt recipe on the sent copy");
}

#[test]
fn sign_and_encrypt_keeps_the_inner_signature_intact() {
    let mutt = Mutt::new();
    let entity = mutt_entity();
    let (_, sig) = mutt.sign(&entity);
    // mutt encrypts the multipart/signed it built, written with LF.
    let signed = signed_entity(&entity, &sig);
    let file = mutt.token.write("signed-to-encrypt", &signed);
    let certs = mutt.store_cert("bob-enc.pem", "5a1e3b2c.0");
    let out = mutt.run(
        "smime_encrypt_command",
        &[('f', path_str(&file)), ('c', &certs)],
        None,
    );
    assert!(out.status.success(), "encrypt recipe: {}", report(&out));
    let der = mutt.token.write("both.p7m", &out.stdout);

    // Bob opens it with openssl and checks the signature inside.
    let plain = run_ok(
        Command::new("openssl")
            .args(["cms", "-decrypt", "-inform", "DER", "-in"])
            .arg(&der)
            .arg("-recip")
            .arg(fixture("bob-enc.pem"))
            .arg("-inkey")
            .arg(fixture("bob-enc.key.pem")),
    );
    assert_eq!(plain.stdout, crlf(&signed));
    let inner = mutt.token.write("inner.eml", &plain.stdout);
    run_ok(
        Command::new("openssl")
            .args(["smime", "-verify", "-CAfile"])
            .arg(fixture("ca.pem"))
            .arg("-in")
            .arg(&inner)
            .args(["-out", "/dev/null"]),
    );

    // Alice reads her sent copy in mutt: decrypt, then the inner signature as mutt checks it.
    let out = mutt.decrypt(&der, PIN);
    assert_plaintext(&out, &crlf(&signed), "decrypt recipe on the sent copy");
    // mutt's crypt_write_signed: the first part, from its header to the CRLF before the next
    // delimiter, with CRLF line endings (they already are).
    let opening = b"--sIgNeD4mUtT\r\n";
    let start = find(&out.stdout, opening, 0).unwrap() + opening.len();
    let end = find(&out.stdout, b"\r\n--sIgNeD4mUtT\r\n", start).unwrap();
    let part = &out.stdout[start..end];
    assert_eq!(part, crlf(&entity));
    let out = mutt.verify(part, &sig);
    assert!(mutt_says_good(&out), "verify recipe: {}", report(&out));
}

#[test]
fn verify_opaque_prints_the_content_only_when_good() {
    let mutt = Mutt::new();
    let entity = mutt_entity();
    let input = mutt.token.write("entity.txt", &entity);
    // Signed-data with the content inside, as another client sends it (openssl, text mode).
    let der_path = mutt.token.path("opaque.der");
    run_ok(
        Command::new("openssl")
            .args(["cms", "-sign", "-nodetach", "-outform", "DER", "-signer"])
            .arg(fixture("alice-sign.pem"))
            .arg("-inkey")
            .arg(fixture("alice-sign.key.pem"))
            .arg("-in")
            .arg(&input)
            .arg("-out")
            .arg(&der_path),
    );
    let der = std::fs::read(&der_path).unwrap();
    let out = mutt.verify_opaque(&der);
    assert!(mutt_says_good(&out), "opaque recipe: {}", report(&out));
    assert_eq!(out.stdout, crlf(&entity), "the content on stdout");

    // One byte of the content changed: no content, and mutt does not call it good.
    let out = mutt.verify_opaque(&altered(&der));
    assert!(!mutt_says_good(&out), "{}", report(&out));
    assert_eq!(first_line(&out), "Verification failure");
    assert!(out.stdout.is_empty(), "{}", report(&out));

    // The content and --json would share stdout.
    let p7m = mutt.token.write("opaque-again.p7m", &der);
    let out = mutt
        .token
        .p11smime(&["verify", "--json", "-o", "-", path_str(&p7m)])
        .output()
        .unwrap();
    assert_fails(&out, 2, "verify --json -o -");
    assert!(out.stdout.is_empty());

    // The token's own opaque signature reads back the same way.
    let file = mutt.token.write("for-opaque", &entity);
    let out = mutt
        .token
        .p11smime(&[
            "sign",
            "--as-is",
            "--opaque",
            "--outform",
            "der",
            "--pin",
            "env:TEST_PIN",
            path_str(&file),
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", report(&out));
    let out = mutt.verify_opaque(&out.stdout);
    assert!(mutt_says_good(&out), "{}", report(&out));
    assert_eq!(out.stdout, crlf(&entity));
}

#[test]
fn signer_certificate_and_the_openssl_certificate_lines() {
    let mutt = Mutt::new();
    let entity = mutt_entity();
    let (_, sig) = mutt.sign(&entity);
    // The message as it sits in the mailbox (LF), which mutt copies to %f.
    let message = mutt
        .token
        .write("stored.eml", &mutt_signed_message(&entity, &sig));
    let signer_pem = signer_cert(&mutt, &message);
    assert_eq!(pem_bodies(&signer_pem), [fixture_body("alice-sign.pem")]);

    // An opaque message too.
    let file = mutt.token.write("for-opaque", &entity);
    let opaque = mutt
        .token
        .p11smime(&[
            "sign",
            "--opaque",
            "--outform",
            "der",
            "--pin",
            "env:TEST_PIN",
            path_str(&file),
        ])
        .output()
        .unwrap();
    assert!(opaque.status.success(), "{}", report(&opaque));
    let stored = mutt
        .token
        .write("stored-opaque.eml", &opaque_message(&opaque.stdout));
    assert_eq!(
        pem_bodies(&signer_cert(&mutt, &stored)),
        [fixture_body("alice-sign.pem")]
    );

    // mutt compares the certificate's addresses with From.
    let cert = mutt.token.write("signer.pem", signer_pem.as_bytes());
    let out = mutt.run(
        "smime_get_cert_email_command",
        &[('f', path_str(&cert))],
        None,
    );
    assert!(out.status.success(), "{}", report(&out));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "alice@example.test"
    );

    // <extract-keys>: pk7out, then get_cert; the certificates a reply can be encrypted to.
    let out = mutt.run("smime_pk7out_command", &[('f', path_str(&message))], None);
    assert!(
        out.status.success() && !out.stdout.is_empty(),
        "{}",
        report(&out)
    );
    let pk7 = mutt.token.write("pk7out.pem", &out.stdout);
    let out = mutt.run("smime_get_cert_command", &[('f', path_str(&pk7))], None);
    assert!(out.status.success(), "{}", report(&out));
    let bodies = pem_bodies(&String::from_utf8_lossy(&out.stdout));
    for name in ["alice-sign.pem", "alice-enc.pem"] {
        assert!(bodies.contains(&fixture_body(name)), "{name} not extracted");
    }

    // The import line is mutt's own (smime_keys, which comes with mutt); only its form is
    // checked here.
    assert_eq!(
        expand(&recipe("smime_import_cert_command"), &[('f', "certs.pem")]),
        "smime_keys add_cert certs.pem"
    );
}

/// The get-signer-cert recipe on `message`; returns what it wrote to `%c`.
fn signer_cert(mutt: &Mutt, message: &Path) -> String {
    // mutt creates the file, passes its name as %c, and leaves stdout to the terminal.
    let cert = mutt.token.write("signer-cert", b"");
    let out = mutt.run(
        "smime_get_signer_cert_command",
        &[('f', path_str(message)), ('c', path_str(&cert))],
        None,
    );
    assert!(
        out.stdout.is_empty(),
        "nothing for the terminal: {}",
        report(&out)
    );
    let pem = std::fs::read_to_string(&cert).unwrap();
    assert!(!pem.is_empty(), "no certificate written: {}", report(&out));
    pem
}

/// The recipes through the session agent, as mutt runs them for a sitting: mutt passes its
/// cached PIN to every command, and the card sees it once. A signature with the CAC-style
/// signing key (CKA_ALWAYS_AUTHENTICATE) still presents the PIN for itself, from mutt.
#[test]
fn a_sitting_of_mail_is_one_login_through_the_agent() {
    let mutt = Mutt::new();
    let dir = mutt.token.dir.path();
    let log = mutt.token.path("spy.log");
    mutt.extra_env.borrow_mut().extend([
        ("P11SMIME_MODULE".to_string(), spy_module()),
        ("PKCS11SPY".to_string(), softhsm_module()),
        ("PKCS11SPY_OUTPUT".to_string(), log.clone()),
    ]);
    let entity = crlf(&mutt_entity());
    let rsa = openssl_encrypt(
        dir,
        &entity,
        &["-aes256", "-outform", "DER"],
        &["alice-enc.pem"],
    );
    let ec = openssl_encrypt(
        dir,
        &entity,
        &["-aes128", "-outform", "DER"],
        &["alice-ec.pem"],
    );
    for i in 0..20 {
        let msg = if i % 2 == 0 { &rsa } else { &ec };
        assert_plaintext(&mutt.decrypt(msg, PIN), &entity, &format!("message {i}"));
    }
    // mutt has forgotten the PIN (^F) and the user just pressed Enter: the agent still serves.
    assert_plaintext(
        &mutt.decrypt(&rsa, ""),
        &entity,
        "after <forget-passphrase>",
    );
    let (file, signature) = mutt.sign(&mutt_entity());
    let out = openssl_cms_verify(&[
        "-content",
        path_str(&file),
        "-inform",
        "DER",
        "-in",
        path_str(&mutt.token.write("sitting.sig", &signature)),
    ]);
    assert!(out.status.success(), "{}", report(&out));

    let calls = std::fs::read_to_string(&log).unwrap();
    let user_logins = calls
        .split("C_Login")
        .skip(1)
        .filter(|call| call.lines().take(4).any(|l| l.contains("CKU_USER")))
        .count();
    assert_eq!(user_logins, 1, "one user login for the sitting");
    assert_eq!(
        count_calls(&calls, "C_Login"),
        2,
        "and one for the signature"
    );
    let _ = mutt
        .token
        .p11smime(&["agent", "stop"])
        .env("P11SMIME_MODULE", spy_module())
        .output();
}
