//! The database's life: its state, the operations in flight, shutdown hooks and the reports of
//! opening and closing.
//!
//! Every public call of [`EmbeddedVectorDB`](crate::EmbeddedVectorDB) enters through
//! [`LifecycleManager::begin`], which counts it in flight (an RAII [`OpGuard`]) and refuses it once
//! shutdown has started. `close` flips the state to `Shutting` first and then waits for the count
//! to reach zero: both sides use sequentially consistent atomics, so no call can slip in between
//! the check and the wait.

use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering::SeqCst};
use std::time::Duration;

use parking_lot::{Mutex, MutexGuard};
use serde::{Deserialize, Serialize};

use crate::clock::Instant;
use crate::error::{Error, Result};

/// Where a database is in its life.
///
/// ```
/// use grape_vector_db::{DatabaseState, EmbeddedConfig, EmbeddedVectorDB};
/// let db = EmbeddedVectorDB::open(EmbeddedConfig::builder(2).build()?)?;
/// assert_eq!(db.state(), DatabaseState::Ready);
/// db.close()?;
/// assert_eq!(db.state(), DatabaseState::Closed);
/// # Ok::<(), grape_vector_db::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum DatabaseState {
    /// Opening: files are being read and the log replayed.
    Initializing,
    /// Serving every call.
    Ready,
    /// A long maintenance job (checkpoint, compaction, bulk load, graph build) runs; reads are
    /// still served and writes queue behind it.
    Busy,
    /// `close` has started: new calls are refused with [`Error::ShuttingDown`].
    Shutting,
    /// Closed: every call but `state`, `stats` and `metrics` fails with [`Error::Closed`].
    Closed,
}

impl DatabaseState {
    fn from_u8(v: u8) -> Self {
        match v {
            0 => DatabaseState::Initializing,
            1 => DatabaseState::Ready,
            2 => DatabaseState::Busy,
            3 => DatabaseState::Shutting,
            _ => DatabaseState::Closed,
        }
    }

    /// The state's name, as in Prometheus labels and the JS API.
    ///
    /// ```
    /// assert_eq!(grape_vector_db::DatabaseState::Busy.name(), "Busy");
    /// ```
    pub fn name(self) -> &'static str {
        match self {
            DatabaseState::Initializing => "Initializing",
            DatabaseState::Ready => "Ready",
            DatabaseState::Busy => "Busy",
            DatabaseState::Shutting => "Shutting",
            DatabaseState::Closed => "Closed",
        }
    }
}

/// The kinds of calls counted in flight and in the metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OpKind {
    Upsert,
    Delete,
    SetPayload,
    Search,
    Get,
    Count,
    Scroll,
    Flush,
    Checkpoint,
    Compact,
    Snapshot,
    Health,
}

impl OpKind {
    pub const ALL: [OpKind; 12] = [
        OpKind::Upsert,
        OpKind::Delete,
        OpKind::SetPayload,
        OpKind::Search,
        OpKind::Get,
        OpKind::Count,
        OpKind::Scroll,
        OpKind::Flush,
        OpKind::Checkpoint,
        OpKind::Compact,
        OpKind::Snapshot,
        OpKind::Health,
    ];

    pub fn name(self) -> &'static str {
        match self {
            OpKind::Upsert => "upsert",
            OpKind::Delete => "delete",
            OpKind::SetPayload => "set_payload",
            OpKind::Search => "search",
            OpKind::Get => "get",
            OpKind::Count => "count",
            OpKind::Scroll => "scroll",
            OpKind::Flush => "flush",
            OpKind::Checkpoint => "checkpoint",
            OpKind::Compact => "compact",
            OpKind::Snapshot => "snapshot",
            OpKind::Health => "health",
        }
    }

    pub fn index(self) -> usize {
        self as usize
    }
}

/// A function run once when the database closes (see [`LifecycleManager::on_shutdown`]).
pub type ShutdownHook = Box<dyn FnOnce() -> Result<()> + Send>;

/// How long each phase of opening took, and the whole.
///
/// ```
/// use grape_vector_db::{EmbeddedConfig, EmbeddedVectorDB};
/// let db = EmbeddedVectorDB::open(EmbeddedConfig::builder(2).build()?)?;
/// let s = db.open_report().startup;
/// assert!(s.total >= s.wal_replay);
/// # Ok::<(), grape_vector_db::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct StartupReport {
    /// Taking the directory lock.
    pub lock: Duration,
    /// Reading (or creating) the manifest and clearing stale files.
    pub manifest: Duration,
    /// Opening and verifying the checkpoint segment.
    pub segments: Duration,
    /// Replaying the write-ahead log.
    pub wal_replay: Duration,
    /// Warming up (see `EmbeddedConfig::enable_warmup`).
    pub warmup: Duration,
    /// The whole open, from the call to `Ready`.
    pub total: Duration,
}

/// Measures the phases of an open and enforces the startup timeout between them.
pub(crate) struct StartupClock {
    start: Instant,
    phase_start: Instant,
    timeout: Option<Duration>,
    pub report: StartupReport,
}

impl StartupClock {
    pub fn new(timeout: Option<Duration>) -> Self {
        let now = Instant::now();
        StartupClock {
            start: now,
            phase_start: now,
            timeout,
            report: StartupReport::default(),
        }
    }

    /// Fails with [`Error::StartupTimeout`] once the open has taken longer than allowed.
    pub fn check(&self, phase: &'static str) -> Result<()> {
        match self.timeout {
            Some(limit) if self.start.elapsed() > limit => Err(Error::StartupTimeout {
                phase,
                elapsed: self.start.elapsed(),
                limit,
            }),
            _ => Ok(()),
        }
    }

    /// Ends the current phase: returns its duration and checks the timeout.
    pub fn lap(&mut self, phase: &'static str) -> Result<Duration> {
        let now = Instant::now();
        let took = now.duration_since(self.phase_start);
        self.phase_start = now;
        self.check(phase)?;
        Ok(took)
    }

    pub fn finish(mut self) -> StartupReport {
        self.report.total = self.start.elapsed();
        self.report
    }
}

/// What [`EmbeddedVectorDB::close`](crate::EmbeddedVectorDB::close) did.
///
/// ```
/// use grape_vector_db::{EmbeddedConfig, EmbeddedVectorDB};
/// let db = EmbeddedVectorDB::open(EmbeddedConfig::builder(2).build()?)?;
/// let report = db.close()?;
/// assert!(report.hook_errors.is_empty());
/// assert!(report.total >= report.drain);
/// # Ok::<(), grape_vector_db::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ShutdownReport {
    /// The whole close.
    pub total: Duration,
    /// Waiting for calls in flight to finish.
    pub drain: Duration,
    /// Calls that were in flight when close began and finished before it went on.
    pub operations_drained: usize,
    /// Writing and fsyncing the log.
    pub flush: Duration,
    /// Log bytes that were written or fsynced by the close (unflushed writes it made durable).
    pub bytes_flushed: u64,
    /// The checkpoint on close, when configured (`EmbeddedConfig::checkpoint_on_close`).
    pub checkpoint: Option<Duration>,
    /// Running the shutdown hooks.
    pub hooks: Duration,
    /// Hooks that failed (or panicked), with their messages; the close still completes.
    pub hook_errors: Vec<String>,
}

/// The life of one open database: its state, the calls in flight, uptime, the reports of its
/// open and close, and the hooks to run when it closes.
///
/// Held by the database ([`EmbeddedVectorDB::lifecycle`](crate::EmbeddedVectorDB::lifecycle)).
/// Every public call of the database enters through it: it is counted in flight and refused
/// once shutdown has started.
///
/// ```
/// use std::sync::{Arc, atomic::{AtomicBool, Ordering}};
/// use grape_vector_db::{DatabaseState, EmbeddedConfig, EmbeddedVectorDB};
/// let db = EmbeddedVectorDB::open(EmbeddedConfig::builder(2).build()?)?;
/// let life = db.lifecycle();
/// assert_eq!((life.state(), life.in_flight()), (DatabaseState::Ready, 0));
/// let ran = Arc::new(AtomicBool::new(false));
/// let flag = ran.clone();
/// life.on_shutdown(move || { flag.store(true, Ordering::SeqCst); Ok(()) })?;
/// assert!(life.shutdown_report().is_none());
/// db.close()?;
/// assert!(ran.load(Ordering::SeqCst));
/// assert_eq!(life.state(), DatabaseState::Closed);
/// assert!(life.shutdown_report().unwrap().hook_errors.is_empty());
/// # Ok::<(), grape_vector_db::Error>(())
/// ```
pub struct LifecycleManager {
    state: AtomicU8,
    in_flight: [AtomicUsize; OpKind::ALL.len()],
    hooks: Mutex<Vec<ShutdownHook>>,
    opened_at: Instant,
    startup: StartupReport,
    shutdown: Mutex<Option<ShutdownReport>>,
    /// Held by the close in progress, so that two closes do not run at once.
    closing: Mutex<()>,
}

impl std::fmt::Debug for LifecycleManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LifecycleManager")
            .field("state", &self.state())
            .field("in_flight", &self.in_flight())
            .field("uptime", &self.uptime())
            .finish()
    }
}

/// Counts one call in flight until dropped.
pub(crate) struct OpGuard<'a> {
    counter: &'a AtomicUsize,
}

impl Drop for OpGuard<'_> {
    fn drop(&mut self) {
        self.counter.fetch_sub(1, SeqCst);
    }
}

/// Holds the state at `Busy` until dropped (if this guard set it).
pub(crate) struct BusyGuard<'a> {
    life: &'a LifecycleManager,
    set: bool,
}

impl Drop for BusyGuard<'_> {
    fn drop(&mut self) {
        if self.set {
            // Fails harmlessly if a close moved the state on meanwhile.
            let _ = self.life.state.compare_exchange(
                DatabaseState::Busy as u8,
                DatabaseState::Ready as u8,
                SeqCst,
                SeqCst,
            );
        }
    }
}

impl LifecycleManager {
    /// A database that finished opening as `startup` reports, now `Initializing`.
    pub(crate) fn new(startup: StartupReport) -> Self {
        LifecycleManager {
            state: AtomicU8::new(DatabaseState::Initializing as u8),
            in_flight: Default::default(),
            hooks: Mutex::new(Vec::new()),
            opened_at: Instant::now(),
            startup,
            shutdown: Mutex::new(None),
            closing: Mutex::new(()),
        }
    }

    /// Where the database is in its life.
    pub fn state(&self) -> DatabaseState {
        DatabaseState::from_u8(self.state.load(SeqCst))
    }

    /// Time since the database finished opening.
    pub fn uptime(&self) -> Duration {
        self.opened_at.elapsed()
    }

    /// Calls running now.
    pub fn in_flight(&self) -> usize {
        self.in_flight.iter().map(|c| c.load(SeqCst)).sum()
    }

    /// How long each phase of the open took.
    pub fn startup(&self) -> StartupReport {
        self.startup
    }

    /// What the close did, once the database is closed by `close` (`None` before, and after a
    /// close that failed or the last handle being dropped without one).
    pub fn shutdown_report(&self) -> Option<ShutdownReport> {
        self.shutdown.lock().clone()
    }

    /// Registers `hook` to run once when the database closes (by `close`, or when the last
    /// handle is dropped), after the log is flushed. Refused once shutdown has started.
    pub fn on_shutdown(&self, hook: impl FnOnce() -> Result<()> + Send + 'static) -> Result<()> {
        let _in_flight = self.begin(OpKind::Health)?;
        self.hooks.lock().push(Box::new(hook));
        Ok(())
    }

    pub(crate) fn set_state(&self, state: DatabaseState) {
        self.state.store(state as u8, SeqCst);
    }

    /// Moves `from` to `to` if the state is still `from`.
    fn transition(&self, from: DatabaseState, to: DatabaseState) -> bool {
        self.state
            .compare_exchange(from as u8, to as u8, SeqCst, SeqCst)
            .is_ok()
    }

    /// Starts a close: refuses a second close running at once or one after the end, then sets
    /// `Shutting`. The guard is held for the whole close.
    pub(crate) fn begin_close(&self) -> Result<MutexGuard<'_, ()>> {
        let Some(closing) = self.closing.try_lock() else {
            return Err(Error::ShuttingDown);
        };
        if self.state() == DatabaseState::Closed {
            return Err(Error::Closed);
        }
        self.set_state(DatabaseState::Shutting);
        Ok(closing)
    }

    /// Ends a close that succeeded.
    pub(crate) fn closed(&self, report: ShutdownReport) {
        *self.shutdown.lock() = Some(report);
        self.set_state(DatabaseState::Closed);
    }

    /// Admits a call, or refuses it once shutdown has started.
    pub(crate) fn begin(&self, kind: OpKind) -> Result<OpGuard<'_>> {
        let counter = &self.in_flight[kind.index()];
        // Count first, then look at the state: `close` sets the state first, then reads the
        // counts, so either it sees this call or this call sees `Shutting`.
        counter.fetch_add(1, SeqCst);
        let guard = OpGuard { counter };
        match self.state() {
            DatabaseState::Shutting => Err(Error::ShuttingDown),
            DatabaseState::Closed => Err(Error::Closed),
            _ => Ok(guard),
        }
    }

    /// Marks a long maintenance job; reads keep being served.
    pub(crate) fn busy(&self) -> BusyGuard<'_> {
        BusyGuard {
            set: self.transition(DatabaseState::Ready, DatabaseState::Busy),
            life: self,
        }
    }

    /// [`LifecycleManager::busy`] for a job that outlives any one borrow (the browser's indexer,
    /// which runs across the page's idle slices): `Ready` to `Busy` and whether it did, then
    /// [`LifecycleManager::end_busy`] from the job that did.
    #[cfg(target_arch = "wasm32")]
    pub(crate) fn begin_busy(&self) -> bool {
        self.transition(DatabaseState::Ready, DatabaseState::Busy)
    }

    /// Back to `Ready` after [`LifecycleManager::begin_busy`] (not if a close moved on meanwhile).
    #[cfg(target_arch = "wasm32")]
    pub(crate) fn end_busy(&self) {
        self.transition(DatabaseState::Busy, DatabaseState::Ready);
    }

    /// The calls in flight, by kind, for the message of a close that timed out.
    fn describe_in_flight(&self) -> String {
        let parts: Vec<String> = OpKind::ALL
            .iter()
            .filter_map(|k| match self.in_flight[k.index()].load(SeqCst) {
                0 => None,
                n => Some(format!("{n} {}", k.name())),
            })
            .collect();
        parts.join(", ")
    }

    /// Waits until no call is in flight, up to `timeout`; returns how many there were at the
    /// start, or the error naming what was still running.
    pub(crate) fn drain(&self, timeout: Duration) -> Result<usize> {
        let at_start = self.in_flight();
        let start = Instant::now();
        let mut pause = Duration::from_micros(50);
        while self.in_flight() > 0 {
            if start.elapsed() >= timeout {
                return Err(Error::ShutdownTimeout {
                    waited: start.elapsed(),
                    still_running: self.describe_in_flight(),
                });
            }
            sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(5));
        }
        Ok(at_start)
    }

    /// Runs and removes every hook in the order they were added; a failing or panicking hook
    /// does not stop the others.
    pub(crate) fn run_hooks(&self) -> Vec<String> {
        let hooks = std::mem::take(&mut *self.hooks.lock());
        let mut errors = Vec::new();
        for (i, hook) in hooks.into_iter().enumerate() {
            match std::panic::catch_unwind(std::panic::AssertUnwindSafe(hook)) {
                Ok(Ok(())) => {}
                Ok(Err(e)) => errors.push(format!("hook {i}: {e}")),
                Err(panic) => {
                    let msg = panic
                        .downcast_ref::<&str>()
                        .map(|s| s.to_string())
                        .or_else(|| panic.downcast_ref::<String>().cloned())
                        .unwrap_or_else(|| "unknown panic".to_owned());
                    errors.push(format!("hook {i} panicked: {msg}"));
                }
            }
        }
        errors
    }
}

/// Sleeps natively; in WebAssembly (single-threaded: nothing can finish while we wait) returns.
fn sleep(d: Duration) {
    #[cfg(not(target_arch = "wasm32"))]
    std::thread::sleep(d);
    #[cfg(target_arch = "wasm32")]
    let _ = d;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn begin_is_refused_once_shutting_and_the_guard_uncounts() {
        let life = LifecycleManager::new(StartupReport::default());
        life.set_state(DatabaseState::Ready);
        {
            let _a = life.begin(OpKind::Search).unwrap();
            let _b = life.begin(OpKind::Upsert).unwrap();
            assert_eq!(life.in_flight(), 2);
            assert_eq!(life.describe_in_flight(), "1 upsert, 1 search");
        }
        assert_eq!(life.in_flight(), 0);
        life.set_state(DatabaseState::Shutting);
        assert_eq!(life.begin(OpKind::Get).err(), Some(Error::ShuttingDown));
        life.set_state(DatabaseState::Closed);
        assert_eq!(life.begin(OpKind::Get).err(), Some(Error::Closed));
        assert_eq!(life.in_flight(), 0, "refused calls are not left counted");
    }

    #[test]
    fn drain_times_out_naming_what_runs() {
        let life = LifecycleManager::new(StartupReport::default());
        life.set_state(DatabaseState::Ready);
        let _g = life.begin(OpKind::Checkpoint).unwrap();
        match life.drain(Duration::from_millis(5)) {
            Err(Error::ShutdownTimeout { still_running, .. }) => {
                assert_eq!(still_running, "1 checkpoint")
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn busy_returns_to_ready_unless_shutdown_began() {
        let life = LifecycleManager::new(StartupReport::default());
        life.set_state(DatabaseState::Ready);
        {
            let _b = life.busy();
            assert_eq!(life.state(), DatabaseState::Busy);
            let _nested = life.busy();
        }
        assert_eq!(life.state(), DatabaseState::Ready);
        {
            let _b = life.busy();
            life.set_state(DatabaseState::Shutting);
        }
        assert_eq!(life.state(), DatabaseState::Shutting);
    }

    #[test]
    fn hooks_run_once_and_failures_are_collected() {
        let life = LifecycleManager::new(StartupReport::default());
        life.set_state(DatabaseState::Ready);
        life.on_shutdown(|| Ok(())).unwrap();
        life.on_shutdown(|| Err(Error::InvalidArgument("nope".into())))
            .unwrap();
        life.on_shutdown(|| panic!("boom")).unwrap();
        let errors = life.run_hooks();
        assert_eq!(errors.len(), 2);
        assert!(errors[0].contains("nope") && errors[1].contains("boom"));
        assert!(life.run_hooks().is_empty());
    }
}
