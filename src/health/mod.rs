//! Health checks: is the database able to do its job right now, and if not, why.
//!
//! The [`HealthChecker`] of each open database owns the checks, their thresholds, their
//! background schedule and the last result; `checks.rs` holds the checks themselves. Each
//! measures something real (a probe write, a search, the memory held, the free space) and says
//! what it found. [`EmbeddedVectorDB::health`](crate::EmbeddedVectorDB::health) runs them all;
//! natively, `EmbeddedConfig::health_check_interval` runs them in a background thread too.

mod checks;

use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::time::Duration;

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use crate::config::EmbeddedConfig;
use crate::engine::Engine;
use crate::persist::DatabaseFiles;

pub(crate) use checks::timed;

/// How a check (or the whole database) is doing; ordered from best to worst.
///
/// ```
/// use grape_vector_db::CheckStatus;
/// assert!(CheckStatus::Healthy < CheckStatus::Warning && CheckStatus::Warning < CheckStatus::Critical);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum CheckStatus {
    /// Working as it should.
    Healthy,
    /// Working, but close to a limit: act before it fails.
    Warning,
    /// Failing, or past a limit.
    Critical,
}

/// The result of one check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthCheck {
    /// `"storage"`, `"engine"`, `"memory"` or `"disk"`.
    pub name: String,
    /// What it found.
    pub status: CheckStatus,
    /// Why, with the figures.
    pub message: String,
    /// How long the check took.
    pub duration: Duration,
}

/// The result of all checks.
///
/// ```
/// use grape_vector_db::{CheckStatus, EmbeddedConfig, EmbeddedVectorDB, Point};
/// let db = EmbeddedVectorDB::open(EmbeddedConfig::builder(2).build()?)?;
/// db.upsert(vec![Point::new(1, vec![1.0, 0.0])])?;
/// let health = db.health();
/// assert_eq!(health.status, CheckStatus::Healthy, "{health:#?}");
/// assert_eq!(health.checks.len(), 4);
/// # Ok::<(), grape_vector_db::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthStatus {
    /// The worst status of any check.
    pub status: CheckStatus,
    /// Every check, in a fixed order: storage, engine, memory, disk.
    pub checks: Vec<HealthCheck>,
    /// Time since open when the checks ran.
    pub at_uptime: Duration,
}

impl HealthStatus {
    pub(crate) fn new(checks: Vec<HealthCheck>, at_uptime: Duration) -> Self {
        HealthStatus {
            status: checks
                .iter()
                .map(|c| c.status)
                .max()
                .unwrap_or(CheckStatus::Healthy),
            checks,
            at_uptime,
        }
    }

    /// The check of that name.
    ///
    /// ```
    /// use grape_vector_db::{EmbeddedConfig, EmbeddedVectorDB};
    /// let db = EmbeddedVectorDB::open(EmbeddedConfig::builder(2).build()?)?;
    /// assert!(db.health().check("disk").is_some());
    /// # Ok::<(), grape_vector_db::Error>(())
    /// ```
    pub fn check(&self, name: &str) -> Option<&HealthCheck> {
        self.checks.iter().find(|c| c.name == name)
    }
}

/// The limits the memory and disk checks compare against (from [`EmbeddedConfig`]).
///
/// ```
/// use grape_vector_db::{EmbeddedConfig, EmbeddedVectorDB};
/// let config = EmbeddedConfig::builder(2).max_memory_mb(512).build()?;
/// let db = EmbeddedVectorDB::open(config.clone())?;
/// let limits = db.health_checker().thresholds();
/// assert_eq!(limits.max_memory_mb, Some(512));
/// assert_eq!(limits.disk_critical_mb, config.disk_critical_mb);
/// # Ok::<(), grape_vector_db::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthThresholds {
    /// The memory budget: the memory check warns above 90% of it and is critical above it.
    pub max_memory_mb: Option<usize>,
    /// Free space below which (or below 10% of the medium) the disk check warns.
    pub disk_warning_mb: u64,
    /// Free space below which the disk check is critical.
    pub disk_critical_mb: u64,
}

/// The health checks of one open database: which checks run, their thresholds, their
/// background schedule, and the last result of that schedule.
///
/// Held by the database ([`EmbeddedVectorDB::health_checker`](crate::EmbeddedVectorDB::health_checker));
/// [`EmbeddedVectorDB::health`](crate::EmbeddedVectorDB::health) runs the checks now.
///
/// ```
/// use std::time::Duration;
/// use grape_vector_db::{CheckStatus, EmbeddedConfig, EmbeddedVectorDB, HealthChecker};
/// let config = EmbeddedConfig::builder(2)
///     .health_check_interval(Duration::from_millis(5))
///     .build()?;
/// let db = EmbeddedVectorDB::open(config)?;
/// let checker = db.health_checker();
/// assert_eq!(checker.interval(), Some(Duration::from_millis(5)));
/// let now = db.health();
/// let names: Vec<&str> = now.checks.iter().map(|c| c.name.as_str()).collect();
/// assert_eq!(names, HealthChecker::CHECKS);
/// // The background schedule keeps its last result.
/// while checker.last().is_none() {
///     std::thread::sleep(Duration::from_millis(1));
/// }
/// assert_eq!(checker.last().unwrap().status, CheckStatus::Healthy);
/// # Ok::<(), grape_vector_db::Error>(())
/// ```
pub struct HealthChecker {
    thresholds: HealthThresholds,
    interval: Option<Duration>,
    last: Mutex<Option<HealthStatus>>,
    /// Which live point the next engine check searches for: a different one each time.
    probe: AtomicUsize,
}

impl std::fmt::Debug for HealthChecker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HealthChecker")
            .field("thresholds", &self.thresholds)
            .field("interval", &self.interval)
            .field("last", &self.last.lock().as_ref().map(|s| s.status))
            .finish()
    }
}

impl HealthChecker {
    /// The checks, in the order of [`HealthStatus::checks`].
    pub const CHECKS: [&'static str; 4] = ["storage", "engine", "memory", "disk"];

    pub(crate) fn new(config: &EmbeddedConfig) -> Self {
        HealthChecker {
            thresholds: HealthThresholds {
                max_memory_mb: config.max_memory_mb,
                disk_warning_mb: config.disk_warning_mb,
                disk_critical_mb: config.disk_critical_mb,
            },
            interval: config.health_check_interval,
            last: Mutex::new(None),
            probe: AtomicUsize::new(0),
        }
    }

    /// The limits of the memory and disk checks.
    pub fn thresholds(&self) -> HealthThresholds {
        self.thresholds
    }

    /// How often the checks run in the background (natively; `None`: only on demand).
    pub fn interval(&self) -> Option<Duration> {
        self.interval
    }

    /// The last result of the background schedule, if it ran.
    pub fn last(&self) -> Option<HealthStatus> {
        self.last.lock().clone()
    }

    /// Keeps the result of a scheduled run (the schedule's thread exists natively only).
    #[cfg(not(target_arch = "wasm32"))]
    pub(crate) fn record(&self, status: HealthStatus) {
        *self.last.lock() = Some(status);
    }

    /// The storage and disk checks (`None`: an in-memory database).
    pub(crate) fn check_files(
        &self,
        files: Option<&DatabaseFiles>,
        location: &str,
    ) -> [HealthCheck; 2] {
        let Some(files) = files else {
            return [
                timed("storage", || {
                    (
                        CheckStatus::Healthy,
                        "in memory: nothing is written to storage".to_owned(),
                    )
                }),
                timed("disk", || {
                    (CheckStatus::Healthy, "in memory: no disk used".to_owned())
                }),
            ];
        };
        let limits = self.thresholds;
        [
            timed("storage", || checks::storage(files.probe(), location)),
            timed("disk", || {
                checks::disk(
                    files.space(),
                    limits.disk_warning_mb,
                    limits.disk_critical_mb,
                )
            }),
        ]
    }

    /// The engine and memory checks.
    pub(crate) fn check_engine(&self, engine: &Engine) -> [HealthCheck; 2] {
        // A prime stride visits every live point over time without repeating soon.
        let k = self.probe.fetch_add(7919, Relaxed);
        [
            timed("engine", || checks::self_search(engine, k)),
            timed("memory", || {
                checks::memory(engine.memory().total(), self.thresholds.max_memory_mb)
            }),
        ]
    }
}
