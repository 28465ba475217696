//! The pieces of the virtual CAC (see `tests/virtual_cac.rs` and `tests/support/virt_cac/`),
//! for tests that must choose *when* the card goes in: a SoftHSM2 token with a removable slot
//! and alice's RSA keys, an NSS database that loads it, OpenSC's module and a configuration
//! for it, and the bridge program that plugs libcacard's card into a vpcd reader.
//!
//! `tests/virtual_cac.rs` has its own copy of these (it was there first); they behave the same
//! and compile the bridge to the same place, in the same atomic way.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use super::pcsc::{Pcscd, SETTLE_LIMIT, virtual_readers};
use super::{PIN, fixture, report, require, root, run_ok, softhsm_module};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::sync::mpsc;
use std::time::Instant;

/// The reader vpcd's first port is.
pub const READER: &str = "Virtual PCD 00 00";
/// The SoftHSM2 token behind the card (OpenSC shows the card under another label).
pub const TOKEN_LABEL: &str = "p11smime virtual CAC";

/// OpenSC's configuration: the CAC driver only, and nothing cached on disk.
pub const OPENSC_CONF: &str = "app default {
    card_drivers = cac;
    framework pkcs15 {
        use_file_caching = no;
    }
}
";

/// OpenSC's PKCS#11 module, from the package opensc-pkcs11.
pub fn opensc_module() -> PathBuf {
    [
        "/usr/lib/x86_64-linux-gnu/opensc-pkcs11.so",
        "/usr/lib/aarch64-linux-gnu/opensc-pkcs11.so",
        "/usr/lib64/opensc-pkcs11.so",
        "/usr/lib/opensc-pkcs11.so",
    ]
    .iter()
    .map(PathBuf::from)
    .find(|p| p.exists())
    .expect("opensc-pkcs11.so (package opensc-pkcs11) is missing: run scripts/install-deps")
}

/// The bridge program, compiled once per test binary into Cargo's temporary directory (again
/// whenever its source is newer than the binary).
pub fn bridge_binary() -> &'static Path {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY.get_or_init(|| {
        let source = root().join("tests/support/virt_cac/virt_cac.c");
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("virt_cac");
        std::fs::create_dir_all(&dir).unwrap();
        let binary = dir.join("virt_cac");
        let modified = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
        if modified(&binary).is_some() && modified(&binary) >= modified(&source) {
            return binary;
        }
        let gcc = require("gcc", "gcc");
        let flags = Command::new(require("pkg-config", "pkg-config"))
            .args(["--cflags", "--libs", "libcacard"])
            .output()
            .unwrap();
        assert!(
            flags.status.success(),
            "libcacard is not installed (package libcacard-dev): run scripts/install-deps\n{}",
            report(&flags)
        );
        let flags = String::from_utf8(flags.stdout).unwrap();
        // Another test binary may compile at the same time: build under a name of our own,
        // then rename (atomic) into place.
        let partial = dir.join(format!("virt_cac.{}", std::process::id()));
        run_ok(
            Command::new(gcc)
                .args(["-Wall", "-Wextra", "-O2", "-o"])
                .arg(&partial)
                .arg(&source)
                .args(flags.split_whitespace()),
        );
        std::fs::rename(&partial, &binary).unwrap();
        binary
    })
}

/// What the card is made from, in a directory of the test's: the SoftHSM2 token (its
/// `SOFTHSM2_CONF`), the NSS database that loads it, and OpenSC's configuration file.
pub struct CardFiles {
    pub softhsm_conf: PathBuf,
    pub nssdb: PathBuf,
    pub opensc_conf: PathBuf,
}

impl CardFiles {
    pub fn make(dir: &Path) -> Self {
        let opensc_conf = dir.join("opensc.conf");
        std::fs::write(&opensc_conf, OPENSC_CONF).unwrap();
        CardFiles {
            softhsm_conf: make_token(dir),
            nssdb: make_nss_db(dir),
            opensc_conf,
        }
    }
}

/// A SoftHSM2 token in `DIR/softhsm` with a removable slot and alice's RSA keys, each key and
/// its certificate under one CKA_ID; returns its SOFTHSM2_CONF.
pub fn make_token(dir: &Path) -> PathBuf {
    let tokens = dir.join("softhsm/tokens");
    std::fs::create_dir_all(&tokens).unwrap();
    let conf = dir.join("softhsm/softhsm2.conf");
    std::fs::write(
        &conf,
        format!(
            "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n\
             slots.removable = true\n",
            tokens.display()
        ),
    )
    .unwrap();
    run_ok(
        Command::new(require("softhsm2-util", "softhsm2"))
            .env("SOFTHSM2_CONF", &conf)
            .args(["--init-token", "--free", "--label", TOKEN_LABEL])
            .args(["--pin", PIN, "--so-pin", "12345678"]),
    );
    let pkcs11_tool = require("pkcs11-tool", "opensc");
    let write = |args: &[&str], file: PathBuf| {
        run_ok(
            Command::new(&pkcs11_tool)
                .env("SOFTHSM2_CONF", &conf)
                .arg("--module")
                .arg(softhsm_module())
                .args(["--token-label", TOKEN_LABEL, "--login", "--pin", PIN])
                .arg("--write-object")
                .arg(file)
                .args(args),
        );
    };
    for (id, name, usage) in [
        ("01", "alice-sign", "--usage-sign"),
        ("02", "alice-enc", "--usage-decrypt"),
        ("03", "alice-retired", "--usage-decrypt"),
    ] {
        write(
            &[
                "--type",
                "privkey",
                "--id",
                id,
                "--label",
                name,
                "--sensitive",
                usage,
            ],
            fixture(&format!("{name}.key.pem")),
        );
        write(
            &["--type", "cert", "--id", id, "--label", name],
            fixture(&format!("{name}.pem")),
        );
    }
    conf
}

/// An NSS database in `DIR/nssdb` that loads SoftHSM2, whose removable slot libcacard then
/// turns into a card; returns its directory.
pub fn make_nss_db(dir: &Path) -> PathBuf {
    let db = dir.join("nssdb");
    std::fs::create_dir(&db).unwrap();
    let sql = format!("sql:{}", db.display());
    let modutil = require("modutil", "libnss3-tools");
    run_ok(
        Command::new(&modutil)
            .args(["-create", "-force", "-dbdir", &sql])
            .stdin(Stdio::null()),
    );
    run_ok(
        Command::new(&modutil)
            .args(["-add", "SoftHSM2", "-force", "-dbdir", &sql, "-libfile"])
            .arg(softhsm_module())
            .stdin(Stdio::null()),
    );
    db
}

/// The bridge process with its card in a vpcd reader; killed (and reaped) when dropped, which
/// takes the card out.
pub struct Bridge {
    child: Child,
    log: PathBuf,
    /// The ATR libcacard gives its card, in upper-case hex.
    pub atr: String,
}

impl Bridge {
    /// Starts the bridge on vpcd's `port` and returns once it says the card is plugged in
    /// ("connected"); fails the test, with its log, after SETTLE_LIMIT. Its stderr (every APDU)
    /// goes to `log`.
    pub fn insert(files: &CardFiles, port: u16, log: &Path) -> Self {
        let child = Command::new(bridge_binary())
            .arg(&files.nssdb)
            .arg(port.to_string())
            .env("SOFTHSM2_CONF", &files.softhsm_conf)
            .env("VIRT_CAC_TRACE", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(log).unwrap())
            .spawn()
            .unwrap();
        let mut bridge = Bridge {
            child,
            log: log.to_path_buf(),
            atr: String::new(),
        };
        let stdout = bridge.child.stdout.take().unwrap();
        let (lines, from_bridge) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                if lines.send(line.unwrap_or_default()).is_err() {
                    return;
                }
            }
        });
        let deadline = Instant::now() + SETTLE_LIMIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match from_bridge.recv_timeout(left) {
                Ok(line) if line == "connected" => break,
                Ok(line) => {
                    if let Some(hex) = line.strip_prefix("atr: ") {
                        bridge.atr = hex.to_string();
                    }
                }
                Err(e) => panic!(
                    "the bridge did not plug its card into vpcd within {SETTLE_LIMIT:?} ({e}); \
                     exit: {:?}; its log:\n{}",
                    bridge.child.try_wait(),
                    bridge.log()
                ),
            }
        }
        assert!(!bridge.atr.is_empty(), "the bridge printed no ATR");
        bridge
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Bridge {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A pcscd of the test's own with vpcd's virtual readers, and the card made from `files`
/// plugged into the first one (its log in `dir`); returns once the reader shows the card.
pub fn plug_in(files: &CardFiles, dir: &Path) -> (Pcscd, Bridge) {
    let mut pcscd = Pcscd::start(true);
    pcscd.readers_when("the virtual readers", |l| virtual_readers(l).len() >= 2);
    let bridge = Bridge::insert(files, pcscd.port.unwrap(), &dir.join("virt_cac.log"));
    pcscd.readers_when("the virtual CAC in its reader", |l| {
        l.iter()
            .any(|r| r["name"] == READER && r["card_present"] == true)
    });
    (pcscd, bridge)
}
