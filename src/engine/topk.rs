//! A bounded selection of the k closest candidates seen so far.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

/// A scored slot; `key` is smaller for closer points (see `distance::closeness_key`).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Candidate {
    pub key: f32,
    pub slot: u32,
}

impl PartialEq for Candidate {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Candidate {}
impl PartialOrd for Candidate {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Candidate {
    /// Closer first; equal keys order by slot so results are deterministic.
    fn cmp(&self, other: &Self) -> Ordering {
        self.key
            .total_cmp(&other.key)
            .then(self.slot.cmp(&other.slot))
    }
}

/// Keeps the `k` smallest candidates pushed, with the worst of them on top of a max-heap so a
/// losing candidate is rejected with one comparison.
pub(crate) struct TopK {
    k: usize,
    heap: BinaryHeap<Candidate>,
}

impl TopK {
    pub fn new(k: usize) -> Self {
        TopK {
            k,
            heap: BinaryHeap::with_capacity(k.saturating_add(1).min(1 << 16)),
        }
    }

    /// Whether a candidate with this key could still enter the selection.
    #[inline]
    pub fn admits(&self, key: f32) -> bool {
        self.heap.len() < self.k || self.heap.peek().is_some_and(|w| key < w.key)
    }

    /// The key a candidate must beat once the selection is full; `None` before.
    #[inline]
    pub fn worst_when_full(&self) -> Option<f32> {
        match self.heap.len() >= self.k {
            true => self.heap.peek().map(|w| w.key),
            false => None,
        }
    }

    #[inline]
    pub fn push(&mut self, c: Candidate) {
        if self.heap.len() < self.k {
            self.heap.push(c);
        } else if let Some(mut worst) = self.heap.peek_mut() {
            if c < *worst {
                *worst = c;
            }
        }
    }

    /// The selection, closest first.
    pub fn into_sorted(self) -> Vec<Candidate> {
        self.heap.into_sorted_vec()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_k_smallest_in_order() {
        let mut t = TopK::new(3);
        for (i, key) in [5.0, 1.0, 4.0, 2.0, 3.0, 0.5].into_iter().enumerate() {
            if t.admits(key) {
                t.push(Candidate {
                    key,
                    slot: i as u32,
                });
            }
        }
        let keys: Vec<f32> = t.into_sorted().iter().map(|c| c.key).collect();
        assert_eq!(keys, vec![0.5, 1.0, 2.0]);
    }

    #[test]
    fn zero_k_keeps_nothing() {
        let mut t = TopK::new(0);
        assert!(!t.admits(1.0));
        t.push(Candidate { key: 1.0, slot: 0 });
        assert!(t.into_sorted().is_empty());
    }
}
