//! Recovery of an arbitrary last segment.
//!
//! The first input byte selects a mode, the rest is the segment file:
//! - bit 0: put a valid batch (offsets 0..2) in front of the input;
//! - bit 1: with bit 0, put that batch in its own sealed segment and the input in the next one;
//! - bit 2: rewrite the CRC of every batch the input's length fields delimit, so that the
//!   checks behind the CRC (offsets, arrival order, record structure) get exercised.
//!
//! `ShardLog::open` must not panic or fail, must only cut the file back to the longest prefix of
//! valid batches (as an independent parser here defines them), must serve exactly the records of
//! that prefix, and must accept appends afterwards at the right offset.

#![no_main]

use std::fs;
use std::path::Path;
use std::sync::{OnceLock, mpsc};

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use riffle_log::{LogConfig, RecordIn, ShardLog, SyncMode};

const MAGIC: u8 = 0xB1;
const HEADER_LEN: usize = 29;

#[derive(Debug, Clone, PartialEq, Eq)]
struct Record {
    offset: u64,
    arrival_ms: i64,
    key: String,
    data: Vec<u8>,
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
}

/// Encodes a batch the way the on-disk format documents it.
fn encode(base: u64, arrival_ms: i64, records: &[(&str, &[u8])]) -> Vec<u8> {
    let mut b = vec![MAGIC, 0, 0, 0, 0, 0, 0, 0, 0];
    b.extend_from_slice(&base.to_le_bytes());
    b.extend_from_slice(&(records.len() as u32).to_le_bytes());
    b.extend_from_slice(&arrival_ms.to_le_bytes());
    for (key, data) in records {
        b.extend_from_slice(&(key.len() as u16).to_le_bytes());
        b.extend_from_slice(key.as_bytes());
        b.extend_from_slice(&(data.len() as u32).to_le_bytes());
        b.extend_from_slice(data);
    }
    let len = b.len() as u32;
    b[1..5].copy_from_slice(&len.to_le_bytes());
    let crc = crc32c::crc32c(&b[9..]);
    b[5..9].copy_from_slice(&crc.to_le_bytes());
    b
}

/// Decodes one batch at the start of `b` if it is wholly valid and follows `expected` offset and
/// `prev_arrival`; returns its length and records.
fn parse_batch(b: &[u8], expected: u64, prev_arrival: Option<i64>) -> Option<(usize, Vec<Record>)> {
    if b.len() < HEADER_LEN || b[0] != MAGIC {
        return None;
    }
    let len = u32_at(b, 1) as usize;
    if len < HEADER_LEN || len > b.len() {
        return None;
    }
    let batch = &b[..len];
    if crc32c::crc32c(&batch[9..]) != u32_at(batch, 5) {
        return None;
    }
    let base = u64_at(batch, 9);
    let count = u32_at(batch, 17);
    let arrival_ms = u64_at(batch, 21) as i64;
    if base != expected || count == 0 || prev_arrival.is_some_and(|p| arrival_ms < p) {
        return None;
    }
    let mut records = Vec::new();
    let mut at = HEADER_LEN;
    for i in 0..u64::from(count) {
        let key_len = u16::from_le_bytes(batch.get(at..at + 2)?.try_into().ok()?) as usize;
        at += 2;
        let key = std::str::from_utf8(batch.get(at..at + key_len)?)
            .ok()?
            .to_owned();
        at += key_len;
        let data_len = u32::from_le_bytes(batch.get(at..at + 4)?.try_into().ok()?) as usize;
        at += 4;
        let data = batch.get(at..at.checked_add(data_len)?)?.to_vec();
        at += data_len;
        records.push(Record {
            offset: base + i,
            arrival_ms,
            key,
            data,
        });
    }
    (at == len).then_some((len, records))
}

/// Rewrites the CRC of every batch that the length fields delimit, from `from` on.
fn fix_crcs(file: &mut [u8], mut at: usize) {
    while file.len() - at >= HEADER_LEN {
        let len = u32_at(file, at + 1) as usize;
        if len < HEADER_LEN || len > file.len() - at {
            return;
        }
        let crc = crc32c::crc32c(&file[at + 9..at + len]);
        file[at + 5..at + 9].copy_from_slice(&crc.to_le_bytes());
        at += len;
    }
}

fn scratch_dir() -> &'static Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| tempfile::tempdir().unwrap()).path()
}

fn segment_name(base: u64) -> String {
    format!("{base:020}.log")
}

fn run(input: &[u8]) {
    let Some((&mode, body)) = input.split_first() else {
        return;
    };
    let dir = scratch_dir();
    for entry in fs::read_dir(dir).unwrap() {
        fs::remove_file(entry.unwrap().path()).unwrap();
    }

    let prefix = encode(0, 1_000, &[("key", b"first"), ("", b"")]);
    let prefix_records = parse_batch(&prefix, 0, None).unwrap().1;
    let (sealed, mut last, base) = match mode & 3 {
        0 | 2 => (None, Vec::new(), 0),
        1 => (None, prefix.clone(), 0),
        _ => (Some(prefix.clone()), Vec::new(), 2),
    };
    let body_start = last.len();
    last.extend_from_slice(body);
    if mode & 4 != 0 {
        fix_crcs(&mut last, body_start);
    }
    if let Some(sealed) = &sealed {
        fs::write(dir.join(segment_name(0)), sealed).unwrap();
    }
    let last_path = dir.join(segment_name(base));
    fs::write(&last_path, &last).unwrap();

    // The longest prefix of valid batches, by this file's independent parser.
    let mut expected: Vec<Record> = if sealed.is_some() {
        prefix_records
    } else {
        Vec::new()
    };
    let mut valid_len = 0;
    while let Some((len, records)) = parse_batch(
        &last[valid_len..],
        expected.len() as u64,
        expected.last().map(|r| r.arrival_ms),
    ) {
        valid_len += len;
        expected.extend(records);
    }

    let config = LogConfig {
        segment_bytes: 1 << 20,
        sync: SyncMode::None,
    };
    let log = match ShardLog::open(dir, config) {
        Ok(log) => log,
        Err(e) => panic!("recovery failed: {e}"),
    };
    let on_disk = fs::read(&last_path).unwrap();
    assert_eq!(
        on_disk,
        last[..valid_len],
        "recovery must cut exactly the invalid tail"
    );
    assert_eq!(log.end_offset(), expected.len() as u64);

    let read: Vec<Record> = log
        .read(0, usize::MAX, usize::MAX)
        .unwrap()
        .into_iter()
        .map(|r| Record {
            offset: r.offset,
            arrival_ms: r.arrival_ms,
            key: r.partition_key,
            data: r.data.to_vec(),
        })
        .collect();
    assert_eq!(read, expected, "only records of valid batches are served");

    let (tx, rx) = mpsc::channel();
    log.append(
        vec![RecordIn {
            partition_key: "after".into(),
            data: Bytes::from_static(b"recovery"),
        }],
        Box::new(move |r| tx.send(r).unwrap()),
    );
    let ack = rx.recv().unwrap().unwrap();
    assert_eq!(ack.first_offset, expected.len() as u64);
    assert!(
        expected
            .last()
            .is_none_or(|r| ack.arrival_ms >= r.arrival_ms)
    );
    let back = log.read(ack.first_offset, 10, usize::MAX).unwrap();
    assert_eq!(back.len(), 1);
    assert_eq!(&back[0].data[..], b"recovery");
    log.close();
}

fuzz_target!(|input: &[u8]| run(input));
