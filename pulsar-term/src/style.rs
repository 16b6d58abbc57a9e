//! Character attributes and colours (the SGR "pen") and their SGR encoding.
//! A style is small and `Copy`; plain cells store it inline in three bytes when it fits.

use vte::Params;

/// One colour of a cell: the terminal's default, a palette index, or 24-bit RGB.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default, Hash)]
pub enum Color {
    /// The terminal's default foreground or background.
    #[default]
    Default,
    /// A palette index (0-15 are the ANSI colours, 16-255 the xterm cube and greys).
    Indexed(u8),
    /// A truecolor value (SGR 38;2 / 48;2).
    Rgb(u8, u8, u8),
}

/// Bold (SGR 1).
pub const BOLD: u8 = 1;
/// Dim (SGR 2).
pub const DIM: u8 = 1 << 1;
/// Italic (SGR 3).
pub const ITALIC: u8 = 1 << 2;
/// Underline, any kind (SGR 4, 4:x, 21).
pub const UNDERLINE: u8 = 1 << 3;
/// Blink (SGR 5, 6).
pub const BLINK: u8 = 1 << 4;
/// Inverse video (SGR 7).
pub const INVERSE: u8 = 1 << 5;
/// Hidden (SGR 8).
pub const HIDDEN: u8 = 1 << 6;
/// Crossed out (SGR 9).
pub const STRIKE: u8 = 1 << 7;

/// The attributes and colours a character is drawn with.
///
/// Eight attributes fit one byte on purpose: with palette colours a whole style fits the
/// three spare bytes of a plain cell, so most text needs no side table at all.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default, Hash)]
pub struct Style {
    /// A set of the attribute bits above.
    pub attrs: u8,
    /// Foreground colour.
    pub fg: Color,
    /// Background colour.
    pub bg: Color,
}

impl Style {
    /// The style an erase fills with: only the background survives (xterm's BCE).
    pub(crate) fn erase(&self) -> Style {
        Style {
            attrs: 0,
            fg: Color::Default,
            bg: self.bg,
        }
    }

    /// Applies one SGR sequence's parameters.
    pub(crate) fn apply_sgr(&mut self, params: &Params) {
        let mut it = params.iter();
        if params.is_empty() {
            *self = Style::default();
            return;
        }
        while let Some(param) = it.next() {
            let code = param[0];
            match code {
                0 => *self = Style::default(),
                1 => self.attrs |= BOLD,
                2 => self.attrs |= DIM,
                3 => self.attrs |= ITALIC,
                4 => {
                    if param.get(1) == Some(&0) {
                        self.attrs &= !UNDERLINE;
                    } else {
                        self.attrs |= UNDERLINE;
                    }
                }
                5 | 6 => self.attrs |= BLINK,
                7 => self.attrs |= INVERSE,
                8 => self.attrs |= HIDDEN,
                9 => self.attrs |= STRIKE,
                21 => self.attrs |= UNDERLINE,
                22 => self.attrs &= !(BOLD | DIM),
                23 => self.attrs &= !ITALIC,
                24 => self.attrs &= !UNDERLINE,
                25 => self.attrs &= !BLINK,
                27 => self.attrs &= !INVERSE,
                28 => self.attrs &= !HIDDEN,
                29 => self.attrs &= !STRIKE,
                30..=37 => self.fg = Color::Indexed((code - 30) as u8),
                39 => self.fg = Color::Default,
                40..=47 => self.bg = Color::Indexed((code - 40) as u8),
                49 => self.bg = Color::Default,
                90..=97 => self.fg = Color::Indexed((code - 90 + 8) as u8),
                100..=107 => self.bg = Color::Indexed((code - 100 + 8) as u8),
                38 | 48 | 58 => {
                    let color = extended_color(param, &mut it);
                    match (code, color) {
                        (38, Some(c)) => self.fg = c,
                        (48, Some(c)) => self.bg = c,
                        // Underline colours (58) are parsed so they do not derail the rest.
                        _ => {}
                    }
                }
                _ => {}
            }
        }
    }

    /// Appends the SGR sequence that takes a terminal from style `from` to exactly this
    /// one: `CSI 0 m` back to the default, just the codes from the default (`CSI 33 m`, the
    /// form programs write), else a reset and the codes (`CSI 0;1;33 m`).
    pub(crate) fn write_sgr_from(&self, from: &Style, out: &mut Vec<u8>) {
        if *self == Style::default() {
            out.extend_from_slice(b"\x1b[0m");
            return;
        }
        out.extend_from_slice(b"\x1b[");
        let mut first = *from == Style::default();
        if !first {
            out.push(b'0');
        }
        let mut code = |out: &mut Vec<u8>, n: u16| {
            if !first {
                out.push(b';');
            }
            first = false;
            push_num(out, n);
        };
        for (bit, n) in [
            (BOLD, 1),
            (DIM, 2),
            (ITALIC, 3),
            (UNDERLINE, 4),
            (BLINK, 5),
            (INVERSE, 7),
            (HIDDEN, 8),
            (STRIKE, 9),
        ] {
            if self.attrs & bit != 0 {
                code(out, n);
            }
        }
        for (color, base, bright, extended) in [(self.fg, 30, 90, 38), (self.bg, 40, 100, 48)] {
            match color {
                Color::Default => {}
                Color::Indexed(n) if n < 8 => code(out, base + u16::from(n)),
                Color::Indexed(n) if n < 16 => code(out, bright + u16::from(n - 8)),
                Color::Indexed(n) => {
                    code(out, extended);
                    code(out, 5);
                    code(out, u16::from(n));
                }
                Color::Rgb(r, g, b) => {
                    code(out, extended);
                    code(out, 2);
                    code(out, u16::from(r));
                    code(out, u16::from(g));
                    code(out, u16::from(b));
                }
            }
        }
        out.push(b'm');
    }
}

/// Reads the colour after a 38/48/58, in either the colon form (one parameter with
/// subparameters, `38:2::r:g:b` or `38:2:r:g:b`) or the semicolon form (`38;5;n`).
fn extended_color(param: &[u16], rest: &mut vte::ParamsIter<'_>) -> Option<Color> {
    let byte = |v: u16| u8::try_from(v).ok();
    if param.len() > 1 {
        return match param[1] {
            5 => param.get(2).copied().and_then(byte).map(Color::Indexed),
            2 => {
                let rgb = if param.len() >= 6 {
                    &param[3..6]
                } else if param.len() == 5 {
                    &param[2..5]
                } else {
                    return None;
                };
                Some(Color::Rgb(byte(rgb[0])?, byte(rgb[1])?, byte(rgb[2])?))
            }
            _ => None,
        };
    }
    match rest.next().map(|p| p[0]) {
        Some(5) => rest.next().and_then(|p| byte(p[0])).map(Color::Indexed),
        Some(2) => {
            let r = rest.next().map(|p| p[0]);
            let g = rest.next().map(|p| p[0]);
            let b = rest.next().map(|p| p[0]);
            Some(Color::Rgb(byte(r?)?, byte(g?)?, byte(b?)?))
        }
        _ => None,
    }
}

/// Appends a decimal number without going through `fmt` (the serializer writes many).
pub(crate) fn push_num(out: &mut Vec<u8>, n: u16) {
    let mut buf = [0u8; 5];
    let mut i = buf.len();
    let mut n = n;
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&buf[i..]);
}
