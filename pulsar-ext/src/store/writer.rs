//! The store's writer thread: owns the connection, applies queued writes in batches.

use std::collections::{HashMap, VecDeque};
use std::sync::mpsc::Receiver;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rusqlite::{Connection, params};
use tokio::sync::oneshot;
use uuid::Uuid;

use super::{AuditEntry, OutputDelta, Shared, StoreStats, WorkspaceRow, WorkspaceSnapshotRow};

/// A queued write, with when it was queued.
pub(super) enum Op {
    /// The row itself waits in [`Shared`], replaced by later upserts until written.
    Upsert(Uuid, Instant),
    Touch(Uuid, i64, Instant),
    SaveOutput(OutputDelta, Instant),
    Audit(AuditEntry, Instant),
    Delete(Uuid, Instant),
    PruneAudit(u64, Instant),
    UpsertWorkspace(WorkspaceRow, Instant),
    DeleteWorkspace(String, Instant),
    InsertSnapshot(WorkspaceSnapshotRow, Instant),
    DeleteSnapshot(String, Instant),
    Flush(oneshot::Sender<()>),
    Close(oneshot::Sender<()>),
}

impl Op {
    fn queued_at(&self) -> Option<Instant> {
        match self {
            Op::Upsert(_, at)
            | Op::Touch(_, _, at)
            | Op::SaveOutput(_, at)
            | Op::Audit(_, at)
            | Op::Delete(_, at)
            | Op::PruneAudit(_, at)
            | Op::UpsertWorkspace(_, at)
            | Op::DeleteWorkspace(_, at)
            | Op::InsertSnapshot(_, at)
            | Op::DeleteSnapshot(_, at) => Some(*at),
            Op::Flush(_) | Op::Close(_) => None,
        }
    }
}

/// Largest batch applied in one transaction.
const MAX_BATCH: usize = 4096;
/// Commit times kept for the percentiles.
const WINDOW: usize = 4096;

/// Recent commit times.
#[derive(Debug, Default)]
pub(super) struct WriterStats {
    commits: u64,
    writes: u64,
    failed: u64,
    /// Recent commit durations.
    commits_recent: VecDeque<Duration>,
    /// Recent write latencies: from being queued to being committed.
    writes_recent: VecDeque<Duration>,
}

fn push_bounded(window: &mut VecDeque<Duration>, value: Duration) {
    if window.len() == WINDOW {
        window.pop_front();
    }
    window.push_back(value);
}

fn percentile(window: &VecDeque<Duration>, q: f64) -> u64 {
    let mut sorted: Vec<Duration> = window.iter().copied().collect();
    sorted.sort();
    sorted
        .get(((sorted.len().saturating_sub(1)) as f64 * q).round() as usize)
        .map_or(0, |d| d.as_micros() as u64)
}

impl WriterStats {
    fn record(&mut self, took: Duration, queued: &[Instant]) {
        let committed = Instant::now();
        self.commits += 1;
        self.writes += queued.len() as u64;
        push_bounded(&mut self.commits_recent, took);
        for at in queued {
            push_bounded(&mut self.writes_recent, committed - *at);
        }
    }

    pub(super) fn summary(&self) -> StoreStats {
        StoreStats {
            commits: self.commits,
            writes: self.writes,
            commit_p50_us: percentile(&self.commits_recent, 0.5),
            commit_p99_us: percentile(&self.commits_recent, 0.99),
            write_p50_us: percentile(&self.writes_recent, 0.5),
            write_p99_us: percentile(&self.writes_recent, 0.99),
            failed_commits: self.failed,
            ..StoreStats::default()
        }
    }
}

/// How often the checkpointer folds the WAL back into the database.
const CHECKPOINT_EVERY: Duration = Duration::from_secs(1);

/// Runs `PASSIVE` WAL checkpoints on a connection of its own until `stop` closes: they never
/// block the writer, which keeps appending to the log meanwhile.
fn checkpointer(path: &std::path::Path, stop: Receiver<()>) {
    let conn = match Connection::open(path) {
        Ok(conn) => conn,
        Err(err) => {
            tracing::warn!(
                "cannot open the database for checkpoints ({err}); the WAL will grow until shutdown"
            );
            return;
        }
    };
    while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) = stop.recv_timeout(CHECKPOINT_EVERY)
    {
        if let Err(err) = conn.execute_batch("PRAGMA wal_checkpoint(PASSIVE)") {
            tracing::debug!("WAL checkpoint failed: {err}");
        }
    }
}

/// Applies writes until `Close` or until every sender is gone.
pub(super) fn run(
    mut conn: Connection,
    path: &std::path::Path,
    rx: Receiver<Op>,
    shared: &Shared,
    stats: Arc<Mutex<WriterStats>>,
) {
    let (stop_checkpoints, stop) = std::sync::mpsc::channel::<()>();
    let checkpoints = {
        let path = path.to_owned();
        std::thread::Builder::new()
            .name("pulsar-wal".to_owned())
            .spawn(move || checkpointer(&path, stop))
            .ok()
    };
    let mut closing = None;
    while closing.is_none() {
        let Ok(first) = rx.recv() else { break };
        shared.dequeued();
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(op) => {
                    shared.dequeued();
                    batch.push(op);
                }
                Err(_) => break,
            }
        }
        let mut acks = Vec::new();
        let writes = coalesce(batch, &mut acks, &mut closing);
        if !writes.is_empty() {
            let queued: Vec<Instant> = writes.iter().filter_map(Op::queued_at).collect();
            let started = Instant::now();
            let result = apply(&mut conn, writes, shared);
            let mut stats = stats.lock().unwrap_or_else(|e| e.into_inner());
            if let Err(err) = result {
                stats.failed += 1;
                tracing::error!("database write failed: {err}");
            }
            stats.record(started.elapsed(), &queued);
        }
        for ack in acks {
            let _ = ack.send(());
        }
    }
    drop(stop_checkpoints);
    if let Some(checkpoints) = checkpoints {
        let _ = checkpoints.join();
    }
    // Fold the WAL back into the main file so the database is self-contained at rest.
    let _ = conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE)");
    drop(conn);
    if let Some(done) = closing {
        let _ = done.send(());
    }
}

/// Drops writes that a later one in the same batch supersedes (touches of the same
/// session), keeping everything else in order. Output saves are deltas: all are kept.
fn coalesce(
    batch: Vec<Op>,
    acks: &mut Vec<oneshot::Sender<()>>,
    closing: &mut Option<oneshot::Sender<()>>,
) -> Vec<Op> {
    let mut last_touch: HashMap<Uuid, usize> = HashMap::new();
    for (i, op) in batch.iter().enumerate() {
        if let Op::Touch(id, ..) = op {
            last_touch.insert(*id, i);
        }
    }
    let mut writes = Vec::with_capacity(batch.len());
    for (i, op) in batch.into_iter().enumerate() {
        match op {
            Op::Touch(id, ..) if last_touch[&id] != i => {}
            Op::Flush(ack) => acks.push(ack),
            Op::Close(ack) => *closing = Some(ack),
            op => writes.push(op),
        }
    }
    writes
}

fn apply(conn: &mut Connection, writes: Vec<Op>, shared: &Shared) -> rusqlite::Result<()> {
    let tx = conn.transaction()?;
    for op in writes {
        match op {
            Op::Upsert(id, _) => {
                // Already written by an earlier marker, or deleted since.
                let Some(row) = shared.take_row(id) else {
                    continue;
                };
                let config = serde_json::to_string(&row.config)
                    .map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?;
                tx.prepare_cached(
                    "INSERT INTO sessions (id, name, session_type, config, created_at, last_active,
                                           state, exit_code, exit_signal, exited_at, reason)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)
                     ON CONFLICT(id) DO UPDATE SET
                        name = excluded.name, session_type = excluded.session_type,
                        config = excluded.config, last_active = excluded.last_active,
                        state = excluded.state, exit_code = excluded.exit_code,
                        exit_signal = excluded.exit_signal, exited_at = excluded.exited_at,
                        reason = excluded.reason",
                )?
                .execute(params![
                    row.id.to_string(),
                    row.name,
                    row.config.kind.name(),
                    config,
                    row.created_at,
                    row.last_active,
                    row.state.as_str(),
                    row.exit_code,
                    row.exit_signal,
                    row.exited_at,
                    row.reason,
                ])?;
            }
            Op::Touch(id, last_active, _) => {
                tx.prepare_cached("UPDATE sessions SET last_active = ?2 WHERE id = ?1")?
                    .execute(params![id.to_string(), last_active])?;
            }
            Op::SaveOutput(delta, _) => save_output(&tx, delta)?,
            Op::Audit(entry, _) => {
                tx.prepare_cached(
                    "INSERT INTO audit_log (time, actor_uid, actor_pid, action, session_id, detail)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                )?
                .execute(params![
                    entry.time,
                    entry.uid,
                    entry.pid,
                    entry.action,
                    entry.session_id.map(|id| id.to_string()),
                    entry.detail,
                ])?;
            }
            Op::Delete(id, _) => {
                tx.prepare_cached("DELETE FROM sessions WHERE id = ?1")?
                    .execute(params![id.to_string()])?;
            }
            Op::PruneAudit(keep, _) => {
                tx.prepare_cached(
                    "DELETE FROM audit_log WHERE id <= (SELECT MAX(id) FROM audit_log) - ?1",
                )?
                .execute(params![i64::try_from(keep).unwrap_or(i64::MAX)])?;
            }
            Op::UpsertWorkspace(row, _) => {
                let tags = row
                    .tags
                    .as_ref()
                    .map(serde_json::to_string)
                    .transpose()
                    .map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?;
                tx.prepare_cached(
                    "INSERT INTO workspaces (id, name, description, icon, layout, created_at,
                                             updated_at, is_template, tags)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
                     ON CONFLICT(id) DO UPDATE SET
                        name = excluded.name, description = excluded.description,
                        icon = excluded.icon, layout = excluded.layout,
                        updated_at = excluded.updated_at, is_template = excluded.is_template,
                        tags = excluded.tags",
                )?
                .execute(params![
                    row.id,
                    row.name,
                    row.description,
                    row.icon,
                    row.layout,
                    row.created_at,
                    row.updated_at,
                    row.is_template,
                    tags,
                ])?;
            }
            Op::DeleteWorkspace(id, _) => {
                tx.prepare_cached("DELETE FROM workspaces WHERE id = ?1")?
                    .execute(params![id])?;
            }
            Op::InsertSnapshot(row, _) => {
                tx.prepare_cached(
                    "INSERT OR REPLACE INTO workspace_snapshots
                        (id, workspace_id, name, layout, created_at)
                     VALUES (?1, ?2, ?3, ?4, ?5)",
                )?
                .execute(params![
                    row.id,
                    row.workspace_id,
                    row.name,
                    row.layout,
                    row.created_at,
                ])?;
            }
            Op::DeleteSnapshot(id, _) => {
                tx.prepare_cached("DELETE FROM workspace_snapshots WHERE id = ?1")?
                    .execute(params![id])?;
            }
            Op::Flush(_) | Op::Close(_) => {}
        }
    }
    tx.commit()
}

/// Appends a delta's chunk, forgets chunks wholly before the tail, and records the screen and
/// where the kept output starts. Only for a session that still has a row.
fn save_output(tx: &rusqlite::Transaction<'_>, delta: OutputDelta) -> rusqlite::Result<()> {
    let id = delta.session_id.to_string();
    let exists: bool = tx
        .prepare_cached("SELECT EXISTS (SELECT 1 FROM sessions WHERE id = ?1)")?
        .query_row(params![id], |r| r.get(0))?;
    if !exists {
        return Ok(());
    }
    let as_i64 = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
    if !delta.data.is_empty() {
        tx.prepare_cached(
            "INSERT OR REPLACE INTO output_chunks (session_id, offset, data) VALUES (?1, ?2, ?3)",
        )?
        .execute(params![id, as_i64(delta.offset), delta.data])?;
    }
    tx.prepare_cached(
        "DELETE FROM output_chunks WHERE session_id = ?1 AND offset + length(data) <= ?2",
    )?
    .execute(params![id, as_i64(delta.keep_from)])?;
    let kept_from = delta.keep_from.min(delta.head);
    match delta.screen {
        Some(screen) => tx
            .prepare_cached(
                "INSERT INTO session_state (session_id, pty_state, scrollback_offset)
                 VALUES (?1, ?2, ?3)
                 ON CONFLICT(session_id) DO UPDATE SET
                    pty_state = excluded.pty_state, scrollback = NULL,
                    scrollback_offset = excluded.scrollback_offset",
            )?
            .execute(params![id, screen, as_i64(kept_from)])?,
        None => tx
            .prepare_cached(
                "INSERT INTO session_state (session_id, scrollback_offset) VALUES (?1, ?2)
                 ON CONFLICT(session_id) DO UPDATE SET
                    scrollback = NULL, scrollback_offset = excluded.scrollback_offset",
            )?
            .execute(params![id, as_i64(kept_from)])?,
    };
    Ok(())
}
