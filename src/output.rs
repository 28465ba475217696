//! Writing decrypted output safely: a 0600 temporary file beside the target, renamed into place
//! only when the whole operation succeeded. On any failure (or a panic, or an early return) the
//! temporary file is removed when dropped, so no partial plaintext is left on disk.
//!
//! A signal (Ctrl-C, `kill`, a closed terminal) ends the process without running destructors,
//! so every temporary file is also listed in a process-wide registry while it is being written;
//! [`remove_on_signals`] starts a thread that removes the listed files on SIGINT, SIGTERM or
//! SIGHUP before the process ends as that signal would have ended it.

use crate::error::{Error, Result};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, OnceLock};

/// The temporary files being written now, by registration number.
static LIVE: Mutex<Vec<(u64, PathBuf)>> = Mutex::new(Vec::new());
/// The next registration number (0 means "not registered").
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

fn live() -> MutexGuard<'static, Vec<(u64, PathBuf)>> {
    // A panic while the list was held leaves it consistent: every change is one push or retain.
    LIVE.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A temporary file's place in [`LIVE`]; taken out when dropped.
struct Registration(u64);

impl Registration {
    fn forget_locked(&mut self, live: &mut Vec<(u64, PathBuf)>) {
        let id = std::mem::replace(&mut self.0, 0);
        live.retain(|(i, _)| *i != id);
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        if self.0 != 0 {
            self.forget_locked(&mut live());
        }
    }
}

/// Removes every temporary file still being written when the process gets SIGINT, SIGTERM or
/// SIGHUP, then ends the process as the signal's default action would (so a shell sees "killed
/// by SIGINT", exit status 130, and restores a terminal left without echo by a PIN prompt).
/// Call it before the first [`AtomicFile`] is created; later calls do nothing. (The binary
/// calls it only for commands that write files: a thread costs a cold start ~0.1 ms.)
/// Not for a process that handles these signals itself (the session agent).
pub fn remove_on_signals() -> Result<()> {
    static STARTED: OnceLock<std::result::Result<(), String>> = OnceLock::new();
    STARTED
        .get_or_init(|| start_signal_watch().map_err(|e| e.to_string()))
        .clone()
        .map_err(|e| Error::io("cannot watch for signals", std::io::Error::other(e)))
}

fn start_signal_watch() -> std::io::Result<()> {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP])?;
    std::thread::Builder::new()
        .name("output-cleanup".into())
        .spawn(move || {
            if let Some(signal) = signals.forever().next() {
                // The list stays locked from here on: no file is created or committed while
                // the others are removed, and none after.
                let files = live();
                for (_, path) in files.iter() {
                    let _ = std::fs::remove_file(path);
                }
                let _ = signal_hook::low_level::emulate_default_handler(signal);
                // Only when the default action did not end the process.
                signal_hook::low_level::exit(128 + signal);
            }
        })?;
    Ok(())
}

/// A file that appears at its target path only on [`AtomicFile::commit`].
pub struct AtomicFile {
    // Dropped in this order: the temporary file is removed, then unregistered.
    writer: BufWriter<tempfile::NamedTempFile>,
    target: PathBuf,
    registration: Registration,
}

impl AtomicFile {
    /// Creates the temporary file (mode 0600) in the target's directory.
    pub fn create(target: &Path) -> Result<Self> {
        let dir = match target.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        Self::create_in(dir, target)
    }

    /// Creates the temporary file in `dir` (on the target's file system), as Maildir delivery
    /// wants it: written in tmp/, renamed into cur/ or new/ when complete.
    pub fn create_in(dir: &Path, target: &Path) -> Result<Self> {
        // Held while the file is made, so a signal cannot fall between its creation and its
        // registration.
        let mut files = live();
        let tmp = tempfile::Builder::new()
            .prefix(".p11smime-")
            .suffix(".part")
            .permissions(std::fs::Permissions::from_mode(0o600))
            .tempfile_in(dir)
            .map_err(|e| Error::io(format!("cannot create a file in {}", dir.display()), e))?;
        let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        files.push((id, tmp.path().to_path_buf()));
        drop(files);
        Ok(AtomicFile {
            writer: BufWriter::new(tmp),
            target: target.to_path_buf(),
            registration: Registration(id),
        })
    }

    /// Flushes and renames the file into place. Not synced to the disk on its own (openssl and
    /// gpg do not either; a sync costs more than the decryption of a small message): a batch
    /// syncs its file system once at the end ([`sync_filesystem`]).
    pub fn commit(self) -> Result<()> {
        let AtomicFile {
            writer,
            target,
            mut registration,
        } = self;
        let tmp = writer
            .into_inner()
            .map_err(|e| Error::io("cannot write the output", e.into_error()))?;
        // Renamed and unregistered under the lock: a signal either finds the temporary file and
        // removes it before the rename, or finds it gone and the output complete.
        let mut files = live();
        let persisted = tmp.persist(&target);
        if persisted.is_ok() {
            registration.forget_locked(&mut files);
        }
        drop(files);
        persisted
            .map(|_| ())
            .map_err(|e| Error::io(format!("cannot create {}", target.display()), e.error))
    }

    /// The temporary file's path, while it is being written.
    pub fn temp_path(&self) -> &Path {
        self.writer.get_ref().path()
    }
}

impl Write for AtomicFile {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.writer.write(buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.writer.flush()
    }
}

use std::os::unix::fs::PermissionsExt;

/// Waits until everything written to the file system holding `dir` is on the disk: once for a
/// whole batch, instead of once per file.
pub fn sync_filesystem(dir: &Path) -> Result<()> {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
        let d = std::fs::File::open(dir)
            .map_err(|e| Error::io(format!("cannot open {}", dir.display()), e))?;
        nix::unistd::syncfs(&d)
            .map_err(|e| Error::io(format!("cannot sync {}", dir.display()), e.into()))
    }
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    {
        let _ = dir;
        nix::unistd::sync();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn appears_only_on_commit_with_mode_0600() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("out.eml");
        let mut f = AtomicFile::create(&target).unwrap();
        f.write_all(b"secret").unwrap();
        assert!(!target.exists());
        f.commit().unwrap();
        assert_eq!(std::fs::read(&target).unwrap(), b"secret");
        let mode = std::fs::metadata(&target).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn dropped_without_commit_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("out.eml");
        let mut f = AtomicFile::create(&target).unwrap();
        f.write_all(b"partial").unwrap();
        drop(f);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    fn registered(path: &Path) -> bool {
        live().iter().any(|(_, p)| p == path)
    }

    /// What the signal watcher would remove: the file while it is written, nothing after.
    #[test]
    fn registered_while_written_only() {
        let dir = tempfile::tempdir().unwrap();
        let f = AtomicFile::create(&dir.path().join("a.eml")).unwrap();
        let tmp = f.temp_path().to_path_buf();
        assert!(tmp.exists() && registered(&tmp));
        f.commit().unwrap();
        assert!(!registered(&tmp));

        let f = AtomicFile::create(&dir.path().join("b.eml")).unwrap();
        let tmp = f.temp_path().to_path_buf();
        assert!(registered(&tmp));
        drop(f);
        assert!(!registered(&tmp) && !tmp.exists());
    }
}
