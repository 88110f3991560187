//! Where S3 credentials and the region come from, as the AWS tools look
//! for them: the environment, then the shared credentials and config files
//! of a profile.
//!
//! Order (the first that gives a key pair wins):
//! 1. `AWS_ACCESS_KEY_ID` and `AWS_SECRET_ACCESS_KEY` (with
//!    `AWS_SESSION_TOKEN` if set);
//! 2. the profile `AWS_PROFILE` (default `default`) in
//!    `AWS_SHARED_CREDENTIALS_FILE` (default `~/.aws/credentials`), then in
//!    `AWS_CONFIG_FILE` (default `~/.aws/config`, where sections are
//!    `[profile NAME]`, and `[default]`).
//!
//! The region: `AWS_REGION`, `AWS_DEFAULT_REGION`, the profile's `region`,
//! else `us-east-1`. A secret is never printed: [`Credentials`]'s `Debug`
//! shows the access key id only.

use std::fmt;
use std::path::PathBuf;

/// A key pair, and a session token for temporary credentials.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub access_key: String,
    pub secret_key: String,
    pub session_token: Option<String>,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("access_key", &self.access_key)
            .field("secret_key", &"(hidden)")
            .field(
                "session_token",
                &self.session_token.as_ref().map(|_| "(hidden)"),
            )
            .finish()
    }
}

/// Why no credentials were found.
#[derive(Debug, thiserror::Error)]
pub enum CredsError {
    #[error(
        "no S3 credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or give profile \
         '{profile}' an aws_access_key_id and aws_secret_access_key in {files}"
    )]
    Missing { profile: String, files: String },
    #[error("cannot read {}: {error}", .path.display())]
    Read {
        path: PathBuf,
        error: std::io::Error,
    },
}

/// Credentials and region, found with `env` (a variable's value, or
/// `None`) and `read` (a file's text, `Ok(None)` when it does not exist).
pub fn find(
    env: &dyn Fn(&str) -> Option<String>,
    read: &dyn Fn(&PathBuf) -> std::io::Result<Option<String>>,
) -> Result<(Credentials, String), CredsError> {
    let var = |k: &str| env(k).filter(|v| !v.is_empty());
    let profile = var("AWS_PROFILE").unwrap_or_else(|| "default".to_string());
    let home = var("HOME").map(PathBuf::from).unwrap_or_default();
    let creds_path = var("AWS_SHARED_CREDENTIALS_FILE")
        .map(PathBuf::from)
        .unwrap_or_else(|| home.join(".aws/credentials"));
    let config_path = var("AWS_CONFIG_FILE")
        .map(PathBuf::from)
        .unwrap_or_else(|| home.join(".aws/config"));
    let load = |path: &PathBuf, section: &str| -> Result<Vec<(String, String)>, CredsError> {
        let text = read(path).map_err(|error| CredsError::Read {
            path: path.clone(),
            error,
        })?;
        Ok(text.map(|t| ini_section(&t, section)).unwrap_or_default())
    };
    let config_section = if profile == "default" {
        "default".to_string()
    } else {
        format!("profile {profile}")
    };
    let mut in_files = load(&creds_path, &profile)?;
    in_files.extend(load(&config_path, &config_section)?);
    let from_files = |k: &str| {
        in_files
            .iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.clone())
    };
    let region = var("AWS_REGION")
        .or_else(|| var("AWS_DEFAULT_REGION"))
        .or_else(|| from_files("region"))
        .unwrap_or_else(|| "us-east-1".to_string());
    let creds = match (var("AWS_ACCESS_KEY_ID"), var("AWS_SECRET_ACCESS_KEY")) {
        (Some(access_key), Some(secret_key)) => Credentials {
            access_key,
            secret_key,
            session_token: var("AWS_SESSION_TOKEN"),
        },
        _ => match (
            from_files("aws_access_key_id"),
            from_files("aws_secret_access_key"),
        ) {
            (Some(access_key), Some(secret_key)) => Credentials {
                access_key,
                secret_key,
                session_token: from_files("aws_session_token"),
            },
            _ => {
                return Err(CredsError::Missing {
                    profile,
                    files: format!("{} or {}", creds_path.display(), config_path.display()),
                })
            }
        },
    };
    Ok((creds, region))
}

/// Credentials and region from this process's environment and files.
pub fn from_environment() -> Result<(Credentials, String), CredsError> {
    find(
        &|k| std::env::var(k).ok(),
        &|p| match std::fs::read_to_string(p) {
            Ok(t) => Ok(Some(t)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        },
    )
}

/// The `key = value` lines of section `[name]` of an INI text (keys
/// lower-cased; comments `#` and `;` skipped).
fn ini_section(text: &str, name: &str) -> Vec<(String, String)> {
    let mut inside = false;
    let mut out = Vec::new();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(head) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            inside = head.trim() == name;
            continue;
        }
        if inside {
            if let Some((k, v)) = line.split_once('=') {
                out.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn run(
        vars: &[(&str, &str)],
        files: &[(&str, &str)],
    ) -> Result<(Credentials, String), CredsError> {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let files: HashMap<PathBuf, String> = files
            .iter()
            .map(|(k, v)| (PathBuf::from(k), v.to_string()))
            .collect();
        find(&|k| vars.get(k).cloned(), &|p| Ok(files.get(p).cloned()))
    }

    #[test]
    fn the_environment_comes_first() {
        let (c, region) = run(
            &[
                ("HOME", "/h"),
                ("AWS_ACCESS_KEY_ID", "AK"),
                ("AWS_SECRET_ACCESS_KEY", "SK"),
                ("AWS_SESSION_TOKEN", "T"),
                ("AWS_DEFAULT_REGION", "eu-west-3"),
            ],
            &[(
                "/h/.aws/credentials",
                "[default]\naws_access_key_id=FILE\naws_secret_access_key=FILE\n",
            )],
        )
        .unwrap();
        assert_eq!((c.access_key.as_str(), c.secret_key.as_str()), ("AK", "SK"));
        assert_eq!(c.session_token.as_deref(), Some("T"));
        assert_eq!(region, "eu-west-3");
    }

    #[test]
    fn a_named_profile_is_read_from_both_files() {
        let (c, region) = run(
            &[("HOME", "/h"), ("AWS_PROFILE", "lab")],
            &[
                (
                    "/h/.aws/credentials",
                    "[default]\naws_access_key_id = D\naws_secret_access_key = D\n\
                     # a comment\n[lab]\nAWS_ACCESS_KEY_ID = L\naws_secret_access_key = LS\n",
                ),
                ("/h/.aws/config", "[profile lab]\nregion = ap-south-1\n"),
            ],
        )
        .unwrap();
        assert_eq!((c.access_key.as_str(), c.secret_key.as_str()), ("L", "LS"));
        assert_eq!(c.session_token, None);
        assert_eq!(region, "ap-south-1");
    }

    #[test]
    fn files_named_by_the_environment_and_the_default_region() {
        let (c, region) = run(
            &[("AWS_SHARED_CREDENTIALS_FILE", "/etc/c")],
            &[(
                "/etc/c",
                "[default]\naws_access_key_id=A\naws_secret_access_key=S\n",
            )],
        )
        .unwrap();
        assert_eq!(c.access_key, "A");
        assert_eq!(region, "us-east-1");
    }

    #[test]
    fn none_found_says_where_it_looked_and_a_secret_is_never_shown() {
        let e = run(&[("HOME", "/h"), ("AWS_ACCESS_KEY_ID", "only")], &[]).unwrap_err();
        let text = e.to_string();
        assert!(text.contains("AWS_SECRET_ACCESS_KEY") && text.contains("/h/.aws/credentials"));
        let c = Credentials {
            access_key: "AK".into(),
            secret_key: "very-secret".into(),
            session_token: Some("tok-secret".into()),
        };
        let shown = format!("{c:?}");
        assert!(shown.contains("AK") && !shown.contains("secret\"") && !shown.contains("very"));
        assert!(!shown.contains("tok-secret"));
    }
}
