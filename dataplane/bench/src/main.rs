//! `riffle-bench`: a load generator for any Kinesis Data Streams endpoint (Riffle, kinesalite,
//! ...) and for Riffle's gRPC API.
//!
//! Fixed-rate workloads are open loop and measure latency from each request's intended start,
//! so a stall is charged to every request it delays; maximum-throughput workloads are closed
//! loop. `riffle-bench suite` runs everything against several servers and prints one table.

mod closed_loop;
mod cpu;
mod histogram;
mod kinesis;
mod open_loop;
mod put_body;
mod report;
mod response_scan;
mod suite;
mod workloads;

use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use clap::{Parser, Subcommand};

use report::Outcome;
use workloads::disk_ceiling::DiskCeilingArgs;
use workloads::drain::DrainArgs;
use workloads::grpc::GrpcPutThroughputArgs;
use workloads::put_record_latency::PutRecordLatencyArgs;
use workloads::put_records_throughput::PutRecordsThroughputArgs;
use workloads::read_latency::{ReadLatencyArgs, Reader};

#[derive(Parser)]
#[command(
    name = "riffle-bench",
    version,
    about = "Load generator for Kinesis-compatible endpoints"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Print the outcome as one JSON object instead of text.
    #[arg(long, global = true)]
    json: bool,
    /// Worker threads of the load generator (default: one per core).
    #[arg(long, global = true, env = "BENCH_CLIENT_THREADS")]
    client_threads: Option<usize>,
}

#[derive(Subcommand)]
enum Command {
    /// Closed-loop PutRecords of full batches: MiB/s and records/s.
    PutRecordsThroughput(PutRecordsThroughputArgs),
    /// Open-loop PutRecord at a fixed byte rate: acknowledgement latency.
    PutRecordLatency(PutRecordLatencyArgs),
    /// A fixed-rate writer and a GetRecords poller: put→read latency.
    GetRecordsLatency(ReadLatencyArgs),
    /// A fixed-rate writer and a SubscribeToShard reader: put→read latency.
    SubscribeLatency(ReadLatencyArgs),
    /// Preload a stream, then read it with GetRecords as fast as possible: MiB/s.
    Drain(DrainArgs),
    /// Closed-loop Put over Riffle's gRPC API.
    GrpcPutThroughput(GrpcPutThroughputArgs),
    /// Preload a stream over gRPC, then read it with gRPC GetRecords: MiB/s.
    GrpcDrain(DrainArgs),
    /// Sequential append + fdatasync throughput and 4 KiB fdatasync latency of a directory's disk.
    DiskCeiling(DiskCeilingArgs),
    /// Every workload against Riffle and its peers, then one table.
    Suite(Box<suite::SuiteArgs>),
    /// Waits until a Kinesis endpoint answers (for scripts starting servers).
    Wait(WaitArgs),
    /// Waits until the replicas of a replicated group agree on a leader; prints its position
    /// in --endpoints (from 0) and its endpoint.
    Leader(LeaderArgs),
}

#[derive(clap::Args)]
struct LeaderArgs {
    /// Kinesis endpoints of every replica (comma-separated).
    #[arg(long, value_delimiter = ',', required = true)]
    endpoints: Vec<String>,
    /// Give up after this many seconds.
    #[arg(long, default_value_t = 60.0)]
    timeout_seconds: f64,
    /// The replicas' pids, in the order of --endpoints: fail at once if one exits.
    #[arg(long, value_delimiter = ',')]
    pids: Vec<u32>,
}

/// A gauge's value in a Prometheus text page (the first series of that name).
fn gauge(page: &str, name: &str) -> Option<u64> {
    page.lines().find_map(|line| {
        let rest = line.strip_prefix(name)?;
        let rest = rest
            .strip_prefix('{')
            .map_or(Some(rest), |r| r.split_once('}').map(|(_, value)| value))?;
        rest.trim().parse().ok()
    })
}

/// Polls every replica's `/metrics` until exactly one reports leading and every replica names
/// the same leader; returns its position in `args.endpoints`.
async fn leader(args: &LeaderArgs) -> Result<usize> {
    let clients = args
        .endpoints
        .iter()
        .map(|e| kinesis::Kinesis::new(e))
        .collect::<Result<Vec<_>>>()?;
    let deadline = Instant::now() + Duration::from_secs_f64(args.timeout_seconds);
    loop {
        let mut leaders = Vec::new();
        let mut named = Vec::new();
        for client in &clients {
            let page =
                match tokio::time::timeout(Duration::from_secs(2), client.get("/metrics")).await {
                    Ok(Ok(reply)) if reply.status.is_success() => {
                        String::from_utf8_lossy(&reply.body).into_owned()
                    }
                    _ => String::new(),
                };
            leaders.push(gauge(&page, "riffle_replica_is_leader") == Some(1));
            named.push(gauge(&page, "riffle_replica_leader"));
        }
        let leading: Vec<usize> = (0..leaders.len()).filter(|&i| leaders[i]).collect();
        if let [only] = leading[..]
            && named
                .iter()
                .all(|n| *n == named[only] && n.is_some_and(|id| id > 0))
        {
            return Ok(only);
        }
        let last = format!("leading: {leading:?}, leaders named: {named:?}");
        if Instant::now() >= deadline {
            bail!(
                "the replicas did not agree on a leader within {} s ({last})",
                args.timeout_seconds
            );
        }
        for pid in &args.pids {
            if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
                bail!("replica pid {pid} exited before a leader was elected ({last})");
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[derive(clap::Args)]
struct WaitArgs {
    /// Kinesis endpoint to poll with ListStreams.
    #[arg(long)]
    endpoint: String,
    /// Give up after this many seconds.
    #[arg(long, default_value_t = 60.0)]
    timeout_seconds: f64,
    /// Fail at once if this process exits (the server being waited for).
    #[arg(long)]
    pid: Option<u32>,
}

async fn wait(args: &WaitArgs) -> Result<()> {
    let kinesis = kinesis::Kinesis::new(&args.endpoint)?;
    let deadline = Instant::now() + Duration::from_secs_f64(args.timeout_seconds);
    loop {
        let attempt = tokio::time::timeout(Duration::from_secs(2), kinesis.ping()).await;
        match attempt {
            Ok(Ok(())) => return Ok(()),
            Ok(Err(e)) if Instant::now() >= deadline => {
                bail!(
                    "{} did not answer within {} s: {e:#}",
                    args.endpoint,
                    args.timeout_seconds
                )
            }
            Err(_) if Instant::now() >= deadline => {
                bail!(
                    "{} did not answer within {} s",
                    args.endpoint,
                    args.timeout_seconds
                )
            }
            _ => {}
        }
        if let Some(pid) = args.pid
            && !std::path::Path::new(&format!("/proc/{pid}")).exists()
        {
            bail!(
                "the server (pid {pid}) exited before {} answered",
                args.endpoint
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn run(command: Command) -> Result<Option<Outcome>> {
    Ok(Some(match command {
        Command::PutRecordsThroughput(a) => workloads::put_records_throughput::run(&a).await?,
        Command::PutRecordLatency(a) => workloads::put_record_latency::run(&a).await?,
        Command::GetRecordsLatency(a) => workloads::read_latency::run(&a, Reader::Poll).await?,
        Command::SubscribeLatency(a) => workloads::read_latency::run(&a, Reader::Subscribe).await?,
        Command::Drain(a) => workloads::drain::run(&a).await?,
        Command::GrpcPutThroughput(a) => workloads::grpc::put_throughput(&a).await?,
        Command::GrpcDrain(a) => workloads::grpc::drain(&a).await?,
        Command::DiskCeiling(a) => {
            tokio::task::spawn_blocking(move || workloads::disk_ceiling::run(&a)).await??
        }
        Command::Suite(a) => {
            suite::run(&a).await?;
            return Ok(None);
        }
        Command::Wait(a) => {
            wait(&a).await?;
            return Ok(None);
        }
        Command::Leader(a) => {
            let at = leader(&a).await?;
            println!("{at} {}", a.endpoints[at]);
            return Ok(None);
        }
    }))
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    if let Some(threads) = cli.client_threads {
        runtime.worker_threads(threads.max(1));
    }
    let runtime = runtime.enable_all().build()?;
    if let Some(outcome) = runtime.block_on(run(cli.command))? {
        if cli.json {
            println!("{}", outcome.to_json());
        } else {
            print!("{}", outcome.to_text());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::gauge;

    #[test]
    fn reads_gauges_with_and_without_labels() {
        let page = "# HELP riffle_replica_is_leader x\n# TYPE riffle_replica_is_leader gauge\n\
                    riffle_replica_is_leader{replica=\"2\"} 1\nriffle_replica_leader{replica=\"2\"} 2\nplain 7\n";
        assert_eq!(gauge(page, "riffle_replica_is_leader"), Some(1));
        assert_eq!(gauge(page, "riffle_replica_leader"), Some(2));
        assert_eq!(gauge(page, "plain"), Some(7));
        assert_eq!(gauge(page, "riffle_replica_term"), None);
    }
}
