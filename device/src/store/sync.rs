//! The store's syncer: one thread that writes the maps of the files handed
//! to it ([`MapFile::write_map`]: CRCs, `fdatasync` of data and map, bits),
//! so the thread storing a stream's blocks never waits on a sync.
//!
//! Invariant: a file is queued at most once at a time (its `queued` flag);
//! once the syncer has stopped it refuses new files, and their owners
//! write their maps themselves.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;

use super::file::MapFile;

#[derive(Default)]
struct Queue {
    files: Vec<Arc<MapFile>>,
    stop: bool,
}

/// See the module documentation.
#[derive(Default)]
pub(super) struct Syncer {
    queue: Mutex<Queue>,
    wake: Condvar,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Syncer {
    /// A syncer with its thread running (or, if no thread can start, one
    /// that refuses every file, so each is written by its owner).
    pub(super) fn start() -> Arc<Syncer> {
        let syncer = Arc::new(Syncer::default());
        let for_thread = syncer.clone();
        match std::thread::Builder::new()
            .name("store-sync".into())
            .spawn(move || for_thread.run())
        {
            Ok(handle) => *syncer.thread.lock().unwrap_or_else(|p| p.into_inner()) = Some(handle),
            Err(e) => {
                log::warn!("store: no syncer thread ({e}); maps are written inline");
                syncer.queue().stop = true;
            }
        }
        syncer
    }

    fn queue(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queue `file` for a map write; false when the syncer has stopped.
    pub(super) fn ask(&self, file: &Arc<MapFile>) -> bool {
        let mut q = self.queue();
        if q.stop {
            return false;
        }
        if !file.queued.swap(true, Ordering::AcqRel) {
            q.files.push(file.clone());
            self.wake.notify_one();
        }
        true
    }

    fn run(&self) {
        loop {
            let files = {
                let mut q = self.queue();
                while q.files.is_empty() && !q.stop {
                    q = self.wake.wait(q).unwrap_or_else(|p| p.into_inner());
                }
                if q.files.is_empty() {
                    return;
                }
                std::mem::take(&mut q.files)
            };
            for f in files {
                f.queued.store(false, Ordering::Release);
                if let Err(e) = f.write_map(false) {
                    log::warn!(
                        "store: cannot write the block map {} yet: {e}",
                        f.map_path.display()
                    );
                }
            }
        }
    }

    /// Write what is queued, then stop the thread; later files are refused.
    pub(super) fn stop(&self) {
        self.queue().stop = true;
        self.wake.notify_all();
        let handle = self.thread.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(handle) = handle {
            let _ = handle.join();
        }
    }
}
