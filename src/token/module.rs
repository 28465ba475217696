//! Finding and loading the PKCS#11 module: an explicit path, else the usual places of p11-kit's
//! proxy, OpenSC and SoftHSM2 on Linux and macOS, in that order.

use crate::error::{Error, Result};
use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use std::path::{Path, PathBuf};

/// Where we look when no module is named, most general first: p11-kit's proxy sees every module
/// the system registered, OpenSC drives real cards, SoftHSM2 is the software token.
const CANDIDATES: &[&str] = &[
    "/usr/lib/x86_64-linux-gnu/p11-kit-proxy.so",
    "/usr/lib/aarch64-linux-gnu/p11-kit-proxy.so",
    "/usr/lib64/p11-kit-proxy.so",
    "/usr/lib/p11-kit-proxy.so",
    "/opt/homebrew/lib/p11-kit-proxy.so",
    "/usr/local/lib/p11-kit-proxy.so",
    "/usr/lib/x86_64-linux-gnu/opensc-pkcs11.so",
    "/usr/lib/aarch64-linux-gnu/opensc-pkcs11.so",
    "/usr/lib64/opensc-pkcs11.so",
    "/usr/lib/opensc-pkcs11.so",
    "/Library/OpenSC/lib/opensc-pkcs11.so",
    "/opt/homebrew/lib/opensc-pkcs11.so",
    "/usr/local/lib/opensc-pkcs11.so",
    "/usr/lib/softhsm/libsofthsm2.so",
    "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
    "/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so",
    "/opt/homebrew/lib/softhsm/libsofthsm2.so",
    "/usr/local/lib/softhsm/libsofthsm2.so",
];

/// The module to load: `explicit` when given (flag or `P11SMIME_MODULE`), else the first
/// candidate that exists.
pub fn resolve(explicit: Option<&Path>) -> Result<PathBuf> {
    if let Some(path) = explicit {
        if path.exists() {
            return Ok(path.to_path_buf());
        }
        return Err(Error::ModuleNotFound {
            tried: vec![path.to_path_buf()],
        });
    }
    CANDIDATES
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .ok_or_else(|| Error::ModuleNotFound {
            tried: CANDIDATES.iter().map(PathBuf::from).collect(),
        })
}

/// Loads and initialises the module at `path`.
pub fn load(path: &Path) -> Result<Pkcs11> {
    let load_err = |reason: String| Error::ModuleLoad {
        path: path.to_path_buf(),
        reason,
    };
    let ctx = Pkcs11::new(path).map_err(|e| load_err(e.to_string()))?;
    match ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)) {
        Ok(())
        | Err(cryptoki::error::Error::Pkcs11(
            cryptoki::error::RvError::CryptokiAlreadyInitialized,
            _,
        )) => Ok(ctx),
        Err(e) => Err(load_err(format!(
            "C_Initialize failed: {}",
            short_error(&e)
        ))),
    }
}

/// A PKCS#11 error as `CKR_NAME in C_Function`, without the library's long prose.
pub fn short_error(e: &cryptoki::error::Error) -> String {
    match e {
        cryptoki::error::Error::Pkcs11(rv, f) => format!("{} in {}", rv_name(rv), fn_name(f)),
        other => other.to_string(),
    }
}

/// `CKR_PIN_INCORRECT` from `RvError::PinIncorrect`.
pub fn rv_name(rv: &cryptoki::error::RvError) -> String {
    let camel = format!("{rv:?}");
    let mut out = String::from("CKR");
    for c in camel.chars() {
        if c.is_ascii_uppercase() {
            out.push('_');
        }
        out.push(c.to_ascii_uppercase());
    }
    out
}

/// `C_Login` from `Function::Login`.
pub fn fn_name(f: &cryptoki::context::Function) -> String {
    format!("C_{f:?}")
}
