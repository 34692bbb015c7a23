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
use crate::stream::shards::{LayoutError, Shard, ShardLayout, parse_shard_id};

/// How long connecting to a shard group's pod may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// How long one call may take; UpdateShardCount returns once the new shards are open.
const CALL_TIMEOUT: Duration = Duration::from_secs(60);

/// The stream as its shard group reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observed {
    /// Every retained shard, with lineage; all in group 0 (a stream has one group for now).
    pub layout: ShardLayout,
    /// Retention in hours.
    pub retention_hours: u32,
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
        })
    }

    /// Open shards.
    pub fn open_shards(&self) -> u32 {
        self.layout.open_count()
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
        group: 0,
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
}

/// One change to the stream in the data plane.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// The stream does not exist yet.
    Create {
        /// Its shard count.
        shards: u32,
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
    if observed.retention_hours != wanted.retention_hours {
        return Some(Change::SetRetention {
            hours: wanted.retention_hours,
        });
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

/// A connection to the data plane of one shard group pod.
pub struct DataPlane {
    client: StreamsClient<Channel>,
    address: String,
}

impl DataPlane {
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

    /// Makes `change` to the stream `name`.
    pub async fn apply(&mut self, name: &str, change: Change) -> Result<(), DataPlaneError> {
        match change {
            Change::Create { shards } => {
                let answer = self
                    .client
                    .create_stream(v1::CreateStreamRequest {
                        name: name.into(),
                        shard_count: shards,
                    })
                    .await;
                match answer {
                    // Created by an earlier attempt whose answer was lost: the next describe
                    // reads it.
                    Err(status) if status.code() == tonic::Code::AlreadyExists => Ok(()),
                    Err(status) => Err(self.failed("CreateStream", &status)),
                    Ok(_) => Ok(()),
                }
            }
            Change::SetRetention { hours } => self
                .client
                .update_retention(v1::UpdateRetentionRequest {
                    name: name.into(),
                    retention_hours: hours,
                })
                .await
                .map(|_| ())
                .map_err(|status| self.failed("UpdateRetention", &status)),
            Change::Reshard { target, .. } => self
                .client
                .update_shard_count(v1::UpdateShardCountRequest {
                    name: name.into(),
                    target_shard_count: target,
                })
                .await
                .map(|_| ())
                .map_err(|status| self.failed("UpdateShardCount", &status)),
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
        }
    }

    fn described(shards: Vec<v1::Shard>, retention_hours: u32) -> v1::StreamDescription {
        v1::StreamDescription {
            name: "orders".into(),
            shards,
            retention_hours,
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
        Observed::from_description(&described(vec![right, parent, left], 24)).expect("readable")
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
}
