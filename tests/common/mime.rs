//! Taking S/MIME output apart by hand, byte for byte, where a MIME parser would normalise:
//! the exact signed bytes and the signature of a clear-text `multipart/signed`, and a copy of
//! signed content with one byte changed for the negative checks.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use super::find;
use base64::Engine as _;

/// Splits a clear-text `multipart/signed` message or entity into (the exact signed bytes of the
/// first part, the DER signature decoded from the second part). The signed part is everything
/// between the CRLF ending the opening delimiter line and the CRLF that belongs to the next
/// delimiter (RFC 2046 5.1.1); the signature part must be followed by the close delimiter.
pub fn split_multipart_signed(msg: &[u8]) -> (Vec<u8>, Vec<u8>) {
    let head_end = find(msg, b"\r\n\r\n", 0).expect("no end of the top-level header");
    let head = String::from_utf8_lossy(&msg[..head_end]).to_string();
    assert!(
        head.contains("multipart/signed")
            && head.contains("protocol=\"application/pkcs7-signature\""),
        "not a multipart/signed S/MIME entity: {head}"
    );
    let b = head
        .split_once("boundary=\"")
        .and_then(|(_, rest)| rest.split_once('"'))
        .expect("no quoted boundary parameter")
        .0;
    let delim = format!("\r\n--{b}");
    let delim = delim.as_bytes();
    // Search from the CRLF that ends the header, in case there is no preamble.
    let first = find(msg, delim, head_end + 2).expect("no opening delimiter");
    let part1_start = first + delim.len();
    assert_eq!(
        &msg[part1_start..part1_start + 2],
        b"\r\n",
        "opening delimiter line"
    );
    let part1_start = part1_start + 2;
    let second = find(msg, delim, part1_start).expect("no second delimiter");
    let part1 = msg[part1_start..second].to_vec();
    let part2_start = second + delim.len();
    assert_eq!(
        &msg[part2_start..part2_start + 2],
        b"\r\n",
        "second delimiter line"
    );
    let part2_start = part2_start + 2;
    let close = find(msg, delim, part2_start).expect("no closing delimiter");
    assert_eq!(
        &msg[close + delim.len()..close + delim.len() + 2],
        b"--",
        "the signature part is not followed by the close delimiter"
    );
    let part2 = &msg[part2_start..close];
    let p2_head_end = find(part2, b"\r\n\r\n", 0).expect("no end of the signature part header");
    let p2_head = String::from_utf8_lossy(&part2[..p2_head_end]).to_ascii_lowercase();
    assert!(
        p2_head.contains("application/pkcs7-signature") && p2_head.contains("base64"),
        "unexpected signature part header: {p2_head}"
    );
    let b64: Vec<u8> = part2[p2_head_end + 4..]
        .iter()
        .copied()
        .filter(|c| !c.is_ascii_whitespace())
        .collect();
    let sig = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .expect("signature part is not base64");
    (part1, sig)
}

/// A copy of `bytes` with one byte changed: the 'c' of the (unique) "the card".
pub fn altered(bytes: &[u8]) -> Vec<u8> {
    let at = find(bytes, b"the card", 0).expect("no \"the card\" in the signed content");
    assert!(
        find(bytes, b"the card", at + 1).is_none(),
        "\"the card\" occurs twice"
    );
    let mut out = bytes.to_vec();
    out[at + 4] ^= 0x20; // 'c' -> 'C'
    out
}
