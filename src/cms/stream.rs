//! EnvelopedData and AuthEnvelopedData read from a stream, in constant memory.
//!
//! [`crate::cms::envelope`] parses a message held in memory; this reads the same structure from
//! any `Read` (a file, stdin) a buffer at a time, for messages of any size. The small parts
//! before the content (version, originator info, recipient infos, content type, algorithm) are
//! read whole, bounded by [`MAX_PART`], and interpreted by the same code as in memory; the
//! encrypted content, definite or indefinite, primitive or chunked in any nesting, is handed out
//! piece by piece as it is read; the parts after it (authenticated attributes, the tag) are read
//! whole again. No length in the input is trusted for an allocation: a length larger than what
//! follows ends in a "truncated" error when the data runs out.
//!
//! Hand-written like `ber`, for the same reason: `der` wants the whole message in memory and
//! rejects BER, and `cms` 0.2 has no streaming decoder.

use crate::cms::ber::{self, BerError, Reader, Tag};
use crate::cms::content::{self, ContentCipher};
use crate::cms::envelope::{self, EnvelopeKind};
use crate::cms::recipient::{self, Recipient};
use crate::error::{Error, Result};
use const_oid::ObjectIdentifier;
use std::io::Read;

/// The largest part before or after the content that is read whole (recipient infos with many
/// recipients, originator certificates).
pub const MAX_PART: usize = 8 << 20;

/// The read buffer.
const BUFFER: usize = 256 << 10;

/// Deepest nesting of a chunked content string.
const MAX_DEPTH: usize = 32;

/// A buffered reader that counts what it consumed; also the reader of [`crate::cms::signed_stream`].
pub(crate) struct Source<'r> {
    input: &'r mut dyn Read,
    buf: Vec<u8>,
    start: usize,
    end: usize,
    pos: u64,
}

/// An element's header.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Header {
    pub(crate) tag: Tag,
    len: Option<u64>,
}

/// A constructed element still open: where it ends (`None`: indefinite, at an end-of-contents).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Open {
    end: Option<u64>,
}

fn malformed(e: BerError) -> Error {
    Error::BadInput(format!("malformed CMS data: {e}"))
}

pub(crate) fn unexpected(what: &'static str) -> Error {
    malformed(BerError::Unexpected(what))
}

impl<'r> Source<'r> {
    pub(crate) fn new(input: &'r mut dyn Read) -> Self {
        Source {
            input,
            buf: vec![0; BUFFER],
            start: 0,
            end: 0,
            pos: 0,
        }
    }

    fn available(&self) -> &[u8] {
        &self.buf[self.start..self.end]
    }

    /// Makes at least `want` bytes available unless the input ends first; returns how many are.
    fn fill(&mut self, want: usize) -> Result<usize> {
        if self.end - self.start >= want {
            return Ok(self.end - self.start);
        }
        if self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        while self.end < want && self.end < self.buf.len() {
            match self.input.read(&mut self.buf[self.end..]) {
                Ok(0) => break,
                Ok(n) => self.end += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                // A text wrapping decoded on the way (mime::stream) found bad base64: the
                // message is malformed, not the disk.
                Err(e) if e.kind() == std::io::ErrorKind::InvalidData => {
                    return Err(Error::BadInput(e.to_string()));
                }
                Err(e) => return Err(Error::io("cannot read the message", e)),
            }
        }
        Ok(self.end - self.start)
    }

    fn consume(&mut self, n: usize) {
        self.start += n;
        self.pos += n as u64;
    }

    /// Reads the next element's header; its raw bytes are appended to `raw` if given.
    pub(crate) fn header(&mut self, raw: Option<&mut Vec<u8>>) -> Result<Header> {
        if self.fill(16)? == 0 {
            return Err(malformed(BerError::Truncated));
        }
        let (tag, len, n) = ber::read_header(self.available()).map_err(malformed)?;
        if let Some(raw) = raw {
            raw.extend_from_slice(&self.available()[..n]);
        }
        self.consume(n);
        Ok(Header {
            tag,
            len: len.map(|l| l as u64),
        })
    }

    /// True at an end-of-contents marker (not consumed).
    fn at_eoc(&mut self) -> Result<bool> {
        if self.fill(2)? < 2 {
            return Err(malformed(BerError::Truncated));
        }
        Ok(self.available()[..2] == [0, 0])
    }

    pub(crate) fn open(&self, h: Header) -> Result<Open> {
        if !h.tag.constructed {
            return Err(unexpected(
                "a primitive element where a constructed one belongs",
            ));
        }
        let end = match h.len {
            Some(len) => Some(
                self.pos
                    .checked_add(len)
                    .ok_or_else(|| malformed(BerError::BadLength))?,
            ),
            None => None,
        };
        Ok(Open { end })
    }

    /// Whether the open element has no more children.
    pub(crate) fn at_end(&mut self, open: Open) -> Result<bool> {
        match open.end {
            Some(end) if self.pos > end => Err(malformed(BerError::BadLength)),
            Some(end) => Ok(self.pos == end),
            None => self.at_eoc(),
        }
    }

    /// Ends the open element: exactly at its length, or at its end-of-contents marker.
    pub(crate) fn close(&mut self, open: Open) -> Result<()> {
        match open.end {
            Some(end) if self.pos == end => Ok(()),
            Some(_) => Err(malformed(BerError::BadLength)),
            None => {
                if !self.at_eoc()? {
                    return Err(unexpected("more elements where the end belongs"));
                }
                self.consume(2);
                Ok(())
            }
        }
    }

    /// Copies `len` content bytes into `out`.
    fn copy(&mut self, mut len: u64, out: &mut Vec<u8>) -> Result<()> {
        while len > 0 {
            let avail = self.fill(1)?;
            if avail == 0 {
                return Err(malformed(BerError::Truncated));
            }
            let n = avail.min(usize::try_from(len).unwrap_or(usize::MAX));
            out.extend_from_slice(&self.available()[..n]);
            self.consume(n);
            len -= n as u64;
        }
        Ok(())
    }

    /// Reads a whole element (header and content, any nesting) as its raw bytes, up to `max`.
    pub(crate) fn element(&mut self, max: usize) -> Result<Vec<u8>> {
        let mut raw = Vec::new();
        self.element_into(&mut raw, max, 0)?;
        Ok(raw)
    }

    /// Appends a whole element to `raw`, failing when `raw` would grow beyond `max` in all.
    pub(crate) fn element_into(
        &mut self,
        raw: &mut Vec<u8>,
        max: usize,
        depth: usize,
    ) -> Result<()> {
        if depth > MAX_DEPTH {
            return Err(malformed(BerError::TooDeep));
        }
        let too_large = || {
            Error::BadInput(format!(
                "a part of the message before or after the content is larger than {} MiB",
                max >> 20
            ))
        };
        let h = self.header(Some(raw))?;
        match h.len {
            Some(len) => {
                if raw.len() as u64 + len > max as u64 {
                    return Err(too_large());
                }
                self.copy(len, raw)
            }
            None => loop {
                if self.at_eoc()? {
                    raw.extend_from_slice(&[0, 0]);
                    self.consume(2);
                    return Ok(());
                }
                self.element_into(raw, max, depth + 1)?;
                if raw.len() > max {
                    return Err(too_large());
                }
            },
        }
    }

    /// Hands the content of a string element (primitive or chunked) to `sink`, a piece at a
    /// time; returns its length.
    pub(crate) fn stream_string(
        &mut self,
        h: Header,
        depth: usize,
        sink: &mut dyn FnMut(&mut [u8]) -> Result<()>,
    ) -> Result<u64> {
        if depth > MAX_DEPTH {
            return Err(malformed(BerError::TooDeep));
        }
        if !h.tag.constructed {
            let Some(mut len) = h.len else {
                return Err(malformed(BerError::IndefinitePrimitive));
            };
            let total = len;
            while len > 0 {
                let avail = self.fill(1)?;
                if avail == 0 {
                    return Err(malformed(BerError::Truncated));
                }
                let n = avail.min(usize::try_from(len).unwrap_or(usize::MAX));
                let (start, end) = (self.start, self.start + n);
                sink(&mut self.buf[start..end])?;
                self.consume(n);
                len -= n as u64;
            }
            return Ok(total);
        }
        let open = self.open(h)?;
        let mut total = 0u64;
        while !self.at_end(open)? {
            let child = self.header(None)?;
            if !child.tag.is_universal(Tag::OCTET_STRING) {
                return Err(unexpected("a string chunk with a foreign tag"));
            }
            total += self.stream_string(child, depth + 1, sink)?;
        }
        self.close(open)?;
        Ok(total)
    }
}

/// An envelope being read from a stream: the header is known, the content is next.
pub struct EnvelopeStream<'r> {
    source: Source<'r>,
    pub kind: EnvelopeKind,
    pub recipients: Vec<Recipient>,
    /// The content type of what is inside (normally id-data).
    pub content_type: ObjectIdentifier,
    pub cipher: ContentCipher,
    /// ContentInfo, its `[0]`, the (Auth)EnvelopedData and the EncryptedContentInfo.
    open: [Open; 4],
    /// The header of the encrypted content; `None` when it is detached.
    content: Option<Header>,
}

/// What follows the content: the authenticated attributes (DER, SET tag; empty when absent)
/// and the authentication tag (AuthEnvelopedData only).
pub struct Trailer {
    pub auth_attrs: Vec<u8>,
    pub mac: Vec<u8>,
}

/// One whole small element, parsed.
pub(crate) fn parse_one<'a>(raw: &'a [u8], what: &'static str) -> Result<ber::Element<'a>> {
    Ok(Reader::new(raw).read(what)?)
}

impl<'r> EnvelopeStream<'r> {
    /// Reads a ContentInfo up to the encrypted content.
    pub fn open(input: &'r mut dyn Read) -> Result<Self> {
        let mut s = Source::new(input);
        let ci = s.header(None)?;
        if !ci.tag.is_universal(Tag::SEQUENCE) {
            return Err(unexpected("a ContentInfo SEQUENCE"));
        }
        let ci = s.open(ci)?;
        let oid_raw = s.element(1024)?;
        let oid = content::read_oid(&mut Reader::new(&oid_raw))?;
        let kind = envelope::kind_of(&oid)?;
        let explicit = s.header(None)?;
        if !explicit.tag.is_context(0) {
            return Err(unexpected("ContentInfo content that is not [0]"));
        }
        let explicit = s.open(explicit)?;
        let body = s.header(None)?;
        if !body.tag.is_universal(Tag::SEQUENCE) {
            return Err(unexpected("an EnvelopedData SEQUENCE"));
        }
        let body = s.open(body)?;
        let version = s.element(64)?;
        parse_one(&version, "a version")?.expect_universal(Tag::INTEGER, "a version")?;
        let mut infos = s.element(MAX_PART)?;
        if parse_one(&infos, "the recipient infos")?.tag.is_context(0) {
            // originatorInfo: the sender's certificates and CRLs, not needed to decrypt.
            infos = s.element(MAX_PART)?;
        }
        let recipients = recipient::parse_recipients(&parse_one(&infos, "the recipient infos")?)?;
        drop(infos);
        let eci = s.header(None)?;
        if !eci.tag.is_universal(Tag::SEQUENCE) {
            return Err(unexpected("an EncryptedContentInfo"));
        }
        let eci = s.open(eci)?;
        let ct_raw = s.element(1024)?;
        let content_type = content::read_oid(&mut Reader::new(&ct_raw))?;
        let alg = s.element(64 << 10)?;
        let cipher =
            ContentCipher::from_algorithm(&parse_one(&alg, "the content-encryption algorithm")?)?;
        envelope::check_cipher(kind, &cipher)?;
        let content = if s.at_end(eci)? {
            None
        } else {
            let h = s.header(None)?;
            if !h.tag.is_context(0) {
                return Err(unexpected("encryptedContent that is not [0]"));
            }
            Some(h)
        };
        Ok(EnvelopeStream {
            source: s,
            kind,
            recipients,
            content_type,
            cipher,
            open: [ci, explicit, body, eci],
            content,
        })
    }

    /// Hands the encrypted content to `sink` piece by piece (each piece may be decrypted in
    /// place), then reads the rest of the message and returns what follows the content.
    pub fn read_content(
        mut self,
        sink: &mut dyn FnMut(&mut [u8]) -> Result<()>,
    ) -> Result<Trailer> {
        let Some(content) = self.content else {
            return Err(Error::Unsupported(
                "the encrypted content is detached (not in the message); it cannot be decrypted"
                    .into(),
            ));
        };
        let s = &mut self.source;
        s.stream_string(content, 0, sink)?;
        let [ci, explicit, body, eci] = self.open;
        s.close(eci)?;
        let mut trailer = Trailer {
            auth_attrs: Vec::new(),
            mac: Vec::new(),
        };
        if self.kind == EnvelopeKind::AuthEnveloped {
            let mut raw = s.element(MAX_PART)?;
            let mut e = parse_one(&raw, "the authentication tag")?;
            if e.tag.is_context(1) {
                trailer.auth_attrs = e.to_der_with_tag(Tag {
                    class: ber::Class::Universal,
                    constructed: true,
                    number: Tag::SET,
                })?;
                raw = s.element(1024)?;
                e = parse_one(&raw, "the authentication tag")?;
            }
            if !e.tag.is_universal(Tag::OCTET_STRING) {
                return Err(unexpected(
                    "an authentication tag that is not an OCTET STRING",
                ));
            }
            trailer.mac = e.octets()?;
        }
        // Unprotected attributes: not needed, but they must be well formed.
        while !s.at_end(body)? {
            s.element(MAX_PART)?;
        }
        s.close(body)?;
        s.close(explicit)?;
        s.close(ci)?;
        Ok(trailer)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::cms::envelope::Envelope;
    use crate::test_support::Trickle;

    /// An EnvelopedData with one KTRI recipient, AES-128-CBC, content "0123456789abcdef"
    /// (16 bytes of ciphertext made up: only the structure matters here).
    fn der_message(content: &[u8], auth: bool) -> Vec<u8> {
        crate::cms::stream::tests_support::message(content, auth)
    }

    /// Reads `msg` through the stream with a reader that gives out `step` bytes at a time.
    fn streamed(msg: &[u8], step: usize) -> Result<(Vec<u8>, Trailer, usize)> {
        let mut input = Trickle(msg, step);
        let env = EnvelopeStream::open(&mut input)?;
        let recipients = env.recipients.len();
        let mut content = Vec::new();
        let trailer = env.read_content(&mut |piece| {
            content.extend_from_slice(piece);
            Ok(())
        })?;
        Ok((content, trailer, recipients))
    }

    #[test]
    fn der_and_ber_give_what_the_in_memory_parser_gives() {
        let body: Vec<u8> = (0..100_000u32).map(|i| (i % 253) as u8).collect();
        for auth in [false, true] {
            let der = der_message(&body, auth);
            let in_memory = Envelope::parse(&der).unwrap();
            let mut expected = Vec::new();
            for chunk in in_memory.content_chunks() {
                expected.extend_from_slice(chunk.unwrap());
            }
            for ber in [
                der.clone(),
                tests_support::to_ber(&der, 1000),
                tests_support::to_ber(&der, 7),
            ] {
                for step in [1, 13, 4096, usize::MAX] {
                    let (content, trailer, recipients) = streamed(&ber, step).unwrap();
                    assert_eq!(content, expected, "auth {auth} step {step}");
                    assert_eq!(recipients, in_memory.recipients.len());
                    assert_eq!(trailer.mac, in_memory.mac());
                }
            }
        }
    }

    #[test]
    fn truncation_anywhere_is_an_error_never_a_panic() {
        let der = der_message(&[0x41; 3000], true);
        let ber = tests_support::to_ber(&der, 100);
        for msg in [&der, &ber] {
            for cut in (0..msg.len()).step_by(37).chain([msg.len() - 1]) {
                assert!(
                    matches!(streamed(&msg[..cut], 64), Err(Error::BadInput(_))),
                    "cut at {cut}"
                );
            }
        }
    }

    #[test]
    fn lengths_are_not_trusted_for_allocation() {
        let der = der_message(&[1; 32], false);
        // Claim a 2^62-byte content in a definite primitive string: it runs out, nothing more.
        let mut msg = der.clone();
        let at = msg.windows(2).position(|w| w == [0x80, 0x20]).unwrap();
        msg.splice(at..at + 2, [0x80, 0x88, 0x40, 0, 0, 0, 0, 0, 0, 0]);
        assert!(matches!(streamed(&msg, 4096), Err(Error::BadInput(_))));
    }
}

/// Messages for the tests here and in `smime`: built from the in-memory parser's point of view.
#[cfg(test)]
pub(crate) mod tests_support {
    #![allow(clippy::unwrap_used)]
    use crate::cms::ber::{Element, Reader, Tag, push_length};

    fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
        let mut out = vec![tag];
        push_length(content.len(), &mut out);
        out.extend_from_slice(content);
        out
    }

    /// A ContentInfo with (Auth)EnvelopedData: one KTRI recipient (made-up key), AES-128-CBC or
    /// AES-128-GCM, `content` as the encrypted content, and for GCM a 16-byte tag.
    pub fn message(content: &[u8], auth: bool) -> Vec<u8> {
        let oid = |dotted: &str| {
            use der::Encode;
            const_oid::ObjectIdentifier::new_unwrap(dotted)
                .to_der()
                .unwrap()
        };
        let issuer = tlv(
            0x30,
            &tlv(
                0x31,
                &tlv(0x30, &[oid("2.5.4.3"), tlv(0x0c, b"x")].concat()),
            ),
        );
        let ias = tlv(0x30, &[issuer, tlv(0x02, &[1])].concat());
        let rsa = tlv(
            0x30,
            &[oid("1.2.840.113549.1.1.1"), vec![0x05, 0x00]].concat(),
        );
        let ktri = tlv(
            0x30,
            &[tlv(0x02, &[0]), ias, rsa, tlv(0x04, &[9; 256])].concat(),
        );
        let (alg, ct_oid) = if auth {
            let params = tlv(0x30, &tlv(0x04, &[3; 12]));
            (
                tlv(0x30, &[oid("2.16.840.1.101.3.4.1.6"), params].concat()),
                "1.2.840.113549.1.9.16.1.23",
            )
        } else {
            (
                tlv(
                    0x30,
                    &[oid("2.16.840.1.101.3.4.1.2"), tlv(0x04, &[4; 16])].concat(),
                ),
                "1.2.840.113549.1.7.3",
            )
        };
        let eci = tlv(
            0x30,
            &[oid("1.2.840.113549.1.7.1"), alg, tlv(0x80, content)].concat(),
        );
        let mut fields = vec![tlv(0x02, &[0]), tlv(0x31, &ktri), eci];
        if auth {
            fields.push(tlv(0x04, &[0xaa; 16]));
        }
        let body = tlv(0x30, &fields.concat());
        tlv(0x30, &[oid(ct_oid), tlv(0xa0, &body)].concat())
    }

    /// `der` re-encoded with indefinite lengths everywhere and every OCTET STRING or `[0]`
    /// primitive string chunked into pieces of `chunk` bytes, as `openssl cms -stream` writes.
    pub fn to_ber(der: &[u8], chunk: usize) -> Vec<u8> {
        let e = Reader::new(der).read("x").unwrap();
        let mut out = Vec::new();
        write(&e, chunk, &mut out);
        out
    }

    fn write(e: &Element<'_>, chunk: usize, out: &mut Vec<u8>) {
        let first = e.raw[0];
        if e.tag.constructed {
            out.extend_from_slice(&[first, 0x80]);
            for child in e.children().unwrap() {
                write(&child.unwrap(), chunk, out);
            }
            out.extend_from_slice(&[0, 0]);
        } else if (e.tag.is_universal(Tag::OCTET_STRING) || e.tag.is_context(0))
            && e.content.len() > chunk
        {
            out.extend_from_slice(&[first | 0x20, 0x80]);
            for piece in e.content.chunks(chunk) {
                out.extend_from_slice(&tlv(0x04, piece));
            }
            out.extend_from_slice(&[0, 0]);
        } else {
            out.extend_from_slice(e.raw);
        }
    }
}
