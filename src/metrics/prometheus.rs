//! The metrics in Prometheus' text exposition format.

use std::fmt::Write as _;

use super::{Metrics, OperationMetrics};
use crate::lifecycle::DatabaseState;

impl Metrics {
    /// The metrics in Prometheus' text exposition format (version 0.0.4).
    ///
    /// ```
    /// use grape_vector_db::{EmbeddedConfig, EmbeddedVectorDB};
    /// let db = EmbeddedVectorDB::open(EmbeddedConfig::builder(2).build()?)?;
    /// let text = db.metrics().to_prometheus();
    /// assert!(text.contains("# TYPE grape_operations_total counter"));
    /// assert!(text.contains("grape_state{state=\"Ready\"} 1"));
    /// # Ok::<(), grape_vector_db::Error>(())
    /// ```
    pub fn to_prometheus(&self) -> String {
        let mut out = String::new();
        let mut metric = |name: &str, kind: &str, help: &str, samples: &[(String, f64)]| {
            let _ = writeln!(
                out,
                "# HELP grape_{name} {help}\n# TYPE grape_{name} {kind}"
            );
            for (labels, value) in samples {
                let _ = writeln!(out, "grape_{name}{labels} {value}");
            }
        };
        let one = |v: f64| vec![(String::new(), v)];
        let states = [
            DatabaseState::Initializing,
            DatabaseState::Ready,
            DatabaseState::Busy,
            DatabaseState::Shutting,
            DatabaseState::Closed,
        ];
        metric(
            "state",
            "gauge",
            "1 for the current state of the database.",
            &states
                .iter()
                .map(|s| {
                    (
                        format!("{{state=\"{}\"}}", s.name()),
                        f64::from(u8::from(*s == self.state)),
                    )
                })
                .collect::<Vec<_>>(),
        );
        metric(
            "uptime_seconds",
            "gauge",
            "Seconds since the database was opened.",
            &one(self.uptime.as_secs_f64()),
        );
        metric(
            "vectors",
            "gauge",
            "Live points.",
            &one(self.total_vectors as f64),
        );
        metric(
            "memory_bytes",
            "gauge",
            "Bytes held in memory.",
            &one(self.memory_bytes as f64),
        );
        metric(
            "disk_bytes",
            "gauge",
            "Bytes of the database's files.",
            &one(self.disk_bytes as f64),
        );
        for (name, help, v) in [
            (
                "points_upserted_total",
                "Points written by upserts.",
                self.points_upserted,
            ),
            (
                "points_deleted_total",
                "Points removed by deletes.",
                self.points_deleted,
            ),
            ("queries_total", "Search queries answered.", self.queries),
            (
                "wal_written_bytes_total",
                "Bytes appended to the log.",
                self.wal_bytes_written,
            ),
            (
                "wal_synced_bytes_total",
                "Log bytes made durable.",
                self.wal_bytes_synced,
            ),
            (
                "segment_written_bytes_total",
                "Segment bytes written.",
                self.segment_bytes_written,
            ),
            (
                "checkpoints_total",
                "Checkpoints completed.",
                self.checkpoints,
            ),
            (
                "checkpoints_failed_total",
                "Checkpoints that failed (the previous one stayed in effect).",
                self.checkpoints_failed,
            ),
        ] {
            metric(name, "counter", help, &one(v as f64));
        }
        metric(
            "wal_bytes",
            "gauge",
            "Current size of the write-ahead log.",
            &one(self.wal_size as f64),
        );
        let by_op = |f: &dyn Fn(&OperationMetrics) -> f64| -> Vec<(String, f64)> {
            self.operations
                .iter()
                .map(|(op, m)| (format!("{{op=\"{op}\"}}"), f(m)))
                .collect()
        };
        metric(
            "operations_total",
            "counter",
            "Calls by kind.",
            &by_op(&|m| m.calls as f64),
        );
        metric(
            "operation_errors_total",
            "counter",
            "Failed calls by kind.",
            &by_op(&|m| m.errors as f64),
        );
        let mut quantiles = Vec::new();
        for (op, m) in &self.operations {
            for (q, v) in [
                ("0.5", m.latency.p50_us),
                ("0.95", m.latency.p95_us),
                ("0.99", m.latency.p99_us),
            ] {
                quantiles.push((format!("{{op=\"{op}\",quantile=\"{q}\"}}"), v / 1e6));
            }
        }
        metric(
            "operation_latency_seconds",
            "summary",
            "Latency of calls by kind.",
            &quantiles,
        );
        metric(
            "errors_total",
            "counter",
            "Errors by kind.",
            &self
                .errors_by_kind
                .iter()
                .map(|(k, v)| (format!("{{kind=\"{k}\"}}"), *v as f64))
                .collect::<Vec<_>>(),
        );
        out
    }
}
