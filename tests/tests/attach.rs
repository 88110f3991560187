//! `feedfs-device attach`: after its first host died, a daemon that stayed
//! mounted takes a new host's pipe and the transfer resumes, without an
//! unmount. Real processes over real pipes into a real FUSE mount (needs
//! /dev/fuse and the right to mount: it fails, never skips, without them).

use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use feedfs_protocol::reqlog::Outcome;
use feedfs_tests::watch::{
    blocked_in_pread, last_mount_log, link_changes, link_down, log_file_index, thread_id, waits_for,
};
use feedfs_tests::*;

const MIB: u64 = 1 << 20;

fn device(mnt: &Path, store: &Path) -> Child {
    Command::new(bin("feedfs-device"))
        .arg("mount")
        .arg(mnt)
        .arg("--store")
        .arg(store)
        .args(["--stdio", "--read-timeout", "20s"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap()
}

fn attach_cmd(store: &Path) -> String {
    format!(
        "exec {} attach --store {} --stdio",
        bin("feedfs-device").display(),
        store.display()
    )
}

/// What the device recorded of the read of `page` of big.bin (its request
/// log is written within a second): the read reached the daemon while no
/// link was up, waited, and was served only after a new link came up.
fn assert_parked_until_the_new_link(store: &Path, page: u64) {
    let mut seen = String::new();
    wait_for(
        "the device to log the parked read",
        Duration::from_secs(10),
        || {
            let Some(log) = last_mount_log(store) else {
                return false;
            };
            let file = log_file_index(&log, "src/big.bin").expect("big.bin in the log");
            let waits = waits_for(&log, file, page);
            let links = link_changes(&log);
            seen = format!("waits {waits:?}, link changes {links:?}");
            !waits.is_empty() && links.iter().filter(|l| l.1).count() >= 2
        },
    );
    let log = last_mount_log(store).unwrap();
    let file = log_file_index(&log, "src/big.bin").unwrap();
    let links = link_changes(&log);
    let parked_at_link_down =
        waits_for(&log, file, page)
            .into_iter()
            .any(|(arrived, waited, outcome)| {
                let down = links
                    .iter()
                    .rev()
                    .find(|&&(t, _)| t <= arrived)
                    .is_some_and(|&(_, up)| !up);
                let next_up = links.iter().find(|&&(t, up)| up && t > arrived);
                outcome == Outcome::Served
                    && down
                    && next_up.is_some_and(|&(t, _)| t <= arrived + waited)
            });
    assert!(
        parked_at_link_down,
        "the device must record the read of page {page} as arrived with the link down \
         and served after the next link came up: {seen}"
    );
}

#[test]
fn a_new_host_attaches_resumes_and_answers_a_parked_read() {
    let s = Scratch::new("attach");
    let src = s.root.join("src");
    write_file(&src.join("big.bin"), 32 * MIB, 1, 0o644);
    write_file(&src.join("small.txt"), 1000, 2, 0o644);
    let (mnt, store) = (s.dir("mnt"), s.dir("store"));
    let big = mnt.join("src/big.bin");

    // Host 1, slow enough to be mid-stream when it is killed.
    let mut dev = device(&mnt, &store);
    let mut host1 = Command::new(bin("feedfs-host"))
        .args(["push", "--stdio", "--rate", "4M", src.to_str().unwrap()])
        .stdin(Stdio::from(dev.stdout.take().unwrap()))
        .stdout(Stdio::from(dev.stdin.take().unwrap()))
        .spawn()
        .unwrap();
    wait_for("the mount", Duration::from_secs(20), || is_mounted(&mnt));
    assert_eq!(
        read_at(&big, 0, MIB as usize).unwrap(),
        content(1, 0, MIB as usize)
    );
    signal(host1.id() as i32, libc::SIGKILL);
    host1.wait().unwrap();
    // The daemon sees the link end when it reads its end of the pipe; until
    // then a read would still be sent to the dead link's host.
    wait_for(
        "the device to see the link end",
        Duration::from_secs(10),
        || link_down(&store),
    );

    // A read of a page that never came: it waits for the next link. The
    // test waits until the reader is asleep in that read (the file is opened
    // here, so the read is the reader's only system call on it).
    let parked = std::fs::File::open(&big).unwrap();
    let fd = parked.as_raw_fd();
    let (tid_tx, tid_rx) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        tid_tx.send(thread_id()).unwrap();
        let t = Instant::now();
        let mut buf = vec![0u8; 4096];
        let got = parked.read_exact_at(&mut buf, 30 * MIB).map(|()| buf);
        (got, t.elapsed())
    });
    let tid = tid_rx.recv().unwrap();
    wait_for(
        "the reader to sleep in its read of a missing page",
        Duration::from_secs(10),
        || reader.is_finished() || blocked_in_pread(tid, fd),
    );
    assert!(
        !reader.is_finished(),
        "the read must wait for a new link: {:?}",
        reader.join().unwrap()
    );
    let parked_page = 30 * MIB / PAGE;

    // Host 2 attaches to the running daemon through the store's socket.
    let record = s.root.join("record.tsv");
    let mut host2 = Command::new(bin("feedfs-host"))
        .args(["push", "--rate", "8M", "--record", record.to_str().unwrap()])
        .arg("--exec")
        .arg(attach_cmd(&store))
        .arg(&src)
        .spawn()
        .unwrap();

    // The parked read is answered over the new link, right away.
    let (got, waited) = reader.join().unwrap();
    assert_eq!(got.unwrap(), content(1, 30 * MIB, 4096));
    assert!(waited < Duration::from_secs(20), "waited {waited:?}");
    assert_parked_until_the_new_link(&store, parked_page);

    // Only one link feeds a store: a second attach is refused, clearly.
    let second = Command::new(bin("feedfs-device"))
        .args(["attach", "--stdio", "--store"])
        .arg(&store)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&second.stderr);
    assert!(!second.status.success());
    assert!(err.contains("already feeding this store"), "{err}");

    assert!(
        host2.wait().unwrap().success(),
        "the attached host completes"
    );
    assert!(is_mounted(&mnt), "never unmounted");
    assert_same_tree(&src, &mnt.join("src"));

    // It sent only what the device lacked, each page once.
    let events = read_record(&record);
    let had = had_pages(&events);
    let mut sent: Vec<(u32, u64)> = sent_pages(&events)
        .iter()
        .map(|p| (p.file, p.page))
        .collect();
    let total = 32 * MIB / PAGE + 1;
    assert_eq!(total, total_pages(&events));
    assert!(had >= MIB / PAGE, "the device reported {had} pages");
    let n = sent.len();
    sent.sort();
    sent.dedup();
    assert_eq!(sent.len(), n, "no page sent twice");
    assert_eq!(n as u64, total - had, "exactly the missing pages");

    // A third host on the now complete store is told so at once: it sends
    // nothing and never has to say StreamDone a second time to hear it. It
    // starts once the daemon has seen host 2's link end (host 2 exits
    // before that); an attach refused in between, while the daemon lets go
    // of that link, is tried again.
    wait_for(
        "the daemon to record host 2's link as ended",
        Duration::from_secs(10),
        || link_down(&store),
    );
    let started = Instant::now();
    let (host3, err3) = loop {
        let host3 = Command::new(bin("feedfs-host"))
            .env("RUST_LOG", "feedfs_host::send::session=debug")
            .arg("push")
            .arg("--exec")
            .arg(attach_cmd(&store))
            .arg(&src)
            .output()
            .unwrap();
        let err3 = String::from_utf8_lossy(&host3.stderr).into_owned();
        if !err3.contains("already feeding this store")
            || started.elapsed() > Duration::from_secs(10)
        {
            break (host3, err3);
        }
    };
    assert!(host3.status.success(), "{err3}");
    assert!(err3.contains("0 B sent"), "{err3}");
    assert!(!err3.contains("StreamDone again"), "{err3}");

    signal(dev.id() as i32, libc::SIGTERM);
    wait_for("the daemon to exit", Duration::from_secs(10), || {
        !alive(dev.id() as i32)
    });
    assert!(dev.wait().unwrap().success());
    assert!(!is_mounted(&mnt));
    assert!(
        !store.join("link.sock").exists(),
        "the socket is removed on exit"
    );
}

#[test]
fn attach_with_no_daemon_says_so() {
    let s = Scratch::new("attach-none");
    let store = s.dir("store");
    let out = Command::new(bin("feedfs-device"))
        .args(["attach", "--stdio", "--store"])
        .arg(&store)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("no feedfs-device is serving"), "{err}");
}
