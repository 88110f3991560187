//! Converting a map of store format 1 (a bit and a CRC-32 per block of a
//! fixed size) written for the manifest's entry into format 2 (per page).
//!
//! Each present block is read from the data file and checked against its
//! format-1 CRC: a good block's pages are set present with their page CRCs
//! in a new map, a bad one is left out (it is demanded again). The new map
//! is written to a temporary file beside the old one, made durable with
//! the data it marks, then renamed over it: a crash during the conversion
//! leaves the format-1 map, converted again at the next open; a map that
//! cannot be converted (a read or write error) is reset instead. Memory:
//! the page bitmap, one block's bytes and a chunk of the old CRC table.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;

use feedfs_protocol::{message::crc_table, page_len, Entry, PAGE_SIZE};

use super::bitmap::Bitmap;
use super::file::{MapFile, MapState};
use super::layout::V1Layout;
use super::open::Pair;

/// Format-1 CRCs read at once.
const CRC_CHUNK: u64 = 4096;

impl MapFile {
    /// Convert the map in `pair` if it is of format 1 and written for
    /// `entry`: `Ok((pair, blocks dropped))`; `Err(pair)` when it is not
    /// such a map, or it cannot be converted (the caller resets it: its
    /// pages are fetched again, never trusted unchecked).
    pub(super) fn convert(
        &mut self,
        entry: &Entry,
        header: &[u8],
        pair: Pair,
    ) -> Result<(Pair, u64), Pair> {
        let v1 = match V1Layout::of(&pair.map, entry) {
            Ok(Some(v1)) => v1,
            Ok(None) => return Err(pair),
            Err(e) => {
                log::debug!("store: {:?}: cannot read its map: {e}", entry.path);
                return Err(pair);
            }
        };
        if pair.data.metadata().map(|m| m.len()).ok() != Some(self.size) {
            return Err(pair);
        }
        let tmp = self.map_path.with_extension("map.tmp");
        let converted = self
            .convert_into(&pair, &v1, header, &tmp)
            .and_then(|done| {
                fs::rename(&tmp, &self.map_path)?;
                let dir = self.map_path.parent().unwrap_or(Path::new("."));
                File::open(dir)?.sync_all()?;
                Ok(done)
            });
        let (map, present, dropped) = match converted {
            Ok(done) => done,
            Err(e) => {
                log::warn!(
                    "store: cannot convert {} from store format 1 ({e}); starting {:?} afresh",
                    self.map_path.display(),
                    entry.path
                );
                let _ = fs::remove_file(&tmp);
                return Err(pair);
            }
        };
        let mut st = MapState::new(self.pages);
        // Every present page was checked just now, in this daemon's life.
        st.present = present;
        *self.state.get_mut().expect("fresh mutex") = st;
        Ok((
            Pair {
                data: pair.data,
                map,
                writes: pair.writes,
            },
            dropped,
        ))
    }

    /// Write the format-2 map of `pair`'s format-1 map to `tmp`: its open
    /// file, the present pages and the blocks dropped.
    fn convert_into(
        &self,
        pair: &Pair,
        v1: &V1Layout,
        header: &[u8],
        tmp: &Path,
    ) -> io::Result<(File, Bitmap, u64)> {
        let map = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(tmp)?;
        map.set_len(self.layout.total)?;
        map.write_all_at(header, 0)?;
        let blocks = v1.map.read_bitmap(&pair.map, v1.blocks)?;
        let per_block = u64::from(v1.block_size / PAGE_SIZE);
        let mut present = Bitmap::new(self.pages);
        let mut buf = vec![0u8; v1.block_size as usize];
        let mut dropped = 0;
        for (first, count) in blocks.ranges(true) {
            let mut b = first;
            while b < first + count {
                let n = CRC_CHUNK.min(first + count - b);
                let crcs = v1.map.read_crcs(&pair.map, b, n)?;
                for (k, &crc) in crcs.iter().enumerate() {
                    let block = b + k as u64;
                    let offset = block * u64::from(v1.block_size);
                    let len = (self.size - offset).min(u64::from(v1.block_size)) as usize;
                    pair.data.read_exact_at(&mut buf[..len], offset)?;
                    if crc32fast::hash(&buf[..len]) != crc {
                        dropped += 1;
                        continue;
                    }
                    let page0 = block * per_block;
                    let pages = (len as u64).div_ceil(u64::from(PAGE_SIZE));
                    let page_crcs: Vec<u32> = (0..pages)
                        .map(|i| {
                            let from = (i * u64::from(PAGE_SIZE)) as usize;
                            let plen = page_len(self.size, page0 + i);
                            crc32fast::hash(&buf[from..from + plen])
                        })
                        .collect();
                    map.write_all_at(&crc_table(&page_crcs), self.layout.crc_off + 4 * page0)?;
                    for p in page0..page0 + pages {
                        let _ = present.set(p, true);
                    }
                }
                b += n;
            }
        }
        self.layout
            .write_bitmap(&map, 0, self.pages.div_ceil(8), |at, n| {
                present.bytes(at, n)
            })?;
        // The new map marks data the old one marked: both durable before
        // the rename makes it the map.
        pair.data.sync_data()?;
        map.sync_data()?;
        Ok((map, present, dropped))
    }
}
