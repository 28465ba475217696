//! Encrypting content of any size as it is written: AES-CBC or AES-GCM over the content, framed
//! as an EnvelopedData or AuthEnvelopedData ContentInfo in DER.
//!
//! DER needs every length before the content. The content's length is given up front (the
//! caller measured it), so the whole header is written first, the ciphertext follows as it is
//! made, and the padding block (CBC) or the tag (GCM) ends it. Memory stays one batch whatever
//! the size; a buffer in memory goes through the same code (see [`super::encrypt::encrypt`]),
//! so small and large messages are built alike.

use super::encrypt::{Cipher, GcmParameters, Sealing, encode_err};
use super::gcm::GcmStream;
use super::oids;
use crate::error::{Error, Result};
use aes::cipher::{BlockEncryptMut, KeyIvInit};
use der::Encode;
use der::asn1::{Any, OctetString};
use spki::AlgorithmIdentifierOwned;
use std::io::Write;
use zeroize::Zeroizing;

/// Content encrypted per write to the output: a multiple of the block size.
const BATCH: usize = 256 * 1024;
/// The GCM tag length we write (RFC 5084's default and the only one peers all read).
const TAG_LEN: usize = 16;

/// CBC encryption of whole blocks in place, for any AES key size.
trait CbcBlocks {
    fn encrypt(&mut self, blocks: &mut [u8]);
}

impl<E: BlockEncryptMut> CbcBlocks for E {
    fn encrypt(&mut self, blocks: &mut [u8]) {
        let (whole, _) = aes::cipher::inout::InOutBuf::from(blocks).into_chunks();
        self.encrypt_blocks_inout_mut(whole);
    }
}

enum Mode {
    Cbc(Box<dyn CbcBlocks>),
    Gcm(Box<GcmStream>),
}

/// The content being encrypted: write it, then [`Sealer::finish`].
pub struct Sealer<W: Write> {
    out: W,
    mode: Mode,
    pending: Zeroizing<Vec<u8>>,
    expected: u64,
    seen: u64,
}

impl Sealing {
    /// Writes the ContentInfo header for `content_len` bytes of content to `out` and returns
    /// the writer that takes exactly that content.
    pub fn seal<W: Write>(self, content_len: u64, mut out: W) -> Result<Sealer<W>> {
        let head = self.head(content_len)?;
        out.write_all(&head)
            .map_err(|e| Error::io("cannot write the encrypted output", e))?;
        let bad_key = |_| Error::BadInput("cannot set up the content cipher".into());
        let (key, iv) = (&self.cek[..], &self.iv[..]);
        let mode = match self.cipher {
            Cipher::Aes128Cbc => Mode::Cbc(Box::new(
                cbc::Encryptor::<aes::Aes128>::new_from_slices(key, iv).map_err(bad_key)?,
            )),
            Cipher::Aes192Cbc => Mode::Cbc(Box::new(
                cbc::Encryptor::<aes::Aes192>::new_from_slices(key, iv).map_err(bad_key)?,
            )),
            Cipher::Aes256Cbc => Mode::Cbc(Box::new(
                cbc::Encryptor::<aes::Aes256>::new_from_slices(key, iv).map_err(bad_key)?,
            )),
            Cipher::Aes128Gcm | Cipher::Aes256Gcm => {
                Mode::Gcm(Box::new(GcmStream::new(key, &iv[..12], TAG_LEN)?))
            }
        };
        Ok(Sealer {
            out,
            mode,
            pending: Zeroizing::new(Vec::with_capacity(BATCH)),
            expected: content_len,
            seen: 0,
        })
    }

    /// Everything before the ciphertext's first byte.
    fn head(&self, content_len: u64) -> Result<Vec<u8>> {
        let gcm = self.cipher.is_gcm();
        let ciphertext_len = if gcm {
            content_len
        } else {
            (content_len / 16 + 1) * 16
        };
        let (oid, params) = match self.cipher {
            Cipher::Aes128Cbc => (oids::AES128_CBC, None),
            Cipher::Aes192Cbc => (oids::AES192_CBC, None),
            Cipher::Aes256Cbc => (oids::AES256_CBC, None),
            Cipher::Aes128Gcm => (oids::AES128_GCM, Some(self.gcm_params()?)),
            Cipher::Aes256Gcm => (oids::AES256_GCM, Some(self.gcm_params()?)),
        };
        let params = match params {
            Some(p) => p,
            None => Any::encode_from(&OctetString::new(self.iv.to_vec()).map_err(encode_err)?)
                .map_err(encode_err)?,
        };
        let alg = AlgorithmIdentifierOwned {
            oid,
            parameters: Some(params),
        };
        // EncryptedContentInfo { contentType, contentEncryptionAlgorithm,
        //                        [0] IMPLICIT OCTET STRING }
        let mut eci_fields = oids::DATA.to_der().map_err(encode_err)?;
        eci_fields.extend(alg.to_der().map_err(encode_err)?);
        eci_fields.extend(header(0x80, ciphertext_len)?);
        let eci_len = eci_fields.len() as u64 + ciphertext_len;
        // (Auth)EnvelopedData { version, recipientInfos, encryptedContentInfo[, mac] }
        let mut body = self.version.to_der().map_err(encode_err)?;
        body.extend_from_slice(&self.recip_infos);
        body.extend(header(0x30, eci_len)?);
        body.extend(eci_fields);
        let mac_len = if gcm { 2 + TAG_LEN as u64 } else { 0 };
        let body_len = body.len() as u64 + ciphertext_len + mac_len;
        // ContentInfo { contentType, [0] EXPLICIT body }
        let content_type = if gcm {
            oids::AUTH_ENVELOPED_DATA
        } else {
            oids::ENVELOPED_DATA
        };
        let mut explicit = header(0xa0, header(0x30, body_len)?.len() as u64 + body_len)?;
        explicit.extend(header(0x30, body_len)?);
        let oid = content_type.to_der().map_err(encode_err)?;
        let total = (oid.len() + explicit.len()) as u64 + body_len;
        let mut head = header(0x30, total)?;
        head.extend(oid);
        head.extend(explicit);
        head.extend(body);
        Ok(head)
    }

    fn gcm_params(&self) -> Result<Any> {
        let params = GcmParameters {
            nonce: OctetString::new(self.iv[..12].to_vec()).map_err(encode_err)?,
            icv_len: TAG_LEN as u8,
        };
        Any::encode_from(&params).map_err(encode_err)
    }
}

/// A DER tag and definite length.
fn header(tag: u8, len: u64) -> Result<Vec<u8>> {
    let len = usize::try_from(len)
        .map_err(|_| Error::Unsupported("content too large for this platform".into()))?;
    let mut out = vec![tag];
    super::ber::push_length(len, &mut out);
    Ok(out)
}

impl<W: Write> Sealer<W> {
    fn encrypt_pending(&mut self) -> std::io::Result<()> {
        match &mut self.mode {
            Mode::Cbc(cbc) => cbc.encrypt(&mut self.pending),
            Mode::Gcm(gcm) => gcm
                .encrypt(&mut self.pending)
                .map_err(|e| std::io::Error::other(e.to_string()))?,
        }
        self.out.write_all(&self.pending)?;
        self.pending.clear();
        Ok(())
    }

    /// Pads (CBC) or tags (GCM) the content; returns the output. Content of another length than
    /// announced is refused: the header already said how long it is.
    pub fn finish(mut self) -> Result<W> {
        if self.seen != self.expected {
            return Err(changed());
        }
        let write_err = |e| Error::io("cannot write the encrypted output", e);
        if let Mode::Cbc(_) = self.mode {
            let len = self.pending.len();
            let pad = 16 - len % 16;
            self.pending.resize(len + pad, pad as u8);
        }
        self.encrypt_pending().map_err(write_err)?;
        if let Mode::Gcm(gcm) = self.mode {
            let tag = gcm.tag(b"")?;
            let mac = OctetString::new(tag.to_vec()).map_err(encode_err)?;
            self.out
                .write_all(&mac.to_der().map_err(encode_err)?)
                .map_err(write_err)?;
        }
        self.out.flush().map_err(write_err)?;
        Ok(self.out)
    }
}

fn changed() -> Error {
    Error::BadInput(
        "the input changed while it was being encrypted (another length on the second reading)"
            .into(),
    )
}

impl<W: Write> Write for Sealer<W> {
    fn write(&mut self, mut data: &[u8]) -> std::io::Result<usize> {
        let n = data.len();
        self.seen += n as u64;
        if self.seen > self.expected {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                changed().to_string(),
            ));
        }
        while !data.is_empty() {
            let take = (BATCH - self.pending.len()).min(data.len());
            self.pending.extend_from_slice(&data[..take]);
            data = &data[take..];
            if self.pending.len() == BATCH {
                self.encrypt_pending()?;
            }
        }
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::cms::encrypt::KeyTransport;
    use crate::cms::envelope::Envelope;

    fn cert() -> x509_cert::Certificate {
        use der::DecodePem;
        let pem = std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/softhsm-fixtures/alice-enc.pem"
        ))
        .unwrap();
        x509_cert::Certificate::from_pem(&pem).unwrap()
    }

    /// Sealed here, read back by the decrypting side's parser and ciphers, for lengths around
    /// the block and batch sizes and every cipher.
    #[test]
    fn sealed_content_parses_and_decrypts() {
        let cert = cert();
        for cipher in [
            Cipher::Aes128Cbc,
            Cipher::Aes192Cbc,
            Cipher::Aes256Cbc,
            Cipher::Aes128Gcm,
            Cipher::Aes256Gcm,
        ] {
            for len in [0usize, 1, 15, 16, 17, 200, BATCH - 1, BATCH, BATCH + 17] {
                let plain: Vec<u8> = (0..len).map(|i| (i * 13 % 249) as u8).collect();
                let sealing = crate::cms::encrypt::prepare(
                    std::slice::from_ref(&cert),
                    cipher,
                    KeyTransport::Pkcs1v15,
                )
                .unwrap();
                let cek = sealing.cek.clone();
                let mut sealer = sealing.seal(len as u64, Vec::new()).unwrap();
                for piece in plain.chunks(7919) {
                    sealer.write_all(piece).unwrap();
                }
                let der = sealer.finish().unwrap();
                // Strict DER that the `cms` types (which built it before) encode the same.
                let parsed =
                    <cms::content_info::ContentInfo as der::Decode>::from_der(&der).unwrap();
                assert!(parsed.to_der().unwrap() == der, "{cipher:?} {len}");
                let envelope = Envelope::parse(&der).unwrap();
                let mut out = Vec::new();
                envelope.decrypt_content(&cek, &mut out).unwrap();
                assert!(out == plain, "{cipher:?} {len}");
            }
        }
    }

    #[test]
    fn a_length_other_than_announced_is_refused() {
        let cert = cert();
        for (announced, given) in [(10u64, 9usize), (10, 11)] {
            let sealing = crate::cms::encrypt::prepare(
                std::slice::from_ref(&cert),
                Cipher::Aes256Cbc,
                KeyTransport::Pkcs1v15,
            )
            .unwrap();
            let mut sealer = sealing.seal(announced, Vec::new()).unwrap();
            let wrote = sealer.write_all(&vec![0u8; given]);
            assert!(wrote.is_err() || sealer.finish().is_err());
        }
    }
}
