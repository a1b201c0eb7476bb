//! The checks themselves: each measures something real and says what it found, with the
//! figures.

use crate::clock::Instant;
use crate::engine::{Engine, Sample};
use crate::filter::{Condition, Filter};
use crate::point::PointId;
use crate::search::{ScoredPoint, SearchParams, SearchRequest};
use crate::storage::StorageSpace;

use super::{CheckStatus, HealthCheck};

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
pub(super) fn memory(used: usize, budget_mb: Option<usize>) -> (CheckStatus, String) {
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
pub(super) fn disk(
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

/// The storage check: a probe write, read back and sync, and the log writer usable.
pub(super) fn storage(probe: Result<(), String>, location: &str) -> (CheckStatus, String) {
    match probe {
        Ok(()) => (
            CheckStatus::Healthy,
            format!("{location}: write, read back and sync succeeded"),
        ),
        Err(why) => (CheckStatus::Critical, why),
    }
}

/// The engine health check: the `k`-th live point, searched with its own vector through the
/// index, must come back (or a point exactly as close, for duplicates). Missed by the index but
/// found by an exact scan is a warning (recall is degraded); missed by both is critical.
pub(super) fn self_search(engine: &Engine, k: usize) -> (CheckStatus, String) {
    if let Some(verdict) = unreadable_payloads(engine) {
        return verdict;
    }
    let Some(sample) = engine.sample_live(k) else {
        return (
            CheckStatus::Healthy,
            "empty: nothing to search for".to_owned(),
        );
    };
    let id = sample.id;
    let search = |exact: bool, filter: Option<Filter>| top_ten(engine, &sample, exact, filter);
    let by_id = search(true, Some(Filter::must([Condition::has_id([id])])));
    let own_score = match own_score(by_id, id) {
        Ok(score) => score,
        Err(verdict) => return verdict,
    };
    let higher_is_better = sample.distance.higher_is_better();
    let finds_itself = |found: &[ScoredPoint]| finds_itself(found, id, own_score, higher_is_better);
    match (search(false, None), search(true, None)) {
        (Ok(approx), _) if finds_itself(&approx) => (
            CheckStatus::Healthy,
            format!("point {id} found itself among {} points", engine.len()),
        ),
        (Ok(_), Ok(exact)) if finds_itself(&exact) => (
            CheckStatus::Warning,
            format!("the index missed point {id} but an exact scan found it: recall is degraded"),
        ),
        (Err(e), _) | (_, Err(e)) => (CheckStatus::Critical, format!("search failed: {e}")),
        _ => (
            CheckStatus::Critical,
            format!("point {id} is not found by its own vector"),
        ),
    }
}

/// Damage the checksums missed outranks anything a search could show, so it is checked first.
fn unreadable_payloads(engine: &Engine) -> Option<(CheckStatus, String)> {
    let (count, row) = engine.unreadable_payloads()?;
    Some((
        CheckStatus::Critical,
        format!(
            "{count} payload(s) of the checkpoint segment do not parse (first: row {row}) \
             and read as empty, although the file's checksums hold: it was altered or \
             written by a faulty writer; restore from a snapshot"
        ),
    ))
}

/// The check's three searches differ only in exactness and filter, so they share one request.
fn top_ten(
    engine: &Engine,
    sample: &Sample,
    exact: bool,
    filter: Option<Filter>,
) -> crate::error::Result<Vec<ScoredPoint>> {
    let mut request = SearchRequest::new(sample.vector.clone(), 10);
    request.using = sample.using.clone();
    request.params = SearchParams {
        exact,
        ..SearchParams::default()
    };
    request.filter = filter;
    engine
        .search_batch(std::slice::from_ref(&request))
        .map(|mut r| r.remove(0).result)
}

/// Sets the bar for the other searches; a point not found even by its id is critical already.
fn own_score(
    found: crate::error::Result<Vec<ScoredPoint>>,
    id: PointId,
) -> Result<f32, (CheckStatus, String)> {
    match found {
        Ok(found) if !found.is_empty() => Ok(found[0].score),
        Ok(_) => Err((
            CheckStatus::Critical,
            format!("point {id} is listed but cannot be read"),
        )),
        Err(e) => Err((
            CheckStatus::Critical,
            format!("searching for point {id} failed: {e}"),
        )),
    }
}

/// A tie counts as found, since duplicates and parallel vectors score as well as the point.
fn finds_itself(
    found: &[ScoredPoint],
    id: PointId,
    own_score: f32,
    higher_is_better: bool,
) -> bool {
    // Found: the point itself, or a first result at least as close as the point is to itself
    // (duplicates and parallel vectors tie within rounding; with Dot a longer vector in the same
    // direction scores higher than the point itself).
    let tolerance = 1e-5 * (1.0 + own_score.abs());
    found.iter().any(|p| p.id == id)
        || found.first().is_some_and(|p| match higher_is_better {
            true => p.score >= own_score - tolerance,
            false => p.score <= own_score + tolerance,
        })
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
