//! A session's output log: the raw ring (every byte by absolute offset), the screen model fed
//! in order, and the published head. Only the pump appends; readers copy at their own pace.
//!
//! Invariant built into the types: the screen model and the offset it has consumed up to sit
//! under one lock ([`ScreenState`]), so a snapshot and its offset always agree; the ring has a
//! lock of its own, so readers copying output never wait for the emulator.

use std::sync::{Mutex, MutexGuard};

use super::History;
use crate::signal::Head;
use crate::terminal::{Chunk, Loader, Rendered, Screen, Scrollback, history};
use pulsar_term::Hibernated;

/// The screen model and the output offset it has consumed up to.
struct ScreenState {
    screen: Model,
    /// Offset one past the last byte fed to `screen`.
    offset: u64,
}

/// The screen model, awake or, for an idle session, hibernated: kept as its exact
/// serialization (a few hundred bytes) and rebuilt on the next output, attach or read.
enum Model {
    /// Boxed: an awake screen is ~800 bytes before any line, which a sleeping one gives up.
    Awake(Box<Screen>),
    Asleep(Hibernated),
}

impl Model {
    /// The screen, woken first if it slept.
    fn awake(&mut self) -> &mut Screen {
        if let Model::Asleep(sleeping) = self {
            *self = Model::Awake(Box::new(sleeping.wake()));
        }
        match self {
            Model::Awake(screen) => screen,
            Model::Asleep(_) => unreachable!("woken just above"),
        }
    }
}

/// Output for the store: what arrived since the last save (capped), and the screen as of its
/// end.
pub(crate) struct SavedSlice {
    /// Absolute offset of `data[0]`.
    pub offset: u64,
    /// The bytes.
    pub data: Vec<u8>,
    /// One past the last byte the screen model has consumed (`offset + data.len()`).
    pub end: u64,
    /// Bytes that rebuild the screen model as of `end` exactly.
    pub screen: Vec<u8>,
}

/// The screen as it stands at `offset`, redrawn, with history rows first when asked.
pub(crate) struct Redraw {
    /// Bytes that draw it on a blank terminal.
    pub data: Vec<u8>,
    /// The live stream continues from here.
    pub offset: u64,
}

/// Ring, screen and head of one session.
pub(crate) struct OutputLog {
    ring: Mutex<Scrollback>,
    screen: Mutex<ScreenState>,
    /// The ring's head offset, published after every append.
    head: Head,
}

impl OutputLog {
    /// An empty log for a `size` terminal keeping `capacity` bytes, or one that continues
    /// `history` (offsets go on from where it ended, after its divider line).
    pub fn new(size: (u16, u16), capacity: usize, history: Option<History>) -> Self {
        let (cols, rows) = size;
        let mut screen = Screen::new(cols, rows);
        let ring = match history {
            None => Scrollback::new(capacity),
            Some(history) => {
                let mut ring = Scrollback::starting_at(capacity, history.offset);
                ring.push(&history.scrollback);
                screen.feed(&history.screen);
                ring.push(&history.divider);
                screen.feed(&history.divider);
                ring
            }
        };
        let head = ring.head();
        Self {
            ring: Mutex::new(ring),
            screen: Mutex::new(ScreenState {
                screen: Model::Awake(Box::new(screen)),
                offset: head,
            }),
            head: Head::new(head),
        }
    }

    fn ring(&self) -> MutexGuard<'_, Scrollback> {
        self.ring.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn screen_state(&self) -> MutexGuard<'_, ScreenState> {
        self.screen.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Appends `data`: [`Self::publish`], then [`Self::digest`].
    #[cfg(test)]
    pub fn append(&self, data: &[u8]) {
        let at = self.publish(data);
        self.digest(data, at);
    }

    /// The first half of an append: `data` goes into the ring and the new head is published,
    /// so readers may copy the bytes before the screen model has seen them. Returns the
    /// offset of `data[0]`.
    pub fn publish(&self, data: &[u8]) -> u64 {
        let (at, head) = {
            let mut ring = self.ring();
            let at = ring.push(data);
            (at, ring.head())
        };
        self.head.publish(head);
        at
    }

    /// The second half: the screen model digests `data`, published at `at`, unless it has
    /// caught up past some of it meanwhile ([`Self::catch_up`], for a snapshot or a resize).
    /// Only the pump publishes and digests, each chunk once, in order.
    pub fn digest(&self, data: &[u8], at: u64) {
        let mut state = self.screen_state();
        let end = at + data.len() as u64;
        if state.offset < end {
            let seen = state.offset.saturating_sub(at) as usize;
            state.screen.awake().feed(&data[seen..]);
            state.offset = end;
        }
    }

    /// Brings the screen model up to the ring's head from the ring itself, so that what is
    /// drawn or resized next follows every byte published. A ring too small to still hold
    /// the bytes (a flood read larger than `scrollback_bytes`) leaves them to the pump.
    fn catch_up(&self, state: &mut ScreenState) {
        let chunk = {
            let mut ring = self.ring();
            if state.offset >= ring.head() || state.offset < ring.start() {
                return;
            }
            let len = (ring.head() - state.offset) as usize;
            ring.read(state.offset, len)
        };
        state.screen.awake().feed(&chunk.data);
        state.offset = chunk.next_offset();
    }

    /// One past the last byte.
    pub fn head(&self) -> u64 {
        self.head.get()
    }

    /// The oldest offset still held.
    pub fn start(&self) -> u64 {
        self.ring().start()
    }

    /// Resolves once the head is other than `seen` (after an append).
    pub async fn head_changed_from(&self, seen: u64) {
        self.head.changed_from(seen).await;
    }

    /// Up to `max` bytes from `from` (see [`Scrollback::read`]: a `from` older than the ring
    /// holds reads from the oldest byte and says it was truncated).
    pub fn read(&self, from: u64, max: usize) -> Chunk {
        self.ring().read(from, max)
    }

    /// Like [`Self::read`], but `None` when there is nothing at or after `from` yet.
    pub fn read_available(&self, from: u64, max: usize) -> Option<Chunk> {
        let mut ring = self.ring();
        (from < ring.head()).then(|| ring.read(from, max))
    }

    /// The bytes from `since` (or, if more, the last `max` of them) up to where the screen
    /// model has got, with the screen as of there: its exact serialization (both screens,
    /// saved cursors, modes, margins, tab stops, an unfinished escape sequence), so that a
    /// model rebuilt from it after a restart goes on exactly as this one would.
    pub fn saved_slice(&self, since: u64, max: usize) -> SavedSlice {
        let (end, screen) = {
            let mut state = self.screen_state();
            let offset = state.offset;
            // A sleeping screen is its serialization already: no need to wake it.
            let bytes = match &mut state.screen {
                Model::Asleep(sleeping) => sleeping.as_bytes().to_vec(),
                Model::Awake(screen) => screen.serialize(),
            };
            (offset, bytes)
        };
        let from = since.max(end.saturating_sub(max as u64));
        let chunk = self.read(from, end.saturating_sub(from) as usize);
        SavedSlice {
            offset: chunk.offset,
            data: chunk.data,
            end,
            screen,
        }
    }

    /// The bytes that redraw the current screen of a `cols`×`rows` terminal, with
    /// `history_lines` rows of history pushed into the client's scrollback first.
    pub fn redraw(&self, (cols, rows): (u16, u16), history_lines: usize) -> Redraw {
        let (offset, mut data) = {
            let mut state = self.screen_state();
            self.catch_up(&mut state);
            (state.offset, state.screen.awake().redraw())
        };
        if history_lines > 0 {
            let raw = {
                let mut ring = self.ring();
                let start = ring.start();
                ring.read(start, offset.saturating_sub(start) as usize).data
            };
            // Rendered outside the locks: the pump must not wait for history rendering.
            let mut with_history = history(&raw, cols, rows, history_lines);
            with_history.extend(std::iter::repeat_n(b'\n', usize::from(rows)));
            with_history.append(&mut data);
            data = with_history;
        }
        Redraw { data, offset }
    }

    /// The current screen as rows of text (`ansi`: with SGR sequences), and its offset.
    pub fn render(&self, ansi: bool) -> (u64, Rendered) {
        let mut state = self.screen_state();
        self.catch_up(&mut state);
        (state.offset, state.screen.awake().render(ansi))
    }

    /// Puts the screen model to sleep (an idle session): its grid gives way to its exact
    /// serialization until it is needed again. Returns the bytes it then holds.
    pub fn hibernate(&self) -> usize {
        let mut state = self.screen_state();
        self.catch_up(&mut state);
        // A 1x1 screen holds nothing (lines are allocated as written): a cheap placeholder.
        let model = std::mem::replace(&mut state.screen, Model::Awake(Box::new(Screen::new(1, 1))));
        let sleeping = match model {
            Model::Awake(screen) => (*screen).hibernate(),
            Model::Asleep(sleeping) => sleeping,
        };
        let held = sleeping.len();
        state.screen = Model::Asleep(sleeping);
        held
    }

    /// True while the screen model sleeps.
    pub fn is_hibernated(&self) -> bool {
        matches!(self.screen_state().screen, Model::Asleep(_))
    }

    /// The ring's resident bytes that a release could give up: from the later of `from` and
    /// the ring's start, to the head (`None` if some are released already).
    pub fn releasable(&self, from: u64) -> Option<std::ops::Range<u64>> {
        let ring = self.ring();
        (ring.released_len() == 0).then(|| from.max(ring.start())..ring.head())
    }

    /// Releases the ring's newest bytes, `saved` (saved from offset `from`), if they are still
    /// exactly its tail: nothing was written since and the store holds them as they are.
    /// `load` reads them back when a read reaches them or the session writes again. Returns
    /// how many bytes were released.
    pub fn release_saved(&self, from: u64, saved: &[u8], load: Loader) -> usize {
        let mut ring = self.ring();
        let head = ring.head();
        if from + saved.len() as u64 != head {
            return 0;
        }
        let start = from.max(ring.start());
        if start >= head || !ring.tail_equals(&saved[(start - from) as usize..]) {
            return 0;
        }
        ring.release_tail(start, load)
    }

    /// How many of the ring's bytes are released to the store now.
    pub fn released(&self) -> u64 {
        self.ring().released_len()
    }

    /// Resizes the terminal with `resize` (the PTY's ioctl, the SSH window change) and the
    /// screen model with it, after every byte published before (written for the old size).
    /// The model's lock is held across both: the program learns the new size only from the
    /// ioctl, so its redraw for it is digested (by the pump, on another thread) only once
    /// the model has the new size too. Without that, a redraw read between the ioctl and the
    /// model's resize was drawn into the old size (seen as vim's first line lost).
    pub fn resize<E>(
        &self,
        (cols, rows): (u16, u16),
        resize: impl FnOnce() -> Result<(), E>,
    ) -> Result<(), E> {
        let mut state = self.screen_state();
        self.catch_up(&mut state);
        resize()?;
        state.screen.awake().resize(cols, rows);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn published_bytes_can_be_read_before_the_screen_has_digested_them() {
        let log = OutputLog::new((20, 3), 1024, None);
        let at = log.publish(b"hello");
        assert_eq!(log.read_available(0, 64).unwrap().data, b"hello");
        assert_eq!(
            log.screen_state().offset,
            0,
            "the screen has not seen the bytes yet"
        );
        log.digest(b"hello", at);
        let (offset, screen) = log.render(false);
        assert_eq!((offset, screen.rows[0].as_str()), (5, "hello"));
    }

    #[test]
    fn a_snapshot_between_publish_and_digest_shows_every_byte_published_once() {
        let log = OutputLog::new((20, 3), 1024, None);
        log.append(b"first\r\n");
        let at = log.publish(b"second");
        // A client attaching now: the screen caught up to the head, the stream from there.
        let redraw = log.redraw((20, 3), 0);
        assert_eq!(redraw.offset, 13);
        let mut client = Screen::new(20, 3);
        client.feed(&redraw.data);
        assert_eq!(client.render(false).rows[1], "second");
        // The pump's digest of bytes the screen caught up with changes nothing.
        log.digest(b"second", at);
        assert_eq!(log.render(false).1.rows[1], "second");
        assert_eq!(log.render(false).0, 13);
    }

    #[test]
    fn a_resize_applies_after_the_bytes_published_before_it() {
        let log = OutputLog::new((10, 3), 1024, None);
        // Written for 10 columns: wraps after "j".
        let at = log.publish(b"abcdefghijkl");
        log.resize((20, 3), || Ok::<(), ()>(())).unwrap();
        log.digest(b"abcdefghijkl", at);
        let rows = log.render(false).1.rows;
        assert_eq!((rows[0].as_str(), rows[1].as_str()), ("abcdefghij", "kl"));
    }

    #[test]
    fn a_redraw_for_the_new_size_is_digested_only_once_the_model_has_it() {
        let log = std::sync::Arc::new(OutputLog::new((10, 2), 1024, None));
        // The program's redraw for 20x2, read by the pump (on another thread) right after
        // the ioctl that told the program the new size.
        let pump = std::sync::Mutex::new(None);
        log.resize((20, 2), || {
            let log = std::sync::Arc::clone(&log);
            *pump.lock().unwrap() = Some(std::thread::spawn(move || {
                let at = log.publish(b"abcdefghijklmnop");
                log.digest(b"abcdefghijklmnop", at);
            }));
            // Whatever the pump does meanwhile, its digest waits for the model's resize.
            std::thread::sleep(std::time::Duration::from_millis(20));
            Ok::<(), ()>(())
        })
        .unwrap();
        pump.into_inner().unwrap().unwrap().join().unwrap();
        assert_eq!(log.render(false).1.rows[0], "abcdefghijklmnop");
    }

    #[test]
    fn a_failed_resize_leaves_the_model_as_it_was() {
        let log = OutputLog::new((10, 2), 1024, None);
        assert_eq!(
            log.resize((20, 2), || Err("no terminal")),
            Err("no terminal")
        );
        log.append(b"abcdefghijklmnop");
        assert_eq!(log.render(false).1.rows[0], "abcdefghij");
    }

    #[test]
    fn a_ring_too_small_for_the_read_leaves_the_bytes_to_the_pump() {
        let log = OutputLog::new((80, 3), 8, None);
        let at = log.publish(b"0123456789abcdef");
        // The ring kept only the last 8 bytes: no catching up from it.
        assert_eq!(log.render(false).0, 0);
        log.digest(b"0123456789abcdef", at);
        assert_eq!(log.render(false).1.rows[0], "0123456789abcdef");
    }
}
