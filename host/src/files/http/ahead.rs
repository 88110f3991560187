//! Several connections for the stream: a URL's reader fetches the runs
//! that follow a sequential read ahead of time, each request on its own
//! thread and pooled connection, so the stream's requests overlap instead
//! of waiting one for another.
//!
//! A read that starts where the previous sequential read ended is the
//! stream going on: it takes its bytes from a fetch ahead if one is there
//! (waiting for it if it is still under way), and keeps [`depth`] runs of
//! the same length fetched ahead of it ([`AHEAD_BYTES`] in all: an object
//! store's tens of milliseconds per request are paid 32 runs at a time),
//! [`group`] runs of them (a MiB) in one request, as
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

/// Most runs fetched ahead at once.
const MAX_DEPTH: usize = 64;

/// How many runs of `len` bytes are kept fetched ahead.
pub fn depth(len: usize) -> usize {
    (AHEAD_BYTES / len.max(1)).clamp(1, MAX_DEPTH)
}

/// Bytes one request of the fetch ahead asks for at least (a whole number
/// of runs): a server's cost per request is paid once a MiB, not once a
/// run. s3s-fs spends about 1.2 ms of CPU on each request, so 256 KiB
/// requests cost it twice the CPU of the bytes themselves (0.60-0.64 s for
/// 64 MiB, against 0.39-0.47 s in requests of 1 MiB); Amazon S3 bills
/// each request.
pub const REQUEST_BYTES: usize = 1 << 20;

/// How many runs of `len` bytes one request of the fetch ahead carries.
pub fn group(len: usize) -> usize {
    (REQUEST_BYTES / len.max(1)).max(1)
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
    /// far as every page of each is `wanted`, [`group`] runs a request.
    fn fetch_ahead(&self, from: u64, len: usize, wanted: &dyn Fn(u64, u64) -> bool) {
        let size = self.remote.size();
        let mut slots = self
            .shared
            .slots
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let fresh = |at: u64, slots: &HashMap<u64, Slot>| at < size && !slots.contains_key(&at);
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
                slots.insert(*r, None);
            }
            let (remote, shared, mine) = (self.remote.clone(), self.shared.clone(), runs.clone());
            let spawned = thread::Builder::new()
                .name("feedfs-http-ahead".into())
                .spawn(move || {
                    let mut buf = vec![0u8; n];
                    let ok = remote.attempt_once(&mut buf, at);
                    let mut slots = shared.slots.lock().unwrap_or_else(PoisonError::into_inner);
                    for (r, chunk) in mine.iter().zip(buf.chunks(len)) {
                        // Dropped meanwhile (the stream moved on): keep nothing.
                        if let Some(slot) = slots.get_mut(r) {
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
    fn the_stream_is_fetched_ahead_a_mib_a_request() {
        let obj = data(64 * RUN + 1000);
        let d = Double::start(obj.clone());
        let mut r = reader(&d.url, Duration::from_secs(5));
        assert_eq!(stream(&mut r, obj.len(), &|_, _| true), obj);
        assert_eq!(d.sent.load(Ordering::SeqCst), obj.len() as u64 + 1);
        // The probe and the first two runs alone, then the other 63 runs
        // in requests of 16 runs (a MiB) at most: 7 requests, not 66.
        assert_eq!(d.requests.load(Ordering::SeqCst), 7);
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
