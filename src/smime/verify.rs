//! `verify`: find the signed data (multipart/signed as received, opaque signed-data, or a
//! detached `.p7s` with its content), check every signature, and decide trust at signing time.
//! A bad or untrusted signature is a verdict in the outcome, not an error: the caller decides
//! (the CLI exits 7). No key or PIN is needed.
//!
//! Binary CMS input (DER or BER, sniffed by its first byte 0x30, as `decrypt` does) is verified
//! as it is read, in constant memory ([`verify_stream`]): the content of opaque signed-data is
//! hashed as it streams past (by each algorithm `digestAlgorithms` lists; a signer whose digest
//! is not listed there fails, as with openssl) and written to the caller, who holds it back
//! until the verdict; the content of a detached signature (`--content`) is hashed a piece at a
//! time. Mail (multipart/signed, or signed-data in a message), PEM and base64 are read whole:
//! finding the parts of a MIME message needs it in memory. The `--content` of a PEM or base64
//! `.p7s` is still read a piece at a time.

use crate::certinfo;
use crate::cms::digest::{Digests, MultiHasher};
use crate::cms::signed_stream::SignedStream;
use crate::cms::verify::{self as cmsverify, SignedMessage};
use crate::error::{Error, Result};
use crate::keyops::HashAlg;
use crate::mime::detect::{self, SignedInput};
use crate::trust::TrustStore;
use std::io::{BufRead, Read, Write};
use x509_cert::Certificate;

/// The verdict on one signer.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SignerReport {
    pub subject: String,
    pub emails: Vec<String>,
    pub issuer: String,
    pub serial: String,
    pub signing_time: Option<String>,
    /// The digest and the signature are right.
    pub signature_valid: bool,
    /// The signer's certificate chains to a trust anchor, for e-mail, at signing time.
    pub trusted: bool,
    /// Why not, when either of the above is false.
    pub problem: Option<String>,
    /// What revocation checking found ("not checked", "not revoked (CRL)", "unknown: ...").
    pub revocation: Option<String>,
    /// Whether the message's From is one of the certificate's addresses (`None`: no From).
    pub from_matches: Option<bool>,
    /// Weaknesses that do not make the signature invalid but make it worth less (a SHA-1
    /// digest, an RSA key under 2048 bits): read, but said.
    pub warnings: Vec<String>,
    #[serde(skip)]
    pub certificate: Option<Certificate>,
    /// The certificate to encrypt replies to: the one the signer named as preferred, else the
    /// signer's own.
    #[serde(skip)]
    pub encryption_certificate: Option<Certificate>,
}

/// Everything `verify` found.
#[derive(Debug, Clone, serde::Serialize)]
pub struct VerifyOutcome {
    /// "multipart/signed", "signed-data" or "detached".
    pub form: String,
    pub from: Option<String>,
    pub signers: Vec<SignerReport>,
    /// True when every signature is valid and trusted.
    pub all_good: bool,
    /// What was signed (the entity of a multipart/signed, the content of signed-data), from
    /// [`verify`]; empty from [`verify_stream`], which writes it out instead.
    #[serde(skip)]
    pub content: Vec<u8>,
}

impl VerifyOutcome {
    /// `Err(SignatureInvalid)` unless every signer is valid and trusted.
    pub fn ensure_good(&self) -> Result<()> {
        if self.all_good {
            return Ok(());
        }
        let why = self
            .signers
            .iter()
            .filter_map(|s| s.problem.clone())
            .next()
            .unwrap_or_else(|| "the message has no signers".into());
        Err(Error::SignatureInvalid(why))
    }
}

/// Verifies `input` held in memory; `detached_content` is the content of a bare `.p7s`
/// (`--content`). What was signed comes back in [`VerifyOutcome::content`].
pub fn verify(
    input: &[u8],
    detached_content: Option<&[u8]>,
    trust: &TrustStore,
) -> Result<VerifyOutcome> {
    let mut detached = detached_content;
    let mut content = Vec::new();
    let mut outcome = verify_whole(
        input,
        detached.as_mut().map(|c| c as &mut dyn Read),
        trust,
        &mut content,
    )?;
    outcome.content = content;
    Ok(outcome)
}

/// Verifies a message read from `input`, writing what was signed to `out` as it goes: before
/// the verdict, so `out` must hold it back (a spool, a file renamed into place only when
/// [`VerifyOutcome::all_good`]). `detached_content` is the content of a bare `.p7s`, hashed a
/// piece at a time. Binary CMS (DER or BER) is read as it comes, in constant memory; mail, PEM
/// and base64 are read whole (see the module documentation).
pub fn verify_stream(
    input: &mut dyn BufRead,
    detached_content: Option<&mut dyn Read>,
    trust: &TrustStore,
    out: &mut dyn Write,
) -> Result<VerifyOutcome> {
    let read_err = |e| Error::io("cannot read the message", e);
    if input.fill_buf().map_err(read_err)?.first() != Some(&0x30) {
        let mut whole = Vec::new();
        input.read_to_end(&mut whole).map_err(read_err)?;
        return verify_whole(&whole, detached_content, trust, out);
    }
    let stream = SignedStream::open(input)?;
    if stream.is_detached() {
        let message = stream.read_content(&mut |_| Ok(()))?;
        let content = detached_content.ok_or_else(needs_content)?;
        let digests = digest_reader(&message.digest_algorithms(), content, out)?;
        return Ok(judge("detached", None, &message, &digests, trust));
    }
    let mut hasher = MultiHasher::new(&stream.digest_algorithms);
    let mut other = detached_content.map(SameContent::new);
    let message = stream.read_content(&mut |piece| {
        hasher.update(piece);
        if let Some(other) = other.as_mut() {
            other.compare(piece)?;
        }
        out.write_all(piece).map_err(write_err)
    })?;
    if let Some(other) = other {
        other.finish()?;
    }
    Ok(judge(
        "signed-data",
        None,
        &message,
        &hasher.finish(),
        trust,
    ))
}

/// Verifies a message held in memory, writing what was signed to `out`.
fn verify_whole(
    input: &[u8],
    detached_content: Option<&mut dyn Read>,
    trust: &TrustStore,
    out: &mut dyn Write,
) -> Result<VerifyOutcome> {
    let found = detect::find_signed(input)?;
    let from = found.from.as_deref();
    let (outcome, content) = match found.input {
        SignedInput::Detached { signed, signature } => {
            let message = cmsverify::parse(&signature)?;
            let digests = Digests::of(signed, &message.digest_algorithms());
            let outcome = judge("multipart/signed", from, &message, &digests, trust);
            // A mail saved with LF endings (an mbox, a mail client's "save as") had its signed
            // part signed as CRLF: canonicalise and check again, as openssl does without
            // -binary. Only for mail: a bare .p7s with --content is asked about exactly that
            // file.
            if outcome.signers.iter().any(|s| !s.signature_valid) && has_bare_lf(signed) {
                let canonical = crate::mime::canon::to_crlf(signed);
                let digests = Digests::of(&canonical, &message.digest_algorithms());
                let again = judge("multipart/signed", from, &message, &digests, trust);
                if again.signers.iter().all(|s| s.signature_valid) {
                    out.write_all(&canonical).map_err(write_err)?;
                    return Ok(again);
                }
            }
            (outcome, signed)
        }
        SignedInput::Cms(ref cms) => {
            let mut message = cmsverify::parse(cms)?;
            match (message.content.take(), detached_content) {
                (Some(content), other) => {
                    // A signature that carries its own content does not cover another file:
                    // say so rather than answer a question that was not asked.
                    if let Some(other) = other {
                        let mut other = SameContent::new(other);
                        other.compare(&content)?;
                        other.finish()?;
                    }
                    let digests = Digests::of(&content, &message.digest_algorithms());
                    out.write_all(&content).map_err(write_err)?;
                    return Ok(judge("signed-data", from, &message, &digests, trust));
                }
                (None, Some(content)) => {
                    let digests = digest_reader(&message.digest_algorithms(), content, out)?;
                    return Ok(judge("detached", from, &message, &digests, trust));
                }
                (None, None) => return Err(needs_content()),
            }
        }
    };
    out.write_all(content).map_err(write_err)?;
    Ok(outcome)
}

fn write_err(e: std::io::Error) -> Error {
    Error::io("cannot write the signed content", e)
}

fn needs_content() -> Error {
    Error::Usage("this is a detached signature: give the signed content with --content FILE".into())
}

/// The verdict on every signer of `message`, whose content has `digests`.
fn judge(
    form: &str,
    from: Option<&str>,
    message: &SignedMessage,
    digests: &Digests,
    trust: &TrustStore,
) -> VerifyOutcome {
    let now = certinfo::now();
    let signers: Vec<SignerReport> = message
        .signers
        .iter()
        .map(|s| report(s, message, digests, trust, from, now))
        .collect();
    let all_good = !signers.is_empty() && signers.iter().all(|s| s.signature_valid && s.trusted);
    VerifyOutcome {
        form: form.into(),
        from: from.map(str::to_string),
        signers,
        all_good,
        content: Vec::new(),
    }
}

/// Hashes the content of a detached signature a piece at a time, copying it to `out`.
fn digest_reader(algs: &[HashAlg], content: &mut dyn Read, out: &mut dyn Write) -> Result<Digests> {
    let mut hasher = MultiHasher::new(algs);
    let mut buf = vec![0u8; PIECE];
    loop {
        let n = match content.read(&mut buf) {
            Ok(0) => return Ok(hasher.finish()),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(Error::io("cannot read the signed content", e)),
        };
        hasher.update(&buf[..n]);
        out.write_all(&buf[..n]).map_err(write_err)?;
    }
}

/// How much of a detached content is read at a time.
const PIECE: usize = 256 << 10;

/// The `--content` file given with a signature that carries its own content, compared with
/// that content as it streams past.
struct SameContent<'a> {
    other: &'a mut dyn Read,
    buf: Vec<u8>,
}

impl<'a> SameContent<'a> {
    fn new(other: &'a mut dyn Read) -> Self {
        SameContent {
            other,
            buf: Vec::new(),
        }
    }

    fn differs() -> Error {
        Error::SignatureInvalid(
            "the signature carries its own content, which differs from the --content file".into(),
        )
    }

    /// The next bytes of the file must be `piece`.
    fn compare(&mut self, piece: &[u8]) -> Result<()> {
        for chunk in piece.chunks(PIECE) {
            self.buf.resize(chunk.len(), 0);
            match self.other.read_exact(&mut self.buf) {
                Ok(()) if self.buf == chunk => {}
                Ok(()) => return Err(Self::differs()),
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                    return Err(Self::differs());
                }
                Err(e) => return Err(Error::io("cannot read the --content file", e)),
            }
        }
        Ok(())
    }

    /// The file must end where the content ended.
    fn finish(self) -> Result<()> {
        let mut one = [0u8; 1];
        loop {
            return match self.other.read(&mut one) {
                Ok(0) => Ok(()),
                Ok(_) => Err(Self::differs()),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => Err(Error::io("cannot read the --content file", e)),
            };
        }
    }
}

fn report(
    signer: &cmsverify::Signer,
    message: &SignedMessage,
    digests: &Digests,
    trust: &TrustStore,
    from: Option<&str>,
    now: u64,
) -> SignerReport {
    let signing_time = signer.signing_time();
    let Some(cert) = signer.find_certificate(&message.certificates) else {
        return SignerReport {
            subject: String::new(),
            emails: Vec::new(),
            issuer: String::new(),
            serial: String::new(),
            signing_time: signing_time.map(|t| t.to_date_time().to_string()),
            signature_valid: false,
            trusted: false,
            problem: Some("the message does not include the signer's certificate".into()),
            revocation: None,
            from_matches: None,
            warnings: weaknesses(signer, None),
            certificate: None,
            encryption_certificate: None,
        };
    };
    let checked = signer.check(digests, &message.content_type, cert);
    // Trust is judged when the message was signed, never later than now.
    let at = signing_time
        .map(|t| t.to_unix_duration().as_secs())
        .map_or(now, |t| t.min(now));
    let trusted = match &checked {
        Ok(()) => trust.check_signer(cert, &message.certificates, at),
        Err(_) => Err(String::new()),
    };
    let emails = certinfo::emails(cert);
    let from_matches = from.map(|f| emails.iter().any(|e| e.eq_ignore_ascii_case(f)));
    let revocation = trusted.as_ref().ok().map(|t| t.revocation.clone());
    let problem = match (&checked, &trusted) {
        (Err(e), _) => Some(e.clone()),
        (Ok(()), Err(e)) => Some(e.clone()),
        _ => None,
    };
    SignerReport {
        subject: cert.tbs_certificate.subject.to_string(),
        emails,
        issuer: cert.tbs_certificate.issuer.to_string(),
        serial: hex::encode_upper(cert.tbs_certificate.serial_number.as_bytes()),
        signing_time: signing_time.map(|t| t.to_date_time().to_string()),
        signature_valid: checked.is_ok(),
        trusted: trusted.is_ok(),
        problem,
        revocation,
        from_matches,
        warnings: weaknesses(signer, Some(cert)),
        encryption_certificate: Some(
            signer
                .preferred_encryption_cert(&message.certificates)
                .unwrap_or(cert)
                .clone(),
        ),
        certificate: Some(cert.clone()),
    }
}

/// What is weak about a signature that may still be valid.
fn weaknesses(signer: &cmsverify::Signer, cert: Option<&Certificate>) -> Vec<String> {
    let mut out = Vec::new();
    if signer.info.digest_alg.oid == crate::cms::oids::SHA1 {
        out.push(
            "signed with SHA-1, a digest broken for signatures: the signature proves less than it seems"
                .to_string(),
        );
    }
    if let Some(bits) = cert.and_then(certinfo::rsa_bits)
        && bits < crate::cms::encrypt::MIN_RSA_BITS
    {
        out.push(format!(
            "the signer's RSA key has only {bits} bits (under {}): it can be broken",
            crate::cms::encrypt::MIN_RSA_BITS
        ));
    }
    out
}

/// True when some line ends with LF alone.
fn has_bare_lf(data: &[u8]) -> bool {
    data.iter()
        .enumerate()
        .any(|(i, b)| *b == b'\n' && (i == 0 || data[i - 1] != b'\r'))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::keyops::SignAlg;
    use crate::revocation::{Revocation, RevocationMode};
    use crate::test_support::{Alice, fixture};

    /// Opaque signed-data by alice (SHA-256), DER.
    fn signed(content: &[u8]) -> Vec<u8> {
        let mut alice = Alice::new();
        let cert = std::fs::read(fixture("alice-sign.pem")).unwrap();
        let cert = certinfo::load_certificates(&cert).unwrap().remove(0);
        let req = crate::cms::signed::SignRequest {
            content,
            detached: false,
            alg: SignAlg::RsaPkcs1v15(HashAlg::Sha256),
            signer: &cert,
            key_id: &[1],
            encryption_cert: None,
            extra_certs: &[],
            signing_time: std::time::SystemTime::now(),
        };
        crate::cms::signed::sign(&mut alice, &req).unwrap()
    }

    fn trust() -> TrustStore {
        let mut trust = TrustStore::load(&[fixture("ca.pem")], false).unwrap();
        trust.set_revocation(Revocation {
            mode: RevocationMode::Off,
            crls: Vec::new(),
            fetch: false,
        });
        trust
    }

    fn streamed(msg: &[u8], trust: &TrustStore) -> (VerifyOutcome, Vec<u8>) {
        let mut out = Vec::new();
        let outcome = verify_stream(&mut &msg[..], None, trust, &mut out).unwrap();
        (outcome, out)
    }

    #[test]
    fn a_small_message_gets_the_same_verdict_streamed_and_in_memory() {
        let trust = trust();
        let msg = signed(b"hello\r\n");
        let in_memory = verify(&msg, None, &trust).unwrap();
        let (outcome, content) = streamed(&msg, &trust);
        assert!(in_memory.all_good && outcome.all_good);
        assert_eq!(content, in_memory.content);
        assert_eq!(
            serde_json::to_value(&outcome).unwrap(),
            serde_json::to_value(&in_memory).unwrap()
        );
    }

    /// The one intended difference: a streamed content is hashed only by the algorithms
    /// listed before it, so a signer whose digest is not among them fails (openssl fails it
    /// too); held in memory, it is hashed by the signer's own algorithm.
    #[test]
    fn a_streamed_signer_whose_digest_is_not_listed_first_fails_clearly() {
        let trust = trust();
        let mut msg = signed(b"hello\r\n");
        let sha256 = [0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01];
        let at = msg.windows(9).position(|w| w == sha256).unwrap();
        msg[at + 8] = 0x02; // digestAlgorithms: SHA-384 instead
        assert!(verify(&msg, None, &trust).unwrap().all_good);
        let (outcome, _) = streamed(&msg, &trust);
        assert!(!outcome.all_good);
        let problem = outcome.signers[0].problem.clone().unwrap();
        assert!(problem.contains("digestAlgorithms"), "{problem}");
    }
}
