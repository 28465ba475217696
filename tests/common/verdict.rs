//! `p11smime verify --json` against a CA made for the test, with revocation checked over
//! loopback (CRL distribution points, OCSP responders): one run, bounded in time, and its
//! verdict on the one signer.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use super::contains;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// One `p11smime verify --json --no-system-ca --ca CA EXTRA -o OUT INPUT` run.
pub struct Verdict {
    pub what: String,
    pub out: Output,
    pub json: Value,
    /// What `-o` wrote (`None`: no file).
    pub written: Option<Vec<u8>>,
}

/// Runs `p11smime verify` on `msg` trusting only `ca`, with the proxy variables cleared; it must
/// not panic and must be done within 8 s.
pub fn verify(msg: &Path, ca: &Path, extra: &[&str]) -> Verdict {
    let out_file = PathBuf::from(format!("{}.verified", msg.display()));
    let _ = std::fs::remove_file(&out_file);
    let started = Instant::now();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_p11smime"));
    cmd.env_remove("P11SMIME_MODULE")
        .env_remove("P11SMIME_TOKEN")
        .stdin(Stdio::null());
    // ureq honours the proxy variables; the loopback servers must be reached directly.
    for var in [
        "ALL_PROXY",
        "all_proxy",
        "HTTP_PROXY",
        "http_proxy",
        "HTTPS_PROXY",
        "https_proxy",
    ] {
        cmd.env_remove(var);
    }
    let out = cmd
        .args(["verify", "--json", "--no-system-ca", "--ca"])
        .arg(ca)
        .args(extra)
        .arg("-o")
        .arg(&out_file)
        .arg(msg)
        .output()
        .unwrap();
    let elapsed = started.elapsed();
    let what = format!(
        "verify {} {extra:?}",
        msg.file_name().unwrap().to_string_lossy()
    );
    eprintln!("{what}: exit {:?} in {elapsed:?}", out.status.code());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stderr.contains("panicked") && !stderr.contains("RUST_BACKTRACE"),
        "{what}: panicked: {stderr}"
    );
    assert!(
        elapsed < Duration::from_secs(8),
        "{what}: took {elapsed:?} on loopback"
    );
    let json = if out.stdout.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "{what}: stdout is not JSON ({e}): {}",
                String::from_utf8_lossy(&out.stdout)
            )
        })
    };
    let written = std::fs::read(&out_file).ok();
    Verdict {
        what,
        out,
        json,
        written,
    }
}

impl Verdict {
    pub fn report(&self) -> String {
        format!(
            "{}: exit {:?}\nstdout:\n{}\nstderr:\n{}",
            self.what,
            self.out.status.code(),
            String::from_utf8_lossy(&self.out.stdout),
            String::from_utf8_lossy(&self.out.stderr)
        )
    }

    /// The one signer.
    pub fn signer(&self) -> &Value {
        let signers = self.json["signers"]
            .as_array()
            .unwrap_or_else(|| panic!("no signers array: {}", self.report()));
        assert_eq!(signers.len(), 1, "{}", self.report());
        &signers[0]
    }

    /// The signer's `revocation` field.
    pub fn revocation(&self) -> &str {
        self.signer()["revocation"]
            .as_str()
            .unwrap_or_else(|| panic!("no revocation field: {}", self.report()))
    }

    /// Exit 0, all good, a valid and trusted signer without a problem, `-o` wrote something
    /// that contains `text`. Returns the `revocation` field.
    pub fn good_with(&self, text: &[u8]) -> &str {
        let r = self.report();
        assert_eq!(self.out.status.code(), Some(0), "{r}");
        assert_eq!(self.json["all_good"], Value::Bool(true), "{r}");
        let s = self.signer();
        assert_eq!(s["signature_valid"], Value::Bool(true), "{r}");
        assert_eq!(s["trusted"], Value::Bool(true), "{r}");
        assert_eq!(s["problem"], Value::Null, "{r}");
        let written = self
            .written
            .as_deref()
            .unwrap_or_else(|| panic!("-o wrote nothing: {r}"));
        assert!(
            contains(written, text),
            "{r}\n-o wrote {:?}",
            String::from_utf8_lossy(written)
        );
        self.revocation()
    }

    /// Exit 7, not all good, a valid signature by an untrusted signer whose problem contains
    /// `problem` (also on stderr), no revocation verdict, and nothing written by `-o`.
    /// Returns the problem.
    pub fn bad(&self, problem: &str) -> &str {
        let r = self.report();
        assert_eq!(self.out.status.code(), Some(7), "{r}");
        assert_eq!(self.json["all_good"], Value::Bool(false), "{r}");
        let s = self.signer();
        assert_eq!(s["signature_valid"], Value::Bool(true), "{r}");
        assert_eq!(s["trusted"], Value::Bool(false), "{r}");
        assert!(
            s["problem"].as_str().is_some_and(|p| p.contains(problem)),
            "{r}\nexpected the problem {problem:?}"
        );
        assert_eq!(s["revocation"], Value::Null, "{r}");
        assert!(
            String::from_utf8_lossy(&self.out.stderr).contains(problem),
            "{r}"
        );
        assert!(
            self.written.is_none(),
            "{r}\n-o wrote {:?} for a message that is not all good",
            self.written
        );
        s["problem"].as_str().unwrap()
    }
}
