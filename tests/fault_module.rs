//! The fault-injecting PKCS#11 module (`tests/pkcs11-fault`) does what its plan says, as
//! p11smime sees it: one test per plan keyword, each against a run without the fault. The
//! suite of p11smime's behaviour under faults builds on these.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use common::fault::{self, calls, injected};
use common::*;
use std::process::Command;
use std::time::{Duration, Instant};

/// `decrypt --pin env:TEST_PIN FILE`.
fn decrypt_args(msg: &std::path::Path) -> Vec<&str> {
    vec!["decrypt", "--pin", "env:TEST_PIN", path_str(msg)]
}

/// An AES-256 message to the fixture encryption certificate, PKCS#1 v1.5 key transport.
fn message(token: &TestToken) -> std::path::PathBuf {
    openssl_encrypt(
        token.dir.path(),
        SAMPLE,
        &["-aes256", "-outform", "DER"],
        &["alice-enc.pem"],
    )
}

/// The test token's entry in `tokens --json` under `plan`, or `None` when it is not listed.
fn token_json(token: &TestToken, plan: &str) -> Option<serde_json::Value> {
    let (out, _) = fault::run(token, plan, &["tokens", "--json"]);
    assert!(out.status.success(), "{}", report(&out));
    let all: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    all.into_iter().find(|t| t["label"] == "p11smime-test")
}

#[test]
fn flags_reach_tokens_json_and_bad_lines_are_logged() {
    let token = TestToken::new();
    let plain = token_json(&token, "").expect("the token is listed through the fault module");
    for flag in [
        "pin_final_try",
        "pin_count_low",
        "protected_authentication_path",
    ] {
        assert_eq!(plain[flag], false, "{flag} without a plan: {plain}");
    }

    let plan = "fail C_Decrypt CKR_NO_SUCH_VALUE\nflags FINAL_TRY COUNT_LOW PROTECTED_AUTH_PATH";
    let flagged = token_json(&token, plan).unwrap();
    for flag in [
        "pin_final_try",
        "pin_count_low",
        "protected_authentication_path",
    ] {
        assert_eq!(flagged[flag], true, "{flag} with `flags`: {flagged}");
    }
    assert_eq!(flagged["pin_locked"], false);
    let log = fault::read_log(&token);
    assert_eq!(
        log.lines()
            .filter(|l| l.starts_with("# plan line 1 ignored"))
            .count(),
        1,
        "the bad line is reported once: {log}"
    );
}

#[test]
fn fail_decrypt_with_device_removed_and_after() {
    let token = TestToken::new();
    let msg = message(&token);
    let (out, log) = fault::run(&token, "", &decrypt_args(&msg));
    assert_plaintext(&out, SAMPLE, "through the fault module, no plan");
    let n = calls(&log, "C_Decrypt");
    assert!(n >= 1, "{log}");

    let (out, log) = fault::run(
        &token,
        "fail C_Decrypt CKR_DEVICE_REMOVED",
        &decrypt_args(&msg),
    );
    let stderr = assert_fails(&out, 6, "C_Decrypt fails");
    assert!(out.stdout.is_empty());
    assert!(
        stderr.contains("token went away") && stderr.contains("CKR_DEVICE_REMOVED"),
        "{stderr}"
    );
    assert_eq!(
        injected(&log, "C_Decrypt"),
        ["C_Decrypt CKR_DEVICE_REMOVED injected"]
    );

    // `after=N` lets exactly the calls of a good run through, and not one more.
    let plan = format!("fail C_Decrypt CKR_DEVICE_REMOVED after={n}");
    let (out, _) = fault::run(&token, &plan, &decrypt_args(&msg));
    assert_plaintext(&out, SAMPLE, "after= as many calls as a good run makes");
    let plan = format!("fail C_Decrypt CKR_DEVICE_REMOVED after={}", n - 1);
    let (out, log) = fault::run(&token, &plan, &decrypt_args(&msg));
    assert_fails(&out, 6, "after= one call fewer");
    assert_eq!(calls(&log, "C_Decrypt"), n, "{log}");
}

/// An injected C_Decrypt error ends the real module's operation, as a real error would: the
/// next message of a batch meets the same fault, not a CKR_OPERATION_ACTIVE left behind.
/// (CKR_GENERAL_ERROR reads as "not this key", so the batch goes on to the next message.)
#[test]
fn injected_error_ends_the_operation() {
    let token = TestToken::new();
    let msg = message(&token);
    let (_, log) = fault::run(&token, "", &decrypt_args(&msg));
    let per_message = calls(&log, "C_Decrypt");
    let dir = token.path("in");
    std::fs::create_dir(&dir).unwrap();
    for name in ["a.p7m", "b.p7m", "c.p7m"] {
        std::fs::copy(&msg, dir.join(name)).unwrap();
    }
    let out_dir = token.path("out");
    let plan = format!("fail C_Decrypt CKR_GENERAL_ERROR after={per_message}");
    let args = [
        "decrypt",
        "--pin",
        "env:TEST_PIN",
        "--out-dir",
        path_str(&out_dir),
        path_str(&dir),
    ];
    let (out, log) = fault::run(&token, &plan, &args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{}", report(&out));
    assert!(out_dir.join("a.p7m").exists(), "{stderr}");
    assert!(
        !log.contains("CKR_OPERATION_ACTIVE") && !stderr.contains("CKR_OPERATION_ACTIVE"),
        "{stderr}\n{log}"
    );
}

#[test]
fn locked_flag_means_no_login_at_all() {
    let token = TestToken::new();
    let msg = message(&token);
    let (out, log) = fault::run(&token, "flags LOCKED", &decrypt_args(&msg));
    let stderr = assert_fails(&out, 5, "locked PIN");
    assert!(stderr.contains("locked"), "{stderr}");
    assert_eq!(calls(&log, "C_Login"), 0, "{log}");
}

#[test]
fn login_answers_without_the_real_module() {
    let token = TestToken::new();
    let msg = message(&token);
    let (out, log) = fault::run(&token, "login CKR_PIN_INCORRECT", &decrypt_args(&msg));
    let stderr = assert_fails(&out, 5, "wrong PIN");
    assert!(stderr.contains("PIN incorrect"), "{stderr}");
    assert_eq!(
        calls(&log, "C_Login"),
        1,
        "one attempt, never retried: {log}"
    );
    assert_eq!(
        injected(&log, "C_Login"),
        ["C_Login CKR_PIN_INCORRECT injected"]
    );

    let (out, log) = fault::run(&token, "login CKR_PIN_LOCKED", &decrypt_args(&msg));
    let stderr = assert_fails(&out, 5, "PIN locked at login");
    assert!(stderr.contains("locked"), "{stderr}");
    assert_eq!(calls(&log, "C_Login"), 1, "{log}");
}

#[test]
fn removed_token_is_not_listed_and_not_logged_into() {
    let token = TestToken::new();
    assert!(token_json(&token, "removed").is_none());
    let msg = message(&token);
    let (out, log) = fault::run(&token, "removed", &decrypt_args(&msg));
    assert_fails(&out, 6, "no token");
    assert_eq!(calls(&log, "C_Login"), 0, "{log}");
}

/// The plan changes while p11smime waits in C_Decrypt: the card is pulled out mid-operation.
#[test]
fn removed_mid_decrypt_is_seen_by_the_running_process() {
    let token = TestToken::new();
    let msg = message(&token);
    let _ = std::fs::remove_file(fault::log_path(&token));
    let plan = fault::write_plan(&token, "slow C_Decrypt 1500");
    let child = fault::fault_env(&mut token.p11smime(&decrypt_args(&msg)), &plan)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !fault::read_log(&token).contains("C_DecryptInit CKR_OK") {
        assert!(Instant::now() < deadline, "no C_DecryptInit in time");
        std::thread::sleep(Duration::from_millis(20));
    }
    fault::write_plan(&token, "removed");
    let out = child.wait_with_output().unwrap();
    let stderr = assert_fails(&out, 6, "card pulled out mid-decrypt");
    assert!(out.stdout.is_empty());
    assert!(stderr.contains("token went away"), "{stderr}");
    let log = fault::read_log(&token);
    assert!(
        log.contains("C_Decrypt CKR_DEVICE_REMOVED injected"),
        "{log}"
    );
}

#[test]
fn hidden_oaep_sends_p11smime_to_raw_rsa() {
    let token = TestToken::new();
    let enc = fixture("alice-enc.pem");
    let msg = openssl_encrypt(
        token.dir.path(),
        SAMPLE,
        &[
            "-aes256",
            "-recip",
            path_str(&enc),
            "-keyopt",
            "rsa_padding_mode:oaep",
            "-outform",
            "DER",
        ],
        &[],
    );
    let (out, log) = fault::run(&token, "", &decrypt_args(&msg));
    assert_plaintext(&out, SAMPLE, "OAEP on the token");
    assert!(injected(&log, "C_DecryptInit").is_empty(), "{log}");

    let (out, log) = fault::run(
        &token,
        "no-mechanism CKM_RSA_PKCS_OAEP",
        &decrypt_args(&msg),
    );
    assert_plaintext(&out, SAMPLE, "OAEP hidden: raw RSA and OAEP in software");
    assert_eq!(
        injected(&log, "C_DecryptInit"),
        ["C_DecryptInit CKR_MECHANISM_INVALID injected"]
    );

    let (out, _) = fault::run(
        &token,
        "no-mechanism CKM_RSA_PKCS_OAEP CKM_RSA_X_509",
        &decrypt_args(&msg),
    );
    assert!(
        !out.status.success(),
        "no way left to decrypt: {}",
        report(&out)
    );
    assert!(out.stdout.is_empty());
}

/// `C_GetMechanismList` and `C_GetMechanismInfo`, as OpenSC's pkcs11-tool lists them.
#[test]
fn hidden_mechanism_is_not_listed() {
    let token = TestToken::new();
    let list = |plan: &str| {
        let path = fault::write_plan(&token, plan);
        let out = run_ok(
            Command::new(require("pkcs11-tool", "opensc"))
                .arg("--module")
                .arg(fault::module())
                .args(["--token-label", "p11smime-test", "--list-mechanisms"])
                .env("SOFTHSM2_CONF", &token.conf)
                .env("P11FAULT_MODULE", softhsm_module())
                .env("P11FAULT_CONFIG", &path),
        );
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    let all = list("");
    assert!(all.contains("RSA-PKCS-OAEP"), "{all}");
    let fewer = list("no-mechanism CKM_RSA_PKCS_OAEP");
    assert!(!fewer.contains("RSA-PKCS-OAEP"), "{fewer}");
    assert!(fewer.contains("RSA-X-509"), "{fewer}");
    assert_eq!(fewer.lines().count() + 1, all.lines().count());
}

#[test]
fn slow_delays_each_call() {
    let token = TestToken::new();
    let msg = message(&token);
    let start = Instant::now();
    let (out, log) = fault::run(&token, "slow C_Decrypt 400", &decrypt_args(&msg));
    let took = start.elapsed();
    assert_plaintext(&out, SAMPLE, "slow but fine");
    let n = calls(&log, "C_Decrypt") as u32;
    assert!(
        took >= Duration::from_millis(400) * n,
        "{n} C_Decrypt calls took only {took:?}"
    );
}

#[test]
fn failing_initialize_is_a_module_load_error() {
    let token = TestToken::new();
    let (out, log) = fault::run(&token, "fail C_Initialize CKR_GENERAL_ERROR", &["tokens"]);
    let stderr = assert_fails(&out, 6, "C_Initialize fails");
    assert!(stderr.contains("C_Initialize"), "{stderr}");
    assert_eq!(
        injected(&log, "C_Initialize"),
        ["C_Initialize CKR_GENERAL_ERROR injected"]
    );
}
