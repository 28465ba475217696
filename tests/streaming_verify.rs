//! Large signed messages are verified as they are read: opaque signed-data from
//! `openssl cms -sign -nodetach -binary -outform DER`, with and without `-stream` (DER, and BER
//! with indefinite lengths and a chunked content), from a file and from stdin, and a detached
//! `.p7s` with a large `--content`. `-o` gives exactly the signed content; a message changed at
//! the end of its content (after megabytes of it were read) or cut short gives no content at
//! all: no file, no temporary file, nothing on stdout. Memory and speed are measured apart
//! (`/usr/bin/time`), not here.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use common::*;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// 24 MiB: more than the in-memory part of the spool (4 MiB) and many read buffers.
const SIZE: usize = 24 << 20;

struct Big {
    dir: tempfile::TempDir,
    content: Vec<u8>,
    content_path: PathBuf,
}

impl Big {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let content = varied_bytes(SIZE);
        let content_path = dir.path().join("big.bin");
        std::fs::write(&content_path, &content).unwrap();
        Big {
            dir,
            content,
            content_path,
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn write(&self, name: &str, bytes: &[u8]) -> PathBuf {
        let p = self.path(name);
        std::fs::write(&p, bytes).unwrap();
        p
    }

    /// `openssl cms -sign -binary -outform DER` of the big file by alice, with `opts`.
    fn sign(&self, name: &str, opts: &[&str]) -> PathBuf {
        let out = self.path(name);
        run_ok(
            Command::new("openssl")
                .args([
                    "cms", "-sign", "-binary", "-outform", "DER", "-md", "sha256",
                ])
                .args(opts)
                .arg("-signer")
                .arg(fixture("alice-sign.pem"))
                .arg("-inkey")
                .arg(fixture("alice-sign.key.pem"))
                .arg("-in")
                .arg(&self.content_path)
                .arg("-out")
                .arg(&out),
        );
        out
    }

    /// `p11smime verify --no-system-ca --ca CA ARGS`, the message on stdin when `stdin` is given.
    fn verify(&self, args: &[&str], stdin: Option<&Path>) -> Output {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_p11smime"));
        cmd.env_remove("P11SMIME_MODULE")
            .env_remove("P11SMIME_TOKEN")
            .args(["verify", "--no-system-ca", "--revocation", "off", "--ca"])
            .arg(fixture("ca.pem"))
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let Some(msg) = stdin else {
            return cmd.stdin(Stdio::null()).output().unwrap();
        };
        output_with_stdin(&mut cmd, msg)
    }

    fn assert_content(&self, got: &[u8], what: &str) {
        assert!(
            got.len() == self.content.len() && got == self.content.as_slice(),
            "{what}: {} bytes of content, want {}",
            got.len(),
            self.content.len()
        );
    }

    /// No output file and no temporary file left beside it.
    fn assert_nothing_written(&self, to: &Path) {
        assert!(!to.exists(), "{} was written", to.display());
        let leftovers: Vec<_> = std::fs::read_dir(self.dir.path())
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().ends_with(".part"))
            .collect();
        assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");
    }

    /// `bytes` with one bit flipped near the end of the content: where the last 32 bytes of
    /// the content are in the message (one chunk, whatever the encoding).
    fn flipped_at_the_end(&self, bytes: &[u8]) -> Vec<u8> {
        let tail = &self.content[self.content.len() - 32..];
        let at = find(bytes, tail, 0).expect("the content's end is in the message");
        let mut changed = bytes.to_vec();
        changed[at + 20] ^= 0x01;
        changed
    }
}

/// Exit 0, "Good signature, trusted" on stderr.
fn assert_good(out: &Output, what: &str) {
    assert!(out.status.success(), "{what}: {}", report(out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("Good signature, trusted"),
        "{what}: {stderr}"
    );
}

#[test]
fn large_opaque_signed_data_verifies_and_gives_its_content() {
    let big = Big::new();
    for (name, opts) in [
        ("opaque.der", vec!["-nodetach"]),
        ("opaque-stream.ber", vec!["-nodetach", "-stream"]),
    ] {
        let msg = big.sign(name, &opts);
        let first = std::fs::read(&msg).unwrap()[..2].to_vec();
        let expected_first = if name.ends_with(".ber") {
            [0x30, 0x80]
        } else {
            [0x30, 0x84]
        };
        assert_eq!(first, expected_first, "{name}: not the encoding meant");

        let to = big.path(&format!("{name}.out"));
        let out = big.verify(&["-o", path_str(&to), path_str(&msg)], None);
        assert_good(&out, &format!("{name} -o FILE"));
        assert!(out.stdout.is_empty(), "{name}: stdout without -o -");
        big.assert_content(&std::fs::read(&to).unwrap(), &format!("{name} -o FILE"));

        let out = big.verify(&["-o", "-"], Some(&msg));
        assert_good(&out, &format!("{name} from stdin, -o -"));
        big.assert_content(&out.stdout, &format!("{name} from stdin, -o -"));

        let out = big.verify(&["--json"], Some(&msg));
        assert!(out.status.success(), "{name} --json: {}", report(&out));
        let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(json["form"], "signed-data", "{name}");
        assert_eq!(json["all_good"], true, "{name}");
    }
}

#[test]
fn large_opaque_signed_data_changed_at_the_end_gives_no_content() {
    let big = Big::new();
    for (name, opts) in [
        ("opaque.der", vec!["-nodetach"]),
        ("opaque-stream.ber", vec!["-nodetach", "-stream"]),
    ] {
        let good = std::fs::read(big.sign(name, &opts)).unwrap();
        let cases = [
            ("changed", big.flipped_at_the_end(&good), 7),
            ("cut in the content", good[..good.len() * 2 / 3].to_vec(), 3),
            (
                "cut in the signer info",
                good[..good.len() - 40].to_vec(),
                3,
            ),
        ];
        for (what, bytes, code) in cases {
            let what = format!("{name} {what}");
            let msg = big.write("broken.p7m", &bytes);
            let to = big.path("broken.out");
            let out = big.verify(&["-o", path_str(&to), path_str(&msg)], None);
            let stderr = assert_fails(&out, code, &what);
            if code == 7 {
                assert!(stderr.contains("BAD signature"), "{what}: {stderr}");
                assert!(
                    stderr.contains("the message was changed"),
                    "{what}: {stderr}"
                );
            } else {
                assert!(stderr.contains("truncated"), "{what}: {stderr}");
            }
            big.assert_nothing_written(&to);

            let out = big.verify(&["-o", "-"], Some(&msg));
            assert_fails(&out, code, &format!("{what}, from stdin"));
            assert!(
                out.stdout.is_empty(),
                "{what} from stdin: {} bytes of content reached stdout",
                out.stdout.len()
            );
        }
    }
}

#[test]
fn large_detached_content_verifies_and_a_changed_one_fails() {
    let big = Big::new();
    let p7s = big.sign("detached.p7s", &[]);
    assert!(
        std::fs::metadata(&p7s).unwrap().len() < 64 << 10,
        "the signature carries the content"
    );
    let content = path_str(&big.content_path).to_string();

    let to = big.path("detached.out");
    let out = big.verify(
        &["--content", &content, "-o", path_str(&to), path_str(&p7s)],
        None,
    );
    assert_good(&out, "detached -o FILE");
    big.assert_content(&std::fs::read(&to).unwrap(), "detached -o FILE");

    let out = big.verify(&["--content", &content, "-o", "-"], Some(&p7s));
    assert_good(&out, "detached, signature from stdin");
    big.assert_content(&out.stdout, "detached, signature from stdin");

    let mut changed = big.content.clone();
    let last = changed.len() - 1;
    changed[last] ^= 0x80;
    let changed = big.write("changed.bin", &changed);
    let to = big.path("changed.out");
    let out = big.verify(
        &[
            "--content",
            path_str(&changed),
            "-o",
            path_str(&to),
            path_str(&p7s),
        ],
        None,
    );
    let stderr = assert_fails(&out, 7, "changed detached content");
    assert!(stderr.contains("the message was changed"), "{stderr}");
    assert!(out.stdout.is_empty());
    big.assert_nothing_written(&to);

    // The opaque message with --content: the same file passes, another one (the same but the
    // last byte) is refused without any content let out.
    let der = big.sign("opaque.der", &["-nodetach"]);
    let out = big.verify(&["--content", &content, "-o", "-", path_str(&der)], None);
    assert_good(&out, "opaque with its own content as --content");
    big.assert_content(&out.stdout, "opaque with its own content as --content");
    let out = big.verify(
        &["--content", path_str(&changed), "-o", "-", path_str(&der)],
        None,
    );
    let stderr = assert_fails(&out, 7, "opaque with another --content");
    assert!(
        stderr.contains("differs from the --content file"),
        "{stderr}"
    );
    assert!(out.stdout.is_empty());
}
