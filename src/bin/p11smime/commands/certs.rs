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
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default();
    let mut listing = Vec::new();
    for info in module.candidate_tokens(selector.as_ref())? {
        let mut token = module.open_token(
            &info,
            LoginOptions {
                pin: pin.as_ref(),
                force_final_try: args.pin.force_final_try,
                callbacks: &callbacks,
            },
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
