//! One file per subcommand, and the small pieces they share.

pub mod agent;
pub mod batch;
pub mod certs;
pub mod completions;
pub mod decrypt;
pub mod doctor;
pub mod encrypt;
pub mod inspect;
pub mod man;
pub mod readers;
pub mod sign;
pub mod tokens;
pub mod verify;

use crate::cli::{AgentUseArgs, PinArgs, TokenArgs};
use p11smime::agent::{Client, socket};
use p11smime::pin::PinSource;
use p11smime::smime::KeyAccess;
use p11smime::token::{Module, TokenSelector};
use p11smime::{Error, Result};
use std::io::Write;

/// Loads the module and parses the token selector.
pub fn open_module(args: &TokenArgs) -> Result<(Module, Option<TokenSelector>)> {
    let selector = args.token.as_deref().map(str::parse).transpose()?;
    let module = Module::open(args.module.as_deref())?;
    if args.verbose {
        eprintln!("p11smime: module {}", module.path().display());
    }
    if let Some(seconds) = args.wait {
        let callbacks = crate::ui::Terminal {
            verbose: args.verbose,
        };
        module.wait_for_token(selector.as_ref(), seconds, &callbacks)?;
    }
    Ok((module, selector))
}

/// How a command reaches its keys: the running agent, or the module loaded here.
pub enum Keys {
    Agent(Box<Client>),
    Direct(Module),
}

impl Keys {
    pub fn access(&self) -> KeyAccess<'_> {
        match self {
            Keys::Agent(c) => KeyAccess::Agent(c),
            Keys::Direct(m) => KeyAccess::Module(m),
        }
    }
}

/// The agent when one runs for the token and module asked for (or `--agent auto` starts one),
/// else the module directly; and the token selector.
pub fn keys(
    token: &TokenArgs,
    pin: &PinArgs,
    agent: &AgentUseArgs,
) -> Result<(Keys, Option<TokenSelector>)> {
    let selector: Option<TokenSelector> = token.token.as_deref().map(str::parse).transpose()?;
    if agent.no_agent || agent.agent == "off" {
        return open_module(token).map(|(m, s)| (Keys::Direct(m), s));
    }
    let path = socket::default_path();
    let mut client = Client::connect(&path)?;
    if client.is_none() && agent.agent == "auto" {
        self::agent::start_background(token, pin, std::time::Duration::from_secs(600), false)?;
        client = Client::connect(&path)?;
    }
    if let Some(client) = client {
        match agent_mismatch(&client, token, selector.as_ref()) {
            None => {
                if token.verbose {
                    eprintln!(
                        "p11smime: using the agent (pid {}) for {}",
                        client.status().pid,
                        client.status().token.display_name()
                    );
                }
                return Ok((Keys::Agent(Box::new(client)), selector));
            }
            Some(why) if token.verbose => {
                eprintln!("p11smime: not using the running agent: {why}");
            }
            Some(_) => {}
        }
    }
    open_module(token).map(|(m, s)| (Keys::Direct(m), s))
}

/// Why the running agent is not the one this command asked for, if it is not.
fn agent_mismatch(
    client: &Client,
    token: &TokenArgs,
    selector: Option<&TokenSelector>,
) -> Option<String> {
    let status = client.status();
    if let Some(sel) = selector
        && !sel.matches(&status.token)
    {
        return Some(format!(
            "it holds {}, not the token --token names",
            status.token.display_name()
        ));
    }
    if let Some(module) = &token.module {
        let same = |a: &std::path::Path, b: &std::path::Path| {
            a.canonicalize()
                .ok()
                .is_some_and(|x| b.canonicalize().ok() == Some(x))
        };
        if !same(module, std::path::Path::new(&status.module)) {
            return Some(format!(
                "it loaded {}, not {}",
                status.module,
                module.display()
            ));
        }
    }
    None
}

/// The login options every token command builds from its flags.
pub fn login_options<'a>(
    pin: Option<&'a PinSource>,
    args: &PinArgs,
    callbacks: &'a crate::ui::Terminal,
) -> p11smime::token::LoginOptions<'a> {
    p11smime::token::LoginOptions {
        pin,
        force_final_try: args.force_final_try,
        callbacks,
    }
}

/// Parses `--pin`.
pub fn pin_source(args: &PinArgs) -> Result<Option<PinSource>> {
    args.pin.as_deref().map(str::parse).transpose()
}

/// Prints `value` as pretty JSON on stdout.
pub fn print_json<T: serde::Serialize>(value: &T) -> Result<()> {
    let text = serde_json::to_string_pretty(value)
        .map_err(|e| Error::io("cannot encode JSON", std::io::Error::other(e)))?;
    let mut out = std::io::stdout().lock();
    match writeln!(out, "{text}") {
        // A reader that stopped early (`| head`) is not a failure of the command.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => other.map_err(|e| Error::io("cannot write to stdout", e)),
    }
}
