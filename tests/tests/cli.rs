//! The `pulsar` command end to end: every verb against a real daemon, and interactive attach
//! in a real terminal (a private tmux server per test: type, watch, resize, detach, reattach,
//! and check the outer terminal is put back as it was).

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use pulsar_e2e::*;
use pulsar_protocol::{PulsarApiClient as _, PulsarClient, SessionId, SessionState};
use serde_json::{Value, json};

// ---------------------------------------------------------------------------------------------
// Running `pulsar`

/// What a `pulsar` run left behind.
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

/// `pulsar --socket SOCKET ARGS...` with a clean environment (no detach key or socket
/// variables from the caller), HOME in `home`.
fn pulsar_command(socket: &Path, home: &Path, args: &[&str]) -> Command {
    let mut command = Command::new(artifact("pulsar"));
    command
        .arg("--socket")
        .arg(socket)
        .args(args)
        .env("HOME", home)
        .env_remove("XDG_CONFIG_HOME")
        .env_remove("PULSAR_SOCKET_PATH")
        .env_remove("PULSAR_DETACH_KEY")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    command
}

/// Runs `command` to completion (bounded by the deadline).
fn finish(mut command: Command) -> Run {
    let mut child = command.spawn().expect("spawn pulsar");
    let status = wait_exit(&mut child, "pulsar");
    let Output { stdout, stderr, .. } = child.wait_with_output().expect("pulsar's output");
    Run {
        code: status.code().expect("pulsar exited with a code"),
        stdout: String::from_utf8_lossy(&stdout).into_owned(),
        stderr: String::from_utf8_lossy(&stderr).into_owned(),
    }
}

/// Runs `pulsar ARGS...` against `daemon`.
fn pulsar(daemon: &Daemon, args: &[&str]) -> Run {
    finish(pulsar_command(&daemon.socket, daemon.dir.path(), args))
}

/// Runs `pulsar ARGS...` and insists that it succeeds.
fn pulsar_ok(daemon: &Daemon, args: &[&str]) -> Run {
    let run = pulsar(daemon, args);
    assert_eq!(
        run.code, 0,
        "pulsar {args:?} failed: {}{}",
        run.stdout, run.stderr
    );
    run
}

/// A shell with the prompt `PROMPT$ ` (distinct from the outer shell's `outer$ `).
fn shell_type(prompt: &str) -> pulsar_protocol::SessionType {
    serde_json::from_value(json!({
        "kind": "local",
        "command": ["/bin/sh"],
        "env": {"PS1": format!("{prompt}$ "), "ENV": ""},
    }))
    .expect("session type")
}

/// Creates a session named `name` running a shell with the prompt `name$ `.
async fn create_shell(client: &PulsarClient, name: &str) -> SessionId {
    client
        .create_session(
            Some(name.into()),
            shell_type(name),
            None,
            None,
            None,
            None,
            None,
        )
        .await
        .expect("create_session")
        .session_id
}

/// The session's screen as text rows.
async fn screen_text(client: &PulsarClient, id: SessionId) -> Vec<String> {
    client.get_screen(id, None).await.expect("get_screen").rows
}

// ---------------------------------------------------------------------------------------------
// Every verb, from a script

#[tokio::test]
async fn new_detached_prints_the_id_of_a_running_session() {
    let daemon = Daemon::start().await;
    let run = pulsar_ok(&daemon, &["new", "-d", "work", "--", "/bin/sh"]);
    let id: SessionId = run.stdout.trim().parse().expect("new -d prints the id");
    let client = daemon.client().await;
    let info = client.get_session(id).await.unwrap();
    assert_eq!(info.name, "work");
    assert_eq!(info.state, SessionState::Detached);
}

#[tokio::test]
async fn new_with_limits_runs_the_session_under_them() {
    let daemon = Daemon::start().await;
    let run = pulsar_ok(
        &daemon,
        &[
            "new",
            "-d",
            "--limit",
            "nofile_max=48",
            "--limit",
            "output_bytes_per_sec=1M",
            "--",
            "/bin/cat",
        ],
    );
    let id: SessionId = run.stdout.trim().parse().expect("new -d prints the id");
    let client = daemon.client().await;
    let limits = client
        .get_session(id)
        .await
        .unwrap()
        .limits
        .expect("limits");
    assert_eq!(limits.nofile_max.map(|l| l.value), Some(48));
    assert_eq!(limits.output_bytes_per_sec.map(|l| l.value), Some(1 << 20));
    let bad = pulsar(
        &daemon,
        &["new", "-d", "--limit", "memory=1G", "--", "/bin/cat"],
    );
    assert_eq!(bad.code, 2, "{}", bad.stderr);
    assert!(bad.stderr.contains("not a limit"), "{}", bad.stderr);
}

#[tokio::test]
async fn new_runs_the_command_in_the_current_directory_with_the_environment_given() {
    let daemon = Daemon::start().await;
    let dir = daemon.dir.path().join("project");
    std::fs::create_dir(&dir).unwrap();
    let mut command = pulsar_command(
        &daemon.socket,
        daemon.dir.path(),
        &[
            "new",
            "-d",
            "env-check",
            "--env",
            "GREETING=hello",
            "--",
            "/bin/sh",
            "-c",
            "echo \"$GREETING from $(pwd)\"; sleep 60",
        ],
    );
    command.current_dir(&dir);
    let run = finish(command);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let id: SessionId = run.stdout.trim().parse().unwrap();
    let client = daemon.client().await;
    read_until(&client, id, &format!("hello from {}", dir.display())).await;
}

#[tokio::test]
async fn new_with_a_taken_name_fails_naming_it() {
    let daemon = Daemon::start().await;
    pulsar_ok(&daemon, &["new", "-d", "twin", "--", "/bin/sh"]);
    let run = pulsar(&daemon, &["new", "-d", "twin", "--", "/bin/sh"]);
    assert_eq!(run.code, 1);
    assert!(run.stderr.contains("twin"), "{}", run.stderr);
    assert!(run.stderr.contains("already exists"), "{}", run.stderr);
}

#[tokio::test]
async fn new_ssh_sends_the_documented_type_and_shows_the_daemons_answer() {
    let daemon = Daemon::start().await;
    // A loopback port with nothing listening: the daemon's own answer comes back.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let target = format!("ada@127.0.0.1:{port}");
    let run = pulsar(&daemon, &["new", "-d", "prod", "--ssh", &target]);
    assert_eq!(run.code, 1, "{}{}", run.stdout, run.stderr);
    assert!(
        run.stderr.contains("create session prod: "),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("127.0.0.1") && run.stderr.contains("refused"),
        "the daemon's answer names the host and the cause: {}",
        run.stderr
    );
}

#[tokio::test]
async fn new_serial_sends_the_documented_type_and_reports_a_missing_device() {
    let daemon = Daemon::start().await;
    let device = daemon.dir.path().join("ttyUSB-absent");
    let arg = format!("{}@9600", device.display());
    let run = pulsar(&daemon, &["new", "-d", "--serial", &arg]);
    assert_eq!(run.code, 1, "{}{}", run.stdout, run.stderr);
    assert!(run.stderr.contains("create a session: "), "{}", run.stderr);
    assert!(
        run.stderr.contains(device.to_str().unwrap()) && run.stderr.contains("does not exist"),
        "the daemon's answer names the device: {}",
        run.stderr
    );
}

#[tokio::test]
async fn ls_shows_name_id_prefix_type_state_clients_and_age() {
    let daemon = Daemon::start().await;
    let client = daemon.client().await;
    let id = create_shell(&client, "listed").await;
    let run = pulsar_ok(&daemon, &["ls"]);
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{}", run.stdout);
    let header: Vec<&str> = lines[0].split_whitespace().collect();
    assert_eq!(
        header,
        [
            "NAME",
            "ID",
            "TYPE",
            "STATE",
            "CLIENTS",
            "AGE",
            "MEM",
            "CPU",
            "WORKSPACE"
        ]
    );
    let row: Vec<&str> = lines[1].split_whitespace().collect();
    assert_eq!(
        row[..5],
        [
            "listed",
            &id.simple().to_string()[..8],
            "local",
            "detached",
            "0"
        ]
    );
    assert!(row[5].ends_with('s'), "age {}", row[5]);
}

/// Creates a workspace `name` whose one pane shows session `id`, through the typed client.
async fn workspace_showing(client: &PulsarClient, name: &str, id: SessionId) -> String {
    use pulsar_protocol::{PaneConfig, WorkspaceApiClient as _, WorkspaceLayout};
    let layout = WorkspaceLayout {
        version: "1.0.0".to_owned(),
        layout_type: "single".to_owned(),
        panes: vec![PaneConfig {
            id: "main".to_owned(),
            session_id: Some(id.to_string()),
            size: 100.0,
            direction: None,
            children: None,
            min_size: None,
            max_size: None,
        }],
        active_pane: Some("main".to_owned()),
    };
    client
        .workspace_create(
            name.to_owned(),
            None,
            None,
            layout,
            None,
            Some(vec!["dev".to_owned()]),
        )
        .await
        .expect("workspace_create")
        .id
}

#[tokio::test]
async fn ls_shows_the_workspace_each_session_is_in() {
    let daemon = Daemon::start().await;
    let client = daemon.client().await;
    let id = create_shell(&client, "in-a-workspace").await;
    create_shell(&client, "loose").await;
    workspace_showing(&client, "Rust dev", id).await;
    let run = pulsar_ok(&daemon, &["ls"]);
    let row = |name: &str| {
        run.stdout
            .lines()
            .find(|l| l.starts_with(name))
            .unwrap_or_else(|| panic!("{name} in {}", run.stdout))
            .to_owned()
    };
    assert!(
        row("in-a-workspace").ends_with("Rust dev"),
        "{}",
        run.stdout
    );
    assert!(row("loose").ends_with(" -"), "{}", run.stdout);
}

#[tokio::test]
async fn workspace_ls_show_and_rm_cover_the_desktops_workspaces() {
    let daemon = Daemon::start().await;
    let client = daemon.client().await;
    let id = create_shell(&client, "shown").await;
    let workspace = workspace_showing(&client, "Rust dev", id).await;
    let listed = pulsar_ok(&daemon, &["workspace", "ls"]);
    assert!(
        listed
            .stdout
            .lines()
            .nth(1)
            .unwrap()
            .starts_with("Rust dev"),
        "{}",
        listed.stdout
    );
    assert!(listed.stdout.contains(&workspace[..8]), "{}", listed.stdout);
    let shown = pulsar_ok(&daemon, &["workspace", "show", "Rust dev"]);
    assert!(
        shown.stdout.contains("pane main 100%: session shown"),
        "{}",
        shown.stdout
    );
    assert!(
        shown.stdout.contains("tags:        dev"),
        "{}",
        shown.stdout
    );
    let removed = pulsar_ok(&daemon, &["workspace", "rm", &workspace[..8]]);
    assert!(
        removed.stdout.starts_with("deleted workspace Rust dev"),
        "{}",
        removed.stdout
    );
    let missing = pulsar(&daemon, &["workspace", "show", "Rust dev"]);
    assert_eq!(missing.code, 4, "{}", missing.stderr);
}

#[tokio::test]
async fn ls_with_no_sessions_says_so() {
    let daemon = Daemon::start().await;
    let run = pulsar_ok(&daemon, &["ls"]);
    assert!(run.stdout.starts_with("no sessions"), "{}", run.stdout);
}

#[tokio::test]
async fn ls_json_lists_every_session_with_its_full_info() {
    let daemon = Daemon::start().await;
    let client = daemon.client().await;
    let first = create_shell(&client, "one").await;
    let second = create_shell(&client, "two").await;
    let run = pulsar_ok(&daemon, &["ls", "--json"]);
    let sessions: Vec<Value> = serde_json::from_str(&run.stdout).expect("a JSON array");
    let ids: Vec<&str> = sessions.iter().map(|s| s["id"].as_str().unwrap()).collect();
    assert_eq!(ids, [first.to_string(), second.to_string()]);
    assert_eq!(sessions[0]["type"]["kind"], "local");
    assert_eq!(sessions[0]["state"], "detached");
    assert!(sessions[0]["output_offset"].is_u64());
}

#[tokio::test]
async fn send_types_the_text_and_presses_enter() {
    let daemon = Daemon::start().await;
    let client = daemon.client().await;
    let id = create_shell(&client, "typing").await;
    pulsar_ok(&daemon, &["send", "typing", "echo", "sent-$((6*7))"]);
    read_until(&client, id, "sent-42").await;
}

#[tokio::test]
async fn send_interprets_escapes_only_when_asked() {
    let daemon = Daemon::start().await;
    let client = daemon.client().await;
    let id = create_shell(&client, "escapes").await;
    // As typed: the backslash reaches the shell, whose printf turns it into a newline.
    pulsar_ok(&daemon, &["send", "escapes", r"printf 'raw-%s\n' $((1+1))"]);
    read_until(&client, id, "raw-2\r\n").await;
    // With -e: \x41\x42 become AB and \r is the Enter key.
    pulsar_ok(
        &daemon,
        &[
            "send",
            "-e",
            "-n",
            "escapes",
            r"echo hex-\x41\x42-$((2+1))\r",
        ],
    );
    read_until(&client, id, "hex-AB-3").await;
}

#[tokio::test]
async fn send_no_newline_leaves_the_line_open() {
    let daemon = Daemon::start().await;
    let client = daemon.client().await;
    let id = create_shell(&client, "partial").await;
    pulsar_ok(&daemon, &["send", "-n", "partial", "echo part"]);
    pulsar_ok(&daemon, &["send", "partial", "ial-$((4+4))"]);
    read_until(&client, id, "partial-8").await;
}

#[tokio::test]
async fn send_wait_types_then_prints_what_the_output_matched() {
    let daemon = Daemon::start().await;
    let client = daemon.client().await;
    let id = create_shell(&client, "calc").await;
    read_until(&client, id, "calc$ ").await;
    let run = pulsar_ok(
        &daemon,
        &[
            "send",
            "--wait",
            "result=\\d+",
            "calc",
            "echo result=$((6*7))",
        ],
    );
    assert_eq!(run.stdout.trim(), "result=42");
}

#[tokio::test]
async fn wait_exits_5_when_nothing_matches_in_time() {
    let daemon = Daemon::start().await;
    let client = daemon.client().await;
    create_shell(&client, "quiet").await;
    let run = pulsar(&daemon, &["wait", "--timeout", "0.3", "quiet", "never"]);
    assert_eq!(run.code, 5, "{}{}", run.stdout, run.stderr);
    assert!(run.stderr.contains("quiet"), "{}", run.stderr);
}

#[tokio::test]
async fn wait_screen_sees_a_prompt_already_shown() {
    let daemon = Daemon::start().await;
    let client = daemon.client().await;
    let id = create_shell(&client, "shown").await;
    read_until(&client, id, "shown$ ").await;
    let run = pulsar_ok(&daemon, &["wait", "--screen", "shown", "(?m)^shown\\$$"]);
    assert_eq!(run.stdout.trim(), "shown$");
}

#[tokio::test]
async fn record_start_with_a_relative_file_and_stop_leave_a_cast_file_of_the_output() {
    let daemon = Daemon::start().await;
    let client = daemon.client().await;
    let id = create_shell(&client, "taped").await;
    read_until(&client, id, "taped$ ").await;
    let mut start = pulsar_command(
        &daemon.socket,
        daemon.dir.path(),
        &["record", "start", "taped", "taped.cast"],
    );
    start.current_dir(daemon.dir.path());
    let run = finish(start);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    let file = daemon.dir.path().join("taped.cast");
    assert!(
        run.stdout.contains(&*file.to_string_lossy()),
        "{}",
        run.stdout
    );
    pulsar_ok(
        &daemon,
        &[
            "send",
            "--wait",
            "recorded=\\d+",
            "taped",
            "echo recorded=$((6*7))",
        ],
    );
    let run = pulsar_ok(&daemon, &["record", "stop", "taped"]);
    assert!(
        run.stdout.contains("stopped recording session taped"),
        "{}",
        run.stdout
    );
    let cast = std::fs::read_to_string(&file).unwrap();
    assert!(
        cast.starts_with("{") && cast.contains("recorded=42"),
        "{cast}"
    );
    let again = pulsar(&daemon, &["record", "stop", "taped"]);
    assert_eq!(again.code, 1, "{}{}", again.stdout, again.stderr);
    assert!(again.stderr.contains("not recording"), "{}", again.stderr);
}

#[tokio::test]
async fn export_prints_the_session_output_as_an_asciicast_recording() {
    let daemon = Daemon::start().await;
    let client = daemon.client().await;
    let id = create_shell(&client, "told").await;
    read_until(&client, id, "told$ ").await;
    pulsar_ok(
        &daemon,
        &["send", "--wait", "said=\\d+", "told", "echo said=$((6*7))"],
    );
    let run = pulsar_ok(&daemon, &["export", "told"]);
    let mut lines = run.stdout.lines();
    let header: serde_json::Value = serde_json::from_str(lines.next().unwrap()).unwrap();
    assert_eq!(header["version"], 2);
    let output: String = lines
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()[2]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert!(output.contains("said=42"), "{output:?}");
}

/// `pulsar events ARGS...` running, its stdout lines arriving on a channel.
fn follow_events(
    daemon: &Daemon,
    args: &[&str],
) -> (std::process::Child, std::sync::mpsc::Receiver<String>) {
    let mut command = pulsar_command(&daemon.socket, daemon.dir.path(), args);
    let mut child = command
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn pulsar events");
    let stdout = child.stdout.take().expect("stdout");
    let (lines, received) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufRead::lines(std::io::BufReader::new(stdout)) {
            let Ok(line) = line else { break };
            if lines.send(line).is_err() {
                break;
            }
        }
    });
    (child, received)
}

/// Resizes `id` until `pulsar events` shows it is listening (its first line arrives), then
/// returns that line. Each resize is a new size, so each is an event.
async fn first_event_line(
    client: &PulsarClient,
    id: SessionId,
    lines: &std::sync::mpsc::Receiver<String>,
) -> String {
    let deadline = Deadline::start();
    for cols in 81.. {
        deadline.check("pulsar events to print a line");
        client.resize_terminal(id, cols, 24, None).await.unwrap();
        if let Ok(line) = lines.recv_timeout(std::time::Duration::from_millis(200)) {
            return line;
        }
    }
    unreachable!()
}

#[tokio::test]
async fn events_prints_a_line_per_event_naming_the_session() {
    let daemon = Daemon::start().await;
    let client = daemon.client().await;
    let id = create_shell(&client, "watched").await;
    let (mut child, lines) = follow_events(&daemon, &["events"]);
    let first = first_event_line(&client, id, &lines).await;
    assert!(first.starts_with("watched: resized to "), "{first}");
    pulsar_ok(&daemon, &["kill", "watched"]);
    let deadline = Deadline::start();
    loop {
        deadline.check("the exit line");
        let line = lines
            .recv_timeout(std::time::Duration::from_secs(1))
            .unwrap_or_default();
        if line.starts_with("watched: killed by signal") || line.starts_with("watched: exited") {
            break;
        }
    }
    child.kill().unwrap();
    child.wait().unwrap();
}

#[tokio::test]
async fn events_json_prints_the_daemons_objects() {
    let daemon = Daemon::start().await;
    let client = daemon.client().await;
    let id = create_shell(&client, "raw").await;
    let (mut child, lines) = follow_events(&daemon, &["events", "--json"]);
    let first: Value =
        serde_json::from_str(&first_event_line(&client, id, &lines).await).expect("JSON");
    assert_eq!(first["type"], "session_resized");
    assert_eq!(first["session_id"], id.to_string());
    child.kill().unwrap();
    child.wait().unwrap();
}

#[tokio::test]
async fn send_to_a_stopped_session_fails_naming_it() {
    let daemon = Daemon::start().await;
    let client = daemon.client().await;
    create_shell(&client, "gone").await;
    pulsar_ok(&daemon, &["kill", "gone"]);
    let run = pulsar(&daemon, &["send", "gone", "echo hi"]);
    assert_eq!(run.code, 1);
    assert!(
        run.stderr.contains("send to session gone"),
        "{}",
        run.stderr
    );
}

#[tokio::test]
async fn kill_by_name_stops_the_session() {
    let daemon = Daemon::start().await;
    let client = daemon.client().await;
    let id = create_shell(&client, "doomed").await;
    let run = pulsar_ok(&daemon, &["kill", "doomed"]);
    assert!(
        run.stdout.contains("killed session doomed"),
        "{}",
        run.stdout
    );
    assert_eq!(
        client.get_session(id).await.unwrap().state,
        SessionState::Stopped
    );
}

#[tokio::test]
async fn kill_by_id_prefix_stops_the_session() {
    let daemon = Daemon::start().await;
    let client = daemon.client().await;
    let id = create_shell(&client, "prefixed").await;
    pulsar_ok(&daemon, &["kill", &id.to_string()[..6]]);
    assert_eq!(
        client.get_session(id).await.unwrap().state,
        SessionState::Stopped
    );
}

#[tokio::test]
async fn names_win_over_id_prefixes() {
    let daemon = Daemon::start().await;
    let client = daemon.client().await;
    let by_id = create_shell(&client, "first").await;
    let prefix = &by_id.to_string()[..4];
    let by_name = create_shell(&client, prefix).await;
    pulsar_ok(&daemon, &["kill", prefix]);
    assert_eq!(
        client.get_session(by_name).await.unwrap().state,
        SessionState::Stopped
    );
    assert_eq!(
        client.get_session(by_id).await.unwrap().state,
        SessionState::Detached
    );
}

#[tokio::test]
async fn an_ambiguous_id_prefix_is_an_error_listing_the_candidates() {
    let daemon = Daemon::start().await;
    let client = daemon.client().await;
    // Seventeen ids over sixteen hex digits: two must share their first character.
    let mut by_first: std::collections::HashMap<char, Vec<SessionId>> = Default::default();
    for n in 0..17 {
        let id = client
            .create_session(
                Some(format!("s{n}")),
                command(&["sleep", "60"]),
                None,
                None,
                None,
                None,
                None,
            )
            .await
            .unwrap()
            .session_id;
        let first = id.to_string().chars().next().unwrap();
        by_first.entry(first).or_default().push(id);
    }
    let (first, ids) = by_first
        .iter()
        .find(|(_, ids)| ids.len() > 1)
        .expect("pigeonhole");
    let run = pulsar(&daemon, &["kill", &first.to_string()]);
    assert_eq!(run.code, 4, "{}", run.stderr);
    assert!(run.stderr.contains("matches"), "{}", run.stderr);
    for id in ids {
        assert!(run.stderr.contains(&id.to_string()), "{}", run.stderr);
        assert_eq!(
            client.get_session(*id).await.unwrap().state,
            SessionState::Detached
        );
    }
}

#[tokio::test]
async fn an_unknown_session_exits_4_naming_it() {
    let daemon = Daemon::start().await;
    // attach checks for a terminal first; give it one to get as far as the lookup.
    let pty = nix::pty::openpty(None, None).expect("openpty");
    for verb in [
        &["kill", "nosuch"][..],
        &["send", "nosuch", "x"],
        &["attach", "nosuch"],
    ] {
        let mut command = pulsar_command(&daemon.socket, daemon.dir.path(), verb);
        if verb[0] == "attach" {
            let terminal = pty.slave.try_clone().expect("dup the pty");
            command.stdin(Stdio::from(std::fs::File::from(terminal)));
        }
        let run = finish(command);
        assert_eq!(run.code, 4, "{verb:?}: {}", run.stderr);
        assert!(
            run.stderr.contains("\"nosuch\""),
            "{verb:?}: {}",
            run.stderr
        );
    }
}

#[tokio::test]
async fn status_reports_the_daemon() {
    let daemon = Daemon::start().await;
    let client = daemon.client().await;
    create_shell(&client, "counted").await;
    let run = pulsar_ok(&daemon, &["status"]);
    assert!(
        run.stdout.contains(&format!("(pid {})", daemon.child.id())),
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains("sessions: 1"), "{}", run.stdout);
    let json: Value = serde_json::from_str(&pulsar_ok(&daemon, &["status", "--json"]).stdout)
        .expect("status --json is JSON");
    assert_eq!(json["pid"], daemon.child.id());
    assert_eq!(json["num_sessions"], 1);
}

#[tokio::test]
async fn status_counts_sleeping_sessions_and_the_scrollback_they_released() {
    let daemon = Daemon::start_with(&[
        ("HIBERNATE_AFTER_SECS", "1"),
        ("CLEANUP_INTERVAL_SECS", "1"),
        ("PERSIST_INTERVAL_MS", "100"),
    ])
    .await;
    let client = daemon.client().await;
    let id = start_program(&client, &["/bin/sh", "-c", "seq 1 30000; read x"]).await;
    read_until(&client, id, "30000").await;
    let released = eventually("the scrollback to be released", || {
        let socket = daemon.socket.clone();
        async move {
            let status = try_call(&socket, "get_status", json!({}))?;
            let bytes = status["scrollback_released_bytes"].as_u64()?;
            (bytes > 190_000).then_some(bytes)
        }
    })
    .await;
    let run = pulsar_ok(&daemon, &["status"]);
    let expected = format!(
        "sessions: 1 (1 asleep, {} KiB of their scrollback in the database only)",
        released / 1024
    );
    assert!(run.stdout.contains(&expected), "{}", run.stdout);
}

#[tokio::test]
async fn without_a_daemon_every_verb_exits_3_and_says_how_to_start_one() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("absent.sock");
    for verb in [&["status"][..], &["ls"], &["kill", "x"], &["new", "-d"]] {
        let run = finish(pulsar_command(&socket, dir.path(), verb));
        assert_eq!(run.code, 3, "{verb:?}: {}", run.stderr);
        assert!(
            run.stderr.contains(&format!(
                "no Pulsar daemon is listening on {}",
                socket.display()
            )),
            "{}",
            run.stderr
        );
        assert!(run.stderr.contains("pulsar-standalone"), "{}", run.stderr);
    }
}

/// Stops a daemon that `pulsar --start` spawned (not our child), even if the test fails.
struct SpawnedDaemon(Option<i32>);

impl SpawnedDaemon {
    fn is_alive(pid: i32) -> bool {
        // A zombie (waiting for init to reap it) has exited.
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .map(|stat| !stat.contains(") Z "))
            .unwrap_or(false)
    }
}

impl Drop for SpawnedDaemon {
    fn drop(&mut self) {
        if let Some(pid) = self.0.take() {
            let pid = nix::unistd::Pid::from_raw(pid);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
        }
    }
}

#[tokio::test]
async fn start_spawns_a_daemon_when_none_answers() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("run/pulsar.sock");
    let run = finish(pulsar_command(
        &socket,
        dir.path(),
        &["--start", "status", "--json"],
    ));
    let mut spawned = SpawnedDaemon(None);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let status: Value = serde_json::from_str(&run.stdout).expect("status JSON");
    let pid = status["pid"].as_i64().expect("pid") as i32;
    spawned.0 = Some(pid);
    assert!(
        run.stderr.contains("started pulsar-standalone"),
        "{}",
        run.stderr
    );
    assert!(dir.path().join("run/pulsar-standalone.log").exists());
    // It runs in a session of its own, detached from the caller's terminal.
    assert_eq!(
        nix::unistd::getsid(Some(nix::unistd::Pid::from_raw(pid)))
            .unwrap()
            .as_raw(),
        pid
    );
    // A second --start finds it running and starts nothing.
    let again = finish(pulsar_command(
        &socket,
        dir.path(),
        &["--start", "status", "--json"],
    ));
    assert_eq!(again.code, 0, "{}", again.stderr);
    assert!(!again.stderr.contains("started"), "{}", again.stderr);

    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let deadline = Deadline::start();
    while SpawnedDaemon::is_alive(pid) {
        deadline.check("the spawned daemon to stop");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    spawned.0 = None;
}

#[tokio::test]
async fn attach_refuses_when_stdin_is_not_a_terminal() {
    let daemon = Daemon::start().await;
    let client = daemon.client().await;
    create_shell(&client, "piped").await;
    let run = pulsar(&daemon, &["attach", "piped"]);
    assert_eq!(run.code, 1);
    assert!(run.stderr.contains("needs a terminal"), "{}", run.stderr);
    let run = pulsar(&daemon, &["new", "fresh"]);
    assert_eq!(run.code, 1);
    assert!(run.stderr.contains("needs a terminal"), "{}", run.stderr);
    assert_eq!(client.list_sessions().await.unwrap().sessions.len(), 1);
}

#[test]
fn completions_are_printed_for_bash_zsh_and_fish() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("unused.sock");
    for shell in ["bash", "zsh", "fish"] {
        let run = finish(pulsar_command(&socket, dir.path(), &["completions", shell]));
        assert_eq!(run.code, 0, "{shell}: {}", run.stderr);
        for verb in ["attach", "kill", "send", "status"] {
            assert!(run.stdout.contains(verb), "{shell} completion lacks {verb}");
        }
    }
}

#[test]
fn every_verb_has_help_with_examples_and_bad_usage_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("unused.sock");
    let top = finish(pulsar_command(&socket, dir.path(), &["--help"]));
    assert_eq!(top.code, 0);
    assert!(top.stdout.contains("Exit codes:"), "{}", top.stdout);
    for verb in [
        "new",
        "ls",
        "attach",
        "kill",
        "send",
        "status",
        "shutdown",
        "upgrade",
        "completions",
    ] {
        let run = finish(pulsar_command(&socket, dir.path(), &[verb, "--help"]));
        assert_eq!(run.code, 0, "{verb}");
        assert!(
            run.stdout.contains("Examples:"),
            "{verb} --help: {}",
            run.stdout
        );
    }
    let bad = finish(pulsar_command(&socket, dir.path(), &["attach"]));
    assert_eq!(bad.code, 2, "{}", bad.stderr);
    let bad_key = finish(pulsar_command(
        &socket,
        dir.path(),
        &["attach", "--detach-key", "x", "s"],
    ));
    assert_eq!(bad_key.code, 2, "{}", bad_key.stderr);
    assert!(bad_key.stderr.contains("detach key"), "{}", bad_key.stderr);
}

// ---------------------------------------------------------------------------------------------
// Attach in a real terminal

/// A private tmux server (socket in the test's temp dir) with one 100×30 pane running
/// `/bin/sh` with the prompt `outer$ `. The server is killed when this is dropped, also when
/// the test panics, and also when its socket's directory is gone by then.
struct Tmux {
    socket: PathBuf,
    /// The server's pid, to end it without its socket.
    server: Option<i32>,
}

impl Tmux {
    /// Starts the server in `dir`, with `env` added to the outer shell's environment.
    async fn start(dir: &Path, env: &[(&str, &str)]) -> Self {
        let mut tmux = Self {
            socket: dir.join("tmux.sock"),
            server: None,
        };
        let mut command = Command::new("tmux");
        command
            .arg("-S")
            .arg(&tmux.socket)
            .args([
                "-f",
                "/dev/null",
                "new-session",
                "-d",
                "-x",
                "100",
                "-y",
                "30",
            ])
            .arg("env PS1='outer$ ' ENV= /bin/sh")
            .env_clear()
            .env("HOME", dir)
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("TERM", "xterm-256color");
        for (key, value) in env {
            command.env(key, value);
        }
        let status = command.status().expect("tmux (scripts/test installs it)");
        assert!(status.success(), "tmux new-session failed");
        tmux.server = tmux.format("#{pid}").parse().ok();
        tmux.wait_for("outer$").await;
        tmux
    }

    fn run(&self, args: &[&str]) -> String {
        let out = Command::new("tmux")
            .arg("-S")
            .arg(&self.socket)
            .args(args)
            .output()
            .expect("run tmux");
        assert!(
            out.status.success(),
            "tmux {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Types `line` and Enter into the pane.
    fn type_line(&self, line: &str) {
        self.run(&["send-keys", "-l", line]);
        self.run(&["send-keys", "Enter"]);
    }

    /// Sends raw bytes, e.g. `&[0x1c]` for Ctrl-\.
    fn press(&self, bytes: &[u8]) {
        let hex: Vec<String> = bytes.iter().map(|b| format!("{b:02x}")).collect();
        let mut args = vec!["send-keys", "-H"];
        args.extend(hex.iter().map(String::as_str));
        self.run(&args);
    }

    /// The visible pane, one string per row.
    fn screen(&self) -> String {
        self.run(&["capture-pane", "-p"])
    }

    /// A tmux format value of the pane, e.g. `#{alternate_on}`.
    fn format(&self, format: &str) -> String {
        self.run(&["display-message", "-p", format])
            .trim()
            .to_owned()
    }

    /// Waits until the pane shows `needle`; returns the screen. A timeout shows the pane.
    async fn wait_for(&self, needle: &str) -> String {
        let deadline = Deadline::start();
        loop {
            let screen = self.screen();
            if screen.contains(needle) {
                return screen;
            }
            deadline.check(&format!(
                "{needle:?} on the tmux pane, which shows:\n{screen}"
            ));
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    }

    /// Runs `stty -a` in the outer shell and returns what it printed (through a file, so the
    /// pane's width does not matter). `tag` makes the completion marker unique.
    async fn outer_stty(&self, dir: &Path, tag: u32) -> String {
        let file = dir.join(format!("stty-{tag}.txt"));
        self.type_line(&format!(
            "stty -a > '{}'; echo stty-done-$(({tag}+1000))",
            file.display()
        ));
        self.wait_for(&format!("stty-done-{}", tag + 1000)).await;
        std::fs::read_to_string(&file).expect("stty output")
    }

    /// The command line that attaches to `target` on `daemon`.
    fn attach_line(daemon: &Daemon, args: &str) -> String {
        format!(
            "'{}' --socket '{}' {args}",
            artifact("pulsar").display(),
            daemon.socket.display()
        )
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let killed = Command::new("tmux")
            .arg("-S")
            .arg(&self.socket)
            .arg("kill-server")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|status| status.success());
        // A test that dropped its daemon (and with it the directory of the socket) first.
        if !killed && let Some(pid) = self.server {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGTERM,
            );
        }
    }
}

/// Waits until `id` has exactly `clients` clients.
async fn wait_clients(client: &PulsarClient, id: SessionId, clients: usize) {
    eventually(&format!("{clients} client(s) on the session"), || async {
        let info = client.get_session(id).await.unwrap();
        (info.num_clients == clients).then_some(())
    })
    .await;
}

/// Starts a daemon, a shell session named `name` and a tmux pane attached to it.
async fn attached(name: &str) -> (Daemon, PulsarClient, SessionId, Tmux) {
    attached_with(name, "").await
}

/// [`attached`], with `flags` for `pulsar attach` (`--relay`).
async fn attached_with(name: &str, flags: &str) -> (Daemon, PulsarClient, SessionId, Tmux) {
    let daemon = Daemon::start().await;
    let client = daemon.client().await;
    let id = create_shell(&client, name).await;
    let tmux = Tmux::start(daemon.dir.path(), &[]).await;
    tmux.type_line(&Tmux::attach_line(
        &daemon,
        &format!("attach {flags} {name}"),
    ));
    tmux.wait_for(&format!("{name}$")).await;
    wait_clients(&client, id, 1).await;
    (daemon, client, id, tmux)
}

/// Waits until the tmux pane shows exactly the session's screen, row for row.
async fn pane_shows_the_session_screen(tmux: &Tmux, client: &PulsarClient, id: SessionId) {
    eventually("the pane to show the session's screen", || async {
        let pane: Vec<String> = tmux
            .screen()
            .lines()
            .map(|l| l.trim_end().to_owned())
            .collect();
        (pane == screen_text(client, id).await).then_some(())
    })
    .await;
}

/// Whether the daemon holds `tty` (a `/dev/pts/N` path) open.
async fn daemon_holds(client: &PulsarClient, tty: &str) -> bool {
    let pid = client.get_status().await.unwrap().pid;
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .filter_map(|fd| std::fs::read_link(fd.ok()?.path()).ok())
        .any(|target| target == Path::new(tty))
}

#[tokio::test]
async fn attach_hands_the_terminal_to_the_daemon_and_gets_it_back_at_detach() {
    let (_daemon, client, id, tmux) = attached("handed").await;
    let tty = tmux.format("#{pane_tty}");
    assert!(daemon_holds(&client, &tty).await, "the daemon has {tty}");
    tmux.type_line("echo typed-$((6*7))");
    tmux.wait_for("typed-42").await;
    tmux.press(&[0x1c]);
    tmux.wait_for("[detached from handed]").await;
    wait_clients(&client, id, 0).await;
    assert!(
        !daemon_holds(&client, &tty).await,
        "the daemon let go of {tty}"
    );
    tmux.type_line("echo rc=$?");
    tmux.wait_for("rc=0").await;
}

#[tokio::test]
async fn attach_relay_keeps_the_terminal_and_carries_its_bytes() {
    let (_daemon, client, id, tmux) = attached_with("relayed", "--relay").await;
    let tty = tmux.format("#{pane_tty}");
    assert!(
        !daemon_holds(&client, &tty).await,
        "the daemon never had {tty}"
    );
    tmux.type_line("echo typed-$((6*7))");
    tmux.wait_for("typed-42").await;
    let rows = screen_text(&client, id).await;
    assert!(rows.iter().any(|r| r == "typed-42"), "{rows:?}");
    tmux.press(&[0x1c]);
    tmux.wait_for("[detached from relayed]").await;
    wait_clients(&client, id, 0).await;
}

#[tokio::test]
async fn attach_shows_the_output_of_what_is_typed() {
    let (_daemon, client, id, tmux) = attached("typed").await;
    tmux.type_line("echo hello-$((6*7))");
    tmux.wait_for("hello-42").await;
    let rows = screen_text(&client, id).await;
    assert!(rows.iter().any(|r| r == "hello-42"), "{rows:?}");
}

#[tokio::test]
async fn attach_follows_the_size_of_the_outer_terminal() {
    let (_daemon, client, id, tmux) = attached("sized").await;
    let info = client.get_session(id).await.unwrap();
    assert_eq!(
        (info.cols, info.rows),
        (100, 30),
        "the size is sent at attach"
    );
    tmux.run(&["resize-window", "-x", "120", "-y", "40"]);
    eventually("the session to follow the resize", || async {
        let info = client.get_session(id).await.unwrap();
        ((info.cols, info.rows) == (120, 40)).then_some(())
    })
    .await;
    tmux.type_line("stty size");
    tmux.wait_for("40 120").await;
}

#[tokio::test]
async fn detach_key_leaves_the_session_running_and_restores_the_terminal() {
    let daemon = Daemon::start().await;
    let client = daemon.client().await;
    let id = create_shell(&client, "kept").await;
    let tmux = Tmux::start(daemon.dir.path(), &[]).await;
    let before = tmux.outer_stty(daemon.dir.path(), 1).await;
    tmux.type_line(&Tmux::attach_line(&daemon, "attach kept"));
    tmux.wait_for("kept$").await;
    wait_clients(&client, id, 1).await;

    tmux.press(&[0x1c]);
    tmux.wait_for("[detached from kept]").await;
    wait_clients(&client, id, 0).await;
    let info = client.get_session(id).await.unwrap();
    assert_eq!(info.state, SessionState::Detached);
    // Back in cooked mode: the outer shell reads a line and runs it, with the same settings.
    tmux.type_line("echo rc=$?");
    tmux.wait_for("rc=0").await;
    assert_eq!(tmux.outer_stty(daemon.dir.path(), 2).await, before);
}

#[tokio::test]
async fn reattach_redraws_the_same_screen() {
    let (daemon, client, id, tmux) = attached("again").await;
    tmux.type_line("printf 'row %s\\n' one two three");
    tmux.wait_for("row three").await;
    tmux.press(&[0x1c]);
    tmux.wait_for("[detached from again]").await;
    wait_clients(&client, id, 0).await;
    // Output while nobody watches is part of the screen too.
    pulsar_ok(&daemon, &["send", "again", "echo while-away-$((5*5))"]);
    read_until(&client, id, "while-away-25").await;
    tmux.type_line("clear");
    tmux.wait_for("outer$").await;

    tmux.type_line(&Tmux::attach_line(&daemon, "attach again"));
    wait_clients(&client, id, 1).await;
    let expected = screen_text(&client, id).await;
    assert!(
        expected.iter().any(|r| r == "while-away-25"),
        "{expected:?}"
    );
    pane_shows_the_session_screen(&tmux, &client, id).await;
}

#[tokio::test]
async fn detach_key_comes_from_the_environment() {
    let daemon = Daemon::start().await;
    let client = daemon.client().await;
    let id = create_shell(&client, "keyed").await;
    let tmux = Tmux::start(daemon.dir.path(), &[("PULSAR_DETACH_KEY", "^]")]).await;
    tmux.type_line(&Tmux::attach_line(&daemon, "attach keyed"));
    tmux.wait_for("keyed$").await;
    wait_clients(&client, id, 1).await;
    // Ctrl-\ is an ordinary key now: the session gets it, and what follows.
    tmux.press(&[0x1c]);
    tmux.type_line("echo still-$((2*2))");
    tmux.wait_for("still-4").await;
    wait_clients(&client, id, 1).await;
    tmux.press(&[0x1d]);
    tmux.wait_for("[detached from keyed]").await;
    wait_clients(&client, id, 0).await;
}

#[tokio::test]
async fn session_exit_ends_attach_with_its_code_and_restores_the_terminal() {
    let daemon = Daemon::start().await;
    let client = daemon.client().await;
    create_shell(&client, "ending").await;
    let tmux = Tmux::start(daemon.dir.path(), &[]).await;
    let before = tmux.outer_stty(daemon.dir.path(), 1).await;
    tmux.type_line(&Tmux::attach_line(&daemon, "attach ending"));
    tmux.wait_for("ending$").await;
    tmux.type_line("exit 3");
    tmux.wait_for("[session ending exited with code 3]").await;
    tmux.type_line("echo rc=$?");
    tmux.wait_for("rc=0").await;
    assert_eq!(tmux.outer_stty(daemon.dir.path(), 2).await, before);
}

#[tokio::test]
async fn losing_the_daemon_ends_attach_with_a_message_and_exit_code_3() {
    let mut daemon = Daemon::start().await;
    let client = daemon.client().await;
    let id = create_shell(&client, "orphan").await;
    let tmux = Tmux::start(daemon.dir.path(), &[]).await;
    let before = tmux.outer_stty(daemon.dir.path(), 1).await;
    tmux.type_line(&Tmux::attach_line(&daemon, "attach orphan"));
    tmux.wait_for("orphan$").await;
    wait_clients(&client, id, 1).await;
    daemon.child.kill().expect("kill the daemon");
    let _ = daemon.child.wait();
    tmux.wait_for("[lost connection to the daemon]").await;
    tmux.type_line("echo rc=$?");
    tmux.wait_for("rc=3").await;
    assert_eq!(tmux.outer_stty(daemon.dir.path(), 2).await, before);
}

#[tokio::test]
async fn new_creates_a_session_and_attaches_to_it() {
    let daemon = Daemon::start().await;
    let client = daemon.client().await;
    let tmux = Tmux::start(daemon.dir.path(), &[]).await;
    tmux.type_line(&Tmux::attach_line(
        &daemon,
        // Split in quotes so that the typed line does not show the prompt itself.
        "new fresh -- env PS1='fr''esh$ ' ENV= /bin/sh",
    ));
    tmux.wait_for("fresh$").await;
    let sessions = client.list_sessions().await.unwrap().sessions;
    assert_eq!(sessions.len(), 1);
    assert_eq!(sessions[0].name, "fresh");
    wait_clients(&client, sessions[0].id, 1).await;
    let info = client.get_session(sessions[0].id).await.unwrap();
    assert_eq!((info.cols, info.rows), (100, 30), "the terminal's size");
    tmux.press(&[0x1c]);
    tmux.wait_for("[detached from fresh]").await;
}

#[tokio::test]
async fn read_only_attach_watches_without_typing() {
    let daemon = Daemon::start().await;
    let client = daemon.client().await;
    let id = create_shell(&client, "watched").await;
    let tmux = Tmux::start(daemon.dir.path(), &[]).await;
    tmux.type_line(&Tmux::attach_line(&daemon, "attach --read-only watched"));
    tmux.wait_for("watched$").await;
    wait_clients(&client, id, 1).await;
    tmux.type_line("echo typed-$((1+1))");
    // Others' typing is shown...
    pulsar_ok(&daemon, &["send", "watched", "echo other-$((3+3))"]);
    tmux.wait_for("other-6").await;
    tmux.press(&[0x1c]);
    tmux.wait_for("[detached from watched]").await;
    // ...and ours never reached the session: had it, its echo would precede this marker.
    pulsar_ok(&daemon, &["send", "watched", "echo marker-$((4+5))"]);
    read_until(&client, id, "marker-9").await;
    let rows = screen_text(&client, id).await;
    assert!(!rows.iter().any(|r| r.contains("typed-")), "{rows:?}");
}

#[tokio::test]
async fn detaching_from_a_full_screen_program_resets_the_outer_terminal_modes() {
    detach_from_full_screen("").await;
}

#[tokio::test]
async fn detaching_from_a_full_screen_program_while_relaying_resets_the_outer_terminal_modes() {
    detach_from_full_screen("--relay").await;
}

/// Attaches (with `flags`) to vim with the mouse on, detaches, and checks every mode vim set
/// on the outer terminal was reset.
async fn detach_from_full_screen(flags: &str) {
    let daemon = Daemon::start().await;
    let client = daemon.client().await;
    let file = daemon.dir.path().join("notes.txt");
    std::fs::write(&file, "full screen\n").unwrap();
    let vim = serde_json::from_value(json!({
        "kind": "local",
        "command": ["vim", "-u", "NONE", "-N", "-n", "-i", "NONE", "-c", "set mouse=a", file],
    }))
    .unwrap();
    let id = client
        .create_session(Some("vim".into()), vim, None, None, None, None, None)
        .await
        .unwrap()
        .session_id;
    let tmux = Tmux::start(daemon.dir.path(), &[]).await;
    tmux.type_line(&Tmux::attach_line(&daemon, &format!("attach {flags} vim")));
    tmux.wait_for("full screen").await;
    wait_clients(&client, id, 1).await;
    assert_eq!(tmux.format("#{alternate_on}"), "1", "vim's screen is shown");
    assert_eq!(
        tmux.format("#{mouse_any_flag}"),
        "1",
        "vim asked for the mouse"
    );
    assert_eq!(
        tmux.format("#{keypad_cursor_flag} #{keypad_flag}"),
        "1 1",
        "vim asked for application cursor keys and keypad"
    );

    tmux.press(&[0x1c]);
    tmux.wait_for("[detached from vim]").await;
    assert_eq!(tmux.format("#{alternate_on}"), "0");
    assert_eq!(tmux.format("#{mouse_any_flag}"), "0");
    assert_eq!(tmux.format("#{keypad_cursor_flag}"), "0");
    assert_eq!(tmux.format("#{keypad_flag}"), "0");
    assert_eq!(tmux.format("#{cursor_flag}"), "1", "the cursor is visible");
    client
        .send_input(id, pulsar_protocol::Base64Data::from("\x1b:q!\r"), None)
        .await
        .unwrap();
}

#[tokio::test]
async fn shutdown_stops_the_daemon_and_ends_every_session() {
    let mut daemon = Daemon::start().await;
    let client = daemon.client().await;
    let id = create_shell(&client, "doomed").await;
    let pid = client.get_session(id).await.unwrap().pid.expect("a pid");
    drop(client);
    let run = pulsar_ok(&daemon, &["shutdown"]);
    assert!(run.stdout.contains("every session ended"), "{}", run.stdout);
    let exit = wait_exit(&mut daemon.child, "the daemon");
    assert!(exit.success(), "{exit:?}");
    eventually("the session's shell to end", || async {
        process_gone(pid).then_some(())
    })
    .await;
}

#[tokio::test]
async fn shutdown_keep_sessions_leaves_them_for_the_next_daemon() {
    let mut daemon = Daemon::start().await;
    let client = daemon.client().await;
    let id = create_shell(&client, "kept").await;
    let pid = client.get_session(id).await.unwrap().pid.expect("a pid");
    drop(client);
    pulsar_ok(&daemon, &["shutdown", "--keep-sessions"]);
    let exit = wait_exit(&mut daemon.child, "the daemon");
    assert!(exit.success(), "{exit:?}");
    assert!(!process_gone(pid));
    let daemon = daemon.start_again(&[]).await;
    let info = daemon.client().await.get_session(id).await.unwrap();
    assert_eq!(info.pid, Some(pid));
}

#[tokio::test]
async fn attach_carries_on_through_an_upgrade_without_losing_the_connection() {
    carry_on_through_an_upgrade("").await;
}

#[tokio::test]
async fn attach_relaying_carries_on_through_an_upgrade_without_losing_the_connection() {
    carry_on_through_an_upgrade("--relay").await;
}

/// Attaches (with `flags`), upgrades the daemon, and checks the pane goes on exactly: what
/// is typed after shows, and the pane is the session's screen (nothing lost or shown twice).
async fn carry_on_through_an_upgrade(flags: &str) {
    let (daemon, _client, id, tmux) = attached_with("through", flags).await;
    tmux.type_line("printf 'row %s\\n' one two");
    tmux.wait_for("row two").await;
    let run = pulsar_ok(&daemon, &["upgrade"]);
    assert!(run.stdout.contains("upgraded: pid"), "{}", run.stdout);
    tmux.type_line("echo after-$((6*7))");
    let screen = tmux.wait_for("after-42").await;
    assert!(!screen.contains("lost connection"), "{screen}");
    let client = daemon.client().await;
    wait_clients(&client, id, 1).await;
    pane_shows_the_session_screen(&tmux, &client, id).await;
}

#[tokio::test]
async fn attach_carries_on_through_a_daemon_crash_and_restart() {
    let (daemon, _client, _id, tmux) = attached("crashed").await;
    let daemon = daemon.crash_and_restart(&[]).await;
    tmux.type_line("echo back-$((6*7))");
    let screen = tmux.wait_for("back-42").await;
    assert!(!screen.contains("lost connection"), "{screen}");
    drop(daemon);
}

#[tokio::test]
async fn upgrade_to_a_missing_binary_fails_naming_it_and_the_daemon_serves_on() {
    let daemon = Daemon::start().await;
    let client = daemon.client().await;
    let before = client.get_status().await.unwrap().pid;
    let run = pulsar(
        &daemon,
        &["upgrade", "--binary", "/nonexistent/pulsar-standalone"],
    );
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(
        run.stderr.contains("/nonexistent/pulsar-standalone"),
        "{}",
        run.stderr
    );
    assert_eq!(client.get_status().await.unwrap().pid, before);
}

#[tokio::test]
#[cfg_attr(no_openssh, ignore = "needs OpenSSH (sshd, ssh-keygen)")]
async fn new_ssh_with_an_alias_means_what_ssh_means() {
    let sshd = pulsar_e2e::sshd::Sshd::start();
    let daemon = Daemon::start().await;
    sshd.trust(daemon.dir.path());
    std::fs::write(
        daemon.dir.path().join(".ssh/config"),
        format!(
            "Host devbox\n  HostName 127.0.0.1\n  Port {}\n  User {}\n  IdentityFile {}\n",
            sshd.port,
            pulsar_e2e::sshd::TEST_USER,
            sshd.client_key.display()
        ),
    )
    .unwrap();
    let run = pulsar_ok(&daemon, &["new", "-d", "dev", "--ssh", "devbox"]);
    let id = run.stdout.trim();
    let mut line = daemon.line().await;
    let info = line.ok("get_session", json!({"session_id": id})).await;
    assert_eq!(
        info["type"],
        json!({"kind": "ssh", "host": "devbox"}),
        "{info}"
    );
    assert_eq!(
        (
            &info["ssh"]["host"],
            &info["ssh"]["port"],
            &info["ssh"]["user"]
        ),
        (
            &json!("127.0.0.1"),
            &json!(sshd.port),
            &json!(pulsar_e2e::sshd::TEST_USER)
        ),
        "{info}"
    );
}

#[tokio::test]
async fn top_once_shows_each_running_session_s_usage_and_limits() {
    let daemon = Daemon::start().await;
    let mut line = daemon.line().await;
    line.ok(
        "create_session",
        json!({
            "name": "limited",
            "type": {"kind": "local", "command": ["/bin/cat"]},
            "limits": {"nofile_max": 64, "output_bytes_per_sec": 1_048_576},
        }),
    )
    .await;
    let run = pulsar_ok(&daemon, &["top", "--once"]);
    let lines: Vec<&str> = run.stdout.lines().collect();
    let header: Vec<&str> = lines[0].split_whitespace().collect();
    assert_eq!(
        header,
        ["NAME", "ID", "PID", "CPU", "MEM", "PEAK", "PROCS", "LIMITS"],
        "{}",
        run.stdout
    );
    assert!(lines[1].starts_with("limited"), "{}", run.stdout);
    assert!(
        lines[1].ends_with("nofile 64 (rlimit), output 1.0M/s (pump)"),
        "{}",
        run.stdout
    );
    let row: Vec<&str> = lines[1].split_whitespace().collect();
    assert!(row[3].ends_with('%') && row[4] != "-", "{}", run.stdout);
    // `ls` shows the same usage.
    let listed = pulsar_ok(&daemon, &["ls"]);
    assert!(
        listed.stdout.lines().nth(1).unwrap().contains('%'),
        "{}",
        listed.stdout
    );
}
