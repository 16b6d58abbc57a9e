//! Following a session's output from an offset: the engine behind `subscribe_output`.
//!
//! A reader holds only a cursor into the session's ring. It never blocks the session's pump;
//! when it falls so far behind that its bytes left the ring, it reports the gap as
//! [`StreamEvent::Lagged`] and carries on from the oldest byte still held, so memory stays
//! bounded by the ring whatever the client does.

use std::collections::VecDeque;
use std::sync::Arc;

use tokio::sync::broadcast;

use super::{Exit, Session};

/// Largest output event, and the pump's read size.
pub const OUTPUT_CHUNK: usize = 64 * 1024;

/// Session-wide events other than output and the exit (which has its own `watch`), fanned
/// out to readers.
#[derive(Debug, Clone, Copy)]
pub(super) enum Control {
    Resized { cols: u16, rows: u16 },
}

/// What a reader yields, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamEvent {
    /// Bytes starting at `offset`.
    Output {
        /// Absolute offset of `data[0]`.
        offset: u64,
        /// At most [`OUTPUT_CHUNK`] bytes.
        data: Vec<u8>,
    },
    /// The terminal was resized.
    Resized {
        /// Width.
        cols: u16,
        /// Height.
        rows: u16,
    },
    /// Bytes `missed_from..resume_at` left the ring before this reader got them.
    Lagged {
        /// First missed offset.
        missed_from: u64,
        /// Where output continues.
        resume_at: u64,
    },
    /// The process ended; the last event.
    Exited(Exit),
}

/// A cursor following one session's output.
pub struct OutputReader {
    session: Arc<Session>,
    cursor: u64,
    control: broadcast::Receiver<Control>,
    queued: VecDeque<StreamEvent>,
    finished: bool,
}

impl OutputReader {
    /// Follows `session` from `since` (default: the current end). `since` may be older than
    /// the ring holds; the first event then reports the gap.
    pub fn new(session: Arc<Session>, since: Option<u64>) -> Result<Self, super::SessionError> {
        let control = session.subscribe_control();
        let end = session.output().head();
        let cursor = since.unwrap_or(end);
        if cursor > end {
            return Err(super::SessionError::InvalidParam {
                field: "since",
                reason: format!("offset {cursor} is beyond the end of the output ({end})"),
            });
        }
        Ok(Self {
            session,
            cursor,
            control,
            queued: VecDeque::new(),
            finished: false,
        })
    }

    /// Follows `session` from `since` only while the ring still holds every byte from there
    /// (a client coming back where it left off); `None` when it does not (then the client
    /// needs a fresh screen instead).
    pub fn resume(session: Arc<Session>, since: u64) -> Option<Self> {
        let held = session.output().start()..=session.output().head();
        if held.contains(&since) {
            Self::new(session, Some(since)).ok()
        } else {
            None
        }
    }

    /// The next event; `None` after [`StreamEvent::Exited`].
    pub async fn next(&mut self) -> Option<StreamEvent> {
        loop {
            if let Some(event) = self.queued.pop_front() {
                return Some(event);
            }
            if self.finished {
                return None;
            }
            // Mark the head seen *before* looking, so an append after the look wakes us.
            let seen_head = self.session.output().head();
            let chunk = self
                .session
                .output()
                .read_available(self.cursor, OUTPUT_CHUNK);
            if let Some(chunk) = chunk {
                let missed_from = self.cursor;
                self.cursor = chunk.next_offset();
                let output = StreamEvent::Output {
                    offset: chunk.offset,
                    data: chunk.data,
                };
                if chunk.truncated {
                    self.queued.push_back(output);
                    return Some(StreamEvent::Lagged {
                        missed_from,
                        resume_at: chunk.offset,
                    });
                }
                return Some(output);
            }
            // Caught up. The exit is published only after the pump's last append, so nothing
            // can follow it.
            if let Some(exit) = self.session.exit() {
                self.finished = true;
                return Some(StreamEvent::Exited(exit));
            }
            tokio::select! {
                () = self.session.output().head_changed_from(seen_head) => {}
                // The exit itself is read at the top of the loop.
                () = self.session.ended_signal() => {}
                control = self.control.recv() => match control {
                    Ok(Control::Resized { cols, rows }) => {
                        return Some(StreamEvent::Resized { cols, rows });
                    }
                    // A lagged control channel only lost resizes, which the next resize or
                    // `get_session` corrects.
                    Err(broadcast::error::RecvError::Lagged(_)) => {}
                    // Only a dropped session closes it, and we hold the session.
                    Err(broadcast::error::RecvError::Closed) => return None,
                },
            }
        }
    }
}
