//! The threads of one database: how many the configuration means, and the scoped parallel map
//! that graph building and large search batches share.

use crate::engine::ParallelMap;

/// How many threads the configured `thread_pool_size` means (0: all cores). Asked
/// once at open: the system call behind `available_parallelism` costs more than inserting a
/// point into a small graph. In wasm (no threads here) it is always 1.
pub(super) fn build_threads(configured: usize) -> usize {
    #[cfg(target_arch = "wasm32")]
    let threads = {
        let _ = configured;
        1
    };
    #[cfg(not(target_arch = "wasm32"))]
    let threads = match configured {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    };
    threads
}

/// The engine's parallel map (see [`ParallelMap`]) over `threads` threads.
pub(super) fn engine_parallel_map(threads: usize) -> ParallelMap {
    Box::new(move |count, job| parallel_map(threads, count, job))
}

/// Runs the engine's independent jobs (graph insertion plans) on `threads` threads, each taking
/// a contiguous share, results in order.
pub(super) fn parallel_map<T: Send>(
    threads: usize,
    count: usize,
    job: &(dyn Fn(usize) -> T + Sync),
) -> Vec<T> {
    if threads < 2 || count < threads {
        return (0..count).map(job).collect();
    }
    let share = count.div_ceil(threads);
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..count)
            .step_by(share)
            .map(|start| {
                scope.spawn(move || {
                    (start..(start + share).min(count))
                        .map(job)
                        .collect::<Vec<T>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| match h.join() {
                Ok(part) => part,
                // A job panicking is a bug; surface it on the calling thread as it would have
                // appeared without threads.
                Err(panic) => std::panic::resume_unwind(panic),
            })
            .collect()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parallel_map_uses_every_thread_even_for_one_job_each() {
        // `searched` splits a batch into exactly `threads` shares: they must not run serially.
        let ids = parallel_map(2, 2, &|_| std::thread::current().id());
        assert_eq!(ids.len(), 2);
        assert_ne!(ids[0], ids[1], "two shares ran on one thread");
        let squares = parallel_map(3, 10, &|i| i * i);
        assert_eq!(
            squares,
            (0..10).map(|i| i * i).collect::<Vec<_>>(),
            "order kept"
        );
        assert_eq!(
            parallel_map(4, 1, &|i| i + 1),
            vec![1],
            "fewer jobs than threads"
        );
    }
}
