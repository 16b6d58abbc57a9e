//! Exact reattach and sharing: snapshots checked against an independent emulator (pyte),
//! `get_screen`, read-only clients and the resize policies.

use std::process::{Command, Stdio};
use std::time::Duration;

use pulsar_e2e::*;
use pulsar_protocol::{
    Base64Data, ClientMode, OutputEvent, PulsarApiClient as _, PulsarClient, ResizePolicy,
    ScreenFormat, SessionId, error as code,
};
use serde_json::{Value, json};

/// Plays `steps` on a fresh pyte screen (`tests/fixtures/pyte_screen.py`).
fn reference_screen(cols: u16, rows: u16, steps: Vec<Value>) -> Value {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/pyte_screen.py");
    let mut child = Command::new("python3")
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3 with pyte (scripts/test installs it)");
    let input = json!({"cols": cols, "rows": rows, "steps": steps}).to_string();
    std::io::Write::write_all(child.stdin.as_mut().unwrap(), input.as_bytes()).unwrap();
    drop(child.stdin.take());
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "pyte failed");
    serde_json::from_slice(&out.stdout).expect("pyte's JSON")
}

fn feed(bytes: &[u8]) -> Value {
    json!({"feed": b64(bytes)})
}

/// Waits until the session has printed nothing new for a while, so that a snapshot catches a
/// finished screen rather than a program midway through drawing it.
async fn quiescent(client: &PulsarClient, id: SessionId) -> u64 {
    let deadline = Deadline::start();
    let mut last = u64::MAX;
    let mut stable = 0;
    loop {
        deadline.check("the session to go quiet");
        let now = client.get_session(id).await.unwrap().output_offset;
        if now == last && now > 0 {
            stable += 1;
            if stable == 4 {
                return now;
            }
        } else {
            stable = 0;
            last = now;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// All raw output up to `end`.
async fn raw_output(client: &PulsarClient, id: SessionId, end: u64) -> Vec<u8> {
    let out = client
        .receive_output(id, Some(0), Some(1 << 20), None, None)
        .await
        .unwrap();
    assert_eq!(out.offset, 0);
    assert!(!out.truncated);
    assert!(out.next_offset >= end);
    out.data.as_bytes()[..end as usize].to_vec()
}

/// Attaches, and checks that the snapshot drawn on a blank emulator equals the raw output
/// (split by `resizes` at their offsets) played on another.
async fn assert_snapshot_faithful(
    client: &PulsarClient,
    id: SessionId,
    initial: (u16, u16),
    resizes: &[(u64, u16, u16)],
) -> Value {
    quiescent(client, id).await;
    let attached = client.attach_session(id, None, None, None).await.unwrap();
    let snapshot = attached.snapshot.expect("attach returns a snapshot");
    let raw = raw_output(client, id, snapshot.offset).await;

    let mut steps = Vec::new();
    let mut from = 0usize;
    for &(offset, cols, rows) in resizes {
        steps.push(feed(&raw[from..offset as usize]));
        steps.push(json!({"resize": [cols, rows]}));
        from = offset as usize;
    }
    steps.push(feed(&raw[from..]));
    let original = reference_screen(initial.0, initial.1, steps);
    let redrawn = reference_screen(
        snapshot.cols,
        snapshot.rows,
        vec![feed(snapshot.data.as_bytes())],
    );
    assert_eq!(
        original["display"], redrawn["display"],
        "screen text differs"
    );
    assert_eq!(original["cursor"], redrawn["cursor"], "cursor differs");
    assert_eq!(original["cells"], redrawn["cells"], "attributes differ");
    assert_eq!(original["modes"], redrawn["modes"], "terminal modes differ");
    original
}

async fn create(client: &PulsarClient, argv: &[&str], cols: u16, rows: u16) -> SessionId {
    client
        .create_session(
            None,
            command(argv),
            Some(cols),
            Some(rows),
            None,
            None,
            None,
        )
        .await
        .unwrap()
        .session_id
}

#[tokio::test]
async fn snapshot_of_a_shell_prompt_matches_an_independent_emulator() {
    let daemon = Daemon::start().await;
    let client = daemon.client().await;
    let id = create(&client, &["/bin/sh"], 60, 12).await;
    for line in [
        "echo one",
        "printf '\\033[1;32mgreen\\033[0m plain\\n'",
        "ls /",
    ] {
        client
            .send_input(id, Base64Data::from(format!("{line}\n").as_str()), None)
            .await
            .unwrap();
    }
    read_until(&client, id, "green").await;
    let screen = assert_snapshot_faithful(&client, id, (60, 12), &[]).await;
    assert!(screen["display"].to_string().contains("plain"));
}

#[tokio::test]
async fn snapshot_of_vim_on_the_alternate_screen_matches_an_independent_emulator() {
    let daemon = Daemon::start().await;
    let client = daemon.client().await;
    let file = daemon.dir.path().join("notes.txt");
    std::fs::write(&file, "first line\n\tindented\nthird: äöü\n").unwrap();
    let id = create(
        &client,
        &[
            "vim",
            "-u",
            "NONE",
            "-N",
            "-n",
            "-i",
            "NONE",
            file.to_str().unwrap(),
        ],
        70,
        15,
    )
    .await;
    read_until(&client, id, "indented").await;
    // Move the cursor somewhere other than the origin.
    client
        .send_input(id, Base64Data::from("jjw"), None)
        .await
        .unwrap();
    let screen = assert_snapshot_faithful(&client, id, (70, 15), &[]).await;
    assert!(
        screen["display"][0]
            .as_str()
            .unwrap()
            .starts_with("first line")
    );
    let contents = client.get_screen(id, None).await.unwrap();
    assert!(contents.alternate_screen, "vim uses the alternate screen");
    client
        .send_input(id, Base64Data::from("\x1b:q!\r"), None)
        .await
        .unwrap();
}

#[tokio::test]
async fn snapshot_of_less_matches_an_independent_emulator() {
    let daemon = Daemon::start().await;
    let client = daemon.client().await;
    let file = daemon.dir.path().join("long.txt");
    let text: String = (0..200)
        .map(|i| format!("row {i:03} of the file\n"))
        .collect();
    std::fs::write(&file, text).unwrap();
    let id = create(&client, &["less", file.to_str().unwrap()], 40, 10).await;
    read_until(&client, id, "row 008").await;
    client
        .send_input(id, Base64Data::from("  "), None) // two pages down
        .await
        .unwrap();
    read_until(&client, id, "row 025").await;
    assert_snapshot_faithful(&client, id, (40, 10), &[]).await;
}

#[tokio::test]
async fn snapshot_keeps_colours_and_attributes() {
    let daemon = Daemon::start().await;
    let client = daemon.client().await;
    let script = "printf '\\033[31mred \\033[42mon green\\033[0m \\033[1mbold\\033[22m \
                  \\033[3mitalic\\033[23m \\033[4munder\\033[24m \\033[7mreverse\\033[27m\\n\
                  \\033[38;5;208m256-orange \\033[48;5;21m256-blue-bg\\033[0m\\n\
                  \\033[38;2;10;200;30mtruecolor\\033[0m done'; exec cat";
    let id = create(&client, &["/bin/sh", "-c", script], 50, 6).await;
    read_until(&client, id, "done").await;
    let screen = assert_snapshot_faithful(&client, id, (50, 6), &[]).await;
    // The reference saw colours, so the comparison above compared real attributes.
    assert_eq!(screen["cells"][0][0][1], "red");
}

#[tokio::test]
async fn snapshot_after_a_resize_mid_stream_matches_an_independent_emulator() {
    let daemon = Daemon::start().await;
    let client = daemon.client().await;
    let id = create(
        &client,
        &["/bin/sh", "-c", "printf 'before the resize\\n'; exec cat"],
        30,
        6,
    )
    .await;
    read_until(&client, id, "before the resize").await;
    let at = quiescent(&client, id).await;
    client.resize_terminal(id, 50, 9, None).await.unwrap();
    client
        .send_input(
            id,
            Base64Data::from("after the resize, a line longer than thirty columns\n"),
            None,
        )
        .await
        .unwrap();
    read_until(&client, id, "thirty columns\r\n").await;
    assert_snapshot_faithful(&client, id, (30, 6), &[(at, 50, 9)]).await;
}

#[tokio::test]
async fn snapshot_with_wide_characters_matches_an_independent_emulator() {
    let daemon = Daemon::start().await;
    let client = daemon.client().await;
    let id = create(
        &client,
        &[
            "/bin/sh",
            "-c",
            "printf '日本語のテキスト 😀 ok\\n漢字かな交じり文|\\n'; exec cat",
        ],
        20,
        5,
    )
    .await;
    read_until(&client, id, "|").await;
    let screen = assert_snapshot_faithful(&client, id, (20, 5), &[]).await;
    assert!(screen["display"].to_string().contains("日本語"));
}

#[tokio::test]
async fn snapshot_restores_keypad_cursor_keys_paste_mouse_cursor_style_and_alternate_screen() {
    let daemon = Daemon::start().await;
    let client = daemon.client().await;
    // Every mode on (steady underline cursor, button-event mouse with SGR encoding), then
    // text on the alternate screen.
    let id = create(
        &client,
        &[
            "/bin/sh",
            "-c",
            "printf '\\033=\\033[?1h\\033[?2004h\\033[?1002h\\033[?1006h\\033[4 q\\033[?1049h\\033[Hmodes on'; exec cat",
        ],
        40,
        8,
    )
    .await;
    read_until(&client, id, "modes on").await;
    let original = assert_snapshot_faithful(&client, id, (40, 8), &[]).await;
    // The reference saw every mode on, so the comparison compared real modes.
    assert_eq!(
        original["modes"],
        json!({"private": [1, 1002, 1006, 2004], "alternate_screen": true,
               "keypad": true, "cursor_style": 4}),
    );
}

#[tokio::test]
async fn snapshot_offset_continues_into_the_stream_without_gap_or_duplicate() {
    let daemon = Daemon::start().await;
    let client = daemon.client().await;
    // No terminal echo: "early" is printed once, by cat, so once seen nothing more is due.
    let id = create(
        &client,
        &["/bin/sh", "-c", "stty -echo; echo READY; exec cat"],
        40,
        5,
    )
    .await;
    read_until(&client, id, "READY").await;
    client
        .send_input(id, Base64Data::from("early\n"), None)
        .await
        .unwrap();
    read_until(&client, id, "early\r\n").await;
    let mut sub = client
        .subscribe_output(id, None, Some(true), None)
        .await
        .unwrap();
    let first = tokio::time::timeout(DEADLINE, sub.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let OutputEvent::Snapshot { offset, data, .. } = first else {
        panic!("the first event is the snapshot, got {first:?}");
    };
    assert!(String::from_utf8_lossy(data.as_bytes()).contains("early"));
    client
        .send_input(id, Base64Data::from("late\n"), None)
        .await
        .unwrap();
    let next = tokio::time::timeout(DEADLINE, sub.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    match next {
        OutputEvent::Output {
            offset: first_live,
            data,
        } => {
            assert_eq!(
                first_live, offset,
                "the stream starts exactly at the snapshot"
            );
            assert!(!String::from_utf8_lossy(data.as_bytes()).contains("early"));
        }
        other => panic!("expected output, got {other:?}"),
    }
}

#[tokio::test]
async fn attach_with_scrollback_lines_sends_history_before_the_screen() {
    let daemon = Daemon::start().await;
    let client = daemon.client().await;
    let id = create(
        &client,
        &[
            "/bin/sh",
            "-c",
            "i=0; while [ $i -lt 40 ]; do echo history-$i; i=$((i+1)); done; exec cat",
        ],
        30,
        5,
    )
    .await;
    read_until(&client, id, "history-39").await;
    quiescent(&client, id).await;
    let snapshot = client
        .attach_session(id, None, None, Some(10))
        .await
        .unwrap()
        .snapshot
        .unwrap();
    let text = String::from_utf8_lossy(snapshot.data.as_bytes()).into_owned();
    // 40 lines on a 5-row screen: rows 0..=35 scrolled off; the last 10 of them come first,
    // in order, then the screen (history-36..39 and the cursor's empty row).
    let at = |i: usize| {
        let needle = format!("history-{i}");
        assert_eq!(text.matches(&needle).count(), 1, "{needle} once: {text:?}");
        text.find(&needle).unwrap()
    };
    for i in 26..39 {
        assert!(at(i) < at(i + 1), "history-{i} before history-{}", i + 1);
    }
    assert!(!text.contains("history-25"), "only the lines asked for");
    // The history ends with its line and the screen's rows of newlines, which scroll it into
    // the outer terminal's scrollback before the screen is drawn.
    let history_end = at(35) + text[at(35)..].find("\r\n").expect("a line end") + 2;
    assert!(
        text[history_end..].starts_with(&"\n".repeat(5)),
        "then `rows` newlines: {:?}",
        &text[history_end..]
    );
}

#[tokio::test]
async fn get_screen_returns_text_rows_cursor_and_offset() {
    let daemon = Daemon::start().await;
    let client = daemon.client().await;
    let id = create(
        &client,
        &[
            "/bin/sh",
            "-c",
            "printf 'top line\\n\\033[33myellow\\033[0m'; exec cat",
        ],
        20,
        4,
    )
    .await;
    read_until(&client, id, "yellow").await;
    let at = quiescent(&client, id).await;
    let text = client
        .get_screen(id, Some(ScreenFormat::Text))
        .await
        .unwrap();
    assert_eq!(text.rows, vec!["top line", "yellow", "", ""]);
    assert_eq!((text.cursor.row, text.cursor.col), (1, 6));
    assert!(text.cursor.visible);
    assert_eq!(text.offset, at);
    let ansi = client
        .get_screen(id, Some(ScreenFormat::Ansi))
        .await
        .unwrap();
    assert!(ansi.rows[1].contains("\x1b[33m"), "{:?}", ansi.rows[1]);
}

#[tokio::test]
async fn read_only_client_cannot_type_or_resize() {
    let daemon = Daemon::start().await;
    let viewer = daemon.client().await;
    let id = create(&viewer, &["/bin/cat"], 80, 24).await;
    let attached = viewer
        .attach_session(id, Some("viewer".into()), Some(ClientMode::ReadOnly), None)
        .await
        .unwrap();
    assert_eq!(attached.mode, ClientMode::ReadOnly);
    let err = viewer
        .send_input(id, Base64Data::from("x"), Some("viewer".into()))
        .await
        .unwrap_err();
    assert_eq!(rpc_code(&err), code::READ_ONLY);
    assert_eq!(
        rpc_data(&err),
        json!({"session_id": id, "client_id": "viewer"}),
        "{err}"
    );
    // Without naming the client, the connection's read-only attachment still governs.
    let err = viewer.resize_terminal(id, 100, 30, None).await.unwrap_err();
    assert_eq!(rpc_code(&err), code::READ_ONLY);
    assert_eq!(viewer.get_session(id).await.unwrap().cols, 80);
    // An interactive client on another connection types freely.
    let typist = daemon.client().await;
    typist.attach_session(id, None, None, None).await.unwrap();
    typist
        .send_input(id, Base64Data::from("hi\n"), None)
        .await
        .unwrap();
}

async fn size(client: &PulsarClient, id: SessionId) -> (u16, u16) {
    let info = client.get_session(id).await.unwrap();
    (info.cols, info.rows)
}

async fn policy_session(client: &PulsarClient, policy: ResizePolicy) -> SessionId {
    client
        .create_session(
            None,
            command(&["/bin/cat"]),
            Some(80),
            Some(24),
            Some(policy),
            None,
            None,
        )
        .await
        .unwrap()
        .session_id
}

#[tokio::test]
async fn resize_policy_latest_follows_the_last_request() {
    let daemon = Daemon::start().await;
    let client = daemon.client().await;
    let id = policy_session(&client, ResizePolicy::Latest).await;
    for name in ["a", "b"] {
        client
            .attach_session(id, Some(name.into()), None, None)
            .await
            .unwrap();
    }
    client
        .resize_terminal(id, 120, 40, Some("a".into()))
        .await
        .unwrap();
    client
        .resize_terminal(id, 90, 30, Some("b".into()))
        .await
        .unwrap();
    assert_eq!(size(&client, id).await, (90, 30));
    client
        .resize_terminal(id, 100, 35, Some("a".into()))
        .await
        .unwrap();
    assert_eq!(size(&client, id).await, (100, 35));
}

#[tokio::test]
async fn resize_policy_smallest_with_three_clients_and_a_departure() {
    let daemon = Daemon::start().await;
    let client = daemon.client().await;
    let id = policy_session(&client, ResizePolicy::Smallest).await;
    for name in ["a", "b", "c"] {
        client
            .attach_session(id, Some(name.into()), None, None)
            .await
            .unwrap();
    }
    client
        .resize_terminal(id, 120, 40, Some("a".into()))
        .await
        .unwrap();
    assert_eq!(size(&client, id).await, (120, 40));
    client
        .resize_terminal(id, 100, 50, Some("b".into()))
        .await
        .unwrap();
    assert_eq!(
        size(&client, id).await,
        (100, 40),
        "smallest of each dimension"
    );
    client
        .resize_terminal(id, 130, 45, Some("c".into()))
        .await
        .unwrap();
    assert_eq!(size(&client, id).await, (100, 40));
    client.detach_session(id, Some("b".into())).await.unwrap();
    assert_eq!(
        size(&client, id).await,
        (120, 40),
        "recomputed when a client leaves"
    );
}

#[tokio::test]
async fn resize_policy_largest_with_two_clients() {
    let daemon = Daemon::start().await;
    let client = daemon.client().await;
    let id = policy_session(&client, ResizePolicy::Largest).await;
    for name in ["a", "b"] {
        client
            .attach_session(id, Some(name.into()), None, None)
            .await
            .unwrap();
    }
    client
        .resize_terminal(id, 100, 30, Some("a".into()))
        .await
        .unwrap();
    client
        .resize_terminal(id, 90, 45, Some("b".into()))
        .await
        .unwrap();
    assert_eq!(size(&client, id).await, (100, 45));
    client.detach_session(id, Some("a".into())).await.unwrap();
    assert_eq!(size(&client, id).await, (90, 45));
}

#[tokio::test]
async fn read_only_clients_never_affect_the_size() {
    let daemon = Daemon::start().await;
    let client = daemon.client().await;
    let id = policy_session(&client, ResizePolicy::Smallest).await;
    client
        .attach_session(id, Some("typist".into()), None, None)
        .await
        .unwrap();
    client
        .attach_session(id, Some("viewer".into()), Some(ClientMode::ReadOnly), None)
        .await
        .unwrap();
    client
        .resize_terminal(id, 120, 40, Some("typist".into()))
        .await
        .unwrap();
    assert!(
        client
            .resize_terminal(id, 20, 5, Some("viewer".into()))
            .await
            .is_err()
    );
    assert_eq!(size(&client, id).await, (120, 40));
}

#[tokio::test]
async fn every_subscriber_sees_resized_events() {
    let daemon = Daemon::start().await;
    let client = daemon.client().await;
    let id = policy_session(&client, ResizePolicy::Latest).await;
    let other = daemon.client().await;
    let mut subs = vec![
        client.subscribe_output(id, None, None, None).await.unwrap(),
        other.subscribe_output(id, None, None, None).await.unwrap(),
    ];
    client.resize_terminal(id, 101, 31, None).await.unwrap();
    for sub in &mut subs {
        wait_for_event(
            sub,
            &OutputEvent::Resized {
                cols: 101,
                rows: 31,
            },
        )
        .await;
    }
}

#[tokio::test]
async fn read_only_client_reattaching_as_interactive_may_type() {
    let daemon = Daemon::start().await;
    let client = daemon.client().await;
    let id = create(&client, &["/bin/cat"], 80, 24).await;
    let viewer = Some("viewer".to_owned());
    client
        .attach_session(id, viewer.clone(), Some(ClientMode::ReadOnly), None)
        .await
        .unwrap();
    let err = client
        .send_input(id, Base64Data::from("x"), viewer.clone())
        .await
        .unwrap_err();
    assert_eq!(rpc_code(&err), code::READ_ONLY);
    let again = client
        .attach_session(id, viewer.clone(), Some(ClientMode::Interactive), None)
        .await
        .unwrap();
    assert_eq!(again.mode, ClientMode::Interactive);
    assert_eq!(
        again.session.num_clients, 1,
        "the same client, not a second one"
    );
    client
        .send_input(id, Base64Data::from("now-typed\n"), viewer)
        .await
        .unwrap();
    read_until(&client, id, "now-typed").await;
}

#[tokio::test]
async fn read_only_connection_typing_without_a_client_id_is_1007() {
    let daemon = Daemon::start().await;
    let viewer = daemon.client().await;
    let id = create(&viewer, &["/bin/cat"], 80, 24).await;
    viewer
        .attach_session(id, None, Some(ClientMode::ReadOnly), None)
        .await
        .unwrap();
    let err = viewer
        .send_input(id, Base64Data::from("x"), None)
        .await
        .unwrap_err();
    assert_eq!(rpc_code(&err), code::READ_ONLY, "{err}");
}

#[tokio::test]
async fn read_only_clients_never_affect_the_size_under_largest() {
    let daemon = Daemon::start().await;
    let client = daemon.client().await;
    let id = policy_session(&client, ResizePolicy::Largest).await;
    client
        .attach_session(id, Some("typist".into()), None, None)
        .await
        .unwrap();
    client
        .resize_terminal(id, 90, 30, Some("typist".into()))
        .await
        .unwrap();
    client
        .attach_session(id, Some("viewer".into()), Some(ClientMode::ReadOnly), None)
        .await
        .unwrap();
    let err = client
        .resize_terminal(id, 200, 60, Some("viewer".into()))
        .await
        .unwrap_err();
    assert_eq!(rpc_code(&err), code::READ_ONLY);
    assert_eq!(size(&client, id).await, (90, 30));
}

#[tokio::test]
async fn resize_is_recomputed_when_a_connection_closes() {
    let daemon = Daemon::start().await;
    let client = daemon.client().await;
    let id = policy_session(&client, ResizePolicy::Smallest).await;
    client.attach_session(id, None, None, None).await.unwrap();
    client.resize_terminal(id, 120, 40, None).await.unwrap();
    {
        let small = daemon.client().await;
        small.attach_session(id, None, None, None).await.unwrap();
        small.resize_terminal(id, 60, 20, None).await.unwrap();
        assert_eq!(size(&client, id).await, (60, 20));
    }
    eventually(
        "the size without the closed connection's client",
        || async { (size(&client, id).await == (120, 40)).then_some(()) },
    )
    .await;
}
