//! A throwaway PKI made at test time with `openssl ca` in the test's temporary directory: CAs
//! with their own database (index.txt, serial, crlnumber) and configuration, EC P-256 keys so
//! that it takes milliseconds, certificates with the extensions each test needs, revocation and
//! CRLs; and messages signed with `openssl cms -sign`.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use super::{path_str, require, run_ok};
use std::path::{Path, PathBuf};
use std::process::Command;

/// `openssl`, or a test failure saying how to install it.
pub fn openssl() -> Command {
    Command::new(require("openssl", "openssl"))
}

/// A new EC P-256 key in `path`.
pub fn ec_key(path: &Path) {
    run_ok(
        openssl()
            .args(["genpkey", "-algorithm", "EC"])
            .args(["-pkeyopt", "ec_paramgen_curve:P-256", "-out"])
            .arg(path),
    );
}

/// A new RSA-2048 key in `path`.
pub fn rsa_key(path: &Path) {
    run_ok(
        openssl()
            .args(["genpkey", "-algorithm", "RSA", "-pkeyopt"])
            .args(["rsa_keygen_bits:2048", "-out"])
            .arg(path),
    );
}

/// A CA with its own `openssl ca` database, configuration and key.
pub struct Ca {
    pub dir: PathBuf,
    pub name: String,
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl Ca {
    /// `openssl req` configuration: subjects come from `-subj`, extensions from `[root]`.
    const REQ_CNF: &str = "[req]\n\
                           distinguished_name = dn\n\
                           prompt = no\n\
                           [dn]\n\
                           CN = placeholder\n\
                           [root]\n\
                           basicConstraints = critical, CA:TRUE\n\
                           keyUsage = critical, keyCertSign, cRLSign\n\
                           subjectKeyIdentifier = hash\n";

    /// A self-signed root `subject` in `base/name/`.
    pub fn root(base: &Path, name: &str, subject: &str) -> Ca {
        let ca = Ca::empty(base, name);
        ec_key(&ca.key);
        run_ok(
            openssl()
                .args(["req", "-x509", "-new", "-config"])
                .arg(ca.dir.join("req.cnf"))
                .args(["-extensions", "root", "-days", "30", "-subj", subject])
                .arg("-key")
                .arg(&ca.key)
                .arg("-out")
                .arg(&ca.cert),
        );
        ca
    }

    /// The directory, database and configuration of a CA whose key and certificate are yet
    /// to be made.
    pub fn empty(base: &Path, name: &str) -> Ca {
        let dir = base.join(name);
        std::fs::create_dir_all(dir.join("certs")).unwrap();
        std::fs::write(dir.join("index.txt"), "").unwrap();
        std::fs::write(dir.join("serial"), "1000\n").unwrap();
        std::fs::write(dir.join("crlnumber"), "01\n").unwrap();
        std::fs::write(dir.join("req.cnf"), Self::REQ_CNF).unwrap();
        let d = path_str(&dir);
        std::fs::write(
            dir.join("ca.cnf"),
            format!(
                "[ca]\n\
                 default_ca = tca\n\
                 [tca]\n\
                 database = {d}/index.txt\n\
                 new_certs_dir = {d}/certs\n\
                 serial = {d}/serial\n\
                 crlnumber = {d}/crlnumber\n\
                 certificate = {d}/ca.pem\n\
                 private_key = {d}/ca.key.pem\n\
                 default_md = sha256\n\
                 default_days = 30\n\
                 default_crl_days = 7\n\
                 policy = any\n\
                 unique_subject = no\n\
                 copy_extensions = none\n\
                 [any]\n\
                 organizationName = optional\n\
                 commonName = supplied\n\
                 emailAddress = optional\n"
            ),
        )
        .unwrap();
        Ca {
            cert: dir.join("ca.pem"),
            key: dir.join("ca.key.pem"),
            name: name.to_string(),
            dir,
        }
    }

    /// A certificate for `subject` on a new EC P-256 key, with the extensions `ext` (one
    /// section), issued by `openssl ca` (with `extra` options). Returns (certificate, key).
    pub fn issue(
        &self,
        name: &str,
        subject: &str,
        ext: &str,
        extra: &[&str],
    ) -> (PathBuf, PathBuf) {
        self.issue_with_key(name, subject, ext, extra, ec_key)
    }

    /// As [`Ca::issue`], with the key made by `make_key` (e.g. [`rsa_key`]).
    pub fn issue_with_key(
        &self,
        name: &str,
        subject: &str,
        ext: &str,
        extra: &[&str],
        make_key: fn(&Path),
    ) -> (PathBuf, PathBuf) {
        let key = self.dir.join(format!("{name}.key.pem"));
        let csr = self.dir.join(format!("{name}.csr"));
        let cert = self.dir.join(format!("{name}.pem"));
        let extfile = self.dir.join(format!("{name}.ext"));
        std::fs::write(&extfile, format!("[ext]\n{ext}")).unwrap();
        make_key(&key);
        run_ok(
            openssl()
                .args(["req", "-new", "-config"])
                .arg(self.dir.join("req.cnf"))
                .args(["-subj", subject, "-key"])
                .arg(&key)
                .arg("-out")
                .arg(&csr),
        );
        run_ok(
            openssl()
                .args(["ca", "-batch", "-notext", "-config"])
                .arg(self.dir.join("ca.cnf"))
                .arg("-extfile")
                .arg(&extfile)
                .args(["-extensions", "ext"])
                .args(extra)
                .arg("-in")
                .arg(&csr)
                .arg("-out")
                .arg(&cert),
        );
        (cert, key)
    }

    /// `openssl ca -revoke`.
    pub fn revoke(&self, cert: &Path) {
        run_ok(
            openssl()
                .args(["ca", "-batch", "-config"])
                .arg(self.dir.join("ca.cnf"))
                .args(["-crl_reason", "keyCompromise", "-revoke"])
                .arg(cert),
        );
    }

    /// `openssl ca -gencrl` (with `extra` options): the PEM CRL in the CA's directory, and its
    /// DER (`openssl crl -outform DER`) as `www/NAME.crl`. Returns (DER, PEM).
    pub fn gencrl(&self, www: &Path, extra: &[&str]) -> (PathBuf, PathBuf) {
        let pem = self.dir.join(format!("{}.crl.pem", self.name));
        let der = www.join(format!("{}.crl", self.name));
        run_ok(
            openssl()
                .args(["ca", "-batch", "-gencrl", "-config"])
                .arg(self.dir.join("ca.cnf"))
                .args(extra)
                .arg("-out")
                .arg(&pem),
        );
        run_ok(
            openssl()
                .args(["crl", "-outform", "DER", "-in"])
                .arg(&pem)
                .arg("-out")
                .arg(&der),
        );
        (der, pem)
    }
}

/// `openssl cms -sign` (text mode) of `entity` by `signer` (with `extra` options, e.g.
/// `-certfile`) as a multipart/signed message `name` in `dir`.
pub fn cms_sign(
    dir: &Path,
    name: &str,
    entity: &str,
    signer: &(PathBuf, PathBuf),
    extra: &[&str],
) -> PathBuf {
    let input = dir.join("entity.txt");
    std::fs::write(&input, entity).unwrap();
    let out = dir.join(name);
    run_ok(
        openssl()
            .args(["cms", "-sign", "-signer"])
            .arg(&signer.0)
            .arg("-inkey")
            .arg(&signer.1)
            .args(extra)
            .arg("-in")
            .arg(&input)
            .arg("-out")
            .arg(&out),
    );
    out
}
