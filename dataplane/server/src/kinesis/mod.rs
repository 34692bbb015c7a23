//! The Kinesis Data Streams API: `POST /` with `X-Amz-Target: Kinesis_20131202.<Operation>`,
//! bodies in AWS JSON 1.1 or CBOR 1.1, answered in the request's format.

mod consumers;
mod input;
mod records;
mod settings;
mod streams;
mod subscribe;

use std::sync::Arc;

use http::{HeaderMap, Request, Response, StatusCode};
use hyper::body::Incoming;
use riffle_wire::{AwsError, Doc, Format, Value};

use crate::http::{Body, BodyError, full, read_body};
use crate::streams::error::not_hosted_group;
use crate::streams::{ApiError, Catalog, ErrorKind};

const TARGET_PREFIX: &str = "Kinesis_20131202.";

/// Response header of a request refused because another shard group stores the shard it
/// addresses: that group's index.
pub const NOT_HOSTED_HEADER: &str = "x-riffle-not-hosted";

/// Request header of RegisterStreamConsumer giving the consumer's creation time (seconds since
/// the Unix epoch), so that every shard group of a stream gives the consumer the same ARN.
pub const CONSUMER_CREATED_HEADER: &str = "x-riffle-consumer-created";

/// Request header asking a replica of a replicated shard group that does not lead to answer a
/// read from its own copy, which may lack recent writes (to compare replicas). The gateway
/// does not pass it on; changes are refused on such a replica all the same.
pub const READ_LOCAL_HEADER: &str = "x-riffle-read-local";

/// Largest request body accepted: a 10 MiB record, base64-encoded, with room to spare.
pub const MAX_BODY_BYTES: usize = 16 * 1024 * 1024;

/// What an operation answers.
pub enum Reply {
    /// A document, encoded in the request's format.
    Document(Value),
    /// An event stream (SubscribeToShard).
    EventStream(Body),
}

impl From<Value> for Reply {
    fn from(value: Value) -> Reply {
        Reply::Document(value)
    }
}

/// Converts the stream service's errors into the AWS error a client expects.
pub fn aws_error(error: ApiError) -> AwsError {
    AwsError::new(
        error.kind.aws_type(),
        error.kind.http_status(),
        error.message,
    )
}

impl From<ApiError> for AwsError {
    fn from(error: ApiError) -> AwsError {
        aws_error(error)
    }
}

/// Serves one Kinesis API request.
pub async fn handle(catalog: Arc<Catalog>, request: Request<Incoming>) -> Response<Body> {
    let request_id = uuid::Uuid::new_v4().to_string();
    let (parts, body) = request.into_parts();
    let format = content_format(&parts.headers);
    let operation = header(&parts.headers, "x-amz-target")
        .and_then(|t| t.strip_prefix(TARGET_PREFIX))
        .unwrap_or_default()
        .to_string();
    let result = async {
        let format = format.clone()?;
        if header(&parts.headers, "authorization").is_none() {
            return Err(AwsError::missing_authentication_token(
                "Missing Authentication Token",
            ));
        }
        // A replicated shard group answers on its leader only, reads included: a follower's
        // copy may lack writes the leader acknowledged.
        if let Some(replicator) = catalog.replicator()
            && header(&parts.headers, READ_LOCAL_HEADER).is_none()
        {
            replicator.leading()?;
        }
        let body = read_body(body, MAX_BODY_BYTES)
            .await
            .map_err(|error| match error {
                BodyError::TooLarge => AwsError::new(
                    riffle_wire::kind::SERIALIZATION,
                    413,
                    format!("Request body is larger than the limit of {MAX_BODY_BYTES} bytes."),
                ),
                BodyError::Broken(reason) => AwsError::serialization(reason),
            })?;
        let value = format.decode(&body)?;
        let doc = Doc::new(&value, format)?;
        if operation == "RegisterStreamConsumer"
            && let Some(created) = header(&parts.headers, CONSUMER_CREATED_HEADER)
        {
            let created_s = created.parse::<i64>().map_err(|_| {
                AwsError::invalid_argument(format!(
                    "{CONSUMER_CREATED_HEADER} must be seconds since the Unix epoch."
                ))
            })?;
            return Ok(consumers::register(&catalog, &doc, Some(created_s))
                .await?
                .into());
        }
        dispatch(&catalog, &operation, &doc).await
    }
    .await;
    let format = format.unwrap_or(Format::Json);
    let response = match result {
        Ok(Reply::Document(value)) => Response::builder()
            .status(StatusCode::OK)
            .header("content-type", format.content_type())
            .body(full(format.encode(&value))),
        Ok(Reply::EventStream(body)) => Response::builder()
            .status(StatusCode::OK)
            .header("content-type", "application/vnd.amazon.eventstream")
            .body(body),
        Err(error) => {
            // A shard stored by another group: tell the gateway which, so it can send the
            // request there. Other ServiceUnavailable answers (a replica that does not lead) are
            // not tagged.
            let stored_by = (error.kind == ErrorKind::NotHosted.aws_type())
                .then(|| not_hosted_group(&error.message))
                .flatten();
            // ServiceUnavailable sends the client elsewhere (another group, the leader).
            if stored_by.is_none() && error.status >= 500 && error.status != 503 {
                tracing::error!(operation, %error, "request failed");
            } else if stored_by.is_none() {
                tracing::debug!(operation, %error, "request refused");
            }
            let mut builder = Response::builder()
                .status(error.status)
                .header("content-type", format.content_type());
            if let Some(group) = stored_by {
                builder = builder.header(NOT_HOSTED_HEADER, group.to_string());
            }
            builder.body(full(error.to_body(format)))
        }
    };
    let mut response = response.unwrap_or_else(|_| Response::new(full(Vec::new())));
    if let Ok(value) = http::HeaderValue::from_str(&request_id) {
        response.headers_mut().insert("x-amzn-requestid", value);
    }
    response
}

fn header<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// The body format named by `Content-Type`; JSON when the header is absent.
fn content_format(headers: &HeaderMap) -> Result<Format, AwsError> {
    match header(headers, "content-type") {
        None => Ok(Format::Json),
        Some(content_type) => Format::from_content_type(content_type).ok_or_else(|| {
            AwsError::serialization(format!("Unsupported Content-Type {content_type}."))
        }),
    }
}

async fn dispatch(
    catalog: &Arc<Catalog>,
    operation: &str,
    doc: &Doc<'_>,
) -> Result<Reply, AwsError> {
    let reply: Reply = match operation {
        "CreateStream" => streams::create_stream(catalog, doc).await?.into(),
        "DeleteStream" => streams::delete_stream(catalog, doc).await?.into(),
        "DescribeStream" => streams::describe_stream(catalog, doc).await?.into(),
        "DescribeStreamSummary" => streams::describe_stream_summary(catalog, doc).await?.into(),
        "ListStreams" => streams::list_streams(catalog, doc).await?.into(),
        "ListShards" => streams::list_shards(catalog, doc).await?.into(),
        "SplitShard" => streams::split_shard(catalog, doc).await?.into(),
        "MergeShards" => streams::merge_shards(catalog, doc).await?.into(),
        "UpdateShardCount" => streams::update_shard_count(catalog, doc).await?.into(),
        "UpdateStreamMode" => streams::update_stream_mode(catalog, doc).await?.into(),
        "PutRecord" => records::put_record(catalog, doc).await?.into(),
        "PutRecords" => records::put_records(catalog, doc).await?.into(),
        "GetShardIterator" => records::get_shard_iterator(catalog, doc).await?.into(),
        "GetRecords" => records::get_records(catalog, doc).await?.into(),
        "IncreaseStreamRetentionPeriod" => settings::retention(catalog, doc, true).await?.into(),
        "DecreaseStreamRetentionPeriod" => settings::retention(catalog, doc, false).await?.into(),
        "AddTagsToStream" => settings::add_tags_to_stream(catalog, doc).await?.into(),
        "RemoveTagsFromStream" => settings::remove_tags_from_stream(catalog, doc)
            .await?
            .into(),
        "ListTagsForStream" => settings::list_tags_for_stream(catalog, doc).await?.into(),
        "TagResource" => settings::tag_resource(catalog, doc).await?.into(),
        "UntagResource" => settings::untag_resource(catalog, doc).await?.into(),
        "ListTagsForResource" => settings::list_tags_for_resource(catalog, doc).await?.into(),
        "EnableEnhancedMonitoring" => settings::enhanced_monitoring(catalog, doc, true)
            .await?
            .into(),
        "DisableEnhancedMonitoring" => settings::enhanced_monitoring(catalog, doc, false)
            .await?
            .into(),
        "StartStreamEncryption" => settings::encryption(catalog, doc, true).await?.into(),
        "StopStreamEncryption" => settings::encryption(catalog, doc, false).await?.into(),
        "DescribeLimits" => settings::describe_limits(catalog).await.into(),
        "DescribeAccountSettings" => settings::describe_account_settings().into(),
        "UpdateAccountSettings" => settings::update_account_settings(doc)?.into(),
        "UpdateMaxRecordSize" => settings::update_max_record_size(catalog, doc).await?.into(),
        "UpdateStreamWarmThroughput" => {
            settings::update_warm_throughput(catalog, doc).await?.into()
        }
        "PutResourcePolicy" => settings::put_resource_policy(catalog, doc).await?.into(),
        "GetResourcePolicy" => settings::get_resource_policy(catalog, doc).await?.into(),
        "DeleteResourcePolicy" => settings::delete_resource_policy(catalog, doc).await?.into(),
        "RegisterStreamConsumer" => consumers::register(catalog, doc, None).await?.into(),
        "DeregisterStreamConsumer" => consumers::deregister(catalog, doc).await?.into(),
        "DescribeStreamConsumer" => consumers::describe(catalog, doc).await?.into(),
        "ListStreamConsumers" => consumers::list(catalog, doc).await?.into(),
        "SubscribeToShard" => subscribe::subscribe_to_shard(catalog, doc).await?,
        _ => {
            return Err(AwsError::unknown_operation(if operation.is_empty() {
                "Missing or unrecognized X-Amz-Target header.".to_string()
            } else {
                format!("Operation {operation} is not supported.")
            }));
        }
    };
    Ok(reply)
}

/// An empty answer (`{}`).
fn empty() -> Value {
    Value::map().build()
}
