//! The thin adapter between the sans-IO [`Decoder`] and `Read`/`Write`.
//!
//! [`FrameReader`] reads straight into the decoder's buffer and hands out
//! checked frames; [`FrameWriter`] emits a message into a reused buffer and
//! writes it with `write_all`, so a short write never splits a frame, and
//! flushes only when asked.

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
    fn cut_inside_a_frame_is_truncated() {
        let bytes = Message::Goodbye.to_frame();
        let mut r = FrameReader::new(Trickle(&bytes[..12], 5));
        assert!(matches!(
            r.next_frame(),
            Err(ReadError::Frame(FrameError::Truncated { .. }))
        ));
    }
}
