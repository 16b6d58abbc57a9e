//! What Pulsar keeps of a terminal's output: the scrollback ring (raw bytes by absolute offset).

mod scrollback;

pub use scrollback::{Chunk, Scrollback};
