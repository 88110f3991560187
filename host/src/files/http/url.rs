//! A URL as the host takes it from the command line: the name it is served
//! under, the form that may be shown (no secrets), and the credentials in
//! its user information, which go into an `Authorization` header instead.
//!
//! What may be shown drops the user information and the whole query
//! (`?…` in its place): query strings carry signatures and tokens (S3
//! presigned URLs, CDN tokens). The fragment is never sent.

/// Whether a command-line argument is an HTTP(S) URL rather than a path.
pub fn is_url(arg: &str) -> bool {
    let lower = arg.get(..8).unwrap_or(arg).to_ascii_lowercase();
    lower.starts_with("http://") || lower.starts_with("https://")
}

/// A URL split into what is requested, what is shown and what is hidden.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Url {
    /// The URL to request: without user information and fragment.
    pub request: String,
    /// The URL without user information and query, for messages.
    pub shown: String,
    /// The last path segment, percent-decoded: the file's name.
    pub name: String,
    /// `user:password` from the user information, if any.
    pub userinfo: Option<String>,
}

impl Url {
    /// Split `url`; `None` when it has no host or no last path segment.
    pub fn parse(url: &str) -> Option<Url> {
        let (scheme, rest) = url.split_once("://")?;
        let rest = rest.split('#').next().unwrap_or_default();
        let path_at = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, path_query) = rest.split_at(path_at);
        let (userinfo, host) = match authority.rsplit_once('@') {
            Some((u, h)) => (Some(percent_decode(u)), h),
            None => (None, authority),
        };
        if host.is_empty() {
            return None;
        }
        let (path, query) = match path_query.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (path_query, None),
        };
        let name = percent_decode(path.rsplit('/').next().unwrap_or_default());
        if name.is_empty() || name == "." || name == ".." {
            return None;
        }
        let scheme = scheme.to_ascii_lowercase();
        let hidden = if query.is_some_and(|q| !q.is_empty()) {
            "?…"
        } else {
            ""
        };
        Some(Url {
            request: format!("{scheme}://{host}{path_query}"),
            shown: format!("{scheme}://{host}{path}{hidden}"),
            name,
            userinfo,
        })
    }

    /// The `Authorization` header value for the user information, if any.
    pub fn basic_auth(&self) -> Option<String> {
        self.userinfo
            .as_ref()
            .map(|u| format!("Basic {}", base64(u.as_bytes())))
    }
}

/// `%41` as `A`; invalid escapes and bytes that are not UTF-8 kept as they are.
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).unwrap_or_else(|_| s.to_string())
}

/// Standard base64 with padding (RFC 4648), for Basic credentials.
fn base64(data: &[u8]) -> String {
    const ABC: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = u32::from(b[0]) << 16 | u32::from(b[1]) << 8 | u32::from(b[2]);
        for k in 0..4 {
            if k <= chunk.len() {
                out.push(char::from(ABC[(n >> (18 - 6 * k) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_told_from_paths() {
        assert!(is_url("http://h/a"));
        assert!(is_url("HTTPS://h/a"));
        assert!(!is_url("./http://h/a"));
        assert!(!is_url("/dev/loop0"));
        assert!(!is_url("ftp://h/a"));
    }

    #[test]
    fn a_plain_url_is_named_by_its_last_segment() {
        let u = Url::parse("http://127.0.0.1:8080/builds/app%20v2.apk").unwrap();
        assert_eq!(u.name, "app v2.apk");
        assert_eq!(u.request, "http://127.0.0.1:8080/builds/app%20v2.apk");
        assert_eq!(u.shown, "http://127.0.0.1:8080/builds/app%20v2.apk");
        assert_eq!(u.basic_auth(), None);
    }

    #[test]
    fn user_information_and_query_never_reach_what_is_shown() {
        let u =
            Url::parse("https://bob:s3cret@host/x/disk.img?X-Amz-Signature=abc&e=1#frag").unwrap();
        assert_eq!(u.name, "disk.img");
        assert_eq!(u.request, "https://host/x/disk.img?X-Amz-Signature=abc&e=1");
        assert_eq!(u.shown, "https://host/x/disk.img?…");
        assert!(!u.shown.contains("s3cret") && !u.shown.contains("abc"));
        assert_eq!(u.basic_auth().unwrap(), "Basic Ym9iOnMzY3JldA==");
    }

    #[test]
    fn a_url_without_a_file_name_is_refused() {
        assert_eq!(Url::parse("http://host/"), None);
        assert_eq!(Url::parse("http://host"), None);
        assert_eq!(Url::parse("http:///a"), None);
        assert_eq!(Url::parse("http://host/a/.."), None);
    }

    #[test]
    fn base64_pads_to_whole_quads() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"foob"), "Zm9vYg==");
    }
}
