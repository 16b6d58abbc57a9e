//! The session's pump: the single reader of its backend. Backend → output log, until the
//! output ends and the process is reaped; then the exit is published, once.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;

use super::{Exit, OUTPUT_CHUNK, Session};
use crate::backend::ExitStatus;

/// How long the pump keeps draining output after the process exits, for bytes still in
/// flight (a background job may hold the terminal open forever).
pub(super) const DRAIN_AFTER_EXIT: Duration = Duration::from_millis(250);

/// Runs the pump of `session` to the end of its output.
pub(super) async fn pump(session: Arc<Session>) {
    let backend = Arc::clone(session.backend());
    let mut buf = vec![0u8; OUTPUT_CHUNK];
    let wait = backend.wait();
    tokio::pin!(wait);
    let mut status: Option<ExitStatus> = None;
    let drain_deadline = tokio::time::sleep(Duration::MAX);
    tokio::pin!(drain_deadline);
    loop {
        tokio::select! {
            read = backend.read(&mut buf) => match read {
                Ok(0) => break,
                Ok(n) => {
                    session.append_output(&buf[..n]);
                    // A flooding program keeps its terminal always readable; without a yield
                    // here the pump would run a whole coop budget of chunks (and their
                    // emulation) before a request or another session's pump got a turn.
                    tokio::task::yield_now().await;
                }
                Err(err) => {
                    tracing::warn!(session = %session.id(), "reading the terminal failed: {err}");
                    break;
                }
            },
            exited = &mut wait, if status.is_none() => {
                status = Some(exited);
                drain_deadline
                    .as_mut()
                    .reset(tokio::time::Instant::now() + DRAIN_AFTER_EXIT);
            }
            _ = &mut drain_deadline, if status.is_some() => break,
        }
    }
    let status = match status {
        Some(status) => status,
        None => backend.wait().await,
    };
    tracing::info!(
        session = %session.id(),
        name = %session.name(),
        code = ?status.code,
        signal = ?status.signal,
        "session process ended"
    );
    session.ended(Exit {
        status,
        at: Utc::now(),
    });
    backend.finished();
}
