//! A secret kept for a long time (the signing PIN with `--cache-signing-pin`): in memory locked
//! against swapping where the system allows it, and zeroized before it is freed.

use secrecy::SecretString;
use zeroize::Zeroize;

/// Bytes locked in RAM for their lifetime and zeroized on drop.
pub struct LockedSecret {
    bytes: Box<[u8]>,
    lock: Option<region::LockGuard>,
}

impl LockedSecret {
    /// Takes the secret over. The copy inside `secret` is zeroized when it is dropped here.
    /// Locking can fail (RLIMIT_MEMLOCK); the secret is then kept anyway, and `locked()` says so.
    pub fn new(secret: SecretString) -> Self {
        use secrecy::ExposeSecret;
        let bytes: Box<[u8]> = secret.expose_secret().as_bytes().into();
        let lock = if bytes.is_empty() {
            None
        } else {
            region::lock(bytes.as_ptr(), bytes.len()).ok()
        };
        LockedSecret { bytes, lock }
    }

    /// Whether the pages holding it are locked in RAM.
    pub fn locked(&self) -> bool {
        self.lock.is_some()
    }

    /// A short-lived copy for one use (zeroized when dropped).
    pub fn to_secret(&self) -> SecretString {
        SecretString::from(String::from_utf8_lossy(&self.bytes).into_owned())
    }
}

impl Drop for LockedSecret {
    fn drop(&mut self) {
        self.bytes.zeroize();
        // Unlocked only after the zeroizing, then freed.
        self.lock.take();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;

    #[test]
    fn keeps_the_secret_and_locks_it() {
        let s = LockedSecret::new(SecretString::from("123456".to_string()));
        assert_eq!(s.to_secret().expose_secret(), "123456");
        // One small page is within every default RLIMIT_MEMLOCK (64 KiB or more).
        assert!(s.locked());
    }
}
