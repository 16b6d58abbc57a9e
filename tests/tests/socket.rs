//! The socket server: both framings, permissions, peer checks, the single-daemon rule,
//! stale sockets, bad input, and graceful stop.

use std::os::unix::fs::PermissionsExt;
use std::process::Stdio;

use jsonrpsee::core::client::ClientT;
use pulsar_e2e::*;
use pulsar_protocol::PulsarApiClient as _;
use serde_json::{Value, json};

#[tokio::test]
async fn standalone_answers_get_status_over_websocket() {
    let daemon = Daemon::start().await;
    let status = daemon.client().await.get_status().await.unwrap();
    assert_eq!(status.pid, daemon.child.id());
    assert_eq!(status.version, env!("CARGO_PKG_VERSION"));
    assert_eq!((status.num_sessions, status.num_clients), (0, 0));
}

#[tokio::test]
async fn standalone_answers_get_status_over_line_json() {
    let daemon = Daemon::start().await;
    let mut line = daemon.line().await;
    let result = line.ok("get_status", json!({})).await;
    assert_eq!(result["pid"], daemon.child.id());
    for key in ["version", "uptime_seconds", "num_sessions", "num_clients"] {
        assert!(result.get(key).is_some(), "missing {key}: {result}");
    }
}

#[tokio::test]
async fn upstream_request_without_jsonrpc_member_and_string_id_is_answered_as_2_0() {
    let daemon = Daemon::start().await;
    let mut line = daemon.line().await;
    let response = line
        .request(json!({"id": "1", "method": "get_status", "params": {}}))
        .await;
    assert_eq!(response["jsonrpc"], "2.0");
    assert_eq!(response["id"], "1", "string id echoed as a string");
    assert_eq!(response["result"]["pid"], daemon.child.id());
}

#[tokio::test]
async fn line_batch_gets_one_array_of_answers() {
    let daemon = Daemon::start().await;
    let mut line = daemon.line().await;
    let response = line
        .request(json!([
            {"jsonrpc": "2.0", "id": 1, "method": "get_status"},
            {"jsonrpc": "2.0", "id": 2, "method": "no_such_method"},
        ]))
        .await;
    let answers = response.as_array().expect("an array");
    assert_eq!(answers.len(), 2);
    assert!(
        answers
            .iter()
            .any(|a| a["id"] == 1 && a["result"].is_object())
    );
    assert!(
        answers
            .iter()
            .any(|a| a["id"] == 2 && a["error"]["code"] == -32601)
    );
}

#[tokio::test]
async fn socket_is_0600_in_a_0700_directory() {
    let daemon = Daemon::start().await;
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&daemon.socket), 0o600);
    assert_eq!(mode(daemon.socket.parent().unwrap()), 0o700);
}

#[tokio::test]
async fn connection_from_another_uid_is_refused_before_any_reply() {
    if !nix::unistd::geteuid().is_root() {
        panic!("this test runs as root so that it can connect as `nobody`");
    }
    let daemon = Daemon::start().await;
    // Loosen the filesystem guard so that only the peer-credential check stands in the way.
    let dir = daemon.socket.parent().unwrap();
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(&daemon.socket, std::fs::Permissions::from_mode(0o777)).unwrap();
    std::fs::set_permissions(daemon.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();

    let outcome = connect_as_nobody(&daemon.socket);
    assert_eq!(
        outcome,
        NobodyOutcome::ClosedWithoutReply,
        "the daemon must close on another uid"
    );
    let log = eventually("the refusal in the log", || {
        let log = daemon.log();
        async move {
            log.contains("refused a connection from another user")
                .then_some(log)
        }
    })
    .await;
    assert!(log.contains("uid=65534"), "{log}");
    // And it keeps serving its own user.
    daemon.client().await.get_status().await.unwrap();
}

#[derive(Debug, PartialEq, Eq)]
enum NobodyOutcome {
    ClosedWithoutReply,
    GotReply,
    CouldNotConnect,
}

/// Forks a child that becomes uid/gid 65534, connects, sends a request and reports whether a
/// reply came. The child uses only async-signal-safe calls (no allocation after fork).
fn connect_as_nobody(socket: &std::path::Path) -> NobodyOutcome {
    use std::os::unix::ffi::OsStrExt;
    let mut addr: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
    let path = socket.as_os_str().as_bytes();
    assert!(path.len() < addr.sun_path.len());
    for (dst, src) in addr.sun_path.iter_mut().zip(path) {
        *dst = *src as libc::c_char;
    }
    let request = b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"get_status\"}\n";
    // SAFETY: the child only makes raw syscalls on prepared memory and then _exits.
    unsafe {
        let pid = libc::fork();
        assert!(pid >= 0, "fork failed");
        if pid == 0 {
            if libc::setgid(65534) != 0 || libc::setuid(65534) != 0 {
                libc::_exit(10);
            }
            let fd = libc::socket(libc::AF_UNIX, libc::SOCK_STREAM, 0);
            let len = std::mem::size_of::<libc::sockaddr_un>() as libc::socklen_t;
            if libc::connect(fd, (&addr as *const libc::sockaddr_un).cast(), len) != 0 {
                libc::_exit(2);
            }
            libc::write(fd, request.as_ptr().cast(), request.len());
            let mut poll = libc::pollfd {
                fd,
                events: libc::POLLIN,
                revents: 0,
            };
            libc::poll(&mut poll, 1, 10_000);
            let mut byte = 0u8;
            let n = libc::read(fd, (&mut byte as *mut u8).cast(), 1);
            libc::_exit(if n > 0 { 1 } else { 0 });
        }
        let mut status = 0;
        libc::waitpid(pid, &mut status, 0);
        match libc::WEXITSTATUS(status) {
            0 => NobodyOutcome::ClosedWithoutReply,
            1 => NobodyOutcome::GotReply,
            code => {
                assert_eq!(code, 2, "child failed to drop privileges");
                NobodyOutcome::CouldNotConnect
            }
        }
    }
}

#[tokio::test]
async fn second_daemon_on_a_live_socket_exits_nonzero_and_says_so() {
    let daemon = Daemon::start().await;
    let other_home = tempfile::tempdir().unwrap();
    let mut second = Daemon::spawn(other_home.path(), &daemon.socket, &[]);
    let exit = wait_exit(&mut second, "the second daemon");
    assert!(!exit.success());
    let log = std::fs::read_to_string(other_home.path().join("daemon.log")).unwrap();
    assert!(log.contains("already listening"), "{log}");
    daemon
        .client()
        .await
        .get_status()
        .await
        .expect("the first one still serves");
}

#[tokio::test]
async fn stale_socket_from_a_dead_daemon_is_replaced() {
    let home = tempfile::tempdir().unwrap();
    let socket = home.path().join("run/pulsar.sock");
    std::fs::create_dir_all(socket.parent().unwrap()).unwrap();
    drop(std::os::unix::net::UnixListener::bind(&socket).unwrap()); // leaves the file behind
    assert!(socket.exists());

    let mut child = Daemon::spawn(home.path(), &socket, &[]);
    let client = eventually("the daemon on the stale path", || {
        let socket = socket.clone();
        async move { pulsar_protocol::connect(&socket).await.ok() }
    })
    .await;
    assert_eq!(client.get_status().await.unwrap().pid, child.id());
    signal(&child, nix::sys::signal::Signal::SIGTERM);
    assert!(wait_exit(&mut child, "daemon").success());
}

#[tokio::test]
async fn regular_file_at_the_socket_path_is_not_replaced() {
    let home = tempfile::tempdir().unwrap();
    let socket = home.path().join("run/pulsar.sock");
    std::fs::create_dir_all(socket.parent().unwrap()).unwrap();
    std::fs::write(&socket, "precious").unwrap();
    let mut child = Daemon::spawn(home.path(), &socket, &[]);
    assert!(!wait_exit(&mut child, "daemon").success());
    assert_eq!(std::fs::read_to_string(&socket).unwrap(), "precious");
}

#[tokio::test]
async fn sigterm_stops_gracefully_removes_the_socket_and_exits_0() {
    let daemon = Daemon::start().await;
    let socket = daemon.socket.clone();
    let exit = daemon.stop();
    assert!(exit.success(), "{exit:?}");
    assert!(!socket.exists());
}

#[tokio::test]
async fn sigint_stops_gracefully_too() {
    let mut daemon = Daemon::start().await;
    signal(&daemon.child, nix::sys::signal::Signal::SIGINT);
    assert!(wait_exit(&mut daemon.child, "daemon").success());
    assert!(!daemon.socket.exists());
}

#[tokio::test]
async fn malformed_json_line_gets_a_parse_error_and_the_connection_keeps_serving() {
    let daemon = Daemon::start().await;
    let mut line = daemon.line().await;
    line.send_raw(b"{this is not json\n").await;
    let response = line.read().await.unwrap();
    assert_eq!(response["error"]["code"], -32700, "{response}");
    assert_eq!(response["id"], Value::Null);
    line.ok("get_status", json!({})).await;
}

#[tokio::test]
async fn unknown_method_gets_method_not_found_on_both_framings() {
    let daemon = Daemon::start().await;
    let mut line = daemon.line().await;
    assert_eq!(line.err("frobnicate", json!({})).await["code"], -32601);

    let client = daemon.client().await;
    let err = client
        .request::<Value, _>("frobnicate", jsonrpsee::rpc_params![])
        .await
        .unwrap_err();
    assert!(err.to_string().contains("Method not found"), "{err}");
    client.get_status().await.unwrap();
}

#[tokio::test]
async fn oversized_line_request_is_refused_and_the_connection_keeps_serving() {
    let daemon = Daemon::start_with(&[("MAX_REQUEST_BYTES", "8192")]).await;
    let mut line = daemon.line().await;
    let huge = format!(
        "{{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"get_status\",\"params\":{{\"pad\":\"{}\"}}}}\n",
        "x".repeat(100_000)
    );
    line.send_raw(huge.as_bytes()).await;
    let response = line.read().await.unwrap();
    assert_eq!(response["error"]["code"], -32007, "{response}");
    assert_eq!(response["error"]["data"]["limit"], 8192, "{response}");
    line.ok("get_status", json!({})).await;
}

/// Sends a 100 kB `get_status` over a raw WebSocket to a daemon whose limit is 8192 bytes;
/// returns the answer, the daemon and the socket.
async fn oversized_websocket_request() -> (Value, Daemon, RawWebSocket) {
    let daemon = Daemon::start_with(&[("MAX_REQUEST_BYTES", "8192")]).await;
    let mut ws = RawWebSocket::connect(&daemon.socket).await;
    let huge = json!({"jsonrpc": "2.0", "id": 1, "method": "get_status",
                      "params": {"pad": "x".repeat(100_000)}});
    ws.send_text(&huge.to_string()).await;
    let response = ws.read().await.expect("an answer");
    (response, daemon, ws)
}

#[tokio::test]
async fn oversized_websocket_request_fails_and_the_daemon_keeps_serving() {
    let (response, daemon, mut ws) = oversized_websocket_request().await;
    assert_eq!(response["error"]["code"], -32007, "{response}");
    ws.send_text(r#"{"jsonrpc":"2.0","id":2,"method":"get_status"}"#)
        .await;
    let next = ws.read().await.expect("the connection keeps serving");
    assert_eq!(next["result"]["pid"], daemon.child.id(), "{next}");
}

#[tokio::test]
async fn oversized_websocket_request_error_data_names_the_limit() {
    // Over WebSocket the frame is refused by jsonrpsee itself, before any code of ours sees
    // it, so `data` is its text (docs/protocol.md says so), naming the limit.
    let (response, _daemon, _ws) = oversized_websocket_request().await;
    assert_eq!(response["error"]["code"], -32007, "{response}");
    let data = response["error"]["data"]
        .as_str()
        .unwrap_or_else(|| panic!("{response}"));
    assert!(data.contains("8192"), "{response}");
}

#[tokio::test]
async fn help_flag_describes_the_flags() {
    let out = std::process::Command::new(artifact("pulsar-standalone"))
        .arg("--help")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for flag in ["--config", "--socket", "--database", "--log-level"] {
        assert!(help.contains(flag), "{help}");
    }
}

/// A line-JSON `receive_output` long poll of `session_id` from `since`, waiting up to 30 s.
fn long_poll_line(id: u64, session_id: &Value, since: &Value) -> String {
    let request = json!({"jsonrpc": "2.0", "id": id, "method": "receive_output",
                         "params": {"session_id": session_id, "since": since, "timeout_ms": 30_000}});
    format!("{request}\n")
}

/// A session running `cat` (no output until it is typed to), and where its output ends.
async fn quiet_session(line: &mut LineClient) -> (Value, Value) {
    let created = line.create_cat().await;
    (
        created["session_id"].clone(),
        created["output_offset"].clone(),
    )
}

#[tokio::test]
async fn line_json_long_poll_does_not_hold_up_the_next_line() {
    let daemon = Daemon::start().await;
    let mut line = daemon.line().await;
    let (session, head) = quiet_session(&mut line).await;
    line.send_raw(long_poll_line(100, &session, &head).as_bytes())
        .await;
    let answer = line
        .request(json!({"jsonrpc": "2.0", "id": 101, "method": "get_status"}))
        .await;
    assert_eq!(
        answer["id"], 101,
        "the next line is answered first: {answer}"
    );
}

#[tokio::test]
async fn line_json_serves_64_requests_in_flight_on_one_connection() {
    let daemon = Daemon::start().await;
    let mut line = daemon.line().await;
    let (session, head) = quiet_session(&mut line).await;
    // 63 long polls that wait for output, then a 64th request that must not wait for them.
    let polls: String = (1..=63)
        .map(|id| long_poll_line(id, &session, &head))
        .collect();
    line.send_raw(polls.as_bytes()).await;
    let answer = line
        .request(json!({"jsonrpc": "2.0", "id": 64, "method": "get_status"}))
        .await;
    assert_eq!(answer["id"], 64, "answered while 63 polls wait: {answer}");

    // Output from another connection releases every poll, each with the bytes.
    let mut typist = daemon.line().await;
    typist
        .ok(
            "send_input",
            json!({"session_id": session, "data": b64(b"wake\n")}),
        )
        .await;
    let mut answered = std::collections::BTreeSet::new();
    while answered.len() < 63 {
        let answer = line.read().await.expect("a poll's answer");
        assert!(
            answer["result"]["bytes_read"].as_u64() > Some(0),
            "{answer}"
        );
        assert!(answered.insert(answer["id"].as_u64().expect("an id")));
    }
    assert_eq!(answered, (1..=63).collect());
}

#[tokio::test]
async fn line_request_that_is_not_a_request_object_is_invalid_request() {
    let daemon = Daemon::start().await;
    let mut line = daemon.line().await;
    let response = line.request(json!([42])).await;
    assert_eq!(response[0]["error"]["code"], -32600, "{response}");
    assert_eq!(response[0]["id"], Value::Null, "{response}");
    line.ok("get_status", json!({})).await;
}

#[tokio::test]
async fn line_empty_batch_is_an_invalid_request() {
    let daemon = Daemon::start().await;
    let mut line = daemon.line().await;
    let response = line.request(json!([])).await;
    assert_eq!(response["error"]["code"], -32600, "{response}");
    assert_eq!(response["id"], Value::Null, "{response}");
}

#[tokio::test]
async fn line_notification_is_carried_out_without_an_answer() {
    let daemon = Daemon::start().await;
    let mut line = daemon.line().await;
    let (session, _) = quiet_session(&mut line).await;
    // No id: a notification. It types into the session but gets no answer line.
    line.send_raw(
        format!(
            "{}\n",
            json!({"jsonrpc": "2.0", "method": "send_input",
                   "params": {"session_id": session, "data": b64(b"noticed\n")}})
        )
        .as_bytes(),
    )
    .await;
    let next = line
        .request(json!({"jsonrpc": "2.0", "id": 7, "method": "get_status"}))
        .await;
    assert_eq!(next["id"], 7, "the notification got no answer: {next}");
    line.read_output_until(&session, "noticed").await;
}

#[tokio::test]
async fn plain_http_post_of_a_request_is_answered() {
    let daemon = Daemon::start().await;
    let (status, body) = http_post(
        &daemon.socket,
        r#"{"jsonrpc":"2.0","id":5,"method":"get_status"}"#,
    )
    .await;
    assert!(status.starts_with("HTTP/1.1 200"), "{status}");
    assert_eq!(body["id"], 5, "{body}");
    assert_eq!(body["result"]["pid"], daemon.child.id(), "{body}");
}

#[tokio::test]
async fn shutdown_hangs_up_every_session_then_kills_those_that_ignore_it() {
    let mut daemon = Daemon::start().await;
    let mut line = daemon.line().await;
    // Outside the daemon's dir, which goes with it.
    let scratch = tempfile::tempdir().unwrap();
    let marks = scratch.path().join("hup-marks");
    // One program that ends on SIGHUP, one that notes it and carries on.
    let polite = line
        .ok(
            "create_session",
            json!({"type": {"kind": "local", "command": ["/bin/sh", "-c", "echo ready; exec cat"]}}),
        )
        .await;
    let stubborn = line
        .ok(
            "create_session",
            json!({"type": {"kind": "local", "command": sighup_survivor(Some(&marks))}}),
        )
        .await;
    for session in [&polite, &stubborn] {
        line.read_output_until(&session["session_id"], "ready")
            .await;
    }
    let pids = [&polite, &stubborn].map(|s| s["pid"].as_u64().expect("a pid") as u32);
    line.ok("shutdown", json!({"terminate_sessions": true}))
        .await;
    drop(line);

    let exit = wait_exit(&mut daemon.child, "the daemon");
    assert!(exit.success(), "{exit:?}");
    eventually("both programs to end", || async {
        pids.iter().all(|&pid| process_gone(pid)).then_some(())
    })
    .await;
    assert_eq!(
        std::fs::read_to_string(&marks).unwrap_or_default(),
        "hup\n",
        "the stubborn one got SIGHUP first"
    );
}

#[tokio::test]
async fn a_pending_long_poll_is_answered_when_the_daemon_stops_instead_of_holding_it_up() {
    let daemon = Daemon::start().await;
    let mut line = daemon.line().await;
    let (session, head) = quiet_session(&mut line).await;
    line.send_raw(long_poll_line(77, &session, &head).as_bytes())
        .await;
    // The poll is in flight once a later request on the connection is answered.
    line.ok("get_status", json!({})).await;
    let started = std::time::Instant::now();
    let status = daemon.stop();
    assert!(status.success(), "{status:?}");
    // Well inside both the poll's 30 s and the stop's 10 s wait for requests in flight.
    assert!(
        started.elapsed() < std::time::Duration::from_secs(5),
        "the stop took {:?}",
        started.elapsed()
    );
    let answer = line
        .read()
        .await
        .expect("the poll's answer before the connection closed");
    assert_eq!(answer["id"], 77);
    assert_eq!(answer["result"]["bytes_read"], 0, "{answer}");
}
