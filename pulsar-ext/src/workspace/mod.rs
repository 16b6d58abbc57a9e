//! Workspaces: named layouts of panes showing sessions, and snapshots of those layouts.
//!
//! All of them live in memory (they are small and few), so reads never touch the disk;
//! every change is handed to a [`WorkspaceSink`] (the store, through `persist/`). Knows no
//! JSON-RPC and no SQL; which pane shows which session is read from the layouts.

mod validate;

use std::collections::HashMap;
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use chrono::{DateTime, Utc};
use pulsar_protocol::{Workspace, WorkspaceLayout, WorkspaceSnapshot, WorkspaceUpdate};
use uuid::Uuid;

pub use validate::WorkspaceError;

/// Most workspaces kept; creating one more is refused.
pub const MAX_WORKSPACES: usize = 1000;
/// Most snapshots kept per workspace; saving one more forgets the oldest.
pub const MAX_SNAPSHOTS: usize = 100;

/// Told of every change, to make it durable.
pub trait WorkspaceSink: Send + Sync {
    /// A workspace was created or changed.
    fn saved(&self, workspace: &Workspace);
    /// A workspace (and its snapshots) was deleted.
    fn deleted(&self, id: &str);
    /// A snapshot was taken.
    fn snapshot_saved(&self, snapshot: &WorkspaceSnapshot);
    /// A snapshot was forgotten (the oldest, past [`MAX_SNAPSHOTS`]).
    fn snapshot_deleted(&self, id: &str);
}

/// What `workspace_create` asks for.
#[derive(Debug, Clone)]
pub struct WorkspaceDraft {
    /// Its name.
    pub name: String,
    /// Its description.
    pub description: Option<String>,
    /// Its icon.
    pub icon: Option<String>,
    /// Its layout.
    pub layout: WorkspaceLayout,
    /// A template or not.
    pub is_template: bool,
    /// Its tags.
    pub tags: Option<Vec<String>>,
}

/// `workspace_list`'s filters; each one given must pass.
#[derive(Debug, Clone, Default)]
pub struct WorkspaceFilter {
    /// Templates only, or workspaces in use only.
    pub is_template: Option<bool>,
    /// Every one of these tags.
    pub tags: Option<Vec<String>>,
    /// A case-insensitive piece of the name or description.
    pub search: Option<String>,
}

impl WorkspaceFilter {
    fn passes(&self, workspace: &Workspace) -> bool {
        if self
            .is_template
            .is_some_and(|wanted| wanted != workspace.is_template)
        {
            return false;
        }
        if let Some(wanted) = &self.tags {
            let has = workspace.tags.as_deref().unwrap_or_default();
            if !wanted.iter().all(|tag| has.contains(tag)) {
                return false;
            }
        }
        if let Some(search) = self.search.as_deref().filter(|s| !s.is_empty()) {
            let needle = search.to_lowercase();
            let found = workspace.name.to_lowercase().contains(&needle)
                || workspace
                    .description
                    .as_deref()
                    .is_some_and(|d| d.to_lowercase().contains(&needle));
            if !found {
                return false;
            }
        }
        true
    }
}

#[derive(Default)]
struct Book {
    workspaces: HashMap<String, Workspace>,
    /// Every snapshot, by id.
    snapshots: HashMap<String, WorkspaceSnapshot>,
}

impl Book {
    /// A workspace's snapshots, newest first.
    fn snapshots_of(&self, workspace_id: &str) -> Vec<WorkspaceSnapshot> {
        let mut found: Vec<WorkspaceSnapshot> = self
            .snapshots
            .values()
            .filter(|s| s.workspace_id == workspace_id)
            .cloned()
            .collect();
        found.sort_by(|a, b| b.created_at.cmp(&a.created_at).then(b.id.cmp(&a.id)));
        found
    }
}

/// Every workspace and snapshot. Cheap to share (`Arc<Workspaces>`).
pub struct Workspaces {
    book: RwLock<Book>,
    sink: Option<Arc<dyn WorkspaceSink>>,
}

/// Now, at the millisecond precision the store keeps (so times read the same after a
/// restart).
fn now() -> DateTime<Utc> {
    DateTime::from_timestamp_millis(Utc::now().timestamp_millis()).unwrap_or_else(Utc::now)
}

impl Workspaces {
    /// The workspaces and snapshots loaded at start, reporting changes to `sink`.
    pub fn new(
        workspaces: Vec<Workspace>,
        snapshots: Vec<WorkspaceSnapshot>,
        sink: Option<Arc<dyn WorkspaceSink>>,
    ) -> Self {
        let book = Book {
            workspaces: workspaces.into_iter().map(|w| (w.id.clone(), w)).collect(),
            snapshots: snapshots.into_iter().map(|s| (s.id.clone(), s)).collect(),
        };
        Self {
            book: RwLock::new(book),
            sink,
        }
    }

    fn read(&self) -> RwLockReadGuard<'_, Book> {
        self.book.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, Book> {
        self.book.write().unwrap_or_else(|e| e.into_inner())
    }

    fn tell(&self, what: impl FnOnce(&dyn WorkspaceSink)) {
        if let Some(sink) = &self.sink {
            what(sink.as_ref());
        }
    }

    /// Creates a workspace.
    pub fn create(&self, draft: WorkspaceDraft) -> Result<Workspace, WorkspaceError> {
        validate::name("name", &draft.name)?;
        validate::details(
            draft.description.as_deref(),
            draft.icon.as_deref(),
            draft.tags.as_deref(),
        )?;
        validate::layout(&draft.layout)?;
        let at = now();
        let workspace = Workspace {
            id: Uuid::new_v4().to_string(),
            name: draft.name,
            description: draft.description,
            icon: draft.icon,
            layout: draft.layout,
            created_at: at,
            updated_at: at,
            is_template: draft.is_template,
            tags: draft.tags,
        };
        let mut book = self.write();
        if book.workspaces.len() >= MAX_WORKSPACES {
            return Err(WorkspaceError::Limit {
                limit: "workspaces",
                max: MAX_WORKSPACES,
            });
        }
        book.workspaces
            .insert(workspace.id.clone(), workspace.clone());
        drop(book);
        self.tell(|sink| sink.saved(&workspace));
        Ok(workspace)
    }

    /// One workspace.
    pub fn get(&self, id: &str) -> Option<Workspace> {
        self.read().workspaces.get(id).cloned()
    }

    /// The workspaces that pass `filter`, most recently updated first.
    pub fn list(&self, filter: &WorkspaceFilter) -> Vec<Workspace> {
        let mut found: Vec<Workspace> = self
            .read()
            .workspaces
            .values()
            .filter(|w| filter.passes(w))
            .cloned()
            .collect();
        found.sort_by(|a, b| b.updated_at.cmp(&a.updated_at).then(a.id.cmp(&b.id)));
        found
    }

    /// Changes what `update` gives; `None` if there is no such workspace.
    pub fn update(
        &self,
        id: &str,
        update: WorkspaceUpdate,
    ) -> Result<Option<Workspace>, WorkspaceError> {
        if let Some(name) = &update.name {
            validate::name("request.name", name)?;
        }
        validate::details(
            update.description.as_deref(),
            update.icon.as_deref(),
            update.tags.as_deref(),
        )?;
        if let Some(layout) = &update.layout {
            validate::layout(layout)?;
        }
        let mut book = self.write();
        let Some(workspace) = book.workspaces.get_mut(id) else {
            return Ok(None);
        };
        let WorkspaceUpdate {
            name,
            description,
            icon,
            layout,
            tags,
        } = update;
        if let Some(name) = name {
            workspace.name = name;
        }
        if description.is_some() {
            workspace.description = description;
        }
        if icon.is_some() {
            workspace.icon = icon;
        }
        if let Some(layout) = layout {
            workspace.layout = layout;
        }
        if tags.is_some() {
            workspace.tags = tags;
        }
        workspace.updated_at = now().max(workspace.updated_at);
        let workspace = workspace.clone();
        drop(book);
        self.tell(|sink| sink.saved(&workspace));
        Ok(Some(workspace))
    }

    /// Deletes a workspace and its snapshots; false if there was none.
    pub fn delete(&self, id: &str) -> bool {
        let mut book = self.write();
        if book.workspaces.remove(id).is_none() {
            return false;
        }
        book.snapshots.retain(|_, s| s.workspace_id != id);
        drop(book);
        self.tell(|sink| sink.deleted(id));
        true
    }

    /// Saves the workspace's layout as a snapshot named `name`, forgetting the oldest past
    /// [`MAX_SNAPSHOTS`].
    pub fn save_snapshot(
        &self,
        workspace_id: &str,
        name: String,
    ) -> Result<WorkspaceSnapshot, WorkspaceError> {
        validate::name("name", &name)?;
        let mut book = self.write();
        let Some(workspace) = book.workspaces.get(workspace_id) else {
            return Err(WorkspaceError::NotFound {
                field: "workspace_id",
                id: workspace_id.to_owned(),
            });
        };
        let layout = workspace.layout.clone();
        // Strictly after the newest, so "newest first" is never a tie.
        let created_at = match book.snapshots_of(workspace_id).first() {
            Some(newest) => now().max(newest.created_at + chrono::Duration::milliseconds(1)),
            None => now(),
        };
        let snapshot = WorkspaceSnapshot {
            id: Uuid::new_v4().to_string(),
            workspace_id: workspace_id.to_owned(),
            name,
            layout,
            created_at,
        };
        book.snapshots.insert(snapshot.id.clone(), snapshot.clone());
        let forgotten: Vec<String> = book
            .snapshots_of(workspace_id)
            .into_iter()
            .skip(MAX_SNAPSHOTS)
            .map(|s| s.id)
            .collect();
        for id in &forgotten {
            book.snapshots.remove(id);
        }
        drop(book);
        self.tell(|sink| {
            sink.snapshot_saved(&snapshot);
            forgotten.iter().for_each(|id| sink.snapshot_deleted(id));
        });
        Ok(snapshot)
    }

    /// A workspace's snapshots, newest first.
    pub fn snapshots(&self, workspace_id: &str) -> Result<Vec<WorkspaceSnapshot>, WorkspaceError> {
        let book = self.read();
        if !book.workspaces.contains_key(workspace_id) {
            return Err(WorkspaceError::NotFound {
                field: "workspace_id",
                id: workspace_id.to_owned(),
            });
        }
        Ok(book.snapshots_of(workspace_id))
    }

    /// One snapshot.
    pub fn snapshot(&self, id: &str) -> Option<WorkspaceSnapshot> {
        self.read().snapshots.get(id).cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pulsar_protocol::PaneConfig;

    fn pane(id: &str, session: Option<&str>) -> PaneConfig {
        PaneConfig {
            id: id.to_owned(),
            session_id: session.map(str::to_owned),
            size: 100.0,
            direction: None,
            children: None,
            min_size: None,
            max_size: None,
        }
    }

    fn layout(panes: Vec<PaneConfig>) -> WorkspaceLayout {
        WorkspaceLayout {
            version: "1.0.0".to_owned(),
            layout_type: "single".to_owned(),
            panes,
            active_pane: None,
        }
    }

    fn draft(
        name: &str,
        template: bool,
        tags: &[&str],
        description: Option<&str>,
    ) -> WorkspaceDraft {
        WorkspaceDraft {
            name: name.to_owned(),
            description: description.map(str::to_owned),
            icon: None,
            layout: layout(vec![pane("p", None)]),
            is_template: template,
            tags: (!tags.is_empty()).then(|| tags.iter().map(|t| t.to_string()).collect()),
        }
    }

    #[test]
    fn list_honours_every_filter_together() {
        let book = Workspaces::new(Vec::new(), Vec::new(), None);
        book.create(draft("Rust dev", false, &["rust", "work"], None))
            .unwrap();
        book.create(draft("Ops", false, &["work"], Some("Rust servers")))
            .unwrap();
        book.create(draft("Template", true, &["rust", "work"], None))
            .unwrap();
        let names = |filter: WorkspaceFilter| -> Vec<String> {
            let mut names: Vec<String> = book.list(&filter).into_iter().map(|w| w.name).collect();
            names.sort();
            names
        };
        assert_eq!(names(WorkspaceFilter::default()).len(), 3);
        assert_eq!(
            names(WorkspaceFilter {
                is_template: Some(true),
                ..Default::default()
            }),
            ["Template"]
        );
        assert_eq!(
            names(WorkspaceFilter {
                tags: Some(vec!["rust".into(), "work".into()]),
                is_template: Some(false),
                ..Default::default()
            }),
            ["Rust dev"]
        );
        assert_eq!(
            names(WorkspaceFilter {
                search: Some("RUST".into()),
                is_template: Some(false),
                ..Default::default()
            }),
            ["Ops", "Rust dev"]
        );
    }

    #[test]
    fn snapshots_past_the_cap_forget_the_oldest() {
        let book = Workspaces::new(Vec::new(), Vec::new(), None);
        let ws = book.create(draft("w", false, &[], None)).unwrap();
        let first = book.save_snapshot(&ws.id, "first".into()).unwrap();
        for i in 0..MAX_SNAPSHOTS {
            book.save_snapshot(&ws.id, format!("s{i}")).unwrap();
        }
        let kept = book.snapshots(&ws.id).unwrap();
        assert_eq!(kept.len(), MAX_SNAPSHOTS);
        assert!(kept.iter().all(|s| s.id != first.id));
    }

    #[test]
    fn deleting_a_workspace_deletes_its_snapshots() {
        let book = Workspaces::new(Vec::new(), Vec::new(), None);
        let ws = book.create(draft("w", false, &[], None)).unwrap();
        let snap = book.save_snapshot(&ws.id, "s".into()).unwrap();
        assert!(book.delete(&ws.id));
        assert!(!book.delete(&ws.id));
        assert!(book.snapshot(&snap.id).is_none());
    }
}
