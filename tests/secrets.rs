//! Secrets stay secret (issue 8, item 3): the PIN, a wrong PIN and the content-encryption key
//! never appear on any output channel (stdout, stderr, `--verbose`, `--json`, the agent's log,
//! error paths); `--pin` never takes the PIN itself; and a decryption stopped by a signal
//! (Ctrl-C, `kill`) leaves neither its output nor its temporary `.p11smime-*.part` file behind.
//!
//! The token's PIN is changed to a distinctive one first, so a match cannot be a coincidence;
//! the content keys are recovered independently with `openssl pkeyutl` and the test-only copy of
//! the token's key in `softhsm-fixtures/`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use common::fault;
use common::*;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The token's PIN for these tests, and a wrong one passed on purpose.
const PIN_HERE: &str = "80417352";
const WRONG_PIN: &str = "26937148";

/// A fresh token whose user PIN is [`PIN_HERE`].
fn token_with_distinct_pin() -> TestToken {
    let token = TestToken::new();
    run_ok(
        Command::new(require("pkcs11-tool", "opensc"))
            .arg("--module")
            .arg(softhsm_module())
            .args(["--token-label", "p11smime-test", "--login", "--pin", PIN])
            .args(["--change-pin", "--new-pin", PIN_HERE])
            .env("SOFTHSM2_CONF", &token.conf),
    );
    token
}

/// `p11smime ARGS` with the distinctive PIN in `TEST_PIN` and the wrong one in `WRONG_PIN`.
fn p11(token: &TestToken, args: &[&str]) -> Command {
    let mut cmd = token.p11smime(args);
    cmd.env("TEST_PIN", PIN_HERE).env("WRONG_PIN", WRONG_PIN);
    cmd
}

/// The encryptedKey of the message's first KeyTransRecipientInfo: the first 256-byte OCTET
/// STRING in the DER (the fixture keys are RSA-2048; the content comes after the recipients).
fn encrypted_key(der: &[u8]) -> Vec<u8> {
    let at = find(der, &[0x04, 0x82, 0x01, 0x00], 0).expect("a 256-byte encryptedKey");
    der[at + 4..at + 4 + 256].to_vec()
}

/// The content-encryption key of `msg`, decrypted by openssl with the fixture key.
fn content_key(token: &TestToken, msg: &Path, oaep: bool) -> Vec<u8> {
    let ek = token.write("ek.bin", &encrypted_key(&std::fs::read(msg).unwrap()));
    let cek_path = token.path("cek.bin");
    let mut cmd = Command::new("openssl");
    cmd.args(["pkeyutl", "-decrypt", "-inkey"])
        .arg(fixture("alice-enc.key.pem"))
        .arg("-in")
        .arg(&ek)
        .arg("-out")
        .arg(&cek_path);
    if oaep {
        cmd.args(["-pkeyopt", "rsa_padding_mode:oaep"]);
    }
    run_ok(&mut cmd);
    let cek = std::fs::read(&cek_path).unwrap();
    assert!([16, 24, 32].contains(&cek.len()), "a CEK: {cek:?}");
    cek
}

/// Everything a run showed: stdout and stderr.
fn channels(out: &Output) -> Vec<u8> {
    let mut all = out.stdout.clone();
    all.extend_from_slice(&out.stderr);
    all
}

/// What must never show: both PINs, and every content key in hex (either case) and raw.
struct Secrets {
    needles: Vec<(String, Vec<u8>)>,
}

impl Secrets {
    fn new(ceks: &[Vec<u8>]) -> Self {
        let mut needles = vec![
            ("the PIN".to_string(), PIN_HERE.as_bytes().to_vec()),
            ("the wrong PIN".to_string(), WRONG_PIN.as_bytes().to_vec()),
        ];
        for (i, cek) in ceks.iter().enumerate() {
            needles.push((format!("CEK {i} (raw)"), cek.clone()));
            needles.push((format!("CEK {i} (hex)"), hex::encode(cek).into_bytes()));
            needles.push((
                format!("CEK {i} (HEX)"),
                hex::encode_upper(cek).into_bytes(),
            ));
        }
        Secrets { needles }
    }

    fn assert_absent(&self, what: &str, text: &[u8]) {
        for (name, needle) in &self.needles {
            assert!(
                !contains(text, needle),
                "{name} appears in {what}: {}",
                String::from_utf8_lossy(text)
            );
        }
    }
}

#[test]
fn no_pin_and_no_content_key_on_any_channel() {
    let token = token_with_distinct_pin();
    let dir = token.dir.path();
    let cbc = openssl_encrypt(
        dir,
        SAMPLE,
        &["-aes256", "-outform", "DER"],
        &["alice-enc.pem"],
    );
    let gcm = openssl_encrypt(
        dir,
        SAMPLE,
        &["-aes-256-gcm", "-outform", "DER"],
        &["alice-enc.pem"],
    );
    let enc = fixture("alice-enc.pem");
    let oaep = openssl_encrypt(
        dir,
        SAMPLE,
        &[
            "-aes128",
            "-recip",
            path_str(&enc),
            "-keyopt",
            "rsa_padding_mode:oaep",
            "-outform",
            "DER",
        ],
        &[],
    );
    let ceks = [
        content_key(&token, &cbc, false),
        content_key(&token, &gcm, false),
        content_key(&token, &oaep, true),
    ];
    let secrets = Secrets::new(&ceks);
    let batch_in = token.path("batch-in");
    std::fs::create_dir(&batch_in).unwrap();
    for m in [&cbc, &gcm, &oaep] {
        std::fs::copy(m, batch_in.join(m.file_name().unwrap())).unwrap();
    }
    let entity = token.write("entity.txt", SAMPLE);
    let json_out = token.path("json-out.eml");
    let s = path_str;

    let mut runs: Vec<(String, Vec<&str>)> = Vec::new();
    for m in [&cbc, &gcm, &oaep] {
        runs.push((
            format!("decrypt -v {}", m.display()),
            vec!["decrypt", "-v", "--pin", "env:TEST_PIN", s(m)],
        ));
        runs.push((
            format!("decrypt -v --json {}", m.display()),
            vec![
                "decrypt",
                "-v",
                "--json",
                "--pin",
                "env:TEST_PIN",
                "-o",
                s(&json_out),
                s(m),
            ],
        ));
    }
    let batch_out = token.path("batch-out");
    runs.extend([
        (
            "decrypt with a wrong PIN".to_string(),
            vec!["decrypt", "-v", "--pin", "env:WRONG_PIN", s(&cbc)],
        ),
        (
            "batch -v --json".to_string(),
            vec![
                "decrypt",
                "-v",
                "--json",
                "--pin",
                "env:TEST_PIN",
                "--out-dir",
                s(&batch_out),
                s(&batch_in),
            ],
        ),
        (
            "batch with a wrong PIN".to_string(),
            vec![
                "decrypt",
                "-v",
                "--json",
                "--pin",
                "env:WRONG_PIN",
                "--out-dir",
                s(&batch_out),
                s(&batch_in),
            ],
        ),
        (
            "sign -v".to_string(),
            vec!["sign", "-v", "--pin", "env:TEST_PIN", s(&entity)],
        ),
        (
            "certs -v --json".to_string(),
            vec!["certs", "-v", "--json", "--pin", "env:TEST_PIN"],
        ),
        (
            "doctor -v --json".to_string(),
            vec!["doctor", "-v", "--json", "--pin", "env:TEST_PIN"],
        ),
        (
            "doctor with a wrong PIN".to_string(),
            vec!["doctor", "-v", "--pin", "env:WRONG_PIN"],
        ),
        (
            "inspect --json".to_string(),
            vec!["inspect", "--json", s(&cbc)],
        ),
    ]);
    for (what, args) in &runs {
        let out = p11(&token, args).output().unwrap();
        secrets.assert_absent(what, &channels(&out));
    }
    // The runs above did work (a test of silence must not pass by failing early).
    let out = p11(&token, &["decrypt", "-v", "--pin", "env:TEST_PIN", s(&gcm)])
        .output()
        .unwrap();
    assert_plaintext(&out, SAMPLE, "GCM with the distinctive PIN");

    // Through the session agent: its start (wrong PIN, then right), the decryptions it serves,
    // its status, its stop, and its log.
    let agent_log = token.agent_socket().with_file_name("agent.log");
    let out = p11(&token, &["agent", "start", "-v", "--pin", "env:WRONG_PIN"])
        .output()
        .unwrap();
    assert_fails(&out, 5, "agent start with a wrong PIN");
    secrets.assert_absent("agent start with a wrong PIN", &channels(&out));
    secrets.assert_absent("agent.log after a wrong PIN", &read(&agent_log));
    let out = p11(
        &token,
        &[
            "agent",
            "start",
            "-v",
            "--idle-timeout",
            "60s",
            "--pin",
            "env:TEST_PIN",
        ],
    )
    .output()
    .unwrap();
    assert!(out.status.success(), "{}", report(&out));
    secrets.assert_absent("agent start", &channels(&out));
    for m in [&cbc, &gcm, &oaep] {
        let out = p11(
            &token,
            &["decrypt", "-v", "--json", "-o", s(&json_out), s(m)],
        )
        .output()
        .unwrap();
        assert!(out.status.success(), "{}", report(&out));
        secrets.assert_absent("decrypt through the agent", &channels(&out));
    }
    let out = p11(&token, &["agent", "status", "--json"])
        .output()
        .unwrap();
    secrets.assert_absent("agent status", &channels(&out));
    let out = p11(&token, &["agent", "stop"]).output().unwrap();
    secrets.assert_absent("agent stop", &channels(&out));
    let log = read(&agent_log);
    assert!(!log.is_empty(), "the agent wrote no log");
    secrets.assert_absent("agent.log", &log);
}

fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_default()
}

/// `--pin` with the PIN itself is a usage error that does not repeat it, in every command that
/// takes `--pin` (tests/cli.rs checks `decrypt`).
#[test]
fn the_pin_as_an_argument_is_refused_without_an_echo() {
    let token = token_with_distinct_pin();
    let entity = token.write("entity.txt", SAMPLE);
    let pin_eq = format!("--pin={PIN_HERE}");
    for args in [
        vec!["sign", "--pin", PIN_HERE, path_str(&entity)],
        vec!["certs", pin_eq.as_str()],
        vec!["doctor", "--pin", PIN_HERE],
        vec!["agent", "start", "--pin", PIN_HERE],
        vec!["decrypt", "--pin", "pin:80417352", path_str(&entity)],
    ] {
        let out = p11(&token, &args).output().unwrap();
        let stderr = assert_fails(&out, 2, &format!("{args:?}"));
        assert!(!contains(&channels(&out), PIN_HERE.as_bytes()), "{stderr}");
        assert!(stderr.contains("not the PIN"), "{stderr}");
    }
}

/// The `.p11smime-*.part` files in `dir`.
fn parts(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(".part"))
        .collect()
}

fn signal(pid: u32, name: &str) {
    run_ok(
        Command::new("kill")
            .arg(format!("-{name}"))
            .arg(pid.to_string()),
    );
}

/// Waits until `ready()` holds, or fails the test after a minute.
fn wait_for(what: &str, mut ready: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !ready() {
        assert!(Instant::now() < deadline, "{what}: not in time");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// The process ended by `signo` (as the shell's $? it is 128 + signo).
fn assert_killed_by(out: &Output, signo: i32) {
    let ended = out.status.signal().or(out.status.code().map(|c| c - 128));
    assert_eq!(ended, Some(signo), "{}", report(out));
}

/// Ctrl-C while `decrypt -o` waits on the token (a slow C_Decrypt): the temporary file that
/// was already created goes, and no output appears.
#[test]
fn ctrl_c_mid_decrypt_leaves_no_output_and_no_part_file() {
    let token = TestToken::new();
    let msg = openssl_encrypt(
        token.dir.path(),
        SAMPLE,
        &["-aes256", "-outform", "DER"],
        &["alice-enc.pem"],
    );
    let dir = token.path("out");
    std::fs::create_dir(&dir).unwrap();
    let target = dir.join("plain.eml");
    let _ = std::fs::remove_file(fault::log_path(&token));
    let plan = fault::write_plan(&token, "slow C_Decrypt 2000");
    let args = [
        "decrypt",
        "--pin",
        "env:TEST_PIN",
        "-o",
        path_str(&target),
        path_str(&msg),
    ];
    let child = fault::fault_env(&mut token.p11smime(&args), &plan)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for("C_DecryptInit", || {
        fault::read_log(&token).contains("C_DecryptInit CKR_OK")
    });
    assert_eq!(parts(&dir).len(), 1, "the temporary file exists mid-run");
    signal(child.id(), "INT");
    let out = child.wait_with_output().unwrap();
    assert_killed_by(&out, 2);
    assert!(parts(&dir).is_empty(), "{:?}", parts(&dir));
    assert!(!target.exists());
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0);
}

/// SIGTERM while a large message is being written: the half-written plaintext goes.
#[test]
fn sigterm_mid_write_removes_the_half_written_file() {
    let token = TestToken::new();
    let content = varied_bytes(60 << 20);
    let msg = openssl_encrypt(
        token.dir.path(),
        &content,
        &["-aes256", "-outform", "DER"],
        &["alice-enc.pem"],
    );
    drop(content);
    let dir = token.path("out");
    std::fs::create_dir(&dir).unwrap();
    let target = dir.join("big.bin");
    let child = token
        .p11smime(&[
            "decrypt",
            "--pin",
            "env:TEST_PIN",
            "-o",
            path_str(&target),
            path_str(&msg),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut partial = 0;
    wait_for("plaintext in the temporary file", || {
        partial = parts(&dir)
            .first()
            .and_then(|p| std::fs::metadata(p).ok())
            .map_or(0, |m| m.len());
        partial > 0 || target.exists()
    });
    assert!(
        !target.exists(),
        "the decryption finished before the signal; make the message larger"
    );
    signal(child.id(), "TERM");
    let out = child.wait_with_output().unwrap();
    assert_killed_by(&out, 15);
    assert!(partial > 0);
    assert!(parts(&dir).is_empty(), "{:?}", parts(&dir));
    assert!(!target.exists());
}

/// Ctrl-C mid-batch: what was finished stays, whole; nothing half-written is left.
#[test]
fn ctrl_c_mid_batch_keeps_finished_files_and_no_part_files() {
    let token = TestToken::new();
    let input = token.path("in");
    std::fs::create_dir(&input).unwrap();
    let bodies: Vec<Vec<u8>> = (0..12)
        .map(|n| format!("Content-Type: text/plain\r\n\r\nBatch body {n:02}.\r\n").into_bytes())
        .collect();
    for (n, body) in bodies.iter().enumerate() {
        let msg = openssl_encrypt(
            token.dir.path(),
            body,
            &["-aes256", "-outform", "DER"],
            &["alice-enc.pem"],
        );
        std::fs::rename(msg, input.join(format!("m{n:02}.p7m"))).unwrap();
    }
    let out_dir = token.path("out");
    let _ = std::fs::remove_file(fault::log_path(&token));
    let plan = fault::write_plan(&token, "slow C_Decrypt 300");
    let args = [
        "decrypt",
        "--pin",
        "env:TEST_PIN",
        "--out-dir",
        path_str(&out_dir),
        path_str(&input),
    ];
    let child = fault::fault_env(&mut token.p11smime(&args), &plan)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for("two results", || {
        std::fs::read_dir(&out_dir).is_ok_and(|d| {
            d.filter_map(Result::ok)
                .filter(|e| e.file_name().to_string_lossy().ends_with(".p7m"))
                .count()
                >= 2
        })
    });
    signal(child.id(), "INT");
    let out = child.wait_with_output().unwrap();
    assert_killed_by(&out, 2);
    assert!(parts(&out_dir).is_empty(), "{:?}", parts(&out_dir));
    let done: Vec<PathBuf> = std::fs::read_dir(&out_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert!((2..12).contains(&done.len()), "stopped mid-way: {done:?}");
    for path in done {
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        let n: usize = name[1..3].parse().unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), bodies[n], "{name} is whole");
    }
}
