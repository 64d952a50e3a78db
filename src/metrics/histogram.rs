//! The latency histogram: fixed buckets of atomics, rendered in the
//! Prometheus text format.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::line;

/// Latency buckets in seconds, from 100µs (the proxy's own overhead) to 30s
/// (a slow bot).
const BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0, 30.0,
];

pub struct Histogram {
    counts: [AtomicU64; BUCKETS.len()],
    count: AtomicU64,
    sum_nanos: AtomicU64,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            counts: std::array::from_fn(|_| AtomicU64::new(0)),
            count: AtomicU64::new(0),
            sum_nanos: AtomicU64::new(0),
        }
    }
}

impl Histogram {
    pub fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        if let Some(i) = BUCKETS.iter().position(|&b| secs <= b) {
            self.counts[i].fetch_add(1, Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_nanos
            .fetch_add(d.as_nanos().min(u64::MAX as u128) as u64, Ordering::Relaxed);
    }

    pub(super) fn render(&self, out: &mut String, name: &str, labels: &str) {
        let sep = if labels.is_empty() { "" } else { "," };
        let mut cumulative = 0;
        for (i, bound) in BUCKETS.iter().enumerate() {
            cumulative += self.counts[i].load(Ordering::Relaxed);
            line(
                out,
                format_args!("{name}_bucket{{{labels}{sep}le=\"{bound}\"}} {cumulative}"),
            );
        }
        let count = self.count.load(Ordering::Relaxed);
        line(
            out,
            format_args!("{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {count}"),
        );
        let sum = self.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9;
        let braces = |l: &str| {
            if l.is_empty() {
                String::new()
            } else {
                format!("{{{l}}}")
            }
        };
        line(out, format_args!("{name}_sum{} {sum}", braces(labels)));
        line(out, format_args!("{name}_count{} {count}", braces(labels)));
    }
}
