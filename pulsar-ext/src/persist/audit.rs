//! The audit trail: who did what to which session, as rows of `audit_log`.

use chrono::Utc;

use crate::audit::{AuditLog, AuditRecord};
use crate::store::{AuditEntry, Store};

/// Writes audit records to the store (shed, and counted, if its queue is full).
pub(crate) struct StoreAudit {
    store: Store,
    /// How many rows to keep.
    max_rows: u64,
}

impl StoreAudit {
    /// An audit trail in `store`, pruned to `max_rows`.
    pub fn new(store: Store, max_rows: u64) -> Self {
        Self { store, max_rows }
    }

    /// Prunes the trail to its configured size.
    pub fn prune(&self) {
        self.store.prune_audit(self.max_rows);
    }
}

impl AuditLog for StoreAudit {
    fn record(&self, record: AuditRecord) {
        self.store.audit(AuditEntry {
            time: Utc::now().timestamp_millis(),
            uid: record.uid,
            pid: record.pid,
            action: record.action.to_owned(),
            session_id: record.session_id,
            detail: record.detail,
        });
    }
}
