//! What a workload measured, printed for people or as one JSON line for tools.

use serde_json::{Map, Value, json};

use crate::cpu::Usage;
use crate::histogram::Histogram;

/// One measured quantity.
#[derive(Clone, Debug)]
pub struct Metric {
    /// Machine name, e.g. `mib_per_s`, `p99_ms`.
    pub name: String,
    /// The value.
    pub value: f64,
    /// Unit for people, e.g. `MiB/s`.
    pub unit: &'static str,
}

/// The result of one workload run.
#[derive(Clone, Debug)]
pub struct Outcome {
    /// The workload's name.
    pub workload: String,
    /// What it measured, in display order.
    pub metrics: Vec<Metric>,
    /// Anything a reader should know (errors seen, a shortened preload, ...).
    pub notes: Vec<String>,
}

impl Outcome {
    /// An outcome with nothing measured yet.
    pub fn new(workload: &str) -> Outcome {
        Outcome {
            workload: workload.to_string(),
            metrics: Vec::new(),
            notes: Vec::new(),
        }
    }

    /// Adds a metric.
    pub fn metric(&mut self, name: &str, value: f64, unit: &'static str) {
        self.metrics.push(Metric {
            name: name.to_string(),
            value,
            unit,
        });
    }

    /// Adds p50/p99/p99.9/max/mean in milliseconds of a nanosecond histogram, named `<prefix>p50_ms`...
    pub fn latency(&mut self, prefix: &str, h: &Histogram) {
        let ms = |ns: u64| ns as f64 / 1e6;
        self.metric(&format!("{prefix}p50_ms"), ms(h.quantile(0.5)), "ms");
        self.metric(&format!("{prefix}p99_ms"), ms(h.quantile(0.99)), "ms");
        self.metric(&format!("{prefix}p999_ms"), ms(h.quantile(0.999)), "ms");
        self.metric(&format!("{prefix}max_ms"), ms(h.max()), "ms");
        self.metric(&format!("{prefix}mean_ms"), h.mean() / 1e6, "ms");
        self.metric(&format!("{prefix}count"), h.count() as f64, "");
    }

    /// Adds CPU usage of both sides: the server's processes together (`server_cpu_pct`) and,
    /// for several, each one (`server_cpu_pct_1`, ... in the order given); and what each
    /// server process wrote towards the disk (`server_written_mib_s_1`, ...).
    pub fn cpu(&mut self, usage: Usage) {
        if let Some(pct) = usage.server_pct {
            self.metric("server_cpu_pct", pct, "% of a core");
        }
        for (i, pct) in usage.per_server_pct.iter().enumerate() {
            if let Some(pct) = pct {
                self.metric(&format!("server_cpu_pct_{}", i + 1), *pct, "% of a core");
            }
        }
        if let Some(pct) = usage.client_pct {
            self.metric("client_cpu_pct", pct, "% of a core");
        }
        for (i, mib) in usage.written_mib_per_s.iter().enumerate() {
            if let Some(mib) = mib {
                self.metric(&format!("server_written_mib_s_{}", i + 1), *mib, "MiB/s");
            }
        }
    }

    /// Adds a note.
    pub fn note(&mut self, note: impl Into<String>) {
        self.notes.push(note.into());
    }

    /// A metric's value by name.
    pub fn get(&self, name: &str) -> Option<f64> {
        self.metrics
            .iter()
            .find(|m| m.name == name)
            .map(|m| m.value)
    }

    /// Lines for people.
    pub fn to_text(&self) -> String {
        let mut out = format!("{}\n", self.workload);
        for m in &self.metrics {
            out.push_str(&format!(
                "  {:<22} {:>14} {}\n",
                m.name,
                format_value(m.value),
                m.unit
            ));
        }
        for n in &self.notes {
            out.push_str(&format!("  note: {n}\n"));
        }
        out
    }

    /// One JSON object.
    pub fn to_json(&self) -> Value {
        let metrics: Map<String, Value> = self
            .metrics
            .iter()
            .map(|m| (m.name.clone(), json!(m.value)))
            .collect();
        json!({"workload": self.workload, "metrics": metrics, "notes": self.notes})
    }
}

/// A number with as many decimals as its size deserves.
pub fn format_value(v: f64) -> String {
    let a = v.abs();
    if a >= 10_000.0 {
        group_thousands(v.round() as i64)
    } else if a >= 100.0 {
        format!("{v:.0}")
    } else if a >= 10.0 {
        format!("{v:.1}")
    } else if a >= 1.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    }
}

fn group_thousands(n: i64) -> String {
    let digits = n.unsigned_abs().to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    if n < 0 { format!("-{out}") } else { out }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_numbers_for_tables() {
        assert_eq!(format_value(312_456.4), "312,456");
        assert_eq!(format_value(1234.4), "1234");
        assert_eq!(format_value(151.26), "151");
        assert_eq!(format_value(15.26), "15.3");
        assert_eq!(format_value(1.234), "1.23");
        assert_eq!(format_value(0.1234), "0.123");
    }

    #[test]
    fn json_carries_every_metric() {
        let mut o = Outcome::new("w");
        o.metric("mib_per_s", 1.5, "MiB/s");
        o.note("n");
        let j = o.to_json();
        assert_eq!(j["metrics"]["mib_per_s"], 1.5);
        assert_eq!(j["notes"][0], "n");
        assert_eq!(o.get("mib_per_s"), Some(1.5));
    }
}
