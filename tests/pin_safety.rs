//! PIN safety through the fault-injecting module (issue 8, item 2): whatever the token's PIN
//! flags say, p11smime never costs the card more than the one attempt the user chose. Every
//! test counts `C_Login` calls in the fault module's log, which both the command and a session
//! agent it starts append to.
//!
//! "No terminal" is real here: commands run under `setsid`, so `/dev/tty` cannot be opened even
//! when the suite itself runs in one. "A terminal" is a pseudo-terminal driven by python's `pty`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use common::fault::{self, calls, injected};
use common::*;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// An AES-256 message to the fixture encryption certificate.
fn message(token: &TestToken) -> PathBuf {
    openssl_encrypt(
        token.dir.path(),
        SAMPLE,
        &["-aes256", "-outform", "DER"],
        &["alice-enc.pem"],
    )
}

/// `cmd` again, run by `setsid -w` (no controlling terminal) with stdin from /dev/null.
fn without_terminal(cmd: &Command) -> Command {
    let mut detached = Command::new("setsid");
    detached
        .arg("-w")
        .arg(cmd.get_program())
        .args(cmd.get_args())
        .stdin(Stdio::null());
    copy_env(cmd, &mut detached);
    detached
}

fn copy_env(from: &Command, to: &mut Command) {
    for (key, value) in from.get_envs() {
        match value {
            Some(v) => to.env(key, v),
            None => to.env_remove(key),
        };
    }
}

/// Runs `p11smime ARGS` through the fault module with `plan`, without a terminal; returns the
/// output and the module's call log.
fn run_detached(token: &TestToken, plan: &str, args: &[&str]) -> (Output, String) {
    let _ = std::fs::remove_file(fault::log_path(token));
    let plan = fault::write_plan(token, plan);
    let mut cmd = token.p11smime(args);
    fault::fault_env(&mut cmd, &plan);
    let out = without_terminal(&cmd).output().unwrap();
    (out, fault::read_log(token))
}

/// Drives a command on a pseudo-terminal that becomes its controlling terminal: answers
/// `answer` to the first `[y/N]` question, records everything written to the terminal.
/// Exit status 0–255, or -N when killed by signal N.
const DRIVE_TTY: &str = r#"
import os, pty, select, sys, time
answer = sys.argv[1].encode()
pid, fd = pty.fork()
if pid == 0:
    os.execvp(sys.argv[2], sys.argv[2:])
buf, sent, deadline = b"", False, time.time() + 60
while time.time() < deadline:
    ready, _, _ = select.select([fd], [], [], 0.2)
    if fd in ready:
        try:
            data = os.read(fd, 4096)
        except OSError:
            data = b""
        if not data:
            break
        buf += data
    if not sent and b"[y/N]" in buf:
        os.write(fd, answer + b"\n")
        sent = True
else:
    os.kill(pid, 9)
_, status = os.waitpid(pid, 0)
sys.stdout.buffer.write(buf)
sys.exit(os.waitstatus_to_exitcode(status) & 0xff)
"#;

/// Runs `p11smime ARGS` through the fault module with `plan` on a pseudo-terminal, answering
/// `answer` to a yes/no question; returns (exit code, terminal transcript, call log).
fn run_on_terminal(
    token: &TestToken,
    plan: &str,
    answer: &str,
    args: &[&str],
) -> (Option<i32>, String, String) {
    let _ = std::fs::remove_file(fault::log_path(token));
    let plan = fault::write_plan(token, plan);
    let mut cmd = token.p11smime(args);
    fault::fault_env(&mut cmd, &plan);
    let mut driver = Command::new(require("python3", "python3"));
    driver
        .args(["-c", DRIVE_TTY, answer])
        .arg(cmd.get_program())
        .args(cmd.get_args())
        .stdin(Stdio::null());
    copy_env(&cmd, &mut driver);
    let out = driver.output().unwrap();
    assert!(
        out.stderr.is_empty(),
        "the terminal driver failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let transcript = String::from_utf8_lossy(&out.stdout).to_string();
    (out.status.code(), transcript, fault::read_log(token))
}

/// The commands that log in, each with what it needs: one message, a three-message batch, a
/// signature, an encrypt-and-sign, `certs` and `doctor` with a PIN, and a decryption that
/// starts a session agent (`--agent auto`).
fn login_commands(token: &TestToken) -> Vec<(&'static str, Vec<String>)> {
    let msg = message(token);
    let batch_in = token.path("batch-in");
    std::fs::create_dir_all(&batch_in).unwrap();
    for name in ["a.p7m", "b.p7m", "c.p7m"] {
        std::fs::copy(&msg, batch_in.join(name)).unwrap();
    }
    let entity = token.write("entity.txt", SAMPLE);
    let s = |p: &Path| path_str(p).to_string();
    let out = |name: &str| s(&token.path(name));
    let pin = ["--pin".to_string(), "env:TEST_PIN".to_string()];
    let with_pin = |args: &[String]| -> Vec<String> {
        let mut all = vec![args[0].clone()];
        all.extend(pin.iter().cloned());
        all.extend(args[1..].iter().cloned());
        all
    };
    vec![
        ("decrypt", with_pin(&["decrypt".into(), s(&msg)])),
        (
            "batch",
            with_pin(&[
                "decrypt".into(),
                "--out-dir".into(),
                out("batch-out"),
                s(&batch_in),
            ]),
        ),
        (
            "sign",
            with_pin(&["sign".into(), "-o".into(), out("signed.eml"), s(&entity)]),
        ),
        (
            "encrypt --sign",
            with_pin(&[
                "encrypt".into(),
                "--sign".into(),
                "-r".into(),
                s(&fixture("bob-enc.pem")),
                "-o".into(),
                out("sent.eml"),
                s(&entity),
            ]),
        ),
        ("certs", with_pin(&["certs".into()])),
        ("doctor", with_pin(&["doctor".into()])),
        (
            "decrypt --agent auto",
            with_pin(&["decrypt".into(), "--agent".into(), "auto".into(), s(&msg)]),
        ),
    ]
}

fn strs(args: &[String]) -> Vec<&str> {
    args.iter().map(String::as_str).collect()
}

/// No session agent is left running for this token.
fn assert_no_agent(token: &TestToken, what: &str) {
    let out = token.p11smime(&["agent", "status"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{what}: {}", report(&out));
}

fn stop_agent(token: &TestToken) {
    let _ = token.p11smime(&["agent", "stop"]).output();
}

#[test]
fn a_wrong_pin_is_one_login_in_every_command() {
    let token = TestToken::new();
    for (name, args) in login_commands(&token) {
        let (out, log) = run_detached(&token, "login CKR_PIN_INCORRECT", &strs(&args));
        assert!(!out.status.success(), "{name}: {}", report(&out));
        // doctor reports its problems (exit 6); every other command stops on the PIN (5).
        let code = if name == "doctor" { 6 } else { 5 };
        let stderr = assert_fails(&out, code, name);
        assert_eq!(
            calls(&log, "C_Login"),
            1,
            "{name}: one attempt, never retried: {log}"
        );
        assert_eq!(
            injected(&log, "C_Login"),
            ["C_Login CKR_PIN_INCORRECT injected"],
            "{name}"
        );
        // doctor prints its findings on stdout, the others their error on stderr.
        let said = format!("{}{stderr}", String::from_utf8_lossy(&out.stdout));
        assert!(said.contains("PIN incorrect"), "{name}: {said}");
        if name != "doctor" {
            assert!(stderr.contains("not retried"), "{name}: {stderr}");
        }
        assert_no_agent(&token, name);
    }
}

#[test]
fn a_locked_pin_is_refused_before_any_login() {
    let token = TestToken::new();
    for (name, args) in login_commands(&token) {
        let (out, log) = run_detached(&token, "flags LOCKED", &strs(&args));
        let code = if name == "doctor" { 6 } else { 5 };
        let stderr = assert_fails(&out, code, name);
        assert_eq!(calls(&log, "C_Login"), 0, "{name}: {log}");
        let said = format!("{}{stderr}", String::from_utf8_lossy(&out.stdout));
        assert!(said.contains("locked"), "{name}: {said}");
        assert!(out.stdout.is_empty() || name == "doctor", "{name}");
        assert_no_agent(&token, name);
    }
    assert!(
        !token.path("signed.eml").exists() && !token.path("sent.eml").exists(),
        "nothing is written for a locked card"
    );
}

#[test]
fn the_final_try_without_a_terminal_needs_force_final_try() {
    let token = TestToken::new();
    for (name, args) in login_commands(&token) {
        let (out, log) = run_detached(&token, "flags FINAL_TRY", &strs(&args));
        let code = if name == "doctor" { 6 } else { 5 };
        let stderr = assert_fails(&out, code, name);
        assert_eq!(calls(&log, "C_Login"), 0, "{name}: {log}");
        let said = format!("{}{stderr}", String::from_utf8_lossy(&out.stdout));
        assert!(said.contains("final PIN try"), "{name}: {said}");
        if name != "doctor" {
            assert!(stderr.contains("--force-final-try"), "{name}: {stderr}");
        }
        assert_no_agent(&token, name);
    }

    // --force-final-try: the one login the user asked for, and the message opens.
    let msg = message(&token);
    let (out, log) = run_detached(
        &token,
        "flags FINAL_TRY",
        &[
            "decrypt",
            "--force-final-try",
            "--pin",
            "env:TEST_PIN",
            path_str(&msg),
        ],
    );
    assert_plaintext(&out, SAMPLE, "final try forced");
    assert_eq!(calls(&log, "C_Login"), 1, "{log}");
}

#[test]
fn the_final_try_on_a_terminal_asks_and_no_means_no_login() {
    let token = TestToken::new();
    let msg = message(&token);
    let out_file = token.path("out.eml");
    let args = [
        "decrypt",
        "--pin",
        "env:TEST_PIN",
        "-o",
        path_str(&out_file),
        path_str(&msg),
    ];

    let (code, transcript, log) = run_on_terminal(&token, "flags FINAL_TRY", "no", &args);
    assert!(transcript.contains("FINAL PIN try"), "{transcript}");
    assert!(transcript.contains("[y/N]"), "{transcript}");
    assert_eq!(code, Some(5), "{transcript}");
    assert_eq!(calls(&log, "C_Login"), 0, "'no' costs no attempt: {log}");
    assert!(!out_file.exists());
    assert!(!transcript.contains("panicked"), "{transcript}");

    let (code, transcript, log) = run_on_terminal(&token, "flags FINAL_TRY", "yes", &args);
    assert_eq!(code, Some(0), "{transcript}");
    assert_eq!(calls(&log, "C_Login"), 1, "'yes' is one login: {log}");
    assert_eq!(std::fs::read(&out_file).unwrap(), SAMPLE);
}

#[test]
fn a_low_count_is_a_warning_and_one_login() {
    let token = TestToken::new();
    let msg = message(&token);
    let (out, log) = run_detached(
        &token,
        "flags COUNT_LOW",
        &["decrypt", "--pin", "env:TEST_PIN", path_str(&msg)],
    );
    assert_plaintext(&out, SAMPLE, "COUNT_LOW");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr
            .lines()
            .any(|l| l.starts_with("p11smime: warning:") && l.contains("COUNT_LOW")),
        "{stderr}"
    );
    assert_eq!(calls(&log, "C_Login"), 1, "{log}");

    // Without the flag there is no such warning: the warning comes from the flag.
    let (out, _) = run_detached(
        &token,
        "",
        &["decrypt", "--pin", "env:TEST_PIN", path_str(&msg)],
    );
    assert_plaintext(&out, SAMPLE, "no flags");
    assert!(!String::from_utf8_lossy(&out.stderr).contains("COUNT_LOW"));
}

/// A token with a PIN pad (CKF_PROTECTED_AUTHENTICATION_PATH) and no `--pin`: the PIN is typed
/// on the reader, so p11smime says so and logs in with no PIN (PKCS#11's NULL PIN) instead of
/// prompting on the terminal, even when there is one. SoftHSM2 has no PIN pad: the injected
/// answers stand for what the reader says.
#[test]
fn a_pin_pad_is_used_without_pin_and_never_prompted_for() {
    let token = TestToken::new();
    let msg = message(&token);
    let args = ["decrypt", path_str(&msg)];

    // The user typed a wrong PIN on the pad: one attempt, reported, not retried.
    let plan = "flags PROTECTED_AUTH_PATH\nlogin CKR_PIN_INCORRECT";
    let (code, transcript, log) = run_on_terminal(&token, plan, "no", &args);
    assert!(transcript.contains("PIN pad"), "{transcript}");
    assert!(
        !transcript.contains("PIN for"),
        "no terminal prompt: {transcript}"
    );
    assert_eq!(code, Some(5), "{transcript}");
    assert!(transcript.contains("not retried"), "{transcript}");
    assert_eq!(calls(&log, "C_Login"), 1, "{log}");

    // The user pressed Cancel on the pad: a PIN problem (exit 5), said so, no second attempt.
    let plan = "flags PROTECTED_AUTH_PATH\nlogin CKR_FUNCTION_CANCELED";
    let (out, log) = run_detached(&token, plan, &args);
    let stderr = assert_fails(&out, 5, "PIN entry cancelled on the pad");
    assert!(stderr.contains("cancelled"), "{stderr}");
    assert_eq!(calls(&log, "C_Login"), 1, "{log}");

    // A module that claims a PIN pad but refuses the PIN-less login (SoftHSM2 itself answers
    // CKR_ARGUMENTS_BAD): a PIN problem that names the way out (--pin), not a raw return code.
    let (out, log) = run_detached(&token, "flags PROTECTED_AUTH_PATH", &args);
    let stderr = assert_fails(&out, 5, "PIN pad refused");
    assert!(stderr.contains("PIN pad"), "{stderr}");
    assert!(stderr.contains("--pin"), "{stderr}");
    assert_eq!(calls(&log, "C_Login"), 1, "{log}");

    // An explicit --pin wins over the pad.
    let (out, log) = run_detached(
        &token,
        "flags PROTECTED_AUTH_PATH",
        &["decrypt", "--pin", "env:TEST_PIN", path_str(&msg)],
    );
    assert_plaintext(&out, SAMPLE, "PIN pad token with --pin");
    assert!(!String::from_utf8_lossy(&out.stderr).contains("PIN pad"));
    assert_eq!(calls(&log, "C_Login"), 1, "{log}");

    // The flag checks come first on a PIN pad too.
    let plan = "flags PROTECTED_AUTH_PATH FINAL_TRY";
    let (out, log) = run_detached(&token, plan, &args);
    assert_fails(&out, 5, "final try on a PIN pad token");
    assert_eq!(calls(&log, "C_Login"), 0, "{log}");
}

/// `agent start` runs the same checks before the agent process logs in.
#[test]
fn agent_start_checks_the_flags_before_any_login() {
    let token = TestToken::new();
    let start = [
        "agent",
        "start",
        "--idle-timeout",
        "60s",
        "--pin",
        "env:TEST_PIN",
    ];

    let (out, log) = run_detached(&token, "flags LOCKED", &start);
    let stderr = assert_fails(&out, 5, "agent start, locked");
    assert!(stderr.contains("locked"), "{stderr}");
    assert_eq!(calls(&log, "C_Login"), 0, "{log}");
    assert_no_agent(&token, "locked");

    let (out, log) = run_detached(&token, "flags FINAL_TRY", &start);
    let stderr = assert_fails(&out, 5, "agent start, final try");
    assert!(stderr.contains("final PIN try"), "{stderr}");
    assert_eq!(calls(&log, "C_Login"), 0, "{log}");
    assert_no_agent(&token, "final try refused");

    let (out, log) = run_detached(&token, "login CKR_PIN_INCORRECT", &start);
    assert_fails(&out, 5, "agent start, wrong PIN");
    assert_eq!(calls(&log, "C_Login"), 1, "{log}");
    assert_no_agent(&token, "wrong PIN");

    let mut forced = start.to_vec();
    forced.push("--force-final-try");
    let (out, log) = run_detached(&token, "flags FINAL_TRY", &forced);
    assert!(out.status.success(), "{}", report(&out));
    assert_eq!(calls(&log, "C_Login"), 1, "the agent's one login: {log}");
    // The agent serves the next command without another login, the flag notwithstanding.
    let msg = message(&token);
    let (out, log) = run_detached(&token, "flags FINAL_TRY", &["decrypt", path_str(&msg)]);
    stop_agent(&token);
    assert_plaintext(&out, SAMPLE, "through the agent");
    assert_eq!(calls(&log, "C_Login"), 0, "{log}");
    assert_no_agent(&token, "after stop");
}
