//! OCSP (RFC 6960) for a signer's certificate: the request for one certificate, sent over plain
//! HTTP to the responder its Authority Information Access names, and the answer checked: signed
//! by the issuer or by a responder the issuer delegated (id-kp-OCSPSigning), about our
//! certificate, fresh, and with our nonce when the responder echoes one. The structures are the
//! `x509-ocsp` crate's.

use crate::certinfo::{decode_extension, extended_key_usage, is_expired};
use crate::cms::ber::Reader;
use crate::cms::digest::digest;
use crate::cms::oids;
use crate::cms::pubkey;
use crate::keyops::HashAlg;
use const_oid::ObjectIdentifier;
use der::asn1::OctetString;
use der::{Decode, Encode};
use rand::RngCore;
use spki::AlgorithmIdentifierOwned;
use std::time::Duration;
use x509_cert::Certificate;
use x509_cert::ext::Extension;
use x509_cert::ext::pkix::AuthorityInfoAccessSyntax;
use x509_cert::ext::pkix::name::GeneralName;
use x509_ocsp::{
    BasicOcspResponse, CertId, CertStatus, OcspRequest, OcspResponse, OcspResponseStatus, Request,
    TbsRequest,
};

const AIA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.1.1");
const AD_OCSP: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.48.1");
const OCSP_BASIC: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.48.1.1");
const OCSP_NONCE: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.48.1.2");

/// Largest response accepted.
const MAX_RESPONSE: u64 = 1024 * 1024;
/// Clock skew tolerated on thisUpdate.
const SKEW: u64 = 300;
/// Oldest answer accepted when it carries neither our nonce nor a nextUpdate.
const MAX_AGE: u64 = 24 * 3600;

/// What the responder said.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Good,
    Revoked,
    Unknown,
}

/// The http:// OCSP responders `cert` names.
pub fn responders(cert: &Certificate) -> Vec<String> {
    let Some(aia) = decode_extension::<AuthorityInfoAccessSyntax>(cert, &AIA) else {
        return Vec::new();
    };
    aia.0
        .into_iter()
        .filter(|ad| ad.access_method == AD_OCSP)
        .filter_map(|ad| match ad.access_location {
            GeneralName::UniformResourceIdentifier(uri) => Some(uri.to_string()),
            _ => None,
        })
        .collect()
}

fn cert_id(cert: &Certificate, issuer: &Certificate) -> Result<CertId, String> {
    let name = cert
        .tbs_certificate
        .issuer
        .to_der()
        .map_err(|e| e.to_string())?;
    let key = issuer
        .tbs_certificate
        .subject_public_key_info
        .subject_public_key
        .raw_bytes();
    Ok(CertId {
        hash_algorithm: AlgorithmIdentifierOwned {
            oid: oids::SHA1,
            parameters: Some(der::Any::null()),
        },
        issuer_name_hash: OctetString::new(digest(HashAlg::Sha1, &[&name]))
            .map_err(|e| e.to_string())?,
        issuer_key_hash: OctetString::new(digest(HashAlg::Sha1, &[key]))
            .map_err(|e| e.to_string())?,
        serial_number: cert.tbs_certificate.serial_number.clone(),
    })
}

/// Asks the responder at `url` about `cert` (issued by `issuer`) at `now`.
pub fn query(
    url: &str,
    cert: &Certificate,
    issuer: &Certificate,
    now: u64,
) -> Result<Status, String> {
    if !url.starts_with("http://") {
        return Err(format!("{url}: only http:// OCSP responders are asked"));
    }
    let id = cert_id(cert, issuer)?;
    let mut nonce = [0u8; 16];
    rand::thread_rng().fill_bytes(&mut nonce);
    let nonce_ext = Extension {
        extn_id: OCSP_NONCE,
        critical: false,
        extn_value: OctetString::new(
            OctetString::new(nonce.to_vec())
                .and_then(|o| o.to_der())
                .map_err(|e| e.to_string())?,
        )
        .map_err(|e| e.to_string())?,
    };
    let request = OcspRequest {
        tbs_request: TbsRequest {
            version: Default::default(),
            requestor_name: None,
            request_list: vec![Request {
                req_cert: id.clone(),
                single_request_extensions: None,
            }],
            request_extensions: Some(vec![nonce_ext]),
        },
        optional_signature: None,
    }
    .to_der()
    .map_err(|e| e.to_string())?;

    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(10)))
        .build()
        .into();
    let mut response = agent
        .post(url)
        .header("Content-Type", "application/ocsp-request")
        .send(&request[..])
        .map_err(|e| format!("{url}: {e}"))?;
    let body = response
        .body_mut()
        .with_config()
        .limit(MAX_RESPONSE)
        .read_to_vec()
        .map_err(|e| format!("{url}: {e}"))?;
    check_response(&body, &id, issuer, &nonce, now).map_err(|e| format!("{url}: {e}"))
}

fn check_response(
    body: &[u8],
    id: &CertId,
    issuer: &Certificate,
    nonce: &[u8],
    now: u64,
) -> Result<Status, String> {
    let response = OcspResponse::from_der(body).map_err(|_| "not an OCSP response".to_string())?;
    if response.response_status != OcspResponseStatus::Successful {
        return Err(format!(
            "the responder answered {:?}",
            response.response_status
        ));
    }
    let bytes = response.response_bytes.ok_or("an empty OCSP response")?;
    if bytes.response_type != OCSP_BASIC {
        return Err("an OCSP response of an unknown type".into());
    }
    let basic_der = bytes.response.as_bytes();
    let basic = BasicOcspResponse::from_der(basic_der)
        .map_err(|_| "a malformed OCSP response".to_string())?;
    // The signature covers tbsResponseData as received.
    let tbs = Reader::new(basic_der)
        .read("a BasicOCSPResponse")
        .and_then(|seq| seq.children()?.read("tbsResponseData"))
        .map_err(|e| e.to_string())?
        .raw;
    let signer = responder_cert(&basic, issuer, now)?;
    let hash = sig_hash(&basic.signature_algorithm.oid)?;
    pubkey::verify(
        &signer.tbs_certificate.subject_public_key_info,
        &basic.signature_algorithm,
        hash,
        tbs,
        basic.signature.raw_bytes(),
    )
    .map_err(|e| format!("the OCSP response's signature: {e}"))?;

    if let Some(echoed) = basic.nonce()
        && echoed.0.as_bytes() != nonce
    {
        return Err("the OCSP response answers another request (nonce)".into());
    }
    let single = basic
        .tbs_response_data
        .responses
        .iter()
        .find(|r| {
            r.cert_id.serial_number == id.serial_number
                && r.cert_id.issuer_key_hash == id.issuer_key_hash
        })
        .ok_or("the OCSP response is not about this certificate")?;
    let this_update = single.this_update.0.to_unix_duration().as_secs();
    if this_update > now + SKEW {
        return Err("the OCSP response is from the future".into());
    }
    match &single.next_update {
        Some(next) if next.0.to_unix_duration().as_secs() + SKEW < now => {
            return Err("the OCSP response is out of date".into());
        }
        // Without nextUpdate an answer has no end; without our nonce it could be a replay.
        None if basic.nonce().is_none() && this_update + MAX_AGE < now => {
            return Err("the OCSP response is too old (no nonce, no next update)".into());
        }
        _ => {}
    }
    Ok(match single.cert_status {
        CertStatus::Good(_) => Status::Good,
        CertStatus::Revoked(_) => Status::Revoked,
        CertStatus::Unknown(_) => Status::Unknown,
    })
}

/// The certificate that signed the response: the issuer itself, or a delegated responder
/// certificate in the response, issued (and signed) by the issuer, for OCSP signing.
fn responder_cert<'a>(
    basic: &'a BasicOcspResponse,
    issuer: &'a Certificate,
    now: u64,
) -> Result<&'a Certificate, String> {
    use x509_ocsp::ResponderId;
    let names_issuer = match &basic.tbs_response_data.responder_id {
        ResponderId::ByName(name) => *name == issuer.tbs_certificate.subject,
        ResponderId::ByKey(hash) => {
            let key = issuer
                .tbs_certificate
                .subject_public_key_info
                .subject_public_key
                .raw_bytes();
            hash.as_bytes() == digest(HashAlg::Sha1, &[key]).as_slice()
        }
    };
    if names_issuer {
        return Ok(issuer);
    }
    for cert in basic.certs.iter().flatten() {
        // Issued by the issuer, for OCSP signing, and current: an expired delegate vouches
        // for nothing.
        if cert.tbs_certificate.issuer != issuer.tbs_certificate.subject
            || !extended_key_usage(cert).iter().any(|e| e == "OCSPSigning")
            || is_expired(cert, now)
        {
            continue;
        }
        let tbs = cert.tbs_certificate.to_der().map_err(|e| e.to_string())?;
        let hash = sig_hash(&cert.signature_algorithm.oid)?;
        if pubkey::verify(
            &issuer.tbs_certificate.subject_public_key_info,
            &cert.signature_algorithm,
            hash,
            &tbs,
            cert.signature.raw_bytes(),
        )
        .is_ok()
        {
            return Ok(cert);
        }
    }
    Err("the OCSP response is signed by neither the issuer nor a responder it authorised".into())
}

/// The digest a certificate or OCSP signature algorithm uses.
fn sig_hash(oid: &ObjectIdentifier) -> Result<HashAlg, String> {
    Ok(match oid.to_string().as_str() {
        "1.2.840.113549.1.1.5" | "1.2.840.10045.4.1" => HashAlg::Sha1,
        "1.2.840.113549.1.1.11" | "1.2.840.10045.4.3.2" => HashAlg::Sha256,
        "1.2.840.113549.1.1.12" | "1.2.840.10045.4.3.3" => HashAlg::Sha384,
        "1.2.840.113549.1.1.13" | "1.2.840.10045.4.3.4" => HashAlg::Sha512,
        other => {
            return Err(format!(
                "unsupported signature algorithm {other} on the OCSP response"
            ));
        }
    })
}
