//! One accepted connection: sniff its framing, serve it, and detach its clients when it ends.
//!
//! The first byte decides: a zero byte opens an attach stream (`pulsar attach`); `{` or `[`
//! (or leading whitespace) is newline-delimited JSON-RPC for scripts and the upstream desktop
//! client; anything else is HTTP, upgraded to a jsonrpsee WebSocket.

use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use jsonrpsee::Methods;
use jsonrpsee::server::{
    HttpRequest, ServerConfig, StopHandle, TowerServiceBuilder, serve_with_graceful_shutdown,
};
use tokio::io::Interest;
use tokio::net::UnixStream;
use tower::Service;

use super::{Peer, line};
use crate::audit::AuditLog;
use crate::session::SessionManager;
use crate::shutdown::Shutdown;

/// The WebSocket/HTTP service's future, named so the compiler need not infer its error type
/// through the spawned connection task.
type BoxedResponse = std::pin::Pin<
    Box<
        dyn std::future::Future<
                Output = Result<jsonrpsee::server::HttpResponse, jsonrpsee::core::BoxError>,
            > + Send,
    >,
>;

/// How long a new connection may stay silent before its first byte.
const FIRST_BYTE_TIMEOUT: Duration = Duration::from_secs(60);

/// Everything a connection needs, shared by all of them.
pub(crate) struct ConnectionContext {
    pub methods: Methods,
    pub service_builder:
        TowerServiceBuilder<tower::layer::util::Identity, tower::layer::util::Identity>,
    pub stop_handle: StopHandle,
    pub sessions: Arc<SessionManager>,
    pub max_request_bytes: u32,
    /// What attach streams need.
    pub attach: Arc<super::stream::StreamContext>,
    pub audit: Arc<dyn AuditLog>,
}

impl ConnectionContext {
    /// The jsonrpsee settings both framings share.
    pub fn server_config(max_request_bytes: u32) -> ServerConfig {
        ServerConfig::builder()
            .max_request_body_size(max_request_bytes)
            .max_response_body_size(16 * 1024 * 1024)
            // Per-connection queue of outgoing messages; a slow subscriber waits on its own
            // queue, which bounds the memory it can pin (≈ 64 × 22 KiB).
            .set_message_buffer_capacity(64)
            .max_connections(4096)
            .build()
    }
}

/// Serves `stream` until it closes or the daemon stops.
pub(crate) async fn serve(
    stream: UnixStream,
    peer: Peer,
    context: Arc<ConnectionContext>,
    mut shutdown: Shutdown,
) {
    let peeked = tokio::select! {
        peeked = tokio::time::timeout(FIRST_BYTE_TIMEOUT, peek_first_byte(&stream)) => peeked,
        // A silent connection must not hold up the daemon's stop.
        _ = shutdown.wait() => return,
    };
    let first = match peeked {
        Ok(Ok(Some(byte))) => byte,
        Ok(Ok(None)) => return, // closed without a word
        Ok(Err(err)) => {
            tracing::debug!(connection = peer.connection, "read failed: {err}");
            return;
        }
        Err(_) => {
            tracing::debug!(connection = peer.connection, "silent connection dropped");
            return;
        }
    };
    tracing::debug!(
        connection = peer.connection,
        pid = ?peer.pid,
        line_json = is_line_json(first),
        attach_stream = first == pulsar_protocol::stream::MAGIC,
        "connection accepted"
    );
    if first == pulsar_protocol::stream::MAGIC {
        super::stream::serve(stream, peer, Arc::clone(&context.attach), shutdown).await;
    } else if is_line_json(first) {
        let mut methods = context.methods.clone();
        methods.extensions_mut().insert(peer.clone());
        line::serve(
            stream,
            methods,
            Arc::clone(&context.sessions),
            context.max_request_bytes as usize,
            shutdown,
        )
        .await;
        connection_closed(&context, &peer);
    } else {
        serve_websocket(stream, peer, context).await;
    }
}

pub(super) fn is_line_json(first: u8) -> bool {
    matches!(first, b'{' | b'[') || first.is_ascii_whitespace()
}

fn connection_closed(context: &ConnectionContext, peer: &Peer) {
    context
        .sessions
        .connection_closed(peer.connection, &peer.default_client_id());
}

/// HTTP and WebSocket, through jsonrpsee's tower service.
async fn serve_websocket(stream: UnixStream, peer: Peer, context: Arc<ConnectionContext>) {
    let upgraded = Arc::new(AtomicBool::new(false));
    let service = {
        let context = Arc::clone(&context);
        let peer = peer.clone();
        let upgraded = Arc::clone(&upgraded);
        tower::service_fn(move |mut request: HttpRequest<hyper::body::Incoming>| {
            request.extensions_mut().insert(peer.clone());
            let mut service = context
                .service_builder
                .clone()
                .build(context.methods.clone(), context.stop_handle.clone());
            if jsonrpsee::server::ws::is_upgrade_request(&request) {
                upgraded.store(true, Ordering::Relaxed);
                // The WebSocket outlives this HTTP exchange; its end is the connection's end.
                let closed = service.on_session_closed();
                let context = Arc::clone(&context);
                let peer = peer.clone();
                tokio::spawn(async move {
                    closed.await;
                    connection_closed(&context, &peer);
                });
            }
            let response: BoxedResponse = Box::pin(async move { service.call(request).await });
            response
        })
    };
    if let Err(err) = serve_http(stream, service, context.stop_handle.clone()).await {
        tracing::debug!(connection = peer.connection, "connection ended: {err}");
    }
    if !upgraded.load(Ordering::Relaxed) {
        connection_closed(&context, &peer);
    }
}

/// Drives hyper over `stream`. A plain function returning a boxed `Send` future: inside the
/// async caller, rustc cannot prove the hyper future `Send` for every lifetime (a known
/// higher-ranked inference limitation), but with the concrete types here it can.
fn serve_http<S>(
    stream: UnixStream,
    service: S,
    stop_handle: StopHandle,
) -> std::pin::Pin<
    Box<dyn std::future::Future<Output = Result<(), jsonrpsee::core::BoxError>> + Send>,
>
where
    S: tower::Service<
            HttpRequest<hyper::body::Incoming>,
            Response = jsonrpsee::server::HttpResponse,
            Error = jsonrpsee::core::BoxError,
            Future = BoxedResponse,
        > + Clone
        + Send
        + 'static,
{
    Box::pin(serve_with_graceful_shutdown(
        stream,
        service,
        stop_handle.shutdown(),
    ))
}

/// The first byte, without consuming it; `None` if the peer closed first.
async fn peek_first_byte(stream: &UnixStream) -> std::io::Result<Option<u8>> {
    loop {
        stream.readable().await?;
        let mut byte = 0u8;
        let peeked = stream.try_io(Interest::READABLE, || {
            // SAFETY: one byte into a valid one-byte buffer.
            let n = unsafe {
                libc::recv(
                    stream.as_raw_fd(),
                    (&mut byte as *mut u8).cast(),
                    1,
                    libc::MSG_PEEK,
                )
            };
            if n < 0 {
                Err(std::io::Error::last_os_error())
            } else {
                Ok(n as usize)
            }
        });
        match peeked {
            Ok(0) => return Ok(None),
            Ok(_) => return Ok(Some(byte)),
            Err(err) if err.kind() == std::io::ErrorKind::WouldBlock => continue,
            Err(err) => return Err(err),
        }
    }
}
