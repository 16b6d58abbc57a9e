//! The attach stream (`pulsar_protocol::stream`): one connection carrying one client's
//! terminal both ways as raw bytes, served on the relay's threads.
//!
//! After the handshake line, the connection is two loops in one task: output (the session's
//! ring, written as it is, with a fresh screen whenever the client fell behind the ring) and
//! input (keystrokes to the session, sizes to its resize policy). A key reaches the terminal
//! and its echo reaches the socket without leaving the relay thread that reads the terminal:
//! no JSON, no base64, no answer per keystroke, no hop to the request runtime.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use jsonrpsee::types::ErrorObjectOwned;
use pulsar_protocol::alternate::{AlternateScreenTracker, LEAVE_ALTERNATE_SCREEN};
use pulsar_protocol::error as code;
use pulsar_protocol::socket::{Socket, SocketReader, SocketWriter};
use pulsar_protocol::stream::{
    CLEAR_SCREEN, ClientFrame, FrameReader, FrameTooLong, StreamAccepted, StreamAnswer,
    StreamError, StreamExit, StreamHello, TerminalReturned, kind, size_payload, write_frame,
};
use pulsar_protocol::{ClientMode, SessionId};
use tokio::io::AsyncWriteExt as _;
use tokio::net::UnixStream;
use tokio::sync::mpsc;

use super::Peer;
use super::tty::HandedTerminal;
use crate::audit::{AuditLog, AuditRecord};
use crate::session::{OutputReader, Session, SessionError, SessionManager, StreamEvent};
use crate::shutdown::Shutdown;

/// How long a client may take to send its handshake line.
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);

/// Refusals of frames waiting to be written between output frames.
const QUEUED_REFUSALS: usize = 8;

/// A stream's input is audited at most this often (its bytes and frames summed), and once
/// more when it closes: an audit row per keystroke was a database commit per keystroke
/// (`strace` of the daemon while typing: five `pwrite64`, five `fcntl` locks and a wake-up
/// of the store's thread for each key).
const AUDIT_INPUT_EVERY: Duration = Duration::from_secs(1);

/// What every attach stream shares.
pub(crate) struct StreamContext {
    pub sessions: Arc<SessionManager>,
    pub audit: Arc<dyn AuditLog>,
    /// Largest input frame.
    pub max_input_bytes: usize,
}

/// Serves one attach stream whose first byte was [`pulsar_protocol::stream::MAGIC`], on the
/// relay (the descriptor moves to the relay's reactor, so its readiness wakes a relay thread;
/// for reads only, see [`pulsar_protocol::socket`]: a client reading its output no longer
/// wakes the relay).
pub(super) async fn serve(
    stream: UnixStream,
    peer: Peer,
    context: Arc<StreamContext>,
    shutdown: Shutdown,
) {
    let std = match stream.into_std() {
        Ok(std) => std,
        Err(err) => {
            tracing::debug!(connection = peer.connection, "attach stream lost: {err}");
            return;
        }
    };
    // Made from the descriptor on the relay, so the relay's reactor watches it.
    let served = crate::relay::spawn(async move {
        match Socket::from_std(std) {
            Ok(stream) => serve_here(stream, peer, context, shutdown).await,
            Err(err) => tracing::warn!("attach stream cannot be watched: {err}"),
        }
    });
    let _ = served.await;
}

async fn serve_here(
    stream: Socket,
    peer: Peer,
    context: Arc<StreamContext>,
    mut shutdown: Shutdown,
) {
    let (read, mut writer) = stream.split();
    let mut reader = FrameReader::new(read, context.max_input_bytes);
    let line = tokio::select! {
        line = tokio::time::timeout(HELLO_TIMEOUT, reader.line_with_fds()) => line,
        _ = shutdown.wait() => return,
    };
    let (hello, fds) = match line {
        Ok(Ok((Some(line), fds))) => (
            serde_json::from_slice::<StreamHello>(&line).map_err(|err| {
                refusal(
                    code::INVALID_PARAMS,
                    format!("the attach stream's handshake is not a valid hello: {err}"),
                )
            }),
            fds,
        ),
        Ok(Ok((None, _))) => return,
        Ok(Err(err)) => (
            Err(refusal(code::INVALID_REQUEST, err.to_string())),
            Vec::new(),
        ),
        Err(_) => {
            tracing::debug!(
                connection = peer.connection,
                "attach stream sent no handshake"
            );
            return;
        }
    };
    let attached = hello.and_then(|hello| {
        let (session, client_id, mode) = attach(&context, &peer, &hello)?;
        Ok((session, client_id, mode, hello.since, hello.terminal))
    });
    // The terminal handed over with the hello, when it can be taken; the descriptors that
    // came are closed either way.
    let terminal = match &attached {
        Ok((session, client_id, _, _, Some(handover))) => match HandedTerminal::take(fds) {
            Ok(tty) => Some((tty, *handover)),
            Err(why) => {
                tracing::debug!(session = %session.id(), client = %client_id, "the terminal handed over is not taken ({why}): its bytes go in frames");
                None
            }
        },
        _ => {
            drop(fds);
            None
        }
    };
    let answer = match &attached {
        Ok((_, client_id, mode, _, _)) => StreamAnswer::Result(StreamAccepted {
            client_id: client_id.clone(),
            mode: *mode,
            terminal: terminal.is_some(),
        }),
        Err(refused) => StreamAnswer::Error(refused.clone()),
    };
    let mut line = serde_json::to_vec(&answer).expect("answers serialise");
    line.push(b'\n');
    let answered = writer.write_all(&line).await;
    let (session, client_id, mode, since, _) = match attached {
        Ok(attached) => attached,
        Err(refused) => {
            tracing::debug!(
                connection = peer.connection,
                "attach stream refused: {}",
                refused.message
            );
            return;
        }
    };
    let client = Client {
        session,
        client_id,
        peer,
    };
    // Shared by the two input loops (the stream's frames, the terminal's keys) of one task.
    let typed = Mutex::new(InputTally::default());
    let mut shown = terminal
        .as_ref()
        .map(|(tty, handover)| TerminalOutput::new(tty, handover.alternate_screen));
    let ended = if answered.is_ok() {
        tracing::debug!(session = %client.session.id(), client = %client.client_id, ?mode, handed_over = terminal.is_some(), "attach stream open");
        let (refusals, mut refused) = mpsc::channel(QUEUED_REFUSALS);
        let keys = async {
            match &terminal {
                Some((tty, handover)) => {
                    read_terminal(tty, handover.detach_key, mode, &client, &context, &typed).await
                }
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            ended = write_output(&mut writer, shown.as_mut(), &client.session, since, &mut refused) => ended,
            ended = read_input(&mut reader, &client, &context, refusals, &typed) => ended,
            ended = keys => ended,
            _ = shutdown.wait() => Ended::Daemon,
        }
    } else {
        Ended::Client
    };
    // The terminal is let go of before the client is told it has it back, with what was
    // written to it while the stream ended counted as shown.
    let shown = shown.map(|shown| (shown.next, shown.tracker));
    let returned = match (terminal, shown) {
        (Some((tty, _)), Some((next, mut tracker))) => {
            let unreported = tty.close().await;
            tracker.feed(&unreported);
            Some(TerminalReturned {
                next: next.map(|next| next + unreported.len() as u64),
                alternate_screen: tracker.is_on(),
                detached: matches!(ended, Ended::Detached),
            })
        }
        _ => None,
    };
    lock(&typed).audit(&client, &context);
    let why = match &ended {
        Ended::Session(_) => "the session ended",
        Ended::Client => "the client closed",
        Ended::Detached => "the detach key, or the terminal went away",
        Ended::Malformed(_) => "unreadable input",
        Ended::Daemon => "the daemon is stopping",
    };
    client.audit(
        &context,
        "detach",
        format!("client={} stream closed: {why}", client.client_id),
    );
    // The frames that end the stream, each given as long as a hello to be read.
    let mut last = Vec::new();
    if let Some(returned) = returned {
        let json = serde_json::to_vec(&returned).expect("a hand-back serialises");
        last.push((kind::RETURNED, json));
    }
    match &ended {
        Ended::Session(Some(exit)) => {
            last.push((
                kind::EXITED,
                serde_json::to_vec(exit).expect("an exit serialises"),
            ));
        }
        Ended::Malformed(refused) => {
            last.push((
                kind::ERROR,
                serde_json::to_vec(refused).expect("a refusal serialises"),
            ));
        }
        _ => {}
    }
    for (kind, payload) in last {
        let written =
            tokio::time::timeout(HELLO_TIMEOUT, write_frame(&mut writer, kind, &payload)).await;
        if !matches!(written, Ok(Ok(()))) {
            break;
        }
    }
    tracing::debug!(session = %client.session.id(), client = %client.client_id, ?ended, "attach stream closed");
    context
        .sessions
        .connection_closed(client.peer.connection, &client.client_id);
}

/// Input not audited yet, summed (see [`AUDIT_INPUT_EVERY`]).
#[derive(Default)]
struct InputTally {
    bytes: usize,
    frames: usize,
    /// When input was last audited.
    audited: Option<Instant>,
}

impl InputTally {
    /// Counts `bytes` written, auditing them (with what was typed before) unless input was
    /// audited less than [`AUDIT_INPUT_EVERY`] ago.
    fn add(&mut self, bytes: usize, client: &Client, context: &StreamContext) {
        self.bytes += bytes;
        self.frames += 1;
        if self
            .audited
            .is_none_or(|at| at.elapsed() >= AUDIT_INPUT_EVERY)
        {
            self.audit(client, context);
        }
    }

    /// Audits what was typed since the last audit, if anything. Who typed, not what: input
    /// may carry passwords.
    fn audit(&mut self, client: &Client, context: &StreamContext) {
        if self.frames == 0 {
            return;
        }
        client.audit(
            context,
            "input",
            format!(
                "client={} bytes={} frames={}",
                client.client_id, self.bytes, self.frames
            ),
        );
        *self = Self {
            audited: Some(Instant::now()),
            ..Self::default()
        };
    }
}

fn lock(typed: &Mutex<InputTally>) -> std::sync::MutexGuard<'_, InputTally> {
    typed
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Who is on the stream.
struct Client {
    session: Arc<Session>,
    client_id: String,
    peer: Peer,
}

impl Client {
    fn audit(&self, context: &StreamContext, action: &'static str, detail: String) {
        context.audit.record(AuditRecord {
            action,
            session_id: Some(self.session.id()),
            uid: Some(self.peer.uid),
            pid: self.peer.pid,
            detail,
        });
    }
}

fn refusal(code: i32, message: String) -> StreamError {
    StreamError { code, message }
}

fn session_refusal(err: SessionError) -> StreamError {
    let err = ErrorObjectOwned::from(err);
    refusal(err.code(), err.message().to_owned())
}

/// Attaches the client the hello describes, at its size when it is interactive.
fn attach(
    context: &StreamContext,
    peer: &Peer,
    hello: &StreamHello,
) -> Result<(Arc<Session>, String, ClientMode), StreamError> {
    let id: SessionId = hello.session_id;
    let client_id = peer.client_id(hello.client_id.clone());
    let mode = hello.mode.unwrap_or_default();
    let size = match (hello.cols, hello.rows) {
        (Some(cols), Some(rows)) => Some((cols, rows)),
        (None, None) => None,
        _ => {
            return Err(refusal(
                code::INVALID_PARAMS,
                "give both cols and rows, or neither".to_owned(),
            ));
        }
    };
    let session = context
        .sessions
        .attach(id, &client_id, peer.connection, mode)
        .map_err(session_refusal)?;
    if let Some((cols, rows)) = size
        && mode == ClientMode::Interactive
        && let Err(err) = session.request_size(&client_id, peer.connection, cols, rows)
    {
        let _ = session.detach(&client_id);
        return Err(session_refusal(err));
    }
    context.audit.record(AuditRecord {
        action: "attach",
        session_id: Some(id),
        uid: Some(peer.uid),
        pid: peer.pid,
        detail: format!("client={client_id} mode={mode:?} stream"),
    });
    Ok((session, client_id, mode))
}

/// Why a stream ended.
#[derive(Debug)]
enum Ended {
    /// The session ended, after its last output; how, when the stream saw it.
    Session(Option<StreamExit>),
    /// The detach key was typed into the terminal handed over, or it went away.
    Detached,
    /// The client closed, or its socket failed.
    Client,
    /// The client sent what cannot be read as a frame (too long, or cut short).
    Malformed(StreamError),
    /// The daemon is stopping.
    Daemon,
}

/// Writes the session's output from `since` (or from a fresh screen) until it ends: to the
/// terminal handed over when there is one (`shown`), else in frames; with refusals of the
/// client's frames in between.
async fn write_output(
    writer: &mut SocketWriter,
    mut shown: Option<&mut TerminalOutput<'_>>,
    session: &Arc<Session>,
    since: Option<u64>,
    refused: &mut mpsc::Receiver<StreamError>,
) -> Ended {
    let resumed = since.and_then(|since| OutputReader::resume(Arc::clone(session), since));
    let mut reader = match resumed {
        Some(reader) => {
            if let Some(shown) = shown.as_deref_mut() {
                shown.next = since;
            }
            reader
        }
        None => match screen(writer, shown.as_deref_mut(), session).await {
            Some(reader) => reader,
            None => return Ended::Client,
        },
    };
    loop {
        let written = tokio::select! {
            event = reader.next() => match event {
                Some(StreamEvent::Output { offset, data }) => match shown.as_deref_mut() {
                    Some(shown) => shown.output(offset, &data).await,
                    None => write_frame(writer, kind::OUTPUT, &data).await,
                },
                // A terminal handed over has its size from its own client.
                Some(StreamEvent::Resized { .. }) if shown.is_some() => Ok(()),
                Some(StreamEvent::Resized { cols, rows }) => {
                    write_frame(writer, kind::RESIZED, &size_payload(cols, rows)).await
                }
                // Bytes left the ring before this client read them: a fresh screen instead.
                Some(StreamEvent::Lagged { missed_from, resume_at }) => {
                    tracing::debug!(session = %session.id(), missed_from, resume_at, "attach stream behind: redrawn");
                    match screen(writer, shown.as_deref_mut(), session).await {
                        Some(fresh) => {
                            reader = fresh;
                            Ok(())
                        }
                        None => return Ended::Client,
                    }
                }
                Some(StreamEvent::Exited(exit)) => {
                    return Ended::Session(Some(StreamExit {
                        code: exit.status.code,
                        signal: exit.status.signal,
                    }));
                }
                None => return Ended::Session(None),
            },
            Some(refusal) = refused.recv() => {
                let json = serde_json::to_vec(&refusal).expect("a refusal serialises");
                write_frame(writer, kind::ERROR, &json).await
            }
        };
        if written.is_err() {
            return Ended::Client;
        }
    }
}

/// Shows the session's current screen (in a screen frame, or drawn on the terminal handed
/// over); the reader that follows it.
async fn screen(
    writer: &mut SocketWriter,
    shown: Option<&mut TerminalOutput<'_>>,
    session: &Arc<Session>,
) -> Option<OutputReader> {
    let snapshot = session.snapshot(0);
    match shown {
        Some(shown) => shown
            .redraw(snapshot.offset, snapshot.data.as_bytes())
            .await
            .ok()?,
        None => {
            let mut payload = Vec::with_capacity(8 + snapshot.data.as_bytes().len());
            payload.extend_from_slice(&snapshot.offset.to_le_bytes());
            payload.extend_from_slice(snapshot.data.as_bytes());
            write_frame(writer, kind::SCREEN, &payload).await.ok()?;
        }
    }
    OutputReader::new(Arc::clone(session), Some(snapshot.offset)).ok()
}

/// What was written to a terminal handed over: where its output stands, and whether it is
/// on the alternate screen (both for the hand-back).
struct TerminalOutput<'a> {
    tty: &'a HandedTerminal,
    tracker: AlternateScreenTracker,
    /// The offset of the next byte to show; `None` while a redraw is under way.
    next: Option<u64>,
}

impl<'a> TerminalOutput<'a> {
    fn new(tty: &'a HandedTerminal, alternate_screen: bool) -> Self {
        let mut tracker = AlternateScreenTracker::default();
        tracker.assume(alternate_screen);
        Self {
            tty,
            tracker,
            next: None,
        }
    }

    /// Shows output bytes that start at `offset`, counting each part as the terminal takes
    /// it (a stream cut short in the middle knows where it stopped).
    async fn output(&mut self, offset: u64, data: &[u8]) -> std::io::Result<()> {
        let mut at = offset;
        let (tracker, next) = (&mut self.tracker, &mut self.next);
        self.tty
            .write_all(data, |part| {
                tracker.feed(part);
                at += part.len() as u64;
                *next = Some(at);
            })
            .await
    }

    /// Clears the terminal and draws a screen whose output continues at `offset`.
    async fn redraw(&mut self, offset: u64, screen: &[u8]) -> std::io::Result<()> {
        self.next = None;
        // The screen enters the alternate screen itself when its program is on it.
        let mut bytes = Vec::with_capacity(screen.len() + 16);
        if self.tracker.is_on() {
            bytes.extend_from_slice(LEAVE_ALTERNATE_SCREEN);
        }
        bytes.extend_from_slice(CLEAR_SCREEN);
        bytes.extend_from_slice(screen);
        let tracker = &mut self.tracker;
        self.tty
            .write_all(&bytes, |part| tracker.feed(part))
            .await?;
        self.next = Some(offset);
        Ok(())
    }
}

/// Takes the keys typed into the terminal handed over until the detach key or its end:
/// what comes before the detach key goes to the session (dropped when the client only
/// watches), what follows it in the same read is dropped.
async fn read_terminal(
    tty: &HandedTerminal,
    detach_key: u8,
    mode: ClientMode,
    client: &Client,
    context: &StreamContext,
    typed: &Mutex<InputTally>,
) -> Ended {
    let mut buf = [0u8; 8192];
    loop {
        let keys = match tty.read(&mut buf).await {
            Ok(n @ 1..) => &buf[..n],
            Ok(0) | Err(_) => return Ended::Detached,
        };
        let detach_at = memchr::memchr(detach_key, keys);
        let keys = &keys[..detach_at.unwrap_or(keys.len())];
        if mode == ClientMode::Interactive && !keys.is_empty() {
            match client
                .session
                .send_input(&client.client_id, client.peer.connection, keys)
                .await
            {
                Ok(written) => lock(typed).add(written, client, context),
                // The session is stopping: its exit follows.
                Err(err) => {
                    tracing::debug!(session = %client.session.id(), client = %client.client_id, "keys from the terminal refused: {err}");
                }
            }
        }
        if detach_at.is_some() {
            return Ended::Detached;
        }
    }
}

/// Takes the client's frames until it closes: keystrokes to the session (counted in `typed`
/// for the audit), sizes to its resize policy. Refusals go to the output loop, which writes
/// them.
async fn read_input(
    reader: &mut FrameReader<SocketReader>,
    client: &Client,
    context: &StreamContext,
    refusals: mpsc::Sender<StreamError>,
    typed: &Mutex<InputTally>,
) -> Ended {
    let Client {
        session,
        client_id,
        peer,
    } = client;
    loop {
        let frame = match reader.frame().await {
            Ok(Some((kind, payload))) => ClientFrame::parse(kind, payload),
            Ok(None) => return Ended::Client,
            Err(err) => Err(err),
        };
        let refused = match frame {
            Ok(ClientFrame::Input(keys)) if keys.is_empty() => None,
            Ok(ClientFrame::Input(keys)) => {
                match session.send_input(client_id, peer.connection, &keys).await {
                    Ok(written) => {
                        lock(typed).add(written, client, context);
                        None
                    }
                    Err(err) => Some(session_refusal(err)),
                }
            }
            Ok(ClientFrame::Resize { cols, rows }) => session
                .request_size(client_id, peer.connection, cols, rows)
                .err()
                .map(session_refusal),
            // From a newer client: nothing this daemon can do with it.
            Ok(ClientFrame::Unknown(_)) => None,
            Err(err) => {
                // Too long for max_input_bytes, or not a frame: the stream cannot be followed
                // past it, so it is refused and closed.
                tracing::debug!(session = %session.id(), client = %client_id, "attach stream input unreadable: {err}");
                let code = match FrameTooLong::of(&err) {
                    Some(_) => code::LIMIT_REACHED,
                    None => code::INVALID_REQUEST,
                };
                return Ended::Malformed(refusal(
                    code,
                    format!("session {}: {err}; closing the stream", session.id()),
                ));
            }
        };
        if let Some(refusal) = refused {
            // A client that reads nothing while typing into a stopped session only loses
            // refusals, never blocks its own input.
            let _ = refusals.try_send(refusal);
        }
    }
}

/// Serves `input` as the bytes of one attach stream connection (a real Unix socket pair), its
/// write side shut at the input's end, against `rpc::fixture`'s `cat` (id
/// `5e551011-0000-4000-8000-00000000d35c`), and returns what the daemon wrote before it
/// closed the connection (the `attach_stream` fuzz target; the tests that replay its corpus).
///
/// Panics if the connection is still open 5 s after the input ended, or if what the daemon
/// wrote is not one handshake answer followed (after a `result`) by well-formed frames of
/// the kinds the protocol names, nothing after an exit (see [`check_answer`]).
#[cfg(any(test, feature = "fuzzing"))]
pub(crate) fn answer_connection(input: &[u8]) -> Vec<u8> {
    use tokio::io::AsyncReadExt as _;

    use super::fixture::{Fixture, Unrecorded, keep_cat_running};

    thread_local! {
        /// Made once per thread: what every attach stream shares in the daemon.
        static FIXTURE: Fixture<StreamContext> = Fixture::with_cat(|sessions, config| {
            StreamContext {
                sessions,
                audit: Arc::new(Unrecorded),
                max_input_bytes: config.max_input_bytes,
            }
        });
    }
    FIXTURE.with(|fixture| {
        fixture.runtime.block_on(async {
            keep_cat_running(&fixture.context.sessions).await;
            let (client, server) = UnixStream::pair().expect("a Unix socket pair");
            let peer = Peer {
                connection: super::peer::next_connection(),
                uid: nix::unistd::getuid().as_raw(),
                pid: Some(std::process::id() as i32),
            };
            let served = tokio::spawn(serve(
                server,
                peer,
                Arc::clone(&fixture.context),
                fixture.shutdown.clone(),
            ));
            let (mut read, mut write) = client.into_split();
            let reader = tokio::spawn(async move {
                let (mut answer, mut buf) = (Vec::new(), [0u8; 8192]);
                while let Ok(n @ 1..) = read.read(&mut buf).await {
                    answer.extend_from_slice(&buf[..n]);
                }
                answer
            });
            // The daemon may close first (a refused hello, a frame too long).
            let _ = write.write_all(input).await;
            let _ = write.shutdown().await;
            let answer = match tokio::time::timeout(Duration::from_secs(5), reader).await {
                Ok(answer) => answer.expect("the reader does not panic"),
                Err(_) => panic!("the attach stream was still open 5 s after the input ended"),
            };
            served
                .await
                .expect("the attach stream's task did not panic");
            check_answer(&answer);
            answer
        })
    })
}

/// Asserts that `answer` is what an attach stream may write: nothing (no hello came), or one
/// JSON line that is a handshake answer; after a `result`, frames of the daemon's kinds whose
/// payloads read as their kind says, nothing after an exit frame, and only the last one
/// possibly cut short (the connection ended while it was being written).
#[cfg(any(test, feature = "fuzzing"))]
pub(crate) fn check_answer(answer: &[u8]) {
    use pulsar_protocol::stream::{HEADER_LEN, ServerFrame};

    if answer.is_empty() {
        return;
    }
    let end = answer
        .iter()
        .position(|&b| b == b'\n')
        .unwrap_or_else(|| panic!("an answer without its line's end: {answer:?}"));
    let parsed: StreamAnswer = serde_json::from_slice(&answer[..end]).unwrap_or_else(|err| {
        panic!(
            "not a handshake answer ({err}): {}",
            String::from_utf8_lossy(&answer[..end])
        )
    });
    let mut frames = &answer[end + 1..];
    if matches!(parsed, StreamAnswer::Error(_)) {
        assert!(frames.is_empty(), "bytes after a refusal: {frames:?}");
        return;
    }
    while frames.len() >= HEADER_LEN {
        let kind = frames[0];
        let len = u32::from_le_bytes([frames[1], frames[2], frames[3], frames[4]]) as usize;
        let Some(payload) = frames.get(HEADER_LEN..HEADER_LEN + len) else {
            return;
        };
        let frame = ServerFrame::parse(kind, payload.to_vec())
            .unwrap_or_else(|err| panic!("a malformed frame: {err}"));
        assert!(
            !matches!(frame, ServerFrame::Unknown(_)),
            "a frame of a kind the protocol does not name: {:?}",
            char::from(kind)
        );
        frames = &frames[HEADER_LEN + len..];
        if matches!(frame, ServerFrame::Exited(_)) {
            assert!(frames.is_empty(), "bytes after the exit: {frames:?}");
        }
    }
}
