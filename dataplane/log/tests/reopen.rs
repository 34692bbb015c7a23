//! Reopening a shard log: after a plain drop, and from copies of its files taken mid-write, which
//! is what a crash leaves behind.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::thread;
use std::time::{Duration, Instant};

use bytes::Bytes;
use riffle_log::{LogConfig, RecordIn, ShardLog, SyncMode};
use tempfile::TempDir;

fn records(producer: usize, seq: usize) -> Vec<RecordIn> {
    (0..1 + seq % 4)
        .map(|i| RecordIn {
            partition_key: format!("p{producer}"),
            data: Bytes::from(format!("p{producer}-s{seq}-r{i}-").repeat(1 + seq % 7)),
        })
        .collect()
}

/// Parses data written by [`records`] back into (producer, seq, index).
fn origin(data: &[u8]) -> (usize, usize, usize) {
    let text = std::str::from_utf8(data).unwrap();
    let first = text.split('-').collect::<Vec<_>>();
    let num = |s: &str, prefix: char| s.strip_prefix(prefix).unwrap().parse().unwrap();
    let (p, s, r) = (num(first[0], 'p'), num(first[1], 's'), num(first[2], 'r'));
    assert_eq!(text, format!("p{p}-s{s}-r{r}-").repeat(1 + s % 7));
    (p, s, r)
}

#[test]
fn reopen_after_drop_without_close_keeps_every_append() {
    let tmp = TempDir::new().unwrap();
    let config = LogConfig {
        segment_bytes: 4096,
        sync: SyncMode::Fdatasync,
    };
    let log = ShardLog::open(tmp.path(), config).unwrap();
    let (tx, rx) = mpsc::channel();
    for seq in 0..200 {
        let tx = tx.clone();
        log.append(
            records(0, seq),
            Box::new(move |r| tx.send((seq, r)).unwrap()),
        );
    }
    drop(tx);
    // Dropped with appends still queued: they are committed before the writer stops.
    drop(log);
    let mut acks: Vec<_> = rx.iter().map(|(seq, r)| (seq, r.unwrap())).collect();
    assert_eq!(acks.len(), 200);
    acks.sort_by_key(|(seq, _)| *seq);

    let log = ShardLog::open(tmp.path(), config).unwrap();
    let expected_end: u64 = (0..200).map(|seq| records(0, seq).len() as u64).sum();
    assert_eq!(log.end_offset(), expected_end);
    assert!(log.segment_count() > 1);
    for (seq, ack) in acks {
        let got = log
            .read(ack.first_offset, ack.count as usize, usize::MAX)
            .unwrap();
        let want = records(0, seq);
        assert_eq!(got.len(), want.len());
        for (g, w) in got.iter().zip(want) {
            assert_eq!(g.partition_key, w.partition_key);
            assert_eq!(g.data, w.data);
            assert_eq!(g.arrival_ms, ack.arrival_ms);
        }
    }
    let next = log.end_offset();
    let (tx, rx) = mpsc::channel();
    log.append(records(1, 0), Box::new(move |r| tx.send(r).unwrap()));
    assert_eq!(rx.recv().unwrap().unwrap().first_offset, next);
}

/// Copies the segment files of `from` into `to` while the log is being written, then extends the
/// last copy with the first `torn` bytes that the writer appended to that file afterwards: the
/// files of a process killed in the middle of writing a round. Returns the length of the last
/// copy before it was extended.
fn crash_copy(from: &Path, to: &Path, torn: impl Fn(u64) -> u64) -> (PathBuf, u64) {
    fs::create_dir_all(to).unwrap();
    let mut names: Vec<_> = fs::read_dir(from)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| n.to_string_lossy().ends_with(".log"))
        .collect();
    names.sort();
    for name in &names {
        fs::copy(from.join(name), to.join(name)).unwrap();
    }
    let last = names.last().unwrap();
    let copied = fs::metadata(to.join(last)).unwrap().len();
    let deadline = Instant::now() + Duration::from_secs(5);
    let later = loop {
        let rolled = fs::read_dir(from)
            .unwrap()
            .any(|e| e.unwrap().file_name() > *last);
        let later = fs::read(from.join(last)).unwrap();
        if later.len() as u64 > copied || rolled || Instant::now() > deadline {
            break later;
        }
        thread::sleep(Duration::from_millis(1));
    };
    let grown = later.len() as u64 - copied;
    if grown > 0 {
        let k = torn(grown);
        let mut f = fs::OpenOptions::new()
            .append(true)
            .open(to.join(last))
            .unwrap();
        f.write_all(&later[copied as usize..(copied + k) as usize])
            .unwrap();
    }
    (to.join(last), copied)
}

#[test]
fn copies_taken_mid_write_recover_every_acknowledged_append_and_no_partial_one() {
    const PRODUCERS: usize = 4;
    let tmp = TempDir::new().unwrap();
    let live = tmp.path().join("live");
    let config = LogConfig {
        segment_bytes: 64 << 10,
        sync: SyncMode::Fdatasync,
    };
    let log = Arc::new(ShardLog::open(&live, config).unwrap());
    let acked = Arc::new(Mutex::new(BTreeMap::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let producers: Vec<_> = (0..PRODUCERS)
        .map(|p| {
            let (log, acked, stop) = (Arc::clone(&log), Arc::clone(&acked), Arc::clone(&stop));
            thread::spawn(move || {
                let mut seq = 0;
                while !stop.load(Ordering::Relaxed) {
                    let (tx, rx) = mpsc::channel();
                    for _ in 0..8 {
                        let (tx, acked) = (tx.clone(), Arc::clone(&acked));
                        log.append(
                            records(p, seq),
                            Box::new(move |r| {
                                let ack = r.unwrap();
                                acked.lock().unwrap().insert((p, seq), ack);
                                tx.send(()).unwrap();
                            }),
                        );
                        seq += 1;
                    }
                    drop(tx);
                    rx.iter().for_each(drop);
                }
            })
        })
        .collect();

    let mut truncated = 0;
    for round in 0..8 {
        thread::sleep(Duration::from_millis(15));
        let acked_before = acked.lock().unwrap().clone();
        let copy = tmp.path().join(format!("crash-{round}"));
        // A fixed spread of cut points between 1 and all of the bytes written after the copy.
        let (last, copied) = crash_copy(&live, &copy, |grown| {
            1 + (grown * (2 * round + 1)) / 17 % grown
        });
        let torn_len = fs::metadata(&last).unwrap().len();

        let recovered = ShardLog::open(&copy, config).unwrap();
        let recovered_len = fs::metadata(&last).unwrap().len();
        assert!(
            recovered_len >= copied,
            "recovery cut into what was there before the crash"
        );
        truncated += usize::from(recovered_len < torn_len);
        let all = recovered.read(0, usize::MAX, usize::MAX).unwrap();
        assert_eq!(all.len() as u64, recovered.end_offset());
        // Every record belongs to a whole append: records of (p, seq) are consecutive and all
        // there.
        let mut appends = BTreeMap::new();
        for (i, r) in all.iter().enumerate() {
            assert_eq!(r.offset, i as u64);
            let (p, seq, idx) = origin(&r.data);
            assert_eq!(r.partition_key, format!("p{p}"));
            let first = *appends.entry((p, seq)).or_insert(r.offset);
            assert_eq!(
                r.offset,
                first + idx as u64,
                "record {idx} of append {p}/{seq}"
            );
        }
        for (&(p, seq), &first) in &appends {
            let n = records(p, seq).len() as u64;
            assert!(
                first + n <= recovered.end_offset(),
                "append {p}/{seq} is cut"
            );
        }
        // Every acknowledged append is there, at its acknowledged offset.
        for (key, ack) in &acked_before {
            assert_eq!(
                appends.get(key),
                Some(&ack.first_offset),
                "acked append {key:?}"
            );
        }
        let end = recovered.end_offset();
        let (tx, rx) = mpsc::channel();
        recovered.append(records(9, 0), Box::new(move |r| tx.send(r).unwrap()));
        assert_eq!(rx.recv().unwrap().unwrap().first_offset, end);
    }
    stop.store(true, Ordering::Relaxed);
    for p in producers {
        p.join().unwrap();
    }
    assert!(truncated > 0, "no copy had a torn tail to recover from");
}
