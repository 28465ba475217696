//! Large inputs are encrypted from the file in two passes (stdin spooled first), in bounded
//! memory, to exactly what the in-memory path would encrypt: a 24 MiB binary file, a 24 MiB
//! text file and a mail with a large binary attachment, AES-CBC and AES-GCM, DER, PEM and
//! S/MIME output, from a file and from stdin, are opened by `openssl cms -decrypt` and by
//! p11smime to the transport-safe entity the library makes of the same bytes in memory. The
//! output file appears only on success. Memory and speed are measured separately (see the
//! commit message of this test's commit), not here.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use common::large::{entity_of, mail_with_attachment, text};
use common::*;

use std::path::{Path, PathBuf};

/// 24 MiB: three times the threshold of the two-pass path (8 MiB).
const SIZE: usize = 24 << 20;

/// `p11smime encrypt --no-self` of `input` (a file, or stdin when `stdin`) to alice.
fn encrypt(token: &TestToken, input: &Path, stdin: bool, opts: &[&str], to: &Path) {
    let cert = fixture("alice-enc.pem");
    let mut args = vec![
        "encrypt",
        "--no-self",
        "-r",
        path_str(&cert),
        "-o",
        path_str(to),
    ];
    args.extend_from_slice(opts);
    if !stdin {
        args.push(path_str(input));
    }
    let mut cmd = token.p11smime(&args);
    let out = if stdin {
        output_with_stdin(&mut cmd, input)
    } else {
        cmd.output().unwrap()
    };
    assert!(out.status.success(), "encrypt {opts:?}: {}", report(&out));
}

/// `openssl cms -decrypt` of `msg` in `form` with alice's key file.
fn openssl_decrypt(msg: &Path, form: &str) -> Vec<u8> {
    let key = fixture("alice-enc.key.pem");
    let cert = fixture("alice-enc.pem");
    let mut cmd = std::process::Command::new("openssl");
    cmd.args(["cms", "-decrypt", "-binary", "-inform", form, "-in"])
        .arg(msg)
        .arg("-inkey")
        .arg(&key)
        .arg("-recip")
        .arg(&cert);
    run_ok(&mut cmd).stdout
}

fn assert_same(got: &[u8], want: &[u8], what: &str) {
    assert!(
        got.len() == want.len() && got == want,
        "{what}: {} bytes, want {}",
        got.len(),
        want.len()
    );
}

#[test]
fn large_inputs_decrypt_to_the_entity_of_the_in_memory_path() {
    let token = TestToken::new();
    let binary = varied_bytes(SIZE);
    let inputs: [(&str, Vec<u8>); 3] = [
        ("binary", binary.clone()),
        ("text", text(SIZE)),
        ("mail", mail_with_attachment(&binary)),
    ];
    let cases: [(&[&str], bool, &str); 4] = [
        (&["--outform", "der"], false, "DER"),
        (
            &["--outform", "message", "--cipher", "aes256-gcm"],
            true,
            "SMIME",
        ),
        (
            &["--outform", "pem", "--cipher", "aes128-gcm"],
            false,
            "PEM",
        ),
        (&["--cipher", "aes128-cbc"], true, "SMIME"),
    ];
    for (name, raw) in &inputs {
        let input = token.write(&format!("{name}.in"), raw);
        let want = entity_of(raw, false);
        for (n, (opts, stdin, form)) in cases.iter().enumerate() {
            let what = format!("{name} {opts:?} stdin={stdin}");
            let msg: PathBuf = token.path(&format!("{name}-{n}.out"));
            encrypt(&token, &input, *stdin, opts, &msg);
            assert_same(&openssl_decrypt(&msg, form), &want, &what);
            if *form == "SMIME" {
                let text = std::fs::read(&msg).unwrap();
                assert!(!has_bare_lf(&text), "{what}: a bare LF in the mail");
                if *name == "mail" {
                    assert!(text.starts_with(b"From: alice@example.test\r\n"), "{what}");
                }
            }
        }
        // p11smime opens its own output, with the token's copy of alice's key.
        let msg = token.path(&format!("{name}-0.out"));
        let out = token.decrypt(&msg);
        assert!(out.status.success(), "{name}: {}", report(&out));
        assert_same(&out.stdout, &want, &format!("{name}: p11smime decrypt"));
    }
    // --as-is: only the line endings change.
    let input = token.write("asis.in", &binary);
    let msg = token.path("asis.der");
    encrypt(&token, &input, true, &["--as-is", "--outform", "der"], &msg);
    assert_same(
        &openssl_decrypt(&msg, "DER"),
        &entity_of(&binary, true),
        "--as-is",
    );
}

/// True when an LF comes without its CR: S/MIME output is CRLF text.
fn has_bare_lf(text: &[u8]) -> bool {
    text.windows(2).any(|w| w[1] == b'\n' && w[0] != b'\r')
}

#[test]
fn the_output_file_appears_only_on_success() {
    let token = TestToken::new();
    let input = token.write("big.in", &varied_bytes(SIZE));
    let to = token.path("out.p7m");
    // An RSA key too short to encrypt to: refused, nothing written.
    let weak = token.path("weak.pem");
    let key = token.path("weak.key");
    run_ok(
        std::process::Command::new("openssl")
            .args([
                "req", "-x509", "-newkey", "rsa:1024", "-nodes", "-subj", "/CN=weak", "-keyout",
            ])
            .arg(&key)
            .arg("-out")
            .arg(&weak),
    );
    let out = token
        .p11smime(&[
            "encrypt",
            "--no-self",
            "-r",
            path_str(&weak),
            "-o",
            path_str(&to),
            path_str(&input),
        ])
        .output()
        .unwrap();
    assert!(!out.status.success(), "{}", report(&out));
    assert!(!to.exists(), "a refused encryption left {}", to.display());
    let leftovers: Vec<_> = std::fs::read_dir(token.dir.path())
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".part"))
        .collect();
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");
    encrypt(&token, &input, false, &["--outform", "der"], &to);
    assert!(to.exists());
}
