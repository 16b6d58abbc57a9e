//! `pulsar export`: prints a session's stored output as an asciicast v2 recording, made after
//! the fact (`export_asciicast`), for `asciinema play`.

use std::io::Write as _;

use pulsar_protocol::PulsarApiClient as _;

use crate::daemon::Endpoint;
use crate::error::{Exit, Failure, Result};
use crate::resolve;

/// `pulsar export TARGET [--since OFFSET] [--until OFFSET]`: the cast on standard output.
pub async fn run(
    endpoint: &Endpoint,
    target: &str,
    since: Option<u64>,
    until: Option<u64>,
) -> Result<Exit> {
    let client = endpoint.connect().await?;
    let session = resolve::session(&client, target).await?;
    let export = client
        .export_asciicast(session.id, since, until)
        .await
        .map_err(|err| Failure::rpc(&format!("export session {}", session.name), err))?;
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(export.cast.as_bytes())
        .and_then(|()| stdout.flush())
        .map_err(|err| Failure::error(format!("writing the recording failed: {err}")))?;
    Ok(Exit::Ok)
}
