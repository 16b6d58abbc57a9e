//! Pulsar's wire contract: the JSON-RPC 2.0 API ([`PulsarApiServer`] / [`PulsarApiClient`]),
//! every request, response and event type, the error codes, and a typed client that connects
//! over the daemon's Unix socket.
//!
//! This crate is an API boundary: additive changes only, every type documented, and nothing
//! heavier than serde, uuid, chrono and the jsonrpsee macros/client (and, for the attach
//! stream, libc, memchr and nix's socket calls), so a desktop app or a CLI can depend on it
//! without compiling PTY, SSH or SQLite code. `docs/protocol.md` is its
//! reference for people and other languages.

pub mod alternate;
mod api;
pub mod client;
mod data;
pub mod error;
mod event;
mod forward;
mod limits;
mod session;
mod session_event;
pub mod socket;
mod status;
pub mod stream;
mod transfer;
mod wait;
mod workspace;
mod workspace_api;

pub use api::{PulsarApiClient, PulsarApiServer};
pub use client::{ConnectError, PulsarClient, connect};
pub use data::Base64Data;
pub use event::OutputEvent;
pub use forward::{
    ForwardId, ForwardInfo, ForwardKind, ForwardSpec, ForwardState, ListForwardsResult,
};
pub use limits::{AppliedLimits, HeldLimit, LimitMechanism, SessionLimits, SessionUsage};
pub use session::{
    AsciicastExport, AttachResult, ClientMode, CreateSessionResult, Cursor, ListSessionsResult,
    LocalSpec, ReceiveOutputResult, RecordingInfo, RecordingStarted, ResizePolicy, ScreenContents,
    ScreenFormat, SendInputResult, SerialSpec, SessionId, SessionInfo, SessionState, SessionType,
    Snapshot, SshAuth, SshResolved, SshSpec, Success,
};
pub use session_event::SessionEvent;
pub use status::{DatabaseStatus, KeeperStatus, Status, UpgradeResult};
pub use transfer::{
    TransferApiClient, TransferApiServer, TransferDirection, TransferId, TransferInfo,
    TransferState,
};
pub use wait::{WaitOn, WaitResult};
pub use workspace::{PaneConfig, Workspace, WorkspaceLayout, WorkspaceSnapshot, WorkspaceUpdate};
pub use workspace_api::{WorkspaceApiClient, WorkspaceApiServer};

/// Method names, for clients that build requests by hand (the line-JSON path, tests).
pub mod method {
    /// Daemon health check.
    pub const GET_STATUS: &str = "get_status";
    /// Start a new session.
    pub const CREATE_SESSION: &str = "create_session";
    /// Register a client on a session.
    pub const ATTACH_SESSION: &str = "attach_session";
    /// Unregister a client.
    pub const DETACH_SESSION: &str = "detach_session";
    /// Type into a session.
    pub const SEND_INPUT: &str = "send_input";
    /// Long-poll a session's output.
    pub const RECEIVE_OUTPUT: &str = "receive_output";
    /// Stream a session's output as events.
    pub const SUBSCRIBE_OUTPUT: &str = "subscribe_output";
    /// End an output stream.
    pub const UNSUBSCRIBE_OUTPUT: &str = "unsubscribe_output";
    /// Notification method that carries [`crate::OutputEvent`]s.
    pub const OUTPUT_NOTIFICATION: &str = "output";
    /// Stream the daemon's session events.
    pub const SUBSCRIBE_EVENTS: &str = "subscribe_events";
    /// End an event stream.
    pub const UNSUBSCRIBE_EVENTS: &str = "unsubscribe_events";
    /// Notification method that carries [`crate::SessionEvent`]s.
    pub const EVENT_NOTIFICATION: &str = "event";
    /// Change a session's terminal size.
    pub const RESIZE_TERMINAL: &str = "resize_terminal";
    /// All sessions.
    pub const LIST_SESSIONS: &str = "list_sessions";
    /// One session.
    pub const GET_SESSION: &str = "get_session";
    /// Kill a session.
    pub const TERMINATE_SESSION: &str = "terminate_session";
    /// Read the current screen without attaching.
    pub const GET_SCREEN: &str = "get_screen";
    /// Wait until a session's output or screen matches a regular expression.
    pub const WAIT_FOR_OUTPUT: &str = "wait_for_output";
    /// Start recording a session to an asciicast file.
    pub const START_RECORDING: &str = "start_recording";
    /// Stop a session's recording.
    pub const STOP_RECORDING: &str = "stop_recording";
    /// A session's stored output as an asciicast recording.
    pub const EXPORT_ASCIICAST: &str = "export_asciicast";
    /// Add a port forward to an SSH session.
    pub const ADD_FORWARD: &str = "add_forward";
    /// Port forwards, of one session or all.
    pub const LIST_FORWARDS: &str = "list_forwards";
    /// Remove a port forward.
    pub const REMOVE_FORWARD: &str = "remove_forward";
    /// Create a workspace.
    pub const WORKSPACE_CREATE: &str = "workspace_create";
    /// One workspace.
    pub const WORKSPACE_GET: &str = "workspace_get";
    /// Workspaces, filtered.
    pub const WORKSPACE_LIST: &str = "workspace_list";
    /// Change a workspace.
    pub const WORKSPACE_UPDATE: &str = "workspace_update";
    /// Delete a workspace.
    pub const WORKSPACE_DELETE: &str = "workspace_delete";
    /// Save a workspace's layout as a snapshot.
    pub const WORKSPACE_SAVE_SNAPSHOT: &str = "workspace_save_snapshot";
    /// A workspace's snapshots.
    pub const WORKSPACE_LIST_SNAPSHOTS: &str = "workspace_list_snapshots";
    /// Restore a workspace's layout from a snapshot.
    pub const WORKSPACE_RESTORE_SNAPSHOT: &str = "workspace_restore_snapshot";
    /// Start copying a file over an SSH session's connection.
    pub const START_TRANSFER: &str = "start_transfer";
    /// The daemon's transfers.
    pub const LIST_TRANSFERS: &str = "list_transfers";
    /// One transfer.
    pub const GET_TRANSFER: &str = "get_transfer";
    /// Cancel a transfer.
    pub const CANCEL_TRANSFER: &str = "cancel_transfer";
}
