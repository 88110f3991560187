//! A sans-IO frame decoder: feed it arbitrary chunks, take whole checked frames out.
//!
//! A USB read can hold half a frame or three; a pipe read anything in
//! between. The decoder keeps one fixed buffer of [`CAPACITY`] bytes (two
//! frames of the largest size) and never allocates again. It moves the
//! bytes it holds to the front only when the space behind them is short
//! ([`MIN_SPARE`], or less than the frame being assembled still needs), so
//! a frame that arrives in many small reads is not moved once per read. After a bad
//! frame it reports the error once and resynchronises on the next magic, so
//! one damaged frame costs that frame only. Frame views it returns stay
//! valid until the next call that adds bytes ([`Decoder::feed`],
//! [`Decoder::spare`]).

use crate::frame::{self, Frame, FrameError, Peek, HEADER_LEN, MAGIC, MAX_PAYLOAD};

/// The largest frame: a header and the largest payload.
const MAX_FRAME: usize = HEADER_LEN + MAX_PAYLOAD as usize;

/// The decoder's fixed buffer size: two whole frames of the largest size.
pub const CAPACITY: usize = 2 * MAX_FRAME;

/// The least free space [`Decoder::spare`] offers before it moves the held
/// bytes to the front: one read of a full pipe.
pub const MIN_SPARE: usize = 1 << 20;

/// Where a decoded frame sits in the decoder's buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameRef {
    start: usize,
    len: usize,
}

/// Chunk-fed frame decoder with a fixed buffer.
pub struct Decoder {
    buf: Box<[u8]>,
    start: usize,
    end: usize,
}

impl Default for Decoder {
    fn default() -> Self {
        Self::new()
    }
}

impl Decoder {
    pub fn new() -> Self {
        Decoder {
            buf: vec![0; CAPACITY].into_boxed_slice(),
            start: 0,
            end: 0,
        }
    }

    /// Bytes held that are not yet part of a returned frame.
    pub fn buffered(&self) -> usize {
        self.end - self.start
    }

    /// Move the held bytes to the front when the space behind them is
    /// shorter than [`MIN_SPARE`] or than the rest of the frame they start.
    fn compact(&mut self) {
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
            return;
        }
        let free = self.buf.len() - self.end;
        let rest = match frame::peek(&self.buf[self.start..self.end]) {
            Ok(Peek::NeedMore(n)) => n.saturating_sub(self.end - self.start),
            _ => 0,
        };
        if self.start > 0 && (free < MIN_SPARE || free < rest) {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
    }

    /// Free space to read new bytes into; follow with [`Decoder::commit`].
    /// Never empty while [`Decoder::next_frame`] returns `None`, and always
    /// room for the rest of the frame being assembled.
    pub fn spare(&mut self) -> &mut [u8] {
        self.compact();
        &mut self.buf[self.end..]
    }

    /// Mark `n` bytes of [`Decoder::spare`] as filled.
    pub fn commit(&mut self, n: usize) {
        self.end = (self.end + n).min(self.buf.len());
    }

    /// Copy as much of `data` as fits; returns how many bytes were taken.
    /// Call [`Decoder::next_frame`] until `None`, then feed the rest.
    pub fn feed(&mut self, data: &[u8]) -> usize {
        let spare = self.spare();
        let n = data.len().min(spare.len());
        spare[..n].copy_from_slice(&data[..n]);
        self.commit(n);
        n
    }

    /// The next whole frame, an error for damaged bytes, or `None` when more bytes are needed.
    pub fn next_frame(&mut self) -> Option<Result<FrameRef, FrameError>> {
        let held = &self.buf[self.start..self.end];
        if held.is_empty() {
            return None;
        }
        match frame::peek(held) {
            Ok(Peek::NeedMore(_)) => None,
            Ok(Peek::Whole(len)) => match Frame::new_checked(&held[..len]) {
                Ok(f) => {
                    let r = FrameRef {
                        start: self.start,
                        len,
                    };
                    let known = f.message_type();
                    self.start += len;
                    Some(known.map(|_| r))
                }
                Err(e) => {
                    self.resync();
                    Some(Err(e))
                }
            },
            Err(e) => {
                self.resync();
                Some(Err(e))
            }
        }
    }

    /// The frame at `r`, as returned by the last [`Decoder::next_frame`].
    pub fn frame(&self, r: FrameRef) -> Frame<&[u8]> {
        // The bytes were checked by `next_frame`, and nothing has moved them
        // since, so they are not hashed a second time.
        Frame::already_checked(&self.buf[r.start..r.start + r.len])
    }

    /// Drop the first byte, then everything up to the next possible magic.
    fn resync(&mut self) {
        self.start += 1;
        let held = &self.buf[self.start..self.end];
        match held.windows(MAGIC.len()).position(|w| w == MAGIC) {
            Some(p) => self.start += p,
            // Keep a tail that could be the start of a magic split across chunks.
            None => self.start = self.end - held.len().min(MAGIC.len() - 1),
        }
    }

    /// The frame being assembled, if bytes of one are held but not all of
    /// it: `(needed, available)`.
    pub fn partial(&self) -> Option<(usize, usize)> {
        let held = &self.buf[self.start..self.end];
        match frame::peek(held) {
            _ if held.is_empty() => None,
            Ok(Peek::NeedMore(n)) => Some((n, held.len())),
            _ => None,
        }
    }

    /// Whether a whole frame (or damaged bytes to report) is held, so that
    /// [`Decoder::next_frame`] would return something.
    pub fn has_whole_frame(&self) -> bool {
        let held = &self.buf[self.start..self.end];
        !held.is_empty() && !matches!(frame::peek(held), Ok(Peek::NeedMore(_)))
    }

    /// Give up on the frame being assembled, if any (the reader found it
    /// stalled: see [`crate::io::FrameReader`]): resynchronise as after a
    /// damaged frame and return `(needed, available)` bytes of the frame
    /// that was dropped. `None` when no partial frame is held.
    pub fn drop_partial(&mut self) -> Option<(usize, usize)> {
        let held = &self.buf[self.start..self.end];
        if held.is_empty() {
            return None;
        }
        let needed = match frame::peek(held) {
            Ok(Peek::NeedMore(n)) | Ok(Peek::Whole(n)) => n,
            Err(_) => HEADER_LEN,
        };
        let available = held.len();
        self.resync();
        Some((needed, available))
    }

    /// Call at the end of input: `Ok` at a clean end between frames,
    /// [`FrameError::Truncated`] when the input stopped inside one.
    pub fn finish(&self) -> Result<(), FrameError> {
        let held = &self.buf[self.start..self.end];
        if held.is_empty() {
            return Ok(());
        }
        let needed = match frame::peek(held) {
            Ok(Peek::NeedMore(n)) | Ok(Peek::Whole(n)) => n,
            Err(_) => HEADER_LEN,
        };
        Err(FrameError::Truncated {
            needed,
            available: held.len(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::{FileId, Message};

    fn drain(d: &mut Decoder) -> Vec<Result<Vec<u8>, FrameError>> {
        let mut out = Vec::new();
        while let Some(r) = d.next_frame() {
            out.push(r.map(|r| d.frame(r).payload().to_vec()));
        }
        out
    }

    fn sample() -> Vec<u8> {
        let mut s = Vec::new();
        Message::Demand {
            file: FileId(1),
            first: 2,
            count: 3,
            again: false,
        }
        .emit(&mut s);
        Message::Run {
            file: FileId(1),
            first: 2,
            count: crate::page_count([9; 100].len() as u64) as u32,
            encoding: crate::message::Encoding::Raw,
            crcs: crate::PageCrcs::new(&crate::message::page_crcs(&[9; 100])).unwrap(),
            data: &[9; 100],
        }
        .emit(&mut s);
        Message::Goodbye.emit(&mut s);
        s
    }

    #[test]
    fn any_chunking_gives_the_same_frames() {
        let stream = sample();
        let mut whole = Decoder::new();
        whole.feed(&stream);
        let expected = drain(&mut whole);
        assert_eq!(expected.len(), 3);
        for chunk in [1, 2, 3, 7, 16, 17, 64] {
            let mut d = Decoder::new();
            let mut got = Vec::new();
            for c in stream.chunks(chunk) {
                assert_eq!(d.feed(c), c.len());
                got.extend(drain(&mut d));
            }
            assert_eq!(got, expected, "chunk size {chunk}");
            assert_eq!(d.finish(), Ok(()));
        }
    }

    #[test]
    fn resyncs_after_garbage_and_a_bad_checksum() {
        let mut stream = b"garbage".to_vec();
        let mut bad = Message::Goodbye.to_frame();
        bad[15] ^= 0xff;
        stream.extend(&bad);
        stream.extend(sample());
        let mut d = Decoder::new();
        d.feed(&stream);
        let got = drain(&mut d);
        assert!(matches!(got[0], Err(FrameError::BadMagic { .. })));
        assert!(matches!(got[1], Err(FrameError::BadChecksum { .. })));
        assert_eq!(got.iter().filter(|r| r.is_ok()).count(), 3);
        assert_eq!(got.len(), 5);
    }

    #[test]
    fn truncated_at_end_and_oversized() {
        let f = Message::Goodbye.to_frame();
        let mut d = Decoder::new();
        d.feed(&f[..10]);
        assert!(d.next_frame().is_none());
        assert_eq!(
            d.finish(),
            Err(FrameError::Truncated {
                needed: 16,
                available: 10
            })
        );

        let mut big = Message::Goodbye.to_frame();
        big[8..12].copy_from_slice(&(MAX_PAYLOAD + 1).to_le_bytes());
        let mut d = Decoder::new();
        d.feed(&big);
        assert_eq!(
            d.next_frame(),
            Some(Err(FrameError::Oversized {
                len: MAX_PAYLOAD + 1,
                max: MAX_PAYLOAD
            }))
        );
    }

    #[test]
    fn buffer_never_grows_past_its_cap() {
        let mut d = Decoder::new();
        let junk = vec![0u8; CAPACITY * 3];
        let mut fed = 0;
        while fed < junk.len() {
            let n = d.feed(&junk[fed..]);
            fed += n;
            while let Some(r) = d.next_frame() {
                assert!(r.is_err());
            }
            assert!(d.buffered() <= CAPACITY);
        }
    }

    #[test]
    fn unknown_type_is_skipped_whole() {
        let mut stream = Vec::new();
        frame::emit(&mut stream, 0x7e, |o| o.extend_from_slice(b"FDFS inside"));
        stream.extend(Message::Goodbye.to_frame());
        let mut d = Decoder::new();
        d.feed(&stream);
        let got = drain(&mut d);
        assert_eq!(got, vec![Err(FrameError::UnknownType(0x7e)), Ok(vec![])]);
    }

    #[test]
    fn large_runs_read_in_pipe_sized_pieces_always_find_room_and_arrive_whole() {
        let pages = crate::MAX_RUN_PAGES as usize;
        let mut stream = Vec::new();
        let mut runs = Vec::new();
        for i in 0..9u8 {
            // Runs of every length up to the largest, so frames end at
            // every kind of offset in the reads.
            let count = 1 + (i as usize * 37) % pages;
            let data = vec![i; count * crate::PAGE_SIZE as usize];
            let table = crate::message::page_crcs(&data);
            Message::Run {
                file: FileId(0),
                first: 0,
                count: count as u32,
                encoding: crate::message::Encoding::Raw,
                crcs: crate::PageCrcs::new(&table).unwrap(),
                data: &data,
            }
            .emit(&mut stream);
            runs.push(data);
        }
        let mut d = Decoder::new();
        let mut got = Vec::new();
        for piece in stream.chunks(65_536 + 13) {
            let mut piece = piece;
            while !piece.is_empty() {
                let room = d.spare().len();
                assert!(room > 0);
                if let Some((needed, available)) = d.partial() {
                    assert!(
                        room >= needed - available,
                        "no room for the rest of a frame"
                    );
                }
                let n = d.feed(piece);
                piece = &piece[n..];
                while let Some(r) = d.next_frame() {
                    let frame = d.frame(r.unwrap());
                    let msg = Message::parse(frame).unwrap();
                    let Message::Run { data, .. } = msg else {
                        panic!("not a run: {msg:?}");
                    };
                    got.push(data.to_vec());
                }
            }
        }
        assert_eq!(got, runs);
        assert_eq!(d.finish(), Ok(()));
    }
}
