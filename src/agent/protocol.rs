//! The wire protocol between a command and the session agent, version 1 (documented for users
//! in `docs/agent-protocol.md`).
//!
//! Frames are length-prefixed and made of length-prefixed fields, so that every message is read
//! with bounds known before allocation and nothing is parsed from text. Every field is held in
//! zeroized memory: a field may be a content-encryption key or a PIN. The agent answers only
//! five requests: its status, its certificates, "decrypt this content-encryption key", "sign
//! these signed attributes" and "stop". No request returns key material, a raw RSA result or an
//! ECDH secret.
//!
//! ```text
//! frame = length:u32be body          ; 2 <= length <= MAX_FRAME
//! body  = version:u8 kind:u8 field*  ; version = 1
//! field = length:u32be byte*
//! ```

use crate::cms::kari::KeyAgreement;
use crate::cms::recipient::{KeyWrap, Recipient};
use crate::error::{Error, PinFlags};
use crate::keyops::{HashAlg, RsaPadding, SignAlg};
use der::{Decode, Encode};
use std::io::{Read, Write};
use zeroize::Zeroizing;

/// The protocol version this build speaks.
pub const VERSION: u8 = 1;

/// The largest frame either side accepts: a certificate list fits many times over, while a
/// message's content never crosses the socket.
pub const MAX_FRAME: usize = 1 << 20;

/// The most fields a frame may carry.
const MAX_FIELDS: usize = 4096;

/// Request kinds (command to agent).
pub mod kind {
    pub const STATUS: u8 = 0x01;
    pub const CERTIFICATES: u8 = 0x02;
    pub const DECRYPT_KEY: u8 = 0x03;
    pub const SIGN: u8 = 0x04;
    pub const STOP: u8 = 0x05;
    /// Answer: success, with the request's result fields.
    pub const OK: u8 = 0x80;
    /// Answer: failure, with an [`super::ErrorCode`] and a message.
    pub const ERROR: u8 = 0x81;
}

/// Why a frame could not be read or understood.
#[derive(Debug, thiserror::Error)]
pub enum ProtocolError {
    #[error("the connection failed: {0}")]
    Io(#[from] std::io::Error),
    #[error("the other side closed the connection")]
    Closed,
    #[error("protocol version {0} (this side speaks {VERSION})")]
    Version(u8),
    #[error("malformed frame: {0}")]
    Malformed(&'static str),
}

/// One frame: its kind and fields.
#[derive(Debug, Default)]
pub struct Frame {
    pub kind: u8,
    pub fields: Vec<Zeroizing<Vec<u8>>>,
}

impl Frame {
    pub fn new(kind: u8) -> Self {
        Frame {
            kind,
            fields: Vec::new(),
        }
    }

    /// Appends a field.
    pub fn push(mut self, bytes: &[u8]) -> Self {
        self.fields.push(Zeroizing::new(bytes.to_vec()));
        self
    }

    /// Appends a text field.
    pub fn text(self, s: &str) -> Self {
        self.push(s.as_bytes())
    }

    /// Writes the frame, in one write so that a frame is never interleaved.
    pub fn write_to(&self, out: &mut impl Write) -> Result<(), ProtocolError> {
        let body_len = 2 + self.fields.iter().map(|f| 4 + f.len()).sum::<usize>();
        if body_len > MAX_FRAME || self.fields.len() > MAX_FIELDS {
            return Err(ProtocolError::Malformed("frame too large"));
        }
        let mut buf = Zeroizing::new(Vec::with_capacity(4 + body_len));
        buf.extend_from_slice(&(body_len as u32).to_be_bytes());
        buf.push(VERSION);
        buf.push(self.kind);
        for f in &self.fields {
            buf.extend_from_slice(&(f.len() as u32).to_be_bytes());
            buf.extend_from_slice(f);
        }
        out.write_all(&buf)?;
        out.flush()?;
        Ok(())
    }

    /// Reads one frame. A version other than ours is reported before the body is looked at.
    pub fn read_from(input: &mut impl Read) -> Result<Frame, ProtocolError> {
        let mut len = [0u8; 4];
        match input.read_exact(&mut len) {
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                return Err(ProtocolError::Closed);
            }
            other => other?,
        }
        let len = u32::from_be_bytes(len) as usize;
        if !(2..=MAX_FRAME).contains(&len) {
            return Err(ProtocolError::Malformed("frame length out of range"));
        }
        let mut body = Zeroizing::new(vec![0u8; len]);
        input.read_exact(&mut body)?;
        Frame::decode(&body)
    }

    /// Parses a frame body (version, kind, fields).
    pub fn decode(body: &[u8]) -> Result<Frame, ProtocolError> {
        let [version, kind, rest @ ..] = body else {
            return Err(ProtocolError::Malformed("frame too short"));
        };
        if *version != VERSION {
            return Err(ProtocolError::Version(*version));
        }
        let mut fields = Vec::new();
        let mut rest = rest;
        while !rest.is_empty() {
            if fields.len() == MAX_FIELDS {
                return Err(ProtocolError::Malformed("too many fields"));
            }
            let (len, tail) = rest
                .split_first_chunk::<4>()
                .ok_or(ProtocolError::Malformed("truncated field length"))?;
            let len = u32::from_be_bytes(*len) as usize;
            if len > tail.len() {
                return Err(ProtocolError::Malformed("truncated field"));
            }
            let (field, tail) = tail.split_at(len);
            fields.push(Zeroizing::new(field.to_vec()));
            rest = tail;
        }
        Ok(Frame {
            kind: *kind,
            fields,
        })
    }
}

/// Reads a frame's fields in order.
pub struct Fields<'f> {
    iter: std::slice::Iter<'f, Zeroizing<Vec<u8>>>,
}

impl<'f> Fields<'f> {
    pub fn of(frame: &'f Frame) -> Self {
        Fields {
            iter: frame.fields.iter(),
        }
    }

    pub fn bytes(&mut self) -> Result<&'f [u8], ProtocolError> {
        self.iter
            .next()
            .map(|f| f.as_slice())
            .ok_or(ProtocolError::Malformed("a field is missing"))
    }

    pub fn text(&mut self) -> Result<&'f str, ProtocolError> {
        std::str::from_utf8(self.bytes()?).map_err(|_| ProtocolError::Malformed("text not UTF-8"))
    }

    pub fn flag(&mut self) -> Result<bool, ProtocolError> {
        match self.bytes()? {
            [0] => Ok(false),
            [1] => Ok(true),
            _ => Err(ProtocolError::Malformed("a flag is not 0 or 1")),
        }
    }

    /// True when every field was read.
    pub fn is_done(&self) -> bool {
        self.iter.len() == 0
    }

    /// How many fields are left.
    pub fn remaining(&self) -> usize {
        self.iter.len()
    }
}

/// Why the agent refused or failed a request: the first field of an ERROR answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum ErrorCode {
    /// The key did not open it: uniform, without detail (no padding oracle).
    Failed = 1,
    /// The token cannot do this; the message says what.
    Unsupported = 2,
    /// The session ended (card removed, login lost); the agent exits after saying so.
    SessionEnded = 3,
    /// The request was malformed or not allowed.
    BadRequest = 4,
    /// The request spoke another protocol version; the message is the agent's version.
    Version = 5,
    KeyNotFound = 6,
    /// The key wants the PIN for this use (CKA_ALWAYS_AUTHENTICATE); fields: the PIN flags.
    PinNeeded = 7,
    PinIncorrect = 8,
    PinLocked = 9,
    FinalTryRefused = 10,
    LoginFailed = 11,
    /// Anything else; the message says what.
    Other = 12,
}

impl ErrorCode {
    fn from_byte(b: u8) -> Option<Self> {
        use ErrorCode::*;
        [
            Failed,
            Unsupported,
            SessionEnded,
            BadRequest,
            Version,
            KeyNotFound,
            PinNeeded,
            PinIncorrect,
            PinLocked,
            FinalTryRefused,
            LoginFailed,
            Other,
        ]
        .into_iter()
        .find(|c| *c as u8 == b)
    }
}

/// An ERROR answer.
pub fn error_frame(code: ErrorCode, message: &str) -> Frame {
    Frame::new(kind::ERROR).push(&[code as u8]).text(message)
}

/// An ERROR answer carrying PIN flags (PinNeeded, PinIncorrect).
pub fn pin_error_frame(code: ErrorCode, message: &str, flags: PinFlags) -> Frame {
    error_frame(code, message).push(&[
        flags.count_low as u8,
        flags.final_try as u8,
        flags.locked as u8,
    ])
}

/// A failed answer as the client sees it.
#[derive(Debug)]
pub struct Refusal {
    pub code: ErrorCode,
    pub message: String,
    pub flags: PinFlags,
}

/// Reads an ERROR answer.
pub fn read_refusal(frame: &Frame) -> Result<Refusal, ProtocolError> {
    let mut f = Fields::of(frame);
    let code = match f.bytes()? {
        [b] => ErrorCode::from_byte(*b).unwrap_or(ErrorCode::Other),
        _ => return Err(ProtocolError::Malformed("bad error code")),
    };
    let message = f.text()?.to_string();
    let flags = match f.bytes() {
        Ok([low, last, locked]) => PinFlags {
            count_low: *low == 1,
            final_try: *last == 1,
            locked: *locked == 1,
        },
        _ => PinFlags::default(),
    };
    Ok(Refusal {
        code,
        message,
        flags,
    })
}

/// The agent's answer to a library error from an operation.
pub fn frame_for_error(e: &Error) -> Frame {
    match e {
        Error::DecryptFailed => error_frame(ErrorCode::Failed, "the private-key operation failed"),
        Error::Unsupported(m) => error_frame(ErrorCode::Unsupported, m),
        Error::KeyNotFound(m) => error_frame(ErrorCode::KeyNotFound, m),
        Error::PinIncorrect(flags) => {
            pin_error_frame(ErrorCode::PinIncorrect, "PIN incorrect", *flags)
        }
        Error::PinLocked => error_frame(ErrorCode::PinLocked, "the PIN is locked"),
        Error::FinalTryRefused => error_frame(ErrorCode::FinalTryRefused, "final PIN try refused"),
        Error::LoginFailed(m) => error_frame(ErrorCode::LoginFailed, m),
        Error::BadInput(m) => error_frame(ErrorCode::BadRequest, m),
        other => error_frame(ErrorCode::Other, &other.to_string()),
    }
}

/// The library error a refusal stands for, on the client's side.
pub fn error_for_refusal(r: Refusal) -> Error {
    match r.code {
        ErrorCode::Failed => Error::DecryptFailed,
        ErrorCode::Unsupported => Error::Unsupported(r.message),
        ErrorCode::KeyNotFound => Error::KeyNotFound(r.message),
        ErrorCode::PinIncorrect => Error::PinIncorrect(r.flags),
        ErrorCode::PinLocked => Error::PinLocked,
        ErrorCode::FinalTryRefused => Error::FinalTryRefused,
        ErrorCode::LoginFailed => Error::LoginFailed(r.message),
        ErrorCode::SessionEnded => Error::Agent(format!(
            "the agent's session ended ({}); run the command again: it will ask for the PIN",
            r.message
        )),
        ErrorCode::Version => Error::Agent(format!(
            "the running agent speaks protocol version {}, this p11smime speaks {VERSION}: \
             stop it with `p11smime agent stop` and start it again",
            r.message
        )),
        ErrorCode::BadRequest => {
            Error::Agent(format!("the agent refused the request: {}", r.message))
        }
        ErrorCode::PinNeeded | ErrorCode::Other => {
            Error::Agent(format!("the agent failed: {}", r.message))
        }
    }
}

fn hash_name(h: HashAlg) -> &'static str {
    match h {
        HashAlg::Sha1 => "sha1",
        HashAlg::Sha224 => "sha224",
        HashAlg::Sha256 => "sha256",
        HashAlg::Sha384 => "sha384",
        HashAlg::Sha512 => "sha512",
    }
}

fn hash_from(name: &str) -> Result<HashAlg, ProtocolError> {
    Ok(match name {
        "sha1" => HashAlg::Sha1,
        "sha224" => HashAlg::Sha224,
        "sha256" => HashAlg::Sha256,
        "sha384" => HashAlg::Sha384,
        "sha512" => HashAlg::Sha512,
        _ => return Err(ProtocolError::Malformed("unknown digest")),
    })
}

/// DECRYPT_KEY: `key_id`, then the wrapping (`rsa-pkcs1`; `rsa-oaep` hash mgf-hash label;
/// `ecdh` kdf-hash cofactor wrap-algorithm-DER kek-length curve-OID-DER-or-empty point
/// ukm-present ukm), then the encrypted key.
pub fn decrypt_key_request(key_id: &[u8], recipient: &Recipient) -> Result<Frame, Error> {
    let mut f = Frame::new(kind::DECRYPT_KEY).push(key_id);
    match &recipient.wrap {
        KeyWrap::Rsa(RsaPadding::Pkcs1v15) => f = f.text("rsa-pkcs1"),
        KeyWrap::Rsa(RsaPadding::Oaep {
            hash,
            mgf_hash,
            label,
        }) => {
            f = f
                .text("rsa-oaep")
                .text(hash_name(*hash))
                .text(hash_name(*mgf_hash))
                .push(label)
        }
        KeyWrap::Ecdh(a) => {
            let encode =
                |e: der::Error| Error::BadInput(format!("cannot encode the agreement: {e}"));
            let wrap = a.wrap.to_der().map_err(encode)?;
            let curve = match a.originator_curve {
                Some(c) => c.to_der().map_err(encode)?,
                None => Vec::new(),
            };
            f = f
                .text("ecdh")
                .text(hash_name(a.kdf))
                .push(&[a.cofactor as u8])
                .push(&wrap)
                .push(&[a.kek_len as u8])
                .push(&curve)
                .push(&a.ephemeral_point)
                .push(&[a.ukm.is_some() as u8])
                .push(a.ukm.as_deref().unwrap_or_default());
        }
        KeyWrap::Unsupported(what) => return Err(Error::Unsupported(what.clone())),
    }
    Ok(f.push(&recipient.encrypted_key))
}

/// Reads a DECRYPT_KEY request: the key id and the recipient to open.
pub fn read_decrypt_key(frame: &Frame) -> Result<(Vec<u8>, Recipient), ProtocolError> {
    let mut f = Fields::of(frame);
    let key_id = f.bytes()?.to_vec();
    let wrap = match f.text()? {
        "rsa-pkcs1" => KeyWrap::Rsa(RsaPadding::Pkcs1v15),
        "rsa-oaep" => KeyWrap::Rsa(RsaPadding::Oaep {
            hash: hash_from(f.text()?)?,
            mgf_hash: hash_from(f.text()?)?,
            label: f.bytes()?.to_vec(),
        }),
        "ecdh" => {
            let kdf = hash_from(f.text()?)?;
            let cofactor = f.flag()?;
            let wrap = spki::AlgorithmIdentifierOwned::from_der(f.bytes()?)
                .map_err(|_| ProtocolError::Malformed("bad key-wrap algorithm"))?;
            let kek_len = match f.bytes()? {
                [n @ (16 | 24 | 32)] => *n as usize,
                _ => return Err(ProtocolError::Malformed("bad key-wrap key length")),
            };
            let originator_curve = match f.bytes()? {
                [] => None,
                der => Some(
                    const_oid::ObjectIdentifier::from_der(der)
                        .map_err(|_| ProtocolError::Malformed("bad curve"))?,
                ),
            };
            let ephemeral_point = f.bytes()?.to_vec();
            let has_ukm = f.flag()?;
            let ukm = f.bytes()?.to_vec();
            KeyWrap::Ecdh(Box::new(KeyAgreement {
                kdf,
                cofactor,
                wrap,
                kek_len,
                originator_curve,
                ephemeral_point,
                ukm: has_ukm.then_some(ukm),
            }))
        }
        _ => return Err(ProtocolError::Malformed("unknown key wrapping")),
    };
    let encrypted_key = f.bytes()?.to_vec();
    if !f.is_done() {
        return Err(ProtocolError::Malformed("extra fields"));
    }
    Ok((
        key_id,
        Recipient {
            id: None,
            wrap,
            encrypted_key,
        },
    ))
}

/// SIGN: `key_id`, the scheme (`rsa-pkcs1`, `rsa-pss`, `ecdsa`), its digest, the DER of the
/// signed attributes, the PIN for a key that wants it on every use (empty: none) and whether
/// the user accepted the final PIN try.
pub struct SignRequest<'f> {
    pub key_id: &'f [u8],
    pub alg: SignAlg,
    pub signed_attributes: &'f [u8],
    pub pin: Option<&'f [u8]>,
    pub force_final_try: bool,
}

impl SignRequest<'_> {
    pub fn frame(&self) -> Frame {
        let (scheme, hash) = match self.alg {
            SignAlg::RsaPkcs1v15(h) => ("rsa-pkcs1", h),
            SignAlg::RsaPss(h) => ("rsa-pss", h),
            SignAlg::Ecdsa(h) => ("ecdsa", h),
        };
        Frame::new(kind::SIGN)
            .push(self.key_id)
            .text(scheme)
            .text(hash_name(hash))
            .push(self.signed_attributes)
            .push(self.pin.unwrap_or_default())
            .push(&[self.force_final_try as u8])
    }

    pub fn read(frame: &Frame) -> Result<SignRequest<'_>, ProtocolError> {
        let mut f = Fields::of(frame);
        let key_id = f.bytes()?;
        let scheme = f.text()?;
        let hash = hash_from(f.text()?)?;
        let alg = match scheme {
            "rsa-pkcs1" => SignAlg::RsaPkcs1v15(hash),
            "rsa-pss" => SignAlg::RsaPss(hash),
            "ecdsa" => SignAlg::Ecdsa(hash),
            _ => return Err(ProtocolError::Malformed("unknown signature scheme")),
        };
        let signed_attributes = f.bytes()?;
        let pin = Some(f.bytes()?).filter(|p| !p.is_empty());
        let force_final_try = f.flag()?;
        if !f.is_done() {
            return Err(ProtocolError::Malformed("extra fields"));
        }
        Ok(SignRequest {
            key_id,
            alg,
            signed_attributes,
            pin,
            force_final_try,
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn round_trip(frame: &Frame) -> Frame {
        let mut buf = Vec::new();
        frame.write_to(&mut buf).unwrap();
        Frame::read_from(&mut buf.as_slice()).unwrap()
    }

    #[test]
    fn fields_survive_the_wire() {
        let f = round_trip(&Frame::new(kind::STATUS).push(b"").text("x").push(&[0; 300]));
        assert_eq!(f.kind, kind::STATUS);
        assert_eq!(f.fields.len(), 3);
        assert_eq!(f.fields[2].len(), 300);
    }

    #[test]
    fn hostile_frames_are_refused_not_trusted() {
        // Claimed length beyond the limit: refused before any allocation of that size.
        let mut huge = (u32::MAX).to_be_bytes().to_vec();
        huge.extend_from_slice(&[1, 1]);
        assert!(matches!(
            Frame::read_from(&mut huge.as_slice()),
            Err(ProtocolError::Malformed(_))
        ));
        // A field longer than the frame.
        assert!(matches!(
            Frame::decode(&[1, 1, 0, 0, 0, 9, 1]),
            Err(ProtocolError::Malformed(_))
        ));
        // Another version.
        assert!(matches!(
            Frame::decode(&[2, 1]),
            Err(ProtocolError::Version(2))
        ));
        // A truncated stream.
        assert!(matches!(
            Frame::read_from(&mut [0u8, 0, 0, 9, 1].as_slice()),
            Err(ProtocolError::Io(_))
        ));
        assert!(matches!(
            Frame::read_from(&mut [].as_slice()),
            Err(ProtocolError::Closed)
        ));
    }

    #[test]
    fn decrypt_requests_round_trip() {
        let r = Recipient {
            id: None,
            wrap: KeyWrap::Rsa(RsaPadding::Oaep {
                hash: HashAlg::Sha256,
                mgf_hash: HashAlg::Sha1,
                label: b"l".to_vec(),
            }),
            encrypted_key: vec![7; 256],
        };
        let f = round_trip(&decrypt_key_request(b"\x02", &r).unwrap());
        let (id, back) = read_decrypt_key(&f).unwrap();
        assert_eq!(id, b"\x02");
        assert_eq!(back.wrap, r.wrap);
        assert_eq!(back.encrypted_key, r.encrypted_key);
        // Missing the encrypted key: refused.
        let mut short = f;
        short.fields.pop();
        assert!(read_decrypt_key(&short).is_err());
    }

    #[test]
    fn sign_requests_round_trip() {
        let req = SignRequest {
            key_id: b"\x01",
            alg: SignAlg::RsaPss(HashAlg::Sha384),
            signed_attributes: b"\x31\x00",
            pin: None,
            force_final_try: false,
        };
        let f = round_trip(&req.frame());
        let back = SignRequest::read(&f).unwrap();
        assert_eq!(back.alg, req.alg);
        assert_eq!(back.signed_attributes, req.signed_attributes);
        assert!(back.pin.is_none());
    }

    #[test]
    fn refusals_become_the_same_errors() {
        let flags = PinFlags {
            count_low: true,
            final_try: false,
            locked: false,
        };
        let f = frame_for_error(&Error::PinIncorrect(flags));
        let e = error_for_refusal(read_refusal(&f).unwrap());
        assert!(matches!(e, Error::PinIncorrect(got) if got == flags));
        let f = frame_for_error(&Error::DecryptFailed);
        assert!(matches!(
            error_for_refusal(read_refusal(&f).unwrap()),
            Error::DecryptFailed
        ));
    }
}
