//! The trait every Orbit extension implements, and the plain types that cross the boundary.
//!
//! Everything here is owned data from `std` or this crate: host and extension each carry their
//! own copies of every other crate, so nothing else may be shared across the `cdylib` line.

use async_trait::async_trait;

use crate::ExtensionContext;

/// An extension the Orbit host can start and stop.
///
/// The host drives these futures on *its* async runtime, which the extension cannot use (it
/// holds a different copy of tokio). An extension therefore owns its own runtime and only
/// awaits runtime-agnostic handles (channels, join handles) from these methods.
#[async_trait]
pub trait OrbitExtension: Send + Sync {
    /// Short, stable name used in logs and config (`[extensions.NAME]`).
    fn name(&self) -> &str;

    /// The extension's own version (its crate version, usually).
    fn version(&self) -> &str;

    /// Starts the extension's services. Returns once they are ready to serve, or with the
    /// reason they could not start.
    async fn start(&self, ctx: ExtensionContext) -> Result<(), ExtensionError>;

    /// Stops everything `start` began and releases its resources. Idempotent.
    async fn stop(&self) -> Result<(), ExtensionError>;

    /// A cheap health report for the host's status page.
    async fn status(&self) -> ExtensionStatus;
}

/// Why an extension could not do what the host asked, as text: an error type of the extension's
/// own cannot cross the boundary, so the extension renders its error chain here.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ExtensionError {
    message: String,
}

impl ExtensionError {
    /// Wraps a message (usually an error chain rendered with `{:#}`).
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
        }
    }

    /// The message the extension gave.
    pub fn message(&self) -> &str {
        &self.message
    }
}

/// Where an extension is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExtensionState {
    /// Constructed or stopped: not serving.
    Stopped,
    /// Serving.
    Running,
    /// `start` failed or a service died; the detail says why.
    Failed,
}

/// What [`OrbitExtension::status`] reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExtensionStatus {
    /// The coarse state.
    pub state: ExtensionState,
    /// One human line: where it listens, how many sessions, or why it failed.
    pub detail: String,
}
