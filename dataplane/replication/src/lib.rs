//! Raft replication of a shard group's commands, on [openraft].
//!
//! A shard group runs one or three replicas. Each replica keeps a durable raft log and vote
//! ([`storage`]), applies committed commands to a [`StateMachine`] the server implements
//! ([`state_machine`]), talks to its peers over gRPC ([`network`]) and is driven through the
//! [`Replica`] API: propose a command, get its result once a quorum has it durable and it has
//! been applied.

pub mod network;
mod replica;
pub mod state_machine;
pub mod storage;
pub mod types;

pub use replica::{
    ProposeError, Proposed, Replica, ReplicaConfig, ReplicaStatus, Role, StartError,
};
pub use state_machine::{Applied, SnapshotView, StateMachine};
pub use types::{Command, LogId, NodeId, TypeConfig};
