//! What the daemon writes on its stderr, end to end over a pipe into a real
//! FUSE mount: a bounded number of lines whatever the number of files, file
//! names escaped, `-q`/`-v` moving the level, and no warning for the
//! ioctls every program makes (Python's `open()` asks whether a file is a
//! terminal).

use std::io::Read;
use std::path::Path;
use std::process::{Child, Stdio};
use std::thread::JoinHandle;
use std::time::Duration;

use feedfs_tests::peers::{device_command, host_command, stop_device, wait_exit};
use feedfs_tests::*;

/// Files in the pushed tree: enough that one line per file would show.
const FILES: usize = 400;

/// A tree of many small files, one of them with a newline in its name.
fn many_files(root: &Path) -> std::path::PathBuf {
    let src = root.join("src");
    for i in 0..FILES {
        write_file(
            &src.join(format!("d{}/f{i}.txt", i % 10)),
            100 + i as u64,
            i as u64,
            0o644,
        );
    }
    write_file(&src.join("new\nline"), 10, 7, 0o644);
    src
}

/// A daemon whose stderr is read by a thread (so it never blocks on a full
/// pipe), fed by a host that pushes `src`; returns once the push is done.
fn push(
    mnt: &Path,
    store: &Path,
    src: &Path,
    device_args: &[&str],
    rust_log: Option<&str>,
) -> (Child, JoinHandle<String>) {
    let mut cmd = device_command(mnt, store, "--stdio");
    cmd.args(device_args).env_remove("RUST_LOG");
    if let Some(filter) = rust_log {
        cmd.env("RUST_LOG", filter);
    }
    let mut device = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = device.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        err.read_to_string(&mut s).unwrap();
        s
    });
    let mut host = host_command(&["--run-size", "4K"])
        .arg(src)
        .stdin(Stdio::from(device.stdout.take().unwrap()))
        .stdout(Stdio::from(device.stdin.take().unwrap()))
        .spawn()
        .unwrap();
    let status = wait_exit(&mut host, Duration::from_secs(60));
    assert!(status.success(), "push failed: {status}");
    (device, reader)
}

/// Stop the daemon and return everything it logged: on stderr while the
/// link was up, then in the store's log.
fn stop(device: Child, mnt: &Path, store: &Path, reader: JoinHandle<String>) -> String {
    stop_device(device.id() as i32, mnt);
    let mut all = reader.join().unwrap();
    let log = store.join("log").join("daemon.log");
    all.push_str(&std::fs::read_to_string(log).unwrap_or_default());
    all
}

#[test]
fn a_push_of_many_files_logs_a_count_not_a_line_per_file() {
    let s = Scratch::new("log-many");
    let src = many_files(&s.root);
    let (mnt, store) = (s.dir("mnt"), s.root.join("store"));
    let (device, reader) = push(&mnt, &store, &src, &[], None);
    assert_same_tree(&src, &mnt.join("src"));
    let err = stop(device, &mnt, &store, reader);
    let lines = err.lines().count();
    assert!(lines <= 20, "{lines} lines for {FILES} files:\n{err}");
    assert!(
        err.contains(&format!("{} files new or changed", FILES + 1)),
        "no count:\n{err}"
    );
}

#[test]
fn verbose_lists_the_files_with_their_names_escaped_and_quiet_says_nothing() {
    let s = Scratch::new("log-levels");
    let src = many_files(&s.root);
    let (mnt, store) = (s.dir("mnt"), s.root.join("store"));
    let (device, reader) = push(&mnt, &store, &src, &["-v"], None);
    let err = stop(device, &mnt, &store, reader);
    assert!(
        err.contains(r#""src/new\nline""#),
        "name not escaped:\n{err}"
    );
    assert!(
        !err.lines().any(|l| l.starts_with("line")),
        "a raw newline from a name:\n{err}"
    );
    assert!(
        err.contains("\"src/d3/f13.txt\""),
        "no list at debug:\n{err}"
    );

    // RUST_LOG wins over -v.
    let store2 = s.root.join("store2");
    let (device, reader) = push(&mnt, &store2, &src, &["-v"], Some("info"));
    let err = stop(device, &mnt, &store2, reader);
    assert!(
        !err.contains("d3/f13.txt"),
        "RUST_LOG=info listed files:\n{err}"
    );
    assert!(err.contains("link up"), "{err}");

    // -q: warnings only, and there are none.
    let store3 = s.root.join("store3");
    let (device, reader) = push(&mnt, &store3, &src, &["-q"], None);
    let err = stop(device, &mnt, &store3, reader);
    assert_eq!(err, "", "-q still logged");
}

#[test]
fn a_terminal_ioctl_on_a_file_gets_enotty_without_a_warning() {
    let s = Scratch::new("log-tty");
    let src = s.root.join("src");
    write_file(&src.join("data.bin"), 100_000, 1, 0o644);
    let (mnt, store) = (s.dir("mnt"), s.root.join("store"));
    let (device, reader) = push(&mnt, &store, &src, &[], None);
    for _ in 0..3 {
        // What isatty(3) does, and so Python's open().
        let f = std::fs::File::open(mnt.join("src/data.bin")).unwrap();
        // tcgetattr is the TCGETS ioctl.
        let got = nix::sys::termios::tcgetattr(&f).map(drop);
        assert_eq!(got, Err(nix::errno::Errno::ENOTTY));
    }
    let err = stop(device, &mnt, &store, reader);
    assert!(
        !err.contains("WARN") && !err.contains("ioctl("),
        "a warning for an ioctl:\n{err}"
    );
}
