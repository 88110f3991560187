//! Asking again: a parked read that still waits after [`ASK_AGAIN`] asks
//! the host again, with `again` set, for the pages it waits for that are
//! not on their way to the store.
//!
//! The host does not send again a page it sent moments ago when a plain
//! demand comes for it (it takes the page as on its way, in the link's
//! buffers, which is what it nearly always is). A page lost on the link, in
//! a frame damaged and dropped, is therefore asked for again here, by
//! time, since nobody can tell which pages a dropped frame held. The
//! interval is above the host's in-flight window (250 ms), so the host
//! would send the page again even without `again`; `again` makes sure.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use super::{Key, Pending, Reply};
use crate::serve::demand::{self, Demand};

/// How long a parked read waits before it asks again, and again.
pub const ASK_AGAIN: Duration = Duration::from_secs(1);

impl<R: Reply> Pending<R> {
    /// The demands, marked `again`, of every parked read whose time to ask
    /// again has come by `now`: the pages it still waits for that are not
    /// on their way to the store, each page once. Each such read asks
    /// again [`ASK_AGAIN`] later, if it still waits then.
    pub fn ask_again(&mut self, now: Instant) -> Vec<Demand> {
        let mut wanted: BTreeSet<Key> = BTreeSet::new();
        while let Some(&(at, rid)) = self.asks.first() {
            if at > now {
                break;
            }
            self.asks.pop_first();
            let Some(r) = self.reads.get_mut(&rid) else {
                continue;
            };
            for p in r.read.pages() {
                let key = (r.read.file, p);
                if self.waiters.contains_key(&key) && !self.landing.contains(&key) {
                    wanted.insert(key);
                }
            }
            r.ask_at = now + ASK_AGAIN;
            self.asks.insert((r.ask_at, rid));
        }
        let wanted: Vec<Key> = wanted.into_iter().collect();
        demand::again(
            wanted
                .chunk_by(|a, b| a.0 == b.0)
                .flat_map(|file| {
                    let pages: Vec<u64> = file.iter().map(|&(_, p)| p).collect();
                    demand::for_pages(file[0].0, &pages)
                })
                .collect(),
        )
    }
}
