//! Terminal output as plain text: escape sequences (CSI, OSC, DCS, ...) and control
//! characters other than newline and tab removed, so a pattern sees what a person reads.
//!
//! The state survives between calls, so a sequence split across two reads is still removed.

/// Where the stripper is inside an escape sequence.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
enum State {
    /// Plain text.
    #[default]
    Ground,
    /// After ESC.
    Escape,
    /// After ESC and an intermediate byte (`ESC ( B`).
    EscapeIntermediate,
    /// Inside `ESC [` ... final byte.
    Csi,
    /// Inside a string (OSC, DCS, SOS, PM, APC) until BEL or ST.
    String,
    /// After ESC inside a string: `\` ends it (ST), anything else starts a new sequence.
    StringEscape,
}

/// An escape-sequence stripper that keeps its state across chunks.
#[derive(Debug, Default)]
pub(crate) struct PlainText {
    state: State,
}

impl PlainText {
    /// Feeds `data`; calls `keep(index, byte)` for every byte of text in it, in order.
    pub fn feed(&mut self, data: &[u8], mut keep: impl FnMut(usize, u8)) {
        for (index, &byte) in data.iter().enumerate() {
            if let Some(byte) = self.step(byte) {
                keep(index, byte);
            }
        }
    }

    /// One byte: the byte itself when it is text.
    fn step(&mut self, byte: u8) -> Option<u8> {
        const ESC: u8 = 0x1b;
        match self.state {
            State::Ground => match byte {
                ESC => self.state = State::Escape,
                b'\n' | b'\t' => return Some(byte),
                0..0x20 | 0x7f => {}
                _ => return Some(byte),
            },
            State::Escape | State::StringEscape => {
                if self.state == State::StringEscape && byte == b'\\' {
                    self.state = State::Ground;
                    return None;
                }
                self.state = match byte {
                    b'[' => State::Csi,
                    b']' | b'P' | b'X' | b'^' | b'_' => State::String,
                    0x20..=0x2f => State::EscapeIntermediate,
                    ESC => State::Escape,
                    _ => State::Ground,
                };
            }
            State::EscapeIntermediate => match byte {
                0x20..=0x2f => {}
                ESC => self.state = State::Escape,
                _ => self.state = State::Ground,
            },
            State::Csi => match byte {
                0x40..=0x7e => self.state = State::Ground,
                ESC => self.state = State::Escape,
                // CAN and SUB cancel a sequence.
                0x18 | 0x1a => self.state = State::Ground,
                _ => {}
            },
            State::String => match byte {
                0x07 | 0x18 | 0x1a => self.state = State::Ground,
                ESC => self.state = State::StringEscape,
                _ => {}
            },
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plain(chunks: &[&[u8]]) -> String {
        let mut stripper = PlainText::default();
        let mut out = Vec::new();
        for chunk in chunks {
            stripper.feed(chunk, |_, b| out.push(b));
        }
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn colours_cursor_moves_and_carriage_returns_are_removed() {
        assert_eq!(
            plain(&[b"\x1b[1;31mred\x1b[0m \x1b[2K\x1b[Hok\r\n\tnext"]),
            "red ok\n\tnext"
        );
    }

    #[test]
    fn titles_and_prompt_marks_are_removed_whether_ended_by_bel_or_st() {
        assert_eq!(
            plain(&[b"\x1b]0;title\x07a\x1b]133;A\x1b\\b\x1bPdcs\x1b\\c"]),
            "abc"
        );
    }

    #[test]
    fn a_sequence_split_across_chunks_is_still_removed() {
        assert_eq!(
            plain(&[b"x\x1b", b"[3", b"1mred", b"\x1b]0;t", b"\x07y"]),
            "xredy"
        );
    }

    #[test]
    fn charset_designations_and_utf8_text_survive_correctly() {
        assert_eq!(plain(&["\x1b(Bé→\x1b=z".as_bytes()]), "é→z");
    }

    #[test]
    fn indices_point_at_the_kept_bytes() {
        let mut stripper = PlainText::default();
        let mut kept = Vec::new();
        stripper.feed(b"\x1b[1mab", |i, _| kept.push(i));
        assert_eq!(kept, [4, 5]);
    }
}
