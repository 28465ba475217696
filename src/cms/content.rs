//! Content-encryption algorithms: parsing their parameters and decrypting the content.
//!
//! CBC content is decrypted as it is read, chunk by chunk, holding back only the last block for
//! the padding check. GCM content is released only after its tag verifies, so the caller gets the
//! plaintext as one buffer. Padding and tag failures give the same [`Error::DecryptFailed`].

use crate::cms::ber::{BerError, Element, Reader, Tag};
use crate::cms::oids;
use crate::error::{Error, Result};
use aes::cipher::{BlockDecryptMut, KeyIvInit, generic_array::GenericArray};
use const_oid::ObjectIdentifier;
use std::io::Write;
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

/// A content-encryption algorithm with its parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ContentCipher {
    AesCbc {
        key_len: usize,
        iv: [u8; 16],
    },
    DesEde3Cbc {
        iv: [u8; 8],
    },
    AesGcm {
        key_len: usize,
        nonce: Vec<u8>,
        tag_len: usize,
    },
}

impl ContentCipher {
    /// Reads an AlgorithmIdentifier element.
    pub fn from_algorithm(alg: &Element<'_>) -> Result<Self> {
        let mut fields = alg.children()?;
        let oid = read_oid(&mut fields)?;
        let params = fields.next().transpose()?;
        let aes_key_len = |oid: &ObjectIdentifier| match *oid {
            o if o == oids::AES128_CBC || o == oids::AES128_GCM => 16,
            o if o == oids::AES192_CBC || o == oids::AES192_GCM => 24,
            _ => 32,
        };
        if oid == oids::AES128_CBC || oid == oids::AES192_CBC || oid == oids::AES256_CBC {
            let iv = iv_param::<16>(params)?;
            Ok(ContentCipher::AesCbc {
                key_len: aes_key_len(&oid),
                iv,
            })
        } else if oid == oids::DES_EDE3_CBC {
            Ok(ContentCipher::DesEde3Cbc {
                iv: iv_param::<8>(params)?,
            })
        } else if oid == oids::AES128_GCM || oid == oids::AES192_GCM || oid == oids::AES256_GCM {
            let params = params.ok_or_else(|| bad("AES-GCM without parameters"))?;
            let mut p = params.children()?;
            let nonce = p.read("GCM nonce")?.octets()?;
            let tag_len = match p.next().transpose()? {
                Some(int) => small_uint(&int)?,
                None => 12,
            };
            if nonce.len() != 12 {
                return Err(Error::Unsupported(format!(
                    "AES-GCM with a {}-byte nonce (only 12 bytes is supported)",
                    nonce.len()
                )));
            }
            if !(12..=16).contains(&tag_len) {
                return Err(bad("AES-GCM with an invalid tag length"));
            }
            Ok(ContentCipher::AesGcm {
                key_len: aes_key_len(&oid),
                nonce,
                tag_len,
            })
        } else {
            Err(Error::Unsupported(format!(
                "content encryption {} is not supported",
                oids::name(&oid)
            )))
        }
    }

    /// Length of the content-encryption key this cipher needs.
    pub fn key_len(&self) -> usize {
        match self {
            ContentCipher::AesCbc { key_len, .. } | ContentCipher::AesGcm { key_len, .. } => {
                *key_len
            }
            ContentCipher::DesEde3Cbc { .. } => 24,
        }
    }

    /// Why the cipher is weak, when it is: accepted for reading old mail, never written.
    pub fn weakness(&self) -> Option<String> {
        match self {
            ContentCipher::DesEde3Cbc { .. } => Some(
                "the message was encrypted with 3DES, a legacy cipher; ask the sender to use AES"
                    .into(),
            ),
            _ => None,
        }
    }

    /// A readable name, e.g. "AES-256-CBC".
    pub fn name(&self) -> String {
        match self {
            ContentCipher::AesCbc { key_len, .. } => format!("AES-{}-CBC", key_len * 8),
            ContentCipher::AesGcm { key_len, .. } => format!("AES-{}-GCM", key_len * 8),
            ContentCipher::DesEde3Cbc { .. } => "3DES-CBC".into(),
        }
    }
}

fn bad(what: &str) -> Error {
    Error::BadInput(format!("malformed CMS data: {what}"))
}

pub(crate) fn read_oid(r: &mut Reader<'_>) -> Result<ObjectIdentifier> {
    let e = r.read("an algorithm identifier")?;
    if !e.tag.is_universal(Tag::OID) {
        return Err(BerError::Unexpected("an OBJECT IDENTIFIER").into());
    }
    ObjectIdentifier::from_bytes(e.content).map_err(|_| bad("an invalid OBJECT IDENTIFIER"))
}

fn iv_param<const N: usize>(params: Option<Element<'_>>) -> Result<[u8; N]> {
    let p = params.ok_or_else(|| bad("CBC without an IV"))?;
    if !p.tag.is_universal(Tag::OCTET_STRING) {
        return Err(bad("a CBC IV that is not an OCTET STRING"));
    }
    p.octets()?
        .try_into()
        .map_err(|_| bad("a CBC IV of the wrong length"))
}

pub(crate) fn small_uint(int: &Element<'_>) -> Result<usize> {
    if !int.tag.is_universal(Tag::INTEGER) || int.content.is_empty() || int.content.len() > 4 {
        return Err(bad("an INTEGER out of range"));
    }
    if int.content[0] & 0x80 != 0 {
        return Err(bad("a negative INTEGER"));
    }
    Ok(int
        .content
        .iter()
        .fold(0usize, |acc, b| (acc << 8) | usize::from(*b)))
}

/// A block cipher in CBC mode, decrypting whole blocks in place.
trait CbcBlocks {
    fn block_size(&self) -> usize;
    fn decrypt(&mut self, blocks: &mut [u8]);
}

struct Cbc<D>(D, usize);

impl<D: BlockDecryptMut> CbcBlocks for Cbc<D> {
    fn block_size(&self) -> usize {
        self.1
    }
    fn decrypt(&mut self, blocks: &mut [u8]) {
        for block in blocks.chunks_exact_mut(self.1) {
            self.0
                .decrypt_block_mut(GenericArray::from_mut_slice(block));
        }
    }
}

fn cbc_for(cipher: &ContentCipher, key: &[u8]) -> Result<Box<dyn CbcBlocks>> {
    let wrong_key = |_| Error::DecryptFailed;
    Ok(match cipher {
        ContentCipher::AesCbc { key_len: 16, iv } => Box::new(Cbc(
            cbc::Decryptor::<aes::Aes128>::new_from_slices(key, iv).map_err(wrong_key)?,
            16,
        )),
        ContentCipher::AesCbc { key_len: 24, iv } => Box::new(Cbc(
            cbc::Decryptor::<aes::Aes192>::new_from_slices(key, iv).map_err(wrong_key)?,
            16,
        )),
        ContentCipher::AesCbc { iv, .. } => Box::new(Cbc(
            cbc::Decryptor::<aes::Aes256>::new_from_slices(key, iv).map_err(wrong_key)?,
            16,
        )),
        ContentCipher::DesEde3Cbc { iv } => Box::new(Cbc(
            cbc::Decryptor::<des::TdesEde3>::new_from_slices(key, iv).map_err(wrong_key)?,
            8,
        )),
        ContentCipher::AesGcm { .. } => {
            return Err(Error::Unsupported("GCM is not a CBC cipher".into()));
        }
    })
}

/// How much ciphertext is decrypted per write.
const CBC_BATCH: usize = 64 * 1024;

/// Decrypts CBC content from `chunks` to `out` as it arrives. Returns the plaintext length.
pub fn decrypt_cbc<'a>(
    cipher: &ContentCipher,
    key: &[u8],
    chunks: impl Iterator<Item = Result<&'a [u8], BerError>>,
    out: &mut dyn Write,
) -> Result<u64> {
    let mut cbc = cbc_for(cipher, key)?;
    let bs = cbc.block_size();
    let mut pending = Zeroizing::new(Vec::with_capacity(CBC_BATCH + 2 * bs));
    let mut written: u64 = 0;
    for chunk in chunks {
        let mut chunk = chunk?;
        while !chunk.is_empty() {
            let room = CBC_BATCH + bs - pending.len();
            let take = room.min(chunk.len());
            pending.extend_from_slice(&chunk[..take]);
            chunk = &chunk[take..];
            // Keep at least one whole block back: it may be the last, carrying the padding.
            if pending.len() > CBC_BATCH + bs - 1 {
                let ready = (pending.len() - 1) / bs * bs;
                let ready = if ready == pending.len() {
                    ready - bs
                } else {
                    ready
                };
                cbc.decrypt(&mut pending[..ready]);
                write_all(out, &pending[..ready])?;
                written += ready as u64;
                pending.drain(..ready);
            }
        }
    }
    if pending.is_empty() || pending.len() % bs != 0 {
        return Err(Error::DecryptFailed);
    }
    let len = pending.len();
    cbc.decrypt(&mut pending[..]);
    let unpadded = unpad(&pending, bs).ok_or(Error::DecryptFailed)?;
    let keep = len - unpadded;
    write_all(out, &pending[..keep])?;
    Ok(written + keep as u64)
}

/// Checks PKCS#7 padding in constant time over the last block; returns the padding length.
fn unpad(data: &[u8], bs: usize) -> Option<usize> {
    let last = &data[data.len() - bs..];
    let pad = last[bs - 1];
    let mut ok = !pad.ct_eq(&0) & subtle::Choice::from(u8::from(pad as usize <= bs));
    for (i, b) in last.iter().enumerate() {
        let in_pad = ((bs - i) as u8 <= pad) as u8;
        ok &= !(in_pad.ct_eq(&1) & !b.ct_eq(&pad));
    }
    bool::from(ok).then_some(pad as usize)
}

fn write_all(out: &mut dyn Write, data: &[u8]) -> Result<()> {
    out.write_all(data)
        .map_err(|e| Error::io("cannot write the decrypted output", e))
}

/// Decrypts AES-GCM content in place and checks the tag; the plaintext is returned only when
/// the tag verifies. `aad` is the DER of the authenticated attributes, if any.
pub fn decrypt_gcm(
    cipher: &ContentCipher,
    key: &[u8],
    aad: &[u8],
    mut ciphertext: Zeroizing<Vec<u8>>,
    tag: &[u8],
) -> Result<Zeroizing<Vec<u8>>> {
    use aes_gcm::aead::{AeadInPlace, KeyInit, consts::U12};
    use aes_gcm::{AesGcm, Nonce, Tag as GcmTag};

    let ContentCipher::AesGcm {
        key_len,
        nonce,
        tag_len,
    } = cipher
    else {
        return Err(Error::Unsupported("not a GCM cipher".into()));
    };
    if tag.len() != *tag_len {
        return Err(Error::DecryptFailed);
    }
    let nonce = Nonce::<U12>::from_slice(nonce);

    macro_rules! open {
        ($aes:ty, $tag:ty) => {{
            let gcm =
                AesGcm::<$aes, U12, $tag>::new_from_slice(key).map_err(|_| Error::DecryptFailed)?;
            gcm.decrypt_in_place_detached(
                nonce,
                aad,
                &mut ciphertext,
                GcmTag::<$tag>::from_slice(tag),
            )
            .map_err(|_| Error::DecryptFailed)
        }};
    }
    macro_rules! by_tag {
        ($aes:ty) => {
            match tag_len {
                12 => open!($aes, aes_gcm::aead::consts::U12),
                13 => open!($aes, aes_gcm::aead::consts::U13),
                14 => open!($aes, aes_gcm::aead::consts::U14),
                15 => open!($aes, aes_gcm::aead::consts::U15),
                _ => open!($aes, aes_gcm::aead::consts::U16),
            }
        };
    }
    match key_len {
        16 => by_tag!(aes::Aes128)?,
        24 => by_tag!(aes::Aes192)?,
        _ => by_tag!(aes::Aes256)?,
    }
    Ok(ciphertext)
}

#[cfg(test)]
mod tests {
    use super::*;
    use aes::cipher::{BlockEncryptMut, block_padding::Pkcs7};

    fn encrypt_aes128(key: &[u8; 16], iv: &[u8; 16], pt: &[u8]) -> Vec<u8> {
        cbc::Encryptor::<aes::Aes128>::new(key.into(), iv.into())
            .encrypt_padded_vec_mut::<Pkcs7>(pt)
    }

    #[test]
    fn cbc_streams_across_odd_chunks() {
        let key = [7u8; 16];
        let iv = [9u8; 16];
        let pt: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        let ct = encrypt_aes128(&key, &iv, &pt);
        let cipher = ContentCipher::AesCbc { key_len: 16, iv };
        for size in [1usize, 15, 17, 4096, 70_001] {
            let mut out = Vec::new();
            let chunks = ct.chunks(size).map(Ok);
            let n = decrypt_cbc(&cipher, &key, chunks, &mut out).unwrap();
            assert_eq!(n as usize, pt.len());
            assert_eq!(out, pt, "chunk size {size}");
        }
    }

    #[test]
    fn cbc_bad_padding_and_wrong_key_fail_alike() {
        let key = [7u8; 16];
        let iv = [9u8; 16];
        let ct = encrypt_aes128(&key, &iv, b"hello world, hello cards");
        let cipher = ContentCipher::AesCbc { key_len: 16, iv };
        let mut out = Vec::new();
        let mut broken = ct.clone();
        let n = broken.len();
        broken[n - 17] ^= 0x01; // flips the last plaintext byte: padding 8 -> 9
        let err = decrypt_cbc(&cipher, &key, std::iter::once(Ok(&broken[..])), &mut out);
        assert!(matches!(err, Err(Error::DecryptFailed)));
        let err = decrypt_cbc(&cipher, &[8u8; 16], std::iter::once(Ok(&ct[..])), &mut out);
        assert!(matches!(err, Err(Error::DecryptFailed)));
        let err = decrypt_cbc(&cipher, &key, std::iter::once(Ok(&ct[..20])), &mut out);
        assert!(matches!(err, Err(Error::DecryptFailed)));
    }

    #[test]
    fn unpad_accepts_only_pkcs7() {
        assert_eq!(unpad(&[0, 0, 0, 0, 0, 0, 2, 2], 8), Some(2));
        assert_eq!(unpad(&[8; 8], 8), Some(8));
        assert_eq!(unpad(&[0, 0, 0, 0, 0, 0, 1, 2], 8), None);
        assert_eq!(unpad(&[0; 8], 8), None);
        assert_eq!(unpad(&[9; 8], 8), None);
    }
}
