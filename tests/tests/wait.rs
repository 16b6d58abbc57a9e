//! `wait_for_output`: a pattern matched across chunks and escape sequences, on the stream or
//! the screen; timeouts, ended sessions and bad patterns with their own codes.

use pulsar_e2e::*;
use pulsar_protocol::{PulsarApiClient as _, WaitOn, error as code};
use serde_json::json;

#[tokio::test]
async fn a_match_split_across_reads_and_escapes_reports_its_output_offsets() {
    let daemon = Daemon::start().await;
    let client = daemon.client().await;
    let id = start_program(
        &client,
        &[
            "/bin/sh",
            "-c",
            "printf '\\033[1mma'; sleep 0.3; printf 'ke \\033[32mdone\\033[0m\\n'; sleep 30",
        ],
    )
    .await;
    let found = client
        .wait_for_output(id, "make (d\\w+)".into(), Some(0), 10_000, None)
        .await
        .expect("a match");
    assert_eq!(found.matched, "make done");
    assert_eq!(found.groups, [Some("done".to_owned())]);
    // "\e[1m" then "ma": the match starts at offset 4 and ends after "done", before "\e[0m".
    assert_eq!(found.offset, 4);
    assert_eq!(found.end_offset, Some(4 + "make \x1b[32mdone".len() as u64));
}

#[tokio::test]
async fn a_wait_returns_when_the_output_arrives_later() {
    let daemon = Daemon::start().await;
    let client = daemon.client().await;
    let id = start_program(&client, &["/bin/cat"]).await;
    let since = client.get_session(id).await.unwrap().output_offset;
    let waiter = {
        let client = daemon.client().await;
        tokio::spawn(async move {
            client
                .wait_for_output(id, "later-\\d+".into(), Some(since), 10_000, None)
                .await
        })
    };
    client
        .send_input(id, b"later-42\r".to_vec().into(), None)
        .await
        .unwrap();
    let found = waiter.await.unwrap().expect("a match");
    assert_eq!(found.matched, "later-42");
    assert_eq!(found.offset, since);
}

#[tokio::test]
async fn without_since_only_output_after_the_call_counts() {
    let daemon = Daemon::start().await;
    let mut line = daemon.line().await;
    let id = line.create_cat().await["session_id"].clone();
    line.ok(
        "send_input",
        json!({"session_id": id, "data": b64(b"old\r")}),
    )
    .await;
    line.read_output_until(&id, "old\r\nold").await;
    let err = line
        .err(
            "wait_for_output",
            json!({"session_id": id, "pattern": "old", "timeout_ms": 300}),
        )
        .await;
    assert_eq!(err["code"], code::WAIT_TIMEOUT);
}

#[tokio::test]
async fn a_timeout_is_error_1023_saying_how_far_the_output_was_read() {
    let daemon = Daemon::start().await;
    let mut line = daemon.line().await;
    let id = line.create_cat().await["session_id"].clone();
    let err = line
        .err(
            "wait_for_output",
            json!({"session_id": id, "pattern": "never", "since": 0, "timeout_ms": 200}),
        )
        .await;
    assert_eq!(err["code"], code::WAIT_TIMEOUT, "{err}");
    assert_eq!(err["data"]["session_id"], id);
    assert_eq!(err["data"]["timeout_ms"], 200);
    assert!(err["data"]["offset"].is_u64(), "{err}");
}

#[tokio::test]
async fn the_screen_is_matched_row_by_row_with_the_row_of_the_match() {
    let daemon = Daemon::start().await;
    let client = daemon.client().await;
    let id = start_program(
        &client,
        &["/bin/sh", "-c", "printf 'one\\ntwo\\nready> '; sleep 30"],
    )
    .await;
    let found = client
        .wait_for_output(id, "(?m)^ready>".into(), None, 10_000, Some(WaitOn::Screen))
        .await
        .expect("a match");
    assert_eq!(found.matched, "ready>");
    assert_eq!(found.row, Some(2));
    assert_eq!(found.end_offset, None);
    let screen = client.get_screen(id, None).await.unwrap();
    assert_eq!(found.offset, screen.offset);
}

#[tokio::test]
async fn a_session_that_ends_without_a_match_is_error_1003() {
    let daemon = Daemon::start().await;
    let client = daemon.client().await;
    let id = start_program(&client, &["/bin/sh", "-c", "echo bye"]).await;
    for on in [WaitOn::Stream, WaitOn::Screen] {
        let err = client
            .wait_for_output(id, "never".into(), Some(0), 10_000, Some(on))
            .await
            .expect_err("no match");
        assert_eq!(rpc_code(&err), code::INVALID_STATE, "{on:?}: {err}");
    }
    // What it printed before it ended still matches.
    let found = client
        .wait_for_output(id, "bye".into(), Some(0), 10_000, None)
        .await
        .expect("a match in the last output");
    assert_eq!(found.matched, "bye");
}

#[tokio::test]
async fn bad_patterns_timeouts_and_offsets_are_invalid_params_naming_the_field() {
    let daemon = Daemon::start().await;
    let mut line = daemon.line().await;
    let id = line.create_cat().await["session_id"].clone();
    let huge = "a".repeat(5000);
    for (params, field) in [
        (
            json!({"pattern": "(unclosed", "timeout_ms": 100}),
            "pattern",
        ),
        (
            json!({"pattern": "\\w{1000}{1000}", "timeout_ms": 100}),
            "pattern",
        ),
        (json!({"pattern": huge, "timeout_ms": 100}), "pattern"),
        (
            json!({"pattern": "x", "timeout_ms": 3_600_001}),
            "timeout_ms",
        ),
        (
            json!({"pattern": "x", "timeout_ms": 100, "since": 1_000_000}),
            "since",
        ),
        (
            json!({"pattern": "x", "timeout_ms": 100, "on": "nowhere"}),
            "on",
        ),
    ] {
        let mut params = params;
        params["session_id"] = id.clone();
        let err = line.err("wait_for_output", params.clone()).await;
        assert_eq!(err["code"], code::INVALID_PARAMS, "{params}: {err}");
        if field != "on" {
            assert_eq!(err["data"]["field"], field, "{params}: {err}");
        }
    }
}

#[tokio::test]
async fn a_flood_without_a_match_still_times_out_on_time() {
    let daemon = Daemon::start().await;
    let client = daemon.client().await;
    let id = start_program(&client, &["/bin/sh", "-c", "yes aaaaaaaaaaaaaaaaaaaaaaaa"]).await;
    let started = std::time::Instant::now();
    let err = client
        .wait_for_output(id, "(a+)+b".into(), Some(0), 500, None)
        .await
        .expect_err("no match");
    assert_eq!(rpc_code(&err), code::WAIT_TIMEOUT);
    assert!(
        started.elapsed() < std::time::Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
    client.terminate_session(id).await.unwrap();
}

#[tokio::test]
async fn a_pending_wait_ends_with_1020_when_the_daemon_stops_without_holding_it_up() {
    let daemon = Daemon::start().await;
    let mut line = daemon.line().await;
    let id = line.create_cat().await["session_id"].clone();
    line.send_raw(
        format!(
            "{}\n",
            json!({"jsonrpc": "2.0", "id": 99, "method": "wait_for_output",
                   "params": {"session_id": id, "pattern": "never", "timeout_ms": 600_000}})
        )
        .as_bytes(),
    )
    .await;
    // The wait is in flight once a later request on the connection is answered.
    line.ok("get_status", json!({})).await;
    let started = std::time::Instant::now();
    let status = daemon.stop();
    assert!(status.success(), "{status:?}");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(5),
        "the stop took {:?}",
        started.elapsed()
    );
    let answer = line
        .read()
        .await
        .expect("the wait's answer before the connection closed");
    assert_eq!(answer["id"], 99);
    assert_eq!(answer["error"]["code"], code::DAEMON_STOPPING, "{answer}");
}
