//! `doctor` with OpenSC's module and no pcscd where libpcsclite looks: the readers step is a
//! problem (OpenSC drives real readers, so it is not skipped as for a software token) whose fix
//! says to start pcscd, and the exit code is 6.

#![cfg(target_os = "linux")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use common::pcsc::run_limited;
use common::report;
use common::virt_cac::{OPENSC_CONF, opensc_module};
use serde_json::Value;

#[test]
fn no_pcscd_is_a_readers_problem_with_opensc() {
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("opensc.conf");
    std::fs::write(&conf, OPENSC_CONF).unwrap();
    // A socket path nothing listens on.
    let socket = dir.path().join("no-pcscd.comm");
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_p11smime"));
    cmd.args(["doctor", "--json", "--no-system-ca"])
        .env("P11SMIME_MODULE", opensc_module())
        .env("OPENSC_CONF", &conf)
        .env("PCSCLITE_CSOCK_NAME", &socket)
        .env_remove("P11SMIME_TOKEN")
        .env_remove("SOFTHSM2_CONF");
    let out = run_limited(cmd);
    assert_eq!(out.status.code(), Some(6), "{}", report(&out));
    let checks: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", report(&out)));
    let checks = checks.as_array().unwrap();
    let module = checks
        .iter()
        .find(|c| c["step"] == "PKCS#11 module")
        .unwrap();
    assert_eq!(module["status"], "ok", "{checks:#?}");
    let readers = checks
        .iter()
        .find(|c| c["step"] == "readers")
        .unwrap_or_else(|| panic!("no readers step: {checks:#?}"));
    assert_eq!(
        readers["status"], "problem",
        "not skipped for OpenSC: {checks:#?}"
    );
    let fix = readers["fix"].as_str().unwrap_or("");
    assert!(fix.contains("pcscd"), "the fix names pcscd: {readers}");
}
