//! Workspaces on the wire: a named layout of panes, each pane optionally showing a session,
//! and snapshots of a workspace's layout to go back to.
//!
//! The shapes are the upstream Orbit desktop's (`daemon_client.rs`), field for field, so
//! that it reads every answer with its own serde types. Optional fields that are absent are
//! left out, and every answer is read tolerantly: fields a newer daemon adds are ignored.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// A workspace: a named, tagged layout of panes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Workspace {
    /// Its id (a UUID, as text), chosen by the daemon.
    pub id: String,
    /// Its name (1..=128 characters, no control characters); not necessarily unique.
    pub name: String,
    /// What it is for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// An icon name or emoji, for the desktop's list.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub icon: Option<String>,
    /// Its panes.
    pub layout: WorkspaceLayout,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When it was last changed (created, updated, or restored from a snapshot).
    pub updated_at: DateTime<Utc>,
    /// A template to start new workspaces from, rather than a workspace in use.
    pub is_template: bool,
    /// Labels `workspace_list` can filter by.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags: Option<Vec<String>>,
}

/// A workspace's arrangement of panes. `version` and `type` are the desktop's own
/// (`"1.0.0"`, `"single"` or `"split"`); the daemon keeps them as given.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkspaceLayout {
    /// The layout format's version, as the desktop writes it.
    pub version: String,
    /// `"single"` or `"split"` (the JSON key is `type`).
    #[serde(rename = "type")]
    pub layout_type: String,
    /// The top-level panes; a split pane holds its own in `children`.
    pub panes: Vec<PaneConfig>,
    /// The id of the pane with the focus.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active_pane: Option<String>,
}

/// One pane of a layout.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PaneConfig {
    /// The pane's id, unique in its layout.
    pub id: String,
    /// The session this pane shows (a session id), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_id: Option<String>,
    /// Its share of its parent, in percent (0..=100).
    pub size: f32,
    /// `"horizontal"` or `"vertical"`: how `children` are split.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub direction: Option<String>,
    /// The panes this one is split into.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub children: Option<Vec<PaneConfig>>,
    /// Smallest size in pixels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_size: Option<u32>,
    /// Largest size in pixels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_size: Option<u32>,
}

impl WorkspaceLayout {
    /// Every pane, depth first (a split pane before its children).
    pub fn all_panes(&self) -> Vec<&PaneConfig> {
        let mut out = Vec::new();
        let mut stack: Vec<&PaneConfig> = self.panes.iter().rev().collect();
        while let Some(pane) = stack.pop() {
            out.push(pane);
            if let Some(children) = &pane.children {
                stack.extend(children.iter().rev());
            }
        }
        out
    }
}

/// `workspace_update`'s `request`: the fields to change; absent ones stay as they are.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct WorkspaceUpdate {
    /// A new name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// A new description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// A new icon.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub icon: Option<String>,
    /// A new layout.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub layout: Option<WorkspaceLayout>,
    /// New tags (replacing the old ones).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags: Option<Vec<String>>,
}

/// A saved copy of a workspace's layout, to restore later.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkspaceSnapshot {
    /// The snapshot's id (a UUID, as text).
    pub id: String,
    /// The workspace it was taken of.
    pub workspace_id: String,
    /// Its name.
    pub name: String,
    /// The layout as it was.
    pub layout: WorkspaceLayout,
    /// When it was taken.
    pub created_at: DateTime<Utc>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_layout_reads_and_writes_the_desktop_shape() {
        let text = r#"{"version":"1.0.0","type":"split","panes":[
            {"id":"a","size":50.0,"direction":"vertical","children":[
                {"id":"b","session_id":"s1","size":50.0,"min_size":100},
                {"id":"c","size":50.0,"session_id":null}]},
            {"id":"d","size":50.0}],"active_pane":"b","later":true}"#;
        let layout: WorkspaceLayout = serde_json::from_str(text).unwrap();
        let ids: Vec<&str> = layout.all_panes().iter().map(|p| p.id.as_str()).collect();
        assert_eq!(ids, ["a", "b", "c", "d"]);
        let back = serde_json::to_value(&layout).unwrap();
        assert_eq!(back["type"], "split");
        assert!(back["panes"][1].get("session_id").is_none());
    }
}
