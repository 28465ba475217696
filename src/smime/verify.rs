//! `verify`: find the signed data (multipart/signed as received, opaque signed-data, or a
//! detached `.p7s` with its content), check every signature, and decide trust at signing time.
//! A bad or untrusted signature is a verdict in the outcome, not an error: the caller decides
//! (the CLI exits 7). No key or PIN is needed.

use crate::certinfo;
use crate::cms::verify::{self as cmsverify, SignedMessage};
use crate::error::{Error, Result};
use crate::mime::detect::{self, SignedInput};
use crate::trust::TrustStore;
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
    /// What was signed (the entity of a multipart/signed, the content of signed-data).
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

/// Verifies `input`; `detached_content` is the content of a bare `.p7s` (`--content`).
pub fn verify(
    input: &[u8],
    detached_content: Option<&[u8]>,
    trust: &TrustStore,
) -> Result<VerifyOutcome> {
    let found = detect::find_signed(input)?;
    let (form, signed, content) = match &found.input {
        SignedInput::Detached { signed, signature } => (
            "multipart/signed",
            cmsverify::parse(signature)?,
            signed.to_vec(),
        ),
        SignedInput::Cms(cms) => {
            let mut signed = cmsverify::parse(cms)?;
            match (signed.content.take(), detached_content) {
                // A signature that carries its content does not cover another file: say so
                // rather than answer a question that was not asked.
                (Some(c), Some(other)) if c != other => {
                    return Err(Error::SignatureInvalid(
                        "the signature carries its own content, which differs from the --content file"
                            .into(),
                    ));
                }
                (Some(c), _) => ("signed-data", signed, c),
                (None, Some(c)) => ("detached", signed, c.to_vec()),
                (None, None) => {
                    return Err(Error::Usage(
                        "this is a detached signature: give the signed content with --content FILE"
                            .into(),
                    ));
                }
            }
        }
    };
    let now = certinfo::now();
    let check = |content: &[u8]| -> Vec<SignerReport> {
        signed
            .signers
            .iter()
            .map(|s| report(s, &signed, content, trust, found.from.as_deref(), now))
            .collect()
    };
    let mut signers = check(&content);
    // A mail saved with LF endings (an mbox, a mail client's "save as") had its signed part
    // signed as CRLF: canonicalise and check again, as openssl does without -binary. Only for
    // mail: a bare .p7s with --content is asked about exactly that file.
    let mut content = content;
    if form == "multipart/signed"
        && signers.iter().any(|s| !s.signature_valid)
        && has_bare_lf(&content)
    {
        let canonical = crate::mime::canon::to_crlf(&content);
        let again = check(&canonical);
        if again.iter().all(|s| s.signature_valid) {
            signers = again;
            content = canonical;
        }
    }
    let all_good = !signers.is_empty() && signers.iter().all(|s| s.signature_valid && s.trusted);
    Ok(VerifyOutcome {
        form: form.into(),
        from: found.from,
        signers,
        all_good,
        content,
    })
}

fn report(
    signer: &cmsverify::Signer,
    message: &SignedMessage,
    content: &[u8],
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
    let checked = signer.check(content, &message.content_type, cert);
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
