//! Large inputs for the streaming tests (encrypt, sign): text and a mail with a big binary
//! attachment, and the transport-safe entity the in-memory path makes of them (what the
//! streamed path must produce byte for byte).

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use p11smime::mime::{canon, compose};

/// The transport-safe entity the in-memory path encrypts or signs for `raw` (`as_is`: only
/// CRLF line endings).
pub fn entity_of(raw: &[u8], as_is: bool) -> Vec<u8> {
    if as_is {
        return canon::to_crlf(raw);
    }
    canon::transport_safe(compose::split_message(raw).1).to_bytes()
}

/// About `len` bytes of plain ASCII lines.
pub fn text(len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 100);
    let mut i = 0u64;
    while out.len() < len {
        out.extend_from_slice(
            format!("line {i} of plain ASCII text, nothing to encode\n").as_bytes(),
        );
        i += 1;
    }
    out
}

/// A mail with a text part and `binary` as an attachment sent `binary`.
pub fn mail_with_attachment(binary: &[u8]) -> Vec<u8> {
    let mut m = b"From: alice@example.test\nTo: bob@example.test\nSubject: big\nMIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=\"b1\"\n\n--b1\nContent-Type: text/plain; charset=utf-8\n\nGr\xc3\xbc\xc3\x9fe, see attached\n--b1\nContent-Type: application/octet-stream\nContent-Transfer-Encoding: binary\n\n".to_vec();
    m.extend_from_slice(binary);
    m.extend_from_slice(b"\n--b1--\n");
    m
}
