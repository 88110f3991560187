//! End to end over a pipe: the real feedfs-host and feedfs-device, a real
//! FUSE mount, real processes. These tests need /dev/fuse and the right to
//! mount (root in CI); without them they fail, they never skip.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use feedfs_tests::peers::{device_command, stop_device, wait_exit};
use feedfs_tests::*;

const MIB: u64 = 1 << 20;

/// The tree every test pushes: one large file, empty files, sizes that are
/// not multiples of the page size, nested and empty directories.
fn make_tree(root: &Path, big: u64) -> PathBuf {
    let src = root.join("src");
    write_file(&src.join("big.bin"), big, 1, 0o644);
    write_file(&src.join("empty.txt"), 0, 2, 0o600);
    write_file(&src.join("one.byte"), 1, 3, 0o444);
    write_file(&src.join("odd.bin"), 100_003, 4, 0o640);
    write_file(&src.join("exact.bin"), 32 * PAGE, 5, 0o755);
    write_file(&src.join("a/b/c/deep.dat"), 3 * PAGE + 17, 6, 0o600);
    write_file(&src.join("a/b/also-empty"), 0, 7, 0o644);
    fs::create_dir_all(src.join("a/empty-dir")).unwrap();
    fs::set_permissions(src.join("a"), fs::Permissions::from_mode(0o750)).unwrap();
    src
}

fn device_cmd(mnt: &Path, store: &Path, extra: &str) -> String {
    format!(
        "exec {} mount {} --store {} --stdio {extra}",
        bin("feedfs-device").display(),
        mnt.display(),
        store.display()
    )
}

/// A device daemon started by the test, and a host fed through pipes to it.
struct Pair {
    device: Child,
    host: Child,
}

fn start_pair(mnt: &Path, store: &Path, host_args: &[&str], device_args: &[&str]) -> Pair {
    let mut device = device_command(mnt, store, "--stdio")
        .args(device_args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let host = Command::new(bin("feedfs-host"))
        .args(["push", "--stdio"])
        .args(host_args)
        .stdin(Stdio::from(device.stdout.take().unwrap()))
        .stdout(Stdio::from(device.stdin.take().unwrap()))
        .spawn()
        .unwrap();
    Pair { device, host }
}

#[test]
fn a_tree_arrives_byte_for_byte_and_the_mount_is_read_only() {
    let s = Scratch::new("tree");
    let src = make_tree(&s.root, 256 * MIB);
    let (mnt, store) = (s.dir("mnt"), s.dir("store"));
    let status = Command::new(bin("feedfs-host"))
        .args([
            "push",
            "--exec",
            &device_cmd(&mnt, &store, ""),
            src.to_str().unwrap(),
        ])
        .status()
        .unwrap();
    assert!(status.success(), "feedfs-host push failed: {status}");
    assert!(is_mounted(&mnt));
    let checked = assert_same_tree(&src, &mnt.join("src"));
    assert_eq!(checked, 12, "entries compared");

    // Nothing on the mount can be changed.
    let m = mnt.join("src");
    let erofs = |r: std::io::Result<()>, what: &str| {
        let e = r.expect_err(what);
        assert_eq!(e.raw_os_error(), Some(libc::EROFS), "{what}: {e}");
    };
    erofs(File::create(m.join("new.txt")).map(drop), "create");
    erofs(
        OpenOptions::new()
            .write(true)
            .open(m.join("big.bin"))
            .map(drop),
        "open for writing",
    );
    erofs(fs::create_dir(m.join("newdir")), "mkdir");
    erofs(
        fs::rename(m.join("odd.bin"), m.join("renamed.bin")),
        "rename",
    );
    erofs(fs::remove_file(m.join("odd.bin")), "unlink");
    erofs(
        fs::set_permissions(m.join("odd.bin"), fs::Permissions::from_mode(0o777)),
        "chmod",
    );

    stop_device(device_pid(&store), &mnt);
}

#[test]
fn a_read_near_the_end_is_answered_before_the_stream_gets_there() {
    let s = Scratch::new("lazy");
    let src = make_tree(&s.root, 256 * MIB);
    let (mnt, store) = (s.dir("mnt"), s.dir("store"));
    let record = s.root.join("record.tsv");
    let mut host = Command::new(bin("feedfs-host"))
        .args([
            "push",
            "--record",
            record.to_str().unwrap(),
            "--exec",
            &device_cmd(&mnt, &store, ""),
        ])
        .arg(src.join("big.bin"))
        .spawn()
        .unwrap();
    let big = mnt.join("big.bin");
    wait_for("the mount", Duration::from_secs(20), || is_mounted(&mnt));
    // The file is there at full size before its data.
    assert_eq!(fs::metadata(&big).unwrap().len(), 256 * MIB);
    let offset = 256 * MIB - 4096;
    let got = read_at(&big, offset, 4096).unwrap();
    assert_eq!(got, content(1, offset, 4096), "bytes read near the end");

    assert!(wait_exit(&mut host, Duration::from_secs(120)).success());
    let events = read_record(&record);
    let (id, pages) = record_file(&events, "big.bin");
    let last = pages - 1;
    let sends = sent_pages(&events);
    let of_last: Vec<_> = sends
        .iter()
        .filter(|p| p.file == id && p.page == last)
        .collect();
    // Sent once, because it was asked for, long before the stream got there.
    assert_eq!(of_last.len(), 1, "the last page sent once: {of_last:?}");
    assert_eq!(
        of_last[0].kind, "demand",
        "the last page went out because it was asked for"
    );
    assert!(
        of_last[0].stream_sent < last,
        "when the last page was sent, the stream had sent {} of {pages} pages",
        of_last[0].stream_sent
    );
    assert_same_tree(&src.join("big.bin"), &big);
    stop_device(device_pid(&store), &mnt);
}

#[test]
fn a_killed_device_resumes_and_the_new_host_sends_only_what_is_missing() {
    let s = Scratch::new("resume");
    let src = make_tree(&s.root, 64 * MIB);
    let (mnt, store) = (s.dir("mnt"), s.dir("store"));
    let big = mnt.join("src/big.bin");

    // 1. A slow push, killed in mid-stream once the first 8 MiB are readable.
    let mut pair = start_pair(&mnt, &store, &["--rate", "16M", src.to_str().unwrap()], &[]);
    wait_for("the mount", Duration::from_secs(20), || is_mounted(&mnt));
    assert_eq!(read_at(&big, 0, 8 << 20).unwrap(), content(1, 0, 8 << 20));
    signal(pair.device.id() as i32, libc::SIGKILL);
    pair.device.wait().unwrap();
    let host_status = wait_exit(&mut pair.host, Duration::from_secs(20));
    assert!(
        !host_status.success(),
        "the host must fail when the device dies"
    );
    // A killed FUSE daemon leaves a dead mount behind; detach it.
    detach(&mnt);

    // 2. Restarted without any link, it serves what it had, and only that.
    let mut offline = device_command(&mnt, &store, "--offline")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for("the offline mount", Duration::from_secs(20), || {
        is_mounted(&mnt)
    });
    assert_eq!(
        read_at(&big, 0, 8 << 20).unwrap(),
        content(1, 0, 8 << 20),
        "pages held before the kill"
    );
    let e = read_at(&big, 64 * MIB - 10, 10).expect_err("a missing page with no link");
    assert_eq!(e.raw_os_error(), Some(libc::EIO));
    stop_device(offline.id() as i32, &mnt);
    offline.wait().unwrap();

    // 3. A new host: the device says what it has, the host sends only the rest.
    let record = s.root.join("record2.tsv");
    let mut pair = start_pair(
        &mnt,
        &store,
        &["--record", record.to_str().unwrap(), src.to_str().unwrap()],
        &[],
    );
    assert!(wait_exit(&mut pair.host, Duration::from_secs(120)).success());
    let events = read_record(&record);
    let (total, had) = (total_pages(&events), had_pages(&events));
    let sends = sent_pages(&events);
    assert!(
        had >= 8 * MIB / PAGE,
        "the device reported {had} pages, at least the 8 MiB read before the kill"
    );
    assert!(had < total, "the kill came in mid-stream");
    let mut unique: Vec<_> = sends.iter().map(|p| (p.file, p.page)).collect();
    unique.sort();
    unique.dedup();
    let twice: Vec<_> = sends
        .iter()
        .filter(|p| {
            sends
                .iter()
                .filter(|q| q.file == p.file && q.page == p.page)
                .count()
                > 1
        })
        .take(10)
        .collect();
    assert_eq!(unique.len(), sends.len(), "no page sent twice: {twice:?}");
    assert_eq!(
        sends.len() as u64,
        total - had,
        "pages sent by the new host: exactly the missing ones"
    );
    assert_same_tree(&src, &mnt.join("src"));
    stop_device(pair.device.id() as i32, &mnt);
    pair.device.wait().unwrap();
}

#[test]
fn when_the_host_dies_present_pages_are_served_and_missing_ones_fail_within_the_timeout() {
    let s = Scratch::new("linkloss");
    let src = make_tree(&s.root, 64 * MIB);
    let (mnt, store) = (s.dir("mnt"), s.dir("store"));
    let big = mnt.join("src/big.bin");
    let mut pair = start_pair(
        &mnt,
        &store,
        &["--rate", "8M", src.to_str().unwrap()],
        &["--read-timeout", "3s"],
    );
    wait_for("the mount", Duration::from_secs(20), || is_mounted(&mnt));
    assert_eq!(
        read_at(&big, 0, MIB as usize).unwrap(),
        content(1, 0, MIB as usize)
    );

    signal(pair.host.id() as i32, libc::SIGKILL);
    pair.host.wait().unwrap();

    // Present pages, read from the daemon again (not the page cache).
    drop_cache(&big);
    assert_eq!(
        read_at(&big, 0, MIB as usize).unwrap(),
        content(1, 0, MIB as usize)
    );
    // Missing pages wait for a new link, then fail with EIO within the read
    // timeout (not twice that when the kernel retries its readahead).
    let start = Instant::now();
    let e = read_at(&big, 60 * MIB, 4096).expect_err("missing page after link loss");
    assert_eq!(e.raw_os_error(), Some(libc::EIO));
    assert!(
        start.elapsed() < Duration::from_secs(4),
        "EIO took {:?}",
        start.elapsed()
    );
    // Still mounted; a clean unmount on SIGTERM.
    assert!(is_mounted(&mnt));
    stop_device(pair.device.id() as i32, &mnt);
    assert!(pair.device.wait().unwrap().success());
}

/// Frames a hostile or mismatched host would send, straight into the real daemon.
fn feed_device(
    s: &Scratch,
    frames: &[u8],
) -> (ExitStatus, Vec<feedfs_protocol::message::ErrorCode>, String) {
    let (mnt, store) = (s.dir("mnt"), s.dir("store"));
    let mut device = device_command(&mnt, &store, "--stdio")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    device.stdin.take().unwrap().write_all(frames).unwrap();
    let status = wait_exit(&mut device, Duration::from_secs(20));
    let mut reader = feedfs_protocol::io::FrameReader::new(device.stdout.take().unwrap());
    let mut codes = Vec::new();
    while let Ok(Some(f)) = reader.next_frame() {
        if let Ok(feedfs_protocol::Message::Error { code, .. }) = feedfs_protocol::Message::parse(f)
        {
            codes.push(code);
        }
    }
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut device.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(
        !is_mounted(&mnt),
        "nothing is mounted from a refused manifest"
    );
    (status, codes, stderr)
}

fn hello() -> Vec<u8> {
    feedfs_protocol::Message::Hello {
        role: feedfs_protocol::Role::Host,
        min_version: feedfs_protocol::VERSION,
        max_version: feedfs_protocol::VERSION,
        agent: "test",
    }
    .to_frame()
}

#[test]
fn a_hostile_manifest_is_refused_and_nothing_is_written_outside_the_store() {
    use feedfs_protocol::{EntryKind, FileId, Message};
    for (path, says) in [
        ("../escape", "\"..\""),
        ("/abs/escape", "absolute"),
        ("a\0b", "NUL"),
    ] {
        let s = Scratch::new("hostile");
        let mut frames = hello();
        Message::Entry {
            id: FileId(0),
            kind: EntryKind::File,
            size: 10,
            mode: 0o644,
            mtime: feedfs_protocol::Mtime::default(),
            identity: [0; 16],
            path,
            target: "",
        }
        .emit(&mut frames);
        Message::ManifestEnd {
            entries: 1,
            total_bytes: 10,
        }
        .emit(&mut frames);
        let (status, codes, stderr) = feed_device(&s, &frames);
        assert!(!status.success(), "{path:?}: the daemon must refuse");
        assert_eq!(
            codes,
            vec![feedfs_protocol::ErrorCode::Manifest],
            "{path:?}: error sent to the host"
        );
        assert!(stderr.contains(says), "{path:?}: stderr says why: {stderr}");
        assert!(!s.root.join("escape").exists() && !Path::new("/abs").exists());
        let stored: Vec<_> = fs::read_dir(s.root.join("store/files")).unwrap().collect();
        assert!(stored.is_empty(), "{path:?}: nothing stored");
    }
}

#[test]
fn a_host_of_another_protocol_version_is_told_clearly() {
    let s = Scratch::new("version");
    // A Hello frame as a host of the next version would send it (valid checksum).
    let ours = feedfs_protocol::VERSION;
    let mut frame = hello();
    frame[4] = ours + 1;
    let crc = crc32fast::hash(&[&frame[..12], &frame[16..]].concat());
    frame[12..16].copy_from_slice(&crc.to_le_bytes());
    let (status, codes, stderr) = feed_device(&s, &frame);
    assert!(!status.success());
    assert_eq!(codes, vec![feedfs_protocol::ErrorCode::Version]);
    assert!(
        stderr.contains(&format!("version {}", ours + 1))
            && stderr.contains(&format!("version {ours}")),
        "stderr: {stderr}"
    );
}

#[test]
fn sigterm_with_a_parked_reader_neither_hangs_nor_leaves_a_mount() {
    use feedfs_protocol::{EntryKind, FileId, Message};
    let s = Scratch::new("sigterm");
    let (mnt, store) = (s.dir("mnt"), s.dir("store"));
    let mut device = device_command(&mnt, &store, "--stdio")
        .args(["--read-timeout", "60s"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    // A host that sends its manifest and then never answers.
    let mut frames = hello();
    Message::Entry {
        id: FileId(0),
        kind: EntryKind::File,
        size: MIB,
        mode: 0o644,
        mtime: feedfs_protocol::Mtime::default(),
        identity: [7; 16],
        path: "silent.bin",
        target: "",
    }
    .emit(&mut frames);
    Message::ManifestEnd {
        entries: 1,
        total_bytes: MIB,
    }
    .emit(&mut frames);
    let mut to_device = device.stdin.take().unwrap();
    to_device.write_all(&frames).unwrap();
    let (demand_tx, demand_rx) = std::sync::mpsc::channel();
    let from_device = device.stdout.take().unwrap();
    std::thread::spawn(move || {
        let mut r = feedfs_protocol::io::FrameReader::new(from_device);
        while let Ok(Some(f)) = r.next_frame() {
            if let Ok(Message::Demand { .. }) = Message::parse(f) {
                let _ = demand_tx.send(());
            }
        }
    });
    wait_for("the mount", Duration::from_secs(20), || is_mounted(&mnt));
    let path = mnt.join("silent.bin");
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = done_tx.send(read_at(&path, 0, 4096));
    });
    demand_rx
        .recv_timeout(Duration::from_secs(10))
        .expect("the read was parked and demanded");

    signal(device.id() as i32, libc::SIGTERM);
    let read = done_rx
        .recv_timeout(Duration::from_secs(5))
        .expect("the parked reader was answered");
    let errno = read.expect_err("no data ever came").raw_os_error();
    // EIO when the parked read is failed; ENOTCONN or ECONNABORTED when the
    // kernel retried it after the daemon let go of the mount.
    assert!(
        matches!(errno, Some(libc::EIO | libc::ENOTCONN | libc::ECONNABORTED)),
        "errno {errno:?}"
    );
    let status = wait_exit(&mut device, Duration::from_secs(10));
    assert!(status.success(), "daemon exit: {status}");
    assert!(!is_mounted(&mnt), "still mounted after SIGTERM");
    drop(to_device);
}

#[test]
fn verify_drops_a_damaged_page_and_the_next_host_sends_only_it() {
    let s = Scratch::new("verify");
    let src = s.root.join("src");
    write_file(&src.join("f.bin"), 4 * MIB, 9, 0o644);
    let (mnt, store) = (s.dir("mnt"), s.dir("store"));
    let push = |record: &Path| {
        Command::new(bin("feedfs-host"))
            .args([
                "push",
                "--record",
                record.to_str().unwrap(),
                "--exec",
                &device_cmd(&mnt, &store, ""),
            ])
            .arg(src.join("f.bin"))
            .status()
            .unwrap()
    };
    assert!(push(&s.root.join("r1.tsv")).success());
    stop_device(device_pid(&store), &mnt);
    let verify = || {
        let out = Command::new(bin("feedfs-device"))
            .args(["verify", "--store"])
            .arg(&store)
            .output()
            .unwrap();
        (out.status.code(), String::from_utf8(out.stdout).unwrap())
    };
    assert_eq!(
        verify(),
        (
            Some(0),
            "f.bin: 1024 of 1024 pages present and good, 0 bad\n".to_string()
        )
    );

    // A torn write: page 160's bytes on disk no longer match its CRC.
    let data = fs::read_dir(store.join("files"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|x| x == "data"))
        .unwrap();
    let f = OpenOptions::new().write(true).open(&data).unwrap();
    std::os::unix::fs::FileExt::write_all_at(&f, &[0xff; 16], 160 * PAGE + 100).unwrap();
    let (code, text) = verify();
    assert_eq!(code, Some(3), "{text}");
    assert!(
        text.contains("1023 of 1024 pages present and good, 1 bad") && text.contains("[160]"),
        "{text}"
    );
    assert_eq!(
        verify().0,
        Some(0),
        "dropped for good: nothing bad the second time"
    );

    // The next host is told what is there and sends page 160 alone.
    let record = s.root.join("r2.tsv");
    assert!(push(&record).success());
    let sends: Vec<u64> = sent_pages(&read_record(&record))
        .iter()
        .map(|p| p.page)
        .collect();
    assert_eq!(sends, vec![160]);
    assert_same_tree(&src.join("f.bin"), &mnt.join("f.bin"));
    stop_device(device_pid(&store), &mnt);
}

#[test]
fn lz4_runs_arrive_byte_for_byte() {
    let s = Scratch::new("lz4");
    let src = s.root.join("src");
    fs::create_dir_all(&src).unwrap();
    // Text that compresses well, with a random tail that does not.
    let mut text = Vec::new();
    while text.len() < 3 * MIB as usize {
        text.extend_from_slice(format!("line {} of a compressible file\n", text.len()).as_bytes());
    }
    text.extend(content(11, 0, 300_000));
    fs::write(src.join("text.log"), &text).unwrap();
    let (mnt, store) = (s.dir("mnt"), s.dir("store"));
    let status = Command::new(bin("feedfs-host"))
        .args([
            "push",
            "--compress",
            "lz4",
            "--exec",
            &device_cmd(&mnt, &store, ""),
        ])
        .arg(src.join("text.log"))
        .status()
        .unwrap();
    assert!(status.success());
    assert_eq!(fs::read(mnt.join("text.log")).unwrap(), text);
    stop_device(device_pid(&store), &mnt);
}
