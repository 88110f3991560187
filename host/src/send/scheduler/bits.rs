//! Fixed-length bitsets over a file's blocks, searched a word at a time.

/// A fixed-length set of block indexes.
#[derive(Debug, Clone)]
pub(super) struct Bits {
    words: Vec<u64>,
}

impl Bits {
    pub(super) fn empty(len: u64) -> Self {
        Bits {
            words: vec![0; len.div_ceil(64) as usize],
        }
    }

    pub(super) fn full(len: u64) -> Self {
        let mut b = Bits {
            words: vec![u64::MAX; len.div_ceil(64) as usize],
        };
        let tail = len % 64;
        if tail != 0 {
            if let Some(last) = b.words.last_mut() {
                *last = (1u64 << tail) - 1;
            }
        }
        b
    }

    pub(super) fn get(&self, i: u64) -> bool {
        self.words[(i / 64) as usize] & (1 << (i % 64)) != 0
    }

    pub(super) fn set(&mut self, i: u64) {
        self.words[(i / 64) as usize] |= 1 << (i % 64);
    }

    pub(super) fn clear(&mut self, i: u64) {
        self.words[(i / 64) as usize] &= !(1 << (i % 64));
    }

    /// Clear `[first, end)`, a word at a time.
    pub(super) fn clear_range(&mut self, first: u64, end: u64) {
        let mut i = first;
        while i < end {
            let bit = i % 64;
            let n = (64 - bit).min(end - i);
            let mask = if n == 64 {
                u64::MAX
            } else {
                ((1u64 << n) - 1) << bit
            };
            self.words[(i / 64) as usize] &= !mask;
            i += n;
        }
    }

    pub(super) fn count(&self) -> u64 {
        self.words.iter().map(|w| u64::from(w.count_ones())).sum()
    }
}

/// The first index `>= from` set in `a` and clear in `b` (same lengths).
pub(super) fn first_in_a_not_b(a: &Bits, b: &Bits, from: u64) -> Option<u64> {
    let mut k = (from / 64) as usize;
    let mut mask = u64::MAX << (from % 64);
    while k < a.words.len() {
        let w = a.words[k] & !b.words[k] & mask;
        if w != 0 {
            return Some(k as u64 * 64 + u64::from(w.trailing_zeros()));
        }
        mask = u64::MAX;
        k += 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bitset_edges() {
        let mut b = Bits::full(130);
        assert_eq!(b.count(), 130);
        b.clear_range(0, 130);
        assert_eq!(b.count(), 0);
        let mut b = Bits::full(200);
        b.clear_range(3, 197);
        assert_eq!(b.count(), 6);
        assert!(b.get(2) && !b.get(3) && !b.get(196) && b.get(197));
        let e = Bits::empty(200);
        assert_eq!(first_in_a_not_b(&b, &e, 3), Some(197));
        assert_eq!(first_in_a_not_b(&b, &b, 0), None);
        assert_eq!(first_in_a_not_b(&b, &e, 200), None);
        let mut b = Bits::full(64);
        assert_eq!(b.words, vec![u64::MAX]);
        b.clear_range(0, 64);
        assert_eq!(b.words, vec![0]);
    }
}
