//! What Pulsar keeps of a terminal's output: the scrollback ring (raw bytes by absolute
//! offset) and the screen model (what the terminal shows now).

mod plain;
mod screen;
mod scrollback;

pub(crate) use plain::PlainText;
pub use screen::{Rendered, Screen, history};
pub use scrollback::{Chunk, Loader, Scrollback};
