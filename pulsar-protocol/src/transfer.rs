//! File transfers over an SSH session's own connection (SFTP): the transfer's info and the
//! methods' RPC trait (`TransferApiServer`, `TransferApiClient`).

use jsonrpsee::core::RpcResult;
use jsonrpsee::proc_macros::rpc;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::SessionId;

/// A transfer's id.
pub type TransferId = Uuid;

/// Which way a transfer copies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TransferDirection {
    /// From the daemon's host (`local_path`) to the session's host (`remote_path`).
    Upload,
    /// From the session's host (`remote_path`) to the daemon's host (`local_path`).
    Download,
}

/// Where a transfer stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TransferState {
    /// Copying, or waiting for the session's connection to come back.
    Running,
    /// The destination is complete, under its name.
    Done,
    /// Given up; `error` says why. No destination was created or replaced.
    Failed,
    /// Cancelled by `cancel_transfer`; no destination was created or replaced.
    Cancelled,
}

/// One transfer, as `start_transfer`, `get_transfer` and `list_transfers` show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransferInfo {
    /// Its id.
    pub id: TransferId,
    /// The SSH session whose connection carries it.
    pub session_id: SessionId,
    /// Which way it copies.
    pub direction: TransferDirection,
    /// The file on the daemon's host.
    pub local_path: String,
    /// The file on the session's host (relative paths from the remote user's home).
    pub remote_path: String,
    /// Bytes copied so far (of the destination's temporary file).
    pub bytes: u64,
    /// The source's size; 0 until known.
    pub total: u64,
    /// Where it stands.
    pub state: TransferState,
    /// Why it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// File transfers on SSH sessions. They run in the daemon, whether or not any client is
/// attached; see docs/protocol.md.
#[rpc(server, client)]
pub trait TransferApi {
    /// Starts copying one file; answers once the source and destination are checked (an
    /// existing destination is error 1037 unless `overwrite`; a session that is not SSH is
    /// 1038), with the transfer `running`.
    #[method(name = "start_transfer", param_kind = map, with_extensions)]
    async fn start_transfer(
        &self,
        session_id: SessionId,
        direction: TransferDirection,
        local_path: String,
        remote_path: String,
        overwrite: Option<bool>,
    ) -> RpcResult<TransferInfo>;

    /// Every transfer this daemon knows (of one session, when given), oldest first.
    #[method(name = "list_transfers", param_kind = map)]
    async fn list_transfers(&self, session_id: Option<SessionId>) -> RpcResult<Vec<TransferInfo>>;

    /// One transfer; 1036 if unknown.
    #[method(name = "get_transfer", param_kind = map)]
    async fn get_transfer(&self, transfer_id: TransferId) -> RpcResult<TransferInfo>;

    /// Cancels a running transfer (its temporary file is removed) and answers its info; one
    /// already over is answered as it is. 1036 if unknown.
    #[method(name = "cancel_transfer", param_kind = map, with_extensions)]
    async fn cancel_transfer(&self, transfer_id: TransferId) -> RpcResult<TransferInfo>;
}
