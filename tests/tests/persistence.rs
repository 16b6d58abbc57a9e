//! Persistence and restore: the SQLite store, restarts (graceful and `kill -9`), the restore
//! policies, migrations, a corrupt database, the audit trail and pruning.

use std::os::unix::fs::PermissionsExt;

use pulsar_e2e::*;
use pulsar_protocol::{Base64Data, PulsarApiClient as _, PulsarClient, SessionId, SessionState};
use rusqlite::Connection;

async fn shell(client: &PulsarClient, name: &str) -> SessionId {
    client
        .create_session(
            Some(name.into()),
            sh(),
            Some(90),
            Some(20),
            None,
            None,
            None,
        )
        .await
        .expect("create_session")
        .session_id
}

/// Everything the session printed from `since`, as text.
async fn output_from(client: &PulsarClient, id: SessionId, since: u64) -> (u64, String) {
    let out = client
        .receive_output(id, Some(since), Some(1 << 20), None, None)
        .await
        .unwrap();
    (
        out.offset,
        String::from_utf8_lossy(out.data.as_bytes()).into_owned(),
    )
}

fn db(daemon: &Daemon) -> Connection {
    Connection::open(daemon.database()).expect("open the daemon's database")
}

#[tokio::test]
async fn restart_restores_metadata_scrollback_and_offsets_then_respawns() {
    let daemon = Daemon::start().await;
    let client = daemon.client().await;
    let id = shell(&client, "keeper").await;
    client
        .send_input(id, Base64Data::from("echo before-$((40+2))\n"), None)
        .await
        .unwrap();
    read_until(&client, id, "before-42").await;
    let before = client.get_session(id).await.unwrap();
    drop(client);

    let daemon = daemon.reboot(&[]).await;
    let client = daemon.client().await;
    let after = client.get_session(id).await.expect("same id after restart");
    assert_eq!(after.name, "keeper");
    assert_eq!((after.cols, after.rows), (90, 20));
    assert_eq!(after.created_at, before.created_at);
    assert_eq!(after.state, SessionState::Detached, "respawned");
    assert_ne!(after.pid, before.pid, "a fresh process");
    assert!(
        after.output_offset >= before.output_offset,
        "offsets continue"
    );

    // A client that knew offset N still gets the right bytes from N on.
    let (offset, text) = output_from(&client, id, 0).await;
    assert_eq!(offset, 0);
    assert!(text.contains("before-42"), "{text:?}");
    let (offset, text) = output_from(&client, id, before.output_offset).await;
    assert_eq!(offset, before.output_offset);
    assert!(
        text.contains("pulsar restarted"),
        "the divider follows the history: {text:?}"
    );
    assert!(!text.contains("before-42"));

    // The new process answers after the divider.
    client
        .send_input(id, Base64Data::from("echo after-$((6*7))\n"), None)
        .await
        .unwrap();
    let text = read_until(&client, id, "after-42").await;
    let divider = text.find("pulsar restarted").expect("divider");
    assert!(text.rfind("after-42").unwrap() > divider);
}

#[tokio::test]
async fn restart_with_history_policy_keeps_sessions_stopped_and_readable() {
    let daemon = Daemon::start().await;
    let client = daemon.client().await;
    let id = shell(&client, "archived").await;
    client
        .send_input(id, Base64Data::from("echo kept-$((1+1))\n"), None)
        .await
        .unwrap();
    read_until(&client, id, "kept-2").await;
    drop(client);

    let daemon = daemon.reboot(&[("RESTORE", "history")]).await;
    let client = daemon.client().await;
    let info = client.get_session(id).await.unwrap();
    assert_eq!(info.state, SessionState::Stopped);
    assert!(
        info.reason
            .as_deref()
            .unwrap_or("")
            .contains("restore = history"),
        "{info:?}"
    );
    let (_, text) = output_from(&client, id, 0).await;
    assert!(
        text.contains("kept-2") && text.contains("history only"),
        "{text:?}"
    );
    let err = client
        .send_input(id, Base64Data::from("x"), None)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("Stopped"), "{err}");
}

#[tokio::test]
async fn restart_with_restore_off_forgets_sessions() {
    let daemon = Daemon::start().await;
    let client = daemon.client().await;
    shell(&client, "forgotten").await;
    drop(client);
    let daemon = daemon.restart(&[("RESTORE", "off")]).await;
    let client = daemon.client().await;
    assert!(client.list_sessions().await.unwrap().sessions.is_empty());
    let rows: i64 = eventually("the rows to be deleted", || {
        let conn = db(&daemon);
        async move {
            let n: i64 = conn
                .query_row("SELECT COUNT(*) FROM sessions", [], |r| r.get(0))
                .unwrap();
            (n == 0).then_some(n)
        }
    })
    .await;
    assert_eq!(rows, 0);
}

#[tokio::test]
async fn sessions_stopped_before_shutdown_stay_stopped_with_their_exit_code() {
    let daemon = Daemon::start().await;
    let client = daemon.client().await;
    let id = client
        .create_session(
            Some("finished".into()),
            command(&["/bin/sh", "-c", "echo bye; exit 3"]),
            None,
            None,
            None,
            None,
            None,
        )
        .await
        .unwrap()
        .session_id;
    wait_stopped(&client, id).await;
    drop(client);
    let daemon = daemon.restart(&[]).await;
    let client = daemon.client().await;
    let info = client.get_session(id).await.unwrap();
    assert_eq!(info.state, SessionState::Stopped);
    assert_eq!(info.exit_code, Some(3));
    let (_, text) = output_from(&client, id, 0).await;
    assert!(text.contains("bye"));
    assert!(
        !text.contains("pulsar restarted"),
        "no divider for a session that had ended"
    );
}

#[tokio::test]
async fn kill_9_during_heavy_output_keeps_the_database_intact_and_every_session() {
    let daemon = Daemon::start_with(&[("PERSIST_INTERVAL_MS", "50")]).await;
    let client = daemon.client().await;
    let mut ids = Vec::new();
    for i in 0..4 {
        let id = client
            .create_session(
                Some(format!("noisy-{i}")),
                command(&["/usr/bin/yes", "heavy output line for the crash test"]),
                None,
                None,
                None,
                None,
                None,
            )
            .await
            .unwrap()
            .session_id;
        ids.push(id);
    }
    let quiet = shell(&client, "quiet").await;
    ids.push(quiet);
    // Let output flow and a few checkpoints land.
    eventually("output to be saved", || {
        let conn = db(&daemon);
        async move {
            let n: i64 = conn
                .query_row("SELECT COUNT(*) FROM session_state", [], |r| r.get(0))
                .unwrap_or(0);
            (n >= 4).then_some(())
        }
    })
    .await;
    drop(client);

    let daemon = daemon.crash_and_restart(&[]).await;
    let conn = db(&daemon);
    let check: String = conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(check, "ok");
    let client = daemon.client().await;
    for id in &ids {
        let info = client
            .get_session(*id)
            .await
            .expect("every session is back");
        assert_ne!(
            info.state,
            SessionState::Stopped,
            "{} was respawned",
            info.name
        );
    }
    let (_, text) = output_from(&client, ids[0], 0).await;
    assert!(
        text.contains("heavy output line"),
        "saved scrollback survived the crash"
    );
    for id in ids {
        client.terminate_session(id).await.unwrap();
    }
}

#[tokio::test]
async fn empty_database_file_is_migrated_to_the_current_schema() {
    let home = tempfile::tempdir().unwrap();
    std::fs::write(home.path().join("pulsar.db"), b"").unwrap();
    let socket = home.path().join("run/pulsar.sock");
    let mut child = Daemon::spawn(home.path(), &socket, &[]);
    let client = eventually("the daemon", || {
        let socket = socket.clone();
        async move { pulsar_protocol::connect(&socket).await.ok() }
    })
    .await;
    let status = client.get_status().await.unwrap();
    let reported = status.database.unwrap().schema_version;
    signal(&child, nix::sys::signal::Signal::SIGTERM);
    assert!(wait_exit(&mut child, "daemon").success());
    let conn = Connection::open(home.path().join("pulsar.db")).unwrap();
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(
        version, reported as i64,
        "the file is at the version reported"
    );
    // The newest tables are there (workspaces: 4; port forwards: 6).
    for table in ["workspaces", "forwards"] {
        let found: i64 = conn
            .query_row(
                "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = ?1",
                [table],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(found, 1, "table {table}");
    }
}

/// The seed design's schema, as a version-1 database was written.
const SEED_SCHEMA: &str = "
CREATE TABLE sessions (id TEXT PRIMARY KEY, name TEXT NOT NULL, session_type TEXT NOT NULL,
    config TEXT NOT NULL, created_at INTEGER NOT NULL, last_active INTEGER NOT NULL,
    state TEXT NOT NULL);
CREATE TABLE session_state (session_id TEXT PRIMARY KEY, pty_state BLOB, scrollback BLOB,
    environment TEXT, FOREIGN KEY(session_id) REFERENCES sessions(id) ON DELETE CASCADE);
PRAGMA user_version = 1;
";

#[tokio::test]
async fn version_1_database_is_migrated_and_its_sessions_load() {
    let home = tempfile::tempdir().unwrap();
    let path = home.path().join("pulsar.db");
    {
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch(SEED_SCHEMA).unwrap();
        conn.execute(
            "INSERT INTO sessions VALUES ('6a3c1f08-4b8e-4a61-9e0e-1f2d3c4b5a69', 'legacy', 'local',
             '{\"type\":{\"kind\":\"local\",\"command\":[\"/bin/true\"]},\"cols\":80,\"rows\":24}',
             1700000000000, 1700000000000, 'stopped')",
            [],
        )
        .unwrap();
        conn.execute(
            "INSERT INTO session_state (session_id, scrollback) VALUES
             ('6a3c1f08-4b8e-4a61-9e0e-1f2d3c4b5a69', CAST('old output' AS BLOB))",
            [],
        )
        .unwrap();
    }
    let socket = home.path().join("run/pulsar.sock");
    let mut child = Daemon::spawn(home.path(), &socket, &[]);
    let client = eventually("the daemon", || {
        let socket = socket.clone();
        async move { pulsar_protocol::connect(&socket).await.ok() }
    })
    .await;
    let id: SessionId = "6a3c1f08-4b8e-4a61-9e0e-1f2d3c4b5a69".parse().unwrap();
    let info = client
        .get_session(id)
        .await
        .expect("the legacy session loads");
    assert_eq!(info.name, "legacy");
    assert_eq!(info.state, SessionState::Stopped);
    let (_, text) = output_from(&client, id, 0).await;
    assert!(text.contains("old output"));
    signal(&child, nix::sys::signal::Signal::SIGTERM);
    assert!(wait_exit(&mut child, "daemon").success());
}

#[test]
fn corrupt_database_stops_the_daemon_with_a_message_naming_the_file() {
    let home = tempfile::tempdir().unwrap();
    let path = home.path().join("pulsar.db");
    let garbage: Vec<u8> = (0..64 * 1024).map(|i| (i * 7 % 251) as u8).collect();
    std::fs::write(&path, &garbage).unwrap();
    let socket = home.path().join("run/pulsar.sock");
    let mut child = Daemon::spawn(home.path(), &socket, &[]);
    let exit = wait_exit(&mut child, "daemon");
    assert!(
        !exit.success(),
        "a corrupt database must not start silently"
    );
    let log = std::fs::read_to_string(home.path().join("daemon.log")).unwrap();
    assert!(log.contains(path.to_str().unwrap()), "{log}");
    assert!(log.contains("move the file aside"), "{log}");
    assert_eq!(
        std::fs::read(&path).unwrap(),
        garbage,
        "the file is left as it was"
    );
    assert!(!socket.exists(), "no socket left behind");
}

#[tokio::test]
async fn database_file_is_private() {
    let daemon = Daemon::start().await;
    // Answering a request means the database is open.
    daemon.client().await.get_status().await.unwrap();
    let mode = std::fs::metadata(daemon.database())
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600);
}

#[tokio::test]
async fn audit_log_names_who_did_what() {
    let daemon = Daemon::start().await;
    let client = daemon.client().await;
    let id = shell(&client, "audited").await;
    let attached = client.attach_session(id, None, None, None).await.unwrap();
    client
        .send_input(id, Base64Data::from("secret-typed-text\n"), None)
        .await
        .unwrap();
    client
        .detach_session(id, Some(attached.client_id.clone()))
        .await
        .unwrap();
    client.terminate_session(id).await.unwrap();
    let me = std::process::id() as i64;
    let rows: Vec<(String, i64, String)> = eventually("the audit entries", || {
        let conn = db(&daemon);
        let id = id.to_string();
        async move {
            let mut stmt = conn
                .prepare("SELECT action, actor_pid, detail FROM audit_log WHERE session_id = ?1 ORDER BY id")
                .unwrap();
            let rows: Vec<(String, i64, String)> = stmt
                .query_map([id], |r| Ok((r.get(0)?, r.get::<_, Option<i64>>(1)?.unwrap_or(0), r.get(2)?)))
                .unwrap()
                .map(Result::unwrap)
                .collect();
            (rows.len() >= 5).then_some(rows)
        }
    })
    .await;
    let actions: Vec<&str> = rows.iter().map(|r| r.0.as_str()).collect();
    assert_eq!(
        actions,
        ["create", "attach", "input", "detach", "terminate"]
    );
    assert!(
        rows.iter().all(|r| r.1 == me),
        "every entry names this process: {rows:?}"
    );
    assert!(rows[2].2.contains(&attached.client_id) || rows[2].2.contains("conn-"));
    assert!(
        rows.iter().all(|r| !r.2.contains("secret-typed-text")),
        "input bytes are never audited"
    );
}

#[tokio::test]
async fn cleanup_prunes_stopped_sessions_and_the_audit_log_from_the_database() {
    let daemon = Daemon::start_with(&[
        ("CLEANUP_INTERVAL_SECS", "1"),
        ("STOPPED_RETENTION_SECS", "0"),
        ("AUDIT_MAX_ROWS", "3"),
    ])
    .await;
    let client = daemon.client().await;
    let id = client
        .create_session(None, command(&["/bin/true"]), None, None, None, None, None)
        .await
        .unwrap()
        .session_id;
    let keep = shell(&client, "kept").await;
    for _ in 0..5 {
        client.attach_session(keep, None, None, None).await.unwrap();
    }
    eventually(
        "the stopped session's row and old audit entries to go",
        || {
            let conn = db(&daemon);
            let id = id.to_string();
            async move {
                let sessions: i64 = conn
                    .query_row("SELECT COUNT(*) FROM sessions WHERE id = ?1", [id], |r| {
                        r.get(0)
                    })
                    .unwrap();
                let audit: i64 = conn
                    .query_row("SELECT COUNT(*) FROM audit_log", [], |r| r.get(0))
                    .unwrap();
                (sessions == 0 && audit <= 3).then_some(())
            }
        },
    )
    .await;
    let conn = db(&daemon);
    let kept: i64 = conn
        .query_row(
            "SELECT COUNT(*) FROM sessions WHERE id = ?1",
            [keep.to_string()],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(kept, 1, "live sessions stay");
}

#[tokio::test]
async fn respawn_restores_the_command_cwd_and_env() {
    let daemon = Daemon::start().await;
    let client = daemon.client().await;
    let cwd = daemon.dir.path().join("workdir");
    std::fs::create_dir(&cwd).unwrap();
    // Says where, with what and as what it runs, then waits.
    let ty = serde_json::from_value(serde_json::json!({
        "kind": "local",
        "command": ["/bin/sh", "-c", "echo \"run:$(pwd):$MARK:$0:$1.\"; exec cat", "argv0", "arg1"],
        "cwd": cwd,
        "env": {"MARK": "mark-7"},
    }))
    .unwrap();
    let id = client
        .create_session(Some("again".into()), ty, None, None, None, None, None)
        .await
        .unwrap()
        .session_id;
    let expected = format!("run:{}:mark-7:argv0:arg1.", cwd.display());
    read_until(&client, id, &expected).await;
    let before = client.get_session(id).await.unwrap();
    drop(client);

    let daemon = daemon.reboot(&[]).await;
    let client = daemon.client().await;
    let after = client.get_session(id).await.unwrap();
    assert_ne!(after.pid, before.pid, "a fresh process");
    assert_eq!(after.session_type, before.session_type, "the same type");
    // What the fresh process printed, after the history.
    let text = eventually("the respawned process's line", || async {
        let (_, text) = output_from(&client, id, before.output_offset).await;
        text.contains(&expected).then_some(text)
    })
    .await;
    assert!(text.contains("pulsar restarted"), "{text:?}");
}
