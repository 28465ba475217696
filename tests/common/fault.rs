//! The fault-injecting PKCS#11 module (`tests/pkcs11-fault`, syntax in its crate doc): where its
//! shared object is, building it when it is missing or stale, and pointing p11smime at it with a
//! plan file. SoftHSM2 stays the real module underneath.

use super::{TestToken, root, softhsm_module};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;
use std::time::SystemTime;

/// The built module. `scripts/test` builds it beside the binary under test (`cargo build -p
/// pkcs11-fault`); when that copy is missing or older than the crate's sources, it is built
/// here, once per test binary, into `target/fault`.
pub fn module() -> PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(locate_or_build).clone()
}

fn file_name() -> String {
    format!(
        "{}pkcs11_fault{}",
        std::env::consts::DLL_PREFIX,
        std::env::consts::DLL_SUFFIX
    )
}

fn locate_or_build() -> PathBuf {
    let beside = Path::new(env!("CARGO_BIN_EXE_p11smime"))
        .parent()
        .unwrap()
        .join(file_name());
    if modified(&beside).is_some_and(|built| built >= newest_source()) {
        return beside;
    }
    // A target directory of its own: the `cargo test` that runs us may hold the lock of its
    // own, and a nested build there would wait for it. Cargo decides what is stale in here.
    let target = root().join("target").join("fault");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let out = Command::new(cargo)
        .args([
            "build",
            "--locked",
            "--quiet",
            "-p",
            "pkcs11-fault",
            "--target-dir",
        ])
        .arg(&target)
        .current_dir(root())
        .env_remove("CARGO_TARGET_DIR")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "building tests/pkcs11-fault failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let built = target.join("debug").join(file_name());
    assert!(built.exists(), "cargo built no {}", built.display());
    built
}

fn modified(p: &Path) -> Option<SystemTime> {
    std::fs::metadata(p).and_then(|m| m.modified()).ok()
}

/// The newest modification time among the crate's manifest and sources.
fn newest_source() -> SystemTime {
    let dir = root().join("tests").join("pkcs11-fault");
    let mut newest = modified(&dir.join("Cargo.toml")).unwrap_or(SystemTime::UNIX_EPOCH);
    for entry in std::fs::read_dir(dir.join("src")).unwrap().flatten() {
        if let Some(t) = modified(&entry.path()) {
            newest = newest.max(t);
        }
    }
    newest
}

/// Points `cmd` (a `TestToken::p11smime` command) at the fault module wrapping SoftHSM2, with
/// the plan file `plan` (read again on every intercepted call; it need not exist yet).
pub fn fault_env<'c>(cmd: &'c mut Command, plan: &Path) -> &'c mut Command {
    cmd.env("P11SMIME_MODULE", module())
        .env("P11FAULT_MODULE", softhsm_module())
        .env("P11FAULT_CONFIG", plan)
}

/// The plan file of `token` (`fault.plan` in its directory), whose `log` line, if any, should
/// name [`log_path`].
pub fn plan_path(token: &TestToken) -> PathBuf {
    token.path("fault.plan")
}

/// The call log the plans written by [`write_plan`] ask for.
pub fn log_path(token: &TestToken) -> PathBuf {
    token.path("fault.log")
}

/// Makes `plan` (lines of the plan syntax) the token's plan, with a `log` line added; returns
/// the plan's path. The file is replaced by a rename, so a running p11smime reads either the
/// old plan or the new one, never half of one: call it again mid-run to change the plan.
pub fn write_plan(token: &TestToken, plan: &str) -> PathBuf {
    let path = plan_path(token);
    let tmp = token.path("fault.plan.tmp");
    std::fs::write(&tmp, format!("{plan}\nlog fault.log\n")).unwrap();
    std::fs::rename(&tmp, &path).unwrap();
    path
}

/// Runs `p11smime ARGS` against `token` through the fault module with `plan` and an empty log;
/// returns the output and the module's call log (one `C_Name CKR_RV[ injected]` line a call).
pub fn run(token: &TestToken, plan: &str, args: &[&str]) -> (Output, String) {
    let _ = std::fs::remove_file(log_path(token));
    let plan = write_plan(token, plan);
    let out = fault_env(&mut token.p11smime(args), &plan)
        .output()
        .unwrap();
    let log = read_log(token);
    assert!(
        log.contains("C_Initialize"),
        "the fault module logged nothing: {}\nstderr: {}",
        log,
        String::from_utf8_lossy(&out.stderr)
    );
    (out, log)
}

/// The token's call log so far.
pub fn read_log(token: &TestToken) -> String {
    std::fs::read_to_string(log_path(token)).unwrap_or_default()
}

/// How many calls of `function` (e.g. `C_Login`) the log shows, answered by either module.
pub fn calls(log: &str, function: &str) -> usize {
    log.lines()
        .filter(|l| l.split(' ').next() == Some(function))
        .count()
}

/// The log lines of `function` that the fault module answered itself, e.g.
/// `["C_Login CKR_PIN_INCORRECT injected"]`.
pub fn injected<'l>(log: &'l str, function: &str) -> Vec<&'l str> {
    log.lines()
        .filter(|l| l.split(' ').next() == Some(function) && l.ends_with(" injected"))
        .collect()
}
