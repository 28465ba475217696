//! `encrypt` of input too large to hold: from a file in two passes, in bounded memory.
//!
//! Pass 1 plans the transport-safe entity ([`crate::mime::plan`]) and so learns its exact
//! length; pass 2 writes it from the file again through the content cipher
//! ([`crate::cms::seal`]), whose DER header, with definite lengths, went out first, and for
//! PEM and mail output through base64 lines as the in-memory path writes them. Stdin is spooled
//! first to an anonymous 0600 temporary file. Inputs under [`STREAM_THRESHOLD`], `--sign`
//! (signing needs the entity whole), and the rare input the planner refuses (a header field or
//! delimiter line over 1 MiB) take the in-memory path of [`super::encrypt()`].

use super::encrypt::{EncryptOutcome, EncryptRequest, encrypt, recipients, smime_type};
use super::keys::KeyAccess;
use super::sign::OutForm;
use crate::cms::encrypt as cmsencrypt;
use crate::error::{Error, Result};
use crate::mime::compose;
use crate::mime::encode::Base64Lines;
use crate::mime::plan::Plan;
use std::fs::File;
use std::io::{BufWriter, Read, Seek, Write};

/// Inputs this large and larger are encrypted from the file in two passes.
pub const STREAM_THRESHOLD: u64 = 8 << 20;

/// Encrypts the message in `file` (read, never changed).
pub fn encrypt_file(
    keys: Option<KeyAccess<'_>>,
    file: &File,
    request: &EncryptRequest<'_>,
    out: &mut dyn Write,
) -> Result<EncryptOutcome> {
    let read_err = |e| Error::io("cannot read the input", e);
    let meta = file.metadata().map_err(read_err)?;
    if !meta.is_file() {
        // A pipe (`<(...)`, /dev/stdin) or a device: no length, no second reading; read once,
        // as stdin is.
        let mut reader = file;
        return encrypt_reader(keys, &mut reader, request, out);
    }
    let len = meta.len();
    let plan = match (len >= STREAM_THRESHOLD, &request.sign, request.params.as_is) {
        (false, _, _) | (true, Some(_), _) => None,
        (true, None, true) => Some(Plan::as_is(file)?),
        (true, None, false) => Plan::message(file)?,
    };
    let Some(plan) = plan else {
        let mut input = Vec::new();
        let mut reader = file;
        reader.rewind().map_err(read_err)?;
        reader.read_to_end(&mut input).map_err(read_err)?;
        return encrypt(keys, &input, request, out);
    };
    let chosen = recipients(keys, request, None)?;
    let sealing = cmsencrypt::prepare(
        &chosen.recipients,
        request.params.cipher,
        request.params.key_transport,
    )?;
    let write_err = |e| Error::io("cannot write the encrypted output", e);
    let mut out = BufWriter::with_capacity(64 * 1024, out);
    match request.params.outform {
        OutForm::Der => {
            let mut sealer = sealing.seal(plan.len, &mut out)?;
            plan.write_to(file, &mut sealer)?;
            sealer.finish()?;
        }
        OutForm::Pem | OutForm::Message => {
            let (head, eol, tail): (Vec<u8>, &'static [u8], &[u8]) =
                if request.params.outform == OutForm::Pem {
                    (compose::PEM_BEGIN.to_vec(), b"\n", compose::PEM_END)
                } else {
                    let smime = smime_type(request.params.cipher);
                    (compose::pkcs7_mime_head(&plan.outer, smime), b"\r\n", b"")
                };
            out.write_all(&head).map_err(write_err)?;
            let mut sealer = sealing.seal(plan.len, Base64Lines::new(&mut out, eol))?;
            plan.write_to(file, &mut sealer)?;
            sealer.finish()?.finish().map_err(write_err)?;
            out.write_all(tail).map_err(write_err)?;
        }
    }
    out.flush().map_err(write_err)?;
    Ok(chosen.outcome(request))
}

/// Encrypts the message read from `reader` (stdin): held in memory when short, else spooled to
/// an anonymous temporary file and encrypted from there.
pub fn encrypt_reader(
    keys: Option<KeyAccess<'_>>,
    reader: &mut dyn Read,
    request: &EncryptRequest<'_>,
    out: &mut dyn Write,
) -> Result<EncryptOutcome> {
    let read_err = |e| Error::io("cannot read the input", e);
    let mut head = Vec::new();
    reader
        .take(STREAM_THRESHOLD)
        .read_to_end(&mut head)
        .map_err(read_err)?;
    if (head.len() as u64) < STREAM_THRESHOLD {
        return encrypt(keys, &head, request, out);
    }
    let spool_err = |e| Error::io("cannot write the temporary spool file", e);
    let mut spool = tempfile::tempfile().map_err(spool_err)?;
    spool.write_all(&head).map_err(spool_err)?;
    drop(head);
    std::io::copy(reader, &mut spool).map_err(read_err)?;
    encrypt_file(keys, &spool, request, out)
}
