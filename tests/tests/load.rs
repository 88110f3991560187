//! Load: 16 threads read several files through the mount, sequentially and
//! at random, while the host's stream is still filling them. Every byte is
//! checked against the source, every read must succeed, and no read(2) may
//! take longer than the read timeout. Seeded by `FEEDFS_LOAD_SEED`
//! (default 1). Needs /dev/fuse and the right to mount; fails without.

use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use feedfs_tests::peers::{
    checked_read, device_command, host_command, stop_device, wait_exit, Read,
};
use feedfs_tests::relay::Rng;
use feedfs_tests::*;

const MIB: u64 = 1 << 20;
const FILES: [(&str, u64, u64); 4] = [
    ("a.bin", 12 * MIB, 61),
    ("b.bin", 12 * MIB + 12_345, 62),
    ("c/d.bin", 10 * MIB, 63),
    ("c/e.bin", 9 * MIB + 1, 64),
];
const READ_TIMEOUT: Duration = Duration::from_secs(5);

#[test]
fn sixteen_readers_during_the_stream_get_every_byte_in_time() {
    let seed: u64 = std::env::var("FEEDFS_LOAD_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1);
    let what = format!("load seed {seed} (replay: FEEDFS_LOAD_SEED={seed})");
    let s = Scratch::new("load");
    let src = s.root.join("src");
    for (path, size, cseed) in FILES {
        write_file(&src.join(path), size, cseed, 0o644);
    }
    let (mnt, store) = (s.dir("mnt"), s.dir("store"));
    let mut device = device_command(&mnt, &store, "--stdio")
        .args(["--read-timeout", "5s"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut host = host_command(&["--rate", "24M", src.to_str().unwrap()])
        .stdin(Stdio::from(device.stdout.take().unwrap()))
        .stdout(Stdio::from(device.stdin.take().unwrap()))
        .spawn()
        .unwrap();
    wait_for("the mount", Duration::from_secs(20), || is_mounted(&mnt));

    let stop = Arc::new(AtomicBool::new(false));
    let (reads, bytes, slowest) = (
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
    );
    let threads: Vec<_> = (0..16u64)
        .map(|t| {
            let (mnt, stop, what) = (mnt.clone(), stop.clone(), what.clone());
            let (reads, bytes, slowest) = (reads.clone(), bytes.clone(), slowest.clone());
            std::thread::spawn(move || {
                let mut rng = Rng::new(seed * 1000 + t);
                let sequential = t % 2 == 0;
                let (path, size, cseed) = FILES[(t / 2 % 4) as usize];
                let path = mnt.join("src").join(path);
                let mut offset = 0;
                // Sequential readers go through their file once; random ones
                // read until the stream is over.
                while !(stop.load(Ordering::Relaxed) && (!sequential || offset >= size)) {
                    let len = if sequential {
                        64 * 1024 * (1 + rng.below(4))
                    } else {
                        1 + rng.below(128 * 1024)
                    }
                    .min(size);
                    if !sequential {
                        offset = rng.below(size - len + 1);
                    } else if offset >= size {
                        break;
                    }
                    let len = len.min(size - offset);
                    let expected = content(cseed, offset, len as usize);
                    let (outcome, took) =
                        checked_read(&path, offset, &expected, READ_TIMEOUT, &what);
                    assert_eq!(
                        outcome,
                        Read::Good,
                        "{what}: read of {} at {offset}",
                        path.display()
                    );
                    reads.fetch_add(1, Ordering::Relaxed);
                    bytes.fetch_add(len, Ordering::Relaxed);
                    slowest.fetch_max(took.as_millis() as u64, Ordering::Relaxed);
                    if sequential {
                        offset += len;
                    }
                }
            })
        })
        .collect();
    let status = wait_exit(&mut host, Duration::from_secs(120));
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        t.join().expect("a reader failed");
    }
    assert!(status.success(), "{what}: host {status}");
    eprintln!(
        "{what}: 16 readers, {} reads, {} MiB checked, slowest read(2) {} ms",
        reads.load(Ordering::Relaxed),
        bytes.load(Ordering::Relaxed) / MIB,
        slowest.load(Ordering::Relaxed)
    );
    assert_same_tree(&src, &mnt.join("src"));
    stop_device(device.id() as i32, &mnt);
    device.wait().unwrap();
}
