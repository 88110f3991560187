//! The fetch ahead's specification: byte-exact streams, each byte fetched
//! once, requests of several runs, and several streams at once.

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
fn a_stream_is_byte_exact_fetches_each_byte_once_and_4_mib_a_request() {
    let obj = data(200 * RUN + 1000);
    let d = Double::start(obj.clone());
    let mut r = reader(&d.url, Duration::from_secs(5));
    assert_eq!(stream(&mut r, obj.len(), &|_, _| true), obj);
    // The probe's byte, then every byte exactly once.
    assert_eq!(d.sent.load(Ordering::SeqCst), obj.len() as u64 + 1);
    // The probe and the first two runs alone, then the other 199 runs
    // in requests of 64 runs (4 MiB) at most: 7 requests, not 202.
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

/// Read the runs `a` of `obj` in turn with as many from run `b` on
/// (two devices far apart, alternating), checking every byte.
fn two_streams(r: &mut Reader, obj: &[u8], a: std::ops::Range<usize>, b: usize) {
    let mut buf = vec![0u8; RUN];
    for (i, k) in a.enumerate() {
        for run in [k, b + i] {
            r.read_exact_at(&mut buf, (run * RUN) as u64, &|_, _| true)
                .unwrap();
            assert!(buf[..] == obj[run * RUN..(run + 1) * RUN], "run {run}");
        }
    }
}

/// Wait until no fetch ahead is under way.
fn settle(r: &Reader) {
    let end = std::time::Instant::now() + Duration::from_secs(10);
    while r
        .shared
        .slots
        .lock()
        .unwrap()
        .values()
        .any(|(_, s)| s.is_none())
    {
        assert!(
            std::time::Instant::now() < end,
            "fetches ahead never landed"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn two_streams_far_apart_are_each_fetched_ahead() {
    let obj = data(256 * RUN);
    let d = Double::start(obj.clone());
    let mut r = reader(&d.url, Duration::from_secs(5));
    two_streams(&mut r, &obj, 0..40, 160);
    settle(&r);
    // Each stream: its first two runs alone, then 64 runs ahead in one
    // request, and the next 64 at its next read: runs 0..39 take
    // 2 + 2, runs 160..199 take 2 + 2 (the second request ends with
    // the object, at run 256). With one stream followed, the two would
    // have cut each other off: 80 requests of a run each.
    assert_eq!(d.requests.load(Ordering::SeqCst), 1 + 4 + 4);
    // Nothing was fetched twice.
    assert!(d.sent.load(Ordering::SeqCst) <= obj.len() as u64 + 1);
}

/// Read runs `runs` of `obj` at `now`, checking every byte.
fn read_runs(r: &mut Reader, obj: &[u8], runs: &[usize], now: Instant) {
    let mut buf = vec![0u8; RUN];
    for &run in runs {
        r.read_at(&mut buf, (run * RUN) as u64, &|_, _| true, now)
            .unwrap();
        assert!(buf[..] == obj[run * RUN..(run + 1) * RUN], "run {run}");
    }
}

#[test]
fn a_stream_past_the_bound_ends_the_one_idle_longest() {
    let obj = data((STREAMS + 1) * 160 * RUN);
    let d = Double::start(obj.clone());
    let mut r = reader(&d.url, Duration::from_secs(5));
    let t0 = Instant::now();
    // STREAMS streams, 160 runs apart, each of two runs.
    for s in 0..STREAMS {
        read_runs(&mut r, &obj, &[s * 160, s * 160 + 1], t0);
    }
    // Stream 0 goes on; another one, at once, is not followed.
    read_runs(&mut r, &obj, &[2, 3], t0 + IDLE / 2);
    let last = STREAMS * 160;
    read_runs(&mut r, &obj, &[last, last + 1], t0 + IDLE / 2);
    assert_eq!(r.streams.len(), STREAMS);
    assert!(r
        .streams
        .iter()
        .all(|s| s.end != (last as u64 + 2) * RUN as u64));
    // Once stream 1 has been idle for IDLE, the new one ends it.
    read_runs(&mut r, &obj, &[last + 2], t0 + IDLE);
    settle(&r);
    let ids: std::collections::HashSet<u64> = r
        .shared
        .slots
        .lock()
        .unwrap()
        .values()
        .map(|(id, _)| *id)
        .collect();
    assert!(!ids.contains(&1) && ids.len() == STREAMS, "{ids:?}");
    assert_eq!(r.streams[0].end, (last as u64 + 3) * RUN as u64);
    // Stream 1's next run is still read, byte for byte.
    read_runs(&mut r, &obj, &[162], t0 + IDLE);
}

#[test]
fn more_streams_than_followed_fetch_no_byte_twice() {
    const N: usize = STREAMS + 2;
    let obj = data(N * 160 * RUN);
    let d = Double::start(obj.clone());
    let mut r = reader(&d.url, Duration::from_secs(5));
    // N devices 160 runs apart, each reading its next run in turn, a
    // millisecond apart: all of them live.
    let t0 = Instant::now();
    for k in 0..20 {
        for s in 0..N {
            let now = t0 + Duration::from_millis((k * N + s) as u64);
            read_runs(&mut r, &obj, &[s * 160 + k], now);
        }
    }
    settle(&r);
    // Streams that cut each other off would drop what they fetched
    // ahead and fetch it again.
    assert!(d.sent.load(Ordering::SeqCst) <= obj.len() as u64 + 1);
    assert_eq!(r.streams.len(), STREAMS);
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
