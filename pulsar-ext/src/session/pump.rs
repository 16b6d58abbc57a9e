//! The session's pump: the single reader of its backend. Backend → output log, until the
//! output ends and the process is reaped; then the exit is published, once.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Weak};
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

use chrono::Utc;
use tokio::time::Sleep;

use super::rate::OutputRate;
use super::session::{PUMP_PARK, PUMP_STOP};
use super::{Exit, Session};
use crate::backend::{Backend, ExitStatus};

/// How long the pump keeps draining output after the process exits, for bytes still in
/// flight (a background job may hold the terminal open forever).
pub(super) const DRAIN_AFTER_EXIT: Duration = Duration::from_millis(250);

/// The read buffer's first size. An idle session keeps none: it is allocated when the
/// terminal has something to read and let go whenever the terminal has nothing more for now
/// (a thousand idle shells must not hold a thousand buffers; 16 KiB each was once most of an
/// idle session's memory, and a burst's last buffer was kept through the quiet after it).
const IDLE_BUFFER: usize = 1024;

/// The largest read buffer, under a flood: a turn of the pump (read, ring, screen, marks) is
/// kept short so that requests and other sessions get the runtime often.
pub(super) const FLOOD_BUFFER: usize = 16 * 1024;

/// The pump's read buffer: allocated for a read, it doubles up to [`FLOOD_BUFFER`] while
/// reads fill it (a flood is read in large chunks), shrinks back once output is light again,
/// and is let go once reads are small.
struct ReadBuffer(Vec<u8>);

impl ReadBuffer {
    fn new() -> Self {
        Self(Vec::new())
    }

    /// The buffer to read into, allocated if it was let go.
    fn get(&mut self) -> &mut [u8] {
        if self.0.is_empty() {
            self.0 = vec![0u8; IDLE_BUFFER];
        }
        &mut self.0
    }

    /// Frees the buffer (the terminal has nothing to read for now).
    fn let_go(&mut self) {
        self.0 = Vec::new();
    }

    /// Adapts the size to a read of `n` bytes.
    fn fit(&mut self, n: usize) {
        let len = self.0.len();
        if n == len && len < FLOOD_BUFFER {
            self.0.resize((len * 2).min(FLOOD_BUFFER), 0);
        } else if len > IDLE_BUFFER && n < len / 8 {
            self.0.truncate((len / 2).max(IDLE_BUFFER));
            self.0.shrink_to_fit();
        } else if len <= IDLE_BUFFER && n < len {
            self.0 = Vec::new();
        }
    }
}

/// A session's pump: running as a task, or parked (its session idle, the backend watching
/// for output or the end from a shared set, see [`Backend::park`]).
pub(super) enum PumpTask {
    /// Not started, or stopped.
    None,
    Running(tokio::task::JoinHandle<()>),
    /// No task: [`Resume`] starts one again when output or the end comes.
    Parked,
}

/// The waker a parked pump leaves with its backend: starts the pump again, on the runtime
/// it ran on. Woken from the exit watcher's thread, which has no runtime of its own, or
/// inline by the very registration that parks (an `AtomicWaker` wakes the waker it is given
/// if a wake-up raced with it), while the pump's slot is locked: so a wake-up never resumes
/// inline, but spawns the resumption on that runtime, which takes the slot in turn.
pub(super) struct Resume {
    session: Weak<Session>,
    runtime: tokio::runtime::Handle,
}

impl Resume {
    /// The waker for `session`'s pump, called from that pump (on its runtime).
    pub(super) fn waker(session: &Arc<Session>) -> Waker {
        Waker::from(Arc::new(Self {
            session: Arc::downgrade(session),
            runtime: tokio::runtime::Handle::current(),
        }))
    }
}

impl Wake for Resume {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        if let Some(session) = self.session.upgrade() {
            self.runtime.spawn(async move { session.resume_pump() });
        }
    }
}

/// Where the pump is on the way to the program's end.
enum End<'a> {
    /// The program runs; its end is watched by polling the backend.
    Running,
    /// The end is seen (or the backend cannot say when it comes): how it ended is asked for.
    Asking(Pin<Box<dyn Future<Output = ExitStatus> + Send + 'a>>),
    /// The program has ended: output still in flight is drained until the deadline.
    Draining(ExitStatus, Pin<Box<Sleep>>),
}

impl<'a> End<'a> {
    /// Moves on as far as it can; ready once the drain deadline has passed.
    fn poll(&mut self, cx: &mut Context<'_>, backend: &'a dyn Backend) -> Poll<()> {
        loop {
            match self {
                End::Running => match backend.poll_ended(cx) {
                    Some(Poll::Pending) => return Poll::Pending,
                    None | Some(Poll::Ready(())) => *self = End::Asking(backend.wait()),
                },
                End::Asking(wait) => match wait.as_mut().poll(cx) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(status) => {
                        *self =
                            End::Draining(status, Box::pin(tokio::time::sleep(DRAIN_AFTER_EXIT)))
                    }
                },
                End::Draining(_, deadline) => return deadline.as_mut().poll(cx),
            }
        }
    }

    /// How the program ended, once known.
    fn status(&self) -> Option<ExitStatus> {
        match self {
            End::Draining(status, _) => Some(*status),
            _ => None,
        }
    }
}

/// Runs the pump of `session` to the end of its output.
///
/// Its future is what an idle session's task holds, so it is kept small (248 bytes in a
/// release build, from 312; tokio's task cell is 128-aligned, so 384 bytes in all): the
/// drain deadline (after the end), a rate-limited read (each with a timer of 112 bytes) and
/// the backend's `wait` are boxed when they happen, and the program's end and the pump's
/// stop are polled, not awaited.
pub(super) async fn pump(session: Arc<Session>) {
    let backend = session.backend();
    let mut buffer = ReadBuffer::new();
    // How the program ended is asked for once its end is near (a backend that cannot say
    // when is asked at once): an idle session holds no boxed future through its life.
    let mut end = End::Running;
    loop {
        tokio::select! {
            signal = std::future::poll_fn(|cx| session.poll_pump_signal(cx)) => {
                // The daemon stops and the program lives on: unread output waits in the kernel.
                if signal & PUMP_STOP != 0 {
                    return;
                }
                // Idle for long: the task goes, until output or the end wakes the session.
                // A program seen to end is not parked: its end is on its way.
                debug_assert!(signal & PUMP_PARK != 0);
                if matches!(end, End::Running) && session.park_pump(&*backend) {
                    return;
                }
            }
            read = read_within_rate(&session, &*backend, &mut buffer, end.status().is_some()) => match read {
                Ok(0) => break,
                Ok(n) => {
                    let at = session.publish_output(&buffer.0[..n]);
                    // Readers go first: the subscribers just woken run (and send the bytes on)
                    // before the screen model digests them, so the relay never waits for the
                    // emulator. The yield also keeps a flood (its terminal always readable)
                    // from running a whole coop budget of chunks before another session's
                    // pump gets a turn.
                    tokio::task::yield_now().await;
                    session.digest_output(&buffer.0[..n], at);
                    buffer.fit(n);
                }
                Err(err) => {
                    tracing::warn!(session = %session.id(), "reading the terminal failed: {err}");
                    break;
                }
            },
            () = std::future::poll_fn(|cx| end.poll(cx, &*backend)) => break,
        }
    }
    let status = match end.status() {
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
    buffer: &mut ReadBuffer,
    exited: bool,
) -> std::io::Result<usize> {
    // A terminal with nothing to read now may stay quiet for hours: the buffer (up to
    // FLOOD_BUFFER after a burst) is let go before waiting, not held through it.
    if std::future::poll_fn(|cx| Poll::Ready(backend.poll_readable(cx)))
        .await
        .is_pending()
    {
        buffer.let_go();
        std::future::poll_fn(|cx| backend.poll_readable(cx)).await;
    }
    let buf = buffer.get();
    let Some(rate) = session.rate().filter(|_| !exited) else {
        return backend.read(buf).await;
    };
    Box::pin(read_rated(rate, backend, buf)).await
}

/// A read of at most what `rate` allows now (waiting for it).
async fn read_rated(
    rate: &OutputRate,
    backend: &dyn Backend,
    buf: &mut [u8],
) -> std::io::Result<usize> {
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
            let full = buffer.get().len();
            buffer.fit(full);
        }
        assert_eq!(buffer.0.len(), FLOOD_BUFFER);
        for _ in 0..4 {
            buffer.fit(10);
        }
        assert_eq!(buffer.0.len(), IDLE_BUFFER);
    }

    #[test]
    fn an_idle_session_holds_no_read_buffer() {
        let mut buffer = ReadBuffer::new();
        assert_eq!(buffer.0.capacity(), 0);
        assert_eq!(buffer.get().len(), IDLE_BUFFER);
        // A prompt, a keystroke's echo: less than the buffer.
        buffer.fit(24);
        assert_eq!(buffer.0.capacity(), 0);
    }
}
