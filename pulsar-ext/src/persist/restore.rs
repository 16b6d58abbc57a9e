//! Restore: the sessions loaded from the database brought back at start, by the restore
//! policy (respawn after the saved output, history only, or off).

use chrono::{DateTime, Utc};

use super::checkpoint::Checkpointer;
use super::rows::{resize_policy, session_limits, session_type};
use crate::audit::{AuditLog, AuditRecord};
use crate::backend::ExitStatus;
use crate::config::RestorePolicy;
use crate::session::{
    Exit, History, RestoreMode, RestoreRequest, ResumedRecording, SessionManager,
};
use crate::store::{RowState, SavedOutput, Store, StoredSession};

/// How many sessions came back, and how.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RestoreSummary {
    /// Running again after their history: taken over from the keeper, or started anew.
    pub respawned: usize,
    /// Loaded stopped, history readable.
    pub stopped: usize,
    /// Dropped (restore = off).
    pub dropped: usize,
}

/// Brings back `stored` into `sessions` by `policy`, telling `checkpointer` what is already
/// saved and `audit` what was done.
pub(crate) async fn restore_all(
    stored: Vec<StoredSession>,
    policy: RestorePolicy,
    sessions: &SessionManager,
    store: &Store,
    checkpointer: &Checkpointer,
    audit: &dyn AuditLog,
) -> RestoreSummary {
    let mut summary = RestoreSummary::default();
    let now = Utc::now();
    for StoredSession { row, output } in stored {
        if policy == RestorePolicy::Off {
            store.delete_session(row.id);
            summary.dropped += 1;
            continue;
        }
        let was_alive = row.state != RowState::Stopped;
        let mode = match (was_alive, policy) {
            (true, RestorePolicy::Respawn) => RestoreMode::Respawn,
            (true, _) => RestoreMode::Stopped {
                exit: Exit {
                    status: ExitStatus::UNKNOWN,
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
        let ssh = matches!(row.config.kind, crate::store::StoredKind::Ssh { .. });
        let divider = was_alive.then(|| divider(now, &mode, ssh));
        let history = match (output, divider) {
            (None, None) => None,
            (output, divider) => {
                let output = output.unwrap_or(SavedOutput {
                    session_id: row.id,
                    offset: 0,
                    scrollback: Vec::new(),
                    screen: Vec::new(),
                });
                checkpointer.already_saved(
                    row.id,
                    output.offset + output.scrollback.len() as u64,
                    row.last_active,
                );
                Some(History {
                    offset: output.offset,
                    scrollback: output.scrollback,
                    screen: output.screen,
                    divider: divider.unwrap_or_default(),
                })
            }
        };
        let session = sessions
            .restore(RestoreRequest {
                id: row.id,
                name: row.name.clone(),
                session_type: session_type(&row.config.kind),
                created_at: DateTime::from_timestamp_millis(row.created_at).unwrap_or(now),
                size: (row.config.cols, row.config.rows),
                resize_policy: resize_policy(row.config.resize_policy),
                limits: session_limits(row.config.limits),
                history,
                mode,
                was_alive,
                recording: row.config.recording.clone().map(|r| ResumedRecording {
                    path: r.path,
                    input: r.input,
                    started_ms: r.started_ms,
                }),
            })
            .await;
        if session.is_alive() {
            summary.respawned += 1;
        } else {
            summary.stopped += 1;
        }
        audit.record(AuditRecord {
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

/// The visible line between a restored session's history and what follows.
fn divider(at: DateTime<Utc>, mode: &RestoreMode, ssh: bool) -> Vec<u8> {
    let what = match mode {
        // Said where the user looks: an SSH connection cannot move to another process.
        RestoreMode::Respawn if ssh => "reconnected (an SSH connection cannot outlive the daemon)",
        RestoreMode::Respawn => "started again",
        RestoreMode::Stopped { .. } => "not started again (history only)",
    };
    format!(
        "\r\n\x1b[0m\x1b[7m--- pulsar restarted at {}; session {what} ---\x1b[0m\r\n",
        at.format("%Y-%m-%d %H:%M:%S UTC")
    )
    .into_bytes()
}
