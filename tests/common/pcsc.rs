//! A pcscd of the test's own (never the system's) with vsmartcard's vpcd driver, which shows
//! "Virtual PCD 00 00" and "00 01" readers that take their card over TCP; and a time limit for
//! every child process a test runs against it.
//!
//! How the private pcscd is set up: pcscd 1.9 has no option for its socket path, but it takes a
//! listening socket from systemd-style activation (`LISTEN_FDS`/`LISTEN_PID`), and libpcsclite
//! (so the `p11smime` child, and OpenSC inside it) connects where `PCSCLITE_CSOCK_NAME` says.
//! [`Pcscd::start`] binds a socket in a temporary directory, hands it to pcscd as fd 3, and runs
//! it in the foreground with `-c DIR`, a reader configuration of its own naming vpcd on a free
//! port. pcscd still writes and, on exit, removes `/run/pcscd/pcscd.pid` (a fixed path), and
//! needs `/run/pcscd` to exist or be creatable: root, as on these machines and in CI. A real USB
//! reader plugged into the machine shows up too.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use super::report;
use serde_json::Value;
use std::io::Read;
use std::net::TcpListener;
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixListener;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The longest any p11smime run may take before the test kills it and fails.
pub const RUN_LIMIT: Duration = Duration::from_secs(20);
/// How long pcscd gets to show its readers, or to notice a card.
pub const SETTLE_LIMIT: Duration = Duration::from_secs(15);

/// `pcscd` from PATH or the usual sbin directories (not on a normal user's PATH).
pub fn pcscd_path() -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/usr/local/sbin", "/sbin"].map(PathBuf::from))
        .map(|d| d.join("pcscd"))
        .find(|p| p.is_file())
        .expect("pcscd is not installed (package pcscd): run scripts/install-deps")
}

/// The vpcd driver, as its package's reader configuration names it.
pub fn vpcd_driver() -> PathBuf {
    let conf = std::fs::read_to_string("/etc/reader.conf.d/vpcd")
        .expect("vpcd is not installed (package vsmartcard-vpcd): run scripts/install-deps");
    conf.lines()
        .find_map(|l| l.trim().strip_prefix("LIBPATH"))
        .map(|p| PathBuf::from(p.trim()))
        .filter(|p| p.is_file())
        .unwrap_or_else(|| panic!("/etc/reader.conf.d/vpcd names no driver that exists: {conf}"))
}

/// A TCP port that is free, with the next one free too (vpcd listens on PORT and PORT+1 for
/// its two readers).
pub fn free_port_pair() -> u16 {
    for _ in 0..50 {
        let first = TcpListener::bind("0.0.0.0:0").unwrap();
        let port = first.local_addr().unwrap().port();
        if port < u16::MAX && TcpListener::bind(("0.0.0.0", port + 1)).is_ok() {
            return port;
        }
    }
    panic!("no two free consecutive TCP ports");
}

/// A pcscd of our own, stopped when dropped.
pub struct Pcscd {
    child: Child,
    dir: tempfile::TempDir,
    /// The socket clients reach it on (`PCSCLITE_CSOCK_NAME`).
    pub socket: PathBuf,
    /// vpcd's port for "Virtual PCD 00 00" (00 01 is one more), when vpcd is configured.
    pub port: Option<u16>,
}

impl Pcscd {
    /// With `vpcd`, pcscd shows vpcd's two virtual readers; without, no reader configuration.
    pub fn start(vpcd: bool) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let conf = dir.path().join("reader.conf.d");
        std::fs::create_dir(&conf).unwrap();
        let port = vpcd.then(free_port_pair);
        if let Some(port) = port {
            std::fs::write(
                conf.join("vpcd"),
                format!(
                    "FRIENDLYNAME \"Virtual PCD\"\nDEVICENAME /dev/null:{port}\nLIBPATH {}\nCHANNELID {port}\n",
                    vpcd_driver().display()
                ),
            )
            .unwrap();
        }
        let socket = dir.path().join("pcscd.comm");
        let listener = UnixListener::bind(&socket).unwrap();
        let log = std::fs::File::create(dir.path().join("pcscd.log")).unwrap();
        // The socket arrives as stdin; sh moves it to fd 3 and execs pcscd under its own pid,
        // which is what LISTEN_PID must name.
        let child = Command::new("sh")
            .arg("-c")
            .arg(r#"exec 3<&0 0</dev/null; LISTEN_PID=$$ LISTEN_FDS=1 exec "$0" -f -c "$1""#)
            .arg(pcscd_path())
            .arg(&conf)
            .env_remove("LISTEN_FDNAMES")
            .stdin(Stdio::from(OwnedFd::from(listener)))
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        Pcscd {
            child,
            dir,
            socket,
            port,
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("pcscd.log")).unwrap_or_default()
    }

    /// Fails the test at once, with pcscd's log, if pcscd has exited (e.g. not root and no
    /// `/run/pcscd` to write in).
    pub fn assert_running(&mut self) {
        if let Ok(Some(status)) = self.child.try_wait() {
            panic!("pcscd exited ({status}); its log:\n{}", self.log());
        }
    }

    /// A `p11smime ARGS` command that talks to this pcscd (run it with [`run_limited`]).
    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_p11smime"));
        cmd.args(args).env("PCSCLITE_CSOCK_NAME", &self.socket);
        cmd
    }

    /// `p11smime ARGS` talking to this pcscd.
    pub fn p11smime(&self, args: &[&str]) -> Output {
        run_limited(self.command(args))
    }

    /// `readers --json` once `ready` accepts what it lists (pcscd is still loading its readers,
    /// or has not yet noticed a card); fails the test, with pcscd's log, after SETTLE_LIMIT.
    pub fn readers_when(&mut self, what: &str, ready: impl Fn(&[Value]) -> bool) -> Vec<Value> {
        let deadline = Instant::now() + SETTLE_LIMIT;
        loop {
            self.assert_running();
            let out = self.p11smime(&["readers", "--json"]);
            if out.status.success() {
                let list: Value = serde_json::from_slice(&out.stdout).unwrap();
                let list = list.as_array().unwrap().clone();
                if ready(&list) {
                    return list;
                }
            }
            assert!(
                Instant::now() < deadline,
                "{what}: not seen within {SETTLE_LIMIT:?}; last run: {}\npcscd log:\n{}",
                report(&out),
                self.log()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for Pcscd {
    fn drop(&mut self) {
        // SIGTERM lets pcscd shut down cleanly; SIGKILL if it has not within a few seconds.
        let _ = Command::new("kill")
            .arg(self.child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `cmd` with no stdin, collecting its output; kills it and fails after RUN_LIMIT.
pub fn run_limited(mut cmd: Command) -> Output {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let reader = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = pipe.read_to_end(&mut buf);
            buf
        })
    };
    let stdout = reader(Box::new(child.stdout.take().unwrap()));
    let stderr = reader(Box::new(child.stderr.take().unwrap()));
    let deadline = Instant::now() + RUN_LIMIT;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{cmd:?} did not finish within {RUN_LIMIT:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Output {
        status,
        stdout: stdout.join().unwrap(),
        stderr: stderr.join().unwrap(),
    }
}

/// The readers whose name says they are vpcd's.
pub fn virtual_readers(list: &[Value]) -> Vec<&Value> {
    list.iter()
        .filter(|r| r["name"].as_str().unwrap_or("").starts_with("Virtual PCD"))
        .collect()
}

/// The reader called `name` in a `readers --json` list; fails the test if there is none.
pub fn reader<'a>(list: &'a [Value], name: &str) -> &'a Value {
    list.iter()
        .find(|r| r["name"] == name)
        .unwrap_or_else(|| panic!("no reader {name:?} in {list:?}"))
}
