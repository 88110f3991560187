//! Fixed-length bitsets over a file's pages, searched a word at a time.

/// A fixed-length set of page indexes.
#[derive(Debug, Clone)]
pub(super) struct Bits {
    words: Vec<u64>,
}

/// The bits `[i, end)` of word `k`'s range as a mask (`i` and `end` within it).
fn mask(i: u64, end: u64) -> u64 {
    let bit = i % 64;
    let n = end - i;
    if n == 64 {
        u64::MAX
    } else {
        ((1u64 << n) - 1) << bit
    }
}

impl Bits {
    pub(super) fn empty(len: u64) -> Self {
        Bits {
            words: vec![0; len.div_ceil(64) as usize],
        }
    }

    pub(super) fn full(len: u64) -> Self {
        let mut b = Bits::empty(len);
        b.set_range(0, len);
        b
    }

    pub(super) fn get(&self, i: u64) -> bool {
        self.words[(i / 64) as usize] & (1 << (i % 64)) != 0
    }

    pub(super) fn set(&mut self, i: u64) {
        self.words[(i / 64) as usize] |= 1 << (i % 64);
    }

    /// Apply `f` to the words of `[first, end)` with the mask of each.
    fn each_word(&mut self, first: u64, end: u64, f: impl Fn(&mut u64, u64)) {
        let mut i = first;
        while i < end {
            let n = (64 - i % 64).min(end - i);
            f(&mut self.words[(i / 64) as usize], mask(i, i + n));
            i += n;
        }
    }

    /// Set `[first, end)`, a word at a time.
    pub(super) fn set_range(&mut self, first: u64, end: u64) {
        self.each_word(first, end, |w, m| *w |= m);
    }

    /// Clear `[first, end)`, a word at a time.
    pub(super) fn clear_range(&mut self, first: u64, end: u64) {
        self.each_word(first, end, |w, m| *w &= !m);
    }

    pub(super) fn count(&self) -> u64 {
        self.words.iter().map(|w| u64::from(w.count_ones())).sum()
    }
}

/// The first index `>= from` set in `a` and clear in `b` (same lengths).
pub(super) fn first_in_a_not_b(a: &Bits, b: &Bits, from: u64) -> Option<u64> {
    let mut k = (from / 64) as usize;
    let mut mask = u64::MAX.checked_shl((from % 64) as u32).unwrap_or(0);
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

/// The end of the run of indexes from `from` that are set in `a` and clear
/// in `b`, stopping at `limit` (at most the sets' length): the first index
/// in `[from, limit)` that is not, or `limit`.
pub(super) fn run_in_a_not_b(a: &Bits, b: &Bits, from: u64, limit: u64) -> u64 {
    let mut i = from;
    while i < limit {
        let k = (i / 64) as usize;
        let w = !(a.words[k] & !b.words[k]) >> (i % 64);
        if w != 0 {
            return (i + u64::from(w.trailing_zeros())).min(limit);
        }
        i = (k as u64 + 1) * 64;
    }
    limit
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
        b.set_range(1, 3);
        assert_eq!(b.words, vec![0b110]);
    }

    #[test]
    fn runs_end_at_the_first_page_not_wanted_or_at_the_limit() {
        let a = Bits::full(300);
        let mut b = Bits::empty(300);
        assert_eq!(run_in_a_not_b(&a, &b, 0, 300), 300);
        assert_eq!(run_in_a_not_b(&a, &b, 10, 20), 20);
        b.set(130);
        assert_eq!(run_in_a_not_b(&a, &b, 5, 300), 130);
        assert_eq!(run_in_a_not_b(&a, &b, 130, 300), 130);
        assert_eq!(run_in_a_not_b(&a, &b, 131, 300), 300);
        b.set(63);
        assert_eq!(run_in_a_not_b(&a, &b, 0, 300), 63);
        assert_eq!(run_in_a_not_b(&a, &b, 64, 300), 130);
    }
}
