//! `p11smime verify` on messages signed by real peers with the fixture keys (software keys: the
//! peers never see the token), trusting only `softhsm-fixtures/ca.pem` (`--ca ... --no-system-ca`).
//! Every peer output is first checked by the peer itself (or by `openssl cms -verify`), and the
//! content `-o` writes must equal what the peer extracts.
//!
//! What the peers produce (OpenSSL 3.0, gpgsm 2.2.40, NSS 3.87):
//! * `openssl cms -sign` / `openssl smime -sign`, text mode (no `-binary`): the LF-only input is
//!   signed as CRLF and the first part of the multipart/signed is written with CRLF, while the
//!   rest of the message (headers, boundaries, base64) keeps LF. `-from/-to/-subject` become
//!   the outer headers (outside the signed part). `smime` writes `application/x-pkcs7-*` types.
//!   With `-binary` the LF bytes are signed and written as they are; `openssl cms -verify` then
//!   needs `-binary` too, p11smime (which verifies the part as received) does not.
//! * `-outform DER` without `-nodetach` is a detached `.p7s` over the CRLF form of the input (or
//!   the input as is with `-binary`). With `-stream` opaque output is indefinite-length BER (the
//!   signature part of a multipart/signed stays DER), and `-stream -outform DER` **embeds** the
//!   content even without `-nodetach`.
//! * `-keyopt rsa_padding_mode:pss` gives rsassaPss with MGF1; `-md sha384/sha512` changes the
//!   digest and `micalg`; two `-signer` give two SignerInfos.
//! * gpgsm: `--sign` is indefinite-length BER with the content in chunks, `--detach-sign` a BER
//!   `.p7s`, `--armor` a `-----BEGIN SIGNED MESSAGE-----` block; the signer's certificate is
//!   included (include-certs -2). Importing a PKCS#12 as a secret key needs the passphrase
//!   through `--pinentry-mode loopback --passphrase-fd 0` (gpgsm 2.2 ignores `--passphrase`;
//!   gpg-agent 2.2 allows loopback by default, no gpg-agent.conf needed), and a PKCS#12 with
//!   the legacy PBE-SHA1-3DES (gpgsm cannot read OpenSSL 3's default PBES2/AES).
//! * NSS `cmsutil -S` (opaque, BER) and `-S -T` (detached): it needs `-Y NONE` for a
//!   signature-only certificate (otherwise it looks for an encryption certificate under the same
//!   nickname and fails with SEC_ERROR_INADEQUATE_KEY_USAGE); `-G` adds signingTime, `-P`
//!   SMIMECapabilities, `-H SHA512` the digest. The CA must be trusted `,C,` in the DB.
//!
//! Certificates beyond the fixtures (an ECDSA P-256 signing certificate, an expired one, one
//! for clientAuth only, another CA) are made at test time in the test's temporary directory
//! with `openssl ca` and a throwaway configuration, with EC keys so that it takes milliseconds.
//!
//! A missing peer fails the test with an install hint instead of skipping it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use common::gpgsm::Gpgsm;
use common::nss::NssDb;
use common::pki;
use common::*;

use mail_parser::{MessageParser, MimeHeaders};
use serde_json::Value;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// The MIME entity the peers sign: LF line endings, UTF-8 text in quoted-printable (with a
/// soft line break), and a body line starting with "From ".
const ENTITY: &str = "Content-Type: text/plain; charset=utf-8\n\
                      Content-Transfer-Encoding: quoted-printable\n\
                      \n\
                      Gr=C3=BC=C3=9Fe aus K=C3=B6ln, sch=C3=B6ne Gr=C3=BC=C3=9Fe an alle\n\
                      From the peer, with a line that starts with From\n\
                      Preis: 20 =E2=82=AC, mit weichem Zeilen=\n\
                      umbruch\n";

/// Outer headers openssl writes outside the signed part.
const HEADERS: &[&str] = &[
    "-from",
    "Alice Tester <alice@example.test>",
    "-to",
    "bob@example.test",
    "-subject",
    "Signed by a peer",
];

/// DER of algorithm OIDs, to check what the peer actually produced.
const OID_RSASSA_PSS: &[u8] = &[
    0x06, 0x09, 0x2A, 0x86, 0x48, 0x86, 0xF7, 0x0D, 0x01, 0x01, 0x0A,
];
const OID_ECDSA_SHA256: &[u8] = &[0x06, 0x08, 0x2A, 0x86, 0x48, 0xCE, 0x3D, 0x04, 0x03, 0x02];
const OID_SHA384: &[u8] = &[
    0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x02,
];
const OID_SHA512: &[u8] = &[
    0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x03,
];

const DIGEST_CHANGED: &str =
    "the content does not match the signed digest (the message was changed)";
const UNKNOWN_ISSUER: &str = "no trusted authority issued the signer's certificate";

// ---------------------------------------------------------------------------------------------
// Scratch space, p11smime and its verdict

/// A temporary directory for one test.
struct Work {
    dir: tempfile::TempDir,
}

impl Work {
    fn new() -> Self {
        Work {
            dir: tempfile::tempdir().unwrap(),
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

    /// ENTITY as given to the peers (LF).
    fn entity(&self) -> PathBuf {
        self.write("entity.txt", ENTITY.as_bytes())
    }

    /// ENTITY in canonical form (CRLF), as text-mode signing sees it.
    fn entity_crlf(&self) -> PathBuf {
        self.write("entity-crlf.txt", crlf(ENTITY.as_bytes()).as_slice())
    }
}

fn crlf(lf: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(lf.len() + 64);
    for &b in lf {
        if b == b'\n' && out.last() != Some(&b'\r') {
            out.push(b'\r');
        }
        out.push(b);
    }
    out
}

fn ca() -> String {
    path_str(&fixture("ca.pem")).to_string()
}

/// The p11smime binary; `verify` needs no token, module or PIN.
fn p11smime() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_p11smime"));
    cmd.env_remove("P11SMIME_MODULE")
        .env_remove("P11SMIME_TOKEN")
        .stdin(Stdio::null());
    cmd
}

/// One `p11smime verify --json --no-system-ca EXTRA -o OUT INPUT` run.
struct Verdict {
    what: String,
    out: Output,
    json: Value,
    /// What `-o` wrote (`None`: no file).
    written: Option<Vec<u8>>,
}

fn verify(input: &Path, extra: &[&str]) -> Verdict {
    let out_file = PathBuf::from(format!("{}.verified", input.display()));
    let _ = std::fs::remove_file(&out_file);
    let out = p11smime()
        .args(["verify", "--json", "--no-system-ca"])
        .args(extra)
        .arg("-o")
        .arg(&out_file)
        .arg(input)
        .output()
        .unwrap();
    let what = format!(
        "verify {} {extra:?}",
        input.file_name().unwrap().to_string_lossy()
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stderr.contains("panicked") && !stderr.contains("RUST_BACKTRACE"),
        "{what}: panicked: {stderr}"
    );
    let json = if out.stdout.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "{what}: stdout is not JSON ({e}): {}",
                String::from_utf8_lossy(&out.stdout)
            )
        })
    };
    let written = std::fs::read(&out_file).ok();
    Verdict {
        what,
        out,
        json,
        written,
    }
}

/// `verify` trusting the fixture CA.
fn verify_ca(input: &Path, extra: &[&str]) -> Verdict {
    let ca = ca();
    let mut args = vec!["--ca", ca.as_str()];
    args.extend_from_slice(extra);
    verify(input, &args)
}

impl Verdict {
    fn report(&self) -> String {
        format!(
            "{}: exit {:?}\nstdout:\n{}\nstderr:\n{}",
            self.what,
            self.out.status.code(),
            String::from_utf8_lossy(&self.out.stdout),
            String::from_utf8_lossy(&self.out.stderr)
        )
    }

    fn signers(&self) -> &Vec<Value> {
        self.json["signers"]
            .as_array()
            .unwrap_or_else(|| panic!("no signers array: {}", self.report()))
    }

    fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.out.stderr).to_string()
    }

    /// Exit 0, `all_good`, the form, `count` signers each valid, trusted, without a problem,
    /// with alice's address and the given `from_matches`; `-o` wrote exactly `content`.
    fn good(&self, form: &str, count: usize, from_matches: Option<bool>, content: &[u8]) -> &Self {
        let r = self.report();
        assert_eq!(self.out.status.code(), Some(0), "{r}");
        assert_eq!(self.json["all_good"], Value::Bool(true), "{r}");
        assert_eq!(self.json["form"], Value::from(form), "{r}");
        assert_eq!(self.signers().len(), count, "{r}");
        for s in self.signers() {
            assert_eq!(s["signature_valid"], Value::Bool(true), "{r}");
            assert_eq!(s["trusted"], Value::Bool(true), "{r}");
            assert_eq!(s["problem"], Value::Null, "{r}");
            assert_eq!(s["from_matches"], Value::from(from_matches), "{r}");
            assert!(
                s["emails"]
                    .as_array()
                    .is_some_and(|e| e.contains(&Value::from("alice@example.test"))),
                "{r}"
            );
            assert!(
                s["issuer"]
                    .as_str()
                    .is_some_and(|i| i.contains("CN=p11smime Test Root CA")),
                "{r}"
            );
        }
        if from_matches.is_some() {
            assert_eq!(self.json["from"], Value::from("alice@example.test"), "{r}");
        }
        let written = self
            .written
            .as_deref()
            .unwrap_or_else(|| panic!("-o wrote nothing: {r}"));
        assert!(
            written == content,
            "{r}\n-o wrote other content:\n{:?}\nexpected:\n{:?}",
            String::from_utf8_lossy(written),
            String::from_utf8_lossy(content)
        );
        self
    }

    /// The one signer's serial is `cert`'s, and it has a signing time.
    fn signed_by(&self, cert: &Path) -> &Self {
        let serials: Vec<String> = self
            .signers()
            .iter()
            .map(|s| norm_serial(s["serial"].as_str().unwrap_or_default()))
            .collect();
        assert!(
            serials.contains(&serial(cert)),
            "{}: no signer with the serial of {}",
            self.report(),
            cert.display()
        );
        self
    }

    /// Exit 7, `all_good: false`, a signer with `problem` (and that signature verdict, never
    /// trusted), the problem on stderr, and nothing written by `-o`.
    fn bad(&self, problem: &str, signature_valid: bool) -> &Self {
        let r = self.report();
        assert_eq!(self.out.status.code(), Some(7), "{r}");
        assert_eq!(self.json["all_good"], Value::Bool(false), "{r}");
        assert!(
            self.signers().iter().any(|s| {
                s["problem"].as_str().is_some_and(|p| p.contains(problem))
                    && s["signature_valid"] == Value::Bool(signature_valid)
                    && s["trusted"] == Value::Bool(false)
            }),
            "{r}\nexpected a signer with problem {problem:?}, signature_valid {signature_valid}"
        );
        assert!(self.stderr().contains(problem), "{r}");
        assert!(
            self.written.is_none(),
            "{r}\n-o wrote {:?} for a message that is not all good",
            self.written
        );
        self
    }
}

/// A certificate's serial as openssl prints it, upper-case hex without leading zeros.
fn serial(cert: &Path) -> String {
    let out = run_ok(
        Command::new("openssl")
            .args(["x509", "-noout", "-serial", "-in"])
            .arg(cert),
    );
    let text = String::from_utf8(out.stdout).unwrap();
    norm_serial(text.trim().trim_start_matches("serial="))
}

fn norm_serial(s: &str) -> String {
    s.to_ascii_uppercase().trim_start_matches('0').to_string()
}

/// A copy of `file` with one byte of the signed text changed ("peer" -> "Peer").
fn altered(work: &Work, file: &Path, name: &str) -> PathBuf {
    let mut bytes = std::fs::read(file).unwrap();
    let at = find(&bytes, b"From the peer", 0).expect("the signed text is not in the clear") + 9;
    bytes[at] = b'P';
    work.write(name, &bytes)
}

/// The DER signature in the second part of a multipart/signed message.
fn multipart_signature(msg: &[u8]) -> Vec<u8> {
    let parsed = MessageParser::default().parse(msg).unwrap();
    parsed
        .parts
        .iter()
        .find(|p| {
            p.content_type().is_some_and(|ct| {
                ct.subtype()
                    .is_some_and(|s| s.eq_ignore_ascii_case("pkcs7-signature"))
                    || ct
                        .subtype()
                        .is_some_and(|s| s.eq_ignore_ascii_case("x-pkcs7-signature"))
            })
        })
        .expect("no signature part")
        .contents()
        .to_vec()
}

// ---------------------------------------------------------------------------------------------
// openssl

/// `openssl TOOL -sign OPTS (-signer C -inkey K)... -in INPUT -out NAME`.
fn openssl_sign(
    work: &Work,
    name: &str,
    tool: &str,
    opts: &[&str],
    signers: &[(&Path, &Path)],
    input: &Path,
) -> PathBuf {
    let out = work.path(name);
    let mut cmd = Command::new("openssl");
    cmd.args([tool, "-sign"]);
    // Signers first: `-keyopt` applies to the signer before it.
    for (cert, key) in signers {
        cmd.arg("-signer").arg(cert).arg("-inkey").arg(key);
    }
    cmd.args(opts);
    cmd.arg("-in").arg(input).arg("-out").arg(&out);
    run_ok(&mut cmd);
    out
}

fn alice_sign() -> (PathBuf, PathBuf) {
    (fixture("alice-sign.pem"), fixture("alice-sign.key.pem"))
}

/// `openssl cms -sign` with alice-sign.
fn alice_openssl(work: &Work, name: &str, tool: &str, opts: &[&str], input: &Path) -> PathBuf {
    let (cert, key) = alice_sign();
    openssl_sign(work, name, tool, opts, &[(&cert, &key)], input)
}

/// `openssl cms -verify` against the fixture CA (`-inform`, `-binary`, `-content` as given):
/// insists it succeeds and returns the content it extracts.
fn openssl_verify(work: &Work, msg: &Path, inform: &str, opts: &[&str]) -> Vec<u8> {
    let out = work.path("openssl-verified.out");
    let _ = std::fs::remove_file(&out);
    run_ok(
        Command::new("openssl")
            .args(["cms", "-verify", "-inform", inform, "-CAfile"])
            .arg(fixture("ca.pem"))
            .args(opts)
            .arg("-in")
            .arg(msg)
            .arg("-out")
            .arg(&out),
    );
    std::fs::read(&out).unwrap()
}

/// `openssl cms -verify` must refuse `msg` with the fixture CA, and accept it with
/// `-noverify` (the signature itself is good, only the certificate is not).
fn openssl_refuses_cert(msg: &Path) {
    let cmd = |extra: &[&str]| {
        Command::new("openssl")
            .args(["cms", "-verify", "-CAfile"])
            .arg(fixture("ca.pem"))
            .args(extra)
            .arg("-in")
            .arg(msg)
            .args(["-out", "/dev/null"])
            .output()
            .unwrap()
    };
    assert!(
        !cmd(&[]).status.success(),
        "openssl accepts the signer of {}",
        msg.display()
    );
    let nv = cmd(&["-noverify"]);
    assert!(
        nv.status.success(),
        "openssl -noverify rejects the signature of {}: {}",
        msg.display(),
        String::from_utf8_lossy(&nv.stderr)
    );
}

/// Extra certificates made at test time with `openssl ca`, issued by the fixture CA (or by
/// `ca_cert`/`ca_key`), with EC P-256 keys.
struct Pki {
    dir: PathBuf,
}

impl Pki {
    fn new(work: &Work) -> Self {
        let dir = work.path("pki");
        std::fs::create_dir_all(dir.join("db")).unwrap();
        std::fs::write(dir.join("db/index.txt"), "").unwrap();
        std::fs::write(dir.join("db/serial"), "2000\n").unwrap();
        std::fs::write(
            dir.join("ext.cnf"),
            "[sign]\n\
             basicConstraints = critical, CA:FALSE\n\
             keyUsage = critical, digitalSignature\n\
             extendedKeyUsage = emailProtection\n\
             subjectKeyIdentifier = hash\n\
             authorityKeyIdentifier = keyid\n\
             subjectAltName = email:alice@example.test\n\
             [clientauth]\n\
             basicConstraints = critical, CA:FALSE\n\
             keyUsage = critical, digitalSignature\n\
             extendedKeyUsage = clientAuth\n\
             subjectKeyIdentifier = hash\n\
             authorityKeyIdentifier = keyid\n\
             subjectAltName = email:alice@example.test\n",
        )
        .unwrap();
        let d = path_str(&dir);
        std::fs::write(
            dir.join("ca.cnf"),
            format!(
                "[ca]\n\
                 default_ca = tca\n\
                 [tca]\n\
                 database = {d}/db/index.txt\n\
                 new_certs_dir = {d}/db\n\
                 serial = {d}/db/serial\n\
                 certificate = {ca}\n\
                 private_key = {key}\n\
                 default_md = sha256\n\
                 policy = any\n\
                 email_in_dn = yes\n\
                 unique_subject = no\n\
                 [any]\n\
                 organizationName = optional\n\
                 commonName = supplied\n\
                 emailAddress = optional\n",
                ca = ca(),
                key = path_str(&fixture("ca.key.pem")),
            ),
        )
        .unwrap();
        Pki { dir }
    }

    fn ec_key(&self, name: &str) -> PathBuf {
        let key = self.dir.join(format!("{name}.key.pem"));
        pki::ec_key(&key);
        key
    }

    /// A certificate for alice's name and address on `key`, with the `profile` extensions
    /// (`sign` or `clientauth`) and `validity` (`-days N` or `-startdate/-enddate`).
    fn issue(&self, name: &str, key: &Path, profile: &str, validity: &[&str]) -> PathBuf {
        let csr = self.dir.join(format!("{name}.csr"));
        let cert = self.dir.join(format!("{name}.pem"));
        run_ok(
            Command::new("openssl")
                .args(["req", "-new", "-key"])
                .arg(key)
                .args([
                    "-subj",
                    "/O=p11smime TEST ONLY/CN=Alice Tester/emailAddress=alice@example.test",
                    "-out",
                ])
                .arg(&csr),
        );
        run_ok(
            Command::new("openssl")
                .args(["ca", "-batch", "-notext", "-preserveDN", "-config"])
                .arg(self.dir.join("ca.cnf"))
                .arg("-extfile")
                .arg(self.dir.join("ext.cnf"))
                .args(["-extensions", profile])
                .args(validity)
                .arg("-in")
                .arg(&csr)
                .arg("-out")
                .arg(&cert),
        );
        cert
    }

    /// A self-signed CA certificate named `subject` on `key` (not the fixture CA).
    fn other_ca(&self, name: &str, key: &Path, subject: &str) -> PathBuf {
        let cert = self.dir.join(format!("{name}.pem"));
        run_ok(
            Command::new("openssl")
                .args(["req", "-x509", "-new", "-key"])
                .arg(key)
                .args(["-subj", subject, "-days", "30"])
                .args(["-addext", "basicConstraints=critical,CA:TRUE"])
                .args(["-addext", "keyUsage=critical,keyCertSign,cRLSign"])
                .arg("-out")
                .arg(&cert),
        );
        cert
    }
}

#[test]
fn openssl_cms_multipart_signed_text_and_binary() {
    let w = Work::new();
    let entity = w.entity();

    // Text mode: the LF input is signed (and written as the first part) as CRLF.
    let msg = alice_openssl(&w, "text.eml", "cms", HEADERS, &entity);
    let raw = std::fs::read(&msg).unwrap();
    assert!(contains(&raw, b"From: Alice Tester <alice@example.test>\n"));
    assert!(contains(&raw, b"micalg=\"sha-256\""));
    let extracted = openssl_verify(&w, &msg, "SMIME", &[]);
    assert_eq!(extracted, crlf(ENTITY.as_bytes()), "openssl text mode");
    verify_ca(&msg, &[])
        .good("multipart/signed", 1, Some(true), &extracted)
        .signed_by(&fixture("alice-sign.pem"));
    let v = verify_ca(&msg, &[]);
    assert!(v.signers()[0]["signing_time"].is_string(), "{}", v.report());
    // Without --json: the report on stderr, nothing on stdout.
    let out = p11smime()
        .args(["verify", "--no-system-ca", "--ca", &ca()])
        .arg(&msg)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success()
            && out.stdout.is_empty()
            && stderr.contains("Good signature, trusted: ")
            && stderr.contains("alice@example.test"),
        "without --json: {stderr}"
    );

    // The same message after a transport turned every line ending into CRLF.
    let transported = w.write("text-crlf.eml", &crlf(&raw));
    verify_ca(&transported, &[]).good("multipart/signed", 1, Some(true), &extracted);

    // -binary: the LF bytes are signed and sent as they are.
    let mut opts = vec!["-binary"];
    opts.extend_from_slice(HEADERS);
    let msg = alice_openssl(&w, "binary.eml", "cms", &opts, &entity);
    let extracted = openssl_verify(&w, &msg, "SMIME", &["-binary"]);
    assert_eq!(extracted, ENTITY.as_bytes(), "openssl -binary");
    verify_ca(&msg, &[]).good("multipart/signed", 1, Some(true), &extracted);

    // From stdin ('-').
    let mut child = p11smime()
        .args(["verify", "--no-system-ca", "--ca", &ca(), "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(&std::fs::read(&msg).unwrap())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "stdin: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn openssl_cms_opaque_der_pem_and_streamed_ber() {
    let w = Work::new();
    let entity = w.entity();
    let canonical = crlf(ENTITY.as_bytes());

    let mut opts = vec!["-nodetach"];
    opts.extend_from_slice(HEADERS);
    let msg = alice_openssl(&w, "opaque.eml", "cms", &opts, &entity);
    assert!(contains(
        &std::fs::read(&msg).unwrap(),
        b"application/pkcs7-mime; smime-type=signed-data"
    ));
    let extracted = openssl_verify(&w, &msg, "SMIME", &[]);
    assert_eq!(extracted, canonical);
    verify_ca(&msg, &[]).good("signed-data", 1, Some(true), &extracted);

    let der = alice_openssl(
        &w,
        "opaque.der",
        "cms",
        &["-nodetach", "-outform", "DER"],
        &entity,
    );
    assert_eq!(std::fs::read(&der).unwrap()[..2], [0x30, 0x82], "DER");
    let extracted = openssl_verify(&w, &der, "DER", &[]);
    verify_ca(&der, &[]).good("signed-data", 1, None, &extracted);

    // -stream: indefinite-length BER, as a message, as DER and as PEM.
    let mut opts = vec!["-stream"];
    opts.extend_from_slice(HEADERS);
    let msg = alice_openssl(&w, "stream.eml", "cms", &opts, &entity);
    let extracted = openssl_verify(&w, &msg, "SMIME", &[]);
    verify_ca(&msg, &[]).good("multipart/signed", 1, Some(true), &extracted);

    let mut opts = vec!["-stream", "-nodetach"];
    opts.extend_from_slice(HEADERS);
    let msg = alice_openssl(&w, "stream-opaque.eml", "cms", &opts, &entity);
    let extracted = openssl_verify(&w, &msg, "SMIME", &[]);
    verify_ca(&msg, &[]).good("signed-data", 1, Some(true), &extracted);

    let ber = alice_openssl(
        &w,
        "stream-opaque.ber",
        "cms",
        &["-stream", "-nodetach", "-outform", "DER"],
        &entity,
    );
    assert_eq!(std::fs::read(&ber).unwrap()[..2], [0x30, 0x80], "BER");
    let extracted = openssl_verify(&w, &ber, "DER", &[]);
    assert_eq!(extracted, canonical);
    verify_ca(&ber, &[]).good("signed-data", 1, None, &extracted);

    let pem = alice_openssl(
        &w,
        "stream-opaque.pem",
        "cms",
        &["-stream", "-nodetach", "-outform", "PEM"],
        &entity,
    );
    assert!(
        std::fs::read_to_string(&pem)
            .unwrap()
            .starts_with("-----BEGIN CMS-----")
    );
    let extracted = openssl_verify(&w, &pem, "PEM", &[]);
    verify_ca(&pem, &[]).good("signed-data", 1, None, &extracted);

    // `-stream -outform DER` without -nodetach still embeds the content.
    let ber = alice_openssl(
        &w,
        "stream-embedded.ber",
        "cms",
        &["-stream", "-outform", "DER"],
        &entity,
    );
    let extracted = openssl_verify(&w, &ber, "DER", &[]);
    verify_ca(&ber, &[]).good("signed-data", 1, None, &extracted);
}

#[test]
fn openssl_cms_detached_p7s_with_content() {
    let w = Work::new();
    let entity = w.entity();
    let entity_crlf = w.entity_crlf();

    // -binary: the signature covers the LF file as it is.
    let p7s = alice_openssl(
        &w,
        "binary.p7s",
        "cms",
        &["-binary", "-outform", "DER"],
        &entity,
    );
    let content = path_str(&entity);
    let extracted = openssl_verify(&w, &p7s, "DER", &["-binary", "-content", content]);
    assert_eq!(extracted, ENTITY.as_bytes());
    verify_ca(&p7s, &["--content", content]).good("detached", 1, None, &extracted);

    // Text mode: the signature covers the CRLF form; the LF file does not match it.
    let p7s = alice_openssl(&w, "text.p7s", "cms", &["-outform", "DER"], &entity);
    let canonical = path_str(&entity_crlf);
    let extracted = openssl_verify(&w, &p7s, "DER", &["-binary", "-content", canonical]);
    verify_ca(&p7s, &["--content", canonical]).good("detached", 1, None, &extracted);
    verify_ca(&p7s, &["--content", content]).bad(DIGEST_CHANGED, false);

    // The signature part of `-stream` S/MIME output (DER even with -stream) as a bare .p7s.
    let mut opts = vec!["-stream"];
    opts.extend_from_slice(HEADERS);
    let msg = alice_openssl(&w, "stream.eml", "cms", &opts, &entity);
    let p7s = w.write(
        "stream.p7s",
        &multipart_signature(&std::fs::read(&msg).unwrap()),
    );
    let extracted = openssl_verify(&w, &p7s, "DER", &["-binary", "-content", canonical]);
    verify_ca(&p7s, &["--content", canonical]).good("detached", 1, None, &extracted);

    // Without --content: a usage error that says what to give.
    let v = verify_ca(&p7s, &[]);
    let stderr = assert_fails(&v.out, 2, "detached .p7s without --content");
    assert!(stderr.contains("--content"), "{}", v.report());
    assert!(
        v.out.stdout.is_empty() && v.written.is_none(),
        "{}",
        v.report()
    );
}

#[test]
fn openssl_cms_pss_sha384_sha512() {
    let w = Work::new();
    let entity = w.entity();

    let mut opts = vec!["-keyopt", "rsa_padding_mode:pss"];
    opts.extend_from_slice(HEADERS);
    let msg = alice_openssl(&w, "pss.eml", "cms", &opts, &entity);
    let sig = multipart_signature(&std::fs::read(&msg).unwrap());
    assert!(
        contains(&sig, OID_RSASSA_PSS),
        "openssl did not sign with PSS"
    );
    let extracted = openssl_verify(&w, &msg, "SMIME", &[]);
    verify_ca(&msg, &[]).good("multipart/signed", 1, Some(true), &extracted);

    let der = alice_openssl(
        &w,
        "pss.der",
        "cms",
        &[
            "-nodetach",
            "-outform",
            "DER",
            "-md",
            "sha512",
            "-keyopt",
            "rsa_padding_mode:pss",
        ],
        &entity,
    );
    let bytes = std::fs::read(&der).unwrap();
    assert!(contains(&bytes, OID_RSASSA_PSS) && contains(&bytes, OID_SHA512));
    let extracted = openssl_verify(&w, &der, "DER", &[]);
    verify_ca(&der, &[]).good("signed-data", 1, None, &extracted);

    for (md, micalg, oid) in [
        ("sha384", "sha-384", OID_SHA384),
        ("sha512", "sha-512", OID_SHA512),
    ] {
        let mut opts = vec!["-md", md];
        opts.extend_from_slice(HEADERS);
        let msg = alice_openssl(&w, &format!("{md}.eml"), "cms", &opts, &entity);
        let raw = std::fs::read(&msg).unwrap();
        assert!(contains(&raw, format!("micalg=\"{micalg}\"").as_bytes()));
        assert!(contains(&multipart_signature(&raw), oid));
        let extracted = openssl_verify(&w, &msg, "SMIME", &[]);
        verify_ca(&msg, &[]).good("multipart/signed", 1, Some(true), &extracted);
    }
}

#[test]
fn openssl_smime_pkcs7_forms() {
    let w = Work::new();
    let entity = w.entity();

    let msg = alice_openssl(&w, "smime.eml", "smime", HEADERS, &entity);
    assert!(contains(
        &std::fs::read(&msg).unwrap(),
        b"protocol=\"application/x-pkcs7-signature\""
    ));
    let extracted = openssl_verify(&w, &msg, "SMIME", &[]);
    verify_ca(&msg, &[]).good("multipart/signed", 1, Some(true), &extracted);

    let mut opts = vec!["-nodetach"];
    opts.extend_from_slice(HEADERS);
    let msg = alice_openssl(&w, "smime-opaque.eml", "smime", &opts, &entity);
    assert!(contains(
        &std::fs::read(&msg).unwrap(),
        b"application/x-pkcs7-mime; smime-type=signed-data"
    ));
    let extracted = openssl_verify(&w, &msg, "SMIME", &[]);
    verify_ca(&msg, &[]).good("signed-data", 1, Some(true), &extracted);

    let der = alice_openssl(
        &w,
        "smime-opaque.der",
        "smime",
        &["-nodetach", "-outform", "DER"],
        &entity,
    );
    let extracted = openssl_verify(&w, &der, "DER", &[]);
    verify_ca(&der, &[]).good("signed-data", 1, None, &extracted);

    let mut opts = vec!["-stream"];
    opts.extend_from_slice(HEADERS);
    let msg = alice_openssl(&w, "smime-stream.eml", "smime", &opts, &entity);
    let extracted = openssl_verify(&w, &msg, "SMIME", &[]);
    verify_ca(&msg, &[]).good("multipart/signed", 1, Some(true), &extracted);
}

#[test]
fn openssl_ecdsa_and_two_signers() {
    let w = Work::new();
    let entity = w.entity();
    let pki = Pki::new(&w);
    let ec_key = pki.ec_key("alice-ecsign");
    let ec_cert = pki.issue("alice-ecsign", &ec_key, "sign", &["-days", "30"]);

    let msg = openssl_sign(
        &w,
        "ecdsa.eml",
        "cms",
        HEADERS,
        &[(&ec_cert, &ec_key)],
        &entity,
    );
    assert!(contains(
        &multipart_signature(&std::fs::read(&msg).unwrap()),
        OID_ECDSA_SHA256
    ));
    let extracted = openssl_verify(&w, &msg, "SMIME", &[]);
    verify_ca(&msg, &[])
        .good("multipart/signed", 1, Some(true), &extracted)
        .signed_by(&ec_cert);

    let der = openssl_sign(
        &w,
        "ecdsa.der",
        "cms",
        &["-nodetach", "-outform", "DER"],
        &[(&ec_cert, &ec_key)],
        &entity,
    );
    let extracted = openssl_verify(&w, &der, "DER", &[]);
    verify_ca(&der, &[]).good("signed-data", 1, None, &extracted);

    // Two signers: alice's RSA signature certificate and the EC one.
    let (rsa_cert, rsa_key) = alice_sign();
    let msg = openssl_sign(
        &w,
        "two.eml",
        "cms",
        HEADERS,
        &[(&rsa_cert, &rsa_key), (&ec_cert, &ec_key)],
        &entity,
    );
    let extracted = openssl_verify(&w, &msg, "SMIME", &[]);
    verify_ca(&msg, &[])
        .good("multipart/signed", 2, Some(true), &extracted)
        .signed_by(&rsa_cert)
        .signed_by(&ec_cert);

    let der = openssl_sign(
        &w,
        "two.der",
        "cms",
        &["-nodetach", "-outform", "DER"],
        &[(&rsa_cert, &rsa_key), (&ec_cert, &ec_key)],
        &entity,
    );
    let extracted = openssl_verify(&w, &der, "DER", &[]);
    verify_ca(&der, &[])
        .good("signed-data", 2, None, &extracted)
        .signed_by(&rsa_cert)
        .signed_by(&ec_cert);
}

#[test]
fn signer_cert_is_saved_as_pem_and_a_foreign_from_is_flagged() {
    let w = Work::new();
    let entity = w.entity();
    let msg = alice_openssl(&w, "signed.eml", "cms", HEADERS, &entity);
    let saved = w.path("signer.pem");
    let v = verify_ca(&msg, &["--signer-cert", path_str(&saved)]);
    let extracted = openssl_verify(&w, &msg, "SMIME", &[]);
    v.good("multipart/signed", 1, Some(true), &extracted);
    let got = std::fs::read_to_string(&saved).unwrap();
    let want = std::fs::read_to_string(fixture("alice-sign.pem")).unwrap();
    assert_eq!(got.trim_end(), want.trim_end(), "--signer-cert");

    // Signed by alice, sent as someone else: a good signature, but From does not match.
    let msg = alice_openssl(
        &w,
        "mallory.eml",
        "cms",
        &["-from", "mallory@example.test"],
        &entity,
    );
    let v = verify_ca(&msg, &[]);
    assert_eq!(v.out.status.code(), Some(0), "{}", v.report());
    assert_eq!(v.json["from"], Value::from("mallory@example.test"));
    assert_eq!(
        v.signers()[0]["from_matches"],
        Value::Bool(false),
        "{}",
        v.report()
    );
    let out = p11smime()
        .args(["verify", "--no-system-ca", "--ca", &ca()])
        .arg(&msg)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stderr.contains("From address is not one of the signer's"),
        "without --json: {stderr}"
    );
}

// ---------------------------------------------------------------------------------------------
// Negative cases

#[test]
fn changed_content_is_a_bad_signature() {
    let w = Work::new();
    let entity = w.entity();

    let msg = alice_openssl(&w, "signed.eml", "cms", HEADERS, &entity);
    let bad = altered(&w, &msg, "signed-altered.eml");
    verify_ca(&bad, &[]).bad(DIGEST_CHANGED, false);

    let der = alice_openssl(
        &w,
        "opaque.der",
        "cms",
        &["-nodetach", "-outform", "DER"],
        &entity,
    );
    let bad = altered(&w, &der, "opaque-altered.der");
    verify_ca(&bad, &[]).bad(DIGEST_CHANGED, false);

    let ber = alice_openssl(
        &w,
        "opaque.ber",
        "cms",
        &["-stream", "-nodetach", "-outform", "DER"],
        &entity,
    );
    let bad = altered(&w, &ber, "opaque-altered.ber");
    verify_ca(&bad, &[]).bad(DIGEST_CHANGED, false);
}

#[test]
fn untrusted_anchors() {
    let w = Work::new();
    let entity = w.entity();
    let pki = Pki::new(&w);
    let msg = alice_openssl(&w, "signed.eml", "cms", HEADERS, &entity);

    // A different CA.
    let key = pki.ec_key("other-ca");
    let other = pki.other_ca(
        "other-ca",
        &key,
        "/O=p11smime TEST ONLY/CN=Another Test Root CA",
    );
    verify(&msg, &["--ca", path_str(&other)]).bad(UNKNOWN_ISSUER, true);

    // An impostor: the fixture CA's name on another (RSA) key.
    let impostor = pki.other_ca(
        "impostor-ca",
        &fixture("bob-enc.key.pem"),
        "/O=p11smime TEST ONLY/CN=p11smime Test Root CA",
    );
    verify(&msg, &["--ca", path_str(&impostor)]).bad("invalid signature", true);

    // No anchor at all.
    verify(&msg, &[]).bad(UNKNOWN_ISSUER, true);
}

#[test]
fn expired_and_wrong_purpose_signers_are_not_trusted() {
    let w = Work::new();
    let entity = w.entity();
    let pki = Pki::new(&w);
    let key = pki.ec_key("alice-test");

    let expired = pki.issue(
        "expired",
        &key,
        "sign",
        &[
            "-startdate",
            "20200101000000Z",
            "-enddate",
            "20210101000000Z",
        ],
    );
    let msg = openssl_sign(
        &w,
        "expired.eml",
        "cms",
        HEADERS,
        &[(&expired, &key)],
        &entity,
    );
    openssl_refuses_cert(&msg);
    verify_ca(&msg, &[])
        .bad("the signer's certificate had expired at signing time", true)
        .signed_by(&expired);

    let client = pki.issue("clientauth", &key, "clientauth", &["-days", "30"]);
    let msg = openssl_sign(
        &w,
        "client.eml",
        "cms",
        HEADERS,
        &[(&client, &key)],
        &entity,
    );
    openssl_refuses_cert(&msg);
    verify_ca(&msg, &[]).bad(
        "the signer's certificate is not for e-mail protection (extended key usage)",
        true,
    );

    // A key-management certificate (keyEncipherment only) used to sign.
    let msg = openssl_sign(
        &w,
        "keyenc.eml",
        "cms",
        HEADERS,
        &[(&fixture("alice-enc.pem"), &fixture("alice-enc.key.pem"))],
        &entity,
    );
    verify_ca(&msg, &[]).bad(
        "the signer's certificate is not for signing (key usage)",
        true,
    );

    // Two signers, one good and one expired: not all good.
    let (rsa_cert, rsa_key) = alice_sign();
    let msg = openssl_sign(
        &w,
        "mixed.eml",
        "cms",
        HEADERS,
        &[(&rsa_cert, &rsa_key), (&expired, &key)],
        &entity,
    );
    let v = verify_ca(&msg, &[]);
    v.bad("had expired at signing time", true);
    assert_eq!(v.signers().len(), 2, "{}", v.report());
    let good = v
        .signers()
        .iter()
        .find(|s| norm_serial(s["serial"].as_str().unwrap()) == serial(&rsa_cert))
        .unwrap();
    assert_eq!(good["trusted"], Value::Bool(true), "{}", v.report());
    assert_eq!(good["problem"], Value::Null, "{}", v.report());
}

#[test]
fn encrypted_message_says_decrypt_first() {
    let w = Work::new();
    let entity = w.entity();
    for (name, form) in [("enc.eml", "SMIME"), ("enc.der", "DER")] {
        let out = w.path(name);
        run_ok(
            Command::new("openssl")
                .args(["cms", "-encrypt", "-aes256", "-outform", form, "-in"])
                .arg(&entity)
                .arg("-out")
                .arg(&out)
                .arg(fixture("alice-enc.pem")),
        );
        let v = verify_ca(&out, &[]);
        let stderr = assert_fails(&v.out, 3, name);
        assert!(stderr.contains("decrypt it first"), "{}", v.report());
        assert!(
            v.out.stdout.is_empty() && v.written.is_none(),
            "{}",
            v.report()
        );
    }
}

// ---------------------------------------------------------------------------------------------
// gpgsm

/// A temporary GNUPGHOME trusting the test CA, with alice-sign imported as a secret key from
/// a PKCS#12 (passphrase "x").
fn gpgsm_for_alice(work: &Work) -> Gpgsm {
    Gpgsm::new(&[]).with_secret_key(work.dir.path(), "alice-sign.pem", "alice-sign.key.pem", "x")
}

impl Gpgsm {
    /// `gpgsm -u alice@example.test MODE... --output OUT INPUT`.
    fn sign(&self, mode: &[&str], input: &Path, out: &Path) {
        let mut cmd = self.cmd();
        cmd.args(["--batch", "--disable-crl-checks", "--disable-dirmngr"]);
        let o = self
            .with_passphrase(&mut cmd)
            .args(["--yes", "-u", "alice@example.test", "--output"])
            .arg(out)
            .args(mode)
            .arg(input)
            .output()
            .unwrap();
        assert!(
            o.status.success() && out.exists(),
            "gpgsm {mode:?} failed: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }

    /// gpgsm's own verdict must be a good, fully trusted signature by alice.
    fn assert_verifies(&self, sig: &Path, content: Option<&Path>) {
        let out = self.verify(sig, content, Some(Path::new("/dev/null")));
        let status = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success()
                && status.contains("[GNUPG:] GOODSIG ")
                && status.contains("[GNUPG:] TRUST_FULLY"),
            "gpgsm --verify {}: {status}\n{}",
            sig.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

fn base64_lines(der: &[u8]) -> String {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    b64.as_bytes()
        .chunks(76)
        .map(|c| format!("{}\r\n", String::from_utf8_lossy(c)))
        .collect()
}

const MAIL_HEADERS: &str = "From: Alice Tester <alice@example.test>\r\n\
                            To: bob@example.test\r\n\
                            Subject: Signed by a peer\r\n\
                            MIME-Version: 1.0\r\n";

/// A mail with `der` as its application/pkcs7-mime body, as a mail client sends opaque mail.
fn opaque_mail(der: &[u8]) -> Vec<u8> {
    format!(
        "{MAIL_HEADERS}Content-Type: application/pkcs7-mime; smime-type=signed-data; \
         name=\"smime.p7m\"\r\n\
         Content-Transfer-Encoding: base64\r\n\
         Content-Disposition: attachment; filename=\"smime.p7m\"\r\n\r\n{}",
        base64_lines(der)
    )
    .into_bytes()
}

/// A multipart/signed mail of `content` (exactly the first part) and the detached `sig`.
fn multipart_mail(content: &[u8], sig: &[u8]) -> Vec<u8> {
    let b = "=-=peer-boundary=-=";
    let mut mail = format!(
        "{MAIL_HEADERS}Content-Type: multipart/signed; protocol=\"application/pkcs7-signature\"; \
         micalg=sha-256; boundary=\"{b}\"\r\n\r\n\
         This is a signed message.\r\n--{b}\r\n"
    )
    .into_bytes();
    mail.extend_from_slice(content);
    mail.extend_from_slice(
        format!(
            "\r\n--{b}\r\n\
             Content-Type: application/pkcs7-signature; name=\"smime.p7s\"\r\n\
             Content-Transfer-Encoding: base64\r\n\
             Content-Disposition: attachment; filename=\"smime.p7s\"\r\n\r\n{}\
             --{b}--\r\n",
            base64_lines(sig)
        )
        .as_bytes(),
    );
    mail
}

#[test]
fn gpgsm_signatures_verify() {
    let w = Work::new();
    let gpg = gpgsm_for_alice(&w);
    let entity = w.entity();
    let entity_crlf = w.entity_crlf();
    let canonical = crlf(ENTITY.as_bytes());

    // Opaque (the default): indefinite-length BER with the LF content as it is.
    let p7m = w.path("gpgsm.p7m");
    gpg.sign(&["--sign"], &entity, &p7m);
    gpg.assert_verifies(&p7m, None);
    let der = std::fs::read(&p7m).unwrap();
    assert_eq!(der[..2], [0x30, 0x80], "gpgsm --sign is not BER");
    verify_ca(&p7m, &[])
        .good("signed-data", 1, None, ENTITY.as_bytes())
        .signed_by(&fixture("alice-sign.pem"));
    let mail = w.write("gpgsm-opaque.eml", &opaque_mail(&der));
    verify_ca(&mail, &[]).good("signed-data", 1, Some(true), ENTITY.as_bytes());
    let bad = altered(&w, &p7m, "gpgsm-altered.p7m");
    verify_ca(&bad, &[]).bad(DIGEST_CHANGED, false);

    // --armor: "-----BEGIN SIGNED MESSAGE-----".
    let pem = w.path("gpgsm.pem");
    gpg.sign(&["--armor", "--sign"], &entity, &pem);
    assert!(
        std::fs::read_to_string(&pem)
            .unwrap()
            .starts_with("-----BEGIN SIGNED MESSAGE-----")
    );
    verify_ca(&pem, &[]).good("signed-data", 1, None, ENTITY.as_bytes());

    // --detach-sign of the canonical entity, as a .p7s with --content and in a mail.
    let p7s = w.path("gpgsm.p7s");
    gpg.sign(&["--detach-sign"], &entity_crlf, &p7s);
    gpg.assert_verifies(&p7s, Some(&entity_crlf));
    let sig = std::fs::read(&p7s).unwrap();
    assert_eq!(sig[..2], [0x30, 0x80], "gpgsm --detach-sign is not BER");
    verify_ca(&p7s, &["--content", path_str(&entity_crlf)]).good("detached", 1, None, &canonical);
    verify_ca(&p7s, &["--content", path_str(&entity)]).bad(DIGEST_CHANGED, false);
    let mail = w.write("gpgsm-signed.eml", &multipart_mail(&canonical, &sig));
    verify_ca(&mail, &[]).good("multipart/signed", 1, Some(true), &canonical);
    gpg.stop();
}

// ---------------------------------------------------------------------------------------------
// NSS cmsutil

/// An NSS DB with a password (in a file), alice-sign imported from a PKCS#12 by pk12util as
/// "alice-sign", and the test CA trusted for e-mail (`,C,`).
fn nss_db(w: &Work) -> NssDb {
    let db = NssDb::create(&w.path("nssdb"), Some("db-secret"));
    let p12 = w.path("alice-sign-nss.p12");
    let name = ["-name", "alice-sign"];
    pkcs12_export(&p12, "alice-sign.pem", "alice-sign.key.pem", "x", &name);
    db.import_p12(&p12, "x");
    db.trust_test_ca();
    db
}

/// `cmsutil -S -N alice-sign -Y NONE EXTRA -i INPUT -o OUT`.
fn cmsutil_sign(db: &NssDb, extra: &[&str], input: &Path, out: &Path) {
    run_ok(
        db.cmsutil("-S")
            .args(["-N", "alice-sign", "-Y", "NONE"])
            .args(extra)
            .arg("-i")
            .arg(input)
            .arg("-o")
            .arg(out),
    );
}

/// `cmsutil -D` must succeed (good signature, trusted signer) and give `content`.
fn cmsutil_verifies(db: &NssDb, msg: &Path, detached: Option<&Path>, content: &[u8]) {
    let mut cmd = db.cmsutil("-D");
    if let Some(c) = detached {
        cmd.arg("-c").arg(c);
    }
    let out = run_ok(cmd.arg("-i").arg(msg));
    assert!(
        out.stdout == content,
        "cmsutil -D {}: other content",
        msg.display()
    );
}

#[test]
fn nss_cmsutil_signatures_verify() {
    let w = Work::new();
    let db = nss_db(&w);
    let entity = w.entity();

    let p7m = w.path("nss.p7m");
    cmsutil_sign(&db, &["-G", "-P"], &entity, &p7m);
    assert_eq!(std::fs::read(&p7m).unwrap()[..2], [0x30, 0x80], "BER");
    cmsutil_verifies(&db, &p7m, None, ENTITY.as_bytes());
    let v = verify_ca(&p7m, &[]);
    v.good("signed-data", 1, None, ENTITY.as_bytes())
        .signed_by(&fixture("alice-sign.pem"));
    assert!(v.signers()[0]["signing_time"].is_string(), "-G");
    let mail = w.write(
        "nss-opaque.eml",
        &opaque_mail(&std::fs::read(&p7m).unwrap()),
    );
    verify_ca(&mail, &[]).good("signed-data", 1, Some(true), ENTITY.as_bytes());
    let bad = altered(&w, &p7m, "nss-altered.p7m");
    verify_ca(&bad, &[]).bad(DIGEST_CHANGED, false);

    // Without -G there is no signing time: trust is judged now.
    let p7m = w.path("nss-sha512.p7m");
    cmsutil_sign(&db, &["-H", "SHA512"], &entity, &p7m);
    assert!(contains(&std::fs::read(&p7m).unwrap(), OID_SHA512));
    cmsutil_verifies(&db, &p7m, None, ENTITY.as_bytes());
    let v = verify_ca(&p7m, &[]);
    v.good("signed-data", 1, None, ENTITY.as_bytes());
    assert_eq!(v.signers()[0]["signing_time"], Value::Null);

    // -T: detached.
    let p7s = w.path("nss.p7s");
    cmsutil_sign(&db, &["-T", "-G"], &entity, &p7s);
    assert_eq!(std::fs::read(&p7s).unwrap()[..2], [0x30, 0x80], "BER");
    cmsutil_verifies(&db, &p7s, Some(&entity), ENTITY.as_bytes());
    verify_ca(&p7s, &["--content", path_str(&entity)]).good("detached", 1, None, ENTITY.as_bytes());
    let mail = w.write(
        "nss-signed.eml",
        &multipart_mail(ENTITY.as_bytes(), &std::fs::read(&p7s).unwrap()),
    );
    verify_ca(&mail, &[]).good("multipart/signed", 1, Some(true), ENTITY.as_bytes());
    let changed = w.write("changed.txt", &crlf(ENTITY.as_bytes()));
    verify_ca(&p7s, &["--content", path_str(&changed)]).bad(DIGEST_CHANGED, false);
}

// ---------------------------------------------------------------------------------------------
// Regressions: bugs these tests found, fixed in src/

/// openssl signs a plain file that has no MIME header; the first part of its multipart/signed
/// is then "a\r\n" (CRLF, written by openssl) followed by "\n------BOUNDARY". p11smime once took
/// "a\r\n\n" as the signed part (the line break that belongs to the delimiter included) and
/// reported a changed message; `openssl cms -verify` accepts it.
#[test]
fn headerless_first_part_verifies() {
    let w = Work::new();
    let input = w.write("plain.txt", b"just a line\nand another\n");
    let msg = alice_openssl(&w, "plain.eml", "cms", HEADERS, &input);
    let extracted = openssl_verify(&w, &msg, "SMIME", &[]);
    assert_eq!(extracted, b"just a line\r\nand another\r\n");
    verify_ca(&msg, &[]).good("multipart/signed", 1, Some(true), &extracted);
}

/// `--content FILE` with a signature that carries its own content: p11smime once verified the
/// embedded content, ignored FILE, exited 0 and wrote the embedded content with `-o`, so
/// "does this signature cover FILE?" was answered "yes" for any FILE.
#[test]
fn content_option_is_not_ignored_for_embedded_content() {
    let w = Work::new();
    let entity = w.entity();
    let der = alice_openssl(
        &w,
        "opaque.der",
        "cms",
        &["-nodetach", "-outform", "DER"],
        &entity,
    );
    let other = w.write("other.txt", b"a different document\n");
    let v = verify_ca(&der, &["--content", path_str(&other)]);
    assert_ne!(v.out.status.code(), Some(0), "{}", v.report());
    assert!(v.written.is_none(), "{}", v.report());
}
