//! The session agent: one logged-in PKCS#11 session per user and token, shared by the commands
//! that user runs, so that a mail client asks for the PIN once per sitting, not per message.
//!
//! `server` is the agent process, `client` the commands' side (a [`crate::keyops::KeyBackend`]
//! that forwards private-key operations), `protocol` the frames between them, `socket` the
//! path and the peer checks, `secret` the locked memory for a cached signing PIN. The agent
//! holds the session, not the PIN (unless `--cache-signing-pin`), and answers only
//! decrypt-the-content-key and sign-these-signed-attributes requests: content never crosses
//! the socket, and key material never leaves the agent.

pub mod client;
pub mod protocol;
pub mod secret;
pub mod server;
pub mod socket;

pub use client::{AgentBackend, Client};
pub use server::{AgentOptions, EndReason};

use crate::token::TokenInfo;

/// What `p11smime agent status` shows; the STATUS answer, as JSON.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct AgentStatus {
    /// The protocol version the agent speaks.
    pub protocol: u8,
    pub pid: u32,
    /// The PKCS#11 module the agent loaded.
    pub module: String,
    pub token: TokenInfo,
    /// When the session started (seconds since the Unix epoch).
    pub started: u64,
    pub idle_timeout_secs: u64,
    /// Seconds until the idle timeout ends the session.
    pub idle_left_secs: u64,
    pub cache_signing_pin: bool,
    /// Private-key requests served so far.
    pub requests: u64,
    pub socket: String,
}
