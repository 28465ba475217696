//! Whether a signer is trusted: certificate path validation for e-mail protection, with
//! `rustls-webpki` doing the path building and checks, to anchors from `--ca` files (PEM, DER,
//! or a certs-only PKCS#7 `.p7b` bundle, as the DoD publishes its roots) and the system store.
//! webpki checks extended key usage but not key usage; the signing key usage is checked here.

use crate::certinfo::{self, key_usage};
use crate::error::{Error, Result};
use der::Encode;
use rustls_pki_types::{CertificateDer, UnixTime};
use std::path::{Path, PathBuf};
use std::time::Duration;
use x509_cert::Certificate;

/// id-kp-emailProtection (1.3.6.1.5.5.7.3.4), as the DER value webpki wants.
const EMAIL_PROTECTION: &[u8] = &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x04];

/// Where Linux distributions and macOS keep the system's trusted roots.
const SYSTEM_BUNDLES: &[&str] = &[
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/cert.pem",
];

/// Trust anchors.
#[derive(Default)]
pub struct TrustStore {
    anchors: Vec<CertificateDer<'static>>,
}

impl TrustStore {
    /// Anchors from `ca_files`, plus the system store unless `system` is false.
    pub fn load(ca_files: &[PathBuf], system: bool) -> Result<Self> {
        let mut store = TrustStore::default();
        for path in ca_files {
            let bytes = std::fs::read(path)
                .map_err(|e| Error::io(format!("cannot read {}", path.display()), e))?;
            for cert in certinfo::load_certificates(&bytes)? {
                store.add(&cert)?;
            }
        }
        if system && let Some(bundle) = SYSTEM_BUNDLES.iter().map(Path::new).find(|p| p.exists()) {
            // A broken system bundle is not the user's message's fault: use what parses.
            if let Ok(bytes) = std::fs::read(bundle) {
                for der in pem_blocks(&bytes) {
                    store.anchors.push(CertificateDer::from(der));
                }
            }
        }
        Ok(store)
    }

    pub fn add(&mut self, cert: &Certificate) -> Result<()> {
        let der = cert
            .to_der()
            .map_err(|e| Error::BadInput(format!("cannot encode a certificate: {e}")))?;
        self.anchors.push(CertificateDer::from(der));
        Ok(())
    }

    pub fn is_empty(&self) -> bool {
        self.anchors.is_empty()
    }

    /// Validates `leaf` for e-mail signing at `at` (seconds since the epoch), with
    /// `intermediates` (the message's certificates). `Err` says why not, in words.
    pub fn check_signer(
        &self,
        leaf: &Certificate,
        intermediates: &[Certificate],
        at: u64,
    ) -> std::result::Result<(), String> {
        let ku = key_usage(leaf);
        if !ku.is_empty()
            && !ku
                .iter()
                .any(|u| u == "digitalSignature" || u == "nonRepudiation")
        {
            return Err("the signer's certificate is not for signing (key usage)".into());
        }
        let anchors: Vec<_> = self
            .anchors
            .iter()
            .filter_map(|d| webpki::anchor_from_trusted_cert(d).ok())
            .collect();
        let leaf_der = CertificateDer::from(leaf.to_der().map_err(|e| e.to_string())?);
        let ee = webpki::EndEntityCert::try_from(&leaf_der).map_err(describe)?;
        let inter: Vec<CertificateDer<'_>> = intermediates
            .iter()
            .filter(|c| *c != leaf)
            .filter_map(|c| c.to_der().ok().map(CertificateDer::from))
            .collect();
        ee.verify_for_usage(
            webpki::ALL_VERIFICATION_ALGS,
            &anchors,
            &inter,
            UnixTime::since_unix_epoch(Duration::from_secs(at)),
            webpki::KeyUsage::required_if_present(EMAIL_PROTECTION),
            None,
            None,
        )
        .map(|_| ())
        .map_err(describe)
    }
}

/// webpki's verdicts in the words a user needs.
fn describe(e: webpki::Error) -> String {
    let name = format!("{e:?}");
    if name.starts_with("UnknownIssuer") {
        "no trusted authority issued the signer's certificate (give its root with --ca FILE)".into()
    } else if name.starts_with("CertExpired") {
        "the signer's certificate had expired at signing time".into()
    } else if name.starts_with("CertNotValidYet") {
        "the signer's certificate was not yet valid at signing time".into()
    } else if name.starts_with("RequiredEkuNotFound") {
        "the signer's certificate is not for e-mail protection (extended key usage)".into()
    } else if name.starts_with("CaUsedAsEndEntity") {
        "the signer's certificate is a CA certificate".into()
    } else if name.starts_with("InvalidSignatureForPublicKey") {
        "a certificate in the chain has an invalid signature".into()
    } else if name.starts_with("UnsupportedSignatureAlgorithm") {
        "a certificate in the chain uses an unsupported or weak signature algorithm".into()
    } else {
        format!("the certificate chain is not valid ({name})")
    }
}

/// The DER of every CERTIFICATE block in a PEM bundle.
fn pem_blocks(bytes: &[u8]) -> Vec<Vec<u8>> {
    use base64::Engine;
    let text = String::from_utf8_lossy(bytes);
    let mut out = Vec::new();
    let mut current: Option<String> = None;
    for line in text.lines() {
        let line = line.trim();
        if line == "-----BEGIN CERTIFICATE-----" {
            current = Some(String::new());
        } else if line == "-----END CERTIFICATE-----" {
            if let Some(b64) = current.take()
                && let Ok(der) = base64::engine::general_purpose::STANDARD.decode(b64)
            {
                out.push(der);
            }
        } else if let Some(b) = current.as_mut() {
            b.push_str(line);
        }
    }
    out
}
