//! The byte transforms of a transport-safe entity, as writers that take their input in pieces
//! of any size: CRLF line endings, base64 in 76-character lines, and quoted-printable with
//! "From " escaped. [`super::canon`] runs them over a buffer, the streaming encryption over a
//! file; one implementation, so a large message comes out as a small one would.

use base64::Engine;
use std::io::{self, Write};

/// Output gathered before a write to the inner writer.
const OUT_BUF: usize = 64 * 1024;

/// LF, CRLF and lone CR line endings become CRLF.
pub struct Crlf<W: Write> {
    out: W,
    /// The last byte was a CR, already written as CRLF: an LF right after it is dropped.
    after_cr: bool,
    buf: Vec<u8>,
}

impl<W: Write> Crlf<W> {
    pub fn new(out: W) -> Self {
        Crlf {
            out,
            after_cr: false,
            buf: Vec::with_capacity(OUT_BUF + 2),
        }
    }

    /// Writes what is held; returns the inner writer.
    pub fn finish(mut self) -> io::Result<W> {
        self.out.write_all(&self.buf)?;
        Ok(self.out)
    }

    /// The inner writer (up to 64 KiB behind what was written).
    pub fn inner(&self) -> &W {
        &self.out
    }
}

impl<W: Write> Write for Crlf<W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let mut rest = data;
        while let Some(&first) = rest.first() {
            if std::mem::take(&mut self.after_cr) && first == b'\n' {
                rest = &rest[1..];
                continue;
            }
            let room = OUT_BUF.saturating_sub(self.buf.len()).max(1);
            let window = &rest[..rest.len().min(room)];
            match memchr::memchr2(b'\r', b'\n', window) {
                Some(i) => {
                    self.buf.extend_from_slice(&window[..i]);
                    self.buf.extend_from_slice(b"\r\n");
                    if window[i] == b'\r' {
                        self.after_cr = true;
                    }
                    rest = &rest[i + 1..];
                }
                None => {
                    self.buf.extend_from_slice(window);
                    rest = &rest[window.len()..];
                }
            }
            if self.buf.len() >= OUT_BUF {
                self.out.write_all(&self.buf)?;
                self.buf.clear();
            }
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Input bytes per base64 line: 57 bytes are 76 characters.
const LINE_BYTES: usize = 57;
/// Lines encoded per batch.
const LINES: usize = 1024;

/// Base64 in 76-character lines, each ended by `eol` (CRLF for mail, LF for PEM).
pub struct Base64Lines<W: Write> {
    out: W,
    eol: &'static [u8],
    carry: Vec<u8>,
    text: String,
    buf: Vec<u8>,
}

impl<W: Write> Base64Lines<W> {
    pub fn new(out: W, eol: &'static [u8]) -> Self {
        Base64Lines {
            out,
            eol,
            carry: Vec::with_capacity(LINE_BYTES * LINES),
            text: String::with_capacity(LINE_BYTES * LINES * 4 / 3 + 4),
            buf: Vec::with_capacity((76 + 2) * LINES),
        }
    }

    /// Encodes `self.carry` (whole lines, and the last short one only at the end).
    fn encode_carry(&mut self) -> io::Result<()> {
        self.text.clear();
        base64::engine::general_purpose::STANDARD.encode_string(&self.carry, &mut self.text);
        self.buf.clear();
        for line in self.text.as_bytes().chunks(76) {
            self.buf.extend_from_slice(line);
            self.buf.extend_from_slice(self.eol);
        }
        self.carry.clear();
        self.out.write_all(&self.buf)
    }

    /// Encodes the rest; returns the inner writer.
    pub fn finish(mut self) -> io::Result<W> {
        self.encode_carry()?;
        Ok(self.out)
    }
}

impl<W: Write> Write for Base64Lines<W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let mut rest = data;
        while !rest.is_empty() {
            let take = (LINE_BYTES * LINES - self.carry.len()).min(rest.len());
            self.carry.extend_from_slice(&rest[..take]);
            rest = &rest[take..];
            if self.carry.len() == LINE_BYTES * LINES {
                self.encode_carry()?;
            }
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The longest quoted-printable line, without its line break (RFC 2045 §6.7).
const QP_LIMIT: usize = 76;

/// Quoted-printable of text, as the `quoted_printable` crate's `encode` writes it (CRLF stays
/// a line break, soft breaks keep lines within 76 characters, a space or tab before a break
/// is encoded), and then "From " at the start of any line written "=46rom " because mbox tools
/// rewrite it.
pub struct QuotedPrintable<W: Write> {
    out: W,
    /// The output line being built, since the last hard or soft break.
    line: Vec<u8>,
    /// Length of the last unit appended to `line` (1 or 3): a soft break that does not fit at
    /// the end goes before it.
    last_unit: usize,
    /// A CR was read and not yet written: CRLF is a line break, a lone CR is "=0D".
    was_cr: bool,
    buf: Vec<u8>,
}

const HEX: &[u8; 16] = b"0123456789ABCDEF";

impl<W: Write> QuotedPrintable<W> {
    pub fn new(out: W) -> Self {
        QuotedPrintable {
            out,
            line: Vec::with_capacity(QP_LIMIT + 8),
            last_unit: 0,
            was_cr: false,
            buf: Vec::with_capacity(OUT_BUF + 2 * QP_LIMIT),
        }
    }

    /// Ends the text (a trailing space or tab is encoded); returns the inner writer.
    pub fn finish(mut self) -> io::Result<W> {
        if self.was_cr {
            self.append(b"=0D");
        } else {
            self.encode_trailing_space();
        }
        let at = self.line.len();
        self.emit(at, b"");
        self.out.write_all(&self.buf)?;
        Ok(self.out)
    }

    /// Moves `line[..at]` and `eol` to the output, escaping "From " at its start.
    fn emit(&mut self, at: usize, eol: &[u8]) {
        let line = &self.line[..at];
        if line.starts_with(b"From ") {
            self.buf.extend_from_slice(b"=46");
            self.buf.extend_from_slice(&line[1..]);
        } else {
            self.buf.extend_from_slice(line);
        }
        self.buf.extend_from_slice(eol);
        self.line.drain(..at);
    }

    fn append(&mut self, unit: &[u8]) {
        if self.line.len() + unit.len() > QP_LIMIT {
            let at = if self.line.len() == QP_LIMIT {
                // No room for the '=': the soft break goes before the last unit.
                self.line.len() - self.last_unit
            } else {
                self.line.len()
            };
            self.emit(at, b"=\r\n");
        }
        self.line.extend_from_slice(unit);
        self.last_unit = unit.len();
    }

    fn encode_trailing_space(&mut self) {
        match self.line.last() {
            Some(b' ') => {
                self.line.pop();
                self.append(b"=20");
            }
            Some(b'\t') => {
                self.line.pop();
                self.append(b"=09");
            }
            _ => {}
        }
    }

    fn byte(&mut self, b: u8) {
        if std::mem::take(&mut self.was_cr) {
            if b == b'\n' {
                self.encode_trailing_space();
                let at = self.line.len();
                self.emit(at, b"\r\n");
                return;
            }
            self.append(b"=0D");
        }
        match b {
            b'\r' => self.was_cr = true,
            b'\t' | b' '..=b'~' if b != b'=' => {
                if self.line.len() < QP_LIMIT {
                    self.line.push(b);
                    self.last_unit = 1;
                } else {
                    self.append(&[b]);
                }
            }
            _ => {
                let unit = [b'=', HEX[usize::from(b >> 4)], HEX[usize::from(b & 15)]];
                if self.line.len() + 3 <= QP_LIMIT {
                    self.line.extend_from_slice(&unit);
                    self.last_unit = 3;
                } else {
                    self.append(&unit);
                }
            }
        }
    }
}

impl<W: Write> Write for QuotedPrintable<W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        // Pieces of at most 8 KiB: the output for one is at most 3 times that, plus breaks.
        for piece in data.chunks(8 * 1024) {
            for &b in piece {
                self.byte(b);
            }
            if self.buf.len() >= OUT_BUF {
                self.out.write_all(&self.buf)?;
                self.buf.clear();
            }
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Runs a transform over a buffer.
pub fn over_buffer<T: Write>(
    transform: T,
    data: &[u8],
    finish: impl FnOnce(T) -> io::Result<Vec<u8>>,
) -> Vec<u8> {
    let mut transform = transform;
    // Writing to a Vec never fails, and the transforms fail only when their writer does.
    let _ = transform.write_all(data);
    finish(transform).unwrap_or_default()
}

/// Bytes written, nothing kept: the length a transform gives, without its output.
#[derive(Default)]
pub struct Count(pub u64);

impl Write for Count {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.0 += data.len() as u64;
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// What canon wrote before these writers: the crate's encoder, then "From " escaped.
    fn reference_qp(crlf_text: &[u8]) -> Vec<u8> {
        let encoded = quoted_printable::encode(crlf_text);
        let mut out = Vec::with_capacity(encoded.len());
        let mut at_line_start = true;
        let mut i = 0;
        while i < encoded.len() {
            if at_line_start && encoded[i..].starts_with(b"From ") {
                out.extend_from_slice(b"=46");
                i += 1;
                at_line_start = false;
                continue;
            }
            at_line_start = encoded[i] == b'\n';
            out.push(encoded[i]);
            i += 1;
        }
        out
    }

    fn in_pieces<W: Write>(mut w: W, data: &[u8], piece: usize) -> W {
        for p in data.chunks(piece.max(1)) {
            w.write_all(p).unwrap();
        }
        w
    }

    /// Text made to hit every rule: long runs, spaces before breaks, "From ", '=', CRs.
    fn samples() -> Vec<Vec<u8>> {
        let mut seed = 0x2545_f491u32;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 17;
            seed ^= seed << 5;
            seed
        };
        let alphabet: &[&[u8]] = &[
            b"a",
            b"b",
            b" ",
            b"\t",
            b"=",
            b"\r\n",
            b"\r",
            b"\n",
            b"From ",
            b"\xc3\xa9",
            b"\x00",
            b"~",
            b"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
        ];
        let mut out = vec![
            Vec::new(),
            b"From here\r\n".to_vec(),
            b" ".to_vec(),
            b"a \r\n\t\r\n".to_vec(),
        ];
        for _ in 0..300 {
            let len = (next() % 200) as usize;
            let mut s = Vec::new();
            for _ in 0..len {
                s.extend_from_slice(alphabet[next() as usize % alphabet.len()]);
            }
            out.push(s);
        }
        out.push((0..=255u8).cycle().take(100_000).collect());
        out
    }

    #[test]
    fn quoted_printable_matches_the_crate_in_any_pieces() {
        for s in samples() {
            for piece in [1, 3, 77, 100_000] {
                let got = in_pieces(QuotedPrintable::new(Vec::new()), &s, piece)
                    .finish()
                    .unwrap();
                assert!(
                    got == reference_qp(&s),
                    "{:?} in pieces of {piece}: {:?} want {:?}",
                    String::from_utf8_lossy(&s),
                    String::from_utf8_lossy(&got),
                    String::from_utf8_lossy(&reference_qp(&s))
                );
            }
        }
    }

    #[test]
    fn crlf_and_base64_in_any_pieces() {
        for s in samples() {
            let want_crlf = crate::mime::canon::to_crlf(&s);
            let text = base64::engine::general_purpose::STANDARD.encode(&s);
            let mut want_b64 = Vec::new();
            for line in text.as_bytes().chunks(76) {
                want_b64.extend_from_slice(line);
                want_b64.extend_from_slice(b"\r\n");
            }
            for piece in [1, 2, 57, 1000, 100_000] {
                let got = in_pieces(Crlf::new(Vec::new()), &s, piece)
                    .finish()
                    .unwrap();
                assert_eq!(got, want_crlf, "piece {piece}");
                let got = in_pieces(Base64Lines::new(Vec::new(), b"\r\n"), &s, piece)
                    .finish()
                    .unwrap();
                assert_eq!(got, want_b64, "piece {piece}");
            }
        }
        // More than one batch of lines.
        let big: Vec<u8> = (0..LINE_BYTES * LINES * 3 + 5).map(|i| i as u8).collect();
        let got = in_pieces(Base64Lines::new(Vec::new(), b"\n"), &big, 4099)
            .finish()
            .unwrap();
        let text = base64::engine::general_purpose::STANDARD.encode(&big);
        let want: Vec<u8> = text
            .as_bytes()
            .chunks(76)
            .flat_map(|l| [l, b"\n"].concat())
            .collect();
        assert!(got == want);
    }
}
