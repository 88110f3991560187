//! End to end, a block device as a source: a real loop device (`losetup`)
//! pushed as a path is a read-only file of the device's size, byte-exact
//! through the mount, and a second push on the same store resumes from it
//! (the device's identity is stable). The loop device is detached when
//! the test ends, failed or not. Needs root, /dev/fuse and loop devices;
//! fails, never skips, without.

use std::fs::{self, File};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};

use feedfs_tests::peers::{device_command, stop_device};
use feedfs_tests::*;

/// A read-only loop device over a file, detached when dropped.
struct LoopDevice(PathBuf);

impl LoopDevice {
    fn attach(image: &Path) -> LoopDevice {
        let out = Command::new("losetup")
            .args(["-f", "--show", "-r"])
            .arg(image)
            .output()
            .expect("losetup (util-linux) is needed");
        assert!(
            out.status.success(),
            "losetup -f --show -r {}: {} (this test needs root and loop devices)",
            image.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        LoopDevice(PathBuf::from(String::from_utf8(out.stdout).unwrap().trim()))
    }
}

impl Drop for LoopDevice {
    fn drop(&mut self) {
        // Detaching may fail if the device went already: nothing to do then.
        let _ = Command::new("losetup").arg("-d").arg(&self.0).status();
    }
}

/// One push of `args` over pipes to a daemon on `mnt` and `store`: the
/// daemon (left serving), the host's status and stderr.
fn push(mnt: &Path, store: &Path, args: &[&str]) -> (Child, ExitStatus, String) {
    let mut device = device_command(mnt, store, "--stdio")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(File::create(store.with_extension("err")).unwrap())
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
    let out = host.wait_with_output().unwrap();
    (
        device,
        out.status,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_loop_device_is_served_as_a_read_only_file_of_its_size_and_resumes() {
    let s = Scratch::new("blockdev");
    let (mnt, store) = (s.dir("mnt"), s.dir("store"));
    // Not a whole number of pages: the last page is short.
    let size = 8 * (1 << 20) + 1536;
    let image = s.root.join("disk.img");
    write_file(&image, size, 41, 0o644);
    let dev = LoopDevice::attach(&image);
    let name = dev.0.file_name().unwrap().to_str().unwrap().to_string();
    let record = s.root.join("record");
    let args = [
        "--record",
        record.to_str().unwrap(),
        dev.0.to_str().unwrap(),
    ];

    let (mut device, status, stderr) = push(&mnt, &store, &args);
    assert!(status.success(), "first push: {status}: {stderr}");
    let served = mnt.join(&name);
    let meta = fs::metadata(&served).unwrap();
    assert_eq!(meta.len(), size, "the file has the device's size");
    assert_eq!(meta.permissions().mode() & 0o222, 0, "read-only");
    assert!(
        fs::read(&served).unwrap() == fs::read(&image).unwrap(),
        "byte-exact"
    );
    let events = read_record(&record);
    assert_eq!(had_pages(&events), 0);
    stop_device(device.id() as i32, &mnt);
    device.wait().unwrap();

    // Same device, same content: the store's pages are its pages.
    let (mut device, status, stderr) = push(&mnt, &store, &args);
    assert!(status.success(), "second push: {status}: {stderr}");
    let events = read_record(&record);
    assert_eq!(
        had_pages(&events),
        total_pages(&events),
        "resumed from the store"
    );
    assert!(sent_pages(&events).is_empty(), "nothing sent again");
    assert!(
        fs::read(&served).unwrap() == fs::read(&image).unwrap(),
        "byte-exact"
    );
    stop_device(device.id() as i32, &mnt);
    device.wait().unwrap();
}
