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
