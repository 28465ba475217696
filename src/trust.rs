//! Whether a signer is trusted: certificate path validation for e-mail protection, with
//! `rustls-webpki` doing the path building and checks, to anchors from `--ca` files (PEM, DER,
//! or a certs-only PKCS#7 `.p7b` bundle, as the DoD publishes its roots) and the system store.
//! webpki checks extended key usage but not key usage; the signing key usage is checked here.

use crate::certinfo::{self, key_usage};
use crate::error::{Error, Result};
use crate::ocsp;
use crate::revocation::{self, Revocation, RevocationMode};
use der::Decode;
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

/// Trust anchors, and how to check revocation.
#[derive(Default)]
pub struct TrustStore {
    anchors: Vec<CertificateDer<'static>>,
    revocation: Revocation,
}

/// A trusted signer, with what was learned about revocation.
#[derive(Debug, Clone)]
pub struct Trusted {
    /// "not checked", "not revoked (CRL)", or "unknown: ..." in soft mode.
    pub revocation: String,
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

    /// Sets how revocation is checked (default: soft, no CRL files, no fetching).
    pub fn set_revocation(&mut self, revocation: Revocation) {
        self.revocation = revocation;
    }

    pub fn is_empty(&self) -> bool {
        self.anchors.is_empty()
    }

    /// Validates `leaf` for e-mail signing at `at` (seconds since the epoch), with
    /// `intermediates` (the message's certificates), then checks revocation as configured.
    /// `Err` says why not, in words.
    pub fn check_signer(
        &self,
        leaf: &Certificate,
        intermediates: &[Certificate],
        at: u64,
    ) -> std::result::Result<Trusted, String> {
        let ku = key_usage(leaf);
        if !ku.is_empty()
            && !ku
                .iter()
                .any(|u| u == "digitalSignature" || u == "nonRepudiation")
        {
            return Err("the signer's certificate is not for signing (key usage)".into());
        }
        self.check_path(leaf, intermediates, at)
    }

    /// Validates the path from `leaf` to an anchor for e-mail protection at `at`, then checks
    /// revocation as configured; for any e-mail certificate (signing or encryption).
    pub fn check_path(
        &self,
        leaf: &Certificate,
        intermediates: &[Certificate],
        at: u64,
    ) -> std::result::Result<Trusted, String> {
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
        let time = UnixTime::since_unix_epoch(Duration::from_secs(at));
        let usage = || webpki::KeyUsage::required_if_present(EMAIL_PROTECTION);
        let path = ee
            .verify_for_usage(
                webpki::ALL_VERIFICATION_ALGS,
                &anchors,
                &inter,
                time,
                usage(),
                None,
                None,
            )
            .map_err(describe)?;
        if self.revocation.mode == RevocationMode::Off {
            return Ok(Trusted {
                revocation: "not checked".into(),
            });
        }

        // OCSP for the signer's certificate, when it names a responder.
        let mut notes = Vec::new();
        let mut leaf_by_ocsp = false;
        let responders = if self.revocation.fetch {
            ocsp::responders(leaf)
        } else {
            Vec::new()
        };
        if !responders.is_empty() {
            match self.find_issuer(leaf, intermediates) {
                None => notes.push("OCSP: the issuer's certificate is not at hand".to_string()),
                Some(issuer) => {
                    for url in &responders {
                        match ocsp::query(url, leaf, &issuer, certinfo::now()) {
                            Ok(ocsp::Status::Revoked) => {
                                return Err("the signer's certificate is revoked (OCSP)".into());
                            }
                            Ok(ocsp::Status::Good) => {
                                leaf_by_ocsp = true;
                                break;
                            }
                            Ok(ocsp::Status::Unknown) => notes.push(format!(
                                "{url}: the responder does not know the certificate"
                            )),
                            Err(why) => notes.push(why),
                        }
                    }
                }
            }
        }
        let mut in_path = vec![leaf.clone()];
        in_path.extend(
            path.intermediate_certificates()
                .filter_map(|c| Certificate::from_der(c.der().as_ref()).ok()),
        );

        // CRLs: from files, then from the distribution points of each certificate in the path.
        let mut ders: Vec<Vec<u8>> = self.revocation.crls.clone();
        if self.revocation.fetch {
            for cert in &in_path {
                for url in revocation::distribution_points(cert) {
                    match revocation::fetch(&url) {
                        Ok(der) => ders.push(der),
                        Err(why) => notes.push(why),
                    }
                }
            }
        }
        let hard = self.revocation.mode == RevocationMode::Hard;
        let crls = revocation::usable_crls(&ders, certinfo::now(), hard, &mut notes);
        // Which certificates of the chain have an answer: a CRL from their issuer, or OCSP.
        let by_crl: Vec<bool> = in_path
            .iter()
            .map(|c| {
                crls.iter()
                    .any(|crl| crl.issuer == c.tbs_certificate.issuer)
            })
            .collect();
        let answered: Vec<bool> = by_crl
            .iter()
            .enumerate()
            .map(|(i, crl)| *crl || (i == 0 && leaf_by_ocsp))
            .collect();
        let unanswered: Vec<String> = in_path
            .iter()
            .zip(&answered)
            .filter(|(_, a)| !**a)
            .map(|(c, _)| c.tbs_certificate.subject.to_string())
            .collect();
        let missing = |notes: &[String]| {
            let who = format!("no CRL or OCSP answer for {}", unanswered.join(", "));
            if notes.is_empty() {
                who
            } else {
                format!("{who} ({})", notes.join("; "))
            }
        };
        if hard && !unanswered.is_empty() {
            return Err(format!("revocation status unknown: {}", missing(&notes)));
        }
        if by_crl.iter().any(|b| *b) {
            // A revoked certificate fails here whatever the mode. Freshness was judged above,
            // against now; webpki would judge it at the signer-claimed signing time.
            let owned: Vec<webpki::CertRevocationList<'_>> = crls
                .iter()
                .filter_map(|crl| webpki::OwnedCertRevocationList::from_der(&crl.der).ok())
                .map(webpki::CertRevocationList::Owned)
                .collect();
            let refs: Vec<&webpki::CertRevocationList<'_>> = owned.iter().collect();
            let options = webpki::RevocationOptionsBuilder::new(&refs)
                .map_err(|_| "no CRL".to_string())?
                .with_depth(webpki::RevocationCheckDepth::Chain)
                .with_status_policy(webpki::UnknownStatusPolicy::Allow)
                .with_expiration_policy(webpki::ExpirationPolicy::Ignore)
                .build();
            ee.verify_for_usage(
                webpki::ALL_VERIFICATION_ALGS,
                &anchors,
                &inter,
                time,
                usage(),
                Some(options),
                None,
            )
            .map_err(describe)?;
        }
        let how = match (leaf_by_ocsp, by_crl.iter().any(|b| *b)) {
            (true, true) => "not revoked (OCSP, CRL)",
            (true, false) => "not revoked (OCSP)",
            (false, true) => "not revoked (CRL)",
            (false, false) => "unknown",
        };
        let verdict = if unanswered.is_empty() {
            with_notes(how, &notes)
        } else if how == "unknown" {
            format!("unknown: {}", missing(&notes))
        } else {
            format!("{how}; {}", missing(&notes))
        };
        Ok(Trusted {
            revocation: verdict,
        })
    }

    /// The certificate that issued `cert`: among the message's certificates, else the anchors.
    fn find_issuer(
        &self,
        cert: &Certificate,
        intermediates: &[Certificate],
    ) -> Option<Certificate> {
        let issuer = &cert.tbs_certificate.issuer;
        intermediates
            .iter()
            .find(|c| c.tbs_certificate.subject == *issuer && *c != cert)
            .cloned()
            .or_else(|| {
                self.anchors
                    .iter()
                    .filter_map(|d| Certificate::from_der(d.as_ref()).ok())
                    .find(|c| c.tbs_certificate.subject == *issuer)
            })
    }
}

fn with_notes(verdict: &str, notes: &[String]) -> String {
    if notes.is_empty() {
        verdict.to_string()
    } else {
        format!("{verdict}; not reached: {}", notes.join("; "))
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
    } else if name.starts_with("CertRevoked") {
        "the signer's certificate, or a CA certificate in its chain, is revoked".into()
    } else if name.starts_with("UnknownRevocationStatus") {
        "revocation status unknown: no CRL covers a certificate in the chain".into()
    } else if name.starts_with("CrlExpired") {
        "the CRL is out of date (past its next update)".into()
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
