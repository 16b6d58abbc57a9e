//! `pulsar kill`: ends sessions (SIGHUP to their programs, SIGKILL after the daemon's grace
//! period). A stopped session stays listed, its history readable, until the daemon prunes it.

use pulsar_protocol::PulsarApiClient as _;

use crate::daemon::Endpoint;
use crate::error::{Exit, Failure, Result};
use crate::resolve;

/// `pulsar kill TARGET...`: every target is tried; the first failure decides the exit code.
pub async fn run(endpoint: &Endpoint, targets: &[String]) -> Result<Exit> {
    let client = endpoint.connect().await?;
    let mut first_failure = None;
    for target in targets {
        let outcome = async {
            let session = resolve::session(&client, target).await?;
            if !session.is_live() {
                println!("session {} had already exited", session.name);
                return Ok(());
            }
            client
                .terminate_session(session.id)
                .await
                .map_err(|err| Failure::rpc(&format!("kill session {}", session.name), err))?;
            println!("killed session {} ({})", session.name, session.short_id());
            Ok::<_, Failure>(())
        }
        .await;
        if let Err(failure) = outcome {
            if targets.len() == 1 {
                return Err(failure);
            }
            eprintln!("pulsar: {failure}");
            first_failure.get_or_insert(failure.exit);
        }
    }
    Ok(first_failure.unwrap_or(Exit::Ok))
}
