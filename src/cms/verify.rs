//! Reading SignedData (DER or BER) and checking each signature mathematically: the message
//! digest against the content, the signed attributes against the signer's public key.
//! Whether the signer is trusted is `trust`'s business, not this module's.
//!
//! The signed attributes are verified over their bytes as received (re-tagged as a SET): the
//! `der` decoder re-sorts SET OF, and a re-encoding could differ from what was signed.

use crate::cms::ber::{Element, Reader, Tag};
use crate::cms::content::read_oid;
use crate::cms::digest::Digests;
use crate::cms::envelope::content_info;
use crate::cms::oids;
use crate::cms::recipient::subject_key_id;
use crate::cms::signed::{ATTR_CONTENT_TYPE, ATTR_MESSAGE_DIGEST, ATTR_SIGNING_TIME};
use crate::error::{Error, Result};
use crate::keyops::HashAlg;
use cms::signed_data::{SignerIdentifier, SignerInfo};
use const_oid::ObjectIdentifier;
use der::{Decode, Encode};
use x509_cert::Certificate;

/// A SignedData as read from a message.
#[derive(Debug)]
pub struct SignedMessage {
    pub content_type: ObjectIdentifier,
    /// The encapsulated content (opaque signed-data); `None` for a detached signature.
    pub content: Option<Vec<u8>>,
    pub certificates: Vec<Certificate>,
    pub signers: Vec<Signer>,
}

/// One SignerInfo with the exact bytes its signature covers.
#[derive(Debug)]
pub struct Signer {
    pub info: SignerInfo,
    /// The signed attributes as received, with the SET tag (what the signature covers).
    signed_attrs: Option<Vec<u8>>,
}

/// The outcome of checking one signature, before any trust decision.
#[derive(Debug, Clone)]
pub struct SignatureCheck {
    /// The signer's certificate, when the message (or the caller) supplied it.
    pub certificate: Option<Certificate>,
    pub signing_time: Option<String>,
    /// `Ok` when the digest and the signature are right; else why not.
    pub result: std::result::Result<(), String>,
}

fn bad(what: &str) -> Error {
    Error::BadInput(format!("malformed signed data: {what}"))
}

/// More signers than any real message has. Each signer is checked against every certificate the
/// message carries (lookup, path building), so without a bound a message of N signers and N
/// certificates costs N² (found by a large-input run of the signed fuzz target; see
/// tests/fuzz_regressions.rs).
const MAX_SIGNERS: usize = 16;

/// Refuses a ContentInfo content type other than SignedData, saying what it is instead.
pub(crate) fn expect_signed_data(oid: &ObjectIdentifier) -> Result<()> {
    if *oid == oids::ENVELOPED_DATA || *oid == oids::AUTH_ENVELOPED_DATA {
        return Err(Error::BadInput(
            "this message is encrypted, not signed: decrypt it first (p11smime decrypt)".into(),
        ));
    }
    if *oid != oids::SIGNED_DATA {
        return Err(Error::Unsupported(format!(
            "CMS content type {} is not signed data",
            oids::name(oid)
        )));
    }
    Ok(())
}

/// Reads a ContentInfo holding SignedData.
pub fn parse(data: &[u8]) -> Result<SignedMessage> {
    let (oid, body) = content_info(data)?;
    expect_signed_data(&oid)?;
    let mut fields = body
        .expect_universal(Tag::SEQUENCE, "a SignedData SEQUENCE")?
        .children()?;
    fields
        .read("a version")?
        .expect_universal(Tag::INTEGER, "a version")?;
    fields
        .read("the digest algorithms")?
        .expect_universal(Tag::SET, "the digest algorithms")?;
    let encap = fields
        .read("the encapsulated content")?
        .expect_universal(Tag::SEQUENCE, "EncapsulatedContentInfo")?;
    let mut encap_fields = encap.children()?;
    let content_type = read_oid(&mut encap_fields)?;
    let content = match encap_fields.next().transpose()? {
        Some(explicit) if explicit.tag.is_context(0) => {
            Some(explicit.children()?.read("the content")?.octets()?)
        }
        Some(_) => return Err(bad("eContent is not [0]")),
        None => None,
    };
    let (certificates, signers) = read_after_content(&mut fields)?;
    Ok(SignedMessage {
        content_type,
        content,
        certificates,
        signers,
    })
}

/// The digest algorithms a SignedData lists before its content (`digestAlgorithms`), those
/// this crate implements: what a streamed content is hashed with.
pub(crate) fn digest_algorithms(set: &Element<'_>) -> Result<Vec<HashAlg>> {
    let mut algs = Vec::new();
    for alg in set.children()? {
        let oid = read_oid(&mut alg?.children()?)?;
        if let Some(hash) = hash_of(&oid) {
            algs.push(hash);
        }
    }
    Ok(algs)
}

/// The fields after the encapsulated content: certificates, CRLs (skipped) and signer infos.
pub(crate) fn read_after_content(
    fields: &mut Reader<'_>,
) -> Result<(Vec<Certificate>, Vec<Signer>)> {
    let mut certificates = Vec::new();
    let mut next = fields.read("the signer infos")?;
    if next.tag.is_context(0) {
        for cert in next.children()? {
            let cert = cert?;
            // Other certificate formats (attribute certificates) are skipped.
            if cert.tag.is_universal(Tag::SEQUENCE)
                && let Ok(c) = Certificate::from_der(&cert.to_der()?)
            {
                certificates.push(c);
            }
        }
        next = fields.read("the signer infos")?;
    }
    if next.tag.is_context(1) {
        next = fields.read("the signer infos")?;
    }
    if !next.tag.is_universal(Tag::SET) {
        return Err(bad("signerInfos is not a SET"));
    }
    let mut signers = Vec::new();
    for si in next.children()? {
        if signers.len() == MAX_SIGNERS {
            return Err(Error::Unsupported(format!(
                "signed data with more than {MAX_SIGNERS} signers"
            )));
        }
        signers.push(parse_signer(&si?)?);
    }
    Ok((certificates, signers))
}

fn parse_signer(element: &Element<'_>) -> Result<Signer> {
    let der = element.to_der()?;
    let info = SignerInfo::from_der(&der)
        .map_err(|e| bad(&format!("a signer info cannot be read: {e}")))?;
    let mut signed_attrs = None;
    for field in element.children()? {
        let field = field?;
        if field.tag.is_context(0) && field.tag.constructed {
            let mut set = field.to_der()?;
            set[0] = 0x31;
            signed_attrs = Some(set);
            break;
        }
    }
    Ok(Signer { info, signed_attrs })
}

fn hash_of(oid: &ObjectIdentifier) -> Option<HashAlg> {
    Some(match *oid {
        o if o == oids::SHA1 => HashAlg::Sha1,
        o if o == oids::SHA224 => HashAlg::Sha224,
        o if o == oids::SHA256 => HashAlg::Sha256,
        o if o == oids::SHA384 => HashAlg::Sha384,
        o if o == oids::SHA512 => HashAlg::Sha512,
        _ => return None,
    })
}

impl SignedMessage {
    /// The digest algorithms the signers use (those this crate implements).
    pub fn digest_algorithms(&self) -> Vec<HashAlg> {
        self.signers
            .iter()
            .filter_map(|s| hash_of(&s.info.digest_alg.oid))
            .collect()
    }
}

impl Signer {
    /// The certificate this signer names, among `certs`.
    pub fn find_certificate<'c>(&self, certs: &'c [Certificate]) -> Option<&'c Certificate> {
        certs.iter().find(|c| match &self.info.sid {
            SignerIdentifier::IssuerAndSerialNumber(ias) => {
                c.tbs_certificate.issuer == ias.issuer
                    && c.tbs_certificate.serial_number == ias.serial_number
            }
            SignerIdentifier::SubjectKeyIdentifier(ski) => {
                subject_key_id(c).as_deref() == Some(ski.0.as_bytes())
            }
        })
    }

    fn attribute(&self, oid: ObjectIdentifier) -> Option<&der::Any> {
        self.info
            .signed_attrs
            .as_ref()?
            .iter()
            .find(|a| a.oid == oid)
            .and_then(|a| a.values.iter().next())
    }

    /// The certificate the signer asks replies to be encrypted to (RFC 8551
    /// sMIMEEncryptionKeyPreference, or Microsoft's equivalent), among `certs`.
    pub fn preferred_encryption_cert<'c>(
        &self,
        certs: &'c [Certificate],
    ) -> Option<&'c Certificate> {
        use cms::cert::IssuerAndSerialNumber;
        let from_attr = |oid, implicit: bool| -> Option<IssuerAndSerialNumber> {
            let mut der = self.attribute(oid)?.to_der().ok()?;
            if implicit {
                // [0] IMPLICIT IssuerAndSerialNumber: read it back as the SEQUENCE it is.
                if der.first() != Some(&0xa0) {
                    return None;
                }
                der[0] = 0x30;
            }
            IssuerAndSerialNumber::from_der(&der).ok()
        };
        let ias = from_attr(crate::cms::signed::ATTR_ENC_KEY_PREFERENCE, true)
            .or_else(|| from_attr(crate::cms::signed::ATTR_MS_ENC_KEY_PREFERENCE, false))?;
        certs.iter().find(|c| {
            c.tbs_certificate.issuer == ias.issuer
                && c.tbs_certificate.serial_number == ias.serial_number
        })
    }

    /// The signingTime attribute, RFC 3339.
    pub fn signing_time(&self) -> Option<x509_cert::time::Time> {
        let any = self.attribute(ATTR_SIGNING_TIME)?;
        x509_cert::time::Time::from_der(&any.to_der().ok()?).ok()
    }

    /// Checks the content's digest (among `digests`, computed as the content was read) and the
    /// signature with `cert`'s public key.
    pub fn check(
        &self,
        digests: &Digests,
        econtent_type: &ObjectIdentifier,
        cert: &Certificate,
    ) -> std::result::Result<(), String> {
        let hash = hash_of(&self.info.digest_alg.oid)
            .ok_or_else(|| format!("unsupported digest algorithm {}", self.info.digest_alg.oid))?;
        // Only when a streamed message's digestAlgorithms leave out the signer's digest.
        let content_digest = digests.get(hash).ok_or_else(|| {
            format!(
                "the signer's digest algorithm {} is not among those the message lists first \
                 (digestAlgorithms), so the content was not hashed with it",
                hash.name()
            )
        })?;
        match &self.signed_attrs {
            Some(attrs) => {
                let md = self
                    .attribute(ATTR_MESSAGE_DIGEST)
                    .ok_or("the signed attributes have no message digest")?;
                let md = der::asn1::OctetString::from_der(&md.to_der().map_err(|e| e.to_string())?)
                    .map_err(|e| e.to_string())?;
                if md.as_bytes() != content_digest {
                    return Err(
                        "the content does not match the signed digest (the message was changed)"
                            .into(),
                    );
                }
                let ct = self
                    .attribute(ATTR_CONTENT_TYPE)
                    .ok_or("the signed attributes have no content type")?;
                if ct.decode_as::<ObjectIdentifier>().ok().as_ref() != Some(econtent_type) {
                    return Err("the signed content type does not match the content".into());
                }
                crate::cms::pubkey::verify(
                    &cert.tbs_certificate.subject_public_key_info,
                    &self.info.signature_algorithm,
                    hash,
                    attrs,
                    self.info.signature.as_bytes(),
                )
            }
            // No signed attributes: the signature is over the content itself.
            None => crate::cms::pubkey::verify_digest(
                &cert.tbs_certificate.subject_public_key_info,
                &self.info.signature_algorithm,
                hash,
                content_digest,
                self.info.signature.as_bytes(),
            ),
        }
    }
}
