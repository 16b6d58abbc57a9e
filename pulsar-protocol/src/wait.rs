//! `wait_for_output`: waiting until a session's output (or its screen) matches a regular
//! expression, instead of polling and grepping.

use serde::{Deserialize, Serialize};

/// What `wait_for_output` matches its pattern against.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WaitOn {
    /// The output after `since`, as text: escape sequences and control characters other than
    /// newline and tab removed, chunk boundaries invisible.
    #[default]
    Stream,
    /// The current screen's rows (as `get_screen` gives them), joined with newlines.
    Screen,
}

/// `wait_for_output`'s answer: the first match.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WaitResult {
    /// The text the pattern matched (lossy UTF-8).
    pub matched: String,
    /// `stream`: the output offset of the match's first byte. `screen`: the output offset
    /// the matched screen corresponds to.
    pub offset: u64,
    /// `stream`: one past the output offset of the match's last byte; pass it as `since` to
    /// wait for the next match. Absent for `screen`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_offset: Option<u64>,
    /// `screen`: the zero-based row the match starts on. Absent for `stream`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub row: Option<usize>,
    /// The pattern's capture groups 1.., `null` for a group that took no part in the match.
    #[serde(default)]
    pub groups: Vec<Option<String>>,
}
