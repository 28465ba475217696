//! `p11smime decrypt`: one message from a file or stdin to a file (atomic, 0600) or stdout.

use super::{open_module, pin_source, print_json};
use crate::cli::DecryptArgs;
use crate::ui::Terminal;
use p11smime::output::AtomicFile;
use p11smime::pin::PinSource;
use p11smime::smime::{self, DecryptRequest};
use p11smime::token::{KeySelector, LoginOptions};
use p11smime::{Error, Result};
use std::io::{Read, Write};
use std::path::Path;

pub fn run(args: DecryptArgs) -> Result<()> {
    let pin = pin_source(&args.pin)?;
    let key: Option<KeySelector> = args.key.as_deref().map(str::parse).transpose()?;
    let from_stdin = args.input.as_deref().is_none_or(|p| p == Path::new("-"));
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
    if let (Some(input), Some(output)) = (&args.input, &args.output)
        && same_file(input, output)
    {
        return Err(Error::Usage(
            "-o names the input file; the input is never overwritten".into(),
        ));
    }
    let input = read_input(args.input.as_deref().filter(|_| !from_stdin))?;

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
    let outcome = match &args.output {
        Some(path) => {
            let mut file = AtomicFile::create(path)?;
            let outcome = smime::decrypt(&module, &input, &request, &mut file)?;
            file.commit()?;
            outcome
        }
        None => {
            let mut sink = PipeSink::new(std::io::stdout().lock());
            let outcome = smime::decrypt(&module, &input, &request, &mut sink)?;
            sink.finish()?;
            outcome
        }
    };
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

fn same_file(a: &Path, b: &Path) -> bool {
    match (std::fs::canonicalize(a), std::fs::canonicalize(b)) {
        (Ok(x), Ok(y)) => x == y,
        _ => false,
    }
}

fn read_input(path: Option<&Path>) -> Result<Vec<u8>> {
    let mut data = Vec::new();
    match path {
        Some(p) => {
            data = std::fs::read(p)
                .map_err(|e| Error::io(format!("cannot read {}", p.display()), e))?;
        }
        None => {
            std::io::stdin()
                .lock()
                .read_to_end(&mut data)
                .map_err(|e| Error::io("cannot read stdin", e))?;
        }
    }
    Ok(data)
}

/// Stdout that stops writing quietly when the reader goes away (`| head`): decryption still runs
/// to the end, so the exit code reports whether the message was intact.
struct PipeSink<W: Write> {
    inner: std::io::BufWriter<W>,
    closed: bool,
}

impl<W: Write> PipeSink<W> {
    fn new(inner: W) -> Self {
        PipeSink {
            inner: std::io::BufWriter::with_capacity(64 * 1024, inner),
            closed: false,
        }
    }

    fn finish(mut self) -> Result<()> {
        match self.flush() {
            Ok(()) => Ok(()),
            Err(e) => Err(Error::io("cannot write to stdout", e)),
        }
    }
}

impl<W: Write> Write for PipeSink<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.closed {
            return Ok(buf.len());
        }
        match self.inner.write_all(buf) {
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {
                self.closed = true;
                Ok(buf.len())
            }
            Err(e) => Err(e),
            Ok(()) => Ok(buf.len()),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if self.closed {
            return Ok(());
        }
        match self.inner.flush() {
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {
                self.closed = true;
                Ok(())
            }
            other => other,
        }
    }
}
