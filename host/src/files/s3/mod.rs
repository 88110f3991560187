//! S3 and S3-compatible object stores as sources: `s3://bucket/key` (one
//! object) and `s3://bucket/prefix/` (every object under it, as a
//! directory), addressed at an endpoint, each request signed with
//! Signature Version 4 ([`sigv4`]) from credentials found as the AWS tools
//! find them ([`creds`]); a prefix is listed with `ListObjectsV2` ([`list`]).
//!
//! This module builds requests (URL and signed headers); sending them is
//! the HTTP client's ([`crate::files::http::s3`]).

pub mod creds;
pub mod list;
pub mod sigv4;

use std::sync::Arc;
use std::time::SystemTime;

use creds::Credentials;
use sigv4::{canonical_query, encode_path, Request, Signer};

/// `s3://bucket/key`, split.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Url {
    pub bucket: String,
    /// The key, or the prefix when it ends with `/` (or is empty).
    pub key: String,
}

/// Why an `s3://` argument was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum S3UrlError {
    #[error("{0}: an S3 URL is s3://BUCKET/KEY or s3://BUCKET/PREFIX/")]
    Malformed(String),
    #[error("{0}: the bucket name {1:?} is not a valid S3 bucket name")]
    BadBucket(String, String),
}

impl S3Url {
    pub fn parse(arg: &str) -> Result<S3Url, S3UrlError> {
        let rest = arg
            .strip_prefix("s3://")
            .ok_or_else(|| S3UrlError::Malformed(arg.to_string()))?;
        let (bucket, key) = rest.split_once('/').unwrap_or((rest, ""));
        let valid = (3..=63).contains(&bucket.len())
            && bucket
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-')
            && !bucket.starts_with(['.', '-'])
            && !bucket.ends_with(['.', '-']);
        if !valid {
            return Err(S3UrlError::BadBucket(arg.to_string(), bucket.to_string()));
        }
        Ok(S3Url {
            bucket: bucket.to_string(),
            key: key.to_string(),
        })
    }

    /// Whether it names a prefix (a directory) rather than one object.
    pub fn is_prefix(&self) -> bool {
        self.key.is_empty() || self.key.ends_with('/')
    }
}

/// Where the store is and how buckets are addressed there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// `http` or `https`.
    pub scheme: String,
    /// Host and, when not the scheme's default, `:port`.
    pub authority: String,
    /// `http://host/bucket/key` rather than `http://bucket.host/key`.
    pub path_style: bool,
}

impl Endpoint {
    /// Amazon's endpoint for `region` (virtual-hosted addressing), or the
    /// one given (`--endpoint-url`, `AWS_ENDPOINT_URL_S3`,
    /// `AWS_ENDPOINT_URL`). A given endpoint uses path-style addressing
    /// when asked, and always when its host is an IP address or
    /// `localhost` (no bucket subdomains there).
    pub fn new(url: Option<&str>, region: &str, path_style: bool) -> Result<Endpoint, S3UrlError> {
        let Some(url) = url else {
            return Ok(Endpoint {
                scheme: "https".to_string(),
                authority: format!("s3.{region}.amazonaws.com"),
                path_style,
            });
        };
        let bad = || S3UrlError::Malformed(url.to_string());
        let (scheme, rest) = url.split_once("://").ok_or_else(bad)?;
        if scheme != "http" && scheme != "https" {
            return Err(bad());
        }
        let authority = rest.trim_end_matches('/');
        if authority.is_empty() || authority.contains(['/', '@', '?', '#']) {
            return Err(bad());
        }
        let host = match authority.rsplit_once(':') {
            Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) => h,
            _ => authority,
        };
        let ip_or_local = host == "localhost"
            || host.starts_with('[')
            || host.parse::<std::net::Ipv4Addr>().is_ok();
        Ok(Endpoint {
            scheme: scheme.to_string(),
            authority: authority.to_string(),
            path_style: path_style || ip_or_local,
        })
    }
}

/// A request to send: its URL, and the headers to send with it (signed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signed {
    pub url: String,
    pub headers: Vec<(String, String)>,
}

/// Builds signed requests for one bucket.
#[derive(Debug, Clone)]
pub struct Bucket {
    pub name: String,
    pub endpoint: Endpoint,
    signer: Signer,
}

impl Bucket {
    pub fn new(name: &str, endpoint: Endpoint, creds: Credentials, region: &str) -> Bucket {
        Bucket {
            name: name.to_string(),
            endpoint,
            signer: Signer::s3(creds, region),
        }
    }

    fn request(
        &self,
        method: &str,
        key: &str,
        query: &[(&str, &str)],
        headers: &[(&str, &str)],
        now: SystemTime,
    ) -> Signed {
        let (host, path) = if self.endpoint.path_style {
            (
                self.endpoint.authority.clone(),
                encode_path(&format!("/{}/{key}", self.name)),
            )
        } else {
            (
                format!("{}.{}", self.name, self.endpoint.authority),
                encode_path(&format!("/{key}")),
            )
        };
        let mut signed = self.signer.sign(
            &Request {
                method,
                host: &host,
                path: &path,
                query,
                headers,
            },
            now,
        );
        signed.extend(headers.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        let q = canonical_query(query);
        let url = format!(
            "{}://{host}{path}{}{q}",
            self.endpoint.scheme,
            if q.is_empty() { "" } else { "?" }
        );
        Signed {
            url,
            headers: signed,
        }
    }

    /// A `GET` of an object, with the request's own headers (`range`,
    /// `if-match`) signed too.
    pub fn get(&self, key: &str, headers: &[(&str, &str)], now: SystemTime) -> Signed {
        self.request("GET", key, &[], headers, now)
    }

    /// A `HEAD` of an object.
    pub fn head(&self, key: &str, now: SystemTime) -> Signed {
        self.request("HEAD", key, &[], &[], now)
    }

    /// One page of `ListObjectsV2` under `prefix`.
    pub fn list(&self, prefix: &str, token: Option<&str>, now: SystemTime) -> Signed {
        let mut query = vec![("list-type", "2"), ("prefix", prefix)];
        if let Some(t) = token {
            query.push(("continuation-token", t));
        }
        // The bucket itself: an empty key.
        self.request("GET", "", &query, &[], now)
    }
}

/// One object, and the bucket that signs requests for it.
#[derive(Debug)]
pub struct Object {
    bucket: Arc<Bucket>,
    key: String,
}

impl Object {
    pub fn new(bucket: Arc<Bucket>, key: &str) -> Object {
        Object {
            bucket,
            key: key.to_string(),
        }
    }

    /// The signing headers of a GET of this object with `range` (and
    /// `if_match`), which the caller sends itself.
    pub fn signed_headers(&self, range: &str, if_match: Option<&str>) -> Vec<(String, String)> {
        let mut own = vec![("range", range)];
        if let Some(tag) = if_match {
            own.push(("if-match", tag));
        }
        let signed = self.bucket.get(&self.key, &own, SystemTime::now());
        signed
            .headers
            .into_iter()
            .filter(|(k, _)| k != "range" && k != "if-match")
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    fn creds() -> Credentials {
        Credentials {
            access_key: "AKIAIOSFODNN7EXAMPLE".into(),
            secret_key: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY".into(),
            session_token: None,
        }
    }

    #[test]
    fn urls_name_a_bucket_and_a_key_or_a_prefix() {
        let u = S3Url::parse("s3://my-bucket/imgs/app.apk").unwrap();
        assert_eq!(
            (u.bucket.as_str(), u.key.as_str()),
            ("my-bucket", "imgs/app.apk")
        );
        assert!(!u.is_prefix());
        assert!(S3Url::parse("s3://my-bucket/imgs/").unwrap().is_prefix());
        assert!(S3Url::parse("s3://my-bucket").unwrap().is_prefix());
        assert!(matches!(
            S3Url::parse("http://x/y"),
            Err(S3UrlError::Malformed(_))
        ));
        for bad in [
            "s3://UPPER/k",
            "s3://ab/k",
            "s3://-lead/k",
            "s3:///k",
            "s3://a_b/k",
        ] {
            assert!(
                matches!(S3Url::parse(bad), Err(S3UrlError::BadBucket(..))),
                "{bad}"
            );
        }
    }

    #[test]
    fn endpoints_and_how_buckets_are_addressed() {
        let aws = Endpoint::new(None, "eu-west-1", false).unwrap();
        assert_eq!(aws.authority, "s3.eu-west-1.amazonaws.com");
        assert!(!aws.path_style);
        let local = Endpoint::new(Some("http://127.0.0.1:9000/"), "x", false).unwrap();
        assert_eq!(
            (local.scheme.as_str(), local.authority.as_str()),
            ("http", "127.0.0.1:9000")
        );
        assert!(local.path_style);
        assert!(
            Endpoint::new(Some("http://localhost:9000"), "x", false)
                .unwrap()
                .path_style
        );
        assert!(
            !Endpoint::new(Some("https://minio.lab"), "x", false)
                .unwrap()
                .path_style
        );
        assert!(
            Endpoint::new(Some("https://minio.lab"), "x", true)
                .unwrap()
                .path_style
        );
        for bad in ["ftp://h", "minio.lab", "http://u:p@h", "http://h/path"] {
            assert!(Endpoint::new(Some(bad), "x", false).is_err(), "{bad}");
        }
    }

    #[test]
    fn requests_carry_their_url_and_signed_headers() {
        let now = UNIX_EPOCH + Duration::from_secs(1_369_353_600);
        let ep = Endpoint {
            scheme: "https".into(),
            authority: "s3.amazonaws.com".into(),
            path_style: false,
        };
        let b = Bucket::new("examplebucket", ep, creds(), "us-east-1");
        let get = b.get("test.txt", &[("range", "bytes=0-9")], now);
        assert_eq!(get.url, "https://examplebucket.s3.amazonaws.com/test.txt");
        let auth = &get
            .headers
            .iter()
            .find(|(k, _)| k == "authorization")
            .unwrap()
            .1;
        // The published example's signature: the same request.
        assert!(auth.ends_with("f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"));
        assert!(get.headers.contains(&("range".into(), "bytes=0-9".into())));

        let path = Bucket::new(
            "lab",
            Endpoint::new(Some("http://127.0.0.1:9000"), "us-east-1", false).unwrap(),
            creds(),
            "us-east-1",
        );
        assert_eq!(
            path.head("a b/c.img", now).url,
            "http://127.0.0.1:9000/lab/a%20b/c.img"
        );
        assert_eq!(
            path.list("imgs/", Some("t/1="), now).url,
            "http://127.0.0.1:9000/lab/?continuation-token=t%2F1%3D&list-type=2&prefix=imgs%2F"
        );
    }
}
