//! Recipient infos: who a message is encrypted to, whether a certificate is one of them, and
//! unwrapping the content-encryption key through [`KeyBackend`].
//!
//! Recipient infos are small, so each is normalised to DER and decoded with the `cms` types.
//! Key transport (RSA) is handled here; key agreement (ECDH) in [`crate::cms::kari`]. A key
//! agreement info with several recipient encrypted keys becomes one [`Recipient`] per key, so
//! matching is the same for both kinds.

use crate::cms::ber::{Class, Element, Reader, Tag};
use crate::cms::kari::{self, KeyAgreement};
use crate::cms::oaep;
use crate::cms::oids;
use crate::error::{Error, Result};
use crate::keyops::{HashAlg, KeyBackend, KeyCertificate, KeyError, RsaPadding};
use cms::enveloped_data::{RecipientIdentifier, RecipientInfo};
use const_oid::ObjectIdentifier;
use der::{Decode, Encode};
use spki::AlgorithmIdentifierOwned;
use x509_cert::Certificate;
use x509_cert::ext::pkix::SubjectKeyIdentifier;
use x509_cert::name::Name;
use zeroize::Zeroizing;

/// How a recipient is named.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecipientId {
    IssuerSerial { issuer: Name, serial: Vec<u8> },
    KeyId(Vec<u8>),
}

impl std::fmt::Display for RecipientId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RecipientId::IssuerSerial { issuer, serial } => {
                write!(f, "issuer {issuer}, serial {}", hex::encode_upper(serial))
            }
            RecipientId::KeyId(id) => write!(f, "subject key id {}", hex::encode_upper(id)),
        }
    }
}

/// How the content-encryption key was wrapped for this recipient.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyWrap {
    Rsa(RsaPadding),
    /// Ephemeral-static ECDH (RFC 5753), the parameters shared by a KeyAgreeRecipientInfo.
    Ecdh(Box<KeyAgreement>),
    /// A recipient kind we list but cannot open (KEK, password, other, unsupported agreements).
    Unsupported(String),
}

/// One recipient of an enveloped message.
#[derive(Debug, Clone)]
pub struct Recipient {
    pub id: Option<RecipientId>,
    pub wrap: KeyWrap,
    pub encrypted_key: Vec<u8>,
}

impl Recipient {
    /// A one-line description for messages and `--verbose`.
    pub fn describe(&self) -> String {
        let alg = match &self.wrap {
            KeyWrap::Rsa(RsaPadding::Pkcs1v15) => "RSA PKCS#1 v1.5".to_string(),
            KeyWrap::Rsa(RsaPadding::Oaep { hash, label, .. }) => format!(
                "RSA-OAEP {}{}",
                hash.name(),
                if label.is_empty() { "" } else { " with label" }
            ),
            KeyWrap::Ecdh(agreement) => agreement.describe(),
            KeyWrap::Unsupported(what) => what.clone(),
        };
        match &self.id {
            Some(id) => format!("{id} ({alg})"),
            None => alg,
        }
    }

    /// True when `cert` is the certificate this recipient names.
    pub fn matches(&self, cert: &Certificate) -> bool {
        match &self.id {
            Some(RecipientId::IssuerSerial { issuer, serial }) => {
                let tbs = &cert.tbs_certificate;
                tbs.issuer == *issuer
                    && strip_zeros(tbs.serial_number.as_bytes()) == strip_zeros(serial)
            }
            Some(RecipientId::KeyId(id)) => subject_key_id(cert).as_deref() == Some(id.as_slice()),
            None => false,
        }
    }
}

fn strip_zeros(b: &[u8]) -> &[u8] {
    let n = b.iter().take_while(|x| **x == 0).count();
    &b[n..]
}

/// The subjectKeyIdentifier extension of a certificate, if it has one.
pub fn subject_key_id(cert: &Certificate) -> Option<Vec<u8>> {
    crate::certinfo::decode_extension::<SubjectKeyIdentifier>(cert, &oids::EXT_SUBJECT_KEY_ID)
        .map(|ski| ski.0.as_bytes().to_vec())
}

/// Reads the RecipientInfos SET.
pub fn parse_recipients(set: &Element<'_>) -> Result<Vec<Recipient>> {
    if !set.tag.is_universal(Tag::SET) {
        return Err(Error::BadInput(
            "malformed CMS data: the recipient list is missing".into(),
        ));
    }
    let mut out = Vec::new();
    for ri in set.children()? {
        let ri = ri?;
        if ri.tag.is_context(1) && ri.tag.constructed {
            // kari [1] IMPLICIT KeyAgreeRecipientInfo: decoded by `kari`, not by `cms` 0.2.3.
            let der = ri.to_der_with_tag(Tag {
                class: Class::Universal,
                constructed: true,
                number: Tag::SEQUENCE,
            })?;
            out.extend(kari::recipients(&der)?);
            continue;
        }
        let der = ri.to_der()?;
        let info = RecipientInfo::from_der(&der)
            .map_err(|e| Error::BadInput(format!("malformed recipient info: {e}")))?;
        out.extend(from_info(info)?);
    }
    if out.is_empty() {
        return Err(Error::BadInput("the message names no recipients".into()));
    }
    Ok(out)
}

/// The recipients one RecipientInfo names: one, or for key agreement one per encrypted key.
fn from_info(info: RecipientInfo) -> Result<Vec<Recipient>> {
    let unsupported = |what: &str| Recipient {
        id: None,
        wrap: KeyWrap::Unsupported(what.into()),
        encrypted_key: Vec::new(),
    };
    Ok(vec![match info {
        RecipientInfo::Ktri(ktri) => {
            let id = match ktri.rid {
                RecipientIdentifier::IssuerAndSerialNumber(ias) => RecipientId::IssuerSerial {
                    issuer: ias.issuer,
                    serial: ias.serial_number.as_bytes().to_vec(),
                },
                RecipientIdentifier::SubjectKeyIdentifier(ski) => {
                    RecipientId::KeyId(ski.0.as_bytes().to_vec())
                }
            };
            let wrap = match rsa_padding(&ktri.key_enc_alg) {
                Ok(p) => KeyWrap::Rsa(p),
                Err(Error::Unsupported(what)) => KeyWrap::Unsupported(what),
                Err(e) => return Err(e),
            };
            Recipient {
                id: Some(id),
                wrap,
                encrypted_key: ktri.enc_key.as_bytes().to_vec(),
            }
        }
        RecipientInfo::Kari(kari) => {
            // Not reached from `parse_recipients`, which hands `[1]` to `kari` itself.
            let der = kari
                .to_der()
                .map_err(|e| Error::BadInput(format!("malformed recipient info: {e}")))?;
            return kari::recipients(&der);
        }
        RecipientInfo::Kekri(_) => unsupported("a pre-shared key (KEK)"),
        RecipientInfo::Pwri(_) => unsupported("a password"),
        RecipientInfo::Ori(_) => unsupported("another recipient type"),
    }])
}

pub fn hash_from_oid(oid: &ObjectIdentifier) -> Result<HashAlg> {
    Ok(match *oid {
        o if o == oids::SHA1 => HashAlg::Sha1,
        o if o == oids::SHA224 => HashAlg::Sha224,
        o if o == oids::SHA256 => HashAlg::Sha256,
        o if o == oids::SHA384 => HashAlg::Sha384,
        o if o == oids::SHA512 => HashAlg::Sha512,
        o => return Err(Error::Unsupported(format!("digest {o} in RSA-OAEP"))),
    })
}

/// The RSA padding a key-transport AlgorithmIdentifier names.
fn rsa_padding(alg: &AlgorithmIdentifierOwned) -> Result<RsaPadding> {
    if alg.oid == oids::RSA_ENCRYPTION {
        return Ok(RsaPadding::Pkcs1v15);
    }
    if alg.oid != oids::RSAES_OAEP {
        return Err(Error::Unsupported(format!(
            "key transport {}",
            oids::name(&alg.oid)
        )));
    }
    let mut hash = HashAlg::Sha1;
    let mut mgf_hash = HashAlg::Sha1;
    let mut label = Vec::new();
    let params = match &alg.parameters {
        Some(p) if der::Tagged::tag(p) != der::Tag::Null => p.to_der().map_err(|_| bad_oaep())?,
        _ => Vec::new(),
    };
    if !params.is_empty() {
        let seq = Reader::new(&params).read("OAEP parameters")?;
        for field in seq.children()? {
            let field = field?;
            // Each field is [n] EXPLICIT; its single child is the value.
            let inner = field.children()?.read("an OAEP parameter")?;
            match field.tag.number {
                0 => hash = hash_from_oid(&alg_oid(&inner)?)?,
                1 => {
                    let mut mgf = inner.children()?;
                    if crate::cms::content::read_oid(&mut mgf)? != oids::MGF1 {
                        return Err(Error::Unsupported(
                            "an OAEP mask function other than MGF1".into(),
                        ));
                    }
                    mgf_hash = hash_from_oid(&alg_oid(&mgf.read("MGF1 digest")?)?)?;
                }
                2 => {
                    let mut src = inner.children()?;
                    if crate::cms::content::read_oid(&mut src)? != oids::P_SPECIFIED {
                        return Err(bad_oaep());
                    }
                    label = src.read("OAEP label")?.octets()?;
                }
                _ => return Err(bad_oaep()),
            }
        }
    }
    Ok(RsaPadding::Oaep {
        hash,
        mgf_hash,
        label,
    })
}

fn alg_oid(alg: &Element<'_>) -> Result<ObjectIdentifier> {
    crate::cms::content::read_oid(&mut alg.children()?)
}

fn bad_oaep() -> Error {
    Error::BadInput("malformed RSA-OAEP parameters".into())
}

/// Unwraps the content-encryption key of `recipient` with the private key of `key`.
///
/// RSA: where the backend refuses the OAEP parameters, the raw RSA operation runs on the key and
/// the padding is removed in software. ECDH: the backend gives the shared secret, the rest is
/// [`kari::unwrap_key`]. Every failure of the key itself is the same [`Error::DecryptFailed`].
pub fn unwrap_key(
    backend: &mut dyn KeyBackend,
    key: &KeyCertificate,
    recipient: &Recipient,
) -> Result<Zeroizing<Vec<u8>>> {
    if let Some(done) = backend.unwrap_recipient(key, recipient) {
        return done;
    }
    match &recipient.wrap {
        KeyWrap::Rsa(padding) => unwrap_rsa(backend, &key.id, padding, &recipient.encrypted_key),
        KeyWrap::Ecdh(agreement) => {
            kari::unwrap_key(backend, key, agreement, &recipient.encrypted_key)
        }
        KeyWrap::Unsupported(_) => Err(Error::Unsupported(format!(
            "this message is encrypted with {}, which is not supported yet",
            recipient.describe()
        ))),
    }
}

fn unwrap_rsa(
    backend: &mut dyn KeyBackend,
    key_id: &[u8],
    padding: &RsaPadding,
    encrypted_key: &[u8],
) -> Result<Zeroizing<Vec<u8>>> {
    match backend.rsa_decrypt(key_id, padding, encrypted_key) {
        Ok(cek) => Ok(cek),
        Err(KeyError::Unsupported(_)) => {
            let RsaPadding::Oaep {
                hash,
                mgf_hash,
                label,
            } = padding
            else {
                return Err(Error::Unsupported(
                    "the token cannot do RSA PKCS#1 v1.5 decryption".into(),
                ));
            };
            let em = backend.rsa_raw(key_id, encrypted_key).map_err(key_error)?;
            oaep::decode(&em, *hash, *mgf_hash, label).ok_or(Error::DecryptFailed)
        }
        Err(e) => Err(key_error(e)),
    }
}

/// A backend's failure as the error the CMS layer reports.
pub(crate) fn key_error(e: KeyError) -> Error {
    match e {
        KeyError::Backend(e) => e,
        KeyError::Failed => Error::DecryptFailed,
        KeyError::Unsupported(what) => {
            Error::Unsupported(format!("the token does not support {what}"))
        }
    }
}

/// Pairs each recipient with the certificates that match it, in recipient order.
pub fn match_certificates<'c>(
    recipients: &[Recipient],
    certs: &'c [KeyCertificate],
) -> Vec<(usize, &'c KeyCertificate)> {
    let mut out = Vec::new();
    for (i, r) in recipients.iter().enumerate() {
        for c in certs.iter().filter(|c| r.matches(&c.certificate)) {
            out.push((i, c));
        }
    }
    out
}
