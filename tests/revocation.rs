//! `p11smime verify` and revocation: CRLs fetched from the certificates' distribution points
//! over HTTP, CRLs given with `--crl` (DER and PEM), `--offline`, and `--revocation
//! off|soft|hard`.
//!
//! Everything is made at test time in the test's temporary directory and stays on loopback:
//! * a CA with `openssl ca` infrastructure (index.txt, serial, crlnumber) and EC P-256 keys, so
//!   that it takes milliseconds; two signing certificates (digitalSignature, emailProtection,
//!   the address in the SAN) whose crlDistributionPoints is `http://127.0.0.1:PORT/ca.crl`, one
//!   of them revoked with `openssl ca -revoke`, and the CRL from `openssl ca -gencrl` (PEM,
//!   converted to DER with `openssl crl -outform DER` for the web server);
//! * `python3 -m http.server PORT --bind 127.0.0.1 --directory DIR` as a child process, on a
//!   port the OS picked (bind 127.0.0.1:0, drop, reuse), killed when its guard is dropped; its
//!   request log shows which CRLs p11smime fetched;
//! * messages signed by each signer with `openssl cms -sign`.
//!
//! The CA is given with `--ca` and `--no-system-ca`. A missing peer fails the test with an
//! install hint instead of skipping it. The two tests at the end are regressions for bugs they found
//! (CRL freshness judged at the signer-claimed time; a CRL that covers nothing taken as a verdict).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use common::*;

use serde_json::Value;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// What the signers sign (openssl text mode makes it CRLF).
const ENTITY: &str = "Content-Type: text/plain; charset=us-ascii\n\nA message about revocation.\n";

const REVOKED: &str = "the signer's certificate, or a CA certificate in its chain, is revoked";
const NOT_REVOKED: &str = "not revoked (CRL)";

// ---------------------------------------------------------------------------------------------
// The web server

/// `python3 -m http.server` on 127.0.0.1, serving a directory; killed when dropped.
struct HttpServer {
    child: Option<Child>,
    port: u16,
    log: PathBuf,
}

fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from((Ipv4Addr::LOCALHOST, port))
}

/// A port that was free a moment ago.
fn free_port() -> u16 {
    let listener = TcpListener::bind(loopback(0)).unwrap();
    listener.local_addr().unwrap().port()
}

fn accepts(port: u16) -> bool {
    TcpStream::connect_timeout(&loopback(port), Duration::from_millis(200)).is_ok()
}

impl HttpServer {
    /// Serves `dir`, its request log in `log`; waits (at most 10 s) until the port accepts
    /// connections. A port taken between `free_port` and the server's bind is retried.
    fn start(dir: &Path, log: &Path) -> Self {
        let python = require("python3", "python3");
        for _ in 0..3 {
            let port = free_port();
            let child = Command::new(&python)
                .args(["-m", "http.server", &port.to_string()])
                .args(["--bind", "127.0.0.1", "--directory"])
                .arg(dir)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(log).unwrap())
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start python3 -m http.server: {e}"));
            let mut server = HttpServer {
                child: Some(child),
                port,
                log: log.to_path_buf(),
            };
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                if accepts(port) {
                    return server;
                }
                let exited = server.child.as_mut().unwrap().try_wait().unwrap();
                if exited.is_some() {
                    break; // most likely the port was taken meanwhile: another one
                }
                assert!(
                    Instant::now() < deadline,
                    "python3 -m http.server did not listen on 127.0.0.1:{port} within 10 s: {}",
                    server.requests()
                );
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        panic!(
            "python3 -m http.server exited three times: {}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
    }

    fn url(&self, file: &str) -> String {
        format!("http://127.0.0.1:{}/{file}", self.port)
    }

    /// Its log (one line per request, on stderr).
    fn requests(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Kills it; afterwards the port refuses connections.
    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        self.stop();
    }
}

// ---------------------------------------------------------------------------------------------
// The PKI

fn openssl() -> Command {
    Command::new("openssl")
}

fn ec_key(path: &Path) {
    run_ok(
        openssl()
            .args(["genpkey", "-algorithm", "EC"])
            .args(["-pkeyopt", "ec_paramgen_curve:P-256", "-out"])
            .arg(path),
    );
}

/// A CA with its own `openssl ca` database, configuration and key.
struct Ca {
    dir: PathBuf,
    name: String,
    cert: PathBuf,
    key: PathBuf,
}

impl Ca {
    /// `openssl req` configuration: subjects come from `-subj`, extensions from `[root]`.
    const REQ_CNF: &str = "[req]\n\
                           distinguished_name = dn\n\
                           prompt = no\n\
                           [dn]\n\
                           CN = placeholder\n\
                           [root]\n\
                           basicConstraints = critical, CA:TRUE\n\
                           keyUsage = critical, keyCertSign, cRLSign\n\
                           subjectKeyIdentifier = hash\n";

    /// A self-signed root `subject` in `base/name/`.
    fn root(base: &Path, name: &str, subject: &str) -> Ca {
        let ca = Ca::empty(base, name);
        ec_key(&ca.key);
        run_ok(
            openssl()
                .args(["req", "-x509", "-new", "-config"])
                .arg(ca.dir.join("req.cnf"))
                .args(["-extensions", "root", "-days", "30", "-subj", subject])
                .arg("-key")
                .arg(&ca.key)
                .arg("-out")
                .arg(&ca.cert),
        );
        ca
    }

    /// The directory, database and configuration of a CA whose key and certificate are yet
    /// to be made.
    fn empty(base: &Path, name: &str) -> Ca {
        let dir = base.join(name);
        std::fs::create_dir_all(dir.join("certs")).unwrap();
        std::fs::write(dir.join("index.txt"), "").unwrap();
        std::fs::write(dir.join("serial"), "1000\n").unwrap();
        std::fs::write(dir.join("crlnumber"), "01\n").unwrap();
        std::fs::write(dir.join("req.cnf"), Self::REQ_CNF).unwrap();
        let d = path_str(&dir);
        std::fs::write(
            dir.join("ca.cnf"),
            format!(
                "[ca]\n\
                 default_ca = tca\n\
                 [tca]\n\
                 database = {d}/index.txt\n\
                 new_certs_dir = {d}/certs\n\
                 serial = {d}/serial\n\
                 crlnumber = {d}/crlnumber\n\
                 certificate = {d}/ca.pem\n\
                 private_key = {d}/ca.key.pem\n\
                 default_md = sha256\n\
                 default_days = 30\n\
                 default_crl_days = 7\n\
                 policy = any\n\
                 unique_subject = no\n\
                 copy_extensions = none\n\
                 [any]\n\
                 organizationName = optional\n\
                 commonName = supplied\n\
                 emailAddress = optional\n"
            ),
        )
        .unwrap();
        Ca {
            cert: dir.join("ca.pem"),
            key: dir.join("ca.key.pem"),
            name: name.to_string(),
            dir,
        }
    }

    /// A certificate for `subject` on a new key, with the extensions `ext` (one section),
    /// issued by `openssl ca`. Returns (certificate, key).
    fn issue(&self, name: &str, subject: &str, ext: &str) -> (PathBuf, PathBuf) {
        let key = self.dir.join(format!("{name}.key.pem"));
        let csr = self.dir.join(format!("{name}.csr"));
        let cert = self.dir.join(format!("{name}.pem"));
        let extfile = self.dir.join(format!("{name}.ext"));
        std::fs::write(&extfile, format!("[ext]\n{ext}")).unwrap();
        ec_key(&key);
        run_ok(
            openssl()
                .args(["req", "-new", "-config"])
                .arg(self.dir.join("req.cnf"))
                .args(["-subj", subject, "-key"])
                .arg(&key)
                .arg("-out")
                .arg(&csr),
        );
        run_ok(
            openssl()
                .args(["ca", "-batch", "-notext", "-config"])
                .arg(self.dir.join("ca.cnf"))
                .arg("-extfile")
                .arg(&extfile)
                .args(["-extensions", "ext", "-in"])
                .arg(&csr)
                .arg("-out")
                .arg(&cert),
        );
        (cert, key)
    }

    /// A signing certificate for `email` whose CRL is at `crl_url`.
    fn signer(&self, name: &str, email: &str, crl_url: &str) -> (PathBuf, PathBuf) {
        self.issue(
            name,
            &format!("/O=p11smime TEST ONLY/CN={name}"),
            &format!(
                "basicConstraints = critical, CA:FALSE\n\
                 keyUsage = critical, digitalSignature\n\
                 extendedKeyUsage = emailProtection\n\
                 subjectKeyIdentifier = hash\n\
                 authorityKeyIdentifier = keyid\n\
                 subjectAltName = email:{email}\n\
                 crlDistributionPoints = URI:{crl_url}\n"
            ),
        )
    }

    /// A subordinate CA `name` (its own database in `base/name/`) whose CRL (the one this CA
    /// publishes) is at `crl_url`.
    fn intermediate(&self, base: &Path, name: &str, crl_url: &str) -> Ca {
        let (cert, key) = self.issue(
            name,
            &format!("/O=p11smime TEST ONLY/CN={name}"),
            &format!(
                "basicConstraints = critical, CA:TRUE, pathlen:0\n\
                 keyUsage = critical, keyCertSign, cRLSign\n\
                 subjectKeyIdentifier = hash\n\
                 authorityKeyIdentifier = keyid\n\
                 crlDistributionPoints = URI:{crl_url}\n"
            ),
        );
        let ca = Ca::empty(base, name);
        std::fs::copy(cert, &ca.cert).unwrap();
        std::fs::copy(key, &ca.key).unwrap();
        ca
    }

    /// `openssl ca -revoke`.
    fn revoke(&self, cert: &Path) {
        run_ok(
            openssl()
                .args(["ca", "-batch", "-config"])
                .arg(self.dir.join("ca.cnf"))
                .args(["-crl_reason", "keyCompromise", "-revoke"])
                .arg(cert),
        );
    }

    /// `openssl ca -gencrl` (with `extra` options): the PEM CRL in the CA's directory, and its
    /// DER (`openssl crl -outform DER`) as `www/NAME.crl`. Returns (DER, PEM).
    fn gencrl(&self, www: &Path, extra: &[&str]) -> (PathBuf, PathBuf) {
        let pem = self.dir.join(format!("{}.crl.pem", self.name));
        let der = www.join(format!("{}.crl", self.name));
        run_ok(
            openssl()
                .args(["ca", "-batch", "-gencrl", "-config"])
                .arg(self.dir.join("ca.cnf"))
                .args(extra)
                .arg("-out")
                .arg(&pem),
        );
        run_ok(
            openssl()
                .args(["crl", "-outform", "DER", "-in"])
                .arg(&pem)
                .arg("-out")
                .arg(&der),
        );
        (der, pem)
    }
}

/// `openssl cms -sign` of ENTITY by `signer` (with `extra` options, e.g. `-certfile`) as a
/// multipart/signed message `name`.
fn sign(dir: &Path, name: &str, signer: &(PathBuf, PathBuf), extra: &[&str]) -> PathBuf {
    let entity = dir.join("entity.txt");
    std::fs::write(&entity, ENTITY).unwrap();
    let out = dir.join(name);
    run_ok(
        openssl()
            .args(["cms", "-sign", "-signer"])
            .arg(&signer.0)
            .arg("-inkey")
            .arg(&signer.1)
            .args(extra)
            .arg("-in")
            .arg(&entity)
            .arg("-out")
            .arg(&out),
    );
    out
}

/// The usual setup: the server up on `www/`, the root CA "ca" publishing `www/ca.crl`, a good
/// and a revoked signer, and a message by each.
struct Setup {
    work: tempfile::TempDir,
    server: HttpServer,
    ca: Ca,
    crl_der: PathBuf,
    crl_pem: PathBuf,
    good_msg: PathBuf,
    revoked_msg: PathBuf,
}

impl Setup {
    fn new() -> Self {
        let started = Instant::now();
        let work = tempfile::tempdir().unwrap();
        let www = work.path().join("www");
        std::fs::create_dir(&www).unwrap();
        let server = HttpServer::start(&www, &work.path().join("http.log"));
        let ca = Ca::root(
            work.path(),
            "ca",
            "/O=p11smime TEST ONLY/CN=Revocation Test CA",
        );
        let url = server.url("ca.crl");
        let good = ca.signer("good", "good@example.test", &url);
        let revoked = ca.signer("revoked", "revoked@example.test", &url);
        ca.revoke(&revoked.0);
        let (crl_der, crl_pem) = ca.gencrl(&www, &[]);
        let good_msg = sign(work.path(), "good.eml", &good, &[]);
        let revoked_msg = sign(work.path(), "revoked.eml", &revoked, &[]);
        eprintln!("setup took {:?}", started.elapsed());
        Setup {
            work,
            server,
            ca,
            crl_der,
            crl_pem,
            good_msg,
            revoked_msg,
        }
    }

    fn verify(&self, msg: &Path, extra: &[&str]) -> Verdict {
        verify(msg, &self.ca.cert, extra)
    }
}

// ---------------------------------------------------------------------------------------------
// p11smime verify and its verdict

/// One `p11smime verify --json --no-system-ca --ca CA EXTRA -o OUT INPUT` run.
struct Verdict {
    what: String,
    out: Output,
    json: Value,
    /// What `-o` wrote (`None`: no file).
    written: Option<Vec<u8>>,
}

fn verify(msg: &Path, ca: &Path, extra: &[&str]) -> Verdict {
    let out_file = PathBuf::from(format!("{}.verified", msg.display()));
    let _ = std::fs::remove_file(&out_file);
    let started = Instant::now();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_p11smime"));
    cmd.env_remove("P11SMIME_MODULE")
        .env_remove("P11SMIME_TOKEN")
        .stdin(Stdio::null());
    // ureq honours the proxy variables; the loopback server must be reached directly.
    for var in [
        "ALL_PROXY",
        "all_proxy",
        "HTTP_PROXY",
        "http_proxy",
        "HTTPS_PROXY",
        "https_proxy",
    ] {
        cmd.env_remove(var);
    }
    let out = cmd
        .args(["verify", "--json", "--no-system-ca", "--ca"])
        .arg(ca)
        .args(extra)
        .arg("-o")
        .arg(&out_file)
        .arg(msg)
        .output()
        .unwrap();
    let elapsed = started.elapsed();
    let what = format!(
        "verify {} {extra:?}",
        msg.file_name().unwrap().to_string_lossy()
    );
    eprintln!("{what}: exit {:?} in {elapsed:?}", out.status.code());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stderr.contains("panicked") && !stderr.contains("RUST_BACKTRACE"),
        "{what}: panicked: {stderr}"
    );
    assert!(
        elapsed < Duration::from_secs(8),
        "{what}: took {elapsed:?} on loopback"
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

    /// The one signer.
    fn signer(&self) -> &Value {
        let signers = self.json["signers"]
            .as_array()
            .unwrap_or_else(|| panic!("no signers array: {}", self.report()));
        assert_eq!(signers.len(), 1, "{}", self.report());
        &signers[0]
    }

    /// The signer's `revocation` field.
    fn revocation(&self) -> &str {
        self.signer()["revocation"]
            .as_str()
            .unwrap_or_else(|| panic!("no revocation field: {}", self.report()))
    }

    /// Exit 0, all good, a valid and trusted signer without a problem, the signed text
    /// written by `-o`. Returns the `revocation` field.
    fn good(&self) -> &str {
        let r = self.report();
        assert_eq!(self.out.status.code(), Some(0), "{r}");
        assert_eq!(self.json["all_good"], Value::Bool(true), "{r}");
        let s = self.signer();
        assert_eq!(s["signature_valid"], Value::Bool(true), "{r}");
        assert_eq!(s["trusted"], Value::Bool(true), "{r}");
        assert_eq!(s["problem"], Value::Null, "{r}");
        let written = self
            .written
            .as_deref()
            .unwrap_or_else(|| panic!("-o wrote nothing: {r}"));
        assert!(
            contains(written, b"A message about revocation.\r\n"),
            "{r}\n-o wrote {:?}",
            String::from_utf8_lossy(written)
        );
        self.revocation()
    }

    /// Exit 7, not all good, a valid signature by an untrusted signer whose problem contains
    /// `problem` (also on stderr), no revocation verdict, and nothing written by `-o`.
    fn bad(&self, problem: &str) {
        let r = self.report();
        assert_eq!(self.out.status.code(), Some(7), "{r}");
        assert_eq!(self.json["all_good"], Value::Bool(false), "{r}");
        let s = self.signer();
        assert_eq!(s["signature_valid"], Value::Bool(true), "{r}");
        assert_eq!(s["trusted"], Value::Bool(false), "{r}");
        assert!(
            s["problem"].as_str().is_some_and(|p| p.contains(problem)),
            "{r}\nexpected the problem {problem:?}"
        );
        assert_eq!(s["revocation"], Value::Null, "{r}");
        assert!(
            String::from_utf8_lossy(&self.out.stderr).contains(problem),
            "{r}"
        );
        assert!(
            self.written.is_none(),
            "{r}\n-o wrote {:?} for a message that is not all good",
            self.written
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Tests

/// Case 1: the good signer, the CRL fetched from its distribution point (default soft, and
/// hard); the server saw the request.
#[test]
fn good_signer_is_not_revoked_by_the_fetched_crl() {
    let s = Setup::new();
    assert_eq!(s.verify(&s.good_msg, &[]).good(), NOT_REVOKED);
    assert!(
        s.server.requests().contains("GET /ca.crl "),
        "no CRL request in the server log:\n{}",
        s.server.requests()
    );
    assert_eq!(
        s.verify(&s.good_msg, &["--revocation", "soft"]).good(),
        NOT_REVOKED
    );
    assert_eq!(
        s.verify(&s.good_msg, &["--revocation", "hard"]).good(),
        NOT_REVOKED
    );
}

/// Cases 2 and 3: the revoked signer fails in soft (default) and hard mode, and passes only
/// with `--revocation off`, which fetches nothing.
#[test]
fn revoked_signer_fails_unless_revocation_is_off() {
    let s = Setup::new();
    s.verify(&s.revoked_msg, &[]).bad(REVOKED);
    s.verify(&s.revoked_msg, &["--revocation", "hard"])
        .bad(REVOKED);

    let before = s.server.requests().lines().count();
    assert_eq!(
        s.verify(&s.revoked_msg, &["--revocation", "off"]).good(),
        "not checked"
    );
    assert_eq!(
        s.server.requests().lines().count(),
        before,
        "--revocation off fetched something:\n{}",
        s.server.requests()
    );
}

/// Case 4: the distribution point unreachable (server killed). Soft: good, status unknown
/// with the reason; hard: exit 7. With the CRL given as a file as well, the answer is
/// definitive in both modes and the unreachable point is noted.
#[test]
fn unreachable_distribution_point() {
    let mut s = Setup::new();
    let url = s.server.url("ca.crl");
    s.server.stop();
    assert!(!accepts(s.server.port), "the server still accepts");

    let v = s.verify(&s.good_msg, &[]);
    let rev = v.good();
    assert!(
        rev.starts_with("unknown: ") && rev.contains(&url),
        "{}",
        v.report()
    );
    s.verify(&s.good_msg, &["--revocation", "hard"])
        .bad("revocation status unknown");

    // Soft mode cannot know that this one is revoked: trusted, status unknown.
    let v = s.verify(&s.revoked_msg, &[]);
    assert!(v.good().starts_with("unknown: "), "{}", v.report());
    s.verify(&s.revoked_msg, &["--revocation", "hard"])
        .bad("revocation status unknown");

    let crl = path_str(&s.crl_der);
    for mode in ["soft", "hard"] {
        let v = s.verify(&s.good_msg, &["--revocation", mode, "--crl", crl]);
        let rev = v.good();
        assert!(
            rev.starts_with("not revoked (CRL); not reached: ") && rev.contains(&url),
            "{}",
            v.report()
        );
        s.verify(&s.revoked_msg, &["--revocation", mode, "--crl", crl])
            .bad(REVOKED);
    }
}

/// Case 5: `--offline` with `--crl` (DER and PEM), the server down; and `--offline` without a
/// CRL file fetches nothing even with the server up.
#[test]
fn offline_with_crl_files() {
    let mut s = Setup::new();

    let v = s.verify(&s.good_msg, &["--offline"]);
    assert!(
        v.good()
            .starts_with("unknown: no CRL or OCSP answer for CN=good"),
        "{}",
        v.report()
    );
    s.verify(&s.revoked_msg, &["--offline", "--revocation", "hard"])
        .bad("revocation status unknown");
    assert!(
        !s.server.requests().contains("GET "),
        "--offline fetched:\n{}",
        s.server.requests()
    );

    s.server.stop();
    let pem = std::fs::read_to_string(&s.crl_pem).unwrap();
    assert!(pem.starts_with("-----BEGIN X509 CRL-----"), "{pem}");
    for crl in [&s.crl_der, &s.crl_pem] {
        let crl = path_str(crl);
        for mode in ["soft", "hard"] {
            let args = ["--offline", "--crl", crl, "--revocation", mode];
            s.verify(&s.revoked_msg, &args).bad(REVOKED);
            assert_eq!(s.verify(&s.good_msg, &args).good(), NOT_REVOKED);
        }
    }
}

/// A CRL past its nextUpdate: hard mode refuses it, soft mode still uses it (a revoked
/// signer stays revoked).
#[test]
fn stale_crl() {
    let s = Setup::new();
    let stale = s.work.path().join("stale");
    std::fs::create_dir(&stale).unwrap();
    let (der, _) = s.ca.gencrl(
        &stale,
        &[
            "-crl_lastupdate",
            "20200101000000Z",
            "-crl_nextupdate",
            "20200108000000Z",
        ],
    );
    let crl = path_str(&der);
    let args = ["--offline", "--crl", crl];
    // Soft mode uses the stale CRL and says it is stale.
    let soft_run = s.verify(&s.good_msg, &args);
    let soft = soft_run.good();
    assert!(
        soft.starts_with(NOT_REVOKED) && soft.contains("is out of date"),
        "{soft}"
    );
    s.verify(&s.revoked_msg, &args).bad(REVOKED);
    let args = ["--offline", "--crl", crl, "--revocation", "hard"];
    s.verify(&s.good_msg, &args).bad("is out of date");
}

/// Case 6: root -> intermediate -> leaf, the intermediate revoked on the root's CRL (the
/// message carries the intermediate with `-certfile`; each certificate names its issuer's
/// CRL). Fetched, and offline with both CRLs as files.
#[test]
fn revoked_intermediate() {
    let started = Instant::now();
    let work = tempfile::tempdir().unwrap();
    let www = work.path().join("www");
    std::fs::create_dir(&www).unwrap();
    let server = HttpServer::start(&www, &work.path().join("http.log"));
    let root = Ca::root(
        work.path(),
        "root",
        "/O=p11smime TEST ONLY/CN=Revocation Root",
    );
    let inter = root.intermediate(work.path(), "inter", &server.url("root.crl"));
    let good_inter = root.intermediate(work.path(), "inter2", &server.url("root.crl"));
    root.revoke(&inter.cert);
    let leaf = inter.signer("leaf", "leaf@example.test", &server.url("inter.crl"));
    let leaf2 = good_inter.signer("leaf2", "leaf2@example.test", &server.url("inter2.crl"));
    let (root_crl, _) = root.gencrl(&www, &[]);
    let (inter_crl, _) = inter.gencrl(&www, &[]);
    good_inter.gencrl(&www, &[]);
    let certfile = |ca: &Ca| path_str(&ca.cert).to_string();
    let msg = sign(
        work.path(),
        "leaf.eml",
        &leaf,
        &["-certfile", &certfile(&inter)],
    );
    let msg2 = sign(
        work.path(),
        "leaf2.eml",
        &leaf2,
        &["-certfile", &certfile(&good_inter)],
    );
    eprintln!("chain setup took {:?}", started.elapsed());

    // The chain itself is fine: without revocation it is trusted.
    assert_eq!(
        verify(&msg, &root.cert, &["--revocation", "off"]).good(),
        "not checked"
    );
    verify(&msg, &root.cert, &[]).bad(REVOKED);
    verify(&msg, &root.cert, &["--revocation", "hard"]).bad(REVOKED);
    let log = server.requests();
    assert!(
        log.contains("GET /root.crl ") && log.contains("GET /inter.crl "),
        "{log}"
    );

    // The sibling under a good intermediate: both CRLs fetched, not revoked.
    assert_eq!(
        verify(&msg2, &root.cert, &["--revocation", "hard"]).good(),
        NOT_REVOKED
    );

    let offline = [
        "--offline",
        "--crl",
        path_str(&root_crl),
        "--crl",
        path_str(&inter_crl),
    ];
    verify(&msg, &root.cert, &offline).bad(REVOKED);
    // Only the leaf's CRL: the intermediate's status is unknown (soft: good; hard: refused).
    // (What soft mode says then is not checked: "not revoked (CRL)" without a word about the
    // intermediate, see a_crl_that_covers_nothing_is_no_verdict.)
    let leaf_only = ["--offline", "--crl", path_str(&inter_crl)];
    verify(&msg, &root.cert, &leaf_only).good();
    let mut hard = leaf_only.to_vec();
    hard.extend(["--revocation", "hard"]);
    verify(&msg, &root.cert, &hard).bad("revocation status unknown");
    eprintln!("revoked_intermediate took {:?}", started.elapsed());
}

/// A distribution point that answers, but not with a CRL: 404, then garbage. Soft: good,
/// status unknown with the reason; hard: refused.
#[test]
fn distribution_point_without_a_crl() {
    let s = Setup::new();
    let url = s.server.url("ca.crl");
    let served = s.work.path().join("www/ca.crl");
    std::fs::remove_file(&served).unwrap();
    let v = s.verify(&s.good_msg, &[]);
    let rev = v.good();
    assert!(
        rev.starts_with("unknown: ") && rev.contains(&url) && rev.contains("404"),
        "{}",
        v.report()
    );
    s.verify(&s.revoked_msg, &["--revocation", "hard"])
        .bad("revocation status unknown");

    std::fs::write(&served, b"this is not a CRL\n").unwrap();
    let v = s.verify(&s.good_msg, &[]);
    assert!(
        v.good().starts_with("unknown: ") && v.good().contains("a CRL could not be read"),
        "{}",
        v.report()
    );
    s.verify(&s.revoked_msg, &["--revocation", "hard"])
        .bad("revocation status unknown");
    assert!(
        s.server.requests().matches("GET /ca.crl ").count() >= 4,
        "{}",
        s.server.requests()
    );
}

// ---------------------------------------------------------------------------------------------
// Regressions: bugs these tests found, fixed in src/

/// `openssl ca -gencrl` time option: YYYYMMDDHHMMSSZ, `secs` from now.
fn crl_time_from_now(secs: u64) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    let t = der::DateTime::from_unix_duration(now + Duration::from_secs(secs)).unwrap();
    format!(
        "{:04}{:02}{:02}{:02}{:02}{:02}Z",
        t.year(),
        t.month(),
        t.day(),
        t.hour(),
        t.minutes(),
        t.seconds()
    )
}

/// Hard mode must refuse a CRL that is past its nextUpdate *now*. p11smime judges the CRL's
/// freshness at the signing time, which the signer asserts: a message whose signingTime lies
/// inside an old CRL's window passes with that CRL although it expired long ago. With plain
/// HTTP fetching, whoever holds a compromised (since revoked) key can backdate signingTime and
/// replay a CRL from before the revocation.
#[test]
fn hard_mode_refuses_a_crl_expired_now_whatever_the_signing_time() {
    let s = Setup::new(); // good.eml is signed now
    let old = s.work.path().join("old");
    std::fs::create_dir(&old).unwrap();
    let next = crl_time_from_now(2);
    let (der, _) = s.ca.gencrl(
        &old,
        &[
            "-crl_lastupdate",
            "20200101000000Z",
            "-crl_nextupdate",
            &next,
        ],
    );
    std::thread::sleep(Duration::from_secs(3));
    let args = ["--offline", "--crl", path_str(&der), "--revocation", "hard"];
    s.verify(&s.good_msg, &args).bad("is out of date");
}

/// A CRL that covers no certificate of the chain (another CA's) is no revocation verdict:
/// soft mode must say "unknown", not "not revoked (CRL)" (as it does for a revoked signer).
#[test]
fn a_crl_that_covers_nothing_is_no_verdict() {
    let s = Setup::new();
    let other_dir = s.work.path().join("other-www");
    std::fs::create_dir(&other_dir).unwrap();
    let other = Ca::root(
        s.work.path(),
        "other",
        "/O=p11smime TEST ONLY/CN=Another CA",
    );
    let (der, _) = other.gencrl(&other_dir, &[]);
    let v = s.verify(&s.revoked_msg, &["--offline", "--crl", path_str(&der)]);
    let rev = v.good();
    assert!(rev.starts_with("unknown"), "{}", v.report());
}
