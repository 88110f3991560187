//! `s3://` arguments in the walk: an object is a file named by its key's
//! last part; a prefix is a directory named by the prefix's last part (the
//! bucket's name for a whole bucket) holding every object under it, with
//! a directory for each `/`-separated part of their keys. The objects'
//! versions come from the listing, or from probes run side by side
//! ([`crate::files::http::s3::objects`]).

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::UNIX_EPOCH;

use feedfs_protocol::{EntryKind, FileId, Mtime};

use super::{Origin, ServedEntry, SkipReason, Stamp, WalkError, Walker};
use crate::files::http::{s3 as fetch, Client, ClientOptions, HttpError};
use crate::files::s3::list::Listed;
use crate::files::s3::S3Url;

impl Walker {
    /// Walk one `s3://` argument; `top` holds the top-level names so far.
    pub(super) fn s3<'a>(
        &mut self,
        client: &Arc<Client>,
        options: &ClientOptions,
        arg: &str,
        top: &mut HashMap<String, &'a PathBuf>,
        path: &'a PathBuf,
    ) -> Result<(), WalkError> {
        let url = S3Url::parse(arg).map_err(|e| HttpError::S3(e.to_string()))?;
        let bucket = fetch::bucket(options, &url)?;
        let trimmed = url.key.trim_end_matches('/');
        let name = match trimmed.rsplit('/').next() {
            Some(n) if !n.is_empty() => n.to_string(),
            _ => url.bucket.clone(),
        };
        if let Some(first) = top.insert(name.clone(), path) {
            return Err(WalkError::Duplicate {
                name,
                first: first.clone(),
                second: path.clone(),
            });
        }
        if !url.is_prefix() {
            let remote = fetch::probe(client, &bucket, &url.key, &name)?;
            return self.remote(remote);
        }
        let objects = fetch::list_prefix(client, &bucket, &url.key)?;
        let newest = objects
            .iter()
            .filter_map(|o| o.last_modified)
            .max()
            .unwrap_or(UNIX_EPOCH);
        // The objects served, with their key's parts; then their versions,
        // from the listing or probed in parallel; then the entries, in key order.
        let mut served: Vec<(&Listed, Vec<&str>)> = Vec::new();
        for object in &objects {
            let Some(rest) = object.key.strip_prefix(&url.key) else {
                continue;
            };
            // A key ending in `/` is a folder marker of the consoles, not a file.
            if rest.is_empty() || rest.ends_with('/') {
                continue;
            }
            let parts: Vec<&str> = rest.split('/').collect();
            if parts
                .iter()
                .any(|p| p.is_empty() || *p == "." || *p == "..")
            {
                self.skip(
                    PathBuf::from(format!("s3://{}/{}", url.bucket, object.key)),
                    SkipReason::KeyNotAPath,
                );
                continue;
            }
            served.push((object, parts));
        }
        let named: Vec<(&Listed, &str)> = served
            .iter()
            .map(|(o, parts)| (*o, parts[parts.len() - 1]))
            .collect();
        let remotes = fetch::objects(client, &bucket, &named)?;
        let mut dirs: HashSet<String> = HashSet::new();
        self.s3_dir(arg, &name, newest)?;
        dirs.insert(name.clone());
        for ((_, parts), remote) in served.iter().zip(remotes) {
            let mut rel = name.clone();
            for part in &parts[..parts.len() - 1] {
                rel = format!("{rel}/{part}");
                if dirs.insert(rel.clone()) {
                    self.s3_dir(arg, &rel, newest)?;
                }
            }
            rel = format!("{rel}/{}", parts[parts.len() - 1]);
            self.remote_at(remote, rel)?;
        }
        Ok(())
    }

    /// A directory of an S3 prefix: read-only, dated by its newest object.
    fn s3_dir(
        &mut self,
        arg: &str,
        rel: &str,
        mtime: std::time::SystemTime,
    ) -> Result<(), WalkError> {
        self.push(ServedEntry {
            id: FileId(0),
            kind: EntryKind::Dir,
            path: rel.to_string(),
            source: PathBuf::from(arg),
            size: 0,
            mode: 0o555,
            mtime: Mtime::of(mtime),
            identity: [0; 16],
            target: String::new(),
            stamp: Stamp::default(),
            origin: Origin::Local,
        })
    }
}
