//! Restarts the operator after it lost the API server and found it again.
//!
//! After kube-apiserver restarts, the controller's watches can stay silent for minutes although
//! the API server answers again (seen on the test cluster with kube-runtime 5: the watches are
//! not re-established until their connections time out, and a changed Stream goes unnoticed).
//! A fresh process re-lists everything at once, and reconciling unchanged streams writes
//! nothing, so the operator stops (the container is restarted by kubelet) as soon as the API
//! server answers again after an outage. The decision is a pure state machine ([`Watchdog`]);
//! [`watch`] probes the API server with it.

use std::time::Duration;

use kube::Client;

/// How often the API server is probed.
pub const PROBE_INTERVAL: Duration = Duration::from_secs(3);
/// How long one probe may take before it counts as a failure.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(3);
/// Consecutive failed probes that make an outage (a single slow answer is not one).
pub const FAILURES_FOR_OUTAGE: u32 = 2;

/// What the probes have seen.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Watchdog {
    failures: u32,
    outage: bool,
}

impl Watchdog {
    /// Records a probe's result; returns true when the API server answers again after an outage.
    pub fn probed(&mut self, answered: bool) -> bool {
        if answered {
            let recovered = self.outage;
            *self = Watchdog::default();
            recovered
        } else {
            self.failures += 1;
            self.outage |= self.failures >= FAILURES_FOR_OUTAGE;
            false
        }
    }
}

/// Resolves when the API server answers again after an outage; never otherwise.
pub async fn watch(client: Client) {
    let mut watchdog = Watchdog::default();
    loop {
        tokio::time::sleep(PROBE_INTERVAL).await;
        let answered = matches!(
            tokio::time::timeout(PROBE_TIMEOUT, client.apiserver_version()).await,
            Ok(Ok(_))
        );
        if !answered {
            tracing::warn!("the API server does not answer");
        }
        if watchdog.probed(answered) {
            tracing::warn!(
                "the API server answers again after an outage; restarting to watch afresh"
            );
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_recovery_after_an_outage_restarts() {
        let mut watchdog = Watchdog::default();
        assert!(!watchdog.probed(true));
        assert!(!watchdog.probed(false), "one failure is not an outage");
        assert!(!watchdog.probed(true));
        assert!(!watchdog.probed(false));
        assert!(!watchdog.probed(false));
        assert!(!watchdog.probed(false));
        assert!(watchdog.probed(true), "answering after an outage");
        assert!(!watchdog.probed(true), "and only once");
    }
}
