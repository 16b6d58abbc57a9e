//! Establishing one SSH connection: the request's defaults filled in, TCP within the time
//! limit, the host key checked against known_hosts, authentication, the PTY and the shell.

use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use pulsar_protocol::SshSpec;
use russh::client::{self, ChannelOpenHandle, DisconnectReason, Msg};
use russh::keys::PublicKeyOrCertificate;
use russh::{Channel, ChannelMsg, ChannelReadHalf, ChannelWriteHalf};
use tokio::sync::mpsc;

use super::auth::authenticate;
use super::forward::Incoming;
use super::known_hosts;
use super::{ConnectError, SshOptions};

/// The terminal type the remote PTY is asked for, as local sessions set `TERM`.
const TERM: &str = "xterm-256color";
/// Unanswered keepalives before the connection counts as dropped.
const KEEPALIVE_MAX: usize = 3;

/// Where and how to connect: the spec with every default filled in. Holds the secrets, so it
/// has no derived `Debug`.
#[derive(Clone)]
pub(super) struct Target {
    pub(super) host: String,
    pub(super) port: u16,
    pub(super) user: String,
    pub(super) command: Option<String>,
    pub(super) agent: bool,
    pub(super) key_files: Vec<PathBuf>,
    /// True when the key files were named (by the request or the config), so a missing one is
    /// worth a note in an authentication failure.
    pub(super) named_key_files: bool,
    pub(super) passphrase: Option<String>,
    pub(super) password: Option<String>,
    pub(super) known_hosts: PathBuf,
    pub(super) accept_new: bool,
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
    pub(super) fn from_spec(spec: &SshSpec, options: &SshOptions) -> Result<Self, ConnectError> {
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

    pub(super) fn failed(&self, reason: impl Into<String>) -> ConnectError {
        ConnectError::Failed {
            host: self.host.clone(),
            port: self.port,
            reason: reason.into(),
        }
    }
}

/// The name of the user the daemon runs as (the default remote user, as `ssh` does).
pub(super) fn daemon_user() -> String {
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
pub(super) struct Callbacks {
    host: String,
    port: u16,
    known_hosts: PathBuf,
    accept_new: bool,
    /// Why the host key was refused, for the error `connect` returns.
    refusal: Arc<Mutex<Option<ConnectError>>>,
    /// Why the connection ended, once it has.
    disconnect: Arc<Mutex<Option<String>>>,
    /// Where connections the server opens for remote forwards go (the session's forwards).
    forwarded: mpsc::UnboundedSender<Incoming>,
}

/// What checking a host key needs: reading (and maybe appending to) the known-hosts file,
/// which is disk work, so it runs on the blocking pool.
#[derive(Clone)]
struct HostKeyCheck {
    host: String,
    port: u16,
    known_hosts: PathBuf,
    accept_new: bool,
}

impl Callbacks {
    /// Checks `key` against the known-hosts file, off the runtime's workers.
    async fn verify(&self, key: &russh::keys::PublicKey) -> Result<(), ConnectError> {
        let check = HostKeyCheck {
            host: self.host.clone(),
            port: self.port,
            known_hosts: self.known_hosts.clone(),
            accept_new: self.accept_new,
        };
        let key = key.clone();
        let (host, port) = (self.host.clone(), self.port);
        tokio::task::spawn_blocking(move || check.verify(&key))
            .await
            .unwrap_or_else(|join| {
                Err(ConnectError::Failed {
                    host,
                    port,
                    reason: format!("checking the host key panicked: {join}"),
                })
            })
    }
}

impl HostKeyCheck {
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
            PublicKeyOrCertificate::PublicKey { key, .. } => self.verify(key).await,
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

    async fn server_channel_open_forwarded_tcpip(
        &mut self,
        channel: Channel<Msg>,
        connected_address: &str,
        connected_port: u32,
        originator_address: &str,
        originator_port: u32,
        reply: ChannelOpenHandle,
        _session: &mut client::Session,
    ) -> Result<(), Self::Error> {
        // Answered by the forward (once its target is reached); unclaimed, `reply` drops and
        // the server is told no.
        let _ = self.forwarded.send(Incoming {
            channel,
            address: connected_address.to_owned(),
            port: connected_port,
            originator: format!("{originator_address}:{originator_port}"),
            reply,
        });
        Ok(())
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

pub(super) fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// One established connection with its session channel.
pub(super) struct Link {
    /// Shared with the session's forwards, which open channels on it.
    pub(super) handle: Arc<client::Handle<Callbacks>>,
    pub(super) read: ChannelReadHalf,
    pub(super) write: Arc<ChannelWriteHalf<Msg>>,
    /// Output that arrived while the terminal and shell were being set up.
    pub(super) early: Vec<Vec<u8>>,
    pub(super) disconnect: Arc<Mutex<Option<String>>>,
    /// Connections the server opened for remote forwards, for the forwards to take.
    pub(super) forwarded: mpsc::UnboundedReceiver<Incoming>,
}

/// Connects, verifies the host, authenticates and starts the shell, within the time limit.
pub(super) async fn connect(
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
    let (forwarded, forwarded_rx) = mpsc::unbounded_channel();
    let callbacks = Callbacks {
        host: target.host.clone(),
        port: target.port,
        known_hosts: target.known_hosts.clone(),
        accept_new: target.accept_new,
        refusal: Arc::clone(&refusal),
        disconnect: Arc::clone(&disconnect),
        forwarded,
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
        handle: Arc::new(handle),
        read,
        write: Arc::new(write),
        early,
        disconnect,
        forwarded: forwarded_rx,
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
