//! The schema and its migrations, by `PRAGMA user_version`.
//!
//! Version 1 is the seed design's two tables exactly. Version 2 adds what restart needs (exit
//! details, the offset the saved scrollback starts at) and the audit log; 3 saves output as
//! chunks; 4 adds workspaces and their snapshots; 5 times each output chunk; 6 adds SSH
//! sessions' port forwards; 7 file transfers (`transfers.rs`). Each migration runs in one
//! transaction; a database newer than this daemon is refused rather than guessed at.

use rusqlite::Connection;

/// The version this daemon writes.
pub const CURRENT: i64 = 7;

/// Version 1: the seed design's schema.
pub const V1: &str = "
CREATE TABLE sessions (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    session_type TEXT NOT NULL,
    config TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    last_active INTEGER NOT NULL,
    state TEXT NOT NULL
);
CREATE TABLE session_state (
    session_id TEXT PRIMARY KEY,
    pty_state BLOB,
    scrollback BLOB,
    environment TEXT,
    FOREIGN KEY(session_id) REFERENCES sessions(id) ON DELETE CASCADE
);
";

/// Version 2: restart details and the audit log.
const V2: &str = "
ALTER TABLE sessions ADD COLUMN exit_code INTEGER;
ALTER TABLE sessions ADD COLUMN exit_signal INTEGER;
ALTER TABLE sessions ADD COLUMN exited_at INTEGER;
ALTER TABLE sessions ADD COLUMN reason TEXT;
ALTER TABLE session_state ADD COLUMN scrollback_offset INTEGER NOT NULL DEFAULT 0;
CREATE TABLE audit_log (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    time INTEGER NOT NULL,
    actor_uid INTEGER,
    actor_pid INTEGER,
    action TEXT NOT NULL,
    session_id TEXT,
    detail TEXT NOT NULL DEFAULT ''
);
CREATE INDEX audit_log_session ON audit_log(session_id);
";

/// Version 3: output saved incrementally, as chunks by offset, instead of rewriting the whole
/// tail blob at every checkpoint (which made a checkpoint of 100 busy sessions a 25 MB
/// transaction). `session_state.scrollback` stays for databases written before.
const V3: &str = "
CREATE TABLE output_chunks (
    session_id TEXT NOT NULL,
    offset INTEGER NOT NULL,
    data BLOB NOT NULL,
    PRIMARY KEY (session_id, offset),
    FOREIGN KEY(session_id) REFERENCES sessions(id) ON DELETE CASCADE
) WITHOUT ROWID;
";

/// Version 4: workspaces (the desktop's named layouts of panes) and their snapshots. A
/// layout is JSON text; a pane names its session by id, without a foreign key, since a
/// workspace outlives the sessions it once showed.
const V4: &str = "
CREATE TABLE workspaces (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    description TEXT,
    icon TEXT,
    layout TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    is_template INTEGER NOT NULL DEFAULT 0,
    tags TEXT
);
CREATE TABLE workspace_snapshots (
    id TEXT PRIMARY KEY,
    workspace_id TEXT NOT NULL,
    name TEXT NOT NULL,
    layout TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    FOREIGN KEY(workspace_id) REFERENCES workspaces(id) ON DELETE CASCADE
);
CREATE INDEX workspace_snapshots_workspace ON workspace_snapshots(workspace_id);
";

/// Version 5: when each output chunk was saved (Unix milliseconds), so that
/// `export_asciicast` can replay stored output with its timing. Chunks saved before have
/// none (`NULL`).
const V5_CHUNK_TIMES: &str = "
ALTER TABLE output_chunks ADD COLUMN time INTEGER;
";

/// Version 6: SSH sessions' port forwards, brought back with their session after a restart.
const V6_FORWARDS: &str = "
CREATE TABLE forwards (
    id TEXT PRIMARY KEY,
    session_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    listen TEXT NOT NULL,
    target TEXT,
    allow_non_loopback INTEGER NOT NULL DEFAULT 0,
    created_at INTEGER NOT NULL,
    FOREIGN KEY(session_id) REFERENCES sessions(id) ON DELETE CASCADE
);
CREATE INDEX forwards_session ON forwards(session_id);
";

/// Why the schema could not be brought up to date.
#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    /// The database was written by a newer Pulsar.
    #[error("its schema version {found} is newer than this Pulsar understands ({CURRENT})")]
    TooNew {
        /// The version found.
        found: i64,
    },
    /// SQLite failed.
    #[error(transparent)]
    Sqlite(#[from] rusqlite::Error),
}

/// Brings `conn` to [`CURRENT`]; returns the version it found.
pub fn migrate(conn: &mut Connection) -> Result<i64, MigrateError> {
    let found: i64 = conn.query_row("PRAGMA user_version", [], |row| row.get(0))?;
    if found > CURRENT {
        return Err(MigrateError::TooNew { found });
    }
    let steps: [(i64, &str); 7] = [
        (1, V1),
        (2, V2),
        (3, V3),
        (4, V4),
        (5, V5_CHUNK_TIMES),
        (6, V6_FORWARDS),
        (7, super::transfers::MIGRATION),
    ];
    for (version, sql) in steps {
        if found < version {
            let tx = conn.transaction()?;
            tx.execute_batch(sql)?;
            tx.pragma_update(None, "user_version", version)?;
            tx.commit()?;
        }
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_database_migrates_to_current() {
        let mut conn = Connection::open_in_memory().unwrap();
        assert_eq!(migrate(&mut conn).unwrap(), 0);
        let version: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(version, CURRENT);
        conn.execute("INSERT INTO audit_log (time, action) VALUES (1, 'x')", [])
            .unwrap();
    }

    #[test]
    fn version_one_rows_survive_the_migration() {
        let mut conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(V1).unwrap();
        conn.pragma_update(None, "user_version", 1).unwrap();
        conn.execute(
            "INSERT INTO sessions VALUES ('id', 'n', 'local', '{}', 1, 2, 'stopped')",
            [],
        )
        .unwrap();
        assert_eq!(migrate(&mut conn).unwrap(), 1);
        let name: String = conn
            .query_row("SELECT name FROM sessions WHERE id = 'id'", [], |r| {
                r.get(0)
            })
            .unwrap();
        assert_eq!(name, "n");
    }

    #[test]
    fn a_version_four_database_keeps_its_output_chunks_untimed() {
        let mut conn = Connection::open_in_memory().unwrap();
        for sql in [V1, V2, V3, V4] {
            conn.execute_batch(sql).unwrap();
        }
        conn.pragma_update(None, "user_version", 4).unwrap();
        conn.execute(
            "INSERT INTO sessions VALUES ('id', 'n', 'local', '{}', 1, 2, 'detached',
                 NULL, NULL, NULL, NULL)",
            [],
        )
        .unwrap();
        conn.execute(
            "INSERT INTO output_chunks (session_id, offset, data) VALUES ('id', 0, x'6869')",
            [],
        )
        .unwrap();
        assert_eq!(migrate(&mut conn).unwrap(), 4);
        let (data, time): (Vec<u8>, Option<i64>) = conn
            .query_row(
                "SELECT data, time FROM output_chunks WHERE session_id = 'id'",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        assert_eq!((data.as_slice(), time), (&b"hi"[..], None));
        conn.execute(
            "INSERT INTO output_chunks (session_id, offset, data, time) VALUES ('id', 2, x'21', 7)",
            [],
        )
        .unwrap();
    }

    #[test]
    fn a_version_five_database_gains_the_forwards_table() {
        let mut conn = Connection::open_in_memory().unwrap();
        for sql in [V1, V2, V3, V4, V5_CHUNK_TIMES] {
            conn.execute_batch(sql).unwrap();
        }
        conn.pragma_update(None, "user_version", 5).unwrap();
        conn.execute(
            "INSERT INTO sessions (id, name, session_type, config, created_at, last_active, state)
             VALUES ('s', 'n', 'ssh', '{}', 1, 2, 'detached')",
            [],
        )
        .unwrap();
        assert_eq!(migrate(&mut conn).unwrap(), 5);
        conn.execute(
            "INSERT INTO forwards (id, session_id, kind, listen, created_at)
             VALUES ('f', 's', 'dynamic', '127.0.0.1:1080', 3)",
            [],
        )
        .unwrap();
        let kept: String = conn
            .query_row("SELECT name FROM sessions WHERE id = 's'", [], |r| r.get(0))
            .unwrap();
        assert_eq!(kept, "n");
    }

    #[test]
    fn newer_database_is_refused() {
        let mut conn = Connection::open_in_memory().unwrap();
        conn.pragma_update(None, "user_version", CURRENT + 1)
            .unwrap();
        assert!(matches!(
            migrate(&mut conn),
            Err(MigrateError::TooNew { .. })
        ));
    }
}
