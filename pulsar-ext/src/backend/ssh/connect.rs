//! Establishing one SSH connection chain: the request's fields, then OpenSSH's configuration,
//! then the daemon's defaults filled in; the `ProxyJump` hosts one inside the other; TCP
//! within the time limit, every host key checked against known_hosts, authentication, the PTY
//! and the shell.

use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use pulsar_protocol::{SshAuth, SshResolved, SshSpec};
use russh::client::{self, ChannelOpenHandle, DisconnectReason, Msg};
use russh::keys::PublicKeyOrCertificate;
use russh::{Channel, ChannelMsg, ChannelReadHalf, ChannelWriteHalf};
use tokio::sync::mpsc;

use super::auth::authenticate;
use super::config::{ConfigFile, ConfigFileError, HostConfig, StrictHostKeys};
use super::forward::Incoming;
use super::known_hosts;
use super::{ConnectError, SshOptions};

/// The terminal type the remote PTY is asked for, as local sessions set `TERM`.
const TERM: &str = "xterm-256color";
/// Unanswered keepalives before the connection counts as dropped, unless the configuration's
/// `ServerAliveCountMax` says otherwise.
const KEEPALIVE_MAX: usize = 3;

/// Where and how to connect: the spec with every default filled in, OpenSSH's configuration
/// applied under the request's own fields, and the jump hosts on the way. Holds the secrets,
/// so it has no derived `Debug`.
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
    /// Keepalive interval when the server is silent; `None`: none.
    pub(super) keepalive: Option<Duration>,
    /// Unanswered keepalives before the connection counts as dropped.
    pub(super) keepalive_max: usize,
    /// Longest the whole chain may take to connect, authenticate and start the shell.
    pub(super) connect_timeout: Duration,
    /// Jump hosts (`ProxyJump`), first hop first; each is a target without a command.
    pub(super) jumps: Vec<Target>,
    /// The OpenSSH configuration file read, if any.
    pub(super) config_file: Option<PathBuf>,
    /// Options in that file that are not applied, each named.
    pub(super) warnings: Vec<String>,
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Target")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("user", &self.user)
            .field("jumps", &self.jumps)
            .finish_non_exhaustive()
    }
}

/// A jump host as `ProxyJump` names it: `[user@]host[:port]` or `ssh://[user@]host[:port]`.
#[derive(Debug, PartialEq, Eq)]
struct Hop {
    user: Option<String>,
    host: String,
    port: Option<u16>,
}

fn parse_hop(text: &str) -> Result<Hop, String> {
    let rest = text.strip_prefix("ssh://").unwrap_or(text);
    let (user, rest) = match rest.rsplit_once('@') {
        Some((user, rest)) if !user.is_empty() => (Some(user.to_owned()), rest),
        Some(_) => return Err(format!("{text:?}: the user before @ is empty")),
        None => (None, rest),
    };
    let (host, port) = if let Some(bracketed) = rest.strip_prefix('[') {
        let (host, after) = bracketed
            .split_once(']')
            .ok_or_else(|| format!("{text:?}: missing ] after the IPv6 address"))?;
        (host, after.strip_prefix(':'))
    } else {
        match rest.split_once(':') {
            Some((_, port)) if port.contains(':') => (rest, None),
            Some((host, port)) => (host, Some(port)),
            None => (rest, None),
        }
    };
    if host.is_empty() || host.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!("{text:?}: no valid host"));
    }
    let port = port
        .map(|p| {
            p.parse::<u16>()
                .ok()
                .filter(|&p| p > 0)
                .ok_or_else(|| format!("{text:?}: port {p:?} is not a number in 1..=65535"))
        })
        .transpose()?;
    Ok(Hop {
        user,
        host: host.to_owned(),
        port,
    })
}

impl Target {
    /// The target with the OpenSSH configuration file (`options.config_file`) applied. Reads
    /// the file and its includes: call it on the blocking pool.
    pub(super) fn resolve(spec: &SshSpec, options: &SshOptions) -> Result<Self, ConnectError> {
        let file = match &options.config_file {
            Some(path) => ConfigFile::load(path).map_err(config_error)?,
            None => None,
        };
        Self::from_spec_with(spec, options, file.as_ref())
    }

    /// The target as the request and the daemon's settings alone give it (no configuration
    /// file).
    #[cfg(test)]
    pub(super) fn from_spec(spec: &SshSpec, options: &SshOptions) -> Result<Self, ConnectError> {
        Self::from_spec_with(spec, options, None)
    }

    pub(super) fn from_spec_with(
        spec: &SshSpec,
        options: &SshOptions,
        file: Option<&ConfigFile>,
    ) -> Result<Self, ConnectError> {
        let invalid = |field, reason: &str| ConnectError::InvalidSetting {
            field,
            reason: reason.to_owned(),
        };
        let alias = spec.host.trim();
        if alias.is_empty() {
            return Err(invalid("type.host", "must name a host"));
        }
        if alias.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(invalid("type.host", "must not contain spaces"));
        }
        if spec.port == Some(0) {
            return Err(invalid("type.port", "must be 1..=65535"));
        }
        if spec.user.as_deref().is_some_and(str::is_empty) {
            return Err(invalid("type.user", "must not be empty"));
        }
        if spec.command.as_deref().is_some_and(|c| c.trim().is_empty()) {
            return Err(invalid("type.command", "must not be empty"));
        }
        let home = expand_home(Path::new("~"));
        let lookup = |alias: &str| match file {
            Some(file) => file.lookup(&home, alias).map_err(config_error),
            None => Ok(HostConfig::default()),
        };
        let config = lookup(alias)?;
        let auth = spec.auth.clone().unwrap_or_default();
        let mut target = Self::with_config(
            alias,
            spec.port,
            spec.user.clone(),
            &config,
            &auth,
            spec.known_hosts.as_deref(),
            spec.accept_new_host_key,
            options,
        );
        target.command = spec.command.clone();
        target.passphrase = auth.passphrase.clone();
        target.password = auth.password.clone();
        target.config_file = file.map(|f| f.path.clone());
        let config_path = file.map(|f| f.path.clone()).unwrap_or_default();
        let hops = chain(
            &config.proxy_jump.clone().unwrap_or_default(),
            &lookup,
            &config_path,
            0,
        )?;
        for (hop, hop_config) in hops {
            let mut jump = Self::with_config(
                &hop.host,
                hop.port,
                hop.user,
                &hop_config,
                // The request's keys and agent choice serve the jump hosts too (never its
                // password: that is for the target alone).
                &SshAuth {
                    password: None,
                    ..auth.clone()
                },
                None,
                spec.accept_new_host_key,
                options,
            );
            jump.passphrase = auth.passphrase.clone();
            target.warnings.extend(
                std::mem::take(&mut jump.warnings)
                    .into_iter()
                    .map(|w| format!("jump host {}: {w}", hop.host)),
            );
            target.jumps.push(jump);
        }
        Ok(target)
    }

    /// One host of the chain: the request's explicit fields, then the configuration's, then
    /// the daemon's defaults.
    #[allow(clippy::too_many_arguments)]
    fn with_config(
        alias: &str,
        port: Option<u16>,
        user: Option<String>,
        config: &HostConfig,
        auth: &SshAuth,
        known_hosts: Option<&Path>,
        accept_new: Option<bool>,
        options: &SshOptions,
    ) -> Self {
        let (key_files, named_key_files) = if !auth.key_files.is_empty() {
            (
                auth.key_files.iter().map(|p| expand_home(p)).collect(),
                true,
            )
        } else if !config.identity_files.is_empty() {
            (config.identity_files.clone(), true)
        } else if !options.key_files.is_empty() {
            (options.key_files.clone(), true)
        } else {
            let defaults = ["id_ed25519", "id_ecdsa", "id_rsa"]
                .iter()
                .map(|name| expand_home(&Path::new("~/.ssh").join(name)))
                .collect();
            (defaults, false)
        };
        let keepalive = match config.server_alive_interval {
            Some(interval) if interval.is_zero() => None,
            Some(interval) => Some(interval),
            None => options.keepalive,
        };
        Self {
            host: config.host_name.clone().unwrap_or_else(|| alias.to_owned()),
            port: port.or(config.port).unwrap_or(22),
            user: user
                .or_else(|| config.user.clone())
                .unwrap_or_else(daemon_user),
            command: None,
            agent: auth
                .agent
                .unwrap_or(!config.identities_only.unwrap_or(false)),
            key_files,
            named_key_files,
            passphrase: None,
            password: None,
            known_hosts: known_hosts
                .map(expand_home)
                .or_else(|| config.known_hosts.clone())
                .unwrap_or_else(|| options.known_hosts.clone()),
            accept_new: accept_new
                .or(config
                    .strict_host_keys
                    .map(|s| s == StrictHostKeys::AcceptNew))
                .unwrap_or(options.accept_new_host_keys),
            keepalive,
            keepalive_max: config.server_alive_count_max.unwrap_or(KEEPALIVE_MAX),
            connect_timeout: config.connect_timeout.unwrap_or(options.connect_timeout),
            jumps: Vec::new(),
            config_file: None,
            warnings: config.warnings.clone(),
        }
    }

    /// What the session's info shows of this target: never a secret.
    pub(super) fn resolved(&self) -> SshResolved {
        SshResolved {
            host: self.host.clone(),
            port: self.port,
            user: self.user.clone(),
            identity_files: self.key_files.clone(),
            proxy_jump: self
                .jumps
                .iter()
                .map(|j| format!("{}@{}:{}", j.user, j.host, j.port))
                .collect(),
            config_file: self.config_file.clone(),
            warnings: self.warnings.clone(),
        }
    }

    pub(super) fn failed(&self, reason: impl Into<String>) -> ConnectError {
        ConnectError::Failed {
            host: self.host.clone(),
            port: self.port,
            reason: reason.into(),
        }
    }
}

/// Most jump hosts in one chain; more means a `ProxyJump` loop.
const MAX_HOPS: usize = 8;

/// The hosts to go through, first first, to reach a host whose `ProxyJump` is `hops`, as
/// `ssh -J` does: the first hop is itself reached through its own `ProxyJump` (recursively);
/// each later hop through the one before it (its own `ProxyJump` is overridden).
fn chain(
    hops: &[String],
    lookup: &dyn Fn(&str) -> Result<HostConfig, ConnectError>,
    config_path: &Path,
    depth: usize,
) -> Result<Vec<(Hop, HostConfig)>, ConnectError> {
    let bad = |reason: String| {
        config_error(ConfigFileError {
            path: config_path.to_owned(),
            reason,
        })
    };
    let mut out = Vec::new();
    for (i, text) in hops.iter().enumerate() {
        let hop = parse_hop(text).map_err(|reason| bad(format!("ProxyJump {reason}")))?;
        let config = lookup(&hop.host)?;
        if i == 0
            && let Some(own) = config.proxy_jump.as_ref().filter(|own| !own.is_empty())
        {
            if depth >= MAX_HOPS {
                return Err(bad(format!(
                    "ProxyJump of {} goes round in a loop (or past {MAX_HOPS} hops)",
                    hop.host
                )));
            }
            out.extend(chain(own, lookup, config_path, depth + 1)?);
        }
        out.push((hop, config));
    }
    if out.len() > MAX_HOPS {
        return Err(bad(format!("ProxyJump names more than {MAX_HOPS} hops")));
    }
    Ok(out)
}

fn config_error(err: ConfigFileError) -> ConnectError {
    ConnectError::Config {
        path: err.path,
        reason: err.reason,
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
    /// Where connections the server opens for remote forwards go (the session's forwards;
    /// nowhere for a jump host, whose offers are refused).
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

/// One established connection with its session channel, and the jump connections it runs
/// through (kept open as long as it is).
pub(super) struct Link {
    /// Shared with the session's forwards and transfers, which open channels on it.
    pub(super) handle: Arc<client::Handle<Callbacks>>,
    pub(super) read: ChannelReadHalf,
    pub(super) write: Arc<ChannelWriteHalf<Msg>>,
    /// Output that arrived while the terminal and shell were being set up.
    pub(super) early: Vec<Vec<u8>>,
    pub(super) disconnect: Arc<Mutex<Option<String>>>,
    /// The jump hosts' connections, first hop first: each carries the next one's TCP stream
    /// in a `direct-tcpip` channel.
    pub(super) jumps: Vec<client::Handle<Callbacks>>,
    /// Connections the server opened for remote forwards, for the forwards to take.
    pub(super) forwarded: mpsc::UnboundedReceiver<Incoming>,
}

/// Connects through the jump hosts, verifies every host, authenticates and starts the shell,
/// all within the target's time limit.
pub(super) async fn connect(
    target: &Target,
    (cols, rows): (u16, u16),
) -> Result<Link, ConnectError> {
    match tokio::time::timeout(target.connect_timeout, establish(target, (cols, rows))).await {
        Ok(result) => result,
        Err(_) => Err(ConnectError::Timeout {
            host: target.host.clone(),
            port: target.port,
            after: target.connect_timeout,
        }),
    }
}

async fn establish(target: &Target, (cols, rows): (u16, u16)) -> Result<Link, ConnectError> {
    let mut jumps: Vec<client::Handle<Callbacks>> = Vec::new();
    for hop in &target.jumps {
        // A jump host's forwarding offers go nowhere: none were asked of it.
        let (nowhere, _) = mpsc::unbounded_channel();
        let (mut handle, _) = match jumps.last() {
            None => handshake(open_tcp(hop).await?, hop, nowhere).await?,
            Some(via) => handshake(tunnel(via, hop).await?, hop, nowhere).await?,
        };
        authenticate(&mut handle, hop).await?;
        tracing::debug!(host = %hop.host, port = hop.port, "through jump host");
        jumps.push(handle);
    }
    let (forwarded, forwarded_rx) = mpsc::unbounded_channel();
    let (mut handle, disconnect) = match jumps.last() {
        None => handshake(open_tcp(target).await?, target, forwarded).await?,
        Some(via) => handshake(tunnel(via, target).await?, target, forwarded).await?,
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
        jumps,
        forwarded: forwarded_rx,
    })
}

/// A `direct-tcpip` channel from the jump host `via` to `next`'s port: the stream the next
/// SSH connection runs over (`ssh -J`).
async fn tunnel(
    via: &client::Handle<Callbacks>,
    next: &Target,
) -> Result<russh::ChannelStream<Msg>, ConnectError> {
    let channel = via
        .channel_open_direct_tcpip(next.host.clone(), next.port.into(), "127.0.0.1", 0)
        .await
        .map_err(|err| match err {
            russh::Error::ChannelOpenFailure(russh::ChannelOpenFailure::ConnectFailed) => {
                ConnectError::Refused {
                    host: next.host.clone(),
                    port: next.port,
                }
            }
            other => next.failed(format!("the jump host could not reach it: {other}")),
        })?;
    Ok(channel.into_stream())
}

/// The SSH handshake over `stream` with `target`'s host-key check; returns the connection and
/// where its disconnect reason will be.
async fn handshake<S>(
    stream: S,
    target: &Target,
    forwarded: mpsc::UnboundedSender<Incoming>,
) -> Result<(client::Handle<Callbacks>, Arc<Mutex<Option<String>>>), ConnectError>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let config = Arc::new(client::Config {
        keepalive_interval: target.keepalive,
        keepalive_max: target.keepalive_max,
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
        forwarded,
    };
    match client::connect_stream(config, stream, callbacks).await {
        Ok(handle) => Ok((handle, disconnect)),
        Err(err) => Err(lock(&refusal)
            .take()
            .unwrap_or_else(|| target.failed(format!("SSH handshake: {}", describe(&err))))),
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn options() -> SshOptions {
        SshOptions {
            connect_timeout: Duration::from_secs(5),
            keepalive: Some(Duration::from_secs(30)),
            known_hosts: "/k".into(),
            accept_new_host_keys: false,
            key_files: Vec::new(),
            reconnect: None,
            config_file: None,
        }
    }

    const CONFIG: &str = "Host box\n  HostName 10.1.2.3\n  User cfg\n  Port 2200\n  \
                          IdentityFile /keys/box\n  IdentitiesOnly yes\n  \
                          ServerAliveInterval 5\n  ServerAliveCountMax 2\n  \
                          ConnectTimeout 3\n  UserKnownHostsFile /kh\n  \
                          StrictHostKeyChecking accept-new\n  ProxyJump ops@gate:2022,inner\n\
                          Host gate\n  HostName gate.example.org\n  IdentityFile /keys/gate\n";

    fn target(spec: SshSpec) -> Target {
        let file = ConfigFile::from_text("/cfg", CONFIG);
        Target::from_spec_with(&spec, &options(), Some(&file)).unwrap()
    }

    #[test]
    fn the_configuration_fills_what_the_request_leaves_out() {
        let t = target(SshSpec {
            host: "box".into(),
            ..Default::default()
        });
        assert_eq!(
            (t.host.as_str(), t.port, t.user.as_str()),
            ("10.1.2.3", 2200, "cfg")
        );
        assert_eq!(t.key_files, [PathBuf::from("/keys/box")]);
        assert!(!t.agent, "IdentitiesOnly keeps the agent out");
        assert_eq!(t.keepalive, Some(Duration::from_secs(5)));
        assert_eq!(t.keepalive_max, 2);
        assert_eq!(t.connect_timeout, Duration::from_secs(3));
        assert_eq!(t.known_hosts, PathBuf::from("/kh"));
        assert!(t.accept_new);
        assert_eq!(t.config_file, Some(PathBuf::from("/cfg")));
    }

    #[test]
    fn explicit_request_fields_win_over_the_configuration() {
        let t = target(SshSpec {
            host: "box".into(),
            port: Some(22),
            user: Some("me".into()),
            auth: Some(SshAuth {
                agent: Some(true),
                key_files: vec!["/mine".into()],
                ..Default::default()
            }),
            known_hosts: Some("/my_kh".into()),
            accept_new_host_key: Some(false),
            ..Default::default()
        });
        assert_eq!(
            (t.host.as_str(), t.port, t.user.as_str()),
            ("10.1.2.3", 22, "me")
        );
        assert_eq!(t.key_files, [PathBuf::from("/mine")]);
        assert!(t.agent);
        assert_eq!(t.known_hosts, PathBuf::from("/my_kh"));
        assert!(!t.accept_new);
    }

    #[test]
    fn jump_hosts_are_resolved_through_the_configuration_too() {
        let t = target(SshSpec {
            host: "box".into(),
            auth: Some(SshAuth {
                password: Some("secret".into()),
                ..Default::default()
            }),
            ..Default::default()
        });
        let hops: Vec<_> = t
            .jumps
            .iter()
            .map(|j| (j.host.as_str(), j.port, j.user.as_str()))
            .collect();
        assert_eq!(
            hops,
            [
                ("gate.example.org", 2022, "ops"),
                ("inner", 22, daemon_user().as_str())
            ]
        );
        assert_eq!(t.jumps[0].key_files, [PathBuf::from("/keys/gate")]);
        assert!(
            t.jumps.iter().all(|j| j.password.is_none()),
            "the password is the target's alone"
        );
        assert_eq!(
            t.resolved().proxy_jump,
            [
                "ops@gate.example.org:2022".to_owned(),
                format!("{}@inner:22", daemon_user())
            ]
        );
    }

    #[test]
    fn hops_parse_like_ssh_dash_j() {
        let hop = |text: &str| parse_hop(text).map(|h| (h.user, h.host, h.port));
        assert_eq!(hop("gate"), Ok((None, "gate".into(), None)));
        assert_eq!(
            hop("ada@gate:2022"),
            Ok((Some("ada".into()), "gate".into(), Some(2022)))
        );
        assert_eq!(
            hop("ssh://ada@[::1]:22"),
            Ok((Some("ada".into()), "::1".into(), Some(22)))
        );
        assert!(hop("gate:0").is_err());
        assert!(hop("@gate").is_err());
    }

    #[test]
    fn a_first_hop_with_a_proxy_jump_of_its_own_is_reached_through_it() {
        let file = ConfigFile::from_text(
            "/cfg",
            "Host t\n  ProxyJump a,b\nHost a\n  ProxyJump outer\nHost b\n  ProxyJump ignored\n",
        );
        let spec = SshSpec {
            host: "t".into(),
            ..Default::default()
        };
        let t = Target::from_spec_with(&spec, &options(), Some(&file)).unwrap();
        let hosts: Vec<_> = t.jumps.iter().map(|j| j.host.as_str()).collect();
        assert_eq!(hosts, ["outer", "a", "b"]);
    }

    #[test]
    fn a_proxy_jump_loop_is_a_configuration_error() {
        let file = ConfigFile::from_text("/cfg", "Host a\n  ProxyJump b\nHost b\n  ProxyJump a\n");
        let spec = SshSpec {
            host: "a".into(),
            ..Default::default()
        };
        let err = Target::from_spec_with(&spec, &options(), Some(&file)).unwrap_err();
        assert!(err.to_string().contains("loop"), "{err}");
    }

    #[test]
    fn a_bad_hop_is_a_configuration_error() {
        let file = ConfigFile::from_text("/cfg", "Host b\n  ProxyJump gate:http\n");
        let spec = SshSpec {
            host: "b".into(),
            ..Default::default()
        };
        let err = Target::from_spec_with(&spec, &options(), Some(&file)).unwrap_err();
        assert!(matches!(err, ConnectError::Config { .. }), "{err}");
    }
}
