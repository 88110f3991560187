//! Durations and sizes in human units for the command line: `10s`,
//! `250ms`, `2m`, `1h`, `1.5s`; `128K`, `1M`, `0`.

use std::time::Duration;

/// Parse a duration; a bare number is seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let value: f64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a duration (try 10s, 500ms, 2m)"))?;
    let scale = match unit.trim() {
        "" | "s" | "sec" | "secs" => 1.0,
        "ms" => 1e-3,
        "us" => 1e-6,
        "m" | "min" => 60.0,
        "h" => 3600.0,
        other => {
            return Err(format!(
                "unknown time unit {other:?} in {s:?} (use ms, s, m or h)"
            ))
        }
    };
    let secs = value * scale;
    if !secs.is_finite() || secs <= 0.0 || secs > 1e9 {
        return Err(format!("duration {s:?} is out of range"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// Parse a size in whole KiB: `0`, `128K`, `1M`, `1MiB`, or a byte count
/// that is a multiple of 1024.
pub fn parse_kib(s: &str) -> Result<u32, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a size (try 128K or 1M)"))?;
    let bytes = match unit
        .to_ascii_uppercase()
        .trim_end_matches('B')
        .trim_end_matches('I')
    {
        "" => n,
        "K" => n << 10,
        "M" => n << 20,
        _ => return Err(format!("unknown unit in {s:?} (use K or M)")),
    };
    if bytes % 1024 != 0 || bytes > 1 << 30 {
        return Err(format!("{s:?} must be a whole number of KiB, at most 1G"));
    }
    Ok((bytes >> 10) as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kib() {
        assert_eq!(parse_kib("0"), Ok(0));
        assert_eq!(parse_kib("128K"), Ok(128));
        assert_eq!(parse_kib("1M"), Ok(1024));
        assert_eq!(parse_kib("1MiB"), Ok(1024));
        assert_eq!(parse_kib("4096"), Ok(4));
        assert!(parse_kib("100").is_err());
        assert!(parse_kib("1T").is_err());
        assert!(parse_kib("x").is_err());
    }

    #[test]
    fn units() {
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("10"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("ten").is_err());
        assert!(parse_duration("5 parsecs").is_err());
    }
}
