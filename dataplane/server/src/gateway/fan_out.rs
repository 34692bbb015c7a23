//! PutRecords on a stream spread over several shard groups: the records are split by the group
//! storing their shard, sent to the groups concurrently, and the answers merged back into the
//! request's order, so the client sees one PutRecords answer.
//!
//! A group that cannot take its part (unreachable, or failing with a 5xx) turns only its
//! records into per-record failures, which clients retry like throttled records. A group that
//! does not host a shard it was sent (placement moving, routes behind) refuses its whole part;
//! those records are sent again, one sub-request per shard so that one misplaced shard holds
//! back only its own records, each to the group the refusal named or else where the routes in
//! force place it, until [`NOT_HOSTED_PATIENCE`] runs out; then they fail with
//! `ServiceUnavailable`. A group refusing its part as a
//! malformed request (4xx) has that refusal returned for the whole call, as Kinesis would have
//! refused the whole call; records other groups took in the meantime may then be written twice
//! when the client sends them again, which Kinesis's at-least-once contract allows.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use bytes::Bytes;
use http::HeaderMap;
use riffle_wire::{Doc, Format, Key, Value, kind};
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::routes::{RouteTable, Routes, StreamRoute};
use super::target::record_hash_key;
use super::upstream::{
    Answer, NOT_HOSTED_PATIENCE, Upstream, not_hosted, retry_pause, still_not_hosted,
};

/// Most records in one PutRecords call (larger calls go whole to group 0, which refuses them).
const MAX_RECORDS: usize = 500;
/// Most bytes of data and partition keys in one PutRecords call.
const MAX_BYTES: usize = 5 * 1024 * 1024;

/// A PutRecords request, read far enough to route its records.
#[derive(Debug, Clone)]
pub struct Records {
    /// The request's members, `Records` included, in wire order.
    members: Vec<(Key, Value)>,
    /// The record entries, as sent.
    records: Vec<Value>,
    /// The hash key of each record.
    keys: Vec<u128>,
}

/// Records bound for one group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    /// Position of the group in the stream's route.
    pub group: usize,
    /// The one shard whose records these are, for a shard sent alone.
    pub shard: Option<u32>,
    /// Positions of the records in the request, in request order.
    pub positions: Vec<usize>,
}

/// What earlier refusals taught about where records go.
#[derive(Debug, Clone, Default)]
pub struct Redirects {
    /// Shards whose records are sent in a sub-request of their own.
    pub alone: BTreeSet<u32>,
    /// The group a refusal named for a shard, tried before the routes' group.
    pub named: BTreeMap<u32, usize>,
}

impl Records {
    /// Reads a PutRecords request. `None` when it is malformed or over the call's limits: such
    /// a request goes whole to group 0, which answers with the exact error (splitting it could
    /// let through a call Kinesis refuses).
    pub fn read(request: &Value, format: Format) -> Option<Records> {
        let Value::Map(members) = request else {
            return None;
        };
        let Some(Value::List(records)) = request.get("Records") else {
            return None;
        };
        if records.is_empty() || records.len() > MAX_RECORDS {
            return None;
        }
        let mut keys = Vec::with_capacity(records.len());
        let mut bytes = 0usize;
        for record in records {
            let doc = Doc::new(record, format).ok()?;
            keys.push(record_hash_key(&doc)?);
            // Every record's partition key is checked, even one routed by an explicit hash
            // key, so that no group refuses its part for it after others wrote theirs.
            let partition_key = record.get("PartitionKey").and_then(Value::as_str)?;
            if !(1..=256).contains(&partition_key.chars().count()) {
                return None;
            }
            bytes += partition_key.len() + data_len(record.get("Data")?)?;
        }
        if bytes > MAX_BYTES {
            return None;
        }
        Some(Records {
            members: members.clone(),
            records: records.clone(),
            keys,
        })
    }

    /// How many records the request carries.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// Whether the request carries no record (never true of a request [`Records::read`] took).
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// Groups the records at `pending` by the group storing their shard under `route` (or the
    /// group `redirects` names for it), groups in route order, records in request order; the
    /// records of shards `redirects` sets alone get batches of their own.
    pub fn batches(
        &self,
        pending: &[usize],
        route: &StreamRoute,
        redirects: &Redirects,
    ) -> Vec<Batch> {
        let mut batches: Vec<Batch> = Vec::new();
        for &position in pending {
            let (group, shard) = match route.spread() {
                Some(spread) => {
                    let shard = spread.shard_for_key(self.keys[position]);
                    let group = redirects
                        .named
                        .get(&shard.index)
                        .copied()
                        .filter(|&g| g < spread.groups.len())
                        .unwrap_or(shard.group);
                    (
                        group,
                        redirects
                            .alone
                            .contains(&shard.index)
                            .then_some(shard.index),
                    )
                }
                None => (0, None),
            };
            match batches
                .iter_mut()
                .find(|b| b.group == group && b.shard == shard)
            {
                Some(batch) => batch.positions.push(position),
                None => batches.push(Batch {
                    group,
                    shard,
                    positions: vec![position],
                }),
            }
        }
        batches.sort_by_key(|b| (b.group, b.shard));
        batches
    }

    /// The shards (under `route`) of the records at `positions`.
    pub fn shards(&self, positions: &[usize], route: &StreamRoute) -> BTreeSet<u32> {
        let Some(spread) = route.spread() else {
            return BTreeSet::new();
        };
        positions
            .iter()
            .map(|&p| spread.shard_for_key(self.keys[p]).index)
            .collect()
    }

    /// The request for the records at `positions`: the client's request (stream name or ARN
    /// and all) with only those records.
    pub fn sub_request(&self, positions: &[usize]) -> Value {
        let records = Value::List(positions.iter().map(|&p| self.records[p].clone()).collect());
        Value::Map(
            self.members
                .iter()
                .map(|(key, value)| {
                    if key == "Records" {
                        (key.clone(), records.clone())
                    } else {
                        (key.clone(), value.clone())
                    }
                })
                .collect(),
        )
    }
}

/// Length of a record's data: a CBOR byte string, or base64 text in JSON.
fn data_len(data: &Value) -> Option<usize> {
    match data {
        Value::Bytes(bytes) => Some(bytes.len()),
        Value::Str(text) => {
            let padding = text.bytes().rev().take_while(|&b| b == b'=').count();
            Some((text.len() / 4 * 3).saturating_sub(padding))
        }
        _ => None,
    }
}

/// The answer being assembled from the groups' answers.
#[derive(Debug, Clone)]
pub struct Merge {
    results: Vec<Option<Value>>,
    encryption: Option<Value>,
}

impl Merge {
    /// An answer for `count` records, none answered yet.
    pub fn new(count: usize) -> Merge {
        Merge {
            results: vec![None; count],
            encryption: None,
        }
    }

    /// Takes a group's PutRecords answer for the records at `positions`.
    pub fn answered(&mut self, positions: &[usize], answer: &Value) {
        match answer.get("Records") {
            Some(Value::List(results)) if results.len() == positions.len() => {
                for (&position, result) in positions.iter().zip(results) {
                    self.results[position] = Some(result.clone());
                }
                if self.encryption.is_none() {
                    self.encryption = answer.get("EncryptionType").cloned();
                }
            }
            _ => self.failed(
                positions,
                kind::INTERNAL_FAILURE,
                "A shard group answered PutRecords without a result for each record.",
            ),
        }
    }

    /// Fails the records at `positions` with `code`.
    pub fn failed(&mut self, positions: &[usize], code: &str, message: &str) {
        for &position in positions {
            self.results[position] = Some(failure(code, message));
        }
    }

    /// The PutRecords answer: results in request order, `FailedRecordCount` the sum over
    /// groups (every result with an `ErrorCode`), the groups' `EncryptionType`.
    pub fn finish(self) -> Value {
        let results: Vec<Value> = self
            .results
            .into_iter()
            .map(|result| {
                result.unwrap_or_else(|| {
                    failure(
                        kind::INTERNAL_FAILURE,
                        "No shard group answered for this record.",
                    )
                })
            })
            .collect();
        let failed = results
            .iter()
            .filter(|r| r.get("ErrorCode").is_some())
            .count();
        Value::map()
            .with("FailedRecordCount", failed)
            .with("Records", Value::List(results))
            .with_opt("EncryptionType", self.encryption)
            .build()
    }
}

fn failure(code: &str, message: &str) -> Value {
    Value::map()
        .with("ErrorCode", code.to_string())
        .with("ErrorMessage", message)
        .build()
}

/// What the client gets.
#[derive(Debug)]
pub enum Outcome {
    /// A group's answer, relayed unchanged: every record went to one group, or a group refused
    /// the call as a whole.
    Relay(Answer),
    /// The merged answer of several groups.
    Merged(Value),
    /// The stream is no longer routed (deleted while the call was under way).
    Gone,
}

/// Sends a PutRecords call for stream `stream` (already read into `records`; `body` is the
/// client's body) to the groups storing its records.
pub async fn put_records(
    upstream: &Upstream,
    routes: &Routes,
    headers: &HeaderMap,
    body: Bytes,
    records: &Records,
    stream: &str,
    format: Format,
) -> Outcome {
    let deadline = Instant::now() + NOT_HOSTED_PATIENCE;
    let mut merge = Merge::new(records.len());
    let mut pending: Vec<usize> = (0..records.len()).collect();
    let mut table: Arc<RouteTable> = routes.current();
    let mut attempt = 0u32;
    let mut redirects = Redirects::default();
    loop {
        let Some(route) = table.streams.get(stream) else {
            return Outcome::Gone;
        };
        let batches = records.batches(&pending, route, &redirects);
        // A named group is tried once; after that the routes decide again.
        redirects.named.clear();
        let mut sends = JoinSet::new();
        for (slot, batch) in batches.iter().enumerate() {
            let whole = batch.positions.len() == records.len();
            let payload = if whole {
                body.clone()
            } else {
                Bytes::from(format.encode(&records.sub_request(&batch.positions)))
            };
            let upstream = upstream.clone();
            let headers = headers.clone();
            let base = route.groups()[batch.group].clone();
            sends.spawn(
                async move { (slot, upstream.exchange(&headers, payload, &base, &[]).await) },
            );
        }
        let mut again = Vec::new();
        while let Some(joined) = sends.join_next().await {
            let Ok((slot, result)) = joined else {
                continue; // a send task cannot panic short of a bug; its records stay unanswered
            };
            let batch = &batches[slot];
            match result {
                Ok(answer) if let Some(named) = not_hosted(answer.status, &answer.headers) => {
                    again.extend_from_slice(&batch.positions);
                    match (batch.shard, named) {
                        (Some(shard), Some(group)) if group != batch.group => {
                            redirects.named.insert(shard, group);
                        }
                        (Some(_), _) => {}
                        (None, _) => redirects
                            .alone
                            .extend(records.shards(&batch.positions, route)),
                    }
                }
                Ok(answer) if batch.positions.len() == records.len() => {
                    return Outcome::Relay(answer);
                }
                Ok(answer) if answer.status.is_success() => match answer.document(format) {
                    Some(document) => merge.answered(&batch.positions, &document),
                    None => merge.failed(
                        &batch.positions,
                        kind::INTERNAL_FAILURE,
                        "A shard group answered PutRecords unreadably.",
                    ),
                },
                Ok(answer) if answer.status.is_client_error() => return Outcome::Relay(answer),
                Ok(answer) => {
                    let code = match answer.error_kind(format).as_deref() {
                        Some(kind::SERVICE_UNAVAILABLE) => kind::SERVICE_UNAVAILABLE,
                        _ if answer.status == http::StatusCode::SERVICE_UNAVAILABLE => {
                            kind::SERVICE_UNAVAILABLE
                        }
                        _ => kind::INTERNAL_FAILURE,
                    };
                    let message = answer.error_message(format).unwrap_or_else(|| {
                        format!("A shard group failed with HTTP status {}.", answer.status)
                    });
                    merge.failed(&batch.positions, code, &message);
                }
                Err(message) => merge.failed(&batch.positions, kind::SERVICE_UNAVAILABLE, &message),
            }
        }
        if again.is_empty() {
            return Outcome::Merged(merge.finish());
        }
        again.sort_unstable();
        if Instant::now() >= deadline {
            let error = still_not_hosted(stream, "The shard of this record");
            merge.failed(&again, kind::SERVICE_UNAVAILABLE, &error.message);
            return Outcome::Merged(merge.finish());
        }
        tokio::time::sleep(retry_pause(attempt)).await;
        attempt += 1;
        pending = again;
        table = routes.refresh();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gateway::routes::tests::spread_route;
    use crate::streams::hash_key::HashRange;

    /// A PutRecords request whose record `i` has explicit hash key `keys[i]`.
    fn request(keys: &[u128], format: Format) -> Value {
        let records: Vec<Value> = keys
            .iter()
            .enumerate()
            .map(|(i, key)| {
                let data: Value = match format {
                    Format::Json => Value::from("aGk="),
                    Format::Cbor => Value::from(b"hi".to_vec()),
                };
                Value::map()
                    .with("PartitionKey", format!("k{i}"))
                    .with("ExplicitHashKey", key.to_string())
                    .with("Data", data)
                    .build()
            })
            .collect();
        Value::map()
            .with("StreamName", "orders")
            .with("Records", Value::List(records))
            .with(
                "StreamARN",
                "arn:aws:kinesis:us-east-1:000000000000:stream/orders",
            )
            .build()
    }

    fn quarter(i: usize) -> u128 {
        HashRange::divide_evenly(4)[i].start + 1
    }

    #[test]
    fn records_are_split_by_group_in_request_order() {
        let route = StreamRoute::Groups(spread_route());
        // Quarters 0 and 1 are stored by group 0, 2 and 3 by group 1.
        let keys = [quarter(3), quarter(0), quarter(2), quarter(1), quarter(0)];
        for format in [Format::Json, Format::Cbor] {
            let records = Records::read(&request(&keys, format), format).unwrap();
            let all: Vec<usize> = (0..keys.len()).collect();
            assert_eq!(
                records.batches(&all, &route, &Redirects::default()),
                vec![
                    Batch {
                        group: 0,
                        shard: None,
                        positions: vec![1, 3, 4]
                    },
                    Batch {
                        group: 1,
                        shard: None,
                        positions: vec![0, 2]
                    },
                ]
            );
            // A sub-request keeps the stream's name and ARN, in wire order, and its records.
            let sub = records.sub_request(&[0, 2]);
            let Value::Map(members) = &sub else {
                panic!("not a map")
            };
            let names: Vec<&str> = members.iter().map(|(k, _)| k.as_ref()).collect();
            assert_eq!(names, ["StreamName", "Records", "StreamARN"]);
            let Some(Value::List(sent)) = sub.get("Records") else {
                panic!("no records")
            };
            assert_eq!(sent.len(), 2);
            assert_eq!(
                sent[1].get("PartitionKey").and_then(Value::as_str),
                Some("k2")
            );
            // The sub-request survives the trip through the client's format.
            let decoded = format.decode(&format.encode(&sub)).unwrap();
            assert_eq!(decoded, sub);
        }
        // A stream in one group takes every record in one batch.
        let single = StreamRoute::Single("http://g0".into());
        let records = Records::read(&request(&keys, Format::Json), Format::Json).unwrap();
        assert_eq!(
            records.batches(&[4, 0], &single, &Redirects::default()),
            vec![Batch {
                group: 0,
                shard: None,
                positions: vec![4, 0]
            }]
        );
    }

    #[test]
    fn refused_records_go_alone_by_shard_and_where_the_refusal_points() {
        let route = StreamRoute::Groups(spread_route());
        // Shards 2 and 3 (quarters 0 and 1) are in group 0, shards 4 and 5 in group 1.
        let keys = [quarter(0), quarter(1), quarter(3), quarter(0)];
        let records = Records::read(&request(&keys, Format::Json), Format::Json).unwrap();
        assert_eq!(
            records.shards(&[0, 1, 3], &route),
            BTreeSet::from([2, 3]),
            "the shards of group 0's refused part"
        );
        let mut redirects = Redirects {
            alone: BTreeSet::from([2, 3]),
            named: BTreeMap::new(),
        };
        let all = [0, 1, 2, 3];
        let batch = |group, shard, positions: &[usize]| Batch {
            group,
            shard,
            positions: positions.to_vec(),
        };
        assert_eq!(
            records.batches(&all, &route, &redirects),
            vec![
                batch(0, Some(2), &[0, 3]),
                batch(0, Some(3), &[1]),
                batch(1, None, &[2]),
            ]
        );
        // Shard 3's group said group 1 stores it: its records go there, alone.
        redirects.named.insert(3, 1);
        assert_eq!(
            records.batches(&all, &route, &redirects),
            vec![
                batch(0, Some(2), &[0, 3]),
                batch(1, None, &[2]),
                batch(1, Some(3), &[1]),
            ]
        );
        // A named group the route does not have is ignored.
        redirects.named.insert(3, 9);
        assert_eq!(
            records.batches(&[1], &route, &redirects),
            vec![batch(0, Some(3), &[1])]
        );
    }

    #[test]
    fn partition_keys_route_by_their_md5() {
        let route = StreamRoute::Groups(spread_route());
        // MD5("a") starts 0x0cc1…, in the first quarter (group 0).
        let body = br#"{"StreamName":"orders","Records":[{"PartitionKey":"a","Data":"aGk="}]}"#;
        let value = Format::Json.decode(body).unwrap();
        let records = Records::read(&value, Format::Json).unwrap();
        assert_eq!(
            records.batches(&[0], &route, &Redirects::default())[0].group,
            0
        );
    }

    #[test]
    fn malformed_or_oversized_calls_are_not_split() {
        let malformed = [
            r#"{"StreamName":"orders"}"#,
            r#"{"StreamName":"orders","Records":[]}"#,
            r#"{"StreamName":"orders","Records":[{"Data":"aGk="}]}"#,
            r#"{"StreamName":"orders","Records":[{"PartitionKey":"a"}]}"#,
            r#"{"StreamName":"orders","Records":[{"PartitionKey":"a","Data":"aGk=","ExplicitHashKey":"x"}]}"#,
            r#"{"StreamName":"orders","Records":[7]}"#,
            r#"{"StreamName":"orders","Records":[{"PartitionKey":"","ExplicitHashKey":"1","Data":"aGk="}]}"#,
        ];
        for body in malformed {
            let value = Format::Json.decode(body.as_bytes()).unwrap();
            assert!(Records::read(&value, Format::Json).is_none(), "{body}");
        }
        let too_many = request(&[0; MAX_RECORDS + 1], Format::Json);
        assert!(Records::read(&too_many, Format::Json).is_none());
        let big = Value::from("A".repeat(4 * 1024 * 1024));
        let records: Vec<Value> = (0..2)
            .map(|i| {
                Value::map()
                    .with("PartitionKey", format!("k{i}"))
                    .with("Data", big.clone())
                    .build()
            })
            .collect();
        let too_big = Value::map()
            .with("StreamName", "orders")
            .with("Records", Value::List(records))
            .build();
        assert!(Records::read(&too_big, Format::Json).is_none());
        assert!(Records::read(&request(&[0; MAX_RECORDS], Format::Json), Format::Json).is_some());
    }

    fn success(shard: &str, sequence: &str) -> Value {
        Value::map()
            .with("SequenceNumber", sequence)
            .with("ShardId", shard)
            .build()
    }

    #[test]
    fn answers_merge_back_in_request_order() {
        let mut merge = Merge::new(5);
        let group1 = Value::map()
            .with("FailedRecordCount", 1i64)
            .with(
                "Records",
                Value::List(vec![
                    success("shardId-000000000005", "s0"),
                    failure("ProvisionedThroughputExceededException", "slow down"),
                ]),
            )
            .with("EncryptionType", "KMS")
            .build();
        let group0 = Value::map()
            .with("FailedRecordCount", 0i64)
            .with(
                "Records",
                Value::List(vec![
                    success("shardId-000000000002", "s1"),
                    success("shardId-000000000003", "s3"),
                    success("shardId-000000000002", "s4"),
                ]),
            )
            .with("EncryptionType", "KMS")
            .build();
        merge.answered(&[0, 2], &group1);
        merge.answered(&[1, 3, 4], &group0);
        let merged = merge.finish();
        assert_eq!(merged.get("FailedRecordCount"), Some(&Value::Int(1)));
        assert_eq!(
            merged.get("EncryptionType").and_then(Value::as_str),
            Some("KMS")
        );
        let Some(Value::List(results)) = merged.get("Records") else {
            panic!("no records")
        };
        let sequences: Vec<Option<&str>> = results
            .iter()
            .map(|r| r.get("SequenceNumber").and_then(Value::as_str))
            .collect();
        assert_eq!(
            sequences,
            [Some("s0"), Some("s1"), None, Some("s3"), Some("s4")]
        );
        assert_eq!(
            results[2].get("ErrorCode").and_then(Value::as_str),
            Some("ProvisionedThroughputExceededException")
        );
    }

    #[test]
    fn a_failed_group_fails_only_its_records() {
        let mut merge = Merge::new(4);
        let healthy = Value::map()
            .with("FailedRecordCount", 0i64)
            .with(
                "Records",
                Value::List(vec![
                    success("shardId-000000000002", "a"),
                    success("shardId-000000000003", "b"),
                ]),
            )
            .with("EncryptionType", "NONE")
            .build();
        merge.answered(&[0, 3], &healthy);
        merge.failed(
            &[1, 2],
            kind::SERVICE_UNAVAILABLE,
            "the shard group at http://g1 is unreachable",
        );
        let merged = merge.finish();
        assert_eq!(merged.get("FailedRecordCount"), Some(&Value::Int(2)));
        let Some(Value::List(results)) = merged.get("Records") else {
            panic!("no records")
        };
        assert_eq!(
            results[0].get("SequenceNumber").and_then(Value::as_str),
            Some("a")
        );
        assert_eq!(
            results[3].get("SequenceNumber").and_then(Value::as_str),
            Some("b")
        );
        for failed in &results[1..3] {
            assert_eq!(
                failed.get("ErrorCode").and_then(Value::as_str),
                Some("ServiceUnavailable")
            );
            assert!(
                failed
                    .get("ErrorMessage")
                    .and_then(Value::as_str)
                    .is_some_and(|m| m.contains("unreachable"))
            );
        }
        // An answer that does not account for each record fails those records.
        let mut merge = Merge::new(2);
        merge.answered(
            &[0, 1],
            &Value::map()
                .with("Records", Value::List(vec![success("x", "1")]))
                .build(),
        );
        let merged = merge.finish();
        assert_eq!(merged.get("FailedRecordCount"), Some(&Value::Int(2)));
        assert_eq!(merged.get("EncryptionType"), None);
    }
}
