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
    Suite(suite::SuiteArgs),
    /// Waits until a Kinesis endpoint answers (for scripts starting servers).
    Wait(WaitArgs),
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
