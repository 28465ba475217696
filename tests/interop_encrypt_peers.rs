//! Interoperability of `p11smime encrypt` with real decrypters: what p11smime encrypts to bob
//! (bob-enc.pem, a recipient whose key is NOT on the token) is decrypted by GnuPG's
//! `gpgsm --decrypt` and by NSS's `cmsutil -D` (what Thunderbird uses), each holding bob's
//! private key imported from a PKCS#12 file, and the decrypted entity decodes (mail-parser) to
//! exactly the text and attachment that went in. `--sign` output (signed, then encrypted) is
//! decrypted by both peers and the inner multipart/signed is verified by both.
//!
//! The message encrypted has From/To/Subject, a multipart/mixed body with a UTF-8 text part
//! with LF line endings (and a line starting with "From "), and a 100 KiB binary attachment with
//! `Content-Transfer-Encoding: binary`. p11smime makes it transport-safe before encrypting (CRLF,
//! quoted-printable text, base64 attachment), so the text decodes with CRLF line endings: the
//! canonical form of the same text.
//!
//! What the peers do (gpgsm 2.2.40 / libksba, NSS 3.87):
//! * gpgsm cannot import OpenSSL 3's default PKCS#12 (PBES2 with AES-256 and HMAC-SHA-256:
//!   `encryptedData error at "pkcs5PBES2-params"`); it needs the legacy PBE-SHA1-3DES form, and
//!   even then about one file in 200 (depending on the random salt) fails in the key bag
//!   (`data error at "shrouded_key_bag.decrypted-text"`) although openssl reads it, so
//!   `Gpgsm::with_secret_key` makes a fresh file and tries again. gpgsm has no `--passphrase`;
//!   `--pinentry-mode loopback --passphrase-fd 0` works for the import and for each decryption
//!   (the imported key stays protected by the passphrase).
//! * gpgsm decrypts AES-128/192/256-CBC with PKCS#1 v1.5 key transport (`--verbose` says
//!   `AES.CBC` / `AES192.CBC` / `AES256.CBC encrypted data`, status `DECRYPTION_OKAY`). It has
//!   no GCM (`error getting IV: Buffer too short`) and no OAEP (`error getting encrypted
//!   session key`), so those are not tested with it.
//! * gpgsm tries the RecipientInfos in order and stops at the first it can decrypt. One for a
//!   key it does not hold that comes earlier gives `NO_SECKEY <keyid>` and exit 2, even though
//!   the message is then decrypted (`DECRYPTION_OKAY`); its own messages do the same. With
//!   p11smime's default self copy to alice-enc, bob's exit code therefore depends on the order
//!   of the two RecipientInfos (see the self-copy test); the other gpgsm tests use `--no-self`
//!   and insist on exit 0.
//! * gpgsm cannot read a whole mail (`ksba_cms_parse failed: End of file`, even with
//!   `--assume-base64`); it decrypts the base64 body of the application/pkcs7-mime part with
//!   `--assume-base64` (without that option it does not recognise bare base64), and the PEM form
//!   (`-----BEGIN CMS-----`) as it is.
//! * `cmsutil -D` decrypts AES-128/192/256-CBC with PKCS#1 v1.5 and exits 0, with or without the
//!   self copy. It has no OAEP (`SEC_ERROR_UNSUPPORTED_KEYALG`) and no AuthEnvelopedData/GCM
//!   (`SEC_ERROR_UNRECOGNIZED_OID`); those are not tested here.
//!
//! Each GNUPGHOME is a short directory in /tmp, and the gpg-agent gpgsm starts is stopped even
//! when the test fails (`Gpgsm`'s `Drop`). A missing peer fails the test with an install hint.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use common::gpgsm::{Gpgsm, sha1_fpr};
use common::mime::{altered, split_multipart_signed};
use common::nss::{NssDb, cmsutil_decode};
use common::*;

use mail_parser::{MessageParser, MimeHeaders};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The multipart/mixed boundary of the message encrypted.
const BOUNDARY: &str = "=_mixed_p11smime_interop_Q7x";
/// The text part: UTF-8, LF line endings, a line starting with "From ", "the card" once.
const TEXT: &str = "Grüße an Bob,\n\
                    From the card: die Anlage ist dabei.\n\
                    Ärger? Nein. Preis: 5 € — ✓\n";
const ATTACHMENT_NAME: &str = "data.bin";
const ATTACHMENT_LEN: usize = 100 * 1024;
/// The PKCS#12 password for bob's key, and the NSS DB password.
const P12_PASS: &str = "x";
const NSS_PASS: &str = "nss-db-secret";

/// DER of the OIDs checked in p11smime's output.
const OID_AES128_CBC: &[u8] = &[
    0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x01, 0x02,
];
const OID_AES192_CBC: &[u8] = &[
    0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x01, 0x16,
];
const OID_AES256_CBC: &[u8] = &[
    0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x01, 0x2A,
];
/// rsaEncryption (PKCS#1 v1.5 key transport) and id-RSAES-OAEP.
const OID_RSA_ENCRYPTION: &[u8] = &[
    0x06, 0x09, 0x2A, 0x86, 0x48, 0x86, 0xF7, 0x0D, 0x01, 0x01, 0x01,
];
const OID_RSAES_OAEP: &[u8] = &[
    0x06, 0x09, 0x2A, 0x86, 0x48, 0x86, 0xF7, 0x0D, 0x01, 0x01, 0x07,
];

/// (p11smime --cipher, its OID, what `gpgsm --verbose` calls it).
const CBC_CIPHERS: [(&str, &[u8], &str); 3] = [
    ("aes128-cbc", OID_AES128_CBC, "AES.CBC"),
    ("aes192-cbc", OID_AES192_CBC, "AES192.CBC"),
    ("aes256-cbc", OID_AES256_CBC, "AES256.CBC"),
];

/// The 100 KiB attachment: every byte value, CR, LF, NUL.
fn attachment() -> Vec<u8> {
    let a = varied_bytes(ATTACHMENT_LEN);
    // In an LF message the line break before the next delimiter is "\n"; a final CR would be
    // taken as part of a CRLF delimiter break. Keep the test data clear of that ambiguity.
    assert_ne!(a.last(), Some(&b'\r'), "attachment ends with CR");
    assert!(
        !contains(&a, BOUNDARY.as_bytes()),
        "attachment contains the boundary"
    );
    a
}

/// The mail encrypted: headers, a multipart/mixed with the text and the binary attachment,
/// LF line endings throughout.
fn message() -> Vec<u8> {
    let mut m = format!(
        "From: Alice Tester <alice@example.test>\n\
         To: Bob Other <bob@example.test>\n\
         Subject: Encrypted with an attachment\n\
         MIME-Version: 1.0\n\
         Content-Type: multipart/mixed; boundary=\"{BOUNDARY}\"\n\
         \n\
         This is a multi-part message in MIME format.\n\
         --{BOUNDARY}\n\
         Content-Type: text/plain; charset=utf-8\n\
         Content-Transfer-Encoding: 8bit\n\
         \n\
         {TEXT}\
         \n\
         --{BOUNDARY}\n\
         Content-Type: application/octet-stream; name=\"{ATTACHMENT_NAME}\"\n\
         Content-Disposition: attachment; filename=\"{ATTACHMENT_NAME}\"\n\
         Content-Transfer-Encoding: binary\n\
         \n"
    )
    .into_bytes();
    m.extend_from_slice(&attachment());
    m.extend_from_slice(format!("\n--{BOUNDARY}--\n").as_bytes());
    m
}

/// `p11smime encrypt -r bob-enc.pem EXTRA -o NAME message.eml`; insists on exit 0 and an empty
/// stdout; returns the output file.
fn encrypt(token: &TestToken, name: &str, extra: &[&str]) -> PathBuf {
    let input = token.path("message.eml");
    std::fs::write(&input, message()).unwrap();
    let output = token.path(name);
    let out = token
        .p11smime(&["encrypt", "-r"])
        .arg(fixture("bob-enc.pem"))
        .args(extra)
        .arg("-o")
        .arg(&output)
        .arg(&input)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "p11smime encrypt {extra:?}: stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.stdout.is_empty(),
        "p11smime encrypt {extra:?} -o wrote to stdout"
    );
    output
}

/// Bare DER EnvelopedData with `cipher_oid` and PKCS#1 v1.5 key transport only.
fn assert_der_with(msg: &Path, cipher_oid: &[u8], what: &str) {
    let der = std::fs::read(msg).unwrap();
    assert_eq!(der.first(), Some(&0x30), "{what}: not DER");
    assert!(contains(&der, cipher_oid), "{what}: unexpected cipher");
    assert!(
        contains(&der, OID_RSA_ENCRYPTION) && !contains(&der, OID_RSAES_OAEP),
        "{what}: key transport is not PKCS#1 v1.5"
    );
}

/// The decrypted entity decodes to the text and the attachment that went in: a multipart/mixed
/// whose text part is TEXT (in canonical CRLF form) and whose one attachment is `data.bin` with
/// exactly the attachment bytes. It must also be 7-bit (transport-safe).
fn assert_entity(entity: &[u8], what: &str) {
    assert!(entity.is_ascii(), "{what}: decrypted entity is not 7-bit");
    let parsed = MessageParser::default()
        .parse(entity)
        .unwrap_or_else(|| panic!("{what}: mail-parser cannot parse the decrypted entity"));
    let ct = parsed
        .content_type()
        .unwrap_or_else(|| panic!("{what}: no Content-Type"));
    assert_eq!(
        (ct.ctype(), ct.subtype()),
        ("multipart", Some("mixed")),
        "{what}: top-level type"
    );
    assert_eq!(
        parsed.text_body_count(),
        1,
        "{what}: expected one text body"
    );
    let text = parsed.body_text(0).expect("text body");
    assert_eq!(
        text,
        TEXT.replace('\n', "\r\n"),
        "{what}: the text does not decode to the original"
    );
    assert_eq!(
        parsed.attachment_count(),
        1,
        "{what}: expected one attachment"
    );
    let att = parsed.attachment(0).unwrap();
    assert_eq!(
        att.attachment_name(),
        Some(ATTACHMENT_NAME),
        "{what}: attachment name"
    );
    let expected = attachment();
    let got = att.contents();
    let first_diff = got.iter().zip(&expected).position(|(a, b)| a != b);
    assert!(
        got.len() == expected.len() && first_diff.is_none(),
        "{what}: attachment differs: got {} bytes, expected {}, first difference at {first_diff:?}",
        got.len(),
        expected.len()
    );
}

// ---------------------------------------------------------------------------------------------
// gpgsm

/// gpgsm's 16-hex-digit key ID (ENC_TO, NO_SECKEY) of a fixture certificate.
fn keyid(cert: &str) -> String {
    let fpr = sha1_fpr(cert);
    fpr[fpr.len() - 16..].to_string()
}

/// A temporary GNUPGHOME holding bob's private key (from PKCS#12), the certificates of the test
/// CA (trusted through `trustlist.txt`) and of alice-enc (so her RecipientInfo is reported as
/// NO_SECKEY rather than an unknown certificate).
fn gpgsm_for_bob(token: &TestToken) -> Gpgsm {
    Gpgsm::new(&["alice-enc.pem"]).with_secret_key(
        token.dir.path(),
        "bob-enc.pem",
        "bob-enc.key.pem",
        P12_PASS,
    )
}

impl Gpgsm {
    /// `gpgsm --verbose --decrypt INPUT -o OUTPUT EXTRA`, status lines on stdout.
    fn decrypt(&self, input: &Path, output: &Path, extra: &[&str]) -> Output {
        let mut cmd = self.cmd();
        cmd.args([
            "--batch",
            "--verbose",
            "--disable-crl-checks",
            "--disable-dirmngr",
            "--status-fd",
            "1",
        ])
        .args(extra)
        .arg("--output")
        .arg(output);
        self.with_passphrase(&mut cmd)
            .arg("--decrypt")
            .arg(input)
            .output()
            .unwrap()
    }
}

/// gpgsm decrypted it with bob's key (ENC_TO bob, DECRYPTION_OKAY, no DECRYPTION_FAILED), and
/// exited with `code`; `cipher` is what `--verbose` names the content cipher.
fn assert_gpgsm_decrypted(out: &Output, code: i32, cipher: Option<&str>, what: &str) {
    let status = String::from_utf8_lossy(&out.stdout);
    let rep = report(out);
    assert_eq!(out.status.code(), Some(code), "{what}: {rep}");
    assert!(
        status.contains(&format!("[GNUPG:] ENC_TO {} ", keyid("bob-enc.pem"))),
        "{what}: gpgsm saw no recipient bob: {rep}"
    );
    assert!(
        status.contains("[GNUPG:] DECRYPTION_OKAY") && !status.contains("DECRYPTION_FAILED"),
        "{what}: gpgsm did not decrypt: {rep}"
    );
    if let Some(c) = cipher {
        assert!(
            String::from_utf8_lossy(&out.stderr).contains(&format!("{c} encrypted data")),
            "{what}: gpgsm did not report {c}: {rep}"
        );
    }
}

#[test]
fn gpgsm_decrypts_aes_cbc_der() {
    let token = TestToken::new();
    let gpg = gpgsm_for_bob(&token);
    for (cipher, oid, gpgsm_name) in CBC_CIPHERS {
        let what = format!("gpgsm, {cipher}, --outform der");
        let msg = encrypt(
            &token,
            &format!("{cipher}.p7m"),
            &["--no-self", "--outform", "der", "--cipher", cipher],
        );
        assert_der_with(&msg, oid, &what);
        let plain = token.path(&format!("{cipher}.gpgsm.out"));
        let out = gpg.decrypt(&msg, &plain, &[]);
        assert_gpgsm_decrypted(&out, 0, Some(gpgsm_name), &what);
        assert!(
            !String::from_utf8_lossy(&out.stdout).contains("NO_SECKEY"),
            "{what}: {}",
            report(&out)
        );
        assert_entity(&std::fs::read(&plain).unwrap(), &what);
    }
    gpg.stop();
}

/// Where the RecipientInfo for `cert` starts in a DER EnvelopedData: the offset of its
/// issuerAndSerialNumber's serial INTEGER (the test certificates all have distinct serials).
fn recipient_offset(der: &[u8], cert: &str) -> usize {
    let out = run_ok(
        Command::new("openssl")
            .args(["x509", "-noout", "-serial", "-in"])
            .arg(fixture(cert)),
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let mut serial = hex::decode(text.trim().trim_start_matches("serial=")).unwrap();
    if serial[0] & 0x80 != 0 {
        serial.insert(0, 0);
    }
    let mut needle = vec![0x02, u8::try_from(serial.len()).unwrap()];
    needle.extend_from_slice(&serial);
    find(der, &needle, 0).unwrap_or_else(|| panic!("no RecipientInfo for {cert}"))
}

/// The default (a copy to the sender's own alice-enc as well as to bob). gpgsm tries the
/// RecipientInfos in order and stops at the first it can decrypt: when alice's comes first it
/// reports NO_SECKEY for it and exits 2 although it decrypted the message; when bob's comes
/// first it exits 0 and never looks at alice's. Its own messages to alice and bob behave the
/// same. p11smime's RecipientInfo order currently varies from run to run (the SET OF is not in
/// DER order), so several messages are checked, each against its own order.
#[test]
fn gpgsm_decrypts_with_self_copy_exit_code_follows_recipient_order() {
    let token = TestToken::new();
    let gpg = gpgsm_for_bob(&token);
    let alice = keyid("alice-enc.pem");
    let no_seckey = format!("[GNUPG:] NO_SECKEY {alice}");

    for n in 0..4 {
        let what = format!("gpgsm, with the self copy #{n}");
        let msg = encrypt(
            &token,
            &format!("self-{n}.p7m"),
            &["--outform", "der", "--cipher", "aes128-cbc"],
        );
        assert_der_with(&msg, OID_AES128_CBC, &what);
        let der = std::fs::read(&msg).unwrap();
        let alice_first =
            recipient_offset(&der, "alice-enc.pem") < recipient_offset(&der, "bob-enc.pem");
        let plain = token.path(&format!("self-{n}.gpgsm.out"));
        let out = gpg.decrypt(&msg, &plain, &[]);
        let status = String::from_utf8_lossy(&out.stdout);
        if alice_first {
            assert_gpgsm_decrypted(&out, 2, Some("AES.CBC"), &what);
            assert!(
                status.contains(&format!("[GNUPG:] ENC_TO {alice} "))
                    && status.contains(&no_seckey),
                "{what}: alice's RecipientInfo not reported: {}",
                report(&out)
            );
        } else {
            assert_gpgsm_decrypted(&out, 0, Some("AES.CBC"), &what);
            assert!(!status.contains(&alice), "{what}: {}", report(&out));
        }
        assert_entity(&std::fs::read(&plain).unwrap(), &what);
    }

    // gpgsm's own messages: alice first exits 2, bob first exits 0.
    for (first, second, code) in [("alice", "bob", 2), ("bob", "alice", 0)] {
        let what = format!("gpgsm's own message to {first} and {second}");
        let reference = gpg.encrypt(
            &token,
            &format!("gpgsm-{first}-{second}"),
            &[first, second],
            b"hello\n",
            &[],
        );
        let ref_plain = token.path(&format!("gpgsm-{first}-{second}.out"));
        let out = gpg.decrypt(&reference, &ref_plain, &[]);
        assert_gpgsm_decrypted(&out, code, None, &what);
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).contains(&no_seckey),
            code == 2,
            "{what}: {}",
            report(&out)
        );
        assert_eq!(std::fs::read(&ref_plain).unwrap(), b"hello\n", "{what}");
    }
    gpg.stop();
}

/// The full message form: the mail keeps From/To/Subject; gpgsm cannot read a whole mail, but
/// decrypts the base64 body of the application/pkcs7-mime part (`--assume-base64`), as a mail
/// client hands it over, and the PEM form as it is.
#[test]
fn gpgsm_decrypts_the_message_body_and_pem_but_not_a_whole_mail() {
    let token = TestToken::new();
    let gpg = gpgsm_for_bob(&token);

    let mail = encrypt(&token, "mail.eml", &["--no-self", "--cipher", "aes256-cbc"]);
    let bytes = std::fs::read(&mail).unwrap();
    let parsed = MessageParser::default()
        .parse(&bytes)
        .expect("mail-parser cannot parse p11smime's message");
    let from = parsed.from().and_then(|a| a.first()).expect("From");
    assert_eq!(
        (from.name(), from.address()),
        (Some("Alice Tester"), Some("alice@example.test"))
    );
    let to = parsed.to().and_then(|a| a.first()).expect("To");
    assert_eq!(
        (to.name(), to.address()),
        (Some("Bob Other"), Some("bob@example.test"))
    );
    assert_eq!(parsed.subject(), Some("Encrypted with an attachment"));
    let ct = parsed.content_type().expect("Content-Type");
    assert_eq!(
        (
            ct.ctype(),
            ct.subtype(),
            ct.attribute("smime-type"),
            parsed.content_transfer_encoding()
        ),
        (
            "application",
            Some("pkcs7-mime"),
            Some("enveloped-data"),
            Some("base64")
        ),
        "message form headers"
    );

    // The whole mail: gpgsm has no MIME parser.
    let whole = gpg.decrypt(&mail, &token.path("mail.gpgsm.out"), &[]);
    assert_eq!(whole.status.code(), Some(2), "{}", report(&whole));
    assert!(
        String::from_utf8_lossy(&whole.stdout).contains("[GNUPG:] DECRYPTION_FAILED"),
        "gpgsm read a whole mail after all: {}",
        report(&whole)
    );

    // The body of the pkcs7-mime part, base64 as sent.
    let head_end = find(&bytes, b"\r\n\r\n", 0).expect("end of the message header");
    let body = token.write("mail.b64", &bytes[head_end + 4..]);
    let plain = token.path("mail.body.out");
    let out = gpg.decrypt(&body, &plain, &["--assume-base64"]);
    assert_gpgsm_decrypted(&out, 0, Some("AES256.CBC"), "gpgsm, message body");
    assert_entity(&std::fs::read(&plain).unwrap(), "gpgsm, message body");

    // --outform pem.
    let pem = encrypt(&token, "mail.pem", &["--no-self", "--outform", "pem"]);
    assert!(
        std::fs::read_to_string(&pem)
            .unwrap()
            .starts_with("-----BEGIN CMS-----"),
        "unexpected PEM label"
    );
    let plain = token.path("pem.out");
    let out = gpg.decrypt(&pem, &plain, &[]);
    assert_gpgsm_decrypted(&out, 0, Some("AES256.CBC"), "gpgsm, --outform pem");
    assert_entity(&std::fs::read(&plain).unwrap(), "gpgsm, --outform pem");
    gpg.stop();
}

// ---------------------------------------------------------------------------------------------
// NSS cmsutil

/// A fresh NSS DB with password NSS_PASS holding bob's key and certificate (`pk12util`, OpenSSL
/// 3's default PKCS#12) and the test CA trusted for e-mail.
fn nss_db(token: &TestToken) -> NssDb {
    let db = NssDb::create(&token.path("nssdb"), Some(NSS_PASS));
    let p12 = token.path("bob.p12");
    pkcs12_export(&p12, "bob-enc.pem", "bob-enc.key.pem", P12_PASS, &[]);
    db.import_p12(&p12, P12_PASS);
    db.trust_test_ca();
    let keys = run_ok(&mut db.certutil("-K"));
    assert!(
        String::from_utf8_lossy(&keys.stdout).contains("Bob Other"),
        "bob's key is not in the NSS DB: {}",
        report(&keys)
    );
    db
}

/// cmsutil decrypted `msg`: exit 0, an envelopedData, and the decrypted entity on stdout.
fn nss_decrypt(db: &NssDb, msg: &Path, what: &str) -> Vec<u8> {
    let out = cmsutil_decode(db, msg, None, &[]);
    assert_eq!(out.status.code(), Some(0), "{what}: {}", report(&out));
    let info = cmsutil_decode(db, msg, None, &["-h", "0", "-n"]);
    assert!(
        String::from_utf8_lossy(&info.stdout).contains("type=envelopedData;"),
        "{what}: cmsutil -h 0: {}",
        report(&info)
    );
    out.stdout
}

#[test]
fn nss_decrypts_aes_cbc_der() {
    let token = TestToken::new();
    let db = nss_db(&token);
    for (cipher, oid, _) in CBC_CIPHERS {
        // The default: bob and the sender's own copy.
        let what = format!("NSS, {cipher}, --outform der");
        let msg = encrypt(
            &token,
            &format!("{cipher}.p7m"),
            &["--outform", "der", "--cipher", cipher],
        );
        assert_der_with(&msg, oid, &what);
        assert_entity(&nss_decrypt(&db, &msg, &what), &what);
    }
}

// ---------------------------------------------------------------------------------------------
// Signed, then encrypted

/// `--sign`: one message, decrypted by gpgsm and by NSS to the same multipart/signed entity,
/// whose signature both verify (alice-sign, chaining to the trusted test CA), and whose signed
/// part decodes to the original text and attachment. A one-byte change makes both say bad.
#[test]
fn signed_then_encrypted_decrypts_and_verifies_with_gpgsm_and_nss() {
    let token = TestToken::new();
    let gpg = gpgsm_for_bob(&token);
    let db = nss_db(&token);
    let msg = encrypt(
        &token,
        "signed.p7m",
        &[
            "--sign",
            "--pin",
            "env:TEST_PIN",
            "--no-self",
            "--outform",
            "der",
            "--cipher",
            "aes256-cbc",
        ],
    );
    assert_der_with(&msg, OID_AES256_CBC, "--sign");

    // Decrypt with both peers: the same inner entity.
    let plain = token.path("signed.gpgsm.out");
    let out = gpg.decrypt(&msg, &plain, &[]);
    assert_gpgsm_decrypted(&out, 0, Some("AES256.CBC"), "gpgsm, --sign");
    let inner = std::fs::read(&plain).unwrap();
    let nss_inner = nss_decrypt(&db, &msg, "NSS, --sign");
    assert!(
        nss_inner == inner,
        "gpgsm and NSS decrypted different entities ({} and {} bytes)",
        inner.len(),
        nss_inner.len()
    );

    // The inner entity is a multipart/signed (mail-parser agrees).
    let parsed = MessageParser::default()
        .parse(&inner)
        .expect("mail-parser cannot parse the inner entity");
    let ct = parsed.content_type().expect("inner Content-Type");
    assert_eq!(
        (
            ct.ctype(),
            ct.subtype(),
            ct.attribute("protocol"),
            ct.attribute("micalg")
        ),
        (
            "multipart",
            Some("signed"),
            Some("application/pkcs7-signature"),
            Some("sha-256")
        ),
        "inner entity"
    );
    let (content, sig) = split_multipart_signed(&inner);
    assert_entity(&content, "signed part");
    let content_file = token.write("signed-content.txt", &content);
    let sig_file = token.write("smime.p7s", &sig);

    // gpgsm: good signature by alice-sign, fully trusted.
    let fpr = sha1_fpr("alice-sign.pem");
    let v = gpg.verify(&sig_file, Some(&content_file), None);
    let status = String::from_utf8_lossy(&v.stdout);
    assert_eq!(v.status.code(), Some(0), "gpgsm --verify: {}", report(&v));
    assert!(
        status.contains(&format!("[GNUPG:] GOODSIG {fpr} "))
            && status.contains(&format!("[GNUPG:] VALIDSIG {fpr} "))
            && status.contains("[GNUPG:] TRUST_FULLY")
            && !status.contains("BADSIG"),
        "gpgsm --verify: {}",
        report(&v)
    );

    // NSS: exit 0 with the content echoed, and GoodSignature by Alice Tester.
    let n = cmsutil_decode(&db, &sig_file, Some(&content_file), &[]);
    assert_eq!(n.status.code(), Some(0), "cmsutil verify: {}", report(&n));
    assert!(n.stdout == content, "cmsutil verify printed other content");
    let h = cmsutil_decode(&db, &sig_file, Some(&content_file), &["-h", "0"]);
    assert!(
        String::from_utf8_lossy(&h.stdout)
            .contains("signer0.id=\"Alice Tester\"; signer0.status=GoodSignature;"),
        "cmsutil -h 0: {}",
        report(&h)
    );

    // Negative: one byte of the signed content changed.
    let bad = token.write("signed-altered.txt", &altered(&content));
    let v = gpg.verify(&sig_file, Some(&bad), None);
    assert!(
        v.status.code() != Some(0)
            && String::from_utf8_lossy(&v.stdout).contains(&format!("[GNUPG:] BADSIG {fpr} ")),
        "gpgsm accepted altered content: {}",
        report(&v)
    );
    let n = cmsutil_decode(&db, &sig_file, Some(&bad), &[]);
    assert!(
        n.status.code() != Some(0)
            && String::from_utf8_lossy(&n.stderr).contains("signer 0 status = DigestMismatch"),
        "cmsutil accepted altered content: {}",
        report(&n)
    );
    gpg.stop();
}
