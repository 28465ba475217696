//! The commands' side of the agent: connecting, and [`AgentBackend`], a key backend whose
//! private-key operations are requests to the agent.

use super::AgentStatus;
use super::protocol::{self, ErrorCode, Fields, Frame, ProtocolError, SignRequest, kind};
use crate::cms::recipient::Recipient;
use crate::error::{Error, Result};
use crate::keyops::{KeyBackend, KeyCertificate, KeyError, RsaPadding, SignAlg};
use crate::token::LoginOptions;
use crate::token::login;
use der::Decode;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use x509_cert::Certificate;
use zeroize::Zeroizing;

/// A connection to a running agent.
pub struct Client {
    stream: UnixStream,
    path: PathBuf,
    status: AgentStatus,
}

impl Client {
    /// Connects to the agent on `path`. `Ok(None)` when none is running there: no socket, or
    /// one left over from an agent that ended.
    pub fn connect(path: &Path) -> Result<Option<Client>> {
        let stream = match UnixStream::connect(path) {
            Ok(s) => s,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused
                ) =>
            {
                return Ok(None);
            }
            Err(e) => {
                return Err(Error::Agent(format!(
                    "cannot reach the agent on {}: {e}",
                    path.display()
                )));
            }
        };
        // An agent that is ending may still accept the connection and then close it: that is
        // "no agent" too. A write error is not the end: an agent that refuses us has written
        // why and closed, and that answer is still there to read.
        let _ = Frame::new(kind::STATUS).write_to(&mut &stream);
        let answer = match Frame::read_from(&mut &stream) {
            Err(ProtocolError::Closed) | Err(ProtocolError::Io(_)) => return Ok(None),
            Err(e) => return Err(broken(path, e)),
            Ok(a) => a,
        };
        let status = read_status(path, answer)?;
        Ok(Some(Client {
            stream,
            path: path.to_path_buf(),
            status,
        }))
    }

    /// Ends the agent's session and waits (a few seconds at most) until it has logged out.
    pub fn stop(&self) -> Result<()> {
        self.call(&Frame::new(kind::STOP))?;
        for _ in 0..50 {
            if !self.path.exists() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        Ok(())
    }

    /// The agent's status as of the connection.
    pub fn status(&self) -> &AgentStatus {
        &self.status
    }

    /// Sends `request` and returns the OK answer; an ERROR answer becomes the error it stands
    /// for.
    fn call(&self, request: &Frame) -> Result<Frame> {
        match self.exchange(request)? {
            Ok(answer) => Ok(answer),
            Err(refusal) => Err(protocol::error_for_refusal(refusal)),
        }
    }

    /// Sends `request`; the answer, OK or refused.
    fn exchange(&self, request: &Frame) -> Result<std::result::Result<Frame, protocol::Refusal>> {
        let mut stream = &self.stream;
        request.write_to(&mut stream).map_err(|e| self.broken(e))?;
        let answer = Frame::read_from(&mut stream).map_err(|e| self.broken(e))?;
        match answer.kind {
            kind::OK => Ok(Ok(answer)),
            kind::ERROR => Ok(Err(
                protocol::read_refusal(&answer).map_err(|e| self.broken(e))?
            )),
            _ => Err(self.broken(ProtocolError::Malformed("unknown answer kind"))),
        }
    }

    fn broken(&self, e: ProtocolError) -> Error {
        broken(&self.path, e)
    }

    /// The certificates on the agent's token, private keys visible (the agent is logged in).
    pub fn certificates(&self) -> Result<Vec<KeyCertificate>> {
        let answer = self.call(&Frame::new(kind::CERTIFICATES))?;
        let mut f = Fields::of(&answer);
        let mut out = Vec::new();
        while f.remaining() >= 5 {
            let der = f.bytes().map_err(|e| self.broken(e))?.to_vec();
            let id = f.bytes().map_err(|e| self.broken(e))?.to_vec();
            let label = f.text().map_err(|e| self.broken(e))?.to_string();
            let has_private_key = match f.text().map_err(|e| self.broken(e))? {
                "yes" => Some(true),
                "no" => Some(false),
                _ => None,
            };
            let key_label =
                Some(f.text().map_err(|e| self.broken(e))?.to_string()).filter(|l| !l.is_empty());
            let certificate = Certificate::from_der(&der).map_err(|e| {
                Error::Agent(format!(
                    "the agent sent a certificate that does not parse: {e}"
                ))
            })?;
            out.push(KeyCertificate {
                certificate,
                der,
                id,
                label,
                has_private_key,
                key_label,
            });
        }
        Ok(out)
    }

    /// Opens `recipient`'s content-encryption key with the key `key_id` on the agent's token.
    pub fn decrypt_key(&self, key_id: &[u8], recipient: &Recipient) -> Result<Zeroizing<Vec<u8>>> {
        let answer = self.call(&protocol::decrypt_key_request(key_id, recipient)?)?;
        let mut f = Fields::of(&answer);
        Ok(Zeroizing::new(
            f.bytes().map_err(|e| self.broken(e))?.to_vec(),
        ))
    }

    /// The backend the S/MIME operations use; `login` gives the PIN source and callbacks for
    /// keys that want the PIN on every use.
    pub fn backend<'c>(&'c self, login: LoginOptions<'c>) -> AgentBackend<'c> {
        AgentBackend {
            client: self,
            login,
        }
    }
}

/// What a connection error means to the user.
fn broken(path: &Path, e: ProtocolError) -> Error {
    match e {
        ProtocolError::Version(v) => Error::Agent(format!(
            "the agent on {} speaks protocol version {v}, this p11smime speaks {}: stop it \
             with `p11smime agent stop` and start it again",
            path.display(),
            protocol::VERSION
        )),
        ProtocolError::Closed => Error::Agent(format!(
            "the agent on {} closed the connection (it may have ended: its session ends on \
             idle timeout, card removal or `agent stop`); run the command again",
            path.display()
        )),
        e => Error::Agent(format!("talking to the agent on {}: {e}", path.display())),
    }
}

/// The agent's STATUS answer.
fn read_status(path: &Path, answer: Frame) -> Result<AgentStatus> {
    if answer.kind == kind::ERROR {
        let refusal = protocol::read_refusal(&answer).map_err(|e| broken(path, e))?;
        return Err(protocol::error_for_refusal(refusal));
    }
    let mut f = Fields::of(&answer);
    let json = f.bytes().map_err(|e| broken(path, e))?;
    serde_json::from_slice(json).map_err(|e| {
        Error::Agent(format!(
            "the agent on {} sent a status this p11smime cannot read ({e}); stop it with \
             `p11smime agent stop` and start it again",
            path.display()
        ))
    })
}

/// Private-key operations through the agent.
pub struct AgentBackend<'c> {
    client: &'c Client,
    login: LoginOptions<'c>,
}

impl AgentBackend<'_> {
    /// Signs; for a key that wants the PIN on every use the agent says so, and the PIN is
    /// asked here, after the same checks as any login, then sent with the request once.
    fn sign_request(&self, key_id: &[u8], alg: SignAlg, tbs: &[u8]) -> Result<Vec<u8>> {
        let mut request = SignRequest {
            key_id,
            alg,
            signed_attributes: tbs,
            pin: None,
            force_final_try: false,
        };
        let refusal = match self.client.exchange(&request.frame())? {
            Ok(answer) => return self.signature(&answer),
            Err(r) if r.code == ErrorCode::PinNeeded => r,
            Err(r) => return Err(protocol::error_for_refusal(r)),
        };
        let info = crate::token::TokenInfo {
            pin_count_low: refusal.flags.count_low,
            pin_final_try: refusal.flags.final_try,
            pin_locked: refusal.flags.locked,
            ..self.client.status.token.clone()
        };
        let Some(pin) = login::ask_pin(&info, &self.login)? else {
            return Err(Error::Unsupported(
                "a PIN-pad reader with a key that wants the PIN for each signature, through the \
                 agent; start the agent with --cache-signing-pin or sign with --no-agent"
                    .into(),
            ));
        };
        use secrecy::ExposeSecret;
        let pin_bytes = Zeroizing::new(pin.expose_secret().as_bytes().to_vec());
        request.pin = Some(&pin_bytes);
        request.force_final_try = true;
        let answer = self.client.call(&request.frame())?;
        self.signature(&answer)
    }

    fn signature(&self, answer: &Frame) -> Result<Vec<u8>> {
        let mut f = Fields::of(answer);
        Ok(f.bytes().map_err(|e| self.client.broken(e))?.to_vec())
    }
}

impl KeyBackend for AgentBackend<'_> {
    fn certificates(&mut self) -> Result<Vec<KeyCertificate>> {
        self.client.certificates()
    }

    fn rsa_decrypt(
        &mut self,
        _key_id: &[u8],
        _padding: &RsaPadding,
        _ciphertext: &[u8],
    ) -> std::result::Result<Zeroizing<Vec<u8>>, KeyError> {
        // Never reached: `unwrap_recipient` sends the whole unwrap to the agent.
        Err(KeyError::Unsupported(
            "RSA decryption outside the agent".into(),
        ))
    }

    fn rsa_raw(
        &mut self,
        _key_id: &[u8],
        _input: &[u8],
    ) -> std::result::Result<Zeroizing<Vec<u8>>, KeyError> {
        // The agent offers no raw RSA: that would be a signing oracle.
        Err(KeyError::Unsupported("raw RSA through the agent".into()))
    }

    fn sign(
        &mut self,
        key_id: &[u8],
        alg: SignAlg,
        tbs: &[u8],
    ) -> std::result::Result<Vec<u8>, KeyError> {
        self.sign_request(key_id, alg, tbs).map_err(|e| match e {
            Error::DecryptFailed => KeyError::Failed,
            e => KeyError::Backend(e),
        })
    }

    fn unwrap_recipient(
        &mut self,
        key: &KeyCertificate,
        recipient: &Recipient,
    ) -> Option<Result<Zeroizing<Vec<u8>>>> {
        Some(self.client.decrypt_key(&key.id, recipient))
    }
}
