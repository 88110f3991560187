//! When compression is tried, kept and given up, and what the encoder sends.

use super::*;

const US: Duration = Duration::from_micros(1);
const PART: usize = 65536;

/// Which of `n` parts a policy tries, when every try gives `packed` of 100 bytes.
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

/// A simulated link and host: per 64 KiB part, the host spends `read`
/// reading and hashing and `pack` more compressing (to half the size);
/// the link takes `link` per 64 KiB, and the host waits for it when it
/// is slower. Returns how many of `n` parts were compressed.
fn run(p: &mut Policy, n: usize, read: Duration, pack: Duration, link: Duration) -> usize {
    let mut compressed = 0;
    for _ in 0..n {
        let tried = p.should_try();
        let (work, wire) = if tried && p.tried(PART, PART / 2) {
            compressed += 1;
            (read + pack, PART / 2)
        } else if tried {
            (read + pack, PART)
        } else {
            (read, PART)
        };
        // The link drains `wire` bytes in proportion; the host waits out the rest.
        let busy = link.mul_f64(wire as f64 / PART as f64);
        let write = busy.saturating_sub(work).max(US);
        p.sent(Sent {
            work,
            write,
            raw: PART,
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
    // lz4 tries every part, however fast the link, even on data that
    // does not shrink (which it still sends raw).
    let mut lz4 = Policy::new(Mode::Lz4, None);
    assert_eq!(run(&mut lz4, 100, 10 * US, 100 * US, US), 100);
    assert_eq!(tries(&mut lz4, 100, 100).len(), 100);
    assert!(!lz4.tried(100, 96));
    assert!(lz4.tried(100, 94));
}

#[test]
fn auto_under_a_rate_limit_compresses_from_the_first_part() {
    // 40 MiB/s: 1.6 ms per 64 KiB part; compressing takes 0.1 ms.
    let mut p = Policy::new(Mode::Auto, Some(40 << 20));
    assert_eq!(run(&mut p, 500, 20 * US, 100 * US, 1600 * US), 500);
}

#[test]
fn auto_does_not_compress_for_a_rate_faster_than_lz4() {
    // 10 GiB/s: compressing would make the host the bottleneck. One
    // try tells, then one part in 256 checks again.
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
    // Writes wait for the link (1.6 ms a part): compress, and keep
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
    // it is still faster than the link was for raw parts.
    let mut p = Policy::new(Mode::Auto, None);
    let n = run(&mut p, 1000, 20 * US, 100 * US, 200 * US);
    assert!(n > 950, "{n} of 1000 compressed");
}

#[test]
fn auto_without_a_rate_does_not_compress_when_lz4_is_slower_than_the_link() {
    // A local pipe: its reader takes 55 us a part, LZ4 would take 100.
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
    assert_eq!(t.len(), 27, "tries in 2000 parts: {t:?}");
    // A try that pays ends the pause: every part is tried again.
    while !p.should_try() {}
    assert!(p.tried(100, 50));
    assert_eq!(tries(&mut p, 10, 50).len(), 10);
    // And the next run of misses starts with a short pause again.
    let t = tries(&mut p, 40, 99);
    assert_eq!(t[15..], [15, 24]);
}

#[test]
fn a_part_that_took_long_does_not_stop_compression() {
    let mut p = Policy::new(Mode::Auto, Some(40 << 20));
    assert_eq!(run(&mut p, 100, 20 * US, 100 * US, 1600 * US), 100);
    // The host was preempted for 50 ms in the middle of one part.
    assert!(p.should_try());
    p.sent(Sent {
        work: Duration::from_millis(50),
        write: US,
        raw: PART,
        wire: PART / 2,
        tried: true,
    });
    assert_eq!(run(&mut p, 100, 20 * US, 100 * US, 1600 * US), 100);
    // Compressing that really became slow (a slow disk: 2 ms a part
    // read, more than the link's 1.6 ms) stops within a few parts.
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
    let text: Vec<u8> = b"feedfs sends pages; ".repeat(3300)[..65536].to_vec();
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
