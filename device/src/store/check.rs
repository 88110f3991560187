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
use super::writes::{Before, Slot};

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
        let mut writes = self.f.writes.lock().unwrap_or_else(|p| p.into_inner());
        let written = |p: u64| {
            writes
                .as_ref()
                .is_some_and(|w| w.written.get(p).unwrap_or(false))
        };
        let slots = match writes.as_ref() {
            Some(w) if present.iter().any(|&p| written(p)) => {
                w.read_slots(pair.writes()?, lo, hi - lo + 1)?
            }
            _ => Vec::new(),
        };
        let verdicts: Vec<(u64, Verdict)> = present
            .iter()
            .map(|&p| {
                let from = (page_offset(p) - page_offset(lo)) as usize;
                let crc = crc32fast::hash(&data[from..from + page_len(self.f.size, p)]);
                let i = (p - lo) as usize;
                let v = if written(p) {
                    judge_written(crc, slots[i])
                } else if crc == crcs[i] {
                    Verdict::Good
                } else {
                    Verdict::Drop
                };
                (p, v)
            })
            .collect();
        let bad: Vec<u64> = verdicts
            .iter()
            .filter(|(_, v)| matches!(v, Verdict::Drop | Verdict::Unwritten { keep: false }))
            .map(|&(p, _)| p)
            .collect();
        if let Some(w) = writes.as_mut() {
            for &(p, v) in &verdicts {
                match v {
                    Verdict::Unwritten { .. } => w.mark(pair.writes()?, p, p, false)?,
                    Verdict::Older(slot) => w.write_slots(pair.writes()?, p, &[slot])?,
                    _ => {}
                }
            }
        }
        drop(writes);
        let torn: Vec<u64> = verdicts
            .iter()
            .filter(|(_, v)| *v == Verdict::Torn)
            .map(|&(p, _)| p)
            .collect();
        {
            let mut st = self.f.lock();
            for &p in &bad {
                let _ = st.present.set(p, false);
                // Its cleared bit goes to the map with the pending entries.
                st.mark_dirty(p, p);
            }
            st.torn.extend(&torn);
            let _ = st.checked.set(g, true);
        }
        if !torn.is_empty() {
            log::error!(
                "store: {} written pages of {} match neither what was written nor what they \
                 replaced (torn by a crash: {torn:?}); reads of them fail with EIO until they \
                 are written whole again or the file's writes are discarded",
                torn.len(),
                self.f.data_path.display()
            );
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

/// What checking a present page found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    /// Its bytes are what its record says.
    Good,
    /// A page of the host's that does not match: dropped, fetched again.
    Drop,
    /// A written page whose write never landed: it is the host's page it
    /// was (`keep`: present and good), or a missing page again.
    Unwritten { keep: bool },
    /// A written page whose last write never landed over an earlier one:
    /// the earlier one stays, with this slot.
    Older(Slot),
    /// A written page that matches neither: torn.
    Torn,
}

/// Judge a written page whose bytes have CRC `crc` by its slot: as
/// written (the slot's CRC), as it was before the last write (the CRC of
/// what it replaced: the host's page, a missing page's bytes, an earlier
/// write), or torn: bytes that match neither, which a crash can leave only
/// when the disk reordered the writes (a power cut), and which may hide an
/// earlier write that was synced. Torn is reported, never guessed at.
fn judge_written(crc: u32, slot: Slot) -> Verdict {
    if crc == slot.crc {
        return Verdict::Good;
    }
    if crc != slot.before_crc {
        return Verdict::Torn;
    }
    match slot.before {
        Before::Host => Verdict::Unwritten { keep: true },
        Before::Missing => Verdict::Unwritten { keep: false },
        Before::Own => Verdict::Older(Slot {
            crc,
            before_crc: crc,
            before: Before::Own,
        }),
    }
}
