//! `pulsar ls`: the daemon's sessions as a table for people, or as JSON for scripts.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::daemon::Endpoint;
use crate::error::{Exit, Result};
use crate::rpc::{self, Session};

/// `pulsar ls [--json]`.
pub async fn run(endpoint: &Endpoint, json: bool) -> Result<Exit> {
    let client = endpoint.connect().await?;
    let sessions = rpc::list_sessions(&client).await?;
    if json {
        let raw: Vec<Value> = sessions.into_iter().map(|(raw, _)| raw).collect();
        println!(
            "{}",
            serde_json::to_string_pretty(&raw).expect("JSON values serialise")
        );
    } else if sessions.is_empty() {
        println!("no sessions (start one with `pulsar new`)");
    } else {
        let sessions: Vec<Session> = sessions.into_iter().map(|(_, s)| s).collect();
        let workspaces = crate::workspace::by_session(&crate::workspace::in_use(&client).await);
        print!("{}", table(&sessions, &workspaces, Utc::now()));
        print!(
            "{}",
            transfers_running(&sessions, &running_transfers(&client).await)
        );
    }
    Ok(Exit::Ok)
}

/// The table, one line per session under a header, columns padded to fit; `workspaces`
/// names the workspace showing each session (by id).
pub fn table(
    sessions: &[Session],
    workspaces: &HashMap<String, String>,
    now: DateTime<Utc>,
) -> String {
    let header = [
        "NAME",
        "ID",
        "TYPE",
        "STATE",
        "CLIENTS",
        "AGE",
        "MEM",
        "CPU",
        "WORKSPACE",
    ]
    .map(String::from);
    let mut rows = vec![header];
    for session in sessions {
        rows.push([
            session.name.clone(),
            session.short_id(),
            with_forwards(describe_type(&session.session_type), session.forwards),
            describe_state(session),
            session.num_clients.to_string(),
            age(session.created_at, now),
            session
                .usage
                .map_or_else(|| "-".to_owned(), |u| bytes(u.memory_bytes)),
            session
                .usage
                .map_or_else(|| "-".to_owned(), |u| format!("{}%", u.cpu_percent)),
            workspaces
                .get(&session.id.to_string())
                .cloned()
                .unwrap_or_else(|| "-".to_owned()),
        ]);
    }
    pad(&rows)
}

/// How many transfers each session has running (by id); none from a daemon without them.
async fn running_transfers(client: &pulsar_protocol::PulsarClient) -> HashMap<String, usize> {
    use pulsar_protocol::TransferApiClient as _;
    let mut running = HashMap::new();
    for info in client.list_transfers(None).await.unwrap_or_default() {
        if info.state == pulsar_protocol::TransferState::Running {
            *running.entry(info.session_id.to_string()).or_insert(0) += 1;
        }
    }
    running
}

/// A line under the table for each session with transfers running: `build: 2 transfers
/// running (pulsar cp)`.
pub fn transfers_running(sessions: &[Session], running: &HashMap<String, usize>) -> String {
    sessions
        .iter()
        .filter_map(|s| {
            let n = *running.get(&s.id.to_string())?;
            let plural = if n == 1 { "" } else { "s" };
            Some(format!("{}: {n} transfer{plural} running\n", s.name))
        })
        .collect()
}

/// Rows of cells as lines, each column padded to its widest cell.
pub fn pad<const N: usize>(rows: &[[String; N]]) -> String {
    let mut widths = [0usize; N];
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in rows {
        let mut line = String::new();
        for (i, (cell, width)) in row.iter().zip(widths).enumerate() {
            if i > 0 {
                line.push_str("  ");
            }
            line.push_str(cell);
            line.extend(std::iter::repeat_n(' ', width - cell.chars().count()));
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// The type, and the session's port forwards when it has any (`ssh ada@h, 2 forwards`).
fn with_forwards(described: String, forwards: usize) -> String {
    match forwards {
        0 => described,
        1 => format!("{described}, 1 forward"),
        n => format!("{described}, {n} forwards"),
    }
}

/// `local`, `ssh ada@host`, `ssh ada@host:2222`, `serial /dev/ttyUSB0`, or the bare kind.
fn describe_type(session_type: &Value) -> String {
    let field = |name: &str| session_type.get(name).and_then(Value::as_str);
    let kind = field("kind").unwrap_or("?");
    match kind {
        "ssh" => {
            let host = field("host").unwrap_or("?");
            let target = match field("user") {
                Some(user) => format!("{user}@{host}"),
                None => host.to_owned(),
            };
            match session_type.get("port").and_then(Value::as_u64) {
                Some(port) if port != 22 => format!("ssh {target}:{port}"),
                _ => format!("ssh {target}"),
            }
        }
        "serial" => match field("device") {
            Some(device) => format!("serial {device}"),
            None => "serial".to_owned(),
        },
        other => other.to_owned(),
    }
}

/// The state, with how a stopped session ended.
fn describe_state(session: &Session) -> String {
    match (session.exit_code, session.exit_signal) {
        (Some(code), _) if !session.is_live() => format!("{} (code {code})", session.state),
        (None, Some(signal)) if !session.is_live() => {
            format!("{} (signal {signal})", session.state)
        }
        _ => session.state.clone(),
    }
}

/// `512B`, `640K`, `12.5M`, `1.2G`.
pub fn bytes(n: u64) -> String {
    const K: f64 = 1024.0;
    let f = n as f64;
    if f < K {
        format!("{n}B")
    } else if f < K * K {
        format!("{:.0}K", f / K)
    } else if f < K * K * K {
        format!("{:.1}M", f / (K * K))
    } else {
        format!("{:.1}G", f / (K * K * K))
    }
}

/// `42s`, `5m`, `3h`, `2d`.
fn age(created: DateTime<Utc>, now: DateTime<Utc>) -> String {
    let secs = (now - created).num_seconds().max(0);
    match secs {
        0..60 => format!("{secs}s"),
        60..3600 => format!("{}m", secs / 60),
        3600..172_800 => format!("{}h", secs / 3600),
        _ => format!("{}d", secs / 86_400),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn session(value: Value) -> Session {
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn table_has_a_header_and_aligned_columns() {
        let now: DateTime<Utc> = "2024-01-01T01:00:00Z".parse().unwrap();
        let sessions = [
            session(json!({
                "id": "3fa85f64-5717-4562-b3fc-2c963f66afa6", "name": "build",
                "type": {"kind": "local"}, "state": "running", "num_clients": 2,
                "created_at": "2024-01-01T00:59:18Z",
                "usage": {"memory_bytes": 13_107_200, "cpu_ms": 5, "cpu_percent": 7, "processes": 2},
            })),
            session(json!({
                "id": "c0ffee00-0000-4000-8000-000000000000", "name": "router-console",
                "type": {"kind": "serial", "device": "/dev/ttyUSB0", "baud": 9600},
                "state": "stopped", "num_clients": 0, "exit_code": 1,
                "created_at": "2023-12-29T00:00:00Z",
            })),
        ];
        let workspaces = HashMap::from([(
            "3fa85f64-5717-4562-b3fc-2c963f66afa6".to_owned(),
            "Rust dev".to_owned(),
        )]);
        let text = table(&sessions, &workspaces, now);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3, "{text}");
        assert!(
            lines[0].starts_with("NAME            ID        TYPE"),
            "{text}"
        );
        assert!(
            lines[1].starts_with("build           3fa85f64  local"),
            "{text}"
        );
        assert!(
            lines[1].ends_with("running           2        42s  12.5M  7%   Rust dev"),
            "{text}"
        );
        assert!(lines[2].contains("serial /dev/ttyUSB0"), "{text}");
        assert!(lines[2].contains("stopped (code 1)"), "{text}");
        assert!(lines[2].ends_with("3d   -      -    -"), "{text}");
    }

    #[test]
    fn ssh_sessions_show_their_target() {
        let ty = json!({"kind": "ssh", "host": "h", "port": 2222, "user": "ada"});
        assert_eq!(describe_type(&ty), "ssh ada@h:2222");
        let ty = json!({"kind": "ssh", "host": "h", "port": 22, "user": "ada"});
        assert_eq!(describe_type(&ty), "ssh ada@h");
    }

    #[test]
    fn byte_counts_are_short() {
        assert_eq!(bytes(512), "512B");
        assert_eq!(bytes(640 * 1024), "640K");
        assert_eq!(bytes(13_107_200), "12.5M");
        assert_eq!(bytes(3 << 30), "3.0G");
    }

    #[test]
    fn forwards_follow_the_type() {
        assert_eq!(with_forwards("ssh ada@h".into(), 0), "ssh ada@h");
        assert_eq!(
            with_forwards("ssh ada@h".into(), 2),
            "ssh ada@h, 2 forwards"
        );
    }

    #[test]
    fn ages_are_short() {
        let now: DateTime<Utc> = "2024-01-10T00:00:00Z".parse().unwrap();
        let ago = |secs| age(now - chrono::Duration::seconds(secs), now);
        assert_eq!(ago(5), "5s");
        assert_eq!(ago(125), "2m");
        assert_eq!(ago(7200), "2h");
        assert_eq!(ago(86_400 * 3), "3d");
    }
}
