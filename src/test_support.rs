//! What unit tests share (test builds only): the TEST ONLY fixture key of Alice's signature
//! certificate behind the [`KeyBackend`] seam, so that signing logic is tested without a
//! token, and a reader that hands its bytes out a few at a time, as a pipe does.

use crate::error::Result;
use crate::keyops::{HashAlg, KeyBackend, KeyCertificate, KeyError, RsaPadding, SignAlg};
use rsa::pkcs8::DecodePrivateKey;
use std::io::Read;
use std::path::PathBuf;
use zeroize::Zeroizing;

/// A file in `softhsm-fixtures/`.
pub(crate) fn fixture(name: &str) -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/softhsm-fixtures")).join(name)
}

/// Alice's signing key in software: RSA PKCS#1 v1.5 (deterministic) with SHA-256/384/512.
pub(crate) struct Alice(rsa::RsaPrivateKey);

impl Alice {
    pub(crate) fn new() -> Self {
        #[allow(clippy::unwrap_used)]
        let pem = std::fs::read_to_string(fixture("alice-sign.key.pem")).unwrap();
        #[allow(clippy::unwrap_used)]
        Alice(rsa::RsaPrivateKey::from_pkcs8_pem(&pem).unwrap())
    }
}

impl KeyBackend for Alice {
    fn certificates(&mut self) -> Result<Vec<KeyCertificate>> {
        Ok(Vec::new())
    }

    fn rsa_decrypt(
        &mut self,
        _: &[u8],
        _: &RsaPadding,
        _: &[u8],
    ) -> std::result::Result<Zeroizing<Vec<u8>>, KeyError> {
        Err(KeyError::Failed)
    }

    fn rsa_raw(&mut self, _: &[u8], _: &[u8]) -> std::result::Result<Zeroizing<Vec<u8>>, KeyError> {
        Err(KeyError::Failed)
    }

    fn sign(
        &mut self,
        _: &[u8],
        alg: SignAlg,
        tbs: &[u8],
    ) -> std::result::Result<Vec<u8>, KeyError> {
        let scheme = match alg {
            SignAlg::RsaPkcs1v15(HashAlg::Sha256) => rsa::Pkcs1v15Sign::new::<sha2::Sha256>(),
            SignAlg::RsaPkcs1v15(HashAlg::Sha384) => rsa::Pkcs1v15Sign::new::<sha2::Sha384>(),
            SignAlg::RsaPkcs1v15(HashAlg::Sha512) => rsa::Pkcs1v15Sign::new::<sha2::Sha512>(),
            _ => return Err(KeyError::Unsupported("this algorithm".into())),
        };
        let md = crate::cms::digest::digest(alg.hash(), &[tbs]);
        self.0.sign(scheme, &md).map_err(|_| KeyError::Failed)
    }
}

/// Reads `.0` out at most `.1` bytes per call: the stream readers must not care where the
/// pieces end.
pub(crate) struct Trickle<'a>(pub(crate) &'a [u8], pub(crate) usize);

impl Read for Trickle<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.0.len().min(self.1).min(buf.len());
        buf[..n].copy_from_slice(&self.0[..n]);
        self.0 = &self.0[n..];
        Ok(n)
    }
}
