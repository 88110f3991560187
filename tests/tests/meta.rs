//! What the mount says about its entries besides their bytes, end to end
//! with the real binaries: each entry's modification time is the host's
//! (to the nanosecond, before 1970 too) and stays so across a restart of
//! the daemon, so `make`, `rsync` and `cp -a` see nothing changed; a
//! symbolic link inside the pushed tree is a link on the mount, with the
//! same target, while one that leads outside the tree is left out. These
//! tests need /dev/fuse and the right to mount (root); they fail without.

use std::fs::{self, File};
use std::os::unix::fs::{symlink, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, SystemTime};

use feedfs_tests::peers::{device_command, stop_device};
use feedfs_tests::*;

fn device_cmd(mnt: &Path, store: &Path) -> String {
    format!(
        "exec {} mount {} --store {} --stdio",
        bin("feedfs-device").display(),
        mnt.display(),
        store.display()
    )
}

/// Push `src` to a new daemon on `mnt` and `store`; it stays mounted.
fn push(src: &Path, mnt: &Path, store: &Path) {
    let status = Command::new(bin("feedfs-host"))
        .args(["push", "--exec", &device_cmd(mnt, store)])
        .arg(src)
        .status()
        .unwrap();
    assert!(status.success(), "feedfs-host push failed: {status}");
    assert!(is_mounted(mnt));
}

/// Stop the daemon on `store` and mount it again without a link.
fn restart_offline(mnt: &Path, store: &Path) -> Child {
    stop_device(device_pid(store), mnt);
    let offline = device_command(mnt, store, "--offline")
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for("the offline mount", Duration::from_secs(20), || {
        is_mounted(mnt)
    });
    offline
}

/// Set the modification time of `path` (a file or a directory).
fn set_mtime(path: &Path, t: SystemTime) {
    File::open(path).unwrap().set_modified(t).unwrap();
}

/// `(path, seconds, nanoseconds)` of every entry below `root`, links not
/// followed, sorted by path.
fn stamps(root: &Path) -> Vec<(PathBuf, i64, i64)> {
    let mut out = Vec::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let m = fs::symlink_metadata(root.join(&rel)).unwrap();
        if m.is_dir() {
            for e in fs::read_dir(root.join(&rel)).unwrap() {
                stack.push(rel.join(e.unwrap().file_name()));
            }
        }
        out.push((rel, m.mtime(), m.mtime_nsec()));
    }
    out.sort();
    out
}

#[test]
fn mtime_is_the_hosts_and_stable_across_restarts() {
    let s = Scratch::new("mtime-served");
    let src = s.root.join("src");
    let epoch = SystemTime::UNIX_EPOCH;
    let files: [(&str, u64, SystemTime); 4] = [
        (
            "new.bin",
            100_000,
            epoch + Duration::new(1_700_000_000, 123_456_789),
        ),
        ("d/old.txt", 10, epoch + Duration::from_secs(315_532_800)),
        ("d/empty", 0, epoch + Duration::new(1_000_000_000, 1)),
        (
            "d/e/before-1970",
            5000,
            epoch - Duration::new(365 * 86_400, 500_000_000),
        ),
    ];
    for (i, (path, size, t)) in files.iter().enumerate() {
        write_file(&src.join(path), *size, i as u64, 0o644);
        set_mtime(&src.join(path), *t);
    }
    // Directories last: creating their entries changed their times.
    set_mtime(&src.join("d/e"), epoch + Duration::new(1_234_567_890, 987));
    set_mtime(&src.join("d"), epoch + Duration::from_secs(86_400));
    let want = stamps(&src);

    let (mnt, store) = (s.dir("mnt"), s.dir("store"));
    push(&src, &mnt, &store);
    let served = mnt.join("src");
    assert_eq!(stamps(&served), want, "modification times on the mount");
    // Read through, the times do not move (reading is not a change).
    assert_same_tree(&src, &served);
    assert_eq!(stamps(&served), want, "after every byte was read");

    // The daemon restarted without a host serves the same times.
    let mut offline = restart_offline(&mnt, &store);
    assert_eq!(stamps(&served), want, "after a restart, offline");
    // `cp -a` from the mount keeps them, as from the source.
    let copy = s.root.join("copy");
    let cp = Command::new("cp")
        .arg("-a")
        .arg(&served)
        .arg(&copy)
        .status()
        .unwrap();
    assert!(cp.success(), "cp -a from the mount");
    let mut copied = stamps(&copy);
    // cp sets a directory's time after filling it; the top's is cp's own.
    copied.retain(|(p, ..)| !p.as_os_str().is_empty());
    let mut expected = want.clone();
    expected.retain(|(p, ..)| !p.as_os_str().is_empty());
    assert_eq!(copied, expected, "times of a `cp -a` of the mount");
    stop_device(offline.id() as i32, &mnt);
    offline.wait().unwrap();
}

#[test]
fn symlinks_inside_the_tree_are_links() {
    let s = Scratch::new("symlinks");
    let src = s.root.join("src");
    write_file(&src.join("a/f.txt"), 5000, 7, 0o644);
    let body = content(7, 0, 5000);
    // Inside the tree: beside, down, up and down again, to a directory.
    let inside = [
        ("a/l", "f.txt"),
        ("top", "a/f.txt"),
        ("a/up", "../top"),
        ("dl", "a"),
        ("a/dot", "./f.txt"),
    ];
    for (link, target) in inside {
        symlink(target, src.join(link)).unwrap();
    }
    // Leading out of it: left out.
    symlink("/etc/passwd", src.join("abs")).unwrap();
    symlink("../../outside", src.join("a/esc")).unwrap();
    symlink("../..", src.join("a/root")).unwrap();

    let (mnt, store) = (s.dir("mnt"), s.dir("store"));
    push(&src, &mnt, &store);
    let served = mnt.join("src");
    let check = |when: &str| {
        for (link, target) in inside {
            let at = served.join(link);
            let m = fs::symlink_metadata(&at).unwrap_or_else(|e| panic!("{when}: {link}: {e}"));
            assert!(m.file_type().is_symlink(), "{when}: {link} is a link");
            assert_eq!(
                fs::read_link(&at).unwrap(),
                Path::new(target),
                "{when}: {link}"
            );
        }
        for link in ["top", "a/up", "a/l", "a/dot"] {
            assert_eq!(
                fs::read(served.join(link)).unwrap(),
                body,
                "{when}: read through {link}"
            );
        }
        let mut through: Vec<_> = fs::read_dir(served.join("dl"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        through.sort();
        assert_eq!(through, ["dot", "f.txt", "l", "up"], "{when}: dl/");
        for out in ["abs", "a/esc", "a/root"] {
            assert!(
                fs::symlink_metadata(served.join(out)).is_err(),
                "{when}: {out} leads outside the tree and must be left out"
            );
        }
        let readlink = Command::new("readlink")
            .arg(served.join("a/up"))
            .output()
            .unwrap();
        assert_eq!(
            String::from_utf8_lossy(&readlink.stdout),
            "../top\n",
            "{when}: readlink"
        );
    };
    check("pushed");

    // `cp -a` copies the links as links.
    let copy = s.root.join("copy");
    let cp = Command::new("cp")
        .arg("-a")
        .arg(&served)
        .arg(&copy)
        .status()
        .unwrap();
    assert!(cp.success(), "cp -a from the mount");
    for (link, target) in inside {
        assert_eq!(
            fs::read_link(copy.join(link)).unwrap(),
            Path::new(target),
            "copied {link}"
        );
    }
    assert_eq!(fs::read(copy.join("a/up")).unwrap(), body);

    let mut offline = restart_offline(&mnt, &store);
    check("after a restart, offline");
    stop_device(offline.id() as i32, &mnt);
    offline.wait().unwrap();
}
