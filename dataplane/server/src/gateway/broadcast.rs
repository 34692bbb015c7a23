//! Changes to a stream spread over several shard groups (splits and merges, tags, retention,
//! encryption, monitoring, consumers, policies, mode, record size): every group holds the
//! stream's whole description, so each change is made in every group. Resharding is
//! deterministic, so a split or merge made in every group opens the same children, placed in the
//! same groups; a group that missed one is brought in step by the operator, which replays group
//! 0's reshards there.
//!
//! Group 0 goes first and decides: if it refuses, the client gets its refusal and no other
//! group is asked. Then the other groups follow in order, and the client gets group 0's answer.
//! A later group failing returns that group's error; the client's retry reaches group 0 again,
//! where the changes are idempotent, and the later groups catch up. Some refusals are the mark
//! of a change made by an earlier attempt, and are taken as success from the later groups:
//! `ResourceInUseException` for RegisterStreamConsumer (already registered), SplitShard and
//! MergeShards (the shard is closed already), and `ResourceNotFoundException` for
//! DeregisterStreamConsumer (already gone). When group 0 itself
//! answers so, the other groups are still brought in line before its answer is returned, so a
//! retry after a partial registration or deregistration completes it.
//!
//! A consumer registered in several groups must have one ARN, which contains its creation
//! time: the time group 0 gave it is passed to the others in `x-riffle-consumer-created`.

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue};
use riffle_wire::{Format, Value, kind};

use super::upstream::{Answer, CONSUMER_CREATED, Upstream};

/// Whether a later group's answer counts as the change being made there.
pub fn later_group_accepts(operation: &str, answer: &Answer, format: Format) -> bool {
    if answer.status.is_success() {
        return true;
    }
    let already = already_done(operation);
    already.is_some() && answer.error_kind(format).as_deref() == already
}

/// The refusal that means an earlier attempt already made the change `operation` makes.
fn already_done(operation: &str) -> Option<&'static str> {
    match operation {
        "RegisterStreamConsumer" => Some(kind::RESOURCE_IN_USE),
        "DeregisterStreamConsumer" => Some(kind::RESOURCE_NOT_FOUND),
        // The shard is closed already: the split or merge was made there before.
        "SplitShard" | "MergeShards" => Some(kind::RESOURCE_IN_USE),
        _ => None,
    }
}

/// The creation time (epoch seconds) in an answer to RegisterStreamConsumer
/// (`Consumer.ConsumerCreationTimestamp`) or DescribeStreamConsumer
/// (`ConsumerDescription.ConsumerCreationTimestamp`).
pub fn consumer_created(answer: &Value) -> Option<i64> {
    let consumer = answer
        .get("Consumer")
        .or_else(|| answer.get("ConsumerDescription"))?;
    match consumer.get("ConsumerCreationTimestamp")? {
        Value::Timestamp(seconds) | Value::Float(seconds) => Some(seconds.floor() as i64),
        Value::Int(seconds) => Some(*seconds),
        _ => None,
    }
}

/// Makes the change `operation` (the client's `body`) in every group at `groups`, group 0
/// first, and returns the answer for the client.
pub async fn everywhere(
    upstream: &Upstream,
    headers: &HeaderMap,
    body: Bytes,
    groups: &[String],
    operation: &str,
    format: Format,
) -> Result<Answer, String> {
    let first = upstream
        .exchange(headers, body.clone(), &groups[0], &[])
        .await?;
    let first_done = first.status.is_success();
    let catching_up = !first_done
        && already_done(operation).is_some()
        && first.error_kind(format).as_deref() == already_done(operation);
    if !first_done && !catching_up {
        return Ok(first);
    }
    let mut extra: Vec<(HeaderName, HeaderValue)> = Vec::new();
    if operation == "RegisterStreamConsumer" {
        let created = if first_done {
            first.document(format).as_ref().and_then(consumer_created)
        } else {
            registered_at(upstream, headers, &body, &groups[0], format).await
        };
        match created {
            Some(created) => extra.push((
                HeaderName::from_static(CONSUMER_CREATED),
                HeaderValue::from(created),
            )),
            // Without the time the groups would give the consumer different ARNs.
            None if catching_up => return Ok(first),
            None => {
                return Err("shard group 0 registered the consumer without saying when".to_string());
            }
        }
    }
    for base in &groups[1..] {
        let answer = upstream
            .exchange(headers, body.clone(), base, &extra)
            .await?;
        if !later_group_accepts(operation, &answer, format) {
            tracing::warn!(operation, %base, status = %answer.status, "a shard group refused a change group 0 made");
            return Ok(answer);
        }
    }
    Ok(first)
}

/// When group 0 registered the consumer a RegisterStreamConsumer `body` names, asked with
/// DescribeStreamConsumer.
async fn registered_at(
    upstream: &Upstream,
    headers: &HeaderMap,
    body: &Bytes,
    base: &str,
    format: Format,
) -> Option<i64> {
    let request = format.decode(body).ok()?;
    let describe = Value::map()
        .with("StreamARN", request.get("StreamARN")?.clone())
        .with("ConsumerName", request.get("ConsumerName")?.clone())
        .build();
    let mut headers = headers.clone();
    headers.insert(
        "x-amz-target",
        HeaderValue::from_static("Kinesis_20131202.DescribeStreamConsumer"),
    );
    let answer = upstream
        .exchange(&headers, Bytes::from(format.encode(&describe)), base, &[])
        .await
        .ok()?;
    if !answer.status.is_success() {
        return None;
    }
    consumer_created(&answer.document(format)?)
}

#[cfg(test)]
mod tests {
    use riffle_wire::AwsError;

    use super::*;

    fn answer(status: u16, body: Vec<u8>) -> Answer {
        Answer {
            status: http::StatusCode::from_u16(status).unwrap(),
            headers: HeaderMap::new(),
            body: Bytes::from(body),
        }
    }

    #[test]
    fn earlier_attempts_count_as_success_only_where_documented() {
        let format = Format::Json;
        let in_use = answer(400, AwsError::resource_in_use("exists").to_body(format));
        let not_found = answer(400, AwsError::resource_not_found("gone").to_body(format));
        let ok = answer(200, b"{}".to_vec());
        assert!(later_group_accepts("AddTagsToStream", &ok, format));
        assert!(later_group_accepts(
            "RegisterStreamConsumer",
            &in_use,
            format
        ));
        assert!(!later_group_accepts(
            "RegisterStreamConsumer",
            &not_found,
            format
        ));
        assert!(later_group_accepts(
            "DeregisterStreamConsumer",
            &not_found,
            format
        ));
        assert!(!later_group_accepts("UpdateStreamMode", &in_use, format));
        assert!(!later_group_accepts("AddTagsToStream", &not_found, format));
        let unavailable = answer(503, AwsError::service_unavailable("down").to_body(format));
        assert!(!later_group_accepts(
            "RegisterStreamConsumer",
            &unavailable,
            format
        ));
    }

    #[test]
    fn the_creation_time_is_read_from_either_format() {
        for format in [Format::Json, Format::Cbor] {
            let registered = Value::map()
                .with(
                    "Consumer",
                    Value::map()
                        .with("ConsumerName", "c")
                        .with(
                            "ConsumerCreationTimestamp",
                            Value::Timestamp(1_764_000_123.0),
                        )
                        .build(),
                )
                .build();
            let decoded = format.decode(&format.encode(&registered)).unwrap();
            assert_eq!(consumer_created(&decoded), Some(1_764_000_123));
        }
        let described = Value::map()
            .with(
                "ConsumerDescription",
                Value::map()
                    .with("ConsumerCreationTimestamp", Value::Int(42))
                    .build(),
            )
            .build();
        assert_eq!(consumer_created(&described), Some(42));
        assert_eq!(consumer_created(&Value::map().build()), None);
    }
}
