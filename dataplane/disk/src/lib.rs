//! Disk work every Riffle store shares.
//!
//! Riffle acknowledges a write once an `fdatasync` returns, and a device serves those behind
//! whatever else is queued on it. So large background work — deleting old segments, writing a
//! snapshot, zero-filling a segment ahead of use — is done in small synced pieces at a bounded
//! rate ([`Pacer`], [`Deleter`]), never as one request that holds the device.

mod deleter;
mod pacer;

use std::fs::File;
use std::io;
use std::path::Path;

pub use deleter::{Deleter, Hold};
pub use pacer::{PIECE_BYTES, Pacer};

/// `fsync`s a directory, so that files created, renamed or removed in it stay so after a power
/// loss.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}
