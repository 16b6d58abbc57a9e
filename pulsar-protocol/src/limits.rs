//! Resource limits a session runs under, which mechanism holds each, and what it uses.
//!
//! Asked for on `create_session` ([`SessionLimits`]), reported by `get_session` and
//! `list_sessions` ([`AppliedLimits`], [`SessionUsage`]).

use serde::{Deserialize, Serialize};

/// The limits asked for a session. Every field is optional; an absent one takes the
/// daemon's default (`limits_*` in its config), and a session with none runs unlimited.
/// Local sessions take all of them; SSH and serial sessions only `output_bytes_per_sec`
/// (the far end of an SSH session or a device is out of the daemon's reach).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SessionLimits {
    /// Memory of the whole session (every process in it), in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_max: Option<u64>,
    /// CPU time, in percent of one CPU (100: one core; 50: half of one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_max: Option<u32>,
    /// Processes (and threads) in the session at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pids_max: Option<u64>,
    /// Open files of each process.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nofile_max: Option<u64>,
    /// Output read from the program, in bytes per second: past it the terminal is read more
    /// slowly (the program blocks on its writes); no byte is ever dropped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_bytes_per_sec: Option<u64>,
}

impl SessionLimits {
    /// True when no limit is set.
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }

    /// `self`'s limits, each absent one taken from `defaults`.
    pub fn or(self, defaults: SessionLimits) -> SessionLimits {
        SessionLimits {
            memory_max: self.memory_max.or(defaults.memory_max),
            cpu_max: self.cpu_max.or(defaults.cpu_max),
            pids_max: self.pids_max.or(defaults.pids_max),
            nofile_max: self.nofile_max.or(defaults.nofile_max),
            output_bytes_per_sec: self.output_bytes_per_sec.or(defaults.output_bytes_per_sec),
        }
    }
}

/// What enforces a limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum LimitMechanism {
    /// A cgroup v2 group of the session's own (`memory.max`, `pids.max`, `cpu.max`).
    Cgroup2,
    /// A cgroup v1 group of the session's own in each controller's hierarchy.
    Cgroup1,
    /// A resource limit of each process (`RLIMIT_AS`, `RLIMIT_NPROC`, `RLIMIT_NOFILE`):
    /// inherited, but counted per process (`RLIMIT_NPROC`: per user, not per session).
    Rlimit,
    /// The program's nice value: a lower share of the CPU when others want it, not a cap.
    Nice,
    /// The daemon's reader of the session's output.
    Pump,
}

/// One limit in force: its value and what holds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeldLimit {
    /// The limit, in the unit of its [`SessionLimits`] field.
    pub value: u64,
    /// What enforces it.
    pub mechanism: LimitMechanism,
}

/// The limits a session runs under, each with its mechanism; absent fields are unlimited.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppliedLimits {
    /// See [`SessionLimits::memory_max`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_max: Option<HeldLimit>,
    /// See [`SessionLimits::cpu_max`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_max: Option<HeldLimit>,
    /// See [`SessionLimits::pids_max`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pids_max: Option<HeldLimit>,
    /// See [`SessionLimits::nofile_max`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nofile_max: Option<HeldLimit>,
    /// See [`SessionLimits::output_bytes_per_sec`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_bytes_per_sec: Option<HeldLimit>,
}

/// What a running local session uses now: from its control group when it has one, else
/// summed over its process tree from `/proc`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionUsage {
    /// Memory in use, in bytes (the group's charge, or the processes' resident sets).
    #[serde(default)]
    pub memory_bytes: u64,
    /// The most memory in use at once so far, in bytes, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_peak_bytes: Option<u64>,
    /// CPU time used so far (user and system), in milliseconds.
    #[serde(default)]
    pub cpu_ms: u64,
    /// CPU used since the previous reading (or the start), in percent of one CPU.
    #[serde(default)]
    pub cpu_percent: u32,
    /// Processes in the session now.
    #[serde(default)]
    pub processes: u32,
}
