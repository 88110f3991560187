//! The requests: the probe that finds a URL's size and version, and the
//! Range read of exactly a run's bytes, with the checks and retries the
//! module documentation describes.

use std::io::Read;
use std::path::PathBuf;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use ureq::http::{HeaderMap, Response};
use ureq::{Body, ResponseExt};

use super::date::parse_http_date;
use super::error::HttpError;
use super::url::Url;
use super::{Client, Remote};
use crate::files::backend::SourceError;
use crate::files::s3::{Object as S3Object, Signed};

/// First and longest pause between retries.
const BACKOFF: (Duration, Duration) = (Duration::from_millis(100), Duration::from_secs(2));

/// What one attempt came to.
enum Failure {
    /// The server went away or stumbled: try again later.
    Retry(HttpError),
    /// No point in trying again.
    Fatal(SourceError),
}

/// A `Content-Range`: the span of bytes (first, last) if given, and the total size if known.
type ContentRange = (Option<(u64, u64)>, Option<u64>);

/// `bytes 0-0/1234` as (Some((0, 0)), Some(1234)); `bytes */1234` as (None, Some(1234)).
fn content_range(headers: &HeaderMap) -> Option<ContentRange> {
    let v = headers.get("content-range")?.to_str().ok()?;
    let v = v.trim().strip_prefix("bytes")?.trim();
    let (span, total) = v.split_once('/')?;
    let total = total.trim().parse().ok();
    let span = match span.trim() {
        "*" => None,
        s => {
            let (a, b) = s.split_once('-')?;
            Some((a.trim().parse().ok()?, b.trim().parse().ok()?))
        }
    };
    Some((span, total))
}

fn header(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

/// Whether an answer's `name` header (`etag`, `last-modified`) says the
/// version `was` found: the same ETag; the same Last-Modified, as text or
/// as the same second (a date taken from a listing is written by us).
fn same_version(name: &str, was: &str, now: Option<&str>) -> bool {
    let Some(now) = now else { return false };
    now == was
        || (name == "last-modified"
            && parse_http_date(now).is_some()
            && parse_http_date(now) == parse_http_date(was))
}

/// A failed request as an error, whether it could be retried or not.
fn request_error(shown: &str, e: ureq::Error) -> HttpError {
    match failure(shown, e) {
        Failure::Retry(e) | Failure::Fatal(SourceError::Http(e)) => e,
        Failure::Fatal(other) => HttpError::BadAnswer {
            url: shown.to_string(),
            detail: other.to_string(),
        },
    }
}

fn failure(shown: &str, e: ureq::Error) -> Failure {
    let url = shown.to_string();
    let retry = |detail: String| {
        Failure::Retry(HttpError::Unreachable {
            url: url.clone(),
            detail,
            waited: None,
        })
    };
    match e {
        ureq::Error::HostNotFound => Failure::Fatal(HttpError::Dns { url }.into()),
        ureq::Error::Tls(detail) => Failure::Fatal(
            HttpError::Tls {
                url,
                detail: detail.to_string(),
            }
            .into(),
        ),
        ureq::Error::Rustls(e) => Failure::Fatal(
            HttpError::Tls {
                url,
                detail: e.to_string(),
            }
            .into(),
        ),
        ureq::Error::Io(io) => match io.get_ref().map(|inner| inner.to_string()) {
            Some(inner)
                if io.kind() == std::io::ErrorKind::InvalidData
                    && (inner.contains("certificate") || inner.contains("TLS")) =>
            {
                Failure::Fatal(HttpError::Tls { url, detail: inner }.into())
            }
            _ if is_dns(&io.to_string()) => Failure::Fatal(HttpError::Dns { url }.into()),
            _ => retry(io.to_string()),
        },
        ureq::Error::Timeout(t) => retry(format!("timed out ({t})")),
        ureq::Error::ConnectionFailed => retry("the connection failed".into()),
        ureq::Error::TooManyRedirects | ureq::Error::RedirectFailed => Failure::Fatal(
            HttpError::BadAnswer {
                url,
                detail: "the redirects do not end (more than 10) or lead nowhere".into(),
            }
            .into(),
        ),
        ureq::Error::BadUri(_) | ureq::Error::Http(_) => Failure::Fatal(
            HttpError::BadAnswer {
                url,
                detail: "the URL or a --header is not valid for a request".into(),
            }
            .into(),
        ),
        other => retry(match other {
            ureq::Error::Protocol(_) => "the answer is not valid HTTP".to_string(),
            _ => "the request failed".to_string(),
        }),
    }
}

/// Whether a resolver's message says the name does not resolve.
fn is_dns(message: &str) -> bool {
    [
        "lookup address",
        "Name or service not known",
        "No address associated",
        "nodename nor servname",
    ]
    .iter()
    .any(|m| message.contains(m))
}

impl Client {
    /// Send `signed` (a GET and its headers), shown as `shown` in errors.
    pub(super) fn get_signed(
        &self,
        shown: &str,
        signed: &Signed,
    ) -> Result<Response<Body>, HttpError> {
        let mut req = self.agent.get(&signed.url);
        for (k, v) in &signed.headers {
            req = req.header(k, v);
        }
        req.call().map_err(|e| request_error(shown, e))
    }

    /// GET `url` with a Range and the push's headers, and `If-Match` when given.
    fn get(
        &self,
        url: &str,
        auth: Option<&str>,
        range: (u64, u64),
        if_match: Option<&str>,
        s3: Option<&S3Object>,
    ) -> Result<Response<Body>, ureq::Error> {
        let range = format!("bytes={}-{}", range.0, range.1);
        let mut req = self.agent.get(url).header("Range", &range);
        if let Some(object) = s3 {
            // Signed for exactly this request: its Range and If-Match too.
            for (k, v) in object.signed_headers(&range, if_match) {
                req = req.header(k, v);
            }
        }
        // A URL's own credentials win over an `Authorization` of --header.
        let own = |k: &str| auth.is_some() && k.eq_ignore_ascii_case("authorization");
        for (k, v) in self.headers.iter().filter(|(k, _)| !own(k)) {
            req = req.header(k, v);
        }
        if let Some(a) = auth {
            req = req.header("Authorization", a);
        }
        if let Some(tag) = if_match {
            req = req.header("If-Match", tag);
        }
        req.call()
    }
}

impl Remote {
    /// Find the size and version of `url` with a one-byte Range request.
    pub fn probe(client: &Arc<Client>, url: &str) -> Result<Remote, HttpError> {
        let parsed = Url::parse(url).ok_or_else(|| {
            HttpError::NoName(Url::parse(&format!("{url}x")).map_or("the URL".into(), |u| u.shown))
        })?;
        let auth = parsed.basic_auth();
        Remote::probe_as(
            client,
            parsed.request,
            auth,
            parsed.shown,
            parsed.name,
            None,
        )
    }

    /// The probe of what `request` names, shown as `shown` and served as
    /// `name`; with `s3`, each request is signed for that object.
    pub(super) fn probe_as(
        client: &Arc<Client>,
        request: String,
        auth: Option<String>,
        shown: String,
        name: String,
        s3: Option<Arc<S3Object>>,
    ) -> Result<Remote, HttpError> {
        let fatal = |f: Failure| match f {
            Failure::Retry(e) => e,
            Failure::Fatal(SourceError::Http(e)) => e,
            Failure::Fatal(other) => HttpError::BadAnswer {
                url: shown.clone(),
                detail: other.to_string(),
            },
        };
        let resp = client
            .get(&request, auth.as_deref(), (0, 0), None, s3.as_deref())
            .map_err(|e| fatal(failure(&shown, e)))?;
        let status = resp.status().as_u16();
        let request = match s3 {
            // Signed for its own host: a redirect elsewhere is not followed later.
            Some(_) => request,
            None => resp.get_uri().to_string(),
        };
        let headers = resp.headers().clone();
        drop(resp.into_body().into_reader().read(&mut [0u8; 2]));
        let size = match (status, content_range(&headers)) {
            (206, Some((Some((0, 0)), Some(total)))) => total,
            (416, Some((None, Some(0)))) => 0,
            // An empty object has no byte 0 to send: nginx answers 200, empty.
            (200, _) if header(&headers, "content-length").as_deref() == Some("0") => 0,
            (200, _) => return Err(HttpError::RangeIgnored { url: shown }),
            (206 | 416, _) => {
                return Err(HttpError::BadAnswer {
                    url: shown,
                    detail: "no total size in its Content-Range".into(),
                })
            }
            (status, _) => return Err(HttpError::Status { url: shown, status }),
        };
        let etag = header(&headers, "etag");
        let last_modified = header(&headers, "last-modified");
        if etag.is_none() && last_modified.is_none() {
            log::warn!("{shown}: no ETag or Last-Modified; a store cannot tell a new version of it with the same size");
        }
        Ok(Remote {
            client: client.clone(),
            request,
            auth,
            shown,
            name,
            size,
            etag,
            last_modified,
            s3,
        })
    }

    fn changed(&self, change: String) -> Failure {
        Failure::Fatal(SourceError::Changed {
            path: PathBuf::from(&self.shown),
            change,
        })
    }

    /// One Range request for exactly `buf` at `offset`, tried once.
    pub(super) fn attempt_once(&self, buf: &mut [u8], offset: u64) -> bool {
        self.attempt(buf, offset).is_ok()
    }

    /// One Range request for exactly `buf` at `offset`.
    fn attempt(&self, buf: &mut [u8], offset: u64) -> Result<(), Failure> {
        let url = || self.shown.clone();
        let last = offset + buf.len() as u64 - 1;
        let strong = self.etag.as_deref().filter(|t| !t.starts_with("W/"));
        let resp = self
            .client
            .get(
                &self.request,
                self.auth.as_deref(),
                (offset, last),
                strong,
                self.s3.as_deref(),
            )
            .map_err(|e| failure(&self.shown, e))?;
        let status = resp.status().as_u16();
        let headers = resp.headers();
        match status {
            206 => {}
            200 => {
                return Err(Failure::Fatal(
                    HttpError::RangeIgnored { url: url() }.into(),
                ))
            }
            412 => {
                return Err(
                    self.changed("its ETag no longer matches (412 Precondition Failed)".into())
                )
            }
            416 => return Err(self.changed("it is now shorter (416 Range Not Satisfiable)".into())),
            408 | 425 | 429 | 500..=599 => {
                return Err(Failure::Retry(HttpError::Status { url: url(), status }))
            }
            status => {
                return Err(Failure::Fatal(
                    HttpError::Status { url: url(), status }.into(),
                ))
            }
        }
        let (span, total) = content_range(headers).unwrap_or((None, None));
        if total.is_some_and(|t| t != self.size) {
            let now = total.unwrap_or_default();
            return Err(self.changed(format!("its size went from {} to {now} bytes", self.size)));
        }
        for (name, was) in [("etag", &self.etag), ("last-modified", &self.last_modified)] {
            let Some(was) = was else { continue };
            let now = header(headers, name);
            if !same_version(name, was, now.as_deref()) {
                let now = now.unwrap_or_else(|| "none".into());
                return Err(self.changed(format!("its {name} went from {was} to {now}")));
            }
        }
        if span != Some((offset, last)) {
            return Err(Failure::Fatal(
                HttpError::BadAnswer {
                    url: url(),
                    detail: format!(
                        "asked for bytes {offset}-{last}, got a Content-Range of {span:?}"
                    ),
                }
                .into(),
            ));
        }
        let mut body = resp.into_body().into_reader();
        let mut got = 0;
        while got < buf.len() {
            match body.read(&mut buf[got..]) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(_) => break,
            }
        }
        if got < buf.len() {
            return Err(Failure::Retry(HttpError::ShortBody {
                url: url(),
                expected: buf.len() as u64,
                got: got as u64,
                waited: None,
            }));
        }
        // Reaching the end hands the connection back to the pool.
        drop(body.read(&mut [0u8; 1]));
        Ok(())
    }
}

impl Remote {
    /// Fill `buf` from `offset` with one Range request, retried as the
    /// module documentation says.
    pub(super) fn read_retrying(&self, buf: &mut [u8], offset: u64) -> Result<(), SourceError> {
        if buf.is_empty() {
            return Ok(());
        }
        let start = Instant::now();
        let mut pause = BACKOFF.0;
        let mut warned = false;
        loop {
            match self.attempt(buf, offset) {
                Ok(()) => {
                    if warned {
                        log::warn!("{}: reachable again", self.shown);
                    }
                    return Ok(());
                }
                Err(Failure::Fatal(e)) => return Err(e),
                Err(Failure::Retry(e)) => {
                    let waited = start.elapsed();
                    if waited >= self.client.retry_for {
                        return Err(with_wait(e, waited).into());
                    }
                    if !warned {
                        log::warn!(
                            "{e}; retrying for up to {}s",
                            self.client.retry_for.as_secs()
                        );
                        warned = true;
                    }
                    thread::sleep(pause);
                    pause = (pause * 2).min(BACKOFF.1);
                }
            }
        }
    }
}

/// `e` with how long it was retried.
fn with_wait(e: HttpError, waited: Duration) -> HttpError {
    match e {
        HttpError::Unreachable { url, detail, .. } => HttpError::Unreachable {
            url,
            detail,
            waited: Some(waited),
        },
        HttpError::ShortBody {
            url, expected, got, ..
        } => HttpError::ShortBody {
            url,
            expected,
            got,
            waited: Some(waited),
        },
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, v.parse().unwrap());
        }
        h
    }

    #[test]
    fn content_ranges_give_the_span_and_the_total() {
        let h = headers(&[("content-range", "bytes 4096-8191/10000")]);
        assert_eq!(content_range(&h), Some((Some((4096, 8191)), Some(10000))));
        let h = headers(&[("content-range", "bytes */0")]);
        assert_eq!(content_range(&h), Some((None, Some(0))));
        let h = headers(&[("content-range", "bytes 0-0/*")]);
        assert_eq!(content_range(&h), Some((Some((0, 0)), None)));
        assert_eq!(content_range(&headers(&[])), None);
    }

    #[test]
    fn a_version_is_the_same_etag_or_the_same_second() {
        let date = "Wed, 02 Dec 2026 06:49:03 GMT";
        assert!(same_version("etag", "\"a\"", Some("\"a\"")));
        assert!(!same_version("etag", "\"a\"", Some("\"b\"")));
        assert!(!same_version("etag", "\"a\"", None));
        assert!(same_version("last-modified", date, Some(date)));
        // The same second, written without the day's name.
        assert!(same_version(
            "last-modified",
            date,
            Some("x 02 Dec 2026 06:49:03 GMT")
        ));
        assert!(!same_version(
            "last-modified",
            date,
            Some("Wed, 02 Dec 2026 06:49:04 GMT")
        ));
        assert!(!same_version("last-modified", "garbage", Some("other")));
    }
}
