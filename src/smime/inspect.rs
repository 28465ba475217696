//! `inspect`: what a message is, without a PIN: its layers, for an encrypted layer the cipher,
//! the recipients and which certificate on the token matches each (certificates are readable
//! without logging in), for a signed layer the signers and the verdict on them. An encrypted
//! layer is as deep as it goes: what is inside needs the key.

use super::verify::{SignerReport, verify};
use crate::cms::envelope::Envelope;
use crate::error::Result;
use crate::keyops::KeyCertificate;
use crate::mime::detect::{self, Layer};
use crate::token::{LoginOptions, Module, TokenSelector};
use crate::trust::TrustStore;

/// Deep enough for any real mail.
const MAX_LAYERS: usize = 16;

/// One recipient of an encrypted layer.
#[derive(Debug, Clone, serde::Serialize)]
pub struct InspectedRecipient {
    /// Who and how (issuer/serial or key id, and the key algorithm).
    pub recipient: String,
    /// The token certificates that match it: "label (id HEX, token 'L')".
    pub matches: Vec<String>,
}

/// One layer.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(tag = "layer", rename_all = "kebab-case")]
pub enum InspectedLayer {
    Encrypted {
        /// envelopedData or authEnvelopedData.
        content_type: String,
        cipher: String,
        recipients: Vec<InspectedRecipient>,
    },
    Signed {
        form: String,
        signers: Vec<SignerReport>,
    },
    /// Readable content.
    Content { content_type: String },
}

/// Describes `input`. `module` (optional) lets recipients be matched to the token's
/// certificates; no login happens.
pub fn inspect(
    input: &[u8],
    module: Option<&Module>,
    selector: Option<&TokenSelector>,
    login: LoginOptions<'_>,
    trust: &TrustStore,
) -> Result<Vec<InspectedLayer>> {
    let certs = token_certificates(module, selector, login);
    let mut layers = Vec::new();
    let mut current = input.to_vec();
    for depth in 0..MAX_LAYERS {
        let layer = match detect::layer(&current) {
            Layer::Plain if depth == 0 && detect::find_cms(&current).is_ok() => Layer::Encrypted,
            other => other,
        };
        match layer {
            Layer::Encrypted => {
                let found = detect::find_cms(&current)?;
                if crate::cms::envelope::content_info(&found.cms)
                    .is_ok_and(|(oid, _)| oid == crate::cms::oids::SIGNED_DATA)
                {
                    // An opaque signed smime.p7m found inside a message: a signed layer.
                    current = found.cms.into_owned();
                    continue;
                }
                let env = Envelope::parse(&found.cms)?;
                let recipients = env
                    .recipients
                    .iter()
                    .map(|r| InspectedRecipient {
                        recipient: r.describe(),
                        matches: certs
                            .iter()
                            .filter(|(c, _)| r.matches(&c.certificate))
                            .map(|(c, token)| {
                                format!("{} (id {}, token {token})", c.label, hex::encode(&c.id))
                            })
                            .collect(),
                    })
                    .collect();
                layers.push(InspectedLayer::Encrypted {
                    content_type: crate::cms::oids::name(&match env.kind {
                        crate::cms::envelope::EnvelopeKind::Enveloped => {
                            crate::cms::oids::ENVELOPED_DATA
                        }
                        crate::cms::envelope::EnvelopeKind::AuthEnveloped => {
                            crate::cms::oids::AUTH_ENVELOPED_DATA
                        }
                    }),
                    cipher: env.cipher.name(),
                    recipients,
                });
                return Ok(layers);
            }
            Layer::Signed => {
                let outcome = verify(&current, None, trust)?;
                layers.push(InspectedLayer::Signed {
                    form: outcome.form.clone(),
                    signers: outcome.signers.clone(),
                });
                current = outcome.content;
            }
            Layer::Plain => {
                let entity = crate::mime::entity::parse(&current);
                let content_type = entity
                    .header("Content-Type")
                    .map(|h| crate::mime::entity::mime_type(&h.value()))
                    .unwrap_or_else(|| "text/plain".into());
                layers.push(InspectedLayer::Content { content_type });
                return Ok(layers);
            }
        }
    }
    Ok(layers)
}

/// Every certificate on the candidate tokens with its token's name; none when there is no
/// module or token (inspect still describes the message).
fn token_certificates(
    module: Option<&Module>,
    selector: Option<&TokenSelector>,
    login: LoginOptions<'_>,
) -> Vec<(KeyCertificate, String)> {
    let Some(module) = module else {
        return Vec::new();
    };
    let Ok(tokens) = module.candidate_tokens(selector) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for info in tokens {
        if let Ok(token) = module.open_token(&info, login)
            && let Ok(certs) = token.read_certificates()
        {
            out.extend(certs.into_iter().map(|c| (c, info.display_name())));
        }
    }
    out
}
