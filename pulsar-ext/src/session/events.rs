//! The daemon-wide event stream: every session's creation, clients, size, end, bell, title,
//! finished commands, recordings and links (SSH, serial) dropping and coming back, on one
//! tokio broadcast. Sending never waits; a subscriber that
//! falls behind loses the oldest events and is told so by the channel.

use pulsar_protocol::SessionEvent;
use tokio::sync::broadcast;

/// Events a subscriber may fall behind by before it loses some.
const CAPACITY: usize = 1024;

/// The sending side, shared by the manager and every session.
#[derive(Debug, Clone)]
pub struct Events(broadcast::Sender<SessionEvent>);

impl Events {
    /// A stream nobody listens to yet.
    pub fn new() -> Self {
        Self(broadcast::channel(CAPACITY).0)
    }

    /// Tells every subscriber; never waits (with none, the event is dropped).
    pub fn emit(&self, event: SessionEvent) {
        let _ = self.0.send(event);
    }

    /// Every event from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<SessionEvent> {
        self.0.subscribe()
    }
}

impl Default for Events {
    fn default() -> Self {
        Self::new()
    }
}
