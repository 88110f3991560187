//! A real program writing to a `--writable` mount: QEMU boots a guest from a
//! raw ext4 disk image that is a file on the mount, read-write (no
//! `snapshot=on`, no overlay file), while the image still streams. The
//! guest (`tests/disk-vm/`) checks the files the image was made with,
//! writes new ones, patches one in place, removes one, fsyncs, syncs and
//! powers off. The daemon is SIGKILLed and started again twice, once with
//! a host that finishes the stream and once `--offline`, and each time a
//! new boot finds every file it wrote, every byte right. The image exported
//! from the store (`feedfs-device overlay export`) passes `e2fsck -fn`, and
//! the host's original is byte for byte what it was.
//!
//! Needs qemu-system-x86_64, busybox-static, cpio, apt-get (the kernel is
//! fetched once and cached under target/usb-vm/), e2fsprogs, /dev/fuse and
//! the right to mount; without them this test fails, it never skips.

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use feedfs_tests::peers::{device_command, stop_device, wait_exit};
use feedfs_tests::*;

const MIB: u64 = 1 << 20;
/// The image: 256 MiB of ext4 with 128 MiB of ballast that no boot reads.
const IMAGE_MIB: u64 = 256;
const BALLAST_MIB: u64 = 128;
/// The link's rate for the first push: the image's data (about 145 MiB)
/// then takes about 70 s to stream, longer than the write boot (25 to 40 s
/// under TCG, the pages it reads included: demands go first, at the full
/// rate).
const RATE: &str = "2M";

/// A script of the guest kit.
fn kit(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("disk-vm")
        .join(name)
}

/// sha256sum of a file, in hex.
fn sha256(path: &Path) -> String {
    let out = Command::new("sha256sum")
        .arg(path)
        .output()
        .expect("sha256sum (coreutils) runs");
    assert!(
        out.status.success(),
        "sha256sum {}: {out:?}",
        path.display()
    );
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .expect("a checksum")
        .to_string()
}

/// The last lines of each log that exists, to explain a failure.
fn tails(logs: &[PathBuf]) -> String {
    let mut out = String::new();
    for log in logs {
        let Ok(text) = fs::read_to_string(log) else {
            continue;
        };
        let lines: Vec<&str> = text.lines().collect();
        out += &format!("--- last lines of {}\n", log.display());
        for l in &lines[lines.len().saturating_sub(30)..] {
            out += l;
            out.push('\n');
        }
    }
    out
}

/// One boot of the guest kit on `image` (`--write` or `--check`); panics
/// unless the guest printed its PASS line. Returns how long it took.
fn boot(name: &str, image: &Path, mode: &str, logs: &[PathBuf]) -> Duration {
    let start = Instant::now();
    let script = kit("run");
    let out = Command::new(&script)
        .arg(name)
        .arg(image)
        .arg(mode)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
    let took = start.elapsed();
    let stdout = String::from_utf8_lossy(&out.stdout);
    // The guest's own lines always reach the log (a direct write to stderr
    // is not captured by the test harness); its whole console is shown
    // when the test fails (or with --nocapture).
    let summary: String = stdout
        .lines()
        .filter(|l| l.starts_with("DISKVM ") || l.starts_with("   "))
        .map(|l| format!("{name}: {l}\n"))
        .collect();
    let _ = std::io::stderr().write_all(summary.as_bytes());
    print!("{stdout}");
    eprint!("{}", String::from_utf8_lossy(&out.stderr));
    let pass = format!("DISKVM {}: PASS", mode.trim_start_matches('-'));
    assert!(
        out.status.success() && stdout.lines().any(|l| l.starts_with(&pass)),
        "boot {name} ({mode}) of {} failed ({}) after {took:.1?}: no '{pass}'; the guest's console is above\n{}",
        image.display(),
        out.status,
        tails(logs)
    );
    took
}

/// `feedfs-host push --exec 'feedfs-device mount MNT --store STORE --stdio
/// --writable' ARGS... IMAGE`, its stderr in `log`.
fn push(mnt: &Path, store: &Path, image: &Path, args: &[&str], log: &Path) -> Child {
    let device = format!(
        "exec {} mount {} --store {} --stdio --writable",
        bin("feedfs-device").display(),
        mnt.display(),
        store.display()
    );
    Command::new(bin("feedfs-host"))
        .arg("push")
        .args(args)
        .args(["--exec", &device])
        .arg(image)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(File::create(log).unwrap())
        .spawn()
        .unwrap()
}

/// Wait for the image to be served at its full size; fail at once, with
/// the logs, if `starter` (the push or the daemon) exits first.
fn wait_served(served: &Path, size: u64, what: &str, starter: &mut Child, logs: &[PathBuf]) {
    let mnt = served.parent().unwrap();
    let ready = || is_mounted(mnt) && fs::metadata(served).is_ok_and(|m| m.len() == size);
    let mut exited = None;
    wait_for(what, Duration::from_secs(30), || {
        exited = starter.try_wait().unwrap();
        ready() || exited.is_some()
    });
    assert!(
        ready(),
        "{what}: its starter exited first ({exited:?})\n{}",
        tails(logs)
    );
}

/// SIGKILL the daemon using `store` and detach the dead mount it leaves.
fn kill_daemon(store: &Path, mnt: &Path) {
    let pid = device_pid(store);
    signal(pid, libc::SIGKILL);
    wait_for(
        "the daemon to die of SIGKILL",
        Duration::from_secs(10),
        || !alive(pid),
    );
    detach(mnt);
}

#[test]
fn qemu_boots_read_write_from_an_image_on_a_writable_mount_while_it_streams() {
    let s = Scratch::new("diskvm");
    let src = s.dir("src");
    let image = src.join("disk.img");
    let made = Command::new(kit("make-image"))
        .arg(&image)
        .arg(IMAGE_MIB.to_string())
        .arg(BALLAST_MIB.to_string())
        .output()
        .unwrap();
    assert!(made.status.success(), "make-image: {made:?}");
    let size = IMAGE_MIB * MIB;
    let original = sha256(&image);
    let (mnt, store) = (s.dir("mnt"), s.dir("store"));
    let served = mnt.join("disk.img");
    let host_log = s.root.join("host.log");
    let logs = [host_log.clone(), store.join("log/daemon.log")];

    // 1. The first boot writes, while the image streams at RATE.
    let mut host = push(
        &mnt,
        &store,
        &image,
        &["--rate", RATE, "--compress", "none"],
        &host_log,
    );
    wait_served(
        &served,
        size,
        "the image on the writable mount",
        &mut host,
        &logs,
    );
    assert!(
        host.try_wait().unwrap().is_none(),
        "the push ended before the first boot: nothing streamed during it (lower RATE)\n{}",
        tails(&logs)
    );
    let t_write = boot("feedfs-write", &served, "--write", &logs);
    let streaming = host.try_wait().unwrap().is_none();
    // Straight to stderr, as the guest's lines: shown when the test passes too.
    let _ = writeln!(
        std::io::stderr(),
        "disk-vm: the write boot took {t_write:.1?}; the image was {} streaming when it ended",
        if streaming { "still" } else { "no longer" }
    );

    // 2. SIGKILL (in mid-stream, if the stream outlasted the boot); a host
    // finishes the stream into the same store; a boot checks.
    kill_daemon(&store, &mnt);
    wait_exit(&mut host, Duration::from_secs(20));
    let mut host = push(&mnt, &store, &image, &[], &host_log);
    assert!(
        wait_exit(&mut host, Duration::from_secs(120)).success(),
        "the second push did not finish the image\n{}",
        tails(&logs)
    );
    assert!(
        is_mounted(&mnt) && fs::metadata(&served).is_ok_and(|m| m.len() == size),
        "the image is not served after the second push\n{}",
        tails(&logs)
    );
    let t_host = boot("feedfs-check-host", &served, "--check", &logs);

    // 3. SIGKILL again; offline, a boot checks.
    kill_daemon(&store, &mnt);
    let offline_log = s.root.join("offline.log");
    let mut offline = device_command(&mnt, &store, "--offline")
        .arg("--writable")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(File::create(&offline_log).unwrap())
        .spawn()
        .unwrap();
    let logs = [offline_log, store.join("log/daemon.log")];
    wait_served(
        &served,
        size,
        "the image on the offline mount",
        &mut offline,
        &logs,
    );
    let t_offline = boot("feedfs-check-offline", &served, "--check", &logs);
    stop_device(offline.id() as i32, &mnt);
    assert!(offline.wait().unwrap().success(), "{}", tails(&logs));

    // 4. The image as the device sees it, exported: a clean filesystem,
    // with the guest's writes (so not the original); the host's original
    // untouched.
    let exported = s.root.join("exported.img");
    let out = Command::new(bin("feedfs-device"))
        .args(["overlay", "--store"])
        .arg(&store)
        .args(["export", "disk.img", "-o"])
        .arg(&exported)
        .output()
        .unwrap();
    assert!(out.status.success(), "overlay export: {out:?}");
    assert_eq!(fs::metadata(&exported).unwrap().len(), size);
    let fsck = Command::new("e2fsck")
        .arg("-fn")
        .arg(&exported)
        .output()
        .expect("e2fsck runs (apt-get install e2fsprogs)");
    assert!(
        fsck.status.success(),
        "e2fsck -fn on the exported image ({}):\n{}{}",
        fsck.status,
        String::from_utf8_lossy(&fsck.stdout),
        String::from_utf8_lossy(&fsck.stderr)
    );
    assert_ne!(
        sha256(&exported),
        original,
        "the exported image lacks the guest's writes"
    );
    assert_eq!(
        sha256(&image),
        original,
        "the host's original image changed"
    );
    let _ = writeln!(
        std::io::stderr(),
        "disk-vm: boots: write {t_write:.1?} (mid-stream), check with a host {t_host:.1?}, check offline {t_offline:.1?}; the export passes e2fsck -fn, the original is unchanged"
    );
}
