//! Pulsar's configuration: built-in defaults < config file < `PULSAR_*` environment <
//! explicit overrides (the host's settings table, or `pulsar-standalone`'s flags).
//!
//! `config/pulsar.toml` documents every key at its default.

use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use orbit_api_stub::HostDirs;
use pulsar_protocol::ResizePolicy;
use serde::{Deserialize, Serialize};

/// Every setting, with its default in [`Config::defaults`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The Unix socket clients connect to. Its directory is created 0700, the socket 0600.
    pub socket_path: PathBuf,
    /// The SQLite database for session metadata and scrollback.
    pub database_path: PathBuf,
    /// `error`, `warn`, `info`, `debug`, `trace`, or a full `tracing` filter directive.
    pub log_level: String,
    /// Output bytes each session keeps for late readers (allocated as it fills).
    pub scrollback_bytes: usize,
    /// Live sessions at once; `create_session` fails with code 1004 beyond it.
    pub max_sessions: usize,
    /// Clients attached to one session at once.
    pub max_clients_per_session: usize,
    /// Largest `send_input` payload, in decoded bytes.
    pub max_input_bytes: usize,
    /// Largest JSON-RPC request, in bytes, on either framing.
    pub max_request_bytes: u32,
    /// Time between SIGHUP and SIGKILL when a session is terminated.
    pub terminate_grace_ms: u64,
    /// How often the cleanup task runs.
    pub cleanup_interval_secs: u64,
    /// How long a stopped session stays listed (and its history readable) before cleanup
    /// removes it.
    pub stopped_retention_secs: u64,
    /// Terminal size of a session created without one.
    pub default_cols: u16,
    /// Terminal size of a session created without one.
    pub default_rows: u16,
    /// How a session's size follows several interactive clients (`latest`, `smallest`,
    /// `largest`), unless `create_session` says otherwise.
    pub resize_policy: ResizePolicy,
    /// What happens at start to sessions that were alive when the daemon last stopped:
    /// `respawn` (their history, a divider, then a fresh process), `history` (stopped, history
    /// readable) or `off` (forgotten: removed from the database).
    pub restore: RestorePolicy,
    /// Bytes of each session's output tail saved to the database (0: save none, nor the
    /// screen; offsets still continue across a restart). At most what the ring holds
    /// (`scrollback_bytes`) can be saved.
    pub persist_scrollback_bytes: usize,
    /// How often changed sessions' output and activity are saved; a `kill -9` loses at most
    /// this much output.
    pub persist_interval_ms: u64,
    /// Audit-log entries kept; older ones are pruned by the cleanup task.
    pub audit_max_rows: u64,
    /// Whether a serial session whose device vanishes (unplugged, hung up) waits for it to
    /// come back and carries on, instead of stopping.
    pub serial_reopen: bool,
    /// Longest pause between two attempts to reopen a vanished serial device; the pauses
    /// double from 50 ms up to this.
    pub serial_reopen_max_backoff_ms: u64,
    /// Seconds of silence from an SSH server before the daemon sends a keepalive; three
    /// unanswered keepalives drop the connection. 0 turns keepalives off.
    pub ssh_keepalive_secs: u64,
    /// Longest an SSH session may take to connect, authenticate and start its shell.
    pub ssh_connect_timeout_ms: u64,
    /// The known-hosts file SSH host keys are checked against (unless a session names one).
    pub ssh_known_hosts: PathBuf,
    /// Accept (and remember) the key of an SSH host not yet known, for every session, as
    /// OpenSSH's `accept-new`. A changed key is refused regardless.
    pub ssh_accept_new_host_keys: bool,
    /// Private key files tried for SSH sessions whose request names none; empty: the usual
    /// `~/.ssh/id_ed25519`, `id_ecdsa`, `id_rsa`.
    pub ssh_key_files: Vec<PathBuf>,
    /// Whether an SSH session whose connection drops (not whose remote program exits)
    /// reconnects and carries on, instead of stopping.
    pub ssh_reconnect: bool,
    /// Longest pause between two attempts to reconnect a dropped SSH session; the pauses
    /// double from 100 ms up to this.
    pub ssh_reconnect_max_backoff_ms: u64,
    /// OpenSSH's client configuration, read for every SSH session (`Host` aliases, `HostName`,
    /// `User`, `Port`, `IdentityFile`, `ProxyJump`, ...); empty: none is read.
    pub ssh_config: PathBuf,
    /// Seconds without output after which a session's screen model is hibernated (kept as its
    /// exact serialization, a few hundred bytes, until the next output or attach) and its
    /// saved scrollback released to the database (read back on a read or the next output);
    /// 0: never. Checked at every cleanup tick.
    pub hibernate_after_secs: u64,
    /// Milliseconds without output or input after which a local session's pump is parked:
    /// no task of its own, its terminal watched from one set shared by every parked session
    /// until it has output or the program ends (the first output after costs one wake-up
    /// more); 0: never. Checked every half of it (at least every 50 ms, at most every second).
    pub park_after_ms: u64,
    /// Whether local sessions are held by a keeper process, so that they outlive the daemon
    /// (a stop, a crash, an upgrade). Off: they end with the daemon and are respawned.
    pub keeper: bool,
    /// The keeper's socket; empty: `pulsar-keeper.sock` beside `socket_path`.
    pub keeper_socket: PathBuf,
    /// The `pulsar-keeper` program; empty: the one beside the daemon's executable (or the
    /// extension's library), else the one on `PATH`.
    pub keeper_binary: PathBuf,
    /// Set by `pulsar-standalone` only: its own executable, which runs as the keeper
    /// (`--keeper`) when no `pulsar-keeper` binary is found.
    #[serde(default)]
    pub keeper_fallback: PathBuf,
    /// Set by `pulsar-standalone` only: how to start this daemon again (program and
    /// arguments), for `upgrade_daemon`. Empty (inside an Orbit host): no upgrades in place.
    #[serde(default)]
    pub upgrade_argv: Vec<String>,
    /// Set by `pulsar-standalone` only, in a daemon started by an upgrade: the descriptor of
    /// the hand-over channel to the daemon it replaces.
    #[serde(default)]
    pub handover_fd: Option<i32>,
    /// Whether every new session is recorded (an asciicast file in `recordings_dir`) from its
    /// start, as if `start_recording` had been called.
    pub record_sessions: bool,
    /// Where recordings without an explicit path go (created 0700); empty: `recordings`
    /// beside the database.
    pub recordings_dir: PathBuf,
    /// A recording's size cap, in bytes: at it, the recording stops (`recording_stopped`
    /// says so) and the session goes on.
    pub recording_max_bytes: u64,
    /// Default memory limit of a local session, in bytes (`create_session`'s
    /// `limits.memory_max` wins); absent: unlimited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits_memory_max: Option<u64>,
    /// Default CPU limit of a local session, in percent of one CPU; absent: unlimited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits_cpu_max: Option<u32>,
    /// Default limit on a local session's processes; absent: unlimited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits_pids_max: Option<u64>,
    /// Default open-files limit of a local session's processes; absent: inherited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits_nofile_max: Option<u64>,
    /// Default output rate of every session, in bytes per second; absent: unlimited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits_output_bytes_per_sec: Option<u64>,
    /// Whether local sessions' limits may use control groups; off: rlimits and nice only
    /// (no memory OOM kill of the group, no pids limit for root).
    pub limits_cgroups: bool,
    /// A cgroup v2 directory this daemon may create groups in (a subtree delegated to the
    /// user, e.g. by systemd's `Delegate=yes`); empty: found by itself (see
    /// docs/operations.md).
    pub limits_cgroup_root: PathBuf,
    /// Loopback address (`127.0.0.1:3030`) of the desktop's output WebSocket
    /// (`ws://HOST:PORT/ws/{session_id}`); empty: no TCP listener at all.
    pub desktop_websocket: String,
    /// `Origin`s allowed to open the desktop WebSocket (a handshake without `Origin`, from a
    /// native client, is allowed); any other origin is refused, so web pages cannot reach
    /// the user's sessions.
    pub desktop_websocket_origins: Vec<String>,
}

/// What becomes of sessions that were alive when the daemon stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RestorePolicy {
    /// History, a divider line, then a fresh process with the same command, cwd and env.
    Respawn,
    /// Stopped, with the history readable.
    History,
    /// Not restored; their rows are removed from the database.
    Off,
}

/// The keys `PULSAR_*` environment variables may set (other `PULSAR_` variables are ignored).
const KEYS: &[&str] = &[
    "socket_path",
    "database_path",
    "log_level",
    "scrollback_bytes",
    "max_sessions",
    "max_clients_per_session",
    "max_input_bytes",
    "max_request_bytes",
    "terminate_grace_ms",
    "cleanup_interval_secs",
    "stopped_retention_secs",
    "default_cols",
    "default_rows",
    "resize_policy",
    "restore",
    "persist_scrollback_bytes",
    "persist_interval_ms",
    "audit_max_rows",
    "serial_reopen",
    "serial_reopen_max_backoff_ms",
    "ssh_keepalive_secs",
    "ssh_connect_timeout_ms",
    "ssh_known_hosts",
    "ssh_accept_new_host_keys",
    "ssh_key_files",
    "ssh_reconnect",
    "ssh_reconnect_max_backoff_ms",
    "ssh_config",
    "hibernate_after_secs",
    "park_after_ms",
    "keeper",
    "keeper_socket",
    "keeper_binary",
    "desktop_websocket",
    "desktop_websocket_origins",
    "record_sessions",
    "recordings_dir",
    "recording_max_bytes",
    "limits_memory_max",
    "limits_cpu_max",
    "limits_pids_max",
    "limits_nofile_max",
    "limits_output_bytes_per_sec",
    "limits_cgroups",
    "limits_cgroup_root",
];

/// The Tauri webview's origins (Linux and macOS, Windows over http and https): the desktop's
/// own pages.
pub const DEFAULT_DESKTOP_ORIGINS: &[&str] = &[
    "tauri://localhost",
    "http://tauri.localhost",
    "https://tauri.localhost",
];

/// Why the configuration could not be assembled.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// An explicitly named config file does not exist.
    #[error("config file {0} does not exist")]
    MissingFile(PathBuf),
    /// A layer had a bad key or value.
    #[error("invalid configuration: {0}")]
    Invalid(#[from] Box<figment::Error>),
    /// The overrides table was not a JSON object.
    #[error("invalid settings table: {0}")]
    Settings(#[from] serde_json::Error),
    /// The desktop WebSocket's address is not a loopback `IP:port`.
    #[error(
        "invalid configuration: desktop_websocket = {value:?} {reason}; use a loopback \
         address such as \"127.0.0.1:3030\" or \"[::1]:3030\", or \"\" to turn it off"
    )]
    DesktopAddress {
        /// The value given.
        value: String,
        /// What is wrong.
        reason: &'static str,
    },
    /// A value is out of its range.
    #[error("invalid configuration: {key} {reason}")]
    OutOfRange {
        /// The key.
        key: &'static str,
        /// What is wrong.
        reason: &'static str,
    },
}

impl Config {
    /// The built-in defaults, rooted in the host's config directory
    /// (`~/.config/orbit/pulsar.sock`, `~/.config/orbit/pulsar.db`).
    pub fn defaults(dirs: &HostDirs) -> Self {
        Self {
            socket_path: dirs.config_dir.join("pulsar.sock"),
            database_path: dirs.config_dir.join("pulsar.db"),
            log_level: "info".to_owned(),
            scrollback_bytes: 1024 * 1024,
            max_sessions: 1024,
            max_clients_per_session: 32,
            max_input_bytes: 64 * 1024,
            max_request_bytes: 1024 * 1024,
            terminate_grace_ms: 2000,
            cleanup_interval_secs: 60,
            stopped_retention_secs: 24 * 3600,
            default_cols: 80,
            default_rows: 24,
            resize_policy: ResizePolicy::Latest,
            restore: RestorePolicy::Respawn,
            persist_scrollback_bytes: 256 * 1024,
            persist_interval_ms: 2000,
            audit_max_rows: 100_000,
            serial_reopen: false,
            serial_reopen_max_backoff_ms: 5000,
            ssh_keepalive_secs: 30,
            ssh_connect_timeout_ms: 10_000,
            ssh_known_hosts: PathBuf::from("~/.ssh/known_hosts"),
            ssh_accept_new_host_keys: false,
            ssh_key_files: Vec::new(),
            ssh_reconnect: false,
            ssh_reconnect_max_backoff_ms: 30_000,
            ssh_config: PathBuf::from("~/.ssh/config"),
            hibernate_after_secs: 60,
            park_after_ms: 2000,
            keeper: true,
            keeper_socket: PathBuf::new(),
            keeper_binary: PathBuf::new(),
            keeper_fallback: PathBuf::new(),
            upgrade_argv: Vec::new(),
            handover_fd: None,
            record_sessions: false,
            recordings_dir: PathBuf::new(),
            recording_max_bytes: 100 * 1024 * 1024,
            limits_memory_max: None,
            limits_cpu_max: None,
            limits_pids_max: None,
            limits_nofile_max: None,
            limits_output_bytes_per_sec: None,
            limits_cgroups: true,
            limits_cgroup_root: PathBuf::new(),
            desktop_websocket: String::new(),
            desktop_websocket_origins: DEFAULT_DESKTOP_ORIGINS
                .iter()
                .map(|o| (*o).to_owned())
                .collect(),
        }
    }

    /// Assembles the layers. `overrides` is a JSON object of keys from this struct plus,
    /// optionally, `config_file`: the file layer (default `<config_dir>/pulsar.toml`, read
    /// only if it exists; an explicitly named file must exist).
    pub fn load(dirs: &HostDirs, overrides: &serde_json::Value) -> Result<Self, ConfigError> {
        let mut overrides = match overrides {
            serde_json::Value::Null => serde_json::Map::new(),
            other => serde_json::from_value::<serde_json::Map<_, _>>(other.clone())?,
        };
        let file = match overrides.remove("config_file") {
            Some(serde_json::Value::String(path)) => {
                let path = expand_home(Path::new(&path));
                if !path.is_file() {
                    return Err(ConfigError::MissingFile(path));
                }
                path
            }
            _ => dirs.config_dir.join("pulsar.toml"),
        };
        let mut config: Config = Figment::from(Serialized::defaults(Config::defaults(dirs)))
            .merge(Toml::file(&file))
            .merge(Env::prefixed("PULSAR_").only(KEYS))
            .merge(Serialized::globals(overrides))
            .extract()
            .map_err(Box::new)?;
        config.socket_path = expand_home(&config.socket_path);
        config.database_path = expand_home(&config.database_path);
        config.ssh_known_hosts = expand_home(&config.ssh_known_hosts);
        config.ssh_config = expand_home(&config.ssh_config);
        config.keeper_socket = if config.keeper_socket.as_os_str().is_empty() {
            config
                .socket_path
                .parent()
                .unwrap_or(Path::new("/"))
                .join("pulsar-keeper.sock")
        } else {
            expand_home(&config.keeper_socket)
        };
        config.keeper_binary = expand_home(&config.keeper_binary);
        config.recordings_dir = if config.recordings_dir.as_os_str().is_empty() {
            config
                .database_path
                .parent()
                .unwrap_or(Path::new("/"))
                .join("recordings")
        } else {
            expand_home(&config.recordings_dir)
        };
        config.limits_cgroup_root = expand_home(&config.limits_cgroup_root);
        config.ssh_key_files = config
            .ssh_key_files
            .iter()
            .map(|p| expand_home(p))
            .collect();
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let check = |ok: bool, key, reason| {
            if ok {
                Ok(())
            } else {
                Err(ConfigError::OutOfRange { key, reason })
            }
        };
        check(
            self.scrollback_bytes >= 4096,
            "scrollback_bytes",
            "must be at least 4096",
        )?;
        check(self.max_sessions >= 1, "max_sessions", "must be at least 1")?;
        for (value, key) in [
            (self.limits_memory_max, "limits_memory_max"),
            (self.limits_cpu_max.map(u64::from), "limits_cpu_max"),
            (self.limits_pids_max, "limits_pids_max"),
            (self.limits_nofile_max, "limits_nofile_max"),
            (
                self.limits_output_bytes_per_sec,
                "limits_output_bytes_per_sec",
            ),
        ] {
            check(
                value != Some(0),
                key,
                "must be at least 1 (leave it out for no limit)",
            )?;
        }
        check(
            self.max_clients_per_session >= 1,
            "max_clients_per_session",
            "must be at least 1",
        )?;
        check(
            self.max_input_bytes >= 1,
            "max_input_bytes",
            "must be at least 1",
        )?;
        check(
            self.max_request_bytes >= 4096,
            "max_request_bytes",
            "must be at least 4096",
        )?;
        check(
            self.persist_interval_ms >= 10,
            "persist_interval_ms",
            "must be at least 10",
        )?;
        check(
            self.cleanup_interval_secs >= 1,
            "cleanup_interval_secs",
            "must be at least 1",
        )?;
        check(
            (1..=1000).contains(&self.default_cols) && (1..=1000).contains(&self.default_rows),
            "default_cols/default_rows",
            "must be between 1 and 1000",
        )?;
        check(
            (10..=3_600_000).contains(&self.serial_reopen_max_backoff_ms),
            "serial_reopen_max_backoff_ms",
            "must be between 10 and 3600000",
        )?;
        check(
            (100..=600_000).contains(&self.ssh_connect_timeout_ms),
            "ssh_connect_timeout_ms",
            "must be between 100 and 600000",
        )?;
        check(
            (10..=3_600_000).contains(&self.ssh_reconnect_max_backoff_ms),
            "ssh_reconnect_max_backoff_ms",
            "must be between 10 and 3600000",
        )?;
        check(
            self.recording_max_bytes >= 4096,
            "recording_max_bytes",
            "must be at least 4096",
        )?;
        self.desktop_websocket().map(|_| ())
    }

    /// The desktop WebSocket's address, `None` when it is off. Only a loopback address is
    /// accepted: a TCP port on another interface would let the network in.
    pub fn desktop_websocket(&self) -> Result<Option<std::net::SocketAddr>, ConfigError> {
        let value = self.desktop_websocket.trim();
        if value.is_empty() {
            return Ok(None);
        }
        let refuse = |reason| ConfigError::DesktopAddress {
            value: value.to_owned(),
            reason,
        };
        let addr: std::net::SocketAddr = value
            .parse()
            .map_err(|_| refuse("is not an IP:port address"))?;
        if !addr.ip().is_loopback() {
            return Err(refuse(
                "is not a loopback address: the desktop port would be open to the network",
            ));
        }
        Ok(Some(addr))
    }

    /// [`Self::terminate_grace_ms`] as a duration.
    pub fn terminate_grace(&self) -> Duration {
        Duration::from_millis(self.terminate_grace_ms)
    }

    /// How a vanished serial device is treated: `Some(longest pause)` to reopen it, `None` to
    /// stop the session.
    pub fn serial_reopen(&self) -> Option<Duration> {
        self.serial_reopen
            .then(|| Duration::from_millis(self.serial_reopen_max_backoff_ms))
    }
}

impl Config {
    /// The defaults every backend starts from.
    pub fn backend_settings(&self) -> crate::backend::BackendSettings {
        crate::backend::BackendSettings {
            serial_reopen: self.serial_reopen(),
            ssh: self.ssh_options(),
            keeper: None,
            confiner: Default::default(),
        }
    }

    /// The limits a session takes where its request says nothing.
    pub fn default_limits(&self) -> pulsar_protocol::SessionLimits {
        pulsar_protocol::SessionLimits {
            memory_max: self.limits_memory_max,
            cpu_max: self.limits_cpu_max,
            pids_max: self.limits_pids_max,
            nofile_max: self.limits_nofile_max,
            output_bytes_per_sec: self.limits_output_bytes_per_sec,
        }
    }

    /// The SSH settings every SSH session starts from (a request may override some).
    pub(crate) fn ssh_options(&self) -> crate::backend::SshOptions {
        crate::backend::SshOptions {
            connect_timeout: Duration::from_millis(self.ssh_connect_timeout_ms),
            keepalive: (self.ssh_keepalive_secs > 0)
                .then(|| Duration::from_secs(self.ssh_keepalive_secs)),
            known_hosts: self.ssh_known_hosts.clone(),
            accept_new_host_keys: self.ssh_accept_new_host_keys,
            key_files: self.ssh_key_files.clone(),
            reconnect: self
                .ssh_reconnect
                .then(|| Duration::from_millis(self.ssh_reconnect_max_backoff_ms)),
            config_file: (!self.ssh_config.as_os_str().is_empty()).then(|| self.ssh_config.clone()),
        }
    }
}

/// Expands a leading `~/` to `$HOME/`.
fn expand_home(path: &Path) -> PathBuf {
    orbit_api_stub::config::expand_home(path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn dirs(root: &Path) -> HostDirs {
        HostDirs {
            config_dir: root.join("config"),
            data_dir: root.join("data"),
            runtime_dir: root.join("run"),
        }
    }

    #[test]
    fn the_desktop_websocket_is_off_by_default() {
        let root = tempfile::tempdir().unwrap();
        let config = Config::load(&dirs(root.path()), &json!({})).unwrap();
        assert_eq!(config.desktop_websocket().unwrap(), None);
        assert!(
            config
                .desktop_websocket_origins
                .contains(&"tauri://localhost".to_owned())
        );
    }

    #[test]
    fn a_loopback_desktop_websocket_address_is_accepted() {
        let root = tempfile::tempdir().unwrap();
        for addr in ["127.0.0.1:3030", "[::1]:3030"] {
            let config =
                Config::load(&dirs(root.path()), &json!({"desktop_websocket": addr})).unwrap();
            assert_eq!(
                config.desktop_websocket().unwrap(),
                Some(addr.parse().unwrap())
            );
        }
    }

    #[test]
    fn a_non_loopback_desktop_websocket_address_is_refused_by_name() {
        let root = tempfile::tempdir().unwrap();
        for addr in ["0.0.0.0:3030", "192.168.1.5:3030", "localhost"] {
            let err = Config::load(&dirs(root.path()), &json!({"desktop_websocket": addr}))
                .unwrap_err()
                .to_string();
            assert!(err.contains("desktop_websocket"), "{err}");
            assert!(err.contains(addr), "{err}");
        }
    }

    #[test]
    fn defaults_live_in_the_host_config_dir() {
        let root = tempfile::tempdir().unwrap();
        let config = Config::load(&dirs(root.path()), &json!({})).unwrap();
        assert_eq!(config.socket_path, root.path().join("config/pulsar.sock"));
        assert_eq!(config.database_path, root.path().join("config/pulsar.db"));
        assert_eq!(config.log_level, "info");
    }

    #[test]
    fn file_then_overrides_take_precedence_in_order() {
        let root = tempfile::tempdir().unwrap();
        let file = root.path().join("p.toml");
        std::fs::write(&file, "log_level = \"debug\"\nmax_sessions = 7\n").unwrap();
        let config = Config::load(
            &dirs(root.path()),
            &json!({"config_file": file, "max_sessions": 9}),
        )
        .unwrap();
        assert_eq!(config.log_level, "debug", "file beats defaults");
        assert_eq!(config.max_sessions, 9, "overrides beat the file");
    }

    #[test]
    fn misspelt_key_in_file_is_an_error_naming_it() {
        let root = tempfile::tempdir().unwrap();
        let file = root.path().join("p.toml");
        std::fs::write(&file, "socket_pth = \"/x\"\n").unwrap();
        let err = Config::load(&dirs(root.path()), &json!({"config_file": file})).unwrap_err();
        assert!(err.to_string().contains("socket_pth"), "{err}");
    }

    #[test]
    fn explicit_missing_config_file_is_an_error() {
        let root = tempfile::tempdir().unwrap();
        let err =
            Config::load(&dirs(root.path()), &json!({"config_file": "/nope/p.toml"})).unwrap_err();
        assert!(matches!(err, ConfigError::MissingFile(_)), "{err}");
    }

    #[test]
    fn serial_reopen_is_off_by_default_and_can_be_turned_on() {
        let root = tempfile::tempdir().unwrap();
        let config = Config::load(&dirs(root.path()), &json!({})).unwrap();
        assert_eq!(config.serial_reopen(), None);
        let config = Config::load(
            &dirs(root.path()),
            &json!({"serial_reopen": true, "serial_reopen_max_backoff_ms": 250}),
        )
        .unwrap();
        assert_eq!(config.serial_reopen(), Some(Duration::from_millis(250)));
    }

    #[test]
    fn serial_reopen_backoff_out_of_range_is_rejected_naming_it() {
        let root = tempfile::tempdir().unwrap();
        let err = Config::load(
            &dirs(root.path()),
            &json!({"serial_reopen_max_backoff_ms": 0}),
        )
        .unwrap_err();
        assert!(
            err.to_string().contains("serial_reopen_max_backoff_ms"),
            "{err}"
        );
    }

    #[test]
    fn ssh_defaults_check_known_hosts_in_home_and_keep_alive() {
        let root = tempfile::tempdir().unwrap();
        let config = Config::load(&dirs(root.path()), &json!({})).unwrap();
        let options = config.ssh_options();
        assert!(options.known_hosts.ends_with(".ssh/known_hosts"));
        assert!(!options.known_hosts.starts_with("~"), "expanded");
        assert!(!options.accept_new_host_keys);
        assert_eq!(options.keepalive, Some(Duration::from_secs(30)));
        assert_eq!(options.connect_timeout, Duration::from_secs(10));
        assert_eq!(options.reconnect, None);
        let config = Config::load(
            &dirs(root.path()),
            &json!({"ssh_keepalive_secs": 0, "ssh_reconnect": true,
                    "ssh_reconnect_max_backoff_ms": 200}),
        )
        .unwrap();
        assert_eq!(config.ssh_options().keepalive, None);
        assert_eq!(
            config.ssh_options().reconnect,
            Some(Duration::from_millis(200))
        );
    }

    #[test]
    fn out_of_range_value_is_rejected() {
        let root = tempfile::tempdir().unwrap();
        let err = Config::load(&dirs(root.path()), &json!({"scrollback_bytes": 10})).unwrap_err();
        assert!(err.to_string().contains("scrollback_bytes"), "{err}");
    }
}
