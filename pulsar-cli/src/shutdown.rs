//! `pulsar shutdown`: stops the daemon. By default every session ends with it (the keeper too);
//! with `--keep-sessions` they keep running for the next daemon, as on SIGTERM.

use pulsar_protocol::PulsarApiClient as _;

use crate::daemon::Endpoint;
use crate::error::{Exit, Failure, Result};

/// `pulsar shutdown [--keep-sessions]`.
pub async fn run(endpoint: &Endpoint, keep_sessions: bool) -> Result<Exit> {
    let client = endpoint.connect().await?;
    client
        .shutdown(Some(!keep_sessions))
        .await
        .map_err(|err| Failure::rpc("shut the daemon down", err))?;
    if keep_sessions {
        println!("daemon stopping; the sessions keep running for the next one");
    } else {
        println!("daemon stopping; every session ended");
    }
    Ok(Exit::Ok)
}
