//! Library behind the `data-fetch` binary: the manifest, verified resumable downloads from
//! mirrors, safe unpacking, and the on-disk layout with completion markers and locks.

pub mod checksum;
pub mod download;
pub mod extract;
pub mod fetch;
pub mod inspect;
pub mod manifest;
pub mod store;
