//! The user's directory of correspondents' certificates, keyed by e-mail address, so that
//! `encrypt -r bob@example.test` finds Bob's certificate: `$P11SMIME_CERT_DIR`, else
//! `$XDG_DATA_HOME/p11smime/certs`, else `~/.local/share/p11smime/certs`.

use crate::certinfo::{is_ca, is_encryption_cert, load_certificates};
use crate::error::{Error, Result};
use std::path::{Path, PathBuf};
use x509_cert::Certificate;

/// The directory, whether or not it exists yet.
pub fn dir() -> Option<PathBuf> {
    if let Some(d) = std::env::var_os("P11SMIME_CERT_DIR") {
        return Some(PathBuf::from(d));
    }
    if let Some(d) = std::env::var_os("XDG_DATA_HOME") {
        return Some(PathBuf::from(d).join("p11smime/certs"));
    }
    std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/share/p11smime/certs"))
}

fn file_for(dir: &Path, email: &str) -> PathBuf {
    dir.join(format!("{}.pem", email.to_ascii_lowercase()))
}

/// Resolves a recipient: a certificate file (PEM, DER, .p7b), or an address in the directory.
/// From a bundle, the certificates for encryption are taken (not the CAs).
pub fn recipient(spec: &str) -> Result<Vec<Certificate>> {
    let path = Path::new(spec);
    let bytes = if path.exists() {
        std::fs::read(path).map_err(|e| Error::io(format!("cannot read {spec}"), e))?
    } else if spec.contains('@') {
        let file = dir().map(|d| file_for(&d, spec));
        match file.as_deref().map(std::fs::read) {
            Some(Ok(b)) => b,
            _ => {
                return Err(Error::KeyNotFound(format!(
                    "no certificate for {spec}: give a certificate file with -r FILE, or verify a signed \
                     message from {spec} with --remember{}",
                    file.map(|f| format!(" (looked for {})", f.display()))
                        .unwrap_or_default()
                )));
            }
        }
    } else {
        return Err(Error::Usage(format!(
            "-r {spec}: no such file, and not an e-mail address"
        )));
    };
    let certs = load_certificates(&bytes)?;
    if certs.len() == 1 {
        return Ok(certs);
    }
    let chosen: Vec<Certificate> = certs
        .into_iter()
        .filter(|c| !is_ca(c) && is_encryption_cert(c))
        .collect();
    if chosen.is_empty() {
        return Err(Error::BadInput(format!(
            "{spec} holds no certificate for encryption"
        )));
    }
    Ok(chosen)
}

/// Keeps `cert` under `email` in the directory (created 0700), replacing an older one.
pub fn remember(email: &str, cert: &Certificate) -> Result<PathBuf> {
    use std::os::unix::fs::DirBuilderExt;
    let dir = dir().ok_or_else(|| {
        Error::Usage("no certificate directory: set HOME or P11SMIME_CERT_DIR".into())
    })?;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&dir)
        .map_err(|e| Error::io(format!("cannot create {}", dir.display()), e))?;
    let pem = der::EncodePem::to_pem(cert, der::pem::LineEnding::LF)
        .map_err(|e| Error::BadInput(format!("cannot encode the certificate: {e}")))?;
    let path = file_for(&dir, email);
    std::fs::write(&path, pem)
        .map_err(|e| Error::io(format!("cannot write {}", path.display()), e))?;
    Ok(path)
}
