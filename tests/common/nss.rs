//! NSS (what Thunderbird uses) as a peer, through `libnss3-tools`: a fresh certificate database
//! made with `certutil -N`, with or without a password (then in a file given with `-f`),
//! certificates added with `certutil`, keys imported from PKCS#12 with `pk12util`, and
//! `cmsutil` run against it.
//!
//! `cmsutil` checks some options against the mode when it reads them (`-N` only with `-S`,
//! ...), so the mode comes first.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use super::{fixture, path_str, require, run_ok};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// An NSS cert DB (`sql:` format) in `dir`, and its password file if it has a password.
pub struct NssDb {
    pub dir: PathBuf,
    pwfile: Option<PathBuf>,
}

impl NssDb {
    /// `certutil -N` in the new directory `dir`: with `password` (written to `dir/password`),
    /// or `--empty-password`.
    pub fn create(dir: &Path, password: Option<&str>) -> Self {
        std::fs::create_dir(dir).unwrap();
        let pwfile = password.map(|pw| {
            let file = dir.join("password");
            std::fs::write(&file, format!("{pw}\n")).unwrap();
            file
        });
        let db = NssDb {
            dir: dir.to_path_buf(),
            pwfile,
        };
        let mut new = db.certutil("-N");
        if db.pwfile.is_none() {
            new.arg("--empty-password");
        }
        run_ok(&mut new);
        db
    }

    /// `sql:DIR`, the database as the tools name it.
    pub fn sql(&self) -> String {
        format!("sql:{}", path_str(&self.dir))
    }

    /// `TOOL MODE -d sql:DIR [-f PASSWORD-FILE]`.
    fn tool(&self, tool: &str, mode: &str) -> Command {
        let mut cmd = Command::new(require(tool, "libnss3-tools"));
        cmd.arg(mode).arg("-d").arg(self.sql());
        if let Some(pw) = &self.pwfile {
            cmd.arg("-f").arg(pw);
        }
        cmd
    }

    /// `certutil COMMAND -d sql:DIR [-f PASSWORD-FILE]`.
    pub fn certutil(&self, command: &str) -> Command {
        self.tool("certutil", command)
    }

    /// `cmsutil MODE -d sql:DIR [-f PASSWORD-FILE]`.
    pub fn cmsutil(&self, mode: &str) -> Command {
        self.tool("cmsutil", mode)
    }

    /// `certutil -A -n NICK -t TRUST -i CERT` of a fixture certificate.
    pub fn add_cert(&self, nick: &str, cert: &str, trust: &str) {
        run_ok(
            self.certutil("-A")
                .args(["-n", nick, "-t", trust, "-i"])
                .arg(fixture(cert)),
        );
    }

    /// The test CA, trusted for e-mail (`,C,`: without the middle C, cmsutil reports
    /// SigningCertNotTrusted).
    pub fn trust_test_ca(&self) {
        self.add_cert("p11smime test CA", "ca.pem", ",C,");
    }

    /// `pk12util -i P12 -W PASSWORD`: a key and its certificate.
    pub fn import_p12(&self, p12: &Path, password: &str) {
        let mut cmd = Command::new(require("pk12util", "libnss3-tools"));
        cmd.arg("-d").arg(self.sql()).arg("-i").arg(p12);
        cmd.args(["-W", password]);
        if let Some(pw) = &self.pwfile {
            cmd.arg("-k").arg(pw);
        }
        run_ok(&mut cmd);
    }
}

/// `cmsutil -D -d sql:DB [-f PASSWORD-FILE] [-c CONTENT] -i INPUT EXTRA`.
pub fn cmsutil_decode(db: &NssDb, input: &Path, content: Option<&Path>, extra: &[&str]) -> Output {
    let mut cmd = db.cmsutil("-D");
    if let Some(c) = content {
        cmd.arg("-c").arg(c);
    }
    cmd.arg("-i").arg(input).args(extra);
    cmd.output().unwrap()
}
