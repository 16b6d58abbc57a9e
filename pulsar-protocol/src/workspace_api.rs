//! The workspace methods' RPC trait: jsonrpsee generates `WorkspaceApiServer` and
//! `WorkspaceApiClient` from it, as for [`crate::PulsarApiServer`].

// The upstream desktop's `workspace_create` has six parameters; the generated code adds
// `self` and the connection's extensions.
#![allow(clippy::too_many_arguments)]

use jsonrpsee::core::RpcResult;
use jsonrpsee::proc_macros::rpc;

use crate::{Workspace, WorkspaceLayout, WorkspaceSnapshot, WorkspaceUpdate};

/// Workspaces: named layouts of panes showing sessions, kept by the daemon, with snapshots.
/// The method names and shapes are the upstream Orbit desktop's. An unknown id is `null`
/// from `workspace_get`, `workspace_update` and `workspace_restore_snapshot` (as upstream),
/// `false` from `workspace_delete`, and error 1021 from the snapshot methods.
#[rpc(server, client)]
pub trait WorkspaceApi {
    /// Creates a workspace (`is_template` defaults to false) and returns it.
    #[method(name = "workspace_create", param_kind = map, with_extensions)]
    async fn workspace_create(
        &self,
        name: String,
        description: Option<String>,
        icon: Option<String>,
        layout: WorkspaceLayout,
        is_template: Option<bool>,
        tags: Option<Vec<String>>,
    ) -> RpcResult<Workspace>;

    /// One workspace, or `null`.
    #[method(name = "workspace_get", param_kind = map)]
    async fn workspace_get(&self, id: String) -> RpcResult<Option<Workspace>>;

    /// The workspaces that pass every filter given, most recently updated first:
    /// `is_template` equal, every one of `tags` present, `search` found (case-insensitively)
    /// in the name or the description.
    #[method(name = "workspace_list", param_kind = map)]
    async fn workspace_list(
        &self,
        is_template: Option<bool>,
        tags: Option<Vec<String>>,
        search: Option<String>,
    ) -> RpcResult<Vec<Workspace>>;

    /// Changes the fields `request` gives; returns the workspace, or `null` if unknown.
    #[method(name = "workspace_update", param_kind = map, with_extensions)]
    async fn workspace_update(
        &self,
        id: String,
        request: WorkspaceUpdate,
    ) -> RpcResult<Option<Workspace>>;

    /// Deletes a workspace and its snapshots; false if there was none. Its sessions go on.
    #[method(name = "workspace_delete", param_kind = map, with_extensions)]
    async fn workspace_delete(&self, id: String) -> RpcResult<bool>;

    /// Saves the workspace's current layout as a snapshot named `name`.
    #[method(name = "workspace_save_snapshot", param_kind = map, with_extensions)]
    async fn workspace_save_snapshot(
        &self,
        workspace_id: String,
        name: String,
    ) -> RpcResult<WorkspaceSnapshot>;

    /// The workspace's snapshots, newest first.
    #[method(name = "workspace_list_snapshots", param_kind = map)]
    async fn workspace_list_snapshots(
        &self,
        workspace_id: String,
    ) -> RpcResult<Vec<WorkspaceSnapshot>>;

    /// Puts the snapshot's layout back into its workspace and returns the workspace, each
    /// pane's session live: running ones as they are, stopped ones started again under the
    /// daemon's `restore = "respawn"` (kept stopped, history readable, under `history`),
    /// and links to sessions that no longer exist cleared. `null` if the snapshot is unknown.
    #[method(name = "workspace_restore_snapshot", param_kind = map, with_extensions)]
    async fn workspace_restore_snapshot(&self, snapshot_id: String)
    -> RpcResult<Option<Workspace>>;
}
