//! A large batch: a Maildir (cur/ and new/) and an mbox, 200 messages in all, made at test time
//! with openssl, with a few broken messages (truncated CMS, bad base64, one for bob whose key is
//! not on the token) and a few plain ones; decrypted in one run through pkcs11-spy: one login,
//! every good message readable, every plain one unchanged, every broken one reported, exit 8.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use common::*;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

const TOTAL: usize = 200;
/// Messages 0..60 go to cur/, 60..100 to new/, 100..200 to the mbox.
const CUR_END: usize = 60;
const NEW_END: usize = 100;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    Good,
    Plain,
    Truncated,
    BadBase64,
    ForBob,
}

fn kind(n: usize) -> Kind {
    match n {
        3 | 70 | 120 | 199 => Kind::Plain,
        7 | 150 => Kind::Truncated,
        65 | 180 => Kind::BadBase64,
        40 | 130 => Kind::ForBob,
        _ => Kind::Good,
    }
}

fn body_text(n: usize) -> String {
    format!("Body number {n}.\nLine two of message {n}.\n")
}

fn headers(n: usize) -> String {
    format!("From: sender{n}@example.test\nSubject: message {n} of the large batch\n")
}

fn plain_message(n: usize) -> Vec<u8> {
    format!("{}Content-Type: text/plain\n\n{}", headers(n), body_text(n)).into_bytes()
}

/// The raw bytes of message `n`, as it sits in the mailbox.
fn make_message(dir: &Path, n: usize) -> Vec<u8> {
    let k = kind(n);
    if k == Kind::Plain {
        return plain_message(n);
    }
    let cert = match (k, n % 10) {
        (Kind::ForBob, _) => "bob-enc.pem",
        (_, 9) => "alice-retired.pem",
        _ => "alice-enc.pem",
    };
    let input = dir.join(format!("plain-{n}.txt"));
    std::fs::write(
        &input,
        format!("Content-Type: text/plain\n\n{}", body_text(n)),
    )
    .unwrap();
    let smime = run_ok(
        Command::new("openssl")
            .args(["cms", "-encrypt", "-aes128", "-in"])
            .arg(&input)
            .arg(fixture(cert)),
    )
    .stdout;
    let smime = String::from_utf8(smime).unwrap();
    let (head, b64) = smime
        .split_once("\n\n")
        .expect("openssl's S/MIME has a body");
    let b64 = match k {
        Kind::Truncated => {
            // Whole base64 lines, half of them: valid base64, a CMS object cut short.
            let lines: Vec<&str> = b64.lines().collect();
            format!("{}\n", lines[..lines.len() / 2].join("\n"))
        }
        Kind::BadBase64 => "!!!! this is @@ not base64 ####\n***\n".to_string(),
        _ => b64.to_string(),
    };
    format!("{}{head}\n\n{b64}", headers(n)).into_bytes()
}

fn maildir_name(n: usize) -> String {
    if n < CUR_END {
        format!("cur/17000{n:05}.{n}.host:2,S")
    } else {
        format!("new/17000{n:05}.{n}.host")
    }
}

const FROM_LINE: &str = "From sender@example.test Sun Nov 22 05:00:00 2026\n";

/// Builds the Maildir and the mbox; returns their paths and each message's original bytes.
fn make_mail(dir: &Path) -> (PathBuf, PathBuf, Vec<Vec<u8>>) {
    let work = dir.join("work");
    std::fs::create_dir_all(&work).unwrap();
    // openssl is the slow part: a few threads, each its own share of the messages.
    let mut messages: Vec<Vec<u8>> = vec![Vec::new(); TOTAL];
    std::thread::scope(|s| {
        for (t, chunk) in messages.chunks_mut(TOTAL / 8).enumerate() {
            let work = &work;
            s.spawn(move || {
                for (i, slot) in chunk.iter_mut().enumerate() {
                    *slot = make_message(work, t * (TOTAL / 8) + i);
                }
            });
        }
    });
    let maildir = dir.join("in/Mail");
    for sub in ["cur", "new", "tmp"] {
        std::fs::create_dir_all(maildir.join(sub)).unwrap();
    }
    for (n, m) in messages.iter().enumerate().take(NEW_END) {
        std::fs::write(maildir.join(maildir_name(n)), m).unwrap();
    }
    let mut mbox = Vec::new();
    for m in &messages[NEW_END..] {
        mbox.extend_from_slice(FROM_LINE.as_bytes());
        mbox.extend_from_slice(m);
        mbox.extend_from_slice(b"\n");
    }
    let mbox_path = dir.join("in/archive.mbox");
    std::fs::write(&mbox_path, mbox).unwrap();
    (maildir, mbox_path, messages)
}

fn body_of(raw: &[u8], what: &str) -> String {
    let parsed = mail_parser::MessageParser::default()
        .parse(raw)
        .unwrap_or_else(|| panic!("{what}: not a message"));
    parsed
        .body_text(0)
        .unwrap_or_else(|| panic!("{what}: no text body: {}", String::from_utf8_lossy(raw)))
        .replace("\r\n", "\n")
}

#[test]
fn two_hundred_messages_with_one_login() {
    let token = TestToken::new();
    let started = Instant::now();
    let (maildir, mbox, messages) = make_mail(token.dir.path());
    let made = started.elapsed();
    assert!(made.as_secs() < 30, "making the mail took {made:?}");

    let out = token.path("out");
    let log = token.path("spy.log");
    let started = Instant::now();
    let result = token
        .p11smime(&[
            "decrypt",
            "--out-dir",
            path_str(&out),
            "--json",
            "--pin",
            "env:TEST_PIN",
            path_str(&maildir),
            path_str(&mbox),
        ])
        .env("P11SMIME_MODULE", spy_module())
        .env("PKCS11SPY", softhsm_module())
        .env("PKCS11SPY_OUTPUT", &log)
        .output()
        .unwrap();
    let took = started.elapsed();
    eprintln!("made 200 messages in {made:?}, decrypted them in {took:?}");
    let spy = std::fs::read_to_string(&log).unwrap_or_default();
    assert_eq!(
        count_calls(&spy, "C_Login"),
        1,
        "one login for 200 messages"
    );
    let stderr = assert_fails(&result, 8, "a batch with broken messages");
    let report: Value = serde_json::from_slice(&result.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", common::report(&result)));

    let count = |k: Kind| (0..TOTAL).filter(|&n| kind(n) == k).count();
    let broken = count(Kind::Truncated) + count(Kind::BadBase64) + count(Kind::ForBob);
    assert_eq!(report["decrypted"], count(Kind::Good), "{stderr}");
    assert_eq!(report["copied"], count(Kind::Plain), "{stderr}");
    assert_eq!(report["failed"], broken, "{stderr}");
    assert_eq!(report["not_processed"], 0);
    assert!(report["stopped"].is_null(), "{}", report["stopped"]);
    let items = report["items"].as_array().unwrap();
    assert_eq!(items.len(), TOTAL, "every message is an item");
    let sum: u64 = ["decrypted", "copied", "failed", "not_processed"]
        .iter()
        .map(|k| report[k].as_u64().unwrap())
        .sum();
    assert_eq!(sum, TOTAL as u64, "the counts add up");

    // The source each message has in the report.
    let source = |n: usize| {
        if n < NEW_END {
            maildir.join(maildir_name(n)).display().to_string()
        } else {
            format!("{}#{}", mbox.display(), n - NEW_END + 1)
        }
    };
    for n in 0..TOTAL {
        let src = source(n);
        let item = items
            .iter()
            .find(|i| i["source"] == src.as_str())
            .unwrap_or_else(|| panic!("no item for message {n} ({src})"));
        let expected = match kind(n) {
            Kind::Good => "decrypted",
            Kind::Plain => "copied",
            _ => "failed",
        };
        assert_eq!(item["status"], expected, "message {n}: {item}");
        if expected == "failed" {
            let error = item["error"].as_str().unwrap_or("");
            assert!(!error.is_empty(), "message {n}: no error: {item}");
            assert!(
                stderr.contains(&format!("p11smime: {src}: {error}")),
                "message {n} ({src}) not reported on stderr: {stderr}"
            );
        } else {
            assert!(item["error"].is_null(), "message {n}: {item}");
        }
        if kind(n) == Kind::ForBob {
            let error = item["error"].as_str().unwrap();
            assert!(
                error.contains("not encrypted to any key on the token"),
                "{error}"
            );
        }
    }

    // The Maildir: every good message readable, every plain one byte for byte, no leftovers.
    let out_maildir = out.join("Mail");
    for (n, original) in messages.iter().enumerate().take(NEW_END) {
        let raw = std::fs::read(out_maildir.join(maildir_name(n))).unwrap();
        match kind(n) {
            Kind::Good => {
                assert_eq!(body_of(&raw, &format!("message {n}")), body_text(n));
                let text = String::from_utf8_lossy(&raw);
                assert!(
                    text.contains(&format!("Subject: message {n} of the large batch")),
                    "message {n} keeps its headers: {text}"
                );
                assert!(!text.contains("pkcs7-mime"), "message {n}: {text}");
            }
            Kind::Plain => assert_eq!(&raw, original, "plain message {n} unchanged"),
            _ => assert_eq!(&raw, original, "broken message {n}: the original is kept"),
        }
    }
    assert_eq!(
        std::fs::read_dir(out_maildir.join("tmp")).unwrap().count(),
        0,
        "tmp/ is left empty"
    );
    let files = |sub: &str| std::fs::read_dir(out_maildir.join(sub)).unwrap().count();
    assert_eq!(files("cur"), CUR_END);
    assert_eq!(files("new"), NEW_END - CUR_END);

    // The mbox: 100 entries again, in order; the bodies hold no "From " line, so splitting on
    // From lines is exact.
    let text = std::fs::read_to_string(out.join("archive.mbox")).unwrap();
    let entries: Vec<&str> = text.split(FROM_LINE).filter(|e| !e.is_empty()).collect();
    assert_eq!(entries.len(), TOTAL - NEW_END, "{text}");
    for (i, entry) in entries.iter().enumerate() {
        let n = NEW_END + i;
        match kind(n) {
            Kind::Good => {
                // The entry ends with the blank line that separates mbox messages.
                assert_eq!(
                    body_of(entry.as_bytes(), &format!("mbox message {n}")).trim_end(),
                    body_text(n).trim_end()
                );
                assert!(!entry.contains("pkcs7-mime"), "message {n}: {entry}");
            }
            Kind::Plain => assert_eq!(
                entry.trim_end_matches('\n'),
                String::from_utf8_lossy(&messages[n]).trim_end_matches('\n'),
                "plain message {n} unchanged"
            ),
            _ => assert!(
                entry.contains("pkcs7-mime") && entry.contains(&headers(n)),
                "broken message {n}: the original is kept: {entry}"
            ),
        }
    }
}
