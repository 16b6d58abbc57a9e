//! Keeps the store in step with the session table, and brings sessions back at start.
//!
//! The glue between the session core (which only reports changes through
//! [`SessionObserver`]) and the store (which only knows SQL): rows on every state change,
//! output tails and activity on a debounce interval, audit records, and the restore policy.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use pulsar_protocol::{DatabaseStatus, ResizePolicy, SessionId, SessionState, SessionType};
use serde::{Deserialize, Serialize};

use crate::audit::{AuditLog, AuditRecord};
use crate::backend::ExitStatus;
use crate::config::{Config, RestorePolicy};
use crate::session::{
    Exit, History, RestoreMode, RestoreRequest, Session, SessionManager, SessionObserver,
};
use crate::store::{
    AuditEntry, OutputDelta, SCHEMA_VERSION, SavedOutput, SessionRow, Store, StoredSession,
};

/// The `config` column: what it takes to start the session again. Secrets are never part of
/// it.
#[derive(Debug, Serialize, Deserialize)]
struct StoredConfig {
    #[serde(rename = "type")]
    session_type: SessionType,
    cols: u16,
    rows: u16,
    #[serde(default)]
    resize_policy: ResizePolicy,
}

/// What was last written for a session, to save only what changed.
#[derive(Debug, Clone, Copy, Default)]
struct Saved {
    output_offset: u64,
    last_active: i64,
}

/// How many sessions came back, and how.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct RestoreSummary {
    /// Started again after their history.
    pub respawned: usize,
    /// Loaded stopped, history readable.
    pub stopped: usize,
    /// Dropped (restore = off, or unreadable rows).
    pub dropped: usize,
}

/// The store, seen from the daemon.
pub struct Persistence {
    store: Store,
    config: Arc<Config>,
    /// Set at shutdown: the processes ending then must not be recorded as stopped, or they
    /// would not be respawned at the next start.
    frozen: AtomicBool,
    saved: Mutex<HashMap<SessionId, Saved>>,
}

impl Persistence {
    /// Persistence through `store`, by `config`'s rules.
    pub fn new(store: Store, config: Arc<Config>) -> Self {
        Self {
            store,
            config,
            frozen: AtomicBool::new(false),
            saved: Mutex::new(HashMap::new()),
        }
    }

    fn saved(&self) -> std::sync::MutexGuard<'_, HashMap<SessionId, Saved>> {
        self.saved.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Saves the output tail and activity of every session that changed since the last
    /// checkpoint.
    pub fn checkpoint(&self, sessions: &SessionManager) {
        for session in sessions.all() {
            self.checkpoint_one(&session);
        }
    }

    /// Like [`Persistence::checkpoint`] for one of `slices` groups of sessions (by id), so
    /// that a periodic checkpoint becomes many small transactions instead of one large one
    /// that every other write would queue behind.
    pub fn checkpoint_slice(&self, sessions: &SessionManager, slice: u64, slices: u64) {
        for session in sessions.all() {
            if (session.id().as_u128() % u128::from(slices)) as u64 == slice {
                self.checkpoint_one(&session);
            }
        }
    }

    fn checkpoint_one(&self, session: &Session) {
        let id = session.id();
        let head = session.output_offset();
        let last_active = session.last_active_ms();
        let before = self.saved().get(&id).copied().unwrap_or_default();
        let mut saved_to = before.output_offset;
        if head != before.output_offset {
            let delta = match self.config.persist_scrollback_bytes {
                // Opted out: only the offset, so that offsets continue after a restart.
                0 => OutputDelta {
                    session_id: id,
                    offset: head,
                    data: Vec::new(),
                    keep_from: head,
                    head,
                    screen: None,
                },
                max => {
                    let slice = session.saved_slice(before.output_offset, max);
                    OutputDelta {
                        session_id: id,
                        offset: slice.offset,
                        data: slice.data,
                        keep_from: slice.end.saturating_sub(max as u64),
                        head: slice.end,
                        screen: Some(slice.screen),
                    }
                }
            };
            saved_to = delta.head;
            self.store.save_output(delta);
        }
        if last_active != before.last_active {
            self.store.touch(id, last_active);
        }
        self.saved().insert(
            id,
            Saved {
                output_offset: saved_to,
                last_active,
            },
        );
    }

    /// Stops recording changes (see [`Persistence::frozen`]).
    pub fn freeze(&self) {
        self.frozen.store(true, Ordering::SeqCst);
    }

    /// Resolves once every write so far is committed.
    pub async fn flush(&self) {
        self.store.flush().await;
    }

    /// Flushes and closes the database (blocking).
    pub fn close(&self) {
        self.store.close();
    }

    /// Prunes the audit log to its configured size.
    pub fn prune_audit(&self) {
        self.store.prune_audit(self.config.audit_max_rows);
    }

    /// The database's figures for `get_status`.
    pub fn status(&self) -> DatabaseStatus {
        let stats = self.store.stats();
        DatabaseStatus {
            path: self.store.path().display().to_string(),
            schema_version: SCHEMA_VERSION,
            commits: stats.commits,
            writes: stats.writes,
            write_p50_us: stats.write_p50_us,
            write_p99_us: stats.write_p99_us,
            commit_p50_us: stats.commit_p50_us,
            commit_p99_us: stats.commit_p99_us,
        }
    }

    /// Brings back the sessions loaded from the database, by the restore policy.
    pub async fn restore_all(
        &self,
        stored: Vec<StoredSession>,
        sessions: &SessionManager,
    ) -> RestoreSummary {
        let mut summary = RestoreSummary::default();
        let now = Utc::now();
        for StoredSession { row, output } in stored {
            let was_alive = row.state != "stopped";
            if self.config.restore == RestorePolicy::Off {
                self.store.delete_session(row.id);
                summary.dropped += 1;
                continue;
            }
            let config: StoredConfig = match serde_json::from_str(&row.config) {
                Ok(config) => config,
                Err(err) => {
                    tracing::warn!(session = %row.id, name = %row.name, "cannot restore: its stored config is unreadable ({err}); leaving it in the database");
                    summary.dropped += 1;
                    continue;
                }
            };
            let mode = match (was_alive, self.config.restore) {
                (true, RestorePolicy::Respawn) => RestoreMode::Respawn,
                (true, _) => RestoreMode::Stopped {
                    exit: Exit {
                        status: ExitStatus {
                            code: None,
                            signal: None,
                        },
                        at: now,
                    },
                    reason: Some("the daemon restarted (restore = history)".to_owned()),
                },
                (false, _) => RestoreMode::Stopped {
                    exit: Exit {
                        status: ExitStatus {
                            code: row.exit_code,
                            signal: row.exit_signal,
                        },
                        at: row
                            .exited_at
                            .and_then(DateTime::from_timestamp_millis)
                            .unwrap_or(now),
                    },
                    reason: row.reason.clone(),
                },
            };
            let divider = was_alive.then(|| divider(now, &mode));
            let history = match (output, divider) {
                (None, None) => None,
                (output, divider) => {
                    let output = output.unwrap_or(SavedOutput {
                        session_id: row.id,
                        offset: 0,
                        scrollback: Vec::new(),
                        screen: Vec::new(),
                    });
                    self.saved().insert(
                        row.id,
                        Saved {
                            output_offset: output.offset + output.scrollback.len() as u64,
                            last_active: row.last_active,
                        },
                    );
                    Some(History {
                        offset: output.offset,
                        scrollback: output.scrollback,
                        screen: output.screen,
                        divider: divider.unwrap_or_default(),
                    })
                }
            };
            let respawn = matches!(mode, RestoreMode::Respawn);
            let session = sessions
                .restore(RestoreRequest {
                    id: row.id,
                    name: row.name.clone(),
                    session_type: config.session_type,
                    created_at: DateTime::from_timestamp_millis(row.created_at).unwrap_or(now),
                    size: (config.cols, config.rows),
                    resize_policy: config.resize_policy,
                    history,
                    mode,
                })
                .await;
            if respawn && session.is_alive() {
                summary.respawned += 1;
            } else {
                summary.stopped += 1;
            }
            self.record(AuditRecord {
                action: "restore",
                session_id: Some(row.id),
                uid: None,
                pid: None,
                detail: if session.is_alive() {
                    "respawned"
                } else {
                    "stopped"
                }
                .to_owned(),
            });
        }
        summary
    }
}

/// The visible line between a restored session's history and what follows.
fn divider(at: DateTime<Utc>, mode: &RestoreMode) -> Vec<u8> {
    let what = match mode {
        RestoreMode::Respawn => "started again",
        RestoreMode::Stopped { .. } => "not started again (history only)",
    };
    format!(
        "\r\n\x1b[0m\x1b[7m--- pulsar restarted at {}; session {what} ---\x1b[0m\r\n",
        at.format("%Y-%m-%d %H:%M:%S UTC")
    )
    .into_bytes()
}

fn state_name(state: SessionState) -> &'static str {
    match state {
        SessionState::Running => "running",
        SessionState::Detached => "detached",
        SessionState::Stopped => "stopped",
    }
}

/// The row that describes `session` now.
fn row_for(session: &Session) -> SessionRow {
    let info = session.info();
    let config = StoredConfig {
        // Never a secret in the database (the session already holds the redacted type).
        session_type: info.session_type.redacted(),
        cols: info.cols,
        rows: info.rows,
        resize_policy: info.resize_policy,
    };
    SessionRow {
        id: info.id,
        name: info.name,
        session_type: info.session_type.kind().to_owned(),
        config: serde_json::to_string(&config).unwrap_or_else(|_| "{}".to_owned()),
        created_at: info.created_at.timestamp_millis(),
        last_active: info.last_active.timestamp_millis(),
        state: state_name(info.state).to_owned(),
        exit_code: info.exit_code,
        exit_signal: info.exit_signal,
        exited_at: info.exited_at.map(|t| t.timestamp_millis()),
        reason: info.reason,
    }
}

impl SessionObserver for Persistence {
    fn changed(&self, session: &Session) {
        if !self.frozen.load(Ordering::SeqCst) {
            self.store.upsert_session(row_for(session));
        }
    }

    fn removed(&self, id: SessionId) {
        if !self.frozen.load(Ordering::SeqCst) {
            self.saved().remove(&id);
            self.store.delete_session(id);
        }
    }
}

impl AuditLog for Persistence {
    fn record(&self, record: AuditRecord) {
        self.store.audit(AuditEntry {
            time: Utc::now().timestamp_millis(),
            uid: record.uid,
            pid: record.pid,
            action: record.action.to_owned(),
            session_id: record.session_id,
            detail: record.detail,
        });
    }
}
