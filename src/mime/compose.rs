//! Composing S/MIME output: the outer mail headers kept, over a `multipart/signed` body or an
//! `application/pkcs7-mime` body. Everything written here is 7-bit with CRLF line endings.

use super::canon::base64_lines;
use super::entity::{self, Entity, Header};
use rand::Rng;

/// Splits a message into the mail's own header fields (From, To, Subject, ...) and the entity
/// that carries the content (its Content-* fields and body). `MIME-Version` goes to neither:
/// the composer writes its own.
pub fn split_message(raw: &[u8]) -> (Vec<Header>, Entity) {
    let parsed = entity::parse(raw);
    let (content, outer): (Vec<Header>, Vec<Header>) =
        parsed.headers.into_iter().partition(|h| h.is_content());
    let content = content
        .into_iter()
        .filter(|h| !h.is("MIME-Version"))
        .collect();
    (
        outer,
        Entity {
            headers: content,
            body: parsed.body,
        },
    )
}

fn write_headers(outer: &[Header], out: &mut Vec<u8>) {
    for h in outer {
        out.extend_from_slice(&super::canon::to_crlf(&h.raw));
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"MIME-Version: 1.0\r\n");
}

/// A fresh multipart boundary: random, so no line of a signed entity can be mistaken for it.
pub fn boundary() -> String {
    let mut rng = rand::thread_rng();
    let tag: String = (0..24)
        .map(|_| {
            let n = rng.gen_range(0..36u8);
            char::from(if n < 10 { b'0' + n } else { b'A' + n - 10 })
        })
        .collect();
    format!("----=_p11smime_{tag}")
}

/// A clear-text signed message (RFC 8551 §3.5.3): `signed` is the exact entity the signature
/// covers; `micalg` is e.g. "sha-256".
pub fn multipart_signed(
    outer: &[Header],
    signed: &[u8],
    signature_der: &[u8],
    micalg: &str,
) -> Vec<u8> {
    let b = boundary();
    let mut out = multipart_signed_head(outer, micalg, &b);
    out.reserve(signed.len() + signature_der.len() * 2 + 512);
    out.extend_from_slice(signed);
    out.extend_from_slice(&multipart_signed_tail(&b, signature_der));
    out
}

/// What [`multipart_signed`] writes before the signed entity: apart, so that a large entity
/// can be streamed between it and [`multipart_signed_tail`].
pub fn multipart_signed_head(outer: &[Header], micalg: &str, b: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(1024);
    write_headers(outer, &mut out);
    out.extend_from_slice(
        format!(
            "Content-Type: multipart/signed; protocol=\"application/pkcs7-signature\"; micalg={micalg};\r\n\tboundary=\"{b}\"\r\n\r\n\
             This is an S/MIME signed message\r\n\r\n--{b}\r\n"
        )
        .as_bytes(),
    );
    out
}

/// What [`multipart_signed`] writes after the signed entity: the signature part and the close
/// delimiter.
pub fn multipart_signed_tail(b: &str, signature_der: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "\r\n--{b}\r\nContent-Type: application/pkcs7-signature; name=\"smime.p7s\"\r\n\
         Content-Transfer-Encoding: base64\r\n\
         Content-Disposition: attachment; filename=\"smime.p7s\"\r\n\
         Content-Description: S/MIME Cryptographic Signature\r\n\r\n"
    )
    .into_bytes();
    out.extend_from_slice(&base64_lines(signature_der));
    out.extend_from_slice(format!("\r\n--{b}--\r\n").as_bytes());
    out
}

/// An `application/pkcs7-mime` message carrying `der` (`smime_type` e.g. "signed-data").
pub fn pkcs7_mime(outer: &[Header], smime_type: &str, der: &[u8]) -> Vec<u8> {
    let mut out = pkcs7_mime_head(outer, smime_type);
    out.extend_from_slice(&base64_lines(der));
    out
}

/// The headers of [`pkcs7_mime`], before the base64 lines of the DER.
pub fn pkcs7_mime_head(outer: &[Header], smime_type: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(1024);
    write_headers(outer, &mut out);
    out.extend_from_slice(
        format!(
            "Content-Type: application/pkcs7-mime; smime-type={smime_type}; name=\"smime.p7m\"\r\n\
             Content-Transfer-Encoding: base64\r\n\
             Content-Disposition: attachment; filename=\"smime.p7m\"\r\n\r\n"
        )
        .as_bytes(),
    );
    out
}

/// A readable message: the original mail's own headers (From, To, Subject, Date, Message-ID,
/// ...) over the decrypted entity, for a mailbox or a mail client.
pub fn readable_message(outer: &[Header], entity: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(entity.len() + 1024);
    for h in outer {
        out.extend_from_slice(&super::canon::to_crlf(&h.raw));
        out.extend_from_slice(b"\r\n");
    }
    let parsed = super::entity::parse(entity);
    if parsed.header("MIME-Version").is_none() && !parsed.headers.is_empty() {
        out.extend_from_slice(b"MIME-Version: 1.0\r\n");
    }
    if parsed.headers.is_empty() {
        // Bare content without an entity header: it starts the body.
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(entity);
    out
}

/// The lines around [`pem`]'s base64 (LF-terminated lines of 76 characters).
pub const PEM_BEGIN: &[u8] = b"-----BEGIN CMS-----\n";
pub const PEM_END: &[u8] = b"-----END CMS-----\n";

/// PEM with the `CMS` label.
pub fn pem(der: &[u8]) -> Vec<u8> {
    let mut out = PEM_BEGIN.to_vec();
    let lines = base64_lines(der);
    out.extend(lines.iter().filter(|b| **b != b'\r'));
    out.extend_from_slice(PEM_END);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readable_message_puts_the_mail_headers_over_the_entity() {
        let (outer, _) = split_message(
            b"From: a@example.test\nSubject: x\nContent-Type: application/pkcs7-mime\n\nMII=\n",
        );
        let msg = readable_message(&outer, b"Content-Type: text/plain\r\n\r\nhello\r\n");
        assert_eq!(
            msg,
            b"From: a@example.test\r\nSubject: x\r\nMIME-Version: 1.0\r\nContent-Type: text/plain\r\n\r\nhello\r\n"
        );
        let bare = readable_message(&outer, b"just text");
        assert!(bare.ends_with(b"Subject: x\r\n\r\njust text"));
    }

    #[test]
    fn outer_headers_stay_outside_the_signed_entity() {
        let raw = b"From: a@example.test\nTo: b@example.test\nSubject: hi\nMIME-Version: 1.0\nContent-Type: text/plain\n\nbody\n";
        let (outer, entity) = split_message(raw);
        let names: Vec<_> = outer.iter().map(|h| h.name.as_str()).collect();
        assert_eq!(names, ["From", "To", "Subject"]);
        assert_eq!(entity.headers.len(), 1);
        let signed = crate::mime::canon::transport_safe(entity).to_bytes();
        let msg = multipart_signed(&outer, &signed, b"sig", "sha-256");
        let text = String::from_utf8(msg).unwrap();
        assert!(text.starts_with(
            "From: a@example.test\r\nTo: b@example.test\r\nSubject: hi\r\nMIME-Version: 1.0\r\n"
        ));
        assert!(text.contains("micalg=sha-256"));
        assert!(!text.replace("\r\n", "").contains('\n'));
    }
}
