//! How a run of pages from the host, checked against its CRCs, lands in
//! a stored file: its data (holes for zero pages), its CRCs, then its bits,
//! under the file's I/O lock, so a page written on the device meanwhile is
//! left alone.

use std::io;
use std::os::unix::fs::FileExt;

use feedfs_protocol::message::is_zero;
use feedfs_protocol::{page_len, page_offset, run_len, PAGE_SIZE};

use super::file::{zero_crc, StoredFile, MAP_BATCH};
use super::holes::{holds_data, punch_hole};
use super::open::Pair;

impl StoredFile {
    /// Store pages `first..first + crcs.len()`, whose bytes are `data`
    /// (`None`: every byte zero) and which the caller has checked against
    /// `crcs`. Pages already present are left as they are; the others are
    /// written with one `pwrite` per stretch of pages that are not zero
    /// (zero pages stay holes; a region that holds old data, of a page
    /// dropped after a failed check, is punched out, or overwritten with
    /// zeros where the filesystem cannot punch holes), then their CRCs with
    /// one more, then their bits are set (in memory; on disk with the next
    /// map write). Returns how many pages became present.
    pub fn write_run(&self, first: u64, data: Option<&[u8]>, crcs: &[u32]) -> io::Result<u64> {
        let count = crcs.len() as u64;
        self.f.in_range(first, count)?;
        let expected = run_len(self.f.size, first, count);
        if let Some(d) = data.filter(|d| d.len() != expected) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "pages {first}..{} have {} bytes, expected {expected}",
                    first + count,
                    d.len()
                ),
            ));
        }
        // Under the io lock, so a page written meanwhile is present here:
        // left out, never landed over.
        let _io = self.f.io.lock().unwrap_or_else(|p| p.into_inner());
        let absent: Vec<(u64, u64)> = {
            let st = self.lock();
            let mut runs: Vec<(u64, u64)> = Vec::new();
            for p in (first..first + count).filter(|&p| !st.present.get(p).unwrap_or(true)) {
                match runs.last_mut() {
                    Some((f, c)) if *f + *c == p => *c += 1,
                    _ => runs.push((p, 1)),
                }
            }
            runs
        };
        if absent.is_empty() {
            return Ok(0);
        }
        let pair = self.f.pair()?;
        let mut wrote_data = false;
        let start = page_offset(first);
        for &(a, n) in &absent {
            let crcs = &crcs[(a - first) as usize..(a - first + n) as usize];
            let bytes = data.map(|d| {
                let from = (page_offset(a) - start) as usize;
                &d[from..from + run_len(self.f.size, a, n)]
            });
            wrote_data |= self.write_pages(&pair, a, bytes, crcs)?;
            let table = feedfs_protocol::message::crc_table(crcs);
            pair.map
                .write_all_at(&table, self.f.layout.crc_off + 4 * a)?;
        }
        let mut st = self.lock();
        let mut fresh = 0;
        for &(a, n) in &absent {
            for p in a..a + n {
                if !st.present.set(p, true).unwrap_or(true) {
                    fresh += 1;
                }
            }
            st.mark_dirty(a, a + n - 1);
        }
        st.data_unsynced |= wrote_data;
        st.map_unsynced = true;
        if st.dirty_count >= MAP_BATCH {
            drop(st);
            // The pages are stored and present either way: a map that
            // cannot be written now (a full disk) keeps its entries pending
            // for the next write. Failing here would leave pages present in
            // memory that the caller counts as lost, and Complete never sent.
            if let Err(e) = self.flush_map() {
                log::warn!("store: cannot write the page map yet: {e}");
            }
        }
        Ok(fresh)
    }

    /// Write the data of absent pages `first..` (`bytes`, or zeros): one
    /// `pwrite` per stretch of pages that are not zero, holes for the
    /// others. Whether the data file changed.
    fn write_pages(
        &self,
        pair: &Pair,
        first: u64,
        bytes: Option<&[u8]>,
        crcs: &[u32],
    ) -> io::Result<bool> {
        let start = page_offset(first);
        let page_bytes = |i: usize| {
            let from = i * PAGE_SIZE as usize;
            let len = page_len(self.f.size, first + i as u64);
            bytes.map(|b| &b[from..from + len])
        };
        // A page is zero when its CRC is that of zeros and its bytes say so.
        let zero =
            |i: usize| page_bytes(i).is_none_or(|b| crcs[i] == zero_crc(b.len()) && is_zero(b));
        let mut changed = false;
        let mut i = 0;
        while i < crcs.len() {
            let z = zero(i);
            let mut j = i + 1;
            while j < crcs.len() && zero(j) == z {
                j += 1;
            }
            let offset = page_offset(first + i as u64);
            let len = run_len(self.f.size, first + i as u64, (j - i) as u64);
            if z {
                if holds_data(&pair.data, offset, len as u64)? {
                    changed = true;
                    if let Err(e) = punch_hole(&pair.data, offset, len as u64) {
                        log::debug!("store: cannot punch a hole ({e}); writing zeros");
                        pair.data.write_all_at(&vec![0; len], offset)?;
                    }
                }
            } else if let Some(b) = bytes {
                let from = (offset - start) as usize;
                pair.data.write_all_at(&b[from..from + len], offset)?;
                changed = true;
            }
            i = j;
        }
        Ok(changed)
    }
}
