//! The binary CMS message inside a text wrapping, read as a stream: PEM, or a mail message
//! whose body is `application/pkcs7-mime` in base64 (what a mail client pipes for an
//! encrypted message). Only the header block is held in memory (at most [`MAX_HEADER`]); the
//! body is base64-decoded as it is read, so a large message decrypts in constant memory.
//!
//! Anything else (an `smime.p7m` attachment inside a multipart, bare base64, a message this
//! reader does not recognise from its headers) comes back whole for [`super::detect`], which
//! searches the whole structure.

use super::detect::InputForm;
use crate::error::{Error, Result};
use base64::Engine;
use mail_parser::{MessageParser, MimeHeaders};
use std::io::{BufRead, Read};
use std::sync::mpsc::{Receiver, sync_channel};

/// The most header (or text before a PEM block) read before giving up on streaming.
pub const MAX_HEADER: usize = 256 * 1024;

/// The input [`open`] reads: owned and `Send`, so that the base64 of a long message can be
/// decoded on a second thread.
pub type Input = Box<dyn BufRead + Send>;

/// What [`open`] found.
pub enum Opened {
    /// Binary CMS, read as it comes.
    Stream {
        form: InputForm,
        reader: Box<dyn Read + Send>,
    },
    /// Not a form this reader streams: the whole input, for [`super::detect::find_cms`].
    Whole(Vec<u8>),
}

/// Looks at the start of `input` and returns a reader of the binary CMS inside it, or the
/// whole input when it is in a form only the in-memory path knows.
pub fn open(mut input: Input) -> Result<Opened> {
    let first = input
        .fill_buf()
        .map_err(|e| Error::io("cannot read the message", e))?;
    if first.first() == Some(&0x30) {
        return Ok(Opened::Stream {
            form: InputForm::Der,
            reader: Box::new(input),
        });
    }
    let mut head = Vec::new();
    loop {
        let before = head.len();
        let n = (&mut input)
            .take((MAX_HEADER - head.len()) as u64)
            .read_until(b'\n', &mut head)
            .map_err(|e| Error::io("cannot read the message", e))?;
        let line = &head[before..];
        if n == 0 || !line.ends_with(b"\n") {
            // The end of the input, or a header block too long: the whole of it.
            return whole(head, input);
        }
        if line.trim_ascii().starts_with(b"-----BEGIN ") {
            if head[..before].iter().all(u8::is_ascii_whitespace) {
                return Ok(Opened::Stream {
                    form: InputForm::Pem,
                    reader: Box::new(Base64Reader::new(input, true)),
                });
            }
            return whole(head, input);
        }
        if line.trim_ascii().is_empty() {
            if head[..before].iter().all(u8::is_ascii_whitespace) {
                // Blank lines before a PEM block.
                continue;
            }
            break;
        }
    }
    if is_base64_pkcs7_mime(&head) {
        return Ok(Opened::Stream {
            form: InputForm::Mime,
            reader: Box::new(Base64Reader::new(input, false)),
        });
    }
    whole(head, input)
}

fn whole(mut head: Vec<u8>, mut input: Input) -> Result<Opened> {
    input
        .read_to_end(&mut head)
        .map_err(|e| Error::io("cannot read the message", e))?;
    Ok(Opened::Whole(head))
}

/// Whether a header block says: the body is an `application/pkcs7-mime` object in base64.
fn is_base64_pkcs7_mime(head: &[u8]) -> bool {
    let Some(message) = MessageParser::default().parse_headers(head) else {
        return false;
    };
    let Some(part) = message.parts.first() else {
        return false;
    };
    let pkcs7 = part.content_type().is_some_and(|ct| {
        ct.ctype().eq_ignore_ascii_case("application")
            && ct.subtype().is_some_and(|s| {
                s.eq_ignore_ascii_case("pkcs7-mime") || s.eq_ignore_ascii_case("x-pkcs7-mime")
            })
    });
    let base64 = part
        .content_transfer_encoding()
        .is_some_and(|e| e.trim().eq_ignore_ascii_case("base64"));
    pkcs7 && base64
}

/// Decoded bytes after which the decoding moves to a worker thread (a long message, and a
/// second core): the decryption then runs beside it instead of after it.
const HANDOFF: u64 = 1 << 20;
/// Decoded pieces waiting for the reader, at most.
const QUEUED: usize = 4;

/// Base64 text decoded as it is read. Whitespace anywhere is skipped; with `pem`, a `-`
/// (the END line) ends the data. Bad base64 is an `InvalidData` error.
struct Base64Reader {
    source: Source,
    decoded: Vec<u8>,
    at: usize,
    produced: u64,
    /// No worker: one core, or no thread to be had.
    inline_only: bool,
}

/// Where decoded pieces come from.
enum Source {
    Here(Box<Decoder>),
    /// A worker thread decoding ahead: pieces, then `None` at the end of the data. A channel
    /// closed before that is an error, never a clean end.
    Worker(Receiver<std::io::Result<Option<Vec<u8>>>>),
    /// The worker's data ended: every read from here on is the end.
    Done,
}

/// The decoding itself: text in, bytes out, a piece at a time.
struct Decoder {
    input: Input,
    pem: bool,
    /// Characters read and not yet decoded (fewer than 4 between pieces).
    text: Vec<u8>,
    ended: bool,
}

impl Base64Reader {
    fn new(input: Input, pem: bool) -> Self {
        Base64Reader {
            source: Source::Here(Box::new(Decoder {
                input,
                pem,
                text: Vec::new(),
                ended: false,
            })),
            decoded: Vec::new(),
            at: 0,
            produced: 0,
            inline_only: !std::thread::available_parallelism().is_ok_and(|n| n.get() >= 2),
        }
    }

    /// Hands the decoder to a worker thread; keeps it here when no thread can be had.
    fn start_worker(&mut self) {
        let (give, take) = sync_channel::<Box<Decoder>>(1);
        let (tx, rx) = sync_channel(QUEUED);
        let spawned = std::thread::Builder::new()
            .name("base64".into())
            .spawn(move || {
                let Ok(mut decoder) = take.recv() else {
                    return;
                };
                while !decoder.ended {
                    let mut piece = Vec::new();
                    let sent = match decoder.next_piece(&mut piece) {
                        Ok(()) if piece.is_empty() => continue,
                        Ok(()) => tx.send(Ok(Some(piece))),
                        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                        Err(e) => {
                            let _ = tx.send(Err(e));
                            return;
                        }
                    };
                    // The reader is gone (an error further on): stop.
                    if sent.is_err() {
                        return;
                    }
                }
                let _ = tx.send(Ok(None));
            });
        if spawned.is_err() {
            self.inline_only = true;
            return;
        }
        let here = std::mem::replace(&mut self.source, Source::Worker(rx));
        if let Source::Here(decoder) = here {
            // The worker waits for it; should it have gone, the closed channel reads as an
            // error.
            let _ = give.send(decoder);
        }
    }
}

impl Decoder {
    /// Reads the next piece of text and decodes into `out` what makes whole groups of four
    /// (everything, at the end).
    fn next_piece(&mut self, out: &mut Vec<u8>) -> std::io::Result<()> {
        let chunk = self.input.fill_buf()?;
        let mut used = chunk.len();
        if chunk.is_empty() {
            self.ended = true;
        }
        if self.pem
            && let Some(dash) = chunk.iter().position(|c| *c == b'-')
        {
            self.ended = true;
            used = dash;
        }
        // Line by line: base64 comes in lines of 64 or 76. Whitespace inside a line (rare) is
        // taken out below, when the decoder stumbles on it.
        let mut start = 0;
        let data = &chunk[..used];
        for end in memchr::memchr_iter(b'\n', data).chain(std::iter::once(data.len())) {
            self.text.extend_from_slice(data[start..end].trim_ascii());
            start = (end + 1).min(data.len());
        }
        self.input.consume(used);
        let mut decoded = self.decode(out);
        if matches!(decoded, Err(base64::DecodeError::InvalidByte(_, b)) if b.is_ascii_whitespace())
        {
            self.text.retain(|c| !c.is_ascii_whitespace());
            out.clear();
            decoded = self.decode(out);
        }
        if decoded.is_err() {
            // Nothing half-decoded is ever handed on.
            out.clear();
        }
        decoded.map_err(|e| {
            let why = match e {
                base64::DecodeError::InvalidByte(_, b) => {
                    format!("holds a character that is not base64: {:?}", b as char)
                }
                _ => "is cut short or malformed at its end".to_string(),
            };
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("the message's base64 {why}"),
            )
        })
    }

    /// Decodes the whole groups of four read so far (everything, at the end) into `out`.
    fn decode(&mut self, out: &mut Vec<u8>) -> std::result::Result<(), base64::DecodeError> {
        let whole = if self.ended {
            self.text.len()
        } else {
            self.text.len() / 4 * 4
        };
        base64::engine::general_purpose::STANDARD.decode_vec(&self.text[..whole], out)?;
        self.text.drain(..whole);
        Ok(())
    }
}

impl Read for Base64Reader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.at == self.decoded.len() {
            if !self.inline_only
                && self.produced >= HANDOFF
                && matches!(self.source, Source::Here(_))
            {
                self.start_worker();
            }
            self.at = 0;
            self.decoded.clear();
            match &mut self.source {
                Source::Here(decoder) => {
                    if decoder.ended {
                        return Ok(0);
                    }
                    decoder.next_piece(&mut self.decoded)?;
                }
                Source::Done => return Ok(0),
                Source::Worker(rx) => match rx.recv() {
                    Ok(Ok(Some(piece))) => self.decoded = piece,
                    Ok(Ok(None)) => {
                        self.source = Source::Done;
                        return Ok(0);
                    }
                    Ok(Err(e)) => return Err(e),
                    Err(_) => {
                        return Err(std::io::Error::new(
                            std::io::ErrorKind::UnexpectedEof,
                            "the message's base64 could not be read to its end",
                        ));
                    }
                },
            }
            self.produced += self.decoded.len() as u64;
        }
        let n = buf.len().min(self.decoded.len() - self.at);
        buf[..n].copy_from_slice(&self.decoded[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn wrap_base64(data: &[u8], width: usize, eol: &str) -> String {
        let text = base64::engine::general_purpose::STANDARD.encode(data);
        let mut out = String::new();
        for line in text.as_bytes().chunks(width) {
            out.push_str(std::str::from_utf8(line).unwrap());
            out.push_str(eol);
        }
        out
    }

    fn read_all(input: &[u8]) -> (Option<InputForm>, Vec<u8>) {
        // A small buffer, so that groups of four and line ends straddle the fills.
        let reader = std::io::BufReader::with_capacity(7, std::io::Cursor::new(input.to_vec()));
        match open(Box::new(reader)).unwrap() {
            Opened::Stream { form, mut reader } => {
                let mut out = Vec::new();
                reader.read_to_end(&mut out).unwrap();
                (Some(form), out)
            }
            Opened::Whole(all) => (None, all),
        }
    }

    fn cms_like(len: usize) -> Vec<u8> {
        let mut v: Vec<u8> = (0..len).map(|i| (i * 7 % 256) as u8).collect();
        v[0] = 0x30;
        v
    }

    #[test]
    fn a_mail_message_body_in_base64_is_decoded_as_read() {
        for len in [1, 2, 3, 4, 5, 57, 1000, 10_001] {
            let der = cms_like(len);
            let mail = format!(
                "From: a@example.org\r\nContent-Type: application/pkcs7-mime; \
                 smime-type=enveloped-data;\r\n name=smime.p7m\r\n\
                 Content-Transfer-Encoding: base64\r\n\r\n{}",
                wrap_base64(&der, 76, "\r\n")
            );
            assert_eq!(
                read_all(mail.as_bytes()),
                (Some(InputForm::Mime), der.clone())
            );
            let lf = mail.replace("\r\n", "\n");
            assert_eq!(
                read_all(lf.as_bytes()),
                (Some(InputForm::Mime), der.clone())
            );
            // Whitespace inside the lines, as some gateways leave it, is skipped too.
            let spaced = mail
                .replacen("\r\n\r\n", "\r\n\r\n \t", 1)
                .replace("AAA", "A A\tA");
            assert_eq!(read_all(spaced.as_bytes()), (Some(InputForm::Mime), der));
        }
    }

    #[test]
    fn pem_is_decoded_up_to_the_end_line() {
        let der = cms_like(3000);
        let pem = format!(
            "\n-----BEGIN PKCS7-----\n{}-----END PKCS7-----\n",
            wrap_base64(&der, 64, "\n")
        );
        assert_eq!(read_all(pem.as_bytes()), (Some(InputForm::Pem), der));
    }

    #[test]
    fn der_passes_through_and_other_forms_come_back_whole() {
        let der = cms_like(100);
        assert_eq!(read_all(&der), (Some(InputForm::Der), der.clone()));
        for other in [
            "Content-Type: multipart/mixed; boundary=x\r\n\r\n--x\r\n...".to_string(),
            "Content-Type: application/pkcs7-mime\r\n\r\nbinary?".to_string(),
            "Content-Type: text/plain\r\n\r\nhello".to_string(),
            "no header block at all".to_string(),
            wrap_base64(&der, 76, "\n"),
        ] {
            assert_eq!(read_all(other.as_bytes()), (None, other.into_bytes()));
        }
    }

    #[test]
    fn bad_base64_is_an_error_not_a_panic() {
        let mail = "Content-Type: application/pkcs7-mime\r\n\
                    Content-Transfer-Encoding: base64\r\n\r\nMIIB*AAA\r\n";
        let reader = std::io::BufReader::new(std::io::Cursor::new(mail.as_bytes().to_vec()));
        let Opened::Stream { mut reader, .. } = open(Box::new(reader)).unwrap() else {
            panic!("a base64 pkcs7-mime body streams");
        };
        let err = reader.read_to_end(&mut Vec::new()).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::InvalidData);
    }

    /// Past the hand-off the decoding runs on a worker: the same bytes, in order, and bad
    /// base64 far into the message is still the error, not a short read.
    #[test]
    fn a_long_body_through_the_worker() {
        let der = cms_like(3 << 20);
        let mail = format!(
            "Content-Type: application/pkcs7-mime\r\nContent-Transfer-Encoding: base64\r\n\r\n{}",
            wrap_base64(&der, 76, "\r\n")
        );
        let read = |mail: &[u8]| {
            let reader =
                std::io::BufReader::with_capacity(4099, std::io::Cursor::new(mail.to_vec()));
            let Opened::Stream { mut reader, .. } = open(Box::new(reader)).unwrap() else {
                panic!("a base64 pkcs7-mime body streams");
            };
            let mut out = Vec::new();
            let result = reader.read_to_end(&mut out).map(|_| out);
            // The end stays the end; an error stays an error, with no bytes after it.
            let mut more = [0u8; 16];
            match &result {
                Ok(_) => assert_eq!(reader.read(&mut more).unwrap(), 0),
                Err(_) => assert!(!matches!(reader.read(&mut more), Ok(n) if n > 0)),
            }
            result
        };
        assert!(read(mail.as_bytes()).unwrap() == der);
        let mut bad = mail.into_bytes();
        let at = bad.len() - 1000;
        bad[at] = b'*';
        let err = read(&bad).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::InvalidData);
    }
}
