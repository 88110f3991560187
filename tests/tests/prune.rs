//! The store holds what the current manifest serves: push `f1 f2 f3`, stop,
//! rename `f1` and delete `f3`, push again; the store files of `f1` and
//! `f3` are gone, `f2` keeps its pages (it is not sent again), and
//! `status` shows the store's size on disk. Needs /dev/fuse and the right
//! to mount; fails without.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use feedfs_tests::peers::{device_command, host_command, stop_device, wait_exit};
use feedfs_tests::*;

const MIB: u64 = 1 << 20;

/// Push `src` to a new daemon on `store`, wait for the push to end, check
/// the tree through the mount and stop the daemon. Returns the host's record.
fn push(s: &Scratch, src: &Path, store: &Path, tag: &str) -> Vec<RecordEvent> {
    let mnt = s.dir(&format!("mnt-{tag}"));
    let record = s.root.join(format!("{tag}.record"));
    let mut device = device_command(&mnt, store, "--stdio")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut host = host_command(&["--record", record.to_str().unwrap(), src.to_str().unwrap()])
        .stdin(Stdio::from(device.stdout.take().unwrap()))
        .stdout(Stdio::from(device.stdin.take().unwrap()))
        .spawn()
        .unwrap();
    assert!(wait_exit(&mut host, Duration::from_secs(60)).success());
    assert_same_tree(src, &mnt.join("src"));
    stop_device(device.id() as i32, &mnt);
    assert!(device.wait().unwrap().success());
    read_record(&record)
}

/// Names in the store's `files` directory, and the bytes they take on disk.
fn store_files(store: &Path) -> (Vec<String>, u64) {
    let mut names = Vec::new();
    let mut bytes = 0;
    for e in fs::read_dir(store.join("files")).unwrap() {
        let e = e.unwrap();
        names.push(e.file_name().into_string().unwrap());
        bytes += e.metadata().unwrap().blocks() * 512;
    }
    names.sort();
    (names, bytes)
}

#[test]
fn a_second_push_prunes_what_is_no_longer_served() {
    let s = Scratch::new("prune");
    let src = s.root.join("src");
    write_file(&src.join("f1"), 3 * MIB, 71, 0o644);
    write_file(&src.join("f2"), 2 * MIB, 72, 0o644);
    write_file(&src.join("f3"), 3 * MIB, 73, 0o644);
    fs::write(src.join("empty"), b"").unwrap();
    let store = s.root.join("store");

    push(&s, &src, &store, "first");
    let (names, bytes) = store_files(&store);
    assert_eq!(
        names.len(),
        6,
        "three files, a pair each, none for the empty one: {names:?}"
    );
    assert!(bytes >= 8 * MIB, "{bytes} bytes");

    fs::rename(src.join("f1"), src.join("f1-renamed")).unwrap();
    fs::remove_file(src.join("f3")).unwrap();
    let record = push(&s, &src, &store, "second");
    let sent = |name: &str| {
        let id = record.iter().find_map(|e| match e {
            RecordEvent::File { id, path, .. } if path == name => Some(*id),
            _ => None,
        });
        let id = id.unwrap_or_else(|| panic!("{name} is not in the record"));
        record
            .iter()
            .any(|e| matches!(e, RecordEvent::Sent { file, .. } if *file == id))
    };
    assert!(sent("src/f1-renamed"), "a new path: sent");
    assert!(!sent("src/f2"), "f2 was in the store: not sent again");

    let (names, bytes) = store_files(&store);
    assert_eq!(
        names.len(),
        4,
        "only f1-renamed and f2 are stored: {names:?}"
    );
    assert!(
        (5 * MIB..6 * MIB).contains(&bytes),
        "the store holds 5 MiB of data, it takes {bytes} bytes"
    );

    let out = Command::new(bin("feedfs-device"))
        .arg("status")
        .arg("--store")
        .arg(&store)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains("on disk: 5.0 MiB for 5.0 MiB served"),
        "{text}"
    );
    assert!(text.contains("0 B / 0 B"), "the empty file: {text}");
}
