//! The seam between the CMS logic and wherever private keys live.
//!
//! `cms/` sees keys only through [`KeyBackend`]: a list of certificates (readable without a PIN)
//! and private-key operations addressed by the certificate's key id. The PKCS#11 token implements
//! it in `token/`; unit tests implement it with software keys. A backend logs in (and asks for a
//! PIN) only when a private-key operation is first requested, which is what lets callers match
//! recipients before any PIN attempt is spent.

use thiserror::Error;
use x509_cert::Certificate;
use zeroize::Zeroizing;

/// Digest algorithms the CMS layer names to a backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HashAlg {
    Sha1,
    Sha224,
    Sha256,
    Sha384,
    Sha512,
}

impl HashAlg {
    /// Output length in bytes.
    pub fn output_len(self) -> usize {
        match self {
            HashAlg::Sha1 => 20,
            HashAlg::Sha224 => 28,
            HashAlg::Sha256 => 32,
            HashAlg::Sha384 => 48,
            HashAlg::Sha512 => 64,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            HashAlg::Sha1 => "SHA-1",
            HashAlg::Sha224 => "SHA-224",
            HashAlg::Sha256 => "SHA-256",
            HashAlg::Sha384 => "SHA-384",
            HashAlg::Sha512 => "SHA-512",
        }
    }
}

/// RSA decryption padding, as a CMS recipient info names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RsaPadding {
    Pkcs1v15,
    /// RSAES-OAEP with MGF1; the MGF1 digest may differ from the label digest.
    Oaep {
        hash: HashAlg,
        mgf_hash: HashAlg,
        label: Vec<u8>,
    },
}

/// A signature scheme with its digest, as a SignerInfo names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignAlg {
    RsaPkcs1v15(HashAlg),
    /// RSASSA-PSS with MGF1 of the same digest and a salt as long as the digest.
    RsaPss(HashAlg),
    Ecdsa(HashAlg),
}

impl SignAlg {
    pub fn hash(self) -> HashAlg {
        match self {
            SignAlg::RsaPkcs1v15(h) | SignAlg::RsaPss(h) | SignAlg::Ecdsa(h) => h,
        }
    }
}

/// One certificate a backend holds, with the id that addresses its private key.
#[derive(Debug, Clone)]
pub struct KeyCertificate {
    pub certificate: Certificate,
    /// The DER the certificate was read from.
    pub der: Vec<u8>,
    /// Backend-specific key id (CKA_ID on a PKCS#11 token).
    pub id: Vec<u8>,
    /// Human label (CKA_LABEL of the certificate).
    pub label: String,
    /// Whether a private key with the same id is present; `None` when that cannot be known
    /// before logging in (the token hides private objects until then).
    pub has_private_key: Option<bool>,
    /// The private key's own label, when it is visible (it often differs from the certificate's).
    pub key_label: Option<String>,
}

/// Why a private-key operation failed. The variants matter to callers: `Unsupported` lets the
/// CMS layer fall back to raw RSA, `Failed` is the uniform "this key did not open it".
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum KeyError {
    /// The backend cannot do this operation with these parameters (e.g. a token without OAEP
    /// SHA-256); the caller may try another way.
    #[error("the key backend does not support {0}")]
    Unsupported(String),
    /// The operation ran and failed (wrong key, bad padding): deliberately without detail.
    #[error("the private-key operation failed")]
    Failed,
    /// Anything else (login, PIN, device): passed up unchanged.
    #[error(transparent)]
    Backend(#[from] crate::Error),
}

/// What the CMS layer needs from a key store.
pub trait KeyBackend {
    /// Every certificate the backend holds, including expired ones. Needs no PIN.
    fn certificates(&mut self) -> Result<Vec<KeyCertificate>, crate::Error>;

    /// Decrypts `ciphertext` with the private key `key_id` and the given padding.
    fn rsa_decrypt(
        &mut self,
        key_id: &[u8],
        padding: &RsaPadding,
        ciphertext: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, KeyError>;

    /// The raw RSA private operation (`c^d mod n`), left-padded to the modulus length. Used
    /// when [`KeyBackend::rsa_decrypt`] reports `Unsupported` for OAEP parameters.
    fn rsa_raw(&mut self, key_id: &[u8], input: &[u8]) -> Result<Zeroizing<Vec<u8>>, KeyError>;

    /// Signs `tbs` (the DER of the signed attributes: small) with the private key `key_id`.
    /// RSA signatures come back as the usual big-endian block; ECDSA as the raw `r || s` that
    /// PKCS#11 returns, which the CMS layer turns into DER.
    fn sign(&mut self, key_id: &[u8], alg: SignAlg, tbs: &[u8]) -> Result<Vec<u8>, KeyError>;

    /// ECDH between the EC private key `key_id` and `peer_point` (an uncompressed ECPoint,
    /// `04 || x || y`, already checked to be on the key's curve where the CMS layer knows the
    /// curve): the raw shared secret Z, the x-coordinate of the product, as long as the field.
    /// No KDF is applied; the CMS layer does that. Z is a secret: zeroized, never logged.
    ///
    /// The default says the backend cannot do key agreement, so backends written before it
    /// still build (and EC recipients fail with a plain "not supported").
    fn ecdh(&mut self, key_id: &[u8], peer_point: &[u8]) -> Result<Zeroizing<Vec<u8>>, KeyError> {
        let _ = (key_id, peer_point);
        Err(KeyError::Unsupported("ECDH key agreement".into()))
    }

    /// Logs in now rather than at the first private-key operation (a PIN is asked if needed);
    /// for a token whose private keys are hidden until then. Backends without a login do
    /// nothing.
    fn login(&mut self) -> Result<(), crate::Error> {
        Ok(())
    }

    /// Opens one recipient's wrapped content-encryption key whole, on the backend's side.
    ///
    /// `None`, the default, means the CMS layer runs the recipe itself through the primitives
    /// above (what a token or software keys want). The session agent answers it whole, so
    /// that no raw RSA result or ECDH secret ever leaves it: only the content key does.
    fn unwrap_recipient(
        &mut self,
        key: &KeyCertificate,
        recipient: &crate::cms::recipient::Recipient,
    ) -> Option<Result<Zeroizing<Vec<u8>>, crate::Error>> {
        let _ = (key, recipient);
        None
    }
}
