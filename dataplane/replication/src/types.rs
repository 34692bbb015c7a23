//! The openraft type configuration of a Riffle shard group and the command/response payloads.

use std::fmt;

use bytes::Bytes;
use serde::de::{self, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A replica's identity inside its shard group (a small integer, e.g. the StatefulSet ordinal + 1).
pub type NodeId = u64;

/// What a replica knows about a peer: its replication address (`host:port`).
pub type Node = openraft::BasicNode;

/// The index and leader term of a raft log entry.
pub type LogId = openraft::type_config::alias::LogIdOf<TypeConfig>;

/// The membership of the group as stored in the log and the state machine.
pub type StoredMembership = openraft::type_config::alias::StoredMembershipOf<TypeConfig>;

/// A raft log entry of a shard group.
pub type Entry = openraft::type_config::alias::EntryOf<TypeConfig>;

/// The persisted vote of a replica (term, candidate, whether it is committed).
pub type Vote = openraft::type_config::alias::VoteOf<TypeConfig>;

/// What a snapshot covers: the last entry in it and the membership as of then.
pub type SnapshotMeta = openraft::type_config::alias::SnapshotMetaOf<TypeConfig>;

openraft::declare_raft_types!(
    /// The openraft type configuration: opaque byte commands, `u64` node ids, `host:port` nodes.
    /// (Snapshots are files: see [`crate::state_machine::SnapshotFile`].)
    pub TypeConfig:
        D = Command,
        R = Vec<u8>,
        NodeId = NodeId,
        Node = Node,
        AsyncRuntime = openraft_rt_tokio::TokioRuntime,
);

/// The openraft handle of a shard group replica whose state machine is `S`.
pub type Raft<S> = openraft::Raft<TypeConfig, crate::state_machine::StateMachineStore<S>>;

/// One command proposed to the group: opaque bytes interpreted only by the state machine.
///
/// Serialized as a byte string (not a sequence of integers), so CBOR carries it at its own size.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Command(pub Bytes);

impl fmt::Debug for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Command({} bytes)", self.0.len())
    }
}

impl fmt::Display for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} bytes", self.0.len())
    }
}

impl Serialize for Command {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_bytes(&self.0)
    }
}

impl<'de> Deserialize<'de> for Command {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct BytesVisitor;
        impl<'de> Visitor<'de> for BytesVisitor {
            type Value = Command;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a byte string")
            }
            fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Command, E> {
                Ok(Command(Bytes::copy_from_slice(v)))
            }
            fn visit_byte_buf<E: de::Error>(self, v: Vec<u8>) -> Result<Command, E> {
                Ok(Command(Bytes::from(v)))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Command, A::Error> {
                let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0));
                while let Some(b) = seq.next_element::<u8>()? {
                    out.push(b);
                }
                Ok(Command(Bytes::from(out)))
            }
        }
        // `byte_buf`, not `bytes`: ciborium reads `bytes` only up to its scratch buffer size.
        deserializer.deserialize_byte_buf(BytesVisitor)
    }
}

/// Builds a log id from its parts.
pub fn log_id(term: u64, node_id: NodeId, index: u64) -> LogId {
    openraft::LogId::new(
        openraft::impls::leader_id_adv::LeaderId { term, node_id },
        index,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_round_trips_through_cbor_as_a_byte_string() {
        let command = Command(Bytes::from_static(b"\x00\x01\xffhello"));
        let mut buf = Vec::new();
        ciborium::into_writer(&command, &mut buf).expect("encode");
        // 1 byte of CBOR header + the bytes themselves.
        assert_eq!(buf.len(), 1 + command.0.len());
        let back: Command = ciborium::from_reader(&buf[..]).expect("decode");
        assert_eq!(back, command);

        let large = Command(Bytes::from(
            (0..1_000_000u32).map(|i| i as u8).collect::<Vec<_>>(),
        ));
        let mut buf = Vec::new();
        ciborium::into_writer(&large, &mut buf).expect("encode");
        assert!(buf.len() < large.0.len() + 16);
        let back: Command = ciborium::from_reader(&buf[..]).expect("decode large");
        assert_eq!(back, large);
    }
}
