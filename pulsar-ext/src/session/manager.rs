//! The session table: create, find, list, terminate and clean up sessions.
//!
//! Creating and restoring share one path: admit the request (name, size, room), reserve its
//! name, open the backend through `backend::open`, and install the session, unless the daemon
//! began stopping meanwhile (then the new backend is ended at once and the caller told).

use std::collections::HashMap;
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Duration;

use chrono::{DateTime, Utc};
use pulsar_protocol::{
    SessionEvent, SessionId, SessionInfo, SessionLimits, SessionState, SessionType,
};
use uuid::Uuid;

use super::{
    ClientOwner, Events, Exit, History, RecordingSpec, Session, SessionError, SessionObserver,
    SessionSpec, check_size,
};
use crate::backend::{self, Backend, BackendError, BackendSettings, ExitStatus, OpenRequest};
use crate::config::Config;

/// What `create_session` asks for.
#[derive(Debug, Clone)]
pub struct CreateRequest {
    /// Unique among live sessions; default: the id's first 8 characters.
    pub name: Option<String>,
    /// What to run.
    pub session_type: SessionType,
    /// Width; default from config.
    pub cols: Option<u16>,
    /// Height; default from config.
    pub rows: Option<u16>,
    /// How the size follows several clients; default from config.
    pub resize_policy: Option<pulsar_protocol::ResizePolicy>,
    /// Resource limits; each absent one from the config's `limits_*`.
    pub limits: SessionLimits,
}

/// A session to bring back after a restart.
pub struct RestoreRequest {
    /// Its id, as before.
    pub id: SessionId,
    /// Its name, as before.
    pub name: String,
    /// What ran in it.
    pub session_type: SessionType,
    /// When it was first created.
    pub created_at: DateTime<Utc>,
    /// Its terminal size.
    pub size: (u16, u16),
    /// Its resize policy.
    pub resize_policy: pulsar_protocol::ResizePolicy,
    /// Its limits, as saved.
    pub limits: SessionLimits,
    /// Its saved output and the restart divider.
    pub history: Option<History>,
    /// Start it again, or keep it stopped, if its program is gone.
    pub mode: RestoreMode,
    /// The recording it had going: the restored session goes on with it (the same file).
    pub recording: Option<ResumedRecording>,
    /// It was alive when the last daemon stopped: its program may still run (held by the
    /// keeper), and is then taken over whatever `mode` says.
    pub was_alive: bool,
}

/// A recording an earlier daemon was writing, to go on with.
pub struct ResumedRecording {
    /// The file.
    pub path: std::path::PathBuf,
    /// Input recorded too.
    pub input: bool,
    /// Its time 0, Unix milliseconds.
    pub started_ms: i64,
}

/// How a restored session comes back.
pub enum RestoreMode {
    /// A fresh process (or device, or connection) after the history.
    Respawn,
    /// Stopped, history readable.
    Stopped {
        /// How it ended.
        exit: Exit,
        /// Why, if known.
        reason: Option<String>,
    },
}

/// The sessions, and the names held for sessions still opening.
#[derive(Default)]
struct Table {
    sessions: HashMap<SessionId, Arc<Session>>,
    /// Names of sessions whose backends are opening (an SSH connect may take seconds);
    /// they count against `max_sessions` and keep the name from a second create.
    reserved: HashMap<String, SessionId>,
    /// Set when the daemon begins stopping: no session is admitted or installed after it.
    closing: bool,
}

impl Table {
    /// The live session holding `name`, if any. Stopped sessions release their names.
    fn live_holder(&self, name: &str) -> Option<SessionId> {
        self.sessions
            .values()
            .find(|s| s.name() == name && s.is_alive())
            .map(|s| s.id())
    }

    /// May a session named `name` be added? The one admission check.
    fn admits(&self, name: &str, max_sessions: usize) -> Result<(), SessionError> {
        if self.closing {
            return Err(SessionError::Stopping {
                op: "create a session",
            });
        }
        if let Some(id) = self.live_holder(name) {
            return Err(SessionError::NameExists {
                name: name.to_owned(),
                id,
            });
        }
        if let Some(&id) = self.reserved.get(name) {
            // Being created right now.
            return Err(SessionError::NameExists {
                name: name.to_owned(),
                id,
            });
        }
        let live = self.sessions.values().filter(|s| s.is_alive()).count();
        if live + self.reserved.len() >= max_sessions {
            return Err(SessionError::LimitReached {
                op: "create a session",
                limit: "max_sessions",
                max: max_sessions,
            });
        }
        Ok(())
    }
}

/// Owns every session. Cheap to share (`Arc<SessionManager>`).
pub struct SessionManager {
    table: RwLock<Table>,
    config: Arc<Config>,
    backend_settings: BackendSettings,
    /// Told of every session's changes (the store).
    observer: Option<Arc<dyn SessionObserver>>,
    /// The daemon-wide event stream every session in the table publishes to.
    events: Events,
}

/// A name held in the table while its session's backend opens; released when dropped.
struct Reservation<'a> {
    manager: &'a SessionManager,
    name: String,
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        self.manager.write().reserved.remove(&self.name);
    }
}

impl SessionManager {
    /// An empty table governed by `config`'s limits and defaults.
    pub fn new(config: Arc<Config>) -> Self {
        Self {
            table: RwLock::new(Table::default()),
            backend_settings: config.backend_settings(),
            config,
            observer: None,
            events: Events::new(),
        }
    }

    /// An empty table whose sessions start from `backend_settings` and report their
    /// changes to `observer`.
    pub fn with_observer(
        config: Arc<Config>,
        backend_settings: BackendSettings,
        observer: Arc<dyn SessionObserver>,
    ) -> Self {
        Self {
            observer: Some(observer),
            backend_settings,
            ..Self::new(config)
        }
    }

    fn read(&self) -> RwLockReadGuard<'_, Table> {
        self.table.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, Table> {
        self.table.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Takes `session` into the table and starts telling the observer about it.
    fn adopt(&self, table: &mut Table, session: &Arc<Session>) {
        table.sessions.insert(session.id(), Arc::clone(session));
        session.publish_to(self.events.clone());
        if let Some(observer) = &self.observer {
            session.observe(Arc::clone(observer));
        }
        // Wired up: now its output may flow.
        session.start_pump();
    }

    /// The daemon-wide event stream, for what happens beside sessions (transfers).
    pub fn events(&self) -> Events {
        self.events.clone()
    }

    /// Every session event from now on.
    pub fn subscribe_events(&self) -> tokio::sync::broadcast::Receiver<SessionEvent> {
        self.events.subscribe()
    }

    /// From now on, refuses every new session: the daemon is stopping. A create still
    /// opening its backend is refused when it tries to install, and its backend ended.
    pub fn close(&self) {
        self.write().closing = true;
    }

    /// Starts a session: checks the request, opens its backend (an SSH session connects,
    /// checks the host key and authenticates first, within `ssh_connect_timeout_ms`) and
    /// enters it in the table. Must run inside the daemon's runtime.
    pub async fn create(&self, request: CreateRequest) -> Result<Arc<Session>, SessionError> {
        let id = Uuid::new_v4();
        let name = match &request.name {
            Some(name) => {
                validate_name(name)?;
                name.clone()
            }
            None => id.simple().to_string()[..8].to_owned(),
        };
        let size = (
            request.cols.unwrap_or(self.config.default_cols),
            request.rows.unwrap_or(self.config.default_rows),
        );
        check_size(size.0, size.1)?;
        let limits = request.limits.or(self.config.default_limits());
        let reservation = self.reserve(&name, id)?;
        let backend = self
            .open_backend(id, &name, &request.session_type, size, &limits)
            .await
            .map_err(|source| match source {
                BackendError::InvalidSetting { field, reason } => {
                    SessionError::InvalidParam { field, reason }
                }
                source => SessionError::Backend {
                    name: name.clone(),
                    source,
                },
            })?;
        let spec = SessionSpec {
            id,
            name,
            // The session keeps no secret: only the backend needs them (to reconnect).
            session_type: request.session_type.redacted(),
            // Millisecond precision, as stored: the time reads the same after a restart.
            created_at: DateTime::from_timestamp_millis(Utc::now().timestamp_millis())
                .unwrap_or_else(Utc::now),
            size,
            resize_policy: request.resize_policy.unwrap_or(self.config.resize_policy),
            scrollback_bytes: self.config.scrollback_bytes,
            history: None,
            limits,
        };
        let session = self.install(reservation, Session::start(spec, backend))?;
        tracing::info!(session = %id, name = %session.name(), "session created");
        self.events.emit(SessionEvent::SessionCreated {
            session_id: id,
            name: session.name().to_owned(),
        });
        if self.config.record_sessions
            && let Err(err) = self.start_recording(&session, None, false)
        {
            tracing::warn!(session = %id, "record_sessions: {err}");
        }
        Ok(session)
    }

    /// Holds `name` (and a place under `max_sessions`) while a backend opens.
    fn reserve(&self, name: &str, id: SessionId) -> Result<Reservation<'_>, SessionError> {
        let mut table = self.write();
        table.admits(name, self.config.max_sessions)?;
        table.reserved.insert(name.to_owned(), id);
        Ok(Reservation {
            manager: self,
            name: name.to_owned(),
        })
    }

    /// Enters a started session in the table, in its reserved place; if the daemon began
    /// stopping meanwhile, ends it instead.
    fn install(
        &self,
        reservation: Reservation<'_>,
        session: Arc<Session>,
    ) -> Result<Arc<Session>, SessionError> {
        let mut table = self.write();
        table.reserved.remove(&reservation.name);
        if table.closing {
            drop(table);
            drop(reservation);
            tracing::info!(session = %session.id(), name = %session.name(), "daemon stopping: ending a session that finished opening too late");
            let orphan = Arc::clone(&session);
            // Its pump reports the end that `terminate` waits for.
            orphan.start_pump();
            tokio::spawn(async move { orphan.terminate(Duration::ZERO).await });
            return Err(SessionError::Stopping {
                op: "create a session",
            });
        }
        self.adopt(&mut table, &session);
        drop(table);
        drop(reservation);
        Ok(session)
    }

    /// The one door to the backends, for creating and restoring alike.
    async fn open_backend(
        &self,
        id: SessionId,
        name: &str,
        session_type: &SessionType,
        size: (u16, u16),
        limits: &SessionLimits,
    ) -> Result<Arc<dyn Backend>, BackendError> {
        backend::open(
            session_type,
            OpenRequest {
                session_id: id,
                session_name: name,
                size,
                settings: &self.backend_settings,
                limits,
            },
        )
        .await
    }

    /// Brings back a session saved before a restart: respawned (reconnected, reopened) after
    /// its history, or stopped with it. A respawn that fails leaves the session stopped,
    /// saying why; an SSH session whose credentials were only a password (never stored)
    /// says "credentials required".
    pub async fn restore(&self, mut request: RestoreRequest) -> Arc<Session> {
        let spec = SessionSpec {
            id: request.id,
            name: request.name.clone(),
            session_type: request.session_type.redacted(),
            created_at: request.created_at,
            size: request.size,
            resize_policy: request.resize_policy,
            scrollback_bytes: self.config.scrollback_bytes,
            history: request.history.take(),
            limits: request.limits,
        };
        let resumed = request
            .was_alive
            .then(|| self.resume_backend(&request))
            .flatten();
        let mode = std::mem::replace(
            &mut request.mode,
            RestoreMode::Stopped {
                exit: Exit {
                    status: ExitStatus::UNKNOWN,
                    at: Utc::now(),
                },
                reason: None,
            },
        );
        let session = match (resumed, mode) {
            (Some(backend), _) => {
                // The same program, still running (or with its exit kept): the output goes
                // on exactly where the saved part ends, so no divider.
                let mut spec = spec;
                if let Some(history) = &mut spec.history {
                    history.divider.clear();
                }
                Session::start(spec, backend)
            }
            (None, RestoreMode::Respawn) => match self.respawn_backend(&request).await {
                Ok(backend) => Session::start(spec, backend),
                Err(reason) => {
                    tracing::warn!(session = %request.id, name = %request.name, "could not restart: {reason}");
                    let exit = Exit {
                        status: ExitStatus::UNKNOWN,
                        at: Utc::now(),
                    };
                    Session::stopped(spec, exit, Some(reason))
                }
            },
            (None, RestoreMode::Stopped { exit, reason }) => Session::stopped(spec, exit, reason),
        };
        let mut table = self.write();
        self.adopt(&mut table, &session);
        drop(table);
        if let Some(recording) = request.recording.take()
            && session.is_alive()
        {
            let spec = RecordingSpec {
                path: recording.path,
                input: recording.input,
                max_bytes: self.config.recording_max_bytes,
                resume_from: Some(recording.started_ms),
            };
            if let Err(err) = session.start_recording(spec) {
                tracing::warn!(session = %session.id(), "could not go on recording: {err}");
            }
        }
        session
    }

    /// Starts recording `session` to `path` (absolute), or to a new file in
    /// `recordings_dir`.
    pub fn start_recording(
        &self,
        session: &Arc<Session>,
        path: Option<std::path::PathBuf>,
        input: bool,
    ) -> Result<std::path::PathBuf, SessionError> {
        let id = session.id();
        let path = match path {
            Some(path) if path.is_absolute() => path,
            Some(path) => {
                return Err(SessionError::RecordingFile {
                    id,
                    source: std::io::Error::new(
                        std::io::ErrorKind::InvalidInput,
                        "the path must be absolute (the daemon's working directory is not yours)",
                    ),
                    path,
                });
            }
            None => {
                let dir = &self.config.recordings_dir;
                super::create_recordings_dir(dir).map_err(|source| {
                    SessionError::RecordingFile {
                        id,
                        path: dir.clone(),
                        source,
                    }
                })?;
                dir.join(format!(
                    "{}-{}-{}.cast",
                    file_safe(session.name()),
                    &id.simple().to_string()[..8],
                    Utc::now().format("%Y%m%d-%H%M%S%.3f")
                ))
            }
        };
        session.start_recording(RecordingSpec {
            path,
            input,
            max_bytes: self.config.recording_max_bytes,
            resume_from: None,
        })
    }

    /// Starts a stopped session again in place: same id, name, kind and size, its output
    /// kept (offsets go on after a divider line), a fresh process (or connection, or device).
    /// A session still alive is returned as it is; one that cannot start again stays
    /// stopped, saying why (as after a daemon restart).
    pub async fn revive(&self, id: SessionId) -> Result<Arc<Session>, SessionError> {
        let old = self.get(id)?;
        if old.is_alive() {
            return Ok(old);
        }
        if self.read().closing {
            return Err(SessionError::Stopping {
                op: "start a session again",
            });
        }
        let (size, resize_policy) = {
            let clients = old.clients();
            (clients.size(), clients.policy())
        };
        let saved = old.saved_slice(0, self.config.scrollback_bytes);
        let divider = format!(
            "\r\n\x1b[0m\x1b[7m--- session started again at {} ---\x1b[0m\r\n",
            Utc::now().format("%Y-%m-%d %H:%M:%S UTC")
        );
        let revived = self
            .restore(RestoreRequest {
                id,
                name: old.name().to_owned(),
                session_type: old.session_type().clone(),
                created_at: old.created_at(),
                size,
                resize_policy,
                limits: old.limits(),
                history: Some(History {
                    offset: saved.offset,
                    scrollback: saved.data,
                    screen: saved.screen,
                    divider: divider.into_bytes(),
                }),
                mode: RestoreMode::Respawn,
                was_alive: false,
                recording: None,
            })
            .await;
        tracing::info!(session = %id, alive = revived.is_alive(), "session started again");
        Ok(revived)
    }

    /// The program an earlier daemon left running for this session, if it is still held.
    fn resume_backend(&self, request: &RestoreRequest) -> Option<Arc<dyn Backend>> {
        backend::resume(
            &request.session_type,
            OpenRequest {
                session_id: request.id,
                session_name: &request.name,
                size: request.size,
                settings: &self.backend_settings,
                limits: &request.limits,
            },
        )
    }

    /// Opens a restored session's backend again; the error is the stopped session's reason.
    async fn respawn_backend(&self, request: &RestoreRequest) -> Result<Arc<dyn Backend>, String> {
        if let Some(holder) = self.read().live_holder(&request.name) {
            return Err(format!("its name is taken by session {holder}"));
        }
        let ssh = matches!(request.session_type, SessionType::Ssh(_));
        self.open_backend(
            request.id,
            &request.name,
            &request.session_type,
            request.size,
            &request.limits,
        )
        .await
        .map_err(|err| {
            if err.needs_credentials() {
                format!(
                    "credentials required: passwords and passphrases are never stored, \
                         so reconnecting after the daemon restarted failed ({err})"
                )
            } else if ssh {
                format!("could not reconnect after the daemon restarted: {err}")
            } else {
                format!("could not restart after the daemon restarted: {err}")
            }
        })
    }

    /// The session with `id`.
    pub fn get(&self, id: SessionId) -> Result<Arc<Session>, SessionError> {
        self.read()
            .sessions
            .get(&id)
            .cloned()
            .ok_or(SessionError::NotFound(id))
    }

    /// Every session.
    pub fn all(&self) -> Vec<Arc<Session>> {
        self.read().sessions.values().cloned().collect()
    }

    /// Every session's info with its usage, oldest first.
    pub fn list(&self) -> Vec<SessionInfo> {
        let sessions: Vec<Arc<Session>> = self.read().sessions.values().cloned().collect();
        let mut infos: Vec<SessionInfo> = sessions.iter().map(|s| s.info_with_usage()).collect();
        infos.sort_by(|a, b| a.created_at.cmp(&b.created_at).then(a.name.cmp(&b.name)));
        infos
    }

    /// Sessions known, in any state.
    pub fn len(&self) -> usize {
        self.read().sessions.len()
    }

    /// Clients attached across all sessions.
    pub fn num_clients(&self) -> usize {
        self.read().sessions.values().map(|s| s.num_clients()).sum()
    }

    /// Attaches `client_id` (owned by `owner`) to session `id`.
    pub fn attach(
        &self,
        id: SessionId,
        client_id: &str,
        owner: ClientOwner,
        mode: pulsar_protocol::ClientMode,
    ) -> Result<Arc<Session>, SessionError> {
        let session = self.get(id)?;
        if !session.is_alive() {
            return Err(SessionError::InvalidState {
                id,
                op: "attach",
                state: SessionState::Stopped,
            });
        }
        session.attach(client_id, owner, mode, self.config.max_clients_per_session)?;
        Ok(session)
    }

    /// Terminates session `id` (a stopped session is left as it is).
    pub async fn terminate(&self, id: SessionId) -> Result<(), SessionError> {
        let session = self.get(id)?;
        session.terminate(self.config.terminate_grace()).await;
        tracing::info!(session = %id, name = %session.name(), "session terminated");
        Ok(())
    }

    /// A connection closed: detach every client it attached, everywhere.
    pub fn connection_closed(&self, owner: ClientOwner, cursor_key: &str) {
        let sessions: Vec<Arc<Session>> = self.read().sessions.values().cloned().collect();
        for session in sessions {
            let detached = session.detach_owner(owner, cursor_key);
            if detached > 0 {
                tracing::debug!(session = %session.id(), detached, "connection closed");
            }
        }
    }

    /// Hibernates the screen models of sessions with no output for `idle`: returns how many
    /// screens went to sleep now and the bytes they hold.
    pub fn hibernate_idle(&self, idle: Duration) -> (usize, usize) {
        let sessions: Vec<Arc<Session>> = self.read().sessions.values().cloned().collect();
        sessions
            .iter()
            .filter_map(|s| s.hibernate_if_idle(idle))
            .fold((0, 0), |(n, bytes), held| (n + 1, bytes + held))
    }

    /// Asks the pump of every session quiet for `idle` to park ([`Session::park_if_idle`]).
    pub fn park_idle(&self, idle: Duration) {
        let sessions: Vec<Arc<Session>> = self.read().sessions.values().cloned().collect();
        for session in sessions {
            session.park_if_idle(idle);
        }
    }

    /// Sessions whose pump is parked now.
    pub fn num_parked(&self) -> usize {
        self.read()
            .sessions
            .values()
            .filter(|s| s.is_parked())
            .count()
    }

    /// Sessions whose screen model sleeps now.
    pub fn num_hibernated(&self) -> usize {
        self.read()
            .sessions
            .values()
            .filter(|s| s.is_hibernated())
            .count()
    }

    /// Scrollback bytes released to the store across all sessions now.
    pub fn released_scrollback_bytes(&self) -> u64 {
        self.read()
            .sessions
            .values()
            .map(|s| s.released_scrollback())
            .sum()
    }

    /// Removes stopped sessions whose process ended more than the retention period ago.
    /// Returns how many were removed.
    pub fn cleanup(&self) -> usize {
        let retention = chrono::Duration::seconds(
            i64::try_from(self.config.stopped_retention_secs).unwrap_or(i64::MAX / 1000),
        );
        let now = Utc::now();
        let mut table = self.write();
        let mut removed = Vec::new();
        table.sessions.retain(|id, session| match session.exit() {
            Some(exit) if now - exit.at >= retention => {
                tracing::info!(session = %id, name = %session.name(), "removing stopped session");
                removed.push(*id);
                false
            }
            _ => true,
        });
        drop(table);
        if let Some(observer) = &self.observer {
            for id in &removed {
                observer.removed(*id);
            }
        }
        removed.len()
    }

    /// Stops every session's pump, leaving the programs running (daemon stop with a
    /// keeper): what was read is in the output logs, the rest waits in the kernel.
    pub async fn stop_reading(&self) {
        let sessions: Vec<Arc<Session>> = self.read().sessions.values().cloned().collect();
        futures_util::future::join_all(sessions.iter().map(|s| s.stop_pump())).await;
    }

    /// Ends, without waiting out the grace period, every live session whose program cannot
    /// outlive this daemon (SSH connections, serial devices); the rest are left running.
    /// Called once reading has stopped ([`Self::stop_reading`]): waiting for the pumps to
    /// publish the ends would only wait out their timeout.
    pub async fn terminate_unheld(&self) {
        let sessions: Vec<Arc<Session>> = self.read().sessions.values().cloned().collect();
        let grace = self.quick_grace();
        let ends = sessions
            .iter()
            .filter(|s| s.is_alive() && !s.outlives_daemon())
            .map(|s| s.terminate_unread(grace));
        futures_util::future::join_all(ends).await;
    }

    /// Ends every live session without waiting out the grace period (daemon stop).
    pub async fn terminate_all(&self) {
        let sessions: Vec<Arc<Session>> = self.read().sessions.values().cloned().collect();
        let grace = self.quick_grace();
        let ends = sessions
            .iter()
            .filter(|s| s.is_alive())
            .map(|s| s.terminate(grace));
        futures_util::future::join_all(ends).await;
    }

    /// The grace of a daemon stop: the configured one, at most half a second.
    fn quick_grace(&self) -> Duration {
        self.config
            .terminate_grace()
            .min(Duration::from_millis(500))
    }
}

/// A session name as part of a file name: path separators and controls replaced.
fn file_safe(name: &str) -> String {
    name.chars()
        .map(|c| if c == '/' || c.is_control() { '_' } else { c })
        .collect()
}

fn validate_name(name: &str) -> Result<(), SessionError> {
    let reason = if name.is_empty() {
        "must not be empty"
    } else if name.chars().count() > 64 {
        "must be at most 64 characters"
    } else if name.chars().any(|c| c.is_control()) {
        "must not contain control characters"
    } else {
        return Ok(());
    };
    Err(SessionError::InvalidParam {
        field: "name",
        reason: reason.to_owned(),
    })
}
