//! Blob bytes: where uploads are staged and placed, how blobs are read back, and the collector.
//!
//! - [`fs`]: the filesystem store under `<data>/blobs`.

mod fs;

pub use fs::*;
