//! Checks a `Stream` before anything is built from it.
//!
//! The API server already enforces the CEL rules of the CRD; this step re-checks them (an object
//! may have been stored under an older CRD) and adds what CEL cannot see, such as another
//! namespace already using the stream's API name. Pure: no client, no clock.

use std::fmt;

use kube::ResourceExt;

use crate::crd::{
    MAX_RECORD_SIZE_KIB, MAX_RETENTION_HOURS, MAX_SHARD_COUNT, MAX_SHARDS_PER_GROUP,
    MIN_RECORD_SIZE_KIB, MIN_RETENTION_HOURS, Stream, StreamMode,
};
use crate::stream::naming::{MAX_STREAM_NAME_LEN, is_valid_stream_name};

/// Shards a new on-demand stream starts with, as in Kinesis.
pub const ON_DEMAND_INITIAL_SHARDS: u32 = 4;

/// A spec problem the user has to fix; each is reported in the `Degraded` condition.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Problem {
    /// The name cannot name the Services and StatefulSets derived from it.
    InvalidName(String),
    /// Another namespace created a stream of the same name first; API names are cluster-wide.
    NameTaken {
        /// Namespace of the stream that owns the name.
        owner_namespace: String,
    },
    /// A provisioned stream without `shardCount`.
    ShardCountMissing,
    /// `shardCount` outside 1..100000.
    ShardCountOutOfRange(i32),
    /// `retentionPeriodHours` outside 24..8760.
    RetentionOutOfRange(i32),
    /// `replicationFactor` other than 1 or 3.
    ReplicationFactor(i32),
    /// `maxRecordSizeKiB` outside 1024..10240.
    MaxRecordSizeOutOfRange(i32),
    /// `shardsPerGroup` outside 1..10000.
    ShardsPerGroupOutOfRange(i32),
    /// `storage.size` is not a quantity.
    StorageSize(String),
    /// `resources.cpu` or `resources.memory` (named) is not a quantity.
    Resource(&'static str, String),
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::InvalidName(name) => write!(
                f,
                "name {name:?} must be a DNS-1035 label of at most {MAX_STREAM_NAME_LEN} characters"
            ),
            Problem::NameTaken { owner_namespace } => write!(
                f,
                "a stream of the same name already exists in namespace {owner_namespace:?}; stream names are unique in the cluster"
            ),
            Problem::ShardCountMissing => {
                write!(f, "shardCount is required when streamMode is Provisioned")
            }
            Problem::ShardCountOutOfRange(n) => write!(
                f,
                "shardCount must be between 1 and {MAX_SHARD_COUNT}, not {n}"
            ),
            Problem::RetentionOutOfRange(h) => write!(
                f,
                "retentionPeriodHours must be between {MIN_RETENTION_HOURS} and {MAX_RETENTION_HOURS}, not {h}"
            ),
            Problem::ReplicationFactor(n) => write!(f, "replicationFactor must be 1 or 3, not {n}"),
            Problem::MaxRecordSizeOutOfRange(n) => write!(
                f,
                "maxRecordSizeKiB must be between {MIN_RECORD_SIZE_KIB} and {MAX_RECORD_SIZE_KIB}, not {n}"
            ),
            Problem::ShardsPerGroupOutOfRange(n) => write!(
                f,
                "shardsPerGroup must be between 1 and {MAX_SHARDS_PER_GROUP}, not {n}"
            ),
            Problem::Resource(field, value) => write!(
                f,
                "resources.{field} {value:?} is not a Kubernetes quantity such as {}",
                if *field == "cpu" { "250m" } else { "256Mi" }
            ),
            Problem::StorageSize(s) => {
                write!(
                    f,
                    "storage.size {s:?} is not a Kubernetes quantity such as 10Gi"
                )
            }
        }
    }
}

/// Every problem of a spec, sorted so that the same spec always yields the same message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problems(pub Vec<Problem>);

impl Problems {
    /// CamelCase reason of the conditions reporting these problems.
    pub fn reason(&self) -> &'static str {
        "InvalidSpec"
    }
}

impl fmt::Display for Problems {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self.0.iter().map(Problem::to_string).collect();
        f.write_str(&parts.join("; "))
    }
}

/// A stream whose spec passed validation, with its numbers in the types the build uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidStream {
    /// Open shards the spec asks for (for on-demand streams: the initial count).
    pub requested_shards: u32,
    /// Shards per shard group.
    pub shards_per_group: u32,
    /// Replicas per shard group the spec asks for (`replicationFactor`).
    pub replication_factor: u32,
}

/// Validates `stream`. `same_name` are the streams of the same name in other namespaces (from
/// the controller's cache); the oldest one owns the name.
pub fn validate(stream: &Stream, same_name: &[&Stream]) -> Result<ValidStream, Problems> {
    let spec = &stream.spec;
    let mut problems = Vec::new();
    let name = stream.name_any();
    if !is_valid_stream_name(&name) {
        problems.push(Problem::InvalidName(name.clone()));
    }
    if let Some(owner) = name_owner(stream, same_name) {
        problems.push(Problem::NameTaken {
            owner_namespace: owner,
        });
    }
    let requested = match (spec.stream_mode, spec.shard_count) {
        (StreamMode::Provisioned, None) => {
            problems.push(Problem::ShardCountMissing);
            0
        }
        (StreamMode::Provisioned, Some(n)) if !(1..=MAX_SHARD_COUNT).contains(&n) => {
            problems.push(Problem::ShardCountOutOfRange(n));
            0
        }
        (StreamMode::Provisioned, Some(n)) => n.unsigned_abs(),
        (StreamMode::OnDemand, _) => ON_DEMAND_INITIAL_SHARDS,
    };
    if !(MIN_RETENTION_HOURS..=MAX_RETENTION_HOURS).contains(&spec.retention_period_hours) {
        problems.push(Problem::RetentionOutOfRange(spec.retention_period_hours));
    }
    if !matches!(spec.replication_factor, 1 | 3) {
        problems.push(Problem::ReplicationFactor(spec.replication_factor));
    }
    if !(MIN_RECORD_SIZE_KIB..=MAX_RECORD_SIZE_KIB).contains(&spec.max_record_size_kib) {
        problems.push(Problem::MaxRecordSizeOutOfRange(spec.max_record_size_kib));
    }
    if !(1..=MAX_SHARDS_PER_GROUP).contains(&spec.shards_per_group) {
        problems.push(Problem::ShardsPerGroupOutOfRange(spec.shards_per_group));
    }
    if !is_quantity(&spec.storage.size) {
        problems.push(Problem::StorageSize(spec.storage.size.clone()));
    }
    for (field, value) in [
        ("cpu", &spec.resources.cpu),
        ("memory", &spec.resources.memory),
    ] {
        if !is_quantity(value) {
            problems.push(Problem::Resource(field, value.clone()));
        }
    }
    if !problems.is_empty() {
        problems.sort();
        problems.dedup();
        return Err(Problems(problems));
    }
    Ok(ValidStream {
        requested_shards: requested,
        shards_per_group: spec.shards_per_group.unsigned_abs(),
        replication_factor: spec.replication_factor.unsigned_abs(),
    })
}

/// The namespace of the stream that owns `stream`'s name, when that is not `stream` itself:
/// the earliest created wins, ties broken by namespace so every replica of the operator agrees.
fn name_owner(stream: &Stream, same_name: &[&Stream]) -> Option<String> {
    let key = |s: &Stream| {
        (
            s.metadata.creation_timestamp.as_ref().map(|t| t.0),
            s.namespace().unwrap_or_default(),
        )
    };
    let mine = key(stream);
    same_name
        .iter()
        .filter(|other| {
            other.name_any() == stream.name_any() && other.namespace() != stream.namespace()
        })
        .filter(|other| other.metadata.deletion_timestamp.is_none())
        .map(|other| key(other))
        .filter(|theirs| theirs < &mine)
        .min()
        .map(|(_, ns)| ns)
}

/// Whether `s` has the shape of a Kubernetes quantity (`10Gi`, `500M`, `1.5e9`, `1024`).
pub fn is_quantity(s: &str) -> bool {
    const SUFFIXES: [&str; 14] = [
        "Ki", "Mi", "Gi", "Ti", "Pi", "Ei", "n", "u", "m", "k", "M", "G", "T", "P",
    ];
    let number_end = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '+' || c == '-'))
        .unwrap_or(s.len());
    let (number, suffix) = s.split_at(number_end);
    let number = number.strip_prefix(['+', '-']).unwrap_or(number);
    let well_formed_number = !number.is_empty()
        && number.bytes().all(|b| b.is_ascii_digit() || b == b'.')
        && number.bytes().filter(|b| *b == b'.').count() <= 1
        && number.bytes().any(|b| b.is_ascii_digit());
    let well_formed_suffix = suffix.is_empty()
        || SUFFIXES.contains(&suffix)
        || suffix == "E"
        || suffix
            .strip_prefix(['e', 'E'])
            .map(|exp| {
                let exp = exp.strip_prefix(['+', '-']).unwrap_or(exp);
                !exp.is_empty() && exp.bytes().all(|b| b.is_ascii_digit())
            })
            .unwrap_or(false);
    well_formed_number && well_formed_suffix
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stream::fixtures::ts;

    #[test]
    fn a_plain_provisioned_stream_is_valid() {
        let valid = validate(&Stream::test().with_shards(8), &[]).expect("valid");
        assert_eq!(
            valid,
            ValidStream {
                requested_shards: 8,
                shards_per_group: 8,
                replication_factor: 3
            }
        );
    }

    #[test]
    fn a_stream_may_span_several_groups() {
        let valid = validate(&Stream::test().with_shards(20).with_replication(1), &[])
            .expect("three groups");
        assert_eq!(valid.requested_shards, 20);
        assert_eq!(valid.shards_per_group, 8);
        let both = validate(
            &Stream::test()
                .with_shards(10)
                .with_replication(1)
                .with_retention(10),
            &[],
        )
        .expect_err("bad retention");
        assert_eq!(both.reason(), "InvalidSpec");
    }

    #[test]
    fn resources_must_be_quantities() {
        let mut stream = Stream::test();
        stream.spec.resources.cpu = "lots".into();
        let problems = validate(&stream, &[]).expect_err("bad cpu");
        assert_eq!(problems.0, [Problem::Resource("cpu", "lots".into())]);
        assert_eq!(
            problems.to_string(),
            "resources.cpu \"lots\" is not a Kubernetes quantity such as 250m"
        );
    }

    #[test]
    fn a_replicated_stream_may_span_several_groups() {
        let spread = Stream::test().with_shards(10).with_replication(3);
        assert_eq!(validate(&spread, &[]).map(|v| v.replication_factor), Ok(3));
    }

    #[test]
    fn on_demand_starts_with_four_shards() {
        let valid = validate(&Stream::test().on_demand(), &[]).expect("valid");
        assert_eq!(valid.requested_shards, ON_DEMAND_INITIAL_SHARDS);
    }

    #[test]
    fn every_problem_is_reported_in_a_stable_order() {
        let mut stream = Stream::test().with_retention(10).with_replication(2);
        stream.spec.shard_count = None;
        stream.spec.storage.size = "ten gigs".into();
        let problems = validate(&stream, &[]).expect_err("invalid");
        assert_eq!(
            problems.0,
            [
                Problem::ShardCountMissing,
                Problem::RetentionOutOfRange(10),
                Problem::ReplicationFactor(2),
                Problem::StorageSize("ten gigs".into()),
            ]
        );
        let text = problems.to_string();
        assert!(
            text.contains("retentionPeriodHours must be between 24 and 8760"),
            "{text}"
        );
        assert_eq!(
            text,
            validate(&stream, &[]).expect_err("invalid").to_string()
        );
    }

    #[test]
    fn counts_are_bounded() {
        let stream = Stream::test()
            .with_shards(MAX_SHARD_COUNT + 1)
            .with_shards_per_group(0);
        assert_eq!(
            validate(&stream, &[]).expect_err("out of range").0,
            [
                Problem::ShardCountOutOfRange(MAX_SHARD_COUNT + 1),
                Problem::ShardsPerGroupOutOfRange(0),
            ]
        );
    }

    #[test]
    fn the_oldest_stream_owns_a_name() {
        let older = Stream::test().in_namespace("a").created_at(ts(100));
        let newer = Stream::test().in_namespace("b").created_at(ts(200));
        assert!(validate(&older, &[&newer]).is_ok());
        assert_eq!(
            validate(&newer, &[&older]).expect_err("taken").0,
            [Problem::NameTaken {
                owner_namespace: "a".into()
            }]
        );
    }

    #[test]
    fn names_that_break_derived_names_are_refused() {
        let stream = Stream::test().named(&"x".repeat(41));
        assert!(matches!(
            validate(&stream, &[]).expect_err("long").0[..],
            [Problem::InvalidName(_)]
        ));
    }

    #[test]
    fn quantities() {
        for ok in ["10Gi", "1", "500M", "1.5Gi", "1e9", "2E", "100k"] {
            assert!(is_quantity(ok), "{ok}");
        }
        for bad in ["", "Gi", "10 Gi", "10GB", "1.2.3", "ten"] {
            assert!(!is_quantity(bad), "{bad}");
        }
    }
}
