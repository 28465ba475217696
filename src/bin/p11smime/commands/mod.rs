//! One file per subcommand, and the small pieces they share.

pub mod batch;
pub mod certs;
pub mod completions;
pub mod decrypt;
pub mod doctor;
pub mod encrypt;
pub mod inspect;
pub mod man;
pub mod readers;
pub mod sign;
pub mod tokens;
pub mod verify;

use crate::cli::{PinArgs, TokenArgs};
use p11smime::pin::PinSource;
use p11smime::token::{Module, TokenSelector};
use p11smime::{Error, Result};
use std::io::Write;

/// Loads the module and parses the token selector.
pub fn open_module(args: &TokenArgs) -> Result<(Module, Option<TokenSelector>)> {
    let selector = args.token.as_deref().map(str::parse).transpose()?;
    let module = Module::open(args.module.as_deref())?;
    if args.verbose {
        eprintln!("p11smime: module {}", module.path().display());
    }
    if let Some(seconds) = args.wait {
        let callbacks = crate::ui::Terminal {
            verbose: args.verbose,
        };
        module.wait_for_token(selector.as_ref(), seconds, &callbacks)?;
    }
    Ok((module, selector))
}

/// The login options every token command builds from its flags.
pub fn login_options<'a>(
    pin: Option<&'a PinSource>,
    args: &PinArgs,
    callbacks: &'a crate::ui::Terminal,
) -> p11smime::token::LoginOptions<'a> {
    p11smime::token::LoginOptions {
        pin,
        force_final_try: args.force_final_try,
        callbacks,
    }
}

/// Parses `--pin`.
pub fn pin_source(args: &PinArgs) -> Result<Option<PinSource>> {
    args.pin.as_deref().map(str::parse).transpose()
}

/// Prints `value` as pretty JSON on stdout.
pub fn print_json<T: serde::Serialize>(value: &T) -> Result<()> {
    let text = serde_json::to_string_pretty(value)
        .map_err(|e| Error::io("cannot encode JSON", std::io::Error::other(e)))?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "{text}").map_err(|e| Error::io("cannot write to stdout", e))
}
