//! The desktop's output WebSocket: `ws://127.0.0.1:3030/ws/{session_id}`, as the upstream
//! Orbit desktop's terminal reads it, on a loopback TCP port that is off unless configured.
//!
//! A TCP port is open to every local user and every web page the user visits, so each
//! connection is vetted before a byte is read: the peer socket's owner must be the daemon's
//! uid (`owner`, from the kernel's socket table), and the handshake's `Origin`, when there
//! is one, must be in `desktop_websocket_origins`. `stream` serves one vetted connection
//! (over any byte stream); `replay` serves one from bytes in memory, for the fuzz target.

mod owner;
#[cfg(any(test, feature = "fuzzing"))]
mod replay;
mod stream;

#[cfg(any(test, feature = "fuzzing"))]
pub(crate) use replay::answer_connection;

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::audit::{AuditLog, AuditRecord};
use crate::session::SessionManager;
use crate::shutdown::Shutdown;

/// Why the desktop port could not be opened.
#[derive(Debug, thiserror::Error)]
#[error("cannot listen for the desktop on {addr} (config desktop_websocket): {source}")]
pub struct DesktopBindError {
    /// The address.
    addr: SocketAddr,
    /// Why.
    source: std::io::Error,
}

/// The bound desktop port and who may use it.
#[derive(Debug)]
pub struct DesktopListener {
    listener: TcpListener,
    /// Allowed `Origin` header values, compared case-insensitively.
    origins: Vec<String>,
}

impl DesktopListener {
    /// Binds `addr` (a loopback address: `Config` refuses any other).
    pub async fn bind(addr: SocketAddr, origins: Vec<String>) -> Result<Self, DesktopBindError> {
        debug_assert!(addr.ip().is_loopback());
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| DesktopBindError { addr, source })?;
        Ok(Self { listener, origins })
    }
}

/// What every desktop connection shares.
pub(super) struct DesktopContext {
    pub sessions: Arc<SessionManager>,
    pub audit: Arc<dyn AuditLog>,
    pub origins: Vec<String>,
    /// Largest input message, in decoded bytes.
    pub max_input_bytes: usize,
}

impl DesktopContext {
    /// Logs and audits a refused connection.
    fn refused(&self, peer: SocketAddr, uid: Option<u32>, why: String) {
        tracing::warn!(%peer, ?uid, "refused a desktop connection: {why}");
        self.audit.record(AuditRecord {
            action: "refused_desktop_connection",
            session_id: None,
            uid,
            pid: None,
            detail: format!("peer={peer}: {why}"),
        });
    }
}

/// Serves the desktop port until `shutdown`; every connection holds a clone of it.
pub(crate) fn serve(
    listener: DesktopListener,
    sessions: Arc<SessionManager>,
    audit: Arc<dyn AuditLog>,
    max_input_bytes: usize,
    mut shutdown: Shutdown,
) -> JoinHandle<()> {
    let DesktopListener { listener, origins } = listener;
    let context = Arc::new(DesktopContext {
        sessions,
        audit,
        origins,
        max_input_bytes,
    });
    tokio::spawn(async move {
        if let Ok(addr) = listener.local_addr() {
            tracing::info!(%addr, "desktop websocket listening");
        }
        let me = nix::unistd::geteuid().as_raw();
        loop {
            let (stream, peer) = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok(accepted) => accepted,
                    Err(err) => {
                        tracing::warn!("desktop accept failed: {err}");
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                        continue;
                    }
                },
                _ = shutdown.wait() => break,
            };
            let context = Arc::clone(&context);
            let connection = shutdown.clone();
            tokio::spawn(async move {
                let Ok(local) = stream.local_addr() else {
                    return;
                };
                // Before a single byte is read: whose socket is on the other end?
                let owner = tokio::task::spawn_blocking(move || owner::peer_uid(local, peer))
                    .await
                    .unwrap_or_else(|e| Err(std::io::Error::other(e)));
                match owner {
                    Ok(Some(uid)) if uid == me => {
                        let _ = stream.set_nodelay(true);
                        stream::serve(stream, peer, uid, context, connection).await;
                    }
                    Ok(Some(uid)) => context.refused(
                        peer,
                        Some(uid),
                        "peer uid differs from the daemon's".into(),
                    ),
                    Ok(None) => context.refused(peer, None, "peer socket owner unknown".into()),
                    Err(err) => {
                        context.refused(peer, None, format!("cannot read the socket table: {err}"))
                    }
                }
            });
        }
    })
}
