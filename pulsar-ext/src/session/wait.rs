//! `wait_for_output`: waits until a pattern matches a session's output after an offset (as
//! plain text, chunk boundaries invisible) or its current screen, within a time limit.
//!
//! Bounded whatever the pattern: the regex engine is linear-time with size limits on the
//! compiled pattern, and the stream is matched over a window of at most [`WINDOW`] bytes of
//! text, so each chunk of output costs at most one scan of the window.

use std::sync::Arc;
use std::time::Duration;

use pulsar_protocol::{SessionState, WaitOn, WaitResult};
use regex_automata::meta::Regex;
use regex_automata::util::syntax;
use tokio::sync::broadcast;

use super::{OUTPUT_CHUNK, Session, SessionError};
use crate::terminal::PlainText;

/// Longest pattern accepted, in bytes.
pub const MAX_PATTERN: usize = 4096;
/// Longest wait accepted.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(3600);
/// Most text (after stripping) a stream match is looked for in: a match cannot be longer.
pub const WINDOW: usize = 64 * 1024;
/// Memory the compiled pattern may take (each engine's share).
const PATTERN_SIZE_LIMIT: usize = 1 << 20;

/// A compiled, size-limited pattern.
#[derive(Debug)]
pub struct Pattern(Regex);

impl Pattern {
    /// Compiles `pattern` (the `regex` crate's syntax), refusing one that is too long, too
    /// deeply nested or compiles too big.
    pub fn new(pattern: &str) -> Result<Self, SessionError> {
        let invalid = |reason: String| SessionError::InvalidParam {
            field: "pattern",
            reason,
        };
        if pattern.len() > MAX_PATTERN {
            return Err(invalid(format!(
                "{} bytes is longer than {MAX_PATTERN}",
                pattern.len()
            )));
        }
        Regex::builder()
            .syntax(syntax::Config::new().nest_limit(64))
            .configure(
                Regex::config()
                    .nfa_size_limit(Some(PATTERN_SIZE_LIMIT))
                    .onepass_size_limit(Some(PATTERN_SIZE_LIMIT))
                    .dfa_size_limit(Some(PATTERN_SIZE_LIMIT))
                    .hybrid_cache_capacity(2 * PATTERN_SIZE_LIMIT),
            )
            .build(pattern)
            .map(Self)
            .map_err(|err| invalid(err.to_string()))
    }

    /// The first match in `text`: its span and the capture groups 1...
    fn find(&self, text: &[u8]) -> Option<(std::ops::Range<usize>, Vec<Option<String>>)> {
        let mut captures = self.0.create_captures();
        self.0.captures(text, &mut captures);
        let span = captures.get_match()?.range();
        let groups = (1..captures.group_len())
            .map(|i| {
                captures
                    .get_group(i)
                    .map(|g| String::from_utf8_lossy(&text[g.range()]).into_owned())
            })
            .collect();
        Some((span, groups))
    }
}

/// The text of the stream after the wait's start, with each byte's output offset.
struct Window {
    stripper: PlainText,
    text: Vec<u8>,
    /// Runs of text whose bytes came from consecutive output offsets: (index in `text`,
    /// offset of that byte), ascending.
    runs: Vec<(usize, u64)>,
}

impl Window {
    fn new() -> Self {
        Self {
            stripper: PlainText::default(),
            text: Vec::new(),
            runs: Vec::new(),
        }
    }

    /// Adds the text of output bytes `data` that start at `offset`.
    fn push(&mut self, offset: u64, data: &[u8]) {
        let Self {
            stripper,
            text,
            runs,
        } = self;
        stripper.feed(data, |i, byte| {
            let at = offset + i as u64;
            let continues = runs
                .last()
                .is_some_and(|&(t0, o0)| o0 + (text.len() - t0) as u64 == at);
            if !continues {
                runs.push((text.len(), at));
            }
            text.push(byte);
        });
        if self.text.len() > WINDOW {
            self.trim(self.text.len() - WINDOW / 2);
        }
    }

    /// Forgets the first `cut` bytes of text.
    fn trim(&mut self, cut: usize) {
        let first_kept = self.runs.partition_point(|&(t0, _)| t0 <= cut) - 1;
        let (t0, o0) = self.runs[first_kept];
        self.runs.drain(..first_kept);
        self.runs[0] = (cut, o0 + (cut - t0) as u64);
        for run in &mut self.runs {
            run.0 -= cut;
        }
        self.text.drain(..cut);
    }

    /// Output gone missing (the reader lagged): no match may span the gap.
    fn clear(&mut self) {
        self.text.clear();
        self.runs.clear();
    }

    /// The output offset of text byte `index`.
    fn offset_of(&self, index: usize) -> u64 {
        let run = self.runs.partition_point(|&(t0, _)| t0 <= index) - 1;
        let (t0, o0) = self.runs[run];
        o0 + (index - t0) as u64
    }

    /// The first match, given that the output read so far ends at `end`.
    fn find(&self, pattern: &Pattern, end: u64) -> Option<WaitResult> {
        let (span, groups) = pattern.find(&self.text)?;
        let at = |index: usize| {
            if index < self.text.len() {
                self.offset_of(index)
            } else {
                end
            }
        };
        let offset = at(span.start);
        let end_offset = if span.is_empty() {
            offset
        } else {
            self.offset_of(span.end - 1) + 1
        };
        Some(WaitResult {
            matched: String::from_utf8_lossy(&self.text[span]).into_owned(),
            offset,
            end_offset: Some(end_offset),
            row: None,
            groups,
        })
    }
}

impl Session {
    /// Waits up to `timeout` until `pattern` matches the output after `since` (default: the
    /// current end) or the current screen.
    pub async fn wait_for_output(
        self: &Arc<Self>,
        pattern: &Pattern,
        since: Option<u64>,
        on: WaitOn,
        timeout: Duration,
    ) -> Result<WaitResult, SessionError> {
        if timeout > MAX_TIMEOUT {
            return Err(SessionError::InvalidParam {
                field: "timeout_ms",
                reason: format!(
                    "{} is more than {}",
                    timeout.as_millis(),
                    MAX_TIMEOUT.as_millis()
                ),
            });
        }
        let head = self.output().head();
        let mut cursor = since.unwrap_or(head);
        if cursor > head {
            return Err(SessionError::InvalidParam {
                field: "since",
                reason: format!("offset {cursor} is beyond the end of the output ({head})"),
            });
        }
        let waited = match on {
            WaitOn::Stream => {
                tokio::time::timeout(timeout, self.match_stream(pattern, &mut cursor)).await
            }
            WaitOn::Screen => {
                tokio::time::timeout(timeout, self.match_screen(pattern, &mut cursor)).await
            }
        };
        waited.unwrap_or(Err(SessionError::WaitTimeout {
            id: self.id(),
            timeout_ms: timeout.as_millis() as u64,
            offset: cursor,
        }))
    }

    /// Reads the output from `*cursor` on, matching as it comes; `*cursor` says how far it got.
    async fn match_stream(
        &self,
        pattern: &Pattern,
        cursor: &mut u64,
    ) -> Result<WaitResult, SessionError> {
        let mut window = Window::new();
        loop {
            // Seen before looking, so an append after the look wakes us.
            let seen = self.output().head();
            while let Some(chunk) = self.output().read_available(*cursor, OUTPUT_CHUNK) {
                if chunk.truncated {
                    window.clear();
                }
                window.push(chunk.offset, &chunk.data);
                *cursor = chunk.next_offset();
                if let Some(found) = window.find(pattern, *cursor) {
                    return Ok(found);
                }
                // A flood must not keep this task from its time limit or others from a turn.
                tokio::task::yield_now().await;
            }
            // The exit is published after the last append: nothing more can come.
            if self.exit().is_some() {
                return Err(self.ended_without_match());
            }
            tokio::select! {
                () = self.output().head_changed_from(seen) => {}
                () = self.ended_signal() => {}
            }
        }
    }

    /// Matches the screen now and after every change; `*cursor` is the screen's offset.
    async fn match_screen(
        &self,
        pattern: &Pattern,
        cursor: &mut u64,
    ) -> Result<WaitResult, SessionError> {
        let mut control = self.subscribe_control();
        loop {
            let published = self.output().head();
            let (offset, rendered) = self.output().render(false);
            *cursor = offset;
            let text = rendered.rows.join("\n");
            if let Some((span, groups)) = pattern.find(text.as_bytes()) {
                return Ok(WaitResult {
                    matched: text[span.clone()].to_owned(),
                    offset,
                    end_offset: None,
                    row: Some(
                        text.as_bytes()[..span.start]
                            .iter()
                            .filter(|&&b| b == b'\n')
                            .count(),
                    ),
                    groups,
                });
            }
            // The head is published before the screen model digests the bytes: when the
            // model is behind, look again once it has caught up, not at the next output.
            if offset < published {
                tokio::task::yield_now().await;
                continue;
            }
            if self.exit().is_some() {
                return Err(self.ended_without_match());
            }
            tokio::select! {
                () = self.output().head_changed_from(published) => {}
                () = self.ended_signal() => {}
                resized = control.recv() => if let Err(broadcast::error::RecvError::Closed) = resized {
                    return Err(self.ended_without_match());
                },
            }
        }
    }

    fn ended_without_match(&self) -> SessionError {
        SessionError::InvalidState {
            id: self.id(),
            op: "wait for output (it ended without a match)",
            state: SessionState::Stopped,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn window(chunks: &[(u64, &[u8])]) -> Window {
        let mut window = Window::new();
        for (offset, data) in chunks {
            window.push(*offset, data);
        }
        window
    }

    #[test]
    fn a_match_split_across_chunks_and_escapes_is_found_at_its_output_offsets() {
        let w = window(&[(100, b"$ ma"), (104, b"\x1b[1mke do"), (114, b"ne\r\n")]);
        let found = w.find(&Pattern::new("make (d\\w+)").unwrap(), 118).unwrap();
        assert_eq!(found.matched, "make done");
        assert_eq!(found.offset, 102);
        assert_eq!(found.end_offset, Some(116));
        assert_eq!(found.groups, [Some("done".to_owned())]);
    }

    #[test]
    fn an_empty_match_at_the_end_points_at_the_end() {
        let w = window(&[(0, b"ab\x1b[m")]);
        let found = w.find(&Pattern::new("$").unwrap(), 5).unwrap();
        assert_eq!((found.offset, found.end_offset), (5, Some(5)));
    }

    #[test]
    fn the_window_stays_bounded_and_keeps_offsets_right() {
        let mut w = Window::new();
        let line = [b'x'; 1000];
        let mut offset = 0;
        for _ in 0..200 {
            w.push(offset, &line);
            offset += 1000;
        }
        w.push(offset, b"\x1b[0mEND");
        assert!(w.text.len() <= WINDOW);
        let found = w.find(&Pattern::new("END").unwrap(), offset + 7).unwrap();
        assert_eq!(found.offset, offset + 4);
    }

    #[test]
    fn patterns_that_are_invalid_too_long_or_too_big_are_refused() {
        assert!(Pattern::new("(unclosed").is_err());
        assert!(Pattern::new(&"a".repeat(MAX_PATTERN + 1)).is_err());
        assert!(Pattern::new("\\w{1000}{1000}").is_err());
        assert!(Pattern::new(&format!("{}a{}", "(".repeat(100), ")".repeat(100))).is_err());
    }
}
