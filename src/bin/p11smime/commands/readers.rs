//! `p11smime readers`: the smart-card readers PC/SC sees, the card in each, its ATR and type.

use super::print_json;
use crate::cli::ReadersArgs;
use p11smime::Result;
use p11smime::readers::{self, Reader};

pub fn run(args: ReadersArgs) -> Result<()> {
    let list = readers::list()?;
    if args.json {
        return print_json(&list);
    }
    for r in &list {
        print_reader(r);
    }
    Ok(())
}

fn print_reader(r: &Reader) {
    println!("reader: {}", r.name);
    if !r.card_present {
        println!("  card:  none");
        return;
    }
    match (&r.card_type, r.card_model) {
        (Some(kind), Some(model)) => println!("  card:  {kind} ({model})"),
        (Some(kind), None) => println!("  card:  {kind}"),
        (None, _) => println!("  card:  unknown"),
    }
    if let Some(atr) = &r.atr {
        println!("  ATR:   {}", spaced(atr));
    }
    if r.card_mute {
        println!("  state: the card does not answer (reinsert it, the right way round)");
    } else if r.exclusive {
        println!("  state: in use by another program, exclusively (e.g. gpg's scdaemon)");
    } else if r.in_use {
        println!("  state: in use by another program (shared)");
    }
}

/// "3BFD13" as "3B FD 13", as ATRs are usually written.
fn spaced(hex: &str) -> String {
    hex.as_bytes()
        .chunks(2)
        .map(|pair| String::from_utf8_lossy(pair).into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}
