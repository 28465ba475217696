//! `p11smime doctor`: a healthy fixture token passes every step; each broken setup (no module,
//! wrong module, no trust anchor, a wrong PIN, an empty token) is a PROBLEM with its fix, and
//! the exit code says so.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use common::*;
use serde_json::Value;

fn doctor(token: &TestToken, extra: &[&str]) -> (std::process::Output, Value) {
    let mut args = vec!["doctor", "--json", "--no-system-ca"];
    args.extend_from_slice(extra);
    let out = token.p11smime(&args).output().unwrap();
    let json = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    (out, json)
}

fn step<'a>(checks: &'a Value, name: &str) -> Vec<&'a Value> {
    checks
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["step"] == name)
        .collect()
}

#[test]
fn a_healthy_token_passes_every_step() {
    let token = TestToken::new();
    let ca = fixture("ca.pem");
    let (out, checks) = doctor(&token, &["--ca", path_str(&ca), "--pin", "env:TEST_PIN"]);
    assert!(out.status.success(), "{checks}");
    assert!(
        checks
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["status"] != "problem"),
        "{checks}"
    );
    assert_eq!(step(&checks, "PKCS#11 module")[0]["status"], "ok");
    assert_eq!(
        step(&checks, "readers")[0]["status"],
        "skipped",
        "a software token needs no reader"
    );
    assert_eq!(step(&checks, "login")[0]["status"], "ok");
    // With --pin the PIN was tried: the PIN step does not ask for it.
    assert_eq!(step(&checks, "PIN")[0]["detail"], "not locked", "{checks}");
    let signing = step(&checks, "signing certificate")[0]["detail"]
        .as_str()
        .unwrap();
    assert!(signing.contains("Alice Signature Certificate"), "{signing}");
    let enc = step(&checks, "encryption certificate")[0]["detail"]
        .as_str()
        .unwrap();
    assert!(
        enc.starts_with("'Alice Key Management Certificate'"),
        "RSA first: {enc}"
    );
    let retired = step(&checks, "retired certificates")[0]["detail"]
        .as_str()
        .unwrap();
    assert!(
        retired.contains("Retired Key Management Certificate 1"),
        "{retired}"
    );
    assert!(
        step(&checks, "chain").iter().all(|c| c["status"] == "ok"),
        "{checks}"
    );
    // The human form says the same.
    let text =
        run_ok(&mut token.p11smime(&["doctor", "--no-system-ca", "--ca", path_str(&ca)])).stdout;
    let text = String::from_utf8(text).unwrap();
    assert!(text.contains("ok       token: 'p11smime-test'"), "{text}");
}

#[test]
fn each_broken_setup_is_a_problem_with_a_fix() {
    let token = TestToken::new();
    // No trust anchor: the chain step fails.
    let (out, checks) = doctor(&token, &[]);
    assert_fails(&out, 6, "no anchor");
    let chain = step(&checks, "chain");
    assert!(
        chain
            .iter()
            .all(|c| c["status"] == "problem" && c["fix"].as_str().unwrap().contains("--ca")),
        "{checks}"
    );
    // A wrong PIN: one login, a problem, never printed.
    let (out, checks) = doctor(&token, &["--pin", "env:WRONG"]);
    assert_fails(&out, 6, "unset PIN variable");
    let login = step(&checks, "login")[0];
    assert_eq!(login["status"], "problem", "{checks}");
    // No module at that path, and a file that is no module.
    let (out, checks) = doctor(&token, &["--module", "/nonexistent/module.so"]);
    assert_fails(&out, 6, "no module");
    assert_eq!(
        checks.as_array().unwrap().len(),
        1,
        "nothing after a missing module: {checks}"
    );
    assert!(
        checks[0]["fix"].as_str().unwrap().contains("opensc"),
        "{checks}"
    );
    let junk = token.write("junk.so", b"not a library");
    let (out, _) = doctor(&token, &["--module", path_str(&junk)]);
    assert_fails(&out, 6, "not a module");
}

#[test]
fn an_empty_token_has_no_certificates_to_offer() {
    let token = TestToken::new();
    run_ok(
        std::process::Command::new("softhsm2-util")
            .env("SOFTHSM2_CONF", &token.conf)
            .args([
                "--init-token",
                "--free",
                "--label",
                "blank",
                "--so-pin",
                "12345678",
                "--pin",
                "1111",
            ]),
    );
    let (out, checks) = doctor(&token, &["--token", "blank"]);
    assert_fails(&out, 6, "empty token");
    assert_eq!(
        step(&checks, "encryption certificate")[0]["status"],
        "problem",
        "{checks}"
    );
    assert_eq!(
        step(&checks, "signing certificate")[0]["status"],
        "warning",
        "{checks}"
    );
}
