//! A virtual CAC, end to end: the whole stack a user has, with only the card emulated.
//!
//! p11smime → OpenSC's `opensc-pkcs11.so` (its CAC driver) → libpcsclite → a pcscd of the
//! test's own → vsmartcard's vpcd reader driver ("Virtual PCD 00 00") → TCP →
//! `tests/support/virt_cac` (compiled here with gcc) → Debian's libcacard, which emulates a CAC
//! from the certificates and keys an NSS database sees → NSS → a SoftHSM2 token holding alice's
//! RSA keys (signature, key management, and a retired key-management key).
//!
//! What the card looks like to OpenSC 0.23: a token labelled "Alice Tester" (the common name in
//! alice's certificates, not "CAC II"), manufacturer "Common Access Card", one PKI applet per
//! certificate with CKA_IDs of two bytes (`0001`...) and OpenSC's CAC labels ("CAC ID
//! Certificate", "CAC Email Signature Certificate", "CAC Email Encryption Certificate").
//! libcacard lays the certificates out in the order SoftHSM2 finds them, which is not fixed, so
//! the tests tell the certificates apart by serial number, never by id or label.
//!
//! Why this token is made here and not by `scripts/softhsm-token`: libcacard makes a card only
//! from a *removable* slot (`slots.removable = true` in the SoftHSM2 configuration), it emulates
//! RSA only (no EC keys), and it cannot use a key marked CKA_ALWAYS_AUTHENTICATE (NSS asks
//! libcacard's password callback for the context-specific login, which has no PIN to give, and
//! the card answers 6985), so the signature key here is an ordinary signing key.
//!
//! Needs root (pcscd writes `/run/pcscd`), gcc, pkg-config and the packages `libcacard-dev`,
//! `libnss3-tools`, `pcscd`, `vsmartcard-vpcd`, `opensc`, `opensc-pkcs11` and `softhsm2`
//! (`scripts/install-deps`).

#![cfg(target_os = "linux")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use common::pcsc::{Pcscd, reader, run_limited};
use common::virt_cac::{Bridge, CardFiles, opensc_module, plug_in};
use common::{PIN, SAMPLE, assert_fails, assert_plaintext, fixture, path_str, report, run_ok};
use serde_json::Value;
use std::path::PathBuf;
use std::process::{Command, Output};

/// The reader vpcd's first port is.
const READER: &str = "Virtual PCD 00 00";
/// The fixture certificate's serial number as p11smime prints it (upper-case hex).
fn serial(cert: &str) -> String {
    let out = run_ok(
        Command::new("openssl")
            .args(["x509", "-noout", "-serial", "-in"])
            .arg(fixture(cert)),
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .trim()
        .strip_prefix("serial=")
        .unwrap()
        .to_uppercase()
}

/// The whole stack for one test. Dropped in field order: the bridge, then pcscd, then the
/// directory with the token, the NSS database and the logs.
struct VirtualCac {
    bridge: Bridge,
    pcscd: Pcscd,
    files: CardFiles,
    dir: tempfile::TempDir,
}

impl VirtualCac {
    fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let files = CardFiles::make(dir.path());
        let (pcscd, bridge) = plug_in(&files, dir.path());
        VirtualCac {
            bridge,
            pcscd,
            files,
            dir,
        }
    }

    /// `p11smime ARGS` through OpenSC, this pcscd and the card, with the PIN in `TEST_PIN` and a
    /// wrong one in `WRONG_PIN`; killed after the run limit.
    fn p11smime(&self, args: &[&str]) -> Output {
        let mut cmd = self.pcscd.command(args);
        cmd.env("P11SMIME_MODULE", opensc_module())
            .env("OPENSC_CONF", &self.files.opensc_conf)
            .env("TEST_PIN", PIN)
            .env("WRONG_PIN", "654321")
            .env_remove("P11SMIME_TOKEN")
            .env_remove("SOFTHSM2_CONF");
        run_limited(cmd)
    }

    /// `p11smime ARGS` that must succeed; fails the test with the bridge's and pcscd's logs.
    fn p11smime_ok(&self, args: &[&str]) -> Output {
        let out = self.p11smime(args);
        assert!(
            out.status.success(),
            "p11smime {args:?}: {}\nbridge log (tail):\n{}",
            report(&out),
            tail(&self.bridge.log(), 40)
        );
        out
    }

    /// A scratch path in the test's directory.
    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The APDUs the card has seen so far, in hex ("00A40400..."), in order.
    fn apdus(&self) -> Vec<String> {
        self.bridge
            .log()
            .lines()
            .filter_map(|l| l.strip_prefix("> "))
            .map(str::to_string)
            .collect()
    }
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

fn json(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", report(out)))
}

/// The one CAC token OpenSC shows.
fn cac_token(tokens: &Value) -> &Value {
    let cacs: Vec<&Value> = tokens
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["manufacturer"] == "Common Access Card")
        .collect();
    assert_eq!(cacs.len(), 1, "{tokens:#}");
    cacs[0]
}

#[test]
fn the_card_is_seen_as_a_cac_with_alices_certificates() {
    let cac = VirtualCac::start();

    // readers: the card is in the virtual reader, with libcacard's ATR. It is nobody's real
    // card, so p11smime's ATR table does not know it.
    let list = json(&cac.p11smime_ok(&["readers", "--json"]));
    let card = reader(list.as_array().unwrap(), READER);
    assert_eq!(card["card_present"], true, "{card}");
    assert_eq!(card["atr"], cac.bridge.atr.as_str(), "{card}");
    assert_eq!(card["card_type"], "unknown", "{card}");
    assert_eq!(card["card_mute"], false, "{card}");
    let text = String::from_utf8(cac.p11smime_ok(&["readers"]).stdout).unwrap();
    assert!(
        text.contains(&format!("reader: {READER}\n  card:  unknown\n  ATR:   ")),
        "{text}"
    );

    // tokens: OpenSC's CAC driver made a token of it in that reader's slot.
    let tokens = json(&cac.p11smime_ok(&["tokens", "--json"]));
    let token = cac_token(&tokens);
    assert_eq!(token["slot_description"], READER, "{token}");
    assert_eq!(token["label"], "Alice Tester", "{token}");
    assert_eq!(token["model"], "PKCS#15 emulated", "{token}");
    assert_eq!(token["login_required"], true, "{token}");
    assert_eq!(token["pin_locked"], false, "{token}");

    // certs: exactly alice's three, each with a key on the card (after login) and a CAC id.
    let certs = json(&cac.p11smime_ok(&["certs", "--json", "--pin", "env:TEST_PIN"]));
    let certs = certs
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["token"]["manufacturer"] == "Common Access Card")
        .unwrap_or_else(|| panic!("no CAC in {certs:#}"))["certificates"]
        .as_array()
        .unwrap()
        .clone();
    let mut serials: Vec<String> = certs
        .iter()
        .map(|c| c["serial"].as_str().unwrap().to_string())
        .collect();
    serials.sort();
    let mut expected: Vec<String> = ["alice-sign.pem", "alice-enc.pem", "alice-retired.pem"]
        .iter()
        .map(|c| serial(c))
        .collect();
    expected.sort();
    assert_eq!(serials, expected, "{certs:#?}");
    for c in &certs {
        assert_eq!(c["has_private_key"], true, "{c}");
        let id = c["id"].as_str().unwrap();
        assert!(
            id.len() == 4 && ["0001", "0002", "0003"].contains(&id),
            "a CAC id is two bytes: {c}"
        );
        assert!(c["label"].as_str().unwrap().starts_with("CAC "), "{c}");
        assert_eq!(c["emails"][0], "alice@example.test", "{c}");
    }
    let retired: Vec<&Value> = certs.iter().filter(|c| c["expired"] == true).collect();
    assert_eq!(retired.len(), 1, "{certs:#?}");
    assert_eq!(retired[0]["serial"], serial("alice-retired.pem").as_str());
}

#[test]
fn decrypt_opens_mail_through_the_card() {
    let cac = VirtualCac::start();
    let dir = cac.dir.path();
    let plain = cac.path("plain.eml");
    std::fs::write(&plain, SAMPLE).unwrap();
    let encrypt = |name: &str, opts: &[&str], cert: &str, keyopts: &[&str]| {
        let out = cac.path(name);
        run_ok(
            Command::new("openssl")
                .args(["cms", "-encrypt", "-binary"])
                .args(opts)
                .arg("-in")
                .arg(&plain)
                .arg("-out")
                .arg(&out)
                .arg("-recip")
                .arg(fixture(cert))
                .args(keyopts),
        );
        out
    };

    // RSA PKCS#1 v1.5 key transport, AES-256-CBC: the card decrypts the key (raw RSA in
    // libcacard, the padding checked by OpenSC).
    let v15 = encrypt("v15.p7m", &["-aes256"], "alice-enc.pem", &[]);
    let out = cac.p11smime(&["decrypt", "--pin", "env:TEST_PIN", path_str(&v15)]);
    assert_plaintext(&out, SAMPLE, "PKCS#1 v1.5 through the card");

    // RSAES-OAEP with SHA-256 (OpenSC removes OAEP padding in software) and AES-GCM.
    let oaep = encrypt(
        "oaep.p7m",
        &["-aes-256-gcm"],
        "alice-enc.pem",
        &[
            "-keyopt",
            "rsa_padding_mode:oaep",
            "-keyopt",
            "rsa_oaep_md:sha256",
        ],
    );
    let out = cac.p11smime(&["decrypt", "--pin", "env:TEST_PIN", path_str(&oaep)]);
    assert_plaintext(&out, SAMPLE, "OAEP-SHA256 and AES-GCM through the card");

    // Old mail to the retired (expired) key-management certificate, written to a file.
    let old = encrypt("old.p7m", &["-aes128"], "alice-retired.pem", &[]);
    let written = dir.join("old.eml");
    cac.p11smime_ok(&[
        "decrypt",
        "--pin",
        "env:TEST_PIN",
        "-o",
        path_str(&written),
        path_str(&old),
    ]);
    assert_eq!(std::fs::read(&written).unwrap(), SAMPLE);

    // Mail to bob, whose key is not on the card: no plaintext.
    let bobs = encrypt("bob.p7m", &["-aes256"], "bob-enc.pem", &[]);
    let out = cac.p11smime(&["decrypt", "--pin", "env:TEST_PIN", path_str(&bobs)]);
    assert!(!out.status.success(), "{}", report(&out));
    assert!(out.stdout.is_empty(), "{}", report(&out));
}

#[test]
fn a_wrong_pin_is_one_verify_and_a_clear_error() {
    let cac = VirtualCac::start();
    let plain = cac.path("plain.eml");
    std::fs::write(&plain, SAMPLE).unwrap();
    let msg = cac.path("msg.p7m");
    run_ok(
        Command::new("openssl")
            .args(["cms", "-encrypt", "-binary", "-aes256", "-in"])
            .arg(&plain)
            .arg("-out")
            .arg(&msg)
            .arg(fixture("alice-enc.pem")),
    );
    // VERIFY with a PIN (CLA 00, INS 20, Lc 08: the PIN padded with FF), not the empty VERIFY
    // that only asks for the PIN's state.
    let verifies = |apdus: &[String]| apdus.iter().filter(|a| a.starts_with("0020000008")).count();
    let before = verifies(&cac.apdus());
    let out = cac.p11smime(&["decrypt", "--pin", "env:WRONG_PIN", path_str(&msg)]);
    let stderr = assert_fails(&out, 5, "a wrong PIN");
    assert!(out.stdout.is_empty(), "{}", report(&out));
    // Through libcacard, OpenSC reports the card's refusal as CKR_GENERAL_ERROR.
    assert!(stderr.contains("CKR_GENERAL_ERROR"), "{stderr}");
    assert_eq!(
        verifies(&cac.apdus()) - before,
        1,
        "the PIN went to the card once: {:?}",
        cac.apdus()
    );
    // The right PIN still opens it.
    let out = cac.p11smime(&["decrypt", "--pin", "env:TEST_PIN", path_str(&msg)]);
    assert_plaintext(&out, SAMPLE, "the right PIN after a wrong one");
}

#[test]
fn sign_on_the_card_and_openssl_verifies() {
    let cac = VirtualCac::start();
    let input = cac.path("mail.eml");
    std::fs::write(
        &input,
        b"From: alice@example.test\r\nTo: bob@example.test\r\nSubject: signed on a CAC\r\n\
          Content-Type: text/plain\r\n\r\nSigned on the virtual CAC.\r\n",
    )
    .unwrap();
    for (name, extra) in [("pkcs1", &[][..]), ("pss", &["--pss"][..])] {
        let signed = cac.path(&format!("signed-{name}.eml"));
        let mut args = vec!["sign", "--pin", "env:TEST_PIN"];
        args.extend_from_slice(extra);
        args.extend(["-o", path_str(&signed), path_str(&input)]);
        cac.p11smime_ok(&args);
        let content = cac.path(&format!("content-{name}.txt"));
        let out = Command::new("openssl")
            .args(["cms", "-verify", "-in"])
            .arg(&signed)
            .arg("-CAfile")
            .arg(fixture("ca.pem"))
            .arg("-out")
            .arg(&content)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "openssl rejects the {name} signature: {}",
            report(&out)
        );
        let content = std::fs::read_to_string(&content).unwrap();
        assert!(content.contains("Signed on the virtual CAC."), "{content}");
        // The signer is alice's signature certificate.
        let signer = cac.path(&format!("signer-{name}.pem"));
        run_ok(
            Command::new("openssl")
                .args(["cms", "-verify", "-noverify", "-in"])
                .arg(&signed)
                .arg("-signer")
                .arg(&signer)
                .arg("-out")
                .arg("/dev/null"),
        );
        assert_eq!(
            std::fs::read(&signer).unwrap(),
            std::fs::read(fixture("alice-sign.pem")).unwrap(),
            "signed with another certificate"
        );
    }
}

#[test]
fn doctor_runs_through_the_whole_stack() {
    let cac = VirtualCac::start();
    let ca = fixture("ca.pem");
    let args = [
        "doctor",
        "--pin",
        "env:TEST_PIN",
        "--no-system-ca",
        "--ca",
        path_str(&ca),
    ];
    let mut json_args = args.to_vec();
    json_args.push("--json");
    let checks = json(&cac.p11smime_ok(&json_args));
    let checks = checks.as_array().unwrap();
    for c in checks {
        assert_eq!(c["status"], "ok", "{checks:#?}");
    }
    let detail = |step: &str| {
        checks
            .iter()
            .find(|c| c["step"] == step)
            .unwrap_or_else(|| panic!("no {step} step: {checks:#?}"))["detail"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert!(
        detail("PKCS#11 module").contains("opensc-pkcs11"),
        "{checks:#?}"
    );
    assert!(detail("readers").contains("1 with a card"), "{checks:#?}");
    assert!(
        detail("token").contains("Common Access Card"),
        "{checks:#?}"
    );
    assert!(detail("login").contains("the PIN opens"), "{checks:#?}");
    assert!(detail("retired certificates").contains("1 expired"));
    for step in ["signing certificate", "encryption certificate"] {
        assert!(detail(step).contains("CN=Alice Tester"), "{checks:#?}");
    }
    assert_eq!(
        checks.iter().filter(|c| c["step"] == "chain").count(),
        2,
        "{checks:#?}"
    );

    let text = String::from_utf8(cac.p11smime_ok(&args).stdout).unwrap();
    assert!(text.contains("ok       readers: "), "{text}");
    assert!(
        !text.contains("PROBLEM") && !text.contains("WARNING"),
        "{text}"
    );
}
