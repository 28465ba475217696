//! The transport-safe entity of a message in a file, without holding either in memory.
//!
//! [`Plan::message`] reads the file once to make every choice [`super::canon::transport_safe`]
//! makes (after [`super::compose::split_message`]): header fields parsed, multipart bodies split
//! at their delimiters, each body scanned for what it needs (CRLF only, quoted-printable,
//! base64). The result is a list of pieces, header text and byte ranges of the file each with
//! its transform, and the exact length of the entity. [`Plan::write_to`] then writes the entity
//! from the file again, through the writers of [`super::encode`]: byte for byte what the
//! in-memory functions give (tested against them below).
//!
//! A header field or multipart delimiter line longer than [`LINE_LIMIT`] cannot be planned in
//! bounded memory; then [`Plan::message`] answers `None` and the caller reads the input whole.

use super::canon::{self, LineCheck, MAX_NESTING, TextCheck};
use super::encode::{Base64Lines, Count, Crlf, QuotedPrintable};
use super::entity::{self, Entity, Header, LineKind};
use crate::error::{Error, Result};
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::FileExt;

/// The longest header block, and the longest delimiter line, planned.
pub const LINE_LIMIT: usize = 1 << 20;
/// Read size per call.
const READ: usize = 256 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    Crlf,
    Base64,
    /// CRLF, then quoted-printable.
    QuotedPrintable,
}

#[derive(Debug)]
enum Piece {
    Text(Vec<u8>),
    Range { start: u64, end: u64, step: Step },
}

/// How a [`Plan`]'s length is found.
pub enum Measure<'w> {
    /// Counted: a pass over the file for the pieces whose length the input's does not give.
    Count,
    /// Counted while the entity is written to this writer (a signature's digest): one reading
    /// of the file gives both.
    Through(&'w mut dyn Write),
    /// Not found (`len` is 0): for a caller that needs no length before it writes the entity.
    Skip,
}

/// How to write the transport-safe entity of a file, and its length.
#[derive(Debug)]
pub struct Plan {
    /// The mail's own header fields (From, To, ...), kept outside the entity.
    pub outer: Vec<Header>,
    pieces: Vec<Piece>,
    /// The entity's length in bytes.
    pub len: u64,
}

/// Why planning stopped: an error, or a line too long to plan.
enum Stop {
    Failed(Error),
    TooLong,
}

impl From<Error> for Stop {
    fn from(e: Error) -> Self {
        Stop::Failed(e)
    }
}

type Planned<T> = std::result::Result<T, Stop>;

fn read_err(e: std::io::Error) -> Error {
    Error::io("cannot read the input", e)
}

/// Part of a file, read with positioned reads (the file is shared, never seeked).
struct RangeReader<'f> {
    file: &'f File,
    pos: u64,
    end: u64,
}

impl Read for RangeReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let want = (self.end - self.pos).min(buf.len() as u64) as usize;
        if want == 0 {
            return Ok(0);
        }
        let n = self.file.read_at(&mut buf[..want], self.pos)?;
        self.pos += n as u64;
        Ok(n)
    }
}

fn range(file: &File, start: u64, end: u64) -> BufReader<RangeReader<'_>> {
    BufReader::with_capacity(
        READ,
        RangeReader {
            file,
            pos: start,
            end,
        },
    )
}

/// Reads one line (to its LF, or the end) from `r`, keeping at most `limit` bytes in `kept`;
/// returns the line's whole length (0 at the end).
fn read_line(r: &mut impl BufRead, kept: &mut Vec<u8>, limit: usize) -> Result<u64> {
    kept.clear();
    let mut len = 0u64;
    loop {
        let buf = r.fill_buf().map_err(read_err)?;
        if buf.is_empty() {
            return Ok(len);
        }
        let (take, done) = match memchr::memchr(b'\n', buf) {
            Some(i) => (i + 1, true),
            None => (buf.len(), false),
        };
        let room = limit.saturating_sub(kept.len()).min(take);
        kept.extend_from_slice(&buf[..room]);
        r.consume(take);
        len += take as u64;
        if done {
            return Ok(len);
        }
    }
}

/// Runs `step` over `file[start..end]` into `out`.
fn run_step(file: &File, start: u64, end: u64, step: Step, out: &mut dyn Write) -> Result<()> {
    let mut r = RangeReader {
        file,
        pos: start,
        end,
    };
    let mut buf = zeroize::Zeroizing::new(vec![0u8; READ]);
    let io = |e| Error::io("cannot write the entity", e);
    macro_rules! pump {
        ($w:expr) => {{
            let mut w = $w;
            loop {
                let n = r.read(&mut buf).map_err(read_err)?;
                if n == 0 {
                    break;
                }
                w.write_all(&buf[..n]).map_err(io)?;
            }
            w
        }};
    }
    match step {
        Step::Crlf => drop(pump!(Crlf::new(out)).finish().map_err(io)?),
        Step::Base64 => drop(pump!(Base64Lines::new(out, b"\r\n")).finish().map_err(io)?),
        Step::QuotedPrintable => {
            let w = pump!(Crlf::new(QuotedPrintable::new(out)));
            w.finish().map_err(io)?.finish().map_err(io)?;
        }
    }
    if r.pos != end {
        return Err(Error::BadInput(
            "the input became shorter while it was read".into(),
        ));
    }
    Ok(())
}

/// What a body scan found.
struct Scan {
    ascii: bool,
    needs_encoding: bool,
    /// Not text ([`super::canon::is_binary`]); asked only for a body without a Content-Type.
    binary: bool,
}

/// Plans one file.
struct Planner<'f> {
    file: &'f File,
    pieces: Vec<Piece>,
}

impl Plan {
    /// The plan for `split_message` then `transport_safe` of the message in `file`; `None` when
    /// a line is too long to plan (read it whole instead).
    pub fn message(file: &File) -> Result<Option<Plan>> {
        Self::message_with(file, Measure::Count)
    }

    /// As [`Plan::message`], its length found as `measure` says.
    pub fn message_with(file: &File, measure: Measure<'_>) -> Result<Option<Plan>> {
        let len = file_len(file)?;
        let mut planner = Planner {
            file,
            pieces: Vec::new(),
        };
        let planned = (|| -> Planned<Vec<Header>> {
            let (headers, body) = planner.headers(0, len)?;
            let (content, outer): (Vec<Header>, Vec<Header>) =
                headers.into_iter().partition(Header::is_content);
            let content = content
                .into_iter()
                .filter(|h| !h.is("MIME-Version"))
                .collect();
            planner.entity(content, body, len, 0)?;
            Ok(outer)
        })();
        match planned {
            Ok(outer) => planner.finish(outer, measure).map(Some),
            Err(Stop::TooLong) => Ok(None),
            Err(Stop::Failed(e)) => Err(e),
        }
    }

    /// The plan for `to_crlf` of the whole file (`--as-is`).
    pub fn as_is(file: &File) -> Result<Plan> {
        Self::as_is_with(file, Measure::Count)
    }

    /// As [`Plan::as_is`], its length found as `measure` says.
    pub fn as_is_with(file: &File, measure: Measure<'_>) -> Result<Plan> {
        let end = file_len(file)?;
        let planner = Planner {
            file,
            pieces: vec![Piece::Range {
                start: 0,
                end,
                step: Step::Crlf,
            }],
        };
        planner.finish(Vec::new(), measure)
    }

    /// Writes the entity from `file` (the one planned) to `out`.
    pub fn write_to(&self, file: &File, out: &mut dyn Write) -> Result<()> {
        for piece in &self.pieces {
            match piece {
                Piece::Text(t) => out
                    .write_all(t)
                    .map_err(|e| Error::io("cannot write the entity", e))?,
                Piece::Range { start, end, step } => run_step(file, *start, *end, *step, out)?,
            }
        }
        Ok(())
    }
}

fn file_len(file: &File) -> Result<u64> {
    Ok(file.metadata().map_err(read_err)?.len())
}

impl Planner<'_> {
    /// Measures every piece as `measure` says; the plan.
    fn finish(self, outer: Vec<Header>, measure: Measure<'_>) -> Result<Plan> {
        let through = match measure {
            Measure::Count => None,
            Measure::Through(w) => Some(w),
            Measure::Skip => {
                return Ok(Plan {
                    outer,
                    pieces: self.pieces,
                    len: 0,
                });
            }
        };
        if let Some(through) = through {
            let mut plan = Plan {
                outer,
                pieces: self.pieces,
                len: 0,
            };
            let mut count = Tee(Count::default(), through);
            plan.write_to(self.file, &mut count)?;
            plan.len = count.0.0;
            return Ok(plan);
        }
        let mut len = 0u64;
        for piece in &self.pieces {
            len += match piece {
                Piece::Text(t) => t.len() as u64,
                Piece::Range {
                    start,
                    end,
                    step: Step::Base64,
                } => {
                    let chars = (end - start).div_ceil(3) * 4;
                    chars + chars.div_ceil(76) * 2
                }
                Piece::Range { start, end, step } => {
                    let mut count = Count::default();
                    run_step(self.file, *start, *end, *step, &mut count)?;
                    count.0
                }
            };
        }
        Ok(Plan {
            outer,
            pieces: self.pieces,
            len,
        })
    }

    fn text(&mut self, t: Vec<u8>) {
        if !t.is_empty() {
            self.pieces.push(Piece::Text(t));
        }
    }

    fn range(&mut self, start: u64, end: u64, step: Step) {
        if start == end {
            return;
        }
        if let Some(Piece::Range {
            end: last, step: s, ..
        }) = self.pieces.last_mut()
            && *last == start
            && *s == step
            && step == Step::Crlf
        {
            *last = end;
            return;
        }
        self.pieces.push(Piece::Range { start, end, step });
    }

    /// `entity::parse` of `file[start..end]`: its header fields and where its body starts.
    fn headers(&self, start: u64, end: u64) -> Planned<(Vec<Header>, u64)> {
        let mut r = range(self.file, start, end);
        let mut block = Vec::new();
        let mut line = Vec::new();
        let mut after_field = false;
        loop {
            let len = read_line(&mut r, &mut line, LINE_LIMIT - block.len())?;
            if len == 0 {
                break;
            }
            let whole = len == line.len() as u64;
            let kind = entity::line_kind(entity::trim_eol(&line), after_field);
            if !whole {
                // A cut line is surely not a field only when its name part shows it.
                let cut_other = kind == LineKind::Other
                    && line.iter().any(|b| *b == b':' || !b.is_ascii_graphic());
                return if cut_other {
                    Ok((Vec::new(), start))
                } else {
                    Err(Stop::TooLong)
                };
            }
            block.extend_from_slice(&line);
            match kind {
                LineKind::Blank => break,
                LineKind::Other => return Ok((Vec::new(), start)),
                LineKind::Field(_) => after_field = true,
                LineKind::Continuation => {}
            }
        }
        let parsed = entity::parse(&block);
        if parsed.headers.is_empty() && !parsed.body.is_empty() {
            return Ok((Vec::new(), start));
        }
        Ok((parsed.headers, start + block.len() as u64))
    }

    /// Scans a body: 7-bit or not, whether its CRLF form needs a transfer encoding, and (with
    /// `want_binary`) whether it is binary. Stops early once nothing more can change the
    /// answers asked for.
    fn scan(&self, start: u64, end: u64, want_ascii: bool, want_binary: bool) -> Result<Scan> {
        let mut r = RangeReader {
            file: self.file,
            pos: start,
            end,
        };
        let mut buf = vec![0u8; READ];
        let mut ascii = true;
        let mut crlf = Crlf::new(CheckSink::default());
        let mut text = TextCheck::default();
        loop {
            let n = r.read(&mut buf).map_err(read_err)?;
            if n == 0 {
                break;
            }
            ascii &= buf[..n].is_ascii();
            if want_binary {
                text.update(&buf[..n]);
                if text.found() {
                    // Base64 of the bytes as they are: nothing else matters.
                    return Ok(Scan {
                        ascii: false,
                        needs_encoding: true,
                        binary: true,
                    });
                }
            }
            crlf.write_all(&buf[..n])
                .map_err(|e| Error::io("cannot scan the input", e))?;
            if crlf.inner().check.found() && (!want_ascii || !ascii) && !want_binary {
                return Ok(Scan {
                    ascii,
                    needs_encoding: true,
                    binary: false,
                });
            }
        }
        let sink = crlf
            .finish()
            .map_err(|e| Error::io("cannot scan the input", e))?;
        Ok(Scan {
            ascii,
            needs_encoding: sink.check.needs_encoding(),
            binary: want_binary && text.finish(),
        })
    }

    /// `canon::safe_at` of an entity whose body is `file[start..end]`.
    fn entity(&mut self, headers: Vec<Header>, start: u64, end: u64, depth: usize) -> Planned<()> {
        let mut e = Entity {
            headers,
            body: Vec::new(),
        };
        let (ctype, cte, mtype) = canon::content_kind(&e);
        let is_text = mtype.starts_with("text/");
        let mut scan = None;
        if e.header("Content-Type").is_none() {
            let probe_binary = e.header("Content-Transfer-Encoding").is_none();
            let s = self.scan(start, end, true, probe_binary)?;
            if s.binary {
                e.set_header("Content-Type", "application/octet-stream");
                e.set_header("Content-Transfer-Encoding", "base64");
                self.text(e.to_bytes());
                self.range(start, end, Step::Base64);
                return Ok(());
            }
            let charset = if s.ascii { "us-ascii" } else { "utf-8" };
            e.set_header("Content-Type", &format!("text/plain; charset={charset}"));
            scan = Some(s);
        }
        if mtype.starts_with("multipart/")
            && let Some(boundary) = entity::param(&ctype, "boundary")
        {
            self.text(e.to_bytes());
            return if depth < MAX_NESTING {
                self.multipart(start, end, &boundary, depth + 1)
            } else {
                self.range(start, end, Step::Crlf);
                Ok(())
            };
        }
        let step = match cte.as_str() {
            "base64" | "quoted-printable" => Step::Crlf,
            "binary" | "8bit" if !is_text => {
                e.set_header("Content-Transfer-Encoding", "base64");
                Step::Base64
            }
            _ => {
                let text_like = is_text || mtype.starts_with("message/");
                let needs = match scan {
                    Some(s) => s.needs_encoding,
                    None => self.scan(start, end, false, false)?.needs_encoding,
                };
                match (needs, text_like) {
                    (false, _) => Step::Crlf,
                    (true, true) if mtype.starts_with("message/") => Step::Crlf,
                    (true, true) => {
                        e.set_header("Content-Transfer-Encoding", "quoted-printable");
                        Step::QuotedPrintable
                    }
                    (true, false) => {
                        e.set_header("Content-Transfer-Encoding", "base64");
                        Step::Base64
                    }
                }
            }
        };
        self.text(e.to_bytes());
        self.range(start, end, step);
        Ok(())
    }

    /// `canon::multipart_safe` of the body `file[start..end]`.
    fn multipart(&mut self, start: u64, end: u64, boundary: &str, depth: usize) -> Planned<()> {
        let delimiter = format!("--{boundary}");
        let d = delimiter.as_bytes();
        let mut r = range(self.file, start, end);
        let mut line = Vec::new();
        let mut pos = start;
        let mut part: Option<u64> = None;
        loop {
            let len = read_line(&mut r, &mut line, LINE_LIMIT)?;
            if len == 0 {
                break;
            }
            let whole = len == line.len() as u64;
            let content = entity::trim_eol(&line);
            let tail_ok = |t: &[u8]| t.iter().all(|b| matches!(b, b'-' | b' ' | b'\t'));
            let is_delim = content.starts_with(d) && tail_ok(&content[d.len()..]);
            if is_delim && !whole {
                return Err(Stop::TooLong);
            }
            if is_delim {
                if let Some(p) = part.take() {
                    self.part(p, pos, depth)?;
                }
                self.range(pos, pos + len, Step::Crlf);
                if !content.ends_with(b"--") || content.len() == d.len() {
                    part = Some(pos + len);
                }
            } else if part.is_none() {
                self.range(pos, pos + len, Step::Crlf);
            }
            pos += len;
        }
        if let Some(p) = part {
            self.part(p, pos, depth)?;
        }
        Ok(())
    }

    /// One part, `file[start..end]` up to its delimiter line, whose line break is taken off.
    fn part(&mut self, start: u64, end: u64, depth: usize) -> Planned<()> {
        let mut end = end;
        for eol in [b'\n', b'\r'] {
            let mut last = [0u8; 1];
            if end > start {
                self.file
                    .read_exact_at(&mut last, end - 1)
                    .map_err(read_err)?;
                if last[0] == eol {
                    end -= 1;
                }
            }
        }
        let (headers, body) = self.headers(start, end)?;
        self.entity(headers, body, end, depth)?;
        self.text(b"\r\n".to_vec());
        Ok(())
    }
}

/// Counts what it passes on.
struct Tee<'w>(Count, &'w mut dyn Write);

impl Write for Tee<'_> {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.1.write_all(data)?;
        self.0.write_all(data)?;
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.1.flush()
    }
}

/// Where a scan's CRLF text goes: checked.
#[derive(Default)]
struct CheckSink {
    check: LineCheck,
}

impl Write for CheckSink {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.check.update(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::mime::{canon, compose};
    use std::io::Seek;

    fn file_of(bytes: &[u8]) -> File {
        let mut f = tempfile::tempfile().unwrap();
        f.write_all(bytes).unwrap();
        f.rewind().unwrap();
        f
    }

    fn check(raw: &[u8]) {
        let file = file_of(raw);
        let plan = Plan::message(&file).unwrap().unwrap();
        let (outer, entity) = compose::split_message(raw);
        let want = canon::transport_safe(entity).to_bytes();
        let mut got = Vec::new();
        plan.write_to(&file, &mut got).unwrap();
        assert!(
            got == want,
            "{:?}\ngot  {:?}\nwant {:?}",
            String::from_utf8_lossy(raw),
            String::from_utf8_lossy(&got),
            String::from_utf8_lossy(&want)
        );
        assert_eq!(plan.len, want.len() as u64);
        assert_eq!(plan.outer, outer);
        let mut seen = Vec::new();
        let through = Plan::message_with(&file, Measure::Through(&mut seen))
            .unwrap()
            .unwrap();
        assert!(seen == want && through.len == plan.len);
        let mut unmeasured = Vec::new();
        Plan::message_with(&file, Measure::Skip)
            .unwrap()
            .unwrap()
            .write_to(&file, &mut unmeasured)
            .unwrap();
        assert!(unmeasured == want);
        let mut seen = Vec::new();
        let through = Plan::as_is_with(&file, Measure::Through(&mut seen)).unwrap();
        assert!(seen == canon::to_crlf(raw) && through.len == seen.len() as u64);
        let plan = Plan::as_is(&file).unwrap();
        let mut got = Vec::new();
        plan.write_to(&file, &mut got).unwrap();
        assert_eq!(got, canon::to_crlf(raw));
        assert_eq!(plan.len, got.len() as u64);
    }

    #[test]
    fn the_plan_writes_what_transport_safe_gives() {
        let binary: Vec<u8> = (0..300_000u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        let long_line = "x".repeat(1000);
        let mut cases: Vec<Vec<u8>> = vec![
            b"".to_vec(),
            b"\n".to_vec(),
            b"hello\nworld\n".to_vec(),
            b"From: a@example.test\nSubject: x\nMIME-Version: 1.0\nContent-Type: text/plain\n\nbody\nFrom here\n".to_vec(),
            b"Subject: only headers".to_vec(),
            b"Subject: a\n folded\nContent-Type: text/plain;\n\tcharset=utf-8\n\nGr\xc3\xbc\xc3\x9fe  \n".to_vec(),
            b"Content-Type: application/octet-stream\nContent-Transfer-Encoding: binary\n\n\x00\x01\xff\r\n".to_vec(),
            b"Content-Type: application/pdf\n\n%PDF 7-bit only\n".to_vec(),
            b"Content-Type: application/pdf\n\n%PDF \x80\n".to_vec(),
            b"Content-Type: message/rfc822\n\nFrom: x\n\n\xe9\n".to_vec(),
            b"Content-Type: text/plain\nContent-Transfer-Encoding: base64\n\naGk=\naGk=\r\n".to_vec(),
            b"%PDF-1.7\n\x00\x01binary\r\x02\n".to_vec(),
            b"no headers, not UTF-8 \xff\xfe and lone CR\r".to_vec(),
            b"Content-Transfer-Encoding: 8bit\n\nbody \xff\n".to_vec(),
            format!("Content-Type: text/plain\n\n{long_line}\n").into_bytes(),
            b"Content-Type: multipart/mixed; boundary=\"b\"\n\npreamble\n--b\nContent-Type: text/plain\n\nhi\n--b\nContent-Type: application/octet-stream\nContent-Transfer-Encoding: binary\n\n\x00\x01\xff\n--b--  \nepilogue\n".to_vec(),
            b"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n\r\nno headers\r\n--b\r\n--b\r\nContent-Type: multipart/alternative; boundary=c\r\n\r\n--c\r\nContent-Type: text/html\r\n\r\n<p>\xe9</p>\r\n--c--\r\n--b\r\nunterminated \xff".to_vec(),
            b"Content-Type: multipart/mixed; boundary=b\n\n--b--\n--b\nContent-Type: text/plain\n\nafter close\r".to_vec(),
            b"Content-Type: multipart/mixed\n\nno boundary\n".to_vec(),
            b" starts with a space: x\n\nbody".to_vec(),
            b"\r\r\n\rlone CRs\r".to_vec(),
        ];
        cases.push(binary.clone());
        let mut mail = b"From: a@example.test\nContent-Type: multipart/mixed; boundary=\"=_x\"\n\n--=_x\nContent-Type: text/plain\n\nsee attached\n--=_x\nContent-Type: application/octet-stream\nContent-Transfer-Encoding: binary\n\n".to_vec();
        mail.extend_from_slice(&binary);
        mail.extend_from_slice(b"\n--=_x\nContent-Type: text/plain; charset=utf-8\n\n");
        mail.extend_from_slice(&binary[..70_000]);
        mail.extend_from_slice(b"\n--=_x--\n");
        cases.push(mail);
        let mut nested = Vec::new();
        for _ in 0..40 {
            nested.extend_from_slice(b"Content-Type: multipart/mixed; boundary=n\n\n--n\n");
        }
        nested.extend_from_slice(b"deep\xff\n");
        cases.push(nested);
        for raw in &cases {
            check(raw);
        }
    }

    #[test]
    fn an_endless_header_field_is_left_to_the_in_memory_path() {
        let mut raw = b"X-Long: ".to_vec();
        raw.extend(std::iter::repeat_n(b'a', LINE_LIMIT + 10));
        raw.extend_from_slice(b"\n\nbody\n");
        assert!(Plan::message(&file_of(&raw)).unwrap().is_none());
        // A long first line that cannot be a field is body, planned as usual.
        let mut raw = b"no field here ".to_vec();
        raw.extend(std::iter::repeat_n(b'a', LINE_LIMIT + 10));
        check(&raw);
    }
}
