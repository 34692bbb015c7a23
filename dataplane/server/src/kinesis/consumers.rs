//! Enhanced fan-out consumer registration.

use std::sync::Arc;

use riffle_wire::validation::Violations;
use riffle_wire::{AwsError, Doc, Value};

use super::empty;
use super::input::{check_name, int_in, stream_arn};
use crate::streams::{Catalog, ConsumerView};

fn consumer_value(consumer: &ConsumerView, with_stream: bool) -> Value {
    let mut value = Value::map()
        .with("ConsumerName", consumer.name.as_str())
        .with("ConsumerARN", consumer.arn.as_str())
        .with("ConsumerStatus", "ACTIVE")
        .with(
            "ConsumerCreationTimestamp",
            Value::Timestamp(consumer.created_s as f64),
        );
    if with_stream {
        value = value.with("StreamARN", consumer.stream_arn.as_str());
    }
    value.build()
}

/// The (stream, consumer name) a request names: by ConsumerARN, or StreamARN + ConsumerName.
fn consumer_of(catalog: &Catalog, doc: &Doc<'_>) -> Result<(String, String), AwsError> {
    if let Some(arn) = doc.str_opt("ConsumerARN")? {
        return Ok(catalog.parse_consumer_arn(arn)?);
    }
    match (doc.str_opt("StreamARN")?, doc.str_opt("ConsumerName")?) {
        (Some(_), Some(name)) => Ok((stream_arn(catalog, doc, "StreamARN")?, name.to_string())),
        _ => Err(AwsError::invalid_argument(
            "Either ConsumerARN or both StreamARN and ConsumerName must be provided.",
        )),
    }
}

/// RegisterStreamConsumer; `created_s` fixes the creation time (see
/// [`super::CONSUMER_CREATED_HEADER`]).
pub async fn register(
    catalog: &Arc<Catalog>,
    doc: &Doc<'_>,
    created_s: Option<i64>,
) -> Result<Value, AwsError> {
    let stream = stream_arn(catalog, doc, "StreamARN")?;
    let name = doc.str_required("ConsumerName")?;
    let mut violations = Violations::new();
    check_name(doc, "ConsumerName", name, &mut violations);
    violations.into_result()?;
    let consumer = catalog.register_consumer(&stream, name, created_s).await?;
    let mut value = consumer_value(&consumer, false);
    // A registration answers CREATING, as Kinesis does; it is usable at once.
    if let Value::Map(members) = &mut value {
        for (key, member) in members.iter_mut() {
            if key == "ConsumerStatus" {
                *member = Value::from("CREATING");
            }
        }
    }
    Ok(Value::map().with("Consumer", value).build())
}

/// DeregisterStreamConsumer.
pub async fn deregister(catalog: &Arc<Catalog>, doc: &Doc<'_>) -> Result<Value, AwsError> {
    let (stream, name) = consumer_of(catalog, doc)?;
    catalog.deregister_consumer(&stream, &name).await?;
    Ok(empty())
}

/// DescribeStreamConsumer.
pub async fn describe(catalog: &Arc<Catalog>, doc: &Doc<'_>) -> Result<Value, AwsError> {
    let (stream, name) = consumer_of(catalog, doc)?;
    let consumer = catalog.describe_consumer(&stream, &name).await?;
    Ok(Value::map()
        .with("ConsumerDescription", consumer_value(&consumer, true))
        .build())
}

/// ListStreamConsumers, paged by name.
pub async fn list(catalog: &Arc<Catalog>, doc: &Doc<'_>) -> Result<Value, AwsError> {
    let stream = stream_arn(catalog, doc, "StreamARN")?;
    let limit = int_in(doc, "MaxResults", 1, 10_000)?.unwrap_or(100) as usize;
    let after = doc.str_opt("NextToken")?;
    let consumers = catalog.list_consumers(&stream).await?;
    let remaining: Vec<&ConsumerView> = consumers
        .iter()
        .filter(|c| after.is_none_or(|after| c.name.as_str() > after))
        .collect();
    let page: Vec<Value> = remaining
        .iter()
        .take(limit)
        .map(|c| consumer_value(c, false))
        .collect();
    let next = (remaining.len() > limit).then(|| remaining[limit - 1].name.clone());
    Ok(Value::map()
        .with("Consumers", Value::List(page))
        .with_opt("NextToken", next)
        .build())
}
