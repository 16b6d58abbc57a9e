//! Character sets: G0/G1 designations (ASCII, DEC special graphics, UK) and the SI/SO shift.
//! Programs draw boxes with DEC special graphics (`ESC ( 0`, then `lqk`), so it must map.

/// A 94-character set that can be designated into G0 or G1.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default, Hash)]
pub enum Charset {
    /// US ASCII (`ESC ( B`).
    #[default]
    Ascii,
    /// DEC special graphics, the line-drawing set (`ESC ( 0`).
    DecSpecial,
    /// UK: `#` is a pound sign (`ESC ( A`).
    Uk,
}

impl Charset {
    /// The set designated by the final byte of an SCS sequence; unknown sets read as ASCII.
    pub(crate) fn from_final(b: u8) -> Charset {
        match b {
            b'0' => Charset::DecSpecial,
            b'A' => Charset::Uk,
            _ => Charset::Ascii,
        }
    }

    /// The final byte that designates this set.
    pub(crate) fn final_byte(self) -> u8 {
        match self {
            Charset::Ascii => b'B',
            Charset::DecSpecial => b'0',
            Charset::Uk => b'A',
        }
    }

    /// What printable ASCII byte `b` shows in this set.
    pub(crate) fn map(self, b: u8) -> char {
        match self {
            Charset::Ascii => char::from(b),
            Charset::Uk if b == b'#' => '£',
            Charset::Uk => char::from(b),
            Charset::DecSpecial => match b {
                b'`'..=b'~' => DEC_SPECIAL[usize::from(b - b'`')],
                _ => char::from(b),
            },
        }
    }
}

/// DEC special graphics for 0x60-0x7E, as xterm maps them to Unicode.
const DEC_SPECIAL: [char; 31] = [
    '◆', '▒', '␉', '␌', '␍', '␊', '°', '±', '␤', '␋', '┘', '┐', '┌', '└', '┼', '⎺', '⎻', '─', '⎼',
    '⎽', '├', '┤', '┴', '┬', '│', '≤', '≥', 'π', '≠', '£', '·',
];

/// The designations and the shift state; saved and restored with the cursor (DECSC).
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default, Hash)]
pub struct Charsets {
    /// The set in G0.
    pub g0: Charset,
    /// The set in G1.
    pub g1: Charset,
    /// Shifted out (SO): G1 is in GL; else (SI) G0 is.
    pub shifted: bool,
}

impl Charsets {
    /// The set printable bytes are read through.
    #[inline]
    pub(crate) fn active(&self) -> Charset {
        if self.shifted { self.g1 } else { self.g0 }
    }

    /// Appends the sequences that set these charsets from the defaults.
    pub(crate) fn write(&self, out: &mut Vec<u8>) {
        if self.g0 != Charset::Ascii {
            out.extend_from_slice(&[0x1b, b'(', self.g0.final_byte()]);
        }
        if self.g1 != Charset::Ascii {
            out.extend_from_slice(&[0x1b, b')', self.g1.final_byte()]);
        }
        if self.shifted {
            out.push(0x0e);
        }
    }
}
