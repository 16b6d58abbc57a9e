//! How the world outside the session core learns that sessions changed (the store, mainly),
//! without the core knowing who listens.

use pulsar_protocol::SessionId;

use super::Session;

/// Told of every change worth persisting. Calls happen on the changing task and must not
/// block: queue the work.
pub trait SessionObserver: Send + Sync {
    /// A session was created or restored, or its clients, size or life changed.
    fn changed(&self, session: &Session);

    /// A session was removed from the table (cleanup after retention).
    fn removed(&self, id: SessionId);
}
