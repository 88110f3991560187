//! The built-in send order for zip-based packages (APK, JAR, AAR, wheel):
//! what a runtime opening the package reads first, ahead of the stream.
//!
//! Order: the end-of-central-directory record (and its zip64 record, if
//! any), the central directory, then the local headers and data of the
//! entries a runtime opens first (`AndroidManifest.xml`, `resources.arsc`,
//! `classes.dex`, `classes2.dex`, …, then everything under `lib/`), then
//! page 0; everything else follows in file order. A file that is not a
//! zip (no local-header or end-of-directory signature where one must be)
//! gets no order.
//!
//! The parser reads the structure itself and trusts none of it: every
//! offset and length is checked against the file's size before use, sums
//! are checked for overflow, the end record is searched only in the last
//! 64 KiB + 22 bytes, the central directory is read only up to
//! [`MAX_CENTRAL_DIRECTORY`] bytes (beyond that its entries are not looked
//! at), and entries are parsed only as far as the directory's bytes go.
//! Malformed input gives no order or a partial one, never a panic.

use std::io;

use byteorder::{ByteOrder, LittleEndian as LE};
use feedfs_protocol::{page_count, PAGE_SHIFT};

/// Largest central directory parsed for entries.
pub const MAX_CENTRAL_DIRECTORY: u64 = 64 << 20;

const LOCAL: [u8; 4] = *b"PK\x03\x04";
const CENTRAL: [u8; 4] = *b"PK\x01\x02";
const END: [u8; 4] = *b"PK\x05\x06";
const END64: [u8; 4] = *b"PK\x06\x06";
const LOCATOR64: [u8; 4] = *b"PK\x06\x07";
const END_LEN: u64 = 22;
const MAX_COMMENT: u64 = 65_535;

/// One central directory entry, as far as ordering needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct ZipEntry {
    name: String,
    local_offset: u64,
    compressed: u64,
}

/// Byte ranges `[start, end)` of a zip in the order they should be sent;
/// `None` when the data is not a zip. `read_at` fills a buffer from an
/// offset (the whole buffer, or an error).
pub fn zip_order(
    size: u64,
    read_at: &mut dyn FnMut(u64, &mut [u8]) -> io::Result<()>,
) -> io::Result<Option<Vec<(u64, u64)>>> {
    if size < END_LEN {
        return Ok(None);
    }
    let mut magic = [0u8; 4];
    read_at(0, &mut magic)?;
    if magic != LOCAL && magic != END {
        return Ok(None);
    }
    let tail_len = size.min(END_LEN + MAX_COMMENT);
    let tail_start = size - tail_len;
    let mut tail = vec![0u8; tail_len as usize];
    read_at(tail_start, &mut tail)?;
    // The last end record whose comment runs exactly to the end of the file.
    let Some(end_at) = (0..=tail.len() - END_LEN as usize).rev().find(|&i| {
        tail[i..i + 4] == END
            && i + END_LEN as usize + LE::read_u16(&tail[i + 20..i + 22]) as usize == tail.len()
    }) else {
        return Ok(None);
    };
    let end = &tail[end_at..end_at + END_LEN as usize];
    let end_off = tail_start + end_at as u64;
    let mut entries = u64::from(LE::read_u16(&end[10..12]));
    let mut cd_size = u64::from(LE::read_u32(&end[12..16]));
    let mut cd_offset = u64::from(LE::read_u32(&end[16..20]));
    let mut records_start = end_off;
    if entries == 0xffff || cd_size == 0xffff_ffff || cd_offset == 0xffff_ffff {
        // Zip64: the locator sits just before the end record.
        let Some(loc_off) = end_off.checked_sub(20) else {
            return Ok(None);
        };
        let mut loc = [0u8; 20];
        read_at(loc_off, &mut loc)?;
        if loc[..4] != LOCATOR64 {
            return Ok(None);
        }
        let rec_off = LE::read_u64(&loc[8..16]);
        if rec_off.checked_add(56).is_none_or(|e| e > loc_off) {
            return Ok(None);
        }
        let mut rec = [0u8; 56];
        read_at(rec_off, &mut rec)?;
        if rec[..4] != END64 {
            return Ok(None);
        }
        entries = LE::read_u64(&rec[32..40]);
        cd_size = LE::read_u64(&rec[40..48]);
        cd_offset = LE::read_u64(&rec[48..56]);
        records_start = rec_off;
    }
    if cd_offset
        .checked_add(cd_size)
        .is_none_or(|e| e > records_start)
    {
        return Ok(None);
    }
    let mut order = vec![(records_start, size), (cd_offset, cd_offset + cd_size)];
    if cd_size <= MAX_CENTRAL_DIRECTORY {
        let mut cd = vec![0u8; cd_size as usize];
        read_at(cd_offset, &mut cd)?;
        let parsed = parse_central(&cd, entries);
        order.extend(first_entries(&parsed, cd_offset));
    }
    order.push((0, 1));
    Ok(Some(order))
}

/// Entries of a central directory, as far as its bytes and `entries` go.
fn parse_central(cd: &[u8], entries: u64) -> Vec<ZipEntry> {
    let mut out = Vec::new();
    let mut at = 0usize;
    while (out.len() as u64) < entries {
        let Some(fixed) = cd.get(at..at + 46) else {
            break;
        };
        if fixed[..4] != CENTRAL {
            break;
        }
        let name_len = LE::read_u16(&fixed[28..30]) as usize;
        let extra_len = LE::read_u16(&fixed[30..32]) as usize;
        let comment_len = LE::read_u16(&fixed[32..34]) as usize;
        let Some(name) = cd.get(at + 46..at + 46 + name_len) else {
            break;
        };
        let Some(extra) = cd.get(at + 46 + name_len..at + 46 + name_len + extra_len) else {
            break;
        };
        let mut uncompressed = u64::from(LE::read_u32(&fixed[24..28]));
        let mut compressed = u64::from(LE::read_u32(&fixed[20..24]));
        let mut local_offset = u64::from(LE::read_u32(&fixed[42..46]));
        // Zip64 extended information: the values that overflowed, in order.
        let mut e = extra;
        while e.len() >= 4 {
            let (id, len) = (LE::read_u16(&e[0..2]), LE::read_u16(&e[2..4]) as usize);
            let Some(data) = e.get(4..4 + len) else { break };
            if id == 1 {
                let mut vals = data.chunks_exact(8).map(LE::read_u64);
                for v in [&mut uncompressed, &mut compressed, &mut local_offset] {
                    if *v == 0xffff_ffff {
                        if let Some(x) = vals.next() {
                            *v = x;
                        }
                    }
                }
            }
            e = &e[4 + len..];
        }
        out.push(ZipEntry {
            name: String::from_utf8_lossy(name).into_owned(),
            local_offset,
            compressed,
        });
        at += 46 + name_len + extra_len + comment_len;
    }
    out
}

/// Where a runtime starts: 0 manifest, 1 resources, 2 dex (by number), 3 native libraries.
fn priority(name: &str) -> Option<(u8, u64)> {
    match name {
        "AndroidManifest.xml" => return Some((0, 0)),
        "resources.arsc" => return Some((1, 0)),
        _ => {}
    }
    if let Some(n) = name
        .strip_prefix("classes")
        .and_then(|r| r.strip_suffix(".dex"))
    {
        if n.is_empty() {
            return Some((2, 1));
        }
        if let Ok(k) = n.parse::<u64>() {
            return Some((2, k));
        }
    }
    name.starts_with("lib/").then_some((3, 0))
}

/// Byte spans of the first entries, from each local header to the next
/// header (or the central directory), in start order.
fn first_entries(entries: &[ZipEntry], cd_offset: u64) -> Vec<(u64, u64)> {
    let mut starts: Vec<u64> = entries
        .iter()
        .map(|e| e.local_offset)
        .filter(|&o| o < cd_offset)
        .collect();
    starts.sort_unstable();
    starts.dedup();
    let mut chosen: Vec<((u8, u64), u64, &ZipEntry)> = entries
        .iter()
        .filter(|e| e.local_offset < cd_offset)
        .filter_map(|e| priority(&e.name).map(|p| (p, e.local_offset, e)))
        .collect();
    chosen.sort_by_key(|&(p, off, _)| (p, off));
    chosen
        .into_iter()
        .map(|(_, start, e)| {
            let next = starts
                .get(starts.partition_point(|&s| s <= start))
                .copied()
                .unwrap_or(cd_offset);
            // Header, name, extra, data and a data descriptor at most.
            let most = start
                .saturating_add(30 + 2 * 65_535 + 24)
                .saturating_add(e.compressed);
            (start, next.min(most))
        })
        .collect()
}

/// The zip order of a file, read with `read(offset, buf)`, in pages: ranges (first page, count)
/// in order; `None` for anything that is not a zip or cannot be read.
pub fn zip_pages(
    read: &mut impl FnMut(u64, &mut [u8]) -> io::Result<()>,
    size: u64,
) -> Option<Vec<(u64, u64)>> {
    let ranges = match zip_order(size, read) {
        Ok(r) => r?,
        Err(e) => {
            log::debug!("zip order: {e}");
            return None;
        }
    };
    let pages = page_count(size);
    Some(
        ranges
            .into_iter()
            .filter(|(s, e)| e > s)
            .map(|(s, e)| (s >> PAGE_SHIFT, page_count(e).min(pages)))
            .filter(|(f, e)| e > f)
            .map(|(f, e)| (f, e - f))
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs::File;
    use std::os::unix::fs::FileExt;

    /// A stored (uncompressed) zip of these entries, as zip tools write it.
    pub(crate) fn build_zip(entries: &[(&str, Vec<u8>)]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut central = Vec::new();
        for (name, data) in entries {
            let offset = out.len() as u32;
            let crc = crc32fast::hash(data);
            let mut h = Vec::new();
            h.extend_from_slice(&LOCAL);
            h.extend_from_slice(&[20, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
            h.extend_from_slice(&crc.to_le_bytes());
            h.extend_from_slice(&(data.len() as u32).to_le_bytes());
            h.extend_from_slice(&(data.len() as u32).to_le_bytes());
            h.extend_from_slice(&(name.len() as u16).to_le_bytes());
            h.extend_from_slice(&[0, 0]);
            out.extend_from_slice(&h);
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(data);
            let mut c = Vec::new();
            c.extend_from_slice(&CENTRAL);
            c.extend_from_slice(&[20, 0, 20, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
            c.extend_from_slice(&crc.to_le_bytes());
            c.extend_from_slice(&(data.len() as u32).to_le_bytes());
            c.extend_from_slice(&(data.len() as u32).to_le_bytes());
            c.extend_from_slice(&(name.len() as u16).to_le_bytes());
            c.extend_from_slice(&[0; 12]);
            c.extend_from_slice(&offset.to_le_bytes());
            c.extend_from_slice(name.as_bytes());
            central.extend_from_slice(&c);
        }
        let cd_offset = out.len() as u32;
        out.extend_from_slice(&central);
        out.extend_from_slice(&END);
        out.extend_from_slice(&[0, 0, 0, 0]);
        out.extend_from_slice(&(entries.len() as u16).to_le_bytes());
        out.extend_from_slice(&(entries.len() as u16).to_le_bytes());
        out.extend_from_slice(&(central.len() as u32).to_le_bytes());
        out.extend_from_slice(&cd_offset.to_le_bytes());
        out.extend_from_slice(&[0, 0]);
        out
    }

    fn order_of(data: &[u8]) -> Option<Vec<(u64, u64)>> {
        let mut read = |off: u64, buf: &mut [u8]| -> io::Result<()> {
            let end = off as usize + buf.len();
            let src = data
                .get(off as usize..end)
                .ok_or(io::ErrorKind::UnexpectedEof)?;
            buf.copy_from_slice(src);
            Ok(())
        };
        zip_order(data.len() as u64, &mut read).unwrap()
    }

    #[test]
    fn an_apk_gets_its_directory_then_the_entries_a_runtime_opens() {
        let zip = build_zip(&[
            ("assets/big.bin", vec![1; 5000]),
            ("classes2.dex", vec![2; 300]),
            ("lib/arm64-v8a/libx.so", vec![3; 700]),
            ("AndroidManifest.xml", vec![4; 100]),
            ("classes.dex", vec![5; 400]),
            ("resources.arsc", vec![6; 200]),
        ]);
        let order = order_of(&zip).unwrap();
        let local = |name: &str| {
            let at = zip
                .windows(name.len())
                .position(|w| w == name.as_bytes())
                .unwrap();
            (at - 30) as u64
        };
        let len = zip.len() as u64;
        let starts: Vec<u64> = order.iter().map(|r| r.0).collect();
        assert_eq!(order[0].1, len, "the end record runs to the end");
        assert_eq!(
            starts[2..],
            [
                local("AndroidManifest.xml"),
                local("resources.arsc"),
                local("classes.dex"),
                local("classes2.dex"),
                local("lib/arm64-v8a/libx.so"),
                0
            ]
        );
        // Each entry's span ends where the next local header starts.
        assert_eq!(order[2].1, local("classes.dex"));
        assert_eq!(order[7], (0, 1), "then page 0");
    }

    #[test]
    fn not_a_zip_and_damaged_zips_give_no_order_and_never_panic() {
        assert_eq!(order_of(b"hello, this is not a zip file at all"), None);
        assert_eq!(order_of(b"PK"), None);
        let zip = build_zip(&[("AndroidManifest.xml", vec![0; 10])]);
        // No end record.
        assert_eq!(order_of(&zip[..zip.len() - 22]), None);
        // A directory offset past the end.
        let mut bad = zip.clone();
        let n = bad.len();
        bad[n - 6..n - 2].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(
            order_of(&bad),
            None,
            "0xffffffff asks for zip64, which is absent"
        );
        let mut bad = zip.clone();
        bad[n - 6..n - 2].copy_from_slice(&1_000_000u32.to_le_bytes());
        assert_eq!(order_of(&bad), None);
        // Every truncation and every single-byte corruption: no panic.
        for cut in 0..zip.len() {
            let _ = order_of(&zip[..cut]);
        }
        for i in 0..zip.len() {
            let mut z = zip.clone();
            z[i] ^= 0xff;
            let _ = order_of(&z);
        }
        // Entries claiming more than the directory holds are cut short.
        let mut z = zip.clone();
        z[n - 12..n - 10].copy_from_slice(&500u16.to_le_bytes());
        assert!(order_of(&z).is_some());
    }

    #[test]
    fn pages_from_bytes() {
        let zip = build_zip(&[("a", vec![0; 9000]), ("classes.dex", vec![1; 100])]);
        let dir = crate::testutil::TempDir::new("zip");
        let p = dir.write("x.apk", &zip);
        let f = File::open(&p).unwrap();
        let mut read = |off: u64, buf: &mut [u8]| f.read_exact_at(buf, off);
        let pages = zip_pages(&mut read, zip.len() as u64).unwrap();
        // End record and directory in the last page (2), classes.dex in page 2, then 0.
        assert_eq!(pages, vec![(2, 1), (2, 1), (2, 1), (0, 1)]);
        let f = File::open(dir.write("plain", &[7; 100])).unwrap();
        let mut read = |off: u64, buf: &mut [u8]| f.read_exact_at(buf, off);
        assert_eq!(zip_pages(&mut read, 100), None);
    }
}
