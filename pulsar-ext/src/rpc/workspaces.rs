//! The workspace methods, implemented on the workspace book and the session table.

use std::sync::Arc;

use jsonrpsee::Extensions;
use jsonrpsee::core::{RpcResult, async_trait};
use pulsar_protocol::{
    PaneConfig, Workspace, WorkspaceApiServer, WorkspaceLayout, WorkspaceSnapshot, WorkspaceUpdate,
};
use uuid::Uuid;

use super::handlers::peer;
use crate::audit::{AuditLog, AuditRecord};
use crate::config::RestorePolicy;
use crate::persist::revive_forwards;
use crate::session::SessionManager;
use crate::store::Store;
use crate::workspace::{WorkspaceDraft, WorkspaceError, WorkspaceFilter, Workspaces};

/// The server side of [`WorkspaceApiServer`].
pub(crate) struct WorkspaceHandlers {
    pub workspaces: Arc<Workspaces>,
    pub sessions: Arc<SessionManager>,
    /// What a snapshot's stopped sessions become when it is restored.
    pub restore: RestorePolicy,
    pub audit: Arc<dyn AuditLog>,
    /// Where a revived session's saved port forwards are read from.
    pub store: Store,
}

impl WorkspaceHandlers {
    fn audit(&self, ext: &Extensions, action: &'static str, detail: String) {
        let caller = peer(ext);
        self.audit.record(AuditRecord {
            action,
            session_id: None,
            uid: Some(caller.uid),
            pid: caller.pid,
            detail,
        });
    }

    /// Each pane's session made live per the restore policy: live ones kept, stopped ones
    /// started again (`respawn`), kept for their history (`history`) or unlinked (`off`),
    /// and links to sessions that are gone cleared.
    async fn bring_back(&self, layout: &mut WorkspaceLayout) {
        let mut stack: Vec<&mut PaneConfig> = layout.panes.iter_mut().collect();
        while let Some(pane) = stack.pop() {
            if let Some(text) = pane.session_id.clone() {
                let session = Uuid::parse_str(&text)
                    .ok()
                    .and_then(|id| self.sessions.get(id).ok());
                pane.session_id = match session {
                    None => None,
                    Some(session) if session.is_alive() => Some(text),
                    Some(session) => match self.restore {
                        RestorePolicy::Respawn => match self.sessions.revive(session.id()).await {
                            Ok(revived) => {
                                if revived.is_alive() {
                                    revive_forwards(revived.id(), &self.sessions, &self.store)
                                        .await;
                                }
                                Some(text)
                            }
                            Err(err) => {
                                tracing::warn!(session = %text, "restoring a workspace: {err}");
                                Some(text)
                            }
                        },
                        RestorePolicy::History => Some(text),
                        RestorePolicy::Off => None,
                    },
                };
            }
            if let Some(children) = pane.children.as_mut() {
                stack.extend(children.iter_mut());
            }
        }
    }
}

#[async_trait]
impl WorkspaceApiServer for WorkspaceHandlers {
    async fn workspace_create(
        &self,
        ext: &Extensions,
        name: String,
        description: Option<String>,
        icon: Option<String>,
        layout: WorkspaceLayout,
        is_template: Option<bool>,
        tags: Option<Vec<String>>,
    ) -> RpcResult<Workspace> {
        let workspace = self.workspaces.create(WorkspaceDraft {
            name,
            description,
            icon,
            layout,
            is_template: is_template.unwrap_or(false),
            tags,
        })?;
        self.audit(
            ext,
            "workspace_create",
            format!("id={} name={}", workspace.id, workspace.name),
        );
        Ok(workspace)
    }

    async fn workspace_get(&self, id: String) -> RpcResult<Option<Workspace>> {
        Ok(self.workspaces.get(&id))
    }

    async fn workspace_list(
        &self,
        is_template: Option<bool>,
        tags: Option<Vec<String>>,
        search: Option<String>,
    ) -> RpcResult<Vec<Workspace>> {
        Ok(self.workspaces.list(&WorkspaceFilter {
            is_template,
            tags,
            search,
        }))
    }

    async fn workspace_update(
        &self,
        ext: &Extensions,
        id: String,
        request: WorkspaceUpdate,
    ) -> RpcResult<Option<Workspace>> {
        let updated = self.workspaces.update(&id, request)?;
        if updated.is_some() {
            self.audit(ext, "workspace_update", format!("id={id}"));
        }
        Ok(updated)
    }

    async fn workspace_delete(&self, ext: &Extensions, id: String) -> RpcResult<bool> {
        let deleted = self.workspaces.delete(&id);
        if deleted {
            self.audit(ext, "workspace_delete", format!("id={id}"));
        }
        Ok(deleted)
    }

    async fn workspace_save_snapshot(
        &self,
        ext: &Extensions,
        workspace_id: String,
        name: String,
    ) -> RpcResult<WorkspaceSnapshot> {
        let snapshot = self.workspaces.save_snapshot(&workspace_id, name)?;
        self.audit(
            ext,
            "workspace_snapshot",
            format!("workspace={workspace_id} snapshot={}", snapshot.id),
        );
        Ok(snapshot)
    }

    async fn workspace_list_snapshots(
        &self,
        workspace_id: String,
    ) -> RpcResult<Vec<WorkspaceSnapshot>> {
        Ok(self.workspaces.snapshots(&workspace_id)?)
    }

    async fn workspace_restore_snapshot(
        &self,
        ext: &Extensions,
        snapshot_id: String,
    ) -> RpcResult<Option<Workspace>> {
        let Some(mut snapshot) = self.workspaces.snapshot(&snapshot_id) else {
            return Ok(None);
        };
        self.bring_back(&mut snapshot.layout).await;
        let restored = self.workspaces.update(
            &snapshot.workspace_id,
            WorkspaceUpdate {
                layout: Some(snapshot.layout),
                ..WorkspaceUpdate::default()
            },
        );
        let restored = match restored {
            Ok(restored) => restored,
            // The snapshot's layout passed these checks when it was taken.
            Err(WorkspaceError::Invalid { .. }) => None,
            Err(err) => return Err(err.into()),
        };
        if restored.is_some() {
            self.audit(
                ext,
                "workspace_restore",
                format!("workspace={} snapshot={snapshot_id}", snapshot.workspace_id),
            );
        }
        Ok(restored)
    }
}
