//! The daemon's lifecycle: bind the socket, serve, clean up periodically, stop gracefully.
//!
//! Everything here runs on the extension's own runtime (see `extension.rs`).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;

use crate::audit::AuditLog;
use crate::config::Config;
use crate::persist::{
    Checkpointer, StoreAudit, StoreObserver, StoreWorkspaces, load_workspaces, restore_all,
};
use crate::rpc::{self, BindError, DesktopBindError, DesktopListener, Handlers, SocketListener};
use crate::session::SessionManager;
use crate::shutdown::{self, Shutdown, ShutdownTrigger};
use crate::store::{Store, StoreError};
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
}

/// A running daemon. [`Daemon::stop`] ends it; dropping it without stopping aborts nothing
/// but leaves the tasks running until the runtime goes.
pub struct Daemon {
    trigger: ShutdownTrigger,
    accept_loop: JoinHandle<()>,
    cleanup: JoinHandle<()>,
    checkpoint: JoinHandle<()>,
    sessions: Arc<SessionManager>,
    store: Store,
    observer: Arc<StoreObserver>,
    checkpointer: Arc<Checkpointer>,
    socket_path: PathBuf,
}

impl Daemon {
    /// Binds the socket, opens the database, restores the saved sessions and starts serving.
    /// Call inside the daemon's runtime.
    pub async fn start(config: Config) -> Result<Self, DaemonError> {
        let config = Arc::new(config);
        raise_fd_limit();
        // The socket first: a live daemon on it must keep sole use of the database.
        let listener = SocketListener::bind(&config.socket_path).await?;
        let socket_path = listener.path().to_owned();
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
        let sessions = Arc::new(SessionManager::with_observer(
            Arc::clone(&config),
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
        tracing::info!(
            database = %config.database_path.display(),
            respawned = restored.respawned,
            stopped = restored.stopped,
            dropped = restored.dropped,
            policy = ?config.restore,
            "sessions restored"
        );

        let (trigger, shutdown) = shutdown::channel();
        let handlers = Handlers::new(
            Arc::clone(&sessions),
            workspaces,
            Arc::clone(&config),
            Arc::clone(&audit) as Arc<dyn AuditLog>,
            store.clone(),
        );
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
            audit,
            Duration::from_secs(config.cleanup_interval_secs),
            shutdown.clone(),
        ));
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
            checkpoint,
            sessions,
            store,
            observer,
            checkpointer,
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
    /// flight, refuses sessions that finish opening later, saves every session, ends their
    /// processes (without recording them as stopped, so that the next start restores them),
    /// closes the database and removes the socket.
    pub async fn stop(self) {
        tracing::info!("pulsar daemon stopping");
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
        let _ = self.accept_loop.await;
        let _ = self.cleanup.await;
        let _ = self.checkpoint.await;
        self.checkpointer.checkpoint(&self.sessions);
        self.observer.freeze();
        self.store.flush().await;
        self.sessions.terminate_all().await;
        let store = self.store.clone();
        let _ = tokio::task::spawn_blocking(move || store.close()).await;
        tracing::info!("pulsar daemon stopped");
    }
}

/// Longest a stop waits for connections and requests in flight (an SSH session may still be
/// connecting) before it saves and ends everything.
const STOP_WAIT: Duration = Duration::from_secs(10);

/// Raises the soft open-files limit to the hard one: each session holds about three
/// descriptors (PTY master, its non-blocking duplicate, a pidfd), and the common soft limit
/// of 1024 would cap the daemon near 300 sessions.
fn raise_fd_limit() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain getrlimit/setrlimit on a local struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 && limit.rlim_cur < limit.rlim_max
        {
            let wanted = limit.rlim_max;
            limit.rlim_cur = wanted;
            if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) == 0 {
                tracing::debug!(limit = wanted, "raised the open-files limit");
            }
        }
    }
}

/// Every `interval`, removes stopped sessions past their retention and prunes the audit log.
async fn cleanup_task(
    sessions: Arc<SessionManager>,
    audit: Arc<StoreAudit>,
    interval: Duration,
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
            }
            _ = shutdown.wait() => break,
        }
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
