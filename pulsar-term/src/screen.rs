//! `Screen`, the public face of the crate: feed it output bytes, ask it what is shown, how
//! to draw it, and how to rebuild it. The daemon holds one per session.

use crate::modes::Modes;
use crate::parser::Parser;
use crate::terminal::Terminal;

/// A terminal screen model: both screens, cursor, modes, margins, tab stops, title, and
/// optionally a scrollback of rows that left the top.
pub struct Screen {
    pub(crate) term: Terminal,
    pub(crate) parser: Parser,
}

impl std::fmt::Debug for Screen {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Screen")
            .field("cols", &self.term.cols)
            .field("rows", &self.term.rows)
            .field("parser", &self.parser)
            .finish_non_exhaustive()
    }
}

impl Screen {
    /// A blank `cols`×`rows` screen without scrollback (sizes below 1 count as 1).
    pub fn new(cols: u16, rows: u16) -> Screen {
        Screen::with_scrollback(cols, rows, 0)
    }

    /// A blank screen that keeps up to `lines` rows scrolled off the top of the main screen.
    pub fn with_scrollback(cols: u16, rows: u16, lines: usize) -> Screen {
        let mut term = Terminal::new(usize::from(cols), usize::from(rows));
        term.history.limit = lines;
        Screen {
            term,
            parser: Parser::default(),
        }
    }

    /// Applies output bytes, in any chunking: a sequence split across calls is completed by
    /// the next call.
    pub fn feed(&mut self, bytes: &[u8]) {
        self.parser.feed(&mut self.term, bytes);
    }

    /// Changes the size, as the program's terminal just did. No reflow: see the README.
    pub fn resize(&mut self, cols: u16, rows: u16) {
        self.term.resize(usize::from(cols), usize::from(rows));
    }

    /// `(cols, rows)`.
    pub fn size(&self) -> (u16, u16) {
        (self.term.cols as u16, self.term.rows as u16)
    }

    /// Cursor `(row, col)`, zero-based (a pending wrap shows on the last column).
    pub fn cursor_position(&self) -> (u16, u16) {
        let c = &self.term.cursor;
        (c.y as u16, c.x.min(self.term.cols - 1) as u16)
    }

    /// True right after the last column was written with autowrap on: the next character
    /// goes to the next line.
    pub fn pending_wrap(&self) -> bool {
        self.term.cursor.x == self.term.cols
    }

    /// A full-screen program owns the alternate screen.
    pub fn alternate_screen(&self) -> bool {
        self.term.alt.is_some()
    }

    /// The modes (input modes, cursor visibility and style), for a client's terminal.
    pub fn modes(&self) -> Modes {
        self.term.modes
    }

    /// The cursor is shown (DECTCEM).
    pub fn cursor_visible(&self) -> bool {
        self.term.modes.cursor_visible
    }

    /// The last window title set (OSC 0 or 2), empty if none.
    pub fn title(&self) -> &str {
        &self.term.title
    }

    /// Rows in the scrollback.
    pub fn scrollback_len(&self) -> usize {
        self.term.history.lines.len()
    }

    /// Heap bytes this screen holds (its own allocations, counted by capacity).
    pub fn heap_bytes(&self) -> usize {
        self.term.heap_bytes() + self.parser.heap_bytes()
    }

    /// An upper bound of `heap_bytes` for this size and scrollback, whatever was fed: what
    /// the fuzz target checks. Each line holds at most a screen width of cells, and a side
    /// table of at most about four widths of extended cells with their combining marks.
    #[doc(hidden)]
    pub fn heap_bound(&self) -> usize {
        let t = &self.term;
        let line = 64
            + 8 * t.cols * std::mem::size_of::<u64>()
            + (4 * t.cols + 8) * (48 + 4 * crate::grid::MAX_COMBINING);
        let lines = 2 * (t.rows + 1) + t.history.limit;
        lines * (line + 16) + t.cols + 2 * crate::terminal::MAX_TITLE + 4096
    }

    /// A canonical text dump of the whole state (what is shown, how, and every mode), for
    /// tests: two screens with equal dumps behave the same from then on.
    #[doc(hidden)]
    pub fn dump(&self) -> String {
        use std::fmt::Write;
        let t = &self.term;
        let mut s = String::new();
        let _ = writeln!(
            s,
            "size {}x{} cursor {:?} pen {:?} charsets {:?}",
            t.cols,
            t.rows,
            (t.cursor.x, t.cursor.y),
            t.cursor.pen,
            t.cursor.charsets
        );
        let _ = writeln!(
            s,
            "saved {:?}\nregion {}..={} modes {:?}",
            t.saved, t.top, t.bottom, t.modes
        );
        let _ = writeln!(
            s,
            "tabs {:?} title {:?} last {:?} alt {} pending {:?}",
            t.tabs.custom_stops(t.cols),
            t.title,
            t.last_char,
            t.alt.is_some(),
            self.parser.pending()
        );
        let mut dump_line = |name: &str, i: usize, line: &crate::grid::Line| {
            let end = (0..line.len())
                .rev()
                .find(|&x| !line.cell(x).is_blank())
                .map_or(0, |x| x + 1);
            if end == 0 {
                return;
            }
            let _ = write!(s, "{name}{i}:");
            for x in 0..end {
                let c = line.cell(x);
                let _ = write!(s, " {:?}{:?}/{}/{:?}", c.ch, c.combining, c.width, c.style);
            }
            s.push('\n');
        };
        for (i, line) in t.history.lines.iter().enumerate() {
            dump_line("h", i, line);
        }
        for (i, line) in t.main.lines.iter().enumerate() {
            dump_line("m", i, line);
        }
        if let Some(alt) = &t.alt {
            for (i, line) in alt.lines.iter().enumerate() {
                dump_line("a", i, line);
            }
        }
        s
    }
}
#[cfg(test)]
mod size_tests {
    /// Every idle session holds one (the lines are apart, allocated as written).
    #[test]
    fn a_screen_is_at_most_384_bytes() {
        let size = std::mem::size_of::<super::Screen>();
        assert!(size <= 384, "{size} bytes");
    }
}
