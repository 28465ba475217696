//! Micro-benchmarks of the parts of `decrypt` that scale with the message: the BER reader, the
//! envelope parser, the content ciphers, and the whole library path with a software RSA key.
//! `scripts/bench` measures the command itself against openssl; this is where to look when its
//! numbers move.
//!
//! ```sh
//! cargo bench --bench parsers_ciphers            # 16 MiB messages
//! P11SMIME_BENCH_MIB=64 cargo bench --bench parsers_ciphers -- cbc
//! ```
//!
//! `cargo test --all-targets` runs each benchmark once on 1 MiB messages, as a test.
//!
//! The messages are made in memory at start-up, to the TEST ONLY fixture `alice-enc`:
//! DER EnvelopedData (AES-256-CBC) and AuthEnvelopedData (AES-256-GCM) by p11smime's own
//! encoder, and a BER copy of the CBC one with indefinite lengths and the content in 1 KiB
//! OCTET STRING chunks, the way `openssl cms -encrypt -stream` and Thunderbird write it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use p11smime::Error;
use p11smime::cms::ber::{Reader, Tag};
use p11smime::cms::content::{self, ContentCipher};
use p11smime::cms::encrypt::{self, Cipher, KeyTransport};
use p11smime::cms::envelope::Envelope;
use p11smime::keyops::{KeyBackend, KeyCertificate, KeyError, RsaPadding, SignAlg};
use p11smime::smime;
use rsa::pkcs8::DecodePrivateKey;
use rsa::{Pkcs1v15Encrypt, RsaPrivateKey};
use std::hint::black_box;
use std::path::PathBuf;
use std::time::Duration;
use x509_cert::Certificate;
use x509_cert::der::{DecodePem, Encode};
use zeroize::Zeroizing;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("softhsm-fixtures")
        .join(name)
}

/// Message size: `P11SMIME_BENCH_MIB` MiB, 16 by default; 1 when run as a test (`cargo test
/// --all-targets` runs each benchmark once, unoptimised, without `--bench`).
fn size() -> usize {
    let default = if std::env::args().any(|a| a == "--bench") {
        16
    } else {
        1
    };
    let mib: usize = std::env::var("P11SMIME_BENCH_MIB")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default);
    mib.max(1) << 20
}

/// Deterministic bytes covering every value, from a xorshift (random data, like an attachment).
fn varied_bytes(len: usize) -> Vec<u8> {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// The fixture's certificate and private key, as the software backend holds them.
struct SoftKey {
    cert: KeyCertificate,
    key: RsaPrivateKey,
}

impl SoftKey {
    fn load() -> Self {
        let pem = std::fs::read_to_string(fixture("alice-enc.pem")).unwrap();
        let certificate = Certificate::from_pem(pem.as_bytes()).unwrap();
        let key_pem = std::fs::read_to_string(fixture("alice-enc.key.pem")).unwrap();
        SoftKey {
            cert: KeyCertificate {
                der: certificate.to_der().unwrap(),
                certificate,
                id: vec![2],
                label: "alice-enc".into(),
                has_private_key: Some(true),
                key_label: None,
            },
            key: RsaPrivateKey::from_pkcs8_pem(&key_pem).unwrap(),
        }
    }
}

impl KeyBackend for SoftKey {
    fn certificates(&mut self) -> Result<Vec<KeyCertificate>, Error> {
        Ok(vec![self.cert.clone()])
    }

    fn rsa_decrypt(
        &mut self,
        _key_id: &[u8],
        padding: &RsaPadding,
        ciphertext: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, KeyError> {
        match padding {
            RsaPadding::Pkcs1v15 => self
                .key
                .decrypt(Pkcs1v15Encrypt, ciphertext)
                .map(Zeroizing::new)
                .map_err(|_| KeyError::Failed),
            _ => Err(KeyError::Unsupported("OAEP".into())),
        }
    }

    fn rsa_raw(&mut self, _key_id: &[u8], _input: &[u8]) -> Result<Zeroizing<Vec<u8>>, KeyError> {
        Err(KeyError::Unsupported("raw RSA".into()))
    }

    fn sign(&mut self, _key_id: &[u8], _alg: SignAlg, _tbs: &[u8]) -> Result<Vec<u8>, KeyError> {
        Err(KeyError::Unsupported("signing".into()))
    }
}

/// A BER length (definite).
fn push_len(out: &mut Vec<u8>, len: usize) {
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().take_while(|b| **b == 0).count();
        out.push(0x80 | (bytes.len() - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
}

/// The DER EnvelopedData `der` re-encoded as streaming BER: every SEQUENCE on the way to the
/// content with an indefinite length, the content as a constructed [0] of `chunk`-byte OCTET
/// STRINGs.
fn to_streaming_ber(der: &[u8], chunk: usize) -> Vec<u8> {
    let ci = Reader::new(der).read("ContentInfo").unwrap();
    let mut ci_fields = ci.children().unwrap();
    let oid = ci_fields.read("oid").unwrap();
    let explicit = ci_fields.read("[0]").unwrap();
    let ed = explicit.children().unwrap().read("EnvelopedData").unwrap();
    let mut ed_fields = ed.children().unwrap();
    let version = ed_fields.read("version").unwrap();
    let recipients = ed_fields.read("recipientInfos").unwrap();
    let eci = ed_fields.read("EncryptedContentInfo").unwrap();
    assert!(
        ed_fields.next().is_none(),
        "unexpected fields after the content"
    );
    let mut eci_fields = eci.children().unwrap();
    let content_type = eci_fields.read("contentType").unwrap();
    let alg = eci_fields.read("algorithm").unwrap();
    let content = eci_fields
        .read("encryptedContent")
        .unwrap()
        .octets()
        .unwrap();

    let mut out = Vec::with_capacity(der.len() + der.len() / chunk * 4 + 64);
    out.extend_from_slice(&[0x30, 0x80]);
    out.extend_from_slice(oid.raw);
    out.extend_from_slice(&[0xA0, 0x80, 0x30, 0x80]);
    out.extend_from_slice(version.raw);
    out.extend_from_slice(recipients.raw);
    out.extend_from_slice(&[0x30, 0x80]);
    out.extend_from_slice(content_type.raw);
    out.extend_from_slice(alg.raw);
    out.extend_from_slice(&[0xA0, 0x80]);
    for piece in content.chunks(chunk) {
        out.push(0x04);
        push_len(&mut out, piece.len());
        out.extend_from_slice(piece);
    }
    // End-of-contents for [0] content, EncryptedContentInfo, EnvelopedData, [0], ContentInfo.
    out.extend_from_slice(&[0; 10]);
    out
}

struct Inputs {
    plain_len: usize,
    cbc_der: Vec<u8>,
    cbc_ber: Vec<u8>,
    gcm_der: Vec<u8>,
    cbc_cek: Zeroizing<Vec<u8>>,
    gcm_cek: Zeroizing<Vec<u8>>,
}

fn cek_of(message: &[u8], key: &RsaPrivateKey) -> Zeroizing<Vec<u8>> {
    let env = Envelope::parse(message).unwrap();
    Zeroizing::new(
        key.decrypt(Pkcs1v15Encrypt, &env.recipients[0].encrypted_key)
            .unwrap(),
    )
}

fn inputs(key: &SoftKey) -> Inputs {
    let plain = varied_bytes(size());
    let cert = key.cert.certificate.clone();
    let cbc_der = encrypt::encrypt(
        &plain,
        std::slice::from_ref(&cert),
        Cipher::Aes256Cbc,
        KeyTransport::Pkcs1v15,
    )
    .unwrap();
    let gcm_der =
        encrypt::encrypt(&plain, &[cert], Cipher::Aes256Gcm, KeyTransport::Pkcs1v15).unwrap();
    let cbc_ber = to_streaming_ber(&cbc_der, 1024);
    Inputs {
        plain_len: plain.len(),
        cbc_cek: cek_of(&cbc_der, &key.key),
        gcm_cek: cek_of(&gcm_der, &key.key),
        cbc_der,
        cbc_ber,
        gcm_der,
    }
}

/// Walks every element of a BER tree and every chunk of its strings: the reader alone.
fn walk(reader: Reader<'_>) -> usize {
    let mut n = 0;
    for e in reader {
        let e = e.unwrap();
        n += 1;
        if e.tag.constructed && !e.tag.is_universal(Tag::OCTET_STRING) {
            n += walk(e.children().unwrap());
        } else {
            for chunk in e.octet_chunks() {
                n += black_box(chunk.unwrap()).len() & 1;
            }
        }
    }
    n
}

fn benches(c: &mut Criterion) {
    let mut key = SoftKey::load();
    let inp = inputs(&key);
    let mib = inp.plain_len >> 20;

    let mut g = c.benchmark_group(format!("parse_{mib}MiB"));
    g.sample_size(10).measurement_time(Duration::from_secs(3));
    for (name, msg) in [("der", &inp.cbc_der), ("ber_1k_chunks", &inp.cbc_ber)] {
        g.throughput(Throughput::Bytes(msg.len() as u64));
        g.bench_function(format!("ber_reader_walk/{name}"), |b| {
            b.iter(|| walk(Reader::new(black_box(msg))))
        });
        g.bench_function(format!("envelope_parse/{name}"), |b| {
            b.iter(|| Envelope::parse(black_box(msg)).unwrap().recipients.len())
        });
    }
    g.finish();

    let mut g = c.benchmark_group(format!("cipher_{mib}MiB"));
    g.sample_size(10).measurement_time(Duration::from_secs(4));
    g.throughput(Throughput::Bytes(inp.plain_len as u64));
    // The bare ciphers over one buffer, output discarded.
    let cbc_env = Envelope::parse(&inp.cbc_der).unwrap();
    let ContentCipher::AesCbc { .. } = cbc_env.cipher else {
        panic!("expected AES-CBC");
    };
    let cbc_ct = {
        let ci = Reader::new(&inp.cbc_der).read("ci").unwrap();
        let mut f = ci.children().unwrap();
        f.read("oid").unwrap();
        let ed = f
            .read("[0]")
            .unwrap()
            .children()
            .unwrap()
            .read("ed")
            .unwrap();
        let mut f = ed.children().unwrap();
        f.read("version").unwrap();
        f.read("recipients").unwrap();
        let mut f = f.read("eci").unwrap().children().unwrap();
        f.read("type").unwrap();
        f.read("alg").unwrap();
        f.read("content").unwrap().octets().unwrap()
    };
    g.bench_function("aes256_cbc/decrypt_cbc", |b| {
        b.iter(|| {
            content::decrypt_cbc(
                &cbc_env.cipher,
                &inp.cbc_cek,
                std::iter::once(Ok(cbc_ct.as_slice())),
                &mut std::io::sink(),
            )
            .unwrap()
        })
    });
    for (name, msg) in [("der", &inp.cbc_der), ("ber_1k_chunks", &inp.cbc_ber)] {
        g.bench_function(format!("aes256_cbc/envelope_decrypt_content/{name}"), |b| {
            let env = Envelope::parse(msg).unwrap();
            b.iter(|| {
                env.decrypt_content(&inp.cbc_cek, &mut std::io::sink())
                    .unwrap()
            })
        });
    }
    g.bench_function("aes256_gcm/envelope_decrypt_content/der", |b| {
        let env = Envelope::parse(&inp.gcm_der).unwrap();
        b.iter(|| {
            env.decrypt_content(&inp.gcm_cek, &mut std::io::sink())
                .unwrap()
        })
    });
    g.finish();

    // The whole library path (detection, parse, RSA in software, content) into memory.
    let mut g = c.benchmark_group(format!("decrypt_with_backend_{mib}MiB"));
    g.sample_size(10).measurement_time(Duration::from_secs(4));
    g.throughput(Throughput::Bytes(inp.plain_len as u64));
    for (name, msg) in [
        ("aes256_cbc_der", &inp.cbc_der),
        ("aes256_cbc_ber", &inp.cbc_ber),
        ("aes256_gcm_der", &inp.gcm_der),
    ] {
        g.bench_function(name, |b| {
            let mut out = Vec::with_capacity(inp.plain_len + 64);
            b.iter(|| {
                out.clear();
                smime::decrypt_with_backend(black_box(msg), &mut key, &mut out).unwrap();
                out.len()
            })
        });
    }
    g.finish();
}

criterion_group!(parsers_ciphers, benches);
criterion_main!(parsers_ciphers);
