//! Revocation data for `verify`: CRLs from files and from the certificates' distribution points
//! (fetched over plain HTTP: a CRL is signed, so the transport needs no protection). The checks
//! themselves are webpki's, in `trust`. OCSP is not implemented yet.

use der::Decode;
use std::time::Duration;
use x509_cert::Certificate;
use x509_cert::ext::pkix::CrlDistributionPoints;
use x509_cert::ext::pkix::name::{DistributionPointName, GeneralName};

/// How hard to insist on revocation status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RevocationMode {
    /// Do not check.
    Off,
    /// Check what can be reached; say what could not (the default).
    #[default]
    Soft,
    /// Fail without a definitive answer for every certificate in the chain.
    Hard,
}

/// Revocation settings and the CRLs given in files.
#[derive(Debug, Clone, Default)]
pub struct Revocation {
    pub mode: RevocationMode,
    /// DER CRLs from `--crl` files.
    pub crls: Vec<Vec<u8>>,
    /// Fetch CRLs from the distribution points named in the certificates.
    pub fetch: bool,
}

/// Largest CRL accepted from the network.
const MAX_CRL: u64 = 64 * 1024 * 1024;

/// The http:// distribution points of `cert`.
pub fn distribution_points(cert: &Certificate) -> Vec<String> {
    let Some(points) =
        crate::certinfo::decode_extension::<CrlDistributionPoints>(cert, &CRL_DISTRIBUTION_POINTS)
    else {
        return Vec::new();
    };
    let mut urls = Vec::new();
    for dp in points.0 {
        if let Some(DistributionPointName::FullName(names)) = dp.distribution_point {
            for name in names {
                if let GeneralName::UniformResourceIdentifier(uri) = name {
                    urls.push(uri.to_string());
                }
            }
        }
    }
    urls
}

const CRL_DISTRIBUTION_POINTS: const_oid::ObjectIdentifier =
    const_oid::ObjectIdentifier::new_unwrap("2.5.29.31");

/// Fetches a CRL; `Err` says why not, for the report.
pub fn fetch(url: &str) -> Result<Vec<u8>, String> {
    if !url.starts_with("http://") {
        return Err(format!(
            "{url}: only http:// distribution points are fetched"
        ));
    }
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(10)))
        .build()
        .into();
    let mut response = agent.get(url).call().map_err(|e| format!("{url}: {e}"))?;
    let body = response
        .body_mut()
        .with_config()
        .limit(MAX_CRL)
        .read_to_vec()
        .map_err(|e| format!("{url}: {e}"))?;
    // Some servers publish PEM; webpki wants DER.
    if body.starts_with(b"-----BEGIN") {
        return pem_to_der(&body).ok_or_else(|| format!("{url}: malformed PEM CRL"));
    }
    Ok(body)
}

/// A PEM CRL to DER; DER passes through.
pub fn pem_to_der(bytes: &[u8]) -> Option<Vec<u8>> {
    use base64::Engine;
    if !bytes.starts_with(b"-----BEGIN") {
        return Some(bytes.to_vec());
    }
    let text = String::from_utf8_lossy(bytes);
    let b64: String = text.lines().filter(|l| !l.starts_with("-----")).collect();
    base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .ok()
}

/// A CRL we will use: its DER and its issuer.
pub struct UsableCrl {
    pub der: Vec<u8>,
    pub issuer: x509_cert::name::Name,
}

/// Reads `ders`, keeping the CRLs that parse and, in `hard` mode, only those current at `now`
/// (never judged at the signing time, which the signer chooses: a backdated message must not
/// make an old CRL count). What is dropped is said in `notes`.
pub fn usable_crls(
    ders: &[Vec<u8>],
    now: u64,
    hard: bool,
    notes: &mut Vec<String>,
) -> Vec<UsableCrl> {
    let mut out = Vec::new();
    for der in ders {
        let Ok(crl) = x509_cert::crl::CertificateList::from_der(der) else {
            notes.push("a CRL could not be read".into());
            continue;
        };
        let issuer = crl.tbs_cert_list.issuer;
        let stale = crl
            .tbs_cert_list
            .next_update
            .is_some_and(|n| n.to_unix_duration().as_secs() < now);
        if stale {
            notes.push(format!(
                "the CRL from {issuer} is out of date (past its next update)"
            ));
            if hard {
                continue;
            }
        }
        out.push(UsableCrl {
            der: der.clone(),
            issuer,
        });
    }
    out
}
