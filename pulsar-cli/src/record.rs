//! `pulsar record start|stop`: records a session to an asciicast v2 file (played back by
//! `asciinema play`), or stops its recording.

use std::path::{Path, PathBuf};

use pulsar_protocol::PulsarApiClient as _;

use crate::daemon::Endpoint;
use crate::error::{Exit, Failure, Result};
use crate::resolve;

/// `pulsar record start [--input] TARGET [FILE]`: prints the file being written.
pub async fn start(
    endpoint: &Endpoint,
    target: &str,
    file: Option<&Path>,
    input: bool,
) -> Result<Exit> {
    let client = endpoint.connect().await?;
    let session = resolve::session(&client, target).await?;
    // The daemon's working directory is not the caller's: a relative FILE is made absolute
    // here, where it was meant.
    let file = match file {
        Some(file) => Some(absolute(file)?),
        None => None,
    };
    let started = client
        .start_recording(session.id, file, Some(input))
        .await
        .map_err(|err| Failure::rpc(&format!("record session {}", session.name), err))?;
    println!("recording session {} to {}", session.name, started.path);
    Ok(Exit::Ok)
}

/// `pulsar record stop TARGET`: returns once the file is complete.
pub async fn stop(endpoint: &Endpoint, target: &str) -> Result<Exit> {
    let client = endpoint.connect().await?;
    let session = resolve::session(&client, target).await?;
    let path = client
        .get_session(session.id)
        .await
        .ok()
        .and_then(|info| info.recording)
        .map(|recording| recording.path);
    client
        .stop_recording(session.id)
        .await
        .map_err(|err| Failure::rpc(&format!("stop recording session {}", session.name), err))?;
    match path {
        Some(path) => println!("stopped recording session {} ({path})", session.name),
        None => println!("stopped recording session {}", session.name),
    }
    Ok(Exit::Ok)
}

fn absolute(file: &Path) -> Result<PathBuf> {
    std::path::absolute(file).map_err(|err| {
        Failure::error(format!(
            "cannot make {} an absolute path: {err}",
            file.display()
        ))
    })
}
