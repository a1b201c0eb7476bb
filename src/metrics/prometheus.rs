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
        let mut text = Exposition::default();
        self.write_state(&mut text);
        self.write_sizes(&mut text);
        self.write_counters(&mut text);
        text.single(
            "wal_bytes",
            "gauge",
            "Current size of the write-ahead log.",
            self.wal_size as f64,
        );
        self.write_operations(&mut text);
        text.family(
            "errors_total",
            "counter",
            "Errors by kind.",
            self.errors_by_kind
                .iter()
                .map(|(k, v)| (format!("{{kind=\"{k}\"}}"), *v as f64)),
        );
        text.0
    }

    /// One sample per possible state, so a dashboard can graph each state as 0 or 1.
    fn write_state(&self, text: &mut Exposition) {
        let states = [
            DatabaseState::Initializing,
            DatabaseState::Ready,
            DatabaseState::Busy,
            DatabaseState::Shutting,
            DatabaseState::Closed,
        ];
        text.family(
            "state",
            "gauge",
            "1 for the current state of the database.",
            states.iter().map(|s| {
                (
                    format!("{{state=\"{}\"}}", s.name()),
                    f64::from(u8::from(*s == self.state)),
                )
            }),
        );
    }

    /// The age and size gauges as a table, so each figure's name and help sit together.
    fn write_sizes(&self, text: &mut Exposition) {
        for (name, help, value) in [
            (
                "uptime_seconds",
                "Seconds since the database was opened.",
                self.uptime.as_secs_f64(),
            ),
            ("vectors", "Live points.", self.total_vectors as f64),
            (
                "memory_bytes",
                "Bytes held in memory.",
                self.memory_bytes as f64,
            ),
            (
                "disk_bytes",
                "Bytes of the database's files.",
                self.disk_bytes as f64,
            ),
        ] {
            text.single(name, "gauge", help, value);
        }
    }

    /// The running totals as a table, so each counter's name and help sit together.
    fn write_counters(&self, text: &mut Exposition) {
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
            text.single(name, "counter", help, v as f64);
        }
    }

    /// Calls, failures and latency share the `op` label, so their families are written together.
    fn write_operations(&self, text: &mut Exposition) {
        let by_op = |f: fn(&OperationMetrics) -> f64| {
            self.operations
                .iter()
                .map(move |(op, m)| (format!("{{op=\"{op}\"}}"), f(m)))
        };
        text.family(
            "operations_total",
            "counter",
            "Calls by kind.",
            by_op(|m| m.calls as f64),
        );
        text.family(
            "operation_errors_total",
            "counter",
            "Failed calls by kind.",
            by_op(|m| m.errors as f64),
        );
        let quantiles = self.operations.iter().flat_map(|(op, m)| {
            [
                ("0.5", m.latency.p50_us),
                ("0.95", m.latency.p95_us),
                ("0.99", m.latency.p99_us),
            ]
            .map(|(q, v)| (format!("{{op=\"{op}\",quantile=\"{q}\"}}"), v / 1e6))
        });
        text.family(
            "operation_latency_seconds",
            "summary",
            "Latency of calls by kind.",
            quantiles,
        );
    }
}

/// Every family starts with the same HELP and TYPE lines, so the text is built in one place.
#[derive(Default)]
struct Exposition(String);

impl Exposition {
    /// The one writer of HELP, TYPE and sample lines, so every family has the same form.
    fn family(
        &mut self,
        name: &str,
        kind: &str,
        help: &str,
        samples: impl IntoIterator<Item = (String, f64)>,
    ) {
        let _ = writeln!(
            self.0,
            "# HELP grape_{name} {help}\n# TYPE grape_{name} {kind}"
        );
        for (labels, value) in samples {
            let _ = writeln!(self.0, "grape_{name}{labels} {value}");
        }
    }

    /// Most families are one unlabelled figure; this spares each of them building a list.
    fn single(&mut self, name: &str, kind: &str, help: &str, value: f64) {
        self.family(name, kind, help, [(String::new(), value)]);
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::time::Duration;

    use super::super::LatencySummary;
    use super::*;

    /// Figures in every family, with labels and fractions, so any change to the text shows.
    fn sample() -> Metrics {
        let op = |calls, errors, p50_us, p95_us, p99_us| OperationMetrics {
            calls,
            errors,
            latency: LatencySummary {
                count: calls,
                mean_us: p50_us,
                p50_us,
                p95_us,
                p99_us,
                max_us: p99_us * 2.0,
            },
        };
        Metrics {
            state: DatabaseState::Busy,
            uptime: Duration::from_millis(12_345),
            total_vectors: 1_500,
            memory_bytes: 3_145_728,
            disk_bytes: 1_048_577,
            points_upserted: 1_700,
            points_deleted: 200,
            queries: 41,
            operations: BTreeMap::from([
                ("search".to_owned(), op(40, 2, 125.0, 480.5, 1_210.25)),
                ("upsert".to_owned(), op(3, 0, 2_000.0, 3_500.0, 9_000.0)),
            ]),
            errors_by_kind: BTreeMap::from([
                ("DimensionMismatch".to_owned(), 2),
                ("NotFound".to_owned(), 1),
            ]),
            wal_bytes_written: 65_536,
            wal_bytes_synced: 61_440,
            wal_size: 4_096,
            segment_bytes_written: 2_000_000,
            checkpoints: 5,
            checkpoints_failed: 1,
        }
    }

    /// The text for [`sample`], captured from the exporter's output: scrapers and dashboards
    /// depend on every byte of it.
    const EXPECTED: &str = r#"# HELP grape_state 1 for the current state of the database.
# TYPE grape_state gauge
grape_state{state="Initializing"} 0
grape_state{state="Ready"} 0
grape_state{state="Busy"} 1
grape_state{state="Shutting"} 0
grape_state{state="Closed"} 0
# HELP grape_uptime_seconds Seconds since the database was opened.
# TYPE grape_uptime_seconds gauge
grape_uptime_seconds 12.345
# HELP grape_vectors Live points.
# TYPE grape_vectors gauge
grape_vectors 1500
# HELP grape_memory_bytes Bytes held in memory.
# TYPE grape_memory_bytes gauge
grape_memory_bytes 3145728
# HELP grape_disk_bytes Bytes of the database's files.
# TYPE grape_disk_bytes gauge
grape_disk_bytes 1048577
# HELP grape_points_upserted_total Points written by upserts.
# TYPE grape_points_upserted_total counter
grape_points_upserted_total 1700
# HELP grape_points_deleted_total Points removed by deletes.
# TYPE grape_points_deleted_total counter
grape_points_deleted_total 200
# HELP grape_queries_total Search queries answered.
# TYPE grape_queries_total counter
grape_queries_total 41
# HELP grape_wal_written_bytes_total Bytes appended to the log.
# TYPE grape_wal_written_bytes_total counter
grape_wal_written_bytes_total 65536
# HELP grape_wal_synced_bytes_total Log bytes made durable.
# TYPE grape_wal_synced_bytes_total counter
grape_wal_synced_bytes_total 61440
# HELP grape_segment_written_bytes_total Segment bytes written.
# TYPE grape_segment_written_bytes_total counter
grape_segment_written_bytes_total 2000000
# HELP grape_checkpoints_total Checkpoints completed.
# TYPE grape_checkpoints_total counter
grape_checkpoints_total 5
# HELP grape_checkpoints_failed_total Checkpoints that failed (the previous one stayed in effect).
# TYPE grape_checkpoints_failed_total counter
grape_checkpoints_failed_total 1
# HELP grape_wal_bytes Current size of the write-ahead log.
# TYPE grape_wal_bytes gauge
grape_wal_bytes 4096
# HELP grape_operations_total Calls by kind.
# TYPE grape_operations_total counter
grape_operations_total{op="search"} 40
grape_operations_total{op="upsert"} 3
# HELP grape_operation_errors_total Failed calls by kind.
# TYPE grape_operation_errors_total counter
grape_operation_errors_total{op="search"} 2
grape_operation_errors_total{op="upsert"} 0
# HELP grape_operation_latency_seconds Latency of calls by kind.
# TYPE grape_operation_latency_seconds summary
grape_operation_latency_seconds{op="search",quantile="0.5"} 0.000125
grape_operation_latency_seconds{op="search",quantile="0.95"} 0.0004805
grape_operation_latency_seconds{op="search",quantile="0.99"} 0.00121025
grape_operation_latency_seconds{op="upsert",quantile="0.5"} 0.002
grape_operation_latency_seconds{op="upsert",quantile="0.95"} 0.0035
grape_operation_latency_seconds{op="upsert",quantile="0.99"} 0.009
# HELP grape_errors_total Errors by kind.
# TYPE grape_errors_total counter
grape_errors_total{kind="DimensionMismatch"} 2
grape_errors_total{kind="NotFound"} 1
"#;

    #[test]
    fn text_is_unchanged() {
        assert_eq!(sample().to_prometheus(), EXPECTED);
    }
}
