//! Binding the Unix socket safely, and the accept loop that vets every peer.
//!
//! The directory is created 0700 and the socket chmod-ed 0600, so the filesystem keeps other
//! users out; the accept loop checks `SO_PEERCRED` as well, so even a loosened mode (or a
//! socket passed in by a supervisor) never lets another uid in. That check happens before a
//! single byte is read, so it covers both framings.

use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::net::{UnixListener, UnixStream};

use super::Peer;
use super::connection::{self, ConnectionContext};
use crate::audit::AuditRecord;
use crate::shutdown::Shutdown;

/// Why the socket could not be bound.
#[derive(Debug, thiserror::Error)]
pub enum BindError {
    /// Another daemon answers on the path.
    #[error(
        "another Pulsar daemon is already listening on {0}; stop it first or choose another --socket"
    )]
    AlreadyRunning(PathBuf),
    /// Something that is not a socket is in the way.
    #[error("{0} exists and is not a socket; refusing to replace it")]
    NotASocket(PathBuf),
    /// The socket's directory belongs to someone else.
    #[error("socket directory {path} is owned by uid {owner}, not by this user (uid {me})")]
    ForeignDirectory {
        /// The directory.
        path: PathBuf,
        /// Its owner.
        owner: u32,
        /// Our uid.
        me: u32,
    },
    /// A filesystem or socket call failed.
    #[error("cannot {op} {path}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The path.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
}

/// The bound socket. Removes its file when dropped, if the file is still the one it bound.
#[derive(Debug)]
pub struct SocketListener {
    listener: UnixListener,
    path: PathBuf,
    /// Inode of the socket file we created, so we never delete a successor's socket.
    inode: u64,
}

impl SocketListener {
    /// Binds `path`: creates its directory (0700), replaces a stale socket left by a dead
    /// daemon, refuses if a live daemon answers there, and makes the socket 0600.
    pub async fn bind(path: &Path) -> Result<Self, BindError> {
        let io_err = |op, path: &Path| {
            let path = path.to_owned();
            move |source| BindError::Io { op, path, source }
        };
        let dir = path.parent().unwrap_or(Path::new("/"));
        if !dir.exists() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(io_err("create directory", dir))?;
        }
        let me = nix::unistd::geteuid().as_raw();
        let meta = std::fs::metadata(dir).map_err(io_err("inspect directory", dir))?;
        if meta.uid() != me && me != 0 {
            return Err(BindError::ForeignDirectory {
                path: dir.to_owned(),
                owner: meta.uid(),
                me,
            });
        }

        match std::fs::symlink_metadata(path) {
            Ok(meta) if meta.file_type().is_socket() => {
                if UnixStream::connect(path).await.is_ok() {
                    return Err(BindError::AlreadyRunning(path.to_owned()));
                }
                tracing::info!(socket = %path.display(), "replacing stale socket from a daemon that is gone");
                std::fs::remove_file(path).map_err(io_err("remove stale socket", path))?;
            }
            Ok(_) => return Err(BindError::NotASocket(path.to_owned())),
            Err(err) if err.kind() == io::ErrorKind::NotFound => {}
            Err(err) => return Err(io_err("inspect", path)(err)),
        }

        let listener = UnixListener::bind(path).map_err(|source| {
            if source.kind() == io::ErrorKind::AddrInUse {
                BindError::AlreadyRunning(path.to_owned())
            } else {
                io_err("bind", path)(source)
            }
        })?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
            .map_err(io_err("chmod", path))?;
        let inode = std::fs::metadata(path)
            .map_err(io_err("inspect", path))?
            .ino();
        Ok(Self {
            listener,
            path: path.to_owned(),
            inode,
        })
    }

    /// Takes over a listening socket handed over by the daemon before this one (an upgrade):
    /// the same socket file at `path`, never closed in between, so no client is refused.
    pub(crate) fn from_handover(fd: OwnedFd, path: &Path) -> io::Result<Self> {
        let std_listener = std::os::unix::net::UnixListener::from(fd);
        std_listener.set_nonblocking(true)?;
        let inode = std::fs::metadata(path)?.ino();
        Ok(Self {
            listener: UnixListener::from_std(std_listener)?,
            path: path.to_owned(),
            inode,
        })
    }

    /// A duplicate of the listening socket, for handing it to the next daemon; the socket
    /// file is left in place when this listener is dropped.
    pub(crate) fn hand_over(mut self) -> io::Result<OwnedFd> {
        let fd = self.listener.as_fd().try_clone_to_owned()?;
        // The file now belongs to the next daemon.
        self.inode = 0;
        Ok(fd)
    }

    /// Accepts connections until `shutdown`, serving each on its own task; then gives the
    /// listener back (dropping it removes the socket file; [`Self::hand_over`] keeps it).
    pub(crate) async fn run(self, context: Arc<ConnectionContext>, mut shutdown: Shutdown) -> Self {
        let me = nix::unistd::geteuid().as_raw();
        loop {
            let stream = tokio::select! {
                accepted = self.listener.accept() => match accepted {
                    Ok((stream, _)) => stream,
                    Err(err) => {
                        // EMFILE and friends: back off instead of spinning.
                        tracing::warn!("accept failed: {err}");
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                        continue;
                    }
                },
                _ = shutdown.wait() => break,
            };
            let cred = match stream.peer_cred() {
                Ok(cred) => cred,
                Err(err) => {
                    tracing::warn!("refused a connection whose credentials are unknown: {err}");
                    continue;
                }
            };
            if cred.uid() != me {
                tracing::warn!(
                    uid = cred.uid(),
                    pid = ?cred.pid(),
                    "refused a connection from another user"
                );
                context.audit.record(AuditRecord {
                    action: "refused_connection",
                    session_id: None,
                    uid: Some(cred.uid()),
                    pid: cred.pid(),
                    detail: "peer uid differs from the daemon's".to_owned(),
                });
                continue;
            }
            let peer = Peer {
                connection: super::peer::next_connection(),
                uid: cred.uid(),
                pid: cred.pid(),
            };
            tokio::spawn(connection::serve(
                stream,
                peer,
                Arc::clone(&context),
                shutdown.clone(),
            ));
        }
        self
    }
}

impl Drop for SocketListener {
    fn drop(&mut self) {
        let ours = self.inode != 0
            && std::fs::symlink_metadata(&self.path)
                .map(|meta| meta.ino() == self.inode)
                .unwrap_or(false);
        if ours {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}
