//! Behaviour of `ShardLog` as a whole: group commit, recovery, reads, time index and retention.

#![allow(clippy::unwrap_used)]

use std::collections::HashSet;
use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::Duration;

use tempfile::TempDir;

use super::*;

fn config(segment_bytes: u64) -> LogConfig {
    LogConfig {
        segment_bytes,
        sync: SyncMode::None,
    }
}

/// Partition key of the record at `offset` in logs filled by [`append_records`].
fn key(offset: u64) -> String {
    format!("pk-{}", offset % 7)
}

/// Data of the record at `offset` in logs filled by [`append_records`]; sizes vary.
fn body(offset: u64) -> Bytes {
    Bytes::from(format!("payload of record {offset}|").repeat(1 + (offset % 5) as usize))
}

fn append_wait(log: &ShardLog, records: Vec<RecordIn>) -> Result<AppendAck, LogError> {
    let (tx, rx) = mpsc::channel();
    log.append(
        records,
        Box::new(move |r| {
            tx.send(r).unwrap();
        }),
    );
    rx.recv_timeout(Duration::from_secs(30)).unwrap()
}

/// Appends one batch of `n` records whose contents are derived from their offsets.
fn append_records(log: &ShardLog, n: u64) -> AppendAck {
    let first = log.end_offset();
    let records = (first..first + n)
        .map(|o| RecordIn {
            partition_key: key(o),
            data: body(o),
        })
        .collect();
    let ack = append_wait(log, records).unwrap();
    assert_eq!(ack.first_offset, first);
    assert_eq!(u64::from(ack.count), n);
    ack
}

/// Reads everything retained and checks it is gap-free and matches [`append_records`].
fn check_all(log: &ShardLog) {
    let records = log.read(0, usize::MAX, usize::MAX).unwrap();
    let start = log.start_offset();
    assert_eq!(records.len() as u64, log.end_offset() - start);
    let mut prev_arrival = i64::MIN;
    for (i, r) in records.iter().enumerate() {
        assert_eq!(r.offset, start + i as u64);
        assert_eq!(r.partition_key, key(r.offset));
        assert_eq!(r.data, body(r.offset), "record {}", r.offset);
        assert!(r.arrival_ms >= prev_arrival);
        prev_arrival = r.arrival_ms;
    }
}

fn segment_files(dir: &Path) -> Vec<(u64, PathBuf)> {
    let mut files: Vec<_> = fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| {
            let e = e.unwrap();
            segment::parse_file_name(&e.file_name()).map(|b| (b, e.path()))
        })
        .collect();
    files.sort();
    files
}

/// Holds the writer inside the callback of one append until released, so that the appends
/// made meanwhile all land in the next round.
struct Gate {
    release: mpsc::Sender<()>,
}

fn block_writer(log: &ShardLog) -> Gate {
    let (entered_tx, entered_rx) = mpsc::channel();
    let (release, gate) = mpsc::channel::<()>();
    log.append(
        vec![RecordIn {
            partition_key: "gate".into(),
            data: Bytes::from_static(b"gate"),
        }],
        Box::new(move |r| {
            r.unwrap();
            entered_tx.send(()).unwrap();
            let _ = gate.recv();
        }),
    );
    entered_rx.recv_timeout(Duration::from_secs(30)).unwrap();
    Gate { release }
}

impl Gate {
    fn open(self) {
        self.release.send(()).unwrap();
    }
}

#[test]
fn open_creates_the_directory_and_first_segment() {
    let tmp = TempDir::new().unwrap();
    let dir = tmp.path().join("stream").join("shard-0");
    let log = ShardLog::open(&dir, LogConfig::default()).unwrap();
    assert_eq!(log.start_offset(), 0);
    assert_eq!(log.end_offset(), 0);
    assert_eq!(log.last_arrival_ms(), None);
    assert_eq!(log.size_bytes(), 0);
    assert_eq!(log.offset_at_time(0), 0);
    assert!(log.read(0, 10, 1 << 20).unwrap().is_empty());
    let files = segment_files(&dir);
    assert_eq!(files.len(), 1);
    assert!(files[0].1.ends_with("00000000000000000000.log"));
}

#[test]
fn offsets_are_dense_across_rounds_and_segment_rolls() {
    let tmp = TempDir::new().unwrap();
    let log = ShardLog::open(tmp.path(), config(2048)).unwrap();
    let mut expected = 0;
    for round in 0..60 {
        let n = 1 + round % 4;
        let ack = append_records(&log, n);
        assert_eq!(ack.first_offset, expected);
        expected += n;
        assert_eq!(log.end_offset(), expected);
    }
    assert!(log.segment_count() > 3, "{} segments", log.segment_count());
    check_all(&log);

    let files = segment_files(tmp.path());
    assert_eq!(files.len(), log.segment_count());
    for (i, (base, _)) in files.iter().enumerate() {
        match log.read(*base, 1, 0).unwrap().first() {
            Some(first) => assert_eq!(first.offset, *base),
            None => {
                assert_eq!(i, files.len() - 1, "only the active segment may be empty");
                assert_eq!(*base, expected);
            }
        }
    }

    drop(log);
    let log = ShardLog::open(tmp.path(), config(2048)).unwrap();
    assert_eq!(log.end_offset(), expected);
    check_all(&log);
    assert_eq!(append_records(&log, 3).first_offset, expected);
    check_all(&log);
}

#[test]
fn concurrent_producers_are_acked_once_with_unique_contiguous_offsets() {
    const THREADS: usize = 8;
    const APPENDS: usize = 1000;
    let tmp = TempDir::new().unwrap();
    let log = Arc::new(
        ShardLog::open(
            tmp.path(),
            LogConfig {
                segment_bytes: 64 << 10,
                sync: SyncMode::Fdatasync,
            },
        )
        .unwrap(),
    );
    let rounds = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&rounds);
    log.set_commit_listener(Box::new(move |_| {
        counter.fetch_add(1, Ordering::SeqCst);
    }));
    let (tx, rx) = mpsc::channel();
    let producers: Vec<_> = (0..THREADS)
        .map(|t| {
            let log = Arc::clone(&log);
            let tx = tx.clone();
            thread::spawn(move || {
                for seq in 0..APPENDS {
                    let records = (0..1 + seq % 3)
                        .map(|i| RecordIn {
                            partition_key: format!("t{t}"),
                            data: Bytes::from(format!("t{t}-s{seq}-r{i}")),
                        })
                        .collect();
                    let tx = tx.clone();
                    log.append(
                        records,
                        Box::new(move |r| {
                            tx.send((t, seq, r)).unwrap();
                        }),
                    );
                }
            })
        })
        .collect();
    drop(tx);
    for p in producers {
        p.join().unwrap();
    }
    // The channel closes once every callback has run and been dropped.
    let acks: Vec<_> = rx.iter().collect();
    assert_eq!(acks.len(), THREADS * APPENDS);

    let mut seen = HashSet::new();
    let mut ranges = Vec::new();
    let mut last_per_thread = [None::<u64>; THREADS];
    let mut acks_sorted = acks;
    acks_sorted.sort_by_key(|(t, seq, _)| (*t, *seq));
    for (t, seq, result) in acks_sorted {
        assert!(seen.insert((t, seq)), "append {t}/{seq} acked twice");
        let ack = result.unwrap();
        assert_eq!(ack.count as usize, 1 + seq % 3);
        if let Some(prev) = last_per_thread[t] {
            assert!(
                ack.first_offset > prev,
                "appends of one thread commit in order"
            );
        }
        last_per_thread[t] = Some(ack.first_offset);
        ranges.push((ack.first_offset, ack.count, t, seq));
    }
    ranges.sort();
    let mut next = 0;
    for &(first, count, t, seq) in &ranges {
        assert_eq!(first, next, "offsets are unique and contiguous");
        next += u64::from(count);
        let records = log.read(first, count as usize, usize::MAX).unwrap();
        assert_eq!(records.len(), count as usize);
        for (i, r) in records.iter().enumerate() {
            assert_eq!(r.offset, first + i as u64);
            assert_eq!(r.partition_key, format!("t{t}"));
            assert_eq!(r.data, format!("t{t}-s{seq}-r{i}").as_bytes());
        }
    }
    assert_eq!(log.end_offset(), next);

    let all = log.read(0, usize::MAX, usize::MAX).unwrap();
    assert_eq!(all.len() as u64, next);
    assert!(all.windows(2).all(|w| w[0].arrival_ms <= w[1].arrival_ms));
    log.close();
    let rounds = rounds.load(Ordering::SeqCst);
    assert!((1..=THREADS * APPENDS).contains(&rounds));
}

#[test]
fn appends_queued_during_a_round_share_the_next_round() {
    let tmp = TempDir::new().unwrap();
    let log = ShardLog::open(tmp.path(), config(1 << 20)).unwrap();
    let rounds = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&rounds);
    log.set_commit_listener(Box::new(move |end| seen.lock().unwrap().push(end)));

    let gate = block_writer(&log);
    let (tx, rx) = mpsc::channel();
    for i in 0..100u64 {
        let tx = tx.clone();
        log.append(
            vec![RecordIn {
                partition_key: "k".into(),
                data: Bytes::from(i.to_string()),
            }],
            Box::new(move |r| tx.send((i, r.unwrap())).unwrap()),
        );
    }
    drop(tx);
    gate.open();
    let acks: Vec<_> = rx.iter().collect();
    assert_eq!(acks.len(), 100);
    for (n, (i, ack)) in acks.iter().enumerate() {
        assert_eq!(n as u64, *i, "callbacks run in append order");
        assert_eq!(ack.first_offset, 1 + i);
        assert_eq!(ack.arrival_ms, acks[0].1.arrival_ms, "one round, one stamp");
    }
    log.close();
    assert_eq!(*rounds.lock().unwrap(), vec![1, 101]);
}

#[test]
fn torn_tail_recovers_to_the_last_whole_batch() {
    let tmp = TempDir::new().unwrap();
    let dir = tmp.path();
    let log = ShardLog::open(dir, config(1 << 20)).unwrap();
    for _ in 0..3 {
        append_records(&log, 3);
    }
    let whole_len = log.size_bytes();
    let last = append_records(&log, 4);
    let full_len = log.size_bytes();
    drop(log);
    let path = segment_files(dir)[0].1.clone();
    let original = fs::read(&path).unwrap();
    assert_eq!(original.len() as u64, full_len);

    for cut in whole_len..full_len {
        fs::write(&path, &original[..cut as usize]).unwrap();
        let log = ShardLog::open(dir, config(1 << 20)).unwrap();
        assert_eq!(log.end_offset(), 9, "cut at {cut}");
        assert_eq!(
            fs::metadata(&path).unwrap().len(),
            whole_len,
            "cut at {cut}"
        );
        check_all(&log);
        assert_eq!(append_records(&log, 2).first_offset, 9);
        check_all(&log);
    }

    // Tails that are not a valid next batch: zeros, noise, a bad CRC, a wrong base offset, an
    // arrival time that goes backwards.
    let mut bad_crc = original[whole_len as usize..].to_vec();
    bad_crc[9..17].copy_from_slice(&13u64.to_le_bytes());
    let mut wrong_offset = Vec::new();
    batch::encode(
        &mut wrong_offset,
        99,
        last.arrival_ms,
        &[record_in("x", "y")],
    );
    let mut earlier = Vec::new();
    batch::encode(
        &mut earlier,
        13,
        last.arrival_ms - 1,
        &[record_in("x", "y")],
    );
    let tails: Vec<(&str, Vec<u8>)> = vec![
        ("one zero", vec![0]),
        (
            "zeros shorter than a header",
            vec![0; batch::HEADER_LEN - 1],
        ),
        ("zeroed header", vec![0; batch::HEADER_LEN]),
        ("zeroed page", vec![0; 4096]),
        ("magic only", vec![batch::MAGIC]),
        ("noise", b"this is not a batch header, just noise".to_vec()),
        ("bad crc", bad_crc),
        ("wrong base offset", wrong_offset),
        ("arrival goes back", earlier),
    ];
    for (name, tail) in tails {
        let mut bytes = original.clone();
        bytes.extend_from_slice(&tail);
        fs::write(&path, &bytes).unwrap();
        let log = ShardLog::open(dir, config(1 << 20)).unwrap();
        assert_eq!(log.end_offset(), 13, "{name}");
        assert_eq!(fs::metadata(&path).unwrap().len(), full_len, "{name}");
        assert_eq!(append_records(&log, 1).first_offset, 13, "{name}");
        check_all(&log);
    }

    // Control: a valid next batch is kept, so the checks above are what rejected the tails.
    let mut good = Vec::new();
    batch::encode(
        &mut good,
        13,
        last.arrival_ms,
        &[record_in(&key(13), body(13))],
    );
    let mut bytes = original.clone();
    bytes.extend_from_slice(&good);
    fs::write(&path, &bytes).unwrap();
    let log = ShardLog::open(dir, config(1 << 20)).unwrap();
    assert_eq!(log.end_offset(), 14);
    check_all(&log);
}

fn record_in(key: &str, data: impl Into<Bytes>) -> RecordIn {
    RecordIn {
        partition_key: key.into(),
        data: data.into(),
    }
}

fn append_at_wait(log: &ShardLog, records: Vec<RecordIn>, arrival_ms: i64) -> AppendAck {
    let (tx, rx) = mpsc::channel();
    log.append_at(
        records,
        arrival_ms,
        Box::new(move |r| {
            tx.send(r).unwrap();
        }),
    );
    rx.recv_timeout(Duration::from_secs(30)).unwrap().unwrap()
}

#[test]
fn append_at_stamps_the_given_time_and_never_goes_backwards() {
    let dir = TempDir::new().unwrap();
    let log = ShardLog::open(dir.path(), config(1024)).unwrap();
    let first = append_at_wait(&log, vec![record_in("a", "1"), record_in("b", "2")], 5_000);
    assert_eq!((first.first_offset, first.arrival_ms), (0, 5_000));
    // An earlier stamp is raised to the previous one.
    let second = append_at_wait(&log, vec![record_in("c", "3")], 4_000);
    assert_eq!((second.first_offset, second.arrival_ms), (2, 5_000));
    let third = append_at_wait(&log, vec![record_in("d", "4")], 7_000);
    assert_eq!(third.arrival_ms, 7_000);
    let stamps: Vec<i64> = log
        .read(0, 10, 1 << 20)
        .unwrap()
        .iter()
        .map(|r| r.arrival_ms)
        .collect();
    assert_eq!(stamps, vec![5_000, 5_000, 5_000, 7_000]);
    assert_eq!(log.offset_at_time(6_000), 3);
    drop(log);
    // The stamps survive a reopen.
    let log = ShardLog::open(dir.path(), config(1024)).unwrap();
    assert_eq!(log.read(3, 1, 1 << 20).unwrap()[0].arrival_ms, 7_000);
}

#[test]
fn durable_segments_copied_elsewhere_open_as_the_same_log() {
    let dir = TempDir::new().unwrap();
    let log = ShardLog::open(dir.path(), config(1024)).unwrap();
    for _ in 0..20 {
        append_records(&log, 7);
    }
    let end = log.end_offset();
    let files = log.durable_segments().unwrap();
    assert!(
        files.len() > 2,
        "expected several segments, got {}",
        files.len()
    );
    // Appends after the view do not change what the view holds.
    append_records(&log, 3);
    let copy = TempDir::new().unwrap();
    for (name, file, size) in files {
        let mut out = fs::File::create(copy.path().join(name)).unwrap();
        std::io::copy(&mut std::io::Read::take(file, size), &mut out).unwrap();
    }
    let copied = ShardLog::open(copy.path(), config(1024)).unwrap();
    assert_eq!(copied.end_offset(), end);
    check_all(&copied);
}

/// A closed log of at least four segments filled by [`append_records`]; returns the end offset.
fn multi_segment_log(dir: &Path) -> u64 {
    let log = ShardLog::open(dir, config(1024)).unwrap();
    while log.segment_count() < 5 {
        append_records(&log, 3);
    }
    log.end_offset()
}

fn expect_corrupt(result: Result<ShardLog, LogError>, expected_segment: &Path) -> u64 {
    match result {
        Err(LogError::Corrupt {
            segment, position, ..
        }) => {
            assert_eq!(segment, expected_segment);
            position
        }
        other => panic!(
            "expected Corrupt in {}, got {other:?}",
            expected_segment.display()
        ),
    }
}

#[test]
fn corruption_in_a_sealed_segment_is_an_error() {
    // A bad magic byte in the middle of a sealed segment.
    let tmp = TempDir::new().unwrap();
    multi_segment_log(tmp.path());
    let files = segment_files(tmp.path());
    let middle = &files[1].1;
    let mut bytes = fs::read(middle).unwrap();
    let second_batch = u32::from_le_bytes(bytes[1..5].try_into().unwrap()) as usize;
    assert!(second_batch < bytes.len(), "the segment holds two batches");
    bytes[second_batch] = 0x42;
    fs::write(middle, &bytes).unwrap();
    let position = expect_corrupt(ShardLog::open(tmp.path(), config(1024)), middle);
    assert_eq!(position, second_batch as u64);

    // A sealed segment cut short (a torn tail is only legitimate in the last segment).
    let tmp = TempDir::new().unwrap();
    multi_segment_log(tmp.path());
    let middle = segment_files(tmp.path())[2].1.clone();
    let len = fs::metadata(&middle).unwrap().len();
    OpenOptions::new()
        .write(true)
        .open(&middle)
        .unwrap()
        .set_len(len - 1)
        .unwrap();
    expect_corrupt(ShardLog::open(tmp.path(), config(1024)), &middle);

    // Zeros after the last batch of a sealed segment.
    let tmp = TempDir::new().unwrap();
    multi_segment_log(tmp.path());
    let middle = segment_files(tmp.path())[1].1.clone();
    OpenOptions::new()
        .append(true)
        .open(&middle)
        .unwrap()
        .write_all(&[0; 64])
        .unwrap();
    expect_corrupt(ShardLog::open(tmp.path(), config(1024)), &middle);

    // A missing segment leaves a gap in the offsets.
    let tmp = TempDir::new().unwrap();
    multi_segment_log(tmp.path());
    let files = segment_files(tmp.path());
    fs::remove_file(&files[1].1).unwrap();
    expect_corrupt(ShardLog::open(tmp.path(), config(1024)), &files[2].1);
}

#[test]
fn corrupt_data_in_a_sealed_segment_fails_the_read_not_the_reader() {
    let tmp = TempDir::new().unwrap();
    let end = multi_segment_log(tmp.path());
    let files = segment_files(tmp.path());
    let (middle_base, middle) = &files[1];
    let next_base = files[2].0;
    let mut bytes = fs::read(middle).unwrap();
    let last = bytes.len() - 1; // the last byte of the last record's data
    bytes[last] ^= 0x01;
    fs::write(middle, &bytes).unwrap();

    // Headers are intact, so the log opens; the bad batch is caught when read.
    let log = ShardLog::open(tmp.path(), config(1024)).unwrap();
    assert_eq!(log.end_offset(), end);
    match log.read(next_base - 1, 10, usize::MAX) {
        Err(LogError::Corrupt { segment, .. }) => assert_eq!(&segment, middle),
        other => panic!("expected Corrupt, got {other:?}"),
    }
    match log.read(0, usize::MAX, usize::MAX) {
        Err(LogError::Corrupt { segment, .. }) => assert_eq!(&segment, middle),
        other => panic!("expected Corrupt, got {other:?}"),
    }
    // Records outside the damaged batch are still served.
    let first = log.read(*middle_base, 1, 0).unwrap();
    assert_eq!(first[0].data, body(*middle_base));
    let after = log.read(next_base, usize::MAX, usize::MAX).unwrap();
    assert_eq!(after.len() as u64, end - next_base);
}

#[test]
fn read_limits() {
    let tmp = TempDir::new().unwrap();
    // Every round fills a segment: the three batches are in three segments.
    let log = ShardLog::open(tmp.path(), config(300)).unwrap();
    let a: Vec<_> = (0..10u8).map(|i| record_in("k", vec![i; 100])).collect();
    append_wait(&log, a).unwrap(); // offsets 0..10, 101 bytes each
    append_wait(&log, vec![record_in("k", vec![10; 1000])]).unwrap(); // offset 10, 1001 bytes
    let c: Vec<_> = (11..31u8).map(|i| record_in("k", vec![i; 10])).collect();
    append_wait(&log, c).unwrap(); // offsets 11..31, 11 bytes each
    assert_eq!(log.end_offset(), 31);
    assert_eq!(log.segment_count(), 4);

    let offsets = |from, max_records, max_bytes| -> Vec<u64> {
        let records = log.read(from, max_records, max_bytes).unwrap();
        for r in &records {
            assert_eq!(r.data[0] as u64, r.offset, "data of {}", r.offset);
        }
        records.iter().map(|r| r.offset).collect()
    };
    let range = |r: std::ops::Range<u64>| r.collect::<Vec<_>>();
    assert_eq!(offsets(0, 5, usize::MAX), range(0..5));
    assert_eq!(offsets(3, 4, usize::MAX), range(3..7));
    assert_eq!(offsets(0, usize::MAX, 303), range(0..3));
    assert_eq!(offsets(0, usize::MAX, 302), range(0..2));
    assert_eq!(offsets(9, usize::MAX, 150), vec![9]);
    assert_eq!(
        offsets(10, usize::MAX, 5),
        vec![10],
        "one record even if too large"
    );
    assert_eq!(
        offsets(10, usize::MAX, 0),
        vec![10],
        "one record even if too large"
    );
    assert_eq!(offsets(10, usize::MAX, 1001 + 3 * 11), range(10..14));
    assert_eq!(offsets(5, 6, usize::MAX), range(5..11), "across segments");
    assert_eq!(offsets(5, usize::MAX, usize::MAX), range(5..31));
    assert_eq!(offsets(0, usize::MAX, 10 * 101 + 1001), range(0..11));
    assert!(offsets(0, 0, usize::MAX).is_empty());
    assert!(offsets(31, 10, usize::MAX).is_empty());
    assert!(offsets(u64::MAX, 10, usize::MAX).is_empty());

    // Records of one batch are slices of one buffer, not copies.
    let records = log.read(0, 2, usize::MAX).unwrap();
    let stride = batch::RECORD_OVERHEAD + 1 + 100;
    assert_eq!(
        records[1].data.as_ptr() as usize - records[0].data.as_ptr() as usize,
        stride
    );
}

#[test]
fn offset_at_time_finds_the_first_record_at_or_after_a_time() {
    let tmp = TempDir::new().unwrap();
    let log = ShardLog::open(tmp.path(), config(512)).unwrap();
    let mut acks = Vec::new();
    for _ in 0..12 {
        acks.push(append_records(&log, 2));
        thread::sleep(Duration::from_millis(3));
    }
    assert!(log.segment_count() > 2);
    let check = |log: &ShardLog| {
        let end = log.end_offset();
        assert_eq!(log.offset_at_time(i64::MIN), 0);
        for (k, ack) in acks.iter().enumerate() {
            assert!(k == 0 || ack.arrival_ms >= acks[k - 1].arrival_ms + 3);
            assert_eq!(log.offset_at_time(ack.arrival_ms), ack.first_offset);
            assert_eq!(log.offset_at_time(ack.arrival_ms - 1), ack.first_offset);
            let next = acks.get(k + 1).map_or(end, |a| a.first_offset);
            assert_eq!(log.offset_at_time(ack.arrival_ms + 1), next);
        }
        assert_eq!(log.offset_at_time(i64::MAX), end);
        assert_eq!(log.last_arrival_ms(), acks.last().map(|a| a.arrival_ms));
    };
    check(&log);
    drop(log);
    let log = ShardLog::open(tmp.path(), config(512)).unwrap();
    check(&log);
}

#[test]
fn trim_before_removes_only_expired_whole_segments() {
    let tmp = TempDir::new().unwrap();
    let dir = tmp.path();
    let log = ShardLog::open(dir, config(600)).unwrap();
    let mut arrival_of = Vec::new(); // per offset
    let mut acks = Vec::new();
    for _ in 0..10 {
        let ack = append_records(&log, 3);
        arrival_of.extend([ack.arrival_ms; 3]);
        acks.push(ack);
        thread::sleep(Duration::from_millis(3));
    }
    let end = log.end_offset();
    let files = segment_files(dir);
    assert!(files.len() > 3);
    let cutoff = acks[5].arrival_ms;
    // Segments whose last record is older than the cutoff, counted from the file names alone.
    let expected = files
        .windows(2)
        .take_while(|w| arrival_of[(w[1].0 - 1) as usize] < cutoff)
        .count();
    assert!(expected >= 1);

    assert_eq!(log.trim_before(cutoff).unwrap(), expected);
    let remaining = segment_files(dir);
    assert_eq!(remaining, files[expected..]);
    assert_eq!(log.segment_count(), remaining.len());
    assert_eq!(log.start_offset(), remaining[0].0);
    assert!(log.start_offset() <= acks[5].first_offset);
    assert!(arrival_of[log.start_offset() as usize - 1] < cutoff);
    assert_eq!(log.end_offset(), end);
    check_all(&log);
    let first = log.read(0, 1, 0).unwrap();
    assert_eq!(
        first[0].offset,
        log.start_offset(),
        "reads below start are raised"
    );
    assert_eq!(log.offset_at_time(i64::MIN), log.start_offset());
    assert_eq!(
        log.trim_before(cutoff).unwrap(),
        0,
        "nothing more is expired"
    );

    // Everything expired: the active segment is sealed so that it can go too.
    let removed = log.trim_before(acks[9].arrival_ms + 1).unwrap();
    assert_eq!(removed, remaining.len());
    assert_eq!(log.start_offset(), end);
    assert_eq!(log.end_offset(), end);
    assert_eq!(log.segment_count(), 1);
    assert!(log.read(0, 10, usize::MAX).unwrap().is_empty());
    assert_eq!(log.offset_at_time(i64::MIN), end);
    assert_eq!(
        segment_files(dir),
        vec![(end, dir.join(segment::file_name(end)))]
    );
    assert_eq!(append_records(&log, 2).first_offset, end);
    check_all(&log);
    drop(log);

    let log = ShardLog::open(dir, config(600)).unwrap();
    assert_eq!(log.start_offset(), end);
    assert_eq!(log.end_offset(), end + 2);
    check_all(&log);
}

#[test]
fn a_read_planned_on_a_segment_that_is_then_trimmed_plans_again() {
    let tmp = TempDir::new().unwrap();
    let log = ShardLog::open(tmp.path(), config(256)).unwrap();
    for _ in 0..6 {
        append_records(&log, 2);
    }
    let plan = read(&log.shared.segments)
        .plan_read(0, 10, usize::MAX)
        .unwrap();
    let removed = log.trim_before(i64::MAX).unwrap();
    assert!(removed > 1);
    let mut state = ReadState {
        out: Vec::new(),
        bytes: 0,
        max_records: 10,
        max_bytes: usize::MAX,
        done: false,
    };
    assert_eq!(plan.execute(0, &mut state).unwrap(), Executed::SegmentGone);
    assert!(state.out.is_empty());
    // The public read plans again from the new start instead of failing.
    assert!(log.read(0, 10, usize::MAX).unwrap().is_empty());
    append_records(&log, 1);
    check_all(&log);
}

/// Expired segments handed to a deleter leave the log (and their segment names) at once and
/// their files follow; a crash before they are gone leaves files that opening removes.
#[test]
fn trim_before_with_a_deleter_renames_expired_segments_and_opening_removes_leftovers() {
    let tmp = TempDir::new().unwrap();
    let dir = tmp.path();
    let log = ShardLog::open(dir, config(256)).unwrap();
    for _ in 0..6 {
        append_records(&log, 2);
    }
    let end = log.end_offset();
    let before = segment_files(dir).len();
    assert!(before > 2);
    let deleter = Deleter::start("test-trim").unwrap();
    let removed = log.trim_before_with(i64::MAX, &deleter).unwrap();
    assert!(removed + 1 >= before, "{removed} of {before}");
    assert_eq!(
        segment_files(dir),
        vec![(end, dir.join(segment::file_name(end)))]
    );
    let doomed = |dir: &Path| {
        fs::read_dir(dir)
            .unwrap()
            .filter(|e| segment::is_doomed_name(&e.as_ref().unwrap().file_name()))
            .count()
    };
    deleter.wait_idle();
    assert_eq!(doomed(dir), 0, "the deleter removed them");
    append_records(&log, 1);
    drop(log);

    // A crash while one waited for deletion.
    let leftover = segment::doomed_name(&dir.join(segment::file_name(0)));
    fs::write(&leftover, b"half cut").unwrap();
    let log = ShardLog::open(dir, config(256)).unwrap();
    assert!(
        !leftover.exists(),
        "opening removes what waited for deletion"
    );
    assert_eq!(log.start_offset(), end);
    check_all(&log);
}

#[test]
fn trim_before_keeps_an_active_segment_with_unexpired_data() {
    let tmp = TempDir::new().unwrap();
    let log = ShardLog::open(tmp.path(), config(1 << 20)).unwrap();
    let ack = append_records(&log, 3);
    assert_eq!(log.trim_before(ack.arrival_ms).unwrap(), 0);
    assert_eq!(log.segment_count(), 1);
    assert_eq!(log.start_offset(), 0);
    check_all(&log);
}

#[test]
fn reads_see_only_committed_data() {
    let tmp = TempDir::new().unwrap();
    let log = ShardLog::open(tmp.path(), config(1 << 20)).unwrap();
    let ack = append_records(&log, 3);
    // Bytes past the committed end, as if a round had been written but not yet synced.
    let mut stray = Vec::new();
    batch::encode(
        &mut stray,
        3,
        ack.arrival_ms,
        &[record_in("stray", "not committed"), record_in("stray", "x")],
    );
    let path = segment_files(tmp.path())[0].1.clone();
    OpenOptions::new()
        .append(true)
        .open(&path)
        .unwrap()
        .write_all(&stray)
        .unwrap();
    assert_eq!(log.end_offset(), 3);
    assert!(log.read(3, 10, usize::MAX).unwrap().is_empty());
    assert_eq!(log.read(0, 10, usize::MAX).unwrap().len(), 3);

    // The next round is written at the committed end, over the stray bytes.
    assert_eq!(append_records(&log, 2).first_offset, 3);
    check_all(&log);
    drop(log);
    let log = ShardLog::open(tmp.path(), config(1 << 20)).unwrap();
    assert_eq!(log.end_offset(), 5);
    check_all(&log);
}

#[test]
fn a_failed_sync_fails_the_whole_round_and_poisons_the_log() {
    let tmp = TempDir::new().unwrap();
    let log = ShardLog::open(tmp.path(), config(1 << 20)).unwrap();
    append_records(&log, 2);
    let gate = block_writer(&log); // offset 2
    let (tx, rx) = mpsc::channel();
    for i in 0..5 {
        let tx = tx.clone();
        log.append(
            vec![record_in("k", format!("lost {i}"))],
            Box::new(move |r| tx.send(r).unwrap()),
        );
    }
    drop(tx);
    log.shared.fail_next_sync.store(true, Ordering::SeqCst);
    gate.open();
    let results: Vec<_> = rx.iter().collect();
    assert_eq!(results.len(), 5);
    for r in results {
        assert!(matches!(r, Err(LogError::Io { .. })), "{r:?}");
    }
    assert_eq!(log.end_offset(), 3);
    assert!(log.read(3, 10, usize::MAX).unwrap().is_empty());
    assert!(matches!(
        append_wait(&log, vec![record_in("k", "after")]),
        Err(LogError::Poisoned(_))
    ));
    drop(log);

    let log = ShardLog::open(tmp.path(), config(1 << 20)).unwrap();
    assert_eq!(log.end_offset(), 3);
    assert_eq!(
        append_wait(&log, vec![record_in("k", "again")])
            .unwrap()
            .first_offset,
        3
    );
}

#[test]
fn a_log_synced_on_request_syncs_only_what_was_written_since_its_last_sync() {
    let tmp = TempDir::new().unwrap();
    let on_request = LogConfig {
        segment_bytes: 4096,
        sync: SyncMode::OnRequest,
    };
    let log = ShardLog::open(tmp.path(), on_request).unwrap();
    let syncs = || log.shared.requested_syncs.load(Ordering::SeqCst);
    log.sync().unwrap();
    assert_eq!(syncs(), 0, "nothing written, nothing to sync");
    append_records(&log, 3);
    assert_eq!(syncs(), 0, "rounds are not synced as they are written");
    assert_eq!(log.read(0, 10, usize::MAX).unwrap().len(), 3);
    log.sync().unwrap();
    assert_eq!(syncs(), 1);
    log.sync().unwrap();
    assert_eq!(syncs(), 1, "a second sync has nothing to do");

    while log.segment_count() < 2 {
        append_records(&log, 20);
    }
    assert_eq!(syncs(), 2, "the segment left behind by a roll is synced");
    log.sync().unwrap();
    assert_eq!(syncs(), 2, "the roll synced everything written");
    append_records(&log, 1);
    log.sync().unwrap();
    assert_eq!(syncs(), 3);
    let end = log.end_offset();
    drop(log);

    let log = ShardLog::open(tmp.path(), on_request).unwrap();
    assert_eq!(log.end_offset(), end);
    check_all(&log);
}

#[test]
fn a_log_synced_on_request_answers_each_append_on_the_callers_thread_before_returning() {
    let tmp = TempDir::new().unwrap();
    let on_request = LogConfig {
        segment_bytes: 4096,
        sync: SyncMode::OnRequest,
    };
    let log = ShardLog::open(tmp.path(), on_request).unwrap();
    let caller = thread::current().id();
    for o in 0..50u64 {
        let answer = Arc::new(Mutex::new(None));
        let slot = Arc::clone(&answer);
        log.append(
            vec![RecordIn {
                partition_key: key(o),
                data: body(o),
            }],
            Box::new(move |r| {
                *slot.lock().unwrap() = Some((thread::current().id(), r));
            }),
        );
        let (thread, result) = answer
            .lock()
            .unwrap()
            .take()
            .expect("answered before returning");
        assert_eq!(thread, caller);
        assert_eq!(result.unwrap().first_offset, o);
        assert_eq!(log.end_offset(), o + 1, "readable once answered");
    }
    assert!(
        log.segment_count() > 1,
        "rolls happened on the caller's thread too"
    );
    log.close();
    let refused = Arc::new(Mutex::new(None));
    let slot = Arc::clone(&refused);
    log.append(
        vec![record_in("k", "late")],
        Box::new(move |r| *slot.lock().unwrap() = Some(r)),
    );
    assert!(matches!(
        refused.lock().unwrap().take(),
        Some(Err(LogError::Closed))
    ));
    drop(log);

    let log = ShardLog::open(tmp.path(), on_request).unwrap();
    assert_eq!(log.end_offset(), 50);
    check_all(&log);
}

#[test]
fn concurrent_reads_during_appends_and_rolls_see_whole_records() {
    const N: u64 = 3000;
    let tmp = TempDir::new().unwrap();
    let log = Arc::new(ShardLog::open(tmp.path(), config(4096)).unwrap());
    let producer = {
        let log = Arc::clone(&log);
        thread::spawn(move || {
            for o in 0..N {
                // Wait now and then so that there are many small rounds and rolls.
                let (tx, rx) = mpsc::channel();
                log.append(
                    vec![RecordIn {
                        partition_key: key(o),
                        data: body(o),
                    }],
                    Box::new(move |r| {
                        let _ = tx.send(r);
                    }),
                );
                if o % 10 == 0 {
                    rx.recv().unwrap().unwrap();
                }
            }
        })
    };
    let readers: Vec<_> = (0..2)
        .map(|_| {
            let log = Arc::clone(&log);
            thread::spawn(move || {
                let mut next = 0;
                let deadline = std::time::Instant::now() + Duration::from_secs(60);
                while next < N {
                    assert!(std::time::Instant::now() < deadline, "stuck at {next}");
                    let end_before = log.end_offset();
                    let records = log.read(next, 50, 4096).unwrap();
                    assert!(records.len() as u64 <= log.end_offset() - next);
                    // What was durable before the read is readable.
                    assert!(next >= end_before || !records.is_empty());
                    for r in records {
                        assert_eq!(r.offset, next);
                        assert_eq!(r.partition_key, key(next));
                        assert_eq!(r.data, body(next));
                        next += 1;
                    }
                }
            })
        })
        .collect();
    producer.join().unwrap();
    for r in readers {
        r.join().unwrap();
    }
    assert!(log.segment_count() > 10);
}

#[test]
fn close_commits_queued_appends_and_refuses_new_ones() {
    let tmp = TempDir::new().unwrap();
    let log = Arc::new(ShardLog::open(tmp.path(), config(1 << 20)).unwrap());
    let gate = block_writer(&log);
    let (tx, rx) = mpsc::channel();
    let mut queued = 0;
    for _ in 0..50 {
        let tx = tx.clone();
        log.append(
            vec![record_in("k", "v")],
            Box::new(move |r| tx.send(r).unwrap()),
        );
        queued += 1;
    }
    let closer = {
        let log = Arc::clone(&log);
        thread::spawn(move || log.close())
    };
    // Append until the close is seen; appends queued before that still commit.
    loop {
        let (probe_tx, probe_rx) = mpsc::channel();
        let tx = tx.clone();
        log.append(
            vec![record_in("k", "v")],
            Box::new(move |r| {
                if matches!(r, Err(LogError::Closed)) {
                    probe_tx.send(()).unwrap();
                } else {
                    tx.send(r).unwrap();
                }
            }),
        );
        if probe_rx.try_recv().is_ok() {
            break;
        }
        queued += 1;
        thread::sleep(Duration::from_millis(1));
    }
    drop(tx);
    gate.open();
    closer.join().unwrap();
    let results: Vec<_> = rx.iter().collect();
    assert_eq!(results.len(), queued);
    assert!(results.iter().all(Result::is_ok));
    assert_eq!(log.end_offset(), 1 + queued as u64);
    assert!(matches!(
        append_wait(&log, vec![record_in("k", "late")]),
        Err(LogError::Closed)
    ));
    assert_eq!(
        log.read(0, usize::MAX, usize::MAX).unwrap().len(),
        1 + queued
    );
}

#[test]
fn close_from_a_callback_does_not_deadlock() {
    let tmp = TempDir::new().unwrap();
    let log = Arc::new(ShardLog::open(tmp.path(), config(1 << 20)).unwrap());
    let inner = Arc::clone(&log);
    let (tx, rx) = mpsc::channel();
    log.append(
        vec![record_in("k", "v")],
        Box::new(move |r| {
            inner.close();
            tx.send(r).unwrap();
        }),
    );
    assert!(rx.recv_timeout(Duration::from_secs(30)).unwrap().is_ok());
    log.close();
    assert!(matches!(
        append_wait(&log, vec![record_in("k", "late")]),
        Err(LogError::Closed)
    ));
}

#[test]
fn a_panicking_callback_does_not_stop_the_writer() {
    let tmp = TempDir::new().unwrap();
    let log = ShardLog::open(tmp.path(), config(1 << 20)).unwrap();
    log.append(
        vec![record_in("k", "v")],
        Box::new(|_| panic!("callback failure")),
    );
    assert_eq!(
        append_wait(&log, vec![record_in("k", "v")])
            .unwrap()
            .first_offset,
        1
    );
}

#[test]
fn invalid_appends_are_refused_before_queueing() {
    let tmp = TempDir::new().unwrap();
    let log = ShardLog::open(tmp.path(), config(1 << 20)).unwrap();
    let (tx, rx) = mpsc::channel();
    log.append(Vec::new(), Box::new(move |r| tx.send(r).unwrap()));
    assert!(matches!(rx.try_recv(), Ok(Err(LogError::InvalidAppend(_)))));
    let long_key = record_in(&"k".repeat(70_000), "v");
    assert!(matches!(
        append_wait(&log, vec![long_key]),
        Err(LogError::InvalidAppend(_))
    ));
    assert_eq!(log.end_offset(), 0);
}

#[test]
fn a_directory_is_opened_by_one_log_at_a_time() {
    let tmp = TempDir::new().unwrap();
    let log = ShardLog::open(tmp.path(), config(1 << 20)).unwrap();
    assert!(matches!(
        ShardLog::open(tmp.path(), config(1 << 20)),
        Err(LogError::Locked { .. })
    ));
    drop(log);
    ShardLog::open(tmp.path(), config(1 << 20)).unwrap();
}

/// Open time of a 1 GiB log: headers-only scan of sealed segments (the default) against
/// verifying every CRC, warm and (when `dd` can drop the file cache) cold.
///
/// `cargo test -p riffle-log --release -- --ignored --nocapture open_time`
#[test]
#[ignore = "measurement; writes 1 GiB"]
fn open_time_of_a_1_gib_log() {
    use std::time::Instant;
    for batch_bytes in [4usize << 10, 1 << 20] {
        let tmp = TempDir::new().unwrap();
        let dir = tmp.path();
        let log = ShardLog::open(
            dir,
            LogConfig {
                segment_bytes: DEFAULT_SEGMENT_BYTES,
                sync: SyncMode::None,
            },
        )
        .unwrap();
        let data = Bytes::from(vec![0x5a; batch_bytes - 64]);
        while log.size_bytes() < 1 << 30 {
            let (tx, rx) = mpsc::channel();
            for _ in 0..64 {
                let tx = tx.clone();
                log.append(
                    vec![record_in("key", data.clone())],
                    Box::new(move |r| tx.send(r).unwrap()),
                );
            }
            drop(tx);
            for r in rx {
                r.unwrap();
            }
        }
        let batches = log.end_offset();
        drop(log);
        let files = segment_files(dir);
        let drop_cache = || {
            let mut ok = true;
            for (_, f) in &files {
                ok &= std::process::Command::new("dd")
                    .arg(format!("if={}", f.display()))
                    .args(["iflag=nocache", "count=0", "status=none"])
                    .status()
                    .is_ok_and(|s| s.success());
            }
            ok
        };
        let scan_all = |verify: bool| {
            let t = Instant::now();
            let mut prev = None;
            let mut base = files[0].0;
            for (_, path) in &files[..files.len() - 1] {
                let s = Segment::open_sealed(path, base, prev, verify).unwrap();
                prev = s.last_arrival_ms();
                base = s.next_offset;
            }
            t.elapsed()
        };
        let cold = drop_cache();
        let t = Instant::now();
        let log = ShardLog::open(dir, LogConfig::default()).unwrap();
        let open_default = t.elapsed();
        drop(log);
        let warm_headers = scan_all(false);
        let warm_verify = scan_all(true);
        let cold_headers = if drop_cache() {
            Some(scan_all(false))
        } else {
            None
        };
        let cold_verify = if drop_cache() {
            Some(scan_all(true))
        } else {
            None
        };
        println!(
            "1 GiB in {} segments, {batches} batches of {batch_bytes} B: open {open_default:?} \
             (cache dropped: {cold}); sealed scan warm: headers {warm_headers:?}, CRC \
             {warm_verify:?}; cold: headers {cold_headers:?}, CRC {cold_verify:?}",
            files.len()
        );
    }
}
