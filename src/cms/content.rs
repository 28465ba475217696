//! Content-encryption algorithms: parsing their parameters and decrypting the content.
//!
//! CBC content is decrypted as it is read, chunk by chunk, holding back only the last block for
//! the padding check. GCM content is released only after its tag verifies, so the caller gets the
//! plaintext as one buffer. Padding and tag failures give the same [`Error::DecryptFailed`].

use crate::cms::ber::{BerError, Element, Reader, Tag};
use crate::cms::oids;
use crate::error::{Error, Result};
use aes::cipher::{BlockDecryptMut, InnerIvInit, KeyIvInit};
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
    /// RC2-CBC (RFC 2268, RFC 3370 §5.2), read only. The key is as long as the CEK the
    /// recipient gives up (1 to 128 bytes); `effective_bits` is the effective key size from the
    /// parameters, or `None` when they carry only the IV (then it is the key's own size: see
    /// [`ContentCipher::for_key`]).
    Rc2Cbc {
        effective_bits: Option<usize>,
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
        } else if oid == oids::RC2_CBC {
            let (effective_bits, iv) = rc2_params(params)?;
            Ok(ContentCipher::Rc2Cbc { effective_bits, iv })
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

    /// Length of the content-encryption key this cipher needs. RC2 keys vary in length: this is
    /// the usual one (the effective size, 16 bytes when unknown); [`ContentCipher::key_fits`]
    /// says which lengths are accepted.
    pub fn key_len(&self) -> usize {
        match self {
            ContentCipher::AesCbc { key_len, .. } | ContentCipher::AesGcm { key_len, .. } => {
                *key_len
            }
            ContentCipher::DesEde3Cbc { .. } => 24,
            ContentCipher::Rc2Cbc { effective_bits, .. } => effective_bits
                .map_or(16, |bits| bits.div_ceil(8))
                .clamp(1, RC2_MAX_KEY_LEN),
        }
    }

    /// Whether a content-encryption key of `len` bytes can be used with this cipher: exactly
    /// [`ContentCipher::key_len`] bytes, except for RC2, whose key is 1 to 128 bytes of any
    /// length whatever the effective key size (RFC 2268 keeps the two apart).
    pub fn key_fits(&self, len: usize) -> bool {
        match self {
            ContentCipher::Rc2Cbc { .. } => (1..=RC2_MAX_KEY_LEN).contains(&len),
            _ => len == self.key_len(),
        }
    }

    /// This cipher as used with a key of `key_len` bytes: RC2 parameters that carry only the IV
    /// mean an effective key size equal to the key's. Other ciphers are returned unchanged.
    pub fn for_key(&self, key_len: usize) -> ContentCipher {
        match self {
            ContentCipher::Rc2Cbc {
                effective_bits: None,
                iv,
            } => ContentCipher::Rc2Cbc {
                effective_bits: Some(key_len * 8),
                iv: *iv,
            },
            other => other.clone(),
        }
    }

    /// Why the cipher is weak, when it is: accepted for reading old mail, never written.
    pub fn weakness(&self) -> Option<String> {
        match self {
            ContentCipher::DesEde3Cbc { .. } => Some(
                "the message was encrypted with 3DES, a legacy cipher; ask the sender to use AES"
                    .into(),
            ),
            ContentCipher::Rc2Cbc {
                effective_bits: Some(bits),
                ..
            } => {
                let how = match *bits {
                    ..=56 => ": anyone can read such mail",
                    57..=111 => ", short enough to be found by brute force",
                    _ => ", a broken legacy cipher",
                };
                Some(format!(
                    "the message was encrypted with RC2 with a {bits}-bit key{how}; \
                     ask the sender to use AES"
                ))
            }
            ContentCipher::Rc2Cbc {
                effective_bits: None,
                ..
            } => Some(
                "the message was encrypted with RC2, a broken legacy cipher whose key may be as \
                 short as 40 bits; ask the sender to use AES"
                    .into(),
            ),
            ContentCipher::AesCbc { .. } | ContentCipher::AesGcm { .. } => None,
        }
    }

    /// A readable name, e.g. "AES-256-CBC" or "RC2-40-CBC" (the effective key size).
    pub fn name(&self) -> String {
        match self {
            ContentCipher::AesCbc { key_len, .. } => format!("AES-{}-CBC", key_len * 8),
            ContentCipher::AesGcm { key_len, .. } => format!("AES-{}-GCM", key_len * 8),
            ContentCipher::DesEde3Cbc { .. } => "3DES-CBC".into(),
            ContentCipher::Rc2Cbc {
                effective_bits: Some(bits),
                ..
            } => format!("RC2-{bits}-CBC"),
            ContentCipher::Rc2Cbc {
                effective_bits: None,
                ..
            } => "RC2-CBC".into(),
        }
    }
}

/// The longest RC2 key (RFC 2268: 1 to 128 bytes).
const RC2_MAX_KEY_LEN: usize = 128;
/// The largest effective key size RC2 has (RFC 2268 §2: 1 to 1024 bits).
const RC2_MAX_EFFECTIVE_BITS: usize = 1024;

/// RFC 2268 §6: the RC2ParameterVersion that stands for each effective key size below 256
/// (index = effective bits). 40 bits is 160, 64 is 120, 128 is 58; a version of 256 and more is
/// the effective key size itself.
const RC2_VERSION_FOR_BITS: [u8; 256] = [
    0xbd, 0x56, 0xea, 0xf2, 0xa2, 0xf1, 0xac, 0x2a, 0xb0, 0x93, 0xd1, 0x9c, 0x1b, 0x33, 0xfd, 0xd0,
    0x30, 0x04, 0xb6, 0xdc, 0x7d, 0xdf, 0x32, 0x4b, 0xf7, 0xcb, 0x45, 0x9b, 0x31, 0xbb, 0x21, 0x5a,
    0x41, 0x9f, 0xe1, 0xd9, 0x4a, 0x4d, 0x9e, 0xda, 0xa0, 0x68, 0x2c, 0xc3, 0x27, 0x5f, 0x80, 0x36,
    0x3e, 0xee, 0xfb, 0x95, 0x1a, 0xfe, 0xce, 0xa8, 0x34, 0xa9, 0x13, 0xf0, 0xa6, 0x3f, 0xd8, 0x0c,
    0x78, 0x24, 0xaf, 0x23, 0x52, 0xc1, 0x67, 0x17, 0xf5, 0x66, 0x90, 0xe7, 0xe8, 0x07, 0xb8, 0x60,
    0x48, 0xe6, 0x1e, 0x53, 0xf3, 0x92, 0xa4, 0x72, 0x8c, 0x08, 0x15, 0x6e, 0x86, 0x00, 0x84, 0xfa,
    0xf4, 0x7f, 0x8a, 0x42, 0x19, 0xf6, 0xdb, 0xcd, 0x14, 0x8d, 0x50, 0x12, 0xba, 0x3c, 0x06, 0x4e,
    0xec, 0xb3, 0x35, 0x11, 0xa1, 0x88, 0x8e, 0x2b, 0x94, 0x99, 0xb7, 0x71, 0x74, 0xd3, 0xe4, 0xbf,
    0x3a, 0xde, 0x96, 0x0e, 0xbc, 0x0a, 0xed, 0x77, 0xfc, 0x37, 0x6b, 0x03, 0x79, 0x89, 0x62, 0xc6,
    0xd7, 0xc0, 0xd2, 0x7c, 0x6a, 0x8b, 0x22, 0xa3, 0x5b, 0x05, 0x5d, 0x02, 0x75, 0xd5, 0x61, 0xe3,
    0x18, 0x8f, 0x55, 0x51, 0xad, 0x1f, 0x0b, 0x5e, 0x85, 0xe5, 0xc2, 0x57, 0x63, 0xca, 0x3d, 0x6c,
    0xb4, 0xc5, 0xcc, 0x70, 0xb2, 0x91, 0x59, 0x0d, 0x47, 0x20, 0xc8, 0x4f, 0x58, 0xe0, 0x01, 0xe2,
    0x16, 0x38, 0xc4, 0x6f, 0x3b, 0x0f, 0x65, 0x46, 0xbe, 0x7e, 0x2d, 0x7b, 0x82, 0xf9, 0x40, 0xb5,
    0x1d, 0x73, 0xf8, 0xeb, 0x26, 0xc7, 0x87, 0x97, 0x25, 0x54, 0xb1, 0x28, 0xaa, 0x98, 0x9d, 0xa5,
    0x64, 0x6d, 0x7a, 0xd4, 0x10, 0x81, 0x44, 0xef, 0x49, 0xd6, 0xae, 0x2e, 0xdd, 0x76, 0x5c, 0x2f,
    0xa7, 0x1c, 0xc9, 0x09, 0x69, 0x9a, 0x83, 0xcf, 0x29, 0x39, 0xb9, 0xe9, 0x4c, 0xff, 0x43, 0xab,
];

/// The effective key size an RC2ParameterVersion stands for.
fn rc2_effective_bits(version: usize) -> Result<usize> {
    let bits = if version >= 256 {
        version
    } else {
        RC2_VERSION_FOR_BITS
            .iter()
            .position(|v| usize::from(*v) == version)
            .unwrap_or(0)
    };
    if bits == 0 || bits > RC2_MAX_EFFECTIVE_BITS {
        return Err(Error::Unsupported(format!(
            "RC2 with parameter version {version} (no effective key size of 1 to 1024 bits)"
        )));
    }
    Ok(bits)
}

/// RC2-CBC parameters: `RC2CBCParameter ::= SEQUENCE { rc2ParameterVersion INTEGER OPTIONAL,
/// iv OCTET STRING (SIZE(8)) }`, or the old form that is the IV alone (effective size unstated).
fn rc2_params(params: Option<Element<'_>>) -> Result<(Option<usize>, [u8; 8])> {
    let p = params.ok_or_else(|| bad("RC2-CBC without parameters"))?;
    if p.tag.is_universal(Tag::OCTET_STRING) {
        return Ok((None, iv_param::<8>(Some(p))?));
    }
    if !p.tag.is_universal(Tag::SEQUENCE) {
        return Err(bad(
            "RC2-CBC parameters that are neither a SEQUENCE nor an IV",
        ));
    }
    let mut fields = p.children()?;
    let mut next = fields.read("the RC2-CBC IV")?;
    let mut bits = None;
    if next.tag.is_universal(Tag::INTEGER) {
        bits = Some(rc2_effective_bits(small_uint(&next)?)?);
        next = fields.read("the RC2-CBC IV")?;
    }
    let iv = iv_param::<8>(Some(next))?;
    if fields.next().transpose()?.is_some() {
        return Err(bad("RC2-CBC parameters with trailing fields"));
    }
    Ok((bits, iv))
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
        // All blocks in one call: CBC decryption runs several blocks at once (AES-NI does 8).
        let (whole, _) = aes::cipher::inout::InOutBuf::from(blocks).into_chunks();
        self.0.decrypt_blocks_inout_mut(whole);
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
        ContentCipher::Rc2Cbc { effective_bits, iv } => {
            if !cipher.key_fits(key.len()) {
                return Err(Error::DecryptFailed);
            }
            let bits = effective_bits.unwrap_or(key.len() * 8);
            if !(1..=RC2_MAX_EFFECTIVE_BITS).contains(&bits) {
                return Err(Error::DecryptFailed);
            }
            // The effective key size is not part of the key, so the block cipher is made here
            // and handed to CBC as it is.
            let rc2 = rc2::Rc2::new_with_eff_key_len(key, bits);
            Box::new(Cbc(
                cbc::Decryptor::<rc2::Rc2>::inner_iv_slice_init(rc2, iv).map_err(wrong_key)?,
                8,
            ))
        }
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
    let mut cbc = CbcStream::new(cipher, key)?;
    for chunk in chunks {
        cbc.update(chunk?, out)?;
    }
    cbc.finish(out)
}

/// CBC decryption fed the ciphertext in pieces of any size: whole batches are decrypted and
/// written as they arrive; the last block is held back for the padding check in
/// [`CbcStream::finish`].
pub struct CbcStream {
    cbc: Box<dyn CbcBlocks>,
    bs: usize,
    pending: Zeroizing<Vec<u8>>,
    written: u64,
}

impl CbcStream {
    pub fn new(cipher: &ContentCipher, key: &[u8]) -> Result<Self> {
        let cbc = cbc_for(cipher, key)?;
        let bs = cbc.block_size();
        Ok(CbcStream {
            cbc,
            bs,
            pending: Zeroizing::new(Vec::with_capacity(CBC_BATCH + 2 * bs)),
            written: 0,
        })
    }

    /// Takes the next piece of ciphertext; writes what can be decrypted already.
    pub fn update(&mut self, mut chunk: &[u8], out: &mut dyn Write) -> Result<()> {
        let bs = self.bs;
        while !chunk.is_empty() {
            let room = CBC_BATCH + bs - self.pending.len();
            let take = room.min(chunk.len());
            self.pending.extend_from_slice(&chunk[..take]);
            chunk = &chunk[take..];
            // Keep at least one whole block back: it may be the last, carrying the padding.
            if self.pending.len() > CBC_BATCH + bs - 1 {
                let ready = (self.pending.len() - 1) / bs * bs;
                let ready = if ready == self.pending.len() {
                    ready - bs
                } else {
                    ready
                };
                self.cbc.decrypt(&mut self.pending[..ready]);
                write_all(out, &self.pending[..ready])?;
                self.written += ready as u64;
                self.pending.drain(..ready);
            }
        }
        Ok(())
    }

    /// Decrypts the rest, checks and strips the padding; returns the plaintext length.
    pub fn finish(mut self, out: &mut dyn Write) -> Result<u64> {
        let bs = self.bs;
        if self.pending.is_empty() || !self.pending.len().is_multiple_of(bs) {
            return Err(Error::DecryptFailed);
        }
        let len = self.pending.len();
        self.cbc.decrypt(&mut self.pending[..]);
        let unpadded = unpad(&self.pending, bs).ok_or(Error::DecryptFailed)?;
        let keep = len - unpadded;
        write_all(out, &self.pending[..keep])?;
        Ok(self.written + keep as u64)
    }
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

/// Decrypts AES-GCM content held in memory and checks the tag; the plaintext is returned only
/// when the tag verifies. `aad` is the DER of the authenticated attributes, if any.
pub fn decrypt_gcm(
    cipher: &ContentCipher,
    key: &[u8],
    aad: &[u8],
    mut ciphertext: Zeroizing<Vec<u8>>,
    tag: &[u8],
) -> Result<Zeroizing<Vec<u8>>> {
    let ContentCipher::AesGcm {
        key_len,
        nonce,
        tag_len,
    } = cipher
    else {
        return Err(Error::Unsupported("not a GCM cipher".into()));
    };
    if key.len() != *key_len {
        return Err(Error::DecryptFailed);
    }
    let mut gcm = crate::cms::gcm::GcmStream::new(key, nonce, *tag_len)?;
    gcm.decrypt(&mut ciphertext);
    gcm.finish(aad, tag)?;
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

    /// An RC2-CBC AlgorithmIdentifier with the given DER parameters.
    fn rc2_alg(params: &[u8]) -> Result<ContentCipher> {
        let mut body = vec![0x06, 0x08, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x03, 0x02];
        body.extend_from_slice(params);
        let mut der = vec![0x30, body.len() as u8];
        der.extend(body);
        ContentCipher::from_algorithm(&Reader::new(&der).read("test").unwrap())
    }

    /// `RC2CBCParameter` with a version given as INTEGER content bytes and an 8-byte IV.
    fn rc2_seq(version: &[u8]) -> Vec<u8> {
        let mut body = vec![0x02, version.len() as u8];
        body.extend_from_slice(version);
        body.extend_from_slice(&[0x04, 0x08, 1, 2, 3, 4, 5, 6, 7, 8]);
        let mut der = vec![0x30, body.len() as u8];
        der.extend(body);
        der
    }

    const IV8: [u8; 8] = [1, 2, 3, 4, 5, 6, 7, 8];

    #[test]
    fn rc2_effective_bits_from_the_parameter() {
        for (version, bits) in [
            (&[0x00, 0xa0][..], 40),  // 160, as openssl and Outlook write RC2-40
            (&[0x78][..], 64),        // 120
            (&[0x3a][..], 128),       // 58
            (&[0x34][..], 56),        // any other size from the RFC 2268 table
            (&[0x01, 0x00][..], 256), // 256 and more: the bits themselves
            (&[0x04, 0x00][..], 1024),
        ] {
            assert_eq!(
                rc2_alg(&rc2_seq(version)).unwrap(),
                ContentCipher::Rc2Cbc {
                    effective_bits: Some(bits),
                    iv: IV8
                },
                "version {version:02x?}"
            );
        }
        // The old form: the IV alone, the effective size that of the key.
        let old = rc2_alg(&[0x04, 0x08, 1, 2, 3, 4, 5, 6, 7, 8]).unwrap();
        assert_eq!(
            old,
            ContentCipher::Rc2Cbc {
                effective_bits: None,
                iv: IV8
            }
        );
        assert_eq!(old.for_key(5).name(), "RC2-40-CBC");
        assert_eq!(old.for_key(16).name(), "RC2-128-CBC");
        // A SEQUENCE without the version is the old form too.
        assert_eq!(
            rc2_alg(&[0x30, 0x0a, 0x04, 0x08, 1, 2, 3, 4, 5, 6, 7, 8]).unwrap(),
            old
        );
    }

    #[test]
    fn rc2_bad_parameters_are_refused() {
        // 0xbd stands for 0 effective bits; 1025 bits is more than RC2 has.
        for version in [&[0x00, 0xbd][..], &[0x04, 0x01][..]] {
            let err = rc2_alg(&rc2_seq(version));
            assert!(matches!(err, Err(Error::Unsupported(_))), "{err:?}");
        }
        let negative = rc2_alg(&rc2_seq(&[0xa0]));
        assert!(matches!(negative, Err(Error::BadInput(_))), "{negative:?}");
        for params in [
            &[][..],                                         // no parameters
            &[0x05, 0x00][..],                               // NULL
            &[0x04, 0x04, 1, 2, 3, 4][..],                   // a short IV
            &[0x30, 0x03, 0x02, 0x01, 0x3a][..],             // a version and no IV
            &[0x30, 0x05, 0x02, 0x01, 0x3a, 0x05, 0x00][..], // the IV is not an OCTET STRING
        ] {
            let err = rc2_alg(params);
            assert!(
                matches!(err, Err(Error::BadInput(_))),
                "{params:02x?}: {err:?}"
            );
        }
    }

    #[test]
    fn rc2_version_table_is_rfc_2268() {
        let mut seen = [false; 256];
        for v in RC2_VERSION_FOR_BITS {
            assert!(!seen[usize::from(v)], "{v} twice");
            seen[usize::from(v)] = true;
        }
        assert_eq!(RC2_VERSION_FOR_BITS[40], 160);
        assert_eq!(RC2_VERSION_FOR_BITS[64], 120);
        assert_eq!(RC2_VERSION_FOR_BITS[128], 58);
        for (bits, version) in RC2_VERSION_FOR_BITS.iter().enumerate().skip(1) {
            assert_eq!(rc2_effective_bits(usize::from(*version)).unwrap(), bits);
        }
    }

    /// Known answers from `openssl enc -rc2-40-cbc|-rc2-64-cbc|-rc2-cbc -provider legacy
    /// -K ... -iv 0001020304050607` over the same plaintext.
    #[test]
    fn rc2_known_answers_from_openssl() {
        let pt = b"RC2 known answer, over two blocks.";
        let iv = [0, 1, 2, 3, 4, 5, 6, 7];
        let cases: [(usize, &str, &str); 3] = [
            (
                40,
                "0102030405",
                "bca4259bb2c5421f20498ba716f4f5406e763ce0ae0cf5cd1adf8354183fd4de22121f4115e213d0",
            ),
            (
                64,
                "0102030405060708",
                "542574b71011ca80c7f6d2771f6ee4b180226bb13560038eed0167a3e773ba95699e247f3299ef6b",
            ),
            (
                128,
                "000102030405060708090a0b0c0d0e0f",
                "eeb8d6d5c9dd6a926c79fb918997b6ee31b0707fd47e61256ca3fac4c6f56d07bf58de4379c1691c",
            ),
        ];
        for (bits, key, ct) in cases {
            let key = hex::decode(key).unwrap();
            let ct = hex::decode(ct).unwrap();
            for effective_bits in [Some(bits), None] {
                let cipher = ContentCipher::Rc2Cbc { effective_bits, iv };
                assert!(cipher.key_fits(key.len()));
                let mut out = Vec::new();
                let n = decrypt_cbc(&cipher, &key, ct.chunks(3).map(Ok), &mut out).unwrap();
                assert_eq!((n as usize, &out[..]), (pt.len(), &pt[..]), "RC2-{bits}");
            }
        }
        // The same 40-bit key taken as 64 effective bits is a different key.
        let cipher = ContentCipher::Rc2Cbc {
            effective_bits: Some(64),
            iv,
        };
        let ct = hex::decode(cases[0].2).unwrap();
        let mut out = Vec::new();
        let got = decrypt_cbc(
            &cipher,
            &hex::decode(cases[0].1).unwrap(),
            std::iter::once(Ok(&ct[..])),
            &mut out,
        );
        assert!(got.is_err() || out != pt, "{got:?}");
    }

    #[test]
    fn rc2_key_lengths_and_warnings() {
        let rc2_40 = ContentCipher::Rc2Cbc {
            effective_bits: Some(40),
            iv: IV8,
        };
        assert_eq!(rc2_40.key_len(), 5);
        for len in [1, 5, 8, 16, 128] {
            assert!(rc2_40.key_fits(len), "{len}");
        }
        assert!(!rc2_40.key_fits(0) && !rc2_40.key_fits(129));
        let mut out = Vec::new();
        for key in [&[][..], &[0u8; 129][..]] {
            let err = decrypt_cbc(&rc2_40, key, std::iter::once(Ok(&[0u8; 16][..])), &mut out);
            assert!(matches!(err, Err(Error::DecryptFailed)), "{err:?}");
        }
        let aes = ContentCipher::AesCbc {
            key_len: 16,
            iv: [0; 16],
        };
        assert!(aes.key_fits(16) && !aes.key_fits(5) && !aes.key_fits(24));
        assert_eq!(aes.for_key(16), aes);
        assert_eq!(aes.weakness(), None);

        let w = rc2_40.weakness().unwrap();
        assert!(
            w.contains("RC2 with a 40-bit key: anyone can read such mail"),
            "{w}"
        );
        assert!(w.contains("ask the sender to use AES"), "{w}");
        assert_eq!(rc2_40.name(), "RC2-40-CBC");
        for bits in [64, 128] {
            let c = ContentCipher::Rc2Cbc {
                effective_bits: Some(bits),
                iv: IV8,
            };
            let w = c.weakness().unwrap();
            assert!(w.contains(&format!("RC2 with a {bits}-bit key")), "{w}");
        }
        let unknown = ContentCipher::Rc2Cbc {
            effective_bits: None,
            iv: IV8,
        };
        assert!(unknown.weakness().unwrap().contains("RC2"));
        assert_eq!(unknown.key_len(), 16);
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
