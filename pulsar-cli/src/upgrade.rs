//! `pulsar upgrade`: replaces the running daemon by a new binary (default: the daemon's own
//! executable as it is on disk now) without ending a session, and waits until the new one
//! serves.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use pulsar_protocol::PulsarApiClient as _;

use crate::daemon::Endpoint;
use crate::error::{Exit, Failure, Result};

/// Longest to wait for the new daemon to serve after it said it was ready.
const TAKE_OVER_TIMEOUT: Duration = Duration::from_secs(60);

/// `pulsar upgrade [--binary PATH]`.
pub async fn run(endpoint: &Endpoint, binary: Option<PathBuf>) -> Result<Exit> {
    let client = endpoint.connect().await?;
    let started = client
        .upgrade_daemon(binary)
        .await
        .map_err(|err| Failure::rpc("upgrade the daemon", err))?;
    drop(client);
    let deadline = Instant::now() + TAKE_OVER_TIMEOUT;
    loop {
        if let Ok(client) = pulsar_protocol::connect(&endpoint.socket).await
            && let Ok(status) = client.get_status().await
        {
            if status.pid == started.to_pid {
                println!(
                    "upgraded: pid {} -> {} ({}), every session kept",
                    started.from_pid, started.to_pid, started.binary
                );
                return Ok(Exit::Ok);
            }
            // The hand-over failed: the old process serves on, saying why.
            if status.pid == started.from_pid
                && let Some(why) = status.last_upgrade_error
            {
                return Err(Failure::new(
                    Exit::Error,
                    format!(
                        "the upgrade failed; the daemon (pid {}) serves on: {why}",
                        status.pid
                    ),
                ));
            }
        }
        if Instant::now() >= deadline {
            return Err(Failure::new(
                Exit::Error,
                format!(
                    "the new daemon (pid {}) did not take over within {} s",
                    started.to_pid,
                    TAKE_OVER_TIMEOUT.as_secs()
                ),
            ));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
