//! The SQLite store: the only code that knows SQL.
//!
//! One thread owns the connection and applies writes in batches from a channel, so no async
//! task ever waits on the disk; callers that must know a write is durable await its
//! acknowledgement instead. WAL with `synchronous = NORMAL`: a crashed daemon (even `kill -9`)
//! loses nothing that was committed. The database file is kept 0600.

mod rows;
mod schema;
mod transfers;
mod writer;

use std::collections::HashMap;
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Instant;

use rusqlite::{Connection, OptionalExtension, params};
use tokio::sync::oneshot;
use uuid::Uuid;

pub use rows::{
    ForwardRow, RowState, SessionConfig, SessionRow, StoredKind, StoredLimits, StoredRecording,
    StoredResizePolicy, StoredSshAuth, WorkspaceRow, WorkspaceSnapshotRow,
};
pub use schema::CURRENT as SCHEMA_VERSION;
pub use transfers::TransferRow;
use writer::{Op, WriterStats};

/// Most writes queued for the writer thread. Past it, what can be shed is (an audit entry, a
/// touch) and what can wait does (an output save: the next checkpoint sends it again from
/// the same offset, the bytes still being in the session's ring); nothing ever blocks the
/// caller. Row upserts are coalesced per session, so they are bounded by the sessions.
const QUEUE_CAP: usize = 8192;

/// A session's saved output, as loaded: its tail and its screen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SavedOutput {
    /// The session id.
    pub session_id: Uuid,
    /// Absolute offset of `scrollback[0]`.
    pub offset: u64,
    /// The tail of the session's output.
    pub scrollback: Vec<u8>,
    /// The bytes that redraw its screen as of `offset + scrollback.len()`.
    pub screen: Vec<u8>,
}

/// New output to save: only what arrived since the last save, plus what to forget.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputDelta {
    /// The session id.
    pub session_id: Uuid,
    /// Absolute offset of `data[0]`.
    pub offset: u64,
    /// Bytes since the last save (possibly empty).
    pub data: Vec<u8>,
    /// Saved bytes before this offset may be dropped (the tail cap).
    pub keep_from: u64,
    /// Offset one past the last byte of output (`offset + data.len()`, or the head when
    /// nothing is kept at all).
    pub head: u64,
    /// The bytes that redraw the screen as of `head`, when it changed.
    pub screen: Option<Vec<u8>>,
    /// When it was saved, Unix milliseconds: every byte of `data` had arrived by then
    /// (what `export_asciicast` times the output by).
    pub time: i64,
}

/// One saved output chunk (`output_chunks`), with when it was saved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimedChunk {
    /// Absolute offset of `data[0]`.
    pub offset: u64,
    /// When it was saved, Unix milliseconds; `None` for chunks saved before version 5.
    pub time: Option<i64>,
    /// The bytes.
    pub data: Vec<u8>,
}

/// One audit entry (`audit_log`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEntry {
    /// Unix milliseconds.
    pub time: i64,
    /// Who, when known.
    pub uid: Option<u32>,
    /// Which process, when known.
    pub pid: Option<i32>,
    /// `create`, `attach`, `detach`, `input`, `terminate`, `restore`, `refused_connection`, ...
    pub action: String,
    /// The session concerned.
    pub session_id: Option<Uuid>,
    /// Anything else worth knowing (never a secret, never input bytes).
    pub detail: String,
}

/// A session as loaded at start.
#[derive(Debug, Clone)]
pub struct StoredSession {
    /// Its row.
    pub row: SessionRow,
    /// Its saved output, if any was saved.
    pub output: Option<SavedOutput>,
}

/// Everything loaded at start.
#[derive(Debug, Clone, Default)]
pub struct Loaded {
    /// Every session, oldest first.
    pub sessions: Vec<StoredSession>,
    /// Every workspace.
    pub workspaces: Vec<WorkspaceRow>,
    /// Every workspace snapshot, oldest first.
    pub snapshots: Vec<WorkspaceSnapshotRow>,
    /// Every port forward, oldest first.
    pub forwards: Vec<ForwardRow>,
    /// Every file transfer, oldest change first.
    pub transfers: Vec<TransferRow>,
}

/// Why the store could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The file is not a usable SQLite database (corrupt, or not SQLite at all).
    #[error(
        "database {path} is unreadable or corrupt ({reason}). Pulsar will not start over silently \
         and lose its history: move the file aside (e.g. `mv {path} {path}.broken`) to start with \
         an empty database, or restore it from a backup"
    )]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What SQLite said.
        reason: String,
    },
    /// The file or its directory could not be created or opened.
    #[error("cannot open database {path}: {reason}")]
    Open {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// Written by a newer Pulsar.
    #[error("database {path}: {reason}; upgrade Pulsar or use another --database")]
    TooNew {
        /// The file.
        path: PathBuf,
        /// The versions.
        reason: String,
    },
}

/// Counters and write latencies, for `get_status` and the benchmarks.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StoreStats {
    /// Transactions committed.
    pub commits: u64,
    /// Writes applied.
    pub writes: u64,
    /// Median commit time over the recent window, microseconds.
    pub commit_p50_us: u64,
    /// 99th-percentile commit time over the recent window, microseconds.
    pub commit_p99_us: u64,
    /// Median time from a write being queued to its commit, microseconds.
    pub write_p50_us: u64,
    /// 99th percentile of the same.
    pub write_p99_us: u64,
    /// Writes queued now.
    pub queued: usize,
    /// Audit entries and activity touches dropped because the queue was full.
    pub shed: u64,
    /// Output saves put off to a later checkpoint because the queue was full.
    pub deferred: u64,
    /// Transactions that failed (disk full, read-only file, I/O error); failed writes are
    /// kept and tried again.
    pub failed_commits: u64,
    /// Why the latest transaction failed, while the store is failing (`None` once a
    /// transaction commits again).
    pub last_error: Option<String>,
}

/// What producers and the writer thread share besides the channel.
#[derive(Debug, Default)]
pub(crate) struct Shared {
    /// Writes not yet committed: in the channel, or failed and waiting to be tried again.
    queued: AtomicUsize,
    /// The newest row of each session with an upsert queued: later upserts replace it
    /// here instead of queueing again.
    rows: Mutex<HashMap<Uuid, SessionRow>>,
    shed: AtomicU64,
    deferred: AtomicU64,
}

impl Shared {
    /// Takes the pending row of `id`, if it is still pending.
    pub(crate) fn take_row(&self, id: Uuid) -> Option<SessionRow> {
        self.rows
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&id)
    }

    /// Puts back the rows a failed transaction took, unless a newer row of the same session
    /// has been queued since (it supersedes them), so the next try writes them again.
    pub(crate) fn restore_rows(&self, taken: Vec<SessionRow>) {
        let mut rows = self.rows.lock().unwrap_or_else(|e| e.into_inner());
        for row in taken {
            rows.entry(row.id).or_insert(row);
        }
    }

    /// A queued op left the queue: written, superseded, or answered.
    pub(crate) fn dequeued(&self) {
        self.queued.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The writer connection's page cache, as SQLite's `cache_size` (negative: KiB). What it
/// holds is the sessions' rows that checkpoints update and the right edges of the output
/// tables: it fills as sessions are made (~175 KB at 500 idle sessions, 0.35 KiB a
/// session, with 256 KiB), and a miss is a read from the kernel's page cache. 64 KiB made
/// writes under 100 streaming sessions ~20 % slower (p50); 128 KiB did not measurably
/// (docs/benchmarks.md).
const WRITER_CACHE_KIB: i64 = -128;

/// What the WAL file is cut back to once a checkpoint has folded it in and it starts over
/// (SQLite's `journal_size_limit`): a burst of writes no longer leaves the file at its
/// largest (12.7 MB after 500 sessions made in ten seconds, before).
const WAL_SIZE_LIMIT: i64 = if cfg!(test) {
    64 * 1024
} else {
    4 * 1024 * 1024
};

/// A handle to the store's writer. Cheap to clone.
#[derive(Clone)]
pub struct Store {
    tx: mpsc::Sender<Op>,
    shared: Arc<Shared>,
    stats: Arc<Mutex<WriterStats>>,
    thread: Arc<Mutex<Option<JoinHandle<()>>>>,
    path: PathBuf,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("path", &self.path).finish()
    }
}

impl Store {
    /// Opens (creating if needed) and migrates the database at `path`, loads every session
    /// and workspace, and starts the writer thread. Blocking: call from a blocking context.
    pub fn open(path: &Path) -> Result<(Self, Loaded), StoreError> {
        let open_err = |reason: String| StoreError::Open {
            path: path.to_owned(),
            reason,
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty())
            && !dir.exists()
        {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(|e| open_err(e.to_string()))?;
        }
        // Create it private before SQLite touches it (SQLite gives its -wal and -shm files the
        // database's mode), and tighten an existing file that is not.
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(path)
            .map_err(|e| open_err(e.to_string()))?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
            .map_err(|e| open_err(e.to_string()))?;
        let mut conn = Connection::open(path).map_err(|e| open_err(e.to_string()))?;
        let corrupt = |e: rusqlite::Error| StoreError::Corrupt {
            path: path.to_owned(),
            reason: e.to_string(),
        };
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(corrupt)?;
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(corrupt)?;
        conn.pragma_update(None, "foreign_keys", "ON")
            .map_err(corrupt)?;
        // The writer appends chunks and rarely reads a page back: a small page cache (the
        // default 2 MiB filled with pages of output just written, 20 KiB a session at 100
        // sessions that each wrote 200 KB).
        conn.pragma_update(None, "cache_size", WRITER_CACHE_KIB)
            .map_err(corrupt)?;
        // WAL checkpoints (copying the log into the database, with an fsync) run on a
        // thread of their own; done inline they stalled every write queued behind them.
        conn.pragma_update(None, "wal_autocheckpoint", 0)
            .map_err(corrupt)?;
        conn.pragma_update(None, "journal_size_limit", WAL_SIZE_LIMIT)
            .map_err(corrupt)?;
        let integrity: String = conn
            .query_row("PRAGMA quick_check", [], |row| row.get(0))
            .map_err(corrupt)?;
        if integrity != "ok" {
            return Err(StoreError::Corrupt {
                path: path.to_owned(),
                reason: integrity,
            });
        }
        let found = schema::migrate(&mut conn).map_err(|e| match e {
            schema::MigrateError::TooNew { .. } => StoreError::TooNew {
                path: path.to_owned(),
                reason: e.to_string(),
            },
            schema::MigrateError::Sqlite(e) => corrupt(e),
        })?;
        if found != schema::CURRENT {
            tracing::info!(
                database = %path.display(),
                from = found,
                to = schema::CURRENT,
                "migrated the database"
            );
        }
        // The WAL and shared-memory files carry the same data: keep them private too.
        for suffix in ["-wal", "-shm"] {
            let mut side = path.as_os_str().to_owned();
            side.push(suffix);
            let _ = std::fs::set_permissions(&side, std::fs::Permissions::from_mode(0o600));
        }
        let loaded = Loaded {
            sessions: load(&conn).map_err(corrupt)?,
            workspaces: load_workspaces(&conn).map_err(corrupt)?,
            snapshots: load_snapshots(&conn).map_err(corrupt)?,
            forwards: load_forwards(&conn).map_err(corrupt)?,
            transfers: transfers::load(&conn).map_err(corrupt)?,
        };

        let (tx, rx) = mpsc::channel();
        let stats = Arc::new(Mutex::new(WriterStats::default()));
        let shared = Arc::new(Shared::default());
        let thread = {
            let stats = Arc::clone(&stats);
            let shared = Arc::clone(&shared);
            std::thread::Builder::new()
                .name("pulsar-store".to_owned())
                .spawn({
                    let path = path.to_owned();
                    move || writer::run(conn, &path, rx, &shared, stats)
                })
                .map_err(|e| open_err(e.to_string()))?
        };
        Ok((
            Self {
                tx,
                shared,
                stats,
                thread: Arc::new(Mutex::new(Some(thread))),
                path: path.to_owned(),
            },
            loaded,
        ))
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn send(&self, op: Op) {
        self.shared.queued.fetch_add(1, Ordering::Relaxed);
        // After `close` the writer is gone; late writes are dropped (the daemon is stopping).
        if self.tx.send(op).is_err() {
            self.shared.dequeued();
        }
    }

    /// True when the queue has room for a write that may be shed or put off.
    fn has_room(&self) -> bool {
        self.shared.queued.load(Ordering::Relaxed) < QUEUE_CAP
    }

    /// Inserts or replaces a session's row. Coalesced: while an upsert of the same session
    /// is queued, this one only replaces the row it will write.
    pub fn upsert_session(&self, row: SessionRow) {
        let id = row.id;
        let queued = self
            .shared
            .rows
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id, row)
            .is_some();
        if !queued {
            self.send(Op::Upsert(id, Instant::now()));
        }
    }

    /// Updates a session's `last_active`. False if the queue was full and it was dropped.
    pub fn touch(&self, id: Uuid, last_active: i64) -> bool {
        if !self.has_room() {
            self.shared.shed.fetch_add(1, Ordering::Relaxed);
            return false;
        }
        self.send(Op::Touch(id, last_active, Instant::now()));
        true
    }

    /// Saves a session's new output (appended as a chunk) and forgets what fell out of the
    /// tail. False if the queue was full: send it again later, from the same offset.
    pub fn save_output(&self, delta: OutputDelta) -> bool {
        if !self.has_room() {
            self.shared.deferred.fetch_add(1, Ordering::Relaxed);
            return false;
        }
        self.send(Op::SaveOutput(delta, Instant::now()));
        true
    }

    /// Appends an audit entry, unless the queue is full (then it is counted as shed).
    pub fn audit(&self, entry: AuditEntry) {
        if !self.has_room() {
            self.shared.shed.fetch_add(1, Ordering::Relaxed);
            return;
        }
        self.send(Op::Audit(entry, Instant::now()));
    }

    /// Deletes a session (and, by cascade, its saved output).
    pub fn delete_session(&self, id: Uuid) {
        self.shared
            .rows
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&id);
        self.send(Op::Delete(id, Instant::now()));
    }

    /// Inserts or replaces a workspace. Never shed: it is what a user asked for.
    pub fn upsert_workspace(&self, row: WorkspaceRow) {
        self.send(Op::UpsertWorkspace(row, Instant::now()));
    }

    /// Deletes a workspace and, by cascade, its snapshots.
    pub fn delete_workspace(&self, id: &str) {
        self.send(Op::DeleteWorkspace(id.to_owned(), Instant::now()));
    }

    /// Saves a workspace snapshot.
    pub fn insert_snapshot(&self, row: WorkspaceSnapshotRow) {
        self.send(Op::InsertSnapshot(row, Instant::now()));
    }

    /// Inserts or replaces a file transfer's row. Never shed: a transfer resumes from it.
    pub fn upsert_transfer(&self, row: TransferRow) {
        self.send(Op::UpsertTransfer(row, Instant::now()));
    }

    /// Deletes a file transfer's row (it has ended).
    pub fn delete_transfer(&self, id: &str) {
        self.send(Op::DeleteTransfer(id.to_owned(), Instant::now()));
    }

    /// Deletes one workspace snapshot.
    pub fn delete_snapshot(&self, id: &str) {
        self.send(Op::DeleteSnapshot(id.to_owned(), Instant::now()));
    }

    /// Saves a port forward (only while its session has a row). Never shed: it is what a
    /// user asked for.
    pub fn upsert_forward(&self, row: ForwardRow) {
        self.send(Op::UpsertForward(row, Instant::now()));
    }

    /// Deletes a port forward.
    pub fn delete_forward(&self, id: Uuid) {
        self.send(Op::DeleteForward(id, Instant::now()));
    }

    /// Keeps only the newest `keep` audit entries.
    pub fn prune_audit(&self, keep: u64) {
        if self.has_room() {
            self.send(Op::PruneAudit(keep, Instant::now()));
        }
    }

    /// Resolves once everything sent before it is committed.
    pub async fn flush(&self) {
        let (done, committed) = oneshot::channel();
        self.send(Op::Flush(done));
        let _ = committed.await;
    }

    /// Flushes, stops the writer thread and waits for it (blocking; call from a blocking
    /// context).
    pub fn close(&self) {
        let (done, committed) = oneshot::channel();
        self.send(Op::Close(done));
        let _ = committed.blocking_recv();
        if let Some(thread) = self.thread.lock().unwrap_or_else(|e| e.into_inner()).take() {
            let _ = thread.join();
        }
    }

    /// Runs `query` on a read-only connection of its own (the writer's transactions are
    /// not held up), opened for it. Blocking: call from a blocking context.
    fn read<T>(
        &self,
        query: impl FnOnce(&Connection) -> rusqlite::Result<T>,
    ) -> Result<T, StoreError> {
        let flags =
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX;
        Connection::open_with_flags(&self.path, flags)
            .and_then(|conn| query(&conn))
            .map_err(|e| StoreError::Open {
                path: self.path.clone(),
                reason: e.to_string(),
            })
    }

    /// The saved output of session `id`, in offset order, read on a connection of its own.
    /// Blocking: call from a blocking context.
    pub fn saved_output(&self, id: Uuid) -> Result<Vec<TimedChunk>, StoreError> {
        self.read(|conn| {
            conn.prepare(
                "SELECT offset, time, data FROM output_chunks WHERE session_id = ?1
                 ORDER BY offset",
            )?
            .query_map(params![id.to_string()], |r| {
                Ok(TimedChunk {
                    offset: u64::try_from(r.get::<_, i64>(0)?).unwrap_or(0),
                    time: r.get(1)?,
                    data: r.get(2)?,
                })
            })?
            .collect()
        })
    }

    /// The longest run of session `id`'s saved output that ends exactly at offset `to` and
    /// starts no earlier than `from`, unbroken (a gap or an overlap between chunks ends it),
    /// as its first offset and its bytes; empty when nothing saved ends at `to`. Read on a
    /// connection of its own; blocking: call from a blocking context.
    pub fn saved_run(&self, id: Uuid, from: u64, to: u64) -> Result<(u64, Vec<u8>), StoreError> {
        let as_i64 = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        // Newest first: each piece must end where the one after it begins.
        let pieces: Vec<(u64, Vec<u8>)> = self.read(|conn| {
            conn.prepare(
                "SELECT offset, data FROM output_chunks
                 WHERE session_id = ?1 AND offset < ?3 AND offset + length(data) > ?2
                 ORDER BY offset DESC",
            )?
            .query_map(params![id.to_string(), as_i64(from), as_i64(to)], |r| {
                Ok((r.get::<_, i64>(0)?.max(0) as u64, r.get::<_, Vec<u8>>(1)?))
            })?
            .collect()
        })?;
        let mut run: Vec<Vec<u8>> = Vec::new();
        let mut begins = to;
        for (offset, mut data) in pieces {
            let end = offset + data.len() as u64;
            let fits = if run.is_empty() {
                end >= to
            } else {
                end == begins
            };
            if !fits {
                break;
            }
            data.truncate((to.min(end) - offset) as usize);
            data.drain(..(from.saturating_sub(offset) as usize).min(data.len()));
            begins = offset.max(from);
            run.push(data);
            if begins == from {
                break;
            }
        }
        Ok((begins, run.into_iter().rev().flatten().collect()))
    }

    /// The saved port forwards of session `id`, oldest first, read on a connection of its
    /// own. Blocking: call from a blocking context.
    pub fn saved_forwards(&self, id: Uuid) -> Result<Vec<ForwardRow>, StoreError> {
        let mut rows = self.read(load_forwards)?;
        rows.retain(|row| row.session_id == id);
        Ok(rows)
    }

    /// Counters and latencies so far.
    pub fn stats(&self) -> StoreStats {
        StoreStats {
            queued: self.shared.queued.load(Ordering::Relaxed),
            shed: self.shared.shed.load(Ordering::Relaxed),
            deferred: self.shared.deferred.load(Ordering::Relaxed),
            ..self
                .stats
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .summary()
        }
    }
}

/// Joins saved chunks into one contiguous tail. After a gap (a lost write), only what follows
/// the last gap is kept, so offsets stay true.
fn join_chunks(chunks: Vec<(u64, Vec<u8>)>) -> (u64, Vec<u8>) {
    let mut start = chunks[0].0;
    let mut tail = Vec::new();
    for (offset, data) in chunks {
        if offset != start + tail.len() as u64 {
            start = offset;
            tail.clear();
        }
        tail.extend_from_slice(&data);
    }
    (start, tail)
}

fn load_workspaces(conn: &Connection) -> rusqlite::Result<Vec<WorkspaceRow>> {
    let mut rows = conn.prepare(
        "SELECT id, name, description, icon, layout, created_at, updated_at, is_template, tags
         FROM workspaces ORDER BY created_at, id",
    )?;
    let found = rows.query_map([], |r| {
        let tags: Option<String> = r.get(8)?;
        Ok(WorkspaceRow {
            id: r.get(0)?,
            name: r.get(1)?,
            description: r.get(2)?,
            icon: r.get(3)?,
            layout: r.get(4)?,
            created_at: r.get(5)?,
            updated_at: r.get(6)?,
            is_template: r.get(7)?,
            // Unreadable tags lose the tags, not the workspace.
            tags: tags.and_then(|t| serde_json::from_str(&t).ok()),
        })
    })?;
    found.collect()
}

fn load_snapshots(conn: &Connection) -> rusqlite::Result<Vec<WorkspaceSnapshotRow>> {
    let mut rows = conn.prepare(
        "SELECT id, workspace_id, name, layout, created_at
         FROM workspace_snapshots ORDER BY created_at, id",
    )?;
    let found = rows.query_map([], |r| {
        Ok(WorkspaceSnapshotRow {
            id: r.get(0)?,
            workspace_id: r.get(1)?,
            name: r.get(2)?,
            layout: r.get(3)?,
            created_at: r.get(4)?,
        })
    })?;
    found.collect()
}

fn load_forwards(conn: &Connection) -> rusqlite::Result<Vec<ForwardRow>> {
    let mut rows = conn.prepare(
        "SELECT id, session_id, kind, listen, target, allow_non_loopback, created_at
         FROM forwards ORDER BY created_at, id",
    )?;
    let found = rows.query_map([], |r| {
        let id: String = r.get(0)?;
        let session_id: String = r.get(1)?;
        Ok((
            id,
            session_id,
            ForwardRow {
                id: Uuid::nil(),
                session_id: Uuid::nil(),
                kind: r.get(2)?,
                listen: r.get(3)?,
                target: r.get(4)?,
                allow_non_loopback: r.get(5)?,
                created_at: r.get(6)?,
            },
        ))
    })?;
    let mut forwards = Vec::new();
    for found in found {
        let (id, session_id, row) = found?;
        // A row whose ids do not parse was not written by Pulsar: skipped, not fatal.
        if let (Ok(id), Ok(session_id)) = (Uuid::parse_str(&id), Uuid::parse_str(&session_id)) {
            forwards.push(ForwardRow {
                id,
                session_id,
                ..row
            });
        }
    }
    Ok(forwards)
}

fn load(conn: &Connection) -> rusqlite::Result<Vec<StoredSession>> {
    let mut rows = conn.prepare(
        "SELECT id, name, session_type, config, created_at, last_active, state,
                exit_code, exit_signal, exited_at, reason
         FROM sessions ORDER BY created_at, id",
    )?;
    let mut states = conn.prepare(
        "SELECT scrollback_offset, scrollback, pty_state FROM session_state WHERE session_id = ?1",
    )?;
    let mut chunks = conn
        .prepare("SELECT offset, data FROM output_chunks WHERE session_id = ?1 ORDER BY offset")?;
    let mut sessions = Vec::new();
    let found = rows.query_map([], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, String>(3)?,
            (r.get(4)?, r.get(5)?, r.get::<_, String>(6)?),
            (r.get(7)?, r.get(8)?, r.get(9)?, r.get(10)?),
        ))
    })?;
    for found in found {
        let (id_text, name, config, (created_at, last_active, state), ended) = found?;
        let Ok(id) = Uuid::parse_str(&id_text) else {
            tracing::warn!(id = %id_text, "skipping a stored session with an invalid id");
            continue;
        };
        let config: SessionConfig = match serde_json::from_str(&config) {
            Ok(config) => config,
            Err(err) => {
                tracing::warn!(session = %id, %name, "cannot restore: its stored config is unreadable ({err}); leaving it in the database");
                continue;
            }
        };
        let (exit_code, exit_signal, exited_at, reason) = ended;
        let row = SessionRow {
            id,
            name,
            config,
            created_at,
            last_active,
            state: RowState::parse(&state),
            exit_code,
            exit_signal,
            exited_at,
            reason,
        };
        let state = states
            .query_row(params![id_text], |r| {
                Ok((
                    r.get::<_, i64>(0)?.max(0) as u64,
                    r.get::<_, Option<Vec<u8>>>(1)?.unwrap_or_default(),
                    r.get::<_, Option<Vec<u8>>>(2)?.unwrap_or_default(),
                ))
            })
            .optional()?;
        let saved_chunks: Vec<(u64, Vec<u8>)> = chunks
            .query_map(params![id_text], |r| {
                Ok((r.get::<_, i64>(0)?.max(0) as u64, r.get::<_, Vec<u8>>(1)?))
            })?
            .collect::<rusqlite::Result<_>>()?;
        let output = state.map(|(offset, blob, screen)| {
            let (offset, scrollback) = if saved_chunks.is_empty() {
                // Written before version 3 (or nothing kept): the tail blob.
                (offset, blob)
            } else {
                join_chunks(saved_chunks)
            };
            SavedOutput {
                session_id: id,
                offset,
                scrollback,
                screen,
            }
        });
        sessions.push(StoredSession { row, output });
    }
    Ok(sessions)
}

/// A `session_state` row: `scrollback_offset`, `scrollback`, `pty_state`.
#[cfg(any(test, feature = "fuzzing"))]
pub type RawState = (i64, Option<Vec<u8>>, Option<Vec<u8>>);

/// One stored session as the database could hold it: what [`decode_rows`] writes and then
/// reads back with the daemon's own loading code (the fuzz targets' view of the store).
#[cfg(any(test, feature = "fuzzing"))]
#[derive(Debug, Clone, Default)]
pub struct RawSession {
    /// `sessions.id`.
    pub id: String,
    /// `sessions.name`.
    pub name: String,
    /// `sessions.config`: JSON, as the daemon writes it.
    pub config: String,
    /// `sessions.state`.
    pub state: String,
    /// `sessions.created_at` and `last_active`.
    pub times: (i64, i64),
    /// `exit_code`, `exit_signal`, `exited_at`.
    pub ended: (Option<i64>, Option<i64>, Option<i64>),
    /// `session_state`: `scrollback_offset`, `scrollback`, `pty_state`, when there is a row.
    pub state_row: Option<RawState>,
    /// `output_chunks`: `offset` and `data`.
    pub chunks: Vec<(i64, Vec<u8>)>,
}

/// Writes `sessions` into an in-memory database of the current schema and loads them back as
/// the daemon does when it starts: the sessions it would restore, or the error that would stop
/// it opening the store. The database is made (and migrated) once per thread; each call writes
/// and reads inside a transaction that is rolled back, so every call starts from the empty
/// schema without paying for the migrations again (they were most of a fuzz input's cost).
#[cfg(any(test, feature = "fuzzing"))]
pub fn decode_rows(sessions: &[RawSession]) -> Result<Vec<StoredSession>, String> {
    thread_local! {
        static EMPTY: std::cell::RefCell<Option<Connection>> = const { std::cell::RefCell::new(None) };
    }
    EMPTY.with_borrow_mut(|empty| {
        if empty.is_none() {
            let mut conn = Connection::open_in_memory().map_err(|e| e.to_string())?;
            schema::migrate(&mut conn).map_err(|e| e.to_string())?;
            *empty = Some(conn);
        }
        let conn = empty.as_mut().expect("made above");
        // Dropped without a commit: rolled back, the database empty again.
        let tx = conn.transaction().map_err(|e| e.to_string())?;
        write_raw(&tx, sessions)?;
        load(&tx).map_err(|e| e.to_string())
    })
}

#[cfg(any(test, feature = "fuzzing"))]
fn write_raw(conn: &Connection, sessions: &[RawSession]) -> Result<(), String> {
    for s in sessions {
        conn.prepare_cached(
            "INSERT OR REPLACE INTO sessions (id, name, session_type, config, created_at,
                 last_active, state, exit_code, exit_signal, exited_at)
             VALUES (?1, ?2, 'local', ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        )
        .and_then(|mut insert| {
            insert.execute(params![
                s.id, s.name, s.config, s.times.0, s.times.1, s.state, s.ended.0, s.ended.1,
                s.ended.2
            ])
        })
        .map_err(|e| e.to_string())?;
        if let Some((offset, scrollback, screen)) = &s.state_row {
            conn.prepare_cached(
                "INSERT OR REPLACE INTO session_state
                     (session_id, scrollback_offset, scrollback, pty_state)
                 VALUES (?1, ?2, ?3, ?4)",
            )
            .and_then(|mut insert| insert.execute(params![s.id, offset, scrollback, screen]))
            .map_err(|e| e.to_string())?;
        }
        for (offset, data) in &s.chunks {
            conn.prepare_cached(
                "INSERT OR REPLACE INTO output_chunks (session_id, offset, data)
                 VALUES (?1, ?2, ?3)",
            )
            .and_then(|mut insert| insert.execute(params![s.id, offset, data]))
            .map_err(|e| e.to_string())?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contiguous_chunks_join_into_one_tail() {
        let (offset, tail) = join_chunks(vec![(10, b"abc".to_vec()), (13, b"de".to_vec())]);
        assert_eq!((offset, tail.as_slice()), (10, &b"abcde"[..]));
    }

    #[test]
    fn a_gap_keeps_only_what_follows_it() {
        let (offset, tail) = join_chunks(vec![(0, b"ab".to_vec()), (5, b"xyz".to_vec())]);
        assert_eq!((offset, tail.as_slice()), (5, &b"xyz"[..]));
    }

    fn row(id: Uuid, name: &str) -> SessionRow {
        SessionRow {
            id,
            name: name.into(),
            config: SessionConfig {
                kind: StoredKind::Local {
                    command: None,
                    cwd: None,
                    env: Default::default(),
                },
                cols: 80,
                rows: 24,
                resize_policy: StoredResizePolicy::Latest,
                recording: None,
                limits: StoredLimits::default(),
            },
            created_at: 0,
            last_active: 0,
            state: RowState::Detached,
            exit_code: None,
            exit_signal: None,
            exited_at: None,
            reason: None,
        }
    }

    #[test]
    fn a_full_queue_sheds_audits_and_defers_saves_but_keeps_rows() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.db");
        let (store, _) = Store::open(&path).unwrap();
        let id = Uuid::new_v4();
        // As if the writer had fallen far behind.
        store.shared.queued.fetch_add(QUEUE_CAP, Ordering::Relaxed);
        store.audit(AuditEntry {
            time: 0,
            uid: None,
            pid: None,
            action: "input".into(),
            session_id: Some(id),
            detail: String::new(),
        });
        assert!(!store.touch(id, 5));
        let delta = OutputDelta {
            session_id: id,
            time: 0,
            offset: 0,
            data: b"x".to_vec(),
            keep_from: 0,
            head: 1,
            screen: None,
        };
        assert!(!store.save_output(delta));
        store.upsert_session(row(id, "kept"));
        let stats = store.stats();
        assert_eq!((stats.shed, stats.deferred), (2, 1));
        store.shared.queued.fetch_sub(QUEUE_CAP, Ordering::Relaxed);
        store.close();
        let (
            store,
            Loaded {
                sessions: loaded, ..
            },
        ) = Store::open(&path).unwrap();
        assert_eq!(loaded.len(), 1);
        assert_eq!(loaded[0].row.name, "kept");
        assert!(loaded[0].output.is_none());
        store.close();
    }

    #[test]
    fn the_wal_is_cut_back_after_a_burst_of_writes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.db");
        let wal = dir.path().join("p.db-wal");
        let wal_len = || std::fs::metadata(&wal).map_or(0, |m| m.len());
        let (store, _) = Store::open(&path).unwrap();
        // A burst: sessions saved until the log is well past the limit.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        let mut n = 0;
        while wal_len() < 4 * WAL_SIZE_LIMIT as u64 {
            assert!(std::time::Instant::now() < deadline, "the WAL never grew");
            store.upsert_session(row(Uuid::new_v4(), &format!("s{n}")));
            n += 1;
            if n % 50 == 0 {
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
        }
        // Then a trickle: once a checkpoint has folded the log in, the next write starts it
        // over, cut back to the limit.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while wal_len() > WAL_SIZE_LIMIT as u64 {
            assert!(
                std::time::Instant::now() < deadline,
                "the WAL stayed at {} bytes",
                wal_len()
            );
            store.upsert_session(row(Uuid::new_v4(), "trickle"));
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        store.close();
    }

    #[test]
    fn the_latest_of_many_upserts_is_the_row_stored() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.db");
        let (store, _) = Store::open(&path).unwrap();
        let id = Uuid::new_v4();
        for i in 0..1000 {
            store.upsert_session(row(id, &format!("n{i}")));
        }
        store.close();
        let (
            store,
            Loaded {
                sessions: loaded, ..
            },
        ) = Store::open(&path).unwrap();
        assert_eq!(loaded[0].row.name, "n999");
        assert_eq!(store.stats().queued, 0);
        store.close();
    }

    #[test]
    fn writes_that_fail_are_kept_and_committed_once_the_database_accepts_them() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.db");
        let (store, _) = Store::open(&path).unwrap();
        // Stands in for a full disk: every session insert and audit entry is refused.
        let saboteur = Connection::open(&path).unwrap();
        saboteur
            .execute_batch(
                "CREATE TRIGGER full_rows BEFORE INSERT ON sessions
                     BEGIN SELECT RAISE(ABORT, 'database or disk is full'); END;
                 CREATE TRIGGER full_audit BEFORE INSERT ON audit_log
                     BEGIN SELECT RAISE(ABORT, 'database or disk is full'); END;",
            )
            .unwrap();
        let id = Uuid::new_v4();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        store.upsert_session(row(id, "first"));
        store.audit(AuditEntry {
            time: 1,
            uid: Some(1),
            pid: None,
            action: "create".into(),
            session_id: Some(id),
            detail: String::new(),
        });
        store.save_output(OutputDelta {
            session_id: id,
            time: 0,
            offset: 0,
            data: b"hello".to_vec(),
            keep_from: 0,
            head: 5,
            screen: Some(b"screen".to_vec()),
        });
        runtime.block_on(store.flush());
        // A newer row while failing replaces the one waiting, as coalescing does; more
        // output joins the save waiting.
        store.upsert_session(row(id, "renamed"));
        store.save_output(OutputDelta {
            session_id: id,
            time: 0,
            offset: 5,
            data: b" world".to_vec(),
            keep_from: 0,
            head: 11,
            screen: None,
        });
        runtime.block_on(store.flush());
        let failing = store.stats();
        assert!(failing.failed_commits >= 2, "{failing:?}");
        assert!(
            failing
                .last_error
                .as_deref()
                .is_some_and(|e| e.contains("disk is full")),
            "{failing:?}"
        );
        assert!(
            failing.queued >= 3,
            "unwritten writes stay queued: {failing:?}"
        );

        saboteur
            .execute_batch("DROP TRIGGER full_rows; DROP TRIGGER full_audit;")
            .unwrap();
        runtime.block_on(store.flush());
        let caught_up = store.stats();
        assert_eq!(
            (caught_up.queued, caught_up.last_error.as_deref()),
            (0, None)
        );
        store.close();
        drop(saboteur);
        let (store, loaded) = Store::open(&path).unwrap();
        assert_eq!(loaded.sessions.len(), 1);
        assert_eq!(loaded.sessions[0].row.name, "renamed");
        let output = loaded.sessions[0].output.clone().unwrap();
        assert_eq!(
            (output.offset, output.scrollback.as_slice()),
            (0, &b"hello world"[..])
        );
        store.close();
        let audited: i64 = Connection::open(&path)
            .unwrap()
            .query_row(
                "SELECT COUNT(*) FROM audit_log WHERE action = 'create'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(audited, 1);
    }

    #[test]
    fn a_long_outage_keeps_one_pending_save_and_touch_per_session() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.db");
        let (store, _) = Store::open(&path).unwrap();
        let id = Uuid::new_v4();
        store.upsert_session(row(id, "n"));
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(store.flush());
        let saboteur = Connection::open(&path).unwrap();
        saboteur
            .execute_batch(
                "CREATE TRIGGER full BEFORE INSERT ON output_chunks
                     BEGIN SELECT RAISE(ABORT, 'database or disk is full'); END;",
            )
            .unwrap();
        for i in 0..500u64 {
            store.save_output(OutputDelta {
                session_id: id,
                time: 0,
                offset: i * 10,
                data: vec![b'x'; 10],
                keep_from: (i * 10 + 10).saturating_sub(100),
                head: i * 10 + 10,
                screen: Some(b"screen".to_vec()),
            });
            store.touch(id, i as i64);
            if i % 50 == 0 {
                runtime.block_on(store.flush());
            }
        }
        runtime.block_on(store.flush());
        let failing = store.stats();
        assert!(failing.failed_commits > 5, "{failing:?}");
        // The first failed save and touch, and the one each that later ones merged into.
        assert!(failing.queued <= 4, "{failing:?}");
        saboteur.execute_batch("DROP TRIGGER full").unwrap();
        runtime.block_on(store.flush());
        assert_eq!(store.stats().queued, 0);
        store.close();
        let (store, loaded) = Store::open(&path).unwrap();
        let output = loaded.sessions[0].output.clone().unwrap();
        assert_eq!(output.offset + output.scrollback.len() as u64, 5000);
        assert_eq!(loaded.sessions[0].row.last_active, 499);
        store.close();
    }

    #[test]
    fn output_deltas_append_and_trim_to_the_tail() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.db");
        let (store, _) = Store::open(&path).unwrap();
        let id = Uuid::new_v4();
        store.upsert_session(row(id, "n"));
        for (offset, data) in [(0u64, &b"0123"[..]), (4, b"4567"), (8, b"89")] {
            let head = offset + data.len() as u64;
            store.save_output(OutputDelta {
                session_id: id,
                time: 0,
                offset,
                data: data.to_vec(),
                keep_from: head.saturating_sub(5),
                head,
                screen: Some(b"screen".to_vec()),
            });
        }
        store.close();
        let (
            store,
            Loaded {
                sessions: loaded, ..
            },
        ) = Store::open(&path).unwrap();
        let output = loaded[0].output.clone().unwrap();
        // Chunks ending at or before offset 5 are gone; the one straddling it stays.
        assert_eq!(output.offset, 4);
        assert_eq!(output.scrollback, b"456789");
        assert_eq!(output.screen, b"screen");
        store.close();
    }

    #[test]
    fn a_saved_run_is_the_unbroken_output_ending_at_an_offset() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.db");
        let (store, _) = Store::open(&path).unwrap();
        let id = Uuid::new_v4();
        store.upsert_session(row(id, "n"));
        // 8..10 was never saved (a gap).
        for (offset, data) in [(0u64, &b"0123"[..]), (4, b"4567"), (10, b"ab"), (12, b"cd")] {
            store.save_output(OutputDelta {
                session_id: id,
                time: 0,
                offset,
                data: data.to_vec(),
                keep_from: 0,
                head: offset + data.len() as u64,
                screen: None,
            });
        }
        store.close();
        let (store, _) = Store::open(&path).unwrap();
        let run = |from, to| store.saved_run(id, from, to).unwrap();
        assert_eq!(run(0, 14), (10, b"abcd".to_vec()), "the gap ends it");
        assert_eq!(run(11, 14), (11, b"bcd".to_vec()));
        assert_eq!(run(0, 13), (10, b"abc".to_vec()));
        assert_eq!(run(0, 8), (0, b"01234567".to_vec()));
        assert_eq!(run(2, 8), (2, b"234567".to_vec()));
        assert_eq!(run(0, 9), (9, Vec::new()), "nothing saved ends at 9");
        assert_eq!(
            store.saved_run(Uuid::new_v4(), 0, 8).unwrap(),
            (8, Vec::new())
        );
        store.close();
    }

    #[test]
    fn workspaces_and_snapshots_come_back_and_go_together() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.db");
        let (store, _) = Store::open(&path).unwrap();
        let workspace = |name: &str| WorkspaceRow {
            id: "w1".into(),
            name: name.into(),
            description: Some("d".into()),
            icon: None,
            layout: r#"{"version":"1.0.0","type":"single","panes":[]}"#.into(),
            created_at: 1,
            updated_at: 2,
            is_template: true,
            tags: Some(vec!["a".into(), "b".into()]),
        };
        store.upsert_workspace(workspace("first"));
        store.upsert_workspace(workspace("renamed"));
        store.insert_snapshot(WorkspaceSnapshotRow {
            id: "s1".into(),
            workspace_id: "w1".into(),
            name: "snap".into(),
            layout: "{}".into(),
            created_at: 3,
        });
        store.close();
        let (store, loaded) = Store::open(&path).unwrap();
        assert_eq!(loaded.workspaces, vec![workspace("renamed")]);
        assert_eq!(loaded.snapshots.len(), 1);
        store.delete_workspace("w1");
        store.close();
        let (store, loaded) = Store::open(&path).unwrap();
        assert!(loaded.workspaces.is_empty());
        assert!(
            loaded.snapshots.is_empty(),
            "snapshots go with their workspace"
        );
        store.close();
    }
}
