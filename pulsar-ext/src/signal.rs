//! Two small publish-and-wake cells for what every session (and local backend) publishes and
//! its readers follow: the output's head ([`Head`]) and the end ([`Once`]); and the poll of a
//! condition that has one poller ([`poll_for_one`]), which keeps no future waiting.
//!
//! Each is its value and a [`Notify`] (32 bytes), kept inside its owner, where a tokio
//! `watch` channel allocates ~350 bytes of shared state apart (eight `Notify`s to spread its
//! receivers) for each of the three such values of a local session (its head, its end, its
//! backend's exit status): about a kilobyte of every idle session. Readers here are few (a session's subscribers and waiters), so one `Notify` is
//! enough.
//!
//! No wake-up is lost: a waiter registers with the `Notify` (`enable`) before it looks at
//! the value, and a publisher changes the value before it wakes the registered waiters.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};

use futures_util::task::AtomicWaker;
use tokio::sync::Notify;

/// A value that only grows (the output's head offset), with a wake-up on every change.
#[derive(Debug)]
pub(crate) struct Head {
    value: AtomicU64,
    changed: Notify,
}

impl Head {
    pub fn new(value: u64) -> Self {
        Self {
            value: AtomicU64::new(value),
            changed: Notify::new(),
        }
    }

    /// The value now.
    pub fn get(&self) -> u64 {
        self.value.load(Ordering::Acquire)
    }

    /// Sets the value and wakes every waiter.
    pub fn publish(&self, value: u64) {
        self.value.store(value, Ordering::Release);
        self.changed.notify_waiters();
    }

    /// Resolves once the value is other than `seen`.
    pub async fn changed_from(&self, seen: u64) {
        loop {
            let notified = self.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.get() != seen {
                return;
            }
            notified.await;
        }
    }
}

/// A value set once (how a program ended), with a wake-up when it is.
#[derive(Debug)]
pub(crate) struct Once<T> {
    value: OnceLock<T>,
    set: Notify,
}

impl<T: Copy> Once<T> {
    /// Unset, or already set to `value`.
    pub fn new(value: Option<T>) -> Self {
        let cell = OnceLock::new();
        if let Some(value) = value {
            let _ = cell.set(value);
        }
        Self {
            value: cell,
            set: Notify::new(),
        }
    }

    /// The value, once set.
    pub fn get(&self) -> Option<T> {
        self.value.get().copied()
    }

    /// Sets the value, unless it is set already (the first value stays), and wakes every
    /// waiter.
    pub fn set(&self, value: T) {
        let _ = self.value.set(value);
        self.set.notify_waiters();
    }

    /// Resolves with the value once it is set.
    pub async fn wait(&self) -> T {
        loop {
            let notified = self.set.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Some(value) = self.get() {
                return value;
            }
            notified.await;
        }
    }
}

/// Polls a condition for its one poller, whose waker `waker` keeps: ready once `is_set`. The
/// condition is looked at again after the registration, so a setter that raises it and then
/// wakes `waker` between the first look and the registration is not missed.
pub(crate) fn poll_for_one(
    waker: &AtomicWaker,
    cx: &mut Context<'_>,
    is_set: impl Fn() -> bool,
) -> Poll<()> {
    if is_set() {
        return Poll::Ready(());
    }
    waker.register(cx.waker());
    if is_set() {
        Poll::Ready(())
    } else {
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn a_head_waiter_wakes_on_a_change_made_after_it_looked() {
        let head = Arc::new(Head::new(5));
        let waiter = tokio::spawn({
            let head = Arc::clone(&head);
            async move { head.changed_from(5).await }
        });
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        head.publish(9);
        tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .expect("the waiter woke")
            .unwrap();
    }

    #[tokio::test]
    async fn a_head_waiter_returns_at_once_when_the_value_already_moved() {
        let head = Head::new(5);
        head.publish(6);
        tokio::time::timeout(Duration::from_secs(5), head.changed_from(5))
            .await
            .expect("no wait for a value already other than seen");
    }

    #[tokio::test]
    async fn a_once_waiter_gets_the_first_value_set() {
        let once = Arc::new(Once::new(None));
        let waiter = tokio::spawn({
            let once = Arc::clone(&once);
            async move { once.wait().await }
        });
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        once.set(1u8);
        once.set(2u8);
        let got = tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .expect("the waiter woke")
            .unwrap();
        assert_eq!((got, once.get()), (1, Some(1)));
    }

    #[tokio::test]
    async fn a_once_made_set_does_not_wait() {
        let once = Once::new(Some(3u8));
        assert_eq!(once.wait().await, 3);
    }
}
