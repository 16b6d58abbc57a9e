//! `pulsar status`: is a daemon there, which one, and how busy.

use pulsar_protocol::PulsarApiClient as _;

use crate::daemon::Endpoint;
use crate::error::{Exit, Failure, Result};

/// `pulsar status [--json]`.
pub async fn run(endpoint: &Endpoint, json: bool) -> Result<Exit> {
    let client = endpoint.connect().await?;
    let status = client
        .get_status()
        .await
        .map_err(|err| Failure::rpc("get the daemon's status", err))?;
    if json {
        let mut value = serde_json::to_value(&status).expect("status serialises");
        value["socket"] = endpoint.socket.to_string_lossy().into_owned().into();
        println!(
            "{}",
            serde_json::to_string_pretty(&value).expect("JSON values serialise")
        );
    } else {
        println!("pulsar daemon {} (pid {})", status.version, status.pid);
        println!("socket:   {}", endpoint.socket.display());
        println!("uptime:   {}", uptime(status.uptime_seconds));
        println!(
            "sessions: {}{}",
            status.num_sessions,
            asleep(status.num_hibernated, status.scrollback_released_bytes)
        );
        println!("clients:  {}", status.num_clients);
    }
    Ok(Exit::Ok)
}

/// ` (2 asleep, 380 KiB of their scrollback in the database only)`, or nothing when none
/// sleeps.
fn asleep(sessions: usize, released_bytes: u64) -> String {
    match (sessions, released_bytes) {
        (0, _) => String::new(),
        (n, 0) => format!(" ({n} asleep)"),
        (n, bytes) => format!(
            " ({n} asleep, {} of their scrollback in the database only)",
            size(bytes)
        ),
    }
}

/// `512 B`, `12 KiB`, `3.4 MiB`.
fn size(bytes: u64) -> String {
    match bytes {
        0..1024 => format!("{bytes} B"),
        1024..1_048_576 => format!("{} KiB", bytes / 1024),
        _ => format!("{:.1} MiB", bytes as f64 / 1_048_576.0),
    }
}

/// `3d 4h 5m 6s`, leaving out leading zero units.
fn uptime(secs: u64) -> String {
    let units = [(86_400, "d"), (3600, "h"), (60, "m"), (1, "s")];
    let mut rest = secs;
    let mut parts = Vec::new();
    for (size, unit) in units {
        let n = rest / size;
        rest %= size;
        if n > 0 || !parts.is_empty() || size == 1 {
            parts.push(format!("{n}{unit}"));
        }
    }
    parts.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sleeping_sessions_are_counted_with_what_they_released() {
        assert_eq!(asleep(0, 0), "");
        assert_eq!(asleep(3, 0), " (3 asleep)");
        assert_eq!(
            asleep(2, 389_120),
            " (2 asleep, 380 KiB of their scrollback in the database only)"
        );
        assert_eq!(size(900), "900 B");
        assert_eq!(size(3_565_158), "3.4 MiB");
    }

    #[test]
    fn uptime_leaves_out_leading_zero_units() {
        assert_eq!(uptime(0), "0s");
        assert_eq!(uptime(65), "1m 5s");
        assert_eq!(uptime(86_400 + 3), "1d 0h 0m 3s");
    }
}
