//! Cursor motion: relative and absolute moves, clamped to the screen (and to the scroll
//! region where xterm clamps), and tab stops. A move cancels a pending wrap.

use crate::terminal::Terminal;

impl Terminal {
    // ---- cursor motion ----

    /// Cancels a pending wrap, leaving the cursor on the last column (where xterm keeps it
    /// while the wrap is pending); returns the column.
    pub(crate) fn clamp_x(&mut self) -> usize {
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

    /// CUB, BS. From a pending wrap they count from the last column, where xterm's cursor
    /// is (tmux counts from one past it).
    pub(crate) fn cursor_back(&mut self, n: usize) {
        let x = self.clamp_x();
        self.cursor.x = x.saturating_sub(n);
    }

    /// CHA, HPA: to column `x` of this row.
    pub(crate) fn set_column(&mut self, x: usize) {
        self.cursor.x = x.min(self.cols - 1);
    }

    /// VPA: to row `y` (of the region, in origin mode), same column.
    pub(crate) fn set_row(&mut self, y: usize) {
        self.clamp_x();
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
}
