//! The audit trail's entry point: who did what to which session. Written by the store;
//! callers only describe the event.

use pulsar_protocol::SessionId;

/// One audited event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRecord {
    /// `create`, `attach`, `detach`, `input`, `resize`, `terminate`, `restore`,
    /// `refused_connection`.
    pub action: &'static str,
    /// The session concerned.
    pub session_id: Option<SessionId>,
    /// Who (from the connection's peer credentials).
    pub uid: Option<u32>,
    /// Which process.
    pub pid: Option<i32>,
    /// Anything else worth knowing: client ids, byte counts. Never secrets, never the input
    /// bytes themselves (they may be passwords typed at a prompt).
    pub detail: String,
}

/// Somewhere audit records go.
pub trait AuditLog: Send + Sync {
    /// Records `record`; must not block.
    fn record(&self, record: AuditRecord);
}
