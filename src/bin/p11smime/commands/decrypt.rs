//! `p11smime decrypt`: one message from a file or stdin to a file (atomic, 0600) or stdout.

use super::{open_module, pin_source, print_json};
use crate::cli::DecryptArgs;
use crate::io;
use crate::ui::Terminal;
use p11smime::pin::PinSource;
use p11smime::smime::{self, DecryptRequest};
use p11smime::token::{KeySelector, LoginOptions};
use p11smime::{Error, Result};

pub fn run(args: DecryptArgs) -> Result<()> {
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
            "--json prints to stdout, so the decrypted content needs -o FILE".into(),
        ));
    }
    io::check_distinct(args.input.as_deref(), args.output.as_deref())?;
    let input = io::read_input(args.input.as_deref().filter(|_| !from_stdin))?;

    let (module, selector) = open_module(&args.token)?;
    let callbacks = Terminal {
        verbose: args.token.verbose,
    };
    let request = DecryptRequest {
        token: selector.as_ref(),
        key: key.as_ref(),
        login: LoginOptions {
            pin: pin.as_ref(),
            force_final_try: args.pin.force_final_try,
            callbacks: &callbacks,
        },
    };
    let outcome = io::with_output(args.output.as_ref(), |out| {
        smime::decrypt(&module, &input, &request, out)
    })?;
    if args.token.verbose {
        eprintln!(
            "p11smime: decrypted {} bytes ({}) with key '{}' (id {}) on {}",
            outcome.report.bytes,
            outcome.report.cipher,
            outcome.report.key_label,
            outcome.report.key_id,
            outcome.token
        );
    }
    if args.json {
        print_json(&outcome)?;
    }
    Ok(())
}
