//! The thin adapter between the sans-IO [`Decoder`] and `Read`/`Write`.
//!
//! [`FrameReader`] reads straight into the decoder's buffer and hands out
//! checked frames. It also gives up on a frame that stalls: one whose
//! header promised more bytes than arrive while the link goes on (a length
//! field damaged into a larger value, or a piece of the frame lost), which
//! would otherwise swallow every later frame until the promised length is
//! reached, for hours on an idle link that only repeats a 24-byte
//! StreamDone each second. A frame still incomplete after
//! [`STALL_BASE`] plus the time its length takes at [`STALL_RATE`], checked
//! whenever bytes arrive, is dropped as damaged ([`FrameError::Stalled`],
//! resync). [`FrameWriter`] emits a message into a reused buffer and
//! writes it, with a run's data straight from the caller's buffer, in one
//! vectored write where it can (retried until whole, so a short write
//! never splits a frame), and flushes only when asked. [`TransferReader`] turns whole USB transfers
//! into a byte stream.

use std::io::{self, IoSlice, Read, Write};
use std::time::{Duration, Instant};

use crate::decoder::Decoder;
use crate::frame::{Frame, FrameError};
use crate::message::Message;

/// What can go wrong reading frames from a stream.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("link read failed: {0}")]
    Io(#[from] io::Error),
    #[error(transparent)]
    Frame(#[from] FrameError),
}

/// How long any frame may take to arrive whole, beyond its length's share.
pub const STALL_BASE: Duration = Duration::from_secs(2);
/// The slowest rate, in bytes per second, at which a frame's bytes are
/// expected once its header has arrived: a 1 MiB frame may take 2 + 16 s.
pub const STALL_RATE: u64 = 64 * 1024;

/// Reads checked frames from a byte stream.
pub struct FrameReader<R> {
    inner: R,
    decoder: Decoder,
    eof: bool,
    /// When the bytes of the frame now being assembled were first seen.
    partial_since: Option<Instant>,
    stall_base: Duration,
    stall_rate: u64,
}

impl<R: Read> FrameReader<R> {
    pub fn new(inner: R) -> Self {
        FrameReader {
            inner,
            decoder: Decoder::new(),
            eof: false,
            partial_since: None,
            stall_base: STALL_BASE,
            stall_rate: STALL_RATE,
        }
    }

    /// Another allowance for a frame to arrive (tests use a tiny one).
    pub fn with_stall_allowance(mut self, base: Duration, bytes_per_sec: u64) -> Self {
        self.stall_base = base;
        self.stall_rate = bytes_per_sec.max(1);
        self
    }

    /// If the frame being assembled has taken longer than its allowance,
    /// drop it (the decoder resynchronises) and say so.
    fn check_stall(&mut self) -> Option<FrameError> {
        let since = self.partial_since?;
        let (needed, _) = self.decoder.partial()?;
        let allowance =
            self.stall_base + Duration::from_millis(needed as u64 * 1000 / self.stall_rate);
        let waited = since.elapsed();
        if waited <= allowance {
            return None;
        }
        self.partial_since = None;
        let (needed, available) = self.decoder.drop_partial()?;
        Some(FrameError::Stalled {
            needed,
            available,
            waited_ms: waited.as_millis() as u64,
        })
    }

    /// The next frame; `Ok(None)` at a clean end of stream between frames.
    /// After a frame error the reader has already resynchronised: calling
    /// again goes on with the next good frame.
    pub fn next_frame(&mut self) -> Result<Option<Frame<&[u8]>>, ReadError> {
        loop {
            match self.decoder.next_frame() {
                Some(Ok(r)) => {
                    self.partial_since = None;
                    return Ok(Some(self.decoder.frame(r)));
                }
                Some(Err(e)) => {
                    self.partial_since = None;
                    return Err(e.into());
                }
                None => {}
            }
            if self.eof {
                self.decoder.finish()?;
                return Ok(None);
            }
            if self.decoder.buffered() > 0 {
                self.partial_since.get_or_insert_with(Instant::now);
            }
            match self.inner.read(self.decoder.spare()) {
                Ok(0) => self.eof = true,
                Ok(n) => {
                    self.decoder.commit(n);
                    // Whole frames that just arrived go first; a frame
                    // still incomplete is judged only when nothing else is.
                    if !self.decoder.has_whole_frame() {
                        if let Some(e) = self.check_stall() {
                            return Err(e.into());
                        }
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e.into()),
            }
        }
    }
}

/// Writes whole frames to a byte stream.
pub struct FrameWriter<W> {
    inner: W,
    buf: Vec<u8>,
}

impl<W: Write> FrameWriter<W> {
    pub fn new(inner: W) -> Self {
        FrameWriter {
            inner,
            buf: Vec::new(),
        }
    }

    /// Emit one message and write it whole. A buffered writer (the USB
    /// link gathers frames into transfers) may hold it until [`Self::flush`].
    pub fn send(&mut self, msg: &Message) -> io::Result<()> {
        self.buf.clear();
        // A raw Run's data goes straight from the caller's buffer.
        let tail = msg.emit_split(&mut self.buf);
        write_both(&mut self.inner, &self.buf, tail)
    }

    /// Push out whatever the writer holds: call it before waiting for the peer.
    pub fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }

    pub fn get_mut(&mut self) -> &mut W {
        &mut self.inner
    }
}

/// Write `head`, then `tail`, in one vectored write where the writer takes
/// both at once (a pipe does): the peer wakes once for a frame, not once for
/// its header and again for its data.
fn write_both<W: Write>(w: &mut W, mut head: &[u8], mut tail: &[u8]) -> io::Result<()> {
    while !head.is_empty() {
        match w.write_vectored(&[IoSlice::new(head), IoSlice::new(tail)]) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) if n < head.len() => head = &head[n..],
            Ok(n) => {
                tail = tail.get(n - head.len()..).ok_or_else(|| {
                    io::Error::new(
                        io::ErrorKind::InvalidData,
                        "a write took more than it was given",
                    )
                })?;
                head = &[];
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    w.write_all(tail)
}

/// Whole transfers (USB bulk reads) as a byte stream: `fill` puts one
/// transfer at the start of the buffer it is given (reading into it, or
/// swapping in a buffer another thread filled) and returns its length;
/// [`Read::read`] hands it out in pieces of any size. A transfer of 0
/// bytes is a zero-length packet, not the end of the stream, and is
/// skipped; the stream ends only with an error.
pub struct TransferReader<F> {
    fill: F,
    buf: Vec<u8>,
    start: usize,
    end: usize,
}

impl<F: FnMut(&mut Vec<u8>) -> io::Result<usize>> TransferReader<F> {
    /// `size`: the first buffer's length, a multiple of the max packet
    /// size so that a read into it never overflows.
    pub fn new(size: usize, fill: F) -> Self {
        TransferReader {
            fill,
            buf: vec![0; size],
            start: 0,
            end: 0,
        }
    }
}

impl<F: FnMut(&mut Vec<u8>) -> io::Result<usize>> Read for TransferReader<F> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.start == self.end {
            let n = (self.fill)(&mut self.buf)?;
            (self.start, self.end) = (0, n.min(self.buf.len()));
        }
        let n = out.len().min(self.end - self.start);
        out[..n].copy_from_slice(&self.buf[self.start..self.start + n]);
        self.start += n;
        Ok(n)
    }
}

/// Write a command's output to stdout through `f`, then flush. A reader
/// that stopped early (`status | head -1`) is not an error: the rest is
/// dropped and `Ok` returned, as a command line tool is expected to do.
pub fn print_stdout(f: impl FnOnce(&mut dyn Write) -> io::Result<()>) -> io::Result<()> {
    let mut out = io::stdout().lock();
    match f(&mut out).and_then(|()| out.flush()) {
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(()),
        r => r,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::{FileId, Message};

    /// A reader that returns at most `n` bytes per call.
    struct Trickle<'a>(&'a [u8], usize);
    impl Read for Trickle<'_> {
        fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
            let n = self.0.len().min(self.1).min(out.len());
            out[..n].copy_from_slice(&self.0[..n]);
            self.0 = &self.0[n..];
            Ok(n)
        }
    }

    #[test]
    fn write_then_read_back_through_small_reads() {
        let mut w = FrameWriter::new(Vec::new());
        let data = vec![5u8; 70_000];
        w.send(&Message::Run {
            file: FileId(3),
            first: 9,
            count: crate::page_count(data.len() as u64) as u32,
            encoding: crate::message::Encoding::Raw,
            crcs: crate::PageCrcs::new(&crate::message::page_crcs(&data)).unwrap(),
            data: &data,
        })
        .unwrap();
        w.send(&Message::Goodbye).unwrap();
        let bytes = w.get_mut().clone();
        let mut r = FrameReader::new(Trickle(&bytes, 1000));
        let f = r.next_frame().unwrap().unwrap();
        match Message::parse(f).unwrap() {
            Message::Run { first, data: d, .. } => {
                assert_eq!(first, 9);
                assert_eq!(d, &data[..]);
            }
            m => panic!("unexpected {m:?}"),
        }
        let f = r.next_frame().unwrap().unwrap();
        assert_eq!(Message::parse(f).unwrap(), Message::Goodbye);
        assert!(r.next_frame().unwrap().is_none());
    }

    /// A reader that returns one chunk per call, waiting `pause` before each.
    struct Chunks(Vec<Vec<u8>>, Duration);
    impl Read for Chunks {
        fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
            if self.0.is_empty() {
                return Ok(0);
            }
            std::thread::sleep(self.1);
            let c = self.0.remove(0);
            out[..c.len()].copy_from_slice(&c);
            Ok(c.len())
        }
    }

    #[test]
    fn a_frame_that_stalls_while_the_link_goes_on_is_dropped() {
        // A block frame cut short, then an idle host's StreamDone, again and
        // again: without the stall rule, the StreamDones would fill the cut
        // frame's promised 65 556 bytes, 24 bytes at a time.
        let data = vec![9u8; 65536];
        let block = Message::Run {
            file: FileId(0),
            first: 0,
            count: crate::page_count(data.len() as u64) as u32,
            encoding: crate::message::Encoding::Raw,
            crcs: crate::PageCrcs::new(&crate::message::page_crcs(&data)).unwrap(),
            data: &data,
        }
        .to_frame();
        let done = Message::StreamDone { pages_sent: 1 }.to_frame();
        let mut chunks = vec![block[..100].to_vec()];
        chunks.extend(std::iter::repeat_n(done.clone(), 5));
        let mut r = FrameReader::new(Chunks(chunks, Duration::from_millis(5)))
            .with_stall_allowance(Duration::from_millis(8), u64::MAX);
        match r.next_frame() {
            Err(ReadError::Frame(FrameError::Stalled {
                needed, available, ..
            })) => {
                assert_eq!(needed, block.len());
                assert!(available >= 100 && available < 100 + 5 * done.len());
            }
            other => panic!(
                "expected a stalled frame, got {:?}",
                other.map(|f| f.map(|f| f.total_len()))
            ),
        }
        // The StreamDones that came after it are found again.
        let mut after = 0;
        while let Some(f) = r.next_frame().unwrap() {
            assert_eq!(
                Message::parse(f).unwrap(),
                Message::StreamDone { pages_sent: 1 }
            );
            after += 1;
        }
        assert!(after >= 3, "{after} StreamDones after the stall");
    }

    #[test]
    fn a_slow_frame_within_its_allowance_is_kept() {
        let data = vec![3u8; 5000];
        let block = Message::Run {
            file: FileId(0),
            first: 0,
            count: crate::page_count(data.len() as u64) as u32,
            encoding: crate::message::Encoding::Raw,
            crcs: crate::PageCrcs::new(&crate::message::page_crcs(&data)).unwrap(),
            data: &data,
        }
        .to_frame();
        let chunks: Vec<Vec<u8>> = block.chunks(500).map(<[u8]>::to_vec).collect();
        let mut r = FrameReader::new(Chunks(chunks, Duration::from_millis(1)));
        let f = r.next_frame().unwrap().unwrap();
        assert_eq!(f.total_len(), block.len());
    }

    #[test]
    fn a_block_sent_in_two_writes_is_the_same_frame() {
        let data: Vec<u8> = (0..5000u32).map(|i| (i % 253) as u8).collect();
        let table = crate::message::page_crcs(&data);
        let msg = Message::Run {
            file: FileId(1),
            first: 2,
            count: crate::page_count(data.len() as u64) as u32,
            encoding: crate::message::Encoding::Raw,
            crcs: crate::PageCrcs::new(&table).unwrap(),
            data: &data,
        };
        let mut w = FrameWriter::new(Vec::new());
        w.send(&msg).unwrap();
        assert_eq!(w.get_mut(), &msg.to_frame());
    }

    /// A writer that takes at most `max` bytes a call, counting its calls.
    struct Short {
        out: Vec<u8>,
        max: usize,
        calls: usize,
    }
    impl Write for Short {
        fn write(&mut self, data: &[u8]) -> io::Result<usize> {
            self.write_vectored(&[IoSlice::new(data)])
        }
        fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
            self.calls += 1;
            let mut n = 0;
            for b in bufs {
                let take = b.len().min(self.max - n);
                self.out.extend_from_slice(&b[..take]);
                n += take;
            }
            Ok(n)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_run_is_written_in_one_call_when_the_writer_takes_it_and_whole_when_it_does_not() {
        let data = vec![7u8; 3 * 4096 + 100];
        let table = crate::message::page_crcs(&data);
        let msg = Message::Run {
            file: FileId(2),
            first: 5,
            count: crate::page_count(data.len() as u64) as u32,
            encoding: crate::message::Encoding::Raw,
            crcs: crate::PageCrcs::new(&table).unwrap(),
            data: &data,
        };
        // A pipe takes the header and the data in one writev.
        let mut w = FrameWriter::new(Short {
            out: Vec::new(),
            max: usize::MAX,
            calls: 0,
        });
        w.send(&msg).unwrap();
        assert_eq!(w.get_mut().calls, 1);
        assert_eq!(w.get_mut().out, msg.to_frame());
        // Short writes, splitting the header too: the same bytes, in order.
        for max in [1, 7, 4096, 4100] {
            let mut w = FrameWriter::new(Short {
                out: Vec::new(),
                max,
                calls: 0,
            });
            w.send(&msg).unwrap();
            w.send(&Message::Goodbye).unwrap();
            let mut want = msg.to_frame();
            want.extend_from_slice(&Message::Goodbye.to_frame());
            assert_eq!(w.get_mut().out, want, "max {max}");
        }
    }

    #[test]
    fn transfers_read_as_a_stream_and_zero_length_ones_are_skipped() {
        let mut transfers = vec![b"abc".to_vec(), vec![], b"defgh".to_vec(), vec![]].into_iter();
        let mut r = TransferReader::new(8, move |buf: &mut Vec<u8>| match transfers.next() {
            Some(t) => {
                buf[..t.len()].copy_from_slice(&t);
                Ok(t.len())
            }
            None => Err(io::ErrorKind::ConnectionAborted.into()),
        });
        let mut two = [0u8; 2];
        assert_eq!(r.read(&mut two).unwrap(), 2);
        assert_eq!(&two, b"ab");
        let mut rest = [0u8; 16];
        assert_eq!(r.read(&mut rest).unwrap(), 1);
        assert_eq!(r.read(&mut rest).unwrap(), 5);
        assert_eq!(&rest[..5], b"defgh");
        let e = r.read(&mut rest).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::ConnectionAborted);
    }

    #[test]
    fn cut_inside_a_frame_is_truncated() {
        let bytes = Message::Goodbye.to_frame();
        let mut r = FrameReader::new(Trickle(&bytes[..12], 5));
        assert!(matches!(
            r.next_frame(),
            Err(ReadError::Frame(FrameError::Truncated { .. }))
        ));
    }
}
