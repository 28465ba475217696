//! Large inputs are signed from the file in two passes (stdin spooled first), in bounded
//! memory, over exactly the entity the in-memory path would sign: a 24 MiB text file and a
//! 24 MiB mail with a binary attachment, clear-signed (multipart/signed) and opaque (S/MIME,
//! DER, PEM), from a file and from stdin, to `-o` and to stdout, all verified by
//! `openssl cms -verify` (with the fixtures' CA) and by `p11smime verify`, whose content is the
//! transport-safe entity the library makes of the same bytes in memory. That the two paths
//! write the same bytes for the same input is checked in `smime::sign_stream`'s unit tests
//! (the signing time and threshold fixed there). Memory and speed are measured apart.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use common::large::{entity_of, mail_with_attachment, text};
use common::*;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// 24 MiB: three times the threshold of the two-pass path (8 MiB).
const SIZE: usize = 24 << 20;

/// Runs `cmd`, with the file `stdin` piped in when given; insists it worked.
fn run_piped(cmd: &mut Command, stdin: Option<&Path>) -> Output {
    let Some(input) = stdin else {
        return run_ok(cmd);
    };
    let out = output_with_stdin(cmd, input);
    assert!(out.status.success(), "{}", report(&out));
    out
}

/// How one signing run is made.
struct Case {
    opts: &'static [&'static str],
    stdin: bool,
    to_file: bool,
    /// `openssl cms -verify -inform`.
    form: &'static str,
}

const CASES: [Case; 6] = [
    Case {
        opts: &[],
        stdin: false,
        to_file: true,
        form: "SMIME",
    },
    Case {
        opts: &[],
        stdin: true,
        to_file: false,
        form: "SMIME",
    },
    Case {
        opts: &["--opaque"],
        stdin: false,
        to_file: false,
        form: "SMIME",
    },
    Case {
        opts: &["--opaque"],
        stdin: true,
        to_file: true,
        form: "SMIME",
    },
    Case {
        opts: &["--opaque", "--outform", "der", "--digest", "sha512"],
        stdin: true,
        to_file: true,
        form: "DER",
    },
    Case {
        opts: &["--opaque", "--outform", "pem"],
        stdin: false,
        to_file: true,
        form: "PEM",
    },
];

/// `p11smime sign` of `input` by the token's signing key; the message is left in `to`.
fn sign(token: &TestToken, input: &Path, case: &Case, to: &Path) {
    let mut args = vec!["sign", "--pin", "env:TEST_PIN"];
    if case.to_file {
        args.extend(["-o", path_str(to)]);
    }
    args.extend_from_slice(case.opts);
    if !case.stdin {
        args.push(path_str(input));
    }
    let mut cmd = token.p11smime(&args);
    let out = run_piped(&mut cmd, case.stdin.then_some(input));
    if case.to_file {
        assert!(out.stdout.is_empty(), "{:?}: stdout with -o", case.opts);
    } else {
        std::fs::write(to, &out.stdout).unwrap();
    }
}

/// `openssl cms -verify` of `msg` in `form` against the fixtures' CA: the content it verified.
/// Not `-binary` for multipart/signed, which openssl then reads with the CRLF before the
/// delimiter as content (the in-memory path's output fails so too).
fn openssl_verify(msg: &Path, form: &str, detached: bool) -> Vec<u8> {
    let mut cmd = Command::new("openssl");
    cmd.args(["cms", "-verify", "-purpose", "smimesign", "-CAfile"])
        .arg(fixture("ca.pem"))
        .args(if detached { &[][..] } else { &["-binary"][..] })
        .args(["-inform", form, "-in"])
        .arg(msg);
    run_ok(&mut cmd).stdout
}

/// `p11smime verify -o -` of `msg` against the fixtures' CA: the content it verified.
fn p11smime_verify(msg: &Path) -> Vec<u8> {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_p11smime"));
    cmd.env_remove("P11SMIME_MODULE")
        .env_remove("P11SMIME_TOKEN")
        .args(["verify", "--no-system-ca", "--revocation", "off", "--ca"])
        .arg(fixture("ca.pem"))
        .args(["-o", "-"])
        .arg(msg)
        .stdin(Stdio::null());
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

/// True when an LF comes without its CR: S/MIME output is CRLF text.
fn has_bare_lf(text: &[u8]) -> bool {
    text.windows(2).any(|w| w[1] == b'\n' && w[0] != b'\r')
}

#[test]
fn large_inputs_sign_the_entity_of_the_in_memory_path() {
    let token = TestToken::new();
    let inputs: [(&str, Vec<u8>); 2] = [
        ("text", text(SIZE)),
        ("mail", mail_with_attachment(&varied_bytes(SIZE))),
    ];
    for (name, raw) in &inputs {
        let input = token.write(&format!("{name}.in"), raw);
        let want = entity_of(raw, false);
        for (n, case) in CASES.iter().enumerate() {
            let what = format!("{name} {:?} stdin={}", case.opts, case.stdin);
            let msg: PathBuf = token.path(&format!("{name}-{n}.out"));
            sign(&token, &input, case, &msg);
            let detached = !case.opts.contains(&"--opaque");
            assert_same(&openssl_verify(&msg, case.form, detached), &want, &what);
            assert_same(&p11smime_verify(&msg), &want, &format!("{what}: p11smime"));
            if case.form == "SMIME" {
                let text = std::fs::read(&msg).unwrap();
                assert!(!has_bare_lf(&text), "{what}: a bare LF in the mail");
                if *name == "mail" {
                    assert!(text.starts_with(b"From: alice@example.test\r\n"), "{what}");
                }
                if case.opts.is_empty() {
                    // The first part, as sent, is the entity itself.
                    let (signed, _) = mime::split_multipart_signed(&text);
                    assert_same(&signed, &want, &format!("{what}: the signed part"));
                }
            }
        }
    }
}

#[test]
fn as_is_signs_the_input_with_crlf_only() {
    let token = TestToken::new();
    let raw = mail_with_attachment(&varied_bytes(SIZE));
    let input = token.write("asis.in", &raw);
    let want = entity_of(&raw, true);
    let msg = token.path("asis.eml");
    let case = Case {
        opts: &["--as-is"],
        stdin: false,
        to_file: true,
        form: "SMIME",
    };
    sign(&token, &input, &case, &msg);
    assert_same(&openssl_verify(&msg, "SMIME", true), &want, "--as-is");
    let (signed, _) = mime::split_multipart_signed(&std::fs::read(&msg).unwrap());
    assert_same(&signed, &want, "--as-is: the signed part");
}
