//! The commands run beside a daemon, from outside it: [`status`] reports on
//! a store, [`verify`] re-checks its pages, [`overlay`] handles the files
//! written on the device, [`usbcheck`] is the device half
//! of the host's link check.

pub mod overlay;
pub mod status;
pub mod usbcheck;
pub mod verify;
