//! `readers --json` sees the virtual CAC go in and come out: with the card in "Virtual PCD 00 00"
//! the reader shows `card_present: true`; once the bridge is dropped (the card pulled out) the
//! same reader shows empty within a few seconds.
//!
//! Needs root and the packages `tests/virtual_cac.rs` needs (`scripts/install-deps`).

#![cfg(target_os = "linux")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use common::pcsc::reader;
use common::report;
use common::virt_cac::{CardFiles, READER, plug_in};
use serde_json::Value;
use std::time::{Duration, Instant};

/// How long pcscd may take to see the card gone.
const REMOVAL_LIMIT: Duration = Duration::from_secs(5);

#[test]
fn readers_shows_the_card_leave() {
    let dir = tempfile::tempdir().unwrap();
    let files = CardFiles::make(dir.path());
    let (mut pcscd, bridge) = plug_in(&files, dir.path());
    let list = pcscd.readers_when("the virtual CAC in its reader", |l| !l.is_empty());
    assert_eq!(reader(&list, READER)["card_present"], true, "{list:?}");

    drop(bridge);
    let removed = Instant::now();
    loop {
        pcscd.assert_running();
        let out = pcscd.p11smime(&["readers", "--json"]);
        assert!(out.status.success(), "{}", report(&out));
        let list: Value = serde_json::from_slice(&out.stdout).unwrap();
        let list = list.as_array().unwrap();
        if reader(list, READER)["card_present"] == false {
            eprintln!(
                "the reader showed empty {:?} after removal",
                removed.elapsed()
            );
            break;
        }
        assert!(
            removed.elapsed() < REMOVAL_LIMIT,
            "the reader still shows a card {REMOVAL_LIMIT:?} after removal: {list:?}\npcscd log:\n{}",
            pcscd.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}
