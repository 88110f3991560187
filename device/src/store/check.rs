//! Checking what an earlier daemon stored: the first read that touches an
//! unchecked group of [`GROUP_PAGES`] pages reads that group's present
//! pages and their CRCs from the map file, drops the pages that do not
//! match (they are demanded again) and marks the group checked.
//!
//! Invariant: only a checker drops pages, one at a time per file (the
//! `checking` lock), and a landing only writes pages that are not present,
//! so the present pages a checker read stay present, with the same bytes,
//! until it decides.

use std::io;
use std::os::unix::fs::FileExt;

use feedfs_protocol::{page_len, page_offset, run_len};

use super::file::{StoredFile, GROUP_PAGES};

/// What looking at a range of pages found.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RangeCheck {
    /// Pages not in the store (dropped ones included).
    pub missing: u64,
    /// Pages that were present but failed their check and were dropped.
    pub dropped: u64,
}

impl StoredFile {
    /// Whether pages `first..first + count` may be served: every unchecked
    /// group they touch is checked first (see the module doc).
    pub fn check_pages(&self, first: u64, count: u64) -> io::Result<RangeCheck> {
        self.f.in_range(first, count)?;
        let groups = first / GROUP_PAGES..=(first + count - 1) / GROUP_PAGES;
        let unchecked: Vec<u64> = {
            let st = self.f.lock();
            groups
                .filter(|&g| !st.checked.get(g).unwrap_or(true))
                .collect()
        };
        let mut out = RangeCheck::default();
        for g in unchecked {
            out.dropped += self.check_group(g)?.len() as u64;
        }
        let st = self.f.lock();
        out.missing = (first..first + count)
            .filter(|&p| !st.present.get(p).unwrap_or(false))
            .count() as u64;
        Ok(out)
    }

    /// Check every group not checked yet (for `verify`); the pages dropped.
    pub fn check_all(&self) -> io::Result<Vec<u64>> {
        let mut bad = Vec::new();
        for g in 0..self.f.pages.div_ceil(GROUP_PAGES) {
            bad.extend(self.check_group(g)?);
        }
        Ok(bad)
    }

    /// Check group `g` unless it is checked: read its present pages and
    /// their CRCs, drop the pages that do not match, mark it checked.
    /// Returns the pages dropped.
    fn check_group(&self, g: u64) -> io::Result<Vec<u64>> {
        let _one = self.f.checking.lock().unwrap_or_else(|p| p.into_inner());
        let first = g * GROUP_PAGES;
        let end = (first + GROUP_PAGES).min(self.f.pages);
        let present: Vec<u64> = {
            let mut st = self.f.lock();
            if st.checked.get(g).unwrap_or(true) {
                return Ok(Vec::new());
            }
            let present: Vec<u64> = (first..end)
                .filter(|&p| st.present.get(p).unwrap_or(false))
                .collect();
            if present.is_empty() {
                let _ = st.checked.set(g, true);
                return Ok(Vec::new());
            }
            present
        };
        let (lo, hi) = (present[0], present[present.len() - 1]);
        let pair = self.f.pair()?;
        let mut data = vec![0u8; run_len(self.f.size, lo, hi - lo + 1)];
        pair.data.read_exact_at(&mut data, page_offset(lo))?;
        let crcs = self.f.layout.read_crcs(&pair.map, lo, hi - lo + 1)?;
        let bad: Vec<u64> = present
            .into_iter()
            .filter(|&p| {
                let from = (page_offset(p) - page_offset(lo)) as usize;
                let page = &data[from..from + page_len(self.f.size, p)];
                crc32fast::hash(page) != crcs[(p - lo) as usize]
            })
            .collect();
        {
            let mut st = self.f.lock();
            for &p in &bad {
                let _ = st.present.set(p, false);
                // Its cleared bit goes to the map with the pending entries.
                st.mark_dirty(p, p);
            }
            let _ = st.checked.set(g, true);
        }
        if !bad.is_empty() {
            log::warn!(
                "store: {} pages of {} do not match their recorded CRC ({bad:?}); dropping them",
                bad.len(),
                self.f.data_path.display()
            );
            if let Err(e) = self.f.write_map(false) {
                // Not on disk yet, but never served: they are missing in memory.
                log::warn!("store: cannot record the dropped pages: {e}");
            }
        }
        Ok(bad)
    }
}
