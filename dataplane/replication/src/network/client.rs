//! The sending side: openraft's [`RaftNetworkFactory`] and [`RaftNetworkV2`], each peer client
//! over its own TCP connection (see [`frame`](super::frame)), opened at the first call and
//! again after any failure. A connection attempt outlives the call that started it, so that
//! calls with short deadlines do not each start (and abandon) another name lookup and connect.
//!
//! Replication is pipelined: [`PeerClient`]'s `stream_append` writes each AppendEntries as
//! openraft produces it, without waiting for the answers to the ones before it (up to
//! [`MAX_IN_FLIGHT`] requests and about [`MAX_IN_FLIGHT_BYTES`]), and reads the answers in order
//! on the same connection: the peer answers a connection's requests one after another, so the
//! n-th reply is the n-th request's. Every answer passed to openraft is the peer's own; none is
//! assumed. Each reply must arrive within openraft's RPC TTL of its request being written or
//! of the reply before it, whichever is later. The stream ends at the first failure or
//! refusal; a connection left with requests unanswered, or after any failure or refusal, is
//! closed, so that a late reply is never read as another request's.
//! A request larger than [`MAX_BATCH_BYTES`] is sent with only its leading entries and ends
//! the stream; its acceptance is reported as a partial success, and openraft sends the rest
//! in the next stream.
//!
//! Other calls (votes, probes, snapshot pieces) send one request and wait for its reply, within
//! the TTL. A snapshot travels as a sequence of pieces (`SnapshotPiece`) read from its file.

use std::collections::VecDeque;
use std::future::Future;
use std::io;
use std::os::unix::fs::FileExt;
use std::sync::Arc;
use std::time::Duration;

use futures::{Stream, StreamExt};
use openraft::base::{BoxFuture, BoxStream};
use openraft::error::{
    NetworkError, RPCError, RaftError, ReplicationClosed, StreamingError, Unreachable,
};
use openraft::network::{Backoff, RPCOption, RaftNetworkFactory, RaftNetworkV2};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, StreamAppendError,
    StreamAppendResult, VoteRequest, VoteResponse,
};
use openraft::type_config::alias::SnapshotOf;
use openraft::{ErrorSubject, ErrorVerb, OptionalSend, StorageError};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::network::frame::{self, Kind, Status};
use crate::network::{Faults, SnapshotPiece, SnapshotPieceReply, decode, encode};
use crate::replica::MAX_BATCH_BYTES;
use crate::state_machine::SnapshotFile;
use crate::types::{LogId, Node, NodeId, TypeConfig, Vote};

/// How long a connection attempt to a peer (name lookup included) may take. A peer's pod
/// answers a connection within milliseconds; a name still resolving to the address of a pod
/// that is gone gets no answer at all, and the calls behind the attempt wait for it, so it is
/// given up on soon and the next call looks the name up again.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// Most AppendEntries written to a peer and not yet answered.
pub const MAX_IN_FLIGHT: usize = 64;

/// No further AppendEntries is written to a peer while this many bytes of them are unanswered:
/// one full batch can be on the wire while the peer stores another. (Each reply is due within
/// the RPC TTL of its request's writing, queueing at the peer included.)
pub const MAX_IN_FLIGHT_BYTES: usize = 2 * MAX_BATCH_BYTES;

/// Size of a snapshot piece when openraft does not say.
const DEFAULT_SNAPSHOT_PIECE_BYTES: usize = 1 << 20;

/// Largest snapshot piece sent, whatever openraft asks: well inside a frame.
const MAX_SNAPSHOT_PIECE_BYTES: usize = frame::MAX_MESSAGE_BYTES / 2;

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
    /// The open connection, when no call is using it. A call takes it and puts it back only
    /// when it has read every reply it asked for; a call abandoned half-way leaves none.
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

/// Why a call got no answer from raft.
#[derive(Debug)]
enum CallError {
    /// Not sent or not answered: the peer is down, refuses for now, or has failed; openraft
    /// backs off.
    Unreachable(String),
    /// Anything else (a deadline, the fault switch, a malformed reply).
    Failed(String),
}

impl CallError {
    fn into_rpc(self) -> RPCError<TypeConfig> {
        match self {
            CallError::Unreachable(why) => {
                RPCError::Unreachable(Unreachable::new(&io::Error::other(why)))
            }
            CallError::Failed(why) => RPCError::Network(NetworkError::new(&io::Error::other(why))),
        }
    }

    fn into_streaming(self) -> StreamingError<TypeConfig> {
        match self {
            CallError::Unreachable(why) => {
                StreamingError::Unreachable(Unreachable::new(&io::Error::other(why)))
            }
            CallError::Failed(why) => {
                StreamingError::Network(NetworkError::new(&io::Error::other(why)))
            }
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

/// A reply as read: its status and body.
type Reply = (Status, Vec<u8>);

/// The body of a reply that raft answered; the reason of any other.
fn answered((status, body): Reply) -> Result<Vec<u8>, CallError> {
    let why = || String::from_utf8_lossy(&body).into_owned();
    match status {
        Status::Ok => Ok(body),
        Status::Unavailable => Err(CallError::Unreachable(why())),
        Status::Blocked | Status::Invalid => Err(CallError::Failed(why())),
    }
}

/// Decodes raft's `Result<R, RaftError>` from the body of a reply. A remote fatal error makes
/// the peer unreachable, as openraft itself treats it.
fn raft_answer<R: serde::de::DeserializeOwned>(
    target: NodeId,
    body: &[u8],
) -> Result<R, CallError> {
    let result: Result<R, RaftError<TypeConfig>> = decode(body)
        .map_err(|e| CallError::Failed(format!("replica {target} sent a malformed reply: {e}")))?;
    result.map_err(|e| CallError::Unreachable(format!("replica {target}: {e}")))
}

/// The last log id an AppendEntries carries: its last entry's, or `prev_log_id` if it has none.
fn last_log_id(rpc: &AppendEntriesRequest<TypeConfig>) -> Option<LogId> {
    rpc.entries
        .last()
        .map(|entry| entry.log_id)
        .or(rpc.prev_log_id)
}

/// Encodes `rpc`, first leaving out trailing entries (keeping at least one) while it is larger
/// than [`MAX_BATCH_BYTES`]; a follower catching up gets the rest in the next request.
/// Returns the encoding and whether entries were left out.
fn encode_batch(rpc: &mut AppendEntriesRequest<TypeConfig>) -> Result<(Vec<u8>, bool), CallError> {
    let encode = |rpc: &AppendEntriesRequest<TypeConfig>| encode(rpc).map_err(CallError::Failed);
    let mut cbor = encode(rpc)?;
    let mut cut = false;
    while cbor.len() > MAX_BATCH_BYTES && rpc.entries.len() > 1 {
        let entries = rpc.entries.len();
        let keep = (entries * MAX_BATCH_BYTES / cbor.len()).clamp(1, entries - 1);
        rpc.entries.truncate(keep);
        cut = true;
        cbor = encode(rpc)?;
    }
    Ok((cbor, cut))
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

    /// The error of a peer that did not answer within `timeout`.
    fn too_late(&self, timeout: Duration) -> CallError {
        CallError::Failed(format!(
            "replica {} at {} did not answer within {} ms",
            self.target,
            self.addr,
            timeout.as_millis()
        ))
    }

    /// Sends one request and returns raft's answer, within `timeout`.
    async fn call(
        &mut self,
        kind: Kind,
        parts: &[&[u8]],
        timeout: Duration,
    ) -> Result<Vec<u8>, CallError> {
        self.check_not_blocked()?;
        let reply = match tokio::time::timeout(timeout, self.exchange(kind, parts)).await {
            Ok(Ok(reply)) => reply,
            Ok(Err(e)) => {
                tracing::debug!(target = self.target, error = %e, "raft RPC failed");
                return Err(e);
            }
            Err(_) => return Err(self.too_late(timeout)),
        };
        answered(reply)
    }

    /// Writes a request and reads its reply on the connection, which is kept only if both
    /// complete: a late reply is never taken for the next call's.
    async fn exchange(&mut self, kind: Kind, parts: &[&[u8]]) -> Result<Reply, CallError> {
        let mut stream = self.open().await?;
        let target = self.target;
        let unreachable = |e: io::Error| CallError::Unreachable(format!("replica {target}: {e}"));
        frame::write_request(&mut stream, kind, self.from, parts)
            .await
            .map_err(unreachable)?;
        let reply = frame::read_reply(&mut stream).await.map_err(unreachable)?;
        self.connection = Some(stream);
        Ok(reply)
    }

    /// Takes the open connection, or opens one.
    async fn open(&mut self) -> Result<TcpStream, CallError> {
        match self.connection.take() {
            Some(stream) => Ok(stream),
            None => self.connect().await,
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

    /// Whether the peer reports having a membership, and its current term.
    pub async fn probe(&mut self, timeout: Duration) -> Result<(bool, u64), String> {
        let reply = self
            .call(Kind::Probe, &[], timeout)
            .await
            .map_err(|e| e.to_string())?;
        decode(&reply)
    }

    /// Sends `snapshot` piece by piece (see [`SnapshotPiece`]), each piece within `option`'s
    /// TTL, and returns the peer's answer to the piece it settled on.
    async fn send_snapshot(
        &mut self,
        vote: Vote,
        snapshot: SnapshotOf<TypeConfig, SnapshotFile>,
        option: &RPCOption,
    ) -> Result<SnapshotResponse<TypeConfig>, StreamingError<TypeConfig>> {
        let meta = snapshot.meta;
        let SnapshotFile { file, len, .. } = snapshot.snapshot;
        let file = Arc::new(file);
        let piece_len = option
            .snapshot_chunk_size()
            .unwrap_or(DEFAULT_SNAPSHOT_PIECE_BYTES)
            .clamp(1, MAX_SNAPSHOT_PIECE_BYTES) as u64;
        let mut offset = 0;
        loop {
            let size = piece_len.min(len.saturating_sub(offset));
            let done = offset + size >= len;
            let data = read_piece(file.clone(), offset, size as usize)
                .await
                .map_err(|e| {
                    StorageError::from_io_error(
                        ErrorSubject::Snapshot(Some(meta.signature())),
                        ErrorVerb::Read,
                        e,
                    )
                })?;
            let piece = SnapshotPiece {
                vote,
                meta: meta.clone(),
                offset,
                done,
            };
            let header = encode(&piece).map_err(|e| CallError::Failed(e).into_streaming())?;
            let header_len = frame::snapshot_prefix(&header);
            let reply = self
                .call(
                    Kind::InstallSnapshot,
                    &[&header_len, &header, &data],
                    option.hard_ttl(),
                )
                .await
                .map_err(CallError::into_streaming)?;
            let target = self.target;
            let reply: SnapshotPieceReply = decode(&reply).map_err(|e| {
                CallError::Failed(format!("replica {target} sent a malformed reply: {e}"))
                    .into_streaming()
            })?;
            let refused = |why: String| {
                CallError::Failed(format!(
                    "replica {target} refused the snapshot piece at {offset}: {why}"
                ))
                .into_streaming()
            };
            match reply {
                Ok(Some(response)) => return Ok(response),
                Ok(None) if done => return Err(refused("no answer to the last piece".into())),
                Ok(None) => offset += size,
                Err(why) => return Err(refused(why)),
            }
        }
    }
}

/// Reads `len` bytes of `file` at `offset` on a blocking thread.
async fn read_piece(file: Arc<std::fs::File>, offset: u64, len: usize) -> io::Result<Vec<u8>> {
    tokio::task::spawn_blocking(move || {
        let mut data = vec![0; len];
        file.read_exact_at(&mut data, offset)?;
        Ok(data)
    })
    .await
    .map_err(io::Error::other)?
}

/// The reading half of a connection in use by a pipeline, read one reply at a time. A read
/// interrupted by its caller goes on at the next call, so no byte of a reply is lost.
struct ReplyReader {
    /// The half, when no read is under way.
    idle: Option<OwnedReadHalf>,
    /// The read under way, which owns the half until it completes.
    reading: Option<BoxFuture<'static, (OwnedReadHalf, io::Result<Reply>)>>,
}

impl ReplyReader {
    fn new(half: OwnedReadHalf) -> Self {
        ReplyReader {
            idle: Some(half),
            reading: None,
        }
    }

    /// The next reply. Cancel-safe.
    async fn next(&mut self) -> io::Result<Reply> {
        if self.reading.is_none() {
            let mut half = self.idle.take().ok_or_else(Self::lost)?;
            self.reading = Some(Box::pin(async move {
                let reply = frame::read_reply(&mut half).await;
                (half, reply)
            }));
        }
        let read = self.reading.as_mut().ok_or_else(Self::lost)?;
        let (half, reply) = read.await;
        self.reading = None;
        self.idle = Some(half);
        reply
    }

    fn lost() -> io::Error {
        io::Error::other("the connection's reading half is gone")
    }
}

/// An AppendEntries written to the peer and not yet answered.
struct Unanswered {
    prev_log_id: Option<LogId>,
    last_log_id: Option<LogId>,
    /// Its encoded size.
    bytes: usize,
    /// When its reply is due.
    deadline: Instant,
}

/// What a pipeline did next.
enum Step {
    /// A reply (or a failure); more may follow.
    Reply(Result<StreamAppendResult<TypeConfig>, RPCError<TypeConfig>>),
    /// The last reply (or a failure): the stream ends after it.
    Last(Result<StreamAppendResult<TypeConfig>, RPCError<TypeConfig>>),
    /// The input ended and every request has been answered.
    Done,
}

/// One `stream_append` session on a connection: writes requests as they come and reads the
/// replies in order.
struct Pipeline<'s, S> {
    client: &'s mut PeerClient,
    /// The requests still to send; `None` once they ended or must not continue.
    input: Option<S>,
    writer: OwnedWriteHalf,
    replies: ReplyReader,
    unanswered: VecDeque<Unanswered>,
    unanswered_bytes: usize,
    ttl: Duration,
}

/// The next item of `input`; never ready if there is none.
async fn next_request<S: Stream + Unpin>(input: &mut Option<S>) -> Option<S::Item> {
    match input {
        Some(input) => input.next().await,
        None => std::future::pending().await,
    }
}

impl<S> Pipeline<'_, S>
where
    S: Stream<Item = AppendEntriesRequest<TypeConfig>> + Unpin,
{
    async fn step(&mut self) -> Step {
        loop {
            let waiting = !self.unanswered.is_empty();
            if !waiting && self.input.is_none() {
                return Step::Done;
            }
            let may_send = self.input.is_some()
                && self.unanswered.len() < MAX_IN_FLIGHT
                && self.unanswered_bytes < MAX_IN_FLIGHT_BYTES;
            let due = self
                .unanswered
                .front()
                .map_or_else(Instant::now, |oldest| oldest.deadline);
            tokio::select! {
                biased;
                reply = self.replies.next(), if waiting => return self.answer(reply),
                _ = tokio::time::sleep_until(due), if waiting => {
                    return Step::Last(Err(self.client.too_late(self.ttl).into_rpc()));
                }
                request = next_request(&mut self.input), if may_send => match request {
                    Some(rpc) => {
                        if let Err(e) = self.send(rpc).await {
                            return Step::Last(Err(e.into_rpc()));
                        }
                    }
                    None => self.input = None,
                },
            }
        }
    }

    /// Writes `rpc` (cut to [`MAX_BATCH_BYTES`]: then it is the last one) and records it as
    /// unanswered.
    async fn send(&mut self, mut rpc: AppendEntriesRequest<TypeConfig>) -> Result<(), CallError> {
        self.client.check_not_blocked()?;
        let (cbor, cut) = encode_batch(&mut rpc)?;
        if cut {
            // What follows in the input continues past the entries left out.
            self.input = None;
        }
        let deadline = Instant::now() + self.ttl;
        // Written by the time the oldest reply is due (at the latest, this one's).
        let write_by = self.unanswered.front().map_or(deadline, |u| u.deadline);
        let parts: [&[u8]; 1] = [&cbor];
        let write = frame::write_request(
            &mut self.writer,
            Kind::AppendEntries,
            self.client.from,
            &parts,
        );
        match tokio::time::timeout_at(write_by, write).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                let target = self.client.target;
                return Err(CallError::Unreachable(format!("replica {target}: {e}")));
            }
            Err(_) => return Err(self.client.too_late(self.ttl)),
        }
        self.unanswered_bytes += cbor.len();
        self.unanswered.push_back(Unanswered {
            last_log_id: last_log_id(&rpc),
            prev_log_id: rpc.prev_log_id,
            bytes: cbor.len(),
            deadline,
        });
        Ok(())
    }

    /// Turns the reply to the oldest unanswered request into the stream's next item, as
    /// openraft's sequential `stream_append` does.
    fn answer(&mut self, reply: io::Result<Reply>) -> Step {
        let Some(request) = self.unanswered.pop_front() else {
            return Step::Last(Err(
                CallError::Failed("a reply to no request".into()).into_rpc()
            ));
        };
        self.unanswered_bytes -= request.bytes;
        // The peer answers in order, so the next reply also waited for the syncs behind this
        // one: it is due a TTL after its request was written or after this reply, whichever is
        // later (a catching-up follower syncing large batches is slow, not gone).
        if let Some(next) = self.unanswered.front_mut() {
            next.deadline = next.deadline.max(Instant::now() + self.ttl);
        }
        let target = self.client.target;
        let response = reply
            .map_err(|e| CallError::Unreachable(format!("replica {target}: {e}")))
            .and_then(answered)
            .and_then(|body| raft_answer::<AppendEntriesResponse<TypeConfig>>(target, &body));
        let response = match response {
            Ok(response) => response,
            Err(e) => return Step::Last(Err(e.into_rpc())),
        };
        let complete = match &response {
            AppendEntriesResponse::Success => true,
            AppendEntriesResponse::PartialSuccess(matching) => *matching == request.last_log_id,
            AppendEntriesResponse::Conflict if request.prev_log_id.is_none() => {
                let why = format!("replica {target} reported a conflict before its first entry");
                return Step::Last(Err(CallError::Failed(why).into_rpc()));
            }
            AppendEntriesResponse::Conflict | AppendEntriesResponse::HigherVote(_) => false,
        };
        let result = response.into_stream_result(request.prev_log_id, request.last_log_id);
        if complete && result.is_ok() {
            Step::Reply(Ok(result))
        } else {
            Step::Last(Ok(result))
        }
    }

    /// Ends the session: the connection goes back to the client if `clean` and every request
    /// has been answered, and is closed otherwise.
    fn finish(self, clean: bool) {
        if !clean || !self.unanswered.is_empty() {
            return;
        }
        if let Some(reader) = self.replies.idle {
            self.client.connection = reader.reunite(self.writer).ok();
        }
    }
}

impl RaftNetworkV2<TypeConfig> for PeerClient {
    type SnapshotData = SnapshotFile;

    /// One AppendEntries, as a stream of one.
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<TypeConfig>, RPCError<TypeConfig>> {
        let last = last_log_id(&rpc);
        let mut replies = self
            .stream_append(futures::stream::iter([rpc]), option)
            .await?;
        let Some(reply) = replies.next().await else {
            return Err(CallError::Failed("no reply".into()).into_rpc());
        };
        // Reaching the end of the stream returns the connection for the next call.
        while replies.next().await.is_some() {}
        Ok(match reply? {
            Ok(matching) if matching == last => AppendEntriesResponse::Success,
            Ok(matching) => AppendEntriesResponse::PartialSuccess(matching),
            Err(StreamAppendError::Conflict(_)) => AppendEntriesResponse::Conflict,
            Err(StreamAppendError::HigherVote(vote)) => AppendEntriesResponse::HigherVote(vote),
        })
    }

    /// Pipelined replication (see the module docs).
    fn stream_append<'s, S>(
        &'s mut self,
        input: S,
        option: RPCOption,
    ) -> BoxFuture<
        's,
        Result<
            BoxStream<'s, Result<StreamAppendResult<TypeConfig>, RPCError<TypeConfig>>>,
            RPCError<TypeConfig>,
        >,
    >
    where
        S: Stream<Item = AppendEntriesRequest<TypeConfig>> + OptionalSend + Unpin + 'static,
    {
        Box::pin(async move {
            let ttl = option.hard_ttl();
            // The first request is awaited before connecting: openraft's replication waits out
            // its backoff after a failure inside the request stream, so connecting first would
            // retry an unreachable peer in a tight loop.
            let mut input = input;
            let Some(first) = input.next().await else {
                let replies: BoxStream<'s, _> = Box::pin(futures::stream::empty());
                return Ok(replies);
            };
            let input = futures::stream::iter([first]).chain(input);
            self.check_not_blocked().map_err(CallError::into_rpc)?;
            let stream = match tokio::time::timeout(ttl, self.open()).await {
                Ok(opened) => opened.map_err(CallError::into_rpc)?,
                Err(_) => return Err(self.too_late(ttl).into_rpc()),
            };
            let (reader, writer) = stream.into_split();
            let pipeline = Pipeline {
                client: self,
                input: Some(input),
                writer,
                replies: ReplyReader::new(reader),
                unanswered: VecDeque::new(),
                unanswered_bytes: 0,
                ttl,
            };
            let replies = futures::stream::unfold(Some(pipeline), |pipeline| async move {
                let mut pipeline = pipeline?;
                match pipeline.step().await {
                    Step::Reply(item) => Some((item, Some(pipeline))),
                    Step::Last(item) => {
                        // After a refusal the peer closes the connection (its append stream
                        // ended), so it is not kept for the next call either.
                        pipeline.finish(matches!(item, Ok(Ok(_))));
                        Some((item, None))
                    }
                    Step::Done => {
                        pipeline.finish(true);
                        None
                    }
                }
            });
            let replies: BoxStream<'s, _> = Box::pin(replies);
            Ok(replies)
        })
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<VoteResponse<TypeConfig>, RPCError<TypeConfig>> {
        let cbor = encode(&rpc).map_err(|e| CallError::Failed(e).into_rpc())?;
        let reply = self
            .call(Kind::Vote, &[&cbor], option.hard_ttl())
            .await
            .map_err(CallError::into_rpc)?;
        raft_answer(self.target, &reply).map_err(CallError::into_rpc)
    }

    /// Sends the snapshot file in pieces (`SnapshotPiece`), each within `option`'s TTL,
    /// until the peer settles on it, unless `cancel` comes first.
    async fn full_snapshot(
        &mut self,
        vote: Vote,
        snapshot: SnapshotOf<TypeConfig, SnapshotFile>,
        cancel: impl Future<Output = ReplicationClosed> + OptionalSend + 'static,
        option: RPCOption,
    ) -> Result<SnapshotResponse<TypeConfig>, StreamingError<TypeConfig>> {
        tokio::select! {
            biased;
            closed = cancel => Err(StreamingError::Closed(closed)),
            sent = self.send_snapshot(vote, snapshot, &option) => sent,
        }
    }

    fn backoff(&self) -> Option<Backoff> {
        Some(Backoff::new(std::iter::repeat(Duration::from_millis(200))))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::io::Write;

    use bytes::Bytes;
    use openraft::EntryPayload;
    use tokio::net::TcpListener;
    use tokio::sync::mpsc;

    use super::*;
    use crate::network::frame::Request;
    use crate::types::{Command, Entry, SnapshotMeta, log_id};

    fn entry(index: u64) -> Entry {
        Entry {
            log_id: log_id(1, 1, index),
            payload: EntryPayload::Normal(Command(Bytes::from_static(b"record"))),
        }
    }

    /// An AppendEntries after entry `prev` carrying the entries at `entries`.
    fn request(prev: u64, entries: std::ops::Range<u64>) -> AppendEntriesRequest<TypeConfig> {
        AppendEntriesRequest {
            vote: Vote::new_committed(1, 1),
            prev_log_id: Some(log_id(1, 1, prev)),
            entries: entries.map(entry).collect(),
            leader_commit: Some(log_id(1, 1, prev)),
        }
    }

    fn option(ttl: Duration) -> RPCOption {
        RPCOption::new(ttl)
    }

    /// The peer's answer to an AppendEntries, as its server encodes it.
    fn answer(response: AppendEntriesResponse<TypeConfig>) -> Vec<u8> {
        let result: Result<_, RaftError<TypeConfig>> = Ok(response);
        encode(&result).unwrap()
    }

    /// Reads the next request on `connection` and answers it with `response`.
    async fn answer_next(
        connection: &mut Scripted,
        response: AppendEntriesResponse<TypeConfig>,
    ) -> Request {
        let request = connection.requests.recv().await.unwrap();
        connection.replies.send(answer(response)).unwrap();
        request
    }

    fn prev_of(request: &Request) -> Option<LogId> {
        let rpc: AppendEntriesRequest<TypeConfig> = decode(&request.body).unwrap();
        rpc.prev_log_id
    }

    /// One connection accepted by a scripted peer: the requests it reads, and the replies to
    /// write, in order.
    struct Scripted {
        requests: mpsc::UnboundedReceiver<Request>,
        replies: mpsc::UnboundedSender<Vec<u8>>,
    }

    /// A scripted peer: hands the test each connection it accepts, each request read on it,
    /// and writes each reply the test gives it.
    async fn peer() -> (String, mpsc::UnboundedReceiver<Scripted>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let (connections_tx, connections) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (requests_tx, requests) = mpsc::unbounded_channel();
                let (replies, mut replies_rx) = mpsc::unbounded_channel::<Vec<u8>>();
                if connections_tx.send(Scripted { requests, replies }).is_err() {
                    break;
                }
                let (mut reader, mut writer) = stream.into_split();
                tokio::spawn(async move {
                    while let Ok(Some(request)) = frame::read_request(&mut reader).await {
                        if requests_tx.send(request).is_err() {
                            break;
                        }
                    }
                });
                tokio::spawn(async move {
                    while let Some(reply) = replies_rx.recv().await {
                        if frame::write_reply(&mut writer, Status::Ok, &reply)
                            .await
                            .is_err()
                        {
                            break;
                        }
                    }
                });
            }
        });
        (addr, connections)
    }

    async fn client(addr: String) -> PeerClient {
        NetworkFactory::new(1, Faults::default())
            .new_client(2, &Node::new(addr))
            .await
    }

    /// Requests are written without waiting for earlier replies, and the replies come out in
    /// order; after the last, the connection serves the next call.
    #[tokio::test]
    async fn stream_append_writes_ahead_and_yields_replies_in_order() {
        let (addr, mut connections) = peer().await;
        let mut client = client(addr).await;
        let input = futures::stream::iter([request(5, 6..7), request(6, 7..9), request(8, 9..9)]);
        let mut replies = client
            .stream_append(input, option(Duration::from_secs(5)))
            .await
            .unwrap();
        let mut connection = connections.recv().await.unwrap();

        let script = async {
            // All three arrive while none is answered.
            for prev in [5, 6, 8] {
                let request = connection.requests.recv().await.unwrap();
                assert_eq!(prev_of(&request), Some(log_id(1, 1, prev)));
            }
            for _ in 0..3 {
                connection
                    .replies
                    .send(answer(AppendEntriesResponse::Success))
                    .unwrap();
            }
        };
        let (first, ()) = tokio::join!(replies.next(), script);
        assert_eq!(first.unwrap().unwrap(), Ok(Some(log_id(1, 1, 6))));
        assert_eq!(
            replies.next().await.unwrap().unwrap(),
            Ok(Some(log_id(1, 1, 8)))
        );
        assert_eq!(
            replies.next().await.unwrap().unwrap(),
            Ok(Some(log_id(1, 1, 8)))
        );
        assert!(replies.next().await.is_none());
        drop(replies);

        // The same connection carries the next call.
        let call = client.append_entries(request(8, 9..10), option(Duration::from_secs(5)));
        let (response, ()) = tokio::join!(call, async {
            let request = connection.requests.recv().await.unwrap();
            assert_eq!(prev_of(&request), Some(log_id(1, 1, 8)));
            connection
                .replies
                .send(answer(AppendEntriesResponse::Conflict))
                .unwrap();
        });
        assert_eq!(response.unwrap(), AppendEntriesResponse::Conflict);
    }

    /// A refusal ends the stream; the requests written after it are never answered on that
    /// connection, which is closed.
    #[tokio::test]
    async fn a_refusal_ends_the_stream_and_closes_a_busy_connection() {
        let (addr, mut connections) = peer().await;
        let mut client = client(addr).await;
        let input = futures::stream::iter([request(5, 6..7), request(6, 7..8)]);
        let mut replies = client
            .stream_append(input, option(Duration::from_secs(5)))
            .await
            .unwrap();
        let mut connection = connections.recv().await.unwrap();
        let higher = Vote::new(9, 3);
        let script = async {
            connection.requests.recv().await.unwrap();
            answer_next(&mut connection, AppendEntriesResponse::HigherVote(higher)).await;
        };
        let (first, ()) = tokio::join!(replies.next(), script);
        assert_eq!(
            first.unwrap().unwrap(),
            Err(StreamAppendError::HigherVote(higher))
        );
        assert!(replies.next().await.is_none());
        drop(replies);
        assert!(connection.requests.recv().await.is_none(), "still open");
    }

    /// A reply is due a TTL after the reply before it, not only after its own request was
    /// written: a follower syncing the batches ahead of it is slow, not gone.
    #[tokio::test]
    async fn each_reply_is_due_a_ttl_after_the_one_before() {
        let (addr, mut connections) = peer().await;
        let mut client = client(addr).await;
        let ttl = Duration::from_millis(300);
        let input = futures::stream::iter([request(5, 6..7), request(6, 7..8)]);
        let mut replies = client.stream_append(input, option(ttl)).await.unwrap();
        let script = async {
            let mut connection = connections.recv().await.unwrap();
            connection.requests.recv().await.unwrap();
            connection.requests.recv().await.unwrap();
            // Each reply comes 200 ms after the one before: the second 400 ms after both
            // requests were written, more than the TTL, but within it of the first reply.
            for _ in 0..2 {
                tokio::time::sleep(Duration::from_millis(200)).await;
                connection
                    .replies
                    .send(answer(AppendEntriesResponse::Success))
                    .unwrap();
            }
            connection
        };
        let (first, _connection) = tokio::join!(
            async {
                let first = replies.next().await.unwrap().unwrap();
                (first, replies.next().await.unwrap().unwrap())
            },
            script
        );
        assert_eq!(first.0, Ok(Some(log_id(1, 1, 6))));
        assert_eq!(first.1, Ok(Some(log_id(1, 1, 7))));
    }

    /// A refusal of the last request sent still closes the connection (the peer's append
    /// stream ended with it, and the peer closes its side): the next call opens a new one
    /// instead of failing on the old one.
    #[tokio::test]
    async fn a_refusal_closes_even_an_idle_connection() {
        let (addr, mut connections) = peer().await;
        let mut client = client(addr).await;
        let call = client.append_entries(request(5, 6..7), option(Duration::from_secs(5)));
        let (response, mut first) = tokio::join!(call, async {
            let mut first = connections.recv().await.unwrap();
            answer_next(&mut first, AppendEntriesResponse::Conflict).await;
            first
        });
        assert_eq!(response.unwrap(), AppendEntriesResponse::Conflict);
        let closed = tokio::time::timeout(Duration::from_secs(5), first.requests.recv()).await;
        assert!(matches!(closed, Ok(None)), "the connection stayed open");

        let call = client.append_entries(request(4, 5..7), option(Duration::from_secs(5)));
        let (response, ()) = tokio::join!(call, async {
            let mut second = connections.recv().await.unwrap();
            answer_next(&mut second, AppendEntriesResponse::Success).await;
        });
        assert_eq!(response.unwrap(), AppendEntriesResponse::Success);
    }

    /// A peer address that answers no connection attempt (its queue of connections is full, as
    /// with the address of a pod that is gone): the attempt is given up on well before a long
    /// call's deadline, so the next call looks the peer up afresh.
    #[tokio::test]
    async fn a_connection_attempt_nobody_answers_is_given_up_on() {
        use socket2::{Domain, Socket, Type};
        let listener = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
        let loopback = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
        listener.bind(&loopback.into()).unwrap();
        listener.listen(0).unwrap();
        let addr = listener.local_addr().unwrap().as_socket().unwrap();
        let _queued = std::net::TcpStream::connect(addr).unwrap();
        let mut client = client(addr.to_string()).await;
        // Without a bound, the kernel gives up on the connection after about two minutes.
        let failure = client
            .probe(Duration::from_secs(60))
            .await
            .expect_err("nobody answers");
        assert!(failure.contains("timed out"), "{failure}");
        assert!(client.connecting.is_none(), "the attempt is over");
    }

    /// A session whose requests have not come yet opens no connection: openraft waits out its
    /// backoff inside the request stream, and connecting first would retry in a tight loop.
    #[tokio::test]
    async fn nothing_connects_before_the_first_request() {
        let (addr, mut connections) = peer().await;
        let mut client = client(addr).await;
        let (requests, input) = futures::channel::mpsc::unbounded();
        let opening = client.stream_append(input, option(Duration::from_secs(5)));
        let mut opening = std::pin::pin!(opening);
        // Not opened while no request is due.
        assert!(
            tokio::time::timeout(Duration::from_millis(100), opening.as_mut())
                .await
                .is_err()
        );
        assert!(
            connections.try_recv().is_err(),
            "connected before a request"
        );
        requests.unbounded_send(request(5, 6..7)).unwrap();
        drop(requests);
        let mut replies = opening.await.unwrap();
        let (reply, ()) = tokio::join!(replies.next(), async {
            let mut connection = connections.recv().await.unwrap();
            answer_next(&mut connection, AppendEntriesResponse::Success).await;
        });
        assert_eq!(reply.unwrap().unwrap(), Ok(Some(log_id(1, 1, 6))));
        assert!(replies.next().await.is_none());
    }

    /// A reply that does not come within the TTL fails the stream, and the next call opens a
    /// new connection.
    #[tokio::test]
    async fn a_missing_reply_fails_the_stream_and_drops_the_connection() {
        let (addr, mut connections) = peer().await;
        let mut client = client(addr).await;
        let ttl = Duration::from_millis(200);
        let input = futures::stream::iter([request(5, 6..7)]);
        let started = Instant::now();
        let mut replies = client.stream_append(input, option(ttl)).await.unwrap();
        let mut first = connections.recv().await.unwrap();

        let failure = replies.next().await.unwrap();
        assert!(matches!(failure, Err(RPCError::Network(_))), "{failure:?}");
        assert!(started.elapsed() >= ttl);
        assert!(replies.next().await.is_none());
        drop(replies);
        first.requests.recv().await.unwrap();
        assert!(first.requests.recv().await.is_none(), "still open");

        let call = client.append_entries(request(5, 6..7), option(ttl));
        let (response, ()) = tokio::join!(call, async {
            let mut second = connections.recv().await.unwrap();
            answer_next(&mut second, AppendEntriesResponse::Success).await;
        });
        assert_eq!(response.unwrap(), AppendEntriesResponse::Success);
    }

    /// A snapshot file of `len` bytes, each byte its offset modulo 251.
    fn snapshot_file(dir: &tempfile::TempDir, len: usize) -> SnapshotOf<TypeConfig, SnapshotFile> {
        let path = dir.path().join(format!("snapshot-{len}"));
        let bytes: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
        std::fs::File::create(&path)
            .unwrap()
            .write_all(&bytes)
            .unwrap();
        let meta = SnapshotMeta {
            last_log_id: Some(log_id(1, 1, 10)),
            ..Default::default()
        };
        openraft::Snapshot {
            meta,
            snapshot: SnapshotFile {
                file: std::fs::File::open(&path).unwrap(),
                path,
                len: len as u64,
            },
        }
    }

    /// Sends a snapshot file to a scripted peer, which answers every piece but the last with
    /// `Ok(None)`; returns the pieces it received and the outcome.
    async fn send_snapshot(
        len: usize,
    ) -> (
        Vec<(SnapshotPiece, Vec<u8>)>,
        Result<SnapshotResponse<TypeConfig>, StreamingError<TypeConfig>>,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let (addr, mut connections) = peer().await;
        let mut client = client(addr).await;
        let send = client.full_snapshot(
            Vote::new_committed(1, 1),
            snapshot_file(&dir, len),
            std::future::pending(),
            option(Duration::from_secs(5)),
        );
        let script = async {
            let mut connection = connections.recv().await.unwrap();
            let mut pieces = Vec::new();
            loop {
                let request = connection.requests.recv().await.unwrap();
                assert_eq!(request.kind, Some(Kind::InstallSnapshot));
                let (header, data) = frame::split_snapshot(&request.body).unwrap();
                let piece: SnapshotPiece = decode(header).unwrap();
                let done = piece.done;
                pieces.push((piece, data.to_vec()));
                let reply: SnapshotPieceReply = if done {
                    Ok(Some(SnapshotResponse::new(Vote::new_committed(2, 3))))
                } else {
                    Ok(None)
                };
                connection.replies.send(encode(&reply).unwrap()).unwrap();
                if done {
                    return pieces;
                }
            }
        };
        let (outcome, pieces) = tokio::join!(send, script);
        (pieces, outcome)
    }

    /// A snapshot goes in order, piece by piece, the last one marked; the peer's answer to it
    /// is the outcome. An empty file is one empty last piece.
    #[tokio::test]
    async fn full_snapshot_sends_the_file_in_pieces() {
        let len = 2 * DEFAULT_SNAPSHOT_PIECE_BYTES + 1000;
        let (pieces, outcome) = send_snapshot(len).await;
        assert_eq!(
            outcome.unwrap(),
            SnapshotResponse::new(Vote::new_committed(2, 3))
        );
        let offsets: Vec<_> = pieces.iter().map(|(p, _)| (p.offset, p.done)).collect();
        let piece = DEFAULT_SNAPSHOT_PIECE_BYTES as u64;
        assert_eq!(offsets, [(0, false), (piece, false), (2 * piece, true)]);
        let data: Vec<u8> = pieces.iter().flat_map(|(_, d)| d.iter().copied()).collect();
        assert_eq!(data.len(), len);
        assert!(data.iter().enumerate().all(|(i, &b)| b == (i % 251) as u8));
        let (first, _) = &pieces[0];
        assert_eq!(first.vote, Vote::new_committed(1, 1));
        assert_eq!(first.meta.last_log_id, Some(log_id(1, 1, 10)));

        let (pieces, outcome) = send_snapshot(0).await;
        assert!(outcome.is_ok());
        let offsets: Vec<_> = pieces
            .iter()
            .map(|(p, d)| (p.offset, p.done, d.len()))
            .collect();
        assert_eq!(offsets, [(0, true, 0)]);
    }
}
