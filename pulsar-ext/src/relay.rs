//! The relay runtime: the threads that move output (the session pumps, with their screen
//! models, and the output subscribers, with their encoding), apart from the runtime that
//! answers requests.
//!
//! Tokio has no task priorities: on one runtime, a request waited behind every flooding
//! session's pump and subscriber (measured: `get_status` p50 1.6 ms, p99 4.4 ms while ten
//! sessions flood, against 31 µs / 0.3-0.5 ms with the relay on threads of its own; the
//! kernel's scheduler then runs the woken request thread at once). The relay is owned by the
//! running extension ([`Relay::start`] / [`Relay::stop`]); without one (unit tests, fuzzing),
//! relay work runs on the current runtime, as everything else does.

use std::future::Future;
use std::sync::RwLock;

use tokio::runtime::{Handle, Runtime};
use tokio::task::JoinHandle;

/// The relay's handle while the extension runs.
static RELAY: RwLock<Option<Handle>> = RwLock::new(None);

/// The relay's threads, owned by the running extension.
pub(crate) struct Relay(Runtime);

impl Relay {
    /// Starts the relay's threads (one per CPU beyond the first, at least one, at most three)
    /// and makes [`spawn`] use them.
    pub fn start() -> std::io::Result<Self> {
        let cpus = std::thread::available_parallelism().map_or(2, |n| n.get());
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(cpus.saturating_sub(1).clamp(1, 3))
            .thread_name("pulsar-relay")
            .enable_all()
            .build()?;
        *RELAY.write().unwrap_or_else(|e| e.into_inner()) = Some(runtime.handle().clone());
        Ok(Self(runtime))
    }

    /// Stops them; relay work spawned later runs on the caller's runtime.
    pub fn stop(self) {
        RELAY.write().unwrap_or_else(|e| e.into_inner()).take();
        self.0.shutdown_background();
    }
}

fn handle() -> Option<Handle> {
    RELAY.read().unwrap_or_else(|e| e.into_inner()).clone()
}

/// Spawns output work on the relay, or on the current runtime when there is none.
pub(crate) fn spawn<F>(future: F) -> JoinHandle<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    match handle() {
        Some(relay) => relay.spawn(future),
        None => tokio::spawn(future),
    }
}

/// Runs `register` in the relay's context, so that a descriptor the relay reads is watched
/// by the relay's own reactor (its readiness then wakes the pump without a hop through the
/// request runtime's threads).
pub(crate) fn register<T>(register: impl FnOnce() -> T) -> T {
    match handle() {
        Some(relay) => {
            let _inside = relay.enter();
            register()
        }
        None => register(),
    }
}
