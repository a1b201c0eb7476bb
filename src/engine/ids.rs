//! The id map: which point is in which slot, both ways, and which slots are live.
//!
//! A segment's rows are in id order (checkpoints write them so), and the engine over it gives
//! row `r` slot `r`. So the ids of those slots, the *base*, are kept as sorted arrays (8 bytes a
//! numeric id, 16 a UUID) and an id is found by binary search. Only the slots added since the
//! segment, the *tail*, pay for a B-tree entry and a full [`PointId`]. The base used to be held
//! as the tail is, at about 100 bytes a point: 9.8 MB for 100K points, most of the heap of a
//! database whose vectors stay on disk.
//!
//! One bit per slot says whether it is live; deleting or replacing a point clears it, leaving a
//! tombstone until [`IdMap::compact`].

use std::collections::BTreeMap;

use crate::point::PointId;

#[derive(Default)]
pub(super) struct IdMap {
    /// Numeric ids of the base slots `0..nums.len()`, ascending.
    nums: Vec<u64>,
    /// UUIDs of the base slots that follow the numeric ones, ascending (`PointId` orders every
    /// number before every UUID).
    uuids: Vec<u128>,
    /// Ids of the slots past the base, in slot order; a tombstone keeps its id.
    tail: Vec<PointId>,
    /// The live tail slots by id.
    tail_slots: BTreeMap<PointId, u32>,
    /// One bit per slot, set while the slot is live.
    live: Vec<u64>,
    live_count: usize,
}

impl IdMap {
    pub fn new() -> Self {
        Self::default()
    }

    /// The map of a segment's rows: slot `r` holds `ids[r]`, every one live. `None` when an id
    /// repeats.
    pub fn from_rows(ids: Vec<PointId>) -> Option<Self> {
        let mut map = IdMap::new();
        if ids.windows(2).all(|w| w[0] < w[1]) {
            for id in ids {
                match id {
                    PointId::Num(n) => map.nums.push(n),
                    PointId::Uuid(u) => map.uuids.push(u),
                }
            }
            map.live = all_live(map.nums.len() + map.uuids.len());
            map.live_count = map.nums.len() + map.uuids.len();
            return Some(map);
        }
        // Not in id order (no writer of ours does that): every row goes to the tail.
        map.reserve(ids.len());
        for id in ids {
            if map.contains(id) {
                return None;
            }
            map.push(id);
        }
        Some(map)
    }

    fn base_len(&self) -> usize {
        self.nums.len() + self.uuids.len()
    }

    /// Number of slots, live or not.
    pub fn slots(&self) -> usize {
        self.base_len() + self.tail.len()
    }

    /// Number of live slots.
    pub fn len(&self) -> usize {
        self.live_count
    }

    /// Number of tombstones.
    pub fn dead(&self) -> usize {
        self.slots() - self.live_count
    }

    #[inline]
    pub fn is_live(&self, slot: u32) -> bool {
        self.live
            .get(slot as usize / 64)
            .is_some_and(|w| w & (1 << (slot % 64)) != 0)
    }

    /// The id in a slot, live or not.
    fn id_in(&self, slot: usize) -> PointId {
        let nums = self.nums.len();
        match slot.checked_sub(nums) {
            None => PointId::Num(self.nums[slot]),
            Some(u) if u < self.uuids.len() => PointId::Uuid(self.uuids[u]),
            Some(u) => self.tail[u - self.uuids.len()],
        }
    }

    /// The id of a live slot; `None` for a tombstone.
    #[inline]
    pub fn id_at(&self, slot: usize) -> Option<PointId> {
        self.is_live(slot as u32).then(|| self.id_in(slot))
    }

    /// The live slot holding `id`.
    pub fn slot_of(&self, id: PointId) -> Option<u32> {
        let base = match id {
            PointId::Num(n) => self.nums.binary_search(&n).ok(),
            PointId::Uuid(u) => self
                .uuids
                .binary_search(&u)
                .ok()
                .map(|i| i + self.nums.len()),
        };
        // A replaced base point has a tombstone in the base and its new slot in the tail.
        match base.map(|s| s as u32).filter(|&s| self.is_live(s)) {
            Some(slot) => Some(slot),
            None => self.tail_slots.get(&id).copied(),
        }
    }

    pub fn contains(&self, id: PointId) -> bool {
        self.slot_of(id).is_some()
    }

    pub fn reserve(&mut self, additional: usize) {
        self.tail.reserve(additional);
        let words = (self.slots() + additional).div_ceil(64);
        self.live.reserve(words.saturating_sub(self.live.len()));
    }

    /// Puts `id`, which no live slot holds, in a new slot and returns it.
    pub fn push(&mut self, id: PointId) -> u32 {
        debug_assert!(!self.contains(id), "{id} is live already");
        let slot = self.slots() as u32;
        self.tail.push(id);
        self.tail_slots.insert(id, slot);
        if slot as usize / 64 == self.live.len() {
            self.live.push(0);
        }
        self.live[slot as usize / 64] |= 1 << (slot % 64);
        self.live_count += 1;
        slot
    }

    /// Turns a live slot into a tombstone and returns its id; `None` if it was one already.
    pub fn remove(&mut self, slot: usize) -> Option<PointId> {
        let id = self.id_at(slot)?;
        self.live[slot / 64] &= !(1 << (slot % 64));
        self.live_count -= 1;
        if slot >= self.base_len() {
            self.tail_slots.remove(&id);
        }
        Some(id)
    }

    /// The live slots with their ids, in slot order.
    pub fn iter(&self) -> impl Iterator<Item = (usize, PointId)> + '_ {
        (0..self.slots()).filter_map(|slot| Some((slot, self.id_at(slot)?)))
    }

    /// The live ids from `start` on (all when `None`) with their slots, in id order.
    pub fn by_id(&self, start: Option<PointId>) -> impl Iterator<Item = (PointId, u32)> + '_ {
        let first = match start {
            None => 0,
            Some(PointId::Num(n)) => self.nums.partition_point(|&x| x < n),
            Some(PointId::Uuid(u)) => self.nums.len() + self.uuids.partition_point(|&x| x < u),
        };
        let mut base = (first..self.base_len())
            .filter_map(|slot| Some((self.id_at(slot)?, slot as u32)))
            .peekable();
        let from = start.map_or(std::ops::Bound::Unbounded, std::ops::Bound::Included);
        let mut tail = self
            .tail_slots
            .range((from, std::ops::Bound::Unbounded))
            .map(|(&id, &slot)| (id, slot))
            .peekable();
        // Live ids are unique, so the two never offer the same one.
        std::iter::from_fn(move || match (base.peek(), tail.peek()) {
            (Some(b), Some(t)) if t.0 < b.0 => tail.next(),
            (Some(_), _) => base.next(),
            (None, _) => tail.next(),
        })
    }

    /// Drops the tombstones: live slots move down, keeping their order (the vectors and payloads
    /// are compacted alike).
    pub fn compact(&mut self) {
        let base_len = self.base_len();
        let live = |slot: usize| self.is_live(slot as u32);
        let nums: Vec<u64> = (0..self.nums.len())
            .filter(|&s| live(s))
            .map(|s| self.nums[s])
            .collect();
        let uuids: Vec<u128> = (0..self.uuids.len())
            .filter(|&u| live(u + self.nums.len()))
            .map(|u| self.uuids[u])
            .collect();
        let tail: Vec<PointId> = (0..self.tail.len())
            .filter(|&t| live(base_len + t))
            .map(|t| self.tail[t])
            .collect();
        let base = nums.len() + uuids.len();
        self.tail_slots = tail
            .iter()
            .enumerate()
            .map(|(t, &id)| (id, (base + t) as u32))
            .collect();
        self.live = all_live(base + tail.len());
        self.live_count = base + tail.len();
        (self.nums, self.uuids, self.tail) = (nums, uuids, tail);
    }

    /// Bytes held on the heap. A B-tree entry costs its key and value plus roughly one pointer
    /// of node overhead.
    pub fn heap_bytes(&self) -> usize {
        use std::mem::size_of;
        let entry = size_of::<(PointId, u32)>() + size_of::<usize>();
        self.nums.capacity() * 8
            + self.uuids.capacity() * 16
            + self.tail.capacity() * size_of::<PointId>()
            + self.tail_slots.len() * entry
            + self.live.capacity() * 8
    }
}

/// A bitset with the first `n` bits set.
fn all_live(n: usize) -> Vec<u64> {
    let mut bits = vec![u64::MAX; n / 64];
    if !n.is_multiple_of(64) {
        bits.push((1 << (n % 64)) - 1);
    }
    bits
}

#[cfg(test)]
mod tests {
    use super::*;

    fn uuid(n: u128) -> PointId {
        PointId::Uuid(n)
    }

    /// The map and a plain model of it agree on every query.
    fn check(map: &IdMap, model: &[Option<PointId>]) {
        assert_eq!(map.slots(), model.len());
        assert_eq!(map.len(), model.iter().flatten().count());
        assert_eq!(map.dead(), model.iter().filter(|s| s.is_none()).count());
        for (slot, &id) in model.iter().enumerate() {
            assert_eq!(map.id_at(slot), id, "slot {slot}");
            if let Some(id) = id {
                assert_eq!(map.slot_of(id), Some(slot as u32), "{id}");
            }
        }
        let mut by_id: Vec<(PointId, u32)> = model
            .iter()
            .enumerate()
            .filter_map(|(s, id)| Some(((*id)?, s as u32)))
            .collect();
        by_id.sort_unstable();
        assert_eq!(map.by_id(None).collect::<Vec<_>>(), by_id);
        for (i, &(start, _)) in by_id.iter().enumerate() {
            assert_eq!(map.by_id(Some(start)).collect::<Vec<_>>(), by_id[i..]);
        }
        let slot_order: Vec<(usize, PointId)> = model
            .iter()
            .enumerate()
            .filter_map(|(s, id)| Some((s, (*id)?)))
            .collect();
        assert_eq!(map.iter().collect::<Vec<_>>(), slot_order);
    }

    #[test]
    fn a_segment_base_and_a_tail_answer_as_one_map() {
        let rows = vec![
            PointId::Num(2),
            PointId::Num(5),
            PointId::Num(9),
            uuid(3),
            uuid(70),
        ];
        let mut map = IdMap::from_rows(rows.clone()).unwrap();
        let mut model: Vec<Option<PointId>> = rows.into_iter().map(Some).collect();
        check(&map, &model);
        assert_eq!(map.slot_of(PointId::Num(4)), None);
        assert_eq!(
            map.by_id(Some(PointId::Num(4))).next(),
            Some((PointId::Num(5), 1))
        );
        assert_eq!(map.by_id(Some(uuid(4))).next(), Some((uuid(70), 4)));

        // Replacing a base point: a tombstone in the base, the id again in the tail.
        assert_eq!(map.remove(1), Some(PointId::Num(5)));
        assert_eq!(map.remove(1), None);
        model[1] = None;
        check(&map, &model);
        for id in [
            PointId::Num(5),
            PointId::Num(1),
            uuid(50),
            PointId::Num(100),
        ] {
            assert_eq!(map.push(id) as usize, model.len());
            model.push(Some(id));
        }
        check(&map, &model);
        // A tail tombstone leaves the B-tree too.
        assert_eq!(map.remove(6), Some(PointId::Num(1)));
        model[6] = None;
        assert!(!map.contains(PointId::Num(1)));
        check(&map, &model);

        map.compact();
        model.retain(Option::is_some);
        check(&map, &model);
        assert_eq!(map.dead(), 0);
    }

    #[test]
    fn rows_out_of_id_order_still_map_and_a_repeated_id_is_refused() {
        let rows = vec![PointId::Num(9), uuid(1), PointId::Num(3)];
        let map = IdMap::from_rows(rows.clone()).unwrap();
        check(&map, &rows.into_iter().map(Some).collect::<Vec<_>>());
        assert!(IdMap::from_rows(vec![PointId::Num(1), PointId::Num(1)]).is_none());
        assert!(IdMap::from_rows(vec![uuid(1), PointId::Num(0), uuid(1)]).is_none());
    }

    #[test]
    fn live_bits_follow_slots_across_word_boundaries() {
        let rows: Vec<PointId> = (0..130).map(PointId::Num).collect();
        let mut map = IdMap::from_rows(rows.clone()).unwrap();
        let mut model: Vec<Option<PointId>> = rows.into_iter().map(Some).collect();
        for slot in [0, 63, 64, 127, 128, 129] {
            map.remove(slot);
            model[slot] = None;
        }
        for n in 200..330 {
            map.push(PointId::Num(n));
            model.push(Some(PointId::Num(n)));
        }
        check(&map, &model);
        map.compact();
        model.retain(Option::is_some);
        check(&map, &model);
        let bytes = map.heap_bytes();
        assert!(bytes > 124 * 8, "the base's ids are counted: {bytes}");
    }
}
