//! Workspaces ↔ the store: every change written as a row, and the rows read back at start.
//! The layout travels as JSON text, which the store keeps without looking inside.

use chrono::{DateTime, Utc};
use pulsar_protocol::{Workspace, WorkspaceSnapshot};

use crate::store::{Store, WorkspaceRow, WorkspaceSnapshotRow};
use crate::workspace::WorkspaceSink;

/// Writes workspace changes to the store.
pub(crate) struct StoreWorkspaces {
    store: Store,
}

impl StoreWorkspaces {
    /// A sink writing to `store`.
    pub fn new(store: Store) -> Self {
        Self { store }
    }
}

fn layout_text(layout: &pulsar_protocol::WorkspaceLayout) -> String {
    // A layout is plain data (strings, numbers, lists): it always serialises.
    serde_json::to_string(layout).unwrap_or_else(|_| "{}".to_owned())
}

impl WorkspaceSink for StoreWorkspaces {
    fn saved(&self, workspace: &Workspace) {
        self.store.upsert_workspace(WorkspaceRow {
            id: workspace.id.clone(),
            name: workspace.name.clone(),
            description: workspace.description.clone(),
            icon: workspace.icon.clone(),
            layout: layout_text(&workspace.layout),
            created_at: workspace.created_at.timestamp_millis(),
            updated_at: workspace.updated_at.timestamp_millis(),
            is_template: workspace.is_template,
            tags: workspace.tags.clone(),
        });
    }

    fn deleted(&self, id: &str) {
        self.store.delete_workspace(id);
    }

    fn snapshot_saved(&self, snapshot: &WorkspaceSnapshot) {
        self.store.insert_snapshot(WorkspaceSnapshotRow {
            id: snapshot.id.clone(),
            workspace_id: snapshot.workspace_id.clone(),
            name: snapshot.name.clone(),
            layout: layout_text(&snapshot.layout),
            created_at: snapshot.created_at.timestamp_millis(),
        });
    }

    fn snapshot_deleted(&self, id: &str) {
        self.store.delete_snapshot(id);
    }
}

fn time(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap_or_default()
}

/// The stored workspaces and snapshots as the daemon keeps them. A row whose layout cannot
/// be read is skipped with a warning and left in the database.
pub(crate) fn load_workspaces(
    rows: Vec<WorkspaceRow>,
    snapshots: Vec<WorkspaceSnapshotRow>,
) -> (Vec<Workspace>, Vec<WorkspaceSnapshot>) {
    let workspaces = rows
        .into_iter()
        .filter_map(|row| match serde_json::from_str(&row.layout) {
            Ok(layout) => Some(Workspace {
                id: row.id,
                name: row.name,
                description: row.description,
                icon: row.icon,
                layout,
                created_at: time(row.created_at),
                updated_at: time(row.updated_at),
                is_template: row.is_template,
                tags: row.tags,
            }),
            Err(err) => {
                tracing::warn!(workspace = %row.id, "skipping a workspace whose layout is unreadable: {err}");
                None
            }
        })
        .collect();
    let snapshots = snapshots
        .into_iter()
        .filter_map(|row| match serde_json::from_str(&row.layout) {
            Ok(layout) => Some(WorkspaceSnapshot {
                id: row.id,
                workspace_id: row.workspace_id,
                name: row.name,
                layout,
                created_at: time(row.created_at),
            }),
            Err(err) => {
                tracing::warn!(snapshot = %row.id, "skipping a snapshot whose layout is unreadable: {err}");
                None
            }
        })
        .collect();
    (workspaces, snapshots)
}
