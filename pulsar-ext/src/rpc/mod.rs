//! The JSON-RPC server on the Unix socket: the only module that knows JSON-RPC.
//!
//! `listener` binds the socket safely and accepts connections (refusing other uids);
//! `connection` sniffs each connection's first byte and serves it either as a WebSocket
//! (jsonrpsee) or as newline-delimited JSON (`line`); `handlers` implements the API on the
//! session core; `error` maps session errors to JSON-RPC error objects.

mod connection;
mod error;
mod handlers;
mod line;
mod listener;
mod peer;

pub use handlers::Handlers;
pub use listener::{BindError, SocketListener};
pub use peer::Peer;

pub(crate) use connection::ConnectionContext;

/// The jsonrpsee settings both framings share.
pub(crate) fn server_config(max_request_bytes: u32) -> jsonrpsee::server::ServerConfig {
    ConnectionContext::server_config(max_request_bytes)
}

/// Assembles what every connection shares.
pub(crate) fn connection_context(
    methods: jsonrpsee::Methods,
    service_builder: jsonrpsee::server::TowerServiceBuilder<
        tower::layer::util::Identity,
        tower::layer::util::Identity,
    >,
    stop_handle: jsonrpsee::server::StopHandle,
    sessions: std::sync::Arc<crate::session::SessionManager>,
    max_request_bytes: u32,
    audit: std::sync::Arc<dyn crate::audit::AuditLog>,
) -> ConnectionContext {
    ConnectionContext {
        methods,
        service_builder,
        stop_handle,
        sessions,
        max_request_bytes,
        audit,
    }
}
