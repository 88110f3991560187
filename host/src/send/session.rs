//! One push session over a link: the manifest, then blocks until the device
//! reports `Complete`.
//!
//! What to send and when is decided by a pure state machine
//! ([`machine::Machine`]); this module is the loop that moves the bytes
//! around it. A reader thread ([`reader`]) decodes the device's frames and
//! passes owned [`Event`]s over a channel, and ends on a clean end of
//! stream, a cut inside a frame or a fatal frame error. The calling thread
//! owns the write side: it hands the machine every pending event before
//! each block it sends, reads the block from the [`Source`], compresses it
//! ([`Compressor`]), writes one frame at a time, writes the record's lines
//! and the progress line, and blocks on the channel only when the machine
//! says to wait (nothing to send, the rate limit, the stream yielding to a
//! demand, the handshake). So a demand waits at most for one block frame
//! plus what is already in the pipe.
//!
//! When the host gives up because of the device (a bad request, a version
//! mismatch, a file that changed) it tells the device with an `Error`
//! before returning; stopped by a signal ([`crate::send::stop`]) it says
//! `Goodbye`; after a failed write it looks briefly for the device's own
//! `Error`, which explains more. The handshake is bounded (see
//! [`machine`]); a peer that reads nothing of the manifest is caught by
//! [`reader::watch_handshake`].

mod error;
pub mod machine;
pub mod reader;

use std::io::{Read, Write};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, TryRecvError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use feedfs_protocol::hello;
use feedfs_protocol::io::FrameWriter;
use feedfs_protocol::message::{is_zero, Encoding, OwnedMessage};
use feedfs_protocol::{FileId, Message, Role};

pub use error::SessionError;
pub use machine::PREAMBLE_MAX;
pub use reader::{quote, Event, Preamble};

use crate::files::manifest::ServedSet;
use crate::files::source::Source;
use crate::logs::record::Recorder;
use crate::send::compress::{Compressor, Mode, Policy};
use crate::send::progress::Progress;
use crate::send::scheduler::{Counters, Pick};
use crate::send::stop::Stop;
use machine::{Entry, Machine, Step};

/// How long to look for the device's last words after a write to it failed.
const LAST_WORDS: Duration = Duration::from_millis(200);

/// Settings of a session.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// Blocks queued after each demanded range.
    pub readahead: u64,
    /// Bytes per second the host may send (`--rate`), if limited.
    pub rate: Option<u64>,
    /// Stream every block in the background (off with `--no-stream`).
    pub stream: bool,
    /// When to send blocks LZ4-compressed (`--compress`).
    pub compress: Mode,
    /// How long to wait for the device's Hello (`--handshake-timeout`).
    pub handshake_timeout: Duration,
}

/// What a successful session did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Summary {
    pub counters: Counters,
    /// Block data bytes sent.
    pub bytes_sent: u64,
    /// Blocks the device reported holding at the end.
    pub device_blocks: u64,
    /// Blocks the device said it held before any was sent.
    pub blocks_had: u64,
}

/// One session; see the module documentation.
pub struct Session<'a> {
    set: &'a ServedSet,
    machine: Machine<'a>,
    source: Source<'a>,
    compress: Compressor,
    record: &'a mut Recorder,
    progress: &'a mut Progress,
    handshake_timeout: Duration,
    preamble: Arc<Mutex<Preamble>>,
    stop: Option<&'a Stop>,
}

impl<'a> Session<'a> {
    /// A session serving `set`; times in the record count from `start`.
    pub fn new(
        set: &'a ServedSet,
        options: Options,
        record: &'a mut Recorder,
        progress: &'a mut Progress,
        start: Instant,
    ) -> Self {
        Session {
            set,
            machine: Machine::new(set, &options, start),
            source: Source::new(set),
            compress: Compressor::new(Policy::new(options.compress, options.rate)),
            record,
            progress,
            handshake_timeout: options.handshake_timeout,
            preamble: Arc::default(),
            stop: None,
        }
    }

    /// Stop with [`SessionError::Interrupted`] when `stop` sees a signal.
    pub fn with_stop(mut self, stop: &'a Stop) -> Self {
        self.stop = Some(stop);
        self
    }

    /// Stream these ranges (file, first block, count) first, in this
    /// order, ahead of the rest of the stream (see
    /// [`crate::send::scheduler::Scheduler::with_plan`]).
    pub fn with_plan(
        mut self,
        ranges: &[(FileId, u64, u64)],
    ) -> Result<Self, crate::send::scheduler::SchedError> {
        self.machine.set_plan(ranges)?;
        Ok(self)
    }

    /// Run the session to `Complete` over a link's read and write sides.
    pub fn run<R, W>(mut self, read: R, write: W) -> Result<Summary, SessionError>
    where
        R: Read + Send + 'static,
        W: Write,
    {
        let (tx, rx) = mpsc::channel();
        let _signals = self.stop.map(|s| {
            let tx = tx.clone();
            s.attach(move |sig| tx.send(Event::Signal(sig)).is_ok())
        });
        let _watch = reader::watch_handshake(self.preamble.clone(), self.handshake_timeout);
        let preamble = self.preamble.clone();
        std::thread::Builder::new()
            .name("link-reader".into())
            .spawn(move || reader::read_events(read, tx, preamble))
            .map_err(SessionError::Thread)?;
        let mut w = FrameWriter::new(write);
        match self.serve(&mut w, &rx) {
            Ok(()) => {}
            Err(SessionError::SendFailed(e)) => {
                return Err(last_words(&rx).unwrap_or(SessionError::SendFailed(e)))
            }
            Err(e @ SessionError::Interrupted(_)) => {
                if let Err(we) = w.send(&Message::Goodbye).and_then(|()| w.flush()) {
                    log::debug!("could not say goodbye: {we}");
                }
                return Err(e);
            }
            Err(e) => {
                if let Some(code) = e.code_for_device() {
                    let text = e.to_string();
                    if let Err(we) = w
                        .send(&Message::Error { code, text: &text })
                        .and_then(|()| w.flush())
                    {
                        log::debug!("could not tell the device about the error: {we}");
                    }
                }
                return Err(e);
            }
        }
        // A device that hangs up right after Complete is fine.
        if let Err(e) = w.send(&Message::Goodbye).and_then(|()| w.flush()) {
            log::debug!("could not say goodbye: {e}");
        }
        let summary = self.machine.finish(Instant::now());
        self.write_entries()?;
        self.record.flush().map_err(SessionError::Record)?;
        self.progress.clear();
        Ok(summary)
    }

    /// Do what the machine says until it is complete or gives up.
    fn serve<W: Write>(
        &mut self,
        w: &mut FrameWriter<W>,
        rx: &Receiver<Event>,
    ) -> Result<(), SessionError> {
        loop {
            // Take in everything that came, so a demand goes out before
            // the next block; stop at Complete: what follows it (a
            // hang-up) does not matter.
            while self.machine.said_hello() && !self.machine.is_complete() {
                match rx.try_recv() {
                    Ok(event) => self.handle(event)?,
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) => return Err(SessionError::LinkClosed),
                }
            }
            match self.machine.poll(Instant::now()) {
                Step::Manifest => {
                    self.send_manifest(w)?;
                    self.machine.manifest_sent(Instant::now());
                }
                Step::Block(pick) => self.send_block(w, pick)?,
                Step::StreamDone { blocks_sent, .. } => {
                    send(w, &Message::StreamDone { blocks_sent })?
                }
                Step::Wait(d) => {
                    // Frames a buffered link holds must leave before the wait.
                    w.flush().map_err(SessionError::SendFailed)?;
                    match rx.recv_timeout(d) {
                        Ok(event) => self.handle(event)?,
                        Err(RecvTimeoutError::Timeout) => {}
                        Err(RecvTimeoutError::Disconnected) => {
                            return Err(SessionError::LinkClosed)
                        }
                    }
                }
                Step::NoHello { waited } => return Err(self.no_hello(waited)),
                Step::Complete => return Ok(()),
            }
        }
    }

    fn handle(&mut self, event: Event) -> Result<(), SessionError> {
        let handled = self.machine.handle(Instant::now(), event);
        // What the machine recorded stands, whether or not it gave up.
        self.write_entries()?;
        handled
    }

    fn write_entries(&mut self) -> Result<(), SessionError> {
        for entry in self.machine.entries() {
            match entry {
                Entry::Have { t_us, file, blocks } => self.record.have(t_us, file, blocks),
                Entry::Demand {
                    t_us,
                    file,
                    first,
                    count,
                } => self.record.demand(t_us, file, first, count),
                Entry::Sent {
                    t_us,
                    file,
                    index,
                    kind,
                    stream_before,
                } => self.record.sent(t_us, file, index, kind, stream_before),
                Entry::Done { t_us, blocks_sent } => self.record.done(t_us, blocks_sent),
            }
            .map_err(SessionError::Record)?;
        }
        Ok(())
    }

    fn no_hello(&self, waited: Duration) -> SessionError {
        let (bytes, quote) = match self.preamble.lock() {
            Ok(p) => (p.bytes, p.quote()),
            Err(_) => (0, String::new()),
        };
        SessionError::NoHello {
            waited,
            bytes,
            quote,
        }
    }

    /// The host's Hello and the whole manifest, without waiting for the device.
    fn send_manifest<W: Write>(&mut self, w: &mut FrameWriter<W>) -> Result<(), SessionError> {
        let agent = format!("feedfs-host {}", env!("CARGO_PKG_VERSION"));
        send(w, &hello::ours(Role::Host, &agent))?;
        for e in &self.set.entries {
            send(w, &e.message())?;
        }
        send(w, &self.set.manifest_end())
    }

    fn send_block<W: Write>(
        &mut self,
        w: &mut FrameWriter<W>,
        pick: Pick,
    ) -> Result<(), SessionError> {
        let Pick { file, index, kind } = pick;
        let t0 = Instant::now();
        let data = self.source.read(file, index)?;
        // The block's CRC is of its bytes as stored, whatever the encoding.
        let crc = crc32fast::hash(data);
        let len = data.len() as u64;
        // A block of zeros goes without data, and tells the compression
        // policy nothing about the link or the data.
        let zero = is_zero(data);
        let (encoding, data) = if zero {
            (Encoding::Zero, &[][..])
        } else {
            self.compress.encode(data)
        };
        let wire = data.len() as u64;
        let t1 = Instant::now();
        send(
            w,
            &Message::Block {
                file,
                index,
                crc,
                encoding,
                data,
            },
        )?;
        let t2 = Instant::now();
        if !zero {
            self.compress
                .sent(t1 - t0, t2 - t1, len as usize, wire as usize);
        }
        let snapshot = self.machine.block_sent(t2, pick, len, wire);
        self.write_entries()?;
        log::trace!(
            "sent block {index} of file {file} ({}, {encoding:?}, {wire} bytes)",
            kind.as_str()
        );
        self.progress.update(Instant::now(), &snapshot);
        Ok(())
    }
}

fn send<W: Write>(w: &mut FrameWriter<W>, msg: &Message) -> Result<(), SessionError> {
    w.send(msg).map_err(SessionError::SendFailed)
}

/// After a failed write: the device's own error, if it sent one before hanging up.
fn last_words(rx: &Receiver<Event>) -> Option<SessionError> {
    let deadline = Instant::now() + LAST_WORDS;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(Event::Msg(OwnedMessage::Error { code, text })) => {
                return Some(SessionError::Device { code, text })
            }
            Ok(Event::Msg(_) | Event::Damaged { .. } | Event::Malformed(_)) => {}
            Ok(Event::Signal(sig)) => return Some(SessionError::Interrupted(sig)),
            Ok(Event::End(_)) | Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => {
                return None
            }
        }
    }
}

#[cfg(test)]
mod tests;
