//! Control functions: CSI sequences (from `vte`), escape sequences and OSC strings, each
//! mapped to the terminal operation xterm performs for it.

use vte::Params;

use crate::charset::Charset;
use crate::modes::{MouseEncoding, MouseMode};
use crate::terminal::{MAX_TITLE, Terminal};

/// The `i`-th parameter, with 0 or absence meaning `default` (ECMA-48's convention).
fn arg(params: &Params, i: usize, default: usize) -> usize {
    match params.iter().nth(i).map(|p| p[0]) {
        None | Some(0) => default,
        Some(n) => usize::from(n),
    }
}

impl vte::Perform for Terminal {
    fn csi_dispatch(&mut self, params: &Params, inter: &[u8], ignore: bool, action: char) {
        if ignore {
            return;
        }
        let n = |i| arg(params, i, 1);
        match (inter, action) {
            ([], 'b') => {
                self.repeat(n(0));
                return;
            }
            ([], '@') => self.insert_chars(n(0)),
            ([], 'A') => self.cursor_up(n(0)),
            ([], 'B') | ([], 'e') => self.cursor_down(n(0)),
            ([], 'C') | ([], 'a') => self.cursor_forward(n(0)),
            ([], 'D') => self.cursor_back(n(0)),
            ([], 'E') => {
                self.cursor_down(n(0));
                self.cursor.x = 0;
            }
            ([], 'F') => {
                self.cursor_up(n(0));
                self.cursor.x = 0;
            }
            ([], 'G') | ([], '`') => self.set_column(n(0) - 1),
            ([], 'H') | ([], 'f') => self.goto(n(0) - 1, n(1) - 1),
            ([], 'I') => self.tab_forward(n(0)),
            ([], 'J') | ([b'?'], 'J') => self.erase_display(arg(params, 0, 0)),
            ([], 'K') | ([b'?'], 'K') => self.erase_line(arg(params, 0, 0)),
            ([], 'L') => self.insert_lines(n(0)),
            ([], 'M') => self.delete_lines(n(0)),
            ([], 'P') => self.delete_chars(n(0)),
            ([], 'S') => self.scroll_up(self.top, self.bottom, n(0), true),
            // With more parameters, `CSI T` is xterm's mouse highlight tracking.
            ([], 'T') if params.len() <= 1 => self.scroll_down(self.top, self.bottom, n(0)),
            ([], 'X') => self.erase_chars(n(0)),
            ([], 'Z') => self.tab_back(n(0)),
            ([], 'd') => self.set_row(n(0) - 1),
            ([], 'g') => match arg(params, 0, 0) {
                0 => self.tabs.clear(self.cursor.x.min(self.cols - 1), self.cols),
                3 => self.tabs.clear_all(self.cols),
                _ => {}
            },
            ([], 'h') | ([], 'l') => {
                for p in params.iter() {
                    if p[0] == 4 {
                        self.modes.insert = action == 'h';
                    }
                }
            }
            ([b'?'], 'h') | ([b'?'], 'l') => {
                for p in params.iter() {
                    self.set_private_mode(p[0], action == 'h');
                }
            }
            ([], 'm') => {
                let mut pen = self.cursor.pen;
                pen.apply_sgr(params);
                self.set_pen(pen);
            }
            ([], 'r') => self.set_scroll_region(arg(params, 0, 0), arg(params, 1, 0)),
            ([], 's') if params.is_empty() || arg(params, 0, 0) == 0 => self.save_cursor(),
            ([], 'u') if params.is_empty() || arg(params, 0, 0) == 0 => self.restore_cursor(),
            ([b' '], 'q') => {
                let style = arg(params, 0, 0);
                if style <= 6 {
                    self.modes.cursor_style = style as u8;
                }
            }
            ([b'!'], 'p') => self.soft_reset(),
            _ => {}
        }
        self.last_char = None;
    }
}

impl Terminal {
    /// DECSET / DECRST.
    fn set_private_mode(&mut self, mode: u16, on: bool) {
        match mode {
            1 => self.modes.cursor_keys_application = on,
            6 => {
                self.modes.origin = on;
                self.goto(0, 0);
            }
            7 => self.modes.autowrap = on,
            25 => self.modes.cursor_visible = on,
            47 | 1047 => {
                if on {
                    self.enter_alternate(false);
                } else {
                    self.leave_alternate(false);
                }
            }
            1048 => {
                if on {
                    self.save_cursor();
                } else {
                    self.restore_cursor();
                }
            }
            1049 => {
                if on {
                    self.enter_alternate(true);
                } else {
                    self.leave_alternate(true);
                }
            }
            1004 => self.modes.focus_reporting = on,
            2004 => self.modes.bracketed_paste = on,
            _ => {
                if let Some(mouse) = MouseMode::from_mode(mode) {
                    self.modes.mouse = if on { mouse } else { MouseMode::None };
                } else if let Some(encoding) = MouseEncoding::from_mode(mode) {
                    if on {
                        self.modes.mouse_encoding = encoding;
                    } else if self.modes.mouse_encoding == encoding {
                        self.modes.mouse_encoding = MouseEncoding::Default;
                    }
                }
            }
        }
    }

    /// An escape sequence: `ESC`, intermediates, final byte.
    pub(crate) fn esc_dispatch(&mut self, inter: &[u8], b: u8) {
        match (inter, b) {
            ([], b'7') => self.save_cursor(),
            ([], b'8') => self.restore_cursor(),
            ([], b'D') => self.index(),
            ([], b'E') => {
                self.cursor.x = 0;
                self.index();
            }
            ([], b'M') => self.reverse_index(),
            ([], b'H') => self.tabs.set(self.cursor.x.min(self.cols - 1), self.cols),
            ([], b'c') => self.reset(),
            ([], b'=') => self.modes.keypad_application = true,
            ([], b'>') => self.modes.keypad_application = false,
            ([b'('], _) => self.cursor.charsets.g0 = Charset::from_final(b),
            ([b')'], _) => self.cursor.charsets.g1 = Charset::from_final(b),
            ([b'#'], b'8') => self.alignment_test(),
            _ => {}
        }
        self.last_char = None;
    }

    /// An OSC string's payload: `Ps ; Pt`. Titles (0, 2) are kept; the rest is ignored.
    pub(crate) fn osc_dispatch(&mut self, payload: &[u8]) {
        let Some(semi) = payload.iter().position(|&b| b == b';') else {
            return;
        };
        if &payload[..semi] == b"7717" {
            // Pulsar's own: what `serialize` writes to restore REP's character.
            let rest = String::from_utf8_lossy(&payload[semi + 1..]);
            self.last_char = rest.chars().next();
            return;
        }
        if matches!(&payload[..semi], b"0" | b"2") {
            let text = &payload[semi + 1..];
            let mut title =
                String::from_utf8_lossy(&text[..text.len().min(MAX_TITLE)]).into_owned();
            // Cut at a character boundary so that the title, sent again, reads back the same.
            let mut end = title.len().min(MAX_TITLE);
            while !title.is_char_boundary(end) {
                end -= 1;
            }
            title.truncate(end);
            self.title = title;
        }
    }
}
