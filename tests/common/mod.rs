//! Test harness: a fresh SoftHSM2 token per test (its own directory and `SOFTHSM2_CONF`, built
//! by `scripts/softhsm-token` from `softhsm-fixtures/`), the `p11smime` binary pointed at it,
//! and the real peers (openssl, NSS cmsutil, gpgsm) to make messages with.
//!
//! Tests run the binary as a child process, so each run initialises SoftHSM2 with its own
//! configuration, exactly as a user's shell would.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

pub mod fault;
pub mod gpgsm;
pub mod large;
pub mod loopback;
pub mod mime;
pub mod nss;
#[cfg(target_os = "linux")]
pub mod pcsc;
pub mod pki;
pub mod verdict;
#[cfg(target_os = "linux")]
pub mod virt_cac;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// The user PIN `scripts/softhsm-token` sets.
pub const PIN: &str = "123456";

/// A MIME entity as a mail client would encrypt it.
pub const SAMPLE: &[u8] =
    b"Content-Type: text/plain; charset=us-ascii\r\n\r\nHello from the card.\r\nSecond line.\r\n";

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn fixture(name: &str) -> PathBuf {
    root().join("softhsm-fixtures").join(name)
}

/// The SoftHSM2 module: `P11SMIME_SOFTHSM_MODULE`, else the usual install paths.
pub fn softhsm_module() -> PathBuf {
    if let Ok(p) = std::env::var("P11SMIME_SOFTHSM_MODULE") {
        return PathBuf::from(p);
    }
    [
        "/usr/lib/softhsm/libsofthsm2.so",
        "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
        "/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so",
        "/opt/homebrew/lib/softhsm/libsofthsm2.so",
        "/usr/local/lib/softhsm/libsofthsm2.so",
    ]
    .iter()
    .map(PathBuf::from)
    .find(|p| p.exists())
    .expect("SoftHSM2 is not installed: run scripts/install-deps")
}

/// OpenSC's pkcs11-spy, which logs every PKCS#11 call it passes on (to count C_Login).
pub fn spy_module() -> PathBuf {
    [
        "/usr/lib/x86_64-linux-gnu/pkcs11-spy.so",
        "/usr/lib/aarch64-linux-gnu/pkcs11-spy.so",
        "/usr/lib/pkcs11-spy.so",
    ]
    .iter()
    .map(PathBuf::from)
    .find(|p| p.exists())
    .expect("pkcs11-spy.so (package opensc-pkcs11) is missing: run scripts/install-deps")
}

/// A fresh token in a temporary directory, removed when dropped.
pub struct TestToken {
    pub dir: tempfile::TempDir,
    pub conf: PathBuf,
}

impl TestToken {
    pub fn new() -> Self {
        Self::with_label("p11smime-test")
    }

    pub fn with_label(label: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let out = Command::new(root().join("scripts/softhsm-token"))
            .arg(dir.path())
            .arg(label)
            .env("P11SMIME_SOFTHSM_MODULE", softhsm_module())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "scripts/softhsm-token failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let conf = dir.path().join("softhsm2.conf");
        TestToken { dir, conf }
    }

    /// `p11smime ARGS` against this token, with the PIN in `TEST_PIN` (use `--pin env:TEST_PIN`).
    pub fn p11smime(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_p11smime"));
        cmd.args(args)
            .env("SOFTHSM2_CONF", &self.conf)
            .env("P11SMIME_MODULE", softhsm_module())
            .env("TEST_PIN", PIN)
            .env_remove("P11SMIME_TOKEN")
            // Each token has its own agent socket: tests run in parallel, and an agent of one
            // test's token must never serve another's.
            .env("P11SMIME_AGENT_SOCKET", self.agent_socket())
            .env_remove("P11SMIME_AGENT")
            .stdin(Stdio::null());
        cmd
    }

    /// Where this token's session agent listens.
    pub fn agent_socket(&self) -> PathBuf {
        self.path("agent").join("agent.sock")
    }

    /// Decrypts `input` (a file) with the right PIN; returns the whole process output.
    pub fn decrypt(&self, input: &Path) -> Output {
        self.p11smime(&["decrypt", "--pin", "env:TEST_PIN", path_str(input)])
            .output()
            .unwrap()
    }

    /// Runs `p11smime ARGS` through pkcs11-spy; returns the output and the spy's log of every
    /// PKCS#11 call. The spy logs arguments and results in full, the PIN and derived secrets
    /// included: fine for the test token, never a way to debug a real card.
    pub fn spy_run(&self, args: &[&str]) -> (Output, String) {
        let log = self.path("spy.log");
        let _ = std::fs::remove_file(&log);
        let out = self.spied(args, &log).output().unwrap();
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        assert!(
            text.contains("C_Initialize"),
            "the spy logged nothing: {text}"
        );
        (out, text)
    }

    /// `p11smime ARGS` through pkcs11-spy, which appends every PKCS#11 call to `log` (several
    /// commands, and the agent they start, can share one log).
    pub fn spied(&self, args: &[&str], log: &Path) -> Command {
        let mut cmd = self.p11smime(args);
        cmd.env("P11SMIME_MODULE", spy_module())
            .env("PKCS11SPY", softhsm_module())
            .env("PKCS11SPY_OUTPUT", log);
        cmd
    }

    /// A scratch path inside the token's temporary directory.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Writes `bytes` to the scratch file `name`; returns its path.
    pub fn write(&self, name: &str, bytes: &[u8]) -> PathBuf {
        let p = self.path(name);
        std::fs::write(&p, bytes).unwrap();
        p
    }
}

/// Runs p11smime through pkcs11-spy and returns (output, number of C_Login calls).
pub fn with_spy(token: &TestToken, args: &[&str]) -> (Output, usize) {
    let (out, log) = token.spy_run(args);
    (out, count_calls(&log, "C_Login"))
}

/// How many times the spy log shows a call to `function`.
pub fn count_calls(log: &str, function: &str) -> usize {
    log.lines().filter(|l| l.contains(function)).count()
}

pub fn path_str(p: &Path) -> &str {
    p.to_str().expect("test paths are UTF-8")
}

/// Runs `cmd` with the file `input` written to its stdin from another thread (a large input
/// would fill the pipe while the command writes its output); its output. A command that stops
/// reading early (a broken message) closes the pipe: that is not an error here.
pub fn output_with_stdin(cmd: &mut Command, input: &Path) -> std::process::Output {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let data = std::fs::read(input).unwrap();
    let mut pipe = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || {
        let _ = std::io::Write::write_all(&mut pipe, &data);
    });
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap();
    out
}

/// `openssl ARGS` with `input` on stdin; its stdout, insisting it worked.
pub fn openssl_piped(args: &[&str], input: &[u8]) -> Vec<u8> {
    let mut child = Command::new(require("openssl", "openssl"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), input).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// Runs a peer command and insists it worked.
pub fn run_ok(cmd: &mut Command) -> Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Asserts a p11smime run succeeded and printed exactly `expected` on stdout, byte for byte,
/// reporting the first difference.
pub fn assert_plaintext(out: &Output, expected: &[u8], what: &str) {
    assert!(
        out.status.success(),
        "{what}: exit {:?}, stderr: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
    let got = &out.stdout;
    let first_diff = got.iter().zip(expected).position(|(a, b)| a != b);
    assert!(
        got.len() == expected.len() && first_diff.is_none(),
        "{what}: plaintext differs: got {} bytes, expected {}, first difference at {:?}",
        got.len(),
        expected.len(),
        first_diff
    );
}

/// The full path of `tool` on PATH, or a test failure saying how to install it.
pub fn require(tool: &str, package: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|d| d.join(tool))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!("`{tool}` is not installed (package {package}): run scripts/install-deps")
        })
}

pub fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// Where `needle` first occurs in `hay` at or after `from`.
pub fn find(hay: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    hay.get(from..)?
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|p| p + from)
}

/// A peer's exit code, stdout and stderr, for assertion messages.
pub fn report(out: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Deterministic bytes covering every value (CR, LF, NUL, high bytes), from a xorshift.
pub fn varied_bytes(len: usize) -> Vec<u8> {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// Asserts a p11smime run failed with `code` and printed nothing on stdout.
pub fn assert_fails(out: &Output, code: i32, what: &str) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(out.status.code(), Some(code), "{what}: stderr: {stderr}");
    assert!(
        !stderr.contains("panicked") && !stderr.contains("RUST_BACKTRACE"),
        "{what}: panicked: {stderr}"
    );
    stderr
}

/// `openssl cms -encrypt` of `plaintext` to the fixture certificates, with extra options.
/// Certificates go last (openssl stops parsing options at the first file name).
pub fn openssl_encrypt(dir: &Path, plaintext: &[u8], opts: &[&str], recips: &[&str]) -> PathBuf {
    let input = dir.join("plain.in");
    std::fs::write(&input, plaintext).unwrap();
    let out = dir.join(format!(
        "msg-{}.p7m",
        opts.join("").replace([':', '-', '/'], "")
    ));
    let mut cmd = Command::new("openssl");
    cmd.args(["cms", "-encrypt", "-binary"]).args(opts);
    cmd.arg("-in").arg(&input).arg("-out").arg(&out);
    for r in recips {
        cmd.arg(fixture(r));
    }
    run_ok(&mut cmd);
    out
}

/// `openssl pkcs12 -export` of the fixture certificate `cert` and key `key` to `out`, with the
/// password `password` and extra options (e.g. the legacy PBE gpgsm needs, or `-name`).
pub fn pkcs12_export(out: &Path, cert: &str, key: &str, password: &str, opts: &[&str]) {
    run_ok(
        Command::new("openssl")
            .args(["pkcs12", "-export", "-passout"])
            .arg(format!("pass:{password}"))
            .args(opts)
            .arg("-in")
            .arg(fixture(cert))
            .arg("-inkey")
            .arg(fixture(key))
            .arg("-out")
            .arg(out),
    );
}
