//! `p11smime tokens`: what the module sees, initialised or not, with the PIN flags that matter.

use super::{open_module, print_json};
use crate::cli::TokensArgs;
use p11smime::Result;

pub fn run(args: TokensArgs) -> Result<()> {
    let (module, selector) = open_module(&args.token)?;
    let tokens: Vec<_> = module
        .tokens()?
        .into_iter()
        .filter(|t| selector.as_ref().is_none_or(|s| s.matches(t)))
        .collect();
    if args.json {
        return print_json(&tokens);
    }
    if tokens.is_empty() {
        println!("no tokens (module {})", module.path().display());
    }
    for t in &tokens {
        println!("slot {}: {}", t.slot_id, t.slot_description);
        if !t.initialized {
            println!("  (token not initialised)");
            continue;
        }
        println!("  label:        {}", t.label);
        println!("  serial:       {}", t.serial);
        println!("  manufacturer: {}", t.manufacturer);
        println!("  model:        {}", t.model);
        let mut flags = Vec::new();
        if t.login_required {
            flags.push("login required");
        }
        if t.protected_authentication_path {
            flags.push("PIN pad");
        }
        if t.pin_count_low {
            flags.push("PIN COUNT LOW");
        }
        if t.pin_final_try {
            flags.push("PIN FINAL TRY");
        }
        if t.pin_locked {
            flags.push("PIN LOCKED");
        }
        println!(
            "  flags:        {}",
            if flags.is_empty() {
                "-".to_string()
            } else {
                flags.join(", ")
            }
        );
    }
    Ok(())
}
