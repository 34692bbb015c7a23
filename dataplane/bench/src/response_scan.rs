//! Reading the few fields the throughput benchmarks need straight out of JSON response bodies.
//!
//! A drain at hundreds of MB/s would spend more client CPU parsing 10 MB GetRecords bodies into
//! a document tree (and decoding every record's base64) than the server spends producing them,
//! on the same cores. These scanners touch each byte once with SIMD searches instead: they
//! count records and their data bytes from the length of each base64 `Data` string.
//!
//! They rely on JSON escaping: inside a string a `"` is always escaped, so `"Data"` is a whole
//! string (a key when a colon follows), and base64 never contains `"` or `\`, so a payload
//! ends at the next `"`.

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

/// Where a [`PageScanner`] is in the body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Between record payloads, looking for the next `"Data"`.
    Outside,
    /// After `"Data"`, expecting `: "` (whether the colon was seen).
    AfterKey { colon: bool },
    /// Inside a base64 payload.
    InValue,
}

/// The key whose string values are the record payloads.
const DATA_KEY: &[u8] = b"\"Data\"";

/// Scans a GetRecords response body as it arrives, chunk by chunk, so that a reader counts one
/// chunk while the next is still in flight instead of buffering and copying the whole body.
/// Everything but the payloads is kept (about 150 bytes a record) to read the other fields at
/// the end.
pub struct PageScanner {
    finder: memmem::Finder<'static>,
    state: State,
    records: u64,
    data_bytes: u64,
    value_len: usize,
    /// The last two characters of the payload so far, for its `=` padding.
    value_tail: [u8; 2],
    rest: Vec<u8>,
}

impl Default for PageScanner {
    fn default() -> Self {
        PageScanner {
            finder: memmem::Finder::new(DATA_KEY),
            state: State::Outside,
            records: 0,
            data_bytes: 0,
            value_len: 0,
            value_tail: [0; 2],
            rest: Vec::new(),
        }
    }
}

impl PageScanner {
    /// A scanner at the start of a body.
    pub fn new() -> PageScanner {
        PageScanner::default()
    }

    /// Where a `"Data"` that began at the end of the previous chunk ends in this one.
    fn straddling_key(&self, chunk: &[u8]) -> Option<usize> {
        let keep = self.rest.len().min(DATA_KEY.len() - 1);
        let mut window = self.rest[self.rest.len() - keep..].to_vec();
        let head = chunk.len().min(DATA_KEY.len() - 1);
        window.extend_from_slice(&chunk[..head]);
        let at = memmem::find(&window, DATA_KEY)?;
        let end = at + DATA_KEY.len();
        (at < keep && end > keep).then(|| end - keep)
    }

    /// Consumes the next chunk of the body.
    pub fn feed(&mut self, chunk: &[u8]) {
        let mut pos = 0;
        if self.state == State::Outside
            && let Some(end) = self.straddling_key(chunk)
        {
            self.rest.extend_from_slice(&chunk[..end]);
            pos = end;
            self.state = State::AfterKey { colon: false };
        }
        while pos < chunk.len() {
            match self.state {
                State::Outside => match self.finder.find(&chunk[pos..]) {
                    Some(i) => {
                        let end = pos + i + DATA_KEY.len();
                        self.rest.extend_from_slice(&chunk[pos..end]);
                        pos = end;
                        self.state = State::AfterKey { colon: false };
                    }
                    None => {
                        self.rest.extend_from_slice(&chunk[pos..]);
                        pos = chunk.len();
                    }
                },
                State::AfterKey { colon } => {
                    let b = chunk[pos];
                    self.rest.push(b);
                    pos += 1;
                    self.state = match b {
                        _ if b.is_ascii_whitespace() => State::AfterKey { colon },
                        b':' if !colon => State::AfterKey { colon: true },
                        b'"' if colon => {
                            self.value_len = 0;
                            State::InValue
                        }
                        // `"Data"` was a value, not a key.
                        _ => State::Outside,
                    };
                }
                State::InValue => {
                    let part = &chunk[pos..];
                    let len = memchr(b'"', part).unwrap_or(part.len());
                    match len {
                        0 => {}
                        1 => self.value_tail = [self.value_tail[1], part[0]],
                        _ => self.value_tail = [part[len - 2], part[len - 1]],
                    }
                    self.value_len += len;
                    pos += len;
                    if pos < chunk.len() {
                        self.rest.push(b'"');
                        pos += 1;
                        self.end_value();
                    }
                }
            }
        }
    }

    fn end_value(&mut self) {
        let padding = match (self.value_len, self.value_tail) {
            (0, _) => 0,
            (1, [_, b'=']) => 1,
            (_, [b'=', b'=']) => 2,
            (_, [_, b'=']) => 1,
            _ => 0,
        };
        self.data_bytes += (self.value_len / 4 * 3).saturating_sub(padding) as u64;
        self.records += 1;
        self.value_tail = [0; 2];
        self.state = State::Outside;
    }

    /// The page, once the whole body has been fed.
    pub fn finish(self) -> Result<RecordsPage> {
        if self.state == State::InValue {
            return Err(anyhow!("the body ends inside a Data string"));
        }
        Ok(RecordsPage {
            records: self.records,
            data_bytes: self.data_bytes,
            next_iterator: string_field(&self.rest, "NextShardIterator").map(str::to_string),
            millis_behind_latest: number_field(&self.rest, "MillisBehindLatest"),
        })
    }
}

/// Scans a whole GetRecords response body.
#[cfg(test)]
fn scan_get_records(body: &[u8]) -> Result<RecordsPage> {
    let mut scanner = PageScanner::new();
    scanner.feed(body);
    scanner.finish()
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
    fn any_split_into_chunks_gives_the_same_page() {
        let body = page(&[0, 1, 2, 3, 4, 5, 1024, 100], Some("it=="));
        let whole = scan_get_records(&body).expect("scans");
        for size in [1, 2, 3, 5, 7, 64, 1000] {
            let mut scanner = PageScanner::new();
            for chunk in body.chunks(size) {
                scanner.feed(chunk);
            }
            assert_eq!(scanner.finish().expect("scans"), whole, "chunks of {size}");
        }
    }

    #[test]
    fn a_data_value_is_not_a_key() {
        let body = br#"{"Records":[{"PartitionKey":"Data","Data":"AAAA"}],"MillisBehindLatest":0}"#;
        let p = scan_get_records(body).expect("scans");
        assert_eq!((p.records, p.data_bytes), (1, 3));
    }

    #[test]
    fn a_truncated_body_is_an_error() {
        assert!(scan_get_records(br#"{"Records":[{"Data":"AAA"#).is_err());
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
