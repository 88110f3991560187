//! Crash consistency: the device daemon SIGKILLed at random points of a
//! stream and restarted on the same store, and torn writes simulated on
//! the store's files. After each kill `feedfs-device verify` must find no
//! bad page and no page verified before may be lost; in the end every
//! file is exact. A page marked present with wrong data, and a truncated
//! map, are detected, dropped and fetched again, never served.
//! Seeded (`FEEDFS_CRASH_SEED`, default 1). These tests need /dev/fuse and
//! the right to mount; they fail without.

use std::fs::{self, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use feedfs_tests::peers::{checked_read, device_command, pipe_pair, stop_device, wait_exit, Read};
use feedfs_tests::relay::Rng;
use feedfs_tests::*;

const MIB: u64 = 1 << 20;
const KILLS: usize = 20;

/// A device and a host joined by two plain pipes.
fn start_pair(mnt: &Path, store: &Path, host_args: &[&str]) -> (Child, Child) {
    pipe_pair(mnt, store, &[], host_args)
}

/// `feedfs-device verify --store DIR`: (exit code, per-file (present, pages, bad)).
fn verify(store: &Path) -> (i32, Vec<(u64, u64, u64)>, String) {
    let out = Command::new(bin("feedfs-device"))
        .args(["verify", "--store"])
        .arg(store)
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    let files = text
        .lines()
        .filter(|l| l.contains("pages present and good"))
        .map(|l| {
            let n: Vec<u64> = l
                .rsplit(": ")
                .next()
                .unwrap()
                .split(|c: char| !c.is_ascii_digit())
                .filter(|w| !w.is_empty())
                .map(|w| w.parse().unwrap())
                .collect();
            (n[0], n[1], n[2])
        })
        .collect();
    (out.status.code().unwrap_or(-1), files, text)
}

fn seed() -> u64 {
    std::env::var("FEEDFS_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1)
}

#[test]
fn twenty_kills_lose_no_verified_page_and_the_content_ends_exact() {
    let seed = seed();
    let what = format!("crash seed {seed} (replay: FEEDFS_CRASH_SEED={seed})");
    let s = Scratch::new("crash");
    let src = s.root.join("src");
    write_file(&src.join("big.bin"), 32 * MIB, 31, 0o644);
    write_file(&src.join("d/small.bin"), 3 * PAGE + 5, 32, 0o600);
    let (mnt, store) = (s.dir("mnt"), s.dir("store"));
    let big = mnt.join("src/big.bin");
    let mut rng = Rng::new(seed);
    let mut present_before = 0;
    let mut mid_stream = 0;
    for kill in 1..=KILLS {
        let (mut device, mut host) =
            start_pair(&mnt, &store, &["--rate", "8M", src.to_str().unwrap()]);
        wait_for(
            &format!("{what}: mount {kill}"),
            Duration::from_secs(20),
            || is_mounted(&mnt),
        );
        // A reader now and then, so some kills come right after a page was served.
        if rng.below(2) == 0 {
            let offset = rng.below(32 * MIB - 4096);
            checked_read(
                &big,
                offset,
                &content(31, offset, 4096),
                Duration::from_secs(12),
                &what,
            );
        }
        std::thread::sleep(Duration::from_millis(30 + rng.below(400)));
        let was_streaming = host.try_wait().unwrap().is_none();
        signal(device.id() as i32, libc::SIGKILL);
        device.wait().unwrap();
        wait_exit(&mut host, Duration::from_secs(20));
        if was_streaming {
            mid_stream += 1;
        }
        // A killed FUSE daemon leaves a dead mount behind.
        detach(&mnt);

        let (code, files, text) = verify(&store);
        assert_eq!(code, 0, "{what}: verify after kill {kill}: {text}");
        let present: u64 = files.iter().map(|f| f.0).sum();
        let bad: u64 = files.iter().map(|f| f.2).sum();
        assert_eq!(bad, 0, "{what}: kill {kill}: {text}");
        assert!(
            present >= present_before,
            "{what}: kill {kill} lost verified pages: {present_before} before, {present} now"
        );
        present_before = present;
    }
    eprintln!(
        "{what}: {KILLS} kills ({mid_stream} in mid-stream), {present_before} pages kept, none bad"
    );
    assert!(mid_stream > 0, "{what}: no kill came during the stream");

    // The last host completes the transfer; every byte is exact.
    let (mut device, mut host) = start_pair(&mnt, &store, &[src.to_str().unwrap()]);
    assert!(
        wait_exit(&mut host, Duration::from_secs(60)).success(),
        "{what}: final push"
    );
    assert_same_tree(&src, &mnt.join("src"));
    stop_device(device.id() as i32, &mnt);
    device.wait().unwrap();
    let (code, files, text) = verify(&store);
    assert_eq!(code, 0, "{text}");
    assert!(files.iter().all(|f| f.0 == f.1 && f.2 == 0), "{text}");
}

/// The store's `.data` and `.map` files, by the size of the data.
fn store_files(store: &Path, data_len: u64) -> (PathBuf, PathBuf) {
    let data = fs::read_dir(store.join("files"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| {
            p.extension().is_some_and(|x| x == "data") && fs::metadata(p).unwrap().len() == data_len
        })
        .expect("data file");
    let map = data.with_extension("map");
    (data, map)
}

#[test]
fn torn_writes_are_detected_dropped_and_fetched_again_never_served() {
    let s = Scratch::new("torn");
    let src = s.root.join("src");
    let (a_size, b_size) = (2 * MIB, MIB + 100);
    write_file(&src.join("a.bin"), a_size, 41, 0o644);
    write_file(&src.join("b.bin"), b_size, 42, 0o644);
    let (mnt, store) = (s.dir("mnt"), s.dir("store"));
    let (mut device, mut host) = start_pair(&mnt, &store, &[src.to_str().unwrap()]);
    assert!(wait_exit(&mut host, Duration::from_secs(60)).success());
    stop_device(device.id() as i32, &mnt);
    device.wait().unwrap();

    // Torn writes: pages 3 and 400 of a.bin marked present with wrong data
    // (far apart, so that no readahead of one reaches the other); b.bin's
    // map cut short.
    let (a_data, _) = store_files(&store, a_size);
    let f = OpenOptions::new().write(true).open(&a_data).unwrap();
    f.write_all_at(&[0xee; 100], 3 * PAGE + 10).unwrap();
    f.write_all_at(&[0x11; 1], 400 * PAGE + PAGE - 1).unwrap();
    let (_, b_map) = store_files(&store, b_size);
    let len = fs::metadata(&b_map).unwrap().len();
    OpenOptions::new()
        .write(true)
        .open(&b_map)
        .unwrap()
        .set_len(len - 7)
        .unwrap();

    // Offline, nothing bad is served: the torn page and all of b.bin fail
    // with EIO; the pages after it are good.
    let mut offline = device_command(&mnt, &store, "--offline")
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for("the offline mount", Duration::from_secs(20), || {
        is_mounted(&mnt)
    });
    let a = mnt.join("src/a.bin");
    let limit = Duration::from_secs(5);
    let read = |path: &Path, offset: u64, len: usize, seed: u64| {
        checked_read(path, offset, &content(seed, offset, len), limit, "torn").0
    };
    assert_eq!(read(&a, 3 * PAGE, 4096, 41), Read::Eio, "torn page 3");
    assert_eq!(read(&a, 4 * PAGE, 16 * PAGE as usize, 41), Read::Good);
    let b = mnt.join("src/b.bin");
    assert_eq!(
        read(&b, 0, 4096, 42),
        Read::Eio,
        "b.bin after its map was cut"
    );
    assert_eq!(read(&b, b_size - 50, 50, 42), Read::Eio);
    stop_device(offline.id() as i32, &mnt);
    offline.wait().unwrap();

    // With a host: page 400 (never read yet) is caught when read, page 3
    // was dropped already, b.bin starts afresh; all are sent again. The
    // stream is slowed to last several seconds, so the host is still there
    // when page 400 is read: a bad page found after a host has left can
    // only fail with EIO at the read timeout (nothing can send it).
    let record = s.root.join("record.tsv");
    let (mut device, mut host) = start_pair(
        &mnt,
        &store,
        &[
            "--record",
            record.to_str().unwrap(),
            "--rate",
            "256K",
            src.to_str().unwrap(),
        ],
    );
    wait_for("the mount", Duration::from_secs(20), || is_mounted(&mnt));
    assert_eq!(
        read(&a, 400 * PAGE, PAGE as usize, 41),
        Read::Good,
        "page 400 refetched"
    );
    assert!(wait_exit(&mut host, Duration::from_secs(60)).success());
    assert_same_tree(&src, &mnt.join("src"));
    stop_device(device.id() as i32, &mnt);
    device.wait().unwrap();

    let events = read_record(&record);
    let id_of = |name: &str| {
        events
            .iter()
            .find_map(|e| match e {
                RecordEvent::File { id, path, .. } if path.ends_with(name) => Some(*id),
                _ => None,
            })
            .unwrap()
    };
    let (a_id, b_id) = (id_of("a.bin"), id_of("b.bin"));
    let mut a_sent: Vec<u64> = Vec::new();
    let mut b_sent = 0;
    for p in sent_pages(&events) {
        if p.file == a_id {
            a_sent.push(p.page);
        } else if p.file == b_id {
            b_sent += 1;
        }
    }
    a_sent.sort();
    a_sent.dedup();
    assert_eq!(a_sent, vec![3, 400], "a.bin: exactly the torn pages again");
    assert_eq!(b_sent, b_size.div_ceil(PAGE), "b.bin: every page again");
    let (code, _, text) = verify(&store);
    assert_eq!(code, 0, "{text}");
}
