//! The scrollback ring: a session's most recent output bytes, addressed by absolute offset.
//!
//! Every byte a session ever produced has an offset (0, 1, 2, ...). The ring keeps the last
//! `capacity` of them; readers ask from an offset and learn when what they asked for is gone.
//! Memory is allocated as the ring fills, so an idle session costs almost nothing.
//!
//! A sleeping session's ring may give its newest bytes up to where they are saved (the
//! store): [`Scrollback::release_tail`]. They come back, through the [`Loader`] given then,
//! on the first read that reaches them or the next push, so offsets and contents read the
//! same whether released or not.

use std::collections::VecDeque;
use std::ops::Range;
use std::sync::Arc;

/// Reads released bytes back: exactly the offsets asked for, or why it cannot.
pub type Loader = Arc<dyn Fn(Range<u64>) -> Result<Vec<u8>, String> + Send + Sync>;

/// A bounded window onto a session's output.
pub struct Scrollback {
    /// The resident bytes: from `start` up to the released tail (or the head).
    bytes: VecDeque<u8>,
    /// Absolute offset of `bytes[0]`.
    start: u64,
    capacity: usize,
    /// The newest bytes, held by the store instead while the session sleeps. Boxed: rare.
    released: Option<Box<Released>>,
}

/// A released tail: how long, and where to read it back from.
struct Released {
    len: u64,
    load: Loader,
}

impl std::fmt::Debug for Scrollback {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scrollback")
            .field("start", &self.start)
            .field("resident", &self.bytes.len())
            .field("released", &self.released_len())
            .field("capacity", &self.capacity)
            .finish()
    }
}

/// What a read returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chunk {
    /// Absolute offset of `data[0]`.
    pub offset: u64,
    /// The bytes.
    pub data: Vec<u8>,
    /// True when the read asked for bytes that had already left the ring, so `offset` is later
    /// than the offset asked for.
    pub truncated: bool,
}

impl Chunk {
    /// Offset one past the last byte.
    pub fn next_offset(&self) -> u64 {
        self.offset + self.data.len() as u64
    }
}

impl Scrollback {
    /// An empty ring that will hold at most `capacity` bytes.
    pub fn new(capacity: usize) -> Self {
        Self::starting_at(capacity, 0)
    }

    /// An empty ring whose first byte will have offset `start` (for restored sessions).
    pub fn starting_at(capacity: usize, start: u64) -> Self {
        Self {
            bytes: VecDeque::new(),
            start,
            capacity: capacity.max(1),
            released: None,
        }
    }

    /// Offset of the oldest byte still held.
    pub fn start(&self) -> u64 {
        self.start
    }

    /// Offset one past the newest byte: the total ever written.
    pub fn head(&self) -> u64 {
        self.resident_end() + self.released_len()
    }

    /// One past the last resident byte.
    fn resident_end(&self) -> u64 {
        self.start + self.bytes.len() as u64
    }

    /// How many of the newest bytes are released (0: all resident).
    pub fn released_len(&self) -> u64 {
        self.released.as_ref().map_or(0, |r| r.len)
    }

    /// True when the ring's last `tail.len()` bytes are resident and equal `tail`.
    pub fn tail_equals(&self, tail: &[u8]) -> bool {
        let len = tail.len();
        if self.released.is_some() || len > self.bytes.len() {
            return false;
        }
        let (a, b) = self.bytes.as_slices();
        let skip = self.bytes.len() - len;
        if skip >= a.len() {
            return b[skip - a.len()..] == *tail;
        }
        let in_a = a.len() - skip;
        a[skip..] == tail[..in_a] && b == &tail[in_a..]
    }

    /// Gives up the resident bytes from `from` to the head, which `load` can read back; the
    /// memory they held is freed. Returns how many were released (0 if some already were,
    /// or `from` is outside the resident bytes).
    pub fn release_tail(&mut self, from: u64, load: Loader) -> usize {
        if self.released.is_some() || from < self.start || from >= self.resident_end() {
            return 0;
        }
        let len = self.resident_end() - from;
        self.bytes.truncate((from - self.start) as usize);
        self.bytes.shrink_to_fit();
        self.released = Some(Box::new(Released { len, load }));
        len as usize
    }

    /// Reads a released tail back. If that fails, those bytes are lost: the ring then starts
    /// empty at the head (offsets go on; a reader asking for the lost ones is told they are
    /// gone, as for bytes that left the ring), and why is logged.
    fn wake(&mut self) {
        let Some(released) = self.released.take() else {
            return;
        };
        let from = self.resident_end();
        let head = from + released.len;
        let loaded = (released.load)(from..head).and_then(|bytes| {
            if bytes.len() as u64 == released.len {
                Ok(bytes)
            } else {
                Err(format!(
                    "{} bytes read back for the {} released",
                    bytes.len(),
                    released.len
                ))
            }
        });
        match loaded {
            Ok(bytes) => {
                self.grow_for(bytes.len());
                self.bytes.extend(bytes);
            }
            Err(err) => {
                tracing::error!(
                    from,
                    head,
                    "scrollback released to the store cannot be read back ({err}); \
                     the output before offset {head} is lost from the ring"
                );
                self.bytes = VecDeque::new();
                self.start = head;
            }
        }
    }

    /// Appends `data`, dropping the oldest bytes beyond capacity. Returns the offset of
    /// `data[0]`. A released tail is read back first.
    pub fn push(&mut self, data: &[u8]) -> u64 {
        self.wake();
        let offset = self.head();
        // Only the tail of an oversized write can be kept.
        let kept = &data[data.len().saturating_sub(self.capacity)..];
        let overflow = (self.bytes.len() + kept.len()).saturating_sub(self.capacity);
        // Skipped bytes of an oversized write count as dropped too.
        let skipped = (data.len() - kept.len()) as u64;
        self.bytes.drain(..overflow);
        self.start += overflow as u64 + skipped;
        self.grow_for(kept.len());
        self.bytes.extend(kept);
        offset
    }

    /// Makes room for `more` bytes: by half again of what is held (amortized, like a `Vec`'s
    /// doubling but with less slack), never past the ring's capacity. A plain `extend`
    /// doubled the buffer, so a ring could hold up to twice `capacity` (a soak of idle shells
    /// grew RSS by about twice their new output).
    fn grow_for(&mut self, more: usize) {
        let needed = self.bytes.len() + more;
        let have = self.bytes.capacity();
        if needed <= have {
            return;
        }
        let target = needed.max(have + have / 2).min(self.capacity).max(needed);
        self.bytes.reserve_exact(target - self.bytes.len());
    }

    /// Reads up to `max` bytes from absolute offset `from` (clamped into the ring). A read
    /// that reaches into a released tail reads it back first.
    pub fn read(&mut self, from: u64, max: usize) -> Chunk {
        let wanted = max.min(self.head().saturating_sub(from.max(self.start)) as usize);
        if wanted > 0 && from.max(self.start) + wanted as u64 > self.resident_end() {
            self.wake();
        }
        let truncated = from < self.start;
        let from = from.clamp(self.start, self.head());
        if from >= self.resident_end() {
            // At the head, or past a released tail nothing was asked of.
            return Chunk {
                offset: from,
                data: Vec::new(),
                truncated,
            };
        }
        let skip = (from - self.start) as usize;
        let take = max.min(self.bytes.len() - skip);
        let (a, b) = self.bytes.as_slices();
        let mut data = Vec::with_capacity(take);
        if skip < a.len() {
            let end = (skip + take).min(a.len());
            data.extend_from_slice(&a[skip..end]);
            data.extend_from_slice(&b[..take - (end - skip)]);
        } else {
            let s = skip - a.len();
            data.extend_from_slice(&b[s..s + take]);
        }
        Chunk {
            offset: from,
            data,
            truncated,
        }
    }

    /// Every byte held, oldest first.
    #[cfg(test)]
    fn contents(&mut self) -> Vec<u8> {
        self.read(self.start, self.bytes.len()).data
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_are_absolute_and_continuous() {
        let mut ring = Scrollback::new(1024);
        assert_eq!(ring.push(b"hello "), 0);
        assert_eq!(ring.push(b"world"), 6);
        assert_eq!(ring.head(), 11);
        let chunk = ring.read(6, 100);
        assert_eq!(chunk.data, b"world");
        assert_eq!(chunk.next_offset(), 11);
        assert!(!chunk.truncated);
    }

    #[test]
    fn oldest_bytes_leave_when_full_and_readers_are_told() {
        let mut ring = Scrollback::new(8);
        ring.push(b"abcdef");
        ring.push(b"ghij");
        assert_eq!(ring.start(), 2);
        assert_eq!(ring.contents(), b"cdefghij");
        let chunk = ring.read(0, 100);
        assert!(chunk.truncated);
        assert_eq!(chunk.offset, 2);
        assert_eq!(chunk.data, b"cdefghij");
    }

    #[test]
    fn oversized_write_keeps_its_tail_and_counts_every_byte() {
        let mut ring = Scrollback::new(4);
        ring.push(b"xy");
        assert_eq!(ring.push(b"0123456789"), 2);
        assert_eq!(ring.head(), 12);
        assert_eq!(ring.contents(), b"6789");
        assert_eq!(ring.start(), 8);
    }

    #[test]
    fn reads_across_the_wrap_point_are_contiguous() {
        let mut ring = Scrollback::new(8);
        for i in 0..20u8 {
            ring.push(&[i]);
        }
        let chunk = ring.read(13, 5);
        assert_eq!(chunk.data, vec![13, 14, 15, 16, 17]);
    }

    #[test]
    fn read_at_head_is_empty_and_read_past_head_is_clamped() {
        let mut ring = Scrollback::new(8);
        ring.push(b"abc");
        assert!(ring.read(3, 10).data.is_empty());
        let chunk = ring.read(99, 10);
        assert_eq!(chunk.offset, 3);
        assert!(chunk.data.is_empty());
    }

    #[test]
    fn memory_is_allocated_as_the_ring_fills() {
        let ring = Scrollback::new(1 << 20);
        assert_eq!(ring.bytes.capacity(), 0);
    }

    #[test]
    fn a_ring_never_holds_more_memory_than_its_capacity_nor_half_again_its_bytes() {
        let capacity = 100_000;
        let mut ring = Scrollback::new(capacity);
        let mut grew = 0;
        let mut last = 0;
        for _ in 0..2_000 {
            ring.push(&[b'x'; 97]);
            let held = ring.bytes.capacity();
            assert!(
                held <= capacity,
                "{held} bytes held for a ring of {capacity}"
            );
            assert!(
                held <= ring.bytes.len() * 3 / 2 + 97,
                "{held} for {}",
                ring.bytes.len()
            );
            if held != last {
                grew += 1;
                last = held;
            }
        }
        assert_eq!(ring.bytes.len(), capacity);
        // Amortized: a few dozen reallocations for 2,000 pushes, not one each.
        assert!(grew < 40, "{grew} reallocations");
    }

    /// A loader reading from `saved` (bytes by offset from 0), counting its calls.
    fn loader(saved: Vec<u8>, calls: Arc<std::sync::atomic::AtomicUsize>) -> Loader {
        Arc::new(move |range: Range<u64>| {
            calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            saved
                .get(range.start as usize..range.end as usize)
                .map(<[u8]>::to_vec)
                .ok_or_else(|| format!("{range:?} not saved"))
        })
    }

    #[test]
    fn a_released_tail_frees_its_memory_and_reads_back_the_same_bytes() {
        let mut ring = Scrollback::new(1 << 20);
        let all: Vec<u8> = (0..50_000u32).map(|i| (i % 251) as u8).collect();
        ring.push(&all);
        let calls = Arc::default();
        assert_eq!(
            ring.release_tail(0, loader(all.clone(), Arc::clone(&calls))),
            50_000
        );
        assert_eq!(ring.bytes.capacity(), 0, "the memory is given back");
        assert_eq!(
            (ring.start(), ring.head(), ring.released_len()),
            (0, 50_000, 50_000)
        );
        let chunk = ring.read(10_000, 100);
        assert_eq!(chunk.data, &all[10_000..10_100]);
        assert_eq!(ring.contents(), all);
        assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 1);
        assert_eq!(ring.released_len(), 0);
    }

    #[test]
    fn a_read_of_the_resident_bytes_or_at_the_head_leaves_the_tail_released() {
        let mut ring = Scrollback::new(1 << 20);
        ring.push(b"0123456789");
        let calls = Arc::default();
        ring.release_tail(4, loader(b"0123456789".to_vec(), Arc::clone(&calls)));
        assert_eq!(ring.read(0, 4).data, b"0123");
        let at_head = ring.read(10, 100);
        assert_eq!((at_head.offset, at_head.data.len()), (10, 0));
        assert_eq!(ring.read(6, 0).data, b"");
        assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 0);
        assert_eq!(ring.released_len(), 6);
        // One byte further does read it back.
        assert_eq!(ring.read(0, 5).data, b"01234");
        assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 1);
    }

    #[test]
    fn a_push_after_a_release_reads_the_tail_back_first() {
        let mut ring = Scrollback::new(16);
        ring.push(b"abcdefgh");
        ring.release_tail(2, loader(b"abcdefgh".to_vec(), Arc::default()));
        assert_eq!(ring.push(b"0123456789"), 8);
        assert_eq!((ring.start(), ring.head()), (2, 18));
        assert_eq!(ring.contents(), b"cdefgh0123456789");
    }

    #[test]
    fn a_tail_that_cannot_be_read_back_is_lost_and_the_ring_goes_on_at_the_head() {
        let mut ring = Scrollback::new(1024);
        ring.push(b"abcdefgh");
        // The store holds less than was released.
        ring.release_tail(0, loader(b"abc".to_vec(), Arc::default()));
        let chunk = ring.read(0, 100);
        assert!(chunk.truncated, "the reader is told the bytes are gone");
        assert_eq!((chunk.offset, chunk.data.len()), (8, 0));
        assert_eq!(ring.push(b"ij"), 8);
        assert_eq!(ring.read(0, 100).data, b"ij");
    }

    #[test]
    fn the_tail_is_compared_across_the_wrap_point() {
        let mut ring = Scrollback::new(8);
        for i in 0..13u8 {
            ring.push(&[i]);
        }
        assert!(ring.tail_equals(&[9, 10, 11, 12]));
        assert!(ring.tail_equals(&[5, 6, 7, 8, 9, 10, 11, 12]));
        assert!(!ring.tail_equals(&[9, 10, 11, 13]));
        assert!(!ring.tail_equals(&[4, 5, 6, 7, 8, 9, 10, 11, 12]));
        assert!(ring.tail_equals(&[]));
    }

    #[test]
    fn only_resident_bytes_are_released_and_only_once() {
        let mut ring = Scrollback::new(1024);
        ring.push(b"abcdefgh");
        let load = loader(b"abcdefgh".to_vec(), Arc::default());
        assert_eq!(
            ring.release_tail(8, Arc::clone(&load)),
            0,
            "nothing at the head"
        );
        assert_eq!(ring.release_tail(5, Arc::clone(&load)), 3);
        assert_eq!(ring.release_tail(2, load), 0, "already released");
        assert_eq!(ring.released_len(), 3);
    }

    #[test]
    fn releases_and_wakes_never_change_what_any_read_returns() {
        // A model of the ring: every byte ever written (by offset) and the oldest one kept.
        for seed in 1..=8u64 {
            let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15);
            let mut next = move |below: u64| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state % below.max(1)
            };
            let capacity = 64 + next(200) as usize;
            let written = Arc::new(std::sync::Mutex::new(Vec::<u8>::new()));
            let load: Loader = {
                let written = Arc::clone(&written);
                Arc::new(move |range: Range<u64>| {
                    Ok(written.lock().unwrap()[range.start as usize..range.end as usize].to_vec())
                })
            };
            let mut ring = Scrollback::new(capacity);
            let mut start = 0u64;
            for _ in 0..2_000 {
                let head = written.lock().unwrap().len() as u64;
                match next(3) {
                    0 => {
                        let len = next(capacity as u64 * 3 / 2) as usize;
                        let data: Vec<u8> = (0..len).map(|_| next(256) as u8).collect();
                        assert_eq!(ring.push(&data), head);
                        written.lock().unwrap().extend_from_slice(&data);
                        let head = head + len as u64;
                        start = start.max(head.saturating_sub(capacity as u64));
                    }
                    1 => {
                        let from = start + next(head - start + 1);
                        ring.release_tail(from, Arc::clone(&load));
                    }
                    _ => {
                        let from = (start + next(head - start + 20)).saturating_sub(10);
                        let max = next(capacity as u64 + 10) as usize;
                        let chunk = ring.read(from, max);
                        let at = from.clamp(start, head);
                        let end = (at + max as u64).min(head);
                        let want = &written.lock().unwrap()[at as usize..end as usize];
                        assert_eq!(
                            (chunk.offset, chunk.data.as_slice(), chunk.truncated),
                            (at, want, from < start),
                            "seed {seed}: read({from}, {max})"
                        );
                    }
                }
                assert_eq!(
                    (ring.start(), ring.head()),
                    (start, written.lock().unwrap().len() as u64)
                );
            }
        }
    }
}
