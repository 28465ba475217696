//! CMS (RFC 5652) without knowing where keys live: envelopes are parsed here and their keys are
//! unwrapped through [`crate::keyops::KeyBackend`] only.

pub mod ber;
pub mod content;
pub mod digest;
pub mod encrypt;
pub mod envelope;
pub mod kari;
pub mod oaep;
pub mod oids;
pub mod pubkey;
pub mod recipient;
pub mod signed;
pub mod verify;

use crate::error::{Error, Result};
use crate::keyops::{KeyBackend, KeyCertificate};
use envelope::Envelope;
use std::io::Write;

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
    let candidates: Vec<(usize, &KeyCertificate)> = match choice {
        KeyChoice::Matching => recipient::match_certificates(&env.recipients, certs)
            .into_iter()
            .filter(|(_, c)| c.has_private_key != Some(false))
            .collect(),
        KeyChoice::Forced(ids) => {
            let forced: Vec<&KeyCertificate> =
                certs.iter().filter(|c| ids.contains(&c.id)).collect();
            let named: Vec<(usize, &KeyCertificate)> =
                recipient::match_certificates(&env.recipients, certs)
                    .into_iter()
                    .filter(|(_, c)| ids.contains(&c.id))
                    .collect();
            if named.is_empty() {
                // The forced key is not named by any recipient: try it against each of them.
                (0..env.recipients.len())
                    .flat_map(|i| forced.iter().map(move |c| (i, *c)))
                    .collect()
            } else {
                named
            }
        }
    };
    if candidates.is_empty() {
        return Err(no_match(env, certs));
    }
    let mut last_err = Error::DecryptFailed;
    for (index, cert) in candidates {
        let r = &env.recipients[index];
        match recipient::unwrap_key(backend, cert, r) {
            Ok(cek) => {
                let bytes = env.decrypt_content(&cek, out)?;
                // RC2's effective key size may be known only from the key's length.
                let used = env.cipher.for_key(cek.len());
                return Ok(DecryptReport {
                    recipient: r.describe(),
                    key_label: cert.label.clone(),
                    key_id: hex::encode(&cert.id),
                    cipher: used.name(),
                    bytes,
                    warnings: used.weakness().into_iter().collect(),
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
pub fn no_match(env: &Envelope<'_>, certs: &[KeyCertificate]) -> Error {
    Error::NoMatchingRecipient {
        recipients: env.recipients.iter().map(|r| r.describe()).collect(),
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
