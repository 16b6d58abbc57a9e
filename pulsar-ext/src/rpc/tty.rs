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
//! A write that finds the terminal full waits for room in `poll(2)` on a blocking thread,
//! not on the reactor: on two cores the relay has one thread, which under a flood is busy
//! with the pump and sees the reactor's news of room only between tasks, so the terminal
//! sat drained (`pulsar-bench attachpty`, hand-over through the reactor: 53-65 % of the
//! relaying client's throughput for the endless line and 56-57 % for 64-byte lines; through
//! a blocking thread: 96 % and 85 %; docs/benchmarks.md). Keys and echoes never fill it, so
//! they never take that path.

use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::sync::Arc;
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
    /// A duplicate of the terminal for the waits for room on blocking threads; each wait
    /// holds a clone while it runs.
    room: Arc<OwnedFd>,
}

/// Longest single wait for room on a blocking thread; a terminal still full after it is
/// waited for again (and a stream that ended meanwhile is not kept waiting).
const ROOM_WAIT: Duration = Duration::from_millis(50);

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
        Ok(Self { fd, room })
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

    /// Writes some of `bytes` (how many, at least one), waiting while the terminal is full.
    pub(super) async fn write(&self, bytes: &[u8]) -> io::Result<usize> {
        loop {
            match nix::unistd::write(self.fd.get_ref(), bytes) {
                Ok(0) if !bytes.is_empty() => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => return Ok(n),
                Err(Errno::EINTR) => {}
                Err(Errno::EAGAIN) => {
                    let room = Arc::clone(&self.room);
                    tokio::task::spawn_blocking(move || wait_for_room(&room))
                        .await
                        .map_err(io::Error::other)?;
                }
                Err(err) => return Err(err.into()),
            }
        }
    }

    /// Closes the terminal, once no wait for room holds it any more (each ends within
    /// [`ROOM_WAIT`]): after this the daemon has no descriptor of it.
    pub(super) async fn close(self) {
        let Self { fd, room } = self;
        drop(fd);
        let deadline = Instant::now() + 4 * ROOM_WAIT;
        while Arc::strong_count(&room) > 1 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    /// Writes all of `bytes`, telling `written` of each part as the terminal takes it.
    pub(super) async fn write_all(
        &self,
        mut bytes: &[u8],
        mut written: impl FnMut(&[u8]),
    ) -> io::Result<()> {
        while !bytes.is_empty() {
            let n = self.write(bytes).await?;
            written(&bytes[..n]);
            bytes = &bytes[n..];
        }
        Ok(())
    }
}

/// Waits until `terminal` has room, or [`ROOM_WAIT`] passes.
fn wait_for_room(terminal: &OwnedFd) {
    use nix::poll::{PollFd, PollFlags, PollTimeout};
    let mut fds = [PollFd::new(terminal.as_fd(), PollFlags::POLLOUT)];
    let timeout = PollTimeout::try_from(ROOM_WAIT).unwrap_or(PollTimeout::MAX);
    let _ = nix::poll::poll(&mut fds, timeout);
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

    /// A pseudo-terminal pair: the terminal (the slave side a client would hand over) and
    /// the master, where a terminal emulator would be.
    fn terminal() -> (OwnedFd, std::fs::File) {
        let pty = nix::pty::openpty(None, None).expect("openpty");
        (pty.slave, std::fs::File::from(pty.master))
    }

    #[tokio::test]
    async fn a_handed_terminal_reads_what_is_typed_and_writes_what_is_shown() {
        use std::io::{Read as _, Write as _};
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
