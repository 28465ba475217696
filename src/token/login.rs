//! Logging in without ever costing the user more than the one attempt they typed.
//!
//! Before C_Login the token flags are read again: a locked PIN is refused, a low count is a
//! warning, the final try needs a yes on a terminal (or `--force-final-try`). A wrong PIN is one
//! C_Login, reported with the flags read afterwards, and never retried.

use super::TokenInfo;
use super::module::{fn_name, rv_name};
use crate::error::{Error, PinFlags, Result};
use crate::pin::{Callbacks, PIN_FORMS, PinSource, read_pin};
use cryptoki::error::RvError;
use cryptoki::session::{Session, UserType};
use secrecy::SecretString;

/// Maps a PKCS#11 error that is not about the PIN: removal of the card gets its own words.
pub fn pkcs11_error(e: &cryptoki::error::Error) -> Error {
    match e {
        cryptoki::error::Error::Pkcs11(
            rv
            @ (RvError::DeviceRemoved | RvError::TokenNotPresent | RvError::SessionHandleInvalid),
            f,
        ) => Error::Token(format!(
            "the token went away ({} in {}): check that the card is in the reader, then run the command again",
            rv_name(rv),
            fn_name(f)
        )),
        cryptoki::error::Error::Pkcs11(rv, f) => Error::Pkcs11 {
            function: fn_name(f),
            rv: rv_name(rv),
        },
        other => Error::Pkcs11 {
            function: "cryptoki".into(),
            rv: other.to_string(),
        },
    }
}

/// Checks the flags before a login attempt: refuses a locked PIN, warns on a low count, and
/// asks before the final try.
pub fn preflight(info: &TokenInfo, force_final_try: bool, callbacks: &dyn Callbacks) -> Result<()> {
    if info.pin_locked {
        return Err(Error::PinLocked);
    }
    if info.pin_final_try && !force_final_try {
        let question = format!(
            "The token {} reports this is the FINAL PIN try: a wrong PIN now locks the card. Continue?",
            info.display_name()
        );
        match callbacks.confirm(&question) {
            Some(true) => {}
            _ => return Err(Error::FinalTryRefused),
        }
    } else if info.pin_count_low {
        callbacks.warn(&format!(
            "the token {} reports a low PIN count (COUNT_LOW): a wrong PIN was entered recently; check the PIN before typing it",
            info.display_name()
        ));
    }
    Ok(())
}

/// Which source to use: the explicit one, else the PIN pad when the token has one, else a
/// prompt (which fails cleanly with no terminal).
pub fn effective_source(explicit: Option<&PinSource>, info: &TokenInfo) -> PinSource {
    match explicit {
        Some(s) => s.clone(),
        None if info.protected_authentication_path => PinSource::Pinpad,
        None => PinSource::Prompt,
    }
}

/// Gets the PIN from `source`; `None` for the PIN pad.
pub fn obtain_pin(
    source: &PinSource,
    info: &TokenInfo,
    callbacks: &dyn Callbacks,
) -> Result<Option<SecretString>> {
    match source {
        PinSource::Pinpad => {
            callbacks.warn(&format!("enter the PIN on the reader's PIN pad for {}", info.display_name()));
            Ok(None)
        }
        PinSource::Prompt => callbacks
            .request_pin(&format!("PIN for {}: ", info.display_name()))
            .map(Some)
            .ok_or_else(|| {
                Error::PinUnavailable(format!(
                    "a PIN is needed for {} and there is no terminal to ask on; give --pin with one of: {PIN_FORMS}",
                    info.display_name()
                ))
            }),
        other => read_pin(other).map(Some),
    }
}

/// Everything before a C_Login: the flag checks of `preflight`, then the PIN from the
/// chosen source (`None`: the PIN pad). Used for the token's own login, by the agent's starter
/// (which asks here and hands the PIN to the agent process), and for signing keys that want
/// the PIN again through the agent.
pub fn ask_pin(
    info: &TokenInfo,
    options: &super::LoginOptions<'_>,
) -> Result<Option<SecretString>> {
    preflight(info, options.force_final_try, options.callbacks)?;
    let source = effective_source(options.pin, info);
    obtain_pin(&source, info, options.callbacks)
}

/// One C_Login of `user` (normal or context-specific). Never retried.
pub fn login(
    session: &Session,
    user: UserType,
    pin: Option<&SecretString>,
    flags_after: impl FnOnce() -> PinFlags,
) -> Result<()> {
    match session.login(user, pin) {
        Ok(()) => Ok(()),
        Err(cryptoki::error::Error::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => Ok(()),
        Err(cryptoki::error::Error::Pkcs11(
            RvError::PinIncorrect | RvError::PinInvalid | RvError::PinLenRange,
            _,
        )) => Err(Error::PinIncorrect(flags_after())),
        Err(cryptoki::error::Error::Pkcs11(RvError::PinLocked, _)) => Err(Error::PinLocked),
        // Cancel pressed on a PIN pad (or in a module's own PIN dialog): no PIN was given.
        Err(cryptoki::error::Error::Pkcs11(RvError::FunctionCanceled, _)) => {
            Err(Error::PinUnavailable(
                "the PIN entry was cancelled (CKR_FUNCTION_CANCELED in C_Login)".into(),
            ))
        }
        // The token says it has a PIN pad, yet refuses the login without a PIN that PKCS#11
        // prescribes for one (SoftHSM2 and some module/reader pairs do).
        Err(cryptoki::error::Error::Pkcs11(
            rv @ (RvError::ArgumentsBad | RvError::FunctionNotSupported),
            _,
        )) if pin.is_none() => Err(Error::LoginFailed(format!(
            "the token reports a PIN pad (protected authentication path) but refused a login \
             through it ({} in C_Login); give the PIN with --pin prompt (or env:VAR, file:PATH, fd:N)",
            rv_name(&rv)
        ))),
        Err(cryptoki::error::Error::Pkcs11(RvError::GeneralError, _)) => Err(Error::LoginFailed(
            "the token refused the login with CKR_GENERAL_ERROR (OpenSC reports a wrong CAC PIN this way)".into(),
        )),
        Err(e) => Err(pkcs11_error(&e)),
    }
}
