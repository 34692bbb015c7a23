//! `disk-ceiling`: what the disk under the data directory can do when every write must be
//! durable — the limit Riffle's acknowledged-write figures are fractions of.
//!
//! Like Riffle's log, each test appends to a fresh file and calls `fdatasync` after every write
//! (appends grow the file, so each sync also commits the new size).

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use rand::RngCore;

use crate::histogram::Histogram;
use crate::report::Outcome;

/// Options of `disk-ceiling`.
#[derive(clap::Args, Clone, Debug)]
pub struct DiskCeilingArgs {
    /// Directory on the disk to measure (use the servers' data disk).
    #[arg(long)]
    pub dir: PathBuf,
    /// Seconds per test (five tests: 4 KiB, 1 KiB, 64 KiB, 1 MiB and 4 MiB writes).
    #[arg(long, default_value_t = 5.0, env = "BENCH_DISK_SECONDS")]
    pub seconds: f64,
    /// Stop a sequential test after this many MiB even if time remains.
    #[arg(long, default_value_t = 4096)]
    pub max_mib: u64,
}

/// A scratch file removed on drop.
struct Scratch {
    path: PathBuf,
    file: File,
}

impl Scratch {
    fn create(dir: &Path, name: &str) -> Result<Scratch> {
        let path = dir.join(format!(
            "riffle-bench-{name}-{:08x}.tmp",
            rand::random::<u32>()
        ));
        let file = OpenOptions::new()
            .create_new(true)
            .write(true)
            .open(&path)
            .with_context(|| format!("creating {}", path.display()))?;
        Ok(Scratch { path, file })
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Appends `block`-byte writes, each followed by fdatasync, for `seconds` (or `max_bytes`);
/// returns bytes per second and the per-write latency.
fn sequential(dir: &Path, block: usize, seconds: f64, max_bytes: u64) -> Result<(f64, Histogram)> {
    let mut scratch = Scratch::create(dir, &format!("{block}"))?;
    let mut data = vec![0u8; block];
    rand::rng().fill_bytes(&mut data);
    let mut latency = Histogram::new();
    let limit = Duration::from_secs_f64(seconds);
    let start = Instant::now();
    let mut written = 0u64;
    while start.elapsed() < limit && written < max_bytes {
        let t = Instant::now();
        scratch.file.write_all(&data)?;
        scratch.file.sync_data()?;
        latency.record_duration(t.elapsed());
        written += block as u64;
    }
    Ok((written as f64 / start.elapsed().as_secs_f64(), latency))
}

/// The best any durable server could do with the PutRecord latency workload on this disk: an
/// ideal group commit with no software in the way. Records of `block` bytes are due `rate`
/// times a second; whenever the writer is free it appends everything due so far in one write
/// and one fdatasync, and each record's latency runs from when it was due to the end of that
/// sync (open loop: a slow sync delays the records that arrive meanwhile, as in a server).
pub fn group_commit_floor(dir: &Path, block: usize, rate: f64, seconds: f64) -> Result<Histogram> {
    let mut scratch = Scratch::create(dir, &format!("group-commit-{block}"))?;
    let mut data = Vec::new();
    let mut payload = vec![0u8; block];
    rand::rng().fill_bytes(&mut payload);
    let mut latency = Histogram::new();
    let interval = Duration::from_secs_f64(1.0 / rate);
    let count = (rate * seconds).ceil() as u64;
    let due = |start: Instant, i: u64| start + interval.mul_f64(i as f64);
    let start = Instant::now();
    let mut next = 0u64;
    while next < count {
        let now = Instant::now();
        if due(start, next) > now {
            std::thread::sleep(due(start, next) - now);
        }
        // Everything due by now goes into this round.
        let now = Instant::now();
        let mut last = next;
        while last + 1 < count && due(start, last + 1) <= now {
            last += 1;
        }
        data.clear();
        for _ in next..=last {
            data.extend_from_slice(&payload);
        }
        scratch.file.write_all(&data)?;
        scratch.file.sync_data()?;
        let done = Instant::now();
        for i in next..=last {
            latency.record_duration(done - due(start, i));
        }
        next = last + 1;
    }
    Ok(latency)
}

/// Runs the workload (blocking: call it off the async runtime).
///
/// The latency tests run first, on a device not yet busy with the large writes' aftermath.
pub fn run(args: &DiskCeilingArgs) -> Result<Outcome> {
    let mib = 1024.0 * 1024.0;
    let max = args.max_mib * 1024 * 1024;
    let (small, latency) = sequential(&args.dir, 4 << 10, args.seconds, max)?;
    // The size of one PutRecord of the latency workload: the floor under its acknowledgement.
    let (_, record) = sequential(&args.dir, 1 << 10, args.seconds, max)?;
    let (mid, _) = sequential(&args.dir, 64 << 10, args.seconds, max)?;
    let (big, _) = sequential(&args.dir, 1 << 20, args.seconds, max)?;
    // Riffle's group commit writes rounds of several MiB under load: the disk may do better
    // with those than with 1 MiB writes, and the ceiling is the best of both.
    let (huge, _) = sequential(&args.dir, 4 << 20, args.seconds, max)?;
    let mut o = Outcome::new(&format!(
        "disk-ceiling ({}: append + fdatasync)",
        args.dir.display()
    ));
    o.metric("seq_4mib_mib_per_s", huge / mib, "MiB/s");
    o.metric("seq_1mib_mib_per_s", big / mib, "MiB/s");
    o.metric("seq_64kib_mib_per_s", mid / mib, "MiB/s");
    o.metric("seq_best_mib_per_s", huge.max(big) / mib, "MiB/s");
    o.metric("sync_4kib_per_s", small / 4096.0, "writes/s");
    o.latency("sync_4kib_", &latency);
    o.latency("sync_1kib_", &record);
    Ok(o)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn measures_and_cleans_up() {
        let dir = std::env::temp_dir().join(format!("riffle-bench-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let (rate, latency) = sequential(&dir, 4096, 0.05, 1 << 20).expect("measures");
        assert!(rate > 0.0);
        assert!(latency.count() > 0);
        let floor = group_commit_floor(&dir, 1024, 1000.0, 0.05).expect("measures");
        assert_eq!(floor.count(), 50);
        assert_eq!(std::fs::read_dir(&dir).expect("readable").count(), 0);
        std::fs::remove_dir(&dir).expect("empty");
    }
}
