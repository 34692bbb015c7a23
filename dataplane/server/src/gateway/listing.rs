//! DescribeStream and ListShards on a stream spread over several shard groups. Every group
//! holds the stream's whole shard list, so group 0 answers; but only the group storing a closed
//! shard knows where its records ended, so the `EndingSequenceNumber` of each closed shard
//! stored elsewhere is replaced with the one its own group reports (through ListShards).

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;
use http::HeaderMap;
use riffle_wire::{AwsError, Format, Value};

use super::routes::GroupedRoute;
use super::upstream::Upstream;
use crate::streams::model::parse_shard_id;

/// Where the shard list sits in the answer to `operation`.
fn shards_mut<'v>(operation: &str, answer: &'v mut Value) -> Option<&'v mut Vec<Value>> {
    let list = match operation {
        "DescribeStream" => member_mut(member_mut(answer, "StreamDescription")?, "Shards")?,
        _ => member_mut(answer, "Shards")?,
    };
    match list {
        Value::List(shards) => Some(shards),
        _ => None,
    }
}

/// The member `key` of a map (the last one if repeated, as [`Value::get`] reads it).
fn member_mut<'v>(value: &'v mut Value, key: &str) -> Option<&'v mut Value> {
    match value {
        Value::Map(members) => members
            .iter_mut()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v),
        _ => None,
    }
}

/// The shard index of a shard description, and its ending sequence number if it is closed.
fn closed_end(shard: &Value) -> Option<(u32, Option<&str>)> {
    let index = parse_shard_id(shard.get("ShardId")?.as_str()?)?;
    let end = shard
        .get("SequenceNumberRange")
        .and_then(|range| range.get("EndingSequenceNumber"))
        .and_then(Value::as_str);
    Some((index, end))
}

/// The groups (other than 0) storing closed shards listed in `shards`: the ones to ask.
pub fn groups_to_ask(shards: &[Value], route: &GroupedRoute) -> BTreeSet<usize> {
    shards
        .iter()
        .filter_map(closed_end)
        .filter(|(_, end)| end.is_some())
        .filter_map(|(index, _)| route.group_of_shard(index))
        .filter(|&group| group != 0)
        .collect()
}

/// The ending sequence numbers a group's ListShards page gives for the closed shards stored
/// by that group under `route`, and the page's `NextToken`.
pub fn ends_reported(
    page: &Value,
    group: usize,
    route: &GroupedRoute,
) -> (BTreeMap<u32, String>, Option<String>) {
    let mut ends = BTreeMap::new();
    if let Some(Value::List(shards)) = page.get("Shards") {
        for (index, end) in shards.iter().filter_map(closed_end) {
            if let Some(end) = end
                && route.group_of_shard(index) == Some(group)
            {
                ends.insert(index, end.to_string());
            }
        }
    }
    let next = page
        .get("NextToken")
        .and_then(Value::as_str)
        .map(str::to_string);
    (ends, next)
}

/// Replaces the ending sequence number of each closed shard in `shards` that `ends` has one
/// for. Open shards and shards `ends` does not name keep what group 0 said.
pub fn patch(shards: &mut [Value], ends: &BTreeMap<u32, String>) {
    for shard in shards {
        let Some((index, Some(_))) = closed_end(shard) else {
            continue;
        };
        let Some(end) = ends.get(&index) else {
            continue;
        };
        if let Some(range) = member_mut(shard, "SequenceNumberRange")
            && let Some(slot) = member_mut(range, "EndingSequenceNumber")
        {
            *slot = Value::from(end.as_str());
        }
    }
}

/// Completes group 0's answer (`answer`, decoded) to DescribeStream or ListShards on
/// `stream`: asks the groups storing its closed shards for their ends and patches them in.
pub async fn complete(
    upstream: &Upstream,
    headers: &HeaderMap,
    route: &GroupedRoute,
    stream: &str,
    operation: &str,
    format: Format,
    answer: &mut Value,
) -> Result<(), AwsError> {
    let Some(shards) = shards_mut(operation, answer) else {
        return Ok(());
    };
    let mut ends = BTreeMap::new();
    for group in groups_to_ask(shards, route) {
        ends.extend(ask(upstream, headers, route, stream, group, format).await?);
    }
    patch(shards, &ends);
    Ok(())
}

/// The ends of the closed shards `group` stores, from all pages of its ListShards.
async fn ask(
    upstream: &Upstream,
    headers: &HeaderMap,
    route: &GroupedRoute,
    stream: &str,
    group: usize,
    format: Format,
) -> Result<BTreeMap<u32, String>, AwsError> {
    let base = &route.groups[group];
    let mut ends = BTreeMap::new();
    let mut token: Option<String> = None;
    loop {
        let request = match &token {
            Some(token) => Value::map().with("NextToken", token.as_str()).build(),
            None => Value::map()
                .with("StreamName", stream)
                .with("MaxResults", 10_000i64)
                .build(),
        };
        let mut headers = headers.clone();
        headers.insert(
            "x-amz-target",
            http::HeaderValue::from_static("Kinesis_20131202.ListShards"),
        );
        let answer = upstream
            .exchange(&headers, Bytes::from(format.encode(&request)), base, &[])
            .await
            .map_err(AwsError::service_unavailable)?;
        let page = answer
            .status
            .is_success()
            .then(|| answer.document(format))
            .flatten()
            .ok_or_else(|| {
                AwsError::service_unavailable(format!(
                    "Shard group {group} of stream {stream} could not list its shards: {}",
                    answer
                        .error_message(format)
                        .unwrap_or_else(|| format!("HTTP status {}", answer.status))
                ))
            })?;
        let (found, next) = ends_reported(&page, group, route);
        ends.extend(found);
        match next {
            Some(next) if token.as_deref() != Some(next.as_str()) => token = Some(next),
            _ => return Ok(ends),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gateway::routes::tests::spread_route;

    fn shard(index: u32, end: Option<&str>) -> Value {
        Value::map()
            .with("ShardId", format!("shardId-{index:012}"))
            .with(
                "SequenceNumberRange",
                Value::map()
                    .with("StartingSequenceNumber", format!("start-{index}"))
                    .with_opt("EndingSequenceNumber", end)
                    .build(),
            )
            .build()
    }

    fn end_of(shard: &Value) -> Option<&str> {
        shard
            .get("SequenceNumberRange")?
            .get("EndingSequenceNumber")?
            .as_str()
    }

    #[test]
    fn closed_shards_stored_elsewhere_take_their_groups_ends() {
        // Shard 0 (closed) is stored by group 0, shard 1 (closed) by group 1; 2..=5 are open.
        let route = spread_route();
        let group0_says = vec![
            shard(0, Some("end-0-by-g0")),
            shard(1, Some("unknowable-in-g0")),
            shard(2, None),
            shard(4, None),
        ];
        assert_eq!(groups_to_ask(&group0_says, &route), BTreeSet::from([1]));
        let group1_says = Value::map()
            .with(
                "Shards",
                Value::List(vec![
                    shard(0, Some("unknowable-in-g1")),
                    shard(1, Some("end-1-by-g1")),
                    shard(4, None),
                ]),
            )
            .with("NextToken", "more")
            .build();
        let (ends, next) = ends_reported(&group1_says, 1, &route);
        assert_eq!(
            ends,
            BTreeMap::from([(1, "end-1-by-g1".to_string())]),
            "only the ends of shards group 1 stores count"
        );
        assert_eq!(next.as_deref(), Some("more"));
        let mut answer = Value::map()
            .with(
                "StreamDescription",
                Value::map()
                    .with("StreamName", "orders")
                    .with("Shards", Value::List(group0_says))
                    .build(),
            )
            .build();
        let shards = shards_mut("DescribeStream", &mut answer).unwrap();
        patch(shards, &ends);
        let Some(Value::List(shards)) = answer.get("StreamDescription").unwrap().get("Shards")
        else {
            panic!("no shards")
        };
        assert_eq!(end_of(&shards[0]), Some("end-0-by-g0"));
        assert_eq!(end_of(&shards[1]), Some("end-1-by-g1"));
        assert_eq!(end_of(&shards[2]), None, "open shards stay open");
        assert_eq!(
            shards[1]
                .get("SequenceNumberRange")
                .unwrap()
                .get("StartingSequenceNumber")
                .and_then(Value::as_str),
            Some("start-1")
        );
    }

    #[test]
    fn list_shards_answers_are_patched_too_and_open_streams_need_no_questions() {
        let route = spread_route();
        let mut answer = Value::map()
            .with(
                "Shards",
                Value::List(vec![shard(1, Some("wrong")), shard(5, None)]),
            )
            .build();
        let shards = shards_mut("ListShards", &mut answer).unwrap();
        assert_eq!(groups_to_ask(shards, &route), BTreeSet::from([1]));
        patch(shards, &BTreeMap::from([(1, "right".to_string())]));
        let Some(Value::List(shards)) = answer.get("Shards") else {
            panic!("no shards")
        };
        assert_eq!(end_of(&shards[0]), Some("right"));
        let open_only = vec![shard(2, None), shard(5, None)];
        assert!(groups_to_ask(&open_only, &route).is_empty());
    }
}
