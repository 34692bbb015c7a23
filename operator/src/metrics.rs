//! Prometheus metrics of the operator, rendered in the text exposition format.
//!
//! Hand-rolled on atomics: a handful of counters and one histogram do not justify a metrics
//! library, and the output is checked by a unit test.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::crd::GroupStatus;

/// Upper bounds (seconds) of the reconcile-duration histogram buckets.
const BUCKETS: [f64; 9] = [0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

/// Counters shared by the controller and the `/metrics` endpoint.
#[derive(Debug, Default)]
pub struct Metrics {
    reconciliations: AtomicU64,
    failures: Mutex<BTreeMap<&'static str, u64>>,
    bucket_counts: [AtomicU64; BUCKETS.len()],
    duration_count: AtomicU64,
    duration_sum_micros: AtomicU64,
    status_writes: AtomicU64,
    events: AtomicU64,
    routes_writes: AtomicU64,
    api_requests: Mutex<BTreeMap<(String, &'static str), u64>>,
    groups: Mutex<BTreeMap<(String, String), GroupGauges>>,
}

/// What the metrics keep of one replicated shard group, keyed by namespace and StatefulSet.
#[derive(Debug, Default)]
struct GroupGauges {
    /// The last leader seen and its term (kept while no replica leads, so that a leader
    /// re-found in the same term is not a change).
    last_leader: Option<(String, i64)>,
    /// Whether a replica leads the group now.
    has_leader: bool,
    /// Replicas caught up with the leader.
    caught_up: u64,
    /// Leaders seen after the first.
    leader_changes: u64,
}

/// Records a reconciliation's duration when dropped.
pub struct ReconcileTimer<'a> {
    metrics: &'a Metrics,
    start: Instant,
}

impl Drop for ReconcileTimer<'_> {
    fn drop(&mut self) {
        self.metrics.observe(self.start.elapsed());
    }
}

impl Metrics {
    /// Counts a reconciliation and times it until the returned guard drops.
    pub fn reconcile_started(&self) -> ReconcileTimer<'_> {
        self.reconciliations.fetch_add(1, Ordering::Relaxed);
        ReconcileTimer {
            metrics: self,
            start: Instant::now(),
        }
    }

    /// Counts a failed reconciliation by error kind.
    pub fn reconcile_failed(&self, kind: &'static str) {
        let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        *failures.entry(kind).or_default() += 1;
    }

    /// Counts a status write.
    pub fn status_written(&self) {
        self.status_writes.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a published Kubernetes Event.
    pub fn event_published(&self) {
        self.events.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a write of the gateway's route table.
    pub fn routes_published(&self) {
        self.routes_writes.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a request to the Kinesis API by operation and outcome (`ok` or the error type).
    pub fn api_request(&self, operation: &str, outcome: &'static str) {
        let mut requests = self.api_requests.lock().unwrap_or_else(|e| e.into_inner());
        *requests.entry((operation.to_owned(), outcome)).or_default() += 1;
    }

    /// Records the leadership of a replicated shard group as one reconciliation observed it:
    /// a leader or term other than the last one seen counts as a leader change (the first
    /// leader the operator sees does not).
    pub fn group_observed(&self, namespace: &str, group: &GroupStatus) {
        let mut groups = self.groups.lock().unwrap_or_else(|e| e.into_inner());
        let gauges = groups
            .entry((namespace.to_owned(), group.name.clone()))
            .or_default();
        if let (Some(leader), Some(term)) = (&group.leader, group.term) {
            let current = (leader.clone(), term);
            if gauges
                .last_leader
                .as_ref()
                .is_some_and(|last| *last != current)
            {
                gauges.leader_changes += 1;
            }
            gauges.last_leader = Some(current);
        }
        gauges.has_leader = group.leader.is_some();
        gauges.caught_up = group.replicas.iter().filter(|r| r.caught_up).count() as u64;
    }

    /// Forgets the shard groups of stream `stream` in `namespace` (`{stream}-g{n}`), once the
    /// stream is gone.
    pub fn forget_groups(&self, namespace: &str, stream: &str) {
        let prefix = format!("{stream}-g");
        let mut groups = self.groups.lock().unwrap_or_else(|e| e.into_inner());
        groups.retain(|(ns, name), _| {
            let of_stream = ns == namespace
                && name
                    .strip_prefix(&prefix)
                    .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
            !of_stream
        });
    }

    fn observe(&self, elapsed: Duration) {
        let secs = elapsed.as_secs_f64();
        for (bound, count) in BUCKETS.iter().zip(&self.bucket_counts) {
            if secs <= *bound {
                count.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.duration_count.fetch_add(1, Ordering::Relaxed);
        let micros = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        self.duration_sum_micros
            .fetch_add(micros, Ordering::Relaxed);
    }

    /// The metrics in the Prometheus text format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let _ = writeln!(
            out,
            "# HELP riffle_operator_reconciliations_total Reconciliations started."
        );
        let _ = writeln!(out, "# TYPE riffle_operator_reconciliations_total counter");
        let _ = writeln!(
            out,
            "riffle_operator_reconciliations_total {}",
            load(&self.reconciliations)
        );
        let _ = writeln!(
            out,
            "# HELP riffle_operator_reconcile_failures_total Reconciliations that failed, by error kind."
        );
        let _ = writeln!(
            out,
            "# TYPE riffle_operator_reconcile_failures_total counter"
        );
        for (kind, n) in self
            .failures
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
        {
            let _ = writeln!(
                out,
                "riffle_operator_reconcile_failures_total{{error=\"{kind}\"}} {n}"
            );
        }
        let _ = writeln!(
            out,
            "# HELP riffle_operator_reconcile_duration_seconds Time spent in one reconciliation."
        );
        let _ = writeln!(
            out,
            "# TYPE riffle_operator_reconcile_duration_seconds histogram"
        );
        for (bound, count) in BUCKETS.iter().zip(&self.bucket_counts) {
            let _ = writeln!(
                out,
                "riffle_operator_reconcile_duration_seconds_bucket{{le=\"{bound}\"}} {}",
                load(count)
            );
        }
        let count = load(&self.duration_count);
        let _ = writeln!(
            out,
            "riffle_operator_reconcile_duration_seconds_bucket{{le=\"+Inf\"}} {count}"
        );
        let sum = load(&self.duration_sum_micros) as f64 / 1e6;
        let _ = writeln!(out, "riffle_operator_reconcile_duration_seconds_sum {sum}");
        let _ = writeln!(
            out,
            "riffle_operator_reconcile_duration_seconds_count {count}"
        );
        let _ = writeln!(
            out,
            "# HELP riffle_operator_status_writes_total Status patches sent."
        );
        let _ = writeln!(out, "# TYPE riffle_operator_status_writes_total counter");
        let _ = writeln!(
            out,
            "riffle_operator_status_writes_total {}",
            load(&self.status_writes)
        );
        let _ = writeln!(
            out,
            "# HELP riffle_operator_events_total Kubernetes Events published."
        );
        let _ = writeln!(out, "# TYPE riffle_operator_events_total counter");
        let _ = writeln!(out, "riffle_operator_events_total {}", load(&self.events));
        let _ = writeln!(
            out,
            "# HELP riffle_operator_routes_writes_total Writes of the gateway's route table."
        );
        let _ = writeln!(out, "# TYPE riffle_operator_routes_writes_total counter");
        let _ = writeln!(
            out,
            "riffle_operator_routes_writes_total {}",
            load(&self.routes_writes)
        );
        let _ = writeln!(
            out,
            "# HELP riffle_operator_api_requests_total Kinesis API requests, by operation and outcome."
        );
        let _ = writeln!(out, "# TYPE riffle_operator_api_requests_total counter");
        for ((operation, outcome), n) in self
            .api_requests
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
        {
            let _ = writeln!(
                out,
                "riffle_operator_api_requests_total{{operation=\"{operation}\",outcome=\"{outcome}\"}} {n}"
            );
        }
        let groups = self.groups.lock().unwrap_or_else(|e| e.into_inner());
        let _ = writeln!(
            out,
            "# HELP riffle_operator_groups_without_leader Replicated shard groups no replica of which leads, as last observed."
        );
        let _ = writeln!(out, "# TYPE riffle_operator_groups_without_leader gauge");
        let _ = writeln!(
            out,
            "riffle_operator_groups_without_leader {}",
            groups.values().filter(|g| !g.has_leader).count()
        );
        let _ = writeln!(
            out,
            "# HELP riffle_operator_group_leader_changes_total Leaders a replicated shard group elected after the first one the operator saw."
        );
        let _ = writeln!(
            out,
            "# TYPE riffle_operator_group_leader_changes_total counter"
        );
        for ((namespace, group), gauges) in groups.iter() {
            let _ = writeln!(
                out,
                "riffle_operator_group_leader_changes_total{{namespace=\"{namespace}\",group=\"{group}\"}} {}",
                gauges.leader_changes
            );
        }
        let _ = writeln!(
            out,
            "# HELP riffle_operator_group_replicas_caught_up Replicas of a replicated shard group that follow its leader and are caught up (the leader included)."
        );
        let _ = writeln!(out, "# TYPE riffle_operator_group_replicas_caught_up gauge");
        for ((namespace, group), gauges) in groups.iter() {
            let _ = writeln!(
                out,
                "riffle_operator_group_replicas_caught_up{{namespace=\"{namespace}\",group=\"{group}\"}} {}",
                gauges.caught_up
            );
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn render_counts_reconciliations_failures_and_durations() {
        let metrics = Metrics::default();
        drop(metrics.reconcile_started());
        drop(metrics.reconcile_started());
        metrics.reconcile_failed("apply");
        let text = metrics.render();
        assert!(
            text.contains("riffle_operator_reconciliations_total 2\n"),
            "{text}"
        );
        assert!(text.contains("riffle_operator_reconcile_failures_total{error=\"apply\"} 1\n"));
        assert!(
            text.contains("riffle_operator_reconcile_duration_seconds_bucket{le=\"+Inf\"} 2\n")
        );
        assert!(text.contains("riffle_operator_reconcile_duration_seconds_count 2\n"));
        metrics.routes_published();
        metrics.api_request("CreateStream", "ok");
        metrics.api_request("CreateStream", "ok");
        let text = metrics.render();
        assert!(text.contains("riffle_operator_routes_writes_total 1\n"));
        assert!(text.contains(
            "riffle_operator_api_requests_total{operation=\"CreateStream\",outcome=\"ok\"} 2\n"
        ));
    }

    fn group(leader: Option<(&str, i64)>) -> GroupStatus {
        use crate::crd::{ReplicaRole, ReplicaStatus};
        GroupStatus {
            name: "orders-g0".into(),
            leader: leader.map(|(pod, _)| pod.to_owned()),
            term: leader.map(|(_, term)| term),
            replicas: (0..3)
                .map(|ordinal| ReplicaStatus {
                    pod: format!("orders-g0-{ordinal}"),
                    role: ReplicaRole::Follower,
                    ready: true,
                    caught_up: leader.is_some() && ordinal < 2,
                })
                .collect(),
        }
    }

    #[test]
    fn leader_changes_count_new_leaders_not_passes_or_gaps() {
        let metrics = Metrics::default();
        let changes =
            "riffle_operator_group_leader_changes_total{namespace=\"shop\",group=\"orders-g0\"}";
        metrics.group_observed("shop", &group(Some(("orders-g0-0", 2))));
        metrics.group_observed("shop", &group(Some(("orders-g0-0", 2))));
        let text = metrics.render();
        assert!(text.contains(&format!("{changes} 0\n")), "{text}");
        assert!(text.contains("riffle_operator_groups_without_leader 0\n"));
        assert!(text.contains(
            "riffle_operator_group_replicas_caught_up{namespace=\"shop\",group=\"orders-g0\"} 2\n"
        ));
        // The leader is lost, then the same leader is found again: not a change.
        metrics.group_observed("shop", &group(None));
        assert!(
            metrics
                .render()
                .contains("riffle_operator_groups_without_leader 1\n")
        );
        metrics.group_observed("shop", &group(Some(("orders-g0-0", 2))));
        assert!(metrics.render().contains(&format!("{changes} 0\n")));
        metrics.group_observed("shop", &group(None));
        metrics.group_observed("shop", &group(Some(("orders-g0-2", 3))));
        let text = metrics.render();
        assert!(text.contains(&format!("{changes} 1\n")), "{text}");
        assert!(text.contains("riffle_operator_groups_without_leader 0\n"));
        metrics.forget_groups("shop", "orders-g");
        assert!(
            metrics.render().contains(changes),
            "another stream's groups stay"
        );
        metrics.forget_groups("shop", "orders");
        assert!(!metrics.render().contains(changes));
    }
}
