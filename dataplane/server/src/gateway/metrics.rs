//! The gateway's own Prometheus metrics, served on `/metrics`: requests by Kinesis operation
//! and HTTP status, their latency (to the first byte of the answer), the leader hints of
//! replicated shard groups followed, data-plane endpoints found unreachable, and the streams
//! the routes in force name.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;

use crate::metrics::{Counter, Histogram};

/// Distinct operation names counted; further names (clients can send anything) count as
/// `other`.
const MAX_OPERATIONS: usize = 64;

/// The operation label of requests whose operation is not counted by name.
const OTHER: &str = "other";

/// The gateway's counters, shared by every request.
#[derive(Debug, Default)]
pub struct GatewayMetrics {
    /// Requests by operation, then by status.
    requests: Mutex<BTreeMap<String, BTreeMap<u16, u64>>>,
    latency: Histogram,
    /// Requests sent again to the leader a replica named.
    pub leader_follows: Counter,
    /// Sends that found a data-plane endpoint unreachable.
    pub unreachable: Counter,
}

impl GatewayMetrics {
    /// Counts one request for `operation` answered with `status` after `seconds`.
    pub fn request(&self, operation: &str, status: u16, seconds: f64) {
        self.latency.observe(seconds);
        let mut requests = self.requests.lock().unwrap_or_else(|p| p.into_inner());
        let named = operation.len() <= 64
            && !operation.is_empty()
            && operation != OTHER
            && operation.chars().all(|c| c.is_ascii_alphanumeric());
        let counted = requests.contains_key(operation)
            || requests.len() - usize::from(requests.contains_key(OTHER)) < MAX_OPERATIONS;
        let label = if named && counted { operation } else { OTHER };
        *requests
            .entry(label.to_string())
            .or_default()
            .entry(status)
            .or_default() += 1;
    }

    /// The metrics in the Prometheus text format; `routed_streams` is how many streams the
    /// routes in force name.
    pub fn render(&self, routed_streams: usize) -> String {
        let mut out = String::new();
        let name = "riffle_gateway_requests_total";
        let _ = writeln!(
            out,
            "# HELP {name} Kinesis API requests by operation and HTTP status.\n# TYPE {name} counter"
        );
        for (operation, by_status) in self
            .requests
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
        {
            for (status, count) in by_status {
                let _ = writeln!(
                    out,
                    "{name}{{operation=\"{operation}\",status=\"{status}\"}} {count}"
                );
            }
        }
        let name = "riffle_gateway_request_seconds";
        let _ = writeln!(
            out,
            "# HELP {name} Time to the first byte of the answer.\n# TYPE {name} histogram"
        );
        self.latency.render(&mut out, name, "gateway=\"kinesis\"");
        let counters = [
            (
                "riffle_gateway_leader_follows_total",
                "Requests sent again to the leader a replica of a shard group named.",
                self.leader_follows.get(),
            ),
            (
                "riffle_gateway_upstream_unreachable_total",
                "Sends that found a data-plane endpoint unreachable.",
                self.unreachable.get(),
            ),
        ];
        for (name, help, value) in counters {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}"
            );
        }
        let name = "riffle_gateway_routed_streams";
        let _ = writeln!(
            out,
            "# HELP {name} Streams the routes in force name.\n# TYPE {name} gauge\n{name} {routed_streams}"
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_counted_by_operation_and_status_with_bounded_names() {
        let metrics = GatewayMetrics::default();
        metrics.request("PutRecords", 200, 0.002);
        metrics.request("PutRecords", 200, 0.003);
        metrics.request("GetRecords", 400, 0.001);
        metrics.request("Not an operation", 400, 0.001);
        for i in 0..100 {
            metrics.request(&format!("Made{i}"), 400, 0.001);
        }
        metrics.leader_follows.inc();
        let text = metrics.render(3);
        assert!(
            text.contains(
                "riffle_gateway_requests_total{operation=\"PutRecords\",status=\"200\"} 2"
            )
        );
        assert!(
            text.contains(
                "riffle_gateway_requests_total{operation=\"GetRecords\",status=\"400\"} 1"
            )
        );
        // The bad name and every name past the bound are counted together.
        let names = text
            .lines()
            .filter(|l| l.starts_with("riffle_gateway_requests_total{"))
            .count();
        assert_eq!(names, MAX_OPERATIONS + 1, "{text}");
        assert!(text.contains("riffle_gateway_request_seconds_count{gateway=\"kinesis\"} 104"));
        assert!(text.contains("riffle_gateway_leader_follows_total 1"));
        assert!(text.contains("riffle_gateway_routed_streams 3"));
    }
}
