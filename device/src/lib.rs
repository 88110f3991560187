//! feedfs-device: mounts a host's files through FUSE at once and fills them
//! block by block, on demand and in the background.
//!
//! [`session`] runs the daemon: the link thread serves links ([`link`]) one
//! after another, the main thread mounts and waits for a signal. A link is
//! stdin/stdout or a USB function ([`usb`], set up by [`gadget`] when asked;
//! [`usbcheck`] is the peer of the host's link check). [`core`] holds the shared
//! state (stored files, parked reads), [`fs`] is the thin FUSE adapter over
//! it, [`store`] and [`bitmap`] are the persisted block map. [`reqlog`]
//! records the reads that waited (and first reads) in the store, and
//! [`status`] reports on a store from outside the daemon. [`mountpoint`]
//! checks where the daemon mounts, and [`daemonlog`] moves the daemon's
//! messages to its store once its starter is gone.

pub mod attach;
pub mod bitmap;
pub mod core;
pub mod daemonlog;
pub mod fs;
pub mod gadget;
pub mod link;
pub mod mountpoint;
pub mod opens;
pub mod outbox;
pub mod reqlog;
pub mod session;
pub mod status;
pub mod store;
pub mod usb;
pub mod usbcheck;
pub mod verify;

/// What the daemon's threads tell its main thread.
pub enum Event {
    /// SIGINT or SIGTERM arrived.
    Signal(i32),
    /// The manifest arrived and the store is open: mount it.
    Manifest(core::SharedCore),
    /// A link ended; `Err` with the reason if it failed.
    LinkEnded(Result<(), String>),
    /// The FUSE session ended (unmounted by us or by someone else).
    Unmounted,
}
