//! Backends: what actually runs behind a session (a local PTY, a serial port, an SSH shell),
//! all behind the one [`Backend`] trait and opened through the one door, [`open`].
//!
//! Backends know nothing about clients or sessions, and the session core knows nothing about
//! any particular backend: it gets one from [`open`], sees only [`Backend`] and
//! [`BackendError`], and a stopped session holds [`ended()`]. A new kind of session is one new
//! file here, one arm in [`open`], and its type in the protocol.

mod ended;
mod error;
mod exits;
mod keeper;
mod limits;
mod local;
mod serial;
mod ssh;
mod transfer;

#[cfg(any(test, feature = "fuzzing"))]
pub(crate) use ssh::check_text_for as known_hosts_check;

use std::io;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use pulsar_protocol::{
    AppliedLimits, ForwardId, ForwardInfo, ForwardSpec, SessionLimits, SessionType, SessionUsage,
};
use uuid::Uuid;

pub use ended::ended;
pub use error::{BackendError, ForwardError};
pub use keeper::{Keeper, trampoline};
pub use limits::Confiner;
pub(crate) use ssh::{ConnectError, SshOptions};
pub use transfer::{TransferControl, TransferError, TransferJob};

/// How a session's process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExitStatus {
    /// Exit code of a normal exit.
    pub code: Option<i32>,
    /// Signal that killed it.
    pub signal: Option<i32>,
}

impl ExitStatus {
    /// An end whose code and signal are unknown (a restart, a failed respawn).
    pub const UNKNOWN: ExitStatus = ExitStatus {
        code: None,
        signal: None,
    };
}

/// The link between a backend and its far end, for kinds whose link can drop and come back
/// while the session goes on (an SSH connection with `ssh_reconnect`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkState {
    /// Connected.
    Up,
    /// Lost, and being brought back.
    Down {
        /// Why it dropped.
        cause: String,
    },
}

/// A running terminal endpoint: bytes in, bytes out, a size, and an end.
#[async_trait]
pub trait Backend: Send + Sync + 'static {
    /// Reads the next output bytes into `buf`; `Ok(0)` means the output has ended.
    /// Only the session's reader calls this, never concurrently.
    async fn read(&self, buf: &mut [u8]) -> io::Result<usize>;

    /// Ready once [`Self::read`] has something to return (or an end or error to report),
    /// so that an idle session's reader holds no buffer. A poll, not a future, so that a
    /// waiting reader holds no boxed future either (an idle session waits here for hours).
    /// The default is ready at once (the read itself then waits, into a buffer).
    fn poll_readable(&self, _cx: &mut std::task::Context<'_>) -> std::task::Poll<()> {
        std::task::Poll::Ready(())
    }

    /// Writes all of `data` as one unit: concurrent writers do not interleave.
    async fn write_all(&self, data: &[u8]) -> io::Result<()>;

    /// Tells the far end the terminal's new size.
    fn resize(&self, cols: u16, rows: u16) -> io::Result<()>;

    /// Resolves once the far end has ended, with how it ended.
    async fn wait(&self) -> ExitStatus;

    /// Ready once the far end has ended (or is about to: [`Self::wait`] then returns soon),
    /// for the session's reader, which waits for the end for the program's whole life: a
    /// poll, so that it holds no boxed `wait` future through it (229 bytes a local session).
    /// Only that reader calls it. `None` when this backend has no such signal: the reader
    /// then waits on [`Self::wait`] from the start.
    fn poll_ended(&self, _cx: &mut std::task::Context<'_>) -> Option<std::task::Poll<()>> {
        None
    }

    /// Parks the reader's watch on the far end while its session sleeps: what watching it
    /// costs per session (a local terminal's reactor registration) is given up, and `waker`
    /// is woken once, when there is output or the far end ends (at once if either is so
    /// now). The reader's task may then end; the waker starts it again, and its first read
    /// or [`Self::poll_readable`] watches as before. False when this backend cannot park,
    /// or cannot now (a writer waits): nothing changed, the reader goes on.
    fn park(&self, _waker: &std::task::Waker) -> bool {
        false
    }

    /// Whether [`Self::park`] can ever succeed (a backend that never parks is not asked to).
    fn parks(&self) -> bool {
        false
    }

    /// Drops what [`Self::park`] left watching (the reader is back, or stopped for good).
    fn unpark(&self) {}

    /// Asks the far end to end (SIGHUP to a local process group); after `grace`, forces it
    /// (SIGKILL). Returns once asked; [`Backend::wait`] reports the end.
    async fn terminate(&self, grace: Duration);

    /// The local process id, where there is one.
    fn pid(&self) -> Option<u32>;

    /// Once ended, why, when [`ExitStatus`] cannot say (a serial device vanished, an SSH
    /// connection dropped); shown to clients as the stopped session's `reason`.
    fn end_reason(&self) -> Option<String> {
        None
    }

    /// Follows the link to the far end, for a kind that has one that can drop and come back;
    /// the channel closes when the backend ends. `None` (the default): no such link.
    fn link_state(&self) -> Option<tokio::sync::watch::Receiver<LinkState>> {
        None
    }

    /// True when the far end lives on after this daemon stops (a program held by the
    /// keeper); false when it ends with the daemon (an SSH connection, an open device).
    fn outlives_daemon(&self) -> bool {
        false
    }

    /// The session is over and its output drained: let go of anything held for it
    /// elsewhere (the keeper's copy of the terminal or device). Awaited before the end is
    /// published, so that once a session reads as stopped its device is free to open again.
    /// Not called when the daemon merely stops: then the program lives on for the next daemon.
    async fn finished(&self) {}

    /// An SSH session's resolved destination (its OpenSSH configuration applied), for the
    /// session's info; `None` for other kinds.
    fn ssh_resolved(&self) -> Option<pulsar_protocol::SshResolved> {
        None
    }

    /// The limits the backend holds (all but the output rate) and each one's mechanism.
    fn limits(&self) -> Option<AppliedLimits> {
        None
    }

    /// What a local program uses now (its group's figures, else its process tree's).
    fn usage(&self) -> Option<SessionUsage> {
        None
    }

    /// Adds a port forward over this backend's connection, with id `id`; answers its info.
    /// Only backends with a connection to forward over (SSH) have them.
    async fn add_forward(
        &self,
        id: ForwardId,
        spec: &ForwardSpec,
    ) -> Result<ForwardInfo, ForwardError> {
        let _ = (id, spec);
        Err(ForwardError::NotSupported)
    }

    /// Lists saved forward `id` (as `spec` asked), which could not be re-established, as
    /// `failed` with `why`; it listens nowhere. Backends without forwards ignore it.
    fn keep_failed_forward(&self, id: ForwardId, spec: &ForwardSpec, why: String) {
        let _ = (id, spec, why);
    }

    /// This backend's port forwards, oldest first.
    fn forwards(&self) -> Vec<ForwardInfo> {
        Vec::new()
    }

    /// How many port forwards it has (for the session's info).
    fn forward_count(&self) -> usize {
        0
    }

    /// Removes port forward `id`: its listener closes, and its connections.
    async fn remove_forward(&self, id: ForwardId) -> Result<(), ForwardError> {
        Err(ForwardError::NotFound(id))
    }

    /// Copies one file between this daemon's host and the far end's, reporting through
    /// `control`, until done, failed or cancelled. Only SSH sessions have files to copy.
    async fn transfer(
        &self,
        job: &TransferJob,
        control: &TransferControl,
    ) -> Result<(), TransferError> {
        let _ = (job, control);
        Err(TransferError::NotSupported)
    }
}

/// The daemon-wide settings backends start from (from the config's `serial_*` and `ssh_*`
/// keys); a request's own fields win where it has them.
#[derive(Debug, Clone)]
pub struct BackendSettings {
    /// `Some(longest pause)`: reopen a vanished serial device; `None`: end the session.
    pub serial_reopen: Option<Duration>,
    /// SSH defaults: timeouts, keepalive, known hosts, keys, reconnecting.
    pub(crate) ssh: SshOptions,
    /// The keeper that holds local programs so they outlive this daemon; `None`: this
    /// daemon is their parent and they end with it.
    pub keeper: Option<Arc<Keeper>>,
    /// Where and how local programs are confined to their limits.
    pub confiner: Arc<Confiner>,
}

/// What [`open`] needs besides the session's type.
#[derive(Debug, Clone, Copy)]
pub struct OpenRequest<'a> {
    /// The session's id, given to a local program as `PULSAR_SESSION_ID`.
    pub session_id: Uuid,
    /// The session's name, given to a local program as `PULSAR_SESSION_NAME`.
    pub session_name: &'a str,
    /// Terminal size (cols, rows).
    pub size: (u16, u16),
    /// The daemon-wide defaults.
    pub settings: &'a BackendSettings,
    /// The session's limits (with the daemon's defaults filled in).
    pub limits: &'a SessionLimits,
}

/// Opens the backend `kind` describes: spawns the program, opens the device, or connects.
///
/// The only way the session core gets a backend. Spawning and opening devices touch the
/// disk and fork, so they run on the blocking pool; an SSH connection is awaited here (within
/// `ssh_connect_timeout_ms`). Must run inside the daemon's runtime: backends register with
/// its reactor and spawn their tasks on it.
pub async fn open(
    kind: &SessionType,
    request: OpenRequest<'_>,
) -> Result<Arc<dyn Backend>, BackendError> {
    let (cols, rows) = request.size;
    match kind {
        SessionType::Local(spec) => {
            let id = request.session_id.to_string();
            let confiner = Arc::clone(&request.settings.confiner);
            let limits = *request.limits;
            let confinement =
                blocking(move || confiner.confine(&id, &limits).map(|c| c.map(Arc::new))).await??;
            let env = [
                ("PULSAR_SESSION_ID", request.session_id.to_string()),
                ("PULSAR_SESSION_NAME", request.session_name.to_owned()),
            ];
            if let Some(keeper) = &request.settings.keeper {
                let id = request.session_id.to_string();
                let backend = local::LocalBackend::spawn_kept(
                    spec,
                    (cols, rows),
                    &env,
                    keeper,
                    id,
                    confinement,
                )
                .await?;
                return Ok(Arc::new(backend));
            }
            let spec = spec.clone();
            let backend =
                blocking(move || local::LocalBackend::spawn(&spec, cols, rows, &env, confinement))
                    .await??;
            Ok(Arc::new(backend))
        }
        SessionType::Serial(spec) => {
            Confiner::check_remote("serial", request.limits)?;
            let spec = spec.clone();
            let reopen = request.settings.serial_reopen;
            let (backend, fd) =
                blocking(move || serial::SerialBackend::open(&spec, reopen)).await??;
            if let (Some(keeper), Ok(fd)) = (&request.settings.keeper, fd) {
                backend
                    .hold_with(keeper, request.session_id.to_string(), fd)
                    .await;
            }
            Ok(Arc::new(backend))
        }
        SessionType::Ssh(spec) => {
            Confiner::check_remote("ssh", request.limits)?;
            let backend = ssh::SshBackend::connect(
                spec,
                &request.settings.ssh,
                request.session_id,
                (cols, rows),
            )
            .await?;
            Ok(Arc::new(backend))
        }
        #[allow(unreachable_patterns)] // SessionType is non-exhaustive across crates
        other => Err(BackendError::InvalidSetting {
            field: "type",
            reason: format!("session type `{}` is not supported", other.kind()),
        }),
    }
}

/// Takes over the program an earlier daemon left running for session `request.session_id`,
/// if the keeper holds one: same pid, same terminal. `None` when there is nothing to take
/// over (the program is gone, as after a reboot, or was never held).
pub fn resume(kind: &SessionType, request: OpenRequest<'_>) -> Option<Arc<dyn Backend>> {
    let keeper = request.settings.keeper.as_ref()?;
    let adoptable = keeper.take_adoptable(&request.session_id.to_string())?;
    match kind {
        SessionType::Local(_) => {
            let confinement = request
                .settings
                .confiner
                .reattach(&request.session_id.to_string(), request.limits)
                .map(Arc::new);
            match local::LocalBackend::adopt(adoptable, keeper, confinement) {
                Ok(backend) => {
                    tracing::info!(session = %request.session_id, pid = ?backend.pid(), "took over a running program from the keeper");
                    Some(Arc::new(backend))
                }
                Err(err) => {
                    tracing::warn!(session = %request.session_id, "cannot take over its program: {err}");
                    None
                }
            }
        }
        SessionType::Serial(spec) => {
            match serial::SerialBackend::adopt(spec, request.settings.serial_reopen, adoptable.fd) {
                Ok(backend) => {
                    tracing::info!(session = %request.session_id, device = %spec.device.display(), "took over the open serial device from the keeper");
                    backend.kept_by(keeper, request.session_id.to_string());
                    Some(Arc::new(backend))
                }
                Err(err) => {
                    tracing::warn!(session = %request.session_id, "cannot take over its serial device: {err}");
                    None
                }
            }
        }
        _ => None,
    }
}

/// Runs `work` on the blocking pool (which keeps the runtime's context, so the reactor is
/// there for registering descriptors).
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, BackendError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|join| BackendError::Failed {
            reason: format!("opening the backend panicked: {join}"),
            device: None,
        })
}
