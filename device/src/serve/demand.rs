//! Demand messages: the one place that turns pages to ask the host for
//! into `Demand`s, one per run of consecutive pages, split so that no count
//! exceeds `u32::MAX` (the message's count field) and none is zero. A
//! first demand leaves `again` clear (the host may take pages it just sent
//! as on their way); [`again`] marks demands for pages that arrived
//! damaged or never came, which the host sends whatever it sent lately.

use std::collections::BTreeSet;

use feedfs_protocol::{FileId, Message};

/// One Demand: `count` pages of `file` from page `first`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Demand {
    pub file: FileId,
    pub first: u64,
    pub count: u32,
    /// Send them even if they were just sent (see the module documentation).
    pub again: bool,
}

impl Demand {
    /// The message that asks for these pages.
    pub fn message(&self) -> Message<'static> {
        Message::Demand {
            file: self.file,
            first: self.first,
            count: self.count,
            again: self.again,
        }
    }

    /// The message as a frame, ready for the outbox.
    pub fn frame(&self) -> Vec<u8> {
        self.message().to_frame()
    }
}

/// Demands for runs `(first, count)` of pages of `file`, in order; a run
/// longer than `u32::MAX` pages becomes several demands, an empty run none.
pub fn for_runs(file: FileId, runs: impl IntoIterator<Item = (u64, u64)>) -> Vec<Demand> {
    let mut out = Vec::new();
    for (mut first, mut left) in runs {
        while left > 0 {
            let n = left.min(u64::from(u32::MAX));
            out.push(Demand {
                file,
                first,
                count: n as u32,
                again: false,
            });
            first += n;
            left -= n;
        }
    }
    out
}

/// Demands for the sorted page indexes `pages` of `file`.
pub fn for_pages(file: FileId, pages: &[u64]) -> Vec<Demand> {
    for_runs(file, runs(pages))
}

/// Demands for runs `(first, count)` of `file`, leaving out the pages in `except`.
pub fn for_runs_except(file: FileId, runs: &[(u64, u64)], except: &BTreeSet<u64>) -> Vec<Demand> {
    let mut kept = Vec::with_capacity(runs.len());
    for &(first, count) in runs {
        let end = first.saturating_add(count);
        let mut from = first;
        for &b in except.range(first..end) {
            if b > from {
                kept.push((from, b - from));
            }
            from = b + 1;
        }
        if end > from {
            kept.push((from, end - from));
        }
    }
    for_runs(file, kept)
}

/// The same demands, marked `again`: for pages that arrived damaged, were
/// dropped, or have not come although asked for.
pub fn again(mut demands: Vec<Demand>) -> Vec<Demand> {
    for d in &mut demands {
        d.again = true;
    }
    demands
}

/// Sorted page indexes as runs of (first, count).
pub fn runs(pages: &[u64]) -> Vec<(u64, u64)> {
    let mut out: Vec<(u64, u64)> = Vec::new();
    for &b in pages {
        match out.last_mut() {
            Some((f, c)) if *f + *c == b => *c += 1,
            _ => out.push((b, 1)),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const F: FileId = FileId(3);

    fn d(first: u64, count: u32) -> Demand {
        Demand {
            file: F,
            first,
            count,
            again: false,
        }
    }

    #[test]
    fn consecutive_pages_become_one_run() {
        assert_eq!(runs(&[1, 2, 3, 7, 9, 10]), vec![(1, 3), (7, 1), (9, 2)]);
        assert!(runs(&[]).is_empty());
    }

    #[test]
    fn pages_become_one_demand_per_run() {
        assert_eq!(for_pages(F, &[4, 5, 6, 8]), vec![d(4, 3), d(8, 1)]);
        assert!(for_pages(F, &[]).is_empty());
    }

    #[test]
    fn a_run_longer_than_u32_max_is_split() {
        let long = u64::from(u32::MAX) * 2 + 5;
        assert_eq!(
            for_runs(F, [(10, long)]),
            vec![
                d(10, u32::MAX),
                d(10 + u64::from(u32::MAX), u32::MAX),
                d(10 + 2 * u64::from(u32::MAX), 5),
            ]
        );
        assert_eq!(
            for_runs(F, [(0, u64::from(u32::MAX))]),
            vec![d(0, u32::MAX)]
        );
    }

    #[test]
    fn an_empty_run_demands_nothing() {
        assert!(for_runs(F, [(7, 0)]).is_empty());
    }

    #[test]
    fn pages_on_their_way_are_left_out_of_runs() {
        let except: BTreeSet<u64> = [0, 3, 4, 9, 20].into();
        assert_eq!(
            for_runs_except(F, &[(0, 6), (8, 3)], &except),
            vec![d(1, 2), d(5, 1), d(8, 1), d(10, 1)]
        );
        assert_eq!(for_runs_except(F, &[(3, 2)], &except), vec![]);
        assert_eq!(
            for_runs_except(F, &[(2, 4)], &BTreeSet::new()),
            vec![d(2, 4)]
        );
    }

    #[test]
    fn a_demand_is_the_protocol_message() {
        let m = d(9, 2).message();
        assert_eq!(
            m,
            Message::Demand {
                file: F,
                first: 9,
                count: 2,
                again: false,
            }
        );
        assert_eq!(d(9, 2).frame(), m.to_frame());
        let again = super::again(vec![d(9, 2), d(20, 1)]);
        assert!(again.iter().all(|d| d.again));
        assert_eq!(again[1].first, 20);
    }
}
