//! Finding the CMS object in whatever the user hands us: DER/BER, PEM, bare base64, or a whole
//! RFC 5322 message or MIME entity carrying `application/pkcs7-mime` (as its body or as an
//! `smime.p7m` attachment anywhere inside a multipart).

use crate::error::{Error, Result};
use base64::Engine;
use mail_parser::{MessageParser, MimeHeaders, PartType};
use std::borrow::Cow;

/// What form the input arrived in, for `--verbose`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum InputForm {
    Der,
    Pem,
    Base64,
    Mime,
}

/// The CMS bytes found in an input.
#[derive(Debug)]
pub struct Found<'a> {
    pub form: InputForm,
    pub cms: Cow<'a, [u8]>,
}

/// Finds the CMS object in `input`.
pub fn find_cms(input: &[u8]) -> Result<Found<'_>> {
    if input.is_empty() {
        return Err(Error::BadInput("the input is empty".into()));
    }
    if input[0] == 0x30 {
        return Ok(Found {
            form: InputForm::Der,
            cms: Cow::Borrowed(input),
        });
    }
    let trimmed = trim_ascii_start(input);
    if trimmed.starts_with(b"-----BEGIN ") {
        return Ok(Found {
            form: InputForm::Pem,
            cms: Cow::Owned(pem_body(trimmed)?),
        });
    }
    if let Some(der) = bare_base64(trimmed) {
        return Ok(Found {
            form: InputForm::Base64,
            cms: Cow::Owned(der),
        });
    }
    Ok(Found {
        form: InputForm::Mime,
        cms: Cow::Owned(from_mime(input)?),
    })
}

fn trim_ascii_start(b: &[u8]) -> &[u8] {
    let n = b.iter().take_while(|c| c.is_ascii_whitespace()).count();
    &b[n..]
}

fn decode_base64(text: &[u8]) -> Option<Vec<u8>> {
    let clean: Vec<u8> = text
        .iter()
        .copied()
        .filter(|c| !c.is_ascii_whitespace())
        .collect();
    base64::engine::general_purpose::STANDARD
        .decode(&clean)
        .ok()
}

fn pem_body(text: &[u8]) -> Result<Vec<u8>> {
    let bad = || Error::BadInput("the PEM input is malformed (no END line or bad base64)".into());
    let body_start = text.iter().position(|c| *c == b'\n').ok_or_else(bad)? + 1;
    let rest = &text[body_start..];
    let end = rest
        .windows(9)
        .position(|w| w == b"-----END ")
        .ok_or_else(bad)?;
    let der = decode_base64(&rest[..end]).ok_or_else(bad)?;
    if der.first() != Some(&0x30) {
        return Err(Error::BadInput(
            "the PEM input does not hold CMS data".into(),
        ));
    }
    Ok(der)
}

/// Base64 with nothing else around it that decodes to a DER SEQUENCE.
fn bare_base64(text: &[u8]) -> Option<Vec<u8>> {
    let is_b64 = |c: &u8| {
        c.is_ascii_alphanumeric() || matches!(c, b'+' | b'/' | b'=') || c.is_ascii_whitespace()
    };
    if !text.iter().all(is_b64) {
        return None;
    }
    decode_base64(text).filter(|d| d.first() == Some(&0x30))
}

fn is_smime_part(part: &mail_parser::MessagePart<'_>) -> bool {
    let by_type = part.content_type().is_some_and(|ct| {
        ct.ctype().eq_ignore_ascii_case("application")
            && ct.subtype().is_some_and(|s| {
                s.eq_ignore_ascii_case("pkcs7-mime") || s.eq_ignore_ascii_case("x-pkcs7-mime")
            })
    });
    let by_name = part
        .attachment_name()
        .is_some_and(|n| n.to_ascii_lowercase().ends_with(".p7m"));
    by_type || by_name
}

fn from_mime(input: &[u8]) -> Result<Vec<u8>> {
    let not_smime = || {
        Error::BadInput(
            "the input is not CMS data and not a mail message with an S/MIME part \
             (application/pkcs7-mime or an smime.p7m attachment)"
                .into(),
        )
    };
    let message = MessageParser::default()
        .parse(input)
        .ok_or_else(not_smime)?;
    let part = message
        .parts
        .iter()
        .find(|p| is_smime_part(p))
        .ok_or_else(not_smime)?;
    let body = match &part.body {
        PartType::Binary(b) | PartType::InlineBinary(b) => b.to_vec(),
        PartType::Text(t) => t.as_bytes().to_vec(),
        _ => return Err(not_smime()),
    };
    // A part sent without a transfer encoding header but holding base64 text.
    if body.first() == Some(&0x30) {
        Ok(body)
    } else {
        bare_base64(trim_ascii_start(&body)).ok_or_else(|| {
            Error::BadInput("the S/MIME part of the message does not hold CMS data".into())
        })
    }
}

/// What the outermost layer of an entity or CMS object is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Layer {
    Encrypted,
    Signed,
    /// Neither: readable content.
    Plain,
}

/// Classifies by the outermost layer only: the top-level Content-Type of a MIME entity, or the
/// content type of a bare CMS object. An S/MIME attachment inside a multipart/mixed is content,
/// not a layer.
pub fn layer(input: &[u8]) -> Layer {
    let first = trim_ascii_start(input);
    if input.first() == Some(&0x30) || first.starts_with(b"-----BEGIN ") {
        return find_cms(input).map_or(Layer::Plain, |f| cms_layer(&f.cms));
    }
    let parsed = super::entity::parse(input);
    let Some(ct) = parsed.header("Content-Type").map(|h| h.value()) else {
        return Layer::Plain;
    };
    match super::entity::mime_type(&ct).as_str() {
        "multipart/signed" => Layer::Signed,
        "application/pkcs7-mime" | "application/x-pkcs7-mime" => {
            find_cms(input).map_or(Layer::Plain, |f| cms_layer(&f.cms))
        }
        _ => Layer::Plain,
    }
}

/// True when `input` carries encrypted S/MIME anywhere `decrypt` would find it (a message body,
/// an smime.p7m attachment, or a bare CMS object).
///
/// S/MIME that cannot be read (truncated, bad base64) counts as encrypted too, so that a batch
/// tries it and reports the damage instead of passing it on as if it were plain mail; only
/// signed-only S/MIME and mail without S/MIME are not.
pub fn has_encrypted_part(input: &[u8]) -> bool {
    match find_cms(input) {
        Ok(found) => match crate::cms::envelope::content_info(&found.cms) {
            Ok((oid, _)) => {
                oid == crate::cms::oids::ENVELOPED_DATA
                    || oid == crate::cms::oids::AUTH_ENVELOPED_DATA
            }
            Err(_) => true,
        },
        Err(_) => looks_like_smime(input),
    }
}

/// An S/MIME part by its content type or name, whether or not its content can be read.
fn looks_like_smime(input: &[u8]) -> bool {
    MessageParser::default()
        .parse(input)
        .is_some_and(|m| m.parts.iter().any(|p| is_smime_part(p)))
}

fn cms_layer(cms: &[u8]) -> Layer {
    use crate::cms::oids;
    match crate::cms::envelope::content_info(cms) {
        Ok((oid, _)) if oid == oids::ENVELOPED_DATA || oid == oids::AUTH_ENVELOPED_DATA => {
            Layer::Encrypted
        }
        Ok((oid, _)) if oid == oids::SIGNED_DATA => Layer::Signed,
        _ => Layer::Plain,
    }
}

/// Signed input, as found.
#[derive(Debug)]
pub enum SignedInput<'a> {
    /// multipart/signed: the first part exactly as received, and the detached signature.
    Detached {
        signed: &'a [u8],
        signature: Vec<u8>,
    },
    /// A CMS object: opaque signed-data, or a bare detached signature (`.p7s`).
    Cms(Cow<'a, [u8]>),
}

/// Signed input and the message's From address (for comparing with the signer's).
#[derive(Debug)]
pub struct FoundSigned<'a> {
    pub input: SignedInput<'a>,
    pub from: Option<String>,
}

fn is_type(part: &mail_parser::MessagePart<'_>, ctype: &str, subtypes: &[&str]) -> bool {
    part.content_type().is_some_and(|ct| {
        ct.ctype().eq_ignore_ascii_case(ctype)
            && ct
                .subtype()
                .is_some_and(|s| subtypes.iter().any(|t| s.eq_ignore_ascii_case(t)))
    })
}

/// Finds what to verify in `input`: CMS in any encoding, or a mail message carrying a
/// multipart/signed body or opaque signed-data.
pub fn find_signed(input: &[u8]) -> Result<FoundSigned<'_>> {
    let first = trim_ascii_start(input);
    if input.first() == Some(&0x30)
        || first.starts_with(b"-----BEGIN ")
        || bare_base64(first).is_some()
    {
        return Ok(FoundSigned {
            input: SignedInput::Cms(find_cms(input)?.cms),
            from: None,
        });
    }
    let not_signed = || {
        Error::BadInput(
            "the input is not a signed message: no multipart/signed part and no S/MIME signed data"
                .into(),
        )
    };
    let message = MessageParser::default()
        .parse(input)
        .ok_or_else(not_signed)?;
    let from = message
        .from()
        .and_then(|f| f.first())
        .and_then(|a| a.address())
        .map(str::to_string);
    for part in &message.parts {
        if is_type(part, "multipart", &["signed"]) {
            let ids = part.sub_parts().unwrap_or_default();
            // The signature is the second part; the first is taken from the raw bytes below.
            let Some(sig) = ids.get(1).and_then(|b| message.parts.get(*b as usize)) else {
                return Err(Error::BadInput(
                    "a multipart/signed without its two parts".into(),
                ));
            };
            let body = input
                .get(part.offset_body as usize..part.offset_end as usize)
                .ok_or_else(not_signed)?;
            let boundary = part
                .content_type()
                .and_then(|ct| ct.attribute("boundary"))
                .ok_or_else(|| Error::BadInput("a multipart/signed without a boundary".into()))?;
            let signed_bytes = first_part(body, boundary).ok_or_else(not_signed)?;
            let signature = match &sig.body {
                PartType::Binary(b) | PartType::InlineBinary(b) => b.to_vec(),
                PartType::Text(t) => find_cms(t.as_bytes())?.cms.into_owned(),
                _ => return Err(not_signed()),
            };
            return Ok(FoundSigned {
                input: SignedInput::Detached {
                    signed: signed_bytes,
                    signature,
                },
                from,
            });
        }
    }
    Ok(FoundSigned {
        input: SignedInput::Cms(Cow::Owned(from_mime(input)?)),
        from,
    })
}

/// The first body part of a multipart body, exactly as received: from after the first delimiter
/// line to the line break before the next one (that line break belongs to the delimiter,
/// RFC 2046 §5.1.1). Parser offsets are not used because they differ for parts without headers.
fn first_part<'a>(body: &'a [u8], boundary: &str) -> Option<&'a [u8]> {
    let delimiter = format!("--{boundary}");
    let is_delimiter = |line: &[u8]| {
        line.strip_prefix(delimiter.as_bytes()).is_some_and(|rest| {
            rest.iter()
                .all(|b| matches!(b, b' ' | b'\t' | b'\r' | b'-'))
        })
    };
    let mut start = None;
    let mut pos = 0;
    while pos < body.len() {
        let end = body[pos..]
            .iter()
            .position(|b| *b == b'\n')
            .map_or(body.len(), |i| pos + i + 1);
        let line = &body[pos..end];
        let content = line.strip_suffix(b"\n").unwrap_or(line);
        if is_delimiter(content) {
            match start {
                None => start = Some(end),
                Some(s) => {
                    // Drop the CRLF (or LF) that precedes this delimiter line.
                    let mut stop = pos.checked_sub(1)?;
                    if stop > s && body[stop - 1] == b'\r' {
                        stop -= 1;
                    }
                    return body.get(s..stop.max(s));
                }
            }
        }
        pos = end;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const DER: &[u8] = &[0x30, 0x03, 0x02, 0x01, 0x00];

    #[test]
    fn der_pem_and_base64_are_recognised() {
        assert_eq!(find_cms(DER).unwrap().form, InputForm::Der);
        let pem = b"-----BEGIN PKCS7-----\nMAMCAQA=\n-----END PKCS7-----\n";
        let found = find_cms(pem).unwrap();
        assert_eq!((found.form, &*found.cms), (InputForm::Pem, DER));
        let found = find_cms(b"  MAMCAQA=\r\n").unwrap();
        assert_eq!((found.form, &*found.cms), (InputForm::Base64, DER));
    }

    #[test]
    fn smime_body_and_attachment_are_found_with_lf_and_crlf() {
        let body = "From: a@example.test\nTo: b@example.test\nSubject: x\nMIME-Version: 1.0\n\
            Content-Type: application/x-pkcs7-mime; smime-type=enveloped-data; name=smime.p7m\n\
            Content-Transfer-Encoding: base64\n\nMAMCAQA=\n";
        let attached = "From: a@example.test\nMIME-Version: 1.0\n\
            Content-Type: multipart/mixed; boundary=\"b1\"\n\n--b1\nContent-Type: text/plain\n\nhello\n\
            --b1\nContent-Type: application/octet-stream\n\
            Content-Disposition: attachment; filename=\"smime.p7m\"\n\
            Content-Transfer-Encoding: base64\n\nMAMCAQA=\n--b1--\n";
        for text in [body, attached] {
            for msg in [text.to_string(), text.replace('\n', "\r\n")] {
                let found = find_cms(msg.as_bytes()).unwrap();
                assert_eq!((found.form, &*found.cms), (InputForm::Mime, DER));
            }
        }
    }

    #[test]
    fn first_part_excludes_the_line_break_of_the_next_delimiter() {
        let body = b"preamble\r\n--b\r\njust a line\r\n\r\n--b\r\nsig\r\n--b--\r\n";
        assert_eq!(first_part(body, "b"), Some(&b"just a line\r\n"[..]));
        let body = b"--b\nContent-Type: text/plain\n\nx\n--b\ny\n--b--\n";
        assert_eq!(
            first_part(body, "b"),
            Some(&b"Content-Type: text/plain\n\nx"[..])
        );
        assert_eq!(first_part(b"--b\nno end", "b"), None);
    }

    #[test]
    fn layers_are_read_from_the_top_level_only() {
        let signed = b"Content-Type: multipart/signed; protocol=\"application/pkcs7-signature\"; boundary=b\n\n--b\n";
        assert_eq!(layer(signed), Layer::Signed);
        let enveloped = "Content-Type: application/pkcs7-mime; smime-type=enveloped-data\n\
            Content-Transfer-Encoding: base64\n\nMAMCAQA=\n";
        // Not a real EnvelopedData: unreadable CMS is plain content, not a layer.
        assert_eq!(layer(enveloped.as_bytes()), Layer::Plain);
        let mixed = "Content-Type: multipart/mixed; boundary=b\n\n--b\n\
            Content-Type: application/pkcs7-mime; name=smime.p7m\n\nMAMCAQA=\n--b--\n";
        assert_eq!(layer(mixed.as_bytes()), Layer::Plain);
        assert_eq!(layer(b"Content-Type: text/plain\n\nhi\n"), Layer::Plain);
    }

    #[test]
    fn plain_mail_and_garbage_are_refused() {
        let plain = b"From: a@example.test\nSubject: hi\n\nnothing here\n";
        assert!(matches!(find_cms(plain), Err(Error::BadInput(_))));
        assert!(matches!(find_cms(b""), Err(Error::BadInput(_))));
        assert!(matches!(
            find_cms(b"-----BEGIN PKCS7-----\n!!!\n"),
            Err(Error::BadInput(_))
        ));
    }
}
