//! Marks in a session's output worth an event: the bell (BEL), window titles (OSC 0 and 2)
//! and shell-integration prompt marks (OSC 133 `A`/`B`/`C`/`D;exit`), turned into finished
//! commands with their command line and duration. Fed by the pump; state carries across chunks.

use std::time::Instant;

/// Longest OSC payload looked at; a longer one is skipped.
const MAX_OSC: usize = 4096;
/// Longest command line kept.
const MAX_COMMAND_LINE: usize = 1024;

/// What a chunk of output contained.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Mark {
    /// BEL outside any sequence.
    Bell,
    /// A new window title.
    Title(String),
    /// A command finished (OSC 133 `D` after a `C`).
    CommandFinished {
        /// What was typed between `B` and `C`, when both came.
        command_line: Option<String>,
        /// The code the `D` mark carried.
        exit_code: Option<i32>,
        /// From `C` to `D`.
        duration_ms: u64,
    },
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
enum State {
    #[default]
    Ground,
    Escape,
    EscapeIntermediate,
    Csi,
    Osc,
    OscEscape,
    /// DCS, SOS, PM, APC: skipped to their end.
    Str,
    StrEscape,
}

/// The scanner and what it remembers between chunks.
#[derive(Debug, Default)]
pub(super) struct OutputMarks {
    state: State,
    osc: Vec<u8>,
    osc_too_long: bool,
    title: String,
    /// What shell-integration marks have begun, made by a `B` or `C` mark and dropped once
    /// nothing is begun (64 bytes that a session whose shell sends no marks never needs).
    integration: Option<Box<Integration>>,
}

/// Between shell-integration marks.
#[derive(Debug, Default)]
struct Integration {
    /// Text typed since the `B` mark, until `C`.
    typing: Option<Vec<u8>>,
    /// The command line and start of the command running since `C`.
    running: Option<(Option<String>, Instant)>,
}

impl OutputMarks {
    /// Scans `data`, calling `found` for each mark in order (a run of bells counts once).
    pub fn feed(&mut self, data: &[u8], now: Instant, found: &mut impl FnMut(Mark)) {
        let mut rang = false;
        let mut rest = data;
        while !rest.is_empty() {
            // Plain text with no command line being typed holds nothing to see up to the next
            // BEL or ESC: skip it whole (most output is such text).
            if self.state == State::Ground && self.typing().is_none() {
                match memchr::memchr2(0x07, 0x1b, rest) {
                    Some(at) => rest = &rest[at..],
                    None => return,
                }
            }
            self.step(rest[0], now, &mut rang, found);
            rest = &rest[1..];
        }
    }

    fn step(&mut self, byte: u8, now: Instant, rang: &mut bool, found: &mut impl FnMut(Mark)) {
        const ESC: u8 = 0x1b;
        match self.state {
            State::Ground => match byte {
                0x07 if !*rang => {
                    *rang = true;
                    found(Mark::Bell);
                }
                ESC => self.state = State::Escape,
                0x08 => {
                    if let Some(typing) = self.typing() {
                        typing.pop();
                    }
                }
                b'\t' | 0x20..=0x7e | 0x80.. => {
                    if let Some(typing) = self.typing()
                        && typing.len() < MAX_COMMAND_LINE
                    {
                        typing.push(byte);
                    }
                }
                _ => {}
            },
            State::Escape => self.escape(byte),
            State::EscapeIntermediate => match byte {
                0x20..=0x2f => {}
                ESC => self.state = State::Escape,
                _ => self.state = State::Ground,
            },
            State::Csi => match byte {
                0x40..=0x7e | 0x18 | 0x1a => self.state = State::Ground,
                ESC => self.state = State::Escape,
                _ => {}
            },
            State::Osc => match byte {
                0x07 => {
                    self.state = State::Ground;
                    self.osc_end(now, found);
                }
                ESC => self.state = State::OscEscape,
                0x18 | 0x1a => self.state = State::Ground,
                _ if self.osc.len() < MAX_OSC => self.osc.push(byte),
                _ => self.osc_too_long = true,
            },
            State::OscEscape => {
                if byte == b'\\' {
                    self.state = State::Ground;
                    self.osc_end(now, found);
                } else {
                    self.escape(byte);
                }
            }
            State::Str => match byte {
                0x07 | 0x18 | 0x1a => self.state = State::Ground,
                ESC => self.state = State::StrEscape,
                _ => {}
            },
            State::StrEscape => {
                if byte == b'\\' {
                    self.state = State::Ground;
                } else {
                    self.escape(byte);
                }
            }
        }
    }

    /// The command line being typed, if a `B` mark began one.
    fn typing(&mut self) -> Option<&mut Vec<u8>> {
        self.integration.as_mut()?.typing.as_mut()
    }

    /// Drops the integration state once nothing is begun.
    fn tidy(&mut self) {
        if self
            .integration
            .as_ref()
            .is_some_and(|i| i.typing.is_none() && i.running.is_none())
        {
            self.integration = None;
        }
    }

    /// The byte after an ESC.
    fn escape(&mut self, byte: u8) {
        self.state = match byte {
            b'[' => State::Csi,
            b']' => {
                self.osc.clear();
                self.osc_too_long = false;
                State::Osc
            }
            b'P' | b'X' | b'^' | b'_' => State::Str,
            0x20..=0x2f => State::EscapeIntermediate,
            0x1b => State::Escape,
            _ => State::Ground,
        };
    }

    /// A complete OSC: a title or a prompt mark.
    fn osc_end(&mut self, now: Instant, found: &mut impl FnMut(Mark)) {
        if self.osc_too_long {
            return;
        }
        let payload = std::mem::take(&mut self.osc);
        let (command, rest) = match payload.iter().position(|&b| b == b';') {
            Some(i) => (&payload[..i], &payload[i + 1..]),
            None => (&payload[..], &[][..]),
        };
        match command {
            b"0" | b"2" => {
                let title = String::from_utf8_lossy(rest).into_owned();
                if title != self.title {
                    self.title.clone_from(&title);
                    found(Mark::Title(title));
                }
            }
            b"133" => self.prompt_mark(rest, now, found),
            _ => {}
        }
        self.osc = payload;
        self.osc.clear();
    }

    /// OSC 133: `A` prompt starts, `B` typing starts, `C` the command runs, `D[;code]` it ended.
    fn prompt_mark(&mut self, mark: &[u8], now: Instant, found: &mut impl FnMut(Mark)) {
        let mut fields = mark.split(|&b| b == b';');
        match fields.next() {
            Some(b"A") => {
                if let Some(integration) = &mut self.integration {
                    integration.typing = None;
                }
            }
            Some(b"B") => {
                self.integration.get_or_insert_with(Box::default).typing = Some(Vec::new());
            }
            Some(b"C") => {
                let integration = self.integration.get_or_insert_with(Box::default);
                let command_line = integration
                    .typing
                    .take()
                    .map(|typed| String::from_utf8_lossy(&typed).trim().to_owned())
                    .filter(|line| !line.is_empty());
                integration.running = Some((command_line, now));
            }
            Some(b"D") => {
                // A `D` without a `C` closes a prompt where nothing ran (an empty line).
                let running = self.integration.as_mut().and_then(|i| i.running.take());
                if let Some((command_line, started)) = running {
                    let exit_code = fields
                        .next()
                        .and_then(|code| std::str::from_utf8(code).ok()?.parse().ok());
                    found(Mark::CommandFinished {
                        command_line,
                        exit_code,
                        duration_ms: now.saturating_duration_since(started).as_millis() as u64,
                    });
                }
            }
            _ => {}
        }
        self.tidy();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn marks(chunks: &[(&[u8], u64)]) -> Vec<Mark> {
        let start = Instant::now();
        let mut scanner = OutputMarks::default();
        let mut out = Vec::new();
        for (data, at_ms) in chunks {
            let now = start + Duration::from_millis(*at_ms);
            scanner.feed(data, now, &mut |m| out.push(m));
        }
        out
    }

    #[test]
    fn marks_amid_long_runs_of_plain_text_are_all_found() {
        let text = "a".repeat(10_000);
        let chunk = format!("{text}\x07{text}\x1b]2;long\x07{text}\x1b[1mb\x1b]0;");
        assert_eq!(
            marks(&[(chunk.as_bytes(), 0), (b"next\x07", 1)]),
            [
                Mark::Bell,
                Mark::Title("long".into()),
                Mark::Title("next".into())
            ]
        );
    }

    #[test]
    fn integration_state_is_held_only_between_a_begun_mark_and_its_end() {
        let now = Instant::now();
        let mut scanner = OutputMarks::default();
        let mut ignore = |_| {};
        scanner.feed(b"\x1b]2;title\x07$ plain\x07", now, &mut ignore);
        assert!(scanner.integration.is_none());
        scanner.feed(b"\x1b]133;A\x07$ \x1b]133;B\x07ls", now, &mut ignore);
        assert!(scanner.integration.is_some(), "typing");
        scanner.feed(b"\x1b]133;C\x07out\n", now, &mut ignore);
        assert!(scanner.integration.is_some(), "running");
        scanner.feed(b"\x1b]133;D;0\x07", now, &mut ignore);
        assert!(scanner.integration.is_none());
    }

    #[test]
    fn a_bell_counts_but_not_the_bel_that_ends_an_osc() {
        assert_eq!(marks(&[(b"\x1b]0;t\x07x\x07\x07", 0)])[1..], [Mark::Bell]);
    }

    #[test]
    fn titles_are_reported_when_they_change_whichever_terminator_ends_them() {
        assert_eq!(
            marks(&[
                (b"\x1b]0;one\x07\x1b]2;one\x1b\\\x1b]2;t", 0),
                (b"wo\x07", 0)
            ]),
            [Mark::Title("one".into()), Mark::Title("two".into())]
        );
    }

    #[test]
    fn a_marked_command_finishes_with_its_line_code_and_duration() {
        let found = marks(&[
            (b"\x1b]133;A\x07$ \x1b]133;B\x07", 0),
            (b"mak\x08ke test\r\n\x1b]133;C\x07", 10),
            (b"ok\r\n\x1b]133;D;2\x07", 260),
        ]);
        assert_eq!(
            found,
            [Mark::CommandFinished {
                command_line: Some("make test".into()),
                exit_code: Some(2),
                duration_ms: 250,
            }]
        );
    }

    #[test]
    fn a_prompt_closed_without_a_command_finishes_nothing() {
        assert_eq!(
            marks(&[(
                b"\x1b]133;D\x07\x1b]133;A\x07$ \x1b]133;B\x07\r\n\x1b]133;D;0\x07",
                0
            )]),
            []
        );
    }
}
