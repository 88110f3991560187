//! What is served: [`manifest`] walks the given paths into checked manifest
//! entries with identities, [`source`] reads runs of their pages and notices a file
//! that changed under it.

pub mod manifest;
pub mod source;
