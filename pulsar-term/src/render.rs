//! The screen as rows of text for `get_screen` (plain, or with SGR sequences), and the
//! history of a raw output log formatted for a client's scrollback.

use crate::grid::Line;
use crate::screen::Screen;
use crate::style::Style;

/// The visible state rendered for a client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    /// One string per row, trailing blanks trimmed.
    pub rows: Vec<String>,
    /// Cursor row and column (zero-based).
    pub cursor: (u16, u16),
    /// Cursor shown?
    pub cursor_visible: bool,
    /// A full-screen program owns the alternate screen.
    pub alternate_screen: bool,
}

/// One line as text: plain (`ansi` false) or with an SGR sequence wherever the style changes
/// (starting from the default style, ending with a reset if it left it).
pub(crate) fn line_text(line: &Line, cols: usize, ansi: bool) -> String {
    let end = (0..line.len().min(cols))
        .rev()
        .find(|&x| {
            let c = line.cell(x);
            if ansi {
                !c.is_blank()
            } else {
                c.ch != ' ' || !c.combining.is_empty()
            }
        })
        .map_or(0, |x| x + 1);
    let mut text = String::with_capacity(end);
    let mut pen = Style::default();
    let mut sgr = Vec::new();
    for x in 0..end {
        let c = line.cell(x);
        if c.width == 0 {
            continue;
        }
        if ansi && c.style != pen {
            sgr.clear();
            c.style.write_sgr_from(&pen, &mut sgr);
            text.push_str(std::str::from_utf8(&sgr).expect("SGR is ASCII"));
            pen = c.style;
        }
        text.push(c.ch);
        text.extend(c.combining);
    }
    if ansi && pen != Style::default() {
        text.push_str("\x1b[0m");
    }
    text
}

impl Screen {
    /// The visible screen as rows of text (`ansi`: with SGR sequences), and the cursor.
    pub fn render(&self, ansi: bool) -> Rendered {
        let t = &self.term;
        Rendered {
            rows: t
                .grid()
                .lines
                .iter()
                .map(|line| line_text(line, t.cols, ansi))
                .collect(),
            cursor: self.cursor_position(),
            cursor_visible: t.modes.cursor_visible,
            alternate_screen: t.alt.is_some(),
        }
    }

    /// The scrollback rows, oldest first, each formatted with its attributes and ended by
    /// `ESC [0m` and `\r\n`.
    pub fn history_formatted(&self) -> Vec<u8> {
        let mut out = b"\x1b[0m".to_vec();
        for line in &self.term.history.lines {
            out.extend_from_slice(line_text(line, usize::MAX, true).as_bytes());
            out.extend_from_slice(b"\x1b[0m\r\n");
        }
        out
    }
}

/// Up to `lines` rows of history that scrolled off the top of a `cols`×`rows` terminal while
/// `raw` (a session's retained output) was shown on it, oldest first, formatted with their
/// attributes and each ended by `\r\n`. Computed on demand, so sessions pay nothing for it.
pub fn history(raw: &[u8], cols: u16, rows: u16, lines: usize) -> Vec<u8> {
    if lines == 0 {
        return Vec::new();
    }
    let mut screen = Screen::with_scrollback(cols, rows, lines);
    screen.feed(raw);
    screen.history_formatted()
}
