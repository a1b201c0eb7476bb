//! Candidates built for recent searches, kept until the indexes change, as Lucene keeps
//! filters: applications repeat their filters (one user's notes, one tenant), and building the
//! bitset of 100K candidates was a third of a filtered search's time at 1M points, merging the
//! lists of a `should` an eighth of a sketched scan's (PERFORMANCE.md).
//!
//! A filter that no index narrows has its matches found on its second use (evaluating it on
//! every payload, as a scan does) and kept as a bitset, so from then on it is searched as an
//! exact index candidate set would be; used once, it costs nothing more than it did.
//!
//! Each thread keeps its own (the engine takes no locks; searches on one thread share it, and
//! a database serves its searches from a few threads at most). An entry is known by the
//! generation of the indexes it came from, the lists it was built from (address and length)
//! and how it was built. Every change to the indexes takes a new generation, unique across
//! all indexes of the process, so within a generation those lists are the very ones an entry
//! was built from: a list that grows may move, and another could take its old address.

use std::cell::RefCell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use super::Matches;
use crate::filter::Filter;

/// A thread keeps up to this many bitsets' worth of bytes (a bitset is a bit per slot: 128
/// KiB at 1M points); a slot list larger than that is not kept.
const BITSETS_WORTH: usize = 8;

/// A thread keeps at most this many entries (those of filters seen once hold no bytes)...
const MOST_ENTRIES: usize = 64;

/// ... of which at most this many of filters seen once, so that a stream of one-off filters
/// cannot push out what is kept for the repeated ones.
const MOST_SEEN: usize = 32;

/// Separates the parts' lists in a [`Key`] (no list has this address).
const PART: (usize, usize) = (usize::MAX, 0);

/// The next generation handed out (see [`new_generation`]).
static NEXT_GENERATION: AtomicU64 = AtomicU64::new(0);

thread_local! {
    /// This thread's entries, most recently used first.
    static RECENT: RefCell<Vec<(Key, Built)>> = const { RefCell::new(Vec::new()) };
}

/// A generation no indexes had before: indexes take one when made and at every change.
pub(super) fn new_generation() -> u64 {
    NEXT_GENERATION.fetch_add(1, Ordering::Relaxed)
}

/// What an entry was built from.
#[derive(PartialEq)]
pub(super) struct Key {
    /// The generation of the indexes holding the lists.
    generation: u64,
    /// Each part's lists, parts separated by `PART`.
    lists: Vec<(usize, usize)>,
    /// The slots the database had.
    slots: usize,
    form: Form,
    /// The filter whose matches the entry holds (`Form::Matches`).
    filter: Option<Filter>,
}

/// How an entry was built.
#[derive(PartialEq, Clone, Copy)]
pub(super) enum Form {
    /// A bitset of the first part's slots, dead ones kept.
    Bits,
    /// A bitset of the slots every part lists, leaving out this many dead slots.
    LiveBits(usize),
    /// The sorted slots every part lists, dead ones kept.
    Slots,
    /// The live slots matching a filter, with this many dead slots left out.
    Matches(usize),
}

/// A built entry, and whether every part was sure of each slot it holds.
#[derive(Clone)]
pub(super) enum Built {
    Bits(Arc<Vec<u64>>, bool),
    Slots(Arc<Vec<u32>>, bool),
    /// A filter's matches.
    Matches(Arc<Matches>),
    /// A filter used once: its matches are found on its next use.
    Seen,
}

impl Built {
    fn bytes(&self) -> usize {
        match self {
            Built::Bits(b, _) => b.len() * 8,
            Built::Slots(s, _) => s.len() * 4,
            Built::Matches(m) => m.bytes(),
            Built::Seen => 0,
        }
    }
}

impl Key {
    /// The key of an entry built from these parts' lists, of indexes of this generation, over
    /// `slots` slots.
    pub fn new<'a>(
        generation: u64,
        parts: impl IntoIterator<Item = &'a [&'a [u32]]>,
        slots: usize,
        form: Form,
    ) -> Key {
        let mut lists = Vec::new();
        for (i, part) in parts.into_iter().enumerate() {
            if i > 0 {
                lists.push(PART);
            }
            // Empty lists may share a dangling address: all alike, and all hold nothing.
            lists.extend(part.iter().map(|l| match l.is_empty() {
                true => (0, 0),
                false => (l.as_ptr() as usize, l.len()),
            }));
        }
        Key {
            generation,
            lists,
            slots,
            form,
            filter: None,
        }
    }

    /// The key of the live matches of `filter`, with `dead` dead slots among `slots`, in
    /// indexes of this generation.
    pub fn of_matches(generation: u64, filter: &Filter, slots: usize, dead: usize) -> Key {
        Key {
            generation,
            lists: Vec::new(),
            slots,
            form: Form::Matches(dead),
            filter: Some(filter.clone()),
        }
    }
}

/// The entry `key` stands for, if this thread keeps it.
pub(super) fn find(key: &Key) -> Option<Built> {
    RECENT.with_borrow_mut(|recent| {
        let at = recent.iter().position(|(k, _)| k == key)?;
        let hit = recent.remove(at);
        let built = hit.1.clone();
        recent.insert(0, hit);
        Some(built)
    })
}

/// Remembers `built` under `key` (instead of what it held), forgetting the least recently
/// used beyond the budget.
pub(super) fn keep(key: Key, built: Built) {
    let budget = BITSETS_WORTH * key.slots.div_ceil(64) * 8;
    RECENT.with_borrow_mut(|recent| {
        recent.retain(|(k, _)| *k != key);
        if built.bytes() <= budget {
            recent.insert(0, (key, built));
            let (mut held, mut seen) = (0, 0);
            recent.retain(|(_, b)| {
                held += b.bytes();
                seen += usize::from(matches!(b, Built::Seen));
                held <= budget && (seen <= MOST_SEEN || !matches!(b, Built::Seen))
            });
            recent.truncate(MOST_ENTRIES);
        }
    });
}

/// How many entries this thread keeps.
#[cfg(test)]
pub(super) fn kept() -> usize {
    RECENT.with_borrow(Vec::len)
}
