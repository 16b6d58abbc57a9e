//! What can go wrong with a session request. Every variant names the session or the field.

use std::io;
use std::path::PathBuf;

use pulsar_protocol::{SessionId, SessionState};

use crate::backend::{ConnectError, OpenError, SpawnError};

/// A failed session operation.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// No session has that id.
    #[error("session {0} not found")]
    NotFound(SessionId),
    /// The name is taken by a live session.
    #[error("a session named {name:?} already exists ({id})")]
    NameExists {
        /// The requested name.
        name: String,
        /// The session holding it.
        id: SessionId,
    },
    /// The session's state forbids the operation.
    #[error("session {id}: cannot {op}: the session is {state:?}")]
    InvalidState {
        /// The session.
        id: SessionId,
        /// What was attempted.
        op: &'static str,
        /// The state it is in.
        state: SessionState,
    },
    /// A configured limit was reached.
    #[error("cannot {op}: the {limit} limit ({max}) is reached")]
    LimitReached {
        /// What was attempted.
        op: &'static str,
        /// The config key of the limit.
        limit: &'static str,
        /// Its value.
        max: usize,
    },
    /// A request field is invalid.
    #[error("invalid {field}: {reason}")]
    InvalidParam {
        /// The field, as named on the wire.
        field: &'static str,
        /// Why.
        reason: String,
    },
    /// The client is attached read-only.
    #[error("session {id}: cannot {op}: client {client_id:?} is attached read-only")]
    ReadOnly {
        /// The session.
        id: SessionId,
        /// What was attempted.
        op: &'static str,
        /// The client.
        client_id: String,
    },
    /// The client is not attached to the session.
    #[error("session {id}: client {client_id:?} is not attached")]
    NotAttached {
        /// The session.
        id: SessionId,
        /// The client id given.
        client_id: String,
    },
    /// The session could not be started.
    #[error("cannot start session {name:?}: {source}")]
    Spawn {
        /// The session's name.
        name: String,
        /// Why.
        source: SpawnError,
    },
    /// The serial device of a new session does not exist.
    #[error("cannot start session {name:?}: serial device {} does not exist", device.display())]
    DeviceNotFound {
        /// The session's name.
        name: String,
        /// The device path, as given.
        device: PathBuf,
    },
    /// The daemon's user may not open the serial device of a new session.
    #[error(
        "cannot start session {name:?}: permission denied opening serial device {}",
        device.display()
    )]
    DevicePermissionDenied {
        /// The session's name.
        name: String,
        /// The device path, as given.
        device: PathBuf,
    },
    /// The serial device of a new session could not be opened or configured.
    #[error("cannot start session {name:?}: {source}")]
    Device {
        /// The session's name.
        name: String,
        /// Why.
        source: OpenError,
    },
    /// The SSH session could not connect (refused, timed out, unknown host, authentication,
    /// host key, ...); the source says which and names the host.
    #[error("cannot start session {name:?}: {source}")]
    Ssh {
        /// The session's name.
        name: String,
        /// Why (boxed: host-key details are large, and every other error is small).
        source: Box<ConnectError>,
    },
    /// The backend failed an operation.
    #[error("session {id}: {op} failed: {source}")]
    Io {
        /// The session.
        id: SessionId,
        /// What was attempted.
        op: &'static str,
        /// The backend's error.
        source: io::Error,
    },
}
