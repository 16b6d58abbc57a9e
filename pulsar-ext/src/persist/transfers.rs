//! File transfers ↔ the store: a row while a transfer runs (deleted once it ends), and the
//! transfers the last daemon left running read back at start, to resume.

use pulsar_protocol::{TransferDirection, TransferInfo, TransferState};
use uuid::Uuid;

use crate::store::{Store, TransferRow};
use crate::transfer::TransferSink;

/// Writes transfer changes to the store.
pub(crate) struct StoreTransfers {
    store: Store,
}

impl StoreTransfers {
    /// A sink writing to `store`.
    pub fn new(store: Store) -> Self {
        Self { store }
    }
}

fn direction_text(direction: TransferDirection) -> &'static str {
    match direction {
        TransferDirection::Upload => "upload",
        TransferDirection::Download => "download",
    }
}

fn state_text(state: TransferState) -> &'static str {
    match state {
        TransferState::Running => "running",
        TransferState::Done => "done",
        TransferState::Failed => "failed",
        TransferState::Cancelled => "cancelled",
    }
}

impl TransferSink for StoreTransfers {
    fn saved(&self, info: &TransferInfo, overwrite: bool) {
        // Rows are for resuming: an ended transfer has nothing left to resume.
        if info.state != TransferState::Running {
            self.store.delete_transfer(&info.id.to_string());
            return;
        }
        self.store.upsert_transfer(TransferRow {
            id: info.id.to_string(),
            session_id: info.session_id.to_string(),
            direction: direction_text(info.direction).to_owned(),
            local_path: info.local_path.clone(),
            remote_path: info.remote_path.clone(),
            overwrite,
            bytes: i64::try_from(info.bytes).unwrap_or(i64::MAX),
            total: i64::try_from(info.total).unwrap_or(i64::MAX),
            state: state_text(info.state).to_owned(),
            error: info.error.clone(),
            updated_at: chrono::Utc::now().timestamp_millis(),
        });
    }
}

/// The stored transfers still `running` (with whether each may overwrite), to resume. A row
/// that cannot be read is skipped with a warning.
pub(crate) fn load_transfers(rows: Vec<TransferRow>) -> Vec<(TransferInfo, bool)> {
    rows.into_iter()
        .filter(|row| row.state == "running")
        .filter_map(|row| {
            let direction = match row.direction.as_str() {
                "upload" => TransferDirection::Upload,
                "download" => TransferDirection::Download,
                other => {
                    tracing::warn!(transfer = %row.id, "skipping a stored transfer: direction {other:?}");
                    return None;
                }
            };
            let (Ok(id), Ok(session_id)) =
                (Uuid::parse_str(&row.id), Uuid::parse_str(&row.session_id))
            else {
                tracing::warn!(transfer = %row.id, "skipping a stored transfer: a bad id");
                return None;
            };
            Some((
                TransferInfo {
                    id,
                    session_id,
                    direction,
                    local_path: row.local_path,
                    remote_path: row.remote_path,
                    bytes: u64::try_from(row.bytes).unwrap_or(0),
                    total: u64::try_from(row.total).unwrap_or(0),
                    state: TransferState::Running,
                    error: None,
                },
                row.overwrite,
            ))
        })
        .collect()
}
