//! What a workspace may hold, checked before anything is kept, and the errors it gives.

use pulsar_protocol::WorkspaceLayout;

/// Why a workspace request was refused.
#[derive(Debug, thiserror::Error)]
pub enum WorkspaceError {
    /// No workspace or snapshot with that id.
    #[error("{field}: no workspace or snapshot {id}")]
    NotFound {
        /// The parameter that named it (`workspace_id`).
        field: &'static str,
        /// The id asked for.
        id: String,
    },
    /// A field is out of its bounds.
    #[error("{field} {reason}")]
    Invalid {
        /// The parameter.
        field: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// Too many of something.
    #[error("at most {max} {limit} are kept")]
    Limit {
        /// What.
        limit: &'static str,
        /// The cap.
        max: usize,
    },
}

const MAX_NAME: usize = 128;
const MAX_TEXT: usize = 4096;
const MAX_ICON: usize = 256;
const MAX_TAGS: usize = 64;
const MAX_TAG: usize = 64;
const MAX_PANES: usize = 256;
const MAX_DEPTH: usize = 16;
const MAX_LABEL: usize = 256;

fn invalid(field: &'static str, reason: impl Into<String>) -> WorkspaceError {
    WorkspaceError::Invalid {
        field,
        reason: reason.into(),
    }
}

/// A workspace's or snapshot's name: 1..=128 characters, no control characters.
pub(super) fn name(field: &'static str, name: &str) -> Result<(), WorkspaceError> {
    if name.trim().is_empty() {
        return Err(invalid(field, "must not be empty"));
    }
    if name.chars().count() > MAX_NAME {
        return Err(invalid(
            field,
            format!("must be at most {MAX_NAME} characters"),
        ));
    }
    if name.chars().any(char::is_control) {
        return Err(invalid(field, "must not contain control characters"));
    }
    Ok(())
}

/// Description, icon and tags, each within its bounds.
pub(super) fn details(
    description: Option<&str>,
    icon: Option<&str>,
    tags: Option<&[String]>,
) -> Result<(), WorkspaceError> {
    if description.is_some_and(|d| d.chars().count() > MAX_TEXT) {
        return Err(invalid(
            "description",
            format!("must be at most {MAX_TEXT} characters"),
        ));
    }
    if icon.is_some_and(|i| i.chars().count() > MAX_ICON) {
        return Err(invalid(
            "icon",
            format!("must be at most {MAX_ICON} characters"),
        ));
    }
    if let Some(tags) = tags {
        if tags.len() > MAX_TAGS {
            return Err(invalid("tags", format!("at most {MAX_TAGS} tags")));
        }
        if tags
            .iter()
            .any(|t| t.is_empty() || t.chars().count() > MAX_TAG)
        {
            return Err(invalid(
                "tags",
                format!("each tag must be 1..={MAX_TAG} characters"),
            ));
        }
    }
    Ok(())
}

/// A layout: at most 256 panes, nested at most 16 deep, sizes not negative, labels short.
pub(super) fn layout(layout: &WorkspaceLayout) -> Result<(), WorkspaceError> {
    if layout.version.len() > MAX_LABEL || layout.layout_type.len() > MAX_LABEL {
        return Err(invalid("layout", "version and type must be short labels"));
    }
    let mut count = 0;
    let mut stack: Vec<(&pulsar_protocol::PaneConfig, usize)> =
        layout.panes.iter().map(|p| (p, 1)).collect();
    while let Some((pane, depth)) = stack.pop() {
        count += 1;
        if count > MAX_PANES {
            return Err(invalid("layout", format!("at most {MAX_PANES} panes")));
        }
        if depth > MAX_DEPTH {
            return Err(invalid(
                "layout",
                format!("panes nest at most {MAX_DEPTH} deep"),
            ));
        }
        // A percentage by the desktop's convention; only nonsense is refused.
        if !pane.size.is_finite() || pane.size < 0.0 {
            return Err(invalid(
                "layout",
                format!("pane {}: size {} is not a share", pane.id, pane.size),
            ));
        }
        let labels = [
            Some(&pane.id),
            pane.session_id.as_ref(),
            pane.direction.as_ref(),
        ];
        if labels.iter().flatten().any(|l| l.len() > MAX_LABEL) {
            return Err(invalid("layout", "pane ids and labels must be short"));
        }
        if let Some(children) = &pane.children {
            stack.extend(children.iter().map(|c| (c, depth + 1)));
        }
    }
    Ok(())
}
