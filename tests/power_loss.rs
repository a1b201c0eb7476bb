//! Power loss: every crash state of a workload (file data lost, kept, zeroed or torn; name
//! changes persisted in order or in any subset: see `testkit::power_loss`) must open, hold what
//! was acknowledged, and take one more write that survives a reopen. With `Durability::Sync`,
//! exactly the acknowledged writes, the call in flight all or nothing, over native files and
//! over the OPFS layout (also with SQ8 and the vectors left on disk); with `OnFlush`, a prefix of the calls reaching at least the last flush;
//! and the IndexedDB layout after every commit.
//!
//! 3,000 distinct states per explorer by default; `GRAPE_CRASH_STATES=N` checks up to N (a
//! soak), `GRAPE_CRASH_SEED` picks another workload.

use grape_testkit as testkit;

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use grape_vector_db::storage::{ChunkedStorage, MemoryChunkStore, PooledStorage, Storage};
use grape_vector_db::{Durability, EmbeddedConfig, EmbeddedVectorDB, Point};
use testkit::power_loss::{CrashState, Disk, FsOp, Ordering, RecordingStorage};
use testkit::workload::{self, contents, diff, Call, Contents, DIM};
use testkit::Rng;

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The recorded run: its file operations and, per workload call, the range of them it made.
struct Run {
    ops: Vec<FsOp>,
    /// `spans[i]`: the operations of `calls[i]`.
    spans: Vec<(usize, usize)>,
    models: Vec<Contents>,
    writes: Vec<bool>,
    /// Calls after which every earlier write is durable in any mode (flush, checkpoint).
    settles: Vec<bool>,
    durability: Durability,
}

/// How the database's files are laid out on the disk whose operations are recorded.
#[derive(Clone, Copy)]
enum Layout {
    /// One file per database file (native files).
    Files,
    /// The OPFS layout: a pool of blobs and a double-buffered directory file.
    Pool,
}

impl Layout {
    /// The database's storage on `disk`.
    fn over(self, disk: impl Storage + 'static) -> Arc<dyn Storage> {
        match self {
            Layout::Files => Arc::new(disk),
            Layout::Pool => Arc::new(PooledStorage::open_in(&disk).expect("the pool opens")),
        }
    }
}

fn record(seed: u64, layout: Layout, config: &EmbeddedConfig) -> Run {
    let calls = workload::script(seed, 120);
    let models = workload::models(&calls);
    let storage = RecordingStorage::new();
    let db =
        EmbeddedVectorDB::open_with_storage(config.clone(), layout.over(storage.clone())).unwrap();
    let mut spans = Vec::new();
    for (i, call) in calls.iter().enumerate() {
        let start = storage.op_count();
        call.run(&db, &models[i], &workload::memory)
            .unwrap_or_else(|e| panic!("call {i} {call:?}: {e}"));
        spans.push((start, storage.op_count()));
    }
    drop(db);
    Run {
        ops: storage.ops(),
        spans,
        models,
        writes: calls.iter().map(|c| c.writes()).collect(),
        settles: calls
            .iter()
            .map(|c| matches!(c, Call::Flush | Call::Checkpoint | Call::Compact))
            .collect(),
        durability: config.durability,
    }
}

impl Run {
    /// The contents a crash after the first `k` operations may leave. With `Sync`: every call
    /// that finished its operations, plus the one in flight or not. Otherwise a prefix of the
    /// calls, from at least those before the last finished flush or checkpoint.
    fn allowed(&self, k: usize) -> Vec<usize> {
        let done = self.spans.iter().filter(|&&(_, end)| end <= k).count();
        let durable = match self.durability {
            Durability::Sync => done,
            _ => (0..done)
                .rev()
                .find(|&c| self.settles[c])
                .map_or(0, |c| c + 1),
        };
        let mut out: Vec<usize> = (durable..=done).collect();
        if done < self.spans.len() && self.spans[done].0 < k && self.writes[done] {
            out.push(done + 1);
        }
        out
    }

    /// Every crash state, with the model indices it may hold, deduplicated; `visit` gets each.
    fn states(&self, seed: u64, mut visit: impl FnMut(usize, &CrashState, &[usize])) {
        let mut disk = Disk::new();
        let mut rng = Rng::new(seed);
        for k in 0..=self.ops.len() {
            let allowed = self.allowed(k);
            for state in disk.crash_states(&mut rng) {
                visit(k, &state, &allowed);
            }
            if let Some(op) = self.ops.get(k) {
                disk.apply(op);
            }
        }
    }
}

/// Opens `state` and checks it against the allowed contents; then writes once more and reopens.
fn check(
    state: &CrashState,
    allowed: &[&Contents],
    config: &EmbeddedConfig,
    layout: Layout,
) -> Result<(), String> {
    let storage = state.storage();
    let db = EmbeddedVectorDB::open_with_storage(config.clone(), layout.over(storage.clone()))
        .map_err(|e| format!("open failed: {e}"))?;
    let got = contents(&db).map_err(|e| format!("reading failed: {e}"))?;
    if !allowed.contains(&&got) {
        return Err(format!(
            "opened with other contents than acknowledged: {}",
            diff(&got, allowed[0])
        ));
    }
    let extra = Point::new(1u64 << 40, vec![0.25; DIM]);
    db.upsert(vec![extra.clone()])
        .map_err(|e| format!("a write after recovery failed: {e}"))?;
    drop(db);
    let db = EmbeddedVectorDB::open_with_storage(config.clone(), layout.over(storage))
        .map_err(|e| format!("reopening after a write after recovery failed: {e}"))?;
    let mut want = got;
    want.insert(extra.id, workload::entry(&extra));
    match contents(&db) {
        Ok(again) if again == want => Ok(()),
        Ok(again) => Err(format!("a write after recovery: {}", diff(&again, &want))),
        Err(e) => Err(format!("reading after reopening failed: {e}")),
    }
}

/// A state's files and the model indices it may hold.
type Key = (u64, Vec<usize>);

/// At most `n` of `keys`, picked reproducibly.
fn sample(mut keys: Vec<Key>, n: usize, rng: &mut Rng) -> Vec<Key> {
    while keys.len() > n {
        keys.swap_remove(rng.below(keys.len()));
    }
    keys
}

#[test]
fn every_crash_state_opens_with_exactly_the_acknowledged_writes() {
    explore(Layout::Files, workload::config(Durability::Sync), "files");
}

/// With `Durability::OnFlush`, records reach the log together at a flush (here: explicit
/// flushes, checkpoints and compactions among the calls) and are synced together; a crash
/// before that sync may persist any part of them. Each state must hold a prefix of the calls,
/// at least up to the last flush: unsynced records after a torn one (their durable mark says
/// they were never synced) are a torn tail, not damage.
#[test]
fn every_crash_state_of_an_on_flush_workload_holds_a_prefix_at_least_to_the_last_flush() {
    explore(
        Layout::Files,
        workload::config(Durability::OnFlush),
        "files, on flush",
    );
}

/// The OPFS backend's layout, run natively over the recorded disk: its blob files and its
/// directory file torn, lost or zeroed like any other (a tab closed mid-flush, or power loss).
#[test]
fn every_crash_state_of_the_opfs_layout_opens_with_exactly_the_acknowledged_writes() {
    explore(
        Layout::Pool,
        workload::config(Durability::Sync),
        "OPFS layout",
    );
}

/// The browser's configuration for large sets: the OPFS layout, SQ8 codes, and the vectors of
/// the last checkpoint left in their segment, read on first use (the recorded disk cannot be
/// mapped, as OPFS cannot). A crash state's segment is then read twice over: at the open's
/// checks, and again by every search, read and write that needs a vector.
#[test]
fn every_crash_state_of_the_opfs_layout_with_vectors_on_disk_opens_with_exactly_the_acknowledged_writes(
) {
    let config = EmbeddedConfig {
        quantization: grape_vector_db::Quantization::Sq8,
        vectors_on_disk: true,
        ..workload::config(Durability::Sync)
    };
    explore(Layout::Pool, config, "OPFS layout, SQ8, vectors on disk");
}

fn explore(layout: Layout, config: EmbeddedConfig, what: &str) {
    let seed = env_or("GRAPE_CRASH_SEED", 14);
    let budget = env_or("GRAPE_CRASH_STATES", 3000) as usize;
    let run = record(seed, layout, &config);

    // First pass: the distinct states (files and what they may hold); then a reproducible
    // sample of at most `budget` of them, checked in the second pass. The weak model's states
    // are fewer (only where name changes are unsynced): all of them up to half the budget.
    let mut distinct: BTreeMap<Ordering, Vec<Key>> = BTreeMap::new();
    let mut seen = HashSet::new();
    run.states(seed, |_, state, allowed| {
        let key = (state.fingerprint(), allowed.to_vec());
        if seen.insert(key.clone()) {
            distinct.entry(state.ordering).or_default().push(key);
        }
    });
    let mut rng = Rng::new(seed ^ 0x5eed);
    let weak = distinct.remove(&Ordering::Weak).unwrap_or_default();
    let ordered = distinct.remove(&Ordering::Ordered).unwrap_or_default();
    let weak = sample(weak, budget / 2, &mut rng);
    let ordered = sample(ordered, budget - weak.len(), &mut rng);
    let total_distinct = seen.len();
    let mut chosen: HashSet<Key> = weak.into_iter().chain(ordered).collect();

    let mut checked: BTreeMap<Ordering, usize> = BTreeMap::new();
    let mut failures: Vec<String> = Vec::new();
    let mut kinds: BTreeMap<String, usize> = BTreeMap::new();
    run.states(seed, |k, state, allowed| {
        if !chosen.remove(&(state.fingerprint(), allowed.to_vec())) {
            return;
        }
        *checked.entry(state.ordering).or_default() += 1;
        let models: Vec<&Contents> = allowed.iter().map(|&i| &run.models[i]).collect();
        if let Err(why) = check(state, &models, &config, layout) {
            let kind: String = why.chars().take(60).collect();
            *kinds.entry(kind).or_default() += 1;
            if failures.len() < 8 {
                let files: Vec<_> = state.files.iter().map(|(n, b)| (n, b.len())).collect();
                failures.push(format!(
                    "after op {k} of {} ({:?}), {}: {why}\n    files {files:?}",
                    run.ops.len(),
                    run.ops.get(k.wrapping_sub(1)),
                    state.label
                ));
            }
        }
    });
    let total: usize = checked.values().sum();
    let failed: usize = kinds.values().sum();
    println!(
        "power loss ({what}): {} file operations, {} distinct crash states, {total} checked \
         ({checked:?}), {failed} failed",
        run.ops.len(),
        total_distinct
    );
    assert!(
        failed == 0,
        "{failed} of {total} crash states failed:\n{kinds:#?}\nfirst ones:\n{}",
        failures.join("\n")
    );
}

/// A destroy cut short: every crash state of it opens with the whole database or an empty
/// one, or is refused as `Corrupt` with a message that says to destroy it again, after which
/// it opens empty. Never a database holding part of its points, nor one an open cannot name
/// the cause of (a manifest naming a removed segment, were the removals durable before the
/// manifest's).
#[test]
fn every_crash_state_of_a_destroy_is_the_whole_database_or_none_of_it() {
    let seed = env_or("GRAPE_CRASH_SEED", 14);
    let calls = workload::script(seed, 40);
    let models = workload::models(&calls);
    let config = workload::config(Durability::Sync);
    let storage = RecordingStorage::new();
    let db =
        EmbeddedVectorDB::open_with_storage(config.clone(), Arc::new(storage.clone())).unwrap();
    for (i, call) in calls.iter().enumerate() {
        call.run(&db, &models[i], &workload::memory)
            .unwrap_or_else(|e| panic!("call {i} {call:?}: {e}"));
    }
    // A segment beside the log, so that a state may hold one without its manifest.
    db.checkpoint().unwrap();
    db.upsert(vec![Point::new(1u64 << 41, vec![0.5; DIM])])
        .unwrap();
    let whole = contents(&db).unwrap();
    drop(db);
    let start = storage.op_count();
    EmbeddedVectorDB::destroy_with_storage(&storage).unwrap();
    let ops = storage.ops();
    assert!(ops.len() > start, "the destroy removed files");

    let mut disk = Disk::new();
    let mut rng = Rng::new(seed);
    let mut seen = HashSet::new();
    let (mut opened_whole, mut opened_empty, mut refused) = (0, 0, 0);
    let mut failures: Vec<String> = Vec::new();
    for k in 0..=ops.len() {
        if k >= start {
            for state in disk.crash_states(&mut rng) {
                if !seen.insert(state.fingerprint()) {
                    continue;
                }
                let files = state.storage();
                let outcome = match EmbeddedVectorDB::open_with_storage(
                    config.clone(),
                    Arc::new(files.clone()),
                ) {
                    Ok(db) => match contents(&db) {
                        Ok(got) if got == whole => Ok(&mut opened_whole),
                        Ok(got) if got.is_empty() => Ok(&mut opened_empty),
                        Ok(got) => Err(format!("part of the database: {}", diff(&got, &whole))),
                        Err(e) => Err(format!("reading failed: {e}")),
                    },
                    Err(grape_vector_db::Error::Corrupt { detail, .. })
                        if detail.contains("destroy the database again") =>
                    {
                        let again = EmbeddedVectorDB::destroy_with_storage(&files)
                            .and_then(|()| {
                                EmbeddedVectorDB::open_with_storage(config.clone(), Arc::new(files))
                            })
                            .and_then(|db| db.count(None));
                        match again {
                            Ok(0) => Ok(&mut refused),
                            Ok(n) => Err(format!("{n} points after destroying again")),
                            Err(e) => Err(format!("destroying again: {e}")),
                        }
                    }
                    Err(e) => Err(format!("open failed: {e}")),
                };
                match outcome {
                    Ok(count) => *count += 1,
                    Err(why) if failures.len() < 8 => failures.push(format!(
                        "after op {k} of {} ({:?}), {}: {why}",
                        ops.len(),
                        ops.get(k.wrapping_sub(1)),
                        state.label
                    )),
                    Err(_) => {}
                }
            }
        }
        if let Some(op) = ops.get(k) {
            disk.apply(op);
        }
    }
    println!(
        "destroy cut short: {} distinct crash states, {opened_whole} whole, {opened_empty} \
         empty, {refused} refused until destroyed again",
        seen.len()
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(opened_whole > 0 && opened_empty > 0 && refused > 0);
}

/// The IndexedDB layout, run natively: files in memory committed in chunks, all changes of a
/// commit at once (IndexedDB transactions are atomic, so a crash, a closed tab or power loss
/// leaves the last completed commit). After every call the workload flushes and commits, and
/// one commit in five is refused (a full quota: the changes stay pending for the next). After
/// each attempt, a database loaded from the store must hold exactly what the last completed
/// commit acknowledged, and take one more write.
#[test]
fn every_commit_state_of_the_indexeddb_layout_holds_exactly_the_committed_writes() {
    let seed = env_or("GRAPE_CRASH_SEED", 14);
    let calls = workload::script(seed, 120);
    let models = workload::models(&calls);
    // What the JS API uses with IndexedDB: the log is buffered and committed on flush.
    let config = workload::config(Durability::OnFlush);
    // Small chunks, so that files span many and commits cross their boundaries.
    let store = MemoryChunkStore::with_chunk_bytes(1000);
    let files = ChunkedStorage::open_in(&store).unwrap();
    let db = EmbeddedVectorDB::open_with_storage(config.clone(), Arc::new(files.clone())).unwrap();
    let mut rng = Rng::new(seed);
    let mut committed = Contents::new();
    let (mut states, mut refused) = (0, 0);
    let mut check = |durable: &Contents| {
        let fork = store.fork();
        let files = ChunkedStorage::open_in(&fork).unwrap();
        let db = EmbeddedVectorDB::open_with_storage(config.clone(), Arc::new(files.clone()))
            .unwrap_or_else(|e| panic!("state {states}: open failed: {e}"));
        let got = contents(&db).unwrap();
        assert!(&got == durable, "state {states}: {}", diff(&got, durable));
        let extra = Point::new(1u64 << 40, vec![0.25; DIM]);
        db.upsert(vec![extra.clone()]).unwrap();
        db.flush().unwrap();
        files.commit_to(&fork).unwrap();
        drop(db);
        let again = ChunkedStorage::open_in(&fork).unwrap();
        let db = EmbeddedVectorDB::open_with_storage(config.clone(), Arc::new(again)).unwrap();
        let mut want = got;
        want.insert(extra.id, workload::entry(&extra));
        assert!(
            contents(&db).unwrap() == want,
            "state {states}: a write after recovery"
        );
        states += 1;
    };
    files.commit_to(&store).unwrap();
    check(&committed);
    for (i, call) in calls.iter().enumerate() {
        call.run(&db, &models[i], &workload::memory)
            .unwrap_or_else(|e| panic!("call {i} {call:?}: {e}"));
        db.flush().unwrap();
        if rng.chance(0.2) {
            store.fail_commits(1);
        }
        match files.commit_to(&store) {
            Ok(()) => committed = models[i + 1].clone(),
            Err(_) => refused += 1,
        }
        check(&committed);
    }
    println!("commit states (IndexedDB layout): {states} checked, {refused} commits refused");
    assert!(refused > 0 && states == calls.len() + 1);
}
