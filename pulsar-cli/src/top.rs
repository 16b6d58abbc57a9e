//! `pulsar top`: what each running session uses (memory, CPU, processes) beside its limits,
//! redrawn every few seconds like top(1); `--once` prints it once, for scripts and tests.

use std::time::Duration;

use crate::daemon::Endpoint;
use crate::error::{Exit, Result};
use crate::list::{bytes, pad};
use crate::rpc::{self, Session};

/// `pulsar top [--once] [--interval SECS]`.
pub async fn run(endpoint: &Endpoint, once: bool, interval: Duration) -> Result<Exit> {
    let client = endpoint.connect().await?;
    loop {
        let sessions: Vec<Session> = rpc::list_sessions(&client)
            .await?
            .into_iter()
            .map(|(_, s)| s)
            .collect();
        let view = table(&sessions);
        if once {
            print!("{view}");
            return Ok(Exit::Ok);
        }
        // Home, clear, then the view: one write, so it does not flicker.
        print!("\x1b[H\x1b[2J{view}");
        use std::io::Write as _;
        let _ = std::io::stdout().flush();
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = tokio::signal::ctrl_c() => return Ok(Exit::Ok),
        }
    }
}

/// The running sessions, most CPU first, with their usage and limits.
pub fn table(sessions: &[Session]) -> String {
    let mut live: Vec<&Session> = sessions.iter().filter(|s| s.is_live()).collect();
    live.sort_by_key(|s| {
        std::cmp::Reverse(s.usage.map_or((0, 0), |u| (u.cpu_percent, u.memory_bytes)))
    });
    let header = ["NAME", "ID", "PID", "CPU", "MEM", "PEAK", "PROCS", "LIMITS"].map(String::from);
    let mut rows = vec![header];
    for session in live {
        let usage = session.usage;
        let cell = |f: &dyn Fn(&rpc::Usage) -> String| usage.as_ref().map_or("-".to_owned(), f);
        rows.push([
            session.name.clone(),
            session.short_id(),
            session.pid.map_or("-".to_owned(), |p| p.to_string()),
            cell(&|u| format!("{}%", u.cpu_percent)),
            cell(&|u| bytes(u.memory_bytes)),
            cell(&|u| u.memory_peak_bytes.map_or("-".to_owned(), bytes)),
            cell(&|u| u.processes.to_string()),
            describe_limits(session),
        ]);
    }
    let mut out = pad(&rows);
    if rows.len() == 1 {
        out.push_str("no running sessions\n");
    }
    out
}

/// `memory 64.0M (cgroup1), pids 20 (cgroup1), ...`, or `-`.
fn describe_limits(session: &Session) -> String {
    let Some(limits) = &session.limits else {
        return "-".to_owned();
    };
    let shown: Vec<String> = [
        ("memory_max", "memory"),
        ("cpu_max", "cpu"),
        ("pids_max", "pids"),
        ("nofile_max", "nofile"),
        ("output_bytes_per_sec", "output"),
    ]
    .iter()
    .filter_map(|(field, label)| {
        let held = limits.get(*field)?;
        let value = held.get("value")?.as_u64()?;
        let mechanism = held.get("mechanism")?.as_str().unwrap_or("?");
        let value = match *field {
            "memory_max" => bytes(value),
            "cpu_max" => format!("{value}%"),
            "output_bytes_per_sec" => format!("{}/s", bytes(value)),
            _ => value.to_string(),
        };
        Some(format!("{label} {value} ({mechanism})"))
    })
    .collect();
    if shown.is_empty() {
        "-".to_owned()
    } else {
        shown.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn running_sessions_are_listed_most_cpu_first_with_their_limits() {
        let session = |name: &str, cpu: u32, limits: serde_json::Value| -> Session {
            serde_json::from_value(json!({
                "id": "3fa85f64-5717-4562-b3fc-2c963f66afa6", "name": name,
                "type": {"kind": "local"}, "state": "detached", "pid": 42,
                "created_at": "2024-01-01T00:59:18Z", "limits": limits,
                "usage": {"memory_bytes": 2048, "cpu_ms": 5, "cpu_percent": cpu, "processes": 1},
            }))
            .unwrap()
        };
        let text = table(&[
            session("idle", 1, json!({})),
            session(
                "busy",
                90,
                json!({"memory_max": {"value": 67_108_864, "mechanism": "cgroup1"}}),
            ),
        ]);
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].starts_with("NAME"), "{text}");
        assert!(lines[1].starts_with("busy"), "{text}");
        assert!(lines[1].ends_with("memory 64.0M (cgroup1)"), "{text}");
        assert!(lines[2].starts_with("idle"), "{text}");
    }
}
