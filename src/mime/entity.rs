//! A minimal view of a MIME entity for writing: header fields kept as raw text (folding and all)
//! and the body as bytes. `mail-parser` is for reading mail; here we must reproduce the bytes we
//! do not change exactly, which a decoded view cannot do.

/// One header field: its name, and the whole field as it appeared (with folded lines), without
/// the final line break.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub name: String,
    pub raw: Vec<u8>,
}

impl Header {
    pub fn new(name: &str, value: &str) -> Self {
        Header {
            name: name.to_string(),
            raw: format!("{name}: {value}").into_bytes(),
        }
    }

    /// True for `Content-*` and `MIME-Version`: fields that describe the entity, not the mail.
    pub fn is_content(&self) -> bool {
        let n = self.name.to_ascii_lowercase();
        n.starts_with("content-") || n == "mime-version"
    }

    pub fn is(&self, name: &str) -> bool {
        self.name.eq_ignore_ascii_case(name)
    }

    /// The value, unfolded, without the name.
    pub fn value(&self) -> String {
        let text = String::from_utf8_lossy(&self.raw);
        let value = text.split_once(':').map(|(_, v)| v).unwrap_or_default();
        value
            .split(['\r', '\n'])
            .filter(|l| !l.is_empty())
            .map(str::trim)
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// Headers and body of an entity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entity {
    pub headers: Vec<Header>,
    pub body: Vec<u8>,
}

/// Splits raw bytes into header fields and body at the first empty line. Input without a
/// header block (no `Name:` on the first line) is all body.
pub fn parse(raw: &[u8]) -> Entity {
    let mut headers: Vec<Header> = Vec::new();
    let mut pos = 0;
    loop {
        let end = raw[pos..]
            .iter()
            .position(|b| *b == b'\n')
            .map(|i| pos + i + 1)
            .unwrap_or(raw.len());
        let line = &raw[pos..end];
        let content = trim_eol(line);
        if content.is_empty() {
            pos = end;
            break;
        }
        match line_kind(content, !headers.is_empty()) {
            LineKind::Continuation => {
                if let Some(last) = headers.last_mut() {
                    last.raw.extend_from_slice(b"\r\n");
                    last.raw.extend_from_slice(content);
                }
            }
            LineKind::Field(colon) => headers.push(Header {
                name: String::from_utf8_lossy(&content[..colon]).to_string(),
                raw: content.to_vec(),
            }),
            LineKind::Blank | LineKind::Other => {
                // Not a header block: treat everything as body.
                return Entity {
                    headers: Vec::new(),
                    body: raw.to_vec(),
                };
            }
        }
        if end >= raw.len() {
            pos = end;
            break;
        }
        pos = end;
    }
    Entity {
        headers,
        body: raw[pos.min(raw.len())..].to_vec(),
    }
}

/// What a line of a header block is, to [`parse`] and to the planner that reads files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LineKind {
    /// Empty: the header block ends.
    Blank,
    /// Starts with a space or tab after a field: folded into it.
    Continuation,
    /// `Name:` with the colon at this index.
    Field(usize),
    /// Anything else: there is no header block.
    Other,
}

/// Classifies `content` (a line without its line break); `after_field` when a field came before.
pub(crate) fn line_kind(content: &[u8], after_field: bool) -> LineKind {
    match content.first() {
        None => LineKind::Blank,
        Some(b' ' | b'\t') if after_field => LineKind::Continuation,
        _ => match content.iter().position(|b| *b == b':') {
            Some(colon) if colon > 0 && content[..colon].iter().all(u8::is_ascii_graphic) => {
                LineKind::Field(colon)
            }
            _ => LineKind::Other,
        },
    }
}

pub(crate) fn trim_eol(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

impl Entity {
    pub fn header(&self, name: &str) -> Option<&Header> {
        self.headers.iter().find(|h| h.is(name))
    }

    /// Replaces the first field called `name` (or appends one).
    pub fn set_header(&mut self, name: &str, value: &str) {
        let new = Header::new(name, value);
        match self.headers.iter_mut().find(|h| h.is(name)) {
            Some(h) => *h = new,
            None => self.headers.push(new),
        }
    }

    /// Header block and body as bytes, CRLF after each field and before the body.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.body.len() + 256);
        for h in &self.headers {
            out.extend_from_slice(&h.raw);
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(&self.body);
        out
    }
}

/// A parameter of a structured header value, e.g. `boundary` of a Content-Type.
pub fn param(value: &str, name: &str) -> Option<String> {
    for part in value.split(';').skip(1) {
        let (k, v) = part.split_once('=')?;
        if k.trim().eq_ignore_ascii_case(name) {
            let v = v.trim();
            let v = v
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .unwrap_or(v);
            return Some(v.to_string());
        }
    }
    None
}

/// The `type/subtype` of a Content-Type value, lower-cased.
pub fn mime_type(value: &str) -> String {
    value
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_fold_and_body_splits_with_lf_and_crlf() {
        for sep in ["\n", "\r\n"] {
            let raw = format!(
                "Subject: a{sep} folded{sep}Content-Type: text/plain;{sep}\tcharset=utf-8{sep}{sep}body{sep}"
            );
            let e = parse(raw.as_bytes());
            assert_eq!(e.headers.len(), 2);
            assert_eq!(e.headers[0].value(), "a folded");
            assert_eq!(mime_type(&e.headers[1].value()), "text/plain");
            assert_eq!(
                param(&e.headers[1].value(), "charset").as_deref(),
                Some("utf-8")
            );
            assert_eq!(e.body, format!("body{sep}").as_bytes());
        }
    }

    #[test]
    fn text_without_headers_is_all_body() {
        let e = parse(b"just some text\nwith: a colon later\n");
        assert!(e.headers.is_empty());
        assert_eq!(e.body, b"just some text\nwith: a colon later\n");
    }
}
