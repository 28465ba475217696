//! GnuPG's `gpgsm` as a peer: a short temporary GNUPGHOME in /tmp (the agent's Unix sockets
//! live there) that trusts the test CA through `trustlist.txt`, fixture certificates and
//! PKCS#12 secret keys imported, the passphrase given by loopback pinentry, and a guard that
//! stops the gpg-agent gpgsm starts, even when the test fails (`Gpgsm`'s `Drop`).
//!
//! gpgsm 2.2 has no `--passphrase`: `--pinentry-mode loopback --passphrase-fd 0` works for the
//! import and for each use of the key. It cannot read OpenSSL 3's default PKCS#12 (PBES2 with
//! AES), only the legacy PBE-SHA1-3DES form, and even then about one file in 100 to 200
//! (depending on the random salt) fails to parse although openssl reads it: `import_p12`
//! makes a fresh file and tries again.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use super::{TestToken, fixture, pkcs12_export, report, require, run_ok};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

/// Live gpg-agent processes started for `home` (Linux /proc; empty elsewhere). A killed agent
/// left as a zombie has an empty cmdline and is not counted.
pub fn agents_for(home: &Path) -> Vec<u32> {
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
pub fn sha1_fpr(cert: &str) -> String {
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

/// A temporary GNUPGHOME. Dropping it runs `gpgconf --kill all` and waits for the agent to go.
pub struct Gpgsm {
    gpgsm: PathBuf,
    gpgconf: PathBuf,
    home: tempfile::TempDir,
    /// A file holding the passphrase of the imported secret key, stdin for `--passphrase-fd 0`.
    passfile: Option<PathBuf>,
    stopped: bool,
}

impl Gpgsm {
    /// A GNUPGHOME holding the test CA, trusted ("S" in `trustlist.txt`), and the fixture
    /// certificates `certs`; loopback pinentry allowed.
    pub fn new(certs: &[&str]) -> Self {
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
            passfile: None,
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
                .args(certs.iter().map(|c| fixture(c))),
        );
        // Trust the test root non-interactively: "<SHA-1 fingerprint> S".
        std::fs::write(
            g.home.path().join("trustlist.txt"),
            format!("{} S\n", sha1_fpr("ca.pem")),
        )
        .unwrap();
        g
    }

    /// Imports the fixture `cert` with `key` as a secret key, from a legacy-PBE PKCS#12 made in
    /// `dir` with `passphrase`, which later `with_passphrase` commands give. A file that fails
    /// with gpgsm's salt quirk is made again (at most 10 times).
    pub fn with_secret_key(mut self, dir: &Path, cert: &str, key: &str, passphrase: &str) -> Self {
        let passfile = self.home.path().join("passphrase");
        std::fs::write(&passfile, format!("{passphrase}\n")).unwrap();
        self.passfile = Some(passfile);
        let stem = cert.trim_end_matches(".pem");
        let mut attempts = Vec::new();
        for n in 0..10 {
            let p12 = dir.join(format!("{stem}-3des-{n}.p12"));
            let legacy = [
                "-keypbe",
                "PBE-SHA1-3DES",
                "-certpbe",
                "PBE-SHA1-3DES",
                "-macalg",
                "sha1",
            ];
            pkcs12_export(&p12, cert, key, passphrase, &legacy);
            let out = self
                .with_passphrase(self.cmd().args([
                    "--batch",
                    "--disable-crl-checks",
                    "--disable-dirmngr",
                ]))
                .arg("--import")
                .arg(&p12)
                .output()
                .unwrap();
            let stderr = String::from_utf8_lossy(&out.stderr);
            if out.status.success() && stderr.contains("secret keys imported: 1") {
                return self;
            }
            // Seen failing both in the key bag ("shrouded_key_bag.decrypted-text") and in the
            // certificate bag ("encryptedData error at \"outer.outer.seq\""): any parse failure
            // of an OpenSSL-made file is gpgsm's salt quirk, worth a fresh file.
            let salt_quirk = stderr.contains("error parsing or decrypting the PKCS#12 file");
            attempts.push(report(&out));
            if !salt_quirk {
                break;
            }
        }
        panic!(
            "gpgsm did not import the PKCS#12 of {cert}:\n{}",
            attempts.join("\n---\n")
        );
    }

    pub fn cmd(&self) -> Command {
        let mut cmd = Command::new(&self.gpgsm);
        cmd.env("GNUPGHOME", self.home.path());
        cmd
    }

    /// Loopback pinentry with the secret key's passphrase on stdin.
    pub fn with_passphrase<'c>(&self, cmd: &'c mut Command) -> &'c mut Command {
        let passfile = self.passfile.as_ref().expect("no secret key imported");
        cmd.args(["--pinentry-mode", "loopback", "--passphrase-fd", "0"])
            .stdin(Stdio::from(std::fs::File::open(passfile).unwrap()))
    }

    /// `gpgsm --verify SIG [CONTENT]` with status lines on stdout; `output` receives the
    /// content of an opaque signature.
    pub fn verify(&self, sig: &Path, content: Option<&Path>, output: Option<&Path>) -> Output {
        let mut cmd = self.cmd();
        cmd.args([
            "--batch",
            "--disable-crl-checks",
            "--disable-dirmngr",
            "--status-fd",
            "1",
        ]);
        if let Some(o) = output {
            cmd.arg("--output").arg(o);
        }
        cmd.arg("--verify").arg(sig);
        if let Some(c) = content {
            cmd.arg(c);
        }
        cmd.output().unwrap()
    }

    /// `gpgsm --encrypt -r NAME@example.test... EXTRA` of `plaintext` (the token's scratch file
    /// `NAME.in`), recipients in the order of `names`; returns the message file `NAME.p7m`.
    pub fn encrypt(
        &self,
        token: &TestToken,
        name: &str,
        names: &[&str],
        plaintext: &[u8],
        extra: &[&str],
    ) -> PathBuf {
        let input = token.write(&format!("{name}.in"), plaintext);
        let output = token.path(&format!("{name}.p7m"));
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
        run_ok(cmd.args(extra).arg("--output").arg(&output).arg(&input));
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
    pub fn stop(mut self) {
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
