//! A connected Unix stream socket watched by tokio's reactor for reads only, for the attach
//! stream's two ends.
//!
//! A tokio `UnixStream` is registered for reads and writes at once, and the kernel says a
//! Unix socket has room each time its peer reads from it: so every frame the other end read
//! woke this end's thread once more, for nothing (`strace` of `pulsar attach` while typing:
//! a wake-up on room between each key and its echo, while the daemon and the session's
//! program needed the CPU). Here the socket's own registration is for reads; a writer that
//! finds it full watches for room on a registration of its own, made on a duplicate
//! descriptor for that wait and gone after it.

use std::io::{self, IoSlice, Write as _};
use std::mem::MaybeUninit;
use std::net::Shutdown;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream as StdUnixStream;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncRead, AsyncWrite, Interest, ReadBuf};

/// A connected socket, registered for reads with the reactor of the runtime it was made on.
#[derive(Debug)]
pub struct Socket(Arc<AsyncFd<StdUnixStream>>);

impl Socket {
    /// Connects to the socket at `path`.
    pub async fn connect(path: &Path) -> io::Result<Self> {
        let stream = tokio::net::UnixStream::connect(path).await?;
        Self::from_std(stream.into_std()?)
    }

    /// Watches `stream` (made non-blocking) from the current runtime's reactor.
    pub fn from_std(stream: StdUnixStream) -> io::Result<Self> {
        stream.set_nonblocking(true)?;
        // SAFETY: the registration owns the socket, so its descriptor stays open and the same
        // for the registration's whole life; it is deregistered before the socket closes.
        let registered = unsafe { AsyncFd::register_with_interest(stream, Interest::READABLE) }
            .map_err(io::Error::from)?;
        Ok(Self(Arc::new(registered)))
    }

    /// Its two halves, which may be used at once (from one task or two).
    pub fn split(self) -> (SocketReader, SocketWriter) {
        (
            SocketReader(Arc::clone(&self.0)),
            SocketWriter {
                socket: self.0,
                room: None,
            },
        )
    }
}

/// The reading half of a [`Socket`].
#[derive(Debug)]
pub struct SocketReader(Arc<AsyncFd<StdUnixStream>>);

impl SocketReader {
    /// Appends to `buf` what one read gives (up to its capacity, and at least a byte's room)
    /// once the socket is readable, taking the descriptors that came with those bytes
    /// (`SCM_RIGHTS`, received close-on-exec so that no program the daemon starts inherits
    /// one) into `fds`. The kernel ends a read at the end of the bytes that carried
    /// descriptors, so bytes sent after them are left for plain reads.
    pub async fn read_with_fds(
        &self,
        buf: &mut Vec<u8>,
        fds: &mut Vec<OwnedFd>,
    ) -> io::Result<usize> {
        use nix::sys::socket::{ControlMessageOwned, MsgFlags, recvmsg};
        use std::os::fd::FromRawFd as _;
        loop {
            let mut guard = self.0.readable().await?;
            let start = buf.len();
            // Zeroed rather than read into uninitialised: this is a handshake's one read.
            buf.resize(buf.capacity().max(start + 1), 0);
            let received = guard.try_io(|socket| {
                let mut iov = [io::IoSliceMut::new(&mut buf[start..])];
                let mut space = nix::cmsg_space!([RawFd; MAX_RECEIVED_FDS]);
                let msg = recvmsg::<()>(
                    socket.as_raw_fd(),
                    &mut iov,
                    Some(&mut space),
                    MsgFlags::MSG_CMSG_CLOEXEC,
                )
                .map_err(io::Error::from)?;
                for cmsg in msg.cmsgs() {
                    if let ControlMessageOwned::ScmRights(received) = cmsg {
                        // SAFETY: the kernel just installed these descriptors for us.
                        fds.extend(
                            received
                                .into_iter()
                                .map(|fd| unsafe { OwnedFd::from_raw_fd(fd) }),
                        );
                    }
                }
                Ok(msg.bytes)
            });
            let read = match &received {
                Ok(Ok(n)) => *n,
                _ => 0,
            };
            buf.truncate(start + read);
            match received {
                Ok(Ok(n)) => return Ok(n),
                Ok(Err(err)) if err.kind() == io::ErrorKind::Interrupted => {}
                Ok(Err(err)) => return Err(err),
                Err(_would_block) => {}
            }
        }
    }

    /// Reads into the spare capacity of `buf` if the reactor knows the socket readable;
    /// `WouldBlock` at once otherwise (as tokio's `try_read_buf`).
    pub fn try_read_buf(&self, buf: &mut Vec<u8>) -> io::Result<usize> {
        self.0.try_io(Interest::READABLE, |socket| {
            let spare = buf.spare_capacity_mut();
            let n = sys_read(socket.as_raw_fd(), spare)?;
            // SAFETY: the kernel wrote the first `n` bytes of the spare capacity.
            unsafe { buf.set_len(buf.len() + n) };
            Ok(n)
        })
    }
}

impl AsyncRead for SocketReader {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        loop {
            let mut guard = ready!(self.0.poll_read_ready(cx))?;
            // SAFETY: only the kernel writes into the unfilled part, and only the bytes it
            // wrote are marked as filled.
            let unfilled = unsafe { buf.unfilled_mut() };
            let len = unfilled.len();
            match guard.try_io(|socket| sys_read(socket.as_raw_fd(), unfilled)) {
                Ok(Ok(n)) => {
                    // A short read took all there was: the readiness goes now rather than
                    // after a read that finds nothing (as tokio's own streams do). Data that
                    // came after it woke the registration with a newer tick, left in place.
                    if n > 0 && n < len {
                        guard.clear_ready();
                    }
                    // SAFETY: the kernel initialised the first `n` unfilled bytes.
                    unsafe { buf.assume_init(n) };
                    buf.advance(n);
                    return Poll::Ready(Ok(()));
                }
                Ok(Err(err)) if err.kind() == io::ErrorKind::Interrupted => {}
                Ok(Err(err)) => return Poll::Ready(Err(err)),
                Err(_would_block) => {}
            }
        }
    }
}

/// Most descriptors taken from one read; more are closed by the kernel (the read says
/// its control data was cut short) and never reach us.
const MAX_RECEIVED_FDS: usize = 4;

/// The writing half of a [`Socket`]. Writes go straight to the socket; only one that finds
/// it full waits, on a registration for room made for that wait.
#[derive(Debug)]
pub struct SocketWriter {
    socket: Arc<AsyncFd<StdUnixStream>>,
    /// While a write waits for room: the registration it waits on.
    room: Option<AsyncFd<OwnedFd>>,
}

impl SocketWriter {
    /// Writes all of `bytes` with `fd` passed along with them (`SCM_RIGHTS`): the peer
    /// receives a descriptor of the same open file. For a handshake on a connection nothing
    /// was written to yet.
    pub async fn write_all_with_fd(&mut self, bytes: &[u8], fd: BorrowedFd<'_>) -> io::Result<()> {
        use nix::sys::socket::{ControlMessage, MsgFlags, sendmsg};
        use tokio::io::AsyncWriteExt as _;
        let fds = [fd.as_raw_fd()];
        let rights = [ControlMessage::ScmRights(&fds)];
        let sent = loop {
            let iov = [IoSlice::new(bytes)];
            match sendmsg::<()>(
                self.socket.as_raw_fd(),
                &iov,
                &rights,
                MsgFlags::MSG_NOSIGNAL,
                None,
            ) {
                Ok(sent) => break sent,
                Err(nix::errno::Errno::EINTR) => {}
                Err(nix::errno::Errno::EAGAIN) => {
                    watch_for_room(self.socket.get_ref())?
                        .writable()
                        .await?
                        .retain_ready();
                }
                Err(err) => return Err(err.into()),
            }
        };
        // The descriptor went with the first of the bytes; the rest, if the socket took
        // only part, follow as they are.
        self.write_all(&bytes[sent..]).await
    }

    /// `write` once the socket has room: at once if it has, else when the registration for
    /// room says so, which then goes.
    fn poll_write_with(
        &mut self,
        cx: &mut Context<'_>,
        mut write: impl FnMut(&StdUnixStream) -> io::Result<usize>,
    ) -> Poll<io::Result<usize>> {
        loop {
            let Some(room) = &self.room else {
                match write(self.socket.get_ref()) {
                    Err(err) if err.kind() == io::ErrorKind::WouldBlock => {
                        self.room = Some(watch_for_room(self.socket.get_ref())?);
                        continue;
                    }
                    Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                    result => return Poll::Ready(result),
                }
            };
            let written = {
                let mut guard = ready!(room.poll_write_ready(cx))?;
                guard.try_io(|_| write(self.socket.get_ref()))
            };
            match written {
                Ok(Err(err)) if err.kind() == io::ErrorKind::Interrupted => {}
                Ok(result) => {
                    self.room = None;
                    return Poll::Ready(result);
                }
                Err(_would_block) => {}
            }
        }
    }
}

impl AsyncWrite for SocketWriter {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.get_mut()
            .poll_write_with(cx, |mut socket| socket.write(buf))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.get_mut()
            .poll_write_with(cx, |mut socket| socket.write_vectored(bufs))
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(self.socket.get_ref().shutdown(Shutdown::Write))
    }
}

/// A registration watching `socket` (or any descriptor that may be full: a terminal) for
/// room, on a duplicate descriptor it owns (one descriptor cannot be registered twice with
/// one reactor). Edge-triggered, it sees the room
/// the socket had already when it is made.
pub fn watch_for_room(socket: &impl AsFd) -> io::Result<AsyncFd<OwnedFd>> {
    let dup = socket.as_fd().try_clone_to_owned()?;
    // SAFETY: the registration owns the duplicate, which it deregisters before closing.
    unsafe { AsyncFd::register_with_interest(dup, Interest::WRITABLE) }.map_err(io::Error::from)
}

/// `read(2)` into memory that need not be initialised.
fn sys_read(fd: RawFd, buf: &mut [MaybeUninit<u8>]) -> io::Result<usize> {
    // SAFETY: `buf` is valid for `buf.len()` bytes of writes; the kernel writes raw bytes.
    let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    fn pair() -> (Socket, Socket) {
        let (a, b) = StdUnixStream::pair().unwrap();
        (Socket::from_std(a).unwrap(), Socket::from_std(b).unwrap())
    }

    #[tokio::test]
    async fn bytes_written_on_one_end_are_read_on_the_other_in_order() {
        let (a, b) = pair();
        let (_, mut writer) = a.split();
        let (mut reader, _) = b.split();
        writer.write_all(b"hello ").await.unwrap();
        let written = writer
            .write_vectored(&[IoSlice::new(b"wor"), IoSlice::new(b"ld")])
            .await
            .unwrap();
        assert_eq!(
            written, 5,
            "a socket with room takes both slices in one write"
        );
        let mut buf = [0u8; 11];
        reader.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"hello world");
    }

    #[tokio::test]
    async fn a_write_larger_than_the_socket_holds_waits_for_room_and_arrives_whole() {
        let (a, b) = pair();
        let (_, mut writer) = a.split();
        let (mut reader, _) = b.split();
        let sent: Vec<u8> = (0..4_000_000u32).map(|i| i as u8).collect();
        let expected = sent.clone();
        let writing = tokio::spawn(async move {
            writer.write_all(&sent).await.unwrap();
            writer.shutdown().await.unwrap();
        });
        let mut got = Vec::new();
        tokio::time::timeout(
            std::time::Duration::from_secs(20),
            reader.read_to_end(&mut got),
        )
        .await
        .expect("the write finished")
        .unwrap();
        writing.await.unwrap();
        assert!(
            got == expected,
            "{} bytes of {} arrived",
            got.len(),
            expected.len()
        );
    }

    #[tokio::test]
    async fn the_reader_sees_the_end_after_the_peer_shuts_down_writing() {
        let (a, b) = pair();
        let (_, mut writer) = a.split();
        let (mut reader, _) = b.split();
        writer.write_all(b"last").await.unwrap();
        writer.shutdown().await.unwrap();
        let mut got = Vec::new();
        reader.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, b"last");
        // And again: the end stays the end.
        assert_eq!(reader.read(&mut [0u8; 8]).await.unwrap(), 0);
    }

    #[tokio::test]
    async fn try_read_buf_reads_what_is_there_and_would_block_once_it_is_read() {
        let (a, b) = pair();
        let (_, mut writer) = a.split();
        let (mut reader, _) = b.split();
        writer.write_all(b"ab").await.unwrap();
        // The first read waits for the reactor's word; the bytes after it are there at once.
        let mut first = [0u8; 1];
        reader.read_exact(&mut first).await.unwrap();
        let mut buf = Vec::with_capacity(64);
        assert_eq!(reader.try_read_buf(&mut buf).unwrap(), 1);
        assert_eq!(buf, b"b");
        let err = reader.try_read_buf(&mut buf).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::WouldBlock);
    }
}
