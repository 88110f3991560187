//! Sizes and durations in human units, the one parser of each for both
//! binaries' command lines, and their formatting back for messages.
//!
//! Sizes are whole numbers of bytes with an optional binary unit: `4096`,
//! `64K`, `64KiB`, `1M`, `2G`, `1T` (K = 1024; the unit may be followed by
//! `i` and `B`, in either case; a bare `B` means bytes). Fractions are
//! refused, and so is anything that does not fit in a `u64`.
//!
//! Durations need a unit (`ms`, `s`, `m`, `h`), because a bare `500` could
//! mean seconds or milliseconds; `0` alone is the one exception. They may
//! have a fraction (`1.5s`) and are exact to the nanosecond.
//!
//! Every option has an inclusive range ([`parse_size_in`],
//! [`parse_duration_in`]) and an error out of it states the range, written
//! in the same units a user would type ([`format_size`],
//! [`format_duration`]). Pure: no I/O.

use std::ops::RangeInclusive;
use std::time::Duration;

use crate::{MAX_RUN_BYTES, PAGE_SIZE};

/// The units a duration may carry, for messages.
const DURATION_UNITS: &str = "ms, s, m or h (e.g. 500ms, 10s, 2m)";

/// Why a size or a duration could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UnitError {
    #[error("empty value: expected {0}")]
    Empty(Kind),
    #[error("{text:?} is not {kind}")]
    BadNumber { text: String, kind: Kind },
    #[error("{text:?} has unknown unit {unit:?}: use {}", kind.units())]
    BadUnit {
        text: String,
        unit: String,
        kind: Kind,
    },
    #[error("{0:?} has no unit: a duration takes one of {DURATION_UNITS}")]
    NoUnit(String),
    #[error("{0:?} is too large")]
    Overflow(String),
    #[error("{text:?} is out of range: must be from {min} to {max}")]
    OutOfRange {
        text: String,
        min: String,
        max: String,
    },
    #[error("{text:?} is not a multiple of {of}")]
    NotMultiple { text: String, of: String },
    #[error("run length {text:?} is not a multiple of the 4K page from {} to {}", format_size(PAGE_SIZE.into()), format_size(MAX_RUN_BYTES.into()))]
    BadRunSize { text: String },
}

/// What was being read, for messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Size,
    Duration,
}

impl Kind {
    fn units(self) -> &'static str {
        match self {
            Kind::Size => "K, M, G or T (binary multiples, e.g. 64K or 1MiB), or none for bytes",
            Kind::Duration => DURATION_UNITS,
        }
    }
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Kind::Size => "a size (a whole number with an optional unit K, M, G or T, e.g. 64K)",
            Kind::Duration => "a duration (a number and a unit ms, s, m or h, e.g. 500ms or 10s)",
        })
    }
}

/// Parse a size such as `4096`, `64K`, `64KiB`, `1M` or `2G` into bytes.
pub fn parse_size(text: &str) -> Result<u64, UnitError> {
    let t = text.trim();
    if t.is_empty() {
        return Err(UnitError::Empty(Kind::Size));
    }
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, unit) = t.split_at(split);
    let bad_number = || UnitError::BadNumber {
        text: text.into(),
        kind: Kind::Size,
    };
    if digits.is_empty() || unit.starts_with(['.', ',']) {
        return Err(bad_number());
    }
    let n: u64 = digits
        .parse()
        .map_err(|_| UnitError::Overflow(text.into()))?;
    let shift = size_shift(unit.trim()).ok_or_else(|| UnitError::BadUnit {
        text: text.into(),
        unit: unit.trim().into(),
        kind: Kind::Size,
    })?;
    n.checked_mul(1u64 << shift)
        .ok_or_else(|| UnitError::Overflow(text.into()))
}

/// The power of two a size unit stands for, or `None` for an unknown unit.
fn size_shift(unit: &str) -> Option<u32> {
    let lower = unit.to_ascii_lowercase();
    let (prefix, rest) = match lower.chars().next() {
        None => return Some(0),
        Some('b') if lower == "b" => return Some(0),
        Some('k') => (10, &lower[1..]),
        Some('m') => (20, &lower[1..]),
        Some('g') => (30, &lower[1..]),
        Some('t') => (40, &lower[1..]),
        Some(_) => return None,
    };
    matches!(rest, "" | "i" | "b" | "ib").then_some(prefix)
}

/// Parse a size that must lie in `range` (inclusive).
pub fn parse_size_in(text: &str, range: RangeInclusive<u64>) -> Result<u64, UnitError> {
    let n = parse_size(text)?;
    if !range.contains(&n) {
        return Err(UnitError::OutOfRange {
            text: text.trim().into(),
            min: format_size(*range.start()),
            max: format_size(*range.end()),
        });
    }
    Ok(n)
}

/// Parse a size in `range` that is a whole multiple of `unit` bytes.
pub fn parse_size_multiple(
    text: &str,
    range: RangeInclusive<u64>,
    unit: u64,
) -> Result<u64, UnitError> {
    let n = parse_size_in(text, range)?;
    if !n.is_multiple_of(unit.max(1)) {
        return Err(UnitError::NotMultiple {
            text: text.trim().into(),
            of: format_size(unit),
        });
    }
    Ok(n)
}

/// Parse the length of a Run: whole pages, from one page to the most one
/// Run carries ([`MAX_RUN_BYTES`]).
pub fn parse_run_size(text: &str) -> Result<u32, UnitError> {
    let n = parse_size(text)?;
    let range = u64::from(PAGE_SIZE)..=u64::from(MAX_RUN_BYTES);
    if !n.is_multiple_of(u64::from(PAGE_SIZE)) || !range.contains(&n) {
        return Err(UnitError::BadRunSize {
            text: text.trim().into(),
        });
    }
    u32::try_from(n).map_err(|_| UnitError::BadRunSize {
        text: text.trim().into(),
    })
}

/// Parse a duration such as `500ms`, `10s`, `1.5s`, `2m` or `1h`; `0` alone
/// is zero.
pub fn parse_duration(text: &str) -> Result<Duration, UnitError> {
    let t = text.trim();
    if t.is_empty() {
        return Err(UnitError::Empty(Kind::Duration));
    }
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let bad_number = || UnitError::BadNumber {
        text: text.into(),
        kind: Kind::Duration,
    };
    let (whole, frac) = number.split_once('.').unwrap_or((number, ""));
    if (whole.is_empty() && frac.is_empty()) || frac.contains('.') {
        return Err(bad_number());
    }
    let unit = unit.trim();
    let nanos_per_unit: u128 = match unit.to_ascii_lowercase().as_str() {
        "" if whole.bytes().all(|b| b == b'0') && frac.bytes().all(|b| b == b'0') => 1,
        "" => return Err(UnitError::NoUnit(text.trim().into())),
        "ms" => 1_000_000,
        "s" => 1_000_000_000,
        "m" => 60_000_000_000,
        "h" => 3_600_000_000_000,
        _ => {
            return Err(UnitError::BadUnit {
                text: text.into(),
                unit: unit.into(),
                kind: Kind::Duration,
            })
        }
    };
    // Exact: whole and fraction in nanoseconds, the fraction cut at 1 ns.
    let overflow = || UnitError::Overflow(text.into());
    let whole: u128 = if whole.is_empty() {
        0
    } else {
        whole.parse().map_err(|_| overflow())?
    };
    let mut nanos = whole.checked_mul(nanos_per_unit).ok_or_else(overflow)?;
    let mut scale = nanos_per_unit;
    for digit in frac.bytes() {
        scale /= 10;
        nanos += u128::from(digit - b'0') * scale;
    }
    let secs = u64::try_from(nanos / 1_000_000_000).map_err(|_| overflow())?;
    Ok(Duration::new(secs, (nanos % 1_000_000_000) as u32))
}

/// Parse a duration that must lie in `range` (inclusive).
pub fn parse_duration_in(
    text: &str,
    range: RangeInclusive<Duration>,
) -> Result<Duration, UnitError> {
    let d = parse_duration(text)?;
    if !range.contains(&d) {
        return Err(UnitError::OutOfRange {
            text: text.trim().into(),
            min: format_duration(*range.start()),
            max: format_duration(*range.end()),
        });
    }
    Ok(d)
}

/// A size exactly, in the largest unit that divides it: `0`, `4095`, `4K`,
/// `1M`, `1G`, as a user would type it.
pub fn format_size(n: u64) -> String {
    for (shift, unit) in [(40, "T"), (30, "G"), (20, "M"), (10, "K")] {
        if n != 0 && n.is_multiple_of(1u64 << shift) {
            return format!("{}{unit}", n >> shift);
        }
    }
    n.to_string()
}

/// A duration exactly, in the largest unit that divides it: `0`, `250ms`,
/// `10s`, `2m`, `24h` (below a millisecond: `1.5ms`).
pub fn format_duration(d: Duration) -> String {
    let nanos = d.as_nanos();
    if nanos == 0 {
        return "0".into();
    }
    for (per, unit) in [
        (3_600_000_000_000, "h"),
        (60_000_000_000, "m"),
        (1_000_000_000, "s"),
        (1_000_000, "ms"),
    ] {
        if nanos.is_multiple_of(per) {
            return format!("{}{unit}", nanos / per);
        }
    }
    format!("{}ms", nanos as f64 / 1e6)
}

/// A byte count in binary units with one decimal, for reports: `512 B`,
/// `64.0 KiB`, `1.5 GiB`.
pub fn format_bytes(n: u64) -> String {
    const UNITS: [&str; 6] = ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut value = n as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn sizes_with_and_without_units() {
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("0"), Ok(0));
        assert_eq!(parse_size("64K"), Ok(64 << 10));
        assert_eq!(parse_size("64k"), Ok(64 << 10));
        assert_eq!(parse_size("64KiB"), Ok(64 << 10));
        assert_eq!(parse_size("64KB"), Ok(64 << 10));
        assert_eq!(parse_size("64Ki"), Ok(64 << 10));
        assert_eq!(parse_size("1M"), Ok(1 << 20));
        assert_eq!(parse_size("1mib"), Ok(1 << 20));
        assert_eq!(parse_size("2G"), Ok(2 << 30));
        assert_eq!(parse_size("1G"), Ok(1 << 30));
        assert_eq!(parse_size("3T"), Ok(3 << 40));
        assert_eq!(parse_size("512B"), Ok(512));
        assert_eq!(parse_size(" 8 K "), Ok(8 << 10));
    }

    #[test]
    fn bad_sizes_are_refused() {
        assert_eq!(parse_size(""), Err(UnitError::Empty(Kind::Size)));
        assert_eq!(parse_size("  "), Err(UnitError::Empty(Kind::Size)));
        let bad = |t: &str| UnitError::BadNumber {
            text: t.into(),
            kind: Kind::Size,
        };
        assert_eq!(parse_size("K"), Err(bad("K")));
        assert_eq!(parse_size("-4K"), Err(bad("-4K")));
        assert_eq!(parse_size("1.5M"), Err(bad("1.5M")));
        assert_eq!(
            parse_size("64X"),
            Err(UnitError::BadUnit {
                text: "64X".into(),
                unit: "X".into(),
                kind: Kind::Size,
            })
        );
        assert!(matches!(parse_size("64KK"), Err(UnitError::BadUnit { .. })));
        assert!(matches!(parse_size("64iB"), Err(UnitError::BadUnit { .. })));
        assert!(matches!(parse_size("10s"), Err(UnitError::BadUnit { .. })));
        assert_eq!(
            parse_size("99999999999999999999"),
            Err(UnitError::Overflow("99999999999999999999".into()))
        );
        assert_eq!(
            parse_size("17179869184G"),
            Err(UnitError::Overflow("17179869184G".into()))
        );
        let msg = parse_size("64X").unwrap_err().to_string();
        assert!(msg.contains("K, M, G or T"), "{msg}");
    }

    #[test]
    fn size_ranges_are_inclusive_and_stated() {
        assert_eq!(parse_size_in("1G", 0..=1 << 30), Ok(1 << 30));
        assert_eq!(parse_size_in("0", 0..=1 << 30), Ok(0));
        let e = parse_size_in("4G", 0..=1 << 30).unwrap_err();
        assert_eq!(
            e,
            UnitError::OutOfRange {
                text: "4G".into(),
                min: "0".into(),
                max: "1G".into()
            }
        );
        assert_eq!(
            e.to_string(),
            "\"4G\" is out of range: must be from 0 to 1G"
        );
        assert!(parse_size_in("4K", 4096..=1 << 40).is_ok());
        assert!(parse_size_in("4095", 4096..=1 << 40).is_err());
        assert_eq!(
            parse_size_multiple("128K", 0..=1 << 30, 1024),
            Ok(128 << 10)
        );
        assert_eq!(
            parse_size_multiple("100", 0..=1 << 30, 1024),
            Err(UnitError::NotMultiple {
                text: "100".into(),
                of: "1K".into()
            })
        );
    }

    #[test]
    fn run_sizes() {
        assert_eq!(parse_run_size("64K"), Ok(65536));
        assert_eq!(parse_run_size("4096"), Ok(4096));
        assert_eq!(parse_run_size("96K"), Ok(96 << 10));
        assert_eq!(parse_run_size("1M"), Ok(1 << 20));
        for bad in ["3000", "2K", "2M", "6K", "0"] {
            assert_eq!(
                parse_run_size(bad),
                Err(UnitError::BadRunSize { text: bad.into() })
            );
        }
        let msg = parse_run_size("3000").unwrap_err().to_string();
        assert!(msg.contains("from 4K to 1M"), "{msg}");
    }

    #[test]
    fn durations_need_a_unit() {
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("250ms"), Ok(250 * MS));
        assert_eq!(parse_duration("1.5s"), Ok(1500 * MS));
        assert_eq!(parse_duration(".5s"), Ok(500 * MS));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("10S"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration(" 3 s "), Ok(Duration::from_secs(3)));
        assert_eq!(parse_duration("0.000000001s"), Ok(Duration::from_nanos(1)));
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        assert_eq!(parse_duration("0s"), Ok(Duration::ZERO));
        assert_eq!(parse_duration("500"), Err(UnitError::NoUnit("500".into())));
        let msg = parse_duration("500").unwrap_err().to_string();
        assert!(msg.contains("ms, s, m or h"), "{msg}");
        assert!(matches!(
            parse_duration("ten"),
            Err(UnitError::BadNumber { .. })
        ));
        assert!(matches!(
            parse_duration("1.2.3s"),
            Err(UnitError::BadNumber { .. })
        ));
        assert!(matches!(
            parse_duration("."),
            Err(UnitError::BadNumber { .. })
        ));
        assert!(matches!(
            parse_duration("-1s"),
            Err(UnitError::BadNumber { .. })
        ));
        assert!(matches!(
            parse_duration("5 parsecs"),
            Err(UnitError::BadUnit { .. })
        ));
        assert!(matches!(
            parse_duration("5K"),
            Err(UnitError::BadUnit { .. })
        ));
        assert_eq!(parse_duration(""), Err(UnitError::Empty(Kind::Duration)));
        assert!(matches!(
            parse_duration("99999999999999999999999999h"),
            Err(UnitError::Overflow(_))
        ));
    }

    #[test]
    fn duration_ranges_are_inclusive_and_stated() {
        let range = 100 * MS..=Duration::from_secs(24 * 3600);
        assert_eq!(
            parse_duration_in("24h", range.clone()),
            Ok(Duration::from_secs(86400))
        );
        assert_eq!(parse_duration_in("100ms", range.clone()), Ok(100 * MS));
        let e = parse_duration_in("0", range.clone()).unwrap_err();
        assert_eq!(
            e.to_string(),
            "\"0\" is out of range: must be from 100ms to 24h"
        );
        assert!(parse_duration_in("25h", range.clone()).is_err());
        assert!(parse_duration_in("99ms", range).is_err());
    }

    #[test]
    fn formatting() {
        assert_eq!(format_size(0), "0");
        assert_eq!(format_size(4095), "4095");
        assert_eq!(format_size(4096), "4K");
        assert_eq!(format_size(1536 << 10), "1536K");
        assert_eq!(format_size(1 << 30), "1G");
        assert_eq!(format_size(2 << 40), "2T");
        assert_eq!(format_duration(Duration::ZERO), "0");
        assert_eq!(format_duration(250 * MS), "250ms");
        assert_eq!(format_duration(Duration::from_secs(10)), "10s");
        assert_eq!(format_duration(Duration::from_secs(90)), "90s");
        assert_eq!(format_duration(Duration::from_secs(120)), "2m");
        assert_eq!(format_duration(Duration::from_secs(86400)), "24h");
        assert_eq!(format_duration(Duration::from_micros(1500)), "1.5ms");
        assert_eq!(format_bytes(0), "0 B");
        assert_eq!(format_bytes(1023), "1023 B");
        assert_eq!(format_bytes(1024), "1.0 KiB");
        assert_eq!(format_bytes(1536 << 10), "1.5 MiB");
        assert_eq!(format_bytes(3 << 30), "3.0 GiB");
        assert_eq!(format_bytes(u64::MAX), "16.0 EiB");
    }

    #[test]
    fn every_formatted_value_parses_back() {
        for n in [0, 1, 4095, 4096, 65536, 1 << 30, 5 << 40, u64::MAX] {
            assert_eq!(parse_size(&format_size(n)), Ok(n), "{n}");
        }
        for d in [
            Duration::ZERO,
            MS,
            250 * MS,
            Duration::from_secs(90),
            Duration::from_secs(86400),
            Duration::from_micros(1500),
        ] {
            assert_eq!(parse_duration(&format_duration(d)), Ok(d), "{d:?}");
        }
    }
}
