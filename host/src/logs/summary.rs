//! What a run says, in figures: per file, bytes present, demand requests
//! and their median and 99th-percentile wait, and the order in which pages
//! were first asked for. Pure functions over a [`Run`]; every count is of
//! 4 KiB pages.
//!
//! The wait of a device log is the reader's own wait, as the device timed
//! it. A host record does not know the reader's wait; its wait is the
//! host's part of it: from the demand's arrival to the moment the last of
//! its pages was sent.

use std::collections::HashMap;

use serde::Serialize;

use crate::logs::trace::{Run, SentKind, Side};

/// Figures for one file of a run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FileSummary {
    pub path: String,
    pub size: u64,
    /// Bytes the device held at the end (host records: held at the start
    /// plus sent); `None` for device logs, which do not say.
    pub present_bytes: Option<u64>,
    pub demand_requests: u64,
    pub demanded_pages: u64,
    pub median_wait_us: Option<u64>,
    pub p99_wait_us: Option<u64>,
    /// Reads served at once from present pages (device logs).
    pub served_at_once: Option<u64>,
}

/// One step of the first-access order: pages asked for the first time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Step {
    pub t_us: u64,
    pub file: usize,
    pub path: String,
    pub first: u64,
    pub count: u64,
}

/// Everything `log show` reports about one run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RunSummary {
    pub label: String,
    pub side: &'static str,
    /// What the waits measure.
    pub wait_is: &'static str,
    pub duration_us: u64,
    pub files: Vec<FileSummary>,
    pub first_access: Vec<Step>,
}

/// Pages in the order they were first asked for, one step per run of
/// consecutive pages of one file: demands, and (device logs) first reads
/// served at once.
pub fn first_access(run: &Run) -> Vec<Step> {
    let mut events: Vec<(u64, usize, u64, u64)> = run
        .demands
        .iter()
        .map(|d| (d.t_us, d.file, d.first, d.count))
        .chain(
            run.touches
                .iter()
                .map(|t| (t.t_us, t.file, t.first, t.count)),
        )
        .collect();
    events.sort_by_key(|e| e.0);
    let mut seen: Vec<std::collections::HashSet<u64>> = vec![Default::default(); run.files.len()];
    let mut steps: Vec<Step> = Vec::new();
    for (t_us, file, first, count) in events {
        for b in first..first + count {
            if !seen[file].insert(b) {
                continue;
            }
            match steps.last_mut() {
                Some(s) if s.file == file && s.first + s.count == b => s.count += 1,
                _ => steps.push(Step {
                    t_us,
                    file,
                    path: run.files[file].path.clone(),
                    first: b,
                    count: 1,
                }),
            }
        }
    }
    steps
}

/// The nearest-rank percentile of sorted values.
pub fn percentile(sorted: &[u64], p: usize) -> Option<u64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (sorted.len() * p).div_ceil(100).max(1);
    Some(sorted[rank - 1])
}

/// The wait of each demand: the device's measure, or for a host record the
/// time until the last of its pages went out (`None` if it never did).
pub fn waits(run: &Run) -> Vec<Option<u64>> {
    if run.side == Side::Device {
        return run.demands.iter().map(|d| d.wait_us).collect();
    }
    let mut sends: HashMap<(usize, u64), Vec<u64>> = HashMap::new();
    for s in run.sent.iter().filter(|s| s.kind == SentKind::Demand) {
        for p in s.first..s.end() {
            sends.entry((s.file, p)).or_default().push(s.t_us);
        }
    }
    run.demands
        .iter()
        .map(|d| {
            let mut last = 0;
            for b in d.first..d.first + d.count {
                let t = sends
                    .get(&(d.file, b))?
                    .iter()
                    .copied()
                    .find(|&t| t >= d.t_us)?;
                last = last.max(t);
            }
            Some(last - d.t_us)
        })
        .collect()
}

/// Summarise one run.
pub fn summarize(run: &Run) -> RunSummary {
    let waits = waits(run);
    let mut files = Vec::new();
    for (i, f) in run.files.iter().enumerate() {
        let mut w: Vec<u64> = run
            .demands
            .iter()
            .zip(&waits)
            .filter(|(d, _)| d.file == i)
            .filter_map(|(_, w)| *w)
            .collect();
        w.sort_unstable();
        let demands: Vec<_> = run.demands.iter().filter(|d| d.file == i).collect();
        let present_bytes = (run.side == Side::Host).then(|| {
            let mut sent: Vec<(u64, u64)> = run
                .sent
                .iter()
                .filter(|s| s.file == i)
                .map(|s| (s.first, s.end()))
                .collect();
            sent.sort_unstable();
            // Pages sent at least once: the union of the runs.
            let (mut pages, mut reach) = (0, 0);
            for (a, e) in sent {
                let a = a.max(reach);
                if e > a {
                    pages += e - a;
                    reach = e;
                }
            }
            let pages = (run.held[i] + pages).min(f.pages());
            (pages << feedfs_protocol::PAGE_SHIFT).min(f.size)
        });
        files.push(FileSummary {
            path: f.path.clone(),
            size: f.size,
            present_bytes,
            demand_requests: demands.len() as u64,
            demanded_pages: demands.iter().map(|d| d.count).sum(),
            median_wait_us: percentile(&w, 50),
            p99_wait_us: percentile(&w, 99),
            served_at_once: (run.side == Side::Device).then(|| run.served_at_once[i].0),
        });
    }
    RunSummary {
        label: run.label.clone(),
        side: match run.side {
            Side::Host => "host",
            Side::Device => "device",
        },
        wait_is: match run.side {
            Side::Host => "host side: from the demand's arrival to its last page sent",
            Side::Device => "the reader's wait, as the device timed it",
        },
        duration_us: run.end_us(),
        files,
        first_access: first_access(run),
    }
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1u64 << 20) as f64)
}

fn ms(us: Option<u64>) -> String {
    us.map_or("-".into(), |u| format!("{:.2} ms", u as f64 / 1000.0))
}

/// The summary as text; at most `steps` steps of the first-access order.
pub fn render(s: &RunSummary, steps: usize) -> String {
    let mut out = format!(
        "{}\n  {} log, {:.3} s; waits: {}\n",
        s.label,
        s.side,
        s.duration_us as f64 / 1e6,
        s.wait_is
    );
    let width = s
        .files
        .iter()
        .map(|f| f.path.len())
        .max()
        .unwrap_or(4)
        .max(4);
    out += &format!(
        "  {:width$}  {:>23}  {:>7}  {:>10}  {:>10}\n",
        "file", "present / total", "demands", "median", "p99"
    );
    for f in &s.files {
        let present = match f.present_bytes {
            Some(p) => format!("{} / {}", mib(p), mib(f.size)),
            None => format!("? / {}", mib(f.size)),
        };
        out += &format!(
            "  {:width$}  {:>23}  {:>7}  {:>10}  {:>10}\n",
            f.path,
            present,
            f.demand_requests,
            ms(f.median_wait_us),
            ms(f.p99_wait_us)
        );
    }
    out += &format!(
        "  first access order ({} steps{}):\n",
        s.first_access.len(),
        if s.first_access.len() > steps {
            format!(", the first {steps} shown; --steps N for more")
        } else {
            String::new()
        }
    );
    for (i, st) in s.first_access.iter().take(steps).enumerate() {
        let pages = if st.count == 1 {
            format!("page {}", st.first)
        } else {
            format!("pages {}..{}", st.first, st.first + st.count - 1)
        };
        out += &format!(
            "  {:>5}. {:>10.3} s  {}  {pages}\n",
            i + 1,
            st.t_us as f64 / 1e6,
            st.path
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logs::trace::parse_record;

    #[test]
    fn a_host_record_summarised() {
        let text = "# feedfs-host record v3\n\
            file\t0\t300000\ta\t000102030405060708090a0b0c0d0e0f\n\
            have\t5\t0\t16\n\
            demand\t100\t0\t32\t2\n\
            sent\t150\t0\t32\t1\tdemand\t0\n\
            sent\t400\t0\t33\t1\tdemand\t0\n\
            sent\t410\t0\t33\t20\treadahead\t0\n\
            demand\t500\t0\t0\t1\n\
            sent\t520\t0\t0\t1\tdemand\t0\n\
            done\t900\t3\n";
        let run = parse_record("r", text).unwrap();
        let s = summarize(&run);
        let f = &s.files[0];
        assert_eq!((f.demand_requests, f.demanded_pages), (2, 3));
        assert_eq!((f.median_wait_us, f.p99_wait_us), (Some(20), Some(300)));
        // Held 16 + sent 22 distinct pages (32..53 and 0) of 74.
        assert_eq!(f.present_bytes, Some(38 * 4096));
        assert_eq!(
            s.first_access
                .iter()
                .map(|st| (st.first, st.count))
                .collect::<Vec<_>>(),
            vec![(32, 2), (0, 1)]
        );
        let text = render(&s, 1);
        assert!(text.contains("the first 1 shown"), "{text}");
        assert!(text.contains("pages 32..33"), "{text}");
    }
}
