//! `export_asciicast`: a recording made after the fact from a session's saved output, each
//! chunk timed by when it was saved, and what its ring holds beyond the last save.

use std::sync::Arc;

use chrono::Utc;

use crate::session::{Session, SessionError, cast_of};
use crate::store::Store;

/// The asciicast v2 text of `session`'s output between offsets `since` (default: the oldest
/// byte kept) and `until` (default: the end).
pub(crate) async fn export_asciicast(
    store: &Store,
    session: &Arc<Session>,
    since: Option<u64>,
    until: Option<u64>,
) -> Result<String, SessionError> {
    let head = session.output_offset();
    let until = until.unwrap_or(head);
    let since = since.unwrap_or(0);
    if until > head {
        return Err(SessionError::InvalidParam {
            field: "until",
            reason: format!("offset {until} is beyond the end of the output ({head})"),
        });
    }
    if since > until {
        return Err(SessionError::InvalidParam {
            field: "since",
            reason: format!("offset {since} is after until ({until})"),
        });
    }
    let id = session.id();
    let saved = {
        let store = store.clone();
        tokio::task::spawn_blocking(move || store.saved_output(id))
            .await
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic.into_panic()))
    };
    let saved = saved.unwrap_or_else(|err| {
        // The ring still has the recent output: export that rather than nothing.
        tracing::warn!(session = %id, "export_asciicast: reading the saved output failed: {err}");
        Vec::new()
    });
    // Chunks saved before they were timed start at the session's creation.
    let untimed = session.created_at().timestamp_millis();
    let clip = |offset: u64, data: &[u8]| -> Vec<u8> {
        let start = since.max(offset).min(offset + data.len() as u64);
        let end = until.min(offset + data.len() as u64).max(start);
        data[(start - offset) as usize..(end - offset) as usize].to_vec()
    };
    let mut chunks = Vec::new();
    let mut covered = since;
    for chunk in saved {
        let end = chunk.offset + chunk.data.len() as u64;
        // Only what follows what was taken already: a later save may repeat a tail.
        if end <= covered || chunk.offset >= until {
            continue;
        }
        let from = chunk.offset.max(covered);
        let data = clip(from, &chunk.data[(from - chunk.offset) as usize..]);
        covered = from + data.len() as u64;
        chunks.push((chunk.time.unwrap_or(untimed), data));
    }
    if covered < until {
        // Not saved yet: timed now, when the export sees it.
        let tail = session.saved_slice(covered, usize::MAX);
        chunks.push((Utc::now().timestamp_millis(), clip(tail.offset, &tail.data)));
    }
    chunks.retain(|(_, data)| !data.is_empty());
    Ok(cast_of(session.size(), &chunks))
}
