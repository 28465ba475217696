//! Command-line arguments (clap derive): shared flag groups flattened into each subcommand.

use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

#[derive(Parser, Debug)]
#[command(
    name = "p11smime",
    version,
    about = "S/MIME with keys that never leave your smartcard or token (CAC, PIV, YubiKey, any PKCS#11 token)",
    after_help = "Exit codes: 0 ok, 1 other failure, 2 usage, 3 bad or unsupported input, \
4 no matching key, 5 PIN problem, 6 module/token/reader problem, 7 signature invalid, 8 batch with failures."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// List the tokens (cards) the PKCS#11 module sees, with their PIN flags.
    Tokens(TokensArgs),
    /// List the certificates on a token and whether their private keys are there.
    Certs(CertsArgs),
    /// Decrypt an S/MIME message or CMS EnvelopedData/AuthEnvelopedData with a key on the token.
    Decrypt(DecryptArgs),
}

/// Which module and token to use.
#[derive(Args, Debug, Clone)]
pub struct TokenArgs {
    /// PKCS#11 module to load (default: p11-kit proxy, OpenSC or SoftHSM2, whichever is found).
    #[arg(long, env = "P11SMIME_MODULE", value_name = "PATH")]
    pub module: Option<PathBuf>,
    /// Token to use: its label, its serial, or a pkcs11: URI.
    #[arg(long, env = "P11SMIME_TOKEN", value_name = "SEL")]
    pub token: Option<String>,
    /// Say what is being tried, on stderr.
    #[arg(short, long)]
    pub verbose: bool,
}

/// How to get the PIN.
#[derive(Args, Debug, Clone)]
pub struct PinArgs {
    /// Where the PIN comes from: prompt, env:VAR, file:PATH, fd:N (fd:0 = stdin) or pinpad.
    /// Never the PIN itself. Default: pinpad if the reader has one, else a prompt on a terminal.
    #[arg(long, value_name = "SOURCE")]
    pub pin: Option<String>,
    /// Use the token even when it reports the final PIN try (a wrong PIN then locks it).
    #[arg(long)]
    pub force_final_try: bool,
}

#[derive(Args, Debug)]
pub struct TokensArgs {
    #[command(flatten)]
    pub token: TokenArgs,
    /// Machine-readable output.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct CertsArgs {
    #[command(flatten)]
    pub token: TokenArgs,
    /// With --pin, log in first so that private keys hidden until login are seen too.
    #[command(flatten)]
    pub pin: PinArgs,
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct DecryptArgs {
    /// The message: a file, or '-' / nothing for stdin. DER, BER, PEM, base64 or a whole mail.
    pub input: Option<PathBuf>,
    /// Write the decrypted content here (mode 0600, only on success) instead of stdout.
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Use this key: a label, id:HEX, or a pkcs11: URI.
    #[arg(long, value_name = "SEL")]
    pub key: Option<String>,
    #[command(flatten)]
    pub token: TokenArgs,
    #[command(flatten)]
    pub pin: PinArgs,
    /// Print what was decrypted and with which key as JSON (on stdout; needs -o).
    #[arg(long)]
    pub json: bool,
}
