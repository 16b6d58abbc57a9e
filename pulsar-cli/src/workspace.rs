//! `pulsar workspace ls|show|rm`: the desktop's workspaces (named layouts of panes showing
//! sessions), and which workspace shows which session, for `pulsar ls`.

use std::collections::HashMap;

use pulsar_protocol::{PaneConfig, Workspace, WorkspaceApiClient as _};

use crate::daemon::Endpoint;
use crate::error::{Exit, Failure, Result};

/// Every workspace in use (not templates), for finding a session's.
pub async fn in_use(client: &pulsar_protocol::PulsarClient) -> Vec<Workspace> {
    // An older daemon has no workspaces: then no session is in one.
    client
        .workspace_list(Some(false), None, None)
        .await
        .unwrap_or_default()
}

/// For each session a workspace's pane shows, that workspace's name (the most recently
/// updated one, if several show it).
pub fn by_session(workspaces: &[Workspace]) -> HashMap<String, String> {
    let mut map = HashMap::new();
    for workspace in workspaces {
        for pane in workspace.layout.all_panes() {
            if let Some(session) = &pane.session_id {
                map.entry(session.clone())
                    .or_insert_with(|| workspace.name.clone());
            }
        }
    }
    map
}

/// `pulsar workspace ls [--json]`.
pub async fn list(endpoint: &Endpoint, json: bool) -> Result<Exit> {
    let client = endpoint.connect().await?;
    let workspaces = client
        .workspace_list(None, None, None)
        .await
        .map_err(|err| Failure::rpc("list workspaces", err))?;
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&workspaces).expect("workspaces serialise")
        );
    } else if workspaces.is_empty() {
        println!("no workspaces (the desktop creates them)");
    } else {
        let mut rows = vec![["NAME", "ID", "PANES", "SESSIONS", "TAGS"].map(String::from)];
        for w in &workspaces {
            let panes = w.layout.all_panes();
            let sessions = panes.iter().filter(|p| p.session_id.is_some()).count();
            let name = if w.is_template {
                format!("{} (template)", w.name)
            } else {
                w.name.clone()
            };
            rows.push([
                name,
                w.id.chars().take(8).collect(),
                panes.len().to_string(),
                sessions.to_string(),
                w.tags.as_deref().unwrap_or_default().join(","),
            ]);
        }
        print!("{}", crate::list::pad(&rows));
    }
    Ok(Exit::Ok)
}

/// The workspace `target` names: an exact id, a unique id prefix, or a unique name.
async fn resolve(client: &pulsar_protocol::PulsarClient, target: &str) -> Result<Workspace> {
    let all = client
        .workspace_list(None, None, None)
        .await
        .map_err(|err| Failure::rpc("list workspaces", err))?;
    let by_name: Vec<&Workspace> = all.iter().filter(|w| w.name == target).collect();
    let by_id: Vec<&Workspace> = all
        .iter()
        .filter(|w| w.id.starts_with(&target.to_lowercase()))
        .collect();
    let found = if by_name.len() == 1 {
        by_name
    } else if by_name.is_empty() {
        by_id
    } else {
        by_name
    };
    match found.as_slice() {
        [one] => Ok((*one).clone()),
        [] => Err(Failure::new(
            Exit::NotFound,
            format!("no workspace named {target:?} or with an id starting so"),
        )),
        many => Err(Failure::usage(format!(
            "{target:?} names {} workspaces: {}; use more of the id",
            many.len(),
            many.iter()
                .map(|w| format!("{} ({})", w.name, &w.id[..8.min(w.id.len())]))
                .collect::<Vec<_>>()
                .join(", ")
        ))),
    }
}

/// `pulsar workspace show NAME|ID [--json]`: its details and its panes, each with the
/// session it shows.
pub async fn show(endpoint: &Endpoint, target: &str, json: bool) -> Result<Exit> {
    let client = endpoint.connect().await?;
    let workspace = resolve(&client, target).await?;
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&workspace).expect("a workspace serialises")
        );
        return Ok(Exit::Ok);
    }
    let names: HashMap<String, String> = crate::rpc::list_sessions(&client)
        .await
        .map(|sessions| {
            sessions
                .into_iter()
                .map(|(_, s)| (s.id.to_string(), s.name))
                .collect()
        })
        .unwrap_or_default();
    println!("name:        {}", workspace.name);
    println!("id:          {}", workspace.id);
    if let Some(description) = &workspace.description {
        println!("description: {description}");
    }
    if let Some(tags) = &workspace.tags {
        println!("tags:        {}", tags.join(", "));
    }
    println!(
        "template:    {}",
        if workspace.is_template { "yes" } else { "no" }
    );
    println!("created:     {}", workspace.created_at.to_rfc3339());
    println!("updated:     {}", workspace.updated_at.to_rfc3339());
    println!(
        "layout:      {} ({})",
        workspace.layout.layout_type, workspace.layout.version
    );
    for pane in &workspace.layout.panes {
        print_pane(pane, 1, &names, workspace.layout.active_pane.as_deref());
    }
    Ok(Exit::Ok)
}

fn print_pane(
    pane: &PaneConfig,
    depth: usize,
    names: &HashMap<String, String>,
    active: Option<&str>,
) {
    let indent = "  ".repeat(depth);
    let session = match &pane.session_id {
        Some(id) => match names.get(id) {
            Some(name) => format!("session {name} ({})", &id[..8.min(id.len())]),
            None => format!("session {id} (gone)"),
        },
        None if pane.children.is_some() => format!(
            "split {}",
            pane.direction.as_deref().unwrap_or("horizontal")
        ),
        None => "empty".to_owned(),
    };
    let focus = if active == Some(pane.id.as_str()) {
        " *"
    } else {
        ""
    };
    println!(
        "{indent}pane {} {:.0}%: {session}{focus}",
        pane.id, pane.size
    );
    for child in pane.children.iter().flatten() {
        print_pane(child, depth + 1, names, active);
    }
}

/// `pulsar workspace rm NAME|ID...`: deletes workspaces and their snapshots; their
/// sessions go on.
pub async fn remove(endpoint: &Endpoint, targets: &[String]) -> Result<Exit> {
    let client = endpoint.connect().await?;
    for target in targets {
        let workspace = resolve(&client, target).await?;
        let deleted = client
            .workspace_delete(workspace.id.clone())
            .await
            .map_err(|err| Failure::rpc(&format!("delete workspace {}", workspace.name), err))?;
        if deleted {
            println!(
                "deleted workspace {} ({})",
                workspace.name,
                &workspace.id[..8]
            );
        } else {
            println!("workspace {} was already gone", workspace.name);
        }
    }
    Ok(Exit::Ok)
}
