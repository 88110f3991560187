//! End to end, what `feedfs-host push` promises its user: which version of
//! a file is served, what a push says when it ends, how it gives up and how
//! it stops. The real binaries over real pipes into a real FUSE mount; these
//! tests fail, never skip, without /dev/fuse.

use std::fs::{self, File};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, SystemTime};

use feedfs_tests::peers::{device_command, stop_device, wait_exit};
use feedfs_tests::*;

const MIB: u64 = 1 << 20;

/// A device daemon on `mnt` and `store`, and a host pushing `args` to it
/// over pipes, its stderr captured. The daemon's stderr goes to
/// `store/../device.err` so it cannot hold the host's pipe open.
fn start_push(mnt: &Path, store: &Path, args: &[&str]) -> (Child, Child) {
    let err = File::create(store.with_extension("err")).unwrap();
    let mut device = device_command(mnt, store, "--stdio")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(err)
        .spawn()
        .unwrap();
    let host = Command::new(bin("feedfs-host"))
        .args(["push", "--stdio"])
        .args(args)
        .stdin(Stdio::from(device.stdout.take().unwrap()))
        .stdout(Stdio::from(device.stdin.take().unwrap()))
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    (device, host)
}

/// Run one push to completion: the host's exit status and stderr; the
/// daemon is left running, serving the mount.
fn push(mnt: &Path, store: &Path, args: &[&str]) -> (Child, ExitStatus, String) {
    let (device, host) = start_push(mnt, store, args);
    let out = host.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    (device, out.status, stderr)
}

fn stop(mut device: Child, mnt: &Path) {
    stop_device(device.id() as i32, mnt);
    device.wait().unwrap();
}

/// Set a file's modification time, as `touch -d @SECS` does.
fn set_mtime(path: &Path, secs: u64) {
    File::options()
        .write(true)
        .open(path)
        .unwrap()
        .set_modified(SystemTime::UNIX_EPOCH + Duration::from_secs(secs))
        .unwrap();
}

#[test]
fn an_edit_in_place_with_the_old_mtime_is_served_new() {
    let s = Scratch::new("mtime");
    let (mnt, store) = (s.dir("mnt"), s.dir("store"));
    let img = s.root.join("img");
    write_file(&img, 16 * MIB, 11, 0o644);
    set_mtime(&img, 315_532_800);
    let (device, status, stderr) = push(&mnt, &store, &[img.to_str().unwrap()]);
    assert!(status.success(), "first push: {status}: {stderr}");
    assert_same_tree(&img, &mnt.join("img"));
    stop(device, &mnt);

    // dd conv=notrunc of 1 MiB in the middle, then the old mtime again.
    let f = File::options().write(true).open(&img).unwrap();
    f.write_all_at(&content(12, 0, MIB as usize), 8 * MIB).unwrap();
    drop(f);
    set_mtime(&img, 315_532_800);

    let (device, status, stderr) = push(&mnt, &store, &[img.to_str().unwrap()]);
    assert!(status.success(), "second push: {status}: {stderr}");
    assert_same_tree(&img, &mnt.join("img"));
    stop(device, &mnt);
    fs::remove_file(&img).unwrap();
}
