//! The JSON-RPC server on the Unix socket: the only module that knows JSON-RPC.
//!
//! `listener` binds the socket safely and accepts connections (refusing other uids);
//! `connection` sniffs each connection's first byte and serves it either as a WebSocket
//! (jsonrpsee) or as newline-delimited JSON (`line`); `handlers` implements the API on the
//! session core (`workspaces` the workspace methods, `transfers` the transfer methods; `upstream` translates the upstream
//! desktop's dialect on the line framing); `error` maps session errors to JSON-RPC error objects. [`serve`] puts them
//! together: the daemon hands it a bound listener and gets back the task that serves it.

mod connection;
mod desktop;
mod error;
mod handlers;
mod line;
mod listener;
mod peer;
mod transfers;
mod upstream;
mod workspaces;

pub use desktop::{DesktopBindError, DesktopListener};
pub(crate) use handlers::{Handlers, Lifecycle};
pub use listener::{BindError, SocketListener};
pub(crate) use peer::Peer;

use std::sync::Arc;

use jsonrpsee::server::{Server, stop_channel};
use pulsar_protocol::{PulsarApiServer as _, TransferApiServer as _, WorkspaceApiServer as _};
use tokio::task::JoinHandle;

use crate::audit::AuditLog;
use crate::shutdown::Shutdown;
use connection::ConnectionContext;

/// Serves the API on `listener` (and the desktop's output WebSocket on `desktop`, when
/// configured) until `shutdown`: accepts (refusing other uids), frames each
/// connection, and dispatches to `handlers`. When the signal comes the accept loop ends
/// (removing the socket file), WebSocket connections finish their calls in flight and close,
/// and line-JSON connections stop reading; each connection and request in flight holds a
/// clone of `shutdown`, so the daemon's stop can wait for them.
pub(crate) fn serve(
    listener: SocketListener,
    desktop: Option<DesktopListener>,
    handlers: Handlers,
    audit: Arc<dyn AuditLog>,
    max_request_bytes: u32,
    shutdown: Shutdown,
) -> JoinHandle<SocketListener> {
    let sessions = Arc::clone(handlers.sessions());
    let desktop = desktop.map(|desktop| {
        desktop::serve(
            desktop,
            Arc::clone(&sessions),
            Arc::clone(&audit),
            handlers.max_input_bytes(),
            shutdown.clone(),
        )
    });
    let (stop_handle, server) = stop_channel();
    let mut methods = handlers.workspace_handlers().into_rpc();
    methods
        .merge(handlers.transfer_handlers().into_rpc())
        .expect("the workspace and transfer methods have distinct names");
    methods
        .merge(handlers.into_rpc())
        .expect("the workspace and session methods have distinct names");
    let context = Arc::new(ConnectionContext {
        methods: methods.into(),
        service_builder: Server::builder()
            .set_config(ConnectionContext::server_config(max_request_bytes))
            .to_service_builder(),
        stop_handle,
        sessions,
        max_request_bytes,
        audit,
    });
    tokio::spawn(async move {
        let listener = listener.run(context, shutdown).await;
        // Tells jsonrpsee's connections to finish what is in flight and close.
        let _ = server.stop();
        // The desktop listener ends on the same shutdown, which counts it; its socket is not
        // handed over (the next daemon binds the port again once this one has let it go).
        drop(desktop);
        listener
    })
}
