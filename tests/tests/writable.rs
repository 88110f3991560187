//! Writable mounts (`feedfs-device mount --writable`) end to end, through
//! a real FUSE mount fed over pipes: writes made while the file still
//! streams (whole pages over missing ones, parts of missing pages that
//! wait for them, rewrites) checked byte for byte against a model, after
//! fsync and SIGKILL, after a restart with a host and offline, through
//! `overlay export`; the host's original never changes; fixed sizes and a
//! fixed tree; a host serving another version of a written file. These
//! tests need /dev/fuse and the right to mount; they fail without.

use std::fs::{self, File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use feedfs_tests::peers::{device_command, pipe_pair, stop_device, wait_exit};
use feedfs_tests::relay::Rng;
use feedfs_tests::*;

const MIB: u64 = 1 << 20;
const SIZE: u64 = 24 * MIB;
const SEED: u64 = 41;

/// A writable device and a host joined by two pipes.
fn start_pair(mnt: &Path, store: &Path, host_args: &[&str]) -> (Child, Child) {
    let (device, host) = pipe_pair(mnt, store, &["--writable"], host_args);
    wait_for("the mount", Duration::from_secs(20), || is_mounted(mnt));
    (device, host)
}

fn overlay(store: &Path, args: &[&str]) -> std::process::Output {
    Command::new(bin("feedfs-device"))
        .args(["overlay", "--store"])
        .arg(store)
        .args(args)
        .output()
        .unwrap()
}

/// `feedfs-device overlay ARGS`, which must succeed.
fn overlay_ok(store: &Path, args: &[&str]) {
    let out = overlay(store, args);
    assert!(
        out.status.success(),
        "overlay {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The whole of `path`, read through the mount.
/// The store's only file with this extension (`data`, `writes`).
fn stored(store: &Path, ext: &str) -> std::path::PathBuf {
    fs::read_dir(store.join("files"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == ext))
        .unwrap_or_else(|| panic!("no .{ext} file in {}", store.display()))
}

/// `feedfs-device verify --store STORE`.
fn verify(store: &Path) -> std::process::Output {
    Command::new(bin("feedfs-device"))
        .args(["verify", "--store"])
        .arg(store)
        .output()
        .unwrap()
}

fn whole(path: &Path) -> Vec<u8> {
    fs::read(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

fn assert_same(got: &[u8], want: &[u8], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    if let Some(i) = (0..got.len()).find(|&i| got[i] != want[i]) {
        panic!("{what}: first wrong byte at {i} (page {})", i / 4096);
    }
}

/// Random writes and reads of `img` while it streams: whole pages,
/// unaligned spans that cover parts of missing pages, rewrites; every
/// read checked against `model`, which the writes update.
fn scribble(img: &Path, model: &mut [u8], rng: &mut Rng, ops: usize) -> usize {
    let f = OpenOptions::new().read(true).write(true).open(img).unwrap();
    let mut writes = 0;
    for i in 0..ops {
        match rng.below(3) {
            0 => {
                let page = rng.below(SIZE / 4096);
                let data = content(1000 + i as u64, 0, 4096);
                f.write_all_at(&data, page * 4096).unwrap();
                model[(page * 4096) as usize..][..4096].copy_from_slice(&data);
                writes += 1;
            }
            1 => {
                let len = 1 + rng.below(10_000) as usize;
                let at = rng.below(SIZE - len as u64);
                let data = content(2000 + i as u64, 0, len);
                f.write_all_at(&data, at).unwrap();
                model[at as usize..][..len].copy_from_slice(&data);
                writes += 1;
            }
            _ => {
                let at = rng.below(SIZE - 4096);
                let mut buf = vec![0u8; 4096];
                f.read_exact_at(&mut buf, at).unwrap();
                assert_same(
                    &buf,
                    &model[at as usize..][..4096],
                    &format!("read {i} at {at}"),
                );
            }
        }
    }
    f.sync_all().unwrap();
    writes
}

/// Write `data` at `at` of `path` through a shared writable mapping, then
/// msync it, as a program that maps its data file does.
fn mmap_write(path: &Path, model: &mut [u8], at: u64, data: &[u8]) {
    use std::os::fd::AsRawFd;
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .unwrap();
    let len = SIZE as usize;
    // SAFETY: a fresh shared mapping of the whole file, written within its
    // bounds and unmapped before `f` is dropped.
    unsafe {
        let p = libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED,
            f.as_raw_fd(),
            0,
        );
        assert_ne!(
            p,
            libc::MAP_FAILED,
            "mmap: {}",
            std::io::Error::last_os_error()
        );
        let bytes = std::slice::from_raw_parts_mut(p as *mut u8, len);
        bytes[at as usize..][..data.len()].copy_from_slice(data);
        assert_eq!(
            libc::msync(p, len, libc::MS_SYNC),
            0,
            "msync: {}",
            std::io::Error::last_os_error()
        );
        libc::munmap(p, len);
    }
    model[at as usize..][..data.len()].copy_from_slice(data);
}

#[test]
fn writes_during_the_stream_survive_a_kill_after_fsync_and_never_reach_the_host() {
    let s = Scratch::new("writable");
    let src = s.root.join("src");
    write_file(&src.join("img"), SIZE, SEED, 0o644);
    let (mnt, store) = (s.dir("mnt"), s.dir("store"));
    let img = mnt.join("src/img");
    let mut model = content(SEED, 0, SIZE as usize);
    let mut rng = Rng::new(7);

    // A slow stream: most writes land before their pages arrive.
    let (mut device, mut host) = start_pair(&mnt, &store, &["--rate", "3M", src.to_str().unwrap()]);
    let writes = scribble(&img, &mut model, &mut rng, 400);
    assert!(
        host.try_wait().unwrap().is_none(),
        "the stream ended before the writes did"
    );
    signal(device.id() as i32, libc::SIGKILL);
    device.wait().unwrap();
    wait_exit(&mut host, Duration::from_secs(20));
    detach(&mnt);

    // Again with a host: the missing pages arrive, the written ones stay.
    let (device, mut host) = start_pair(&mnt, &store, &[src.to_str().unwrap()]);
    assert!(
        wait_exit(&mut host, Duration::from_secs(60)).success(),
        "second push"
    );
    assert_same(&whole(&img), &model, "after SIGKILL and a push");
    scribble(&img, &mut model, &mut rng, 100);
    mmap_write(&img, &mut model, 3 * MIB + 100, b"through a shared mapping");
    stop_device(device.id() as i32, &mnt);

    // Offline: everything is in the store.
    let mut offline = device_command(&mnt, &store, "--offline")
        .arg("--writable")
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for("the offline mount", Duration::from_secs(20), || {
        is_mounted(&mnt)
    });
    assert_same(&whole(&img), &model, "offline");
    stop_device(offline.id() as i32, &mnt);
    offline.wait().unwrap();

    let exported = s.root.join("exported.img");
    let out = overlay(
        &store,
        &["export", "src/img", "-o", exported.to_str().unwrap()],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_same(&fs::read(&exported).unwrap(), &model, "exported");
    let list = String::from_utf8(overlay(&store, &["list"]).stdout).unwrap();
    assert!(
        list.starts_with("src/img\t") && list.contains("served"),
        "{list}"
    );

    assert_same(
        &fs::read(src.join("img")).unwrap(),
        &content(SEED, 0, SIZE as usize),
        "the host's original",
    );
    eprintln!("{writes} writes during the stream, all kept");
}

#[test]
fn sizes_and_the_tree_are_fixed_and_a_read_only_mount_refuses_writes() {
    let s = Scratch::new("writable-fixed");
    let src = s.root.join("src");
    write_file(&src.join("f"), 3 * 4096 + 100, 5, 0o644);
    let (mnt, store) = (s.dir("mnt"), s.dir("store"));
    let f = mnt.join("src/f");
    let (device, mut host) = start_pair(&mnt, &store, &[src.to_str().unwrap()]);
    assert!(wait_exit(&mut host, Duration::from_secs(30)).success());
    let file = OpenOptions::new().write(true).open(&f).unwrap();
    let errno = |r: std::io::Result<()>| match r {
        Ok(()) => None,
        Err(e) => e.raw_os_error(),
    };
    assert_eq!(errno(file.set_len(10)), Some(libc::EPERM), "truncate");
    assert_eq!(
        errno(file.set_len(1 << 20)),
        Some(libc::EPERM),
        "extension by truncate"
    );
    assert_eq!(
        errno(file.write_all_at(b"xy", 3 * 4096 + 99)),
        Some(libc::EFBIG),
        "write past the end"
    );
    file.write_all_at(b"z", 3 * 4096 + 99).unwrap();
    assert_eq!(fs::metadata(&f).unwrap().len(), 3 * 4096 + 100);
    assert_eq!(
        errno(File::create(mnt.join("src/new")).map(drop)),
        Some(libc::EROFS),
        "create"
    );
    assert_eq!(
        errno(fs::rename(&f, mnt.join("src/g"))),
        Some(libc::EROFS),
        "rename"
    );
    assert_eq!(errno(fs::remove_file(&f)), Some(libc::EROFS), "unlink");
    stop_device(device.id() as i32, &mnt);

    // Without --writable: no open for writing at all.
    let mut ro = device_command(&mnt, &store, "--offline")
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for("the offline mount", Duration::from_secs(20), || {
        is_mounted(&mnt)
    });
    let err = OpenOptions::new().write(true).open(&f).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EROFS));
    // The write made before is served read-only too.
    assert_eq!(read_at(&f, 3 * 4096 + 99, 1).unwrap(), b"z");
    stop_device(ro.id() as i32, &mnt);
    ro.wait().unwrap();
}

#[test]
fn a_host_serving_another_version_of_a_written_file_is_refused_until_export_or_discard() {
    let s = Scratch::new("writable-held");
    let src = s.root.join("src");
    write_file(&src.join("img"), 2 * MIB, 8, 0o644);
    write_file(&src.join("other"), 100_000, 9, 0o644);
    let (mnt, store) = (s.dir("mnt"), s.dir("store"));
    let img = mnt.join("src/img");
    let (device, mut host) = start_pair(&mnt, &store, &[src.to_str().unwrap()]);
    assert!(wait_exit(&mut host, Duration::from_secs(30)).success());
    let mut v1 = content(8, 0, 2 * MIB as usize);
    let f = OpenOptions::new().write(true).open(&img).unwrap();
    f.write_all_at(b"written on the device", 5000).unwrap();
    v1[5000..5021].copy_from_slice(b"written on the device");
    f.sync_all().unwrap();
    drop(f);
    stop_device(device.id() as i32, &mnt);

    // The host's file changes; the next push serves the new version.
    write_file(&src.join("img"), 2 * MIB, 10, 0o644);
    let (device, mut host) = start_pair(&mnt, &store, &[src.to_str().unwrap()]);
    assert!(wait_exit(&mut host, Duration::from_secs(30)).success());
    let err = File::open(&img).unwrap_err();
    assert_eq!(
        err.raw_os_error(),
        Some(libc::EIO),
        "a held file must not open"
    );
    assert_eq!(
        whole(&mnt.join("src/other")),
        content(9, 0, 100_000),
        "other files are served"
    );
    let status = Command::new(bin("feedfs-device"))
        .args(["status", "--store"])
        .arg(&store)
        .output()
        .unwrap();
    let status = String::from_utf8_lossy(&status.stdout);
    assert!(status.contains("held"), "{status}");
    stop_device(device.id() as i32, &mnt);

    let list = String::from_utf8(overlay(&store, &["list"]).stdout).unwrap();
    assert!(
        list.contains("src/img\t4096 written") && list.contains("held"),
        "{list}"
    );
    let old = s.root.join("v1.img");
    overlay_ok(&store, &["export", "src/img", "-o", old.to_str().unwrap()]);
    assert_same(
        &fs::read(&old).unwrap(),
        &v1,
        "the old version with its writes",
    );
    overlay_ok(&store, &["discard", "src/img"]);

    // Discarded: the new version is served, byte for byte.
    let (device, mut host) = start_pair(&mnt, &store, &[src.to_str().unwrap()]);
    assert!(wait_exit(&mut host, Duration::from_secs(30)).success());
    assert_same(
        &whole(&img),
        &content(10, 0, 2 * MIB as usize),
        "the new version",
    );
    stop_device(device.id() as i32, &mnt);
}

#[test]
fn export_names_the_missing_ranges_when_the_store_lacks_pages() {
    let s = Scratch::new("writable-export");
    let src = s.root.join("src");
    write_file(&src.join("img"), 8 * MIB, 12, 0o644);
    let (mnt, store) = (s.dir("mnt"), s.dir("store"));
    let (mut device, mut host) = start_pair(&mnt, &store, &["--no-stream", src.to_str().unwrap()]);
    let f = OpenOptions::new()
        .write(true)
        .open(mnt.join("src/img"))
        .unwrap();
    f.write_all_at(&[7u8; 8192], 4096).unwrap();
    f.sync_all().unwrap();
    drop(f);
    signal(device.id() as i32, libc::SIGTERM);
    device.wait().unwrap();
    wait_exit(&mut host, Duration::from_secs(20));
    let out = overlay(
        &store,
        &[
            "export",
            "src/img",
            "-o",
            s.root.join("x").to_str().unwrap(),
        ],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("bytes 0..4096, 12288..8388608"), "{err}");
    assert!(
        !s.root.join("x").exists(),
        "a failed export must leave no file"
    );
}

#[test]
fn a_write_the_full_store_cannot_hold_fails_with_enospc_and_loses_nothing_written() {
    let s = Scratch::new("writable-full");
    let src = s.root.join("src");
    write_file(&src.join("img"), 16 * MIB, 13, 0o644);
    let (mnt, disk) = (s.dir("mnt"), s.dir("disk"));
    mount_tmpfs(&disk, 4 * MIB);
    let store = disk.join("store");
    let (mut device, mut host) = start_pair(&mnt, &store, &["--no-stream", src.to_str().unwrap()]);
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .open(mnt.join("src/img"))
        .unwrap();
    let mut written = Vec::new();
    let err = (0..16u64)
        .find_map(|i| {
            let data = content(500 + i, 0, MIB as usize);
            match f.write_all_at(&data, i * MIB) {
                Ok(()) => {
                    written.push((i, data));
                    None
                }
                Err(e) => Some(e),
            }
        })
        .expect("16 MiB of writes cannot fit a 4 MiB store");
    assert_eq!(err.raw_os_error(), Some(libc::ENOSPC), "{err}");
    assert!(!written.is_empty(), "some writes fit");
    for (i, data) in &written {
        let mut back = vec![0u8; MIB as usize];
        f.read_exact_at(&mut back, i * MIB).unwrap();
        assert_same(&back, data, &format!("MiB {i} after the disk filled"));
    }
    drop(f);
    signal(device.id() as i32, libc::SIGTERM);
    device.wait().unwrap();
    wait_exit(&mut host, Duration::from_secs(20));
}

#[test]
fn two_thousand_written_files_fit_ulimit_1024() {
    use std::os::unix::process::CommandExt;
    const FILES: u64 = 2000;
    let s = Scratch::new("writable-many");
    let src = s.root.join("src");
    for i in 0..FILES {
        write_file(&src.join(format!("d{}/f{i}", i / 500)), 8192, i, 0o644);
    }
    let (mnt, store) = (s.dir("mnt"), s.dir("store"));
    let limited = |cmd: &mut Command| {
        // SAFETY: the closure runs between fork and exec and only calls
        // setrlimit, which is async-signal-safe and allocates nothing.
        unsafe {
            cmd.pre_exec(|| {
                nix::sys::resource::setrlimit(
                    nix::sys::resource::Resource::RLIMIT_NOFILE,
                    1024,
                    1024,
                )?;
                Ok(())
            });
        }
    };
    let mut device = device_command(&mnt, &store, "--stdio");
    device
        .arg("--writable")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    limited(&mut device);
    let mut device = device.spawn().unwrap();
    let mut host = feedfs_tests::peers::host_command(&[src.to_str().unwrap()])
        .stdin(Stdio::from(device.stdout.take().unwrap()))
        .stdout(Stdio::from(device.stdin.take().unwrap()))
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    assert!(wait_exit(&mut host, Duration::from_secs(120)).success());
    let path = |i: u64| mnt.join(format!("src/d{}/f{i}", i / 500));
    for i in 0..FILES {
        let f = OpenOptions::new().write(true).open(path(i)).unwrap();
        f.write_all_at(&i.to_le_bytes(), 100).unwrap();
    }
    let fds = fs::read_dir(format!("/proc/{}/fd", device.id()))
        .unwrap()
        .count();
    assert!(fds < 1024, "{fds} descriptors open in the daemon");
    let check = || {
        for i in (0..FILES).step_by(7) {
            let mut want = content(i, 0, 8192);
            want[100..108].copy_from_slice(&i.to_le_bytes());
            assert_same(&whole(&path(i)), &want, &format!("file {i}"));
        }
    };
    check();
    stop_device(device.id() as i32, &mnt);
    device.wait().unwrap();
    let mut offline = device_command(&mnt, &store, "--offline");
    offline.stderr(Stdio::null());
    limited(&mut offline);
    let mut offline = offline.spawn().unwrap();
    wait_for("the offline mount", Duration::from_secs(60), || {
        is_mounted(&mnt)
    });
    check();
    stop_device(offline.id() as i32, &mnt);
    offline.wait().unwrap();
}

#[test]
fn a_damaged_writes_file_holds_its_file_until_discard_drops_it() {
    let s = Scratch::new("writable-damaged");
    let src = s.root.join("src");
    write_file(&src.join("img"), MIB, 14, 0o644);
    let (mnt, store) = (s.dir("mnt"), s.dir("store"));
    let img = mnt.join("src/img");
    let (device, mut host) = start_pair(&mnt, &store, &[src.to_str().unwrap()]);
    assert!(wait_exit(&mut host, Duration::from_secs(30)).success());
    let f = OpenOptions::new().write(true).open(&img).unwrap();
    f.write_all_at(b"mine", 10).unwrap();
    f.sync_all().unwrap();
    drop(f);
    stop_device(device.id() as i32, &mnt);
    let writes = stored(&store, "writes");
    let mut bytes = fs::read(&writes).unwrap();
    bytes[0] ^= 0xff;
    fs::write(&writes, bytes).unwrap();

    let (device, mut host) = start_pair(&mnt, &store, &[src.to_str().unwrap()]);
    assert!(wait_exit(&mut host, Duration::from_secs(30)).success());
    assert_eq!(
        File::open(&img).unwrap_err().raw_os_error(),
        Some(libc::EIO)
    );
    stop_device(device.id() as i32, &mnt);
    let list = String::from_utf8(overlay(&store, &["list"]).stdout).unwrap();
    assert!(list.contains("damaged"), "{list}");
    overlay_ok(&store, &["discard", "src/img"]);
    let (device, mut host) = start_pair(&mnt, &store, &[src.to_str().unwrap()]);
    assert!(wait_exit(&mut host, Duration::from_secs(30)).success());
    assert_same(
        &whole(&img),
        &content(14, 0, MIB as usize),
        "the host's file again",
    );
    stop_device(device.id() as i32, &mnt);
}

#[test]
fn verify_reports_a_torn_written_page_and_a_whole_rewrite_heals_it() {
    let s = Scratch::new("writable-torn");
    let src = s.root.join("src");
    write_file(&src.join("img"), MIB, 15, 0o644);
    let (mnt, store) = (s.dir("mnt"), s.dir("store"));
    let img = mnt.join("src/img");
    let (device, mut host) = start_pair(&mnt, &store, &[src.to_str().unwrap()]);
    assert!(wait_exit(&mut host, Duration::from_secs(30)).success());
    let f = OpenOptions::new().write(true).open(&img).unwrap();
    f.write_all_at(&[7; 4096], 3 * 4096).unwrap();
    f.sync_all().unwrap();
    drop(f);
    stop_device(device.id() as i32, &mnt);
    // What a power cut in the middle of the page's data leaves: half new,
    // half something else, matching neither its old nor its new CRC.
    let data = stored(&store, "data");
    let d = OpenOptions::new().write(true).open(&data).unwrap();
    d.write_all_at(&[9; 2048], 3 * 4096 + 2048).unwrap();
    drop(d);
    let out = verify(&store);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(3), "{text}");
    assert!(
        text.contains("torn by a crash") && text.contains("pages [3]"),
        "{text}"
    );
    // Mounted again: the torn page fails, the rest is served; a whole
    // write of it heals it.
    let (device, mut host) = start_pair(&mnt, &store, &[src.to_str().unwrap()]);
    assert!(wait_exit(&mut host, Duration::from_secs(30)).success());
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .open(&img)
        .unwrap();
    let mut buf = [0u8; 4096];
    assert_eq!(
        f.read_exact_at(&mut buf, 3 * 4096)
            .unwrap_err()
            .raw_os_error(),
        Some(libc::EIO)
    );
    f.read_exact_at(&mut buf, 4 * 4096).unwrap();
    assert_eq!(&buf[..], &content(15, 4 * 4096, 4096)[..]);
    f.write_all_at(&[8; 4096], 3 * 4096).unwrap();
    f.sync_all().unwrap();
    drop(f);
    stop_device(device.id() as i32, &mnt);
    let out = verify(&store);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}
