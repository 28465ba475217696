//! Interoperability of `p11smime encrypt` with real decrypters: what p11smime encrypts to bob
//! (bob-enc.pem, a recipient whose key is NOT on the token) is decrypted by GnuPG's
//! `gpgsm --decrypt` and by NSS's `cmsutil -D` (what Thunderbird uses), each holding bob's
//! private key imported from a PKCS#12 file, and the decrypted entity decodes (mail-parser) to
//! exactly the text and attachment that went in. `--sign` output (signed, then encrypted) is
//! decrypted by both peers and the inner multipart/signed is verified by both.
//!
//! The message encrypted has From/To/Subject, a multipart/mixed body with a UTF-8 text part
//! with LF line endings (and a line starting with "From "), and a 100 KiB binary attachment with
//! `Content-Transfer-Encoding: binary`. p11smime makes it transport-safe before encrypting (CRLF,
//! quoted-printable text, base64 attachment), so the text decodes with CRLF line endings: the
//! canonical form of the same text.
//!
//! What the peers do (gpgsm 2.2.40 / libksba, NSS 3.87):
//! * gpgsm cannot import OpenSSL 3's default PKCS#12 (PBES2 with AES-256 and HMAC-SHA-256:
//!   `encryptedData error at "pkcs5PBES2-params"`); it needs the legacy PBE-SHA1-3DES form, and
//!   even then about one file in 200 (depending on the random salt) fails in the key bag
//!   (`data error at "shrouded_key_bag.decrypted-text"`) although openssl reads it, so
//!   `Gpgsm::new` makes a fresh file and tries again. gpgsm has no `--passphrase`;
//!   `--pinentry-mode loopback --passphrase-fd 0` works for the import and for each decryption
//!   (the imported key stays protected by the passphrase).
//! * gpgsm decrypts AES-128/192/256-CBC with PKCS#1 v1.5 key transport (`--verbose` says
//!   `AES.CBC` / `AES192.CBC` / `AES256.CBC encrypted data`, status `DECRYPTION_OKAY`). It has
//!   no GCM (`error getting IV: Buffer too short`) and no OAEP (`error getting encrypted
//!   session key`), so those are not tested with it.
//! * gpgsm tries the RecipientInfos in order and stops at the first it can decrypt. One for a
//!   key it does not hold that comes earlier gives `NO_SECKEY <keyid>` and exit 2, even though
//!   the message is then decrypted (`DECRYPTION_OKAY`); its own messages do the same. With
//!   p11smime's default self copy to alice-enc, bob's exit code therefore depends on the order
//!   of the two RecipientInfos (see the self-copy test); the other gpgsm tests use `--no-self`
//!   and insist on exit 0.
//! * gpgsm cannot read a whole mail (`ksba_cms_parse failed: End of file`, even with
//!   `--assume-base64`); it decrypts the base64 body of the application/pkcs7-mime part with
//!   `--assume-base64` (without that option it does not recognise bare base64), and the PEM form
//!   (`-----BEGIN CMS-----`) as it is.
//! * `cmsutil -D` decrypts AES-128/192/256-CBC with PKCS#1 v1.5 and exits 0, with or without the
//!   self copy. It has no OAEP (`SEC_ERROR_UNSUPPORTED_KEYALG`) and no AuthEnvelopedData/GCM
//!   (`SEC_ERROR_UNRECOGNIZED_OID`); those are not tested here.
//!
//! Each GNUPGHOME is a short directory in /tmp, and the gpg-agent gpgsm starts is stopped even
//! when the test fails (`Gpgsm`'s `Drop`). A missing peer fails the test with an install hint.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use common::*;

use mail_parser::{MessageParser, MimeHeaders};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

/// The multipart/mixed boundary of the message encrypted.
const BOUNDARY: &str = "=_mixed_p11smime_interop_Q7x";
/// The text part: UTF-8, LF line endings, a line starting with "From ", "the card" once.
const TEXT: &str = "Grüße an Bob,\n\
                    From the card: die Anlage ist dabei.\n\
                    Ärger? Nein. Preis: 5 € — ✓\n";
const ATTACHMENT_NAME: &str = "data.bin";
const ATTACHMENT_LEN: usize = 100 * 1024;
/// The PKCS#12 password for bob's key, and the NSS DB password.
const P12_PASS: &str = "x";
const NSS_PASS: &str = "nss-db-secret";

/// DER of the OIDs checked in p11smime's output.
const OID_AES128_CBC: &[u8] = &[
    0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x01, 0x02,
];
const OID_AES192_CBC: &[u8] = &[
    0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x01, 0x16,
];
const OID_AES256_CBC: &[u8] = &[
    0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x01, 0x2A,
];
/// rsaEncryption (PKCS#1 v1.5 key transport) and id-RSAES-OAEP.
const OID_RSA_ENCRYPTION: &[u8] = &[
    0x06, 0x09, 0x2A, 0x86, 0x48, 0x86, 0xF7, 0x0D, 0x01, 0x01, 0x01,
];
const OID_RSAES_OAEP: &[u8] = &[
    0x06, 0x09, 0x2A, 0x86, 0x48, 0x86, 0xF7, 0x0D, 0x01, 0x01, 0x07,
];

/// (p11smime --cipher, its OID, what `gpgsm --verbose` calls it).
const CBC_CIPHERS: [(&str, &[u8], &str); 3] = [
    ("aes128-cbc", OID_AES128_CBC, "AES.CBC"),
    ("aes192-cbc", OID_AES192_CBC, "AES192.CBC"),
    ("aes256-cbc", OID_AES256_CBC, "AES256.CBC"),
];

/// The 100 KiB attachment: every byte value, CR, LF, NUL.
fn attachment() -> Vec<u8> {
    let a = varied_bytes(ATTACHMENT_LEN);
    // In an LF message the line break before the next delimiter is "\n"; a final CR would be
    // taken as part of a CRLF delimiter break. Keep the test data clear of that ambiguity.
    assert_ne!(a.last(), Some(&b'\r'), "attachment ends with CR");
    assert!(
        !contains(&a, BOUNDARY.as_bytes()),
        "attachment contains the boundary"
    );
    a
}

/// The mail encrypted: headers, a multipart/mixed with the text and the binary attachment,
/// LF line endings throughout.
fn message() -> Vec<u8> {
    let mut m = format!(
        "From: Alice Tester <alice@example.test>\n\
         To: Bob Other <bob@example.test>\n\
         Subject: Encrypted with an attachment\n\
         MIME-Version: 1.0\n\
         Content-Type: multipart/mixed; boundary=\"{BOUNDARY}\"\n\
         \n\
         This is a multi-part message in MIME format.\n\
         --{BOUNDARY}\n\
         Content-Type: text/plain; charset=utf-8\n\
         Content-Transfer-Encoding: 8bit\n\
         \n\
         {TEXT}\
         \n\
         --{BOUNDARY}\n\
         Content-Type: application/octet-stream; name=\"{ATTACHMENT_NAME}\"\n\
         Content-Disposition: attachment; filename=\"{ATTACHMENT_NAME}\"\n\
         Content-Transfer-Encoding: binary\n\
         \n"
    )
    .into_bytes();
    m.extend_from_slice(&attachment());
    m.extend_from_slice(format!("\n--{BOUNDARY}--\n").as_bytes());
    m
}

/// `p11smime encrypt -r bob-enc.pem EXTRA -o NAME message.eml`; insists on exit 0 and an empty
/// stdout; returns the output file.
fn encrypt(token: &TestToken, name: &str, extra: &[&str]) -> PathBuf {
    let input = token.path("message.eml");
    std::fs::write(&input, message()).unwrap();
    let output = token.path(name);
    let out = token
        .p11smime(&["encrypt", "-r"])
        .arg(fixture("bob-enc.pem"))
        .args(extra)
        .arg("-o")
        .arg(&output)
        .arg(&input)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "p11smime encrypt {extra:?}: stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.stdout.is_empty(),
        "p11smime encrypt {extra:?} -o wrote to stdout"
    );
    output
}

/// Bare DER EnvelopedData with `cipher_oid` and PKCS#1 v1.5 key transport only.
fn assert_der_with(msg: &Path, cipher_oid: &[u8], what: &str) {
    let der = std::fs::read(msg).unwrap();
    assert_eq!(der.first(), Some(&0x30), "{what}: not DER");
    assert!(contains(&der, cipher_oid), "{what}: unexpected cipher");
    assert!(
        contains(&der, OID_RSA_ENCRYPTION) && !contains(&der, OID_RSAES_OAEP),
        "{what}: key transport is not PKCS#1 v1.5"
    );
}

/// The decrypted entity decodes to the text and the attachment that went in: a multipart/mixed
/// whose text part is TEXT (in canonical CRLF form) and whose one attachment is `data.bin` with
/// exactly the attachment bytes. It must also be 7-bit (transport-safe).
fn assert_entity(entity: &[u8], what: &str) {
    assert!(entity.is_ascii(), "{what}: decrypted entity is not 7-bit");
    let parsed = MessageParser::default()
        .parse(entity)
        .unwrap_or_else(|| panic!("{what}: mail-parser cannot parse the decrypted entity"));
    let ct = parsed
        .content_type()
        .unwrap_or_else(|| panic!("{what}: no Content-Type"));
    assert_eq!(
        (ct.ctype(), ct.subtype()),
        ("multipart", Some("mixed")),
        "{what}: top-level type"
    );
    assert_eq!(
        parsed.text_body_count(),
        1,
        "{what}: expected one text body"
    );
    let text = parsed.body_text(0).expect("text body");
    assert_eq!(
        text,
        TEXT.replace('\n', "\r\n"),
        "{what}: the text does not decode to the original"
    );
    assert_eq!(
        parsed.attachment_count(),
        1,
        "{what}: expected one attachment"
    );
    let att = parsed.attachment(0).unwrap();
    assert_eq!(
        att.attachment_name(),
        Some(ATTACHMENT_NAME),
        "{what}: attachment name"
    );
    let expected = attachment();
    let got = att.contents();
    let first_diff = got.iter().zip(&expected).position(|(a, b)| a != b);
    assert!(
        got.len() == expected.len() && first_diff.is_none(),
        "{what}: attachment differs: got {} bytes, expected {}, first difference at {first_diff:?}",
        got.len(),
        expected.len()
    );
}

fn find(hay: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    hay.get(from..)?
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|p| p + from)
}

/// Splits a `multipart/signed` entity into (the exact signed bytes of the first part, the DER
/// signature from the second part). The CRLF before each delimiter belongs to the delimiter.
fn split_multipart_signed(msg: &[u8]) -> (Vec<u8>, Vec<u8>) {
    use base64::Engine as _;
    let head_end = find(msg, b"\r\n\r\n", 0).expect("no end of the top-level header");
    let head = String::from_utf8_lossy(&msg[..head_end]).to_string();
    assert!(
        head.contains("multipart/signed")
            && head.contains("protocol=\"application/pkcs7-signature\""),
        "not a multipart/signed S/MIME entity: {head}"
    );
    let b = head
        .split_once("boundary=\"")
        .and_then(|(_, rest)| rest.split_once('"'))
        .expect("no quoted boundary parameter")
        .0;
    let delim = format!("\r\n--{b}\r\n");
    let delim = delim.as_bytes();
    let first = find(msg, delim, head_end + 2).expect("no opening delimiter");
    let part1_start = first + delim.len();
    let second = find(msg, delim, part1_start).expect("no second delimiter");
    let part1 = msg[part1_start..second].to_vec();
    let part2_start = second + delim.len();
    let close = format!("\r\n--{b}--");
    let close = find(msg, close.as_bytes(), part2_start).expect("no close delimiter");
    let part2 = &msg[part2_start..close];
    let p2_head_end = find(part2, b"\r\n\r\n", 0).expect("no end of the signature part header");
    let p2_head = String::from_utf8_lossy(&part2[..p2_head_end]).to_ascii_lowercase();
    assert!(
        p2_head.contains("application/pkcs7-signature") && p2_head.contains("base64"),
        "unexpected signature part header: {p2_head}"
    );
    let b64: Vec<u8> = part2[p2_head_end + 4..]
        .iter()
        .copied()
        .filter(|c| !c.is_ascii_whitespace())
        .collect();
    let sig = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .expect("signature part is not base64");
    (part1, sig)
}

/// A copy with one byte changed: the 'c' of the (unique) "the card".
fn altered(bytes: &[u8]) -> Vec<u8> {
    let at = find(bytes, b"the card", 0).expect("no \"the card\" in the signed content");
    assert!(
        find(bytes, b"the card", at + 1).is_none(),
        "\"the card\" occurs twice"
    );
    let mut out = bytes.to_vec();
    out[at + 4] ^= 0x20;
    out
}

fn write(token: &TestToken, name: &str, bytes: &[u8]) -> PathBuf {
    let p = token.path(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

/// Bob's certificate and key as PKCS#12 (password P12_PASS), with extra `openssl pkcs12` options.
fn bob_p12(token: &TestToken, name: &str, opts: &[&str]) -> PathBuf {
    let out = token.path(name);
    run_ok(
        Command::new("openssl")
            .args(["pkcs12", "-export", "-passout"])
            .arg(format!("pass:{P12_PASS}"))
            .args(opts)
            .arg("-in")
            .arg(fixture("bob-enc.pem"))
            .arg("-inkey")
            .arg(fixture("bob-enc.key.pem"))
            .arg("-out")
            .arg(&out),
    );
    out
}

fn report(out: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

// ---------------------------------------------------------------------------------------------
// gpgsm

/// Live gpg-agent processes started for `home` (Linux /proc; empty elsewhere). A killed agent
/// left as a zombie has an empty cmdline and is not counted.
fn agents_for(home: &Path) -> Vec<u32> {
    let home = home.as_os_str().as_encoded_bytes();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let mut args = cmdline.split(|b| *b == 0);
            args.next().is_some_and(|a| a.ends_with(b"gpg-agent")) && args.any(|a| a == home)
        })
        .collect()
}

/// The SHA-1 fingerprint of a fixture certificate as gpgsm prints it (hex, upper case).
fn sha1_fpr(cert: &str) -> String {
    let out = run_ok(
        Command::new("openssl")
            .args(["x509", "-noout", "-fingerprint", "-sha1", "-in"])
            .arg(fixture(cert)),
    );
    let text = String::from_utf8(out.stdout).unwrap();
    text.trim()
        .split_once('=')
        .expect("openssl fingerprint output")
        .1
        .replace(':', "")
        .to_ascii_uppercase()
}

/// gpgsm's 16-hex-digit key ID (ENC_TO, NO_SECKEY) of a fixture certificate.
fn keyid(cert: &str) -> String {
    let fpr = sha1_fpr(cert);
    fpr[fpr.len() - 16..].to_string()
}

/// A temporary GNUPGHOME holding bob's private key (from PKCS#12), the certificates of the test
/// CA (trusted through `trustlist.txt`) and of alice-enc (so her RecipientInfo is reported as
/// NO_SECKEY rather than an unknown certificate). Dropping it runs `gpgconf --kill all` and
/// waits for the agent to go.
struct Gpgsm {
    gpgsm: PathBuf,
    gpgconf: PathBuf,
    home: tempfile::TempDir,
    /// A file holding P12_PASS, given to gpgsm as stdin for `--passphrase-fd 0`.
    passfile: PathBuf,
    stopped: bool,
}

impl Gpgsm {
    fn new(token: &TestToken) -> Self {
        let gpgsm = require("gpgsm", "gpgsm");
        let gpgconf = require("gpgconf", "gpgconf");
        // Short: the agent's sockets are created in here (108-byte sun_path limit).
        let home = tempfile::Builder::new()
            .prefix("gsm.")
            .tempdir_in("/tmp")
            .unwrap();
        let passfile = token.path("gpgsm-pass");
        std::fs::write(&passfile, format!("{P12_PASS}\n")).unwrap();
        let g = Gpgsm {
            gpgsm,
            gpgconf,
            home,
            passfile,
            stopped: false,
        };
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(g.home.path(), std::fs::Permissions::from_mode(0o700))
                .unwrap();
        }
        std::fs::write(
            g.home.path().join("gpg-agent.conf"),
            "allow-loopback-pinentry\n",
        )
        .unwrap();
        run_ok(
            g.cmd()
                .args(["--batch", "--import"])
                .arg(fixture("ca.pem"))
                .arg(fixture("alice-enc.pem")),
        );
        std::fs::write(
            g.home.path().join("trustlist.txt"),
            format!("{} S\n", sha1_fpr("ca.pem")),
        )
        .unwrap();
        // gpgsm 2.2 cannot read OpenSSL 3's default PBES2/AES PKCS#12: use the legacy PBE. About
        // one such file in 200 (it depends on the random salt) still fails in gpgsm's key bag
        // ("decryption failed; trying charset ...", then `data error at
        // "shrouded_key_bag.decrypted-text"`) although openssl reads it: make a fresh one then.
        let mut attempts = Vec::new();
        for n in 0..10 {
            let p12 = bob_p12(
                token,
                &format!("bob-3des-{n}.p12"),
                &[
                    "-keypbe",
                    "PBE-SHA1-3DES",
                    "-certpbe",
                    "PBE-SHA1-3DES",
                    "-macalg",
                    "sha1",
                ],
            );
            let out = g
                .with_passphrase(g.cmd().arg("--batch"))
                .arg("--import")
                .arg(&p12)
                .output()
                .unwrap();
            let stderr = String::from_utf8_lossy(&out.stderr);
            if out.status.success() && stderr.contains("secret keys imported: 1") {
                return g;
            }
            // Seen failing both in the key bag ("shrouded_key_bag.decrypted-text") and in the
            // certificate bag ("encryptedData error at \"outer.outer.seq\""): any parse failure
            // of an OpenSSL-made file is gpgsm's salt quirk, worth a fresh file.
            let salt_bug = stderr.contains("error parsing or decrypting the PKCS#12 file");
            attempts.push(report(&out));
            if !salt_bug {
                break;
            }
        }
        panic!(
            "gpgsm did not import bob's PKCS#12:\n{}",
            attempts.join("\n---\n")
        );
    }

    fn cmd(&self) -> Command {
        let mut cmd = Command::new(&self.gpgsm);
        cmd.env("GNUPGHOME", self.home.path());
        cmd
    }

    /// Loopback pinentry with the passphrase on stdin.
    fn with_passphrase<'c>(&self, cmd: &'c mut Command) -> &'c mut Command {
        cmd.args(["--pinentry-mode", "loopback", "--passphrase-fd", "0"])
            .stdin(Stdio::from(std::fs::File::open(&self.passfile).unwrap()))
    }

    /// `gpgsm --verbose --decrypt INPUT -o OUTPUT EXTRA`, status lines on stdout.
    fn decrypt(&self, input: &Path, output: &Path, extra: &[&str]) -> Output {
        let mut cmd = self.cmd();
        cmd.args([
            "--batch",
            "--verbose",
            "--disable-crl-checks",
            "--disable-dirmngr",
            "--status-fd",
            "1",
        ])
        .args(extra)
        .arg("--output")
        .arg(output);
        self.with_passphrase(&mut cmd)
            .arg("--decrypt")
            .arg(input)
            .output()
            .unwrap()
    }

    /// `gpgsm --verify SIG CONTENT`, status lines on stdout.
    fn verify(&self, sig: &Path, content: &Path) -> Output {
        self.cmd()
            .args([
                "--batch",
                "--disable-crl-checks",
                "--disable-dirmngr",
                "--status-fd",
                "1",
                "--verify",
            ])
            .arg(sig)
            .arg(content)
            .output()
            .unwrap()
    }

    /// `gpgsm --encrypt -r NAME@example.test ...` of `plaintext`, recipients in that order.
    fn encrypt_to(&self, token: &TestToken, names: &[&str], plaintext: &[u8]) -> PathBuf {
        let tag = names.join("-");
        let input = write(token, &format!("gpgsm-{tag}.in"), plaintext);
        let output = token.path(&format!("gpgsm-{tag}.p7m"));
        let mut cmd = self.cmd();
        cmd.args([
            "--batch",
            "--yes",
            "--disable-crl-checks",
            "--disable-dirmngr",
            "--encrypt",
        ]);
        for n in names {
            cmd.arg("-r").arg(format!("{n}@example.test"));
        }
        run_ok(cmd.arg("--output").arg(&output).arg(&input));
        output
    }

    fn kill_agents(&mut self) -> Vec<u32> {
        self.stopped = true;
        let home = self.home.path();
        let _ = Command::new(&self.gpgconf)
            .args(["--kill", "all"])
            .env("GNUPGHOME", home)
            .status();
        for _ in 0..50 {
            if agents_for(home).is_empty() {
                return Vec::new();
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let left = agents_for(home);
        for pid in &left {
            let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
        }
        left
    }

    /// Stops the agent and insists it went away on `gpgconf --kill all`.
    fn stop(mut self) {
        let left = self.kill_agents();
        assert!(
            left.is_empty(),
            "gpg-agent {left:?} outlived `gpgconf --kill all`"
        );
    }
}

impl Drop for Gpgsm {
    fn drop(&mut self) {
        if !self.stopped {
            self.kill_agents();
        }
    }
}

/// gpgsm decrypted it with bob's key (ENC_TO bob, DECRYPTION_OKAY, no DECRYPTION_FAILED), and
/// exited with `code`; `cipher` is what `--verbose` names the content cipher.
fn assert_gpgsm_decrypted(out: &Output, code: i32, cipher: Option<&str>, what: &str) {
    let status = String::from_utf8_lossy(&out.stdout);
    let rep = report(out);
    assert_eq!(out.status.code(), Some(code), "{what}: {rep}");
    assert!(
        status.contains(&format!("[GNUPG:] ENC_TO {} ", keyid("bob-enc.pem"))),
        "{what}: gpgsm saw no recipient bob: {rep}"
    );
    assert!(
        status.contains("[GNUPG:] DECRYPTION_OKAY") && !status.contains("DECRYPTION_FAILED"),
        "{what}: gpgsm did not decrypt: {rep}"
    );
    if let Some(c) = cipher {
        assert!(
            String::from_utf8_lossy(&out.stderr).contains(&format!("{c} encrypted data")),
            "{what}: gpgsm did not report {c}: {rep}"
        );
    }
}

#[test]
fn gpgsm_decrypts_aes_cbc_der() {
    let token = TestToken::new();
    let gpg = Gpgsm::new(&token);
    for (cipher, oid, gpgsm_name) in CBC_CIPHERS {
        let what = format!("gpgsm, {cipher}, --outform der");
        let msg = encrypt(
            &token,
            &format!("{cipher}.p7m"),
            &["--no-self", "--outform", "der", "--cipher", cipher],
        );
        assert_der_with(&msg, oid, &what);
        let plain = token.path(&format!("{cipher}.gpgsm.out"));
        let out = gpg.decrypt(&msg, &plain, &[]);
        assert_gpgsm_decrypted(&out, 0, Some(gpgsm_name), &what);
        assert!(
            !String::from_utf8_lossy(&out.stdout).contains("NO_SECKEY"),
            "{what}: {}",
            report(&out)
        );
        assert_entity(&std::fs::read(&plain).unwrap(), &what);
    }
    gpg.stop();
}

/// Where the RecipientInfo for `cert` starts in a DER EnvelopedData: the offset of its
/// issuerAndSerialNumber's serial INTEGER (the test certificates all have distinct serials).
fn recipient_offset(der: &[u8], cert: &str) -> usize {
    let out = run_ok(
        Command::new("openssl")
            .args(["x509", "-noout", "-serial", "-in"])
            .arg(fixture(cert)),
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let mut serial = hex::decode(text.trim().trim_start_matches("serial=")).unwrap();
    if serial[0] & 0x80 != 0 {
        serial.insert(0, 0);
    }
    let mut needle = vec![0x02, u8::try_from(serial.len()).unwrap()];
    needle.extend_from_slice(&serial);
    find(der, &needle, 0).unwrap_or_else(|| panic!("no RecipientInfo for {cert}"))
}

/// The default (a copy to the sender's own alice-enc as well as to bob). gpgsm tries the
/// RecipientInfos in order and stops at the first it can decrypt: when alice's comes first it
/// reports NO_SECKEY for it and exits 2 although it decrypted the message; when bob's comes
/// first it exits 0 and never looks at alice's. Its own messages to alice and bob behave the
/// same. p11smime's RecipientInfo order currently varies from run to run (the SET OF is not in
/// DER order), so several messages are checked, each against its own order.
#[test]
fn gpgsm_decrypts_with_self_copy_exit_code_follows_recipient_order() {
    let token = TestToken::new();
    let gpg = Gpgsm::new(&token);
    let alice = keyid("alice-enc.pem");
    let no_seckey = format!("[GNUPG:] NO_SECKEY {alice}");

    for n in 0..4 {
        let what = format!("gpgsm, with the self copy #{n}");
        let msg = encrypt(
            &token,
            &format!("self-{n}.p7m"),
            &["--outform", "der", "--cipher", "aes128-cbc"],
        );
        assert_der_with(&msg, OID_AES128_CBC, &what);
        let der = std::fs::read(&msg).unwrap();
        let alice_first =
            recipient_offset(&der, "alice-enc.pem") < recipient_offset(&der, "bob-enc.pem");
        let plain = token.path(&format!("self-{n}.gpgsm.out"));
        let out = gpg.decrypt(&msg, &plain, &[]);
        let status = String::from_utf8_lossy(&out.stdout);
        if alice_first {
            assert_gpgsm_decrypted(&out, 2, Some("AES.CBC"), &what);
            assert!(
                status.contains(&format!("[GNUPG:] ENC_TO {alice} "))
                    && status.contains(&no_seckey),
                "{what}: alice's RecipientInfo not reported: {}",
                report(&out)
            );
        } else {
            assert_gpgsm_decrypted(&out, 0, Some("AES.CBC"), &what);
            assert!(!status.contains(&alice), "{what}: {}", report(&out));
        }
        assert_entity(&std::fs::read(&plain).unwrap(), &what);
    }

    // gpgsm's own messages: alice first exits 2, bob first exits 0.
    for (first, second, code) in [("alice", "bob", 2), ("bob", "alice", 0)] {
        let what = format!("gpgsm's own message to {first} and {second}");
        let reference = gpg.encrypt_to(&token, &[first, second], b"hello\n");
        let ref_plain = token.path(&format!("gpgsm-{first}-{second}.out"));
        let out = gpg.decrypt(&reference, &ref_plain, &[]);
        assert_gpgsm_decrypted(&out, code, None, &what);
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).contains(&no_seckey),
            code == 2,
            "{what}: {}",
            report(&out)
        );
        assert_eq!(std::fs::read(&ref_plain).unwrap(), b"hello\n", "{what}");
    }
    gpg.stop();
}

/// The full message form: the mail keeps From/To/Subject; gpgsm cannot read a whole mail, but
/// decrypts the base64 body of the application/pkcs7-mime part (`--assume-base64`), as a mail
/// client hands it over, and the PEM form as it is.
#[test]
fn gpgsm_decrypts_the_message_body_and_pem_but_not_a_whole_mail() {
    let token = TestToken::new();
    let gpg = Gpgsm::new(&token);

    let mail = encrypt(&token, "mail.eml", &["--no-self", "--cipher", "aes256-cbc"]);
    let bytes = std::fs::read(&mail).unwrap();
    let parsed = MessageParser::default()
        .parse(&bytes)
        .expect("mail-parser cannot parse p11smime's message");
    let from = parsed.from().and_then(|a| a.first()).expect("From");
    assert_eq!(
        (from.name(), from.address()),
        (Some("Alice Tester"), Some("alice@example.test"))
    );
    let to = parsed.to().and_then(|a| a.first()).expect("To");
    assert_eq!(
        (to.name(), to.address()),
        (Some("Bob Other"), Some("bob@example.test"))
    );
    assert_eq!(parsed.subject(), Some("Encrypted with an attachment"));
    let ct = parsed.content_type().expect("Content-Type");
    assert_eq!(
        (
            ct.ctype(),
            ct.subtype(),
            ct.attribute("smime-type"),
            parsed.content_transfer_encoding()
        ),
        (
            "application",
            Some("pkcs7-mime"),
            Some("enveloped-data"),
            Some("base64")
        ),
        "message form headers"
    );

    // The whole mail: gpgsm has no MIME parser.
    let whole = gpg.decrypt(&mail, &token.path("mail.gpgsm.out"), &[]);
    assert_eq!(whole.status.code(), Some(2), "{}", report(&whole));
    assert!(
        String::from_utf8_lossy(&whole.stdout).contains("[GNUPG:] DECRYPTION_FAILED"),
        "gpgsm read a whole mail after all: {}",
        report(&whole)
    );

    // The body of the pkcs7-mime part, base64 as sent.
    let head_end = find(&bytes, b"\r\n\r\n", 0).expect("end of the message header");
    let body = write(&token, "mail.b64", &bytes[head_end + 4..]);
    let plain = token.path("mail.body.out");
    let out = gpg.decrypt(&body, &plain, &["--assume-base64"]);
    assert_gpgsm_decrypted(&out, 0, Some("AES256.CBC"), "gpgsm, message body");
    assert_entity(&std::fs::read(&plain).unwrap(), "gpgsm, message body");

    // --outform pem.
    let pem = encrypt(&token, "mail.pem", &["--no-self", "--outform", "pem"]);
    assert!(
        std::fs::read_to_string(&pem)
            .unwrap()
            .starts_with("-----BEGIN CMS-----"),
        "unexpected PEM label"
    );
    let plain = token.path("pem.out");
    let out = gpg.decrypt(&pem, &plain, &[]);
    assert_gpgsm_decrypted(&out, 0, Some("AES256.CBC"), "gpgsm, --outform pem");
    assert_entity(&std::fs::read(&plain).unwrap(), "gpgsm, --outform pem");
    gpg.stop();
}

// ---------------------------------------------------------------------------------------------
// NSS cmsutil

/// A fresh NSS DB with password NSS_PASS (in the returned password file) holding bob's key and
/// certificate (`pk12util`, OpenSSL 3's default PKCS#12) and the test CA trusted for e-mail.
fn nss_db(token: &TestToken) -> (PathBuf, PathBuf) {
    let certutil = require("certutil", "libnss3-tools");
    let pk12util = require("pk12util", "libnss3-tools");
    let dir = token.path("nssdb");
    std::fs::create_dir(&dir).unwrap();
    let db = format!("sql:{}", path_str(&dir));
    let pwfile = write(token, "nss-pass", format!("{NSS_PASS}\n").as_bytes());
    let p12pw = write(token, "p12-pass", format!("{P12_PASS}\n").as_bytes());
    run_ok(
        Command::new(&certutil)
            .args(["-N", "-d", &db, "-f"])
            .arg(&pwfile),
    );
    let p12 = bob_p12(token, "bob.p12", &[]);
    run_ok(
        Command::new(&pk12util)
            .args(["-d", &db, "-i"])
            .arg(&p12)
            .arg("-k")
            .arg(&pwfile)
            .arg("-w")
            .arg(&p12pw),
    );
    run_ok(
        Command::new(&certutil)
            .args(["-A", "-d", &db, "-n", "p11smime test CA", "-t", ",C,", "-f"])
            .arg(&pwfile)
            .arg("-i")
            .arg(fixture("ca.pem")),
    );
    let keys = run_ok(
        Command::new(&certutil)
            .args(["-K", "-d", &db, "-f"])
            .arg(&pwfile),
    );
    assert!(
        String::from_utf8_lossy(&keys.stdout).contains("Bob Other"),
        "bob's key is not in the NSS DB: {}",
        report(&keys)
    );
    (dir, pwfile)
}

/// `cmsutil -D -d sql:DB -f PWFILE [-c CONTENT] -i INPUT EXTRA`.
fn cmsutil_decode(
    db: &(PathBuf, PathBuf),
    input: &Path,
    content: Option<&Path>,
    extra: &[&str],
) -> Output {
    let cmsutil = require("cmsutil", "libnss3-tools");
    let mut cmd = Command::new(cmsutil);
    cmd.arg("-D")
        .arg("-d")
        .arg(format!("sql:{}", path_str(&db.0)))
        .arg("-f")
        .arg(&db.1);
    if let Some(c) = content {
        cmd.arg("-c").arg(c);
    }
    cmd.arg("-i").arg(input).args(extra);
    cmd.output().unwrap()
}

/// cmsutil decrypted `msg`: exit 0, an envelopedData, and the decrypted entity on stdout.
fn nss_decrypt(db: &(PathBuf, PathBuf), msg: &Path, what: &str) -> Vec<u8> {
    let out = cmsutil_decode(db, msg, None, &[]);
    assert_eq!(out.status.code(), Some(0), "{what}: {}", report(&out));
    let info = cmsutil_decode(db, msg, None, &["-h", "0", "-n"]);
    assert!(
        String::from_utf8_lossy(&info.stdout).contains("type=envelopedData;"),
        "{what}: cmsutil -h 0: {}",
        report(&info)
    );
    out.stdout
}

#[test]
fn nss_decrypts_aes_cbc_der() {
    let token = TestToken::new();
    let db = nss_db(&token);
    for (cipher, oid, _) in CBC_CIPHERS {
        // The default: bob and the sender's own copy.
        let what = format!("NSS, {cipher}, --outform der");
        let msg = encrypt(
            &token,
            &format!("{cipher}.p7m"),
            &["--outform", "der", "--cipher", cipher],
        );
        assert_der_with(&msg, oid, &what);
        assert_entity(&nss_decrypt(&db, &msg, &what), &what);
    }
}

// ---------------------------------------------------------------------------------------------
// Signed, then encrypted

/// `--sign`: one message, decrypted by gpgsm and by NSS to the same multipart/signed entity,
/// whose signature both verify (alice-sign, chaining to the trusted test CA), and whose signed
/// part decodes to the original text and attachment. A one-byte change makes both say bad.
#[test]
fn signed_then_encrypted_decrypts_and_verifies_with_gpgsm_and_nss() {
    let token = TestToken::new();
    let gpg = Gpgsm::new(&token);
    let db = nss_db(&token);
    let msg = encrypt(
        &token,
        "signed.p7m",
        &[
            "--sign",
            "--pin",
            "env:TEST_PIN",
            "--no-self",
            "--outform",
            "der",
            "--cipher",
            "aes256-cbc",
        ],
    );
    assert_der_with(&msg, OID_AES256_CBC, "--sign");

    // Decrypt with both peers: the same inner entity.
    let plain = token.path("signed.gpgsm.out");
    let out = gpg.decrypt(&msg, &plain, &[]);
    assert_gpgsm_decrypted(&out, 0, Some("AES256.CBC"), "gpgsm, --sign");
    let inner = std::fs::read(&plain).unwrap();
    let nss_inner = nss_decrypt(&db, &msg, "NSS, --sign");
    assert!(
        nss_inner == inner,
        "gpgsm and NSS decrypted different entities ({} and {} bytes)",
        inner.len(),
        nss_inner.len()
    );

    // The inner entity is a multipart/signed (mail-parser agrees).
    let parsed = MessageParser::default()
        .parse(&inner)
        .expect("mail-parser cannot parse the inner entity");
    let ct = parsed.content_type().expect("inner Content-Type");
    assert_eq!(
        (
            ct.ctype(),
            ct.subtype(),
            ct.attribute("protocol"),
            ct.attribute("micalg")
        ),
        (
            "multipart",
            Some("signed"),
            Some("application/pkcs7-signature"),
            Some("sha-256")
        ),
        "inner entity"
    );
    let (content, sig) = split_multipart_signed(&inner);
    assert_entity(&content, "signed part");
    let content_file = write(&token, "signed-content.txt", &content);
    let sig_file = write(&token, "smime.p7s", &sig);

    // gpgsm: good signature by alice-sign, fully trusted.
    let fpr = sha1_fpr("alice-sign.pem");
    let v = gpg.verify(&sig_file, &content_file);
    let status = String::from_utf8_lossy(&v.stdout);
    assert_eq!(v.status.code(), Some(0), "gpgsm --verify: {}", report(&v));
    assert!(
        status.contains(&format!("[GNUPG:] GOODSIG {fpr} "))
            && status.contains(&format!("[GNUPG:] VALIDSIG {fpr} "))
            && status.contains("[GNUPG:] TRUST_FULLY")
            && !status.contains("BADSIG"),
        "gpgsm --verify: {}",
        report(&v)
    );

    // NSS: exit 0 with the content echoed, and GoodSignature by Alice Tester.
    let n = cmsutil_decode(&db, &sig_file, Some(&content_file), &[]);
    assert_eq!(n.status.code(), Some(0), "cmsutil verify: {}", report(&n));
    assert!(n.stdout == content, "cmsutil verify printed other content");
    let h = cmsutil_decode(&db, &sig_file, Some(&content_file), &["-h", "0"]);
    assert!(
        String::from_utf8_lossy(&h.stdout)
            .contains("signer0.id=\"Alice Tester\"; signer0.status=GoodSignature;"),
        "cmsutil -h 0: {}",
        report(&h)
    );

    // Negative: one byte of the signed content changed.
    let bad = write(&token, "signed-altered.txt", &altered(&content));
    let v = gpg.verify(&sig_file, &bad);
    assert!(
        v.status.code() != Some(0)
            && String::from_utf8_lossy(&v.stdout).contains(&format!("[GNUPG:] BADSIG {fpr} ")),
        "gpgsm accepted altered content: {}",
        report(&v)
    );
    let n = cmsutil_decode(&db, &sig_file, Some(&bad), &[]);
    assert!(
        n.status.code() != Some(0)
            && String::from_utf8_lossy(&n.stderr).contains("signer 0 status = DigestMismatch"),
        "cmsutil accepted altered content: {}",
        report(&n)
    );
    gpg.stop();
}
