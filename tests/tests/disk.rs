//! A full disk: the store on a small size-limited tmpfs that this test
//! mounts (so it runs as root, as CI does; it fails, never skips, without
//! the right to mount). Reads of pages that cannot be stored are answered
//! from the run that brought them or fail with ENOSPC or EIO, within the
//! read timeout and never with a wrong byte; pages already present keep
//! being served, the daemon neither hangs nor dies, and the host reports the
//! device's error, naming the file, and exits non-zero. The daemon warns
//! when the manifest arrives that the store cannot hold it, and `status`
//! says the link is down once the host is gone, although no new file can
//! be written.

use std::fs;
use std::process::Stdio;
use std::time::Duration;

use feedfs_tests::peers::{
    checked_read, device_command, host_command, stop_device, wait_exit, Read,
};
use feedfs_tests::*;

const MIB: u64 = 1 << 20;

#[test]
fn a_full_store_fails_reads_clearly_keeps_serving_and_the_host_reports_it() {
    let s = Scratch::new("fulldisk");
    let src = s.root.join("src");
    write_file(&src.join("big.bin"), 16 * MIB, 51, 0o644);
    let (mnt, disk) = (s.dir("mnt"), s.dir("disk"));
    mount_tmpfs(&disk, 4 * MIB);
    // Leave about 600 KiB free: room for a few runs, not for the file.
    fs::write(
        disk.join("filler"),
        vec![1u8; (3 * MIB + 400 * 1024) as usize],
    )
    .unwrap();
    let store = disk.join("store");

    let mut device = device_command(&mnt, &store, "--stdio")
        .args(["--read-timeout", "3s"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut device_err = device.stderr.take().unwrap();
    let device_log = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = std::io::Read::read_to_string(&mut device_err, &mut s);
        s
    });
    // Demands only, so that the test decides which pages arrive and when.
    let mut host = host_command(&["--no-stream", src.to_str().unwrap()])
        .stdin(Stdio::from(device.stdout.take().unwrap()))
        .stdout(Stdio::from(device.stdin.take().unwrap()))
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for("the mount", Duration::from_secs(20), || is_mounted(&mnt));
    let big = mnt.join("src/big.bin");
    let limit = Duration::from_secs(3 + 2);
    let first = content(51, 0, 65536);
    assert_eq!(
        checked_read(&big, 0, &first, limit, "full disk").0,
        Read::Good,
        "the first 64 KiB fit"
    );

    // Random reads across the file until the store is full: each one is
    // good or fails with ENOSPC or EIO, never wrong and never late. A read
    // may be answered from the run that brought its pages although they
    // could not be stored; then the host is told, and stops.
    let mut failed = None;
    // Each read brings its pages and the kernel's readahead (16 KiB or
    // more): 240 reads, 64 KiB apart, are far more than the room left.
    for k in 16..256u64 {
        if host.try_wait().unwrap().is_some() {
            break;
        }
        let offset = k * 65536 + 4096 * (k % 16);
        let (outcome, _) =
            checked_read(&big, offset, &content(51, offset, 4096), limit, "full disk");
        if outcome != Read::Good {
            failed = Some((k, outcome));
            break;
        }
    }
    eprintln!("full disk: a read failed: {failed:?}");

    // The host was told and exits non-zero, naming the device's error.
    let status = wait_exit(&mut host, Duration::from_secs(20));
    let mut err = String::new();
    std::io::Read::read_to_string(&mut host.stderr.take().unwrap(), &mut err).unwrap();
    assert!(!status.success(), "the host must fail: {err}");
    assert!(err.contains("NoSpace"), "host stderr: {err}");
    assert!(
        err.contains("of src/big.bin in ") && err.contains("/store/files/"),
        "the error names the file and its store file: {err}"
    );

    // The host is gone: status says so, although the state file cannot be
    // replaced by a new one on the full disk.
    let status_text = || {
        let out = std::process::Command::new(bin("feedfs-device"))
            .arg("status")
            .arg("--store")
            .arg(&store)
            .output()
            .unwrap();
        assert!(out.status.success(), "status: {out:?}");
        String::from_utf8(out.stdout).unwrap()
    };
    wait_for(
        "status to say the link is down",
        Duration::from_secs(10),
        || status_text().contains("running, link down"),
    );

    // The daemon is alive, still mounted, and serves what it holds.
    assert!(alive(device.id() as i32) && is_mounted(&mnt));
    drop_cache(&big);
    assert_eq!(
        checked_read(&big, 0, &first, limit, "full disk").0,
        Read::Good
    );
    let missing = 15 * MIB;
    let (late, _) = checked_read(
        &big,
        missing,
        &content(51, missing, 4096),
        limit,
        "full disk",
    );
    assert_ne!(late, Read::Good, "a page that was never stored");
    stop_device(device.id() as i32, &mnt);
    assert!(device.wait().unwrap().success());
    let log = device_log.join().unwrap();
    assert!(
        log.contains("storing them will fail with NoSpace"),
        "a warning when the manifest arrives: {log}"
    );
    detach(&disk);
}
