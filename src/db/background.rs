//! Background threads (natively; WebAssembly has none here): the indexer of a log replayed at
//! open, the log syncer of `Durability::Batched` and the health checker's schedule.

#[cfg(not(target_arch = "wasm32"))]
use std::sync::Arc;
#[cfg(not(target_arch = "wasm32"))]
use std::time::Duration;

#[cfg(not(target_arch = "wasm32"))]
use super::write::INDEX_CHUNK;
use super::{EmbeddedVectorDB, Inner};
#[cfg(not(target_arch = "wasm32"))]
use crate::lifecycle::DatabaseState;

impl Inner {
    /// Waits for the background indexer to end. Call once the state is `Shutting` or
    /// `Closed`: it stops at its next chunk.
    pub(super) fn join_indexer(&self) {
        let handle = self.indexer.lock().take();
        if let Some(handle) = handle {
            let _ = handle.join();
        }
    }
}

impl EmbeddedVectorDB {
    /// Starts the background threads (natively): the indexer of a replayed log, the log syncer
    /// of `Durability::Batched` and the health checker. Each holds only a weak reference and
    /// ends within one interval (or chunk) of the database closing or its last handle being
    /// dropped.
    #[cfg(not(target_arch = "wasm32"))]
    pub(super) fn spawn_background(&self) {
        // Nothing after a warmup, which did the same work at open.
        if self.has_background_work() {
            self.spawn_indexer();
        }
        let has_files = self.inner.files.lock().is_some();
        if let (true, crate::Durability::Batched { interval }) =
            (has_files, self.inner.config.durability)
        {
            // A failed fsync poisons the log writer, so the next write reports it.
            self.spawn_every("grape-wal-sync", interval, |inner| {
                if let Some(files) = inner.files.lock().as_mut() {
                    let _ = files.flush();
                }
            });
        }
        if let Some(interval) = self.inner.health.interval() {
            self.spawn_every("grape-health", interval, |inner| {
                inner.health.record(inner.run_health_checks());
            });
        }
    }

    /// Inserts the points of a replayed log into the graph a chunk at a time, then builds the
    /// payload indexes, the database `Busy` meanwhile: searches are served between chunks (the
    /// points not yet inserted are scanned exactly) and beside the payload indexes' build (a
    /// filtered search arriving first builds them itself), and a write simply indexes what is
    /// left itself.
    #[cfg(not(target_arch = "wasm32"))]
    fn spawn_indexer(&self) {
        let weak: std::sync::Weak<Inner> = Arc::downgrade(&self.inner);
        let spawned = std::thread::Builder::new()
            .name("grape-index".to_owned())
            .spawn(move || {
                let Some(inner) = weak.upgrade() else { return };
                let _busy = inner.life.busy();
                // Stops once the database closes (or its last handle is dropped, which closes it).
                while inner
                    .index_replayed(INDEX_CHUNK)
                    .is_some_and(|left| left > 0)
                {}
                inner.build_payload_indexes();
            });
        // Without the thread, the next write or checkpoint indexes the points, and the first
        // filtered search builds the payload indexes.
        *self.inner.indexer.lock() = spawned.ok();
    }

    #[cfg(not(target_arch = "wasm32"))]
    fn spawn_every(
        &self,
        name: &str,
        interval: Duration,
        job: impl Fn(&Arc<Inner>) + Send + 'static,
    ) {
        let weak: std::sync::Weak<Inner> = Arc::downgrade(&self.inner);
        let spawned = std::thread::Builder::new()
            .name(name.to_owned())
            .spawn(move || loop {
                std::thread::sleep(interval);
                let Some(inner) = weak.upgrade() else { break };
                if matches!(
                    inner.life.state(),
                    DatabaseState::Shutting | DatabaseState::Closed
                ) {
                    break;
                }
                job(&inner);
            });
        // Without the thread, writes are still durable at the next flush, checkpoint or close,
        // and `health()` still runs the checks on demand.
        drop(spawned);
    }

    #[cfg(target_arch = "wasm32")]
    pub(super) fn spawn_background(&self) {}
}
