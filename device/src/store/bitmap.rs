//! A fixed-size bitset (of pages, or of groups of pages), with the range
//! queries the store needs, one machine word at a time.
//!
//! Indexes past the end are errors ([`OutOfRange`]), never ignored: a page
//! number comes from the wire and a wrong one must not be silently dropped.

/// An index past the end of a bitmap.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("page {index} is past the end ({len} pages)")]
pub struct OutOfRange {
    pub index: u64,
    pub len: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bitmap {
    words: Vec<u64>,
    len: u64,
    ones: u64,
}

impl Bitmap {
    pub fn new(len: u64) -> Self {
        Bitmap {
            words: vec![0; len.div_ceil(64) as usize],
            len,
            ones: 0,
        }
    }

    /// A bitmap of `len` bits, every one set.
    pub fn full(len: u64) -> Self {
        let mut b = Bitmap::new(len);
        b.words.fill(u64::MAX);
        if !len.is_multiple_of(64) {
            if let Some(last) = b.words.last_mut() {
                *last = (1u64 << (len % 64)) - 1;
            }
        }
        b.ones = len;
        b
    }

    /// Build from bytes, bit `i` at bit `i % 8` of byte `i / 8` (the on-disk
    /// order); bits past `len` are ignored.
    pub fn from_bytes(bytes: &[u8], len: u64) -> Self {
        let mut b = Bitmap::new(len);
        b.or_bytes(0, bytes);
        b
    }

    /// Set the bits that on-disk bytes `bytes` hold, the first of them
    /// being byte `at` (a multiple of 8) of the bitmap; bits past the end
    /// are ignored. Reading a large bitmap in chunks this way never holds
    /// its bytes twice.
    pub fn or_bytes(&mut self, at: u64, bytes: &[u8]) {
        debug_assert!(at.is_multiple_of(8));
        let first_word = (at / 8) as usize;
        let (words, tail) = (self.words.len(), self.len % 64);
        for (k, chunk) in bytes.chunks(8).enumerate() {
            let Some(w) = self.words.get_mut(first_word + k) else {
                break;
            };
            let mut le = [0u8; 8];
            le[..chunk.len()].copy_from_slice(chunk);
            let old = *w;
            *w |= u64::from_le_bytes(le);
            if first_word + k + 1 == words && tail != 0 {
                *w &= (1u64 << tail) - 1;
            }
            self.ones += u64::from(w.count_ones()) - u64::from(old.count_ones());
        }
    }

    /// The on-disk bytes of bits `first_byte * 8 ..` for `n` bytes.
    pub fn bytes(&self, first_byte: u64, n: u64) -> Vec<u8> {
        (first_byte..first_byte + n)
            .map(|b| self.byte_of(b * 8))
            .collect()
    }

    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Number of set bits.
    pub fn count(&self) -> u64 {
        self.ones
    }

    pub fn is_full(&self) -> bool {
        self.ones == self.len
    }

    fn check(&self, index: u64) -> Result<(), OutOfRange> {
        if index < self.len {
            Ok(())
        } else {
            Err(OutOfRange {
                index,
                len: self.len,
            })
        }
    }

    pub fn get(&self, index: u64) -> Result<bool, OutOfRange> {
        self.check(index)?;
        Ok(self.words[(index / 64) as usize] & (1 << (index % 64)) != 0)
    }

    /// Set or clear a bit; returns its previous value.
    pub fn set(&mut self, index: u64, value: bool) -> Result<bool, OutOfRange> {
        let old = self.get(index)?;
        let w = &mut self.words[(index / 64) as usize];
        if value {
            *w |= 1 << (index % 64);
        } else {
            *w &= !(1 << (index % 64));
        }
        match (old, value) {
            (false, true) => self.ones += 1,
            (true, false) => self.ones -= 1,
            _ => {}
        }
        Ok(old)
    }

    /// The on-disk byte holding bit `index`.
    pub fn byte_of(&self, index: u64) -> u8 {
        let w = self.words[(index / 64) as usize];
        (w >> ((index % 64) / 8 * 8)) as u8
    }

    /// Whether every bit of `first..first + count` is set (false past the end).
    pub fn all_set(&self, first: u64, count: u64) -> bool {
        let end = first.saturating_add(count);
        end <= self.len && self.next(first, false).is_none_or(|i| i >= end)
    }

    /// The first index at or after `from` whose bit is `value`.
    pub fn next(&self, from: u64, value: bool) -> Option<u64> {
        let mut i = from;
        while i < self.len {
            let w = self.words[(i / 64) as usize];
            let w = if value { w } else { !w } >> (i % 64);
            if w != 0 {
                let at = i + u64::from(w.trailing_zeros());
                return (at < self.len).then_some(at);
            }
            i = (i / 64 + 1) * 64;
        }
        None
    }

    /// Runs of bits equal to `value`, as (first, count).
    pub fn ranges(&self, value: bool) -> Vec<(u64, u64)> {
        let mut out = Vec::new();
        let mut i = 0;
        while let Some(start) = self.next(i, value) {
            let end = self.next(start, !value).unwrap_or(self.len);
            out.push((start, end - start));
            i = end;
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_get_count_and_edges() {
        let mut b = Bitmap::new(130);
        assert_eq!(b.set(0, true), Ok(false));
        assert_eq!(b.set(129, true), Ok(false));
        assert_eq!(b.set(129, true), Ok(true));
        assert_eq!(b.count(), 2);
        assert_eq!(
            b.get(130),
            Err(OutOfRange {
                index: 130,
                len: 130
            })
        );
        assert_eq!(
            b.set(1000, true),
            Err(OutOfRange {
                index: 1000,
                len: 130
            })
        );
        assert_eq!(b.set(0, false), Ok(true));
        assert_eq!(b.count(), 1);
        assert!(!b.is_full());
        assert!(Bitmap::new(0).is_full());
        let full = Bitmap::full(70);
        assert_eq!(
            (full.count(), full.get(69), full.ranges(true)),
            (70, Ok(true), vec![(0, 70)])
        );
        assert_eq!(Bitmap::full(128).ranges(false), vec![]);
    }

    #[test]
    fn ranges_of_both_values() {
        let mut b = Bitmap::new(200);
        for i in (3..70).chain(150..200) {
            b.set(i, true).unwrap();
        }
        assert_eq!(b.ranges(true), vec![(3, 67), (150, 50)]);
        assert_eq!(b.ranges(false), vec![(0, 3), (70, 80)]);
        assert!(b.all_set(3, 67) && b.all_set(150, 50) && b.all_set(10, 0));
        assert!(!b.all_set(2, 2) && !b.all_set(150, 51) && !b.all_set(199, 2));
        assert_eq!(b.next(70, true), Some(150));
        assert_eq!(b.next(150, false), None);
        assert!(Bitmap::new(64).ranges(true).is_empty());
    }

    #[test]
    fn byte_order_round_trips() {
        let mut b = Bitmap::new(20);
        for i in [0, 7, 8, 19] {
            b.set(i, true).unwrap();
        }
        let bytes: Vec<u8> = (0..3).map(|k| b.byte_of(k * 8)).collect();
        assert_eq!(bytes, vec![0b1000_0001, 0b0000_0001, 0b0000_1000]);
        assert_eq!(Bitmap::from_bytes(&bytes, 20), b);
        assert_eq!(b.bytes(1, 2), vec![0b0000_0001, 0b0000_1000]);
        // Bits past the end on disk are not counted.
        let long = Bitmap::from_bytes(&[0xff; 16], 70);
        assert_eq!((long.count(), long.is_full()), (70, true));
        // Read in chunks, it is the same bitmap.
        let mut chunked = Bitmap::new(70);
        chunked.or_bytes(8, &[0xff; 8]);
        assert_eq!(chunked.ranges(true), vec![(64, 6)]);
        chunked.or_bytes(0, &[0xff; 8]);
        assert_eq!(chunked, long);
    }
}
