//! `p11smime inspect`: a message's layers, recipients and signers, without a PIN.

use super::print_json;
use crate::cli::InspectArgs;
use crate::io;
use crate::ui::Terminal;
use p11smime::Result;
use p11smime::smime::{self, InspectedLayer};
use p11smime::token::{LoginOptions, Module, TokenSelector};
use p11smime::trust::TrustStore;

pub fn run(args: InspectArgs) -> Result<()> {
    let from_stdin = io::is_stdin(args.input.as_deref());
    let input = io::read_input(args.input.as_deref().filter(|_| !from_stdin))?;
    let selector: Option<TokenSelector> =
        args.token.token.as_deref().map(str::parse).transpose()?;
    // The token only adds which certificate matches which recipient: without one, inspect
    // still describes the message.
    let module = Module::open(args.token.module.as_deref()).ok();
    let trust = TrustStore::load(&args.ca, !args.no_system_ca)?;
    let callbacks = Terminal {
        verbose: args.token.verbose,
    };
    let login = LoginOptions {
        pin: None,
        force_final_try: false,
        callbacks: &callbacks,
    };
    let layers = smime::inspect(&input, module.as_ref(), selector.as_ref(), login, &trust)?;
    if args.json {
        return print_json(&layers);
    }
    for (i, layer) in layers.iter().enumerate() {
        print_layer(i + 1, layer, module.is_some());
    }
    Ok(())
}

fn print_layer(n: usize, layer: &InspectedLayer, have_token: bool) {
    match layer {
        InspectedLayer::Encrypted {
            content_type,
            cipher,
            recipients,
        } => {
            println!("layer {n}: encrypted ({content_type}, {cipher})");
            for r in recipients {
                println!("  recipient: {}", r.recipient);
                match (r.matches.is_empty(), have_token) {
                    (false, _) => println!("    on your token: {}", r.matches.join("; ")),
                    (true, true) => println!("    on your token: no matching certificate"),
                    (true, false) => println!("    (no token found to compare with)"),
                }
            }
            println!("  (the content is encrypted: `p11smime decrypt` opens it)");
        }
        InspectedLayer::Signed { form, signers } => {
            println!("layer {n}: signed ({form})");
            for s in signers {
                let who = match s.emails.first() {
                    Some(mail) => format!("{} <{mail}>", s.subject),
                    None => s.subject.clone(),
                };
                let verdict = match (s.signature_valid, s.trusted, &s.problem) {
                    (true, true, _) => "good signature, trusted".to_string(),
                    (_, _, Some(p)) => format!("not verified: {p}"),
                    _ => "not verified".to_string(),
                };
                println!("  signer: {who}");
                if let Some(t) = &s.signing_time {
                    println!("    signed: {t}");
                }
                println!("    {verdict}");
            }
        }
        InspectedLayer::Content { content_type } => println!("layer {n}: content ({content_type})"),
    }
}
