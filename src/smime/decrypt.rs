//! `decrypt`: find the CMS object, match recipients to the token's certificates (before any
//! PIN), unwrap the key on the token and stream the content out.

use super::keys::KeyAccess;
use crate::cms::envelope::Envelope;
use crate::cms::{self, DecryptReport, KeyChoice};
use crate::error::{Error, Result};
use crate::keyops::{KeyBackend, KeyCertificate};
use crate::mime::detect::{self, InputForm};
use crate::token::{KeySelector, LoginOptions, TokenSelector};
use std::io::Write;

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

    /// The callbacks of the request, for the layers around decryption.
    pub fn callbacks(&self) -> &'r dyn crate::pin::Callbacks {
        self.request.login.callbacks
    }

    /// Decrypts one message; see [`decrypt`].
    pub fn decrypt(&mut self, input: &[u8], out: &mut dyn Write) -> Result<DecryptOutcome> {
        let found = detect::find_cms(input)?;
        let envelope = Envelope::parse(&found.cms)?;
        let callbacks = self.request.login.callbacks;
        callbacks.verbose(&format!(
            "input: {:?}, {} recipient(s), content cipher {}",
            found.form,
            envelope.recipients.len(),
            envelope.cipher.name()
        ));
        for r in &envelope.recipients {
            callbacks.verbose(&format!("recipient: {}", r.describe()));
        }
        let key = self.request.key;
        let tokens = self.open_tokens()?;
        for open in tokens.iter_mut() {
            if select_keys(&envelope, &open.certs, key) {
                let report = decrypt_with(&envelope, open.token.as_mut(), &open.certs, key, out)?;
                for warning in &report.warnings {
                    callbacks.warn(warning);
                }
                return Ok(DecryptOutcome {
                    input_form: found.form,
                    token: open.name.clone(),
                    report,
                });
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
            None => Err(cms::no_match(&envelope, &all_certs)),
        }
    }
}

/// Whether this token's certificates can open the envelope under the user's key choice.
fn select_keys(env: &Envelope<'_>, certs: &[KeyCertificate], key: Option<&KeySelector>) -> bool {
    match key {
        Some(sel) => certs.iter().any(|c| sel.matches(c)),
        None => cms::recipient::match_certificates(&env.recipients, certs)
            .iter()
            .any(|(_, c)| c.has_private_key != Some(false)),
    }
}

fn decrypt_with(
    env: &Envelope<'_>,
    backend: &mut dyn KeyBackend,
    certs: &[KeyCertificate],
    key: Option<&KeySelector>,
    out: &mut dyn Write,
) -> Result<DecryptReport> {
    match key {
        Some(sel) => {
            let ids: Vec<Vec<u8>> = certs
                .iter()
                .filter(|c| sel.matches(c))
                .map(|c| c.id.clone())
                .collect();
            cms::decrypt_envelope(env, backend, certs, KeyChoice::Forced(&ids), out)
        }
        None => cms::decrypt_envelope(env, backend, certs, KeyChoice::Matching, out),
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
