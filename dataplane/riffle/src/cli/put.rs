//! `riffle put`: write records given as arguments, or one per line of standard input.
//!
//! Lines are sent as soon as they are read, batching whatever has accumulated meanwhile (up to
//! 500 records or 4 MiB per Put), so a slow pipe sees its records promptly and a fast one gets
//! full batches. One Put is in flight at a time and records a shard refuses (throughput) are
//! retried before the next batch, which keeps each partition key's records in input order.

use std::io::{BufRead, IsTerminal, Write};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::Bytes;
use riffle_proto::v1;
use tokio::sync::mpsc;

use super::{Client, Connection};

/// Most records in one Put (the server's limit).
const BATCH_RECORDS: usize = 500;
/// Most bytes of keys and data in one Put.
const BATCH_BYTES: usize = 4 << 20;
/// Attempts at records a shard refuses before giving up.
const ATTEMPTS: u32 = 10;
/// First pause before retrying refused records; doubles up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(50);
const MAX_BACKOFF: Duration = Duration::from_secs(2);
/// Input shorter than this gets no progress line.
const QUIET_FOR: Duration = Duration::from_secs(1);
const PROGRESS_EVERY: Duration = Duration::from_millis(200);

/// Arguments of `riffle put`.
#[derive(clap::Args, Debug)]
pub struct PutArgs {
    /// The stream to write to.
    pub stream: String,
    /// Partition key of every record; without it, each record gets a random key (spreading
    /// records over all shards).
    #[arg(long, short = 'k')]
    pub partition_key: Option<String>,
    /// Records to write; without any, each line of standard input is one record.
    pub data: Vec<String>,
    #[command(flatten)]
    pub connection: Connection,
}

/// Runs `riffle put`.
pub async fn run(args: PutArgs) -> anyhow::Result<()> {
    let mut client = args.connection.connect().await?;
    if args.data.is_empty() {
        let summary = put_lines(
            &mut client,
            &args.stream,
            args.partition_key.as_deref(),
            std::io::BufReader::with_capacity(1 << 20, std::io::stdin()),
            std::io::stderr().is_terminal(),
        )
        .await?;
        eprintln!("{}", summary.describe(&args.stream));
        Ok(())
    } else {
        let records = args
            .data
            .into_iter()
            .map(|data| record(args.partition_key.as_deref(), Bytes::from(data)))
            .collect();
        let mut out = std::io::stdout();
        put_arguments(&mut client, &args.stream, records, &mut out).await
    }
}

/// A record to put, with `partition_key` or else a random one.
pub fn record(partition_key: Option<&str>, data: Bytes) -> v1::PutRecord {
    v1::PutRecord {
        partition_key: partition_key.map_or_else(random_key, str::to_string),
        data,
        explicit_hash_key: None,
    }
}

/// A random partition key: 128 random bits in hex.
fn random_key() -> String {
    format!("{:032x}", rand::random::<u128>())
}

/// Writes the records given on the command line and prints where each went.
pub async fn put_arguments(
    client: &mut Client,
    stream: &str,
    records: Vec<v1::PutRecord>,
    out: &mut (dyn Write + Send),
) -> anyhow::Result<()> {
    let mut batch = Vec::new();
    let mut bytes = 0;
    let mut all = records.into_iter().peekable();
    while let Some(record) = all.next() {
        bytes += record.partition_key.len() + record.data.len();
        batch.push(record);
        let full = all.peek().is_none_or(|next| {
            batch.len() >= BATCH_RECORDS
                || bytes + next.partition_key.len() + next.data.len() > BATCH_BYTES
        });
        if full {
            for result in put_batch(client, stream, std::mem::take(&mut batch)).await? {
                writeln!(out, "{}  {}", result.shard_id, result.sequence_number)?;
            }
            bytes = 0;
        }
    }
    out.flush()?;
    Ok(())
}

/// What a `put` of standard input did.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Summary {
    /// Records written.
    pub records: u64,
    /// Bytes of data written.
    pub bytes: u64,
    /// How long it took.
    pub elapsed: Duration,
}

impl Summary {
    /// The closing line: how much was written to `stream`, how fast.
    pub fn describe(&self, stream: &str) -> String {
        let seconds = self.elapsed.as_secs_f64().max(1e-6);
        let plural = if self.records == 1 { "" } else { "s" };
        format!(
            "put {} record{plural} ({}) to {stream} in {:.2} s, {:.0} records/s",
            self.records,
            human_bytes(self.bytes),
            seconds,
            self.records as f64 / seconds
        )
    }
}

/// Writes each line of `input` (without its line ending) as a record. With `progress`, a line
/// on standard error, rewritten in place, counts the records sent once input lasts a while.
pub async fn put_lines(
    client: &mut Client,
    stream: &str,
    partition_key: Option<&str>,
    input: impl BufRead + Send + 'static,
    progress: bool,
) -> anyhow::Result<Summary> {
    let (lines, mut received) = mpsc::channel::<std::io::Result<Bytes>>(4 * BATCH_RECORDS);
    // Reading runs ahead on its own thread while a Put is in flight, which is what fills the
    // next batch. The thread is detached: after a failed Put it may still be blocked reading a
    // terminal, and must not keep the process from exiting.
    std::thread::Builder::new()
        .name("put-input".into())
        .spawn(move || read_lines(input, &lines))
        .context("starting the input reader")?;
    let started = Instant::now();
    let mut meter = Meter {
        enabled: progress,
        started,
        shown: None,
    };
    let mut summary = Summary {
        records: 0,
        bytes: 0,
        elapsed: Duration::ZERO,
    };
    let outcome = async {
        while let Some(first) = received.recv().await {
            let mut batch = vec![record(
                partition_key,
                first.context("reading standard input")?,
            )];
            let mut bytes = batch[0].partition_key.len() + batch[0].data.len();
            while batch.len() < BATCH_RECORDS && bytes < BATCH_BYTES {
                match received.try_recv() {
                    Ok(line) => {
                        let next = record(partition_key, line.context("reading standard input")?);
                        bytes += next.partition_key.len() + next.data.len();
                        batch.push(next);
                    }
                    Err(_) => break,
                }
            }
            let count = batch.len() as u64;
            let data: u64 = batch.iter().map(|r| r.data.len() as u64).sum();
            put_batch(client, stream, batch).await?;
            summary.records += count;
            summary.bytes += data;
            meter.show(summary.records, summary.bytes);
        }
        anyhow::Ok(())
    }
    .await;
    meter.clear();
    outcome?;
    summary.elapsed = started.elapsed();
    Ok(summary)
}

/// Sends each line of `input` to `lines` until the input ends, fails, or nobody listens.
fn read_lines(mut input: impl BufRead, lines: &mpsc::Sender<std::io::Result<Bytes>>) {
    loop {
        let mut line = Vec::new();
        match input.read_until(b'\n', &mut line) {
            Ok(0) => return,
            Ok(_) => {
                if line.last() == Some(&b'\n') {
                    line.pop();
                    if line.last() == Some(&b'\r') {
                        line.pop();
                    }
                }
                if lines.blocking_send(Ok(Bytes::from(line))).is_err() {
                    return;
                }
            }
            Err(error) if error.kind() == std::io::ErrorKind::Interrupted => {}
            Err(error) => {
                let _ = lines.blocking_send(Err(error));
                return;
            }
        }
    }
}

/// Writes one batch, retrying the records a shard refuses; returns every record's result in
/// request order.
async fn put_batch(
    client: &mut Client,
    stream: &str,
    records: Vec<v1::PutRecord>,
) -> anyhow::Result<Vec<v1::PutResult>> {
    let mut results: Vec<Option<v1::PutResult>> = vec![None; records.len()];
    let mut pending: Vec<(usize, v1::PutRecord)> = records.into_iter().enumerate().collect();
    let mut backoff = FIRST_BACKOFF;
    for attempt in 1..=ATTEMPTS {
        let request = v1::PutRequest {
            stream: stream.to_string(),
            records: pending.iter().map(|(_, r)| r.clone()).collect(),
        };
        let response = client
            .api
            .put(request)
            .await
            .map_err(|s| client.error(s))?
            .into_inner();
        if response.results.len() != pending.len() {
            bail!(
                "the server answered {} results for {} records",
                response.results.len(),
                pending.len()
            );
        }
        let mut refused = Vec::new();
        let mut last_error = None;
        for ((position, record), result) in pending.into_iter().zip(response.results) {
            if result.error_code.is_empty() {
                results[position] = Some(result);
            } else {
                last_error = Some(format!("{}: {}", result.error_code, result.error_message));
                refused.push((position, record));
            }
        }
        if refused.is_empty() {
            break;
        }
        if attempt == ATTEMPTS {
            bail!(
                "{} records were refused {ATTEMPTS} times; last error: {}",
                refused.len(),
                last_error.unwrap_or_default()
            );
        }
        pending = refused;
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
    Ok(results.into_iter().flatten().collect())
}

/// The progress line of a long `put`.
struct Meter {
    enabled: bool,
    started: Instant,
    shown: Option<Instant>,
}

impl Meter {
    fn show(&mut self, records: u64, bytes: u64) {
        let elapsed = self.started.elapsed();
        if !self.enabled
            || elapsed < QUIET_FOR
            || self.shown.is_some_and(|at| at.elapsed() < PROGRESS_EVERY)
        {
            return;
        }
        let seconds = elapsed.as_secs_f64();
        eprint!(
            "\r{records} records sent ({}), {:.0} records/s \x1b[K",
            human_bytes(bytes),
            records as f64 / seconds
        );
        self.shown = Some(Instant::now());
    }

    fn clear(&mut self) {
        if self.shown.take().is_some() {
            eprint!("\r\x1b[K");
        }
    }
}

/// A byte count for people: `512 B`, `1.5 KiB`, `3.2 MiB`.
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_keys_differ() {
        let (a, b) = (random_key(), random_key());
        assert_eq!(a.len(), 32);
        assert_ne!(a, b);
        assert_eq!(record(Some("fixed"), Bytes::new()).partition_key, "fixed");
    }

    #[test]
    fn sizes_and_summaries_read_well() {
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(5 << 20), "5.0 MiB");
        let summary = Summary {
            records: 2000,
            bytes: 2048,
            elapsed: Duration::from_secs(2),
        };
        assert_eq!(
            summary.describe("orders"),
            "put 2000 records (2.0 KiB) to orders in 2.00 s, 1000 records/s"
        );
    }
}
