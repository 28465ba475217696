//! Where the agent's socket lives and who may talk to it.
//!
//! The socket sits in a directory only its user can enter (`$XDG_RUNTIME_DIR/p11smime`, else
//! `$TMPDIR/p11smime-UID`), which is checked, not trusted: it must be ours, not a symbolic link,
//! and closed to group and others. The socket itself is 0600, and the agent also checks the
//! uid of every connecting process with the kernel (SO_PEERCRED on Linux, getpeereid on macOS),
//! so that a loosened mode or a shared directory still lets no other user in.

use crate::error::{Error, Result};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

/// The socket a user's agent listens on: `P11SMIME_AGENT_SOCKET` when set, else `agent.sock`
/// in the directory described above.
pub fn default_path() -> PathBuf {
    if let Some(p) = std::env::var_os("P11SMIME_AGENT_SOCKET").filter(|p| !p.is_empty()) {
        return PathBuf::from(p);
    }
    let runtime = std::env::var_os("XDG_RUNTIME_DIR")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute() && p.is_dir());
    match runtime {
        Some(dir) => dir.join("p11smime").join("agent.sock"),
        None => std::env::temp_dir()
            .join(format!("p11smime-{}", our_uid()))
            .join("agent.sock"),
    }
}

/// The real uid of this process.
pub fn our_uid() -> u32 {
    nix::unistd::getuid().as_raw()
}

/// The uid of the process at the other end of `stream`, as the kernel reports it.
pub fn peer_uid(stream: &UnixStream) -> std::io::Result<u32> {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
        use nix::sys::socket::{getsockopt, sockopt::PeerCredentials};
        getsockopt(stream, PeerCredentials)
            .map(|c| c.uid())
            .map_err(std::io::Error::from)
    }
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    {
        nix::unistd::getpeereid(stream)
            .map(|(uid, _)| uid.as_raw())
            .map_err(std::io::Error::from)
    }
}

/// Makes the socket's directory (0700) if needed and checks that it is safe to use.
pub fn prepare_dir(socket: &Path) -> Result<()> {
    let dir = socket
        .parent()
        .ok_or_else(|| Error::Usage(format!("{} has no directory", socket.display())))?;
    if !dir.exists() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| Error::io(format!("cannot create {}", dir.display()), e))?;
    }
    check_dir(dir)
}

/// The directory must be a real directory of ours that no one else can enter or write.
fn check_dir(dir: &Path) -> Result<()> {
    let meta = std::fs::symlink_metadata(dir)
        .map_err(|e| Error::io(format!("cannot inspect {}", dir.display()), e))?;
    let unsafe_dir = |why: &str| {
        Error::Usage(format!(
            "the agent directory {} {why}; remove it (or fix it) and start the agent again",
            dir.display()
        ))
    };
    if !meta.is_dir() {
        return Err(unsafe_dir("is not a directory"));
    }
    if meta.uid() != our_uid() {
        return Err(unsafe_dir("belongs to another user"));
    }
    if meta.permissions().mode() & 0o077 != 0 {
        return Err(unsafe_dir("is open to other users (it must be mode 0700)"));
    }
    Ok(())
}

/// Restricts the socket file to its owner.
pub fn restrict(socket: &Path) -> Result<()> {
    std::fs::set_permissions(socket, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| Error::io(format!("cannot restrict {}", socket.display()), e))
}

/// The socket's inode, to tell later whether it is still ours (a user logging out removes the
/// runtime directory; another agent may have replaced it).
pub fn identity(socket: &Path) -> Option<(u64, u64)> {
    std::fs::symlink_metadata(socket)
        .ok()
        .map(|m| (m.dev(), m.ino()))
}
