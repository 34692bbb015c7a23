//! Pre-encoded PutRecords bodies whose partition keys are all distinct.
//!
//! The JSON (with its base64) is encoded once; each request copies it and writes a fresh
//! fixed-width number into every record's partition key, so the generator spends a memcpy per
//! request rather than an encode, while the server still sees a key it has never hashed.

use std::sync::atomic::{AtomicU64, Ordering};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use rand::RngCore;

/// Hex digits of the number in each partition key.
const KEY_DIGITS: usize = 16;

/// `batch` distinct random payloads of `record_bytes` bytes each.
pub fn random_payloads(batch: usize, record_bytes: usize) -> Vec<Bytes> {
    let mut rng = rand::rng();
    (0..batch)
        .map(|_| {
            let mut data = vec![0u8; record_bytes];
            rng.fill_bytes(&mut data);
            Bytes::from(data)
        })
        .collect()
}

/// A PutRecords body with a slot for a number in each record's partition key.
pub struct PutRecordsTemplate {
    body: Vec<u8>,
    key_slots: Vec<usize>,
    record_bytes: usize,
}

impl PutRecordsTemplate {
    /// A body for `stream` carrying `batch` random records of `record_bytes` bytes.
    pub fn new(stream: &str, batch: usize, record_bytes: usize) -> PutRecordsTemplate {
        let payloads = random_payloads(batch, record_bytes);
        let mut body = Vec::with_capacity(64 + batch * (record_bytes * 4 / 3 + 64));
        body.extend_from_slice(b"{\"StreamName\":");
        body.extend_from_slice(serde_json::Value::from(stream).to_string().as_bytes());
        body.extend_from_slice(b",\"Records\":[");
        let mut key_slots = Vec::with_capacity(batch);
        for (i, data) in payloads.iter().enumerate() {
            if i > 0 {
                body.push(b',');
            }
            body.extend_from_slice(b"{\"Data\":\"");
            body.extend_from_slice(STANDARD.encode(data).as_bytes());
            body.extend_from_slice(b"\",\"PartitionKey\":\"pk-");
            key_slots.push(body.len());
            body.extend_from_slice(&[b'0'; KEY_DIGITS]);
            body.extend_from_slice(b"\"}");
        }
        body.extend_from_slice(b"]}");
        PutRecordsTemplate {
            body,
            key_slots,
            record_bytes,
        }
    }

    /// Records per body.
    pub fn batch(&self) -> usize {
        self.key_slots.len()
    }

    /// Data bytes per body.
    pub fn data_bytes(&self) -> u64 {
        (self.key_slots.len() * self.record_bytes) as u64
    }

    /// A body whose keys are `pk-<n>` for `n` from `first` upwards, in hex.
    pub fn body(&self, first: u64) -> Bytes {
        let mut body = self.body.clone();
        for (i, &slot) in self.key_slots.iter().enumerate() {
            write_hex(&mut body[slot..slot + KEY_DIGITS], first + i as u64);
        }
        Bytes::from(body)
    }
}

fn write_hex(out: &mut [u8], mut n: u64) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for b in out.iter_mut().rev() {
        *b = DIGITS[(n & 15) as usize];
        n >>= 4;
    }
}

/// Hands out partition-key numbers so that no two records of a run share a key.
#[derive(Default)]
pub struct KeySource(AtomicU64);

impl KeySource {
    /// The first of `count` numbers nobody else gets.
    pub fn take(&self, count: usize) -> u64 {
        self.0.fetch_add(count as u64, Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn bodies_are_valid_put_records_requests_with_fresh_keys() {
        let t = PutRecordsTemplate::new("s\"1", 3, 10);
        let keys = KeySource::default();
        let mut seen = HashSet::new();
        for _ in 0..2 {
            let body = t.body(keys.take(t.batch()));
            let doc: serde_json::Value = serde_json::from_slice(&body).expect("valid JSON");
            assert_eq!(doc["StreamName"], "s\"1");
            let records = doc["Records"].as_array().expect("records");
            assert_eq!(records.len(), 3);
            for r in records {
                let data = STANDARD
                    .decode(r["Data"].as_str().expect("data"))
                    .expect("base64");
                assert_eq!(data.len(), 10);
                let key = r["PartitionKey"].as_str().expect("key").to_string();
                assert!(seen.insert(key));
            }
        }
        assert!(seen.contains("pk-0000000000000005"));
        assert_eq!(t.data_bytes(), 30);
    }
}
