//! Idle screens hibernate: their model is kept as its exact serialization until the next
//! output or read, and comes back exactly as it was.

use pulsar_e2e::*;
use serde_json::json;

#[tokio::test]
async fn an_idle_screen_hibernates_and_wakes_exactly_as_it_was() {
    let daemon = Daemon::start_with(&[
        ("HIBERNATE_AFTER_SECS", "1"),
        ("CLEANUP_INTERVAL_SECS", "1"),
    ])
    .await;
    let mut line = daemon.line().await;
    let script = r#"printf '\033[1;31mred\033[0m plain\n\033[2;5Hmoved'; read x; echo woke-$((6*7)); read y"#;
    let created = line
        .ok(
            "create_session",
            json!({"type": {"kind": "local", "command": ["/bin/sh", "-c", script]}}),
        )
        .await;
    let id = created["session_id"].clone();
    line.read_output_until(&id, "moved").await;
    let before = line
        .ok("get_screen", json!({"session_id": id, "format": "ansi"}))
        .await;

    eventually("the idle screen to hibernate", || {
        let socket = daemon.socket.clone();
        async move {
            let status = try_call(&socket, "get_status", json!({}))?;
            (status["num_hibernated"] == 1).then_some(())
        }
    })
    .await;
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
