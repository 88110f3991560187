//! How the scheduler picks the next run: the demand queue's front, then
//! readahead, then the plan and the stream, each a run of pages the device
//! lacks and that were not sent, never longer than the caller's limits.

use std::time::Instant;

use feedfs_protocol::FileId;

use super::bits::{first_in_a_not_b, run_in_a_not_b};
use super::{Kind, Limits, Pick, Scheduler};

impl Scheduler {
    /// The next run to send, marked as sent; `None` when nothing is due.
    pub fn pick_next(&mut self, limits: Limits, now: Instant) -> Option<Pick> {
        let pick = self
            .pick_demand(limits.demand)
            .or_else(|| self.pick_readahead(limits.stream))
            .or_else(|| self.pick_background(limits.stream))?;
        let f = self.files[pick.file.0 as usize].as_mut()?;
        f.sent.set_range(pick.first, pick.end());
        self.flight.sent(now, pick.file, pick.first, pick.end());
        let n = u64::from(pick.count);
        let c = &mut self.counters;
        c.runs += 1;
        match pick.kind {
            Kind::Demand => {
                f.in_demand.clear_range(pick.first, pick.end());
                c.sent_demand += n;
            }
            Kind::Readahead => {
                f.in_readahead.clear_range(pick.first, pick.end());
                c.sent_readahead += n;
            }
            Kind::Plan => c.sent_plan += n,
            Kind::Stream => {
                self.cursor.1 = pick.end();
                c.sent_stream += n;
            }
        }
        Some(pick)
    }

    /// The front of the demand queue, up to `max` pages of it.
    fn pick_demand(&mut self, max: u32) -> Option<Pick> {
        let q = self.demand.front_mut()?;
        let count = (q.end - q.first).min(u64::from(max.max(1)));
        let pick = Pick {
            file: q.file,
            first: q.first,
            count: count as u32,
            kind: Kind::Demand,
        };
        q.first += count;
        if q.first == q.end {
            self.demand.pop_front();
        }
        Some(pick)
    }

    /// The next readahead run: the first pages of the front range still
    /// lacking and not sent, up to `max`.
    fn pick_readahead(&mut self, max: u32) -> Option<Pick> {
        self.prune_readahead();
        let q = self.ahead.front_mut()?;
        let f = self.files[q.file.0 as usize].as_ref()?;
        let limit = q.end.min(q.first + u64::from(max.max(1)));
        let end = run_in_a_not_b(&f.lacks, &f.sent, q.first, limit);
        let pick = Pick {
            file: q.file,
            first: q.first,
            count: (end - q.first) as u32,
            kind: Kind::Readahead,
        };
        q.first = end;
        if q.first == q.end {
            self.ahead.pop_front();
        }
        Some(pick)
    }

    /// Drop the readahead pages at the front of the queue that no longer
    /// need sending (sent meanwhile, or reported held by a late `Have`).
    pub(super) fn prune_readahead(&mut self) {
        while let Some(q) = self.ahead.front_mut() {
            let Some(f) = self.files[q.file.0 as usize].as_mut() else {
                self.ahead.pop_front();
                continue;
            };
            let next = first_in_a_not_b(&f.lacks, &f.sent, q.first).unwrap_or(q.end);
            let next = next.min(q.end);
            f.in_readahead.clear_range(q.first, next);
            q.first = next;
            if q.first < q.end {
                return;
            }
            self.ahead.pop_front();
        }
    }

    /// The next plan or stream run, if the stream may go.
    fn pick_background(&mut self, max: u32) -> Option<Pick> {
        if !self.have_end || !self.stream {
            return None;
        }
        let max = u64::from(max.max(1));
        if self.advance_plan() {
            let q = self.plan.front()?;
            let f = self.files[q.file.0 as usize].as_ref()?;
            let end = run_in_a_not_b(&f.lacks, &f.sent, q.first, q.end.min(q.first + max));
            return Some(Pick {
                file: q.file,
                first: q.first,
                count: (end - q.first) as u32,
                kind: Kind::Plan,
            });
        }
        if self.stream_paused || !self.advance_stream() {
            return None;
        }
        let (slot, first) = self.cursor;
        let f = self.files[slot].as_ref()?;
        let end = run_in_a_not_b(&f.lacks, &f.sent, first, f.pages.min(first + max));
        Some(Pick {
            file: FileId(slot as u32),
            first,
            count: (end - first) as u32,
            kind: Kind::Stream,
        })
    }

    /// Move the plan's front to the next planned page the device lacks and
    /// that was not sent, dropping ranges that have none; false when the
    /// plan is done.
    pub(super) fn advance_plan(&mut self) -> bool {
        while let Some(q) = self.plan.front_mut() {
            if let Some(f) = &self.files[q.file.0 as usize] {
                if let Some(i) = first_in_a_not_b(&f.lacks, &f.sent, q.first).filter(|&i| i < q.end)
                {
                    q.first = i;
                    return true;
                }
            }
            self.plan.pop_front();
        }
        false
    }

    /// Move the stream cursor to the next page the device lacks and that
    /// was not sent; false when there is none. The set of such pages only
    /// shrinks, so the cursor only moves forward.
    pub(super) fn advance_stream(&mut self) -> bool {
        while self.cursor.0 < self.files.len() {
            let (slot, from) = self.cursor;
            if let Some(f) = &self.files[slot] {
                if let Some(i) = first_in_a_not_b(&f.lacks, &f.sent, from) {
                    self.cursor.1 = i;
                    return true;
                }
            }
            self.cursor = (slot + 1, 0);
        }
        false
    }
}
