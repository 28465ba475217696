//! `decrypt`: find the CMS object, match recipients to the token's certificates (before any
//! PIN), unwrap the key on the token and stream the content out.

use super::keys::KeyAccess;
use super::spool::{Sink, Spool};
use crate::cms::content::{CbcStream, ContentCipher};
use crate::cms::envelope::{Envelope, EnvelopeKind};
use crate::cms::gcm::GcmStream;
use crate::cms::recipient::Recipient;
use crate::cms::stream::EnvelopeStream;
use crate::cms::{self, DecryptReport, KeyChoice};
use crate::error::{Error, Result};
use crate::keyops::{KeyBackend, KeyCertificate};
use crate::mime::detect::{self, InputForm};
use crate::token::{KeySelector, LoginOptions, TokenSelector};
use std::io::{Read, Write};
use zeroize::Zeroizing;

/// What a decryption found and used.
#[derive(Debug, Clone, serde::Serialize)]
pub struct DecryptOutcome {
    pub input_form: InputForm,
    /// The token that opened it, as "label (serial ...)"; empty for software backends.
    pub token: String,
    #[serde(flatten)]
    pub report: DecryptReport,
}

/// Token-side choices for [`decrypt`].
pub struct DecryptRequest<'a> {
    pub token: Option<&'a TokenSelector>,
    pub key: Option<&'a KeySelector>,
    pub login: LoginOptions<'a>,
}

/// Decrypts `input` (CMS in any form, or a mail message) with a key reached through `keys` (a
/// token of a module, or the session agent), writing the content to `out`.
///
/// The token is the one selected, else the one holding a certificate that matches a recipient.
/// No PIN is asked until a matching certificate has been found.
pub fn decrypt<'k>(
    keys: impl Into<KeyAccess<'k>>,
    input: &[u8],
    request: &DecryptRequest<'_>,
    out: &mut dyn Write,
) -> Result<DecryptOutcome> {
    Decryptor::new(keys.into(), request).decrypt(input, out)
}

/// Decrypts one message after another with the same open sessions, so that a batch costs one
/// login: tokens are opened and their certificates read once, the login happens at the first
/// private-key operation and holds for the rest.
pub struct Decryptor<'m: 'r, 'r> {
    keys: KeyAccess<'m>,
    request: &'r DecryptRequest<'r>,
    tokens: Option<Vec<OpenToken<'r>>>,
}

struct OpenToken<'c> {
    name: String,
    token: Box<dyn KeyBackend + 'c>,
    certs: Vec<KeyCertificate>,
}

impl<'m: 'r, 'r> Decryptor<'m, 'r> {
    pub fn new(keys: KeyAccess<'m>, request: &'r DecryptRequest<'r>) -> Self {
        Decryptor {
            keys,
            request,
            tokens: None,
        }
    }

    fn open_tokens(&mut self) -> Result<&mut Vec<OpenToken<'r>>> {
        if self.tokens.is_none() {
            let mut open = Vec::new();
            for opened in self.keys.open_all(self.request.token, self.request.login)? {
                let mut token = opened.backend;
                let mut certs = token.certificates()?;
                if let Some(sel) = self.request.key
                    && !certs.iter().any(|c| sel.matches(c))
                    && certs.iter().any(|c| c.has_private_key.is_none())
                {
                    // --key may name a private key's label, which this token shows only after
                    // login; the user asked for that key, so a PIN is expected here.
                    token.login()?;
                    certs = token.certificates()?;
                }
                self.request.login.callbacks.verbose(&format!(
                    "token {}: {} certificate(s)",
                    opened.name,
                    certs.len()
                ));
                open.push(OpenToken {
                    name: opened.name,
                    token,
                    certs,
                });
            }
            self.tokens = Some(open);
        }
        Ok(self.tokens.get_or_insert_with(Vec::new))
    }

    /// The keys and the request, to make a decryptor with sessions of its own in another
    /// thread of a batch (see [`Decryptor::parallel_sessions`]).
    pub fn parts(&self) -> (KeyAccess<'m>, &'r DecryptRequest<'r>) {
        (self.keys, self.request)
    }

    /// How many decryptors may work at once: one through the agent (it has one session) or
    /// for a card in a reader; more for a software token or an HSM (`Module::parallel_sessions`).
    pub fn parallel_sessions(&self) -> usize {
        match self.keys {
            KeyAccess::Agent(_) => 1,
            KeyAccess::Module(module) => module
                .candidate_tokens(self.request.token)
                .map(|tokens| {
                    tokens
                        .iter()
                        .map(|t| module.parallel_sessions(t))
                        .min()
                        .unwrap_or(1)
                })
                .unwrap_or(1),
        }
    }

    /// The callbacks of the request, for the layers around decryption.
    pub fn callbacks(&self) -> &'r dyn crate::pin::Callbacks {
        self.request.login.callbacks
    }

    /// Decrypts one message; see [`decrypt`].
    pub fn decrypt(&mut self, input: &[u8], out: &mut dyn Write) -> Result<DecryptOutcome> {
        let found = detect::find_cms(input)?;
        let envelope = Envelope::parse(&found.cms)?;
        self.describe(&envelope.recipients, &envelope.cipher, found.form);
        let (token, cek, mut report) = self.open_key(&envelope.recipients, &envelope.cipher)?;
        report.bytes = envelope.decrypt_content(&cek, out)?;
        Ok(self.outcome(found.form, token, report))
    }

    /// Decrypts a CMS message (DER or BER: a ContentInfo, not a mail) as it is read from
    /// `input`, in constant memory whatever its size. Into a [`Sink::Visible`] output nothing
    /// is written until the whole message was read and its tag or padding checked.
    pub fn decrypt_stream(
        &mut self,
        input: &mut dyn Read,
        sink: Sink<'_>,
    ) -> Result<DecryptOutcome> {
        let envelope = EnvelopeStream::open(input)?;
        self.describe(&envelope.recipients, &envelope.cipher, InputForm::Der);
        let (token, cek, mut report) = self.open_key(&envelope.recipients, &envelope.cipher)?;
        report.bytes = match sink {
            Sink::Staged(out) => stream_content(envelope, &cek, out)?,
            Sink::Visible(out) => {
                let mut spool = Spool::new();
                stream_content(envelope, &cek, &mut spool)?;
                spool.release(out)?
            }
        };
        Ok(self.outcome(InputForm::Der, token, report))
    }

    fn describe(&self, recipients: &[Recipient], cipher: &ContentCipher, form: InputForm) {
        let callbacks = self.request.login.callbacks;
        callbacks.verbose(&format!(
            "input: {:?}, {} recipient(s), content cipher {}",
            form,
            recipients.len(),
            cipher.name()
        ));
        for r in recipients {
            callbacks.verbose(&format!("recipient: {}", r.describe()));
        }
    }

    fn outcome(&self, form: InputForm, token: String, report: DecryptReport) -> DecryptOutcome {
        for warning in &report.warnings {
            self.request.login.callbacks.warn(warning);
        }
        DecryptOutcome {
            input_form: form,
            token,
            report,
        }
    }

    /// Finds the token with a key for one of `recipients` and unwraps the content key with it:
    /// the token's name, the key, and the report (without the length yet).
    fn open_key(
        &mut self,
        recipients: &[Recipient],
        cipher: &ContentCipher,
    ) -> Result<(String, Zeroizing<Vec<u8>>, DecryptReport)> {
        let key = self.request.key;
        let tokens = self.open_tokens()?;
        for open in tokens.iter_mut() {
            if select_keys(recipients, &open.certs, key) {
                let forced: Vec<Vec<u8>> = match key {
                    Some(sel) => open
                        .certs
                        .iter()
                        .filter(|c| sel.matches(c))
                        .map(|c| c.id.clone())
                        .collect(),
                    None => Vec::new(),
                };
                let choice = match key {
                    Some(_) => KeyChoice::Forced(&forced),
                    None => KeyChoice::Matching,
                };
                let opened = cms::open_key(recipients, open.token.as_mut(), &open.certs, choice)?;
                let report = opened.report(cipher, 0);
                return Ok((open.name.clone(), opened.cek, report));
            }
        }
        let all_certs: Vec<KeyCertificate> = tokens
            .iter()
            .flat_map(|t| t.certs.iter().cloned())
            .collect();
        match key {
            Some(_) => Err(Error::KeyNotFound(
                "no certificate on the token matches --key; `p11smime certs` lists labels and ids"
                    .into(),
            )),
            None => Err(cms::no_match(recipients, &all_certs)),
        }
    }
}

/// Whether this token's certificates can open the envelope under the user's key choice.
fn select_keys(
    recipients: &[Recipient],
    certs: &[KeyCertificate],
    key: Option<&KeySelector>,
) -> bool {
    match key {
        Some(sel) => certs.iter().any(|c| sel.matches(c)),
        None => cms::recipient::match_certificates(recipients, certs)
            .iter()
            .any(|(_, c)| c.has_private_key != Some(false)),
    }
}

/// Reads the encrypted content through the cipher into `out`; returns the plaintext length.
/// GCM output is written before the tag is checked: `out` must be a spool or a staged file.
fn stream_content(envelope: EnvelopeStream<'_>, cek: &[u8], out: &mut dyn Write) -> Result<u64> {
    if !envelope.cipher.key_fits(cek.len()) {
        return Err(Error::DecryptFailed);
    }
    match (&envelope.cipher, envelope.kind) {
        (ContentCipher::AesGcm { nonce, tag_len, .. }, EnvelopeKind::AuthEnveloped) => {
            let mut gcm = GcmStream::new(cek, nonce, *tag_len)?;
            let mut written = 0u64;
            let trailer = envelope.read_content(&mut |piece| {
                gcm.decrypt(piece);
                written += piece.len() as u64;
                out.write_all(piece)
                    .map_err(|e| Error::io("cannot write the decrypted output", e))
            })?;
            gcm.finish(&trailer.auth_attrs, &trailer.mac)?;
            Ok(written)
        }
        (cipher, _) => {
            let mut cbc = CbcStream::new(cipher, cek)?;
            envelope.read_content(&mut |piece| cbc.update(piece, out))?;
            cbc.finish(out)
        }
    }
}

/// Decrypts `input` with any [`KeyBackend`] (software keys, another store): the same path as
/// [`decrypt`] without token selection.
pub fn decrypt_with_backend(
    input: &[u8],
    backend: &mut dyn KeyBackend,
    out: &mut dyn Write,
) -> Result<DecryptOutcome> {
    let found = detect::find_cms(input)?;
    let envelope = Envelope::parse(&found.cms)?;
    let certs = backend.certificates()?;
    let report = cms::decrypt_envelope(&envelope, backend, &certs, KeyChoice::Matching, out)?;
    Ok(DecryptOutcome {
        input_form: found.form,
        token: String::new(),
        report,
    })
}
