//! One session: its backend, its output log, its attached clients and its life.
//!
//! The session's *pump* task is the single reader of the backend. It appends to the
//! scrollback ring and bumps the `head` watch; readers (subscriptions, long polls) follow the
//! ring at their own pace, so no client can slow the pump or another client.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use chrono::{DateTime, Utc};
use pulsar_protocol::{
    ClientMode, Cursor, ResizePolicy, ScreenContents, SessionId, SessionInfo, SessionState,
    SessionType, Snapshot,
};
use tokio::sync::{broadcast, watch};

use super::SessionError;
use super::reader::Control;
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

/// What the pump writes and snapshots read, under one lock so that a snapshot's screen and
/// its offset always agree.
struct Output {
    ring: Scrollback,
    screen: Screen,
}

/// A session. Shared as `Arc<Session>` by the manager, the pump and readers.
pub struct Session {
    id: SessionId,
    name: String,
    session_type: SessionType,
    created_at: DateTime<Utc>,
    backend: Arc<dyn Backend>,
    output: Mutex<Output>,
    /// The ring's head offset, published after every append.
    head: watch::Sender<u64>,
    /// Resizes and the exit, for subscribers.
    control: broadcast::Sender<Control>,
    /// Set once, when the process has ended and its output is drained.
    exit: watch::Sender<Option<Exit>>,
    last_active_ms: AtomicI64,
    shared: Mutex<Shared>,
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
    /// Wraps a started backend and starts the session's pump on the current runtime.
    pub(super) fn start(
        id: SessionId,
        name: String,
        session_type: SessionType,
        (cols, rows): (u16, u16),
        resize_policy: ResizePolicy,
        scrollback_bytes: usize,
        backend: Arc<dyn Backend>,
    ) -> Arc<Self> {
        let now = Utc::now();
        let session = Arc::new(Self {
            id,
            name,
            session_type,
            created_at: now,
            backend,
            output: Mutex::new(Output {
                ring: Scrollback::new(scrollback_bytes),
                screen: Screen::new(cols, rows),
            }),
            head: watch::channel(0).0,
            control: broadcast::channel(16).0,
            exit: watch::channel(None).0,
            last_active_ms: AtomicI64::new(now.timestamp_millis()),
            shared: Mutex::new(Shared {
                clients: HashMap::new(),
                read_cursors: HashMap::new(),
                cols,
                rows,
                resize_policy,
            }),
        });
        tokio::spawn(pump(Arc::clone(&session)));
        session
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

    fn output(&self) -> MutexGuard<'_, Output> {
        self.output.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Reads from the ring (for [`super::OutputReader`]).
    pub(super) fn read_ring(&self, from: u64, max: usize) -> Option<Chunk> {
        let output = self.output();
        (from < output.ring.head()).then(|| output.ring.read(from, max))
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
        self.output().screen.resize(cols, rows);
        {
            let mut shared = self.shared();
            shared.cols = cols;
            shared.rows = rows;
        }
        let _ = self.control.send(Control::Resized { cols, rows });
        Ok(())
    }

    /// The bytes that redraw the current screen, with `scrollback_lines` of history first,
    /// and the offset the live stream continues from.
    pub fn snapshot(&self, scrollback_lines: usize) -> Snapshot {
        let (cols, rows) = {
            let shared = self.shared();
            (shared.cols, shared.rows)
        };
        let (offset, raw, mut data) = {
            let output = self.output();
            let raw = (scrollback_lines > 0).then(|| output.ring.contents());
            (output.ring.head(), raw, output.screen.redraw())
        };
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
            let output = self.output();
            (output.ring.head(), output.screen.render(ansi))
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
                remembered.unwrap_or_else(|| self.output().ring.start())
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
        let chunk = self.output().ring.read(from, max_bytes);
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
            let mut output = self.output();
            output.screen.feed(data);
            output.ring.push(data);
            output.ring.head()
        };
        self.head.send_replace(head);
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
                Ok(n) => session.append_output(&buf[..n]),
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
    let _ = session.control.send(Control::Exited);
}
