//! The `p11smime` binary: parse arguments, call the library, map the error to an exit code.

#![forbid(unsafe_code)]

mod cli;
mod commands;
mod io;
mod report;
mod ui;

use clap::Parser;
use p11smime::error::exit;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = match cli::Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() {
                exit::USAGE
            } else {
                exit::OK
            };
            let _ = e.print();
            return ExitCode::from(code as u8);
        }
    };
    let result = match cli.command {
        cli::Command::Tokens(args) => commands::tokens::run(args),
        cli::Command::Readers(args) => commands::readers::run(args),
        cli::Command::Certs(args) => commands::certs::run(args),
        cli::Command::Decrypt(args) => commands::decrypt::run(args),
        cli::Command::Sign(args) => commands::sign::run(args),
        cli::Command::Verify(args) => commands::verify::run(args),
        cli::Command::Encrypt(args) => commands::encrypt::run(args),
        cli::Command::Inspect(args) => commands::inspect::run(args),
        cli::Command::Doctor(args) => commands::doctor::run(args),
        cli::Command::Agent(args) => commands::agent::run(args),
        cli::Command::Completions(args) => commands::completions::run(args),
        cli::Command::Man(args) => commands::man::run(args),
    };
    p11smime::pin::forget_pins();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            report::print_error(&e);
            ExitCode::from(e.exit_code() as u8)
        }
    }
}
