//! Times the token's own RSA private-key operation, for `scripts/bench`: the floor that
//! p11smime's per-message cost in a batch is held against.
//!
//! ```sh
//! TOKEN_PIN=123456 cargo run --release --example token_rsa_op -- \
//!     MODULE TOKEN_LABEL KEY_ID_HEX CIPHERTEXT_FILE [ITERATIONS]
//! ```
//!
//! Loads the module, logs in to the token once, finds the private key by CKA_ID and runs
//! `C_DecryptInit` + `C_Decrypt` with `CKM_RSA_PKCS` on the ciphertext (an RSA PKCS#1 v1.5
//! block, e.g. from `openssl pkeyutl -encrypt`) ITERATIONS times (200 by default), each call
//! timed on its own, in one process: no process start, no module load, no login per call.
//!
//! Prints one line of `key=value` pairs, times in microseconds: `init_us` (load and
//! C_Initialize), `login_us` (open session and C_Login), `find_us` (C_FindObjects for the key),
//! then `n`, `median_us`, `mean_us`, `min_us`, `p90_us` of the C_Decrypt calls.

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, ObjectClass};
use cryptoki::session::UserType;
use cryptoki::types::AuthPin;
use std::time::Instant;

type BoxError = Box<dyn std::error::Error>;

fn main() {
    if let Err(e) = run() {
        eprintln!("token_rsa_op: {e}");
        std::process::exit(1);
    }
}

fn micros(start: Instant) -> u128 {
    start.elapsed().as_micros()
}

fn unhex(s: &str) -> Result<Vec<u8>, BoxError> {
    if !s.len().is_multiple_of(2) {
        return Err(format!("key id {s:?} is not hex").into());
    }
    (0..s.len())
        .step_by(2)
        .map(|i| {
            u8::from_str_radix(&s[i..i + 2], 16)
                .map_err(|_| format!("key id {s:?} is not hex").into())
        })
        .collect()
}

fn run() -> Result<(), BoxError> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 4 || args.len() > 5 {
        return Err(
            "usage: token_rsa_op MODULE TOKEN_LABEL KEY_ID_HEX CIPHERTEXT_FILE [ITERATIONS] \
             (PIN in TOKEN_PIN)"
                .into(),
        );
    }
    let (module, label, id, ct_file) = (&args[0], &args[1], unhex(&args[2])?, &args[3]);
    let iterations: usize = match args.get(4) {
        Some(n) => n
            .parse()
            .map_err(|_| format!("bad iteration count {n:?}"))?,
        None => 200,
    };
    if iterations == 0 {
        return Err("the iteration count must be at least 1".into());
    }
    let pin = std::env::var("TOKEN_PIN").map_err(|_| "set TOKEN_PIN to the user PIN")?;
    let ciphertext = std::fs::read(ct_file).map_err(|e| format!("{ct_file}: {e}"))?;

    let t = Instant::now();
    let ctx = Pkcs11::new(module)?;
    ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK))?;
    let init_us = micros(t);

    let t = Instant::now();
    let slot = ctx
        .get_slots_with_token()?
        .into_iter()
        .find(|s| {
            ctx.get_token_info(*s)
                .is_ok_and(|i| i.label().trim_end() == label.as_str())
        })
        .ok_or_else(|| format!("no token labelled {label:?}"))?;
    let session = ctx.open_ro_session(slot)?;
    session.login(UserType::User, Some(&AuthPin::from(pin)))?;
    let login_us = micros(t);

    let t = Instant::now();
    let key = session
        .find_objects(&[
            Attribute::Class(ObjectClass::PRIVATE_KEY),
            Attribute::Id(id),
        ])?
        .first()
        .copied()
        .ok_or("no private key with that id")?;
    let find_us = micros(t);

    // One untimed call: the first may fill caches (key blob decoding in SoftHSM2).
    let plain = session.decrypt(&Mechanism::RsaPkcs, key, &ciphertext)?;
    if plain.is_empty() {
        return Err("C_Decrypt gave an empty result".into());
    }
    let mut times: Vec<u128> = Vec::with_capacity(iterations);
    for _ in 0..iterations {
        let t = Instant::now();
        let out = session.decrypt(&Mechanism::RsaPkcs, key, &ciphertext)?;
        times.push(micros(t));
        std::hint::black_box(out);
    }
    times.sort_unstable();
    let n = times.len();
    let mean = times.iter().sum::<u128>() / n as u128;
    let p90 = times[(n * 9 / 10).min(n - 1)];
    println!(
        "init_us={init_us} login_us={login_us} find_us={find_us} n={n} median_us={} mean_us={mean} \
         min_us={} p90_us={p90}",
        times[n / 2],
        times[0]
    );
    // Sessions and the context close on drop (C_CloseSession, C_Finalize).
    Ok(())
}
