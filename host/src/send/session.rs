//! One push session over a link: the manifest, then blocks until the device
//! reports `Complete`.
//!
//! A reader thread decodes the device's frames and passes owned [`Event`]s
//! over a channel; it logs and drops damaged frames (the protocol's
//! `Skip`/`Resync`) and malformed messages, and ends on a clean end of
//! stream, a cut inside a frame or a fatal frame error. The calling thread
//! owns the write side and the [`Scheduler`]: it drains every pending event
//! before each block it sends, writes one frame at a time, and blocks on the
//! channel only when there is nothing to send. So a demand waits at most for
//! one block frame plus what is already in the pipe.
//!
//! Order on the wire: the host's `Hello` and the whole manifest go out at
//! once, without waiting for the device. The device's first message must be
//! its `Hello`; then `Have`s, `HaveEnd`, and `Demand`s at any time. The host
//! sends `StreamDone` once when nothing is left, keeps answering demands,
//! and on `Complete` says `Goodbye` and returns. When the host gives up
//! because of the device (a bad request, a version mismatch, a file that
//! changed) it tells the device with an `Error` before returning; stopped
//! by a signal ([`crate::send::stop`]) it says `Goodbye`.
//!
//! The handshake is bounded: a peer that sends no `Hello` within
//! [`Options::handshake_timeout`], or sends more than [`PREAMBLE_MAX`]
//! bytes that are not feedfs before it, is given up on with a message that
//! quotes what it printed. A short banner before the `Hello` (a login
//! message, an `echo`) is skipped with one warning. Damaged frames after
//! the `Hello` are warned about at most a few times a second.

use std::io::{self, Read, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender, TryRecvError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use feedfs_protocol::io::{FrameReader, FrameWriter, ReadError};
use feedfs_protocol::message::{is_zero, Encoding};
use feedfs_protocol::warn::{held_back_note, WarnLimit};
use feedfs_protocol::{
    block_len, BlockRange, ErrorCode, FileId, FrameError, Message, MessageType, Recovery, Role,
    MAGIC, VERSION,
};

use crate::send::compress::{Compressor, Mode, Policy};
use crate::files::manifest::ServedSet;
use crate::send::progress::{Progress, Snapshot};
use crate::send::rate::RateLimit;
use crate::logs::record::Recorder;
use crate::send::scheduler::{Counters, Kind, Scheduler};
use crate::files::source::{Source, SourceError};
use crate::send::stop::{signal_name, Stop};

/// How long to look for the device's last words after a write to it failed.
const LAST_WORDS: Duration = Duration::from_millis(200);

/// Why a session failed.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("the link closed before the transfer completed")]
    LinkClosed,
    #[error("reading from the device failed: {0}")]
    ReadFailed(io::Error),
    #[error("sending to the device failed: {0}")]
    SendFailed(io::Error),
    #[error("the link was cut inside a frame: {0}")]
    Truncated(FrameError),
    #[error(transparent)]
    Frame(FrameError),
    #[error("the device speaks feedfs protocol versions {min} to {max}, this host speaks version {ours}: install matching versions of feedfs-host and feedfs-device")]
    Version { min: u8, max: u8, ours: u8 },
    #[error("device reported an error: {code:?}: {text}")]
    Device { code: ErrorCode, text: String },
    #[error("device ended the session before the transfer completed")]
    DeviceEnded,
    #[error("protocol error: {0}")]
    Protocol(String),
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error("cannot write the record file: {0}")]
    Record(io::Error),
    #[error("cannot start the link reader thread: {0}")]
    Thread(io::Error),
    #[error("the peer is not speaking feedfs: before any Hello it sent {bytes} bytes of something else, starting with {quote}; the device side must be `feedfs-device mount … --stdio` with nothing else writing to its stdout")]
    NotFeedfs { bytes: u64, quote: String },
    #[error("no Hello from the device within {}s ({}); is the device side `feedfs-device mount … --stdio`? A slow start (an ssh asking for a password) needs a longer --handshake-timeout", .waited.as_secs_f64(), describe_preamble(*.bytes, .quote))]
    NoHello {
        waited: Duration,
        bytes: u64,
        quote: String,
    },
    #[error("stopped by {}", signal_name(*.0))]
    Interrupted(i32),
}

fn describe_preamble(bytes: u64, quote: &str) -> String {
    match bytes {
        0 => "it sent nothing".to_string(),
        n => format!("it sent {n} bytes that are not feedfs, starting with {quote}"),
    }
}

impl SessionError {
    /// True when the link itself broke (the peer may have exited).
    pub fn is_link(&self) -> bool {
        matches!(
            self,
            SessionError::LinkClosed
                | SessionError::ReadFailed(_)
                | SessionError::SendFailed(_)
                | SessionError::Truncated(_)
        )
    }

    /// The signal that stopped the session, if one did.
    pub fn signal(&self) -> Option<i32> {
        match self {
            SessionError::Interrupted(sig) => Some(*sig),
            _ => None,
        }
    }

    /// The error code to tell the device, when the device should be told.
    fn code_for_device(&self) -> Option<ErrorCode> {
        match self {
            SessionError::Version { .. } => Some(ErrorCode::Version),
            SessionError::Frame(FrameError::UnsupportedVersion { .. }) => Some(ErrorCode::Version),
            SessionError::Frame(_) | SessionError::Protocol(_) => Some(ErrorCode::Protocol),
            SessionError::Source(_) | SessionError::Record(_) | SessionError::Thread(_) => {
                Some(ErrorCode::Internal)
            }
            SessionError::NotFeedfs { .. }
            | SessionError::NoHello { .. }
            | SessionError::Interrupted(_)
            | SessionError::LinkClosed
            | SessionError::ReadFailed(_)
            | SessionError::SendFailed(_)
            | SessionError::Truncated(_)
            | SessionError::Device { .. }
            | SessionError::DeviceEnded => None,
        }
    }
}

/// A device message, owned, as the reader thread passes it on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeviceMsg {
    Hello {
        role: Role,
        min_version: u8,
        max_version: u8,
        agent: String,
    },
    Have {
        file: FileId,
        ranges: Vec<BlockRange>,
    },
    HaveEnd {
        files: u32,
    },
    Demand {
        file: FileId,
        first: u64,
        count: u32,
    },
    Complete {
        blocks: u64,
    },
    Error {
        code: ErrorCode,
        text: String,
    },
    Goodbye,
    /// A message only a host sends.
    Unexpected(MessageType),
}

impl From<Message<'_>> for DeviceMsg {
    fn from(m: Message<'_>) -> Self {
        match m {
            Message::Hello {
                role,
                min_version,
                max_version,
                agent,
            } => DeviceMsg::Hello {
                role,
                min_version,
                max_version,
                agent: agent.to_string(),
            },
            Message::Have { file, ranges } => DeviceMsg::Have { file, ranges },
            Message::HaveEnd { files } => DeviceMsg::HaveEnd { files },
            Message::Demand { file, first, count } => DeviceMsg::Demand { file, first, count },
            Message::Complete { blocks } => DeviceMsg::Complete { blocks },
            Message::Error { code, text } => DeviceMsg::Error {
                code,
                text: text.to_string(),
            },
            Message::Goodbye => DeviceMsg::Goodbye,
            other => DeviceMsg::Unexpected(other.message_type()),
        }
    }
}

/// What the reader thread (or a signal) reports.
#[derive(Debug)]
pub enum Event {
    Msg(DeviceMsg),
    /// The reader stopped: `None` at a clean end of stream.
    End(Option<ReadError>),
    /// The peer sent [`PREAMBLE_MAX`] bytes without a Hello, some of them not feedfs.
    NotFeedfs {
        bytes: u64,
        quote: String,
    },
    /// SIGINT, SIGTERM or SIGHUP arrived ([`crate::send::stop`]).
    Signal(i32),
}

/// Most bytes a peer may send before its Hello when some are not feedfs:
/// far more than a login banner, far less than a program printing in a loop.
pub const PREAMBLE_MAX: u64 = 64 * 1024;

/// Bytes of the peer's first output kept to quote.
const PREAMBLE_HEAD: usize = 256;

/// What the peer sent before its Hello.
#[derive(Debug, Default)]
pub struct Preamble {
    pub bytes: u64,
    pub head: Vec<u8>,
    /// The Hello came: nothing more is counted.
    pub done: bool,
}

impl Preamble {
    /// What came before the first thing that looks like a frame.
    fn quote(&self) -> String {
        let end = self
            .head
            .windows(MAGIC.len())
            .position(|w| w == MAGIC)
            .unwrap_or(self.head.len());
        quote(
            &self.head[..end],
            self.bytes > end as u64 && end == self.head.len(),
        )
    }
}

/// Bytes a peer printed, for a message: as text (escaped) when they are
/// text, else in hex; `…` when there was more.
pub fn quote(bytes: &[u8], more: bool) -> String {
    const TEXT_MAX: usize = 120;
    let chunks: Vec<_> = bytes.utf8_chunks().collect();
    // Text, but for a character cut at the end of what was kept.
    let text = chunks.iter().enumerate().all(|(i, c)| {
        (c.invalid().is_empty() || (i + 1 == chunks.len() && c.invalid().len() < 4))
            && !c.valid().contains('\0')
    });
    let (mut out, cut) = if text {
        let valid: String = chunks.iter().map(|c| c.valid()).collect();
        let escaped: String = valid.chars().flat_map(char::escape_debug).collect();
        let cut = escaped.chars().count() > TEXT_MAX;
        let kept: String = escaped.chars().take(TEXT_MAX).collect();
        (format!("\"{kept}\""), cut)
    } else {
        let hex: Vec<String> = bytes.iter().take(32).map(|b| format!("{b:02x}")).collect();
        (format!("bytes {}", hex.join(" ")), bytes.len() > 32)
    };
    if more || cut {
        out.push('…');
    }
    out
}

/// The link's read side, counting and keeping what arrives before the Hello.
struct Watched<R> {
    inner: R,
    preamble: Arc<Mutex<Preamble>>,
}

impl<R: Read> Read for Watched<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if let Ok(mut p) = self.preamble.lock() {
            if !p.done {
                p.bytes += n as u64;
                let room = PREAMBLE_HEAD.saturating_sub(p.head.len()).min(n);
                p.head.extend_from_slice(&buf[..room]);
            }
        }
        Ok(n)
    }
}

/// The reader thread's loop: decode frames until the link ends or nobody listens.
pub fn read_events(read: impl Read, tx: Sender<Event>, preamble: Arc<Mutex<Preamble>>) {
    let mut reader = FrameReader::new(Watched {
        inner: read,
        preamble: preamble.clone(),
    });
    let mut damaged = WarnLimit::new(5, Duration::from_secs(1));
    // Damaged frames before the Hello: a banner, or not feedfs at all.
    let mut noise = 0u64;
    loop {
        let event = match reader.next_frame() {
            Ok(Some(frame)) => match Message::parse(frame) {
                Ok(m) => {
                    if let Message::Hello { .. } = m {
                        hello_came(&preamble, noise);
                        noise = 0;
                    }
                    Event::Msg(m.into())
                }
                Err(e) => {
                    if let Some(n) = damaged.check(Instant::now()) {
                        log::warn!(
                            "ignoring a malformed message from the device: {e}{}",
                            held_back_note(n)
                        );
                    }
                    continue;
                }
            },
            Ok(None) => Event::End(None),
            Err(ReadError::Frame(e))
                if matches!(e.recovery(), Recovery::Skip | Recovery::Resync) =>
            {
                let before_hello = preamble
                    .lock()
                    .map(|p| (!p.done).then(|| (p.bytes, p.quote())));
                match before_hello {
                    Ok(Some((bytes, quote))) => {
                        noise += 1;
                        if bytes <= PREAMBLE_MAX {
                            continue;
                        }
                        Event::NotFeedfs { bytes, quote }
                    }
                    _ => {
                        if let Some(n) = damaged.check(Instant::now()) {
                            log::warn!(
                                "ignoring a damaged frame from the device: {e}{}",
                                held_back_note(n)
                            );
                        }
                        continue;
                    }
                }
            }
            Err(e) => Event::End(Some(e)),
        };
        let end = matches!(event, Event::End(_) | Event::NotFeedfs { .. });
        if tx.send(event).is_err() || end {
            return;
        }
    }
}

/// How long past the handshake timeout a session may stay stuck without a Hello.
const STUCK_GRACE: Duration = Duration::from_secs(2);

/// Set when the session it watches is over.
struct Over(Arc<AtomicBool>);

impl Drop for Over {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// End the process when the session is still without a Hello
/// [`STUCK_GRACE`] past its handshake timeout. The session's own loop
/// bounds every wait but one: writing the manifest to a peer that reads
/// nothing (a manifest larger than the pipe holds), which blocks.
fn watch_handshake(preamble: Arc<Mutex<Preamble>>, timeout: Duration) -> Over {
    let over = Arc::new(AtomicBool::new(false));
    let seen = over.clone();
    let spawned = std::thread::Builder::new()
        .name("handshake-watch".into())
        .spawn(move || {
            std::thread::sleep(timeout + STUCK_GRACE);
            let hello = preamble.lock().map_or(true, |p| p.done);
            if !hello && !seen.load(Ordering::SeqCst) {
                eprintln!(
                    "feedfs-host: error: no Hello from the device within {}s, and it reads \
                     nothing the host sends; is the device side `feedfs-device mount … --stdio`?",
                    timeout.as_secs_f64()
                );
                std::process::exit(1);
            }
        });
    if let Err(e) = spawned {
        log::debug!("no handshake watch: {e}");
    }
    Over(over)
}

/// The Hello arrived: stop counting, and say once what came before it.
fn hello_came(preamble: &Mutex<Preamble>, noise: u64) {
    let Ok(mut p) = preamble.lock() else { return };
    if !p.done && noise > 0 {
        log::warn!(
            "the device side printed {} before its Hello; skipped (nothing but feedfs \
             should reach its stdout)",
            p.quote()
        );
    }
    p.done = true;
}

/// How long the background stream holds back after a demand. Readers of a
/// mount the stream is filling then get the link and the CPUs first; with
/// the stream unthrottled on two cores, random reads waited up to several
/// milliseconds behind it.
const STREAM_YIELD: Duration = Duration::from_millis(2);

/// How long the host waits, idle, for Complete before it says StreamDone again.
const IDLE_RESEND: Duration = Duration::from_secs(1);

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
    sched: Scheduler,
    source: Source<'a>,
    record: &'a mut Recorder,
    progress: &'a mut Progress,
    start: Instant,
    hello: bool,
    stream_done: bool,
    bytes_sent: u64,
    bytes_total: u64,
    complete: Option<u64>,
    /// When the last demand arrived (the stream yields for a moment after it).
    last_demand: Option<Instant>,
    rate: Option<RateLimit>,
    block_size: u64,
    compress: Compressor,
    blocks_had: u64,
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
        let files: Vec<_> = set.files().map(|e| (e.id, e.blocks())).collect();
        let block_size = set
            .files()
            .map(|e| e.block_size)
            .max()
            .unwrap_or(feedfs_protocol::MIN_BLOCK_SIZE);
        Session {
            set,
            sched: if options.stream {
                Scheduler::new(&files, options.readahead)
            } else {
                Scheduler::new(&files, options.readahead).without_stream()
            },
            source: Source::new(set),
            record,
            progress,
            start,
            hello: false,
            stream_done: false,
            bytes_sent: 0,
            bytes_total: set.total_bytes,
            complete: None,
            last_demand: None,
            rate: options.rate.map(|r| RateLimit::new(r, block_size, start)),
            block_size: u64::from(block_size),
            compress: Compressor::new(Policy::new(options.compress, options.rate)),
            blocks_had: 0,
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
    /// order, ahead of the rest of the stream (see [`Scheduler::with_plan`]).
    pub fn with_plan(
        mut self,
        ranges: &[(FileId, u64, u64)],
    ) -> Result<Self, crate::send::scheduler::SchedError> {
        self.sched.set_plan(ranges)?;
        Ok(self)
    }

    /// Run the session to `Complete` over a link's read and write sides.
    pub fn run<R, W>(mut self, read: R, write: W) -> Result<Summary, SessionError>
    where
        R: Read + Send + 'static,
        W: Write,
    {
        let (tx, rx) = mpsc::channel();
        let _signals = self.stop.map(|s| s.attach(tx.clone()));
        let _watch = watch_handshake(self.preamble.clone(), self.handshake_timeout);
        let preamble = self.preamble.clone();
        std::thread::Builder::new()
            .name("link-reader".into())
            .spawn(move || read_events(read, tx, preamble))
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
        let counters = self.sched.counters();
        let t = self.t_us();
        self.record
            .done(t, counters.sent())
            .and_then(|()| self.record.flush())
            .map_err(SessionError::Record)?;
        self.progress.clear();
        Ok(Summary {
            counters,
            bytes_sent: self.bytes_sent,
            device_blocks: self.complete.unwrap_or(0),
            blocks_had: self.blocks_had,
        })
    }

    fn serve<W: Write>(
        &mut self,
        w: &mut FrameWriter<W>,
        rx: &Receiver<Event>,
    ) -> Result<(), SessionError> {
        let agent = format!("feedfs-host {}", env!("CARGO_PKG_VERSION"));
        send(
            w,
            &Message::Hello {
                role: Role::Host,
                min_version: VERSION,
                max_version: VERSION,
                agent: &agent,
            },
        )?;
        for e in &self.set.entries {
            send(w, &e.message())?;
        }
        send(w, &self.set.manifest_end())?;
        log::debug!(
            "manifest sent: {} entries, {} bytes",
            self.set.entries.len(),
            self.set.total_bytes
        );
        let hello_by = Instant::now() + self.handshake_timeout;
        loop {
            if !self.hello {
                let left = hello_by.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Err(self.no_hello());
                }
                flush(w)?;
                match rx.recv_timeout(left) {
                    Ok(event) => self.handle(event)?,
                    Err(RecvTimeoutError::Timeout) => return Err(self.no_hello()),
                    Err(RecvTimeoutError::Disconnected) => return Err(SessionError::LinkClosed),
                }
                continue;
            }
            // Stop at Complete: what follows it (a hang-up) does not matter.
            while self.complete.is_none() {
                match rx.try_recv() {
                    Ok(event) => self.handle(event)?,
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) => return Err(SessionError::LinkClosed),
                }
            }
            if self.complete.is_some() {
                return Ok(());
            }
            // The stream yields to readers: for a moment after a demand only
            // demanded blocks and their readahead go out.
            let yielding = self
                .last_demand
                .map(|t| STREAM_YIELD.saturating_sub(t.elapsed()))
                .filter(|left| !left.is_zero());
            self.sched.pause_stream(yielding.is_some());
            // Under --rate, wait for the link's budget while still taking in
            // demands, so one that arrives meanwhile goes out first.
            let delay = match (&mut self.rate, self.sched.has_work()) {
                (Some(r), true) => r.delay(Instant::now(), self.block_size),
                _ => None,
            };
            if let Some(d) = delay {
                flush(w)?;
                match rx.recv_timeout(d) {
                    Ok(event) => self.handle(event)?,
                    Err(RecvTimeoutError::Timeout) => {}
                    Err(RecvTimeoutError::Disconnected) => return Err(SessionError::LinkClosed),
                }
                continue;
            }
            if let Some(pick) = self.sched.pick_next() {
                self.send_block(w, pick.file, pick.index, pick.kind)?;
                continue;
            }
            if !self.stream_done && self.sched.stream_finished() {
                let blocks_sent = self.sched.counters().sent();
                send(w, &Message::StreamDone { blocks_sent })?;
                self.stream_done = true;
                log::info!("stream done: {blocks_sent} blocks sent");
            }
            flush(w)?;
            match rx.recv_timeout(yielding.unwrap_or(IDLE_RESEND)) {
                Ok(event) => self.handle(event)?,
                Err(RecvTimeoutError::Timeout) if yielding.is_some() => {}
                // Idle and no Complete: the StreamDone, or a block sent after
                // it, may have been lost on the way. Saying StreamDone again
                // makes the device demand whatever it still lacks.
                Err(RecvTimeoutError::Timeout) if self.stream_done => {
                    let blocks_sent = self.sched.counters().sent();
                    log::debug!("idle without Complete: StreamDone again");
                    send(w, &Message::StreamDone { blocks_sent })?;
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return Err(SessionError::LinkClosed),
            }
        }
    }

    fn no_hello(&self) -> SessionError {
        let (bytes, quote) = match self.preamble.lock() {
            Ok(p) => (p.bytes, p.quote()),
            Err(_) => (0, String::new()),
        };
        SessionError::NoHello {
            waited: self.handshake_timeout,
            bytes,
            quote,
        }
    }

    fn t_us(&self) -> u64 {
        self.start
            .elapsed()
            .as_micros()
            .try_into()
            .unwrap_or(u64::MAX)
    }

    fn snapshot(&self) -> Snapshot {
        Snapshot {
            bytes_sent: self.bytes_sent,
            bytes_total: self.bytes_total,
            demands: self.sched.counters().demands,
        }
    }

    fn send_block<W: Write>(
        &mut self,
        w: &mut FrameWriter<W>,
        file: FileId,
        index: u64,
        kind: Kind,
    ) -> Result<(), SessionError> {
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
        self.bytes_sent += len;
        // The rate limit is on the link: what went on it.
        if let Some(r) = &mut self.rate {
            r.consume(t2, wire);
        }
        let counters = self.sched.counters();
        let stream_before = counters.sent_stream - u64::from(kind == Kind::Stream);
        let t = self.t_us();
        self.record
            .sent(t, file, index, kind, stream_before)
            .map_err(SessionError::Record)?;
        log::trace!(
            "sent block {index} of file {file} ({}, {encoding:?}, {wire} bytes)",
            kind.as_str()
        );
        self.progress.update(Instant::now(), &self.snapshot());
        Ok(())
    }

    fn handle(&mut self, event: Event) -> Result<(), SessionError> {
        let msg = match event {
            Event::Msg(m) => m,
            Event::End(None) => return Err(SessionError::LinkClosed),
            Event::End(Some(ReadError::Io(e))) => return Err(SessionError::ReadFailed(e)),
            Event::End(Some(ReadError::Frame(e))) => {
                return Err(match e {
                    FrameError::Truncated { .. } => SessionError::Truncated(e),
                    e => SessionError::Frame(e),
                })
            }
            Event::NotFeedfs { bytes, quote } => {
                return Err(SessionError::NotFeedfs { bytes, quote })
            }
            Event::Signal(sig) => return Err(SessionError::Interrupted(sig)),
        };
        if !self.hello {
            return match msg {
                DeviceMsg::Hello {
                    role,
                    min_version,
                    max_version,
                    agent,
                } => self.on_hello(role, min_version, max_version, &agent),
                DeviceMsg::Error { code, text } => Err(SessionError::Device { code, text }),
                // A USB link may still hold the end of an earlier session.
                other => {
                    log::debug!(
                        "skipping {} from before the device's Hello",
                        msg_name(&other)
                    );
                    Ok(())
                }
            };
        }
        match msg {
            DeviceMsg::Hello { .. } => log::warn!("ignoring a second Hello from the device"),
            DeviceMsg::Have { file, ranges } => {
                self.sched
                    .on_have(file, &ranges)
                    .map_err(|e| SessionError::Protocol(format!("device sent a bad Have: {e}")))?;
                let blocks = ranges.iter().map(|r| r.count).sum();
                self.blocks_had += blocks;
                let t = self.t_us();
                self.record
                    .have(t, file, blocks)
                    .map_err(SessionError::Record)?;
            }
            DeviceMsg::HaveEnd { files } => {
                self.sched.on_have_end();
                self.bytes_total = self.bytes_to_send();
                log::info!(
                    "device reported {files} files; {} bytes to send",
                    self.bytes_total
                );
            }
            DeviceMsg::Demand { file, first, count } => {
                self.last_demand = Some(Instant::now());
                let t = self.t_us();
                self.record
                    .demand(t, file, first, count.into())
                    .map_err(SessionError::Record)?;
                log::debug!("demand for blocks {first}+{count} of file {file}");
                self.sched
                    .on_demand(file, first, count.into())
                    .map_err(|e| {
                        SessionError::Protocol(format!("device sent a bad Demand: {e}"))
                    })?;
            }
            DeviceMsg::Complete { blocks } => {
                log::info!("device complete: it holds {blocks} blocks");
                self.complete = Some(blocks);
            }
            DeviceMsg::Error { code, text } => return Err(SessionError::Device { code, text }),
            DeviceMsg::Goodbye => return Err(SessionError::DeviceEnded),
            DeviceMsg::Unexpected(ty) => {
                return Err(SessionError::Protocol(format!(
                    "the device sent a {ty:?} message, which only a host sends"
                )))
            }
        }
        Ok(())
    }

    fn on_hello(&mut self, role: Role, min: u8, max: u8, agent: &str) -> Result<(), SessionError> {
        if role != Role::Device {
            return Err(SessionError::Protocol(format!(
                "the peer ({agent:?}) says it is a host, not a device"
            )));
        }
        if !(min..=max).contains(&VERSION) {
            return Err(SessionError::Version {
                min,
                max,
                ours: VERSION,
            });
        }
        log::info!("connected to {agent:?}");
        self.hello = true;
        Ok(())
    }

    /// Bytes of the blocks the device lacks, as far as it has said.
    fn bytes_to_send(&self) -> u64 {
        self.set
            .files()
            .filter_map(|e| {
                let (lacking, last) = self.sched.lacking(e.id)?;
                let last_len = block_len(e.size, e.block_size, e.blocks().checked_sub(1)?) as u64;
                Some(if last {
                    (lacking - 1) * u64::from(e.block_size) + last_len
                } else {
                    lacking * u64::from(e.block_size)
                })
            })
            .sum()
    }
}

fn send<W: Write>(w: &mut FrameWriter<W>, msg: &Message) -> Result<(), SessionError> {
    w.send(msg).map_err(SessionError::SendFailed)
}

/// Before the session waits: frames a buffered link holds must leave now.
fn flush<W: Write>(w: &mut FrameWriter<W>) -> Result<(), SessionError> {
    w.flush().map_err(SessionError::SendFailed)
}

/// After a failed write: the device's own error, if it sent one before hanging up.
fn last_words(rx: &Receiver<Event>) -> Option<SessionError> {
    let deadline = Instant::now() + LAST_WORDS;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(Event::Msg(DeviceMsg::Error { code, text })) => {
                return Some(SessionError::Device { code, text })
            }
            Ok(Event::Msg(_)) => {}
            Ok(Event::Signal(sig)) => return Some(SessionError::Interrupted(sig)),
            Ok(Event::End(_) | Event::NotFeedfs { .. })
            | Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => return None,
        }
    }
}

fn msg_name(m: &DeviceMsg) -> String {
    match m {
        DeviceMsg::Hello { .. } => "Hello".into(),
        DeviceMsg::Have { .. } => "Have".into(),
        DeviceMsg::HaveEnd { .. } => "HaveEnd".into(),
        DeviceMsg::Demand { .. } => "Demand".into(),
        DeviceMsg::Complete { .. } => "Complete".into(),
        DeviceMsg::Error { .. } => "Error".into(),
        DeviceMsg::Goodbye => "Goodbye".into(),
        DeviceMsg::Unexpected(ty) => format!("{ty:?}"),
    }
}

#[cfg(test)]
mod tests;
