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

mod known_hosts;

use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr as _;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use pulsar_protocol::SshSpec;
use russh::client::{self, AuthResult, DisconnectReason, KeyboardInteractiveAuthResponse, Msg};
use russh::keys::agent::AgentIdentity;
use russh::keys::agent::client::AgentClient;
use russh::keys::{PrivateKeyWithHashAlg, PublicKeyOrCertificate};
use russh::{ChannelMsg, ChannelReadHalf, ChannelWriteHalf, MethodKind, MethodSet, Sig};
use tokio::sync::{Mutex as AsyncMutex, mpsc, watch};

use super::{Backend, ExitStatus};

/// The terminal type the remote PTY is asked for, as local sessions set `TERM`.
const TERM: &str = "xterm-256color";
/// Output chunks queued between the link task and the session's pump: a little slack for
/// bursts, while a slow pump still pushes back on the SSH window (and so on the server).
const OUTPUT_QUEUE: usize = 32;
/// The first pause before reconnecting a dropped connection; pauses double from here.
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
/// After the remote program's exit status, how long to wait for the channel to close (and
/// the last output to arrive) before reporting the exit anyway.
const LINGER_AFTER_EXIT: Duration = Duration::from_secs(1);
/// Unanswered keepalives before the connection counts as dropped.
const KEEPALIVE_MAX: usize = 3;
/// Rounds of keyboard-interactive prompts answered before giving up.
const MAX_PROMPT_ROUNDS: usize = 4;

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
            ConnectError::InvalidSetting { .. } => None,
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

/// Where and how to connect: the spec with every default filled in. Holds the secrets, so it
/// has no derived `Debug`.
#[derive(Clone)]
struct Target {
    host: String,
    port: u16,
    user: String,
    command: Option<String>,
    agent: bool,
    key_files: Vec<PathBuf>,
    /// True when the key files were named (by the request or the config), so a missing one is
    /// worth a note in an authentication failure.
    named_key_files: bool,
    passphrase: Option<String>,
    password: Option<String>,
    known_hosts: PathBuf,
    accept_new: bool,
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Target")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("user", &self.user)
            .finish_non_exhaustive()
    }
}

impl Target {
    fn from_spec(spec: &SshSpec, options: &SshOptions) -> Result<Self, ConnectError> {
        let invalid = |field, reason: &str| ConnectError::InvalidSetting {
            field,
            reason: reason.to_owned(),
        };
        let host = spec.host.trim();
        if host.is_empty() {
            return Err(invalid("type.host", "must name a host"));
        }
        if host.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(invalid("type.host", "must not contain spaces"));
        }
        let port = spec.port.unwrap_or(22);
        if port == 0 {
            return Err(invalid("type.port", "must be 1..=65535"));
        }
        let user = match &spec.user {
            Some(user) if user.is_empty() => return Err(invalid("type.user", "must not be empty")),
            Some(user) => user.clone(),
            None => daemon_user(),
        };
        if spec.command.as_deref().is_some_and(|c| c.trim().is_empty()) {
            return Err(invalid("type.command", "must not be empty"));
        }
        let auth = spec.auth.clone().unwrap_or_default();
        let (key_files, named_key_files) = if !auth.key_files.is_empty() {
            (
                auth.key_files.iter().map(|p| expand_home(p)).collect(),
                true,
            )
        } else if !options.key_files.is_empty() {
            (options.key_files.clone(), true)
        } else {
            let defaults = ["id_ed25519", "id_ecdsa", "id_rsa"]
                .iter()
                .map(|name| expand_home(&Path::new("~/.ssh").join(name)))
                .collect();
            (defaults, false)
        };
        Ok(Self {
            host: host.to_owned(),
            port,
            user,
            command: spec.command.clone(),
            agent: auth.agent.unwrap_or(true),
            key_files,
            named_key_files,
            passphrase: auth.passphrase,
            password: auth.password,
            known_hosts: spec
                .known_hosts
                .as_deref()
                .map(expand_home)
                .unwrap_or_else(|| options.known_hosts.clone()),
            accept_new: spec
                .accept_new_host_key
                .unwrap_or(options.accept_new_host_keys),
        })
    }

    fn failed(&self, reason: impl Into<String>) -> ConnectError {
        ConnectError::Failed {
            host: self.host.clone(),
            port: self.port,
            reason: reason.into(),
        }
    }
}

/// The name of the user the daemon runs as (the default remote user, as `ssh` does).
fn daemon_user() -> String {
    nix::unistd::User::from_uid(nix::unistd::getuid())
        .ok()
        .flatten()
        .map(|u| u.name)
        .or_else(|| std::env::var("USER").ok())
        .unwrap_or_else(|| "root".to_owned())
}

fn expand_home(path: &Path) -> PathBuf {
    orbit_api_stub::config::expand_home(path)
}

/// russh's callbacks for one connection: host-key verification and the disconnect reason.
struct Callbacks {
    host: String,
    port: u16,
    known_hosts: PathBuf,
    accept_new: bool,
    /// Why the host key was refused, for the error `connect` returns.
    refusal: Arc<Mutex<Option<ConnectError>>>,
    /// Why the connection ended, once it has.
    disconnect: Arc<Mutex<Option<String>>>,
}

impl Callbacks {
    fn verify(&self, key: &russh::keys::PublicKey) -> Result<(), ConnectError> {
        use known_hosts::Verdict;
        let key_type = key.algorithm().as_str().to_owned();
        let fingerprint = known_hosts::fingerprint(key);
        let (host, port, path) = (self.host.clone(), self.port, self.known_hosts.clone());
        let verdict =
            known_hosts::check(&path, &host, port, key).map_err(|err| ConnectError::Failed {
                host: host.clone(),
                port,
                reason: format!("cannot read {}: {err}", path.display()),
            })?;
        match verdict {
            Verdict::Known => Ok(()),
            Verdict::Unknown if self.accept_new => {
                known_hosts::append(&path, &host, port, key).map_err(|err| {
                    ConnectError::Failed {
                        host: host.clone(),
                        port,
                        reason: format!("cannot add the host key to {}: {err}", path.display()),
                    }
                })?;
                tracing::warn!(
                    %host, port, %key_type, %fingerprint, known_hosts = %path.display(),
                    "permanently added the host key of a new host"
                );
                Ok(())
            }
            Verdict::Unknown => Err(ConnectError::UnknownHostKey {
                host,
                port,
                key_type,
                fingerprint,
                known_hosts: path,
            }),
            Verdict::Changed {
                line,
                expected_fingerprint,
            } => {
                tracing::error!(
                    %host, port, known_hosts = %path.display(), line,
                    expected = %expected_fingerprint, actual = %fingerprint,
                    "REMOTE HOST IDENTIFICATION HAS CHANGED; refusing to connect"
                );
                Err(ConnectError::HostKeyChanged {
                    host,
                    port,
                    known_hosts: path,
                    line,
                    expected_fingerprint,
                    actual_fingerprint: fingerprint,
                })
            }
            Verdict::Revoked { line } => Err(ConnectError::HostKeyRevoked {
                host,
                port,
                key_type,
                fingerprint,
                known_hosts: path,
                line,
            }),
        }
    }
}

impl client::Handler for Callbacks {
    type Error = russh::Error;

    async fn check_server_key(
        &mut self,
        key: &PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        let verdict = match key {
            PublicKeyOrCertificate::PublicKey { key, .. } => self.verify(key),
            PublicKeyOrCertificate::Certificate(_) => Err(ConnectError::Failed {
                host: self.host.clone(),
                port: self.port,
                reason: "the server presented a host certificate, which is not supported"
                    .to_owned(),
            }),
        };
        match verdict {
            Ok(()) => Ok(true),
            Err(refusal) => {
                *lock(&self.refusal) = Some(refusal);
                Ok(false)
            }
        }
    }

    async fn disconnected(
        &mut self,
        reason: DisconnectReason<Self::Error>,
    ) -> Result<(), Self::Error> {
        let text = match &reason {
            DisconnectReason::ReceivedDisconnect(info) if info.message.is_empty() => {
                "the server disconnected".to_owned()
            }
            DisconnectReason::ReceivedDisconnect(info) => {
                format!("the server disconnected: {}", info.message)
            }
            DisconnectReason::Error(err) => describe(err),
        };
        *lock(&self.disconnect) = Some(text);
        match reason {
            DisconnectReason::ReceivedDisconnect(_) => Ok(()),
            DisconnectReason::Error(err) => Err(err),
        }
    }
}

/// A russh error in words a user can act on.
fn describe(err: &russh::Error) -> String {
    match err {
        russh::Error::KeepaliveTimeout => "the server stopped answering keepalives".to_owned(),
        russh::Error::IO(io) if io.kind() == io::ErrorKind::UnexpectedEof => {
            "the server closed the connection".to_owned()
        }
        other => other.to_string(),
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// One established connection with its session channel.
struct Link {
    handle: client::Handle<Callbacks>,
    read: ChannelReadHalf,
    write: Arc<ChannelWriteHalf<Msg>>,
    /// Output that arrived while the terminal and shell were being set up.
    early: Vec<Vec<u8>>,
    disconnect: Arc<Mutex<Option<String>>>,
}

/// Connects, verifies the host, authenticates and starts the shell, within the time limit.
async fn connect(
    target: &Target,
    options: &SshOptions,
    (cols, rows): (u16, u16),
) -> Result<Link, ConnectError> {
    match tokio::time::timeout(
        options.connect_timeout,
        establish(target, options, (cols, rows)),
    )
    .await
    {
        Ok(result) => result,
        Err(_) => Err(ConnectError::Timeout {
            host: target.host.clone(),
            port: target.port,
            after: options.connect_timeout,
        }),
    }
}

async fn establish(
    target: &Target,
    options: &SshOptions,
    (cols, rows): (u16, u16),
) -> Result<Link, ConnectError> {
    let stream = open_tcp(target).await?;
    let config = Arc::new(client::Config {
        keepalive_interval: options.keepalive,
        keepalive_max: KEEPALIVE_MAX,
        inactivity_timeout: None,
        nodelay: true,
        ..Default::default()
    });
    let refusal = Arc::new(Mutex::new(None));
    let disconnect = Arc::new(Mutex::new(None));
    let callbacks = Callbacks {
        host: target.host.clone(),
        port: target.port,
        known_hosts: target.known_hosts.clone(),
        accept_new: target.accept_new,
        refusal: Arc::clone(&refusal),
        disconnect: Arc::clone(&disconnect),
    };
    let mut handle = match client::connect_stream(config, stream, callbacks).await {
        Ok(handle) => handle,
        Err(err) => {
            return Err(lock(&refusal)
                .take()
                .unwrap_or_else(|| target.failed(format!("SSH handshake: {}", describe(&err)))));
        }
    };
    authenticate(&mut handle, target).await?;

    let channel = handle
        .channel_open_session()
        .await
        .map_err(|err| target.failed(format!("opening a session channel: {err}")))?;
    let (mut read, write) = channel.split();
    let mut early = Vec::new();
    write
        .request_pty(true, TERM, cols.into(), rows.into(), 0, 0, &[])
        .await
        .map_err(|err| target.failed(format!("requesting a terminal: {err}")))?;
    expect_success(&mut read, &mut early, target, "a terminal").await?;
    let started = match &target.command {
        Some(command) => write.exec(true, command.as_bytes()).await,
        None => write.request_shell(true).await,
    };
    let what = if target.command.is_some() {
        "the command"
    } else {
        "a shell"
    };
    started.map_err(|err| target.failed(format!("requesting {what}: {err}")))?;
    expect_success(&mut read, &mut early, target, what).await?;
    Ok(Link {
        handle,
        read,
        write: Arc::new(write),
        early,
        disconnect,
    })
}

/// Resolves the host and opens a TCP connection to the first address that answers.
async fn open_tcp(target: &Target) -> Result<tokio::net::TcpStream, ConnectError> {
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host((target.host.as_str(), target.port))
        .await
        .map_err(|err| ConnectError::HostNotFound {
            host: target.host.clone(),
            port: target.port,
            reason: err.to_string(),
        })?
        .collect();
    let mut last = None;
    for addr in &addrs {
        match tokio::net::TcpStream::connect(addr).await {
            Ok(stream) => {
                let _ = stream.set_nodelay(true);
                return Ok(stream);
            }
            Err(err) => last = Some(err),
        }
    }
    Err(match last {
        Some(err) if err.kind() == io::ErrorKind::ConnectionRefused => ConnectError::Refused {
            host: target.host.clone(),
            port: target.port,
        },
        Some(err) => target.failed(err.to_string()),
        None => ConnectError::HostNotFound {
            host: target.host.clone(),
            port: target.port,
            reason: "no addresses".to_owned(),
        },
    })
}

/// Waits for the answer to a channel request, keeping any output that comes first.
async fn expect_success(
    read: &mut ChannelReadHalf,
    early: &mut Vec<Vec<u8>>,
    target: &Target,
    what: &str,
) -> Result<(), ConnectError> {
    loop {
        match read.wait().await {
            Some(ChannelMsg::Success) => return Ok(()),
            Some(ChannelMsg::Failure) => {
                return Err(target.failed(format!("the server refused {what}")));
            }
            Some(ChannelMsg::Data { data }) | Some(ChannelMsg::ExtendedData { data, .. }) => {
                early.push(data.to_vec());
            }
            Some(_) => {}
            None => {
                return Err(target.failed(format!("the connection closed while requesting {what}")));
            }
        }
    }
}

/// Tries the agent, the key files, then the password, as far as the server still accepts
/// each method. Errors list what was tried, never a secret.
async fn authenticate(
    handle: &mut client::Handle<Callbacks>,
    target: &Target,
) -> Result<(), ConnectError> {
    let mut tried: Vec<String> = Vec::new();
    let mut notes: Vec<String> = Vec::new();
    // What the server still accepts; unknown until the first failure says.
    let mut accepts: Option<MethodSet> = None;
    let allows = |accepts: &Option<MethodSet>, kind: MethodKind| {
        accepts.as_ref().is_none_or(|set| set.contains(&kind))
    };
    let rsa_hash = handle
        .best_supported_rsa_hash()
        .await
        .ok()
        .flatten()
        .flatten();
    let user = target.user.as_str();
    let lost = |err: &dyn std::fmt::Display| target.failed(format!("during authentication: {err}"));

    if target.agent
        && let Some(socket) = std::env::var_os("SSH_AUTH_SOCK")
    {
        match AgentClient::connect_uds(&socket).await {
            Err(err) => notes.push(format!(
                "the agent at {} is unreachable ({err})",
                Path::new(&socket).display()
            )),
            Ok(mut agent) => match agent.request_identities().await {
                Err(err) => notes.push(format!("the agent did not list its keys ({err})")),
                Ok(identities) => {
                    let keys: Vec<_> = identities
                        .into_iter()
                        .filter_map(|identity| match identity {
                            AgentIdentity::PublicKey { key, .. } => Some(key),
                            AgentIdentity::Certificate { .. } => None,
                        })
                        .collect();
                    if keys.is_empty() {
                        notes.push("the agent holds no keys".to_owned());
                    } else if allows(&accepts, MethodKind::PublicKey) {
                        tried.push(format!("agent ({} keys)", keys.len()));
                    }
                    for key in keys {
                        if !allows(&accepts, MethodKind::PublicKey) {
                            break;
                        }
                        let hash = key.algorithm().is_rsa().then_some(rsa_hash).flatten();
                        match handle
                            .authenticate_publickey_with(user, key, hash, &mut agent)
                            .await
                        {
                            Ok(AuthResult::Success) => return Ok(()),
                            Ok(AuthResult::Failure {
                                remaining_methods, ..
                            }) => accepts = Some(remaining_methods),
                            Err(err) => {
                                if handle.is_closed() {
                                    return Err(lost(&err));
                                }
                                notes.push(format!("the agent failed to sign ({err})"));
                                break;
                            }
                        }
                    }
                }
            },
        }
    }

    for path in &target.key_files {
        if !allows(&accepts, MethodKind::PublicKey) {
            break;
        }
        if !path.exists() {
            if target.named_key_files {
                notes.push(format!("key file {} does not exist", path.display()));
            }
            continue;
        }
        let passphrase = target.passphrase.clone();
        let file = path.clone();
        // Decrypting a key runs bcrypt-pbkdf: CPU work, kept off the runtime's workers.
        let loaded = tokio::task::spawn_blocking(move || {
            russh::keys::load_secret_key(&file, passphrase.as_deref())
        })
        .await
        .map_err(|err| target.failed(format!("loading {}: {err}", path.display())))?;
        let key = match loaded {
            Ok(key) => key,
            Err(russh::keys::Error::KeyIsEncrypted) => {
                notes.push(format!(
                    "key file {} is encrypted and no passphrase was given",
                    path.display()
                ));
                continue;
            }
            Err(err) => {
                let why = if target.passphrase.is_some() {
                    format!("{err} (wrong passphrase?)")
                } else {
                    err.to_string()
                };
                notes.push(format!("cannot use key file {}: {why}", path.display()));
                continue;
            }
        };
        tried.push(format!("key file {}", path.display()));
        let hash = key.algorithm().is_rsa().then_some(rsa_hash).flatten();
        match handle
            .authenticate_publickey(user, PrivateKeyWithHashAlg::new(Arc::new(key), hash))
            .await
        {
            Ok(AuthResult::Success) => return Ok(()),
            Ok(AuthResult::Failure {
                remaining_methods, ..
            }) => accepts = Some(remaining_methods),
            Err(err) => return Err(lost(&err)),
        }
    }

    if let Some(password) = &target.password {
        if allows(&accepts, MethodKind::Password) {
            tried.push("password".to_owned());
            match handle.authenticate_password(user, password.clone()).await {
                Ok(AuthResult::Success) => return Ok(()),
                Ok(AuthResult::Failure {
                    remaining_methods, ..
                }) => accepts = Some(remaining_methods),
                Err(err) => return Err(lost(&err)),
            }
        }
        // Servers that check passwords through PAM often offer only keyboard-interactive.
        if accepts
            .as_ref()
            .is_some_and(|set| set.contains(&MethodKind::KeyboardInteractive))
        {
            tried.push("keyboard-interactive".to_owned());
            let mut reply = handle
                .authenticate_keyboard_interactive_start(user, None)
                .await
                .map_err(|err| lost(&err))?;
            for _ in 0..MAX_PROMPT_ROUNDS {
                match reply {
                    KeyboardInteractiveAuthResponse::Success => return Ok(()),
                    KeyboardInteractiveAuthResponse::Failure { .. } => break,
                    KeyboardInteractiveAuthResponse::InfoRequest { prompts, .. } => {
                        // Hidden prompts get the password; echoed ones (a user name) nothing.
                        let answers = prompts
                            .iter()
                            .map(|p| {
                                if p.echo {
                                    String::new()
                                } else {
                                    password.clone()
                                }
                            })
                            .collect();
                        reply = handle
                            .authenticate_keyboard_interactive_respond(answers)
                            .await
                            .map_err(|err| lost(&err))?;
                    }
                }
            }
        }
    }

    if tried.is_empty() && notes.is_empty() {
        notes.push(
            "no agent (SSH_AUTH_SOCK), no key file in ~/.ssh and no password to try".to_owned(),
        );
    }
    Err(ConnectError::AuthFailed {
        host: target.host.clone(),
        port: target.port,
        user: target.user.clone(),
        tried,
        notes,
    })
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
}

impl SshBackend {
    /// Connects to `spec`'s host with a `cols`×`rows` terminal and starts its shell or
    /// command. Returns once the remote program runs; must run inside the daemon's runtime
    /// (the link task is spawned on it).
    pub async fn connect(
        spec: &SshSpec,
        options: &SshOptions,
        cols: u16,
        rows: u16,
    ) -> Result<Self, ConnectError> {
        let target = Target::from_spec(spec, options)?;
        let link = connect(&target, options, (cols, rows)).await?;
        tracing::info!(host = %target.host, port = target.port, user = %target.user, "SSH session connected");
        let (host, port) = (target.host.clone(), target.port);
        let (output_tx, output_rx) = mpsc::channel(OUTPUT_QUEUE);
        let state = Arc::new(watch::channel(State::Connected(Arc::clone(&link.write))).0);
        let size = watch::channel((cols, rows)).0;
        let stop = watch::channel(false).0;
        let task = LinkTask {
            target,
            options: options.clone(),
            state: Arc::clone(&state),
            output: output_tx,
            size: size.subscribe(),
            stop: stop.subscribe(),
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

    fn end_reason(&self) -> Option<String> {
        match &*self.state.borrow() {
            State::Ended { reason, .. } => reason.clone(),
            _ => None,
        }
    }
}

/// How one connection ended.
enum LinkEnd {
    /// The remote program ended (exit status or signal); never reconnected.
    Exited(ExitStatus, Option<String>),
    /// The connection dropped, for this reason.
    Dropped(String),
    /// `terminate`, or the backend was dropped.
    Stopped,
}

/// What woke the link task.
enum Event {
    /// A channel message; `None` once the connection is gone.
    Channel(Option<ChannelMsg>),
    /// The terminal size changed (`false`: the backend is gone).
    Resized(bool),
    /// `terminate`, or the backend was dropped.
    Stop,
    /// The wait for the channel to close after the exit is over.
    Lingered,
}

/// The task that owns a session's SSH connection: output in, resizes out, and the end.
struct LinkTask {
    target: Target,
    options: SshOptions,
    state: Arc<watch::Sender<State>>,
    output: mpsc::Sender<Vec<u8>>,
    size: watch::Receiver<(u16, u16)>,
    stop: watch::Receiver<bool>,
}

impl LinkTask {
    async fn run(mut self, mut link: Link) {
        let (host, port) = (self.target.host.clone(), self.target.port);
        loop {
            match self.follow(&mut link).await {
                LinkEnd::Exited(status, reason) => {
                    tracing::info!(%host, port, code = ?status.code, signal = ?status.signal, "remote program ended");
                    close(link).await;
                    return self.finish(status, reason);
                }
                LinkEnd::Stopped => {
                    close(link).await;
                    return self.finish(unknown(), Some("terminated by request".to_owned()));
                }
                LinkEnd::Dropped(cause) => {
                    tracing::warn!(%host, port, %cause, "SSH connection lost");
                    let Some(max) = self.options.reconnect else {
                        return self.finish(
                            unknown(),
                            Some(format!("connection to {host}:{port} lost: {cause}")),
                        );
                    };
                    self.state.send_replace(State::Reconnecting {
                        cause: cause.clone(),
                    });
                    let notice = format!(
                        "\r\n--- connection to {host}:{port} lost ({cause}); reconnecting ---\r\n"
                    );
                    if !self.emit(notice.into_bytes()).await {
                        return self.finish(unknown(), Some("terminated by request".to_owned()));
                    }
                    match self.reconnect(max).await {
                        Ok(new_link) => {
                            link = new_link;
                            tracing::info!(%host, port, "SSH connection re-established");
                            self.state
                                .send_replace(State::Connected(Arc::clone(&link.write)));
                            let notice = format!("\r\n--- reconnected to {host}:{port} ---\r\n");
                            if !self.emit(notice.into_bytes()).await {
                                close(link).await;
                                return self
                                    .finish(unknown(), Some("terminated by request".to_owned()));
                            }
                        }
                        Err(reason) => return self.finish(unknown(), Some(reason)),
                    }
                }
            }
        }
    }

    /// Hands `chunk` to the reader; false if the session is being stopped or is gone.
    async fn emit(&mut self, chunk: Vec<u8>) -> bool {
        tokio::select! {
            sent = self.output.send(chunk) => sent.is_ok(),
            _ = self.stop.wait_for(|stop| *stop) => false,
        }
    }

    /// Follows one connection until it ends.
    async fn follow(&mut self, link: &mut Link) -> LinkEnd {
        for chunk in std::mem::take(&mut link.early) {
            if !self.emit(chunk).await {
                return LinkEnd::Stopped;
            }
        }
        let mut exit: Option<(ExitStatus, Option<String>)> = None;
        let linger = tokio::time::sleep(Duration::MAX);
        tokio::pin!(linger);
        loop {
            // The select only picks what happened; acting on it needs `self` whole.
            let event = tokio::select! {
                msg = link.read.wait() => Event::Channel(msg),
                changed = self.size.changed() => Event::Resized(changed.is_ok()),
                _ = self.stop.wait_for(|stop| *stop) => Event::Stop,
                _ = &mut linger, if exit.is_some() => Event::Lingered,
            };
            match event {
                Event::Channel(Some(ChannelMsg::Data { data }))
                | Event::Channel(Some(ChannelMsg::ExtendedData { data, .. })) => {
                    if !self.emit(data.to_vec()).await {
                        return LinkEnd::Stopped;
                    }
                }
                Event::Channel(Some(ChannelMsg::ExitStatus { exit_status })) => {
                    let code = i32::try_from(exit_status).unwrap_or(i32::MAX);
                    exit = Some((
                        ExitStatus {
                            code: Some(code),
                            signal: None,
                        },
                        None,
                    ));
                    linger
                        .as_mut()
                        .reset(tokio::time::Instant::now() + LINGER_AFTER_EXIT);
                }
                Event::Channel(Some(ChannelMsg::ExitSignal {
                    signal_name,
                    core_dumped,
                    error_message,
                    ..
                })) => {
                    exit = Some(exit_by_signal(&signal_name, core_dumped, &error_message));
                    linger
                        .as_mut()
                        .reset(tokio::time::Instant::now() + LINGER_AFTER_EXIT);
                }
                Event::Channel(Some(ChannelMsg::Close)) => {
                    return match exit {
                        Some((status, reason)) => LinkEnd::Exited(status, reason),
                        None => LinkEnd::Exited(
                            unknown(),
                            Some(format!(
                                "{}:{} closed the session without an exit status",
                                self.target.host, self.target.port
                            )),
                        ),
                    };
                }
                Event::Channel(Some(_)) => {}
                Event::Channel(None) => {
                    return match exit {
                        Some((status, reason)) => LinkEnd::Exited(status, reason),
                        None => LinkEnd::Dropped(drop_cause(link).await),
                    };
                }
                Event::Resized(false) | Event::Stop => return LinkEnd::Stopped,
                Event::Resized(true) => {
                    let (cols, rows) = *self.size.borrow_and_update();
                    if let Err(err) = link
                        .write
                        .window_change(cols.into(), rows.into(), 0, 0)
                        .await
                    {
                        tracing::debug!(host = %self.target.host, "window-change failed: {err}");
                    }
                }
                Event::Lingered => {
                    let (status, reason) = exit.take().expect("lingering after an exit");
                    return LinkEnd::Exited(status, reason);
                }
            }
        }
    }

    /// Reconnects with pauses doubling up to `max`, until it works, the session is stopped
    /// (`Err` with the reason), or the host's key no longer checks out.
    async fn reconnect(&mut self, max: Duration) -> Result<Link, String> {
        let stopped = || "terminated by request".to_owned();
        let mut pause = FIRST_BACKOFF.min(max);
        loop {
            tokio::select! {
                _ = tokio::time::sleep(pause) => {}
                _ = self.stop.wait_for(|stop| *stop) => return Err(stopped()),
            }
            let size = *self.size.borrow();
            let attempt = tokio::select! {
                attempt = connect(&self.target, &self.options, size) => attempt,
                _ = self.stop.wait_for(|stop| *stop) => return Err(stopped()),
            };
            match attempt {
                Ok(link) => return Ok(link),
                Err(
                    err @ (ConnectError::HostKeyChanged { .. }
                    | ConnectError::HostKeyRevoked { .. }
                    | ConnectError::UnknownHostKey { .. }),
                ) => return Err(format!("reconnecting failed: {err}")),
                Err(err) => {
                    tracing::info!(host = %self.target.host, port = self.target.port, "reconnect attempt failed: {err}");
                    pause = (pause * 2).min(max);
                }
            }
        }
    }

    /// Ends the session: the output ends first (so the reader drains it), then the state.
    fn finish(self, status: ExitStatus, reason: Option<String>) {
        let LinkTask { output, state, .. } = self;
        drop(output);
        state.send_replace(State::Ended { status, reason });
    }
}

/// Why a connection dropped, from russh's disconnect callback (which may come a moment after
/// the channel closes).
async fn drop_cause(link: &mut Link) -> String {
    let _ = tokio::time::timeout(Duration::from_secs(1), &mut link.handle).await;
    lock(&link.disconnect)
        .take()
        .unwrap_or_else(|| "the connection closed".to_owned())
}

/// Closes the channel and the connection, briefly: the far end may already be gone.
async fn close(link: Link) {
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        let _ = link.write.close().await;
        let _ = link
            .handle
            .disconnect(russh::Disconnect::ByApplication, "session ended", "en")
            .await;
    })
    .await;
}

fn unknown() -> ExitStatus {
    ExitStatus {
        code: None,
        signal: None,
    }
}

/// An `exit-signal` as an exit: the signal's number where this system knows the name,
/// otherwise a reason naming it.
fn exit_by_signal(signal: &Sig, core_dumped: bool, message: &str) -> (ExitStatus, Option<String>) {
    let name = match signal {
        Sig::ABRT => "ABRT",
        Sig::ALRM => "ALRM",
        Sig::FPE => "FPE",
        Sig::HUP => "HUP",
        Sig::ILL => "ILL",
        Sig::INT => "INT",
        Sig::KILL => "KILL",
        Sig::PIPE => "PIPE",
        Sig::QUIT => "QUIT",
        Sig::SEGV => "SEGV",
        Sig::TERM => "TERM",
        Sig::USR1 => "USR1",
        Sig::Custom(name) => name.as_str(),
    };
    let name = name.strip_prefix("SIG").unwrap_or(name);
    match nix::sys::signal::Signal::from_str(&format!("SIG{name}")) {
        Ok(signal) => (
            ExitStatus {
                code: None,
                signal: Some(signal as i32),
            },
            None,
        ),
        Err(_) => {
            let core = if core_dumped { " (core dumped)" } else { "" };
            let message = if message.is_empty() {
                String::new()
            } else {
                format!(": {message}")
            };
            (
                unknown(),
                Some(format!("killed by signal {name}{core}{message}")),
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options() -> SshOptions {
        SshOptions {
            connect_timeout: Duration::from_secs(5),
            keepalive: None,
            known_hosts: "/nonexistent/known_hosts".into(),
            accept_new_host_keys: false,
            key_files: Vec::new(),
            reconnect: None,
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
    fn exit_signals_map_to_numbers_where_known() {
        assert_eq!(
            exit_by_signal(&Sig::KILL, false, "").0.signal,
            Some(libc::SIGKILL)
        );
        assert_eq!(
            exit_by_signal(&Sig::Custom("USR2".into()), false, "")
                .0
                .signal,
            Some(libc::SIGUSR2)
        );
        let (status, reason) = exit_by_signal(&Sig::Custom("FROB".into()), true, "boom");
        assert_eq!((status.code, status.signal), (None, None));
        assert_eq!(
            reason.as_deref(),
            Some("killed by signal FROB (core dumped): boom")
        );
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
