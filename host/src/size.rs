//! Sizes in human units, both ways: parsing what people type on a command
//! line (`64K`, `1M`, `64KiB`, `4096`) and formatting byte counts for the
//! progress line (`1.5 MiB`).
//!
//! Units are binary multiples (K = 1024). A unit may be followed by an
//! optional `i` and an optional `B` (`K`, `Ki`, `KB`, `KiB`), in either case;
//! a bare `B` means bytes. Fractions are refused, and so is anything that
//! does not fit in a `u64`.

use feedfs_protocol::{MAX_BLOCK_SIZE, MIN_BLOCK_SIZE};

/// Why a size could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SizeError {
    #[error("empty size")]
    Empty,
    #[error(
        "{0:?} is not a size: expected a whole number with an optional unit K, M or G (e.g. 64K)"
    )]
    BadNumber(String),
    #[error(
        "{text:?} has unknown unit {unit:?}: use K, M or G (binary multiples, e.g. 64K or 1MiB)"
    )]
    BadUnit { text: String, unit: String },
    #[error("{0:?} is too large")]
    Overflow(String),
    #[error("block size {0} is not a power of two from {min} to {max}", min = format_bytes(MIN_BLOCK_SIZE.into()), max = format_bytes(MAX_BLOCK_SIZE.into()))]
    BadBlockSize(u64),
}

/// Parse a size such as `4096`, `64K`, `64KiB`, `1M` or `2G` into bytes.
pub fn parse_size(text: &str) -> Result<u64, SizeError> {
    let t = text.trim();
    if t.is_empty() {
        return Err(SizeError::Empty);
    }
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, unit) = t.split_at(split);
    if digits.is_empty() {
        return Err(SizeError::BadNumber(text.into()));
    }
    let n: u64 = digits
        .parse()
        .map_err(|_| SizeError::Overflow(text.into()))?;
    let shift = unit_shift(unit.trim()).ok_or_else(|| {
        if unit.starts_with(['.', ',']) {
            SizeError::BadNumber(text.into())
        } else {
            SizeError::BadUnit {
                text: text.into(),
                unit: unit.trim().into(),
            }
        }
    })?;
    n.checked_mul(1u64 << shift)
        .ok_or_else(|| SizeError::Overflow(text.into()))
}

/// The power of two a unit stands for, or `None` for an unknown unit.
fn unit_shift(unit: &str) -> Option<u32> {
    let lower = unit.to_ascii_lowercase();
    let (prefix, rest) = match lower.chars().next() {
        None => return Some(0),
        Some('b') if lower == "b" => return Some(0),
        Some('k') => (10, &lower[1..]),
        Some('m') => (20, &lower[1..]),
        Some('g') => (30, &lower[1..]),
        Some(_) => return None,
    };
    matches!(rest, "" | "i" | "b" | "ib").then_some(prefix)
}

/// Parse a block size: a size that is a power of two between the protocol's
/// smallest and largest block sizes.
pub fn parse_block_size(text: &str) -> Result<u32, SizeError> {
    let n = parse_size(text)?;
    if !n.is_power_of_two() || !(u64::from(MIN_BLOCK_SIZE)..=u64::from(MAX_BLOCK_SIZE)).contains(&n)
    {
        return Err(SizeError::BadBlockSize(n));
    }
    u32::try_from(n).map_err(|_| SizeError::BadBlockSize(n))
}

/// A byte count in binary units with one decimal: `512 B`, `64.0 KiB`, `1.5 GiB`.
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

    #[test]
    fn plain_numbers_and_units() {
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
        assert_eq!(parse_size("512B"), Ok(512));
        assert_eq!(parse_size(" 8 K "), Ok(8 << 10));
    }

    #[test]
    fn bad_sizes_are_refused() {
        assert_eq!(parse_size(""), Err(SizeError::Empty));
        assert_eq!(parse_size("  "), Err(SizeError::Empty));
        assert_eq!(parse_size("K"), Err(SizeError::BadNumber("K".into())));
        assert_eq!(parse_size("-4K"), Err(SizeError::BadNumber("-4K".into())));
        assert_eq!(parse_size("1.5M"), Err(SizeError::BadNumber("1.5M".into())));
        assert_eq!(
            parse_size("64X"),
            Err(SizeError::BadUnit {
                text: "64X".into(),
                unit: "X".into()
            })
        );
        assert!(matches!(parse_size("64KK"), Err(SizeError::BadUnit { .. })));
        assert!(matches!(parse_size("64iB"), Err(SizeError::BadUnit { .. })));
        assert_eq!(
            parse_size("99999999999999999999"),
            Err(SizeError::Overflow("99999999999999999999".into()))
        );
        assert_eq!(
            parse_size("17179869184G"),
            Err(SizeError::Overflow("17179869184G".into()))
        );
    }

    #[test]
    fn block_sizes() {
        assert_eq!(parse_block_size("64K"), Ok(65536));
        assert_eq!(parse_block_size("4096"), Ok(4096));
        assert_eq!(parse_block_size("1M"), Ok(1 << 20));
        assert_eq!(parse_block_size("3000"), Err(SizeError::BadBlockSize(3000)));
        assert_eq!(parse_block_size("2K"), Err(SizeError::BadBlockSize(2048)));
        assert_eq!(
            parse_block_size("2M"),
            Err(SizeError::BadBlockSize(2 << 20))
        );
        assert_eq!(
            parse_block_size("96K"),
            Err(SizeError::BadBlockSize(96 << 10))
        );
        let msg = SizeError::BadBlockSize(3000).to_string();
        assert!(msg.contains("4.0 KiB") && msg.contains("1.0 MiB"), "{msg}");
    }

    #[test]
    fn formatting() {
        assert_eq!(format_bytes(0), "0 B");
        assert_eq!(format_bytes(1023), "1023 B");
        assert_eq!(format_bytes(1024), "1.0 KiB");
        assert_eq!(format_bytes(1536 << 10), "1.5 MiB");
        assert_eq!(format_bytes(3 << 30), "3.0 GiB");
        assert_eq!(format_bytes(u64::MAX), "16.0 EiB");
    }
}
