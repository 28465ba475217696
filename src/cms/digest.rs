//! Digests by algorithm name, and MGF1: the small hashing glue the CMS code shares.

use crate::keyops::HashAlg;
use sha2::Digest;

/// Hashes the concatenation of `parts` with `alg`.
pub fn digest(alg: HashAlg, parts: &[&[u8]]) -> Vec<u8> {
    fn run<D: Digest>(parts: &[&[u8]]) -> Vec<u8> {
        let mut d = D::new();
        for p in parts {
            d.update(p);
        }
        d.finalize().to_vec()
    }
    match alg {
        HashAlg::Sha1 => run::<sha1::Sha1>(parts),
        HashAlg::Sha224 => run::<sha2::Sha224>(parts),
        HashAlg::Sha256 => run::<sha2::Sha256>(parts),
        HashAlg::Sha384 => run::<sha2::Sha384>(parts),
        HashAlg::Sha512 => run::<sha2::Sha512>(parts),
    }
}

/// XORs `out` with MGF1(`seed`) (RFC 8017 B.2.1).
pub fn mgf1_xor(alg: HashAlg, out: &mut [u8], seed: &[u8]) {
    let mut counter: u32 = 0;
    for chunk in out.chunks_mut(alg.output_len()) {
        let mask = digest(alg, &[seed, &counter.to_be_bytes()]);
        for (o, m) in chunk.iter_mut().zip(mask) {
            *o ^= m;
        }
        counter = counter.wrapping_add(1);
    }
}
