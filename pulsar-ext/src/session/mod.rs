//! The session core: sessions, their output log and readers, and the manager that owns them.
//!
//! Knows nothing of JSON-RPC (that is `rpc/`), SQL or any particular backend's internals.
//! Clients appear here only as ids with an owning connection number.

mod error;
mod manager;
mod observer;
mod reader;
#[allow(clippy::module_inception)]
mod session;

pub use error::SessionError;
pub use manager::{CreateRequest, RestoreMode, RestoreRequest, SessionManager};
pub use observer::SessionObserver;
pub use reader::{OUTPUT_CHUNK, OutputReader, StreamEvent};
pub use session::{ClientOwner, Exit, History, Session, SessionSpec};
