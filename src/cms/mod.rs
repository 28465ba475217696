//! CMS (RFC 5652) without knowing where keys live: envelopes are parsed here and their keys are
//! unwrapped through [`crate::keyops::KeyBackend`] only.

pub mod ber;
pub mod content;
pub mod digest;
pub mod digest_pipe;
pub mod encrypt;
pub mod envelope;
pub mod gcm;
pub mod ghash;
pub mod kari;
pub mod oaep;
pub mod oids;
pub mod pubkey;
pub mod recipient;
pub mod seal;
pub mod signed;
pub mod signed_stream;
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

/// Most private-key operations one message may cost. Real messages name each key once or twice
/// (a sender who encrypted to an old and a new certificate of the same key).
pub const MAX_KEY_ATTEMPTS: usize = 4;

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
        let mut warnings: Vec<String> = used.weakness().into_iter().collect();
        if let Some(bits) = crate::certinfo::rsa_bits(&self.cert.certificate)
            && bits < encrypt::MIN_RSA_BITS
        {
            warnings.push(format!(
                "the key that opened it is RSA with only {bits} bits (under {}): whoever can \
                 break it can read this message too; ask for mail to a current certificate",
                encrypt::MIN_RSA_BITS
            ));
        }
        DecryptReport {
            recipient: self.recipient.clone(),
            key_label: self.cert.label.clone(),
            key_id: hex::encode(&self.cert.id),
            cipher: used.name(),
            bytes,
            warnings,
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
    let mut tried: Vec<(&[u8], &[u8])> = Vec::new();
    for (index, cert) in candidates {
        let r = &recipients[index];
        // Each key against each wrapped key once, and only a few tries in all: a hostile
        // message naming our certificate in thousands of entries must not cost thousands of
        // private-key operations on a card (minutes, and a busy card).
        if tried.contains(&(cert.id.as_slice(), r.encrypted_key.as_slice())) {
            continue;
        }
        if tried.len() == MAX_KEY_ATTEMPTS {
            break;
        }
        tried.push((cert.id.as_slice(), r.encrypted_key.as_slice()));
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::keyops::{KeyError, RsaPadding, SignAlg};
    use recipient::{KeyWrap, RecipientId};

    /// A key that never opens anything, counting how often it is asked.
    struct Refusing(usize);

    impl KeyBackend for Refusing {
        fn certificates(&mut self) -> Result<Vec<KeyCertificate>> {
            Ok(Vec::new())
        }
        fn rsa_decrypt(
            &mut self,
            _: &[u8],
            _: &RsaPadding,
            _: &[u8],
        ) -> std::result::Result<Zeroizing<Vec<u8>>, KeyError> {
            self.0 += 1;
            Err(KeyError::Failed)
        }
        fn rsa_raw(
            &mut self,
            _: &[u8],
            _: &[u8],
        ) -> std::result::Result<Zeroizing<Vec<u8>>, KeyError> {
            self.0 += 1;
            Err(KeyError::Failed)
        }
        fn sign(
            &mut self,
            _: &[u8],
            _: SignAlg,
            _: &[u8],
        ) -> std::result::Result<Vec<u8>, KeyError> {
            Err(KeyError::Failed)
        }
    }

    #[test]
    fn a_message_naming_our_key_a_thousand_times_costs_a_few_operations() {
        let pem = std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/softhsm-fixtures/alice-enc.pem"
        ))
        .unwrap();
        let certificate = crate::certinfo::load_certificates(&pem).unwrap().remove(0);
        let tbs = &certificate.tbs_certificate;
        let id = RecipientId::IssuerSerial {
            issuer: tbs.issuer.clone(),
            serial: tbs.serial_number.as_bytes().to_vec(),
        };
        let ours = KeyCertificate {
            der: Vec::new(),
            id: vec![2],
            label: "alice-enc".into(),
            has_private_key: Some(true),
            key_label: None,
            certificate: certificate.clone(),
        };
        let recipients: Vec<Recipient> = (0..1000u32)
            .map(|i| Recipient {
                id: Some(id.clone()),
                wrap: KeyWrap::Rsa(RsaPadding::Pkcs1v15),
                // Every tenth entry repeats an earlier wrapped key.
                encrypted_key: (i % 900).to_be_bytes().repeat(64),
            })
            .collect();
        let mut backend = Refusing(0);
        let certs = [ours];
        let result = open_key(&recipients, &mut backend, &certs, KeyChoice::Matching);
        assert!(matches!(result, Err(Error::DecryptFailed)));
        assert_eq!(backend.0, MAX_KEY_ATTEMPTS);
        // The same wrapped key twice is tried once.
        let twice = [recipients[0].clone(), recipients[0].clone()];
        let mut backend = Refusing(0);
        let _ = open_key(&twice, &mut backend, &certs, KeyChoice::Matching);
        assert_eq!(backend.0, 1);
    }
}
