//! `p11smime agent start|stop|status`, and starting an agent on a command's behalf
//! (`--agent auto`).
//!
//! A background start runs in two processes, because the login belongs to the process that
//! makes it: this one (with the user's terminal) checks the token's PIN flags and reads the PIN
//! from the usual source, then starts `p11smime agent start --foreground --notify-ready` in its
//! own process group with the PIN on a pipe to its stdin. That process logs in, binds the
//! socket and answers on stdout with one protocol frame: OK with its status, or the error (a
//! wrong PIN, say), which this side reports as its own. Its log goes to `agent.log` beside the
//! socket.

use super::{open_module, print_json};
use crate::cli::{AgentAction, AgentArgs, AgentStartArgs, AgentStatusArgs, PinArgs, TokenArgs};
use crate::ui::Terminal;
use p11smime::agent::protocol::{self, Frame, kind};
use p11smime::agent::{AgentOptions, AgentStatus, Client, server, socket};
use p11smime::{Error, Result};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::Duration;

pub fn run(args: AgentArgs) -> Result<()> {
    match args.action {
        AgentAction::Start(a) if a.foreground => foreground(&a),
        AgentAction::Start(a) => {
            let idle = parse_duration(&a.idle_timeout)?;
            let status = start_background(&a.token, &a.pin, idle, a.cache_signing_pin)?;
            eprintln!(
                "p11smime: agent started for {} (pid {}); it ends after {} idle, on card removal, \
                 or with `p11smime agent stop`",
                status.token.display_name(),
                status.pid,
                human(status.idle_timeout_secs)
            );
            Ok(())
        }
        AgentAction::Stop => stop(),
        AgentAction::Status(a) => status(&a),
    }
}

fn stop() -> Result<()> {
    let path = socket::default_path();
    match Client::connect(&path)? {
        Some(client) => {
            let name = client.status().token.display_name();
            client.stop()?;
            eprintln!("p11smime: agent stopped; logged out of {name}");
        }
        None => eprintln!("p11smime: no agent is running"),
    }
    Ok(())
}

fn status(args: &AgentStatusArgs) -> Result<()> {
    let path = socket::default_path();
    let Some(client) = Client::connect(&path)? else {
        return Err(Error::NoAgent(path.display().to_string()));
    };
    let s = client.status();
    if args.json {
        return print_json(s);
    }
    let age = unix_now().saturating_sub(s.started);
    println!("agent: running (pid {}) on {}", s.pid, s.socket);
    println!("token: {} through {}", s.token.display_name(), s.module);
    println!("logged in: {} ago", human(age));
    println!(
        "idle timeout: {}, {} left",
        human(s.idle_timeout_secs),
        human(s.idle_left_secs)
    );
    println!(
        "signing PIN cached: {}",
        if s.cache_signing_pin { "yes" } else { "no" }
    );
    println!("private-key requests served: {}", s.requests);
    Ok(())
}

/// Runs the agent in this process until its session ends.
fn foreground(args: &AgentStartArgs) -> Result<()> {
    let idle_timeout = parse_duration(&args.idle_timeout)?;
    let pin = super::pin_source(&args.pin)?;
    let (module, selector) = open_module(&args.token)?;
    // The agent's log: what it does and why it ends (never a PIN or a key).
    let callbacks = Terminal { verbose: true };
    let login = super::login_options(pin.as_ref(), &args.pin, &callbacks);
    let options = AgentOptions {
        socket: socket::default_path(),
        idle_timeout,
        cache_signing_pin: args.cache_signing_pin,
    };
    let mut told = false;
    let mut ready = |status: &AgentStatus| {
        told = true;
        if args.notify_ready {
            let json = serde_json::to_vec(status).unwrap_or_default();
            let _ = Frame::new(kind::OK)
                .push(&json)
                .write_to(&mut std::io::stdout().lock());
        } else {
            eprintln!(
                "p11smime: agent serving {} on {} (Ctrl-C ends it)",
                status.token.display_name(),
                status.socket
            );
        }
    };
    match server::run(&module, selector.as_ref(), login, options, &mut ready) {
        Ok(reason) => {
            eprintln!("p11smime: agent ended: {reason}");
            Ok(())
        }
        Err(e) => {
            if args.notify_ready && !told {
                let _ = protocol::frame_for_error(&e).write_to(&mut std::io::stdout().lock());
            }
            Err(e)
        }
    }
}

/// Starts an agent in the background (see the module doc) and waits until it is ready.
pub fn start_background(
    token: &TokenArgs,
    pin_args: &PinArgs,
    idle_timeout: Duration,
    cache_signing_pin: bool,
) -> Result<AgentStatus> {
    let path = socket::default_path();
    if let Some(client) = Client::connect(&path)? {
        return Ok(client.status().clone());
    }
    socket::prepare_dir(&path)?;
    let (module, selector) = open_module(token)?;
    let info = module.single_token(selector.as_ref())?;
    let callbacks = Terminal {
        verbose: token.verbose,
    };
    let pin_source = super::pin_source(pin_args)?;
    let login = super::login_options(pin_source.as_ref(), pin_args, &callbacks);
    let pin = p11smime::token::ask_pin(&info, &login)?;

    let log_path = path.with_file_name("agent.log");
    let log = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .mode(0o600)
        .open(&log_path)
        .map_err(|e| Error::io(format!("cannot open {}", log_path.display()), e))?;
    let exe =
        std::env::current_exe().map_err(|e| Error::io("cannot find the p11smime executable", e))?;
    let mut cmd = Command::new(exe);
    cmd.args(["agent", "start", "--foreground", "--notify-ready"])
        .arg("--idle-timeout")
        .arg(format!("{}s", idle_timeout.as_secs()))
        .arg("--module")
        .arg(module.path())
        // The user answered the flag checks here already.
        .arg("--force-final-try")
        .args(["--pin", if pin.is_some() { "fd:0" } else { "pinpad" }]);
    if let Some(t) = &token.token {
        cmd.arg("--token").arg(t);
    }
    if cache_signing_pin {
        cmd.arg("--cache-signing-pin");
    }
    drop(module);
    let mut child = cmd
        .env_remove("P11SMIME_TOKEN")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::from(log))
        // Its own process group: a Ctrl-C meant for the command that started it does not
        // reach it.
        .process_group(0)
        .spawn()
        .map_err(|e| Error::io("cannot start the agent", e))?;
    if let Some(mut stdin) = child.stdin.take()
        && let Some(pin) = &pin
    {
        use secrecy::ExposeSecret;
        let mut line = zeroize::Zeroizing::new(pin.expose_secret().as_bytes().to_vec());
        line.push(b'\n');
        let _ = stdin.write_all(&line);
    }
    let Some(mut stdout) = child.stdout.take() else {
        return Err(Error::Token("the agent has no output pipe".into()));
    };
    let answer = Frame::read_from(&mut stdout);
    drop(stdout);
    match answer {
        Ok(frame) if frame.kind == kind::OK => {
            let json = frame
                .fields
                .first()
                .map(|f| f.as_slice())
                .unwrap_or_default();
            serde_json::from_slice(json).map_err(|e| {
                Error::Token(format!(
                    "the agent started but its status is unreadable: {e}"
                ))
            })
        }
        Ok(frame) => {
            let _ = child.wait();
            let refusal = protocol::read_refusal(&frame).map_err(|e| {
                Error::Token(format!(
                    "the agent failed to start ({e}); see {}",
                    log_path.display()
                ))
            })?;
            Err(protocol::error_for_refusal(refusal))
        }
        Err(_) => {
            let _ = child.wait();
            Err(Error::Token(format!(
                "the agent ended during start; see {}",
                log_path.display()
            )))
        }
    }
}

/// "600", "600s", "10m", "1h".
fn parse_duration(text: &str) -> Result<Duration> {
    let t = text.trim();
    let (number, unit) = match t.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => t.split_at(i),
        None => (t, "s"),
    };
    let n: u64 = number.parse().map_err(|_| bad_duration(text))?;
    let secs = match unit {
        "s" => n,
        "m" => n.saturating_mul(60),
        "h" => n.saturating_mul(3600),
        _ => return Err(bad_duration(text)),
    };
    if secs == 0 {
        return Err(bad_duration(text));
    }
    Ok(Duration::from_secs(secs))
}

fn bad_duration(text: &str) -> Error {
    Error::Usage(format!(
        "--idle-timeout '{text}': give seconds, or a number with s, m or h (e.g. 10m)"
    ))
}

/// "45 s", "10 min", "1 h 5 min".
fn human(secs: u64) -> String {
    match secs {
        s if s < 60 => format!("{s} s"),
        s if s < 3600 && s % 60 == 0 => format!("{} min", s / 60),
        s if s < 3600 => format!("{} min {} s", s / 60, s % 60),
        s => format!("{} h {} min", s / 3600, (s % 3600) / 60),
    }
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("600").ok(), Some(Duration::from_secs(600)));
        assert_eq!(parse_duration("10m").ok(), Some(Duration::from_secs(600)));
        assert_eq!(parse_duration("2s").ok(), Some(Duration::from_secs(2)));
        assert_eq!(parse_duration("1h").ok(), Some(Duration::from_secs(3600)));
        assert!(parse_duration("0").is_err());
        assert!(parse_duration("10 minutes").is_err());
        assert!(parse_duration("").is_err());
    }
}
