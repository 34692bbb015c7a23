//! Keeps background writes to a byte rate.

use std::thread;
use std::time::{Duration, Instant};

/// Bytes written (and synced) per piece of background work: short enough for the device to
/// serve an acknowledgement's `fdatasync` soon after.
pub const PIECE_BYTES: u64 = 1 << 20;

/// Paces work done in pieces (see [`PIECE_BYTES`]) to a byte rate.
pub struct Pacer {
    started: Instant,
    done: u64,
    bytes_per_sec: u64,
}

impl Pacer {
    /// Starts pacing now, at `bytes_per_sec`.
    pub fn new(bytes_per_sec: u64) -> Pacer {
        Pacer {
            started: Instant::now(),
            done: 0,
            bytes_per_sec: bytes_per_sec.max(1),
        }
    }

    /// Counts `bytes` as done and sleeps while the work is ahead of its rate.
    pub fn advance(&mut self, bytes: u64) {
        self.done += bytes;
        if let Some(ahead) = self.due().checked_sub(self.started.elapsed()) {
            thread::sleep(ahead);
        }
    }

    /// How long after the start the work done so far is due.
    fn due(&self) -> Duration {
        Duration::from_secs_f64(self.done as f64 / self.bytes_per_sec as f64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn work_ahead_of_its_rate_waits_until_it_is_due() {
        let mut pacer = Pacer::new(100 << 20);
        // 5 MiB at 100 MiB/s is due 50 ms after the start.
        pacer.advance(5 << 20);
        assert_eq!(pacer.due(), Duration::from_millis(50));
        assert!(pacer.started.elapsed() >= Duration::from_millis(50));
    }
}
