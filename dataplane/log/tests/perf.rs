//! Throughput measurements with `fdatasync` on the disk holding the temp directory. They print
//! and never fail on a number.
//!
//! `cargo test -p riffle-log --release --test perf -- --ignored --nocapture --test-threads 1`

#![allow(clippy::unwrap_used)]

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, mpsc};
use std::thread;
use std::time::{Duration, Instant};

use bytes::Bytes;
use riffle_log::{LogConfig, RecordIn, ShardLog};

const RUN: Duration = Duration::from_secs(5);

fn records(n: usize) -> Vec<RecordIn> {
    let data = Bytes::from(vec![0x61; 1024]);
    (0..n)
        .map(|i| RecordIn {
            partition_key: format!("key-{i}"),
            data: data.clone(),
        })
        .collect()
}

fn append_wait(log: &ShardLog, batch: Vec<RecordIn>) {
    let (tx, rx) = mpsc::channel();
    log.append(batch, Box::new(move |r| tx.send(r).unwrap()));
    rx.recv().unwrap().unwrap();
}

fn report(
    name: &str,
    appends: u64,
    records: u64,
    rounds: u64,
    elapsed: Duration,
    lat: &mut [Duration],
) {
    let secs = elapsed.as_secs_f64();
    lat.sort();
    let pct = |p: f64| lat[((lat.len() as f64 * p) as usize).min(lat.len() - 1)];
    println!(
        "{name}: {:.0} appends/s, {:.0} records/s, {:.1} MB/s of data, {:.0} syncs/s \
         ({:.1} appends per sync), latency p50 {:?} p99 {:?}",
        appends as f64 / secs,
        records as f64 / secs,
        records as f64 * 1024.0 / secs / 1e6,
        rounds as f64 / secs,
        appends as f64 / rounds as f64,
        pct(0.50),
        pct(0.99),
    );
}

fn open(dir: &std::path::Path) -> (ShardLog, Arc<AtomicU64>) {
    let log = ShardLog::open(dir, LogConfig::default()).unwrap();
    let rounds = Arc::new(AtomicU64::new(0));
    let counter = Arc::clone(&rounds);
    log.set_commit_listener(Box::new(move |_| {
        counter.fetch_add(1, Ordering::Relaxed);
    }));
    (log, rounds)
}

#[test]
#[ignore = "measurement"]
fn a_one_producer_500_record_batches() {
    let tmp = tempfile::tempdir().unwrap();
    let (log, rounds) = open(tmp.path());
    let mut lat = Vec::new();
    let start = Instant::now();
    while start.elapsed() < RUN {
        let t = Instant::now();
        append_wait(&log, records(500));
        lat.push(t.elapsed());
    }
    let elapsed = start.elapsed();
    let n = lat.len() as u64;
    report(
        "(a) 1 producer x 500 x 1 KiB",
        n,
        n * 500,
        rounds.load(Ordering::Relaxed),
        elapsed,
        &mut lat,
    );
}

#[test]
#[ignore = "measurement"]
fn b_64_producers_single_records() {
    let tmp = tempfile::tempdir().unwrap();
    let (log, rounds) = open(tmp.path());
    let log = Arc::new(log);
    let start = Instant::now();
    let producers: Vec<_> = (0..64)
        .map(|_| {
            let log = Arc::clone(&log);
            thread::spawn(move || {
                let mut lat = Vec::new();
                while start.elapsed() < RUN {
                    let t = Instant::now();
                    append_wait(&log, records(1));
                    lat.push(t.elapsed());
                }
                lat
            })
        })
        .collect();
    let mut lat: Vec<Duration> = producers
        .into_iter()
        .flat_map(|p| p.join().unwrap())
        .collect();
    let elapsed = start.elapsed();
    let n = lat.len() as u64;
    report(
        "(b) 64 producers x 1 x 1 KiB",
        n,
        n,
        rounds.load(Ordering::Relaxed),
        elapsed,
        &mut lat,
    );
}

/// The disk's own limit for comparison: 4 KiB appends, each followed by `fdatasync`.
#[test]
#[ignore = "measurement"]
fn c_raw_fdatasync_baseline() {
    use std::io::Write;
    let tmp = tempfile::tempdir().unwrap();
    let mut f = std::fs::File::create(tmp.path().join("raw")).unwrap();
    let buf = vec![0u8; 4096];
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < RUN {
        f.write_all(&buf).unwrap();
        f.sync_data().unwrap();
        n += 1;
    }
    println!(
        "(c) raw write 4 KiB + fdatasync: {:.0} syncs/s",
        n as f64 / start.elapsed().as_secs_f64()
    );
}
