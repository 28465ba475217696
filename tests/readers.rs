//! `p11smime readers` against real parts: each test starts its own pcscd (never the system's),
//! which loads vsmartcard's vpcd driver and so shows "Virtual PCD" readers; a fake card written
//! here plugs into them over vpcd's TCP protocol. `common::pcsc` has how the private pcscd is
//! set up (a socket handed over with `LISTEN_FDS`, root for `/run/pcscd`). A real USB reader
//! plugged into the machine shows up too; the assertions look at the virtual readers only.

#![cfg(target_os = "linux")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use common::pcsc::{Pcscd, SETTLE_LIMIT, reader, run_limited, virtual_readers};
use common::{assert_fails, report};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// ATR of a YubiKey 5 NFC on USB, which `readers` knows.
const YUBIKEY_ATR: &str = "3BFD1300008131FE158073C021C057597562694B657940";
/// ATR of a JavaCard (Fidesmo) that `readers` has no entry for.
const OTHER_ATR: &str = "3BF81300008131FE4546494445534D4F318E";

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
