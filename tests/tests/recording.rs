//! Recordings: asciicast v2 files played back by asciinema itself (`asciinema cat` must give
//! exactly the session's output), a UTF-8 character split across reads, resizes, a daemon
//! restart mid-recording, the size cap, `record_sessions`, and the recording error codes.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use jsonrpsee::core::client::Subscription;
use pulsar_e2e::*;
use pulsar_protocol::{PulsarApiClient as _, PulsarClient, SessionEvent, SessionId, error as code};
use serde_json::{Value, json};

/// What `asciinema cat` prints for `path`: the recording's output, as a terminal got it.
/// It insists on a terminal of its own (`/dev/tty`), so it runs in a PTY with its output
/// going to a file.
fn asciinema_cat(path: &Path) -> Vec<u8> {
    use portable_pty::{CommandBuilder, PtySize, native_pty_system};
    let printed = path.with_extension("printed");
    let pty = native_pty_system()
        .openpty(PtySize {
            rows: 24,
            cols: 80,
            pixel_width: 0,
            pixel_height: 0,
        })
        .expect("a PTY");
    let mut command = CommandBuilder::new("/bin/sh");
    command.args(["-c", "exec asciinema cat \"$0\" > \"$1\" 2>&1"]);
    command.arg(path);
    command.arg(&printed);
    let mut child = pty
        .slave
        .spawn_command(command)
        .expect("asciinema is installed (scripts/test installs it)");
    drop(pty.slave);
    let status = child.wait().expect("asciinema cat ends");
    let out = std::fs::read(&printed).expect("asciinema's output");
    assert!(
        status.success(),
        "asciinema cat {} failed: {}",
        path.display(),
        String::from_utf8_lossy(&out)
    );
    out
}

/// The file's header and events.
fn read_cast(path: &Path) -> (Value, Vec<Value>) {
    let text = std::fs::read_to_string(path).expect("the recording");
    let mut lines = text.lines();
    let header = serde_json::from_str(lines.next().expect("a header")).expect("JSON header");
    let events = lines
        .map(|l| serde_json::from_str(l).expect("JSON event"))
        .collect();
    (header, events)
}

/// The session's output from `since` to its current end.
async fn output_since(client: &PulsarClient, id: SessionId, since: u64) -> Vec<u8> {
    let end = client.get_session(id).await.unwrap().output_offset;
    let out = client
        .receive_output(id, Some(since), Some(1024 * 1024), None, None)
        .await
        .unwrap();
    assert_eq!(out.next_offset, end, "the output was read whole");
    out.data.as_bytes().to_vec()
}

/// Types `text` and a return into a `cat` session, and waits for the echo and cat's copy.
async fn type_and_wait(client: &PulsarClient, id: SessionId, text: &str) {
    let mut next = client.get_session(id).await.unwrap().output_offset;
    client
        .send_input(id, format!("{text}\r").into_bytes().into(), None)
        .await
        .unwrap();
    let deadline = Deadline::start();
    let mut seen = String::new();
    while seen.matches(text).count() < 2 {
        deadline.check(text);
        let out = client
            .receive_output(id, Some(next), None, Some(200), None)
            .await
            .unwrap();
        seen.push_str(&String::from_utf8_lossy(out.data.as_bytes()));
        next = out.next_offset;
    }
}

/// Starts a `cat` session and a recording of it into `dir`; returns the session, the file
/// and the output offset the recording starts at.
async fn recorded_cat(client: &PulsarClient, dir: &Path) -> (SessionId, PathBuf, u64) {
    let id = start_program(client, &["/bin/cat"]).await;
    let since = client.get_session(id).await.unwrap().output_offset;
    let path = dir.join("cat.cast");
    let started = client
        .start_recording(id, Some(path.clone()), None)
        .await
        .expect("start_recording");
    assert_eq!(started.path, path.display().to_string());
    (id, path, since)
}

async fn until_event(
    events: &mut Subscription<SessionEvent>,
    wanted: impl Fn(&SessionEvent) -> bool,
) -> SessionEvent {
    let deadline = Deadline::start();
    loop {
        deadline.check("the event");
        let event = tokio::time::timeout(DEADLINE, events.next())
            .await
            .expect("an event within the deadline")
            .expect("the subscription is open")
            .expect("a valid event");
        if wanted(&event) {
            return event;
        }
    }
}

#[tokio::test]
async fn asciinema_cat_of_a_recording_gives_exactly_the_session_output() {
    let daemon = Daemon::start().await;
    let client = daemon.client().await;
    let (id, path, since) = recorded_cat(&client, daemon.dir.path()).await;
    type_and_wait(&client, id, "hello \u{e9}t\u{e9} world").await;
    type_and_wait(&client, id, "second line").await;
    client.stop_recording(id).await.expect("stop_recording");

    assert_eq!(asciinema_cat(&path), output_since(&client, id, since).await);
    let (header, events) = read_cast(&path);
    assert_eq!(header["version"], 2);
    assert_eq!(
        (header["width"].as_u64(), header["height"].as_u64()),
        (Some(80), Some(24))
    );
    assert!(header["timestamp"].as_i64().unwrap() > 1_600_000_000);
    assert_eq!(header["env"]["TERM"], "xterm-256color");
    let times: Vec<f64> = events.iter().map(|e| e[0].as_f64().unwrap()).collect();
    assert!(
        times.windows(2).all(|w| w[0] <= w[1]),
        "times go back: {times:?}"
    );
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
}

#[tokio::test]
async fn a_utf8_character_split_across_two_reads_is_recorded_whole() {
    let daemon = Daemon::start().await;
    let client = daemon.client().await;
    // Waits for a line, then writes the euro sign's first two bytes and, a read later, its
    // last one.
    let id = start_program(
        &client,
        &[
            "/bin/sh",
            "-c",
            "read go; printf 'a\\342\\202'; sleep 0.3; printf '\\254b\\n'; sleep 30",
        ],
    )
    .await;
    let since = client.get_session(id).await.unwrap().output_offset;
    let path = daemon.dir.path().join("euro.cast");
    client
        .start_recording(id, Some(path.clone()), None)
        .await
        .unwrap();
    client
        .send_input(id, b"go\r".to_vec().into(), None)
        .await
        .unwrap();
    read_until(&client, id, "a€b").await;
    client.stop_recording(id).await.unwrap();

    let (_, events) = read_cast(&path);
    let text: String = events
        .iter()
        .filter(|e| e[1] == "o")
        .map(|e| e[2].as_str().unwrap())
        .collect();
    assert!(text.contains("a€b"), "recorded {text:?}");
    assert!(
        !text.contains('\u{fffd}'),
        "a replacement character in {text:?}"
    );
    assert_eq!(asciinema_cat(&path), output_since(&client, id, since).await);
}

#[tokio::test]
async fn a_resize_mid_recording_is_an_r_event_between_the_outputs() {
    let daemon = Daemon::start().await;
    let client = daemon.client().await;
    let (id, path, _) = recorded_cat(&client, daemon.dir.path()).await;
    type_and_wait(&client, id, "before").await;
    client.resize_terminal(id, 100, 30, None).await.unwrap();
    type_and_wait(&client, id, "after").await;
    client.stop_recording(id).await.unwrap();

    let (_, events) = read_cast(&path);
    let kinds: Vec<(&str, &str)> = events
        .iter()
        .map(|e| (e[1].as_str().unwrap(), e[2].as_str().unwrap()))
        .collect();
    let resize = kinds
        .iter()
        .position(|k| *k == ("r", "100x30"))
        .unwrap_or_else(|| panic!("no resize event in {kinds:?}"));
    assert!(kinds[..resize].iter().any(|(_, d)| d.contains("before")));
    assert!(kinds[resize..].iter().any(|(_, d)| d.contains("after")));
}

#[tokio::test]
async fn input_is_recorded_as_i_events_when_asked() {
    let daemon = Daemon::start().await;
    let client = daemon.client().await;
    let id = start_program(&client, &["/bin/cat"]).await;
    let path = daemon.dir.path().join("input.cast");
    client
        .start_recording(id, Some(path.clone()), Some(true))
        .await
        .unwrap();
    let info = client.get_session(id).await.unwrap();
    let recording = info.recording.expect("get_session shows the recording");
    assert_eq!(recording.path, path.display().to_string());
    assert!(recording.input);
    type_and_wait(&client, id, "typed").await;
    client.stop_recording(id).await.unwrap();
    assert!(client.get_session(id).await.unwrap().recording.is_none());

    let (_, events) = read_cast(&path);
    assert!(
        events.iter().any(|e| e[1] == "i" && e[2] == "typed\r"),
        "{events:?}"
    );
}

#[tokio::test]
async fn a_recording_goes_on_in_the_same_file_after_a_daemon_restart() {
    let daemon = Daemon::start().await;
    let client = daemon.client().await;
    let (id, path, since) = recorded_cat(&client, daemon.dir.path()).await;
    type_and_wait(&client, id, "before the restart").await;

    let daemon = daemon.restart(&[]).await;
    let client = daemon.client().await;
    let info = client.get_session(id).await.unwrap();
    assert!(info.pid.is_some(), "the same program goes on: {info:?}");
    let recording = info.recording.expect("still recording after the restart");
    assert_eq!(recording.path, path.display().to_string());
    type_and_wait(&client, id, "after the restart").await;
    client.stop_recording(id).await.unwrap();

    assert_eq!(asciinema_cat(&path), output_since(&client, id, since).await);
    let (_, events) = read_cast(&path);
    let times: Vec<f64> = events.iter().map(|e| e[0].as_f64().unwrap()).collect();
    assert!(
        times.windows(2).all(|w| w[0] <= w[1]),
        "times go back: {times:?}"
    );
}

#[tokio::test]
async fn the_size_cap_stops_a_recording_with_the_reason_and_the_session_goes_on() {
    let daemon = Daemon::start_with(&[("RECORDING_MAX_BYTES", "4096")]).await;
    let client = daemon.client().await;
    let mut events = client.subscribe_events().await.unwrap();
    let (id, path, _) = recorded_cat(&client, daemon.dir.path()).await;
    let started = until_event(&mut events, |e| {
        matches!(e, SessionEvent::RecordingStarted { .. })
    })
    .await;
    assert_eq!(
        started,
        SessionEvent::RecordingStarted {
            session_id: id,
            path: path.display().to_string()
        }
    );
    let line = "x".repeat(1000);
    for _ in 0..6 {
        type_and_wait(&client, id, &line).await;
    }
    let stopped = until_event(&mut events, |e| {
        matches!(e, SessionEvent::RecordingStopped { .. })
    })
    .await;
    let SessionEvent::RecordingStopped {
        session_id, reason, ..
    } = stopped
    else {
        unreachable!()
    };
    assert_eq!(session_id, id);
    assert!(
        reason.contains("size cap") && reason.contains("4096"),
        "{reason}"
    );
    assert!(std::fs::metadata(&path).unwrap().len() <= 4096);
    assert!(client.get_session(id).await.unwrap().recording.is_none());
    type_and_wait(&client, id, "still running").await;
    // What was written is a valid, playable recording.
    assert!(!asciinema_cat(&path).is_empty());
}

#[tokio::test]
async fn record_sessions_records_every_new_session_into_recordings_dir() {
    let dir = tempfile::tempdir().unwrap();
    let recordings = dir.path().join("recs");
    let daemon = Daemon::start_with(&[
        ("RECORD_SESSIONS", "true"),
        ("RECORDINGS_DIR", recordings.to_str().unwrap()),
    ])
    .await;
    let client = daemon.client().await;
    let id = start_program(&client, &["/bin/cat"]).await;
    let recording = client
        .get_session(id)
        .await
        .unwrap()
        .recording
        .expect("recorded from the start");
    let path = PathBuf::from(&recording.path);
    assert_eq!(path.parent(), Some(recordings.as_path()));
    let dir_mode = std::fs::metadata(&recordings).unwrap().permissions().mode() & 0o777;
    assert_eq!(dir_mode, 0o700);
    type_and_wait(&client, id, "recorded").await;
    client.stop_recording(id).await.unwrap();
    assert_eq!(asciinema_cat(&path), output_since(&client, id, 0).await);
}

#[tokio::test]
async fn a_second_recording_of_a_session_is_refused_with_1030() {
    let daemon = Daemon::start().await;
    let mut line = daemon.line().await;
    let session = line.create_cat().await;
    let id = &session["session_id"];
    let path = daemon.dir.path().join("one.cast");
    line.ok("start_recording", json!({"session_id": id, "path": path}))
        .await;
    let other = daemon.dir.path().join("two.cast");
    let err = line
        .err("start_recording", json!({"session_id": id, "path": other}))
        .await;
    assert_eq!(err["code"], code::RECORDING_ACTIVE);
    assert_eq!(err["data"]["path"], path.display().to_string());
}

#[tokio::test]
async fn stopping_a_session_that_is_not_recording_is_refused_with_1031() {
    let daemon = Daemon::start().await;
    let mut line = daemon.line().await;
    let session = line.create_cat().await;
    let err = line
        .err(
            "stop_recording",
            json!({"session_id": session["session_id"]}),
        )
        .await;
    assert_eq!(err["code"], code::NOT_RECORDING);
    assert_eq!(err["data"]["session_id"], session["session_id"]);
}

#[tokio::test]
async fn a_recording_file_that_exists_or_a_relative_path_is_refused_with_1032() {
    let daemon = Daemon::start().await;
    let mut line = daemon.line().await;
    let session = line.create_cat().await;
    let id = &session["session_id"];
    let existing = daemon.dir.path().join("exists.cast");
    std::fs::write(&existing, "keep me").unwrap();
    let err = line
        .err(
            "start_recording",
            json!({"session_id": id, "path": existing}),
        )
        .await;
    assert_eq!(err["code"], code::RECORDING_FILE_FAILED);
    assert!(
        err["message"].as_str().unwrap().contains("exists.cast"),
        "{err}"
    );
    assert_eq!(std::fs::read_to_string(&existing).unwrap(), "keep me");
    let err = line
        .err(
            "start_recording",
            json!({"session_id": id, "path": "rel.cast"}),
        )
        .await;
    assert_eq!(err["code"], code::RECORDING_FILE_FAILED);
}

/// Output chunks the daemon has saved with a time, read from its database.
fn timed_chunks(daemon: &Daemon) -> i64 {
    let db = rusqlite::Connection::open(daemon.database()).unwrap();
    db.query_row(
        "SELECT COUNT(*) FROM output_chunks WHERE time IS NOT NULL",
        [],
        |r| r.get(0),
    )
    .unwrap()
}

#[tokio::test]
async fn export_asciicast_replays_the_stored_output_exactly_with_its_save_times() {
    let daemon = Daemon::start_with(&[("PERSIST_INTERVAL_MS", "50")]).await;
    let client = daemon.client().await;
    let id = start_program(&client, &["/bin/cat"]).await;
    type_and_wait(&client, id, "first save").await;
    eventually("the first chunk saved", || async {
        (timed_chunks(&daemon) >= 1).then_some(())
    })
    .await;
    type_and_wait(&client, id, "second save").await;
    eventually("the second chunk saved", || async {
        (timed_chunks(&daemon) >= 2).then_some(())
    })
    .await;
    type_and_wait(&client, id, "not saved yet, maybe").await;

    let export = client.export_asciicast(id, None, None).await.unwrap();
    let path = daemon.dir.path().join("export.cast");
    std::fs::write(&path, &export.cast).unwrap();
    assert_eq!(asciinema_cat(&path), output_since(&client, id, 0).await);
    let (header, events) = read_cast(&path);
    assert_eq!(header["version"], 2);
    let times: Vec<f64> = events.iter().map(|e| e[0].as_f64().unwrap()).collect();
    assert!(times.len() >= 2, "one event per saved chunk: {times:?}");
    assert!(
        times.windows(2).all(|w| w[0] <= w[1]),
        "times go back: {times:?}"
    );
    assert!(
        times.last() > times.first(),
        "the saves' times differ: {times:?}"
    );
}

#[tokio::test]
async fn export_asciicast_between_offsets_gives_only_that_output() {
    let daemon = Daemon::start_with(&[("PERSIST_INTERVAL_MS", "50")]).await;
    let client = daemon.client().await;
    let id = start_program(&client, &["/bin/cat"]).await;
    type_and_wait(&client, id, "before").await;
    let since = client.get_session(id).await.unwrap().output_offset;
    type_and_wait(&client, id, "inside").await;
    let until = client.get_session(id).await.unwrap().output_offset;
    type_and_wait(&client, id, "after").await;

    let export = client
        .export_asciicast(id, Some(since), Some(until))
        .await
        .unwrap();
    let path = daemon.dir.path().join("part.cast");
    std::fs::write(&path, &export.cast).unwrap();
    assert_eq!(asciinema_cat(&path), b"inside\r\ninside\r\n");
    let err = client
        .export_asciicast(id, None, Some(until + 1_000_000))
        .await
        .unwrap_err();
    assert_eq!(rpc_code(&err), code::INVALID_PARAMS);
}

#[tokio::test]
async fn a_recording_stops_when_its_session_ends_and_says_so() {
    let daemon = Daemon::start().await;
    let client = daemon.client().await;
    let mut events = client.subscribe_events().await.unwrap();
    let (id, path, since) = recorded_cat(&client, daemon.dir.path()).await;
    type_and_wait(&client, id, "last words").await;
    client.terminate_session(id).await.unwrap();
    let stopped = until_event(&mut events, |e| {
        matches!(e, SessionEvent::RecordingStopped { .. })
    })
    .await;
    assert_eq!(
        stopped,
        SessionEvent::RecordingStopped {
            session_id: id,
            path: path.display().to_string(),
            reason: "the session ended".into()
        }
    );
    assert!(client.get_session(id).await.unwrap().recording.is_none());
    // The event comes once the file is complete.
    assert_eq!(asciinema_cat(&path), output_since(&client, id, since).await);
}

#[tokio::test]
async fn a_recording_goes_on_in_the_same_file_after_an_upgrade() {
    let daemon = Daemon::start().await;
    let client = daemon.client().await;
    let (id, path, since) = recorded_cat(&client, daemon.dir.path()).await;
    type_and_wait(&client, id, "before the upgrade").await;
    drop(client);

    let mut line = daemon.line().await;
    let started = line.ok("upgrade_daemon", json!({})).await;
    let to = started["to_pid"].as_u64().expect("to_pid") as u32;
    eventually("the new daemon to serve", || async {
        (serving_pid(&daemon.socket) == Some(to)).then_some(())
    })
    .await;
    let client = daemon.client().await;
    let info = client.get_session(id).await.unwrap();
    assert_eq!(
        info.recording.map(|r| r.path),
        Some(path.display().to_string())
    );
    type_and_wait(&client, id, "after the upgrade").await;
    client.stop_recording(id).await.unwrap();
    assert_eq!(asciinema_cat(&path), output_since(&client, id, since).await);
}
