//! Large messages are decrypted as they are read (DER, BER with indefinite lengths and chunked
//! content, AES-CBC and AES-GCM, bare or as PEM or an S/MIME mail, from a file or stdin), and a message that turns out broken at
//! its end never lets plaintext out: to stdout nothing at all (the output waits in a spool until
//! the padding or the tag is checked), with `-o` no file and no temporary file. Memory and speed
//! are measured by `scripts/bench`, not here.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use common::*;

use base64::Engine;
use std::path::{Path, PathBuf};
use std::process::Output;

/// 24 MiB: more than the in-memory part of the spool (4 MiB) and many read buffers.
const SIZE: usize = 24 << 20;

struct Big {
    token: TestToken,
    plain: PathBuf,
}

impl Big {
    fn new() -> Self {
        let token = TestToken::new();
        let plain = token.write("big.bin", &varied_bytes(SIZE));
        Big { token, plain }
    }

    /// `openssl cms -encrypt -binary` of the big file to alice, DER, with `opts`.
    fn encrypt(&self, name: &str, opts: &[&str]) -> PathBuf {
        self.encrypt_as(name, "DER", opts)
    }

    /// As [`Big::encrypt`], in `outform` (DER, PEM, or SMIME: a mail message).
    fn encrypt_as(&self, name: &str, outform: &str, opts: &[&str]) -> PathBuf {
        let out = self.token.path(name);
        run_ok(
            std::process::Command::new("openssl")
                .args(["cms", "-encrypt", "-binary", "-outform", outform])
                .args(opts)
                .arg("-in")
                .arg(&self.plain)
                .arg("-out")
                .arg(&out)
                .arg(fixture("alice-enc.pem")),
        );
        out
    }

    fn decrypt_file(&self, msg: &Path, to: Option<&Path>) -> Output {
        let mut args = vec!["decrypt", "--pin", "env:TEST_PIN", path_str(msg)];
        if let Some(to) = to {
            args.extend(["-o", path_str(to)]);
        }
        self.token.p11smime(&args).output().unwrap()
    }

    fn decrypt_stdin(&self, msg: &Path) -> Output {
        output_with_stdin(
            &mut self.token.p11smime(&["decrypt", "--pin", "env:TEST_PIN"]),
            msg,
        )
    }

    fn assert_same(&self, got: &[u8], what: &str) {
        let want = std::fs::read(&self.plain).unwrap();
        assert!(
            got.len() == want.len() && got == want,
            "{what}: {} bytes, want {}",
            got.len(),
            want.len()
        );
    }

    /// No plaintext and no temporary file left next to `to`.
    fn assert_nothing_written(&self, to: &Path) {
        assert!(!to.exists(), "{} was written", to.display());
        let leftovers: Vec<_> = std::fs::read_dir(to.parent().unwrap())
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().ends_with(".part"))
            .collect();
        assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");
    }
}

#[test]
fn large_messages_in_every_encoding_come_out_whole() {
    let big = Big::new();
    let cases = [
        ("cbc.der", vec!["-aes256"]),
        ("cbc-stream.ber", vec!["-aes256", "-stream"]),
        ("gcm.der", vec!["-aes-256-gcm"]),
        ("gcm-stream.ber", vec!["-aes-128-gcm", "-stream"]),
    ];
    for (name, opts) in &cases {
        let msg = big.encrypt(name, opts);
        let out = big.decrypt_file(&msg, None);
        assert!(out.status.success(), "{name}: {}", report(&out));
        big.assert_same(&out.stdout, &format!("{name} to stdout"));

        let to = big.token.path(&format!("{name}.out"));
        let out = big.decrypt_file(&msg, Some(&to));
        assert!(out.status.success(), "{name} -o: {}", report(&out));
        big.assert_same(&std::fs::read(&to).unwrap(), &format!("{name} -o"));

        let out = big.decrypt_stdin(&msg);
        assert!(out.status.success(), "{name} stdin: {}", report(&out));
        big.assert_same(&out.stdout, &format!("{name} from stdin"));
    }
}

/// What a mail client pipes: the S/MIME mail (base64 body), and PEM, decrypted as read.
#[test]
fn large_mail_and_pem_messages_come_out_whole() {
    let big = Big::new();
    for (name, outform, opts) in [
        ("cbc.eml", "SMIME", vec!["-aes256"]),
        ("gcm.eml", "SMIME", vec!["-aes-256-gcm"]),
        ("cbc-stream.pem", "PEM", vec!["-aes128", "-stream"]),
    ] {
        let msg = big.encrypt_as(name, outform, &opts);
        let out = big.decrypt_stdin(&msg);
        assert!(out.status.success(), "{name} stdin: {}", report(&out));
        big.assert_same(&out.stdout, &format!("{name} from stdin"));
        let to = big.token.path(&format!("{name}.out"));
        let out = big.decrypt_file(&msg, Some(&to));
        assert!(out.status.success(), "{name} -o: {}", report(&out));
        big.assert_same(&std::fs::read(&to).unwrap(), &format!("{name} -o"));
    }
    // Broken near the end of the base64: a changed character (GCM: the tag fails; CBC has no
    // integrity), a character that is not base64, the text cut off: exit 3, and no plaintext
    // anywhere.
    let near_end = |mail: &[u8]| {
        let end = mail.len() - 200;
        end - mail[..end]
            .iter()
            .rev()
            .position(u8::is_ascii_alphanumeric)
            .unwrap()
            - 1
    };
    let mut changed = std::fs::read(big.token.path("gcm.eml")).unwrap();
    let at = near_end(&changed);
    changed[at] = if changed[at] == b'A' { b'B' } else { b'A' };
    let mail = std::fs::read(big.token.path("cbc.eml")).unwrap();
    let mut not_base64 = mail.clone();
    not_base64[near_end(&mail)] = b'*';
    for (what, bytes) in [
        ("a changed base64 character", changed),
        ("a character that is not base64", not_base64),
        ("cut off", mail[..mail.len() / 2 + 3].to_vec()),
    ] {
        let msg = big.token.write("broken.eml", &bytes);
        let out = big.decrypt_stdin(&msg);
        assert_fails(&out, 3, what);
        assert!(out.stdout.is_empty(), "{what}: plaintext reached stdout");
        let to = big.token.path("broken.out");
        let out = big.decrypt_file(&msg, Some(&to));
        assert_fails(&out, 3, &format!("{what}, -o"));
        big.assert_nothing_written(&to);
    }
}

#[test]
fn a_message_broken_at_its_end_lets_no_plaintext_out() {
    let big = Big::new();
    let cbc = std::fs::read(big.encrypt("cbc.der", &["-aes256"])).unwrap();
    let gcm = std::fs::read(big.encrypt("gcm.der", &["-aes-256-gcm"])).unwrap();
    let mut flipped = gcm.clone();
    let middle = flipped.len() / 2;
    flipped[middle] ^= 0x01;
    let mut bad_tag = gcm.clone();
    let last = bad_tag.len() - 1;
    bad_tag[last] ^= 0x80;
    let broken = [
        ("truncated CBC", cbc[..cbc.len() - 100].to_vec(), 3),
        (
            "CBC cut at a block boundary",
            cbc[..cbc.len() - 16].to_vec(),
            3,
        ),
        ("GCM with a changed byte", flipped, 3),
        ("GCM with a changed tag", bad_tag, 3),
        ("truncated GCM", gcm[..gcm.len() / 3].to_vec(), 3),
    ];
    // The forms read whole (here bare base64) keep the same rule: a padding found bad at the
    // very end (the padding-length byte flipped through the block before it) lets nothing out.
    let mut bad_padding = cbc.clone();
    let at = bad_padding.len() - 17;
    bad_padding[at] ^= 0x01;
    let text = base64::engine::general_purpose::STANDARD.encode(&bad_padding);
    let msg = big.token.write("bad-padding.b64", text.as_bytes());
    let out = big.decrypt_stdin(&msg);
    assert_fails(&out, 3, "bad padding, base64 read whole");
    assert!(
        out.stdout.is_empty(),
        "bad padding, base64 read whole: {} bytes reached stdout",
        out.stdout.len()
    );
    for (what, bytes, code) in broken {
        let msg = big.token.write("broken.p7m", &bytes);
        let out = big.decrypt_file(&msg, None);
        let err = assert_fails(&out, code, what);
        assert!(
            out.stdout.is_empty(),
            "{what}: {} bytes reached stdout",
            out.stdout.len()
        );
        assert!(!err.is_empty());
        let out = big.decrypt_stdin(&msg);
        assert_fails(&out, code, &format!("{what}, from stdin"));
        assert!(
            out.stdout.is_empty(),
            "{what} from stdin: plaintext reached stdout"
        );
        let to = big.token.path("broken.out");
        let out = big.decrypt_file(&msg, Some(&to));
        assert_fails(&out, code, &format!("{what}, -o"));
        big.assert_nothing_written(&to);
    }
}
