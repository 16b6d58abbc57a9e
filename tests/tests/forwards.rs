//! Port forwards on SSH sessions end to end (`add_forward`, `list_forwards`,
//! `remove_forward`): `-L`, `-R` and `-D` through a real OpenSSH server on 127.0.0.1 to a TCP
//! echo server each test starts, across detached clients, reconnects and daemon restarts.
//! Without OpenSSH the tests are compiled as ignored (`tests/build.rs`).

use std::net::SocketAddr;

use pulsar_e2e::sshd::{Sshd, TEST_USER};
use pulsar_e2e::*;
use pulsar_protocol::error as code;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A TCP echo server on a free loopback port, for as long as the test holds it.
struct Echo {
    port: u16,
    task: tokio::task::JoinHandle<()>,
}

impl Echo {
    async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind echo");
        let port = listener.local_addr().unwrap().port();
        let task = tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let (mut read, mut write) = stream.split();
                    let _ = tokio::io::copy(&mut read, &mut write).await;
                });
            }
        });
        Self { port, task }
    }

    fn target(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

impl Drop for Echo {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// An SSH `type` for `sshd` as the test user, with its key.
fn ssh_type(sshd: &Sshd) -> Value {
    json!({
        "kind": "ssh",
        "host": "127.0.0.1",
        "port": sshd.port,
        "user": TEST_USER,
        "auth": {"agent": false, "key_files": [sshd.client_key]},
    })
}

/// A daemon (with `settings`) trusting `sshd`, and an SSH session on it; returns its id.
async fn daemon_with_session(sshd: &Sshd, settings: &[(&str, &str)]) -> (Daemon, Value) {
    let daemon = Daemon::start_with_env(settings, &[]).await;
    sshd.trust(daemon.dir.path());
    let mut line = daemon.line().await;
    let id = line
        .ok("create_session", json!({"type": ssh_type(sshd)}))
        .await["session_id"]
        .clone();
    (daemon, id)
}

async fn add(
    line: &mut LineClient,
    id: &Value,
    kind: &str,
    listen: &str,
    target: Option<&str>,
) -> Value {
    let mut params = json!({"session_id": id, "kind": kind, "listen": listen});
    if let Some(target) = target {
        params["target"] = json!(target);
    }
    line.ok("add_forward", params).await
}

/// The forward's `listen` address, to connect to.
fn listen_addr(forward: &Value) -> SocketAddr {
    forward["listen"]
        .as_str()
        .expect("listen")
        .parse()
        .expect("an address")
}

/// Sends `text` through `stream` and expects it back.
async fn echoes(stream: &mut TcpStream, text: &str) {
    stream.write_all(text.as_bytes()).await.expect("write");
    let mut back = vec![0u8; text.len()];
    tokio::time::timeout(
        std::time::Duration::from_secs(5),
        stream.read_exact(&mut back),
    )
    .await
    .expect("the echo in time")
    .expect("read the echo");
    assert_eq!(String::from_utf8_lossy(&back), text);
}

async fn connect_and_echo(addr: SocketAddr, text: &str) {
    let mut stream = TcpStream::connect(addr)
        .await
        .expect("connect to the forward");
    echoes(&mut stream, text).await;
}

/// The forward `id` as `list_forwards` shows it now.
async fn forward_info(line: &mut LineClient, id: &Value) -> Value {
    let all = line.ok("list_forwards", json!({})).await;
    all["forwards"]
        .as_array()
        .expect("forwards")
        .iter()
        .find(|f| f["id"] == *id)
        .cloned()
        .unwrap_or(Value::Null)
}

/// Polls forward `id` until `ok` holds of its info; returns it.
async fn forward_until(
    line: &mut LineClient,
    id: &Value,
    what: &str,
    ok: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Deadline::start();
    loop {
        let info = forward_info(line, id).await;
        if ok(&info) {
            return info;
        }
        deadline.check(&format!("{what}: {info}"));
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// A SOCKS5 CONNECT without authentication to `host` (a name, an IPv4 or an IPv6 address)
/// and `port`.
async fn socks_connect(proxy: SocketAddr, host: &str, port: u16) -> TcpStream {
    let mut stream = TcpStream::connect(proxy)
        .await
        .expect("connect to the proxy");
    stream.write_all(&[5, 1, 0]).await.unwrap();
    let mut choice = [0u8; 2];
    stream.read_exact(&mut choice).await.unwrap();
    assert_eq!(choice, [5, 0], "no authentication chosen");
    let mut request = vec![5, 1, 0];
    match host.parse::<std::net::IpAddr>() {
        Ok(std::net::IpAddr::V4(ip)) => {
            request.push(1);
            request.extend_from_slice(&ip.octets());
        }
        Ok(std::net::IpAddr::V6(ip)) => {
            request.push(4);
            request.extend_from_slice(&ip.octets());
        }
        Err(_) => {
            request.push(3);
            request.push(host.len() as u8);
            request.extend_from_slice(host.as_bytes());
        }
    }
    request.extend_from_slice(&port.to_be_bytes());
    stream.write_all(&request).await.unwrap();
    // VER REP RSV ATYP, then the bound address of that type and a port.
    let mut reply = [0u8; 4];
    stream.read_exact(&mut reply).await.unwrap();
    assert_eq!(reply[..2], [5, 0], "CONNECT succeeded");
    let bound = match reply[3] {
        1 => 4,
        4 => 16,
        other => panic!("a bound address of type {other}"),
    };
    let mut rest = vec![0u8; bound + 2];
    stream.read_exact(&mut rest).await.unwrap();
    stream
}

#[tokio::test]
#[cfg_attr(no_openssh, ignore = "needs OpenSSH (sshd, ssh-keygen)")]
async fn local_forward_carries_connections_to_the_target_and_counts_them() {
    let sshd = Sshd::start();
    let echo = Echo::start().await;
    let (daemon, id) = daemon_with_session(&sshd, &[]).await;
    let mut line = daemon.line().await;
    let forward = add(&mut line, &id, "local", "0", Some(&echo.target())).await;
    assert_eq!(forward["kind"], "local");
    assert_eq!(forward["state"], "active");
    assert_eq!(forward["target"], echo.target());
    let addr = listen_addr(&forward);
    assert!(addr.ip().is_loopback(), "loopback by default: {forward}");

    connect_and_echo(addr, "through -L").await;
    let info = forward_until(
        &mut line,
        &forward["id"],
        "the connection counted and closed",
        |f| f["total_connections"] == 1 && f["connections"] == 0,
    )
    .await;
    assert_eq!(info["bytes_in"], 10, "{info}");
    assert_eq!(info["bytes_out"], 10, "{info}");
    let session = line.ok("get_session", json!({"session_id": id})).await;
    assert_eq!(session["forwards"], 1, "{session}");
}

#[tokio::test]
#[cfg_attr(no_openssh, ignore = "needs OpenSSH (sshd, ssh-keygen)")]
async fn remote_forward_brings_the_servers_connections_back_to_the_target() {
    let sshd = Sshd::start();
    let echo = Echo::start().await;
    let (daemon, id) = daemon_with_session(&sshd, &[]).await;
    let mut line = daemon.line().await;
    let forward = add(&mut line, &id, "remote", "0", Some(&echo.target())).await;
    let addr = listen_addr(&forward);
    assert_ne!(addr.port(), 0, "the port the server picked: {forward}");
    // The server is on this host: its listener is reachable here.
    connect_and_echo(addr, "through -R").await;
    forward_until(&mut line, &forward["id"], "the connection counted", |f| {
        f["total_connections"] == 1
    })
    .await;
}

#[tokio::test]
#[cfg_attr(no_openssh, ignore = "needs OpenSSH (sshd, ssh-keygen)")]
async fn dynamic_forward_is_a_socks5_proxy_to_names_and_ipv4_addresses() {
    let sshd = Sshd::start();
    let echo = Echo::start().await;
    let (daemon, id) = daemon_with_session(&sshd, &[]).await;
    let mut line = daemon.line().await;
    let forward = add(&mut line, &id, "dynamic", "0", None).await;
    let proxy = listen_addr(&forward);
    let mut by_name = socks_connect(proxy, "localhost", echo.port).await;
    echoes(&mut by_name, "by name").await;
    let mut by_ip = socks_connect(proxy, "127.0.0.1", echo.port).await;
    echoes(&mut by_ip, "by ipv4").await;
    let info = forward_info(&mut line, &forward["id"]).await;
    assert_eq!(info["connections"], 2, "{info}");
}

#[tokio::test]
#[cfg_attr(no_openssh, ignore = "needs OpenSSH (sshd, ssh-keygen)")]
async fn dynamic_forward_connects_to_an_ipv6_address() {
    let sshd = Sshd::start();
    let listener = TcpListener::bind("[::1]:0").await.expect("bind [::1]");
    let port = listener.local_addr().unwrap().port();
    let echo = tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let (mut read, mut write) = stream.split();
                let _ = tokio::io::copy(&mut read, &mut write).await;
            });
        }
    });
    let (daemon, id) = daemon_with_session(&sshd, &[]).await;
    let mut line = daemon.line().await;
    let forward = add(&mut line, &id, "dynamic", "0", None).await;
    let mut by_ipv6 = socks_connect(listen_addr(&forward), "::1", port).await;
    echoes(&mut by_ipv6, "by ipv6").await;
    let info = forward_info(&mut line, &forward["id"]).await;
    assert_eq!(info["total_connections"], 1, "{info}");
    echo.abort();
}

#[tokio::test]
#[cfg_attr(no_openssh, ignore = "needs OpenSSH (sshd, ssh-keygen)")]
async fn forwards_keep_working_after_every_client_detached() {
    let sshd = Sshd::start();
    let echo = Echo::start().await;
    let (daemon, id) = daemon_with_session(&sshd, &[]).await;
    let mut line = daemon.line().await;
    line.ok("attach_session", json!({"session_id": id})).await;
    let forward = add(&mut line, &id, "local", "0", Some(&echo.target())).await;
    drop(line);
    let mut line = daemon.line().await;
    let deadline = Deadline::start();
    while line.ok("get_session", json!({"session_id": id})).await["num_clients"] != 0 {
        deadline.check("the client to be detached");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    connect_and_echo(listen_addr(&forward), "nobody attached").await;
}

#[tokio::test]
#[cfg_attr(no_openssh, ignore = "needs OpenSSH (sshd, ssh-keygen)")]
async fn forwards_come_back_after_the_connection_reconnects() {
    let mut sshd = Sshd::start();
    let echo = Echo::start().await;
    let (daemon, id) = daemon_with_session(
        &sshd,
        &[
            ("SSH_RECONNECT", "true"),
            ("SSH_RECONNECT_MAX_BACKOFF_MS", "100"),
        ],
    )
    .await;
    let mut line = daemon.line().await;
    let local = add(&mut line, &id, "local", "0", Some(&echo.target())).await;
    let remote = add(&mut line, &id, "remote", "0", Some(&echo.target())).await;

    sshd.kill();
    forward_until(&mut line, &local["id"], "the local forward down", |f| {
        f["state"] == "down"
    })
    .await;
    sshd.restart();
    forward_until(
        &mut line,
        &remote["id"],
        "the remote forward re-established",
        |f| f["state"] == "active",
    )
    .await;
    connect_and_echo(listen_addr(&local), "-L after reconnect").await;
    connect_and_echo(listen_addr(&remote), "-R after reconnect").await;
}

#[tokio::test]
#[cfg_attr(no_openssh, ignore = "needs OpenSSH (sshd, ssh-keygen)")]
async fn forwards_come_back_after_a_daemon_restart() {
    let sshd = Sshd::start();
    let echo = Echo::start().await;
    let (daemon, id) = daemon_with_session(&sshd, &[]).await;
    let mut line = daemon.line().await;
    let forward = add(&mut line, &id, "local", "0", Some(&echo.target())).await;
    drop(line);

    let daemon = daemon.restart(&[]).await;
    let mut line = daemon.line().await;
    let info = forward_info(&mut line, &forward["id"]).await;
    assert_eq!(info["listen"], forward["listen"], "the same port: {info}");
    assert_eq!(info["session_id"], id);
    connect_and_echo(listen_addr(&forward), "after the restart").await;
}

#[tokio::test]
#[cfg_attr(no_openssh, ignore = "needs OpenSSH (sshd, ssh-keygen)")]
async fn a_saved_forward_whose_port_was_taken_meanwhile_is_kept_as_failed_after_a_restart() {
    let sshd = Sshd::start();
    let echo = Echo::start().await;
    let (mut daemon, id) = daemon_with_session(&sshd, &[]).await;
    let mut line = daemon.line().await;
    let forward = add(&mut line, &id, "local", "0", Some(&echo.target())).await;
    drop(line);

    daemon.shut_down();
    let squatter = std::net::TcpListener::bind(listen_addr(&forward)).expect("take the port");
    let daemon = daemon.start_again(&[]).await;
    let mut line = daemon.line().await;
    let info = forward_until(&mut line, &forward["id"], "the forward listed", |f| {
        !f.is_null()
    })
    .await;
    assert_eq!(info["state"], "failed", "{info}");
    assert_eq!(info["listen"], forward["listen"], "{info}");
    assert_eq!(info["session_id"], id);
    let why = info["last_error"].as_str().expect("last_error");
    assert!(why.contains("in use"), "{why}");
    // Still the user's to remove.
    line.ok("remove_forward", json!({"forward_id": forward["id"]}))
        .await;
    assert!(forward_info(&mut line, &forward["id"]).await.is_null());
    drop(squatter);
}

#[tokio::test]
#[cfg_attr(no_openssh, ignore = "needs OpenSSH (sshd, ssh-keygen)")]
async fn forwards_keep_working_across_upgrade_daemon() {
    let sshd = Sshd::start();
    let echo = Echo::start().await;
    let (daemon, id) = daemon_with_session(&sshd, &[]).await;
    let mut line = daemon.line().await;
    let local = add(&mut line, &id, "local", "0", Some(&echo.target())).await;
    let dynamic = add(&mut line, &id, "dynamic", "0", None).await;
    let to = line.ok("upgrade_daemon", json!({})).await["to_pid"]
        .as_u64()
        .expect("to_pid") as u32;
    drop(line);
    eventually("the new daemon to serve", || async {
        (serving_pid(&daemon.socket) == Some(to)).then_some(())
    })
    .await;
    let mut line = daemon.line().await;
    for forward in [&local, &dynamic] {
        let info = forward_until(&mut line, &forward["id"], "the forward back", |f| {
            f["state"] == "active"
        })
        .await;
        assert_eq!(info["listen"], forward["listen"], "the same port: {info}");
    }
    connect_and_echo(listen_addr(&local), "-L after the upgrade").await;
    let mut through = socks_connect(listen_addr(&dynamic), "127.0.0.1", echo.port).await;
    echoes(&mut through, "-D after the upgrade").await;
}

#[tokio::test]
#[cfg_attr(no_openssh, ignore = "needs OpenSSH (sshd, ssh-keygen)")]
async fn a_revived_ssh_session_gets_its_saved_forwards_back() {
    let sshd = Sshd::start();
    let echo = Echo::start().await;
    let (daemon, id) = daemon_with_session(&sshd, &[]).await;
    let mut line = daemon.line().await;
    let forward = add(&mut line, &id, "local", "0", Some(&echo.target())).await;
    let pane = |pane: &str, session: Option<&Value>| json!({"id": pane, "session_id": session, "size": 100.0});
    let layout = json!({"version": "1.0.0", "type": "split", "panes": [pane("a", Some(&id))]});
    let workspace = line
        .ok("workspace_create", json!({"name": "w", "layout": layout}))
        .await;
    let snapshot = line
        .ok(
            "workspace_save_snapshot",
            json!({"workspace_id": workspace["id"], "name": "s"}),
        )
        .await;
    line.ok("terminate_session", json!({"session_id": id}))
        .await;
    forward_until(
        &mut line,
        &forward["id"],
        "the forward gone with the session",
        |f| f.is_null(),
    )
    .await;

    line.ok(
        "workspace_restore_snapshot",
        json!({"snapshot_id": snapshot["id"]}),
    )
    .await;
    let info = forward_until(&mut line, &forward["id"], "the forward back", |f| {
        f["state"] == "active"
    })
    .await;
    assert_eq!(info["listen"], forward["listen"], "the same port: {info}");
    connect_and_echo(listen_addr(&forward), "after the revival").await;
}

#[tokio::test]
#[cfg_attr(no_openssh, ignore = "needs OpenSSH (sshd, ssh-keygen)")]
async fn create_session_may_carry_its_forwards() {
    let sshd = Sshd::start();
    let echo = Echo::start().await;
    let daemon = Daemon::start_with_env(&[], &[]).await;
    sshd.trust(daemon.dir.path());
    let mut line = daemon.line().await;
    let created = line
        .ok(
            "create_session",
            json!({"type": ssh_type(&sshd), "forwards": [
                {"kind": "local", "listen": "0", "target": echo.target()},
                {"kind": "dynamic", "listen": "127.0.0.1:0"},
            ]}),
        )
        .await;
    assert_eq!(created["forwards"], 2, "{created}");
    let listed = line
        .ok(
            "list_forwards",
            json!({"session_id": created["session_id"]}),
        )
        .await;
    let local = &listed["forwards"][0];
    assert_eq!(local["kind"], "local", "{listed}");
    connect_and_echo(listen_addr(local), "from create").await;
}

#[tokio::test]
#[cfg_attr(no_openssh, ignore = "needs OpenSSH (sshd, ssh-keygen)")]
async fn a_refusing_target_closes_that_connection_counts_it_and_the_forward_stays_up() {
    let sshd = Sshd::start();
    let echo = Echo::start().await;
    let (daemon, id) = daemon_with_session(&sshd, &[]).await;
    let mut line = daemon.line().await;
    let closed_port = free_port_now();
    let refusing = add(
        &mut line,
        &id,
        "local",
        "0",
        Some(&format!("127.0.0.1:{closed_port}")),
    )
    .await;
    let mut stream = TcpStream::connect(listen_addr(&refusing)).await.unwrap();
    let mut buf = [0u8; 1];
    let read = tokio::time::timeout(std::time::Duration::from_secs(5), stream.read(&mut buf))
        .await
        .expect("closed in time");
    assert!(
        matches!(read, Ok(0) | Err(_)),
        "the connection is closed: {read:?}"
    );
    let info = forward_until(&mut line, &refusing["id"], "the failure counted", |f| {
        f["failed_connections"] == 1
    })
    .await;
    let error = info["last_error"].as_str().expect("last_error");
    assert!(error.contains(&closed_port.to_string()), "{error}");
    assert_eq!(info["state"], "active", "{info}");
    // Still listening: a second connection is accepted (and refused the same way).
    TcpStream::connect(listen_addr(&refusing))
        .await
        .expect("still listening");
    forward_until(&mut line, &refusing["id"], "the second failure", |f| {
        f["failed_connections"] == 2
    })
    .await;
    // The session's other forwards are untouched.
    let working = add(&mut line, &id, "local", "0", Some(&echo.target())).await;
    connect_and_echo(listen_addr(&working), "still fine").await;
}

/// A loopback port nothing listens on (bound, then let go).
fn free_port_now() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test]
#[cfg_attr(no_openssh, ignore = "needs OpenSSH (sshd, ssh-keygen)")]
async fn remove_forward_closes_the_listener() {
    let sshd = Sshd::start();
    let echo = Echo::start().await;
    let (daemon, id) = daemon_with_session(&sshd, &[]).await;
    let mut line = daemon.line().await;
    let forward = add(&mut line, &id, "local", "0", Some(&echo.target())).await;
    line.ok("remove_forward", json!({"forward_id": forward["id"]}))
        .await;
    let refused = TcpStream::connect(listen_addr(&forward)).await;
    assert!(refused.is_err(), "nothing listens any more");
    assert_eq!(forward_info(&mut line, &forward["id"]).await, Value::Null);
    let session = line.ok("get_session", json!({"session_id": id})).await;
    assert!(session.get("forwards").is_none(), "{session}");
}

#[tokio::test]
#[cfg_attr(no_openssh, ignore = "needs OpenSSH (sshd, ssh-keygen)")]
async fn error_address_in_use_is_1024() {
    let sshd = Sshd::start();
    let (daemon, id) = daemon_with_session(&sshd, &[]).await;
    let mut line = daemon.line().await;
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let err = line
        .err(
            "add_forward",
            json!({"session_id": id, "kind": "local", "listen": port.to_string(), "target": "127.0.0.1:1"}),
        )
        .await;
    assert_eq!(err["code"], code::FORWARD_ADDRESS_IN_USE, "{err}");
    assert_eq!(err["data"]["session_id"], id);
    assert!(
        err["message"].as_str().unwrap().contains(&port.to_string()),
        "{err}"
    );
}

#[tokio::test]
#[cfg_attr(no_openssh, ignore = "needs OpenSSH (sshd, ssh-keygen)")]
async fn error_the_server_refusing_tcpip_forward_is_1025() {
    let sshd = Sshd::start();
    let (daemon, id) = daemon_with_session(&sshd, &[]).await;
    let mut line = daemon.line().await;
    // A privileged port: OpenSSH refuses it to a user other than root.
    let err = line
        .err(
            "add_forward",
            json!({"session_id": id, "kind": "remote", "listen": "1023", "target": "127.0.0.1:1"}),
        )
        .await;
    assert_eq!(err["code"], code::FORWARD_REFUSED, "{err}");
    assert_eq!(err["data"]["listen"], "127.0.0.1:1023", "{err}");
    let listed = line.ok("list_forwards", json!({"session_id": id})).await;
    assert_eq!(listed["forwards"], json!([]), "nothing added");
}

#[tokio::test]
async fn error_forwards_on_a_session_that_is_not_ssh_are_1026() {
    let daemon = Daemon::start().await;
    let mut line = daemon.line().await;
    let id = line.create_cat().await["session_id"].clone();
    let err = line
        .err(
            "add_forward",
            json!({"session_id": id, "kind": "dynamic", "listen": "0"}),
        )
        .await;
    assert_eq!(err["code"], code::FORWARD_NOT_SUPPORTED, "{err}");
    assert_eq!(err["data"]["session_id"], id);
    let err = line
        .err(
            "add_forward",
            json!({"session_id": uuid::Uuid::new_v4(), "kind": "dynamic", "listen": "0"}),
        )
        .await;
    assert_eq!(err["code"], code::SESSION_NOT_FOUND, "{err}");
}

#[tokio::test]
async fn error_unknown_forward_is_1027() {
    let daemon = Daemon::start().await;
    let mut line = daemon.line().await;
    let forward_id = uuid::Uuid::new_v4();
    let err = line
        .err("remove_forward", json!({"forward_id": forward_id}))
        .await;
    assert_eq!(err["code"], code::FORWARD_NOT_FOUND, "{err}");
    assert_eq!(err["data"]["forward_id"], forward_id.to_string());
}

#[tokio::test]
#[cfg_attr(no_openssh, ignore = "needs OpenSSH (sshd, ssh-keygen)")]
async fn a_non_loopback_listen_address_must_be_asked_for() {
    let sshd = Sshd::start();
    let (daemon, id) = daemon_with_session(&sshd, &[]).await;
    let mut line = daemon.line().await;
    let err = line
        .err(
            "add_forward",
            json!({"session_id": id, "kind": "dynamic", "listen": "0.0.0.0:0"}),
        )
        .await;
    assert_eq!(err["code"], code::INVALID_PARAMS, "{err}");
    assert_eq!(err["data"]["field"], "listen", "{err}");
    let allowed = line
        .ok(
            "add_forward",
            json!({"session_id": id, "kind": "dynamic", "listen": "0.0.0.0:0",
                   "allow_non_loopback": true}),
        )
        .await;
    assert!(
        allowed["listen"].as_str().unwrap().starts_with("0.0.0.0:"),
        "{allowed}"
    );
}

/// Runs `pulsar --socket ... ARGS...` against `daemon` off the test's runtime (the echo
/// server runs on it); returns the exit code and standard output.
async fn pulsar(daemon: &Daemon, args: &[&str]) -> (i32, String) {
    let mut command = std::process::Command::new(artifact("pulsar"));
    command
        .arg("--socket")
        .arg(&daemon.socket)
        .args(args)
        .env("HOME", daemon.dir.path())
        .env_remove("PULSAR_SOCKET_PATH")
        .stdin(std::process::Stdio::null());
    let out = tokio::task::spawn_blocking(move || command.output().expect("run pulsar"))
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    (
        out.status.code().expect("an exit code"),
        format!("{stdout}{stderr}"),
    )
}

#[tokio::test]
#[cfg_attr(no_openssh, ignore = "needs OpenSSH (sshd, ssh-keygen)")]
async fn cli_forward_add_ls_and_rm_and_ls_counts_a_sessions_forwards() {
    let sshd = Sshd::start();
    let echo = Echo::start().await;
    let daemon = Daemon::start_with_env(&[], &[]).await;
    sshd.trust(daemon.dir.path());
    let mut line = daemon.line().await;
    line.ok(
        "create_session",
        json!({"name": "prod", "type": ssh_type(&sshd)}),
    )
    .await;

    let spec = format!("0:{}", echo.target());
    let (code, added) = pulsar(&daemon, &["forward", "add", "prod", "-L", &spec]).await;
    assert_eq!(code, 0, "{added}");
    assert!(added.starts_with("forward "), "{added}");
    assert!(added.contains("on prod: -L 127.0.0.1:"), "{added}");
    let short = added.split_whitespace().nth(1).expect("the id").to_owned();
    let forward = &line.ok("list_forwards", json!({})).await["forwards"][0];
    connect_and_echo(listen_addr(forward), "via the cli").await;

    let (code, sessions) = pulsar(&daemon, &["ls"]).await;
    assert_eq!(code, 0, "{sessions}");
    assert!(sessions.contains("1 forward"), "{sessions}");
    let (code, listed) = pulsar(&daemon, &["forward", "ls", "prod"]).await;
    assert_eq!(code, 0, "{listed}");
    assert!(
        listed.contains(&short) && listed.contains("active"),
        "{listed}"
    );

    let (code, removed) = pulsar(&daemon, &["forward", "rm", &short]).await;
    assert_eq!(code, 0, "{removed}");
    let (code, again) = pulsar(&daemon, &["forward", "rm", &short]).await;
    assert_eq!(code, 4, "no such forward any more: {again}");
    let (code, usage) = pulsar(&daemon, &["forward", "add", "prod", "-L", "8080"]).await;
    assert_eq!(code, 2, "{usage}");
}

#[tokio::test]
async fn create_session_whose_forwards_fail_is_refused_and_the_session_ended() {
    let daemon = Daemon::start().await;
    let mut line = daemon.line().await;
    let err = line
        .err(
            "create_session",
            json!({"name": "cat", "type": {"kind": "local", "command": ["/bin/cat"]},
                   "forwards": [{"kind": "dynamic", "listen": "0"}]}),
        )
        .await;
    assert_eq!(err["code"], code::FORWARD_NOT_SUPPORTED, "{err}");
    let listed = line.ok("list_sessions", json!({})).await;
    let sessions = listed["sessions"].as_array().expect("sessions");
    assert!(
        sessions.iter().all(|s| s["state"] == "stopped"),
        "nothing left running: {listed}"
    );
}
