//! Interoperability with GnuPG: messages made by `gpgsm --encrypt` are decrypted by
//! `p11smime decrypt` with keys on a SoftHSM2 token.
//!
//! `gpgsm` writes BER with indefinite lengths and 4096-byte encryptedContent chunks,
//! issuerAndSerialNumber and PKCS#1 v1.5 key transport; its default cipher is AES-128-CBC.
//! Each test has its own short GNUPGHOME in /tmp (the agent's Unix sockets live there), trusts
//! the test CA through `trustlist.txt`, and stops the gpg-agent that gpgsm starts, even when
//! the test fails (`Gpgsm`'s `Drop`).
//!
//! gpgsm comes from `scripts/install-deps`; a missing tool fails the test instead of skipping it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use common::*;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// DER of the content-encryption algorithm OIDs, to check what the peer actually produced.
const OID_AES128_CBC: &[u8] = &[
    0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x01, 0x02,
];
const OID_AES256_CBC: &[u8] = &[
    0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x01, 0x2A,
];
const OID_DES_EDE3_CBC: &[u8] = &[0x06, 0x08, 0x2A, 0x86, 0x48, 0x86, 0xF7, 0x0D, 0x03, 0x07];

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

/// A temporary GNUPGHOME with the test CA trusted and alice-enc.pem imported.
/// Dropping it runs `gpgconf --kill all` and waits for the agent to go.
struct Gpgsm {
    gpgsm: PathBuf,
    gpgconf: PathBuf,
    home: tempfile::TempDir,
    stopped: bool,
}

impl Gpgsm {
    fn new() -> Self {
        let gpgsm = require("gpgsm", "gpgsm");
        let gpgconf = require("gpgconf", "gpgconf");
        // Short: the agent's sockets are created in here (108-byte sun_path limit).
        let home = tempfile::Builder::new()
            .prefix("gsm.")
            .tempdir_in("/tmp")
            .unwrap();
        let g = Gpgsm {
            gpgsm,
            gpgconf,
            home,
            stopped: false,
        };
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(g.home.path(), std::fs::Permissions::from_mode(0o700))
                .unwrap();
        }
        run_ok(
            g.cmd()
                .args(["--batch", "--import"])
                .arg(fixture("ca.pem"))
                .arg(fixture("alice-enc.pem")),
        );
        // Trust the test root non-interactively: "<SHA-1 fingerprint> S".
        let fpr = run_ok(
            Command::new("openssl")
                .args(["x509", "-noout", "-fingerprint", "-sha1", "-in"])
                .arg(fixture("ca.pem")),
        );
        let fpr = String::from_utf8(fpr.stdout).unwrap();
        let fpr = fpr
            .trim()
            .split_once('=')
            .expect("openssl fingerprint output")
            .1;
        std::fs::write(g.home.path().join("trustlist.txt"), format!("{fpr} S\n")).unwrap();
        g
    }

    fn cmd(&self) -> Command {
        let mut cmd = Command::new(&self.gpgsm);
        cmd.env("GNUPGHOME", self.home.path());
        cmd
    }

    /// `gpgsm --encrypt -r alice@example.test EXTRA` of `plaintext`; returns the message file.
    fn encrypt(&self, token: &TestToken, name: &str, plaintext: &[u8], extra: &[&str]) -> PathBuf {
        let input = token.path(&format!("{name}.in"));
        let output = token.path(&format!("{name}.p7m"));
        std::fs::write(&input, plaintext).unwrap();
        run_ok(
            self.cmd()
                .args([
                    "--batch",
                    "--yes",
                    "--disable-crl-checks",
                    "--disable-dirmngr",
                ])
                .args(["--encrypt", "-r", "alice@example.test"])
                .args(extra)
                .arg("--output")
                .arg(&output)
                .arg(&input),
        );
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

/// Binary gpgsm output: indefinite-length BER with `oid` as the content cipher.
fn assert_binary_with(msg: &Path, oid: &[u8], what: &str) {
    let der = std::fs::read(msg).unwrap();
    assert_eq!(
        der.get(..2),
        Some(&[0x30, 0x80][..]),
        "{what}: gpgsm output is not indefinite-length BER"
    );
    assert!(contains(&der, oid), "{what}: unexpected content cipher");
}

#[test]
fn gpgsm_default_aes128_binary_decrypts() {
    let token = TestToken::new();
    let gpg = Gpgsm::new();
    let msg = gpg.encrypt(&token, "default", SAMPLE, &[]);
    assert_binary_with(&msg, OID_AES128_CBC, "gpgsm default");
    assert_plaintext(&token.decrypt(&msg), SAMPLE, "gpgsm default (AES-128)");
    gpg.stop();
}

#[test]
fn gpgsm_aes256_decrypts() {
    let token = TestToken::new();
    let gpg = Gpgsm::new();
    let msg = gpg.encrypt(&token, "aes256", SAMPLE, &["--cipher-algo", "AES256"]);
    assert_binary_with(&msg, OID_AES256_CBC, "gpgsm AES256");
    assert_plaintext(&token.decrypt(&msg), SAMPLE, "gpgsm --cipher-algo AES256");
    gpg.stop();
}

#[test]
fn gpgsm_3des_decrypts() {
    let token = TestToken::new();
    let gpg = Gpgsm::new();
    let msg = gpg.encrypt(&token, "3des", SAMPLE, &["--cipher-algo", "3DES"]);
    assert_binary_with(&msg, OID_DES_EDE3_CBC, "gpgsm 3DES");
    assert_plaintext(&token.decrypt(&msg), SAMPLE, "gpgsm --cipher-algo 3DES");
    gpg.stop();
}

#[test]
fn gpgsm_armor_decrypts() {
    let token = TestToken::new();
    let gpg = Gpgsm::new();
    let msg = gpg.encrypt(&token, "armor", SAMPLE, &["--armor"]);
    let text = std::fs::read_to_string(&msg).unwrap();
    assert!(
        text.starts_with("-----BEGIN ENCRYPTED MESSAGE-----\n")
            && text.trim_end().ends_with("-----END ENCRYPTED MESSAGE-----"),
        "unexpected gpgsm armor: {text}"
    );
    assert_plaintext(&token.decrypt(&msg), SAMPLE, "gpgsm --armor");
    gpg.stop();
}

#[test]
fn gpgsm_bare_base64_decrypts() {
    let token = TestToken::new();
    let gpg = Gpgsm::new();
    let msg = gpg.encrypt(&token, "base64", SAMPLE, &["--base64"]);
    let text = std::fs::read_to_string(&msg).unwrap();
    assert!(
        text.starts_with("MIAGCSqGSIb3DQEHA") && !text.contains("-----"),
        "unexpected gpgsm --base64 output: {text}"
    );
    assert_plaintext(&token.decrypt(&msg), SAMPLE, "gpgsm --base64");
    gpg.stop();
}

#[test]
fn gpgsm_large_content_decrypts_byte_exact() {
    let token = TestToken::new();
    let gpg = Gpgsm::new();
    // 200 KiB + 5: every byte value, many 4096-byte chunks and a partial last block.
    let content = varied_bytes(200 * 1024 + 5);
    let msg = gpg.encrypt(&token, "large", &content, &[]);
    assert_binary_with(&msg, OID_AES128_CBC, "gpgsm large");
    assert_plaintext(&token.decrypt(&msg), &content, "gpgsm 200 KiB");
    gpg.stop();
}
