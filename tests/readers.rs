//! `p11smime readers` against real parts: each test starts its own pcscd (never the system's),
//! which loads vsmartcard's vpcd driver and so shows "Virtual PCD" readers; a fake card written
//! here plugs into them over vpcd's TCP protocol.
//!
//! How the private pcscd is set up: pcscd 1.9 has no option for its socket path, but it takes a
//! listening socket from systemd-style activation (`LISTEN_FDS`/`LISTEN_PID`), and libpcsclite
//! (so the `p11smime` child) connects where `PCSCLITE_CSOCK_NAME` says. The test binds a socket
//! in a temporary directory, hands it to pcscd as fd 3, and runs it in the foreground with
//! `-c DIR`, a reader configuration of its own naming vpcd on a free port. pcscd still writes and,
//! on exit, removes `/run/pcscd/pcscd.pid` (a fixed path), and needs `/run/pcscd` to exist or be
//! creatable: root, as on these machines and in CI. A real USB reader plugged into the machine
//! shows up too; the assertions look at the virtual readers only.

#![cfg(target_os = "linux")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use common::{assert_fails, report};
use serde_json::Value;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixListener;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The longest any p11smime run may take before the test kills it and fails.
const RUN_LIMIT: Duration = Duration::from_secs(20);
/// How long pcscd gets to show its readers, or to notice a card.
const SETTLE_LIMIT: Duration = Duration::from_secs(15);

/// ATR of a YubiKey 5 NFC on USB, which `readers` knows.
const YUBIKEY_ATR: &str = "3BFD1300008131FE158073C021C057597562694B657940";
/// ATR of a JavaCard (Fidesmo) that `readers` has no entry for.
const OTHER_ATR: &str = "3BF81300008131FE4546494445534D4F318E";

/// `pcscd` from PATH or the usual sbin directories (not on a normal user's PATH).
fn pcscd_path() -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/usr/local/sbin", "/sbin"].map(PathBuf::from))
        .map(|d| d.join("pcscd"))
        .find(|p| p.is_file())
        .expect("pcscd is not installed (package pcscd): run scripts/install-deps")
}

/// The vpcd driver, as its package's reader configuration names it.
fn vpcd_driver() -> PathBuf {
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
fn free_port_pair() -> u16 {
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
struct Pcscd {
    child: Child,
    dir: tempfile::TempDir,
    socket: PathBuf,
    /// vpcd's port for "Virtual PCD 00 00" (00 01 is one more), when vpcd is configured.
    port: Option<u16>,
}

impl Pcscd {
    /// With `vpcd`, pcscd shows vpcd's two virtual readers; without, no reader configuration.
    fn start(vpcd: bool) -> Self {
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

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("pcscd.log")).unwrap_or_default()
    }

    /// Fails the test at once, with pcscd's log, if pcscd has exited (e.g. not root and no
    /// `/run/pcscd` to write in).
    fn assert_running(&mut self) {
        if let Ok(Some(status)) = self.child.try_wait() {
            panic!("pcscd exited ({status}); its log:\n{}", self.log());
        }
    }

    /// `p11smime ARGS` talking to this pcscd.
    fn p11smime(&self, args: &[&str]) -> Output {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_p11smime"));
        cmd.args(args).env("PCSCLITE_CSOCK_NAME", &self.socket);
        run_limited(cmd)
    }

    /// `readers --json` once `ready` accepts what it lists (pcscd is still loading its readers,
    /// or has not yet noticed a card); fails the test, with pcscd's log, after SETTLE_LIMIT.
    fn readers_when(&mut self, what: &str, ready: impl Fn(&[Value]) -> bool) -> Vec<Value> {
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
fn run_limited(mut cmd: Command) -> Output {
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

/// A card in a vpcd reader: connects to vpcd's port and answers as vpcd expects. Every message
/// is a 2-byte big-endian length and the data; one byte is a control (0 power off, 1 power on,
/// 2 reset: no answer; 4: answer with the ATR), anything longer is an APDU (answered 6D00,
/// instruction not supported). Removed (disconnected) when dropped.
struct FakeCard {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl FakeCard {
    fn insert(port: u16, atr_hex: &str) -> Self {
        let atr = hex::decode(atr_hex).unwrap();
        let deadline = Instant::now() + SETTLE_LIMIT;
        let stream = loop {
            match TcpStream::connect(("127.0.0.1", port)) {
                Ok(s) => break s,
                Err(_) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(100));
                }
                Err(e) => panic!("cannot connect to vpcd on port {port}: {e}"),
            }
        };
        stream
            .set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || serve(stream, &atr, &stop))
        };
        FakeCard {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for FakeCard {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Answers vpcd until it hangs up or `stop` is set.
fn serve(mut stream: TcpStream, atr: &[u8], stop: &AtomicBool) {
    while let Some(message) = read_frame(&mut stream, stop) {
        let reply: &[u8] = match message.as_slice() {
            [4] => atr,
            [_] => continue,
            _ => &[0x6D, 0x00],
        };
        let mut frame = (reply.len() as u16).to_be_bytes().to_vec();
        frame.extend_from_slice(reply);
        if stream.write_all(&frame).is_err() {
            return;
        }
    }
}

/// One length-prefixed message, or `None` at end of stream, on error or when stopped.
fn read_frame(stream: &mut TcpStream, stop: &AtomicBool) -> Option<Vec<u8>> {
    let mut len = [0u8; 2];
    read_exact_or_stop(stream, &mut len, stop)?;
    let mut message = vec![0u8; usize::from(u16::from_be_bytes(len))];
    read_exact_or_stop(stream, &mut message, stop)?;
    Some(message)
}

fn read_exact_or_stop(stream: &mut TcpStream, buf: &mut [u8], stop: &AtomicBool) -> Option<()> {
    let mut got = 0;
    while got < buf.len() {
        if stop.load(Ordering::Relaxed) {
            return None;
        }
        match stream.read(&mut buf[got..]) {
            Ok(0) => return None,
            Ok(n) => got += n,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return None,
        }
    }
    Some(())
}

fn virtual_readers(list: &[Value]) -> Vec<&Value> {
    list.iter()
        .filter(|r| r["name"].as_str().unwrap_or("").starts_with("Virtual PCD"))
        .collect()
}

fn reader<'a>(list: &'a [Value], name: &str) -> &'a Value {
    list.iter()
        .find(|r| r["name"] == name)
        .unwrap_or_else(|| panic!("no reader {name:?} in {list:?}"))
}

#[test]
fn empty_virtual_readers_are_listed_without_a_card() {
    let mut pcscd = Pcscd::start(true);
    let list = pcscd.readers_when("the virtual readers", |l| virtual_readers(l).len() >= 2);
    let virtual_ = virtual_readers(&list);
    for r in &virtual_ {
        assert_eq!(r["card_present"], false, "{r}");
        assert!(r["atr"].is_null(), "{r}");
        assert!(r["card_type"].is_null(), "{r}");
    }
    reader(&list, "Virtual PCD 00 00");
    reader(&list, "Virtual PCD 00 01");

    let out = pcscd.p11smime(&["readers"]);
    assert!(out.status.success(), "{}", report(&out));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains("reader: Virtual PCD 00 00\n  card:  none\n"),
        "{text}"
    );
}

#[test]
fn a_card_shows_its_atr_and_type() {
    let mut pcscd = Pcscd::start(true);
    pcscd.readers_when("the virtual readers", |l| virtual_readers(l).len() >= 2);
    let port = pcscd.port.unwrap();
    let _yubikey = FakeCard::insert(port, YUBIKEY_ATR);
    let _other = FakeCard::insert(port + 1, OTHER_ATR);
    let list = pcscd.readers_when("both cards", |l| {
        virtual_readers(l)
            .iter()
            .filter(|r| r["card_present"] == true)
            .count()
            == 2
    });

    let yk = reader(&list, "Virtual PCD 00 00");
    assert_eq!(yk["atr"], YUBIKEY_ATR, "{yk}");
    assert_eq!(yk["card_type"], "YubiKey", "{yk}");
    assert_eq!(yk["card_model"], "YubiKey 5 NFC", "{yk}");
    assert_eq!(yk["card_mute"], false, "{yk}");
    assert_eq!(yk["in_use"], false, "{yk}");
    let other = reader(&list, "Virtual PCD 00 01");
    assert_eq!(other["atr"], OTHER_ATR, "{other}");
    assert_eq!(other["card_type"], "unknown", "{other}");
    assert!(other["card_model"].is_null(), "{other}");

    let out = pcscd.p11smime(&["readers"]);
    assert!(out.status.success(), "{}", report(&out));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains(
            "reader: Virtual PCD 00 00\n  card:  YubiKey (YubiKey 5 NFC)\n  \
             ATR:   3B FD 13 00 00 81 31 FE 15 80 73 C0 21 C0 57 59 75 62 69 4B 65 79 40\n"
        ),
        "{text}"
    );
    assert!(text.contains("  card:  unknown\n"), "{text}");
}

#[test]
fn no_pcscd_is_exit_6_with_how_to_start_it() {
    let dir = tempfile::tempdir().unwrap();
    let nowhere = dir.path().join("nothing-listens-here");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_p11smime"));
    cmd.args(["readers", "--json"])
        .env("PCSCLITE_CSOCK_NAME", &nowhere);
    let out = run_limited(cmd);
    let stderr = assert_fails(&out, 6, "readers without pcscd");
    assert!(out.stdout.is_empty(), "{}", report(&out));
    assert!(stderr.contains("pcscd is not running"), "{stderr}");
    assert!(stderr.contains(&nowhere.display().to_string()), "{stderr}");
    assert!(
        stderr.contains("sudo systemctl start pcscd.socket"),
        "{stderr}"
    );
    assert!(stderr.contains("apt-get install pcscd"), "{stderr}");
}

#[test]
fn no_reader_is_exit_6_and_says_what_to_check() {
    let mut pcscd = Pcscd::start(false);
    let deadline = Instant::now() + SETTLE_LIMIT;
    let out = loop {
        pcscd.assert_running();
        let out = pcscd.p11smime(&["readers"]);
        // Until pcscd answers, the client may see no service yet.
        if !String::from_utf8_lossy(&out.stderr).contains("not running")
            || Instant::now() > deadline
        {
            break out;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    if out.status.success() {
        // A real reader on this machine: pcscd found it over USB, so there is no "no reader".
        eprintln!("skipped: this machine has a reader: {}", report(&out));
        return;
    }
    let stderr = assert_fails(&out, 6, "readers with no reader");
    assert!(stderr.contains("no smart-card reader found"), "{stderr}");
    assert!(stderr.contains("plug the reader"), "{stderr}");
    assert!(stderr.contains("libccid"), "{stderr}");
}
