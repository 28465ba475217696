//! Replays the fuzz corpora on stable Rust: every file under `fuzz/seeds/<target>/` and
//! `fuzz/regressions/<target>/` goes through the same code the cargo-fuzz target `<target>` runs
//! (`fuzz/src/lib.rs`, included here as a module), and must neither panic nor take long.
//!
//! The fuzz targets themselves need nightly and libFuzzer (`cargo +nightly fuzz run TARGET`,
//! see fuzz/README.md); this test keeps what they found fixed without either.

#[path = "../fuzz/src/lib.rs"]
mod targets;

use p11smime::cms::ber::Reader;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Generous for a debug build on a loaded machine; a regression of a quadratic blow-up or a
/// hang takes far longer.
const PER_INPUT: Duration = Duration::from_secs(5);

fn files(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file() && p.file_name().is_none_or(|n| n != "README.md"))
        .collect();
    out.sort();
    out
}

#[test]
fn seeds_and_crash_reproducers_replay_cleanly() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let mut replayed = 0;
    let mut failures = Vec::new();
    for (name, run) in targets::TARGETS {
        for kind in ["seeds", "regressions"] {
            for path in files(&root.join(kind).join(name)) {
                let data = match std::fs::read(&path) {
                    Ok(d) => d,
                    Err(e) => {
                        failures.push(format!("{}: cannot read: {e}", path.display()));
                        continue;
                    }
                };
                let start = Instant::now();
                let outcome = std::panic::catch_unwind(|| run(&data));
                let took = start.elapsed();
                if outcome.is_err() {
                    failures.push(format!("{}: {name} panicked", path.display()));
                } else if took > PER_INPUT {
                    failures.push(format!("{}: {name} took {took:?}", path.display()));
                }
                replayed += 1;
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {replayed} inputs failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert!(
        replayed >= 50,
        "only {replayed} fuzz inputs found under fuzz/"
    );
}

/// DER of `tag` around `content`.
fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let len = content.len().to_be_bytes();
    let skip = len.iter().take_while(|b| **b == 0).count();
    match content.len() {
        n if n < 0x80 => out.push(n as u8),
        _ => {
            out.push(0x80 | (len.len() - skip) as u8);
            out.extend_from_slice(&len[skip..]);
        }
    }
    out.extend_from_slice(content);
    out
}

/// Every signer is checked against every certificate a message carries, so many of both once
/// cost their product: 3,000 signers and 3,000 certificates (4.7 MB) took 6 s in a release build
/// before the number of signers was bounded. Too large to keep as a file: built here from the
/// opaque signed seed, its one certificate and one signer repeated 2,000 times each.
#[test]
fn many_signers_times_many_certificates_is_not_quadratic() -> Result<(), Box<dyn std::error::Error>>
{
    let seed = std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds/signed/signed_opaque.der"),
    )?;
    let mut info = Reader::new(&seed).read("ContentInfo")?.children()?;
    let oid = info.read("contentType")?;
    let signed_data = info.read("[0]")?.children()?.read("SignedData")?;
    let mut fields = signed_data.children()?;
    let version = fields.read("version")?;
    let digests = fields.read("digestAlgorithms")?;
    let encap = fields.read("encapContentInfo")?;
    let cert = fields
        .read("certificates")?
        .children()?
        .read("a certificate")?;
    let signer = fields.read("signerInfos")?.children()?.read("a signer")?;
    let n = 2000;
    let body = [
        version.raw,
        digests.raw,
        encap.raw,
        &tlv(0xa0, &cert.raw.repeat(n)),
        &tlv(0x31, &signer.raw.repeat(n)),
    ]
    .concat();
    let message = tlv(0x30, &[oid.raw, &tlv(0xa0, &tlv(0x30, &body))].concat());
    let start = Instant::now();
    targets::signed(&message);
    targets::inspect(&message);
    let took = start.elapsed();
    assert!(
        took < PER_INPUT,
        "{n} signers x {n} certificates took {took:?}"
    );
    Ok(())
}
