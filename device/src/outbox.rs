//! Frames on their way to the host.
//!
//! A small frame (a Demand) is written at once by whichever thread sends it
//! when the link is a pipe with room for it: a write of at most `PIPE_BUF`
//! bytes to a pipe is atomic, so it never tears a frame, and the descriptor
//! is non-blocking, so a FUSE worker never waits on the link. Anything else
//! (a larger frame, a busy or full pipe, a link that is not a pipe) goes to
//! the link writer thread, which writes frames whole, several at a time,
//! under the same lock (on USB, with a zero-length packet where one is due). Skipping that thread's wake-up keeps a demand's way to
//! the host short when the CPUs are busy with the stream.

use std::fs::File;
use std::io::{self, Write};
use std::os::fd::AsRawFd;
use std::sync::mpsc::{Receiver, Sender};
use std::sync::{Arc, Mutex};

use feedfs_protocol::usb::{needs_zlp, TRANSFER_SIZE};

/// The link's write side, shared by direct senders and the writer thread.
pub type LinkOut = Arc<Mutex<File>>;

#[derive(Clone)]
pub struct Outbox {
    queue: Sender<Vec<u8>>,
    direct: Option<LinkOut>,
}

impl Outbox {
    /// Every frame goes through the writer thread's queue.
    pub fn queued(queue: Sender<Vec<u8>>) -> Outbox {
        Outbox {
            queue,
            direct: None,
        }
    }

    /// Small frames go straight to `out` when it is a pipe (made
    /// non-blocking here); the rest through the queue.
    pub fn new(queue: Sender<Vec<u8>>, out: &LinkOut) -> Outbox {
        let direct = make_nonblocking_pipe(&out.lock().unwrap_or_else(|p| p.into_inner()));
        Outbox {
            queue,
            direct: direct.then(|| out.clone()),
        }
    }

    /// Send one whole frame; false when the link is gone.
    pub fn send(&self, frame: Vec<u8>) -> bool {
        if frame.len() <= libc::PIPE_BUF {
            if let Some(out) = &self.direct {
                if let Ok(mut f) = out.try_lock() {
                    match f.write(&frame) {
                        Ok(n) if n == frame.len() => return true,
                        // Impossible on a pipe for this size; keep the stream whole anyway.
                        Ok(n) => return self.queue.send(frame[n..].to_vec()).is_ok(),
                        Err(_) => {}
                    }
                }
            }
        }
        self.queue.send(frame).is_ok()
    }
}

/// Whether `f` is a pipe, now non-blocking.
fn make_nonblocking_pipe(f: &File) -> bool {
    let fd = f.as_raw_fd();
    // SAFETY: fstat and fcntl on a descriptor we own, into a local struct.
    unsafe {
        let mut st: libc::stat = std::mem::zeroed();
        if libc::fstat(fd, &mut st) != 0 || st.st_mode & libc::S_IFMT != libc::S_IFIFO {
            return false;
        }
        let flags = libc::fcntl(fd, libc::F_GETFL);
        flags >= 0 && libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) == 0
    }
}

/// The link writer thread: write the queued frames whole, waiting for room
/// (the descriptor may be non-blocking). Frames queued together leave in
/// one write of up to [`TRANSFER_SIZE`] bytes, which on USB is one bulk
/// transfer; with `zlp_packet` set (a USB endpoint's max packet size), a
/// write that is a whole number of packets is followed by a zero-length one.
pub fn write_frames(out: LinkOut, frames: Receiver<Vec<u8>>, zlp_packet: Option<usize>) {
    let mut batch = Vec::new();
    while let Ok(frame) = frames.recv() {
        batch.clear();
        batch.extend_from_slice(&frame);
        while batch.len() < TRANSFER_SIZE {
            match frames.try_recv() {
                Ok(f) => batch.extend_from_slice(&f),
                Err(_) => break,
            }
        }
        let mut f = out.lock().unwrap_or_else(|p| p.into_inner());
        let mut result = write_whole(&mut f, &batch);
        if let (Ok(()), Some(packet)) = (&result, zlp_packet) {
            if needs_zlp(batch.len(), packet) {
                result = f.write(&[]).map(drop);
            }
        }
        if let Err(e) = result {
            log::warn!("link write failed: {e}");
            break;
        }
    }
}

fn write_whole(f: &mut File, mut buf: &[u8]) -> io::Result<()> {
    while !buf.is_empty() {
        match f.write(buf) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => buf = &buf[n..],
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                let mut pfd = libc::pollfd {
                    fd: f.as_raw_fd(),
                    events: libc::POLLOUT,
                    revents: 0,
                };
                // SAFETY: one pollfd on the stack, for a descriptor we own.
                unsafe { libc::poll(&mut pfd, 1, -1) };
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
    use std::os::fd::FromRawFd;

    fn pipe() -> (File, File) {
        let mut fds = [0; 2];
        // SAFETY: pipe() fills two descriptors that we then own.
        assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
        // SAFETY: both descriptors are fresh and owned by nobody else.
        unsafe { (File::from_raw_fd(fds[0]), File::from_raw_fd(fds[1])) }
    }

    #[test]
    fn small_frames_go_direct_large_ones_through_the_writer_in_order() {
        let (mut rd, wr) = pipe();
        let out: LinkOut = Arc::new(Mutex::new(wr));
        let (tx, rx) = std::sync::mpsc::channel();
        let outbox = Outbox::new(tx, &out);
        assert!(outbox.direct.is_some());
        assert!(outbox.send(b"small".to_vec()));
        let big = vec![7u8; 100_000];
        assert!(outbox.send(big.clone()));
        // The small one is already in the pipe; the big one waits for the writer.
        let mut first = [0u8; 5];
        rd.read_exact(&mut first).unwrap();
        assert_eq!(&first, b"small");
        let writer = std::thread::spawn(move || write_frames(out, rx, None));
        let mut got = vec![0u8; big.len()];
        rd.read_exact(&mut got).unwrap();
        assert_eq!(got, big);
        drop(outbox);
        writer.join().unwrap();
    }
}
