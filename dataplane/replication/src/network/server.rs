//! The receiving side: serves raft requests from peers to the local raft, one connection per
//! peer client, each answered in order.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use openraft::raft::{AppendEntriesRequest, InstallSnapshotRequest, VoteRequest};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use crate::network::frame::{self, Kind, Request, Status};
use crate::network::{Faults, decode, encode};
use crate::types::{NodeId, Raft, TypeConfig};

/// Serves raft requests from peers to one local replica.
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
    /// The server of `raft`, dropping requests from peers blocked in `faults` and refusing
    /// votes below `vote_floor`.
    pub fn new(raft: Raft, faults: Faults, vote_floor: VoteFloor) -> Self {
        RaftServer {
            raft,
            faults,
            vote_floor,
        }
    }

    /// Accepts connections on `listener` until `stop` turns true.
    pub async fn serve(self, listener: TcpListener, mut stop: watch::Receiver<bool>) {
        loop {
            let accepted = tokio::select! {
                accepted = listener.accept() => accepted,
                _ = stop.wait_for(|s| *s) => return,
            };
            match accepted {
                Ok((connection, _)) => {
                    tokio::spawn(self.clone().serve_connection(connection, stop.clone()));
                }
                Err(e) => {
                    // E.g. out of file descriptors: keep serving the open connections.
                    tracing::warn!(error = %e, "cannot accept a replication connection");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
            }
        }
    }

    /// Answers the requests of one connection in order until it closes or `stop`.
    async fn serve_connection(self, mut connection: TcpStream, mut stop: watch::Receiver<bool>) {
        // Replies are single writes; without this one can wait for the peer's delayed ACK.
        if let Err(e) = connection.set_nodelay(true) {
            tracing::debug!(error = %e, "cannot set TCP_NODELAY on a replication connection");
        }
        loop {
            let request = tokio::select! {
                request = frame::read_request(&mut connection) => request,
                _ = stop.wait_for(|s| *s) => return,
            };
            let request = match request {
                Ok(Some(request)) => request,
                Ok(None) => return,
                Err(e) => {
                    tracing::debug!(error = %e, "dropping a replication connection");
                    return;
                }
            };
            let (status, body) = self.answer(request).await;
            if let Err(e) = frame::write_reply(&mut connection, status, &body).await {
                tracing::debug!(error = %e, "cannot reply on a replication connection");
                return;
            }
        }
    }

    async fn answer(&self, request: Request) -> (Status, Vec<u8>) {
        if self.faults.is_blocked(request.from) {
            let why = format!("traffic from {} is blocked", request.from);
            return (Status::Blocked, why.into_bytes());
        }
        let rpc = match RaftRequest::decode(&request) {
            Ok(rpc) => rpc,
            Err(why) => return (Status::Invalid, why.into_bytes()),
        };
        match rpc {
            RaftRequest::AppendEntries(rpc) => reply(&self.raft.append_entries(rpc).await),
            RaftRequest::Vote(rpc) => {
                let term = rpc.vote.leader_id().term;
                if !self.vote_floor.allows(term) {
                    let why = format!(
                        "this replica lost its volume and does not vote in term {term}, in \
                         which it may already have voted"
                    );
                    return (Status::Unavailable, why.into_bytes());
                }
                reply(&self.raft.vote(rpc).await)
            }
            RaftRequest::InstallSnapshot(rpc) => reply(&self.raft.install_snapshot(rpc).await),
            RaftRequest::Probe => match self.raft.is_initialized().await {
                Ok(initialized) => {
                    let term = self.raft.metrics().borrow().current_term;
                    reply(&(initialized, term))
                }
                Err(e) => (Status::Unavailable, e.to_string().into_bytes()),
            },
        }
    }
}

/// A request's body decoded for raft.
pub(crate) enum RaftRequest {
    AppendEntries(AppendEntriesRequest<TypeConfig>),
    Vote(VoteRequest<NodeId>),
    InstallSnapshot(InstallSnapshotRequest<TypeConfig>),
    Probe,
}

impl RaftRequest {
    /// Decodes `request`'s body as its kind says, or says what is wrong with it.
    pub(crate) fn decode(request: &Request) -> Result<RaftRequest, String> {
        Ok(match request.kind {
            Some(Kind::AppendEntries) => RaftRequest::AppendEntries(decode(&request.body)?),
            Some(Kind::Vote) => RaftRequest::Vote(decode(&request.body)?),
            Some(Kind::InstallSnapshot) => {
                let (cbor, data) = frame::split_snapshot(&request.body)
                    .ok_or("a snapshot chunk shorter than its header")?;
                let mut rpc: InstallSnapshotRequest<TypeConfig> = decode(cbor)?;
                rpc.data = data.to_vec();
                RaftRequest::InstallSnapshot(rpc)
            }
            Some(Kind::Probe) => RaftRequest::Probe,
            None => return Err("a request of unknown kind".into()),
        })
    }
}

fn reply<T: serde::Serialize>(result: &T) -> (Status, Vec<u8>) {
    match encode(result) {
        Ok(cbor) => (Status::Ok, cbor),
        Err(e) => (Status::Invalid, e.into_bytes()),
    }
}
