//! The screen model: Pulsar's own emulator (`pulsar-term`) fed every output byte, so that
//! attaching redraws the current screen exactly (as tmux and shpool do) instead of replaying
//! raw history. Lines are allocated as they are written (an idle shell's screen is a few
//! hundred bytes), runs of text are written whole, and the redraw rebuilds both screens, the
//! modes and the pen on a blank terminal.

pub use pulsar_term::{Rendered, Screen, history};

// Its behaviour, this API included, is tested in pulsar-term (`tests/daemon_contract.rs`).
