//! `get_status`'s answer.

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
    /// The daemon's process id.
    pub pid: u32,
}
