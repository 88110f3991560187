//! Learned prefetch end to end: a real mount logs the pages a reader asked
//! for, `feedfs-host plan` turns the log into a plan with those pages first,
//! and a push with the plan sends them before any other page. Needs
//! /dev/fuse and the right to mount; fails, never skips, without them.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use feedfs_tests::*;

const MIB: u64 = 1 << 20;
/// The pages the reader reads, in this order.
const READS: [u64; 4] = [14_400, 272, 7_200, 48];

fn device_cmd(mnt: &Path, store: &Path) -> String {
    format!(
        "exec {} mount {} --store {} --stdio",
        bin("feedfs-device").display(),
        mnt.display(),
        store.display()
    )
}

fn host(args: &[&str]) -> Output {
    let out = Command::new(bin("feedfs-host"))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "feedfs-host {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// `(path, first page, count)` of each step of `plan --show`'s order.
fn plan_steps(text: &str) -> Vec<(String, u64, u64)> {
    text.lines()
        .skip_while(|l| *l != "order:")
        .skip(1)
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let (first, count) = match f[3] {
                "page" => (f[4].parse().unwrap(), 1),
                "pages" => {
                    let (a, b) = f[4].split_once("..").unwrap();
                    let (a, b): (u64, u64) = (a.parse().unwrap(), b.parse().unwrap());
                    (a, b - a + 1)
                }
                other => panic!("unexpected plan line {l:?} ({other})"),
            };
            (f[2].to_string(), first, count)
        })
        .collect()
}

#[test]
fn a_plan_learned_from_a_log_is_sent_before_any_other_page() {
    let s = Scratch::new("plan");
    let src = s.dir("src");
    write_file(&src.join("big.bin"), 64 * MIB, 11, 0o644);
    write_file(&src.join("other.bin"), 3 * MIB, 12, 0o644);
    let (mnt, store) = (s.dir("mnt"), s.dir("store"));

    // 1. A slow push; a reader reads four scattered pages, kernel readahead off.
    let mut push = Command::new(bin("feedfs-host"))
        .args(["push", "--rate", "16M", "--exec", &device_cmd(&mnt, &store)])
        .arg(&src)
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for("the mount", Duration::from_secs(20), || is_mounted(&mnt));
    let big = mnt.join("src/big.bin");
    let f = File::open(&big).unwrap();
    let advised =
        nix::fcntl::posix_fadvise(&f, 0, 0, nix::fcntl::PosixFadviseAdvice::POSIX_FADV_RANDOM);
    assert_eq!(advised, Ok(()));
    for p in READS {
        let mut buf = [0u8; 4096];
        f.read_exact_at(&mut buf, p * PAGE).unwrap();
        assert_eq!(buf[..], content(11, p * PAGE, 4096)[..]);
    }
    drop(f);
    // Stopping the daemon writes its log out.
    let pid = device_pid(&store);
    signal(pid, libc::SIGTERM);
    wait_for("the daemon to exit", Duration::from_secs(20), || {
        !alive(pid)
    });
    let _ = push.wait();

    let out = Command::new(bin("feedfs-device"))
        .args(["status", "--json", "--store"])
        .arg(&store)
        .output()
        .unwrap();
    let json = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "status failed");
    assert!(json.contains("\"running\": false"), "{json}");
    assert!(json.contains("\"path\": \"src/big.bin\""), "{json}");

    // 2. The plan: exactly the logged pages, in the order they were read.
    let log = store.join("log/requests.log");
    let plan = s.root.join("app.plan");
    host(&[
        "plan",
        log.to_str().unwrap(),
        "-o",
        plan.to_str().unwrap(),
        "--window",
        "0",
    ]);
    let shown = host(&["plan", "--show", plan.to_str().unwrap()]);
    let steps = plan_steps(&String::from_utf8_lossy(&shown.stdout));
    let expected: Vec<(String, u64, u64)> = READS
        .iter()
        .map(|&p| ("src/big.bin".to_string(), p, 1))
        .collect();
    assert_eq!(steps, expected);

    // 3. A new device, pushed with the plan: those pages go first.
    let (mnt2, store2) = (s.dir("mnt2"), s.dir("store2"));
    let record = s.root.join("record.tsv");
    let status = Command::new(bin("feedfs-host"))
        .args(["push", "--plan", plan.to_str().unwrap(), "--record"])
        .arg(&record)
        .args(["--exec", &device_cmd(&mnt2, &store2)])
        .arg(&src)
        .status()
        .unwrap();
    assert!(status.success(), "push --plan failed: {status}");
    let events = read_record(&record);
    let big_id = events
        .iter()
        .find_map(|e| match e {
            RecordEvent::File { id, path, .. } if path == "src/big.bin" => Some(*id),
            _ => None,
        })
        .unwrap();
    let sent: Vec<(u32, u64, String)> = sent_pages(&events)
        .into_iter()
        .map(|p| (p.file, p.page, p.kind))
        .collect();
    let first: Vec<(u32, u64, String)> = READS
        .iter()
        .map(|&p| (big_id, p, "plan".to_string()))
        .collect();
    assert_eq!(sent[..4], first[..], "the planned pages are sent first");
    assert!(
        sent[4..].iter().all(|(_, _, kind)| kind == "stream"),
        "then only the stream"
    );
    let pages = (64 * MIB / PAGE + 3 * MIB / PAGE) as usize;
    assert_eq!(sent.len(), pages, "every page once");
    assert_same_tree(&src, &mnt2.join("src"));
    let pid = device_pid(&store2);
    signal(pid, libc::SIGTERM);
    wait_for("the second daemon to exit", Duration::from_secs(20), || {
        !alive(pid)
    });
}
