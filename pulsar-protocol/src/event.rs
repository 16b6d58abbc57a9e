//! Events of an output subscription (`subscribe_output`), sent as `output` notifications.

use serde::{Deserialize, Serialize};

use crate::Base64Data;

/// One event of an output stream. Serialised with a `type` tag:
/// `{"type":"output","data":"aGk=","offset":42}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum OutputEvent {
    /// The screen as it was at `offset` (first event when subscribed with `snapshot: true`).
    Snapshot {
        /// Redraw bytes (base64), see [`crate::Snapshot`].
        data: Base64Data,
        /// The offset the next `output` event starts at.
        offset: u64,
        /// Width the snapshot was drawn for.
        cols: u16,
        /// Height the snapshot was drawn for.
        rows: u16,
    },
    /// Output bytes; `offset` is the absolute offset of the first byte.
    Output {
        /// The bytes (base64), at most 64 KiB per event.
        data: Base64Data,
        /// Absolute offset of `data[0]` in the session's output.
        offset: u64,
    },
    /// The terminal size changed.
    Resized {
        /// New width.
        cols: u16,
        /// New height.
        rows: u16,
    },
    /// The session's process ended. The last event of the stream.
    Exited {
        /// Exit code, when the process exited normally.
        code: Option<i32>,
        /// Signal number, when a signal killed it.
        signal: Option<i32>,
    },
    /// This subscriber fell behind and bytes `missed_from..resume_at` were dropped from the
    /// scrollback ring before it could read them; the stream continues at `resume_at`.
    Lagged {
        /// The first offset this subscriber did not get.
        missed_from: u64,
        /// Where the stream continues.
        resume_at: u64,
    },
}
