//! The upstream desktop client's conversation, byte for byte as it speaks it: newline JSON,
//! string ids, no `jsonrpc` member, `"type":"Local"`, and `receive_output` without `since`
//! after a short sleep.

use std::time::Duration;

use pulsar_e2e::*;
use serde_json::{Value, json};

/// Sends one upstream-shaped request and returns the response, checking it is JSON-RPC 2.0
/// with the same string id.
async fn upstream(line: &mut LineClient, id: &str, method: &str, params: Value) -> Value {
    let response = line
        .request(json!({"id": id, "method": method, "params": params}))
        .await;
    assert_eq!(response["jsonrpc"], "2.0", "{response}");
    assert_eq!(response["id"], id, "{response}");
    response
}

#[tokio::test]
async fn upstream_client_conversation_works_unchanged() {
    let daemon = Daemon::start().await;
    let mut line = daemon.line().await;

    let created = upstream(
        &mut line,
        "1",
        "create_session",
        json!({"name": "desktop", "type": "Local"}),
    )
    .await;
    let session_id = created["result"]["session_id"].as_str().unwrap().to_owned();

    let attached = upstream(
        &mut line,
        "2",
        "attach_session",
        json!({"session_id": session_id}),
    )
    .await;
    assert!(attached.get("error").is_none(), "{attached}");

    let sent = upstream(
        &mut line,
        "3",
        "send_input",
        json!({"session_id": session_id, "data": b64(b"echo from-desk''top\n")}),
    )
    .await;
    assert_eq!(sent["result"]["bytes_written"], 20);

    // The upstream client sleeps briefly, then reads without `since`, checking bytes_read.
    let mut text = String::new();
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let out = upstream(
            &mut line,
            "4",
            "receive_output",
            json!({"session_id": session_id}),
        )
        .await;
        let result = &out["result"];
        let bytes_read = result["bytes_read"].as_u64().unwrap();
        let data = unb64(result["data"].as_str().unwrap());
        assert_eq!(bytes_read as usize, data.len());
        text.push_str(&String::from_utf8_lossy(&data));
        if text.contains("from-desktop\r\n") {
            break;
        }
    }
    assert!(text.contains("from-desktop\r\n"), "{text:?}");

    let listed = upstream(&mut line, "5", "list_sessions", json!({})).await;
    let sessions = listed["result"]["sessions"].as_array().unwrap();
    assert_eq!(sessions.len(), 1);
    let entry = &sessions[0];
    assert_eq!(entry["id"], session_id.as_str());
    assert_eq!(entry["name"], "desktop");
    assert_eq!(entry["state"], "Running");
    assert_eq!(entry["session_type"], "Local");
    assert_eq!(entry["num_clients"], 1);

    let detached = upstream(
        &mut line,
        "6",
        "detach_session",
        json!({"session_id": session_id}),
    )
    .await;
    assert_eq!(detached["result"]["success"], true);
    let terminated = upstream(
        &mut line,
        "7",
        "terminate_session",
        json!({"session_id": session_id}),
    )
    .await;
    assert_eq!(terminated["result"]["success"], true);
}

#[tokio::test]
async fn upstream_error_code_for_an_unknown_session_is_1001() {
    let daemon = Daemon::start().await;
    let mut line = daemon.line().await;
    let missing = upstream(
        &mut line,
        "3",
        "attach_session",
        json!({"session_id": uuid::Uuid::new_v4()}),
    )
    .await;
    assert_eq!(missing["error"]["code"], 1001, "{missing}");
}

#[tokio::test]
async fn upstream_creates_with_a_taken_name_get_the_next_free_suffix() {
    let daemon = Daemon::start().await;
    let mut line = daemon.line().await;
    let mut names = Vec::new();
    for id in ["1", "2", "3"] {
        let created = upstream(
            &mut line,
            id,
            "create_session",
            json!({"name": "Local Terminal", "type": "Local"}),
        )
        .await;
        names.push(created["result"]["name"].as_str().unwrap().to_owned());
    }
    assert_eq!(
        names,
        ["Local Terminal", "Local Terminal (2)", "Local Terminal (3)"]
    );
}

#[tokio::test]
async fn jsonrpc_creates_with_a_taken_name_are_refused_with_1002() {
    let daemon = Daemon::start().await;
    let mut line = daemon.line().await;
    line.ok("create_session", json!({"name": "dup", "type": "Local"}))
        .await;
    let exists = line
        .err("create_session", json!({"name": "dup", "type": "Local"}))
        .await;
    assert_eq!(exists["code"], 1002, "{exists}");
}

#[tokio::test]
async fn line_subscription_streams_output_notifications_after_its_response() {
    let daemon = Daemon::start().await;
    let mut line = daemon.line().await;
    let id = line
        .ok(
            "create_session",
            json!({"type": {"kind": "local", "command": ["/bin/cat"]}}),
        )
        .await["session_id"]
        .clone();
    let subscribed = line
        .call("subscribe_output", json!({"session_id": id}))
        .await;
    let subscription = subscribed["result"].clone();
    assert!(!subscription.is_null(), "{subscribed}");

    let mut writer = daemon.line().await;
    writer
        .ok(
            "send_input",
            json!({"session_id": id, "data": b64(b"hello-line\n")}),
        )
        .await;
    let mut seen = String::new();
    for _ in 0..100 {
        let note = line.read().await.unwrap();
        assert_eq!(note["method"], "output", "{note}");
        assert_eq!(note["params"]["subscription"], subscription);
        let result = &note["params"]["result"];
        if result["type"] == "output" {
            seen.push_str(&String::from_utf8_lossy(&unb64(
                result["data"].as_str().unwrap(),
            )));
        }
        if seen.contains("hello-line") {
            break;
        }
    }
    assert!(seen.contains("hello-line"), "{seen:?}");
}
