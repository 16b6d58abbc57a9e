//! The session observer: a row written on every change of a session's life, clients or size.

use std::sync::atomic::{AtomicBool, Ordering};

use pulsar_protocol::SessionId;

use super::rows::row_for;
use crate::session::{Session, SessionObserver};
use crate::store::Store;

/// Writes each session's row as it changes, until frozen.
pub(crate) struct StoreObserver {
    store: Store,
    /// Set at shutdown: the processes ending then must not be recorded as stopped, or they
    /// would not be respawned at the next start.
    frozen: AtomicBool,
}

impl StoreObserver {
    /// An observer writing to `store`.
    pub fn new(store: Store) -> Self {
        Self {
            store,
            frozen: AtomicBool::new(false),
        }
    }

    /// Stops recording changes (see [`StoreObserver::frozen`]).
    pub fn freeze(&self) {
        self.frozen.store(true, Ordering::SeqCst);
    }

    fn is_frozen(&self) -> bool {
        self.frozen.load(Ordering::SeqCst)
    }
}

impl SessionObserver for StoreObserver {
    fn changed(&self, session: &Session) {
        if !self.is_frozen() {
            self.store.upsert_session(row_for(session));
        }
    }

    fn removed(&self, id: SessionId) {
        if !self.is_frozen() {
            self.store.delete_session(id);
        }
    }
}
