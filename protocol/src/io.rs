//! The thin adapter between the sans-IO [`Decoder`] and `Read`/`Write`.
//!
//! [`FrameReader`] reads straight into the decoder's buffer and hands out
//! checked frames; [`FrameWriter`] emits a message into a reused buffer and
//! writes it with `write_all`, so a short write never splits a frame, and
//! flushes only when asked. [`TransferReader`] turns whole USB transfers
//! into a byte stream.

use std::io::{self, Read, Write};

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

/// Reads checked frames from a byte stream.
pub struct FrameReader<R> {
    inner: R,
    decoder: Decoder,
    eof: bool,
}

impl<R: Read> FrameReader<R> {
    pub fn new(inner: R) -> Self {
        FrameReader {
            inner,
            decoder: Decoder::new(),
            eof: false,
        }
    }

    /// The next frame; `Ok(None)` at a clean end of stream between frames.
    /// After a frame error the reader has already resynchronised: calling
    /// again goes on with the next good frame.
    pub fn next_frame(&mut self) -> Result<Option<Frame<&[u8]>>, ReadError> {
        loop {
            match self.decoder.next_frame() {
                Some(Ok(r)) => return Ok(Some(self.decoder.frame(r))),
                Some(Err(e)) => return Err(e.into()),
                None => {}
            }
            if self.eof {
                self.decoder.finish()?;
                return Ok(None);
            }
            match self.inner.read(self.decoder.spare()) {
                Ok(0) => self.eof = true,
                Ok(n) => self.decoder.commit(n),
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
        msg.emit(&mut self.buf);
        self.inner.write_all(&self.buf)
    }

    /// Push out whatever the writer holds: call it before waiting for the peer.
    pub fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }

    pub fn get_mut(&mut self) -> &mut W {
        &mut self.inner
    }
}

/// Whole transfers (USB bulk reads) as a byte stream: `fill` reads one
/// transfer into a buffer of `size` bytes (a multiple of the max packet
/// size, so it never overflows), and [`Read::read`] hands it out in pieces
/// of any size. A transfer of 0 bytes is a zero-length packet, not the end
/// of the stream, and is skipped; the stream ends only with an error.
pub struct TransferReader<F> {
    fill: F,
    buf: Vec<u8>,
    start: usize,
    end: usize,
}

impl<F: FnMut(&mut [u8]) -> io::Result<usize>> TransferReader<F> {
    pub fn new(size: usize, fill: F) -> Self {
        TransferReader {
            fill,
            buf: vec![0; size],
            start: 0,
            end: 0,
        }
    }
}

impl<F: FnMut(&mut [u8]) -> io::Result<usize>> Read for TransferReader<F> {
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
        w.send(&Message::Block {
            file: FileId(3),
            index: 9,
            crc: crc32fast::hash(&data),
            encoding: crate::message::Encoding::Raw,
            data: &data,
        })
        .unwrap();
        w.send(&Message::Goodbye).unwrap();
        let bytes = w.get_mut().clone();
        let mut r = FrameReader::new(Trickle(&bytes, 1000));
        let f = r.next_frame().unwrap().unwrap();
        match Message::parse(f).unwrap() {
            Message::Block { index, data: d, .. } => {
                assert_eq!(index, 9);
                assert_eq!(d, &data[..]);
            }
            m => panic!("unexpected {m:?}"),
        }
        let f = r.next_frame().unwrap().unwrap();
        assert_eq!(Message::parse(f).unwrap(), Message::Goodbye);
        assert!(r.next_frame().unwrap().is_none());
    }

    #[test]
    fn transfers_read_as_a_stream_and_zero_length_ones_are_skipped() {
        let mut transfers = vec![b"abc".to_vec(), vec![], b"defgh".to_vec(), vec![]].into_iter();
        let mut r = TransferReader::new(8, move |buf: &mut [u8]| match transfers.next() {
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
