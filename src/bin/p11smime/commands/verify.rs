//! `p11smime verify`: a short report per signer, `--json`, and exit 7 unless every signature
//! is valid and trusted. The message is read as a stream (see `smime::verify_stream`); `-o`
//! releases the signed content only after the verdict.

use super::print_json;
use crate::cli::VerifyArgs;
use crate::io;
use p11smime::revocation::{self, Revocation, RevocationMode};
use p11smime::smime::{self, SignerReport, Sink, Spool};
use p11smime::trust::TrustStore;
use p11smime::{Error, Result};
use std::io::{Read, Write};

pub fn run(args: VerifyArgs) -> Result<()> {
    let from_stdin = io::is_stdin(args.input.as_deref());
    let output_to_stdout = args.output.as_ref().is_some_and(|p| p.as_os_str() == "-");
    if args.json && output_to_stdout {
        return Err(Error::Usage(
            "--json prints to stdout, so the signed content needs -o FILE, not -o -".into(),
        ));
    }
    io::check_distinct(args.input.as_deref(), args.output.as_deref())?;
    let mut input = io::open_input(args.input.as_deref().filter(|_| !from_stdin))?;
    let mut content = match &args.content {
        Some(p) => Some(
            std::fs::File::open(p)
                .map_err(|e| Error::io(format!("cannot read {}", p.display()), e))?,
        ),
        None => None,
    };
    let trust = trust_store(&args)?;
    // The signed content is written as it is read, before the verdict: into a file that
    // appears only if every signature is good, or for stdout into a spool released only then;
    // without -o, nowhere.
    let mut verify = |out: &mut dyn Write| {
        smime::verify_stream(
            &mut *input,
            content.as_mut().map(|f| f as &mut dyn Read),
            &trust,
            out,
        )
    };
    if args.output.is_none() {
        let outcome = verify(&mut std::io::sink())?;
        return conclude(&args, &outcome);
    }
    io::with_sink(
        args.output.as_ref().filter(|_| !output_to_stdout),
        |sink| match sink {
            Sink::Staged(file) => {
                let outcome = verify(file)?;
                conclude(&args, &outcome)
            }
            Sink::Visible(stdout) => {
                let mut spool = Spool::new();
                let outcome = verify(&mut spool)?;
                conclude(&args, &outcome)?;
                spool.release(stdout).map(|_| ())
            }
        },
    )
}

/// The trust anchors and revocation settings the options name.
fn trust_store(args: &VerifyArgs) -> Result<TrustStore> {
    let mut trust = TrustStore::load(&args.ca, !args.no_system_ca)?;
    let mut crls = Vec::new();
    for path in &args.crl {
        let bytes = std::fs::read(path)
            .map_err(|e| Error::io(format!("cannot read {}", path.display()), e))?;
        crls.push(
            revocation::pem_to_der(&bytes)
                .ok_or_else(|| Error::BadInput(format!("{} is not a CRL", path.display())))?,
        );
    }
    trust.set_revocation(Revocation {
        mode: match args.revocation.as_str() {
            "off" => RevocationMode::Off,
            "hard" => RevocationMode::Hard,
            _ => RevocationMode::Soft,
        },
        crls,
        fetch: !args.offline,
    });
    Ok(trust)
}

/// The report, the signer's certificate and `--remember`; an error (exit 7) unless every
/// signature is good, so that the content is then not released.
fn conclude(args: &VerifyArgs, outcome: &smime::VerifyOutcome) -> Result<()> {
    if args.status_line {
        eprintln!(
            "{}",
            if outcome.all_good {
                "Verification successful"
            } else {
                "Verification failure"
            }
        );
    }
    if let Some(path) = &args.signer_cert
        && let Some(cert) = outcome.signers.iter().find_map(|s| s.certificate.as_ref())
    {
        let pem = der::EncodePem::to_pem(cert, der::pem::LineEnding::LF)
            .map_err(|e| Error::BadInput(format!("cannot encode the signer's certificate: {e}")))?;
        std::fs::write(path, pem)
            .map_err(|e| Error::io(format!("cannot write {}", path.display()), e))?;
    }
    if args.json {
        print_json(outcome)?;
    } else {
        for s in &outcome.signers {
            print_signer(s);
        }
    }
    outcome.ensure_good()?;
    if args.remember {
        for s in &outcome.signers {
            if let Some(cert) = &s.encryption_certificate {
                for email in &s.emails {
                    let path = p11smime::certstore::remember(email, cert)?;
                    eprintln!("remembered {email}: {}", path.display());
                }
            }
        }
    }
    Ok(())
}

fn print_signer(s: &SignerReport) {
    let verdict = match (s.signature_valid, s.trusted) {
        (true, true) => "Good signature, trusted",
        (true, false) => "Good signature, NOT TRUSTED",
        _ => "BAD signature",
    };
    let who = match s.emails.first() {
        Some(mail) => format!("{} <{mail}>", s.subject),
        None => s.subject.clone(),
    };
    eprintln!("{verdict}: {who}");
    if !s.issuer.is_empty() {
        eprintln!("  issuer:  {} (serial {})", s.issuer, s.serial);
    }
    if let Some(t) = &s.signing_time {
        eprintln!("  signed:  {t}");
    }
    if let Some(r) = &s.revocation {
        eprintln!("  revocation: {r}");
    }
    if let Some(problem) = &s.problem {
        eprintln!("  problem: {problem}");
    }
    if s.from_matches == Some(false) {
        eprintln!("  warning: the message's From address is not one of the signer's addresses");
    }
    for w in &s.warnings {
        eprintln!("  warning: {w}");
    }
}
