//! Key-agreement recipients (KeyAgreeRecipientInfo, RFC 5652 §6.2.2) with ephemeral-static
//! ECDH as RFC 5753 specifies it for S/MIME: reading the parameters, and turning the raw shared
//! secret into the content-encryption key.
//!
//! The sender makes a fresh EC key pair and puts its public point in the message
//! (`originatorKey`). The only private-key step is ECDH between that point and our key, which
//! runs wherever the key lives, through [`KeyBackend::ecdh`], and gives back the raw shared
//! secret Z (the x-coordinate). Everything after it is here, in software:
//!
//! 1. the ANSI X9.63 KDF (SEC 1 §3.6.1) with the digest the scheme names, over Z and the DER of
//!    ECC-CMS-SharedInfo (RFC 5753 §7.2), gives the key-encryption key;
//! 2. AES key unwrap (RFC 3394, the `aes-kw` crate) of the recipient's encryptedKey with it gives
//!    the content-encryption key.
//!
//! The KDF is written here (a dozen lines) because no maintained crate of the digest 0.10
//! generation this crate uses provides it: RustCrypto's `ansi-x963-kdf` exists only on digest
//! 0.11 pre-releases (0.0.1 pins `digest = "=0.11.0-pre.9"`), which would pull a second copy of
//! the hash stack; `concat-kdf` is NIST SP 800-56A's KDF, whose counter comes before Z, not
//! after it. The token's own KDFs (`CKD_SHA*_KDF` with the SharedInfo as shared data) would do
//! the same hashing, but many modules refuse them (SoftHSM2 does); `CKD_NULL`, the raw secret,
//! is the form modules agree on.
//!
//! Before the point goes to the token it is checked to lie on the curve of our certificate (P-256,
//! P-384, P-521) and passed uncompressed: a key that may be used over and over (static ECDH) must
//! never be fed points from another curve (the invalid-curve attack), whatever the token checks.
//! The cofactor schemes are accepted as the standard ones: the NIST prime curves have cofactor 1.
//!
//! The info itself is decoded with types of our own: `cms` 0.2.3's `KeyAgreeRecipientIdentifier`
//! expects `rKeyId [0] IMPLICIT RecipientKeyIdentifier` in primitive form, so it rejects every
//! recipient named by subject key identifier (`openssl cms -keyid`): RustCrypto/formats#1350,
//! fixed only in the 0.3 pre-releases. Ours differ from `cms`'s only there.

use crate::cms::oids;
use crate::cms::recipient::{self, KeyWrap, Recipient, RecipientId};
use crate::error::{Error, Result};
use crate::keyops::{HashAlg, KeyBackend, KeyCertificate};
use cms::cert::IssuerAndSerialNumber;
use cms::enveloped_data::{OriginatorIdentifierOrKey, RecipientKeyIdentifier};
use const_oid::ObjectIdentifier;
use der::asn1::OctetString;
use der::{Decode, Encode};
use sha2::Digest;
use spki::AlgorithmIdentifierOwned;
use zeroize::{Zeroize, Zeroizing};

/// What a KeyAgreeRecipientInfo says about the agreement, shared by all its recipients.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyAgreement {
    /// The digest of the X9.63 KDF.
    pub kdf: HashAlg,
    /// A cofactorDH scheme (the same as standard DH on curves with cofactor 1).
    pub cofactor: bool,
    /// The key-wrap AlgorithmIdentifier exactly as the message gives it: it is also the
    /// `keyInfo` of the SharedInfo, so it is hashed as written.
    pub wrap: AlgorithmIdentifierOwned,
    /// Length of the key-encryption key in bytes (16, 24 or 32).
    pub kek_len: usize,
    /// The curve named in the originator key's algorithm parameters, when it names one
    /// (OpenSSL leaves the parameters out).
    pub originator_curve: Option<ObjectIdentifier>,
    /// The sender's ephemeral public point, as an ECPoint (`04 || x || y`, or compressed).
    pub ephemeral_point: Vec<u8>,
    /// User keying material (`ukm`), the SharedInfo's entityUInfo.
    pub ukm: Option<Vec<u8>>,
}

/// KeyAgreeRecipientInfo (RFC 5652 §6.2.2).
#[derive(der::Sequence)]
struct KeyAgreeRecipientInfo {
    version: u8,
    #[asn1(context_specific = "0", tag_mode = "EXPLICIT")]
    originator: OriginatorIdentifierOrKey,
    #[asn1(context_specific = "1", tag_mode = "EXPLICIT", optional = "true")]
    ukm: Option<OctetString>,
    key_enc_alg: AlgorithmIdentifierOwned,
    recipient_enc_keys: Vec<RecipientEncryptedKey>,
}

#[derive(der::Sequence)]
struct RecipientEncryptedKey {
    rid: KeyAgreeRecipientIdentifier,
    enc_key: OctetString,
}

#[derive(der::Choice)]
enum KeyAgreeRecipientIdentifier {
    IssuerAndSerialNumber(IssuerAndSerialNumber),
    #[asn1(context_specific = "0", tag_mode = "IMPLICIT", constructed = "true")]
    RKeyId(RecipientKeyIdentifier),
}

/// The recipients of one KeyAgreeRecipientInfo, given as DER with a SEQUENCE tag (its `[1]`
/// replaced): one per recipient encrypted key, all sharing the agreement parameters. An
/// agreement we cannot do still lists its recipients, marked unsupported, so the user hears
/// that the message is theirs.
pub fn recipients(der: &[u8]) -> Result<Vec<Recipient>> {
    let kari = KeyAgreeRecipientInfo::from_der(der)
        .map_err(|e| Error::BadInput(format!("malformed key-agreement recipient info: {e}")))?;
    let wrap = match KeyAgreement::from_info(&kari) {
        Ok(agreement) => KeyWrap::Ecdh(Box::new(agreement)),
        Err(Error::Unsupported(what)) => KeyWrap::Unsupported(what),
        Err(e) => return Err(e),
    };
    Ok(kari
        .recipient_enc_keys
        .into_iter()
        .map(|rek| Recipient {
            id: Some(recipient_id(rek.rid)),
            wrap: wrap.clone(),
            encrypted_key: rek.enc_key.into_bytes(),
        })
        .collect())
}

impl KeyAgreement {
    /// Reads the agreement parameters. `Err(Error::Unsupported)` for a well-formed agreement we
    /// cannot do (static-static, MQV, another key wrap), `Err(Error::BadInput)` for broken ones.
    fn from_info(kari: &KeyAgreeRecipientInfo) -> Result<Self> {
        let OriginatorIdentifierOrKey::OriginatorKey(originator) = &kari.originator else {
            return Err(Error::Unsupported(
                "key agreement with the sender's certificate (static-static ECDH)".into(),
            ));
        };
        if originator.algorithm.oid != oids::EC_PUBLIC_KEY {
            return Err(Error::Unsupported(format!(
                "key agreement with a {} sender key",
                oids::name(&originator.algorithm.oid)
            )));
        }
        let originator_curve = originator
            .algorithm
            .parameters
            .as_ref()
            .and_then(|p| p.decode_as::<ObjectIdentifier>().ok());
        let ephemeral_point = originator
            .public_key
            .as_bytes()
            .filter(|p| !p.is_empty())
            .ok_or_else(|| bad("the sender's ephemeral EC key is not a whole-byte point"))?
            .to_vec();

        let (kdf, cofactor) = scheme(&kari.key_enc_alg.oid)?;
        let wrap: AlgorithmIdentifierOwned = kari
            .key_enc_alg
            .parameters
            .as_ref()
            .ok_or_else(|| bad("the ECDH scheme names no key-wrap algorithm"))?
            .decode_as()
            .map_err(|_| bad("the ECDH key-wrap algorithm is malformed"))?;
        let kek_len = match wrap.oid {
            o if o == oids::AES128_WRAP => 16,
            o if o == oids::AES192_WRAP => 24,
            o if o == oids::AES256_WRAP => 32,
            o => {
                return Err(Error::Unsupported(format!(
                    "ECDH with the key wrap {}",
                    oids::name(&o)
                )));
            }
        };
        Ok(KeyAgreement {
            kdf,
            cofactor,
            wrap,
            kek_len,
            originator_curve,
            ephemeral_point,
            ukm: kari.ukm.as_ref().map(|u| u.as_bytes().to_vec()),
        })
    }

    /// A short description for messages, e.g. "ECDH, SHA-256 X9.63 KDF, AES-256 key wrap".
    pub fn describe(&self) -> String {
        format!(
            "ECDH{}, {} X9.63 KDF, AES-{} key wrap",
            if self.cofactor { " (cofactor)" } else { "" },
            self.kdf.name(),
            self.kek_len * 8
        )
    }
}

fn bad(what: &str) -> Error {
    Error::BadInput(format!("malformed key agreement: {what}"))
}

/// The KDF digest and cofactor flag of a dhSinglePass scheme.
fn scheme(oid: &ObjectIdentifier) -> Result<(HashAlg, bool)> {
    let table = [
        (oids::ECDH_STD_SHA1KDF, HashAlg::Sha1, false),
        (oids::ECDH_STD_SHA224KDF, HashAlg::Sha224, false),
        (oids::ECDH_STD_SHA256KDF, HashAlg::Sha256, false),
        (oids::ECDH_STD_SHA384KDF, HashAlg::Sha384, false),
        (oids::ECDH_STD_SHA512KDF, HashAlg::Sha512, false),
        (oids::ECDH_COFACTOR_SHA1KDF, HashAlg::Sha1, true),
        (oids::ECDH_COFACTOR_SHA224KDF, HashAlg::Sha224, true),
        (oids::ECDH_COFACTOR_SHA256KDF, HashAlg::Sha256, true),
        (oids::ECDH_COFACTOR_SHA384KDF, HashAlg::Sha384, true),
        (oids::ECDH_COFACTOR_SHA512KDF, HashAlg::Sha512, true),
    ];
    table
        .iter()
        .find(|(o, _, _)| o == oid)
        .map(|(_, h, c)| (*h, *c))
        .ok_or_else(|| Error::Unsupported(format!("key agreement {}", oids::name(oid))))
}

/// The recipient id of one RecipientEncryptedKey, in the form key transport uses, so matching
/// against certificates is the same for both.
fn recipient_id(rid: KeyAgreeRecipientIdentifier) -> RecipientId {
    match rid {
        KeyAgreeRecipientIdentifier::IssuerAndSerialNumber(ias) => RecipientId::IssuerSerial {
            issuer: ias.issuer,
            serial: ias.serial_number.as_bytes().to_vec(),
        },
        KeyAgreeRecipientIdentifier::RKeyId(rkid) => {
            RecipientId::KeyId(rkid.subject_key_identifier.0.as_bytes().to_vec())
        }
    }
}

/// Opens `encrypted_key` with the EC private key behind `key`: ECDH on the backend, then the
/// KDF and AES key unwrap here. Every way the key can fail to open it (another curve, a point
/// not on ours, a failed unwrap) is the same [`Error::DecryptFailed`].
pub fn unwrap_key(
    backend: &mut dyn KeyBackend,
    key: &KeyCertificate,
    agreement: &KeyAgreement,
    encrypted_key: &[u8],
) -> Result<Zeroizing<Vec<u8>>> {
    let spki = &key.certificate.tbs_certificate.subject_public_key_info;
    if spki.algorithm.oid != oids::EC_PUBLIC_KEY {
        // A non-EC key forced onto an ECDH recipient (`--key`): it cannot open it.
        return Err(Error::DecryptFailed);
    }
    let our_curve = spki
        .algorithm
        .parameters
        .as_ref()
        .and_then(|p| p.decode_as::<ObjectIdentifier>().ok());
    if let (Some(theirs), Some(ours)) = (agreement.originator_curve, our_curve)
        && theirs != ours
    {
        return Err(Error::DecryptFailed);
    }
    let point = peer_point(our_curve, &agreement.ephemeral_point)?;
    let z = backend
        .ecdh(&key.id, &point)
        .map_err(recipient::key_error)?;
    let kek = derive_kek(agreement, &z)?;
    aes_unwrap(&kek, encrypted_key)
}

/// The sender's point checked against our curve and re-encoded uncompressed, as PKCS#11 wants
/// it. Curves without a software implementation here go to the token as they are.
fn peer_point(curve: Option<ObjectIdentifier>, point: &[u8]) -> Result<Vec<u8>> {
    use p256::elliptic_curve::sec1::ToEncodedPoint;
    let checked = match curve {
        Some(c) if c == oids::SECP256R1 => p256::PublicKey::from_sec1_bytes(point)
            .map(|k| k.to_encoded_point(false).as_bytes().to_vec()),
        Some(c) if c == oids::SECP384R1 => p384::PublicKey::from_sec1_bytes(point)
            .map(|k| k.to_encoded_point(false).as_bytes().to_vec()),
        Some(c) if c == oids::SECP521R1 => p521::PublicKey::from_sec1_bytes(point)
            .map(|k| k.to_encoded_point(false).as_bytes().to_vec()),
        _ => return Ok(point.to_vec()),
    };
    checked.map_err(|_| Error::DecryptFailed)
}

/// The key-encryption key: X9.63 KDF over Z and the SharedInfo.
pub fn derive_kek(agreement: &KeyAgreement, z: &[u8]) -> Result<Zeroizing<Vec<u8>>> {
    let info = shared_info(&agreement.wrap, agreement.ukm.as_deref(), agreement.kek_len)?;
    let mut kek = Zeroizing::new(vec![0u8; agreement.kek_len]);
    x963_kdf(agreement.kdf, z, &info, &mut kek);
    Ok(kek)
}

/// ECC-CMS-SharedInfo (RFC 5753 §7.2).
#[derive(der::Sequence)]
struct EccCmsSharedInfo {
    key_info: AlgorithmIdentifierOwned,
    #[asn1(context_specific = "0", tag_mode = "EXPLICIT", optional = "true")]
    entity_u_info: Option<OctetString>,
    #[asn1(context_specific = "2", tag_mode = "EXPLICIT")]
    supp_pub_info: OctetString,
}

/// The DER of ECC-CMS-SharedInfo: the key-wrap algorithm as the message names it (OpenSSL and
/// the RFC leave AES-wrap parameters out), the ukm if any, and the KEK length in bits as four
/// big-endian bytes.
pub fn shared_info(
    wrap: &AlgorithmIdentifierOwned,
    ukm: Option<&[u8]>,
    kek_len: usize,
) -> Result<Vec<u8>> {
    let encode_err = |_| bad("cannot encode the ECDH SharedInfo");
    let bits = u32::try_from(kek_len * 8).map_err(|_| bad("key-wrap key too long"))?;
    EccCmsSharedInfo {
        key_info: wrap.clone(),
        entity_u_info: ukm
            .map(|u| OctetString::new(u.to_vec()))
            .transpose()
            .map_err(encode_err)?,
        supp_pub_info: OctetString::new(bits.to_be_bytes().to_vec()).map_err(encode_err)?,
    }
    .to_der()
    .map_err(encode_err)
}

/// The ANSI X9.63 KDF (SEC 1 §3.6.1): `out` is filled with
/// `Hash(Z || counter || SharedInfo)` for counter = 1, 2, ... (32-bit big-endian).
pub fn x963_kdf(hash: HashAlg, z: &[u8], shared_info: &[u8], out: &mut [u8]) {
    fn run<D: Digest>(z: &[u8], shared_info: &[u8], out: &mut [u8]) {
        let mut counter: u32 = 1;
        for chunk in out.chunks_mut(<D as Digest>::output_size()) {
            let mut d = D::new();
            d.update(z);
            d.update(counter.to_be_bytes());
            d.update(shared_info);
            let mut block = d.finalize();
            chunk.copy_from_slice(&block[..chunk.len()]);
            block.as_mut_slice().zeroize();
            counter = counter.wrapping_add(1);
        }
    }
    match hash {
        HashAlg::Sha1 => run::<sha1::Sha1>(z, shared_info, out),
        HashAlg::Sha224 => run::<sha2::Sha224>(z, shared_info, out),
        HashAlg::Sha256 => run::<sha2::Sha256>(z, shared_info, out),
        HashAlg::Sha384 => run::<sha2::Sha384>(z, shared_info, out),
        HashAlg::Sha512 => run::<sha2::Sha512>(z, shared_info, out),
    }
}

/// AES key wrap (RFC 3394) of `cek` under `kek`, for writing key-agreement recipients.
pub fn aes_wrap(kek: &[u8], cek: &[u8]) -> Result<Vec<u8>> {
    let fail = |_| Error::Unsupported("AES key wrap of this key length".into());
    let mut out = vec![0u8; cek.len() + 8];
    match kek.len() {
        16 => aes_kw::KekAes128::try_from(kek).and_then(|k| k.wrap(cek, &mut out)),
        24 => aes_kw::KekAes192::try_from(kek).and_then(|k| k.wrap(cek, &mut out)),
        32 => aes_kw::KekAes256::try_from(kek).and_then(|k| k.wrap(cek, &mut out)),
        _ => return Err(Error::Unsupported("AES key wrap of this key length".into())),
    }
    .map_err(fail)?;
    Ok(out)
}

/// AES key unwrap (RFC 3394) with the integrity check; any failure is [`Error::DecryptFailed`].
pub fn aes_unwrap(kek: &[u8], wrapped: &[u8]) -> Result<Zeroizing<Vec<u8>>> {
    // At least two 64-bit blocks of key, plus the integrity block.
    if wrapped.len() < 24 || !wrapped.len().is_multiple_of(8) {
        return Err(Error::DecryptFailed);
    }
    let mut out = Zeroizing::new(vec![0u8; wrapped.len() - 8]);
    let done = match kek.len() {
        16 => aes_kw::KekAes128::try_from(kek).and_then(|k| k.unwrap(wrapped, &mut out)),
        24 => aes_kw::KekAes192::try_from(kek).and_then(|k| k.unwrap(wrapped, &mut out)),
        32 => aes_kw::KekAes256::try_from(kek).and_then(|k| k.unwrap(wrapped, &mut out)),
        _ => return Err(Error::DecryptFailed),
    };
    done.map_err(|_| Error::DecryptFailed)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cms::envelope::Envelope;
    use crate::keyops::{KeyError, RsaPadding, SignAlg};
    use der::DecodePem;

    /// `openssl cms -encrypt -binary -aes128 -keyid -recip alice-ec.pem -keyopt
    /// ecdh_kdf_md:sha256` of "hello\r\n": rKeyId, dhSinglePass-stdDH-sha256kdf, AES-128 wrap.
    const MESSAGE: &str = "3081fb06092a864886f70d010703a081ed3081ea0201023181a6a181a3020103a051a14f\
        300906072a8648ce3d02010342000427b06893c16311c6c934496ce736b958f9f826521c2ac696e40468833f8f\
        9ca1d3f3547bf28a43c3d9430467475d5590781092a91e8200465cc942d64b194654301506062b8104010b0130\
        0b060960864801650304010530343032a01604143fd05512ce95aeed67bdd48f7801bfeb381e39080418cf8ffb\
        945689f83a3837f4d799c58bb55db74fd9af61dc2a303c06092a864886f70d010701301d060960864801650304\
        010204100977f4138827fd8ede110f771b1f4d0a8010f312184d8c44b70db176ec5934dbfe27";
    /// `openssl pkeyutl -derive -inkey alice-ec.key.pem -peerkey EPHEMERAL` for that message.
    const Z: &str = "cc94d8c63fbc931980817672c37012e56b4ab354057e3215c2feede77eee9657";
    /// `openssl kdf -keylen 16 -kdfopt digest:SHA256 -kdfopt hexkey:Z -kdfopt hexinfo:INFO X963KDF`
    const KEK: &str = "ff38869b1ebf4dfc9cd86fb719ce1b8e";
    /// `openssl enc -d -id-aes128-wrap -K KEK -iv A6A6A6A6A6A6A6A6` of the encryptedKey; it
    /// decrypts the content with `openssl enc -d -aes-128-cbc` to "hello\r\n".
    const CEK: &str = "b949c687d4a2d589cdfab8c58ce9b9d6";

    fn h(s: &str) -> Vec<u8> {
        hex::decode(s).unwrap()
    }

    fn agreement(env: &Envelope<'_>) -> KeyAgreement {
        match &env.recipients[0].wrap {
            KeyWrap::Ecdh(a) => (**a).clone(),
            other => panic!("not ECDH: {other:?}"),
        }
    }

    #[test]
    fn shared_info_der_without_and_with_ukm() {
        let aes128 = AlgorithmIdentifierOwned {
            oid: oids::AES128_WRAP,
            parameters: None,
        };
        assert_eq!(
            hex::encode(shared_info(&aes128, None, 16).unwrap()),
            "3015300b0609608648016503040105a206040400000080"
        );
        let aes256 = AlgorithmIdentifierOwned {
            oid: oids::AES256_WRAP,
            parameters: None,
        };
        assert_eq!(
            hex::encode(shared_info(&aes256, Some(&[1, 2]), 32).unwrap()),
            "301b300b060960864801650304012da00404020102a206040400000100"
        );
    }

    /// Known answers from `openssl kdf -keylen 40 -kdfopt digest:D -kdfopt hexkey:Z
    /// -kdfopt hexinfo:0102 X963KDF`: more than one block for SHA-1/224, part of one for the rest.
    #[test]
    fn x963_kdf_matches_openssl() {
        let cases = [
            (
                HashAlg::Sha1,
                "8b6a6c3ba8422ca6342f083aa9e6931b7c4dffdd2a95cb806d0e246e45164447e41e7bacebe1996f",
            ),
            (
                HashAlg::Sha224,
                "d2a46a1cfbb0559d14a1c81988e624dda7bf6af777e4205abab58face9a92bf6237ba0818d517fd6",
            ),
            (
                HashAlg::Sha384,
                "bb71de238f87aeb26581986beac0e184d68a8d73a29652a77482482330fa2efb2c5ccce52f1f5102",
            ),
            (
                HashAlg::Sha512,
                "c9cb15cd66d92a8fe15ff01376b5e5e65f1878e3da865920c6edf63ccdb400863ea8c2a6bc253c27",
            ),
        ];
        for (hash, expected) in cases {
            let mut out = [0u8; 40];
            x963_kdf(hash, &h(Z), &[1, 2], &mut out);
            assert_eq!(hex::encode(out), expected, "{hash:?}");
        }
    }

    /// RFC 3394 §4.1 (128-bit key with a 128-bit KEK), and a tampered copy.
    #[test]
    fn aes_unwrap_rfc3394_vector() {
        let kek = h("000102030405060708090a0b0c0d0e0f");
        let wrapped = h("1fa68b0a8112b447aef34bd8fb5a7b829d3e862371d2cfe5");
        assert_eq!(
            hex::encode(aes_unwrap(&kek, &wrapped).unwrap()),
            "00112233445566778899aabbccddeeff"
        );
        let mut bad = wrapped.clone();
        bad[10] ^= 1;
        assert!(matches!(aes_unwrap(&kek, &bad), Err(Error::DecryptFailed)));
        assert!(matches!(
            aes_unwrap(&kek, &wrapped[..16]),
            Err(Error::DecryptFailed)
        ));
        assert!(matches!(
            aes_unwrap(&kek[..15], &wrapped),
            Err(Error::DecryptFailed)
        ));
    }

    #[test]
    fn parses_openssl_kari_with_rkeyid() {
        let msg = h(MESSAGE);
        let env = Envelope::parse(&msg).unwrap();
        assert_eq!(env.recipients.len(), 1);
        let r = &env.recipients[0];
        assert_eq!(
            r.id,
            Some(RecipientId::KeyId(h(
                "3fd05512ce95aeed67bdd48f7801bfeb381e3908"
            )))
        );
        assert_eq!(r.encrypted_key.len(), 24);
        let a = agreement(&env);
        assert_eq!(a.kdf, HashAlg::Sha256);
        assert!(!a.cofactor);
        assert_eq!(a.kek_len, 16);
        assert_eq!(a.wrap.oid, oids::AES128_WRAP);
        assert_eq!(a.wrap.parameters, None);
        assert_eq!(a.originator_curve, None);
        assert_eq!(a.ephemeral_point.len(), 65);
        assert_eq!(a.ukm, None);
        assert_eq!(
            r.describe(),
            "subject key id 3FD05512CE95AEED67BDD48F7801BFEB381E3908 \
             (ECDH, SHA-256 X9.63 KDF, AES-128 key wrap)"
        );
    }

    /// A backend with a fixed shared secret that records the point it was given.
    struct FixedZ {
        z: Vec<u8>,
        point: Option<Vec<u8>>,
    }

    impl KeyBackend for FixedZ {
        fn certificates(&mut self) -> Result<Vec<KeyCertificate>> {
            Ok(Vec::new())
        }
        fn rsa_decrypt(
            &mut self,
            _: &[u8],
            _: &RsaPadding,
            _: &[u8],
        ) -> std::result::Result<Zeroizing<Vec<u8>>, KeyError> {
            Err(KeyError::Failed)
        }
        fn rsa_raw(
            &mut self,
            _: &[u8],
            _: &[u8],
        ) -> std::result::Result<Zeroizing<Vec<u8>>, KeyError> {
            Err(KeyError::Failed)
        }
        fn sign(
            &mut self,
            _: &[u8],
            _: SignAlg,
            _: &[u8],
        ) -> std::result::Result<Vec<u8>, KeyError> {
            Err(KeyError::Failed)
        }
        fn ecdh(
            &mut self,
            _: &[u8],
            point: &[u8],
        ) -> std::result::Result<Zeroizing<Vec<u8>>, KeyError> {
            self.point = Some(point.to_vec());
            Ok(Zeroizing::new(self.z.clone()))
        }
    }

    fn alice_ec() -> KeyCertificate {
        let pem = include_str!("../../softhsm-fixtures/alice-ec.pem");
        let certificate = x509_cert::Certificate::from_pem(pem.as_bytes()).unwrap();
        KeyCertificate {
            der: certificate.to_der().unwrap(),
            certificate,
            id: vec![4],
            label: "alice-ec".into(),
            has_private_key: Some(true),
            key_label: None,
        }
    }

    #[test]
    fn kdf_unwrap_and_content_match_openssl() {
        let msg = h(MESSAGE);
        let env = Envelope::parse(&msg).unwrap();
        let a = agreement(&env);
        assert_eq!(hex::encode(&*derive_kek(&a, &h(Z)).unwrap()), KEK);

        let mut backend = FixedZ {
            z: h(Z),
            point: None,
        };
        let cek = recipient::unwrap_key(&mut backend, &alice_ec(), &env.recipients[0]).unwrap();
        assert_eq!(hex::encode(&*cek), CEK);
        assert_eq!(backend.point.as_deref(), Some(a.ephemeral_point.as_slice()));
        let mut plain = Vec::new();
        env.decrypt_content(&cek, &mut plain).unwrap();
        assert_eq!(plain, b"hello\r\n");

        // Another secret (another key) fails the unwrap's integrity check, uniformly.
        let mut wrong = FixedZ {
            z: vec![7; 32],
            point: None,
        };
        assert!(matches!(
            recipient::unwrap_key(&mut wrong, &alice_ec(), &env.recipients[0]),
            Err(Error::DecryptFailed)
        ));
    }

    #[test]
    fn points_off_the_curve_never_reach_the_backend() {
        let msg = h(MESSAGE);
        let env = Envelope::parse(&msg).unwrap();
        let mut recipient = env.recipients[0].clone();
        let KeyWrap::Ecdh(a) = &mut recipient.wrap else {
            panic!("not ECDH")
        };
        // Flip a bit of y: the point leaves P-256.
        a.ephemeral_point[64] ^= 1;
        let mut backend = FixedZ {
            z: h(Z),
            point: None,
        };
        assert!(matches!(
            recipient::unwrap_key(&mut backend, &alice_ec(), &recipient),
            Err(Error::DecryptFailed)
        ));
        assert!(backend.point.is_none());
        // A compressed point is accepted and reaches the backend uncompressed.
        let KeyWrap::Ecdh(a) = &mut recipient.wrap else {
            panic!("not ECDH")
        };
        a.ephemeral_point[64] ^= 1;
        let full = a.ephemeral_point.clone();
        let mut compressed = vec![2 | (full[64] & 1)];
        compressed.extend_from_slice(&full[1..33]);
        a.ephemeral_point = compressed;
        let cek = recipient::unwrap_key(&mut backend, &alice_ec(), &recipient).unwrap();
        assert_eq!(hex::encode(&*cek), CEK);
        assert_eq!(backend.point, Some(full));
    }

    /// One KeyAgreeRecipientInfo with two recipient encrypted keys (openssl writes one info per
    /// recipient, other senders do not): each becomes a recipient with the shared parameters.
    #[test]
    fn several_encrypted_keys_in_one_info() {
        let msg = h(MESSAGE);
        // The KARI of MESSAGE, found by its [1] tag after the version and the SET header.
        let env_kari = {
            let at = msg
                .windows(3)
                .position(|w| w == [0xa1, 0x81, 0xa3])
                .unwrap();
            let mut der = msg[at..at + 3 + 0xa3].to_vec();
            der[0] = 0x30;
            der
        };
        let mut kari = KeyAgreeRecipientInfo::from_der(&env_kari).unwrap();
        let cert = alice_ec().certificate;
        // A first key for someone else: named with Alice's subject as the issuer, no match.
        let other = RecipientEncryptedKey {
            rid: KeyAgreeRecipientIdentifier::IssuerAndSerialNumber(IssuerAndSerialNumber {
                issuer: cert.tbs_certificate.subject.clone(),
                serial_number: cert.tbs_certificate.serial_number.clone(),
            }),
            enc_key: OctetString::new(vec![0xee; 24]).unwrap(),
        };
        kari.recipient_enc_keys.insert(0, other);
        let recipients = recipients(&kari.to_der().unwrap()).unwrap();
        assert_eq!(recipients.len(), 2);
        assert!(matches!(
            recipients[0].id,
            Some(RecipientId::IssuerSerial { .. })
        ));
        assert!(!recipients[0].matches(&cert));
        assert!(recipients[1].matches(&cert), "rKeyId matches by SKI");
        assert_eq!(recipients[0].wrap, recipients[1].wrap);
        let mut backend = FixedZ {
            z: h(Z),
            point: None,
        };
        let cek = recipient::unwrap_key(&mut backend, &alice_ec(), &recipients[1]).unwrap();
        assert_eq!(hex::encode(&*cek), CEK);
        assert!(matches!(
            recipient::unwrap_key(&mut backend, &alice_ec(), &recipients[0]),
            Err(Error::DecryptFailed)
        ));
    }

    #[test]
    fn cofactor_and_unsupported_schemes() {
        // Change the last-but-one arc of dhSinglePass-stdDH-sha256kdf-scheme (1.3.132.1.11.1):
        // 14 gives the cofactorDH scheme (1.3.132.1.14.1), 15 gives mqvSinglePass (1.3.132.1.15.1).
        let mut msg = h(MESSAGE);
        let std_sha256 = h("06062b8104010b01");
        let at = msg
            .windows(std_sha256.len())
            .position(|w| w == std_sha256)
            .unwrap();
        msg[at + 6] = 14;
        let env = Envelope::parse(&msg).unwrap();
        let a = agreement(&env);
        assert!(a.cofactor);
        assert_eq!(a.kdf, HashAlg::Sha256);
        // Cofactor 1 on P-256: the same key opens it.
        let mut backend = FixedZ {
            z: h(Z),
            point: None,
        };
        let cek = recipient::unwrap_key(&mut backend, &alice_ec(), &env.recipients[0]).unwrap();
        assert_eq!(hex::encode(&*cek), CEK);

        msg[at + 6] = 15;
        let env = Envelope::parse(&msg).unwrap();
        let r = &env.recipients[0];
        assert!(matches!(&r.wrap, KeyWrap::Unsupported(w) if w.contains("1.3.132.1.15.1")));
        // Still named, so the user hears the message is theirs but cannot be opened.
        assert!(r.id.is_some());
        assert!(matches!(
            recipient::unwrap_key(&mut backend, &alice_ec(), r),
            Err(Error::Unsupported(_))
        ));
    }
}
