//! The stream inside its shard group: what the data plane reports (DescribeStream) and the one
//! change at a time that brings it to the spec (CreateStream, UpdateRetention, UpdateShardCount),
//! over the data plane's gRPC API.
//!
//! The data plane is the source of truth for shards: the operator never predicts a reshard's
//! result, it asks for one and describes the stream again. Deciding the next change is a pure
//! function ([`next_change`]) so that it is tested without a data plane; [`DataPlane`] only makes
//! the calls.

use std::net::IpAddr;
use std::time::Duration;

use riffle_proto::v1::{self, streams_client::StreamsClient};
use tonic::transport::{Channel, Endpoint};

use crate::crd::ShardState;
use crate::stream::naming::GRPC_PORT;
use crate::stream::on_demand::Counters;
use crate::stream::shards::{LayoutError, Shard, ShardLayout, parse_shard_id};

/// How long connecting to a shard group's pod may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// How long one call may take; UpdateShardCount returns once the new shards are open.
const CALL_TIMEOUT: Duration = Duration::from_secs(60);

/// The stream as one of its shard groups reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observed {
    /// Every retained shard, with lineage and the group storing it.
    pub layout: ShardLayout,
    /// Retention in hours.
    pub retention_hours: u32,
    /// `PROVISIONED` or `ON_DEMAND`.
    pub mode: String,
    /// Largest record accepted, in KiB.
    pub max_record_size_kib: u32,
    /// Reshards made so far.
    pub reshard_count: u32,
}

impl Observed {
    /// Reads a DescribeStream answer. Only a data plane that breaks its own contract (shard ids,
    /// hash keys, a partition of the key space) makes this fail.
    pub fn from_description(description: &v1::StreamDescription) -> Result<Self, LayoutError> {
        let shards = description
            .shards
            .iter()
            .map(shard_from)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Observed {
            layout: ShardLayout::new(shards)?,
            retention_hours: description.retention_hours,
            mode: description.mode.clone(),
            max_record_size_kib: description.max_record_size_kib,
            reshard_count: description.reshard_count,
        })
    }

    /// Open shards.
    pub fn open_shards(&self) -> u32 {
        self.layout.open_count()
    }

    /// Whether `other` has made the same reshards and holds the same open shards (ids, ranges
    /// and groups) as this view: two shard groups of one stream that agree are in step. Closed
    /// shards may differ for a moment while retention forgets them.
    pub fn in_step_with(&self, other: &Observed) -> bool {
        if self.reshard_count != other.reshard_count {
            return false;
        }
        let open = |o: &Observed| -> Vec<Shard> {
            o.layout
                .shards()
                .iter()
                .filter(|s| s.state == ShardState::Open)
                .cloned()
                .collect()
        };
        open(self) == open(other)
    }
}

fn shard_from(shard: &v1::Shard) -> Result<Shard, LayoutError> {
    let index =
        parse_shard_id(&shard.id).ok_or_else(|| LayoutError::BadShardId(shard.id.clone()))?;
    let key = |text: &str| {
        text.parse::<u128>().map_err(|_| LayoutError::BadHashKey {
            shard: shard.id.clone(),
            key: text.to_owned(),
        })
    };
    let parent = |id: &Option<String>| {
        id.as_deref()
            .map(|p| parse_shard_id(p).ok_or_else(|| LayoutError::BadShardId(p.to_owned())))
            .transpose()
    };
    Ok(Shard {
        index,
        start: key(&shard.starting_hash_key)?,
        end: key(&shard.ending_hash_key)?,
        parent: parent(&shard.parent_shard_id)?,
        adjacent_parent: parent(&shard.adjacent_parent_shard_id)?,
        state: if shard.open {
            ShardState::Open
        } else {
            ShardState::Closed
        },
        group: shard.group,
    })
}

/// What the spec wants the data plane to hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Wanted {
    /// Open shards to create the stream with.
    pub initial_shards: u32,
    /// Open shards to keep; `None` when the spec does not fix them (on-demand streams).
    pub shards: Option<u32>,
    /// Retention in hours.
    pub retention_hours: u32,
    /// `PROVISIONED` or `ON_DEMAND`.
    pub mode: &'static str,
    /// Largest record accepted, in KiB.
    pub max_record_size_kib: u32,
    /// Most open shards placed in one shard group.
    pub shards_per_group: u32,
}

/// One change to the stream in one shard group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// The stream does not exist yet (group 0).
    Create {
        /// Its shard count.
        shards: u32,
    },
    /// The stream does not exist yet in a further group: it takes group 0's description.
    Import {
        /// The group.
        group: u32,
    },
    /// A further group has made fewer reshards than group 0: it replays group 0's.
    FollowReshards {
        /// Reshards the group has made.
        from: u32,
        /// Reshards group 0 has made.
        to: u32,
    },
    /// The capacity mode or the largest record differs.
    UpdateSettings {
        /// The wanted mode, if it differs.
        mode: Option<&'static str>,
        /// The wanted largest record, if it differs.
        max_record_size_kib: Option<u32>,
    },
    /// The retention differs.
    SetRetention {
        /// The wanted retention.
        hours: u32,
    },
    /// The open shard count differs; `target` is the next step towards `to`.
    Reshard {
        /// Open shards now.
        from: u32,
        /// Open shards wanted.
        to: u32,
        /// What this step asks UpdateShardCount for.
        target: u32,
    },
}

/// The next change that brings `observed` (`None`: no such stream) towards `wanted`, or `None`
/// when they agree. The stream is created first, then its retention set, then resharded.
pub fn next_change(wanted: &Wanted, observed: Option<&Observed>) -> Option<Change> {
    let Some(observed) = observed else {
        return Some(Change::Create {
            shards: wanted.initial_shards.max(1),
        });
    };
    if let Some(change) = settings_change(wanted, observed) {
        return Some(change);
    }
    let from = observed.open_shards();
    match wanted.shards {
        Some(to) if to != from && to > 0 => Some(Change::Reshard {
            from,
            to,
            target: reshard_step(from, to),
        }),
        _ => None,
    }
}

/// Retention and settings changes, which every group takes on its own.
fn settings_change(wanted: &Wanted, observed: &Observed) -> Option<Change> {
    if observed.retention_hours != wanted.retention_hours {
        return Some(Change::SetRetention {
            hours: wanted.retention_hours,
        });
    }
    let mode = (observed.mode != wanted.mode).then_some(wanted.mode);
    let max_record_size_kib = (observed.max_record_size_kib != wanted.max_record_size_kib)
        .then_some(wanted.max_record_size_kib);
    (mode.is_some() || max_record_size_kib.is_some()).then_some(Change::UpdateSettings {
        mode,
        max_record_size_kib,
    })
}

/// The next change that brings shard group `group` (`None`: it lacks the stream) in step with
/// group 0 (`leader`), or `None` when it is. A group follows group 0's reshards rather than the
/// spec: it replays the ones group 0 made and it has not (resharding is deterministic, so it then
/// holds exactly group 0's shards), whoever asked for them (the operator, or SplitShard and
/// MergeShards through the gateway).
pub fn follow_change(
    wanted: &Wanted,
    group: u32,
    leader: &Observed,
    follower: Option<&Observed>,
) -> Option<Change> {
    let Some(follower) = follower else {
        return Some(Change::Import { group });
    };
    if let Some(change) = settings_change(wanted, follower) {
        return Some(change);
    }
    (follower.reshard_count < leader.reshard_count).then_some(Change::FollowReshards {
        from: follower.reshard_count,
        to: leader.reshard_count,
    })
}

/// The shard count to ask UpdateShardCount for on the way from `current` to `wanted` open shards:
/// `wanted` itself when Kinesis allows it in one call (half to double the current count), else
/// the furthest count it allows in that direction.
pub fn reshard_step(current: u32, wanted: u32) -> u32 {
    let current = current.max(1);
    let highest = current.saturating_mul(2);
    let lowest = current.div_ceil(2);
    wanted.clamp(lowest, highest)
}

/// A failed call to a shard group.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum DataPlaneError {
    /// No connection could be made.
    #[error("cannot reach the data plane at {address}: {message}")]
    Connect {
        /// `ip:port`.
        address: String,
        /// The transport's complaint.
        message: String,
    },
    /// The data plane refused or failed a call.
    #[error("{call} failed at {address}: {message}")]
    Call {
        /// The RPC.
        call: &'static str,
        /// `ip:port`.
        address: String,
        /// The status message (it starts with the Kinesis exception name).
        message: String,
    },
    /// The stream is still missing after the data plane accepted its creation.
    #[error("the data plane at {address} does not have the stream after creating it")]
    Missing {
        /// `ip:port`.
        address: String,
    },
    /// A shard group was resharded apart from group 0 (for example by SplitShard sent to its
    /// pod directly), so replaying group 0's reshards cannot bring it in step.
    #[error(
        "shard group {group} was resharded apart from shard group 0; the groups of a stream \
         must be changed together (through the gateway or the Stream's spec)"
    )]
    Diverged {
        /// The group out of step.
        group: u32,
    },
    /// The data plane described the stream in a way the operator cannot read.
    #[error("the data plane at {address} described an unreadable stream: {source}")]
    Unreadable {
        /// `ip:port`.
        address: String,
        /// What is wrong.
        #[source]
        source: LayoutError,
    },
}

/// A connection to the data plane of one shard group pod, able to move to another pod of the
/// group when the one it talks to does not lead.
pub struct DataPlane {
    client: StreamsClient<Channel>,
    address: String,
    /// The group's ready pods, in ordinal order; `pods[current]` is the one connected.
    pods: Vec<IpAddr>,
    current: usize,
}

impl DataPlane {
    /// Connects to the gRPC API of the first of `pods` (a group's ready pods, in ordinal order)
    /// that accepts a connection. Reads go to that pod; a change it declines as `Unavailable`
    /// (a replica that does not lead) is taken to the next pods in turn, and the connection
    /// stays with the pod that accepted it, so later reads see the change.
    pub async fn connect_group(pods: &[IpAddr]) -> Result<Self, DataPlaneError> {
        let mut last = None;
        for (index, &ip) in pods.iter().enumerate() {
            match Self::connect(ip).await {
                Ok(mut data_plane) => {
                    data_plane.pods = pods.to_vec();
                    data_plane.current = index;
                    return Ok(data_plane);
                }
                Err(error) => last = Some(error),
            }
        }
        Err(last.unwrap_or_else(|| DataPlaneError::Connect {
            address: "the shard group".into(),
            message: "no ready pod".into(),
        }))
    }

    /// Makes `call` on the pod connected and, while a pod declines it as `Unavailable` (a
    /// replica that does not lead its group), on the group's next pods in turn, each once. `call`
    /// takes a handle on the connection and fails with the name of the gRPC call and its status.
    async fn on_leader<T, F, Answer>(&mut self, mut call: F) -> Result<T, DataPlaneError>
    where
        F: FnMut(StreamsClient<Channel>) -> Answer,
        Answer: Future<Output = Result<T, (&'static str, tonic::Status)>>,
    {
        let mut tried = 1;
        loop {
            match call(self.client.clone()).await {
                Err((call, status))
                    if status.code() == tonic::Code::Unavailable
                        && self.move_on(&mut tried).await =>
                {
                    tracing::debug!(
                        call,
                        address = %self.address,
                        "a replica declined the call; asking the group's next pod"
                    );
                }
                Err((call, status)) => return Err(self.failed(call, &status)),
                Ok(answer) => return Ok(answer),
            }
        }
    }

    /// Moves to the next pod of the group after the current one that accepts a connection,
    /// returning whether one did; each pod is tried at most once per call (`tried` counts).
    async fn move_on(&mut self, tried: &mut usize) -> bool {
        while *tried < self.pods.len() {
            let next = (self.current + 1) % self.pods.len();
            *tried += 1;
            self.current = next;
            if let Ok(other) = Self::connect(self.pods[next]).await {
                self.client = other.client;
                self.address = other.address;
                return true;
            }
        }
        false
    }

    /// Connects to the gRPC API of the pod at `ip`.
    pub async fn connect(ip: IpAddr) -> Result<Self, DataPlaneError> {
        let address = match ip {
            IpAddr::V4(v4) => format!("{v4}:{GRPC_PORT}"),
            IpAddr::V6(v6) => format!("[{v6}]:{GRPC_PORT}"),
        };
        let connect_error = |message: String| DataPlaneError::Connect {
            address: address.clone(),
            message,
        };
        let channel = Endpoint::from_shared(format!("http://{address}"))
            .map_err(|e| connect_error(e.to_string()))?
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(CALL_TIMEOUT)
            .tcp_nodelay(true)
            .connect()
            .await
            .map_err(|e| connect_error(transport_message(&e)))?;
        Ok(DataPlane {
            client: StreamsClient::new(channel),
            address,
            pods: vec![ip],
            current: 0,
        })
    }

    fn failed(&self, call: &'static str, status: &tonic::Status) -> DataPlaneError {
        DataPlaneError::Call {
            call,
            address: self.address.clone(),
            message: status.message().to_owned(),
        }
    }

    /// The error for a stream that should exist but is not described.
    pub fn missing(&self, _name: &str) -> DataPlaneError {
        DataPlaneError::Missing {
            address: self.address.clone(),
        }
    }

    /// The stream `name`, or `None` if the data plane does not have it.
    pub async fn describe(&mut self, name: &str) -> Result<Option<Observed>, DataPlaneError> {
        let answer = self
            .client
            .describe_stream(v1::DescribeStreamRequest { name: name.into() })
            .await;
        let description = match answer {
            Ok(response) => response.into_inner().stream,
            Err(status) if status.code() == tonic::Code::NotFound => return Ok(None),
            Err(status) => return Err(self.failed("DescribeStream", &status)),
        };
        let Some(description) = description else {
            return Ok(None);
        };
        Observed::from_description(&description)
            .map(Some)
            .map_err(|source| DataPlaneError::Unreadable {
                address: self.address.clone(),
                source,
            })
    }

    /// The write counters of the shards this group stores, summed, as the group's leader
    /// counted them (a replica that does not lead answers `Unavailable`: the group's next pods
    /// are asked in turn, each once).
    pub async fn counters(&mut self, name: &str) -> Result<Counters, DataPlaneError> {
        let answer = self
            .on_leader(|mut client| async move {
                let request = v1::ShardMetricsRequest { name: name.into() };
                client
                    .shard_metrics(request)
                    .await
                    .map_err(|status| ("ShardMetrics", status))
            })
            .await?;
        Ok(answer
            .into_inner()
            .shards
            .iter()
            .fold(Counters::default(), |sum, shard| Counters {
                bytes: sum.bytes + shard.incoming_bytes,
                records: sum.records + shard.incoming_records,
                throttled: sum.throttled + shard.write_throttled,
            }))
    }

    /// The stream's description, for [`Change::Import`] into another group.
    pub async fn export(&mut self, name: &str) -> Result<Vec<u8>, DataPlaneError> {
        self.client
            .export_stream(v1::ExportStreamRequest { name: name.into() })
            .await
            .map(|answer| answer.into_inner().description.to_vec())
            .map_err(|status| self.failed("ExportStream", &status))
    }

    /// Makes `change` to the stream `name`; `description` is group 0's export, which only
    /// [`Change::Import`] reads. A pod answering `Unavailable` (a replica that does not lead
    /// its group) passes the change to the group's next pod, each pod once.
    pub async fn apply(
        &mut self,
        name: &str,
        change: Change,
        wanted: &Wanted,
        description: &[u8],
    ) -> Result<(), DataPlaneError> {
        self.on_leader(|client| Self::apply_on(client, name, change, wanted, description))
            .await
    }

    /// Makes `change` through `client`, returning the call and status it failed with.
    async fn apply_on(
        mut client: StreamsClient<Channel>,
        name: &str,
        change: Change,
        wanted: &Wanted,
        description: &[u8],
    ) -> Result<(), (&'static str, tonic::Status)> {
        match change {
            Change::Import { group } => {
                let answer = client
                    .import_stream(v1::ImportStreamRequest {
                        description: description.to_vec().into(),
                        placement: Some(v1::Placement {
                            group,
                            shards_per_group: wanted.shards_per_group,
                        }),
                    })
                    .await;
                match answer {
                    Err(status) if status.code() == tonic::Code::AlreadyExists => Ok(()),
                    Err(status) => Err(("ImportStream", status)),
                    Ok(_) => Ok(()),
                }
            }
            Change::FollowReshards { .. } => client
                .replay_reshards(v1::ReplayReshardsRequest {
                    name: name.into(),
                    description: description.to_vec().into(),
                })
                .await
                .map(|_| ())
                .map_err(|status| ("ReplayReshards", status)),
            Change::UpdateSettings {
                mode,
                max_record_size_kib,
            } => client
                .update_stream(v1::UpdateStreamRequest {
                    name: name.into(),
                    mode: mode.unwrap_or_default().into(),
                    max_record_size_kib: max_record_size_kib.unwrap_or(0),
                })
                .await
                .map(|_| ())
                .map_err(|status| ("UpdateStream", status)),
            Change::Create { shards } => {
                let answer = client
                    .create_stream(v1::CreateStreamRequest {
                        name: name.into(),
                        shard_count: shards,
                        mode: wanted.mode.into(),
                        max_record_size_kib: wanted.max_record_size_kib,
                        placement: Some(v1::Placement {
                            group: 0,
                            shards_per_group: wanted.shards_per_group,
                        }),
                    })
                    .await;
                match answer {
                    // Created by an earlier attempt whose answer was lost: the next describe
                    // reads it.
                    Err(status) if status.code() == tonic::Code::AlreadyExists => Ok(()),
                    Err(status) => Err(("CreateStream", status)),
                    Ok(_) => Ok(()),
                }
            }
            Change::SetRetention { hours } => client
                .update_retention(v1::UpdateRetentionRequest {
                    name: name.into(),
                    retention_hours: hours,
                })
                .await
                .map(|_| ())
                .map_err(|status| ("UpdateRetention", status)),
            Change::Reshard { target, .. } => client
                .update_shard_count(v1::UpdateShardCountRequest {
                    name: name.into(),
                    target_shard_count: target,
                })
                .await
                .map(|_| ())
                .map_err(|status| ("UpdateShardCount", status)),
        }
    }
}

/// The innermost cause of a transport error: the outer layers only say "transport error".
fn transport_message(error: &tonic::transport::Error) -> String {
    let mut message = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        message = cause.to_string();
        source = cause.source();
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wanted(shards: u32) -> Wanted {
        Wanted {
            initial_shards: shards,
            shards: Some(shards),
            retention_hours: 24,
            mode: "PROVISIONED",
            max_record_size_kib: 1024,
            shards_per_group: 8,
        }
    }

    fn shard(id: &str, start: u128, end: u128, open: bool) -> v1::Shard {
        v1::Shard {
            id: id.into(),
            starting_hash_key: start.to_string(),
            ending_hash_key: end.to_string(),
            parent_shard_id: None,
            adjacent_parent_shard_id: None,
            open,
            starting_sequence_number: "0".into(),
            ending_sequence_number: None,
            group: 0,
        }
    }

    fn described(shards: Vec<v1::Shard>, retention_hours: u32) -> v1::StreamDescription {
        v1::StreamDescription {
            name: "orders".into(),
            shards,
            retention_hours,
            mode: "PROVISIONED".into(),
            max_record_size_kib: 1024,
            ..v1::StreamDescription::default()
        }
    }

    /// Two open shards split from one closed parent.
    fn split_stream() -> Observed {
        let half = 1u128 << 127;
        let mut left = shard("shardId-000000000001", 0, half - 1, true);
        left.parent_shard_id = Some("shardId-000000000000".into());
        let mut right = shard("shardId-000000000002", half, u128::MAX, true);
        right.parent_shard_id = Some("shardId-000000000000".into());
        let parent = shard("shardId-000000000000", 0, u128::MAX, false);
        let mut description = described(vec![right, parent, left], 24);
        description.reshard_count = 1;
        Observed::from_description(&description).expect("readable")
    }

    #[test]
    fn a_description_becomes_a_layout_with_lineage() {
        let observed = split_stream();
        assert_eq!(observed.open_shards(), 2);
        let status = observed.layout.to_status();
        assert_eq!(status.len(), 3);
        assert_eq!(status[0].state, ShardState::Closed);
        assert_eq!(
            status[2].parent_shard_id.as_deref(),
            Some("shardId-000000000000")
        );
        assert!(status.iter().all(|s| s.group == 0));
    }

    #[test]
    fn an_unreadable_description_is_an_error() {
        let bad_id = described(vec![shard("shard-0", 0, u128::MAX, true)], 24);
        assert!(matches!(
            Observed::from_description(&bad_id),
            Err(LayoutError::BadShardId(_))
        ));
        let hole = described(vec![shard("shardId-000000000000", 0, 5, true)], 24);
        assert_eq!(
            Observed::from_description(&hole),
            Err(LayoutError::NotAPartition)
        );
    }

    #[test]
    fn a_missing_stream_is_created_first() {
        assert_eq!(
            next_change(&wanted(4), None),
            Some(Change::Create { shards: 4 })
        );
    }

    #[test]
    fn retention_comes_before_resharding() {
        let mut want = wanted(4);
        want.retention_hours = 48;
        assert_eq!(
            next_change(&want, Some(&split_stream())),
            Some(Change::SetRetention { hours: 48 })
        );
    }

    #[test]
    fn a_matching_stream_needs_nothing() {
        assert_eq!(next_change(&wanted(2), Some(&split_stream())), None);
        let on_demand = Wanted {
            shards: None,
            ..wanted(4)
        };
        assert_eq!(next_change(&on_demand, Some(&split_stream())), None);
    }

    #[test]
    fn resharding_goes_at_most_double_or_half_per_step() {
        assert_eq!(
            next_change(&wanted(4), Some(&split_stream())),
            Some(Change::Reshard {
                from: 2,
                to: 4,
                target: 4
            })
        );
        assert_eq!(
            next_change(&wanted(16), Some(&split_stream())),
            Some(Change::Reshard {
                from: 2,
                to: 16,
                target: 4
            })
        );
        assert_eq!(reshard_step(2, 3), 3);
        assert_eq!(reshard_step(4, 16), 8);
        assert_eq!(reshard_step(8, 16), 16);
        assert_eq!(reshard_step(16, 1), 8);
        assert_eq!(reshard_step(5, 1), 3);
        assert_eq!(reshard_step(3, 1), 2);
        assert_eq!(reshard_step(2, 1), 1);
        assert_eq!(reshard_step(1, 1), 1);
    }

    #[test]
    fn settings_follow_the_spec() {
        let mut want = wanted(2);
        want.mode = "ON_DEMAND";
        want.max_record_size_kib = 2048;
        assert_eq!(
            next_change(&want, Some(&split_stream())),
            Some(Change::UpdateSettings {
                mode: Some("ON_DEMAND"),
                max_record_size_kib: Some(2048)
            })
        );
    }

    #[test]
    fn other_groups_import_then_follow_group_zero() {
        let want = wanted(2);
        let leader = split_stream();
        assert_eq!(
            follow_change(&want, 1, &leader, None),
            Some(Change::Import { group: 1 })
        );
        assert_eq!(follow_change(&want, 1, &leader, Some(&leader)), None);
        assert!(leader.in_step_with(&leader));
        let behind = Observed::from_description(&described(
            vec![shard("shardId-000000000000", 0, u128::MAX, true)],
            24,
        ))
        .expect("readable");
        assert!(!behind.in_step_with(&leader));
        assert_eq!(
            follow_change(&want, 1, &leader, Some(&behind)),
            Some(Change::FollowReshards { from: 0, to: 1 })
        );
        let mut old_retention = leader.clone();
        old_retention.retention_hours = 48;
        assert_eq!(
            follow_change(&want, 1, &leader, Some(&old_retention)),
            Some(Change::SetRetention { hours: 24 })
        );
    }

    #[test]
    fn groups_come_from_the_description() {
        let mut left = shard("shardId-000000000000", 0, (1u128 << 127) - 1, true);
        let mut right = shard("shardId-000000000001", 1u128 << 127, u128::MAX, true);
        left.group = 0;
        right.group = 1;
        let observed =
            Observed::from_description(&described(vec![left, right], 24)).expect("readable");
        assert_eq!(observed.layout.groups(), vec![0, 1]);
    }
}
