//! The Orbit side: the cdylib through the stub's loader, `orbit-host` with a config, and the
//! loader's refusals.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use orbit_api_stub::{ExtensionContext, ExtensionState, HostDirs, LoadError, load_extension};
use pulsar_e2e::*;
use pulsar_protocol::PulsarApiClient as _;
use serde_json::json;

fn dirs(root: &Path) -> HostDirs {
    HostDirs {
        config_dir: root.join("config"),
        data_dir: root.join("data"),
        runtime_dir: root.join("run"),
    }
}

fn extension_library() -> PathBuf {
    artifact("libpulsar_ext.so")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cdylib_loaded_through_the_stub_loader_serves_get_status_and_stops() {
    let root = tempfile::tempdir().unwrap();
    let socket = root.path().join("run/pulsar.sock");
    let loaded = load_extension(&extension_library()).expect("load the pulsar cdylib");
    let extension = loaded.extension();
    assert_eq!(extension.name(), "pulsar");

    let settings = json!({"socket_path": socket, "database_path": root.path().join("p.db")});
    extension
        .start(ExtensionContext::new(
            "pulsar",
            &settings,
            dirs(root.path()),
        ))
        .await
        .expect("start");
    assert_eq!(extension.status().await.state, ExtensionState::Running);

    let client = pulsar_protocol::connect(&socket).await.expect("connect");
    let status = client.get_status().await.expect("get_status");
    assert_eq!(
        status.pid,
        std::process::id(),
        "served from this very process"
    );
    assert_eq!(status.num_sessions, 0);
    drop(client);

    extension.stop().await.expect("stop");
    assert_eq!(extension.status().await.state, ExtensionState::Stopped);
    assert!(!socket.exists(), "stop removes the socket");
}

#[tokio::test]
async fn orbit_host_serves_get_status_at_the_configured_socket() {
    let root = tempfile::tempdir().unwrap();
    let socket = root.path().join("sock/pulsar.sock");
    let config = root.path().join("orbit.toml");
    std::fs::write(
        &config,
        format!(
            "[host]\nconfig_dir = {cfg:?}\n\n[extensions.pulsar]\nenabled = true\nlibrary = {lib:?}\n\
             [extensions.pulsar.settings]\nsocket_path = {sock:?}\ndatabase_path = {db:?}\n",
            cfg = root.path().join("config"),
            lib = extension_library(),
            sock = socket,
            db = root.path().join("p.db"),
        ),
    )
    .unwrap();
    let mut host = Command::new(artifact("orbit-host"))
        .arg("--config")
        .arg(&config)
        .env("HOME", root.path())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();

    let client = eventually("orbit-host's pulsar socket", || {
        let socket = socket.clone();
        async move { pulsar_protocol::connect(&socket).await.ok() }
    })
    .await;
    let status = client.get_status().await.expect("get_status");
    assert_eq!(status.pid, host.id(), "pulsar runs inside orbit-host");
    drop(client);

    signal(&host, nix::sys::signal::Signal::SIGTERM);
    let exit = wait_exit(&mut host, "orbit-host");
    assert!(exit.success(), "orbit-host exits 0 on SIGTERM: {exit:?}");
    assert!(!socket.exists(), "the extension removed its socket");
}

#[test]
fn orbit_host_with_a_missing_library_exits_nonzero_naming_it() {
    let root = tempfile::tempdir().unwrap();
    let config = root.path().join("orbit.toml");
    std::fs::write(
        &config,
        "[extensions.pulsar]\nenabled = true\nlibrary = \"/nonexistent/libpulsar_ext.so\"\n",
    )
    .unwrap();
    let out = Command::new(artifact("orbit-host"))
        .arg("--config")
        .arg(&config)
        .env("HOME", root.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("/nonexistent/libpulsar_ext.so") && stderr.contains("not found"),
        "{stderr}"
    );
}

/// Builds a real shared library exporting a declaration with the given fields.
fn fake_extension(dir: &Path, api_version: u32, rustc: &str, stub: &str) -> PathBuf {
    let source = dir.join("fake.c");
    let library = dir.join("libfake_ext.so");
    std::fs::write(
        &source,
        format!(
            "struct decl {{ unsigned int api; const char *rustc; const char *stub; void *(*create)(void); }};\n\
             static void *create(void) {{ return 0; }}\n\
             struct decl ORBIT_EXTENSION_DECLARATION = {{ {api_version}u, {rustc:?}, {stub:?}, create }};\n"
        ),
    )
    .unwrap();
    let status = Command::new("cc")
        .args(["-shared", "-fPIC", "-o"])
        .arg(&library)
        .arg(&source)
        .status()
        .expect("a C compiler (cc) to build the fixture library");
    assert!(status.success());
    library
}

#[test]
fn loader_refuses_an_api_version_mismatch_naming_both_versions() {
    let dir = tempfile::tempdir().unwrap();
    let library = fake_extension(
        dir.path(),
        999,
        orbit_api_stub::RUSTC_VERSION,
        orbit_api_stub::STUB_VERSION,
    );
    let err = load_extension(&library).unwrap_err();
    assert!(
        matches!(
            err,
            LoadError::Mismatch {
                what: "API version",
                ..
            }
        ),
        "{err}"
    );
    let text = err.to_string();
    assert!(
        text.contains("999") && text.contains("libfake_ext.so"),
        "{text}"
    );
}

#[test]
fn loader_refuses_a_library_built_by_another_compiler() {
    let dir = tempfile::tempdir().unwrap();
    let library = fake_extension(
        dir.path(),
        orbit_api_stub::API_VERSION,
        "rustc 1.0.0 (a1b2c3 2015-05-15)",
        orbit_api_stub::STUB_VERSION,
    );
    let err = load_extension(&library).unwrap_err();
    let text = err.to_string();
    assert!(
        matches!(
            err,
            LoadError::Mismatch {
                what: "rustc version",
                ..
            }
        ),
        "{text}"
    );
    assert!(text.contains("rustc 1.0.0"), "{text}");
}

#[test]
fn loader_refuses_a_library_without_a_declaration() {
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("plain.c");
    let library = dir.path().join("libplain.so");
    std::fs::write(&source, "int answer(void) { return 42; }\n").unwrap();
    assert!(
        Command::new("cc")
            .args(["-shared", "-fPIC", "-o"])
            .arg(&library)
            .arg(&source)
            .status()
            .unwrap()
            .success()
    );
    let err = load_extension(&library).unwrap_err();
    assert!(matches!(err, LoadError::MissingSymbol { .. }), "{err}");
    assert!(
        err.to_string().contains("ORBIT_EXTENSION_DECLARATION"),
        "{err}"
    );
}

/// An `orbit-host` with Pulsar enabled on `socket`, its state under `root`.
fn start_host(root: &Path, socket: &Path) -> std::process::Child {
    let config = root.join("orbit.toml");
    std::fs::write(
        &config,
        format!(
            "[host]\nconfig_dir = {cfg:?}\n\n[extensions.pulsar]\nenabled = true\nlibrary = {lib:?}\n\
             [extensions.pulsar.settings]\nsocket_path = {sock:?}\ndatabase_path = {db:?}\n",
            cfg = root.join("config"),
            lib = extension_library(),
            sock = socket,
            db = root.join("p.db"),
        ),
    )
    .unwrap();
    Command::new(artifact("orbit-host"))
        .arg("--config")
        .arg(&config)
        .env("HOME", root)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// Ends the keeper beside `socket` and everything it holds.
struct KeeperCleanup(PathBuf);

impl Drop for KeeperCleanup {
    fn drop(&mut self) {
        if let Ok(keeper) = pulsar_keeper::client::Client::connect(&self.0) {
            let _ = keeper.call(&pulsar_keeper::wire::Request::TerminateAll, &[]);
        }
    }
}

async fn orbit_host_restart_keeps_the_session(stop: nix::sys::signal::Signal) {
    let root = tempfile::tempdir().unwrap();
    let socket = root.path().join("sock/pulsar.sock");
    let _cleanup = KeeperCleanup(socket.with_file_name("pulsar-keeper.sock"));
    let mut host = start_host(root.path(), &socket);
    let connect = || {
        let socket = socket.clone();
        eventually("orbit-host's pulsar socket", move || {
            let socket = socket.clone();
            async move { pulsar_protocol::connect(&socket).await.ok() }
        })
    };
    let client = connect().await;
    let id = start_program(&client, &["/bin/cat"]).await;
    let pid = client.get_session(id).await.unwrap().pid.expect("a pid");
    drop(client);

    signal(&host, stop);
    wait_exit(&mut host, "orbit-host");
    assert!(!process_gone(pid), "the program outlives the host");
    let mut host = start_host(root.path(), &socket);
    let client = connect().await;
    let info = client.get_session(id).await.expect("the session is back");
    assert_eq!(info.pid, Some(pid));
    client
        .send_input(id, pulsar_protocol::Base64Data::from("typed after\n"), None)
        .await
        .unwrap();
    read_until(&client, id, "typed after").await;
    drop(client);
    signal(&host, nix::sys::signal::Signal::SIGTERM);
    wait_exit(&mut host, "orbit-host");
}

#[tokio::test]
async fn orbit_host_stopped_with_sigterm_leaves_sessions_running() {
    orbit_host_restart_keeps_the_session(nix::sys::signal::Signal::SIGTERM).await;
}

#[tokio::test]
async fn orbit_host_killed_with_sigkill_leaves_sessions_running() {
    orbit_host_restart_keeps_the_session(nix::sys::signal::Signal::SIGKILL).await;
}
