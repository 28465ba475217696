//! A digest computed on a worker thread while the caller reads and writes: hashing is the
//! largest cost of signing a large content, and with a second core it overlaps the reading,
//! line-ending work and writing. One core, or no thread to be had: hashed in place.

use super::digest::Hasher;
use crate::error::{Error, Result};
use crate::keyops::HashAlg;
use std::io::{self, Write};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::thread::JoinHandle;

/// Bytes handed over at a time.
const PIECE: usize = 256 * 1024;
/// Pieces in flight (and buffers allocated) at most.
const PIECES: usize = 4;

/// A running digest, fed through [`Write`]; [`DigestPipe::finish`] gives it.
pub struct DigestPipe {
    engine: Engine,
    buf: Vec<u8>,
}

enum Engine {
    Here(Hasher),
    Worker(Pipeline),
}

/// The worker's ends: full buffers go over on `work`, hashed ones come back on `back`.
struct Pipeline {
    work: SyncSender<Vec<u8>>,
    back: Receiver<Vec<u8>>,
    unallocated: usize,
    handle: JoinHandle<Hasher>,
}

fn lost() -> io::Error {
    io::Error::other("the digest worker thread stopped")
}

impl DigestPipe {
    pub fn new(alg: HashAlg) -> Self {
        let hasher = Hasher::new(alg);
        let two_cores = std::thread::available_parallelism().is_ok_and(|n| n.get() >= 2);
        let engine = match two_cores.then(|| Pipeline::start(hasher.clone())).flatten() {
            Some(p) => Engine::Worker(p),
            None => Engine::Here(hasher),
        };
        DigestPipe {
            engine,
            buf: Vec::with_capacity(PIECE),
        }
    }

    /// Hands the buffer over (or hashes it here).
    fn flush_buf(&mut self) -> io::Result<()> {
        match &mut self.engine {
            Engine::Here(h) => {
                h.update(&self.buf);
                self.buf.clear();
            }
            Engine::Worker(p) => {
                let next = if p.unallocated > 0 {
                    p.unallocated -= 1;
                    Vec::with_capacity(PIECE)
                } else {
                    p.back.recv().map_err(|_| lost())?
                };
                let full = std::mem::replace(&mut self.buf, next);
                p.work.send(full).map_err(|_| lost())?;
                self.buf.clear();
            }
        }
        Ok(())
    }

    /// The digest of everything written.
    pub fn finish(mut self) -> Result<Vec<u8>> {
        let err = |e| Error::io("cannot hash the content", e);
        self.flush_buf().map_err(err)?;
        let hasher = match self.engine {
            Engine::Here(h) => h,
            Engine::Worker(p) => {
                drop(p.work);
                p.handle.join().map_err(|_| err(lost()))?
            }
        };
        Ok(hasher.finish())
    }
}

impl Pipeline {
    fn start(mut hasher: Hasher) -> Option<Pipeline> {
        let (work, work_rx) = sync_channel::<Vec<u8>>(PIECES);
        let (back_tx, back) = sync_channel::<Vec<u8>>(PIECES);
        let handle = std::thread::Builder::new()
            .name("digest".into())
            .spawn(move || {
                for buf in work_rx {
                    hasher.update(&buf);
                    // The writer may be gone (an error upstream): the digest is still whole.
                    let _ = back_tx.send(buf);
                }
                hasher
            })
            .ok()?;
        Some(Pipeline {
            work,
            back,
            unallocated: PIECES,
            handle,
        })
    }
}

impl Write for DigestPipe {
    fn write(&mut self, mut data: &[u8]) -> io::Result<usize> {
        let n = data.len();
        while !data.is_empty() {
            let take = (PIECE - self.buf.len()).min(data.len());
            self.buf.extend_from_slice(&data[..take]);
            data = &data[take..];
            if self.buf.len() == PIECE {
                self.flush_buf()?;
            }
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::cms::digest::digest;

    #[test]
    fn the_pipe_gives_the_digest_of_everything_written() {
        for len in [
            0usize,
            1,
            PIECE - 1,
            PIECE,
            PIECE + 1,
            PIECE * PIECES * 3 + 77,
        ] {
            let data: Vec<u8> = (0..len).map(|i| (i % 253) as u8).collect();
            for alg in [HashAlg::Sha256, HashAlg::Sha512] {
                let mut pipe = DigestPipe::new(alg);
                for piece in data.chunks(100_003) {
                    pipe.write_all(piece).unwrap();
                }
                assert_eq!(pipe.finish().unwrap(), digest(alg, &[&data]), "{len}");
            }
        }
    }
}
