//! A shard group's streams replicated with Raft ([`riffle_replication`]).
//!
//! The leader turns each write request into a deterministic [`Command`] (the routing, the
//! throughput limits, encryption and the clock are settled on the leader and recorded in the
//! command), proposes it, and answers once a quorum has it durable and it is applied. Every
//! replica applies the same commands in the same order to its own [`Catalog`] through
//! [`CatalogMachine`], so all replicas store the same streams and the same records with the
//! same sequence numbers and arrival times.
//!
//! [`Node`] runs a replica inside `riffle server --replica-id N --peers ... --raft-listen ...`:
//! it installs itself as the catalog's [`Replicator`], so every change — CreateStream,
//! DeleteStream, PutRecord(s), the settings of [`SettingsChange`] (retention, tags, stream
//! mode, largest record, encryption, enhanced monitoring, resource policy), the reshards and
//! consumer registrations of [`StreamChange`], and the import of a stream spread over several
//! shard groups; Kinesis and gRPC APIs alike — is proposed on the leader and answered 503
//! `ServiceUnavailable` with [`LEADER_HEADER`] on the other replicas.
//! Retention is swept by the leader as a command carrying its clock, so every replica trims the
//! same records and forgets the same expired shards.
//! The Kinesis API answers on the leader only, reads included (a follower's copy may lack
//! writes the leader acknowledged), and only while a quorum has answered it within the last
//! 1.5 s (a leader cut off from its followers refuses rather than hold writes or answer from
//! a copy a new leader has moved past); other replicas answer 503 naming the leader they know.
//! `/metrics` adds `riffle_replica_is_leader`,
//! `riffle_replica_term`, `riffle_replica_leader`, `riffle_replica_last_log_index` and
//! `riffle_replica_applied_index`, `riffle_replica_role` (labelled with the role), one
//! `riffle_replica_voter` per voting member, and on the
//! leader `riffle_replica_millis_since_quorum_ack`.
//!
//! Records are therefore written twice on every replica: once in the raft log (inside the
//! command) and once in the shard log; the raft log is purged behind snapshots.
//!
//! [`Catalog`]: crate::streams::Catalog
//! [`Replicator`]: crate::streams::Replicator
//! [`SettingsChange`]: crate::streams::SettingsChange
//! [`StreamChange`]: crate::streams::StreamChange

mod bytes_serde;
pub mod command;
pub mod node;
pub mod position_file;
pub mod state_machine;

pub use command::{Applier, Command, Record, Response, ShardBatch};
pub use node::{LEADER_HEADER, Node, ReplicationOptions};
pub use state_machine::CatalogMachine;
