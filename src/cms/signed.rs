//! Building SignedData (RFC 5652 §5, RFC 8551 attributes) with the signature computed by a
//! [`KeyBackend`]. The structure comes from the `cms` crate's types; only the signature itself
//! crosses the seam, over the DER of the signed attributes.

use crate::cms::digest::digest;
use crate::cms::oids;
use crate::error::{Error, Result};
use crate::keyops::{HashAlg, KeyBackend, KeyError, SignAlg};
use cms::cert::{CertificateChoices, IssuerAndSerialNumber};
use cms::content_info::{CmsVersion, ContentInfo};
use cms::signed_data::{
    CertificateSet, EncapsulatedContentInfo, SignedData, SignerIdentifier, SignerInfo, SignerInfos,
};
use const_oid::ObjectIdentifier;
use der::asn1::{Any, OctetString, SetOfVec, UintRef, UtcTime};
use der::{Decode, Encode, Sequence};
use spki::AlgorithmIdentifierOwned;
use std::time::SystemTime;
use x509_cert::Certificate;
use x509_cert::attr::Attribute;

pub const ATTR_CONTENT_TYPE: ObjectIdentifier =
    ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.3");
pub const ATTR_MESSAGE_DIGEST: ObjectIdentifier =
    ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.4");
pub const ATTR_SIGNING_TIME: ObjectIdentifier =
    ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.5");
pub const ATTR_SMIME_CAPABILITIES: ObjectIdentifier =
    ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.15");
/// RFC 8551 sMIMEEncryptionKeyPreference.
pub const ATTR_ENC_KEY_PREFERENCE: ObjectIdentifier =
    ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.16.2.11");
/// Microsoft's equivalent, which Outlook reads: an IssuerAndSerialNumber.
pub const ATTR_MS_ENC_KEY_PREFERENCE: ObjectIdentifier =
    ObjectIdentifier::new_unwrap("1.3.6.1.4.1.311.16.4");

const RSASSA_PSS: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.10");
const ECDSA_SHA256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.2");
const ECDSA_SHA384: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.3");
const ECDSA_SHA512: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.4");

/// What to sign and how.
pub struct SignRequest<'a> {
    /// The bytes the signature covers: the MIME entity for a detached signature, the content
    /// for opaque signed-data.
    pub content: &'a [u8],
    /// Detached (clear-text signed) or with the content inside.
    pub detached: bool,
    pub alg: SignAlg,
    pub signer: &'a Certificate,
    /// Key id of the signer's private key in the backend.
    pub key_id: &'a [u8],
    /// The certificate replies should be encrypted to, when it is not the signer's.
    pub encryption_cert: Option<&'a Certificate>,
    /// More certificates to include (the encryption certificate, the chain).
    pub extra_certs: &'a [Certificate],
    pub signing_time: SystemTime,
}

fn any<T: der::EncodeValue + der::Tagged>(value: &T) -> Result<Any> {
    Any::encode_from(value).map_err(encode_err)
}

fn encode_err(e: der::Error) -> Error {
    Error::BadInput(format!("cannot encode the signature structure: {e}"))
}

fn attribute(oid: ObjectIdentifier, value: Any) -> Result<Attribute> {
    Ok(Attribute {
        oid,
        values: SetOfVec::try_from(vec![value]).map_err(encode_err)?,
    })
}

pub fn hash_oid(h: HashAlg) -> ObjectIdentifier {
    match h {
        HashAlg::Sha1 => oids::SHA1,
        HashAlg::Sha224 => oids::SHA224,
        HashAlg::Sha256 => oids::SHA256,
        HashAlg::Sha384 => oids::SHA384,
        HashAlg::Sha512 => oids::SHA512,
    }
}

fn alg_id(oid: ObjectIdentifier) -> AlgorithmIdentifierOwned {
    AlgorithmIdentifierOwned {
        oid,
        parameters: None,
    }
}

/// RSASSA-PSS-params with MGF1 over the same digest and salt = digest length.
#[derive(Sequence)]
struct PssParams {
    #[asn1(context_specific = "0", tag_mode = "EXPLICIT")]
    hash: AlgorithmIdentifierOwned,
    #[asn1(context_specific = "1", tag_mode = "EXPLICIT")]
    mgf: AlgorithmIdentifierOwned,
    #[asn1(context_specific = "2", tag_mode = "EXPLICIT")]
    salt: u32,
}

#[derive(Sequence)]
struct EcdsaSig<'a> {
    r: UintRef<'a>,
    s: UintRef<'a>,
}

/// The AlgorithmIdentifier a SignerInfo names for `alg`.
pub fn signature_algorithm(alg: SignAlg) -> Result<AlgorithmIdentifierOwned> {
    Ok(match alg {
        // rsaEncryption, as OpenSSL and Outlook write it: every verifier accepts it.
        SignAlg::RsaPkcs1v15(_) => AlgorithmIdentifierOwned {
            oid: oids::RSA_ENCRYPTION,
            parameters: Some(Any::null()),
        },
        SignAlg::RsaPss(h) => {
            let params = PssParams {
                hash: alg_id(hash_oid(h)),
                mgf: AlgorithmIdentifierOwned {
                    oid: oids::MGF1,
                    parameters: Some(any(&alg_id(hash_oid(h)))?),
                },
                salt: h.output_len() as u32,
            };
            AlgorithmIdentifierOwned {
                oid: RSASSA_PSS,
                parameters: Some(any(&params)?),
            }
        }
        SignAlg::Ecdsa(h) => alg_id(match h {
            HashAlg::Sha384 => ECDSA_SHA384,
            HashAlg::Sha512 => ECDSA_SHA512,
            _ => ECDSA_SHA256,
        }),
    })
}

fn issuer_serial(cert: &Certificate) -> IssuerAndSerialNumber {
    IssuerAndSerialNumber {
        issuer: cert.tbs_certificate.issuer.clone(),
        serial_number: cert.tbs_certificate.serial_number.clone(),
    }
}

/// What we can decrypt, strongest first, announced so that replies use it.
fn capabilities() -> Vec<AlgorithmIdentifierOwned> {
    [
        oids::AES256_GCM,
        oids::AES128_GCM,
        oids::AES256_CBC,
        oids::AES192_CBC,
        oids::AES128_CBC,
    ]
    .into_iter()
    .map(alg_id)
    .collect()
}

fn signed_attributes(req: &SignRequest<'_>, message_digest: &[u8]) -> Result<SetOfVec<Attribute>> {
    let time = UtcTime::from_system_time(req.signing_time).map_err(encode_err)?;
    let mut attrs = vec![
        attribute(ATTR_CONTENT_TYPE, any(&oids::DATA)?)?,
        attribute(ATTR_SIGNING_TIME, any(&time)?)?,
        attribute(
            ATTR_MESSAGE_DIGEST,
            any(&OctetString::new(message_digest).map_err(encode_err)?)?,
        )?,
        attribute(ATTR_SMIME_CAPABILITIES, any(&capabilities())?)?,
    ];
    if let Some(enc) = req.encryption_cert {
        let ias = issuer_serial(enc).to_der().map_err(encode_err)?;
        // RFC 8551: issuerAndSerialNumber [0] IMPLICIT: the SEQUENCE tag becomes [0].
        let mut tagged = ias.clone();
        tagged[0] = 0xa0;
        attrs.push(attribute(
            ATTR_ENC_KEY_PREFERENCE,
            Any::from_der(&tagged).map_err(encode_err)?,
        )?);
        attrs.push(attribute(
            ATTR_MS_ENC_KEY_PREFERENCE,
            Any::from_der(&ias).map_err(encode_err)?,
        )?);
    }
    SetOfVec::try_from(attrs).map_err(encode_err)
}

/// Signs and returns the DER of a ContentInfo holding the SignedData.
pub fn sign(backend: &mut dyn KeyBackend, req: &SignRequest<'_>) -> Result<Vec<u8>> {
    let hash = req.alg.hash();
    let message_digest = digest(hash, &[req.content]);
    let signed_attrs = signed_attributes(req, &message_digest)?;
    let tbs = signed_attrs.to_der().map_err(encode_err)?;
    let raw = backend
        .sign(req.key_id, req.alg, &tbs)
        .map_err(|e| match e {
            KeyError::Backend(e) => e,
            KeyError::Failed => Error::Token("the token could not sign".into()),
            KeyError::Unsupported(what) => {
                Error::Unsupported(format!("the token does not support {what}"))
            }
        })?;
    let signature = match req.alg {
        SignAlg::Ecdsa(_) => {
            if raw.len() % 2 != 0 || raw.is_empty() {
                return Err(Error::Token(
                    "the token returned a malformed ECDSA signature".into(),
                ));
            }
            let (r, s) = raw.split_at(raw.len() / 2);
            EcdsaSig {
                r: UintRef::new(r).map_err(encode_err)?,
                s: UintRef::new(s).map_err(encode_err)?,
            }
            .to_der()
            .map_err(encode_err)?
        }
        _ => raw,
    };

    let signer_info = SignerInfo {
        version: CmsVersion::V1,
        sid: SignerIdentifier::IssuerAndSerialNumber(issuer_serial(req.signer)),
        digest_alg: alg_id(hash_oid(hash)),
        signed_attrs: Some(signed_attrs),
        signature_algorithm: signature_algorithm(req.alg)?,
        signature: OctetString::new(signature).map_err(encode_err)?,
        unsigned_attrs: None,
    };
    let mut certs = vec![CertificateChoices::Certificate(req.signer.clone())];
    for c in req.extra_certs {
        let choice = CertificateChoices::Certificate(c.clone());
        if !certs.contains(&choice) {
            certs.push(choice);
        }
    }
    let econtent = if req.detached {
        None
    } else {
        Some(any(&OctetString::new(req.content).map_err(encode_err)?)?)
    };
    let signed = SignedData {
        version: CmsVersion::V1,
        digest_algorithms: SetOfVec::try_from(vec![alg_id(hash_oid(hash))]).map_err(encode_err)?,
        encap_content_info: EncapsulatedContentInfo {
            econtent_type: oids::DATA,
            econtent,
        },
        certificates: Some(CertificateSet(
            SetOfVec::try_from(certs).map_err(encode_err)?,
        )),
        crls: None,
        signer_infos: SignerInfos(SetOfVec::try_from(vec![signer_info]).map_err(encode_err)?),
    };
    ContentInfo {
        content_type: oids::SIGNED_DATA,
        content: any(&signed)?,
    }
    .to_der()
    .map_err(encode_err)
}
