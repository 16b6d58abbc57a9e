//! Local PTY sessions end to end through the socket: the session API, many clients, offsets,
//! resize, termination, cleanup, limits and every error code.

use std::time::{Duration, Instant};

use pulsar_e2e::*;
use pulsar_protocol::{Base64Data, OutputEvent, PulsarApiClient as _, SessionState, error as code};
use serde_json::json;

async fn create(client: &pulsar_protocol::PulsarClient, name: &str) -> uuid::Uuid {
    client
        .create_session(Some(name.into()), sh(), None, None, None, None, None)
        .await
        .expect("create_session")
        .session_id
}

#[tokio::test]
async fn typed_echo_is_seen_in_the_output() {
    let daemon = Daemon::start().await;
    let client = daemon.client().await;
    let id = create(&client, "echo").await;
    let written = client
        .send_input(id, Base64Data::from("echo pulsar-$((6*7))\n"), None)
        .await
        .unwrap();
    assert_eq!(written.bytes_written, 21);
    read_until(&client, id, "pulsar-42").await;
}

#[tokio::test]
async fn new_session_reports_its_info_and_is_detached() {
    let daemon = Daemon::start().await;
    let client = daemon.client().await;
    let created = client
        .create_session(
            Some("info".into()),
            sh(),
            Some(100),
            Some(30),
            None,
            None,
            None,
        )
        .await
        .unwrap();
    assert_eq!(created.session_id, created.session.id);
    assert_eq!(created.session.name, "info");
    assert_eq!(created.session.state, SessionState::Detached);
    assert_eq!((created.session.cols, created.session.rows), (100, 30));
    assert!(created.session.pid.is_some());
    let listed = client.list_sessions().await.unwrap().sessions;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].id, created.session_id);
}

#[tokio::test]
async fn attach_makes_it_running_and_detach_makes_it_detached() {
    let daemon = Daemon::start().await;
    let client = daemon.client().await;
    let id = create(&client, "states").await;
    let attached = client.attach_session(id, None, None, None).await.unwrap();
    assert_eq!(attached.session.state, SessionState::Running);
    assert_eq!(attached.session.num_clients, 1);
    assert_eq!(client.get_status().await.unwrap().num_clients, 1);
    client
        .detach_session(id, Some(attached.client_id))
        .await
        .unwrap();
    assert_eq!(
        client.get_session(id).await.unwrap().state,
        SessionState::Detached
    );
}

#[tokio::test]
async fn closing_a_connection_detaches_its_clients_and_the_session_keeps_running() {
    let daemon = Daemon::start().await;
    let observer = daemon.client().await;
    let id = create(&observer, "survivor").await;
    {
        let transient = daemon.client().await;
        transient
            .attach_session(id, None, None, None)
            .await
            .unwrap();
        assert_eq!(observer.get_session(id).await.unwrap().num_clients, 1);
    }
    eventually("the closed connection's client to be detached", || async {
        let info = observer.get_session(id).await.unwrap();
        (info.num_clients == 0).then_some(info)
    })
    .await;
    observer
        .send_input(id, Base64Data::from("echo still-$((1+1))\n"), None)
        .await
        .unwrap();
    read_until(&observer, id, "still-2").await;
    assert_eq!(
        observer.get_session(id).await.unwrap().state,
        SessionState::Detached
    );
}

#[tokio::test]
async fn two_subscribers_see_the_same_bytes_at_the_same_offsets() {
    let daemon = Daemon::start().await;
    let a = daemon.client().await;
    let b = daemon.client().await;
    let id = create(&a, "shared").await;
    let start = a.get_session(id).await.unwrap().output_offset;
    let mut sub_a = a
        .subscribe_output(id, Some(start), None, None)
        .await
        .unwrap();
    let mut sub_b = b
        .subscribe_output(id, Some(start), None, None)
        .await
        .unwrap();
    a.send_input(
        id,
        Base64Data::from(
            "i=0; while [ $i -lt 300 ]; do echo line-$i; i=$((i+1)); done; echo DO\"\"NE\n",
        ),
        None,
    )
    .await
    .unwrap();

    async fn collect(sub: &mut jsonrpsee::core::client::Subscription<OutputEvent>) -> Vec<u8> {
        let mut bytes = Vec::new();
        let mut expected = None;
        let deadline = Deadline::start();
        while !String::from_utf8_lossy(&bytes).contains("DONE\r\n") {
            deadline.check("DONE");
            let event = tokio::time::timeout(DEADLINE, sub.next())
                .await
                .expect("output within the deadline")
                .expect("stream open")
                .expect("valid event");
            if let OutputEvent::Output { data, offset } = event {
                if let Some(expected) = expected {
                    assert_eq!(offset, expected, "offsets are contiguous");
                }
                expected = Some(offset + data.as_bytes().len() as u64);
                bytes.extend_from_slice(data.as_bytes());
            }
        }
        bytes
    }
    let (bytes_a, bytes_b) = tokio::join!(collect(&mut sub_a), collect(&mut sub_b));
    let common = bytes_a.len().min(bytes_b.len());
    assert_eq!(bytes_a[..common], bytes_b[..common]);
    assert!(String::from_utf8_lossy(&bytes_a).contains("line-299"));
}

#[tokio::test]
async fn output_produced_while_detached_is_recovered_by_offset() {
    let daemon = Daemon::start().await;
    let client = daemon.client().await;
    let id = create(&client, "offline").await;
    let attached = client.attach_session(id, None, None, None).await.unwrap();
    let resume_at = client.get_session(id).await.unwrap().output_offset;
    client
        .detach_session(id, Some(attached.client_id))
        .await
        .unwrap();
    drop(client);

    // Someone else makes the session print while our client is away.
    let other = daemon.line().await;
    let mut other = other;
    other
        .ok(
            "send_input",
            json!({"session_id": id, "data": b64(b"echo while-away-$((3*3))\n")}),
        )
        .await;

    let client = daemon.client().await;
    client.attach_session(id, None, None, None).await.unwrap();
    let text = eventually("the output produced while away", || async {
        let out = client
            .receive_output(id, Some(resume_at), None, Some(100), None)
            .await
            .unwrap();
        let text = String::from_utf8_lossy(out.data.as_bytes()).into_owned();
        assert_eq!(out.offset, resume_at, "read starts exactly where we left");
        assert!(!out.truncated);
        text.contains("while-away-9").then_some(text)
    })
    .await;
    assert!(text.contains("while-away-9"));
}

#[tokio::test]
async fn subscription_from_an_old_offset_replays_then_streams() {
    let daemon = Daemon::start().await;
    let client = daemon.client().await;
    let id = create(&client, "replay").await;
    client
        .send_input(id, Base64Data::from("echo first-$((1))\n"), None)
        .await
        .unwrap();
    read_until(&client, id, "first-1").await;
    let mut sub = client
        .subscribe_output(id, Some(0), None, None)
        .await
        .unwrap();
    let mut seen = Vec::new();
    let mut next = 0;
    client
        .send_input(id, Base64Data::from("echo second-$((2))\n"), None)
        .await
        .unwrap();
    let deadline = Deadline::start();
    while !String::from_utf8_lossy(&seen).contains("second-2") {
        deadline.check("second-2");
        match tokio::time::timeout(DEADLINE, sub.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap()
        {
            OutputEvent::Output { data, offset } => {
                assert_eq!(offset, next, "no gap, no duplicate");
                next += data.as_bytes().len() as u64;
                seen.extend_from_slice(data.as_bytes());
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(String::from_utf8_lossy(&seen).contains("first-1"));
}

#[tokio::test]
async fn resize_is_seen_by_the_program_and_by_subscribers() {
    let daemon = Daemon::start().await;
    let client = daemon.client().await;
    let id = create(&client, "resize").await;
    let mut sub = client.subscribe_output(id, None, None, None).await.unwrap();
    let info = client.resize_terminal(id, 132, 43, None).await.unwrap();
    assert_eq!((info.cols, info.rows), (132, 43));
    wait_for_event(
        &mut sub,
        &OutputEvent::Resized {
            cols: 132,
            rows: 43,
        },
    )
    .await;
    client
        .send_input(id, Base64Data::from("stty size\n"), None)
        .await
        .unwrap();
    read_until(&client, id, "43 132").await;
}

#[tokio::test]
async fn terminate_stops_the_session_and_reports_the_signal() {
    let daemon = Daemon::start().await;
    let client = daemon.client().await;
    let id = create(&client, "doomed").await;
    let pid = client.get_session(id).await.unwrap().pid.unwrap();
    client.terminate_session(id).await.unwrap();
    let info = client.get_session(id).await.unwrap();
    assert_eq!(info.state, SessionState::Stopped);
    assert_eq!(info.exit_signal, Some(libc::SIGHUP));
    assert!(info.exited_at.is_some());
    assert!(
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), None).is_err(),
        "the process is gone"
    );
}

#[tokio::test]
async fn terminate_kills_a_process_that_ignores_sighup_after_the_grace_period() {
    let grace = Duration::from_millis(500);
    let daemon =
        Daemon::start_with(&[("TERMINATE_GRACE_MS", &grace.as_millis().to_string())]).await;
    let client = daemon.client().await;
    let survivor = sighup_survivor(None);
    let argv: Vec<&str> = survivor.iter().map(String::as_str).collect();
    let id = client
        .create_session(
            Some("stubborn".into()),
            command(&argv),
            None,
            None,
            None,
            None,
            None,
        )
        .await
        .unwrap()
        .session_id;
    read_until(&client, id, "ready").await;
    let asked = Instant::now();
    client.terminate_session(id).await.unwrap();
    let took = asked.elapsed();
    let info = client.get_session(id).await.unwrap();
    assert_eq!(info.state, SessionState::Stopped);
    assert_eq!(info.exit_signal, Some(libc::SIGKILL));
    assert!(
        took >= grace,
        "killed after {took:?}, before the grace period"
    );
    read_until(&client, id, "got-HUP").await;
}

#[tokio::test]
async fn exit_code_is_reported_to_info_and_subscribers() {
    let daemon = Daemon::start().await;
    let client = daemon.client().await;
    let id = client
        .create_session(
            None,
            command(&["/bin/sh", "-c", "read x; exit 7"]),
            None,
            None,
            None,
            None,
            None,
        )
        .await
        .unwrap()
        .session_id;
    let mut sub = client
        .subscribe_output(id, Some(0), None, None)
        .await
        .unwrap();
    client
        .send_input(id, Base64Data::from("go\n"), None)
        .await
        .unwrap();
    let deadline = Deadline::start();
    loop {
        deadline.check("the event");
        match tokio::time::timeout(DEADLINE, sub.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap()
        {
            OutputEvent::Exited { code, signal } => {
                assert_eq!((code, signal), (Some(7), None));
                break;
            }
            OutputEvent::Output { .. } => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    let info = client.get_session(id).await.unwrap();
    assert_eq!(
        (info.state, info.exit_code),
        (SessionState::Stopped, Some(7))
    );
}

#[tokio::test]
async fn a_program_that_exits_while_a_background_job_holds_the_terminal_ends_its_session() {
    let daemon = Daemon::start().await;
    let client = daemon.client().await;
    // The job keeps the terminal open (no end of output): only the program's exit, seen
    // through its pidfd, can end the session.
    let id = client
        .create_session(
            None,
            command(&[
                "/bin/sh",
                "-c",
                "sleep 300 & echo job:$!:up; read x; exit 5",
            ]),
            None,
            None,
            None,
            None,
            None,
        )
        .await
        .unwrap()
        .session_id;
    let printed = read_until(&client, id, ":up").await;
    client
        .send_input(id, Base64Data::from("go\n"), None)
        .await
        .unwrap();
    let info = eventually("the session to stop", || {
        let client = &client;
        async move {
            let info = client.get_session(id).await.unwrap();
            (info.state == SessionState::Stopped).then_some(info)
        }
    })
    .await;
    // The job is the test's to end, before anything can fail: it outlives the session's
    // program by design.
    let job = job_pid(&printed);
    // SAFETY: kill sends a signal to the job this test started.
    unsafe { libc::kill(job, libc::SIGKILL) };
    assert_eq!((info.exit_code, info.exit_signal), (Some(5), None));
}

#[tokio::test]
async fn stopped_session_history_stays_readable() {
    let daemon = Daemon::start().await;
    let client = daemon.client().await;
    let id = client
        .create_session(
            None,
            command(&["/bin/echo", "last-words"]),
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
    let out = client
        .receive_output(id, Some(0), None, None, None)
        .await
        .unwrap();
    assert!(String::from_utf8_lossy(out.data.as_bytes()).contains("last-words"));
}

#[tokio::test]
async fn cleanup_removes_stopped_sessions_after_the_retention() {
    let daemon = Daemon::start_with(&[
        ("CLEANUP_INTERVAL_SECS", "1"),
        ("STOPPED_RETENTION_SECS", "0"),
    ])
    .await;
    let client = daemon.client().await;
    let short = client
        .create_session(None, command(&["/bin/true"]), None, None, None, None, None)
        .await
        .unwrap()
        .session_id;
    let long = create(&client, "long-lived").await;
    eventually("cleanup to remove the stopped session", || async {
        client.get_session(short).await.is_err().then_some(())
    })
    .await;
    let err = client.get_session(short).await.unwrap_err();
    assert_eq!(rpc_code(&err), code::SESSION_NOT_FOUND);
    assert_eq!(
        client.get_session(long).await.unwrap().state,
        SessionState::Detached,
        "live sessions are never cleaned up"
    );
}

#[tokio::test]
async fn receive_output_continues_where_this_client_last_read() {
    let daemon = Daemon::start().await;
    let mut line = daemon.line().await;
    // No terminal echo, so each word appears exactly once (from cat).
    let id = line
        .ok(
            "create_session",
            json!({"type": {"kind": "local", "command": ["/bin/sh", "-c", "stty -echo; echo READY; exec cat"]}}),
        )
        .await["session_id"]
        .clone();
    line.read_output_until(&id, "READY").await;
    line.ok(
        "send_input",
        json!({"session_id": id, "data": b64(b"one\n")}),
    )
    .await;
    line.read_output_until(&id, "one\r\n").await;
    line.ok(
        "send_input",
        json!({"session_id": id, "data": b64(b"two\n")}),
    )
    .await;
    let second = line.read_output_until(&id, "two\r\n").await;
    assert!(
        !second.contains("one"),
        "no re-read of what this client already had: {second:?}"
    );
}

#[tokio::test]
async fn receive_output_long_poll_returns_when_output_arrives() {
    let daemon = Daemon::start().await;
    let client = daemon.client().await;
    let id = start_program(&client, &["/bin/cat"]).await;
    let head = client.get_session(id).await.unwrap().output_offset;
    let timeout = Duration::from_secs(30);
    let poll = client.receive_output(id, Some(head), None, Some(timeout.as_millis() as u64), None);
    tokio::pin!(poll);
    // The poll is sent and waits: nothing has been typed yet.
    assert!(
        tokio::time::timeout(Duration::from_millis(300), &mut poll)
            .await
            .is_err(),
        "the poll answered before there was output"
    );
    let typed = Instant::now();
    client
        .send_input(id, Base64Data::from("ping\n"), None)
        .await
        .unwrap();
    let out = poll.await.unwrap();
    let waited = typed.elapsed();
    assert!(
        waited < timeout / 4,
        "the poll returned {waited:?} after the output, not when it arrived"
    );
    assert_eq!(out.offset, head);
    assert!(
        String::from_utf8_lossy(out.data.as_bytes()).contains("ping"),
        "{out:?}"
    );
}

#[tokio::test]
async fn scrollback_is_bounded_and_reads_report_truncation() {
    let daemon = Daemon::start_with(&[("SCROLLBACK_BYTES", "8192")]).await;
    let client = daemon.client().await;
    let id = client
        .create_session(
            None,
            command(&[
                "/bin/sh",
                "-c",
                "head -c 100000 /dev/zero | tr '\\0' x; echo; echo END",
            ]),
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
    let out = client
        .receive_output(id, Some(0), Some(1_000_000), None, None)
        .await
        .unwrap();
    assert!(out.truncated);
    assert!(out.bytes_read <= 8192);
    assert_eq!(
        out.next_offset,
        client.get_session(id).await.unwrap().output_offset
    );
    assert!(String::from_utf8_lossy(out.data.as_bytes()).contains("END"));
}

/// A session running `cat` on a raw, non-echoing terminal: it returns exactly the bytes it
/// is given.
async fn raw_cat(client: &pulsar_protocol::PulsarClient) -> uuid::Uuid {
    let id = start_program(
        client,
        &["/bin/sh", "-c", "stty raw -echo; echo READY; exec cat"],
    )
    .await;
    read_until(client, id, "READY").await;
    id
}

/// Sends `chunk` through session `id` (a [`raw_cat`]) and waits until `sub` has received
/// all of it; returns how long that took.
async fn round_trip(
    client: &pulsar_protocol::PulsarClient,
    sub: &mut jsonrpsee::core::client::Subscription<OutputEvent>,
    id: uuid::Uuid,
    chunk: &[u8],
) -> Duration {
    let deadline = Deadline::start();
    let sent = Instant::now();
    client
        .send_input(id, Base64Data(chunk.to_vec()), None)
        .await
        .unwrap();
    let mut received = 0;
    while received < chunk.len() {
        deadline.check("the round trip");
        match next_event(sub).await {
            OutputEvent::Output { data, .. } => received += data.as_bytes().len(),
            OutputEvent::Lagged { .. } => panic!("the fast subscriber must never lag"),
            _ => {}
        }
    }
    sent.elapsed()
}

#[tokio::test]
async fn slow_subscriber_lags_without_slowing_others_or_growing_memory() {
    // Large enough to stand out from the allocator's noise.
    const RING_KIB: u64 = 8 * 1024;
    let daemon = Daemon::start_with(&[
        ("SCROLLBACK_BYTES", &(RING_KIB * 1024).to_string()),
        ("MAX_INPUT_BYTES", "524288"),
    ])
    .await;
    let fast = daemon.client().await;
    let id = raw_cat(&fast).await;
    let mut fast_sub = fast.subscribe_output(id, None, None, None).await.unwrap();
    // The same on a second session, which nobody slow watches: the reference.
    let reference = raw_cat(&fast).await;
    let mut reference_sub = fast
        .subscribe_output(reference, None, None, None)
        .await
        .unwrap();

    // A line-JSON subscriber that never reads its socket.
    let mut slow = daemon.line().await;
    slow.send_raw(
        format!(
            "{{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"subscribe_output\",\"params\":{{\"session_id\":\"{id}\",\"since\":0}}}}\n"
        )
        .as_bytes(),
    )
    .await;
    // 16 MiB fill the ring (allocated as it fills), the slow client's socket and queues;
    // then 64 MiB more (eight rings) must grow the daemon by less than one ring.
    let big = vec![b'z'; 512 * 1024];
    for _ in 0..32 {
        round_trip(&fast, &mut fast_sub, id, &big).await;
    }
    let rss_before = daemon.rss_kib();
    for _ in 0..128 {
        round_trip(&fast, &mut fast_sub, id, &big).await;
    }
    let rss_after = daemon.rss_kib();
    assert!(
        rss_after < rss_before + RING_KIB,
        "daemon memory grew from {rss_before} KiB to {rss_after} KiB"
    );

    // With the slow subscriber stuck, the fast client's round trips are as quick as those on
    // the reference session, measured in turn with them.
    let small = vec![b'y'; 4 * 1024];
    let (mut watched, mut unwatched) = (Vec::new(), Vec::new());
    for _ in 0..100 {
        watched.push(round_trip(&fast, &mut fast_sub, id, &small).await);
        unwatched.push(round_trip(&fast, &mut reference_sub, reference, &small).await);
    }
    let median = |times: &mut Vec<Duration>| {
        times.sort();
        times[times.len() / 2]
    };
    let (watched, unwatched) = (median(&mut watched), median(&mut unwatched));
    assert!(
        watched <= unwatched * 3 + Duration::from_millis(2),
        "the fast client slowed down: median round trip {watched:?}, {unwatched:?} without a slow subscriber"
    );

    // When the slow client finally reads, it is told what it missed and carries on.
    let first = slow.read().await.unwrap();
    assert_eq!(first["id"], 1, "subscription accepted: {first}");
    let mut lagged = None;
    for _ in 0..1000 {
        let event = slow.read().await.unwrap();
        let result = &event["params"]["result"];
        if result["type"] == "lagged" {
            lagged = Some(result.clone());
            break;
        }
    }
    let lagged = lagged.expect("a lagged event");
    assert!(
        lagged["resume_at"].as_u64() > lagged["missed_from"].as_u64(),
        "{lagged}"
    );
}

#[tokio::test]
async fn error_session_not_found_is_1001() {
    let daemon = Daemon::start().await;
    let unknown = uuid::Uuid::new_v4();
    let err = daemon
        .client()
        .await
        .get_session(unknown)
        .await
        .unwrap_err();
    assert_eq!(rpc_code(&err), code::SESSION_NOT_FOUND);
    assert_eq!(rpc_data(&err), json!({"session_id": unknown}), "{err}");
}

#[tokio::test]
async fn error_duplicate_live_name_is_1002() {
    let daemon = Daemon::start().await;
    let client = daemon.client().await;
    let holder = create(&client, "twin").await;
    let err = client
        .create_session(Some("twin".into()), sh(), None, None, None, None, None)
        .await
        .unwrap_err();
    assert_eq!(rpc_code(&err), code::SESSION_EXISTS);
    assert_eq!(
        rpc_data(&err),
        json!({"name": "twin", "session_id": holder}),
        "{err}"
    );
    assert!(err.to_string().contains("twin"), "{err}");
}

#[tokio::test]
async fn error_input_to_a_stopped_session_is_1003() {
    let daemon = Daemon::start().await;
    let client = daemon.client().await;
    let id = create(&client, "gone").await;
    client.terminate_session(id).await.unwrap();
    let err = client
        .send_input(id, Base64Data::from("x"), None)
        .await
        .unwrap_err();
    assert_eq!(rpc_code(&err), code::INVALID_STATE);
    assert!(err.to_string().contains(&id.to_string()), "{err}");
    assert_eq!(
        rpc_data(&err),
        json!({"session_id": id, "state": "stopped"}),
        "{err}"
    );
}

#[tokio::test]
async fn error_max_sessions_is_1004_naming_the_limit() {
    let daemon = Daemon::start_with(&[("MAX_SESSIONS", "2")]).await;
    let client = daemon.client().await;
    create(&client, "a").await;
    create(&client, "b").await;
    let err = client
        .create_session(Some("c".into()), sh(), None, None, None, None, None)
        .await
        .unwrap_err();
    assert_eq!(rpc_code(&err), code::LIMIT_REACHED);
    assert!(err.to_string().contains("max_sessions"), "{err}");
    assert_eq!(
        rpc_data(&err),
        json!({"limit": "max_sessions", "max": 2}),
        "{err}"
    );
}

#[tokio::test]
async fn error_max_clients_per_session_is_1004() {
    let daemon = Daemon::start_with(&[("MAX_CLIENTS_PER_SESSION", "1")]).await;
    let client = daemon.client().await;
    let id = create(&client, "crowded").await;
    client
        .attach_session(id, Some("one".into()), None, None)
        .await
        .unwrap();
    let err = client
        .attach_session(id, Some("two".into()), None, None)
        .await
        .unwrap_err();
    assert_eq!(rpc_code(&err), code::LIMIT_REACHED);
    assert!(err.to_string().contains("max_clients_per_session"), "{err}");
    assert_eq!(
        rpc_data(&err),
        json!({"limit": "max_clients_per_session", "max": 1}),
        "{err}"
    );
}

#[tokio::test]
async fn error_oversized_input_is_1004() {
    let daemon = Daemon::start_with(&[("MAX_INPUT_BYTES", "16")]).await;
    let client = daemon.client().await;
    let id = create(&client, "small").await;
    let err = client
        .send_input(id, Base64Data(vec![b'a'; 17]), None)
        .await
        .unwrap_err();
    assert_eq!(rpc_code(&err), code::LIMIT_REACHED);
    assert!(err.to_string().contains("max_input_bytes"), "{err}");
    assert_eq!(
        rpc_data(&err),
        json!({"limit": "max_input_bytes", "max": 16}),
        "{err}"
    );
}

#[tokio::test]
async fn error_unstartable_command_is_1005_naming_it() {
    let daemon = Daemon::start().await;
    let err = daemon
        .client()
        .await
        .create_session(
            Some("broken".into()),
            command(&["/no/such/program"]),
            None,
            None,
            None,
            None,
            None,
        )
        .await
        .unwrap_err();
    assert_eq!(rpc_code(&err), code::BACKEND_ERROR);
    assert!(err.to_string().contains("/no/such/program"), "{err}");
    assert_eq!(rpc_data(&err), json!({"name": "broken"}), "{err}");
}

#[tokio::test]
async fn error_detach_of_a_client_not_attached_is_1006() {
    let daemon = Daemon::start().await;
    let client = daemon.client().await;
    let id = create(&client, "lonely").await;
    let err = client
        .detach_session(id, Some("ghost".into()))
        .await
        .unwrap_err();
    assert_eq!(rpc_code(&err), code::CLIENT_NOT_ATTACHED);
    assert_eq!(
        rpc_data(&err),
        json!({"session_id": id, "client_id": "ghost"}),
        "{err}"
    );
}

#[tokio::test]
async fn error_invalid_params_name_the_field() {
    let daemon = Daemon::start().await;
    let mut line = daemon.line().await;
    let id = line.ok("create_session", json!({"type": "Local"})).await["session_id"].clone();
    let err = line
        .err(
            "resize_terminal",
            json!({"session_id": id, "cols": 0, "rows": 24}),
        )
        .await;
    assert_eq!(err["code"], code::INVALID_PARAMS);
    assert_eq!(err["data"]["field"], "cols");

    let err = line
        .err(
            "create_session",
            json!({"type": {"kind": "local", "cwd": "/no/such/dir"}}),
        )
        .await;
    assert_eq!(err["code"], code::INVALID_PARAMS);
    assert_eq!(err["data"]["field"], "type.cwd");

    let err = line.err("create_session", json!({"name": "x"})).await;
    assert_eq!(err["code"], code::INVALID_PARAMS);
    assert!(
        err.to_string().contains("type"),
        "missing field named: {err}"
    );

    let err = line
        .err("send_input", json!({"session_id": id, "data": "%%%"}))
        .await;
    assert_eq!(err["code"], code::INVALID_PARAMS);
    assert!(err.to_string().contains("base64"), "{err}");
}

#[tokio::test]
async fn terminate_of_a_stopped_session_succeeds_and_changes_nothing() {
    let daemon = Daemon::start().await;
    let client = daemon.client().await;
    let id = start_program(&client, &["/bin/sh", "-c", "exit 5"]).await;
    wait_stopped(&client, id).await;
    let before = client.get_session(id).await.unwrap();
    assert!(client.terminate_session(id).await.unwrap().success);
    let after = client.get_session(id).await.unwrap();
    assert_eq!(
        (
            after.state,
            after.exit_code,
            after.exit_signal,
            after.exited_at,
            after.reason
        ),
        (
            before.state,
            before.exit_code,
            before.exit_signal,
            before.exited_at,
            before.reason
        ),
    );
}

#[tokio::test]
async fn error_attach_or_resize_of_a_stopped_session_is_1003_naming_its_state() {
    let daemon = Daemon::start().await;
    let client = daemon.client().await;
    let id = create(&client, "finished").await;
    client.terminate_session(id).await.unwrap();
    let attach = client
        .attach_session(id, None, None, None)
        .await
        .unwrap_err();
    let resize = client.resize_terminal(id, 100, 30, None).await.unwrap_err();
    for err in [attach, resize] {
        assert_eq!(rpc_code(&err), code::INVALID_STATE, "{err}");
        assert_eq!(
            rpc_data(&err),
            json!({"session_id": id, "state": "stopped"}),
            "{err}"
        );
    }
}

#[tokio::test]
async fn receive_output_since_beyond_the_end_is_invalid_params() {
    let daemon = Daemon::start().await;
    let mut line = daemon.line().await;
    let created = line.create_cat().await;
    let end = created["output_offset"].as_u64().unwrap();
    let at_end = line
        .ok(
            "receive_output",
            json!({"session_id": created["session_id"], "since": end}),
        )
        .await;
    assert_eq!(at_end["bytes_read"], 0, "the end itself is fine: {at_end}");
    let err = line
        .err(
            "receive_output",
            json!({"session_id": created["session_id"], "since": end + 1}),
        )
        .await;
    assert_eq!(err["code"], code::INVALID_PARAMS, "{err}");
    assert_eq!(err["data"]["field"], "since", "{err}");
}

#[tokio::test]
async fn receive_output_max_bytes_is_1_to_1048576() {
    let daemon = Daemon::start().await;
    let client = daemon.client().await;
    let id = start_program(&client, &["/bin/echo", "abcdef"]).await;
    wait_stopped(&client, id).await;
    let one = client
        .receive_output(id, Some(0), Some(1), None, None)
        .await
        .unwrap();
    assert_eq!((one.bytes_read, one.data.as_bytes()), (1, &b"a"[..]));
    client
        .receive_output(id, Some(0), Some(1 << 20), None, None)
        .await
        .expect("1048576 is allowed");
    for bad in [0, (1 << 20) + 1] {
        let err = client
            .receive_output(id, Some(0), Some(bad), None, None)
            .await
            .unwrap_err();
        assert_eq!(rpc_code(&err), code::INVALID_PARAMS, "{bad}: {err}");
        assert_eq!(rpc_data(&err)["field"], "max_bytes", "{err}");
    }
}

#[tokio::test]
async fn receive_output_waits_out_timeout_ms_when_nothing_arrives() {
    let daemon = Daemon::start().await;
    let client = daemon.client().await;
    let id = start_program(&client, &["/bin/cat"]).await;
    let head = client.get_session(id).await.unwrap().output_offset;
    let asked = Instant::now();
    let out = client
        .receive_output(id, Some(head), None, Some(300), None)
        .await
        .unwrap();
    let waited = asked.elapsed();
    assert_eq!(out.bytes_read, 0);
    assert!(
        waited >= Duration::from_millis(300) && waited < DEADLINE,
        "{waited:?}"
    );
    // Without timeout_ms it does not wait at all.
    let asked = Instant::now();
    client
        .receive_output(id, Some(head), None, None, None)
        .await
        .unwrap();
    assert!(asked.elapsed() < Duration::from_millis(300));
}

#[tokio::test]
async fn receive_output_timeout_ms_beyond_60000_is_accepted_as_the_cap() {
    let daemon = Daemon::start().await;
    let client = daemon.client().await;
    let id = start_program(&client, &["/bin/cat"]).await;
    let head = client.get_session(id).await.unwrap().output_offset;
    let poll = client.receive_output(id, Some(head), None, Some(u64::MAX), None);
    tokio::pin!(poll);
    assert!(
        tokio::time::timeout(Duration::from_millis(300), &mut poll)
            .await
            .is_err(),
        "neither refused nor returned at once"
    );
    client
        .send_input(id, Base64Data::from("late\n"), None)
        .await
        .unwrap();
    assert!(poll.await.unwrap().bytes_read > 0);
}

#[tokio::test]
async fn scrollback_lines_is_at_most_100000() {
    let daemon = Daemon::start().await;
    let client = daemon.client().await;
    let id = create(&client, "history").await;
    client
        .attach_session(id, Some("most".into()), None, Some(100_000))
        .await
        .expect("100000 is allowed");
    let err = client
        .attach_session(id, Some("more".into()), None, Some(100_001))
        .await
        .unwrap_err();
    assert_eq!(rpc_code(&err), code::INVALID_PARAMS, "{err}");
    assert_eq!(rpc_data(&err)["field"], "scrollback_lines", "{err}");
}

/// Calls `method` with the params `params(cols, rows)` makes: the bounds 1 and 1000 are
/// accepted (and become the size), 0 and 1001 are `-32602` naming the field.
async fn assert_size_range(
    line: &mut LineClient,
    method: &str,
    params: impl Fn(u16, u16) -> serde_json::Value,
) {
    for (cols, rows) in [(1, 1), (1000, 1000)] {
        let info = line.ok(method, params(cols, rows)).await;
        assert_eq!(
            (info["cols"].clone(), info["rows"].clone()),
            (json!(cols), json!(rows))
        );
    }
    for (field, cols, rows) in [
        ("cols", 0, 24),
        ("cols", 1001, 24),
        ("rows", 80, 0),
        ("rows", 80, 1001),
    ] {
        let err = line.err(method, params(cols, rows)).await;
        assert_eq!(err["code"], code::INVALID_PARAMS, "{cols}x{rows}: {err}");
        assert_eq!(err["data"]["field"], field, "{cols}x{rows}: {err}");
    }
}

#[tokio::test]
async fn create_size_is_1_to_1000_each_way() {
    let daemon = Daemon::start().await;
    let mut line = daemon.line().await;
    assert_size_range(&mut line, "create_session", |cols, rows| {
        json!({"type": {"kind": "local", "command": ["/bin/cat"]}, "cols": cols, "rows": rows})
    })
    .await;
}

#[tokio::test]
async fn resize_size_is_1_to_1000_each_way() {
    let daemon = Daemon::start().await;
    let mut line = daemon.line().await;
    let id = line.create_cat().await["session_id"].clone();
    assert_size_range(
        &mut line,
        "resize_terminal",
        |cols, rows| json!({"session_id": id, "cols": cols, "rows": rows}),
    )
    .await;
}

#[tokio::test]
async fn session_names_are_1_to_64_characters_without_control_characters() {
    let daemon = Daemon::start().await;
    let client = daemon.client().await;
    let longest = "n".repeat(64);
    assert_eq!(create(&client, &longest).await, {
        let listed = client.list_sessions().await.unwrap().sessions;
        listed
            .iter()
            .find(|s| s.name == longest)
            .expect("listed")
            .id
    });
    for bad in [String::new(), "n".repeat(65), "tab\there".to_owned()] {
        let err = client
            .create_session(Some(bad.clone()), sh(), None, None, None, None, None)
            .await
            .unwrap_err();
        assert_eq!(rpc_code(&err), code::INVALID_PARAMS, "{bad:?}: {err}");
        assert_eq!(rpc_data(&err)["field"], "name", "{bad:?}: {err}");
    }
}

#[tokio::test]
async fn stopped_session_releases_its_name() {
    let daemon = Daemon::start().await;
    let client = daemon.client().await;
    let first = create(&client, "reused").await;
    client.terminate_session(first).await.unwrap();
    let second = create(&client, "reused").await;
    assert_ne!(first, second);
    assert_eq!(
        client.get_session(first).await.unwrap().state,
        SessionState::Stopped,
        "the stopped one is still listed"
    );
}

#[tokio::test]
async fn unsubscribe_output_ends_the_stream() {
    let daemon = Daemon::start().await;
    let mut line = daemon.line().await;
    let id = line.create_cat().await["session_id"].clone();
    let subscription = line.ok("subscribe_output", json!({"session_id": id})).await;
    let unsubscribed = line.ok("unsubscribe_output", json!([subscription])).await;
    assert_eq!(unsubscribed, true, "{unsubscribed}");
    // Output now reaches nobody on this connection: every line read next is an answer
    // (LineClient::call checks its id), never an `output` notification.
    line.ok(
        "send_input",
        json!({"session_id": id, "data": b64(b"after\n")}),
    )
    .await;
    line.read_output_until(&id, "after").await;
    line.ok("get_status", json!({})).await;
    let again = line.ok("unsubscribe_output", json!([subscription])).await;
    assert_eq!(again, false, "already gone: {again}");
}

/// Subscribes to session `id` from offset 0, then types `go` (which its program waits for
/// with `read`), so that the subscription sees everything the program prints.
async fn subscribe_then_go(
    client: &pulsar_protocol::PulsarClient,
    id: uuid::Uuid,
) -> jsonrpsee::core::client::Subscription<OutputEvent> {
    let sub = client
        .subscribe_output(id, Some(0), None, None)
        .await
        .unwrap();
    client
        .send_input(id, Base64Data::from("go\n"), None)
        .await
        .unwrap();
    sub
}

#[tokio::test]
async fn output_events_carry_at_most_64_kib_each() {
    let daemon = Daemon::start().await;
    let client = daemon.client().await;
    let id = start_program(
        &client,
        &[
            "/bin/sh",
            "-c",
            "read x; head -c 400000 /dev/zero | tr '\\0' o; echo; echo E\"\"ND",
        ],
    )
    .await;
    let mut sub = subscribe_then_go(&client, id).await;
    let deadline = Deadline::start();
    let (mut total, mut largest, mut text) = (0, 0, Vec::new());
    while !String::from_utf8_lossy(&text).contains("END") {
        deadline.check("END");
        if let OutputEvent::Output { data, .. } = next_event(&mut sub).await {
            total += data.as_bytes().len();
            largest = largest.max(data.as_bytes().len());
            text.extend_from_slice(&data.as_bytes()[data.as_bytes().len().saturating_sub(8)..]);
        }
    }
    assert!(total > 400_000, "{total}");
    assert!(largest <= 64 * 1024, "an event of {largest} bytes");
}

#[tokio::test]
async fn exited_is_the_last_event_after_the_last_output() {
    let daemon = Daemon::start().await;
    let client = daemon.client().await;
    let id = start_program(
        &client,
        &["/bin/sh", "-c", "read x; echo last-$((2*3)); exit 4"],
    )
    .await;
    let mut sub = subscribe_then_go(&client, id).await;
    let deadline = Deadline::start();
    let mut output = Vec::new();
    loop {
        deadline.check("exited");
        match next_event(&mut sub).await {
            OutputEvent::Output { data, .. } => output.extend_from_slice(data.as_bytes()),
            OutputEvent::Exited { code, signal } => {
                assert_eq!((code, signal), (Some(4), None));
                break;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(
        String::from_utf8_lossy(&output).contains("last-6"),
        "the last output came before exited: {:?}",
        String::from_utf8_lossy(&output)
    );
    // Nothing follows: the stream either ends or stays silent (a stopped session makes no
    // more events; a short look is enough to see a stray one).
    let after = tokio::time::timeout(Duration::from_millis(500), sub.next()).await;
    assert!(
        matches!(after, Err(_) | Ok(None)),
        "an event after exited: {after:?}"
    );
}

#[tokio::test]
async fn the_program_gets_pulsar_session_id_and_name() {
    let daemon = Daemon::start().await;
    let client = daemon.client().await;
    let id = client
        .create_session(
            Some("labelled".into()),
            command(&[
                "/bin/sh",
                "-c",
                "echo \"id=$PULSAR_SESSION_ID name=$PULSAR_SESSION_NAME.\"; exec cat",
            ]),
            None,
            None,
            None,
            None,
            None,
        )
        .await
        .unwrap()
        .session_id;
    read_until(&client, id, &format!("id={id} name=labelled.")).await;
}
