//! S3 objects over the HTTP client: an object is probed and read like any
//! URL, each request signed for exactly what it asks
//! ([`crate::files::s3::Object`]); a
//! prefix is listed page by page. The pure parts (signing, credentials,
//! the listing's XML) are [`crate::files::s3`]'s.

use std::io::Read;
use std::sync::Arc;
use std::time::SystemTime;

use super::error::HttpError;
use super::{Client, ClientOptions, Remote};
use crate::files::s3::list::{self, Listed};
use crate::files::s3::{creds, Bucket, Endpoint, Object, S3Url};

/// Largest listing page read (S3 sends at most 1000 keys a page, far less).
const MAX_LISTING: u64 = 64 << 20;

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
