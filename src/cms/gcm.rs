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

use super::ghash::{Ghash, Hasher};
use crate::error::{Error, Result};
use aes::cipher::{BlockEncrypt, KeyInit, KeyIvInit, StreamCipher, generic_array::GenericArray};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

/// The keystream of one AES key size.
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

/// One AES-GCM encryption or decryption, fed the content in pieces of any size.
pub struct GcmStream {
    keystream: Keystream,
    ghash: Hasher,
    /// H, kept to hash the additional data at the end.
    h: Zeroizing<[u8; 16]>,
    /// E(K, J0), the tag's mask.
    tag_mask: Zeroizing<[u8; 16]>,
    /// Ciphertext bytes not yet hashed (less than a block).
    partial: Zeroizing<Vec<u8>>,
    ciphertext_len: u64,
    tag_len: usize,
}

fn block_encrypt<C: BlockEncrypt + KeyInit>(key: &[u8], block: &mut [u8; 16]) -> Result<()> {
    let cipher = C::new_from_slice(key).map_err(|_| Error::DecryptFailed)?;
    cipher.encrypt_block(GenericArray::from_mut_slice(block));
    Ok(())
}

impl GcmStream {
    /// Starts an encryption or decryption with `key` (16, 24 or 32 bytes), the message's nonce and tag length
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
            keystream,
            ghash: Hasher::new(&h),
            h,
            tag_mask,
            partial: Zeroizing::new(Vec::with_capacity(16)),
            ciphertext_len: 0,
            tag_len,
        })
    }

    /// Hashes `data` (ciphertext) and decrypts it in place.
    pub fn decrypt(&mut self, data: &mut [u8]) {
        self.hash(data);
        self.keystream.apply(data);
    }

    /// Encrypts `data` in place and hashes the ciphertext.
    pub fn encrypt(&mut self, data: &mut [u8]) {
        self.keystream.apply(data);
        self.hash(data);
    }

    fn hash(&mut self, ciphertext: &[u8]) {
        self.ciphertext_len += ciphertext.len() as u64;
        let mut rest = ciphertext;
        if !self.partial.is_empty() {
            let take = (16 - self.partial.len()).min(rest.len());
            self.partial.extend_from_slice(&rest[..take]);
            rest = &rest[take..];
            if self.partial.len() == 16 {
                self.ghash.update_blocks(&self.partial);
                self.partial.clear();
            }
        }
        let whole = rest.len() / 16 * 16;
        // Whole blocks only: padding is for the last piece, in `tag`.
        self.ghash.update_blocks(&rest[..whole]);
        self.partial.extend_from_slice(&rest[whole..]);
    }

    /// Checks the tag over the content and `aad` (the DER of the authenticated attributes, or
    /// empty): `Ok` only when it matches, else the uniform [`Error::DecryptFailed`].
    pub fn finish(self, aad: &[u8], tag: &[u8]) -> Result<()> {
        if tag.len() != self.tag_len {
            // The worker is joined before the answer here too.
            drop(self.ghash.finish());
            return Err(Error::DecryptFailed);
        }
        let expected = self.tag(aad)?;
        if bool::from(expected.ct_eq(tag)) {
            Ok(())
        } else {
            Err(Error::DecryptFailed)
        }
    }

    /// The tag (`tag_len` bytes) over the content so far and `aad`.
    pub fn tag(self, aad: &[u8]) -> Result<Zeroizing<Vec<u8>>> {
        // The worker is joined before any answer, so none outlives the stream.
        let mut ghash = self.ghash.finish()?;
        if !self.partial.is_empty() {
            ghash.update_padded(&self.partial);
        }
        let content_blocks = self.ciphertext_len.div_ceil(16);
        let mut lengths = [0u8; 16];
        lengths[..8].copy_from_slice(&((aad.len() as u64) * 8).to_be_bytes());
        lengths[8..].copy_from_slice(&(self.ciphertext_len * 8).to_be_bytes());
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
                    gcm.encrypt(chunk);
                }
                assert!(got == want, "len {len} piece {piece}");
                assert_eq!(gcm.tag(b"").unwrap().to_vec(), want_tag);
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
}
