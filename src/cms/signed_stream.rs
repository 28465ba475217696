//! SignedData read from a stream, in constant memory: the counterpart of
//! [`crate::cms::verify::parse`] for messages of any size, read with the same reader as
//! [`crate::cms::stream`] (DER or BER, the content primitive or chunked in any nesting).
//!
//! The parts before the content (version, digest algorithms, content type) and after it
//! (certificates, CRLs, signer infos, together at most [`MAX_PART`]) are read whole and
//! interpreted by the in-memory code; the encapsulated content is handed out piece by piece, so
//! that it can be hashed (by every algorithm `digestAlgorithms` lists, which come first) and
//! held back by the caller while it streams past.

use crate::cms::ber::{Reader, Tag};
use crate::cms::content;
use crate::cms::stream::{Header, MAX_PART, Open, Source, parse_one, unexpected};
use crate::cms::verify::{self, SignedMessage};
use crate::error::Result;
use crate::keyops::HashAlg;
use const_oid::ObjectIdentifier;
use std::io::Read;

/// A SignedData being read: everything before the encapsulated content is known.
pub struct SignedStream<'r> {
    source: Source<'r>,
    /// The type of the encapsulated content (normally id-data).
    pub content_type: ObjectIdentifier,
    /// The digest algorithms the message lists before its content, those this crate implements.
    pub digest_algorithms: Vec<HashAlg>,
    /// ContentInfo, its `[0]`, the SignedData and the EncapsulatedContentInfo.
    open: [Open; 4],
    /// The `[0]` around the content and the content string's header; `None`: detached.
    content: Option<(Open, Header)>,
}

impl<'r> SignedStream<'r> {
    /// Reads a ContentInfo up to the encapsulated content.
    pub fn open(input: &'r mut dyn Read) -> Result<Self> {
        let mut s = Source::new(input);
        let ci = s.header(None)?;
        if !ci.tag.is_universal(Tag::SEQUENCE) {
            return Err(unexpected("a ContentInfo SEQUENCE"));
        }
        let ci = s.open(ci)?;
        let oid_raw = s.element(1024)?;
        verify::expect_signed_data(&content::read_oid(&mut Reader::new(&oid_raw))?)?;
        let explicit = s.header(None)?;
        if !explicit.tag.is_context(0) {
            return Err(unexpected("ContentInfo content that is not [0]"));
        }
        let explicit = s.open(explicit)?;
        let body = s.header(None)?;
        if !body.tag.is_universal(Tag::SEQUENCE) {
            return Err(unexpected("a SignedData SEQUENCE"));
        }
        let body = s.open(body)?;
        let version = s.element(64)?;
        parse_one(&version, "a version")?.expect_universal(Tag::INTEGER, "a version")?;
        let algs = s.element(64 << 10)?;
        let algs = parse_one(&algs, "the digest algorithms")?
            .expect_universal(Tag::SET, "the digest algorithms")?;
        let digest_algorithms = verify::digest_algorithms(&algs)?;
        let encap = s.header(None)?;
        if !encap.tag.is_universal(Tag::SEQUENCE) {
            return Err(unexpected("EncapsulatedContentInfo"));
        }
        let encap = s.open(encap)?;
        let ct_raw = s.element(1024)?;
        let content_type = content::read_oid(&mut Reader::new(&ct_raw))?;
        let content = if s.at_end(encap)? {
            None
        } else {
            let h = s.header(None)?;
            if !h.tag.is_context(0) {
                return Err(unexpected("eContent that is not [0]"));
            }
            let explicit = s.open(h)?;
            if s.at_end(explicit)? {
                return Err(unexpected("the content"));
            }
            Some((explicit, s.header(None)?))
        };
        Ok(SignedStream {
            source: s,
            content_type,
            digest_algorithms,
            open: [ci, explicit, body, encap],
            content,
        })
    }

    /// True for a signature without its content (a `.p7s`).
    pub fn is_detached(&self) -> bool {
        self.content.is_none()
    }

    /// Hands the encapsulated content (nothing when detached) to `sink` piece by piece, then
    /// reads the rest of the message: its certificates and signers, without the content.
    pub fn read_content(
        mut self,
        sink: &mut dyn FnMut(&mut [u8]) -> Result<()>,
    ) -> Result<SignedMessage> {
        let s = &mut self.source;
        let [ci, explicit, body, encap] = self.open;
        if let Some((content_explicit, string)) = self.content {
            s.stream_string(string, 0, sink)?;
            s.close(content_explicit)?;
        }
        s.close(encap)?;
        // Certificates, CRLs and signer infos: small, read whole (bounded together).
        let mut rest = Vec::new();
        while !s.at_end(body)? {
            s.element_into(&mut rest, MAX_PART, 0)?;
        }
        s.close(body)?;
        s.close(explicit)?;
        s.close(ci)?;
        let (certificates, signers) = verify::read_after_content(&mut Reader::new(&rest))?;
        Ok(SignedMessage {
            content_type: self.content_type,
            content: None,
            certificates,
            signers,
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::cms::stream::tests_support::to_ber;
    use crate::error::Error;
    use crate::keyops::{KeyError, SignAlg};
    use crate::test_support::Trickle;

    /// A key that signs with made-up bytes: only the structure matters here.
    struct Scribble;

    impl crate::keyops::KeyBackend for Scribble {
        fn certificates(&mut self) -> Result<Vec<crate::keyops::KeyCertificate>> {
            Ok(Vec::new())
        }
        fn rsa_decrypt(
            &mut self,
            _: &[u8],
            _: &crate::keyops::RsaPadding,
            _: &[u8],
        ) -> std::result::Result<zeroize::Zeroizing<Vec<u8>>, KeyError> {
            Err(KeyError::Failed)
        }
        fn rsa_raw(
            &mut self,
            _: &[u8],
            _: &[u8],
        ) -> std::result::Result<zeroize::Zeroizing<Vec<u8>>, KeyError> {
            Err(KeyError::Failed)
        }
        fn sign(
            &mut self,
            _: &[u8],
            _: SignAlg,
            _: &[u8],
        ) -> std::result::Result<Vec<u8>, KeyError> {
            Ok(vec![7; 256])
        }
    }

    /// A SignedData as this crate's signer writes it (DER, SHA-256, one signer with the fixture
    /// certificate), with `content` inside or detached.
    fn signed(content: &[u8], detached: bool) -> Vec<u8> {
        let pem = std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/softhsm-fixtures/alice-sign.pem"
        ))
        .unwrap();
        let cert = crate::certinfo::load_certificates(&pem).unwrap().remove(0);
        let req = crate::cms::signed::SignRequest {
            content,
            detached,
            alg: SignAlg::RsaPkcs1v15(HashAlg::Sha256),
            signer: &cert,
            key_id: &[1],
            encryption_cert: None,
            extra_certs: &[],
            signing_time: std::time::SystemTime::now(),
        };
        crate::cms::signed::sign(&mut Scribble, &req).unwrap()
    }

    /// Reads `msg` with a reader that gives out `step` bytes at a time.
    fn streamed(msg: &[u8], step: usize) -> Result<(Vec<u8>, Vec<HashAlg>, SignedMessage)> {
        let mut input = Trickle(msg, step);
        let stream = SignedStream::open(&mut input)?;
        let algs = stream.digest_algorithms.clone();
        let mut content = Vec::new();
        let message = stream.read_content(&mut |piece| {
            content.extend_from_slice(piece);
            Ok(())
        })?;
        Ok((content, algs, message))
    }

    #[test]
    fn der_and_ber_give_what_the_in_memory_parser_gives() {
        let body: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        for detached in [false, true] {
            let der = signed(&body, detached);
            let in_memory = verify::parse(&der).unwrap();
            for msg in [der.clone(), to_ber(&der, 1000), to_ber(&der, 7)] {
                for step in [1, 13, 4096, usize::MAX] {
                    let (content, algs, message) = streamed(&msg, step).unwrap();
                    let expected = in_memory.content.clone().unwrap_or_default();
                    assert_eq!(content, expected, "detached {detached} step {step}");
                    assert_eq!(algs, [HashAlg::Sha256]);
                    assert_eq!(message.content_type, in_memory.content_type);
                    assert_eq!(message.certificates, in_memory.certificates);
                    assert_eq!(message.signers.len(), in_memory.signers.len());
                    assert_eq!(message.signers[0].info, in_memory.signers[0].info);
                }
            }
        }
    }

    #[test]
    fn truncation_anywhere_is_an_error_never_a_panic() {
        let der = signed(&[0x41; 3000], false);
        let ber = to_ber(&der, 100);
        for msg in [&der, &ber] {
            for cut in (0..msg.len()).step_by(29).chain([msg.len() - 1]) {
                assert!(
                    matches!(streamed(&msg[..cut], 64), Err(Error::BadInput(_))),
                    "cut at {cut}"
                );
            }
        }
    }

    #[test]
    fn an_envelope_is_refused_as_the_in_memory_parser_refuses_it() {
        let env = crate::cms::stream::tests_support::message(&[1; 32], false);
        let streamed = streamed(&env, 4096).err().unwrap().to_string();
        let in_memory = verify::parse(&env).err().unwrap().to_string();
        assert_eq!(streamed, in_memory);
    }
}
