//! `pulsar events`: follows the daemon's event stream (sessions created, attached, resized,
//! ended; bells, titles, finished commands) and prints one line per event, or its JSON.
//!
//! Sessions are shown by name: the names are read once at the start and learnt from
//! `session_created` after that.

use std::collections::HashMap;

use jsonrpsee::core::client::SubscriptionClientT as _;
use pulsar_protocol::{PulsarClient, SessionEvent, SessionId, method};
use serde_json::Value;

use crate::daemon::Endpoint;
use crate::error::{Exit, Failure, Result};
use crate::rpc;

/// `pulsar events [--json]`: runs until the daemon goes away (exit 3) or a signal ends it.
pub async fn run(endpoint: &Endpoint, json: bool) -> Result<Exit> {
    let client = endpoint.connect().await?;
    // Subscribed first, so that no session created meanwhile goes unnamed.
    let mut events = client
        .subscribe::<Value, _>(
            method::SUBSCRIBE_EVENTS,
            jsonrpsee::rpc_params![],
            method::UNSUBSCRIBE_EVENTS,
        )
        .await
        .map_err(|err| Failure::rpc("subscribe to the daemon's events", err))?;
    let mut names = names(&client).await?;
    while let Some(event) = events.next().await {
        let Ok(event) = event else { continue };
        if json {
            println!("{event}");
            continue;
        }
        let Ok(event) = serde_json::from_value::<SessionEvent>(event) else {
            continue;
        };
        if let SessionEvent::SessionCreated { session_id, name } = &event {
            names.insert(*session_id, name.clone());
        }
        if let Some(line) = describe(&event, &names) {
            println!("{line}");
        }
    }
    Err(Failure::new(
        Exit::NoDaemon,
        "events: lost connection to the daemon",
    ))
}

/// Every session's name by id.
async fn names(client: &PulsarClient) -> Result<HashMap<SessionId, String>> {
    Ok(rpc::list_sessions(client)
        .await?
        .into_iter()
        .map(|(_, session)| (session.id, session.name))
        .collect())
}

/// One line for `event`: the session's name (or id), then what happened. `None` for a kind
/// this build does not know.
pub fn describe(event: &SessionEvent, names: &HashMap<SessionId, String>) -> Option<String> {
    let name = |id: &SessionId| names.get(id).cloned().unwrap_or_else(|| id.to_string());
    let mode = |read_only: bool| if read_only { " (read-only)" } else { "" };
    Some(match event {
        SessionEvent::SessionCreated { session_id, .. } => format!("{}: created", name(session_id)),
        SessionEvent::SessionAttached {
            session_id,
            client_id,
            read_only,
        } => format!(
            "{}: client {client_id} attached{}",
            name(session_id),
            mode(*read_only)
        ),
        SessionEvent::SessionDetached {
            session_id,
            client_id,
            read_only,
        } => format!(
            "{}: client {client_id} detached{}",
            name(session_id),
            mode(*read_only)
        ),
        SessionEvent::SessionResized {
            session_id,
            cols,
            rows,
        } => format!("{}: resized to {cols}x{rows}", name(session_id)),
        SessionEvent::SessionExited {
            session_id,
            code,
            signal,
            reason,
        } => {
            let how = match (code, signal, reason) {
                (Some(code), _, _) => format!("exited with code {code}"),
                (None, Some(signal), _) => format!("killed by signal {signal}"),
                (None, None, Some(reason)) => format!("ended: {reason}"),
                (None, None, None) => "ended".to_owned(),
            };
            format!("{}: {how}", name(session_id))
        }
        SessionEvent::Bell { session_id } => format!("{}: bell", name(session_id)),
        SessionEvent::SshDisconnected { session_id, cause } => {
            format!(
                "{}: SSH connection lost ({cause}); reconnecting",
                name(session_id)
            )
        }
        SessionEvent::SerialVanished { session_id, cause } => {
            format!(
                "{}: serial device vanished ({cause}); reopening",
                name(session_id)
            )
        }
        SessionEvent::SerialReopened { session_id } => {
            format!("{}: serial device reopened", name(session_id))
        }
        SessionEvent::SshReconnected { session_id } => {
            format!("{}: SSH connection back", name(session_id))
        }
        SessionEvent::RecordingStarted { session_id, path } => {
            format!("{}: recording to {path}", name(session_id))
        }
        SessionEvent::RecordingStopped {
            session_id,
            path,
            reason,
        } => format!("{}: recording {path} stopped: {reason}", name(session_id)),
        SessionEvent::TransferProgress {
            session_id,
            transfer_id,
            bytes,
            total,
            rate,
        } => format!(
            "{}: transfer {transfer_id} at {bytes} of {total} bytes ({rate} B/s)",
            name(session_id)
        ),
        SessionEvent::TransferFinished {
            session_id,
            transfer_id,
            state,
            error,
        } => {
            let why = error.as_ref().map(|e| format!(": {e}")).unwrap_or_default();
            format!(
                "{}: transfer {transfer_id} {}{why}",
                name(session_id),
                serde_json::to_value(state)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_default()
            )
        }
        SessionEvent::Title { session_id, title } => {
            format!("{}: title {title:?}", name(session_id))
        }
        SessionEvent::CommandFinished {
            session_id,
            command_line,
            exit_code,
            duration_ms,
        } => {
            let command = command_line
                .as_ref()
                .map(|line| format!(" {line:?}"))
                .unwrap_or_default();
            let code = exit_code
                .map(|code| format!(" with code {code}"))
                .unwrap_or_default();
            format!(
                "{}: command{command} finished{code} in {:.1} s",
                name(session_id),
                *duration_ms as f64 / 1000.0
            )
        }
        SessionEvent::Lagged { missed } => format!("-- missed {missed} events --"),
        SessionEvent::Unknown => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_finished_command_reads_as_a_sentence_with_the_sessions_name() {
        let id = SessionId::new_v4();
        let names = HashMap::from([(id, "build".to_owned())]);
        let event = SessionEvent::CommandFinished {
            session_id: id,
            command_line: Some("make test".into()),
            exit_code: Some(0),
            duration_ms: 1250,
        };
        assert_eq!(
            describe(&event, &names).unwrap(),
            "build: command \"make test\" finished with code 0 in 1.2 s"
        );
    }

    #[test]
    fn an_unnamed_session_is_shown_by_id_and_unknown_kinds_not_at_all() {
        let id = SessionId::new_v4();
        let line = describe(&SessionEvent::Bell { session_id: id }, &HashMap::new()).unwrap();
        assert_eq!(line, format!("{id}: bell"));
        assert_eq!(describe(&SessionEvent::Unknown, &HashMap::new()), None);
    }
}
