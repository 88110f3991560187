//! S3 objects over the HTTP client: an object is probed and read like any
//! URL, each request signed for exactly what it asks
//! ([`crate::files::s3::Object`]); a
//! prefix is listed page by page. The pure parts (signing, credentials,
//! the listing's XML) are [`crate::files::s3`]'s.
//!
//! The objects of a prefix take their size, ETag and Last-Modified from the
//! listing when it gives all three (S3 does), with no request of their own;
//! each read still sends `If-Match` with that ETag and checks the answer's,
//! so an object changed since the listing is caught as after a probe. A
//! listing without ETags (s3s-fs gives none) has its objects probed,
//! [`PROBES`] at a time.

use std::io::Read;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread;
use std::time::SystemTime;

use super::date::format_http_date;
use super::error::HttpError;
use super::{Client, ClientOptions, Remote};
use crate::files::s3::list::{self, Listed};
use crate::files::s3::{creds, Bucket, Endpoint, Object, S3Url};

/// Largest listing page read (S3 sends at most 1000 keys a page, far less).
const MAX_LISTING: u64 = 64 << 20;

/// Probes under way at once for the objects of a listing without ETags.
pub const PROBES: usize = 8;

/// The bucket of `url`, at the endpoint of `options` (or of
/// `AWS_ENDPOINT_URL_S3`, `AWS_ENDPOINT_URL`), with the credentials and
/// region of the environment.
pub fn bucket(options: &ClientOptions, url: &S3Url) -> Result<Arc<Bucket>, HttpError> {
    let (creds, region) = creds::from_environment().map_err(|e| HttpError::S3(e.to_string()))?;
    let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    let endpoint_url = options
        .endpoint_url
        .clone()
        .or_else(|| var("AWS_ENDPOINT_URL_S3"))
        .or_else(|| var("AWS_ENDPOINT_URL"));
    let endpoint = Endpoint::new(endpoint_url.as_deref(), &region, options.path_style)
        .map_err(|e| HttpError::S3(e.to_string()))?;
    Ok(Arc::new(Bucket::new(&url.bucket, endpoint, creds, &region)))
}

/// `s3://bucket/key`, as shown in messages (no secrets in it).
fn shown(bucket: &Bucket, key: &str) -> String {
    format!("s3://{}/{key}", bucket.name)
}

/// Probe object `key`, to be served as `name`.
pub fn probe(
    client: &Arc<Client>,
    bucket: &Arc<Bucket>,
    key: &str,
    name: &str,
) -> Result<Remote, HttpError> {
    let object = Arc::new(Object::new(bucket.clone(), key));
    let request = bucket.get(key, &[], SystemTime::now()).url;
    Remote::probe_as(
        client,
        request,
        None,
        shown(bucket, key),
        name.to_string(),
        Some(object),
    )
}

/// Object `listed`, served as `name`, as its listing describes it; `None`
/// when the listing lacks its ETag or date, which only a probe then gives.
fn from_listing(
    client: &Arc<Client>,
    bucket: &Arc<Bucket>,
    listed: &Listed,
    name: &str,
) -> Option<Remote> {
    let modified = listed.last_modified?;
    if listed.etag.is_empty() {
        return None;
    }
    Some(Remote {
        client: client.clone(),
        request: bucket.get(&listed.key, &[], SystemTime::now()).url,
        auth: None,
        shown: shown(bucket, &listed.key),
        name: name.to_string(),
        size: listed.size,
        etag: Some(listed.etag.clone()),
        last_modified: Some(format_http_date(modified)),
        s3: Some(Arc::new(Object::new(bucket.clone(), &listed.key))),
    })
}

/// The objects `listed` of a prefix, each with the name it is served as,
/// in their order: from the listing where it says enough, else probed
/// [`PROBES`] at a time. The first error (in their order) is returned.
pub fn objects(
    client: &Arc<Client>,
    bucket: &Arc<Bucket>,
    listed: &[(&Listed, &str)],
) -> Result<Vec<Remote>, HttpError> {
    let found: Vec<Mutex<Option<Result<Remote, HttpError>>>> = listed
        .iter()
        .map(|(l, name)| Mutex::new(from_listing(client, bucket, l, name).map(Ok)))
        .collect();
    let next = AtomicUsize::new(0);
    let probe_next = || loop {
        let i = next.fetch_add(1, Ordering::Relaxed);
        let Some(slot) = found.get(i) else { return };
        let mut slot = slot.lock().unwrap_or_else(PoisonError::into_inner);
        if slot.is_none() {
            let (l, name) = listed[i];
            *slot = Some(probe(client, bucket, &l.key, name));
        }
    };
    let missing = found
        .iter()
        .filter(|s| s.lock().unwrap_or_else(PoisonError::into_inner).is_none())
        .count();
    thread::scope(|scope| {
        for _ in 0..missing.min(PROBES) {
            let spawned = thread::Builder::new()
                .name("feedfs-s3-probe".into())
                .spawn_scoped(scope, probe_next);
            if spawned.is_err() {
                break;
            }
        }
    });
    found
        .into_iter()
        .zip(listed)
        .map(|(slot, (l, name))| {
            let slot = slot.into_inner().unwrap_or_else(PoisonError::into_inner);
            // A probe thread that could not start leaves its objects to us.
            slot.unwrap_or_else(|| probe(client, bucket, &l.key, name))
        })
        .collect()
}

/// Every object under `prefix`, in key order, page after page.
pub fn list_prefix(
    client: &Client,
    bucket: &Bucket,
    prefix: &str,
) -> Result<Vec<Listed>, HttpError> {
    let url = shown(bucket, prefix);
    let mut out = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let signed = bucket.list(prefix, token.as_deref(), SystemTime::now());
        let resp = client.get_signed(&url, &signed)?;
        let status = resp.status().as_u16();
        if status != 200 {
            return Err(HttpError::Status { url, status });
        }
        let mut text = String::new();
        resp.into_body()
            .into_reader()
            .take(MAX_LISTING)
            .read_to_string(&mut text)
            .map_err(|e| HttpError::BadAnswer {
                url: url.clone(),
                detail: format!("cannot read the listing: {e}"),
            })?;
        let page = list::parse(&text).map_err(|e| HttpError::BadAnswer {
            url: url.clone(),
            detail: e.to_string(),
        })?;
        out.extend(page.objects);
        match page.next {
            Some(t) => token = Some(t),
            None => return Ok(out),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;
    use crate::files::s3::creds::Credentials;

    fn bucket() -> Arc<Bucket> {
        let endpoint = Endpoint::new(Some("http://127.0.0.1:9"), "us-east-1", true).unwrap();
        let creds = Credentials {
            access_key: "k".into(),
            secret_key: "s".into(),
            session_token: None,
        };
        Arc::new(Bucket::new("lab", endpoint, creds, "us-east-1"))
    }

    fn listed(etag: &str, modified: Option<SystemTime>) -> Listed {
        Listed {
            key: "imgs/a.img".into(),
            size: 12_345,
            etag: etag.into(),
            last_modified: modified,
        }
    }

    #[test]
    fn a_listing_with_etag_and_date_gives_the_version_a_probe_would() {
        let client = Arc::new(Client::new(&ClientOptions::default()).unwrap());
        let at = UNIX_EPOCH + Duration::from_millis(1_796_194_143_138);
        let r = from_listing(&client, &bucket(), &listed("\"abc\"", Some(at)), "a.img").unwrap();
        assert_eq!(r.size(), 12_345);
        assert_eq!(r.name(), "a.img");
        assert_eq!(r.shown(), "s3://lab/imgs/a.img");
        assert_eq!(r.etag.as_deref(), Some("\"abc\""));
        assert_eq!(
            r.last_modified.as_deref(),
            Some("Wed, 02 Dec 2026 06:49:03 GMT")
        );
        assert_eq!(r.request, "http://127.0.0.1:9/lab/imgs/a.img");
        assert!(r.s3.is_some());
    }

    #[test]
    fn a_listing_without_etag_or_date_leaves_the_object_to_a_probe() {
        let client = Arc::new(Client::new(&ClientOptions::default()).unwrap());
        let b = bucket();
        assert!(from_listing(&client, &b, &listed("", Some(UNIX_EPOCH)), "a").is_none());
        assert!(from_listing(&client, &b, &listed("\"abc\"", None), "a").is_none());
    }
}
