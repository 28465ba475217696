//! The operations users name, over bytes: here input detection, the CMS code, token choice and
//! the key backend meet. One file per operation.

mod batch;
mod decrypt;
mod encrypt;
mod encrypt_stream;
mod inspect;
mod keys;
mod sign;
mod sign_stream;
mod spool;
mod unwrap;
mod verify;

pub use crate::cms::encrypt::{Cipher, KeyTransport};
pub use batch::{BatchItem, BatchOptions, BatchProgress, BatchReport, ItemStatus, decrypt_batch};
pub use decrypt::{DecryptOutcome, DecryptRequest, Decryptor, decrypt, decrypt_with_backend};
pub use encrypt::{EncryptOutcome, EncryptParams, EncryptRequest, encrypt};
pub use encrypt_stream::{STREAM_THRESHOLD, encrypt_file, encrypt_reader};
pub use inspect::{InspectedLayer, InspectedRecipient, inspect};
pub use keys::KeyAccess;
pub use sign::{OutForm, SignOutcome, SignParams, SignRequest, sign, sign_with_backend};
pub use sign_stream::{sign_file, sign_reader};
pub use spool::{Sink, Spool};
pub use unwrap::{LayerReport, UnwrapOutcome, UnwrapRequest, unwrap, unwrap_with};
pub use verify::{SignerReport, VerifyOutcome, verify, verify_stream};
