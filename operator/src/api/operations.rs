//! CreateStream, DeleteStream and UpdateShardCount as changes of `Stream` objects.
//!
//! Each operation reads its request the way the data plane does (same validation messages), checks
//! what Kinesis checks against the `Stream` objects, and then creates, deletes or scales the
//! object; the controller does the rest. Reading and checking are pure functions of the request
//! and the objects, tested without a cluster.

use std::collections::BTreeMap;

use kube::api::{DeleteParams, ListParams, ObjectMeta, Patch, PatchParams, PostParams};
use kube::{Api, Client, ResourceExt};
use riffle_wire::validation::{self, Violations};
use riffle_wire::{AwsError, Doc, Value};
use serde_json::json;

use crate::crd::{
    ConditionStatus, ConditionType, DEFAULT_REPLICATION_FACTOR, DEFAULT_SHARDS_PER_GROUP,
    MAX_RECORD_SIZE_KIB, MAX_SHARD_COUNT, MIN_RECORD_SIZE_KIB, Stream, StreamMode, StreamResources,
    StreamSpec, StreamStorage,
};
use crate::settings::Settings;
use crate::stream::naming::{MAX_STREAM_NAME_LEN, is_valid_stream_name};

/// The Kinesis pattern of stream names.
const NAME_PATTERN: &str = "[a-zA-Z0-9_.-]+";
/// Annotation marking a `Stream` created through the Kinesis API.
pub const CREATED_BY_ANNOTATION: &str = "riffle.dev/created-by";

/// A CreateStream request, read and checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreateStream {
    /// The stream's name (also the object's).
    pub name: String,
    /// Capacity mode.
    pub mode: StreamMode,
    /// Shards of a provisioned stream.
    pub shard_count: Option<i32>,
    /// `MaxRecordSizeInKiB`, if given.
    pub max_record_size_kib: Option<i32>,
}

/// An UpdateShardCount request, read and checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpdateShardCount {
    /// The stream's name.
    pub name: String,
    /// `TargetShardCount`.
    pub target: i32,
}

/// Checks a stream name as Kinesis does (1..128 characters of `[a-zA-Z0-9_.-]`), then as a
/// `Stream` object name must be.
fn check_name(doc: &Doc<'_>, member: &str, name: &str) -> Result<(), AwsError> {
    let path = doc.path(member);
    let mut violations = Violations::new();
    if name.is_empty() {
        violations.push(&path, Some(name), validation::min_length(1));
    } else if name.chars().count() > 128 {
        violations.push(&path, Some(name), validation::max_length(128));
    }
    let kinesis_name = name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    if !name.is_empty() && !kinesis_name {
        violations.push(&path, Some(name), validation::pattern(NAME_PATTERN));
    }
    violations.into_result()?;
    if !is_valid_stream_name(name) {
        return Err(validation::single(
            &path,
            Some(name),
            &format!(
                "Member must be a DNS-1035 label of at most {MAX_STREAM_NAME_LEN} characters \
                 (lowercase letters, digits and '-', starting with a letter): streams are \
                 Kubernetes objects on Riffle"
            ),
        ));
    }
    Ok(())
}

fn to_i32(value: i64) -> i32 {
    i32::try_from(value).unwrap_or(i32::MAX)
}

fn shard_limit(requested: i32, per_group: i32) -> AwsError {
    AwsError::limit_exceeded(format!(
        "A stream can have at most {per_group} open shards on this installation until streams \
         can span several shard groups. Requested shard count: {requested}."
    ))
}

/// Reads a CreateStream request.
pub fn read_create(doc: &Doc<'_>) -> Result<CreateStream, AwsError> {
    let name = doc.str_required("StreamName")?;
    check_name(doc, "StreamName", name)?;
    let shard_count = doc
        .int_in("ShardCount", 1, i64::from(MAX_SHARD_COUNT))?
        .map(to_i32);
    let mode = match doc.doc_opt("StreamModeDetails")? {
        None => StreamMode::Provisioned,
        Some(details) => {
            let mode = details.str_required("StreamMode")?;
            match mode {
                "PROVISIONED" => StreamMode::Provisioned,
                "ON_DEMAND" => StreamMode::OnDemand,
                other => {
                    return Err(validation::single(
                        &details.path("StreamMode"),
                        Some(other),
                        &validation::enum_value(&["PROVISIONED", "ON_DEMAND"]),
                    ));
                }
            }
        }
    };
    let max_record_size_kib = doc
        .int_in(
            "MaxRecordSizeInKiB",
            i64::from(MIN_RECORD_SIZE_KIB),
            i64::from(MAX_RECORD_SIZE_KIB),
        )?
        .map(to_i32);
    if mode == StreamMode::Provisioned && shard_count.is_none() {
        return Err(AwsError::invalid_argument(
            "ShardCount is required for a stream in PROVISIONED mode.",
        ));
    }
    if let Some(count) = shard_count
        && mode == StreamMode::Provisioned
        && count > DEFAULT_SHARDS_PER_GROUP
    {
        return Err(shard_limit(count, DEFAULT_SHARDS_PER_GROUP));
    }
    Ok(CreateStream {
        name: name.to_owned(),
        mode,
        shard_count: shard_count.filter(|_| mode == StreamMode::Provisioned),
        max_record_size_kib,
    })
}

/// The `Stream` object a CreateStream request makes in `namespace`, with every field the request
/// does not set at the CRD's default (three replicas per shard group, as Kinesis keeps three
/// copies).
pub fn stream_object(request: &CreateStream, namespace: &str) -> Stream {
    let mut stream = Stream::new(
        &request.name,
        StreamSpec {
            stream_mode: request.mode,
            shard_count: request.shard_count,
            retention_period_hours: crate::crd::MIN_RETENTION_HOURS,
            replication_factor: DEFAULT_REPLICATION_FACTOR,
            max_record_size_kib: request.max_record_size_kib.unwrap_or(MIN_RECORD_SIZE_KIB),
            shards_per_group: DEFAULT_SHARDS_PER_GROUP,
            storage: StreamStorage::default(),
            resources: StreamResources::default(),
        },
    );
    stream.metadata = ObjectMeta {
        name: Some(request.name.clone()),
        namespace: Some(namespace.to_owned()),
        annotations: Some(BTreeMap::from([(
            CREATED_BY_ANNOTATION.to_owned(),
            "kinesis-api".to_owned(),
        )])),
        ..ObjectMeta::default()
    };
    stream
}

/// The stream an operation names, by `StreamName` or `StreamARN` (of this region and account).
pub fn read_stream_name(doc: &Doc<'_>, settings: &Settings) -> Result<String, AwsError> {
    let name = doc.str_opt("StreamName")?;
    let arn = doc.str_opt("StreamARN")?;
    let from_arn = |arn: &str| {
        let prefix = settings.stream_arn("");
        match arn.strip_prefix(&prefix) {
            Some(name) if !name.is_empty() && !name.contains('/') => Ok(name.to_owned()),
            _ => Err(AwsError::invalid_argument(format!(
                "Invalid StreamARN {arn}."
            ))),
        }
    };
    match (name, arn) {
        (Some(name), arn) => {
            check_name(doc, "StreamName", name)?;
            if let Some(arn) = arn
                && from_arn(arn)? != name
            {
                return Err(AwsError::invalid_argument(format!(
                    "StreamARN {arn} does not name stream {name}."
                )));
            }
            Ok(name.to_owned())
        }
        (None, Some(arn)) => from_arn(arn),
        (None, None) => Err(AwsError::invalid_argument(
            "Either StreamName or StreamARN should be provided.",
        )),
    }
}

/// Reads an UpdateShardCount request.
pub fn read_update_shard_count(
    doc: &Doc<'_>,
    settings: &Settings,
) -> Result<UpdateShardCount, AwsError> {
    let name = read_stream_name(doc, settings)?;
    let target = doc.int_in("TargetShardCount", 1, i64::from(MAX_SHARD_COUNT))?;
    let target = doc.required("TargetShardCount", target)?;
    let scaling = doc.str_opt("ScalingType")?;
    match doc.required("ScalingType", scaling)? {
        "UNIFORM_SCALING" => {}
        other => {
            return Err(validation::single(
                &doc.path("ScalingType"),
                Some(other),
                &validation::enum_value(&["UNIFORM_SCALING"]),
            ));
        }
    }
    Ok(UpdateShardCount {
        name,
        target: to_i32(target),
    })
}

/// What Kinesis checks before scaling `stream` to `target` open shards; returns the current
/// open shard count.
pub fn check_scale(stream: &Stream, target: i32, account: &str) -> Result<i32, AwsError> {
    let name = stream.name_any();
    if stream.spec.stream_mode == StreamMode::OnDemand {
        return Err(AwsError::validation(format!(
            "Resharding is not allowed for stream {name} under account {account} in ON_DEMAND mode."
        )));
    }
    let status = stream.status.as_ref();
    let ready = status
        .map(|s| {
            s.conditions
                .iter()
                .any(|c| c.type_ == ConditionType::Ready && c.status == ConditionStatus::True)
        })
        .unwrap_or(false);
    let current = status.and_then(|s| s.open_shard_count);
    let state = match current {
        _ if stream.metadata.deletion_timestamp.is_some() => Some("DELETING"),
        None => Some("CREATING"),
        Some(open) if stream.spec.shard_count != Some(open) => Some("UPDATING"),
        Some(_) if !ready => Some("CREATING"),
        Some(_) => None,
    };
    if let Some(state) = state {
        return Err(AwsError::resource_in_use(format!(
            "Stream {name} under account {account} not ACTIVE, instead in state {state}"
        )));
    }
    let current = current.unwrap_or(0);
    if target > current.saturating_mul(2) || target.saturating_mul(2) < current {
        return Err(AwsError::invalid_argument(format!(
            "UpdateShardCount cannot scale up over double your current open shard count ({current}) or scale down below half your current open shard count. Requested target shard count: {target}."
        )));
    }
    if target > stream.spec.shards_per_group {
        return Err(shard_limit(target, stream.spec.shards_per_group));
    }
    Ok(current)
}

/// The stream that owns `name` among `candidates` (same name, any namespace): the oldest one not
/// being deleted, as validation decides; else any.
pub fn name_owner(candidates: Vec<Stream>) -> Option<Stream> {
    let key = |s: &Stream| {
        (
            s.metadata.deletion_timestamp.is_some(),
            s.metadata.creation_timestamp.as_ref().map(|t| t.0),
            s.namespace().unwrap_or_default(),
        )
    };
    candidates.into_iter().min_by_key(key)
}

fn not_found(name: &str, account: &str) -> AwsError {
    AwsError::resource_not_found(format!("Stream {name} under account {account} not found."))
}

fn in_use(name: &str, account: &str) -> AwsError {
    AwsError::resource_in_use(format!(
        "Stream {name} under account {account} already exists."
    ))
}

fn internal(what: &str, error: &kube::Error) -> AwsError {
    tracing::warn!(%error, what, "Kubernetes API call failed");
    AwsError::internal_failure(format!("{what} failed: {error}"))
}

/// The stream called `name` in any namespace.
async fn find(client: &Client, name: &str) -> Result<Option<Stream>, AwsError> {
    let api: Api<Stream> = Api::all(client.clone());
    let listed = api
        .list(&ListParams::default().fields(&format!("metadata.name={name}")))
        .await
        .map_err(|e| internal("listing streams", &e))?;
    Ok(name_owner(listed.items))
}

/// CreateStream: creates the `Stream` object.
pub async fn create_stream(
    client: &Client,
    settings: &Settings,
    doc: &Doc<'_>,
) -> Result<Value, AwsError> {
    let request = read_create(doc)?;
    if find(client, &request.name).await?.is_some() {
        return Err(in_use(&request.name, &settings.account));
    }
    let api: Api<Stream> = Api::namespaced(client.clone(), &settings.api_namespace);
    let object = stream_object(&request, &settings.api_namespace);
    match api.create(&PostParams::default(), &object).await {
        Ok(_) => {
            tracing::info!(stream = %request.name, namespace = %settings.api_namespace, "created through the Kinesis API");
            Ok(Value::map().build())
        }
        Err(kube::Error::Api(status)) if status.code == 409 => {
            Err(in_use(&request.name, &settings.account))
        }
        Err(error) => Err(internal("creating the stream", &error)),
    }
}

/// DeleteStream: deletes the `Stream` object (its finalizer releases the data).
pub async fn delete_stream(
    client: &Client,
    settings: &Settings,
    doc: &Doc<'_>,
) -> Result<Value, AwsError> {
    let name = read_stream_name(doc, settings)?;
    doc.bool_opt("EnforceConsumerDeletion")?;
    let Some(stream) = find(client, &name).await? else {
        return Err(not_found(&name, &settings.account));
    };
    let namespace = stream.namespace().unwrap_or_default();
    let api: Api<Stream> = Api::namespaced(client.clone(), &namespace);
    match api.delete(&name, &DeleteParams::background()).await {
        Ok(_) => {
            tracing::info!(stream = %name, %namespace, "deleted through the Kinesis API");
            Ok(Value::map().build())
        }
        Err(kube::Error::Api(status)) if status.code == 404 => {
            Err(not_found(&name, &settings.account))
        }
        Err(error) => Err(internal("deleting the stream", &error)),
    }
}

/// UpdateShardCount: sets `spec.shardCount`, as `kubectl scale` does.
pub async fn update_shard_count(
    client: &Client,
    settings: &Settings,
    doc: &Doc<'_>,
) -> Result<Value, AwsError> {
    let request = read_update_shard_count(doc, settings)?;
    let Some(stream) = find(client, &request.name).await? else {
        return Err(not_found(&request.name, &settings.account));
    };
    let current = check_scale(&stream, request.target, &settings.account)?;
    let namespace = stream.namespace().unwrap_or_default();
    let api: Api<Stream> = Api::namespaced(client.clone(), &namespace);
    let patch = json!({
        "metadata": {"resourceVersion": stream.resource_version()},
        "spec": {"shardCount": request.target},
    });
    match api
        .patch(&request.name, &PatchParams::default(), &Patch::Merge(patch))
        .await
    {
        Ok(_) => {}
        // Changed since it was checked: Kinesis would see the stream UPDATING.
        Err(kube::Error::Api(status)) if status.code == 409 => {
            return Err(AwsError::resource_in_use(format!(
                "Stream {} under account {} not ACTIVE, instead in state UPDATING",
                request.name, settings.account
            )));
        }
        Err(error) => return Err(internal("scaling the stream", &error)),
    }
    tracing::info!(stream = %request.name, %namespace, current, target = request.target, "scaled through the Kinesis API");
    Ok(Value::map()
        .with("StreamName", request.name.as_str())
        .with("CurrentShardCount", i64::from(current))
        .with("TargetShardCount", i64::from(request.target))
        .with("StreamARN", settings.stream_arn(&request.name))
        .build())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::{Condition, StreamStatus};
    use crate::stream::fixtures::ts;
    use riffle_wire::Format;

    fn doc_of(json: &str) -> Value {
        Format::Json.decode(json.as_bytes()).expect("json")
    }

    fn create(json: &str) -> Result<CreateStream, AwsError> {
        let value = doc_of(json);
        read_create(&Doc::new(&value, Format::Json).expect("doc"))
    }

    fn scale(json: &str) -> Result<UpdateShardCount, AwsError> {
        let value = doc_of(json);
        read_update_shard_count(
            &Doc::new(&value, Format::Json).expect("doc"),
            &Settings::test(),
        )
    }

    fn active(open: i32) -> Stream {
        Stream::test().with_shards(open).with_status(StreamStatus {
            open_shard_count: Some(open),
            conditions: vec![Condition {
                type_: ConditionType::Ready,
                status: ConditionStatus::True,
                reason: "Serving".into(),
                message: String::new(),
                last_transition_time: "2026-01-01T00:00:00Z".into(),
                observed_generation: Some(1),
            }],
            ..StreamStatus::default()
        })
    }

    #[test]
    fn create_reads_a_provisioned_stream() {
        assert_eq!(
            create(r#"{"StreamName":"orders","ShardCount":4}"#),
            Ok(CreateStream {
                name: "orders".into(),
                mode: StreamMode::Provisioned,
                shard_count: Some(4),
                max_record_size_kib: None,
            })
        );
        let on_demand =
            create(r#"{"StreamName":"clicks","StreamModeDetails":{"StreamMode":"ON_DEMAND"}}"#)
                .expect("on demand");
        assert_eq!(on_demand.mode, StreamMode::OnDemand);
        assert_eq!(on_demand.shard_count, None);
    }

    #[test]
    fn create_answers_kinesis_errors() {
        let missing = create(r#"{"ShardCount":1}"#).expect_err("no name");
        assert_eq!(missing.kind, "ValidationException");
        assert!(
            missing.message.contains("'streamName'"),
            "{}",
            missing.message
        );
        let pattern = create(r#"{"StreamName":"a b","ShardCount":1}"#).expect_err("pattern");
        assert_eq!(pattern.kind, "ValidationException");
        assert!(pattern.message.contains("[a-zA-Z0-9_.-]+"));
        let zero = create(r#"{"StreamName":"s","ShardCount":0}"#).expect_err("zero");
        assert_eq!(
            zero.message,
            "1 validation error detected: Value '0' at 'shardCount' failed to satisfy constraint: Member must have value greater than or equal to 1"
        );
        let no_count = create(r#"{"StreamName":"s"}"#).expect_err("provisioned needs a count");
        assert_eq!(no_count.kind, "InvalidArgumentException");
        let mode = create(r#"{"StreamName":"s","StreamModeDetails":{"StreamMode":"FAST"}}"#)
            .expect_err("mode");
        assert_eq!(mode.kind, "ValidationException");
    }

    #[test]
    fn names_kubernetes_cannot_hold_and_oversized_streams_are_refused() {
        let upper = create(r#"{"StreamName":"Orders_1","ShardCount":1}"#).expect_err("upper");
        assert_eq!(upper.kind, "ValidationException");
        assert!(upper.message.contains("DNS-1035"), "{}", upper.message);
        let big = create(r#"{"StreamName":"big","ShardCount":9}"#).expect_err("two groups");
        assert_eq!(big.kind, "LimitExceededException");
        assert_eq!(big.status, 400);
    }

    #[test]
    fn the_object_asks_for_the_default_three_replicas() {
        let request = create(r#"{"StreamName":"orders","ShardCount":4,"MaxRecordSizeInKiB":2048}"#)
            .expect("valid");
        let stream = stream_object(&request, "default");
        assert_eq!(stream.namespace().as_deref(), Some("default"));
        assert_eq!(stream.spec.replication_factor, 3);
        assert_eq!(stream.spec.shard_count, Some(4));
        assert_eq!(stream.spec.max_record_size_kib, 2048);
        assert_eq!(stream.spec.retention_period_hours, 24);
        assert_eq!(
            stream
                .annotations()
                .get(CREATED_BY_ANNOTATION)
                .map(String::as_str),
            Some("kinesis-api")
        );
    }

    #[test]
    fn streams_are_named_by_name_or_arn() {
        let by_arn = scale(
            r#"{"StreamARN":"arn:aws:kinesis:us-east-1:000000000000:stream/orders","TargetShardCount":4,"ScalingType":"UNIFORM_SCALING"}"#,
        )
        .expect("arn");
        assert_eq!(by_arn.name, "orders");
        assert_eq!(by_arn.target, 4);
        let wrong = scale(
            r#"{"StreamARN":"arn:aws:kinesis:eu-west-1:1:stream/orders","TargetShardCount":4,"ScalingType":"UNIFORM_SCALING"}"#,
        )
        .expect_err("other account");
        assert_eq!(wrong.kind, "InvalidArgumentException");
        let neither = scale(r#"{"TargetShardCount":4,"ScalingType":"UNIFORM_SCALING"}"#)
            .expect_err("no stream");
        assert_eq!(
            neither.message,
            "Either StreamName or StreamARN should be provided."
        );
        let no_type =
            scale(r#"{"StreamName":"orders","TargetShardCount":4}"#).expect_err("scaling type");
        assert_eq!(no_type.kind, "ValidationException");
    }

    #[test]
    fn scaling_follows_the_kinesis_rules() {
        assert_eq!(check_scale(&active(2), 4, "000000000000"), Ok(2));
        assert_eq!(check_scale(&active(4), 2, "000000000000"), Ok(4));
        let too_far = check_scale(&active(2), 5, "000000000000").expect_err("over double");
        assert_eq!(too_far.kind, "InvalidArgumentException");
        let too_low = check_scale(&active(8), 3, "000000000000").expect_err("under half");
        assert_eq!(too_low.kind, "InvalidArgumentException");
        let past_group = check_scale(&active(8), 9, "000000000000").expect_err("two groups");
        assert_eq!(past_group.kind, "LimitExceededException");
        let creating = check_scale(&Stream::test(), 4, "000000000000").expect_err("no status");
        assert_eq!(creating.kind, "ResourceInUseException");
        assert!(creating.message.ends_with("instead in state CREATING"));
        let updating =
            check_scale(&active(2).with_shards(4), 4, "000000000000").expect_err("resharding");
        assert!(updating.message.ends_with("instead in state UPDATING"));
        let on_demand = check_scale(&active(4).on_demand(), 4, "000000000000").expect_err("od");
        assert_eq!(on_demand.kind, "ValidationException");
    }

    #[test]
    fn the_oldest_live_stream_owns_a_name() {
        let old = Stream::test().in_namespace("a").created_at(ts(1));
        let new = Stream::test().in_namespace("b").created_at(ts(2));
        let mut leaving = Stream::test().in_namespace("c").created_at(ts(0));
        leaving.metadata.deletion_timestamp = Some(ts(3));
        let owner = name_owner(vec![new, leaving, old]).expect("an owner");
        assert_eq!(owner.namespace().as_deref(), Some("a"));
        assert!(name_owner(vec![]).is_none());
    }
}
