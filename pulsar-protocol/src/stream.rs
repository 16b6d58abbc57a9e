//! The attach stream: one connection that carries one client's terminal both ways as raw
//! bytes, for clients that put a session on a terminal (`pulsar attach`).
//!
//! JSON-RPC carries output as base64 inside JSON inside WebSocket frames, and every keystroke
//! as a request with an answer. On the attach stream, after a one-line JSON handshake, the
//! daemon writes the session's output bytes as they are, and the client writes its keystrokes
//! and size changes, each in a frame of a five-byte header (kind, then the payload's length as
//! a little-endian `u32`). docs/protocol.md ("The attach stream") is the reference.
//!
//! ```text
//! client: \0 {"session_id":"…","cols":80,"rows":24} \n
//! daemon: {"result":{"client_id":"conn-7","mode":"interactive"}} \n
//! daemon: 's' len offset:u64 redraw…      client: 'i' len keys…
//! daemon: 'o' len bytes…                  client: 'z' 4 cols:u16 rows:u16
//! daemon: 'x' len {"code":0,"signal":null}
//! ```

use std::io;
use std::os::fd::{BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};
use tokio::net::unix::OwnedReadHalf;

use crate::socket::{Socket, SocketReader, SocketWriter};
use crate::{ClientMode, SessionId};

/// The first byte of an attach stream connection (JSON starts with `{`, `[` or whitespace,
/// HTTP with a method's letter).
pub const MAGIC: u8 = 0;

/// Clears a terminal and homes its cursor: what a screen frame's bytes are drawn after
/// (they redraw a blank terminal).
pub const CLEAR_SCREEN: &[u8] = b"\x1b[H\x1b[2J";

/// A frame's header: its kind, then its payload's length (`u32`, little-endian).
pub const HEADER_LEN: usize = 5;

/// Longest handshake line either side accepts.
pub const MAX_LINE: usize = 64 * 1024;

/// Frame kinds.
pub mod kind {
    /// Daemon → client: output bytes, continuing the stream.
    pub const OUTPUT: u8 = b'o';
    /// Daemon → client: the offset (`u64`, little-endian) and the bytes that redraw the
    /// screen on a blank terminal; the output after it continues from that offset. First
    /// when the stream does not continue from `since`, and again whenever the client fell
    /// so far behind that bytes it had not read left the session's ring.
    pub const SCREEN: u8 = b's';
    /// Daemon → client: the terminal's new size, `cols` and `rows` (`u16`, little-endian).
    pub const RESIZED: u8 = b'r';
    /// Daemon → client: the process ended (JSON `{"code","signal"}`); the last frame.
    pub const EXITED: u8 = b'x';
    /// Daemon → client: a request in a frame was refused (JSON `{"code","message"}`); the
    /// stream goes on.
    pub const ERROR: u8 = b'e';
    /// Daemon → client: the terminal handed over with the hello is the client's again (JSON
    /// [`TerminalReturned`](super::TerminalReturned)); the daemon no longer reads or writes
    /// it. Sent once, when a stream that took a terminal ends, before an exit frame.
    pub const RETURNED: u8 = b'h';
    /// Client → daemon: keystrokes, written to the session as one unit.
    pub const INPUT: u8 = b'i';
    /// Client → daemon: this client's terminal size, `cols` and `rows` (`u16`,
    /// little-endian), for the session's resize policy.
    pub const RESIZE: u8 = b'z';
}

/// The client's handshake, sent as one JSON line after [`MAGIC`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamHello {
    /// The session to attach to.
    pub session_id: SessionId,
    /// The client id to attach as (default: one per connection, `conn-N`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// `interactive` (default) or `read_only`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<ClientMode>,
    /// This client's terminal width, applied before the first screen is drawn.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cols: Option<u16>,
    /// Its height.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rows: Option<u16>,
    /// Continue from this absolute offset when the session still holds it (a client coming
    /// back after its connection broke); otherwise the stream starts with a screen.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<u64>,
    /// Hands the client's terminal to the daemon: its descriptor came with the hello line
    /// (`SCM_RIGHTS`), and the daemon reads the keys from it and writes the output to it
    /// itself, off the client's path. The answer says whether it was taken.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub terminal: Option<TerminalHandover>,
}

/// How to use a terminal handed over with a [`StreamHello`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TerminalHandover {
    /// The byte that detaches when typed (it is not written to the session).
    pub detach_key: u8,
    /// Whether the terminal is on the alternate screen now (true when the client cannot
    /// know: the daemon then leaves it before drawing the screen, which costs nothing
    /// before a full redraw).
    pub alternate_screen: bool,
}

/// The payload of a [`kind::RETURNED`] frame: the terminal as the daemon leaves it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TerminalReturned {
    /// The offset of the next output byte the terminal has not been shown, when what the
    /// daemon wrote ended at one (`null` when it stopped inside a redraw): the `since` of a
    /// stream that continues on this terminal.
    pub next: Option<u64>,
    /// Whether the terminal is on the alternate screen.
    pub alternate_screen: bool,
    /// The user detached (the detach key, or the terminal went away); false when the
    /// session exited (an exit frame follows), the client closed, or the daemon stops.
    pub detached: bool,
}

/// The daemon's handshake answer: `{"result": …}` or `{"error": …}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StreamAnswer {
    /// Attached; frames follow.
    Result(StreamAccepted),
    /// Refused; the daemon closes the connection.
    Error(StreamError),
}

/// An accepted attach stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamAccepted {
    /// The id the client is attached under.
    pub client_id: String,
    /// The mode granted.
    pub mode: ClientMode,
    /// The daemon took the terminal handed over with the hello; when false (or absent: a
    /// daemon older than hand-over) output and keys go through the stream's frames.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub terminal: bool,
}

/// A refusal, as a JSON-RPC error object: the codes are those of [`crate::error`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamError {
    /// The error code.
    pub code: i32,
    /// What went wrong, naming the session.
    pub message: String,
}

/// How the process ended, in an [`kind::EXITED`] frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamExit {
    /// Exit code, when the process exited normally.
    pub code: Option<i32>,
    /// Signal number, when a signal killed it.
    pub signal: Option<i32>,
}

/// A frame from the daemon.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerFrame {
    /// Output bytes.
    Output(Vec<u8>),
    /// Redraw the screen with `data`; output continues from `offset`.
    Screen {
        /// Where the output after this frame starts.
        offset: u64,
        /// The bytes that redraw the screen on a blank terminal.
        data: Vec<u8>,
    },
    /// The terminal's size changed.
    Resized {
        /// Width.
        cols: u16,
        /// Height.
        rows: u16,
    },
    /// The process ended; nothing follows.
    Exited(StreamExit),
    /// A frame's request was refused.
    Error(StreamError),
    /// The terminal handed over is the client's again.
    Returned(TerminalReturned),
    /// A kind this client does not know (from a newer daemon): skip it.
    Unknown(u8),
}

/// A frame from the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientFrame {
    /// Keystrokes.
    Input(Vec<u8>),
    /// The client's terminal size.
    Resize {
        /// Width.
        cols: u16,
        /// Height.
        rows: u16,
    },
    /// A kind this daemon does not know (from a newer client): skip it.
    Unknown(u8),
}

/// A frame that is not what its kind says.
fn malformed(kind: u8, why: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("malformed {:?} frame: {why}", char::from(kind)),
    )
}

fn size_of(kind: u8, payload: &[u8]) -> io::Result<(u16, u16)> {
    match payload {
        [c0, c1, r0, r1] => Ok((
            u16::from_le_bytes([*c0, *c1]),
            u16::from_le_bytes([*r0, *r1]),
        )),
        _ => Err(malformed(kind, "a size is 4 bytes")),
    }
}

impl ServerFrame {
    /// Reads a frame's payload by its kind.
    pub fn parse(kind: u8, payload: Vec<u8>) -> io::Result<Self> {
        Ok(match kind {
            kind::OUTPUT => Self::Output(payload),
            kind::SCREEN => {
                if payload.len() < 8 {
                    return Err(malformed(kind, "it starts with an 8-byte offset"));
                }
                let mut offset = [0u8; 8];
                offset.copy_from_slice(&payload[..8]);
                let mut data = payload;
                data.drain(..8);
                Self::Screen {
                    offset: u64::from_le_bytes(offset),
                    data,
                }
            }
            kind::RESIZED => {
                let (cols, rows) = size_of(kind, &payload)?;
                Self::Resized { cols, rows }
            }
            kind::EXITED => Self::Exited(
                serde_json::from_slice(&payload)
                    .map_err(|err| malformed(kind, &err.to_string()))?,
            ),
            kind::ERROR => Self::Error(
                serde_json::from_slice(&payload)
                    .map_err(|err| malformed(kind, &err.to_string()))?,
            ),
            kind::RETURNED => Self::Returned(
                serde_json::from_slice(&payload)
                    .map_err(|err| malformed(kind, &err.to_string()))?,
            ),
            other => Self::Unknown(other),
        })
    }
}

impl ClientFrame {
    /// Reads a frame's payload by its kind.
    pub fn parse(kind: u8, payload: Vec<u8>) -> io::Result<Self> {
        Ok(match kind {
            kind::INPUT => Self::Input(payload),
            kind::RESIZE => {
                let (cols, rows) = size_of(kind, &payload)?;
                Self::Resize { cols, rows }
            }
            other => Self::Unknown(other),
        })
    }
}

/// The header of a frame of `kind` carrying `len` bytes.
///
/// # Panics
/// When `len` does not fit a `u32` (no frame comes near: output frames are at most 64 KiB).
pub fn header(kind: u8, len: usize) -> [u8; HEADER_LEN] {
    let len = u32::try_from(len).expect("a frame's payload fits in a u32");
    let [a, b, c, d] = len.to_le_bytes();
    [kind, a, b, c, d]
}

/// A size frame's payload.
pub fn size_payload(cols: u16, rows: u16) -> [u8; 4] {
    let [c0, c1] = cols.to_le_bytes();
    let [r0, r1] = rows.to_le_bytes();
    [c0, c1, r0, r1]
}

/// Writes one frame.
pub async fn write_frame<W: AsyncWrite + Unpin>(
    writer: &mut W,
    kind: u8,
    payload: &[u8],
) -> io::Result<()> {
    // One write (a gathering one) for the header and the payload, however long.
    let header = header(kind, payload.len());
    let mut written = 0;
    let total = HEADER_LEN + payload.len();
    while written < total {
        let n = if written < HEADER_LEN {
            let slices = [
                io::IoSlice::new(&header[written..]),
                io::IoSlice::new(payload),
            ];
            writer.write_vectored(&slices).await?
        } else {
            writer.write(&payload[written - HEADER_LEN..]).await?
        };
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        written += n;
    }
    Ok(())
}

/// A frame longer than the reader accepts (for the daemon, `max_input_bytes`), inside the
/// [`io::Error`] that [`FrameReader::frame`] returns for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a {:?} frame of {len} bytes is longer than the {max} allowed", char::from(*.kind))]
pub struct FrameTooLong {
    /// The frame's kind.
    pub kind: u8,
    /// Its payload's length.
    pub len: usize,
    /// The longest accepted.
    pub max: usize,
}

impl FrameTooLong {
    /// The `FrameTooLong` inside `err`, if that is what it is.
    pub fn of(err: &io::Error) -> Option<Self> {
        err.get_ref()?.downcast_ref::<Self>().copied()
    }
}

/// Reads a handshake line, then frames, from one byte stream. Cancel-safe: the only wait is
/// a read into its own buffer, so a `select!` may drop a call and make the next.
#[derive(Debug)]
pub struct FrameReader<R> {
    reader: R,
    buf: Vec<u8>,
    /// Where the unread bytes in `buf` start.
    start: usize,
    /// Largest payload accepted.
    max_payload: usize,
}

impl<R: AsyncRead + Unpin> FrameReader<R> {
    /// Reads `reader`, refusing frames whose payload is longer than `max_payload`.
    pub fn new(reader: R, max_payload: usize) -> Self {
        Self {
            reader,
            buf: Vec::with_capacity(8 * 1024),
            start: 0,
            max_payload,
        }
    }

    /// Reads more; false at the end of the stream.
    async fn fill(&mut self) -> io::Result<bool> {
        self.make_room();
        Ok(self.reader.read_buf(&mut self.buf).await? > 0)
    }

    /// Drops what was consumed once it is most of the buffer, and leaves room for a read.
    fn make_room(&mut self) {
        if self.start > 0 && self.start * 2 >= self.buf.len() {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        if self.buf.capacity() - self.buf.len() < 4096 {
            self.buf.reserve(64 * 1024);
        }
    }

    /// The next line, without its `\n`, skipping a leading [`MAGIC`]; `None` at the end of
    /// the stream before one.
    pub async fn line(&mut self) -> io::Result<Option<Vec<u8>>> {
        loop {
            if let Some(line) = self.buffered_line()? {
                return Ok(Some(line));
            }
            if !self.fill().await? {
                return Ok(None);
            }
        }
    }

    /// The line at the start of the unread bytes, if it is there whole.
    fn buffered_line(&mut self) -> io::Result<Option<Vec<u8>>> {
        let unread = &self.buf[self.start..];
        if let Some(end) = unread.iter().position(|&b| b == b'\n') {
            let mut line = &unread[..end];
            if line.first() == Some(&MAGIC) {
                line = &line[1..];
            }
            let line = line.to_vec();
            self.start += end + 1;
            return Ok(Some(line));
        }
        if unread.len() > MAX_LINE {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("the handshake line is longer than {MAX_LINE} bytes"),
            ));
        }
        Ok(None)
    }

    /// The next frame's kind and payload; `None` at the end of the stream between frames.
    pub async fn frame(&mut self) -> io::Result<Option<(u8, Vec<u8>)>> {
        loop {
            if let Some(frame) = self.buffered()? {
                return Ok(Some(frame));
            }
            if !self.fill().await? {
                return if self.start == self.buf.len() {
                    Ok(None)
                } else {
                    Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "the stream ended inside a frame",
                    ))
                };
            }
        }
    }

    /// The next frame if it has been read whole already; `None` without waiting otherwise.
    pub fn buffered(&mut self) -> io::Result<Option<(u8, Vec<u8>)>> {
        let unread = &self.buf[self.start..];
        if unread.len() < HEADER_LEN {
            return Ok(None);
        }
        let len = u32::from_le_bytes([unread[1], unread[2], unread[3], unread[4]]) as usize;
        if len > self.max_payload {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                FrameTooLong {
                    kind: unread[0],
                    len,
                    max: self.max_payload,
                },
            ));
        }
        if unread.len() < HEADER_LEN + len {
            self.buf.reserve(HEADER_LEN + len - unread.len());
            return Ok(None);
        }
        let frame = (unread[0], unread[HEADER_LEN..HEADER_LEN + len].to_vec());
        self.start += HEADER_LEN + len;
        Ok(Some(frame))
    }
}

impl<R> FrameReader<R> {
    /// [`FrameReader::try_frame`], reading with `try_read_buf`.
    fn try_frame_with(
        &mut self,
        try_read_buf: impl FnOnce(&R, &mut Vec<u8>) -> io::Result<usize>,
    ) -> io::Result<Option<(u8, Vec<u8>)>>
    where
        R: AsyncRead + Unpin,
    {
        if let Some(frame) = self.buffered()? {
            return Ok(Some(frame));
        }
        self.make_room();
        match try_read_buf(&self.reader, &mut self.buf) {
            Ok(_) => self.buffered(),
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => Ok(None),
            Err(err) => Err(err),
        }
    }
}

impl FrameReader<OwnedReadHalf> {
    /// The next frame if it can be had without waiting: from what was read already, or from
    /// what the socket holds while the runtime knows it to be readable (a read that came
    /// back short makes it wait for the reactor's next word).
    pub fn try_frame(&mut self) -> io::Result<Option<(u8, Vec<u8>)>> {
        self.try_frame_with(|reader, buf| reader.try_read_buf(buf))
    }
}

impl FrameReader<SocketReader> {
    /// The next frame if it can be had without waiting: from what was read already, or from
    /// what the socket holds while the runtime knows it to be readable (a read that came
    /// back short makes it wait for the reactor's next word).
    pub fn try_frame(&mut self) -> io::Result<Option<(u8, Vec<u8>)>> {
        self.try_frame_with(|reader, buf| reader.try_read_buf(buf))
    }
}

/// Why [`AttachStream::open`] failed.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// Nothing is listening at the path.
    #[error("no Pulsar daemon is listening on {path}: {source}")]
    NotRunning {
        /// The socket path.
        path: PathBuf,
        /// The connect error.
        source: io::Error,
    },
    /// The daemon refused the attach (no such session, stopped, too many clients, …).
    #[error("{}", .0.message)]
    Refused(StreamError),
    /// The daemon did not answer the handshake as one that knows the attach stream would
    /// (it closed, or answered something else).
    #[error("attach stream handshake with the daemon on {path} failed: {reason}")]
    Handshake {
        /// The socket path.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
}

impl FrameReader<SocketReader> {
    /// [`line`](Self::line), with the descriptors sent along with its bytes (a terminal
    /// handed over with the hello). Bytes after the line stay buffered for [`frame`](Self::frame).
    pub async fn line_with_fds(&mut self) -> io::Result<(Option<Vec<u8>>, Vec<OwnedFd>)> {
        let mut fds = Vec::new();
        loop {
            if let Some(line) = self.buffered_line()? {
                return Ok((Some(line), fds));
            }
            self.make_room();
            if self.reader.read_with_fds(&mut self.buf, &mut fds).await? == 0 {
                return Ok((None, fds));
            }
        }
    }
}

/// Largest frame a client accepts (a screen with its history can be large).
const MAX_SERVER_FRAME: usize = 64 * 1024 * 1024;

/// A client's end of an attach stream.
#[derive(Debug)]
pub struct AttachStream {
    reader: FrameReader<SocketReader>,
    writer: SocketWriter,
}

impl AttachStream {
    /// Connects to the daemon at `path` and attaches as `hello` says.
    pub async fn open(
        path: &Path,
        hello: &StreamHello,
    ) -> Result<(StreamAccepted, Self), OpenError> {
        Self::open_with(path, hello, None).await
    }

    /// [`open`](Self::open), handing `terminal` to the daemon with the hello (whose
    /// [`terminal`](StreamHello::terminal) says how to use it). The answer's
    /// [`terminal`](StreamAccepted::terminal) says whether the daemon took it: if so it reads
    /// the keys and writes the output itself until a [`ServerFrame::Returned`]; if not (an
    /// older daemon drops the descriptor unseen) the stream carries them as usual.
    pub async fn open_handing_over(
        path: &Path,
        hello: &StreamHello,
        terminal: BorrowedFd<'_>,
    ) -> Result<(StreamAccepted, Self), OpenError> {
        Self::open_with(path, hello, Some(terminal)).await
    }

    async fn open_with(
        path: &Path,
        hello: &StreamHello,
        terminal: Option<BorrowedFd<'_>>,
    ) -> Result<(StreamAccepted, Self), OpenError> {
        let stream = Socket::connect(path)
            .await
            .map_err(|source| OpenError::NotRunning {
                path: path.to_owned(),
                source,
            })?;
        let handshake = |reason: String| OpenError::Handshake {
            path: path.to_owned(),
            reason,
        };
        let (read, mut writer) = stream.split();
        let mut line = vec![MAGIC];
        serde_json::to_writer(&mut line, hello).map_err(|err| handshake(err.to_string()))?;
        line.push(b'\n');
        let sent = match terminal {
            Some(fd) => writer.write_all_with_fd(&line, fd).await,
            None => writer.write_all(&line).await,
        };
        sent.map_err(|err| handshake(err.to_string()))?;
        let mut reader = FrameReader::new(read, MAX_SERVER_FRAME);
        let answer = match reader.line().await {
            Ok(Some(answer)) => answer,
            Ok(None) => return Err(handshake("the daemon closed the connection".into())),
            Err(err) => return Err(handshake(err.to_string())),
        };
        match serde_json::from_slice(&answer) {
            Ok(StreamAnswer::Result(accepted)) => Ok((accepted, Self { reader, writer })),
            Ok(StreamAnswer::Error(refusal)) => Err(OpenError::Refused(refusal)),
            Err(err) => Err(handshake(format!("unexpected answer: {err}"))),
        }
    }

    /// The next frame from the daemon; `None` when it closed the stream. Cancel-safe.
    pub async fn next(&mut self) -> io::Result<Option<ServerFrame>> {
        match self.reader.frame().await? {
            Some((kind, payload)) => ServerFrame::parse(kind, payload).map(Some),
            None => Ok(None),
        }
    }

    /// The next frame from the daemon if it is here already (read whole, or waiting in the
    /// socket); `None` without waiting otherwise. For gathering consecutive output into one
    /// write.
    pub fn try_next(&mut self) -> io::Result<Option<ServerFrame>> {
        match self.reader.try_frame()? {
            Some((kind, payload)) => ServerFrame::parse(kind, payload).map(Some),
            None => Ok(None),
        }
    }

    /// Types `keys` into the session.
    pub async fn send_input(&mut self, keys: &[u8]) -> io::Result<()> {
        write_frame(&mut self.writer, kind::INPUT, keys).await
    }

    /// Tells the daemon this client's terminal size.
    pub async fn resize(&mut self, cols: u16, rows: u16) -> io::Result<()> {
        write_frame(&mut self.writer, kind::RESIZE, &size_payload(cols, rows)).await
    }

    /// Detaches: says no more is coming, then waits until the daemon has detached this
    /// client and closed (output still in flight is dropped), or `timeout` passes. The
    /// terminal handed back on the way, if the stream had one.
    pub async fn close(mut self, timeout: std::time::Duration) -> Option<TerminalReturned> {
        let _ = self.writer.shutdown().await;
        let mut returned = None;
        let _ = tokio::time::timeout(timeout, async {
            while let Ok(Some((kind, payload))) = self.reader.frame().await {
                if kind == kind::RETURNED
                    && let Ok(ServerFrame::Returned(frame)) = ServerFrame::parse(kind, payload)
                {
                    returned = Some(frame);
                }
            }
        })
        .await;
        returned
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(kind: u8, payload: &[u8]) -> Vec<u8> {
        let mut bytes = header(kind, payload.len()).to_vec();
        bytes.extend_from_slice(payload);
        bytes
    }

    #[tokio::test]
    async fn a_line_then_frames_split_at_every_byte_read_back_whole() {
        let mut wire = vec![MAGIC];
        wire.extend_from_slice(b"{\"a\":1}\n");
        let mut screen = 42u64.to_le_bytes().to_vec();
        screen.extend_from_slice(b"\x1b[Hhi");
        wire.extend(frame(kind::SCREEN, &screen));
        wire.extend(frame(kind::OUTPUT, b"hello"));
        wire.extend(frame(kind::RESIZED, &size_payload(100, 30)));
        wire.extend(frame(kind::OUTPUT, b""));
        let (mut tx, rx) = tokio::io::duplex(1);
        let writer = tokio::spawn(async move { tx.write_all(&wire).await });
        let mut reader = FrameReader::new(rx, 1024);
        assert_eq!(reader.line().await.unwrap().unwrap(), b"{\"a\":1}");
        let mut frames = Vec::new();
        while let Some((kind, payload)) = reader.frame().await.unwrap() {
            frames.push(ServerFrame::parse(kind, payload).unwrap());
        }
        writer.await.unwrap().unwrap();
        assert_eq!(
            frames,
            [
                ServerFrame::Screen {
                    offset: 42,
                    data: b"\x1b[Hhi".to_vec()
                },
                ServerFrame::Output(b"hello".to_vec()),
                ServerFrame::Resized {
                    cols: 100,
                    rows: 30
                },
                ServerFrame::Output(Vec::new()),
            ]
        );
    }

    #[tokio::test]
    async fn a_frame_longer_than_allowed_is_an_error_naming_its_length() {
        let wire = frame(kind::INPUT, &[b'x'; 11]);
        let mut reader = FrameReader::new(&wire[..], 10);
        let err = reader.frame().await.unwrap_err();
        assert_eq!(
            FrameTooLong::of(&err),
            Some(FrameTooLong {
                kind: kind::INPUT,
                len: 11,
                max: 10
            })
        );
        assert!(err.to_string().contains("11 bytes"), "{err}");
    }

    #[tokio::test]
    async fn a_stream_cut_inside_a_frame_is_an_unexpected_end() {
        let wire = frame(kind::INPUT, b"abc");
        let mut reader = FrameReader::new(&wire[..wire.len() - 1], 10);
        let err = reader.frame().await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
    }

    #[tokio::test]
    async fn frames_already_read_are_had_without_waiting_and_a_cut_one_is_not() {
        let (ours, theirs) = std::os::unix::net::UnixStream::pair().unwrap();
        let (read, _write) = Socket::from_std(ours).unwrap().split();
        let mut reader = FrameReader::new(read, 1024);
        assert_eq!(reader.try_frame().unwrap(), None, "nothing sent yet");
        let (_, mut daemon) = Socket::from_std(theirs).unwrap().split();
        let mut wire = frame(kind::OUTPUT, b"one");
        wire.extend(frame(kind::OUTPUT, b"two"));
        wire.extend(&frame(kind::OUTPUT, b"cut")[..4]);
        daemon.write_all(&wire).await.unwrap();
        // The wait reads what is there; the frames behind the first need none.
        assert_eq!(
            reader.frame().await.unwrap(),
            Some((kind::OUTPUT, b"one".to_vec()))
        );
        assert_eq!(
            reader.try_frame().unwrap(),
            Some((kind::OUTPUT, b"two".to_vec()))
        );
        assert_eq!(reader.try_frame().unwrap(), None, "a frame not whole yet");
        daemon
            .write_all(&frame(kind::OUTPUT, b"cut")[4..])
            .await
            .unwrap();
        assert_eq!(
            reader.frame().await.unwrap(),
            Some((kind::OUTPUT, b"cut".to_vec()))
        );
    }

    #[test]
    fn a_size_frame_of_the_wrong_length_is_malformed() {
        assert!(ClientFrame::parse(kind::RESIZE, vec![1, 2, 3]).is_err());
        assert_eq!(
            ClientFrame::parse(kind::RESIZE, size_payload(80, 24).to_vec()).unwrap(),
            ClientFrame::Resize { cols: 80, rows: 24 }
        );
        assert!(ServerFrame::parse(kind::SCREEN, vec![0; 7]).is_err());
    }

    #[test]
    fn unknown_kinds_are_kept_for_the_reader_to_skip() {
        assert_eq!(
            ClientFrame::parse(b'?', vec![1]).unwrap(),
            ClientFrame::Unknown(b'?')
        );
        assert_eq!(
            ServerFrame::parse(b'?', vec![]).unwrap(),
            ServerFrame::Unknown(b'?')
        );
    }

    #[test]
    fn answers_are_tagged_result_or_error() {
        let ok = StreamAnswer::Result(StreamAccepted {
            client_id: "conn-1".into(),
            mode: ClientMode::ReadOnly,
            terminal: false,
        });
        assert_eq!(
            serde_json::to_string(&ok).unwrap(),
            r#"{"result":{"client_id":"conn-1","mode":"read_only"}}"#
        );
        let refused: StreamAnswer =
            serde_json::from_str(r#"{"error":{"code":1001,"message":"no session x"}}"#).unwrap();
        assert_eq!(
            refused,
            StreamAnswer::Error(StreamError {
                code: 1001,
                message: "no session x".into()
            })
        );
    }
}
