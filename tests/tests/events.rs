//! `subscribe_events`: one stream for the whole daemon (creations, clients, sizes, exits,
//! bells, titles, finished commands), on both framings; a slow subscriber lags, alone.

use jsonrpsee::core::client::Subscription;
use pulsar_e2e::*;
use pulsar_protocol::{ClientMode, PulsarApiClient as _, PulsarClient, SessionEvent, SessionId};
use serde_json::json;

/// The next event, within the deadline.
async fn next(sub: &mut Subscription<SessionEvent>) -> SessionEvent {
    tokio::time::timeout(DEADLINE, sub.next())
        .await
        .expect("an event within the deadline")
        .expect("the subscription is open")
        .expect("a valid event")
}

/// Skips events until one that `wanted` accepts; returns it.
async fn until(
    sub: &mut Subscription<SessionEvent>,
    wanted: impl Fn(&SessionEvent) -> bool,
) -> SessionEvent {
    let deadline = Deadline::start();
    loop {
        deadline.check("the event");
        let event = next(sub).await;
        if wanted(&event) {
            return event;
        }
    }
}

async fn subscribed(client: &PulsarClient) -> Subscription<SessionEvent> {
    client.subscribe_events().await.expect("subscribe_events")
}

/// Starts `script` under `/bin/sh -c` in a session.
async fn run_script(client: &PulsarClient, script: &str) -> SessionId {
    start_program(client, &["/bin/sh", "-c", script]).await
}

#[tokio::test]
async fn creating_a_session_is_an_event_with_its_id_and_name() {
    let daemon = Daemon::start().await;
    let client = daemon.client().await;
    let mut events = subscribed(&client).await;
    let created = client
        .create_session(Some("build".into()), sh(), None, None, None, None, None)
        .await
        .unwrap();
    assert_eq!(
        next(&mut events).await,
        SessionEvent::SessionCreated {
            session_id: created.session_id,
            name: "build".into()
        }
    );
}

#[tokio::test]
async fn attach_and_detach_are_events_with_the_client_and_its_mode() {
    let daemon = Daemon::start().await;
    let client = daemon.client().await;
    let id = start_program(&client, &["/bin/cat"]).await;
    let mut events = subscribed(&client).await;
    client
        .attach_session(id, Some("watcher".into()), Some(ClientMode::ReadOnly), None)
        .await
        .unwrap();
    client
        .detach_session(id, Some("watcher".into()))
        .await
        .unwrap();
    assert_eq!(
        next(&mut events).await,
        SessionEvent::SessionAttached {
            session_id: id,
            client_id: "watcher".into(),
            read_only: true
        }
    );
    assert_eq!(
        next(&mut events).await,
        SessionEvent::SessionDetached {
            session_id: id,
            client_id: "watcher".into(),
            read_only: true
        }
    );
}

#[tokio::test]
async fn a_closed_connection_detaches_its_clients_as_events() {
    let daemon = Daemon::start().await;
    let client = daemon.client().await;
    let id = start_program(&client, &["/bin/cat"]).await;
    let mut events = subscribed(&client).await;
    let mut line = daemon.line().await;
    let attached = line.ok("attach_session", json!({"session_id": id})).await;
    drop(line);
    let detached = until(&mut events, |e| {
        matches!(e, SessionEvent::SessionDetached { .. })
    })
    .await;
    assert_eq!(
        detached,
        SessionEvent::SessionDetached {
            session_id: id,
            client_id: attached["client_id"].as_str().unwrap().into(),
            read_only: false
        }
    );
}

#[tokio::test]
async fn a_resize_is_an_event_with_the_new_size() {
    let daemon = Daemon::start().await;
    let client = daemon.client().await;
    let id = start_program(&client, &["/bin/cat"]).await;
    let mut events = subscribed(&client).await;
    client.resize_terminal(id, 120, 40, None).await.unwrap();
    assert_eq!(
        next(&mut events).await,
        SessionEvent::SessionResized {
            session_id: id,
            cols: 120,
            rows: 40
        }
    );
}

#[tokio::test]
async fn an_exit_is_an_event_with_its_code_or_signal() {
    let daemon = Daemon::start().await;
    let client = daemon.client().await;
    let mut events = subscribed(&client).await;
    let coded = run_script(&client, "exit 3").await;
    let killed = run_script(&client, "kill -9 $$").await;
    let mut seen = Vec::new();
    while seen.len() < 2 {
        if let SessionEvent::SessionExited {
            session_id,
            code,
            signal,
            ..
        } = until(&mut events, |e| {
            matches!(e, SessionEvent::SessionExited { .. })
        })
        .await
        {
            seen.push((session_id, code, signal));
        }
    }
    assert!(seen.contains(&(coded, Some(3), None)), "{seen:?}");
    assert!(seen.contains(&(killed, None, Some(9))), "{seen:?}");
}

#[tokio::test]
async fn a_bell_while_nobody_is_attached_is_an_event() {
    let daemon = Daemon::start().await;
    let client = daemon.client().await;
    let mut events = subscribed(&client).await;
    let id = run_script(&client, "sleep 0.2; printf 'ding\\a'; sleep 30").await;
    let bell = until(&mut events, |e| matches!(e, SessionEvent::Bell { .. })).await;
    assert_eq!(bell, SessionEvent::Bell { session_id: id });
}

#[tokio::test]
async fn a_bell_an_attached_client_hears_is_not_an_event() {
    let daemon = Daemon::start().await;
    let client = daemon.client().await;
    let id = run_script(&client, "read go; printf '\\a\\033]2;after\\007'; sleep 30").await;
    client.attach_session(id, None, None, None).await.unwrap();
    let mut events = subscribed(&client).await;
    client
        .send_input(id, b"go\r".to_vec().into(), None)
        .await
        .unwrap();
    // The title printed right after the bell marks the end of what to look at.
    let first = until(&mut events, |e| {
        matches!(e, SessionEvent::Bell { .. } | SessionEvent::Title { .. })
    })
    .await;
    assert!(matches!(first, SessionEvent::Title { .. }), "{first:?}");
}

#[tokio::test]
async fn a_title_set_by_osc_0_or_2_is_an_event_when_it_changes() {
    let daemon = Daemon::start().await;
    let client = daemon.client().await;
    let mut events = subscribed(&client).await;
    let id = run_script(
        &client,
        "printf '\\033]0;one\\007\\033]2;one\\033\\\\\\033]2;two\\007'; sleep 30",
    )
    .await;
    let is_title = |e: &SessionEvent| matches!(e, SessionEvent::Title { .. });
    let title = |title: &str| SessionEvent::Title {
        session_id: id,
        title: title.into(),
    };
    assert_eq!(until(&mut events, is_title).await, title("one"));
    assert_eq!(until(&mut events, is_title).await, title("two"));
}

#[tokio::test]
async fn a_command_marked_by_osc_133_finishes_with_its_line_exit_code_and_duration() {
    let daemon = Daemon::start().await;
    let client = daemon.client().await;
    let mut events = subscribed(&client).await;
    let id = run_script(
        &client,
        "printf '\\033]133;A\\007$ \\033]133;B\\007make test\\r\\n\\033]133;C\\007'; \
         sleep 0.3; printf 'failed\\r\\n\\033]133;D;2\\007'; sleep 30",
    )
    .await;
    let finished = until(&mut events, |e| {
        matches!(e, SessionEvent::CommandFinished { .. })
    })
    .await;
    let SessionEvent::CommandFinished {
        session_id,
        command_line,
        exit_code,
        duration_ms,
    } = finished
    else {
        unreachable!()
    };
    assert_eq!(session_id, id);
    assert_eq!(command_line.as_deref(), Some("make test"));
    assert_eq!(exit_code, Some(2));
    assert!((200..10_000).contains(&duration_ms), "{duration_ms} ms");
}

#[tokio::test]
async fn events_stream_on_the_line_framing_too() {
    let daemon = Daemon::start().await;
    let mut line = daemon.line().await;
    let subscription = line.ok("subscribe_events", json!({})).await;
    let client = daemon.client().await;
    let created = client
        .create_session(Some("liner".into()), sh(), None, None, None, None, None)
        .await
        .unwrap();
    let note = line.read().await.expect("a notification");
    assert_eq!(note["method"], "event");
    assert_eq!(note["params"]["subscription"], subscription);
    assert_eq!(note["params"]["result"]["type"], "session_created");
    assert_eq!(
        note["params"]["result"]["session_id"],
        created.session_id.to_string()
    );
    let done = line.ok("unsubscribe_events", json!([subscription])).await;
    assert_eq!(done, true);
}

#[tokio::test]
async fn a_subscriber_that_stops_reading_is_told_it_lagged_and_slows_nothing() {
    let daemon = Daemon::start().await;
    let mut slow = daemon.line().await;
    slow.ok("subscribe_events", json!({})).await;
    let client = daemon.client().await;
    // 20000 title changes: far more than the socket, the connection's queues and the
    // stream's 1024 events hold.
    let id = run_script(
        &client,
        "i=0; while [ $i -lt 20000 ]; do printf '\\033]2;t%d\\007' $i; i=$((i+1)); done",
    )
    .await;
    // The session runs to its end while the subscriber reads nothing.
    wait_stopped(&client, id).await;
    let deadline = Deadline::start();
    loop {
        deadline.check("a lagged event");
        let note = slow.read().await.expect("a notification");
        if note["params"]["result"]["type"] == "lagged" {
            assert!(note["params"]["result"]["missed"].as_u64().unwrap() > 0);
            break;
        }
    }
}

#[tokio::test]
async fn event_subscribers_on_either_framing_do_not_hold_up_the_daemons_stop() {
    let daemon = Daemon::start().await;
    let mut line = daemon.line().await;
    line.ok("subscribe_events", json!({})).await;
    let client = daemon.client().await;
    let _events = subscribed(&client).await;
    let started = std::time::Instant::now();
    assert!(daemon.stop().success());
    assert!(
        started.elapsed() < std::time::Duration::from_secs(5),
        "the stop took {:?}",
        started.elapsed()
    );
}
