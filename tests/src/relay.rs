//! A fault-injecting link for the end-to-end tests: it sits between the
//! real host and the real device, frame by frame, and drops, damages,
//! truncates or delays frames as a seeded generator decides.
//!
//! Each direction is one thread that reads whole frames from one pipe (the
//! peers write well-formed frames, so the 16-byte header gives each
//! frame's length) and writes them, or what is left of them, to the other.
//! The handshake and the manifest (Hello, Entry, ManifestEnd) and HaveEnd
//! always pass untouched: the protocol does not recover their loss (see
//! docs/protocol.md, "Lost frames"). Once [`Relay::calm`] is called every
//! frame passes untouched, so a test can check that the transfer then
//! completes. The fault decisions depend only on the seed and on the
//! sequence of frames, so a seed that failed replays the same faults on
//! the same sequence (the sequence itself depends on timing).

use std::io::{ErrorKind, Read, Write};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// How often each fault strikes a frame that may be faulted, in frames per 10 000.
#[derive(Debug, Clone, Copy)]
pub struct Faults {
    pub drop: u32,
    pub flip: u32,
    pub truncate: u32,
    pub delay: u32,
    /// Longest delay, in milliseconds.
    pub max_delay_ms: u64,
}

/// What a relay did, per kind of fault.
#[derive(Debug, Default)]
pub struct Stats {
    pub frames: AtomicU64,
    pub dropped: AtomicU64,
    pub flipped: AtomicU64,
    pub truncated: AtomicU64,
    pub delayed: AtomicU64,
}

impl Stats {
    /// Faults injected so far.
    pub fn faults(&self) -> u64 {
        [&self.dropped, &self.flipped, &self.truncated, &self.delayed]
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .sum()
    }

    pub fn summary(&self) -> String {
        let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
        format!(
            "{} frames: {} dropped, {} bit-flipped, {} truncated, {} delayed",
            g(&self.frames),
            g(&self.dropped),
            g(&self.flipped),
            g(&self.truncated),
            g(&self.delayed)
        )
    }
}

/// splitmix64: small, seedable, good enough to pick faults.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (`n` > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
}

/// Both directions of a faulty link.
pub struct Relay {
    calm: Arc<AtomicBool>,
    pub to_device: Arc<Stats>,
    pub to_host: Arc<Stats>,
    threads: Vec<JoinHandle<()>>,
}

/// Message types whose loss the protocol does not recover: never faulted.
fn protected(ty: u8) -> bool {
    use feedfs_protocol::MessageType as T;
    [T::Hello, T::Entry, T::ManifestEnd, T::HaveEnd]
        .iter()
        .any(|&t| t as u8 == ty)
}

impl Relay {
    /// Relay host → device and device → host with `faults`, seeded by `seed`.
    pub fn start(
        seed: u64,
        faults: Faults,
        from_host: impl Read + Send + 'static,
        to_device: impl Write + Send + 'static,
        from_device: impl Read + Send + 'static,
        to_host: impl Write + Send + 'static,
    ) -> Relay {
        let calm = Arc::new(AtomicBool::new(false));
        let (down, up) = (Arc::new(Stats::default()), Arc::new(Stats::default()));
        let threads = vec![
            spawn(
                Rng::new(seed ^ 0x00d0_0d00),
                faults,
                calm.clone(),
                down.clone(),
                from_host,
                to_device,
            ),
            spawn(
                Rng::new(seed ^ 0x0f0f_0f0f_0000),
                faults,
                calm.clone(),
                up.clone(),
                from_device,
                to_host,
            ),
        ];
        Relay {
            calm,
            to_device: down,
            to_host: up,
            threads,
        }
    }

    /// Stop injecting faults: every frame from now on passes whole.
    pub fn calm(&self) {
        self.calm.store(true, Ordering::SeqCst);
    }

    /// Faults injected in both directions.
    pub fn faults(&self) -> u64 {
        self.to_device.faults() + self.to_host.faults()
    }

    /// Wait for both directions to end (both peers closed their side).
    pub fn join(self) {
        for t in self.threads {
            let _ = t.join();
        }
    }
}

fn spawn(
    mut rng: Rng,
    f: Faults,
    calm: Arc<AtomicBool>,
    stats: Arc<Stats>,
    mut from: impl Read + Send + 'static,
    mut to: impl Write + Send + 'static,
) -> JoinHandle<()> {
    std::thread::spawn(move || {
        let mut frame = vec![0u8; feedfs_protocol::HEADER_LEN];
        loop {
            frame.truncate(feedfs_protocol::HEADER_LEN);
            if read_all(&mut from, &mut frame).is_err() {
                return;
            }
            let len = u32::from_le_bytes(frame[8..12].try_into().expect("4 bytes")) as usize;
            frame.resize(feedfs_protocol::HEADER_LEN + len, 0);
            if read_all(&mut from, &mut frame[feedfs_protocol::HEADER_LEN..]).is_err() {
                // The peer stopped inside a frame: the link ends here.
                return;
            }
            stats.frames.fetch_add(1, Ordering::Relaxed);
            let mut out: &[u8] = &frame;
            if !calm.load(Ordering::SeqCst) && !protected(frame[5]) {
                let roll = rng.below(10_000) as u32;
                let mut edge = f.drop;
                if roll < edge {
                    stats.dropped.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                edge += f.flip;
                if roll < edge {
                    stats.flipped.fetch_add(1, Ordering::Relaxed);
                    // One to three distinct bits, so a flip never undoes another.
                    let n = 1 + rng.below(3) as usize;
                    let mut bits = Vec::with_capacity(n);
                    while bits.len() < n {
                        let bit = rng.below(frame.len() as u64 * 8);
                        if !bits.contains(&bit) {
                            bits.push(bit);
                        }
                    }
                    for bit in bits {
                        frame[(bit / 8) as usize] ^= 1 << (bit % 8);
                    }
                    out = &frame;
                } else if roll < edge + f.truncate {
                    stats.truncated.fetch_add(1, Ordering::Relaxed);
                    out = &frame[..1 + rng.below(frame.len() as u64 - 1) as usize];
                } else if roll < edge + f.truncate + f.delay {
                    stats.delayed.fetch_add(1, Ordering::Relaxed);
                    std::thread::sleep(Duration::from_millis(1 + rng.below(f.max_delay_ms)));
                }
            }
            if to.write_all(out).and_then(|()| to.flush()).is_err() {
                return;
            }
        }
    })
}

/// `read_exact`, with any failure (including a clean end) as an error.
fn read_all(r: &mut impl Read, buf: &mut [u8]) -> std::io::Result<()> {
    let mut got = 0;
    while got < buf.len() {
        match r.read(&mut buf[got..]) {
            Ok(0) => return Err(ErrorKind::UnexpectedEof.into()),
            Ok(n) => got += n,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
