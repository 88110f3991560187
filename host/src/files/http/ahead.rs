//! Several connections for the stream: a URL's reader fetches the runs
//! that follow a sequential read ahead of time, each request on its own
//! thread and pooled connection, so the stream's requests overlap instead
//! of waiting one for another.
//!
//! A read that starts where an earlier sequential read ended is a stream
//! going on: it takes its bytes from a fetch ahead if one is there
//! (waiting for it if it is still under way), and keeps [`depth`] runs of
//! the same length fetched ahead of it ([`AHEAD_BYTES`] in all: an object
//! store's tens of milliseconds per request are paid 64 runs at a time),
//! [`group`] runs of them ([`REQUEST_BYTES`]) in one request, as
//! far as the scheduler says their pages are ones the device lacks and
//! nothing has sent yet (so a resumed
//! push fetches no page the store holds). Any other read (a demand, the
//! stream jumping over pages the device has) is fetched at once; two
//! contiguous reads elsewhere start a new stream there.
//!
//! Up to [`STREAMS`] streams are followed at once, each with its own fetch
//! ahead: the stream and a demand's readahead of one device, or the
//! streams of devices of one push too far apart for the shared page cache
//! to serve one from another's reads (a device that joined late). A new
//! stream past that number ends the one read least recently if that one
//! has been idle for [`IDLE`], and drops its fetches ahead (bytes fetched
//! and never sent); else the new one is read without a fetch ahead, so
//! more streams than that never cut each other's off. A fetch ahead is tried once;
//! one that failed is fetched again by the read itself, with the retries
//! and checks of [`super::fetch`], so a changed object is still caught.

use std::collections::HashMap;
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use super::Remote;
use crate::files::backend::{Backend, SourceError};

/// Bytes per page.
const PAGE: u64 = feedfs_protocol::PAGE_SIZE as u64;

/// Bytes fetched ahead of a stream at most: what keeps a stream from an
/// object store tens of milliseconds away busy (16 MiB in flight is
/// 320 MiB/s at 50 ms a request), in [`REQUEST_BYTES`] requests.
pub const AHEAD_BYTES: usize = 16 << 20;

/// Most runs fetched ahead at once, for each stream.
const MAX_DEPTH: usize = 64;

/// Most streams followed at once, each with up to [`AHEAD_BYTES`] fetched
/// ahead.
pub const STREAMS: usize = 4;

/// Ends of the latest reads that no stream continued, kept to see a
/// second contiguous read start a stream.
const RECENT: usize = 2 * STREAMS;

/// How long a stream goes unread before a new one may end it. A stream
/// going on reads a run every few milliseconds (16 KiB runs at `--rate 1M`
/// are 16 ms apart); one that jumped or ended reads no more. With more
/// live streams than [`STREAMS`], the ones not followed are read without a
/// fetch ahead rather than ending another's and wasting what it fetched.
pub const IDLE: Duration = Duration::from_millis(250);

/// How many runs of `len` bytes are kept fetched ahead.
pub fn depth(len: usize) -> usize {
    (AHEAD_BYTES / len.max(1)).clamp(1, MAX_DEPTH)
}

/// Bytes one request of the fetch ahead asks for at least (a whole number
/// of runs): a server's cost per request is paid once every 4 MiB, not
/// once a run. s3s-fs spends about 1.2 ms of CPU on each request; against
/// it a 256 MiB push streamed at 219-258 MiB/s in 4 MiB requests with
/// 16 MiB ahead, and at 158-165 MiB/s in 1 MiB requests with 8 MiB ahead
/// (alternated invocations of `bench/http --s3`). Amazon S3 bills each
/// request, and its own guidance for ranged reads is 8 or 16 MB a request.
pub const REQUEST_BYTES: usize = 4 << 20;

/// How many runs of `len` bytes one request of the fetch ahead carries.
pub fn group(len: usize) -> usize {
    (REQUEST_BYTES / len.max(1)).max(1)
}

/// A fetch ahead: under way, or its bytes (`None` when it failed).
type Slot = Option<Option<Vec<u8>>>;

/// Fetches ahead by offset, each with the stream it is for, and a
/// condition to wait for one.
#[derive(Default)]
struct Shared {
    slots: Mutex<HashMap<u64, (u64, Slot)>>,
    landed: Condvar,
}

/// A stream followed: where its next run starts, and when it was read.
#[derive(Debug, Clone, Copy)]
struct Stream {
    id: u64,
    end: u64,
    read: Instant,
}

/// Reads a URL's runs; see the module documentation.
pub struct Reader {
    remote: Arc<Remote>,
    shared: Arc<Shared>,
    /// The streams followed, the one read most recently first.
    streams: Vec<Stream>,
    /// Where the latest reads no stream continued ended, latest first.
    recent: Vec<u64>,
    next_id: u64,
}

impl Reader {
    pub fn new(remote: Arc<Remote>) -> Reader {
        Reader {
            remote,
            shared: Arc::default(),
            streams: Vec::new(),
            recent: Vec::new(),
            next_id: 0,
        }
    }

    /// The stream a read of `offset..end` at `now` belongs to, if any,
    /// now the one read most recently. A read that starts where another
    /// ended starts one, if fewer than [`STREAMS`] are followed or the one
    /// read least recently has been idle for [`IDLE`] (it ends, and its
    /// fetches ahead are dropped).
    fn follow(&mut self, offset: u64, end: u64, now: Instant) -> Option<u64> {
        if let Some(i) = self.streams.iter().position(|s| s.end == offset) {
            let mut s = self.streams.remove(i);
            (s.end, s.read) = (end, now);
            self.streams.insert(0, s);
            return Some(s.id);
        }
        let starts = self.recent.iter().position(|&e| e == offset);
        let room = self.streams.len() < STREAMS
            || self
                .streams
                .last()
                .is_some_and(|s| now.saturating_duration_since(s.read) >= IDLE);
        let (Some(i), true) = (starts, room) else {
            self.recent.retain(|&e| e != offset);
            self.recent.insert(0, end);
            self.recent.truncate(RECENT);
            return None;
        };
        self.recent.remove(i);
        if self.streams.len() == STREAMS {
            if let Some(old) = self.streams.pop() {
                self.shared
                    .slots
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .retain(|_, (id, _)| *id != old.id);
            }
        }
        let id = self.next_id;
        self.next_id += 1;
        self.streams.insert(0, Stream { id, end, read: now });
        Some(id)
    }

    /// Take the fetch ahead at `offset` of `len` bytes, waiting while it is under way.
    fn take(&self, offset: u64, len: usize) -> Option<Vec<u8>> {
        let mut slots = self
            .shared
            .slots
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        loop {
            match slots.get(&offset).map(|(_, slot)| slot) {
                None => return None,
                Some(None) => {
                    slots = self
                        .shared
                        .landed
                        .wait(slots)
                        .unwrap_or_else(PoisonError::into_inner);
                }
                Some(Some(_)) => {
                    let data = slots.remove(&offset).and_then(|(_, slot)| slot).flatten();
                    return data.filter(|d| d.len() == len);
                }
            }
        }
    }

    /// Keep [`depth`] runs of `len` bytes fetched ahead from `from`, as
    /// far as every page of each is `wanted`, [`group`] runs a request.
    fn fetch_ahead(&self, stream: u64, from: u64, len: usize, wanted: &dyn Fn(u64, u64) -> bool) {
        let size = self.remote.size();
        let mut slots = self
            .shared
            .slots
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let fresh =
            |at: u64, slots: &HashMap<u64, (u64, Slot)>| at < size && !slots.contains_key(&at);
        let pages = |at: u64| (len.min((size - at) as usize) as u64).div_ceil(PAGE);
        let mut k = 0;
        while k < depth(len) as u64 {
            let at = from + k * len as u64;
            k += 1;
            if !fresh(at, &slots) {
                continue;
            }
            if !wanted(at / PAGE, pages(at)) {
                break;
            }
            // The runs that follow join this request (past the depth, so
            // that the next ones start a whole group again).
            let mut runs = vec![at];
            while runs.len() < group(len) {
                let next = at + (runs.len() * len) as u64;
                if !fresh(next, &slots) || !wanted(next / PAGE, pages(next)) {
                    break;
                }
                runs.push(next);
            }
            k += runs.len() as u64 - 1;
            let n = ((runs.len() * len) as u64).min(size - at) as usize;
            for r in &runs {
                slots.insert(*r, (stream, None));
            }
            let (remote, shared, mine) = (self.remote.clone(), self.shared.clone(), runs.clone());
            let spawned = thread::Builder::new()
                .name("feedfs-http-ahead".into())
                .spawn(move || {
                    let mut buf = vec![0u8; n];
                    let ok = remote.attempt_once(&mut buf, at);
                    let mut slots = shared.slots.lock().unwrap_or_else(PoisonError::into_inner);
                    for (r, chunk) in mine.iter().zip(buf.chunks(len)) {
                        // Dropped meanwhile (its stream ended): keep nothing.
                        if let Some((_, slot)) = slots.get_mut(r).filter(|(id, _)| *id == stream) {
                            *slot = Some(ok.then(|| chunk.to_vec()));
                        }
                    }
                    shared.landed.notify_all();
                });
            if spawned.is_err() {
                for r in &runs {
                    slots.remove(r);
                }
            }
        }
    }

    /// [`Backend::read_exact_at`] at `now`.
    fn read_at(
        &mut self,
        buf: &mut [u8],
        offset: u64,
        wanted: &dyn Fn(u64, u64) -> bool,
        now: Instant,
    ) -> Result<(), SourceError> {
        let end = offset + buf.len() as u64;
        if let Some(stream) = self.follow(offset, end, now) {
            self.fetch_ahead(stream, end, buf.len(), wanted);
        }
        match self.take(offset, buf.len()) {
            Some(data) => buf.copy_from_slice(&data),
            None => self.remote.read_retrying(buf, offset)?,
        }
        Ok(())
    }
}

impl Backend for Reader {
    fn read_exact_at(
        &mut self,
        buf: &mut [u8],
        offset: u64,
        wanted: &dyn Fn(u64, u64) -> bool,
    ) -> Result<(), SourceError> {
        self.read_at(buf, offset, wanted, Instant::now())
    }
}

#[cfg(test)]
mod tests;
