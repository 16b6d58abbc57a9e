//! The byte-stream front end: printable ASCII is handed to the screen in whole runs (the fast
//! path), UTF-8 and escape sequences are decoded here, and a complete CSI sequence is handed
//! to `vte` in one call, which parses its parameters (subparameters included).
//!
//! An unfinished sequence or UTF-8 character is kept as the bytes that lead to it
//! (`pending`): feeding those bytes to a fresh parser recreates its state exactly, which is
//! what makes [`crate::Screen::serialize`] exact at any cut point. Everything a sequence can
//! accumulate is capped, so the pending bytes (and `vte`'s buffers) stay bounded.

use crate::terminal::{MAX_TITLE, Terminal};

/// Longest CSI kept (parameters and intermediates); a longer one is ignored to its end.
const MAX_CSI: usize = 256;
/// Longest OSC payload kept; the rest is dropped (titles are capped anyway).
const MAX_OSC: usize = MAX_TITLE + 8;
/// ESC, up to two intermediates; more make the sequence ignored to its end.
const MAX_ESC: usize = 3;

const ESC: u8 = 0x1b;
const CAN: u8 = 0x18;
const SUB: u8 = 0x1a;
const BEL: u8 = 0x07;

/// Where in the grammar the parser is.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
enum State {
    /// Text and C0 controls.
    #[default]
    Ground,
    /// Inside a UTF-8 character: `need` more continuation bytes, the next one in
    /// `lower..=upper` (which excludes overlongs and surrogates), `code` so far.
    Utf8 {
        need: u8,
        lower: u8,
        upper: u8,
        code: u32,
    },
    /// After ESC.
    Escape,
    /// After ESC and intermediates (0x20-0x2F), e.g. `ESC (`.
    EscapeIntermediate,
    /// An overlong escape sequence, ignored up to its final byte.
    EscapeIgnore,
    /// Inside `ESC [`; the sequence so far is in `pending` (vte sees it once complete).
    Csi,
    /// An overlong CSI, ignored up to its final byte.
    CsiIgnore,
    /// Inside `ESC ]`; the payload is in `pending[2..]`.
    Osc,
    /// Inside DCS, SOS, PM or APC: ignored up to ST (or CAN/SUB).
    IgnoredString,
}

/// The parser. Its whole state is `pending` (see the module docs).
#[derive(Default)]
pub(crate) struct Parser {
    state: State,
    pending: Vec<u8>,
}

thread_local! {
    /// The `vte` parser every screen on this thread hands its complete CSI sequences to.
    /// Shared, because it keeps nothing between sequences: each one is given whole and ends
    /// in vte's ground state, so one screen's sequence can never leave state for another's.
    /// (Per screen, it was 432 of the 768 bytes of an idle session's screen.)
    static VTE: std::cell::RefCell<vte::Parser> = std::cell::RefCell::new(vte::Parser::new());
}

impl std::fmt::Debug for Parser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Parser")
            .field("state", &self.state)
            .field("pending", &self.pending)
            .finish()
    }
}

/// How many leading bytes are printable ASCII (0x20-0x7E), eight at a time where it can.
#[inline]
fn printable_run(bytes: &[u8]) -> usize {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let mut i = 0;
    while let Some(chunk) = bytes.get(i..i + 8) {
        let w = u64::from_le_bytes(chunk.try_into().expect("8 bytes"));
        // Any byte below 0x20, any byte with the top bit set, any byte equal to 0x7F.
        let below = w.wrapping_sub(ONES * 0x20) & !w & HIGH;
        let del = (w ^ (ONES * 0x7f)).wrapping_sub(ONES) & !(w ^ (ONES * 0x7f)) & HIGH;
        if below | (w & HIGH) | del != 0 {
            break;
        }
        i += 8;
    }
    while i < bytes.len() && (0x20..=0x7e).contains(&bytes[i]) {
        i += 1;
    }
    i
}

impl Parser {
    /// The bytes of the unfinished sequence or character (empty in the ground state).
    pub(crate) fn pending(&self) -> &[u8] {
        &self.pending
    }

    pub(crate) fn heap_bytes(&self) -> usize {
        self.pending.capacity()
    }

    /// Feeds output bytes to `term`.
    pub(crate) fn feed(&mut self, term: &mut Terminal, bytes: &[u8]) {
        let mut i = 0;
        while i < bytes.len() {
            if self.state == State::Ground {
                let run = printable_run(&bytes[i..]);
                if run > 0 {
                    term.print_ascii(&bytes[i..i + run]);
                    i += run;
                    continue;
                }
                self.ground(term, bytes[i]);
            } else if self.state == State::Csi {
                // Parameters and intermediates are collected a run at a time.
                let room = (MAX_CSI + 1).saturating_sub(self.pending.len());
                let run = bytes[i..]
                    .iter()
                    .take(room.saturating_sub(1))
                    .take_while(|b| (0x20..=0x3f).contains(*b))
                    .count();
                if run > 0 {
                    self.pending.extend_from_slice(&bytes[i..i + run]);
                    i += run;
                    continue;
                }
                self.sequence(term, bytes[i]);
            } else {
                self.sequence(term, bytes[i]);
            }
            i += 1;
        }
    }

    /// A byte in the ground state that is not printable ASCII.
    fn ground(&mut self, term: &mut Terminal, b: u8) {
        match b {
            ESC => self.begin(ESC, State::Escape),
            0x00..=0x1f => term.execute(b),
            0x20..=0x7e => term.print_ascii(&[b]),
            0x7f => {}
            // C1 controls as raw bytes: 8-bit controls are not used with UTF-8; ignored.
            0x80..=0x9f => {}
            0xc2..=0xdf => self.utf8(b, 1, 0x80, 0xbf, b & 0x1f),
            0xe0 => self.utf8(b, 2, 0xa0, 0xbf, b & 0x0f),
            0xed => self.utf8(b, 2, 0x80, 0x9f, b & 0x0f),
            0xe1..=0xef => self.utf8(b, 2, 0x80, 0xbf, b & 0x0f),
            0xf0 => self.utf8(b, 3, 0x90, 0xbf, b & 0x07),
            0xf4 => self.utf8(b, 3, 0x80, 0x8f, b & 0x07),
            0xf1..=0xf3 => self.utf8(b, 3, 0x80, 0xbf, b & 0x07),
            _ => term.print(char::REPLACEMENT_CHARACTER),
        }
    }

    fn utf8(&mut self, b: u8, need: u8, lower: u8, upper: u8, code: u8) {
        self.begin(
            b,
            State::Utf8 {
                need,
                lower,
                upper,
                code: u32::from(code),
            },
        );
    }

    fn begin(&mut self, b: u8, state: State) {
        self.pending.clear();
        self.pending.push(b);
        self.state = state;
    }

    /// Back to the ground state.
    fn finish(&mut self) {
        self.state = State::Ground;
        self.pending.clear();
        if self.pending.capacity() > 64 {
            self.pending.shrink_to(16);
        }
    }

    /// A byte inside a sequence or a UTF-8 character.
    fn sequence(&mut self, term: &mut Terminal, b: u8) {
        if let State::Utf8 {
            need,
            lower,
            upper,
            code,
        } = self.state
        {
            if (lower..=upper).contains(&b) {
                let code = code << 6 | u32::from(b & 0x3f);
                if need == 1 {
                    self.finish();
                    match char::from_u32(code) {
                        // C1 controls encoded in UTF-8: ignored, as the raw bytes are.
                        Some(c) if ('\u{80}'..='\u{9f}').contains(&c) => {}
                        Some(c) => term.print(c),
                        None => term.print(char::REPLACEMENT_CHARACTER),
                    }
                } else {
                    self.pending.push(b);
                    self.state = State::Utf8 {
                        need: need - 1,
                        lower: 0x80,
                        upper: 0xbf,
                        code,
                    };
                }
            } else {
                // A truncated character is one replacement; the byte starts afresh.
                self.finish();
                term.print(char::REPLACEMENT_CHARACTER);
                self.ground(term, b);
            }
            return;
        }
        match b {
            CAN | SUB => {
                self.cancel();
                return;
            }
            ESC => {
                if self.state == State::Osc {
                    self.osc_end(term);
                }
                self.cancel();
                self.begin(ESC, State::Escape);
                return;
            }
            _ => {}
        }
        match self.state {
            State::Ground | State::Utf8 { .. } => unreachable!("handled above"),
            State::Escape => match b {
                0x00..=0x1f => term.execute(b),
                b'[' => {
                    self.pending.push(b);
                    self.state = State::Csi;
                }
                b']' => {
                    self.pending.push(b);
                    self.state = State::Osc;
                }
                b'P' | b'X' | b'^' | b'_' => {
                    self.pending.push(b);
                    self.state = State::IgnoredString;
                }
                0x20..=0x2f => {
                    self.pending.push(b);
                    self.state = State::EscapeIntermediate;
                }
                0x30..=0x7e => {
                    self.finish();
                    term.esc_dispatch(&[], b);
                }
                _ => {}
            },
            State::EscapeIntermediate => match b {
                0x00..=0x1f => term.execute(b),
                0x20..=0x2f => {
                    self.pending.push(b);
                    if self.pending.len() > MAX_ESC {
                        self.state = State::EscapeIgnore;
                    }
                }
                0x30..=0x7e => {
                    let mut inter = [0u8; MAX_ESC - 1];
                    let n = self.pending.len() - 1;
                    inter[..n].copy_from_slice(&self.pending[1..]);
                    self.finish();
                    term.esc_dispatch(&inter[..n], b);
                }
                _ => {}
            },
            State::EscapeIgnore => match b {
                0x00..=0x1f => term.execute(b),
                0x30..=0x7e => self.finish(),
                _ => {}
            },
            State::Csi => match b {
                0x00..=0x1f => term.execute(b),
                0x20..=0x3f => {
                    self.pending.push(b);
                    if self.pending.len() > MAX_CSI {
                        self.state = State::CsiIgnore;
                    }
                }
                0x40..=0x7e => {
                    // The whole sequence goes to vte at once: it parses the parameters and
                    // calls back `csi_dispatch`, and is in its ground state again after.
                    self.pending.push(b);
                    VTE.with_borrow_mut(|vte| vte.advance(term, &self.pending));
                    self.finish();
                }
                _ => {}
            },
            State::CsiIgnore => match b {
                0x00..=0x1f => term.execute(b),
                0x40..=0x7e => self.finish(),
                _ => {}
            },
            State::Osc => match b {
                BEL => {
                    self.osc_end(term);
                    self.finish();
                }
                0x00..=0x1f => {}
                _ => {
                    if self.pending.len() < 2 + MAX_OSC {
                        self.pending.push(b);
                    }
                }
            },
            State::IgnoredString => {}
        }
    }

    /// Abandons the current sequence (CAN, SUB, or an ESC starting a new one).
    fn cancel(&mut self) {
        self.finish();
    }

    fn osc_end(&mut self, term: &mut Terminal) {
        term.osc_dispatch(&self.pending[2..]);
    }
}
