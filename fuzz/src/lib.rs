//! The bodies of the fuzz targets: one function per target, each feeding arbitrary bytes to the
//! parsers that read untrusted input and checking the few properties that must hold whatever
//! the input (no panic; DER and PEM round trips).
//!
//! This file is the only copy of that logic. The `fuzz_targets/*.rs` binaries call it through
//! this crate (`p11smime_fuzz`); `tests/fuzz_regressions.rs` at the repository root includes it
//! as a module (`#[path]`) and replays the seed corpora and every crash reproducer through it
//! on stable Rust. It must therefore use nothing but `p11smime` and crates that are
//! dependencies of the root crate too (`serde_json`, `x509-cert`).

use p11smime::certinfo;
use p11smime::cms::ber::{Element, Reader};
use p11smime::cms::envelope::Envelope;
use p11smime::cms::kari;
use p11smime::cms::recipient::{self, KeyWrap};
use p11smime::keyops::KeyCertificate;
use p11smime::mailbox;
use p11smime::mime::detect::{self, InputForm};
use p11smime::mime::{canon, compose, entity};
use p11smime::pin::NoCallbacks;
use p11smime::smime;
use p11smime::token::LoginOptions;
use p11smime::trust::TrustStore;
use std::sync::OnceLock;
use x509_cert::Certificate;

/// A fixed "now" (2024-01-01), so that a run does not depend on the clock.
const NOW: u64 = 1_704_067_200;

/// Elements visited per input by [`ber`]'s walk, so that the harness itself stays linear.
const WALK_BUDGET: usize = 20_000;

/// The test CA (the only trust anchor) and the certificates recipients are matched against.
struct Fixtures {
    trust: TrustStore,
    certs: Vec<Certificate>,
}

fn fixtures() -> &'static Fixtures {
    static FIXTURES: OnceLock<Fixtures> = OnceLock::new();
    FIXTURES.get_or_init(|| {
        let pems: [&[u8]; 5] = [
            include_bytes!("../../softhsm-fixtures/alice-enc.pem"),
            include_bytes!("../../softhsm-fixtures/alice-sign.pem"),
            include_bytes!("../../softhsm-fixtures/alice-ec.pem"),
            include_bytes!("../../softhsm-fixtures/bob-enc.pem"),
            include_bytes!("../../softhsm-fixtures/ca.pem"),
        ];
        let certs: Vec<Certificate> = pems
            .iter()
            .flat_map(|p| certinfo::load_certificates(p).unwrap_or_default())
            .collect();
        let mut trust = TrustStore::default();
        for ca in certinfo::load_certificates(pems[4]).unwrap_or_default() {
            let _ = trust.add(&ca);
        }
        Fixtures { trust, certs }
    })
}

/// `ber`: the BER reader over a whole tree: every element, its chunks, its DER form. The DER
/// form must read back as one element and re-encode to itself.
pub fn ber(data: &[u8]) {
    let mut reader = Reader::new(data);
    let _ = reader.peek_tag();
    let mut budget = WALK_BUDGET;
    for element in reader.by_ref() {
        match element {
            Ok(e) => walk(&e, 0, &mut budget),
            Err(_) => break,
        }
    }
    assert!(reader.is_empty());
    let _ = reader.remaining();
}

fn walk(e: &Element<'_>, depth: usize, budget: &mut usize) {
    if *budget == 0 || depth > 64 {
        return;
    }
    *budget -= 1;
    let _ = e.tag.is_universal(4);
    if let Ok(der) = e.to_der() {
        let mut again = Reader::new(&der);
        let reread = again.read("the DER form");
        assert!(reread.is_ok(), "to_der output does not read back");
        assert!(again.is_empty(), "to_der output has trailing bytes");
        if let Ok(reread) = reread {
            assert_eq!(
                reread.to_der().ok().as_deref(),
                Some(&der[..]),
                "DER not stable"
            );
        }
    }
    for chunk in e.octet_chunks() {
        if chunk.is_err() {
            break;
        }
    }
    let _ = e.octets();
    if let Ok(children) = e.children() {
        for child in children {
            match child {
                Ok(c) => walk(&c, depth + 1, budget),
                Err(_) => break,
            }
        }
    }
}

/// `envelope`: CMS found in any form, EnvelopedData/AuthEnvelopedData parsed, every recipient
/// described and matched; for key agreement the KDF and AES unwrap run on the message's
/// parameters, and the content is decrypted with a made-up key (it must fail cleanly).
pub fn envelope(data: &[u8]) {
    let Ok(found) = detect::find_cms(data) else {
        return;
    };
    let Ok(env) = Envelope::parse(&found.cms) else {
        return;
    };
    let fx = fixtures();
    for r in &env.recipients {
        let _ = r.describe();
        for cert in &fx.certs {
            let _ = r.matches(cert);
        }
        if let KeyWrap::Ecdh(agreement) = &r.wrap
            && let Ok(kek) = kari::derive_kek(agreement, &[0x5a; 32])
        {
            let _ = kari::aes_unwrap(&kek, &r.encrypted_key);
        }
    }
    let _ = (env.cipher.name(), env.cipher.weakness());
    let key = vec![0x11; env.cipher.key_len()];
    let _ = env.decrypt_content(&key, &mut std::io::sink());
}

/// `signed`: signed input in any form (multipart/signed, opaque signed-data, bare `.p7s`)
/// verified against the test CA: SignedData parsing, certificate lookup, digest and signature
/// checks, path building; a detached signature is checked against made-up content. Then the
/// same through `verify_stream`, as the CLI reads it (binary CMS streamed).
pub fn signed(data: &[u8]) {
    let trust = &fixtures().trust;
    let outcome = match smime::verify(data, None, trust) {
        Err(p11smime::Error::Usage(_)) => smime::verify(data, Some(b"content\r\n"), trust),
        other => other,
    };
    if let Ok(outcome) = outcome {
        let _ = outcome.ensure_good();
        let _ = serde_json::to_string(&outcome);
    }
    let stream = |content: Option<&mut dyn std::io::Read>| {
        let mut input = data;
        smime::verify_stream(&mut input, content, trust, &mut std::io::sink())
    };
    let outcome = match stream(None) {
        Err(p11smime::Error::Usage(_)) => stream(Some(&mut &b"content\r\n"[..])),
        other => other,
    };
    if let Ok(outcome) = outcome {
        let _ = outcome.ensure_good();
    }
}

/// `mime`: arbitrary mail bytes through every reader of mail: layer detection, the CMS and
/// signed-part finders, the raw entity parser and what is built from it, mbox splitting.
pub fn mime(data: &[u8]) {
    let _ = detect::layer(data);
    let _ = detect::has_encrypted_part(data);
    let _ = detect::find_cms(data);
    let _ = detect::find_signed(data);
    let parsed = entity::parse(data);
    for h in &parsed.headers {
        let value = h.value();
        let _ = (entity::mime_type(&value), entity::param(&value, "boundary"));
        let _ = h.is_content();
    }
    let _ = parsed.header("Content-Type");
    let _ = parsed.to_bytes();
    let _ = canon::transport_safe(parsed).to_bytes();
    let (outer, inner) = compose::split_message(data);
    let _ = compose::readable_message(&outer, &inner.to_bytes());
    for m in mailbox::split_mbox(data) {
        let _ = mailbox::mbox_entry(&m.from_line, &m.message);
    }
    let _ = canon::to_crlf(data);
}

/// `pem_sniff`: how the input form is recognised (DER, PEM, bare base64, mail), and that what
/// we write as PEM and as base64 lines reads back as the same DER.
pub fn pem_sniff(data: &[u8]) {
    if let Ok(found) = detect::find_cms(data) {
        match found.form {
            InputForm::Der => assert_eq!(&*found.cms, data),
            InputForm::Pem | InputForm::Base64 => assert_eq!(found.cms.first(), Some(&0x30)),
            InputForm::Mime => {}
        }
    }
    let mut der = vec![0x30];
    der.extend_from_slice(data);
    let pem = compose::pem(&der);
    let found = detect::find_cms(&pem);
    assert!(
        found
            .as_ref()
            .is_ok_and(|f| f.form == InputForm::Pem && *f.cms == der[..]),
        "our own PEM does not read back"
    );
    let lines = canon::base64_lines(&der);
    let found = detect::find_cms(&lines);
    assert!(
        found
            .as_ref()
            .is_ok_and(|f| f.form == InputForm::Base64 && *f.cms == der[..]),
        "our own base64 does not read back"
    );
    let _ = p11smime::revocation::pem_to_der(data);
    // The same forms read as a stream (`mime::stream`), through small odd-sized buffers: never
    // a panic, and our own PEM reads back.
    let _ = stream_read(data, 1 + data.len() % 97);
    assert_eq!(
        stream_read(&pem, 1 + data.len() % 13).and_then(Result::ok),
        Some(der),
        "our own PEM does not read back as a stream"
    );
}

/// What `mime::stream` reads from `data` when it streams it (`None`: it hands it back whole).
fn stream_read(data: &[u8], buffer: usize) -> Option<std::io::Result<Vec<u8>>> {
    use p11smime::mime::stream::{self, Opened};
    use std::io::Read;
    let input = std::io::BufReader::with_capacity(buffer, std::io::Cursor::new(data.to_vec()));
    match stream::open(Box::new(input)) {
        Ok(Opened::Stream { mut reader, .. }) => {
            let mut out = Vec::new();
            Some(reader.read_to_end(&mut out).map(|_| out))
        }
        _ => None,
    }
}

/// `certs`: certificate files (PEM bundle, DER, `.p7b` in DER or PEM) loaded and described as
/// `certs`/`--json` describe them, and their path checked against the test CA.
pub fn certs(data: &[u8]) {
    let Ok(certs) = certinfo::load_certificates(data) else {
        return;
    };
    for cert in certs.iter().take(16) {
        let kc = KeyCertificate {
            certificate: cert.clone(),
            der: Vec::new(),
            id: vec![0x01],
            label: "fuzz".into(),
            has_private_key: None,
            key_label: None,
        };
        let _ = serde_json::to_string(&certinfo::summarize(&kc, NOW));
        let _ = certinfo::is_expired(cert, NOW);
        let _ = (
            certinfo::is_signing_cert(cert),
            certinfo::is_encryption_cert(cert),
            certinfo::is_ca(cert),
        );
        let _ = recipient::subject_key_id(cert);
        let _ = p11smime::revocation::distribution_points(cert);
    }
    if let Some((leaf, rest)) = certs.split_first() {
        let _ = fixtures().trust.check_path(leaf, rest, NOW);
    }
}

/// `inspect`: `p11smime inspect` without a module (no token): every layer described.
pub fn inspect(data: &[u8]) {
    let login = LoginOptions {
        pin: None,
        force_final_try: false,
        callbacks: &NoCallbacks,
    };
    if let Ok(layers) = smime::inspect(data, None, None, login, &fixtures().trust) {
        let _ = serde_json::to_string(&layers);
    }
}

/// `stream`: the streaming envelope reader (`cms::stream`) over arbitrary bytes handed out a
/// few at a time, as a pipe would, with the content through CBC or GCM under a made-up key.
pub fn stream(data: &[u8]) {
    use p11smime::cms::content::{CbcStream, ContentCipher};
    use p11smime::cms::gcm::GcmStream;
    use p11smime::cms::stream::EnvelopeStream;
    struct Trickle<'a>(&'a [u8]);
    impl std::io::Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            let n = self.0.len().min(buf.len()).min(1 + self.0.len() % 61);
            buf[..n].copy_from_slice(&self.0[..n]);
            self.0 = &self.0[n..];
            Ok(n)
        }
    }
    let mut input = Trickle(data);
    let Ok(envelope) = EnvelopeStream::open(&mut input) else {
        return;
    };
    for r in &envelope.recipients {
        let _ = r.describe();
    }
    let key = vec![0x42u8; envelope.cipher.key_len().max(1)];
    match envelope.cipher.clone() {
        ContentCipher::AesGcm { nonce, tag_len, .. } => {
            let Ok(mut gcm) = GcmStream::new(&key, &nonce, tag_len) else {
                return;
            };
            if let Ok(trailer) = envelope.read_content(&mut |piece| {
                gcm.decrypt(piece);
                Ok(())
            }) {
                let _ = gcm.finish(&trailer.auth_attrs, &trailer.mac);
            }
        }
        cipher => {
            let Ok(mut cbc) = CbcStream::new(&cipher, &key) else {
                return;
            };
            let mut sink = std::io::sink();
            if envelope
                .read_content(&mut |piece| cbc.update(piece, &mut sink))
                .is_ok()
            {
                let _ = cbc.finish(&mut sink);
            }
        }
    }
}

/// `agent_protocol`: what the session agent reads from a connection (frames one after another)
/// and every request and answer it can hold; a frame that was read writes back to one that
/// reads the same.
pub fn agent_protocol(data: &[u8]) {
    use p11smime::agent::protocol::{self, Frame, SignRequest};
    let mut rest = data;
    while let Ok(frame) = Frame::read_from(&mut rest) {
        let _ = protocol::read_decrypt_key(&frame);
        let _ = SignRequest::read(&frame);
        if let Ok(refusal) = protocol::read_refusal(&frame) {
            let _ = protocol::error_for_refusal(refusal);
        }
        let mut again = Vec::new();
        if frame.write_to(&mut again).is_ok() {
            let back = Frame::read_from(&mut again.as_slice()).map(|f| (f.kind, f.fields));
            assert!(
                back.is_ok_and(|(kind, fields)| kind == frame.kind && fields == frame.fields),
                "a frame does not survive its own encoding"
            );
        }
    }
}

/// A target body.
pub type Target = fn(&[u8]);

/// Every target by its name, for the regression test.
pub const TARGETS: &[(&str, Target)] = &[
    ("ber", ber),
    ("envelope", envelope),
    ("signed", signed),
    ("mime", mime),
    ("pem_sniff", pem_sniff),
    ("certs", certs),
    ("inspect", inspect),
    ("stream", stream),
    ("agent_protocol", agent_protocol),
];
