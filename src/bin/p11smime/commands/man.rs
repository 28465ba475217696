//! `p11smime man [COMMAND]`: the manual page (roff) generated from the clap definition, on
//! stdout; `--out-dir DIR` writes p11smime.1 and a p11smime-COMMAND.1 per subcommand instead,
//! as packaging wants them.

use crate::cli::{Cli, ManArgs};
use crate::io;
use clap::CommandFactory;
use clap_mangen::Man;
use p11smime::{Error, Result};

/// What p11smime is, for p11smime(1), in place of clap's one-line about. Plain roff: `\-` is a
/// hyphen-minus, `\fB`/`\fI`/`\fR` bold, italic and back to roman, `.TP` a tagged paragraph.
const DESCRIPTION: &str = r#".SH DESCRIPTION
\fBp11smime\fR decrypts, signs, verifies, encrypts and inspects S/MIME mail with the private key
on a smart card or PKCS#11 token (a US DoD CAC, a PIV card, a YubiKey, SoftHSM2, ...). The key
never leaves the card: every private\-key operation goes through PKCS#11, and a PIN is asked only
once a certificate on the card is known to fit. Each command has its own page,
\fBp11smime\-\fICOMMAND\fR(1), and \fBp11smime \fICOMMAND\fB \-\-help\fR. Listing commands
take \fB\-\-json\fR for scripts.
"#;

/// Sections clap does not know, for p11smime(1).
const EXTRA: &str = r#".SH "PIN SOURCES"
\fB\-\-pin\fR names where the PIN comes from, never the PIN itself:
.TP
\fBprompt\fR
ask on the terminal
.TP
\fBenv:\fIVAR\fR
the value of an environment variable
.TP
\fBfile:\fIPATH\fR
the first line of a file
.TP
\fBfd:\fIN\fR
one line from descriptor \fIN\fR; \fBfd:0\fR is stdin (the message must then be a file)
.TP
\fBpinpad\fR
the reader's PIN pad (protected authentication path)
.PP
Default: \fBpinpad\fR when the token has a PIN pad, else a prompt on a terminal; without a
terminal the command stops with an error, it never waits for input. A wrong PIN is one login
attempt and is never retried; a locked PIN is refused before logging in, and the final try needs
a "yes" on a terminal or \fB\-\-force\-final\-try\fR.
.SH ENVIRONMENT
.TP
\fBP11SMIME_MODULE\fR
the PKCS#11 module to load, as \fB\-\-module\fR (default: p11\-kit's proxy, OpenSC or SoftHSM2,
the first found)
.TP
\fBP11SMIME_TOKEN\fR
the token to use, as \fB\-\-token\fR: a label, a serial or a pkcs11: URI
.TP
\fBP11SMIME_CERT_DIR\fR
where \fBverify \-\-remember\fR keeps correspondents' certificates and \fBencrypt \-r\fR
\fIADDRESS\fR finds them (default: ~/.local/share/p11smime/certs)
.TP
\fBPCSCLITE_CSOCK_NAME\fR
the pcscd socket \fBreaders\fR and \fBdoctor\fR talk to (pcsc\-lite)
.TP
\fBhttp_proxy\fR
used for fetching CRLs and OCSP answers
.SH "EXIT STATUS"
The same for every command.
.TP
\fB0\fR
success
.TP
\fB1\fR
other failure (I/O and the like)
.TP
\fB2\fR
usage error
.TP
\fB3\fR
bad or unsupported input: not CMS, truncated, damaged, or the key did not open it
.TP
\fB4\fR
no matching key or recipient on the token
.TP
\fB5\fR
PIN problem: wrong, locked, final try refused, none available
.TP
\fB6\fR
PKCS#11 module, token or reader not found or unusable
.TP
\fB7\fR
signature invalid or not trusted
.TP
\fB8\fR
a batch finished with some items failed
.SH "SEE ALSO"
\fBpkcs11\-tool\fR(1), \fBpcscd\fR(8), \fBopenssl\-cms\fR(1)
"#;

/// The .TH footer's source, on every page (clap's would be "decrypt " on a subcommand's).
const SOURCE: &str = concat!("p11smime ", env!("CARGO_PKG_VERSION"));

pub fn run(args: ManArgs) -> Result<()> {
    let root = commands();
    if let Some(dir) = &args.out_dir {
        return write_all(&root, dir);
    }
    let page = match &args.command {
        None => main_page(&root)?,
        Some(name) => sub_page(find(&root, name)?)?,
    };
    io::with_output(None, |out| {
        out.write_all(&page)
            .map_err(|e| Error::io("cannot write the manual page", e))
    })
}

/// The clap definition, built (so subcommands carry their "p11smime-NAME" display names),
/// without clap's own `help` subcommand, which has no page.
fn commands() -> clap::Command {
    let mut cmd = Cli::command().disable_help_subcommand(true);
    cmd.build();
    cmd
}

fn find<'c>(root: &'c clap::Command, name: &str) -> Result<&'c clap::Command> {
    root.find_subcommand(name).ok_or_else(|| {
        let names: Vec<&str> = root.get_subcommands().map(|c| c.get_name()).collect();
        Error::Usage(format!(
            "no command '{name}'; pages exist for: {}",
            names.join(", ")
        ))
    })
}

/// p11smime(1): what clap knows, a description, then PIN sources, environment, exit status.
fn main_page(root: &clap::Command) -> Result<Vec<u8>> {
    let man = Man::new(root.clone())
        .manual("p11smime manual")
        .source(SOURCE);
    let mut page = Vec::new();
    let rendered = (|| {
        man.render_title(&mut page)?;
        man.render_name_section(&mut page)?;
        man.render_synopsis_section(&mut page)?;
        page.extend_from_slice(DESCRIPTION.as_bytes());
        man.render_options_section(&mut page)?;
        man.render_subcommands_section(&mut page)?;
        page.extend_from_slice(EXTRA.as_bytes());
        man.render_version_section(&mut page)
    })();
    rendered.map_err(|e| Error::io("cannot render the manual page", e))?;
    Ok(page)
}

/// p11smime-COMMAND(1), pointing back at p11smime(1) for the PIN, environment and exit codes.
fn sub_page(sub: &clap::Command) -> Result<Vec<u8>> {
    let mut page = Vec::new();
    Man::new(sub.clone())
        .manual("p11smime manual")
        .source(SOURCE)
        .render(&mut page)
        .map_err(|e| Error::io("cannot render the manual page", e))?;
    page.extend_from_slice(
        b".SH \"SEE ALSO\"\n\\fBp11smime\\fR(1) for PIN sources, the environment and exit codes\n",
    );
    Ok(page)
}

fn write_all(root: &clap::Command, dir: &std::path::Path) -> Result<()> {
    std::fs::create_dir_all(dir)
        .map_err(|e| Error::io(format!("cannot create {}", dir.display()), e))?;
    let mut pages = vec![("p11smime.1".to_string(), main_page(root)?)];
    for sub in root.get_subcommands() {
        pages.push((format!("p11smime-{}.1", sub.get_name()), sub_page(sub)?));
    }
    for (name, page) in pages {
        let path = dir.join(name);
        std::fs::write(&path, page)
            .map_err(|e| Error::io(format!("cannot write {}", path.display()), e))?;
    }
    Ok(())
}
