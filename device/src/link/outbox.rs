//! Frames on their way to the host, leaving in the order they were sent.
//!
//! Every frame goes through the link writer thread's queue, except one
//! case: a small frame (a Demand) is written at once by whichever thread
//! sends it when the link is a pipe and nothing is queued or being written
//! ahead of it. The check and the write happen under one lock (the
//! backlog's), so no frame ever overtakes one sent before it, whatever path
//! either takes: a `HaveEnd` never passes a queued `Have`. A write of at
//! most `PIPE_BUF` bytes to a pipe is atomic, so it never tears a frame,
//! and the descriptor is non-blocking, so a FUSE worker never waits on the
//! link; a full pipe sends the frame to the queue instead. The writer
//! writes frames whole, several at a time (on USB, with a zero-length
//! packet where one is due). Skipping that thread's wake-up keeps a
//! demand's way to the host short when the CPUs are busy with the stream.

use std::fs::File;
use std::io::{self, Write};
use std::os::fd::AsFd;
use std::os::unix::fs::FileTypeExt;
use std::sync::mpsc::{Receiver, Sender};
use std::sync::{Arc, Mutex, MutexGuard};

use feedfs_protocol::usb::{needs_zlp, TRANSFER_SIZE};
use nix::fcntl::{fcntl, FcntlArg, OFlag};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

/// The link's write side, shared by direct senders and the writer thread.
pub struct LinkOut {
    file: File,
    /// Whether small frames may be written at once (the link is a pipe).
    direct: bool,
    /// Frames queued for the writer or being written by it. A direct write
    /// happens only at zero, under this lock; queueing counts up under it.
    backlog: Mutex<usize>,
}

impl LinkOut {
    /// The write side of a link; a pipe is made non-blocking for direct writes.
    pub fn new(file: File) -> Arc<LinkOut> {
        let direct = make_nonblocking_pipe(&file);
        Arc::new(LinkOut {
            file,
            direct,
            backlog: Mutex::new(0),
        })
    }

    fn backlog(&self) -> MutexGuard<'_, usize> {
        self.backlog.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Where the link's frames are sent from, by any thread; clones share the order.
#[derive(Clone)]
pub struct Outbox {
    queue: Sender<Vec<u8>>,
    /// `None` when nobody writes the queue to a link (tests read it).
    out: Option<Arc<LinkOut>>,
}

impl Outbox {
    /// Every frame goes to `queue`, read by the caller (tests).
    pub fn queued(queue: Sender<Vec<u8>>) -> Outbox {
        Outbox { queue, out: None }
    }

    /// Frames for `out`, through `queue` to [`write_frames`] unless they
    /// can be written at once.
    pub fn new(queue: Sender<Vec<u8>>, out: &Arc<LinkOut>) -> Outbox {
        Outbox {
            queue,
            out: Some(out.clone()),
        }
    }

    /// Send one whole frame; false when the link is gone.
    pub fn send(&self, mut frame: Vec<u8>) -> bool {
        let Some(out) = &self.out else {
            return self.queue.send(frame).is_ok();
        };
        let mut backlog = out.backlog();
        if *backlog == 0 && out.direct && frame.len() <= libc::PIPE_BUF {
            match (&out.file).write(&frame) {
                Ok(n) if n == frame.len() => return true,
                // Impossible on a pipe for this size; keep the stream whole anyway.
                Ok(n) => drop(frame.drain(..n)),
                // A full pipe, or a failure the writer will meet and report.
                Err(_) => {}
            }
        }
        // Counted and queued under the lock: the queue's order is the send order.
        *backlog += 1;
        self.queue.send(frame).is_ok()
    }
}

/// Whether `f` is a pipe, now non-blocking.
fn make_nonblocking_pipe(f: &File) -> bool {
    if !f.metadata().is_ok_and(|m| m.file_type().is_fifo()) {
        return false;
    }
    let Ok(flags) = fcntl(f, FcntlArg::F_GETFL) else {
        return false;
    };
    let flags = OFlag::from_bits_retain(flags) | OFlag::O_NONBLOCK;
    fcntl(f, FcntlArg::F_SETFL(flags)).is_ok()
}

/// The link writer thread: write the queued frames whole, waiting for room
/// (the descriptor may be non-blocking). Frames queued together leave in
/// one write of up to [`TRANSFER_SIZE`] bytes, which on USB is one bulk
/// transfer; with `zlp_packet` set (a USB endpoint's max packet size), a
/// write that is a whole number of packets is followed by a zero-length one.
pub fn write_frames(out: Arc<LinkOut>, frames: Receiver<Vec<u8>>, zlp_packet: Option<usize>) {
    let mut batch = Vec::new();
    while let Ok(frame) = frames.recv() {
        batch.clear();
        batch.extend_from_slice(&frame);
        let mut taken = 1;
        while batch.len() < TRANSFER_SIZE {
            match frames.try_recv() {
                Ok(f) => {
                    batch.extend_from_slice(&f);
                    taken += 1;
                }
                Err(_) => break,
            }
        }
        let mut result = write_whole(&out.file, &batch);
        if let (Ok(()), Some(packet)) = (&result, zlp_packet) {
            if needs_zlp(batch.len(), packet) {
                result = (&out.file).write(&[]).map(drop);
            }
        }
        if let Err(e) = result {
            // The backlog stays counted: no direct write follows a lost frame.
            log::warn!("link write failed: {e}");
            break;
        }
        *out.backlog() -= taken;
    }
}

fn write_whole(mut f: &File, mut buf: &[u8]) -> io::Result<()> {
    while !buf.is_empty() {
        match f.write(buf) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => buf = &buf[n..],
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                // Whatever poll says, the next write tells.
                let _ = poll(
                    &mut [PollFd::new(f.as_fd(), PollFlags::POLLOUT)],
                    PollTimeout::NONE,
                );
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn pipe() -> (File, File) {
        let (rd, wr) = nix::unistd::pipe().expect("a pipe");
        (File::from(rd), File::from(wr))
    }

    /// Whatever the pipe holds now, without waiting.
    fn drain(rd: &mut File) -> Vec<u8> {
        let mut got = Vec::new();
        let mut buf = [0u8; 65536];
        loop {
            match rd.read(&mut buf) {
                Ok(0) => return got,
                Ok(n) => got.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return got,
                Err(e) => panic!("{e}"),
            }
        }
    }

    #[test]
    fn no_frame_overtakes_one_queued_before_it() {
        let (mut rd, wr) = pipe();
        assert!(make_nonblocking_pipe(&rd));
        let out = LinkOut::new(wr);
        let (tx, rx) = std::sync::mpsc::channel();
        let outbox = Outbox::new(tx, &out);
        // Nothing ahead of it: a small frame is in the pipe at once.
        assert!(outbox.send(b"demand".to_vec()));
        assert_eq!(drain(&mut rd), b"demand");
        // A large frame waits for the writer, which is not running (as when
        // it is descheduled, or blocked on a full pipe): the small frames
        // sent after it wait behind it.
        let big = vec![7u8; 100_000];
        assert!(outbox.send(big.clone()));
        assert!(outbox.send(b"have-end".to_vec()));
        assert!(outbox.send(b"demand2".to_vec()));
        assert!(
            drain(&mut rd).is_empty(),
            "nothing may pass the queued frame"
        );
        let writer = std::thread::spawn(move || write_frames(out, rx, None));
        let mut got = Vec::new();
        let want = [&big[..], b"have-end", b"demand2"].concat();
        while got.len() < want.len() {
            got.extend(drain(&mut rd));
            std::thread::yield_now();
        }
        assert!(got == want, "frames left in the order sent");
        // Once the writer has written everything, small frames go direct again.
        let since = std::time::Instant::now();
        while *outbox.out.as_ref().unwrap().backlog() != 0 {
            assert!(since.elapsed().as_secs() < 10, "the writer never finished");
            std::thread::yield_now();
        }
        assert!(outbox.send(b"demand3".to_vec()));
        assert_eq!(drain(&mut rd), b"demand3");
        drop(outbox);
        writer.join().unwrap();
    }
}
