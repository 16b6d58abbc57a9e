//! The session core: sessions, their output log and readers, and the manager that owns them.
//!
//! Knows nothing of JSON-RPC (that is `rpc/`), SQL (`store/`) or any particular backend: it
//! gets backends through `backend::open` and sees only `Backend` and `BackendError`. Clients
//! appear here only as ids with an owning connection number.

mod clients;
mod error;
mod events;
mod forwards;
mod manager;
mod marks;
mod observer;
mod output;
mod pump;
mod rate;
mod reader;
mod recording;
#[allow(clippy::module_inception)]
mod session;
mod view;
mod wait;

pub use clients::ClientOwner;
pub use error::SessionError;
pub use events::Events;
pub use manager::{CreateRequest, RestoreMode, RestoreRequest, ResumedRecording, SessionManager};
pub use observer::SessionObserver;
pub use reader::{OUTPUT_CHUNK, OutputReader, StreamEvent};
pub(crate) use recording::{RecordingSpec, cast_of, create_dir as create_recordings_dir};
pub use session::{Exit, History, Session, SessionSpec};
pub use wait::Pattern;

/// Terminal sizes accepted, per dimension.
const SIZE_RANGE: std::ops::RangeInclusive<u16> = 1..=1000;

/// Checks a requested terminal size.
fn check_size(cols: u16, rows: u16) -> Result<(), SessionError> {
    for (field, value) in [("cols", cols), ("rows", rows)] {
        if !SIZE_RANGE.contains(&value) {
            return Err(SessionError::InvalidParam {
                field,
                reason: format!("{value} is outside 1..=1000"),
            });
        }
    }
    Ok(())
}
