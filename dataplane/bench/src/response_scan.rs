//! Reading the few fields the throughput benchmarks need straight out of JSON response bodies.
//!
//! A drain at hundreds of MB/s would spend more client CPU parsing 10 MB GetRecords bodies into
//! a document tree (and decoding every record's base64) than the server spends producing them,
//! on the same cores. These scanners touch each byte once with SIMD searches instead: they
//! count records and their data bytes from the length of each base64 `Data` string.
//!
//! They rely on JSON escaping: inside a string a `"` is always escaped, so `"Data":"` can only
//! be a key and its value, and base64 never contains `"` or `\`, so its string ends at the
//! next `"`.

use anyhow::{Result, anyhow};
use memchr::memchr;
use memchr::memmem;

/// The value of the top-level-looking number field `"name": <digits>`, wherever it appears.
fn number_field(body: &[u8], name: &str) -> Option<i64> {
    let key = format!("\"{name}\"");
    let at = memmem::find(body, key.as_bytes())? + key.len();
    let rest = skip_colon(&body[at..])?;
    let digits = rest
        .iter()
        .take_while(|b| b.is_ascii_digit() || **b == b'-')
        .count();
    std::str::from_utf8(&rest[..digits]).ok()?.parse().ok()
}

/// Skips `\s*:\s*` and returns what follows.
fn skip_colon(mut rest: &[u8]) -> Option<&[u8]> {
    while let Some((first, tail)) = rest.split_first() {
        if first.is_ascii_whitespace() {
            rest = tail;
        } else {
            break;
        }
    }
    let (colon, mut rest) = rest.split_first()?;
    if *colon != b':' {
        return None;
    }
    while let Some((first, tail)) = rest.split_first() {
        if first.is_ascii_whitespace() {
            rest = tail;
        } else {
            break;
        }
    }
    Some(rest)
}

/// The string value of the first `"name": "<value>"` field (unescaped values only).
fn string_field<'a>(body: &'a [u8], name: &str) -> Option<&'a str> {
    let key = format!("\"{name}\"");
    let at = memmem::find(body, key.as_bytes())? + key.len();
    let rest = skip_colon(&body[at..])?;
    let rest = rest.strip_prefix(b"\"")?;
    let end = memchr(b'"', rest)?;
    std::str::from_utf8(&rest[..end]).ok()
}

/// `FailedRecordCount` of a PutRecords response.
pub fn failed_record_count(body: &[u8]) -> Option<u64> {
    number_field(body, "FailedRecordCount").and_then(|n| u64::try_from(n).ok())
}

/// What a GetRecords response holds, without its record contents.
#[derive(Debug, PartialEq, Eq)]
pub struct RecordsPage {
    /// Records in the page.
    pub records: u64,
    /// Bytes of record data (decoded).
    pub data_bytes: u64,
    /// Where to continue; absent once a closed shard is read to its end.
    pub next_iterator: Option<String>,
    /// How far behind the newest record the page ends.
    pub millis_behind_latest: Option<i64>,
}

/// Scans a GetRecords response body.
pub fn scan_get_records(body: &[u8]) -> Result<RecordsPage> {
    let finder = memmem::Finder::new(b"\"Data\"");
    let mut records = 0u64;
    let mut data_bytes = 0u64;
    let mut from = 0;
    while let Some(found) = finder.find(&body[from..]) {
        let key_end = from + found + 6;
        let rest = skip_colon(&body[key_end..]).ok_or_else(|| anyhow!("malformed Data field"))?;
        let value = rest
            .strip_prefix(b"\"")
            .ok_or_else(|| anyhow!("Data is not a string"))?;
        let len = memchr(b'"', value).ok_or_else(|| anyhow!("unterminated Data string"))?;
        let padding = value[..len]
            .iter()
            .rev()
            .take_while(|b| **b == b'=')
            .count();
        data_bytes += (len / 4 * 3 - padding.min(2)) as u64;
        records += 1;
        let value_start = body.len() - value.len();
        from = value_start + len + 1;
    }
    Ok(RecordsPage {
        records,
        data_bytes,
        next_iterator: string_field(body, "NextShardIterator").map(str::to_string),
        millis_behind_latest: number_field(body, "MillisBehindLatest"),
    })
}

#[cfg(test)]
mod tests {
    use base64::Engine;
    use base64::engine::general_purpose::STANDARD;
    use serde_json::json;

    use super::*;

    fn page(sizes: &[usize], next: Option<&str>) -> Vec<u8> {
        let records: Vec<_> = sizes
            .iter()
            .enumerate()
            .map(|(i, &n)| {
                json!({
                    "SequenceNumber": format!("{i}"),
                    "ApproximateArrivalTimestamp": 1.7e9,
                    "Data": STANDARD.encode(vec![b'"'; n]),
                    "PartitionKey": format!("\"Data\":\"{i}"),
                })
            })
            .collect();
        let mut doc = json!({"Records": records, "MillisBehindLatest": 42});
        if let Some(next) = next {
            doc["NextShardIterator"] = json!(next);
        }
        serde_json::to_vec(&doc).expect("serializable")
    }

    #[test]
    fn counts_records_and_decoded_bytes() {
        let body = page(&[0, 1, 2, 3, 1024, 100], Some("AAAA/+=="));
        let p = scan_get_records(&body).expect("scans");
        assert_eq!(
            p,
            RecordsPage {
                records: 6,
                data_bytes: 1130,
                next_iterator: Some("AAAA/+==".into()),
                millis_behind_latest: Some(42),
            }
        );
    }

    #[test]
    fn an_empty_page_at_the_end_of_a_closed_shard() {
        let body = page(&[], None);
        let p = scan_get_records(&body).expect("scans");
        assert_eq!(p.records, 0);
        assert_eq!(p.next_iterator, None);
    }

    #[test]
    fn tolerates_whitespace_around_colons() {
        let body = br#"{ "Records" : [ { "Data" : "AAE=" } ], "NextShardIterator" : "x", "MillisBehindLatest" : 0 }"#;
        let p = scan_get_records(body).expect("scans");
        assert_eq!((p.records, p.data_bytes), (1, 2));
        assert_eq!(p.next_iterator.as_deref(), Some("x"));
        assert_eq!(p.millis_behind_latest, Some(0));
    }

    #[test]
    fn reads_the_failed_record_count() {
        assert_eq!(
            failed_record_count(br#"{"FailedRecordCount":0,"Records":[]}"#),
            Some(0)
        );
        assert_eq!(
            failed_record_count(br#"{"Records":[], "FailedRecordCount": 17}"#),
            Some(17)
        );
        assert_eq!(failed_record_count(br#"{"__type":"X"}"#), None);
    }
}
