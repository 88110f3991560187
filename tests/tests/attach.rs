//! `feedfs-device attach`: after its first host died, a daemon that stayed
//! mounted takes a new host's pipe and the transfer resumes, without an
//! unmount. Real processes over real pipes into a real FUSE mount (needs
//! /dev/fuse and the right to mount: it fails, never skips, without them).

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use feedfs_tests::*;

const MIB: u64 = 1 << 20;
const BLOCK: u64 = 64 * 1024;

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

    // A read of a block that never came: it waits for the next link.
    let parked_path = big.clone();
    let reader = std::thread::spawn(move || {
        let t = Instant::now();
        (read_at(&parked_path, 30 * MIB, 4096), t.elapsed())
    });
    std::thread::sleep(Duration::from_millis(300));
    assert!(!reader.is_finished(), "the read must wait for a new link");

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

    // It sent only what the device lacked, each block once.
    let events = read_record(&record);
    let had: u64 = events
        .iter()
        .filter_map(|e| match e {
            RecordEvent::Have { blocks, .. } => Some(*blocks),
            _ => None,
        })
        .sum();
    let mut sent: Vec<(u32, u64)> = events
        .iter()
        .filter_map(|e| match e {
            RecordEvent::Sent { file, index, .. } => Some((*file, *index)),
            _ => None,
        })
        .collect();
    let total = 32 * MIB / BLOCK + 1;
    assert!(had >= MIB / BLOCK, "the device reported {had} blocks");
    let n = sent.len();
    sent.sort();
    sent.dedup();
    assert_eq!(sent.len(), n, "no block sent twice");
    assert_eq!(n as u64, total - had, "exactly the missing blocks");

    // A third host on the now complete store is told so at once: it sends
    // nothing and never has to say StreamDone a second time to hear it.
    let host3 = Command::new(bin("feedfs-host"))
        .env("RUST_LOG", "feedfs_host::send::session=debug")
        .arg("push")
        .arg("--exec")
        .arg(attach_cmd(&store))
        .arg(&src)
        .output()
        .unwrap();
    let err3 = String::from_utf8_lossy(&host3.stderr);
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
