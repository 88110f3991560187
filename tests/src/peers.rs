//! Starting and stopping the real binaries for the reliability tests: a
//! device daemon on a store, a host fed through pipes to it, waits on their
//! exits, and reads through the mount checked against the source.

use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use feedfs_protocol::{Message, OwnedMessage, ParseError};

use crate::{alive, bin, is_mounted, signal, wait_for};

/// `feedfs-device mount MNT --store STORE LINK`, ready to spawn.
pub fn device_command(mnt: &Path, store: &Path, link: &str) -> Command {
    let mut c = Command::new(bin("feedfs-device"));
    c.arg("mount").arg(mnt).arg("--store").arg(store).arg(link);
    c
}

/// A device daemon (`feedfs-device mount MNT --store STORE --stdio` and
/// `device_args`) and a host (`feedfs-host push --stdio` and `host_args`)
/// joined by two plain pipes, their stderr dropped. Returns (device, host)
/// at once, before the mount is up.
pub fn pipe_pair(
    mnt: &Path,
    store: &Path,
    device_args: &[&str],
    host_args: &[&str],
) -> (Child, Child) {
    let mut device = device_command(mnt, store, "--stdio")
        .args(device_args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let host = host_command(host_args)
        .stdin(Stdio::from(device.stdout.take().unwrap()))
        .stdout(Stdio::from(device.stdin.take().unwrap()))
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    (device, host)
}

/// `feedfs-host push --stdio ARGS...`, ready to spawn.
pub fn host_command(args: &[&str]) -> Command {
    let mut c = Command::new(bin("feedfs-host"));
    c.args(["push", "--stdio"]).args(args);
    c
}

/// Wait for a child to exit; panic after `timeout`.
pub fn wait_exit(child: &mut Child, timeout: Duration) -> ExitStatus {
    let start = Instant::now();
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return s;
        }
        assert!(
            start.elapsed() < timeout,
            "process {} did not exit within {timeout:?}",
            child.id()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Stop a daemon with SIGTERM and check that it unmounted and exited.
pub fn stop_device(pid: i32, mnt: &Path) {
    signal(pid, libc::SIGTERM);
    wait_for(
        "the daemon to exit after SIGTERM",
        Duration::from_secs(10),
        || !alive(pid),
    );
    assert!(!is_mounted(mnt), "still mounted after SIGTERM");
}

/// Outcome of one read through the mount, checked against the source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Read {
    /// The bytes equal the source's.
    Good,
    /// The read failed with EIO (allowed while the link is faulty or gone).
    Eio,
    /// The read failed with ENOSPC (the store could not hold its page).
    NoSpace,
}

/// Read `expected.len()` bytes at `offset` of `path` (pread after pread,
/// as a program would) and compare every byte read with `expected`, those
/// read before a failure included. Panics on a wrong byte, on a short read,
/// on any error but EIO and ENOSPC, and on a single read(2) slower than
/// `limit`. `what` names the test case (a seed) in the panic message.
/// Returns the outcome and the slowest read(2).
pub fn checked_read(
    path: &Path,
    offset: u64,
    expected: &[u8],
    limit: Duration,
    what: &str,
) -> (Read, Duration) {
    use std::os::unix::fs::FileExt;
    let f = std::fs::File::open(path)
        .unwrap_or_else(|e| panic!("{what}: open {}: {e}", path.display()));
    let mut buf = vec![0u8; expected.len()];
    let mut got = 0;
    let mut slowest = Duration::ZERO;
    let outcome = loop {
        if got == buf.len() {
            break Read::Good;
        }
        let start = Instant::now();
        let r = f.read_at(&mut buf[got..], offset + got as u64);
        let took = start.elapsed();
        slowest = slowest.max(took);
        assert!(
            took <= limit,
            "{what}: a read(2) of {} at {} took {took:?}, over {limit:?}",
            path.display(),
            offset + got as u64
        );
        match r {
            Ok(0) => break Read::Good,
            Ok(n) => got += n,
            Err(e) if e.raw_os_error() == Some(libc::EIO) => break Read::Eio,
            Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => break Read::NoSpace,
            Err(e) => panic!("{what}: read of {} at {offset}: {e}", path.display()),
        }
    };
    if let Some(wrong) = (0..got).find(|&i| buf[i] != expected[i]) {
        panic!(
            "{what}: WRONG BYTES from {} at {} (the read at {offset} returned {got} bytes, then {outcome:?})",
            path.display(),
            offset + wrong as u64
        );
    }
    assert!(
        outcome != Read::Good || got == expected.len(),
        "{what}: a SHORT READ from {} at {offset}: {got} of {} bytes",
        path.display(),
        expected.len()
    );
    (outcome, slowest)
}

/// A real `feedfs-device mount --stdio` whose host is the test itself:
/// frames go in through `input`, the device's messages come out on
/// `messages` (each frame's message, or why it did not parse), its stderr
/// is collected.
pub struct FakeHost {
    pub device: std::process::Child,
    pub input: Option<std::process::ChildStdin>,
    pub messages: std::sync::mpsc::Receiver<Result<OwnedMessage, ParseError>>,
    stderr: Option<std::thread::JoinHandle<String>>,
}

impl FakeHost {
    pub fn start(mnt: &Path, store: &Path, extra: &[&str]) -> FakeHost {
        use std::process::Stdio;
        let mut device = device_command(mnt, store, "--stdio")
            .args(extra)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let out = device.stdout.take().unwrap();
        let (tx, messages) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut r = feedfs_protocol::io::FrameReader::new(out);
            while let Ok(Some(f)) = r.next_frame() {
                if tx.send(Message::parse(f).map(Message::into_owned)).is_err() {
                    return;
                }
            }
        });
        let mut err = device.stderr.take().unwrap();
        let stderr = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = std::io::Read::read_to_string(&mut err, &mut s);
            s
        });
        let input = device.stdin.take();
        FakeHost {
            device,
            input,
            messages,
            stderr: Some(stderr),
        }
    }

    /// Send bytes to the device; false once it stopped reading.
    pub fn send(&mut self, bytes: &[u8]) -> bool {
        use std::io::Write;
        match self.input.as_mut() {
            Some(i) => i.write_all(bytes).and_then(|()| i.flush()).is_ok(),
            None => false,
        }
    }

    /// Close the link (the device sees the host go away).
    pub fn close(&mut self) {
        self.input = None;
    }

    /// Wait for the device to exit: its status, its peak resident memory in
    /// KiB (from the kernel's rusage) and its stderr.
    pub fn wait(mut self, timeout: Duration) -> (std::process::ExitStatus, u64, String) {
        use std::os::unix::process::ExitStatusExt;
        self.close();
        let pid = self.device.id() as i32;
        let start = Instant::now();
        let (status, rss) = loop {
            let mut status = 0;
            // SAFETY: rusage is plain data (integers), valid all zero.
            let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
            // SAFETY: nix wraps no wait4 (no waitpid gives this child's own
            // rusage); it waits for our own child, the pointers are to locals.
            let r = unsafe { libc::wait4(pid, &mut status, libc::WNOHANG, &mut ru) };
            if r == pid {
                break (
                    std::process::ExitStatus::from_raw(status),
                    ru.ru_maxrss as u64,
                );
            }
            assert!(r == 0, "wait4: {}", std::io::Error::last_os_error());
            assert!(
                start.elapsed() < timeout,
                "the device did not exit within {timeout:?}"
            );
            std::thread::sleep(Duration::from_millis(5));
        };
        let stderr = self.stderr.take().unwrap().join().unwrap();
        (status, rss, stderr)
    }

    /// The next message from the device, within `timeout`.
    pub fn next(&self, timeout: Duration) -> Option<Result<OwnedMessage, ParseError>> {
        self.messages.recv_timeout(timeout).ok()
    }
}
