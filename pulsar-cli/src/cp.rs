//! `pulsar cp`: copies a file to or from an SSH session's host through the daemon (SFTP on
//! the session's own connection), with a progress bar on a terminal and plain lines otherwise.

use std::io::{IsTerminal as _, Write as _};
use std::path::Path;
use std::time::{Duration, Instant};

use pulsar_protocol::{TransferApiClient as _, TransferDirection, TransferInfo, TransferState};

use crate::daemon::Endpoint;
use crate::error::{Exit, Failure, Result};
use crate::resolve;

/// How often the progress is looked at.
const POLL: Duration = Duration::from_millis(200);
/// How often a plain progress line is printed when stderr is not a terminal.
const PLAIN_EVERY: Duration = Duration::from_secs(1);

/// One side of a copy: a file here, or `SESSION:PATH` on a session's host.
#[derive(Debug, PartialEq, Eq)]
pub enum Side {
    /// A path on this host.
    Local(String),
    /// A session (name or id prefix) and a path on its host.
    Remote(String, String),
}

/// `SESSION:PATH` when the text before the first `:` is a plausible session (not empty, no
/// `/`); anything else is a local path (write `./a:b` for a local file with a colon).
pub fn parse_side(text: &str) -> Side {
    match text.split_once(':') {
        Some((session, path)) if !session.is_empty() && !session.contains('/') => {
            Side::Remote(session.to_owned(), path.to_owned())
        }
        _ => Side::Local(text.to_owned()),
    }
}

/// The file name of `path`, for a destination that is a directory.
fn file_name(path: &str) -> Option<&str> {
    path.trim_end_matches('/')
        .rsplit('/')
        .next()
        .filter(|n| !n.is_empty())
}

/// `pulsar cp SOURCE DESTINATION [--overwrite] [--detach]`.
pub async fn run(
    endpoint: &Endpoint,
    source: &str,
    destination: &str,
    overwrite: bool,
    detach: bool,
) -> Result<Exit> {
    let (direction, target, local, mut remote) = match (parse_side(source), parse_side(destination))
    {
        (Side::Local(local), Side::Remote(target, remote)) => {
            (TransferDirection::Upload, target, local, remote)
        }
        (Side::Remote(target, remote), Side::Local(local)) => {
            (TransferDirection::Download, target, local, remote)
        }
        (Side::Local(_), Side::Local(_)) => {
            return Err(Failure::usage(
                "one side must be SESSION:PATH (for two local files, use cp)",
            ));
        }
        (Side::Remote(..), Side::Remote(..)) => {
            return Err(Failure::usage(
                "only one side may be SESSION:PATH: copy through a local file",
            ));
        }
    };
    let mut local = std::path::absolute(&local)
        .map_err(|err| Failure::usage(format!("bad local path {local:?}: {err}")))?;
    match direction {
        TransferDirection::Upload => {
            if remote.is_empty() || remote.ends_with('/') {
                let name = local
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .ok_or_else(|| Failure::usage("the local path names no file"))?;
                remote.push_str(&name);
            }
        }
        TransferDirection::Download => {
            if local.is_dir() {
                let name = file_name(&remote)
                    .ok_or_else(|| Failure::usage("the remote path names no file"))?;
                local = local.join(name);
            }
        }
    }
    let client = endpoint.connect().await?;
    let session = resolve::session(&client, &target).await?;
    let started = client
        .start_transfer(
            session.id,
            direction,
            local.display().to_string(),
            remote.clone(),
            Some(overwrite),
        )
        .await
        .map_err(|err| Failure::rpc(&format!("copy with session {}", session.name), err))?;
    let what = describe(&started, &session.name);
    if detach {
        println!(
            "{what}: started as transfer {} (left to the daemon)",
            started.id
        );
        return Ok(Exit::Ok);
    }
    let bar = std::io::stderr().is_terminal();
    let (mut last_plain, start) = (Instant::now(), Instant::now());
    let info = loop {
        let info = tokio::select! {
            info = client.get_transfer(started.id) => info,
            _ = tokio::signal::ctrl_c() => {
                let _ = client.cancel_transfer(started.id).await;
                if bar {
                    eprintln!();
                }
                return Err(Failure::error(format!("{what}: cancelled")));
            }
        }
        .map_err(|err| Failure::rpc("follow the transfer", err))?;
        if info.state != TransferState::Running {
            break info;
        }
        let rate = info.bytes as f64 / start.elapsed().as_secs_f64().max(0.001);
        if bar {
            eprint!("\r{}", progress_bar(info.bytes, info.total, rate, 30));
            let _ = std::io::stderr().flush();
        } else if last_plain.elapsed() >= PLAIN_EVERY {
            last_plain = Instant::now();
            eprintln!("{what}: {}", figures(info.bytes, info.total, rate));
        }
        tokio::time::sleep(POLL).await;
    };
    if bar {
        eprint!("\r\x1b[K");
    }
    match info.state {
        TransferState::Done => {
            println!("{what}: {} bytes copied", info.bytes);
            Ok(Exit::Ok)
        }
        TransferState::Cancelled => Err(Failure::error(format!("{what}: cancelled"))),
        _ => Err(Failure::error(format!(
            "{what}: failed: {}",
            info.error.as_deref().unwrap_or("no reason given")
        ))),
    }
}

/// `build:/srv/app.tar -> /home/ada/app.tar`, as the user would say it.
fn describe(info: &TransferInfo, session: &str) -> String {
    let remote = format!("{session}:{}", info.remote_path);
    let local = Path::new(&info.local_path).display().to_string();
    match info.direction {
        TransferDirection::Upload => format!("{local} -> {remote}"),
        TransferDirection::Download => format!("{remote} -> {local}"),
    }
}

/// `12.0 of 20.0 MB (60%), 5.1 MB/s`.
fn figures(bytes: u64, total: u64, rate: f64) -> String {
    let mb = |n: f64| n / 1_000_000.0;
    let percent = (bytes * 100).checked_div(total).unwrap_or(0);
    format!(
        "{:.1} of {:.1} MB ({percent}%), {:.1} MB/s",
        mb(bytes as f64),
        mb(total as f64),
        mb(rate)
    )
}

/// `[#########.........] 12.0 of 20.0 MB (60%), 5.1 MB/s`, `width` marks wide.
pub fn progress_bar(bytes: u64, total: u64, rate: f64, width: usize) -> String {
    let done = if total == 0 {
        0
    } else {
        ((bytes.min(total) as u128 * width as u128) / total as u128) as usize
    };
    format!(
        "[{}{}] {}",
        "#".repeat(done),
        ".".repeat(width - done),
        figures(bytes, total, rate)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_side_with_a_session_before_the_colon_is_remote() {
        assert_eq!(
            parse_side("build:/srv/a.tar"),
            Side::Remote("build".into(), "/srv/a.tar".into())
        );
        assert_eq!(
            parse_side("build:notes.txt"),
            Side::Remote("build".into(), "notes.txt".into())
        );
        assert_eq!(parse_side("./a:b"), Side::Local("./a:b".into()));
        assert_eq!(parse_side("/tmp/x"), Side::Local("/tmp/x".into()));
        assert_eq!(parse_side(":x"), Side::Local(":x".into()));
    }

    #[test]
    fn the_bar_fills_with_the_bytes() {
        assert_eq!(
            progress_bar(5_000_000, 10_000_000, 1_000_000.0, 10),
            "[#####.....] 5.0 of 10.0 MB (50%), 1.0 MB/s"
        );
        assert!(progress_bar(0, 0, 0.0, 4).starts_with("[....]"));
    }
}
