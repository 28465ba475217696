//! `--wait SECONDS`: a card inserted while p11smime waits for it, through the whole stack of
//! `tests/virtual_cac.rs` (a pcscd of the test's own with vpcd's readers, OpenSC's
//! `opensc-pkcs11.so` and its CAC driver, and the bridge that plugs libcacard's card into the
//! reader). p11smime starts while the reader is empty, so OpenSC's `C_Initialize` finds no card;
//! the card goes in only once p11smime has said it is waiting, and OpenSC must find it on a
//! later `C_GetSlotList` in the same process.
//!
//! Needs root and the packages `tests/virtual_cac.rs` needs (`scripts/install-deps`).

#![cfg(target_os = "linux")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use common::pcsc::{Pcscd, SETTLE_LIMIT, run_limited, virtual_readers};
use common::virt_cac::{Bridge, CardFiles, READER, bridge_binary, opensc_module};
use common::{assert_fails, report};
use serde_json::Value;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// What `--wait N` says on stderr while it waits.
fn waiting_message(seconds: u64) -> String {
    format!("p11smime: warning: waiting up to {seconds} s for a card to be inserted")
}

/// `p11smime ARGS` through OpenSC and `pcscd`, as `tests/virtual_cac.rs` runs it.
fn p11smime(pcscd: &Pcscd, files: &CardFiles, args: &[&str]) -> Command {
    let mut cmd = pcscd.command(args);
    cmd.env("P11SMIME_MODULE", opensc_module())
        .env("OPENSC_CONF", &files.opensc_conf)
        .env("TEST_PIN", common::PIN)
        .env_remove("P11SMIME_TOKEN")
        .env_remove("SOFTHSM2_CONF")
        .stdin(Stdio::null());
    cmd
}

/// Our own pcscd with vpcd's two readers up and both empty.
fn pcscd_with_empty_readers() -> Pcscd {
    let mut pcscd = Pcscd::start(true);
    pcscd.readers_when("the virtual readers, empty", |l| {
        let virt = virtual_readers(l);
        virt.len() >= 2 && virt.iter().all(|r| r["card_present"] == false)
    });
    pcscd
}

/// A p11smime run in the background: its stderr arrives line by line (and is kept), its
/// stdout is collected. Killed (and reaped) if dropped before it finished.
struct Background {
    child: Child,
    started: Instant,
    stderr_lines: Receiver<String>,
    stderr_seen: Vec<String>,
    stdout: Option<JoinHandle<Vec<u8>>>,
}

impl Background {
    fn spawn(mut cmd: Command) -> Self {
        let started = Instant::now();
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut out = child.stdout.take().unwrap();
        let stdout = std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = out.read_to_end(&mut buf);
            buf
        });
        let err = child.stderr.take().unwrap();
        let (lines, stderr_lines) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines() {
                if lines.send(line.unwrap_or_default()).is_err() {
                    return;
                }
            }
        });
        Background {
            child,
            started,
            stderr_lines,
            stderr_seen: Vec::new(),
            stdout: Some(stdout),
        }
    }

    /// Waits up to `limit` for a stderr line containing `needle`; fails the test (with what
    /// the process said) if it does not come, or the process ends first.
    fn expect_stderr(&mut self, needle: &str, limit: Duration) {
        let deadline = Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.stderr_lines.recv_timeout(left) {
                Ok(line) => {
                    let found = line.contains(needle);
                    self.stderr_seen.push(line);
                    if found {
                        return;
                    }
                }
                Err(RecvTimeoutError::Timeout) => panic!(
                    "no {needle:?} on stderr within {limit:?}; so far:\n{}",
                    self.stderr_seen.join("\n")
                ),
                Err(RecvTimeoutError::Disconnected) => panic!(
                    "p11smime ended ({:?}) before saying {needle:?}; stderr:\n{}",
                    self.child.wait(),
                    self.stderr_seen.join("\n")
                ),
            }
        }
    }

    /// Fails the test if the process has already ended.
    fn assert_running(&mut self, what: &str) {
        if let Some(status) = self.child.try_wait().unwrap() {
            panic!(
                "{what}: p11smime already ended ({status}); stderr:\n{}",
                self.stderr_seen.join("\n")
            );
        }
    }

    /// Waits up to `limit` for the process to end (killing it and failing the test after);
    /// returns its output and how long it ran from its start.
    fn finish(mut self, limit: Duration) -> (Output, Duration) {
        let deadline = Instant::now() + limit;
        let status: ExitStatus = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            if Instant::now() >= deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!(
                    "p11smime did not finish within {limit:?}; stderr:\n{}",
                    self.stderr_seen.join("\n")
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let took = self.started.elapsed();
        let stdout = self.stdout.take().unwrap().join().unwrap();
        // The pipe is closed now: collect the rest of stderr.
        let mut stderr = std::mem::take(&mut self.stderr_seen);
        while let Ok(line) = self.stderr_lines.recv_timeout(Duration::from_secs(5)) {
            stderr.push(line);
        }
        let mut stderr = stderr.join("\n").into_bytes();
        if !stderr.is_empty() {
            stderr.push(b'\n');
        }
        (
            Output {
                status,
                stdout,
                stderr,
            },
            took,
        )
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn json(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", report(out)))
}

/// Starts `p11smime ARGS --wait 20` with the reader empty, checks it says it waits, inserts
/// the card, and returns the output of the run, which succeeded within the wait.
fn insert_while_waiting(dir: &Path, args: &[&str]) -> Output {
    const WAIT: u64 = 20;
    // Compile the bridge (first test of the binary) before any clock starts.
    bridge_binary();
    let files = CardFiles::make(dir);
    let pcscd = pcscd_with_empty_readers();

    let mut args = args.to_vec();
    args.extend(["--wait", "20"]);
    let mut run = Background::spawn(p11smime(&pcscd, &files, &args));
    run.expect_stderr(&waiting_message(WAIT), SETTLE_LIMIT);
    // Let it poll the empty reader a few more times (it looks every 250 ms), so the card really
    // arrives in the middle of the wait and not before its first look.
    std::thread::sleep(Duration::from_millis(1000));
    run.assert_running("before the card went in");

    let inserted = Instant::now();
    let bridge = Bridge::insert(&files, pcscd.port.unwrap(), &dir.join("virt_cac.log"));
    let (out, took) = run.finish(Duration::from_secs(WAIT + 10));
    let after_insert = inserted.elapsed();
    assert!(
        out.status.success(),
        "p11smime {args:?} after the card went in: {}\nbridge log (tail):\n{}\npcscd log:\n{}",
        report(&out),
        tail(&bridge.log(), 40),
        pcscd.log()
    );
    assert!(
        took < Duration::from_secs(WAIT),
        "p11smime took {took:?}, the whole --wait {WAIT}: it did not see the card go in; {}",
        report(&out)
    );
    let stderr = String::from_utf8(out.stderr.clone()).unwrap();
    assert_eq!(
        stderr.matches("waiting up to").count(),
        1,
        "it says once that it waits: {stderr}"
    );
    eprintln!(
        "{args:?}: ran {took:?} in all; the card went in {:?} after the start, and it \
         finished {after_insert:?} after that",
        took.saturating_sub(after_insert)
    );
    out
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

#[test]
fn tokens_waits_for_a_card_inserted_after_it_started() {
    let dir = tempfile::tempdir().unwrap();
    let out = insert_while_waiting(dir.path(), &["tokens", "--json"]);
    let tokens = json(&out);
    let cacs: Vec<&Value> = tokens
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["manufacturer"] == "Common Access Card")
        .collect();
    assert_eq!(cacs.len(), 1, "{tokens:#}");
    let cac = cacs[0];
    assert_eq!(cac["slot_description"], READER, "{cac}");
    assert_eq!(cac["label"], "Alice Tester", "{cac}");
    assert_eq!(cac["initialized"], true, "{cac}");
    assert_eq!(cac["pin_locked"], false, "{cac}");
}

#[test]
fn certs_waits_for_a_card_inserted_after_it_started_and_reads_it() {
    let dir = tempfile::tempdir().unwrap();
    let out = insert_while_waiting(dir.path(), &["certs", "--json"]);
    let tokens = json(&out);
    let cac = tokens
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["token"]["manufacturer"] == "Common Access Card")
        .unwrap_or_else(|| panic!("no CAC in {tokens:#}"));
    assert_eq!(cac["token"]["slot_description"], READER, "{cac}");
    // alice's three certificates, read from the card that arrived mid-wait (without a login,
    // so no key is claimed for them).
    let certs = cac["certificates"].as_array().unwrap();
    assert_eq!(certs.len(), 3, "{cac:#}");
    for c in certs {
        assert_eq!(c["emails"][0], "alice@example.test", "{c}");
    }
}

#[test]
fn without_a_card_wait_gives_up_after_its_time() {
    let dir = tempfile::tempdir().unwrap();
    let files = CardFiles {
        // No card is ever made: OpenSC needs only its configuration.
        softhsm_conf: dir.path().join("unused"),
        nssdb: dir.path().join("unused"),
        opensc_conf: dir.path().join("opensc.conf"),
    };
    std::fs::write(&files.opensc_conf, common::virt_cac::OPENSC_CONF).unwrap();
    let pcscd = pcscd_with_empty_readers();

    let started = Instant::now();
    let out = run_limited(p11smime(&pcscd, &files, &["tokens", "--wait", "2"]));
    let took = started.elapsed();
    let stderr = assert_fails(&out, 6, "tokens --wait 2 with no card");
    assert!(out.stdout.is_empty(), "{}", report(&out));
    assert!(stderr.contains(&waiting_message(2)), "{stderr}");
    assert!(
        stderr.contains("no card was inserted within 2 s"),
        "{stderr}"
    );
    assert!(
        took >= Duration::from_secs(2) && took < Duration::from_secs(6),
        "gave up after {took:?}, not about 2 s: {stderr}"
    );
    eprintln!("tokens --wait 2 with no card: gave up after {took:?}; stderr: {stderr}");
}
