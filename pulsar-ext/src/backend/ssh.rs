//! SSH sessions (russh): a login shell or a command on another host, in a remote PTY, owned by
//! the daemon.
//!
//! One tokio task per session (the *link task*) owns the russh connection and its channel: it
//! forwards output into a small bounded queue that [`Backend::read`] drains, applies resizes
//! (`window-change`), records the remote exit, and, with reconnecting on, re-establishes a
//! dropped connection. Writers send straight into the channel. No thread per session, and, as
//! for serial devices, reconnecting is invisible to the session core: it sees divider lines in
//! the output, with ordinary offsets.
//!
//! Passwords and passphrases live in this module's memory only: they are never logged, never
//! part of an error, and `Debug` of everything holding them is masked.
//!
//! Here: the backend and its state. `config` reads OpenSSH's client configuration for a host
//! alias, `connect` establishes one connection chain (defaults and the configuration applied,
//! TCP, the jump hosts, host keys, PTY, shell), `auth` authenticates, `known_hosts` reads and
//! appends OpenSSH's file, `link` is the link task, `forward` the session's port forwards
//! (over whichever connection the link task has), `socks` the SOCKS5 handshake of dynamic
//! ones, and `sftp` copies files over the session's connection (a channel of its own per
//! transfer, across reconnects).

mod auth;
mod config;
mod connect;
mod forward;
mod known_hosts;
#[cfg(any(test, feature = "fuzzing"))]
pub(crate) use known_hosts::check_text_for;
mod link;
mod sftp;
mod socks;

use std::io;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use pulsar_protocol::{ForwardId, ForwardInfo, ForwardSpec, SessionId, SshResolved, SshSpec};
use russh::ChannelWriteHalf;
use russh::client::Msg;
use tokio::sync::{Mutex as AsyncMutex, mpsc, watch};

use super::{
    Backend, ExitStatus, ForwardError, LinkState, TransferControl, TransferError, TransferJob,
};
use connect::{Target, connect};
use forward::Forwards;
use link::LinkTask;
use sftp::Connection;

/// Output chunks queued between the link task and the session's pump: a little slack for
/// bursts, while a slow pump still pushes back on the SSH window (and so on the server).
const OUTPUT_QUEUE: usize = 32;

/// SSH settings from the daemon's configuration (`ssh_*` keys).
#[derive(Debug, Clone)]
pub struct SshOptions {
    /// Longest connecting may take: TCP, key exchange, authentication, the shell.
    pub connect_timeout: Duration,
    /// Interval of keepalives sent when the server is silent; `None`: none.
    pub keepalive: Option<Duration>,
    /// Known-hosts file used unless the session names one.
    pub known_hosts: PathBuf,
    /// Accept and remember unknown host keys (OpenSSH's `accept-new`) for every session.
    pub accept_new_host_keys: bool,
    /// Key files tried when the session names none; empty: the usual `~/.ssh/id_*`.
    pub key_files: Vec<PathBuf>,
    /// `Some(longest pause)`: reconnect a dropped connection; `None`: stop the session.
    pub reconnect: Option<Duration>,
    /// OpenSSH's client configuration read for every session (`ssh_config`); `None`: none.
    pub config_file: Option<PathBuf>,
}

/// Why an SSH session could not start. Messages name the host and the cause, never a secret.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// A field of the session's `type` is invalid.
    #[error("invalid {field}: {reason}")]
    InvalidSetting {
        /// The field as named on the wire (`type.host`, `type.port`, ...).
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// Nothing accepts connections on the port.
    #[error("connection to {host}:{port} refused")]
    Refused {
        /// The host as given.
        host: String,
        /// The port.
        port: u16,
    },
    /// Connecting took longer than allowed.
    #[error("connecting to {host}:{port} timed out after {} ms", after.as_millis())]
    Timeout {
        /// The host as given.
        host: String,
        /// The port.
        port: u16,
        /// The limit (`ssh_connect_timeout_ms`).
        after: Duration,
    },
    /// The host name does not resolve.
    #[error("host {host} not found: {reason}")]
    HostNotFound {
        /// The host as given.
        host: String,
        /// The port.
        port: u16,
        /// The resolver's answer.
        reason: String,
    },
    /// The server accepted none of the credentials.
    #[error(
        "authentication as {user:?} on {host}:{port} failed (tried: {}){}",
        if tried.is_empty() { "nothing".to_owned() } else { tried.join(", ") },
        notes.iter().map(|n| format!("; {n}")).collect::<String>()
    )]
    AuthFailed {
        /// The host as given.
        host: String,
        /// The port.
        port: u16,
        /// The remote user.
        user: String,
        /// The methods tried, in order (`agent`, `key file ...`, `password`, ...).
        tried: Vec<String>,
        /// Why other methods could not be tried (an encrypted key without passphrase, ...).
        notes: Vec<String>,
    },
    /// The host's key is not in the known-hosts file.
    #[error(
        "the authenticity of host {host}:{port} can't be established: its {key_type} key \
         fingerprint is {fingerprint} and it is not in {}; check the fingerprint, then retry \
         with accept_new_host_key", known_hosts.display()
    )]
    UnknownHostKey {
        /// The host as given.
        host: String,
        /// The port.
        port: u16,
        /// The key's algorithm (`ssh-ed25519`, ...).
        key_type: String,
        /// `SHA256:...`, as OpenSSH shows it.
        fingerprint: String,
        /// The file checked.
        known_hosts: PathBuf,
    },
    /// The host's key differs from the one on record: refused, always.
    #[error(
        "REMOTE HOST IDENTIFICATION HAS CHANGED for {host}:{port}! Someone could be \
         eavesdropping on you right now (man-in-the-middle attack), or the host key has just \
         been changed. The key on record in {}:{line} has fingerprint \
         {expected_fingerprint}; the server sent {actual_fingerprint}. Remove the old entry \
         to connect", known_hosts.display()
    )]
    HostKeyChanged {
        /// The host as given.
        host: String,
        /// The port.
        port: u16,
        /// The file checked.
        known_hosts: PathBuf,
        /// 1-based line of the entry that differs.
        line: usize,
        /// The recorded key's fingerprint.
        expected_fingerprint: String,
        /// The key the server presented.
        actual_fingerprint: String,
    },
    /// The host's key is marked `@revoked`.
    #[error(
        "the {key_type} host key {fingerprint} of {host}:{port} is marked @revoked in {}:{line}",
        known_hosts.display()
    )]
    HostKeyRevoked {
        /// The host as given.
        host: String,
        /// The port.
        port: u16,
        /// The key's algorithm.
        key_type: String,
        /// Its fingerprint.
        fingerprint: String,
        /// The file checked.
        known_hosts: PathBuf,
        /// 1-based line of the `@revoked` entry.
        line: usize,
    },
    /// The OpenSSH configuration file cannot be read or has a bad line.
    #[error("the SSH configuration {} cannot be used: {reason}", path.display())]
    Config {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// Any other failure: unreachable network, reset, protocol error, the server refusing the
    /// terminal or the shell.
    #[error("SSH connection to {host}:{port} failed: {reason}")]
    Failed {
        /// The host as given.
        host: String,
        /// The port.
        port: u16,
        /// What failed.
        reason: String,
    },
}

impl ConnectError {
    /// The host and port the error concerns, if it got as far as them.
    pub fn endpoint(&self) -> Option<(&str, u16)> {
        match self {
            ConnectError::InvalidSetting { .. } | ConnectError::Config { .. } => None,
            ConnectError::Refused { host, port }
            | ConnectError::Timeout { host, port, .. }
            | ConnectError::HostNotFound { host, port, .. }
            | ConnectError::AuthFailed { host, port, .. }
            | ConnectError::UnknownHostKey { host, port, .. }
            | ConnectError::HostKeyChanged { host, port, .. }
            | ConnectError::HostKeyRevoked { host, port, .. }
            | ConnectError::Failed { host, port, .. } => Some((host, *port)),
        }
    }
}

/// Where the connection stands. Writers watch it, so a write stuck behind the SSH window is
/// released when the connection drops or the session ends.
enum State {
    /// Connected; input goes to this channel.
    Connected(Arc<ChannelWriteHalf<Msg>>),
    /// Dropped; reconnecting.
    Reconnecting {
        /// How it dropped.
        cause: String,
    },
    /// Over: the remote program exited, the connection dropped for good, or terminated.
    Ended {
        /// The remote exit, as far as known.
        status: ExitStatus,
        /// Why, when the status cannot say.
        reason: Option<String>,
    },
}

/// What only the reader (the session's pump) touches.
struct ReadSide {
    output: mpsc::Receiver<Vec<u8>>,
    /// The chunk being handed out, and how much of it has been.
    pending: Vec<u8>,
    at: usize,
}

/// An SSH session's shell or command on a remote host.
pub struct SshBackend {
    host: String,
    port: u16,
    /// Only the pump reads, so this lock is never contended; it makes `read` `&self`.
    reader: AsyncMutex<ReadSide>,
    /// Keeps one `write_all` from interleaving with another.
    write_lock: AsyncMutex<()>,
    state: Arc<watch::Sender<State>>,
    /// The terminal size; the link task sends `window-change` when it changes.
    size: watch::Sender<(u16, u16)>,
    /// Set by `terminate`; dropping the backend also tells the link task to close.
    stop: watch::Sender<bool>,
    /// Where it connects and how, as the session's info shows it.
    resolved: SshResolved,
    /// The connection's ups and downs, sent by the link task (closed when it ends).
    link: watch::Receiver<LinkState>,
    /// Port forwards over the connection, following it across reconnects.
    forwards: Arc<Forwards>,
    /// The current connection, for transfers; the link task keeps it up to date.
    connection: watch::Sender<Connection>,
}

impl SshBackend {
    /// Connects to `spec`'s host with a `cols`×`rows` terminal and starts its shell or
    /// command. Returns once the remote program runs; must run inside the daemon's runtime
    /// (the link task is spawned on it).
    pub async fn connect(
        spec: &SshSpec,
        options: &SshOptions,
        session_id: SessionId,
        (cols, rows): (u16, u16),
    ) -> Result<Self, ConnectError> {
        // The configuration file (and its includes) is disk work: off the runtime's workers.
        let (owned_spec, owned_options) = (spec.clone(), options.clone());
        let target =
            tokio::task::spawn_blocking(move || Target::resolve(&owned_spec, &owned_options))
                .await
                .map_err(|join| ConnectError::Failed {
                    host: spec.host.clone(),
                    port: spec.port.unwrap_or(22),
                    reason: format!("reading the SSH configuration panicked: {join}"),
                })??;
        for warning in &target.warnings {
            tracing::warn!(alias = %spec.host, config = ?target.config_file, "SSH configuration: {warning}");
        }
        let resolved = target.resolved();
        let mut link = connect(&target, (cols, rows)).await?;
        let forwards = Forwards::new(session_id);
        forwards.attach(&mut link);
        tracing::info!(
            alias = %spec.host, host = %target.host, port = target.port, user = %target.user,
            jumps = ?resolved.proxy_jump, "SSH session connected"
        );
        let (host, port) = (target.host.clone(), target.port);
        let (output_tx, output_rx) = mpsc::channel(OUTPUT_QUEUE);
        let state = Arc::new(watch::channel(State::Connected(Arc::clone(&link.write))).0);
        let size = watch::channel((cols, rows)).0;
        let stop = watch::channel(false).0;
        let (link_tx, link_rx) = watch::channel(LinkState::Up);
        let connection = watch::channel(Connection::Up(Arc::clone(&link.handle))).0;
        let task = LinkTask {
            target,
            options: options.clone(),
            state: Arc::clone(&state),
            link: link_tx,
            output: output_tx,
            size: size.subscribe(),
            stop: stop.subscribe(),
            forwards: Arc::clone(&forwards),
            connection: connection.clone(),
        };
        tokio::spawn(task.run(link));
        Ok(Self {
            host,
            port,
            reader: AsyncMutex::new(ReadSide {
                output: output_rx,
                pending: Vec::new(),
                at: 0,
            }),
            write_lock: AsyncMutex::new(()),
            state,
            size,
            stop,
            resolved,
            link: link_rx,
            forwards,
            connection,
        })
    }
}

#[async_trait]
impl Backend for SshBackend {
    async fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        let mut side = self.reader.lock().await;
        if side.at >= side.pending.len() {
            // Cancel-safe: a dropped `recv` loses nothing.
            match side.output.recv().await {
                Some(chunk) => {
                    side.pending = chunk;
                    side.at = 0;
                }
                None => return Ok(0),
            }
        }
        let at = side.at;
        let n = (side.pending.len() - at).min(buf.len());
        buf[..n].copy_from_slice(&side.pending[at..at + n]);
        side.at += n;
        Ok(n)
    }

    async fn write_all(&self, data: &[u8]) -> io::Result<()> {
        let _writer = self.write_lock.lock().await;
        let mut state = self.state.subscribe();
        let (host, port) = (&self.host, self.port);
        let channel = match &*state.borrow_and_update() {
            State::Connected(channel) => Arc::clone(channel),
            State::Reconnecting { cause } => {
                return Err(io::Error::new(
                    io::ErrorKind::NotConnected,
                    format!("the connection to {host}:{port} is down ({cause}); reconnecting"),
                ));
            }
            State::Ended { .. } => {
                return Err(io::Error::new(
                    io::ErrorKind::BrokenPipe,
                    format!("the SSH session on {host}:{port} has ended"),
                ));
            }
        };
        tokio::select! {
            sent = channel.data(data) => sent.map_err(|err| io::Error::new(
                io::ErrorKind::BrokenPipe,
                format!("writing to {host}:{port}: {err}"),
            )),
            _ = state.changed() => Err(io::Error::new(
                io::ErrorKind::NotConnected,
                format!("the connection to {host}:{port} went away while writing"),
            )),
        }
    }

    fn resize(&self, cols: u16, rows: u16) -> io::Result<()> {
        self.size.send_replace((cols, rows));
        Ok(())
    }

    async fn wait(&self) -> ExitStatus {
        let mut state = self.state.subscribe();
        // `self` holds a sender, so this returns only once the session has ended.
        let ended = state.wait_for(|s| matches!(s, State::Ended { .. })).await;
        match ended.as_deref() {
            Ok(State::Ended { status, .. }) => *status,
            _ => ExitStatus {
                code: None,
                signal: None,
            },
        }
    }

    async fn terminate(&self, _grace: Duration) {
        // Closing the channel hangs up the remote terminal: the server sends the shell SIGHUP.
        self.stop.send_replace(true);
    }

    fn pid(&self) -> Option<u32> {
        None
    }

    fn link_state(&self) -> Option<watch::Receiver<LinkState>> {
        Some(self.link.clone())
    }

    fn end_reason(&self) -> Option<String> {
        match &*self.state.borrow() {
            State::Ended { reason, .. } => reason.clone(),
            _ => None,
        }
    }

    fn ssh_resolved(&self) -> Option<SshResolved> {
        Some(self.resolved.clone())
    }

    async fn add_forward(
        &self,
        id: ForwardId,
        spec: &ForwardSpec,
    ) -> Result<ForwardInfo, ForwardError> {
        self.forwards.add(id, spec).await
    }

    fn keep_failed_forward(&self, id: ForwardId, spec: &ForwardSpec, why: String) {
        self.forwards.keep_failed(id, spec, why);
    }

    fn forwards(&self) -> Vec<ForwardInfo> {
        self.forwards.list()
    }

    fn forward_count(&self) -> usize {
        self.forwards.count()
    }

    async fn remove_forward(&self, id: ForwardId) -> Result<(), ForwardError> {
        self.forwards.remove(id).await
    }

    async fn transfer(
        &self,
        job: &TransferJob,
        control: &TransferControl,
    ) -> Result<(), TransferError> {
        sftp::run(job, control, self.connection.subscribe()).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use connect::daemon_user;
    use std::path::Path;

    fn options() -> SshOptions {
        SshOptions {
            connect_timeout: Duration::from_secs(5),
            keepalive: None,
            known_hosts: "/nonexistent/known_hosts".into(),
            accept_new_host_keys: false,
            key_files: Vec::new(),
            reconnect: None,
            config_file: None,
        }
    }

    fn invalid_field(spec: SshSpec) -> &'static str {
        match Target::from_spec(&spec, &options()) {
            Err(ConnectError::InvalidSetting { field, .. }) => field,
            Err(other) => panic!("expected an invalid setting, got {other}"),
            Ok(target) => panic!("expected an invalid setting, got {target:?}"),
        }
    }

    #[test]
    fn bad_fields_are_named_by_their_wire_field() {
        let spec = |host: &str| SshSpec {
            host: host.into(),
            ..Default::default()
        };
        assert_eq!(invalid_field(spec("")), "type.host");
        assert_eq!(invalid_field(spec("a b")), "type.host");
        assert_eq!(
            invalid_field(SshSpec {
                port: Some(0),
                ..spec("h")
            }),
            "type.port"
        );
        assert_eq!(
            invalid_field(SshSpec {
                user: Some(String::new()),
                ..spec("h")
            }),
            "type.user"
        );
        assert_eq!(
            invalid_field(SshSpec {
                command: Some("  ".into()),
                ..spec("h")
            }),
            "type.command"
        );
    }

    #[test]
    fn defaults_are_port_22_the_daemon_user_and_the_usual_keys() {
        let target = Target::from_spec(
            &SshSpec {
                host: "h".into(),
                ..Default::default()
            },
            &options(),
        )
        .unwrap();
        assert_eq!(target.port, 22);
        assert_eq!(target.user, daemon_user());
        assert!(target.agent);
        assert!(!target.named_key_files);
        let names: Vec<_> = target
            .key_files
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["id_ed25519", "id_ecdsa", "id_rsa"]);
        assert_eq!(target.known_hosts, Path::new("/nonexistent/known_hosts"));
    }

    #[test]
    fn target_debug_shows_no_secret() {
        let target = Target::from_spec(
            &SshSpec {
                host: "h".into(),
                auth: Some(pulsar_protocol::SshAuth {
                    password: Some("sw0rdfish".into()),
                    passphrase: Some("hunter2".into()),
                    ..Default::default()
                }),
                ..Default::default()
            },
            &options(),
        )
        .unwrap();
        let shown = format!("{target:?}");
        assert!(
            !shown.contains("sw0rdfish") && !shown.contains("hunter2"),
            "{shown}"
        );
    }
}
