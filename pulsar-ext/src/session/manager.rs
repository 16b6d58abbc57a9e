//! The session table: create, find, list, terminate and clean up sessions.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use chrono::{DateTime, Utc};
use pulsar_protocol::{SessionId, SessionInfo, SessionState, SessionType};
use uuid::Uuid;

use super::{ClientOwner, Exit, History, Session, SessionError, SessionObserver, SessionSpec};
use crate::backend::{
    Backend, ConnectError, LocalBackend, OpenError, SerialBackend, SpawnError, SshBackend,
};
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
}

/// Owns every session. Cheap to share (`Arc<SessionManager>`).
pub struct SessionManager {
    sessions: RwLock<HashMap<SessionId, Arc<Session>>>,
    config: Arc<Config>,
    /// Told of every session's changes (the store).
    observer: Option<Arc<dyn SessionObserver>>,
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
    /// Its saved output and the restart divider.
    pub history: Option<History>,
    /// Start it again, or keep it stopped.
    pub mode: RestoreMode,
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

impl SessionManager {
    /// An empty table governed by `config`'s limits and defaults.
    pub fn new(config: Arc<Config>) -> Self {
        Self {
            sessions: RwLock::new(HashMap::new()),
            config,
            observer: None,
        }
    }

    /// An empty table whose sessions report their changes to `observer`.
    pub fn with_observer(config: Arc<Config>, observer: Arc<dyn SessionObserver>) -> Self {
        Self {
            observer: Some(observer),
            ..Self::new(config)
        }
    }

    /// Takes `session` into the table and starts telling the observer about it.
    fn adopt(&self, sessions: &mut HashMap<SessionId, Arc<Session>>, session: &Arc<Session>) {
        sessions.insert(session.id(), Arc::clone(session));
        if let Some(observer) = &self.observer {
            session.observe(Arc::clone(observer));
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<SessionId, Arc<Session>>> {
        self.sessions.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<SessionId, Arc<Session>>> {
        self.sessions.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Starts a session. Must run inside the daemon's runtime (the session's pump is spawned
    /// on it).
    pub fn create(&self, request: CreateRequest) -> Result<Arc<Session>, SessionError> {
        let id = Uuid::new_v4();
        let (name, cols, rows) = self.admit(id, &request)?;

        let backend = self.spawn_backend(id, &name, &request.session_type, (cols, rows))?;
        self.install(id, name, request, (cols, rows), backend)
    }

    /// Starts a session of any type. An SSH session connects, checks the host key and
    /// authenticates first (within `ssh_connect_timeout_ms`), hence async; the other types
    /// start at once, as [`Self::create`]. Must run inside the daemon's runtime.
    pub async fn create_async(&self, request: CreateRequest) -> Result<Arc<Session>, SessionError> {
        let SessionType::Ssh(spec) = &request.session_type else {
            return self.create(request);
        };
        let id = Uuid::new_v4();
        let (name, cols, rows) = self.admit(id, &request)?;
        let backend = SshBackend::connect(spec, &self.config.ssh_options(), cols, rows)
            .await
            .map_err(|source| ssh_error(&name, source))?;
        self.install(id, name, request, (cols, rows), Arc::new(backend))
    }

    /// Checks a request before any backend starts: its name (or the default), its size, and
    /// room under `max_sessions`.
    fn admit(
        &self,
        id: SessionId,
        request: &CreateRequest,
    ) -> Result<(String, u16, u16), SessionError> {
        let name = match &request.name {
            Some(name) => {
                validate_name(name)?;
                name.clone()
            }
            None => id.simple().to_string()[..8].to_owned(),
        };
        let cols = request.cols.unwrap_or(self.config.default_cols);
        let rows = request.rows.unwrap_or(self.config.default_rows);
        for (field, value) in [("cols", cols), ("rows", rows)] {
            if !(1..=1000).contains(&value) {
                return Err(SessionError::InvalidParam {
                    field,
                    reason: format!("{value} is outside 1..=1000"),
                });
            }
        }
        self.check_room(&name)?;
        Ok((name, cols, rows))
    }

    /// Wraps a started backend in a session and enters it in the table.
    fn install(
        &self,
        id: SessionId,
        name: String,
        request: CreateRequest,
        (cols, rows): (u16, u16),
        backend: Arc<dyn Backend>,
    ) -> Result<Arc<Session>, SessionError> {
        let session = Session::start(
            SessionSpec {
                id,
                name,
                // The session keeps no secret: only the backend needs them (to reconnect).
                session_type: request.session_type.redacted(),
                // Millisecond precision, as stored: the time reads the same after a restart.
                created_at: DateTime::from_timestamp_millis(Utc::now().timestamp_millis())
                    .unwrap_or_else(Utc::now),
                size: (cols, rows),
                resize_policy: request.resize_policy.unwrap_or(self.config.resize_policy),
                scrollback_bytes: self.config.scrollback_bytes,
                history: None,
            },
            backend,
        );
        // The name was free a moment ago; check again under the write lock so two concurrent
        // creates cannot both take it.
        // Likewise the room: an SSH session may have spent seconds connecting meanwhile.
        let mut sessions = self.write();
        let refusal = if let Some(holder) = live_holder(&sessions, session.name()) {
            Some(SessionError::NameExists {
                name: session.name().to_owned(),
                id: holder,
            })
        } else if sessions.values().filter(|s| s.is_alive()).count() >= self.config.max_sessions {
            Some(SessionError::LimitReached {
                op: "create a session",
                limit: "max_sessions",
                max: self.config.max_sessions,
            })
        } else {
            None
        };
        if let Some(refusal) = refusal {
            drop(sessions);
            let orphan = Arc::clone(&session);
            tokio::spawn(async move { orphan.terminate(Duration::ZERO).await });
            return Err(refusal);
        }
        self.adopt(&mut sessions, &session);
        drop(sessions);
        tracing::info!(session = %id, name = %session.name(), "session created");
        Ok(session)
    }

    /// Starts the backend of a local or serial session (SSH connects in
    /// [`Self::create_async`]).
    fn spawn_backend(
        &self,
        id: SessionId,
        name: &str,
        session_type: &SessionType,
        (cols, rows): (u16, u16),
    ) -> Result<Arc<dyn Backend>, SessionError> {
        Ok(match session_type {
            SessionType::Local(spec) => Arc::new(
                LocalBackend::spawn(
                    spec,
                    cols,
                    rows,
                    &[
                        ("PULSAR_SESSION_ID", id.to_string()),
                        ("PULSAR_SESSION_NAME", name.to_owned()),
                    ],
                )
                .map_err(|source| spawn_error(name, source))?,
            ),
            SessionType::Serial(spec) => Arc::new(
                SerialBackend::open(spec, self.config.serial_reopen())
                    .map_err(|source| open_error(name, source))?,
            ),
            SessionType::Ssh(_) => {
                return Err(SessionError::InvalidParam {
                    field: "type",
                    reason: "SSH sessions connect asynchronously (create_async)".to_owned(),
                });
            }
            #[allow(unreachable_patterns)] // SessionType is non-exhaustive across crates
            other => {
                return Err(SessionError::InvalidParam {
                    field: "type",
                    reason: format!("session type `{}` is not supported", other.kind()),
                });
            }
        })
    }

    /// Brings back a session saved before a restart: respawned (reconnected, reopened) after
    /// its history, or stopped with it. A respawn that fails leaves the session stopped,
    /// saying why; an SSH session whose credentials were only a password (never stored)
    /// says "credentials required".
    pub async fn restore(&self, mut request: RestoreRequest) -> Arc<Session> {
        let history = request.history.take();
        let spec = SessionSpec {
            id: request.id,
            name: request.name.clone(),
            session_type: request.session_type.redacted(),
            created_at: request.created_at,
            size: request.size,
            resize_policy: request.resize_policy,
            scrollback_bytes: self.config.scrollback_bytes,
            history,
        };
        let session = match request.mode {
            RestoreMode::Respawn => match self.respawn_backend(&request).await {
                Ok(backend) => Session::start(spec, backend),
                Err(reason) => {
                    tracing::warn!(session = %request.id, name = %request.name, "could not restart: {reason}");
                    Session::stopped(
                        spec,
                        Exit {
                            status: crate::backend::ExitStatus {
                                code: None,
                                signal: None,
                            },
                            at: Utc::now(),
                        },
                        Some(reason),
                    )
                }
            },
            RestoreMode::Stopped { exit, reason } => Session::stopped(spec, exit, reason),
        };
        let mut sessions = self.write();
        self.adopt(&mut sessions, &session);
        session
    }

    async fn respawn_backend(&self, request: &RestoreRequest) -> Result<Arc<dyn Backend>, String> {
        if let Some(holder) = live_holder(&self.read(), &request.name) {
            return Err(format!("its name is taken by session {holder}"));
        }
        match &request.session_type {
            SessionType::Ssh(spec) => {
                let (cols, rows) = request.size;
                match SshBackend::connect(spec, &self.config.ssh_options(), cols, rows).await {
                    Ok(backend) => Ok(Arc::new(backend)),
                    Err(err @ ConnectError::AuthFailed { .. }) => Err(format!(
                        "credentials required: passwords and passphrases are never stored, \
                         so reconnecting after the daemon restarted failed ({err})"
                    )),
                    Err(err) => Err(format!(
                        "could not reconnect after the daemon restarted: {err}"
                    )),
                }
            }
            other => self
                .spawn_backend(request.id, &request.name, other, request.size)
                .map_err(|err| format!("could not restart after the daemon restarted: {err}")),
        }
    }

    fn check_room(&self, name: &str) -> Result<(), SessionError> {
        let sessions = self.read();
        if let Some(id) = live_holder(&sessions, name) {
            return Err(SessionError::NameExists {
                name: name.to_owned(),
                id,
            });
        }
        let live = sessions.values().filter(|s| s.is_alive()).count();
        if live >= self.config.max_sessions {
            return Err(SessionError::LimitReached {
                op: "create a session",
                limit: "max_sessions",
                max: self.config.max_sessions,
            });
        }
        Ok(())
    }

    /// The session with `id`.
    pub fn get(&self, id: SessionId) -> Result<Arc<Session>, SessionError> {
        self.read()
            .get(&id)
            .cloned()
            .ok_or(SessionError::NotFound(id))
    }

    /// Every session.
    pub fn all(&self) -> Vec<Arc<Session>> {
        self.read().values().cloned().collect()
    }

    /// Every session's info, oldest first.
    pub fn list(&self) -> Vec<SessionInfo> {
        let sessions: Vec<Arc<Session>> = self.read().values().cloned().collect();
        let mut infos: Vec<SessionInfo> = sessions.iter().map(|s| s.info()).collect();
        infos.sort_by(|a, b| a.created_at.cmp(&b.created_at).then(a.name.cmp(&b.name)));
        infos
    }

    /// Sessions known, in any state.
    pub fn len(&self) -> usize {
        self.read().len()
    }

    /// True when there are no sessions.
    pub fn is_empty(&self) -> bool {
        self.read().is_empty()
    }

    /// Clients attached across all sessions.
    pub fn num_clients(&self) -> usize {
        self.read().values().map(|s| s.num_clients()).sum()
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
        let sessions: Vec<Arc<Session>> = self.read().values().cloned().collect();
        for session in sessions {
            let detached = session.detach_owner(owner, cursor_key);
            if detached > 0 {
                tracing::debug!(session = %session.id(), detached, "connection closed");
            }
        }
    }

    /// Removes stopped sessions whose process ended more than the retention period ago.
    /// Returns how many were removed.
    pub fn cleanup(&self) -> usize {
        let retention = chrono::Duration::seconds(
            i64::try_from(self.config.stopped_retention_secs).unwrap_or(i64::MAX / 1000),
        );
        let now = Utc::now();
        let mut sessions = self.write();
        let mut removed = Vec::new();
        sessions.retain(|id, session| match session.exit() {
            Some(exit) if now - exit.at >= retention => {
                tracing::info!(session = %id, name = %session.name(), "removing stopped session");
                removed.push(*id);
                false
            }
            _ => true,
        });
        drop(sessions);
        if let Some(observer) = &self.observer {
            for id in &removed {
                observer.removed(*id);
            }
        }
        removed.len()
    }

    /// Ends every live session without waiting out the grace period (daemon stop).
    pub async fn terminate_all(&self) {
        let sessions: Vec<Arc<Session>> = self.read().values().cloned().collect();
        let grace = self
            .config
            .terminate_grace()
            .min(Duration::from_millis(500));
        let ends = sessions
            .iter()
            .filter(|s| s.is_alive())
            .map(|s| s.terminate(grace));
        futures_util::future::join_all(ends).await;
    }
}

/// The live session holding `name`, if any. Stopped sessions release their names.
fn live_holder(sessions: &HashMap<SessionId, Arc<Session>>, name: &str) -> Option<SessionId> {
    sessions
        .values()
        .find(|s| s.name() == name && s.is_alive())
        .map(|s| s.id())
}

/// A local session that could not start: bad fields are the caller's, the rest the backend's.
fn spawn_error(name: &str, source: SpawnError) -> SessionError {
    match source {
        SpawnError::NoSuchCwd(dir) => SessionError::InvalidParam {
            field: "type.cwd",
            reason: format!("{} does not exist or is not a directory", dir.display()),
        },
        SpawnError::EmptyCommand => SessionError::InvalidParam {
            field: "type.command",
            reason: "must name a program".to_owned(),
        },
        source => SessionError::Spawn {
            name: name.to_owned(),
            source,
        },
    }
}

/// A serial session that could not start: bad settings are invalid params; a missing or
/// forbidden device has a code of its own, so a client can tell the user what to fix.
fn open_error(name: &str, source: OpenError) -> SessionError {
    match source {
        OpenError::InvalidSetting { field, reason } => SessionError::InvalidParam { field, reason },
        OpenError::NotFound(device) => SessionError::DeviceNotFound {
            name: name.to_owned(),
            device,
        },
        OpenError::PermissionDenied(device) => SessionError::DevicePermissionDenied {
            name: name.to_owned(),
            device,
        },
        source => SessionError::Device {
            name: name.to_owned(),
            source,
        },
    }
}

/// An SSH session that could not start: bad fields are invalid params; every connection
/// failure keeps its own kind (and code), naming the host.
fn ssh_error(name: &str, source: ConnectError) -> SessionError {
    match source {
        ConnectError::InvalidSetting { field, reason } => {
            SessionError::InvalidParam { field, reason }
        }
        source => SessionError::Ssh {
            name: name.to_owned(),
            source: Box::new(source),
        },
    }
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
