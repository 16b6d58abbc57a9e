//! One vetted desktop connection: the WebSocket handshake (path and `Origin`), then the
//! session's screen and its live output out as base64 text frames, and input in.
//!
//! Any byte stream will do (the listener's TCP connection; an in-memory pipe for the fuzz
//! target): whose it is was checked before it got here.
//!
//! Better than upstream's raw relay: the first frame redraws the current screen exactly (the
//! session's snapshot) and the stream goes on from the snapshot's offset, so nothing is
//! missed or repeated; a reader that falls behind (its bytes left the ring, or it is more
//! than [`RESYNC_BACKLOG`] behind) is sent a fresh snapshot instead of the backlog. The
//! session never waits for this socket: the reader follows the ring at its own pace.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use pulsar_protocol::ClientMode;
use soketto::handshake::Server;
use soketto::handshake::server::Response;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_util::compat::{Compat, TokioAsyncReadCompatExt};
use uuid::Uuid;

use super::DesktopContext;
use crate::audit::AuditRecord;
use crate::rpc::peer::next_connection;
use crate::session::{OutputReader, Session, StreamEvent};
use crate::shutdown::Shutdown;

/// Longest a vetted peer may take to send its handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// A reader further behind the output than this gets a fresh snapshot instead of the bytes.
pub(super) const RESYNC_BACKLOG: u64 = 256 * 1024;
/// Resets the client's terminal (RIS) before a resynchronising snapshot, which redraws on a
/// blank terminal.
const RESET: &[u8] = b"\x1bc";
/// Upstream's answer for an id that names no session.
const NOT_FOUND: &str = "Error: Session not found";
/// Upstream's answer for a path whose id is not a UUID.
const INVALID_ID: &str = "Error: Invalid session ID";

/// What a desktop connection can be served over.
pub(crate) trait DesktopStream: AsyncRead + AsyncWrite + Unpin + Send + 'static {}

impl<S: AsyncRead + AsyncWrite + Unpin + Send + 'static> DesktopStream for S {}

type Sender<S> = soketto::Sender<Compat<S>>;

/// Serves one connection whose peer (`uid`, at `peer`) was checked.
pub(super) async fn serve<S: DesktopStream>(
    stream: S,
    peer: SocketAddr,
    uid: u32,
    context: Arc<DesktopContext>,
    mut shutdown: Shutdown,
) {
    let mut server = Server::new(stream.compat());
    let request = tokio::select! {
        request = tokio::time::timeout(HANDSHAKE_TIMEOUT, server.receive_request()) => request,
        _ = shutdown.wait() => return,
    };
    let (key, path, origin) = match request {
        Ok(Ok(request)) => (
            request.key(),
            request.path().to_owned(),
            request
                .headers()
                .origin
                .map(|o| String::from_utf8_lossy(o).into_owned()),
        ),
        Ok(Err(err)) => {
            tracing::debug!(%peer, "desktop handshake failed: {err}");
            let _ = server
                .send_response(&Response::Reject { status_code: 400 })
                .await;
            return;
        }
        Err(_) => {
            tracing::debug!(%peer, "desktop handshake timed out");
            return;
        }
    };
    // A web page's WebSocket always says where it comes from; only the desktop's own
    // pages (and native clients, which send no Origin) may in.
    if let Some(origin) = &origin
        && !context
            .origins
            .iter()
            .any(|allowed| allowed.eq_ignore_ascii_case(origin))
    {
        context.refused(peer, Some(uid), format!("origin {origin:?} is not allowed"));
        let _ = server
            .send_response(&Response::Reject { status_code: 403 })
            .await;
        return;
    }
    let route = path.split('?').next().unwrap_or_default();
    let Some(id) = route.strip_prefix("/ws/") else {
        tracing::debug!(%peer, path, "desktop request for an unknown path");
        let _ = server
            .send_response(&Response::Reject { status_code: 404 })
            .await;
        return;
    };
    let id = id.trim_end_matches('/').to_owned();
    if server
        .send_response(&Response::Accept {
            key,
            protocol: None,
        })
        .await
        .is_err()
    {
        return;
    }
    let mut builder = server.into_builder();
    // Base64 input is a third larger than the bytes it carries.
    builder.set_max_message_size(context.max_input_bytes / 3 * 4 + 16);
    let (mut sender, receiver) = builder.finish();

    let session = match Uuid::parse_str(&id) {
        Err(_) => Err(INVALID_ID),
        Ok(id) => context.sessions.get(id).map_err(|_| NOT_FOUND),
    };
    let session = match session {
        Ok(session) => session,
        Err(answer) => {
            tracing::debug!(%peer, id, "desktop asked for no session: {answer}");
            let _ = sender.send_text(answer).await;
            let _ = sender.close().await;
            return;
        }
    };
    let connection = next_connection();
    let client_id = format!("desktop-{connection}");
    let live = session.is_alive();
    if live
        && let Err(err) = context.sessions.attach(
            session.id(),
            &client_id,
            connection,
            ClientMode::Interactive,
        )
    {
        let _ = sender.send_text(format!("Error: {err}")).await;
        let _ = sender.close().await;
        return;
    }
    tracing::debug!(%peer, session = %session.id(), client = %client_id, "desktop attached");
    context.audit.record(AuditRecord {
        action: "desktop_attach",
        session_id: Some(session.id()),
        uid: Some(uid),
        pid: None,
        detail: format!(
            "client={client_id} origin={}",
            origin.as_deref().unwrap_or("-")
        ),
    });

    let mut input = tokio::spawn(read_input(
        receiver,
        Arc::clone(&session),
        client_id.clone(),
        connection,
        context.max_input_bytes,
    ));
    let ended = tokio::select! {
        ended = write_output(&mut sender, &session) => ended,
        _ = &mut input => Ended::Peer,
        _ = shutdown.wait() => Ended::Daemon,
    };
    input.abort();
    if !matches!(ended, Ended::Peer) {
        let _ = sender.close().await;
    }
    if live {
        context.sessions.connection_closed(connection, &client_id);
    }
    tracing::debug!(%peer, session = %session.id(), ?ended, "desktop connection closed");
}

/// Why a connection's output stopped.
#[derive(Debug)]
enum Ended {
    /// The session ended (after its last output).
    Session,
    /// The peer closed or stopped answering.
    Peer,
    /// The daemon is stopping.
    Daemon,
}

/// Sends the snapshot, then the output from its offset, resynchronising when behind.
async fn write_output<S: DesktopStream>(sender: &mut Sender<S>, session: &Arc<Session>) -> Ended {
    let snapshot = session.snapshot(0);
    if send(sender, snapshot.data.as_bytes()).await.is_err() {
        return Ended::Peer;
    }
    let mut reader = match OutputReader::new(Arc::clone(session), Some(snapshot.offset)) {
        Ok(reader) => reader,
        Err(_) => return Ended::Session,
    };
    loop {
        let event = reader.next().await;
        let behind = match &event {
            Some(StreamEvent::Output { offset, data }) => session
                .output_offset()
                .saturating_sub(offset + data.len() as u64),
            _ => 0,
        };
        let sent = match event {
            None | Some(StreamEvent::Exited(_)) => return Ended::Session,
            // The desktop sizes its own terminal.
            Some(StreamEvent::Resized { .. }) => Ok(()),
            Some(StreamEvent::Output { data, .. }) if behind <= RESYNC_BACKLOG => {
                send(sender, &data).await
            }
            Some(StreamEvent::Output { .. }) | Some(StreamEvent::Lagged { .. }) => {
                tracing::debug!(session = %session.id(), behind, "desktop reader behind: resynchronising");
                let snapshot = session.snapshot(0);
                let mut frame = RESET.to_vec();
                frame.extend_from_slice(snapshot.data.as_bytes());
                match OutputReader::new(Arc::clone(session), Some(snapshot.offset)) {
                    Ok(fresh) => reader = fresh,
                    Err(_) => return Ended::Session,
                }
                send(sender, &frame).await
            }
        };
        if sent.is_err() {
            return Ended::Peer;
        }
    }
}

/// One text frame: the base64 of `bytes`.
async fn send<S: DesktopStream>(
    sender: &mut Sender<S>,
    bytes: &[u8],
) -> Result<(), soketto::connection::Error> {
    sender.send_text_owned(STANDARD.encode(bytes)).await?;
    sender.flush().await
}

/// Takes the peer's frames as input until it closes: text frames are base64, binary frames
/// raw bytes.
async fn read_input<S: DesktopStream>(
    mut receiver: soketto::Receiver<Compat<S>>,
    session: Arc<Session>,
    client_id: String,
    connection: u64,
    max_input_bytes: usize,
) {
    let mut message = Vec::new();
    loop {
        message.clear();
        let bytes = match receiver.receive_data(&mut message).await {
            Ok(soketto::Data::Binary(_)) => std::mem::take(&mut message),
            Ok(soketto::Data::Text(_)) => match STANDARD.decode(message.trim_ascii()) {
                Ok(bytes) => bytes,
                Err(err) => {
                    tracing::debug!(session = %session.id(), "desktop input is not base64: {err}");
                    continue;
                }
            },
            Err(err) => {
                tracing::debug!(session = %session.id(), "desktop input ended: {err}");
                return;
            }
        };
        if bytes.is_empty() || bytes.len() > max_input_bytes {
            continue;
        }
        if let Err(err) = session.send_input(&client_id, connection, &bytes).await {
            tracing::debug!(session = %session.id(), "desktop input refused: {err}");
        }
    }
}
