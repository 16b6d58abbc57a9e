//! Pulsar's terminal screen model: what a session's program has drawn, kept compact.
//!
//! A [`Screen`] is fed a program's output and answers what is shown ([`Screen::render`]),
//! how to draw it on a client ([`Screen::redraw`]) and how to rebuild it exactly
//! ([`Screen::serialize`], [`Screen::hibernate`]). Lines are allocated only when written and
//! grow as written; a plain ASCII cell is five bytes, anything else goes to a side table of
//! its line (as tmux's grid does), so an idle shell screen costs about a kilobyte. Printable
//! ASCII is written a whole row segment at a time.
//!
//! It is its own crate because it depends on nothing of the daemon: it can be fuzzed
//! (`cargo +nightly fuzz run feed` in `fuzz/`) and benchmarked
//! (`cargo run --release --example throughput`) without compiling PTY, SSH or SQLite code.
//! xterm's documented behaviour is the reference; where it is silent, tmux's (see the README
//! for the cases).

mod charset;
mod edit;
mod grid;
mod hibernate;
mod modes;
mod motion;
mod parser;
mod perform;
mod render;
mod screen;
mod serialize;
mod style;
mod tabs;
mod terminal;

pub use charset::{Charset, Charsets};
pub use hibernate::Hibernated;
pub use modes::{Modes, MouseEncoding, MouseMode};
pub use render::{Rendered, history};
pub use screen::Screen;
pub use style::{Color, Style};
