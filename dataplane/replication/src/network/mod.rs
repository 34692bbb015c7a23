//! Raft traffic between the replicas of a shard group, over TCP.
//!
//! openraft messages travel as CBOR in length-prefixed frames ([`frame`]; snapshot chunk data
//! raw, after its CBOR header). [`client::NetworkFactory`] gives openraft one client per peer,
//! each with its own connection, opened lazily and again after a failure; every call has a
//! deadline (openraft's RPC TTL). [`server::RaftServer`] feeds incoming requests to the local
//! [`Raft`](crate::types::Raft).
//!
//! [`Faults`] is a fault-injection switch for tests: traffic to and from blocked peers is dropped
//! at both ends, which partitions a replica without touching the host network.

pub mod client;
mod frame;
pub mod server;

use std::collections::BTreeSet;
use std::sync::{Arc, PoisonError, RwLock};

use crate::types::NodeId;

/// Peers whose replication traffic is dropped (fault injection for tests; empty in production).
#[derive(Debug, Clone, Default)]
pub struct Faults {
    blocked: Arc<RwLock<BTreeSet<NodeId>>>,
}

impl Faults {
    /// Drops all traffic to and from `peers` from now on (replacing the previous set).
    pub fn block(&self, peers: impl IntoIterator<Item = NodeId>) {
        *self.blocked.write().unwrap_or_else(PoisonError::into_inner) = peers.into_iter().collect();
    }

    /// Whether traffic with `peer` is dropped.
    pub fn is_blocked(&self, peer: NodeId) -> bool {
        self.blocked
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .contains(&peer)
    }
}

/// Reads `bytes` as the replication server reads a request and decodes its body, then as a
/// client reads a reply to an AppendEntries, and reports what was wrong with each: the decoders
/// peers' bytes meet, for the fuzz targets.
#[doc(hidden)]
pub fn decode_untrusted(bytes: &[u8]) -> (Result<(), String>, Result<(), String>) {
    use openraft::raft::AppendEntriesResponse;
    use std::future::Future;

    /// Runs a future that never waits: reading from a byte slice completes at once.
    fn now<F: Future>(future: F) -> F::Output {
        let mut future = std::pin::pin!(future);
        let mut context = std::task::Context::from_waker(std::task::Waker::noop());
        loop {
            if let std::task::Poll::Ready(output) = future.as_mut().poll(&mut context) {
                return output;
            }
        }
    }

    let request = (|| {
        let request = now(frame::read_request(&mut &bytes[..]))
            .map_err(|e| e.to_string())?
            .ok_or("no request")?;
        server::RaftRequest::decode(&request).map(drop)
    })();
    let reply = (|| {
        let (_, body) = now(frame::read_reply(&mut &bytes[..])).map_err(|e| e.to_string())?;
        type Answer = Result<
            AppendEntriesResponse<crate::types::TypeConfig>,
            openraft::error::RaftError<crate::types::TypeConfig>,
        >;
        decode::<Answer>(&body).map(drop)
    })();
    (request, reply)
}

/// The CBOR header of one piece of a snapshot sent to a follower (`Kind::InstallSnapshot`);
/// the piece's bytes follow it raw (see [`frame::snapshot_prefix`]).
///
/// The follower answers each piece with `Result<Option<SnapshotResponse>, String>`: `Ok(None)`
/// when it stored the piece and waits for the next, `Ok(Some(response))` when it is done with
/// the snapshot (installed after the last piece, or refused at any piece because it has seen a
/// newer vote, which `response.vote` then carries), `Err(why)` when the piece could not be
/// taken (out of order, or a disk error); the sender then starts again from offset 0.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub(crate) struct SnapshotPiece {
    /// The sender's vote.
    pub vote: crate::types::Vote,
    /// What the snapshot covers.
    pub meta: crate::types::SnapshotMeta,
    /// Where in the snapshot file these bytes begin; 0 starts a new transfer.
    pub offset: u64,
    /// Whether this is the last piece: the follower installs the snapshot on receiving it.
    pub done: bool,
}

/// A follower's answer to one [`SnapshotPiece`].
pub(crate) type SnapshotPieceReply =
    Result<Option<openraft::raft::SnapshotResponse<crate::types::TypeConfig>>, String>;

pub(crate) fn encode<T: serde::Serialize>(value: &T) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    ciborium::into_writer(value, &mut out).map_err(|e| e.to_string())?;
    Ok(out)
}

pub(crate) fn decode<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, String> {
    ciborium::from_reader(bytes).map_err(|e| e.to_string())
}
