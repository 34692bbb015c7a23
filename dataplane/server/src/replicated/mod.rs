//! A shard group's streams replicated with Raft ([`riffle_replication`]).
//!
//! The leader turns each write request into a deterministic [`Command`] (the routing, the
//! throughput limits, encryption and the clock are settled on the leader and recorded in the
//! command), proposes it, and answers once a quorum has it durable and it is applied. Every
//! replica applies the same commands in the same order to its own [`Catalog`] through
//! [`CatalogMachine`], so all replicas store the same streams and the same records with the
//! same sequence numbers and arrival times.
//!
//! Records are therefore written twice on every replica: once in the raft log (inside the
//! command) and once in the shard log; the raft log is purged behind snapshots.
//!
//! [`Catalog`]: crate::streams::Catalog

mod bytes_serde;
pub mod command;
pub mod state_machine;

pub use command::{Applier, Command, Record, Response, ShardBatch};
pub use state_machine::CatalogMachine;
