//! Input and output shared by the commands: the input from a file or stdin (never modified),
//! the output to stdout or to a file that appears, mode 0600, only when the command succeeded.

use p11smime::output::AtomicFile;
use p11smime::smime::{Sink, Spool};
use p11smime::{Error, Result};
use std::io::{BufRead, Read, Write};
use std::path::{Path, PathBuf};

/// True when `path` means stdin.
pub fn is_stdin(path: Option<&Path>) -> bool {
    path.is_none_or(|p| p == Path::new("-"))
}

/// Refuses an output path that is the input file.
pub fn check_distinct(input: Option<&Path>, output: Option<&Path>) -> Result<()> {
    if let (Some(i), Some(o)) = (input, output)
        && same_file(i, o)
    {
        return Err(Error::Usage(
            "-o names the input file; the input is never overwritten".into(),
        ));
    }
    Ok(())
}

/// The output file, after starting the watch that removes it on Ctrl-C, `kill` or a closed
/// terminal. Started here, not at start-up, so that a command writing to stdout (a mail
/// client's decrypt) does not pay for a thread it never needs.
pub fn create_file(path: &Path) -> Result<AtomicFile> {
    watch_signals();
    AtomicFile::create(path)
}

/// Removes files being written on SIGINT, SIGTERM and SIGHUP; once per process, not in the
/// session agent, which handles these signals itself. Without the watch the command still
/// runs; only a signal would leave a `.part` file.
pub fn watch_signals() {
    let _ = p11smime::output::remove_on_signals();
}

/// Runs `produce` with the output sink: an atomic 0600 file committed only on success, or
/// stdout (a closed pipe stops the writing quietly, not the work).
pub fn with_output<T>(
    output: Option<&PathBuf>,
    produce: impl FnOnce(&mut dyn Write) -> Result<T>,
) -> Result<T> {
    match output {
        Some(path) => {
            let mut file = create_file(path)?;
            let value = produce(&mut file)?;
            file.commit()?;
            Ok(value)
        }
        None => {
            let mut sink = PipeSink::new(std::io::stdout().lock());
            let value = produce(&mut sink)?;
            sink.finish()?;
            Ok(value)
        }
    }
}

/// As [`with_output`], with what goes to stdout held (a spool: memory, then an anonymous 0600
/// temporary file) until `produce` succeeded: nothing of a failed run (a CBC padding found
/// bad at the end, a card pulled before the signature) reaches a pipe.
pub fn with_held_output<T>(
    output: Option<&PathBuf>,
    produce: impl FnOnce(&mut dyn Write) -> Result<T>,
) -> Result<T> {
    with_sink(output, |sink| match sink {
        Sink::Staged(file) => produce(file),
        Sink::Visible(stdout) => {
            let mut spool = Spool::new();
            let value = produce(&mut spool)?;
            spool.release(stdout)?;
            Ok(value)
        }
    })
}

/// As [`with_output`], telling `produce` whether its output is seen as it is written (stdout)
/// or only once the command succeeded (the file).
pub fn with_sink<T>(
    output: Option<&PathBuf>,
    produce: impl FnOnce(Sink<'_>) -> Result<T>,
) -> Result<T> {
    match output {
        Some(path) => {
            let mut file = create_file(path)?;
            let value = produce(Sink::Staged(&mut file))?;
            file.commit()?;
            Ok(value)
        }
        None => {
            let mut sink = PipeSink::new(std::io::stdout().lock());
            let value = produce(Sink::Visible(&mut sink))?;
            sink.finish()?;
            Ok(value)
        }
    }
}

/// The input as a buffered reader (a file, or stdin for `None`), for commands that stream it;
/// `Send`, so that its decoding can move to another thread (`mime::stream`).
pub fn open_input(path: Option<&Path>) -> Result<Box<dyn BufRead + Send>> {
    Ok(match path {
        Some(p) => Box::new(std::io::BufReader::with_capacity(
            256 << 10,
            std::fs::File::open(p)
                .map_err(|e| Error::io(format!("cannot read {}", p.display()), e))?,
        )),
        None => Box::new(std::io::BufReader::with_capacity(
            256 << 10,
            std::io::stdin(),
        )),
    })
}

fn same_file(a: &Path, b: &Path) -> bool {
    match (std::fs::canonicalize(a), std::fs::canonicalize(b)) {
        (Ok(x), Ok(y)) => x == y,
        _ => false,
    }
}

pub fn read_input(path: Option<&Path>) -> Result<Vec<u8>> {
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
