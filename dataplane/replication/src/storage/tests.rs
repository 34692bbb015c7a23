//! Tests of the raft log: appends, reads, truncation, purging, segment rolling and recovery.

use std::fs::{self, OpenOptions};
use std::path::Path;

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
    let m = Membership::new(vec![[1u64, 2, 3].into_iter().collect()], nodes);
    Entry {
        log_id: log_id(1, 1, index),
        payload: EntryPayload::Membership(m),
    }
}

/// Appends, asserting the entries are durable.
fn append(log: &mut RaftLog, entries: Vec<Entry>) {
    log.append(entries).expect("append");
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
    assert!(log.append(vec![command(1, 3)]).is_err());
    assert!(log.append(vec![command(1, 1)]).is_err());
    assert!(log.append(vec![command(1, 2), command(1, 4)]).is_err());
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
        log.append(vec![command(1, 9)]).is_err(),
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
