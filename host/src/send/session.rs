//! One push session over a link: the manifest, then runs of pages until the
//! device reports `Complete`.
//!
//! What to send and when is decided by a pure state machine
//! ([`machine::Machine`]); this module is the loop that moves the bytes
//! around it. A reader thread ([`reader`]) decodes the device's frames and
//! passes owned [`Event`]s over a channel, and ends on a clean end of
//! stream, a cut inside a frame or a fatal frame error. The calling thread
//! owns the write side: it hands the machine every pending event before
//! each run it sends, reads exactly the run's bytes from the [`Source`]
//! (one positioned read), cuts them into parts of zero pages and of data
//! pages ([`split`]: each data page hashed once), compresses the data parts
//! ([`Compressor`]), writes one frame per part (the data straight from the
//! read buffer), writes the record's lines and the progress line, and
//! blocks on the channel only when the machine says to wait (nothing to
//! send, the rate limit, the stream yielding to a demand, the handshake).
//! So a demand waits at most for one run's frames plus what is already in
//! the pipe.
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
use feedfs_protocol::message::{Encoding, OwnedMessage};
use feedfs_protocol::{FileId, Message, PageCrcs, Role};

pub use error::SessionError;
pub use machine::PREAMBLE_MAX;
pub use reader::{quote, Event, Preamble};

use crate::files::manifest::ServedSet;
use crate::files::shared::SharedSource;
use crate::files::source::Source;
use crate::logs::record::Recorder;
use crate::send::compress::{Compressor, Mode, Policy};
use crate::send::pages::split;
use crate::send::progress::Show;
use crate::send::scheduler::{Counters, Pick};
use crate::send::stop::Stop;
use machine::{Entry, Machine, Step};

/// How long to look for the device's last words after a write to it failed.
const LAST_WORDS: Duration = Duration::from_millis(200);

/// Settings of a session.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// Most pages queued after a demanded range (`--readahead`, in pages).
    pub readahead: u64,
    /// Most bytes of one readahead, plan or stream run (`--run-size`).
    pub run_size: u32,
    /// Bytes per second the host may send (`--rate`), if limited.
    pub rate: Option<u64>,
    /// Stream every page in the background (off with `--no-stream`).
    pub stream: bool,
    /// When to send runs LZ4-compressed (`--compress`).
    pub compress: Mode,
    /// How long to wait for the device's Hello (`--handshake-timeout`).
    pub handshake_timeout: Duration,
}

/// What a successful session did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Summary {
    pub counters: Counters,
    /// Page data bytes sent.
    pub bytes_sent: u64,
    /// Pages the device reported holding at the end.
    pub device_pages: u64,
    /// Pages the device said it held before any was sent.
    pub pages_had: u64,
    /// Bytes this session read from the sources (a shared cache's pages
    /// not counted).
    pub source_bytes: u64,
}

/// One session; see the module documentation.
pub struct Session<'a> {
    set: &'a ServedSet,
    machine: Machine<'a>,
    source: Source<'a>,
    compress: Compressor,
    /// The CRCs of the run being sent, and one part's table as on the wire.
    crcs: Vec<u32>,
    table: Vec<u8>,
    record: &'a mut Recorder,
    progress: &'a mut dyn Show,
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
        progress: &'a mut dyn Show,
        start: Instant,
    ) -> Self {
        Session {
            set,
            machine: Machine::new(set, &options, start),
            source: Source::new(set),
            compress: Compressor::new(Policy::new(options.compress, options.rate)),
            crcs: Vec::new(),
            table: Vec::new(),
            record,
            progress,
            handshake_timeout: options.handshake_timeout,
            preamble: Arc::default(),
            stop: None,
        }
    }

    /// Read the files through `shared`, with other devices' sessions.
    pub fn with_shared(mut self, shared: &'a SharedSource) -> Self {
        self.source = Source::shared(self.set, shared);
        self
    }

    /// Stop with [`SessionError::Interrupted`] when `stop` sees a signal.
    pub fn with_stop(mut self, stop: &'a Stop) -> Self {
        self.stop = Some(stop);
        self
    }

    /// Stream these ranges (file, first page, count) first, in this
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
        let summary = Summary {
            source_bytes: self.source.bytes_read(),
            ..self.machine.finish(Instant::now())
        };
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
            // the next run; stop at Complete: what follows it (a
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
                Step::Run(pick) => self.send_run(w, pick)?,
                Step::StreamDone { pages_sent, .. } => {
                    send(w, &Message::StreamDone { pages_sent })?
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
                Entry::Have { t_us, file, pages } => self.record.have(t_us, file, pages),
                Entry::Demand {
                    t_us,
                    file,
                    first,
                    count,
                } => self.record.demand(t_us, file, first, count),
                Entry::Sent {
                    t_us,
                    file,
                    first,
                    count,
                    kind,
                    stream_before,
                } => self
                    .record
                    .sent(t_us, file, first, count, kind, stream_before),
                Entry::Done { t_us, pages_sent } => self.record.done(t_us, pages_sent),
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

    /// Read the run, then send it part by part (see the module documentation).
    fn send_run<W: Write>(
        &mut self,
        w: &mut FrameWriter<W>,
        pick: Pick,
    ) -> Result<(), SessionError> {
        let Pick {
            file,
            first,
            count,
            kind,
        } = pick;
        let t0 = Instant::now();
        let machine = &self.machine;
        let wanted = |first, count| machine.unsent(file, first, count);
        let demand = kind == crate::send::scheduler::Kind::Demand;
        let data = self.source.read_run(file, first, count, demand, &wanted)?;
        let parts = split(data, first, &mut self.crcs);
        // Reading and hashing, shared among the data parts by their bytes.
        let prepared = t0.elapsed();
        let (mut raw, mut wire) = (0u64, 0u64);
        for part in parts {
            let t1 = Instant::now();
            let bytes = &data[part.bytes.clone()];
            raw += bytes.len() as u64;
            if part.zero {
                // No table, no data, and nothing for the compression policy.
                send(
                    w,
                    &Message::Run {
                        file,
                        first: part.first,
                        count: part.count,
                        encoding: Encoding::Zero,
                        crcs: PageCrcs::default(),
                        data: &[],
                    },
                )?;
                continue;
            }
            self.table.clear();
            for c in &self.crcs[part.crcs.clone()] {
                self.table.extend_from_slice(&c.to_le_bytes());
            }
            let crcs = PageCrcs::new(&self.table).unwrap_or_default();
            let (encoding, out) = self.compress.encode(bytes);
            let on_wire = out.len();
            let t2 = Instant::now();
            send(
                w,
                &Message::Run {
                    file,
                    first: part.first,
                    count: part.count,
                    encoding,
                    crcs,
                    data: out,
                },
            )?;
            let t3 = Instant::now();
            let share = prepared.mul_f64(bytes.len() as f64 / data.len().max(1) as f64);
            self.compress
                .sent(share + (t2 - t1), t3 - t2, bytes.len(), on_wire);
            wire += on_wire as u64;
            log::trace!(
                "sent pages {}+{} of file {file} ({}, {encoding:?}, {on_wire} bytes)",
                part.first,
                part.count,
                kind.as_str()
            );
        }
        let snapshot = self.machine.run_sent(Instant::now(), pick, raw, wire);
        self.write_entries()?;
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
