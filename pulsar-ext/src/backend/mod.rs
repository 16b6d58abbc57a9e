//! Backends: what actually runs behind a session (a local PTY, a serial port, an SSH shell),
//! all behind the one [`Backend`] trait. Backends know nothing about clients or sessions.

mod local;
mod serial;
mod ssh;

use std::io;
use std::time::Duration;

use async_trait::async_trait;

pub use local::{LocalBackend, SpawnError};
pub use serial::{OpenError, SerialBackend};
pub use ssh::{ConnectError, SshBackend, SshOptions};

/// How a session's process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExitStatus {
    /// Exit code of a normal exit.
    pub code: Option<i32>,
    /// Signal that killed it.
    pub signal: Option<i32>,
}

/// A running terminal endpoint: bytes in, bytes out, a size, and an end.
#[async_trait]
pub trait Backend: Send + Sync + 'static {
    /// Reads the next output bytes into `buf`; `Ok(0)` means the output has ended.
    /// Only the session's reader calls this, never concurrently.
    async fn read(&self, buf: &mut [u8]) -> io::Result<usize>;

    /// Writes all of `data` as one unit: concurrent writers do not interleave.
    async fn write_all(&self, data: &[u8]) -> io::Result<()>;

    /// Tells the far end the terminal's new size.
    fn resize(&self, cols: u16, rows: u16) -> io::Result<()>;

    /// Resolves once the far end has ended, with how it ended.
    async fn wait(&self) -> ExitStatus;

    /// Asks the far end to end (SIGHUP to a local process group); after `grace`, forces it
    /// (SIGKILL). Returns once asked; [`Backend::wait`] reports the end.
    async fn terminate(&self, grace: Duration);

    /// The local process id, where there is one.
    fn pid(&self) -> Option<u32>;

    /// Once ended, why, when [`ExitStatus`] cannot say (a serial device vanished, an SSH
    /// connection dropped); shown to
    /// clients as the stopped session's `reason`.
    fn end_reason(&self) -> Option<String> {
        None
    }
}
