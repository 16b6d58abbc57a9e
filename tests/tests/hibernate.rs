//! Idle screens hibernate: their model is kept as its exact serialization until the next
//! output or read, and comes back exactly as it was. Their scrollback, once saved, is given
//! back to the database, and read back from it exactly.

use pulsar_e2e::*;
use serde_json::{Value, json};

#[tokio::test]
async fn an_idle_screen_hibernates_and_wakes_exactly_as_it_was() {
    let daemon = sleepy_daemon(&[]).await;
    let mut line = daemon.line().await;
    let script = r#"printf '\033[1;31mred\033[0m plain\n\033[2;5Hmoved'; read x; echo woke-$((6*7)); read y"#;
    let created = line.create_sh(script).await;
    let id = created["session_id"].clone();
    line.read_output_until(&id, "moved").await;
    let before = line
        .ok("get_screen", json!({"session_id": id, "format": "ansi"}))
        .await;

    status_becomes(&daemon, "num_hibernated", 1).await;
    // Reading it wakes it, exactly as it was.
    let after = line
        .ok("get_screen", json!({"session_id": id, "format": "ansi"}))
        .await;
    assert_eq!(after, before);
    // Output wakes it too, and the program goes on drawing on the same screen.
    line.ok("send_input", json!({"session_id": id, "data": b64(b"\n")}))
        .await;
    line.read_output_until(&id, "woke-42").await;
    let screen = line.ok("get_screen", json!({"session_id": id})).await;
    let rows: Vec<&str> = screen["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap())
        .collect();
    assert_eq!(rows[0], "red plain", "{rows:?}");
    assert!(rows.iter().any(|r| r.contains("woke-42")), "{rows:?}");
}

#[tokio::test]
async fn a_parked_session_wakes_on_its_programs_own_output() {
    let daemon = sleepy_daemon(&[]).await;
    let mut line = daemon.line().await;
    let flag = daemon.dir.path().join("go");
    // Silent while it waits: no output, no input, nothing but the file to wake it.
    let script = format!(
        "echo ready; while [ ! -e {} ]; do sleep 0.05; done; echo later-$((6*7)); read x",
        flag.display()
    );
    let id = line.create_sh(&script).await["session_id"].clone();
    line.read_output_until(&id, "ready").await;
    status_becomes(&daemon, "num_parked", 1).await;
    std::fs::write(&flag, b"").unwrap();
    line.read_output_until(&id, "later-42").await;
    screen_shows(&daemon, &id, "later-42").await;
}

#[tokio::test]
async fn an_idle_session_parks_on_its_own_timer_while_its_screen_stays_awake() {
    let daemon =
        Daemon::start_with(&[("PARK_AFTER_MS", "300"), ("HIBERNATE_AFTER_SECS", "0")]).await;
    let mut line = daemon.line().await;
    let id = echo_session(&mut line).await;
    status_becomes(&daemon, "num_parked", 1).await;
    let status = try_call(&daemon.socket, "get_status", json!({})).unwrap();
    assert_eq!(status["num_hibernated"], 0, "{status}");
    echoes(&mut line, &id, "abc").await;
}

#[tokio::test]
async fn with_parking_off_a_hibernated_session_keeps_its_pump() {
    let daemon = sleepy_daemon(&[("PARK_AFTER_MS", "0")]).await;
    let mut line = daemon.line().await;
    let id = echo_session(&mut line).await;
    status_becomes(&daemon, "num_hibernated", 1).await;
    let status = try_call(&daemon.socket, "get_status", json!({})).unwrap();
    assert_eq!(status["num_parked"], 0, "{status}");
    echoes(&mut line, &id, "abc").await;
}

#[tokio::test]
async fn a_parked_session_wakes_on_input_and_echoes_it() {
    let daemon = sleepy_daemon(&[]).await;
    let mut line = daemon.line().await;
    let id = echo_session(&mut line).await;
    status_becomes(&daemon, "num_parked", 1).await;
    echoes(&mut line, &id, "abc").await;
    // Idle again, it parks again, and wakes again.
    status_becomes(&daemon, "num_parked", 1).await;
    line.ok(
        "send_input",
        json!({"session_id": id, "data": b64(b"def\n")}),
    )
    .await;
    line.read_output_until(&id, "def").await;
}

#[tokio::test]
async fn a_parked_sessions_program_ending_ends_the_session_with_its_status() {
    parked_program_ends(&[]).await;
}

#[tokio::test]
async fn a_parked_session_of_a_daemon_without_keeper_ends_with_its_program() {
    parked_program_ends(&[("KEEPER", "false")]).await;
}

/// A parked session's program is killed while a background job of it keeps the terminal
/// open: only the program's exit (no hang-up, no output) can wake the session, which then
/// stops with the program's status.
async fn parked_program_ends(settings: &[(&str, &str)]) {
    let daemon = sleepy_daemon(settings).await;
    let mut line = daemon.line().await;
    let created = line
        .create_sh("sleep 600 & echo job:$!:up; exec sleep 600")
        .await;
    let (id, pid) = (
        created["session_id"].clone(),
        created["pid"].as_u64().expect("a pid"),
    );
    let printed = line.read_output_until(&id, ":up").await;
    let job = job_pid(&printed);
    let kill = |pid: i32| {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        );
    };
    status_becomes(&daemon, "num_parked", 1).await;
    kill(pid as i32);
    let info = eventually("the session to stop", || {
        let (socket, id) = (daemon.socket.clone(), id.clone());
        async move {
            let info = try_call(&socket, "get_session", json!({"session_id": id}))?;
            (info["state"] == "stopped").then_some(info)
        }
    })
    .await;
    // The job is the test's to end, before anything can fail.
    kill(job);
    assert_eq!(info["exit_signal"], 9, "{info}");
    status_becomes(&daemon, "num_parked", 0).await;
}

#[tokio::test]
async fn silent_input_to_a_parked_session_reaches_its_program_and_output_still_wakes_it() {
    let daemon = sleepy_daemon(&[]).await;
    let mut line = daemon.line().await;
    let flag = daemon.dir.path().join("go");
    // No echo: the input itself writes nothing back, so the session stays parked until the
    // program writes.
    let script = format!(
        "stty -echo; echo ready; read x; while [ ! -e {} ]; do sleep 0.05; done; echo got-$x",
        flag.display()
    );
    let id = line.create_sh(&script).await["session_id"].clone();
    line.read_output_until(&id, "ready").await;
    status_becomes(&daemon, "num_parked", 1).await;
    line.ok(
        "send_input",
        json!({"session_id": id, "data": b64(b"abc\n")}),
    )
    .await;
    std::fs::write(&flag, b"").unwrap();
    line.read_output_until(&id, "got-abc").await;
}

#[tokio::test]
async fn a_parked_session_lives_on_through_a_daemon_restart() {
    let daemon = sleepy_daemon(&[]).await;
    let mut line = daemon.line().await;
    let created = line
        .create_sh("echo ready; read x; echo got-$x; read y")
        .await;
    let (id, pid) = (created["session_id"].clone(), created["pid"].clone());
    line.read_output_until(&id, "ready").await;
    status_becomes(&daemon, "num_parked", 1).await;
    drop(line);
    // A graceful stop with the pump parked: nothing to wait for, the program lives on.
    let daemon = daemon.restart(&[]).await;
    let mut line = daemon.line().await;
    let info = line.ok("get_session", json!({"session_id": id})).await;
    assert_eq!(
        (info["state"].as_str(), &info["pid"]),
        (Some("detached"), &pid),
        "{info}"
    );
    line.ok(
        "send_input",
        json!({"session_id": id, "data": b64(b"abc\n")}),
    )
    .await;
    line.read_output_until(&id, "got-abc").await;
}

/// A shell that has printed "ready" and answers a line `X` with "got-X", then one more.
async fn echo_session(line: &mut LineClient) -> Value {
    let created = line
        .create_sh("echo ready; read x; echo got-$x; read y")
        .await;
    let id = created["session_id"].clone();
    line.read_output_until(&id, "ready").await;
    id
}

/// Types `text` and a newline into [`echo_session`]'s shell and waits for its answer.
async fn echoes(line: &mut LineClient, id: &Value, text: &str) {
    let data = b64(format!("{text}\n").as_bytes());
    line.ok("send_input", json!({"session_id": id, "data": data}))
        .await;
    line.read_output_until(id, &format!("got-{text}")).await;
}

/// A daemon whose idle sessions park within a second and hibernate within a second or two,
/// saving output every 100 ms.
async fn sleepy_daemon(extra: &[(&str, &str)]) -> Daemon {
    let mut settings = vec![
        ("HIBERNATE_AFTER_SECS", "1"),
        ("PARK_AFTER_MS", "500"),
        ("CLEANUP_INTERVAL_SECS", "1"),
        ("PERSIST_INTERVAL_MS", "100"),
    ];
    settings.extend_from_slice(extra);
    Daemon::start_with(&settings).await
}

/// Every byte the session has written, from its first (`receive_output` from offset 0).
async fn all_output(line: &mut LineClient, id: &Value) -> (Vec<u8>, Value) {
    let out = line
        .ok(
            "receive_output",
            json!({"session_id": id, "since": 0, "max_bytes": 1048576}),
        )
        .await;
    (unb64(out["data"].as_str().expect("data")), out)
}

/// Polls `get_status` until its `field` is `wanted`.
async fn status_becomes(daemon: &Daemon, field: &'static str, wanted: u64) {
    eventually(&format!("get_status's {field} to be {wanted}"), || {
        let socket = daemon.socket.clone();
        async move {
            let status = try_call(&socket, "get_status", json!({}))?;
            (status[field] == wanted).then_some(())
        }
    })
    .await;
}

/// Polls `get_status` until `scrollback_released_bytes` is `wanted`.
async fn released_becomes(daemon: &Daemon, wanted: u64) {
    status_becomes(daemon, "scrollback_released_bytes", wanted).await;
}

/// A session that prints `seq 1 30000` (about 200 KB through the terminal), then waits for a
/// line before printing `after-42`.
async fn seq_session(line: &mut LineClient) -> Value {
    let script = "seq 1 30000; echo end-of-seq; read x; echo after-$((6*7)); read y";
    let id = line.create_sh(script).await["session_id"].clone();
    line.read_output_until(&id, "end-of-seq").await;
    id
}

#[tokio::test]
async fn a_sleeping_sessions_saved_scrollback_leaves_memory_and_reads_back_exactly() {
    let daemon = sleepy_daemon(&[]).await;
    let mut line = daemon.line().await;
    let id = seq_session(&mut line).await;
    let (before, _) = all_output(&mut line, &id).await;
    assert!(before.len() > 190_000, "{} bytes", before.len());
    // All of it is saved (persist_scrollback_bytes 256 KiB), so all of it is released.
    released_becomes(&daemon, before.len() as u64).await;
    let (after, out) = all_output(&mut line, &id).await;
    assert_eq!(out["truncated"], false);
    assert!(after == before, "the bytes read back differ");
}

#[tokio::test]
async fn output_after_a_release_continues_the_scrollback_without_a_gap() {
    let daemon = sleepy_daemon(&[]).await;
    let mut line = daemon.line().await;
    let id = seq_session(&mut line).await;
    let (before, _) = all_output(&mut line, &id).await;
    released_becomes(&daemon, before.len() as u64).await;
    line.ok("send_input", json!({"session_id": id, "data": b64(b"\n")}))
        .await;
    line.read_output_until(&id, "after-42").await;
    let (after, _) = all_output(&mut line, &id).await;
    assert!(
        after.starts_with(&before),
        "the released bytes came back first"
    );
    let rest = String::from_utf8_lossy(&after[before.len()..]).into_owned();
    assert!(rest.contains("after-42"), "{rest:?}");
    // Idle again: released again, the new bytes with it.
    released_becomes(&daemon, after.len() as u64).await;
}

#[tokio::test]
async fn scrollback_older_than_the_database_keeps_stays_in_memory() {
    let daemon = sleepy_daemon(&[("PERSIST_SCROLLBACK_BYTES", "65536")]).await;
    let mut line = daemon.line().await;
    let id = seq_session(&mut line).await;
    let (before, _) = all_output(&mut line, &id).await;
    // Only the newest 64 KiB are saved, so only they may leave; the rest is kept.
    released_becomes(&daemon, 65536).await;
    let (after, out) = all_output(&mut line, &id).await;
    assert_eq!(out["truncated"], false);
    assert!(after == before, "the bytes read back differ");
}

#[tokio::test]
async fn scrollback_is_kept_in_memory_when_output_is_not_saved() {
    let daemon = sleepy_daemon(&[("PERSIST_SCROLLBACK_BYTES", "0")]).await;
    let mut line = daemon.line().await;
    let id = seq_session(&mut line).await;
    status_becomes(&daemon, "num_hibernated", 1).await;
    // Three more seconds: two more cleanup passes, each of which would have released it.
    fn uptime(socket: &std::path::Path) -> Option<u64> {
        try_call(socket, "get_status", json!({}))?["uptime_seconds"].as_u64()
    }
    let started = uptime(&daemon.socket).expect("the daemon answers");
    eventually("two more cleanup passes", || {
        let socket = daemon.socket.clone();
        async move { (uptime(&socket)? >= started + 3).then_some(()) }
    })
    .await;
    let status = try_call(&daemon.socket, "get_status", json!({})).unwrap();
    assert_eq!(status["scrollback_released_bytes"], 0);
    let (all, _) = all_output(&mut line, &id).await;
    assert!(String::from_utf8_lossy(&all).contains("end-of-seq"));
}

#[tokio::test]
async fn sessions_that_park_and_wake_over_and_over_lose_no_output() {
    const SESSIONS: usize = 12;
    let daemon = sleepy_daemon(&[]).await;
    let mut line = daemon.line().await;
    // Quiet between lines for longer than the idle time and a cleanup tick: each parks in
    // every gap, and its next line wakes it.
    let script = "i=0; while [ $i -lt 3 ]; do sleep 2.2; echo n$i; i=$((i+1)); done; echo fin-$((6*7)); read x";
    let mut ids = Vec::new();
    for _ in 0..SESSIONS {
        ids.push(line.create_sh(script).await["session_id"].clone());
    }
    // Parked in the first gap (before any output)...
    eventually("sessions to park", || {
        let socket = daemon.socket.clone();
        async move {
            let status = try_call(&socket, "get_status", json!({}))?;
            (status["num_parked"].as_u64()? > 0).then_some(())
        }
    })
    .await;
    // ...and every line of every session came through, once.
    for id in &ids {
        line.read_output_until(id, "fin-42").await;
        let (all, _) = all_output(&mut line, id).await;
        let text = String::from_utf8_lossy(&all).into_owned();
        for needle in ["n0", "n1", "n2", "fin-42"] {
            assert_eq!(text.matches(needle).count(), 1, "{id}: {text:?}");
        }
    }
    status_becomes(&daemon, "num_parked", SESSIONS as u64).await;
}
