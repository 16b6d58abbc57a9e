//! `get_status`'s answer.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Daemon health, as `get_status` reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    /// The daemon's version (the `pulsar-ext` crate version).
    pub version: String,
    /// Whole seconds since the daemon started.
    pub uptime_seconds: u64,
    /// Sessions the daemon knows, in any state.
    pub num_sessions: usize,
    /// Clients attached across all sessions.
    pub num_clients: usize,
    /// Sessions whose screen model is hibernated now (idle for `hibernate_after_secs`).
    #[serde(default)]
    pub num_hibernated: usize,
    /// Sessions whose output reader is parked now (idle for `hibernate_after_secs`: no task,
    /// their terminal watched from one shared set until it has output or the program ends).
    #[serde(default)]
    pub num_parked: usize,
    /// Scrollback bytes that hibernated sessions have given back to the database (which
    /// holds them as saved); read back when a client reads them or the session writes.
    #[serde(default)]
    pub scrollback_released_bytes: u64,
    /// The daemon's process id.
    pub pid: u32,
    /// The session database and how fast it writes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database: Option<DatabaseStatus>,
    /// When this daemon process started (a restart or upgrade changes it; the sessions'
    /// `created_at` do not).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<DateTime<Utc>>,
    /// The keeper that holds the local sessions' programs; absent when there is none (local
    /// sessions then end with the daemon).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keeper: Option<KeeperStatus>,
    /// Why the last `upgrade_daemon` failed, when it did (cleared by a successful one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_upgrade_error: Option<String>,
}

/// `upgrade_daemon`'s answer: the new daemon is ready and takes over.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpgradeResult {
    /// The daemon being replaced.
    pub from_pid: u32,
    /// The new daemon, which serves on the same socket once it has taken over.
    pub to_pid: u32,
    /// The binary it runs.
    pub binary: String,
}

/// The keeper process, as `get_status` reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeeperStatus {
    /// Its process id.
    pub pid: u32,
    /// Its version.
    pub version: String,
    /// Its socket.
    pub socket: String,
}

/// The session database, as `get_status` reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DatabaseStatus {
    /// The SQLite file.
    pub path: String,
    /// Its schema version (`PRAGMA user_version`).
    pub schema_version: i64,
    /// Transactions committed since the daemon started.
    pub commits: u64,
    /// Writes committed since the daemon started.
    pub writes: u64,
    /// Median time from a write being queued to its commit (recent window), µs.
    pub write_p50_us: u64,
    /// 99th percentile of the same, µs.
    pub write_p99_us: u64,
    /// Median transaction commit time (recent window), µs.
    pub commit_p50_us: u64,
    /// 99th percentile of the same, µs.
    pub commit_p99_us: u64,
    /// Writes waiting for the writer now.
    #[serde(default)]
    pub queued: u64,
    /// Audit entries and activity updates dropped because the write queue was full
    /// (sessions and their output are never dropped).
    #[serde(default)]
    pub shed: u64,
    /// Output saves put off to a later checkpoint because the write queue was full.
    #[serde(default)]
    pub deferred: u64,
    /// Transactions that failed (disk full, read-only file, I/O error); the log says why.
    /// Failed writes are kept (counted in `queued`) and tried again until they commit.
    #[serde(default)]
    pub failed_commits: u64,
    /// Why the latest transaction failed (SQLite's message, e.g. `database or disk is
    /// full`), while the store is failing; absent once a transaction commits again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}
