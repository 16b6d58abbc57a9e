//! The attach stream (`pulsar_protocol::stream`), as `pulsar attach` uses it: a screen, then
//! the session's raw output with no gap; keystrokes and sizes back; refusals named; the
//! client detached when the connection closes.

use std::time::Duration;

use pulsar_e2e::*;
use pulsar_protocol::ClientMode;
use pulsar_protocol::stream::{AttachStream, OpenError, ServerFrame, StreamAccepted, StreamHello};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader};

fn hello(id: &Value) -> StreamHello {
    StreamHello {
        session_id: id.as_str().unwrap().parse().unwrap(),
        client_id: None,
        mode: None,
        cols: None,
        rows: None,
        since: None,
        terminal: None,
    }
}

/// Opens an attach stream as `hello` says and reads its first frame, which must be the
/// screen.
async fn open_past_screen(daemon: &Daemon, hello: &StreamHello) -> (StreamAccepted, AttachStream) {
    let (accepted, mut stream) = AttachStream::open(&daemon.socket, hello).await.unwrap();
    let Some(ServerFrame::Screen { .. }) = next_frame(&mut stream).await else {
        panic!("the stream starts with the screen");
    };
    (accepted, stream)
}

/// Output frames until their bytes (from the first) contain `needle`; panics on any other
/// frame.
async fn output_until(stream: &mut AttachStream, needle: &str) -> Vec<u8> {
    let mut seen = Vec::new();
    while !String::from_utf8_lossy(&seen).contains(needle) {
        match next_frame(stream).await {
            Some(ServerFrame::Output(bytes)) => seen.extend(bytes),
            other => panic!("expected output up to {needle:?}, got {other:?} after {seen:?}"),
        }
    }
    seen
}

/// The session's output from `since` to its end, as `receive_output` reads it.
async fn output_since(line: &mut LineClient, id: &Value, since: u64) -> Vec<u8> {
    let out = line
        .ok(
            "receive_output",
            json!({"session_id": id, "since": since, "max_bytes": 1048576}),
        )
        .await;
    assert_eq!(out["truncated"], false, "{out}");
    unb64(out["data"].as_str().unwrap())
}

#[tokio::test]
async fn the_stream_opens_with_the_screen_and_continues_from_its_offset_with_no_gap() {
    let daemon = Daemon::start().await;
    let mut line = daemon.line().await;
    let id = line.create_cat().await["session_id"].clone();
    line.ok(
        "send_input",
        json!({"session_id": id, "data": b64(b"before\n")}),
    )
    .await;
    line.read_output_until(&id, "before\r\nbefore").await;

    let (accepted, mut stream) = AttachStream::open(&daemon.socket, &hello(&id))
        .await
        .unwrap();
    assert_eq!(accepted.mode, ClientMode::Interactive);
    let Some(ServerFrame::Screen { offset, data }) = next_frame(&mut stream).await else {
        panic!("the stream starts with the screen");
    };
    assert!(
        String::from_utf8_lossy(&data).contains("before"),
        "{data:?}"
    );
    stream.send_input(b"after\n").await.unwrap();
    let streamed = output_until(&mut stream, "after\r\nafter").await;
    assert_eq!(streamed, output_since(&mut line, &id, offset).await);
}

#[tokio::test]
async fn a_stream_from_an_offset_the_session_holds_continues_there_without_a_screen() {
    let daemon = Daemon::start().await;
    let mut line = daemon.line().await;
    let id = line.create_cat().await["session_id"].clone();
    line.ok(
        "send_input",
        json!({"session_id": id, "data": b64(b"one\n")}),
    )
    .await;
    line.read_output_until(&id, "one\r\none").await;
    let mark = line.ok("get_session", json!({"session_id": id})).await["output_offset"]
        .as_u64()
        .unwrap();
    line.ok(
        "send_input",
        json!({"session_id": id, "data": b64(b"two\n")}),
    )
    .await;
    line.read_output_until(&id, "two\r\ntwo").await;

    let from_mark = StreamHello {
        since: Some(mark),
        ..hello(&id)
    };
    let (_, mut stream) = AttachStream::open(&daemon.socket, &from_mark)
        .await
        .unwrap();
    let streamed = output_until(&mut stream, "two\r\ntwo").await;
    assert_eq!(streamed, output_since(&mut line, &id, mark).await);
}

#[tokio::test]
async fn a_stream_from_an_offset_beyond_the_output_starts_with_a_screen() {
    let daemon = Daemon::start().await;
    let mut line = daemon.line().await;
    let id = line.create_cat().await["session_id"].clone();
    let beyond = StreamHello {
        since: Some(1_000_000),
        ..hello(&id)
    };
    let (_, mut stream) = AttachStream::open(&daemon.socket, &beyond).await.unwrap();
    assert!(matches!(
        next_frame(&mut stream).await,
        Some(ServerFrame::Screen { .. })
    ));
}

#[tokio::test]
async fn the_hello_size_and_resize_frames_size_the_terminal() {
    let daemon = Daemon::start().await;
    let mut line = daemon.line().await;
    let id = line.create_cat().await["session_id"].clone();
    let sized = StreamHello {
        cols: Some(100),
        rows: Some(30),
        ..hello(&id)
    };
    let (_, mut stream) = open_past_screen(&daemon, &sized).await;
    let info = line.ok("get_session", json!({"session_id": id})).await;
    assert_eq!(
        (info["cols"].clone(), info["rows"].clone()),
        (json!(100), json!(30))
    );

    stream.resize(120, 40).await.unwrap();
    assert_eq!(
        next_frame(&mut stream).await,
        Some(ServerFrame::Resized {
            cols: 120,
            rows: 40
        })
    );
    let info = line.ok("get_session", json!({"session_id": id})).await;
    assert_eq!(
        (info["cols"].clone(), info["rows"].clone()),
        (json!(120), json!(40))
    );
}

#[tokio::test]
async fn a_read_only_stream_is_told_it_cannot_type_and_never_sizes_the_terminal() {
    let daemon = Daemon::start().await;
    let mut line = daemon.line().await;
    let id = line.create_cat().await["session_id"].clone();
    let watcher = StreamHello {
        mode: Some(ClientMode::ReadOnly),
        cols: Some(100),
        rows: Some(30),
        ..hello(&id)
    };
    let (accepted, mut stream) = open_past_screen(&daemon, &watcher).await;
    assert_eq!(accepted.mode, ClientMode::ReadOnly);
    stream.send_input(b"typed\n").await.unwrap();
    let Some(ServerFrame::Error(refusal)) = next_frame(&mut stream).await else {
        panic!("input from a read-only stream is refused");
    };
    assert_eq!(refusal.code, 1007, "{refusal:?}");
    assert!(
        refusal.message.contains(id.as_str().unwrap()),
        "{refusal:?}"
    );
    let info = line.ok("get_session", json!({"session_id": id})).await;
    assert_eq!(
        (info["cols"].clone(), info["rows"].clone()),
        (json!(80), json!(24))
    );
}

#[tokio::test]
async fn a_stream_to_no_such_session_is_refused_with_1001_naming_it() {
    let daemon = Daemon::start().await;
    let unknown = json!(uuid::Uuid::new_v4().to_string());
    let err = AttachStream::open(&daemon.socket, &hello(&unknown))
        .await
        .unwrap_err();
    let OpenError::Refused(refusal) = err else {
        panic!("refused, not {err:?}");
    };
    assert_eq!(refusal.code, 1001, "{refusal:?}");
    assert!(
        refusal.message.contains(unknown.as_str().unwrap()),
        "{refusal:?}"
    );
}

#[tokio::test]
async fn closing_the_stream_detaches_its_client() {
    let daemon = Daemon::start().await;
    let mut line = daemon.line().await;
    let id = line.create_cat().await["session_id"].clone();
    let (_, stream) = open_past_screen(&daemon, &hello(&id)).await;
    let info = line.ok("get_session", json!({"session_id": id})).await;
    assert_eq!(info["num_clients"], 1, "{info}");
    // `close` returns once the daemon has detached the client and closed its end.
    stream.close(Duration::from_secs(10)).await;
    let info = line.ok("get_session", json!({"session_id": id})).await;
    assert_eq!(info["num_clients"], 0, "{info}");
}

#[tokio::test]
async fn the_exit_frame_follows_the_last_output_and_ends_the_stream() {
    let daemon = Daemon::start().await;
    let mut line = daemon.line().await;
    let id = line.create_sh("read x; echo last-words; exit 3").await["session_id"].clone();
    let (_, mut stream) = open_past_screen(&daemon, &hello(&id)).await;
    stream.send_input(b"\n").await.unwrap();
    let mut seen = Vec::new();
    let exit = loop {
        match next_frame(&mut stream).await {
            Some(ServerFrame::Output(bytes)) => seen.extend(bytes),
            Some(ServerFrame::Exited(exit)) => break exit,
            other => panic!("expected output then the exit, got {other:?}"),
        }
    };
    assert!(
        String::from_utf8_lossy(&seen).contains("last-words"),
        "{seen:?}"
    );
    assert_eq!((exit.code, exit.signal), (Some(3), None));
    assert_eq!(
        next_frame(&mut stream).await,
        None,
        "nothing follows the exit"
    );
}

#[tokio::test]
async fn an_input_frame_over_max_input_bytes_is_refused_with_1004_and_closes_the_stream() {
    let daemon = Daemon::start_with(&[("MAX_INPUT_BYTES", "16")]).await;
    let mut line = daemon.line().await;
    let id = line.create_cat().await["session_id"].clone();
    let (_, mut stream) = open_past_screen(&daemon, &hello(&id)).await;
    stream.send_input(&[b'x'; 17]).await.unwrap();
    let Some(ServerFrame::Error(refusal)) = next_frame(&mut stream).await else {
        panic!("an oversized input frame is refused");
    };
    assert_eq!(refusal.code, 1004, "{refusal:?}");
    assert!(refusal.message.contains("17 bytes"), "{refusal:?}");
    assert_eq!(
        next_frame(&mut stream).await,
        None,
        "then the stream is closed"
    );
    // Nothing of it reached the session, and the daemon serves on.
    assert_eq!(output_since(&mut line, &id, 0).await, b"");
}

#[tokio::test]
async fn a_handshake_that_is_not_a_hello_is_refused_and_the_daemon_serves_on() {
    let daemon = Daemon::start().await;
    let stream = tokio::net::UnixStream::connect(&daemon.socket)
        .await
        .unwrap();
    let (read, mut write) = stream.into_split();
    write.write_all(b"\0{\"session\":42}\n").await.unwrap();
    let mut answer = String::new();
    let mut read = BufReader::new(read);
    read.read_line(&mut answer).await.unwrap();
    let answer: Value = serde_json::from_str(&answer).unwrap();
    assert_eq!(answer["error"]["code"], -32602, "{answer}");
    assert!(
        answer["error"]["message"]
            .as_str()
            .unwrap()
            .contains("session_id"),
        "{answer}"
    );
    let mut rest = String::new();
    assert_eq!(read.read_line(&mut rest).await.unwrap(), 0, "then a close");
    daemon.line().await.ok("get_status", json!({})).await;
}

#[tokio::test]
async fn a_stream_that_falls_behind_the_ring_gets_a_fresh_screen_not_the_backlog() {
    let daemon = Daemon::start_with(&[("SCROLLBACK_BYTES", "262144")]).await;
    let mut line = daemon.line().await;
    let id = line
        .create_sh("read go; head -c 8388608 /dev/zero | tr '\\0' x; echo; echo all-done; read x")
        .await["session_id"]
        .clone();
    let (_, mut stream) = open_past_screen(&daemon, &hello(&id)).await;
    stream.send_input(b"go\n").await.unwrap();
    // Not reading while the program writes: its bytes leave the ring before we get them.
    screen_shows(&daemon, &id, "all-done").await;
    let (mut screens, mut bytes, mut tail) = (0, 0, Vec::new());
    while !String::from_utf8_lossy(&tail).contains("all-done") {
        match next_frame(&mut stream).await {
            Some(ServerFrame::Screen { data, .. }) => {
                screens += 1;
                bytes += data.len();
                tail = data;
            }
            Some(ServerFrame::Output(data)) => {
                bytes += data.len();
                tail.extend(data);
                let old = tail.len().saturating_sub(1024);
                tail.drain(..old);
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(screens >= 1, "the stream was redrawn when it fell behind");
    assert!(
        bytes < 8 * 1024 * 1024,
        "a fresh screen, not the backlog ({bytes} bytes)"
    );
}

#[tokio::test]
async fn a_streams_input_is_audited_at_most_once_a_second_summed_and_never_its_bytes() {
    let daemon = Daemon::start().await;
    let mut line = daemon.line().await;
    let id = line.create_cat().await["session_id"].clone();
    let (_, mut stream) = open_past_screen(&daemon, &hello(&id)).await;
    let typing = std::time::Instant::now();
    for key in [b"s", b"e", b"c", b"r", b"t"] {
        stream.send_input(key).await.unwrap();
    }
    output_until(&mut stream, "secrt").await;
    let typed_within_a_second = typing.elapsed() < Duration::from_secs(1);
    stream.close(Duration::from_secs(10)).await;

    let session = id.as_str().unwrap().to_owned();
    let rows: Vec<String> = eventually("the input's audit rows", || {
        let database = daemon.database();
        let session = session.clone();
        async move {
            let conn = rusqlite::Connection::open(database).unwrap();
            let mut stmt = conn
                .prepare("SELECT action, detail FROM audit_log WHERE session_id = ?1 ORDER BY id")
                .unwrap();
            let rows: Vec<(String, String)> = stmt
                .query_map([session], |r| Ok((r.get(0)?, r.get(1)?)))
                .unwrap()
                .map(Result::unwrap)
                .collect();
            // Complete once the close's detach is in.
            rows.iter().any(|(action, _)| action == "detach").then(|| {
                rows.into_iter()
                    .filter(|(action, _)| action == "input")
                    .map(|(_, detail)| detail)
                    .collect()
            })
        }
    })
    .await;
    let count = |row: &str, field: &str| -> usize {
        let start = row.find(&format!("{field}=")).unwrap() + field.len() + 1;
        row[start..].split(' ').next().unwrap().parse().unwrap()
    };
    let bytes: usize = rows.iter().map(|row| count(row, "bytes")).sum();
    let frames: usize = rows.iter().map(|row| count(row, "frames")).sum();
    assert_eq!((bytes, frames), (5, 5), "{rows:?}");
    assert_eq!(
        (count(&rows[0], "bytes"), count(&rows[0], "frames")),
        (1, 1),
        "the first key is audited at once: {rows:?}"
    );
    if typed_within_a_second {
        assert_eq!(rows.len(), 2, "the rest once, at the close: {rows:?}");
    }
    assert!(rows.iter().all(|row| !row.contains("secrt")), "{rows:?}");
}
