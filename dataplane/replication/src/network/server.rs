//! The receiving side: serves raft requests from peers to the local raft, one connection per
//! peer client, each answered in order; AppendEntries requests are pipelined into raft (see
//! [`RaftServer::serve`]).
//!
//! A snapshot arrives in pieces (`SnapshotPiece`), in order, on one connection, into the state
//! machine's incoming file ([`StateMachineStore::begin_receiving`]); after the last piece it is
//! handed to raft to install. A replica receives one snapshot at a time: a transfer that starts
//! (a piece at offset 0) replaces the one in progress, whose further pieces are then refused.

use std::cmp;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use futures::StreamExt;
use openraft::async_runtime::WatchReceiver;
use openraft::base::BoxFuture;
use openraft::error::RaftError;
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, StreamAppendResult, VoteRequest,
};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Mutex, mpsc, watch};

use crate::network::frame::{self, Kind, Request, Status};
use crate::network::{Faults, SnapshotPiece, SnapshotPieceReply, decode, encode};
use crate::state_machine::{FileSnapshot, SnapshotFile, StateMachine, StateMachineStore};
use crate::types::{LogId, Raft, SnapshotMeta, TypeConfig};

/// Serves raft requests from peers to one local replica.
pub struct RaftServer<S: StateMachine> {
    raft: Raft<S>,
    faults: Faults,
    vote_floor: VoteFloor,
    /// The snapshot being received, if any (one per replica, whichever connection brings it).
    incoming: Arc<Mutex<Option<IncomingSnapshot>>>,
    /// Numbers the connections, so a transfer's pieces are taken from its own connection only.
    connections: Arc<AtomicU64>,
}

impl<S: StateMachine> Clone for RaftServer<S> {
    fn clone(&self) -> Self {
        RaftServer {
            raft: self.raft.clone(),
            faults: self.faults.clone(),
            vote_floor: self.vote_floor.clone(),
            incoming: Arc::clone(&self.incoming),
            connections: Arc::clone(&self.connections),
        }
    }
}

/// A snapshot being received from the leader.
struct IncomingSnapshot {
    /// The connection its pieces arrive on.
    connection: u64,
    /// What the snapshot covers, as its first piece said.
    meta: SnapshotMeta,
    /// Where the file is.
    path: PathBuf,
    /// The file, written up to `received`.
    file: tokio::fs::File,
    /// How many bytes were written: where the next piece must begin.
    received: u64,
}

impl IncomingSnapshot {
    /// Whether `piece`, which came on `connection`, is the next piece of this snapshot.
    fn is_next(&self, connection: u64, piece: &SnapshotPiece) -> bool {
        self.connection == connection && self.received == piece.offset && self.meta == piece.meta
    }

    /// Appends a piece's bytes.
    async fn append(&mut self, data: &[u8]) -> std::io::Result<()> {
        self.file.write_all(data).await?;
        // Reports a failed write now, for this piece.
        self.file.flush().await?;
        self.received += data.len() as u64;
        Ok(())
    }

    /// Syncs the file and returns it as the snapshot to install.
    async fn finish(mut self) -> std::io::Result<FileSnapshot> {
        self.file.flush().await?;
        self.file.sync_all().await?;
        let mut file = self.file.into_std().await;
        std::io::Seek::rewind(&mut file)?;
        Ok(FileSnapshot {
            meta: self.meta,
            snapshot: SnapshotFile {
                path: self.path,
                file,
                len: self.received,
            },
        })
    }
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

impl<S: StateMachine> RaftServer<S> {
    /// The server of `raft`, dropping requests from peers blocked in `faults` and refusing
    /// votes below `vote_floor`.
    pub fn new(raft: Raft<S>, faults: Faults, vote_floor: VoteFloor) -> Self {
        RaftServer {
            raft,
            faults,
            vote_floor,
            incoming: Arc::new(Mutex::new(None)),
            connections: Arc::new(AtomicU64::new(0)),
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
    ///
    /// AppendEntries requests are pipelined: each goes to raft as soon as it is read, through
    /// one [`Raft::stream_append`](openraft::Raft::stream_append) per connection, so the
    /// entries of requests that arrive while the log syncs share the next `fdatasync`; their
    /// answers are written in request order as raft reports the entries durable. Other
    /// requests are answered when read, in their place in that order. After an append is
    /// refused (a conflict or a newer vote), raft's append stream has ended: the refusal is
    /// the connection's last reply, and the peer reconnects for its next requests.
    async fn serve_connection(self, connection: TcpStream, mut stop: watch::Receiver<bool>) {
        // Replies are single writes; without this one can wait for the peer's delayed ACK.
        if let Err(e) = connection.set_nodelay(true) {
            tracing::debug!(error = %e, "cannot set TCP_NODELAY on a replication connection");
        }
        let id = self.connections.fetch_add(1, Ordering::Relaxed);
        let (mut reader, mut writer) = connection.into_split();
        let (replies, mut replies_due) = mpsc::channel::<Reply>(PIPELINE_DEPTH);
        let (appends, appends_due) =
            mpsc::channel::<AppendEntriesRequest<TypeConfig>>(PIPELINE_DEPTH);
        let appends_due = futures::stream::unfold(appends_due, |mut due| async move {
            due.recv().await.map(|request| (request, due))
        });
        let appended = self.raft.stream_append(appends_due);
        let writing = async move {
            let mut appended = std::pin::pin!(appended);
            while let Some(due) = replies_due.recv().await {
                let (status, body, last) = match due {
                    Reply::Answered(status, body) => (status, body, false),
                    Reply::Appended { last_log_id } => match appended.next().await {
                        Some(Ok(result)) => {
                            let refused = result.is_err();
                            let (status, body) = reply(&Ok::<_, RaftError<TypeConfig>>(
                                append_response(result, last_log_id),
                            ));
                            (status, body, refused)
                        }
                        Some(Err(fatal)) => {
                            (Status::Unavailable, fatal.to_string().into_bytes(), true)
                        }
                        None => (Status::Unavailable, b"raft stopped".to_vec(), true),
                    },
                };
                if let Err(e) = frame::write_reply(&mut writer, status, &body).await {
                    tracing::debug!(error = %e, "cannot reply on a replication connection");
                    return;
                }
                if last {
                    return;
                }
            }
        };
        let reading = async {
            loop {
                let request = match frame::read_request(&mut reader).await {
                    Ok(Some(request)) => request,
                    Ok(None) => return,
                    Err(e) => {
                        tracing::debug!(error = %e, "dropping a replication connection");
                        return;
                    }
                };
                let reply = match self.admit(&request) {
                    Err((status, body)) => Reply::Answered(status, body),
                    Ok(rpc) => match self.answer(id, rpc, &appends).await {
                        Some(reply) => reply,
                        None => return,
                    },
                };
                if replies.send(reply).await.is_err() {
                    return;
                }
            }
        };
        tokio::select! {
            () = writing => {}
            () = reading => {}
            _ = stop.wait_for(|s| *s) => {}
        }
    }

    /// Decodes `request` if its sender is not blocked, or says why it is refused.
    fn admit<'r>(&self, request: &'r Request) -> Result<RaftRequest<'r>, (Status, Vec<u8>)> {
        if self.faults.is_blocked(request.from) {
            let why = format!("traffic from {} is blocked", request.from);
            return Err((Status::Blocked, why.into_bytes()));
        }
        RaftRequest::decode(request).map_err(|why| (Status::Invalid, why.into_bytes()))
    }

    /// The reply due for `rpc`, which came on connection `connection`: an AppendEntries goes
    /// to the connection's append stream (`appends`; `None` once that has ended), anything
    /// else is answered here.
    async fn answer(
        &self,
        connection: u64,
        rpc: RaftRequest<'_>,
        appends: &mpsc::Sender<AppendEntriesRequest<TypeConfig>>,
    ) -> Option<Reply> {
        let (status, body) = match rpc {
            RaftRequest::AppendEntries(rpc) => {
                let last_log_id = rpc.entries.last().map(|e| e.log_id).or(rpc.prev_log_id);
                appends.send(rpc).await.ok()?;
                return Some(Reply::Appended { last_log_id });
            }
            RaftRequest::Vote(rpc) => {
                let term = rpc.vote.leader_id.term;
                if !self.vote_floor.allows(term) {
                    let why = format!(
                        "this replica lost its volume and does not vote in term {term}, in \
                         which it may already have voted"
                    );
                    return Some(Reply::Answered(Status::Unavailable, why.into_bytes()));
                }
                reply(&self.raft.vote(rpc).await)
            }
            RaftRequest::SnapshotPiece(piece, data) => {
                reply(&self.receive_snapshot_piece(connection, piece, data).await)
            }
            RaftRequest::Probe => match self.raft.is_initialized().await {
                Ok(initialized) => {
                    let term = self.raft.metrics().borrow_watched().current_term;
                    reply(&(initialized, term))
                }
                Err(e) => (Status::Unavailable, e.to_string().into_bytes()),
            },
        };
        Some(Reply::Answered(status, body))
    }

    /// Takes one piece of a snapshot, with its bytes `data`, that came on `connection`; installs
    /// the snapshot after its last piece. See [`SnapshotPiece`] for the answers.
    async fn receive_snapshot_piece(
        &self,
        connection: u64,
        piece: SnapshotPiece,
        data: &[u8],
    ) -> SnapshotPieceReply {
        let vote = self.raft.metrics().borrow_watched().vote;
        // Raft itself refuses such a snapshot when it is installed; refusing it now saves
        // storing it. (Votes that do not compare are refused too, as raft does.)
        if !matches!(
            piece.vote.partial_cmp(&vote),
            Some(cmp::Ordering::Greater | cmp::Ordering::Equal)
        ) {
            tracing::debug!(piece = %piece.vote, %vote, "refusing a snapshot from an older leader");
            return Ok(Some(SnapshotResponse::new(vote)));
        }
        let mut incoming = self.incoming.lock().await;
        if piece.offset == 0 {
            *incoming = None;
            let file = self
                .raft
                .with_state_machine(|sm: &mut StateMachineStore<S>| -> BoxFuture<'_, _> {
                    Box::pin(sm.begin_receiving())
                })
                .await
                .map_err(|e| format!("cannot receive a snapshot: {e}"))?
                .map_err(|e| format!("cannot create the incoming snapshot file: {e}"))?;
            tracing::info!(snapshot = %piece.meta, leader = %piece.vote, "receiving a snapshot");
            *incoming = Some(IncomingSnapshot {
                connection,
                meta: piece.meta.clone(),
                path: file.path,
                file: tokio::fs::File::from_std(file.file),
                received: 0,
            });
        }
        let receiving = match incoming.as_mut() {
            Some(receiving) if receiving.is_next(connection, &piece) => receiving,
            _ => {
                return Err(format!(
                    "a snapshot piece at byte {} is not the next one expected",
                    piece.offset
                ));
            }
        };
        if let Err(e) = receiving.append(data).await {
            *incoming = None;
            return Err(format!("cannot write the incoming snapshot: {e}"));
        }
        if !piece.done {
            return Ok(None);
        }
        let Some(received) = incoming.take() else {
            return Err("the incoming snapshot is gone".into());
        };
        let snapshot = received
            .finish()
            .await
            .map_err(|e| format!("cannot sync the incoming snapshot: {e}"))?;
        // Still holding `incoming`: no new transfer truncates the file while it is installed.
        let response = self
            .raft
            .install_full_snapshot(piece.vote, snapshot)
            .await
            .map_err(|e| format!("cannot install the snapshot: {e}"))?;
        drop(incoming);
        Ok(Some(response))
    }
}

/// A request's body decoded for raft.
pub(crate) enum RaftRequest<'a> {
    AppendEntries(AppendEntriesRequest<TypeConfig>),
    Vote(VoteRequest<TypeConfig>),
    /// A piece of a snapshot and its bytes (a slice of the request's body).
    SnapshotPiece(SnapshotPiece, &'a [u8]),
    Probe,
}

impl<'a> RaftRequest<'a> {
    /// Decodes `request`'s body as its kind says, or says what is wrong with it.
    pub(crate) fn decode(request: &'a Request) -> Result<RaftRequest<'a>, String> {
        Ok(match request.kind {
            Some(Kind::AppendEntries) => RaftRequest::AppendEntries(decode(&request.body)?),
            Some(Kind::Vote) => RaftRequest::Vote(decode(&request.body)?),
            Some(Kind::InstallSnapshot) => {
                let (cbor, data) = frame::split_snapshot(&request.body)
                    .ok_or("a snapshot piece shorter than its header")?;
                RaftRequest::SnapshotPiece(decode(cbor)?, data)
            }
            Some(Kind::Probe) => RaftRequest::Probe,
            None => return Err("a request of unknown kind".into()),
        })
    }
}

/// How many requests of one connection may be read ahead of their replies.
const PIPELINE_DEPTH: usize = 64;

/// A reply due on a connection, in request order.
enum Reply {
    /// Already known.
    Answered(Status, Vec<u8>),
    /// The next result of the connection's append stream, for a request whose entries end at
    /// `last_log_id` (its `prev_log_id` if it has none).
    Appended { last_log_id: Option<LogId> },
}

/// The AppendEntries answer for raft's `result` on a request ending at `last_log_id`.
fn append_response(
    result: StreamAppendResult<TypeConfig>,
    last_log_id: Option<LogId>,
) -> AppendEntriesResponse<TypeConfig> {
    match result {
        Ok(matching) if matching == last_log_id => AppendEntriesResponse::Success,
        Ok(matching) => AppendEntriesResponse::PartialSuccess(matching),
        refused => refused.into(),
    }
}

fn reply<T: serde::Serialize>(result: &T) -> (Status, Vec<u8>) {
    match encode(result) {
        Ok(cbor) => (Status::Ok, cbor),
        Err(e) => (Status::Invalid, e.into_bytes()),
    }
}
