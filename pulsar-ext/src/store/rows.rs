//! The store's own row types: what the database holds, independent of the wire protocol.
//!
//! The `config` column is JSON of [`SessionConfig`]. Its shape matches what earlier versions
//! wrote (the protocol's `kind`-tagged session type), so old rows load unchanged; but it is
//! defined here, so a protocol change never silently changes the database format, and it has
//! no field for a secret at all: an SSH password or passphrase cannot be stored.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// A session's life, as stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RowState {
    /// Alive with clients.
    Running,
    /// Alive without clients.
    Detached,
    /// Its program ended.
    Stopped,
}

impl RowState {
    /// The column's text.
    pub(super) fn as_str(self) -> &'static str {
        match self {
            RowState::Running => "running",
            RowState::Detached => "detached",
            RowState::Stopped => "stopped",
        }
    }

    /// Reads the column; anything unknown counts as alive (so it is restored, not lost).
    pub(super) fn parse(text: &str) -> Self {
        match text {
            "stopped" => RowState::Stopped,
            "running" => RowState::Running,
            _ => RowState::Detached,
        }
    }
}

/// A session's row (`sessions`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRow {
    /// The session id.
    pub id: Uuid,
    /// Its name.
    pub name: String,
    /// What it takes to start it again.
    pub config: SessionConfig,
    /// Creation time, Unix milliseconds.
    pub created_at: i64,
    /// Last activity, Unix milliseconds.
    pub last_active: i64,
    /// Alive (with or without clients) or stopped.
    pub state: RowState,
    /// Exit code, once stopped.
    pub exit_code: Option<i32>,
    /// Exit signal, once stopped.
    pub exit_signal: Option<i32>,
    /// When it stopped, Unix milliseconds.
    pub exited_at: Option<i64>,
    /// Why it stopped, when a backend said.
    pub reason: Option<String>,
}

/// The `config` column: what it takes to start the session again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionConfig {
    /// What runs in it.
    #[serde(rename = "type")]
    pub kind: StoredKind,
    /// Terminal width.
    pub cols: u16,
    /// Terminal height.
    pub rows: u16,
    /// How the size follows clients.
    #[serde(default)]
    pub resize_policy: StoredResizePolicy,
    /// The recording it had going, for the next daemon to go on with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recording: Option<StoredRecording>,
    /// Resource limits (the daemon's defaults at creation filled in); absent: none.
    #[serde(default, skip_serializing_if = "StoredLimits::is_empty")]
    pub limits: StoredLimits,
}

/// A recording in progress, as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredRecording {
    /// The asciicast file.
    pub path: PathBuf,
    /// Input recorded too.
    #[serde(default)]
    pub input: bool,
    /// Its time 0, Unix milliseconds.
    pub started_ms: i64,
}

/// A session's stored resource limits, each absent when unlimited.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredLimits {
    /// Bytes of memory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_max: Option<u64>,
    /// Percent of one CPU.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_max: Option<u32>,
    /// Processes at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pids_max: Option<u64>,
    /// Open files per process.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nofile_max: Option<u64>,
    /// Output bytes per second.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_bytes_per_sec: Option<u64>,
}

impl StoredLimits {
    /// True when no limit is set.
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

/// What runs in a stored session. Never a secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum StoredKind {
    /// A local program in a PTY.
    Local {
        /// Program and arguments; `None`: the login shell.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        command: Option<Vec<String>>,
        /// Working directory.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        cwd: Option<PathBuf>,
        /// Extra environment.
        #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
        env: BTreeMap<String, String>,
    },
    /// A serial device and its line settings.
    Serial {
        /// The device path.
        device: PathBuf,
        /// Line speed.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        baud: Option<u32>,
        /// Bits per character.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        data_bits: Option<u8>,
        /// Parity by name.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        parity: Option<String>,
        /// Stop bits.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        stop_bits: Option<u8>,
        /// Flow control by name.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        flow_control: Option<String>,
    },
    /// An SSH shell or command.
    Ssh {
        /// Host name or address.
        host: String,
        /// TCP port.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        port: Option<u16>,
        /// Remote user.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        user: Option<String>,
        /// Remote command line.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        command: Option<String>,
        /// How to authenticate, without secrets.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        auth: Option<StoredSshAuth>,
        /// Accept an unknown host key.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        accept_new_host_key: Option<bool>,
        /// The known-hosts file.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        known_hosts: Option<PathBuf>,
    },
}

impl StoredKind {
    /// The `session_type` column: `local`, `serial` or `ssh`.
    pub(super) fn name(&self) -> &'static str {
        match self {
            StoredKind::Local { .. } => "local",
            StoredKind::Serial { .. } => "serial",
            StoredKind::Ssh { .. } => "ssh",
        }
    }
}

/// SSH authentication as stored: which methods, never their secrets.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredSshAuth {
    /// Ask the SSH agent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<bool>,
    /// Key files to try.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub key_files: Vec<PathBuf>,
}

/// How the size follows clients, as stored.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StoredResizePolicy {
    /// The latest request wins.
    #[default]
    Latest,
    /// The smallest client's size.
    Smallest,
    /// The largest client's size.
    Largest,
}

/// A workspace's row (`workspaces`). The layout is kept as the JSON text it was given in;
/// the store does not look inside it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkspaceRow {
    /// Its id.
    pub id: String,
    /// Its name.
    pub name: String,
    /// Its description.
    pub description: Option<String>,
    /// Its icon.
    pub icon: Option<String>,
    /// Its layout, as JSON text.
    pub layout: String,
    /// Creation time, Unix milliseconds.
    pub created_at: i64,
    /// Last change, Unix milliseconds.
    pub updated_at: i64,
    /// A template rather than a workspace in use.
    pub is_template: bool,
    /// Its tags, if it has a list of them.
    pub tags: Option<Vec<String>>,
}

/// A workspace snapshot's row (`workspace_snapshots`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkspaceSnapshotRow {
    /// Its id.
    pub id: String,
    /// The workspace it belongs to (deleted with it).
    pub workspace_id: String,
    /// Its name.
    pub name: String,
    /// The layout it saved, as JSON text.
    pub layout: String,
    /// When it was taken, Unix milliseconds.
    pub created_at: i64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configs_written_by_earlier_versions_still_load() {
        let old = r#"{"type":{"kind":"ssh","host":"h","port":2222,"user":"u",
                      "auth":{"agent":false,"key_files":["/k"]}},"cols":80,"rows":24}"#;
        let config: SessionConfig = serde_json::from_str(old).unwrap();
        assert_eq!(config.resize_policy, StoredResizePolicy::Latest);
        let StoredKind::Ssh { port, auth, .. } = config.kind else {
            panic!("an ssh config")
        };
        assert_eq!(port, Some(2222));
        assert_eq!(auth.unwrap().key_files, vec![PathBuf::from("/k")]);
    }

    #[test]
    fn a_stored_ssh_config_has_no_place_for_secrets() {
        let with_secret = r#"{"type":{"kind":"ssh","host":"h",
                              "auth":{"password":"hunter2"}},"cols":80,"rows":24}"#;
        let config: SessionConfig = serde_json::from_str(with_secret).unwrap();
        let text = serde_json::to_string(&config).unwrap();
        assert!(!text.contains("hunter2"), "{text}");
    }

    #[test]
    fn unknown_states_count_as_alive() {
        assert_eq!(RowState::parse("stopped"), RowState::Stopped);
        assert_eq!(RowState::parse("detached"), RowState::Detached);
        assert_eq!(RowState::parse("weird"), RowState::Detached);
    }
}

/// A port forward's row (`forwards`): what was asked for, with the address as bound, so a
/// restart listens where the forward did. Goes with its session (foreign key, cascade).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForwardRow {
    /// Its id.
    pub id: Uuid,
    /// The session whose connection carries it.
    pub session_id: Uuid,
    /// `local`, `remote` or `dynamic`.
    pub kind: String,
    /// `host:port` listened on.
    pub listen: String,
    /// `host:port` connections go to, if it has one.
    pub target: Option<String>,
    /// Listening on a non-loopback address was asked for.
    pub allow_non_loopback: bool,
    /// When it was added, Unix milliseconds.
    pub created_at: i64,
}
