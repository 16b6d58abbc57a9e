//! Checkpointing: each session's new output (a chunk), screen and activity, saved once per
//! `persist_interval_ms`, so that a crash loses at most about one interval of output; and,
//! once a session hibernates, its scrollback given back to the store that holds it.

use std::collections::HashMap;
use std::ops::Range;
use std::sync::{Arc, Mutex};

use pulsar_protocol::SessionId;

use crate::session::{Session, SessionManager};
use crate::store::{OutputDelta, Store};
use crate::terminal::Loader;

/// What was last handed to the store for a session, to save only what changed.
#[derive(Debug, Clone, Copy, Default)]
struct Saved {
    output_offset: u64,
    last_active: i64,
    /// The head at which the database's copy of its newest output differed from the ring's:
    /// not read again until the head moves.
    release_failed_at: Option<u64>,
}

/// Saves what changed in each session since its last checkpoint.
pub(crate) struct Checkpointer {
    store: Store,
    /// Most output bytes kept per session (`persist_scrollback_bytes`; 0: offsets only).
    max_bytes: usize,
    saved: Mutex<HashMap<SessionId, Saved>>,
}

impl Checkpointer {
    /// A checkpointer saving into `store`, keeping up to `max_bytes` of output per session.
    pub fn new(store: Store, max_bytes: usize) -> Self {
        Self {
            store,
            max_bytes,
            saved: Mutex::new(HashMap::new()),
        }
    }

    fn saved(&self) -> std::sync::MutexGuard<'_, HashMap<SessionId, Saved>> {
        self.saved.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records that a restored session's output up to `output_offset` is already stored.
    pub fn already_saved(&self, id: SessionId, output_offset: u64, last_active: i64) {
        self.saved().insert(
            id,
            Saved {
                output_offset,
                last_active,
                release_failed_at: None,
            },
        );
    }

    /// Saves every session that changed.
    pub fn checkpoint(&self, sessions: &SessionManager) {
        for session in sessions.all() {
            self.checkpoint_one(&session);
        }
    }

    /// Like [`Checkpointer::checkpoint`] for one of `slices` groups of sessions (by id), so
    /// that a periodic checkpoint becomes many small transactions instead of one large one
    /// that every other write would queue behind. Forgets sessions no longer in the table.
    pub fn checkpoint_slice(&self, sessions: &SessionManager, slice: u64, slices: u64) {
        let all = sessions.all();
        if slice == 0 {
            let live: std::collections::HashSet<SessionId> = all.iter().map(|s| s.id()).collect();
            self.saved().retain(|id, _| live.contains(id));
        }
        for session in all {
            if (session.id().as_u128() % u128::from(slices)) as u64 == slice {
                self.checkpoint_one(&session);
            }
        }
    }

    /// Gives the scrollback of hibernated sessions back to the store where it is saved: for
    /// each whose output is all saved, the newest bytes the store holds, as read back from it
    /// and found equal, leave the ring (read back on the next read or output). Blocking:
    /// reads the store. Returns how many sessions released and how many bytes.
    pub fn release_hibernated(&self, sessions: &SessionManager) -> (usize, u64) {
        if self.max_bytes == 0 {
            return (0, 0);
        }
        let mut released = (0, 0);
        for session in sessions.all() {
            let id = session.id();
            let head = session.output_offset();
            let Some(saved) = self.saved().get(&id).copied() else {
                continue;
            };
            if !session.is_hibernated()
                || saved.output_offset != head
                || saved.release_failed_at == Some(head)
            {
                continue;
            }
            let Some(range) =
                session.releasable_scrollback(head.saturating_sub(self.max_bytes as u64))
            else {
                continue;
            };
            if range.is_empty() {
                continue;
            }
            let (from, bytes) = match self.store.saved_run(id, range.start, range.end) {
                Ok(run) => run,
                Err(err) => {
                    tracing::warn!(session = %id, "cannot read saved output to release its scrollback: {err}");
                    continue;
                }
            };
            if bytes.is_empty() {
                // Nothing saved ends at the head yet (its last save is not committed): the
                // next pass looks again.
                continue;
            }
            let store = self.store.clone();
            let load: Loader = Arc::new(move |wanted: Range<u64>| {
                let (from, bytes) = store
                    .saved_run(id, wanted.start, wanted.end)
                    .map_err(|err| format!("session {id}: {err}"))?;
                if from != wanted.start {
                    return Err(format!(
                        "session {id}: the database holds its output from offset {from}, not {}",
                        wanted.start
                    ));
                }
                Ok(bytes)
            });
            let n = session.release_saved_scrollback(from, &bytes, load);
            if n == 0 {
                if let Some(saved) = self.saved().get_mut(&id) {
                    saved.release_failed_at = Some(head);
                }
            } else {
                tracing::trace!(session = %id, from, bytes = n, "scrollback released to the store");
                released.0 += 1;
                released.1 += n as u64;
            }
        }
        released
    }

    fn checkpoint_one(&self, session: &Session) {
        let id = session.id();
        let head = session.output_offset();
        let last_active = session.last_active_ms();
        let before = self.saved().get(&id).copied().unwrap_or_default();
        let mut after = before;
        if head != before.output_offset {
            let now = chrono::Utc::now().timestamp_millis();
            let delta = match self.max_bytes {
                // Opted out: only the offset, so that offsets continue after a restart.
                0 => OutputDelta {
                    session_id: id,
                    time: now,
                    offset: head,
                    data: Vec::new(),
                    keep_from: head,
                    head,
                    screen: None,
                },
                max => {
                    let slice = session.saved_slice(before.output_offset, max);
                    OutputDelta {
                        session_id: id,
                        time: now,
                        offset: slice.offset,
                        data: slice.data,
                        keep_from: slice.end.saturating_sub(max as u64),
                        head: slice.end,
                        screen: Some(slice.screen),
                    }
                }
            };
            let head = delta.head;
            // A full queue puts the save off: the next checkpoint sends it from the same
            // offset (the bytes are still in the ring, or the gap is recorded as such).
            if self.store.save_output(delta) {
                after.output_offset = head;
            }
        }
        if last_active != before.last_active && self.store.touch(id, last_active) {
            after.last_active = last_active;
        }
        self.saved().insert(id, after);
    }
}
