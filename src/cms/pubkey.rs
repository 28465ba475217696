//! Checking a signature with a certificate's public key: RSA PKCS#1 v1.5, RSASSA-PSS and ECDSA
//! on P-256/P-384, with the RustCrypto crates. Failures come back as a sentence for the report.

use crate::cms::ber::Reader;
use crate::cms::digest::digest;
use crate::cms::oids;
use crate::keyops::HashAlg;
use const_oid::ObjectIdentifier;
use der::Encode;
use spki::{AlgorithmIdentifierOwned, SubjectPublicKeyInfoOwned};

const RSASSA_PSS: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.10");
const P256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.3.1.7");
const P384: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.132.0.34");

/// Verifies `signature` over `tbs` (hashed with `hash`) with the key in `spki`.
pub fn verify(
    spki: &SubjectPublicKeyInfoOwned,
    sig_alg: &AlgorithmIdentifierOwned,
    hash: HashAlg,
    tbs: &[u8],
    signature: &[u8],
) -> Result<(), String> {
    verify_digest(spki, sig_alg, hash, &digest(hash, &[tbs]), signature)
}

/// As [`verify`], over the digest of what was signed: for content too large to hold, hashed
/// as it was read.
pub fn verify_digest(
    spki: &SubjectPublicKeyInfoOwned,
    sig_alg: &AlgorithmIdentifierOwned,
    hash: HashAlg,
    hashed: &[u8],
    signature: &[u8],
) -> Result<(), String> {
    if spki.algorithm.oid == oids::RSA_ENCRYPTION {
        rsa_verify(spki, sig_alg, hash, hashed, signature)
    } else if spki.algorithm.oid == oids::EC_PUBLIC_KEY {
        ecdsa_verify(spki, hashed, signature)
    } else {
        Err(format!(
            "unsupported public key type {}",
            spki.algorithm.oid
        ))
    }
}

fn rsa_verify(
    spki: &SubjectPublicKeyInfoOwned,
    sig_alg: &AlgorithmIdentifierOwned,
    hash: HashAlg,
    hashed: &[u8],
    signature: &[u8],
) -> Result<(), String> {
    use rsa::pkcs8::DecodePublicKey;
    let der = spki.to_der().map_err(|e| e.to_string())?;
    let key =
        rsa::RsaPublicKey::from_public_key_der(&der).map_err(|e| format!("bad RSA key: {e}"))?;
    let invalid = |_| "the signature does not verify with the signer's key".to_string();
    if sig_alg.oid == RSASSA_PSS {
        let (pss_hash, salt) = pss_params(sig_alg)?;
        if pss_hash != hash {
            return Err("RSA-PSS parameters name another digest than the signer info".into());
        }
        return match hash {
            HashAlg::Sha1 => key.verify(
                rsa::Pss::new_with_salt::<sha1::Sha1>(salt),
                hashed,
                signature,
            ),
            HashAlg::Sha224 => key.verify(
                rsa::Pss::new_with_salt::<sha2::Sha224>(salt),
                hashed,
                signature,
            ),
            HashAlg::Sha256 => key.verify(
                rsa::Pss::new_with_salt::<sha2::Sha256>(salt),
                hashed,
                signature,
            ),
            HashAlg::Sha384 => key.verify(
                rsa::Pss::new_with_salt::<sha2::Sha384>(salt),
                hashed,
                signature,
            ),
            HashAlg::Sha512 => key.verify(
                rsa::Pss::new_with_salt::<sha2::Sha512>(salt),
                hashed,
                signature,
            ),
        }
        .map_err(invalid);
    }
    let scheme = match hash {
        HashAlg::Sha1 => rsa::Pkcs1v15Sign::new::<sha1::Sha1>(),
        HashAlg::Sha224 => rsa::Pkcs1v15Sign::new::<sha2::Sha224>(),
        HashAlg::Sha256 => rsa::Pkcs1v15Sign::new::<sha2::Sha256>(),
        HashAlg::Sha384 => rsa::Pkcs1v15Sign::new::<sha2::Sha384>(),
        HashAlg::Sha512 => rsa::Pkcs1v15Sign::new::<sha2::Sha512>(),
    };
    key.verify(scheme, hashed, signature).map_err(invalid)
}

/// The digest and salt length of RSASSA-PSS-params (defaults: SHA-1, 20).
fn pss_params(alg: &AlgorithmIdentifierOwned) -> Result<(HashAlg, usize), String> {
    let mut hash = HashAlg::Sha1;
    let mut salt = 20usize;
    let Some(params) = &alg.parameters else {
        return Ok((hash, salt));
    };
    let der = params.to_der().map_err(|e| e.to_string())?;
    let bad = |_| "malformed RSA-PSS parameters".to_string();
    let seq = Reader::new(&der).read("PSS parameters").map_err(bad)?;
    for field in seq.children().map_err(bad)? {
        let field = field.map_err(bad)?;
        let inner = field
            .children()
            .map_err(bad)?
            .read("a PSS parameter")
            .map_err(bad)?;
        match field.tag.number {
            0 => {
                let oid = crate::cms::content::read_oid(&mut inner.children().map_err(bad)?)
                    .map_err(|e| e.to_string())?;
                hash = crate::cms::recipient::hash_from_oid(&oid).map_err(|e| e.to_string())?;
            }
            2 => salt = crate::cms::content::small_uint(&inner).map_err(|e| e.to_string())?,
            _ => {}
        }
    }
    Ok((hash, salt))
}

fn ecdsa_verify(
    spki: &SubjectPublicKeyInfoOwned,
    hashed: &[u8],
    signature: &[u8],
) -> Result<(), String> {
    use p256::ecdsa::signature::hazmat::PrehashVerifier;
    let curve = spki
        .algorithm
        .parameters
        .as_ref()
        .and_then(|p| p.decode_as::<ObjectIdentifier>().ok())
        .ok_or("an EC key without a named curve")?;
    let point = spki.subject_public_key.raw_bytes();
    let invalid = |_| "the signature does not verify with the signer's key".to_string();
    if curve == P256 {
        let key = p256::ecdsa::VerifyingKey::from_sec1_bytes(point).map_err(|_| "bad P-256 key")?;
        let sig =
            p256::ecdsa::Signature::from_der(signature).map_err(|_| "malformed ECDSA signature")?;
        key.verify_prehash(hashed, &sig).map_err(invalid)
    } else if curve == P384 {
        let key = p384::ecdsa::VerifyingKey::from_sec1_bytes(point).map_err(|_| "bad P-384 key")?;
        let sig =
            p384::ecdsa::Signature::from_der(signature).map_err(|_| "malformed ECDSA signature")?;
        key.verify_prehash(hashed, &sig).map_err(invalid)
    } else {
        Err(format!("unsupported curve {curve}"))
    }
}
