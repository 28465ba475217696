//! `decrypt --unwrap`: through every layer (encrypted, signed, encrypted again...) to the
//! readable content, decrypting with the token and verifying each signature on the way. A
//! signature that fails stops it (exit 7) unless verification was turned off, which is then
//! said on every layer. Layers are read from the top-level content type only, so an S/MIME
//! attachment inside an ordinary multipart stays an attachment.

use super::decrypt::{DecryptOutcome, DecryptRequest, Decryptor};
use super::keys::KeyAccess;
use super::verify::{VerifyOutcome, verify};
use crate::error::{Error, Result};
use crate::mime::detect::{self, Layer};
use crate::trust::TrustStore;

/// Enough for any real mail; a loop of layers ends here instead of running on.
const MAX_LAYERS: usize = 16;

/// One layer removed.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(tag = "layer", rename_all = "kebab-case")]
pub enum LayerReport {
    Encrypted(DecryptOutcome),
    Signed(VerifyOutcome),
}

/// Every layer, outermost first, and the readable content.
#[derive(Debug, Clone, serde::Serialize)]
pub struct UnwrapOutcome {
    pub layers: Vec<LayerReport>,
    #[serde(skip)]
    pub content: Vec<u8>,
}

/// How to treat signatures on the way.
pub struct UnwrapRequest<'a> {
    pub decrypt: DecryptRequest<'a>,
    pub trust: &'a TrustStore,
    /// Verify every signature (the default); `false` reads on with a warning per layer.
    pub verify: bool,
}

/// Unwraps `input` to its readable content.
pub fn unwrap<'k>(
    keys: impl Into<KeyAccess<'k>>,
    input: &[u8],
    request: &UnwrapRequest<'_>,
) -> Result<UnwrapOutcome> {
    let mut decryptor = Decryptor::new(keys.into(), &request.decrypt);
    unwrap_with(&mut decryptor, input, request.trust, request.verify)
}

/// As [`unwrap`], with the sessions of `decryptor` (one login for a whole batch); with
/// `verify_signatures` false it reads on past signatures that do not hold, with a warning.
pub fn unwrap_with(
    decryptor: &mut Decryptor<'_, '_>,
    input: &[u8],
    trust: &TrustStore,
    verify_signatures: bool,
) -> Result<UnwrapOutcome> {
    let callbacks = decryptor.callbacks();
    let mut layers = Vec::new();
    let mut current = input.to_vec();
    for depth in 0..MAX_LAYERS {
        // The first layer may be an smime.p7m anywhere in the message, as decrypt finds it.
        let layer = match detect::layer(&current) {
            Layer::Plain if depth == 0 => Layer::Encrypted,
            other => other,
        };
        match layer {
            Layer::Plain => {
                return Ok(UnwrapOutcome {
                    layers,
                    content: current,
                });
            }
            Layer::Encrypted => {
                let mut plain = zeroize::Zeroizing::new(Vec::new());
                let outcome = decryptor.decrypt(&current, &mut *plain)?;
                callbacks.verbose(&format!(
                    "layer {}: encrypted ({})",
                    depth + 1,
                    outcome.report.cipher
                ));
                layers.push(LayerReport::Encrypted(outcome));
                current = plain.to_vec();
            }
            Layer::Signed => {
                let outcome = verify(&current, None, trust)?;
                if !outcome.all_good {
                    let why = outcome
                        .signers
                        .iter()
                        .find_map(|s| s.problem.clone())
                        .unwrap_or_else(|| "no valid signer".into());
                    if verify_signatures {
                        return Err(Error::SignatureInvalid(format!(
                            "layer {} is signed, and its signature does not hold: {why}",
                            depth + 1
                        )));
                    }
                    callbacks.warn(&format!(
                        "layer {} is signed and NOT verified ({why}); reading on because of --no-verify",
                        depth + 1
                    ));
                } else {
                    let who = outcome
                        .signers
                        .iter()
                        .map(|s| {
                            s.emails
                                .first()
                                .cloned()
                                .unwrap_or_else(|| s.subject.clone())
                        })
                        .collect::<Vec<_>>()
                        .join(", ");
                    callbacks.verbose(&format!("layer {}: signed by {who}, verified", depth + 1));
                }
                current = outcome.content.clone();
                layers.push(LayerReport::Signed(outcome));
            }
        }
    }
    Err(Error::BadInput(format!(
        "more than {MAX_LAYERS} nested S/MIME layers: refusing to go on"
    )))
}
