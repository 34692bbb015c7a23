//! `get-records-latency` and `subscribe-latency`: a writer puts records at a fixed rate (open
//! loop), each carrying its intended send time; a reader follows the shard with GetRecords
//! polling or a SubscribeToShard push, and measures put→read latency from that intended time.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use bytes::{Buf, BytesMut};
use http_body_util::BodyExt;
use hyper::StatusCode;
use riffle_wire::event_stream::{self, EventStreamError};
use serde_json::{Value, json};

use super::Timing;
use crate::histogram::Histogram;
use crate::kinesis::{Kinesis, unique_stream_name};
use crate::open_loop::{self, Schedule};
use crate::report::Outcome;

/// Options of both read-latency workloads.
#[derive(clap::Args, Clone, Debug)]
pub struct ReadLatencyArgs {
    /// Kinesis endpoint, e.g. http://127.0.0.1:4567.
    #[arg(long)]
    pub endpoint: String,
    /// Records put per second.
    #[arg(long, default_value_t = 100.0)]
    pub rate: f64,
    /// Bytes of data per record (at least 16: the send time and the record's index).
    #[arg(long, default_value_t = 1024)]
    pub record_bytes: usize,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub timing: Timing,
}

/// How the reader follows the shard.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Reader {
    /// GetRecords in a loop, never sleeping (unless throttled).
    Poll,
    /// One SubscribeToShard, resubscribing from the continuation if it ends.
    Subscribe,
}

/// How long the reader keeps looking for records after the writer stops.
const GRACE: Duration = Duration::from_secs(5);

/// Records seen by the reader.
struct Arrivals {
    base: Instant,
    /// Records with a smaller index were written during the warm-up: read, but not measured.
    measure_from_index: u64,
    latency: Histogram,
    seen: Vec<bool>,
    duplicates: u64,
    read: Arc<AtomicU64>,
}

impl Arrivals {
    /// Accounts one record's data: `[intended send, ns since base][index]...`.
    fn observe(&mut self, data: &[u8]) {
        let now = self.base.elapsed().as_nanos() as u64;
        let (Some(stamp), Some(index)) = (
            data.get(..8)
                .map(|b| u64::from_be_bytes(b.try_into().unwrap_or([0; 8]))),
            data.get(8..16)
                .map(|b| u64::from_be_bytes(b.try_into().unwrap_or([0; 8]))),
        ) else {
            return;
        };
        let Some(slot) = self.seen.get_mut(index as usize) else {
            return;
        };
        if *slot {
            self.duplicates += 1;
            return;
        }
        *slot = true;
        self.read.fetch_add(1, Ordering::Relaxed);
        if index >= self.measure_from_index {
            self.latency.record(now.saturating_sub(stamp));
        }
    }

    fn records(&mut self, records: &Value) -> Result<()> {
        for r in records.as_array().into_iter().flatten() {
            let data = r["Data"]
                .as_str()
                .ok_or_else(|| anyhow!("record without Data"))?;
            let data = STANDARD.decode(data).context("record Data is not base64")?;
            self.observe(&data);
        }
        Ok(())
    }
}

/// Runs the workload with the given reader.
pub async fn run(args: &ReadLatencyArgs, reader: Reader) -> Result<Outcome> {
    if args.record_bytes < 16 {
        bail!("--record-bytes must be at least 16");
    }
    let kinesis = Kinesis::new(&args.endpoint)?;
    let stream = unique_stream_name(match reader {
        Reader::Poll => "get-records",
        Reader::Subscribe => "subscribe",
    });
    let info = kinesis.create_stream(&stream, 1).await?;
    let shard = info.shard()?.to_string();
    let schedule = Schedule {
        rate: args.rate,
        warmup: args.timing.warmup(),
        measured: args.timing.measured(),
    };
    let base = Instant::now();
    let read = Arc::new(AtomicU64::new(0));
    let arrivals = Arrivals {
        base,
        measure_from_index: (schedule.warmup.as_secs_f64() * schedule.rate).ceil() as u64,
        latency: Histogram::new(),
        seen: vec![false; schedule.len() as usize],
        duplicates: 0,
        read: read.clone(),
    };
    let acked = Arc::new(AtomicU64::new(0));
    let writer_done = Arc::new(AtomicBool::new(false));

    // The reader is in place before the first record is written.
    let reader_task = match reader {
        Reader::Poll => {
            let iterator = kinesis
                .shard_iterator(&stream, &shard, "TRIM_HORIZON")
                .await?;
            let follow = Follow {
                kinesis: kinesis.clone(),
                acked: acked.clone(),
                read: read.clone(),
                writer_done: writer_done.clone(),
            };
            tokio::spawn(follow.poll(iterator, arrivals))
        }
        Reader::Subscribe => {
            let consumer = kinesis
                .register_consumer(&info.arn, &format!("bench-{:08x}", rand::random::<u32>()))
                .await?;
            let follow = Follow {
                kinesis: kinesis.clone(),
                acked: acked.clone(),
                read: read.clone(),
                writer_done: writer_done.clone(),
            };
            let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
            let task = tokio::spawn(follow.subscribe(consumer, shard.clone(), arrivals, ready_tx));
            ready_rx
                .await
                .map_err(|_| anyhow!("the subscription ended before it started"))??;
            task
        }
    };

    let started = args.timing.probe().start();
    let payload_len = args.record_bytes;
    let stream_json = Value::from(stream.as_str()).to_string();
    let write = {
        let kinesis = kinesis.clone();
        let acked = acked.clone();
        open_loop::run(schedule, 10_000, move |tick| {
            let kinesis = kinesis.clone();
            let acked = acked.clone();
            let stamp = tick.intended.saturating_duration_since(base).as_nanos() as u64;
            let mut data = vec![0u8; payload_len];
            data[..8].copy_from_slice(&stamp.to_be_bytes());
            data[8..16].copy_from_slice(&tick.index.to_be_bytes());
            let body = format!(
                "{{\"StreamName\":{stream_json},\"PartitionKey\":\"pk-{:016x}\",\"Data\":\"{}\"}}",
                tick.index,
                STANDARD.encode(&data)
            );
            async move {
                let reply = kinesis.call_raw("PutRecord", body.into()).await?;
                if reply.status != StatusCode::OK {
                    bail!(
                        "PutRecord: HTTP {} {}",
                        reply.status,
                        reply.error_type().unwrap_or_default()
                    );
                }
                acked.fetch_add(1, Ordering::Relaxed);
                Ok(())
            }
        })
    };
    let written = write.await;
    writer_done.store(true, Ordering::Relaxed);
    let read_result = reader_task.await.context("reader task")?;
    let usage = started.finish();
    kinesis.delete_stream(&stream).await;
    let (arrivals, reader_error) = match read_result {
        Ok(a) => (a, None),
        Err((a, e)) => (a, Some(e)),
    };

    let name = match reader {
        Reader::Poll => "get-records-latency",
        Reader::Subscribe => "subscribe-latency",
    };
    let mut o = Outcome::new(&format!(
        "{name} ({} records/s of {} B, put → read)",
        args.rate, args.record_bytes
    ));
    o.latency("", &arrivals.latency);
    let acked = acked.load(Ordering::Relaxed);
    let read = read.load(Ordering::Relaxed);
    o.metric("records_acked", acked as f64, "");
    o.metric("records_read", read as f64, "");
    o.metric("records_missing", acked.saturating_sub(read) as f64, "");
    o.metric("duplicates", arrivals.duplicates as f64, "");
    o.metric("put_errors", written.errors as f64, "calls");
    o.metric(
        "put_p99_ms",
        written.latency.quantile(0.99) as f64 / 1e6,
        "ms",
    );
    o.cpu(usage);
    if let Some(e) = written.first_error {
        o.note(format!("first put error: {e}"));
    }
    if let Some(e) = reader_error {
        o.note(format!("reader: {e:#}"));
    }
    if read == 0 {
        bail!(
            "the reader saw no record{}",
            o.notes
                .first()
                .map(|n| format!(" ({n})"))
                .unwrap_or_default()
        );
    }
    Ok(o)
}

/// The reader's side.
struct Follow {
    kinesis: Kinesis,
    acked: Arc<AtomicU64>,
    read: Arc<AtomicU64>,
    writer_done: Arc<AtomicBool>,
}

type ReaderResult = Result<Arrivals, (Arrivals, anyhow::Error)>;

impl Follow {
    /// Whether the reader may stop: the writer is done and every acknowledged record was read,
    /// or the grace period after the writer stopped has run out.
    fn finished(&self, writer_done_at: &mut Option<Instant>) -> bool {
        if !self.writer_done.load(Ordering::Relaxed) {
            return false;
        }
        let at = *writer_done_at.get_or_insert_with(Instant::now);
        self.read.load(Ordering::Relaxed) >= self.acked.load(Ordering::Relaxed)
            || at.elapsed() > GRACE
    }

    async fn poll(self, mut iterator: String, mut arrivals: Arrivals) -> ReaderResult {
        let mut writer_done_at = None;
        let mut throttled = 0u64;
        while !self.finished(&mut writer_done_at) {
            let body = json!({"ShardIterator": iterator, "Limit": 10_000});
            let reply = match self
                .kinesis
                .call_raw("GetRecords", body.to_string().into())
                .await
            {
                Ok(r) => r,
                Err(e) => return Err((arrivals, e)),
            };
            if reply.status != StatusCode::OK {
                if reply.error_type().as_deref() == Some("ProvisionedThroughputExceededException") {
                    // The server's read limit: wait out one Kinesis read slot (5 per second).
                    throttled += 1;
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                }
                let e = anyhow!(
                    "GetRecords: HTTP {} {} (after {throttled} throttled calls)",
                    reply.status,
                    String::from_utf8_lossy(&reply.body)
                );
                return Err((arrivals, e));
            }
            let page: Value = match serde_json::from_slice(&reply.body) {
                Ok(v) => v,
                Err(e) => return Err((arrivals, e.into())),
            };
            if let Err(e) = arrivals.records(&page["Records"]) {
                return Err((arrivals, e));
            }
            match page["NextShardIterator"].as_str() {
                Some(next) => iterator = next.to_string(),
                None => return Err((arrivals, anyhow!("the shard closed"))),
            }
        }
        Ok(arrivals)
    }

    async fn subscribe(
        self,
        consumer: String,
        shard: String,
        mut arrivals: Arrivals,
        ready: tokio::sync::oneshot::Sender<Result<()>>,
    ) -> ReaderResult {
        let mut ready = Some(ready);
        let mut position = json!({"Type": "TRIM_HORIZON"});
        let mut writer_done_at = None;
        while !self.finished(&mut writer_done_at) {
            let request = json!({
                "ConsumerARN": consumer,
                "ShardId": shard,
                "StartingPosition": position,
            });
            let outcome = self
                .subscription(&request, &mut arrivals, &mut ready, &mut writer_done_at)
                .await;
            match outcome {
                Ok(Some(continuation)) => {
                    position =
                        json!({"Type": "AFTER_SEQUENCE_NUMBER", "SequenceNumber": continuation});
                }
                Ok(None) => break,
                Err(e) => {
                    if let Some(ready) = ready.take() {
                        let _ = ready.send(Err(anyhow!("{e:#}")));
                    }
                    return Err((arrivals, e));
                }
            }
        }
        Ok(arrivals)
    }

    /// Reads one subscription until it ends (returning where to continue) or the reader is
    /// finished (returning `None`).
    async fn subscription(
        &self,
        request: &Value,
        arrivals: &mut Arrivals,
        ready: &mut Option<tokio::sync::oneshot::Sender<Result<()>>>,
        writer_done_at: &mut Option<Instant>,
    ) -> Result<Option<String>> {
        let response = self
            .kinesis
            .send("SubscribeToShard", request.to_string().into())
            .await?;
        if response.status() != StatusCode::OK {
            let body = response.into_body().collect().await?.to_bytes();
            bail!(
                "SubscribeToShard: {}",
                String::from_utf8_lossy(&body[..body.len().min(300)])
            );
        }
        let mut body = response.into_body();
        let mut buf = BytesMut::new();
        let mut continuation = None;
        loop {
            // Decode every whole message buffered so far.
            loop {
                match event_stream::decode_message(&buf) {
                    Ok((message, used)) => {
                        buf.advance(used);
                        let kind = message.header_str(":message-type").unwrap_or_default();
                        let event = message.header_str(":event-type").unwrap_or_default();
                        if kind != "event" {
                            bail!(
                                "SubscribeToShard sent {kind} {}: {}",
                                message.header_str(":exception-type").unwrap_or_default(),
                                String::from_utf8_lossy(&message.payload)
                            );
                        }
                        match event {
                            "initial-response" => {
                                if let Some(ready) = ready.take() {
                                    let _ = ready.send(Ok(()));
                                }
                            }
                            "SubscribeToShardEvent" => {
                                let payload: Value = serde_json::from_slice(&message.payload)?;
                                arrivals.records(&payload["Records"])?;
                                continuation = payload["ContinuationSequenceNumber"]
                                    .as_str()
                                    .map(str::to_string);
                            }
                            _ => {}
                        }
                    }
                    Err(EventStreamError::Incomplete { .. }) => break,
                    Err(e) => return Err(e.into()),
                }
            }
            if self.finished(writer_done_at) {
                return Ok(None);
            }
            // Wake up now and then even if nothing arrives, to notice the end of the run.
            let frame = tokio::time::timeout(Duration::from_millis(200), body.frame()).await;
            match frame {
                Err(_) => continue,
                Ok(None) => return Ok(continuation),
                Ok(Some(frame)) => {
                    if let Ok(data) = frame?.into_data() {
                        buf.extend_from_slice(&data);
                    }
                }
            }
        }
    }
}
