//! `p11smime completions SHELL` and `p11smime man`: generated from the clap definition, so they
//! know every command; bash accepts the script, and man renders the pages.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use common::report;
use std::process::{Command, Output};

fn p11smime(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_p11smime"))
        .args(args)
        .output()
        .unwrap()
}

fn stdout_ok(args: &[&str]) -> String {
    let out = p11smime(args);
    assert!(out.status.success(), "{args:?}: {}", report(&out));
    String::from_utf8(out.stdout).unwrap()
}

const COMMANDS: &[&str] = &[
    "tokens", "readers", "certs", "decrypt", "sign", "verify", "encrypt", "inspect", "doctor",
];

#[test]
fn every_shell_gets_a_script_naming_every_command() {
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let script = stdout_ok(&["completions", shell]);
        for command in COMMANDS {
            assert!(script.contains(command), "{shell}: no {command}");
        }
        assert!(script.contains("no-system-ca"), "{shell}: no option names");
    }
    assert!(stdout_ok(&["completions", "zsh"]).starts_with("#compdef p11smime"));
}

#[test]
fn bash_completes_commands_and_options() {
    let script = stdout_ok(&["completions", "bash"]);
    let out = Command::new("bash")
        .arg("-c")
        .arg(
            r#"eval "$SCRIPT"
COMP_WORDS=(p11smime dec); COMP_CWORD=1; _p11smime p11smime dec p11smime; echo "${COMPREPLY[*]}"
COMP_WORDS=(p11smime decrypt --no-s); COMP_CWORD=2; _p11smime p11smime --no-s decrypt
echo "${COMPREPLY[*]}""#,
        )
        .env("SCRIPT", &script)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", report(&out));
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        "decrypt\n--no-system-ca\n"
    );
}

#[test]
fn an_unknown_shell_is_a_usage_error() {
    let out = p11smime(&["completions", "tcsh"]);
    assert_eq!(out.status.code(), Some(2), "{}", report(&out));
}

#[test]
fn the_man_page_lists_every_command_and_the_exit_codes() {
    let page = stdout_ok(&["man"]);
    assert!(page.contains("\n.TH p11smime 1  \"p11smime "), "{page}");
    for command in COMMANDS {
        assert!(
            page.contains(&format!("p11smime\\-{command}(1)")),
            "no {command}: {page}"
        );
    }
    for section in [
        "PIN SOURCES",
        "ENVIRONMENT",
        "EXIT STATUS",
        "P11SMIME_MODULE",
    ] {
        assert!(page.contains(section), "no {section}: {page}");
    }
    let decrypt = stdout_ok(&["man", "decrypt"]);
    assert!(
        decrypt.contains("\n.TH p11smime-decrypt 1  \"p11smime "),
        "{decrypt}"
    );
    assert!(decrypt.contains("\\-\\-unwrap"), "{decrypt}");
    let out = p11smime(&["man", "nonsense"]);
    assert_eq!(out.status.code(), Some(2), "{}", report(&out));
}

#[test]
fn man_out_dir_writes_a_page_per_command_that_man_renders() {
    let dir = tempfile::tempdir().unwrap();
    stdout_ok(&["man", "--out-dir", dir.path().to_str().unwrap()]);
    let mut names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    for command in COMMANDS {
        assert!(
            names.contains(&format!("p11smime-{command}.1")),
            "{names:?}"
        );
    }
    assert!(names.contains(&"p11smime.1".to_string()), "{names:?}");
    // man-db renders it without complaint, where it is installed.
    if std::path::Path::new("/usr/bin/man").exists() {
        let out = Command::new("man")
            .arg("-l")
            .arg(dir.path().join("p11smime.1"))
            .env("MANWIDTH", "80")
            .env("MANPAGER", "cat")
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", report(&out));
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("EXIT STATUS"), "{text}");
        assert!(out.stderr.is_empty(), "{}", report(&out));
    }
}
