//! The delivery recipes in `docs/mail-clients.md`, run by the real delivery agents: each recipe
//! is read from between its marker comments in the document (so the two cannot drift apart),
//! put behind a preamble that points `DEFAULT` at a temporary Maildir and gives p11smime a
//! SoftHSM2 token and a PIN file, and a message is delivered with `procmail -m RCFILE` or
//! `maildrop RCFILE`. An encrypted message must arrive readable with its own headers; a plain
//! message, and one encrypted to someone else, must arrive exactly as sent.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use common::*;

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

const DOC: &str = "docs/mail-clients.md";

/// The lines between `<!-- NAME-begin -->` and `<!-- NAME-end -->`, without the code fences.
fn recipe(name: &str) -> String {
    let text = std::fs::read_to_string(root().join(DOC)).unwrap();
    let begin = format!("<!-- {name}-begin -->");
    let end = format!("<!-- {name}-end -->");
    let start = text
        .find(&begin)
        .unwrap_or_else(|| panic!("{DOC} has no {begin}"));
    let rest = &text[start + begin.len()..];
    let stop = rest
        .find(&end)
        .unwrap_or_else(|| panic!("{DOC} has no {end}"));
    let body: String = rest[..stop]
        .lines()
        .filter(|l| !l.starts_with("```"))
        .map(|l| format!("{l}\n"))
        .collect();
    assert!(
        body.contains("p11smime decrypt"),
        "{DOC}: {name} runs no p11smime"
    );
    body.trim_start_matches('\n').to_string()
}

#[derive(Clone, Copy)]
enum Agent {
    Procmail,
    Maildrop,
}

/// A token, a PIN file, a Maildir and an rcfile for `agent` holding the document's recipe.
struct Delivery {
    token: TestToken,
    agent: Agent,
    maildir: PathBuf,
    rcfile: PathBuf,
}

impl Delivery {
    fn new(agent: Agent) -> Self {
        let token = TestToken::new();
        let maildir = token.path("Maildir");
        for sub in ["cur", "new", "tmp"] {
            std::fs::create_dir_all(maildir.join(sub)).unwrap();
        }
        let pin = token.write("pin", format!("{PIN}\n").as_bytes());
        std::fs::set_permissions(&pin, std::fs::Permissions::from_mode(0o600)).unwrap();
        let bin = Path::new(env!("CARGO_BIN_EXE_p11smime")).parent().unwrap();
        let path = format!("{}:/usr/local/bin:/usr/bin:/bin", path_str(bin));
        let conf = path_str(&token.conf).to_string();
        let module = path_str(&softhsm_module()).to_string();
        let md = format!("{}/", path_str(&maildir));
        let pin = path_str(&pin).to_string();
        // procmail clears the environment, so the preamble sets everything, as the doc says.
        let (preamble, name) = match agent {
            Agent::Procmail => (
                format!(
                    "PATH={path}\nSHELL=/bin/sh\nSOFTHSM2_CONF={conf}\nP11SMIME_MODULE={module}\n\
                     MAILDIR={md}\nDEFAULT={md}\nLOGFILE={}\nP11SMIME_PIN={pin}\n",
                    path_str(&token.path("procmail.log"))
                ),
                "procmail-recipe",
            ),
            Agent::Maildrop => (
                format!(
                    "PATH=\"{path}\"\nSOFTHSM2_CONF=\"{conf}\"\nP11SMIME_MODULE=\"{module}\"\n\
                     DEFAULT=\"{md}\"\nP11SMIME_PIN=\"{pin}\"\n"
                ),
                "maildrop-recipe",
            ),
        };
        let rcfile = token.write("rcfile", format!("{preamble}{}", recipe(name)).as_bytes());
        // maildrop refuses a filter file others can write to.
        std::fs::set_permissions(&rcfile, std::fs::Permissions::from_mode(0o600)).unwrap();
        Delivery {
            token,
            agent,
            maildir,
            rcfile,
        }
    }

    /// Delivers `message`; returns the one file that arrived in the Maildir's `new/`.
    fn deliver(&self, message: &[u8]) -> Vec<u8> {
        let new = self.maildir.join("new");
        for entry in std::fs::read_dir(&new).unwrap() {
            std::fs::remove_file(entry.unwrap().path()).unwrap();
        }
        let input = self.token.write("incoming.eml", message);
        let mut cmd = match self.agent {
            Agent::Procmail => {
                let mut c = Command::new(require("procmail", "procmail"));
                c.arg("-m");
                c
            }
            Agent::Maildrop => Command::new(require("maildrop", "maildrop")),
        };
        cmd.arg(&self.rcfile)
            .env_remove("P11SMIME_TOKEN")
            .env_remove("P11SMIME_MODULE")
            .env_remove("SOFTHSM2_CONF")
            .stdin(Stdio::from(std::fs::File::open(&input).unwrap()));
        let out = cmd.output().unwrap();
        let log = std::fs::read_to_string(self.token.path("procmail.log")).unwrap_or_default();
        assert!(
            out.status.success(),
            "delivery failed: {}\nlog:\n{log}",
            report(&out)
        );
        let files: Vec<PathBuf> = std::fs::read_dir(&new)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        assert_eq!(
            files.len(),
            1,
            "expected one delivered message: {}\nlog:\n{log}",
            report(&out)
        );
        std::fs::read(&files[0]).unwrap()
    }
}

const HEADERS: &str = "From: Alice Tester <alice@example.test>\n\
                       To: Bob Other <bob@example.test>\n\
                       Subject: Secret plans\n\
                       Date: Mon, 3 Mar 2025 10:00:00 +0000\n\
                       Message-ID: <plans-1@example.test>\n";

const SECRET: &str = "The eagle lands at noon.";

/// A whole message as it arrives: mail headers over `openssl cms -encrypt` output (which
/// begins with its own MIME-Version and Content-Type) to the fixture certificate `to`.
fn encrypted_message(dir: &Path, to: &str) -> Vec<u8> {
    let entity = format!("Content-Type: text/plain; charset=us-ascii\r\n\r\n{SECRET}\r\n");
    let input = dir.join("entity.txt");
    std::fs::write(&input, entity).unwrap();
    let out = run_ok(
        Command::new("openssl")
            .args(["cms", "-encrypt", "-aes256", "-in"])
            .arg(&input)
            .arg(fixture(to)),
    );
    let mut msg = HEADERS.as_bytes().to_vec();
    msg.extend_from_slice(&out.stdout);
    assert!(contains(&msg, b"Content-Type: application/"));
    msg
}

fn plain_message() -> Vec<u8> {
    format!(
        "{HEADERS}MIME-Version: 1.0\nContent-Type: text/plain; charset=us-ascii\n\n\
         Nothing secret here; it mentions application/pkcs7-mime in the body.\n"
    )
    .into_bytes()
}

fn check(agent: Agent) {
    let d = Delivery::new(agent);
    let dir = d.token.dir.path().to_path_buf();

    // Encrypted to the token's key: arrives readable, with its own headers.
    let got = d.deliver(&encrypted_message(&dir, "alice-enc.pem"));
    let text = String::from_utf8_lossy(&got);
    assert!(text.contains(SECRET), "not decrypted:\n{text}");
    for h in HEADERS.lines() {
        assert!(text.lines().any(|l| l == h), "{h:?} lost:\n{text}");
    }
    assert!(
        !text.contains("pkcs7-mime") && !text.contains("smime.p7m"),
        "still encrypted:\n{text}"
    );

    // Not encrypted: untouched.
    let plain = plain_message();
    assert!(d.deliver(&plain) == plain, "a plain message was changed");

    // Encrypted to Bob, whose key is not on the token: p11smime fails, the original is kept.
    let for_bob = encrypted_message(&dir, "bob-enc.pem");
    let got = d.deliver(&for_bob);
    assert!(
        got == for_bob,
        "a message p11smime cannot decrypt was not kept as sent:\n{}",
        String::from_utf8_lossy(&got)
    );
}

#[test]
fn procmail_recipe_decrypts_on_delivery_and_keeps_the_rest() {
    check(Agent::Procmail);
}

#[test]
fn maildrop_recipe_decrypts_on_delivery_and_keeps_the_rest() {
    check(Agent::Maildrop);
}
