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
    /// List the smart-card readers (PC/SC), whether a card is in each, its ATR and card type.
    Readers(ReadersArgs),
    /// List the certificates on a token and whether their private keys are there.
    Certs(CertsArgs),
    /// Decrypt an S/MIME message or CMS EnvelopedData/AuthEnvelopedData with a key on the token.
    Decrypt(DecryptArgs),
    /// Sign a message with the card's signature key (clear-text multipart/signed by default).
    Sign(SignArgs),
    /// Check a signed message: every signature, and whether each signer is trusted.
    Verify(VerifyArgs),
    /// Encrypt a message to its recipients (and to your own card, so you can read it later).
    Encrypt(EncryptArgs),
    /// Say what a message is, without a PIN: layers, recipients and which of your certificates
    /// match them, cipher, signers.
    Inspect(InspectArgs),
    /// Walk the chain from PKCS#11 module to certificates and say what is wrong and how to fix
    /// it (no PIN unless --pin is given). Exit 0 when every step is ok.
    Doctor(DoctorArgs),
    /// The session agent: log in once, then decrypt and sign without a PIN per message until
    /// it ends (idle timeout, `agent stop`, card removal, logout).
    Agent(AgentArgs),
    /// Print a shell completion script on stdout (bash, zsh, fish, elvish, powershell).
    Completions(CompletionsArgs),
    /// Print the manual page (roff) on stdout, or write every page into a directory.
    Man(ManArgs),
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
    /// Wait up to SECONDS for a card to be inserted instead of failing (0: no limit).
    #[arg(long, value_name = "SECONDS")]
    pub wait: Option<u64>,
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

/// Whether a command goes through the session agent.
#[derive(Args, Debug, Clone)]
pub struct AgentUseArgs {
    /// The session agent: `use` a running one, else open the token directly (the default);
    /// `auto`: start one when none runs (the PIN is asked once, then kept by the agent);
    /// `off`: never.
    #[arg(long, env = "P11SMIME_AGENT", value_name = "WHEN", default_value = "use",
          value_parser = ["use", "auto", "off"])]
    pub agent: String,
    /// Open the token directly even when an agent is running (the same as --agent off).
    #[arg(long)]
    pub no_agent: bool,
}

#[derive(Args, Debug)]
pub struct AgentArgs {
    #[command(subcommand)]
    pub action: AgentAction,
}

#[derive(Subcommand, Debug)]
pub enum AgentAction {
    /// Log in to the token (the PIN is asked now) and keep the session for the commands that
    /// follow; returns once the agent is ready.
    Start(AgentStartArgs),
    /// End the agent's session (logs out); nothing to do when none is running.
    Stop,
    /// Which token the agent holds, since when, and the idle time left. Exit 1 when no agent
    /// is running.
    Status(AgentStatusArgs),
}

#[derive(Args, Debug, Clone)]
pub struct AgentStartArgs {
    #[command(flatten)]
    pub token: TokenArgs,
    #[command(flatten)]
    pub pin: PinArgs,
    /// End the session after this long without a private-key request: seconds, or a number
    /// with s, m or h.
    #[arg(long, value_name = "DURATION", default_value = "10m")]
    pub idle_timeout: String,
    /// Keep the PIN, in locked memory for the session's life, for keys that want it for every
    /// signature (CKA_ALWAYS_AUTHENTICATE, as CAC and PIV signing keys do). Without it such a
    /// key asks for the PIN at each signature, agent or not.
    #[arg(long)]
    pub cache_signing_pin: bool,
    /// Stay in the foreground (for a service manager or a terminal); its log goes to stderr.
    #[arg(long)]
    pub foreground: bool,
    /// Internal: the background agent tells its starter on stdout when it is ready.
    #[arg(long, hide = true)]
    pub notify_ready: bool,
}

#[derive(Args, Debug)]
pub struct AgentStatusArgs {
    /// Machine-readable output.
    #[arg(long)]
    pub json: bool,
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
pub struct ReadersArgs {
    /// Machine-readable output.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct CertsArgs {
    #[command(flatten)]
    pub token: TokenArgs,
    /// Write this certificate (a label, id:HEX or pkcs11: URI) and the CA certificates on the
    /// token as PEM, to hand to correspondents.
    #[arg(long, value_name = "SEL")]
    pub export: Option<String>,
    /// With --export: write to this file instead of stdout.
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// With --pin, log in first so that private keys hidden until login are seen too.
    #[command(flatten)]
    pub pin: PinArgs,
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct DecryptArgs {
    /// The message: a file, or '-' / nothing for stdin. DER, BER, PEM, base64 or a whole mail.
    /// With --out-dir: any number of files, directories, Maildirs and mbox files.
    pub input: Vec<PathBuf>,
    /// Write the decrypted content here (mode 0600, only on success) instead of stdout.
    #[arg(short, long, value_name = "FILE", conflicts_with = "out_dir")]
    pub output: Option<PathBuf>,
    /// Decrypt every INPUT into this directory with one login: each file under its own name
    /// (never overwriting: a taken name gets a number), a Maildir or mbox as a new one of the
    /// same name with readable messages. Exit 8 if any message failed.
    #[arg(long, value_name = "DIR")]
    pub out_dir: Option<PathBuf>,
    /// Use this key: a label, id:HEX, or a pkcs11: URI.
    #[arg(long, value_name = "SEL")]
    pub key: Option<String>,
    #[command(flatten)]
    pub token: TokenArgs,
    #[command(flatten)]
    pub pin: PinArgs,
    #[command(flatten)]
    pub agent: AgentUseArgs,
    /// Output a complete readable message: the mail's own headers (From, To, Subject, Date,
    /// Message-ID, ...) over the decrypted entity.
    #[arg(long)]
    pub message: bool,
    /// Go on through every layer (signed, encrypted, signed again) to the readable content,
    /// verifying each signature on the way; a bad signature stops it with exit 7.
    #[arg(long)]
    pub unwrap: bool,
    /// With --unwrap: read on past signatures that do not verify, with a warning.
    #[arg(long, requires = "unwrap")]
    pub no_verify: bool,
    /// With --unwrap: trust anchors for the signatures (PEM, DER, .p7b). May be repeated.
    #[arg(long, value_name = "FILE", requires = "unwrap")]
    pub ca: Vec<PathBuf>,
    /// With --unwrap: do not trust the system's certificate store, only --ca.
    #[arg(long, requires = "unwrap")]
    pub no_system_ca: bool,
    /// Print what was decrypted and with which key as JSON (on stdout; needs -o).
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct SignArgs {
    /// The message or MIME entity to sign: a file, or '-' / nothing for stdin.
    pub input: Option<PathBuf>,
    /// Write the result here (only on success) instead of stdout.
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Sign with this key: a label, id:HEX, or a pkcs11: URI (default: the card's signature key).
    #[arg(long, value_name = "SEL")]
    pub key: Option<String>,
    /// Opaque signed-data (application/pkcs7-mime) instead of multipart/signed.
    #[arg(long)]
    pub opaque: bool,
    /// Intermediate certificates to include (PEM bundle or DER).
    #[arg(long, value_name = "FILE")]
    pub chain: Vec<PathBuf>,
    /// Digest: sha256 (default; sha384 for P-384 keys), sha384 or sha512.
    #[arg(long, value_name = "NAME", value_parser = ["sha256", "sha384", "sha512"])]
    pub digest: Option<String>,
    /// RSA-PSS instead of PKCS#1 v1.5 (salt length = digest length).
    #[arg(long)]
    pub pss: bool,
    /// message (default), or der / pem for the bare CMS object (a detached signature unless
    /// --opaque), for tools that assemble the MIME themselves.
    #[arg(long, value_name = "FORM", default_value = "message", value_parser = ["message", "der", "pem"])]
    pub outform: String,
    /// Sign INPUT exactly as given, only with CRLF line endings (as `openssl smime -sign`
    /// without -binary), instead of making it transport-safe first: for mail clients that
    /// build and send the MIME entity themselves, such as mutt.
    #[arg(long)]
    pub as_is: bool,
    #[command(flatten)]
    pub token: TokenArgs,
    #[command(flatten)]
    pub pin: PinArgs,
    #[command(flatten)]
    pub agent: AgentUseArgs,
    /// Print what was signed and with which key as JSON (on stdout; needs -o).
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct VerifyArgs {
    /// The signed message (multipart/signed or signed-data), a .p7s, or '-' / nothing for stdin.
    pub input: Option<PathBuf>,
    /// Trust anchors: PEM, DER or a certs-only PKCS#7 bundle (.p7b). May be repeated.
    #[arg(long, value_name = "FILE")]
    pub ca: Vec<PathBuf>,
    /// Do not trust the system's certificate store, only --ca.
    #[arg(long)]
    pub no_system_ca: bool,
    /// The signed content, for a detached signature given as INPUT.
    #[arg(long, value_name = "FILE")]
    pub content: Option<PathBuf>,
    /// Write the signed content here ('-' for stdout), only when every signature is valid and
    /// trusted.
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Start the report on stderr with the line 'Verification successful' or 'Verification
    /// failure', as openssl does: mutt takes a signature as good only after that first line.
    #[arg(long)]
    pub status_line: bool,
    /// Save the signer's certificate (PEM) here, as mail clients ask.
    #[arg(long, value_name = "FILE")]
    pub signer_cert: Option<PathBuf>,
    /// Revocation: off, soft (default: check what can be reached, say what could not), or hard
    /// (fail without a definitive answer). A revoked certificate always fails.
    #[arg(long, value_name = "MODE", default_value = "soft", value_parser = ["off", "soft", "hard"])]
    pub revocation: String,
    /// A CRL to use (DER or PEM). May be repeated.
    #[arg(long, value_name = "FILE")]
    pub crl: Vec<PathBuf>,
    /// Do not fetch CRLs from the certificates' distribution points.
    #[arg(long)]
    pub offline: bool,
    /// Keep the signer's encryption certificate in your certificate directory, by address,
    /// so that `encrypt -r ADDRESS` finds it (only for a good, trusted signature).
    #[arg(long)]
    pub remember: bool,
    /// Machine-readable report on stdout.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct EncryptArgs {
    /// The message or MIME entity to encrypt: a file, or '-' / nothing for stdin.
    pub input: Option<PathBuf>,
    /// A recipient: a certificate file (PEM, DER, .p7b) or an e-mail address in your
    /// certificate directory. Repeat for several.
    #[arg(
        short = 'r',
        long = "recipient",
        value_name = "RECIPIENT",
        required_unless_present = "recipient_list"
    )]
    pub recipients: Vec<String>,
    /// Any number of recipients in one option, up to the next option: for mail clients that
    /// pass a list of certificate files (mutt's %c). Give INPUT before it.
    #[arg(long = "recipients", value_name = "RECIPIENT", num_args = 1..)]
    pub recipient_list: Vec<String>,
    /// Write the result here (only on success) instead of stdout.
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Content cipher.
    #[arg(long, value_name = "NAME", default_value = "aes256-cbc",
          value_parser = ["aes128-cbc", "aes192-cbc", "aes256-cbc", "aes128-gcm", "aes256-gcm"])]
    pub cipher: String,
    /// RSAES-OAEP key transport instead of PKCS#1 v1.5: --oaep (SHA-256) or --oaep=sha1.
    #[arg(long, value_name = "DIGEST", num_args = 0..=1, require_equals = true,
          default_missing_value = "sha256", value_parser = ["sha1", "sha256"])]
    pub oaep: Option<String>,
    /// Sign with the card first, then encrypt.
    #[arg(long)]
    pub sign: bool,
    /// With --sign: the signing key (a label, id:HEX or pkcs11: URI).
    #[arg(long, value_name = "SEL")]
    pub key: Option<String>,
    /// Do not add your own key-management certificate as a recipient.
    #[arg(long)]
    pub no_self: bool,
    /// message (default), or der / pem for the bare CMS object.
    #[arg(long, value_name = "FORM", default_value = "message", value_parser = ["message", "der", "pem"])]
    pub outform: String,
    /// Encrypt INPUT exactly as given, only with CRLF line endings, instead of making it
    /// transport-safe first: for mail clients that build the MIME entity themselves (mutt).
    #[arg(long)]
    pub as_is: bool,
    #[command(flatten)]
    pub token: TokenArgs,
    #[command(flatten)]
    pub pin: PinArgs,
    #[command(flatten)]
    pub agent: AgentUseArgs,
    /// Print the recipients and cipher as JSON (on stdout; needs -o).
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct InspectArgs {
    /// The message: a file, or '-' / nothing for stdin.
    pub input: Option<PathBuf>,
    #[command(flatten)]
    pub token: TokenArgs,
    /// Trust anchors for judging signers (PEM, DER, .p7b). May be repeated.
    #[arg(long, value_name = "FILE")]
    pub ca: Vec<PathBuf>,
    /// Do not trust the system's certificate store, only --ca.
    #[arg(long)]
    pub no_system_ca: bool,
    /// Machine-readable output.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct DoctorArgs {
    #[command(flatten)]
    pub token: TokenArgs,
    /// Also try one login with this PIN source (prompt, env:VAR, file:PATH, fd:N, pinpad).
    #[command(flatten)]
    pub pin: PinArgs,
    /// Trust anchors for the chain check (PEM, DER, .p7b). May be repeated.
    #[arg(long, value_name = "FILE")]
    pub ca: Vec<PathBuf>,
    /// Do not trust the system's certificate store, only --ca.
    #[arg(long)]
    pub no_system_ca: bool,
    /// Machine-readable output.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct CompletionsArgs {
    /// The shell to complete for.
    #[arg(value_enum, value_name = "SHELL")]
    pub shell: clap_complete::Shell,
}

#[derive(Args, Debug)]
pub struct ManArgs {
    /// The page of this subcommand, p11smime-COMMAND(1), instead of p11smime(1).
    #[arg(value_name = "COMMAND")]
    pub command: Option<String>,
    /// Write every page (p11smime.1 and p11smime-COMMAND.1) into this directory instead.
    #[arg(long, value_name = "DIR", conflicts_with = "command")]
    pub out_dir: Option<PathBuf>,
}
