//! `pulsar attach`: the local terminal becomes the session's. Raw mode, then the session's
//! attach stream (`pulsar_protocol::stream`), with the terminal handed to the daemon: it
//! draws the screen, writes the live output and reads the keys (the detach key included)
//! itself, and this process only tells it of SIGWINCH and waits for the terminal back. When
//! the daemon does not take it (`--relay`, an older daemon, output redirected), the stream
//! carries the screen and output here and the keys there, raw bytes both ways. The detach
//! key, the session's exit or the daemon going away end it, and the terminal is put back as
//! it was on every one of those paths.

use std::io::Read as _;
use std::os::fd::BorrowedFd;
use std::path::Path;
use std::time::Duration;

use pulsar_protocol::alternate::{AlternateScreenTracker, LEAVE_ALTERNATE_SCREEN};
use pulsar_protocol::error as code;
use pulsar_protocol::stream::{
    AttachStream, CLEAR_SCREEN, OpenError, ServerFrame, StreamHello, TerminalHandover,
    TerminalReturned,
};
use pulsar_protocol::{ClientMode, PulsarClient};
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::mpsc;

use crate::daemon::Endpoint;
use crate::error::{Exit, Failure, Result};
use crate::keys::DetachKey;
use crate::resolve;
use crate::rpc::Session;
use crate::terminal::{self, RawMode};

/// How long a detach waits for the daemon to confirm before leaving anyway.
const DETACH_TIMEOUT: Duration = Duration::from_secs(2);

/// How `pulsar attach` (and `pulsar new`) attach.
#[derive(Debug, Clone, Copy, Default)]
pub struct Options {
    /// Watch only: keystrokes other than the detach key are dropped, the size is not ours.
    pub read_only: bool,
    /// The key that detaches.
    pub detach_key: DetachKey,
    /// Keep the terminal here and relay its bytes, rather than hand it to the daemon.
    pub relay: bool,
}

/// `pulsar attach TARGET`.
pub async fn run(endpoint: &Endpoint, target: &str, options: Options) -> Result<Exit> {
    require_terminal()?;
    let client = endpoint.connect().await?;
    let session = resolve::session(&client, target).await?;
    attach(&endpoint.socket, client, session, options).await
}

/// Refuses to attach without a terminal to read keystrokes from.
pub fn require_terminal() -> Result<()> {
    if terminal::stdin_is_terminal() {
        Ok(())
    } else {
        Err(Failure::error(
            "attach needs a terminal, and standard input is not one \
             (from a script, use `pulsar send` to type and `pulsar new -d` to create)",
        ))
    }
}

/// Why an attach ended.
#[derive(Debug)]
enum End {
    /// The detach key, a signal, or the terminal went away; the session keeps running.
    Detached,
    /// The session's process ended.
    Exited {
        code: Option<i32>,
        signal: Option<i32>,
    },
    /// The connection to the daemon broke.
    LostConnection,
}

/// Attaches the local terminal to `session` until the user detaches, the session exits or
/// the daemon goes away. `client`, the connection that found the session, is closed: the
/// attach has a connection of its own.
pub async fn attach(
    socket: &Path,
    client: PulsarClient,
    session: Session,
    options: Options,
) -> Result<Exit> {
    drop(client);
    if !session.is_live() {
        return Err(Failure::error(format!(
            "session {} has exited{}; it cannot be attached (see `pulsar ls`)",
            session.name,
            exit_description(session.exit_code, session.exit_signal)
        )));
    }
    // Listening before the stream gives our size, so that no size change is missed.
    let mut signals = Signals::listen().map_err(|err| {
        Failure::error(format!(
            "attach to session {}: cannot listen for signals: {err}",
            session.name
        ))
    })?;
    // Raw before the stream opens: a daemon that takes the terminal writes to it at once.
    let raw = RawMode::enter().map_err(|err| {
        Failure::error(format!(
            "attach to session {}: cannot switch the terminal to raw mode: {err}",
            session.name
        ))
    })?;
    let mut screen = Screen {
        tracker: AlternateScreenTracker::default(),
        uncertain: false,
        raw: &raw,
    };
    let handover = (!options.relay).then(terminal::handover).flatten();
    let (stream, handed) = open(socket, &session, options, None, handover, &screen)
        .await
        .map_err(|err| open_failure(&session, err))?;
    let mut link = Link {
        socket,
        stream,
        handed,
        handover,
        next: None,
    };
    link.opened(&mut screen);
    let end = pump(&mut link, &session, options, &mut signals, &mut screen).await;
    if matches!(end, End::Detached)
        && let Some(returned) = link.stream.close(DETACH_TIMEOUT).await
    {
        screen.returned(&returned);
    }
    drop(screen);
    drop(raw);
    match end {
        End::Detached => {
            eprintln!("\n[detached from {}]", session.name);
            Ok(Exit::Ok)
        }
        End::Exited { code, signal } => {
            eprintln!(
                "\n[session {} exited{}]",
                session.name,
                exit_description(code, signal)
            );
            Ok(Exit::Ok)
        }
        End::LostConnection => {
            eprintln!("\n[lost connection to the daemon]");
            Ok(Exit::NoDaemon)
        }
    }
}

/// ` with code N`, ` on signal N`, or nothing when unknown.
fn exit_description(code: Option<i32>, signal: Option<i32>) -> String {
    match (code, signal) {
        (Some(code), _) => format!(" with code {code}"),
        (None, Some(signal)) => format!(" on signal {signal}"),
        (None, None) => String::new(),
    }
}

/// Opens the session's attach stream, at this terminal's size unless read-only, continuing
/// from `since` when the daemon still holds it, handing it `handover` (the terminal) when
/// given. The stream, and whether the daemon took the terminal.
async fn open(
    socket: &Path,
    session: &Session,
    options: Options,
    since: Option<u64>,
    handover: Option<BorrowedFd<'static>>,
    screen: &Screen<'_>,
) -> std::result::Result<(AttachStream, bool), OpenError> {
    let size = (!options.read_only).then(terminal::size).flatten();
    let hello = StreamHello {
        session_id: session.id,
        client_id: None,
        mode: options.read_only.then_some(ClientMode::ReadOnly),
        cols: size.map(|(cols, _)| cols),
        rows: size.map(|(_, rows)| rows),
        since,
        terminal: handover.map(|_| TerminalHandover {
            detach_key: options.detach_key.byte(),
            alternate_screen: screen.tracker.is_on() || screen.uncertain,
        }),
    };
    let (accepted, stream) = match handover {
        Some(fd) => AttachStream::open_handing_over(socket, &hello, fd).await?,
        None => AttachStream::open(socket, &hello).await?,
    };
    Ok((stream, accepted.terminal))
}

/// What the user is told when the attach stream cannot be opened.
fn open_failure(session: &Session, err: OpenError) -> Failure {
    let doing = format!("attach to session {}", session.name);
    match err {
        OpenError::NotRunning { .. } => Failure::new(Exit::NoDaemon, format!("{doing}: {err}")),
        OpenError::Refused(refusal) if refusal.code == code::SESSION_NOT_FOUND => {
            Failure::new(Exit::NotFound, format!("{doing}: {}", refusal.message))
        }
        OpenError::Refused(refusal) => Failure::error(format!("{doing}: {}", refusal.message)),
        OpenError::Handshake { .. } => Failure::new(
            Exit::NoDaemon,
            format!(
                "{doing}: {err} (a daemon older than this pulsar? `pulsar upgrade` runs the \
                 installed one)"
            ),
        ),
    }
}

/// The outer terminal's output side.
struct Screen<'a> {
    /// Whether the terminal is on the alternate screen, as far as this process knows.
    tracker: AlternateScreenTracker,
    /// The daemon wrote to the terminal and did not say how it left it (it went away while
    /// it had the terminal): the next redraw leaves the alternate screen first, in case.
    uncertain: bool,
    raw: &'a RawMode,
}

impl Screen<'_> {
    /// Writes session output; false when the terminal is gone.
    fn write(&mut self, bytes: &[u8]) -> bool {
        self.tracker.feed(bytes);
        self.raw.set_alternate_screen(self.tracker.is_on());
        write_to_terminal(bytes).is_ok()
    }

    /// Clears the terminal and draws a screen.
    fn redraw(&mut self, screen: &[u8]) -> bool {
        // The screen re-enters the alternate screen itself when the program is on it.
        if self.tracker.is_on() || self.uncertain {
            self.tracker.feed(LEAVE_ALTERNATE_SCREEN);
            let _ = write_to_terminal(LEAVE_ALTERNATE_SCREEN);
            self.uncertain = false;
        }
        let mut bytes = CLEAR_SCREEN.to_vec();
        bytes.extend_from_slice(screen);
        self.write(&bytes)
    }

    /// The daemon gave the terminal back, as `returned` says it left it.
    fn returned(&mut self, returned: &TerminalReturned) {
        self.tracker.assume(returned.alternate_screen);
        self.raw.set_alternate_screen(returned.alternate_screen);
        self.uncertain = false;
    }
}

/// Writes `bytes` to standard output as they are: straight to the descriptor, without the
/// line buffering of `std::io::stdout` (which splits output at its last newline into two
/// writes, and copies what follows it). Waits while the terminal is full, including one
/// whose description another program made non-blocking.
fn write_to_terminal(mut bytes: &[u8]) -> std::io::Result<()> {
    use rustix::event::{PollFd, PollFlags};
    let out = rustix::stdio::stdout();
    while !bytes.is_empty() {
        match rustix::io::write(out, bytes) {
            Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
            Ok(n) => bytes = &bytes[n..],
            Err(rustix::io::Errno::INTR) => {}
            Err(rustix::io::Errno::AGAIN) => {
                let mut fds = [PollFd::new(&out, PollFlags::OUT)];
                let _ = rustix::event::poll(&mut fds, None);
            }
            Err(err) => return Err(err.into()),
        }
    }
    Ok(())
}

/// The signals an attach follows.
struct Signals {
    /// SIGWINCH: the terminal's size changed.
    window_change: tokio::signal::unix::Signal,
    /// SIGHUP: the terminal went away.
    hangup: tokio::signal::unix::Signal,
    /// SIGTERM: asked to stop.
    terminate: tokio::signal::unix::Signal,
    /// SIGINT from `kill` (Ctrl-C itself reaches the session as a byte in raw mode).
    interrupt: tokio::signal::unix::Signal,
}

impl Signals {
    fn listen() -> std::io::Result<Self> {
        Ok(Self {
            window_change: signal(SignalKind::window_change())?,
            hangup: signal(SignalKind::hangup())?,
            terminate: signal(SignalKind::terminate())?,
            interrupt: signal(SignalKind::interrupt())?,
        })
    }
}

/// What woke the attach loop.
enum Wake {
    /// A frame from the daemon; `None` (or an error) when the stream ended.
    Frame(std::io::Result<Option<ServerFrame>>),
    /// Keystrokes, or `None` when the terminal closed.
    Keys(Option<Vec<u8>>),
    /// The terminal was resized.
    WindowChanged,
    /// SIGHUP, SIGTERM or SIGINT: leave as if detached.
    Signal,
}

/// The stream an attach runs over, replaced when the daemon is (an upgrade, a restart).
struct Link<'a> {
    socket: &'a Path,
    stream: AttachStream,
    /// The daemon has the terminal (it took it with this stream's hello).
    handed: bool,
    /// The terminal to hand over with each hello, unless relaying.
    handover: Option<BorrowedFd<'static>>,
    /// The offset of the next output byte to show, once a screen has been drawn: where a
    /// new stream continues.
    next: Option<u64>,
}

/// How long an attach tries to reach the daemon again after losing it (an upgrade takes a
/// moment; a restart a little longer) before it gives up.
const RECONNECT_WINDOW: Duration = Duration::from_secs(8);

impl Link<'_> {
    /// A stream was opened: while the daemon has the terminal, where it stands and how it
    /// looks are known only from the daemon's word when it gives it back.
    fn opened(&mut self, screen: &mut Screen<'_>) {
        if self.handed {
            self.next = None;
            screen.uncertain = true;
        }
    }

    /// Opens the stream again, from where this terminal is (after a crash the daemon may
    /// have kept less than that, and then it sends a fresh screen). `Err` with the attach's
    /// end when the daemon does not come back or the session is gone.
    async fn reconnect(
        &mut self,
        session: &Session,
        options: Options,
        screen: &mut Screen<'_>,
    ) -> std::result::Result<(), End> {
        let deadline = tokio::time::Instant::now() + RECONNECT_WINDOW;
        let mut pause = Duration::from_millis(10);
        loop {
            match open(
                self.socket,
                session,
                options,
                self.next,
                self.handover,
                screen,
            )
            .await
            {
                Ok((stream, handed)) => {
                    self.stream = stream;
                    self.handed = handed;
                    self.opened(screen);
                    return Ok(());
                }
                Err(OpenError::NotRunning { .. } | OpenError::Handshake { .. }) => {}
                // Gone, or stopped while we were away: the stream would have said so.
                Err(OpenError::Refused(_)) => {
                    return Err(End::Exited {
                        code: None,
                        signal: None,
                    });
                }
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(End::LostConnection);
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(200));
        }
    }
}

/// Moves bytes both ways until the attach ends; a lost daemon is reached again (an upgrade or
/// a restart is a short pause, not the end).
async fn pump(
    link: &mut Link<'_>,
    session: &Session,
    options: Options,
    signals: &mut Signals,
    screen: &mut Screen<'_>,
) -> End {
    // Opened when first needed: while the daemon has the terminal it reads the keys.
    let mut keys: Option<Keys> = None;
    loop {
        let wake = tokio::select! {
            frame = link.stream.next() => Wake::Frame(frame),
            keys = next_keys(&mut keys), if !link.handed => Wake::Keys(keys),
            _ = signals.window_change.recv() => Wake::WindowChanged,
            _ = signals.hangup.recv() => Wake::Signal,
            _ = signals.terminate.recv() => Wake::Signal,
            _ = signals.interrupt.recv() => Wake::Signal,
        };
        let end = match wake {
            Wake::Frame(Ok(Some(ServerFrame::Output(bytes)))) => on_output(link, bytes, screen),
            Wake::Frame(Ok(Some(frame))) => on_frame(link, frame, screen),
            // The daemon closed the stream without the session's exit: it is stopping or
            // being replaced.
            Wake::Frame(Ok(None) | Err(_)) => Some(End::LostConnection),
            Wake::Keys(Some(bytes)) => on_keys(&mut link.stream, options, &bytes).await,
            Wake::Keys(None) | Wake::Signal => Some(End::Detached),
            Wake::WindowChanged if options.read_only => None,
            Wake::WindowChanged => match terminal::size() {
                Some((cols, rows)) => link
                    .stream
                    .resize(cols, rows)
                    .await
                    .err()
                    .map(|_| End::LostConnection),
                None => None,
            },
        };
        match end {
            Some(End::LostConnection) => {
                if let Err(end) = link.reconnect(session, options, screen).await {
                    return end;
                }
            }
            Some(end) => return end,
            None => {}
        }
    }
}

/// Output the terminal can show at once.
const GATHER_OUTPUT: usize = 256 * 1024;

/// Shows output, with the output frames already here after it gathered into the same write
/// (the daemon sends what each read of the terminal gave, a few KiB under a flood; a write
/// to the outer terminal costs the same whatever its size, up to its buffer). `Some` when
/// the attach ends, by the gathered output or the first other frame behind it.
fn on_output(link: &mut Link<'_>, mut bytes: Vec<u8>, screen: &mut Screen<'_>) -> Option<End> {
    let mut behind = None;
    while bytes.len() < GATHER_OUTPUT {
        match link.stream.try_next() {
            Ok(Some(ServerFrame::Output(more))) => bytes.extend_from_slice(&more),
            Ok(Some(frame)) => {
                behind = Some(frame);
                break;
            }
            // Nothing more now; a broken stream is found by the next wait.
            Ok(None) | Err(_) => break,
        }
    }
    if let Some(end) = on_frame(link, ServerFrame::Output(bytes), screen) {
        return Some(end);
    }
    behind.and_then(|frame| on_frame(link, frame, screen))
}

/// Shows a frame; `Some` when it ends the attach.
fn on_frame(link: &mut Link<'_>, frame: ServerFrame, screen: &mut Screen<'_>) -> Option<End> {
    let shown = match frame {
        ServerFrame::Output(bytes) => {
            link.next = link.next.map(|next| next + bytes.len() as u64);
            screen.write(&bytes)
        }
        ServerFrame::Screen { offset, data } => {
            link.next = Some(offset);
            screen.redraw(&data)
        }
        ServerFrame::Exited(exit) => {
            return Some(End::Exited {
                code: exit.code,
                signal: exit.signal,
            });
        }
        // The daemon let go of the terminal: an exit frame follows, or the stream's end.
        ServerFrame::Returned(returned) => {
            // The stream ends next; until a new one opens, nothing reads the keys here.
            link.next = returned.next;
            screen.returned(&returned);
            return returned.detached.then_some(End::Detached);
        }
        // Refused keystrokes (the session is stopping: its exit follows), resizes (the
        // terminal is ours), and what only a newer daemon sends need nothing here.
        ServerFrame::Error(_) | ServerFrame::Resized { .. } | ServerFrame::Unknown(_) => true,
    };
    // A terminal that cannot be written to is gone: leave.
    (!shown).then_some(End::Detached)
}

/// Forwards keystrokes up to the detach key; `Some` when the attach ends.
async fn on_keys(stream: &mut AttachStream, options: Options, bytes: &[u8]) -> Option<End> {
    let detach_at = bytes.iter().position(|&b| b == options.detach_key.byte());
    let typed = &bytes[..detach_at.unwrap_or(bytes.len())];
    if !options.read_only && !typed.is_empty() && stream.send_input(typed).await.is_err() {
        return Some(End::LostConnection);
    }
    detach_at.map(|_| End::Detached)
}

/// The next keys typed, opening the terminal for keys at the first call (`select!` makes the
/// future of a disabled branch too, but never polls it).
async fn next_keys(keys: &mut Option<Keys>) -> Option<Vec<u8>> {
    keys.get_or_insert_with(Keys::open).recv().await
}

/// The keystrokes typed into the terminal.
enum Keys {
    /// Read on this runtime, from a description of standard input of our own that does not
    /// block (so the terminal's own description, shared with the shell, keeps its flags): a
    /// key reaches `send_input` without a wake-up across threads.
    Here(tokio::io::unix::AsyncFd<std::os::fd::OwnedFd>),
    /// Read on a thread of its own, where standard input cannot be opened again or polled.
    Thread(mpsc::Receiver<Vec<u8>>),
}

impl Keys {
    fn open() -> Self {
        use rustix::fs::{Mode, OFlags};
        let own = rustix::fs::open(
            "/proc/self/fd/0",
            OFlags::RDONLY | OFlags::NONBLOCK | OFlags::CLOEXEC | OFlags::NOCTTY,
            Mode::empty(),
        );
        // SAFETY: the descriptor was just opened and is owned only by the AsyncFd, which
        // deregisters it before closing it.
        match own.map(|fd| unsafe {
            tokio::io::unix::AsyncFd::register_with_interest(fd, tokio::io::Interest::READABLE)
        }) {
            Ok(Ok(fd)) => Keys::Here(fd),
            _ => Keys::Thread(spawn_stdin_reader()),
        }
    }

    /// The next keys typed; `None` at the end of input. Cancel-safe: a read happens only
    /// once the terminal is readable, and returns at once.
    async fn recv(&mut self) -> Option<Vec<u8>> {
        let fd = match self {
            Keys::Thread(rx) => return rx.recv().await,
            Keys::Here(fd) => fd,
        };
        let mut buf = [0u8; 8192];
        loop {
            let mut ready = fd.readable().await.ok()?;
            match ready
                .try_io(|fd| rustix::io::read(fd.get_ref(), &mut buf).map_err(std::io::Error::from))
            {
                Ok(Ok(0)) => return None,
                Ok(Ok(n)) => {
                    // A short read took all there was: the readiness goes now, not after
                    // another read that finds nothing (keys typed since woke it again, with a
                    // newer tick that this leaves in place).
                    if n < buf.len() {
                        ready.clear_ready();
                    }
                    return Some(buf[..n].to_vec());
                }
                Ok(Err(err)) if err.kind() == std::io::ErrorKind::Interrupted => {}
                Ok(Err(_)) => return None,
                Err(_would_block) => {}
            }
        }
    }
}

/// Reads keystrokes on a thread of its own (tokio's stdin would keep the runtime from
/// shutting down while a read blocks). The channel closes at end of input.
fn spawn_stdin_reader() -> mpsc::Receiver<Vec<u8>> {
    let (tx, rx) = mpsc::channel(64);
    let spawned = std::thread::Builder::new()
        .name("stdin-reader".into())
        .spawn(move || {
            let mut stdin = std::io::stdin();
            let mut buf = [0u8; 8192];
            loop {
                match stdin.read(&mut buf) {
                    Ok(0) => return,
                    Ok(n) => {
                        if tx.blocking_send(buf[..n].to_vec()).is_err() {
                            return;
                        }
                    }
                    Err(err) if err.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(_) => return,
                }
            }
        });
    if spawned.is_err() {
        // Without a reader the channel closes at once and the attach ends as a detach.
        let (_, rx) = mpsc::channel(1);
        return rx;
    }
    rx
}
