//! The public error type. Every failure a user can meet is one variant, each variant maps to one
//! documented exit code ([`Error::exit_code`]), and none carries a PIN, a key or plaintext.

use std::path::PathBuf;
use thiserror::Error;

/// Exit codes, the same for every command (documented in the README).
pub mod exit {
    pub const OK: i32 = 0;
    pub const OTHER: i32 = 1;
    pub const USAGE: i32 = 2;
    pub const BAD_INPUT: i32 = 3;
    pub const NO_KEY: i32 = 4;
    pub const PIN: i32 = 5;
    pub const TOKEN: i32 = 6;
    pub const SIGNATURE: i32 = 7;
    pub const BATCH: i32 = 8;
}

/// What the token flags said about the user PIN, reported with PIN errors. PKCS#11 has no
/// counter of tries left: these flags are all a token tells.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PinFlags {
    pub count_low: bool,
    pub final_try: bool,
    pub locked: bool,
}

/// Every way an operation can fail.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum Error {
    #[error("{0}")]
    Usage(String),

    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },

    /// The input is not something we can read (not CMS, truncated, malformed).
    #[error("{0}")]
    BadInput(String),

    /// Well-formed input that uses something we do not implement.
    #[error("{0}")]
    Unsupported(String),

    /// The key matched but the message did not open: wrong key, damaged ciphertext, bad padding
    /// or a failed authentication tag. One message for all, on purpose (no padding oracle).
    #[error("decryption failed: the message is damaged or was not encrypted to this key")]
    DecryptFailed,

    /// None of the message's recipients is a certificate the token holds.
    #[error("this message is not encrypted to any key on the token")]
    NoMatchingRecipient {
        recipients: Vec<String>,
        certificates: Vec<String>,
    },

    /// `--key` or another selection named no usable key.
    #[error("{0}")]
    KeyNotFound(String),

    #[error("no PKCS#11 module found (tried: {})", tried.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", "))]
    ModuleNotFound { tried: Vec<PathBuf> },

    #[error("cannot load the PKCS#11 module {path}: {reason}")]
    ModuleLoad { path: PathBuf, reason: String },

    /// No token, or the wrong one, or ambiguous selection.
    #[error("{0}")]
    Token(String),

    /// A PKCS#11 call failed for a reason that is not about the PIN.
    #[error("the token reported {rv} in {function}")]
    Pkcs11 { function: String, rv: String },

    /// The smart-card service (PC/SC) or its readers: pcscd not running, no reader.
    #[error(transparent)]
    Reader(crate::readers::ReaderError),

    #[error("PIN incorrect")]
    PinIncorrect(PinFlags),

    #[error("the PIN is locked")]
    PinLocked,

    /// C_Login failed in a way that is not clearly about the PIN (e.g. CKR_GENERAL_ERROR).
    #[error("{0}")]
    LoginFailed(String),

    #[error("the token is at its final PIN try; refusing to use it")]
    FinalTryRefused,

    /// No PIN could be had: no source given and no terminal, an empty file, a missing variable.
    #[error("{0}")]
    PinUnavailable(String),

    #[error("verification failed: {0}")]
    SignatureInvalid(String),

    /// `doctor` found problems (each was reported with its fix).
    #[error("{0}")]
    Problems(String),

    /// A batch finished, and some of its items failed (each was reported).
    #[error("{0}")]
    BatchFailed(String),

    /// The session agent refused, failed or went away.
    #[error("{0}")]
    Agent(String),

    /// `agent status` found no agent running.
    #[error("no agent is running (socket {0})")]
    NoAgent(String),
}

impl Error {
    /// The documented exit code for this error.
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Usage(_) => exit::USAGE,
            Error::Io { .. } | Error::NoAgent(_) => exit::OTHER,
            Error::BadInput(_) | Error::Unsupported(_) | Error::DecryptFailed => exit::BAD_INPUT,
            Error::NoMatchingRecipient { .. } | Error::KeyNotFound(_) => exit::NO_KEY,
            Error::ModuleNotFound { .. }
            | Error::ModuleLoad { .. }
            | Error::Token(_)
            | Error::Agent(_)
            | Error::Pkcs11 { .. }
            | Error::Reader(_)
            | Error::Problems(_) => exit::TOKEN,
            Error::PinIncorrect(_)
            | Error::PinLocked
            | Error::FinalTryRefused
            | Error::LoginFailed(_)
            | Error::PinUnavailable(_) => exit::PIN,
            Error::SignatureInvalid(_) => exit::SIGNATURE,
            Error::BatchFailed(_) => exit::BATCH,
        }
    }

    /// Wraps an I/O error with what was being done.
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }
}

impl From<crate::cms::ber::BerError> for Error {
    fn from(e: crate::cms::ber::BerError) -> Self {
        Error::BadInput(format!("malformed CMS data: {e}"))
    }
}

/// Shorthand used across the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
