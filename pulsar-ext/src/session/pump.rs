//! The session's pump: the single reader of its backend. Backend → output log, until the
//! output ends and the process is reaped; then the exit is published, once.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;

use super::{Exit, Session};
use crate::backend::{Backend, ExitStatus};

/// How long the pump keeps draining output after the process exits, for bytes still in
/// flight (a background job may hold the terminal open forever).
pub(super) const DRAIN_AFTER_EXIT: Duration = Duration::from_millis(250);

/// The read buffer an idle session keeps: small, since a thousand idle shells must not hold
/// a thousand full-size buffers (16 KiB each was most of an idle session's memory).
const IDLE_BUFFER: usize = 1024;

/// The largest read buffer, under a flood: a turn of the pump (read, ring, screen, marks) is
/// kept short so that requests and other sessions get the runtime often.
pub(super) const FLOOD_BUFFER: usize = 16 * 1024;

/// The pump's read buffer: it doubles up to [`FLOOD_BUFFER`] while reads fill it (a flood is
/// read in large chunks) and shrinks back once output is light again.
struct ReadBuffer(Vec<u8>);

impl ReadBuffer {
    fn new() -> Self {
        Self(vec![0u8; IDLE_BUFFER])
    }

    /// Adapts the size to a read of `n` bytes.
    fn fit(&mut self, n: usize) {
        let len = self.0.len();
        if n == len && len < FLOOD_BUFFER {
            self.0.resize((len * 2).min(FLOOD_BUFFER), 0);
        } else if n < len / 8 && len > IDLE_BUFFER {
            self.0.truncate((len / 2).max(IDLE_BUFFER));
            self.0.shrink_to_fit();
        }
    }
}

/// Runs the pump of `session` to the end of its output.
pub(super) async fn pump(session: Arc<Session>) {
    let backend = session.backend();
    let mut buffer = ReadBuffer::new();
    let wait = backend.wait();
    tokio::pin!(wait);
    let mut status: Option<ExitStatus> = None;
    let drain_deadline = tokio::time::sleep(Duration::MAX);
    tokio::pin!(drain_deadline);
    loop {
        tokio::select! {
            read = read_within_rate(&session, &*backend, &mut buffer.0, status.is_some()) => match read {
                Ok(0) => break,
                Ok(n) => {
                    session.append_output(&buffer.0[..n]);
                    buffer.fit(n);
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
    // Let go of what is held elsewhere first, so a stopped session's device is free again.
    backend.finished().await;
    session.ended(Exit {
        status,
        at: Utc::now(),
    });
}

/// One read of the terminal, no larger than the session's output rate allows now (waiting
/// for it); unlimited once the program has exited, so its last output is drained in time.
async fn read_within_rate(
    session: &Session,
    backend: &dyn Backend,
    buf: &mut [u8],
    exited: bool,
) -> std::io::Result<usize> {
    let Some(rate) = session.rate().filter(|_| !exited) else {
        return backend.read(buf).await;
    };
    let allowed = rate.take(buf.len()).await;
    let read = backend.read(&mut buf[..allowed]).await;
    rate.refund(allowed - *read.as_ref().unwrap_or(&0));
    read
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_read_buffer_grows_under_a_flood_and_shrinks_when_idle() {
        let mut buffer = ReadBuffer::new();
        for _ in 0..10 {
            let full = buffer.0.len();
            buffer.fit(full);
        }
        assert_eq!(buffer.0.len(), FLOOD_BUFFER);
        for _ in 0..10 {
            buffer.fit(10);
        }
        assert_eq!(buffer.0.len(), IDLE_BUFFER);
    }
}
