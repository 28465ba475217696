//! A small BER reader over a byte slice, and a BER-to-DER normaliser for the small parts of a message.
//!
//! Written by hand because `der` 0.7 rejects what real S/MIME senders write: indefinite lengths
//! (NSS/Thunderbird, `openssl cms -stream`, gpgsm, Outlook) and constructed OCTET STRINGs. The
//! reader borrows from the input, so the encrypted content (the only large part of a message) is
//! walked chunk by chunk and never copied; only small structures (recipient infos, algorithm
//! identifiers) are normalised to DER and handed to the `cms` and `x509-cert` decoders.
//!
//! Every length is checked against the bytes that are actually there and nesting is bounded, so
//! hostile input ends in [`BerError`], never a panic or unbounded recursion.

use thiserror::Error;

/// Deepest nesting accepted; real CMS messages stay far below it.
const MAX_DEPTH: usize = 48;

/// Why a byte string is not valid BER.
#[derive(Debug, Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum BerError {
    #[error("the data ends in the middle of an element (truncated?)")]
    Truncated,
    #[error("an element length is malformed")]
    BadLength,
    #[error("elements are nested too deeply")]
    TooDeep,
    #[error("a primitive element has an indefinite length")]
    IndefinitePrimitive,
    #[error("unexpected element: {0}")]
    Unexpected(&'static str),
}

/// Tag class bits as they appear in the identifier octet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    Universal,
    Application,
    Context,
    Private,
}

/// The identifier of an element.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tag {
    pub class: Class,
    pub constructed: bool,
    pub number: u32,
}

impl Tag {
    pub const INTEGER: u32 = 2;
    pub const OCTET_STRING: u32 = 4;
    pub const OID: u32 = 6;
    pub const SEQUENCE: u32 = 16;
    pub const SET: u32 = 17;

    /// True for a universal tag with the given number.
    pub fn is_universal(&self, number: u32) -> bool {
        self.class == Class::Universal && self.number == number
    }

    /// True for a context-specific tag `[number]`.
    pub fn is_context(&self, number: u32) -> bool {
        self.class == Class::Context && self.number == number
    }

    /// Universal string types that BER allows in constructed (chunked) form.
    fn is_string_type(&self) -> bool {
        self.class == Class::Universal
            && matches!(
                self.number,
                3 | 4 | 12 | 18 | 19 | 20 | 21 | 22 | 25 | 26 | 27 | 28 | 30
            )
    }

    fn encode(&self, constructed: bool, out: &mut Vec<u8>) {
        let class_bits = match self.class {
            Class::Universal => 0x00,
            Class::Application => 0x40,
            Class::Context => 0x80,
            Class::Private => 0xc0,
        };
        let cons = if constructed { 0x20 } else { 0 };
        if self.number < 31 {
            out.push(class_bits | cons | self.number as u8);
        } else {
            out.push(class_bits | cons | 0x1f);
            let mut groups = Vec::new();
            let mut n = self.number;
            loop {
                groups.push((n & 0x7f) as u8);
                n >>= 7;
                if n == 0 {
                    break;
                }
            }
            for (i, g) in groups.iter().enumerate().rev() {
                out.push(if i == 0 { *g } else { g | 0x80 });
            }
        }
    }
}

/// One element: its tag, its content bytes (without an end-of-contents marker) and the whole
/// encoding it was read from.
#[derive(Debug, Clone, Copy)]
pub struct Element<'a> {
    pub tag: Tag,
    pub content: &'a [u8],
    pub raw: &'a [u8],
    pub indefinite: bool,
}

impl<'a> Element<'a> {
    /// Reads the children of a constructed element.
    pub fn children(&self) -> Result<Reader<'a>, BerError> {
        if !self.tag.constructed {
            return Err(BerError::Unexpected(
                "a primitive element where a constructed one belongs",
            ));
        }
        Ok(Reader::new(self.content))
    }

    /// Expects a universal tag number, e.g. `Tag::SEQUENCE`.
    pub fn expect_universal(self, number: u32, what: &'static str) -> Result<Self, BerError> {
        if self.tag.is_universal(number) {
            Ok(self)
        } else {
            Err(BerError::Unexpected(what))
        }
    }

    /// The bytes of a string (an OCTET STRING, or one implicitly tagged), chunk by chunk, without
    /// copying: a primitive string is one chunk, a constructed one is walked chunk by chunk.
    pub fn octet_chunks(&self) -> impl Iterator<Item = Result<&'a [u8], BerError>> + use<'a> {
        let chunk_number = if self.tag.class == Class::Universal {
            self.tag.number
        } else {
            Tag::OCTET_STRING
        };
        let mut single = (!self.tag.constructed).then_some(self.content);
        let mut stack: Vec<Reader<'a>> = Vec::new();
        if self.tag.constructed {
            stack.push(Reader::new(self.content));
        }
        std::iter::from_fn(move || {
            if let Some(content) = single.take() {
                return Some(Ok(content));
            }
            loop {
                let reader = stack.last_mut()?;
                match reader.next() {
                    None => {
                        stack.pop();
                    }
                    Some(Ok(child)) if child.tag.is_universal(chunk_number) => {
                        if !child.tag.constructed {
                            return Some(Ok(child.content));
                        }
                        if stack.len() >= MAX_DEPTH {
                            stack.clear();
                            return Some(Err(BerError::TooDeep));
                        }
                        stack.push(Reader::new(child.content));
                    }
                    Some(Ok(_)) => {
                        stack.clear();
                        return Some(Err(BerError::Unexpected(
                            "a string chunk with a foreign tag",
                        )));
                    }
                    Some(Err(e)) => {
                        stack.clear();
                        return Some(Err(e));
                    }
                }
            }
        })
    }

    /// The whole value of a (possibly chunked) OCTET STRING, copied into one buffer. For small
    /// values only (IVs, tags, wrapped keys).
    pub fn octets(&self) -> Result<Vec<u8>, BerError> {
        let mut out = Vec::new();
        for chunk in self.octet_chunks() {
            out.extend_from_slice(chunk?);
        }
        Ok(out)
    }

    /// This element re-encoded as DER (definite lengths, strings in primitive form).
    pub fn to_der(&self) -> Result<Vec<u8>, BerError> {
        let mut out = Vec::with_capacity(self.raw.len());
        write_der(self, &mut out, 0)?;
        Ok(out)
    }

    /// As [`Element::to_der`], but with the outer tag replaced: for `[n] IMPLICIT` fields that
    /// the `cms` types describe by their universal form.
    pub fn to_der_with_tag(&self, tag: Tag) -> Result<Vec<u8>, BerError> {
        let retagged = Element {
            tag: Tag {
                constructed: self.tag.constructed,
                ..tag
            },
            ..*self
        };
        retagged.to_der()
    }
}

/// Reads consecutive elements from a byte slice.
#[derive(Debug, Clone, Copy)]
pub struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub fn new(data: &'a [u8]) -> Self {
        Reader { data, pos: 0 }
    }

    /// True when every byte has been read.
    pub fn is_empty(&self) -> bool {
        self.pos >= self.data.len()
    }

    /// The bytes not read yet.
    pub fn remaining(&self) -> &'a [u8] {
        &self.data[self.pos.min(self.data.len())..]
    }

    /// Reads the next element, failing at the end of the data.
    pub fn read(&mut self, what: &'static str) -> Result<Element<'a>, BerError> {
        match self.next() {
            Some(r) => r,
            None => Err(BerError::Unexpected(what)),
        }
    }

    /// Looks at the next element's tag without consuming it.
    pub fn peek_tag(&self) -> Option<Tag> {
        let mut copy = *self;
        match copy.next() {
            Some(Ok(e)) => Some(e.tag),
            _ => None,
        }
    }

    fn read_element(&mut self, depth: usize) -> Result<Element<'a>, BerError> {
        if depth > MAX_DEPTH {
            return Err(BerError::TooDeep);
        }
        let start = self.pos;
        let tag = self.read_tag()?;
        let length = self.read_length()?;
        match length {
            Some(len) => {
                let begin = self.pos;
                let end = begin.checked_add(len).ok_or(BerError::BadLength)?;
                if end > self.data.len() {
                    return Err(BerError::Truncated);
                }
                self.pos = end;
                Ok(Element {
                    tag,
                    content: &self.data[begin..end],
                    raw: &self.data[start..end],
                    indefinite: false,
                })
            }
            None => {
                if !tag.constructed {
                    return Err(BerError::IndefinitePrimitive);
                }
                let begin = self.pos;
                loop {
                    let rest = self.data.get(self.pos..).unwrap_or_default();
                    if rest.len() < 2 {
                        return Err(BerError::Truncated);
                    }
                    if rest[0] == 0 && rest[1] == 0 {
                        let end = self.pos;
                        self.pos += 2;
                        return Ok(Element {
                            tag,
                            content: &self.data[begin..end],
                            raw: &self.data[start..self.pos],
                            indefinite: true,
                        });
                    }
                    self.read_element(depth + 1)?;
                }
            }
        }
    }

    fn byte(&mut self) -> Result<u8, BerError> {
        let b = *self.data.get(self.pos).ok_or(BerError::Truncated)?;
        self.pos += 1;
        Ok(b)
    }

    fn read_tag(&mut self) -> Result<Tag, BerError> {
        let first = self.byte()?;
        let class = match first >> 6 {
            0 => Class::Universal,
            1 => Class::Application,
            2 => Class::Context,
            _ => Class::Private,
        };
        let constructed = first & 0x20 != 0;
        let mut number = u32::from(first & 0x1f);
        if number == 0x1f {
            number = 0;
            for i in 0.. {
                let b = self.byte()?;
                if i >= 4 {
                    return Err(BerError::Unexpected("a tag number that is too large"));
                }
                number = (number << 7) | u32::from(b & 0x7f);
                if b & 0x80 == 0 {
                    break;
                }
            }
        }
        Ok(Tag {
            class,
            constructed,
            number,
        })
    }

    /// `None` is the indefinite form.
    fn read_length(&mut self) -> Result<Option<usize>, BerError> {
        let first = self.byte()?;
        if first < 0x80 {
            return Ok(Some(usize::from(first)));
        }
        if first == 0x80 {
            return Ok(None);
        }
        let count = usize::from(first & 0x7f);
        if count > std::mem::size_of::<usize>() || first == 0xff {
            return Err(BerError::BadLength);
        }
        let mut len: usize = 0;
        for _ in 0..count {
            len = (len << 8) | usize::from(self.byte()?);
        }
        Ok(Some(len))
    }
}

impl<'a> Iterator for Reader<'a> {
    type Item = Result<Element<'a>, BerError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.is_empty() {
            return None;
        }
        let result = self.read_element(0);
        if result.is_err() {
            // Stop after the first error: the position is meaningless from here on.
            self.pos = self.data.len();
        }
        Some(result)
    }
}

/// Reads an element's identifier and length octets at the start of `data`: the tag, the length
/// (`None`: indefinite, allowed for constructed elements only) and how many bytes they took.
/// For readers that see the data a piece at a time (`stream`).
pub fn read_header(data: &[u8]) -> Result<(Tag, Option<usize>, usize), BerError> {
    let mut r = Reader::new(data);
    let tag = r.read_tag()?;
    let length = r.read_length()?;
    if length.is_none() && !tag.constructed {
        return Err(BerError::IndefinitePrimitive);
    }
    Ok((tag, length, r.pos))
}

/// Appends a DER length (short form below 128, else the shortest long form).
pub(crate) fn push_length(len: usize, out: &mut Vec<u8>) {
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().take_while(|b| **b == 0).count();
        out.push(0x80 | (bytes.len() - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
}

fn write_der(elem: &Element<'_>, out: &mut Vec<u8>, depth: usize) -> Result<(), BerError> {
    if depth > MAX_DEPTH {
        return Err(BerError::TooDeep);
    }
    let mut body = Vec::new();
    let constructed = if !elem.tag.constructed {
        body.extend_from_slice(elem.content);
        false
    } else if elem.tag.is_string_type() {
        for chunk in elem.octet_chunks() {
            body.extend_from_slice(chunk?);
        }
        false
    } else {
        for child in elem.children()? {
            write_der(&child?, &mut body, depth + 1)?;
        }
        true
    };
    elem.tag.encode(constructed, out);
    push_length(body.len(), out);
    out.extend_from_slice(&body);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_definite_and_indefinite_sequences() {
        // SEQUENCE (indefinite) { INTEGER 5, OCTET STRING constructed (indefinite) { "ab", "c" } }
        let ber = [
            0x30, 0x80, 0x02, 0x01, 0x05, 0x24, 0x80, 0x04, 0x02, b'a', b'b', 0x04, 0x01, b'c',
            0x00, 0x00, 0x00, 0x00,
        ];
        let seq = Reader::new(&ber).read("seq").unwrap();
        assert!(seq.indefinite);
        assert_eq!(seq.raw.len(), ber.len());
        let mut kids = seq.children().unwrap();
        let int = kids.read("int").unwrap();
        assert_eq!(int.content, &[5]);
        let os = kids.read("os").unwrap();
        assert_eq!(os.octets().unwrap(), b"abc");
        assert!(kids.next().is_none());
        assert_eq!(
            seq.to_der().unwrap(),
            vec![0x30, 0x08, 0x02, 0x01, 0x05, 0x04, 0x03, b'a', b'b', b'c']
        );
    }

    #[test]
    fn nested_constructed_strings_are_flattened() {
        // OCTET STRING constructed definite { OCTET STRING constructed { "x" }, "yz" }
        let ber = [
            0x24, 0x09, 0x24, 0x03, 0x04, 0x01, b'x', 0x04, 0x02, b'y', b'z',
        ];
        let os = Reader::new(&ber).read("os").unwrap();
        assert_eq!(os.octets().unwrap(), b"xyz");
        assert_eq!(os.to_der().unwrap(), vec![0x04, 0x03, b'x', b'y', b'z']);
    }

    #[test]
    fn truncation_and_bad_lengths_are_errors() {
        assert_eq!(
            Reader::new(&[0x30, 0x05, 0x02]).read("x").unwrap_err(),
            BerError::Truncated
        );
        assert_eq!(
            Reader::new(&[0x30, 0x80, 0x02, 0x01, 0x05])
                .read("x")
                .unwrap_err(),
            BerError::Truncated
        );
        assert_eq!(
            Reader::new(&[0x04, 0x80, 0x00, 0x00])
                .read("x")
                .unwrap_err(),
            BerError::IndefinitePrimitive
        );
        assert_eq!(
            Reader::new(&[0x04, 0x89, 1, 2, 3, 4, 5, 6, 7, 8, 9])
                .read("x")
                .unwrap_err(),
            BerError::BadLength
        );
    }

    #[test]
    fn deep_nesting_is_refused() {
        let mut ber = Vec::new();
        for _ in 0..200 {
            ber.extend_from_slice(&[0x30, 0x80]);
        }
        for _ in 0..200 {
            ber.extend_from_slice(&[0x00, 0x00]);
        }
        assert_eq!(Reader::new(&ber).read("x").unwrap_err(), BerError::TooDeep);
    }

    #[test]
    fn high_tag_numbers_round_trip() {
        let ber = [0x9f, 0x81, 0x00, 0x01, 0xaa];
        let e = Reader::new(&ber).read("x").unwrap();
        assert_eq!(e.tag.number, 128);
        assert_eq!(e.to_der().unwrap(), ber.to_vec());
    }
}
