//! Making an entity safe to sign and send (RFC 8551 §3.1): CRLF line endings, and a
//! quoted-printable or base64 transfer encoding for 8-bit or binary content, long lines, and
//! lines starting with "From " (which mbox tools rewrite). After this, every relay passes the
//! bytes unchanged, so the signature over them survives.

use super::encode;
use super::entity::{self, Entity};

/// Longest line left as it is; SMTP allows 998, we stay well inside.
pub(crate) const MAX_LINE: usize = 900;

/// Multiparts nested deeper than this are not split further (their body only gets CRLF line
/// endings): each level copies the body, so unbounded nesting is quadratic and, being
/// recursive, overflows the stack (found by a large-input run of the mime fuzz target:
/// fuzz/regressions/mime/nested_multipart_*).
pub(crate) const MAX_NESTING: usize = 32;

/// Returns the transport-safe form of `e`; multipart bodies are handled part by part.
pub fn transport_safe(e: Entity) -> Entity {
    safe_at(e, 0)
}

/// An entity's Content-Type (RFC 2045's default when absent), its transfer encoding in lower
/// case ("7bit" when absent) and its bare media type: what [`transport_safe`] decides on, and
/// the planner (`super::plan`) with it.
pub(crate) fn content_kind(e: &Entity) -> (String, String, String) {
    let ctype = e
        .header("Content-Type")
        .map(|h| h.value())
        .unwrap_or_else(|| "text/plain; charset=us-ascii".into());
    let cte = e
        .header("Content-Transfer-Encoding")
        .map(|h| h.value().to_ascii_lowercase())
        .unwrap_or_else(|| "7bit".into());
    let mtype = entity::mime_type(&ctype);
    (ctype, cte, mtype)
}

fn safe_at(mut e: Entity, depth: usize) -> Entity {
    let (ctype, cte, mtype) = content_kind(&e);
    let is_text = mtype.starts_with("text/");

    if e.header("Content-Type").is_none() {
        if e.header("Content-Transfer-Encoding").is_none() && is_binary(&e.body) {
            // Not text (a PDF, an archive): as an attachment would be, byte for byte; as
            // text/plain its line-ending bytes would be changed and the file broken.
            e.set_header("Content-Type", "application/octet-stream");
            e.set_header("Content-Transfer-Encoding", "base64");
            e.body = base64_lines(&e.body);
            return e;
        }
        let charset = if e.body.is_ascii() {
            "us-ascii"
        } else {
            "utf-8"
        };
        e.set_header("Content-Type", &format!("text/plain; charset={charset}"));
    }

    if mtype.starts_with("multipart/")
        && let Some(boundary) = entity::param(&ctype, "boundary")
    {
        e.body = if depth < MAX_NESTING {
            multipart_safe(&e.body, &boundary, depth + 1)
        } else {
            to_crlf(&e.body)
        };
        return e;
    }
    match cte.as_str() {
        "base64" | "quoted-printable" => {
            e.body = to_crlf(&e.body);
        }
        "binary" | "8bit" if !is_text => {
            e.body = base64_lines(&e.body);
            e.set_header("Content-Transfer-Encoding", "base64");
        }
        _ if is_text || mtype.starts_with("message/") => {
            let body = to_crlf(&e.body);
            if needs_encoding(&body) && !mtype.starts_with("message/") {
                e.body = quoted_printable(&body);
                e.set_header("Content-Transfer-Encoding", "quoted-printable");
            } else {
                e.body = body;
            }
        }
        _ => {
            // 7bit non-text: fine as it is if it really is 7-bit text, else base64 it.
            let body = to_crlf(&e.body);
            if needs_encoding(&body) {
                e.body = base64_lines(&e.body);
                e.set_header("Content-Transfer-Encoding", "base64");
            } else {
                e.body = body;
            }
        }
    }
    e
}

/// Whether a body without a Content-Type is binary rather than text: a NUL byte, or bytes that
/// are not UTF-8.
pub(crate) fn is_binary(body: &[u8]) -> bool {
    let mut check = TextCheck::default();
    check.update(body);
    check.finish()
}

/// [`is_binary`] over a body given in pieces.
#[derive(Default)]
pub(crate) struct TextCheck {
    /// The start of a UTF-8 sequence cut by the end of the last piece.
    carry: Vec<u8>,
    binary: bool,
}

impl TextCheck {
    pub(crate) fn update(&mut self, piece: &[u8]) {
        if self.binary {
            return;
        }
        if piece.contains(&0) {
            self.binary = true;
            return;
        }
        let mut joined;
        let data = if self.carry.is_empty() {
            piece
        } else {
            joined = std::mem::take(&mut self.carry);
            joined.extend_from_slice(piece);
            &joined[..]
        };
        match std::str::from_utf8(data) {
            Ok(_) => self.carry.clear(),
            // Cut at the end: wait for the rest.
            Err(e) if e.error_len().is_none() => {
                self.carry = data[e.valid_up_to()..].to_vec();
            }
            Err(_) => self.binary = true,
        }
    }

    /// Binary already, whatever follows.
    pub(crate) fn found(&self) -> bool {
        self.binary
    }

    /// Binary: a NUL, bytes that are not UTF-8, or a sequence cut off at the end.
    pub(crate) fn finish(self) -> bool {
        self.binary || !self.carry.is_empty()
    }
}

/// LF or lone CR line endings become CRLF.
pub fn to_crlf(data: &[u8]) -> Vec<u8> {
    let out = Vec::with_capacity(data.len() + data.len() / 32);
    encode::over_buffer(encode::Crlf::new(out), data, encode::Crlf::finish)
}

fn needs_encoding(crlf_text: &[u8]) -> bool {
    let mut check = LineCheck::default();
    check.update(crlf_text);
    check.needs_encoding()
}

/// Whether CRLF text needs a transfer encoding, fed in pieces: a line over [`MAX_LINE`], a line
/// starting "From ", or a byte that is 8-bit, NUL or a CR inside a line.
#[derive(Default)]
pub(crate) struct LineCheck {
    line_len: usize,
    head: Vec<u8>,
    /// A CR was the last byte: the end of the line if an LF follows, else a bad byte.
    cr: bool,
    found: bool,
}

impl LineCheck {
    pub(crate) fn update(&mut self, crlf_text: &[u8]) {
        for &b in crlf_text {
            if self.found {
                return;
            }
            if std::mem::take(&mut self.cr) {
                if b == b'\n' {
                    self.end_line();
                    continue;
                }
                self.found = true;
                return;
            }
            match b {
                b'\n' => self.end_line(),
                b'\r' => self.cr = true,
                0 | 0x80.. => self.found = true,
                _ => {
                    self.line_len += 1;
                    if self.head.len() < 5 {
                        self.head.push(b);
                    }
                }
            }
        }
    }

    fn end_line(&mut self) {
        self.found |= self.line_len > MAX_LINE || self.head == b"From ";
        self.line_len = 0;
        self.head.clear();
    }

    /// The answer so far; the last line (without a line break) counts as ended.
    pub(crate) fn found(&self) -> bool {
        self.found
    }

    pub(crate) fn needs_encoding(mut self) -> bool {
        if !self.found {
            self.end_line();
        }
        self.found
    }
}

fn quoted_printable(crlf_text: &[u8]) -> Vec<u8> {
    let out = Vec::with_capacity(crlf_text.len() * 11 / 10);
    encode::over_buffer(
        encode::QuotedPrintable::new(out),
        crlf_text,
        encode::QuotedPrintable::finish,
    )
}

/// Base64 in 76-character lines, CRLF-terminated.
pub fn base64_lines(data: &[u8]) -> Vec<u8> {
    let out = Vec::with_capacity(data.len() * 4 / 3 + data.len() / 28 + 4);
    encode::over_buffer(
        encode::Base64Lines::new(out, b"\r\n"),
        data,
        encode::Base64Lines::finish,
    )
}

/// Splits a multipart body on its delimiter lines (LF or CRLF) and makes each part safe on its
/// own: only text gets its line endings changed, binary parts keep their bytes.
fn multipart_safe(body: &[u8], boundary: &str, depth: usize) -> Vec<u8> {
    let delimiter = format!("--{boundary}");
    let mut out = Vec::with_capacity(body.len() + 1024);
    let mut part: Option<Vec<u8>> = None;
    let finish = |p: Vec<u8>, out: &mut Vec<u8>| {
        // The line break before a delimiter belongs to the delimiter.
        let p = p.strip_suffix(b"\n").unwrap_or(&p);
        let p = p.strip_suffix(b"\r").unwrap_or(p);
        out.extend_from_slice(&safe_at(entity::parse(p), depth).to_bytes());
        out.extend_from_slice(b"\r\n");
    };
    for line in body.split_inclusive(|b| *b == b'\n') {
        let content = line.strip_suffix(b"\n").unwrap_or(line);
        let content = content.strip_suffix(b"\r").unwrap_or(content);
        let is_delim = content.starts_with(delimiter.as_bytes())
            && content[delimiter.len()..]
                .iter()
                .all(|b| *b == b'-' || *b == b' ' || *b == b'\t');
        if is_delim {
            if let Some(p) = part.take() {
                finish(p, &mut out);
            }
            out.extend_from_slice(&to_crlf(line));
            if !content.ends_with(b"--") || content.len() == delimiter.len() {
                part = Some(Vec::new());
            }
            continue;
        }
        match part.as_mut() {
            Some(p) => p.extend_from_slice(line),
            None => out.extend_from_slice(&to_crlf(line)),
        }
    }
    if let Some(p) = part {
        // An unterminated last part: keep it, made safe.
        finish(p, &mut out);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn safe(raw: &str) -> String {
        String::from_utf8(transport_safe(entity::parse(raw.as_bytes())).to_bytes()).unwrap()
    }

    fn is_7bit_crlf(s: &str) -> bool {
        s.is_ascii() && !s.replace("\r\n", "").contains(['\r', '\n'])
            || s.split("\r\n").all(|l| !l.contains('\n') && l.len() <= 998)
    }

    #[test]
    fn plain_ascii_only_gets_crlf() {
        let out = safe("Content-Type: text/plain\n\nhello\nworld\n");
        assert_eq!(out, "Content-Type: text/plain\r\n\r\nhello\r\nworld\r\n");
    }

    #[test]
    fn utf8_text_becomes_quoted_printable() {
        let out = safe("Content-Type: text/plain; charset=utf-8\n\nGrüße\nFrom here\n");
        assert!(
            out.contains("Content-Transfer-Encoding: quoted-printable\r\n"),
            "{out}"
        );
        assert!(out.contains("Gr=C3=BC=C3=9Fe\r\n=46rom here\r\n"), "{out}");
        assert!(is_7bit_crlf(&out));
        let decoded = quoted_printable::decode(
            out.split("\r\n\r\n").nth(1).unwrap(),
            quoted_printable::ParseMode::Strict,
        )
        .unwrap();
        assert_eq!(decoded, "Grüße\r\nFrom here\r\n".as_bytes());
    }

    /// A file with no headers that is not text (a PDF, an archive) goes as an attachment
    /// would: base64 of its exact bytes, lone CR and LF bytes included; text without headers
    /// stays text/plain.
    #[test]
    fn a_headerless_binary_file_becomes_base64_of_its_bytes() {
        use base64::Engine;
        for raw in [
            b"%PDF-1.7\n\x00\x01binary\r\x02\n".to_vec(),
            b"\xff\xfe\x00h\x00i".to_vec(),
            b"plain text but cut in a UTF-8 sequence \xc3".to_vec(),
        ] {
            let (_, e) = super::super::compose::split_message(&raw);
            let out = String::from_utf8(transport_safe(e).to_bytes()).unwrap();
            assert!(
                out.starts_with(
                    "Content-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n"
                ),
                "{out}"
            );
            let body: String = out
                .split("\r\n\r\n")
                .nth(1)
                .unwrap()
                .split("\r\n")
                .collect();
            assert_eq!(
                base64::engine::general_purpose::STANDARD
                    .decode(body)
                    .unwrap(),
                raw
            );
        }
        let out = safe("Grüße\nno headers here\n");
        assert!(
            out.starts_with("Content-Type: text/plain; charset=utf-8\r\n"),
            "{out}"
        );
        // Pieces split inside a UTF-8 sequence are still text.
        let mut check = TextCheck::default();
        for piece in "Grüße".as_bytes().chunks(1) {
            check.update(piece);
        }
        assert!(!check.finish());
    }

    #[test]
    fn binary_attachment_becomes_base64_in_a_multipart() {
        let raw = b"Content-Type: multipart/mixed; boundary=\"b\"\n\n--b\nContent-Type: text/plain\n\nhi\n--b\nContent-Type: application/octet-stream\nContent-Transfer-Encoding: binary\n\n\x00\x01\xff\n--b--\n";
        let out = transport_safe(entity::parse(raw)).to_bytes();
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.contains("Content-Transfer-Encoding: base64\r\n\r\nAAH/\r\n\r\n--b--"),
            "{text}"
        );
        assert!(
            text.contains("--b\r\nContent-Type: text/plain\r\n\r\nhi\r\n--b\r\n"),
            "{text}"
        );
    }

    #[test]
    fn missing_content_type_is_added() {
        let out = safe("Subject: x\n\nhello\n");
        assert!(
            out.contains("Content-Type: text/plain; charset=us-ascii\r\n"),
            "{out}"
        );
    }
}
