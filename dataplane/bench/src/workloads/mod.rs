//! The workloads, one module each. Every workload creates its own single-shard stream with a
//! unique name, measures, and deletes the stream again.

pub mod disk_ceiling;
pub mod drain;
pub mod grpc;
pub mod put_record_latency;
pub mod put_records_throughput;
pub mod read_latency;

use std::time::Duration;

/// How long a workload runs.
#[derive(clap::Args, Clone, Debug)]
pub struct Timing {
    /// Seconds measured.
    #[arg(long, default_value_t = 10.0, env = "BENCH_SECONDS")]
    pub seconds: f64,
    /// Seconds of load before measuring starts (connections, caches, allocators settle).
    #[arg(long, default_value_t = 1.0, env = "BENCH_WARMUP_SECONDS")]
    pub warmup_seconds: f64,
    /// Pid of the server, to report the CPU it used while measured; several (comma-separated)
    /// for the replicas of a replicated group, reported together and each.
    #[arg(long = "server-pid", value_delimiter = ',')]
    pub server_pids: Vec<u32>,
}

impl Timing {
    /// The measured window.
    pub fn measured(&self) -> Duration {
        Duration::from_secs_f64(self.seconds.max(0.1))
    }

    /// The warm-up.
    pub fn warmup(&self) -> Duration {
        Duration::from_secs_f64(self.warmup_seconds.max(0.0))
    }

    /// The CPU probe for the server.
    pub fn probe(&self) -> crate::cpu::Probe {
        crate::cpu::Probe {
            server_pids: self.server_pids.clone(),
        }
    }
}
