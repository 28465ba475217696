//! Digests by algorithm name, and MGF1: the small hashing glue the CMS code shares. Running
//! digests ([`Hasher`], [`Digests`]) let a signed content be hashed as it streams past, once
//! per algorithm its signers use.

use crate::keyops::HashAlg;
use sha2::Digest;

/// Hashes the concatenation of `parts` with `alg`.
pub fn digest(alg: HashAlg, parts: &[&[u8]]) -> Vec<u8> {
    let mut h = Hasher::new(alg);
    for p in parts {
        h.update(p);
    }
    h.finish()
}

/// A digest being computed, fed a piece at a time.
#[derive(Clone)]
pub enum Hasher {
    Sha1(sha1::Sha1),
    Sha224(sha2::Sha224),
    Sha256(sha2::Sha256),
    Sha384(sha2::Sha384),
    Sha512(sha2::Sha512),
}

impl Hasher {
    pub fn new(alg: HashAlg) -> Self {
        match alg {
            HashAlg::Sha1 => Hasher::Sha1(sha1::Sha1::new()),
            HashAlg::Sha224 => Hasher::Sha224(sha2::Sha224::new()),
            HashAlg::Sha256 => Hasher::Sha256(sha2::Sha256::new()),
            HashAlg::Sha384 => Hasher::Sha384(sha2::Sha384::new()),
            HashAlg::Sha512 => Hasher::Sha512(sha2::Sha512::new()),
        }
    }

    pub fn update(&mut self, data: &[u8]) {
        match self {
            Hasher::Sha1(d) => d.update(data),
            Hasher::Sha224(d) => d.update(data),
            Hasher::Sha256(d) => d.update(data),
            Hasher::Sha384(d) => d.update(data),
            Hasher::Sha512(d) => d.update(data),
        }
    }

    pub fn finish(self) -> Vec<u8> {
        match self {
            Hasher::Sha1(d) => d.finalize().to_vec(),
            Hasher::Sha224(d) => d.finalize().to_vec(),
            Hasher::Sha256(d) => d.finalize().to_vec(),
            Hasher::Sha384(d) => d.finalize().to_vec(),
            Hasher::Sha512(d) => d.finalize().to_vec(),
        }
    }
}

/// Digests of one content by several algorithms, computed in one pass over it: a signed
/// content may be larger than memory, and its signers may use different digests.
pub struct MultiHasher(Vec<(HashAlg, Hasher)>);

impl MultiHasher {
    /// Starts a digest for each of `algs` (each once).
    pub fn new(algs: &[HashAlg]) -> Self {
        let mut running: Vec<(HashAlg, Hasher)> = Vec::new();
        for alg in algs {
            if !running.iter().any(|(a, _)| a == alg) {
                running.push((*alg, Hasher::new(*alg)));
            }
        }
        MultiHasher(running)
    }

    pub fn update(&mut self, data: &[u8]) {
        for (_, h) in &mut self.0 {
            h.update(data);
        }
    }

    pub fn finish(self) -> Digests {
        Digests(self.0.into_iter().map(|(a, h)| (a, h.finish())).collect())
    }
}

/// A content's finished digests, by algorithm.
pub struct Digests(Vec<(HashAlg, Vec<u8>)>);

impl Digests {
    /// The digests of `content` held in memory.
    pub fn of(content: &[u8], algs: &[HashAlg]) -> Self {
        let mut h = MultiHasher::new(algs);
        h.update(content);
        h.finish()
    }

    /// The digest by `alg`; `None` when it was not computed.
    pub fn get(&self, alg: HashAlg) -> Option<&[u8]> {
        self.0
            .iter()
            .find(|(a, _)| *a == alg)
            .map(|(_, d)| d.as_slice())
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
