//! A monotonic clock that works on every target.
//!
//! `std::time::Instant` panics in `wasm32-unknown-unknown` (there is no clock without the host),
//! so lifecycle timings, metrics and timeouts read time through [`Instant`] here: the standard one
//! natively, the page's or worker's `performance.now()` in WebAssembly. This is the only place the
//! engine's surroundings ask for the time.

use std::time::Duration;

/// A point in monotonic time.
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd)]
pub(crate) struct Instant(Inner);

#[cfg(not(target_arch = "wasm32"))]
type Inner = std::time::Instant;

/// Milliseconds since the time origin of the page, worker or Node process.
#[cfg(target_arch = "wasm32")]
type Inner = f64;

#[cfg(target_arch = "wasm32")]
mod js {
    use wasm_bindgen::prelude::wasm_bindgen;

    #[wasm_bindgen]
    extern "C" {
        // `performance` is a global in pages, workers and Node >= 16.
        #[wasm_bindgen(js_namespace = performance, js_name = now)]
        pub fn performance_now() -> f64;
    }
}

impl Instant {
    /// The current time.
    pub fn now() -> Self {
        #[cfg(not(target_arch = "wasm32"))]
        return Instant(std::time::Instant::now());
        #[cfg(target_arch = "wasm32")]
        return Instant(js::performance_now());
    }

    /// Time since `self` (zero if the clock went backwards).
    pub fn elapsed(&self) -> Duration {
        Instant::now().duration_since(*self)
    }

    /// Time from `earlier` to `self`, or zero.
    pub fn duration_since(&self, earlier: Instant) -> Duration {
        #[cfg(not(target_arch = "wasm32"))]
        return self.0.saturating_duration_since(earlier.0);
        #[cfg(target_arch = "wasm32")]
        return Duration::from_secs_f64(((self.0 - earlier.0) / 1000.0).max(0.0));
    }
}

/// 64 bits that differ from call to call and from process to process (not for cryptography):
/// the salt of a new log file. Mixes the wall clock, a per-process random key where the
/// platform has one, and a counter.
pub(crate) fn entropy() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
    static CALLS: AtomicU64 = AtomicU64::new(0);
    #[cfg(not(target_arch = "wasm32"))]
    let wall = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    #[cfg(target_arch = "wasm32")]
    let wall = (js_sys::Date::now() * 1e3) as u64 ^ js::performance_now().to_bits();
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(wall);
    h.write_u64(CALLS.fetch_add(1, Relaxed));
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn elapsed_grows_and_never_goes_negative() {
        let start = Instant::now();
        std::thread::sleep(Duration::from_millis(2));
        let later = Instant::now();
        assert!(later.duration_since(start) >= Duration::from_millis(2));
        assert_eq!(start.duration_since(later), Duration::ZERO);
        assert!(start.elapsed() >= later.duration_since(start));
    }

    #[test]
    fn entropy_differs_between_calls() {
        let draws: std::collections::HashSet<u64> = (0..100).map(|_| entropy()).collect();
        assert_eq!(draws.len(), 100);
    }
}
