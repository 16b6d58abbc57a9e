//! The daemon's side of the keeper: find or start the `pulsar-keeper` process, and ask it to
//! spawn, report on, hand over and release the programs it holds. Every call runs on the
//! blocking pool (the keeper answers over a blocking socket), one at a time.

use std::collections::HashMap;
use std::io;
use std::os::fd::{OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pulsar_keeper::client::Client;
use pulsar_keeper::wire::{Exit, Held, Reply, Request, SpawnRequest};

/// Longest the daemon waits for a keeper it started to answer.
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// A session the keeper held when this daemon started, not yet adopted.
pub(crate) struct Adoptable {
    pub held: Held,
    pub fd: OwnedFd,
}

/// A connection to the keeper, shared by every local session.
pub struct Keeper {
    client: Mutex<Client>,
    socket: PathBuf,
    /// The program a keeper is started from, should this one die.
    program: Option<PathBuf>,
    pid: u32,
    version: String,
    /// What it held at start, by session id, until restore adopts it.
    adoptable: Mutex<HashMap<String, Adoptable>>,
}

impl std::fmt::Debug for Keeper {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keeper")
            .field("pid", &self.pid)
            .field("socket", &self.socket)
            .finish_non_exhaustive()
    }
}

/// Why the keeper could not be reached or started.
#[derive(Debug, thiserror::Error)]
#[error("keeper on {socket}: {reason}")]
pub struct KeeperError {
    socket: String,
    reason: String,
}

impl Keeper {
    /// Connects to the keeper on `socket`, starting `binary` (or the `pulsar-keeper` found
    /// beside this program) there first if none answers; then takes the list of what it
    /// holds. Blocking: call on the blocking pool.
    pub fn connect_or_start(
        socket: &Path,
        binary: &Path,
        fallback: &Path,
    ) -> Result<Self, KeeperError> {
        let failed = |reason: String| KeeperError {
            socket: socket.display().to_string(),
            reason,
        };
        let program = find_binary(binary, fallback);
        let client = match Client::connect(socket) {
            Ok(client) => client,
            Err(_) => {
                let program = program.clone().ok_or_else(|| {
                    failed(
                        "no keeper answers and the pulsar-keeper program was not found beside \
                         the daemon or on PATH (set keeper_binary, or keeper = false)"
                            .to_owned(),
                    )
                })?;
                start(&program, socket)
                    .map_err(|err| failed(format!("cannot start {}: {err}", program.display())))?;
                let deadline = Instant::now() + START_TIMEOUT;
                loop {
                    match Client::connect(socket) {
                        Ok(client) => break client,
                        Err(_) if Instant::now() < deadline => {
                            std::thread::sleep(Duration::from_millis(5))
                        }
                        Err(err) => {
                            return Err(failed(format!(
                                "{} started but does not answer: {err}",
                                program.display()
                            )));
                        }
                    }
                }
            }
        };
        let (pid, version) = client.hello().map_err(|err| failed(err.to_string()))?;
        let held = client.list().map_err(|err| failed(err.to_string()))?;
        let adoptable = held
            .into_iter()
            .map(|(held, fd)| (held.id.clone(), Adoptable { held, fd }))
            .collect();
        Ok(Self {
            client: Mutex::new(client),
            socket: socket.to_owned(),
            program,
            pid,
            version,
            adoptable: Mutex::new(adoptable),
        })
    }

    /// The keeper's pid.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// The keeper's version.
    pub fn version(&self) -> &str {
        &self.version
    }

    /// Takes what the keeper held at start for session `id`, to adopt it.
    pub(crate) fn take_adoptable(&self, id: &str) -> Option<Adoptable> {
        self.adoptable
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(id)
    }

    /// Everything held at start that no stored session claimed.
    pub(crate) fn take_leftovers(&self) -> Vec<Adoptable> {
        self.adoptable
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain()
            .map(|(_, adoptable)| adoptable)
            .collect()
    }

    /// One request and its answer, off the async workers. Reconnects once if the keeper
    /// restarted (its socket still answers).
    async fn call(
        self: &Arc<Self>,
        request: Request,
        fds: Vec<OwnedFd>,
    ) -> io::Result<(Reply, Vec<OwnedFd>)> {
        let this = Arc::clone(self);
        tokio::task::spawn_blocking(move || {
            let raw: Vec<RawFd> = pulsar_keeper::wire::raw(&fds);
            let mut client = this.client.lock().unwrap_or_else(|e| e.into_inner());
            match client.call(&request, &raw) {
                Err(err)
                    if matches!(
                        err.kind(),
                        io::ErrorKind::UnexpectedEof
                            | io::ErrorKind::BrokenPipe
                            | io::ErrorKind::ConnectionReset
                    ) =>
                {
                    // The keeper restarted, or died: reach it again, starting a new one if
                    // need be (sessions it held are lost to it; this daemon still has their
                    // terminals).
                    *client = match (Client::connect(&this.socket), &this.program) {
                        (Ok(client), _) => client,
                        (Err(_), Some(program)) => {
                            tracing::warn!("the keeper is gone ({err}); starting a new one");
                            start_and_connect(program, &this.socket).map_err(io::Error::other)?
                        }
                        (Err(again), None) => return Err(again),
                    };
                    client.call(&request, &raw)
                }
                other => other,
            }
        })
        .await
        .map_err(io::Error::other)?
    }

    /// Starts a program in a new PTY held by the keeper: its master and pid.
    pub(crate) async fn spawn(
        self: &Arc<Self>,
        request: SpawnRequest,
    ) -> io::Result<(OwnedFd, u32)> {
        let confined = request.limits.is_some();
        let id = request.id.clone();
        match self.call(Request::Spawn(request), Vec::new()).await? {
            (Reply::Spawned { pid, limited }, mut fds) if fds.len() == 1 => {
                if confined && !limited {
                    // A keeper from before limits ran it unconfined: end it at once.
                    self.release(&id).await;
                    // SAFETY: kill sends a signal to the program just started.
                    unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
                    return Err(io::Error::other(format!(
                        "the running keeper ({}) cannot apply limits; end its sessions and \
                         let the daemon start a newer one",
                        self.version()
                    )));
                }
                Ok((fds.pop().expect("one descriptor"), pid))
            }
            (other, _) => Err(io::Error::other(format!(
                "unexpected answer from the keeper: {other:?}"
            ))),
        }
    }

    /// Holds `fd` (an open device) for session `id`, replacing what it held for it.
    pub(crate) async fn hold(self: &Arc<Self>, id: &str, fd: OwnedFd) -> io::Result<()> {
        match self
            .call(
                Request::Hold {
                    id: id.to_owned(),
                    meta: String::new(),
                },
                vec![fd],
            )
            .await?
        {
            (Reply::Done, _) => Ok(()),
            (other, _) => Err(io::Error::other(format!(
                "unexpected answer from the keeper: {other:?}"
            ))),
        }
    }

    /// How session `id`'s program ended, once it has.
    pub(crate) async fn status(self: &Arc<Self>, id: &str) -> io::Result<Option<Exit>> {
        match self
            .call(Request::Status { id: id.to_owned() }, Vec::new())
            .await?
        {
            (Reply::Status { exit }, _) => Ok(exit),
            (other, _) => Err(io::Error::other(format!(
                "unexpected answer from the keeper: {other:?}"
            ))),
        }
    }

    /// The daemon is done with session `id`: the keeper closes its copies.
    pub(crate) async fn release(self: &Arc<Self>, id: &str) {
        if let Err(err) = self
            .call(Request::Release { id: id.to_owned() }, Vec::new())
            .await
        {
            tracing::warn!(
                session = id,
                "the keeper did not release the session: {err}"
            );
        }
    }

    /// Ends every program the keeper holds, and the keeper with them.
    pub(crate) async fn terminate_all(self: &Arc<Self>) {
        if let Err(err) = self.call(Request::TerminateAll, Vec::new()).await {
            tracing::warn!("the keeper did not end its sessions: {err}");
        }
    }
}

/// Starts a keeper from `program` on `socket` and connects to it.
fn start_and_connect(program: &Path, socket: &Path) -> Result<Client, String> {
    start(program, socket).map_err(|err| format!("cannot start {}: {err}", program.display()))?;
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        match Client::connect(socket) {
            Ok(client) => return Ok(client),
            Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(5)),
            Err(err) => {
                return Err(format!(
                    "{} started but does not answer: {err}",
                    program.display()
                ));
            }
        }
    }
}

/// Starts the keeper detached from this process's session and terminal, its output into a
/// log file beside its socket. It is this process's child until this process ends; a task
/// reaps it should it exit first.
fn start(program: &Path, socket: &Path) -> io::Result<()> {
    use std::os::unix::process::CommandExt as _;
    let log = socket.with_extension("log");
    let log_file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log)?;
    std::fs::set_permissions(&log, std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
    let mut command = std::process::Command::new(program);
    command
        .arg("--keeper")
        .arg("--socket")
        .arg(socket)
        .stdin(std::process::Stdio::null())
        .stdout(log_file.try_clone()?)
        .stderr(log_file);
    // SAFETY: setsid and the limit's getrlimit/setrlimit are async-signal-safe; the closure
    // touches nothing else.
    unsafe {
        command.pre_exec(|| {
            if libc::setsid() < 0 {
                return Err(io::Error::last_os_error());
            }
            // The keeper raises its own and remembers this one for the programs.
            pulsar_keeper::pty::restore_open_files_limit();
            Ok(())
        });
    }
    let mut child = command.spawn()?;
    tracing::info!(pid = child.id(), program = %program.display(), socket = %socket.display(), "started the keeper");
    std::thread::Builder::new()
        .name("pulsar-keeper-reaper".to_owned())
        .spawn(move || {
            let _ = child.wait();
        })?;
    Ok(())
}

/// How to start a program through the limits trampoline (`--exec-limited`): the keeper
/// program [`find_binary`] finds, with `--keeper` first when it is `pulsar-standalone`.
pub fn trampoline(binary: &Path, fallback: &Path) -> Option<Vec<String>> {
    let found = find_binary(binary, fallback)?;
    let mut argv = vec![found.to_string_lossy().into_owned()];
    if !fallback.as_os_str().is_empty() && found == fallback {
        argv.push("--keeper".to_owned());
    }
    Some(argv)
}

/// `binary` if given, else `pulsar-keeper` beside this executable or beside this library (the
/// extension inside an Orbit host), else `fallback` (pulsar-standalone, which is a keeper too
/// with `--keeper`), else `pulsar-keeper` on `PATH`.
fn find_binary(binary: &Path, fallback: &Path) -> Option<PathBuf> {
    if !binary.as_os_str().is_empty() {
        return Some(binary.to_owned());
    }
    let name = "pulsar-keeper";
    let beside = |file: PathBuf| file.parent().map(|dir| dir.join(name));
    let mut candidates: Vec<PathBuf> = Vec::new();
    candidates.extend(std::env::current_exe().ok().and_then(beside));
    candidates.extend(library_path().and_then(beside));
    if !fallback.as_os_str().is_empty() {
        candidates.push(fallback.to_owned());
    }
    if let Some(paths) = std::env::var_os("PATH") {
        candidates.extend(std::env::split_paths(&paths).map(|dir| dir.join(name)));
    }
    candidates.into_iter().find(|path| path.is_file())
}

/// The file this code was loaded from (the cdylib inside an Orbit host), by `dladdr`.
fn library_path() -> Option<PathBuf> {
    let mut info: libc::Dl_info = unsafe { std::mem::zeroed() };
    let here = library_path as *const libc::c_void;
    // SAFETY: dladdr only reads the address and fills `info`; the strings it points at live
    // as long as the library stays loaded (it is never unloaded).
    let found = unsafe { libc::dladdr(here, &mut info) };
    if found == 0 || info.dli_fname.is_null() {
        return None;
    }
    // SAFETY: dli_fname is a NUL-terminated path set by dladdr.
    let name = unsafe { std::ffi::CStr::from_ptr(info.dli_fname) };
    use std::os::unix::ffi::OsStrExt as _;
    Some(PathBuf::from(std::ffi::OsStr::from_bytes(name.to_bytes())))
}
