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
use common::loopback::{ServerProcess, accepts, free_port};
use common::pki::{Ca, cms_sign};
use common::verdict::{Verdict, verify};
use common::*;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// What the signers sign (openssl text mode makes it CRLF).
const ENTITY: &str = "Content-Type: text/plain; charset=us-ascii\n\nA message about revocation.\n";

const REVOKED: &str = "the signer's certificate, or a CA certificate in its chain, is revoked";
const NOT_REVOKED: &str = "not revoked (CRL)";

// ---------------------------------------------------------------------------------------------
// The web server

/// `python3 -m http.server` on 127.0.0.1, serving a directory; killed when dropped.
struct HttpServer {
    process: ServerProcess,
    port: u16,
    log: PathBuf,
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
                process: ServerProcess::new(child),
                port,
                log: log.to_path_buf(),
            };
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                if accepts(port) {
                    return server;
                }
                if server.process.exited() {
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
        self.process.stop();
    }
}

// ---------------------------------------------------------------------------------------------
// The PKI

impl Ca {
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
            &[],
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
            &[],
        );
        let ca = Ca::empty(base, name);
        std::fs::copy(cert, &ca.cert).unwrap();
        std::fs::copy(key, &ca.key).unwrap();
        ca
    }
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
        let good_msg = cms_sign(work.path(), "good.eml", ENTITY, &good, &[]);
        let revoked_msg = cms_sign(work.path(), "revoked.eml", ENTITY, &revoked, &[]);
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

impl Verdict {
    /// Exit 0, all good, a valid and trusted signer without a problem, the signed text
    /// written by `-o`. Returns the `revocation` field.
    fn good(&self) -> &str {
        self.good_with(b"A message about revocation.\r\n")
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
    let msg = cms_sign(
        work.path(),
        "leaf.eml",
        ENTITY,
        &leaf,
        &["-certfile", &certfile(&inter)],
    );
    let msg2 = cms_sign(
        work.path(),
        "leaf2.eml",
        ENTITY,
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
