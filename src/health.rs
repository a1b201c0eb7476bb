//! Health checks: is the database able to do its job right now, and if not, why.
//!
//! Each check measures something real (a probe write, a search, the memory held, the free
//! space) and says what it found. [`EmbeddedVectorDB::health`](crate::EmbeddedVectorDB::health)
//! runs them all; natively, `EmbeddedConfig::health_check_interval` runs them in a background
//! thread too and keeps the last result.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::clock::Instant;
use crate::storage::StorageSpace;

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

/// Runs `f` as the check `name`, timing it.
pub(crate) fn timed(name: &str, f: impl FnOnce() -> (CheckStatus, String)) -> HealthCheck {
    let start = Instant::now();
    let (status, message) = f();
    HealthCheck {
        name: name.to_owned(),
        status,
        message,
        duration: start.elapsed(),
    }
}

const MIB: f64 = (1u64 << 20) as f64;

/// Memory held against the budget: Warning above 90%, Critical above 100%.
pub(crate) fn memory(used: usize, budget_mb: Option<usize>) -> (CheckStatus, String) {
    let used_mb = used as f64 / MIB;
    match budget_mb {
        None => (
            CheckStatus::Healthy,
            format!("{used_mb:.1} MiB held; no max_memory_mb budget set"),
        ),
        Some(budget) => {
            let share = used_mb / budget as f64;
            let status = if share > 1.0 {
                CheckStatus::Critical
            } else if share > 0.9 {
                CheckStatus::Warning
            } else {
                CheckStatus::Healthy
            };
            (
                status,
                format!(
                    "{used_mb:.1} MiB held of the {budget} MiB budget ({:.0}%)",
                    share * 100.0
                ),
            )
        }
    }
}

/// Free space against the thresholds (in MiB): Critical below `critical_mb`, Warning below
/// `warning_mb` or under 10% of the medium.
pub(crate) fn disk(
    space: std::io::Result<Option<StorageSpace>>,
    warning_mb: u64,
    critical_mb: u64,
) -> (CheckStatus, String) {
    match space {
        Err(e) => (
            CheckStatus::Critical,
            format!("could not read the free space: {e}"),
        ),
        Ok(None) => (
            CheckStatus::Healthy,
            "the storage backend does not report free space".to_owned(),
        ),
        Ok(Some(StorageSpace { free, total })) => {
            let free_mb = free as f64 / MIB;
            let text = format!(
                "{free_mb:.1} MiB free of {:.1} MiB ({:.0}%)",
                total as f64 / MIB,
                if total == 0 {
                    0.0
                } else {
                    free as f64 * 100.0 / total as f64
                }
            );
            if free < critical_mb << 20 {
                (
                    CheckStatus::Critical,
                    format!("{text}: below the critical threshold of {critical_mb} MiB"),
                )
            } else if free < warning_mb << 20 || free * 10 < total {
                (
                    CheckStatus::Warning,
                    format!("{text}: below {warning_mb} MiB or 10%"),
                )
            } else {
                (CheckStatus::Healthy, text)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_thresholds() {
        assert_eq!(memory(10 << 20, Some(100)).0, CheckStatus::Healthy);
        assert_eq!(memory(91 << 20, Some(100)).0, CheckStatus::Warning);
        assert_eq!(memory(101 << 20, Some(100)).0, CheckStatus::Critical);
        assert_eq!(memory(usize::MAX, None).0, CheckStatus::Healthy);
    }

    #[test]
    fn disk_thresholds() {
        let gib = 1u64 << 30;
        let at = |free, total| disk(Ok(Some(StorageSpace { free, total })), 1024, 64).0;
        assert_eq!(at(50 * gib, 100 * gib), CheckStatus::Healthy);
        assert_eq!(at(5 * gib, 100 * gib), CheckStatus::Warning, "under 10%");
        assert_eq!(at(512 << 20, 1 << 40), CheckStatus::Warning, "under 1 GiB");
        assert_eq!(at(10 << 20, 100 * gib), CheckStatus::Critical);
        assert_eq!(
            disk(Err(std::io::Error::other("x")), 1, 1).0,
            CheckStatus::Critical
        );
        assert_eq!(disk(Ok(None), 1, 1).0, CheckStatus::Healthy);
    }
}
