//! The host's side of the protocol as a pure state machine, in the manner
//! of smoltcp's `poll(timestamp)`: fed the device's messages, damaged
//! frames, the reader's end and signals ([`Event`]) with the time, it says
//! what to send next ([`Step`]) and what to record ([`Entry`],
//! taken with [`Machine::entries`]). It does no
//! I/O, reads no clock and starts no thread; the loop around it
//! ([`super::Session`]) moves the bytes, reads the runs, compresses them
//! and sleeps when told to wait.
//!
//! In order: [`Step::Manifest`] first (the host's `Hello` and the whole
//! manifest, without waiting for the device); then, until the device's
//! `Hello` comes, waits bounded by the handshake timeout
//! ([`Step::NoHello`] when it runs out). Messages before the `Hello` are an
//! earlier session's and skipped, but for an `Error`; damaged frames before
//! it are a banner, unless more than [`PREAMBLE_MAX`] bytes came, which is
//! not feedfs. After the `Hello`: runs of pages as the [`Scheduler`] picks
//! them, under the rate limit; demand runs up to [`MAX_RUN_PAGES`], the
//! others up to `--run-size` and, under `--rate`, to what the link carries
//! in about [`RUN_TIME`](crate::send::rate::RUN_TIME) (at least
//! [`MIN_RATED_RUN`](crate::send::rate::MIN_RATED_RUN)), so a demand never
//! waits long behind a stream frame; the background stream holds back for
//! [`STREAM_YIELD`] after each demand; `StreamDone` once when nothing is
//! left, and again after [`IDLE_RESEND`] without a word from the device;
//! [`Step::Complete`] once the device says `Complete`. Any error ends the
//! session with a [`SessionError`] the loop reports and, where it says so
//! ([`SessionError::code_for_device`]), tells the device.

use std::time::{Duration, Instant};

use feedfs_protocol::message::OwnedMessage;
use feedfs_protocol::warn::{held_back_note, WarnLimit};
use feedfs_protocol::{hello, page_len, FileId, MessageType, Role, MAX_RUN_PAGES, PAGE_SIZE};

use super::error::SessionError;
use super::reader::Event;
use super::{Options, Summary};
use crate::files::manifest::ServedSet;
use crate::send::progress::Snapshot;
use crate::send::rate::{stream_run_pages, RateLimit};
use crate::send::scheduler::{Kind, Limits, Pick, SchedError, Scheduler};

/// Most bytes a peer may send before its Hello when some are not feedfs:
/// far more than a login banner, far less than a program printing in a loop.
pub const PREAMBLE_MAX: u64 = 64 * 1024;

/// How long the background stream holds back after a demand. Readers of a
/// mount the stream is filling then get the link and the CPUs first; with
/// the stream unthrottled on two cores, random reads waited up to several
/// milliseconds behind it.
pub const STREAM_YIELD: Duration = Duration::from_millis(2);

/// How long the host waits, idle, for Complete before it says StreamDone again.
pub const IDLE_RESEND: Duration = Duration::from_secs(1);

/// What the loop does next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Send the host's Hello and the manifest, then call
    /// [`Machine::manifest_sent`].
    Manifest,
    /// Send this run, then call [`Machine::run_sent`].
    Run(Pick),
    /// Send `StreamDone`; `again` when it repeats one the device may have lost.
    StreamDone { pages_sent: u64, again: bool },
    /// Flush what is written and wait this long, or until an event comes.
    Wait(Duration),
    /// No Hello within the handshake timeout; what the peer printed is the
    /// reader's to quote.
    NoHello { waited: Duration },
    /// The device is complete: say Goodbye and [`Machine::finish`].
    Complete,
}

/// A line of the host's record, with its time in microseconds since the start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Entry {
    Have {
        t_us: u64,
        file: FileId,
        pages: u64,
    },
    Demand {
        t_us: u64,
        file: FileId,
        first: u64,
        count: u64,
    },
    Sent {
        t_us: u64,
        file: FileId,
        first: u64,
        count: u32,
        kind: Kind,
        /// Stream pages sent before this run.
        stream_before: u64,
    },
    Done {
        t_us: u64,
        pages_sent: u64,
    },
}

/// Where the handshake is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// The manifest is still to send.
    Manifest,
    /// The manifest is out; the device's Hello is due by then.
    Handshake { hello_by: Instant },
    /// The device's Hello was accepted.
    Connected,
}

/// The protocol state of one host session; see the module documentation.
#[derive(Debug)]
pub struct Machine<'a> {
    set: &'a ServedSet,
    sched: Scheduler,
    start: Instant,
    handshake_timeout: Duration,
    phase: Phase,
    stream_done: bool,
    complete: Option<u64>,
    /// When the last demand arrived (the stream yields for a moment after it).
    last_demand: Option<Instant>,
    /// End of the current idle wait for Complete.
    idle_until: Option<Instant>,
    rate: Option<RateLimit>,
    limits: Limits,
    bytes_sent: u64,
    bytes_total: u64,
    pages_had: u64,
    damaged: WarnLimit,
    /// Record lines not yet taken by the loop.
    entries: Vec<Entry>,
}

impl<'a> Machine<'a> {
    /// A session serving `set`; times in the record count from `start`.
    pub fn new(set: &'a ServedSet, options: &Options, start: Instant) -> Self {
        let files: Vec<_> = set.files().map(|e| (e.id, e.pages())).collect();
        let limits = Limits {
            demand: MAX_RUN_PAGES,
            stream: stream_run_pages(options.run_size, options.rate),
        };
        let sched = Scheduler::new(&files, options.readahead);
        Machine {
            set,
            sched: if options.stream {
                sched
            } else {
                sched.without_stream()
            },
            start,
            handshake_timeout: options.handshake_timeout,
            phase: Phase::Manifest,
            stream_done: false,
            complete: None,
            last_demand: None,
            idle_until: None,
            rate: options
                .rate
                .map(|r| RateLimit::new(r, limits.stream * PAGE_SIZE, start)),
            limits,
            bytes_sent: 0,
            bytes_total: set.total_bytes,
            pages_had: 0,
            damaged: WarnLimit::new(5, Duration::from_secs(1)),
            entries: Vec::new(),
        }
    }

    /// Stream these ranges (file, first page, count) first, in this order
    /// (see [`Scheduler::with_plan`]).
    pub fn set_plan(&mut self, ranges: &[(FileId, u64, u64)]) -> Result<(), SchedError> {
        self.sched.set_plan(ranges)
    }

    /// Whether the device's Hello has been accepted.
    /// See [`Scheduler::unsent`].
    pub fn unsent(&self, file: FileId, first: u64, count: u64) -> bool {
        self.sched.unsent(file, first, count)
    }

    pub fn said_hello(&self) -> bool {
        self.phase == Phase::Connected
    }

    /// Whether the device has said Complete: nothing after it matters.
    pub fn is_complete(&self) -> bool {
        self.complete.is_some()
    }

    /// What to do at `now`.
    pub fn poll(&mut self, now: Instant) -> Step {
        match self.phase {
            Phase::Manifest => return Step::Manifest,
            Phase::Handshake { hello_by } => {
                let left = hello_by.saturating_duration_since(now);
                if left.is_zero() {
                    return Step::NoHello {
                        waited: self.handshake_timeout,
                    };
                }
                return Step::Wait(left);
            }
            Phase::Connected => {}
        }
        if self.complete.is_some() {
            return Step::Complete;
        }
        // The stream yields to readers: for a moment after a demand only
        // demanded pages and their readahead go out.
        let yielding = self
            .last_demand
            .map(|t| STREAM_YIELD.saturating_sub(now.saturating_duration_since(t)))
            .filter(|left| !left.is_zero());
        self.sched.pause_stream(yielding.is_some());
        // Under --rate, wait for the link's budget while still taking in
        // demands, so one that arrives meanwhile goes out first. A demand
        // waits for one page's worth, the stream for a run's.
        let need = if self.sched.demand_waiting() {
            PAGE_SIZE
        } else {
            self.limits.stream * PAGE_SIZE
        };
        let delay = match (&mut self.rate, self.sched.has_work()) {
            (Some(r), true) => r.delay(now, u64::from(need)),
            _ => None,
        };
        if let Some(d) = delay {
            self.idle_until = None;
            return Step::Wait(d);
        }
        if let Some(pick) = self.sched.pick_next(self.limits, now) {
            self.idle_until = None;
            return Step::Run(pick);
        }
        if !self.stream_done && self.sched.stream_finished() {
            self.stream_done = true;
            self.idle_until = None;
            let pages_sent = self.sched.counters().sent();
            log::info!("stream done: {pages_sent} pages sent");
            return Step::StreamDone {
                pages_sent,
                again: false,
            };
        }
        if let Some(left) = yielding {
            self.idle_until = None;
            return Step::Wait(left);
        }
        match self.idle_until {
            // Idle and no Complete: the StreamDone, or a run sent after
            // it, may have been lost on the way. Saying StreamDone again
            // makes the device demand whatever it still lacks.
            Some(end) if now >= end && self.stream_done => {
                self.idle_until = None;
                log::debug!("idle without Complete: StreamDone again");
                Step::StreamDone {
                    pages_sent: self.sched.counters().sent(),
                    again: true,
                }
            }
            Some(end) if now < end => Step::Wait(end - now),
            _ => {
                self.idle_until = Some(now + IDLE_RESEND);
                Step::Wait(IDLE_RESEND)
            }
        }
    }

    /// The Hello and the manifest are out: the handshake timeout runs from `now`.
    pub fn manifest_sent(&mut self, now: Instant) {
        log::debug!(
            "manifest sent: {} entries, {} bytes",
            self.set.entries.len(),
            self.set.total_bytes
        );
        self.phase = Phase::Handshake {
            hello_by: now + self.handshake_timeout,
        };
    }

    /// `pick` went on the link at `now`: `raw` bytes of page data as
    /// `wire` bytes (all its frames). Returns the progress to show.
    pub fn run_sent(&mut self, now: Instant, pick: Pick, raw: u64, wire: u64) -> Snapshot {
        self.bytes_sent += raw;
        // The rate limit is on the link: what went on it.
        if let Some(r) = &mut self.rate {
            r.consume(now, wire);
        }
        let counters = self.sched.counters();
        self.entries.push(Entry::Sent {
            t_us: self.t_us(now),
            file: pick.file,
            first: pick.first,
            count: pick.count,
            kind: pick.kind,
            stream_before: counters.sent_stream
                - if pick.kind == Kind::Stream {
                    u64::from(pick.count)
                } else {
                    0
                },
        });
        self.snapshot()
    }

    /// The session is over at `now`, complete: what it did (and the
    /// record's last line, in [`Machine::entries`]).
    pub fn finish(&mut self, now: Instant) -> Summary {
        let counters = self.sched.counters();
        self.entries.push(Entry::Done {
            t_us: self.t_us(now),
            pages_sent: counters.sent(),
        });
        Summary {
            counters,
            bytes_sent: self.bytes_sent,
            device_pages: self.complete.unwrap_or(0),
            pages_had: self.pages_had,
            source_bytes: 0,
        }
    }

    /// The record's lines since the last call, oldest first.
    pub fn entries(&mut self) -> std::vec::Drain<'_, Entry> {
        self.entries.drain(..)
    }

    /// Take in what the reader (or a signal) reported at `now`; an error
    /// when the session ends. A Have or a Demand adds a record line.
    pub fn handle(&mut self, now: Instant, event: Event) -> Result<(), SessionError> {
        match event {
            Event::Msg(m) => {
                // A word from the device: the idle wait starts again.
                self.idle_until = None;
                self.on_message(now, m)
            }
            Event::Damaged {
                before_hello: Some(seen),
                ..
            } if seen.bytes > PREAMBLE_MAX => Err(SessionError::NotFeedfs {
                bytes: seen.bytes,
                quote: seen.quote,
            }),
            // A banner: the reader says so when the Hello comes.
            Event::Damaged {
                before_hello: Some(_),
                ..
            } => Ok(()),
            Event::Damaged { error, .. } => {
                if let Some(n) = self.damaged.check(now) {
                    log::warn!(
                        "ignoring a damaged frame from the device: {error}{}",
                        held_back_note(n)
                    );
                }
                Ok(())
            }
            Event::Malformed(e) => {
                if let Some(n) = self.damaged.check(now) {
                    log::warn!(
                        "ignoring a malformed message from the device: {e}{}",
                        held_back_note(n)
                    );
                }
                Ok(())
            }
            Event::End(end) => Err(SessionError::from_end(end)),
            Event::Signal(sig) => Err(SessionError::Interrupted(sig)),
        }
    }

    fn on_message(&mut self, now: Instant, msg: OwnedMessage) -> Result<(), SessionError> {
        if !self.said_hello() {
            return match msg {
                OwnedMessage::Hello { ref agent, .. } => {
                    hello::check(Role::Device, &msg.as_message()).map_err(SessionError::Hello)?;
                    log::info!("connected to {agent:?}");
                    self.phase = Phase::Connected;
                    Ok(())
                }
                OwnedMessage::Error { code, text } => Err(SessionError::Device { code, text }),
                // A USB link may still hold the end of an earlier session.
                other => {
                    log::debug!(
                        "skipping {:?} from before the device's Hello",
                        other.message_type()
                    );
                    Ok(())
                }
            };
        }
        match msg {
            OwnedMessage::Hello { .. } => log::warn!("ignoring a second Hello from the device"),
            OwnedMessage::Have { file, ranges } => {
                self.sched
                    .on_have(file, &ranges)
                    .map_err(|error| SessionError::BadRequest {
                        what: MessageType::Have,
                        error,
                    })?;
                let pages = ranges.iter().map(|r| r.count).sum();
                self.pages_had += pages;
                self.entries.push(Entry::Have {
                    t_us: self.t_us(now),
                    file,
                    pages,
                });
            }
            OwnedMessage::HaveEnd { files } => {
                self.sched.on_have_end();
                self.bytes_total = self.bytes_to_send();
                log::info!(
                    "device reported {files} files; {} bytes to send",
                    self.bytes_total
                );
            }
            OwnedMessage::Demand {
                file,
                first,
                count,
                again,
            } => {
                self.last_demand = Some(now);
                log::debug!("demand for pages {first}+{count} of file {file} (again: {again})");
                // Recorded before it is checked: the record shows what came.
                self.entries.push(Entry::Demand {
                    t_us: self.t_us(now),
                    file,
                    first,
                    count: count.into(),
                });
                self.sched
                    .on_demand(file, first, count.into(), again, now)
                    .map_err(|error| SessionError::BadRequest {
                        what: MessageType::Demand,
                        error,
                    })?;
            }
            OwnedMessage::Complete { pages } => {
                log::info!("device complete: it holds {pages} pages");
                self.complete = Some(pages);
            }
            OwnedMessage::Error { code, text } => return Err(SessionError::Device { code, text }),
            OwnedMessage::Goodbye => return Err(SessionError::DeviceEnded),
            OwnedMessage::Entry { .. }
            | OwnedMessage::ManifestEnd { .. }
            | OwnedMessage::Run { .. }
            | OwnedMessage::StreamDone { .. } => {
                return Err(SessionError::HostMessage(msg.message_type()))
            }
        }
        Ok(())
    }

    fn t_us(&self, now: Instant) -> u64 {
        now.saturating_duration_since(self.start)
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

    /// Bytes of the pages the device lacks, as far as it has said.
    fn bytes_to_send(&self) -> u64 {
        self.set
            .files()
            .filter_map(|e| {
                let (lacking, last) = self.sched.lacking(e.id)?;
                let last_len = page_len(e.size, e.pages().checked_sub(1)?) as u64;
                let page = u64::from(PAGE_SIZE);
                Some(if last {
                    (lacking - 1) * page + last_len
                } else {
                    lacking * page
                })
            })
            .sum()
    }
}

#[cfg(test)]
mod tests;
