//! The sending side: openraft's [`RaftNetworkFactory`] and [`RaftNetwork`] over tonic.

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
use tonic::transport::{Channel, Endpoint};

use crate::network::proto::raft_service_client::RaftServiceClient;
use crate::network::proto::{ProbeRequest, RaftMessage, SnapshotChunk};
use crate::network::{FROM_HEADER, Faults, decode, encode};
use crate::replica::MAX_BATCH_BYTES;
use crate::types::{Node, NodeId, TypeConfig};

/// How long a connection attempt to a peer may take.
const CONNECT_TIMEOUT: Duration = Duration::from_millis(500);
/// Largest message accepted: a batch of entries or a snapshot chunk, with room to spare.
pub(crate) const MAX_MESSAGE_BYTES: usize = 64 << 20;

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

/// A lazily connected gRPC channel to one peer.
pub struct PeerClient {
    from: NodeId,
    target: NodeId,
    client: Result<RaftServiceClient<Channel>, String>,
    faults: Faults,
}

/// Opens a lazily connected channel to `addr` (`host:port`).
pub(crate) fn channel(addr: &str) -> Result<Channel, String> {
    let endpoint = Endpoint::from_shared(format!("http://{addr}"))
        .map_err(|e| format!("bad peer address {addr}: {e}"))?
        .connect_timeout(CONNECT_TIMEOUT)
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(5))
        .keep_alive_timeout(Duration::from_secs(5));
    Ok(endpoint.connect_lazy())
}

impl RaftNetworkFactory<TypeConfig> for NetworkFactory {
    type Network = PeerClient;

    async fn new_client(&mut self, target: NodeId, node: &Node) -> PeerClient {
        PeerClient {
            from: self.from,
            target,
            client: channel(&node.addr).map(|c| {
                RaftServiceClient::new(c)
                    .max_decoding_message_size(MAX_MESSAGE_BYTES)
                    .max_encoding_message_size(MAX_MESSAGE_BYTES)
            }),
            faults: self.faults.clone(),
        }
    }
}

type RpcErr<E = openraft::error::Infallible> = RPCError<NodeId, Node, RaftError<NodeId, E>>;

fn network_err<E: std::error::Error>(msg: impl Into<String>) -> RPCError<NodeId, Node, E> {
    RPCError::Network(NetworkError::new(&std::io::Error::other(msg.into())))
}

impl PeerClient {
    fn request<T>(&self, body: T, option: &RPCOption) -> Result<tonic::Request<T>, String> {
        if self.faults.is_blocked(self.target) {
            return Err(format!("traffic to {} is blocked", self.target));
        }
        let mut request = tonic::Request::new(body);
        request.set_timeout(option.hard_ttl());
        let from = self
            .from
            .to_string()
            .parse()
            .map_err(|e| format!("bad node id header: {e}"))?;
        request.metadata_mut().insert(FROM_HEADER, from);
        Ok(request)
    }

    fn client(&self) -> Result<RaftServiceClient<Channel>, String> {
        self.client.clone()
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
    pub async fn probe(&self, timeout: Duration) -> Result<(bool, u64), String> {
        let mut client = self.client()?;
        let mut request = self.request(ProbeRequest {}, &RPCOption::new(timeout))?;
        request.set_timeout(timeout);
        let reply = client.probe(request).await.map_err(|s| s.to_string())?;
        let reply = reply.into_inner();
        Ok((reply.initialized, reply.term))
    }
}

fn status_err<E: std::error::Error>(
    target: NodeId,
    status: tonic::Status,
) -> RPCError<NodeId, Node, E> {
    if status.code() == tonic::Code::Unavailable && status.message().contains("blocked") {
        return network_err(status.message().to_string());
    }
    tracing::debug!(target, %status, "raft RPC failed");
    if status.code() == tonic::Code::Unavailable {
        // Connection refused or reset: the peer is down; openraft backs off.
        return RPCError::Unreachable(Unreachable::new(&std::io::Error::other(
            status.message().to_string(),
        )));
    }
    network_err(status.to_string())
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
        let request = self
            .request(RaftMessage { cbor: cbor.into() }, &option)
            .map_err(network_err)?;
        let mut client = self.client().map_err(network_err)?;
        let reply = client
            .append_entries(request)
            .await
            .map_err(|s| status_err(self.target, s))?;
        self.reply(&reply.into_inner().cbor)
    }

    async fn install_snapshot(
        &mut self,
        mut rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<InstallSnapshotResponse<NodeId>, RpcErr<InstallSnapshotError>> {
        let data = std::mem::take(&mut rpc.data);
        let cbor = encode(&rpc).map_err(network_err)?;
        let request = self
            .request(
                SnapshotChunk {
                    cbor: cbor.into(),
                    data: data.into(),
                },
                &option,
            )
            .map_err(network_err)?;
        let mut client = self.client().map_err(network_err)?;
        let reply = client
            .install_snapshot(request)
            .await
            .map_err(|s| status_err(self.target, s))?;
        self.reply(&reply.into_inner().cbor)
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RpcErr> {
        let cbor = encode(&rpc).map_err(network_err)?;
        let request = self
            .request(RaftMessage { cbor: cbor.into() }, &option)
            .map_err(network_err)?;
        let mut client = self.client().map_err(network_err)?;
        let reply = client
            .vote(request)
            .await
            .map_err(|s| status_err(self.target, s))?;
        self.reply(&reply.into_inner().cbor)
    }

    fn backoff(&self) -> openraft::network::Backoff {
        openraft::network::Backoff::new(std::iter::repeat(Duration::from_millis(200)))
    }
}
