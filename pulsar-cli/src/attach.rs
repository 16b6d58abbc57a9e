//! `pulsar attach`: the local terminal becomes the session's. Raw mode, the attach snapshot,
//! then the live output stream from the snapshot's offset; keystrokes go to `send_input`,
//! SIGWINCH to `resize_terminal`; the detach key, the session's exit or the daemon going away
//! end it, and the terminal is put back as it was on every one of those paths.

use std::io::{Read as _, Write as _};
use std::path::Path;
use std::time::Duration;

use jsonrpsee::core::client::Subscription;
use pulsar_protocol::error as code;
use pulsar_protocol::{Base64Data, OutputEvent, PulsarApiClient as _, PulsarClient};
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::mpsc;

use crate::daemon::Endpoint;
use crate::error::{Exit, Failure, Result, is_lost_connection, rpc_code};
use crate::keys::DetachKey;
use crate::resolve;
use crate::rpc::{self, Session};
use crate::terminal::{self, AlternateScreenTracker, RawMode};

/// Clears the terminal and homes the cursor before a snapshot is drawn (snapshots redraw a
/// blank terminal).
const CLEAR_SCREEN: &[u8] = b"\x1b[H\x1b[2J";

/// How long a detach waits for the daemon to confirm before leaving anyway.
const DETACH_TIMEOUT: Duration = Duration::from_secs(2);

/// How `pulsar attach` (and `pulsar new`) attach.
#[derive(Debug, Clone, Copy, Default)]
pub struct Options {
    /// Watch only: keystrokes other than the detach key are dropped, the size is not ours.
    pub read_only: bool,
    /// The key that detaches.
    pub detach_key: DetachKey,
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
/// the daemon goes away.
pub async fn attach(
    socket: &Path,
    client: PulsarClient,
    session: Session,
    options: Options,
) -> Result<Exit> {
    if !session.is_live() {
        return Err(Failure::error(format!(
            "session {} has exited{}; it cannot be attached (see `pulsar ls`)",
            session.name,
            exit_description(session.exit_code, session.exit_signal)
        )));
    }
    // Listening before the first resize, so that no size change is missed.
    let mut signals = Signals::listen().map_err(|err| {
        Failure::error(format!(
            "attach to session {}: cannot listen for signals: {err}",
            session.name
        ))
    })?;
    // Asking for our size first makes the snapshot fit this terminal.
    if !options.read_only {
        resize_to_terminal(&client, &session).await?;
    }
    let attached = rpc::attach(&client, &session, options.read_only).await?;
    if !options.read_only {
        // Attaching starts with no recorded size; record ours for the resize policy.
        resize_to_terminal(&client, &session).await?;
    }
    let (since, first_screen) = match attached.snapshot {
        Some(snapshot) => (Some(snapshot.offset), Some(snapshot.data.into_bytes())),
        None => (None, None),
    };
    let mut stream = subscribe(&client, &session, since, first_screen.is_none()).await?;

    let raw = RawMode::enter().map_err(|err| {
        Failure::error(format!(
            "attach to session {}: cannot switch the terminal to raw mode: {err}",
            session.name
        ))
    })?;
    let mut screen = Screen {
        tracker: AlternateScreenTracker::default(),
        raw: &raw,
    };
    if let Some(bytes) = first_screen {
        screen.redraw(&bytes);
    }
    let mut link = Link {
        socket,
        client,
        client_id: attached.client_id,
        next: since.unwrap_or(0),
    };
    let end = pump(
        &mut link,
        &session,
        options,
        &mut signals,
        &mut stream,
        &mut screen,
    )
    .await;
    if matches!(end, End::Detached) {
        let detach = link
            .client
            .detach_session(session.id, Some(link.client_id.clone()));
        let _ = tokio::time::timeout(DETACH_TIMEOUT, detach).await;
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

/// The outer terminal's output side.
struct Screen<'a> {
    tracker: AlternateScreenTracker,
    raw: &'a RawMode,
}

impl Screen<'_> {
    /// Writes session output; false when the terminal is gone.
    fn write(&mut self, bytes: &[u8]) -> bool {
        self.tracker.feed(bytes);
        self.raw.set_alternate_screen(self.tracker.is_on());
        let mut out = std::io::stdout().lock();
        out.write_all(bytes).and_then(|()| out.flush()).is_ok()
    }

    /// Clears the terminal and draws a snapshot.
    fn redraw(&mut self, snapshot: &[u8]) -> bool {
        // The snapshot re-enters the alternate screen itself when the program is on it.
        if self.tracker.is_on() {
            self.tracker.feed(b"\x1b[?1049l");
            let _ = std::io::stdout().write_all(b"\x1b[?1049l");
        }
        let mut bytes = CLEAR_SCREEN.to_vec();
        bytes.extend_from_slice(snapshot);
        self.write(&bytes)
    }
}

/// Subscribes to the session's output from `since`, or from a fresh snapshot.
async fn subscribe(
    client: &PulsarClient,
    session: &Session,
    since: Option<u64>,
    snapshot: bool,
) -> Result<Subscription<OutputEvent>> {
    client
        .subscribe_output(session.id, since, snapshot.then_some(true), None)
        .await
        .map_err(|err| {
            Failure::rpc(
                &format!("follow the output of session {}", session.name),
                err,
            )
        })
}

/// Asks the daemon for this terminal's size, when it knows one.
async fn resize_to_terminal(client: &PulsarClient, session: &Session) -> Result<()> {
    let Some((cols, rows)) = terminal::size() else {
        return Ok(());
    };
    match rpc::resize(client, session.id, cols, rows).await {
        Ok(()) => Ok(()),
        // It exited meanwhile: attaching says so with the exit status.
        Err(err) if rpc_code(&err) == Some(code::INVALID_STATE) => Ok(()),
        Err(err) => Err(Failure::rpc(
            &format!("resize session {} to {cols}x{rows}", session.name),
            err,
        )),
    }
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
    /// An output event, or `None` when the subscription ended.
    Event(Option<Result<OutputEvent, serde_json::Error>>),
    /// Keystrokes, or `None` when the terminal closed.
    Keys(Option<Vec<u8>>),
    /// The terminal was resized.
    WindowChanged,
    /// SIGHUP, SIGTERM or SIGINT: leave as if detached.
    Signal,
}

/// The connection an attach runs over, replaced when the daemon is (an upgrade, a restart).
struct Link<'a> {
    socket: &'a Path,
    client: PulsarClient,
    client_id: String,
    /// The offset of the next output byte to show: where a new connection continues.
    next: u64,
}

/// How long an attach tries to reach the daemon again after losing it (an upgrade takes a
/// moment; a restart a little longer) before it gives up.
const RECONNECT_WINDOW: Duration = Duration::from_secs(8);

impl Link<'_> {
    /// Connects again, attaches again and follows the output from where it was shown up to.
    /// `Err` with the attach's end when the daemon does not come back or the session is gone.
    async fn reconnect(
        &mut self,
        session: &Session,
        options: Options,
    ) -> std::result::Result<Subscription<OutputEvent>, End> {
        let deadline = tokio::time::Instant::now() + RECONNECT_WINDOW;
        let mut pause = Duration::from_millis(10);
        loop {
            if let Ok(client) = pulsar_protocol::connect(self.socket).await {
                match rpc::attach(&client, session, options.read_only).await {
                    Ok(attached) => {
                        if !options.read_only {
                            let _ = resize_to_terminal(&client, session).await;
                        }
                        // From where this terminal is; after a crash the daemon may have
                        // kept less than that, and then a fresh snapshot redraws the screen.
                        let stream = match subscribe(&client, session, Some(self.next), false).await
                        {
                            Ok(stream) => Ok(stream),
                            Err(_) => subscribe(&client, session, None, true).await,
                        };
                        if let Ok(stream) = stream {
                            self.client = client;
                            self.client_id = attached.client_id;
                            return Ok(stream);
                        }
                    }
                    Err(failure) if failure.exit == Exit::NoDaemon => {}
                    // Gone, or stopped while we were away: the stream would have said so.
                    Err(_) => {
                        return Err(End::Exited {
                            code: None,
                            signal: None,
                        });
                    }
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
    stream: &mut Subscription<OutputEvent>,
    screen: &mut Screen<'_>,
) -> End {
    let mut keys = Keys::open();
    loop {
        let wake = tokio::select! {
            event = stream.next() => Wake::Event(event),
            keys = keys.recv() => Wake::Keys(keys),
            _ = signals.window_change.recv() => Wake::WindowChanged,
            _ = signals.hangup.recv() => Wake::Signal,
            _ = signals.terminate.recv() => Wake::Signal,
            _ = signals.interrupt.recv() => Wake::Signal,
        };
        let end = match wake {
            Wake::Event(event) => {
                match &event {
                    Some(Ok(OutputEvent::Output { data, offset })) => {
                        link.next = offset + data.as_bytes().len() as u64;
                    }
                    Some(Ok(OutputEvent::Snapshot { offset, .. })) => link.next = *offset,
                    _ => {}
                }
                on_event(&link.client, session, event, stream, screen).await
            }
            Wake::Keys(Some(bytes)) => on_keys(&link.client, session, options, &bytes).await,
            Wake::Keys(None) | Wake::Signal => Some(End::Detached),
            Wake::WindowChanged if options.read_only => None,
            Wake::WindowChanged => match resize_to_terminal(&link.client, session).await {
                Err(failure) if failure.exit == Exit::NoDaemon => Some(End::LostConnection),
                _ => None,
            },
        };
        match end {
            Some(End::LostConnection) => match link.reconnect(session, options).await {
                Ok(fresh) => *stream = fresh,
                Err(end) => return end,
            },
            Some(end) => return end,
            None => {}
        }
    }
}

/// Shows an output event; `Some` when it ends the attach.
async fn on_event(
    client: &PulsarClient,
    session: &Session,
    event: Option<Result<OutputEvent, serde_json::Error>>,
    stream: &mut Subscription<OutputEvent>,
    screen: &mut Screen<'_>,
) -> Option<End> {
    let shown = match event {
        Some(Ok(OutputEvent::Output { data, .. })) => screen.write(data.as_bytes()),
        Some(Ok(OutputEvent::Snapshot { data, .. })) => screen.redraw(data.as_bytes()),
        Some(Ok(OutputEvent::Exited { code, signal })) => {
            return Some(End::Exited { code, signal });
        }
        Some(Ok(OutputEvent::Lagged { .. })) | None => {
            // Fell behind (the daemon's ring or this client's queue), or the stream ended:
            // start again from a fresh snapshot of the screen, unless the daemon is gone.
            if !client.is_connected() {
                return Some(End::LostConnection);
            }
            match subscribe(client, session, None, true).await {
                Ok(fresh) => *stream = fresh,
                Err(failure) if failure.exit == Exit::NoDaemon => {
                    return Some(End::LostConnection);
                }
                // The session is gone meanwhile.
                Err(_) => {
                    return Some(End::Exited {
                        code: None,
                        signal: None,
                    });
                }
            }
            true
        }
        // Resizes need nothing here; events only a newer daemon sends are skipped.
        Some(Ok(OutputEvent::Resized { .. })) | Some(Err(_)) => true,
    };
    // A terminal that cannot be written to is gone: leave.
    (!shown).then_some(End::Detached)
}

/// Forwards keystrokes up to the detach key; `Some` when the attach ends.
async fn on_keys(
    client: &PulsarClient,
    session: &Session,
    options: Options,
    bytes: &[u8],
) -> Option<End> {
    let detach_at = bytes.iter().position(|&b| b == options.detach_key.byte());
    let typed = &bytes[..detach_at.unwrap_or(bytes.len())];
    if !options.read_only && !typed.is_empty() {
        let sent = client
            .send_input(session.id, Base64Data::from(typed), None)
            .await;
        // Other failures (e.g. it just exited) are told by the stream.
        if let Err(err) = sent
            && is_lost_connection(&err)
        {
            return Some(End::LostConnection);
        }
    }
    detach_at.map(|_| End::Detached)
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
        match own.map(|fd| unsafe { tokio::io::unix::AsyncFd::register(fd) }) {
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
                Ok(Ok(n)) => return Some(buf[..n].to_vec()),
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
