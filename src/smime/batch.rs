//! Batches: many files, directories, Maildirs and mbox files decrypted into an output
//! directory with one login (one [`Decryptor`] for everything). Each result is written whole or
//! not at all (0600, atomic); nothing is overwritten (a taken name gets a numeric suffix); a
//! message that fails is reported and the batch goes on, but a PIN or token failure (a card
//! pulled out) stops it: what was done stays done and the rest is reported as not processed.
//! A Maildir or mbox becomes a new one of the same name holding readable messages, with
//! messages that were not encrypted (and those that failed) copied unchanged.

use super::decrypt::Decryptor;
use crate::error::{Error, Result};
use crate::mailbox::{self, Source};
use crate::mime::{compose, detect};
use crate::output::AtomicFile;
use std::io::Write;
use std::path::{Path, PathBuf};

/// What happened to one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ItemStatus {
    Decrypted,
    /// Not encrypted: copied unchanged.
    Copied,
    Failed,
    /// The batch stopped before this one.
    NotProcessed,
}

/// One message of the batch.
#[derive(Debug, Clone, serde::Serialize)]
pub struct BatchItem {
    /// The file, or `mbox-file#N` / the Maildir file.
    pub source: String,
    pub status: ItemStatus,
    /// Where the result went.
    pub output: Option<String>,
    pub error: Option<String>,
}

/// The whole batch.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct BatchReport {
    pub decrypted: usize,
    pub copied: usize,
    pub failed: usize,
    pub not_processed: usize,
    pub items: Vec<BatchItem>,
    /// Why the batch stopped early, when it did.
    pub stopped: Option<String>,
}

/// Told about the batch as it goes (a progress bar, per-item lines). Defaults do nothing.
pub trait BatchProgress {
    fn start(&self, _messages: usize) {}
    fn item(&self, _item: &BatchItem) {}
}

/// How to write results.
pub struct BatchOptions<'a> {
    pub out_dir: &'a Path,
    /// Single files in `--message` form too (mailboxes always get it).
    pub message: bool,
    /// Go through every layer (`--unwrap`): the trust anchors, and whether signatures must hold.
    pub unwrap: Option<(&'a crate::trust::TrustStore, bool)>,
}

/// Errors that concern every message alike: the batch stops on them.
fn is_fatal(e: &Error) -> bool {
    matches!(
        e,
        Error::PinIncorrect(_)
            | Error::PinLocked
            | Error::FinalTryRefused
            | Error::PinUnavailable(_)
            | Error::LoginFailed(_)
            | Error::Token(_)
            | Error::Agent(_)
            | Error::Pkcs11 { .. }
            | Error::ModuleNotFound { .. }
            | Error::ModuleLoad { .. }
            | Error::Io { .. }
    )
}

struct Run<'d, 'm, 'r, 'p> {
    decryptor: &'d mut Decryptor<'m, 'r>,
    unwrap: Option<(&'p crate::trust::TrustStore, bool)>,
    progress: &'p dyn BatchProgress,
    report: BatchReport,
    fatal: Option<Error>,
}

impl Run<'_, '_, '_, '_> {
    fn record(
        &mut self,
        source: String,
        status: ItemStatus,
        output: Option<&Path>,
        error: Option<String>,
    ) {
        let item = BatchItem {
            source,
            status,
            output: output.map(|p| p.display().to_string()),
            error,
        };
        match status {
            ItemStatus::Decrypted => self.report.decrypted += 1,
            ItemStatus::Copied => self.report.copied += 1,
            ItemStatus::Failed => self.report.failed += 1,
            ItemStatus::NotProcessed => self.report.not_processed += 1,
        }
        self.progress.item(&item);
        self.report.items.push(item);
    }

    /// One message through `open`, with the failure bookkeeping: `Err` only when fatal.
    fn process(
        &mut self,
        source: &str,
        bytes: &[u8],
        message_form: bool,
    ) -> Option<std::result::Result<Vec<u8>, String>> {
        if self.fatal.is_some() {
            self.record(source.into(), ItemStatus::NotProcessed, None, None);
            return None;
        }
        let opened = open(self.decryptor, self.unwrap, bytes, message_form);
        self.settle(source, opened)
    }

    /// The bookkeeping for one message's result: `None` when it failed (recorded here).
    fn settle(
        &mut self,
        source: &str,
        opened: Result<Option<Vec<u8>>>,
    ) -> Option<std::result::Result<Vec<u8>, String>> {
        match opened {
            Ok(Some(plain)) => Some(Ok(plain)),
            Ok(None) => Some(Err(String::new())),
            Err(e) if is_fatal(&e) => {
                self.record(source.into(), ItemStatus::Failed, None, Some(e.to_string()));
                self.report.stopped = Some(e.to_string());
                self.fatal = Some(e);
                None
            }
            Err(e) => {
                self.record(source.into(), ItemStatus::Failed, None, Some(e.to_string()));
                None
            }
        }
    }

    fn file(&mut self, path: &Path, out_dir: &Path, message_form: bool) -> Result<()> {
        let read = std::fs::read(path);
        let (bytes, result) = match read {
            Ok(bytes) => {
                let source = path.display().to_string();
                let result = self.process(&source, &bytes, message_form);
                (Ok(bytes), result)
            }
            Err(e) => (Err(e), None),
        };
        self.file_done(path, out_dir, bytes, result)
    }

    /// Files (a directory's, or the command line's) on several token sessions at once where
    /// the token allows it: the first encrypted one alone (it logs in, once), then the rest
    /// spread over worker threads with a decryptor each; results are written and recorded in
    /// order, as the sequential path does.
    fn files(&mut self, paths: &[PathBuf], out_dir: &Path, message_form: bool) -> Result<()> {
        let workers = self.decryptor.parallel_sessions();
        let mut next = 0;
        while next < paths.len() && (workers < 2 || self.report.decrypted == 0) {
            if self.fatal.is_some() {
                break;
            }
            self.file(&paths[next], out_dir, message_form)?;
            next += 1;
        }
        let rest = &paths[next..];
        if rest.is_empty() || self.fatal.is_some() {
            for p in rest {
                self.file(p, out_dir, message_form)?;
            }
            return Ok(());
        }
        let unwrap = self.unwrap;
        let (keys, request) = self.decryptor.parts();
        let (job_tx, job_rx) = std::sync::mpsc::channel::<usize>();
        let job_rx = std::sync::Mutex::new(job_rx);
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        std::thread::scope(|scope| -> Result<()> {
            for _ in 0..workers {
                let (job_rx, done_tx) = (&job_rx, done_tx.clone());
                scope.spawn(move || {
                    // Sessions of its own; the login is the process's, made already.
                    let mut sibling = Decryptor::new(keys, request);
                    loop {
                        let job = job_rx.lock().map(|rx| rx.recv());
                        let Ok(Ok(i)) = job else { break };
                        let done = match std::fs::read(&rest[i]) {
                            Ok(bytes) => {
                                let opened = open(&mut sibling, unwrap, &bytes, message_form);
                                (i, Ok(bytes), opened)
                            }
                            Err(e) => (i, Err(e), Ok(None)),
                        };
                        if done_tx.send(done).is_err() {
                            break;
                        }
                    }
                });
            }
            drop(done_tx);
            // A few jobs ahead of the results, so that a stop (a card pulled out) wastes little.
            let mut sent = 0;
            while sent < rest.len().min(workers * 2) {
                let _ = job_tx.send(sent);
                sent += 1;
            }
            let mut waiting = std::collections::BTreeMap::new();
            // Only what was sent comes back: after a stop no more is sent.
            let mut i = 0;
            while i < sent {
                while !waiting.contains_key(&i) {
                    let Ok((j, bytes, opened)) = done_rx.recv() else {
                        break;
                    };
                    waiting.insert(j, (bytes, opened));
                }
                let Some((bytes, opened)) = waiting.remove(&i) else {
                    break;
                };
                if sent < rest.len() && self.fatal.is_none() {
                    let _ = job_tx.send(sent);
                    sent += 1;
                }
                let path = &rest[i];
                let result = match &bytes {
                    Ok(_) if self.fatal.is_some() => {
                        self.record(
                            path.display().to_string(),
                            ItemStatus::NotProcessed,
                            None,
                            None,
                        );
                        None
                    }
                    Ok(_) => self.settle(&path.display().to_string(), opened),
                    Err(_) => None,
                };
                self.file_done(path, out_dir, bytes, result)?;
                i += 1;
            }
            drop(job_tx);
            // Items never sent (the batch stopped) are reported as not processed.
            for path in &rest[i..] {
                self.record(
                    path.display().to_string(),
                    ItemStatus::NotProcessed,
                    None,
                    None,
                );
            }
            Ok(())
        })
    }

    /// Writes and records one file's result (or its read error).
    fn file_done(
        &mut self,
        path: &Path,
        out_dir: &Path,
        bytes: std::io::Result<Vec<u8>>,
        result: Option<std::result::Result<Vec<u8>, String>>,
    ) -> Result<()> {
        let source = path.display().to_string();
        let bytes = match bytes {
            Ok(b) => b,
            Err(e) => {
                // One unreadable file is that item's failure, not the batch's.
                self.record(
                    source,
                    ItemStatus::Failed,
                    None,
                    Some(format!("cannot read it: {e}")),
                );
                return Ok(());
            }
        };
        let Some(result) = result else {
            return Ok(());
        };
        let name = path.file_name().unwrap_or(path.as_os_str());
        let target = mailbox::unique_path(out_dir, name);
        let (content, status) = match result {
            Ok(plain) => (plain, ItemStatus::Decrypted),
            Err(_) => (bytes, ItemStatus::Copied),
        };
        write_whole(&target, None, &content)?;
        self.record(source, status, Some(&target), None);
        Ok(())
    }

    fn maildir(&mut self, dir: &Path, out_dir: &Path) -> Result<()> {
        let name = dir.file_name().unwrap_or(dir.as_os_str());
        let target = mailbox::unique_path(out_dir, name);
        for sub in ["cur", "new", "tmp"] {
            create_private_dir(&target.join(sub))?;
        }
        for sub in ["cur", "new"] {
            for file in mailbox::files_in(&dir.join(sub))? {
                let source = file.display().to_string();
                let bytes = std::fs::read(&file)
                    .map_err(|e| Error::io(format!("cannot read {source}"), e))?;
                let result = self.process(&source, &bytes, true);
                let (content, status) = match result {
                    Some(Ok(plain)) => (mailbox::to_lf(&plain), ItemStatus::Decrypted),
                    Some(Err(_)) => (bytes, ItemStatus::Copied),
                    // Failed or not processed: the original stays in the new Maildir too.
                    None => (bytes, ItemStatus::Failed),
                };
                let out = target
                    .join(sub)
                    .join(file.file_name().unwrap_or(file.as_os_str()));
                write_whole(&out, Some(&target.join("tmp")), &content)?;
                if status != ItemStatus::Failed {
                    self.record(source, status, Some(&out), None);
                }
            }
        }
        Ok(())
    }

    fn mbox(&mut self, path: &Path, out_dir: &Path) -> Result<()> {
        let data = std::fs::read(path)
            .map_err(|e| Error::io(format!("cannot read {}", path.display()), e))?;
        let name = path.file_name().unwrap_or(path.as_os_str());
        let target = mailbox::unique_path(out_dir, name);
        let mut out = Vec::with_capacity(data.len());
        for (i, msg) in mailbox::split_mbox(&data).into_iter().enumerate() {
            let source = format!("{}#{}", path.display(), i + 1);
            let (content, status) = match self.process(&source, &msg.message, true) {
                Some(Ok(plain)) => (plain, ItemStatus::Decrypted),
                Some(Err(_)) => (msg.message, ItemStatus::Copied),
                None => (msg.message, ItemStatus::Failed),
            };
            out.extend_from_slice(&mailbox::mbox_entry(&msg.from_line, &content));
            if status != ItemStatus::Failed {
                self.record(source, status, Some(&target), None);
            }
        }
        write_whole(&target, None, &out)
    }
}

/// Decrypts one message: `Ok(None)` when it is not encrypted.
fn open(
    decryptor: &mut Decryptor<'_, '_>,
    unwrap: Option<(&crate::trust::TrustStore, bool)>,
    bytes: &[u8],
    message_form: bool,
) -> Result<Option<Vec<u8>>> {
    if !detect::has_encrypted_part(bytes) {
        return Ok(None);
    }
    let plain = match unwrap {
        Some((trust, verify)) => zeroize::Zeroizing::new(
            super::unwrap::unwrap_with(decryptor, bytes, trust, verify)?.content,
        ),
        None => {
            let mut plain = zeroize::Zeroizing::new(Vec::new());
            decryptor.decrypt(bytes, &mut *plain)?;
            plain
        }
    };
    Ok(Some(if message_form {
        let (outer, _) = compose::split_message(bytes);
        compose::readable_message(&outer, &plain)
    } else {
        plain.to_vec()
    }))
}

fn create_private_dir(dir: &Path) -> Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| Error::io(format!("cannot create {}", dir.display()), e))
}

fn write_whole(target: &Path, tmp_dir: Option<&Path>, content: &[u8]) -> Result<()> {
    let mut file = match tmp_dir {
        Some(dir) => AtomicFile::create_in(dir, target)?,
        None => AtomicFile::create(target)?,
    };
    file.write_all(content)
        .map_err(|e| Error::io(format!("cannot write {}", target.display()), e))?;
    file.commit()
}

/// Counts the messages of every input, for the progress bar.
fn count(sources: &[Source]) -> usize {
    sources
        .iter()
        .map(|s| match s {
            Source::File(_) => 1,
            Source::Dir(d) => mailbox::files_in(d).map_or(0, |f| f.len()),
            Source::Maildir(d) => ["cur", "new"]
                .iter()
                .map(|sub| mailbox::files_in(&d.join(sub)).map_or(0, |f| f.len()))
                .sum(),
            Source::Mbox(p) => std::fs::read(p).map_or(0, |d| mailbox::split_mbox(&d).len()),
        })
        .sum()
}

/// Decrypts every input into `options.out_dir` with one login. `Err` only for what stops the
/// batch before it starts (an unreadable input, no output directory); the report says the rest,
/// and [`BatchReport::stopped`] why it ended early.
pub fn decrypt_batch(
    decryptor: &mut Decryptor<'_, '_>,
    inputs: &[PathBuf],
    options: &BatchOptions<'_>,
    progress: &dyn BatchProgress,
) -> Result<(BatchReport, Option<Error>)> {
    create_private_dir(options.out_dir)?;
    let sources: Vec<Source> = inputs
        .iter()
        .map(|p| mailbox::classify(p))
        .collect::<Result<_>>()?;
    progress.start(count(&sources));
    let mut run = Run {
        decryptor,
        unwrap: options.unwrap,
        progress,
        report: BatchReport::default(),
        fatal: None,
    };
    // Consecutive files on the command line go together, like a directory's.
    let mut loose: Vec<PathBuf> = Vec::new();
    for source in &sources {
        if let Source::File(p) = source {
            loose.push(p.clone());
            continue;
        }
        run.files(
            &std::mem::take(&mut loose),
            options.out_dir,
            options.message,
        )?;
        match source {
            Source::Dir(d) => {
                run.files(&mailbox::files_in(d)?, options.out_dir, options.message)?
            }
            Source::Maildir(d) => run.maildir(d, options.out_dir)?,
            Source::Mbox(p) => run.mbox(p, options.out_dir)?,
            Source::File(_) => {}
        }
    }
    run.files(&loose, options.out_dir, options.message)?;
    crate::output::sync_filesystem(options.out_dir)?;
    Ok((run.report, run.fatal))
}
