//! An SSH session's port forwards: `local` (`ssh -L`: listen here, `direct-tcpip` from the
//! server), `remote` (`ssh -R`: `tcpip-forward`, the server's connections come back here to the
//! target) and `dynamic` (`ssh -D`: a SOCKS5 proxy here).
//!
//! They belong to the backend, never to a client. The link task tells them of each
//! connection ([`Forwards::attach`]) and of its loss ([`Forwards::detach`]): local listeners
//! stay open across a reconnect and remote ones are requested again. A connection whose
//! target cannot be reached is closed and counted; the forward stays up.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use pulsar_protocol::{ForwardId, ForwardInfo, ForwardKind, ForwardSpec, ForwardState, SessionId};
use russh::client::{ChannelOpenHandle, Handle, Msg};
use russh::{Channel, ChannelOpenFailure};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::connect::{Callbacks, Link, lock};
use super::socks;
use crate::backend::ForwardError;

/// Longest a forwarded connection waits to reach its target, or a SOCKS client to say where.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest removing a remote forward waits for the server to cancel it.
const CANCEL_TIMEOUT: Duration = Duration::from_secs(2);
/// The copy buffer of each direction of a forwarded connection.
const COPY_BUFFER: usize = 64 * 1024;

/// The current SSH connection, shared with the link task.
type Connection = Arc<Handle<Callbacks>>;

/// A connection the server opened for a remote forward (`forwarded-tcpip`), not yet answered.
pub(super) struct Incoming {
    pub(super) channel: Channel<Msg>,
    /// The address and port the server listens on, as requested.
    pub(super) address: String,
    pub(super) port: u32,
    /// Who connected to the server, for the log.
    pub(super) originator: String,
    pub(super) reply: ChannelOpenHandle,
}

/// One session's forwards, and the connection they ride on.
pub(super) struct Forwards {
    session_id: SessionId,
    /// `None` while the connection is down.
    connection: watch::Sender<Option<Connection>>,
    /// Oldest first.
    table: Mutex<Vec<Arc<Forward>>>,
    /// Set once the session has ended: no forward is added after it.
    closed: CancellationToken,
}

/// Where a forward listens, resolved.
enum Listen {
    /// A socket here (`local`, `dynamic`).
    Here(SocketAddr),
    /// On the server (`remote`): the address as sent in `tcpip-forward`, and the port.
    Server(String, u32),
}

/// One forward: what it is, its counters, and the stop that ends its tasks.
struct Forward {
    id: ForwardId,
    kind: ForwardKind,
    /// As bound (`127.0.0.1:8080`).
    listen: String,
    /// For `remote`: the address and port the server listens on.
    remote: Option<(String, u32)>,
    /// `host`, `port` connections go to (`local`, `remote`).
    target: Option<(String, u16)>,
    /// `remote`: requested again after a reconnect, maybe refused.
    state: Mutex<ForwardState>,
    open: AtomicU64,
    total: AtomicU64,
    failed: AtomicU64,
    bytes_in: AtomicU64,
    bytes_out: AtomicU64,
    last_error: Mutex<Option<String>>,
    /// Ends the listener and every connection.
    stop: CancellationToken,
    /// The listener's task (`local`, `dynamic`), awaited on removal so the port is free once
    /// `remove_forward` answers.
    listener: Mutex<Option<JoinHandle<()>>>,
}

impl Forwards {
    /// No forwards yet, and no connection.
    pub(super) fn new(session_id: SessionId) -> Arc<Self> {
        Arc::new(Self {
            session_id,
            connection: watch::channel(None).0,
            table: Mutex::new(Vec::new()),
            closed: CancellationToken::new(),
        })
    }

    /// The link task established `link`: forwards use its connection from now on, take the
    /// connections the server opens on it, and remote forwards are requested on it again.
    pub(super) fn attach(self: &Arc<Self>, link: &mut Link) {
        let connection = Arc::clone(&link.handle);
        let incoming = std::mem::replace(&mut link.forwarded, mpsc::unbounded_channel().1);
        self.connection.send_replace(Some(Arc::clone(&connection)));
        tokio::spawn(Arc::clone(self).take_incoming(incoming));
        for forward in self.all() {
            let Some((address, port)) = forward.remote.clone() else {
                continue;
            };
            let connection = Arc::clone(&connection);
            tokio::spawn(async move {
                match connection.tcpip_forward(address.as_str(), port).await {
                    Ok(_) => *lock(&forward.state) = ForwardState::Active,
                    Err(err) => {
                        let why = format!(
                            "the server refused to listen on {} again after reconnecting: {err}",
                            forward.listen
                        );
                        tracing::warn!(forward = %forward.id, "{why}");
                        *lock(&forward.last_error) = Some(why);
                        *lock(&forward.state) = ForwardState::Failed;
                    }
                }
            });
        }
    }

    /// The connection dropped: no new forwarded connection until the next [`attach`].
    ///
    /// [`attach`]: Forwards::attach
    pub(super) fn detach(&self) {
        self.connection.send_replace(None);
        for forward in self.all() {
            if forward.remote.is_some() {
                *lock(&forward.state) = ForwardState::Down;
            }
        }
    }

    /// The session has ended: every listener and connection closes.
    pub(super) fn close(&self) {
        self.closed.cancel();
        self.connection.send_replace(None);
        for forward in std::mem::take(&mut *lock(&self.table)) {
            forward.stop.cancel();
        }
    }

    fn all(&self) -> Vec<Arc<Forward>> {
        lock(&self.table).clone()
    }

    fn current(&self) -> Option<Connection> {
        self.connection.borrow().clone()
    }

    /// How many there are.
    pub(super) fn count(&self) -> usize {
        lock(&self.table).len()
    }

    /// Every forward's info, oldest first.
    pub(super) fn list(&self) -> Vec<ForwardInfo> {
        let connected = self.current().is_some();
        self.all()
            .iter()
            .map(|f| f.info(self.session_id, connected))
            .collect()
    }

    /// Adds forward `id` as `spec` asks: binds its listener here, or has the server listen.
    pub(super) async fn add(
        self: &Arc<Self>,
        id: ForwardId,
        spec: &ForwardSpec,
    ) -> Result<ForwardInfo, ForwardError> {
        let failed = |reason: &str| ForwardError::Failed {
            listen: spec.listen.clone(),
            reason: reason.to_owned(),
        };
        if self.closed.is_cancelled() {
            return Err(failed("the session has ended"));
        }
        if lock(&self.table).iter().any(|f| f.id == id) {
            return Err(ForwardError::Invalid {
                field: "forward_id",
                reason: format!("forward {id} exists already"),
            });
        }
        let target = parse_target(spec)?;
        let forward = match parse_listen(spec)? {
            Listen::Here(addr) => {
                let listener = TcpListener::bind(addr).await.map_err(|err| {
                    if err.kind() == std::io::ErrorKind::AddrInUse {
                        ForwardError::AddressInUse {
                            listen: addr.to_string(),
                        }
                    } else {
                        failed(&format!("cannot listen on {addr}: {err}"))
                    }
                })?;
                let bound = listener
                    .local_addr()
                    .map_err(|err| failed(&err.to_string()))?;
                let forward =
                    Arc::new(Forward::new(id, spec.kind, bound.to_string(), None, target));
                let task = tokio::spawn(Arc::clone(self).serve(Arc::clone(&forward), listener));
                *lock(&forward.listener) = Some(task);
                forward
            }
            Listen::Server(address, port) => {
                let Some(connection) = self.current() else {
                    return Err(failed(
                        "the SSH connection is down (reconnecting); add it again once it is back",
                    ));
                };
                let shown = if address.is_empty() {
                    "*".to_owned()
                } else {
                    show_host(&address)
                };
                let listen = |port| format!("{shown}:{port}");
                let given = connection
                    .tcpip_forward(address.as_str(), port)
                    .await
                    .map_err(|err| match err {
                        russh::Error::RequestDenied => ForwardError::Refused {
                            listen: listen(port),
                            reason: "request denied".to_owned(),
                        },
                        other => failed(&other.to_string()),
                    })?;
                let port = if port == 0 { given } else { port };
                Arc::new(Forward::new(
                    id,
                    spec.kind,
                    listen(port),
                    Some((address, port)),
                    target,
                ))
            }
        };
        lock(&self.table).push(Arc::clone(&forward));
        if self.closed.is_cancelled() {
            // The session ended while this one was being set up.
            forward.stop.cancel();
            lock(&self.table).retain(|f| f.id != id);
            return Err(failed("the session has ended"));
        }
        tracing::info!(session = %self.session_id, forward = %id, kind = spec.kind.as_str(), listen = %forward.listen, "port forward added");
        Ok(forward.info(self.session_id, self.current().is_some()))
    }

    /// Keeps saved forward `id`, which could not be re-established (`why`), listed as
    /// `failed` with `why` as its last error: it listens nowhere, and can be removed.
    pub(super) fn keep_failed(&self, id: ForwardId, spec: &ForwardSpec, why: String) {
        let mut table = lock(&self.table);
        if self.closed.is_cancelled() || table.iter().any(|f| f.id == id) {
            return;
        }
        let target = parse_target(spec).ok().flatten();
        let forward = Forward::new(id, spec.kind, spec.listen.clone(), None, target);
        *lock(&forward.state) = ForwardState::Failed;
        *lock(&forward.last_error) = Some(why);
        table.push(Arc::new(forward));
    }

    /// Removes forward `id`; once this returns its port is free again.
    pub(super) async fn remove(&self, id: ForwardId) -> Result<(), ForwardError> {
        let forward = {
            let mut table = lock(&self.table);
            let at = table
                .iter()
                .position(|f| f.id == id)
                .ok_or(ForwardError::NotFound(id))?;
            table.remove(at)
        };
        forward.stop.cancel();
        let listener = lock(&forward.listener).take();
        if let Some(task) = listener {
            let _ = task.await;
        }
        if let (Some((address, port)), Some(connection)) = (&forward.remote, self.current()) {
            let cancel = connection.cancel_tcpip_forward(address.as_str(), *port);
            if let Ok(Err(err)) = tokio::time::timeout(CANCEL_TIMEOUT, cancel).await {
                tracing::debug!(forward = %id, "cancelling the remote forward: {err}");
            }
        }
        tracing::info!(session = %self.session_id, forward = %id, "port forward removed");
        Ok(())
    }

    /// Accepts on a local or dynamic forward's listener until it is stopped.
    async fn serve(self: Arc<Self>, forward: Arc<Forward>, listener: TcpListener) {
        loop {
            let accepted = tokio::select! {
                accepted = listener.accept() => accepted,
                _ = forward.stop.cancelled() => return,
            };
            match accepted {
                Ok((stream, peer)) => {
                    let _ = stream.set_nodelay(true);
                    let (forwards, forward) = (Arc::clone(&self), Arc::clone(&forward));
                    tokio::spawn(async move {
                        let stop = forward.stop.clone();
                        tokio::select! {
                            _ = forwards.open_outward(&forward, stream, peer) => {}
                            _ = stop.cancelled() => {}
                        }
                    });
                }
                Err(err) => {
                    // Out of descriptors, usually: pause rather than spin.
                    forward.failed(format!("accepting a connection: {err}"));
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }

    /// Carries one connection accepted here through a `direct-tcpip` channel: to the target
    /// (`local`) or where the SOCKS client asks (`dynamic`).
    async fn open_outward(&self, forward: &Forward, mut stream: TcpStream, peer: SocketAddr) {
        let dynamic = forward.kind == ForwardKind::Dynamic;
        let (host, port) = match &forward.target {
            Some(target) => target.clone(),
            None => match tokio::time::timeout(CONNECT_TIMEOUT, socks::accept(&mut stream)).await {
                Ok(Ok(target)) => target,
                Ok(Err(err)) => return forward.failed(format!("from {peer}: {err}")),
                Err(_) => {
                    return forward.failed(format!("from {peer}: the SOCKS handshake timed out"));
                }
            },
        };
        let Some(connection) = self.current() else {
            if dynamic {
                let _ = socks::send_reply(&mut stream, socks::reply::GENERAL_FAILURE).await;
            }
            return forward.failed(format!(
                "to {}: the SSH connection is down (reconnecting)",
                show_target(&host, port)
            ));
        };
        let opened = tokio::time::timeout(
            CONNECT_TIMEOUT,
            connection.channel_open_direct_tcpip(
                host.as_str(),
                port.into(),
                peer.ip().to_string(),
                peer.port().into(),
            ),
        )
        .await;
        drop(connection);
        let failure = match opened {
            Ok(Ok(channel)) => {
                if dynamic
                    && let Err(err) = socks::send_reply(&mut stream, socks::reply::SUCCEEDED).await
                {
                    return forward.failed(format!("from {peer}: {err}"));
                }
                return forward.carry(stream, channel).await;
            }
            Ok(Err(err)) => open_failure(&err),
            Err(_) => "the server did not answer in time".to_owned(),
        };
        if dynamic {
            let _ = socks::send_reply(&mut stream, socks::reply::CONNECTION_REFUSED).await;
        }
        forward.failed(format!(
            "to {} (from the server): {failure}",
            show_target(&host, port)
        ));
    }

    /// Takes the connections the server opens for remote forwards, until the connection ends.
    async fn take_incoming(self: Arc<Self>, mut incoming: mpsc::UnboundedReceiver<Incoming>) {
        while let Some(connection) = incoming.recv().await {
            let forward = self.all().into_iter().find(|f| {
                f.remote
                    .as_ref()
                    .is_some_and(|(_, p)| *p == connection.port)
            });
            let Some(forward) = forward else {
                tracing::debug!(session = %self.session_id, address = %connection.address, port = connection.port, "a forwarded connection for no forward: refused");
                continue;
            };
            tokio::spawn(async move {
                let stop = forward.stop.clone();
                tokio::select! {
                    _ = forward.open_inward(connection) => {}
                    _ = stop.cancelled() => {}
                }
            });
        }
    }
}

impl Forward {
    fn new(
        id: ForwardId,
        kind: ForwardKind,
        listen: String,
        remote: Option<(String, u32)>,
        target: Option<(String, u16)>,
    ) -> Self {
        Self {
            id,
            kind,
            listen,
            remote,
            target,
            state: Mutex::new(ForwardState::Active),
            open: AtomicU64::new(0),
            total: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            bytes_in: AtomicU64::new(0),
            bytes_out: AtomicU64::new(0),
            last_error: Mutex::new(None),
            stop: CancellationToken::new(),
            listener: Mutex::new(None),
        }
    }

    fn info(&self, session_id: SessionId, connected: bool) -> ForwardInfo {
        let state = match *lock(&self.state) {
            ForwardState::Failed => ForwardState::Failed,
            _ if !connected => ForwardState::Down,
            state => state,
        };
        ForwardInfo {
            id: self.id,
            session_id,
            kind: self.kind,
            listen: self.listen.clone(),
            target: self
                .target
                .as_ref()
                .map(|(host, port)| show_target(host, *port)),
            state,
            connections: self.open.load(Ordering::Relaxed),
            total_connections: self.total.load(Ordering::Relaxed),
            failed_connections: self.failed.load(Ordering::Relaxed),
            bytes_in: self.bytes_in.load(Ordering::Relaxed),
            bytes_out: self.bytes_out.load(Ordering::Relaxed),
            last_error: lock(&self.last_error).clone(),
        }
    }

    /// One connection could not be carried: counted and remembered; the forward stays up.
    fn failed(&self, why: String) {
        tracing::info!(forward = %self.id, listen = %self.listen, "forwarded connection failed: {why}");
        self.failed.fetch_add(1, Ordering::Relaxed);
        *lock(&self.last_error) = Some(why);
    }

    /// Connects a connection the server opened (remote forward) to the target, then answers
    /// the server: accepted and carried, or refused.
    async fn open_inward(&self, incoming: Incoming) {
        let Some((host, port)) = self.target.clone() else {
            return;
        };
        let target = show_target(&host, port);
        let connected =
            tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect((host.as_str(), port))).await;
        match connected {
            Ok(Ok(stream)) => {
                let _ = stream.set_nodelay(true);
                incoming.reply.accept().await;
                self.carry(stream, incoming.channel).await;
            }
            Ok(Err(err)) => {
                incoming
                    .reply
                    .reject(ChannelOpenFailure::ConnectFailed)
                    .await;
                self.failed(format!(
                    "to {target} (from {} on the server): {err}",
                    incoming.originator
                ));
            }
            Err(_) => {
                incoming
                    .reply
                    .reject(ChannelOpenFailure::ConnectFailed)
                    .await;
                self.failed(format!("to {target}: connecting timed out"));
            }
        }
    }

    /// Copies both ways between `stream` and `channel` until both ends are done (or one
    /// fails), counting the bytes.
    async fn carry(&self, stream: TcpStream, channel: Channel<Msg>) {
        // Counted open until this ends, however it ends (a removal drops it mid-copy).
        let _open = OpenConnection::count(&self.open);
        self.total.fetch_add(1, Ordering::Relaxed);
        let (mut from_peer, mut to_peer) = stream.into_split();
        let (mut from_ssh, mut to_ssh) = tokio::io::split(channel.into_stream());
        let outward = copy(&mut from_peer, &mut to_ssh, &self.bytes_out);
        let inward = copy(&mut from_ssh, &mut to_peer, &self.bytes_in);
        if let Err(err) = tokio::try_join!(outward, inward) {
            tracing::debug!(forward = %self.id, "forwarded connection ended: {err}");
        }
    }
}

/// One open connection in a forward's count, for as long as it lives.
struct OpenConnection<'a>(&'a AtomicU64);

impl<'a> OpenConnection<'a> {
    fn count(open: &'a AtomicU64) -> Self {
        open.fetch_add(1, Ordering::Relaxed);
        Self(open)
    }
}

impl Drop for OpenConnection<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Copies `from` into `to` until the end, then passes the end on (shutdown), counting bytes.
async fn copy<R, W>(from: &mut R, to: &mut W, count: &AtomicU64) -> std::io::Result<()>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut buf = vec![0u8; COPY_BUFFER];
    loop {
        let n = from.read(&mut buf).await?;
        if n == 0 {
            return to.shutdown().await;
        }
        to.write_all(&buf[..n]).await?;
        count.fetch_add(n as u64, Ordering::Relaxed);
    }
}

/// A refused `direct-tcpip`, in words.
fn open_failure(err: &russh::Error) -> String {
    match err {
        russh::Error::ChannelOpenFailure(ChannelOpenFailure::ConnectFailed) => {
            "connection refused or unreachable".to_owned()
        }
        russh::Error::ChannelOpenFailure(ChannelOpenFailure::AdministrativelyProhibited) => {
            "the server forbids forwarding there".to_owned()
        }
        other => other.to_string(),
    }
}

/// `host:port`, an IPv6 host in brackets.
fn show_target(host: &str, port: u16) -> String {
    format!("{}:{port}", show_host(host))
}

fn show_host(host: &str) -> String {
    if host.contains(':') {
        format!("[{host}]")
    } else {
        host.to_owned()
    }
}

/// Splits `[host:]port`; a host may be an IPv6 address in brackets.
fn split_host_port(text: &str) -> Result<(Option<String>, u16), String> {
    let text = text.trim();
    let (host, port) = match text.rsplit_once(':') {
        None => (None, text),
        Some((host, port)) => {
            let host = match host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
                Some(inner) => inner,
                None if host.contains(':') => {
                    return Err("write an IPv6 address in brackets, as [::1]:8080".to_owned());
                }
                None => host,
            };
            if host.is_empty() {
                return Err("the host is empty".to_owned());
            }
            (Some(host.to_owned()), port)
        }
    };
    let port = port
        .parse::<u16>()
        .map_err(|_| format!("{port:?} is not a port (0..=65535)"))?;
    Ok((host, port))
}

/// Where `spec` listens, refusing a non-loopback address unless allowed.
fn parse_listen(spec: &ForwardSpec) -> Result<Listen, ForwardError> {
    let invalid = |reason: String| ForwardError::Invalid {
        field: "listen",
        reason,
    };
    let (host, port) = split_host_port(&spec.listen).map_err(invalid)?;
    let exposed = || {
        invalid(format!(
            "{} is not a loopback address: other machines could connect; pass \
             allow_non_loopback to mean it",
            spec.listen
        ))
    };
    match spec.kind {
        ForwardKind::Local | ForwardKind::Dynamic => {
            let ip = match host.as_deref() {
                None | Some("localhost") => IpAddr::V4(Ipv4Addr::LOCALHOST),
                Some("*") => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
                Some(host) => host.parse::<IpAddr>().map_err(|_| {
                    invalid(format!(
                        "{host:?} is not an IP address, localhost or * (names are not resolved)"
                    ))
                })?,
            };
            if !ip.is_loopback() && !spec.allow_non_loopback {
                return Err(exposed());
            }
            Ok(Listen::Here(SocketAddr::new(ip, port)))
        }
        ForwardKind::Remote => {
            let host = host.unwrap_or_else(|| "127.0.0.1".to_owned());
            let loopback =
                host == "localhost" || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback());
            if !loopback && !spec.allow_non_loopback {
                return Err(exposed());
            }
            // OpenSSH's spelling of "every address".
            let host = if host == "*" { String::new() } else { host };
            Ok(Listen::Server(host, port.into()))
        }
    }
}

/// Where `spec`'s connections go: required for local and remote, absent for dynamic.
fn parse_target(spec: &ForwardSpec) -> Result<Option<(String, u16)>, ForwardError> {
    let invalid = |reason: &str| ForwardError::Invalid {
        field: "target",
        reason: reason.to_owned(),
    };
    match (spec.kind, spec.target.as_deref()) {
        (ForwardKind::Dynamic, None) => Ok(None),
        (ForwardKind::Dynamic, Some(_)) => Err(invalid(
            "a dynamic forward has no target: the SOCKS client names it",
        )),
        (_, None) => Err(invalid(
            "a local or remote forward needs a target host:port",
        )),
        (_, Some(text)) => match split_host_port(text) {
            Ok((Some(host), port)) if port != 0 => Ok(Some((host, port))),
            Ok((Some(_), _)) => Err(invalid("the target's port must be 1..=65535")),
            Ok((None, _)) => Err(invalid("must be host:port")),
            Err(reason) => Err(invalid(&reason)),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(kind: ForwardKind, listen: &str, target: Option<&str>) -> ForwardSpec {
        ForwardSpec {
            kind,
            listen: listen.into(),
            target: target.map(Into::into),
            allow_non_loopback: false,
        }
    }

    fn invalid_field(spec: &ForwardSpec) -> &'static str {
        match parse_listen(spec).and_then(|_| parse_target(spec)) {
            Err(ForwardError::Invalid { field, .. }) => field,
            other => panic!("expected an invalid field, got {:?}", other.err()),
        }
    }

    #[test]
    fn listen_defaults_to_loopback() {
        let Listen::Here(addr) = parse_listen(&spec(ForwardKind::Dynamic, "1080", None)).unwrap()
        else {
            panic!("a local listener");
        };
        assert_eq!(addr, "127.0.0.1:1080".parse().unwrap());
        let Listen::Here(addr) =
            parse_listen(&spec(ForwardKind::Local, "[::1]:0", Some("h:1"))).unwrap()
        else {
            panic!("a local listener");
        };
        assert_eq!(addr, "[::1]:0".parse().unwrap());
        let Listen::Server(host, port) =
            parse_listen(&spec(ForwardKind::Remote, "9000", Some("h:1"))).unwrap()
        else {
            panic!("a server listener");
        };
        assert_eq!((host.as_str(), port), ("127.0.0.1", 9000));
    }

    #[test]
    fn non_loopback_listen_needs_to_be_allowed() {
        for (kind, listen) in [
            (ForwardKind::Local, "0.0.0.0:8080"),
            (ForwardKind::Dynamic, "*:1080"),
            (ForwardKind::Remote, "*:9000"),
            (ForwardKind::Remote, "example.org:9000"),
        ] {
            let mut asked = spec(kind, listen, Some("h:1"));
            assert_eq!(invalid_field(&asked), "listen", "{listen}");
            asked.allow_non_loopback = true;
            assert!(parse_listen(&asked).is_ok(), "{listen} when allowed");
        }
    }

    #[test]
    fn bad_addresses_are_named_by_their_field() {
        assert_eq!(
            invalid_field(&spec(ForwardKind::Local, "x", Some("h:1"))),
            "listen"
        );
        assert_eq!(
            invalid_field(&spec(ForwardKind::Local, "::1:80", Some("h:1"))),
            "listen"
        );
        assert_eq!(
            invalid_field(&spec(ForwardKind::Local, "8080", None)),
            "target"
        );
        assert_eq!(
            invalid_field(&spec(ForwardKind::Local, "8080", Some("80"))),
            "target"
        );
        assert_eq!(
            invalid_field(&spec(ForwardKind::Local, "8080", Some("h:0"))),
            "target"
        );
        assert_eq!(
            invalid_field(&spec(ForwardKind::Dynamic, "1080", Some("h:1"))),
            "target"
        );
        assert_eq!(
            parse_target(&spec(ForwardKind::Remote, "1", Some("[::1]:22"))).unwrap(),
            Some(("::1".to_owned(), 22))
        );
    }
}
