//! Tests of the raft log: appends, reads, truncation, purging, segment rolling, recovery, and
//! the order and timing of flush callbacks.

use std::fs::{self, OpenOptions};
use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, TryRecvError};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use openraft::{EntryPayload, Membership};

use super::*;
use crate::types::{Command, Entry, log_id};

fn cfg(segment_bytes: u64) -> LogConfig {
    LogConfig {
        segment_bytes,
        fsync: true,
        preallocate: false,
    }
}

fn command(term: u64, index: u64) -> Entry {
    Entry {
        log_id: log_id(term, 1, index),
        payload: EntryPayload::Normal(Command(Bytes::from(format!(
            "entry {index} of term {term}"
        )))),
    }
}

fn membership(index: u64) -> Entry {
    let nodes = [1u64, 2, 3]
        .into_iter()
        .map(|id| {
            (
                id,
                openraft::BasicNode::new(format!("127.0.0.1:{}", 7000 + id)),
            )
        })
        .collect::<std::collections::BTreeMap<_, _>>();
    let m = Membership::new(vec![[1u64, 2, 3].into_iter().collect()], nodes).expect("membership");
    Entry {
        log_id: log_id(1, 1, index),
        payload: EntryPayload::Membership(m),
    }
}

/// Appends and waits for the flush callback, asserting the entries are durable.
fn append(log: &mut RaftLog, entries: Vec<Entry>) {
    let (tx, rx) = mpsc::channel();
    log.append(entries, move |result| {
        let _ = tx.send(result);
    })
    .expect("append");
    rx.recv().expect("flush callback ran").expect("durable");
}

/// An append expected to be refused, without waiting for its callback.
fn try_append(log: &mut RaftLog, entries: Vec<Entry>) -> Result<(), StoreError> {
    log.append(entries, |_| {})
}

fn all(log: &RaftLog) -> Vec<Entry> {
    log.reader().entries(..).expect("read")
}

fn segment_files(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .expect("read_dir")
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.ends_with(".wal"))
        .collect();
    names.sort();
    names
}

#[test]
fn appends_survive_reopen_with_every_payload_kind() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = RaftLog::open(dir.path(), cfg(1 << 20)).expect("open");
    assert_eq!(log.last_log_id(), None);
    let blank = Entry {
        log_id: log_id(1, 1, 0),
        payload: EntryPayload::Blank,
    };
    let expected = vec![blank, membership(1), command(1, 2), command(1, 3)];
    append(&mut log, expected.clone());
    assert_eq!(all(&log), expected);
    drop(log);
    let log = RaftLog::open(dir.path(), cfg(1 << 20)).expect("reopen");
    assert_eq!(all(&log), expected);
    assert_eq!(log.last_log_id(), Some(log_id(1, 1, 3)));
    assert_eq!(
        log.reader().entries(1..3).expect("range"),
        expected[1..3].to_vec()
    );
    assert_eq!(
        log.reader().entries(3..=10).expect("range"),
        expected[3..].to_vec()
    );
}

#[test]
fn a_second_open_of_the_same_directory_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let _log = RaftLog::open(dir.path(), cfg(1 << 20)).expect("open");
    assert!(matches!(
        RaftLog::open(dir.path(), cfg(1 << 20)),
        Err(StoreError::Locked { .. })
    ));
}

#[test]
fn appends_that_leave_a_hole_or_go_back_are_rejected() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = RaftLog::open(dir.path(), cfg(1 << 20)).expect("open");
    append(&mut log, vec![command(1, 0), command(1, 1)]);
    assert!(try_append(&mut log, vec![command(1, 3)]).is_err());
    assert!(try_append(&mut log, vec![command(1, 1)]).is_err());
    assert!(try_append(&mut log, vec![command(1, 2), command(1, 4)]).is_err());
    assert_eq!(all(&log).len(), 2);
}

#[test]
fn segments_roll_and_truncate_removes_a_conflicting_suffix_across_them() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = RaftLog::open(dir.path(), cfg(100)).expect("open");
    for i in 0..20 {
        append(&mut log, vec![command(1, i)]);
    }
    let segments = segment_files(dir.path());
    assert!(segments.len() >= 5, "{segments:?}");
    log.truncate(7).expect("truncate");
    assert_eq!(log.last_log_id(), Some(log_id(1, 1, 6)));
    append(&mut log, vec![command(2, 7), command(2, 8)]);
    let expected: Vec<Entry> = (0..7)
        .map(|i| command(1, i))
        .chain([command(2, 7), command(2, 8)])
        .collect();
    assert_eq!(all(&log), expected);
    drop(log);
    let log = RaftLog::open(dir.path(), cfg(100)).expect("reopen");
    assert_eq!(all(&log), expected);
}

#[test]
fn truncate_at_a_segment_start_and_to_empty() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = RaftLog::open(dir.path(), cfg(1)).expect("open");
    for i in 0..4 {
        append(&mut log, vec![command(1, i)]);
    }
    assert_eq!(segment_files(dir.path()).len(), 4);
    log.truncate(2).expect("truncate at a segment base");
    assert_eq!(segment_files(dir.path()).len(), 2);
    log.truncate(0).expect("truncate everything");
    assert_eq!(log.last_log_id(), None);
    assert!(all(&log).is_empty());
    append(&mut log, vec![command(3, 0)]);
    drop(log);
    let log = RaftLog::open(dir.path(), cfg(1)).expect("reopen");
    assert_eq!(all(&log), vec![command(3, 0)]);
}

#[test]
fn purge_drops_whole_segments_and_hides_the_rest() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = RaftLog::open(dir.path(), cfg(150)).expect("open");
    for i in 0..12 {
        append(&mut log, vec![command(1, i)]);
    }
    let before = segment_files(dir.path()).len();
    log.purge(log_id(1, 1, 6)).expect("purge");
    log.wait_for_deletes();
    assert!(segment_files(dir.path()).len() < before);
    assert_eq!(log.first_index(), 7);
    assert_eq!(
        all(&log),
        (7..12).map(|i| command(1, i)).collect::<Vec<_>>()
    );
    assert!(log.truncate(5).is_err(), "cannot truncate purged entries");
    drop(log);
    let mut log = RaftLog::open(dir.path(), cfg(150)).expect("reopen");
    assert_eq!(log.purged(), Some(log_id(1, 1, 6)));
    assert_eq!(
        all(&log),
        (7..12).map(|i| command(1, i)).collect::<Vec<_>>()
    );
    append(&mut log, vec![command(1, 12)]);
    assert_eq!(log.last_log_id(), Some(log_id(1, 1, 12)));
}

#[test]
fn purge_past_the_end_restarts_the_log_after_the_purge_point() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = RaftLog::open(dir.path(), cfg(1 << 20)).expect("open");
    append(&mut log, vec![command(1, 0), command(1, 1)]);
    // A snapshot up to 50 was installed from the leader.
    log.purge(log_id(4, 2, 50)).expect("purge");
    assert_eq!(log.last_log_id(), Some(log_id(4, 2, 50)));
    assert!(all(&log).is_empty());
    log.wait_for_deletes();
    assert!(segment_files(dir.path()).is_empty());
    drop(log);
    let mut log = RaftLog::open(dir.path(), cfg(1 << 20)).expect("reopen");
    assert_eq!(log.last_log_id(), Some(log_id(4, 2, 50)));
    append(&mut log, vec![command(4, 51)]);
    drop(log);
    let log = RaftLog::open(dir.path(), cfg(1 << 20)).expect("reopen");
    assert_eq!(all(&log), vec![command(4, 51)]);
}

/// The image of a crash in the middle of a purge: five single-entry segments (0..=4), the
/// purge point 2 recorded, no segment deleted yet.
fn interrupted_purge_up_to_2(dir: &Path) {
    let mut log = RaftLog::open(dir, cfg(1)).expect("open");
    for i in 0..5 {
        append(&mut log, vec![command(1, i)]);
    }
    drop(log);
    durable_file::write(dir, "purged", &{
        let mut b = Vec::new();
        b.extend_from_slice(&1u64.to_le_bytes());
        b.extend_from_slice(&1u64.to_le_bytes());
        b.extend_from_slice(&2u64.to_le_bytes());
        b
    })
    .expect("write purge record");
}

/// A purge past the end of the log (a snapshot installed from the leader) that a crash cut
/// short leaves the last segment wholly below the purge point; opening deletes it.
#[test]
fn an_interrupted_purge_past_the_end_is_finished_at_open() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = RaftLog::open(dir.path(), cfg(1 << 20)).expect("open");
    append(&mut log, vec![command(1, 0), command(1, 1)]);
    drop(log);
    durable_file::write(dir.path(), "purged", &{
        let mut b = Vec::new();
        b.extend_from_slice(&4u64.to_le_bytes());
        b.extend_from_slice(&2u64.to_le_bytes());
        b.extend_from_slice(&50u64.to_le_bytes());
        b
    })
    .expect("write purge record");
    let mut log = RaftLog::open(dir.path(), cfg(1 << 20)).expect("reopen");
    assert!(segment_files(dir.path()).is_empty());
    assert_eq!(log.last_log_id(), Some(log_id(4, 2, 50)));
    append(&mut log, vec![command(4, 51)]);
    drop(log);
    let log = RaftLog::open(dir.path(), cfg(1 << 20)).expect("reopen");
    assert_eq!(all(&log), vec![command(4, 51)]);
}

#[test]
fn an_interrupted_purge_is_finished_at_open() {
    let dir = tempfile::tempdir().expect("tempdir");
    interrupted_purge_up_to_2(dir.path());
    let log = RaftLog::open(dir.path(), cfg(1)).expect("reopen");
    assert_eq!(segment_files(dir.path()).len(), 2);
    assert_eq!(all(&log), vec![command(1, 3), command(1, 4)]);
}

/// Purged segments are cut down from their end before they are unlinked; a crash in the middle
/// leaves a shortened file that must not be taken for a damaged sealed segment.
#[test]
fn a_purged_segment_left_half_cut_by_a_crash_is_deleted_at_open() {
    let dir = tempfile::tempdir().expect("tempdir");
    interrupted_purge_up_to_2(dir.path());
    for base in [0u64, 1] {
        let path = dir.path().join(format!("{base:020}.wal"));
        let len = fs::metadata(&path).expect("stat").len();
        OpenOptions::new()
            .write(true)
            .open(&path)
            .and_then(|f| f.set_len(len / 2))
            .expect("cut");
    }
    let log = RaftLog::open(dir.path(), cfg(1)).expect("reopen");
    assert_eq!(segment_files(dir.path()).len(), 2);
    assert_eq!(all(&log), vec![command(1, 3), command(1, 4)]);
}

/// Cutting the file anywhere inside the last entry loses exactly that entry, and the log
/// keeps working afterwards.
#[test]
fn a_torn_tail_is_cut_at_every_byte_offset_of_the_last_entry() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = RaftLog::open(dir.path(), cfg(1 << 20)).expect("open");
    append(&mut log, vec![command(1, 0), membership(1), command(1, 2)]);
    let last_frame = log.reader().state_frame_len_for_tests(2);
    drop(log);
    let path = dir.path().join(format!("{:020}.wal", 0));
    let whole = fs::read(&path).expect("read");
    let start = whole.len() - last_frame;
    for cut in start..whole.len() {
        fs::write(&path, &whole[..cut]).expect("tear");
        let mut log = RaftLog::open(dir.path(), cfg(1 << 20)).expect("recover");
        assert_eq!(
            all(&log),
            vec![command(1, 0), membership(1)],
            "cut at {cut}"
        );
        assert_eq!(fs::metadata(&path).expect("stat").len() as usize, start);
        append(&mut log, vec![command(2, 2)]);
        assert_eq!(all(&log).len(), 3);
        drop(log);
    }
    // Zeros after the last entry (a preallocated segment's rest) are kept and overwritten.
    let mut padded = whole.clone();
    padded.extend_from_slice(&[0u8; 4096]);
    fs::write(&path, &padded).expect("pad");
    let mut log = RaftLog::open(dir.path(), cfg(1 << 20)).expect("recover");
    assert_eq!(all(&log).len(), 3);
    assert_eq!(
        fs::metadata(&path).expect("stat").len() as usize,
        padded.len()
    );
    append(&mut log, vec![command(1, 3)]);
    drop(log);
    assert_eq!(
        fs::metadata(&path).expect("stat").len() as usize,
        padded.len()
    );
    let log = RaftLog::open(dir.path(), cfg(1 << 20)).expect("reopen");
    assert_eq!(all(&log).len(), 4);
    // More zeros than a segment holds are cut: the segment could be sealed before they are
    // overwritten.
    drop(log);
    fs::write(&path, &padded).expect("pad");
    let log = RaftLog::open(dir.path(), cfg(1024)).expect("recover");
    assert_eq!(all(&log).len(), 3);
    assert_eq!(
        fs::metadata(&path).expect("stat").len() as usize,
        whole.len()
    );
    // A flipped bit in the last entry cuts that entry.
    drop(log);
    let mut flipped = whole.clone();
    let n = flipped.len();
    flipped[n - 3] ^= 0x10;
    fs::write(&path, &flipped).expect("flip");
    let log = RaftLog::open(dir.path(), cfg(1 << 20)).expect("recover");
    assert_eq!(all(&log).len(), 2);
}

#[test]
fn a_damaged_sealed_segment_is_an_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = RaftLog::open(dir.path(), cfg(1)).expect("open");
    for i in 0..3 {
        append(&mut log, vec![command(1, i)]);
    }
    drop(log);
    let sealed = dir.path().join(format!("{:020}.wal", 1));
    let mut bytes = fs::read(&sealed).expect("read");
    let n = bytes.len();
    bytes[n - 1] ^= 1;
    fs::write(&sealed, &bytes).expect("damage");
    assert!(matches!(
        RaftLog::open(dir.path(), cfg(1)),
        Err(StoreError::Corrupt { .. })
    ));
    // A sealed segment cut short is damage too, not a torn tail.
    fs::write(&sealed, &bytes[..n - 5]).expect("cut");
    assert!(matches!(
        RaftLog::open(dir.path(), cfg(1)),
        Err(StoreError::Corrupt { .. })
    ));
}

#[test]
fn a_missing_segment_is_an_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = RaftLog::open(dir.path(), cfg(1)).expect("open");
    for i in 0..3 {
        append(&mut log, vec![command(1, i)]);
    }
    drop(log);
    fs::remove_file(dir.path().join(format!("{:020}.wal", 1))).expect("remove");
    assert!(matches!(
        RaftLog::open(dir.path(), cfg(1)),
        Err(StoreError::Corrupt { .. })
    ));
}

#[test]
fn damage_found_while_reading_is_an_error_not_data() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = RaftLog::open(dir.path(), cfg(1 << 20)).expect("open");
    append(&mut log, vec![command(1, 0), command(1, 1)]);
    let path = dir.path().join(format!("{:020}.wal", 0));
    let mut bytes = fs::read(&path).expect("read");
    bytes[20] ^= 0xff;
    fs::write(&path, &bytes).expect("damage");
    assert!(matches!(
        log.reader().entries(0..1),
        Err(StoreError::Corrupt { .. })
    ));
}

#[test]
fn an_empty_log_may_begin_past_its_purge_point_and_keeps_that_start() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = RaftLog::open(dir.path(), cfg(1 << 20)).expect("open");
    append(&mut log, vec![command(1, 5), command(1, 6)]);
    assert_eq!(log.first_index(), 5);
    drop(log);
    let mut log = RaftLog::open(dir.path(), cfg(1 << 20)).expect("reopen");
    assert_eq!(all(&log), vec![command(1, 5), command(1, 6)]);
    append(&mut log, vec![command(1, 7)]);
    assert!(
        try_append(&mut log, vec![command(1, 9)]).is_err(),
        "a log with entries still refuses holes"
    );
    drop(log);
    // Losing the first segment is still detected.
    fs::remove_file(dir.path().join(format!("{:020}.wal", 5))).expect("remove");
    fs::write(dir.path().join(format!("{:020}.wal", 6)), b"").expect("fake later segment");
    assert!(RaftLog::open(dir.path(), cfg(1 << 20)).is_err());
}

#[test]
fn a_limited_read_stops_at_its_byte_budget_across_segments_but_takes_at_least_one_entry() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = RaftLog::open(dir.path(), cfg(100)).expect("open");
    for i in 0..20 {
        append(&mut log, vec![command(1, i)]);
    }
    let reader = log.reader();
    let frame = reader.state_frame_len_for_tests(3) as u64;
    let ids =
        |entries: Vec<Entry>| -> Vec<u64> { entries.iter().map(|e| e.log_id.index).collect() };
    // Frames of one command are all alike here (entries 10..19 are one byte longer).
    assert_eq!(
        ids(reader.entries_within(3, 20, 3 * frame).expect("read")),
        vec![3, 4, 5]
    );
    assert_eq!(
        ids(reader.entries_within(3, 5, 100 * frame).expect("read")),
        vec![3, 4]
    );
    assert_eq!(
        ids(reader.entries_within(3, 20, 1).expect("read")),
        vec![3],
        "one entry even if it alone is over the budget"
    );
    assert!(
        reader
            .entries_within(20, 30, 1 << 20)
            .expect("read")
            .is_empty()
    );
    assert_eq!(
        ids(reader.entries_within(0, 20, u64::MAX).expect("read")),
        (0..20).collect::<Vec<_>>()
    );
}

fn preallocating(segment_bytes: u64) -> LogConfig {
    LogConfig {
        preallocate: true,
        ..cfg(segment_bytes)
    }
}

fn file_len(path: &Path) -> u64 {
    fs::metadata(path).expect("stat").len()
}

/// With preallocation, the log moves to the zero-filled spare at the first append after it is
/// ready, appends overwrite its zeros without growing it, and no sealed segment keeps a
/// zero-filled rest; everything reads back after reopening.
#[test]
fn a_preallocating_log_appends_into_zero_filled_segments_that_reopen_whole() {
    let dir = tempfile::tempdir().expect("tempdir");
    let segment_bytes = 4096;
    let mut log = RaftLog::open(dir.path(), preallocating(segment_bytes)).expect("open");
    append(&mut log, vec![command(1, 0)]);
    log.wait_for_spare();
    assert_eq!(file_len(&dir.path().join(spare::SPARE_FILE)), segment_bytes);
    append(&mut log, vec![command(1, 1)]);
    let second = dir.path().join(format!("{:020}.wal", 1));
    assert_eq!(segment_files(dir.path()).len(), 2);
    assert_eq!(file_len(&second), segment_bytes, "appended into the spare");
    assert!(fs::read(&second).expect("read").ends_with(&[0u8; 1024]));

    let mut expected = vec![command(1, 0), command(1, 1)];
    for i in 2..200 {
        append(&mut log, vec![command(1, i)]);
        expected.push(command(1, i));
    }
    let segments = segment_files(dir.path());
    assert!(segments.len() > 3, "{segments:?}");
    for name in &segments[..segments.len() - 1] {
        let bytes = fs::read(dir.path().join(name)).expect("read");
        assert_ne!(bytes.last(), Some(&0), "{name} was sealed with zeros left");
    }
    assert_eq!(all(&log), expected);
    drop(log);

    let mut log = RaftLog::open(dir.path(), preallocating(segment_bytes)).expect("reopen");
    assert_eq!(all(&log), expected);
    append(&mut log, vec![command(2, 200)]);
    expected.push(command(2, 200));
    drop(log);
    let log = RaftLog::open(dir.path(), cfg(segment_bytes)).expect("reopen without");
    assert_eq!(all(&log), expected);
    assert!(
        !dir.path().join(spare::SPARE_FILE).exists(),
        "a log that does not preallocate removes the spare"
    );
}

/// A crash leaves the last segment with zeros after its last entry, and maybe a spare that was
/// being filled; recovery keeps the zeros for the next appends, takes no spare for a segment,
/// and the log goes on.
#[test]
fn a_crash_with_a_zero_filled_tail_and_a_partial_spare_recovers() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = RaftLog::open(dir.path(), preallocating(1 << 16)).expect("open");
    append(&mut log, vec![command(1, 0)]);
    log.wait_for_spare();
    append(&mut log, vec![command(1, 1), command(1, 2)]);
    log.wait_for_spare();
    let last = dir.path().join(format!("{:020}.wal", 1));
    let image: Vec<(std::path::PathBuf, Vec<u8>)> = fs::read_dir(dir.path())
        .expect("read_dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.is_file())
        .map(|p| {
            let bytes = fs::read(&p).expect("read");
            (p, bytes)
        })
        .collect();
    drop(log);
    // The image as a crash left it: a partly filled spare beside the zero-padded segment.
    for (path, bytes) in &image {
        fs::write(path, bytes).expect("restore");
    }
    fs::write(dir.path().join(spare::SPARE_FILE), vec![0u8; 100]).expect("partial spare");
    assert_eq!(file_len(&last), 1 << 16);

    let mut log = RaftLog::open(dir.path(), preallocating(1 << 16)).expect("recover");
    assert_eq!(all(&log), vec![command(1, 0), command(1, 1), command(1, 2)]);
    log.wait_for_spare();
    assert_eq!(file_len(&dir.path().join(spare::SPARE_FILE)), 1 << 16);
    append(&mut log, vec![command(1, 3)]);
    assert_eq!(file_len(&last), 1 << 16, "appended into the zeros");
    assert_eq!(segment_files(dir.path()).len(), 2, "no new segment");
    drop(log);
    let log = RaftLog::open(dir.path(), preallocating(1 << 16)).expect("reopen");
    assert_eq!(
        all(&log),
        vec![command(1, 0), command(1, 1), command(1, 2), command(1, 3)]
    );
}

/// What a flush callback reports: the append it belongs to and its outcome.
type Flush = (&'static str, io::Result<()>);

/// Appends without waiting; the callback sends `name` and its outcome to `events`.
fn append_reporting(
    log: &mut RaftLog,
    entries: Vec<Entry>,
    name: &'static str,
    events: &mpsc::Sender<Flush>,
) {
    let events = events.clone();
    log.append(entries, move |result| {
        let _ = events.send((name, result));
    })
    .expect("append");
}

/// A stand-in for `fdatasync` that signals on `started` when a sync begins and then waits for
/// a permit on the returned sender before it succeeds or fails (per `outcome`).
fn held_sync(
    started: mpsc::Sender<()>,
    outcome: fn() -> io::Result<()>,
) -> (
    mpsc::Sender<()>,
    impl Fn(&std::fs::File) -> io::Result<()> + Send + 'static,
) {
    let (permit_tx, permit_rx) = mpsc::channel::<()>();
    let sync = move |_: &std::fs::File| {
        let _ = started.send(());
        let _ = permit_rx.recv();
        outcome()
    };
    (permit_tx, sync)
}

fn names(flushes: &[Flush]) -> Vec<&'static str> {
    flushes.iter().map(|(name, _)| *name).collect()
}

/// Appends are readable at once; their callbacks wait for the sync, run in append order (an
/// empty append's too), and the appends that queued behind a sync share the next one.
#[test]
fn callbacks_of_appends_queued_behind_a_held_sync_run_in_order_after_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = RaftLog::open(dir.path(), cfg(1 << 20)).expect("open");
    let (started_tx, started) = mpsc::channel();
    let (permit, sync) = held_sync(started_tx, || Ok(()));
    log.sync_with_for_tests(sync);
    let (events_tx, events) = mpsc::channel::<Flush>();

    append_reporting(&mut log, vec![command(1, 0)], "a", &events_tx);
    started.recv().expect("the first sync began");
    append_reporting(&mut log, vec![command(1, 1)], "b", &events_tx);
    append_reporting(
        &mut log,
        vec![command(1, 2), command(1, 3)],
        "c",
        &events_tx,
    );
    append_reporting(&mut log, Vec::new(), "empty", &events_tx);
    assert_eq!(
        all(&log).len(),
        4,
        "appended entries are readable before they are durable"
    );
    assert!(matches!(events.try_recv(), Err(TryRecvError::Empty)));

    permit.send(()).expect("release the first sync");
    let (name, result) = events.recv().expect("a flushed");
    assert_eq!(name, "a");
    result.expect("a is durable");
    started.recv().expect("the second sync began");
    assert!(
        matches!(events.try_recv(), Err(TryRecvError::Empty)),
        "no callback runs before the sync that covers it"
    );

    permit.send(()).expect("release the second sync");
    let rest: Vec<Flush> = (0..3).map(|_| events.recv().expect("flushed")).collect();
    assert_eq!(names(&rest), ["b", "c", "empty"]);
    assert!(rest.iter().all(|(_, result)| result.is_ok()));
    assert!(
        matches!(started.try_recv(), Err(TryRecvError::Empty)),
        "the appends queued behind the first sync shared one"
    );
}

/// A truncation waits for the callbacks of the appends before it: none runs once it returned
/// (it could report entries the truncation removed).
#[test]
fn no_callback_of_an_earlier_append_runs_after_a_truncation_returned() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = RaftLog::open(dir.path(), cfg(1 << 20)).expect("open");
    log.sync_with_for_tests(|_| {
        std::thread::sleep(Duration::from_millis(20));
        Ok(())
    });
    let truncated = Arc::new(AtomicBool::new(false));
    let ran: Arc<Mutex<Vec<(u64, bool)>>> = Arc::default();
    for i in 0..5 {
        let (truncated, ran) = (Arc::clone(&truncated), Arc::clone(&ran));
        log.append(vec![command(1, i)], move |result| {
            result.expect("durable");
            ran.lock()
                .expect("lock")
                .push((i, truncated.load(Ordering::SeqCst)));
        })
        .expect("append");
    }
    log.truncate(2).expect("truncate");
    truncated.store(true, Ordering::SeqCst);
    assert_eq!(
        *ran.lock().expect("lock"),
        (0..5).map(|i| (i, false)).collect::<Vec<_>>(),
        "every earlier callback ran, in order, before the truncation returned"
    );
    append(&mut log, vec![command(2, 2)]);
    assert_eq!(all(&log), vec![command(1, 0), command(1, 1), command(2, 2)]);
}

/// The first failed sync fails its own round's callbacks, every later append and truncation,
/// and the barrier; reopening the log makes it usable again.
#[test]
fn a_failed_sync_fails_the_queued_appends_and_poisons_the_log() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = RaftLog::open(dir.path(), cfg(1 << 20)).expect("open");
    append(&mut log, vec![command(1, 0)]);
    let (started_tx, started) = mpsc::channel();
    let (permit, sync) = held_sync(started_tx, || Err(io::Error::other("injected failure")));
    log.sync_with_for_tests(sync);
    let (events_tx, events) = mpsc::channel::<Flush>();

    append_reporting(&mut log, vec![command(1, 1)], "a", &events_tx);
    started.recv().expect("the sync began");
    append_reporting(&mut log, vec![command(1, 2)], "b", &events_tx);
    permit.send(()).expect("release the sync");
    let flushes: Vec<Flush> = (0..2).map(|_| events.recv().expect("flushed")).collect();
    assert_eq!(names(&flushes), ["a", "b"]);
    for (name, result) in &flushes {
        let e = result.as_ref().expect_err(name);
        assert!(e.to_string().contains("injected failure"), "{name}: {e}");
    }

    let (tx, refused) = mpsc::channel::<io::Result<()>>();
    let appended = log.append(vec![command(1, 3)], move |result| {
        let _ = tx.send(result);
    });
    assert!(
        matches!(appended, Err(StoreError::Poisoned(_))),
        "{appended:?}"
    );
    assert!(
        matches!(refused.recv(), Err(mpsc::RecvError)),
        "a refused append's callback is dropped, not run"
    );
    assert!(matches!(
        try_append(&mut log, Vec::new()),
        Err(StoreError::Poisoned(_))
    ));
    assert!(matches!(log.sync_barrier(), Err(StoreError::Poisoned(_))));
    assert!(matches!(log.truncate(1), Err(StoreError::Poisoned(_))));
    drop(log);

    let mut log = RaftLog::open(dir.path(), cfg(1 << 20)).expect("reopen");
    append(&mut log, vec![command(1, 3)]);
    assert_eq!(all(&log).len(), 4);
}

/// A log that does not sync still reports appends through the sync thread, in order.
#[test]
fn a_log_without_fsync_still_reports_appends_in_order() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = LogConfig {
        fsync: false,
        ..cfg(100)
    };
    let mut log = RaftLog::open(dir.path(), config).expect("open");
    let (events_tx, events) = mpsc::channel::<Flush>();
    let order = ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"];
    for (i, name) in order.iter().enumerate() {
        append_reporting(&mut log, vec![command(1, i as u64)], name, &events_tx);
    }
    log.sync_barrier().expect("barrier");
    let flushes: Vec<Flush> = events.try_iter().collect();
    assert_eq!(names(&flushes), order);
    assert!(flushes.iter().all(|(_, result)| result.is_ok()));
}
