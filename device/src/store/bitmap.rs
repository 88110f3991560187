//! A fixed-size bitset of blocks, with the range queries the store needs.
//!
//! Indexes past the end are errors ([`OutOfRange`]), never ignored: a block
//! number comes from the wire and a wrong one must not be silently dropped.

/// A block index past the end of a bitmap.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("block {index} is past the end ({len} blocks)")]
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

    /// Build from bytes, bit `i` at bit `i % 8` of byte `i / 8` (the on-disk order).
    pub fn from_bytes(bytes: &[u8], len: u64) -> Self {
        let mut b = Bitmap::new(len);
        for i in 0..len {
            if bytes
                .get((i / 8) as usize)
                .is_some_and(|byte| byte & (1 << (i % 8)) != 0)
            {
                b.words[(i / 64) as usize] |= 1 << (i % 64);
                b.ones += 1;
            }
        }
        b
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

    /// Runs of set bits, as (first, count).
    pub fn ranges(&self, value: bool) -> Vec<(u64, u64)> {
        let mut out = Vec::new();
        let mut i = 0;
        while i < self.len {
            let w = self.words[(i / 64) as usize];
            let w = if value { w } else { !w };
            if i % 64 == 0 && w == 0 {
                i += 64;
                continue;
            }
            if w & (1 << (i % 64)) == 0 {
                i += 1;
                continue;
            }
            let start = i;
            while i < self.len && self.get(i) == Ok(value) {
                i += 1;
            }
            out.push((start, i - start));
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
    }

    #[test]
    fn ranges_of_both_values() {
        let mut b = Bitmap::new(200);
        for i in (3..70).chain(150..200) {
            b.set(i, true).unwrap();
        }
        assert_eq!(b.ranges(true), vec![(3, 67), (150, 50)]);
        assert_eq!(b.ranges(false), vec![(0, 3), (70, 80)]);
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
    }
}
