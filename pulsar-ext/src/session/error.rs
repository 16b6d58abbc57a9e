//! What can go wrong with a session request. Every variant names the session or the field.

use std::io;

use pulsar_protocol::{SessionId, SessionState};

use crate::backend::{BackendError, ForwardError};

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
    /// The session's backend could not be opened (the program, device or connection).
    #[error("cannot start session {name:?}: {source}")]
    Backend {
        /// The session's name.
        name: String,
        /// Why, as the backend says.
        source: BackendError,
    },
    /// The daemon is stopping and takes no new sessions.
    #[error("cannot {op}: the daemon is stopping")]
    Stopping {
        /// What was attempted.
        op: &'static str,
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
    /// `wait_for_output` saw no match in time.
    #[error(
        "session {id}: no match for the pattern within {timeout_ms} ms (output read up to offset {offset})"
    )]
    WaitTimeout {
        /// The session.
        id: SessionId,
        /// How long it waited.
        timeout_ms: u64,
        /// How far the output was read (the screen's offset for a screen wait).
        offset: u64,
    },
    /// `start_recording` while a recording is on.
    #[error("session {id}: already recording to {}", path.display())]
    RecordingActive {
        /// The session.
        id: SessionId,
        /// The file it records to.
        path: std::path::PathBuf,
    },
    /// `stop_recording` while no recording is on.
    #[error("session {id}: not recording")]
    NotRecording {
        /// The session.
        id: SessionId,
    },
    /// The recording file could not be created or opened.
    #[error("session {id}: cannot record to {}: {source}", path.display())]
    RecordingFile {
        /// The session.
        id: SessionId,
        /// The file.
        path: std::path::PathBuf,
        /// Why.
        source: io::Error,
    },
    /// A port forward could not be added or removed.
    #[error("session {id}: {source}")]
    Forward {
        /// The session.
        id: SessionId,
        /// Why, as the backend says.
        source: ForwardError,
    },
    /// No session has a forward with that id.
    #[error("forward {0} not found")]
    ForwardNotFound(pulsar_protocol::ForwardId),
}
