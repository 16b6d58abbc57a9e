//! Reaching the daemon: the default socket path (computed as the daemon computes it),
//! connecting with a message that says how to start one, and `--start`.

use std::fs::{DirBuilder, OpenOptions};
use std::os::unix::fs::DirBuilderExt as _;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use pulsar_protocol::{ConnectError, PulsarClient};

use crate::error::{Exit, Failure, Result};

/// How long `--start` waits for a freshly spawned daemon to listen.
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// The daemon binary `--start` runs.
const DAEMON_BINARY: &str = "pulsar-standalone";

/// The daemon's default socket: `$XDG_CONFIG_HOME/orbit/pulsar.sock`, else
/// `~/.config/orbit/pulsar.sock`. Mirrors `orbit_api_stub::HostDirs::for_current_user()` (the
/// daemon's `config_dir`), reimplemented so the CLI does not compile the extension host.
pub fn default_socket_path() -> PathBuf {
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/"));
    let config_home = std::env::var_os("XDG_CONFIG_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| home.join(".config"));
    config_home.join("orbit").join("pulsar.sock")
}

/// Where the daemon is and whether to start one when none answers.
#[derive(Debug, Clone)]
pub struct Endpoint {
    /// The Unix socket.
    pub socket: PathBuf,
    /// Spawn `pulsar-standalone` when nothing listens on `socket`.
    pub start: bool,
}

impl Endpoint {
    /// Connects, starting a daemon first when allowed and needed.
    pub async fn connect(&self) -> Result<PulsarClient> {
        match pulsar_protocol::connect(&self.socket).await {
            Ok(client) => Ok(client),
            Err(ConnectError::NotRunning { .. }) if self.start => {
                start_daemon(&self.socket).await?;
                pulsar_protocol::connect(&self.socket)
                    .await
                    .map_err(|err| Failure::new(Exit::NoDaemon, err.to_string()))
            }
            Err(ConnectError::NotRunning { path, source }) => Err(Failure::new(
                Exit::NoDaemon,
                format!(
                    "no Pulsar daemon is listening on {} ({source}).\n\
                     Start one with `pulsar-standalone` (in a source checkout: \
                     `cargo run --release -p pulsar-standalone`), or pass --start.",
                    path.display()
                ),
            )),
            Err(err @ ConnectError::Handshake { .. }) => {
                Err(Failure::new(Exit::NoDaemon, err.to_string()))
            }
        }
    }
}

/// `pulsar-standalone` next to this executable (as installed or built together), else the
/// name alone so that `PATH` is searched.
fn daemon_binary() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|dir| dir.join(DAEMON_BINARY)))
        .filter(|path| path.is_file())
        .unwrap_or_else(|| PathBuf::from(DAEMON_BINARY))
}

/// Spawns `pulsar-standalone --socket SOCKET` in its own session (so it outlives this
/// terminal), logging to `pulsar-standalone.log` beside the socket, and waits until the
/// socket accepts connections.
async fn start_daemon(socket: &Path) -> Result<()> {
    let dir = socket
        .parent()
        .filter(|dir| !dir.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    // The daemon makes the directory 0700 too; making it here lets the log live in it.
    DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|err| {
            Failure::error(format!(
                "start the daemon: cannot create {}: {err}",
                dir.display()
            ))
        })?;
    let log_path = dir.join("pulsar-standalone.log");
    let log = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .map_err(|err| {
            Failure::error(format!(
                "start the daemon: cannot open {}: {err}",
                log_path.display()
            ))
        })?;
    let log_err = log.try_clone().map_err(|err| {
        Failure::error(format!("start the daemon: {}: {err}", log_path.display()))
    })?;
    let binary = daemon_binary();
    let mut command = Command::new(&binary);
    command
        .arg("--socket")
        .arg(socket)
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log_err);
    // SAFETY: setsid is async-signal-safe and touches no memory of this process; it detaches
    // the daemon from this terminal's session so closing the terminal does not hang it up.
    unsafe {
        command.pre_exec(|| rustix::process::setsid().map(drop).map_err(Into::into));
    }
    let mut child = command.spawn().map_err(|err| {
        Failure::new(
            Exit::NoDaemon,
            format!(
                "start the daemon: cannot run {}: {err}\n\
                 Install pulsar-standalone next to pulsar or on PATH \
                 (`cargo build --release -p pulsar-standalone`).",
                binary.display()
            ),
        )
    })?;
    let started = Instant::now();
    let mut pause = Duration::from_millis(10);
    loop {
        if tokio::net::UnixStream::connect(socket).await.is_ok() {
            eprintln!(
                "pulsar: started {} (pid {}), log: {}",
                DAEMON_BINARY,
                child.id(),
                log_path.display()
            );
            return Ok(());
        }
        if let Ok(Some(status)) = child.try_wait() {
            return Err(Failure::new(
                Exit::NoDaemon,
                format!(
                    "start the daemon: {} exited ({status}) before listening on {}; see {}",
                    binary.display(),
                    socket.display(),
                    log_path.display()
                ),
            ));
        }
        if started.elapsed() > START_TIMEOUT {
            return Err(Failure::new(
                Exit::NoDaemon,
                format!(
                    "start the daemon: pid {} is not listening on {} after {}s; see {}",
                    child.id(),
                    socket.display(),
                    START_TIMEOUT.as_secs(),
                    log_path.display()
                ),
            ));
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(200));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_socket_lives_in_the_orbit_config_dir() {
        let path = default_socket_path();
        assert!(path.ends_with("orbit/pulsar.sock"), "{}", path.display());
    }
}
