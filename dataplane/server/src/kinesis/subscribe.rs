//! SubscribeToShard: records pushed over an `application/vnd.amazon.eventstream` response.
//!
//! The response opens with an `initial-response` event, then carries a
//! `SubscribeToShardEvent` whenever records become durable (and at least every five seconds
//! as a heartbeat), until the subscription's lifetime ends, a newer subscription takes its
//! slot, the client goes away, or a closed shard has been read to its end (the last event
//! then lists the ChildShards). As on Kinesis, each subscription gets 2 MiB/s of records
//! (a second's worth at once): events wait for their turn rather than fail.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use riffle_wire::event_stream;
use riffle_wire::{AwsError, Doc, Format, Value};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::ReceiverStream;

use super::Reply;
use super::input::shard_id;
use super::records::{child_shards_value, record_value, starting_position};
use crate::streams::sequence::SequenceNumber;
use crate::streams::shard::Shard;
use crate::streams::throttle::Pace;
use crate::streams::{Catalog, Stream};

/// Longest quiet time between two events.
const HEARTBEAT: Duration = Duration::from_secs(5);
/// Most records in one event.
const RECORDS_PER_EVENT: usize = 10_000;

/// SubscribeToShard.
pub async fn subscribe_to_shard(catalog: &Arc<Catalog>, doc: &Doc<'_>) -> Result<Reply, AwsError> {
    let consumer_arn = doc.str_required("ConsumerARN")?.to_string();
    let (stream_name, consumer_name) = catalog.parse_consumer_arn(&consumer_arn)?;
    catalog
        .describe_consumer(&stream_name, &consumer_name)
        .await?;
    let shard = shard_id(doc, "ShardId")?;
    let start = doc.doc_required("StartingPosition")?;
    let position = starting_position(&start, "Type", "SequenceNumber")?;
    let (stream, handle, offset) = catalog.open_reader(&stream_name, shard, &position).await?;
    let generation = catalog.claim_subscription(&consumer_arn, handle.index)?;
    let format = doc.format();
    let (sender, receiver) = mpsc::channel::<Bytes>(4);
    let initial = event_stream::event(
        "initial-response",
        format.content_type(),
        &format.encode(&Value::map().build()),
    )
    .unwrap_or_default();
    let _ = sender.try_send(Bytes::from(initial));
    let subscription = Subscription {
        catalog: catalog.clone(),
        stream,
        shard: handle,
        consumer_arn,
        generation,
        format,
        sender,
    };
    tokio::spawn(subscription.run(offset));
    let frames = ReceiverStream::new(receiver)
        .map(|bytes| Ok::<_, crate::http::BodyFailure>(Frame::data(bytes)));
    Ok(Reply::EventStream(BodyExt::boxed(StreamBody::new(frames))))
}

struct Subscription {
    catalog: Arc<Catalog>,
    stream: Arc<Stream>,
    shard: Arc<Shard>,
    consumer_arn: String,
    generation: u64,
    format: Format,
    sender: mpsc::Sender<Bytes>,
}

impl Subscription {
    async fn run(self, mut offset: u64) {
        let deadline = Instant::now() + self.catalog.config().subscription_ttl;
        let limits = self.catalog.config().limits;
        let mut pace = Pace::new(
            limits.enabled.then_some(limits.subscriber_bytes_per_sec),
            std::time::Instant::now(),
        );
        let mut tip = self.shard.watch_tip();
        let mut last_event = Instant::now() - HEARTBEAT;
        loop {
            if Instant::now() >= deadline
                || !self.catalog.holds_subscription(
                    &self.consumer_arn,
                    self.shard.index,
                    self.generation,
                )
            {
                break;
            }
            tip.borrow_and_update();
            let outcome = match self
                .catalog
                .read(&self.stream, &self.shard, offset, RECORDS_PER_EVENT)
                .await
            {
                Ok(outcome) => outcome,
                Err(error) => {
                    let error = super::aws_error(error);
                    let payload = self.format.encode(&error.to_value());
                    let frame =
                        event_stream::exception(error.kind, self.format.content_type(), &payload)
                            .unwrap_or_default();
                    let _ = self.sender.send(Bytes::from(frame)).await;
                    break;
                }
            };
            let delivered = outcome.records.len();
            let delivered_bytes: usize = outcome.records.iter().map(|r| r.data.len()).sum();
            let finished = outcome.next_offset.is_none();
            if delivered > 0 || finished || last_event.elapsed() >= HEARTBEAT {
                let continuation = outcome.records.last().map_or_else(
                    || {
                        SequenceNumber {
                            stream_epoch: self.stream.epoch,
                            shard_index: self.shard.index,
                            position: offset,
                        }
                        .encode()
                    },
                    |r| r.sequence_number.clone(),
                );
                let mut event = Value::map()
                    .with(
                        "Records",
                        Value::List(outcome.records.into_iter().map(record_value).collect()),
                    )
                    .with("ContinuationSequenceNumber", continuation)
                    .with("MillisBehindLatest", outcome.millis_behind_latest);
                if let Some(children) = outcome.child_shards {
                    event = event.with("ChildShards", child_shards_value(children));
                }
                let payload = self.format.encode(&event.build());
                let frame = event_stream::event(
                    "SubscribeToShardEvent",
                    self.format.content_type(),
                    &payload,
                )
                .unwrap_or_default();
                if self.sender.send(Bytes::from(frame)).await.is_err() {
                    break;
                }
                last_event = Instant::now();
                if let Some(until) = pace
                    .as_mut()
                    .and_then(|p| p.sent(delivered_bytes, std::time::Instant::now()))
                {
                    tokio::select! {
                        _ = tokio::time::sleep_until(Instant::from_std(until)) => {}
                        _ = self.sender.closed() => break,
                    }
                }
            }
            match outcome.next_offset {
                None => break,
                Some(next) => offset = next,
            }
            if delivered == 0 {
                let wake = (last_event + HEARTBEAT).min(deadline);
                tokio::select! {
                    changed = tip.changed() => if changed.is_err() { break },
                    _ = tokio::time::sleep_until(wake) => {}
                    _ = self.sender.closed() => break,
                }
            }
        }
    }
}
