//! The terminal's state (both screens, cursor, modes, margins, tab stops, title) and the
//! operations control functions perform on it. Coordinates are zero-based here.

use unicode_width::UnicodeWidthChar;

use crate::charset::{Charset, Charsets};
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
    /// DECSC slots: `[main, alternate]`; `None` until something is saved (DECRC then
    /// homes the cursor with default attributes, but 1049's restore does nothing, as tmux).
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
    fn line(&mut self, y: usize) -> &mut Line {
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

    // ---- printing ----

    /// Prints a run of printable ASCII (0x20-0x7E): whole row segments at a time.
    #[inline]
    pub(crate) fn print_ascii(&mut self, run: &[u8]) {
        let Some(&last) = run.last() else { return };
        let packed = match self.cursor.packed {
            Some(p) if self.cursor.charsets.active() == Charset::Ascii && !self.modes.insert => p,
            _ => {
                run.iter().for_each(|&b| self.print(char::from(b)));
                return;
            }
        };
        let cols = self.cols;
        let mut run = run;
        while !run.is_empty() {
            if self.cursor.x >= cols {
                self.wrap();
            }
            let x = self.cursor.x;
            let avail = cols - x;
            let y = self.cursor.y;
            if !self.modes.autowrap && run.len() > avail {
                // Without autowrap each character past the margin overwrites the last column.
                self.line(y).write_ascii(x, &run[..avail - 1], packed, cols);
                self.line(y).write_ascii(cols - 1, &[last], packed, cols);
                self.cursor.x = cols - 1;
                break;
            }
            let n = avail.min(run.len());
            self.line(y).write_ascii(x, &run[..n], packed, cols);
            self.cursor.x = x + n;
            if self.cursor.x == cols && !self.modes.autowrap {
                self.cursor.x = cols - 1;
            }
            run = &run[n..];
        }
        self.last_char = Some(char::from(last));
    }

    /// The pending wrap happens: to the start of the next line (or, without autowrap, the
    /// cursor just stays on the last column).
    fn wrap(&mut self) {
        if self.modes.autowrap {
            self.cursor.x = 0;
            self.index();
        } else {
            self.cursor.x = self.cols - 1;
        }
    }

    /// Prints one character (any width), through the active charset.
    pub(crate) fn print(&mut self, ch: char) {
        let ch = if (' '..='~').contains(&ch) {
            self.cursor.charsets.active().map(ch as u8)
        } else {
            ch
        };
        let Some(width) = ch.width() else { return };
        let cols = self.cols;
        if width == 0 {
            // A combining mark joins the character before the cursor.
            if self.cursor.x > 0 {
                let (x, y) = (self.cursor.x - 1, self.cursor.y);
                self.line(y).add_combining(x, ch, cols);
            }
            self.last_char = None;
            return;
        }
        let width = width.min(2);
        if width > cols {
            return;
        }
        if self.cursor.x + width > cols {
            if !self.modes.autowrap && width == 2 {
                // tmux drops a wide character that cannot fit without autowrap.
                return;
            }
            self.wrap();
        }
        let (x, y) = (self.cursor.x, self.cursor.y);
        let pen = self.cursor.pen;
        if self.modes.insert {
            self.line(y).insert(x, width, &Style::default(), cols);
        }
        self.line(y).write_char(x, ch, width as u8, &pen, cols);
        self.cursor.x = x + width;
        if self.cursor.x == cols && !self.modes.autowrap {
            self.cursor.x = cols - 1;
        }
        self.last_char = Some(ch);
    }

    /// REP: the last printed character `n` more times (bounded by a screenful).
    pub(crate) fn repeat(&mut self, n: usize) {
        if let Some(ch) = self.last_char {
            for _ in 0..n.min(self.cols * self.rows) {
                self.print(ch);
            }
        }
    }

    // ---- C0 controls ----

    pub(crate) fn execute(&mut self, byte: u8) {
        match byte {
            0x08 => self.cursor.x = self.cursor.x.saturating_sub(1),
            0x09 => self.tab_forward(1),
            0x0a..=0x0c => self.index(),
            0x0d => self.cursor.x = 0,
            0x0e => self.cursor.charsets.shifted = true,
            0x0f => self.cursor.charsets.shifted = false,
            _ => return,
        }
        self.last_char = None;
    }

    // ---- vertical motion and scrolling ----

    /// LF, IND: down one row, scrolling the region at its bottom margin.
    pub(crate) fn index(&mut self) {
        if self.cursor.y == self.bottom {
            self.scroll_up(self.top, self.bottom, 1, true);
        } else if self.cursor.y + 1 < self.rows {
            self.cursor.y += 1;
        }
    }

    /// RI: up one row, scrolling the region down at its top margin.
    pub(crate) fn reverse_index(&mut self) {
        if self.cursor.y == self.top {
            self.scroll_down(self.top, self.bottom, 1);
        } else if self.cursor.y > 0 {
            self.cursor.y -= 1;
        }
    }

    /// Moves rows `top..=bottom` up by `n`; the rows that leave the top of the main screen
    /// go to the history when `to_history` (LF, SU) and the region starts at the top row.
    pub(crate) fn scroll_up(&mut self, top: usize, bottom: usize, n: usize, to_history: bool) {
        let n = n.min(bottom + 1 - top);
        let erase = self.cursor.pen.erase();
        let cols = self.cols;
        let keep = to_history && top == 0 && self.alt.is_none() && self.history.limit > 0;
        let full = top == 0 && bottom + 1 == self.rows;
        let grid = match &mut self.alt {
            Some(alt) => alt,
            None => &mut self.main,
        };
        for _ in 0..n {
            let mut line = if top == 0 {
                grid.lines.pop_front()
            } else {
                grid.lines.remove(top)
            }
            .unwrap_or_default();
            if keep {
                line.shrink();
                line = self.history.push(line).unwrap_or_default();
            }
            // Recycled, the line keeps its allocation for the rows about to be written.
            line.recycle();
            if erase != Style::default() {
                line.erase(0, cols, &erase, cols);
            }
            if full {
                grid.lines.push_back(line);
            } else {
                grid.lines.insert(bottom, line);
            }
        }
    }

    /// Moves rows `top..=bottom` down by `n`, blank rows entering at the top.
    pub(crate) fn scroll_down(&mut self, top: usize, bottom: usize, n: usize) {
        let n = n.min(bottom + 1 - top);
        let erase = self.cursor.pen.erase();
        let cols = self.cols;
        let grid = match &mut self.alt {
            Some(alt) => alt,
            None => &mut self.main,
        };
        for _ in 0..n {
            let mut line = grid.lines.remove(bottom).unwrap_or_default();
            line.recycle();
            if erase != Style::default() {
                line.erase(0, cols, &erase, cols);
            }
            grid.lines.insert(top, line);
        }
    }

    // ---- cursor motion ----

    fn clamp_x(&mut self) -> usize {
        self.cursor.x = self.cursor.x.min(self.cols - 1);
        self.cursor.x
    }

    pub(crate) fn cursor_up(&mut self, n: usize) {
        self.clamp_x();
        let stop = if self.cursor.y >= self.top {
            self.top
        } else {
            0
        };
        self.cursor.y = self.cursor.y.saturating_sub(n).max(stop);
    }

    pub(crate) fn cursor_down(&mut self, n: usize) {
        self.clamp_x();
        let stop = if self.cursor.y <= self.bottom {
            self.bottom
        } else {
            self.rows - 1
        };
        self.cursor.y = self.cursor.y.saturating_add(n).min(stop);
    }

    pub(crate) fn cursor_forward(&mut self, n: usize) {
        let x = self.clamp_x();
        self.cursor.x = x.saturating_add(n).min(self.cols - 1);
    }

    /// CUB. From a pending wrap it counts from one past the last column, as BS does (tmux).
    pub(crate) fn cursor_back(&mut self, n: usize) {
        self.cursor.x = self.cursor.x.saturating_sub(n);
    }

    /// CHA, HPA: to column `x` of this row.
    pub(crate) fn set_column(&mut self, x: usize) {
        self.cursor.x = x.min(self.cols - 1);
    }

    /// VPA: to row `y` (of the region, in origin mode), same column.
    pub(crate) fn set_row(&mut self, y: usize) {
        self.cursor.y = if self.modes.origin {
            (self.top + y).min(self.bottom)
        } else {
            y.min(self.rows - 1)
        };
    }

    /// CUP, HVP.
    pub(crate) fn goto(&mut self, y: usize, x: usize) {
        self.set_row(y);
        self.set_column(x);
    }

    /// HT/CHT.
    pub(crate) fn tab_forward(&mut self, n: usize) {
        for _ in 0..n.min(self.cols) {
            if self.cursor.x + 1 >= self.cols {
                break;
            }
            self.cursor.x = self.tabs.next(self.cursor.x, self.cols);
        }
    }

    /// CBT.
    pub(crate) fn tab_back(&mut self, n: usize) {
        self.clamp_x();
        for _ in 0..n.min(self.cols) {
            self.cursor.x = self.tabs.prev(self.cursor.x);
        }
    }

    // ---- erasing and editing ----

    /// ED: 0 below, 1 above, 2 all, 3 the history.
    pub(crate) fn erase_display(&mut self, mode: usize) {
        let erase = self.cursor.pen.erase();
        let (cols, x, y) = (self.cols, self.cursor.x, self.cursor.y);
        match mode {
            0 => {
                self.line(y).erase(x, cols, &erase, cols);
                for row in y + 1..self.rows {
                    self.line(row).erase(0, cols, &erase, cols);
                }
            }
            1 => {
                for row in 0..y {
                    self.line(row).erase(0, cols, &erase, cols);
                }
                self.line(y).erase(0, x.min(cols - 1) + 1, &erase, cols);
            }
            2 => {
                for row in 0..self.rows {
                    self.line(row).erase(0, cols, &erase, cols);
                }
            }
            3 => self.history.lines.clear(),
            _ => {}
        }
    }

    /// EL: 0 right, 1 left, 2 all.
    pub(crate) fn erase_line(&mut self, mode: usize) {
        let erase = self.cursor.pen.erase();
        let (cols, x, y) = (self.cols, self.cursor.x, self.cursor.y);
        match mode {
            0 => self.line(y).erase(x, cols, &erase, cols),
            1 => self.line(y).erase(0, x.min(cols - 1) + 1, &erase, cols),
            2 => self.line(y).erase(0, cols, &erase, cols),
            _ => {}
        }
    }

    /// ECH.
    pub(crate) fn erase_chars(&mut self, n: usize) {
        let erase = self.cursor.pen.erase();
        let (cols, x, y) = (self.cols, self.cursor.x, self.cursor.y);
        self.line(y).erase(x, x.saturating_add(n), &erase, cols);
    }

    /// ICH.
    pub(crate) fn insert_chars(&mut self, n: usize) {
        let erase = self.cursor.pen.erase();
        let (cols, x, y) = (self.cols, self.cursor.x, self.cursor.y);
        if x < cols {
            self.line(y).insert(x, n, &erase, cols);
        }
    }

    /// DCH.
    pub(crate) fn delete_chars(&mut self, n: usize) {
        let erase = self.cursor.pen.erase();
        let (cols, x, y) = (self.cols, self.cursor.x, self.cursor.y);
        if x < cols {
            self.line(y).delete(x, n, &erase, cols);
        }
    }

    /// IL: only inside the scroll region.
    pub(crate) fn insert_lines(&mut self, n: usize) {
        let y = self.cursor.y;
        if (self.top..=self.bottom).contains(&y) {
            self.scroll_down(y, self.bottom, n);
        }
    }

    /// DL: only inside the scroll region; deleted rows never go to the history.
    pub(crate) fn delete_lines(&mut self, n: usize) {
        let y = self.cursor.y;
        if (self.top..=self.bottom).contains(&y) {
            self.scroll_up(y, self.bottom, n, false);
        }
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
            // tmux does not keep a pending wrap across DECSC/DECRC (xterm's docs are silent).
            x: self.cursor.x.min(self.cols - 1),
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

    /// 47, 1047, 1049: a fresh, blank alternate screen (already in it: nothing happens).
    pub(crate) fn enter_alternate(&mut self, save_cursor: bool) {
        if self.alt.is_some() {
            return;
        }
        if save_cursor {
            self.save_cursor();
        }
        self.alt = Some(Grid::new(self.rows));
    }

    /// Back to the main screen; the alternate one is freed. 1049 restores the cursor even
    /// outside the alternate screen ("as in DECRC", ctlseqs), if anything was saved.
    pub(crate) fn leave_alternate(&mut self, restore_cursor: bool) {
        if self.alt.take().is_some() {
            // The alternate screen's DECSC slot goes with it.
            self.saved[1] = None;
        } else {
            // tmux drops a pending wrap here even when nothing else happens.
            self.cursor.x = self.cursor.x.min(self.cols - 1);
        }
        if restore_cursor && self.saved[0].is_some() {
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
