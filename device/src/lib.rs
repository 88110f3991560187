//! feedfs-device: mounts a host's files through FUSE at once and fills them
//! page by page, on demand and in the background.
//!
//! Folders by role:
//! - [`daemon`]: the daemon's life (mount point, signals, links one after
//!   another, its log file once its starter is gone, `attach`);
//! - [`link`]: one link to a host (the protocol over stdin/stdout, a handed
//!   pipe or a USB function), its outbox, and the USB gadget set-up;
//! - [`serve`]: answering reads: the pure table of parked reads
//!   ([`serve::pending`]), the shared state that wires it to the store and
//!   the link ([`serve::core`]) and the thin FUSE adapter over it
//!   ([`serve::fs`]);
//! - [`store`]: the persisted pages, their map and the request log;
//! - [`cmd`]: the commands run beside a daemon (`status`, `verify`,
//!   `usb-check`).

pub mod cmd;
pub mod daemon;
pub mod link;
pub mod serve;
pub mod store;
#[cfg(test)]
mod testentry;
#[cfg(test)]
mod testutil;
