//! Building EnvelopedData (AES-CBC) and AuthEnvelopedData (AES-GCM, RFC 5083/5084) to RSA
//! recipients, with PKCS#1 v1.5 or RSAES-OAEP key transport, and to EC recipients with
//! ephemeral-static ECDH key agreement (RFC 5753). Only public keys are used here, so
//! nothing crosses the key seam. The `cms` types encode the parts; the outer structures are
//! assembled here so that the recipient SET is in true DER order (see `der_set`). The content
//! itself is encrypted and framed by [`super::seal`], for a buffer here as for a stream.

use crate::cms::kari;
use crate::cms::oids;
use crate::cms::signed::hash_oid;
use crate::error::{Error, Result};
use crate::keyops::HashAlg;
use cms::cert::IssuerAndSerialNumber;
use cms::content_info::CmsVersion;
use cms::enveloped_data::{
    KeyAgreeRecipientIdentifier, KeyAgreeRecipientInfo, KeyTransRecipientInfo,
    OriginatorIdentifierOrKey, OriginatorPublicKey, RecipientEncryptedKey, RecipientIdentifier,
    RecipientInfo,
};
use der::asn1::{Any, OctetString};
use der::{Encode, Sequence};
use rand::RngCore;
use spki::AlgorithmIdentifierOwned;
use std::io::Write;
use x509_cert::Certificate;
use zeroize::Zeroizing;

/// The smallest RSA key p11smime encrypts to (NIST SP 800-131A: 2048 bits since 2014).
pub const MIN_RSA_BITS: usize = 2048;

/// Content ciphers we write. CBC for the widest reach; GCM where recipients can read it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cipher {
    Aes128Cbc,
    Aes192Cbc,
    Aes256Cbc,
    Aes128Gcm,
    Aes256Gcm,
}

impl Cipher {
    pub(crate) fn key_len(self) -> usize {
        match self {
            Cipher::Aes128Cbc | Cipher::Aes128Gcm => 16,
            Cipher::Aes192Cbc => 24,
            Cipher::Aes256Cbc | Cipher::Aes256Gcm => 32,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Cipher::Aes128Cbc => "AES-128-CBC",
            Cipher::Aes192Cbc => "AES-192-CBC",
            Cipher::Aes256Cbc => "AES-256-CBC",
            Cipher::Aes128Gcm => "AES-128-GCM",
            Cipher::Aes256Gcm => "AES-256-GCM",
        }
    }

    pub fn is_gcm(self) -> bool {
        matches!(self, Cipher::Aes128Gcm | Cipher::Aes256Gcm)
    }
}

/// Key transport padding we write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyTransport {
    Pkcs1v15,
    /// RSAES-OAEP with MGF1 over the same digest and no label.
    Oaep(HashAlg),
}

/// RFC 5084 GCMParameters.
#[derive(Sequence)]
pub(crate) struct GcmParameters {
    pub(crate) nonce: OctetString,
    pub(crate) icv_len: u8,
}

/// RSAES-OAEP-params for a non-default digest: hashFunc [0] and maskGenFunc [1].
#[derive(Sequence)]
struct OaepParams {
    #[asn1(context_specific = "0", tag_mode = "EXPLICIT")]
    hash: AlgorithmIdentifierOwned,
    #[asn1(context_specific = "1", tag_mode = "EXPLICIT")]
    mgf: AlgorithmIdentifierOwned,
}

pub(crate) fn encode_err(e: impl std::fmt::Display) -> Error {
    Error::BadInput(format!("cannot build the encrypted message: {e}"))
}

fn key_transport_alg(kt: KeyTransport) -> Result<AlgorithmIdentifierOwned> {
    Ok(match kt {
        KeyTransport::Pkcs1v15 => AlgorithmIdentifierOwned {
            oid: oids::RSA_ENCRYPTION,
            parameters: Some(Any::null()),
        },
        KeyTransport::Oaep(HashAlg::Sha1) => AlgorithmIdentifierOwned {
            oid: oids::RSAES_OAEP,
            parameters: Some(Any::encode_from(&Vec::<Any>::new()).map_err(encode_err)?),
        },
        KeyTransport::Oaep(h) => {
            let hash = AlgorithmIdentifierOwned {
                oid: hash_oid(h),
                parameters: None,
            };
            let params = OaepParams {
                mgf: AlgorithmIdentifierOwned {
                    oid: oids::MGF1,
                    parameters: Some(Any::encode_from(&hash).map_err(encode_err)?),
                },
                hash,
            };
            AlgorithmIdentifierOwned {
                oid: oids::RSAES_OAEP,
                parameters: Some(Any::encode_from(&params).map_err(encode_err)?),
            }
        }
    })
}

fn wrap_for(cert: &Certificate, cek: &[u8], kt: KeyTransport) -> Result<RecipientInfo> {
    use rsa::pkcs8::DecodePublicKey;
    let spki = &cert.tbs_certificate.subject_public_key_info;
    if spki.algorithm.oid == oids::EC_PUBLIC_KEY {
        return agree_for(cert, cek);
    }
    if spki.algorithm.oid != oids::RSA_ENCRYPTION {
        return Err(Error::Unsupported(format!(
            "encrypting to an {} key is not supported: {}",
            oids::name(&spki.algorithm.oid),
            cert.tbs_certificate.subject
        )));
    }
    let key = rsa::RsaPublicKey::from_public_key_der(&spki.to_der().map_err(encode_err)?)
        .map_err(|e| Error::BadInput(format!("the recipient's RSA key cannot be read: {e}")))?;
    // Weak keys are read (old mail), never written to.
    let bits = rsa::traits::PublicKeyParts::size(&key) * 8;
    if bits < MIN_RSA_BITS {
        return Err(Error::Unsupported(format!(
            "{} has an RSA key of {bits} bits; p11smime does not encrypt to keys under              {MIN_RSA_BITS} bits (ask the recipient for a current certificate)",
            cert.tbs_certificate.subject
        )));
    }
    let mut rng = rand::thread_rng();
    let wrapped = match kt {
        KeyTransport::Pkcs1v15 => key.encrypt(&mut rng, rsa::Pkcs1v15Encrypt, cek),
        KeyTransport::Oaep(HashAlg::Sha1) => {
            key.encrypt(&mut rng, rsa::Oaep::new::<sha1::Sha1>(), cek)
        }
        KeyTransport::Oaep(HashAlg::Sha224) => {
            key.encrypt(&mut rng, rsa::Oaep::new::<sha2::Sha224>(), cek)
        }
        KeyTransport::Oaep(HashAlg::Sha256) => {
            key.encrypt(&mut rng, rsa::Oaep::new::<sha2::Sha256>(), cek)
        }
        KeyTransport::Oaep(HashAlg::Sha384) => {
            key.encrypt(&mut rng, rsa::Oaep::new::<sha2::Sha384>(), cek)
        }
        KeyTransport::Oaep(HashAlg::Sha512) => {
            key.encrypt(&mut rng, rsa::Oaep::new::<sha2::Sha512>(), cek)
        }
    }
    .map_err(encode_err)?;
    Ok(RecipientInfo::Ktri(KeyTransRecipientInfo {
        version: CmsVersion::V0,
        rid: RecipientIdentifier::IssuerAndSerialNumber(IssuerAndSerialNumber {
            issuer: cert.tbs_certificate.issuer.clone(),
            serial_number: cert.tbs_certificate.serial_number.clone(),
        }),
        key_enc_alg: key_transport_alg(kt)?,
        enc_key: OctetString::new(wrapped).map_err(encode_err)?,
    }))
}

/// Ephemeral-static ECDH (RFC 5753) to an EC certificate: a fresh key pair per message, the
/// X9.63 KDF with the curve's own digest (SHA-256, -384, -512 for P-256, -384, -521) over
/// ECC-CMS-SharedInfo, and AES key wrap of the content key with a wrap as strong as that key.
fn agree_for(cert: &Certificate, cek: &[u8]) -> Result<RecipientInfo> {
    use p256::elliptic_curve::sec1::ToEncodedPoint;
    let spki = &cert.tbs_certificate.subject_public_key_info;
    let curve = spki
        .algorithm
        .parameters
        .as_ref()
        .and_then(|p| p.decode_as::<const_oid::ObjectIdentifier>().ok());
    let point = spki.subject_public_key.raw_bytes();
    let bad_key = || {
        Error::BadInput(format!(
            "the recipient's EC key cannot be read: {}",
            cert.tbs_certificate.subject
        ))
    };
    let mut rng = rand::thread_rng();
    macro_rules! agree {
        ($curve:ident) => {{
            let theirs = $curve::PublicKey::from_sec1_bytes(point).map_err(|_| bad_key())?;
            let ours = $curve::ecdh::EphemeralSecret::random(&mut rng);
            let z = Zeroizing::new(ours.diffie_hellman(&theirs).raw_secret_bytes().to_vec());
            (
                ours.public_key()
                    .to_encoded_point(false)
                    .as_bytes()
                    .to_vec(),
                z,
            )
        }};
    }
    let (ephemeral, z, kdf, scheme) = match curve {
        Some(c) if c == oids::SECP256R1 => {
            let (e, z) = agree!(p256);
            (e, z, HashAlg::Sha256, oids::ECDH_STD_SHA256KDF)
        }
        Some(c) if c == oids::SECP384R1 => {
            let (e, z) = agree!(p384);
            (e, z, HashAlg::Sha384, oids::ECDH_STD_SHA384KDF)
        }
        Some(c) if c == oids::SECP521R1 => {
            let (e, z) = agree!(p521);
            (e, z, HashAlg::Sha512, oids::ECDH_STD_SHA512KDF)
        }
        _ => {
            return Err(Error::Unsupported(format!(
                "encrypting to this EC curve is not supported (P-256, P-384, P-521 are): {}",
                cert.tbs_certificate.subject
            )));
        }
    };
    let (wrap_oid, kek_len) = match cek.len() {
        16 => (oids::AES128_WRAP, 16),
        24 => (oids::AES192_WRAP, 24),
        _ => (oids::AES256_WRAP, 32),
    };
    // The wrap AlgorithmIdentifier without parameters, as RFC 3565 and OpenSSL write it; it is
    // also the SharedInfo's keyInfo.
    let wrap = AlgorithmIdentifierOwned {
        oid: wrap_oid,
        parameters: None,
    };
    let info = kari::shared_info(&wrap, None, kek_len)?;
    let mut kek = Zeroizing::new(vec![0u8; kek_len]);
    kari::x963_kdf(kdf, &z, &info, &mut kek);
    let wrapped = kari::aes_wrap(&kek, cek)?;
    Ok(RecipientInfo::Kari(KeyAgreeRecipientInfo {
        version: CmsVersion::V3,
        originator: OriginatorIdentifierOrKey::OriginatorKey(OriginatorPublicKey {
            algorithm: AlgorithmIdentifierOwned {
                oid: oids::EC_PUBLIC_KEY,
                parameters: None,
            },
            public_key: der::asn1::BitString::from_bytes(&ephemeral).map_err(encode_err)?,
        }),
        ukm: None,
        key_enc_alg: AlgorithmIdentifierOwned {
            oid: scheme,
            parameters: Some(Any::encode_from(&wrap).map_err(encode_err)?),
        },
        recipient_enc_keys: vec![RecipientEncryptedKey {
            rid: KeyAgreeRecipientIdentifier::IssuerAndSerialNumber(IssuerAndSerialNumber {
                issuer: cert.tbs_certificate.issuer.clone(),
                serial_number: cert.tbs_certificate.serial_number.clone(),
            }),
            enc_key: OctetString::new(wrapped).map_err(encode_err)?,
        }],
    }))
}

/// Encrypts `content` to every certificate in `recipients`; returns the ContentInfo DER.
pub fn encrypt(
    content: &[u8],
    recipients: &[Certificate],
    cipher: Cipher,
    kt: KeyTransport,
) -> Result<Vec<u8>> {
    let mut sealer = prepare(recipients, cipher, kt)?.seal(content.len() as u64, Vec::new())?;
    sealer
        .write_all(content)
        .map_err(|e| Error::io("cannot encrypt the content", e))?;
    sealer.finish()
}

/// Everything of an envelope but its content: a fresh content key wrapped for every
/// recipient, and the content cipher with its fresh IV (CBC) or nonce (GCM, the first 12
/// bytes). [`Sealing::seal`] then encrypts content of any size as it is written.
pub struct Sealing {
    pub(crate) cipher: Cipher,
    pub(crate) cek: Zeroizing<Vec<u8>>,
    pub(crate) iv: [u8; 16],
    /// The DER SET of RecipientInfos.
    pub(crate) recip_infos: Vec<u8>,
    pub(crate) version: CmsVersion,
}

/// Makes the content key and wraps it for `recipients`.
pub fn prepare(recipients: &[Certificate], cipher: Cipher, kt: KeyTransport) -> Result<Sealing> {
    if recipients.is_empty() {
        return Err(Error::Usage("no recipients: give at least one -r".into()));
    }
    let mut rng = rand::thread_rng();
    let mut cek = Zeroizing::new(vec![0u8; cipher.key_len()]);
    rng.fill_bytes(&mut cek);
    let infos: Vec<RecipientInfo> = recipients
        .iter()
        .map(|c| wrap_for(c, &cek, kt))
        .collect::<Result<_>>()?;
    // RFC 5652 §6.1: version 0 only when every recipient info is version 0 (key transport).
    // RFC 5083 AuthEnvelopedData is always version 0.
    let version = if cipher.is_gcm() || infos.iter().all(|i| matches!(i, RecipientInfo::Ktri(_))) {
        CmsVersion::V0
    } else {
        CmsVersion::V2
    };
    let mut iv = [0u8; 16];
    rng.fill_bytes(if cipher.is_gcm() {
        &mut iv[..12]
    } else {
        &mut iv
    });
    Ok(Sealing {
        cipher,
        cek,
        iv,
        recip_infos: der_set(&infos)?,
        version,
    })
}

/// A DER SET OF its elements, sorted by their encodings as X.690 §11.6 requires. (`cms` 0.2's
/// SetOfVec orders RecipientInfos by another rule, which made the order vary with the random
/// encrypted keys.)
fn der_set(infos: &[RecipientInfo]) -> Result<Vec<u8>> {
    let mut encoded: Vec<Vec<u8>> = infos
        .iter()
        .map(|i| i.to_der().map_err(encode_err))
        .collect::<Result<_>>()?;
    encoded.sort();
    Ok(tlv(0x31, &encoded.concat()))
}

fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(content.len() + 6);
    out.push(tag);
    crate::cms::ber::push_length(content.len(), &mut out);
    out.extend_from_slice(content);
    out
}
