//! `encrypt`: the transport-safe entity (signed first with `--sign`), encrypted to the
//! recipients and, so the sent copy stays readable, to the token's own key-management
//! certificate; composed as `application/pkcs7-mime` under the original mail headers.

use super::keys::KeyAccess;
use super::sign::{OutForm, SignParams, sign_core};
use crate::certinfo::{self, is_encryption_cert};
use crate::cms::encrypt::{self as cmsencrypt, Cipher, KeyTransport};
use crate::cms::oids;
use crate::error::{Error, Result};
use crate::keyops::KeyCertificate;
use crate::mime::{canon, compose};
use crate::token::{LoginOptions, TokenSelector};
use std::io::Write;
use x509_cert::Certificate;

/// How to encrypt.
pub struct EncryptParams<'a> {
    pub recipients: &'a [Certificate],
    pub cipher: Cipher,
    pub key_transport: KeyTransport,
    pub outform: OutForm,
    /// Encrypt the input exactly as given, with only its line endings made CRLF: no outer
    /// headers taken off, nothing re-encoded (an entity a mail client built, e.g. mutt's
    /// multipart/signed, whose signature must survive byte for byte).
    pub as_is: bool,
}

/// Token-side choices: the self copy and signing need the token; plain encryption does not.
pub struct EncryptRequest<'a> {
    pub token: Option<&'a TokenSelector>,
    pub login: LoginOptions<'a>,
    pub params: EncryptParams<'a>,
    /// Add the token's key-management certificate as a recipient.
    pub self_copy: bool,
    /// Sign with the token first (signed, then encrypted).
    pub sign: Option<SignParams<'a>>,
}

/// Who it was encrypted to.
#[derive(Debug, Clone, serde::Serialize)]
pub struct EncryptOutcome {
    pub recipients: Vec<String>,
    pub cipher: String,
    /// The token certificate added for the sender's own copy.
    pub self_copy: Option<String>,
    pub signed: bool,
}

/// The token's own certificate to encrypt the sent copy to: current and for encryption, RSA
/// first (the widest choice), else EC.
fn own_certificate(certs: &[KeyCertificate]) -> Option<&KeyCertificate> {
    let now = certinfo::now();
    let mut usable: Vec<&KeyCertificate> = certs
        .iter()
        .filter(|c| {
            c.has_private_key != Some(false)
                && is_encryption_cert(&c.certificate)
                && !certinfo::is_expired(&c.certificate, now)
        })
        .collect();
    usable.sort_by_key(|c| {
        c.certificate
            .tbs_certificate
            .subject_public_key_info
            .algorithm
            .oid
            != oids::RSA_ENCRYPTION
    });
    usable.first().copied()
}

/// Encrypts `input` (a message or entity); the token is used only for `self_copy` and `sign`.
pub fn encrypt(
    keys: Option<KeyAccess<'_>>,
    input: &[u8],
    request: &EncryptRequest<'_>,
    out: &mut dyn Write,
) -> Result<EncryptOutcome> {
    if input.is_empty() {
        return Err(Error::BadInput(
            "the input is empty: nothing to encrypt".into(),
        ));
    }
    let (outer, mut content) = if request.params.as_is {
        (Vec::new(), canon::to_crlf(input))
    } else {
        let (outer, entity) = compose::split_message(input);
        (outer, canon::transport_safe(entity).to_bytes())
    };
    let chosen = recipients(keys, request, Some(&mut content))?;
    let der = cmsencrypt::encrypt(
        &content,
        &chosen.recipients,
        request.params.cipher,
        request.params.key_transport,
    )?;
    let bytes = match request.params.outform {
        OutForm::Der => der,
        OutForm::Pem => compose::pem(&der),
        OutForm::Message => compose::pkcs7_mime(&outer, smime_type(request.params.cipher), &der),
    };
    out.write_all(&bytes)
        .map_err(|e| Error::io("cannot write the encrypted output", e))?;
    Ok(chosen.outcome(request))
}

pub(super) fn smime_type(cipher: Cipher) -> &'static str {
    if cipher.is_gcm() {
        "authEnveloped-data"
    } else {
        "enveloped-data"
    }
}

/// The recipients, with the token's own certificate added.
pub(super) struct Chosen {
    pub(super) recipients: Vec<Certificate>,
    self_copy: Option<String>,
}

impl Chosen {
    pub(super) fn outcome(self, request: &EncryptRequest<'_>) -> EncryptOutcome {
        EncryptOutcome {
            recipients: self
                .recipients
                .iter()
                .map(|c| c.tbs_certificate.subject.to_string())
                .collect(),
            cipher: request.params.cipher.name().into(),
            self_copy: self.self_copy,
            signed: request.sign.is_some(),
        }
    }
}

/// Opens the token when the self copy or signing needs it; with `--sign`, signs `content` (which
/// must then be given) in place.
pub(super) fn recipients(
    keys: Option<KeyAccess<'_>>,
    request: &EncryptRequest<'_>,
    content: Option<&mut Vec<u8>>,
) -> Result<Chosen> {
    let callbacks = request.login.callbacks;
    let mut recipients: Vec<Certificate> = request.params.recipients.to_vec();
    let mut self_copy = None;

    let needs_token = request.self_copy || request.sign.is_some();
    let token = match (needs_token, keys) {
        (false, _) => None,
        // Without --sign the token only gives the sender's copy: a card that is not there is
        // a warning, not a reason to refuse to encrypt to the recipients.
        (true, Some(k)) => match k.open_one(request.token, request.login) {
            Ok(opened) => Some(opened.backend),
            Err(e) if request.sign.is_none() => {
                callbacks.warn(&format!(
                    "{e}: the sent copy is not encrypted to you (use --no-self to silence this)"
                ));
                None
            }
            Err(e) => return Err(e),
        },
        (true, None) if request.sign.is_some() => {
            return Err(Error::Token(
                "--sign needs the token, and no PKCS#11 module was found".into(),
            ));
        }
        (true, None) => {
            callbacks.warn("no token found: the sent copy is not encrypted to you (use --no-self to silence this)");
            None
        }
    };
    if let Some(mut token) = token {
        if let (Some(params), Some(content)) = (&request.sign, content) {
            token.login()?;
            let certs = token.certificates()?;
            let mut signed = Vec::new();
            sign_core(content, token.as_mut(), &certs, params, &mut signed)?;
            *content = signed;
        }
        if request.self_copy {
            let certs = token.certificates()?;
            match own_certificate(&certs) {
                Some(own) if !recipients.contains(&own.certificate) => {
                    self_copy = Some(own.certificate.tbs_certificate.subject.to_string());
                    recipients.push(own.certificate.clone());
                }
                Some(_) => {}
                None => callbacks.warn(
                    "the token holds no current encryption certificate: the sent copy is not encrypted to you",
                ),
            }
        }
    }

    Ok(Chosen {
        recipients,
        self_copy,
    })
}
