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
    let message_digest = digest(req.alg.hash(), &[req.content]);
    let econtent = if req.detached {
        None
    } else {
        Some(any(&OctetString::new(req.content).map_err(encode_err)?)?)
    };
    let signed = signed_data(backend, req, &message_digest, econtent)?;
    ContentInfo {
        content_type: oids::SIGNED_DATA,
        content: any(&signed)?,
    }
    .to_der()
    .map_err(encode_err)
}

/// A SignedData whose content is written apart, between `head` and `tail`.
#[derive(Debug)]
pub struct Framed {
    pub head: Vec<u8>,
    pub tail: Vec<u8>,
}

/// Signs a content the caller hashed (`message_digest`, with `req.alg`'s digest; `req.content`
/// is not read), so that a content too large to hold is read only to hash and to write.
/// Detached, `head` is the whole ContentInfo; else the `content_len` bytes of content go
/// between `head` and `tail`: DER with definite lengths, the bytes [`sign`] gives.
pub fn sign_hashed(
    backend: &mut dyn KeyBackend,
    req: &SignRequest<'_>,
    message_digest: &[u8],
    content_len: u64,
) -> Result<Framed> {
    let signed = signed_data(backend, req, message_digest, None)?;
    if req.detached {
        let head = ContentInfo {
            content_type: oids::SIGNED_DATA,
            content: any(&signed)?,
        }
        .to_der()
        .map_err(encode_err)?;
        return Ok(Framed {
            head,
            tail: Vec::new(),
        });
    }
    // SignedData { version, digestAlgorithms, encapContentInfo, [0] IMPLICIT certificates,
    //              signerInfos }, each field encoded by the `cms` types but the content's.
    let version = signed.version.to_der().map_err(encode_err)?;
    let digest_algs = signed.digest_algorithms.to_der().map_err(encode_err)?;
    let mut tail = Vec::new();
    if let Some(certs) = &signed.certificates {
        let mut set = certs.to_der().map_err(encode_err)?;
        // IMPLICIT [0] of a SET OF: the tag becomes constructed context 0.
        set[0] = 0xa0;
        tail.extend(set);
    }
    tail.extend(signed.signer_infos.to_der().map_err(encode_err)?);
    // EncapsulatedContentInfo { eContentType, [0] EXPLICIT OCTET STRING }
    let mut eci = oids::DATA.to_der().map_err(encode_err)?;
    let octets = header(0x04, content_len)?;
    eci.extend(header(0xa0, octets.len() as u64 + content_len)?);
    eci.extend(octets);
    let eci_len = eci.len() as u64 + content_len;
    let mut body = version;
    body.extend(digest_algs);
    body.extend(header(0x30, eci_len)?);
    let body_len = body.len() as u64 + eci_len + tail.len() as u64;
    // ContentInfo { contentType, [0] EXPLICIT SignedData }
    let sd_head = header(0x30, body_len)?;
    let explicit = header(0xa0, sd_head.len() as u64 + body_len)?;
    let oid = oids::SIGNED_DATA.to_der().map_err(encode_err)?;
    let total = (oid.len() + explicit.len() + sd_head.len()) as u64 + body_len;
    let mut head = header(0x30, total)?;
    head.extend(oid);
    head.extend(explicit);
    head.extend(sd_head);
    head.extend(body);
    head.extend(eci);
    Ok(Framed { head, tail })
}

/// A DER tag and definite length.
fn header(tag: u8, len: u64) -> Result<Vec<u8>> {
    let len = usize::try_from(len)
        .map_err(|_| Error::Unsupported("content too large for this platform".into()))?;
    let mut out = vec![tag];
    super::ber::push_length(len, &mut out);
    Ok(out)
}

/// The SignedData with its signature over the signed attributes (`message_digest` among them);
/// the content inside when `econtent` is given.
fn signed_data(
    backend: &mut dyn KeyBackend,
    req: &SignRequest<'_>,
    message_digest: &[u8],
    econtent: Option<Any>,
) -> Result<SignedData> {
    let hash = req.alg.hash();
    let signed_attrs = signed_attributes(req, message_digest)?;
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
    Ok(SignedData {
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
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::test_support::Alice;

    /// The framed SignedData, content put between head and tail, is byte for byte what the
    /// `cms` types encode in one piece, for lengths around the DER length-of-length steps.
    #[test]
    fn framed_content_gives_the_bytes_of_the_one_piece_encoding() {
        let pem = std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/softhsm-fixtures/alice-sign.pem"
        ))
        .unwrap();
        let cert = crate::certinfo::load_certificates(&pem).unwrap().remove(0);
        let at = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_800_000_000);
        for len in [0usize, 1, 127, 128, 255, 256, 65_535, 65_536, 70_000] {
            for detached in [false, true] {
                let content: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
                let req = SignRequest {
                    content: &content,
                    detached,
                    alg: SignAlg::RsaPkcs1v15(HashAlg::Sha256),
                    signer: &cert,
                    key_id: &[1],
                    encryption_cert: Some(&cert),
                    extra_certs: std::slice::from_ref(&cert),
                    signing_time: at,
                };
                let whole = sign(&mut Alice::new(), &req).unwrap();
                let md = digest(HashAlg::Sha256, &[&content]);
                let framed = sign_hashed(&mut Alice::new(), &req, &md, len as u64).unwrap();
                let mut got = framed.head;
                if !detached {
                    got.extend_from_slice(&content);
                }
                got.extend(framed.tail);
                assert!(got == whole, "{len} detached={detached}");
            }
        }
    }
}
