//! A server for both API traits that decodes every method's parameters and answers nothing:
//! what the fuzz targets (and the tests that replay their corpus) dispatch to.
//!
//! jsonrpsee's generated code parses a call's parameters into the typed arguments before it
//! calls the trait method, so a request that reaches a method here went through the same
//! decoding as one that reaches `Handlers`; the method then says so instead of acting.

use std::path::PathBuf;

use jsonrpsee::core::{RpcResult, SubscriptionResult, async_trait};
use jsonrpsee::types::ErrorObjectOwned;
use jsonrpsee::{Extensions, Methods, PendingSubscriptionSink};
use pulsar_protocol::error as code;
use pulsar_protocol::{
    AsciicastExport, AttachResult, Base64Data, ClientMode, CreateSessionResult, ForwardId,
    ForwardInfo, ForwardKind, ForwardSpec, ListForwardsResult, ListSessionsResult, PulsarApiServer,
    ReceiveOutputResult, RecordingStarted, ResizePolicy, ScreenContents, ScreenFormat,
    SendInputResult, SessionId, SessionInfo, SessionLimits, SessionType, Status, Success,
    TransferApiServer, TransferDirection, TransferId, TransferInfo, UpgradeResult, WaitOn,
    WaitResult, Workspace, WorkspaceApiServer, WorkspaceLayout, WorkspaceSnapshot, WorkspaceUpdate,
};

/// The message of every answer: the parameters decoded, and nothing was done.
pub(crate) const DECODED: &str = "decoded; not served";

/// Every method of the daemon's API, each decoding its parameters and answering
/// [`DECODED`] (subscriptions are rejected after decoding).
pub(crate) fn methods() -> Methods {
    let mut methods: Methods = WorkspaceApiServer::into_rpc(DecodeOnly).into();
    methods
        .merge(PulsarApiServer::into_rpc(DecodeOnly))
        .expect("the workspace and session methods have distinct names");
    methods
        .merge(TransferApiServer::into_rpc(DecodeOnly))
        .expect("the transfer methods have names of their own");
    methods
}

struct DecodeOnly;

fn decoded<T>() -> RpcResult<T> {
    Err(ErrorObjectOwned::owned(
        code::INTERNAL_ERROR,
        DECODED,
        None::<()>,
    ))
}

#[async_trait]
impl PulsarApiServer for DecodeOnly {
    async fn get_status(&self) -> RpcResult<Status> {
        decoded()
    }

    async fn start_recording(
        &self,
        _: SessionId,
        _: Option<PathBuf>,
        _: Option<bool>,
    ) -> RpcResult<RecordingStarted> {
        decoded()
    }

    async fn stop_recording(&self, _: SessionId) -> RpcResult<Success> {
        decoded()
    }

    async fn export_asciicast(
        &self,
        _: SessionId,
        _: Option<u64>,
        _: Option<u64>,
    ) -> RpcResult<AsciicastExport> {
        decoded()
    }

    async fn add_forward(
        &self,
        _: SessionId,
        _: ForwardKind,
        _: String,
        _: Option<String>,
        _: Option<bool>,
    ) -> RpcResult<ForwardInfo> {
        decoded()
    }

    async fn list_forwards(&self, _: Option<SessionId>) -> RpcResult<ListForwardsResult> {
        decoded()
    }

    async fn remove_forward(&self, _: ForwardId) -> RpcResult<Success> {
        decoded()
    }

    async fn create_session(
        &self,
        _: &Extensions,
        _: Option<String>,
        _: SessionType,
        _: Option<u16>,
        _: Option<u16>,
        _: Option<ResizePolicy>,
        _: Option<SessionLimits>,
        _: Option<Vec<ForwardSpec>>,
    ) -> RpcResult<CreateSessionResult> {
        decoded()
    }

    async fn attach_session(
        &self,
        _: &Extensions,
        _: SessionId,
        _: Option<String>,
        _: Option<ClientMode>,
        _: Option<usize>,
    ) -> RpcResult<AttachResult> {
        decoded()
    }

    async fn detach_session(
        &self,
        _: &Extensions,
        _: SessionId,
        _: Option<String>,
    ) -> RpcResult<Success> {
        decoded()
    }

    async fn send_input(
        &self,
        _: &Extensions,
        _: SessionId,
        _: Base64Data,
        _: Option<String>,
    ) -> RpcResult<SendInputResult> {
        decoded()
    }

    async fn receive_output(
        &self,
        _: &Extensions,
        _: SessionId,
        _: Option<u64>,
        _: Option<usize>,
        _: Option<u64>,
        _: Option<String>,
    ) -> RpcResult<ReceiveOutputResult> {
        decoded()
    }

    async fn subscribe_output(
        &self,
        pending: PendingSubscriptionSink,
        _: &Extensions,
        _: SessionId,
        _: Option<u64>,
        _: Option<bool>,
        _: Option<usize>,
    ) -> SubscriptionResult {
        pending.reject(decoded::<()>().unwrap_err()).await;
        Ok(())
    }

    async fn subscribe_events(&self, pending: PendingSubscriptionSink) -> SubscriptionResult {
        pending.reject(decoded::<()>().unwrap_err()).await;
        Ok(())
    }

    async fn resize_terminal(
        &self,
        _: &Extensions,
        _: SessionId,
        _: u16,
        _: u16,
        _: Option<String>,
    ) -> RpcResult<SessionInfo> {
        decoded()
    }

    async fn get_screen(&self, _: SessionId, _: Option<ScreenFormat>) -> RpcResult<ScreenContents> {
        decoded()
    }

    async fn wait_for_output(
        &self,
        _: SessionId,
        _: String,
        _: Option<u64>,
        _: u64,
        _: Option<WaitOn>,
    ) -> RpcResult<WaitResult> {
        decoded()
    }

    async fn list_sessions(&self) -> RpcResult<ListSessionsResult> {
        decoded()
    }

    async fn get_session(&self, _: SessionId) -> RpcResult<SessionInfo> {
        decoded()
    }

    async fn terminate_session(&self, _: &Extensions, _: SessionId) -> RpcResult<Success> {
        decoded()
    }

    async fn shutdown(&self, _: &Extensions, _: Option<bool>) -> RpcResult<Success> {
        decoded()
    }

    async fn upgrade_daemon(&self, _: &Extensions, _: Option<PathBuf>) -> RpcResult<UpgradeResult> {
        decoded()
    }
}

#[async_trait]
impl WorkspaceApiServer for DecodeOnly {
    async fn workspace_create(
        &self,
        _: &Extensions,
        _: String,
        _: Option<String>,
        _: Option<String>,
        _: WorkspaceLayout,
        _: Option<bool>,
        _: Option<Vec<String>>,
    ) -> RpcResult<Workspace> {
        decoded()
    }

    async fn workspace_get(&self, _: String) -> RpcResult<Option<Workspace>> {
        decoded()
    }

    async fn workspace_list(
        &self,
        _: Option<bool>,
        _: Option<Vec<String>>,
        _: Option<String>,
    ) -> RpcResult<Vec<Workspace>> {
        decoded()
    }

    async fn workspace_update(
        &self,
        _: &Extensions,
        _: String,
        _: WorkspaceUpdate,
    ) -> RpcResult<Option<Workspace>> {
        decoded()
    }

    async fn workspace_delete(&self, _: &Extensions, _: String) -> RpcResult<bool> {
        decoded()
    }

    async fn workspace_save_snapshot(
        &self,
        _: &Extensions,
        _: String,
        _: String,
    ) -> RpcResult<WorkspaceSnapshot> {
        decoded()
    }

    async fn workspace_list_snapshots(&self, _: String) -> RpcResult<Vec<WorkspaceSnapshot>> {
        decoded()
    }

    async fn workspace_restore_snapshot(
        &self,
        _: &Extensions,
        _: String,
    ) -> RpcResult<Option<Workspace>> {
        decoded()
    }
}

#[async_trait]
impl TransferApiServer for DecodeOnly {
    async fn start_transfer(
        &self,
        _: &Extensions,
        _: SessionId,
        _: TransferDirection,
        _: String,
        _: String,
        _: Option<bool>,
    ) -> RpcResult<TransferInfo> {
        decoded()
    }

    async fn list_transfers(&self, _: Option<SessionId>) -> RpcResult<Vec<TransferInfo>> {
        decoded()
    }

    async fn get_transfer(&self, _: TransferId) -> RpcResult<TransferInfo> {
        decoded()
    }

    async fn cancel_transfer(&self, _: &Extensions, _: TransferId) -> RpcResult<TransferInfo> {
        decoded()
    }
}
