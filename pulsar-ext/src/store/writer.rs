//! The store's writer thread: owns the connection, applies queued writes in batches.

use std::collections::{HashMap, VecDeque};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rusqlite::{Connection, params};
use tokio::sync::oneshot;
use uuid::Uuid;

use super::{
    AuditEntry, ForwardRow, OutputDelta, SessionRow, Shared, StoreStats, WorkspaceRow,
    WorkspaceSnapshotRow,
};

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
    UpsertForward(ForwardRow, Instant),
    DeleteForward(uuid::Uuid, Instant),
    DeleteWorkspace(String, Instant),
    InsertSnapshot(WorkspaceSnapshotRow, Instant),
    DeleteSnapshot(String, Instant),
    UpsertTransfer(super::TransferRow, Instant),
    DeleteTransfer(String, Instant),
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
            | Op::DeleteSnapshot(_, at)
            | Op::UpsertForward(_, at)
            | Op::DeleteForward(_, at) => Some(*at),
            Op::UpsertTransfer(_, at) | Op::DeleteTransfer(_, at) => Some(*at),
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
    /// Why the latest transaction failed, until one commits again.
    last_error: Option<String>,
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
            last_error: self.last_error.clone(),
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
    // It only moves pages from the log to the file: a small page cache (the default of
    // 2 MiB filled up as the database grew, ~0.5 KiB per idle session at 300 sessions).
    if let Err(err) = conn.execute_batch("PRAGMA cache_size = -64") {
        tracing::debug!("cannot shrink the checkpointer's page cache: {err}");
    }
    while let Err(RecvTimeoutError::Timeout) = stop.recv_timeout(CHECKPOINT_EVERY) {
        if let Err(err) = conn.execute_batch("PRAGMA wal_checkpoint(PASSIVE)") {
            tracing::debug!("WAL checkpoint failed: {err}");
        }
    }
}

/// First pause before a failed transaction is tried again.
const RETRY_FIRST: Duration = Duration::from_millis(50);
/// Longest pause between tries: how soon the store catches up once space returns.
const RETRY_MAX: Duration = Duration::from_secs(1);
/// Tries of what is still unwritten when the store closes, before it is given up.
const CLOSE_TRIES: u32 = 3;

/// Writes that failed and are tried again, in their order, until they commit.
///
/// A failed transaction is rolled back, so its writes are kept here instead of being dropped
/// (and the rows its upsert markers took from [`Shared`] are put back). They stay counted in
/// [`Shared`]'s queue until committed, so a long outage fills the queue and the store sheds
/// and defers as it does under load: memory stays bounded by the queue's cap.
#[derive(Default)]
struct Retry {
    writes: Vec<Op>,
    /// Where each session's latest output save and touch wait in `writes`: a newer one is
    /// merged into it, so a long outage keeps about one tail of output per session in
    /// memory, not every checkpoint's.
    saves: HashMap<Uuid, usize>,
    touches: HashMap<Uuid, usize>,
    /// Consecutive failed tries.
    failures: u32,
    /// When the next try is due.
    due: Option<Instant>,
}

impl Retry {
    /// Adds a write to the unwritten ones; while failing, merged into an earlier one of the
    /// same kind and session where it can be.
    fn push(&mut self, op: Op, shared: &Shared) {
        if self.failures == 0 {
            // Not failing: the batch is tried at once, as it came.
            self.writes.push(op);
            return;
        }
        match op {
            Op::SaveOutput(delta, at) => match self.saves.get(&delta.session_id) {
                Some(&i) => {
                    if let Op::SaveOutput(earlier, _) = &mut self.writes[i] {
                        merge_output(earlier, delta);
                    }
                    shared.dequeued();
                }
                None => {
                    self.saves.insert(delta.session_id, self.writes.len());
                    self.writes.push(Op::SaveOutput(delta, at));
                }
            },
            Op::Touch(id, last_active, at) => match self.touches.get(&id) {
                Some(&i) => {
                    self.writes[i] = Op::Touch(id, last_active, at);
                    shared.dequeued();
                }
                None => {
                    self.touches.insert(id, self.writes.len());
                    self.writes.push(Op::Touch(id, last_active, at));
                }
            },
            op => {
                if let Op::Delete(id, _) = &op {
                    // Nothing after a delete may be merged into what comes before it.
                    self.saves.remove(id);
                    self.touches.remove(id);
                }
                self.writes.push(op);
            }
        }
    }

    /// How long to wait for more ops before the next try (`None`: nothing to retry).
    fn wait(&self) -> Option<Duration> {
        self.due
            .map(|due| due.saturating_duration_since(Instant::now()))
    }

    fn failed(&mut self) {
        self.failures += 1;
        let pause = RETRY_FIRST
            .saturating_mul(1 << self.failures.min(10))
            .min(RETRY_MAX);
        self.due = Some(Instant::now() + pause);
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
    let mut retry = Retry::default();
    let mut gone = false;
    while closing.is_none() && !gone {
        let mut batch = Vec::new();
        match retry.wait() {
            None => match rx.recv() {
                Ok(op) => batch.push(op),
                Err(_) => gone = true,
            },
            Some(wait) => match rx.recv_timeout(wait) {
                Ok(op) => batch.push(op),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => gone = true,
            },
        }
        while !batch.is_empty() && batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(op) => batch.push(op),
                Err(_) => break,
            }
        }
        let mut acks = Vec::new();
        let writes = coalesce(batch, &mut acks, &mut closing, shared);
        for op in writes {
            retry.push(op, shared);
        }
        // While failing, try again when the pause is over, or at once for someone waiting.
        let due = retry.wait().is_none_or(|w| w.is_zero());
        if !retry.writes.is_empty() && (due || !acks.is_empty() || closing.is_some() || gone) {
            attempt(&mut conn, &mut retry, shared, &stats);
        }
        for ack in acks {
            let _ = ack.send(());
        }
    }
    // Space may have come back just now: a few last tries before what is left is given up.
    for _ in 1..CLOSE_TRIES {
        if retry.writes.is_empty() {
            break;
        }
        std::thread::sleep(retry.wait().unwrap_or_default().min(RETRY_MAX));
        attempt(&mut conn, &mut retry, shared, &stats);
    }
    if !retry.writes.is_empty() {
        tracing::error!(
            writes = retry.writes.len(),
            "the store closes with writes it could not commit; they are lost"
        );
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

/// One transaction of everything unwritten: on success they leave the queue, on failure
/// they stay for the next try.
fn attempt(conn: &mut Connection, retry: &mut Retry, shared: &Shared, stats: &Mutex<WriterStats>) {
    let queued: Vec<Instant> = retry.writes.iter().filter_map(Op::queued_at).collect();
    let started = Instant::now();
    let mut taken = Vec::new();
    let result = apply(conn, &retry.writes, shared, &mut taken);
    let mut stats = stats.lock().unwrap_or_else(|e| e.into_inner());
    match result {
        Ok(()) => {
            for _ in 0..retry.writes.len() {
                shared.dequeued();
            }
            if retry.failures > 0 {
                tracing::warn!(
                    failed_tries = retry.failures,
                    writes = retry.writes.len(),
                    "database writes succeed again; the store has caught up"
                );
            }
            stats.record(started.elapsed(), &queued);
            stats.last_error = None;
            *retry = Retry::default();
        }
        Err(err) => {
            shared.restore_rows(taken);
            stats.failed += 1;
            stats.last_error = Some(err.to_string());
            // Every failure while it lasts would flood the log: the first, then every 30th.
            if retry.failures.is_multiple_of(30) {
                tracing::error!(
                    writes = retry.writes.len(),
                    failed_tries = retry.failures + 1,
                    "database write failed: {err}; keeping the writes and trying again"
                );
            }
            retry.failed();
        }
    }
}

/// Folds `later`, a session's next output save, into `earlier`, as if both had been applied:
/// contiguous bytes are joined (a gap keeps only what follows it, as loading does), and
/// what `later` lets go of is cut.
fn merge_output(earlier: &mut OutputDelta, later: OutputDelta) {
    let end = earlier.offset + earlier.data.len() as u64;
    if (earlier.offset..=end).contains(&later.offset) {
        earlier
            .data
            .truncate((later.offset - earlier.offset) as usize);
        earlier.data.extend_from_slice(&later.data);
    } else {
        earlier.offset = later.offset;
        earlier.data = later.data;
    }
    if later.keep_from > earlier.offset {
        let cut = (later.keep_from - earlier.offset).min(earlier.data.len() as u64);
        earlier.data.drain(..cut as usize);
        earlier.offset += cut;
    }
    earlier.keep_from = later.keep_from;
    earlier.head = later.head;
    earlier.time = later.time;
    if later.screen.is_some() {
        earlier.screen = later.screen;
    }
}

/// Drops writes that a later one in the same batch supersedes (touches of the same
/// session), keeping everything else in order. Output saves are deltas: all are kept.
fn coalesce(
    batch: Vec<Op>,
    acks: &mut Vec<oneshot::Sender<()>>,
    closing: &mut Option<oneshot::Sender<()>>,
    shared: &Shared,
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
            Op::Touch(id, ..) if last_touch[&id] != i => shared.dequeued(),
            Op::Flush(ack) => {
                shared.dequeued();
                acks.push(ack);
            }
            Op::Close(ack) => {
                shared.dequeued();
                *closing = Some(ack);
            }
            op => writes.push(op),
        }
    }
    writes
}

/// Applies `writes` in one transaction. The rows upsert markers take from `shared` are
/// pushed to `taken`, to be put back if the transaction fails.
fn apply(
    conn: &mut Connection,
    writes: &[Op],
    shared: &Shared,
    taken: &mut Vec<SessionRow>,
) -> rusqlite::Result<()> {
    let tx = conn.transaction()?;
    for op in writes {
        match op {
            Op::Upsert(id, _) => {
                // Already written by an earlier marker, or deleted since.
                let Some(row) = shared.take_row(*id) else {
                    continue;
                };
                taken.push(row);
                let row = taken.last().expect("just pushed");
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
                .execute(params![i64::try_from(*keep).unwrap_or(i64::MAX)])?;
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
            Op::UpsertForward(row, _) => {
                // A forward of a session already deleted is dropped with it.
                tx.prepare_cached(
                    "INSERT OR REPLACE INTO forwards
                        (id, session_id, kind, listen, target, allow_non_loopback, created_at)
                     SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7
                     WHERE EXISTS (SELECT 1 FROM sessions WHERE id = ?2)",
                )?
                .execute(params![
                    row.id.to_string(),
                    row.session_id.to_string(),
                    row.kind,
                    row.listen,
                    row.target,
                    row.allow_non_loopback,
                    row.created_at,
                ])?;
            }
            Op::DeleteForward(id, _) => {
                tx.prepare_cached("DELETE FROM forwards WHERE id = ?1")?
                    .execute(params![id.to_string()])?;
            }
            Op::UpsertTransfer(row, _) => super::transfers::upsert(&tx, row)?,
            Op::DeleteTransfer(id, _) => super::transfers::delete(&tx, id)?,
            Op::Flush(_) | Op::Close(_) => {}
        }
    }
    tx.commit()
}

/// Appends a delta's chunk, forgets chunks wholly before the tail, and records the screen and
/// where the kept output starts. Only for a session that still has a row.
fn save_output(tx: &rusqlite::Transaction<'_>, delta: &OutputDelta) -> rusqlite::Result<()> {
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
            "INSERT OR REPLACE INTO output_chunks (session_id, offset, data, time)
             VALUES (?1, ?2, ?3, ?4)",
        )?
        .execute(params![id, as_i64(delta.offset), delta.data, delta.time])?;
    }
    tx.prepare_cached(
        "DELETE FROM output_chunks WHERE session_id = ?1 AND offset + length(data) <= ?2",
    )?
    .execute(params![id, as_i64(delta.keep_from)])?;
    let kept_from = delta.keep_from.min(delta.head);
    match &delta.screen {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn delta(offset: u64, data: &[u8], keep_from: u64, screen: Option<&[u8]>) -> OutputDelta {
        OutputDelta {
            session_id: Uuid::nil(),
            time: 0,
            offset,
            data: data.to_vec(),
            keep_from,
            head: offset + data.len() as u64,
            screen: screen.map(<[u8]>::to_vec),
        }
    }

    #[test]
    fn contiguous_saves_merge_into_one_and_keep_the_latest_screen() {
        let mut earlier = delta(10, b"abc", 0, Some(b"s1"));
        merge_output(&mut earlier, delta(13, b"de", 0, None));
        assert_eq!(
            earlier,
            OutputDelta {
                head: 15,
                ..delta(10, b"abcde", 0, Some(b"s1"))
            }
        );
        merge_output(&mut earlier, delta(15, b"f", 0, Some(b"s2")));
        assert_eq!(earlier, delta(10, b"abcdef", 0, Some(b"s2")));
    }

    #[test]
    fn a_merged_save_lets_go_of_what_the_later_one_does() {
        let mut earlier = delta(0, b"0123", 0, None);
        merge_output(&mut earlier, delta(4, b"4567", 6, None));
        assert_eq!(earlier, delta(6, b"67", 6, None));
    }

    #[test]
    fn a_save_after_a_gap_replaces_the_earlier_bytes() {
        let mut earlier = delta(0, b"0123", 0, None);
        merge_output(&mut earlier, delta(9, b"9", 0, None));
        assert_eq!(earlier, delta(9, b"9", 0, None));
    }
}
