//! Dropping a stored file's writes (`feedfs-device overlay discard`): its
//! written pages become missing, so the host's content is fetched again.
//!
//! Order, for a crash at any point: the map's bits of those pages are
//! cleared and synced first, then the writes file goes; a crash between
//! leaves the writes in place (discard again), never a written page taken
//! for the host's.

use std::fs;
use std::io;

use feedfs_protocol::{page_offset, run_len};

use crate::store::file::StoredFile;
use crate::store::holes::punch_hole;

impl StoredFile {
    /// Drop every written page of this file; returns the bytes dropped.
    pub fn discard_writes(&self) -> io::Result<u64> {
        let _io = self.f.io.lock().unwrap_or_else(|p| p.into_inner());
        let mut writes = self.f.writes.lock().unwrap_or_else(|p| p.into_inner());
        let Some(w) = writes.take() else {
            return Ok(0);
        };
        let bytes = w.written_bytes();
        let ranges = w.written.ranges(true);
        {
            let mut st = self.f.lock();
            for &(first, count) in &ranges {
                for p in first..first + count {
                    let _ = st.present.set(p, false);
                    st.torn.remove(&p);
                }
                st.mark_dirty(first, first + count - 1);
            }
        }
        self.f.write_map(true)?;
        let pair = self.f.pair()?;
        for &(first, count) in &ranges {
            let len = run_len(self.f.size, first, count) as u64;
            if punch_hole(&pair.data, page_offset(first), len).is_err() {
                // The bits are clear: what the range holds is never served.
                log::debug!("store: cannot punch out discarded pages; left as they are");
            }
        }
        let path = w.path().to_path_buf();
        drop((w, pair));
        // Closed with the pair, so no descriptor keeps the removed file.
        self.f.open.close(self.f.slot);
        fs::remove_file(&path)?;
        if let Some(dir) = path.parent() {
            fs::File::open(dir)?.sync_all()?;
        }
        Ok(bytes)
    }
}
