//! Raft replication of a shard group's commands, on [openraft] 0.10.
//!
//! A shard group runs one or three replicas. Each replica keeps a durable raft log and vote
//! ([`storage`]), applies committed commands to a [`StateMachine`] the server implements
//! ([`state_machine`]), talks to its peers over TCP ([`network`]) and is driven through
//! [`Replica`].
//!
//! # Using it
//!
//! ```no_run
//! # async fn run<S: riffle_replication::StateMachine>(sm: S) -> anyhow::Result<()> {
//! use std::collections::BTreeMap;
//! use riffle_replication::{ProposeError, Replica, ReplicaConfig};
//!
//! let members = BTreeMap::from([
//!     (1, "group-0-0.group-0:7100".to_string()),
//!     (2, "group-0-1.group-0:7100".to_string()),
//!     (3, "group-0-2.group-0:7100".to_string()),
//! ]);
//! let config = ReplicaConfig::new(1, "0.0.0.0:7100".parse()?, members, "/data".into());
//! let replica = Replica::start(config, sm).await?;
//! match replica.propose(bytes::Bytes::from_static(b"command")).await {
//!     Ok(done) => println!("committed at {} -> {:?}", done.index, done.response),
//!     Err(ProposeError::NotLeader { leader, .. }) => println!("ask {leader:?}"),
//!     Err(e) => return Err(e.into()),
//! }
//! println!("{:?}", replica.status());
//! # Ok(()) }
//! ```
//!
//! # Guarantees
//!
//! - [`Replica::propose`] returns `Ok` only after the command is durable (`fdatasync`) on a
//!   quorum and applied on this replica; its index is greater than that of every command
//!   acknowledged before it was proposed. The quorum need not include the leader: the leader
//!   sends its entries to the followers while its own `fdatasync` runs, and two followers'
//!   copies commit an entry in a group of three.
//! - A replica that restarts resumes from its log, vote and state machine position; the state
//!   machine never sees an entry twice or misses one (see [`state_machine`]).
//! - The lowest member id founds the group once, and only if every peer answers that it is not
//!   in a group yet; a replica restarted with an empty volume is caught up by the leader (by
//!   log, or by snapshot if the log it needs was purged).
//!
//! # On disk
//!
//! Under the replica's data directory: `raft/` holds the log segments
//! (`{first_index:020}.wal`), `vote`, `purged` and a `.lock`; `snapshot/` holds `snapshot.bin`
//! (see [`state_machine`] for its format). The state machine keeps its own files wherever the
//! server puts them.
//!
//! # Reads
//!
//! [`Replica::read_barrier`] makes a read of the local state machine linearizable (leadership
//! confirmed by a quorum, everything committed before it applied); a read without it may be
//! stale on a deposed leader or a follower.
//!
//! # Limits
//!
//! - A replica that lost its volume also lost the votes it cast, and Raft assumes votes are
//!   never forgotten. A replica that starts without a vote therefore refuses vote requests
//!   until it has asked its peers: if one is part of a group, it votes only in terms above the
//!   highest term they report (every term it may have voted in was started by a candidate that
//!   holds it); if none is, the group is new and it votes freely. openraft's
//!   `allow_log_reversion` is on so that the leader re-sends such a replica everything instead
//!   of stopping. A peer that cannot be reached within 5 s of the others'
//!   answers is not waited for; a candidate it voted for there could hold a higher term.
//! - Membership is fixed at bootstrap; adding or replacing members (`Raft::change_membership`
//!   through [`Replica::raft`]) is not wrapped yet.
//! - Vote, truncate and purge `fsync` on the raft task (inside `block_in_place` on a
//!   multi-threaded runtime; they are rare); a purge only records its point there, and a thread
//!   of the log deletes the purged segments. Appends are written on the raft task and
//!   `fdatasync`ed on a thread of the log, which groups the appends that arrive meanwhile;
//!   openraft replicates an entry once it is written, not synced.
//! - A leader restarted after a crash stands for election again rather than resuming its term
//!   (openraft's `enable_leader_restore` is off): it may have lost an unsynced tail that the
//!   followers committed without it.

pub mod network;
mod replica;
pub mod state_machine;
pub mod storage;
#[cfg(test)]
mod suite_tests;
pub mod types;

pub use replica::{
    MAX_BATCH_BYTES, MAX_COMMAND_BYTES, ProposeError, Proposed, Replica, ReplicaConfig,
    ReplicaStatus, Role, StartError,
};
pub use state_machine::{Applied, SnapshotView, StateMachine};
pub use types::{Command, LogId, NodeId, TypeConfig};
