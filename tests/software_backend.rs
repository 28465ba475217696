//! The CMS logic through the `KeyBackend` seam with software RSA keys, no token: messages built
//! in Rust with the `cms` builder and by openssl, the raw-RSA OAEP fallback, and the promise
//! that no private-key operation happens for a message that is not ours.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use common::*;

use cms::builder::{
    ContentEncryptionAlgorithm, EnvelopedDataBuilder, KeyEncryptionInfo,
    KeyTransRecipientInfoBuilder,
};
use cms::cert::IssuerAndSerialNumber;
use cms::content_info::ContentInfo;
use cms::enveloped_data::RecipientIdentifier;
use der::{DecodePem, Encode};
use p11smime::keyops::{HashAlg, KeyBackend, KeyCertificate, KeyError, RsaPadding, SignAlg};
use p11smime::{Error, smime};
use rsa::pkcs8::DecodePrivateKey;
use rsa::traits::{PrivateKeyParts, PublicKeyParts};
use rsa::{BigUint, Pkcs1v15Encrypt, RsaPrivateKey};
use x509_cert::Certificate;
use zeroize::Zeroizing;

/// Software keys that behave like SoftHSM2: PKCS#1 v1.5 and raw RSA, no OAEP.
struct SoftKeys {
    keys: Vec<(KeyCertificate, RsaPrivateKey)>,
    operations: usize,
}

impl SoftKeys {
    fn load(names: &[(&str, u8)]) -> Self {
        let keys = names
            .iter()
            .map(|(name, id)| {
                let pem = std::fs::read_to_string(fixture(&format!("{name}.pem"))).unwrap();
                let certificate = Certificate::from_pem(pem.as_bytes()).unwrap();
                let key_pem = std::fs::read_to_string(fixture(&format!("{name}.key.pem"))).unwrap();
                let key = RsaPrivateKey::from_pkcs8_pem(&key_pem).unwrap();
                let kc = KeyCertificate {
                    der: certificate.to_der().unwrap(),
                    certificate,
                    id: vec![*id],
                    label: name.to_string(),
                    has_private_key: Some(true),
                    key_label: None,
                };
                (kc, key)
            })
            .collect();
        SoftKeys {
            keys,
            operations: 0,
        }
    }

    fn key(&mut self, id: &[u8]) -> Result<&RsaPrivateKey, KeyError> {
        self.operations += 1;
        self.keys
            .iter()
            .find(|(c, _)| c.id == id)
            .map(|(_, k)| k)
            .ok_or(KeyError::Failed)
    }
}

impl KeyBackend for SoftKeys {
    fn certificates(&mut self) -> Result<Vec<KeyCertificate>, Error> {
        Ok(self.keys.iter().map(|(c, _)| c.clone()).collect())
    }

    fn rsa_decrypt(
        &mut self,
        key_id: &[u8],
        padding: &RsaPadding,
        ciphertext: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, KeyError> {
        match padding {
            RsaPadding::Pkcs1v15 => self
                .key(key_id)?
                .decrypt(Pkcs1v15Encrypt, ciphertext)
                .map(Zeroizing::new)
                .map_err(|_| KeyError::Failed),
            RsaPadding::Oaep { .. } => Err(KeyError::Unsupported("OAEP".into())),
        }
    }

    fn sign(&mut self, key_id: &[u8], alg: SignAlg, tbs: &[u8]) -> Result<Vec<u8>, KeyError> {
        let SignAlg::RsaPkcs1v15(HashAlg::Sha256) = alg else {
            return Err(KeyError::Unsupported(format!("{alg:?}")));
        };
        let digest = <sha2::Sha256 as sha2::Digest>::digest(tbs);
        self.key(key_id)?
            .sign(rsa::Pkcs1v15Sign::new::<sha2::Sha256>(), &digest)
            .map_err(|_| KeyError::Failed)
    }

    fn rsa_raw(&mut self, key_id: &[u8], input: &[u8]) -> Result<Zeroizing<Vec<u8>>, KeyError> {
        let key = self.key(key_id)?;
        let m = BigUint::from_bytes_be(input).modpow(key.d(), key.n());
        let bytes = m.to_bytes_be();
        let mut out = vec![0u8; key.size() - bytes.len()];
        out.extend_from_slice(&bytes);
        Ok(Zeroizing::new(out))
    }
}

fn built_in_rust(recipient: &str, content: &[u8]) -> Vec<u8> {
    let pem = std::fs::read_to_string(fixture(&format!("{recipient}.pem"))).unwrap();
    let cert = Certificate::from_pem(pem.as_bytes()).unwrap();
    let spki_der = cert
        .tbs_certificate
        .subject_public_key_info
        .to_der()
        .unwrap();
    let public =
        <rsa::RsaPublicKey as rsa::pkcs8::DecodePublicKey>::from_public_key_der(&spki_der).unwrap();
    let rid = RecipientIdentifier::IssuerAndSerialNumber(IssuerAndSerialNumber {
        issuer: cert.tbs_certificate.issuer.clone(),
        serial_number: cert.tbs_certificate.serial_number.clone(),
    });
    let mut rng = rand::thread_rng();
    let mut rng2 = rand::thread_rng();
    let ktri =
        KeyTransRecipientInfoBuilder::new(rid, KeyEncryptionInfo::Rsa(public), &mut rng).unwrap();
    let mut builder =
        EnvelopedDataBuilder::new(None, content, ContentEncryptionAlgorithm::Aes256Cbc, None)
            .unwrap();
    builder.add_recipient_info(ktri).unwrap();
    let ed = builder.build_with_rng(&mut rng2).unwrap();
    ContentInfo {
        content_type: const_oid::db::rfc5911::ID_ENVELOPED_DATA,
        content: der::Any::encode_from(&ed).unwrap(),
    }
    .to_der()
    .unwrap()
}

#[test]
fn rust_built_message_decrypts_through_the_seam() {
    let mut keys = SoftKeys::load(&[("alice-retired", 3), ("alice-enc", 2)]);
    let msg = built_in_rust("alice-enc", SAMPLE);
    let mut out = Vec::new();
    let outcome = smime::decrypt_with_backend(&msg, &mut keys, &mut out).unwrap();
    assert_eq!(out, SAMPLE);
    assert_eq!(outcome.report.key_id, "02");
    assert_eq!(outcome.report.cipher, "AES-256-CBC");
}

#[test]
fn oaep_sha256_uses_the_raw_rsa_fallback() {
    let mut keys = SoftKeys::load(&[("alice-enc", 2)]);
    let dir = tempfile::tempdir().unwrap();
    let enc = fixture("alice-enc.pem");
    for md in ["sha1", "sha256", "sha512"] {
        let md_opt = format!("rsa_oaep_md:{md}");
        let msg = openssl_encrypt(
            dir.path(),
            SAMPLE,
            &[
                "-aes128",
                "-recip",
                path_str(&enc),
                "-keyopt",
                "rsa_padding_mode:oaep",
                "-keyopt",
                &md_opt,
                "-outform",
                "DER",
            ],
            &[],
        );
        let mut out = Vec::new();
        smime::decrypt_with_backend(&std::fs::read(&msg).unwrap(), &mut keys, &mut out).unwrap();
        assert_eq!(out, SAMPLE, "OAEP {md}");
    }
}

#[test]
fn a_message_for_someone_else_runs_no_key_operation() {
    let mut keys = SoftKeys::load(&[("alice-enc", 2)]);
    let msg = built_in_rust("bob-enc", b"for bob only");
    let mut out = Vec::new();
    let err = smime::decrypt_with_backend(&msg, &mut keys, &mut out).unwrap_err();
    assert!(matches!(err, Error::NoMatchingRecipient { .. }), "{err}");
    assert_eq!(err.exit_code(), 4);
    assert_eq!(keys.operations, 0);
    assert!(out.is_empty());
}

#[test]
fn the_wrong_key_fails_as_decryption_failed() {
    // The retired certificate claims to be the recipient, but the message was made for the
    // current key: swap the keys behind the certificates.
    let mut keys = SoftKeys::load(&[("alice-enc", 2)]);
    let wrong = RsaPrivateKey::from_pkcs8_pem(
        &std::fs::read_to_string(fixture("alice-retired.key.pem")).unwrap(),
    )
    .unwrap();
    keys.keys[0].1 = wrong;
    let msg = built_in_rust("alice-enc", SAMPLE);
    let mut out = Vec::new();
    let err = smime::decrypt_with_backend(&msg, &mut keys, &mut out).unwrap_err();
    assert!(matches!(err, Error::DecryptFailed), "{err}");
}

#[test]
fn signing_through_the_seam_verifies_with_openssl() {
    let mut keys = SoftKeys::load(&[("alice-sign", 1), ("alice-enc", 2)]);
    let params = smime::SignParams {
        key: None,
        opaque: false,
        digest: None,
        pss: false,
        chain: &[],
        outform: smime::OutForm::Message,
        as_is: false,
    };
    let mut signed = Vec::new();
    let outcome = smime::sign_with_backend(
        b"From: alice@example.test\nSubject: t\n\nhello\n",
        &mut keys,
        &params,
        &mut signed,
    )
    .unwrap();
    assert_eq!(
        outcome.key_id, "01",
        "the signature key, not the key-management one"
    );
    assert!(outcome.encryption_certificate.is_some());
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("signed.eml");
    std::fs::write(&path, &signed).unwrap();
    let out = run_ok(
        std::process::Command::new("openssl")
            .args(["cms", "-verify", "-CAfile"])
            .arg(fixture("ca.pem"))
            .arg("-in")
            .arg(&path),
    );
    assert_eq!(
        out.stdout,
        b"Content-Type: text/plain; charset=us-ascii\r\n\r\nhello\r\n"
    );
}
