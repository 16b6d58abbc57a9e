//! Following a session's output from an offset: the engine behind `subscribe_output`.
//!
//! A reader holds only a cursor into the session's ring. It never blocks the session's pump;
//! when it falls so far behind that its bytes left the ring, it reports the gap as
//! [`StreamEvent::Lagged`] and carries on from the oldest byte still held, so memory stays
//! bounded by the ring whatever the client does.

use std::collections::VecDeque;
use std::sync::Arc;

use tokio::sync::{broadcast, watch};

use super::{Exit, Session};

/// Largest output event, and the pump's read size.
pub const OUTPUT_CHUNK: usize = 64 * 1024;

/// An output event at least this large means the program is flooding (a PTY read gives at
/// most ~4 KiB); the next one is then gathered up to [`GATHER`] bytes.
const FLOOD_EVENT: usize = 2 * 1024;

/// Under a flood, an event waits until this many bytes are there (or [`GATHER_WAIT`] has
/// passed): one event per 4 KiB read was one socket write and one wake-up of the client per
/// 4 KiB. Output that is not a flood (a keystroke's echo, a prompt) goes out at once.
const GATHER: usize = 32 * 1024;

/// The longest a flood's event waits for more bytes.
const GATHER_WAIT: std::time::Duration = std::time::Duration::from_millis(1);

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
    head: watch::Receiver<u64>,
    control: broadcast::Receiver<Control>,
    exit: watch::Receiver<Option<Exit>>,
    queued: VecDeque<StreamEvent>,
    finished: bool,
    /// The last output event was a flood's and the head has not paused since: gather the
    /// next one.
    flooding: bool,
}

impl OutputReader {
    /// Follows `session` from `since` (default: the current end). `since` may be older than
    /// the ring holds; the first event then reports the gap.
    pub fn new(session: Arc<Session>, since: Option<u64>) -> Result<Self, super::SessionError> {
        let head = session.output().subscribe_head();
        let control = session.subscribe_control();
        let exit = session.subscribe_exit();
        let end = *head.borrow();
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
            head,
            control,
            exit,
            queued: VecDeque::new(),
            finished: false,
            flooding: false,
        })
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
            let head = *self.head.borrow_and_update();
            self.exit.borrow_and_update();
            if self.flooding && head > self.cursor && head - self.cursor < GATHER as u64 {
                self.gather().await;
            }
            let chunk = self
                .session
                .output()
                .read_available(self.cursor, OUTPUT_CHUNK);
            if let Some(chunk) = chunk {
                let missed_from = self.cursor;
                self.cursor = chunk.next_offset();
                self.flooding = chunk.data.len() >= FLOOD_EVENT;
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
            let caught_up = tokio::time::Instant::now();
            tokio::select! {
                _ = self.head.changed() => {
                    // A flood keeps the head moving; output after a pause (the prompt after
                    // the flood, a keystroke's echo) is not one.
                    if caught_up.elapsed() > GATHER_WAIT {
                        self.flooding = false;
                    }
                }
                // The exit itself is read at the top of the loop.
                _ = self.exit.changed() => {}
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

    /// Waits, at most [`GATHER_WAIT`], until [`GATHER`] bytes follow the cursor or the
    /// session ends; the head is then marked seen.
    async fn gather(&mut self) {
        let deadline = tokio::time::Instant::now() + GATHER_WAIT;
        loop {
            let head = *self.head.borrow_and_update();
            if head.saturating_sub(self.cursor) >= GATHER as u64 || self.session.exit().is_some() {
                return;
            }
            match tokio::time::timeout_at(deadline, self.head.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) | Err(_) => return,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io;
    use std::time::Duration;

    use async_trait::async_trait;
    use chrono::Utc;
    use pulsar_protocol::{LocalSpec, ResizePolicy, SessionId, SessionLimits, SessionType};

    use super::*;
    use crate::backend::{Backend, ExitStatus};
    use crate::session::SessionSpec;

    /// A program that says nothing and never ends: the tests append its output themselves,
    /// so that what the reader gathers does not hang on the kernel's timing.
    struct Quiet;

    #[async_trait]
    impl Backend for Quiet {
        async fn read(&self, _buf: &mut [u8]) -> io::Result<usize> {
            std::future::pending().await
        }
        async fn write_all(&self, _data: &[u8]) -> io::Result<()> {
            Ok(())
        }
        fn resize(&self, _cols: u16, _rows: u16) -> io::Result<()> {
            Ok(())
        }
        async fn wait(&self) -> ExitStatus {
            std::future::pending().await
        }
        async fn terminate(&self, _grace: Duration) {}
        fn pid(&self) -> Option<u32> {
            None
        }
    }

    fn quiet_session() -> Arc<Session> {
        let spec = SessionSpec {
            id: SessionId::new_v4(),
            name: "quiet".into(),
            session_type: SessionType::Local(LocalSpec::default()),
            created_at: Utc::now(),
            size: (80, 24),
            resize_policy: ResizePolicy::default(),
            scrollback_bytes: 1 << 20,
            history: None,
            limits: SessionLimits::default(),
        };
        Session::start(spec, Arc::new(Quiet))
    }

    fn output_len(event: Option<StreamEvent>) -> usize {
        match event {
            Some(StreamEvent::Output { data, .. }) => data.len(),
            other => panic!("expected output, got {other:?}"),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn under_a_flood_the_next_event_gathers_several_reads() {
        let session = quiet_session();
        let mut reader = OutputReader::new(Arc::clone(&session), None).unwrap();
        session.append_output(&[b'a'; 4096]);
        assert_eq!(output_len(reader.next().await), 4096);
        let appender = {
            let session = Arc::clone(&session);
            tokio::spawn(async move {
                for _ in 0..GATHER / 4096 {
                    session.append_output(&[b'a'; 4096]);
                    tokio::task::yield_now().await;
                }
            })
        };
        let waited = tokio::time::Instant::now();
        assert_eq!(output_len(reader.next().await), GATHER);
        assert!(
            waited.elapsed() < GATHER_WAIT,
            "gathered without waiting out the deadline"
        );
        appender.await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn a_flood_that_stops_short_is_sent_once_the_gathering_deadline_passes() {
        let session = quiet_session();
        let mut reader = OutputReader::new(Arc::clone(&session), None).unwrap();
        session.append_output(&[b'a'; 4096]);
        assert_eq!(output_len(reader.next().await), 4096);
        session.append_output(b"last line\r\n");
        let waited = tokio::time::Instant::now();
        assert_eq!(output_len(reader.next().await), 11);
        assert!(waited.elapsed() >= GATHER_WAIT);
    }

    #[tokio::test(start_paused = true)]
    async fn output_after_a_flood_and_a_pause_is_sent_at_once() {
        let session = quiet_session();
        let mut reader = OutputReader::new(Arc::clone(&session), None).unwrap();
        session.append_output(&[b'a'; 4096]);
        assert_eq!(output_len(reader.next().await), 4096);
        let prompt = {
            let session = Arc::clone(&session);
            tokio::spawn(async move {
                tokio::time::sleep(GATHER_WAIT * 5).await;
                session.append_output(b"$ ");
            })
        };
        assert_eq!(output_len(reader.next().await), 2);
        prompt.await.unwrap();
        session.append_output(b"l");
        let waited = tokio::time::Instant::now();
        assert_eq!(output_len(reader.next().await), 1);
        assert_eq!(waited.elapsed(), Duration::ZERO, "an echo must not wait");
    }

    #[tokio::test(start_paused = true)]
    async fn output_that_is_not_a_flood_is_sent_at_once() {
        let session = quiet_session();
        let mut reader = OutputReader::new(Arc::clone(&session), None).unwrap();
        session.append_output(b"$ ");
        assert_eq!(output_len(reader.next().await), 2);
        session.append_output(b"l");
        let waited = tokio::time::Instant::now();
        assert_eq!(output_len(reader.next().await), 1);
        assert_eq!(waited.elapsed(), Duration::ZERO, "an echo must not wait");
    }
}
