//! Fault tests: the real host and the real device over a link that drops,
//! bit-flips, truncates and delays frames (`feedfs_tests::relay`), seeded
//! so that a failure names its seed and can be replayed.
//!
//! For each seed: while the faults run, reader threads read scattered
//! ranges through the mount; every byte a read returns is compared with the
//! source's (a wrong one fails the test), a read may otherwise only fail
//! with EIO, and no read(2) may take longer than the read timeout plus a
//! margin. At a seeded moment the link is cut (the host killed) and a new
//! host attaches to the same daemon (`feedfs-device attach`) behind a new
//! faulty link. Then the faults stop: every reader must end within a bound
//! (none hangs), some reads must have returned the right bytes despite the
//! faults, and the transfer must complete, every file exact. Seeds:
//! `FEEDFS_FAULT_SEEDS` (`7`, `1..=50`), default 1..=3; `FEEDFS_FAULT_RATE`
//! multiplies every fault's rate (default 1).
//!
//! Then single faults, with the test as the host: a frame cut short before
//! an idle link, demands never answered, and damaged frames around the
//! host's Hello (skipped before it, refused in the manifest).
//! These tests need /dev/fuse and the right to mount; they fail without.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use feedfs_tests::peers::{
    checked_read, device_command, host_command, stop_device, wait_exit, Read,
};
use feedfs_tests::relay::{Faults, Relay, Rng};
use feedfs_tests::*;

/// The device's `--read-timeout` in these tests.
const READ_TIMEOUT: Duration = Duration::from_secs(3);
/// What a read may take beyond the read timeout: the reaper's tick, a busy machine.
const MARGIN: Duration = Duration::from_secs(2);

fn seeds() -> Vec<u64> {
    let spec = std::env::var("FEEDFS_FAULT_SEEDS").unwrap_or_else(|_| "1..=3".into());
    match spec.split_once("..=") {
        Some((a, b)) => (a.trim().parse().unwrap()..=b.trim().parse().unwrap()).collect(),
        None => spec
            .split(',')
            .map(|s| {
                s.trim()
                    .parse()
                    .expect("FEEDFS_FAULT_SEEDS: N, N,M or A..=B")
            })
            .collect(),
    }
}

/// Files of the source tree: (relative path, size, content seed).
const FILES: [(&str, u64, u64); 3] = [
    ("big.bin", 6 << 20, 21),
    ("d/odd.bin", (1 << 20) + 17, 22),
    ("d/e/small.bin", 300_003, 23),
];

fn make_src(root: &Path) -> PathBuf {
    let src = root.join("src");
    for (path, size, seed) in FILES {
        write_file(&src.join(path), size, seed, 0o644);
    }
    src
}

/// What the readers of one seed saw. There is no count of wrong bytes: the
/// first one fails the test ([`checked_read`] compares every byte read).
#[derive(Default)]
struct Tally {
    /// Reads that returned every byte asked for, each equal to the source's.
    good: AtomicU64,
    /// Bytes those reads returned (all compared with the source).
    good_bytes: AtomicU64,
    eio: AtomicU64,
    slowest_ms: AtomicU64,
}

/// What one seed's run saw.
struct SeedRun {
    summary: String,
    faults: u64,
    good: u64,
    eio: u64,
}

/// A new host for the daemon on `store`, through `feedfs-device attach`
/// behind a faulty relay seeded from `seed`. The attach is tried again
/// while the daemon still refuses it (the cut link not yet seen as ended).
fn attach_host(
    seed: u64,
    faults: Faults,
    store: &Path,
    src: &Path,
    what: &str,
) -> (std::process::Child, Relay) {
    let start = Instant::now();
    let mut attach = loop {
        let mut a = std::process::Command::new(bin("feedfs-device"))
            .args(["attach", "--stdio", "--store"])
            .arg(store)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // A refused attach exits; an accepted one has handed its pipes to
        // the daemon and points its own stdin at /dev/null.
        let mut refused = false;
        wait_for(
            &format!("{what}: an answer to the attach"),
            Duration::from_secs(10),
            || {
                refused = a.try_wait().unwrap().is_some();
                refused || handed_over(a.id())
            },
        );
        if !refused {
            break a;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "{what}: the daemon kept refusing an attach after the cut"
        );
    };
    let mut host = host_command(&["--run-size", "16K", "--rate", "6M", src.to_str().unwrap()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let relay = Relay::start(
        seed.wrapping_add(1 << 32),
        faults,
        host.stdout.take().unwrap(),
        attach.stdin.take().unwrap(),
        attach.stdout.take().unwrap(),
        host.stdin.take().unwrap(),
    );
    (host, relay)
}

/// Whether `feedfs-device attach` (process `pid`) was accepted: it then
/// gives up its stdin, the link's pipe, for /dev/null.
fn handed_over(pid: u32) -> bool {
    std::fs::read_link(format!("/proc/{pid}/fd/0")).is_ok_and(|p| p == Path::new("/dev/null"))
}

/// How long the readers may take to end once told to stop: the read(2)s
/// of the read in progress, each bounded by the read timeout plus the margin.
const READERS_END: Duration = Duration::from_secs(30);

/// One seed: faults while readers read, a cut and a new host attached,
/// then calm, then every byte checked.
fn run_seed(seed: u64, faults: Faults) -> SeedRun {
    let what = format!("seed {seed} (replay: FEEDFS_FAULT_SEEDS={seed})");
    let s = Scratch::new(&format!("faults-{seed}"));
    let src = make_src(&s.root);
    let (mnt, store) = (s.dir("mnt"), s.dir("store"));
    let mut device = device_command(&mnt, &store, "--stdio")
        .args(["--read-timeout", "3s"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut host = host_command(&["--run-size", "16K", "--rate", "6M", src.to_str().unwrap()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let relay = Relay::start(
        seed,
        faults,
        host.stdout.take().unwrap(),
        device.stdin.take().unwrap(),
        device.stdout.take().unwrap(),
        host.stdin.take().unwrap(),
    );
    wait_for(
        &format!("{what}: the mount"),
        Duration::from_secs(20),
        || is_mounted(&mnt),
    );

    // Readers while the faults run.
    let tally = Arc::new(Tally::default());
    let stop = Arc::new(AtomicBool::new(false));
    let readers: Vec<_> = (0..4)
        .map(|r| {
            let (mnt, tally, stop, what) = (mnt.clone(), tally.clone(), stop.clone(), what.clone());
            std::thread::spawn(move || {
                let mut rng = Rng::new(seed * 100 + r);
                while !stop.load(Ordering::Relaxed) {
                    let (path, size, cseed) = FILES[rng.below(FILES.len() as u64) as usize];
                    let len = 1 + rng.below(128 * 1024).min(size - 1);
                    let offset = rng.below(size - len + 1);
                    let expected = content(cseed, offset, len as usize);
                    let (outcome, took) = checked_read(
                        &mnt.join("src").join(path),
                        offset,
                        &expected,
                        READ_TIMEOUT + MARGIN,
                        &what,
                    );
                    match outcome {
                        Read::Good => {
                            tally.good.fetch_add(1, Ordering::Relaxed);
                            tally.good_bytes.fetch_add(len, Ordering::Relaxed);
                        }
                        Read::Eio => {
                            tally.eio.fetch_add(1, Ordering::Relaxed);
                        }
                        Read::NoSpace => panic!("{what}: ENOSPC from a roomy store"),
                    }
                    tally
                        .slowest_ms
                        .fetch_max(took.as_millis() as u64, Ordering::Relaxed);
                }
            })
        })
        .collect();
    // The faults run for a while (the stream alone takes about 1.2 s at 6M).
    // At a seeded moment the link is cut: the host is killed and its relay
    // dies with it. A new host attaches to the same daemon through
    // `feedfs-device attach`, behind a new faulty relay; readers go on.
    let cut_at = Duration::from_millis(200 + Rng::new(seed ^ 0x5eed).below(1500));
    std::thread::sleep(cut_at);
    signal(host.id() as i32, libc::SIGKILL);
    let _ = host.wait();
    // Faults the relays injected; the cut is not one of them.
    let before_cut = relay.faults();
    let (mut host, relay) = attach_host(seed, faults, &store, &src, &what);
    std::thread::sleep(Duration::from_millis(2500).saturating_sub(cut_at));
    relay.calm();
    let faults_injected = before_cut + relay.faults();
    stop.store(true, Ordering::Relaxed);
    wait_for(
        &format!("{what}: every reader to end (a read that never returns hangs)"),
        READERS_END,
        || readers.iter().all(|r| r.is_finished()),
    );
    for r in readers {
        if let Err(panic) = r.join() {
            std::panic::resume_unwind(panic);
        }
    }
    let (good, good_bytes, eio) = (
        tally.good.load(Ordering::Relaxed),
        tally.good_bytes.load(Ordering::Relaxed),
        tally.eio.load(Ordering::Relaxed),
    );
    assert!(
        good > 0 && good_bytes > 0,
        "{what}: no read returned its bytes while the faults ran ({eio} EIO)"
    );

    // Calm: the transfer completes and every byte is exact.
    let status = wait_exit(&mut host, Duration::from_secs(60));
    assert!(status.success(), "{what}: host after calm: {status}");
    let summary = format!(
        "{what}: {faults_injected} faults injected, and a cut at {cut_at:?} (after it, to device: {}; to host: {}); reads: {good} good ({good_bytes} bytes, all compared), {eio} EIO, slowest {} ms",
        relay.to_device.summary(),
        relay.to_host.summary(),
        tally.slowest_ms.load(Ordering::Relaxed),
    );
    assert_eq!(assert_same_tree(&src, &mnt.join("src")), 6, "{what}");
    stop_device(device.id() as i32, &mnt);
    let _ = device.wait();
    relay.join();
    SeedRun {
        summary,
        faults: faults_injected,
        good,
        eio,
    }
}

#[test]
fn a_faulty_link_never_yields_a_wrong_byte_and_the_transfer_completes_after_it() {
    let rate: u32 = std::env::var("FEEDFS_FAULT_RATE")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(1);
    // Per 10 000 frames: 1.5 % dropped, 1.5 % bit-flipped, 1 % truncated, 2 % delayed.
    let faults = Faults {
        drop: 150 * rate,
        flip: 150 * rate,
        truncate: 100 * rate,
        delay: 200 * rate,
        max_delay_ms: 40,
    };
    let started = Instant::now();
    let (mut total_faults, mut good, mut eio) = (0, 0, 0);
    let seeds = seeds();
    for &seed in &seeds {
        let run = run_seed(seed, faults);
        eprintln!("{}", run.summary);
        assert!(
            run.faults > 0,
            "{}: the relay injected no fault",
            run.summary
        );
        total_faults += run.faults;
        good += run.good;
        eio += run.eio;
    }
    eprintln!(
        "{} seeds, {total_faults} faults, {good} good reads, {eio} EIO, no wrong byte, every reader ended, in {:?}",
        seeds.len(),
        started.elapsed()
    );
}

/// The host's frames that open a session: Hello and a one-file manifest.
fn opening(size: u64) -> Vec<u8> {
    use feedfs_protocol::{EntryKind, FileId, Message, Mtime, Role, VERSION};
    let mut frames = Message::Hello {
        role: Role::Host,
        min_version: VERSION,
        max_version: VERSION,
        agent: "test",
    }
    .to_frame();
    Message::Entry {
        id: FileId(0),
        kind: EntryKind::File,
        size,
        mode: 0o644,
        mtime: Mtime::default(),
        identity: [5; 16],
        path: "f.bin",
        target: "",
    }
    .emit(&mut frames);
    Message::ManifestEnd {
        entries: 1,
        total_bytes: size,
    }
    .emit(&mut frames);
    frames
}

#[test]
fn a_frame_cut_short_before_an_idle_link_does_not_stall_the_device() {
    use feedfs_protocol::message::{crc_table, Encoding};
    use feedfs_protocol::{FileId, Message, OwnedMessage, PageCrcs};
    use feedfs_tests::peers::FakeHost;
    let s = Scratch::new("stall");
    let (mnt, store) = (s.dir("mnt"), s.dir("store"));
    let mut host = FakeHost::start(&mnt, &store, &[]);
    assert!(host.send(&opening(2 * 65536)));
    wait_for("the mount", Duration::from_secs(20), || is_mounted(&mnt));
    // A run of pages 0 to 15, cut after 100 bytes (a lost piece), then an
    // idle host's StreamDone once in a while, as feedfs-host sends it.
    let data = content(3, 0, 65536);
    let crcs: Vec<u32> = data.chunks(PAGE as usize).map(crc32fast::hash).collect();
    let table = crc_table(&crcs);
    let run = Message::Run {
        file: FileId(0),
        first: 0,
        count: 16,
        encoding: Encoding::Raw,
        crcs: PageCrcs::new(&table).expect("whole CRCs"),
        data: &data,
    }
    .to_frame();
    assert!(host.send(&run[..100]));
    let done = Message::StreamDone { pages_sent: 32 }.to_frame();
    let mut demanded = None;
    for _ in 0..40 {
        assert!(host.send(&done));
        if let Some(Ok(OwnedMessage::Demand {
            file, first, count, ..
        })) = std::iter::from_fn(|| host.next(Duration::from_millis(250)))
            .find(|m| matches!(m, Ok(OwnedMessage::Demand { .. })))
        {
            demanded = Some((file.0, first, count));
            break;
        }
    }
    assert_eq!(
        demanded,
        Some((0, 0, 32)),
        "after the cut frame the device must see the StreamDones and demand what it lacks"
    );
    stop_device(host.device.id() as i32, &mnt);
    let (status, _, stderr) = host.wait(Duration::from_secs(10));
    assert!(status.success(), "{status}: {stderr}");
    assert!(stderr.contains("stalled"), "{stderr}");
}

#[test]
fn a_read_the_host_never_answers_fails_once_within_the_read_timeout() {
    use feedfs_tests::peers::FakeHost;
    // A host that sends its manifest and then ignores every demand. The
    // kernel retries a page whose read failed with a read of its own;
    // that retry must not wait a second read timeout.
    let s = Scratch::new("noanswer");
    let (mnt, store) = (s.dir("mnt"), s.dir("store"));
    let mut host = FakeHost::start(&mnt, &store, &["--read-timeout", "2s"]);
    assert!(host.send(&opening(4 << 20)));
    wait_for("the mount", Duration::from_secs(20), || is_mounted(&mnt));
    let f = mnt.join("f.bin");
    for offset in [0, 1 << 20, (3 << 20) + 12_345] {
        let (outcome, took) = checked_read(
            &f,
            offset,
            &content(3, offset, 4096),
            Duration::from_secs(2) + Duration::from_millis(1500),
            "no answer",
        );
        assert_eq!(outcome, Read::Eio, "at {offset}");
        eprintln!("read at {offset}: EIO after {took:?}");
    }
    stop_device(host.device.id() as i32, &mnt);
    host.wait(Duration::from_secs(10));
}

#[test]
fn damaged_frames_before_a_hello_are_skipped_and_one_in_the_manifest_is_refused() {
    use feedfs_protocol::{ErrorCode, Message, OwnedMessage};
    use feedfs_tests::peers::FakeHost;
    // docs/protocol.md, sections 3.12 and 5.2: what a link holds before the
    // host's Hello (a banner, a damaged frame, an earlier session's frame)
    // is skipped; the session that follows is served.
    let s = Scratch::new("prehello");
    let (mnt, store) = (s.dir("mnt"), s.dir("store"));
    let mut host = FakeHost::start(&mnt, &store, &[]);
    let mut damaged = Message::StreamDone { pages_sent: 1 }.to_frame();
    damaged[feedfs_protocol::HEADER_LEN] ^= 0x10;
    let mut before = b"Welcome to the device\n".to_vec();
    before.extend_from_slice(&damaged);
    before.extend_from_slice(&Message::StreamDone { pages_sent: 7 }.to_frame());
    assert!(host.send(&before));
    assert!(host.send(&opening(65536)));
    wait_for("the mount", Duration::from_secs(20), || is_mounted(&mnt));
    let mut said = Vec::new();
    while let Some(m) = host.next(Duration::from_secs(10)) {
        let m = m.expect("the device sends well-formed messages");
        let end = matches!(m, OwnedMessage::HaveEnd { .. });
        said.push(m);
        if end {
            break;
        }
    }
    assert!(
        matches!(said.first(), Some(OwnedMessage::Hello { .. })),
        "{said:?}"
    );
    assert!(
        matches!(said.last(), Some(OwnedMessage::HaveEnd { files: 1 })),
        "{said:?}"
    );
    assert!(
        !said.iter().any(|m| matches!(m, OwnedMessage::Error { .. })),
        "{said:?}"
    );
    stop_device(host.device.id() as i32, &mnt);
    host.wait(Duration::from_secs(10));

    // After the Hello, a damaged Entry is a protocol error: Error code 1,
    // and nothing is mounted.
    let s = Scratch::new("badentry");
    let (mnt, store) = (s.dir("mnt"), s.dir("store"));
    let mut host = FakeHost::start(&mnt, &store, &[]);
    let mut frames = opening(65536);
    let entry_at = Message::Hello {
        role: feedfs_protocol::Role::Host,
        min_version: feedfs_protocol::VERSION,
        max_version: feedfs_protocol::VERSION,
        agent: "test",
    }
    .to_frame()
    .len();
    frames[entry_at + feedfs_protocol::HEADER_LEN + 5] ^= 0x01;
    assert!(host.send(&frames));
    let error = std::iter::from_fn(|| host.next(Duration::from_secs(10))).find_map(|m| match m {
        Ok(OwnedMessage::Error { code, text }) => Some((code, text)),
        _ => None,
    });
    let (status, _, stderr) = host.wait(Duration::from_secs(10));
    assert!(
        matches!(&error, Some((ErrorCode::Protocol, _))),
        "{error:?}; device ({status}): {stderr}"
    );
    assert!(!is_mounted(&mnt), "mounted after a refused manifest");
}
