//! One session: its backend, its output log, its attached clients and its life.
//!
//! The session's *pump* task is the single reader of the backend. It appends to the
//! scrollback ring and bumps the `head` watch; readers (subscriptions, long polls) follow the
//! ring at their own pace, so no client can slow the pump or another client.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use chrono::{DateTime, Utc};
use pulsar_protocol::{
    ClientMode, Cursor, ResizePolicy, ScreenContents, SessionId, SessionInfo, SessionState,
    SessionType, Snapshot,
};
use tokio::sync::{broadcast, watch};

use super::reader::Control;
use super::{SessionError, SessionObserver};
use crate::backend::{Backend, ExitStatus};
use crate::terminal::{Chunk, Screen, Scrollback, history};

/// Identifies the connection that attached a client, so that closing the connection
/// detaches exactly its clients.
pub type ClientOwner = u64;

/// How and when a session's process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exit {
    /// Code or signal.
    pub status: ExitStatus,
    /// When the end was seen.
    pub at: DateTime<Utc>,
}

/// An attached client.
#[derive(Debug, Clone)]
struct Client {
    owner: ClientOwner,
    mode: ClientMode,
    /// The size this client last asked for (interactive clients only).
    size: Option<(u16, u16)>,
}

/// Mutable session state, behind one short-held lock.
#[derive(Debug)]
struct Shared {
    clients: HashMap<String, Client>,
    /// Where each client's `receive_output` continues when it gives no `since`.
    read_cursors: HashMap<String, u64>,
    cols: u16,
    rows: u16,
    resize_policy: ResizePolicy,
}

impl Shared {
    /// The size the policy gives, with `requested` as the latest request.
    fn policy_size(&self, requested: Option<(u16, u16)>) -> Option<(u16, u16)> {
        let sizes = self
            .clients
            .values()
            .filter(|c| c.mode == ClientMode::Interactive)
            .filter_map(|c| c.size);
        match self.resize_policy {
            ResizePolicy::Latest => requested,
            ResizePolicy::Smallest => sizes
                .reduce(|(c1, r1), (c2, r2)| (c1.min(c2), r1.min(r2)))
                .or(requested),
            ResizePolicy::Largest => sizes
                .reduce(|(c1, r1), (c2, r2)| (c1.max(c2), r1.max(r2)))
                .or(requested),
        }
    }

    /// True when `client_id` (or, for an unattached id, every client `owner` attached here)
    /// is read-only.
    fn is_read_only(&self, client_id: &str, owner: ClientOwner) -> bool {
        match self.clients.get(client_id) {
            Some(client) => client.mode == ClientMode::ReadOnly,
            None => {
                let mut mine = self
                    .clients
                    .values()
                    .filter(|c| c.owner == owner)
                    .peekable();
                mine.peek().is_some() && mine.all(|c| c.mode == ClientMode::ReadOnly)
            }
        }
    }
}

/// The screen model and the output offset it has consumed up to, under one lock so that a
/// snapshot and its offset always agree. Kept apart from the ring so that readers copying out
/// of the ring never wait for the emulator.
struct ScreenState {
    screen: Screen,
    /// Offset one past the last byte fed to `screen`.
    offset: u64,
}

/// A session. Shared as `Arc<Session>` by the manager, the pump and readers.
pub struct Session {
    id: SessionId,
    name: String,
    session_type: SessionType,
    created_at: DateTime<Utc>,
    backend: Arc<dyn Backend>,
    ring: Mutex<Scrollback>,
    screen: Mutex<ScreenState>,
    /// The ring's head offset, published after every append.
    head: watch::Sender<u64>,
    /// Resizes and the exit, for subscribers.
    control: broadcast::Sender<Control>,
    /// Set once, when the process has ended and its output is drained.
    exit: watch::Sender<Option<Exit>>,
    last_active_ms: AtomicI64,
    shared: Mutex<Shared>,
    /// Told of changes worth persisting; set once the manager has taken the session in.
    observer: OnceLock<Arc<dyn SessionObserver>>,
}

/// Everything a session is made from.
pub struct SessionSpec {
    /// Its id.
    pub id: SessionId,
    /// Its name.
    pub name: String,
    /// What runs in it.
    pub session_type: SessionType,
    /// When it was (first) created.
    pub created_at: DateTime<Utc>,
    /// Terminal size (cols, rows).
    pub size: (u16, u16),
    /// How the size follows clients.
    pub resize_policy: ResizePolicy,
    /// Scrollback ring capacity.
    pub scrollback_bytes: usize,
    /// Output carried over from before a restart.
    pub history: Option<History>,
}

/// Output a restored session starts with, so that offsets continue across the restart.
pub struct History {
    /// Absolute offset of `scrollback[0]`.
    pub offset: u64,
    /// The saved tail of the output.
    pub scrollback: Vec<u8>,
    /// Bytes that redraw the saved screen.
    pub screen: Vec<u8>,
    /// A visible line marking the restart, appended after the history.
    pub divider: Vec<u8>,
}

/// The backend of a session whose process is gone: nothing to read, write or wait for.
struct Ended {
    reason: Option<String>,
}

#[async_trait::async_trait]
impl Backend for Ended {
    async fn read(&self, _buf: &mut [u8]) -> std::io::Result<usize> {
        Ok(0)
    }

    async fn write_all(&self, _data: &[u8]) -> std::io::Result<()> {
        Err(std::io::Error::new(
            std::io::ErrorKind::NotConnected,
            "the session has ended",
        ))
    }

    fn resize(&self, _cols: u16, _rows: u16) -> std::io::Result<()> {
        Ok(())
    }

    async fn wait(&self) -> ExitStatus {
        std::future::pending().await
    }

    async fn terminate(&self, _grace: Duration) {}

    fn pid(&self) -> Option<u32> {
        None
    }

    fn end_reason(&self) -> Option<String> {
        self.reason.clone()
    }
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("id", &self.id)
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// How long the pump keeps draining output after the process exits, for bytes still in
/// flight (a background job may hold the terminal open forever).
const DRAIN_AFTER_EXIT: Duration = Duration::from_millis(250);

impl Session {
    fn build(spec: SessionSpec, backend: Arc<dyn Backend>, exit: Option<Exit>) -> Arc<Self> {
        let SessionSpec {
            id,
            name,
            session_type,
            created_at,
            size: (cols, rows),
            resize_policy,
            scrollback_bytes,
            history,
        } = spec;
        let mut ring = Scrollback::new(scrollback_bytes);
        let mut screen = Screen::new(cols, rows);
        if let Some(history) = history {
            ring = Scrollback::starting_at(scrollback_bytes, history.offset);
            ring.push(&history.scrollback);
            screen.feed(&history.screen);
            ring.push(&history.divider);
            screen.feed(&history.divider);
        }
        let head = ring.head();
        let last_active = Utc::now().timestamp_millis();
        Arc::new(Self {
            id,
            name,
            session_type,
            created_at,
            backend,
            ring: Mutex::new(ring),
            screen: Mutex::new(ScreenState {
                screen,
                offset: head,
            }),
            head: watch::channel(head).0,
            control: broadcast::channel(16).0,
            exit: watch::channel(exit).0,
            last_active_ms: AtomicI64::new(last_active),
            shared: Mutex::new(Shared {
                clients: HashMap::new(),
                read_cursors: HashMap::new(),
                cols,
                rows,
                resize_policy,
            }),
            observer: OnceLock::new(),
        })
    }

    /// Wraps a started backend and starts the session's pump on the current runtime.
    pub(super) fn start(spec: SessionSpec, backend: Arc<dyn Backend>) -> Arc<Self> {
        let session = Self::build(spec, backend, None);
        tokio::spawn(pump(Arc::clone(&session)));
        session
    }

    /// A session whose process is gone, kept for its history (restored with `history`, or
    /// stopped before the daemon restarted).
    pub(super) fn stopped(spec: SessionSpec, exit: Exit, reason: Option<String>) -> Arc<Self> {
        Self::build(spec, Arc::new(Ended { reason }), Some(exit))
    }

    /// From now on, tells `observer` of every change, starting with this moment's state.
    pub(super) fn observe(&self, observer: Arc<dyn SessionObserver>) {
        if self.observer.set(observer).is_ok() {
            self.notify();
        }
    }

    /// Tells the observer, if any, that this session changed.
    fn notify(&self) {
        if let Some(observer) = self.observer.get() {
            observer.changed(self);
        }
    }

    /// When the session was created.
    pub fn created_at(&self) -> DateTime<Utc> {
        self.created_at
    }

    /// What runs in it.
    pub fn session_type(&self) -> &SessionType {
        &self.session_type
    }

    /// The last activity, Unix milliseconds.
    pub fn last_active_ms(&self) -> i64 {
        self.last_active_ms.load(Ordering::Relaxed)
    }

    /// One past the last output byte.
    pub fn output_offset(&self) -> u64 {
        *self.head.borrow()
    }

    /// Output for the store: the bytes from `since` (or, if more, the last `max` of them) up
    /// to where the screen model has got, their offset, that end offset, and the bytes that
    /// redraw the screen as of it.
    pub fn output_since(&self, since: u64, max: usize) -> (u64, Vec<u8>, u64, Vec<u8>) {
        let (end, screen) = {
            let state = self.screen_state();
            (state.offset, state.screen.redraw())
        };
        let from = since.max(end.saturating_sub(max as u64));
        let chunk = self.ring().read(from, end.saturating_sub(from) as usize);
        (chunk.offset, chunk.data, end, screen)
    }

    /// The session's id.
    pub fn id(&self) -> SessionId {
        self.id
    }

    /// The session's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// When the process ended, if it has.
    pub fn exit(&self) -> Option<Exit> {
        *self.exit.borrow()
    }

    /// True while the process runs.
    pub fn is_alive(&self) -> bool {
        self.exit().is_none()
    }

    /// Clients attached now.
    pub fn num_clients(&self) -> usize {
        self.shared().clients.len()
    }

    fn shared(&self) -> MutexGuard<'_, Shared> {
        self.shared.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn ring(&self) -> MutexGuard<'_, Scrollback> {
        self.ring.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn screen_state(&self) -> MutexGuard<'_, ScreenState> {
        self.screen.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Reads from the ring (for [`super::OutputReader`]).
    pub(super) fn read_ring(&self, from: u64, max: usize) -> Option<Chunk> {
        let ring = self.ring();
        (from < ring.head()).then(|| ring.read(from, max))
    }

    pub(super) fn subscribe_head(&self) -> watch::Receiver<u64> {
        self.head.subscribe()
    }

    pub(super) fn subscribe_control(&self) -> broadcast::Receiver<Control> {
        self.control.subscribe()
    }

    fn touch(&self) {
        self.last_active_ms
            .store(Utc::now().timestamp_millis(), Ordering::Relaxed);
    }

    fn state_with(&self, shared: &Shared) -> SessionState {
        if self.exit().is_some() {
            SessionState::Stopped
        } else if shared.clients.is_empty() {
            SessionState::Detached
        } else {
            SessionState::Running
        }
    }

    /// The session's state now.
    pub fn state(&self) -> SessionState {
        self.state_with(&self.shared())
    }

    /// The wire view of this session.
    pub fn info(&self) -> SessionInfo {
        let shared = self.shared();
        let exit = self.exit();
        SessionInfo {
            id: self.id,
            name: self.name.clone(),
            // Secrets (SSH passwords, passphrases) never leave the daemon's memory.
            session_type: self.session_type.redacted(),
            state: self.state_with(&shared),
            num_clients: shared.clients.len(),
            cols: shared.cols,
            rows: shared.rows,
            resize_policy: shared.resize_policy,
            created_at: self.created_at,
            last_active: DateTime::from_timestamp_millis(
                self.last_active_ms.load(Ordering::Relaxed),
            )
            .unwrap_or(self.created_at),
            pid: exit.is_none().then(|| self.backend.pid()).flatten(),
            exit_code: exit.and_then(|e| e.status.code),
            exit_signal: exit.and_then(|e| e.status.signal),
            exited_at: exit.map(|e| e.at),
            reason: exit.and_then(|_| self.backend.end_reason()),
            output_offset: *self.head.borrow(),
        }
    }

    /// Registers (or re-registers) `client_id`, owned by connection `owner`.
    pub fn attach(
        &self,
        client_id: &str,
        owner: ClientOwner,
        mode: ClientMode,
        max_clients: usize,
    ) -> Result<(), SessionError> {
        let mut shared = self.shared();
        if !shared.clients.contains_key(client_id) && shared.clients.len() >= max_clients {
            return Err(SessionError::LimitReached {
                op: "attach",
                limit: "max_clients_per_session",
                max: max_clients,
            });
        }
        shared.clients.insert(
            client_id.to_owned(),
            Client {
                owner,
                mode,
                size: None,
            },
        );
        drop(shared);
        self.touch();
        self.notify();
        Ok(())
    }

    /// Unregisters `client_id`.
    pub fn detach(&self, client_id: &str) -> Result<(), SessionError> {
        let mut shared = self.shared();
        match shared.clients.remove(client_id) {
            Some(_) => {
                shared.read_cursors.remove(client_id);
                let target = shared.policy_size(None);
                drop(shared);
                self.apply_size(target);
                self.notify();
                Ok(())
            }
            None => Err(SessionError::NotAttached {
                id: self.id,
                client_id: client_id.to_owned(),
            }),
        }
    }

    /// Detaches every client `owner` attached, and forgets its read cursors. Returns how many
    /// clients were detached.
    pub fn detach_owner(&self, owner: ClientOwner, cursor_key: &str) -> usize {
        let mut shared = self.shared();
        let before = shared.clients.len();
        let gone: Vec<String> = shared
            .clients
            .iter()
            .filter(|(_, c)| c.owner == owner)
            .map(|(id, _)| id.clone())
            .collect();
        for id in &gone {
            shared.clients.remove(id);
            shared.read_cursors.remove(id);
        }
        shared.read_cursors.remove(cursor_key);
        let detached = before - shared.clients.len();
        let target = (detached > 0).then(|| shared.policy_size(None)).flatten();
        drop(shared);
        self.apply_size(target);
        if detached > 0 {
            self.notify();
        }
        detached
    }

    /// Writes `data` to the session's input on behalf of `client_id` (owned by `owner`).
    pub async fn send_input(
        &self,
        client_id: &str,
        owner: ClientOwner,
        data: &[u8],
    ) -> Result<usize, SessionError> {
        if self.shared().is_read_only(client_id, owner) {
            return Err(SessionError::ReadOnly {
                id: self.id,
                op: "send input",
                client_id: client_id.to_owned(),
            });
        }
        if !self.is_alive() {
            return Err(SessionError::InvalidState {
                id: self.id,
                op: "send input",
                state: SessionState::Stopped,
            });
        }
        self.backend
            .write_all(data)
            .await
            .map_err(|source| SessionError::Io {
                id: self.id,
                op: "send input",
                source,
            })?;
        self.touch();
        Ok(data.len())
    }

    /// Records `client_id`'s size request and applies the size the resize policy gives.
    /// A client that is not attached acts as the latest request.
    pub fn request_size(
        &self,
        client_id: &str,
        owner: ClientOwner,
        cols: u16,
        rows: u16,
    ) -> Result<(), SessionError> {
        for (field, value) in [("cols", cols), ("rows", rows)] {
            if !(1..=1000).contains(&value) {
                return Err(SessionError::InvalidParam {
                    field,
                    reason: format!("{value} is outside 1..=1000"),
                });
            }
        }
        if !self.is_alive() {
            return Err(SessionError::InvalidState {
                id: self.id,
                op: "resize",
                state: SessionState::Stopped,
            });
        }
        let target = {
            let mut shared = self.shared();
            if shared.is_read_only(client_id, owner) {
                return Err(SessionError::ReadOnly {
                    id: self.id,
                    op: "resize",
                    client_id: client_id.to_owned(),
                });
            }
            if let Some(client) = shared.clients.get_mut(client_id) {
                client.size = Some((cols, rows));
            }
            shared.policy_size(Some((cols, rows)))
        };
        self.touch();
        match target {
            Some((cols, rows)) => self.resize_to(cols, rows),
            None => Ok(()),
        }
    }

    /// Applies a policy outcome, logging (not failing) a backend error.
    fn apply_size(&self, target: Option<(u16, u16)>) {
        if let Some((cols, rows)) = target
            && self.is_alive()
            && let Err(err) = self.resize_to(cols, rows)
        {
            tracing::warn!(session = %self.id, "resize after detach failed: {err}");
        }
    }

    /// Resizes the terminal and the screen model, and tells subscribers.
    fn resize_to(&self, cols: u16, rows: u16) -> Result<(), SessionError> {
        {
            let shared = self.shared();
            if (shared.cols, shared.rows) == (cols, rows) {
                return Ok(());
            }
        }
        self.backend
            .resize(cols, rows)
            .map_err(|source| SessionError::Io {
                id: self.id,
                op: "resize",
                source,
            })?;
        self.screen_state().screen.resize(cols, rows);
        {
            let mut shared = self.shared();
            shared.cols = cols;
            shared.rows = rows;
        }
        let _ = self.control.send(Control::Resized { cols, rows });
        self.notify();
        Ok(())
    }

    /// The bytes that redraw the current screen, with `scrollback_lines` of history first,
    /// and the offset the live stream continues from.
    pub fn snapshot(&self, scrollback_lines: usize) -> Snapshot {
        let (cols, rows) = {
            let shared = self.shared();
            (shared.cols, shared.rows)
        };
        let (offset, mut data) = {
            let state = self.screen_state();
            (state.offset, state.screen.redraw())
        };
        let raw = (scrollback_lines > 0).then(|| {
            let ring = self.ring();
            ring.read(ring.start(), (offset.saturating_sub(ring.start())) as usize)
                .data
        });
        if let Some(raw) = raw {
            // Rendered outside the lock: the pump must not wait for history rendering.
            let mut with_history = history(&raw, cols, rows, scrollback_lines);
            // Push the history into the client's scrollback before the screen is redrawn.
            with_history.extend(std::iter::repeat_n(b'\n', usize::from(rows)));
            with_history.append(&mut data);
            data = with_history;
        }
        Snapshot {
            data: data.into(),
            offset,
            cols,
            rows,
        }
    }

    /// The current screen for `get_screen`.
    pub fn screen(&self, ansi: bool) -> ScreenContents {
        let cols = self.shared().cols;
        let (offset, rendered) = {
            let state = self.screen_state();
            (state.offset, state.screen.render(ansi))
        };
        ScreenContents {
            rows: rendered.rows,
            cursor: Cursor {
                row: rendered.cursor.0,
                col: rendered.cursor.1,
                visible: rendered.cursor_visible,
            },
            cols,
            alternate_screen: rendered.alternate_screen,
            offset,
        }
    }

    /// Reads output for `receive_output`: from `since`, or where `cursor_key` last read, or the
    /// oldest byte held. Waits up to `timeout` for output when there is none yet.
    pub async fn read_output(
        &self,
        since: Option<u64>,
        max_bytes: usize,
        timeout: Duration,
        cursor_key: &str,
    ) -> Result<Chunk, SessionError> {
        let from = match since {
            Some(offset) => offset,
            None => {
                let remembered = self.shared().read_cursors.get(cursor_key).copied();
                remembered.unwrap_or_else(|| self.ring().start())
            }
        };
        let mut head = self.subscribe_head();
        let current = *head.borrow_and_update();
        if from > current {
            return Err(SessionError::InvalidParam {
                field: "since",
                reason: format!("offset {from} is beyond the end of the output ({current})"),
            });
        }
        if from == current && !timeout.is_zero() && self.is_alive() {
            let mut exit = self.exit.subscribe();
            let _ = tokio::time::timeout(timeout, async {
                tokio::select! {
                    _ = head.changed() => {}
                    _ = exit.wait_for(|e| e.is_some()) => {}
                }
            })
            .await;
        }
        let chunk = self.ring().read(from, max_bytes);
        self.shared()
            .read_cursors
            .insert(cursor_key.to_owned(), chunk.next_offset());
        Ok(chunk)
    }

    /// Ends the process: SIGHUP, then SIGKILL after `grace`. Returns once the session is
    /// stopped (or after a bounded wait if even SIGKILL does not end it).
    pub async fn terminate(&self, grace: Duration) {
        if !self.is_alive() {
            return;
        }
        self.backend.terminate(grace).await;
        let mut exit = self.exit.subscribe();
        let _ = tokio::time::timeout(
            DRAIN_AFTER_EXIT + Duration::from_secs(5),
            exit.wait_for(|e| e.is_some()),
        )
        .await;
    }

    fn append_output(&self, data: &[u8]) {
        let head = {
            let mut ring = self.ring();
            ring.push(data);
            ring.head()
        };
        // Readers may copy the new bytes while the emulator digests them.
        self.head.send_replace(head);
        {
            let mut state = self.screen_state();
            state.screen.feed(data);
            state.offset = head;
        }
        self.last_active_ms
            .store(Utc::now().timestamp_millis(), Ordering::Relaxed);
    }
}

/// The session's single reader: backend → ring → `head`, until the output ends and the
/// process is reaped.
async fn pump(session: Arc<Session>) {
    let backend = Arc::clone(&session.backend);
    let mut buf = vec![0u8; super::OUTPUT_CHUNK];
    let wait = backend.wait();
    tokio::pin!(wait);
    let mut status: Option<ExitStatus> = None;
    let drain_deadline = tokio::time::sleep(Duration::MAX);
    tokio::pin!(drain_deadline);
    loop {
        tokio::select! {
            read = backend.read(&mut buf) => match read {
                Ok(0) => break,
                Ok(n) => {
                    session.append_output(&buf[..n]);
                    // A flooding program keeps its terminal always readable; without a yield
                    // here the pump would run a whole coop budget of chunks (and their
                    // emulation) before a request or another session's pump got a turn.
                    tokio::task::yield_now().await;
                }
                Err(err) => {
                    tracing::warn!(session = %session.id, "reading the terminal failed: {err}");
                    break;
                }
            },
            exited = &mut wait, if status.is_none() => {
                status = Some(exited);
                drain_deadline
                    .as_mut()
                    .reset(tokio::time::Instant::now() + DRAIN_AFTER_EXIT);
            }
            _ = &mut drain_deadline, if status.is_some() => break,
        }
    }
    let status = match status {
        Some(status) => status,
        None => backend.wait().await,
    };
    tracing::info!(
        session = %session.id,
        name = %session.name,
        code = ?status.code,
        signal = ?status.signal,
        "session process ended"
    );
    session.exit.send_replace(Some(Exit {
        status,
        at: Utc::now(),
    }));
    session.notify();
    let _ = session.control.send(Control::Exited);
}
