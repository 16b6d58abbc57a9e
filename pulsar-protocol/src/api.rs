//! The RPC trait. jsonrpsee generates `PulsarApiServer` (implemented by the daemon) and
//! `PulsarApiClient` (implemented for any jsonrpsee client) from it.
//!
//! Parameters travel as a JSON object whose keys are the argument names below (positional
//! arrays are accepted too). Methods marked `with_extensions` read the caller's identity from
//! the connection; clients never send it.

// `create_session`'s fields are its parameters (a map on the wire); the generated client and
// server methods take them one by one.
#![allow(clippy::too_many_arguments)]

use jsonrpsee::core::{RpcResult, SubscriptionResult};
use jsonrpsee::proc_macros::rpc;

use crate::{
    AsciicastExport, AttachResult, Base64Data, ClientMode, CreateSessionResult, ForwardId,
    ForwardInfo, ForwardKind, ForwardSpec, ListForwardsResult, ListSessionsResult, OutputEvent,
    ReceiveOutputResult, RecordingStarted, ResizePolicy, ScreenContents, ScreenFormat,
    SendInputResult, SessionEvent, SessionId, SessionInfo, SessionLimits, SessionType, Status,
    Success, UpgradeResult, WaitOn, WaitResult,
};

/// The Pulsar daemon's API.
#[rpc(server, client)]
pub trait PulsarApi {
    /// Daemon health: version, uptime, counts and pid.
    #[method(name = "get_status", param_kind = map)]
    async fn get_status(&self) -> RpcResult<Status>;

    /// Starts a session of `type` and returns its id and info. `name` must be unique among
    /// live sessions (error 1002 otherwise); it defaults to the id's first 8 characters.
    /// `limits` (each absent one from the daemon's defaults) are in force before the
    /// program's first instruction; one no mechanism can hold is an error (1029), and an
    /// SSH or serial session takes only `output_bytes_per_sec` (1028).
    /// `forwards` (SSH sessions only) are added once it runs, as by `add_forward`; if one
    /// fails, the session is ended and the error answered.
    #[method(name = "create_session", param_kind = map, with_extensions)]
    async fn create_session(
        &self,
        name: Option<String>,
        #[argument(rename = "type")] session_type: SessionType,
        cols: Option<u16>,
        rows: Option<u16>,
        resize_policy: Option<ResizePolicy>,
        limits: Option<SessionLimits>,
        forwards: Option<Vec<ForwardSpec>>,
    ) -> RpcResult<CreateSessionResult>;

    /// Registers a client on a session and returns a snapshot of its screen (preceded by
    /// `scrollback_lines` of history when asked). `client_id` defaults to one derived from the
    /// connection; every client a connection registered is detached when it closes.
    #[method(name = "attach_session", param_kind = map, with_extensions)]
    async fn attach_session(
        &self,
        session_id: SessionId,
        client_id: Option<String>,
        mode: Option<ClientMode>,
        scrollback_lines: Option<usize>,
    ) -> RpcResult<AttachResult>;

    /// Unregisters a client; the session keeps running.
    #[method(name = "detach_session", param_kind = map, with_extensions)]
    async fn detach_session(
        &self,
        session_id: SessionId,
        client_id: Option<String>,
    ) -> RpcResult<Success>;

    /// Writes `data` (base64) to the session's input.
    #[method(name = "send_input", param_kind = map, with_extensions)]
    async fn send_input(
        &self,
        session_id: SessionId,
        data: Base64Data,
        client_id: Option<String>,
    ) -> RpcResult<SendInputResult>;

    /// Reads output from absolute offset `since` (default: where this client last read, or
    /// the oldest retained byte), waiting up to `timeout_ms` (default 0) for some to arrive.
    #[method(name = "receive_output", param_kind = map, with_extensions)]
    async fn receive_output(
        &self,
        session_id: SessionId,
        since: Option<u64>,
        max_bytes: Option<usize>,
        timeout_ms: Option<u64>,
        client_id: Option<String>,
    ) -> RpcResult<ReceiveOutputResult>;

    /// Streams [`OutputEvent`]s from absolute offset `since` (default: the current end). With
    /// `snapshot: true` the first event is a snapshot of the screen and the stream continues
    /// from its offset (`since` is then ignored).
    #[subscription(
        name = "subscribe_output" => "output",
        param_kind = map,
        unsubscribe = "unsubscribe_output",
        item = OutputEvent,
        with_extensions
    )]
    async fn subscribe_output(
        &self,
        session_id: SessionId,
        since: Option<u64>,
        snapshot: Option<bool>,
        scrollback_lines: Option<usize>,
    ) -> SubscriptionResult;

    /// Streams the daemon's [`SessionEvent`]s (every session's creation, clients, size, end,
    /// bell, title and finished commands) from now on. A subscriber that falls behind gets
    /// `lagged` and goes on with the newest; it never slows a session.
    #[subscription(
        name = "subscribe_events" => "event",
        unsubscribe = "unsubscribe_events",
        item = SessionEvent,
        param_kind = map
    )]
    async fn subscribe_events(&self) -> SubscriptionResult;

    /// Asks for a terminal size (1..=1000 each way) on behalf of `client_id` (default: the
    /// connection's). The session's resize policy turns the attached interactive clients'
    /// requests into the size; read-only clients are refused (1007).
    #[method(name = "resize_terminal", param_kind = map, with_extensions)]
    async fn resize_terminal(
        &self,
        session_id: SessionId,
        cols: u16,
        rows: u16,
        client_id: Option<String>,
    ) -> RpcResult<SessionInfo>;

    /// The current screen as text or ANSI rows, with the cursor, without attaching.
    #[method(name = "get_screen", param_kind = map)]
    async fn get_screen(
        &self,
        session_id: SessionId,
        format: Option<ScreenFormat>,
    ) -> RpcResult<ScreenContents>;

    /// Waits up to `timeout_ms` until `pattern` (a regular expression) matches the output
    /// after `since` (default: the current end) or, with `on: "screen"`, the current screen;
    /// answers the first match. A timeout is error 1023; a session that ends without a match
    /// is 1003.
    #[method(name = "wait_for_output", param_kind = map)]
    async fn wait_for_output(
        &self,
        session_id: SessionId,
        pattern: String,
        since: Option<u64>,
        timeout_ms: u64,
        on: Option<WaitOn>,
    ) -> RpcResult<WaitResult>;

    /// Starts recording the session to an asciicast v2 file: `path` (absolute; created, never
    /// overwritten) or a new file in the daemon's `recordings_dir`. With `input`, what is
    /// typed is recorded too. Already recording is 1030; a file that cannot be created, 1032.
    #[method(name = "start_recording", param_kind = map)]
    async fn start_recording(
        &self,
        session_id: SessionId,
        path: Option<std::path::PathBuf>,
        input: Option<bool>,
    ) -> RpcResult<RecordingStarted>;

    /// Stops the session's recording (1031 when there is none); the file is complete when
    /// this answers.
    #[method(name = "stop_recording", param_kind = map)]
    async fn stop_recording(&self, session_id: SessionId) -> RpcResult<Success>;

    /// The session's output from offset `since` (default: the oldest byte kept) to `until`
    /// (default: the end) as an asciicast v2 recording made after the fact: output the
    /// daemon saved is timed by when it was saved, output not saved yet by now.
    #[method(name = "export_asciicast", param_kind = map)]
    async fn export_asciicast(
        &self,
        session_id: SessionId,
        since: Option<u64>,
        until: Option<u64>,
    ) -> RpcResult<AsciicastExport>;

    /// Every session the daemon knows, oldest first.
    #[method(name = "list_sessions", param_kind = map)]
    async fn list_sessions(&self) -> RpcResult<ListSessionsResult>;

    /// One session's info.
    #[method(name = "get_session", param_kind = map)]
    async fn get_session(&self, session_id: SessionId) -> RpcResult<SessionInfo>;

    /// Ends the session's process (SIGHUP to its process group, SIGKILL after the grace
    /// period). The session stays listed as `stopped` until the retention period passes.
    #[method(name = "terminate_session", param_kind = map, with_extensions)]
    async fn terminate_session(&self, session_id: SessionId) -> RpcResult<Success>;

    /// Stops the daemon. With `terminate_sessions` (the `pulsar shutdown` default) every
    /// session ends first, and the keeper with them; without, the sessions keep running for
    /// the next daemon, as on SIGTERM. Answered before the daemon stops.
    #[method(name = "shutdown", param_kind = map, with_extensions)]
    async fn shutdown(&self, terminate_sessions: Option<bool>) -> RpcResult<Success>;

    /// Replaces the running daemon by `binary` (default: the daemon's executable as it is on
    /// disk now) without ending a session. Answered once the new daemon is ready to take
    /// over; it then serves on the same socket (`get_status.pid` says which). A binary that
    /// is missing, not executable, exits or speaks another hand-over version is refused and
    /// this daemon serves on.
    #[method(name = "upgrade_daemon", param_kind = map, with_extensions)]
    async fn upgrade_daemon(&self, binary: Option<std::path::PathBuf>) -> RpcResult<UpgradeResult>;

    /// Adds a port forward on SSH session `session_id`'s connection (see [`ForwardSpec`]).
    /// It outlives every client, is saved, and is re-established after the connection
    /// reconnects and after a daemon restart. Errors: 1024 (address in use), 1025 (the server
    /// refused to listen), 1026 (not an SSH session), 1001 (no such session).
    #[method(name = "add_forward", param_kind = map)]
    async fn add_forward(
        &self,
        session_id: SessionId,
        kind: ForwardKind,
        listen: String,
        target: Option<String>,
        allow_non_loopback: Option<bool>,
    ) -> RpcResult<ForwardInfo>;

    /// The port forwards of `session_id`, or of every session.
    #[method(name = "list_forwards", param_kind = map)]
    async fn list_forwards(&self, session_id: Option<SessionId>) -> RpcResult<ListForwardsResult>;

    /// Removes a port forward: its listener closes and its open connections with it. 1027
    /// when no forward has that id.
    #[method(name = "remove_forward", param_kind = map)]
    async fn remove_forward(&self, forward_id: ForwardId) -> RpcResult<Success>;
}
