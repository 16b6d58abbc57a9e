//! One session: its backend, its output log, its clients and its life. The parts live in
//! files of their own (`output`, `clients`, `pump`, `view`); this type ties them together.

use std::path::PathBuf;
use std::sync::atomic::{AtomicI64, AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, RwLock};
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures_util::task::AtomicWaker;
use pulsar_protocol::{
    ClientMode, ResizePolicy, SessionEvent, SessionId, SessionLimits, SessionState, SessionType,
};
use tokio::sync::{broadcast, watch};

use super::clients::{ClientOwner, ClientTable};
use super::events::Events;
use super::marks::{Mark, OutputMarks};
use super::output::{OutputLog, SavedSlice};
use super::pump::{DRAIN_AFTER_EXIT, FLOOD_BUFFER, PumpTask, Resume, pump};
use super::rate::OutputRate;
use super::reader::Control;
use super::recording::{Recorded, Recording, RecordingSpec, RecordingState};
use super::{SessionError, SessionObserver};
use crate::backend::{Backend, ExitStatus, LinkState, ended};
use crate::signal::Once;
use crate::terminal::Chunk;

/// How and when a session's process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exit {
    /// Code or signal.
    pub status: ExitStatus,
    /// When the end was seen.
    pub at: DateTime<Utc>,
}

/// [`Session::poll_pump_signal`]: the pump is to stop.
pub(super) const PUMP_STOP: u8 = 1;
/// [`Session::poll_pump_signal`]: the pump is to park, if it can.
pub(super) const PUMP_PARK: u8 = 2;

/// A session. Shared as `Arc<Session>` by the manager, the pump and readers.
pub struct Session {
    id: SessionId,
    name: String,
    session_type: SessionType,
    created_at: DateTime<Utc>,
    /// The running program's backend; once it has ended, a stand-in ([`ended`]), so a
    /// stopped session kept for its history holds no terminal, descriptor or device.
    backend: RwLock<Arc<dyn Backend>>,
    output: OutputLog,
    /// Resizes, for subscribers; made by the first one (a channel is ~300 bytes of heap, and
    /// most sessions never have an output subscriber).
    control: OnceLock<broadcast::Sender<Control>>,
    /// Set once, when the process has ended and its output is drained: the one signal of
    /// the end, for readers, waiters and the state.
    exit: Once<Exit>,
    last_active_ms: AtomicI64,
    clients: Mutex<ClientTable>,
    /// Told of changes worth persisting; set once the manager has taken the session in.
    observer: OnceLock<Arc<dyn SessionObserver>>,
    /// The pump's task (to stop it when the daemon stops but the program lives on), or that
    /// it is parked.
    pump: Mutex<PumpTask>,
    /// Asks the pump to stop ([`PUMP_STOP`], see [`Session::stop_pump`]) or to park
    /// ([`PUMP_PARK`], see [`Session::park_if_idle`]), waking it through `pump_waker`:
    /// polled, so that the pump's future (all a running session's task holds) keeps no
    /// `Notified` waiting in it.
    pump_signal: AtomicU8,
    pump_waker: AtomicWaker,
    /// The daemon-wide event stream; set once the manager has taken the session in.
    events: OnceLock<Events>,
    /// Bells, titles and prompt marks in the output, scanned by the pump (so never
    /// contended).
    marks: Mutex<OutputMarks>,
    /// The recording in progress, fed by the pump (and by input and resizes).
    /// Boxed: most sessions never record, and a recording is 128 bytes.
    recording: Mutex<Option<Box<Recording>>>,
    /// Recordings started so far: tells a late stop report from an old recording apart.
    recordings: AtomicU64,
    /// The limits asked for (the daemon's defaults filled in), as saved; none when empty.
    /// Boxed: most sessions have none, and the limits are 72 bytes.
    limits: Option<Box<SessionLimits>>,
    /// The output rate limit the pump reads at, if any.
    /// Boxed: most sessions have none.
    rate: Option<Box<OutputRate>>,
}

/// Everything a session is made from.
pub struct SessionSpec {
    /// Its id.
    pub id: SessionId,
    /// Its name.
    pub name: String,
    /// What runs in it (redacted: the session keeps no secret).
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
    /// Its limits (the daemon's defaults filled in).
    pub limits: SessionLimits,
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

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("id", &self.id)
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl Session {
    fn build(spec: SessionSpec, backend: Arc<dyn Backend>, exit: Option<Exit>) -> Arc<Self> {
        let SessionSpec {
            id,
            name,
            session_type,
            created_at,
            size,
            resize_policy,
            scrollback_bytes,
            history,
            limits,
        } = spec;
        Arc::new(Self {
            id,
            name,
            session_type,
            created_at,
            backend: RwLock::new(backend),
            output: OutputLog::new(size, scrollback_bytes, history),
            control: OnceLock::new(),
            exit: Once::new(exit),
            last_active_ms: AtomicI64::new(Utc::now().timestamp_millis()),
            clients: Mutex::new(ClientTable::new(size, resize_policy)),
            observer: OnceLock::new(),
            pump: Mutex::new(PumpTask::None),
            pump_signal: AtomicU8::new(0),
            pump_waker: AtomicWaker::new(),
            events: OnceLock::new(),
            marks: Mutex::new(OutputMarks::default()),
            recording: Mutex::new(None),
            recordings: AtomicU64::new(0),
            rate: limits
                .output_bytes_per_sec
                .map(|per_sec| Box::new(OutputRate::new(per_sec, FLOOD_BUFFER))),
            limits: (!limits.is_empty()).then(|| Box::new(limits)),
        })
    }

    /// Wraps a started backend. Nothing is read until [`Self::start_pump`], which the manager
    /// calls once it has taken the session in (events and the store wired up), so that the
    /// first output's marks are seen and its bytes saved.
    pub(super) fn start(spec: SessionSpec, backend: Arc<dyn Backend>) -> Arc<Self> {
        Self::build(spec, backend, None)
    }

    /// Starts the pump (on the relay) and the link follower of a running session; nothing
    /// for a stopped one, or when started already.
    pub(super) fn start_pump(self: &Arc<Self>) {
        if self.exit().is_some() {
            return;
        }
        {
            let mut pump_slot = self.pump_task();
            if !matches!(*pump_slot, PumpTask::None) {
                return;
            }
            self.pump_signal.store(0, Ordering::Release);
            *pump_slot = PumpTask::Running(crate::relay::spawn(pump(Arc::clone(self))));
        }
        if let Some(link) = self.backend().link_state() {
            tokio::spawn(follow_link(Arc::downgrade(self), link));
        }
    }

    fn pump_task(&self) -> MutexGuard<'_, PumpTask> {
        self.pump.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Ready with what was asked ([`PUMP_STOP`], [`PUMP_PARK`], or both) once [`Self::stop_pump`] or
    /// [`Self::park_if_idle`] has asked: the pump does it at its next wait, never between
    /// reading a chunk and handing it to the ring, the screen model and the recording. For
    /// the pump alone (one waker).
    pub(super) fn poll_pump_signal(&self, cx: &mut std::task::Context<'_>) -> std::task::Poll<u8> {
        crate::signal::poll_for_one(&self.pump_waker, cx, || {
            self.pump_signal.load(Ordering::Acquire) != 0
        })
        // A request to park is taken as it is seen (it is made again while the session
        // stays idle); a stop stays until the pump is started again.
        .map(|()| self.pump_signal.fetch_and(!PUMP_PARK, Ordering::AcqRel))
    }

    /// Asks the pump to park if nothing was written for `idle` (see [`Self::park_pump`]).
    pub(super) fn park_if_idle(&self, idle: Duration) {
        if !self.quiet_for(idle)
            || self.exit.get().is_some()
            || !matches!(*self.pump_task(), PumpTask::Running(_))
            || !self.backend().parks()
        {
            return;
        }
        self.pump_signal.fetch_or(PUMP_PARK, Ordering::AcqRel);
        self.pump_waker.wake();
    }

    /// Whether nothing was written for `idle`.
    fn quiet_for(&self, idle: Duration) -> bool {
        Utc::now().timestamp_millis() - self.last_active_ms() >= idle.as_millis() as i64
    }

    /// The pump, asked to park and idle: gives up its task, and the backend what watching
    /// the program costs, until output or the end comes ([`Backend::park`]), when the pump
    /// is started again ([`Self::resume_pump`]). True if it parked (the pump then returns);
    /// false if it stays (a stop asked meanwhile, a backend that cannot park now).
    pub(super) fn park_pump(self: &Arc<Self>, backend: &dyn Backend) -> bool {
        let mut pump_slot = self.pump_task();
        if self.pump_signal.load(Ordering::Acquire) & PUMP_STOP != 0
            || !matches!(*pump_slot, PumpTask::Running(_))
        {
            return false;
        }
        if !backend.park(&Resume::waker(self)) {
            return false;
        }
        // Its own handle: the task ends as soon as the pump returns.
        *pump_slot = PumpTask::Parked;
        tracing::debug!(session = %self.id, "idle: the pump parked");
        true
    }

    /// A parked pump's wake-up (output, or the program's end): starts it again on the
    /// current runtime, the one it ran on ([`Resume`] runs this there). Nothing if it is not
    /// parked (woken twice, or stopped).
    pub(super) fn resume_pump(self: &Arc<Self>) {
        let mut pump_slot = self.pump_task();
        if !matches!(*pump_slot, PumpTask::Parked) {
            return;
        }
        self.backend().unpark();
        *pump_slot = PumpTask::Running(tokio::spawn(pump(Arc::clone(self))));
        tracing::debug!(session = %self.id, "the pump is back");
    }

    /// True while its pump is parked.
    pub fn is_parked(&self) -> bool {
        matches!(*self.pump_task(), PumpTask::Parked)
    }

    /// True when the program lives on after this daemon (held by the keeper).
    pub(super) fn outlives_daemon(&self) -> bool {
        self.backend().outlives_daemon()
    }

    /// Stops reading the program's output, without ending it (the daemon is stopping and
    /// the program lives on): unread output waits in the kernel for the next daemon, and
    /// everything read so far is in the output log. Returns once the pump has stopped.
    pub(super) async fn stop_pump(&self) {
        let task = {
            let mut pump_slot = self.pump_task();
            self.pump_signal.fetch_or(PUMP_STOP, Ordering::AcqRel);
            match std::mem::replace(&mut *pump_slot, PumpTask::None) {
                PumpTask::Running(task) => Some(task),
                // Nothing runs; its watch goes (a wake-up now finds no parked pump).
                PumpTask::Parked => {
                    self.backend().unpark();
                    None
                }
                PumpTask::None => None,
            }
        };
        if let Some(task) = task {
            // Not an abort: a pump cancelled between publishing a chunk and digesting it left
            // that chunk out of the screen model and so out of the last save (an upgrade lost
            // it). The pump runs on the relay, so it may be in the middle of a chunk now.
            self.pump_waker.wake();
            let _ = task.await;
        }
        // Everything read is in the file before the daemon goes; the recording stays on
        // record (get_session, the store), for the next daemon to go on with.
        let writer = self.recording().as_deref_mut().and_then(Recording::close);
        join_writer(writer).await;
    }

    /// A session whose process is gone, kept for its history (restored with `history`, or
    /// stopped before the daemon restarted).
    pub(super) fn stopped(spec: SessionSpec, exit: Exit, reason: Option<String>) -> Arc<Self> {
        Self::build(spec, ended(reason), Some(exit))
    }

    /// From now on, tells `observer` of every change, starting with this moment's state.
    pub(super) fn observe(&self, observer: Arc<dyn SessionObserver>) {
        if self.observer.set(observer).is_ok() {
            self.notify();
        }
    }

    /// From now on, tells `events` what happens to this session.
    pub(super) fn publish_to(&self, events: Events) {
        let _ = self.events.set(events);
    }

    /// Puts `event` on the daemon-wide stream, if the session is on it yet.
    pub(super) fn emit(&self, event: SessionEvent) {
        if let Some(events) = self.events.get() {
            events.emit(event);
        }
    }

    /// Tells the observer, if any, that this session changed.
    fn notify(&self) {
        if let Some(observer) = self.observer.get() {
            observer.changed(self);
        }
    }

    /// Its limits, as asked (the daemon's defaults filled in).
    pub fn limits(&self) -> SessionLimits {
        self.limits.as_deref().copied().unwrap_or_default()
    }

    pub(super) fn rate(&self) -> Option<&OutputRate> {
        self.rate.as_deref()
    }

    pub(crate) fn backend(&self) -> Arc<dyn Backend> {
        Arc::clone(&self.backend.read().unwrap_or_else(|e| e.into_inner()))
    }

    pub(super) fn output(&self) -> &OutputLog {
        &self.output
    }

    pub(super) fn clients(&self) -> MutexGuard<'_, ClientTable> {
        self.clients.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The session's id.
    pub fn id(&self) -> SessionId {
        self.id
    }

    /// The session's name.
    pub fn name(&self) -> &str {
        &self.name
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

    fn touch(&self) {
        self.last_active_ms
            .store(Utc::now().timestamp_millis(), Ordering::Relaxed);
    }

    /// The terminal size now (cols, rows).
    pub fn size(&self) -> (u16, u16) {
        self.clients().size()
    }

    /// One past the last output byte.
    pub fn output_offset(&self) -> u64 {
        self.output.head()
    }

    /// Output for the store: the bytes from `since` (or, if more, the last `max` of them) up
    /// to where the screen model has got, and the screen as of there.
    pub(crate) fn saved_slice(&self, since: u64, max: usize) -> SavedSlice {
        self.output.saved_slice(since, max)
    }

    /// The resident scrollback a release could give up, from `from` at the earliest, to the
    /// head; `None` while some is released already.
    pub(crate) fn releasable_scrollback(&self, from: u64) -> Option<std::ops::Range<u64>> {
        self.output.releasable(from)
    }

    /// Releases the newest scrollback, `saved` from offset `from` as the store holds it, if it
    /// is still exactly the ring's tail; `load` reads it back. Returns the bytes released.
    pub(crate) fn release_saved_scrollback(
        &self,
        from: u64,
        saved: &[u8],
        load: crate::terminal::Loader,
    ) -> usize {
        self.output.release_saved(from, saved, load)
    }

    /// Scrollback bytes released to the store now.
    pub fn released_scrollback(&self) -> u64 {
        self.output.released()
    }

    /// When the process ended, if it has.
    pub fn exit(&self) -> Option<Exit> {
        self.exit.get()
    }

    /// True while the process runs.
    pub fn is_alive(&self) -> bool {
        self.exit().is_none()
    }

    /// Resolves once the process has ended and its output is drained.
    pub(super) async fn ended_signal(&self) {
        self.exit.wait().await;
    }

    /// The pump's last word: the process ended with `exit`.
    pub(super) fn ended(&self, exit: Exit) {
        self.drop_recording("the session ended");
        let reason = self.backend().end_reason();
        // The program's backend goes once the pump drops its own handle (right after this).
        *self.backend.write().unwrap_or_else(|e| e.into_inner()) = ended(reason);
        self.exit.set(exit);
        self.notify();
        self.emit(SessionEvent::SessionExited {
            session_id: self.id,
            code: exit.status.code,
            signal: exit.status.signal,
            reason: self.backend().end_reason(),
        });
    }

    /// Clients attached now.
    pub fn num_clients(&self) -> usize {
        self.clients().len()
    }

    pub(super) fn subscribe_control(&self) -> broadcast::Receiver<Control> {
        // Resizes only, and a reader that misses one is set right by the next or by
        // `get_session`: four slots (each slot is a lock; sixteen were ~650 B a session).
        self.control
            .get_or_init(|| broadcast::channel(4).0)
            .subscribe()
    }

    pub(super) fn state_with(&self, clients: &ClientTable) -> SessionState {
        if self.exit().is_some() {
            SessionState::Stopped
        } else if clients.is_empty() {
            SessionState::Detached
        } else {
            SessionState::Running
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
        self.clients()
            .attach(client_id, owner, mode, max_clients)
            .map_err(|full| SessionError::LimitReached {
                op: "attach",
                limit: "max_clients_per_session",
                max: full.max,
            })?;
        self.touch();
        self.notify();
        self.emit(SessionEvent::SessionAttached {
            session_id: self.id,
            client_id: client_id.to_owned(),
            read_only: mode == ClientMode::ReadOnly,
        });
        Ok(())
    }

    /// Unregisters `client_id`.
    pub fn detach(&self, client_id: &str) -> Result<(), SessionError> {
        let (mode, detached) = {
            let mut clients = self.clients();
            (clients.mode_of(client_id), clients.detach(client_id))
        };
        match detached {
            Some(target) => {
                self.apply_size(target);
                self.notify();
                self.emit(SessionEvent::SessionDetached {
                    session_id: self.id,
                    client_id: client_id.to_owned(),
                    read_only: mode == Some(ClientMode::ReadOnly),
                });
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
        let (gone, (detached, target)) = {
            let mut clients = self.clients();
            let gone = clients.owned_by(owner);
            (gone, clients.detach_owner(owner, cursor_key))
        };
        self.apply_size(target);
        if detached > 0 {
            self.notify();
        }
        for (client_id, mode) in gone {
            self.emit(SessionEvent::SessionDetached {
                session_id: self.id,
                client_id,
                read_only: mode == ClientMode::ReadOnly,
            });
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
        if self.clients().is_read_only(client_id, owner) {
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
        self.backend()
            .write_all(data)
            .await
            .map_err(|source| SessionError::Io {
                id: self.id,
                op: "send input",
                source,
            })?;
        self.record(|recording| recording.input(data));
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
        super::check_size(cols, rows)?;
        if !self.is_alive() {
            return Err(SessionError::InvalidState {
                id: self.id,
                op: "resize",
                state: SessionState::Stopped,
            });
        }
        let target = {
            let mut clients = self.clients();
            if clients.is_read_only(client_id, owner) {
                return Err(SessionError::ReadOnly {
                    id: self.id,
                    op: "resize",
                    client_id: client_id.to_owned(),
                });
            }
            clients.request_size(client_id, (cols, rows))
        };
        self.touch();
        match target {
            Some(size) => self.resize_to(size),
            None => Ok(()),
        }
    }

    /// Applies a policy outcome, logging (not failing) a backend error.
    fn apply_size(&self, target: Option<(u16, u16)>) {
        if let Some(size) = target
            && self.is_alive()
            && let Err(err) = self.resize_to(size)
        {
            tracing::warn!(session = %self.id, "resize after detach failed: {err}");
        }
    }

    /// Resizes the terminal and the screen model, and tells subscribers.
    fn resize_to(&self, (cols, rows): (u16, u16)) -> Result<(), SessionError> {
        if self.clients().size() == (cols, rows) {
            return Ok(());
        }
        let backend = self.backend();
        self.output
            .resize((cols, rows), || backend.resize(cols, rows))
            .map_err(|source| SessionError::Io {
                id: self.id,
                op: "resize",
                source,
            })?;
        self.clients().set_size((cols, rows));
        self.record(|recording| recording.resize((cols, rows)));
        // No channel yet: no subscriber to tell (one that subscribes later reads the size).
        if let Some(control) = self.control.get() {
            let _ = control.send(Control::Resized { cols, rows });
        }
        self.notify();
        self.emit(SessionEvent::SessionResized {
            session_id: self.id,
            cols,
            rows,
        });
        Ok(())
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
                let remembered = self.clients().cursor(cursor_key);
                remembered.unwrap_or_else(|| self.output.start())
            }
        };
        let current = self.output.head();
        if from > current {
            return Err(SessionError::InvalidParam {
                field: "since",
                reason: format!("offset {from} is beyond the end of the output ({current})"),
            });
        }
        if from == current && !timeout.is_zero() && self.is_alive() {
            let _ = tokio::time::timeout(timeout, async {
                tokio::select! {
                    () = self.output.head_changed_from(current) => {}
                    () = self.ended_signal() => {}
                }
            })
            .await;
        }
        let chunk = self.output.read(from, max_bytes);
        self.clients()
            .remember_cursor(cursor_key, chunk.next_offset());
        Ok(chunk)
    }

    /// Ends the process: SIGHUP, then SIGKILL after `grace`. Returns once the session is
    /// stopped (or after a bounded wait if even SIGKILL does not end it).
    pub async fn terminate(&self, grace: Duration) {
        if !self.is_alive() {
            return;
        }
        self.backend().terminate(grace).await;
        let _ = tokio::time::timeout(
            DRAIN_AFTER_EXIT + Duration::from_secs(5),
            self.ended_signal(),
        )
        .await;
    }

    /// Ends the program of a session whose pump was stopped (the daemon stopping): no pump
    /// is left to publish the end, so only the backend's own ending is awaited.
    pub async fn terminate_unread(&self, grace: Duration) {
        if self.is_alive() {
            self.backend().terminate(grace).await;
        }
    }

    /// Hibernates the screen model if nothing was written for `idle`; the bytes it then
    /// holds, or `None` when it stays awake (or already slept).
    pub(super) fn hibernate_if_idle(&self, idle: Duration) -> Option<usize> {
        if !self.quiet_for(idle) || self.output.is_hibernated() {
            return None;
        }
        Some(self.output.hibernate())
    }

    /// True while its screen model sleeps.
    pub fn is_hibernated(&self) -> bool {
        self.output.is_hibernated()
    }

    /// The pump's first half of an append: the bytes into the ring, the head published, the
    /// activity noted. Readers (subscribers, long polls) may send them on at once. Returns
    /// the offset of `data[0]`.
    pub(super) fn publish_output(&self, data: &[u8]) -> u64 {
        // The recording first: output a client has seen is in a recording stopped after.
        self.record(|recording| recording.output(data));
        let at = self.output.publish(data);
        self.touch();
        at
    }

    /// The second half, once readers have had their turn: the screen model (unless a
    /// snapshot or a resize made it catch up already) and the marks scanner take the same
    /// bytes.
    pub(super) fn digest_output(&self, data: &[u8], at: u64) {
        self.output.digest(data, at);
        if self.events.get().is_some() {
            self.scan_marks(data);
        }
    }

    /// Turns the bells, titles and finished commands in `data` into events.
    fn scan_marks(&self, data: &[u8]) {
        let mut found = Vec::new();
        self.marks.lock().unwrap_or_else(|e| e.into_inner()).feed(
            data,
            std::time::Instant::now(),
            &mut |mark| found.push(mark),
        );
        for mark in found {
            let session_id = self.id;
            let event = match mark {
                // Someone attached hears it; the event is for when nobody is watching.
                Mark::Bell if !self.clients().is_empty() => continue,
                Mark::Bell => SessionEvent::Bell { session_id },
                Mark::Title(title) => SessionEvent::Title { session_id, title },
                Mark::CommandFinished {
                    command_line,
                    exit_code,
                    duration_ms,
                } => SessionEvent::CommandFinished {
                    session_id,
                    command_line,
                    exit_code,
                    duration_ms,
                },
            };
            self.emit(event);
        }
    }
}

/// Turns a backend's link going down and coming back into events, until the backend or
/// the session ends.
///
/// It holds the session only while it waits (to see the end); the end, or the link's
/// channel closing with the backend, ends it.
async fn follow_link(session: std::sync::Weak<Session>, mut link: watch::Receiver<LinkState>) {
    loop {
        {
            let Some(watched) = session.upgrade() else {
                return;
            };
            tokio::select! {
                changed = link.changed() => if changed.is_err() { return },
                () = watched.ended_signal() => return,
            }
        }
        let state = link.borrow_and_update().clone();
        let Some(session) = session.upgrade() else {
            return;
        };
        let session_id = session.id;
        let event = match (&session.session_type, state) {
            (SessionType::Ssh(_), LinkState::Down { cause }) => {
                SessionEvent::SshDisconnected { session_id, cause }
            }
            (SessionType::Ssh(_), LinkState::Up) => SessionEvent::SshReconnected { session_id },
            (SessionType::Serial(_), LinkState::Down { cause }) => {
                SessionEvent::SerialVanished { session_id, cause }
            }
            (SessionType::Serial(_), LinkState::Up) => SessionEvent::SerialReopened { session_id },
            _ => continue,
        };
        session.emit(event);
    }
}

/// Waits, off the runtime's threads, for a recording's writer to close its file.
async fn join_writer(writer: Option<std::thread::JoinHandle<()>>) {
    if let Some(writer) = writer {
        let _ = tokio::task::spawn_blocking(move || writer.join()).await;
    }
}

/// Recording: the pump, input and resizes feed it; requests and the writer start and stop it.
impl Session {
    fn recording(&self) -> MutexGuard<'_, Option<Box<Recording>>> {
        self.recording.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The recording in progress, if any.
    pub fn recording_state(&self) -> Option<RecordingState> {
        self.recording().as_deref().map(Recording::state)
    }

    /// Hands an event to the recording, if one is on; a writer the whole channel behind
    /// (a slow disk) loses the recording, never the session its output.
    fn record(&self, event: impl FnOnce(&Recording) -> Recorded) {
        let overflowed = match &*self.recording() {
            Some(recording) => matches!(event(recording), Recorded::Overflowed),
            None => return,
        };
        if overflowed {
            tracing::warn!(session = %self.id, "the recording's disk cannot keep up: recording dropped");
            self.drop_recording(
                "the disk could not keep up with the output: the recording was dropped (the \
                 session's output was not)",
            );
        }
    }

    /// Starts recording to `spec.path` (or, with `spec.resume_from`, goes on with a file an
    /// earlier daemon wrote). Returns the file.
    pub(crate) fn start_recording(
        self: &Arc<Self>,
        spec: RecordingSpec,
    ) -> Result<PathBuf, SessionError> {
        if !self.is_alive() {
            return Err(SessionError::InvalidState {
                id: self.id,
                op: "record",
                state: SessionState::Stopped,
            });
        }
        let mut slot = self.recording();
        if let Some(recording) = &*slot {
            return Err(SessionError::RecordingActive {
                id: self.id,
                path: recording.path().to_owned(),
            });
        }
        let generation = self.recordings.fetch_add(1, Ordering::Relaxed) + 1;
        let session = Arc::downgrade(self);
        let on_stop = Box::new(move |reason: String| {
            if let Some(session) = session.upgrade() {
                session.recording_stopped_itself(generation, reason);
            }
        });
        let path = spec.path.clone();
        let recording = Recording::start(spec, self.clients().size(), generation, on_stop)
            .map_err(|source| SessionError::RecordingFile {
                id: self.id,
                path: path.clone(),
                source,
            })?;
        *slot = Some(Box::new(recording));
        drop(slot);
        tracing::info!(session = %self.id, path = %path.display(), "recording started");
        self.notify();
        self.emit(SessionEvent::RecordingStarted {
            session_id: self.id,
            path: path.display().to_string(),
        });
        Ok(path)
    }

    /// Stops the recording at a client's request; the file is complete on return.
    pub async fn stop_recording(&self) -> Result<(), SessionError> {
        let taken = self.recording().take();
        let Some(mut recording) = taken else {
            return Err(SessionError::NotRecording { id: self.id });
        };
        join_writer(recording.close()).await;
        self.recording_ended(&recording, "stopped by request".to_owned());
        Ok(())
    }

    /// Stops the recording, if any, without waiting: its writer finishes the file and only
    /// then is the stop announced.
    fn drop_recording(&self, reason: &str) {
        let Some(mut recording) = self.recording().take() else {
            return;
        };
        self.notify();
        let writer = recording.close();
        let events = self.events.get().cloned();
        let (id, reason) = (self.id, reason.to_owned());
        tokio::task::spawn_blocking(move || {
            if let Some(writer) = writer {
                let _ = writer.join();
            }
            announce_stop(events.as_ref(), id, &recording, reason);
        });
    }

    /// The writer stopped by itself (the size cap, a write error): the recording ends, if it
    /// is still the one the writer wrote.
    fn recording_stopped_itself(&self, generation: u64, reason: String) {
        let mut slot = self.recording();
        if slot.as_ref().map(|r| r.generation) != Some(generation) {
            return;
        }
        let mut recording = slot.take().expect("checked just above");
        drop(slot);
        // This is the writer's own thread, about to end: nothing to wait for.
        drop(recording.close());
        self.recording_ended(&recording, reason);
    }

    fn recording_ended(&self, recording: &Recording, reason: String) {
        self.notify();
        announce_stop(self.events.get(), self.id, recording, reason);
    }
}

/// Logs a recording's end and puts it on the event stream.
fn announce_stop(events: Option<&Events>, id: SessionId, recording: &Recording, reason: String) {
    let path = recording.path().display().to_string();
    tracing::info!(session = %id, path = %path, reason = %reason, "recording stopped");
    if let Some(events) = events {
        events.emit(SessionEvent::RecordingStopped {
            session_id: id,
            path,
            reason,
        });
    }
}

#[cfg(test)]
mod size_tests {
    //! What every idle session holds for its whole life, kept from growing back unnoticed
    //! (the figures of a debug build; docs/benchmarks.md has the release heap).
    use std::mem::size_of;
    use std::sync::Arc;

    use super::Session;

    fn output_size<F: Fn(Arc<Session>) -> Fut, Fut>(_: F) -> usize {
        size_of::<Fut>()
    }

    #[test]
    fn a_session_is_at_most_704_bytes() {
        assert!(
            size_of::<Session>() <= 704,
            "{} bytes",
            size_of::<Session>()
        );
    }

    #[test]
    fn the_pump_future_is_at_most_400_bytes() {
        let size = output_size(super::pump);
        assert!(size <= 400, "{size} bytes");
    }
}
