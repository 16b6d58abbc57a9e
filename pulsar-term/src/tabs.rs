//! Tab stops: the default of one every 8 columns costs nothing; custom stops are a bitset.
//! HTS sets one, TBC clears, HT/CHT/CBT move between them.

/// The tab stops of a screen `cols` wide.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub(crate) struct TabStops {
    /// `None` while every stop is at the default (every 8 columns).
    custom: Option<Vec<u64>>,
}

fn is_default_stop(x: usize) -> bool {
    x > 0 && x.is_multiple_of(8)
}

impl TabStops {
    pub(crate) fn is_stop(&self, x: usize) -> bool {
        match &self.custom {
            None => is_default_stop(x),
            Some(bits) => bits.get(x / 64).is_some_and(|w| w >> (x % 64) & 1 != 0),
        }
    }

    fn bits(&mut self, cols: usize) -> &mut Vec<u64> {
        self.custom.get_or_insert_with(|| {
            let mut bits = vec![0u64; cols.div_ceil(64)];
            for x in (8..cols).step_by(8) {
                bits[x / 64] |= 1 << (x % 64);
            }
            bits
        })
    }

    /// HTS.
    pub(crate) fn set(&mut self, x: usize, cols: usize) {
        if !self.is_stop(x) {
            self.bits(cols)[x / 64] |= 1 << (x % 64);
            self.normalize(cols);
        }
    }

    /// TBC 0.
    pub(crate) fn clear(&mut self, x: usize, cols: usize) {
        if self.is_stop(x) {
            self.bits(cols)[x / 64] &= !(1 << (x % 64));
            self.normalize(cols);
        }
    }

    /// TBC 3.
    pub(crate) fn clear_all(&mut self, cols: usize) {
        let bits = self.bits(cols);
        bits.iter_mut().for_each(|w| *w = 0);
    }

    /// After a width change: columns past the old width get default stops (as xterm).
    pub(crate) fn resize(&mut self, old: usize, cols: usize) {
        if let Some(bits) = &mut self.custom {
            bits.resize(cols.div_ceil(64), 0);
            for x in cols..bits.len() * 64 {
                bits[x / 64] &= !(1 << (x % 64));
            }
            for x in (old..cols).filter(|&x| is_default_stop(x)) {
                bits[x / 64] |= 1 << (x % 64);
            }
            self.normalize(cols);
        }
    }

    /// Drops the bitset when it says no more than the default does.
    fn normalize(&mut self, cols: usize) {
        if (0..cols).all(|x| self.is_stop(x) == is_default_stop(x)) {
            self.custom = None;
        }
    }

    /// The next stop after `x`, or the last column.
    pub(crate) fn next(&self, x: usize, cols: usize) -> usize {
        (x + 1..cols).find(|&c| self.is_stop(c)).unwrap_or(cols - 1)
    }

    /// The previous stop before `x`, or column 0.
    pub(crate) fn prev(&self, x: usize) -> usize {
        (1..x).rev().find(|&c| self.is_stop(c)).unwrap_or(0)
    }

    /// Columns that are stops, for the serializer (only when not the default).
    pub(crate) fn custom_stops(&self, cols: usize) -> Option<Vec<usize>> {
        self.custom
            .as_ref()
            .map(|_| (0..cols).filter(|&x| self.is_stop(x)).collect())
    }

    pub(crate) fn heap_bytes(&self) -> usize {
        self.custom.as_ref().map_or(0, |b| b.capacity() * 8)
    }
}
