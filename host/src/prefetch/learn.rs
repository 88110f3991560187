//! Learning a prefetch plan from runs: which pages programs needed, in the
//! order they needed them, merged across runs. Pure: runs in, plan out.
//!
//! Per run, the pages accessed, in order of first access: from a device
//! log, the reads that waited and the first reads served at once (exact);
//! from a host record, the demanded pages and the readahead the reader
//! went on to use (a readahead is taken as used when the reader's next
//! demand in that file starts at or past its end, i.e. the reader got
//! there; otherwise only the first `window` pages of it are kept). After
//! each accessed range, the `window` pages that follow are added, as a
//! readahead would send them.
//!
//! Merging: each page gets, per run, its position in that run's order
//! divided by the run's length (0 = first, towards 1 = last), and 1 for a
//! run that did not need it; pages are ordered by the mean over runs, so a
//! page every run needs early comes first, and one needed by a single run
//! comes after those needed by all. Files are matched across runs by path;
//! when a path was another file in an older run (another size or identity)
//! only the newest version is planned, and the older runs' accesses to it
//! are left out with a warning. Every count is of 4 KiB pages (logs in
//! blocks were converted as they were read).

use std::collections::HashMap;

use crate::logs::trace::{Run, SentKind, Side};
use crate::prefetch::plan::{Plan, PlanFile, Step, PLAN_VERSION};

/// One access: `count` pages from `first` of a run's file `file`, at `t_us`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Access {
    pub t_us: u64,
    pub file: usize,
    pub first: u64,
    pub count: u64,
}

/// The pages a run accessed, in time order (see the module documentation).
pub fn accesses(run: &Run, window: u64) -> Vec<Access> {
    let mut out: Vec<Access> = run
        .demands
        .iter()
        .map(|d| Access {
            t_us: d.t_us,
            file: d.file,
            first: d.first,
            count: d.count,
        })
        .chain(run.touches.iter().map(|t| Access {
            t_us: t.t_us,
            file: t.file,
            first: t.first,
            count: t.count,
        }))
        .collect();
    if run.side == Side::Host {
        out.extend(used_readahead(run, window));
    }
    out.sort_by_key(|a| a.t_us);
    out
}

/// The readahead pages of a host record that the reader went on to use.
fn used_readahead(run: &Run, window: u64) -> Vec<Access> {
    let mut out = Vec::new();
    for file in 0..run.files.len() {
        let demands: Vec<_> = run.demands.iter().filter(|d| d.file == file).collect();
        let ahead: Vec<_> = run
            .sent
            .iter()
            .filter(|s| s.file == file && s.kind == SentKind::Readahead)
            .collect();
        for (k, d) in demands.iter().enumerate() {
            let until = demands.get(k + 1).map_or(u64::MAX, |n| n.t_us);
            let end = d.first + d.count;
            let group: Vec<_> = ahead
                .iter()
                .filter(|s| s.t_us >= d.t_us && s.t_us < until && s.first >= end)
                .collect();
            let Some(reach) = group.iter().map(|s| s.end()).max() else {
                continue;
            };
            let continued = demands
                .get(k + 1)
                .filter(|n| n.first >= end && n.first <= reach)
                .map(|n| n.first);
            // Pages below this were used: up to where the reader went on,
            // or the window after the demand.
            let used_end = continued.unwrap_or(end.saturating_add(window));
            for s in group {
                let last = s.end().min(used_end);
                if last > s.first {
                    out.push(Access {
                        t_us: s.t_us,
                        file,
                        first: s.first,
                        count: last - s.first,
                    });
                }
            }
        }
    }
    out
}

/// Merge runs (oldest first) into a plan; also warnings for what was left out.
pub fn learn(runs: &[Run], window: u64) -> (Plan, Vec<String>) {
    let mut warnings = Vec::new();
    // The newest version of each path.
    let mut files: Vec<PlanFile> = Vec::new();
    let mut by_path: HashMap<String, usize> = HashMap::new();
    for run in runs.iter().rev() {
        for f in &run.files {
            by_path.entry(f.path.clone()).or_insert_with(|| {
                files.push(PlanFile {
                    path: f.path.clone(),
                    size: f.size,
                    identity: f.identity,
                });
                files.len() - 1
            });
        }
    }
    // Per run: position of each (plan file, page) in its first-access order.
    let mut orders: Vec<HashMap<(usize, u64), usize>> = Vec::new();
    let mut first_seen: HashMap<(usize, u64), (usize, usize)> = HashMap::new();
    for (r, run) in runs.iter().enumerate() {
        let map: Vec<Option<usize>> = run
            .files
            .iter()
            .map(|f| {
                let i = by_path[&f.path];
                let p = &files[i];
                let same = p.size == f.size
                    && match (p.identity, f.identity) {
                        (Some(a), Some(b)) => a == b,
                        _ => true,
                    };
                if !same {
                    warnings.push(format!(
                        "{}: {} was another version of the file; its accesses there are left out",
                        run.label, f.path
                    ));
                }
                same.then_some(i)
            })
            .collect();
        let mut order: HashMap<(usize, u64), usize> = HashMap::new();
        let mut push = |key: (usize, u64), order: &mut HashMap<(usize, u64), usize>| {
            let n = order.len();
            order.entry(key).or_insert(n);
            first_seen.entry(key).or_insert((r, n));
        };
        for a in accesses(run, window) {
            let Some(i) = map[a.file] else { continue };
            let pages = files[i].pages();
            let end = (a.first + a.count).min(pages);
            for p in a.first..end.saturating_add(window).min(pages) {
                push((i, p), &mut order);
            }
        }
        orders.push(order);
    }
    let mut scored: Vec<((usize, u64), f64)> = first_seen
        .keys()
        .map(|&key| {
            let sum: f64 = orders
                .iter()
                .map(|o| match o.get(&key) {
                    Some(&pos) => pos as f64 / o.len() as f64,
                    None => 1.0,
                })
                .sum();
            (key, sum / orders.len() as f64)
        })
        .collect();
    scored.sort_by(|a, b| {
        a.1.total_cmp(&b.1)
            .then(first_seen[&a.0].cmp(&first_seen[&b.0]))
            .then(a.0.cmp(&b.0))
    });
    let mut steps: Vec<Step> = Vec::new();
    for ((file, b), _) in scored {
        match steps.last_mut() {
            Some(s)
                if s.file as usize == file
                    && s.first + s.count == b
                    && s.count < u64::from(u32::MAX) =>
            {
                s.count += 1
            }
            _ => steps.push(Step {
                file: file as u32,
                first: b,
                count: 1,
            }),
        }
    }
    // Only files with planned pages, renumbered in order of first step.
    let mut keep: Vec<Option<u32>> = vec![None; files.len()];
    let mut kept = Vec::new();
    for s in &mut steps {
        let new = *keep[s.file as usize].get_or_insert_with(|| {
            kept.push(files[s.file as usize].clone());
            kept.len() as u32 - 1
        });
        s.file = new;
    }
    let plan = Plan {
        files: kept,
        steps,
        runs: runs.len() as u32,
        window: window.min(u64::from(u32::MAX)) as u32,
        read_from: PLAN_VERSION,
    };
    (plan, warnings)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logs::trace::parse_record;

    fn record(body: &str) -> Run {
        let head = "# feedfs-host record v3\n\
            file\t0\t6553600\tapp.apk\t000102030405060708090a0b0c0d0e0f\n\
            file\t1\t655360\tlib.so\t0f0e0d0c0b0a09080706050403020100\n";
        parse_record("r", &format!("{head}{body}")).unwrap()
    }

    fn order(plan: &Plan) -> Vec<(String, u64, u64)> {
        plan.steps
            .iter()
            .map(|s| (plan.files[s.file as usize].path.clone(), s.first, s.count))
            .collect()
    }

    #[test]
    fn one_run_in_first_access_order() {
        let run = record("demand\t10\t1\t5\t1\ndemand\t20\t0\t0\t2\ndemand\t30\t1\t0\t1\n");
        let (plan, warnings) = learn(&[run], 0);
        assert!(warnings.is_empty());
        assert_eq!(
            order(&plan),
            [
                ("lib.so".into(), 5, 1),
                ("app.apk".into(), 0, 2),
                ("lib.so".into(), 0, 1)
            ]
        );
        assert_eq!(plan.files.len(), 2);
        assert_eq!(plan.files[0].path, "lib.so", "files in order of first step");
        // A window of 2 after each range.
        let run = record("demand\t10\t1\t5\t1\ndemand\t20\t0\t0\t2\n");
        let (plan, _) = learn(&[run], 2);
        assert_eq!(
            order(&plan),
            [("lib.so".into(), 5, 3), ("app.apk".into(), 0, 4)]
        );
    }

    #[test]
    fn pages_every_run_needs_early_come_first() {
        let a = record("demand\t1\t0\t0\t1\ndemand\t2\t0\t7\t1\ndemand\t3\t0\t3\t1\n");
        let b = record("demand\t1\t0\t3\t1\ndemand\t2\t0\t0\t1\n");
        let (plan, _) = learn(&[a, b], 0);
        // 0: (0 + 1/2) / 2; 3: (2/3 + 0) / 2; 7: (1/3 + 1) / 2.
        assert_eq!(
            order(&plan),
            [
                ("app.apk".into(), 0, 1),
                ("app.apk".into(), 3, 1),
                ("app.apk".into(), 7, 1)
            ]
        );
        assert_eq!(plan.runs, 2);
    }

    #[test]
    fn used_readahead_is_kept_unused_is_trimmed_to_the_window() {
        // Demand 0, readahead 1..=4; the reader comes back at 5: all used.
        // Then demand 8, readahead 9..=12, and the reader jumps away: only
        // the window (1 page) after the demand is kept.
        let run = record(
            "demand\t10\t0\t0\t1\n\
             sent\t11\t0\t0\t1\tdemand\t0\n\
             sent\t12\t0\t1\t4\treadahead\t0\n\
             demand\t20\t0\t5\t1\n\
             demand\t30\t0\t8\t1\n\
             sent\t31\t0\t9\t2\treadahead\t0\n\
             demand\t40\t1\t0\t1\n",
        );
        let (plan, _) = learn(&[run], 1);
        assert_eq!(
            order(&plan),
            [
                ("app.apk".into(), 0, 7),
                ("app.apk".into(), 8, 3),
                ("lib.so".into(), 0, 2)
            ]
        );
    }

    #[test]
    fn a_changed_file_keeps_only_its_newest_version() {
        let old = record("demand\t1\t0\t9\t1\n");
        let text = "# feedfs-host record v3\n\
            file\t0\t6553600\tapp.apk\tffffffffffffffffffffffffffffffff\n\
            demand\t1\t0\t2\t1\n";
        let new = parse_record("new", text).unwrap();
        let (plan, warnings) = learn(&[old, new], 0);
        assert_eq!(order(&plan), [("app.apk".into(), 2, 1)]);
        assert_eq!(plan.files[0].identity, Some([0xff; 16]));
        assert_eq!(warnings.len(), 1);
        assert!(warnings[0].contains("another version"), "{warnings:?}");
    }
}
