//! `p11smime decrypt --out-dir DIR INPUT...`: a batch with one login, a progress bar on a
//! terminal, a line per failure as it happens, a summary at the end (and every item with
//! `--json`), and exit 8 when any message failed.

use super::{keys, pin_source, print_json};
use crate::cli::DecryptArgs;
use crate::ui::Terminal;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use p11smime::smime::{
    self, BatchItem, BatchOptions, BatchProgress, DecryptRequest, Decryptor, ItemStatus,
};
use p11smime::token::KeySelector;
use p11smime::trust::TrustStore;
use p11smime::{Error, Result};

/// A progress bar on stderr when it is a terminal (indicatif hides it otherwise), and the
/// failures printed above it as they come.
struct Progress {
    bar: ProgressBar,
}

impl BatchProgress for Progress {
    fn start(&self, messages: usize) {
        self.bar.set_length(messages as u64);
    }

    fn item(&self, item: &BatchItem) {
        self.bar.inc(1);
        if item.status == ItemStatus::Failed {
            self.bar.suspend(|| {
                eprintln!(
                    "p11smime: {}: {}",
                    item.source,
                    item.error.as_deref().unwrap_or("failed")
                )
            });
        }
    }
}

pub fn run(args: DecryptArgs) -> Result<()> {
    let out_dir = args
        .out_dir
        .clone()
        .ok_or_else(|| Error::Usage("several inputs or a directory need --out-dir DIR".into()))?;
    if args.input.is_empty() {
        return Err(Error::Usage(
            "--out-dir needs the inputs to decrypt: files, directories, Maildirs or mbox files"
                .into(),
        ));
    }
    if args.input.iter().any(|p| p == std::path::Path::new("-")) {
        return Err(Error::Usage("a batch reads files, not stdin".into()));
    }
    let pin = pin_source(&args.pin)?;
    let key: Option<KeySelector> = args.key.as_deref().map(str::parse).transpose()?;
    // Every message is written to a file: a signal removes the one being written.
    crate::io::watch_signals();
    let (keys, selector) = keys(&args.token, &args.pin, &args.agent)?;
    let callbacks = Terminal {
        verbose: args.token.verbose,
    };
    let request = DecryptRequest {
        token: selector.as_ref(),
        key: key.as_ref(),
        login: super::login_options(pin.as_ref(), &args.pin, &callbacks),
    };
    let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
    if let Ok(style) = ProgressStyle::with_template("{bar:40} {pos}/{len} messages") {
        bar.set_style(style);
    }
    let progress = Progress { bar };
    // --unwrap: every layer of every message, each signature verified against these anchors.
    let trust = if args.unwrap {
        Some(TrustStore::load(&args.ca, !args.no_system_ca)?)
    } else {
        None
    };
    let mut decryptor = Decryptor::new(keys.access(), &request);
    let (report, fatal) = smime::decrypt_batch(
        &mut decryptor,
        &args.input,
        &BatchOptions {
            out_dir: &out_dir,
            message: args.message,
            unwrap: trust.as_ref().map(|t| (t, !args.no_verify)),
        },
        &progress,
    )?;
    progress.bar.finish_and_clear();
    let mut summary = format!(
        "{} decrypted, {} copied (not encrypted), {} failed",
        report.decrypted, report.copied, report.failed
    );
    if report.not_processed > 0 {
        summary.push_str(&format!(", {} not processed", report.not_processed));
    }
    eprintln!("p11smime: {summary} (in {})", out_dir.display());
    if args.json {
        print_json(&report)?;
    }
    if let Some(e) = fatal {
        return Err(e);
    }
    if report.failed > 0 {
        return Err(Error::BatchFailed(format!(
            "{} of {} messages could not be decrypted (see above)",
            report.failed,
            report.items.len()
        )));
    }
    Ok(())
}
