//! The daemon's lifecycle: bind the socket, serve, clean up periodically, stop gracefully.
//!
//! Everything here runs on the extension's own runtime (see `extension.rs`).

use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use pulsar_protocol::KeeperStatus;
use tokio::task::JoinHandle;

use crate::audit::AuditLog;
use crate::backend::{Confiner, Keeper, trampoline};
use crate::config::Config;
use crate::handover::Incoming;
use crate::persist::{
    Checkpointer, StoreAudit, StoreObserver, StoreTransfers, StoreWorkspaces, load_transfers,
    load_workspaces, restore_all, restore_forwards,
};
use crate::rpc::{
    self, BindError, DesktopBindError, DesktopListener, Handlers, Lifecycle, SocketListener,
};
use crate::session::SessionManager;
use crate::shutdown::{self, Shutdown, ShutdownTrigger};
use crate::store::{Store, StoreError};
use crate::transfer::{TransferSink, Transfers};
use crate::workspace::{WorkspaceSink, Workspaces};

/// Why the daemon could not start.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// The socket could not be bound.
    #[error(transparent)]
    Bind(#[from] BindError),
    /// The desktop's TCP port could not be opened.
    #[error(transparent)]
    Desktop(#[from] DesktopBindError),
    /// The configuration is inconsistent.
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    /// The database could not be opened.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Taking over from the daemon before this one failed.
    #[error("taking over from the running daemon failed: {0}")]
    Handover(String),
}

/// What the daemon's supervisor lends every daemon it starts.
#[derive(Clone, Default)]
pub(crate) struct Controls {
    /// Where `upgrade_daemon` asks for an upgrade (`None`: not available, inside an Orbit
    /// host).
    pub upgrades: Option<tokio::sync::mpsc::Sender<crate::supervisor::UpgradeRequest>>,
    /// Why the last upgrade failed, if it did, for `get_status`.
    pub upgrade_error: Arc<std::sync::Mutex<Option<String>>>,
}

/// The listening socket a daemon serves on.
pub(crate) enum Socket {
    /// Bound by this daemon.
    Bound(SocketListener),
    /// Handed over by the daemon before this one (or kept by a failed upgrade), at the path
    /// in the config.
    HandedOver(OwnedFd),
}

/// A running daemon. [`Daemon::stop`] ends it; dropping it without stopping aborts nothing
/// but leaves the tasks running until the runtime goes.
pub struct Daemon {
    trigger: ShutdownTrigger,
    accept_loop: JoinHandle<SocketListener>,
    cleanup: JoinHandle<()>,
    /// Parks idle pumps; none when `park_after_ms` is 0.
    parking: Option<JoinHandle<()>>,
    checkpoint: JoinHandle<()>,
    sessions: Arc<SessionManager>,
    store: Store,
    observer: Arc<StoreObserver>,
    checkpointer: Arc<Checkpointer>,
    /// Holds the local programs; `None`: they end with this daemon.
    keeper: Option<Arc<Keeper>>,
    /// Makes and removes the sessions' control groups.
    confiner: Arc<Confiner>,
    /// Set by the `shutdown` method: this stop ends every session.
    terminate_on_stop: Arc<AtomicBool>,
    socket_path: PathBuf,
}

impl Daemon {
    /// Binds the socket (or, started by an upgrade, takes it over from the daemon before),
    /// opens the database, restores the saved sessions and starts serving. Call inside the
    /// daemon's runtime.
    pub(crate) async fn start(
        config: Arc<Config>,
        controls: Controls,
    ) -> Result<Self, DaemonError> {
        raise_fd_limit();
        let Some(fd) = config.handover_fd else {
            // The socket first: a live daemon on it must keep sole use of the database.
            let listener = SocketListener::bind(&config.socket_path).await?;
            return Self::serve_on(config, Socket::Bound(listener), controls).await;
        };
        let failed = |err: std::io::Error| DaemonError::Handover(err.to_string());
        let incoming = Incoming::from_fd(fd).map_err(failed)?;
        tracing::info!("taking over from the running daemon");
        let listener = incoming.take_listener().await.map_err(failed)?;
        let started = Self::serve_on(config, Socket::HandedOver(listener), controls).await;
        incoming
            .finish(started.as_ref().map(|_| ()).map_err(ToString::to_string))
            .await;
        started
    }

    /// Everything after the socket: the store, the keeper, restore, then serving on `socket`.
    pub(crate) async fn serve_on(
        config: Arc<Config>,
        socket: Socket,
        controls: Controls,
    ) -> Result<Self, DaemonError> {
        let socket_path = config.socket_path.clone();
        let desktop = match config.desktop_websocket()? {
            Some(addr) => {
                Some(DesktopListener::bind(addr, config.desktop_websocket_origins.clone()).await?)
            }
            None => None,
        };
        let database = config.database_path.clone();
        let (store, loaded) = tokio::task::spawn_blocking(move || Store::open(&database))
            .await
            .expect("opening the database panicked")?;
        let observer = Arc::new(StoreObserver::new(store.clone()));
        let audit = Arc::new(StoreAudit::new(store.clone(), config.audit_max_rows));
        let checkpointer = Arc::new(Checkpointer::new(
            store.clone(),
            config.persist_scrollback_bytes,
        ));
        let keeper = if config.keeper {
            let (socket, binary, fallback) = (
                config.keeper_socket.clone(),
                config.keeper_binary.clone(),
                config.keeper_fallback.clone(),
            );
            match tokio::task::spawn_blocking(move || {
                Keeper::connect_or_start(&socket, &binary, &fallback)
            })
            .await
            .expect("connecting to the keeper panicked")
            {
                Ok(keeper) => {
                    tracing::info!(pid = keeper.pid(), version = keeper.version(), socket = %config.keeper_socket.display(), "keeper connected");
                    Some(Arc::new(keeper))
                }
                Err(err) => {
                    tracing::warn!("{err}; local sessions will end with this daemon");
                    None
                }
            }
        } else {
            None
        };
        let confiner = {
            let config = Arc::clone(&config);
            tokio::task::spawn_blocking(move || {
                let confiner = Confiner::new(
                    config.limits_cgroups,
                    &config.limits_cgroup_root,
                    &daemon_key(&config.socket_path),
                    trampoline(&config.keeper_binary, &config.keeper_fallback),
                );
                Arc::new(confiner)
            })
            .await
            .expect("finding the control groups panicked")
        };
        let mut backend_settings = config.backend_settings();
        backend_settings.keeper = keeper.clone();
        backend_settings.confiner = Arc::clone(&confiner);
        let sessions = Arc::new(SessionManager::with_observer(
            Arc::clone(&config),
            backend_settings,
            Arc::clone(&observer) as Arc<dyn crate::session::SessionObserver>,
        ));
        let (workspaces, snapshots) = load_workspaces(loaded.workspaces, loaded.snapshots);
        let workspaces = Arc::new(Workspaces::new(
            workspaces,
            snapshots,
            Some(Arc::new(StoreWorkspaces::new(store.clone())) as Arc<dyn WorkspaceSink>),
        ));
        let restored = restore_all(
            loaded.sessions,
            config.restore,
            &sessions,
            &store,
            &checkpointer,
            audit.as_ref(),
        )
        .await;
        let forwards = restore_forwards(loaded.forwards, &sessions, &store).await;
        tracing::info!(
            database = %config.database_path.display(),
            respawned = restored.respawned,
            forwards,
            stopped = restored.stopped,
            dropped = restored.dropped,
            policy = ?config.restore,
            "sessions restored"
        );
        if let Some(keeper) = &keeper {
            release_leftovers(keeper).await;
        }
        // Groups of sessions that ended while no daemon watched, or that no daemon knows.
        let alive: std::collections::HashSet<String> = sessions
            .all()
            .iter()
            .filter(|s| s.is_alive())
            .map(|s| s.id().to_string())
            .collect();
        let sweeper = Arc::clone(&confiner);
        let removed = tokio::task::spawn_blocking(move || sweeper.sweep(&alive))
            .await
            .unwrap_or(0);
        if removed > 0 {
            tracing::info!(
                groups = removed,
                "removed the control groups of sessions no longer alive"
            );
        }

        let (trigger, shutdown) = shutdown::channel();
        let terminate_on_stop = Arc::new(AtomicBool::new(false));
        let transfers = Arc::new(Transfers::new(
            Arc::clone(&sessions),
            Some(Arc::new(StoreTransfers::new(store.clone())) as Arc<dyn TransferSink>),
            shutdown.signal(),
        ));
        for (info, overwrite) in load_transfers(loaded.transfers) {
            transfers.resume(info, overwrite);
        }
        let handlers = Handlers::new(
            Arc::clone(&sessions),
            workspaces,
            transfers,
            Arc::clone(&config),
            Arc::clone(&audit) as Arc<dyn AuditLog>,
            store.clone(),
            Lifecycle {
                keeper: keeper.as_ref().map(|k| KeeperStatus {
                    pid: k.pid(),
                    version: k.version().to_owned(),
                    socket: config.keeper_socket.display().to_string(),
                }),
                terminate_on_stop: Arc::clone(&terminate_on_stop),
                controls,
                stopping: shutdown.signal(),
            },
        );
        // Only now, when nothing can fail any more, does a handed-over socket become ours (a
        // listener removes its file when dropped).
        let listener = match socket {
            Socket::Bound(listener) => listener,
            Socket::HandedOver(fd) => SocketListener::from_handover(fd, &config.socket_path)
                .map_err(|err| DaemonError::Handover(format!("cannot serve the socket: {err}")))?,
        };
        let accept_loop = rpc::serve(
            listener,
            desktop,
            handlers,
            Arc::clone(&audit) as Arc<dyn AuditLog>,
            config.max_request_bytes,
            shutdown.clone(),
        );
        let cleanup = tokio::spawn(cleanup_task(
            Arc::clone(&sessions),
            Arc::clone(&checkpointer),
            audit,
            Duration::from_secs(config.cleanup_interval_secs),
            (config.hibernate_after_secs > 0)
                .then(|| Duration::from_secs(config.hibernate_after_secs)),
            shutdown.clone(),
        ));
        let parking = (config.park_after_ms > 0).then(|| {
            tokio::spawn(park_task(
                Arc::clone(&sessions),
                Duration::from_millis(config.park_after_ms),
                shutdown.clone(),
            ))
        });
        let checkpoint = tokio::spawn(checkpoint_task(
            Arc::clone(&sessions),
            Arc::clone(&checkpointer),
            Duration::from_millis(config.persist_interval_ms),
            shutdown,
        ));
        tracing::info!(
            socket = %socket_path.display(),
            pid = std::process::id(),
            version = env!("CARGO_PKG_VERSION"),
            "pulsar daemon listening"
        );
        Ok(Self {
            trigger,
            accept_loop,
            cleanup,
            parking,
            checkpoint,
            sessions,
            store,
            observer,
            checkpointer,
            keeper,
            confiner,
            terminate_on_stop,
            socket_path,
        })
    }

    /// The socket clients connect to.
    pub fn socket_path(&self) -> &Path {
        &self.socket_path
    }

    /// The session table.
    pub fn sessions(&self) -> &Arc<SessionManager> {
        &self.sessions
    }

    /// Stops accepting and waits (up to [`STOP_WAIT`]) for connections and requests in
    /// flight, and refuses sessions that finish opening later. Then, unless `shutdown` asked
    /// to end everything (or there is no keeper), stops reading every session and saves all
    /// it read, leaving the programs running for the next daemon; otherwise saves and ends
    /// every session (without recording them as stopped, so that a daemon without a keeper
    /// restores them). Closes the database and removes the socket.
    pub async fn stop(self) {
        let terminate = self.terminate_on_stop.load(Ordering::SeqCst) || self.keeper.is_none();
        // Dropped at once: the socket file goes as soon as nothing accepts on it.
        let confiner = Arc::clone(&self.confiner);
        self.shut(terminate, drop).await;
        // Not at a hand-over: the next daemon goes on with the same groups.
        let _ = tokio::task::spawn_blocking(move || confiner.close()).await;
    }

    /// Stops as for a restart, leaving every program running, and gives back the listening
    /// socket (still bound, its file in place) for the next daemon.
    pub(crate) async fn stop_for_handover(self) -> SocketListener {
        let mut kept = None;
        self.shut(false, |listener| kept = Some(listener)).await;
        kept.expect("the listener")
    }

    async fn shut(self, terminate: bool, listener_done: impl FnOnce(SocketListener)) {
        tracing::info!(terminate_sessions = terminate, "pulsar daemon stopping");
        self.trigger.trigger();
        listener_done(self.accept_loop.await.expect("the accept loop panicked"));
        let still_running = self.trigger.stop(STOP_WAIT).await;
        if still_running > 0 {
            tracing::warn!(
                tasks = still_running,
                waited_ms = STOP_WAIT.as_millis() as u64,
                "stopping without waiting longer for requests still in flight"
            );
        }
        // Anything that completes from here on is refused and ended, never half-saved.
        self.sessions.close();
        let _ = self.cleanup.await;
        if let Some(parking) = self.parking {
            let _ = parking.await;
        }
        let _ = self.checkpoint.await;
        if terminate {
            self.checkpointer.checkpoint(&self.sessions);
            if self.keeper.is_none() {
                // Ended only because this daemon is their parent: the next start restores them.
                self.observer.freeze();
            }
            self.store.flush().await;
            self.sessions.terminate_all().await;
            if let Some(keeper) = &self.keeper {
                keeper.terminate_all().await;
            }
        } else {
            // Not one byte read and unsaved: the next daemon continues from the saved end.
            self.sessions.stop_reading().await;
            self.checkpointer.checkpoint(&self.sessions);
            self.observer.freeze();
            self.store.flush().await;
            // Sessions the keeper cannot hold (SSH connections) end here; frozen, they are
            // recorded as alive and reconnect at the next start.
            self.sessions.terminate_unheld().await;
        }
        let store = self.store.clone();
        let _ = tokio::task::spawn_blocking(move || store.close()).await;
        tracing::info!("pulsar daemon stopped");
    }
}

/// This daemon's name among its user's control groups: a hash of its socket's path, so that
/// two daemons of one user (two test runs) never touch each other's groups.
fn daemon_key(socket: &Path) -> String {
    use std::os::unix::ffi::OsStrExt as _;
    // FNV-1a: stable across builds and runs, as the key must be.
    let hash = socket
        .as_os_str()
        .as_bytes()
        .iter()
        .fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
        });
    format!("d{hash:016x}")
}

/// Programs the keeper held at start that no stored session claimed (created just before a
/// crash, before their row was written, or of sessions stopped or dropped since): released,
/// which ends any still running, so nothing runs that no daemon knows of.
async fn release_leftovers(keeper: &Arc<Keeper>) {
    for leftover in keeper.take_leftovers() {
        tracing::warn!(
            session = %leftover.held.id,
            pid = ?leftover.held.pid,
            "the keeper held a session this daemon does not know; ending it"
        );
        drop(leftover.fd);
        keeper.release(&leftover.held.id).await;
    }
}

/// Longest a stop waits for connections and requests in flight (an SSH session may still be
/// connecting) before it saves and ends everything.
const STOP_WAIT: Duration = Duration::from_secs(10);

/// Raises the soft open-files limit to the hard one: each session holds about three
/// descriptors (PTY master, its non-blocking duplicate, a pidfd), and the common soft limit
/// of 1024 would cap the daemon near 300 sessions. Programs (and the keeper) start with the
/// limit the daemon started with.
fn raise_fd_limit() {
    if let Some(limit) = pulsar_keeper::pty::raise_open_files_limit() {
        tracing::debug!(limit, "raised the open-files limit");
    }
}

/// Every `interval`, removes stopped sessions past their retention, prunes the audit log,
/// hibernates idle screens and releases the saved scrollback of those that sleep.
async fn cleanup_task(
    sessions: Arc<SessionManager>,
    checkpointer: Arc<Checkpointer>,
    audit: Arc<StoreAudit>,
    interval: Duration,
    hibernate_after: Option<Duration>,
    mut shutdown: Shutdown,
) {
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticks.tick().await; // the first tick is immediate
    loop {
        tokio::select! {
            _ = ticks.tick() => {
                let removed = sessions.cleanup();
                if removed > 0 {
                    tracing::info!(removed, "cleanup removed stopped sessions");
                }
                audit.prune();
                if let Some(idle) = hibernate_after {
                    let (slept, bytes) = sessions.hibernate_idle(idle);
                    if slept > 0 {
                        tracing::debug!(slept, bytes, "idle screens hibernated");
                    }
                    let (sessions, checkpointer) = (Arc::clone(&sessions), Arc::clone(&checkpointer));
                    let released = tokio::task::spawn_blocking(move || {
                        let released = checkpointer.release_hibernated(&sessions);
                        // Screens just put to sleep, or scrollback just released: what
                        // they held goes back to the system, not only to the allocator.
                        if slept > 0 || released.1 > 0 {
                            give_back_freed_memory();
                        }
                        released
                    })
                    .await;
                    if let Ok((released @ 1.., bytes)) = released {
                        tracing::debug!(released, bytes, "hibernated scrollback released to the store");
                    }
                }
            }
            _ = shutdown.wait() => break,
        }
    }
}

/// Every half of `idle` (at least every 50 ms, at most every second), parks the pump of each
/// local session that has had no output or input for `idle`: an idle session then holds no
/// task and no reactor registration of its own (see `Session::park_if_idle`).
async fn park_task(sessions: Arc<SessionManager>, idle: Duration, mut shutdown: Shutdown) {
    let every = (idle / 2).clamp(Duration::from_millis(50), Duration::from_secs(1));
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticks.tick() => sessions.park_idle(idle),
            _ = shutdown.wait() => break,
        }
    }
}

/// Returns the heap memory freed just now to the system: glibc's malloc keeps freed memory
/// below the top of each arena for reuse, so hibernated screens and released scrollback
/// would otherwise stay in the daemon's resident set (measured: 317 → 182 KiB per session
/// holding 194 KiB, without).
fn give_back_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only takes the allocator's own locks; it has no preconditions.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Every `interval`, saves the output and activity of sessions that changed.
async fn checkpoint_task(
    sessions: Arc<SessionManager>,
    checkpointer: Arc<Checkpointer>,
    interval: Duration,
    mut shutdown: Shutdown,
) {
    // Each session is saved once per interval, a slice of them at each tick.
    const SLICES: u64 = 8;
    let mut ticks = tokio::time::interval(interval / SLICES as u32);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut slice = 0;
    loop {
        tokio::select! {
            _ = ticks.tick() => {
                checkpointer.checkpoint_slice(&sessions, slice, SLICES);
                slice = (slice + 1) % SLICES;
            }
            _ = shutdown.wait() => break,
        }
    }
}
