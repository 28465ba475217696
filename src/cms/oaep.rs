//! RSAES-OAEP decoding (RFC 8017 §7.1.2) in constant time, for the raw-RSA fallback.
//!
//! Many PKCS#11 modules (SoftHSM2 among them) refuse OAEP with SHA-2 or with a label; with those we
//! run the raw RSA operation on the token and remove the padding here. The `rsa` crate does the
//! padding only together with a software private key, so the decoding is ours. Every check is
//! folded into one `Choice` and the result is a single uniform failure, so nothing tells an
//! attacker which check failed (Manger's attack).

use crate::cms::digest::{digest, mgf1_xor};
use crate::keyops::HashAlg;
use subtle::{ConditionallySelectable, ConstantTimeEq};
use zeroize::Zeroizing;

/// Removes OAEP padding from the raw RSA output `em` (already left-padded to the modulus length).
/// `None` on any failure, without saying which.
pub fn decode(
    em: &[u8],
    hash: HashAlg,
    mgf_hash: HashAlg,
    label: &[u8],
) -> Option<Zeroizing<Vec<u8>>> {
    let h_len = hash.output_len();
    let k = em.len();
    if k < 2 * h_len + 2 {
        return None;
    }
    let mut em = Zeroizing::new(em.to_vec());
    let (y, rest) = em.split_at_mut(1);
    let (masked_seed, masked_db) = rest.split_at_mut(h_len);
    mgf1_xor(mgf_hash, masked_seed, masked_db); // masked_seed now holds the seed
    mgf1_xor(mgf_hash, masked_db, masked_seed); // masked_db now holds DB
    let seed_free_db = &*masked_db;

    let l_hash = digest(hash, &[label]);
    let mut good = y[0].ct_eq(&0) & seed_free_db[..h_len].ct_eq(&l_hash[..]);

    // Find the 0x01 separator after the zero padding without branching on secret bytes.
    let mut looking = subtle::Choice::from(1u8);
    let mut index: u32 = 0;
    let mut invalid = subtle::Choice::from(0u8);
    for (i, b) in seed_free_db.iter().enumerate().skip(h_len) {
        let is_zero = b.ct_eq(&0);
        let is_one = b.ct_eq(&1);
        index.conditional_assign(&(i as u32), looking & is_one);
        invalid |= looking & !is_zero & !is_one;
        looking &= !is_one;
    }
    good &= !invalid & !looking;
    // When `good`, `index` is the separator's position inside DB.
    let start = (index as usize + 1).min(seed_free_db.len());
    if bool::from(good) {
        Some(Zeroizing::new(seed_free_db[start..].to_vec()))
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rsa::traits::{PrivateKeyParts, PublicKeyParts};
    use rsa::{BigUint, Oaep, RsaPrivateKey, RsaPublicKey};

    fn raw_decrypt(key: &RsaPrivateKey, ct: &[u8]) -> Vec<u8> {
        let c = BigUint::from_bytes_be(ct);
        let m = c.modpow(key.d(), key.n());
        let mut out = m.to_bytes_be();
        let k = key.size();
        let mut padded = vec![0u8; k - out.len()];
        padded.append(&mut out);
        padded
    }

    #[test]
    fn decodes_what_the_rsa_crate_encodes() {
        let mut rng = rand::thread_rng();
        let key = RsaPrivateKey::new(&mut rng, 1024).unwrap();
        let public = RsaPublicKey::from(&key);
        let cases: Vec<(Oaep, HashAlg, &[u8])> = vec![
            (Oaep::new::<sha1::Sha1>(), HashAlg::Sha1, b""),
            (Oaep::new::<sha2::Sha256>(), HashAlg::Sha256, b""),
            (
                Oaep::new_with_label::<sha2::Sha384, _>("a label"),
                HashAlg::Sha384,
                b"a label",
            ),
        ];
        for (padding, hash, label) in cases {
            let ct = public
                .encrypt(&mut rng, padding, b"content key 1234")
                .unwrap();
            let em = raw_decrypt(&key, &ct);
            let m = decode(&em, hash, hash, label).expect("valid OAEP");
            assert_eq!(&m[..], b"content key 1234");
            assert!(decode(&em, hash, hash, b"other label").is_none());
            let mut broken = em.clone();
            broken[0] = 1;
            assert!(decode(&broken, hash, hash, label).is_none());
            let mut broken = em.clone();
            broken[40] ^= 0x80;
            assert!(decode(&broken, hash, hash, label).is_none());
        }
    }

    #[test]
    fn short_input_is_refused() {
        assert!(decode(&[0u8; 20], HashAlg::Sha256, HashAlg::Sha256, b"").is_none());
    }
}
