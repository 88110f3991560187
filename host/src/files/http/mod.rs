//! HTTP(S) URLs as sources: a URL is a file named by its last path
//! segment, fetched by Range requests of exactly the bytes of each run.
//!
//! At the walk, one `Range: bytes=0-0` request (the probe) gives the size
//! (from `Content-Range`), the ETag and Last-Modified, and the URL after
//! redirects, which later requests use. A file's identity is the 128-bit
//! xxh3 of its served name, its size, its ETag and its Last-Modified: a
//! store never resumes from pages of another version of the object. An
//! object with neither header gets a warning: its identity is its size.
//!
//! Every read sends `If-Match` with a strong ETag, and checks each
//! answer's ETag, Last-Modified and total size against the probe's: an
//! object changed on the server stops the push as a
//! [`SourceError::Changed`](crate::files::backend::SourceError::Changed), never a mix of versions. A server that went
//! away (refused connection, reset, timeout, 5xx, a body cut short) is
//! retried with backoff (100 ms doubling to 2 s) for `--retry-for`; 401,
//! 403, 404, 410, 416, a server that ignores Range, a TLS or DNS failure
//! are errors at once. Connections are kept alive and pooled by one
//! [`ureq::Agent`] shared by all URLs of the push, acknowledging what they
//! receive at once ([`tcp`]); the stream's next runs are fetched ahead on
//! several of them at once ([`ahead`]).
//!
//! Secrets stay out of every message: URLs are shown by [`url::Url::shown`],
//! header values (`--header`) are never printed, and ureq's own errors are
//! put into words here rather than shown as they are.

pub mod ahead;
mod date;
#[cfg(test)]
mod double;
pub mod error;
mod fetch;
pub mod s3;
mod tcp;
pub mod url;

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use feedfs_protocol::Mtime;
use ureq::tls::{Certificate, RootCerts, TlsConfig};
use ureq::unversioned::resolver::DefaultResolver;
use ureq::unversioned::transport::{ConnectProxyConnector, Connector, RustlsConnector};
use ureq::Agent;
use xxhash_rust::xxh3::Xxh3Default;

pub use date::parse_http_date;
pub use error::HttpError;
pub use url::is_url;

/// How to fetch: `--header`, `--cacert`, `--retry-for`.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// `Name: value` lines, sent with every request.
    pub headers: Vec<String>,
    /// A PEM file of CA certificates trusted instead of the built-in roots.
    pub cacert: Option<PathBuf>,
    /// How long to retry a server that went away before giving up.
    pub retry_for: Duration,
    /// `--endpoint-url`: the S3-compatible store `s3://` URLs are fetched from.
    pub endpoint_url: Option<String>,
    /// `--path-style`: address S3 buckets as `host/bucket/key`.
    pub path_style: bool,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            headers: Vec::new(),
            cacert: None,
            retry_for: Duration::from_secs(60),
            endpoint_url: None,
            path_style: false,
        }
    }
}

/// The connection pool and the headers every request carries.
pub struct Client {
    agent: Agent,
    headers: Vec<(String, String)>,
    retry_for: Duration,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.headers.iter().map(|h| h.0.as_str()).collect();
        f.debug_struct("Client").field("headers", &names).finish()
    }
}

/// Split `Name: value`, checking the name; the value is never shown.
pub fn parse_header(line: &str) -> Result<(String, String), HttpError> {
    let Some((name, value)) = line.split_once(':') else {
        return Err(HttpError::BadHeader(String::new(), "no ':' in it"));
    };
    let name = name.trim();
    let token = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c);
    if name.is_empty() || !name.chars().all(token) {
        return Err(HttpError::BadHeader(
            name.to_string(),
            "not a valid header name",
        ));
    }
    let value = value.trim();
    if value.chars().any(|c| c.is_control()) {
        return Err(HttpError::BadHeader(
            name.to_string(),
            "control characters in its value",
        ));
    }
    Ok((name.to_string(), value.to_string()))
}

impl Client {
    pub fn new(options: &ClientOptions) -> Result<Client, HttpError> {
        let headers = options
            .headers
            .iter()
            .map(|h| parse_header(h))
            .collect::<Result<Vec<_>, _>>()?;
        let mut tls = TlsConfig::builder();
        if let Some(path) = &options.cacert {
            let ca_err = |detail: String| HttpError::CaFile {
                path: path.clone(),
                detail,
            };
            let pem = std::fs::read(path).map_err(|e| ca_err(e.to_string()))?;
            let certs = ureq::tls::parse_pem(&pem)
                .filter_map(|item| match item {
                    Ok(ureq::tls::PemItem::Certificate(c)) => Some(Ok(c)),
                    Ok(_) => None,
                    Err(e) => Some(Err(e)),
                })
                .collect::<Result<Vec<Certificate<'static>>, _>>()
                .map_err(|e| ca_err(format!("not a PEM file: {e}")))?;
            if certs.is_empty() {
                return Err(ca_err("holds no certificate".into()));
            }
            tls = tls.root_certs(RootCerts::new_with_certs(&certs));
        }
        let config = Agent::config_builder()
            .http_status_as_error(false)
            .max_redirects(10)
            .user_agent(format!("feedfs-host/{}", env!("CARGO_PKG_VERSION")))
            .tls_config(tls.build())
            .timeout_connect(Some(Duration::from_secs(10)))
            .timeout_recv_response(Some(Duration::from_secs(30)))
            .timeout_recv_body(Some(Duration::from_secs(60)))
            .max_idle_connections_per_host(16)
            .build();
        // ureq's default chain with our TCP step ([`tcp`]); no SOCKS proxy.
        let connector =
            ().chain(ConnectProxyConnector::default())
                .chain(tcp::QuickAckConnector)
                .chain(RustlsConnector::default());
        let agent = Agent::with_parts(config, connector, DefaultResolver::default());
        Ok(Client {
            agent,
            headers,
            retry_for: options.retry_for,
        })
    }
}

/// One URL of the push, as the probe found it.
pub struct Remote {
    client: Arc<Client>,
    /// What is requested (after redirects): may hold secrets.
    request: String,
    /// `Authorization` from the URL's user information: a secret.
    auth: Option<String>,
    shown: String,
    name: String,
    size: u64,
    etag: Option<String>,
    last_modified: Option<String>,
    /// For an S3 object: what each request is signed for.
    s3: Option<Arc<crate::files::s3::Object>>,
}

impl fmt::Debug for Remote {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Remote")
            .field("url", &self.shown)
            .field("size", &self.size)
            .field("etag", &self.etag)
            .finish()
    }
}

impl PartialEq for Remote {
    fn eq(&self, other: &Self) -> bool {
        self.request == other.request && self.etag == other.etag && self.size == other.size
    }
}

impl Eq for Remote {}

impl Remote {
    /// The URL without its secrets.
    pub fn shown(&self) -> &str {
        &self.shown
    }

    /// The name it is served under.
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    /// Last-Modified, or 1970 when the server gives none.
    pub fn mtime(&self) -> Mtime {
        let t = self.last_modified.as_deref().and_then(parse_http_date);
        Mtime::of(t.unwrap_or(std::time::UNIX_EPOCH))
    }

    /// The identity of the object, served as `rel`; see the module documentation.
    pub fn identity(&self, rel: &str) -> [u8; 16] {
        let mut h = Xxh3Default::new();
        h.update(b"http");
        for part in [
            rel,
            self.etag.as_deref().unwrap_or(""),
            self.last_modified.as_deref().unwrap_or(""),
        ] {
            h.update(&(part.len() as u64).to_le_bytes());
            h.update(part.as_bytes());
        }
        h.update(&self.size.to_le_bytes());
        h.digest128().to_le_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_are_split_and_their_values_never_shown() {
        assert_eq!(
            parse_header("Authorization:  Bearer t0ken ").unwrap(),
            ("Authorization".to_string(), "Bearer t0ken".to_string())
        );
        let err = parse_header("Bad Name: t0ken").unwrap_err().to_string();
        assert!(
            err.contains("not a valid header name") && !err.contains("t0ken"),
            "{err}"
        );
        let err = parse_header("Bearer t0ken").unwrap_err().to_string();
        assert!(err.contains("no ':'") && !err.contains("t0ken"), "{err}");
    }

    #[test]
    fn errors_name_the_url_and_what_to_do() {
        let e = HttpError::Status {
            url: "https://h/a.img".into(),
            status: 404,
        };
        assert_eq!(
            e.to_string(),
            "https://h/a.img: the server answered 404 Not Found: no object at this URL"
        );
        let e = HttpError::Unreachable {
            url: "http://h/a".into(),
            detail: "connection refused".into(),
            waited: Some(Duration::from_secs(60)),
        };
        assert!(
            e.to_string()
                .ends_with("(retried for 60s; raise --retry-for to wait longer)"),
            "{e}"
        );
    }

    #[test]
    fn a_missing_ca_file_is_named() {
        let err = Client::new(&ClientOptions {
            cacert: Some(PathBuf::from("/nonexistent/ca.pem")),
            ..ClientOptions::default()
        })
        .unwrap_err();
        assert!(
            err.to_string()
                .starts_with("--cacert /nonexistent/ca.pem: "),
            "{err}"
        );
    }
}
