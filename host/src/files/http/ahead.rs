//! Several connections for the stream: a URL's reader fetches the runs
//! that follow a sequential read ahead of time, each on its own thread and
//! pooled connection, so the stream's requests overlap instead of waiting
//! one for another.
//!
//! A read that starts where the previous sequential read ended is the
//! stream going on: it takes its bytes from a fetch ahead if one is there
//! (waiting for it if it is still under way), and keeps [`DEPTH`] runs of
//! the same length fetched ahead of it, as far as the scheduler says their
//! pages are ones the device lacks and nothing has sent yet (so a resumed
//! push fetches no page the store holds). Any other read (a demand, the
//! stream jumping over pages the device has) is fetched at once; two
//! contiguous reads elsewhere start a new stream there and drop the
//! fetches ahead of the old one (bytes fetched and never sent: a demand
//! readahead that takes pages the stream had fetched ahead, or a stream
//! cut into runs of another length). A fetch ahead is tried once;
//! one that failed is fetched again by the read itself, with the retries
//! and checks of [`super::fetch`], so a changed object is still caught.

use std::collections::HashMap;
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread;

use super::Remote;
use crate::files::source::{Backend, SourceError};

/// Bytes per page.
const PAGE: u64 = feedfs_protocol::PAGE_SIZE as u64;

/// Runs fetched ahead of the stream, each on its own connection.
pub const DEPTH: usize = 4;

/// A fetch ahead: under way, or its bytes (`None` when it failed).
type Slot = Option<Option<Vec<u8>>>;

/// Fetches ahead, by offset, with a condition to wait for one.
#[derive(Default)]
struct Shared {
    slots: Mutex<HashMap<u64, Slot>>,
    landed: Condvar,
}

/// Reads a URL's runs; see the module documentation.
pub struct Reader {
    remote: Arc<Remote>,
    shared: Arc<Shared>,
    /// Where the stream's next run starts, once two reads were contiguous.
    stream_end: Option<u64>,
    /// Where the last read ended.
    last_end: Option<u64>,
}

impl Reader {
    pub fn new(remote: Arc<Remote>) -> Reader {
        Reader {
            remote,
            shared: Arc::default(),
            stream_end: None,
            last_end: None,
        }
    }

    /// Take the fetch ahead at `offset` of `len` bytes, waiting while it is under way.
    fn take(&self, offset: u64, len: usize) -> Option<Vec<u8>> {
        let mut slots = self
            .shared
            .slots
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        loop {
            match slots.get(&offset) {
                None => return None,
                Some(None) => {
                    slots = self
                        .shared
                        .landed
                        .wait(slots)
                        .unwrap_or_else(PoisonError::into_inner);
                }
                Some(Some(_)) => {
                    let data = slots.remove(&offset).flatten().flatten();
                    return data.filter(|d| d.len() == len);
                }
            }
        }
    }

    /// Keep [`DEPTH`] runs of `len` bytes fetched ahead from `from`, as
    /// far as every page of each is `wanted`.
    fn fetch_ahead(&self, from: u64, len: usize, wanted: &dyn Fn(u64, u64) -> bool) {
        let size = self.remote.size();
        let mut slots = self
            .shared
            .slots
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        for k in 0..DEPTH as u64 {
            let at = from + k * len as u64;
            if at >= size || slots.contains_key(&at) {
                continue;
            }
            let n = len.min((size - at) as usize);
            if !wanted(at / PAGE, (n as u64).div_ceil(PAGE)) {
                break;
            }
            slots.insert(at, None);
            let (remote, shared) = (self.remote.clone(), self.shared.clone());
            let spawned = thread::Builder::new()
                .name("feedfs-http-ahead".into())
                .spawn(move || {
                    let mut buf = vec![0u8; n];
                    let data = remote.attempt_once(&mut buf, at).then_some(buf);
                    let mut slots = shared.slots.lock().unwrap_or_else(PoisonError::into_inner);
                    // Dropped meanwhile (the stream moved on): keep nothing.
                    if let Some(slot) = slots.get_mut(&at) {
                        *slot = Some(data);
                    }
                    shared.landed.notify_all();
                });
            if spawned.is_err() {
                slots.remove(&at);
            }
        }
    }
}

impl Backend for Reader {
    fn read_exact_at(
        &mut self,
        buf: &mut [u8],
        offset: u64,
        wanted: &dyn Fn(u64, u64) -> bool,
    ) -> Result<(), SourceError> {
        let end = offset + buf.len() as u64;
        let streaming = self.stream_end == Some(offset);
        let starts_stream = !streaming && self.last_end == Some(offset);
        if starts_stream {
            self.shared
                .slots
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clear();
        }
        self.last_end = Some(end);
        if streaming || starts_stream {
            self.stream_end = Some(end);
            self.fetch_ahead(end, buf.len(), wanted);
        }
        match self.take(offset, buf.len()) {
            Some(data) => buf.copy_from_slice(&data),
            None => self.remote.read_retrying(buf, offset)?,
        }
        Ok(())
    }
}
