//! File transfers' rows (`transfers`): what a restarted daemon needs to resume a transfer
//! that was running; a row is deleted once its transfer ends.

use rusqlite::{Connection, Transaction, params};

/// One transfer's row. Directions and states are the protocol's words as text
/// (`upload`/`download`, `running`/`done`/`failed`/`cancelled`), kept by this module.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransferRow {
    /// Its id.
    pub id: String,
    /// The session whose connection carries it.
    pub session_id: String,
    /// `upload` or `download`.
    pub direction: String,
    /// The file on the daemon's host.
    pub local_path: String,
    /// The file on the session's host.
    pub remote_path: String,
    /// It may replace its destination.
    pub overwrite: bool,
    /// Bytes copied when last saved.
    pub bytes: i64,
    /// The source's size when last saved.
    pub total: i64,
    /// `running`, `done`, `failed` or `cancelled`.
    pub state: String,
    /// Why it failed.
    pub error: Option<String>,
    /// When it was saved, Unix milliseconds.
    pub updated_at: i64,
}

/// Version 5 of the schema: the transfers table. Self-contained, for renumbering at merge.
pub(super) const MIGRATION: &str = "
CREATE TABLE transfers (
    id TEXT PRIMARY KEY,
    session_id TEXT NOT NULL,
    direction TEXT NOT NULL,
    local_path TEXT NOT NULL,
    remote_path TEXT NOT NULL,
    overwrite INTEGER NOT NULL,
    bytes INTEGER NOT NULL,
    total INTEGER NOT NULL,
    state TEXT NOT NULL,
    error TEXT,
    updated_at INTEGER NOT NULL
);
";

/// Every transfer, oldest change first.
pub(super) fn load(conn: &Connection) -> rusqlite::Result<Vec<TransferRow>> {
    let mut rows = conn.prepare(
        "SELECT id, session_id, direction, local_path, remote_path, overwrite, bytes, total,
                state, error, updated_at
         FROM transfers ORDER BY updated_at, id",
    )?;
    let found = rows.query_map([], |r| {
        Ok(TransferRow {
            id: r.get(0)?,
            session_id: r.get(1)?,
            direction: r.get(2)?,
            local_path: r.get(3)?,
            remote_path: r.get(4)?,
            overwrite: r.get(5)?,
            bytes: r.get(6)?,
            total: r.get(7)?,
            state: r.get(8)?,
            error: r.get(9)?,
            updated_at: r.get(10)?,
        })
    })?;
    found.collect()
}

/// Inserts or replaces `row`.
pub(super) fn upsert(tx: &Transaction<'_>, row: &TransferRow) -> rusqlite::Result<()> {
    tx.prepare_cached(
        "INSERT OR REPLACE INTO transfers
            (id, session_id, direction, local_path, remote_path, overwrite, bytes, total,
             state, error, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
    )?
    .execute(params![
        row.id,
        row.session_id,
        row.direction,
        row.local_path,
        row.remote_path,
        row.overwrite,
        row.bytes,
        row.total,
        row.state,
        row.error,
        row.updated_at,
    ])?;
    Ok(())
}

/// Deletes transfer `id`'s row.
pub(super) fn delete(tx: &Transaction<'_>, id: &str) -> rusqlite::Result<()> {
    tx.prepare_cached("DELETE FROM transfers WHERE id = ?1")?
        .execute(params![id])?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Store;

    #[test]
    fn a_running_transfer_comes_back_until_its_row_is_deleted() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.db");
        let (store, _) = Store::open(&path).unwrap();
        let row = |bytes: i64| TransferRow {
            id: "t1".into(),
            session_id: "s1".into(),
            direction: "upload".into(),
            local_path: "/tmp/a".into(),
            remote_path: "b".into(),
            overwrite: true,
            bytes,
            total: 10,
            state: "running".into(),
            error: None,
            updated_at: 1,
        };
        store.upsert_transfer(row(0));
        store.upsert_transfer(row(5));
        store.close();
        let (store, loaded) = Store::open(&path).unwrap();
        assert_eq!(loaded.transfers, vec![row(5)]);
        store.delete_transfer("t1");
        store.close();
        let (store, loaded) = Store::open(&path).unwrap();
        assert!(loaded.transfers.is_empty());
        store.close();
    }
}
