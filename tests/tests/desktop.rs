//! The upstream Orbit desktop against a real daemon: every call it makes, read into types as
//! strict as its own serde types, and its output WebSocket read the way `PulsarTerminal.tsx`
//! reads it (each text frame base64-decoded into the terminal), with the locks on that port.

use pulsar_e2e::desktop::*;
use pulsar_e2e::sshd::{Sshd, TEST_USER};
use pulsar_e2e::*;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use uuid::Uuid;

// The desktop's shapes (`daemon_client.rs`), as strict as serde's defaults make them.

#[derive(Debug, Clone, PartialEq, Deserialize)]
enum SessionState {
    Running,
    Detached,
    Stopped,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
enum SessionType {
    Local,
    Ssh { host: String, port: u16 },
    Serial { device: String },
}

#[derive(Debug, Clone, Deserialize)]
#[allow(dead_code)] // read to prove the shape, not all looked at
struct SessionInfo {
    id: Uuid,
    name: String,
    session_type: SessionType,
    created_at: String,
    last_active: String,
    state: SessionState,
    num_clients: usize,
}

#[derive(Debug, Deserialize)]
#[allow(dead_code)]
struct DaemonStatus {
    version: String,
    uptime_seconds: u64,
    num_sessions: usize,
    num_clients: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct WorkspaceLayout {
    version: String,
    #[serde(rename = "type")]
    layout_type: String,
    panes: Vec<PaneConfig>,
    active_pane: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct PaneConfig {
    id: String,
    session_id: Option<String>,
    size: f32,
    direction: Option<String>,
    children: Option<Vec<PaneConfig>>,
    min_size: Option<u32>,
    max_size: Option<u32>,
}

#[derive(Debug, Clone, Deserialize)]
#[allow(dead_code)]
struct Workspace {
    id: String,
    name: String,
    description: Option<String>,
    icon: Option<String>,
    layout: WorkspaceLayout,
    created_at: String,
    updated_at: String,
    is_template: bool,
    tags: Option<Vec<String>>,
}

#[derive(Debug, Clone, Deserialize)]
#[allow(dead_code)]
struct WorkspaceSnapshot {
    id: String,
    workspace_id: String,
    name: String,
    layout: WorkspaceLayout,
    created_at: String,
}

/// The desktop's requests are serialised from these, so absent options are `null`.
#[derive(Serialize)]
struct CreateWorkspaceRequest {
    name: String,
    description: Option<String>,
    icon: Option<String>,
    layout: WorkspaceLayout,
    is_template: bool,
    tags: Option<Vec<String>>,
}

#[derive(Serialize, Default)]
struct UpdateWorkspaceRequest {
    name: Option<String>,
    description: Option<String>,
    icon: Option<String>,
    layout: Option<WorkspaceLayout>,
    tags: Option<Vec<String>>,
}

#[derive(Serialize, Default)]
struct WorkspaceFilter {
    is_template: Option<bool>,
    tags: Option<Vec<String>>,
    search: Option<String>,
}

fn pane(id: &str, session_id: Option<&str>) -> PaneConfig {
    PaneConfig {
        id: id.to_owned(),
        session_id: session_id.map(str::to_owned),
        size: 50.0,
        direction: None,
        children: None,
        min_size: Some(100),
        max_size: None,
    }
}

fn split(panes: Vec<PaneConfig>) -> WorkspaceLayout {
    WorkspaceLayout {
        version: "1.0.0".to_owned(),
        layout_type: "split".to_owned(),
        panes: vec![PaneConfig {
            direction: Some("horizontal".to_owned()),
            children: Some(panes),
            size: 100.0,
            ..pane("root", None)
        }],
        active_pane: None,
    }
}

/// `daemon_create_local_session`: the id of a new `Local` session.
async fn create_local(desktop: &mut DesktopClient, name: &str) -> String {
    let created: Value = desktop
        .call(
            "create_session",
            json!({"name": name, "type": SessionType::Local, "cols": 80, "rows": 24}),
        )
        .await
        .expect("create_session");
    let id = created["session_id"].as_str().expect("session_id");
    Uuid::parse_str(id).expect("a UUID").to_string()
}

async fn list(desktop: &mut DesktopClient) -> Vec<SessionInfo> {
    let result = desktop
        .raw("list_sessions", json!({}))
        .await
        .expect("list_sessions");
    serde_json::from_value(result["sessions"].clone())
        .unwrap_or_else(|e| panic!("the desktop cannot read {result}: {e}"))
}

async fn desktop_daemon() -> (Daemon, u16) {
    let port = desktop_port();
    let daemon = Daemon::start_with(&[("DESKTOP_WEBSOCKET", &format!("127.0.0.1:{port}"))]).await;
    (daemon, port)
}

#[tokio::test]
async fn desktop_reads_the_session_list_in_its_own_shape() {
    let daemon = Daemon::start().await;
    let mut desktop = DesktopClient::connect(&daemon.socket).await;
    let id = create_local(&mut desktop, "Local Terminal").await;
    let sessions = list(&mut desktop).await;
    assert_eq!(sessions.len(), 1);
    assert_eq!(sessions[0].id.to_string(), id);
    assert_eq!(sessions[0].name, "Local Terminal");
    assert_eq!(sessions[0].session_type, SessionType::Local);
    assert_eq!(sessions[0].state, SessionState::Detached);
    assert_eq!(sessions[0].num_clients, 0);
}

#[tokio::test]
async fn desktop_conversation_on_a_local_session_works_with_strict_types() {
    let daemon = Daemon::start().await;
    let mut desktop = DesktopClient::connect(&daemon.socket).await;
    let id = create_local(&mut desktop, "Terminal 1").await;
    let client_id = Uuid::new_v4();
    desktop
        .raw(
            "attach_session",
            json!({"session_id": id, "client_id": client_id}),
        )
        .await
        .expect("attach");
    assert_eq!(list(&mut desktop).await[0].state, SessionState::Running);

    let written: Value = desktop
        .call(
            "send_input",
            json!({"session_id": id, "data": b64(b"echo desk''top-says-hi\n")}),
        )
        .await
        .expect("send_input");
    assert_eq!(written["bytes_written"].as_u64(), Some(23));
    let deadline = Deadline::start();
    let mut seen = Vec::new();
    while !String::from_utf8_lossy(&seen).contains("desktop-says-hi\r\n") {
        deadline.check("the echo");
        let out = desktop
            .raw(
                "receive_output",
                json!({"session_id": id, "timeout_ms": 200}),
            )
            .await
            .expect("receive_output");
        let data = unb64(out["data"].as_str().expect("data"));
        assert_eq!(out["bytes_read"].as_u64(), Some(data.len() as u64));
        seen.extend(data);
    }

    desktop
        .raw(
            "resize_terminal",
            json!({"session_id": id, "cols": 120, "rows": 40}),
        )
        .await
        .expect("resize");
    desktop
        .raw(
            "detach_session",
            json!({"session_id": id, "client_id": client_id}),
        )
        .await
        .expect("detach");
    assert_eq!(list(&mut desktop).await[0].state, SessionState::Detached);
    let status: DaemonStatus = desktop.call("get_status", json!({})).await.unwrap();
    assert_eq!(status.num_sessions, 1);
    desktop
        .raw("terminate_session", json!({"session_id": id}))
        .await
        .expect("terminate");
    assert_eq!(list(&mut desktop).await[0].state, SessionState::Stopped);
}

#[tokio::test]
#[cfg_attr(no_openssh, ignore = "needs OpenSSH (sshd, ssh-keygen)")]
async fn desktop_creates_an_ssh_session_and_reads_it_back_as_ssh() {
    let sshd = Sshd::start();
    let daemon = Daemon::start_with_env(&[], &[]).await;
    sshd.trust(daemon.dir.path());
    std::fs::copy(&sshd.client_key, daemon.dir.path().join(".ssh/id_ed25519")).unwrap();
    let mut desktop = DesktopClient::connect(&daemon.socket).await;
    // The desktop's type has no user: `user@host` says it, as to an SSH client.
    let ty = SessionType::Ssh {
        host: format!("{TEST_USER}@127.0.0.1"),
        port: sshd.port,
    };
    let created = desktop
        .raw(
            "create_session",
            json!({"name": "build box", "type": ty, "cols": 80, "rows": 24}),
        )
        .await
        .unwrap_or_else(|e| panic!("create ssh: {e:?}\n{}", sshd.log()));
    let id = created["session_id"].as_str().unwrap().to_owned();
    let sessions = list(&mut desktop).await;
    assert_eq!(
        sessions[0].session_type,
        SessionType::Ssh {
            host: "127.0.0.1".to_owned(),
            port: sshd.port
        }
    );
    desktop
        .raw(
            "send_input",
            json!({"session_id": id, "data": b64(b"echo over-s''sh\n")}),
        )
        .await
        .unwrap();
    let mut line = daemon.line().await;
    let session = json!(id);
    line.read_output_until(&session, "over-ssh\r\n").await;
    desktop
        .raw("terminate_session", json!({"session_id": id}))
        .await
        .unwrap();
}

#[tokio::test]
async fn desktop_workspace_methods_work_with_strict_types() {
    let daemon = Daemon::start().await;
    let mut desktop = DesktopClient::connect(&daemon.socket).await;
    let left = create_local(&mut desktop, "left").await;
    let right = create_local(&mut desktop, "right").await;
    let layout = split(vec![pane("a", Some(&left)), pane("b", Some(&right))]);
    let request = CreateWorkspaceRequest {
        name: "Rust dev".to_owned(),
        description: Some("two shells".to_owned()),
        icon: None,
        layout: layout.clone(),
        is_template: false,
        tags: Some(vec!["rust".to_owned(), "work".to_owned()]),
    };
    let created: Workspace = desktop
        .call("workspace_create", serde_json::to_value(&request).unwrap())
        .await
        .unwrap();
    assert_eq!(created.layout, layout);
    chrono_like(&created.created_at);

    let got: Option<Workspace> = desktop
        .call("workspace_get", json!({"id": created.id}))
        .await
        .unwrap();
    assert_eq!(got.unwrap().name, "Rust dev");
    let missing: Option<Workspace> = desktop
        .call("workspace_get", json!({"id": "nope"}))
        .await
        .unwrap();
    assert!(missing.is_none());

    let listed: Vec<Workspace> = desktop
        .call(
            "workspace_list",
            serde_json::to_value(WorkspaceFilter::default()).unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(listed.len(), 1);

    let snapshot: WorkspaceSnapshot = desktop
        .call(
            "workspace_save_snapshot",
            json!({"workspace_id": created.id, "name": "before"}),
        )
        .await
        .unwrap();
    assert_eq!(snapshot.layout, layout);

    let update = UpdateWorkspaceRequest {
        name: Some("Rust work".to_owned()),
        layout: Some(split(vec![pane("a", Some(&left))])),
        ..Default::default()
    };
    let updated: Option<Workspace> = desktop
        .call(
            "workspace_update",
            json!({"id": created.id, "request": update}),
        )
        .await
        .unwrap();
    let updated = updated.unwrap();
    assert_eq!(updated.name, "Rust work");
    assert_eq!(updated.description.as_deref(), Some("two shells"));

    let snapshots: Vec<WorkspaceSnapshot> = desktop
        .call(
            "workspace_list_snapshots",
            json!({"workspace_id": created.id}),
        )
        .await
        .unwrap();
    assert_eq!(snapshots.len(), 1);
    let restored: Option<Workspace> = desktop
        .call(
            "workspace_restore_snapshot",
            json!({"snapshot_id": snapshot.id}),
        )
        .await
        .unwrap();
    assert_eq!(restored.unwrap().layout, layout);

    let deleted: bool = desktop
        .call("workspace_delete", json!({"id": created.id}))
        .await
        .unwrap();
    assert!(deleted);
    let again: bool = desktop
        .call("workspace_delete", json!({"id": created.id}))
        .await
        .unwrap();
    assert!(!again);
}

/// An RFC 3339 time, as the desktop parses it with `new Date(...)`.
fn chrono_like(text: &str) {
    assert!(
        text.len() >= 20 && text.as_bytes()[4] == b'-' && text.contains('T'),
        "{text}"
    );
}

#[tokio::test]
async fn workspace_list_honours_is_template_tags_and_search() {
    let daemon = Daemon::start().await;
    let mut desktop = DesktopClient::connect(&daemon.socket).await;
    for (name, template, tags, description) in [
        ("Rust dev", false, vec!["rust", "work"], None),
        ("Ops", false, vec!["work"], Some("rust servers")),
        ("Starter", true, vec!["rust"], None),
    ] {
        let request = CreateWorkspaceRequest {
            name: name.to_owned(),
            description: description.map(str::to_owned),
            icon: None,
            layout: split(vec![pane("a", None)]),
            is_template: template,
            tags: Some(tags.into_iter().map(str::to_owned).collect()),
        };
        let _: Workspace = desktop
            .call("workspace_create", serde_json::to_value(&request).unwrap())
            .await
            .unwrap();
    }
    let templates = WorkspaceFilter {
        is_template: Some(true),
        ..Default::default()
    };
    assert_eq!(names(&mut desktop, templates).await, ["Starter"]);
    let tagged = WorkspaceFilter {
        tags: Some(vec!["rust".to_owned(), "work".to_owned()]),
        ..Default::default()
    };
    assert_eq!(names(&mut desktop, tagged).await, ["Rust dev"]);
    let searched = WorkspaceFilter {
        is_template: Some(false),
        search: Some("RUST".to_owned()),
        ..Default::default()
    };
    assert_eq!(names(&mut desktop, searched).await, ["Ops", "Rust dev"]);
}

/// The names `workspace_list` answers `filter` with, sorted.
async fn names(desktop: &mut DesktopClient, filter: WorkspaceFilter) -> Vec<String> {
    let mut found: Vec<String> = desktop
        .call::<Vec<Workspace>>("workspace_list", serde_json::to_value(filter).unwrap())
        .await
        .unwrap()
        .into_iter()
        .map(|w| w.name)
        .collect();
    found.sort();
    found
}

#[tokio::test]
async fn workspaces_survive_a_daemon_restart() {
    let daemon = Daemon::start().await;
    let mut desktop = DesktopClient::connect(&daemon.socket).await;
    let request = CreateWorkspaceRequest {
        name: "kept".to_owned(),
        description: None,
        icon: Some("🦀".to_owned()),
        layout: split(vec![pane("a", None)]),
        is_template: false,
        tags: None,
    };
    let created: Workspace = desktop
        .call("workspace_create", serde_json::to_value(&request).unwrap())
        .await
        .unwrap();
    let _: WorkspaceSnapshot = desktop
        .call(
            "workspace_save_snapshot",
            json!({"workspace_id": created.id, "name": "s"}),
        )
        .await
        .unwrap();
    let daemon = daemon.restart(&[]).await;
    let mut desktop = DesktopClient::connect(&daemon.socket).await;
    let got: Option<Workspace> = desktop
        .call("workspace_get", json!({"id": created.id}))
        .await
        .unwrap();
    let got = got.expect("the workspace after a restart");
    assert_eq!(got.icon.as_deref(), Some("🦀"));
    assert_eq!(got.created_at, created.created_at);
    let snapshots: Vec<WorkspaceSnapshot> = desktop
        .call(
            "workspace_list_snapshots",
            json!({"workspace_id": created.id}),
        )
        .await
        .unwrap();
    assert_eq!(snapshots.len(), 1);
}

#[tokio::test]
async fn restoring_a_snapshot_starts_its_stopped_sessions_again() {
    let daemon = Daemon::start().await;
    let mut desktop = DesktopClient::connect(&daemon.socket).await;
    let id = create_local(&mut desktop, "revived").await;
    let request = CreateWorkspaceRequest {
        name: "w".to_owned(),
        description: None,
        icon: None,
        layout: split(vec![
            pane("a", Some(&id)),
            pane("b", Some(&Uuid::new_v4().to_string())),
        ]),
        is_template: false,
        tags: None,
    };
    let created: Workspace = desktop
        .call("workspace_create", serde_json::to_value(&request).unwrap())
        .await
        .unwrap();
    let snapshot: WorkspaceSnapshot = desktop
        .call(
            "workspace_save_snapshot",
            json!({"workspace_id": created.id, "name": "s"}),
        )
        .await
        .unwrap();
    desktop
        .raw("terminate_session", json!({"session_id": id}))
        .await
        .unwrap();
    assert_eq!(list(&mut desktop).await[0].state, SessionState::Stopped);
    let restored: Option<Workspace> = desktop
        .call(
            "workspace_restore_snapshot",
            json!({"snapshot_id": snapshot.id}),
        )
        .await
        .unwrap();
    let panes = restored.unwrap().layout.panes[0].children.clone().unwrap();
    assert_eq!(panes[0].session_id.as_deref(), Some(id.as_str()));
    assert_eq!(
        panes[1].session_id, None,
        "a session that is gone is unlinked"
    );
    let sessions = list(&mut desktop).await;
    assert_eq!(sessions[0].id.to_string(), id);
    assert_eq!(sessions[0].state, SessionState::Detached, "started again");
}

#[tokio::test]
async fn desktop_socket_first_frame_redraws_the_screen_then_streams_live_output() {
    let (daemon, port) = desktop_daemon().await;
    let mut line = daemon.line().await;
    let id = line
        .ok(
            "create_session",
            json!({"type": {"kind": "local", "command": ["/bin/cat"]}}),
        )
        .await["session_id"]
        .clone();
    line.ok(
        "send_input",
        json!({"session_id": id, "data": b64(b"before-the-desktop\n")}),
    )
    .await;
    line.read_output_until(&id, "before-the-desktop\r\n").await;
    let mut socket = open(port, &session_path(id.as_str().unwrap()), None)
        .await
        .expect("a native client without Origin is let in");
    let first = socket.next_bytes().await.expect("the snapshot frame");
    // Nothing changed since: the frame is exactly the session's snapshot.
    let attached = line
        .ok(
            "attach_session",
            json!({"session_id": id, "client_id": "observer", "mode": "read_only"}),
        )
        .await;
    assert_eq!(first, unb64(attached["snapshot"]["data"].as_str().unwrap()));
    assert!(String::from_utf8_lossy(&first).contains("before-the-desktop"));

    socket.send_text_input(b"typed-as-text\n").await;
    socket.read_until("typed-as-text\r\n").await;
    socket.send_binary_input(b"typed-as-binary\n").await;
    socket.read_until("typed-as-binary\r\n").await;
    socket.close().await;
}

#[tokio::test]
async fn desktop_socket_for_an_unknown_session_says_so_and_closes() {
    let (_daemon, port) = desktop_daemon().await;
    let mut socket = open(port, &session_path(&Uuid::new_v4().to_string()), None)
        .await
        .unwrap();
    assert_eq!(
        socket.next().await,
        Frame::Text("Error: Session not found".to_owned())
    );
    assert_eq!(socket.next().await, Frame::Closed);
}

#[tokio::test]
async fn desktop_socket_refuses_a_foreign_origin() {
    let (daemon, port) = desktop_daemon().await;
    let mut line = daemon.line().await;
    let id = line.ok("create_session", json!({"type": "Local"})).await["session_id"].clone();
    let refused = open(
        port,
        &session_path(id.as_str().unwrap()),
        Some("https://evil.example"),
    )
    .await;
    assert_eq!(refused.err(), Some(403));
    let log = eventually("the refusal in the log", || {
        let log = daemon.log();
        async move { log.contains("is not allowed").then_some(log) }
    })
    .await;
    assert!(log.contains("evil.example"), "{log}");
    // The desktop's own origin is let in.
    let allowed = open(
        port,
        &session_path(id.as_str().unwrap()),
        Some("tauri://localhost"),
    )
    .await;
    assert!(allowed.is_ok());
}

#[tokio::test]
async fn desktop_socket_refuses_another_uid_before_any_byte() {
    if !nix::unistd::geteuid().is_root() {
        panic!("this test runs as root so that it can connect as `nobody`");
    }
    let (daemon, port) = desktop_daemon().await;
    drop(connect_tcp(port).await); // listening
    let outcome = connect_tcp_as_nobody(port);
    assert_eq!(outcome, NobodyOutcome::ClosedWithoutReply);
    let log = eventually("the refusal in the log", || {
        let log = daemon.log();
        async move { log.contains("refused a desktop connection").then_some(log) }
    })
    .await;
    assert!(log.contains("uid=Some(65534)"), "{log}");
}

#[tokio::test]
async fn a_non_loopback_desktop_address_stops_the_daemon_with_a_clear_error() {
    let home = tempfile::tempdir().unwrap();
    let socket = home.path().join("run/pulsar.sock");
    let mut child = Daemon::spawn(
        home.path(),
        &socket,
        &[("DESKTOP_WEBSOCKET", "0.0.0.0:3030")],
    );
    let exit = wait_exit(&mut child, "the daemon");
    assert!(!exit.success());
    let log = std::fs::read_to_string(home.path().join("daemon.log")).unwrap();
    assert!(log.contains("desktop_websocket"), "{log}");
    assert!(log.contains("not a loopback address"), "{log}");
}

#[derive(Debug, PartialEq, Eq)]
enum NobodyOutcome {
    ClosedWithoutReply,
    GotReply,
}

/// Forks a child that becomes uid/gid 65534, connects to the desktop port, sends a
/// WebSocket handshake and reports whether any byte came back. The child only makes raw
/// syscalls on memory prepared before the fork.
fn connect_tcp_as_nobody(port: u16) -> NobodyOutcome {
    let addr = libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: port.to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from_ne_bytes([127, 0, 0, 1]),
        },
        sin_zero: [0; 8],
    };
    let request = format!(
        "GET /ws/{} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n\
         Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
         Sec-WebSocket-Version: 13\r\n\r\n",
        Uuid::new_v4()
    );
    // SAFETY: the child only makes raw syscalls on prepared memory and then _exits.
    unsafe {
        let pid = libc::fork();
        assert!(pid >= 0, "fork failed");
        if pid == 0 {
            if libc::setgid(65534) != 0 || libc::setuid(65534) != 0 {
                libc::_exit(10);
            }
            let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0);
            let len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
            if libc::connect(fd, (&addr as *const libc::sockaddr_in).cast(), len) != 0 {
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
            code => panic!("the child failed ({code})"),
        }
    }
}

#[tokio::test]
async fn a_slow_desktop_reader_is_resynchronised_and_never_slows_the_session() {
    let port = desktop_port();
    let daemon = Daemon::start_with(&[
        ("DESKTOP_WEBSOCKET", &format!("127.0.0.1:{port}")),
        ("SCROLLBACK_BYTES", "262144"),
    ])
    .await;
    let mut line = daemon.line().await;
    let id = line
        .ok(
            "create_session",
            json!({"type": {"kind": "local", "command": ["/bin/sh", "-c", "read go; \
                head -c 8388608 /dev/zero | tr '\\0' x; echo; echo all-done; sleep 60"]}}),
        )
        .await["session_id"]
        .clone();
    // A reader with a tiny receive buffer that does not read while the program writes.
    let mut socket = open_slow(port, &session_path(id.as_str().unwrap()))
        .await
        .unwrap();
    line.ok(
        "send_input",
        json!({"session_id": id, "data": b64(b"go\n")}),
    )
    .await;
    // The session gets through all of it regardless.
    screen_shows(&daemon, &id, "all-done").await;
    let seen = socket.read_until("all-done").await;
    assert!(
        seen.contains("\x1bc"),
        "the reader was reset and sent a snapshot"
    );
    assert!(
        seen.len() < 8 * 1024 * 1024,
        "a lagging reader gets a snapshot, not the whole backlog ({} bytes)",
        seen.len()
    );
}

#[tokio::test]
async fn a_snapshot_of_an_unknown_workspace_is_error_1021_naming_it() {
    let daemon = Daemon::start().await;
    let mut line = daemon.line().await;
    let unknown = Uuid::new_v4();
    let err = line
        .err(
            "workspace_save_snapshot",
            json!({"workspace_id": unknown, "name": "before"}),
        )
        .await;
    assert_eq!(err["code"], 1021, "{err}");
    assert_eq!(err["data"]["workspace_id"], unknown.to_string(), "{err}");
}
