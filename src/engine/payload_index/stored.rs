//! Payload indexes as a segment stores them (its payload indexes section; `FORMAT.md` has the
//! bytes), used where they lie: a key is found by binary search over the entries in the
//! section, and a slot list is a `&[u32]` view of it. Opening a segment therefore costs one
//! pass that checks the section (a checksum says the bytes are as written, not that the writer
//! was sound), and no filtered search waits for an index to be rebuilt.

use std::collections::BTreeMap;
use std::ops::Range;

use super::IndexKey;
use crate::bytes::Bytes;
use crate::engine::in_place::InPlace;

/// A stored key, borrowed from the section. It orders exactly as [`IndexKey`] (the same
/// variants in the same order), which the entries are sorted by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum KeyRef<'a> {
    Bool(bool),
    Integer(i64),
    Keyword(&'a str),
    Datetime(i64),
    Word(&'a str),
}

impl IndexKey {
    pub(super) fn as_key_ref(&self) -> KeyRef<'_> {
        match self {
            IndexKey::Bool(b) => KeyRef::Bool(*b),
            IndexKey::Integer(n) => KeyRef::Integer(*n),
            IndexKey::Keyword(s) => KeyRef::Keyword(s),
            IndexKey::Datetime(t) => KeyRef::Datetime(*t),
            IndexKey::Word(w) => KeyRef::Word(w),
        }
    }
}

impl KeyRef<'_> {
    fn to_key(self) -> IndexKey {
        match self {
            KeyRef::Bool(b) => IndexKey::Bool(b),
            KeyRef::Integer(n) => IndexKey::Integer(n),
            KeyRef::Keyword(s) => IndexKey::Keyword(s.to_owned()),
            KeyRef::Datetime(t) => IndexKey::Datetime(t),
            KeyRef::Word(w) => IndexKey::Word(w.to_owned()),
        }
    }
}

/// An entry: kind `u32`, value `u64`, end of its slot list `u32`.
const ENTRY_BYTES: usize = 16;
/// Entry kinds, in [`IndexKey`]'s order.
const KINDS: u32 = 5;
const KIND_KEYWORD: u32 = 2;
const KIND_WORD: u32 = 4;

/// One field's index as stored: its entries (sorted by key), the strings they name and the slot
/// lists, all views of the segment.
pub(crate) struct StoredField {
    /// The key path, as configured when the segment was written.
    key: String,
    pub(super) has_other_numbers: bool,
    entries: Bytes,
    strings: Bytes,
    slots: InPlace<u32>,
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

impl StoredField {
    fn len(&self) -> usize {
        self.entries.len() / ENTRY_BYTES
    }

    fn kind(&self, i: usize) -> u32 {
        u32_at(&self.entries, i * ENTRY_BYTES)
    }

    fn value(&self, i: usize) -> u64 {
        let at = i * ENTRY_BYTES + 4;
        u64::from_le_bytes(self.entries[at..at + 8].try_into().expect("8 bytes"))
    }

    fn end(&self, i: usize) -> usize {
        u32_at(&self.entries, i * ENTRY_BYTES + 12) as usize
    }

    /// A string entry's bytes: its value packs the offset (low half) and length (high half).
    fn string_bytes(&self, value: u64) -> Option<&[u8]> {
        let start = value as u32 as usize;
        self.strings
            .get(start..start.checked_add((value >> 32) as usize)?)
    }

    /// The key of entry `i` (`parse` checked that its string is in bounds and UTF-8).
    fn key_at(&self, i: usize) -> KeyRef<'_> {
        let value = self.value(i);
        let text = || {
            self.string_bytes(value)
                .and_then(|b| std::str::from_utf8(b).ok())
                .unwrap_or_default()
        };
        match self.kind(i) {
            0 => KeyRef::Bool(value != 0),
            1 => KeyRef::Integer(value as i64),
            KIND_KEYWORD => KeyRef::Keyword(text()),
            3 => KeyRef::Datetime(value as i64),
            _ => KeyRef::Word(text()),
        }
    }

    fn list(&self, i: usize) -> &[u32] {
        let start = if i == 0 { 0 } else { self.end(i - 1) };
        self.slots
            .slice()
            .get(start..self.end(i))
            .unwrap_or_default()
    }

    /// The first entry for which `past` holds (it must hold for every entry after it).
    fn first(&self, past: impl Fn(KeyRef) -> bool) -> usize {
        let (mut lo, mut hi) = (0, self.len());
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if past(self.key_at(mid)) {
                hi = mid;
            } else {
                lo = mid + 1;
            }
        }
        lo
    }

    /// The slots listed under `key`.
    pub(super) fn get(&self, key: KeyRef) -> Option<&[u32]> {
        let i = self.first(|k| k >= key);
        (i < self.len() && self.key_at(i) == key).then(|| self.list(i))
    }

    /// The lists of the entries between two keys, both included.
    pub(super) fn between<'s>(
        &'s self,
        lo: KeyRef,
        hi: KeyRef,
    ) -> impl Iterator<Item = &'s [u32]> + 's {
        let range = self.first(|k| k >= lo)..self.first(|k| k > hi);
        range.map(|i| self.list(i))
    }

    /// Every entry, in key order.
    pub(super) fn entries(&self) -> impl Iterator<Item = (IndexKey, &[u32])> + '_ {
        (0..self.len()).map(|i| (self.key_at(i).to_key(), self.list(i)))
    }

    /// Bytes of the segment the index covers (mapped, like the graph's layer 0).
    pub(super) fn bytes(&self) -> usize {
        self.entries.len() + self.strings.len() + self.slots.slice().len() * 4
    }
}

/// The indexes a segment stored, by field.
#[derive(Default)]
pub(crate) struct StoredIndexes(Vec<StoredField>);

impl StoredIndexes {
    /// Takes the index stored for `key`, if any.
    pub(super) fn take(&mut self, key: &str) -> Option<StoredField> {
        let at = self.0.iter().position(|f| f.key == key)?;
        Some(self.0.swap_remove(at))
    }
}

/// Where a stored index is unsound: the offset in the section, and what is wrong.
pub(crate) type Fault = (usize, &'static str);

/// Reads the section through, keeping the offset of each part for a [`Fault`].
struct Cursor<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Cursor<'_> {
    fn take(&mut self, len: usize) -> Result<Range<usize>, Fault> {
        let end = self
            .at
            .checked_add(len)
            .filter(|&end| end <= self.bytes.len())
            .ok_or((self.at, "a payload index runs past the section's end"))?;
        let range = self.at..end;
        self.at = end;
        Ok(range)
    }

    fn u32(&mut self) -> Result<u32, Fault> {
        let range = self.take(4)?;
        Ok(u32_at(self.bytes, range.start))
    }

    /// Skips to the next multiple of 4, where slot lists and the next field start.
    fn align(&mut self) -> Result<(), Fault> {
        self.take(self.at.next_multiple_of(4) - self.at).map(drop)
    }
}

impl StoredIndexes {
    /// The indexes of a payload indexes section over `rows` rows, after checking every part: the
    /// bounds, that keys are UTF-8 and strictly increasing, and that each slot list is a
    /// strictly increasing list of rows below `rows`. An empty section holds no index.
    pub(crate) fn parse(section: &Bytes, rows: usize) -> Result<Self, Fault> {
        let mut fields: Vec<StoredField> = Vec::new();
        if section.is_empty() {
            return Ok(StoredIndexes(fields));
        }
        let mut c = Cursor {
            bytes: section,
            at: 0,
        };
        let count = c.u32()?;
        for _ in 0..count {
            let field_at = c.at;
            let key_len = c.u32()? as usize;
            let key = c.take(key_len)?;
            let key = std::str::from_utf8(&section[key])
                .map_err(|_| (field_at, "a payload index key is not UTF-8"))?
                .to_owned();
            if fields.iter().any(|f| f.key == key) {
                return Err((field_at, "a payload index key appears twice"));
            }
            c.align()?;
            let flags_at = c.at;
            let flags = c.u32()?;
            if flags > 1 {
                return Err((flags_at, "unknown payload index flags"));
            }
            let (entries, strings, slots) = (c.u32()?, c.u32()?, c.u32()?);
            let entries_at = c.at;
            let entries = c.take((entries as usize).saturating_mul(ENTRY_BYTES))?;
            let strings = c.take(strings as usize)?;
            c.align()?;
            let slots_at = c.at;
            let slots = c.take((slots as usize).saturating_mul(4))?;
            let field = StoredField {
                key,
                has_other_numbers: flags == 1,
                entries: section.slice(entries),
                strings: section.slice(strings),
                slots: InPlace::new(section.slice(slots)),
            };
            check_field(&field, rows, entries_at, slots_at)?;
            fields.push(field);
        }
        if c.at != section.len() {
            return Err((c.at, "bytes follow the last payload index"));
        }
        Ok(StoredIndexes(fields))
    }
}

/// The entries of a field are sound: kinds known, strings in bounds and UTF-8, keys strictly
/// increasing, list ends rising to the slot count, lists strictly increasing and below `rows`.
fn check_field(
    f: &StoredField,
    rows: usize,
    entries_at: usize,
    slots_at: usize,
) -> Result<(), Fault> {
    let total = f.slots.slice().len();
    let mut previous_end = 0;
    for i in 0..f.len() {
        let at = entries_at + i * ENTRY_BYTES;
        let (kind, value, end) = (f.kind(i), f.value(i), f.end(i));
        if kind >= KINDS || (kind == 0 && value > 1) {
            return Err((at, "a payload index entry has an unknown kind or value"));
        }
        if matches!(kind, KIND_KEYWORD | KIND_WORD)
            && f.string_bytes(value)
                .map(std::str::from_utf8)
                .is_none_or(|s| s.is_err())
        {
            return Err((at, "a payload index string is out of bounds or not UTF-8"));
        }
        if i > 0 && f.key_at(i - 1) >= f.key_at(i) {
            return Err((at, "payload index keys are not strictly increasing"));
        }
        if end < previous_end || end > total {
            return Err((at + 12, "a payload index list ends out of order"));
        }
        let list = f.list(i);
        if list.windows(2).any(|w| w[0] >= w[1]) || list.last().is_some_and(|&s| s as usize >= rows)
        {
            return Err((
                slots_at + previous_end * 4,
                "a payload index list is unsorted or names a row past the end",
            ));
        }
        previous_end = end;
    }
    if previous_end != total {
        return Err((slots_at, "payload index lists do not cover the slots"));
    }
    Ok(())
}

/// One field to store: its key path, whether some value was a number other than an `i64`, and
/// its entries (slot lists strictly increasing, by row of the new segment).
pub(super) type FieldToStore = (String, bool, BTreeMap<IndexKey, Vec<u32>>);

/// The section's bytes for `fields` (nothing for no field).
pub(super) fn encode(fields: &[FieldToStore]) -> Vec<u8> {
    let mut out = Vec::new();
    if fields.is_empty() {
        return out;
    }
    let put = |out: &mut Vec<u8>, v: u32| out.extend_from_slice(&v.to_le_bytes());
    let pad = |out: &mut Vec<u8>| out.resize(out.len().next_multiple_of(4), 0);
    put(&mut out, fields.len() as u32);
    for (key, has_other_numbers, entries) in fields {
        put(&mut out, key.len() as u32);
        out.extend_from_slice(key.as_bytes());
        pad(&mut out);
        put(&mut out, u32::from(*has_other_numbers));
        let mut table = Vec::with_capacity(entries.len() * ENTRY_BYTES);
        let mut strings = Vec::new();
        let mut slots: Vec<u32> = Vec::new();
        for (k, list) in entries {
            let mut string = |s: &str| {
                let at = strings.len() as u64;
                strings.extend_from_slice(s.as_bytes());
                at | (s.len() as u64) << 32
            };
            let (kind, value) = match k {
                IndexKey::Bool(b) => (0, u64::from(*b)),
                IndexKey::Integer(n) => (1, *n as u64),
                IndexKey::Keyword(s) => (KIND_KEYWORD, string(s)),
                IndexKey::Datetime(t) => (3, *t as u64),
                IndexKey::Word(w) => (KIND_WORD, string(w)),
            };
            slots.extend_from_slice(list);
            put(&mut table, kind);
            table.extend_from_slice(&value.to_le_bytes());
            put(&mut table, slots.len() as u32);
        }
        put(&mut out, entries.len() as u32);
        put(&mut out, strings.len() as u32);
        put(&mut out, slots.len() as u32);
        out.extend_from_slice(&table);
        out.extend_from_slice(&strings);
        pad(&mut out);
        for s in slots {
            put(&mut out, s);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<FieldToStore> {
        let color = BTreeMap::from([
            (IndexKey::Bool(false), vec![0, 3]),
            (IndexKey::Integer(-5), vec![1]),
            (IndexKey::Integer(7), vec![2, 4, 5]),
            (IndexKey::Keyword("grüße".into()), vec![0]),
            (IndexKey::Keyword("red".into()), vec![1, 5]),
            (IndexKey::Datetime(1_700_000_000_000_000), vec![4]),
            (IndexKey::Word("red".into()), vec![2]),
        ]);
        let n = BTreeMap::from([(IndexKey::Integer(1), vec![0, 1, 2, 3, 4, 5])]);
        vec![("color".into(), false, color), ("n.x[]".into(), true, n)]
    }

    /// Every lookup of the stored fields answers as the maps they were written from.
    fn check_answers(stored: &mut StoredIndexes, fields: &[FieldToStore]) {
        for (key, other_numbers, entries) in fields {
            let f = stored.take(key).expect("stored");
            assert_eq!(f.has_other_numbers, *other_numbers);
            let back: Vec<(IndexKey, Vec<u32>)> =
                f.entries().map(|(k, l)| (k, l.to_vec())).collect();
            let written: Vec<(IndexKey, Vec<u32>)> = entries.clone().into_iter().collect();
            assert_eq!(back, written);
            for lo in entries.keys() {
                assert_eq!(f.get(lo.as_key_ref()), entries.get(lo).map(Vec::as_slice));
                for hi in entries.keys().filter(|&hi| hi >= lo) {
                    let expected: Vec<&[u32]> = entries
                        .range(lo.clone()..=hi.clone())
                        .map(|(_, l)| l.as_slice())
                        .collect();
                    let got: Vec<&[u32]> = f.between(lo.as_key_ref(), hi.as_key_ref()).collect();
                    assert_eq!(got, expected, "{lo:?}..={hi:?}");
                }
            }
            assert_eq!(f.get(KeyRef::Integer(6)), None);
            assert_eq!(f.get(KeyRef::Word("grüße")), None);
        }
        assert!(stored.take("missing").is_none());
    }

    #[test]
    fn stored_indexes_answer_as_the_maps_they_were_written_from() {
        let fields = sample();
        let bytes = encode(&fields);
        check_answers(
            &mut StoredIndexes::parse(&Bytes::from(bytes.clone()), 6).unwrap(),
            &fields,
        );
        // Not aligned for u32 (a buffer read at an odd place): the lists are copied.
        let mut shifted = vec![0u8];
        shifted.extend_from_slice(&bytes);
        let unaligned = Bytes::from(shifted).slice(1..bytes.len() + 1);
        check_answers(&mut StoredIndexes::parse(&unaligned, 6).unwrap(), &fields);
        assert!(StoredIndexes::parse(&Bytes::from(Vec::new()), 0).is_ok_and(|s| s.0.is_empty()));
        assert!(encode(&[]).is_empty());
    }

    #[test]
    fn unsound_sections_are_refused_with_the_offset_of_the_fault() {
        let bytes = encode(&sample());
        let parse =
            |b: &[u8], rows: usize| StoredIndexes::parse(&Bytes::from(b.to_vec()), rows).map(drop);
        assert!(parse(&bytes, 6).is_ok());
        let changed = |at: usize, value: &[u8]| {
            let mut b = bytes.clone();
            b[at..at + value.len()].copy_from_slice(value);
            b
        };
        // The first field: count 4, key length 4, "color" padded to 8, flags and three counts
        // (16..32), then entries of 16 bytes: kind, value, end.
        let entry = |i: usize| 32 + i * ENTRY_BYTES;
        let cases: [(Vec<u8>, usize, Fault); 8] = [
            (
                bytes.clone(),
                5,
                (
                    160 + 3 * 4,
                    "a payload index list is unsorted or names a row past the end",
                ),
            ),
            (
                bytes[..bytes.len() - 4].to_vec(),
                6,
                (
                    bytes.len() - 6 * 4,
                    "a payload index runs past the section's end",
                ),
            ),
            (
                [&bytes[..], &[0; 4]].concat(),
                6,
                (bytes.len(), "bytes follow the last payload index"),
            ),
            (
                changed(entry(0), &[9]),
                6,
                (
                    entry(0),
                    "a payload index entry has an unknown kind or value",
                ),
            ),
            (
                changed(entry(1) + 4, &100i64.to_le_bytes()),
                6,
                (entry(2), "payload index keys are not strictly increasing"),
            ),
            (
                changed(8, &[0xff]),
                6,
                (4, "a payload index key is not UTF-8"),
            ),
            (changed(16, &[2]), 6, (16, "unknown payload index flags")),
            (
                changed(entry(0) + 12, &[200]),
                6,
                (entry(0) + 12, "a payload index list ends out of order"),
            ),
        ];
        for (i, (b, rows, fault)) in cases.into_iter().enumerate() {
            assert_eq!(parse(&b, rows), Err(fault), "case {i}");
        }
        // A string out of bounds: the first keyword's length made huge.
        let keyword = changed(entry(3) + 8, &[0xff, 0xff, 0, 0]);
        assert_eq!(
            parse(&keyword, 6),
            Err((
                entry(3),
                "a payload index string is out of bounds or not UTF-8"
            ))
        );
    }
}
