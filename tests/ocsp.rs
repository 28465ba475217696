//! `p11smime verify` and OCSP for the signer's certificate: the responder named in the
//! certificate's Authority Information Access, asked over HTTP; its answer signed by the issuer
//! or by a responder the issuer authorised (id-kp-OCSPSigning); `--revocation off|soft|hard`
//! and `--offline`.
//!
//! Everything is made at test time in the test's temporary directory and stays on loopback:
//! * a CA with `openssl ca` infrastructure (index.txt, serial) and EC P-256 keys; signing
//!   certificates (digitalSignature, emailProtection, the address in the SAN) with
//!   `authorityInfoAccess = OCSP;URI:http://127.0.0.1:PORT` and no CRL distribution point, one
//!   of them revoked with `openssl ca -revoke`;
//! * the responder, `openssl ocsp -index index.txt -port PORT -rsigner CERT -rkey KEY -CA ca.pem
//!   -ignore_err`, as a child process killed when its guard is dropped, on a port that was free
//!   a moment before (the certificates name it, so a port taken meanwhile means a new setup);
//!   its log has a line per request, which shows whether p11smime asked;
//! * messages signed by each signer with `openssl cms -sign`;
//! * for replays, a python3 server on the same port answering every request with one stored
//!   response (made with `openssl ocsp -reqout`, `-reqin`/`-respout`).
//!
//! The CA is given with `--ca` and `--no-system-ca`. A missing peer fails the test. The last
//! test is a regression for a bug it found (an expired delegated responder was trusted).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use common::loopback::{ServerProcess, accepts, free_port};
use common::pki::{Ca, cms_sign, ec_key, openssl};
use common::verdict::{Verdict, verify};
use common::*;

use std::fs::OpenOptions;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// What the signers sign (openssl text mode makes it CRLF).
const ENTITY: &str = "Content-Type: text/plain; charset=us-ascii\n\nA message about OCSP.\n";

const NOT_REVOKED: &str = "not revoked (OCSP)";
const REVOKED: &str = "the signer's certificate is revoked (OCSP)";
const UNKNOWN_HARD: &str = "revocation status unknown";
const UNAUTHORISED: &str =
    "the OCSP response is signed by neither the issuer nor a responder it authorised";

// ---------------------------------------------------------------------------------------------
// The responder

/// `openssl ocsp` as a responder; killed when dropped.
struct Responder {
    process: ServerProcess,
    /// Its stdout and stderr, appended to by every responder of a setup.
    log: PathBuf,
}

impl Responder {
    /// `openssl ocsp -index INDEX -port PORT -rsigner CERT -rkey KEY -CA CA -ignore_err EXTRA`
    /// for `ca`, signing with `rsigner` (certificate, key). Waits (at most 10 s) until it
    /// listens; `None` if it exited before (the port was taken).
    ///
    /// Readiness is its "ACCEPT [::]:PORT" line (printed once it listens), not a connection:
    /// openssl 3.0's responder spins at 100 % CPU, answering nobody, after a connection that
    /// closes without a request.
    fn start(
        ca: &Ca,
        port: u16,
        rsigner: &(PathBuf, PathBuf),
        extra: &[&str],
        log: &Path,
    ) -> Option<Self> {
        let mut cmd = openssl();
        cmd.arg("ocsp")
            .arg("-index")
            .arg(ca.dir.join("index.txt"))
            .args(["-port", &port.to_string(), "-rsigner"])
            .arg(&rsigner.0)
            .arg("-rkey")
            .arg(&rsigner.1)
            .arg("-CA")
            .arg(&ca.cert)
            .arg("-ignore_err")
            .args(extra);
        Self::spawn(cmd, port, log)
    }

    /// A python3 server on 127.0.0.1:`port` that answers every POST with the bytes of
    /// `answer` (a stored OCSP response: a replay), logging as `openssl ocsp` does.
    fn replay(answer: &Path, port: u16, log: &Path) -> Option<Self> {
        const SERVER: &str = "import http.server, sys\n\
            answer = open(sys.argv[2], 'rb').read()\n\
            class H(http.server.BaseHTTPRequestHandler):\n\
            \x20   def do_POST(self):\n\
            \x20       sys.stderr.write('Received request\\n')\n\
            \x20       self.rfile.read(int(self.headers['Content-Length']))\n\
            \x20       self.send_response(200)\n\
            \x20       self.send_header('Content-Type', 'application/ocsp-response')\n\
            \x20       self.send_header('Content-Length', str(len(answer)))\n\
            \x20       self.end_headers()\n\
            \x20       self.wfile.write(answer)\n\
            server = http.server.HTTPServer(('127.0.0.1', int(sys.argv[1])), H)\n\
            print('ACCEPT', flush=True)\n\
            server.serve_forever()\n";
        let mut cmd = Command::new(require("python3", "python3"));
        cmd.args(["-c", SERVER, &port.to_string()]).arg(answer);
        Self::spawn(cmd, port, log)
    }

    /// Runs `cmd`, its stdout and stderr appended to `log`, until it prints "ACCEPT" there;
    /// `None` if it exits first.
    fn spawn(mut cmd: Command, port: u16, log: &Path) -> Option<Self> {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .unwrap();
        let before = std::fs::read_to_string(log)
            .unwrap()
            .matches("ACCEPT")
            .count();
        let child = cmd
            .stdin(Stdio::null())
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
        let mut responder = Responder {
            process: ServerProcess::new(child),
            log: log.to_path_buf(),
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if responder.log().matches("ACCEPT").count() > before {
                return Some(responder);
            }
            if responder.process.exited() {
                eprintln!("{cmd:?} exited: {}", responder.log());
                return None;
            }
            assert!(
                Instant::now() < deadline,
                "{cmd:?} did not listen on port {port} within 10 s: {}",
                responder.log()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// How many requests the responders of this log have received.
    fn requests(&self) -> usize {
        self.log().matches("Received request").count()
    }

    /// Kills it; afterwards the port refuses connections.
    fn stop(&mut self) {
        self.process.stop();
    }
}

// ---------------------------------------------------------------------------------------------
// The PKI

impl Ca {
    /// The extensions of a signing certificate for `email` whose OCSP responder is
    /// `ocsp_url` (no CRL distribution point).
    fn signer_ext(email: &str, ocsp_url: &str) -> String {
        format!(
            "basicConstraints = critical, CA:FALSE\n\
             keyUsage = critical, digitalSignature\n\
             extendedKeyUsage = emailProtection\n\
             subjectKeyIdentifier = hash\n\
             authorityKeyIdentifier = keyid\n\
             subjectAltName = email:{email}\n\
             authorityInfoAccess = OCSP;URI:{ocsp_url}\n"
        )
    }

    /// A signing certificate for `email` whose OCSP responder is `ocsp_url`.
    fn signer(&self, name: &str, email: &str, ocsp_url: &str) -> (PathBuf, PathBuf) {
        self.issue(
            name,
            &format!("/O=p11smime TEST ONLY/CN={name}"),
            &Self::signer_ext(email, ocsp_url),
            &[],
        )
    }

    /// A responder certificate: extended key usage `eku` (e.g. "OCSPSigning"), validity from
    /// `extra` (e.g. `-startdate`/`-enddate`) or 30 days.
    fn responder(&self, name: &str, eku: &str, extra: &[&str]) -> (PathBuf, PathBuf) {
        self.issue(
            name,
            &format!("/O=p11smime TEST ONLY/CN={name}"),
            &format!(
                "basicConstraints = critical, CA:FALSE\n\
                 keyUsage = critical, digitalSignature\n\
                 extendedKeyUsage = {eku}\n\
                 subjectKeyIdentifier = hash\n\
                 authorityKeyIdentifier = keyid\n"
            ),
            extra,
        )
    }

    /// Its certificate and key, for `-rsigner`/`-rkey`.
    fn pair(&self) -> (PathBuf, PathBuf) {
        (self.cert.clone(), self.key.clone())
    }
}

/// The usual setup: the CA "ca", a good and a revoked signer whose responder is
/// `http://127.0.0.1:PORT`, a message by each, and the responder up, signing with the CA's key.
struct Setup {
    work: tempfile::TempDir,
    ca: Ca,
    port: u16,
    responder: Responder,
    good_msg: PathBuf,
    revoked_msg: PathBuf,
}

impl Setup {
    fn new() -> Self {
        let started = Instant::now();
        for _ in 0..3 {
            let work = tempfile::tempdir().unwrap();
            let port = free_port();
            let url = format!("http://127.0.0.1:{port}");
            let ca = Ca::root(work.path(), "ca", "/O=p11smime TEST ONLY/CN=OCSP Test CA");
            let good = ca.signer("good", "good@example.test", &url);
            let revoked = ca.signer("revoked", "revoked@example.test", &url);
            ca.revoke(&revoked.0);
            let good_msg = cms_sign(work.path(), "good.eml", ENTITY, &good, &[]);
            let revoked_msg = cms_sign(work.path(), "revoked.eml", ENTITY, &revoked, &[]);
            let log = work.path().join("ocsp.log");
            // The port was taken meanwhile: everything again, on another one.
            let Some(responder) = Responder::start(&ca, port, &ca.pair(), &[], &log) else {
                continue;
            };
            eprintln!("setup took {:?}", started.elapsed());
            return Setup {
                work,
                ca,
                port,
                responder,
                good_msg,
                revoked_msg,
            };
        }
        panic!("openssl ocsp could not listen three times");
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Replaces the responder with one signing with `rsigner`, with `extra` options.
    fn restart(&mut self, rsigner: &(PathBuf, PathBuf), extra: &[&str]) {
        self.responder.stop();
        self.responder = Responder::start(&self.ca, self.port, rsigner, extra, &self.responder.log)
            .unwrap_or_else(|| panic!("openssl ocsp could not listen on {} again", self.port));
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
        self.good_with(b"A message about OCSP.\r\n")
    }

    /// Good, and the revocation status unknown: the field starts with "unknown: " and
    /// contains each of `words`.
    fn good_but_unknown(&self, words: &[&str]) {
        let rev = self.good();
        assert!(rev.starts_with("unknown: "), "{}", self.report());
        for w in words {
            assert!(
                rev.contains(w),
                "{}\nexpected {w:?} in the revocation field",
                self.report()
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Tests

/// Case 1: the good signer, the responder signing with the CA's key (identified by name, and
/// by key hash with `-resp_key_id`): not revoked, in soft (default) and hard mode; one request
/// per run.
#[test]
fn good_signer_is_not_revoked_by_ocsp() {
    let mut s = Setup::new();
    assert_eq!(s.verify(&s.good_msg, &[]).good(), NOT_REVOKED);
    assert_eq!(s.responder.requests(), 1, "{}", s.responder.log());
    assert_eq!(
        s.verify(&s.good_msg, &["--revocation", "soft"]).good(),
        NOT_REVOKED
    );
    assert_eq!(
        s.verify(&s.good_msg, &["--revocation", "hard"]).good(),
        NOT_REVOKED
    );
    assert_eq!(s.responder.requests(), 3, "{}", s.responder.log());

    s.restart(&s.ca.pair(), &["-resp_key_id"]);
    assert_eq!(
        s.verify(&s.good_msg, &["--revocation", "hard"]).good(),
        NOT_REVOKED
    );
    assert_eq!(s.responder.requests(), 4, "{}", s.responder.log());
}

/// Case 2: the revoked signer fails in soft (default) and hard mode.
#[test]
fn revoked_signer_fails_by_ocsp() {
    let s = Setup::new();
    s.verify(&s.revoked_msg, &[]).bad(REVOKED);
    s.verify(&s.revoked_msg, &["--revocation", "soft"])
        .bad(REVOKED);
    s.verify(&s.revoked_msg, &["--revocation", "hard"])
        .bad(REVOKED);
    assert_eq!(s.responder.requests(), 3, "{}", s.responder.log());
}

/// Case 3a: a delegated responder, its certificate issued by the CA for OCSPSigning and sent
/// in the answer: its answers count, good and revoked.
#[test]
fn delegated_responder() {
    let mut s = Setup::new();
    let delegate = s.ca.responder("delegate", "OCSPSigning", &[]);
    s.restart(&delegate, &[]);
    assert_eq!(s.verify(&s.good_msg, &[]).good(), NOT_REVOKED);
    assert_eq!(
        s.verify(&s.good_msg, &["--revocation", "hard"]).good(),
        NOT_REVOKED
    );
    s.verify(&s.revoked_msg, &[]).bad(REVOKED);
    s.verify(&s.revoked_msg, &["--revocation", "hard"])
        .bad(REVOKED);
    assert_eq!(s.responder.requests(), 4, "{}", s.responder.log());
}

/// Case 3b: answers signed by a responder the CA did not authorise count for nothing, "good"
/// or "revoked": soft mode says unknown (with the reason and the responder), hard mode
/// refuses. The responders: a certificate of the CA without OCSPSigning (an e-mail
/// certificate), one for OCSPSigning from another CA, one from another CA with the very same
/// name (only the signature tells), and the authorised delegate not sending its certificate
/// (`-resp_no_certs`).
#[test]
fn unauthorised_responders_are_ignored() {
    let mut s = Setup::new();
    let url = s.url();
    let not_for_ocsp = s.ca.responder("not-for-ocsp", "emailProtection", &[]);
    let other = Ca::root(
        s.work.path(),
        "other",
        "/O=p11smime TEST ONLY/CN=Another CA",
    );
    let other_delegate = other.responder("other-delegate", "OCSPSigning", &[]);
    let twin = Ca::root(
        s.work.path(),
        "twin",
        "/O=p11smime TEST ONLY/CN=OCSP Test CA",
    );
    let twin_delegate = twin.responder("twin-delegate", "OCSPSigning", &[]);
    let delegate = s.ca.responder("delegate", "OCSPSigning", &[]);
    let cases: [(&str, &(PathBuf, PathBuf), &[&str]); 4] = [
        ("no OCSPSigning", &not_for_ocsp, &[]),
        ("another CA", &other_delegate, &[]),
        ("a namesake CA", &twin_delegate, &[]),
        ("no certificate", &delegate, &["-resp_no_certs"]),
    ];
    for (what, rsigner, extra) in cases {
        eprintln!("responder: {what}");
        s.restart(rsigner, extra);
        let before = s.responder.requests();
        s.verify(&s.good_msg, &[])
            .good_but_unknown(&[&url, UNAUTHORISED]);
        s.verify(&s.good_msg, &["--revocation", "hard"])
            .bad(UNKNOWN_HARD);
        // A "revoked" from an unauthorised responder is no verdict either.
        s.verify(&s.revoked_msg, &[])
            .good_but_unknown(&[&url, UNAUTHORISED]);
        let problem = s
            .verify(&s.revoked_msg, &["--revocation", "hard"])
            .bad(UNKNOWN_HARD)
            .to_string();
        assert!(problem.contains(UNAUTHORISED), "{what}: {problem}");
        assert_eq!(
            s.responder.requests(),
            before + 4,
            "{what}: {}",
            s.responder.log()
        );
    }
}

/// Case 4: the responder down. Soft: good, status unknown, naming the responder; hard:
/// refused. The revoked signer cannot be told apart then.
#[test]
fn unreachable_responder() {
    let mut s = Setup::new();
    let url = s.url();
    s.responder.stop();
    assert!(!accepts(s.port), "the responder still accepts");
    s.verify(&s.good_msg, &[]).good_but_unknown(&[
        "no CRL or OCSP answer for CN=good,O=p11smime TEST ONLY",
        &url,
    ]);
    s.verify(&s.good_msg, &["--revocation", "hard"])
        .bad(UNKNOWN_HARD);
    s.verify(&s.revoked_msg, &[]).good_but_unknown(&[&url]);
    s.verify(&s.revoked_msg, &["--revocation", "hard"])
        .bad(UNKNOWN_HARD);
}

/// Case 5: `--revocation off` asks nothing: the revoked signer passes, "not checked".
#[test]
fn revocation_off_asks_nothing() {
    let s = Setup::new();
    for msg in [&s.good_msg, &s.revoked_msg] {
        assert_eq!(
            s.verify(msg, &["--revocation", "off"]).good(),
            "not checked"
        );
    }
    assert_eq!(s.responder.requests(), 0, "{}", s.responder.log());
}

/// Case 6: `--offline` asks nothing, the responder up or down: status unknown (soft), refused
/// (hard); never "not revoked (OCSP)", never "revoked (OCSP)".
#[test]
fn offline_asks_nothing() {
    let mut s = Setup::new();
    for up in [true, false] {
        if !up {
            s.responder.stop();
        }
        for msg in [&s.good_msg, &s.revoked_msg] {
            let v = s.verify(msg, &["--offline"]);
            v.good_but_unknown(&["no CRL or OCSP answer for"]);
            assert!(!v.revocation().contains("OCSP)"), "{}", v.report());
            s.verify(msg, &["--offline", "--revocation", "hard"])
                .bad(UNKNOWN_HARD);
        }
    }
    assert_eq!(s.responder.requests(), 0, "{}", s.responder.log());
}

/// OCSP and a CRL given with `--crl`: both answer ("not revoked (OCSP, CRL)"); the revoked
/// signer fails on OCSP's word, which comes first.
#[test]
fn ocsp_and_a_crl_file() {
    let s = Setup::new();
    let (_, crl) = s.ca.gencrl(&s.ca.dir, &[]);
    let crl = path_str(&crl);
    for mode in ["soft", "hard"] {
        let args = ["--crl", crl, "--revocation", mode];
        assert_eq!(
            s.verify(&s.good_msg, &args).good(),
            "not revoked (OCSP, CRL)"
        );
        s.verify(&s.revoked_msg, &args).bad(REVOKED);
    }
}

/// A certificate the responder does not know (made with `openssl x509 -req`, so not in
/// index.txt; openssl answers "unknown"): soft mode says so, hard mode refuses.
#[test]
fn responder_does_not_know_the_certificate() {
    let s = Setup::new();
    let dir = s.work.path();
    let (key, csr, cert, ext) = (
        dir.join("stranger.key.pem"),
        dir.join("stranger.csr"),
        dir.join("stranger.pem"),
        dir.join("stranger.ext"),
    );
    std::fs::write(
        &ext,
        format!(
            "[ext]\n{}",
            Ca::signer_ext("stranger@example.test", &s.url())
        ),
    )
    .unwrap();
    ec_key(&key);
    run_ok(
        openssl()
            .args(["req", "-new", "-config"])
            .arg(s.ca.dir.join("req.cnf"))
            .args(["-subj", "/O=p11smime TEST ONLY/CN=stranger", "-key"])
            .arg(&key)
            .arg("-out")
            .arg(&csr),
    );
    run_ok(
        openssl()
            .args([
                "x509",
                "-req",
                "-days",
                "30",
                "-set_serial",
                "0x7777",
                "-in",
            ])
            .arg(&csr)
            .arg("-CA")
            .arg(&s.ca.cert)
            .arg("-CAkey")
            .arg(&s.ca.key)
            .arg("-extfile")
            .arg(&ext)
            .args(["-extensions", "ext", "-out"])
            .arg(&cert),
    );
    let msg = cms_sign(dir, "stranger.eml", ENTITY, &(cert, key), &[]);
    s.verify(&msg, &[])
        .good_but_unknown(&[&s.url(), "the responder does not know the certificate"]);
    s.verify(&msg, &["--revocation", "hard"]).bad(UNKNOWN_HARD);
    assert_eq!(s.responder.requests(), 2, "{}", s.responder.log());
}

/// A stored answer of the CA's responder about `cert` (`openssl ocsp -reqout` then `-reqin`
/// / `-respout`), to a request with a nonce of its own or (`nonce` false) without one.
fn stored_answer(s: &Setup, name: &str, cert: &Path, nonce: bool) -> PathBuf {
    let req = s.work.path().join(format!("{name}.req.der"));
    let resp = s.work.path().join(format!("{name}.resp.der"));
    run_ok(
        openssl()
            .args(["ocsp", "-issuer"])
            .arg(&s.ca.cert)
            .arg("-cert")
            .arg(cert)
            .arg(if nonce { "-nonce" } else { "-no_nonce" })
            .arg("-reqout")
            .arg(&req),
    );
    run_ok(
        openssl()
            .arg("ocsp")
            .arg("-index")
            .arg(s.ca.dir.join("index.txt"))
            .arg("-rsigner")
            .arg(&s.ca.cert)
            .arg("-rkey")
            .arg(&s.ca.key)
            .arg("-CA")
            .arg(&s.ca.cert)
            .arg("-reqin")
            .arg(&req)
            .arg("-respout")
            .arg(&resp),
    );
    resp
}

/// Answers replayed by a server that answers every request with the same stored response,
/// signed by the CA: one made for another request (its nonce) is no answer; one about another
/// certificate is no answer; one without a nonce about this certificate is taken (the nonce
/// is checked when the responder echoes one), which shows the replays work.
#[test]
fn replayed_answers() {
    let mut s = Setup::new();
    let url = s.url();
    let good_cert = s.ca.dir.join("good.pem");
    let revoked_cert = s.ca.dir.join("revoked.pem");
    let cases = [
        (
            "good-nonce",
            &good_cert,
            true,
            Some("the OCSP response answers another request (nonce)"),
        ),
        (
            "revoked-no-nonce",
            &revoked_cert,
            false,
            Some("the OCSP response is not about this certificate"),
        ),
        ("good-no-nonce", &good_cert, false, None),
    ];
    for (name, cert, nonce, why) in cases {
        eprintln!("replaying {name}");
        let answer = stored_answer(&s, name, cert, nonce);
        s.responder.stop();
        s.responder = Responder::replay(&answer, s.port, &s.responder.log)
            .unwrap_or_else(|| panic!("the replay server could not listen on {}", s.port));
        let before = s.responder.requests();
        match why {
            Some(why) => {
                s.verify(&s.good_msg, &[]).good_but_unknown(&[&url, why]);
                let problem = s
                    .verify(&s.good_msg, &["--revocation", "hard"])
                    .bad(UNKNOWN_HARD)
                    .to_string();
                assert!(problem.contains(why), "{name}: {problem}");
            }
            None => assert_eq!(
                s.verify(&s.good_msg, &["--revocation", "hard"]).good(),
                NOT_REVOKED
            ),
        }
        assert!(
            s.responder.requests() > before,
            "{name}: {}",
            s.responder.log()
        );
    }
}

/// Regression (src/ocsp.rs, `responder_cert`): a delegated responder certificate's validity
/// period was not checked. One issued by the CA for OCSPSigning that expired in 2020 vouched for
/// the signer, even in hard mode ("not revoked (OCSP)", exit 0). Its answers must count for
/// nothing, as an unauthorised responder's do.
#[test]
fn expired_delegated_responder_is_ignored() {
    let mut s = Setup::new();
    let expired = s.ca.responder(
        "expired-delegate",
        "OCSPSigning",
        &[
            "-startdate",
            "20200101000000Z",
            "-enddate",
            "20200201000000Z",
        ],
    );
    s.restart(&expired, &[]);
    s.verify(&s.good_msg, &[]).good_but_unknown(&[&s.url()]);
    s.verify(&s.good_msg, &["--revocation", "hard"])
        .bad(UNKNOWN_HARD);
}
