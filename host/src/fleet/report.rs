//! What a push says about its devices at the end: one line per device
//! (its summary, or why it failed), a closing line over all of them, and
//! the `--json` summary. Pure: results in, text out.

use std::time::Duration;

use serde_json::json;

use crate::fleet::targets::{Device, Reach};
use crate::send::progress::{summary, Outcome};
use crate::send::session::Summary;

/// How one device's push ended.
#[derive(Debug, Clone)]
pub struct Fed {
    pub device: Device,
    /// Its summary, or why it failed (the whole error, in words).
    pub result: Result<Summary, String>,
    /// From the push's start to the device's end.
    pub elapsed: Duration,
}

/// What the manifest held, for the lines.
#[derive(Debug, Clone, Default)]
pub struct Served {
    pub files: u64,
    pub left_out: Option<String>,
}

/// `R58M: pushed 3 files, …` or `device 2: failed: …`.
pub fn device_line(fed: &Fed, served: &Served) -> String {
    match &fed.result {
        Ok(s) => format!(
            "{}: {}",
            fed.device.label(),
            summary(&outcome(s, served), fed.elapsed)
        ),
        Err(e) => format!("{}: failed: {e}", fed.device.label()),
    }
}

/// The [`Outcome`] of a session, for its summary.
pub fn outcome(s: &Summary, served: &Served) -> Outcome {
    Outcome {
        files: served.files,
        bytes_sent: s.bytes_sent,
        pages_had: s.pages_had,
        demands: s.counters.demands,
        left_out: served.left_out.clone(),
    }
}

/// `4 of 4 devices hold everything` or `3 of 4 devices hold everything;
/// failed: B`.
pub fn closing(all: &[Fed], source_bytes: u64) -> String {
    let failed: Vec<String> = all
        .iter()
        .filter(|f| f.result.is_err())
        .map(|f| f.device.label())
        .collect();
    let mut text = format!(
        "{} of {} device{} hold everything; {} read from the sources",
        all.len() - failed.len(),
        all.len(),
        if all.len() == 1 { "" } else { "s" },
        feedfs_protocol::units::format_bytes(source_bytes)
    );
    if !failed.is_empty() {
        text.push_str("; failed: ");
        text.push_str(&failed.join(", "));
    }
    text
}

/// The `--json` summary.
pub fn json(all: &[Fed], source_bytes: u64, served: &Served) -> serde_json::Value {
    let devices: Vec<_> = all
        .iter()
        .map(|f| {
            let link = match &f.device.reach {
                Reach::Exec(command) => json!({ "exec": command }),
                Reach::Stdio => json!("stdio"),
                Reach::Usb(serial) => json!({ "usb": serial }),
            };
            let mut d = json!({
                "name": f.device.name,
                "link": link,
                "ok": f.result.is_ok(),
                "seconds": f.elapsed.as_secs_f64(),
            });
            match &f.result {
                Ok(s) => {
                    d["bytes_sent"] = json!(s.bytes_sent);
                    d["pages_had"] = json!(s.pages_had);
                    d["demands"] = json!(s.counters.demands);
                    d["source_bytes"] = json!(s.source_bytes);
                }
                Err(e) => d["error"] = json!(e),
            }
            d
        })
        .collect();
    json!({
        "ok": all.iter().all(|f| f.result.is_ok()),
        "files": served.files,
        "source_bytes": source_bytes,
        "devices": devices,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fleet::targets::usb;

    fn fed(name: &str, result: Result<Summary, String>) -> Fed {
        Fed {
            device: usb(name),
            result,
            elapsed: Duration::from_secs(2),
        }
    }

    fn done(bytes: u64) -> Summary {
        Summary {
            counters: Default::default(),
            bytes_sent: bytes,
            device_pages: 0,
            pages_had: 0,
            source_bytes: bytes,
        }
    }

    #[test]
    fn one_line_per_device_and_one_over_all() {
        let served = Served {
            files: 3,
            left_out: None,
        };
        let all = vec![
            fed("A", Ok(done(4 << 20))),
            fed("B", Err("the link broke".into())),
        ];
        assert!(
            device_line(&all[0], &served).starts_with("A: pushed 3 files, 4.0 MiB sent in 2.0 s")
        );
        assert_eq!(device_line(&all[1], &served), "B: failed: the link broke");
        assert_eq!(
            closing(&all, 4 << 20),
            "1 of 2 devices hold everything; 4.0 MiB read from the sources; failed: B"
        );
        let j = json(&all, 4 << 20, &served);
        assert_eq!(j["ok"], false);
        assert_eq!(j["devices"][0]["bytes_sent"], 4 << 20);
        assert_eq!(j["devices"][0]["link"]["usb"], "A");
        assert_eq!(j["devices"][1]["error"], "the link broke");
        assert_eq!(j["source_bytes"], 4 << 20);
    }
}
