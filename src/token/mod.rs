//! PKCS#11 through `cryptoki`, knowing nothing of CMS: load a module, list and select tokens,
//! log in safely, read certificates and run private-key operations (see [`Token`]).

mod key;
pub(crate) mod login;
pub mod module;
mod objects;
pub mod uri;

pub use key::{LoginOptions, Token};
pub use login::ask_pin;
pub use objects::KeySelector;

use crate::error::{Error, Result};
use cryptoki::context::Pkcs11;
use cryptoki::slot::Slot;
use std::path::{Path, PathBuf};
use uri::Pkcs11Uri;

/// A loaded, initialised PKCS#11 module.
pub struct Module {
    ctx: Pkcs11,
    path: PathBuf,
}

/// What a token says about itself, read without logging in.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct TokenInfo {
    pub slot_id: u64,
    pub slot_description: String,
    pub label: String,
    pub serial: String,
    pub manufacturer: String,
    pub model: String,
    pub initialized: bool,
    pub login_required: bool,
    pub protected_authentication_path: bool,
    pub pin_count_low: bool,
    pub pin_final_try: bool,
    pub pin_locked: bool,
}

impl TokenInfo {
    /// "label (serial S)" for messages.
    pub fn display_name(&self) -> String {
        format!("'{}' (serial {})", self.label, self.serial)
    }
}

/// How the user named a token (`--token`): a label, a serial, or a `pkcs11:` URI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenSelector {
    LabelOrSerial(String),
    Uri(Pkcs11Uri),
}

impl std::str::FromStr for TokenSelector {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        if s.starts_with("pkcs11:") {
            Ok(TokenSelector::Uri(Pkcs11Uri::parse(s)?))
        } else {
            Ok(TokenSelector::LabelOrSerial(s.to_string()))
        }
    }
}

impl TokenSelector {
    /// True when `info` is the token this selector names.
    pub fn matches(&self, info: &TokenInfo) -> bool {
        match self {
            TokenSelector::LabelOrSerial(s) => info.label == *s || info.serial == *s,
            TokenSelector::Uri(u) => {
                let eq =
                    |want: &Option<String>, have: &str| want.as_deref().is_none_or(|w| w == have);
                eq(&u.token, &info.label)
                    && eq(&u.serial, &info.serial)
                    && eq(&u.manufacturer, &info.manufacturer)
                    && eq(&u.model, &info.model)
                    && u.slot_id.is_none_or(|s| s == info.slot_id)
            }
        }
    }
}

impl Module {
    /// Loads the module named by `explicit`, or the first one found in the usual places.
    pub fn open(explicit: Option<&Path>) -> Result<Self> {
        let path = module::resolve(explicit)?;
        let ctx = module::load(&path)?;
        Ok(Module { ctx, path })
    }

    /// The path the module was loaded from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Every slot with a token in it, initialised or not.
    pub fn tokens(&self) -> Result<Vec<TokenInfo>> {
        let slots = self
            .ctx
            .get_slots_with_token()
            .map_err(|e| login::pkcs11_error(&e))?;
        slots.into_iter().map(|s| self.token_info(s)).collect()
    }

    pub(crate) fn token_info(&self, slot: Slot) -> Result<TokenInfo> {
        let t = self
            .ctx
            .get_token_info(slot)
            .map_err(|e| login::pkcs11_error(&e))?;
        let slot_description = self
            .ctx
            .get_slot_info(slot)
            .map(|s| s.slot_description().trim().to_string())
            .unwrap_or_default();
        Ok(TokenInfo {
            slot_id: slot.id(),
            slot_description,
            label: t.label().trim().to_string(),
            serial: t.serial_number().trim().to_string(),
            manufacturer: t.manufacturer_id().trim().to_string(),
            model: t.model().trim().to_string(),
            initialized: t.token_initialized(),
            login_required: t.login_required(),
            protected_authentication_path: t.protected_authentication_path(),
            pin_count_low: t.user_pin_count_low(),
            pin_final_try: t.user_pin_final_try(),
            pin_locked: t.user_pin_locked(),
        })
    }

    /// Initialised tokens that `selector` names (all of them without a selector). Uninitialised
    /// ones are skipped: SoftHSM2 always shows one, and p11-kit's proxy shows every module's.
    pub fn candidate_tokens(&self, selector: Option<&TokenSelector>) -> Result<Vec<TokenInfo>> {
        let all = self.tokens()?;
        let initialised: Vec<TokenInfo> = all.iter().filter(|t| t.initialized).cloned().collect();
        let chosen: Vec<TokenInfo> = initialised
            .into_iter()
            .filter(|t| selector.is_none_or(|s| s.matches(t)))
            .collect();
        if chosen.is_empty() {
            return Err(match selector {
                Some(_) => Error::Token(format!(
                    "no token matches --token; the module {} has: {}",
                    self.path.display(),
                    list_names(&all)
                )),
                None => Error::Token(format!(
                    "no initialised token found through {}",
                    self.path.display()
                )),
            });
        }
        Ok(chosen)
    }

    /// Waits up to `seconds` (0: no limit) for a token that `selector` names to be present,
    /// saying once that it waits; then the same as [`Module::candidate_tokens`].
    pub fn wait_for_token(
        &self,
        selector: Option<&TokenSelector>,
        seconds: u64,
        callbacks: &dyn crate::pin::Callbacks,
    ) -> Result<Vec<TokenInfo>> {
        let start = std::time::Instant::now();
        let mut told = false;
        loop {
            match self.candidate_tokens(selector) {
                Ok(tokens) => return Ok(tokens),
                Err(e @ Error::Token(_)) => {
                    let waited = start.elapsed().as_secs();
                    if seconds != 0 && waited >= seconds {
                        return Err(Error::Token(format!(
                            "no card was inserted within {seconds} s ({e})"
                        )));
                    }
                    if !told {
                        callbacks.warn(&if seconds == 0 {
                            "waiting for a card to be inserted (Ctrl-C to stop)".to_string()
                        } else {
                            format!("waiting up to {seconds} s for a card to be inserted")
                        });
                        told = true;
                    }
                    std::thread::sleep(std::time::Duration::from_millis(250));
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// The one token a command without recipients to match should use.
    pub fn single_token(&self, selector: Option<&TokenSelector>) -> Result<TokenInfo> {
        let mut tokens = self.candidate_tokens(selector)?;
        if tokens.len() > 1 {
            return Err(Error::Token(format!(
                "several tokens are present: {}; choose one with --token LABEL, --token SERIAL or a pkcs11: URI",
                list_names(&tokens)
            )));
        }
        Ok(tokens.remove(0))
    }

    /// How many sessions on the token `info` describes may work at once: one for a card in a
    /// reader (it does one operation at a time whatever the sessions), else as many as there
    /// are cores (up to 4) and the token allows. `P11SMIME_SESSIONS` overrides it.
    pub fn parallel_sessions(&self, info: &TokenInfo) -> usize {
        if let Some(n) = std::env::var("P11SMIME_SESSIONS")
            .ok()
            .and_then(|v| v.parse::<usize>().ok())
        {
            return n.clamp(1, 16);
        }
        let Ok(slot) = Slot::try_from(info.slot_id) else {
            return 1;
        };
        let hardware = self
            .ctx
            .get_slot_info(slot)
            .map(|s| s.hardware_slot() || s.removable_device())
            .unwrap_or(true);
        if hardware {
            return 1;
        }
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let allowed = match self.ctx.get_token_info(slot).map(|t| t.max_session_count()) {
            Ok(cryptoki::slot::Limit::Max(n)) => usize::try_from(n).unwrap_or(1),
            Ok(_) => usize::MAX,
            Err(_) => 1,
        };
        cores.min(4).min(allowed).max(1)
    }

    /// Opens a read-only session on the token `info` describes.
    pub fn open_token<'c>(&self, info: &TokenInfo, login: LoginOptions<'c>) -> Result<Token<'c>> {
        Token::open(&self.ctx, info.clone(), login)
    }
}

fn list_names(tokens: &[TokenInfo]) -> String {
    if tokens.is_empty() {
        return "no tokens".into();
    }
    tokens
        .iter()
        .map(|t| {
            format!(
                "{}{}",
                t.display_name(),
                if t.initialized {
                    ""
                } else {
                    " [not initialised]"
                }
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}
