//! `scripts/provision-token`: a CAC-like SoftHSM2 token from PKCS#12 and PEM files made at test
//! time by a throwaway CA (chosen CKA_IDs and labels, a signature key that wants the PIN for
//! every use, key-management keys, RSA and EC, a retired key), its errors, and the README's CI
//! recipe, run exactly as the README has it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use common::pki::{Ca, ec_key, openssl, rsa_key};
use common::*;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// The password of every PKCS#12 file and encrypted key made here.
const P12_PASS: &str = "correct horse 7";
const USER: &str = "/O=provision TEST ONLY/CN=Carol CI/emailAddress=carol@example.test";
const SIGN_EXT: &str = "basicConstraints = critical, CA:FALSE\n\
                        keyUsage = critical, digitalSignature, nonRepudiation\n\
                        extendedKeyUsage = emailProtection\n\
                        subjectKeyIdentifier = hash\n\
                        authorityKeyIdentifier = keyid\n\
                        subjectAltName = email:carol@example.test\n";
const ENC_EXT: &str = "basicConstraints = critical, CA:FALSE\n\
                       keyUsage = critical, keyEncipherment, dataEncipherment\n\
                       extendedKeyUsage = emailProtection\n\
                       subjectKeyIdentifier = hash\n\
                       authorityKeyIdentifier = keyid\n\
                       subjectAltName = email:carol@example.test\n";
const EC_EXT: &str = "basicConstraints = critical, CA:FALSE\n\
                      keyUsage = critical, keyAgreement\n\
                      extendedKeyUsage = emailProtection\n\
                      subjectKeyIdentifier = hash\n\
                      authorityKeyIdentifier = keyid\n\
                      subjectAltName = email:carol@example.test\n";

/// Carol's throwaway identities, as a CI user would bring them.
struct Identities {
    dir: tempfile::TempDir,
    ca: PathBuf,
    /// RSA signature certificate and key in a PKCS#12 file (AES, as OpenSSL 3 writes them),
    /// with the CA certificate in it too.
    sign_p12: PathBuf,
    sign_cert: PathBuf,
    /// RSA key-management certificate and key in a legacy PKCS#12 file (RC2/3DES, as older
    /// tools write them).
    enc_p12: PathBuf,
    enc_cert: PathBuf,
    enc_key: PathBuf,
    /// EC P-256 key-management certificate (PEM) and its key (encrypted PKCS#8 PEM).
    ec_cert: PathBuf,
    ec_key: PathBuf,
    /// An expired RSA key-management certificate (PEM) and its key (traditional RSA PEM).
    retired_cert: PathBuf,
    retired_key: PathBuf,
}

/// A certificate for a new `alg` key ("rsa" or "ec"), issued by `ca` with the extensions `ext`
/// (and `extra` options for `openssl ca`). Returns (certificate, key).
fn issue(ca: &Ca, name: &str, alg: &str, ext: &str, extra: &[&str]) -> (PathBuf, PathBuf) {
    let make_key = if alg == "rsa" { rsa_key } else { ec_key };
    ca.issue_with_key(name, USER, ext, extra, make_key)
}

/// `openssl pkcs12 -export` of `cert` and `key` with `P12_PASS` and `opts`.
fn p12(out: &Path, (cert, key): &(PathBuf, PathBuf), opts: &[&str]) {
    run_ok(
        openssl()
            .args(["pkcs12", "-export", "-passout"])
            .arg(format!("pass:{P12_PASS}"))
            .args(opts)
            .arg("-in")
            .arg(cert)
            .arg("-inkey")
            .arg(key)
            .arg("-out")
            .arg(out),
    );
}

fn identities() -> Identities {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::root(
        dir.path(),
        "ca",
        "/O=provision TEST ONLY/CN=Provision Test CA",
    );
    let sign = issue(&ca, "sign", "rsa", SIGN_EXT, &[]);
    let enc = issue(&ca, "enc", "rsa", ENC_EXT, &[]);
    let ec = issue(&ca, "ec", "ec", EC_EXT, &[]);
    let retired = issue(
        &ca,
        "retired",
        "rsa",
        ENC_EXT,
        &[
            "-startdate",
            "20200101000000Z",
            "-enddate",
            "20210101000000Z",
        ],
    );
    let out = |name: &str| dir.path().join(name);
    p12(
        &out("carol-sign.p12"),
        &sign,
        &["-certfile", path_str(&ca.cert), "-name", "Carol signing"],
    );
    p12(&out("carol-enc.PFX"), &enc, &["-legacy"]);
    run_ok(
        openssl()
            .args(["pkey", "-aes256", "-passout"])
            .arg(format!("pass:{P12_PASS}"))
            .arg("-in")
            .arg(&ec.1)
            .arg("-out")
            .arg(out("carol-ec.key")),
    );
    std::fs::copy(&ec.0, out("carol-ec.pem")).unwrap();
    run_ok(
        openssl()
            .args(["pkey", "-traditional", "-in"])
            .arg(&retired.1)
            .arg("-out")
            .arg(out("carol-old.key")),
    );
    std::fs::copy(&retired.0, out("carol-old.pem")).unwrap();
    Identities {
        ca: ca.cert.clone(),
        sign_p12: out("carol-sign.p12"),
        sign_cert: sign.0,
        enc_p12: out("carol-enc.PFX"),
        enc_cert: enc.0,
        enc_key: enc.1,
        ec_cert: out("carol-ec.pem"),
        ec_key: out("carol-ec.key"),
        retired_cert: out("carol-old.pem"),
        retired_key: out("carol-old.key"),
        dir,
    }
}

/// `scripts/provision-token DIR ARGS...`, with the password in `TEST_P12_PASS`.
fn provision(dir: &Path, args: &[&str]) -> Output {
    Command::new(root().join("scripts/provision-token"))
        .arg(dir)
        .args(args)
        .env("P11SMIME_SOFTHSM_MODULE", softhsm_module())
        .env("TEST_P12_PASS", P12_PASS)
        .env_remove("P11SMIME_P12_PASS")
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

/// Carol's card: the signature key at the PIV default (02), key management at 03 and 0a1b
/// with chosen labels, the retired key at the default 05.
fn carol_token(ids: &Identities) -> TestToken {
    let dir = tempfile::tempdir().unwrap();
    let specs = [
        format!("sign::{}", path_str(&ids.sign_p12)),
        format!(
            "enc:03:{}:label=Carol Key Management Key:cert-label=Carol Key Management Certificate",
            path_str(&ids.enc_p12)
        ),
        format!(
            "enc:0A1B:{}:{}:label=Carol EC Key:cert-label=Carol EC Certificate",
            path_str(&ids.ec_cert),
            path_str(&ids.ec_key)
        ),
        format!(
            "retired::{}:{}",
            path_str(&ids.retired_cert),
            path_str(&ids.retired_key)
        ),
    ];
    let mut args = vec!["--label", "Carol CI", "--p12-pass", "env:TEST_P12_PASS"];
    args.extend(specs.iter().map(String::as_str));
    let out = provision(dir.path(), &args);
    assert!(out.status.success(), "provision-token: {}", report(&out));
    let stdout = String::from_utf8(out.stdout).unwrap();
    let conf = dir.path().join("softhsm2.conf");
    assert!(
        stdout.contains(&format!("export SOFTHSM2_CONF={}\n", path_str(&conf))),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!(
            "export P11SMIME_MODULE={}\n",
            path_str(&softhsm_module())
        )),
        "{stdout}"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("always-authenticate"), "summary: {stderr}");
    TestToken { dir, conf }
}

/// `p11smime certs --json --pin env:TEST_PIN`: the certificates of the one token.
fn token_certs(token: &TestToken) -> Vec<serde_json::Value> {
    let out = run_ok(&mut token.p11smime(&["certs", "--json", "--pin", "env:TEST_PIN"]));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v.as_array().unwrap().len(), 1, "{v}");
    v[0]["certificates"].as_array().unwrap().clone()
}

#[test]
fn provisions_chosen_ids_and_labels_with_the_private_keys() {
    let ids = identities();
    let token = carol_token(&ids);
    let certs = token_certs(&token);
    let mut got: Vec<_> = certs
        .iter()
        .map(|c| {
            assert_eq!(c["has_private_key"], true, "{c}");
            assert_eq!(c["emails"][0], "carol@example.test", "{c}");
            (
                c["id"].as_str().unwrap().to_string(),
                c["label"].as_str().unwrap().to_string(),
                c["key_label"].as_str().unwrap().to_string(),
                c["expired"].as_bool().unwrap(),
            )
        })
        .collect();
    got.sort();
    let want = [
        ("02", "Certificate for Digital Signature", "SIGN key", false),
        (
            "03",
            "Carol Key Management Certificate",
            "Carol Key Management Key",
            false,
        ),
        (
            "05",
            "Retired Certificate for Key Management 1",
            "Retired KEY MAN 1",
            true,
        ),
        ("0a1b", "Carol EC Certificate", "Carol EC Key", false),
    ]
    .map(|(i, l, k, e)| (i.to_string(), l.to_string(), k.to_string(), e));
    // Exactly these four: the CA certificate in the signing PKCS#12 file stayed out.
    assert_eq!(got, want);
    let v: serde_json::Value =
        serde_json::from_slice(&run_ok(&mut token.p11smime(&["tokens", "--json"])).stdout).unwrap();
    assert!(
        v.as_array()
            .unwrap()
            .iter()
            .any(|t| t["label"] == "Carol CI"),
        "{v}"
    );
}

#[test]
fn the_signing_key_wants_the_pin_again_and_signatures_verify() {
    let ids = identities();
    let token = carol_token(&ids);
    let input = token.write(
        "mail.txt",
        b"From: carol@example.test\nTo: dave@example.test\nSubject: from CI\n\
          Content-Type: text/plain\n\nSigned on the provisioned card.\n",
    );
    let signed = token.path("signed.eml");
    let (out, logins) = with_spy(
        &token,
        &[
            "sign",
            "--pin",
            "env:TEST_PIN",
            "-o",
            path_str(&signed),
            path_str(&input),
        ],
    );
    assert!(out.status.success(), "sign: {}", report(&out));
    assert_eq!(
        logins, 2,
        "CKA_ALWAYS_AUTHENTICATE: the user login and the context-specific one"
    );
    let verified = run_ok(
        openssl()
            .args(["cms", "-verify", "-CAfile"])
            .arg(&ids.ca)
            .arg("-in")
            .arg(&signed),
    );
    assert!(
        contains(&verified.stdout, b"Signed on the provisioned card."),
        "{}",
        report(&verified)
    );
    // Signed by the signature certificate from the PKCS#12 file.
    let signer = token.path("signer.pem");
    run_ok(
        openssl()
            .args(["cms", "-verify", "-CAfile"])
            .arg(&ids.ca)
            .arg("-signer")
            .arg(&signer)
            .arg("-in")
            .arg(&signed)
            .arg("-out")
            .arg(token.path("content.txt")),
    );
    let fingerprint = |cert: &Path| {
        run_ok(
            openssl()
                .args(["x509", "-noout", "-fingerprint", "-sha256", "-in"])
                .arg(cert),
        )
        .stdout
    };
    assert_eq!(fingerprint(&signer), fingerprint(&ids.sign_cert));
}

#[test]
fn decrypts_to_the_rsa_ec_and_retired_keys_with_one_login() {
    let ids = identities();
    let token = carol_token(&ids);
    for (what, cert) in [
        ("RSA key management (legacy PKCS#12)", &ids.enc_cert),
        ("EC key management (PEM, encrypted key)", &ids.ec_cert),
        ("retired (expired) key management", &ids.retired_cert),
    ] {
        let input = token.write("plain.in", SAMPLE);
        let msg = token.path("msg.p7m");
        run_ok(
            openssl()
                .args(["cms", "-encrypt", "-binary", "-aes256", "-in"])
                .arg(&input)
                .arg("-out")
                .arg(&msg)
                .arg(cert),
        );
        let (out, logins) = with_spy(
            &token,
            &["decrypt", "--pin", "env:TEST_PIN", path_str(&msg)],
        );
        assert_plaintext(&out, SAMPLE, what);
        assert_eq!(
            logins, 1,
            "{what}: no always-authenticate on a decryption key"
        );
    }
}

#[test]
fn reruns_replace_the_token_and_errors_leave_it_alone() {
    let ids = identities();
    let token = carol_token(&ids);
    // Certificate and key in one PEM file, as the PIV authentication key, at its default ID.
    let both = ids.dir.path().join("carol-auth.pem");
    let mut pem = std::fs::read(&ids.enc_cert).unwrap();
    pem.extend(std::fs::read(&ids.enc_key).unwrap());
    std::fs::write(&both, pem).unwrap();
    let out = provision(
        token.dir.path(),
        &[
            "--label",
            "Carol CI",
            "--quiet",
            &format!("auth::{}", path_str(&both)),
        ],
    );
    assert!(out.status.success(), "{}", report(&out));
    assert!(out.stderr.is_empty(), "--quiet: {}", report(&out));
    let certs = token_certs(&token);
    assert_eq!(certs.len(), 1, "the old token is gone: {certs:?}");
    assert_eq!(certs[0]["id"], "01");
    assert_eq!(certs[0]["label"], "Certificate for PIV Authentication");
    assert_eq!(certs[0]["key_label"], "PIV AUTH key");

    let sign = format!("sign::{}", path_str(&ids.sign_p12));
    let ec_with_rsa_key = format!(
        "enc::{}:{}",
        path_str(&ids.ec_cert),
        path_str(&ids.retired_key)
    );
    let ec = format!("enc::{}:{}", path_str(&ids.ec_cert), path_str(&ids.ec_key));
    let missing = ids.dir.path().join("nowhere.p12");
    let missing_spec = format!("sign::{}", path_str(&missing));
    let cases: [(&[&str], i32, &str); 9] = [
        (
            &["--p12-pass", "pass:wrong", &sign],
            1,
            "wrong PKCS#12 password",
        ),
        (&[&sign], 1, "has a password and none was given"),
        (
            &["--p12-pass", "env:NO_SUCH_VARIABLE", &sign],
            1,
            "cannot read the password",
        ),
        (&[&missing_spec], 1, "no such file"),
        (
            &["--p12-pass", "env:TEST_P12_PASS", &ec_with_rsa_key],
            1,
            "is not the key of the certificate",
        ),
        (
            &["--p12-pass", "pass:wrong", &ec],
            1,
            "the password is wrong or missing",
        ),
        (&["--p12-pass", P12_PASS, &sign], 2, "not a bare password"),
        (&["sig::x.p12"], 2, "unknown role 'sig'"),
        (&["enc:xyz:x.pem"], 2, "is not hex bytes"),
    ];
    for (args, code, reason) in cases {
        let mut all = vec!["--label", "Carol CI"];
        all.extend_from_slice(args);
        let out = provision(token.dir.path(), &all);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(code), "{args:?}: {stderr}");
        assert!(
            stderr.contains(reason),
            "{args:?}: want {reason:?} in {stderr}"
        );
        assert!(
            out.stdout.is_empty(),
            "{args:?}: no exports after a failure"
        );
        assert!(
            !stderr.contains(P12_PASS),
            "{args:?}: the password leaked: {stderr}"
        );
    }
    assert!(
        String::from_utf8_lossy(
            &provision(token.dir.path(), &["--label", "X", &missing_spec]).stderr
        )
        .contains(path_str(&missing)),
        "the missing file is named"
    );
    // Every failure came before the token was touched.
    assert_eq!(token_certs(&token).len(), 1);
}

/// The README's CI recipe: the shell snippet between the `ci-recipe` markers.
fn readme_recipe() -> String {
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    let start = readme
        .find("<!-- ci-recipe:begin -->")
        .expect("README.md has the ci-recipe:begin marker");
    let end = readme
        .find("<!-- ci-recipe:end -->")
        .expect("README.md has the ci-recipe:end marker");
    let block = &readme[start..end];
    let body = block
        .split_once("```sh\n")
        .expect("the recipe is a ```sh block")
        .1;
    let body = body
        .rsplit_once("```")
        .expect("the recipe's block is closed")
        .0;
    body.to_string()
}

#[test]
fn the_readme_ci_recipe_runs_as_written() {
    for (tool, package) in [
        ("softhsm2-util", "softhsm2"),
        ("pkcs11-tool", "opensc"),
        ("openssl", "openssl"),
        ("cmp", "diffutils"),
    ] {
        require(tool, package);
    }
    let recipe = readme_recipe();
    assert!(recipe.contains("scripts/provision-token"), "{recipe}");
    let ids = identities();
    let work = tempfile::tempdir().unwrap();
    let script = work.path().join("recipe.sh");
    std::fs::write(&script, &recipe).unwrap();
    // p11smime comes first on PATH, as after `cargo install`; the recipe then installs nothing.
    let bin_dir = Path::new(env!("CARGO_BIN_EXE_p11smime")).parent().unwrap();
    let path = std::env::join_paths(std::iter::once(bin_dir.to_path_buf()).chain(
        std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()),
    ))
    .unwrap();
    let out = Command::new("sh")
        .arg(&script)
        .current_dir(work.path())
        .env("PATH", path)
        .env("SIGN_P12", &ids.sign_p12)
        .env("ENC_P12", &ids.enc_p12)
        .env("P12_PASS", P12_PASS)
        .env("CA_PEM", &ids.ca)
        .env("P11SMIME_SRC", root())
        .env("P11SMIME_SOFTHSM_MODULE", softhsm_module())
        .env_remove("SOFTHSM2_CONF")
        .env_remove("P11SMIME_MODULE")
        .env_remove("P11SMIME_TOKEN")
        .env_remove("P11SMIME_P12_PASS")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "the README's CI recipe: {}",
        report(&out)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("Certificate for Digital Signature"),
        "{stdout}"
    );
    let decrypted = std::fs::read(work.path().join("decrypted.txt")).unwrap();
    assert_eq!(
        decrypted,
        b"Content-Type: text/plain\r\n\r\nHello, card.\r\n"
    );
    assert!(contains(
        &std::fs::read(work.path().join("verified.txt")).unwrap(),
        b"Hello, card."
    ));
    assert!(work.path().join("ci-token/softhsm2.conf").exists());
}
