//! p11-kit's proxy (`p11-kit-proxy.so`, the first module p11smime looks for) loads the modules
//! p11-kit's configuration registers, and honours what that configuration says about them.
//!
//! Each test writes a p11-kit configuration of its own: `$XDG_CONFIG_HOME/pkcs11/pkcs11.conf`
//! with `user-config: only` (the system's modules, e.g. Debian's `opensc-pkcs11.module`,
//! `softhsm2.module` and `p11-kit-trust.module` in `/usr/share/p11-kit/modules`, are then not
//! loaded at all) and `$XDG_CONFIG_HOME/pkcs11/modules/p11smime-softhsm.module` naming SoftHSM2,
//! which sees the test's own token through `SOFTHSM2_CONF`. p11-kit reads the user
//! configuration only in a process whose real uid is not 0 ("skipping user config in program
//! running as root", says `P11_KIT_DEBUG=conf`), and it has no other way to point it at a
//! configuration (no environment variable, and the system files are fixed at build time). So
//! when the tests run as root, p11smime runs as the unprivileged uid/gid 65534 ("nobody"), with
//! the test's directory handed to that uid.
//!
//! The tests where the module is disabled also show the system's registrations are kept out:
//! Debian registers SoftHSM2 system-wide, and if the system's modules were loaded, the token
//! would be seen through that registration.

#![cfg(target_os = "linux")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use common::{
    PIN, SAMPLE, TestToken, assert_fails, assert_plaintext, openssl_encrypt, path_str, report,
    run_ok, softhsm_module,
};
use serde_json::Value;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

/// The token's label: nothing else on any machine is called this.
const LABEL: &str = "p11smime via p11-kit";
/// The name of the module in the test's configuration (its file is NAME.module).
const MODULE_NAME: &str = "p11smime-softhsm";
/// The uid and gid p11smime runs as when the tests run as root.
const UNPRIVILEGED: u32 = 65534;

/// p11-kit's proxy module, from the package p11-kit-modules.
fn proxy_module() -> PathBuf {
    [
        "/usr/lib/x86_64-linux-gnu/p11-kit-proxy.so",
        "/usr/lib/aarch64-linux-gnu/p11-kit-proxy.so",
        "/usr/lib64/p11-kit-proxy.so",
        "/usr/lib/p11-kit-proxy.so",
    ]
    .iter()
    .map(PathBuf::from)
    .find(|p| p.exists())
    .expect("p11-kit-proxy.so (package p11-kit-modules) is missing: run scripts/install-deps")
}

fn running_as_root() -> bool {
    let out = run_ok(Command::new("id").arg("-u"));
    String::from_utf8(out.stdout).unwrap().trim() == "0"
}

/// A fresh SoftHSM2 token and a p11-kit configuration of the test's own beside it.
struct Setup {
    token: TestToken,
    /// `XDG_CONFIG_HOME` for p11smime: p11-kit reads `pkcs11/` in it.
    xdg: PathBuf,
}

impl Setup {
    /// The token, and a configuration that registers SoftHSM2 with the `extra` module settings
    /// (`None`: no module file at all).
    fn new(extra: Option<&str>) -> Self {
        let token = TestToken::with_label(LABEL);
        let xdg = token.path("xdg");
        let setup = Setup { token, xdg };
        setup.configure(extra);
        setup
    }

    fn configure(&self, extra: Option<&str>) {
        let pkcs11 = self.xdg.join("pkcs11");
        let modules = pkcs11.join("modules");
        std::fs::create_dir_all(&modules).unwrap();
        std::fs::write(
            pkcs11.join("pkcs11.conf"),
            "# p11smime's tests: this configuration, and none of the system's\nuser-config: only\n",
        )
        .unwrap();
        let file = modules.join(format!("{MODULE_NAME}.module"));
        match extra {
            Some(extra) => std::fs::write(
                &file,
                format!("module: {}\n{extra}", softhsm_module().display()),
            )
            .unwrap(),
            None => {
                let _ = std::fs::remove_file(&file);
            }
        }
    }

    /// `p11smime ARGS --module p11-kit-proxy.so` with this configuration and token (as an
    /// unprivileged user when the tests run as root).
    fn p11smime(&self, args: &[&str]) -> Output {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_p11smime"));
        cmd.args(args)
            .arg("--module")
            .arg(proxy_module())
            .env_remove("P11SMIME_MODULE")
            .env_remove("P11SMIME_TOKEN")
            .env("SOFTHSM2_CONF", &self.token.conf)
            .env("XDG_CONFIG_HOME", &self.xdg)
            .env("HOME", self.token.dir.path())
            .env("TEST_PIN", PIN)
            .stdin(Stdio::null());
        if running_as_root() {
            // The token's files (SoftHSM2 writes lock files beside them), the configuration
            // and the messages, all under the test's directory.
            run_ok(
                Command::new("chown")
                    .arg("-R")
                    .arg(format!("{UNPRIVILEGED}:{UNPRIVILEGED}"))
                    .arg(self.token.dir.path()),
            );
            cmd.uid(UNPRIVILEGED).gid(UNPRIVILEGED);
        }
        cmd.output()
            .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"))
    }

    fn tokens(&self) -> Vec<Value> {
        let out = self.p11smime(&["tokens", "--json"]);
        assert!(out.status.success(), "tokens --json: {}", report(&out));
        let list: Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", report(&out)));
        list.as_array().unwrap().clone()
    }
}

/// The tokens in `list` that are the test's.
fn ours(list: &[Value]) -> Vec<&Value> {
    list.iter().filter(|t| t["label"] == LABEL).collect()
}

#[test]
fn the_proxy_loads_softhsm2_as_the_test_configuration_registers_it() {
    let setup = Setup::new(Some(""));

    let list = setup.tokens();
    let found = ours(&list);
    assert_eq!(
        found.len(),
        1,
        "the token through the proxy (p11-kit reads no user configuration when \
         /etc/pkcs11/pkcs11.conf says `user-config: none`): {list:#?}"
    );
    let token = found[0];
    assert_eq!(token["manufacturer"], "SoftHSM project", "{token}");
    assert_eq!(token["model"], "SoftHSM v2", "{token}");
    assert_eq!(token["initialized"], true, "{token}");
    assert_eq!(token["login_required"], true, "{token}");
    // `user-config: only`: the one module is ours, so every slot is SoftHSM2's (ours, and
    // the empty one SoftHSM2 always adds); no system module (OpenSC, p11-kit-trust) is there.
    for t in &list {
        assert_eq!(t["manufacturer"], "SoftHSM project", "{list:#?}");
    }

    // The module p11smime loaded is the proxy.
    let out = setup.p11smime(&["tokens", "--verbose"]);
    assert!(out.status.success(), "{}", report(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("module {}", proxy_module().display())),
        "{stderr}"
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains(&format!("label:        {LABEL}")),
        "{}",
        report(&out)
    );

    // A message openssl encrypted to alice's key-management certificate opens through the
    // proxy: login, the key found, the RSA decryption on the token.
    let msg = openssl_encrypt(
        setup.token.dir.path(),
        SAMPLE,
        &["-aes256"],
        &["alice-enc.pem"],
    );
    let out = setup.p11smime(&["decrypt", "--pin", "env:TEST_PIN", path_str(&msg)]);
    assert_plaintext(&out, SAMPLE, "decrypt through p11-kit's proxy");
}

#[test]
fn the_proxy_loads_a_module_enabled_in_p11smime() {
    // `enable-in` names programs by the base name of their executable: ours is p11smime.
    // (Not tested: `enable-in: p11-kit-proxy`, which pkcs11.conf(5) documents as "only through
    // the proxy". p11-kit 0.24.1, and its sources up to 0.26.4, check enable-in once more with
    // no proxy flag before they load the module, so a module enabled in p11-kit-proxy alone is
    // never loaded, through the proxy or not.)
    let setup = Setup::new(Some("enable-in: p11smime\n"));
    let list = setup.tokens();
    assert_eq!(ours(&list).len(), 1, "{list:#?}");
}

#[test]
fn a_module_the_configuration_keeps_out_of_the_proxy_is_not_loaded() {
    for extra in [
        "disable-in: p11-kit-proxy\n",
        "disable-in: p11smime\n",
        "enable-in: firefox, thunderbird\n",
        // A blank module: the way a user configuration switches a system module off.
        "",
    ] {
        let setup = Setup::new(Some(extra));
        if extra.is_empty() {
            std::fs::write(
                setup
                    .xdg
                    .join(format!("pkcs11/modules/{MODULE_NAME}.module")),
                "module:\n",
            )
            .unwrap();
        }
        let list = setup.tokens();
        assert!(
            ours(&list).is_empty(),
            "{extra:?}: the module was loaded anyway: {list:#?}"
        );
    }
}

#[test]
fn without_the_module_file_the_token_is_not_seen_and_decrypt_says_so() {
    let setup = Setup::new(Some(""));
    assert_eq!(ours(&setup.tokens()).len(), 1);

    // The same token, SOFTHSM2_CONF and all, but no module file: nothing loads SoftHSM2.
    setup.configure(None);
    let list = setup.tokens();
    assert!(ours(&list).is_empty(), "{list:#?}");
    let msg = openssl_encrypt(setup.token.dir.path(), SAMPLE, &[], &["alice-enc.pem"]);
    let out = setup.p11smime(&["decrypt", "--pin", "env:TEST_PIN", path_str(&msg)]);
    let stderr = assert_fails(&out, 6, "decrypt with no module registered");
    assert!(out.stdout.is_empty(), "{}", report(&out));
    assert!(stderr.contains("p11-kit-proxy.so"), "{stderr}");
}
