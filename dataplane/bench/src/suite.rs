//! `suite`: every workload against Riffle and kinesalite (and optionally a non-durable Riffle
//! and a replicated group of three Riffle replicas) in one run, then one table of ratios,
//! targets and the disk ceiling.
//!
//! A workload that fails against a peer is shown as failed and the run goes on; one that fails
//! against a durable Riffle (single or replicated) makes the suite exit non-zero after printing
//! everything, since that is a broken server, not a slow one. Numbers never fail the run.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};

use crate::histogram::Histogram;
use crate::report::{Outcome, format_value};
use crate::workloads::Timing;
use crate::workloads::disk_ceiling::{self, DiskCeilingArgs};
use crate::workloads::drain::{self, DrainArgs};
use crate::workloads::grpc::{self, GrpcPutThroughputArgs};
use crate::workloads::put_record_latency::{self, PutRecordLatencyArgs};
use crate::workloads::put_records_throughput::{self, PutRecordsThroughputArgs};
use crate::workloads::read_latency::{self, ReadLatencyArgs, Reader};

/// Options of `suite`.
#[derive(clap::Args, Clone, Debug)]
pub struct SuiteArgs {
    /// Riffle's Kinesis endpoint (leave out to measure only the other columns).
    #[arg(long)]
    pub riffle: Option<String>,
    /// Riffle's gRPC endpoint.
    #[arg(long)]
    pub riffle_grpc: Option<String>,
    /// Riffle's pid, to report its CPU use.
    #[arg(long)]
    pub riffle_pid: Option<u32>,
    /// kinesalite's endpoint.
    #[arg(long)]
    pub kinesalite: Option<String>,
    /// kinesalite's pid.
    #[arg(long)]
    pub kinesalite_pid: Option<u32>,
    /// A second Riffle started with `--sync none` (acknowledges before fdatasync: NOT durable),
    /// shown in its own, labelled column.
    #[arg(long)]
    pub nosync: Option<String>,
    /// The non-durable Riffle's gRPC endpoint.
    #[arg(long)]
    pub nosync_grpc: Option<String>,
    /// The non-durable Riffle's pid.
    #[arg(long)]
    pub nosync_pid: Option<u32>,
    /// The Kinesis endpoint of the leader of a replicated group of three Riffle replicas
    /// (replicationFactor 3), shown in its own column with its own targets.
    #[arg(long)]
    pub replicated: Option<String>,
    /// The replicas' pids, the leader's first (comma-separated): their CPU is reported
    /// together and each.
    #[arg(long, value_delimiter = ',')]
    pub replicated_pids: Vec<u32>,
    /// Every replica's Kinesis endpoint (comma-separated): between workloads, each one's
    /// deletion backlog is waited for, as the other Riffles' are.
    #[arg(long, value_delimiter = ',')]
    pub replicated_endpoints: Vec<String>,
    /// Directory on the servers' data disk for the disk ceiling.
    #[arg(long)]
    pub disk_dir: Option<PathBuf>,
    /// Seconds measured per workload.
    #[arg(long, default_value_t = 10.0, env = "BENCH_SECONDS")]
    pub seconds: f64,
    /// Seconds of warm-up per workload.
    #[arg(long, default_value_t = 1.0, env = "BENCH_WARMUP_SECONDS")]
    pub warmup_seconds: f64,
    /// Calls in flight in the throughput workloads.
    #[arg(long, default_value_t = 8, env = "BENCH_CONCURRENCY")]
    pub concurrency: usize,
    /// PutRecord latency workload: bytes per second.
    #[arg(long, default_value_t = 1_048_576, env = "BENCH_PUT_RATE_BYTES")]
    pub put_rate_bytes: u64,
    /// Read latency workloads: records per second.
    #[arg(long, default_value_t = 100.0, env = "BENCH_READ_RATE")]
    pub read_rate: f64,
    /// Drain workloads: MiB to preload.
    #[arg(long, default_value_t = 512, env = "BENCH_DRAIN_MB")]
    pub drain_mb: u64,
    /// Drain workloads: most seconds spent preloading.
    #[arg(long, default_value_t = 90.0, env = "BENCH_PRELOAD_MAX_SECONDS")]
    pub preload_max_seconds: f64,
    /// Disk ceiling: seconds per test.
    #[arg(long, default_value_t = 5.0, env = "BENCH_DISK_SECONDS")]
    pub disk_seconds: f64,
    /// Run only these cases (comma-separated: put-1k, put-100b, put-record, get-records,
    /// subscribe, drain, grpc-put-1k, grpc-put-100b, grpc-drain, disk). The replicated group
    /// runs only put-1k, put-100b, put-record, get-records and subscribe.
    #[arg(long, env = "BENCH_ONLY", value_delimiter = ',')]
    pub only: Vec<String>,
    /// Append every outcome as a JSON line to this file.
    #[arg(long)]
    pub results: Option<PathBuf>,
}

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
enum Kind {
    Riffle,
    Kinesalite,
    NoSync,
    Replicated,
}

impl Kind {
    fn label(self) -> &'static str {
        match self {
            Kind::Riffle => "riffle",
            Kind::Kinesalite => "kinesalite",
            Kind::NoSync => "riffle --sync none",
            Kind::Replicated => "riffle RF3",
        }
    }

    /// Whether a failed workload means a broken setup (a durable Riffle that cannot do it).
    fn must_work(self) -> bool {
        matches!(self, Kind::Riffle | Kind::Replicated)
    }
}

struct System {
    kind: Kind,
    kinesis: String,
    grpc: Option<String>,
    pids: Vec<u32>,
}

/// The cases, in running order.
const CASES: &[&str] = &[
    "put-1k",
    "put-100b",
    "put-record",
    "get-records",
    "subscribe",
    "drain",
    "grpc-put-1k",
    "grpc-put-100b",
    "grpc-drain",
];

type Results = BTreeMap<(&'static str, Kind), Result<Outcome, String>>;

impl SuiteArgs {
    fn timing(&self, pids: &[u32]) -> Timing {
        Timing {
            seconds: self.seconds,
            warmup_seconds: self.warmup_seconds,
            server_pids: pids.to_vec(),
        }
    }

    fn wants(&self, case: &str) -> bool {
        self.only.is_empty() || self.only.iter().any(|c| c == case)
    }

    fn drain_args(&self, endpoint: &str, pids: &[u32]) -> DrainArgs {
        DrainArgs {
            endpoint: endpoint.to_string(),
            preload_mb: self.drain_mb,
            preload_max_seconds: self.preload_max_seconds,
            record_bytes: 1024,
            batch: 500,
            concurrency: self.concurrency,
            limit: 10_000,
            server_pids: pids.to_vec(),
        }
    }

    /// Runs `case` against `system`; `None` when it does not apply (kinesalite has no
    /// SubscribeToShard and no gRPC API).
    async fn run_case(&self, case: &str, system: &System) -> Option<Result<Outcome>> {
        let url = system.kinesis.clone();
        let timing = self.timing(&system.pids);
        let put = |record_bytes| PutRecordsThroughputArgs {
            endpoint: url.clone(),
            record_bytes,
            batch: 500,
            concurrency: self.concurrency,
            timing: timing.clone(),
        };
        let grpc_put = |endpoint: &str, record_bytes| GrpcPutThroughputArgs {
            endpoint: endpoint.to_string(),
            record_bytes,
            batch: 500,
            concurrency: self.concurrency,
            timing: timing.clone(),
        };
        let read = ReadLatencyArgs {
            endpoint: url.clone(),
            rate: self.read_rate,
            record_bytes: 1024,
            timing: timing.clone(),
        };
        let riffle = system.kind != Kind::Kinesalite;
        Some(match case {
            "put-1k" => put_records_throughput::run(&put(1024)).await,
            "put-100b" => put_records_throughput::run(&put(100)).await,
            "put-record" => {
                put_record_latency::run(&PutRecordLatencyArgs {
                    endpoint: url.clone(),
                    rate_bytes: self.put_rate_bytes,
                    record_bytes: 1024,
                    timing: timing.clone(),
                    trace: None,
                })
                .await
            }
            "get-records" => read_latency::run(&read, Reader::Poll).await,
            "subscribe" if riffle => read_latency::run(&read, Reader::Subscribe).await,
            "drain" => drain::run(&self.drain_args(&url, &system.pids)).await,
            "grpc-put-1k" if riffle => {
                grpc::put_throughput(&grpc_put(system.grpc.as_deref()?, 1024)).await
            }
            "grpc-put-100b" if riffle => {
                grpc::put_throughput(&grpc_put(system.grpc.as_deref()?, 100)).await
            }
            "grpc-drain" if riffle => {
                grpc::drain(&self.drain_args(system.grpc.as_deref()?, &system.pids)).await
            }
            _ => return None,
        })
    }

    /// The PutRecord workload on the bare disk with an ideal group commit, just before Riffle
    /// runs it: the disk's latency drifts over minutes on shared machines, so only a
    /// neighbouring measurement is a fair floor.
    async fn disk_floor(&self) -> Option<Result<Histogram, String>> {
        let dir = self.disk_dir.clone()?;
        if !self.wants("disk") {
            return None;
        }
        let rate = self.put_rate_bytes as f64 / 1024.0;
        let seconds = self.seconds;
        let result = tokio::task::spawn_blocking(move || {
            disk_ceiling::group_commit_floor(&dir, 1024, rate, seconds)
        })
        .await
        .map_err(anyhow::Error::from)
        .and_then(|r| r)
        .map_err(|e| format!("{e:#}"));
        match &result {
            Ok(h) => eprintln!(
                "== bare disk, ideal group commit at PutRecord's rate: p50 {:.3} ms, p99 {:.3} ms, p99.9 {:.3} ms",
                h.quantile(0.5) as f64 / 1e6,
                h.quantile(0.99) as f64 / 1e6,
                h.quantile(0.999) as f64 / 1e6
            ),
            Err(e) => eprintln!("== bare disk, ideal group commit FAILED: {e}"),
        }
        Some(result)
    }

    /// Whether `case` can run against `system`.
    fn applies(&self, case: &str, system: &System) -> bool {
        let riffle_only = matches!(
            case,
            "subscribe" | "grpc-put-1k" | "grpc-put-100b" | "grpc-drain"
        );
        let grpc = case.starts_with("grpc-");
        // Reads are served from each replica's own copy, as by a single server: the
        // replicated group runs the workloads whose writes go through replication.
        let replicated = matches!(
            case,
            "put-1k" | "put-100b" | "put-record" | "get-records" | "subscribe"
        );
        (!riffle_only || system.kind != Kind::Kinesalite)
            && (!grpc || system.grpc.is_some())
            && (replicated || system.kind != Kind::Replicated)
    }

    fn systems(&self) -> Vec<System> {
        let mut systems = Vec::new();
        if let Some(url) = &self.riffle {
            systems.push(System {
                kind: Kind::Riffle,
                kinesis: url.clone(),
                grpc: self.riffle_grpc.clone(),
                pids: self.riffle_pid.into_iter().collect(),
            });
        }
        if let Some(url) = &self.kinesalite {
            systems.push(System {
                kind: Kind::Kinesalite,
                kinesis: url.clone(),
                grpc: None,
                pids: self.kinesalite_pid.into_iter().collect(),
            });
        }
        if let Some(url) = &self.nosync {
            systems.push(System {
                kind: Kind::NoSync,
                kinesis: url.clone(),
                grpc: self.nosync_grpc.clone(),
                pids: self.nosync_pid.into_iter().collect(),
            });
        }
        if let Some(url) = &self.replicated {
            systems.push(System {
                kind: Kind::Replicated,
                kinesis: url.clone(),
                grpc: None,
                pids: self.replicated_pids.clone(),
            });
        }
        systems
    }
}

/// Runs the suite and prints the tables.
pub async fn run(args: &SuiteArgs) -> Result<()> {
    let systems = self_check(args).await?;
    let mut results: Results = BTreeMap::new();
    let mut log = match &args.results {
        Some(path) => Some(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)?,
        ),
        None => None,
    };
    let mut disk_floor = None;
    let mut floor_taken = false;
    // The disk first, while nothing else of this run has touched it.
    let disk = match (&args.disk_dir, args.wants("disk")) {
        (Some(dir), true) => {
            let disk_args = DiskCeilingArgs {
                dir: dir.clone(),
                seconds: args.disk_seconds,
                max_mib: 4096,
            };
            let outcome = tokio::task::spawn_blocking(move || disk_ceiling::run(&disk_args))
                .await
                .map_err(anyhow::Error::from)
                .and_then(|r| r);
            match &outcome {
                Ok(o) => eprint!("== disk\n{}", o.to_text()),
                Err(e) => eprintln!("== disk FAILED: {e:#}"),
            }
            if let (Some(log), Ok(o)) = (log.as_mut(), &outcome) {
                let mut line = o.to_json();
                line["case"] = "disk".into();
                writeln!(log, "{line}")?;
            }
            Some(outcome.map_err(|e| format!("{e:#}")))
        }
        _ => None,
    };
    for &case in CASES {
        if !args.wants(case) {
            continue;
        }
        for system in &systems {
            if !args.applies(case, system) {
                continue;
            }
            settle(args).await;
            // Before the first durable Riffle's PutRecord run, whichever column that is.
            if case == "put-record" && system.kind.must_work() && !floor_taken {
                floor_taken = true;
                disk_floor = args.disk_floor().await;
                if disk_floor.is_some() {
                    settle(args).await;
                }
            }
            let Some(result) = args.run_case(case, system).await else {
                continue;
            };
            eprintln!("== {case} on {}", system.kind.label());
            match &result {
                Ok(o) => eprint!("{}", o.to_text()),
                Err(e) => eprintln!("  FAILED: {e:#}"),
            }
            if let (Some(log), Ok(o)) = (log.as_mut(), &result) {
                let mut line = o.to_json();
                line["case"] = case.into();
                line["system"] = system.kind.label().into();
                writeln!(log, "{line}")?;
            }
            results.insert((case, system.kind), result.map_err(|e| format!("{e:#}")));
        }
    }
    let kinds: Vec<Kind> = systems.iter().map(|s| s.kind).collect();
    println!(
        "{}",
        table(&results, disk.as_ref(), disk_floor.as_ref(), &kinds)
    );
    let broken: Vec<String> = results
        .iter()
        .filter(|((_, kind), r)| kind.must_work() && r.is_err())
        .map(|((case, kind), _)| format!("{case} ({})", kind.label()))
        .collect();
    if !broken.is_empty() {
        bail!("Riffle failed these workloads: {}", broken.join(", "));
    }
    Ok(())
}

/// Lets the previous workload's traces fade before the next one: waits until every Riffle has
/// freed the streams the workloads deleted (Riffle frees deleted data on disk at a pace, in the
/// background, and the next workload would otherwise share the disk with it), flushes every
/// dirty page (a peer that does not sync leaves hundreds of MB behind, whose writeback would
/// otherwise land in the next workload's fdatasync latencies) and gives background work a
/// moment.
async fn settle(args: &SuiteArgs) {
    let mut endpoints: Vec<&String> = args.riffle.iter().chain(&args.nosync).collect();
    if args.replicated_endpoints.is_empty() {
        endpoints.extend(&args.replicated);
    } else {
        endpoints.extend(&args.replicated_endpoints);
    }
    for endpoint in endpoints {
        wait_for_deletions(endpoint).await;
    }
    let _ = tokio::task::spawn_blocking(|| {
        let _ = std::process::Command::new("sync").status();
    })
    .await;
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
}

/// Longest wait for a Riffle's deletion backlog to drain.
const DELETIONS_PATIENCE: std::time::Duration = std::time::Duration::from_secs(180);

/// Waits until the Riffle at `endpoint` reports no deletion backlog
/// (`riffle_deletion_backlog_bytes` on `/metrics`), at most [`DELETIONS_PATIENCE`].
async fn wait_for_deletions(endpoint: &str) {
    let Ok(client) = crate::kinesis::Kinesis::new(endpoint) else {
        return;
    };
    let started = std::time::Instant::now();
    loop {
        let backlog = match client.get("/metrics").await {
            Ok(reply) => deletion_backlog(&String::from_utf8_lossy(&reply.body)),
            Err(_) => None,
        };
        match backlog {
            Some(bytes) if bytes > 0 && started.elapsed() < DELETIONS_PATIENCE => {
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            }
            Some(bytes) if bytes > 0 => {
                eprintln!(
                    "  {endpoint} still had {bytes} bytes of deleted data to free after {:.0} s; going on",
                    started.elapsed().as_secs_f64()
                );
                return;
            }
            _ => {
                if started.elapsed().as_secs_f64() >= 1.0 {
                    eprintln!(
                        "  waited {:.1} s for {endpoint} to free deleted data",
                        started.elapsed().as_secs_f64()
                    );
                }
                return;
            }
        }
    }
}

/// The value of `riffle_deletion_backlog_bytes` in a Prometheus text page, if present.
fn deletion_backlog(page: &str) -> Option<u64> {
    page.lines()
        .find_map(|line| line.strip_prefix("riffle_deletion_backlog_bytes "))
        .and_then(|value| value.trim().parse().ok())
}

/// The systems to run against, after checking that each answers.
async fn self_check(args: &SuiteArgs) -> Result<Vec<System>> {
    let systems = args.systems();
    for s in &systems {
        crate::kinesis::Kinesis::new(&s.kinesis)?
            .ping()
            .await
            .with_context(|| format!("{} at {} does not answer", s.kind.label(), s.kinesis))?;
    }
    Ok(systems)
}

/// Which way a metric is better.
#[derive(Clone, Copy)]
enum Better {
    Higher,
    Lower,
}

/// A project target for a row.
#[derive(Clone, Copy)]
enum Target {
    None,
    AtLeast(f64),
    AtMost(f64),
    /// At least this value and at least this many times kinesalite.
    AtLeastAndRatio(f64, f64),
}

struct Row {
    label: &'static str,
    case: &'static str,
    metric: &'static str,
    better: Better,
    /// The single server's target.
    target: Target,
    /// The replicated group's (replicationFactor 3) target.
    rf3_target: Target,
}

const fn row(
    label: &'static str,
    case: &'static str,
    metric: &'static str,
    better: Better,
    target: Target,
) -> Row {
    Row {
        label,
        case,
        metric,
        better,
        target,
        rf3_target: Target::None,
    }
}

impl Row {
    const fn rf3(self, target: Target) -> Row {
        Row {
            rf3_target: target,
            ..self
        }
    }
}

const ROWS: &[Row] = &[
    row(
        "PutRecords 500 x 1 KiB, MiB/s",
        "put-1k",
        "mib_per_s",
        Better::Higher,
        Target::AtLeastAndRatio(150.0, 15.0),
    )
    .rf3(Target::AtLeast(60.0)),
    row(
        "PutRecords 500 x 1 KiB, records/s",
        "put-1k",
        "records_per_s",
        Better::Higher,
        Target::None,
    ),
    row(
        "PutRecords 500 x 100 B, records/s",
        "put-100b",
        "records_per_s",
        Better::Higher,
        Target::AtLeast(300_000.0),
    ),
    row(
        "PutRecords 500 x 100 B, MiB/s",
        "put-100b",
        "mib_per_s",
        Better::Higher,
        Target::None,
    ),
    row(
        "PutRecord 1 KiB at 1 MiB/s, ack p50 ms",
        "put-record",
        "p50_ms",
        Better::Lower,
        Target::None,
    ),
    row(
        "PutRecord 1 KiB at 1 MiB/s, ack p99 ms",
        "put-record",
        "p99_ms",
        Better::Lower,
        Target::AtMost(1.5),
    )
    .rf3(Target::AtMost(3.0)),
    row(
        "PutRecord 1 KiB at 1 MiB/s, ack p99.9 ms",
        "put-record",
        "p999_ms",
        Better::Lower,
        Target::None,
    ),
    row(
        "put -> GetRecords poll, p50 ms",
        "get-records",
        "p50_ms",
        Better::Lower,
        Target::None,
    ),
    row(
        "put -> GetRecords poll, p99 ms",
        "get-records",
        "p99_ms",
        Better::Lower,
        Target::None,
    ),
    row(
        "put -> GetRecords poll, p99.9 ms",
        "get-records",
        "p999_ms",
        Better::Lower,
        Target::None,
    ),
    row(
        "put -> SubscribeToShard, p50 ms",
        "subscribe",
        "p50_ms",
        Better::Lower,
        Target::None,
    ),
    row(
        "put -> SubscribeToShard, p99 ms",
        "subscribe",
        "p99_ms",
        Better::Lower,
        Target::AtMost(3.0),
    ),
    row(
        "put -> SubscribeToShard, p99.9 ms",
        "subscribe",
        "p999_ms",
        Better::Lower,
        Target::None,
    ),
    row(
        "GetRecords drain (Limit 10000), MiB/s",
        "drain",
        "mib_per_s",
        Better::Higher,
        Target::AtLeast(500.0),
    ),
    row(
        "gRPC Put 500 x 1 KiB, MiB/s",
        "grpc-put-1k",
        "mib_per_s",
        Better::Higher,
        Target::None,
    ),
    row(
        "gRPC Put 500 x 100 B, records/s",
        "grpc-put-100b",
        "records_per_s",
        Better::Higher,
        Target::None,
    ),
    row(
        "gRPC GetRecords drain, MiB/s",
        "grpc-drain",
        "mib_per_s",
        Better::Higher,
        Target::None,
    ),
];

fn cell(result: Option<&Result<Outcome, String>>, metric: &str) -> (String, Option<f64>) {
    match result {
        None => ("n/a".into(), None),
        Some(Err(_)) => ("failed".into(), None),
        Some(Ok(o)) => match o.get(metric) {
            Some(v) => (format_value(v), Some(v)),
            None => ("n/a".into(), None),
        },
    }
}

/// A target as people write it: `150`, `300,000`, `1.5`.
fn format_target(t: f64) -> String {
    if t.fract() == 0.0 && t.abs() >= 10_000.0 {
        format_value(t)
    } else {
        format!("{t}")
    }
}

fn verdict(met: bool) -> &'static str {
    if met { "met" } else { "MISSED" }
}

/// A target's verdict for value `v` (and the ratio to kinesalite, for the combined target).
fn judge(target: Target, v: Option<f64>, ratio: Option<f64>) -> String {
    match target {
        Target::None => String::new(),
        Target::AtLeast(t) => format!(
            ">= {}: {}",
            format_target(t),
            verdict(v.is_some_and(|v| v >= t))
        ),
        Target::AtMost(t) => format!(
            "<= {}: {}",
            format_target(t),
            verdict(v.is_some_and(|v| v <= t))
        ),
        Target::AtLeastAndRatio(t, x) => format!(
            ">= {}: {}; >= {}x kinesalite: {}",
            format_target(t),
            verdict(v.is_some_and(|v| v >= t)),
            format_target(x),
            ratio.map_or("n/a", |q| verdict(q >= x))
        ),
    }
}

/// Renders the tables as Markdown, with a column for each of `kinds` that ran.
fn table(
    results: &Results,
    disk: Option<&Result<Outcome, String>>,
    disk_floor: Option<&Result<Histogram, String>>,
    kinds: &[Kind],
) -> String {
    let has = |k: Kind| kinds.contains(&k);
    // Riffle and kinesalite side by side with their ratio, as always, when either ran.
    let pair = has(Kind::Riffle) || has(Kind::Kinesalite);
    let mut out = String::new();
    let mut header = String::from("| workload |");
    let mut rule = String::from("|---|");
    if pair {
        header.push_str(" riffle | kinesalite | ratio (Riffle advantage) |");
        rule.push_str("---:|---:|---:|");
    }
    if has(Kind::NoSync) {
        header.push_str(" riffle --sync none (NOT durable) |");
        rule.push_str("---:|");
    }
    if has(Kind::Replicated) {
        header.push_str(" riffle RF3 (3 replicas) |");
        rule.push_str("---:|");
    }
    if pair {
        header.push_str(" target |");
        rule.push_str("---|");
    }
    if has(Kind::Replicated) {
        header.push_str(" RF3 target |");
        rule.push_str("---|");
    }
    out.push_str(&format!("{header}\n{rule}\n"));
    for r in ROWS {
        if !kinds.iter().any(|&k| results.contains_key(&(r.case, k))) {
            continue;
        }
        let (riffle, rv) = cell(results.get(&(r.case, Kind::Riffle)), r.metric);
        let (peer, pv) = cell(results.get(&(r.case, Kind::Kinesalite)), r.metric);
        let ratio = match (rv, pv) {
            (Some(a), Some(b)) if a > 0.0 && b > 0.0 => Some(match r.better {
                Better::Higher => a / b,
                Better::Lower => b / a,
            }),
            _ => None,
        };
        out.push_str(&format!("| {} |", r.label));
        if pair {
            let ratio_text = ratio.map_or("n/a".into(), |x| format!("{}x", format_value(x)));
            out.push_str(&format!(" {riffle} | {peer} | {ratio_text} |"));
        }
        if has(Kind::NoSync) {
            let (nosync, _) = cell(results.get(&(r.case, Kind::NoSync)), r.metric);
            out.push_str(&format!(" {nosync} |"));
        }
        let (rf3, rf3v) = cell(results.get(&(r.case, Kind::Replicated)), r.metric);
        if has(Kind::Replicated) {
            out.push_str(&format!(" {rf3} |"));
        }
        if pair {
            out.push_str(&format!(" {} |", judge(r.target, rv, ratio)));
        }
        if has(Kind::Replicated) {
            out.push_str(&format!(" {} |", judge(r.rf3_target, rf3v, None)));
        }
        out.push('\n');
    }

    if let Some(Ok(d)) = disk {
        out.push_str("\n| disk ceiling (append + fdatasync) | value | Riffle's figure | as % of ceiling |\n|---|---:|---|---:|\n");
        let riffle = |case: &'static str, metric: &str| {
            results
                .get(&(case, Kind::Riffle))
                .and_then(|r| r.as_ref().ok())
                .and_then(|o| o.get(metric))
        };
        let pct = |part: Option<f64>, whole: Option<f64>| match (part, whole) {
            (Some(p), Some(w)) if w > 0.0 => format!("{:.0} %", p / w * 100.0),
            _ => "n/a".into(),
        };
        let fmt = |v: Option<f64>| v.map_or("n/a".into(), format_value);
        let best = d.get("seq_best_mib_per_s");
        for (label, metric) in [
            ("4 MiB writes, MiB/s", "seq_4mib_mib_per_s"),
            ("1 MiB writes, MiB/s", "seq_1mib_mib_per_s"),
            ("64 KiB writes, MiB/s", "seq_64kib_mib_per_s"),
        ] {
            out.push_str(&format!("| {label} | {} | | |\n", fmt(d.get(metric))));
        }
        for (label, case) in [
            ("PutRecords 500 x 1 KiB", "put-1k"),
            ("gRPC Put 500 x 1 KiB", "grpc-put-1k"),
        ] {
            let v = riffle(case, "mib_per_s");
            out.push_str(&format!(
                "| best sequential, MiB/s | {} | {label} {} MiB/s | {} |\n",
                fmt(best),
                fmt(v),
                pct(v, best)
            ));
        }
        let ack_p50 = riffle("put-record", "p50_ms");
        let ack_p99 = riffle("put-record", "p99_ms");
        // For latency the ceiling is a floor: the share of Riffle's ack time the disk needs.
        for (size, prefix) in [("4 KiB", "sync_4kib_"), ("1 KiB", "sync_1kib_")] {
            for (q, ack) in [("p50", ack_p50), ("p99", ack_p99)] {
                let sync = d.get(&format!("{prefix}{q}_ms"));
                out.push_str(&format!(
                    "| {size} append + fdatasync {q}, ms | {} | PutRecord ack {q} {} ms | disk is {} of it |\n",
                    fmt(sync),
                    fmt(ack),
                    pct(sync, ack)
                ));
            }
        }
    } else if let Some(Err(e)) = disk {
        out.push_str(&format!("\ndisk ceiling failed: {e}\n"));
    }
    if let Some(Ok(h)) = disk_floor {
        let durable: Vec<Kind> = [Kind::Riffle, Kind::Replicated]
            .into_iter()
            .filter(|&k| has(k))
            .collect();
        out.push_str("\n| PutRecord's load on the bare disk, ideal group commit, just before the first durable Riffle's run | bare disk |");
        for k in &durable {
            out.push_str(&format!(" {} PutRecord ack | disk is % of it |", k.label()));
        }
        out.push_str("\n|---|---:|");
        for _ in &durable {
            out.push_str("---:|---:|");
        }
        out.push('\n');
        for (q, label, metric) in [
            (0.5, "p50", "p50_ms"),
            (0.99, "p99", "p99_ms"),
            (0.999, "p99.9", "p999_ms"),
        ] {
            let disk = h.quantile(q) as f64 / 1e6;
            out.push_str(&format!(
                "| 1 KiB records due at the same rate, all due ones per write + fdatasync, {label} ms | {} |",
                format_value(disk)
            ));
            for &k in &durable {
                let ack = results
                    .get(&("put-record", k))
                    .and_then(|r| r.as_ref().ok())
                    .and_then(|o| o.get(metric));
                out.push_str(&format!(
                    " {} | {} |",
                    ack.map_or("n/a".into(), format_value),
                    ack.filter(|a| *a > 0.0)
                        .map_or("n/a".into(), |a| format!("{:.0} %", disk / a * 100.0))
                ));
            }
            out.push('\n');
        }
    }

    // CPU and anything unusual, so that each number can be judged.
    out.push_str(
        "\n| workload | system | server CPU (% of a core) | generator CPU (% of a core) | notes |\n|---|---|---:|---:|---|\n",
    );
    for ((case, kind), result) in results {
        let (server, client, notes) = match result {
            Ok(o) => {
                let mut notes = o.notes.clone();
                for (metric, what) in [
                    ("failed_records", "failed records"),
                    ("errors", "failed calls"),
                    ("put_errors", "failed puts"),
                    ("records_missing", "records never read"),
                    ("duplicates", "duplicate reads"),
                ] {
                    if let Some(v) = o.get(metric).filter(|v| *v > 0.0) {
                        notes.push(format!("{} {what}", format_value(v)));
                    }
                }
                let each: Vec<String> = (1..)
                    .map_while(|i| o.get(&format!("server_cpu_pct_{i}")))
                    .map(|v| format!("{v:.0}"))
                    .collect();
                if !each.is_empty() {
                    notes.insert(
                        0,
                        format!("server CPU per replica, leader first: {}", each.join(" + ")),
                    );
                }
                let written: Vec<String> = (1..)
                    .map_while(|i| o.get(&format!("server_written_mib_s_{i}")))
                    .map(|v| format!("{v:.0}"))
                    .collect();
                if !written.is_empty() {
                    notes.push(format!(
                        "written towards the disk, MiB/s{}: {}",
                        if written.len() > 1 {
                            " per replica"
                        } else {
                            ""
                        },
                        written.join(" + ")
                    ));
                }
                (
                    o.get("server_cpu_pct")
                        .map_or("n/a".into(), |v| format!("{v:.0}")),
                    o.get("client_cpu_pct")
                        .map_or("n/a".into(), |v| format!("{v:.0}")),
                    notes.join("; "),
                )
            }
            Err(e) => ("".into(), "".into(), format!("FAILED: {e}")),
        };
        out.push_str(&format!(
            "| {case} | {} | {server} | {client} | {} |\n",
            kind.label(),
            notes.replace('|', "/").replace('\n', " ")
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_deletion_backlog_is_read_from_a_metrics_page() {
        let page = "# HELP riffle_deletion_backlog_bytes x\n# TYPE riffle_deletion_backlog_bytes gauge\nriffle_deletion_backlog_bytes 4096\nriffle_shard_log_bytes{stream=\"s\"} 7\n";
        assert_eq!(deletion_backlog(page), Some(4096));
        assert_eq!(deletion_backlog("riffle_shard_log_bytes 7\n"), None);
    }

    fn outcome(metrics: &[(&str, f64)]) -> Result<Outcome, String> {
        let mut o = Outcome::new("w");
        for (name, value) in metrics {
            o.metric(name, *value, "");
        }
        Ok(o)
    }

    #[test]
    fn ratios_favour_riffle_in_both_directions_and_targets_are_judged() {
        let mut results: Results = BTreeMap::new();
        results.insert(("put-1k", Kind::Riffle), outcome(&[("mib_per_s", 160.0)]));
        results.insert(("put-1k", Kind::Kinesalite), outcome(&[("mib_per_s", 8.0)]));
        results.insert(("put-record", Kind::Riffle), outcome(&[("p99_ms", 2.0)]));
        results.insert(
            ("put-record", Kind::Kinesalite),
            outcome(&[("p99_ms", 10.0)]),
        );
        results.insert(("subscribe", Kind::Riffle), Err("boom".into()));
        let t = table(&results, None, None, &[Kind::Riffle, Kind::Kinesalite]);
        assert!(
            t.contains("| PutRecords 500 x 1 KiB, MiB/s | 160 | 8.00 | 20.0x | >= 150: met; >= 15x kinesalite: met |"),
            "{t}"
        );
        assert!(
            t.contains(
                "| PutRecord 1 KiB at 1 MiB/s, ack p99 ms | 2.00 | 10.0 | 5.00x | <= 1.5: MISSED |"
            ),
            "{t}"
        );
        assert!(
            t.contains("| put -> SubscribeToShard, p99 ms | failed | n/a | n/a | <= 3: MISSED |"),
            "{t}"
        );
        assert!(t.contains("FAILED: boom"), "{t}");
        assert!(!t.contains("drain"), "{t}");
    }

    #[test]
    fn the_replicated_group_has_its_own_column_and_targets() {
        let mut results: Results = BTreeMap::new();
        results.insert(("put-1k", Kind::Riffle), outcome(&[("mib_per_s", 160.0)]));
        results.insert(
            ("put-1k", Kind::Replicated),
            outcome(&[
                ("mib_per_s", 61.0),
                ("server_cpu_pct", 150.0),
                ("server_cpu_pct_1", 90.0),
                ("server_cpu_pct_2", 30.0),
                ("server_cpu_pct_3", 30.0),
                ("server_written_mib_s_1", 122.0),
                ("server_written_mib_s_2", 121.0),
                ("server_written_mib_s_3", 120.0),
            ]),
        );
        results.insert(
            ("put-record", Kind::Replicated),
            outcome(&[("p99_ms", 3.5)]),
        );
        let t = table(&results, None, None, &[Kind::Riffle, Kind::Replicated]);
        assert!(
            t.contains("| PutRecords 500 x 1 KiB, MiB/s | 160 | n/a | n/a | 61.0 | >= 150: met; >= 15x kinesalite: n/a | >= 60: met |"),
            "{t}"
        );
        assert!(
            t.contains(
                "| PutRecord 1 KiB at 1 MiB/s, ack p99 ms | n/a | n/a | n/a | 3.50 | <= 1.5: MISSED | <= 3: MISSED |"
            ),
            "{t}"
        );
        assert!(
            t.contains("| put-1k | riffle RF3 | 150 | n/a | server CPU per replica, leader first: 90 + 30 + 30; written towards the disk, MiB/s per replica: 122 + 121 + 120 |"),
            "{t}"
        );

        // The replicated group alone: only its column.
        let t = table(&results, None, None, &[Kind::Replicated]);
        assert!(
            t.contains("| PutRecords 500 x 1 KiB, MiB/s | 61.0 | >= 60: met |"),
            "{t}"
        );
    }
}
