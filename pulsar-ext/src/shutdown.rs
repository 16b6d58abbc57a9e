//! One stop signal for the whole daemon that also counts the tasks still holding it, so that
//! stopping can wait for them (mini-redis's pattern: broadcast the signal, count the live
//! handlers, wait for the count to reach zero).
//!
//! Every long-lived task (the accept loop, each connection, each request in flight on the
//! line-JSON framing, the periodic tasks) holds a [`Shutdown`]; dropping it is how a task
//! says it is done.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::{Notify, watch};

/// Sends the stop signal and waits for every [`Shutdown`] to be dropped.
#[derive(Debug)]
pub struct ShutdownTrigger {
    signal: watch::Sender<bool>,
    live: Arc<Live>,
}

/// Listens for the stop signal, and counts as one running task until dropped. Clone it for
/// each task that should be waited for.
#[derive(Debug)]
pub struct Shutdown {
    signal: watch::Receiver<bool>,
    live: Arc<Live>,
}

/// Listens for the stop signal without counting as a running task: for requests that should
/// end when the daemon stops instead of holding the stop up (a long `wait_for_output`).
#[derive(Debug, Clone)]
pub struct StopSignal(watch::Receiver<bool>);

impl StopSignal {
    /// Resolves when the signal is sent (at once if it already was, or if the trigger is gone).
    pub async fn wait(&mut self) {
        let _ = self.0.wait_for(|stopped| *stopped).await;
    }

    /// Whether the signal was sent (or the trigger is gone).
    pub fn is_set(&self) -> bool {
        *self.0.borrow() || self.0.has_changed().is_err()
    }
}

/// How many [`Shutdown`]s exist, and a wake-up for when that reaches zero.
#[derive(Debug, Default)]
struct Live {
    count: AtomicUsize,
    zero: Notify,
}

/// A linked trigger and a first listener.
pub fn channel() -> (ShutdownTrigger, Shutdown) {
    let (signal, listener) = watch::channel(false);
    let live = Arc::new(Live::default());
    live.count.store(1, Ordering::SeqCst);
    (
        ShutdownTrigger {
            signal,
            live: Arc::clone(&live),
        },
        Shutdown {
            signal: listener,
            live,
        },
    )
}

impl ShutdownTrigger {
    /// Signals every listener. Idempotent.
    pub fn trigger(&self) {
        self.signal.send_replace(true);
    }

    /// Tasks still holding a [`Shutdown`].
    pub fn running(&self) -> usize {
        self.live.count.load(Ordering::SeqCst)
    }

    /// Signals every listener, then waits up to `within` for all of them to finish. Returns
    /// how many were still running when the wait ended (0: all finished).
    pub async fn stop(&self, within: Duration) -> usize {
        self.trigger();
        let all_done = async {
            loop {
                let zero = self.live.zero.notified();
                tokio::pin!(zero);
                // Register before looking, so a drop in between is not missed.
                zero.as_mut().enable();
                if self.running() == 0 {
                    return;
                }
                zero.await;
            }
        };
        let _ = tokio::time::timeout(within, all_done).await;
        self.running()
    }
}

impl Shutdown {
    /// True once the signal was sent.
    #[cfg(test)]
    fn is_triggered(&self) -> bool {
        *self.signal.borrow()
    }

    /// Resolves when the signal is sent (at once if it already was, or if the trigger is gone).
    pub async fn wait(&mut self) {
        let _ = self.signal.wait_for(|stopped| *stopped).await;
    }

    /// The same signal, without counting as a running task.
    pub fn signal(&self) -> StopSignal {
        StopSignal(self.signal.clone())
    }
}

impl Clone for Shutdown {
    fn clone(&self) -> Self {
        self.live.count.fetch_add(1, Ordering::SeqCst);
        Self {
            signal: self.signal.clone(),
            live: Arc::clone(&self.live),
        }
    }
}

impl Drop for Shutdown {
    fn drop(&mut self) {
        if self.live.count.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.live.zero.notify_waiters();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn stop_waits_for_every_holder_to_finish() {
        let (trigger, shutdown) = channel();
        let mut worker = shutdown.clone();
        drop(shutdown);
        let task = tokio::spawn(async move {
            worker.wait().await;
            tokio::time::sleep(Duration::from_millis(50)).await;
            drop(worker);
        });
        assert_eq!(trigger.stop(Duration::from_secs(5)).await, 0);
        task.await.unwrap();
    }

    #[tokio::test]
    async fn stop_gives_up_after_its_bound_and_says_how_many_remain() {
        let (trigger, shutdown) = channel();
        let _stuck = shutdown.clone();
        drop(shutdown);
        assert_eq!(trigger.stop(Duration::from_millis(20)).await, 1);
    }

    #[tokio::test]
    async fn listeners_see_the_signal_even_when_made_after_it() {
        let (trigger, shutdown) = channel();
        trigger.trigger();
        let mut late = shutdown.clone();
        late.wait().await;
        assert!(late.is_triggered());
    }
}
