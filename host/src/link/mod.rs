//! The byte link to the device: a child process (`--exec`), this
//! process's own stdin and stdout (`--stdio`), or a USB device (`--usb`,
//! see [`crate::link::usb`]).
//!
//! A link is a read side, a write side and the [`Peer`] at the other end.
//! Both sides are plain unbuffered pipes, so a frame written with
//! `write_all` leaves at once. With `--exec` the command runs under `sh -c`
//! with its stdin, stdout and stderr piped; a thread relays its stderr, line
//! by line, to the host's own, so the device's logs show while the host
//! runs. The device daemon stays mounted after a session, so the host never
//! waits for it nor kills it, and never waits for the end of its stderr: a
//! daemon that outlives the host keeps none of the host's descriptors, and
//! `push 2>&1 | wc -l` ends with the push. Only after a broken link does
//! the host look (briefly) whether the command exited, to say so in the
//! error, with the command's last messages relayed first. With
//! `--stdio` the descriptors are duplicated, so nothing goes through the
//! standard library's stdout buffer, and stdout carries frames only.

pub mod usb;
pub mod usbcheck;

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::fd::AsFd;
use std::os::unix::process::ExitStatusExt;
use std::process::{Child, ChildStderr, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};

/// How long to wait for a device command to exit after the link broke.
pub const EXIT_GRACE: Duration = Duration::from_millis(200);

/// Both sides of a link and the peer behind them.
pub struct Link {
    pub read: Box<dyn Read + Send>,
    pub write: Box<dyn Write + Send>,
    pub peer: Peer,
}

/// What is at the other end of the link.
pub enum Peer {
    /// Whatever is connected to this process's stdin and stdout.
    Stdio,
    /// A command this process started; `relayed` says when its stderr ended.
    Command {
        child: Child,
        command: String,
        relayed: Receiver<()>,
    },
    /// A USB device.
    Usb,
}

impl Link {
    /// Start `sh -c command` and talk to it over its stdin and stdout.
    pub fn exec(command: &str) -> io::Result<Link> {
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(command)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()?;
        let missing = || io::Error::other("the command's pipes were not set up");
        let write = child.stdin.take().ok_or_else(missing)?;
        let read = child.stdout.take().ok_or_else(missing)?;
        let relayed = relay_stderr(child.stderr.take().ok_or_else(missing)?)?;
        grow_pipe(&write);
        grow_pipe(&read);
        Ok(Link {
            read: Box::new(read),
            write: Box::new(write),
            peer: Peer::Command {
                child,
                command: command.to_string(),
                relayed,
            },
        })
    }

    /// Talk to the feedfs device with `serial`, or the only one attached;
    /// with `wait`, look again until there is one: `wait` hears why each
    /// look failed, and says whether to go on looking.
    pub fn usb(serial: Option<&str>, wait: Option<&dyn Fn(&str) -> bool>) -> io::Result<Link> {
        loop {
            // A fresh context each look: a device list cached across a
            // re-enumeration can hold a device seen before it was configured.
            let ctx = crate::link::usb::context()?;
            let found =
                crate::link::usb::find(&ctx).map_err(|e| io::Error::other(format!("USB: {e}")))?;
            let result = match crate::link::usb::pick(found, serial) {
                Ok(Some(f)) => crate::link::usb::open(&f).map(|(r, w)| (f, r, w)),
                Ok(None) => Err(io::Error::new(
                    io::ErrorKind::NotFound,
                    match serial {
                        Some(s) => format!("no feedfs device with serial {s} is attached"),
                        None => "no feedfs device is attached (is feedfs-device running with \
                                 --usb-ffs or --usb-gadget? --wait waits for one)"
                            .to_string(),
                    },
                )),
                Err(text) => return Err(io::Error::other(text)),
            };
            match result {
                Ok((f, read, write)) => {
                    log::info!("USB device: {}", f.describe());
                    return Ok(Link {
                        read: Box::new(read),
                        write: Box::new(write),
                        peer: Peer::Usb,
                    });
                }
                // A device that is just (dis)appearing: look again.
                Err(e) if wait.is_some() && e.kind() != io::ErrorKind::PermissionDenied => {
                    if !wait.is_some_and(|go_on| go_on(&e.to_string())) {
                        return Err(io::Error::new(io::ErrorKind::Interrupted, e.to_string()));
                    }
                    std::thread::sleep(Duration::from_millis(200));
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Talk over this process's stdin and stdout.
    pub fn stdio() -> io::Result<Link> {
        let read = File::from(io::stdin().as_fd().try_clone_to_owned()?);
        let write = File::from(io::stdout().as_fd().try_clone_to_owned()?);
        grow_pipe(&read);
        grow_pipe(&write);
        Ok(Link {
            read: Box::new(read),
            write: Box::new(write),
            peer: Peer::Stdio,
        })
    }
}

impl Peer {
    /// The command's exit status if it has exited or exits within `grace`;
    /// `None` for stdio or a command still running.
    pub fn exit_status(&mut self, grace: Duration) -> Option<ExitStatus> {
        let Peer::Command { child, .. } = self else {
            return None;
        };
        let deadline = Instant::now() + grace;
        loop {
            match child.try_wait() {
                Ok(Some(status)) => return Some(status),
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(10))
                }
                Ok(None) => return None,
                Err(e) => {
                    log::debug!("cannot check the device command: {e}");
                    return None;
                }
            }
        }
    }

    /// A sentence on how the peer ended, for an error after a broken link.
    /// When the command has exited, its last messages are relayed first.
    pub fn describe_end(&mut self) -> Option<String> {
        let status = self.exit_status(EXIT_GRACE);
        let Peer::Command {
            command, relayed, ..
        } = self
        else {
            return None;
        };
        if status.is_some() {
            let _ = relayed.recv_timeout(EXIT_GRACE);
        }
        Some(match status {
            Some(s) => format!("device {} (command: {command})", describe_status(s)),
            None => format!("device command is still running (command: {command})"),
        })
    }
}

/// Copy the command's stderr to ours, a line at a time (above the rows
/// drawn for several devices), on a thread of its own that nobody joins. The receiver hears when the command's stderr
/// has ended (every process holding it has exited or let go of it).
fn relay_stderr(from: ChildStderr) -> io::Result<Receiver<()>> {
    let (ended, relayed) = mpsc::channel();
    // Among several devices, whose lines these are.
    let who = crate::term::device_here();
    std::thread::Builder::new()
        .name("device-stderr".into())
        .spawn(move || {
            let mut from = BufReader::new(from);
            let mut line = Vec::new();
            line.extend_from_slice(who.as_bytes());
            while matches!(from.read_until(b'\n', &mut line), Ok(n) if n > 0) {
                crate::term::write_lines(&line);
                line.truncate(who.len());
            }
            let _ = ended.send(());
        })?;
    Ok(relayed)
}

/// `exited with status N` or `was killed by signal N`.
pub fn describe_status(s: ExitStatus) -> String {
    match (s.code(), s.signal()) {
        (Some(code), _) => format!("exited with status {code}"),
        (None, Some(sig)) => format!("was killed by signal {sig}"),
        (None, None) => format!("ended ({s})"),
    }
}

/// Bytes a link pipe may hold. Larger than the default 64 KiB so a stream
/// frame rarely waits for the reader (a 1 GiB push ran at 0.6 of a raw pipe
/// copy's rate with 64 KiB and matched it with 256 KiB), small enough that a
/// demanded run queues behind at most this much stream data (about 0.3 ms
/// at 1 GB/s).
pub const PIPE_BUFFER: i32 = 256 * 1024;

/// Ask the kernel for a [`PIPE_BUFFER`]-byte pipe; a refusal (not a pipe,
/// or over the system's limit) leaves the pipe as it is.
pub fn grow_pipe(fd: &impl AsFd) {
    let grown = nix::fcntl::fcntl(fd.as_fd(), nix::fcntl::FcntlArg::F_SETPIPE_SZ(PIPE_BUFFER));
    if let Err(e) = grown {
        log::debug!("pipe size unchanged: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exec_links_to_the_command_and_reports_its_exit() {
        let mut link = Link::exec("read line; echo \"got $line\"; exit 3").unwrap();
        link.write.write_all(b"hello\n").unwrap();
        let mut out = String::new();
        link.read.read_to_string(&mut out).unwrap();
        assert_eq!(out, "got hello\n");
        let text = link.peer.describe_end().unwrap();
        assert!(text.starts_with("device exited with status 3 ("), "{text}");
    }

    #[test]
    fn a_running_command_is_left_alone() {
        let mut link = Link::exec("read line").unwrap();
        assert_eq!(link.peer.exit_status(Duration::from_millis(20)), None);
        let text = link.peer.describe_end().unwrap();
        assert!(text.contains("is still running"), "{text}");
        // Closing its stdin lets it finish.
        drop(link.write);
        assert!(link.peer.exit_status(Duration::from_secs(10)).is_some());
    }

    #[test]
    fn the_command_gets_a_pipe_for_stderr_not_ours() {
        let mut link = Link::exec("readlink /proc/self/fd/2").unwrap();
        let mut theirs = String::new();
        link.read.read_to_string(&mut theirs).unwrap();
        let ours = std::fs::read_link("/proc/self/fd/2").unwrap();
        assert!(theirs.starts_with("pipe:["), "{theirs}");
        assert_ne!(theirs.trim(), ours.to_string_lossy(), "our own stderr");
    }

    #[test]
    fn stdio_has_no_command() {
        assert!(Peer::Stdio.describe_end().is_none());
    }
}
