//! Whether a program's output left the terminal on the alternate screen, followed from the
//! bytes alone: both ends of an attach need it (the client, to leave that screen when it puts
//! its terminal back; the daemon, when it writes to a terminal handed to it, to say so at the
//! hand-back and to leave it before a redraw).

/// Leaves the alternate screen (xterm's mode 1049, restoring the main screen and cursor).
pub const LEAVE_ALTERNATE_SCREEN: &[u8] = b"\x1b[?1049l";

/// Follows a program's output to know whether it is on the alternate screen (DEC private
/// modes 47, 1047 and 1049; a full reset leaves it). Sequences may span reads.
#[derive(Debug, Default)]
pub struct AlternateScreenTracker {
    state: Scan,
    params: Vec<u8>,
    on: bool,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum Scan {
    #[default]
    Ground,
    Escape,
    /// Inside `ESC [`; `private` once a leading `?` was seen, `relevant` while the sequence
    /// could still be a private mode set/reset.
    Csi {
        private: bool,
        relevant: bool,
    },
}

/// Longest parameter string worth keeping (mode lists are short).
const MAX_PARAMS: usize = 64;

impl AlternateScreenTracker {
    /// True while the alternate screen is in use.
    pub fn is_on(&self) -> bool {
        self.on
    }

    /// Takes `on` as the state, for output this tracker did not see (written by the other
    /// end while the terminal was handed over), between sequences.
    pub fn assume(&mut self, on: bool) {
        *self = Self {
            on,
            ..Self::default()
        };
    }

    /// Scans output bytes.
    pub fn feed(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            // Plain text is most of any output: skip straight to the next byte that can start
            // or cancel a sequence (memchr's vector search: a byte at a time, this scan was
            // the client's busiest code under a flood, 8 % of its time in `perf`).
            if self.state == Scan::Ground {
                match memchr::memchr3(0x18, 0x1a, 0x1b, bytes) {
                    Some(at) => bytes = &bytes[at..],
                    None => return,
                }
            }
            let byte = bytes[0];
            bytes = &bytes[1..];
            self.state = match (self.state, byte) {
                (_, 0x18 | 0x1a) => Scan::Ground,
                (_, 0x1b) => Scan::Escape,
                (Scan::Ground, _) => Scan::Ground,
                (Scan::Escape, b'[') => {
                    self.params.clear();
                    Scan::Csi {
                        private: false,
                        relevant: true,
                    }
                }
                (Scan::Escape, b'c') => {
                    self.on = false;
                    Scan::Ground
                }
                (Scan::Escape, _) => Scan::Ground,
                (Scan::Csi { private, relevant }, byte) => match byte {
                    b'?' if self.params.is_empty() && !private => Scan::Csi {
                        private: true,
                        relevant,
                    },
                    b'0'..=b'9' | b';' => {
                        if self.params.len() < MAX_PARAMS {
                            self.params.push(byte);
                        }
                        Scan::Csi { private, relevant }
                    }
                    0x40..=0x7e => {
                        if private && relevant && matches!(byte, b'h' | b'l') {
                            self.apply_modes(byte == b'h');
                        }
                        Scan::Ground
                    }
                    _ => Scan::Csi {
                        private,
                        relevant: false,
                    },
                },
            };
        }
    }

    fn apply_modes(&mut self, set: bool) {
        let params = std::str::from_utf8(&self.params).unwrap_or("");
        if params
            .split(';')
            .any(|mode| matches!(mode, "47" | "1047" | "1049"))
        {
            self.on = set;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entering_and_leaving_the_alternate_screen_is_tracked() {
        let mut tracker = AlternateScreenTracker::default();
        tracker.feed(b"hello\x1b[?1049h\x1b[H");
        assert!(tracker.is_on());
        tracker.feed(b"bye\x1b[?1049l");
        assert!(!tracker.is_on());
        tracker.feed(b"\x1b[?1;47h");
        assert!(tracker.is_on());
        tracker.feed(b"\x1bc");
        assert!(!tracker.is_on());
    }

    #[test]
    fn a_sequence_split_across_reads_is_tracked() {
        let mut tracker = AlternateScreenTracker::default();
        for chunk in [&b"x\x1b"[..], b"[?10", b"49", b"h"] {
            tracker.feed(chunk);
        }
        assert!(tracker.is_on());
    }

    #[test]
    fn an_assumed_state_is_followed_from_there() {
        let mut tracker = AlternateScreenTracker::default();
        tracker.feed(b"\x1b[?10");
        tracker.assume(true);
        assert!(tracker.is_on());
        // The cut sequence was forgotten: its end is text now.
        tracker.feed(b"49l");
        assert!(tracker.is_on());
        tracker.feed(b"\x1b[?1049l");
        assert!(!tracker.is_on());
    }

    #[test]
    fn other_sequences_do_not_count() {
        let mut tracker = AlternateScreenTracker::default();
        tracker.feed(b"\x1b[1049h\x1b[?25h\x1b[?1049$p\x1b[38;5;1049m");
        assert!(!tracker.is_on());
    }
}
