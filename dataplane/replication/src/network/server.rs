//! The receiving side: the `RaftService` gRPC server feeding the local raft.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use openraft::raft::{AppendEntriesRequest, InstallSnapshotRequest, VoteRequest};
use tonic::{Request, Response, Status};

use crate::network::proto::raft_service_server::RaftService;
use crate::network::proto::{ProbeReply, ProbeRequest, RaftMessage, SnapshotChunk};
use crate::network::{FROM_HEADER, Faults, decode, encode};
use crate::types::{NodeId, Raft, TypeConfig};

/// Serves raft RPCs from peers to one local replica.
#[derive(Clone)]
pub struct RaftServer {
    raft: Raft,
    faults: Faults,
    vote_floor: VoteFloor,
}

/// Terms in which the local replica must not vote: a replica that lost its volume also lost
/// the votes it cast, and voting again in one of those terms could elect two leaders in it.
/// Vote requests for a term at or below the floor are refused. [`VoteFloor::CLOSED`] refuses
/// every vote (while the floor is being found); 0 refuses none.
#[derive(Clone, Debug)]
pub struct VoteFloor(Arc<AtomicU64>);

impl VoteFloor {
    /// Refuses every vote (no term is above it).
    pub const CLOSED: u64 = u64::MAX;

    /// A floor at `term`.
    pub fn new(term: u64) -> Self {
        VoteFloor(Arc::new(AtomicU64::new(term)))
    }

    /// Moves the floor to `term`.
    pub fn set(&self, term: u64) {
        self.0.store(term, Ordering::SeqCst);
    }

    /// Whether a vote in `term` may be cast.
    pub fn allows(&self, term: u64) -> bool {
        term > self.0.load(Ordering::SeqCst)
    }
}

impl RaftServer {
    /// The server of `raft`, dropping calls from peers blocked in `faults` and refusing votes
    /// below `vote_floor`.
    pub fn new(raft: Raft, faults: Faults, vote_floor: VoteFloor) -> Self {
        RaftServer {
            raft,
            faults,
            vote_floor,
        }
    }

    fn admit<T>(&self, request: &Request<T>) -> Result<(), Status> {
        let from: Option<NodeId> = request
            .metadata()
            .get(FROM_HEADER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok());
        match from {
            Some(from) if self.faults.is_blocked(from) => Err(Status::unavailable(format!(
                "traffic from {from} is blocked"
            ))),
            _ => Ok(()),
        }
    }
}

fn reply<T: serde::Serialize>(result: &T) -> Result<Response<RaftMessage>, Status> {
    let cbor = encode(result).map_err(Status::internal)?;
    Ok(Response::new(RaftMessage { cbor: cbor.into() }))
}

#[tonic::async_trait]
impl RaftService for RaftServer {
    async fn append_entries(
        &self,
        request: Request<RaftMessage>,
    ) -> Result<Response<RaftMessage>, Status> {
        self.admit(&request)?;
        let rpc: AppendEntriesRequest<TypeConfig> =
            decode(&request.into_inner().cbor).map_err(Status::invalid_argument)?;
        reply(&self.raft.append_entries(rpc).await)
    }

    async fn vote(&self, request: Request<RaftMessage>) -> Result<Response<RaftMessage>, Status> {
        self.admit(&request)?;
        let rpc: VoteRequest<NodeId> =
            decode(&request.into_inner().cbor).map_err(Status::invalid_argument)?;
        let term = rpc.vote.leader_id().term;
        if !self.vote_floor.allows(term) {
            return Err(Status::unavailable(format!(
                "this replica lost its volume and does not vote in term {term}, in which it may \
                 already have voted"
            )));
        }
        reply(&self.raft.vote(rpc).await)
    }

    async fn install_snapshot(
        &self,
        request: Request<SnapshotChunk>,
    ) -> Result<Response<RaftMessage>, Status> {
        self.admit(&request)?;
        let chunk = request.into_inner();
        let mut rpc: InstallSnapshotRequest<TypeConfig> =
            decode(&chunk.cbor).map_err(Status::invalid_argument)?;
        rpc.data = chunk.data.to_vec();
        reply(&self.raft.install_snapshot(rpc).await)
    }

    async fn probe(&self, request: Request<ProbeRequest>) -> Result<Response<ProbeReply>, Status> {
        self.admit(&request)?;
        let initialized = self
            .raft
            .is_initialized()
            .await
            .map_err(|e| Status::unavailable(e.to_string()))?;
        let term = self.raft.metrics().borrow().current_term;
        Ok(Response::new(ProbeReply { initialized, term }))
    }
}
