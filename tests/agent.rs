//! The session agent (`p11smime agent`) against a SoftHSM2 token, with every PKCS#11 call the
//! agent makes counted by OpenSC's pkcs11-spy: a hundred decryptions cost one C_Login; another
//! user is refused by the agent itself; the idle timeout and `agent stop` end the session (with
//! a C_Logout), after which the next command asks for the PIN again; `--agent auto` starts one
//! with the PIN the command was given; a signing key that wants the PIN for every use still
//! asks unless the agent was started with `--cache-signing-pin`; hostile frames get an error
//! and no key operation.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use common::*;

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

/// `p11smime ARGS` through pkcs11-spy logging to `log` (the agent's calls and the starter's).
fn spied(token: &TestToken, args: &[&str], log: &Path) -> Command {
    token.spied(args, log)
}

fn start(token: &TestToken, extra: &[&str]) -> Output {
    let mut args = vec!["agent", "start", "--pin", "env:TEST_PIN"];
    args.extend_from_slice(extra);
    let out = token.p11smime(&args).output().unwrap();
    assert!(
        out.status.success(),
        "agent start: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn stop(token: &TestToken) {
    let _ = token.p11smime(&["agent", "stop"]).output();
}

fn status_json(token: &TestToken) -> Option<serde_json::Value> {
    let out = token
        .p11smime(&["agent", "status", "--json"])
        .output()
        .unwrap();
    out.status
        .success()
        .then(|| serde_json::from_slice(&out.stdout).unwrap())
}

fn rsa_message(token: &TestToken) -> std::path::PathBuf {
    openssl_encrypt(token.dir.path(), SAMPLE, &["-aes256"], &["alice-enc.pem"])
}

/// Decrypts with no PIN source and no terminal: only an agent can make that work.
fn decrypt_without_pin(token: &TestToken, msg: &Path) -> Output {
    token
        .p11smime(&["decrypt", path_str(msg)])
        .output()
        .unwrap()
}

#[test]
fn a_hundred_decryptions_cost_one_login() {
    let token = TestToken::new();
    let log = token.path("spy.log");
    let msg = rsa_message(&token);
    let ec = openssl_encrypt(token.dir.path(), SAMPLE, &["-aes128"], &["alice-ec.pem"]);
    let out = run_ok(&mut spied(
        &token,
        &["agent", "start", "--pin", "env:TEST_PIN"],
        &log,
    ));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("agent started for 'p11smime-test'"),
        "{stderr}"
    );

    for i in 0..100 {
        let input = if i % 10 == 9 { &ec } else { &msg };
        let out = spied(&token, &["decrypt", path_str(input)], &log)
            .output()
            .unwrap();
        assert_plaintext(&out, SAMPLE, &format!("decryption {i} through the agent"));
    }
    let status = status_json(&token).expect("the agent runs");
    assert_eq!(status["requests"], 100);
    assert_eq!(status["token"]["label"], "p11smime-test");
    stop(&token);

    let calls = std::fs::read_to_string(&log).unwrap();
    assert_eq!(
        count_calls(&calls, "C_Login"),
        1,
        "one login for 100 messages"
    );
    // The starter loads the module to read the PIN flags, the agent once: the hundred
    // commands never load it.
    assert_eq!(count_calls(&calls, "C_Initialize"), 2);
    assert_eq!(count_calls(&calls, "C_Logout"), 1, "agent stop logs out");
}

#[test]
fn another_user_is_refused() {
    if !running_as_root() {
        eprintln!("SKIPPED: running a client as another uid needs root");
        return;
    }
    let token = TestToken::new();
    let msg = rsa_message(&token);
    start(&token, &[]);
    let socket = token.agent_socket();
    let meta = std::fs::metadata(&socket).unwrap();
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(meta.permissions().mode() & 0o777, 0o600, "socket mode");
    let dir = socket.parent().unwrap();
    assert_eq!(
        std::fs::metadata(dir).unwrap().permissions().mode() & 0o777,
        0o700,
        "socket directory mode"
    );

    let as_nobody = |token: &TestToken, args: &[&str]| {
        use std::os::unix::process::CommandExt;
        let mut cmd = token.p11smime(args);
        cmd.uid(65534)
            .gid(65534)
            .env("P11SMIME_AGENT_SOCKET", &socket);
        cmd.output().unwrap()
    };
    // As set up, the directory keeps others out before the agent is even asked.
    let out = as_nobody(&token, &["agent", "status"]);
    let err = assert_fails(&out, 6, "status as another user, closed directory");
    assert!(err.contains("ermission denied"), "{err}");

    // Opened up (a careless chmod, a shared directory): the agent itself refuses the uid.
    let open = |p: &Path, mode| std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode));
    for p in token.dir.path().ancestors().take(1).chain([dir]) {
        open(p, 0o755).unwrap();
    }
    open(&socket, 0o777).unwrap();
    std::fs::set_permissions(&msg, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = as_nobody(&token, &["agent", "status"]);
    let err = assert_fails(&out, 6, "status as another user");
    assert!(err.contains("serves only the user who started it"), "{err}");
    let out = as_nobody(&token, &["decrypt", path_str(&msg)]);
    let err = assert_fails(&out, 6, "decrypt as another user");
    assert!(err.contains("serves only the user who started it"), "{err}");
    assert!(out.stdout.is_empty());
    let log = std::fs::read_to_string(dir.join("agent.log")).unwrap();
    assert!(log.contains("refused a connection from uid 65534"), "{log}");
    // The owner is still served.
    assert_plaintext(
        &decrypt_without_pin(&token, &msg),
        SAMPLE,
        "owner after refusals",
    );
    stop(&token);
}

fn running_as_root() -> bool {
    let out = run_ok(Command::new("id").arg("-u"));
    String::from_utf8(out.stdout).unwrap().trim() == "0"
}

#[test]
fn idle_timeout_ends_the_session_and_the_next_command_asks_again() {
    let token = TestToken::new();
    let log = token.path("spy.log");
    let msg = rsa_message(&token);
    run_ok(&mut spied(
        &token,
        &[
            "agent",
            "start",
            "--pin",
            "env:TEST_PIN",
            "--idle-timeout",
            "2s",
        ],
        &log,
    ));
    // Use resets the idle clock.
    for _ in 0..3 {
        std::thread::sleep(Duration::from_millis(800));
        let out = spied(&token, &["decrypt", path_str(&msg)], &log)
            .output()
            .unwrap();
        assert_plaintext(&out, SAMPLE, "while the agent is in use");
    }
    let left = status_json(&token).unwrap()["idle_left_secs"]
        .as_u64()
        .unwrap();
    assert!(left <= 2, "idle time left {left}");
    let started = Instant::now();
    while status_json(&token).is_some() {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the agent outlived its idle timeout"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(!token.agent_socket().exists(), "socket removed");
    let calls = std::fs::read_to_string(&log).unwrap();
    assert_eq!(
        count_calls(&calls, "C_Logout"),
        1,
        "the idle timeout logs out"
    );
    let agent_log = std::fs::read_to_string(token.path("agent").join("agent.log")).unwrap();
    assert!(
        agent_log.contains("session ended: idle timeout"),
        "{agent_log}"
    );

    // No agent: the command opens the token itself and needs the PIN again.
    let out = decrypt_without_pin(&token, &msg);
    assert_fails(&out, 5, "decrypt without a PIN after the idle timeout");
    assert!(out.stdout.is_empty());
    assert_plaintext(&token.decrypt(&msg), SAMPLE, "decrypt with the PIN again");
}

#[test]
fn stop_ends_the_session_and_status_says_so() {
    let token = TestToken::new();
    let msg = rsa_message(&token);
    let out = token.p11smime(&["agent", "status"]).output().unwrap();
    let err = assert_fails(&out, 1, "status with no agent");
    assert!(err.contains("no agent is running"), "{err}");
    start(&token, &["--idle-timeout", "10m"]);
    let out = token.p11smime(&["agent", "status"]).output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("token: 'p11smime-test'"), "{text}");
    assert!(text.contains("idle timeout: 10 min"), "{text}");
    assert!(text.contains("signing PIN cached: no"), "{text}");
    // A second start finds it running and leaves it be.
    let again = start(&token, &[]);
    assert!(String::from_utf8_lossy(&again.stderr).contains("agent started"));
    assert_eq!(
        status_json(&token).unwrap()["pid"],
        serde_json::from_slice::<serde_json::Value>(
            &token
                .p11smime(&["agent", "status", "--json"])
                .output()
                .unwrap()
                .stdout
        )
        .unwrap()["pid"]
    );
    assert_plaintext(
        &decrypt_without_pin(&token, &msg),
        SAMPLE,
        "through the agent",
    );

    let out = token.p11smime(&["agent", "stop"]).output().unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("agent stopped"));
    assert!(
        !token.agent_socket().exists(),
        "socket removed by the time stop returns"
    );
    assert_fails(
        &token.p11smime(&["agent", "status"]).output().unwrap(),
        1,
        "status after stop",
    );
    assert_fails(&decrypt_without_pin(&token, &msg), 5, "decrypt after stop");
    // Stopping what is not running is fine (scripts call it unconditionally).
    let out = token.p11smime(&["agent", "stop"]).output().unwrap();
    assert!(out.status.success());
}

#[test]
fn agent_auto_starts_one_and_no_agent_bypasses_it() {
    let token = TestToken::new();
    let msg = rsa_message(&token);
    let out = token
        .p11smime(&[
            "decrypt",
            "--agent",
            "auto",
            "--pin",
            "env:TEST_PIN",
            path_str(&msg),
        ])
        .output()
        .unwrap();
    assert_plaintext(&out, SAMPLE, "first decrypt with --agent auto");
    assert!(
        status_json(&token).is_some(),
        "--agent auto left an agent running"
    );
    // The next commands need no PIN...
    assert_plaintext(&decrypt_without_pin(&token, &msg), SAMPLE, "second decrypt");
    // ...unless they are told to leave the agent alone.
    let out = token
        .p11smime(&["decrypt", "--no-agent", path_str(&msg)])
        .output()
        .unwrap();
    assert_fails(&out, 5, "--no-agent without a PIN");
    let out = token
        .p11smime(&["decrypt", path_str(&msg)])
        .env("P11SMIME_AGENT", "off")
        .output()
        .unwrap();
    assert_fails(&out, 5, "P11SMIME_AGENT=off without a PIN");
    // A batch goes through it too.
    let out_dir = token.path("out");
    run_ok(&mut token.p11smime(&["decrypt", "--out-dir", path_str(&out_dir), path_str(&msg)]));
    stop(&token);
}

#[test]
fn a_wrong_pin_at_start_is_one_login_and_no_agent() {
    let token = TestToken::new();
    let log = token.path("spy.log");
    let out = spied(&token, &["agent", "start", "--pin", "env:BAD"], &log)
        .env("BAD", "999999")
        .output()
        .unwrap();
    let err = assert_fails(&out, 5, "agent start with a wrong PIN");
    assert!(err.contains("PIN incorrect"), "{err}");
    assert!(err.contains("was not retried"), "{err}");
    let calls = std::fs::read_to_string(&log).unwrap();
    assert_eq!(count_calls(&calls, "C_Login"), 1);
    assert!(status_json(&token).is_none());
    assert!(!token.agent_socket().exists());
}

#[test]
fn signing_keys_that_want_the_pin_each_time_still_ask() {
    let token = TestToken::new();
    let entity = token.write("entity.txt", SAMPLE);
    start(&token, &[]);
    // CKA_ALWAYS_AUTHENTICATE: the agent holds the session, not the PIN.
    let out = token
        .p11smime(&["sign", path_str(&entity)])
        .output()
        .unwrap();
    let err = assert_fails(&out, 5, "signing without a PIN through the agent");
    assert!(err.contains("PIN is needed"), "{err}");
    let signed = token.path("signed.eml");
    run_ok(&mut token.p11smime(&[
        "sign",
        "--pin",
        "env:TEST_PIN",
        "-o",
        path_str(&signed),
        path_str(&entity),
    ]));
    verify_with_openssl(&signed);
    let out = token
        .p11smime(&["sign", "--pin", "env:WRONG", path_str(&entity)])
        .env("WRONG", "000000")
        .output()
        .unwrap();
    assert_fails(&out, 5, "signing with a wrong PIN through the agent");
    assert!(out.stdout.is_empty());
    stop(&token);

    // With --cache-signing-pin the agent keeps it for the session.
    start(&token, &["--cache-signing-pin"]);
    assert_eq!(status_json(&token).unwrap()["cache_signing_pin"], true);
    run_ok(&mut token.p11smime(&["sign", "-o", path_str(&signed), path_str(&entity)]));
    verify_with_openssl(&signed);
    stop(&token);
}

fn verify_with_openssl(signed: &Path) {
    run_ok(
        Command::new("openssl")
            .args(["smime", "-verify", "-CAfile"])
            .arg(fixture("ca.pem"))
            .arg("-in")
            .arg(signed)
            .args(["-out", "/dev/null"]),
    );
}

/// Writes raw bytes to the agent and reads one answer frame: (kind, first field).
fn raw_exchange(socket: &Path, bytes: &[u8]) -> Option<(u8, Vec<u8>)> {
    let mut s = UnixStream::connect(socket).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let _ = s.write_all(bytes);
    let mut len = [0u8; 4];
    s.read_exact(&mut len).ok()?;
    let mut body = vec![0u8; u32::from_be_bytes(len) as usize];
    s.read_exact(&mut body).ok()?;
    let first = if body.len() >= 6 {
        let n = u32::from_be_bytes(body[2..6].try_into().unwrap()) as usize;
        body[6..6 + n].to_vec()
    } else {
        Vec::new()
    };
    Some((body[1], first))
}

fn frame(version: u8, kind: u8, fields: &[&[u8]]) -> Vec<u8> {
    let mut body = vec![version, kind];
    for f in fields {
        body.extend_from_slice(&(f.len() as u32).to_be_bytes());
        body.extend_from_slice(f);
    }
    let mut out = (body.len() as u32).to_be_bytes().to_vec();
    out.extend_from_slice(&body);
    out
}

#[test]
fn hostile_requests_get_an_error_never_a_key_operation() {
    let token = TestToken::new();
    let log = token.path("spy.log");
    let msg = rsa_message(&token);
    let out = spied(&token, &["agent", "start", "--pin", "env:TEST_PIN"], &log)
        .output()
        .unwrap();
    assert!(out.status.success());
    let socket = token.agent_socket();
    const ERROR: u8 = 0x81;
    let bad_request = 4u8;
    // Another protocol version.
    let (kind, code) = raw_exchange(&socket, &frame(9, 1, &[])).unwrap();
    assert_eq!((kind, code), (ERROR, vec![5]));
    // A frame claiming 4 GiB.
    let (kind, code) = raw_exchange(&socket, &[0xff, 0xff, 0xff, 0xff, 1, 1]).unwrap();
    assert_eq!((kind, code), (ERROR, vec![bad_request]));
    // A field longer than its frame.
    let (kind, code) = raw_exchange(&socket, &[0, 0, 0, 7, 1, 3, 0, 0, 0, 200, 1]).unwrap();
    assert_eq!((kind, code), (ERROR, vec![bad_request]));
    // An unknown request, and a decrypt request with its fields missing.
    assert_eq!(
        raw_exchange(&socket, &frame(1, 0x42, &[])).unwrap().1,
        vec![bad_request]
    );
    assert_eq!(
        raw_exchange(&socket, &frame(1, 3, &[b"\x02"])).unwrap().1,
        vec![bad_request]
    );
    // A sign request over arbitrary data (a TLS handshake hash, say), not CMS signed
    // attributes: refused before the token is asked.
    let sign = frame(
        1,
        4,
        &[b"\x01", b"rsa-pkcs1", b"sha256", &[0x42; 32], b"", &[0]],
    );
    assert_eq!(raw_exchange(&socket, &sign).unwrap().1, vec![bad_request]);
    // Half a frame, then hang up.
    drop(raw_exchange(&socket, &[0, 0, 0, 50, 1]));
    // Still serving, and none of that reached the token.
    let out = spied(&token, &["decrypt", path_str(&msg)], &log)
        .output()
        .unwrap();
    assert_plaintext(&out, SAMPLE, "after hostile requests");
    stop(&token);
    let calls = std::fs::read_to_string(&log).unwrap();
    assert_eq!(count_calls(&calls, "C_SignInit"), 0);
    assert_eq!(
        count_calls(&calls, "C_DecryptInit"),
        1,
        "only the real decryption"
    );
}

/// The agent's commands through the fault-injecting module over SoftHSM2, with `plan`.
fn faulty(token: &TestToken, args: &[&str], plan: &Path) -> Output {
    fault::fault_env(&mut token.p11smime(args), plan)
        .output()
        .unwrap()
}

fn wait_until_gone(token: &TestToken) {
    let started = Instant::now();
    while status_json(token).is_some() {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the agent is still running"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A token behind the fault module with no fault planned yet, an agent serving it, and a
/// message it has just decrypted: (token, message, plan).
fn agent_over_faults() -> (TestToken, std::path::PathBuf, std::path::PathBuf) {
    let token = TestToken::new();
    let msg = rsa_message(&token);
    let plan = fault::write_plan(&token, "");
    let out = faulty(&token, &["agent", "start", "--pin", "env:TEST_PIN"], &plan);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_plaintext(
        &faulty(&token, &["decrypt", path_str(&msg)], &plan),
        SAMPLE,
        "before",
    );
    (token, msg, plan)
}

#[test]
fn a_card_pulled_out_ends_the_session_and_the_next_command_logs_in_again() {
    let (token, msg, plan) = agent_over_faults();

    // The card is pulled out while the agent idles: it notices by itself and ends.
    fault::write_plan(&token, "removed");
    wait_until_gone(&token);
    let agent_log = std::fs::read_to_string(token.path("agent").join("agent.log")).unwrap();
    assert!(
        agent_log.contains("session ended: token error"),
        "{agent_log}"
    );
    assert!(!token.agent_socket().exists());

    // Back in: the next command needs the PIN again, and logs in anew.
    fault::write_plan(&token, "");
    let out = faulty(&token, &["decrypt", path_str(&msg)], &plan);
    assert_fails(&out, 5, "decrypt without a PIN after the session ended");
    let args = [
        "decrypt",
        "--agent",
        "auto",
        "--pin",
        "env:TEST_PIN",
        path_str(&msg),
    ];
    assert_plaintext(&faulty(&token, &args, &plan), SAMPLE, "after reinsertion");
    assert!(status_json(&token).is_some(), "a new agent");
    assert_eq!(fault::calls(&fault::read_log(&token), "C_Login"), 2);
    stop(&token);
}

#[test]
fn a_token_error_during_a_request_ends_the_session() {
    let (token, msg, plan) = agent_over_faults();

    // The card was reset by another program: the next operation fails with a session error.
    fault::write_plan(&token, "fail C_Decrypt CKR_USER_NOT_LOGGED_IN");
    let out = faulty(&token, &["decrypt", path_str(&msg)], &plan);
    let err = assert_fails(&out, 6, "decrypt when the token fails");
    assert!(err.contains("session ended"), "{err}");
    assert!(out.stdout.is_empty());
    wait_until_gone(&token);

    fault::write_plan(&token, "");
    assert_fails(
        &faulty(&token, &["decrypt", path_str(&msg)], &plan),
        5,
        "the next command asks for the PIN",
    );
    let args = ["decrypt", "--pin", "env:TEST_PIN", path_str(&msg)];
    assert_plaintext(&faulty(&token, &args, &plan), SAMPLE, "with the PIN again");
}

#[cfg(target_os = "linux")]
#[test]
fn logging_out_ends_the_session() {
    // systemd-logind removes $XDG_RUNTIME_DIR when the user's last session ends; the agent
    // sees its socket gone and logs out.
    let token = TestToken::new();
    let log = token.path("spy.log");
    run_ok(&mut spied(
        &token,
        &["agent", "start", "--pin", "env:TEST_PIN"],
        &log,
    ));
    let pid = status_json(&token).unwrap()["pid"].as_u64().unwrap();
    std::fs::remove_dir_all(token.agent_socket().parent().unwrap()).unwrap();
    let started = Instant::now();
    while Path::new(&format!("/proc/{pid}/status")).exists()
        && !std::fs::read_to_string(format!("/proc/{pid}/status"))
            .unwrap_or_default()
            .contains("zombie")
    {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the agent outlived the logout"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let calls = std::fs::read_to_string(&log).unwrap();
    assert_eq!(count_calls(&calls, "C_Logout"), 1, "logged out");
}
