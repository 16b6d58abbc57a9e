//! Lines and cells: a 5-byte cell for plain ASCII text, extended cells in a side table per
//! line, and lines that are allocated only when written and grow as written (tmux's idea).

use std::collections::VecDeque;

use crate::style::{Color, Style};

/// The cell's four data bytes are a little-endian index into its line's extended table.
const EXT: u8 = 1;
/// `data[2]` is a palette index; without it the foreground is the default colour.
const FG_INDEXED: u8 = 1 << 1;
/// `data[3]` is a palette index; without it the background is the default colour.
const BG_INDEXED: u8 = 1 << 2;
/// The right half of a wide character: its data is unused, the left half says it all.
const PAD: u8 = 1 << 3;

/// Combining marks kept per cell; more are dropped so that one cell cannot grow forever.
pub(crate) const MAX_COMBINING: usize = 8;

/// One column of a line in five bytes: flags, then either `[char, attrs, fg, bg]` for
/// printable ASCII in a palette style, or an index into the line's extended table.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) struct Cell {
    flags: u8,
    data: [u8; 4],
}

impl Cell {
    /// A space in the default style: what every cell past the end of a line is.
    pub(crate) const BLANK: Cell = Cell {
        flags: 0,
        data: [b' ', 0, 0, 0],
    };
    const PAD: Cell = Cell {
        flags: PAD,
        data: [0; 4],
    };

    fn is_pad(self) -> bool {
        self.flags & PAD != 0
    }

    fn ext_index(self) -> Option<usize> {
        (self.flags & EXT != 0).then(|| u32::from_le_bytes(self.data) as usize)
    }
}

/// A style squeezed into a plain cell's flags and three spare bytes, when it has no RGB.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) struct Packed {
    flags: u8,
    attrs: u8,
    fg: u8,
    bg: u8,
}

impl Packed {
    /// The packed form of `style`, or `None` if it needs an extended cell (truecolor).
    pub(crate) fn new(style: &Style) -> Option<Packed> {
        let mut flags = 0;
        let fg = match style.fg {
            Color::Default => 0,
            Color::Indexed(n) => {
                flags |= FG_INDEXED;
                n
            }
            Color::Rgb(..) => return None,
        };
        let bg = match style.bg {
            Color::Default => 0,
            Color::Indexed(n) => {
                flags |= BG_INDEXED;
                n
            }
            Color::Rgb(..) => return None,
        };
        Some(Packed {
            flags,
            attrs: style.attrs,
            fg,
            bg,
        })
    }

    #[inline]
    fn cell(self, ch: u8) -> Cell {
        Cell {
            flags: self.flags,
            data: [ch, self.attrs, self.fg, self.bg],
        }
    }
}

fn unpack(cell: Cell) -> Style {
    let color = |set: bool, n: u8| {
        if set {
            Color::Indexed(n)
        } else {
            Color::Default
        }
    };
    Style {
        attrs: cell.data[1],
        fg: color(cell.flags & FG_INDEXED != 0, cell.data[2]),
        bg: color(cell.flags & BG_INDEXED != 0, cell.data[3]),
    }
}

/// A cell that does not fit five bytes: non-ASCII, wide, combined, or truecolor.
#[derive(Clone, Debug)]
struct ExtCell {
    ch: char,
    combining: Option<Box<[char]>>,
    style: Style,
    width: u8,
}

/// What a cell shows, independent of how it is stored.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) struct CellView<'a> {
    /// The base character (a space for blanks).
    pub ch: char,
    /// Combining marks drawn on it.
    pub combining: &'a [char],
    /// Its style.
    pub style: Style,
    /// 1, 2 for the left half of a wide character, 0 for its right half.
    pub width: u8,
}

impl CellView<'_> {
    /// A space in the default style (what an unwritten cell shows).
    pub(crate) fn is_blank(&self) -> bool {
        self.ch == ' ' && self.combining.is_empty() && self.style == Style::default()
    }
}

/// The storage of a written line.
#[derive(Clone, Debug, Default)]
struct LineData {
    cells: Vec<Cell>,
    ext: Vec<ExtCell>,
}

/// One row of a screen or of the scrollback. Unwritten, it is one null pointer.
#[derive(Clone, Debug, Default)]
pub(crate) struct Line(Option<Box<LineData>>);

impl Line {
    /// Columns stored; every column past them is a default blank.
    pub(crate) fn len(&self) -> usize {
        self.0.as_ref().map_or(0, |d| d.cells.len())
    }

    /// What column `x` shows.
    pub(crate) fn cell(&self, x: usize) -> CellView<'_> {
        const BLANK: CellView<'static> = CellView {
            ch: ' ',
            combining: &[],
            style: Style {
                attrs: 0,
                fg: Color::Default,
                bg: Color::Default,
            },
            width: 1,
        };
        let Some(data) = &self.0 else { return BLANK };
        let Some(&cell) = data.cells.get(x) else {
            return BLANK;
        };
        if cell.is_pad() {
            let style = if x > 0 {
                data.view(x - 1).style
            } else {
                Style::default()
            };
            return CellView {
                ch: ' ',
                combining: &[],
                style,
                width: 0,
            };
        }
        data.view(x)
    }

    /// Forgets the content and the allocation (an erased line costs nothing).
    pub(crate) fn free(&mut self) {
        self.0 = None;
    }

    /// Forgets the content but keeps the allocation, for a line about to be rewritten.
    pub(crate) fn recycle(&mut self) {
        if let Some(d) = &mut self.0 {
            d.cells.clear();
            d.ext.clear();
        }
    }

    /// Heap bytes held by this line.
    pub(crate) fn heap_bytes(&self) -> usize {
        self.0.as_ref().map_or(0, |d| {
            std::mem::size_of::<LineData>()
                + d.cells.capacity() * std::mem::size_of::<Cell>()
                + d.ext.capacity() * std::mem::size_of::<ExtCell>()
                + d.ext
                    .iter()
                    .filter_map(|e| e.combining.as_ref())
                    .map(|c| c.len() * 4)
                    .sum::<usize>()
        })
    }

    /// Releases spare capacity (before a line is kept for long, e.g. when hibernating).
    pub(crate) fn shrink(&mut self) {
        if let Some(d) = &mut self.0 {
            if d.cells.is_empty() {
                self.0 = None;
            } else {
                d.compact_ext();
                d.cells.shrink_to_fit();
                d.ext.shrink_to_fit();
            }
        }
    }

    fn data(&mut self) -> &mut LineData {
        self.0.get_or_insert_with(Box::default)
    }

    /// Writes printable ASCII bytes at `x` (the caller has clipped them to the line).
    #[inline]
    pub(crate) fn write_ascii(&mut self, x: usize, bytes: &[u8], packed: Packed, cols: usize) {
        let d = self.data();
        let end = x + bytes.len();
        d.ensure_len(end, cols);
        d.split_wide(x, end);
        for (cell, &b) in d.cells[x..end].iter_mut().zip(bytes) {
            *cell = packed.cell(b);
        }
    }

    /// Writes one character of width 1 or 2 at `x` (a wide one needs `x + 1 < cols`).
    pub(crate) fn write_char(&mut self, x: usize, ch: char, width: u8, style: &Style, cols: usize) {
        let d = self.data();
        let end = x + usize::from(width);
        d.ensure_len(end, cols);
        d.split_wide(x, end);
        if (width == 1 && ch.is_ascii_graphic() || ch == ' ')
            && let Some(packed) = Packed::new(style)
        {
            d.cells[x] = packed.cell(ch as u8);
            return;
        }
        d.put_ext(
            x,
            ExtCell {
                ch,
                combining: None,
                style: *style,
                width,
            },
            cols,
        );
        if width == 2 {
            d.cells[x + 1] = Cell::PAD;
        }
    }

    /// Adds a combining mark to the character at `x` (or to the wide one it is half of).
    /// A blank cell takes the mark too (xterm and tmux both draw it on the space).
    pub(crate) fn add_combining(&mut self, x: usize, mark: char, cols: usize) {
        let d = self.data();
        d.ensure_len(x + 1, cols);
        let cell = d.cells[x];
        let x = if cell.is_pad() && x > 0 { x - 1 } else { x };
        let cell = d.cells[x];
        if let Some(i) = cell.ext_index() {
            let e = &mut d.ext[i];
            let mut marks: Vec<char> = e.combining.take().map(Vec::from).unwrap_or_default();
            if marks.len() < MAX_COMBINING {
                marks.push(mark);
            }
            e.combining = Some(marks.into_boxed_slice());
        } else {
            let style = unpack(cell);
            d.put_ext(
                x,
                ExtCell {
                    ch: char::from(cell.data[0]),
                    combining: Some(Box::new([mark])),
                    style,
                    width: 1,
                },
                cols,
            );
        }
    }

    /// Blanks columns `[a, b)` in `style` (an erase style: background only).
    pub(crate) fn erase(&mut self, a: usize, b: usize, style: &Style, cols: usize) {
        let b = b.min(cols);
        if a >= b {
            return;
        }
        let default = *style == Style::default();
        let Some(d) = &mut self.0 else {
            if default {
                return;
            }
            self.fill(a, b, style, cols);
            return;
        };
        if default && a == 0 && b >= d.cells.len() {
            self.free();
            return;
        }
        if default && b >= d.cells.len() {
            let len = d.cells.len();
            d.split_wide(a, len);
            d.cells.truncate(a);
            return;
        }
        self.fill(a, b, style, cols);
    }

    fn fill(&mut self, a: usize, b: usize, style: &Style, cols: usize) {
        let d = self.data();
        d.ensure_len(b, cols);
        d.split_wide(a, b);
        match Packed::new(style) {
            Some(p) => d.cells[a..b].fill(p.cell(b' ')),
            None => {
                for x in a..b {
                    d.put_ext(
                        x,
                        ExtCell {
                            ch: ' ',
                            combining: None,
                            style: *style,
                            width: 1,
                        },
                        cols,
                    );
                }
            }
        }
    }

    /// Inserts `n` blanks at `x`, pushing the rest right; what passes `cols` is lost (ICH).
    pub(crate) fn insert(&mut self, x: usize, n: usize, style: &Style, cols: usize) {
        let n = n.min(cols - x);
        if x < self.len() {
            let d = self.data();
            d.split_wide(x, x);
            d.cells
                .splice(x..x, std::iter::repeat_n(Cell::BLANK, n))
                .for_each(drop);
            d.cells.truncate(cols);
            // A wide character pushed half over the margin is lost whole.
            if d.cells.len() == cols && d.view_width(cols - 1) == 2 {
                d.cells[cols - 1] = Cell::BLANK;
            }
        }
        if *style != Style::default() {
            self.fill(x, x + n, style, cols);
        }
    }

    /// Deletes `n` columns at `x`, pulling the rest left and blanking the margin (DCH).
    pub(crate) fn delete(&mut self, x: usize, n: usize, style: &Style, cols: usize) {
        let n = n.min(cols - x);
        if x < self.len() {
            let d = self.data();
            let end = (x + n).min(d.cells.len());
            d.split_wide(x, end);
            d.cells.drain(x..end);
        }
        if *style != Style::default() {
            self.fill(cols - n, cols, style, cols);
        }
    }

    /// Cuts the line to `cols` columns (a narrower screen), keeping wide characters whole.
    pub(crate) fn truncate(&mut self, cols: usize) {
        if let Some(d) = &mut self.0
            && d.cells.len() > cols
        {
            let len = d.cells.len();
            d.split_wide(cols, len);
            d.cells.truncate(cols);
            d.cells.shrink_to_fit();
            // The extended cells past the new width are orphaned: drop them with their marks,
            // so a narrowed line holds no more than its width allows (found by the `feed`
            // fuzz target: a 120-column screen of combining marks narrowed to one column).
            d.compact_ext();
            d.ext.shrink_to_fit();
        }
    }
}

impl LineData {
    fn view(&self, x: usize) -> CellView<'_> {
        let cell = self.cells[x];
        match cell.ext_index() {
            Some(i) => {
                let e = &self.ext[i];
                CellView {
                    ch: e.ch,
                    combining: e.combining.as_deref().unwrap_or(&[]),
                    style: e.style,
                    width: e.width,
                }
            }
            None => CellView {
                ch: char::from(cell.data[0]),
                combining: &[],
                style: unpack(cell),
                width: 1,
            },
        }
    }

    fn view_width(&self, x: usize) -> u8 {
        let cell = self.cells[x];
        if cell.is_pad() {
            0
        } else {
            cell.ext_index().map_or(1, |i| self.ext[i].width)
        }
    }

    /// Grows the line to `n` cells. Capacity grows geometrically but never past `cols`:
    /// a line costs at most one screen width.
    #[inline]
    fn ensure_len(&mut self, n: usize, cols: usize) {
        let len = self.cells.len();
        if n <= len {
            return;
        }
        if n > self.cells.capacity() {
            let target = n.max(self.cells.capacity() * 2).clamp(n, cols.max(n));
            self.cells.reserve_exact(target - len);
        }
        self.cells.resize(n, Cell::BLANK);
    }

    /// Before columns `[a, b)` are overwritten: a wide character cut in half by either edge
    /// becomes blank, as in xterm and tmux.
    #[inline]
    fn split_wide(&mut self, a: usize, b: usize) {
        if a < self.cells.len() && self.cells[a].is_pad() && a > 0 {
            self.cells[a - 1] = Cell::BLANK;
            self.cells[a] = Cell::BLANK;
        }
        if b < self.cells.len() && self.cells[b].is_pad() {
            self.cells[b] = Cell::BLANK;
            if b > 0 && b - 1 < a {
                self.cells[b - 1] = Cell::BLANK;
            }
        }
    }

    /// Stores an extended cell at `x`, reusing the slot of the cell it replaces if that was
    /// extended too. Slots orphaned by plain writes are reclaimed once the table is twice
    /// the screen width, so a line's table stays bounded.
    fn put_ext(&mut self, x: usize, ext: ExtCell, cols: usize) {
        if let Some(i) = self.cells[x].ext_index() {
            self.ext[i] = ext;
            return;
        }
        if self.ext.len() >= 2 * cols.max(4) {
            self.compact_ext();
        }
        let i = self.ext.len() as u32;
        self.ext.push(ext);
        self.cells[x] = Cell {
            flags: EXT,
            data: i.to_le_bytes(),
        };
    }

    /// Drops extended slots no cell points at.
    fn compact_ext(&mut self) {
        if self.ext.is_empty() {
            return;
        }
        let old = std::mem::take(&mut self.ext);
        let mut old: Vec<Option<ExtCell>> = old.into_iter().map(Some).collect();
        for cell in &mut self.cells {
            if let Some(i) = cell.ext_index() {
                let e = old[i].take().expect("two cells share an extended slot");
                let j = self.ext.len() as u32;
                self.ext.push(e);
                cell.data = j.to_le_bytes();
            }
        }
    }
}

/// The rows of one screen (main or alternate), top first.
#[derive(Clone, Debug)]
pub(crate) struct Grid {
    pub(crate) lines: VecDeque<Line>,
}

impl Grid {
    /// `rows` unwritten lines: 8 bytes each.
    pub(crate) fn new(rows: usize) -> Grid {
        let mut lines = VecDeque::with_capacity(rows);
        lines.resize_with(rows, Line::default);
        Grid { lines }
    }

    pub(crate) fn heap_bytes(&self) -> usize {
        self.lines.capacity() * std::mem::size_of::<Line>()
            + self.lines.iter().map(Line::heap_bytes).sum::<usize>()
    }
}

/// Lines that scrolled off the top of the main screen, oldest first, up to a limit.
#[derive(Clone, Debug, Default)]
pub(crate) struct History {
    pub(crate) lines: VecDeque<Line>,
    pub(crate) limit: usize,
}

impl History {
    /// Keeps `line`; returns the line it evicted (for reuse), or `line` itself when off.
    pub(crate) fn push(&mut self, line: Line) -> Option<Line> {
        if self.limit == 0 {
            return Some(line);
        }
        let evicted = if self.lines.len() >= self.limit {
            self.lines.pop_front()
        } else {
            None
        };
        self.lines.push_back(line);
        evicted
    }

    pub(crate) fn heap_bytes(&self) -> usize {
        self.lines.capacity() * std::mem::size_of::<Line>()
            + self.lines.iter().map(Line::heap_bytes).sum::<usize>()
    }
}
