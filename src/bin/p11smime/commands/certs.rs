//! `p11smime certs`: every certificate on the token, expired ones too, and where its key is.

use super::{open_module, pin_source, print_json};
use crate::cli::CertsArgs;
use crate::ui::Terminal;
use p11smime::Result;
use p11smime::certinfo::{CertSummary, summarize};
use p11smime::token::{LoginOptions, TokenInfo};

#[derive(serde::Serialize)]
struct TokenCerts {
    token: TokenInfo,
    certificates: Vec<CertSummary>,
}

pub fn run(args: CertsArgs) -> Result<()> {
    let (module, selector) = open_module(&args.token)?;
    let pin = pin_source(&args.pin)?;
    let callbacks = Terminal {
        verbose: args.token.verbose,
    };
    if let Some(sel) = &args.export {
        return export(
            &module,
            selector.as_ref(),
            sel,
            args.output.as_ref(),
            &callbacks,
        );
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default();
    let mut listing = Vec::new();
    for info in module.candidate_tokens(selector.as_ref())? {
        let mut token = module.open_token(
            &info,
            super::login_options(pin.as_ref(), &args.pin, &callbacks),
        )?;
        if pin.is_some() {
            token.ensure_login()?;
        }
        let certificates = token
            .read_certificates()?
            .iter()
            .map(|c| summarize(c, now))
            .collect();
        listing.push(TokenCerts {
            token: info,
            certificates,
        });
    }
    if let Some(sel) = &args.export {
        return export(
            &module,
            selector.as_ref(),
            sel,
            args.output.as_ref(),
            &callbacks,
        );
    }
    if args.json {
        return print_json(&listing);
    }
    for tc in &listing {
        println!("Token {}:", tc.token.display_name());
        if tc.certificates.is_empty() {
            println!("  no certificates");
        }
        for c in &tc.certificates {
            print_cert(c);
        }
    }
    Ok(())
}

fn print_cert(c: &CertSummary) {
    println!("  [id {}] {}", c.id, c.label);
    println!("    subject:  {}", c.subject);
    println!("    issuer:   {}", c.issuer);
    println!("    serial:   {}", c.serial);
    if !c.emails.is_empty() {
        println!("    email:    {}", c.emails.join(", "));
    }
    let mut usage = c.key_usage.join(", ");
    if !c.extended_key_usage.is_empty() {
        usage = format!("{usage}; {}", c.extended_key_usage.join(", "));
    }
    println!("    usage:    {usage}");
    println!(
        "    valid:    {} to {}{}",
        c.not_before,
        c.not_after,
        if c.expired { "  [EXPIRED]" } else { "" }
    );
    let key = match (c.has_private_key, &c.key_label) {
        (Some(true), Some(l)) => format!("on the token (label \"{l}\")"),
        (Some(true), None) => "on the token".to_string(),
        (Some(false), _) => "not on the token".to_string(),
        (None, _) => "hidden until login (run with --pin to check)".to_string(),
    };
    println!("    key:      {key}");
}

/// Writes the selected certificate and the token's CA certificates as PEM.
fn export(
    module: &p11smime::token::Module,
    selector: Option<&p11smime::token::TokenSelector>,
    sel: &str,
    output: Option<&std::path::PathBuf>,
    callbacks: &Terminal,
) -> Result<()> {
    let key: p11smime::token::KeySelector = sel.parse()?;
    let info = module.single_token(selector)?;
    let token = module.open_token(
        &info,
        LoginOptions {
            pin: None,
            force_final_try: false,
            callbacks,
        },
    )?;
    let certs = token.read_certificates()?;
    let chosen: Vec<_> = certs
        .iter()
        .filter(|c| key.matches(c) || p11smime::certinfo::is_ca(&c.certificate))
        .collect();
    if !chosen.iter().any(|c| key.matches(c)) {
        return Err(p11smime::Error::KeyNotFound(format!(
            "no certificate on the token matches {sel}; `p11smime certs` lists labels and ids"
        )));
    }
    let mut pem = String::new();
    for c in chosen {
        pem.push_str(
            &der::EncodePem::to_pem(&c.certificate, der::pem::LineEnding::LF).map_err(|e| {
                p11smime::Error::BadInput(format!("cannot encode a certificate: {e}"))
            })?,
        );
    }
    crate::io::with_output(output, |out| {
        out.write_all(pem.as_bytes())
            .map_err(|e| p11smime::Error::io("cannot write the certificates", e))
    })
}
