//! Every row of docs/protocol.md's error table, triggered over the daemon's socket: one test a
//! code, named `code_<N>_<what_triggers_it>`, checking the code and the whole `data` object
//! (every documented field with its value, and no other field). `tidy.rs` fails when a
//! documented code has no test here. The tests that need OpenSSH are compiled as ignored
//! without it (`tests/build.rs`), as the SSH tests are.

use std::os::fd::{FromRawFd as _, IntoRawFd as _, OwnedFd};
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

use nix::fcntl::OFlag;
use pulsar_e2e::sshd::{Sshd, TEST_USER, free_port, keygen};
use pulsar_e2e::*;
use pulsar_protocol::error as code;
use serde_json::{Value, json};

/// The name the tests give the sessions they create, so that `data.name` can be checked.
const NAME: &str = "target";

/// Asserts `err` (a response's `error` object) has `code` and exactly `data`: the same keys
/// (nothing documented missing, nothing undocumented added) with the same values.
#[track_caller]
fn assert_error(err: &Value, code: i32, data: Value) {
    assert_eq!(err["code"], code, "{err}");
    let (Some(got), Some(want)) = (err["data"].as_object(), data.as_object()) else {
        panic!("data is not an object: {err}");
    };
    let mut got_keys: Vec<&String> = got.keys().collect();
    let mut want_keys: Vec<&String> = want.keys().collect();
    got_keys.sort();
    want_keys.sort();
    assert_eq!(got_keys, want_keys, "the data's fields: {err}");
    assert_eq!(err["data"], data, "{err}");
}

/// Asserts `err` has `code` and no `data` (JSON-RPC's own errors, whose row has none).
#[track_caller]
fn assert_error_without_data(err: &Value, code: i32) {
    assert_eq!(err["code"], code, "{err}");
    assert!(err.get("data").is_none(), "no data documented: {err}");
}

/// A `create_session` of `ty` named [`NAME`] that must fail; returns the error.
async fn create_named_err(line: &mut LineClient, ty: Value) -> Value {
    line.err("create_session", json!({"name": NAME, "type": ty}))
        .await
}

/// An SSH `type` for `sshd` as the test user with its authorized key and no agent; `extra`'s
/// fields replace or add to it.
fn ssh_type(sshd: &Sshd, extra: Value) -> Value {
    let mut ty = json!({
        "kind": "ssh",
        "host": "127.0.0.1",
        "port": sshd.port,
        "user": TEST_USER,
        "auth": {"agent": false, "key_files": [sshd.client_key]},
    });
    for (key, value) in extra.as_object().expect("an object") {
        ty[key] = value.clone();
    }
    ty
}

/// A daemon (no agent) trusting `sshd`, and an SSH session on it; returns the session's id.
async fn daemon_with_ssh_session(sshd: &Sshd) -> (Daemon, Value) {
    let daemon = Daemon::start_with_env(&[], &[]).await;
    sshd.trust(daemon.dir.path());
    let mut line = daemon.line().await;
    let id = line
        .ok("create_session", json!({"type": ssh_type(sshd, json!({}))}))
        .await["session_id"]
        .clone();
    (daemon, id)
}

/// The daemon user's `known_hosts`.
fn known_hosts(daemon: &Daemon) -> PathBuf {
    daemon.dir.path().join(".ssh/known_hosts")
}

/// Waits until session `id` has stopped.
async fn wait_stopped(line: &mut LineClient, id: &Value) {
    let deadline = Deadline::start();
    loop {
        deadline.check("the session to stop");
        let info = line.ok("get_session", json!({"session_id": id})).await;
        if info["state"] == "stopped" {
            return;
        }
        line.ok(
            "receive_output",
            json!({"session_id": id, "since": info["output_offset"], "timeout_ms": 100}),
        )
        .await;
    }
}

/// The master of a fresh pseudo-terminal, and its slave's path: a device that exists and
/// that the daemon could open as a serial line.
fn pty_device() -> (OwnedFd, PathBuf) {
    let master = nix::pty::posix_openpt(OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC)
        .expect("open a pty master");
    nix::pty::grantpt(&master).expect("grantpt");
    nix::pty::unlockpt(&master).expect("unlockpt");
    let path = PathBuf::from(nix::pty::ptsname_r(&master).expect("ptsname"));
    // SAFETY: `into_raw_fd` hands over sole ownership of the descriptor.
    let master = unsafe { OwnedFd::from_raw_fd(master.into_raw_fd()) };
    (master, path)
}

fn path_value(path: &Path) -> Value {
    json!(path.to_str().expect("UTF-8 path"))
}

// ---------------------------------------------------------------------------------------------
// JSON-RPC's own codes

#[tokio::test]
async fn code_minus_32700_a_line_that_is_not_json() {
    let daemon = Daemon::start().await;
    let mut line = daemon.line().await;
    line.send_raw(b"{this is not json\n").await;
    let response = line.read().await.expect("an answer");
    assert_error_without_data(&response["error"], code::PARSE_ERROR);
    assert_eq!(response["id"], Value::Null, "{response}");
}

#[tokio::test]
async fn code_minus_32600_an_empty_batch() {
    let daemon = Daemon::start().await;
    let mut line = daemon.line().await;
    let response = line.request(json!([])).await;
    assert_error_without_data(&response["error"], code::INVALID_REQUEST);
    assert_eq!(response["id"], Value::Null, "{response}");
}

#[tokio::test]
async fn code_minus_32601_an_unknown_method() {
    let daemon = Daemon::start().await;
    let mut line = daemon.line().await;
    let err = line.err("frobnicate", json!({})).await;
    assert_error_without_data(&err, code::METHOD_NOT_FOUND);
}

#[tokio::test]
async fn code_minus_32602_a_parameter_out_of_range_names_the_field() {
    let daemon = Daemon::start().await;
    let mut line = daemon.line().await;
    let id = line.create_cat().await["session_id"].clone();
    let err = line
        .err(
            "resize_terminal",
            json!({"session_id": id, "cols": 0, "rows": 24}),
        )
        .await;
    assert_error(&err, code::INVALID_PARAMS, json!({"field": "cols"}));
}

#[tokio::test]
#[cfg_attr(no_openssh, ignore = "needs OpenSSH (sshd, ssh-keygen)")]
async fn code_minus_32602_a_forward_on_a_non_loopback_address_names_the_session_and_field() {
    let sshd = Sshd::start();
    let (daemon, id) = daemon_with_ssh_session(&sshd).await;
    let mut line = daemon.line().await;
    let err = line
        .err(
            "add_forward",
            json!({"session_id": id, "kind": "dynamic", "listen": "0.0.0.0:0"}),
        )
        .await;
    assert_error(
        &err,
        code::INVALID_PARAMS,
        json!({"session_id": id, "field": "listen"}),
    );
}

#[tokio::test]
async fn code_minus_32602_a_missing_parameter_is_named_in_the_parsers_text() {
    let daemon = Daemon::start().await;
    let mut line = daemon.line().await;
    let err = line.err("get_session", json!({})).await;
    assert_eq!(err["code"], code::INVALID_PARAMS, "{err}");
    // One of the two documented exceptions to `data` being an object.
    let text = err["data"].as_str().unwrap_or_else(|| panic!("{err}"));
    assert!(text.contains("missing field `session_id`"), "{err}");
}

#[tokio::test]
async fn code_minus_32007_a_line_request_over_max_request_bytes() {
    let daemon = Daemon::start_with(&[("MAX_REQUEST_BYTES", "8192")]).await;
    let mut line = daemon.line().await;
    let huge = json!({"jsonrpc": "2.0", "id": 1, "method": "get_status",
                      "params": {"pad": "x".repeat(20_000)}});
    line.send_raw(format!("{huge}\n").as_bytes()).await;
    let response = line.read().await.expect("an answer");
    assert_error(
        &response["error"],
        code::OVERSIZED_REQUEST,
        json!({"limit": 8192}),
    );
}

// ---------------------------------------------------------------------------------------------
// Sessions

#[tokio::test]
async fn code_1001_an_unknown_session_id() {
    let daemon = Daemon::start().await;
    let mut line = daemon.line().await;
    let unknown = uuid::Uuid::new_v4().to_string();
    let err = line
        .err("get_session", json!({"session_id": unknown}))
        .await;
    assert_error(
        &err,
        code::SESSION_NOT_FOUND,
        json!({"session_id": unknown}),
    );
}

#[tokio::test]
async fn code_1002_a_name_held_by_a_live_session() {
    let daemon = Daemon::start().await;
    let mut line = daemon.line().await;
    let cat = json!({"kind": "local", "command": ["/bin/cat"]});
    let first = line
        .ok("create_session", json!({"name": NAME, "type": cat}))
        .await;
    let err = create_named_err(&mut line, cat).await;
    assert_error(
        &err,
        code::SESSION_EXISTS,
        json!({"name": NAME, "session_id": first["session_id"]}),
    );
}

#[tokio::test]
async fn code_1003_input_to_a_stopped_session() {
    let daemon = Daemon::start().await;
    let mut line = daemon.line().await;
    let id = line
        .ok(
            "create_session",
            json!({"type": {"kind": "local", "command": ["/bin/true"]}}),
        )
        .await["session_id"]
        .clone();
    wait_stopped(&mut line, &id).await;
    let err = line
        .err(
            "send_input",
            json!({"session_id": id, "data": b64(b"late\n")}),
        )
        .await;
    assert_error(
        &err,
        code::INVALID_STATE,
        json!({"session_id": id, "state": "stopped"}),
    );
}

#[tokio::test]
async fn code_1004_a_session_beyond_max_sessions() {
    let daemon = Daemon::start_with(&[("MAX_SESSIONS", "1")]).await;
    let mut line = daemon.line().await;
    line.create_cat().await;
    let err = line
        .err(
            "create_session",
            json!({"type": {"kind": "local", "command": ["/bin/cat"]}}),
        )
        .await;
    assert_error(
        &err,
        code::LIMIT_REACHED,
        json!({"limit": "max_sessions", "max": 1}),
    );
}

#[tokio::test]
async fn code_1005_a_program_that_cannot_start() {
    let daemon = Daemon::start().await;
    let mut line = daemon.line().await;
    let err = create_named_err(
        &mut line,
        json!({"kind": "local", "command": ["/no/such/program"]}),
    )
    .await;
    assert_error(&err, code::BACKEND_ERROR, json!({"name": NAME}));
}

#[tokio::test]
async fn code_1005_a_serial_device_in_use_names_the_device() {
    let (_master, device) = pty_device();
    let daemon = Daemon::start().await;
    let mut line = daemon.line().await;
    let serial = json!({"kind": "serial", "device": device});
    line.ok("create_session", json!({"type": serial})).await;
    let err = create_named_err(&mut line, serial).await;
    assert_error(
        &err,
        code::BACKEND_ERROR,
        json!({"name": NAME, "device": path_value(&device)}),
    );
}

#[tokio::test]
async fn code_1006_detach_of_a_client_that_is_not_attached() {
    let daemon = Daemon::start().await;
    let mut line = daemon.line().await;
    let id = line.create_cat().await["session_id"].clone();
    let err = line
        .err(
            "detach_session",
            json!({"session_id": id, "client_id": "ghost"}),
        )
        .await;
    assert_error(
        &err,
        code::CLIENT_NOT_ATTACHED,
        json!({"session_id": id, "client_id": "ghost"}),
    );
}

#[tokio::test]
async fn code_1007_input_from_a_read_only_client() {
    let daemon = Daemon::start().await;
    let mut line = daemon.line().await;
    let id = line.create_cat().await["session_id"].clone();
    line.ok(
        "attach_session",
        json!({"session_id": id, "client_id": "viewer", "mode": "read_only"}),
    )
    .await;
    let err = line
        .err(
            "send_input",
            json!({"session_id": id, "data": b64(b"x"), "client_id": "viewer"}),
        )
        .await;
    assert_error(
        &err,
        code::READ_ONLY,
        json!({"session_id": id, "client_id": "viewer"}),
    );
}

// ---------------------------------------------------------------------------------------------
// Serial devices

#[tokio::test]
async fn code_1008_a_serial_device_that_does_not_exist() {
    let daemon = Daemon::start().await;
    let device = daemon.dir.path().join("ttyNOSUCH");
    let mut line = daemon.line().await;
    let err = create_named_err(&mut line, json!({"kind": "serial", "device": device})).await;
    assert_error(
        &err,
        code::DEVICE_NOT_FOUND,
        json!({"device": path_value(&device), "name": NAME}),
    );
}

#[tokio::test]
async fn code_1009_a_serial_device_the_daemon_may_not_open() {
    let (_master, device) = pty_device();
    std::fs::set_permissions(&device, std::fs::Permissions::from_mode(0o000))
        .expect("chmod 000 the device");
    let daemon = Daemon::start_without_permission_override(&[]).await;
    let mut line = daemon.line().await;
    let err = create_named_err(&mut line, json!({"kind": "serial", "device": device})).await;
    assert_error(
        &err,
        code::DEVICE_PERMISSION_DENIED,
        json!({"device": path_value(&device), "name": NAME}),
    );
}

// ---------------------------------------------------------------------------------------------
// SSH connections

#[tokio::test]
async fn code_1010_nothing_listening_on_the_ssh_port() {
    let daemon = Daemon::start_with_env(&[], &[]).await;
    let mut line = daemon.line().await;
    let port = free_port();
    let err = create_named_err(
        &mut line,
        json!({"kind": "ssh", "host": "127.0.0.1", "port": port}),
    )
    .await;
    assert_error(
        &err,
        code::SSH_CONNECTION_REFUSED,
        json!({"name": NAME, "host": "127.0.0.1", "port": port}),
    );
}

#[tokio::test]
async fn code_1011_a_server_silent_past_the_connect_timeout() {
    // Accepts the TCP connection, then says nothing.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let daemon = Daemon::start_with_env(&[("SSH_CONNECT_TIMEOUT_MS", "300")], &[]).await;
    let mut line = daemon.line().await;
    let err = create_named_err(
        &mut line,
        json!({"kind": "ssh", "host": "127.0.0.1", "port": port}),
    )
    .await;
    assert_error(
        &err,
        code::SSH_TIMEOUT,
        json!({"name": NAME, "host": "127.0.0.1", "port": port, "timeout_ms": 300}),
    );
    drop(listener);
}

#[tokio::test]
async fn code_1012_a_host_name_that_does_not_resolve() {
    // A label over 63 characters: the resolver refuses it without sending a query anywhere.
    let host = format!("{}.invalid", "n".repeat(70));
    let daemon = Daemon::start_with_env(&[], &[]).await;
    let mut line = daemon.line().await;
    let err = create_named_err(&mut line, json!({"kind": "ssh", "host": host})).await;
    assert_error(
        &err,
        code::SSH_HOST_NOT_FOUND,
        json!({"name": NAME, "host": host, "port": 22}),
    );
}

#[tokio::test]
#[cfg_attr(no_openssh, ignore = "needs OpenSSH (sshd, ssh-keygen)")]
async fn code_1013_a_wrong_password() {
    let sshd = Sshd::start();
    let daemon = Daemon::start_with_env(&[], &[]).await;
    sshd.trust(daemon.dir.path());
    let mut line = daemon.line().await;
    let ty = ssh_type(
        &sshd,
        json!({"auth": {"agent": false, "password": "not-the-Password-31337"}}),
    );
    let err = create_named_err(&mut line, ty).await;
    assert_error(
        &err,
        code::SSH_AUTH_FAILED,
        json!({"name": NAME, "host": "127.0.0.1", "port": sshd.port, "user": TEST_USER,
               "tried": ["password"], "notes": []}),
    );
}

#[tokio::test]
#[cfg_attr(no_openssh, ignore = "needs OpenSSH (sshd, ssh-keygen)")]
async fn code_1014_a_host_not_in_known_hosts() {
    let sshd = Sshd::start();
    let daemon = Daemon::start_with_env(&[], &[]).await;
    let mut line = daemon.line().await;
    let err = create_named_err(&mut line, ssh_type(&sshd, json!({}))).await;
    assert_error(
        &err,
        code::SSH_UNKNOWN_HOST_KEY,
        json!({"name": NAME, "host": "127.0.0.1", "port": sshd.port,
               "key_type": "ssh-ed25519", "fingerprint": sshd.fingerprint(),
               "known_hosts": path_value(&known_hosts(&daemon))}),
    );
}

#[tokio::test]
#[cfg_attr(no_openssh, ignore = "needs OpenSSH (sshd, ssh-keygen)")]
async fn code_1015_a_host_key_other_than_the_one_in_known_hosts() {
    let sshd = Sshd::start();
    let daemon = Daemon::start_with_env(&[], &[]).await;
    // The key on record is another one: as if the server had been replaced.
    let impostor = daemon.dir.path().join("impostor");
    keygen(&impostor, "");
    let public = std::fs::read_to_string(impostor.with_extension("pub")).unwrap();
    let mut fields = public.split_whitespace();
    let (kind, key) = (fields.next().unwrap(), fields.next().unwrap());
    std::fs::create_dir_all(daemon.dir.path().join(".ssh")).unwrap();
    std::fs::write(
        known_hosts(&daemon),
        format!("[127.0.0.1]:{} {kind} {key}\n", sshd.port),
    )
    .unwrap();
    let expected = pulsar_e2e::sshd::run(
        "ssh-keygen",
        &["-l", "-f", impostor.with_extension("pub").to_str().unwrap()],
    )
    .split_whitespace()
    .nth(1)
    .unwrap()
    .to_owned();
    let mut line = daemon.line().await;
    let err = create_named_err(&mut line, ssh_type(&sshd, json!({}))).await;
    assert_error(
        &err,
        code::SSH_HOST_KEY_CHANGED,
        json!({"name": NAME, "host": "127.0.0.1", "port": sshd.port,
               "known_hosts": path_value(&known_hosts(&daemon)), "line": 1,
               "expected_fingerprint": expected, "fingerprint": sshd.fingerprint()}),
    );
}

#[tokio::test]
#[cfg_attr(no_openssh, ignore = "needs OpenSSH (sshd, ssh-keygen)")]
async fn code_1015_a_host_key_marked_revoked_in_known_hosts() {
    let sshd = Sshd::start();
    let daemon = Daemon::start_with_env(&[], &[]).await;
    std::fs::create_dir_all(daemon.dir.path().join(".ssh")).unwrap();
    std::fs::write(
        known_hosts(&daemon),
        format!("@revoked {}", sshd.known_hosts_line()),
    )
    .unwrap();
    let mut line = daemon.line().await;
    let err = create_named_err(&mut line, ssh_type(&sshd, json!({}))).await;
    assert_error(
        &err,
        code::SSH_HOST_KEY_CHANGED,
        json!({"name": NAME, "host": "127.0.0.1", "port": sshd.port,
               "known_hosts": path_value(&known_hosts(&daemon)), "line": 1,
               "key_type": "ssh-ed25519", "fingerprint": sshd.fingerprint(), "revoked": true}),
    );
}

#[tokio::test]
async fn code_1016_a_server_that_does_not_speak_ssh() {
    // Answers the connection with an HTTP error instead of an SSH banner, then hangs up.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = std::thread::spawn(move || {
        if let Ok((mut stream, _)) = listener.accept() {
            let _ = std::io::Write::write_all(&mut stream, b"HTTP/1.1 400 Bad Request\r\n\r\n");
        }
    });
    let daemon = Daemon::start_with_env(&[], &[]).await;
    let mut line = daemon.line().await;
    let err = create_named_err(
        &mut line,
        json!({"kind": "ssh", "host": "127.0.0.1", "port": port}),
    )
    .await;
    assert_error(
        &err,
        code::SSH_CONNECTION_FAILED,
        json!({"name": NAME, "host": "127.0.0.1", "port": port}),
    );
    server.join().unwrap();
}

#[tokio::test]
async fn code_1033_an_ssh_config_with_a_bad_value() {
    let daemon = Daemon::start_with_env(&[], &[]).await;
    let dir = daemon.dir.path().join(".ssh");
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("config");
    std::fs::write(&config, "Host web\n  Port many\n").unwrap();
    let mut line = daemon.line().await;
    let err = create_named_err(&mut line, json!({"kind": "ssh", "host": "web"})).await;
    assert_error(
        &err,
        code::SSH_CONFIG_INVALID,
        json!({"name": NAME, "config_file": path_value(&config)}),
    );
}

// ---------------------------------------------------------------------------------------------
// The daemon, workspaces, waits

#[tokio::test]
async fn code_1020_a_wait_in_flight_when_the_daemon_stops() {
    let daemon = Daemon::start().await;
    let mut line = daemon.line().await;
    let id = line.create_cat().await["session_id"].clone();
    let wait = json!({"jsonrpc": "2.0", "id": 99, "method": "wait_for_output",
                      "params": {"session_id": id, "pattern": "never", "timeout_ms": 600_000}});
    line.send_raw(format!("{wait}\n").as_bytes()).await;
    // The wait is in flight once a later request on the connection is answered.
    line.ok("get_status", json!({})).await;
    let status = daemon.stop();
    assert!(status.success(), "{status:?}");
    let answer = line.read().await.expect("the wait's answer");
    assert_eq!(answer["id"], 99, "{answer}");
    assert_error(&answer["error"], code::DAEMON_STOPPING, json!({}));
}

#[tokio::test]
async fn code_1021_a_snapshot_of_an_unknown_workspace() {
    let daemon = Daemon::start().await;
    let mut line = daemon.line().await;
    let unknown = uuid::Uuid::new_v4().to_string();
    let err = line
        .err(
            "workspace_save_snapshot",
            json!({"workspace_id": unknown, "name": "before"}),
        )
        .await;
    assert_error(
        &err,
        code::WORKSPACE_NOT_FOUND,
        json!({"workspace_id": unknown}),
    );
}

#[tokio::test]
async fn code_1022_an_upgrade_to_a_binary_that_does_not_exist() {
    let daemon = Daemon::start().await;
    let mut line = daemon.line().await;
    let binary = daemon.dir.path().join("no-such-pulsar");
    let err = line.err("upgrade_daemon", json!({"binary": binary})).await;
    assert_error(
        &err,
        code::UPGRADE_FAILED,
        json!({"binary": path_value(&binary)}),
    );
    line.ok("get_status", json!({})).await;
}

#[tokio::test]
async fn code_1023_a_wait_for_output_that_does_not_match_in_time() {
    let daemon = Daemon::start().await;
    let mut line = daemon.line().await;
    let id = line.create_cat().await["session_id"].clone();
    let err = line
        .err(
            "wait_for_output",
            json!({"session_id": id, "pattern": "never", "timeout_ms": 100}),
        )
        .await;
    assert_error(
        &err,
        code::WAIT_TIMEOUT,
        json!({"session_id": id, "timeout_ms": 100, "offset": 0}),
    );
}

// ---------------------------------------------------------------------------------------------
// Port forwards

#[tokio::test]
#[cfg_attr(no_openssh, ignore = "needs OpenSSH (sshd, ssh-keygen)")]
async fn code_1024_a_local_forward_on_an_address_in_use() {
    let sshd = Sshd::start();
    let (daemon, id) = daemon_with_ssh_session(&sshd).await;
    let mut line = daemon.line().await;
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let listen = taken.local_addr().unwrap().to_string();
    let err = line
        .err(
            "add_forward",
            json!({"session_id": id, "kind": "local", "listen": listen, "target": "127.0.0.1:1"}),
        )
        .await;
    assert_error(
        &err,
        code::FORWARD_ADDRESS_IN_USE,
        json!({"session_id": id, "listen": listen}),
    );
}

#[tokio::test]
#[cfg_attr(no_openssh, ignore = "needs OpenSSH (sshd, ssh-keygen)")]
async fn code_1025_a_remote_forward_the_server_refuses() {
    let sshd = Sshd::start();
    let (daemon, id) = daemon_with_ssh_session(&sshd).await;
    let mut line = daemon.line().await;
    // A privileged port: OpenSSH refuses it to a user other than root.
    let err = line
        .err(
            "add_forward",
            json!({"session_id": id, "kind": "remote", "listen": "1023", "target": "127.0.0.1:1"}),
        )
        .await;
    assert_error(
        &err,
        code::FORWARD_REFUSED,
        json!({"session_id": id, "listen": "127.0.0.1:1023"}),
    );
}

#[tokio::test]
async fn code_1026_a_forward_on_a_session_that_is_not_ssh() {
    let daemon = Daemon::start().await;
    let mut line = daemon.line().await;
    let id = line.create_cat().await["session_id"].clone();
    let err = line
        .err(
            "add_forward",
            json!({"session_id": id, "kind": "dynamic", "listen": "0"}),
        )
        .await;
    assert_error(&err, code::FORWARD_NOT_SUPPORTED, json!({"session_id": id}));
}

#[tokio::test]
async fn code_1027_removing_an_unknown_forward() {
    let daemon = Daemon::start().await;
    let mut line = daemon.line().await;
    let forward_id = uuid::Uuid::new_v4().to_string();
    let err = line
        .err("remove_forward", json!({"forward_id": forward_id}))
        .await;
    assert_error(
        &err,
        code::FORWARD_NOT_FOUND,
        json!({"forward_id": forward_id}),
    );
}

// ---------------------------------------------------------------------------------------------
// Resource limits

#[tokio::test]
async fn code_1028_a_memory_limit_on_an_ssh_session() {
    let daemon = Daemon::start().await;
    let mut line = daemon.line().await;
    let err = line
        .err(
            "create_session",
            json!({"name": NAME, "type": {"kind": "ssh", "host": "127.0.0.1", "port": 1},
                   "limits": {"memory_max": 64 * 1024 * 1024}}),
        )
        .await;
    assert_error(
        &err,
        code::LIMIT_NOT_APPLICABLE,
        json!({"field": "limits.memory_max", "kind": "ssh", "name": NAME}),
    );
}

#[tokio::test]
async fn code_1029_a_pids_limit_no_mechanism_can_hold() {
    // SAFETY: geteuid cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: only root has no fallback for pids_max (RLIMIT_NPROC binds others)");
        return;
    }
    let daemon = Daemon::start_with(&[("LIMITS_CGROUPS", "false")]).await;
    let mut line = daemon.line().await;
    let err = line
        .err(
            "create_session",
            json!({"name": NAME, "type": {"kind": "local", "command": ["/bin/cat"]},
                   "limits": {"pids_max": 5}}),
        )
        .await;
    assert_error(
        &err,
        code::LIMIT_UNAVAILABLE,
        json!({"field": "limits.pids_max", "name": NAME}),
    );
}

// ---------------------------------------------------------------------------------------------
// Recordings

#[tokio::test]
async fn code_1030_start_recording_of_a_session_that_is_recording() {
    let daemon = Daemon::start().await;
    let mut line = daemon.line().await;
    let id = line.create_cat().await["session_id"].clone();
    let path = daemon.dir.path().join("first.cast");
    line.ok("start_recording", json!({"session_id": id, "path": path}))
        .await;
    let err = line
        .err(
            "start_recording",
            json!({"session_id": id, "path": daemon.dir.path().join("second.cast")}),
        )
        .await;
    assert_error(
        &err,
        code::RECORDING_ACTIVE,
        json!({"session_id": id, "path": path_value(&path)}),
    );
}

#[tokio::test]
async fn code_1031_stop_recording_of_a_session_that_is_not_recording() {
    let daemon = Daemon::start().await;
    let mut line = daemon.line().await;
    let id = line.create_cat().await["session_id"].clone();
    let err = line.err("stop_recording", json!({"session_id": id})).await;
    assert_error(&err, code::NOT_RECORDING, json!({"session_id": id}));
}

#[tokio::test]
async fn code_1032_a_recording_file_that_exists() {
    let daemon = Daemon::start().await;
    let mut line = daemon.line().await;
    let id = line.create_cat().await["session_id"].clone();
    let existing = daemon.dir.path().join("exists.cast");
    std::fs::write(&existing, "keep me").unwrap();
    let err = line
        .err(
            "start_recording",
            json!({"session_id": id, "path": existing}),
        )
        .await;
    assert_error(
        &err,
        code::RECORDING_FILE_FAILED,
        json!({"session_id": id, "path": path_value(&existing)}),
    );
}

// ---------------------------------------------------------------------------------------------
// File transfers

#[tokio::test]
async fn code_1036_an_unknown_transfer() {
    let daemon = Daemon::start().await;
    let mut line = daemon.line().await;
    let transfer_id = uuid::Uuid::new_v4().to_string();
    let err = line
        .err("get_transfer", json!({"transfer_id": transfer_id}))
        .await;
    assert_error(
        &err,
        code::TRANSFER_NOT_FOUND,
        json!({"transfer_id": transfer_id}),
    );
}

#[tokio::test]
#[cfg_attr(no_openssh, ignore = "needs OpenSSH (sshd, ssh-keygen)")]
async fn code_1037_a_download_onto_a_file_that_exists() {
    let sshd = Sshd::start();
    let (daemon, id) = daemon_with_ssh_session(&sshd).await;
    let mut line = daemon.line().await;
    let local = daemon.dir.path().join("kept.txt");
    std::fs::write(&local, "kept").unwrap();
    let err = line
        .err(
            "start_transfer",
            json!({"session_id": id, "direction": "download",
                   "local_path": local, "remote_path": "/etc/hostname"}),
        )
        .await;
    assert_error(
        &err,
        code::TRANSFER_DESTINATION_EXISTS,
        json!({"session_id": id, "path": path_value(&local)}),
    );
    assert_eq!(std::fs::read_to_string(&local).unwrap(), "kept");
}

#[tokio::test]
async fn code_1038_a_transfer_on_a_session_that_is_not_ssh() {
    let daemon = Daemon::start().await;
    let mut line = daemon.line().await;
    let id = line.create_cat().await["session_id"].clone();
    let err = line
        .err(
            "start_transfer",
            json!({"session_id": id, "direction": "download",
                   "local_path": daemon.dir.path().join("x"), "remote_path": "x"}),
        )
        .await;
    assert_error(
        &err,
        code::TRANSFER_FAILED,
        json!({"session_id": id, "kind": "local"}),
    );
}
