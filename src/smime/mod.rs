//! The operations users name, over bytes: here input detection, the CMS code, token choice and
//! the key backend meet. One file per operation.

mod decrypt;
mod sign;
mod verify;

pub use decrypt::{DecryptOutcome, DecryptRequest, decrypt, decrypt_with_backend};
pub use sign::{OutForm, SignOutcome, SignParams, SignRequest, sign, sign_with_backend};
pub use verify::{SignerReport, VerifyOutcome, verify};
