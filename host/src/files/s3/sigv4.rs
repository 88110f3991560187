//! AWS Signature Version 4 for S3 requests: the canonical request, the
//! string to sign, the signing key and the headers that carry them.
//!
//! Pure: the time is passed in. Every request feedfs sends has an empty
//! body, so the payload hash is that of nothing (S3 checks it, so it is
//! sent in `x-amz-content-sha256` and signed).

use std::fmt::Write as _;
use std::time::{SystemTime, UNIX_EPOCH};

use ring::{digest, hmac};

use super::creds::Credentials;

/// The SHA-256 of an empty body, in hex.
pub const EMPTY_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

/// What is signed of one request.
#[derive(Debug, Clone)]
pub struct Request<'a> {
    pub method: &'a str,
    /// The `Host` header as sent: the host, and `:port` when not the scheme's default.
    pub host: &'a str,
    /// The path as sent, already percent-encoded ([`encode_path`]).
    pub path: &'a str,
    /// Query parameters, not encoded.
    pub query: &'a [(&'a str, &'a str)],
    /// Further headers sent and signed, such as `range` or `if-match`.
    pub headers: &'a [(&'a str, &'a str)],
}

/// Signs requests for one region and service with one set of credentials.
#[derive(Debug, Clone)]
pub struct Signer {
    pub creds: Credentials,
    pub region: String,
    pub service: String,
}

impl Signer {
    pub fn s3(creds: Credentials, region: &str) -> Signer {
        Signer {
            creds,
            region: region.to_string(),
            service: "s3".to_string(),
        }
    }

    /// The headers to add to `req` at time `now`: `x-amz-date`,
    /// `x-amz-content-sha256`, `x-amz-security-token` with a session
    /// token, and `authorization`. (`Host` and the request's own headers
    /// are sent as they are.)
    pub fn sign(&self, req: &Request, now: SystemTime) -> Vec<(String, String)> {
        let amz_date = amz_date(now);
        let day = &amz_date[..8];
        let mut added = vec![
            ("x-amz-content-sha256".to_string(), EMPTY_SHA256.to_string()),
            ("x-amz-date".to_string(), amz_date.clone()),
        ];
        if let Some(token) = &self.creds.session_token {
            added.push(("x-amz-security-token".to_string(), token.clone()));
        }
        let mut headers: Vec<(String, String)> = vec![("host".to_string(), req.host.to_string())];
        headers.extend(
            req.headers
                .iter()
                .map(|(k, v)| (k.to_ascii_lowercase(), v.trim().to_string())),
        );
        headers.extend(added.iter().cloned());
        headers.sort();
        let signed: Vec<&str> = headers.iter().map(|(k, _)| k.as_str()).collect();
        let signed = signed.join(";");
        let mut canonical = format!(
            "{}\n{}\n{}\n",
            req.method,
            req.path,
            canonical_query(req.query)
        );
        for (k, v) in &headers {
            let _ = writeln!(canonical, "{k}:{v}");
        }
        let _ = write!(canonical, "\n{signed}\n{EMPTY_SHA256}");
        let scope = format!("{day}/{}/{}/aws4_request", self.region, self.service);
        let to_sign = format!(
            "AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{}",
            hex(digest::digest(&digest::SHA256, canonical.as_bytes()).as_ref())
        );
        let mut key = format!("AWS4{}", self.creds.secret_key).into_bytes();
        for part in [day, &self.region, &self.service, "aws4_request"] {
            key = mac(&key, part.as_bytes());
        }
        let signature = hex(&mac(&key, to_sign.as_bytes()));
        added.push((
            "authorization".to_string(),
            format!(
                "AWS4-HMAC-SHA256 Credential={}/{scope},SignedHeaders={signed},Signature={signature}",
                self.creds.access_key
            ),
        ));
        added
    }
}

fn mac(key: &[u8], data: &[u8]) -> Vec<u8> {
    let k = hmac::Key::new(hmac::HMAC_SHA256, key);
    hmac::sign(&k, data).as_ref().to_vec()
}

fn hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(2 * bytes.len());
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// Percent-encode as SigV4 wants: everything but `A-Z a-z 0-9 - _ . ~`,
/// and `/` too unless `keep_slash`.
pub fn encode(s: &str, keep_slash: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for &b in s.as_bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            b'/' if keep_slash => out.push('/'),
            _ => {
                let _ = write!(out, "%{b:02X}");
            }
        }
    }
    out
}

/// An object key's path, `/` kept: `/bucket/my key` -> `/bucket/my%20key`.
pub fn encode_path(path: &str) -> String {
    encode(path, true)
}

/// The query string as signed and as sent: each name and value encoded,
/// sorted by name, then value.
pub fn canonical_query(query: &[(&str, &str)]) -> String {
    let mut pairs: Vec<(String, String)> = query
        .iter()
        .map(|(k, v)| (encode(k, false), encode(v, false)))
        .collect();
    pairs.sort();
    let parts: Vec<String> = pairs.iter().map(|(k, v)| format!("{k}={v}")).collect();
    parts.join("&")
}

/// `now` as `YYYYMMDDTHHMMSSZ`.
pub fn amz_date(now: SystemTime) -> String {
    let secs = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()) as i128;
    let (days, rest) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (y, m, d) = crate::files::stamp::civil_date(days);
    format!(
        "{y:04}{m:02}{d:02}T{:02}{:02}{:02}Z",
        rest / 3600,
        rest / 60 % 60,
        rest % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// The example key pair and time of Amazon's published SigV4 examples for S3.
    fn example() -> (Signer, SystemTime) {
        let creds = Credentials {
            access_key: "AKIAIOSFODNN7EXAMPLE".to_string(),
            secret_key: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY".to_string(),
            session_token: None,
        };
        // 2013-05-24T00:00:00Z
        (
            Signer::s3(creds, "us-east-1"),
            UNIX_EPOCH + Duration::from_secs(1_369_353_600),
        )
    }

    fn authorization(h: &[(String, String)]) -> &str {
        &h.iter().find(|(k, _)| k == "authorization").unwrap().1
    }

    #[test]
    fn a_ranged_get_is_signed_as_in_the_published_example() {
        let (signer, now) = example();
        let h = signer.sign(
            &Request {
                method: "GET",
                host: "examplebucket.s3.amazonaws.com",
                path: "/test.txt",
                query: &[],
                headers: &[("Range", "bytes=0-9")],
            },
            now,
        );
        assert_eq!(
            authorization(&h),
            "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request,\
             SignedHeaders=host;range;x-amz-content-sha256;x-amz-date,\
             Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"
        );
        assert!(h.contains(&("x-amz-date".to_string(), "20130524T000000Z".to_string())));
        assert!(h.contains(&("x-amz-content-sha256".to_string(), EMPTY_SHA256.to_string())));
    }

    #[test]
    fn a_listing_with_a_query_is_signed_as_in_the_published_example() {
        let (signer, now) = example();
        let h = signer.sign(
            &Request {
                method: "GET",
                host: "examplebucket.s3.amazonaws.com",
                path: "/",
                query: &[("prefix", "J"), ("max-keys", "2")],
                headers: &[],
            },
            now,
        );
        assert!(authorization(&h).ends_with(
            "Signature=34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7"
        ));
    }

    #[test]
    fn a_session_token_is_sent_and_signed() {
        let (mut signer, now) = example();
        signer.creds.session_token = Some("tok".to_string());
        let h = signer.sign(
            &Request {
                method: "GET",
                host: "h",
                path: "/",
                query: &[],
                headers: &[],
            },
            now,
        );
        assert!(h.contains(&("x-amz-security-token".to_string(), "tok".to_string())));
        assert!(authorization(&h).contains("x-amz-date;x-amz-security-token,"));
    }

    #[test]
    fn keys_and_queries_are_encoded_as_signed() {
        assert_eq!(encode_path("/b/a key+é/~x"), "/b/a%20key%2B%C3%A9/~x");
        assert_eq!(
            canonical_query(&[("prefix", "a/b c"), ("list-type", "2")]),
            "list-type=2&prefix=a%2Fb%20c"
        );
        assert_eq!(canonical_query(&[]), "");
    }

    #[test]
    fn dates_are_in_the_basic_format_in_utc() {
        let t = UNIX_EPOCH + Duration::from_secs(1_764_633_600 + 3 * 3600 + 4 * 60 + 5);
        assert_eq!(amz_date(t), "20251202T030405Z");
    }
}
