//! AES-GCM in pieces, both directions, for AuthEnvelopedData of any size.
//!
//! Written from the RustCrypto parts (`aes`, `ctr` for the keystream, `polyval` under
//! [`super::ghash`] for the authenticator) because `aes-gcm` 0.10 decrypts only a whole buffer
//! at once, which for a 1 GiB message means 1 GiB in memory. The construction is NIST SP
//! 800-38D's: H = E(K, 0), J0 from the nonce, the content XORed with the keystream from
//! inc32(J0), the tag E(K, J0) XOR GHASH(A, C). Encrypting and decrypting differ only in
//! whether the ciphertext is hashed after or before the keystream. When decrypting, plaintext
//! comes out as the ciphertext goes in; the caller must hold it back (a spool) until
//! [`GcmStream::finish`] says the tag is right.
//!
//! CMS puts the authenticated attributes (the additional data A) *after* the content, so A is
//! known only at the end. GHASH is linear, so the two parts are summed at the end instead:
//! GHASH(A || C || L) = GHASH(A)·H^(c+1) XOR GHASH(C || L), where c is the number of content
//! blocks; the first term is one more pass of c+1 zero blocks, paid only when A is present
//! (OpenSSL, NSS and Outlook write none).
//!
//! GHASH and the keystream cost about the same, and with the reading and writing of a large
//! message all on one thread they bound its speed. [`GcmStream::update_to`] therefore hands the
//! cipher work of a long content (past 1 MiB, with a second core) to a worker thread: the
//! caller reads and writes, the worker hashes and decrypts, in copies from a pool of four
//! 256 KiB buffers, so memory stays bounded whatever the size.

use super::ghash::Ghash;
use crate::error::{Error, Result};
use aes::cipher::{BlockEncrypt, KeyInit, KeyIvInit, StreamCipher, generic_array::GenericArray};
use std::io::Write;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::thread::JoinHandle;
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

/// The keystream of one AES key size.
#[derive(Clone)]
enum Keystream {
    Aes128(ctr::Ctr32BE<aes::Aes128>),
    Aes192(ctr::Ctr32BE<aes::Aes192>),
    Aes256(ctr::Ctr32BE<aes::Aes256>),
}

impl Keystream {
    fn apply(&mut self, data: &mut [u8]) {
        match self {
            Keystream::Aes128(c) => c.apply_keystream(data),
            Keystream::Aes192(c) => c.apply_keystream(data),
            Keystream::Aes256(c) => c.apply_keystream(data),
        }
    }
}

/// Content decrypted on the caller's thread before a worker is worth its start.
const INLINE_LIMIT: u64 = 1 << 20;
/// Bytes per hand-over to the worker, and how many such buffers exist at most.
const PIECE: usize = 256 * 1024;
const PIECES: usize = 4;

/// The running part of a decryption: what moves to the worker.
#[derive(Clone)]
struct Core {
    keystream: Keystream,
    ghash: Ghash,
    /// Ciphertext bytes not yet hashed (less than a block).
    partial: Zeroizing<Vec<u8>>,
    ciphertext_len: u64,
    /// More content than one GCM key and nonce may cover: nothing more is processed and the
    /// tag fails.
    too_long: bool,
}

/// SP 800-38D's bound on one message, (2^32 - 2) blocks: past it the 32-bit counter would
/// wrap (and the `ctr` crate panics).
const MAX_CONTENT: u64 = ((1u64 << 32) - 2) * 16;

impl Core {
    /// Whether `n` more bytes stay within [`MAX_CONTENT`]; marks the stream failed if not.
    fn room_for(&mut self, n: usize) -> bool {
        if self.too_long || self.ciphertext_len.saturating_add(n as u64) > MAX_CONTENT {
            self.too_long = true;
        }
        !self.too_long
    }

    /// Hashes `data` (ciphertext) and decrypts it in place.
    fn decrypt(&mut self, data: &mut [u8]) {
        if self.room_for(data.len()) {
            self.hash(data);
            self.keystream.apply(data);
        }
    }

    /// Encrypts `data` in place and hashes the ciphertext; `false` (and `data` left as it
    /// was) past [`MAX_CONTENT`].
    fn encrypt(&mut self, data: &mut [u8]) -> bool {
        if !self.room_for(data.len()) {
            return false;
        }
        self.keystream.apply(data);
        self.hash(data);
        true
    }

    fn hash(&mut self, ciphertext: &[u8]) {
        self.ciphertext_len += ciphertext.len() as u64;
        let mut rest = ciphertext;
        if !self.partial.is_empty() {
            let take = (16 - self.partial.len()).min(rest.len());
            self.partial.extend_from_slice(&rest[..take]);
            rest = &rest[take..];
            if self.partial.len() == 16 {
                self.ghash.update_padded(&self.partial);
                self.partial.clear();
            }
        }
        let whole = rest.len() / 16 * 16;
        // Whole blocks only: padding is for the last piece, in `tag`.
        self.ghash.update_padded(&rest[..whole]);
        self.partial.extend_from_slice(&rest[whole..]);
    }
}

/// Where the cipher work runs.
enum Engine {
    Here(Box<Core>),
    Worker(Pipeline),
    /// Between the two, and after a lost worker: the tag cannot be checked.
    Gone,
}

/// The worker's ends: ciphertext goes over on `work`, plaintext comes back, in order, on `done`.
struct Pipeline {
    work: SyncSender<Vec<u8>>,
    done: Receiver<Vec<u8>>,
    unallocated: usize,
    in_flight: usize,
    handle: JoinHandle<Core>,
}

impl Pipeline {
    /// A thread that carries on from a copy of `core`; `None` when no thread can be had.
    fn start(core: &Core) -> Option<Pipeline> {
        let mut core = core.clone();
        let (work, work_rx) = sync_channel::<Vec<u8>>(PIECES);
        let (done_tx, done) = sync_channel::<Vec<u8>>(PIECES);
        let handle = std::thread::Builder::new()
            .name("gcm".into())
            .spawn(move || {
                for mut buf in work_rx {
                    core.decrypt(&mut buf);
                    if done_tx.send(buf).is_err() {
                        break;
                    }
                }
                core
            })
            .ok()?;
        Some(Pipeline {
            work,
            done,
            unallocated: PIECES,
            in_flight: 0,
            handle,
        })
    }

    /// Sends `data` over, writing to `out` whatever comes back meanwhile.
    fn send(&mut self, data: &[u8], out: &mut dyn Write) -> Result<()> {
        for piece in data.chunks(PIECE) {
            let mut buf = if self.unallocated > 0 {
                self.unallocated -= 1;
                Vec::with_capacity(PIECE)
            } else {
                self.receive(out)?
            };
            buf.clear();
            buf.extend_from_slice(piece);
            self.work.send(buf).map_err(|_| Error::DecryptFailed)?;
            self.in_flight += 1;
        }
        Ok(())
    }

    /// The oldest piece back, written to `out`; its buffer to reuse.
    fn receive(&mut self, out: &mut dyn Write) -> Result<Vec<u8>> {
        let buf = self.done.recv().map_err(|_| Error::DecryptFailed)?;
        self.in_flight -= 1;
        out.write_all(&buf)
            .map_err(|e| Error::io("cannot write the decrypted output", e))?;
        Ok(buf)
    }

    /// Everything back and written; the core for the tag.
    fn finish(mut self, out: &mut dyn Write) -> Result<Core> {
        while self.in_flight > 0 {
            self.receive(out)?;
        }
        drop(self.work);
        self.handle.join().map_err(|_| Error::DecryptFailed)
    }
}

fn two_cores() -> bool {
    std::thread::available_parallelism().is_ok_and(|n| n.get() >= 2)
}

/// One AES-GCM decryption, fed the ciphertext in pieces of any size.
pub struct GcmStream {
    engine: Engine,
    /// H, kept to hash the additional data at the end.
    h: Zeroizing<[u8; 16]>,
    /// E(K, J0), the tag's mask.
    tag_mask: Zeroizing<[u8; 16]>,
    tag_len: usize,
    /// No worker: one core, or a thread could not be had.
    inline_only: bool,
}

fn block_encrypt<C: BlockEncrypt + KeyInit>(key: &[u8], block: &mut [u8; 16]) -> Result<()> {
    let cipher = C::new_from_slice(key).map_err(|_| Error::DecryptFailed)?;
    cipher.encrypt_block(GenericArray::from_mut_slice(block));
    Ok(())
}

impl GcmStream {
    /// Starts a decryption with `key` (16, 24 or 32 bytes), the message's nonce and tag length
    /// (12 to 16 bytes, as CMS allows).
    pub fn new(key: &[u8], nonce: &[u8], tag_len: usize) -> Result<Self> {
        if !(12..=16).contains(&tag_len) || nonce.is_empty() {
            return Err(Error::DecryptFailed);
        }
        let encrypt = |block: &mut [u8; 16]| match key.len() {
            16 => block_encrypt::<aes::Aes128>(key, block),
            24 => block_encrypt::<aes::Aes192>(key, block),
            32 => block_encrypt::<aes::Aes256>(key, block),
            _ => Err(Error::DecryptFailed),
        };
        let mut h = Zeroizing::new([0u8; 16]);
        encrypt(&mut h)?;
        let mut j0 = Zeroizing::new([0u8; 16]);
        if nonce.len() == 12 {
            j0[..12].copy_from_slice(nonce);
            j0[15] = 1;
        } else {
            // J0 = GHASH(nonce || pad || 0^64 || [len(nonce) in bits]_64).
            let mut g = Ghash::new(&h);
            g.update_padded(nonce);
            let mut lengths = [0u8; 16];
            lengths[8..].copy_from_slice(&((nonce.len() as u64) * 8).to_be_bytes());
            g.update_padded(&lengths);
            j0.copy_from_slice(&g.finalize());
        }
        let mut tag_mask = Zeroizing::new(*j0);
        encrypt(&mut tag_mask)?;
        // The content starts at inc32(J0).
        let mut counter = Zeroizing::new(*j0);
        let low = u32::from_be_bytes([counter[12], counter[13], counter[14], counter[15]]);
        counter[12..].copy_from_slice(&low.wrapping_add(1).to_be_bytes());
        let iv = GenericArray::from_slice(&counter[..]);
        let keystream = match key.len() {
            16 => Keystream::Aes128(ctr::Ctr32BE::new(GenericArray::from_slice(key), iv)),
            24 => Keystream::Aes192(ctr::Ctr32BE::new(GenericArray::from_slice(key), iv)),
            _ => Keystream::Aes256(ctr::Ctr32BE::new(GenericArray::from_slice(key), iv)),
        };
        Ok(GcmStream {
            engine: Engine::Here(Box::new(Core {
                keystream,
                ghash: Ghash::new(&h),
                partial: Zeroizing::new(Vec::with_capacity(16)),
                ciphertext_len: 0,
                too_long: false,
            })),
            h,
            tag_mask,
            tag_len,
            inline_only: !two_cores(),
        })
    }

    /// Hashes `data` (ciphertext) and decrypts it in place, on this thread. Not after
    /// [`GcmStream::update_to`] has handed the work to a worker (the tag check then fails).
    pub fn decrypt(&mut self, data: &mut [u8]) {
        match &mut self.engine {
            Engine::Here(core) => core.decrypt(data),
            _ => self.engine = Engine::Gone,
        }
    }

    /// Encrypts `data` in place and hashes the ciphertext, on this thread; [`GcmStream::tag`]
    /// gives the tag at the end. Refused past SP 800-38D's bound of 64 GiB per message.
    pub fn encrypt(&mut self, data: &mut [u8]) -> Result<()> {
        match &mut self.engine {
            Engine::Here(core) => {
                if core.encrypt(data) {
                    Ok(())
                } else {
                    Err(Error::Unsupported(
                        "AES-GCM content over 64 GiB (use an AES-CBC cipher)".into(),
                    ))
                }
            }
            _ => {
                self.engine = Engine::Gone;
                Err(Error::DecryptFailed)
            }
        }
    }

    /// Decrypts `data` and writes the plaintext to `out`, possibly later (by
    /// [`GcmStream::finish_to`] at the latest) when a worker does the cipher work.
    pub fn update_to(&mut self, data: &mut [u8], out: &mut dyn Write) -> Result<()> {
        if let Engine::Here(core) = &mut self.engine {
            if self.inline_only || core.ciphertext_len < INLINE_LIMIT {
                core.decrypt(data);
                return out
                    .write_all(data)
                    .map_err(|e| Error::io("cannot write the decrypted output", e));
            }
            match Pipeline::start(core) {
                Some(pipeline) => self.engine = Engine::Worker(pipeline),
                None => self.inline_only = true,
            }
        }
        match &mut self.engine {
            Engine::Worker(pipeline) => pipeline.send(data, out),
            Engine::Here(core) => {
                core.decrypt(data);
                out.write_all(data)
                    .map_err(|e| Error::io("cannot write the decrypted output", e))
            }
            Engine::Gone => Err(Error::DecryptFailed),
        }
    }

    /// As [`GcmStream::finish_to`], after [`GcmStream::decrypt`] only.
    pub fn finish(self, aad: &[u8], tag: &[u8]) -> Result<()> {
        self.finish_to(aad, tag, &mut std::io::sink())
    }

    /// Writes what the worker still holds to `out`, then checks the tag over the content and
    /// `aad` (the DER of the authenticated attributes, or empty): `Ok` only when it matches,
    /// else the uniform [`Error::DecryptFailed`]. The worker is joined before any answer.
    pub fn finish_to(mut self, aad: &[u8], tag: &[u8], out: &mut dyn Write) -> Result<()> {
        if let Engine::Worker(_) = self.engine {
            let Engine::Worker(pipeline) = std::mem::replace(&mut self.engine, Engine::Gone) else {
                return Err(Error::DecryptFailed);
            };
            self.engine = Engine::Here(Box::new(pipeline.finish(out)?));
        }
        if tag.len() != self.tag_len {
            return Err(Error::DecryptFailed);
        }
        let expected = self.tag(aad)?;
        if bool::from(expected.ct_eq(tag)) {
            Ok(())
        } else {
            Err(Error::DecryptFailed)
        }
    }

    /// The tag (`tag_len` bytes) over the content so far and `aad`: the end of an encryption.
    /// Not while a worker holds the content (a decryption ends with [`GcmStream::finish_to`]).
    pub fn tag(self, aad: &[u8]) -> Result<Zeroizing<Vec<u8>>> {
        let Engine::Here(core) = self.engine else {
            return Err(Error::DecryptFailed);
        };
        let Core {
            mut ghash,
            partial,
            ciphertext_len,
            too_long,
            ..
        } = *core;
        if too_long {
            return Err(Error::DecryptFailed);
        }
        if !partial.is_empty() {
            ghash.update_padded(&partial);
        }
        let content_blocks = ciphertext_len.div_ceil(16);
        let mut lengths = [0u8; 16];
        lengths[..8].copy_from_slice(&((aad.len() as u64) * 8).to_be_bytes());
        lengths[8..].copy_from_slice(&(ciphertext_len * 8).to_be_bytes());
        ghash.update_padded(&lengths);
        let mut s = Zeroizing::new(ghash.finalize());
        if !aad.is_empty() {
            // GHASH(A) · H^(c+1): A's blocks, then c+1 zero blocks.
            let mut g = Ghash::new(&self.h);
            g.update_padded(aad);
            g.update_zero_blocks(content_blocks + 1);
            for (a, b) in s.iter_mut().zip(g.finalize().iter()) {
                *a ^= b;
            }
        }
        Ok(Zeroizing::new(
            s.iter()
                .zip(self.tag_mask.iter())
                .take(self.tag_len)
                .map(|(a, b)| a ^ b)
                .collect(),
        ))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use aes_gcm::aead::{AeadInPlace, consts::U12};

    /// Encrypts `buf` in place with the `aes-gcm` crate, the reference; returns the tag.
    fn seal(key: &[u8], nonce: &[u8; 12], aad: &[u8], buf: &mut [u8]) -> Vec<u8> {
        let n = GenericArray::from_slice(nonce);
        match key.len() {
            16 => aes_gcm::AesGcm::<aes::Aes128, U12>::new_from_slice(key)
                .unwrap()
                .encrypt_in_place_detached(n, aad, buf)
                .unwrap()
                .to_vec(),
            24 => aes_gcm::AesGcm::<aes::Aes192, U12>::new_from_slice(key)
                .unwrap()
                .encrypt_in_place_detached(n, aad, buf)
                .unwrap()
                .to_vec(),
            _ => aes_gcm::AesGcm::<aes::Aes256, U12>::new_from_slice(key)
                .unwrap()
                .encrypt_in_place_detached(n, aad, buf)
                .unwrap()
                .to_vec(),
        }
    }

    /// Sealed by the reference, opened here in pieces of `piece` bytes.
    fn round_trip(key: &[u8], aad: &[u8], len: usize, piece: usize) {
        let nonce = [7u8; 12];
        let plain: Vec<u8> = (0..len).map(|i| (i * 31 % 251) as u8).collect();
        let mut ct = plain.clone();
        let tag = seal(key, &nonce, aad, &mut ct);
        let mut gcm = GcmStream::new(key, &nonce, 16).unwrap();
        for chunk in ct.chunks_mut(piece) {
            gcm.decrypt(chunk);
        }
        assert_eq!(ct, plain, "len {len} piece {piece}");
        gcm.finish(aad, &tag).unwrap();
        // Without the additional data the tag does not hold.
        if !aad.is_empty() {
            let mut again = plain.clone();
            seal(key, &nonce, aad, &mut again);
            let mut gcm = GcmStream::new(key, &nonce, 16).unwrap();
            gcm.decrypt(&mut again);
            assert!(gcm.finish(b"", &tag).is_err());
        }
    }

    #[test]
    fn matches_aes_gcm_for_every_key_size_and_piece_size() {
        for key in [&[1u8; 16][..], &[2u8; 24][..], &[3u8; 32][..]] {
            for (len, piece) in [
                (0, 1),
                (1, 1),
                (15, 4),
                (16, 16),
                (17, 5),
                (1000, 7),
                (4096, 333),
            ] {
                round_trip(key, b"", len, piece);
            }
        }
    }

    #[test]
    fn additional_data_after_the_content() {
        let aad: Vec<u8> = (0..45).collect();
        for (len, piece) in [(0, 1), (33, 10), (70_000, 4099)] {
            round_trip(&[9u8; 32], &aad, len, piece);
        }
    }

    #[test]
    fn a_changed_byte_or_tag_fails_uniformly() {
        let key = [5u8; 16];
        let nonce = [1u8; 12];
        let mut ct = b"attack at dawn, and bring snacks".to_vec();
        let tag = seal(&key, &nonce, b"", &mut ct);
        for flip in [0usize, 5, ct.len() - 1] {
            let mut bad = ct.clone();
            bad[flip] ^= 1;
            let mut gcm = GcmStream::new(&key, &nonce, 16).unwrap();
            gcm.decrypt(&mut bad);
            assert!(matches!(gcm.finish(b"", &tag), Err(Error::DecryptFailed)));
        }
        let mut gcm = GcmStream::new(&key, &nonce, 16).unwrap();
        let mut copy = ct.clone();
        gcm.decrypt(&mut copy);
        let mut bad_tag = tag.clone();
        bad_tag[15] ^= 0x80;
        assert!(matches!(
            gcm.finish(b"", &bad_tag),
            Err(Error::DecryptFailed)
        ));
        // A truncated (12-byte) tag is the first 12 bytes of the full one.
        let mut gcm = GcmStream::new(&key, &nonce, 12).unwrap();
        let mut copy = ct.clone();
        gcm.decrypt(&mut copy);
        gcm.finish(b"", &tag[..12]).unwrap();
    }

    /// Encrypted here in pieces: the ciphertext and tag of the reference.
    #[test]
    fn encrypts_like_aes_gcm() {
        let nonce = [3u8; 12];
        for key in [&[1u8; 16][..], &[2u8; 24][..], &[3u8; 32][..]] {
            for (len, piece) in [(0, 1), (17, 5), (4096, 333), (3 << 20, 100_003)] {
                let plain: Vec<u8> = (0..len).map(|i| (i * 7 % 253) as u8).collect();
                let mut want = plain.clone();
                let want_tag = seal(key, &nonce, b"", &mut want);
                let mut got = plain.clone();
                let mut gcm = GcmStream::new(key, &nonce, 16).unwrap();
                for chunk in got.chunks_mut(piece) {
                    gcm.encrypt(chunk).unwrap();
                }
                assert!(got == want, "len {len} piece {piece}");
                assert_eq!(gcm.tag(b"").unwrap().to_vec(), want_tag);
            }
        }
    }

    /// Past the inline limit the worker takes over: the same plaintext, in order, for pieces
    /// of odd sizes and larger than a hand-over buffer, and a changed last byte still fails.
    #[test]
    fn a_long_content_through_the_worker() {
        let key = [4u8; 32];
        let nonce = [6u8; 12];
        let aad: Vec<u8> = (0..30).collect();
        let plain: Vec<u8> = (0..(5u32 << 20) / 4)
            .flat_map(|i| i.wrapping_mul(2_654_435_761).to_le_bytes())
            .collect();
        let mut ct = plain.clone();
        let tag = seal(&key, &nonce, &aad, &mut ct);
        let open = |ct: &[u8]| {
            let mut gcm = GcmStream::new(&key, &nonce, 16).unwrap();
            let mut out = Vec::new();
            let mut ct = ct.to_vec();
            let mut at = 0;
            for size in [1usize, 700 * 16 + 3, 1 << 20, 3 * PIECE + 5, 16 * 16_411]
                .iter()
                .cycle()
            {
                let end = (at + size).min(ct.len());
                gcm.update_to(&mut ct[at..end], &mut out).unwrap();
                at = end;
                if at == ct.len() {
                    break;
                }
            }
            assert!(matches!(gcm.engine, Engine::Worker(_)) || !two_cores());
            let verdict = gcm.finish_to(&aad, &tag, &mut out);
            (out, verdict)
        };
        let (out, verdict) = open(&ct);
        verdict.unwrap();
        assert!(out == plain, "the plaintext in order");
        let mut bad = ct.clone();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        assert!(matches!(open(&bad).1, Err(Error::DecryptFailed)));
    }

    /// Past SP 800-38D's 64 GiB a message is refused, not wrapped (or a panic in `ctr`):
    /// encryption says so and leaves the data as it was; decryption fails its tag.
    #[test]
    fn past_64_gib_is_refused() {
        let near_the_end = |gcm: &mut GcmStream| {
            if let Engine::Here(core) = &mut gcm.engine {
                core.ciphertext_len = MAX_CONTENT - 16;
            }
        };
        let mut gcm = GcmStream::new(&[1u8; 16], &[2u8; 12], 16).unwrap();
        near_the_end(&mut gcm);
        let mut data = [7u8; 32];
        assert!(matches!(gcm.encrypt(&mut data), Err(Error::Unsupported(_))));
        assert_eq!(data, [7u8; 32]);
        assert!(gcm.tag(b"").is_err());
        let mut gcm = GcmStream::new(&[1u8; 16], &[2u8; 12], 16).unwrap();
        near_the_end(&mut gcm);
        let mut data = [7u8; 16];
        gcm.decrypt(&mut data);
        assert!(matches!(&gcm.engine, Engine::Here(c) if !c.too_long));
        let mut more = [7u8; 1];
        gcm.decrypt(&mut more);
        assert_eq!(more, [7u8; 1], "nothing decrypted past the bound");
        assert!(matches!(&gcm.engine, Engine::Here(c) if c.too_long));
        assert!(gcm.finish(b"", &[0u8; 16]).is_err());
    }
}
