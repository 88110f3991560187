//! An S3 `ListObjectsV2` answer, parsed: the objects under a prefix, and
//! the token for the next page of them.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use quick_xml::events::Event;
use quick_xml::Reader;

/// One object of a listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    pub key: String,
    pub size: u64,
    /// As the server gave it, quotes included.
    pub etag: String,
    pub last_modified: Option<SystemTime>,
}

/// One page of a listing.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ListPage {
    pub objects: Vec<Listed>,
    /// Set when more objects follow: pass it as `continuation-token`.
    pub next: Option<String>,
}

/// Why a listing could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ListError {
    #[error("the listing is not well-formed XML: {0}")]
    Xml(String),
    #[error("an object of the listing has no {0}")]
    Missing(&'static str),
    #[error("an object's size is not a number: {0:?}")]
    BadSize(String),
    #[error("the listing says more objects follow but gives no continuation token")]
    NoToken,
}

/// Parse a `ListBucketResult` document.
pub fn parse(xml: &str) -> Result<ListPage, ListError> {
    let mut reader = Reader::from_str(xml);
    let mut page = ListPage::default();
    let mut path: Vec<String> = Vec::new();
    let mut fields: [Option<String>; 4] = Default::default();
    let mut truncated = false;
    loop {
        match reader.read_event() {
            Err(e) => return Err(ListError::Xml(e.to_string())),
            Ok(Event::Eof) => break,
            Ok(Event::Start(e)) => {
                path.push(String::from_utf8_lossy(e.local_name().as_ref()).into_owned());
            }
            Ok(Event::End(_)) => {
                if path.len() == 2 && path[1] == "Contents" {
                    page.objects.push(object(std::mem::take(&mut fields))?);
                }
                path.pop();
            }
            Ok(Event::Text(t)) => {
                let text = t.decode().map_err(|e| ListError::Xml(e.to_string()))?;
                text_at(&path, &text, &mut fields, &mut page, &mut truncated);
            }
            Ok(Event::GeneralRef(r)) => {
                let resolved = match r.resolve_char_ref() {
                    Ok(Some(c)) => c.to_string(),
                    Ok(None) => {
                        let name = r.decode().map_err(|e| ListError::Xml(e.to_string()))?;
                        quick_xml::escape::resolve_predefined_entity(&name)
                            .ok_or_else(|| ListError::Xml(format!("unknown entity &{name};")))?
                            .to_string()
                    }
                    Err(e) => return Err(ListError::Xml(e.to_string())),
                };
                text_at(&path, &resolved, &mut fields, &mut page, &mut truncated);
            }
            Ok(_) => {}
        }
    }
    if truncated && page.next.is_none() {
        return Err(ListError::NoToken);
    }
    if !truncated {
        page.next = None;
    }
    Ok(page)
}

/// Text (or a resolved entity) found inside the elements `path`.
fn text_at(
    path: &[String],
    text: &str,
    fields: &mut [Option<String>; 4],
    page: &mut ListPage,
    truncated: &mut bool,
) {
    match path.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        [_, "Contents", field] => {
            let slot = match field {
                "Key" => 0,
                "Size" => 1,
                "ETag" => 2,
                "LastModified" => 3,
                _ => return,
            };
            fields[slot].get_or_insert_with(String::new).push_str(text);
        }
        [_, "IsTruncated"] => *truncated = text.trim() == "true",
        [_, "NextContinuationToken"] => page.next.get_or_insert_with(String::new).push_str(text),
        _ => {}
    }
}

fn object(fields: [Option<String>; 4]) -> Result<Listed, ListError> {
    let [key, size, etag, modified] = fields;
    let size = size.ok_or(ListError::Missing("Size"))?;
    Ok(Listed {
        key: key.ok_or(ListError::Missing("Key"))?,
        size: size.trim().parse().map_err(|_| ListError::BadSize(size))?,
        etag: etag.unwrap_or_default(),
        last_modified: modified.as_deref().and_then(parse_iso8601),
    })
}

/// `2009-10-12T17:50:30.000Z` (UTC, fraction optional) as a time.
pub fn parse_iso8601(s: &str) -> Option<SystemTime> {
    let s = s.trim().strip_suffix('Z')?;
    let (date, time) = s.split_once('T')?;
    let mut d = date.splitn(3, '-').map(|p| p.parse::<i64>().ok());
    let (y, m, day) = (d.next()??, d.next()??, d.next()??);
    let (hms, frac) = time.split_once('.').unwrap_or((time, ""));
    let mut t = hms.splitn(3, ':').map(|p| p.parse::<i64>().ok());
    let (hh, mm, ss) = (t.next()??, t.next()??, t.next()??);
    if !(1..=12).contains(&m) || !(1..=31).contains(&day) || hh > 23 || mm > 59 || ss > 60 {
        return None;
    }
    // Days from the civil date (the inverse of the one the stamps use).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = u64::try_from(days * 86_400 + hh * 3600 + mm * 60 + ss).ok()?;
    let nanos = if frac.is_empty() {
        0
    } else {
        let digits: String = frac.chars().take(9).collect();
        digits.parse::<u64>().ok()? * 10u64.pow(9 - digits.len() as u32)
    };
    Some(UNIX_EPOCH + Duration::from_secs(secs) + Duration::from_nanos(nanos))
}

#[cfg(test)]
mod tests {
    use super::*;

    const PAGE: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">
  <Name>bucket</Name><Prefix>imgs/</Prefix><KeyCount>2</KeyCount>
  <IsTruncated>true</IsTruncated>
  <NextContinuationToken>1ueGcxLPRx1Tr/XYExHnhbYLgveDs2J/wm36Hy4vbOwM=</NextContinuationToken>
  <Contents>
    <Key>imgs/a &amp; b.img</Key>
    <LastModified>2009-10-12T17:50:30.000Z</LastModified>
    <ETag>&quot;fba9dede5f27731c9771645a39863328&quot;</ETag>
    <Size>434234</Size>
    <StorageClass>STANDARD</StorageClass>
  </Contents>
  <Contents>
    <Key>imgs/sub/c.bin</Key><Size>0</Size>
  </Contents>
</ListBucketResult>"#;

    #[test]
    fn objects_their_stamps_and_the_next_token() {
        let page = parse(PAGE).unwrap();
        assert_eq!(page.objects.len(), 2);
        let a = &page.objects[0];
        assert_eq!(a.key, "imgs/a & b.img");
        assert_eq!(a.size, 434_234);
        assert_eq!(a.etag, "\"fba9dede5f27731c9771645a39863328\"");
        assert_eq!(
            a.last_modified,
            Some(UNIX_EPOCH + Duration::from_secs(1_255_369_830))
        );
        assert_eq!(page.objects[1].key, "imgs/sub/c.bin");
        assert_eq!(page.objects[1].last_modified, None);
        assert_eq!(
            page.next.as_deref(),
            Some("1ueGcxLPRx1Tr/XYExHnhbYLgveDs2J/wm36Hy4vbOwM=")
        );
    }

    #[test]
    fn the_last_page_has_no_token_and_bad_listings_are_refused() {
        let last = PAGE.replace("<IsTruncated>true", "<IsTruncated>false");
        assert_eq!(parse(&last).unwrap().next, None);
        let no_token = PAGE.replace("NextContinuationToken", "Other");
        assert!(matches!(parse(&no_token), Err(ListError::NoToken)));
        let bad_size = PAGE.replace("434234", "lots");
        assert!(matches!(parse(&bad_size), Err(ListError::BadSize(_))));
        let no_key = PAGE.replace("<Key>imgs/sub/c.bin</Key>", "");
        assert!(matches!(parse(&no_key), Err(ListError::Missing("Key"))));
        assert!(matches!(parse("<a><b></a>"), Err(ListError::Xml(_))));
    }

    #[test]
    fn times_with_and_without_a_fraction() {
        assert_eq!(
            parse_iso8601("1970-01-02T00:00:01Z"),
            Some(UNIX_EPOCH + Duration::from_secs(86_401))
        );
        assert_eq!(
            parse_iso8601("2024-02-29T12:00:00.5Z"),
            Some(UNIX_EPOCH + Duration::from_millis(1_709_208_000_500))
        );
        assert_eq!(parse_iso8601("2024-13-01T00:00:00Z"), None);
        assert_eq!(parse_iso8601("yesterday"), None);
    }
}
