//! Several connections for the stream: a URL's reader fetches the runs
//! that follow a sequential read ahead of time, each on its own thread and
//! pooled connection, so the stream's requests overlap instead of waiting
//! one for another.
//!
//! A read that starts where the previous sequential read ended is the
//! stream going on: it takes its bytes from a fetch ahead if one is there
//! (waiting for it if it is still under way), and keeps [`depth`] runs of
//! the same length fetched ahead of it ([`AHEAD_BYTES`] in all: an object
//! store's tens of milliseconds per request are paid 32 runs at a time), as
//! far as the scheduler says their pages are ones the device lacks and
//! nothing has sent yet (so a resumed
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
use crate::files::backend::{Backend, SourceError};

/// Bytes per page.
const PAGE: u64 = feedfs_protocol::PAGE_SIZE as u64;

/// Bytes fetched ahead of the stream at most: what keeps a stream from an
/// object store tens of milliseconds away busy (8 MiB in flight is 160 MiB/s
/// at 50 ms a request). On 127.0.0.1 it costs nothing: against s3s-fs a
/// 256 MiB push ran at 105-134 MiB/s with 8 MiB ahead and 104-128 with
/// 2 MiB, `curl` of the whole object at 69-115 MiB/s, the server's CPU the
/// limit of both.
pub const AHEAD_BYTES: usize = 8 << 20;

/// Most runs fetched ahead at once, each on its own connection.
const MAX_DEPTH: usize = 64;

/// How many runs of `len` bytes are kept fetched ahead.
pub fn depth(len: usize) -> usize {
    (AHEAD_BYTES / len.max(1)).clamp(1, MAX_DEPTH)
}

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

    /// Keep [`depth`] runs of `len` bytes fetched ahead from `from`, as
    /// far as every page of each is `wanted`.
    fn fetch_ahead(&self, from: u64, len: usize, wanted: &dyn Fn(u64, u64) -> bool) {
        let size = self.remote.size();
        let mut slots = self
            .shared
            .slots
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        for k in 0..depth(len) as u64 {
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

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;
    use std::time::Duration;

    use super::*;
    use crate::files::http::double::Double;
    use crate::files::http::{Client, ClientOptions, HttpError};

    const RUN: usize = 64 * 1024;

    fn reader(url: &str, retry_for: Duration) -> Reader {
        let client = Arc::new(
            Client::new(&ClientOptions {
                retry_for,
                ..ClientOptions::default()
            })
            .unwrap(),
        );
        Reader::new(Arc::new(Remote::probe(&client, url).unwrap()))
    }

    fn data(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 7 + i / 4096) as u8).collect()
    }

    /// Read the whole object run after run, as the stream does.
    fn stream(r: &mut Reader, len: usize, wanted: &dyn Fn(u64, u64) -> bool) -> Vec<u8> {
        let mut out = vec![0u8; len];
        for (k, chunk) in out.chunks_mut(RUN).enumerate() {
            r.read_exact_at(chunk, (k * RUN) as u64, wanted).unwrap();
        }
        out
    }

    #[test]
    fn a_stream_fetched_ahead_is_byte_exact_and_fetches_each_byte_once() {
        let obj = data(10 * RUN + 1000);
        let d = Double::start(obj.clone());
        let mut r = reader(&d.url, Duration::from_secs(5));
        assert_eq!(stream(&mut r, obj.len(), &|_, _| true), obj);
        // The probe's byte, then every byte exactly once.
        assert_eq!(d.sent.load(Ordering::SeqCst), obj.len() as u64 + 1);
    }

    #[test]
    fn pages_not_wanted_are_never_fetched_ahead() {
        let obj = data(8 * RUN);
        let d = Double::start(obj.clone());
        let mut r = reader(&d.url, Duration::from_secs(5));
        // Runs 0, 1 and 2 are read; nothing past them is wanted.
        let first_pages = (3 * RUN / 4096) as u64;
        let wanted = |first: u64, count: u64| first + count <= first_pages;
        let mut buf = vec![0u8; RUN];
        for k in 0..3 {
            r.read_exact_at(&mut buf, (k * RUN) as u64, &wanted)
                .unwrap();
            assert!(buf[..] == obj[k * RUN..(k + 1) * RUN]);
        }
        assert_eq!(d.sent.load(Ordering::SeqCst), 3 * RUN as u64 + 1);
    }

    #[test]
    fn a_body_cut_short_is_retried_then_named() {
        let obj = data(4 * RUN);
        let d = Double::start(obj);
        let mut r = reader(&d.url, Duration::from_secs(1));
        d.short.store(true, Ordering::SeqCst);
        let mut buf = vec![0u8; RUN];
        let err = r.read_exact_at(&mut buf, 0, &|_, _| false).unwrap_err();
        match &err {
            SourceError::Http(HttpError::ShortBody {
                expected,
                got,
                waited: Some(_),
                ..
            }) => assert_eq!((*expected, *got), (RUN as u64, RUN as u64 / 2)),
            other => panic!("{other}"),
        }
        let text = err.to_string();
        assert!(
            text.contains("/obj.img: the body ended after 32768 of the 65536 bytes"),
            "{text}"
        );
        assert!(text.contains("retried for"), "{text}");
    }
}
