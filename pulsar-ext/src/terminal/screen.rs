//! The screen model: a vt100 emulator fed every output byte, so that attaching redraws the
//! current screen exactly (as tmux and shpool do) instead of replaying raw history.

use std::num::NonZeroU16;

/// A session's current screen.
pub struct Screen {
    parser: vt100::Parser,
}

/// The visible state rendered for a client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    /// One string per row.
    pub rows: Vec<String>,
    /// Cursor row and column (zero-based).
    pub cursor: (u16, u16),
    /// Cursor shown?
    pub cursor_visible: bool,
    /// A full-screen program owns the alternate screen.
    pub alternate_screen: bool,
}

fn nonzero(n: u16) -> NonZeroU16 {
    NonZeroU16::new(n).unwrap_or(NonZeroU16::MIN)
}

/// Switches a terminal to the alternate screen (xterm's mode 1049).
const ENTER_ALTERNATE_SCREEN: &str = "\x1b[?1049h";

impl Screen {
    /// A blank screen of `cols`×`rows` without scrollback (history lives in the raw ring).
    pub fn new(cols: u16, rows: u16) -> Self {
        Self {
            parser: vt100::Parser::new(nonzero(rows), nonzero(cols), 0),
        }
    }

    /// Applies output bytes.
    pub fn feed(&mut self, bytes: &[u8]) {
        self.parser.process(bytes);
    }

    /// Changes the size, as the program's terminal just did.
    pub fn resize(&mut self, cols: u16, rows: u16) {
        self.parser
            .screen_mut()
            .set_size(nonzero(rows), nonzero(cols));
    }

    /// Bytes that redraw this screen on a blank terminal of the same size: the alternate
    /// screen if in use, contents with attributes, cursor position and visibility, and the
    /// input modes (keypad, cursor keys, bracketed paste, mouse, cursor style).
    pub fn redraw(&self) -> Vec<u8> {
        let screen = self.parser.screen();
        let mut out = String::new();
        if screen.alternate_screen() {
            out.push_str(ENTER_ALTERNATE_SCREEN);
        }
        out.push_str(&screen.state_formatted());
        out.into_bytes()
    }

    /// The screen as rows of text (`ansi`: with SGR sequences).
    pub fn render(&self, ansi: bool) -> Rendered {
        let screen = self.parser.screen();
        let (rows, cols) = screen.size();
        let rows_text: Vec<String> = if ansi {
            screen.rows_formatted(0, cols.get()).collect()
        } else {
            screen
                .rows(0, cols.get())
                .map(|row| row.trim_end().to_owned())
                .collect()
        };
        debug_assert_eq!(rows_text.len(), usize::from(rows.get()));
        Rendered {
            rows: rows_text,
            cursor: screen.cursor_position(),
            cursor_visible: !screen.hide_cursor(),
            alternate_screen: screen.alternate_screen(),
        }
    }
}

/// Up to `lines` rows of history that scrolled off the top of a `cols`×`rows` terminal while
/// `raw` (a session's retained output) was shown on it, formatted with their attributes and
/// each ended by `\r\n`. Computed on demand from the raw ring, so sessions pay nothing for it.
pub fn history(raw: &[u8], cols: u16, rows: u16, lines: usize) -> Vec<u8> {
    if lines == 0 {
        return Vec::new();
    }
    let mut parser = vt100::Parser::new(nonzero(rows), nonzero(cols), lines);
    parser.process(raw);
    let screen = parser.screen_mut();
    // Scrolling the view back by n shows the oldest n history rows at the top.
    screen.set_scrollback(usize::MAX);
    let available = screen.scrollback();
    let mut out = String::from("\x1b[0m");
    let mut emitted = 0;
    // Walk the history a screenful at a time, oldest first.
    let mut back = available;
    while back > 0 {
        screen.set_scrollback(back);
        let take = back.min(usize::from(rows));
        for row in screen.rows_formatted(0, cols).take(take) {
            out.push_str(&row);
            out.push_str("\x1b[0m\r\n");
            emitted += 1;
        }
        back -= take;
    }
    debug_assert!(emitted <= lines);
    out.into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redraw_reproduces_text_and_cursor_in_a_fresh_model() {
        let mut screen = Screen::new(20, 5);
        screen.feed(b"hello\r\n\x1b[31mred\x1b[0m world\x1b[2;3H");
        let mut copy = Screen::new(20, 5);
        copy.feed(&screen.redraw());
        assert_eq!(copy.render(true), screen.render(true));
        assert_eq!(screen.render(false).rows[0], "hello");
        assert_eq!(screen.render(false).cursor, (1, 2));
    }

    #[test]
    fn redraw_enters_the_alternate_screen_when_the_program_did() {
        let mut screen = Screen::new(10, 3);
        screen.feed(b"\x1b[?1049h\x1b[Hfull");
        let redraw = String::from_utf8(screen.redraw()).unwrap();
        assert!(redraw.starts_with(ENTER_ALTERNATE_SCREEN), "{redraw:?}");
        assert!(screen.render(false).alternate_screen);
    }

    #[test]
    fn history_returns_the_rows_that_scrolled_off_oldest_first() {
        let raw: Vec<u8> = (0..10)
            .flat_map(|i| format!("line{i}\r\n").into_bytes())
            .collect();
        let text = String::from_utf8(history(&raw, 20, 3, 100)).unwrap();
        let plain: Vec<&str> = text
            .split("\r\n")
            .map(|l| l.trim_start_matches("\x1b[0m").trim_end_matches("\x1b[0m"))
            .filter(|l| !l.is_empty())
            .map(str::trim_end)
            .collect();
        // 10 lines plus the cursor's empty line on a 3-row screen: 8 scrolled off.
        assert_eq!(
            plain,
            (0..8).map(|i| format!("line{i}")).collect::<Vec<_>>()
        );
    }

    #[test]
    fn history_is_capped_at_the_lines_asked_for() {
        let raw: Vec<u8> = (0..50)
            .flat_map(|i| format!("l{i}\r\n").into_bytes())
            .collect();
        let text = String::from_utf8(history(&raw, 10, 2, 5)).unwrap();
        assert_eq!(text.matches("\r\n").count(), 5);
        assert!(text.contains("l48") || text.contains("l47"), "{text:?}");
    }
}
