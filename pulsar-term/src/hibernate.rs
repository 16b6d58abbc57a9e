//! Hibernation: an idle screen kept as its serialization (a few KB at most, often a few
//! hundred bytes) instead of its grid, and rebuilt when it is needed again.

use crate::screen::Screen;

/// A screen at rest: its exact serialization and what is needed to replay it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hibernated {
    cols: u16,
    rows: u16,
    scrollback: usize,
    bytes: Box<[u8]>,
}

impl Screen {
    /// Gives up the grid for its serialization; [`Hibernated::wake`] rebuilds the same state.
    pub fn hibernate(self) -> Hibernated {
        let (cols, rows) = self.size();
        Hibernated {
            cols,
            rows,
            scrollback: self.term.history.limit,
            bytes: self.serialize().into_boxed_slice(),
        }
    }
}

impl Hibernated {
    /// Rebuilds the screen (the work is done now, not while asleep).
    pub fn wake(&self) -> Screen {
        let mut screen = Screen::with_scrollback(self.cols, self.rows, self.scrollback);
        screen.feed(&self.bytes);
        screen
    }

    /// Bytes held while asleep.
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    /// Never true in practice (a screen serializes to at least its cursor position).
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// The serialization itself (for storing a sleeping screen on disk).
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }
}
