//! `p11smime doctor`: each step as ok / warning / PROBLEM with its fix; exit 6 on a problem.

use super::{pin_source, print_json};
use crate::cli::DoctorArgs;
use crate::ui::Terminal;
use p11smime::doctor::{self, DoctorOptions, Status};
use p11smime::token::TokenSelector;
use p11smime::trust::TrustStore;
use p11smime::{Error, Result};

pub fn run(args: DoctorArgs) -> Result<()> {
    let selector: Option<TokenSelector> =
        args.token.token.as_deref().map(str::parse).transpose()?;
    let pin = pin_source(&args.pin)?;
    let trust = TrustStore::load(&args.ca, !args.no_system_ca)?;
    let callbacks = Terminal {
        verbose: args.token.verbose,
    };
    let checks = doctor::run(&DoctorOptions {
        module: args.token.module.as_deref(),
        token: selector.as_ref(),
        pin: pin.as_ref(),
        login: super::login_options(pin.as_ref(), &args.pin, &callbacks),
        trust: &trust,
    });
    if args.json {
        print_json(&checks)?;
    } else {
        for c in &checks {
            let mark = match c.status {
                Status::Ok => "ok     ",
                Status::Warning => "WARNING",
                Status::Problem => "PROBLEM",
                Status::Skipped => "skipped",
            };
            println!("{mark}  {}: {}", c.step, c.detail);
            if let Some(fix) = &c.fix {
                println!("         fix: {fix}");
            }
        }
    }
    if doctor::all_ok(&checks) {
        Ok(())
    } else {
        let problems = checks
            .iter()
            .filter(|c| c.status == Status::Problem)
            .count();
        Err(Error::Problems(format!(
            "doctor found {problems} problem(s); the fix lines above say what to do"
        )))
    }
}
