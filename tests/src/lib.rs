//! Test harness for Pulsar's end-to-end tests: real daemons in temp dirs, typed WebSocket
//! clients, line-JSON clients, and polling with deadlines.
//!
//! The binaries under test are the workspace's own debug builds (`target/debug`); the README's
//! test command builds them before the tests run.

use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use pulsar_protocol::{PulsarApiClient as _, PulsarClient, SessionId};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};

pub use pulsar_protocol;
pub use tempfile;

pub mod desktop;
pub mod sshd;

/// Longest a test waits for anything.
pub const DEADLINE: Duration = Duration::from_secs(15);

/// Directory holding the workspace's built binaries (`target/debug` or `target/release`).
pub fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    // Tests run from target/<profile>/deps/, the benchmark binary from target/<profile>/.
    let dir = exe.parent().expect("executable has a directory");
    if dir.file_name().is_some_and(|name| name == "deps") {
        dir.parent().expect("deps has a parent").to_owned()
    } else {
        dir.to_owned()
    }
}

/// Path of a workspace binary or library, which must already be built.
pub fn artifact(name: &str) -> PathBuf {
    let path = target_dir().join(name);
    assert!(
        path.exists(),
        "{} is missing: build the workspace first (`cargo build --workspace`)",
        path.display()
    );
    path
}

/// Polls `check` until it returns `Some`, or panics with `what` after [`DEADLINE`].
pub async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let start = Instant::now();
    let mut pause = Duration::from_millis(5);
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(start.elapsed() < DEADLINE, "timed out waiting for {what}");
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(100));
    }
}

/// Waits for `child` to exit, up to [`DEADLINE`]; kills it and panics if it does not.
pub fn wait_exit(child: &mut Child, what: &str) -> ExitStatus {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return status;
        }
        if start.elapsed() > DEADLINE {
            let _ = child.kill();
            panic!("{what} did not exit in time");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Sends `signal` to `child`.
pub fn signal(child: &Child, signal: nix::sys::signal::Signal) {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), signal)
        .expect("signal the daemon");
}

fn owned(settings: &[(&str, &str)]) -> Vec<(String, String)> {
    settings
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

/// The database a daemon started with `settings` in `home` uses: `pulsar.db` in `home`, or
/// the setting `DATABASE_PATH` (for a database on a filesystem of its own).
fn database_path(home: &Path, settings: &[(&str, &str)]) -> PathBuf {
    settings
        .iter()
        .find(|(key, _)| *key == "DATABASE_PATH")
        .map_or_else(|| home.join("pulsar.db"), |(_, path)| PathBuf::from(path))
}

/// A `pulsar-standalone` in its own temp dir, killed if the test forgets to stop it.
pub struct Daemon {
    /// The daemon process.
    pub child: Child,
    /// Holds the socket, database, HOME and log.
    pub dir: tempfile::TempDir,
    /// The socket it listens on.
    pub socket: PathBuf,
    /// The `PULSAR_*` settings it was started with, kept for restarts.
    settings: Vec<(String, String)>,
}

impl Daemon {
    /// The daemon's database file.
    pub fn database(&self) -> PathBuf {
        database_path(self.dir.path(), &self.settings_ref())
    }

    fn settings_ref(&self) -> Vec<(&str, &str)> {
        self.settings
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect()
    }

    /// Stops the daemon gracefully (SIGTERM) and starts a new one on the same socket,
    /// database and settings, changed by `overrides`.
    pub async fn restart(mut self, overrides: &[(&str, &str)]) -> Self {
        signal(&self.child, nix::sys::signal::Signal::SIGTERM);
        let exit = wait_exit(&mut self.child, "the daemon");
        assert!(exit.success(), "graceful stop failed: {exit:?}");
        self.start_again(overrides).await
    }

    /// The daemon's keeper socket.
    pub fn keeper_socket(&self) -> PathBuf {
        self.socket.with_file_name("pulsar-keeper.sock")
    }

    /// Ends the keeper and every program it holds, as a reboot would (no-op if none runs).
    pub fn end_keeper(&self) {
        if let Ok(keeper) = pulsar_keeper::client::Client::connect(&self.keeper_socket()) {
            let _ = keeper.call(&pulsar_keeper::wire::Request::TerminateAll, &[]);
        }
    }

    /// Stops the daemon gracefully, ends its keeper and its programs (as a reboot does), and
    /// starts a new daemon on the same socket, database and settings, changed by `overrides`.
    pub async fn reboot(mut self, overrides: &[(&str, &str)]) -> Self {
        signal(&self.child, nix::sys::signal::Signal::SIGTERM);
        let exit = wait_exit(&mut self.child, "the daemon");
        assert!(exit.success(), "graceful stop failed: {exit:?}");
        self.end_keeper();
        self.start_again(overrides).await
    }

    /// Kills the daemon with SIGKILL (no chance to save anything) and starts a new one on the
    /// same socket, database and settings, changed by `overrides`.
    pub async fn crash_and_restart(mut self, overrides: &[(&str, &str)]) -> Self {
        self.crash();
        self.start_again(overrides).await
    }

    /// Kills the daemon with SIGKILL and waits for it to be gone (start it again with
    /// [`Daemon::start_again`]).
    pub fn crash(&mut self) {
        signal(&self.child, nix::sys::signal::Signal::SIGKILL);
        wait_exit(&mut self.child, "the killed daemon");
    }

    /// Stops the daemon gracefully (SIGTERM) and waits for it to be gone (start it again with
    /// [`Daemon::start_again`]), for a test that changes the world in between.
    pub fn shut_down(&mut self) {
        signal(&self.child, nix::sys::signal::Signal::SIGTERM);
        let exit = wait_exit(&mut self.child, "the daemon");
        assert!(exit.success(), "graceful stop failed: {exit:?}");
    }

    /// Stops the daemon gracefully and spawns a new one on the same files without waiting for
    /// it (for timing its start).
    pub async fn restart_signal_only(mut self) -> Self {
        signal(&self.child, nix::sys::signal::Signal::SIGTERM);
        let exit = wait_exit(&mut self.child, "the daemon");
        assert!(exit.success(), "graceful stop failed: {exit:?}");
        self.child = Self::spawn(self.dir.path(), &self.socket, &self.settings_ref());
        self
    }

    /// Starts a new daemon on the same socket, database and settings, changed by
    /// `overrides`, once the last one has exited.
    pub async fn start_again(mut self, overrides: &[(&str, &str)]) -> Self {
        for (key, value) in overrides {
            self.settings.retain(|(k, _)| k != key);
            self.settings.push(((*key).to_owned(), (*value).to_owned()));
        }
        self.child = Self::spawn(self.dir.path(), &self.socket, &self.settings_ref());
        self.wait_ready().await;
        self
    }

    /// Starts a daemon with default settings.
    pub async fn start() -> Self {
        Self::start_with(&[]).await
    }

    /// Starts a daemon with extra `PULSAR_*` settings, e.g. `("MAX_SESSIONS", "2")`.
    pub async fn start_with(settings: &[(&str, &str)]) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let socket = dir.path().join("run/pulsar.sock");
        let child = Self::spawn(dir.path(), &socket, settings);
        let daemon = Self {
            child,
            dir,
            socket,
            settings: owned(settings),
        };
        daemon.wait_ready().await;
        daemon
    }

    /// Starts a daemon with extra `PULSAR_*` settings and extra environment variables (e.g.
    /// `SSH_AUTH_SOCK`). `SSH_AUTH_SOCK` is removed from what the daemon inherits unless `env`
    /// sets it, so no test depends on the agent of whoever runs it.
    pub async fn start_with_env(settings: &[(&str, &str)], env: &[(&str, &Path)]) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let socket = dir.path().join("run/pulsar.sock");
        let child = Self::spawn_with(dir.path(), &socket, settings, |command| {
            command.env_remove("SSH_AUTH_SOCK");
            for (key, value) in env {
                command.env(key, value);
            }
        });
        let daemon = Self {
            child,
            dir,
            socket,
            settings: owned(settings),
        };
        daemon.wait_ready().await;
        daemon
    }

    /// Starts a daemon that, like an ordinary user's, cannot override file permissions, so a
    /// device with mode 000 is refused with a real EACCES. Started by root, it keeps uid 0 (so
    /// root test clients still pass the socket's uid check) but loses CAP_DAC_OVERRIDE and
    /// CAP_DAC_READ_SEARCH from its bounding set, which drops them for good at exec. Started by
    /// anyone else, it is a plain daemon.
    pub async fn start_without_permission_override(settings: &[(&str, &str)]) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let socket = dir.path().join("run/pulsar.sock");
        let child = Self::spawn_with(dir.path(), &socket, settings, |command| {
            // SAFETY: the closure runs between fork and exec and only makes prctl calls,
            // which are async-signal-safe.
            unsafe {
                command.pre_exec(|| {
                    if libc::geteuid() != 0 {
                        return Ok(());
                    }
                    const CAP_DAC_OVERRIDE: libc::c_ulong = 1;
                    const CAP_DAC_READ_SEARCH: libc::c_ulong = 2;
                    for cap in [CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH] {
                        if libc::prctl(libc::PR_CAPBSET_DROP, cap, 0, 0, 0) != 0 {
                            return Err(std::io::Error::last_os_error());
                        }
                    }
                    Ok(())
                })
            };
        });
        let daemon = Self {
            child,
            dir,
            socket,
            settings: owned(settings),
        };
        daemon.wait_ready().await;
        daemon
    }

    /// Starts a daemon with extra `PULSAR_*` settings, letting `configure` adjust its command
    /// (limits, credentials) before it starts. Restarts start it plainly.
    pub async fn start_configured(
        settings: &[(&str, &str)],
        configure: impl FnOnce(&mut Command),
    ) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let socket = dir.path().join("run/pulsar.sock");
        let child = Self::spawn_with(dir.path(), &socket, settings, configure);
        let daemon = Self {
            child,
            dir,
            socket,
            settings: owned(settings),
        };
        daemon.wait_ready().await;
        daemon
    }

    /// Spawns `pulsar-standalone` on `socket` with HOME in `home`; does not wait.
    pub fn spawn(home: &Path, socket: &Path, settings: &[(&str, &str)]) -> Child {
        Self::spawn_with(home, socket, settings, |_| {})
    }

    /// [`Self::spawn`], letting `configure` adjust the command before it starts.
    pub fn spawn_with(
        home: &Path,
        socket: &Path,
        settings: &[(&str, &str)],
        configure: impl FnOnce(&mut Command),
    ) -> Child {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(home.join("daemon.log"))
            .expect("log file");
        let mut command = Command::new(artifact("pulsar-standalone"));
        command
            .arg("--socket")
            .arg(socket)
            .arg("--database")
            .arg(database_path(home, settings))
            .env("HOME", home)
            .env("PULSAR_LOG_LEVEL", "debug")
            .env_remove("XDG_CONFIG_HOME")
            .env_remove("XDG_RUNTIME_DIR")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        for (key, value) in settings {
            command.env(format!("PULSAR_{key}"), value);
        }
        configure(&mut command);
        command.spawn().expect("spawn pulsar-standalone")
    }

    async fn wait_ready(&self) {
        let socket = self.socket.clone();
        eventually("the daemon's socket", || {
            let socket = socket.clone();
            async move { UnixStream::connect(&socket).await.ok().map(|_| ()) }
        })
        .await;
    }

    /// A typed WebSocket client.
    pub async fn client(&self) -> PulsarClient {
        pulsar_protocol::connect(&self.socket)
            .await
            .expect("connect a typed client")
    }

    /// A newline-JSON client.
    pub async fn line(&self) -> LineClient {
        LineClient::connect(&self.socket).await
    }

    /// What the daemon logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("daemon.log")).unwrap_or_default()
    }

    /// The daemon's resident memory, in KiB.
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .expect("daemon status");
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS")
    }

    /// SIGTERM, then waits for the exit.
    pub fn stop(mut self) -> ExitStatus {
        signal(&self.child, nix::sys::signal::Signal::SIGTERM);
        wait_exit(&mut self.child, "the daemon")
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        // A daemon started by an upgrade is not our child: find it by its socket.
        if let Some(pid) = serving_pid(&self.socket) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        // The sessions outlive the daemon in its keeper: end them too.
        self.end_keeper();
    }
}

/// The pid of the daemon answering on `socket`, asked with a blocking line-JSON `get_status`
/// (for cleanup, where nothing async can run).
pub fn serving_pid(socket: &Path) -> Option<u32> {
    try_call(socket, "get_status", json!({}))?["pid"]
        .as_u64()
        .map(|pid| pid as u32)
}

/// One line-JSON call on a fresh connection, blocking: its `result`, or `None` when nothing
/// answers, the connection breaks or the call fails (for polling while daemons change hands).
pub fn try_call(socket: &Path, method: &str, params: Value) -> Option<Value> {
    use std::io::{BufRead as _, Write as _};
    let mut stream = std::os::unix::net::UnixStream::connect(socket).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    let request = json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params});
    stream.write_all(format!("{request}\n").as_bytes()).ok()?;
    let mut answer = String::new();
    std::io::BufReader::new(stream)
        .read_line(&mut answer)
        .ok()?;
    let value: Value = serde_json::from_str(&answer).ok()?;
    value.get("result").cloned()
}

/// A newline-delimited JSON-RPC client, as scripts and the upstream desktop client talk.
pub struct LineClient {
    reader: BufReader<OwnedReadHalf>,
    writer: OwnedWriteHalf,
    next_id: u64,
}

impl LineClient {
    /// Connects to `socket`.
    pub async fn connect(socket: &Path) -> Self {
        let stream = UnixStream::connect(socket)
            .await
            .expect("connect line client");
        let (read, writer) = stream.into_split();
        Self {
            reader: BufReader::new(read),
            writer,
            next_id: 1,
        }
    }

    /// Sends raw bytes (a line must end with `\n`).
    pub async fn send_raw(&mut self, bytes: &[u8]) {
        self.writer.write_all(bytes).await.expect("write request");
    }

    /// Reads the next line as JSON; `None` at EOF.
    pub async fn read(&mut self) -> Option<Value> {
        let mut line = String::new();
        let n = tokio::time::timeout(DEADLINE, self.reader.read_line(&mut line))
            .await
            .expect("a line within the deadline")
            .expect("read line");
        (n > 0).then(|| serde_json::from_str(&line).expect("valid JSON line"))
    }

    /// Sends `request` as one line and returns the next line.
    pub async fn request(&mut self, request: Value) -> Value {
        let mut line = request.to_string();
        line.push('\n');
        self.send_raw(line.as_bytes()).await;
        self.read().await.expect("a response")
    }

    /// A JSON-RPC 2.0 call; returns the whole response object.
    pub async fn call(&mut self, method: &str, params: Value) -> Value {
        let id = self.next_id;
        self.next_id += 1;
        let response = self
            .request(json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}))
            .await;
        assert_eq!(
            response["id"], id,
            "response to a different request: {response}"
        );
        response
    }

    /// A call that must succeed; returns its `result`.
    pub async fn ok(&mut self, method: &str, params: Value) -> Value {
        let response = self.call(method, params).await;
        assert!(
            response.get("error").is_none(),
            "{method} failed: {response}"
        );
        response["result"].clone()
    }

    /// A call that must fail; returns its `error`.
    pub async fn err(&mut self, method: &str, params: Value) -> Value {
        let response = self.call(method, params).await;
        assert!(
            response.get("error").is_some(),
            "{method} unexpectedly succeeded: {response}"
        );
        response["error"].clone()
    }
}

/// Base64 of `bytes`, as the wire carries terminal data.
pub fn b64(bytes: &[u8]) -> String {
    STANDARD.encode(bytes)
}

/// Bytes of a base64 string.
pub fn unb64(text: &str) -> Vec<u8> {
    STANDARD.decode(text).expect("valid base64")
}

/// The session type for a plain `/bin/sh` with a fixed prompt, for predictable output.
pub fn sh() -> pulsar_protocol::SessionType {
    command(&["/bin/sh"])
}

/// The session type for `argv` with `PS1='$ '`.
pub fn command(argv: &[&str]) -> pulsar_protocol::SessionType {
    serde_json::from_value(json!({
        "kind": "local",
        "command": argv,
        "env": {"PS1": "$ ", "ENV": ""},
    }))
    .expect("session type")
}

/// Reads a session's output through `receive_output` until `needle` appears in it; returns
/// everything read.
pub async fn read_until(client: &PulsarClient, id: SessionId, needle: &str) -> String {
    let mut seen = Vec::new();
    let mut next = 0;
    let start = Instant::now();
    while start.elapsed() < DEADLINE {
        let out = client
            .receive_output(id, Some(next), None, Some(200), None)
            .await
            .expect("receive_output");
        seen.extend_from_slice(out.data.as_bytes());
        next = out.next_offset;
        if String::from_utf8_lossy(&seen).contains(needle) {
            return String::from_utf8_lossy(&seen).into_owned();
        }
    }
    panic!(
        "{needle:?} never appeared; output was {:?}",
        String::from_utf8_lossy(&seen)
    );
}

/// A test-wide time budget for loops that wait on events: `check` panics once [`DEADLINE`]
/// has passed, so every such loop is bounded in time.
pub struct Deadline(Instant);

impl Deadline {
    /// Starts the clock.
    pub fn start() -> Self {
        Self(Instant::now())
    }

    /// Panics with `what` once the deadline has passed.
    pub fn check(&self, what: &str) {
        assert!(self.0.elapsed() < DEADLINE, "timed out waiting for {what}");
    }
}

impl LineClient {
    /// Reads a session's output with `receive_output` (no `since`: this connection's cursor)
    /// until `needle` appears; returns what was read.
    pub async fn read_output_until(&mut self, session_id: &Value, needle: &str) -> String {
        let deadline = Deadline::start();
        let mut text = String::new();
        while !text.contains(needle) {
            deadline.check(needle);
            let out = self
                .ok(
                    "receive_output",
                    json!({"session_id": session_id, "timeout_ms": 200}),
                )
                .await;
            text.push_str(&String::from_utf8_lossy(&unb64(
                out["data"].as_str().expect("data"),
            )));
        }
        text
    }
}

/// The next frame of an attach stream, within the tests' deadline; `None` when it ended.
pub async fn next_frame(
    stream: &mut pulsar_protocol::stream::AttachStream,
) -> Option<pulsar_protocol::stream::ServerFrame> {
    tokio::time::timeout(Duration::from_secs(10), stream.next())
        .await
        .expect("a frame within the deadline")
        .expect("a well-formed frame")
}

/// The JSON-RPC error code of a failed typed-client call.
pub fn rpc_code(err: &jsonrpsee::core::client::Error) -> i32 {
    match err {
        jsonrpsee::core::client::Error::Call(obj) => obj.code(),
        other => panic!("expected a JSON-RPC error, got {other}"),
    }
}

/// The next event of an output subscription, within [`DEADLINE`].
pub async fn next_event(
    sub: &mut jsonrpsee::core::client::Subscription<pulsar_protocol::OutputEvent>,
) -> pulsar_protocol::OutputEvent {
    tokio::time::timeout(DEADLINE, sub.next())
        .await
        .expect("an event within the deadline")
        .expect("the subscription is open")
        .expect("a valid event")
}

/// Skips events until `wanted` arrives, within [`DEADLINE`] in all.
pub async fn wait_for_event(
    sub: &mut jsonrpsee::core::client::Subscription<pulsar_protocol::OutputEvent>,
    wanted: &pulsar_protocol::OutputEvent,
) {
    let deadline = Deadline::start();
    while next_event(sub).await != *wanted {
        deadline.check("the event");
    }
}

/// Waits until session `id` is stopped.
pub async fn wait_stopped(client: &PulsarClient, id: SessionId) {
    eventually("the session to stop", || async {
        (client.get_session(id).await.expect("get_session").state
            == pulsar_protocol::SessionState::Stopped)
            .then_some(())
    })
    .await;
}

/// A bare WebSocket client on the daemon's socket: text frames in and out, nothing hidden.
/// The typed client cannot show answers it has no pending call for (`id: null`).
pub struct RawWebSocket {
    stream: UnixStream,
}

impl RawWebSocket {
    /// Connects to `socket` and completes the HTTP upgrade.
    pub async fn connect(socket: &Path) -> Self {
        let mut stream = UnixStream::connect(socket)
            .await
            .expect("connect a WebSocket");
        stream
            .write_all(
                b"GET / HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n\
                  Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
                  Sec-WebSocket-Version: 13\r\n\r\n",
            )
            .await
            .expect("send the upgrade");
        let head = read_http_head(&mut stream).await;
        assert!(head.starts_with("HTTP/1.1 101"), "upgrade refused: {head}");
        Self { stream }
    }

    /// Sends `text` as one masked text frame, as a client must.
    pub async fn send_text(&mut self, text: &str) {
        let payload = text.as_bytes();
        let mut frame = vec![0x81u8];
        match payload.len() {
            len @ 0..=125 => frame.push(0x80 | len as u8),
            len @ 126..=0xffff => {
                frame.push(0x80 | 126);
                frame.extend_from_slice(&(len as u16).to_be_bytes());
            }
            len => {
                frame.push(0x80 | 127);
                frame.extend_from_slice(&(len as u64).to_be_bytes());
            }
        }
        let mask = [0x37u8, 0xfa, 0x21, 0x3d];
        frame.extend_from_slice(&mask);
        frame.extend(payload.iter().zip(mask.iter().cycle()).map(|(b, m)| b ^ m));
        self.stream.write_all(&frame).await.expect("send a frame");
    }

    /// The next text message as JSON, within [`DEADLINE`]; `None` when the server closes.
    pub async fn read(&mut self) -> Option<Value> {
        use tokio::io::AsyncReadExt as _;
        tokio::time::timeout(DEADLINE, async {
            loop {
                let mut head = [0u8; 2];
                if self.stream.read_exact(&mut head).await.is_err() {
                    return None;
                }
                let len = match head[1] & 0x7f {
                    126 => u64::from(self.stream.read_u16().await.expect("length")),
                    127 => self.stream.read_u64().await.expect("length"),
                    len => u64::from(len),
                };
                let mut payload = vec![0u8; len as usize];
                self.stream
                    .read_exact(&mut payload)
                    .await
                    .expect("a frame's payload");
                match head[0] & 0x0f {
                    0x1 => return Some(serde_json::from_slice(&payload).expect("JSON text")),
                    0x8 => return None,
                    _ => {} // ping, pong: nothing a test needs
                }
            }
        })
        .await
        .expect("a WebSocket message within the deadline")
    }
}

/// Reads an HTTP response head (through the blank line) byte by byte, so nothing after it is
/// consumed.
async fn read_http_head(stream: &mut UnixStream) -> String {
    use tokio::io::AsyncReadExt as _;
    let mut head = Vec::new();
    tokio::time::timeout(DEADLINE, async {
        while !head.ends_with(b"\r\n\r\n") {
            head.push(stream.read_u8().await.expect("an HTTP response"));
        }
    })
    .await
    .expect("an HTTP response within the deadline");
    String::from_utf8_lossy(&head).into_owned()
}

/// POSTs `body` as a plain HTTP JSON-RPC request (no WebSocket); returns the status line
/// and the body as JSON.
pub async fn http_post(socket: &Path, body: &str) -> (String, Value) {
    use tokio::io::AsyncReadExt as _;
    let mut stream = UnixStream::connect(socket).await.expect("connect for HTTP");
    let request = format!(
        "POST / HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream
        .write_all(request.as_bytes())
        .await
        .expect("send the POST");
    let head = read_http_head(&mut stream).await;
    let mut rest = Vec::new();
    tokio::time::timeout(DEADLINE, stream.read_to_end(&mut rest))
        .await
        .expect("the HTTP body within the deadline")
        .expect("read the HTTP body");
    let status = head.lines().next().unwrap_or_default().to_owned();
    let body = serde_json::from_slice(&rest)
        .unwrap_or_else(|err| panic!("{err}: {head}{}", String::from_utf8_lossy(&rest)));
    (status, body)
}

/// The `data` object of a failed typed-client call (`null` when it has none).
pub fn rpc_data(err: &jsonrpsee::core::client::Error) -> Value {
    match err {
        jsonrpsee::core::client::Error::Call(obj) => obj
            .data()
            .map(|raw| serde_json::from_str(raw.get()).expect("error data is JSON"))
            .unwrap_or(Value::Null),
        other => panic!("expected a JSON-RPC error, got {other}"),
    }
}

/// The pid of a background job that a session's script printed as `job:PID:up`
/// (`sleep 300 & echo job:$!:up`), from the output read so far.
pub fn job_pid(printed: &str) -> i32 {
    printed
        .split("job:")
        .nth(1)
        .and_then(|rest| rest.split(':').next())
        .and_then(|pid| pid.parse().ok())
        .unwrap_or_else(|| panic!("no job pid in {printed:?}"))
}

/// True once `pid` is gone: no such process, or a zombie nobody has reaped yet.
pub fn process_gone(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state == "Z" || state == "X"),
    }
}

/// Starts `argv` (see [`command`]) in an unnamed session of the default size; returns its id.
pub async fn start_program(client: &PulsarClient, argv: &[&str]) -> SessionId {
    client
        .create_session(None, command(argv), None, None, None, None, None)
        .await
        .expect("create_session")
        .session_id
}

impl LineClient {
    /// Creates a session running `/bin/sh -c script`; returns `create_session`'s result.
    pub async fn create_sh(&mut self, script: &str) -> Value {
        self.ok(
            "create_session",
            json!({"type": {"kind": "local", "command": ["/bin/sh", "-c", script]}}),
        )
        .await
    }

    /// Creates a session running `cat` (silent until typed to); returns `create_session`'s
    /// result.
    pub async fn create_cat(&mut self) -> Value {
        self.ok(
            "create_session",
            json!({"type": {"kind": "local", "command": ["/bin/cat"]}}),
        )
        .await
    }
}

/// A program that survives SIGHUP and says so: prints `ready`, then `got-HUP` (and appends
/// `hup` to `mark`, when given) at every SIGHUP, and otherwise sleeps; only SIGKILL ends it.
/// Python rather than a shell trap: a shell runs its trap only once its foreground child
/// has ended, which races with the kill this program is there to wait for.
pub fn sighup_survivor(mark: Option<&Path>) -> Vec<String> {
    let script = "import signal, sys, time\n\
def hup(*_):\n    print('got-HUP', flush=True)\n    if len(sys.argv) > 1:\n        \
with open(sys.argv[1], 'a') as f:\n            f.write('hup\\n')\n\
signal.signal(signal.SIGHUP, hup)\nprint('ready', flush=True)\n\
while True:\n    time.sleep(60)\n";
    let mut argv = vec![
        "/usr/bin/env".to_owned(),
        "python3".to_owned(),
        "-c".to_owned(),
        script.to_owned(),
    ];
    argv.extend(mark.map(|m| m.display().to_string()));
    argv
}

/// Waits (up to [`DEADLINE`]) until session `id`'s screen shows `text`, read on a connection
/// of its own each time.
pub async fn screen_shows(daemon: &Daemon, id: &Value, text: &str) {
    eventually(&format!("the screen to show {text:?}"), || {
        let socket = daemon.socket.clone();
        let id = id.clone();
        async move {
            let mut line = LineClient::connect(&socket).await;
            let screen = line.ok("get_screen", json!({"session_id": id})).await;
            screen["rows"].to_string().contains(text).then_some(())
        }
    })
    .await;
}
