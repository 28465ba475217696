//! GHASH (the authenticator of AES-GCM) computed with the `polyval` crate.
//!
//! `polyval` 0.7 hashes four blocks per reduction with CLMUL (about three times the speed of
//! `ghash` 0.5 here, which is what bounds large GCM messages). GHASH is POLYVAL on byte-reversed
//! blocks with the key multiplied by x (RFC 8452, appendix A); the reversal is done here a buffer
//! at a time, not a block per call as `ghash` does, so it costs a fraction of the hashing.
//!
//! [`Hasher`] moves the hashing of a long content to a second thread, beside the keystream on
//! the caller's: GHASH and AES-CTR cost about the same, so on two cores a large message takes
//! the time of one of them. The ciphertext goes over in copies from a pool of four 256 KiB
//! buffers, so memory stays bounded whatever the size.

use crate::error::{Error, Result};
use polyval::Polyval;
use polyval::universal_hash::UniversalHash;
use std::sync::mpsc::{Receiver, SyncSender, channel, sync_channel};
use std::thread::JoinHandle;
use zeroize::Zeroizing;

/// Bytes reversed per batch: fits in L2 beside the data being hashed.
const BATCH: usize = 16 * 1024;

/// GHASH over a stream of whole blocks. Callers pad: every `update` takes a multiple of 16
/// bytes, except the last, which is zero-padded.
#[derive(Clone)]
pub struct Ghash {
    polyval: Polyval,
    scratch: Zeroizing<Vec<u8>>,
}

/// `mulX_POLYVAL`: doubling in POLYVAL's field (RFC 8452, appendix A).
fn mulx(block: [u8; 16]) -> [u8; 16] {
    let v = u128::from_le_bytes(block);
    let hi = v >> 127;
    ((v << 1) ^ hi ^ (hi << 127) ^ (hi << 126) ^ (hi << 121)).to_le_bytes()
}

impl Ghash {
    /// GHASH keyed with `h` = E(K, 0^128).
    pub fn new(h: &[u8; 16]) -> Self {
        let mut key = Zeroizing::new(*h);
        key.reverse();
        let key = Zeroizing::new(mulx(*key));
        Ghash {
            polyval: Polyval::new(&(*key).into()),
            scratch: Zeroizing::new(vec![0u8; BATCH]),
        }
    }

    /// Hashes `data`, zero-padded to a whole number of blocks.
    pub fn update_padded(&mut self, data: &[u8]) {
        for piece in data.chunks(BATCH) {
            let blocks = piece.len().div_ceil(16);
            let scratch = &mut self.scratch[..blocks * 16];
            for (out, block) in scratch.chunks_exact_mut(16).zip(piece.chunks(16)) {
                let mut b = [0u8; 16];
                b[..block.len()].copy_from_slice(block);
                out.copy_from_slice(&u128::from_be_bytes(b).to_le_bytes());
            }
            self.polyval.update_padded(scratch);
        }
    }

    /// Hashes `count` zero blocks (each leaves the sum multiplied by H).
    pub fn update_zero_blocks(&mut self, mut count: u64) {
        self.scratch.fill(0);
        while count > 0 {
            let n = count.min((BATCH / 16) as u64) as usize;
            self.polyval.update_padded(&self.scratch[..n * 16]);
            count -= n as u64;
        }
    }

    /// The GHASH value.
    pub fn finalize(self) -> [u8; 16] {
        let mut out: [u8; 16] = self.polyval.finalize().into();
        out.reverse();
        out
    }
}

/// Content hashed on the caller's thread before a worker is worth its start.
const INLINE_LIMIT: u64 = 1 << 20;
/// Bytes per hand-over to the worker, and how many such buffers exist at most.
const PIECE: usize = 256 * 1024;
const PIECES: usize = 4;

/// GHASH over whole blocks, on this thread for a short content, on a worker beyond
/// [`INLINE_LIMIT`] when the machine has a second core.
pub enum Hasher {
    /// `inline_only`: no second core, or no thread to be had.
    Here {
        ghash: Ghash,
        hashed: u64,
        inline_only: bool,
    },
    Worker(Worker),
}

/// The worker's ends: buffers go over full on `work` and come back empty on `free`.
pub struct Worker {
    work: SyncSender<Vec<u8>>,
    free: Receiver<Vec<u8>>,
    unallocated: usize,
    handle: JoinHandle<Ghash>,
    /// The worker is gone (it cannot end early unless it panicked): the tag cannot be checked.
    lost: bool,
}

impl Hasher {
    pub fn new(h: &[u8; 16]) -> Self {
        Hasher::Here {
            ghash: Ghash::new(h),
            hashed: 0,
            inline_only: !two_cores(),
        }
    }

    /// Hashes `blocks`, a whole number of 16-byte blocks.
    pub fn update_blocks(&mut self, blocks: &[u8]) {
        debug_assert_eq!(blocks.len() % 16, 0);
        if let Hasher::Here {
            ghash,
            hashed,
            inline_only,
        } = self
        {
            if *inline_only || *hashed < INLINE_LIMIT {
                ghash.update_padded(blocks);
                *hashed += blocks.len() as u64;
                return;
            }
            match Worker::start(ghash) {
                Some(worker) => *self = Hasher::Worker(worker),
                None => *inline_only = true,
            }
        }
        match self {
            Hasher::Worker(worker) => worker.send(blocks),
            Hasher::Here { ghash, .. } => ghash.update_padded(blocks),
        }
    }

    /// The GHASH state after every block sent: waits for the worker.
    pub fn finish(self) -> Result<Ghash> {
        match self {
            Hasher::Here { ghash, .. } => Ok(ghash),
            Hasher::Worker(worker) => {
                drop(worker.work);
                match worker.handle.join() {
                    Ok(ghash) if !worker.lost => Ok(ghash),
                    _ => Err(Error::DecryptFailed),
                }
            }
        }
    }
}

impl Worker {
    /// A thread that carries on from `ghash`'s state; `None` when no thread can be had.
    fn start(ghash: &Ghash) -> Option<Worker> {
        let mut ghash = ghash.clone();
        let (work, work_rx) = sync_channel::<Vec<u8>>(PIECES);
        let (free_tx, free) = channel::<Vec<u8>>();
        let handle = std::thread::Builder::new()
            .name("ghash".into())
            .spawn(move || {
                for buf in work_rx {
                    ghash.update_padded(&buf);
                    // The caller may have finished; a buffer nobody takes back is dropped.
                    let _ = free_tx.send(buf);
                }
                ghash
            })
            .ok()?;
        Some(Worker {
            work,
            free,
            unallocated: PIECES,
            handle,
            lost: false,
        })
    }

    fn send(&mut self, blocks: &[u8]) {
        for piece in blocks.chunks(PIECE) {
            let buf = if self.unallocated > 0 {
                self.unallocated -= 1;
                Some(Vec::with_capacity(PIECE))
            } else {
                self.free.recv().ok()
            };
            let Some(mut buf) = buf else {
                self.lost = true;
                return;
            };
            buf.clear();
            buf.extend_from_slice(piece);
            if self.work.send(buf).is_err() {
                self.lost = true;
                return;
            }
        }
    }
}

fn two_cores() -> bool {
    std::thread::available_parallelism().is_ok_and(|n| n.get() >= 2)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// NIST GCM test case 2 (AES-128, zero key, one zero block): H and GHASH(C || lengths).
    #[test]
    fn matches_the_nist_vector() {
        let h: [u8; 16] = hex::decode("66e94bd4ef8a2c3b884cfa59ca342b2e")
            .unwrap()
            .try_into()
            .unwrap();
        let mut g = Ghash::new(&h);
        g.update_padded(&hex::decode("0388dace60b6a392f328c2b971b2fe78").unwrap());
        g.update_padded(&hex::decode("00000000000000000000000000000080").unwrap());
        assert_eq!(
            hex::encode(g.finalize()),
            "f38cbb1ad69223dcc3457ae5b6b0f885"
        );
    }

    /// Pieces of any size that are whole blocks hash like one call; a short last piece is padded.
    #[test]
    fn pieces_and_padding() {
        let h = [0x5au8; 16];
        let data: Vec<u8> = (0..100_000u32).map(|i| ((i * 7919) >> 3) as u8).collect();
        let mut whole = Ghash::new(&h);
        whole.update_padded(&data);
        let mut split = Ghash::new(&h);
        split.update_padded(&data[..16 * 1000]);
        split.update_padded(&data[16 * 1000..16 * 5000]);
        split.update_padded(&data[16 * 5000..]);
        assert_eq!(whole.finalize(), split.finalize());
        let mut zeros = Ghash::new(&h);
        zeros.update_padded(&[1, 2, 3]);
        zeros.update_zero_blocks(2000);
        let mut padded = Ghash::new(&h);
        let mut manual = vec![0u8; 16 * 2001];
        manual[..3].copy_from_slice(&[1, 2, 3]);
        padded.update_padded(&manual);
        assert_eq!(zeros.finalize(), padded.finalize());
    }

    /// Past the inline limit the worker carries on from the same state: the same value as one
    /// thread, for pieces of odd sizes and larger than a hand-over buffer.
    #[test]
    fn the_worker_gives_the_same_value() {
        let h = [0xc3u8; 16];
        let data: Vec<u8> = (0..(5u32 << 20) / 4)
            .flat_map(|i| i.wrapping_mul(2_654_435_761).to_le_bytes())
            .collect();
        let mut one = Ghash::new(&h);
        one.update_padded(&data);
        let mut hasher = Hasher::new(&h);
        let mut at = 0;
        for (n, size) in [16usize, 700 * 16, 1 << 20, 3 * PIECE + 48, 16 * 16_411]
            .iter()
            .cycle()
            .enumerate()
        {
            let end = (at + size).min(data.len());
            hasher.update_blocks(&data[at..end]);
            at = end;
            if at == data.len() {
                assert!(n > 4, "every piece size was used");
                break;
            }
        }
        assert!(matches!(hasher, Hasher::Worker(_)) || !two_cores());
        assert_eq!(hasher.finish().unwrap().finalize(), one.finalize());
    }
}
