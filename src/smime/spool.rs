//! Where plaintext waits until the whole message is known to be good, when the reader would
//! otherwise see it at once (stdout): an AES-GCM tag is checked only at the end of the content,
//! and a CBC message's padding and structure only at its end too.
//!
//! Up to [`IN_MEMORY`] bytes stay in zeroized memory; beyond that they go to an anonymous 0600
//! temporary file (`tempfile::tempfile`: unlinked from the start, so it disappears when closed,
//! also on a crash or Ctrl-C, and no other program can open it by name).

use crate::error::{Error, Result};
use std::io::{Read, Seek, Write};
use zeroize::Zeroizing;

/// How much is held in memory before spilling to the temporary file.
pub const IN_MEMORY: usize = 4 << 20;

/// Where decrypted output goes.
pub enum Sink<'a> {
    /// Seen as it is written (stdout, a pipe to a mail client): the output is held back in a
    /// [`Spool`] until the message is complete and its tag or padding checked.
    Visible(&'a mut dyn Write),
    /// Discarded unless the whole command succeeds (a 0600 temporary file renamed into place
    /// at the end): written at once.
    Staged(&'a mut dyn Write),
}

/// Plaintext held back: memory first, then an anonymous temporary file.
pub struct Spool {
    memory: Zeroizing<Vec<u8>>,
    file: Option<std::fs::File>,
    len: u64,
}

impl Default for Spool {
    fn default() -> Self {
        Self::new()
    }
}

impl Spool {
    pub fn new() -> Self {
        Spool {
            memory: Zeroizing::new(Vec::new()),
            file: None,
            len: 0,
        }
    }

    /// Copies everything held to `out`, then forgets it.
    pub fn release(mut self, out: &mut dyn Write) -> Result<u64> {
        let write_err = |e| Error::io("cannot write the decrypted output", e);
        match self.file.as_mut() {
            None => out.write_all(&self.memory).map_err(write_err)?,
            Some(file) => {
                let spool_err = |e| Error::io("cannot read back the temporary spool file", e);
                file.flush().map_err(spool_err)?;
                file.rewind().map_err(spool_err)?;
                let mut buf = Zeroizing::new(vec![0u8; 256 << 10]);
                loop {
                    let n = file.read(&mut buf).map_err(spool_err)?;
                    if n == 0 {
                        break;
                    }
                    out.write_all(&buf[..n]).map_err(write_err)?;
                }
            }
        }
        Ok(self.len)
    }
}

impl Write for Spool {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        if self.file.is_none() && self.memory.len() + data.len() > IN_MEMORY {
            let mut file = tempfile::tempfile()?;
            file.write_all(&self.memory)?;
            self.memory = Zeroizing::new(Vec::new());
            self.file = Some(file);
        }
        match self.file.as_mut() {
            Some(file) => file.write_all(data)?,
            None => self.memory.extend_from_slice(data),
        }
        self.len += data.len() as u64;
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self.file.as_mut() {
            Some(f) => f.flush(),
            None => Ok(()),
        }
    }
}

/// An input read from a pipe (stdin) for a command that reads a large input twice.
pub enum Held {
    /// All of it, shorter than the threshold.
    Memory(Vec<u8>),
    /// All of it in an anonymous 0600 temporary file (as [`Spool`]'s), to be read from there.
    File(std::fs::File),
}

/// Reads `reader` whole: into memory when shorter than `threshold`, else into an anonymous
/// temporary file, so that a two-pass command (`encrypt`, `sign`) can read it again.
pub fn hold(reader: &mut dyn Read, threshold: u64) -> Result<Held> {
    let read_err = |e| Error::io("cannot read the input", e);
    let mut head = Vec::new();
    reader
        .take(threshold)
        .read_to_end(&mut head)
        .map_err(read_err)?;
    if (head.len() as u64) < threshold {
        return Ok(Held::Memory(head));
    }
    let spool_err = |e| Error::io("cannot write the temporary spool file", e);
    let mut file = tempfile::tempfile().map_err(spool_err)?;
    file.write_all(&head).map_err(spool_err)?;
    drop(head);
    std::io::copy(reader, &mut file).map_err(read_err)?;
    Ok(Held::File(file))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn small_and_large_outputs_come_back_whole() {
        for len in [0usize, 10, IN_MEMORY, IN_MEMORY + 1, 3 * IN_MEMORY + 77] {
            let data: Vec<u8> = (0..len).map(|i| (i % 241) as u8).collect();
            let mut spool = Spool::new();
            for piece in data.chunks(100_003) {
                spool.write_all(piece).unwrap();
            }
            assert_eq!(spool.file.is_some(), len > IN_MEMORY);
            let mut out = Vec::new();
            assert_eq!(spool.release(&mut out).unwrap(), len as u64);
            assert_eq!(out, data);
        }
    }
}
