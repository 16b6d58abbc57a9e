//! Finding a session by what the user typed: a name, or a unique prefix of its id.
//!
//! Names win over id prefixes: `pulsar attach 3f` means the session named `3f` if there is
//! one, even when another session's id starts with `3f`. Names are unique among live
//! sessions, but a stopped session keeps its name, so among several sessions of that name the
//! live one wins, else the newest. An id prefix that matches several sessions is an error
//! listing them.

use pulsar_protocol::PulsarClient;

use crate::error::{Exit, Failure, Result};
use crate::rpc::{self, Session};

/// Looks `target` up among the daemon's sessions.
pub async fn session(client: &PulsarClient, target: &str) -> Result<Session> {
    let sessions = rpc::list_sessions(client).await?;
    pick(sessions.into_iter().map(|(_, s)| s).collect(), target)
}

/// The session `target` names among `sessions` (oldest first, as the daemon lists them).
pub fn pick(sessions: Vec<Session>, target: &str) -> Result<Session> {
    if target.is_empty() {
        return Err(Failure::usage("a session name or id is needed, got ''"));
    }
    let named: Vec<&Session> = sessions.iter().filter(|s| s.name == target).collect();
    if let Some(live) = named.iter().find(|s| s.is_live()) {
        return Ok((*live).clone());
    }
    if let Some(newest) = named.last() {
        return Ok((*newest).clone());
    }
    let prefix = target.to_ascii_lowercase();
    let by_id: Vec<&Session> = sessions
        .iter()
        .filter(|s| {
            s.id.hyphenated().to_string().starts_with(&prefix)
                || s.id.simple().to_string().starts_with(&prefix)
        })
        .collect();
    match by_id.as_slice() {
        [one] => Ok((*one).clone()),
        [] => Err(Failure::new(
            Exit::NotFound,
            format!(
                "no session named {target:?} or with an id starting with {target:?} (see `pulsar ls`)"
            ),
        )),
        several => {
            let list: Vec<String> = several
                .iter()
                .map(|s| format!("  {}  {} ({})", s.id, s.name, s.state))
                .collect();
            Err(Failure::new(
                Exit::NotFound,
                format!(
                    "{target:?} matches {} sessions; give more of the id or use the name:\n{}",
                    several.len(),
                    list.join("\n")
                ),
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session(id: &str, name: &str, state: &str) -> Session {
        serde_json::from_value(serde_json::json!({
            "id": id,
            "name": name,
            "type": {"kind": "local"},
            "state": state,
            "num_clients": 0,
            "created_at": "2024-01-01T00:00:00Z",
        }))
        .unwrap()
    }

    const A: &str = "3fa85f64-5717-4562-b3fc-2c963f66afa6";
    const B: &str = "3fb00000-0000-4000-8000-000000000000";
    const C: &str = "c0ffee00-0000-4000-8000-000000000000";

    fn table() -> Vec<Session> {
        vec![
            session(A, "alpha", "running"),
            session(B, "beta", "detached"),
            session(C, "3f", "detached"),
        ]
    }

    #[test]
    fn a_name_finds_its_session() {
        assert_eq!(pick(table(), "beta").unwrap().id.to_string(), B);
    }

    #[test]
    fn a_unique_id_prefix_finds_its_session() {
        assert_eq!(pick(table(), "3fa").unwrap().name, "alpha");
        assert_eq!(pick(table(), "3FB0").unwrap().name, "beta");
        assert_eq!(pick(table(), A).unwrap().name, "alpha");
    }

    #[test]
    fn names_win_over_id_prefixes() {
        assert_eq!(pick(table(), "3f").unwrap().id.to_string(), C);
    }

    #[test]
    fn an_ambiguous_prefix_lists_the_candidates() {
        let mut sessions = table();
        sessions.pop();
        let err = pick(sessions, "3f").unwrap_err();
        assert_eq!(err.exit, Exit::NotFound);
        assert!(err.message.contains(A) && err.message.contains(B), "{err}");
        assert!(err.message.contains("alpha") && err.message.contains("beta"));
    }

    #[test]
    fn an_unknown_target_is_not_found() {
        let err = pick(table(), "nope").unwrap_err();
        assert_eq!(err.exit, Exit::NotFound);
        assert!(err.message.contains("nope"), "{err}");
    }

    #[test]
    fn a_live_session_wins_over_a_stopped_one_of_the_same_name() {
        let sessions = vec![
            session(A, "work", "stopped"),
            session(B, "work", "running"),
            session(C, "work", "stopped"),
        ];
        assert_eq!(pick(sessions, "work").unwrap().id.to_string(), B);
    }

    #[test]
    fn among_stopped_sessions_of_one_name_the_newest_wins() {
        let sessions = vec![session(A, "old", "stopped"), session(B, "old", "stopped")];
        assert_eq!(pick(sessions, "old").unwrap().id.to_string(), B);
    }
}
