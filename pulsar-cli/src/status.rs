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
        println!("sessions: {}", status.num_sessions);
        println!("clients:  {}", status.num_clients);
    }
    Ok(Exit::Ok)
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
    fn uptime_leaves_out_leading_zero_units() {
        assert_eq!(uptime(0), "0s");
        assert_eq!(uptime(65), "1m 5s");
        assert_eq!(uptime(86_400 + 3), "1d 0h 0m 3s");
    }
}
