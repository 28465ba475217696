//! `p11smime completions SHELL`: a completion script for bash, zsh, fish, elvish or PowerShell,
//! generated from the clap definition, on stdout.

use crate::cli::{Cli, CompletionsArgs};
use crate::io;
use clap::CommandFactory;
use p11smime::{Error, Result};

pub fn run(args: CompletionsArgs) -> Result<()> {
    let mut script = Vec::new();
    clap_complete::generate(args.shell, &mut Cli::command(), "p11smime", &mut script);
    io::with_output(None, |out| {
        out.write_all(&script)
            .map_err(|e| Error::io("cannot write the completion script", e))
    })
}
