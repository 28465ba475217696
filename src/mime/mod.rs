//! Mail without crypto: recognising S/MIME in whatever input arrives.

pub mod detect;
