//! The agent process: one logged-in session on one token, served over a Unix socket.
//!
//! The token lives on one thread (the PKCS#11 session is not shared between threads); an
//! acceptor thread checks each connecting uid, and each connection gets a thread that reads
//! frames and hands the requests to the token's thread, one at a time. That thread also wakes
//! every second to end the session when it is due: idle too long, the card gone or the login
//! lost, the socket removed (the user logged out and the runtime directory went with it), or a
//! signal.

use super::AgentStatus;
use super::protocol::{self, ErrorCode, Frame, ProtocolError, SignRequest, kind};
use super::secret::LockedSecret;
use super::socket;
use crate::cms::recipient;
use crate::error::{Error, Result};
use crate::keyops::{KeyBackend, KeyCertificate, KeyError};
use crate::token::{LoginOptions, Module, Token, TokenSelector};
use der::Decode;
use secrecy::SecretString;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::time::{Duration, Instant, SystemTime};

/// How often the agent looks at the clock, the card and its socket.
const TICK: Duration = Duration::from_millis(500);

/// Connections served at once; more are turned away (they come only from our own user).
const MAX_CONNECTIONS: usize = 32;

/// How the agent is to run.
pub struct AgentOptions {
    pub socket: PathBuf,
    /// End the session after this long without a request.
    pub idle_timeout: Duration,
    /// Keep the PIN for keys that want it on every use (CKA_ALWAYS_AUTHENTICATE).
    pub cache_signing_pin: bool,
}

/// Why the agent ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EndReason {
    Stopped,
    IdleTimeout,
    /// The card went away or the login was lost; the text says what the token said.
    TokenError(String),
    /// The socket was removed or replaced (the user logged out, or another agent took over).
    SocketGone,
    Signal(i32),
}

impl std::fmt::Display for EndReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EndReason::Stopped => write!(f, "stopped by `p11smime agent stop`"),
            EndReason::IdleTimeout => write!(f, "idle timeout"),
            EndReason::TokenError(e) => write!(f, "token error: {e}"),
            EndReason::SocketGone => write!(f, "its socket was removed (logout)"),
            EndReason::Signal(s) => write!(f, "signal {s}"),
        }
    }
}

/// A running agent is already answering on `socket`: refuse to start a second one. A socket
/// file nobody answers on is left over from an agent that died, and is removed.
pub fn claim_socket(socket: &Path) -> Result<()> {
    socket::prepare_dir(socket)?;
    match UnixStream::connect(socket) {
        Ok(_) => Err(Error::Usage(format!(
            "an agent is already running on {}; `p11smime agent status` says which token, \
             `p11smime agent stop` ends it",
            socket.display()
        ))),
        Err(_) if socket.exists() => std::fs::remove_file(socket).map_err(|e| {
            Error::io(
                format!("cannot remove the stale socket {}", socket.display()),
                e,
            )
        }),
        Err(_) => Ok(()),
    }
}

/// Logs in to the token `selector` names on `module`, binds the socket, calls `ready`, and
/// serves until the session ends. The PIN comes through `login` as for any command.
pub fn run(
    module: &Module,
    selector: Option<&TokenSelector>,
    login: LoginOptions<'_>,
    options: AgentOptions,
    ready: &mut dyn FnMut(&AgentStatus),
) -> Result<EndReason> {
    harden_process();
    claim_socket(&options.socket)?;
    let info = module.single_token(selector)?;
    let mut token = module.open_token(&info, login)?;
    token.ensure_login()?;
    let certs = token.read_certificates()?;
    let signing_pin = match (options.cache_signing_pin, token.take_pin()) {
        (true, Some(pin)) => Some(LockedSecret::new(pin)),
        _ => None,
    };
    if let Some(pin) = &signing_pin
        && !pin.locked()
    {
        login
            .callbacks
            .warn("the signing PIN could not be locked in memory (RLIMIT_MEMLOCK); it is kept zeroizable only");
    }
    let listener = UnixListener::bind(&options.socket)
        .map_err(|e| Error::io(format!("cannot listen on {}", options.socket.display()), e))?;
    socket::restrict(&options.socket)?;
    let identity = socket::identity(&options.socket);
    let mut agent = Agent {
        token,
        certs,
        signing_pin,
        status: AgentStatus {
            protocol: protocol::VERSION,
            pid: std::process::id(),
            module: module.path().display().to_string(),
            token: info,
            started: unix_now(),
            idle_timeout_secs: options.idle_timeout.as_secs(),
            idle_left_secs: options.idle_timeout.as_secs(),
            cache_signing_pin: options.cache_signing_pin,
            requests: 0,
            socket: options.socket.display().to_string(),
        },
        last_use: Instant::now(),
        idle_timeout: options.idle_timeout,
        callbacks: login.callbacks,
    };
    let (events, inbox) = mpsc::channel();
    spawn_acceptor(listener, events.clone())?;
    spawn_signal_watch(events)?;
    ready(&agent.status);
    agent.log(&format!(
        "serving {} on {} (idle timeout {} s)",
        agent.status.token.display_name(),
        options.socket.display(),
        options.idle_timeout.as_secs()
    ));
    let mut last_answer = None;
    let mut last_check = Instant::now();
    let reason = loop {
        // Checked on time even while requests keep coming (a status poll must not keep an
        // idle session alive).
        if last_check.elapsed() >= TICK {
            last_check = Instant::now();
            if let Some(reason) = agent.due(&options.socket, identity) {
                break reason;
            }
        }
        match inbox.recv_timeout(TICK) {
            Ok(Event::Request {
                frame,
                reply,
                written,
            }) => {
                let (answer, end) = agent.handle(&frame);
                let _ = reply.send(answer);
                if let Some(reason) = end {
                    last_answer = Some(written);
                    break reason;
                }
            }
            Ok(Event::Signal(s)) => break EndReason::Signal(s),
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => break EndReason::Stopped,
        }
    };
    // Logged out before the socket goes: a client that waits for the socket to disappear
    // (`agent stop`) knows the login is over.
    agent.token.logout();
    if socket::identity(&options.socket) == identity {
        let _ = std::fs::remove_file(&options.socket);
    }
    agent.log(&format!("session ended: {reason}"));
    if let Some(written) = last_answer {
        // The answer to the last request is written before the process ends.
        let _ = written.recv_timeout(Duration::from_secs(2));
    }
    Ok(reason)
}

/// No core dumps and no debugger attaching as the same user: the agent holds a logged-in
/// session (and maybe a PIN). Failures are not fatal; the platform may not offer these.
fn harden_process() {
    use nix::sys::resource::{Resource, setrlimit};
    let _ = setrlimit(Resource::RLIMIT_CORE, 0, 0);
    #[cfg(target_os = "linux")]
    let _ = nix::sys::prctl::set_dumpable(false);
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

enum Event {
    /// A request, where to send its answer, and word that the answer was written.
    Request {
        frame: Frame,
        reply: Sender<Frame>,
        written: Receiver<()>,
    },
    Signal(i32),
}

fn spawn_acceptor(listener: UnixListener, events: Sender<Event>) -> Result<()> {
    let uid = socket::our_uid();
    let active = Arc::new(AtomicUsize::new(0));
    std::thread::Builder::new()
        .name("agent-accept".into())
        .spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                match socket::peer_uid(&stream) {
                    Ok(peer) if peer == uid => {}
                    Ok(peer) => {
                        eprintln!("p11smime agent: refused a connection from uid {peer}");
                        let _ = protocol::error_frame(
                            ErrorCode::BadRequest,
                            "this agent serves only the user who started it",
                        )
                        .write_to(&mut stream);
                        continue;
                    }
                    Err(_) => continue,
                }
                if active.load(Ordering::SeqCst) >= MAX_CONNECTIONS {
                    let _ = protocol::error_frame(ErrorCode::Other, "too many connections")
                        .write_to(&mut stream);
                    continue;
                }
                active.fetch_add(1, Ordering::SeqCst);
                let events = events.clone();
                let active = Arc::clone(&active);
                let spawned =
                    std::thread::Builder::new()
                        .name("agent-conn".into())
                        .spawn(move || {
                            serve_connection(stream, &events);
                            active.fetch_sub(1, Ordering::SeqCst);
                        });
                if spawned.is_err() {
                    // The closure (and its counter) is gone with the failed spawn.
                    continue;
                }
            }
        })
        .map(|_| ())
        .map_err(|e| Error::io("cannot start the agent's listener", e))
}

/// Reads requests from one client until it hangs up; a malformed frame gets an error answer
/// and ends the connection.
fn serve_connection(mut stream: UnixStream, events: &Sender<Event>) {
    loop {
        let frame = match Frame::read_from(&mut stream) {
            Ok(f) => f,
            Err(ProtocolError::Closed) | Err(ProtocolError::Io(_)) => return,
            Err(ProtocolError::Version(_)) => {
                let _ = protocol::error_frame(ErrorCode::Version, &protocol::VERSION.to_string())
                    .write_to(&mut stream);
                return;
            }
            Err(e) => {
                let _ = protocol::error_frame(ErrorCode::BadRequest, &e.to_string())
                    .write_to(&mut stream);
                return;
            }
        };
        let (reply, answer) = mpsc::channel();
        let (done, written) = mpsc::channel();
        let request = Event::Request {
            frame,
            reply,
            written,
        };
        if events.send(request).is_err() {
            return;
        }
        let Ok(answer) = answer.recv() else { return };
        let sent = answer.write_to(&mut stream);
        let _ = done.send(());
        if sent.is_err() {
            return;
        }
    }
}

fn spawn_signal_watch(events: Sender<Event>) -> Result<()> {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGTERM, SIGINT, SIGHUP])
        .map_err(|e| Error::io("cannot watch for signals", e))?;
    std::thread::Builder::new()
        .name("agent-signals".into())
        .spawn(move || {
            if let Some(s) = signals.forever().next() {
                let _ = events.send(Event::Signal(s));
            }
        })
        .map(|_| ())
        .map_err(|e| Error::io("cannot watch for signals", e))
}

struct Agent<'c> {
    token: Token<'c>,
    certs: Vec<KeyCertificate>,
    signing_pin: Option<LockedSecret>,
    status: AgentStatus,
    last_use: Instant,
    idle_timeout: Duration,
    callbacks: &'c dyn crate::pin::Callbacks,
}

impl Agent<'_> {
    fn log(&self, message: &str) {
        self.callbacks.verbose(message);
    }

    /// Whether the session should end now, and why.
    fn due(&mut self, socket: &Path, identity: Option<(u64, u64)>) -> Option<EndReason> {
        if self.last_use.elapsed() >= self.idle_timeout {
            return Some(EndReason::IdleTimeout);
        }
        if socket::identity(socket) != identity {
            return Some(EndReason::SocketGone);
        }
        self.token
            .check_session()
            .err()
            .map(|e| EndReason::TokenError(e.to_string()))
    }

    /// Answers one request; `Some` when the session ends with it.
    fn handle(&mut self, frame: &Frame) -> (Frame, Option<EndReason>) {
        if frame.kind != kind::STATUS {
            self.last_use = Instant::now();
        }
        if matches!(frame.kind, kind::DECRYPT_KEY | kind::SIGN) {
            self.status.requests += 1;
        }
        let result = match frame.kind {
            kind::STATUS => Ok(self.status_frame()),
            kind::CERTIFICATES => Ok(self.certificates_frame()),
            kind::DECRYPT_KEY => self.decrypt_key(frame),
            kind::SIGN => self.sign(frame),
            kind::STOP => return (Frame::new(kind::OK), Some(EndReason::Stopped)),
            other => Err(Refused::Bad(format!("unknown request kind {other}"))),
        };
        match result {
            Ok(answer) => (answer, None),
            Err(Refused::Bad(why)) => {
                self.log(&format!("refused a malformed request: {why}"));
                (protocol::error_frame(ErrorCode::BadRequest, &why), None)
            }
            Err(Refused::Answer(frame)) => (frame, None),
            Err(Refused::Error(e)) => self.failure(&e),
        }
    }

    /// The answer to a failed operation. Failures that say nothing about the session (a wrong
    /// key, a PIN problem) leave it running; anything else makes the agent ask the token
    /// whether the session survived, and end it if not.
    fn failure(&mut self, e: &Error) -> (Frame, Option<EndReason>) {
        let harmless = matches!(
            e,
            Error::DecryptFailed
                | Error::Unsupported(_)
                | Error::KeyNotFound(_)
                | Error::BadInput(_)
                | Error::PinIncorrect(_)
                | Error::FinalTryRefused
        );
        if !harmless {
            let gone = match self.token.check_session() {
                Err(gone) => Some(format!("{e}; {gone}")),
                Ok(()) if invalidates_session(e) => Some(e.to_string()),
                Ok(()) => None,
            };
            if let Some(reason) = gone {
                return (
                    protocol::error_frame(ErrorCode::SessionEnded, &reason),
                    Some(EndReason::TokenError(reason)),
                );
            }
        }
        (protocol::frame_for_error(e), None)
    }

    fn status_frame(&mut self) -> Frame {
        let left = self.idle_timeout.saturating_sub(self.last_use.elapsed());
        self.status.idle_left_secs = left.as_secs();
        let json = serde_json::to_vec(&self.status).unwrap_or_default();
        Frame::new(kind::OK).push(&json)
    }

    /// Five fields per certificate: DER, key id, label, private key present ("yes", "no",
    /// "unknown"), the private key's label (empty: none).
    fn certificates_frame(&self) -> Frame {
        let mut f = Frame::new(kind::OK);
        for c in &self.certs {
            f = f
                .push(&c.der)
                .push(&c.id)
                .text(&c.label)
                .text(match c.has_private_key {
                    Some(true) => "yes",
                    Some(false) => "no",
                    None => "unknown",
                })
                .text(c.key_label.as_deref().unwrap_or_default());
        }
        f
    }

    fn certificate(&self, key_id: &[u8]) -> Result<KeyCertificate, Refused> {
        self.certs
            .iter()
            .find(|c| c.id == key_id)
            .cloned()
            .ok_or_else(|| {
                Refused::Error(Error::KeyNotFound(format!(
                    "the agent's token has no certificate with key id {}",
                    hex::encode(key_id)
                )))
            })
    }

    fn decrypt_key(&mut self, frame: &Frame) -> Result<Frame, Refused> {
        let (key_id, recipient) = protocol::read_decrypt_key(frame).map_err(Refused::bad)?;
        let cert = self.certificate(&key_id)?;
        let cek = recipient::unwrap_key(&mut self.token, &cert, &recipient)?;
        Ok(Frame::new(kind::OK).push(&cek))
    }

    fn sign(&mut self, frame: &Frame) -> Result<Frame, Refused> {
        let request = SignRequest::read(frame).map_err(Refused::bad)?;
        check_signed_attributes(request.signed_attributes)?;
        self.certificate(request.key_id)?;
        let context_pin = if self.token.needs_context_login(request.key_id)? {
            Some(self.context_pin(&request)?)
        } else {
            None
        };
        let has_pin = context_pin.is_some();
        self.token.set_context_pin(context_pin);
        let signed = self
            .token
            .sign(request.key_id, request.alg, request.signed_attributes);
        if has_pin {
            self.token.set_context_pin(None);
        }
        let signature = signed.map_err(|e| match e {
            KeyError::Backend(e) => Refused::Error(e),
            KeyError::Failed => Refused::Error(Error::DecryptFailed),
            KeyError::Unsupported(what) => Refused::Error(Error::Unsupported(format!(
                "the token does not support {what}"
            ))),
        })?;
        Ok(Frame::new(kind::OK).push(&signature))
    }

    /// The PIN for a key that wants it on every use: the cached one, else the one the
    /// request brings, after the same checks as any login; else the client is told to ask.
    fn context_pin(&self, request: &SignRequest<'_>) -> Result<SecretString, Refused> {
        if let Some(pin) = &self.signing_pin {
            return Ok(pin.to_secret());
        }
        let flags = self.token.pin_flags();
        let Some(pin) = request.pin else {
            return Err(Refused::Answer(protocol::pin_error_frame(
                ErrorCode::PinNeeded,
                "the signing key wants the PIN for each signature",
                flags,
            )));
        };
        if flags.locked {
            return Err(Refused::Error(Error::PinLocked));
        }
        if flags.final_try && !request.force_final_try {
            return Err(Refused::Error(Error::FinalTryRefused));
        }
        let text =
            std::str::from_utf8(pin).map_err(|_| Refused::Bad("the PIN is not UTF-8".into()))?;
        Ok(SecretString::from(text.to_string()))
    }
}

/// Errors after which the session cannot be trusted to hold the login, whatever the token
/// says when asked again: the card was reset or pulled, the session closed under us.
fn invalidates_session(e: &Error) -> bool {
    match e {
        // "The token went away": what `token` makes of a removal.
        Error::Token(_) => true,
        Error::Pkcs11 { rv, .. } => [
            "CKR_USER_NOT_LOGGED_IN",
            "CKR_SESSION_CLOSED",
            "CKR_SESSION_HANDLE_INVALID",
            "CKR_DEVICE_REMOVED",
            "CKR_DEVICE_ERROR",
            "CKR_TOKEN_NOT_PRESENT",
            "CKR_TOKEN_NOT_RECOGNIZED",
            "CKR_CRYPTOKI_NOT_INITIALIZED",
        ]
        .contains(&rv.as_str()),
        _ => false,
    }
}

/// The agent signs CMS signed attributes only (they carry the content's digest), never
/// arbitrary data: a process of the same user cannot turn it into a signing service for other
/// protocols (a TLS handshake, an SSH challenge).
fn check_signed_attributes(der: &[u8]) -> Result<(), Refused> {
    let attrs = x509_cert::attr::Attributes::from_der(der)
        .map_err(|_| Refused::Bad("the agent signs only CMS signed attributes".into()))?;
    let has = |oid| attrs.iter().any(|a| a.oid == oid);
    if has(crate::cms::signed::ATTR_MESSAGE_DIGEST) && has(crate::cms::signed::ATTR_CONTENT_TYPE) {
        Ok(())
    } else {
        Err(Refused::Bad(
            "signed attributes without contentType and messageDigest".into(),
        ))
    }
}

/// Why a request got no OK answer.
enum Refused {
    /// Malformed or not allowed.
    Bad(String),
    /// A ready answer (PIN needed).
    Answer(Frame),
    /// The operation failed.
    Error(Error),
}

impl Refused {
    fn bad(e: ProtocolError) -> Self {
        Refused::Bad(e.to_string())
    }
}

impl From<Error> for Refused {
    fn from(e: Error) -> Self {
        Refused::Error(e)
    }
}
