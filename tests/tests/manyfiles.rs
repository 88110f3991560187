//! Many files under the default descriptor limit: 100,000 tiny files (an
//! empty one in ten) pushed with both binaries limited to 1024 open
//! descriptors, soft and hard, so that raising the soft limit cannot help.
//! The daemon must open its store files on demand: it keeps a bounded set
//! open, whatever the number of files. A sample of files is read back byte
//! for byte. The tree and the store are on a tmpfs, so the test measures
//! the daemon rather than the disk (on a small VM's ext4, creating and
//! removing the 300,000 files took minutes). Needs /dev/fuse and the right
//! to mount; fails without.

use std::fs;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use feedfs_tests::peers::{device_command, host_command, stop_device, wait_exit};
use feedfs_tests::*;

const FILES: u64 = 100_000;
const PER_DIR: u64 = 1000;
const LIMIT: libc::rlim_t = 1024;
/// The device's `store::OPEN_FILES`: pairs of store files open at most.
const STORE_OPEN_FILES: usize = 256;

fn size_of(i: u64) -> u64 {
    if i.is_multiple_of(10) {
        0
    } else {
        1 + i % 300
    }
}

fn path_of(i: u64) -> String {
    format!("d{:03}/f{i:06}", i / PER_DIR)
}

/// Run `cmd` with at most [`LIMIT`] open descriptors, soft and hard.
fn limited(cmd: &mut Command) -> &mut Command {
    use nix::sys::resource::{setrlimit, Resource};
    // SAFETY: pre_exec has no safe form; the closure runs in the child
    // between fork and exec and only calls setrlimit, which is
    // async-signal-safe and allocates nothing (nor does its error).
    unsafe {
        cmd.pre_exec(|| {
            setrlimit(Resource::RLIMIT_NOFILE, LIMIT, LIMIT)?;
            Ok(())
        })
    }
}

/// Open descriptors of process `pid`.
fn fd_count(pid: u32) -> usize {
    fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count())
}

/// A field of /proc/PID/status, in kB.
fn status_kb(pid: u32, field: &str) -> u64 {
    let text = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches(" kB").parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
}

fn write_tree(src: &Path) {
    for d in 0..FILES / PER_DIR {
        fs::create_dir_all(src.join(format!("d{d:03}"))).unwrap();
    }
    for i in 0..FILES {
        fs::write(src.join(path_of(i)), content(i, 0, size_of(i) as usize)).unwrap();
    }
}

#[test]
fn a_hundred_thousand_files_under_ulimit_1024() {
    let s = Scratch::new("manyfiles");
    let disk = s.dir("disk");
    mount_tmpfs(&disk, 2 << 30);
    let src = disk.join("src");
    write_tree(&src);
    let (mnt, store) = (s.dir("mnt"), disk.join("store"));

    let start = Instant::now();
    let mut device = device_command(&mnt, &store, "--stdio");
    let mut device = limited(&mut device)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let device_pid = device.id();
    let mut err = device.stderr.take().unwrap();
    let device_log = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = std::io::Read::read_to_string(&mut err, &mut s);
        s
    });
    let mut host = host_command(&[src.to_str().unwrap()]);
    let mut host = limited(&mut host)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::from(device.stdout.take().unwrap()))
        .stdout(Stdio::from(device.stdin.take().unwrap()))
        .spawn()
        .unwrap();
    let limits = fs::read_to_string(format!("/proc/{device_pid}/limits")).unwrap();
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap();
    assert_eq!(
        line.split_whitespace().collect::<Vec<_>>()[3..5],
        ["1024", "1024"],
        "the daemon runs with 1024 descriptors, soft and hard: {line}"
    );

    // Sample the daemon's descriptors while it works.
    let (stop, peak) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicUsize::new(0)),
    );
    let sampler = {
        let (stop, peak) = (stop.clone(), peak.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                peak.fetch_max(fd_count(device_pid), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(20));
            }
        })
    };
    let status = wait_exit(&mut host, Duration::from_secs(240));
    let pushed = start.elapsed();
    if !status.success() {
        stop_device(device_pid as i32, &mnt);
        panic!(
            "the push failed ({status}); device log:\n{}",
            device_log.join().unwrap()
        );
    }
    assert!(is_mounted(&mnt));

    // Read a sample back, empty files included, through the mount.
    let mut checked = 0;
    for i in (0..FILES).step_by(97).chain([FILES - 1]) {
        let p = mnt.join("src").join(path_of(i));
        let got = fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        assert!(
            got == content(i, 0, size_of(i) as usize),
            "WRONG BYTES in {}",
            p.display()
        );
        checked += 1;
    }
    assert_eq!(
        fs::read_dir(mnt.join("src/d042")).unwrap().count() as u64,
        PER_DIR
    );
    stop.store(true, Ordering::Relaxed);
    sampler.join().unwrap();
    let peak_fds = peak.load(Ordering::Relaxed);
    let rss_kb = status_kb(device_pid, "VmHWM:");
    eprintln!(
        "{FILES} files pushed in {pushed:.1?}; {checked} read back; daemon: \
         peak {peak_fds} descriptors, peak RSS {} MiB",
        rss_kb / 1024
    );
    assert!(
        peak_fds <= 2 * STORE_OPEN_FILES + 64,
        "the daemon's descriptors are bounded: {peak_fds} at the peak"
    );
    stop_device(device_pid as i32, &mnt);
    assert!(device.wait().unwrap().success());
    let log = device_log.join().unwrap();
    assert!(!log.contains("Too many open files"), "device log:\n{log}");
}
