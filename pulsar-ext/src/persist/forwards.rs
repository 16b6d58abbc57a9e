//! Port forwards in the store: the row saved for a forward added, and the forwards brought
//! back at start, once their SSH sessions have reconnected.

use pulsar_protocol::{ForwardInfo, ForwardKind, ForwardSpec};

use crate::session::SessionManager;
use crate::store::{ForwardRow, Store};

/// The row that brings back `info` (added as `spec` asked): where it listened, as bound.
pub(crate) fn forward_row(info: &ForwardInfo, spec: &ForwardSpec, created_at: i64) -> ForwardRow {
    ForwardRow {
        id: info.id,
        session_id: info.session_id,
        kind: info.kind.as_str().to_owned(),
        listen: info.listen.clone(),
        target: info.target.clone(),
        allow_non_loopback: spec.allow_non_loopback,
        created_at,
    }
}

fn spec_of(row: &ForwardRow) -> Option<ForwardSpec> {
    let kind = match row.kind.as_str() {
        "local" => ForwardKind::Local,
        "remote" => ForwardKind::Remote,
        "dynamic" => ForwardKind::Dynamic,
        _ => return None,
    };
    Some(ForwardSpec {
        kind,
        listen: row.listen.clone(),
        target: row.target.clone(),
        allow_non_loopback: row.allow_non_loopback,
    })
}

/// Adds each saved forward back to its session, if that session is running again; answers
/// how many came back. A forward that cannot (its port taken meanwhile, the server refusing)
/// is logged with why and kept, listed as `failed` with that error (and tried again at the
/// next start) until it is removed.
pub(crate) async fn restore_forwards(
    rows: Vec<ForwardRow>,
    sessions: &SessionManager,
    store: &Store,
) -> usize {
    let mut restored = 0;
    for row in rows {
        let Some(spec) = spec_of(&row) else {
            tracing::warn!(forward = %row.id, kind = %row.kind, "a saved forward of an unknown kind: dropped");
            store.delete_forward(row.id);
            continue;
        };
        let alive = sessions
            .get(row.session_id)
            .is_ok_and(|session| session.is_alive());
        if !alive {
            // Kept with the session's history; it ends with the session's row.
            continue;
        }
        match sessions.add_forward(row.session_id, row.id, &spec).await {
            Ok(_) => restored += 1,
            Err(err) => {
                let why = format!("could not be re-established after the restart: {err}");
                tracing::warn!(forward = %row.id, listen = %row.listen, "the port forward {why}");
                let _ = sessions.keep_failed_forward(row.session_id, row.id, &spec, why);
            }
        }
    }
    restored
}

/// Session `id` was started again in place (`revive`): its saved forwards are added back,
/// as at a daemon start; answers how many came back.
pub(crate) async fn revive_forwards(
    id: pulsar_protocol::SessionId,
    sessions: &SessionManager,
    store: &Store,
) -> usize {
    let reader = store.clone();
    let rows = match tokio::task::spawn_blocking(move || reader.saved_forwards(id)).await {
        Ok(Ok(rows)) => rows,
        Ok(Err(err)) => {
            tracing::warn!(session = %id, "reading the saved port forwards of a revived session: {err}");
            return 0;
        }
        Err(err) => {
            tracing::warn!(session = %id, "reading the saved port forwards of a revived session: {err}");
            return 0;
        }
    };
    restore_forwards(rows, sessions, store).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use uuid::Uuid;

    #[test]
    fn a_saved_row_gives_back_the_forward_asked_for() {
        let info = ForwardInfo {
            id: Uuid::new_v4(),
            session_id: Uuid::new_v4(),
            kind: ForwardKind::Remote,
            listen: "127.0.0.1:9000".into(),
            target: Some("localhost:22".into()),
            state: pulsar_protocol::ForwardState::Active,
            connections: 0,
            total_connections: 0,
            failed_connections: 0,
            bytes_in: 0,
            bytes_out: 0,
            last_error: None,
        };
        let spec = ForwardSpec {
            kind: ForwardKind::Remote,
            listen: "9000".into(),
            target: Some("localhost:22".into()),
            allow_non_loopback: true,
        };
        let row = forward_row(&info, &spec, 7);
        assert_eq!(
            spec_of(&row),
            Some(ForwardSpec {
                listen: "127.0.0.1:9000".into(),
                ..spec
            })
        );
    }
}
