//! Batches through the whole virtual-CAC stack (our own pcscd with vpcd's readers, OpenSC's
//! module and CAC driver, and the libcacard bridge; see `tests/virtual_cac.rs`): a directory of
//! messages is one PIN VERIFY on the card, and a card pulled out mid-batch stops the batch with
//! what was done kept, nothing half-written and the rest reported as not processed.
//!
//! Needs root and the packages `tests/virtual_cac.rs` needs (`scripts/install-deps`).

#![cfg(target_os = "linux")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use common::pcsc::{Pcscd, run_limited};
use common::virt_cac::{Bridge, CardFiles, opensc_module, plug_in};
use common::{PIN, fixture, path_str, report, run_ok};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

/// The stack with the card in its reader. Dropped in field order: bridge, pcscd, files.
struct Stack {
    bridge: Option<Bridge>,
    pcscd: Pcscd,
    files: CardFiles,
    dir: tempfile::TempDir,
}

impl Stack {
    fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let files = CardFiles::make(dir.path());
        let (pcscd, bridge) = plug_in(&files, dir.path());
        Stack {
            bridge: Some(bridge),
            pcscd,
            files,
            dir,
        }
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = self.pcscd.command(args);
        cmd.env("P11SMIME_MODULE", opensc_module())
            .env("OPENSC_CONF", &self.files.opensc_conf)
            .env("TEST_PIN", PIN)
            .env_remove("P11SMIME_TOKEN")
            .env_remove("SOFTHSM2_CONF");
        cmd
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// PIN VERIFYs the card has seen (CLA 00, INS 20, Lc 08), not the empty VERIFY that only
    /// asks for the PIN's state.
    fn pin_verifies(&self) -> usize {
        self.bridge
            .as_ref()
            .unwrap()
            .log()
            .lines()
            .filter_map(|l| l.strip_prefix("> "))
            .filter(|a| a.starts_with("0020000008"))
            .count()
    }
}

fn body_text(n: usize) -> String {
    format!("Body number {n} through the card.\n")
}

/// `count` files in `dir`, each encrypted to alice-enc.pem.
fn make_messages(dir: &Path, count: usize) {
    std::fs::create_dir_all(dir).unwrap();
    for n in 0..count {
        let plain = dir.join(format!("plain-{n}.tmp"));
        std::fs::write(
            &plain,
            format!("Content-Type: text/plain\n\n{}", body_text(n)),
        )
        .unwrap();
        run_ok(
            Command::new("openssl")
                .args(["cms", "-encrypt", "-aes128", "-in"])
                .arg(&plain)
                .arg("-out")
                .arg(dir.join(format!("m{n:03}.eml")))
                .arg(fixture("alice-enc.pem")),
        );
        std::fs::remove_file(plain).unwrap();
    }
}

fn body(raw: &[u8]) -> String {
    mail_parser::MessageParser::default()
        .parse(raw)
        .and_then(|m| m.body_text(0).map(|b| b.replace("\r\n", "\n")))
        .unwrap_or_else(|| panic!("not a readable message: {}", String::from_utf8_lossy(raw)))
}

fn batch_args<'a>(out: &'a Path, input: &'a Path) -> Vec<&'a str> {
    vec![
        "decrypt",
        "--pin",
        "env:TEST_PIN",
        "--json",
        "--out-dir",
        path_str(out),
        path_str(input),
    ]
}

fn json(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", report(out)))
}

#[test]
fn a_directory_through_the_card_is_one_pin_verify() {
    let stack = Stack::start();
    let input = stack.path("in");
    make_messages(&input, 10);
    let out = stack.path("out");
    let before = stack.pin_verifies();
    let started = Instant::now();
    let result = run_limited(stack.command(&batch_args(&out, &input)));
    eprintln!("10 messages through the card in {:?}", started.elapsed());
    assert!(result.status.success(), "{}", report(&result));
    let report_json = json(&result);
    assert_eq!(report_json["decrypted"], 10, "{report_json}");
    assert_eq!(report_json["failed"], 0, "{report_json}");
    for n in 0..10 {
        let raw = std::fs::read(out.join(format!("m{n:03}.eml"))).unwrap();
        assert_eq!(body(&raw), body_text(n), "message {n}");
    }
    assert_eq!(
        stack.pin_verifies() - before,
        1,
        "one PIN VERIFY for the whole batch"
    );
}

/// The card goes out (the bridge is killed) once the first result is in the output directory.
#[test]
fn a_card_pulled_out_mid_batch_stops_it() {
    const COUNT: usize = 40;
    let mut stack = Stack::start();
    let input = stack.path("in");
    make_messages(&input, COUNT);
    let out = stack.path("out");
    let mut bridge = stack.bridge.take();
    let watch_dir = out.clone();
    let puller = std::thread::spawn(move || {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            let done = std::fs::read_dir(&watch_dir)
                .map(|d| {
                    d.filter_map(|e| e.ok())
                        .any(|e| e.file_name().to_string_lossy().ends_with(".eml"))
                })
                .unwrap_or(false);
            if done {
                // Dropping the bridge kills it: the card leaves the reader.
                drop(bridge.take());
                return true;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        false
    });
    let result = run_limited(stack.command(&batch_args(&out, &input)));
    let pulled = puller.join().unwrap();
    assert!(pulled, "no first result appeared: {}", report(&result));
    let stderr = String::from_utf8_lossy(&result.stderr).to_string();
    let report_json = json(&result);
    let decrypted = report_json["decrypted"].as_u64().unwrap() as usize;
    let not_processed = report_json["not_processed"].as_u64().unwrap() as usize;
    assert!(
        decrypted < COUNT - 1,
        "the card went out after the first message, yet {decrypted} came out: {report_json}"
    );
    assert_eq!(result.status.code(), Some(6), "{}", report(&result));
    assert!(!stderr.contains("panicked"), "{stderr}");
    let stopped = report_json["stopped"].as_str().unwrap_or("");
    assert!(stopped.contains("went away"), "{report_json}");
    assert!(stderr.contains("went away"), "{stderr}");
    assert_eq!(report_json["failed"], 1, "the one it was on: {report_json}");
    assert!(not_processed > 0, "{report_json}");
    assert_eq!(
        decrypted + 1 + not_processed,
        COUNT,
        "every message accounted for: {report_json}"
    );
    // What was decrypted stays, whole; nothing else is in the output directory.
    let mut names: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .collect();
    names.sort();
    assert_eq!(
        names.len(),
        decrypted,
        "no temporary or partial files: {names:?}"
    );
    for item in report_json["items"].as_array().unwrap() {
        if item["status"] == "decrypted" {
            let output = PathBuf::from(item["output"].as_str().unwrap());
            let name = output.file_name().unwrap().to_string_lossy().to_string();
            let n: usize = name[1..4].parse().unwrap();
            assert_eq!(body(&std::fs::read(&output).unwrap()), body_text(n));
        }
    }
}
