//! The device's protocol session on one link, as a state machine with no I/O.
//!
//! It is fed what the link brings, one [`Input`] at a time (a message, a
//! frame that failed its checks, the link's end) with the time, and
//! answers with what to do: [`Action`]s, taken in order with
//! [`Session::next_action`] (frames to send, the manifest to attach, pages
//! to demand again, the store writer to start or stop, the link's end with
//! its reason), and from [`Session::handle`] at most one [`CheckedRun`]
//! for the Core, borrowed from the frame or from the session's decode
//! buffer so the stream costs no copy here. The loop around it moves bytes
//! and calls the Core; it decides nothing.
//!
//! A link carries host sessions one after another: each starts at a host's
//! Hello. Frames before a Hello, damaged or not, are the tail of an earlier
//! session and are skipped (a frame of another version is refused). Then
//! the manifest: any damage in it ends the link with Error code 1 (an Entry
//! may be lost), a refused entry with code 3. The attached manifest is
//! answered with the Have report and HaveEnd, and runs flow: each is
//! checked against the manifest, decoded, and each page hashed once and
//! compared with its CRC here; damaged pages are demanded again (the good
//! pages of the run still land), a run outside the manifest ends the link
//! (code 1). A StreamDone with pages missing has them all demanded; a
//! repeated one once every page is present says Complete again (the first was sent by
//! the Core, and may have been lost). Goodbye ends the host session and the
//! link waits for the next Hello; a Hello at any point starts the next one.
//!
//! The device keeps no timer here: a host that goes silent is waited for
//! (it repeats StreamDone while idle; parked reads have their own
//! deadlines, in the Core), and only the link's end or a frame ends a
//! session. The time passed in paces the warnings about dropped frames.

use std::collections::VecDeque;
use std::io;
use std::time::{Duration, Instant};

use feedfs_protocol::message::MAX_RANGES_PER_HAVE;
use feedfs_protocol::warn::{held_back_note, WarnLimit};
use feedfs_protocol::{
    hello, FileId, FrameError, Manifest, ManifestBuilder, Message, OwnedMessage, PageRange,
    ParseError, Recovery, Role,
};

use crate::link::error::{LinkError, Phase};
use crate::serve::core::{CheckedRun, LandError};

mod run;
#[cfg(test)]
mod tests;

use run::{check_run, Arrived, Refusal, RunBuffers, Source};

/// One thing the link brought.
#[derive(Debug)]
pub enum Input<'a> {
    /// A frame that passed its checks, parsed.
    Message(Message<'a>),
    /// A frame that passed its checks but whose payload is not a message.
    Unparsable(ParseError),
    /// A frame that failed its checks (the reader has resynchronised).
    Damaged(FrameError),
    /// The link's input ended between frames.
    Closed,
    /// Reading the link failed.
    ReadFailed(io::Error),
}

/// What the link must do, in order.
#[derive(Debug)]
pub enum Action {
    /// Send this message to the host.
    Send(OwnedMessage),
    /// The manifest is whole and checked: put it on the Core (the first
    /// one creates and mounts it), then call [`Session::attached`] with the
    /// pages the store holds, or [`Session::fail`].
    Attach(Manifest),
    /// The Have report is out: the Core's link starts (it says Complete if
    /// it holds everything) and the store writer takes checked pages.
    StartPages,
    /// These pages came damaged: ask the host for them again.
    Redemand {
        file: FileId,
        first: u64,
        count: u32,
    },
    /// The host's stream ended with pages missing: demand every one.
    DemandMissing,
    /// This host session takes no more pages: the store writer finishes
    /// those already checked and stops.
    StopPages,
    /// The link is over: `Ok` when it ended cleanly.
    End(Result<(), LinkError>),
}

/// What the session asks about the files it feeds (the Core answers).
pub trait Pages {
    /// Pages present in the store, of all files.
    fn present_pages(&self) -> u64;
    /// The length of pages `first..first + count` of `file`, or why they
    /// are not pages of the manifest.
    fn run_len(&self, file: FileId, first: u64, count: u64) -> Result<usize, LandError>;
}

/// The manifest's numbers the session needs once it is attached.
#[derive(Debug, Clone, Copy)]
struct Counts {
    /// File entries (for HaveEnd).
    files: u32,
    /// Pages of all files.
    pages: u64,
}

enum State {
    /// Waiting for a host's Hello, counting what is skipped before it.
    AwaitHello { skipped: u64 },
    /// Taking the manifest.
    Manifest(ManifestBuilder),
    /// The manifest went out in [`Action::Attach`]; waiting for
    /// [`Session::attached`].
    Attaching(Counts),
    /// Runs flow.
    Streaming { counts: Counts, stream_dones: u32 },
    /// The link is over: nothing more is done.
    Ended,
}

/// The device's protocol session on one link (see the module doc).
pub struct Session {
    /// Our Hello's agent text.
    agent: String,
    state: State,
    actions: VecDeque<Action>,
    /// A link turned to noise drops frame after frame: a few lines a second.
    dropped: WarnLimit,
    /// Where runs are decoded and their pages' checks kept, reused from
    /// run to run.
    buf: RunBuffers,
}

impl Session {
    /// A session waiting for a host's Hello; `agent` names this device in
    /// its Hello.
    pub fn new(agent: impl Into<String>) -> Session {
        Session {
            agent: agent.into(),
            state: State::AwaitHello { skipped: 0 },
            actions: VecDeque::new(),
            dropped: dropped_limit(),
            buf: RunBuffers::default(),
        }
    }

    /// The next thing to do, in the order decided.
    pub fn next_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// Whether the link is over (an [`Action::End`] was queued).
    pub fn is_ended(&self) -> bool {
        matches!(self.state, State::Ended)
    }

    /// Take one input at `now`. A Run with pages that pass every check is
    /// returned for the Core; everything else becomes actions.
    pub fn handle<'a>(
        &'a mut self,
        now: Instant,
        input: Input<'a>,
        pages: &dyn Pages,
    ) -> Option<CheckedRun<'a>> {
        match input {
            Input::Message(Message::Run {
                file,
                first,
                count,
                encoding,
                crcs,
                data,
            }) if matches!(self.state, State::Streaming { .. }) => {
                let arrived = Arrived {
                    file,
                    first,
                    count,
                    encoding,
                    crcs,
                    data,
                };
                return self.on_run(arrived, pages);
            }
            Input::Message(msg) => self.on_message(msg, pages),
            Input::Unparsable(e) => self.on_unparsable(e),
            Input::Damaged(e) => self.on_damaged(now, e),
            Input::Closed => self.on_closed(),
            Input::ReadFailed(error) => {
                let phase = self.phase();
                self.fail(LinkError::Read { phase, error });
            }
        }
        None
    }

    /// The manifest is on the Core: report the pages held (`have`, per
    /// file; `present` in all) and start taking runs.
    pub fn attached(&mut self, have: Vec<(FileId, Vec<PageRange>)>, present: u64) {
        let State::Attaching(counts) = self.state else {
            return;
        };
        for (file, ranges) in have {
            for chunk in ranges.chunks(MAX_RANGES_PER_HAVE) {
                self.send(OwnedMessage::Have {
                    file,
                    ranges: chunk.to_vec(),
                });
            }
        }
        self.send(OwnedMessage::HaveEnd {
            files: counts.files,
        });
        log::info!("{present} of {} pages already present", counts.pages);
        self.actions.push_back(Action::StartPages);
        self.dropped = dropped_limit();
        self.state = State::Streaming {
            counts,
            stream_dones: 0,
        };
    }

    /// The Core refused a run the session passed on (it checks again).
    pub fn refused(&mut self, e: LandError) {
        self.refuse(Refusal::Land(e));
    }

    /// End the link with this error: the host is told when the error has a
    /// code, the store writer stops, and [`Action::End`] carries it.
    pub fn fail(&mut self, e: LinkError) {
        if self.is_ended() {
            return;
        }
        if let Some(code) = e.code() {
            let text = e.host_text();
            self.send(OwnedMessage::Error { code, text });
        }
        self.stop_pages();
        self.state = State::Ended;
        self.actions.push_back(Action::End(Err(e)));
    }

    fn send(&mut self, msg: OwnedMessage) {
        self.actions.push_back(Action::Send(msg));
    }

    fn end(&mut self) {
        self.stop_pages();
        self.state = State::Ended;
        self.actions.push_back(Action::End(Ok(())));
    }

    /// If runs flow, they stop; the session waits for a Hello.
    fn stop_pages(&mut self) {
        if matches!(self.state, State::Streaming { .. }) {
            self.actions.push_back(Action::StopPages);
            self.state = State::AwaitHello { skipped: 0 };
        }
    }

    fn phase(&self) -> Phase {
        match self.state {
            State::AwaitHello { .. } | State::Ended => Phase::BeforeHello,
            State::Manifest(_) | State::Attaching(_) => Phase::Manifest,
            State::Streaming { .. } => Phase::Pages,
        }
    }

    fn on_hello(&mut self, msg: &Message, agent: &str) {
        match self.state {
            State::Ended => return,
            State::AwaitHello { skipped } if skipped > 0 => {
                log::warn!("skipped {skipped} frames of an earlier session before this Hello");
            }
            State::AwaitHello { .. } => {}
            _ => log::info!("a new host session starts on the same link"),
        }
        self.stop_pages();
        self.state = State::AwaitHello { skipped: 0 };
        match hello::check(Role::Host, msg) {
            Ok(_) => {
                log::info!("host is {agent}");
                let ours = hello::ours(Role::Device, &self.agent).into_owned();
                self.send(ours);
                self.state = State::Manifest(ManifestBuilder::new());
            }
            Err(e) => self.fail(LinkError::Hello(e)),
        }
    }

    fn on_message(&mut self, msg: Message<'_>, pages: &dyn Pages) {
        if let Message::Hello { agent, .. } = msg {
            return self.on_hello(&msg, agent);
        }
        if let Message::Error { code, text } = msg {
            if !matches!(self.state, State::AwaitHello { .. }) {
                let text = text.to_string();
                return self.fail(LinkError::Host { code, text });
            }
        }
        match &mut self.state {
            State::AwaitHello { skipped } => *skipped += 1,
            State::Manifest(builder) => match msg {
                Message::ManifestEnd {
                    entries,
                    total_bytes,
                } => {
                    let builder = std::mem::take(builder);
                    match builder.finish(entries, total_bytes) {
                        Ok(manifest) => {
                            self.state = State::Attaching(counts(&manifest));
                            self.actions.push_back(Action::Attach(manifest));
                        }
                        Err(e) => self.fail(LinkError::ManifestEnd(e)),
                    }
                }
                msg => {
                    if let Err(e) = builder.push_message(&msg) {
                        self.fail(LinkError::ManifestEntry(e));
                    }
                }
            },
            State::Attaching(_) | State::Ended => {
                log::debug!("{:?} dropped: no session takes it", msg.message_type());
            }
            State::Streaming {
                counts,
                stream_dones,
            } => match msg {
                Message::StreamDone { pages_sent } => {
                    *stream_dones += 1;
                    log::info!("host stream done ({pages_sent} pages sent)");
                    let present = pages.present_pages();
                    if present < counts.pages {
                        self.actions.push_back(Action::DemandMissing);
                    } else if *stream_dones > 1 {
                        // Said again: our Complete may have been lost.
                        self.send(OwnedMessage::Complete { pages: present });
                    }
                }
                Message::Goodbye => {
                    log::info!("host said goodbye");
                    self.stop_pages();
                }
                other => log::warn!(
                    "ignoring unexpected {:?} message from the host",
                    other.message_type()
                ),
            },
        }
    }

    fn on_unparsable(&mut self, e: ParseError) {
        match &mut self.state {
            State::AwaitHello { skipped } => *skipped += 1,
            State::Manifest(_) => self.fail(LinkError::BadManifestMessage(e)),
            State::Streaming { .. } => log::warn!("dropped a message from the host: {e}"),
            State::Attaching(_) | State::Ended => {}
        }
    }

    fn on_damaged(&mut self, now: Instant, e: FrameError) {
        match &mut self.state {
            State::AwaitHello { .. } if e.recovery() == Recovery::Fatal => {
                self.fail(LinkError::FrameVersion(e))
            }
            State::AwaitHello { skipped } => {
                *skipped += 1;
                log::debug!("before a Hello, skipped a damaged frame: {e}");
            }
            State::Manifest(_) => self.fail(LinkError::DamagedManifest(e)),
            State::Streaming { .. } => match e.recovery() {
                Recovery::Skip | Recovery::Resync => {
                    if let Some(n) = self.dropped.check(now) {
                        log::warn!("dropped a frame from the host: {e}{}", held_back_note(n));
                    }
                }
                Recovery::Reconnect | Recovery::Fatal => self.fail(LinkError::Frame(e)),
            },
            State::Attaching(_) | State::Ended => {}
        }
    }

    fn on_closed(&mut self) {
        match self.state {
            State::AwaitHello { .. } => self.end(),
            State::Manifest(_) | State::Attaching(_) => self.fail(LinkError::ClosedInManifest),
            State::Streaming { .. } => {
                log::info!("host closed the link");
                self.end();
            }
            State::Ended => {}
        }
    }

    fn on_run<'a>(&'a mut self, r: Arrived<'a>, pages: &dyn Pages) -> Option<CheckedRun<'a>> {
        let source = match check_run(&r, pages, &mut self.buf) {
            Ok(source) => source,
            Err(refusal) => {
                self.refuse(refusal);
                return None;
            }
        };
        let bad = run::bad_runs(&self.buf.good);
        for &(from, n) in &bad {
            log::warn!(
                "pages {}..{} of {} fail their CRC; asking again",
                r.first + from,
                r.first + from + u64::from(n),
                r.file
            );
            self.actions.push_back(Action::Redemand {
                file: r.file,
                first: r.first + from,
                count: n,
            });
        }
        if bad.len() == 1 && bad[0] == (0, r.count) {
            return None;
        }
        Some(CheckedRun {
            file: r.file,
            first: r.first,
            crcs: &self.buf.crcs,
            data: match source {
                Source::Frame => Some(r.data),
                Source::Decoded => Some(&self.buf.plain),
                Source::Zero => None,
            },
            good: &self.buf.good,
        })
    }

    /// Undecodable data has its run demanded again; a run the manifest does
    /// not allow ends the link.
    fn refuse(&mut self, r: Refusal) {
        match r {
            Refusal::Undecodable {
                file,
                first,
                count,
                error,
            } => {
                log::warn!(
                    "run of {count} pages from page {first} of {file} dropped: {error}; asking again"
                );
                self.actions
                    .push_back(Action::Redemand { file, first, count });
            }
            Refusal::Land(e) => {
                log::error!("{e}");
                self.fail(LinkError::BadRun(e));
            }
        }
    }
}

/// At most 5 warnings a second about dropped frames.
fn dropped_limit() -> WarnLimit {
    WarnLimit::new(5, Duration::from_secs(1))
}

fn counts(m: &Manifest) -> Counts {
    Counts {
        files: m.files().count() as u32,
        pages: m.files().map(|e| e.pages()).sum(),
    }
}
