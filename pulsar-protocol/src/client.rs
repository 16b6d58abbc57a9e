//! A typed client over the daemon's Unix socket: WebSocket framing on the stream, no TLS.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use pulsar_protocol::PulsarApiClient as _;
//! let client = pulsar_protocol::connect("/run/user/1000/orbit/pulsar.sock".as_ref()).await?;
//! let status = client.get_status().await?;
//! println!("pulsar {} up {}s", status.version, status.uptime_seconds);
//! # Ok(()) }
//! ```

use std::path::{Path, PathBuf};
use std::time::Duration;

use jsonrpsee::async_client::ClientBuilder;
use jsonrpsee::client_transport::ws::{Url, WsTransportClientBuilder};
use tokio::net::UnixStream;

/// The jsonrpsee client type [`connect`] returns; it implements
/// [`PulsarApiClient`](crate::PulsarApiClient).
pub type PulsarClient = jsonrpsee::async_client::Client;

/// Why [`connect`] failed.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// Nothing is listening at the path (no daemon, or a stale socket file).
    #[error("no Pulsar daemon is listening on {path}: {source}")]
    NotRunning {
        /// The socket path.
        path: PathBuf,
        /// The connect error.
        source: std::io::Error,
    },
    /// The socket accepted but the WebSocket handshake failed (refused peer, wrong server).
    #[error("handshake with the Pulsar daemon on {path} failed: {reason}")]
    Handshake {
        /// The socket path.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
}

/// Largest message either side sends: output events are ≤ 64 KiB of base64.
const MAX_MESSAGE: u32 = 16 * 1024 * 1024;

/// Connects to the daemon at `path` and returns a ready client.
pub async fn connect(path: &Path) -> Result<PulsarClient, ConnectError> {
    let stream = UnixStream::connect(path)
        .await
        .map_err(|source| ConnectError::NotRunning {
            path: path.to_owned(),
            source,
        })?;
    // The host part only fills the HTTP Host header; the stream is already connected.
    let url = Url::parse("ws://localhost/").expect("static URL");
    let (sender, receiver) = WsTransportClientBuilder::default()
        .max_request_size(MAX_MESSAGE)
        .max_response_size(MAX_MESSAGE)
        .build_with_stream(url, stream)
        .await
        .map_err(|err| ConnectError::Handshake {
            path: path.to_owned(),
            reason: err.to_string(),
        })?;
    Ok(ClientBuilder::default()
        .request_timeout(Duration::from_secs(60))
        .max_buffer_capacity_per_subscription(1024)
        .build_with_tokio(sender, receiver))
}
