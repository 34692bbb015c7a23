//! The sending side: openraft's [`RaftNetworkFactory`] and [`RaftNetwork`], each peer client
//! over its own TCP connection (see [`frame`](super::frame)), opened at the first call and
//! again after any failure. Every call has a deadline (openraft's RPC TTL); a connection
//! attempt outlives the call that started it, so that calls with short deadlines do not each
//! start (and abandon) another name lookup and connect.

use std::time::Duration;

use openraft::error::{
    InstallSnapshotError, NetworkError, PayloadTooLarge, RPCError, RaftError, RemoteError,
    Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;

use crate::network::frame::{self, Kind, Status};
use crate::network::{Faults, decode, encode};
use crate::replica::MAX_BATCH_BYTES;
use crate::types::{Node, NodeId, TypeConfig};

/// How long a connection attempt to a peer (name lookup included) may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Creates one [`PeerClient`] per peer for openraft.
#[derive(Clone)]
pub struct NetworkFactory {
    from: NodeId,
    faults: Faults,
}

impl NetworkFactory {
    /// The factory of replica `from`, honouring `faults`.
    pub fn new(from: NodeId, faults: Faults) -> Self {
        NetworkFactory { from, faults }
    }
}

/// A client of one peer, with its own connection.
pub struct PeerClient {
    from: NodeId,
    target: NodeId,
    addr: String,
    connection: Option<TcpStream>,
    /// The connection attempt under way, if any.
    connecting: Option<JoinHandle<Result<TcpStream, String>>>,
    faults: Faults,
}

impl Drop for PeerClient {
    fn drop(&mut self) {
        if let Some(attempt) = &self.connecting {
            attempt.abort();
        }
    }
}

/// Looks `addr` up and connects to it.
async fn connect(addr: String, target: NodeId) -> Result<TcpStream, String> {
    let stream = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(&addr))
        .await
        .map_err(|_| format!("connecting to replica {target} at {addr} timed out"))?
        .map_err(|e| format!("replica {target} at {addr}: {e}"))?;
    // Requests are single writes; without this a reply can wait for a delayed ACK.
    stream
        .set_nodelay(true)
        .map_err(|e| format!("replica {target} at {addr}: {e}"))?;
    Ok(stream)
}

impl RaftNetworkFactory<TypeConfig> for NetworkFactory {
    type Network = PeerClient;

    async fn new_client(&mut self, target: NodeId, node: &Node) -> PeerClient {
        PeerClient {
            from: self.from,
            target,
            addr: node.addr.clone(),
            connection: None,
            connecting: None,
            faults: self.faults.clone(),
        }
    }
}

type RpcErr<E = openraft::error::Infallible> = RPCError<NodeId, Node, RaftError<NodeId, E>>;

fn network_err<E: std::error::Error>(msg: impl Into<String>) -> RPCError<NodeId, Node, E> {
    RPCError::Network(NetworkError::new(&std::io::Error::other(msg.into())))
}

/// Why a call got no answer from raft.
#[derive(Debug)]
enum CallError {
    /// Not sent or not answered: the peer is down or refuses for now; openraft backs off.
    Unreachable(String),
    /// Anything else (a deadline, the fault switch, a malformed reply).
    Failed(String),
}

impl CallError {
    fn into_rpc<E: std::error::Error>(self) -> RPCError<NodeId, Node, E> {
        match self {
            CallError::Unreachable(why) => {
                RPCError::Unreachable(Unreachable::new(&std::io::Error::other(why)))
            }
            CallError::Failed(why) => network_err(why),
        }
    }
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CallError::Unreachable(why) | CallError::Failed(why) => f.write_str(why),
        }
    }
}

impl PeerClient {
    /// Sends one request and returns raft's answer, within `timeout`. The connection is
    /// dropped after any failure, so a late reply is never taken for the next call's.
    async fn call(
        &mut self,
        kind: Kind,
        parts: &[&[u8]],
        timeout: Duration,
    ) -> Result<Vec<u8>, CallError> {
        if self.faults.is_blocked(self.target) {
            return Err(CallError::Failed(format!(
                "traffic to {} is blocked",
                self.target
            )));
        }
        let exchanged = tokio::time::timeout(timeout, self.exchange(kind, parts)).await;
        let reply = match exchanged {
            Ok(Ok(reply)) => reply,
            Ok(Err(e)) => {
                self.connection = None;
                tracing::debug!(target = self.target, error = %e, "raft RPC failed");
                return Err(e);
            }
            Err(_) => {
                self.connection = None;
                return Err(CallError::Failed(format!(
                    "replica {} at {} did not answer within {} ms",
                    self.target,
                    self.addr,
                    timeout.as_millis()
                )));
            }
        };
        match reply {
            (Status::Ok, body) => Ok(body),
            (Status::Unavailable, why) => Err(CallError::Unreachable(
                String::from_utf8_lossy(&why).into_owned(),
            )),
            (Status::Blocked | Status::Invalid, why) => Err(CallError::Failed(
                String::from_utf8_lossy(&why).into_owned(),
            )),
        }
    }

    async fn exchange(
        &mut self,
        kind: Kind,
        parts: &[&[u8]],
    ) -> Result<(Status, Vec<u8>), CallError> {
        let connection = match self.connection.take() {
            Some(connection) => connection,
            None => self.connect().await?,
        };
        let target = self.target;
        let unreachable =
            |e: std::io::Error| CallError::Unreachable(format!("replica {target}: {e}"));
        let connection = self.connection.insert(connection);
        frame::write_request(connection, kind, self.from, parts)
            .await
            .map_err(unreachable)?;
        frame::read_reply(connection).await.map_err(unreachable)
    }

    /// A new connection, from the attempt under way or a new one. If the caller's deadline
    /// passes meanwhile, the attempt goes on for the next call.
    async fn connect(&mut self) -> Result<TcpStream, CallError> {
        let (addr, target) = (self.addr.clone(), self.target);
        let attempt = self
            .connecting
            .get_or_insert_with(|| tokio::spawn(connect(addr, target)));
        let connected = attempt.await;
        self.connecting = None;
        connected
            .map_err(|e| CallError::Unreachable(format!("replica {target}: {e}")))?
            .map_err(CallError::Unreachable)
    }

    /// Decodes `Result<R, RaftError<E>>` from a reply. (The error type is openraft's.)
    #[allow(clippy::result_large_err)]
    fn reply<R, E>(&self, bytes: &[u8]) -> Result<R, RPCError<NodeId, Node, RaftError<NodeId, E>>>
    where
        R: serde::de::DeserializeOwned,
        E: std::error::Error + serde::de::DeserializeOwned,
    {
        let result: Result<R, RaftError<NodeId, E>> = decode(bytes).map_err(network_err)?;
        result.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }

    /// Whether the peer reports having a membership, and its current term.
    pub async fn probe(&mut self, timeout: Duration) -> Result<(bool, u64), String> {
        let reply = self
            .call(Kind::Probe, &[], timeout)
            .await
            .map_err(|e| e.to_string())?;
        decode(&reply)
    }
}

impl RaftNetwork<TypeConfig> for PeerClient {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RpcErr> {
        let entries = rpc.entries.len();
        let cbor = encode(&rpc).map_err(network_err)?;
        // Cut big batches (a follower catching up): openraft retries with fewer entries.
        let limit = MAX_BATCH_BYTES;
        if cbor.len() > limit && entries > 1 {
            let hint = (entries * limit / cbor.len()).clamp(1, entries - 1);
            return Err(RPCError::PayloadTooLarge(
                PayloadTooLarge::new_entries_hint(hint as u64),
            ));
        }
        let reply = self
            .call(Kind::AppendEntries, &[&cbor], option.hard_ttl())
            .await
            .map_err(CallError::into_rpc)?;
        self.reply(&reply)
    }

    async fn install_snapshot(
        &mut self,
        mut rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<InstallSnapshotResponse<NodeId>, RpcErr<InstallSnapshotError>> {
        let data = std::mem::take(&mut rpc.data);
        let cbor = encode(&rpc).map_err(network_err)?;
        let len = frame::snapshot_prefix(&cbor);
        let reply = self
            .call(
                Kind::InstallSnapshot,
                &[&len, &cbor, &data],
                option.hard_ttl(),
            )
            .await
            .map_err(CallError::into_rpc)?;
        self.reply(&reply)
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RpcErr> {
        let cbor = encode(&rpc).map_err(network_err)?;
        let reply = self
            .call(Kind::Vote, &[&cbor], option.hard_ttl())
            .await
            .map_err(CallError::into_rpc)?;
        self.reply(&reply)
    }

    fn backoff(&self) -> openraft::network::Backoff {
        openraft::network::Backoff::new(std::iter::repeat(Duration::from_millis(200)))
    }
}
