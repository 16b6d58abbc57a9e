//! The supervisor: the task that owns the running daemon, so that a daemon can be replaced
//! (an upgrade) while the extension's host sees one extension all along. It takes the host's
//! stop and status requests, and the `upgrade_daemon` requests from the RPC handlers.

use std::path::PathBuf;
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::config::Config;
use crate::daemon::{Controls, Daemon, DaemonError, Socket};
use crate::handover::{self, Outgoing};

/// An upgrade asked for over RPC.
pub(crate) struct UpgradeRequest {
    /// The new binary; `None`: this daemon's executable as it is on disk now.
    pub binary: Option<PathBuf>,
    /// Answered once the new daemon is ready (before the hand-over), or with why not.
    pub reply: oneshot::Sender<Result<UpgradeStarted, String>>,
}

/// A new daemon, ready to take over.
#[derive(Debug, Clone)]
pub(crate) struct UpgradeStarted {
    /// Its pid.
    pub pid: u32,
    /// Its binary.
    pub binary: PathBuf,
}

/// What the extension asks of the supervisor.
pub(crate) enum Control {
    /// Stop the daemon (as on SIGTERM) and end.
    Stop(oneshot::Sender<()>),
    /// A line for the host's status view.
    Status(oneshot::Sender<String>),
}

/// The running supervisor.
pub(crate) struct Supervisor {
    control: mpsc::Sender<Control>,
    task: JoinHandle<()>,
}

impl Supervisor {
    /// Starts the daemon and the task that owns it. Call inside the daemon's runtime.
    pub async fn start(config: Config) -> Result<Self, DaemonError> {
        let config = Arc::new(config);
        let (upgrades_tx, upgrades) = mpsc::channel(1);
        let controls = Controls {
            upgrades: (!config.upgrade_argv.is_empty()).then_some(upgrades_tx),
            upgrade_error: Default::default(),
        };
        let daemon = Daemon::start(Arc::clone(&config), controls.clone()).await?;
        let (control, requests) = mpsc::channel(4);
        let task = tokio::spawn(run(daemon, config, controls, requests, upgrades));
        Ok(Self { control, task })
    }

    /// Stops the daemon and waits for the supervisor to end.
    pub async fn stop(self) {
        let (done, stopped) = oneshot::channel();
        if self.control.send(Control::Stop(done)).await.is_ok() {
            let _ = stopped.await;
        }
        let _ = self.task.await;
    }

    /// A line for the host's status view (a future of its own, to run on the daemon's
    /// runtime).
    pub fn status(&self) -> impl std::future::Future<Output = String> + Send + 'static {
        let control = self.control.clone();
        async move {
            let (reply, answer) = oneshot::channel();
            if control.send(Control::Status(reply)).await.is_err() {
                return "stopped".to_owned();
            }
            answer.await.unwrap_or_else(|_| "stopped".to_owned())
        }
    }
}

async fn run(
    daemon: Daemon,
    config: Arc<Config>,
    controls: Controls,
    mut requests: mpsc::Receiver<Control>,
    mut upgrades: mpsc::Receiver<UpgradeRequest>,
) {
    // `None` once handed over to a new daemon: this process then only waits to be stopped.
    let mut daemon = Some(daemon);
    loop {
        tokio::select! {
            request = requests.recv() => match request {
                Some(Control::Status(reply)) => {
                    let line = match &daemon {
                        Some(daemon) => format!(
                            "listening on {}, {} sessions",
                            daemon.socket_path().display(),
                            daemon.sessions().len()
                        ),
                        None => "handed over to a new daemon".to_owned(),
                    };
                    let _ = reply.send(line);
                }
                stop => {
                    if let Some(daemon) = daemon.take() {
                        daemon.stop().await;
                    }
                    if let Some(Control::Stop(done)) = stop {
                        let _ = done.send(());
                    }
                    break;
                }
            },
            Some(request) = upgrades.recv(), if daemon.is_some() => {
                let current = daemon.take().expect("checked above");
                daemon = upgrade(current, &config, &controls, request).await;
            }
        }
    }
}

/// Replaces `daemon` by a new one running `request`'s binary. `None` when the new daemon
/// serves (this process then asks its host to stop it); otherwise the daemon that serves on,
/// the old one or (after a failed hand-over) a fresh one on the same socket.
async fn upgrade(
    daemon: Daemon,
    config: &Arc<Config>,
    controls: &Controls,
    request: UpgradeRequest,
) -> Option<Daemon> {
    let binary = match request.binary.map_or_else(handover::current_binary, Ok) {
        Ok(binary) => binary,
        Err(err) => {
            let _ = request
                .reply
                .send(Err(format!("cannot find this daemon's executable: {err}")));
            return Some(daemon);
        }
    };
    let args = config.upgrade_argv.iter().skip(1).cloned().collect();
    tracing::info!(binary = %binary.display(), "upgrade: starting the new daemon");
    let next = match Outgoing::start(binary.clone(), args).await {
        Ok(next) => next,
        Err(why) => {
            tracing::warn!("upgrade refused, this daemon serves on: {why}");
            *lock(&controls.upgrade_error) = Some(why.clone());
            let _ = request.reply.send(Err(why));
            return Some(daemon);
        }
    };
    let _ = request.reply.send(Ok(UpgradeStarted {
        pid: next.pid,
        binary: binary.clone(),
    }));
    let new_pid = next.pid;
    let listener = daemon.stop_for_handover().await;
    let kept = match listener.hand_over() {
        Ok(kept) => kept,
        Err(err) => {
            tracing::error!("upgrade: cannot hand over the socket ({err}); the daemon exits");
            return None;
        }
    };
    let given = match kept.try_clone() {
        Ok(given) => next.give(given).await,
        Err(err) => Err(format!("cannot duplicate the socket: {err}")),
    };
    match given {
        Ok(()) => {
            tracing::info!(pid = new_pid, binary = %binary.display(), "upgrade: the new daemon serves; this one exits");
            *lock(&controls.upgrade_error) = None;
            // The host (pulsar-standalone) stops on SIGTERM; this daemon has already stopped.
            // SAFETY: raising a signal at our own process is always sound.
            unsafe { libc::raise(libc::SIGTERM) };
            None
        }
        Err(why) => {
            tracing::error!("upgrade failed ({why}); serving on with a fresh daemon");
            *lock(&controls.upgrade_error) = Some(why);
            match Daemon::serve_on(
                Arc::clone(config),
                Socket::HandedOver(kept),
                controls.clone(),
            )
            .await
            {
                Ok(daemon) => Some(daemon),
                Err(err) => {
                    tracing::error!("cannot serve again after the failed upgrade: {err}");
                    // SAFETY: as above: stop the host, nothing serves.
                    unsafe { libc::raise(libc::SIGTERM) };
                    None
                }
            }
        }
    }
}

fn lock<T>(mutex: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}
