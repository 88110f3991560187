//! How a write lands in a stored file: the pages it covers in part are
//! merged with their content, each page's slot goes to the writes file
//! first, then its bit, then its data, and the pages become present (the
//! device's own: never fetched, never landed over).
//!
//! Invariant: a write runs under the file's `io` lock, as a landing run
//! does, so a run that arrives after a page was written leaves it alone.

use std::io;
use std::os::unix::fs::FileExt;
use std::sync::Arc;

use feedfs_protocol::{page_len, page_offset, pages_of, run_len};

use super::{writes_path, Before, Slot, Writes};
use crate::store::file::{MapFile, StoredFile};

/// Why a write was refused.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// It would change the file's size, which stays fixed.
    #[error("a write past the end of the file (sizes are fixed)")]
    PastEnd,
    /// It covers part of a page whose content was lost (torn).
    #[error("page {page} was torn by a crash: write it whole, or discard the file's writes")]
    Torn { page: u64 },
    /// It covers part of a page that is not present and was not given.
    #[error("page {page} is missing")]
    Missing { page: u64 },
    #[error(transparent)]
    Io(#[from] io::Error),
    /// Its data could not be written (a full disk): what the span holds is
    /// unknown, so the host's pages in it were dropped (`dropped`, fetched
    /// again) and the device's own ones are torn.
    #[error("{source}")]
    Data { source: io::Error, dropped: u64 },
}

impl WriteError {
    /// The I/O error under it, if any.
    pub fn io(&self) -> Option<&io::Error> {
        match self {
            WriteError::Io(e) | WriteError::Data { source: e, .. } => Some(e),
            _ => None,
        }
    }

    /// Pages that were present and are not any more.
    pub fn dropped(&self) -> u64 {
        match self {
            WriteError::Data { dropped, .. } => *dropped,
            _ => 0,
        }
    }
}

/// A stored file, for a write that waited for its pages (held by the
/// waiting write, so it can land from whichever thread brings them).
#[derive(Clone)]
pub struct WriteTarget(pub(in crate::store) Arc<MapFile>);

impl WriteTarget {
    /// See [`StoredFile::write`].
    pub fn write(
        &self,
        offset: u64,
        data: &[u8],
        base: Option<(u64, &[u8])>,
    ) -> Result<u64, WriteError> {
        self.0.write(offset, data, base)
    }
}

impl StoredFile {
    /// Make this file's writes file now if it has none (an open for
    /// writing does, so the first write, which may land on the link's
    /// thread, never waits for its creation and syncs).
    pub fn prepare_writes(&self) -> io::Result<()> {
        self.f.prepare_writes()
    }

    /// This file, for a write that waits for pages.
    pub fn write_target(&self) -> WriteTarget {
        WriteTarget(self.f.clone())
    }

    /// The pages a write of `len` bytes at `offset` covers only in part and
    /// that are not present: it must wait for them. `(first, count)`.
    pub fn write_needs(&self, offset: u64, len: u64) -> Option<(u64, u64)> {
        let partial = self.f.partial_pages(offset, len);
        let st = self.f.lock();
        let missing: Vec<u64> = partial
            .into_iter()
            .filter(|&p| !st.present.get(p).unwrap_or(true))
            .collect();
        Some((*missing.first()?, missing.last()? - missing.first()? + 1))
    }

    /// Write `data` at `offset`. Pages it covers in part keep the rest of
    /// their content: read from the store where present, else taken from
    /// `base` (bytes at `base.0`, as a read that waited for them got them).
    /// Returns how many pages became present.
    pub fn write(
        &self,
        offset: u64,
        data: &[u8],
        base: Option<(u64, &[u8])>,
    ) -> Result<u64, WriteError> {
        self.f.write(offset, data, base)
    }

    /// Make this file's written data and its marks durable (fsync).
    pub fn sync_writes(&self) -> io::Result<()> {
        let mut writes = self.f.writes.lock().unwrap_or_else(|p| p.into_inner());
        let Some(w) = writes.as_mut().filter(|w| w.unsynced) else {
            return Ok(());
        };
        // Every write marks its file unsynced before its data goes out.
        let pair = self.f.pair()?;
        pair.data.sync_data()?;
        w.sync(pair.writes()?)
    }

    /// Bytes of this file written on the device.
    pub fn written_bytes(&self) -> u64 {
        let writes = self.f.writes.lock().unwrap_or_else(|p| p.into_inner());
        writes.as_ref().map_or(0, Writes::written_bytes)
    }

    /// Whether any of pages `first..=last` was torn by a crash.
    pub fn torn_in(&self, first: u64, last: u64) -> bool {
        self.f.lock().torn.range(first..=last).next().is_some()
    }

    /// The written pages a crash tore (found by checking them).
    pub fn torn_pages(&self) -> Vec<u64> {
        self.f.lock().torn.iter().copied().collect()
    }
}

impl MapFile {
    fn prepare_writes(&self) -> io::Result<()> {
        let mut writes = self.writes.lock().unwrap_or_else(|p| p.into_inner());
        if writes.is_none() {
            *writes = Some(Writes::create(
                &writes_path(&self.data_path),
                self.own.clone(),
            )?);
            // Opened again, with the new file.
            self.open.close(self.slot);
        }
        Ok(())
    }

    /// The first and last pages of a write of `len` bytes at `offset`,
    /// where it does not cover the whole page.
    fn partial_pages(&self, offset: u64, len: u64) -> Vec<u64> {
        if len == 0 {
            return Vec::new();
        }
        let (first, count) = pages_of(offset, len);
        let end = offset + len;
        let whole = |p: u64| {
            offset <= page_offset(p) && end >= page_offset(p) + page_len(self.size, p) as u64
        };
        let mut out: Vec<u64> = [first, first + count - 1]
            .into_iter()
            .filter(|&p| !whole(p))
            .collect();
        out.dedup();
        out
    }

    fn write(
        &self,
        offset: u64,
        data: &[u8],
        base: Option<(u64, &[u8])>,
    ) -> Result<u64, WriteError> {
        let len = data.len() as u64;
        if len == 0 {
            return Ok(0);
        }
        if offset.checked_add(len).is_none_or(|end| end > self.size) {
            return Err(WriteError::PastEnd);
        }
        let (first, count) = pages_of(offset, len);
        let last = first + count - 1;
        let start = page_offset(first);
        let _io = self.io.lock().unwrap_or_else(|p| p.into_inner());
        self.prepare_writes()?;
        let mut writes = self.writes.lock().unwrap_or_else(|p| p.into_inner());
        let w = writes.as_mut().expect("prepared above");
        let pair = self.pair()?;
        let wf = pair.writes()?;
        let partial = self.partial_pages(offset, len);
        let (present, was_written): (Vec<bool>, Vec<bool>) = {
            let st = self.lock();
            for &p in &partial {
                if st.torn.contains(&p) {
                    return Err(WriteError::Torn { page: p });
                }
            }
            (first..=last)
                .map(|p| {
                    (
                        st.present.get(p).unwrap_or(false),
                        w.written.get(p).unwrap_or(false),
                    )
                })
                .unzip()
        };
        // A write of whole pages is its own content: no copy.
        let mut merged = Vec::new();
        if !partial.is_empty() {
            merged = vec![0u8; run_len(self.size, first, count)];
        }
        let buf = &mut merged;
        for &p in &partial {
            let from = (page_offset(p) - start) as usize;
            let page = &mut buf[from..from + page_len(self.size, p)];
            if present[(p - first) as usize] {
                pair.data.read_exact_at(page, page_offset(p))?;
            } else {
                let (at, bytes) = base.ok_or(WriteError::Missing { page: p })?;
                let off = page_offset(p).checked_sub(at).map(|o| o as usize);
                match off.and_then(|o| bytes.get(o..o + page.len())) {
                    Some(b) => page.copy_from_slice(b),
                    None => return Err(WriteError::Missing { page: p }),
                }
            }
        }
        let buf: &[u8] = if partial.is_empty() {
            data
        } else {
            let at = (offset - start) as usize;
            buf[at..at + data.len()].copy_from_slice(data);
            buf
        };
        let own = if was_written.contains(&true) {
            w.read_slots(wf, first, count)?
        } else {
            Vec::new()
        };
        let host = if present.iter().zip(&was_written).any(|(&p, &o)| p && !o) {
            self.layout.read_crcs(&pair.map, first, count)?
        } else {
            Vec::new()
        };
        // What a missing page's bytes in the data file are now (a hole, or
        // a dropped page's): a crash before the data lands leaves them, and
        // a reopen tells that from a torn write by their CRC.
        let old = if present.contains(&false) {
            let mut old = vec![0u8; run_len(self.size, first, count)];
            pair.data.read_exact_at(&mut old, start)?;
            old
        } else {
            Vec::new()
        };
        let slots: Vec<Slot> = (0..count as usize)
            .map(|i| {
                let from = (page_offset(first + i as u64) - start) as usize;
                let crc = crc32fast::hash(&buf[from..from + page_len(self.size, first + i as u64)]);
                let (before_crc, before) = if was_written[i] {
                    (own[i].crc, Before::Own)
                } else if present[i] {
                    (host[i], Before::Host)
                } else {
                    (
                        crc32fast::hash(&old[from..from + page_len(self.size, first + i as u64)]),
                        Before::Missing,
                    )
                };
                Slot {
                    crc,
                    before_crc,
                    before,
                }
            })
            .collect();
        // The order a crash relies on: slots, bits, data.
        w.write_slots(wf, first, &slots)?;
        if was_written.contains(&false) {
            w.mark(wf, first, last, true)?;
        }
        if let Err(source) = pair.data.write_all_at(buf, start) {
            let dropped = self.undo(w, wf, first, &present, &was_written);
            return Err(WriteError::Data { source, dropped });
        }
        let mut st = self.lock();
        let mut fresh = 0;
        for p in first..=last {
            if !st.present.set(p, true).unwrap_or(true) {
                fresh += 1;
            }
            st.torn.remove(&p);
        }
        st.data_unsynced = true;
        Ok(fresh)
    }

    /// A write's data failed: pages of the span that were the device's own
    /// are torn, the others become missing (the host's are fetched again)
    /// and lose their written bit. Returns how many present pages became
    /// missing.
    fn undo(
        &self,
        w: &mut Writes,
        wf: &std::fs::File,
        first: u64,
        present: &[bool],
        was_written: &[bool],
    ) -> u64 {
        let last = first + present.len() as u64 - 1;
        let mut st = self.lock();
        let mut dropped = 0;
        for (i, p) in (first..=last).enumerate() {
            if was_written[i] {
                st.torn.insert(p);
            } else {
                let _ = w.written.set(p, false);
                if present[i] {
                    let _ = st.present.set(p, false);
                    st.mark_dirty(p, p);
                    dropped += 1;
                }
            }
        }
        drop(st);
        if let Err(e) = w.write_bits(wf, first, last) {
            // Their slots say what they should hold: a reopen drops them.
            log::warn!("store: cannot clear the bits of a failed write: {e}");
        }
        dropped
    }
}
