//! Certificates described for people and scripts: subject, issuer, serial, e-mail addresses, key
//! usage, validity and where the key is (for `certs`, `--json` and error messages).

use crate::cms::oids;
use crate::keyops::KeyCertificate;
use der::Decode;
use der::asn1::Ia5String;
use x509_cert::Certificate;
use x509_cert::ext::pkix::name::GeneralName;
use x509_cert::ext::pkix::{ExtendedKeyUsage, KeyUsage, SubjectAltName};

/// One certificate, described.
#[derive(Debug, Clone, serde::Serialize)]
pub struct CertSummary {
    pub subject: String,
    pub issuer: String,
    /// Serial number in upper-case hex.
    pub serial: String,
    pub emails: Vec<String>,
    pub key_usage: Vec<String>,
    pub extended_key_usage: Vec<String>,
    pub not_before: String,
    pub not_after: String,
    pub expired: bool,
    /// CKA_ID in lower-case hex.
    pub id: String,
    pub label: String,
    pub key_label: Option<String>,
    /// `true`/`false`, or `null` when the token hides private keys until login.
    pub has_private_key: Option<bool>,
}

/// Describes a token certificate; `now` is seconds since the Unix epoch.
pub fn summarize(kc: &KeyCertificate, now: u64) -> CertSummary {
    let cert = &kc.certificate;
    let tbs = &cert.tbs_certificate;
    let not_after = tbs.validity.not_after.to_unix_duration().as_secs();
    CertSummary {
        subject: tbs.subject.to_string(),
        issuer: tbs.issuer.to_string(),
        serial: hex::encode_upper(tbs.serial_number.as_bytes()),
        emails: emails(cert),
        key_usage: key_usage(cert),
        extended_key_usage: extended_key_usage(cert),
        not_before: tbs.validity.not_before.to_date_time().to_string(),
        not_after: tbs.validity.not_after.to_date_time().to_string(),
        expired: not_after < now,
        id: hex::encode(&kc.id),
        label: kc.label.clone(),
        key_label: kc.key_label.clone(),
        has_private_key: kc.has_private_key,
    }
}

/// The extension `oid` of `cert`, decoded as `T`; `None` when it is absent or malformed (a
/// malformed extension is treated as missing, never as a reason to fail).
pub fn decode_extension<'c, T: Decode<'c>>(
    cert: &'c Certificate,
    oid: &const_oid::ObjectIdentifier,
) -> Option<T> {
    let ext = cert
        .tbs_certificate
        .extensions
        .as_ref()?
        .iter()
        .find(|e| e.extn_id == *oid)?;
    T::from_der(ext.extn_value.as_bytes()).ok()
}

/// E-mail addresses from the subjectAltName and the subject's emailAddress attribute.
pub fn emails(cert: &Certificate) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(san) = decode_extension::<SubjectAltName>(cert, &oids::EXT_SUBJECT_ALT_NAME) {
        for name in san.0 {
            if let GeneralName::Rfc822Name(mail) = name {
                out.push(mail.to_string());
            }
        }
    }
    for rdn in cert.tbs_certificate.subject.0.iter() {
        for atv in rdn.0.iter() {
            if atv.oid != oids::EMAIL_ADDRESS {
                continue;
            }
            if let Ok(mail) = atv.value.decode_as::<Ia5String>() {
                let mail = mail.to_string();
                if !out.contains(&mail) {
                    out.push(mail);
                }
            }
        }
    }
    out
}

/// keyUsage bits by their RFC 5280 names.
pub fn key_usage(cert: &Certificate) -> Vec<String> {
    let Some(ku) = decode_extension::<KeyUsage>(cert, &oids::EXT_KEY_USAGE) else {
        return Vec::new();
    };
    let names = [
        (ku.digital_signature(), "digitalSignature"),
        (ku.non_repudiation(), "nonRepudiation"),
        (ku.key_encipherment(), "keyEncipherment"),
        (ku.data_encipherment(), "dataEncipherment"),
        (ku.key_agreement(), "keyAgreement"),
        (ku.key_cert_sign(), "keyCertSign"),
        (ku.crl_sign(), "cRLSign"),
        (ku.encipher_only(), "encipherOnly"),
        (ku.decipher_only(), "decipherOnly"),
    ];
    names
        .iter()
        .filter(|(set, _)| *set)
        .map(|(_, n)| (*n).to_string())
        .collect()
}

/// extendedKeyUsage purposes, by name where well known.
pub fn extended_key_usage(cert: &Certificate) -> Vec<String> {
    let Some(eku) = decode_extension::<ExtendedKeyUsage>(cert, &oids::EXT_EXTENDED_KEY_USAGE)
    else {
        return Vec::new();
    };
    eku.0
        .iter()
        .map(|oid| match oid.to_string().as_str() {
            "1.3.6.1.5.5.7.3.4" => "emailProtection".to_string(),
            "1.3.6.1.5.5.7.3.2" => "clientAuth".to_string(),
            "1.3.6.1.5.5.7.3.1" => "serverAuth".to_string(),
            "1.3.6.1.5.5.7.3.3" => "codeSigning".to_string(),
            "1.3.6.1.5.5.7.3.9" => "OCSPSigning".to_string(),
            "1.3.6.1.4.1.311.20.2.2" => "smartcardLogon".to_string(),
            "2.5.29.37.0" => "anyExtendedKeyUsage".to_string(),
            other => other.to_string(),
        })
        .collect()
}

/// Seconds since the Unix epoch, for expiry checks.
pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

/// Whether `cert` is outside its validity period at `now`.
pub fn is_expired(cert: &Certificate, now: u64) -> bool {
    let v = &cert.tbs_certificate.validity;
    v.not_after.to_unix_duration().as_secs() < now
        || v.not_before.to_unix_duration().as_secs() > now
}

fn eku_allows_email(cert: &Certificate) -> bool {
    let eku = extended_key_usage(cert);
    eku.is_empty()
        || eku
            .iter()
            .any(|e| e == "emailProtection" || e == "anyExtendedKeyUsage")
}

/// A certificate for signing mail: digitalSignature or nonRepudiation (or no key usage at all),
/// and emailProtection (or no extended key usage). Key-management-only certificates are not.
pub fn is_signing_cert(cert: &Certificate) -> bool {
    let ku = key_usage(cert);
    let signs = ku.is_empty()
        || ku
            .iter()
            .any(|u| u == "digitalSignature" || u == "nonRepudiation");
    signs && eku_allows_email(cert) && !is_ca(cert)
}

/// A certificate mail can be encrypted to: keyEncipherment or keyAgreement (or no key usage).
pub fn is_encryption_cert(cert: &Certificate) -> bool {
    let ku = key_usage(cert);
    let encrypts = ku.is_empty()
        || ku
            .iter()
            .any(|u| u == "keyEncipherment" || u == "keyAgreement");
    encrypts && eku_allows_email(cert) && !is_ca(cert)
}

/// A CA certificate (keyCertSign), e.g. an intermediate stored on the card.
pub fn is_ca(cert: &Certificate) -> bool {
    key_usage(cert).iter().any(|u| u == "keyCertSign")
}

/// Certificates from a file's bytes: a PEM bundle (CERTIFICATE blocks), one DER certificate,
/// or a certs-only PKCS#7 bundle (`.p7b`, DER or PEM), the form the DoD publishes its CAs in.
pub fn load_certificates(bytes: &[u8]) -> crate::Result<Vec<Certificate>> {
    let bad =
        |what: String| crate::Error::BadInput(format!("cannot read the certificates: {what}"));
    let text = String::from_utf8_lossy(bytes);
    let der = if text.contains("-----BEGIN CERTIFICATE-----") {
        let certs = Certificate::load_pem_chain(bytes).map_err(|e| bad(e.to_string()))?;
        return Ok(certs);
    } else if text.contains("-----BEGIN ") {
        crate::mime::detect::find_cms(bytes)?.cms.into_owned()
    } else {
        bytes.to_vec()
    };
    if let Ok(cert) = Certificate::from_der(&der) {
        return Ok(vec![cert]);
    }
    let bundle = crate::cms::verify::parse(&der)
        .map_err(|_| bad("neither a certificate nor a PKCS#7 certificate bundle".into()))?;
    if bundle.certificates.is_empty() {
        return Err(bad("the bundle holds no certificates".into()));
    }
    Ok(bundle.certificates)
}

/// The size of the certificate's RSA key in bits; `None` for other keys.
pub fn rsa_bits(cert: &Certificate) -> Option<usize> {
    use der::Encode;
    use rsa::pkcs8::DecodePublicKey;
    use rsa::traits::PublicKeyParts;
    let spki = &cert.tbs_certificate.subject_public_key_info;
    if spki.algorithm.oid != crate::cms::oids::RSA_ENCRYPTION {
        return None;
    }
    let der = spki.to_der().ok()?;
    rsa::RsaPublicKey::from_public_key_der(&der)
        .ok()
        .map(|k| k.size() * 8)
}
