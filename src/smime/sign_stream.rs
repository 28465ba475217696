//! `sign` of input too large to hold: from the file, in bounded memory, over exactly the
//! entity the in-memory path signs ([`crate::mime::plan`], or only CRLF with `--as-is`).
//!
//! Clear-signed mail (multipart/signed, the default) takes one pass after planning: the head,
//! then the entity, hashed as it is written, then the signature part, the token signing once
//! the digest is known. What is written is what was hashed, by construction; if the token
//! then fails, the command fails (a `-o` file is not created; stdout has had the entity).
//! Opaque signed-data, and a bare detached signature, take two: pass 1 hashes and measures the
//! entity, the token signs, pass 2 writes the SignedData with definite DER lengths around the
//! entity (base64 lines for PEM and mail), hashing it again to refuse a file that changed
//! between the passes. Stdin is spooled first to an anonymous 0600 temporary file. Inputs
//! under [`STREAM_THRESHOLD`], and the rare input the planner refuses (a header field or
//! delimiter line over 1 MiB), take the in-memory path of [`super::sign()`].

use super::encrypt_stream::STREAM_THRESHOLD;
use super::keys::KeyAccess;
use super::sign::{
    OutForm, SignOutcome, SignParams, SignRequest, Signing, empty, micalg, sign, sign_core_at,
    with_token, write_err,
};
use super::spool::{Held, hold};
use crate::cms::digest_pipe::DigestPipe;
use crate::cms::signed::{self, Framed};
use crate::error::{Error, Result};
use crate::keyops::{KeyBackend, KeyCertificate};
use crate::mime::compose;
use crate::mime::encode::Base64Lines;
use crate::mime::plan::{Measure, Plan};
use std::fs::File;
use std::io::{BufWriter, Read, Seek, Write};
use std::time::SystemTime;

/// Signs the message in `file` (read, never changed).
pub fn sign_file(
    keys: KeyAccess<'_>,
    file: &File,
    request: &SignRequest<'_>,
    out: &mut dyn Write,
) -> Result<SignOutcome> {
    let meta = file
        .metadata()
        .map_err(|e| Error::io("cannot read the input", e))?;
    if !meta.is_file() {
        // A pipe (`<(...)`) or a device: read once, as stdin is.
        let mut reader = file;
        return sign_reader(keys, &mut reader, request, out);
    }
    with_token(keys, request, |backend, certs| {
        let params = &request.params;
        let streamed = Streamed {
            threshold: STREAM_THRESHOLD,
            time: SystemTime::now(),
        };
        streamed.sign(file, backend, certs, params, out)
    })
}

/// Signs the message read from `reader` (stdin): held in memory when short, else spooled to an
/// anonymous temporary file and signed from there.
pub fn sign_reader(
    keys: KeyAccess<'_>,
    reader: &mut dyn Read,
    request: &SignRequest<'_>,
    out: &mut dyn Write,
) -> Result<SignOutcome> {
    match hold(reader, STREAM_THRESHOLD)? {
        Held::Memory(input) => sign(keys, &input, request, out),
        Held::File(file) => sign_file(keys, &file, request, out),
    }
}

/// Where the two-pass path starts, and the signing time (both fixed in tests).
struct Streamed {
    threshold: u64,
    time: SystemTime,
}

impl Streamed {
    fn sign(
        &self,
        file: &File,
        backend: &mut dyn KeyBackend,
        certs: &[KeyCertificate],
        params: &SignParams<'_>,
        out: &mut dyn Write,
    ) -> Result<SignOutcome> {
        let read_err = |e| Error::io("cannot read the input", e);
        let len = file.metadata().map_err(read_err)?.len();
        if len == 0 {
            return Err(empty());
        }
        let in_memory = |backend: &mut dyn KeyBackend, out: &mut dyn Write| {
            let mut input = Vec::new();
            let mut reader = file;
            reader.rewind().map_err(read_err)?;
            reader.read_to_end(&mut input).map_err(read_err)?;
            sign_core_at(&input, backend, certs, params, self.time, out)
        };
        if len < self.threshold {
            return in_memory(backend, out);
        }
        let signing = Signing::choose(certs, params)?;
        let hash = signing.alg.hash();
        let clear = params.outform == OutForm::Message && !params.opaque;
        let mut digest = Digest::new(DigestPipe::new(hash));
        let measure = if clear {
            Measure::Skip
        } else {
            Measure::Through(&mut digest)
        };
        let plan = match params.as_is {
            true => Some(Plan::as_is_with(file, measure)?),
            false => Plan::message_with(file, measure)?,
        };
        let Some(plan) = plan else {
            return in_memory(backend, out);
        };
        let mut out = BufWriter::with_capacity(64 * 1024, out);
        if clear {
            let b = compose::boundary();
            let head = compose::multipart_signed_head(&plan.outer, micalg(hash), &b);
            out.write_all(&head).map_err(write_err)?;
            digest.out = Some(&mut out);
            plan.write_to(file, &mut digest)?;
            let md = digest.hasher.finish()?;
            let request = signing.request(&[], params, self.time);
            let framed = signed::sign_hashed(backend, &request, &md, 0)?;
            let tail = compose::multipart_signed_tail(&b, &framed.head);
            out.write_all(&tail).map_err(write_err)?;
            out.flush().map_err(write_err)?;
            return Ok(signing.outcome());
        }
        let md = digest.hasher.finish()?;
        let request = signing.request(&[], params, self.time);
        let framed = signed::sign_hashed(backend, &request, &md, plan.len)?;
        let entity = Entity {
            plan: &plan,
            file,
            md: &md,
            signing: &signing,
        };
        match (params.outform, params.opaque) {
            // A bare detached signature: the entity is not written.
            (OutForm::Pem, false) => out
                .write_all(&compose::pem(&framed.head))
                .map_err(write_err)?,
            (_, false) => out.write_all(&framed.head).map_err(write_err)?,
            (OutForm::Der, true) => entity.framed(&framed, &mut out)?,
            (OutForm::Pem, true) | (OutForm::Message, true) => {
                let (head, eol, tail): (Vec<u8>, &'static [u8], &[u8]) =
                    if params.outform == OutForm::Pem {
                        (compose::PEM_BEGIN.to_vec(), b"\n", compose::PEM_END)
                    } else {
                        (
                            compose::pkcs7_mime_head(&plan.outer, "signed-data"),
                            b"\r\n",
                            b"",
                        )
                    };
                out.write_all(&head).map_err(write_err)?;
                let mut lines = Base64Lines::new(&mut out, eol);
                entity.framed(&framed, &mut lines)?;
                lines.finish().map_err(write_err)?;
                out.write_all(tail).map_err(write_err)?;
            }
        }
        out.flush().map_err(write_err)?;
        Ok(signing.outcome())
    }
}

/// The planned entity, written again in pass 2.
struct Entity<'a> {
    plan: &'a Plan,
    file: &'a File,
    /// The digest pass 1 found, which the signature covers.
    md: &'a [u8],
    signing: &'a Signing<'a>,
}

impl Entity<'_> {
    /// Writes the entity to `out`, hashing it again: the file may have changed since pass 1,
    /// and what is written must be what was signed.
    fn write(&self, out: &mut dyn Write) -> Result<()> {
        let mut digest = Digest::new(DigestPipe::new(self.signing.alg.hash()));
        digest.out = Some(out);
        self.plan.write_to(self.file, &mut digest)?;
        if digest.len != self.plan.len || digest.hasher.finish()? != self.md {
            return Err(Error::BadInput(
                "the input changed while it was being signed (other bytes on the second reading)"
                    .into(),
            ));
        }
        Ok(())
    }

    /// The SignedData with the entity inside.
    fn framed(&self, framed: &Framed, out: &mut dyn Write) -> Result<()> {
        out.write_all(&framed.head).map_err(write_err)?;
        self.write(out)?;
        out.write_all(&framed.tail).map_err(write_err)
    }
}

/// Hashes what it is given and passes it on, if there is somewhere to pass it.
struct Digest<'w> {
    hasher: DigestPipe,
    len: u64,
    out: Option<&'w mut dyn Write>,
}

impl Digest<'_> {
    fn new(hasher: DigestPipe) -> Self {
        Digest {
            hasher,
            len: 0,
            out: None,
        }
    }
}

impl Write for Digest<'_> {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        if let Some(out) = self.out.as_mut() {
            out.write_all(data)?;
        }
        self.hasher.write_all(data)?;
        self.len += data.len() as u64;
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self.out.as_mut() {
            Some(out) => out.flush(),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::certinfo;
    use crate::keyops::HashAlg;
    use crate::test_support::{Alice, fixture};
    use der::Encode;

    fn key_cert(name: &str, id: u8) -> KeyCertificate {
        let certificate = certinfo::load_certificates(&std::fs::read(fixture(name)).unwrap())
            .unwrap()
            .remove(0);
        KeyCertificate {
            der: certificate.to_der().unwrap(),
            certificate,
            id: vec![id],
            label: name.into(),
            has_private_key: Some(true),
            key_label: None,
        }
    }

    fn file_of(bytes: &[u8]) -> File {
        let mut f = tempfile::tempfile().unwrap();
        f.write_all(bytes).unwrap();
        f.rewind().unwrap();
        f
    }

    /// The multipart boundary is random: the same one in both outputs for comparing.
    fn same_boundary(msg: &[u8]) -> Vec<u8> {
        let text = String::from_utf8_lossy(msg);
        let Some(at) = text.find("----=_p11smime_") else {
            return msg.to_vec();
        };
        let b = &text[at..at + 15 + 24];
        text.replace(b, "----=_p11smime_BOUNDARY").into_bytes()
    }

    /// The two-pass path, forced on small inputs, writes byte for byte what the in-memory path
    /// writes, in every form: the same digest, definite lengths, base64 lines and headers.
    #[test]
    fn both_paths_write_the_same_bytes() {
        let mut alice = Alice::new();
        let certs = [key_cert("alice-sign.pem", 1), key_cert("alice-enc.pem", 2)];
        let binary: Vec<u8> = (0..200_000u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        let mut mail = b"From: a@example.test\nSubject: x\nContent-Type: multipart/mixed; boundary=\"b\"\n\n--b\nContent-Type: text/plain; charset=utf-8\n\nGr\xc3\xbc\xc3\x9fe\nFrom here\n--b\nContent-Type: application/octet-stream\nContent-Transfer-Encoding: binary\n\n".to_vec();
        mail.extend_from_slice(&binary);
        mail.extend_from_slice(b"\n--b--\n");
        let inputs: [&[u8]; 4] = [b"x", b"hello\nworld\n", &binary, &mail];
        let time = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_800_000_000);
        let streamed = Streamed { threshold: 0, time };
        for input in inputs {
            let file = file_of(input);
            for outform in [OutForm::Message, OutForm::Der, OutForm::Pem] {
                for (opaque, as_is, digest) in [
                    (false, false, None),
                    (true, false, None),
                    (false, true, Some(HashAlg::Sha512)),
                    (true, true, None),
                ] {
                    let params = SignParams {
                        key: None,
                        opaque,
                        digest,
                        pss: false,
                        chain: &[],
                        outform,
                        as_is,
                    };
                    let what = format!("{} bytes {outform:?} {opaque} {as_is}", input.len());
                    let mut want = Vec::new();
                    sign_core_at(input, &mut alice, &certs, &params, time, &mut want).unwrap();
                    let mut got = Vec::new();
                    let outcome = streamed
                        .sign(&file, &mut alice, &certs, &params, &mut got)
                        .unwrap();
                    assert!(same_boundary(&got) == same_boundary(&want), "{what}");
                    assert_eq!(outcome.key_id, "01");
                }
            }
        }
    }

    #[test]
    fn an_empty_file_is_refused() {
        let mut alice = Alice::new();
        let certs = [key_cert("alice-sign.pem", 1)];
        let params = SignParams {
            key: None,
            opaque: false,
            digest: None,
            pss: false,
            chain: &[],
            outform: OutForm::Message,
            as_is: false,
        };
        let streamed = Streamed {
            threshold: 0,
            time: SystemTime::now(),
        };
        let err = streamed
            .sign(&file_of(b""), &mut alice, &certs, &params, &mut Vec::new())
            .unwrap_err();
        assert!(matches!(err, Error::BadInput(_)), "{err}");
    }
}
