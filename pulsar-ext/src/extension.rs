//! [`PulsarExtension`]: the daemon behind the Orbit extension contract.
//!
//! The host polls these trait methods on *its* runtime, which may be a different copy of
//! tokio (cdylib) or the same one (`pulsar-standalone`). Either way the extension builds and
//! owns its own runtime, hands every piece of work to it, and awaits only join handles, which
//! work on any executor. Runtimes are shut down with `shutdown_background`, which is safe
//! inside another runtime's async context.

use orbit_api_stub::{
    ExtensionContext, ExtensionError, ExtensionState, ExtensionStatus, OrbitExtension, async_trait,
};
use tokio::runtime::Runtime;
use tokio::sync::Mutex;

use crate::config::Config;
use crate::relay::Relay;
use crate::supervisor::Supervisor;

/// The Pulsar daemon as an Orbit extension.
pub struct PulsarExtension {
    state: Mutex<State>,
}

enum State {
    Stopped,
    Running {
        runtime: Runtime,
        /// The output threads, apart from the request threads (see `relay`).
        relay: Relay,
        supervisor: Supervisor,
    },
    Failed(String),
}

impl PulsarExtension {
    /// A stopped extension; `start` brings it up.
    pub fn new() -> Self {
        Self {
            state: Mutex::new(State::Stopped),
        }
    }
}

impl Default for PulsarExtension {
    fn default() -> Self {
        Self::new()
    }
}

/// Installs the log subscriber for this copy of `tracing` (once per process and copy).
fn init_logging(level: &str) {
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    use tracing_subscriber::{Layer as _, filter};

    let level_filter = tracing_subscriber::EnvFilter::try_new(level)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // At trace level russh logs its packets in plain text and jsonrpsee whole requests: both
    // would put SSH passwords in the log. Whatever the configured level, nothing of theirs
    // below debug gets through.
    let no_secrets = filter::filter_fn(|meta| {
        let target = meta.target();
        !(*meta.level() == tracing::Level::TRACE
            && (target.starts_with("russh") || target.starts_with("jsonrpsee")))
    });
    let layer = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .with_filter(level_filter)
        .with_filter(no_secrets);
    let _ = tracing_subscriber::registry().with(layer).try_init();
}

#[async_trait]
impl OrbitExtension for PulsarExtension {
    fn name(&self) -> &str {
        "pulsar"
    }

    fn version(&self) -> &str {
        env!("CARGO_PKG_VERSION")
    }

    async fn start(&self, ctx: ExtensionContext) -> Result<(), ExtensionError> {
        let mut state = self.state.lock().await;
        if matches!(*state, State::Running { .. }) {
            return Err(ExtensionError::new("pulsar is already running"));
        }
        let settings: serde_json::Value = ctx
            .settings()
            .map_err(|err| ExtensionError::new(format!("invalid pulsar settings: {err}")))?;
        let config = Config::load(ctx.dirs(), &settings)
            .map_err(|err| ExtensionError::new(err.to_string()))?;
        init_logging(&config.log_level);

        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("pulsar")
            .enable_all()
            .build()
            .map_err(|err| ExtensionError::new(format!("cannot start a runtime: {err}")))?;
        let relay = match Relay::start() {
            Ok(relay) => relay,
            Err(err) => {
                runtime.shutdown_background();
                return Err(ExtensionError::new(format!(
                    "cannot start the output relay's threads: {err}"
                )));
            }
        };
        let started = runtime.spawn(Supervisor::start(config)).await;
        match started {
            Ok(Ok(supervisor)) => {
                *state = State::Running {
                    runtime,
                    relay,
                    supervisor,
                };
                Ok(())
            }
            Ok(Err(err)) => {
                runtime.shutdown_background();
                relay.stop();
                let message = err.to_string();
                *state = State::Failed(message.clone());
                Err(ExtensionError::new(message))
            }
            Err(join) => {
                runtime.shutdown_background();
                relay.stop();
                let message = format!("pulsar panicked while starting: {join}");
                *state = State::Failed(message.clone());
                Err(ExtensionError::new(message))
            }
        }
    }

    async fn stop(&self) -> Result<(), ExtensionError> {
        let mut state = self.state.lock().await;
        let State::Running {
            runtime,
            relay,
            supervisor,
        } = std::mem::replace(&mut *state, State::Stopped)
        else {
            return Ok(());
        };
        let stopped = runtime.spawn(supervisor.stop()).await;
        runtime.shutdown_background();
        relay.stop();
        stopped
            .map_err(|join| ExtensionError::new(format!("pulsar panicked while stopping: {join}")))
    }

    async fn status(&self) -> ExtensionStatus {
        match &*self.state.lock().await {
            State::Stopped => ExtensionStatus {
                state: ExtensionState::Stopped,
                detail: "stopped".to_owned(),
            },
            State::Running {
                runtime,
                supervisor,
                ..
            } => ExtensionStatus {
                state: ExtensionState::Running,
                detail: runtime
                    .spawn(supervisor.status())
                    .await
                    .unwrap_or_else(|err| format!("status unavailable: {err}")),
            },
            State::Failed(reason) => ExtensionStatus {
                state: ExtensionState::Failed,
                detail: reason.clone(),
            },
        }
    }
}
