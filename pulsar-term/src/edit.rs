//! Printing and editing: characters into cells (the ASCII fast path included), C0 controls,
//! index and scrolling, erases, insertions and deletions, as xterm performs them.

use unicode_width::UnicodeWidthChar;

use crate::charset::Charset;
use crate::style::Style;
use crate::terminal::Terminal;

impl Terminal {
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
            0x08 => self.cursor_back(1),
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

    /// LF, IND: down one row, scrolling the region at its bottom margin. Like every
    /// vertical move it cancels a pending wrap (xterm's CursorDown; tmux keeps it).
    pub(crate) fn index(&mut self) {
        self.clamp_x();
        if self.cursor.y == self.bottom {
            self.scroll_up(self.top, self.bottom, 1, true);
        } else if self.cursor.y + 1 < self.rows {
            self.cursor.y += 1;
        }
    }

    /// RI: up one row, scrolling the region down at its top margin (cancels a pending wrap).
    pub(crate) fn reverse_index(&mut self) {
        self.clamp_x();
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

    // ---- erasing and editing ----
    //
    // At a pending wrap these act on the last column, where xterm's cursor is, and cancel
    // the pending wrap (xterm's ClearRight, InsertChar, DeleteChar all ResetWrap; tmux
    // leaves the last column alone and keeps the wrap pending).

    /// ED: 0 below, 1 above, 2 all, 3 the history.
    pub(crate) fn erase_display(&mut self, mode: usize) {
        let erase = self.cursor.pen.erase();
        let (cols, x, y) = (self.cols, self.clamp_x(), self.cursor.y);
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
                self.line(y).erase(0, x + 1, &erase, cols);
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
        let (cols, x, y) = (self.cols, self.clamp_x(), self.cursor.y);
        match mode {
            0 => self.line(y).erase(x, cols, &erase, cols),
            1 => self.line(y).erase(0, x + 1, &erase, cols),
            2 => self.line(y).erase(0, cols, &erase, cols),
            _ => {}
        }
    }

    /// ECH.
    pub(crate) fn erase_chars(&mut self, n: usize) {
        let erase = self.cursor.pen.erase();
        let (cols, x, y) = (self.cols, self.clamp_x(), self.cursor.y);
        self.line(y).erase(x, x.saturating_add(n), &erase, cols);
    }

    /// ICH.
    pub(crate) fn insert_chars(&mut self, n: usize) {
        let erase = self.cursor.pen.erase();
        let (cols, x, y) = (self.cols, self.clamp_x(), self.cursor.y);
        self.line(y).insert(x, n, &erase, cols);
    }

    /// DCH.
    pub(crate) fn delete_chars(&mut self, n: usize) {
        let erase = self.cursor.pen.erase();
        let (cols, x, y) = (self.cols, self.clamp_x(), self.cursor.y);
        self.line(y).delete(x, n, &erase, cols);
    }

    /// IL: only inside the scroll region.
    pub(crate) fn insert_lines(&mut self, n: usize) {
        self.clamp_x();
        let y = self.cursor.y;
        if (self.top..=self.bottom).contains(&y) {
            self.scroll_down(y, self.bottom, n);
        }
    }

    /// DL: only inside the scroll region; deleted rows never go to the history.
    pub(crate) fn delete_lines(&mut self, n: usize) {
        self.clamp_x();
        let y = self.cursor.y;
        if (self.top..=self.bottom).contains(&y) {
            self.scroll_up(y, self.bottom, n, false);
        }
    }
}
