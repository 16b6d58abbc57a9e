//! The terminal's state (both screens, cursor, modes, margins, tab stops, title), and what
//! changes it whole: screens, saved cursors, resets, resize. Coordinates are zero-based.

use crate::charset::Charsets;
use crate::grid::{Grid, History, Line, Packed};
use crate::modes::Modes;
use crate::style::Style;
use crate::tabs::TabStops;

/// Where the next character goes and how it looks.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) struct Cursor {
    /// Column, `0..=cols`: `cols` is xterm's pending wrap (the last column was just written
    /// with autowrap on; the next printable character wraps first). Kept as a position, as
    /// tmux does, so erases and moves treat it the way tmux does.
    pub(crate) x: usize,
    /// Row, `0..rows`.
    pub(crate) y: usize,
    /// The SGR state new characters get.
    pub(crate) pen: Style,
    /// `pen` packed for plain cells, or `None` for truecolor (cached: the fast path needs it
    /// for every run).
    pub(crate) packed: Option<Packed>,
    /// G0/G1 and the shift.
    pub(crate) charsets: Charsets,
}

impl Default for Cursor {
    fn default() -> Cursor {
        Cursor {
            x: 0,
            y: 0,
            pen: Style::default(),
            packed: Packed::new(&Style::default()),
            charsets: Charsets::default(),
        }
    }
}

/// What DECSC saves (xterm keeps one per screen; 1049 uses the main screen's).
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default, Hash)]
pub(crate) struct SavedCursor {
    pub(crate) x: usize,
    pub(crate) y: usize,
    pub(crate) pen: Style,
    pub(crate) charsets: Charsets,
    pub(crate) origin: bool,
}

/// The whole emulated terminal except the parser.
#[derive(Clone, Debug)]
pub(crate) struct Terminal {
    pub(crate) cols: usize,
    pub(crate) rows: usize,
    pub(crate) main: Grid,
    /// The alternate screen, allocated only while a full-screen program uses it.
    pub(crate) alt: Option<Grid>,
    /// Rows scrolled off the main screen (off unless a limit is set).
    pub(crate) history: History,
    pub(crate) cursor: Cursor,
    /// DECSC slots: `[main, alternate]`; `None` until something is saved (DECRC then homes
    /// the cursor with default attributes and charsets, as xterm).
    pub(crate) saved: [Option<SavedCursor>; 2],
    /// Scroll region, inclusive rows.
    pub(crate) top: usize,
    pub(crate) bottom: usize,
    pub(crate) modes: Modes,
    pub(crate) tabs: TabStops,
    /// The last title set by OSC 0 or 2.
    pub(crate) title: String,
    /// The character REP repeats: the last one printed, if nothing but printing came since
    /// (tmux forgets it on any control, as ECMA-48's "preceding character" suggests).
    pub(crate) last_char: Option<char>,
}

/// The longest title kept; the rest of an OSC is dropped, so memory stays bounded.
pub(crate) const MAX_TITLE: usize = 1024;

impl Terminal {
    pub(crate) fn new(cols: usize, rows: usize) -> Terminal {
        let (cols, rows) = (cols.max(1), rows.max(1));
        Terminal {
            cols,
            rows,
            main: Grid::new(rows),
            alt: None,
            history: History::default(),
            cursor: Cursor::default(),
            saved: [None; 2],
            top: 0,
            bottom: rows - 1,
            modes: Modes::default(),
            tabs: TabStops::default(),
            title: String::new(),
            last_char: None,
        }
    }

    #[inline]
    pub(crate) fn grid(&self) -> &Grid {
        self.alt.as_ref().unwrap_or(&self.main)
    }

    #[inline]
    pub(crate) fn line(&mut self, y: usize) -> &mut Line {
        let grid = match &mut self.alt {
            Some(alt) => alt,
            None => &mut self.main,
        };
        &mut grid.lines[y]
    }

    fn slot(&self) -> usize {
        usize::from(self.alt.is_some())
    }

    pub(crate) fn set_pen(&mut self, pen: Style) {
        self.cursor.pen = pen;
        self.cursor.packed = Packed::new(&pen);
    }

    // ---- margins, saved cursor, screens ----

    /// DECSTBM (1-based, 0 for the default); an empty region is ignored. Homes the cursor.
    pub(crate) fn set_scroll_region(&mut self, top: usize, bottom: usize) {
        let top = top.max(1) - 1;
        let bottom = if bottom == 0 {
            self.rows
        } else {
            bottom.min(self.rows)
        } - 1;
        if top >= bottom {
            return;
        }
        self.top = top;
        self.bottom = bottom;
        self.goto(0, 0);
    }

    pub(crate) fn save_cursor(&mut self) {
        let slot = self.slot();
        self.saved[slot] = Some(SavedCursor {
            // A pending wrap is saved and restored too (xterm's wrap_flag; tmux drops it).
            x: self.cursor.x,
            y: self.cursor.y,
            pen: self.cursor.pen,
            charsets: self.cursor.charsets,
            origin: self.modes.origin,
        });
    }

    pub(crate) fn restore_cursor(&mut self) {
        let saved = self.saved[self.slot()].unwrap_or_default();
        self.cursor.x = saved.x.min(self.cols);
        self.cursor.y = saved.y.min(self.rows - 1);
        self.set_pen(saved.pen);
        self.cursor.charsets = saved.charsets;
        self.modes.origin = saved.origin;
        if saved.origin {
            // In origin mode the cursor never leaves the scroll region (xterm clamps too).
            self.cursor.y = self.cursor.y.clamp(self.top, self.bottom);
        }
    }

    /// 47, 1047, 1049: a fresh, blank alternate screen. 1049 saves the cursor first, as
    /// DECSC does (into the main screen's slot, or the alternate's if already there), and
    /// always clears (xterm: CursorSave, ToAlternate, ClearScreen; tmux ignores a second
    /// 1049h). 47 and 1047 inside the alternate screen change nothing.
    pub(crate) fn enter_alternate(&mut self, save_cursor: bool) {
        if save_cursor {
            self.save_cursor();
        }
        if save_cursor || self.alt.is_none() {
            self.alt = Some(Grid::new(self.rows));
        }
    }

    /// Back to the main screen; the alternate one is freed (xterm keeps its content for a
    /// later 47h, tmux does not). 1049 then restores the cursor as DECRC does, even from the
    /// main screen (xterm; home if nothing was saved).
    pub(crate) fn leave_alternate(&mut self, restore_cursor: bool) {
        if self.alt.take().is_some() {
            // The alternate screen's DECSC slot goes with it.
            self.saved[1] = None;
        }
        if restore_cursor {
            self.restore_cursor();
        }
    }

    /// DECSTR: modes, margins, pen, charsets and saved cursor back to defaults; the screen
    /// and the cursor position stay.
    pub(crate) fn soft_reset(&mut self) {
        let keep = self.modes;
        self.modes = Modes {
            mouse: keep.mouse,
            mouse_encoding: keep.mouse_encoding,
            bracketed_paste: keep.bracketed_paste,
            focus_reporting: keep.focus_reporting,
            cursor_style: keep.cursor_style,
            ..Modes::default()
        };
        self.top = 0;
        self.bottom = self.rows - 1;
        self.set_pen(Style::default());
        self.cursor.charsets = Charsets::default();
        self.saved[self.slot()] = None;
    }

    /// RIS: everything as new, except the title and the history.
    pub(crate) fn reset(&mut self) {
        let history = std::mem::take(&mut self.history);
        let title = std::mem::take(&mut self.title);
        *self = Terminal::new(self.cols, self.rows);
        self.history = history;
        self.title = title;
    }

    /// DECALN: the screen filled with `E`, margins reset, cursor home.
    pub(crate) fn alignment_test(&mut self) {
        self.top = 0;
        self.bottom = self.rows - 1;
        self.modes.origin = false;
        self.cursor.x = 0;
        self.cursor.y = 0;
        let cols = self.cols;
        let row = vec![b'E'; cols];
        let packed = Packed::new(&Style::default()).expect("the default style packs");
        for y in 0..self.rows {
            self.line(y).recycle();
            self.line(y).write_ascii(0, &row, packed, cols);
        }
    }

    /// A new size: no reflow. Shrinking drops blank rows below the cursor first, then rows
    /// from the top (into the history); growing adds blank rows at the bottom. Lines are cut
    /// to the new width; margins reset to the whole screen; the cursor is clamped.
    pub(crate) fn resize(&mut self, cols: usize, rows: usize) {
        let (cols, rows) = (cols.max(1), rows.max(1));
        let old_cols = self.cols;
        let cursor_y = self.cursor.y;
        let alt_active = self.alt.is_some();
        let keep_history = !alt_active && self.history.limit > 0;
        let mut shift = 0;
        for (i, grid) in std::iter::once(&mut self.main)
            .chain(self.alt.as_mut())
            .enumerate()
        {
            let mut removed_top = 0;
            while grid.lines.len() > rows {
                let last = grid.lines.len() - 1;
                if last > cursor_y && grid.lines[last].len() == 0 {
                    grid.lines.pop_back();
                } else {
                    let line = grid.lines.pop_front().unwrap_or_default();
                    removed_top += 1;
                    // Only the main screen keeps history, and only when it is shown.
                    if i == 0 && keep_history {
                        self.history.push(line);
                    }
                }
            }
            grid.lines.resize_with(rows, Line::default);
            for line in &mut grid.lines {
                line.truncate(cols);
            }
            if (i == 1) == alt_active {
                shift = removed_top;
            }
        }
        for line in &mut self.history.lines {
            line.truncate(cols);
        }
        self.cols = cols;
        self.rows = rows;
        self.cursor.y = self.cursor.y.saturating_sub(shift).min(rows - 1);
        self.cursor.x = self.cursor.x.min(cols - 1);
        for saved in self.saved.iter_mut().flatten() {
            saved.x = saved.x.min(cols - 1);
            saved.y = saved.y.min(rows - 1);
        }
        self.top = 0;
        self.bottom = rows - 1;
        self.tabs.resize(old_cols, cols);
    }

    /// Heap bytes held by the state (grids, history, tab stops, title).
    pub(crate) fn heap_bytes(&self) -> usize {
        self.main.heap_bytes()
            + self.alt.as_ref().map_or(0, Grid::heap_bytes)
            + self.history.heap_bytes()
            + self.tabs.heap_bytes()
            + self.title.capacity()
    }
}
