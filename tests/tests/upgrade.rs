//! Upgrades in place: `upgrade_daemon` replaces the running daemon by another process on the
//! same socket, and every session runs on with the same pid, losing and repeating no byte.

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

use pulsar_e2e::*;
use serde_json::{Value, json};

/// Asks for an upgrade to `binary` (default: the daemon's own), waits until the new daemon
/// serves, and returns its pid.
async fn upgrade(daemon: &Daemon, binary: Option<&Path>) -> u32 {
    let mut line = daemon.line().await;
    let params = match binary {
        Some(binary) => json!({"binary": binary}),
        None => json!({}),
    };
    let started = line.ok("upgrade_daemon", params).await;
    let to = started["to_pid"].as_u64().expect("to_pid") as u32;
    eventually("the new daemon to serve", || async {
        (serving_pid(&daemon.socket) == Some(to)).then_some(())
    })
    .await;
    to
}

async fn daemon_pid(daemon: &Daemon) -> u32 {
    let mut line = daemon.line().await;
    line.ok("get_status", json!({})).await["pid"]
        .as_u64()
        .unwrap() as u32
}

async fn create(line: &mut LineClient, argv: &[&str]) -> (Value, u32) {
    let created = line
        .ok(
            "create_session",
            json!({"type": {"kind": "local", "command": argv}}),
        )
        .await;
    let pid = created["pid"].as_u64().expect("a pid") as u32;
    (created["session_id"].clone(), pid)
}

/// Every line `n<i>` of a session's whole output, in order.
async fn numbers(line: &mut LineClient, id: &Value) -> Vec<u32> {
    let all = line
        .ok(
            "receive_output",
            json!({"session_id": id, "since": 0, "max_bytes": 1048576}),
        )
        .await;
    assert_eq!(all["offset"], 0, "nothing dropped from the start");
    let text = String::from_utf8_lossy(&unb64(all["data"].as_str().unwrap())).into_owned();
    text.split("\r\n")
        .filter_map(|l| l.strip_prefix('n')?.parse().ok())
        .collect()
}

#[tokio::test]
async fn upgrade_keeps_every_session_running_with_the_same_pid() {
    let daemon = Daemon::start().await;
    let old = daemon_pid(&daemon).await;
    let mut line = daemon.line().await;
    let (id, pid) = create(&mut line, &["/bin/cat"]).await;
    drop(line);

    let new = upgrade(&daemon, None).await;
    assert_ne!(new, old);
    let mut line = daemon.line().await;
    let info = line.ok("get_session", json!({"session_id": id})).await;
    assert_eq!(info["pid"].as_u64(), Some(u64::from(pid)), "{info}");
    line.ok(
        "send_input",
        json!({"session_id": id, "data": b64(b"after the upgrade\n")}),
    )
    .await;
    line.read_output_until(&id, "after the upgrade\r\n").await;
}

#[tokio::test]
async fn output_flooding_during_an_upgrade_is_neither_lost_nor_duplicated() {
    let daemon = Daemon::start().await;
    let mut line = daemon.line().await;
    let script = "for i in $(seq 1 2000); do echo n$i; done; echo counted; read x";
    let (id, _) = create(&mut line, &["/bin/sh", "-c", script]).await;
    drop(line);
    upgrade(&daemon, None).await;
    let mut line = daemon.line().await;
    line.read_output_until(&id, "counted").await;
    assert_eq!(
        numbers(&mut line, &id).await,
        (1..=2000).collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn a_program_exiting_during_an_upgrade_keeps_its_exit_code() {
    let scratch = tempfile::tempdir().unwrap();
    let go = scratch.path().join("go");
    let daemon = Daemon::start().await;
    let mut line = daemon.line().await;
    let script = format!(
        "while [ ! -e {} ]; do sleep 0.01; done; exit 42",
        go.display()
    );
    let (id, _) = create(&mut line, &["/bin/sh", "-c", &script]).await;
    line.ok("upgrade_daemon", json!({})).await;
    // It exits while the daemons change hands.
    std::fs::write(&go, "").unwrap();
    drop(line);
    let deadline = Deadline::start();
    let info = loop {
        deadline.check("the session to stop");
        if let Some(info) = try_call(&daemon.socket, "get_session", json!({"session_id": id}))
            .filter(|info| info["state"] == "stopped")
        {
            break info;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    assert_eq!(info["exit_code"], 42, "{info}");
}

#[tokio::test]
async fn a_hundred_upgrades_in_a_row_while_ten_sessions_stream_lose_nothing() {
    let scratch = tempfile::tempdir().unwrap();
    let stop = scratch.path().join("stop");
    let daemon = Daemon::start().await;
    let mut line = daemon.line().await;
    // Counts until told to stop, then waits for a line so it stays for reading.
    let script = format!(
        "i=0; while [ ! -e {} ]; do i=$((i+1)); echo n$i; sleep 0.01; done; echo counted; read x",
        stop.display()
    );
    let mut ids = Vec::new();
    for _ in 0..10 {
        ids.push(create(&mut line, &["/bin/sh", "-c", &script]).await.0);
    }
    drop(line);
    let fds_before = keeper_fds(&daemon).await;
    let mut pids = std::collections::HashSet::new();
    for _ in 0..100 {
        pids.insert(upgrade(&daemon, None).await);
    }
    assert_eq!(pids.len(), 100, "a new daemon every time");
    std::fs::write(&stop, "").unwrap();
    let mut line = daemon.line().await;
    for id in &ids {
        line.read_output_until(id, "counted").await;
        let seen = numbers(&mut line, id).await;
        let last = *seen.last().expect("some output");
        assert_eq!(
            seen,
            (1..=last).collect::<Vec<_>>(),
            "every line once, in order"
        );
    }
    // The last daemon replaced may still be on its way out, its keeper connection open:
    // no growth means the count comes back, not that it already has.
    let deadline = Deadline::start();
    loop {
        let fds = keeper_fds(&daemon).await;
        if fds.len() == fds_before.len() {
            break;
        }
        deadline.check(&format!(
            "no descriptor growth in the keeper (now {fds:?}, was {fds_before:?})"
        ));
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// What the keeper holds open: each descriptor's number and target, sorted.
async fn keeper_fds(daemon: &Daemon) -> Vec<String> {
    let mut line = daemon.line().await;
    let pid = line.ok("get_status", json!({})).await["keeper"]["pid"]
        .as_u64()
        .unwrap();
    let mut fds: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .filter_map(Result::ok)
        .map(|entry| {
            let target = std::fs::read_link(entry.path())
                .map(|t| t.display().to_string())
                .unwrap_or_else(|_| "gone".to_owned());
            format!("{}->{target}", entry.file_name().to_string_lossy())
        })
        .collect();
    fds.sort();
    fds
}

/// Asks for an upgrade to `binary` and returns the error, checking the daemon serves on.
async fn refused_upgrade(daemon: &Daemon, binary: &Path) -> Value {
    let old = daemon_pid(daemon).await;
    let mut line = daemon.line().await;
    let (id, pid) = create(&mut line, &["/bin/cat"]).await;
    let err = line.call("upgrade_daemon", json!({"binary": binary})).await;
    let error = err["error"].clone();
    assert_eq!(error["code"], 1022, "{err}");
    // The same daemon serves on (or, after a failed hand-over, a fresh one in its process),
    // with the session as it was.
    let deadline = Deadline::start();
    let info = loop {
        deadline.check("the daemon to serve on");
        if let Some(info) = try_call(&daemon.socket, "get_session", json!({"session_id": id})) {
            break info;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    assert_eq!(info["pid"].as_u64(), Some(u64::from(pid)));
    assert_eq!(daemon_pid(daemon).await, old);
    error
}

#[tokio::test]
async fn upgrade_to_a_missing_binary_is_refused_and_the_daemon_serves_on() {
    let daemon = Daemon::start().await;
    let error = refused_upgrade(&daemon, Path::new("/nonexistent/pulsar-standalone")).await;
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .contains("/nonexistent/pulsar-standalone"),
        "{error}"
    );
}

#[tokio::test]
async fn upgrade_to_a_file_that_is_not_executable_is_refused() {
    let scratch = tempfile::tempdir().unwrap();
    let file = scratch.path().join("daemon");
    std::fs::write(&file, "not a program").unwrap();
    let daemon = Daemon::start().await;
    let error = refused_upgrade(&daemon, &file).await;
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .contains("not an executable"),
        "{error}"
    );
}

#[tokio::test]
async fn upgrade_to_a_binary_that_exits_at_once_is_refused() {
    let daemon = Daemon::start().await;
    let error = refused_upgrade(&daemon, Path::new("/bin/false")).await;
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .contains("exited before it was ready"),
        "{error}"
    );
}

/// A fake daemon: Python speaking the hand-over channel on descriptor 3.
fn fake_daemon(dir: &Path, body: &str) -> PathBuf {
    let path = dir.join("fake-daemon");
    std::fs::write(
        &path,
        format!("#!/usr/bin/env python3\nimport os, socket, sys\nfd = int(os.environ['PULSAR_HANDOVER_FD'])\n{body}\n"),
    )
    .unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

#[tokio::test]
async fn upgrade_to_a_binary_speaking_another_handover_version_is_refused() {
    let scratch = tempfile::tempdir().unwrap();
    let fake = fake_daemon(
        scratch.path(),
        "os.write(fd, b'{\"v\": 99, \"msg\": \"ready\", \"pid\": 1, \"version\": \"9\"}')\nimport time; time.sleep(5)",
    );
    let daemon = Daemon::start().await;
    let error = refused_upgrade(&daemon, &fake).await;
    let message = error["message"].as_str().unwrap();
    assert!(
        message.contains("99") && message.contains("speaks 1"),
        "{error}"
    );
}

#[tokio::test]
async fn a_new_daemon_crashing_while_taking_over_leaves_the_sessions_served() {
    let scratch = tempfile::tempdir().unwrap();
    // Says ready, takes the socket, then dies.
    let fake = fake_daemon(
        scratch.path(),
        "s = socket.socket(fileno=fd)\ns.send(b'{\"v\": 1, \"msg\": \"ready\", \"pid\": %d, \"version\": \"x\"}' % os.getpid())\ns.recvmsg(65536, 4096)\nsys.exit(3)",
    );
    let daemon = Daemon::start().await;
    let old = daemon_pid(&daemon).await;
    let mut line = daemon.line().await;
    let (id, pid) = create(&mut line, &["/bin/cat"]).await;
    line.ok("upgrade_daemon", json!({"binary": fake})).await;
    drop(line);
    let status = eventually("the daemon to serve again, saying why", || async {
        try_call(&daemon.socket, "get_status", json!({}))
            .filter(|status| status["last_upgrade_error"].is_string())
    })
    .await;
    assert_eq!(status["pid"].as_u64(), Some(u64::from(old)));
    assert!(
        status["last_upgrade_error"]
            .as_str()
            .unwrap()
            .contains("failed while taking over"),
        "{status}"
    );
    let mut line = daemon.line().await;
    let info = line.ok("get_session", json!({"session_id": id})).await;
    assert_eq!(info["pid"].as_u64(), Some(u64::from(pid)));
    line.ok(
        "send_input",
        json!({"session_id": id, "data": b64(b"still here\n")}),
    )
    .await;
    line.read_output_until(&id, "still here\r\n").await;
}

#[tokio::test]
async fn five_hundred_sessions_are_handed_over_at_once() {
    let daemon = Daemon::start().await;
    let mut line = daemon.line().await;
    let mut sessions = Vec::new();
    for _ in 0..500 {
        sessions.push(create(&mut line, &["/bin/cat"]).await);
    }
    drop(line);
    upgrade(&daemon, None).await;
    let mut line = daemon.line().await;
    let listed = line.ok("list_sessions", json!({})).await;
    let by_id: std::collections::HashMap<String, u64> = listed["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["id"].as_str().unwrap().to_owned(),
                s["pid"].as_u64().unwrap_or(0),
            )
        })
        .collect();
    for (id, pid) in &sessions {
        assert_eq!(
            by_id.get(id.as_str().unwrap()),
            Some(&u64::from(*pid)),
            "session {id}"
        );
    }
    // And each still answers.
    let (id, _) = &sessions[499];
    line.ok(
        "send_input",
        json!({"session_id": id, "data": b64(b"last one\n")}),
    )
    .await;
    line.read_output_until(id, "last one\r\n").await;
}
