//! One watcher for every local program's exit: a single epoll set of their pidfds, waited on
//! by one thread of its own.
//!
//! Each program used to have its pidfd registered with tokio's reactor, which costs a
//! `ScheduledIo` (256 bytes, cache-line aligned) per idle session, and its session's pump
//! held a future waiting on that registration for the program's whole life. Here a program's
//! exit costs the daemon a kernel epoll entry, one token in a map and a small wake-up cell
//! that every waiter shares; the thread sets the cell when the pidfd becomes readable. The
//! session's reader polls the cell ([`ExitWatch::poll_exited`]) rather than holding a future
//! on it. The thread needs no runtime, so the same watch serves the relay, the request
//! runtime and unit tests' runtimes alike.
//!
//! The same set watches the terminals of parked sessions ([`ReadyWatch`]): a session quiet
//! long enough gives up its pump's task and its terminal's tokio registration, and the
//! watcher wakes it when the terminal has something to read again.

use std::collections::HashMap;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll, Waker};

use futures_util::task::AtomicWaker;

use crate::signal::{Once, poll_for_one};

/// Events taken per `epoll_wait`: exits come one at a time, rarely many at once.
const EVENTS: usize = 32;

/// The epoll set and who is waiting on each of its entries.
struct Watcher {
    epoll: OwnedFd,
    /// Who waits on each entry, by the token the entry carries.
    waiting: Mutex<HashMap<u64, Waiter>>,
    /// Tokens are never reused, so an event for an entry just removed finds nothing.
    next: AtomicU64,
    /// Set if its thread stopped: no new watch is taken (the backend then polls), and every
    /// cell was set, so that each waiter looks for itself (a reap that finds the program
    /// still running sends it back to polling).
    stopped: AtomicBool,
}

/// Who waits on an entry of the set.
enum Waiter {
    /// The waiters on a program's exit.
    Exit(Arc<Cell>),
    /// A parked terminal's owner, woken once it is readable (or hung up).
    Ready(Waker),
}

impl Waiter {
    /// Tells the waiter its entry reported. Never called with the map locked: a woken
    /// session unwatches its terminal, which takes the lock.
    fn fire(self) {
        match self {
            Waiter::Exit(cell) => cell.fire(),
            Waiter::Ready(waker) => waker.wake(),
        }
    }
}

/// What a watched program's waiters wait on.
struct Cell {
    /// Set when the program has exited, waking the waiters on it.
    exited: Once<()>,
    /// The one poller's (the session's reader's).
    poller: AtomicWaker,
}

impl Cell {
    fn fire(&self) {
        self.exited.set(());
        self.poller.wake();
    }
}

/// The daemon's watcher, started by the first watch (or why it could not be).
static WATCHER: OnceLock<Result<&'static Watcher, String>> = OnceLock::new();

fn watcher() -> io::Result<&'static Watcher> {
    WATCHER
        .get_or_init(|| Watcher::start().map_err(|err| err.to_string()))
        .clone()
        .map_err(|reason| io::Error::other(format!("the exit watcher did not start: {reason}")))
}

impl Watcher {
    /// A watcher and its thread, for the life of the process.
    fn start() -> io::Result<&'static Self> {
        // SAFETY: epoll_create1 takes flags and returns a new descriptor or -1.
        let fd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: the kernel just returned this descriptor to us.
        let epoll = unsafe { OwnedFd::from_raw_fd(fd) };
        let watcher: &'static Self = Box::leak(Box::new(Self {
            epoll,
            waiting: Mutex::new(HashMap::new()),
            next: AtomicU64::new(0),
            stopped: AtomicBool::new(false),
        }));
        std::thread::Builder::new()
            .name("pulsar-exits".to_owned())
            .spawn(move || watcher.run())?;
        Ok(watcher)
    }

    fn waiting(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Waiter>> {
        self.waiting.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The thread: sets the cell of every program whose pidfd became readable, and wakes the
    /// owner of every parked terminal that did. Entries are one-shot: each reports once and
    /// stays in the set, silent, until unwatched.
    fn run(&self) {
        let mut events = [libc::epoll_event { events: 0, u64: 0 }; EVENTS];
        loop {
            // SAFETY: `events` is valid for EVENTS entries; the descriptor lives as long as
            // the watcher, for the life of the process.
            let n = unsafe {
                libc::epoll_wait(
                    self.epoll.as_raw_fd(),
                    events.as_mut_ptr(),
                    EVENTS as i32,
                    -1,
                )
            };
            if n < 0 {
                let err = io::Error::last_os_error();
                if err.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                tracing::error!("the exit watcher stopped: {err}; exits are found by polling");
                self.stop();
                return;
            }
            for event in &events[..n as usize] {
                // A copy: epoll_event is packed.
                let token = event.u64;
                let waiter = self.waiting().remove(&token);
                if let Some(waiter) = waiter {
                    waiter.fire();
                }
            }
        }
    }

    /// Adds `fd` to the set for one report of input (or hang-up) to `waiter`; its token.
    fn add(&self, fd: RawFd, waiter: Waiter) -> io::Result<u64> {
        let token = self.next.fetch_add(1, Ordering::Relaxed);
        self.waiting().insert(token, waiter);
        let mut event = libc::epoll_event {
            events: (libc::EPOLLIN | libc::EPOLLONESHOT) as u32,
            u64: token,
        };
        // SAFETY: both descriptors are open; `event` is a valid epoll_event.
        let added =
            unsafe { libc::epoll_ctl(self.epoll.as_raw_fd(), libc::EPOLL_CTL_ADD, fd, &mut event) };
        if added < 0 {
            let err = io::Error::last_os_error();
            self.waiting().remove(&token);
            return Err(err);
        }
        Ok(token)
    }

    /// Takes `fd`'s entry (`token`) out of the set; its waiter is dropped unwoken.
    fn remove(&self, fd: RawFd, token: u64) {
        // SAFETY: the epoll descriptor lives for the process; `fd` is still open (the
        // callers' contract); a DEL ignores its event argument.
        unsafe {
            libc::epoll_ctl(
                self.epoll.as_raw_fd(),
                libc::EPOLL_CTL_DEL,
                fd,
                std::ptr::null_mut(),
            );
        }
        let waiter = self.waiting().remove(&token);
        drop(waiter);
    }

    /// No more watching: every waiter is sent to look for itself, and new watches are
    /// refused.
    fn stop(&self) {
        self.stopped.store(true, Ordering::Release);
        let waiters: Vec<Waiter> = self.waiting().drain().map(|(_, waiter)| waiter).collect();
        for waiter in waiters {
            waiter.fire();
        }
    }
}

/// A program watched for its exit; unwatched when dropped.
pub(crate) struct ExitWatch {
    watcher: &'static Watcher,
    pidfd: OwnedFd,
    token: u64,
    cell: Arc<Cell>,
}

impl std::fmt::Debug for ExitWatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExitWatch")
            .field("token", &self.token)
            .field("exited", &self.has_exited())
            .finish()
    }
}

impl ExitWatch {
    /// Watches process `pid` (a child of this process or not). Fails if it is gone already
    /// (`ESRCH`), or the kernel has no pidfds (before 5.3).
    pub fn new(pid: u32) -> io::Result<Self> {
        Self::new_in(watcher()?, pid)
    }

    fn new_in(watcher: &'static Watcher, pid: u32) -> io::Result<Self> {
        if watcher.stopped.load(Ordering::Acquire) {
            return Err(io::Error::other("the exit watcher has stopped"));
        }
        let pidfd = pidfd_open(pid)?;
        let cell = Arc::new(Cell {
            exited: Once::new(None),
            poller: AtomicWaker::new(),
        });
        let token = watcher.add(pidfd.as_raw_fd(), Waiter::Exit(Arc::clone(&cell)))?;
        // Stopped while this one was added: its cell may have missed the drain.
        if watcher.stopped.load(Ordering::Acquire) {
            cell.fire();
        }
        Ok(Self {
            watcher,
            pidfd,
            token,
            cell,
        })
    }

    /// Whether the program is known to have exited (or the watcher stopped, and the caller
    /// must look for itself: a reap that finds the program running means it must poll).
    pub fn has_exited(&self) -> bool {
        self.cell.exited.get().is_some()
    }

    /// Resolves once the program has exited (at once if it has), or the watcher stopped.
    pub async fn exited(&self) {
        self.cell.exited.wait().await
    }

    /// Drops the poller's waker (its reader is gone; the next one leaves its own).
    pub fn forget_poller(&self) {
        drop(self.cell.poller.take());
    }

    /// Ready once the program has exited, or the watcher stopped. For one poller only (the
    /// session's reader): each poll replaces the waker of the one before.
    pub fn poll_exited(&self, cx: &mut Context<'_>) -> Poll<()> {
        poll_for_one(&self.cell.poller, cx, || self.has_exited())
    }
}

impl Drop for ExitWatch {
    fn drop(&mut self) {
        self.watcher.remove(self.pidfd.as_raw_fd(), self.token);
    }
}

/// A parked terminal watched until it is readable or hangs up: its owner's waker is woken
/// once, from the watcher's thread. Unwatched when dropped, which must happen before its
/// descriptor is closed (the set would otherwise go on watching the terminal's file through
/// any other descriptor of it).
pub(crate) struct ReadyWatch {
    watcher: &'static Watcher,
    fd: RawFd,
    token: u64,
}

impl ReadyWatch {
    /// Watches `fd` for input, waking `waker` once there is some (at once if there is some
    /// now). Fails if the watcher has stopped or the descriptor cannot be watched; the caller
    /// then goes on reading it as before.
    pub fn new(fd: RawFd, waker: Waker) -> io::Result<Self> {
        Self::new_in(watcher()?, fd, waker)
    }

    fn new_in(watcher: &'static Watcher, fd: RawFd, waker: Waker) -> io::Result<Self> {
        if watcher.stopped.load(Ordering::Acquire) {
            return Err(io::Error::other("the exit watcher has stopped"));
        }
        let token = watcher.add(fd, Waiter::Ready(waker))?;
        // Stopped while this one was added: its waker may have missed the drain.
        if watcher.stopped.load(Ordering::Acquire) {
            watcher.remove(fd, token);
            return Err(io::Error::other("the exit watcher has stopped"));
        }
        Ok(Self { watcher, fd, token })
    }
}

impl Drop for ReadyWatch {
    fn drop(&mut self) {
        self.watcher.remove(self.fd, self.token);
    }
}

/// `pidfd_open(2)`: a descriptor that becomes readable when `pid` exits.
fn pidfd_open(pid: u32) -> io::Result<OwnedFd> {
    // SAFETY: the syscall takes a pid and flags and returns a new descriptor or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel just returned this descriptor to us.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

#[cfg(test)]
mod tests {
    use std::process::{Command, Stdio};
    use std::time::Duration;

    use super::*;

    fn sleeper() -> std::process::Child {
        Command::new("sleep")
            .arg("30")
            .stdin(Stdio::null())
            .spawn()
            .expect("spawn sleep")
    }

    #[tokio::test]
    async fn a_watch_wakes_its_waiters_when_the_program_exits() {
        let mut child = sleeper();
        let watch = ExitWatch::new(child.id()).unwrap();
        let waiting = tokio::time::timeout(Duration::from_millis(100), watch.exited()).await;
        assert!(waiting.is_err(), "no exit yet");
        assert!(!watch.has_exited());
        child.kill().unwrap();
        tokio::time::timeout(Duration::from_secs(10), watch.exited())
            .await
            .expect("the exit was seen");
        assert!(watch.has_exited());
        child.wait().unwrap();
    }

    #[tokio::test]
    async fn a_polled_watch_is_woken_when_the_program_exits() {
        let mut child = sleeper();
        let watch = ExitWatch::new(child.id()).unwrap();
        let first = std::future::poll_fn(|cx| Poll::Ready(watch.poll_exited(cx))).await;
        assert!(first.is_pending(), "no exit yet");
        child.kill().unwrap();
        tokio::time::timeout(
            Duration::from_secs(10),
            std::future::poll_fn(|cx| watch.poll_exited(cx)),
        )
        .await
        .expect("the poller was woken");
        child.wait().unwrap();
    }

    #[tokio::test]
    async fn a_program_that_exited_before_its_watch_is_seen_at_once() {
        let mut child = Command::new("true").spawn().unwrap();
        // Exited, not reaped: the pid is still there, and its pidfd readable from the start.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while std::fs::read_to_string(format!("/proc/{}/stat", child.id()))
            .is_ok_and(|stat| !stat.contains(") Z "))
        {
            assert!(std::time::Instant::now() < deadline, "true never exited");
            std::thread::sleep(Duration::from_millis(5));
        }
        let watch = ExitWatch::new(child.id()).unwrap();
        tokio::time::timeout(Duration::from_secs(10), watch.exited())
            .await
            .expect("the exit was seen");
        child.wait().unwrap();
    }

    #[test]
    fn a_dropped_watch_leaves_nothing_in_the_watcher() {
        let mut child = sleeper();
        let watch = ExitWatch::new(child.id()).unwrap();
        let token = watch.token;
        assert!(watch.watcher.waiting().contains_key(&token));
        drop(watch);
        assert!(!watcher().unwrap().waiting().contains_key(&token));
        child.kill().unwrap();
        child.wait().unwrap();
    }

    #[tokio::test]
    async fn a_stopped_watcher_sends_its_waiters_to_look_and_takes_no_more_watches() {
        // A watcher of the test's own: the daemon's stays as it is.
        let watcher = Watcher::start().unwrap();
        let mut child = sleeper();
        let watch = ExitWatch::new_in(watcher, child.id()).unwrap();
        assert!(!watch.has_exited());
        watcher.stop();
        tokio::time::timeout(Duration::from_secs(10), watch.exited())
            .await
            .expect("the waiter was sent to look");
        assert!(ExitWatch::new_in(watcher, child.id()).is_err());
        child.kill().unwrap();
        child.wait().unwrap();
    }

    /// A waker that reports each wake on a channel.
    struct Reporter(Mutex<std::sync::mpsc::Sender<()>>);

    impl std::task::Wake for Reporter {
        fn wake(self: Arc<Self>) {
            let _ = self.0.lock().unwrap().send(());
        }
    }

    fn reporter() -> (Waker, std::sync::mpsc::Receiver<()>) {
        let (tx, rx) = std::sync::mpsc::channel();
        (Waker::from(Arc::new(Reporter(Mutex::new(tx)))), rx)
    }

    fn pipe() -> (OwnedFd, std::fs::File) {
        let mut fds = [0; 2];
        // SAFETY: `fds` has room for the two descriptors pipe2 returns.
        assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
        // SAFETY: both were just returned to us.
        unsafe {
            (
                OwnedFd::from_raw_fd(fds[0]),
                std::fs::File::from_raw_fd(fds[1]),
            )
        }
    }

    #[test]
    fn a_ready_watch_wakes_its_owner_once_the_descriptor_has_input() {
        use std::io::Write;
        let (read, mut write) = pipe();
        let (waker, woken) = reporter();
        let watch = ReadyWatch::new(read.as_raw_fd(), waker).unwrap();
        assert!(
            woken.recv_timeout(Duration::from_millis(100)).is_err(),
            "no input yet"
        );
        write.write_all(b"x").unwrap();
        woken
            .recv_timeout(Duration::from_secs(10))
            .expect("woken by the input");
        // One report only, though the input is still there.
        assert!(woken.recv_timeout(Duration::from_millis(100)).is_err());
        drop(watch);
    }

    #[test]
    fn a_ready_watch_wakes_at_once_for_input_already_there() {
        use std::io::Write;
        let (read, mut write) = pipe();
        write.write_all(b"x").unwrap();
        let (waker, woken) = reporter();
        let _watch = ReadyWatch::new(read.as_raw_fd(), waker).unwrap();
        woken
            .recv_timeout(Duration::from_secs(10))
            .expect("woken by the input");
    }

    #[test]
    fn a_ready_watch_wakes_its_owner_when_the_other_end_hangs_up() {
        let (read, write) = pipe();
        let (waker, woken) = reporter();
        let _watch = ReadyWatch::new(read.as_raw_fd(), waker).unwrap();
        drop(write);
        woken
            .recv_timeout(Duration::from_secs(10))
            .expect("woken by the hang-up");
    }

    #[test]
    fn a_dropped_ready_watch_leaves_nothing_and_never_wakes() {
        use std::io::Write;
        let (read, mut write) = pipe();
        let (waker, woken) = reporter();
        let watch = ReadyWatch::new(read.as_raw_fd(), waker).unwrap();
        let token = watch.token;
        drop(watch);
        assert!(!watcher().unwrap().waiting().contains_key(&token));
        write.write_all(b"x").unwrap();
        assert!(woken.recv_timeout(Duration::from_millis(200)).is_err());
        // The descriptor can be watched again (the old entry left the set).
        let (waker, woken) = reporter();
        let _again = ReadyWatch::new(read.as_raw_fd(), waker).unwrap();
        woken.recv_timeout(Duration::from_secs(10)).expect("woken");
    }

    #[test]
    fn a_stopped_watcher_wakes_every_parked_owner_and_takes_no_more() {
        let watcher = Watcher::start().unwrap();
        let (read, _write) = pipe();
        let (waker, woken) = reporter();
        let _watch = ReadyWatch::new_in(watcher, read.as_raw_fd(), waker.clone()).unwrap();
        watcher.stop();
        woken
            .recv_timeout(Duration::from_secs(10))
            .expect("sent to look for itself");
        assert!(ReadyWatch::new_in(watcher, read.as_raw_fd(), waker).is_err());
    }

    #[test]
    fn a_gone_process_cannot_be_watched() {
        let mut child = Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        assert!(ExitWatch::new(pid).is_err());
    }
}
