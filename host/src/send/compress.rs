//! `--compress`: LZ4 per part of a run (its pages with data, as one LZ4
//! block), where it pays.
//!
//! [`Policy`] decides, part by part, whether to try compressing; it is
//! pure (the caller passes in sizes and the times it measured), so its rules
//! are tested without a link. [`Compressor`] holds the policy and the
//! buffers it compresses into, reused from part to part.
//!
//! The rules:
//! - a compressed part is sent only when it is below 95 % of its raw bytes
//!   ([`pays`]); otherwise the raw bytes go, in every mode;
//! - `lz4` tries every part;
//! - `auto` tries only while the link is the bottleneck *and* compressing
//!   keeps up with it. It keeps two costs, in time per byte. The link's is
//!   at least `1 / --rate`; without a rate it is measured, after the first
//!   16 parts, while writes block (while writing frames takes over half of
//!   the host's time per part). The host's is its time per byte for a
//!   part it compresses (reading, hashing, compressing). `auto` tries when
//!   the host's cost is below 80 % of the link's: the host then feeds the
//!   link at least the raw rate's worth of pages, in fewer bytes. So a link
//!   whose writes never block is never compressed for, nor a fast pipe that
//!   drains faster than LZ4 compresses; there one part in 256 is still
//!   tried, to notice when compressing has become cheap enough;
//! - On data that does not shrink, `auto` backs off: after 16 tries in a row
//!   that did not pay it sends the next 8 parts raw without trying, then
//!   tries one; each further miss doubles the pause, up to 256 parts; a
//!   part that pays ends it. So incompressible data costs one try in up to
//!   257 parts.

use std::time::Duration;

use feedfs_protocol::message::Encoding;
use lz4_flex::block::{compress_into_with_table, get_maximum_output_size, CompressTable};

/// What `--compress` asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    /// Compress while the link is the bottleneck and compressing keeps up
    /// with it; stop trying on data that does not shrink.
    Auto,
    /// Try every run; send it compressed whenever it shrinks below 95 %.
    Lz4,
    /// Never compress.
    None,
}

/// Tries in a row that do not pay before `auto` pauses.
const MISSES_BEFORE_PAUSE: u32 = 16;
/// Parts sent raw, without trying, in the first pause.
const FIRST_PAUSE: u32 = 8;
/// Longest pause, in parts.
const LONGEST_PAUSE: u32 = 256;
/// Weight of the newest part in the running averages.
const WEIGHT: f64 = 1.0 / 16.0;
/// Weight of a part that compressed faster than the average.
const FALL: f64 = 0.5;
/// Above this share of its time spent writing, the host is waiting for the link.
const LINK_BOUND: f64 = 0.5;
/// Parts sent before the link's cost is judged from the averages (the
/// first ones fill the link's buffers, or wait for a reader to start).
const WARM_UP: u32 = 16;
/// `auto` tries when compressing costs the host less than this share of
/// the link's time for the same bytes raw.
const KEEPS_UP: f64 = 0.8;
/// When compressing does not keep up, one part in this many is tried anyway.
const RECHECK_EVERY: u32 = 256;

/// True when `packed` bytes are worth sending instead of `raw` bytes: below 95 %.
pub fn pays(raw: usize, packed: usize) -> bool {
    (packed as u64) * 20 < (raw as u64) * 19
}

/// What the host measured for one part it sent.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sent {
    /// Reading, hashing and (if tried) compressing the part.
    pub work: Duration,
    /// Writing its frame to the link, waits included.
    pub write: Duration,
    /// The part's length.
    pub raw: usize,
    /// Its data's length on the wire.
    pub wire: usize,
    /// Whether it was compressed (whether or not that paid).
    pub tried: bool,
}

/// When to try compressing a part; see the module documentation.
#[derive(Debug, Clone)]
pub struct Policy {
    mode: Mode,
    /// The link's least cost per byte: `1 / --rate`.
    rate_cost: f64,
    /// Running averages per part: host time (work and write), write time, wire bytes.
    avg_time: f64,
    avg_write: f64,
    avg_wire: f64,
    /// Parts sent so far, up to [`WARM_UP`].
    warm: u32,
    /// The link's measured cost per wire byte, seconds; `None` until writes have blocked.
    link_cost: Option<f64>,
    /// The host's cost per raw byte of a part it compresses, seconds.
    pack_cost: Option<f64>,
    /// Parts since the last try while compressing did not keep up.
    since_recheck: u32,
    /// Whether compressing kept up with the link at the last part (for the log).
    keeps_up: Option<bool>,
    /// Tries in a row that did not pay.
    misses: u32,
    /// Parts still to send raw before the next try.
    pause_left: u32,
    /// Length of the next pause.
    next_pause: u32,
}

impl Policy {
    /// A policy for `mode`, the link limited to `rate` bytes per second if given.
    pub fn new(mode: Mode, rate: Option<u64>) -> Self {
        Policy {
            mode,
            rate_cost: rate.map_or(0.0, |r| 1.0 / r.max(1) as f64),
            avg_time: 0.0,
            avg_write: 0.0,
            avg_wire: 0.0,
            warm: 0,
            link_cost: None,
            pack_cost: None,
            since_recheck: 0,
            keeps_up: None,
            misses: 0,
            pause_left: 0,
            next_pause: FIRST_PAUSE,
        }
    }

    /// The link's cost per byte, as far as known.
    fn link_cost(&self) -> Option<f64> {
        let measured = self.link_cost.unwrap_or(0.0);
        Some(measured.max(self.rate_cost)).filter(|&c| c > 0.0)
    }

    /// Whether to try compressing the next part.
    pub fn should_try(&mut self) -> bool {
        match self.mode {
            Mode::None => return false,
            Mode::Lz4 => return true,
            Mode::Auto => {}
        }
        let Some(link) = self.link_cost() else {
            return false;
        };
        if self.pause_left > 0 {
            self.pause_left -= 1;
            return false;
        }
        match self.pack_cost {
            Some(pack) if pack >= KEEPS_UP * link => {
                self.since_recheck += 1;
                if self.since_recheck < RECHECK_EVERY {
                    return false;
                }
                self.since_recheck = 0;
                true
            }
            _ => true,
        }
    }

    /// A try compressed `raw` bytes into `packed`: whether to send them
    /// compressed ([`pays`]). Counts misses and sets the pauses.
    pub fn tried(&mut self, raw: usize, packed: usize) -> bool {
        let pays = pays(raw, packed);
        if pays {
            if self.misses >= MISSES_BEFORE_PAUSE {
                log::debug!("compress: data shrinks again; trying every part");
            }
            self.misses = 0;
            self.next_pause = FIRST_PAUSE;
        } else {
            self.misses = self.misses.saturating_add(1);
            if self.misses >= MISSES_BEFORE_PAUSE {
                if self.misses == MISSES_BEFORE_PAUSE {
                    log::debug!("compress: data does not shrink; trying less often");
                }
                self.pause_left = self.next_pause;
                self.next_pause = (self.next_pause * 2).min(LONGEST_PAUSE);
            }
        }
        pays
    }

    /// A part went out; see [`Sent`].
    pub fn sent(&mut self, s: Sent) {
        let (work, write) = (s.work.as_secs_f64(), s.write.as_secs_f64());
        if s.tried && s.raw > 0 {
            // Quick to fall, slow to rise: a part during which the host
            // was preempted or waited on the disk must not stop compression
            // for long, a lasting rise still shows within a few parts.
            let cost = work / s.raw as f64;
            self.pack_cost = Some(match self.pack_cost {
                Some(c) if cost < c => c + (cost - c) * FALL,
                Some(c) => c + (cost.min(2.0 * c) - c) * WEIGHT,
                None => cost,
            });
        }
        self.avg_time += (work + write - self.avg_time) * WEIGHT;
        self.avg_write += (write - self.avg_write) * WEIGHT;
        self.avg_wire += (s.wire as f64 - self.avg_wire) * WEIGHT;
        self.warm = (self.warm + 1).min(WARM_UP);
        if self.warm < WARM_UP || self.avg_time <= 0.0 || self.avg_wire <= 0.0 {
            return;
        }
        // While the host waits for the link, the link sets the pace: its
        // cost is the host's time per wire byte. Otherwise the link is at
        // least that fast.
        let per_byte = self.avg_time / self.avg_wire;
        let was = self.link_cost;
        self.link_cost = if self.avg_write > LINK_BOUND * self.avg_time {
            Some(was.map_or(per_byte, |c| c + (per_byte - c) * WEIGHT))
        } else {
            was.map(|c| c.min(per_byte))
        };
        if self.mode != Mode::Auto {
            return;
        }
        if let (Some(pack), Some(link)) = (self.pack_cost, self.link_cost()) {
            let keeps_up = pack < KEEPS_UP * link;
            if self.keeps_up != Some(keeps_up) {
                log::debug!(
                    "compress: compressing costs {:.2} ns a byte, the link {:.2}: {}",
                    pack * 1e9,
                    link * 1e9,
                    if keeps_up {
                        "compressing"
                    } else {
                        "sending raw"
                    }
                );
            }
            self.keeps_up = Some(keeps_up);
        }
    }
}

/// The policy with its buffers: turns a part into what goes on the wire.
pub struct Compressor {
    policy: Policy,
    table: CompressTable,
    out: Vec<u8>,
    /// Whether the policy had the last part compressed (whether or not that paid).
    tried: bool,
}

impl Compressor {
    pub fn new(policy: Policy) -> Self {
        Compressor {
            policy,
            table: CompressTable::default(),
            out: Vec::new(),
            tried: false,
        }
    }

    /// How to send `data`: raw, or compressed when the policy tries and it pays.
    /// The compressed bytes live in a buffer reused for the next part.
    pub fn encode<'d>(&'d mut self, data: &'d [u8]) -> (Encoding, &'d [u8]) {
        self.tried = self.policy.should_try();
        if !self.tried {
            return (Encoding::Raw, data);
        }
        let max = get_maximum_output_size(data.len());
        if self.out.len() < max {
            self.out.resize(max, 0);
        }
        match compress_into_with_table(data, &mut self.out, &mut self.table) {
            Ok(n) if self.policy.tried(data.len(), n) => (Encoding::Lz4, &self.out[..n]),
            Ok(_) => (Encoding::Raw, data),
            Err(e) => {
                log::debug!("compress: {e}; sending the part raw");
                (Encoding::Raw, data)
            }
        }
    }

    /// The part last encoded went out: `raw` bytes as `wire` bytes, after
    /// `work` (reading, hashing, encoding) and `write`; see [`Policy::sent`].
    pub fn sent(&mut self, work: Duration, write: Duration, raw: usize, wire: usize) {
        self.policy.sent(Sent {
            work,
            write,
            raw,
            wire,
            tried: self.tried,
        });
    }
}

#[cfg(test)]
mod tests;
