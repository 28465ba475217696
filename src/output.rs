//! Writing decrypted output safely: a 0600 temporary file beside the target, renamed into place
//! only when the whole operation succeeded. On any failure (or a panic, or an early return) the
//! temporary file is removed when dropped, so no partial plaintext is left on disk.

use crate::error::{Error, Result};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

/// A file that appears at its target path only on [`AtomicFile::commit`].
pub struct AtomicFile {
    writer: BufWriter<tempfile::NamedTempFile>,
    target: PathBuf,
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
        let tmp = tempfile::Builder::new()
            .prefix(".p11smime-")
            .suffix(".part")
            .permissions(std::fs::Permissions::from_mode(0o600))
            .tempfile_in(dir)
            .map_err(|e| Error::io(format!("cannot create a file in {}", dir.display()), e))?;
        Ok(AtomicFile {
            writer: BufWriter::new(tmp),
            target: target.to_path_buf(),
        })
    }

    /// Flushes, syncs and renames the file into place.
    pub fn commit(self) -> Result<()> {
        let target = self.target;
        let tmp = self
            .writer
            .into_inner()
            .map_err(|e| Error::io("cannot write the output", e.into_error()))?;
        tmp.as_file()
            .sync_all()
            .map_err(|e| Error::io("cannot write the output", e))?;
        tmp.persist(&target)
            .map_err(|e| Error::io(format!("cannot create {}", target.display()), e.error))?;
        Ok(())
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
}
