//! Bytes that rebuild a screen: `serialize` (exact, for a fresh `Screen` of the same size and
//! scrollback) and `redraw` (the visible state, for a real client terminal).
//!
//! Both draw the main screen (history first, scrolled into place), then switch to the
//! alternate screen with `CSI ?1049h` and draw it when a program uses it: the DECSC that
//! 1049 implies saves the main screen's cursor, so a client whose program later exits sees
//! the main screen again, exactly as it would have. Then margins, tab stops, origin mode, the
//! cursor (a pending wrap is recreated by rewriting the cell under it), pen, charsets, modes
//! and title.

use crate::charset::Charsets;
use crate::grid::{Grid, Line};
use crate::screen::Screen;
use crate::style::{Style, push_num};
use crate::terminal::{SavedCursor, Terminal};

/// The private OSC that sets the character REP repeats: no standard sequence can.
pub(crate) const OSC_LAST_CHAR: &[u8] = b"\x1b]7717;";

/// Client terminal state reset before a redraw: pen, margins, origin and wrap modes,
/// insert mode, charsets; then home and clear (the scrollback is left alone).
const CLIENT_PREAMBLE: &[u8] = b"\x1b[0m\x1b[r\x1b[?6l\x1b[?7h\x1b[4l\x1b(B\x1b)B\x0f\x1b[H\x1b[2J";

/// Synchronized output (DEC mode 2026): terminals that know it paint the redraw at once,
/// the others ignore it.
const SYNC_BEGIN: &[u8] = b"\x1b[?2026h";
const SYNC_END: &[u8] = b"\x1b[?2026l";

/// An output stream that knows the pen it has left the target terminal with.
struct Writer<'a> {
    out: &'a mut Vec<u8>,
    pen: Style,
}

impl Writer<'_> {
    fn pen(&mut self, style: Style) {
        if self.pen != style {
            style.write_sgr_from(&self.pen, self.out);
            self.pen = style;
        }
    }

    fn csi(&mut self, a: usize, b: Option<usize>, fin: u8) {
        self.out.extend_from_slice(b"\x1b[");
        push_num(self.out, a as u16);
        if let Some(b) = b {
            self.out.push(b';');
            push_num(self.out, b as u16);
        }
        self.out.push(fin);
    }

    fn goto(&mut self, y: usize, x: usize) {
        self.csi(y + 1, Some(x + 1), b'H');
    }

    /// The cell `x` of `line` as text (with its style), returning its width.
    fn cell(&mut self, line: &Line, x: usize) -> usize {
        let c = line.cell(x);
        self.pen(c.style);
        let mut buf = [0u8; 4];
        self.out
            .extend_from_slice(c.ch.encode_utf8(&mut buf).as_bytes());
        for m in c.combining {
            self.out
                .extend_from_slice(m.encode_utf8(&mut buf).as_bytes());
        }
        usize::from(c.width.max(1))
    }

    /// Draws `line` from the cursor at its column 0; blank runs are skipped with CUF.
    fn line(&mut self, line: &Line) {
        let Some(end) = (0..line.len()).rev().find(|&x| !line.cell(x).is_blank()) else {
            return;
        };
        let mut x = 0;
        while x <= end {
            let c = line.cell(x);
            if c.width == 0 {
                x += 1;
            } else if c.is_blank() {
                let run = (x..=end).take_while(|&i| line.cell(i).is_blank()).count();
                self.csi(run, None, b'C');
                x += run;
            } else {
                x += self.cell(line, x);
            }
        }
    }

    /// Rewrites the cell a pending wrap sits after (cursor on row `y`, past the last
    /// column), which recreates the pending wrap without changing what is shown.
    fn pending_wrap(&mut self, grid: &Grid, y: usize, row: usize, cols: usize) {
        let line = &grid.lines[y];
        let x = if line.cell(cols - 1).width == 0 && cols >= 2 {
            cols - 2
        } else {
            cols - 1
        };
        self.goto(row, x);
        self.cell(line, x);
    }

    /// Puts the cursor, pen, charsets and origin mode where `saved` says, ready for a DECSC.
    /// Cursor-moving parts come first: setting origin mode homes the cursor.
    fn saved_state(&mut self, t: &Terminal, grid: &Grid, saved: &SavedCursor) {
        if saved.origin {
            self.out.extend_from_slice(b"\x1b[?6h");
        }
        if saved.x >= t.cols {
            self.pending_wrap(grid, saved.y, saved.y, t.cols);
        } else {
            self.goto(saved.y, saved.x);
        }
        self.pen(saved.pen);
        saved.charsets.write(self.out);
    }

    /// Undoes `saved_state`'s charsets, origin mode and pen, for the drawing that follows.
    fn unsaved_state(&mut self, saved: &SavedCursor) {
        if saved.charsets != Charsets::default() {
            self.out.extend_from_slice(b"\x1b(B\x1b)B\x0f");
        }
        if saved.origin {
            self.out.extend_from_slice(b"\x1b[?6l");
        }
        self.pen(Style::default());
    }

    /// A grid's rows, each positioned absolutely.
    fn rows(&mut self, grid: &Grid) {
        for (y, line) in grid.lines.iter().enumerate() {
            if line.len() > 0 {
                self.goto(y, 0);
                self.line(line);
            }
        }
    }

    /// The history then the main screen, written top to bottom so that each history row
    /// scrolls off the top into the target's scrollback, in order.
    fn history_and_rows(&mut self, t: &Terminal) {
        self.out.extend_from_slice(b"\x1b[H");
        for (i, line) in t
            .history
            .lines
            .iter()
            .chain(t.main.lines.iter())
            .enumerate()
        {
            if i > 0 {
                // New rows are erased in the pen's background: scroll with the default pen.
                self.pen(Style::default());
                self.out.extend_from_slice(b"\r\n");
            }
            self.line(line);
        }
    }
}

impl Screen {
    /// Bytes that rebuild this whole state on a fresh `Screen` of the same size and
    /// scrollback limit: both screens, history, margins, saved cursors, charsets, tab stops,
    /// modes, pen, pending wrap, title, and the unfinished sequence being parsed (as its raw
    /// bytes, at the end). Fed to a terminal it draws the screen too, but prefer `redraw`.
    pub fn serialize(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(256);
        self.write_state(&mut out, false);
        match self.term.last_char {
            Some(c) => {
                out.extend_from_slice(OSC_LAST_CHAR);
                let mut buf = [0u8; 4];
                out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                out.push(0x07);
            }
            // The drawing printed characters: an ST (a no-op) makes REP forget them.
            None => out.extend_from_slice(b"\x1b\\"),
        }
        out.extend_from_slice(self.parser.pending());
        out
    }

    /// Bytes that draw the current state on a client terminal in any prior state: reset,
    /// main screen, then (if a program uses it) `CSI ?1049h` and the alternate screen, then
    /// cursor, modes and title; painted at once where the terminal supports synchronized
    /// output. The client's scrollback is left alone.
    pub fn redraw(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(256);
        out.extend_from_slice(SYNC_BEGIN);
        out.extend_from_slice(CLIENT_PREAMBLE);
        self.write_state(&mut out, true);
        out.extend_from_slice(SYNC_END);
        out
    }

    fn write_state(&self, out: &mut Vec<u8>, for_client: bool) {
        let t = &self.term;
        let mut w = Writer {
            out,
            pen: Style::default(),
        };
        if t.history.lines.is_empty() {
            w.rows(&t.main);
        } else {
            w.history_and_rows(t);
        }
        if let Some(alt) = &t.alt {
            // For a client, 1049 (whose DECSC saves the main screen's cursor, so that it comes
            // back when the program exits); for an exact rebuild, an explicit DECSC (only if
            // one was saved) and 1047.
            let main_saved = t.saved[0].unwrap_or_default();
            if for_client || t.saved[0].is_some() {
                w.saved_state(t, &t.main, &main_saved);
            }
            if for_client {
                w.out.extend_from_slice(b"\x1b[?1049h");
            } else {
                if t.saved[0].is_some() {
                    w.out.extend_from_slice(b"\x1b7");
                }
                w.out.extend_from_slice(b"\x1b[?1047h");
            }
            if for_client || t.saved[0].is_some() {
                w.unsaved_state(&main_saved);
            }
            if for_client {
                // 1049 has cleared the alternate screen; a client without one (a log
                // viewer, pyte) would otherwise show the main screen through the gaps.
                w.out.extend_from_slice(b"\x1b[H\x1b[2J");
            }
            w.rows(alt);
            if let Some(saved) = &t.saved[1] {
                w.saved_state(t, alt, saved);
                w.out.extend_from_slice(b"\x1b7");
                w.unsaved_state(saved);
            }
        } else if let Some(saved) = &t.saved[0] {
            w.saved_state(t, &t.main, saved);
            w.out.extend_from_slice(b"\x1b7");
            w.unsaved_state(saved);
        }
        if let Some(stops) = t.tabs.custom_stops(t.cols) {
            w.out.extend_from_slice(b"\x1b[3g");
            for x in stops {
                w.goto(0, x);
                w.out.extend_from_slice(b"\x1bH");
            }
        }
        if t.top != 0 || t.bottom + 1 != t.rows {
            w.csi(t.top + 1, Some(t.bottom + 1), b'r');
        }
        if t.modes.origin {
            w.out.extend_from_slice(b"\x1b[?6h");
        }
        let row = t.cursor.y - if t.modes.origin { t.top } else { 0 };
        if t.cursor.x >= t.cols {
            w.pending_wrap(t.grid(), t.cursor.y, row, t.cols);
        } else {
            w.goto(row, t.cursor.x);
        }
        w.pen(t.cursor.pen);
        t.cursor.charsets.write(w.out);
        t.modes.write(w.out);
        if !t.title.is_empty() {
            w.out.extend_from_slice(b"\x1b]2;");
            w.out.extend_from_slice(t.title.as_bytes());
            w.out.push(0x07);
        }
    }
}
