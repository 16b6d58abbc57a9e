//! Who is on the other end of a connection, as the kernel vouches for it (`SO_PEERCRED`).

/// The caller of a request, put into every request's extensions at accept time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    /// This daemon's number for the connection (unique while it runs).
    pub connection: u64,
    /// The peer's user id (always the daemon's own: others are refused at accept).
    pub uid: u32,
    /// The peer's process id, when the kernel knows it.
    pub pid: Option<i32>,
}

impl Peer {
    /// The client id used when a request names none: one per connection.
    pub fn default_client_id(&self) -> String {
        format!("conn-{}", self.connection)
    }

    /// The client id a request uses: the one it gave, or the connection's.
    pub fn client_id(&self, given: Option<String>) -> String {
        given.unwrap_or_else(|| self.default_client_id())
    }
}

/// A number for a new connection, unique across both listeners (the Unix socket and the
/// desktop's TCP port) while the daemon runs: it owns the clients the connection attaches.
pub(crate) fn next_connection() -> u64 {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}
