//! `sign`: make the entity transport-safe (or take it as given, `as_is`), pick the signing
//! certificate, sign on the token and compose the signed message (clear-text multipart/signed,
//! opaque signed-data, or bare CMS).

use super::keys::KeyAccess;
use crate::certinfo::{self, is_encryption_cert, is_signing_cert};
use crate::cms::oids;
use crate::cms::signed::{self, SignRequest as CmsSignRequest};
use crate::error::{Error, Result};
use crate::keyops::{HashAlg, KeyBackend, KeyCertificate, SignAlg};
use crate::mime::{canon, compose};
use crate::token::{KeySelector, LoginOptions, TokenSelector};
use std::io::Write;
use std::time::SystemTime;
use x509_cert::Certificate;

/// What `sign` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutForm {
    /// A complete mail message (the default).
    Message,
    /// The bare CMS object, DER.
    Der,
    /// The bare CMS object, PEM.
    Pem,
}

/// How to sign, independent of where the key lives.
#[derive(Debug, Clone)]
pub struct SignParams<'a> {
    pub key: Option<&'a KeySelector>,
    /// `application/pkcs7-mime; smime-type=signed-data` instead of multipart/signed.
    pub opaque: bool,
    /// Default: SHA-256, or SHA-384 for a P-384 key.
    pub digest: Option<HashAlg>,
    pub pss: bool,
    /// More certificates to include (intermediates from `--chain`).
    pub chain: &'a [Certificate],
    pub outform: OutForm,
    /// Sign the input exactly as given, with only its line endings made CRLF (as `openssl smime
    /// -sign` does without `-binary`): no outer headers taken off, nothing re-encoded. For mail
    /// clients that build and send the entity themselves (mutt).
    pub as_is: bool,
}

/// Token-side choices plus the signing parameters.
pub struct SignRequest<'a> {
    pub token: Option<&'a TokenSelector>,
    pub login: LoginOptions<'a>,
    pub params: SignParams<'a>,
}

/// What was signed and with which key.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SignOutcome {
    pub token: String,
    pub signer: String,
    pub key_label: String,
    pub key_id: String,
    pub algorithm: String,
    /// The `micalg` parameter, e.g. "sha-256".
    pub micalg: String,
    /// The certificate named in sMIMEEncryptionKeyPreference, if any.
    pub encryption_certificate: Option<String>,
}

/// Signs `input` (a message or MIME entity) with a key reached through `keys` (a token of a
/// module, or the session agent).
pub fn sign<'k>(
    keys: impl Into<KeyAccess<'k>>,
    input: &[u8],
    request: &SignRequest<'_>,
    out: &mut dyn Write,
) -> Result<SignOutcome> {
    with_token(keys.into(), request, |backend, certs| {
        sign_core(input, backend, certs, &request.params, out)
    })
}

/// Opens the token, logs in and runs `work` with its key backend and certificates.
pub(super) fn with_token(
    keys: KeyAccess<'_>,
    request: &SignRequest<'_>,
    work: impl FnOnce(&mut dyn KeyBackend, &[KeyCertificate]) -> Result<SignOutcome>,
) -> Result<SignOutcome> {
    let opened = keys.open_one(request.token, request.login)?;
    let mut token = opened.backend;
    // Before any PIN: is there a certificate we could sign with at all? (With --key the name
    // may be a private key's label, visible only after login.)
    if request.params.key.is_none() {
        choose_signer(&token.certificates()?, None)?;
    }
    token.login()?;
    let certs = token.certificates()?;
    let mut outcome = work(token.as_mut(), &certs)?;
    outcome.token = opened.name;
    Ok(outcome)
}

/// Signs with any [`KeyBackend`].
pub fn sign_with_backend(
    input: &[u8],
    backend: &mut dyn KeyBackend,
    params: &SignParams<'_>,
    out: &mut dyn Write,
) -> Result<SignOutcome> {
    let certs = backend.certificates()?;
    sign_core(input, backend, &certs, params, out)
}

/// The signing certificate: the one `--key` names, else one for digital signature and
/// e-mail whose key is present, current ones first. Never a key-management-only certificate
/// unless named.
fn choose_signer<'c>(
    certs: &'c [KeyCertificate],
    key: Option<&KeySelector>,
) -> Result<&'c KeyCertificate> {
    let now = certinfo::now();
    let mut candidates: Vec<&KeyCertificate> = certs
        .iter()
        .filter(|c| c.has_private_key != Some(false))
        .filter(|c| match key {
            Some(sel) => sel.matches(c),
            None => is_signing_cert(&c.certificate),
        })
        .collect();
    candidates.sort_by_key(|c| certinfo::is_expired(&c.certificate, now));
    candidates.first().copied().ok_or_else(|| match key {
        Some(_) => Error::KeyNotFound("no certificate with a private key matches --key".into()),
        None => Error::KeyNotFound(
            "the token holds no signing certificate (digitalSignature or nonRepudiation, for \
             e-mail) with its private key"
                .into(),
        ),
    })
}

fn sign_alg(cert: &Certificate, digest: Option<HashAlg>, pss: bool) -> Result<SignAlg> {
    let spki = &cert.tbs_certificate.subject_public_key_info;
    if spki.algorithm.oid == oids::RSA_ENCRYPTION {
        let h = digest.unwrap_or(HashAlg::Sha256);
        return Ok(if pss {
            SignAlg::RsaPss(h)
        } else {
            SignAlg::RsaPkcs1v15(h)
        });
    }
    if spki.algorithm.oid == oids::EC_PUBLIC_KEY {
        if pss {
            return Err(Error::Usage(
                "--pss applies to RSA keys; this key is EC".into(),
            ));
        }
        // A P-384 key's own digest is SHA-384 (its 97-byte point has a 48-byte x).
        let p384 = spki.subject_public_key.raw_bytes().len() == 97;
        let h = digest.unwrap_or(if p384 {
            HashAlg::Sha384
        } else {
            HashAlg::Sha256
        });
        return Ok(SignAlg::Ecdsa(h));
    }
    Err(Error::Unsupported(format!(
        "signing with a {} key",
        oids::name(&spki.algorithm.oid)
    )))
}

pub(super) fn micalg(h: HashAlg) -> &'static str {
    match h {
        HashAlg::Sha1 => "sha-1",
        HashAlg::Sha224 => "sha-224",
        HashAlg::Sha256 => "sha-256",
        HashAlg::Sha384 => "sha-384",
        HashAlg::Sha512 => "sha-512",
    }
}

pub(super) fn sign_core(
    input: &[u8],
    backend: &mut dyn KeyBackend,
    certs: &[KeyCertificate],
    params: &SignParams<'_>,
    out: &mut dyn Write,
) -> Result<SignOutcome> {
    sign_core_at(input, backend, certs, params, SystemTime::now(), out)
}

/// [`sign_core`] with the signing time given (tests compare outputs byte for byte).
pub(super) fn sign_core_at(
    input: &[u8],
    backend: &mut dyn KeyBackend,
    certs: &[KeyCertificate],
    params: &SignParams<'_>,
    time: SystemTime,
    out: &mut dyn Write,
) -> Result<SignOutcome> {
    if input.is_empty() {
        return Err(empty());
    }
    let signing = Signing::choose(certs, params)?;
    let (outer, content) = if params.as_is {
        (Vec::new(), canon::to_crlf(input))
    } else {
        let (outer, entity) = compose::split_message(input);
        (outer, canon::transport_safe(entity).to_bytes())
    };
    let der = signed::sign(backend, &signing.request(&content, params, time))?;
    let bytes = match (params.outform, params.opaque) {
        (OutForm::Der, _) => der,
        (OutForm::Pem, _) => compose::pem(&der),
        (OutForm::Message, false) => {
            compose::multipart_signed(&outer, &content, &der, micalg(signing.alg.hash()))
        }
        (OutForm::Message, true) => compose::pkcs7_mime(&outer, "signed-data", &der),
    };
    out.write_all(&bytes).map_err(write_err)?;
    Ok(signing.outcome())
}

pub(super) fn empty() -> Error {
    Error::BadInput("the input is empty: nothing to sign".into())
}

pub(super) fn write_err(e: std::io::Error) -> Error {
    Error::io("cannot write the signed output", e)
}

/// The signer of a request and what goes with it: the digest and signature algorithms, the
/// certificate replies should be encrypted to, and the certificates to include.
pub(super) struct Signing<'c> {
    signer: &'c KeyCertificate,
    pub(super) alg: SignAlg,
    encryption: Option<&'c KeyCertificate>,
    extra: Vec<Certificate>,
}

impl<'c> Signing<'c> {
    pub(super) fn choose(certs: &'c [KeyCertificate], params: &SignParams<'_>) -> Result<Self> {
        let signer = choose_signer(certs, params.key)?;
        let alg = sign_alg(&signer.certificate, params.digest, params.pss)?;
        let now = certinfo::now();
        // The certificate replies should be encrypted to: a current key-management
        // certificate, of the signer's key type first (an RSA signer's correspondents may not
        // do ECDH).
        let key_alg = |c: &Certificate| c.tbs_certificate.subject_public_key_info.algorithm.oid;
        let mut encryption_candidates: Vec<&KeyCertificate> = certs
            .iter()
            .filter(|c| c.id != signer.id && c.has_private_key != Some(false))
            .filter(|c| {
                is_encryption_cert(&c.certificate) && !certinfo::is_expired(&c.certificate, now)
            })
            .collect();
        encryption_candidates
            .sort_by_key(|c| key_alg(&c.certificate) != key_alg(&signer.certificate));
        let encryption = encryption_candidates.first().copied();
        let mut extra: Vec<Certificate> =
            encryption.iter().map(|c| c.certificate.clone()).collect();
        extra.extend(
            certs
                .iter()
                .filter(|c| certinfo::is_ca(&c.certificate))
                .map(|c| c.certificate.clone()),
        );
        extra.extend(params.chain.iter().cloned());
        Ok(Signing {
            signer,
            alg,
            encryption,
            extra,
        })
    }

    /// The CMS request for `content` (empty when the caller hashes it).
    pub(super) fn request<'r>(
        &'r self,
        content: &'r [u8],
        params: &SignParams<'_>,
        time: SystemTime,
    ) -> CmsSignRequest<'r> {
        CmsSignRequest {
            content,
            detached: !params.opaque,
            alg: self.alg,
            signer: &self.signer.certificate,
            key_id: &self.signer.id,
            encryption_cert: self.encryption.map(|c| &c.certificate),
            extra_certs: &self.extra,
            signing_time: time,
        }
    }

    pub(super) fn outcome(&self) -> SignOutcome {
        let alg = self.alg;
        SignOutcome {
            token: String::new(),
            signer: self.signer.certificate.tbs_certificate.subject.to_string(),
            key_label: self.signer.label.clone(),
            key_id: hex::encode(&self.signer.id),
            algorithm: match alg {
                SignAlg::RsaPkcs1v15(h) => format!("RSA PKCS#1 v1.5 with {}", h.name()),
                SignAlg::RsaPss(h) => format!("RSA-PSS with {}", h.name()),
                SignAlg::Ecdsa(h) => format!("ECDSA with {}", h.name()),
            },
            micalg: micalg(alg.hash()).into(),
            encryption_certificate: self
                .encryption
                .map(|c| c.certificate.tbs_certificate.subject.to_string()),
        }
    }
}
