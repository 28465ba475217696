//! The servers a test starts on 127.0.0.1 (a CRL web server, an OCSP responder): a port the OS
//! just handed out, whether anything listens on it, and a guard that kills the server process.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::process::Child;
use std::time::Duration;

fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from((Ipv4Addr::LOCALHOST, port))
}

/// A port that was free a moment ago.
pub fn free_port() -> u16 {
    let listener = TcpListener::bind(loopback(0)).unwrap();
    listener.local_addr().unwrap().port()
}

/// Whether something accepts connections on 127.0.0.1:`port`.
pub fn accepts(port: u16) -> bool {
    TcpStream::connect_timeout(&loopback(port), Duration::from_millis(200)).is_ok()
}

/// A server started as a child process; killed (and reaped) when stopped or dropped.
pub struct ServerProcess {
    child: Option<Child>,
}

impl ServerProcess {
    pub fn new(child: Child) -> Self {
        ServerProcess { child: Some(child) }
    }

    /// Whether it has exited already (most likely the port was taken).
    pub fn exited(&mut self) -> bool {
        self.child.as_mut().unwrap().try_wait().unwrap().is_some()
    }

    /// Kills it; afterwards the port refuses connections.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        self.stop();
    }
}
