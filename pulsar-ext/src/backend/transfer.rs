//! What a backend is asked to copy, how it reports progress, and why it can fail: the
//! backend-agnostic half of file transfers (SSH sessions do them over SFTP).

use std::path::PathBuf;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use pulsar_protocol::TransferDirection;
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// One file to copy.
#[derive(Debug, Clone)]
pub struct TransferJob {
    /// The transfer's id: it names the temporary file, so a resumed transfer finds its own.
    pub id: Uuid,
    /// Which way.
    pub direction: TransferDirection,
    /// The file on the daemon's host.
    pub local_path: PathBuf,
    /// The file on the session's host.
    pub remote_path: String,
    /// Replace an existing destination.
    pub overwrite: bool,
}

impl TransferJob {
    /// The temporary name the destination is written under, beside it (same directory, so
    /// the final rename is atomic): `.NAME.pulsar-ID8.part`.
    pub fn temporary_name(&self, destination: &str) -> String {
        let (dir, name) = match destination.rfind('/') {
            Some(at) => (&destination[..=at], &destination[at + 1..]),
            None => ("", destination),
        };
        let id = self.id.simple().to_string();
        format!("{dir}.{name}.pulsar-{}.part", &id[..8])
    }
}

/// Shared between a running copy and whoever watches it: bytes so far, the total, the
/// cancel signal, and the one-time answer that the copy has started.
#[derive(Debug, Default)]
pub struct TransferControl {
    bytes: AtomicU64,
    total: AtomicU64,
    /// Set by `cancel_transfer`.
    pub cancel: CancellationToken,
    started: Mutex<Option<oneshot::Sender<Result<(), TransferError>>>>,
}

impl TransferControl {
    /// A control whose first [`TransferControl::started`] answers `started`.
    pub fn new(started: oneshot::Sender<Result<(), TransferError>>) -> Self {
        Self {
            started: Mutex::new(Some(started)),
            ..Self::default()
        }
    }

    /// The copy checked its source and destination (`Ok`), or could not start; only the first
    /// call is heard.
    pub fn started(&self, result: Result<(), TransferError>) {
        let sender = self
            .started
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(sender) = sender {
            let _ = sender.send(result);
        }
    }

    /// Bytes of the destination written so far.
    pub fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }

    /// The source's size (0 until known).
    pub fn total(&self) -> u64 {
        self.total.load(Ordering::Relaxed)
    }

    /// Records how far the copy is.
    pub fn set_bytes(&self, bytes: u64) {
        self.bytes.store(bytes, Ordering::Relaxed);
    }

    /// Records the source's size.
    pub fn set_total(&self, total: u64) {
        self.total.store(total, Ordering::Relaxed);
    }
}

/// Why a transfer did not complete. Messages name the path and the cause.
#[derive(Debug, Clone, thiserror::Error)]
pub enum TransferError {
    /// This kind of session has no file transfers.
    #[error("only SSH sessions have file transfers")]
    NotSupported,
    /// The destination exists and replacing it was not asked for.
    #[error("{path} exists (set overwrite to replace it)")]
    DestinationExists {
        /// The destination.
        path: String,
    },
    /// Cancelled by request.
    #[error("cancelled")]
    Cancelled,
    /// Anything else: the source unreadable, the server refusing, the session ended.
    #[error("{0}")]
    Failed(String),
}
