//! PIN sources and the callbacks through which the library asks the user.
//!
//! The library never prompts by itself: a terminal prompt is one implementation of [`Callbacks`]
//! (in the binary), a fixed answer is another (in tests). A PIN is read at most once per run, held
//! as a [`SecretString`] (zeroized on drop) and never formatted into a message.

use crate::error::{Error, Result};
use secrecy::SecretString;
use std::io::{BufRead, Read};
use std::path::PathBuf;

/// Where the PIN comes from (`--pin SOURCE`). There is deliberately no form that takes the PIN
/// itself: it would show in `ps` and shell history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PinSource {
    /// Ask through [`Callbacks::request_pin`] (a terminal prompt in the CLI).
    Prompt,
    /// An environment variable's value.
    Env(String),
    /// The first line of a file (one trailing newline removed).
    File(PathBuf),
    /// Read from an inherited file descriptor, e.g. `fd:0` for stdin as mutt passes it.
    Fd(i32),
    /// The token's protected authentication path (PIN pad); no PIN passes through us.
    Pinpad,
}

/// The forms `--pin` accepts, for messages.
pub const PIN_FORMS: &str = "prompt, env:VAR, file:PATH, fd:N, pinpad";

impl std::str::FromStr for PinSource {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        // The value is never echoed: a user may have typed the PIN itself here.
        let usage = || {
            Error::Usage(format!(
                "--pin takes where the PIN comes from, not the PIN: one of {PIN_FORMS}"
            ))
        };
        match s.split_once(':') {
            None if s == "prompt" => Ok(PinSource::Prompt),
            None if s == "pinpad" => Ok(PinSource::Pinpad),
            Some(("env", var)) if !var.is_empty() => Ok(PinSource::Env(var.to_string())),
            Some(("file", path)) if !path.is_empty() => Ok(PinSource::File(path.into())),
            Some(("fd", n)) => n.parse().map(PinSource::Fd).map_err(|_| usage()),
            _ => Err(usage()),
        }
    }
}

/// What the library may ask of the user. Every method has a non-interactive answer. `Sync`,
/// so that a batch can decrypt on several token sessions at once.
pub trait Callbacks: Sync {
    /// Asks for a PIN; `None` when nobody can answer (no terminal).
    fn request_pin(&self, prompt: &str) -> Option<SecretString>;

    /// Asks a yes/no question; `None` when nobody can answer.
    fn confirm(&self, question: &str) -> Option<bool>;

    /// Tells the user something they should know (a low PIN count, a weak algorithm).
    fn warn(&self, message: &str);

    /// Says what is being tried, for `--verbose`; silent by default.
    fn verbose(&self, _message: &str) {}
}

/// Callbacks for runs with nobody to ask: every question gets "no answer", warnings go nowhere.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoCallbacks;

impl Callbacks for NoCallbacks {
    fn request_pin(&self, _prompt: &str) -> Option<SecretString> {
        None
    }
    fn confirm(&self, _question: &str) -> Option<bool> {
        None
    }
    fn warn(&self, _message: &str) {}
}

/// Reads a PIN from a non-interactive source. `Prompt` and `Pinpad` are handled by the caller.
pub fn read_pin(source: &PinSource) -> Result<SecretString> {
    let pin = match source {
        PinSource::Env(var) => std::env::var(var).map_err(|_| {
            Error::PinUnavailable(format!(
                "the environment variable {var} (named by --pin env:{var}) is not set"
            ))
        })?,
        PinSource::File(path) => {
            let text = std::fs::read(path).map_err(|e| {
                Error::PinUnavailable(format!("cannot read the PIN file {}: {e}", path.display()))
            })?;
            first_line(text)?
        }
        PinSource::Fd(fd) => return read_fd_once(*fd),
        PinSource::Prompt | PinSource::Pinpad => {
            return Err(Error::PinUnavailable(
                "this PIN source is interactive".into(),
            ));
        }
    };
    if pin.is_empty() {
        return Err(Error::PinUnavailable(
            "the PIN source gave an empty PIN".into(),
        ));
    }
    Ok(SecretString::from(pin))
}

/// The PIN a descriptor gave, kept for this run: a descriptor can be read only once, and one
/// run may need the PIN twice (to start the session agent, then for a signing key that wants
/// it again). Dropped, and so zeroized, by [`forget_pins`].
static FD_PIN: std::sync::Mutex<Option<(i32, SecretString)>> = std::sync::Mutex::new(None);

fn read_fd_once(fd: i32) -> Result<SecretString> {
    let mut kept = FD_PIN
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some((kept_fd, pin)) = kept.as_ref()
        && *kept_fd == fd
    {
        return Ok(pin.clone());
    }
    let pin = first_line(read_fd(fd)?)?;
    if pin.is_empty() {
        return Err(Error::PinUnavailable(
            "the PIN source gave an empty PIN".into(),
        ));
    }
    let pin = SecretString::from(pin);
    *kept = Some((fd, pin.clone()));
    Ok(pin)
}

/// Zeroizes the PIN kept from a descriptor; the binary calls it before it exits.
pub fn forget_pins() {
    let mut kept = FD_PIN
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    *kept = None;
}

/// The first line without its newline; the buffer is zeroized.
fn first_line(bytes: Vec<u8>) -> Result<String> {
    let bytes = zeroize::Zeroizing::new(bytes);
    let line = bytes.split(|b| *b == b'\n').next().unwrap_or_default();
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    String::from_utf8(line.to_vec())
        .map_err(|_| Error::PinUnavailable("the PIN is not valid UTF-8".into()))
}

/// Reads one line from an inherited descriptor. Stdin goes through `std::io::stdin()`, so what
/// follows the PIN line stays readable as the message; other descriptors through `/dev/fd/N`
/// (Linux and macOS), which keeps the library free of `unsafe`.
fn read_fd(fd: i32) -> Result<Vec<u8>> {
    let unavailable =
        |e: std::io::Error| Error::PinUnavailable(format!("cannot read the PIN from fd {fd}: {e}"));
    if fd < 0 {
        return Err(Error::Usage(format!("fd:{fd} is not a file descriptor")));
    }
    let mut line = Vec::new();
    if fd == 0 {
        std::io::stdin()
            .lock()
            .take(MAX_PIN_LINE)
            .read_until(b'\n', &mut line)
            .map_err(unavailable)?;
    } else {
        let file = std::fs::File::open(format!("/dev/fd/{fd}")).map_err(unavailable)?;
        std::io::BufReader::new(file)
            .take(MAX_PIN_LINE)
            .read_until(b'\n', &mut line)
            .map_err(unavailable)?;
    }
    Ok(line)
}

/// Longest PIN line read from a descriptor; PKCS#11 PINs are far shorter.
const MAX_PIN_LINE: u64 = 1024;

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;

    #[test]
    fn sources_parse_and_the_pin_itself_is_refused() {
        assert_eq!("prompt".parse::<PinSource>().unwrap(), PinSource::Prompt);
        assert_eq!(
            "env:X".parse::<PinSource>().unwrap(),
            PinSource::Env("X".into())
        );
        assert_eq!("fd:0".parse::<PinSource>().unwrap(), PinSource::Fd(0));
        assert_eq!(
            "file:/p".parse::<PinSource>().unwrap(),
            PinSource::File("/p".into())
        );
        let err = "123456".parse::<PinSource>().unwrap_err().to_string();
        assert!(!err.contains("123456"), "{err}");
        assert!(matches!(
            "pin:1234".parse::<PinSource>(),
            Err(Error::Usage(_))
        ));
    }

    #[test]
    fn file_source_strips_one_newline() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pin");
        std::fs::write(&path, "4321\r\n").unwrap();
        let pin = read_pin(&PinSource::File(path.clone())).unwrap();
        assert_eq!(pin.expose_secret(), "4321");
        std::fs::write(&path, "").unwrap();
        assert!(matches!(
            read_pin(&PinSource::File(path)),
            Err(Error::PinUnavailable(_))
        ));
    }
}
