//! Mail without crypto: recognising S/MIME in whatever input arrives (`detect`), reading and
//! writing entities byte-exactly (`entity`), making them safe to sign (`canon`, over the writers
//! of `encode`; `plan` does the same for a file too large to hold), composing signed and
//! enveloped messages (`compose`), and reading the CMS out of a PEM or mail wrapping as a
//! stream (`stream`).

pub mod canon;
pub mod compose;
pub mod detect;
pub mod encode;
pub mod entity;
pub mod plan;
pub mod stream;
