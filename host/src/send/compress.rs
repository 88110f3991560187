//! `--compress`: LZ4 per block, where it pays.
//!
//! [`Policy`] decides, block by block, whether to try compressing; it is
//! pure (the caller passes in sizes and the times it measured), so its rules
//! are tested without a link. [`Compressor`] holds the policy and the
//! buffers it compresses into, reused from block to block.
//!
//! The rules:
//! - a compressed block is sent only when it is below 95 % of the raw block
//!   ([`pays`]); otherwise the raw block goes, in every mode;
//! - `lz4` tries every block;
//! - `auto` tries only while the link is the bottleneck *and* compressing
//!   keeps up with it. It keeps two costs, in time per byte. The link's is
//!   at least `1 / --rate`; without a rate it is measured, after the first
//!   16 blocks, while writes block (while writing frames takes over half of
//!   the host's time per block). The host's is its time per byte for a
//!   block it compresses (reading, hashing, compressing). `auto` tries when
//!   the host's cost is below 80 % of the link's: the host then feeds the
//!   link at least the raw rate's worth of blocks, in fewer bytes. So a link
//!   whose writes never block is never compressed for, nor a fast pipe that
//!   drains faster than LZ4 compresses; there one block in 256 is still
//!   tried, to notice when compressing has become cheap enough;
//! - On data that does not shrink, `auto` backs off: after 16 tries in a row
//!   that did not pay (1 MiB in 64 KiB blocks: a tar's compressed members
//!   rarely run that long) it sends the next 8 blocks raw without trying,
//!   then tries one; each further miss doubles the pause, up to 256 blocks;
//!   a block that pays ends it. So incompressible data costs one try in up
//!   to 257 blocks.

use std::time::Duration;

use feedfs_protocol::message::Encoding;
use lz4_flex::block::{compress_into_with_table, get_maximum_output_size, CompressTable};

/// What `--compress` asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    /// Compress while the link is the bottleneck and compressing keeps up
    /// with it; stop trying on data that does not shrink.
    Auto,
    /// Try every block; send it compressed whenever it shrinks below 95 %.
    Lz4,
    /// Never compress.
    None,
}

/// Tries in a row that do not pay before `auto` pauses.
const MISSES_BEFORE_PAUSE: u32 = 16;
/// Blocks sent raw, without trying, in the first pause.
const FIRST_PAUSE: u32 = 8;
/// Longest pause, in blocks.
const LONGEST_PAUSE: u32 = 256;
/// Weight of the newest block in the running averages.
const WEIGHT: f64 = 1.0 / 16.0;
/// Weight of a block that compressed faster than the average.
const FALL: f64 = 0.5;
/// Above this share of its time spent writing, the host is waiting for the link.
const LINK_BOUND: f64 = 0.5;
/// Blocks sent before the link's cost is judged from the averages (the
/// first ones fill the link's buffers, or wait for a reader to start).
const WARM_UP: u32 = 16;
/// `auto` tries when compressing costs the host less than this share of
/// the link's time for the same bytes raw.
const KEEPS_UP: f64 = 0.8;
/// When compressing does not keep up, one block in this many is tried anyway.
const RECHECK_EVERY: u32 = 256;

/// True when `packed` bytes are worth sending instead of `raw` bytes: below 95 %.
pub fn pays(raw: usize, packed: usize) -> bool {
    (packed as u64) * 20 < (raw as u64) * 19
}

/// What the host measured for one block it sent.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sent {
    /// Reading, hashing and (if tried) compressing the block.
    pub work: Duration,
    /// Writing its frame to the link, waits included.
    pub write: Duration,
    /// The block's length.
    pub raw: usize,
    /// Its data's length on the wire.
    pub wire: usize,
    /// Whether it was compressed (whether or not that paid).
    pub tried: bool,
}

/// When to try compressing a block; see the module documentation.
#[derive(Debug, Clone)]
pub struct Policy {
    mode: Mode,
    /// The link's least cost per byte: `1 / --rate`.
    rate_cost: f64,
    /// Running averages per block: host time (work and write), write time, wire bytes.
    avg_time: f64,
    avg_write: f64,
    avg_wire: f64,
    /// Blocks sent so far, up to [`WARM_UP`].
    warm: u32,
    /// The link's measured cost per wire byte, seconds; `None` until writes have blocked.
    link_cost: Option<f64>,
    /// The host's cost per raw byte of a block it compresses, seconds.
    pack_cost: Option<f64>,
    /// Blocks since the last try while compressing did not keep up.
    since_recheck: u32,
    /// Whether compressing kept up with the link at the last block (for the log).
    keeps_up: Option<bool>,
    /// Tries in a row that did not pay.
    misses: u32,
    /// Blocks still to send raw before the next try.
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

    /// Whether to try compressing the next block.
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
                log::debug!("compress: data shrinks again; trying every block");
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

    /// A block went out; see [`Sent`].
    pub fn sent(&mut self, s: Sent) {
        let (work, write) = (s.work.as_secs_f64(), s.write.as_secs_f64());
        if s.tried && s.raw > 0 {
            // Quick to fall, slow to rise: a block during which the host
            // was preempted or waited on the disk must not stop compression
            // for long, a lasting rise still shows within a few blocks.
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

/// The policy with its buffers: turns a block into what goes on the wire.
pub struct Compressor {
    policy: Policy,
    table: CompressTable,
    out: Vec<u8>,
    /// Whether the policy had the last block compressed (whether or not that paid).
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
    /// The compressed bytes live in a buffer reused for the next block.
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
                log::debug!("compress: {e}; sending the block raw");
                (Encoding::Raw, data)
            }
        }
    }

    /// The block last encoded went out: `raw` bytes as `wire` bytes, after
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
mod tests {
    use super::*;

    const US: Duration = Duration::from_micros(1);
    const BLOCK: usize = 65536;

    /// Which of `n` blocks a policy tries, when every try gives `packed` of 100 bytes.
    fn tries(p: &mut Policy, n: usize, packed: usize) -> Vec<usize> {
        (0..n)
            .filter(|_| {
                let t = p.should_try();
                if t {
                    p.tried(100, packed);
                }
                t
            })
            .collect()
    }

    /// A simulated link and host: per 64 KiB block, the host spends `read`
    /// reading and hashing and `pack` more compressing (to half the size);
    /// the link takes `link` per 64 KiB, and the host waits for it when it
    /// is slower. Returns how many of `n` blocks were compressed.
    fn run(p: &mut Policy, n: usize, read: Duration, pack: Duration, link: Duration) -> usize {
        let mut compressed = 0;
        for _ in 0..n {
            let tried = p.should_try();
            let (work, wire) = if tried && p.tried(BLOCK, BLOCK / 2) {
                compressed += 1;
                (read + pack, BLOCK / 2)
            } else if tried {
                (read + pack, BLOCK)
            } else {
                (read, BLOCK)
            };
            // The link drains `wire` bytes in proportion; the host waits out the rest.
            let busy = link.mul_f64(wire as f64 / BLOCK as f64);
            let write = busy.saturating_sub(work).max(US);
            p.sent(Sent {
                work,
                write,
                raw: BLOCK,
                wire,
                tried,
            });
        }
        compressed
    }

    #[test]
    fn only_below_95_percent_pays() {
        assert!(pays(100, 94));
        assert!(!pays(100, 95));
        assert!(!pays(100, 120));
        assert!(pays(65536, 62258));
        assert!(!pays(65536, 62260));
        assert!(!pays(0, 0));
        assert!(!pays(1 << 20, 1 << 20));
    }

    #[test]
    fn none_never_tries_and_lz4_always_does() {
        let mut none = Policy::new(Mode::None, Some(1000));
        assert_eq!(run(&mut none, 100, US, US, 1000 * US), 0);
        // lz4 tries every block, however fast the link, even on data that
        // does not shrink (which it still sends raw).
        let mut lz4 = Policy::new(Mode::Lz4, None);
        assert_eq!(run(&mut lz4, 100, 10 * US, 100 * US, US), 100);
        assert_eq!(tries(&mut lz4, 100, 100).len(), 100);
        assert!(!lz4.tried(100, 96));
        assert!(lz4.tried(100, 94));
    }

    #[test]
    fn auto_under_a_rate_limit_compresses_from_the_first_block() {
        // 40 MiB/s: 1.6 ms per 64 KiB block; compressing takes 0.1 ms.
        let mut p = Policy::new(Mode::Auto, Some(40 << 20));
        assert_eq!(run(&mut p, 500, 20 * US, 100 * US, 1600 * US), 500);
    }

    #[test]
    fn auto_does_not_compress_for_a_rate_faster_than_lz4() {
        // 10 GiB/s: compressing would make the host the bottleneck. One
        // try tells, then one block in 256 checks again.
        let mut p = Policy::new(Mode::Auto, Some(10 << 30));
        let n = run(&mut p, 1000, 20 * US, 100 * US, 6 * US);
        assert!((1..=5).contains(&n), "{n} of 1000 compressed");
    }

    #[test]
    fn auto_without_a_rate_leaves_a_fast_link_alone() {
        // Writes never wait: the host is the bottleneck; nothing is tried.
        let mut p = Policy::new(Mode::Auto, None);
        assert_eq!(run(&mut p, 1000, 20 * US, 100 * US, 10 * US), 0);
    }

    #[test]
    fn auto_without_a_rate_compresses_for_a_slow_link_and_keeps_at_it() {
        // Writes wait for the link (1.6 ms a block): compress, and keep
        // compressing although the link now waits less.
        let mut p = Policy::new(Mode::Auto, None);
        assert_eq!(
            run(&mut p, 16, 20 * US, 100 * US, 1600 * US),
            0,
            "warming up"
        );
        let n = run(&mut p, 1000, 20 * US, 100 * US, 1600 * US);
        assert!(n > 950, "{n} of 1000 compressed");
        // Even when compressing makes the host the bottleneck, as long as
        // it is still faster than the link was for raw blocks.
        let mut p = Policy::new(Mode::Auto, None);
        let n = run(&mut p, 1000, 20 * US, 100 * US, 200 * US);
        assert!(n > 950, "{n} of 1000 compressed");
    }

    #[test]
    fn auto_without_a_rate_does_not_compress_when_lz4_is_slower_than_the_link() {
        // A local pipe: its reader takes 55 us a block, LZ4 would take 100.
        let mut p = Policy::new(Mode::Auto, None);
        let n = run(&mut p, 2560, 20 * US, 100 * US, 55 * US);
        assert!((1..=12).contains(&n), "{n} of 2560 compressed");
        // Should the link slow down, compressing starts again.
        let n = run(&mut p, 1000, 20 * US, 100 * US, 1600 * US);
        assert!(n > 700, "{n} of 1000 compressed");
    }

    #[test]
    fn auto_backs_off_on_data_that_does_not_shrink() {
        let mut p = Policy::new(Mode::Auto, Some(1 << 20));
        // 16 misses, a pause of 8, then tries with doubling pauses up to 256.
        let t = tries(&mut p, 2000, 99);
        let first: Vec<usize> = (0..16).collect();
        assert_eq!(t[..16], first);
        assert_eq!(t[16..22], [24, 41, 74, 139, 268, 525], "tries at {t:?}");
        assert_eq!(t[22] - t[21], 257);
        assert_eq!(t[23] - t[22], 257);
        assert_eq!(t.len(), 27, "tries in 2000 blocks: {t:?}");
        // A try that pays ends the pause: every block is tried again.
        while !p.should_try() {}
        assert!(p.tried(100, 50));
        assert_eq!(tries(&mut p, 10, 50).len(), 10);
        // And the next run of misses starts with a short pause again.
        let t = tries(&mut p, 40, 99);
        assert_eq!(t[15..], [15, 24]);
    }

    #[test]
    fn a_block_that_took_long_does_not_stop_compression() {
        let mut p = Policy::new(Mode::Auto, Some(40 << 20));
        assert_eq!(run(&mut p, 100, 20 * US, 100 * US, 1600 * US), 100);
        // The host was preempted for 50 ms in the middle of one block.
        assert!(p.should_try());
        p.sent(Sent {
            work: Duration::from_millis(50),
            write: US,
            raw: BLOCK,
            wire: BLOCK / 2,
            tried: true,
        });
        assert_eq!(run(&mut p, 100, 20 * US, 100 * US, 1600 * US), 100);
        // Compressing that really became slow (a slow disk: 2 ms a block
        // read, more than the link's 1.6 ms) stops within a few blocks.
        let n = run(&mut p, 1000, 2000 * US, 100 * US, 1600 * US);
        assert!(n < 50, "{n} of 1000 compressed");
    }

    #[test]
    fn zero_durations_and_sizes_change_nothing() {
        let mut p = Policy::new(Mode::Auto, None);
        p.sent(Sent {
            work: Duration::ZERO,
            write: Duration::ZERO,
            raw: 0,
            wire: 0,
            tried: true,
        });
        assert!(!p.should_try());
        assert_eq!(p.pack_cost, None);
    }

    #[test]
    fn a_compressor_reuses_its_buffers_and_sends_raw_when_it_does_not_pay() {
        let mut c = Compressor::new(Policy::new(Mode::Lz4, None));
        let text: Vec<u8> = b"feedfs sends blocks; ".repeat(3200)[..65536].to_vec();
        let (enc, packed) = c.encode(&text);
        assert_eq!(enc, Encoding::Lz4);
        let packed = packed.to_vec();
        assert!(packed.len() < 4096, "{} bytes", packed.len());
        assert_eq!(
            lz4_flex::block::decompress(&packed, text.len()).unwrap(),
            text
        );
        let cap = c.out.capacity();
        // Pseudo-random bytes do not shrink: sent as they are.
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let noise: Vec<u8> = (0..65536)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        let (enc, sent) = c.encode(&noise);
        assert_eq!(enc, Encoding::Raw);
        assert_eq!(sent, &noise[..]);
        assert!(c.tried, "tried, though sent raw");
        let (enc, _) = c.encode(&text);
        assert_eq!(enc, Encoding::Lz4);
        assert_eq!(c.out.capacity(), cap, "no new buffer");
        // None sends everything raw without looking at it.
        let mut c = Compressor::new(Policy::new(Mode::None, Some(1)));
        assert_eq!(c.encode(&text), (Encoding::Raw, &text[..]));
        assert!(c.out.is_empty() && !c.tried);
    }
}
