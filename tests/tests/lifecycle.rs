//! The daemon's life around its host, end to end with the real binaries:
//! it outlives the push without keeping the host's pipes or terminal, is
//! not stopped by a Ctrl-C or a hang-up meant for the host, mounts again
//! after a SIGKILL, never stacks on another mount, stops cleanly on an
//! outside `umount`, and its commands end quietly on a closed stdout and
//! create nothing when they only read.

use std::fs;
use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use feedfs_tests::peers::{device_command, host_command, stop_device, wait_exit};
use feedfs_tests::*;

const MIB: u64 = 1 << 20;

/// `feedfs-device mount MNT --store STORE --stdio` as the host's `--exec`
/// command; without `exec`, so `sh -c` stays as the wrapper it is for users.
fn exec_cmd(mnt: &Path, store: &Path) -> String {
    format!(
        "{} mount {} --store {} --stdio",
        bin("feedfs-device").display(),
        mnt.display(),
        store.display()
    )
}

fn push(mnt: &Path, store: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(bin("feedfs-host"));
    c.args(["push", "--exec", &exec_cmd(mnt, store)]).args(args);
    c
}

/// A source file of `size` bytes, seed 1.
fn source(s: &Scratch, size: u64) -> PathBuf {
    let f = s.root.join("f.bin");
    write_file(&f, size, 1, 0o644);
    f
}

/// Where the daemon's descriptor `fd` points.
fn fd_target(pid: i32, fd: i32) -> PathBuf {
    fs::read_link(format!("/proc/{pid}/fd/{fd}")).unwrap_or_default()
}

/// Wait until the daemon using `store` has let go of its starter's
/// descriptors: fd 2 is its log, fds 0 and 1 are /dev/null.
fn wait_detached(store: &Path) -> i32 {
    let pid = device_pid(store);
    let log = store.canonicalize().unwrap().join("log/daemon.log");
    let null = Path::new("/dev/null");
    wait_for(
        "the daemon to let go of its starter's descriptors",
        Duration::from_secs(20),
        || fd_target(pid, 0) == null && fd_target(pid, 1) == null && fd_target(pid, 2) == log,
    );
    pid
}

fn daemon_log(store: &Path) -> String {
    fs::read_to_string(store.join("log/daemon.log")).unwrap_or_default()
}

fn assert_serves(mnt: &Path, size: u64) {
    assert!(is_mounted(mnt), "{} is not mounted", mnt.display());
    assert_eq!(
        read_at(&mnt.join("f.bin"), 0, size as usize).unwrap(),
        content(1, 0, size as usize)
    );
}

#[test]
fn a_pipeline_reading_the_push_stderr_ends_with_the_push() {
    let s = Scratch::new("pipeline");
    let src = source(&s, 8 * MIB);
    let (mnt, store) = (s.dir("mnt"), s.dir("store"));
    // `push ... 2>&1 | wc -l`: the reader ends when every writer is gone.
    let mut host = push(&mnt, &store, &[src.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = host.stderr.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut text = String::new();
        let _ = err.read_to_string(&mut text);
        let _ = tx.send(text);
    });
    let text = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("the push's stderr never ended: something kept it open after the push");
    assert!(wait_exit(&mut host, Duration::from_secs(10)).success());
    assert!(text.contains("mounted 1 entries"), "relayed: {text}");

    let pid = wait_detached(&store);
    assert!(alive(pid));
    assert_serves(&mnt, 8 * MIB);
    stop_device(pid, &mnt);
    let log = daemon_log(&store);
    assert!(log.contains("signal 15: unmounting"), "daemon.log: {log}");
}

#[test]
fn under_a_pty_the_daemon_outlives_the_push_and_the_terminal() {
    let s = Scratch::new("pty");
    let src = source(&s, 4 * MIB);
    let (mnt, store) = (s.dir("mnt"), s.dir("store"));
    let line = format!(
        "{} push --exec '{}' {}",
        bin("feedfs-host").display(),
        exec_cmd(&mnt, &store),
        src.display()
    );
    // `script` runs the push on a new pty and closes it when the push ends.
    let out = Command::new("script")
        .args(["-q", "-e", "-c", &line, "/dev/null"])
        .stdin(Stdio::null())
        .output()
        .expect("script (util-linux) runs");
    assert!(out.status.success(), "push under a pty: {out:?}");

    let pid = wait_detached(&store);
    // The pty is gone; a SIGHUP sent to its session came and went.
    assert!(alive(pid), "the daemon died with the terminal");
    assert_serves(&mnt, 4 * MIB);
    let status = Command::new(bin("feedfs-device"))
        .args(["status", "--json", "--store"])
        .arg(&store)
        .output()
        .unwrap();
    let json = String::from_utf8_lossy(&status.stdout);
    assert!(json.contains("\"running\": true"), "status: {json}");
    // Nor does a hang-up sent to the daemon itself stop it.
    signal(pid, libc::SIGHUP);
    assert_serves(&mnt, 4 * MIB);
    assert!(alive(pid));
    stop_device(pid, &mnt);
}

#[test]
fn a_ctrl_c_on_the_push_does_not_reach_the_daemon() {
    let s = Scratch::new("ctrlc");
    let src = source(&s, 32 * MIB);
    let (mnt, store) = (s.dir("mnt"), s.dir("store"));
    // The push is a job of its own, as a shell runs it; Ctrl-C signals the job.
    let mut host = push(&mnt, &store, &["--rate", "4M", src.to_str().unwrap()])
        .process_group(0)
        .spawn()
        .unwrap();
    wait_for("the mount", Duration::from_secs(20), || is_mounted(&mnt));
    let f = mnt.join("f.bin");
    assert_eq!(read_at(&f, 0, 4096).unwrap(), content(1, 0, 4096));
    signal(-(host.id() as i32), libc::SIGINT);
    assert!(!wait_exit(&mut host, Duration::from_secs(20)).success());

    let pid = wait_detached(&store);
    assert!(alive(pid), "the Ctrl-C reached the daemon");
    assert!(is_mounted(&mnt));
    drop_cache(&f);
    assert_eq!(
        read_at(&f, 0, 4096).unwrap(),
        content(1, 0, 4096),
        "a page sent before the Ctrl-C, from the daemon"
    );
    // A SIGINT sent to the daemon itself stops it.
    signal(pid, libc::SIGINT);
    wait_for(
        "the daemon to stop on SIGINT",
        Duration::from_secs(10),
        || !alive(pid),
    );
    assert!(!is_mounted(&mnt));
}

#[test]
fn after_a_sigkill_the_same_push_mounts_again() {
    let s = Scratch::new("killed");
    let src = source(&s, 4 * MIB);
    let (mnt, store) = (s.dir("mnt"), s.dir("store"));
    assert!(push(&mnt, &store, &[src.to_str().unwrap()])
        .status()
        .unwrap()
        .success());
    let pid = device_pid(&store);
    signal(pid, libc::SIGKILL);
    wait_for("the daemon to die", Duration::from_secs(10), || !alive(pid));
    let e = fs::read_dir(&mnt).expect_err("a dead mount");
    assert!(
        matches!(e.raw_os_error(), Some(libc::ENOTCONN | libc::ECONNABORTED)),
        "{e}"
    );

    let out = push(&mnt, &store, &[src.to_str().unwrap()])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "second push: {text}");
    assert!(text.contains("died; detaching it"), "{text}");
    assert_ne!(device_pid(&store), pid);
    assert_serves(&mnt, 4 * MIB);
    stop_device(device_pid(&store), &mnt);
    assert!(!is_mounted(&mnt), "the dead mount is still below");
}

#[test]
fn a_live_mount_is_refused_and_a_non_empty_one_warned_about() {
    let s = Scratch::new("stack");
    let src = source(&s, 4 * MIB);
    let (mnt, store) = (s.dir("mnt"), s.dir("store"));
    assert!(push(&mnt, &store, &[src.to_str().unwrap()])
        .status()
        .unwrap()
        .success());
    let first = device_pid(&store);

    // A second daemon on another store, same mount point: refused.
    let out = push(&mnt, &s.dir("store2"), &[src.to_str().unwrap()])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "stacked: {text}");
    assert!(
        text.contains("is already a feedfs mount (another feedfs-device serves it)"),
        "{text}"
    );
    assert!(alive(first));
    assert_serves(&mnt, 4 * MIB);
    // Stopping the first takes nothing else down, and leaves nothing behind.
    stop_device(first, &mnt);

    // Any other live mount: refused, naming it.
    let tmp = s.dir("tmpfs");
    let rc = Command::new("mount")
        .args(["-t", "tmpfs", "feedfs-test-tmpfs"])
        .arg(&tmp)
        .status()
        .unwrap();
    assert!(rc.success(), "mount a tmpfs");
    let out = push(&tmp, &s.dir("store3"), &[src.to_str().unwrap()])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        text.contains("is already a mount of feedfs-test-tmpfs (tmpfs)"),
        "{text}"
    );
    detach(&tmp);

    // A directory with files: mounted over, with a warning.
    let full = s.dir("full");
    fs::write(full.join("hidden.txt"), "x").unwrap();
    let store4 = s.dir("store4");
    let out = push(&full, &store4, &[src.to_str().unwrap()])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("is not empty: its 1 entries are hidden"),
        "{text}"
    );
    stop_device(device_pid(&store4), &full);
}

#[test]
fn an_outside_umount_is_a_normal_stop() {
    let s = Scratch::new("umount");
    let src = source(&s, 4 * MIB);
    let (mnt, store) = (s.dir("mnt"), s.dir("store"));
    let mut device = device_command(&mnt, &store, "--stdio")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = device.stderr.take().unwrap();
    let status = host_command(&[src.to_str().unwrap()])
        .stdin(Stdio::from(device.stdout.take().unwrap()))
        .stdout(Stdio::from(device.stdin.take().unwrap()))
        .status()
        .unwrap();
    assert!(status.success());
    assert_serves(&mnt, 4 * MIB);
    assert!(Command::new("umount").arg(&mnt).status().unwrap().success());
    let status = wait_exit(&mut device, Duration::from_secs(10));
    let mut text = String::new();
    err.read_to_string(&mut text).unwrap();
    text += &daemon_log(&store);
    assert!(status.success(), "exit after umount: {status}; {text}");
    assert!(text.contains("unmounted from outside"), "{text}");
    assert!(
        !text.contains("cannot unmount") && !text.contains("still open"),
        "{text}"
    );
}

/// Run `cmd` with a stdout whose reader has already gone.
fn with_closed_stdout(cmd: &mut Command) -> Output {
    let (read, write) = nix::unistd::pipe().expect("a pipe");
    drop(read);
    cmd.stdout(Stdio::from(write))
        .stderr(Stdio::piped())
        .output()
        .unwrap()
}

fn assert_quiet(what: &str, out: &Output) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{what}: {:?}: {err}", out.status);
    assert!(
        !err.contains("panicked") && !err.contains("Broken pipe"),
        "{what}: {err}"
    );
}

#[test]
fn a_closed_stdout_ends_a_command_quietly() {
    let s = Scratch::new("stdout");
    let src = source(&s, 32 * MIB);
    let (mnt, store) = (s.dir("mnt"), s.dir("store"));
    let record = s.root.join("run.tsv");
    // A slow push and a read of its last page: a demand, in both logs.
    let mut host = push(
        &mnt,
        &store,
        &[
            "--rate",
            "8M",
            "--record",
            record.to_str().unwrap(),
            src.to_str().unwrap(),
        ],
    )
    .stderr(Stdio::null())
    .spawn()
    .unwrap();
    wait_for("the mount", Duration::from_secs(20), || is_mounted(&mnt));
    read_at(&mnt.join("f.bin"), 32 * MIB - 4096, 4096).unwrap();
    stop_device(device_pid(&store), &mnt);
    wait_exit(&mut host, Duration::from_secs(20));

    let device = |args: &[&str]| {
        let mut c = Command::new(bin("feedfs-device"));
        c.args(args).arg("--store").arg(&store);
        with_closed_stdout(&mut c)
    };
    assert_quiet("status", &device(&["status"]));
    assert_quiet("status --json", &device(&["status", "--json"]));
    assert_quiet("verify", &device(&["verify"]));

    let host = |args: &[&str]| with_closed_stdout(Command::new(bin("feedfs-host")).args(args));
    assert_quiet(
        "log show",
        &host(&["log", "show", record.to_str().unwrap()]),
    );
    let reqlog = store.join("log/requests.log");
    let plan = s.root.join("plan");
    let out = Command::new(bin("feedfs-host"))
        .args([
            "plan",
            reqlog.to_str().unwrap(),
            "-o",
            plan.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "plan: {out:?}");
    assert_quiet(
        "plan --show",
        &host(&["plan", "--show", plan.to_str().unwrap()]),
    );
}

#[test]
fn commands_that_only_read_create_nothing() {
    let s = Scratch::new("readonly");
    let missing = s.root.join("no-store");
    for cmd in ["verify", "status"] {
        let out = Command::new(bin("feedfs-device"))
            .args([cmd, "--store"])
            .arg(&missing)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{cmd}");
        assert!(
            text.contains(&format!("store {} does not exist", missing.display())),
            "{cmd}: {text}"
        );
        assert!(!missing.exists(), "{cmd} created {}", missing.display());
    }

    // A directory that is not a store: verify says so and leaves it empty.
    let empty = s.dir("empty");
    let out = Command::new(bin("feedfs-device"))
        .args(["verify", "--store"])
        .arg(&empty)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(text.contains("is not a feedfs store"), "{text}");
    assert_eq!(
        fs::read_dir(&empty).unwrap().count(),
        0,
        "verify wrote into it"
    );

    // A mount point that is not there: said so, and no store is made.
    let mnt = s.root.join("no-mnt");
    let store = s.root.join("new-store");
    let out = device_command(&mnt, &store, "--offline").output().unwrap();
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        text.contains(&format!("mount point {} does not exist", mnt.display())),
        "{text}"
    );
    assert!(
        !store.exists(),
        "mount created the store for a bad mount point"
    );
}
