//! What a user or a script sees from the CLI: listings, exit codes, error messages, PIN safety
//! (counted with OpenSC's pkcs11-spy in front of SoftHSM2), and output-file safety.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use common::*;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Runs a bash script with this token's environment; `$P11SMIME` is the binary.
fn shell(token: &TestToken, script: &str) -> std::process::Output {
    Command::new("bash")
        .arg("-c")
        .arg(script)
        .env("P11SMIME", env!("CARGO_BIN_EXE_p11smime"))
        .env("SOFTHSM2_CONF", &token.conf)
        .env("P11SMIME_MODULE", softhsm_module())
        .env("TEST_PIN", PIN)
        .env_remove("P11SMIME_TOKEN")
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap()
}

fn message_for(token: &TestToken, recips: &[&str], opts: &[&str]) -> PathBuf {
    openssl_encrypt(token.dir.path(), SAMPLE, opts, recips)
}

fn aes_der(token: &TestToken) -> PathBuf {
    message_for(token, &["alice-enc.pem"], &["-aes256", "-outform", "DER"])
}

#[test]
fn tokens_lists_the_token_and_skips_nothing() {
    let token = TestToken::new();
    let out = run_ok(&mut token.p11smime(&["tokens", "--json"]));
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let list = list.as_array().unwrap();
    let ours: Vec<_> = list.iter().filter(|t| t["initialized"] == true).collect();
    assert_eq!(ours.len(), 1, "{list:?}");
    assert_eq!(ours[0]["label"], "p11smime-test");
    assert_eq!(ours[0]["login_required"], true);
    assert_eq!(ours[0]["pin_locked"], false);
    // SoftHSM2's spare uninitialised slot is listed, marked as such.
    assert!(list.iter().any(|t| t["initialized"] == false));
    let text = run_ok(&mut token.p11smime(&["tokens"])).stdout;
    let text = String::from_utf8(text).unwrap();
    assert!(text.contains("label:        p11smime-test"), "{text}");
}

#[test]
fn certs_shows_every_certificate_paired_by_id() {
    let token = TestToken::new();
    let out = run_ok(&mut token.p11smime(&["certs", "--json"]));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let certs = v[0]["certificates"].as_array().unwrap();
    assert_eq!(certs.len(), 6, "{certs:?}");
    let by_id = |id: &str| certs.iter().find(|c| c["id"] == id).unwrap().clone();
    let enc = by_id("02");
    assert_eq!(enc["label"], "Alice Key Management Certificate");
    assert_eq!(enc["emails"][0], "alice@example.test");
    assert!(
        enc["key_usage"]
            .as_array()
            .unwrap()
            .contains(&"keyEncipherment".into())
    );
    assert_eq!(enc["extended_key_usage"][0], "emailProtection");
    assert_eq!(enc["expired"], false);
    // SoftHSM2 hides private keys until login: unknown, not "absent".
    assert!(enc["has_private_key"].is_null());
    let retired = by_id("03");
    assert_eq!(retired["expired"], true);
    assert_eq!(retired["not_after"], "2021-01-01T00:00:00Z");
    assert!(
        by_id("01")["key_usage"]
            .as_array()
            .unwrap()
            .contains(&"digitalSignature".into())
    );

    // With a PIN the keys become visible and pair with their certificates by CKA_ID even
    // though their labels differ.
    let out = run_ok(&mut token.p11smime(&["certs", "--json", "--pin", "env:TEST_PIN"]));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    for c in v[0]["certificates"].as_array().unwrap() {
        assert_eq!(c["has_private_key"], true, "{c}");
        assert_ne!(c["key_label"], c["label"]);
    }
}

#[test]
fn a_message_for_someone_else_costs_no_pin_attempt() {
    let token = TestToken::new();
    let msg = message_for(&token, &["bob-enc.pem"], &["-aes256", "-outform", "DER"]);
    let (out, logins) = with_spy(
        &token,
        &["decrypt", "--pin", "env:TEST_PIN", path_str(&msg)],
    );
    let stderr = assert_fails(&out, 4, "message for bob");
    assert_eq!(
        logins, 0,
        "no C_Login may happen for a message that is not ours"
    );
    assert!(out.stdout.is_empty());
    assert!(
        stderr.contains("Bob") || stderr.contains("serial"),
        "{stderr}"
    );
    assert!(stderr.contains("the token holds"), "{stderr}");
}

#[test]
fn a_wrong_pin_is_one_attempt_never_retried() {
    let token = TestToken::new();
    let msg = aes_der(&token);
    let (out, logins) = with_spy(
        &token,
        &["decrypt", "--pin", "env:WRONG_PIN", path_str(&msg)],
    );
    // The spy run above had no WRONG_PIN: that is a PIN problem before any login.
    assert_fails(&out, 5, "PIN variable missing");
    assert_eq!(logins, 0);

    let log = token.path("spy.log");
    let out = token
        .p11smime(&["decrypt", "--pin", "env:WRONG_PIN", path_str(&msg)])
        .env("WRONG_PIN", "999999")
        .env("P11SMIME_MODULE", spy_module())
        .env("PKCS11SPY", softhsm_module())
        .env("PKCS11SPY_OUTPUT", &log)
        .output()
        .unwrap();
    let stderr = assert_fails(&out, 5, "wrong PIN");
    let spy = std::fs::read_to_string(&log).unwrap();
    assert_eq!(spy.lines().filter(|l| l.contains("C_Login")).count(), 1);
    assert!(stderr.contains("PIN incorrect"), "{stderr}");
    assert!(stderr.contains("not retried"), "{stderr}");
    assert!(!stderr.contains("999999"), "the PIN must never be printed");
    assert!(out.stdout.is_empty());

    // The right PIN still works afterwards; the low count is reported as a warning.
    let out = token.decrypt(&msg);
    assert_plaintext(&out, SAMPLE, "after a wrong PIN");
    assert!(String::from_utf8_lossy(&out.stderr).contains("COUNT_LOW"));
}

#[test]
fn pin_sources_file_fd_and_none_without_a_terminal() {
    let token = TestToken::new();
    let msg = aes_der(&token);
    let pin_file = token.path("pin");
    std::fs::write(&pin_file, format!("{PIN}\n")).unwrap();
    let file_arg = format!("file:{}", path_str(&pin_file));
    let out = token
        .p11smime(&["decrypt", "--pin", &file_arg, path_str(&msg)])
        .output()
        .unwrap();
    assert_plaintext(&out, SAMPLE, "--pin file:");

    // fd:0 as mutt passes it: the PIN on stdin, the message in a file.
    let out = token
        .p11smime(&["decrypt", "--pin", "fd:0", path_str(&msg)])
        .stdin(std::fs::File::open(&pin_file).unwrap())
        .output()
        .unwrap();
    assert_plaintext(&out, SAMPLE, "--pin fd:0");

    // Another inherited descriptor, through a shell redirection.
    let script = format!(
        "\"$P11SMIME\" decrypt --pin fd:3 '{}' 3<'{}'",
        path_str(&msg),
        path_str(&pin_file)
    );
    assert_plaintext(&shell(&token, &script), SAMPLE, "--pin fd:3");

    // No --pin and no terminal (setsid drops the controlling terminal): a clear error, no hang.
    let script = format!("setsid -w \"$P11SMIME\" decrypt '{}'", path_str(&msg));
    let out = shell(&token, &script);
    let stderr = assert_fails(&out, 5, "no PIN source");
    assert!(stderr.contains("--pin"), "{stderr}");
}

#[test]
fn the_pin_is_never_an_argument_and_never_echoed() {
    let token = TestToken::new();
    let msg = aes_der(&token);
    let out = token
        .p11smime(&["decrypt", "--pin", PIN, path_str(&msg)])
        .output()
        .unwrap();
    let stderr = assert_fails(&out, 2, "--pin with the PIN itself");
    assert!(!stderr.contains(PIN), "{stderr}");
}

#[test]
fn output_file_is_0600_and_appears_only_on_success() {
    let token = TestToken::new();
    let msg = aes_der(&token);
    let before = std::fs::read(&msg).unwrap();
    let outdir = token.path("out");
    std::fs::create_dir(&outdir).unwrap();
    let target = outdir.join("plain.eml");
    let out = token
        .p11smime(&[
            "decrypt",
            "--pin",
            "env:TEST_PIN",
            "-o",
            path_str(&target),
            path_str(&msg),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.stdout.is_empty());
    assert_eq!(std::fs::read(&target).unwrap(), SAMPLE);
    let mode = std::fs::metadata(&target).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    assert_eq!(
        std::fs::read(&msg).unwrap(),
        before,
        "the input must not change"
    );

    // A damaged message: nothing at all is left in the output directory.
    let broken = token.path("broken.p7m");
    let mut bytes = before.clone();
    let n = bytes.len();
    bytes[n - 17] ^= 0x80; // the padding byte of the last block becomes invalid
    std::fs::write(&broken, &bytes).unwrap();
    let target2 = outdir.join("broken.eml");
    let out = token
        .p11smime(&[
            "decrypt",
            "--pin",
            "env:TEST_PIN",
            "-o",
            path_str(&target2),
            path_str(&broken),
        ])
        .output()
        .unwrap();
    assert_fails(&out, 3, "bad CBC padding with -o");
    let left: Vec<_> = std::fs::read_dir(&outdir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(left, vec![std::ffi::OsString::from("plain.eml")]);

    // -o naming the input is refused before anything is written.
    let out = token
        .p11smime(&[
            "decrypt",
            "--pin",
            "env:TEST_PIN",
            "-o",
            path_str(&msg),
            path_str(&msg),
        ])
        .output()
        .unwrap();
    assert_fails(&out, 2, "-o is the input");
    assert_eq!(std::fs::read(&msg).unwrap(), before);
}

fn flip(path: &Path, offset_from_end: usize, mask: u8) -> PathBuf {
    let mut bytes = std::fs::read(path).unwrap();
    let n = bytes.len();
    bytes[n - offset_from_end] ^= mask;
    let out = path.with_extension("flipped");
    std::fs::write(&out, bytes).unwrap();
    out
}

#[test]
fn damaged_messages_fail_cleanly_with_exit_3() {
    let token = TestToken::new();
    // GCM: the tag is the last element of non-streamed DER; flip its last byte.
    let gcm = message_for(
        &token,
        &["alice-enc.pem"],
        &["-aes-256-gcm", "-outform", "DER"],
    );
    let out = token.decrypt(&flip(&gcm, 1, 0x01));
    let stderr = assert_fails(&out, 3, "GCM tag flipped");
    assert!(
        out.stdout.is_empty(),
        "no GCM plaintext before the tag verifies"
    );
    assert!(stderr.contains("decryption failed"), "{stderr}");

    // GCM ciphertext flipped.
    let out = token.decrypt(&flip(&gcm, 20, 0x01));
    assert_fails(&out, 3, "GCM ciphertext flipped");
    assert!(out.stdout.is_empty());

    // CBC: bad padding gives the same message as the tag failure (no padding oracle).
    let cbc = aes_der(&token);
    let out = token.decrypt(&flip(&cbc, 17, 0x80));
    let stderr2 = assert_fails(&out, 3, "CBC padding");
    assert_eq!(
        stderr.lines().next(),
        stderr2.lines().next(),
        "padding and tag failures must read the same"
    );

    // Truncated at every length up to the content, and random bytes.
    let full = std::fs::read(&cbc).unwrap();
    let cut = token.path("cut.p7m");
    for len in [0, 1, 2, 10, 100, full.len() / 2, full.len() - 1] {
        std::fs::write(&cut, &full[..len]).unwrap();
        let out = token.decrypt(&cut);
        assert_fails(&out, 3, &format!("truncated to {len}"));
        assert!(out.stdout.is_empty() || len > 400);
    }
    let mut state = 0x1234_5678u32;
    let noise: Vec<u8> = (0..4096)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            state as u8
        })
        .collect();
    std::fs::write(&cut, &noise).unwrap();
    assert_fails(&token.decrypt(&cut), 3, "random bytes");
    std::fs::write(&cut, b"From: a@example.test\n\nno S/MIME here\n").unwrap();
    let stderr = assert_fails(&token.decrypt(&cut), 3, "plain mail");
    assert!(stderr.contains("pkcs7-mime"), "{stderr}");
}

#[test]
fn key_selection_and_token_selection() {
    let token = TestToken::new();
    let msg = aes_der(&token);
    for key in [
        "id:02",
        "Alice Key Management Certificate",
        "Alice Key Management Key",
        "pkcs11:id=%02",
    ] {
        let out = token
            .p11smime(&[
                "decrypt",
                "--pin",
                "env:TEST_PIN",
                "--key",
                key,
                path_str(&msg),
            ])
            .output()
            .unwrap();
        assert_plaintext(&out, SAMPLE, &format!("--key {key}"));
    }
    // Forcing the retired key on a message for the current one fails as a decryption error.
    let out = token
        .p11smime(&[
            "decrypt",
            "--pin",
            "env:TEST_PIN",
            "--key",
            "id:03",
            path_str(&msg),
        ])
        .output()
        .unwrap();
    assert_fails(&out, 3, "--key id:03 on a message for 02");
    let out = token
        .p11smime(&[
            "decrypt",
            "--pin",
            "env:TEST_PIN",
            "--key",
            "id:77",
            path_str(&msg),
        ])
        .output()
        .unwrap();
    assert_fails(&out, 4, "--key naming nothing");

    // A second, empty token in the same SoftHSM2 store: decrypt finds ours by recipient;
    // commands that need one token ask to choose; --token narrows.
    run_ok(
        Command::new("softhsm2-util")
            .env("SOFTHSM2_CONF", &token.conf)
            .args(["--init-token", "--free", "--label", "other-card"])
            .args(["--so-pin", "12345678", "--pin", "654321"]),
    );
    assert_plaintext(
        &token.decrypt(&msg),
        SAMPLE,
        "two tokens, match by recipient",
    );
    let out = token
        .p11smime(&[
            "decrypt",
            "--pin",
            "env:TEST_PIN",
            "--token",
            "other-card",
            path_str(&msg),
        ])
        .output()
        .unwrap();
    assert_fails(&out, 4, "--token other-card");
    let out = token
        .p11smime(&[
            "decrypt",
            "--pin",
            "env:TEST_PIN",
            "--token",
            "pkcs11:token=p11smime-test",
            path_str(&msg),
        ])
        .output()
        .unwrap();
    assert_plaintext(&out, SAMPLE, "--token pkcs11: URI");
    let out = token
        .p11smime(&[
            "decrypt",
            "--pin",
            "env:TEST_PIN",
            "--token",
            "no-such-card",
            path_str(&msg),
        ])
        .output()
        .unwrap();
    let stderr = assert_fails(&out, 6, "--token naming nothing");
    assert!(
        stderr.contains("other-card") && stderr.contains("p11smime-test"),
        "{stderr}"
    );
}

#[test]
fn module_problems_are_exit_6_and_say_what_was_tried() {
    let token = TestToken::new();
    let out = token
        .p11smime(&["tokens", "--module", "/nonexistent/libnothing.so"])
        .output()
        .unwrap();
    let stderr = assert_fails(&out, 6, "missing module");
    assert!(stderr.contains("/nonexistent/libnothing.so"), "{stderr}");
    let not_a_module = token.path("not-a-module.so");
    std::fs::write(&not_a_module, b"hello").unwrap();
    let out = token
        .p11smime(&["tokens", "--module", path_str(&not_a_module)])
        .output()
        .unwrap();
    assert_fails(&out, 6, "not a module");
}

#[test]
fn usage_errors_are_exit_2() {
    let token = TestToken::new();
    for args in [
        &["decrypt", "--frobnicate"][..],
        &["decrypt", "--pin", "sms:1"][..],
        &["decrypt", "--json", "x.p7m"][..],
        &["nosuchcommand"][..],
    ] {
        let out = token.p11smime(args).output().unwrap();
        assert_fails(&out, 2, &format!("{args:?}"));
    }
}

#[test]
fn broken_pipe_ends_quietly_with_the_decryption_result() {
    let token = TestToken::new();
    let big: Vec<u8> = (0..2_000_000u32).map(|i| (i % 253) as u8).collect();
    let msg = openssl_encrypt(
        token.dir.path(),
        &big,
        &["-aes256", "-outform", "DER"],
        &["alice-enc.pem"],
    );
    let script = format!(
        "set -o pipefail; \"$P11SMIME\" decrypt --pin env:TEST_PIN '{}' | head -c 10 >/dev/null",
        path_str(&msg)
    );
    let out = shell(&token, &script);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.is_empty(),
        "a closed pipe is not an error to print: {stderr}"
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "the message was intact, so the exit code is 0"
    );
}

/// `--wait`: with no token present the command says it waits, gives up after the time given,
/// and says why (exit 6). (SoftHSM2 does not see tokens created after it started, so the
/// insertion itself is left to the PC/SC tests.)
#[test]
fn wait_gives_up_after_the_time_given() {
    let token = TestToken::new();
    let start = std::time::Instant::now();
    let out = token
        .p11smime(&["certs", "--wait", "1", "--token", "no-such-card"])
        .output()
        .unwrap();
    let stderr = assert_fails(&out, 6, "--wait with no such card");
    assert!(
        start.elapsed() >= std::time::Duration::from_millis(900),
        "it waited"
    );
    assert!(stderr.contains("waiting up to 1 s for a card"), "{stderr}");
    assert!(
        stderr.contains("no card was inserted within 1 s"),
        "{stderr}"
    );
    // With the card there, --wait costs nothing.
    let start = std::time::Instant::now();
    run_ok(&mut token.p11smime(&["certs", "--wait", "30"]));
    assert!(start.elapsed() < std::time::Duration::from_secs(5));
}
