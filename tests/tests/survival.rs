//! Sessions outlive the daemon: its keeper holds their programs while daemons stop, crash and
//! start again, and the next daemon takes them over with the same pid and terminal.

use pulsar_e2e::*;
use serde_json::{Value, json};

/// Creates a shell session and returns its id and pid.
async fn shell(line: &mut LineClient) -> (Value, u64) {
    let created = line
        .ok(
            "create_session",
            json!({"type": {"kind": "local", "command": ["/bin/sh"]}}),
        )
        .await;
    let pid = created["pid"]
        .as_u64()
        .unwrap_or_else(|| panic!("a pid: {created}"));
    (created["session_id"].clone(), pid)
}

async fn type_line(line: &mut LineClient, id: &Value, text: &str) {
    line.ok(
        "send_input",
        json!({"session_id": id, "data": b64(format!("{text}\n").as_bytes())}),
    )
    .await;
}

/// Starts a background `sleep` in the shell and returns its pid.
async fn background_job(line: &mut LineClient, id: &Value) -> u32 {
    // The marker is computed, so the terminal's echo of the command line does not match it.
    type_line(line, id, "sleep 1000 & echo bg:$!:$((6*7))").await;
    let out = line.read_output_until(id, ":42\r\n").await;
    let pid = out
        .rsplit("bg:")
        .next()
        .and_then(|rest| rest.split(':').next())
        .and_then(|pid| pid.parse().ok())
        .unwrap_or_else(|| panic!("a background pid in {out:?}"));
    assert!(!process_gone(pid));
    pid
}

#[tokio::test]
async fn a_killed_daemon_comes_back_to_the_same_running_programs() {
    let daemon = Daemon::start().await;
    let mut line = daemon.line().await;
    let (id, pid) = shell(&mut line).await;
    let job = background_job(&mut line, &id).await;
    drop(line);

    let daemon = daemon.crash_and_restart(&[]).await;
    let mut line = daemon.line().await;
    let info = line.ok("get_session", json!({"session_id": id})).await;
    assert_eq!(info["pid"].as_u64(), Some(pid), "the same shell: {info}");
    assert_ne!(info["state"], "stopped");
    assert!(!process_gone(job), "the background job still runs");
    type_line(&mut line, &id, "echo after-$((40+2))").await;
    line.read_output_until(&id, "after-42").await;
}

#[tokio::test]
async fn sigterm_stops_the_daemon_and_leaves_sessions_running() {
    let daemon = Daemon::start().await;
    let mut line = daemon.line().await;
    let (id, pid) = shell(&mut line).await;
    let job = background_job(&mut line, &id).await;
    drop(line);

    let daemon = daemon.restart(&[]).await;
    let mut line = daemon.line().await;
    let info = line.ok("get_session", json!({"session_id": id})).await;
    assert_eq!(info["pid"].as_u64(), Some(pid), "{info}");
    assert!(!process_gone(pid as u32) && !process_gone(job));
    type_line(&mut line, &id, "echo still-$((1+1))").await;
    line.read_output_until(&id, "still-2").await;
}

#[tokio::test]
async fn output_written_across_a_graceful_restart_is_neither_lost_nor_duplicated() {
    let daemon = Daemon::start().await;
    let mut line = daemon.line().await;
    // Counts while the daemon restarts, then waits for a line so it stays for reading.
    let script = "for i in $(seq 1 300); do echo n$i; sleep 0.005; done; echo counted; read x";
    let created = line.create_sh(script).await;
    let id = created["session_id"].clone();
    line.read_output_until(&id, "n20\r\n").await;
    drop(line);

    let daemon = daemon.restart(&[]).await;
    let mut line = daemon.line().await;
    line.read_output_until(&id, "counted").await;
    let all = line
        .ok(
            "receive_output",
            json!({"session_id": id, "since": 0, "max_bytes": 1048576}),
        )
        .await;
    assert_eq!(all["offset"], 0, "nothing dropped from the start");
    let text = String::from_utf8_lossy(&unb64(all["data"].as_str().unwrap())).into_owned();
    let numbers: Vec<u32> = text
        .split("\r\n")
        .filter_map(|l| l.strip_prefix('n')?.parse().ok())
        .collect();
    assert_eq!(
        numbers,
        (1..=300).collect::<Vec<_>>(),
        "every line once, in order"
    );
    assert!(
        !text.contains("pulsar restarted"),
        "no divider inside a running program's output"
    );
}

#[tokio::test]
async fn an_exit_while_no_daemon_runs_is_reported_with_its_code() {
    let scratch = tempfile::tempdir().unwrap();
    let go = scratch.path().join("go");
    let mut daemon = Daemon::start().await;
    let mut line = daemon.line().await;
    let script = format!(
        "echo waiting; while [ ! -e {} ]; do sleep 0.02; done; exit 42",
        go.display()
    );
    let created = line.create_sh(&script).await;
    let id = created["session_id"].clone();
    let pid = created["pid"].as_u64().unwrap() as u32;
    line.read_output_until(&id, "waiting").await;
    drop(line);

    daemon.crash();
    std::fs::write(&go, "").unwrap();
    eventually("the program to end and be reaped", || async {
        process_gone(pid).then_some(())
    })
    .await;

    let daemon = daemon.start_again(&[]).await;
    let mut line = daemon.line().await;
    let deadline = Deadline::start();
    let info = loop {
        deadline.check("the session to be stopped");
        let info = line.ok("get_session", json!({"session_id": id})).await;
        if info["state"] == "stopped" {
            break info;
        }
        line.ok(
            "receive_output",
            json!({"session_id": id, "since": info["output_offset"], "timeout_ms": 200}),
        )
        .await;
    };
    assert_eq!(info["exit_code"], 42, "{info}");
}

#[tokio::test]
async fn get_status_names_the_keeper_and_when_the_daemon_started() {
    let daemon = Daemon::start().await;
    let mut line = daemon.line().await;
    let status = line.ok("get_status", json!({})).await;
    let keeper = status["keeper"]
        .as_object()
        .unwrap_or_else(|| panic!("{status}"));
    let keeper_pid = keeper["pid"].as_u64().unwrap() as u32;
    assert!(!process_gone(keeper_pid));
    assert_ne!(keeper_pid, daemon.child.id());
    assert_eq!(
        keeper["socket"],
        daemon.keeper_socket().display().to_string()
    );
    assert!(status["started_at"].is_string(), "{status}");
    use std::os::unix::fs::PermissionsExt as _;
    let mode = std::fs::metadata(daemon.keeper_socket())
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "the keeper's socket is private");
}

#[tokio::test]
async fn shutdown_ends_every_session_and_the_keeper() {
    let mut daemon = Daemon::start().await;
    let mut line = daemon.line().await;
    let (_, pid) = shell(&mut line).await;
    let keeper_pid = line.ok("get_status", json!({})).await["keeper"]["pid"]
        .as_u64()
        .unwrap() as u32;
    line.ok("shutdown", json!({"terminate_sessions": true}))
        .await;
    let exit = wait_exit(&mut daemon.child, "the daemon");
    assert!(exit.success(), "{exit:?}");
    eventually("the shell and the keeper to end", || async {
        (process_gone(pid as u32) && process_gone(keeper_pid)).then_some(())
    })
    .await;
}

#[tokio::test]
async fn a_terminated_session_leaves_nothing_held_by_the_keeper() {
    let daemon = Daemon::start().await;
    let mut line = daemon.line().await;
    let (id, pid) = shell(&mut line).await;
    line.ok("terminate_session", json!({"session_id": id}))
        .await;
    eventually("the keeper to let go of the session", || async {
        let keeper = pulsar_keeper::client::Client::connect(&daemon.keeper_socket()).ok()?;
        let held = keeper.list().ok()?;
        held.iter()
            .all(|(h, _)| h.id != id.as_str().unwrap())
            .then_some(())
    })
    .await;
    assert!(process_gone(pid as u32));
}

#[tokio::test]
async fn the_main_screen_behind_a_full_screen_program_survives_a_restart() {
    let daemon = Daemon::start().await;
    let mut line = daemon.line().await;
    let script = r#"printf 'MAIN-TEXT\n'; printf '\033[?1049h\033[HALT-TEXT'; read x; printf '\033[?1049l'; read y"#;
    let created = line.create_sh(script).await;
    let id = created["session_id"].clone();
    line.read_output_until(&id, "ALT-TEXT").await;
    drop(line);

    // A crash: the screen comes back from what was saved, not from the program.
    let daemon = {
        let daemon = daemon;
        // Saved within persist_interval_ms; wait for it rather than racing it.
        let db = daemon.database();
        eventually("the screen to be saved", || async {
            let conn = rusqlite::Connection::open(&db).ok()?;
            let n: i64 = conn
                .query_row(
                    "SELECT COUNT(*) FROM session_state WHERE pty_state IS NOT NULL",
                    [],
                    |r| r.get(0),
                )
                .ok()?;
            (n > 0).then_some(())
        })
        .await;
        daemon.crash_and_restart(&[]).await
    };
    let mut line = daemon.line().await;
    let screen = line.ok("get_screen", json!({"session_id": id})).await;
    assert_eq!(screen["alternate_screen"], true, "{screen}");
    assert!(
        screen["rows"][0].as_str().unwrap().starts_with("ALT-TEXT"),
        "{screen}"
    );
    // The program leaves the alternate screen: the main screen it hid is there.
    line.ok("send_input", json!({"session_id": id, "data": b64(b"\n")}))
        .await;
    let shown = eventually("the main screen back", || {
        let socket = daemon.socket.clone();
        let id = id.clone();
        async move {
            let mut line = LineClient::connect(&socket).await;
            let screen = line.ok("get_screen", json!({"session_id": id})).await;
            (screen["alternate_screen"] == false).then_some(screen)
        }
    })
    .await;
    assert!(
        shown["rows"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r.as_str() == Some("MAIN-TEXT")),
        "{shown}"
    );
}

#[tokio::test]
async fn without_a_keeper_binary_beside_it_the_daemon_binary_is_its_own_keeper() {
    // pulsar-standalone alone in a directory, as `cargo run -p pulsar-standalone` or a copy
    // of just the daemon leaves it; no pulsar-keeper on PATH either.
    let bin = tempfile::tempdir().unwrap();
    let alone = bin.path().join("pulsar-standalone");
    std::fs::copy(artifact("pulsar-standalone"), &alone).unwrap();
    let home = tempfile::tempdir().unwrap();
    let socket = home.path().join("run/pulsar.sock");
    let mut child = std::process::Command::new(&alone)
        .arg("--socket")
        .arg(&socket)
        .arg("--database")
        .arg(home.path().join("p.db"))
        .env("HOME", home.path())
        .env("PATH", "/usr/bin:/bin")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let status = eventually("the daemon to answer", || async {
        try_call(&socket, "get_status", json!({}))
    })
    .await;
    let keeper = status["keeper"]["pid"]
        .as_u64()
        .unwrap_or_else(|| panic!("{status}"));
    let cmdline = std::fs::read(format!("/proc/{keeper}/cmdline")).unwrap();
    let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
    assert!(
        cmdline.starts_with(&format!("{} --keeper --socket", alone.display())),
        "{cmdline}"
    );
    // Clean up: the keeper and the daemon.
    if let Ok(keeper) =
        pulsar_keeper::client::Client::connect(&socket.with_file_name("pulsar-keeper.sock"))
    {
        let _ = keeper.call(&pulsar_keeper::wire::Request::TerminateAll, &[]);
    }
    let _ = child.kill();
    let _ = child.wait();
}

#[tokio::test]
async fn a_killed_keeper_is_started_again_for_new_sessions() {
    let daemon = Daemon::start().await;
    let mut line = daemon.line().await;
    let (old_id, _) = shell(&mut line).await;
    let keeper = line.ok("get_status", json!({})).await["keeper"]["pid"]
        .as_u64()
        .unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(keeper as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    eventually("the keeper to be gone", || async {
        process_gone(keeper as u32).then_some(())
    })
    .await;
    // The session it held keeps its terminal in this daemon...
    type_line(&mut line, &old_id, "echo alive-$((2+3))").await;
    line.read_output_until(&old_id, "alive-5").await;
    // ...and a new session gets a new keeper.
    let (new_id, pid) = shell(&mut line).await;
    assert!(!process_gone(pid as u32));
    type_line(&mut line, &new_id, "echo fresh-$((3+4))").await;
    line.read_output_until(&new_id, "fresh-7").await;
    let held = pulsar_keeper::client::Client::connect(&daemon.keeper_socket())
        .unwrap()
        .list()
        .unwrap();
    assert!(held.iter().any(|(h, _)| h.id == new_id.as_str().unwrap()));
}

#[tokio::test]
async fn without_a_keeper_sessions_end_with_the_daemon_and_are_respawned() {
    let daemon = Daemon::start_with(&[("KEEPER", "false")]).await;
    let mut line = daemon.line().await;
    let status = line.ok("get_status", json!({})).await;
    assert!(status.get("keeper").is_none(), "{status}");
    let (id, pid) = shell(&mut line).await;
    type_line(&mut line, &id, "echo own-$((2*3))").await;
    line.read_output_until(&id, "own-6").await;
    drop(line);

    let daemon = daemon.restart(&[]).await;
    assert!(
        process_gone(pid as u32),
        "the daemon's own child ends with it"
    );
    let mut line = daemon.line().await;
    let info = line.ok("get_session", json!({"session_id": id})).await;
    assert_ne!(info["pid"].as_u64(), Some(pid), "respawned: {info}");
    assert_ne!(info["state"], "stopped", "{info}");
}

/// Creating a session whose program does not exist: the error, as answered.
async fn unstartable(settings: &[(&str, &str)]) -> Value {
    let daemon = Daemon::start_with(settings).await;
    let mut line = daemon.line().await;
    line.err(
        "create_session",
        json!({"type": {"kind": "local", "command": ["/nonexistent/program"]}}),
    )
    .await
}

#[tokio::test]
async fn a_program_that_cannot_start_is_1005_naming_it_once() {
    for settings in [&[][..], &[("KEEPER", "false")][..]] {
        let err = unstartable(settings).await;
        assert_eq!(err["code"], 1005, "{err}");
        let message = err["message"].as_str().unwrap();
        assert_eq!(
            message
                .matches("cannot start `/nonexistent/program`")
                .count(),
            1,
            "{settings:?}: {message}"
        );
    }
}
