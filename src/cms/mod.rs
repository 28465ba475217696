//! CMS (RFC 5652) without knowing where keys live: envelopes are parsed here and their keys are
//! unwrapped through [`crate::keyops::KeyBackend`] only.

pub mod ber;
pub mod content;
pub mod digest;
pub mod encrypt;
pub mod envelope;
pub mod gcm;
pub mod kari;
pub mod oaep;
pub mod oids;
pub mod pubkey;
pub mod recipient;
pub mod signed;
pub mod stream;
pub mod verify;

use crate::error::{Error, Result};
use crate::keyops::{KeyBackend, KeyCertificate};
use envelope::Envelope;
use recipient::Recipient;
use std::io::Write;
use zeroize::Zeroizing;

/// What a successful decryption used, for `--verbose` and `--json`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct DecryptReport {
    /// The recipient entry that was opened.
    pub recipient: String,
    /// Label and key id of the certificate whose key opened it.
    pub key_label: String,
    pub key_id: String,
    pub cipher: String,
    pub bytes: u64,
    /// Things the user should know, e.g. a legacy cipher that was accepted for reading.
    pub warnings: Vec<String>,
}

/// Which keys [`decrypt_envelope`] may use.
pub enum KeyChoice<'k> {
    /// Any certificate that matches a recipient and has its private key.
    Matching,
    /// Only these ids, tried even against recipients they do not match by name.
    Forced(&'k [Vec<u8>]),
}

/// Decrypts `env` with the first key among `certs` that opens it, writing the plaintext to `out`.
///
/// Recipients are matched against certificates before any private-key operation, so a message
/// for someone else fails with [`Error::NoMatchingRecipient`] without a PIN being asked.
pub fn decrypt_envelope(
    env: &Envelope<'_>,
    backend: &mut dyn KeyBackend,
    certs: &[KeyCertificate],
    choice: KeyChoice<'_>,
    out: &mut dyn Write,
) -> Result<DecryptReport> {
    let opened = open_key(&env.recipients, backend, certs, choice)?;
    let bytes = env.decrypt_content(&opened.cek, out)?;
    Ok(opened.report(&env.cipher, bytes))
}

/// A content-encryption key, and which recipient entry and certificate gave it up.
pub struct OpenedKey<'c> {
    pub cek: Zeroizing<Vec<u8>>,
    pub recipient: String,
    pub cert: &'c KeyCertificate,
}

impl OpenedKey<'_> {
    /// The report of a decryption with this key that gave `bytes` of plaintext.
    pub fn report(&self, cipher: &content::ContentCipher, bytes: u64) -> DecryptReport {
        // RC2's effective key size may be known only from the key's length.
        let used = cipher.for_key(self.cek.len());
        DecryptReport {
            recipient: self.recipient.clone(),
            key_label: self.cert.label.clone(),
            key_id: hex::encode(&self.cert.id),
            cipher: used.name(),
            bytes,
            warnings: used.weakness().into_iter().collect(),
        }
    }
}

/// Unwraps the content-encryption key with the first key among `certs` that opens one of
/// `recipients` (see [`decrypt_envelope`]); the content is not touched, so a streamed message
/// is read once.
pub fn open_key<'c>(
    recipients: &[Recipient],
    backend: &mut dyn KeyBackend,
    certs: &'c [KeyCertificate],
    choice: KeyChoice<'_>,
) -> Result<OpenedKey<'c>> {
    let candidates: Vec<(usize, &KeyCertificate)> = match choice {
        KeyChoice::Matching => recipient::match_certificates(recipients, certs)
            .into_iter()
            .filter(|(_, c)| c.has_private_key != Some(false))
            .collect(),
        KeyChoice::Forced(ids) => {
            let forced: Vec<&KeyCertificate> =
                certs.iter().filter(|c| ids.contains(&c.id)).collect();
            let named: Vec<(usize, &KeyCertificate)> =
                recipient::match_certificates(recipients, certs)
                    .into_iter()
                    .filter(|(_, c)| ids.contains(&c.id))
                    .collect();
            if named.is_empty() {
                // The forced key is not named by any recipient: try it against each of them.
                (0..recipients.len())
                    .flat_map(|i| forced.iter().map(move |c| (i, *c)))
                    .collect()
            } else {
                named
            }
        }
    };
    if candidates.is_empty() {
        return Err(no_match(recipients, certs));
    }
    let mut last_err = Error::DecryptFailed;
    for (index, cert) in candidates {
        let r = &recipients[index];
        match recipient::unwrap_key(backend, cert, r) {
            Ok(cek) => {
                return Ok(OpenedKey {
                    cek,
                    recipient: r.describe(),
                    cert,
                });
            }
            Err(e @ (Error::DecryptFailed | Error::Unsupported(_) | Error::KeyNotFound(_))) => {
                last_err = e
            }
            Err(e) => return Err(e),
        }
    }
    Err(last_err)
}

/// The error for a message whose recipients are none of ours, listing both sides.
pub fn no_match(recipients: &[Recipient], certs: &[KeyCertificate]) -> Error {
    Error::NoMatchingRecipient {
        recipients: recipients.iter().map(|r| r.describe()).collect(),
        certificates: certs
            .iter()
            .map(|c| {
                format!(
                    "{} (issuer {}, serial {}){}",
                    c.certificate.tbs_certificate.subject,
                    c.certificate.tbs_certificate.issuer,
                    hex::encode_upper(c.certificate.tbs_certificate.serial_number.as_bytes()),
                    match c.has_private_key {
                        Some(false) => " [no private key]",
                        _ => "",
                    }
                )
            })
            .collect(),
    }
}
