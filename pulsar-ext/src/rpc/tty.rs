//! A client's terminal handed over on its attach stream (`pulsar attach`): the daemon reads the
//! keys from it and writes the session's output to it itself, as tmux's server does with its
//! clients' terminals, so no client process is on the path between a key and its echo.
//!
//! The descriptor that came with the hello shares its open file description with the shell
//! that ran the client: making it non-blocking would make that shell's terminal non-blocking
//! too. So the terminal is opened again through `/proc/self/fd` (a description of our own,
//! non-blocking, close-on-exec, never our controlling terminal) and the received descriptor
//! is closed. Like the attach socket, it is watched by the reactor for reads only.
//!
//! A write that finds the terminal full hands the rest of its bytes to a blocking thread,
//! which waits for room in `poll(2)` and writes as it comes, the way a blocking write keeps
//! a terminal full: on two cores the relay has one thread, which under a flood is busy with
//! the pump and sees the reactor's news of room only between tasks, so the terminal sat
//! drained (docs/benchmarks.md, 2026-12-04). What that thread wrote is counted even when the
//! stream ends while it writes ([`HandedTerminal::close`] gives it back), so the hand-back's
//! offset stays exact. Keys and echoes never fill the terminal, so they never take that path.

use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::sys::stat::Mode;
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;

/// A terminal the daemon reads and writes for one attach stream, until the stream ends.
#[derive(Debug)]
pub(super) struct HandedTerminal {
    fd: AsyncFd<OwnedFd>,
    /// A duplicate of the terminal for the blocking threads that fill it; each holds a
    /// clone while it runs.
    room: Arc<OwnedFd>,
    /// The bytes a blocking thread is writing, until the write that handed them over has
    /// counted what it wrote.
    filling: Mutex<Option<Arc<Filling>>>,
}

/// Longest single wait for room on a blocking thread, between looks at whether the stream
/// still wants its bytes written.
const ROOM_WAIT: Duration = Duration::from_millis(50);

/// Bytes a blocking thread writes to a full terminal as room comes.
#[derive(Debug)]
struct Filling {
    bytes: Vec<u8>,
    /// How many of them the terminal took so far.
    written: AtomicUsize,
    /// Stop writing: the stream ended.
    cancel: AtomicBool,
}

impl Filling {
    /// Writes the bytes to `terminal`, waiting for room, until all are written, the stream
    /// cancels or the terminal fails.
    fn run(&self, terminal: &OwnedFd) -> io::Result<()> {
        use nix::poll::{PollFd, PollFlags, PollTimeout};
        let timeout = PollTimeout::try_from(ROOM_WAIT).unwrap_or(PollTimeout::MAX);
        loop {
            let written = self.written.load(Ordering::Acquire);
            if written == self.bytes.len() || self.cancel.load(Ordering::Acquire) {
                return Ok(());
            }
            match nix::unistd::write(terminal, &self.bytes[written..]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    self.written.store(written + n, Ordering::Release);
                }
                Err(Errno::EINTR) => {}
                Err(Errno::EAGAIN) => {
                    let mut fds = [PollFd::new(terminal.as_fd(), PollFlags::POLLOUT)];
                    let _ = nix::poll::poll(&mut fds, timeout);
                }
                Err(err) => return Err(err.into()),
            }
        }
    }
}

impl HandedTerminal {
    /// Takes the terminal among `fds` (the descriptors sent with a hello: exactly one, a
    /// terminal); all of them are closed. `Err` says why it cannot be taken, and the stream
    /// then carries the terminal's bytes in frames as usual.
    pub(super) fn take(mut fds: Vec<OwnedFd>) -> Result<Self, String> {
        let received = match (fds.pop(), fds.is_empty()) {
            (Some(fd), true) => fd,
            (None, _) => return Err("no descriptor came with the hello".into()),
            (Some(_), false) => {
                return Err(format!("{} descriptors came with the hello", fds.len() + 1));
            }
        };
        if !nix::unistd::isatty(received.as_raw_fd()).unwrap_or(false) {
            return Err("the descriptor is not a terminal".into());
        }
        let device = nix::sys::stat::fstat(received.as_raw_fd())
            .map_err(|err| format!("cannot stat the terminal: {err}"))?
            .st_rdev;
        // Our own controlling terminal (a daemon started by hand, in the background of the
        // very terminal that attaches) would stop the daemon with SIGTTIN at the first read.
        if controlling_terminal() == Some(device) {
            return Err("the terminal is the daemon's own controlling terminal".into());
        }
        let path = format!("/proc/self/fd/{}", received.as_raw_fd());
        let flags = OFlag::O_RDWR | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC | OFlag::O_NOCTTY;
        let raw = nix::fcntl::open(path.as_str(), flags, Mode::empty())
            .map_err(|err| format!("cannot open the terminal again: {err}"))?;
        // SAFETY: `open` just returned this descriptor, owned by nothing else.
        let own = unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(raw) };
        drop(received);
        let room = Arc::new(
            own.try_clone()
                .map_err(|err| format!("cannot duplicate the terminal: {err}"))?,
        );
        // SAFETY: the registration owns the descriptor and deregisters it before closing it.
        let fd = unsafe { AsyncFd::register_with_interest(own, Interest::READABLE) }
            .map_err(|err| format!("cannot watch the terminal: {err}"))?;
        Ok(Self {
            fd,
            room,
            filling: Mutex::new(None),
        })
    }

    /// Reads what was typed, waiting until there is some; `Ok(0)` when the terminal is gone
    /// (its other side closed: `EIO` on a terminal is that).
    pub(super) async fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            let mut ready = self.fd.readable().await?;
            match ready.try_io(|fd| nix::unistd::read(fd.as_raw_fd(), buf).map_err(io::Error::from))
            {
                Ok(Ok(n)) => {
                    // A short read took all there was: the readiness goes now, not after a
                    // read that finds nothing.
                    if n < buf.len() {
                        ready.clear_ready();
                    }
                    return Ok(n);
                }
                Ok(Err(err)) if err.raw_os_error() == Some(Errno::EIO as i32) => return Ok(0),
                Ok(Err(err)) if err.kind() == io::ErrorKind::Interrupted => {}
                Ok(Err(err)) => return Err(err),
                Err(_would_block) => {}
            }
        }
    }

    /// Closes the terminal, once no blocking thread writes to it any more (each stops within
    /// [`ROOM_WAIT`]): after this the daemon has no descriptor of it. The bytes such a thread
    /// wrote that the write which handed them over did not count (the stream ended while it
    /// waited), to be counted as shown.
    pub(super) async fn close(self) -> Vec<u8> {
        let Self { fd, room, filling } = self;
        drop(fd);
        let filling = filling
            .into_inner()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(filling) = &filling {
            filling.cancel.store(true, Ordering::Release);
        }
        let deadline = Instant::now() + 4 * ROOM_WAIT;
        while Arc::strong_count(&room) > 1 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        // A thread still writing past the deadline (a terminal with no room for that long)
        // stops at its next look; what it writes until then is not counted.
        filling.map_or_else(Vec::new, |filling| {
            filling.bytes[..filling.written.load(Ordering::Acquire)].to_vec()
        })
    }

    /// Writes all of `bytes`, telling `written` of each part as the terminal takes it. When
    /// the terminal is full, the rest is written by a blocking thread as room comes (see the
    /// module's notes), and told of once it is done.
    pub(super) async fn write_all(
        &self,
        mut bytes: &[u8],
        mut written: impl FnMut(&[u8]),
    ) -> io::Result<()> {
        while !bytes.is_empty() {
            match nix::unistd::write(self.fd.get_ref(), bytes) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    written(&bytes[..n]);
                    bytes = &bytes[n..];
                }
                Err(Errno::EINTR) => {}
                Err(Errno::EAGAIN) => {
                    let filling = Arc::new(Filling {
                        bytes: bytes.to_vec(),
                        written: AtomicUsize::new(0),
                        cancel: AtomicBool::new(false),
                    });
                    *self.lock_filling() = Some(Arc::clone(&filling));
                    let (room, thread) = (Arc::clone(&self.room), Arc::clone(&filling));
                    let done = tokio::task::spawn_blocking(move || thread.run(&room)).await;
                    // Counted here, so no longer by `close`.
                    self.lock_filling().take();
                    let n = filling.written.load(Ordering::Acquire);
                    written(&bytes[..n]);
                    bytes = &bytes[n..];
                    done.map_err(io::Error::other)??;
                }
                Err(err) => return Err(err.into()),
            }
        }
        Ok(())
    }

    fn lock_filling(&self) -> std::sync::MutexGuard<'_, Option<Arc<Filling>>> {
        self.filling
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// The device of this process's controlling terminal, if it has one (`tty_nr` in
/// `/proc/self/stat`, 0 without one).
fn controlling_terminal() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The command name, in parentheses, may hold spaces: fields count after its end.
    let after_name = &stat[stat.rfind(')')? + 1..];
    // state, ppid, pgrp, session, tty_nr.
    let tty_nr: u64 = after_name.split_whitespace().nth(4)?.parse().ok()?;
    (tty_nr != 0).then_some(tty_nr)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read as _;

    /// A pseudo-terminal pair: the terminal (the slave side a client would hand over) and
    /// the master, where a terminal emulator would be.
    fn terminal() -> (OwnedFd, std::fs::File) {
        let pty = nix::pty::openpty(None, None).expect("openpty");
        (pty.slave, std::fs::File::from(pty.master))
    }

    #[tokio::test]
    async fn a_handed_terminal_reads_what_is_typed_and_writes_what_is_shown() {
        use std::io::Write as _;
        let (slave, mut master) = terminal();
        let mut raw = nix::sys::termios::tcgetattr(&slave).unwrap();
        nix::sys::termios::cfmakeraw(&mut raw);
        nix::sys::termios::tcsetattr(&slave, nix::sys::termios::SetArg::TCSANOW, &raw).unwrap();
        let tty = HandedTerminal::take(vec![slave]).expect("a terminal is taken");
        master.write_all(b"keys").unwrap();
        let mut buf = [0u8; 16];
        let n = tokio::time::timeout(std::time::Duration::from_secs(5), tty.read(&mut buf))
            .await
            .expect("the keys arrive")
            .unwrap();
        assert_eq!(&buf[..n], b"keys");
        let mut shown = Vec::new();
        tty.write_all(b"output", |part| shown.extend_from_slice(part))
            .await
            .unwrap();
        assert_eq!(shown, b"output");
        let mut seen = [0u8; 16];
        let n = master.read(&mut seen).unwrap();
        assert_eq!(&seen[..n], b"output");
    }

    #[tokio::test]
    async fn bytes_written_while_a_full_terminal_fills_are_counted_when_it_is_closed() {
        let (slave, mut master) = terminal();
        let mut raw = nix::sys::termios::tcgetattr(&slave).unwrap();
        nix::sys::termios::cfmakeraw(&mut raw);
        nix::sys::termios::tcsetattr(&slave, nix::sys::termios::SetArg::TCSANOW, &raw).unwrap();
        let flags = nix::fcntl::OFlag::O_NONBLOCK;
        nix::fcntl::fcntl(master.as_raw_fd(), nix::fcntl::FcntlArg::F_SETFL(flags)).unwrap();
        let tty = HandedTerminal::take(vec![slave]).unwrap();
        let data = vec![b'a'; 4 << 20];
        let mut counted = 0;
        // Nobody reads: the terminal fills, and the rest goes to a blocking thread.
        let cut = tokio::time::timeout(
            Duration::from_millis(200),
            tty.write_all(&data, |part| counted += part.len()),
        )
        .await;
        assert!(cut.is_err(), "4 MiB do not fit in a terminal nobody reads");
        // Reading now lets that thread write on, uncounted by the write that was cut.
        let mut seen = 0;
        let mut buf = vec![0u8; 65536];
        let deadline = Instant::now() + Duration::from_secs(5);
        while seen < counted + 200_000 && Instant::now() < deadline {
            match master.read(&mut buf) {
                Ok(n) => seen += n,
                Err(_) => std::thread::sleep(Duration::from_millis(1)),
            }
        }
        let unreported = tty.close().await;
        assert!(
            !unreported.is_empty(),
            "the thread wrote while the stream was gone"
        );
        while let Ok(n @ 1..) = master.read(&mut buf) {
            seen += n;
        }
        assert_eq!(
            seen,
            counted + unreported.len(),
            "every byte the terminal got is counted once"
        );
    }

    #[test]
    fn the_received_description_keeps_its_blocking_mode() {
        let (slave, _master) = terminal();
        let shared = slave.try_clone().unwrap();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .build()
            .unwrap();
        let tty = runtime.block_on(async { HandedTerminal::take(vec![slave]) });
        assert!(tty.is_ok());
        let flags = nix::fcntl::fcntl(shared.as_raw_fd(), nix::fcntl::FcntlArg::F_GETFL).unwrap();
        assert!(
            !OFlag::from_bits_truncate(flags).contains(OFlag::O_NONBLOCK),
            "the shell's description of its terminal is not made non-blocking"
        );
    }

    #[tokio::test]
    async fn what_is_not_one_terminal_is_refused() {
        let (a, _b) = std::os::unix::net::UnixStream::pair().unwrap();
        let err = HandedTerminal::take(vec![OwnedFd::from(a)]).unwrap_err();
        assert!(err.contains("not a terminal"), "{err}");
        let (one, _m1) = terminal();
        let (two, _m2) = terminal();
        let err = HandedTerminal::take(vec![one, two]).unwrap_err();
        assert!(err.contains("2 descriptors"), "{err}");
        assert!(HandedTerminal::take(Vec::new()).is_err());
    }

    #[tokio::test]
    async fn a_terminal_whose_other_side_closed_reads_as_its_end() {
        let (slave, master) = terminal();
        let tty = HandedTerminal::take(vec![slave]).unwrap();
        drop(master);
        let mut buf = [0u8; 16];
        let n = tokio::time::timeout(std::time::Duration::from_secs(5), tty.read(&mut buf))
            .await
            .expect("the end is seen")
            .unwrap();
        assert_eq!(n, 0);
    }
}
