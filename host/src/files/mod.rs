//! What is served: [`manifest`] walks the given paths into checked manifest
//! entries with identities, [`source`] reads runs of their pages and notices a file
//! that changed under it, [`s3`] builds the signed requests of S3 sources.

pub mod manifest;
pub mod s3;
pub mod source;
