//! A Run's way through the session: checked against the manifest, decoded
//! (LZ4) into the session's buffer, bounded by the manifest's length for
//! it, and each page hashed once and compared with the CRC it came with,
//! before the Core sees it.
//!
//! A run outside the manifest, or raw data of another length than the
//! manifest gives, is a protocol error. LZ4 data that does not decode, and
//! a page that does not match its CRC (the frame checksum does not cover
//! the data), are damage: those pages are demanded again, and the good
//! pages of the same run still land.

use feedfs_protocol::message::{decode_run, DecodeError, Encoding};
use feedfs_protocol::{FileId, PageCrcs, PAGE_SIZE};

use super::Pages;
use crate::serve::core::LandError;
use crate::store::zero_crc;

/// Where a checked run's bytes are.
pub(super) enum Source {
    /// In the frame (raw data).
    Frame,
    /// In the session's decode buffer (LZ4 data).
    Decoded,
    /// Nowhere: every page is zero.
    Zero,
}

/// Why a run does not go to the Core.
pub(super) enum Refusal {
    /// Its data does not decode to the run: demanded again.
    Undecodable {
        file: FileId,
        first: u64,
        count: u32,
        error: DecodeError,
    },
    /// Refused by the manifest: a protocol error.
    Land(LandError),
}

/// A Run message as it arrived.
pub(super) struct Arrived<'a> {
    pub file: FileId,
    pub first: u64,
    pub count: u32,
    pub encoding: Encoding,
    pub crcs: PageCrcs<'a>,
    pub data: &'a [u8],
}

/// Where checking a run leaves what it found, reused from run to run.
#[derive(Default)]
pub(super) struct RunBuffers {
    /// LZ4 data decoded.
    pub plain: Vec<u8>,
    /// The CRC of each page.
    pub crcs: Vec<u32>,
    /// Whether each page matched its CRC.
    pub good: Vec<bool>,
}

/// Check a run against the manifest (`pages`), decoding LZ4 data into
/// `buf.plain`, bounded by the run's length, and each page against its CRC
/// (`buf.crcs`, `buf.good`).
pub(super) fn check_run(
    r: &Arrived,
    pages: &dyn Pages,
    buf: &mut RunBuffers,
) -> Result<Source, Refusal> {
    let expected = pages
        .run_len(r.file, r.first, u64::from(r.count))
        .map_err(Refusal::Land)?;
    let size_of_page = |i: u64| {
        if i + 1 < u64::from(r.count) {
            PAGE_SIZE as usize
        } else {
            expected - (r.count as usize - 1) * PAGE_SIZE as usize
        }
    };
    buf.crcs.clear();
    buf.good.clear();
    let (source, data) = match r.encoding {
        Encoding::Zero => {
            buf.crcs
                .extend((0..u64::from(r.count)).map(|i| zero_crc(size_of_page(i))));
            buf.good.resize(r.count as usize, true);
            return Ok(Source::Zero);
        }
        Encoding::Raw => (Source::Frame, r.data),
        Encoding::Lz4 => {
            let plain =
                decode_run(r.encoding, r.data, expected, &mut buf.plain).map_err(|error| {
                    Refusal::Undecodable {
                        file: r.file,
                        first: r.first,
                        count: r.count,
                        error,
                    }
                })?;
            (Source::Decoded, plain)
        }
    };
    if data.len() != expected || r.crcs.len() != r.count as usize {
        return Err(Refusal::Land(LandError::BadLength {
            file: r.file,
            first: r.first,
            got: data.len(),
            expected,
        }));
    }
    let mut at = 0;
    for (i, sent) in r.crcs.iter().enumerate() {
        let len = size_of_page(i as u64);
        buf.crcs.push(sent);
        buf.good.push(crc32fast::hash(&data[at..at + len]) == sent);
        at += len;
    }
    Ok(source)
}

/// The runs `(first, count)`, relative to the run's first page, of the
/// pages that failed their check.
pub(super) fn bad_runs(good: &[bool]) -> Vec<(u64, u32)> {
    let mut out: Vec<(u64, u32)> = Vec::new();
    for (i, _) in good.iter().enumerate().filter(|(_, g)| !**g) {
        match out.last_mut() {
            Some((f, c)) if *f + u64::from(*c) == i as u64 => *c += 1,
            _ => out.push((i as u64, 1)),
        }
    }
    out
}
