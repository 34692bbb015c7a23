//! The sending side: openraft's [`RaftNetworkFactory`] and [`RaftNetwork`], each peer client
//! over its own TCP connection (see [`frame`](super::frame)), opened at the first call and
//! again after any failure. Every call has a deadline (openraft's RPC TTL); a connection
//! attempt outlives the call that started it, so that calls with short deadlines do not each
//! start (and abandon) another name lookup and connect.
//!
//! openraft 0.9 keeps one request in flight per follower, and after every commit it sends an
//! AppendEntries carrying only the new commit index; the next entries wait for its answer. On a
//! connection whose peer has accepted the last AppendEntries, such a commit-only request is
//! written and answered `Success` at once; the next call reads and drops its answer before its
//! own. That answer tells the leader nothing it needs: the request matches what the follower
//! already accepted, a newer term shows up in the next answer read, and the commit index is
//! advisory (a follower applies up to what it holds). Health checks and heartbeats without a
//! new commit, and every call on a new connection (openraft's leadership checks for
//! linearizable reads open their own clients), wait for the peer.

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
use crate::types::{LogId, Node, NodeId, TypeConfig};

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
    connection: Option<Connection>,
    /// The connection attempt under way, if any.
    connecting: Option<JoinHandle<Result<TcpStream, String>>>,
    faults: Faults,
}

/// An open connection to the peer.
struct Connection {
    stream: TcpStream,
    /// Requests sent without waiting for their replies (see [`PeerClient::append_entries`]);
    /// the next call reads and drops those replies before its own.
    unanswered: usize,
    /// The peer accepted the last AppendEntries answered on this connection.
    accepting: bool,
    /// The highest commit index sent on this connection.
    commit_sent: Option<LogId>,
}

/// Most commit-only AppendEntries left unanswered on a connection before one is waited for.
const MAX_UNANSWERED: usize = 32;

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
    /// Fails if the fault switch blocks traffic to the peer.
    fn check_not_blocked(&self) -> Result<(), CallError> {
        if self.faults.is_blocked(self.target) {
            return Err(CallError::Failed(format!(
                "traffic to {} is blocked",
                self.target
            )));
        }
        Ok(())
    }

    /// Sends one request and returns raft's answer, within `timeout`. The connection is
    /// dropped after any failure, so a late reply is never taken for the next call's.
    async fn call(
        &mut self,
        kind: Kind,
        parts: &[&[u8]],
        timeout: Duration,
    ) -> Result<Vec<u8>, CallError> {
        self.check_not_blocked()?;
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
            None => Connection {
                stream: self.connect().await?,
                unanswered: 0,
                accepting: false,
                commit_sent: None,
            },
        };
        let target = self.target;
        let unreachable =
            |e: std::io::Error| CallError::Unreachable(format!("replica {target}: {e}"));
        let connection = self.connection.insert(connection);
        frame::write_request(&mut connection.stream, kind, self.from, parts)
            .await
            .map_err(unreachable)?;
        while connection.unanswered > 0 {
            frame::read_reply(&mut connection.stream)
                .await
                .map_err(unreachable)?;
            connection.unanswered -= 1;
        }
        frame::read_reply(&mut connection.stream)
            .await
            .map_err(unreachable)
    }

    /// Sends a commit-only AppendEntries (`cbor`, carrying `commit`) without waiting for its
    /// reply, within `timeout`, if this connection's peer has been accepting and `commit` is new
    /// on it (see the module docs); the next call reads and drops the reply. `false` if the
    /// request must be a call instead.
    async fn send_commit_unanswered(
        &mut self,
        commit: Option<LogId>,
        cbor: &[u8],
        timeout: Duration,
    ) -> Result<bool, CallError> {
        // A blocked peer fails here as the call would.
        self.check_not_blocked()?;
        let Some(connection) = self
            .connection
            .as_mut()
            .filter(|c| c.accepting && c.unanswered < MAX_UNANSWERED && commit > c.commit_sent)
        else {
            return Ok(false);
        };
        connection.commit_sent = commit;
        let written = tokio::time::timeout(
            timeout,
            frame::write_request(
                &mut connection.stream,
                Kind::AppendEntries,
                self.from,
                &[cbor],
            ),
        )
        .await;
        match written {
            Ok(Ok(())) => {
                connection.unanswered += 1;
                Ok(true)
            }
            Ok(Err(e)) => {
                self.connection = None;
                Err(CallError::Unreachable(format!(
                    "replica {}: {e}",
                    self.target
                )))
            }
            Err(_) => {
                self.connection = None;
                Err(CallError::Failed(format!(
                    "replica {} at {} did not take a request within {} ms",
                    self.target,
                    self.addr,
                    timeout.as_millis()
                )))
            }
        }
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
        if entries == 0
            && self
                .send_commit_unanswered(rpc.leader_commit, &cbor, option.hard_ttl())
                .await
                .map_err(CallError::into_rpc)?
        {
            return Ok(AppendEntriesResponse::Success);
        }
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
        let response: AppendEntriesResponse<NodeId> = self.reply(&reply)?;
        if let Some(connection) = self.connection.as_mut() {
            connection.accepting = matches!(response, AppendEntriesResponse::Success);
            connection.commit_sent = connection.commit_sent.max(rpc.leader_commit);
        }
        Ok(response)
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

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use openraft::{EntryPayload, Vote};
    use tokio::net::TcpListener;
    use tokio::sync::mpsc;

    use super::*;
    use crate::network::frame::Request;
    use crate::types::{Command, Entry, log_id};

    fn request(commit: u64, entries: Vec<Entry>) -> AppendEntriesRequest<TypeConfig> {
        AppendEntriesRequest {
            vote: Vote::new_committed(1, 1),
            prev_log_id: Some(log_id(1, 1, 5)),
            entries,
            leader_commit: Some(log_id(1, 1, commit)),
        }
    }

    fn option() -> RPCOption {
        RPCOption::new(Duration::from_secs(5))
    }

    /// The peer's answer to an AppendEntries, as its server encodes it.
    fn answer(response: AppendEntriesResponse<NodeId>) -> Vec<u8> {
        let result: Result<_, RaftError<NodeId>> = Ok(response);
        encode(&result).expect("encode")
    }

    /// A scripted peer: hands each request it reads to the test, and writes each reply the
    /// test gives it, in order, on the one connection it accepts.
    async fn peer() -> (
        String,
        mpsc::UnboundedReceiver<Request>,
        mpsc::UnboundedSender<Vec<u8>>,
    ) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr").to_string();
        let (requests_tx, requests) = mpsc::unbounded_channel();
        let (replies, mut replies_rx) = mpsc::unbounded_channel::<Vec<u8>>();
        tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.expect("accept");
            let (mut reader, mut writer) = stream.split();
            let reading = async {
                while let Ok(Some(request)) = frame::read_request(&mut reader).await {
                    if requests_tx.send(request).is_err() {
                        break;
                    }
                }
            };
            let writing = async {
                while let Some(reply) = replies_rx.recv().await {
                    if frame::write_reply(&mut writer, Status::Ok, &reply)
                        .await
                        .is_err()
                    {
                        break;
                    }
                }
            };
            tokio::join!(reading, writing);
        });
        (addr, requests, replies)
    }

    fn commit_of(request: &Request) -> Option<LogId> {
        let rpc: AppendEntriesRequest<TypeConfig> = decode(&request.body).expect("decode");
        rpc.leader_commit
    }

    /// A commit-only AppendEntries on a connection whose peer has been accepting is sent
    /// without waiting for its answer; that answer is read and dropped before the next call's,
    /// which gets its own. Anything else waits for the peer.
    #[tokio::test]
    async fn only_a_new_commit_to_an_accepting_peer_goes_unanswered() {
        let (addr, mut requests, replies) = peer().await;
        let mut client = NetworkFactory::new(1, Faults::default())
            .new_client(2, &Node::new(addr))
            .await;
        let higher = || AppendEntriesResponse::HigherVote(Vote::new(9, 3));

        // The first call on a connection waits for the peer, even with a new commit.
        let call = client.append_entries(request(5, vec![]), option());
        let (response, _) = tokio::join!(call, async {
            requests.recv().await.expect("first request");
            replies.send(answer(higher())).expect("reply");
        });
        assert_eq!(response.expect("first"), higher());

        // The peer refused: a new commit is still waited for, and now accepted.
        let call = client.append_entries(request(6, vec![]), option());
        let (response, _) = tokio::join!(call, async {
            requests.recv().await.expect("second request");
            replies
                .send(answer(AppendEntriesResponse::Success))
                .expect("reply");
        });
        assert_eq!(response.expect("second"), AppendEntriesResponse::Success);

        // Accepting: a new commit returns before the peer has even read it.
        let response = client.append_entries(request(7, vec![]), option()).await;
        assert_eq!(response.expect("third"), AppendEntriesResponse::Success);
        let unanswered = requests.recv().await.expect("third request");
        assert_eq!(commit_of(&unanswered), Some(log_id(1, 1, 7)));

        // The next call drops that late answer and returns its own.
        let entry = Entry {
            log_id: log_id(1, 1, 6),
            payload: EntryPayload::Normal(Command(Bytes::from_static(b"record"))),
        };
        replies.send(answer(higher())).expect("late reply");
        let call = client.append_entries(request(7, vec![entry]), option());
        let (response, _) = tokio::join!(call, async {
            let request = requests.recv().await.expect("fourth request");
            assert_eq!(commit_of(&request), Some(log_id(1, 1, 7)));
            replies
                .send(answer(AppendEntriesResponse::Conflict))
                .expect("reply");
        });
        assert_eq!(response.expect("fourth"), AppendEntriesResponse::Conflict);

        // A heartbeat without a new commit is waited for.
        let call = client.append_entries(request(7, vec![]), option());
        let (response, _) = tokio::join!(call, async {
            requests.recv().await.expect("fifth request");
            replies.send(answer(higher())).expect("reply");
        });
        assert_eq!(response.expect("fifth"), higher());
    }
}
