//! Turning errors into what a user reads: one line saying what went wrong, and where it helps a
//! second line saying what to do. Never a PIN, a key or plaintext; never a debug dump.

use p11smime::Error;
use p11smime::error::PinFlags;
use p11smime::readers::ReaderError;

/// Prints `error` on stderr in the house form.
pub fn print_error(error: &Error) {
    eprintln!("p11smime: error: {error}");
    for line in details(error) {
        eprintln!("  {line}");
    }
    if let Some(hint) = remedy(error) {
        eprintln!("  what to do: {hint}");
    }
}

fn details(error: &Error) -> Vec<String> {
    match error {
        Error::NoMatchingRecipient {
            recipients,
            certificates,
        } => {
            let mut lines = vec!["the message is encrypted to:".to_string()];
            lines.extend(recipients.iter().map(|r| format!("  - {r}")));
            if certificates.is_empty() {
                lines.push("the token holds no certificates".into());
            } else {
                lines.push("the token holds:".into());
                lines.extend(certificates.iter().map(|c| format!("  - {c}")));
            }
            lines
        }
        Error::PinIncorrect(flags) => vec![format!(
            "one PIN attempt was used and was not retried; {}",
            flags_say(flags)
        )],
        _ => Vec::new(),
    }
}

fn flags_say(flags: &PinFlags) -> String {
    if flags.locked {
        "the token now reports the PIN LOCKED".into()
    } else if flags.final_try {
        "the token now reports the FINAL TRY: one more wrong PIN locks the card".into()
    } else if flags.count_low {
        "the token reports a low PIN count (COUNT_LOW)".into()
    } else {
        "the token reports no low-count warning (PKCS#11 gives no count of tries left)".into()
    }
}

fn remedy(error: &Error) -> Option<String> {
    Some(match error {
        Error::Usage(_) => "see `p11smime --help`".into(),
        Error::NoMatchingRecipient { .. } => {
            "this message was encrypted for someone else or for a key that is not on this card; \
             check another token (--token) or ask the sender to encrypt to your current certificate"
                .into()
        }
        Error::KeyNotFound(_) => "run `p11smime certs` to see the keys on the token".into(),
        Error::DecryptFailed => {
            "check that the message is complete; `p11smime certs` shows which keys the card holds".into()
        }
        Error::PinIncorrect(_) => "check the PIN before trying again; a few wrong PINs lock the card".into(),
        Error::PinLocked => {
            "the card must be unblocked by its issuer (for a CAC: an ID card office) or with its PUK".into()
        }
        Error::FinalTryRefused => {
            "run on a terminal to confirm, or pass --force-final-try if you are certain of the PIN".into()
        }
        Error::LoginFailed(_) => "check the PIN before trying again".into(),
        Error::PinUnavailable(_) => {
            "give the PIN source with --pin env:VAR, --pin file:PATH or --pin fd:0 (never the PIN itself)".into()
        }
        Error::ModuleNotFound { .. } => {
            "install OpenSC (Debian/Ubuntu: sudo apt-get install opensc-pkcs11; macOS: brew install opensc) \
             or name the module with --module PATH or P11SMIME_MODULE"
                .into()
        }
        Error::ModuleLoad { .. } => "check that --module names a PKCS#11 library (.so/.dylib) for this machine".into(),
        Error::Token(_) => {
            "check the card is in the reader (`p11smime readers`); `p11smime tokens` lists what the module sees".into()
        }
        Error::Agent(_) => {
            "`p11smime agent status` shows the agent; --no-agent opens the token directly, and              `p11smime agent stop` ends the agent's session"
                .into()
        }
        Error::NoAgent(_) => "start one with `p11smime agent start`".into(),
        Error::Reader(e) => return reader_remedy(e),
        Error::SignatureInvalid(_) => {
            "do not rely on this message's origin or content; the lines above say which signer failed and why"
                .into()
        }
        _ => return None,
    })
}

/// What to do about the smart-card service or readers, for this operating system.
fn reader_remedy(error: &ReaderError) -> Option<String> {
    let macos = cfg!(target_os = "macos");
    Some(match error {
        ReaderError::NoService { .. } if macos => {
            "macOS's smart-card service (CryptoTokenKit) is built in and starts when a reader is \
             attached: check that the reader or token is plugged in; \
             `system_profiler SPSmartCardsDataType` shows the readers macOS sees"
                .into()
        }
        ReaderError::NoService { .. } => {
            "start it: sudo systemctl start pcscd.socket (without systemd: sudo pcscd); \
             if pcscd is not installed: sudo apt-get install pcscd"
                .into()
        }
        ReaderError::NoReaders if macos => {
            "plug the reader or token in (a YubiKey is its own reader); \
             `system_profiler SPSmartCardsDataType` shows the readers macOS sees"
                .into()
        }
        ReaderError::NoReaders => {
            "plug the reader or token in (a YubiKey is its own reader) and check that `lsusb` shows \
             it; USB readers need the CCID driver (sudo apt-get install libccid), and pcscd must be \
             restarted after it is installed (sudo systemctl restart pcscd)"
                .into()
        }
        _ => return None,
    })
}
