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
use super::spool::{Held, hold};
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
            unchanged(file, &meta)?;
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
            unchanged(file, &meta)?;
            sealer.finish()?.finish().map_err(write_err)?;
            out.write_all(tail).map_err(write_err)?;
        }
    }
    out.flush().map_err(write_err)?;
    Ok(chosen.outcome(request))
}

/// The file as it was when planned: same length, modification and change times. Checked after
/// the second reading and before the last block or the tag is written, so that a file edited
/// in place between the passes (same length, other bytes) ends in an error and an output that
/// is visibly incomplete, not in a valid envelope of a mix of both versions.
fn unchanged(file: &File, before: &std::fs::Metadata) -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    let now = file
        .metadata()
        .map_err(|e| Error::io("cannot read the input", e))?;
    let same = now.len() == before.len()
        && now.mtime() == before.mtime()
        && now.mtime_nsec() == before.mtime_nsec()
        && now.ctime() == before.ctime()
        && now.ctime_nsec() == before.ctime_nsec();
    if same {
        Ok(())
    } else {
        Err(Error::BadInput(
            "the input changed while it was being encrypted: the output is incomplete".into(),
        ))
    }
}

/// Encrypts the message read from `reader` (stdin): held in memory when short, else spooled to
/// an anonymous temporary file and encrypted from there.
pub fn encrypt_reader(
    keys: Option<KeyAccess<'_>>,
    reader: &mut dyn Read,
    request: &EncryptRequest<'_>,
    out: &mut dyn Write,
) -> Result<EncryptOutcome> {
    match hold(reader, STREAM_THRESHOLD)? {
        Held::Memory(input) => encrypt(keys, &input, request, out),
        Held::File(file) => encrypt_file(keys, &file, request, out),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::os::unix::fs::FileExt;

    /// A same-length edit in place between the passes is seen (the change time moves even
    /// when the writer puts the modification time back).
    #[test]
    fn an_edit_in_place_is_seen() {
        let mut file = tempfile::tempfile().unwrap();
        file.write_all(&[b'a'; 4096]).unwrap();
        let before = file.metadata().unwrap();
        unchanged(&file, &before).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));
        file.write_all_at(b"b", 100).unwrap();
        file.set_modified(before.modified().unwrap()).unwrap();
        assert_eq!(file.metadata().unwrap().len(), before.len());
        assert!(matches!(unchanged(&file, &before), Err(Error::BadInput(_))));
    }
}
