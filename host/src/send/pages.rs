//! A run's bytes cut into the parts its frames carry: maximal sub-runs of
//! pages that are all zeros (sent as `Encoding::Zero`, with no CRC table
//! and no data) and of pages with data (sent raw or compressed, with the
//! CRC-32 of each page). Pure: bytes in, parts out.
//!
//! Each page with data is hashed exactly once, here, to build its table
//! entry; a page of zeros is not hashed at all (the device knows the CRC of
//! zeros).

use std::ops::Range;

use feedfs_protocol::message::is_zero;
use feedfs_protocol::PAGE_SIZE;

/// One part of a run: `count` pages from page `first` of the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part {
    pub first: u64,
    pub count: u32,
    /// Every byte of its pages is zero.
    pub zero: bool,
    /// Its bytes within the run's bytes.
    pub bytes: Range<usize>,
    /// Its pages' CRCs within the table [`split`] filled (empty for zeros).
    pub crcs: Range<usize>,
}

/// Cut `data`, the bytes of a run from page `first`, into its parts, in
/// order; `crcs` is cleared and filled with the CRC-32 of each data page.
pub fn split(data: &[u8], first: u64, crcs: &mut Vec<u32>) -> Vec<Part> {
    crcs.clear();
    let mut parts: Vec<Part> = Vec::new();
    for (i, page) in data.chunks(PAGE_SIZE as usize).enumerate() {
        let zero = is_zero(page);
        let start = i * PAGE_SIZE as usize;
        if !zero {
            crcs.push(crc32fast::hash(page));
        }
        match parts.last_mut() {
            Some(p) if p.zero == zero => {
                p.count += 1;
                p.bytes.end = start + page.len();
                p.crcs.end = crcs.len();
            }
            _ => parts.push(Part {
                first: first + i as u64,
                count: 1,
                zero,
                bytes: start..start + page.len(),
                crcs: if zero {
                    crcs.len()..crcs.len()
                } else {
                    crcs.len() - 1..crcs.len()
                },
            }),
        }
    }
    parts
}

#[cfg(test)]
mod tests {
    use super::*;

    const P: usize = PAGE_SIZE as usize;

    #[test]
    fn a_run_splits_into_maximal_parts_of_zeros_and_of_data() {
        // Pages: data, data, zero, zero, zero, data, and a short last page of zeros.
        let mut data = vec![0u8; 6 * P + 100];
        data[5] = 1;
        data[P + P - 1] = 2;
        data[5 * P + 7] = 3;
        let mut crcs = Vec::new();
        let parts = split(&data, 10, &mut crcs);
        assert_eq!(
            parts,
            vec![
                Part {
                    first: 10,
                    count: 2,
                    zero: false,
                    bytes: 0..2 * P,
                    crcs: 0..2
                },
                Part {
                    first: 12,
                    count: 3,
                    zero: true,
                    bytes: 2 * P..5 * P,
                    crcs: 2..2
                },
                Part {
                    first: 15,
                    count: 1,
                    zero: false,
                    bytes: 5 * P..6 * P,
                    crcs: 2..3
                },
                Part {
                    first: 16,
                    count: 1,
                    zero: true,
                    bytes: 6 * P..6 * P + 100,
                    crcs: 3..3
                },
            ]
        );
        // One CRC per data page, of that page's bytes.
        assert_eq!(
            crcs,
            vec![
                crc32fast::hash(&data[..P]),
                crc32fast::hash(&data[P..2 * P]),
                crc32fast::hash(&data[5 * P..6 * P])
            ]
        );
    }

    #[test]
    fn one_page_and_a_short_file() {
        let mut crcs = vec![99];
        let parts = split(b"hello", 0, &mut crcs);
        assert_eq!(parts.len(), 1);
        assert_eq!(
            (parts[0].count, parts[0].zero, parts[0].bytes.clone()),
            (1, false, 0..5)
        );
        assert_eq!(crcs, vec![crc32fast::hash(b"hello")]);
        assert_eq!(split(&[], 0, &mut crcs), vec![]);
        assert!(crcs.is_empty());
    }
}
