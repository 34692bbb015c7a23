//! Writes seed inputs for the `segment_recovery` fuzz target (see `fuzz/`) from segment files
//! made by a real log. The first byte of each seed is the target's mode byte.
//!
//! `cargo test -p riffle-log --test fuzz_seeds -- --ignored`

#![allow(clippy::unwrap_used)]

use std::fs;
use std::path::Path;
use std::sync::mpsc;

use bytes::Bytes;
use riffle_log::{LogConfig, RecordIn, ShardLog, SyncMode};

fn append(log: &ShardLog, records: &[(&str, &[u8])]) {
    let (tx, rx) = mpsc::channel();
    let records = records
        .iter()
        .map(|(k, d)| RecordIn {
            partition_key: (*k).into(),
            data: Bytes::copy_from_slice(d),
        })
        .collect();
    log.append(records, Box::new(move |r| tx.send(r).unwrap()));
    rx.recv().unwrap().unwrap();
}

#[test]
#[ignore = "generator: writes into fuzz/corpus"]
fn write_fuzz_seeds() {
    let tmp = tempfile::tempdir().unwrap();
    let log = ShardLog::open(
        tmp.path(),
        LogConfig {
            segment_bytes: 1 << 20,
            sync: SyncMode::None,
        },
    )
    .unwrap();
    append(&log, &[("a", b"0"), ("b", b"1")]);
    let first_len = log.size_bytes() as usize;
    append(&log, &[("key", b"two")]);
    append(&log, &[("", b""), ("ключ", &[0xff; 40]), ("k", b"x")]);
    append(&log, &[("last", b"batch")]);
    drop(log);
    let file = fs::read(tmp.path().join(format!("{:020}.log", 0))).unwrap();
    let rest = &file[first_len..];

    let mut bad_record_len = rest.to_vec();
    bad_record_len[29] ^= 0x01; // first key length of the batch at offset 2
    let seeds: Vec<(&str, u8, Vec<u8>)> = vec![
        ("whole", 0, file.clone()),
        ("after_prefix", 1, rest.to_vec()),
        ("after_sealed_segment", 3, rest.to_vec()),
        ("torn", 1, rest[..rest.len() - 5].to_vec()),
        ("zero_tail", 0, [file.as_slice(), &[0; 64]].concat()),
        ("structure_behind_crc", 5, bad_record_len),
    ];
    let out = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/segment_recovery");
    fs::create_dir_all(&out).unwrap();
    for (name, mode, body) in seeds {
        fs::write(
            out.join(format!("seed-{name}")),
            [&[mode][..], &body].concat(),
        )
        .unwrap();
    }
}
