//! Answering reads: the table of reads parked for missing pages
//! ([`pending`]), the one builder of Demand messages ([`demand`]), the
//! shared state that wires them to the store and the link ([`core`]), the
//! thin FUSE adapter over it ([`fs`]) and the tree it serves ([`tree`]), and
//! how each open file is served ([`opens`]).

pub mod core;
pub mod demand;
#[cfg(test)]
mod fake;
pub mod fs;
pub mod opens;
pub mod pending;
pub mod tree;
