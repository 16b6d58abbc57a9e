//! The scrollback ring: a session's most recent output bytes, addressed by absolute offset.
//!
//! Every byte a session ever produced has an offset (0, 1, 2, ...). The ring keeps the last
//! `capacity` of them; readers ask from an offset and learn when what they asked for is gone.
//! Memory is allocated as the ring fills, so an idle session costs almost nothing.

use std::collections::VecDeque;

/// A bounded window onto a session's output.
#[derive(Debug)]
pub struct Scrollback {
    bytes: VecDeque<u8>,
    /// Absolute offset of `bytes[0]`.
    start: u64,
    capacity: usize,
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
        }
    }

    /// Offset of the oldest byte still held.
    pub fn start(&self) -> u64 {
        self.start
    }

    /// Offset one past the newest byte: the total ever written.
    pub fn head(&self) -> u64 {
        self.start + self.bytes.len() as u64
    }

    /// Appends `data`, dropping the oldest bytes beyond capacity. Returns the offset of
    /// `data[0]`.
    pub fn push(&mut self, data: &[u8]) -> u64 {
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

    /// Reads up to `max` bytes from absolute offset `from` (clamped into the ring).
    pub fn read(&self, from: u64, max: usize) -> Chunk {
        let truncated = from < self.start;
        let from = from.clamp(self.start, self.head());
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
    fn contents(&self) -> Vec<u8> {
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
}
