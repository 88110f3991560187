//! Why a URL cannot be served, in words that name the URL (never its
//! secrets) and say what to do.

use std::path::PathBuf;
use std::time::Duration;

/// Why a URL cannot be served. Every URL in here is [`Remote::shown`](super::Remote::shown).
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("{0} has no file name to serve it under (its path must end in a name, as in https://host/dir/disk.img)")]
    NoName(String),
    #[error("{url}: the server answered {status}{}", status_hint(*.status))]
    Status { url: String, status: u16 },
    #[error("{url}: the server ignores Range requests (it answered 200 with the whole body); feedfs fetches by range, so serve the file from a server that supports them")]
    RangeIgnored { url: String },
    #[error("{url}: the body ended after {got} of the {expected} bytes announced{}", retried(.waited))]
    ShortBody {
        url: String,
        expected: u64,
        got: u64,
        waited: Option<Duration>,
    },
    #[error("{url}: TLS failed: {detail} (a private CA needs --cacert FILE)")]
    Tls { url: String, detail: String },
    #[error("{url}: the host name does not resolve (DNS)")]
    Dns { url: String },
    #[error("{url}: cannot reach the server: {detail}{}", retried(.waited))]
    Unreachable {
        url: String,
        detail: String,
        waited: Option<Duration>,
    },
    #[error("{url}: the server's answer is not usable: {detail}")]
    BadAnswer { url: String, detail: String },
    #[error("--header {0:?}: {1}; give it as 'Name: value'")]
    BadHeader(String, &'static str),
    #[error("S3: {0}")]
    S3(String),
    #[error("--cacert {}: {detail}", .path.display())]
    CaFile { path: PathBuf, detail: String },
}

fn status_hint(status: u16) -> &'static str {
    match status {
        401 => " Unauthorized: credentials are missing or wrong (--header 'Authorization: …', or user:password@ in the URL)",
        403 => " Forbidden: the credentials do not allow this object, or a signed URL expired",
        404 => " Not Found: no object at this URL",
        410 => " Gone: the object was removed",
        412 => " Precondition Failed: the object changed",
        416 => " Range Not Satisfiable: the object is shorter than announced",
        500..=599 => ": a server error",
        _ => "",
    }
}

fn retried(waited: &Option<Duration>) -> String {
    match waited {
        Some(w) => format!(
            " (retried for {}s; raise --retry-for to wait longer)",
            w.as_secs()
        ),
        None => String::new(),
    }
}
