//! p11smime: S/MIME with keys that never leave a smartcard or token.
//!
//! The library decrypts CMS/S-MIME messages with private keys reached through PKCS#11 (a CAC, a
//! PIV card, a YubiKey, SoftHSM2). Start with [`token::Module::open`], pick a token, and call
//! [`smime::decrypt`]; or implement [`keyops::KeyBackend`] for another key store and call
//! [`smime::decrypt_with_backend`].
//!
//! The library never prints, prompts or exits: questions for the user go through
//! [`pin::Callbacks`], and every failure is an [`Error`] with a documented exit code.
//!
//! ```no_run
//! use p11smime::{pin::NoCallbacks, smime, token::{LoginOptions, Module}, pin::PinSource};
//! let module = Module::open(None)?;
//! let pin = PinSource::Env("MY_PIN".into());
//! let request = smime::DecryptRequest {
//!     token: None,
//!     key: None,
//!     login: LoginOptions { pin: Some(&pin), force_final_try: false, callbacks: &NoCallbacks },
//! };
//! let input = std::fs::read("smime.p7m").map_err(|e| p11smime::Error::io("read", e))?;
//! let mut plain = Vec::new();
//! smime::decrypt(&module, &input, &request, &mut plain)?;
//! # Ok::<(), p11smime::Error>(())
//! ```

#![forbid(unsafe_code)]

pub mod agent;
pub mod certinfo;
pub mod certstore;
pub mod cms;
pub mod doctor;
pub mod error;
pub mod keyops;
pub mod mailbox;
pub mod mime;
pub mod ocsp;
pub mod output;
pub mod pin;
pub mod readers;
pub mod revocation;
pub mod smime;
#[cfg(test)]
mod test_support;
pub mod token;
pub mod trust;

pub use error::{Error, Result};
