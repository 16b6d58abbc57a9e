//! SSH sessions end to end, against a real OpenSSH server each test starts on 127.0.0.1 with
//! throwaway keys (`pulsar_e2e::sshd`), or against an SSH server inside the test process.
//! Without OpenSSH the tests that need it are compiled as ignored (`tests/build.rs`), so the
//! summary counts them as skipped; `PULSAR_REQUIRE_SSHD=1` (as CI sets) runs them anyway.

use std::io::Read as _;
use std::net::TcpListener;
use std::path::Path;

use pulsar_e2e::sshd::{Agent, Sshd, TEST_PASSWORD, TEST_USER, free_port, keygen};
use pulsar_e2e::*;
use pulsar_protocol::error as code;
use pulsar_protocol::{PulsarApiClient as _, SessionEvent};
use serde_json::{Value, json};

/// An SSH `type` for `sshd` as the test user, with its authorized key and no agent; `extra`
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

async fn create(line: &mut LineClient, ty: Value) -> Value {
    line.ok("create_session", json!({"type": ty})).await
}

async fn create_err(line: &mut LineClient, ty: Value) -> Value {
    line.err("create_session", json!({"type": ty})).await
}

/// A `create_session` of `ty` named [`NAMED`] that must fail; returns the error.
async fn create_named_err(line: &mut LineClient, ty: Value) -> Value {
    line.err("create_session", json!({"name": NAMED, "type": ty}))
        .await
}

/// The name the error tests give their sessions, so that `data.name` can be checked.
const NAMED: &str = "target";

/// Waits for session `id` to stop; returns its info.
async fn stopped(line: &mut LineClient, id: &Value) -> Value {
    let deadline = Deadline::start();
    loop {
        deadline.check("the session to stop");
        let info = line.ok("get_session", json!({"session_id": id})).await;
        if info["state"] == "stopped" {
            return info;
        }
        line.ok(
            "receive_output",
            json!({"session_id": id, "since": info["output_offset"], "timeout_ms": 200}),
        )
        .await;
    }
}

/// Reads session `id`'s output from offset 0 until `needle` appears, checking that offsets
/// are contiguous; returns all of it.
async fn output_until(line: &mut LineClient, id: &Value, needle: &str) -> String {
    let deadline = Deadline::start();
    let mut seen = Vec::new();
    let mut next = 0u64;
    while !String::from_utf8_lossy(&seen).contains(needle) {
        deadline.check(needle);
        let out = line
            .ok(
                "receive_output",
                json!({"session_id": id, "since": next, "timeout_ms": 200}),
            )
            .await;
        assert_eq!(out["offset"], next, "output offsets are contiguous");
        seen.extend(unb64(out["data"].as_str().expect("data")));
        next = out["next_offset"].as_u64().expect("next_offset");
    }
    String::from_utf8_lossy(&seen).into_owned()
}

async fn type_in(line: &mut LineClient, id: &Value, text: &str) {
    line.ok(
        "send_input",
        json!({"session_id": id, "data": b64(text.as_bytes())}),
    )
    .await;
}

fn known_hosts(daemon: &Daemon) -> std::path::PathBuf {
    daemon.dir.path().join(".ssh/known_hosts")
}

#[tokio::test]
#[cfg_attr(no_openssh, ignore = "needs OpenSSH (sshd, ssh-keygen)")]
async fn key_auth_runs_a_remote_shell_that_answers_input() {
    let sshd = Sshd::start();
    let daemon = Daemon::start_with_env(&[], &[]).await;
    sshd.trust(daemon.dir.path());
    let mut line = daemon.line().await;
    let created = create(&mut line, ssh_type(&sshd, json!({}))).await;
    assert_eq!(created["type"]["kind"], "ssh", "{created}");
    assert_eq!(created["state"], "detached");
    assert!(created.get("pid").is_none(), "no local process: {created}");
    let id = created["session_id"].clone();
    type_in(&mut line, &id, "echo $((6 * 7))-$TERM\n").await;
    output_until(&mut line, &id, "42-xterm-256color").await;
}

#[tokio::test]
#[cfg_attr(no_openssh, ignore = "needs OpenSSH (sshd, ssh-keygen)")]
async fn agent_auth_uses_the_key_held_by_ssh_agent() {
    let sshd = Sshd::start();
    let agent = Agent::start(&[&sshd.client_key]);
    let daemon = Daemon::start_with_env(&[], &[("SSH_AUTH_SOCK", &agent.socket)]).await;
    sshd.trust(daemon.dir.path());
    let mut line = daemon.line().await;
    // No key files and no password: only the agent can log in.
    let ty = json!({"kind": "ssh", "host": "127.0.0.1", "port": sshd.port, "user": TEST_USER,
                    "command": "echo agent-$((40 + 2))"});
    let id = create(&mut line, ty).await["session_id"].clone();
    output_until(&mut line, &id, "agent-42").await;
}

#[tokio::test]
#[cfg_attr(no_openssh, ignore = "needs OpenSSH (sshd, ssh-keygen)")]
async fn password_auth_uses_the_password_given_at_create() {
    let sshd = Sshd::start();
    let daemon = Daemon::start_with_env(&[], &[]).await;
    sshd.trust(daemon.dir.path());
    let mut line = daemon.line().await;
    let ty = ssh_type(
        &sshd,
        json!({"auth": {"agent": false, "password": TEST_PASSWORD},
               "command": "echo password-$((40 + 2))"}),
    );
    let id = create(&mut line, ty).await["session_id"].clone();
    output_until(&mut line, &id, "password-42").await;
}

#[tokio::test]
#[cfg_attr(no_openssh, ignore = "needs OpenSSH (sshd, ssh-keygen)")]
async fn encrypted_key_is_unlocked_with_the_passphrase_given_at_create() {
    let sshd = Sshd::start();
    let key = sshd.add_encrypted_key("correct horse battery");
    let daemon = Daemon::start_with_env(&[], &[]).await;
    sshd.trust(daemon.dir.path());
    let mut line = daemon.line().await;
    let ty = ssh_type(
        &sshd,
        json!({"auth": {"agent": false, "key_files": [key], "passphrase": "correct horse battery"},
               "command": "echo unlocked"}),
    );
    let id = create(&mut line, ty).await["session_id"].clone();
    output_until(&mut line, &id, "unlocked").await;
}

#[tokio::test]
#[cfg_attr(no_openssh, ignore = "needs OpenSSH (sshd, ssh-keygen)")]
async fn error_wrong_password_is_1013_naming_what_was_tried_but_not_the_password() {
    let sshd = Sshd::start();
    let daemon = Daemon::start_with_env(&[], &[]).await;
    sshd.trust(daemon.dir.path());
    let mut line = daemon.line().await;
    let wrong = "not-the-Password-31337";
    let err = create_err(
        &mut line,
        ssh_type(&sshd, json!({"auth": {"agent": false, "password": wrong}})),
    )
    .await;
    assert_eq!(err["code"], code::SSH_AUTH_FAILED, "{err}");
    assert_eq!(err["data"]["host"], "127.0.0.1", "{err}");
    assert_eq!(err["data"]["port"], sshd.port, "{err}");
    assert_eq!(err["data"]["user"], TEST_USER, "{err}");
    assert!(
        err["data"]["tried"]
            .as_array()
            .unwrap()
            .contains(&json!("password")),
        "{err}"
    );
    let message = err["message"].as_str().unwrap();
    assert!(
        message.contains("127.0.0.1") && message.contains("password"),
        "{message}"
    );
    assert!(!err.to_string().contains(wrong), "{err}");
    assert!(!daemon.log().contains(wrong), "the log has the password");
}

#[tokio::test]
#[cfg_attr(no_openssh, ignore = "needs OpenSSH (sshd, ssh-keygen)")]
async fn error_unknown_host_is_1014_with_its_fingerprint_and_nothing_is_remembered() {
    let sshd = Sshd::start();
    let daemon = Daemon::start_with_env(&[], &[]).await;
    let mut line = daemon.line().await;
    let err = create_err(&mut line, ssh_type(&sshd, json!({}))).await;
    assert_eq!(err["code"], code::SSH_UNKNOWN_HOST_KEY, "{err}");
    let fingerprint = sshd.fingerprint();
    assert!(fingerprint.starts_with("SHA256:"), "{fingerprint}");
    assert_eq!(err["data"]["fingerprint"], fingerprint, "{err}");
    assert_eq!(err["data"]["key_type"], "ssh-ed25519", "{err}");
    assert!(
        err["message"].as_str().unwrap().contains(&fingerprint),
        "{err}"
    );
    assert!(!known_hosts(&daemon).exists(), "nothing was added");
}

#[tokio::test]
#[cfg_attr(no_openssh, ignore = "needs OpenSSH (sshd, ssh-keygen)")]
async fn accept_new_host_key_remembers_the_host_for_the_next_session() {
    let sshd = Sshd::start();
    let daemon = Daemon::start_with_env(&[], &[]).await;
    let mut line = daemon.line().await;
    let first = create(
        &mut line,
        ssh_type(
            &sshd,
            json!({"accept_new_host_key": true, "command": "echo first"}),
        ),
    )
    .await;
    output_until(&mut line, &first["session_id"], "first").await;
    let recorded = std::fs::read_to_string(known_hosts(&daemon)).expect("known_hosts written");
    assert_eq!(recorded, sshd.known_hosts_line());
    let second = create(
        &mut line,
        ssh_type(&sshd, json!({"command": "echo second"})),
    )
    .await;
    output_until(&mut line, &second["session_id"], "second").await;
}

#[tokio::test]
#[cfg_attr(no_openssh, ignore = "needs OpenSSH (sshd, ssh-keygen)")]
async fn a_known_hosts_file_the_daemon_creates_is_private_to_its_user() {
    use std::os::unix::fs::PermissionsExt as _;
    let sshd = Sshd::start();
    let daemon = Daemon::start_with_env(&[], &[]).await;
    let mut line = daemon.line().await;
    let created = create(
        &mut line,
        ssh_type(
            &sshd,
            json!({"accept_new_host_key": true, "command": "echo added"}),
        ),
    )
    .await;
    output_until(&mut line, &created["session_id"], "added").await;
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    let file = known_hosts(&daemon);
    assert_eq!(mode(&file), 0o600, "{}", file.display());
    assert_eq!(mode(file.parent().unwrap()), 0o700);
}

#[tokio::test]
#[cfg_attr(no_openssh, ignore = "needs OpenSSH (sshd, ssh-keygen)")]
async fn config_can_accept_new_host_keys_and_name_the_key_files() {
    let sshd = Sshd::start();
    let key_files = format!("[{:?}]", sshd.client_key.display().to_string());
    let daemon = Daemon::start_with_env(
        &[
            ("SSH_ACCEPT_NEW_HOST_KEYS", "true"),
            ("SSH_KEY_FILES", &key_files),
        ],
        &[],
    )
    .await;
    let mut line = daemon.line().await;
    // No auth and no accept_new_host_key in the request: both come from the config.
    let ty = json!({"kind": "ssh", "host": "127.0.0.1", "port": sshd.port, "user": TEST_USER,
                    "command": "echo configured"});
    let id = create(&mut line, ty).await["session_id"].clone();
    output_until(&mut line, &id, "configured").await;
    assert_eq!(
        std::fs::read_to_string(known_hosts(&daemon)).unwrap(),
        sshd.known_hosts_line()
    );
    assert!(
        daemon.log().contains("permanently added the host key"),
        "the log says a key was added"
    );
}

#[tokio::test]
#[cfg_attr(no_openssh, ignore = "needs OpenSSH (sshd, ssh-keygen)")]
async fn error_changed_host_key_is_1015_naming_both_fingerprints_even_with_accept_new() {
    let sshd = Sshd::start();
    let daemon = Daemon::start_with_env(&[], &[]).await;
    // The host's key on record is another one: as if the server had been replaced.
    let impostor = daemon.dir.path().join("impostor");
    keygen(&impostor, "");
    let public = std::fs::read_to_string(impostor.with_extension("pub")).unwrap();
    let mut fields = public.split_whitespace();
    let (kind, key) = (fields.next().unwrap(), fields.next().unwrap());
    std::fs::create_dir_all(daemon.dir.path().join(".ssh")).unwrap();
    let recorded = format!("# keys\n[127.0.0.1]:{} {kind} {key}\n", sshd.port);
    std::fs::write(known_hosts(&daemon), &recorded).unwrap();
    let expected = pulsar_e2e::sshd::run(
        "ssh-keygen",
        &["-l", "-f", impostor.with_extension("pub").to_str().unwrap()],
    )
    .split_whitespace()
    .nth(1)
    .unwrap()
    .to_owned();

    let mut line = daemon.line().await;
    let err = create_err(
        &mut line,
        ssh_type(&sshd, json!({"accept_new_host_key": true})),
    )
    .await;
    assert_eq!(err["code"], code::SSH_HOST_KEY_CHANGED, "{err}");
    assert_eq!(err["data"]["line"], 2, "{err}");
    assert_eq!(err["data"]["expected_fingerprint"], expected, "{err}");
    assert_eq!(err["data"]["fingerprint"], sshd.fingerprint(), "{err}");
    let message = err["message"].as_str().unwrap();
    for needle in [
        "CHANGED",
        "127.0.0.1",
        &expected,
        &sshd.fingerprint(),
        "known_hosts:2",
    ] {
        assert!(
            message.contains(needle),
            "{needle:?} missing from {message}"
        );
    }
    assert_eq!(
        std::fs::read_to_string(known_hosts(&daemon)).unwrap(),
        recorded,
        "the file is left alone"
    );
    assert!(daemon.log().contains("CHANGED"), "the log says so loudly");
}

#[tokio::test]
#[cfg_attr(no_openssh, ignore = "needs OpenSSH (sshd, ssh-keygen)")]
async fn hashed_known_hosts_entries_are_recognised() {
    let sshd = Sshd::start();
    let daemon = Daemon::start_with_env(&[], &[]).await;
    sshd.trust(daemon.dir.path());
    let file = known_hosts(&daemon);
    pulsar_e2e::sshd::run("ssh-keygen", &["-H", "-f", file.to_str().unwrap()]);
    let _ = std::fs::remove_file(file.with_extension("old"));
    let hashed = std::fs::read_to_string(&file).unwrap();
    assert!(hashed.starts_with("|1|"), "{hashed}");
    let mut line = daemon.line().await;
    let id = create(
        &mut line,
        ssh_type(&sshd, json!({"command": "echo hashed-ok"})),
    )
    .await["session_id"]
        .clone();
    output_until(&mut line, &id, "hashed-ok").await;
}

#[tokio::test]
#[cfg_attr(no_openssh, ignore = "needs OpenSSH (sshd, ssh-keygen)")]
async fn resize_reaches_the_remote_terminal() {
    let sshd = Sshd::start();
    let daemon = Daemon::start_with_env(&[], &[]).await;
    sshd.trust(daemon.dir.path());
    let mut line = daemon.line().await;
    let created = line
        .ok(
            "create_session",
            json!({"type": ssh_type(&sshd, json!({"command": "stty size; while read l; do stty size; done"})),
                   "cols": 100, "rows": 30}),
        )
        .await;
    let id = created["session_id"].clone();
    output_until(&mut line, &id, "30 100").await;
    line.ok(
        "resize_terminal",
        json!({"session_id": id, "cols": 132, "rows": 43}),
    )
    .await;
    // The window change travels beside the input: ask again until the new size shows.
    let deadline = Deadline::start();
    let mut next = 0u64;
    let mut text = String::new();
    while !text.contains("43 132") {
        deadline.check("the new size on the remote side");
        type_in(&mut line, &id, "\n").await;
        let out = line
            .ok(
                "receive_output",
                json!({"session_id": id, "since": next, "timeout_ms": 200}),
            )
            .await;
        text.push_str(&String::from_utf8_lossy(&unb64(
            out["data"].as_str().unwrap(),
        )));
        next = out["next_offset"].as_u64().unwrap();
    }
}

#[tokio::test]
#[cfg_attr(no_openssh, ignore = "needs OpenSSH (sshd, ssh-keygen)")]
async fn remote_exit_code_is_the_session_exit_code() {
    let sshd = Sshd::start();
    let daemon = Daemon::start_with_env(&[], &[]).await;
    sshd.trust(daemon.dir.path());
    let mut line = daemon.line().await;
    let id = create(
        &mut line,
        ssh_type(&sshd, json!({"command": "echo bye; exit 7"})),
    )
    .await["session_id"]
        .clone();
    let info = stopped(&mut line, &id).await;
    assert_eq!(info["exit_code"], 7, "{info}");
    assert!(info.get("exit_signal").is_none(), "{info}");
    assert!(
        info.get("reason").is_none(),
        "an exit needs no reason: {info}"
    );
    output_until(&mut line, &id, "bye").await;
}

#[tokio::test]
#[cfg_attr(no_openssh, ignore = "needs OpenSSH (sshd, ssh-keygen)")]
async fn remote_death_by_signal_is_the_session_exit_signal() {
    let sshd = Sshd::start();
    let daemon = Daemon::start_with_env(&[], &[]).await;
    sshd.trust(daemon.dir.path());
    let mut line = daemon.line().await;
    let id = create(
        &mut line,
        ssh_type(&sshd, json!({"command": "kill -TERM $$"})),
    )
    .await["session_id"]
        .clone();
    let info = stopped(&mut line, &id).await;
    assert_eq!(info["exit_signal"], libc::SIGTERM, "{info}");
    assert!(info.get("exit_code").is_none(), "{info}");
}

#[tokio::test]
#[cfg_attr(no_openssh, ignore = "needs OpenSSH (sshd, ssh-keygen)")]
async fn killed_server_stops_the_session_with_a_reason() {
    let mut sshd = Sshd::start();
    let daemon = Daemon::start_with_env(&[], &[]).await;
    sshd.trust(daemon.dir.path());
    let mut line = daemon.line().await;
    let id = create(&mut line, ssh_type(&sshd, json!({}))).await["session_id"].clone();
    type_in(&mut line, &id, "echo alive\n").await;
    output_until(&mut line, &id, "alive").await;
    sshd.kill();
    let info = stopped(&mut line, &id).await;
    let reason = info["reason"].as_str().expect("a dropped session says why");
    assert!(reason.contains("lost"), "{reason}");
    assert!(
        reason.contains(&format!("127.0.0.1:{}", sshd.port)),
        "{reason}"
    );
    assert!(
        info.get("exit_code").is_none() && info.get("exit_signal").is_none(),
        "{info}"
    );
    let err = line
        .err("send_input", json!({"session_id": id, "data": b64(b"x")}))
        .await;
    assert_eq!(err["code"], code::INVALID_STATE, "{err}");
}

#[tokio::test]
#[cfg_attr(no_openssh, ignore = "needs OpenSSH (sshd, ssh-keygen)")]
async fn silent_server_is_dropped_after_unanswered_keepalives() {
    let sshd = Sshd::start();
    let daemon = Daemon::start_with_env(&[("SSH_KEEPALIVE_SECS", "1")], &[]).await;
    sshd.trust(daemon.dir.path());
    let mut line = daemon.line().await;
    let id = create(&mut line, ssh_type(&sshd, json!({}))).await["session_id"].clone();
    type_in(&mut line, &id, "echo alive\n").await;
    output_until(&mut line, &id, "alive").await;
    // The TCP connection stays up; only the answers stop.
    sshd.freeze_connections();
    let info = stopped(&mut line, &id).await;
    let reason = info["reason"].as_str().expect("a reason");
    assert!(reason.contains("keepalive"), "{reason}");
}

#[tokio::test]
#[cfg_attr(no_openssh, ignore = "needs OpenSSH (sshd, ssh-keygen)")]
async fn with_reconnect_a_returning_server_resumes_after_a_divider() {
    let mut sshd = Sshd::start();
    let daemon = Daemon::start_with_env(
        &[
            ("SSH_RECONNECT", "true"),
            ("SSH_RECONNECT_MAX_BACKOFF_MS", "100"),
        ],
        &[],
    )
    .await;
    sshd.trust(daemon.dir.path());
    let mut line = daemon.line().await;
    let id = create(&mut line, ssh_type(&sshd, json!({}))).await["session_id"].clone();
    type_in(&mut line, &id, "echo before-$((1 + 1))\n").await;
    output_until(&mut line, &id, "before-2").await;

    sshd.kill();
    output_until(&mut line, &id, "reconnecting ---").await;
    let info = line.ok("get_session", json!({"session_id": id})).await;
    assert_eq!(
        info["state"], "detached",
        "still alive while reconnecting: {info}"
    );
    let err = line
        .err(
            "send_input",
            json!({"session_id": id, "data": b64(b"lost")}),
        )
        .await;
    assert_eq!(err["code"], code::BACKEND_ERROR, "{err}");
    assert!(
        err["message"].as_str().unwrap().contains("reconnecting"),
        "{err}"
    );

    sshd.restart();
    let divider = format!("\r\n--- reconnected to 127.0.0.1:{} ---\r\n", sshd.port);
    output_until(&mut line, &id, &divider).await;
    type_in(&mut line, &id, "echo after-$((2 + 1))\n").await;
    let all = output_until(&mut line, &id, "after-3").await;
    let (before, rest) = all.split_once("before-2").expect("before comes first");
    assert!(!before.contains("reconnect"), "{before:?}");
    let (between, _after) = rest.split_once(&divider).expect("then the divider");
    assert!(
        between.contains(&format!("--- connection to 127.0.0.1:{} lost", sshd.port)),
        "{between:?}"
    );
    let info = line.ok("get_session", json!({"session_id": id})).await;
    assert!(
        info["output_offset"].as_u64().unwrap() >= all.len() as u64,
        "one continuous stream"
    );
}

#[tokio::test]
#[cfg_attr(no_openssh, ignore = "needs OpenSSH (sshd, ssh-keygen)")]
async fn a_dropped_and_reconnected_ssh_connection_is_two_events() {
    let mut sshd = Sshd::start();
    let daemon = Daemon::start_with_env(
        &[
            ("SSH_RECONNECT", "true"),
            ("SSH_RECONNECT_MAX_BACKOFF_MS", "100"),
        ],
        &[],
    )
    .await;
    sshd.trust(daemon.dir.path());
    let client = daemon.client().await;
    let mut events = client.subscribe_events().await.unwrap();
    let mut line = daemon.line().await;
    let id = create(&mut line, ssh_type(&sshd, json!({}))).await["session_id"].clone();
    let session_id: pulsar_protocol::SessionId = serde_json::from_value(id.clone()).unwrap();
    type_in(&mut line, &id, "echo up-$((1 + 1))\n").await;
    output_until(&mut line, &id, "up-2").await;

    sshd.kill();
    let next_ssh_event =
        async |events: &mut jsonrpsee::core::client::Subscription<SessionEvent>| {
            let deadline = Deadline::start();
            loop {
                deadline.check("an SSH event");
                let event = tokio::time::timeout(DEADLINE, events.next())
                    .await
                    .expect("an event in time")
                    .expect("the stream is open")
                    .expect("a valid event");
                if matches!(
                    event,
                    SessionEvent::SshDisconnected { .. } | SessionEvent::SshReconnected { .. }
                ) {
                    return event;
                }
            }
        };
    let SessionEvent::SshDisconnected {
        session_id: lost,
        cause,
    } = next_ssh_event(&mut events).await
    else {
        panic!("the drop comes first");
    };
    assert_eq!(lost, session_id);
    assert!(!cause.is_empty());
    sshd.restart();
    assert_eq!(
        next_ssh_event(&mut events).await,
        SessionEvent::SshReconnected { session_id }
    );
}

#[tokio::test]
#[cfg_attr(no_openssh, ignore = "needs OpenSSH (sshd, ssh-keygen)")]
async fn remote_exit_is_never_reconnected() {
    let sshd = Sshd::start();
    let daemon = Daemon::start_with_env(
        &[
            ("SSH_RECONNECT", "true"),
            ("SSH_RECONNECT_MAX_BACKOFF_MS", "100"),
        ],
        &[],
    )
    .await;
    sshd.trust(daemon.dir.path());
    let mut line = daemon.line().await;
    let id = create(
        &mut line,
        ssh_type(&sshd, json!({"command": "echo bye-$((1+1)); exit 3"})),
    )
    .await["session_id"]
        .clone();
    let info = stopped(&mut line, &id).await;
    assert_eq!(info["exit_code"], 3, "{info}");
    assert!(
        info["reason"].is_null(),
        "an exit, not a lost connection: {info}"
    );
    let output = output_until(&mut line, &id, "bye-2").await;
    assert!(!output.contains("reconnect"), "{output:?}");
    // The server saw one login: nobody came back after the exit.
    let logins = sshd.log().matches("Accepted publickey").count();
    assert_eq!(logins, 1, "{}", sshd.log());
}

#[tokio::test]
#[cfg_attr(no_openssh, ignore = "needs OpenSSH (sshd, ssh-keygen)")]
async fn terminate_hangs_up_the_remote_shell() {
    let sshd = Sshd::start();
    let daemon = Daemon::start_with_env(&[], &[]).await;
    sshd.trust(daemon.dir.path());
    // Somewhere the remote user may write.
    let scratch = tempfile::tempdir().unwrap();
    std::fs::set_permissions(
        scratch.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o777),
    )
    .unwrap();
    let marks = scratch.path().join("hup");
    let remote = format!(
        "trap 'echo hup > {}; exit 0' HUP; echo pid=$$.end; while :; do sleep 1; done",
        marks.display()
    );
    let mut line = daemon.line().await;
    let id =
        create(&mut line, ssh_type(&sshd, json!({"command": remote}))).await["session_id"].clone();
    let output = output_until(&mut line, &id, ".end").await;
    let pid: u32 = output
        .split("pid=")
        .nth(1)
        .and_then(|rest| rest.split(".end").next())
        .and_then(|pid| pid.parse().ok())
        .unwrap_or_else(|| panic!("the remote shell's pid in {output:?}"));
    line.ok("terminate_session", json!({"session_id": id}))
        .await;
    let info = line.ok("get_session", json!({"session_id": id})).await;
    assert_eq!(info["state"], "stopped", "{info}");
    assert_eq!(info["reason"], "terminated by request", "{info}");
    eventually("the remote shell to get SIGHUP and end", || async {
        (process_gone(pid) && std::fs::read_to_string(&marks).is_ok_and(|m| m == "hup\n"))
            .then_some(())
    })
    .await;
}

#[tokio::test]
async fn error_nothing_listening_is_1010_naming_host_and_port() {
    let daemon = Daemon::start_with_env(&[], &[]).await;
    let mut line = daemon.line().await;
    let port = free_port();
    let err = create_named_err(
        &mut line,
        json!({"kind": "ssh", "host": "127.0.0.1", "port": port}),
    )
    .await;
    assert_eq!(err["code"], code::SSH_CONNECTION_REFUSED, "{err}");
    assert_eq!(
        err["data"],
        json!({"name": NAMED, "host": "127.0.0.1", "port": port})
    );
    assert!(
        err["message"]
            .as_str()
            .unwrap()
            .contains(&format!("127.0.0.1:{port}")),
        "{err}"
    );
}

#[tokio::test]
async fn error_silent_server_is_1011_after_the_connect_timeout() {
    // Accepts the TCP connection, then says nothing.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let daemon = Daemon::start_with_env(&[("SSH_CONNECT_TIMEOUT_MS", "300")], &[]).await;
    let mut line = daemon.line().await;
    let err = create_named_err(
        &mut line,
        json!({"kind": "ssh", "host": "127.0.0.1", "port": port}),
    )
    .await;
    assert_eq!(err["code"], code::SSH_TIMEOUT, "{err}");
    assert_eq!(
        err["data"],
        json!({"name": NAMED, "host": "127.0.0.1", "port": port, "timeout_ms": 300})
    );
    drop(listener);
}

#[tokio::test]
async fn error_unresolvable_host_is_1012_naming_it() {
    // A label over 63 characters: the resolver refuses it without sending a query anywhere.
    let host = format!("{}.invalid", "n".repeat(70));
    let daemon = Daemon::start_with_env(&[], &[]).await;
    let mut line = daemon.line().await;
    let err = create_named_err(&mut line, json!({"kind": "ssh", "host": host})).await;
    assert_eq!(err["code"], code::SSH_HOST_NOT_FOUND, "{err}");
    assert_eq!(
        err["data"],
        json!({"name": NAMED, "host": host, "port": 22})
    );
    assert!(err["message"].as_str().unwrap().contains(&host), "{err}");
}

#[tokio::test]
async fn error_a_server_that_does_not_speak_ssh_is_1016_naming_host_and_port() {
    // Answers every connection with an HTTP error instead of an SSH banner, then hangs up.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
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
    assert_eq!(err["code"], code::SSH_CONNECTION_FAILED, "{err}");
    assert_eq!(
        err["data"],
        json!({"name": NAMED, "host": "127.0.0.1", "port": port}),
        "{err}"
    );
    server.join().unwrap();
}

#[tokio::test]
#[cfg_attr(no_openssh, ignore = "needs OpenSSH (sshd, ssh-keygen)")]
async fn upstream_ssh_shape_is_accepted_with_the_defaults() {
    let sshd = Sshd::start();
    let daemon = Daemon::start_with_env(&[], &[]).await;
    sshd.trust(daemon.dir.path());
    // Default key file, default user (the daemon's, which this server does not let in).
    let home_key = daemon.dir.path().join(".ssh/id_ed25519");
    std::fs::copy(&sshd.client_key, &home_key).unwrap();
    let mut line = daemon.line().await;
    let response = line
        .request(json!({"id": "1", "method": "create_session",
                        "params": {"type": {"Ssh": {"host": "127.0.0.1", "port": sshd.port}}}}))
        .await;
    let err = &response["error"];
    assert_eq!(err["code"], code::SSH_AUTH_FAILED, "{response}");
    let me = pulsar_e2e::sshd::run("id", &["-un"]);
    assert_eq!(err["data"]["user"], me.trim(), "{response}");
    assert_eq!(
        err["data"]["tried"],
        json!([format!("key file {}", home_key.display())]),
        "{response}"
    );
}

#[tokio::test]
#[cfg_attr(no_openssh, ignore = "needs OpenSSH (sshd, ssh-keygen)")]
async fn secrets_never_appear_in_answers_logs_or_files() {
    let sshd = Sshd::start();
    let passphrase = "Passphrase-d41d8cd9";
    let key = sshd.add_encrypted_key(passphrase);
    // The most talkative level: russh would log its packets in plain text here.
    let daemon = Daemon::start_with_env(&[("LOG_LEVEL", "trace")], &[]).await;
    sshd.trust(daemon.dir.path());
    let mut line = daemon.line().await;
    let with_password = ssh_type(
        &sshd,
        json!({"auth": {"agent": false, "password": TEST_PASSWORD}, "command": "echo one; sleep 60"}),
    );
    let with_passphrase = ssh_type(
        &sshd,
        json!({"auth": {"agent": false, "key_files": [key], "passphrase": passphrase},
               "command": "echo two; sleep 60"}),
    );
    let mut answers = Vec::new();
    for ty in [with_password, with_passphrase] {
        let created = create(&mut line, ty).await;
        assert!(
            created["type"]["auth"].get("password").is_none(),
            "{created}"
        );
        answers.push(created.to_string());
        answers.push(
            line.ok("get_session", json!({"session_id": created["session_id"]}))
                .await
                .to_string(),
        );
    }
    // And once over the WebSocket path, with the typed client.
    let client = daemon.client().await;
    let typed: pulsar_protocol::SessionType = serde_json::from_value(ssh_type(
        &sshd,
        json!({"auth": {"agent": false, "password": TEST_PASSWORD}, "command": "sleep 60"}),
    ))
    .unwrap();
    let created = client
        .create_session(None, typed, None, None, None, None, None)
        .await
        .expect("create over WebSocket");
    answers.push(serde_json::to_string(&created).unwrap());
    answers.push(line.ok("list_sessions", json!({})).await.to_string());
    let wrong = create_err(
        &mut line,
        ssh_type(
            &sshd,
            json!({"auth": {"agent": false, "password": "Wrong-pw-9e107d9d"}}),
        ),
    )
    .await;
    answers.push(wrong.to_string());

    let secrets = [TEST_PASSWORD, passphrase, "Wrong-pw-9e107d9d"];
    for answer in &answers {
        for secret in secrets {
            assert!(
                !answer.contains(secret),
                "{secret:?} in an answer: {answer}"
            );
        }
    }
    // Everything the daemon wrote: its log, the database (once there is one), known_hosts...
    let mut files = vec![daemon.dir.path().to_owned()];
    let mut checked = 0;
    while let Some(path) = files.pop() {
        let kind = std::fs::symlink_metadata(&path)
            .unwrap_or_else(|err| panic!("{}: {err}", path.display()))
            .file_type();
        if kind.is_dir() {
            files.extend(std::fs::read_dir(&path).unwrap().map(|e| e.unwrap().path()));
            continue;
        }
        // The daemon's socket holds no bytes; every other file must be read in full.
        if std::os::unix::fs::FileTypeExt::is_socket(&kind) {
            continue;
        }
        let bytes = std::fs::read(&path)
            .unwrap_or_else(|err| panic!("cannot read {}: {err}", path.display()));
        for secret in secrets {
            assert!(
                !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
                "{secret:?} found in {}",
                path.display()
            );
        }
        checked += 1;
    }
    assert!(checked >= 1, "at least the log was checked");
    let log = daemon.log();
    assert!(log.contains("SSH session connected"), "the log is there");
    assert!(
        !log.contains("session_write_encrypted") && !log.contains("raw_json_request"),
        "plaintext packet or request dumps reached the log"
    );
    assert!(Path::new(&daemon.dir.path().join("daemon.log")).exists());
}

/// The password [`FakeSshd`] accepts.
const FAKE_PASSWORD: &str = "fake-server-pw";
/// What [`FakeSshd`]'s "shell" prints first.
const FAKE_PROMPT: &str = "fake$ ";

/// An SSH server inside the test process (russh's server API), for what OpenSSH makes awkward:
/// cutting every connection at the instant the test picks, and coming back on the same port
/// with another host key. Its "shell" prints a prompt and echoes what it is sent.
struct FakeSshd {
    port: u16,
    /// Duplicates of the accepted sockets, to cut them from outside.
    connections: std::sync::Arc<std::sync::Mutex<Vec<std::net::TcpStream>>>,
    accept: tokio::task::JoinHandle<()>,
}

impl FakeSshd {
    /// Serves on 127.0.0.1:`port` (0: any free port) with the host key in `key` (an OpenSSH
    /// private key file).
    async fn start(port: u16, key: &Path) -> Self {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .expect("bind the fake server");
        let port = listener.local_addr().expect("local address").port();
        let config = std::sync::Arc::new(russh::server::Config {
            keys: vec![russh::keys::load_secret_key(key, None).expect("host key")],
            auth_rejection_time: std::time::Duration::ZERO,
            auth_rejection_time_initial: Some(std::time::Duration::ZERO),
            ..Default::default()
        });
        let connections = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let kept = std::sync::Arc::clone(&connections);
        let accept = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let stream = stream.into_std().expect("std socket");
                kept.lock()
                    .unwrap()
                    .push(stream.try_clone().expect("dup the socket"));
                let stream = tokio::net::TcpStream::from_std(stream).expect("tokio socket");
                let config = std::sync::Arc::clone(&config);
                tokio::spawn(async move {
                    if let Ok(running) = russh::server::run_stream(config, stream, FakeShell).await
                    {
                        let _ = running.await;
                    }
                });
            }
        });
        Self {
            port,
            connections,
            accept,
        }
    }

    /// Cuts every connection at once, as a crashed host or a pulled cable does.
    fn cut(&self) {
        for connection in self.connections.lock().unwrap().drain(..) {
            let _ = connection.shutdown(std::net::Shutdown::Both);
        }
    }

    /// Cuts every connection and stops listening (the port is free when this returns).
    async fn stop(mut self) {
        self.cut();
        self.accept.abort();
        let _ = (&mut self.accept).await;
    }
}

impl Drop for FakeSshd {
    fn drop(&mut self) {
        self.cut();
        self.accept.abort();
    }
}

/// One connection to [`FakeSshd`]: password auth, a PTY and a shell that echoes.
struct FakeShell;

impl russh::server::Handler for FakeShell {
    type Error = russh::Error;

    async fn auth_password(
        &mut self,
        _user: &str,
        password: &str,
    ) -> Result<russh::server::Auth, Self::Error> {
        Ok(if password == FAKE_PASSWORD {
            russh::server::Auth::Accept
        } else {
            russh::server::Auth::reject()
        })
    }

    async fn channel_open_session(
        &mut self,
        mut channel: russh::Channel<russh::server::Msg>,
        reply: russh::server::ChannelOpenHandle,
        _session: &mut russh::server::Session,
    ) -> Result<(), Self::Error> {
        reply.accept().await;
        // Input reaches `data` below; this handle only needs draining.
        tokio::spawn(async move { while channel.wait().await.is_some() {} });
        Ok(())
    }

    async fn pty_request(
        &mut self,
        channel: russh::ChannelId,
        _term: &str,
        _cols: u32,
        _rows: u32,
        _pix_width: u32,
        _pix_height: u32,
        _modes: &[(russh::Pty, u32)],
        session: &mut russh::server::Session,
    ) -> Result<(), Self::Error> {
        session.channel_success(channel)
    }

    async fn shell_request(
        &mut self,
        channel: russh::ChannelId,
        session: &mut russh::server::Session,
    ) -> Result<(), Self::Error> {
        session.channel_success(channel)?;
        session.data(channel, FAKE_PROMPT.as_bytes().to_vec())
    }

    async fn data(
        &mut self,
        channel: russh::ChannelId,
        data: &[u8],
        session: &mut russh::server::Session,
    ) -> Result<(), Self::Error> {
        session.data(channel, data.to_vec())
    }
}

/// Writes a new ed25519 host key for [`FakeSshd`] to `path` (OpenSSH's format), made in
/// process so that the tests against the fake server need no OpenSSH at all.
fn fake_host_key(path: &Path) {
    let mut seed = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut random| random.read_exact(&mut seed))
        .expect("random bytes");
    let keypair = russh::keys::ssh_key::private::Ed25519Keypair::from_seed(&seed);
    let pem = russh::keys::PrivateKey::from(keypair)
        .to_openssh(russh::keys::ssh_key::LineEnding::LF)
        .expect("encode the host key");
    std::fs::write(path, pem.as_bytes()).expect("write the host key");
}

fn fake_type(port: u16) -> Value {
    json!({"kind": "ssh", "host": "127.0.0.1", "port": port, "user": "tester",
           "accept_new_host_key": true,
           "auth": {"agent": false, "password": FAKE_PASSWORD}})
}

#[tokio::test]
async fn connection_cut_mid_session_stops_the_session_with_a_reason() {
    let keys = tempfile::tempdir().unwrap();
    let key = keys.path().join("host_key");
    fake_host_key(&key);
    let server = FakeSshd::start(0, &key).await;
    let daemon = Daemon::start_with_env(&[], &[]).await;
    let mut line = daemon.line().await;
    let id = create(&mut line, fake_type(server.port)).await["session_id"].clone();
    output_until(&mut line, &id, FAKE_PROMPT).await;
    type_in(&mut line, &id, "hello").await;
    output_until(&mut line, &id, "hello").await;

    server.cut();
    let info = stopped(&mut line, &id).await;
    let reason = info["reason"].as_str().expect("a reason");
    assert!(
        reason.starts_with(&format!("connection to 127.0.0.1:{} lost: ", server.port)),
        "{reason}"
    );
}

#[tokio::test]
async fn reconnecting_to_a_host_whose_key_changed_ends_the_session_loudly() {
    let keys = tempfile::tempdir().unwrap();
    let (first_key, second_key) = (keys.path().join("first"), keys.path().join("second"));
    fake_host_key(&first_key);
    fake_host_key(&second_key);
    let first = FakeSshd::start(0, &first_key).await;
    let port = first.port;
    let daemon = Daemon::start_with_env(
        &[
            ("SSH_RECONNECT", "true"),
            ("SSH_RECONNECT_MAX_BACKOFF_MS", "100"),
        ],
        &[],
    )
    .await;
    let mut line = daemon.line().await;
    let id = create(&mut line, fake_type(port)).await["session_id"].clone();
    output_until(&mut line, &id, FAKE_PROMPT).await;

    // The host comes back on the same address with another key: an impostor, perhaps.
    first.stop().await;
    let _second = FakeSshd::start(port, &second_key).await;
    let info = stopped(&mut line, &id).await;
    let reason = info["reason"].as_str().expect("a reason");
    assert!(reason.contains("reconnecting failed"), "{reason}");
    assert!(reason.contains("CHANGED"), "{reason}");
    output_until(&mut line, &id, "reconnecting ---").await;
}

/// A regression: the stop ended SSH sessions after their pumps had stopped and then waited
/// for a pump to report the end, which no pump was left to do (5.25 s per stop).
#[tokio::test]
#[cfg_attr(no_openssh, ignore = "needs OpenSSH (sshd, ssh-keygen)")]
async fn a_daemon_with_an_ssh_session_restarts_without_waiting_out_a_timeout() {
    let sshd = Sshd::start();
    let daemon = Daemon::start_with_env(&[], &[]).await;
    sshd.trust(daemon.dir.path());
    let mut line = daemon.line().await;
    let id = create(&mut line, ssh_type(&sshd, json!({"command": "exec cat"}))).await["session_id"]
        .clone();
    drop(line);
    let started = std::time::Instant::now();
    let daemon = daemon.restart(&[]).await;
    let mut line = daemon.line().await;
    line.ok("get_session", json!({"session_id": id})).await;
    let took = started.elapsed();
    // The stop and the start take well under a second here; the defect took over five.
    assert!(took < std::time::Duration::from_secs(4), "took {took:?}");
}

#[tokio::test]
#[cfg_attr(no_openssh, ignore = "needs OpenSSH (sshd, ssh-keygen)")]
async fn after_a_daemon_restart_a_key_auth_session_reconnects_after_its_history() {
    let sshd = Sshd::start();
    let daemon = Daemon::start_with_env(&[], &[]).await;
    sshd.trust(daemon.dir.path());
    let mut line = daemon.line().await;
    let id = create(
        &mut line,
        ssh_type(
            &sshd,
            json!({"command": "echo first-$((20 + 1)); exec cat"}),
        ),
    )
    .await["session_id"]
        .clone();
    output_until(&mut line, &id, "first-21").await;
    drop(line);

    let daemon = daemon.restart(&[]).await;
    let mut line = daemon.line().await;
    let info = line.ok("get_session", json!({"session_id": id})).await;
    assert_eq!(info["state"], "detached", "reconnected: {info}");
    line.ok(
        "send_input",
        json!({"session_id": id, "data": b64(b"typed-after\n")}),
    )
    .await;
    let text = output_until(&mut line, &id, "typed-after").await;
    let first = text.find("first-21").expect("the history is kept");
    let divider = text.find("pulsar restarted").expect("a divider");
    assert!(first < divider && divider < text.rfind("typed-after").unwrap());
}

#[tokio::test]
#[cfg_attr(no_openssh, ignore = "needs OpenSSH (sshd, ssh-keygen)")]
async fn after_a_daemon_restart_a_password_session_waits_for_credentials() {
    let sshd = Sshd::start();
    let daemon = Daemon::start_with_env(&[], &[]).await;
    sshd.trust(daemon.dir.path());
    let mut line = daemon.line().await;
    let id = create(
        &mut line,
        ssh_type(
            &sshd,
            json!({"auth": {"agent": false, "password": TEST_PASSWORD},
                   "command": "echo by-password; exec cat"}),
        ),
    )
    .await["session_id"]
        .clone();
    output_until(&mut line, &id, "by-password").await;
    drop(line);

    let daemon = daemon.restart(&[]).await;
    let mut line = daemon.line().await;
    let info = line.ok("get_session", json!({"session_id": id})).await;
    assert_eq!(info["state"], "stopped", "{info}");
    assert!(
        info["reason"]
            .as_str()
            .unwrap_or("")
            .contains("credentials required"),
        "{info}"
    );
    let text = output_until(&mut line, &id, "by-password").await;
    assert!(text.contains("by-password"), "history readable");
    let db = std::fs::read(daemon.database()).unwrap();
    assert!(
        !db.windows(TEST_PASSWORD.len())
            .any(|w| w == TEST_PASSWORD.as_bytes()),
        "the password never reached the database"
    );
}

/// A TCP relay to `target` that holds every connection it accepts until released, to stall
/// an SSH handshake at a moment the test chooses.
struct StallingRelay {
    port: u16,
    accepted: std::sync::Arc<tokio::sync::Notify>,
    release: std::sync::Arc<tokio::sync::Semaphore>,
    task: tokio::task::JoinHandle<()>,
}

impl StallingRelay {
    async fn start(target: u16) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let accepted = std::sync::Arc::new(tokio::sync::Notify::new());
        let release = std::sync::Arc::new(tokio::sync::Semaphore::new(0));
        let task = {
            let (accepted, release) = (accepted.clone(), release.clone());
            tokio::spawn(async move {
                while let Ok((mut inbound, _)) = listener.accept().await {
                    accepted.notify_one();
                    let release = release.clone();
                    tokio::spawn(async move {
                        let Ok(_go) = release.acquire().await else {
                            return;
                        };
                        let Ok(mut outbound) =
                            tokio::net::TcpStream::connect(("127.0.0.1", target)).await
                        else {
                            return;
                        };
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    });
                }
            })
        };
        Self {
            port,
            accepted,
            release,
            task,
        }
    }
}

impl Drop for StallingRelay {
    fn drop(&mut self) {
        self.release.close();
        self.task.abort();
    }
}

#[tokio::test]
async fn create_still_connecting_when_the_daemon_stops_is_answered_and_saved() {
    let keys = tempfile::tempdir().unwrap();
    let key = keys.path().join("host_key");
    fake_host_key(&key);
    let server = FakeSshd::start(0, &key).await;
    let relay = StallingRelay::start(server.port).await;
    let mut daemon = Daemon::start_with(&[("SSH_CONNECT_TIMEOUT_MS", "30000")]).await;
    let mut line = daemon.line().await;
    let request = json!({"jsonrpc": "2.0", "id": 7, "method": "create_session",
                         "params": {"name": "late", "type": fake_type(relay.port)}});
    line.send_raw(format!("{request}\n").as_bytes()).await;
    tokio::time::timeout(
        std::time::Duration::from_secs(20),
        relay.accepted.notified(),
    )
    .await
    .expect("the daemon to start connecting");

    // Stop the daemon while the create is stalled in the SSH handshake...
    signal(&daemon.child, nix::sys::signal::Signal::SIGTERM);
    eventually("the daemon to stop accepting (its socket gone)", || async {
        (!daemon.socket.exists()).then_some(())
    })
    .await;
    // ...and only then let the handshake complete.
    relay.release.add_permits(1);

    let answer = tokio::time::timeout(std::time::Duration::from_secs(20), line.read())
        .await
        .expect("an answer to the create")
        .expect("the connection to stay open for the answer");
    assert_eq!(answer["id"], 7, "{answer}");
    let id = answer["result"]["session_id"]
        .as_str()
        .unwrap_or_else(|| panic!("the create succeeds: {answer}"))
        .to_owned();
    let exit = wait_exit(&mut daemon.child, "the daemon");
    assert!(exit.success(), "{exit:?}");

    let db = rusqlite::Connection::open(daemon.database()).unwrap();
    let (name, state): (String, String) = db
        .query_row(
            "SELECT name, state FROM sessions WHERE id = ?1",
            [&id],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )
        .unwrap_or_else(|err| panic!("session {id} has a row after the stop: {err}"));
    assert_eq!(name, "late");
    // Saved as alive, so the next start brings it back.
    assert_ne!(state, "stopped");
}

// ---------------------------------------------------------------------------------------------
// OpenSSH's own configuration (~/.ssh/config in the daemon's HOME) and jump hosts

/// Writes `text` as the daemon user's `~/.ssh/config`; returns its path.
fn ssh_config(daemon: &Daemon, text: &str) -> std::path::PathBuf {
    let dir = daemon.dir.path().join(".ssh");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("config");
    std::fs::write(&path, text).unwrap();
    path
}

/// A `Host` block for `alias` reaching `sshd` as the test user with its key.
fn host_block(alias: &str, sshd: &Sshd) -> String {
    format!(
        "Host {alias}\n  HostName 127.0.0.1\n  Port {}\n  User {TEST_USER}\n  \
         IdentityFile {}\n  IdentitiesOnly yes\n",
        sshd.port,
        sshd.client_key.display()
    )
}

#[tokio::test]
#[cfg_attr(no_openssh, ignore = "needs OpenSSH (sshd, ssh-keygen)")]
async fn an_ssh_config_alias_resolves_host_name_port_user_and_identity_file() {
    let sshd = Sshd::start();
    let daemon = Daemon::start_with_env(&[], &[]).await;
    sshd.trust(daemon.dir.path());
    let config = ssh_config(&daemon, &host_block("web", &sshd));
    let mut line = daemon.line().await;
    let created = create(&mut line, json!({"kind": "ssh", "host": "web"})).await;
    let id = created["session_id"].clone();
    type_in(&mut line, &id, "echo via-alias-$((6 * 7))\n").await;
    output_until(&mut line, &id, "via-alias-42").await;
    let info = line.ok("get_session", json!({"session_id": id})).await;
    assert_eq!(
        info["type"]["host"], "web",
        "the type stays as given: {info}"
    );
    assert_eq!(
        info["ssh"],
        json!({
            "host": "127.0.0.1", "port": sshd.port, "user": TEST_USER,
            "identity_files": [sshd.client_key], "proxy_jump": [],
            "config_file": config, "warnings": [],
        }),
        "{info}"
    );
}

#[tokio::test]
#[cfg_attr(no_openssh, ignore = "needs OpenSSH (sshd, ssh-keygen)")]
async fn explicit_request_fields_win_over_the_ssh_config() {
    let sshd = Sshd::start();
    let daemon = Daemon::start_with_env(&[], &[]).await;
    sshd.trust(daemon.dir.path());
    // Everything the file says but HostName is wrong: nothing listens on that port, the user
    // does not exist and the key is not authorized.
    let other = daemon.dir.path().join("id_other");
    keygen(&other, "");
    ssh_config(
        &daemon,
        &format!(
            "Host web\n  HostName 127.0.0.1\n  Port {}\n  User nobody-here\n  IdentityFile {}\n",
            free_port(),
            other.display()
        ),
    );
    let mut line = daemon.line().await;
    let ty = json!({
        "kind": "ssh", "host": "web", "port": sshd.port, "user": TEST_USER,
        "auth": {"agent": false, "key_files": [sshd.client_key]},
    });
    let created = create(&mut line, ty).await;
    let id = created["session_id"].clone();
    type_in(&mut line, &id, "echo explicit-$((2 * 4))\n").await;
    output_until(&mut line, &id, "explicit-8").await;
    let ssh = &created["ssh"];
    assert_eq!(
        (&ssh["host"], &ssh["port"], &ssh["user"]),
        (&json!("127.0.0.1"), &json!(sshd.port), &json!(TEST_USER)),
        "{created}"
    );
    assert_eq!(ssh["identity_files"], json!([sshd.client_key]), "{created}");
}

#[tokio::test]
#[cfg_attr(no_openssh, ignore = "needs OpenSSH (sshd, ssh-keygen)")]
async fn an_unsupported_ssh_config_option_is_named_in_the_warnings_and_the_log() {
    let sshd = Sshd::start();
    let daemon = Daemon::start_with_env(&[], &[]).await;
    sshd.trust(daemon.dir.path());
    ssh_config(
        &daemon,
        &format!(
            "{}  ForwardAgent yes\n  ControlMaster auto\nHost elsewhere\n  Compression yes\n",
            host_block("web", &sshd)
        ),
    );
    let mut line = daemon.line().await;
    let created = create(&mut line, json!({"kind": "ssh", "host": "web"})).await;
    let warnings = created["ssh"]["warnings"]
        .as_array()
        .expect("warnings")
        .clone();
    let all: Vec<&str> = warnings.iter().filter_map(Value::as_str).collect();
    assert!(all.iter().any(|w| w.contains("ForwardAgent")), "{all:?}");
    assert!(
        all.iter()
            .any(|w| w.contains("ControlMaster is not supported")),
        "{all:?}"
    );
    assert!(
        !all.iter().any(|w| w.contains("Compression")),
        "a block for another host is not this one's business: {all:?}"
    );
    assert!(
        daemon.log().contains("ForwardAgent is not supported"),
        "the warning is logged"
    );
}

#[tokio::test]
#[cfg_attr(no_openssh, ignore = "needs OpenSSH (sshd, ssh-keygen)")]
async fn error_an_ssh_config_with_a_bad_value_is_1033_naming_the_file() {
    let daemon = Daemon::start_with_env(&[], &[]).await;
    let config = ssh_config(&daemon, "Host web\n  Port many\n");
    let mut line = daemon.line().await;
    let err = create_named_err(&mut line, json!({"kind": "ssh", "host": "web"})).await;
    assert_eq!(err["code"], code::SSH_CONFIG_INVALID, "{err}");
    assert_eq!(err["data"]["config_file"], json!(config), "{err}");
    assert_eq!(err["data"]["name"], NAMED, "{err}");
    assert!(
        err["message"]
            .as_str()
            .unwrap()
            .contains(config.to_str().unwrap()),
        "{err}"
    );
}

/// Both servers' host keys in the daemon user's known_hosts.
fn trust_both(daemon: &Daemon, a: &Sshd, b: &Sshd) {
    std::fs::create_dir_all(daemon.dir.path().join(".ssh")).unwrap();
    std::fs::write(
        known_hosts(daemon),
        a.known_hosts_line() + &b.known_hosts_line(),
    )
    .unwrap();
}

/// How many `direct-tcpip` channels the jump server opened to `port` (its DEBUG log).
fn tunnels_to(jump: &Sshd, port: u16) -> usize {
    jump.log()
        .matches(&format!("target 127.0.0.1 port {port}"))
        .count()
}

#[tokio::test]
#[cfg_attr(no_openssh, ignore = "needs OpenSSH (sshd, ssh-keygen)")]
async fn proxy_jump_reaches_the_target_through_the_jump_host() {
    let jump = Sshd::start_debug();
    let target = Sshd::start();
    let daemon = Daemon::start_with_env(&[], &[]).await;
    trust_both(&daemon, &jump, &target);
    ssh_config(
        &daemon,
        &format!(
            "{}  ProxyJump bastion\n{}",
            host_block("inner", &target),
            host_block("bastion", &jump)
        ),
    );
    let mut line = daemon.line().await;
    let created = create(&mut line, json!({"kind": "ssh", "host": "inner"})).await;
    let id = created["session_id"].clone();
    type_in(&mut line, &id, "echo jumped-$((3 * 5))\n").await;
    output_until(&mut line, &id, "jumped-15").await;
    assert_eq!(
        created["ssh"]["proxy_jump"],
        json!([format!("{TEST_USER}@127.0.0.1:{}", jump.port)]),
        "{created}"
    );
    assert_eq!(created["ssh"]["port"], target.port, "{created}");
    assert_eq!(
        tunnels_to(&jump, target.port),
        1,
        "the jump host opened the connection to the target: {}",
        jump.log()
    );
}

#[tokio::test]
#[cfg_attr(no_openssh, ignore = "needs OpenSSH (sshd, ssh-keygen)")]
async fn with_reconnect_a_cut_jump_host_is_reconnected_as_the_whole_chain() {
    let mut jump = Sshd::start_debug();
    let target = Sshd::start();
    let daemon = Daemon::start_with_env(
        &[
            ("SSH_RECONNECT", "true"),
            ("SSH_RECONNECT_MAX_BACKOFF_MS", "100"),
        ],
        &[],
    )
    .await;
    trust_both(&daemon, &jump, &target);
    ssh_config(
        &daemon,
        &format!(
            "{}  ProxyJump bastion\n{}",
            host_block("inner", &target),
            host_block("bastion", &jump)
        ),
    );
    let mut line = daemon.line().await;
    let id = create(&mut line, json!({"kind": "ssh", "host": "inner"})).await["session_id"].clone();
    type_in(&mut line, &id, "echo first-$((1 + 1))\n").await;
    output_until(&mut line, &id, "first-2").await;

    // The jump host dies with every connection it carried; the target server lives on.
    jump.kill();
    output_until(&mut line, &id, "reconnecting ---").await;
    jump.restart();
    let divider = format!("--- reconnected to 127.0.0.1:{} ---", target.port);
    output_until(&mut line, &id, &divider).await;
    type_in(&mut line, &id, "echo second-$((2 + 1))\n").await;
    output_until(&mut line, &id, "second-3").await;
    assert_eq!(
        tunnels_to(&jump, target.port),
        2,
        "the reconnect went through the jump host again: {}",
        jump.log()
    );
}

#[tokio::test]
#[cfg_attr(no_openssh, ignore = "needs OpenSSH (sshd, ssh-keygen)")]
async fn ssh_config_strict_host_key_checking_accept_new_records_into_its_known_hosts_file() {
    let sshd = Sshd::start();
    let daemon = Daemon::start_with_env(&[], &[]).await;
    let work_hosts = daemon.dir.path().join("work_known_hosts");
    ssh_config(
        &daemon,
        &format!(
            "{}  StrictHostKeyChecking accept-new\n  UserKnownHostsFile {}\n",
            host_block("web", &sshd),
            work_hosts.display()
        ),
    );
    let mut line = daemon.line().await;
    let ty = json!({"kind": "ssh", "host": "web", "command": "echo accepted"});
    let created = create(&mut line, ty).await;
    output_until(&mut line, &created["session_id"], "accepted").await;
    let recorded = std::fs::read_to_string(&work_hosts).expect("the file the config names");
    assert_eq!(recorded, sshd.known_hosts_line());
    assert!(
        !known_hosts(&daemon).exists(),
        "the default known_hosts is left alone"
    );
}

#[tokio::test]
async fn error_ssh_config_connect_timeout_is_the_limit_of_1011() {
    // Accepts the TCP connection, then says nothing.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let daemon = Daemon::start_with_env(&[], &[]).await;
    ssh_config(
        &daemon,
        &format!("Host mute\n  HostName 127.0.0.1\n  Port {port}\n  ConnectTimeout 1\n"),
    );
    let mut line = daemon.line().await;
    let err = create_named_err(&mut line, json!({"kind": "ssh", "host": "mute"})).await;
    assert_eq!(err["code"], code::SSH_TIMEOUT, "{err}");
    assert_eq!(
        err["data"],
        json!({"name": NAMED, "host": "127.0.0.1", "port": port, "timeout_ms": 1000})
    );
    drop(listener);
}

#[tokio::test]
#[cfg_attr(no_openssh, ignore = "needs OpenSSH (sshd, ssh-keygen)")]
async fn error_an_unknown_jump_host_key_is_1014_naming_the_jump_host() {
    let jump = Sshd::start();
    let target = Sshd::start();
    let daemon = Daemon::start_with_env(&[], &[]).await;
    // Only the target is known: the jump host's key must be checked all the same.
    target.trust(daemon.dir.path());
    ssh_config(
        &daemon,
        &format!(
            "{}  ProxyJump bastion\n{}",
            host_block("inner", &target),
            host_block("bastion", &jump)
        ),
    );
    let mut line = daemon.line().await;
    let err = create_named_err(&mut line, json!({"kind": "ssh", "host": "inner"})).await;
    assert_eq!(err["code"], code::SSH_UNKNOWN_HOST_KEY, "{err}");
    assert_eq!(err["data"]["port"], jump.port, "{err}");
    assert_eq!(err["data"]["fingerprint"], jump.fingerprint(), "{err}");
}
