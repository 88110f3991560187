//! End to end, what `feedfs-host push` promises its user: which version of
//! a file is served, what a push says when it ends, how it gives up and how
//! it stops. The real binaries over real pipes into a real FUSE mount; these
//! tests fail, never skip, without /dev/fuse.

use std::fs::{self, File};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, SystemTime};

use feedfs_tests::peers::{device_command, stop_device, wait_exit};
use feedfs_tests::*;

const MIB: u64 = 1 << 20;

/// A device daemon on `mnt` and `store`, and a host pushing `args` to it
/// over pipes, its stderr captured. The daemon's stderr goes to
/// `store/../device.err` so it cannot hold the host's pipe open.
fn start_push(mnt: &Path, store: &Path, args: &[&str]) -> (Child, Child) {
    let err = File::create(store.with_extension("err")).unwrap();
    let mut device = device_command(mnt, store, "--stdio")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(err)
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
    (device, host)
}

/// Run one push to completion: the host's exit status and stderr; the
/// daemon is left running, serving the mount.
fn push(mnt: &Path, store: &Path, args: &[&str]) -> (Child, ExitStatus, String) {
    let (device, host) = start_push(mnt, store, args);
    let out = host.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    (device, out.status, stderr)
}

fn stop(mut device: Child, mnt: &Path) {
    stop_device(device.id() as i32, mnt);
    device.wait().unwrap();
}

/// Set a file's modification time, as `touch -d @SECS` does.
fn set_mtime(path: &Path, secs: u64) {
    File::options()
        .write(true)
        .open(path)
        .unwrap()
        .set_modified(SystemTime::UNIX_EPOCH + Duration::from_secs(secs))
        .unwrap();
}

#[test]
fn an_edit_in_place_with_the_old_mtime_is_served_new() {
    let s = Scratch::new("mtime");
    let (mnt, store) = (s.dir("mnt"), s.dir("store"));
    let img = s.root.join("img");
    write_file(&img, 16 * MIB, 11, 0o644);
    set_mtime(&img, 315_532_800);
    let (device, status, stderr) = push(&mnt, &store, &[img.to_str().unwrap()]);
    assert!(status.success(), "first push: {status}: {stderr}");
    assert_same_tree(&img, &mnt.join("img"));
    stop(device, &mnt);

    // dd conv=notrunc of 1 MiB in the middle, then the old mtime again.
    let f = File::options().write(true).open(&img).unwrap();
    f.write_all_at(&content(12, 0, MIB as usize), 8 * MIB)
        .unwrap();
    drop(f);
    set_mtime(&img, 315_532_800);

    let (device, status, stderr) = push(&mnt, &store, &[img.to_str().unwrap()]);
    assert!(status.success(), "second push: {status}: {stderr}");
    assert_same_tree(&img, &mnt.join("img"));
    stop(device, &mnt);
    fs::remove_file(&img).unwrap();
}

/// `feedfs-host push ARGS...` with its stderr in a file (a child it starts
/// may keep a pipe open after it exits): exit status and stderr.
fn host_alone(dir: &Path, args: &[&str]) -> (ExitStatus, String) {
    let path = dir.join("host.err");
    let mut host = Command::new(bin("feedfs-host"))
        .arg("push")
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(File::create(&path).unwrap())
        .spawn()
        .unwrap();
    let status = wait_exit(&mut host, Duration::from_secs(30));
    (status, fs::read_to_string(&path).unwrap())
}

fn device_cmd(mnt: &Path, store: &Path) -> String {
    format!(
        "exec {} mount {} --store {} --stdio 2>{}",
        bin("feedfs-device").display(),
        mnt.display(),
        store.display(),
        store.with_extension("err").display()
    )
}

#[test]
fn a_silent_or_babbling_peer_is_given_up_on_and_a_banner_is_skipped() {
    let s = Scratch::new("handshake");
    let f = s.root.join("f");
    fs::write(&f, b"some data\n").unwrap();
    let f = f.to_str().unwrap();

    let (status, stderr) = host_alone(
        &s.root,
        &["--handshake-timeout", "1s", "--exec", "exec sleep 10", f],
    );
    assert!(!status.success(), "{status}");
    assert!(
        stderr.contains("no Hello from the device within 1s (it sent nothing)"),
        "{stderr}"
    );

    let (status, stderr) = host_alone(&s.root, &["--exec", "exec yes garbage", f]);
    assert!(!status.success(), "{status}");
    assert!(
        stderr.contains("not speaking feedfs") && stderr.contains(r#""garbage\ngarbage\n"#),
        "{stderr}"
    );
    assert!(stderr.len() < 2000, "a bounded complaint: {stderr}");

    let (mnt, store) = (s.dir("mnt"), s.dir("store"));
    let banner = format!("echo hello; {}", device_cmd(&mnt, &store));
    let (status, stderr) = host_alone(&s.root, &["--exec", &banner, f]);
    assert!(status.success(), "{status}: {stderr}");
    assert!(
        stderr.contains(r#"printed "hello\n" before its Hello"#),
        "{stderr}"
    );
    assert_eq!(fs::read(mnt.join("f")).unwrap(), b"some data\n");
    stop_device(device_pid(&store), &mnt);
}

#[test]
fn a_push_ends_with_one_summary_line_naming_what_was_left_out() {
    use std::os::unix::ffi::OsStrExt;
    let s = Scratch::new("summary");
    let (mnt, store) = (s.dir("mnt"), s.dir("store"));
    let src = s.root.join("src");
    write_file(&src.join("big"), 3 * MIB + 5, 21, 0o644);
    write_file(&src.join("d/small"), 10, 22, 0o644);
    // A link inside the tree is served; one that leads out of it is not.
    std::os::unix::fs::symlink("big", src.join("link")).unwrap();
    std::os::unix::fs::symlink("/etc/passwd", src.join("outside")).unwrap();
    assert!(Command::new("mkfifo")
        .arg(src.join("fifo"))
        .status()
        .unwrap()
        .success());
    let odd = src.join(std::ffi::OsStr::from_bytes(b"bad\xffname"));
    fs::write(&odd, b"x").unwrap();
    fs::hard_link(src.join("big"), src.join("d/big-again")).unwrap();

    let (device, status, stderr) = push(&mnt, &store, &[src.to_str().unwrap()]);
    assert!(status.success(), "{status}: {stderr}");
    let summary: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("feedfs-host: pushed"))
        .collect();
    assert_eq!(summary.len(), 1, "{stderr}");
    assert!(
        summary[0].starts_with("feedfs-host: pushed 3 files, 6.0 MiB sent in ")
            && summary[0].contains(" MiB/s), 0 pages already held, ")
            && summary[0].ends_with("; left out 1 symlink, 1 FIFO, 1 name not UTF-8"),
        "{stderr}"
    );
    assert!(
        stderr.contains(r"bad\xffname: its name is not UTF-8"),
        "{stderr}"
    );
    // Hard links: each name is a file of its own, byte for byte.
    assert_same_tree(&src.join("big"), &mnt.join("src/d/big-again"));
    assert_same_tree(&src.join("d"), &mnt.join("src/d"));
    let mut served: Vec<_> = fs::read_dir(mnt.join("src"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    served.sort();
    assert_eq!(served, ["big", "d", "link"]);
    assert_eq!(
        fs::read_link(mnt.join("src/link")).unwrap(),
        Path::new("big")
    );
    stop(device, &mnt);

    // Pushed again: everything was there already.
    let (device, status, stderr) = push(&mnt, &store, &[src.to_str().unwrap()]);
    assert!(status.success(), "{status}: {stderr}");
    assert!(
        stderr.contains("pushed 3 files, 0 B sent in ")
            && stderr.contains(" 1539 pages already held"),
        "{stderr}"
    );
    stop(device, &mnt);
}

#[test]
fn a_store_inside_the_pushed_tree_is_refused_before_anything_starts() {
    let s = Scratch::new("storein");
    let (mnt, store) = (s.dir("tree/mnt"), s.dir("tree/store"));
    fs::write(s.root.join("tree/data"), b"1").unwrap();
    // A daemon waiting for its host makes `store` a real one.
    let mut device = device_command(&mnt, &store, "--stdio")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for("the store's lock", Duration::from_secs(10), || {
        store.join("lock").exists() && store.join("files").is_dir()
    });
    let (status, stderr) = host_alone(
        &s.root,
        &[
            "--exec",
            "exec sleep 10",
            s.root.join("tree").to_str().unwrap(),
        ],
    );
    assert!(!status.success());
    assert!(
        stderr.contains(&format!("{} is a feedfs store", store.display())),
        "{stderr}"
    );
    signal(device.id() as i32, libc::SIGTERM);
    wait_exit(&mut device, Duration::from_secs(10));
}

#[test]
fn a_file_changed_mid_push_is_named_in_words_and_the_advice_works() {
    let s = Scratch::new("midpush");
    let (mnt, store) = (s.dir("mnt"), s.dir("store"));
    let img = s.root.join("img");
    let arg = img.to_str().unwrap();
    for round in ["cut short", "edited in place, mtime kept"] {
        write_file(&img, 16 * MIB, 31, 0o644);
        let (device, host) = start_push(&mnt, &store, &["--rate", "2M", arg]);
        wait_for("the mount", Duration::from_secs(20), || is_mounted(&mnt));
        assert_eq!(
            read_at(&mnt.join("img"), 0, 4096).unwrap(),
            content(31, 0, 4096)
        );
        let mtime = fs::metadata(&img).unwrap().modified().unwrap();
        let f = File::options().write(true).open(&img).unwrap();
        if round == "cut short" {
            f.set_len(MIB).unwrap();
        } else {
            f.write_all_at(&[0; 4096], 15 * MIB).unwrap();
            f.set_modified(mtime).unwrap();
        }
        drop(f);
        let out = host.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{round}: {stderr}");
        let said = if round == "cut short" {
            "changed while it was being pushed: its size went from 16777216 to 1048576 bytes"
        } else {
            "changed while it was being pushed: it was written or its attributes changed at "
        };
        assert!(stderr.contains(said), "{round}: {stderr}");
        assert!(stderr.contains("stop the daemon on the device"), "{stderr}");
        assert!(
            !stderr.contains("fill whole buffer") && !stderr.contains("Stamp {"),
            "{stderr}"
        );
        // What it says to do: stop the daemon, push again.
        stop(device, &mnt);
        let (device, status, stderr) = push(&mnt, &store, &[arg]);
        assert!(status.success(), "{round}, pushed again: {stderr}");
        assert_same_tree(&img, &mnt.join("img"));
        stop(device, &mnt);
    }
}

#[test]
fn a_signal_flushes_the_record_says_goodbye_and_exits_128_plus_its_number() {
    let s = Scratch::new("signal");
    let (mnt, store) = (s.dir("mnt"), s.dir("store"));
    let img = s.root.join("img");
    write_file(&img, 32 * MIB, 41, 0o644);
    let record = s.root.join("r.log");
    let rounds = [
        (libc::SIGINT, 130),
        (libc::SIGTERM, 143),
        (libc::SIGHUP, 129),
    ];
    for (round, (sig, code)) in rounds.into_iter().enumerate() {
        let args = [
            "--rate",
            "1M",
            "--record",
            record.to_str().unwrap(),
            img.to_str().unwrap(),
        ];
        let (device, mut host) = start_push(&mnt, &store, &args);
        wait_for("the mount", Duration::from_secs(20), || is_mounted(&mnt));
        // A read made meanwhile, of a part no earlier round fetched: a
        // demand in the record.
        let at = (31 - 2 * round as u64) * MIB;
        assert_eq!(
            read_at(&mnt.join("img"), at, 4096).unwrap(),
            content(41, at, 4096)
        );
        signal(host.id() as i32, sig);
        let status = wait_exit(&mut host, Duration::from_secs(10));
        assert_eq!(status.code(), Some(code), "signal {sig}: {status}");
        let text = fs::read_to_string(&record).unwrap();
        assert!(text.ends_with('\n'), "signal {sig}: the record ends a line");
        let events = read_record(&record);
        assert!(
            events
                .iter()
                .any(|e| matches!(e, RecordEvent::Demand { .. })),
            "signal {sig}: the demand is in the record"
        );
        assert!(events.iter().any(|e| matches!(e, RecordEvent::Sent { .. })));
        let plan = s.root.join("p.plan");
        let out = Command::new(bin("feedfs-host"))
            .arg("plan")
            .arg(&record)
            .arg("-o")
            .arg(&plan)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "plan from the record: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        stop(device, &mnt);
        let device_log = fs::read_to_string(store.with_extension("err")).unwrap();
        assert!(device_log.contains("host said goodbye"), "{device_log}");
    }
}

#[test]
fn a_peer_that_neither_reads_nor_answers_a_large_manifest_is_given_up_on() {
    let s = Scratch::new("stuck");
    let tree = s.root.join("tree");
    fs::create_dir_all(&tree).unwrap();
    // About 400 KB of manifest: more than the pipe holds.
    for i in 0..5000 {
        fs::write(tree.join(format!("file-{i:05}-with-a-longer-name")), b"").unwrap();
    }
    let (status, stderr) = host_alone(
        &s.root,
        &[
            "--handshake-timeout",
            "1s",
            "--exec",
            "exec sleep 10",
            tree.to_str().unwrap(),
        ],
    );
    assert!(!status.success(), "{status}");
    assert!(
        stderr.contains("no Hello from the device within 1s"),
        "{stderr}"
    );
}
