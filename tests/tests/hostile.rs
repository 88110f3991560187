//! A hostile host: this test plays the host to the real `feedfs-device
//! mount --stdio` and sends what no honest host sends. Each bad manifest
//! must be refused with an Error naming the problem, nothing may be mounted
//! or written outside the store, and the daemon's peak memory stays within
//! the caps (docs/protocol.md, section 4). Bad runs after a good manifest
//! are refused the same way while the mount keeps serving. The mount never
//! shows setuid/setgid bits or special files, belongs to the daemon's user,
//! and lets other users in only with --allow-other.
//! These tests need /dev/fuse and the right to mount (root); they fail without.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use feedfs_protocol::message::{crc_table, Encoding};
use feedfs_protocol::{
    EntryKind, ErrorCode, FileId, Message, Mtime, OwnedMessage, PageCrcs, Role, VERSION,
};
use feedfs_tests::peers::{stop_device, FakeHost};
use feedfs_tests::*;

fn hello() -> Vec<u8> {
    Message::Hello {
        role: Role::Host,
        min_version: VERSION,
        max_version: VERSION,
        agent: "hostile",
    }
    .to_frame()
}

fn entry(out: &mut Vec<u8>, id: u32, kind: EntryKind, path: &str, size: u64, mode: u32) {
    link(out, id, kind, path, size, mode, "");
}

/// An entry with a link target (which only a link may have).
fn link(
    out: &mut Vec<u8>,
    id: u32,
    kind: EntryKind,
    path: &str,
    size: u64,
    mode: u32,
    target: &str,
) {
    Message::Entry {
        id: FileId(id),
        kind,
        size,
        mode,
        mtime: Mtime {
            sec: 1_600_000_000,
            nsec: 0,
        },
        identity: [9; 16],
        path,
        target,
    }
    .emit(out);
}

/// A Run of raw pages with the CRC of each page of `data`.
fn run(out: &mut Vec<u8>, file: u32, first: u64, count: u32, data: &[u8]) {
    let crcs: Vec<u32> = data.chunks(PAGE as usize).map(crc32fast::hash).collect();
    let table = crc_table(&crcs);
    Message::Run {
        file: FileId(file),
        first,
        count,
        encoding: Encoding::Raw,
        crcs: PageCrcs::new(&table).expect("whole CRCs"),
        data,
    }
    .emit(out);
}

fn end(out: &mut Vec<u8>, entries: u32, total_bytes: u64) {
    Message::ManifestEnd {
        entries,
        total_bytes,
    }
    .emit(out);
}

/// Every path below `root`, except inside the store.
fn outside_store(root: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.file_name().is_some_and(|n| n == "store") && p.parent() == Some(root) {
                continue;
            }
            out.push(p.strip_prefix(root).unwrap().display().to_string());
            if p.is_dir() {
                stack.push(p);
            }
        }
    }
    out.sort();
    out
}

/// Send `frames` as the whole session and check the refusal. Returns the
/// daemon's peak resident memory in KiB.
fn refused(name: &str, frames: &[u8], code: ErrorCode, says: &str) -> u64 {
    let s = Scratch::new(&format!("hostile-{name}"));
    let (mnt, store) = (s.dir("mnt"), s.dir("store"));
    let before = outside_store(&s.root);
    let mut host = FakeHost::start(&mnt, &store, &[]);
    // The daemon may stop reading before the end: a refused write is fine.
    for chunk in frames.chunks(1 << 20) {
        if !host.send(chunk) {
            break;
        }
    }
    host.close();
    let mut errors = Vec::new();
    while let Some(m) = host.next(Duration::from_secs(30)) {
        if let Ok(OwnedMessage::Error { code, text }) = m {
            errors.push((code, text));
        }
    }
    let (status, rss_kib, stderr) = host.wait(Duration::from_secs(30));
    assert!(!status.success(), "{name}: the daemon must refuse");
    assert_eq!(errors.len(), 1, "{name}: one Error to the host: {errors:?}");
    assert_eq!(errors[0].0, code, "{name}: {errors:?}");
    assert!(
        errors[0].1.contains(says),
        "{name}: the Error says {says:?}: {:?}",
        errors[0].1
    );
    assert!(
        stderr.contains(says),
        "{name}: stderr says {says:?}: {stderr}"
    );
    assert!(!is_mounted(&mnt), "{name}: nothing mounted");
    assert_eq!(
        outside_store(&s.root),
        before,
        "{name}: nothing written outside the store"
    );
    let stored = fs::read_dir(store.join("files")).map_or(0, |d| d.count());
    assert_eq!(stored, 0, "{name}: no file stored");
    assert!(!Path::new("/escape").exists() && !s.root.join("escape").exists());
    rss_kib
}

fn one_entry(kind: EntryKind, path: &str, size: u64) -> Vec<u8> {
    let mut f = hello();
    entry(&mut f, 0, kind, path, size, 0o644);
    end(&mut f, 1, size);
    f
}

#[test]
fn each_bad_manifest_is_refused_naming_the_problem_and_nothing_is_written() {
    use EntryKind::{Dir, File, Symlink};
    let m = ErrorCode::Manifest;
    let long = "n".repeat(256);
    let mut tried = 0;
    for (name, path, says) in [
        ("dotdot", "../escape", "\"..\""),
        ("dotdot-deep", "a/../../escape", "\"..\""),
        ("absolute", "/escape", "absolute"),
        ("nul", "a\0b", "NUL"),
        ("empty", "", "empty"),
        ("empty-component", "a//b", "empty or \".\" component"),
        ("dot-component", "a/./b", "empty or \".\" component"),
        ("trailing-slash", "a/", "empty or \".\" component"),
        ("long-name", long.as_str(), "256 bytes"),
    ] {
        refused(name, &one_entry(File, path, 10), m, says);
        tried += 1;
    }

    let mut f = hello();
    entry(&mut f, 0, File, "same", 1, 0o644);
    entry(&mut f, 1, File, "same", 1, 0o644);
    end(&mut f, 2, 2);
    refused("duplicate", &f, m, "twice");

    let mut f = hello();
    entry(&mut f, 0, File, "f", 1, 0o644);
    entry(&mut f, 1, File, "f/inside", 1, 0o644);
    end(&mut f, 2, 2);
    refused("inside-a-file", &f, m, "which is a file");

    let mut f = hello();
    entry(&mut f, 0, Dir, "d", 0, 0o755);
    entry(&mut f, 1, File, "d", 1, 0o644);
    end(&mut f, 2, 1);
    refused("file-over-dir", &f, m, "twice");

    refused("size-max", &one_entry(File, "huge", u64::MAX), m, "cap");
    refused(
        "size-max-1",
        &one_entry(File, "huge", u64::MAX - 1),
        m,
        "cap",
    );
    refused(
        "size-16TiB+1",
        &one_entry(File, "huge", (1 << 44) + 1),
        m,
        "cap",
    );
    refused("dir-with-size", &one_entry(Dir, "d", 5), m, "nonzero size");

    let mut f = hello();
    entry(&mut f, 0, File, "a", 10, 0o644);
    end(&mut f, 2, 10);
    refused("count-mismatch", &f, m, "announced 2 entries");

    let mut f = hello();
    entry(&mut f, 3, File, "a", 10, 0o644);
    end(&mut f, 1, 10);
    refused("id-out-of-order", &f, m, "expected 0");

    // Links that lead outside the mount, and a target on a file.
    for (name, path, target) in [
        ("link-absolute", "l", "/etc/passwd"),
        ("link-up", "l", "../escape"),
        ("link-up-deep", "a/b/l", "../../../escape"),
        ("link-up-and-down", "a/l", "x/../../../escape"),
    ] {
        let mut f = hello();
        link(&mut f, 0, Symlink, path, 0, 0o777, target);
        end(&mut f, 1, 0);
        refused(name, &f, m, "outside the mount");
    }
    let mut f = hello();
    link(&mut f, 0, File, "f", 1, 0o644, "g");
    end(&mut f, 1, 1);
    // A target on a file does not even parse.
    refused("target-of-a-file", &f, ErrorCode::Protocol, "target length");
    let mut f = hello();
    link(&mut f, 0, Symlink, "l", 1, 0o777, "g");
    end(&mut f, 1, 1);
    refused("link-with-size", &f, m, "nonzero size");

    // A special file (kind 3, say a device node) does not even parse.
    let mut f = one_entry(File, "node", 0);
    let at = hello().len() + 16 + 4;
    f[at] = 3;
    let start = hello().len();
    let payload_end = start + 16 + feedfs_protocol::message::ENTRY_HEADER_LEN + 4;
    let crc = crc32fast::hash(&[&f[start..start + 12], &f[start + 16..payload_end]].concat());
    f[start + 12..start + 16].copy_from_slice(&crc.to_le_bytes());
    refused("special-file", &f, ErrorCode::Protocol, "kind");

    // A run before the manifest is over.
    let mut f = hello();
    entry(&mut f, 0, File, "a", 10, 0o644);
    run(&mut f, 0, 0, 1, b"0123456789");
    refused("run-in-manifest", &f, m, "Run");
    tried += 17;
    eprintln!("{tried} bad manifests refused; nothing mounted, nothing stored, nothing written outside the store");
}

#[test]
fn huge_manifests_are_refused_within_bounded_memory() {
    // A million and one entries (flat, short names): refused at the cap.
    let mut f = hello();
    for i in 0..=1_000_000u32 {
        entry(&mut f, i, EntryKind::File, &format!("f{i:07}"), 0, 0o644);
    }
    end(&mut f, 1_000_001, 0);
    let many = refused(
        "million",
        &f,
        ErrorCode::Manifest,
        "more than 1000000 entries",
    );
    // Deep paths that would make the device hold gigabytes of directory names.
    let deep = "a/".repeat(2040);
    let mut f = hello();
    for i in 0..100u32 {
        entry(
            &mut f,
            i,
            EntryKind::File,
            &format!("d{i}/{deep}f"),
            0,
            0o644,
        );
    }
    end(&mut f, 100, 0);
    let deep_rss = refused("deep", &f, ErrorCode::Manifest, "over the cap of");
    eprintln!(
        "peak device memory: {} MiB for 1 000 001 entries, {} MiB for deep paths",
        many / 1024,
        deep_rss / 1024
    );
    assert!(
        many < 1024 * 1024,
        "{} MiB for a million entries",
        many / 1024
    );
    assert!(
        deep_rss < 1024 * 1024,
        "{} MiB for deep paths",
        deep_rss / 1024
    );
}

/// A daemon mounted with a good manifest: a file `f` of 100 000 bytes, 24
/// whole pages and one of 1696 bytes (ids: 0 the directory `d`, 1 the file
/// `d/f`), mode 06755.
fn mounted(s: &Scratch, extra: &[&str]) -> FakeHost {
    let (mnt, store) = (s.dir("mnt"), s.dir("store"));
    let mut host = FakeHost::start(&mnt, &store, extra);
    let mut f = hello();
    entry(&mut f, 0, EntryKind::Dir, "d", 0, 0o1777);
    entry(&mut f, 1, EntryKind::File, "d/f", 100_000, 0o6755);
    end(&mut f, 2, 100_000);
    assert!(host.send(&f));
    wait_for("the mount", Duration::from_secs(20), || is_mounted(&mnt));
    host
}

/// A Run that a good manifest makes wrong: (name, file, first, count,
/// data, what the refusal says).
type BadRun<'a> = (&'a str, u32, u64, u32, &'a [u8], &'a str);

#[test]
fn bad_runs_are_refused_and_the_mount_keeps_serving() {
    let data = content(5, 0, 65536);
    let page = content(5, 0, PAGE as usize);
    let cases: [BadRun; 6] = [
        ("past-the-end", 1, 25, 1, &page, "past its end"),
        ("over-the-end", 1, 24, 2, &data[..8192], "past its end"),
        ("first-max", 1, u64::MAX - 1, 1, &page, "past its end"),
        (
            "not-in-manifest",
            99,
            0,
            1,
            &page,
            "not a file of the manifest",
        ),
        ("a-directory", 0, 0, 1, &page, "not a file of the manifest"),
        (
            "wrong-length",
            1,
            24,
            1,
            &page,
            "has 4096 bytes, expected 1696",
        ),
    ];
    for (name, file, first, count, bytes, says) in cases {
        let s = Scratch::new(&format!("badrun-{name}"));
        let mut host = mounted(&s, &[]);
        let mnt = s.root.join("mnt");
        let before = outside_store(&s.root);
        // A good run first: it must still be served afterwards.
        let mut f = Vec::new();
        run(&mut f, 1, 0, 16, &data);
        run(&mut f, file, first, count, bytes);
        assert!(host.send(&f));
        let error = std::iter::from_fn(|| host.next(Duration::from_secs(10)))
            .find_map(|m| match m {
                Ok(OwnedMessage::Error { code, text }) => Some((code, text)),
                _ => None,
            })
            .unwrap_or_else(|| panic!("{name}: no Error from the device"));
        assert_eq!(error.0, ErrorCode::Protocol, "{name}: {error:?}");
        assert!(error.1.contains(says), "{name}: {error:?}");
        // Still mounted, still serving the good run, nothing new outside.
        assert!(is_mounted(&mnt), "{name}");
        assert_eq!(
            read_at(&mnt.join("d/f"), 0, 65536).unwrap(),
            data,
            "{name}: pages 0 to 15"
        );
        assert_eq!(outside_store(&s.root), before, "{name}");
        let stored = fs::read_dir(s.root.join("store/files")).unwrap().count();
        assert_eq!(stored, 2, "{name}: one file's data and map");
        stop_device(host.device.id() as i32, &mnt);
        let (status, _, stderr) = host.wait(Duration::from_secs(10));
        assert!(status.success(), "{name}: {status}: {stderr}");
        assert!(stderr.contains(says), "{name}: {stderr}");
    }
}

#[test]
fn the_mount_shows_no_special_bits_belongs_to_the_daemon_and_keeps_others_out() {
    let s = Scratch::new("safety");
    let mnt = s.root.join("mnt");
    let host = mounted(&s, &[]);
    let pid = host.device.id() as i32;
    // Mount options: read-only, no setuid, no devices, no allow_other.
    let opts = fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .find(|l| l.split(' ').nth(4) == Some(mnt.to_str().unwrap()))
        .expect("mountinfo line")
        .to_string();
    for o in ["ro", "nosuid", "nodev"] {
        assert!(
            opts.split([' ', ',']).any(|w| w == o),
            "{o} missing: {opts}"
        );
    }
    assert!(!opts.contains("allow_other"), "{opts}");
    // Permission bits only: the host's 06755 and 01777 lose setuid, setgid, sticky.
    let f = fs::metadata(mnt.join("d/f")).unwrap();
    let d = fs::metadata(mnt.join("d")).unwrap();
    assert_eq!(f.permissions().mode() & 0o7777, 0o755);
    assert_eq!(d.permissions().mode() & 0o7777, 0o777);
    assert!(f.file_type().is_file() && d.file_type().is_dir());
    // Owned by the daemon's user.
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let uid: u32 = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!((f.uid(), d.uid()), (uid, uid));
    // Another user (nobody) cannot even look inside.
    assert!(!other_user_can_list(&mnt), "without --allow-other");
    stop_device(pid, &mnt);
    host.wait(Duration::from_secs(10));

    // With --allow-other, the same user can.
    let s = Scratch::new("safety-other");
    let mnt = s.root.join("mnt");
    let host = mounted(&s, &["--allow-other"]);
    fs::set_permissions(&s.root, fs::Permissions::from_mode(0o755)).unwrap();
    assert!(other_user_can_list(&mnt), "with --allow-other");
    stop_device(host.device.id() as i32, &mnt);
    host.wait(Duration::from_secs(10));
}

/// Whether user `nobody` (uid 65534) can stat the mount's directory `d`.
fn other_user_can_list(mnt: &Path) -> bool {
    Command::new("stat")
        .arg(mnt.join("d"))
        .uid(65534)
        .gid(65534)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap()
        .success()
}
