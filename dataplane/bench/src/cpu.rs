//! CPU time used by processes during a measurement, from `/proc/<pid>/stat`, and what the
//! servers wrote towards the disk, from `/proc/<pid>/io`.
//!
//! On a small machine the load generator and the server share the cores, so every result is
//! reported with how busy each side was: a server at 100 % of the machine is CPU-bound, one
//! well below it is waiting (on the disk, on a lock, or on the client). The bytes written show
//! how many copies of each acknowledged byte a server stores (a replica writes a record to its
//! raft log and again to its stream log).

use std::time::Instant;

/// Clock ticks per second of `utime`/`stime`: Linux always reports them in USER_HZ, 100.
const TICKS_PER_SECOND: f64 = 100.0;

/// User plus system CPU seconds of a process (all its threads), or `None` if it is gone.
fn cpu_seconds(pid: &str) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may contain spaces and parentheses; fields resume after the last ')'.
    let after = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    // After the name: state is field 3 of the whole line, utime 14 and stime 15.
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / TICKS_PER_SECOND)
}

/// Bytes a process caused to be written to storage (`write_bytes`: counted when it dirties the
/// page cache), or `None` if it is gone or not readable.
fn written_bytes(pid: &str) -> Option<f64> {
    let io = std::fs::read_to_string(format!("/proc/{pid}/io")).ok()?;
    io.lines()
        .find_map(|line| line.strip_prefix("write_bytes:"))
        .and_then(|v| v.trim().parse().ok())
}

/// The processes to watch: the server's (one, or every replica of a replicated group, if
/// known) and this process.
#[derive(Clone, Debug, Default)]
pub struct Probe {
    /// The server's pids.
    pub server_pids: Vec<u32>,
}

/// Counters at the start of a measurement.
pub struct Started {
    at: Instant,
    /// Per server process: its pid, CPU seconds and bytes written so far.
    servers: Vec<(u32, Option<f64>, Option<f64>)>,
    client: Option<f64>,
}

/// Percent of one core each side used during a measurement.
#[derive(Clone, Debug)]
pub struct Usage {
    /// The server processes together, if their pids were given and all could be read.
    pub server_pct: Option<f64>,
    /// Each server process, in the order given (empty for a single server).
    pub per_server_pct: Vec<Option<f64>>,
    /// The load generator.
    pub client_pct: Option<f64>,
    /// MiB per second each server process wrote towards the disk, in the order given.
    pub written_mib_per_s: Vec<Option<f64>>,
}

impl Probe {
    /// Reads the counters now.
    pub fn start(&self) -> Started {
        Started {
            at: Instant::now(),
            servers: self
                .server_pids
                .iter()
                .map(|&p| {
                    let pid = p.to_string();
                    (p, cpu_seconds(&pid), written_bytes(&pid))
                })
                .collect(),
            client: cpu_seconds("self"),
        }
    }
}

impl Started {
    /// Usage since `start`.
    pub fn finish(&self) -> Usage {
        let wall = self.at.elapsed().as_secs_f64().max(1e-9);
        let pct = |before: Option<f64>, now: Option<f64>| match (before, now) {
            (Some(b), Some(n)) => Some((n - b) / wall * 100.0),
            _ => None,
        };
        let each: Vec<Option<f64>> = self
            .servers
            .iter()
            .map(|&(pid, before, _)| pct(before, cpu_seconds(&pid.to_string())))
            .collect();
        let server_pct = if each.is_empty() {
            None
        } else {
            each.iter().copied().sum::<Option<f64>>()
        };
        let written_mib_per_s = self
            .servers
            .iter()
            .map(|&(pid, _, before)| {
                let now = written_bytes(&pid.to_string())?;
                Some((now - before?) / wall / f64::from(1 << 20))
            })
            .collect();
        Usage {
            server_pct,
            per_server_pct: if each.len() > 1 { each } else { Vec::new() },
            client_pct: pct(self.client, cpu_seconds("self")),
            written_mib_per_s,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_process() {
        let before = cpu_seconds("self").expect("own stat");
        let mut x = 0u64;
        let t = Instant::now();
        while t.elapsed().as_millis() < 50 {
            x = x.wrapping_add(1);
        }
        assert!(x > 0);
        let after = cpu_seconds("self").expect("own stat");
        assert!(after >= before);
    }

    #[test]
    fn counts_what_this_process_writes() {
        let path = std::env::temp_dir().join(format!("riffle-bench-io-{}", std::process::id()));
        let before = written_bytes("self").expect("own io");
        std::fs::write(&path, vec![1u8; 1 << 20]).expect("write");
        let after = written_bytes("self").expect("own io");
        let _ = std::fs::remove_file(&path);
        assert!(after - before >= f64::from(1 << 20), "{before} -> {after}");
    }
}
