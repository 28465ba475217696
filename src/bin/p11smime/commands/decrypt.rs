//! `p11smime decrypt`: one message from a file or stdin to a file (atomic, 0600) or stdout.

use super::{keys, pin_source, print_json};
use crate::cli::DecryptArgs;
use crate::io;
use crate::ui::Terminal;
use p11smime::mime::compose;
use p11smime::mime::detect::InputForm;
use p11smime::mime::stream::{self, Opened};
use p11smime::pin::PinSource;
use p11smime::smime::{self, DecryptRequest, Decryptor, LayerReport, UnwrapRequest};
use p11smime::token::KeySelector;
use p11smime::trust::TrustStore;
use p11smime::{Error, Result};
use std::io::{Read, Write};

pub fn run(args: DecryptArgs) -> Result<()> {
    if args.out_dir.is_some() || args.input.len() > 1 || args.input.iter().any(|p| p.is_dir()) {
        return super::batch::run(args);
    }
    let input_path = args.input.first().cloned();
    let pin = pin_source(&args.pin)?;
    let key: Option<KeySelector> = args.key.as_deref().map(str::parse).transpose()?;
    let from_stdin = io::is_stdin(input_path.as_deref());
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
    io::check_distinct(input_path.as_deref(), args.output.as_deref())?;
    let reader = io::open_input(input_path.as_deref().filter(|_| !from_stdin))?;
    // A binary CMS message (DER or BER), PEM, or a mail whose body is the base64 of one, is
    // decrypted as it is read, in constant memory; other forms and the modes that need the
    // whole message are read whole.
    let input = if args.unwrap || args.message {
        let mut reader = reader;
        let mut input = Vec::new();
        reader
            .read_to_end(&mut input)
            .map_err(|e| Error::io("cannot read the message", e))?;
        input
    } else {
        match stream::open(reader)? {
            Opened::Stream { form, mut reader } => {
                return decrypt_stream(&args, pin.as_ref(), key.as_ref(), &mut reader, form);
            }
            Opened::Whole(input) => input,
        }
    };

    let (keys, selector) = keys(&args.token, &args.pin, &args.agent)?;
    let callbacks = Terminal {
        verbose: args.token.verbose,
    };
    let request = DecryptRequest {
        token: selector.as_ref(),
        key: key.as_ref(),
        login: super::login_options(pin.as_ref(), &args.pin, &callbacks),
    };
    if args.unwrap {
        let trust = TrustStore::load(&args.ca, !args.no_system_ca)?;
        let unwrap_request = UnwrapRequest {
            decrypt: request,
            trust: &trust,
            verify: !args.no_verify,
        };
        let outcome = smime::unwrap(keys.access(), &input, &unwrap_request)?;
        io::with_output(args.output.as_ref(), |out| {
            write_content(out, &input, &outcome.content, args.message)
        })?;
        for layer in &outcome.layers {
            eprintln!("{}", describe_layer(layer));
        }
        if args.json {
            print_json(&outcome)?;
        }
        return Ok(());
    }
    // Held until the padding or tag at the end is checked, as on the streaming path.
    let outcome = io::with_held_output(args.output.as_ref(), |out| {
        if !args.message {
            return smime::decrypt(keys.access(), &input, &request, out);
        }
        let mut entity = zeroize::Zeroizing::new(Vec::new());
        let outcome = smime::decrypt(keys.access(), &input, &request, &mut *entity)?;
        write_content(out, &input, &entity, true)?;
        Ok(outcome)
    })?;
    report(&args, &outcome)
}

/// `decrypt` of a binary CMS message, streamed from `reader` to the output.
fn decrypt_stream(
    args: &DecryptArgs,
    pin: Option<&PinSource>,
    key: Option<&KeySelector>,
    reader: &mut dyn std::io::Read,
    form: InputForm,
) -> Result<()> {
    let (keys, selector) = keys(&args.token, &args.pin, &args.agent)?;
    let callbacks = Terminal {
        verbose: args.token.verbose,
    };
    let request = DecryptRequest {
        token: selector.as_ref(),
        key,
        login: super::login_options(pin, &args.pin, &callbacks),
    };
    let mut decryptor = Decryptor::new(keys.access(), &request);
    let outcome = io::with_sink(args.output.as_ref(), |sink| {
        decryptor.decrypt_stream(reader, form, sink)
    })?;
    report(args, &outcome)
}

/// What `--verbose` and `--json` say after a decryption.
fn report(args: &DecryptArgs, outcome: &smime::DecryptOutcome) -> Result<()> {
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
        print_json(outcome)?;
    }
    Ok(())
}

/// The content, or with `--message` the input mail's headers over it.
fn write_content(out: &mut dyn Write, input: &[u8], content: &[u8], message: bool) -> Result<()> {
    let bytes = if message {
        let (outer, _) = compose::split_message(input);
        compose::readable_message(&outer, content)
    } else {
        content.to_vec()
    };
    out.write_all(&bytes)
        .map_err(|e| Error::io("cannot write the decrypted output", e))
}

/// One line per layer for stderr.
fn describe_layer(layer: &LayerReport) -> String {
    match layer {
        LayerReport::Encrypted(o) => format!(
            "layer: encrypted with {} to '{}' (id {}), decrypted",
            o.report.cipher, o.report.key_label, o.report.key_id
        ),
        LayerReport::Signed(v) => {
            let signers: Vec<String> = v
                .signers
                .iter()
                .map(|s| {
                    let who = s
                        .emails
                        .first()
                        .cloned()
                        .unwrap_or_else(|| s.subject.clone());
                    match (s.signature_valid && s.trusted, &s.problem) {
                        (true, _) => format!("{who} (good, trusted)"),
                        (false, Some(p)) => format!("{who} (NOT VERIFIED: {p})"),
                        (false, None) => format!("{who} (NOT VERIFIED)"),
                    }
                })
                .collect();
            format!("layer: signed by {}", signers.join(", "))
        }
    }
}
