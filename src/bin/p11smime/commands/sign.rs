//! `p11smime sign`: sign a message with the card's signature key.

use super::{keys, pin_source, print_json};
use crate::cli::SignArgs;
use crate::io;
use crate::ui::Terminal;
use p11smime::certinfo::load_certificates;
use p11smime::keyops::HashAlg;
use p11smime::pin::PinSource;
use p11smime::smime::{self, OutForm, SignParams, SignRequest};
use p11smime::token::KeySelector;
use p11smime::{Error, Result};

pub fn run(args: SignArgs) -> Result<()> {
    let pin = pin_source(&args.pin)?;
    let key: Option<KeySelector> = args.key.as_deref().map(str::parse).transpose()?;
    let from_stdin = io::is_stdin(args.input.as_deref());
    if from_stdin && pin == Some(PinSource::Fd(0)) {
        return Err(Error::Usage(
            "--pin fd:0 reads the PIN from stdin, so the message must come from a file".into(),
        ));
    }
    if args.json && args.output.is_none() {
        return Err(Error::Usage(
            "--json prints to stdout, so the signed output needs -o FILE".into(),
        ));
    }
    io::check_distinct(args.input.as_deref(), args.output.as_deref())?;
    let mut chain = Vec::new();
    for path in &args.chain {
        let bytes = std::fs::read(path)
            .map_err(|e| Error::io(format!("cannot read {}", path.display()), e))?;
        chain.extend(load_certificates(&bytes)?);
    }
    let digest = match args.digest.as_deref() {
        Some("sha384") => Some(HashAlg::Sha384),
        Some("sha512") => Some(HashAlg::Sha512),
        Some(_) => Some(HashAlg::Sha256),
        None => None,
    };
    let outform = match args.outform.as_str() {
        "der" => OutForm::Der,
        "pem" => OutForm::Pem,
        _ => OutForm::Message,
    };
    // A file is read where it is (twice when large); stdin as it comes (spooled when large).
    let input = match args.input.as_deref().filter(|_| !from_stdin) {
        Some(path) => Some(
            std::fs::File::open(path)
                .map_err(|e| Error::io(format!("cannot read {}", path.display()), e))?,
        ),
        None => None,
    };

    let (keys, selector) = keys(&args.token, &args.pin, &args.agent)?;
    let callbacks = Terminal {
        verbose: args.token.verbose,
    };
    let request = SignRequest {
        token: selector.as_ref(),
        login: super::login_options(pin.as_ref(), &args.pin, &callbacks),
        params: SignParams {
            key: key.as_ref(),
            opaque: args.opaque,
            digest,
            pss: args.pss,
            chain: &chain,
            outform,
            as_is: args.as_is,
        },
    };
    // Held until signed: a large clear-signed mail is written before the token signs it.
    let outcome = io::with_held_output(args.output.as_ref(), |out| match &input {
        Some(file) => smime::sign_file(keys.access(), file, &request, out),
        None => smime::sign_reader(keys.access(), &mut std::io::stdin().lock(), &request, out),
    })?;
    if args.token.verbose {
        eprintln!(
            "p11smime: signed with '{}' (id {}), {}",
            outcome.key_label, outcome.key_id, outcome.algorithm
        );
    }
    if args.json {
        print_json(&outcome)?;
    }
    Ok(())
}
