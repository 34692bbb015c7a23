//! Which stream a Kinesis request addresses, read the way the data plane reads it.

use riffle_wire::{AwsError, Doc};

use crate::streams::shard_iterator::ShardIterator;

/// Where the gateway sends a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// The data-plane endpoint hosting this stream.
    Stream(String),
    /// The stream-management endpoint (CreateStream, DeleteStream, UpdateShardCount).
    Admin,
    /// Every data-plane endpoint, with the answers merged (ListStreams).
    AllStreams,
    /// Any one data-plane endpoint (account-wide calls).
    Any,
}

/// Decides the target of `operation` from its request document.
pub fn target(
    operation: &str,
    doc: &Doc<'_>,
    stream_from_arn: impl Fn(&str) -> Option<String>,
) -> Result<Target, AwsError> {
    match operation {
        "CreateStream" | "DeleteStream" | "UpdateShardCount" => return Ok(Target::Admin),
        "ListStreams" => return Ok(Target::AllStreams),
        "DescribeLimits" | "DescribeAccountSettings" | "UpdateAccountSettings" => {
            return Ok(Target::Any);
        }
        "GetRecords" => {
            let iterator = doc.str_required("ShardIterator")?;
            let decoded = ShardIterator::decode(iterator)
                .ok_or_else(|| AwsError::invalid_argument("Invalid ShardIterator."))?;
            return Ok(Target::Stream(decoded.stream));
        }
        _ => {}
    }
    if let Some(name) = doc.str_opt("StreamName")? {
        return Ok(Target::Stream(name.to_string()));
    }
    for member in ["StreamARN", "ConsumerARN", "ResourceARN"] {
        if let Some(arn) = doc.str_opt(member)? {
            return stream_from_arn(arn)
                .map(Target::Stream)
                .ok_or_else(|| AwsError::invalid_argument(format!("Invalid {member} {arn}.")));
        }
    }
    Err(AwsError::invalid_argument(
        "Either StreamName or StreamARN should be provided.",
    ))
}

/// The stream name inside a stream or consumer ARN (`arn:aws:kinesis:<region>:<account>:stream/<name>[/consumer/...]`).
pub fn stream_from_arn(arn: &str) -> Option<String> {
    let (_, resource) = arn.split_once(":stream/")?;
    let name = resource.split('/').next()?;
    (!name.is_empty()).then(|| name.to_string())
}

#[cfg(test)]
mod tests {
    use riffle_wire::{Format, Value};

    use super::*;

    fn target_of(operation: &str, body: &str) -> Result<Target, AwsError> {
        let value = Format::Json.decode(body.as_bytes()).unwrap();
        let doc = Doc::new(&value, Format::Json).unwrap();
        target(operation, &doc, stream_from_arn)
    }

    #[test]
    fn requests_find_their_stream() {
        assert_eq!(
            target_of("PutRecord", r#"{"StreamName":"orders"}"#),
            Ok(Target::Stream("orders".into()))
        );
        assert_eq!(
            target_of(
                "RegisterStreamConsumer",
                r#"{"StreamARN":"arn:aws:kinesis:us-east-1:000000000000:stream/orders","ConsumerName":"c"}"#
            ),
            Ok(Target::Stream("orders".into()))
        );
        assert_eq!(
            target_of(
                "SubscribeToShard",
                r#"{"ConsumerARN":"arn:aws:kinesis:us-east-1:000000000000:stream/orders/consumer/c:1","ShardId":"shardId-000000000000"}"#
            ),
            Ok(Target::Stream("orders".into()))
        );
        let iterator = ShardIterator {
            stream: "clicks".into(),
            stream_epoch: 1,
            shard_index: 0,
            offset: 0,
            issued_ms: 0,
        }
        .encode();
        let body = Value::map().with("ShardIterator", iterator).build();
        let json = String::from_utf8(Format::Json.encode(&body)).unwrap();
        assert_eq!(
            target_of("GetRecords", &json),
            Ok(Target::Stream("clicks".into()))
        );
        assert_eq!(
            target_of("CreateStream", r#"{"StreamName":"x"}"#),
            Ok(Target::Admin)
        );
        assert_eq!(target_of("ListStreams", "{}"), Ok(Target::AllStreams));
        assert_eq!(target_of("DescribeLimits", "{}"), Ok(Target::Any));
    }

    #[test]
    fn unaddressed_requests_are_refused() {
        let error = target_of("PutRecord", "{}").unwrap_err();
        assert_eq!(error.kind, "InvalidArgumentException");
        let error = target_of("GetRecords", r#"{"ShardIterator":"junk"}"#).unwrap_err();
        assert_eq!(error.kind, "InvalidArgumentException");
        assert_eq!(
            target_of("DescribeStream", r#"{"StreamARN":"arn:aws:s3:::bucket"}"#)
                .unwrap_err()
                .kind,
            "InvalidArgumentException"
        );
    }
}
