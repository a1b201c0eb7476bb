//! Payloads by slot. Payloads of a mapped segment stay serialised until first used: opening a
//! database then costs nothing per payload, and a payload never read is never parsed.

use std::borrow::Cow;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::OnceLock;

use serde_json::Value;

use crate::bytes::Bytes;
use crate::point::Payload;

/// Serialised payloads of the base rows: `offsets[i]..offsets[i + 1]` in `data` is the JSON of
/// row `i` (empty for an empty payload).
pub(crate) struct RawPayloads {
    pub offsets: Bytes,
    pub data: Bytes,
}

impl RawPayloads {
    fn get(&self, row: usize) -> &[u8] {
        let at = |i: usize| {
            let b = &self.offsets[i * 8..i * 8 + 8];
            u64::from_le_bytes(b.try_into().expect("8 bytes")) as usize
        };
        &self.data[at(row)..at(row + 1)]
    }
}

pub(crate) struct PayloadStore {
    cells: Vec<OnceLock<Payload>>,
    raw: Option<RawPayloads>,
    /// Base payloads found not to parse, and the first of their rows (see [`Self::unreadable`]).
    unreadable: AtomicUsize,
    first_unreadable: OnceLock<usize>,
}

impl PayloadStore {
    pub fn new() -> Self {
        PayloadStore {
            cells: Vec::new(),
            raw: None,
            unreadable: AtomicUsize::new(0),
            first_unreadable: OnceLock::new(),
        }
    }

    pub fn with_raw(rows: usize, raw: RawPayloads) -> Self {
        PayloadStore {
            cells: (0..rows).map(|_| OnceLock::new()).collect(),
            raw: Some(raw),
            ..Self::new()
        }
    }

    /// Parses the base payload of `slot`. The segment's checksums held at open and its writer
    /// wrote `serde_json` output, so a failure means the file was altered or written by a
    /// faulty writer (its checksums recomputed): the payload reads as empty, and the count
    /// reported here makes the health check critical, rather than a panic mid-search.
    fn parse(&self, slot: usize, raw: &[u8]) -> Payload {
        if raw.is_empty() {
            return Payload::new();
        }
        serde_json::from_slice(raw).unwrap_or_else(|_| {
            self.unreadable.fetch_add(1, Relaxed);
            let _ = self.first_unreadable.set(slot);
            Payload::new()
        })
    }

    /// How many base payloads did not parse (read so far), and the first one's row.
    pub fn unreadable(&self) -> Option<(usize, usize)> {
        let n = self.unreadable.load(Relaxed);
        (n > 0).then(|| (n, self.first_unreadable.get().copied().unwrap_or(0)))
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.cells.len()
    }

    /// The payload of `slot`, parsing it on first use.
    pub fn get(&self, slot: usize) -> &Payload {
        self.cells[slot].get_or_init(|| match &self.raw {
            Some(raw) => self.parse(slot, raw.get(slot)),
            None => Payload::new(),
        })
    }

    pub fn push(&mut self, p: Payload) {
        self.cells.push(OnceLock::from(p));
    }

    pub fn set(&mut self, slot: usize, p: Payload) {
        self.cells[slot] = OnceLock::from(p);
    }

    pub fn get_mut(&mut self, slot: usize) -> &mut Payload {
        self.get(slot);
        self.cells[slot].get_mut().expect("initialised just above")
    }

    /// The JSON of `slot`, without parsing and re-serialising an untouched base payload.
    pub fn json(&self, slot: usize) -> Cow<'_, [u8]> {
        match (self.cells[slot].get(), &self.raw) {
            (None, Some(raw)) => Cow::Borrowed(raw.get(slot)),
            _ => {
                let p = self.get(slot);
                if p.is_empty() {
                    Cow::Borrowed(&[])
                } else {
                    Cow::Owned(serde_json::to_vec(p).expect("a JSON map always serialises"))
                }
            }
        }
    }

    /// Keeps only the slots for which `keep` holds, in order (compaction). Every kept payload is
    /// parsed and the raw bytes are released.
    pub fn retain(&mut self, keep: impl Fn(usize) -> bool) {
        let cells = (0..self.cells.len())
            .filter(|&s| keep(s))
            .map(|s| OnceLock::from(self.get(s).clone()))
            .collect();
        self.cells = cells;
        self.raw = None;
    }

    /// Estimated heap bytes of the parsed payloads plus the raw ones still unparsed.
    pub fn heap_bytes(&self) -> usize {
        let parsed: usize = self
            .cells
            .iter()
            .filter_map(OnceLock::get)
            .map(heap_bytes)
            .sum();
        let cells = self.cells.capacity() * std::mem::size_of::<OnceLock<Payload>>();
        parsed + cells
    }
}

/// An estimate of the heap bytes a payload holds (strings, arrays, map entries); exact
/// accounting would need a custom allocator, and this is within a small factor of it.
pub(crate) fn heap_bytes(p: &Payload) -> usize {
    fn value(v: &Value) -> usize {
        match v {
            Value::String(s) => s.capacity(),
            Value::Array(items) => {
                items.capacity() * std::mem::size_of::<Value>()
                    + items.iter().map(value).sum::<usize>()
            }
            Value::Object(map) => heap_bytes(map),
            _ => 0,
        }
    }
    p.iter()
        .map(|(k, v)| k.capacity() + std::mem::size_of::<(String, Value)>() + value(v))
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn raw_payloads_parse_lazily_and_pass_through_untouched() {
        let jsons = [r#"{"a":1}"#, "", r#"{"b":"x"}"#];
        let mut offsets = Vec::new();
        let mut data = Vec::new();
        for j in jsons {
            offsets.extend_from_slice(&(data.len() as u64).to_le_bytes());
            data.extend_from_slice(j.as_bytes());
        }
        offsets.extend_from_slice(&(data.len() as u64).to_le_bytes());
        let mut store = PayloadStore::with_raw(
            3,
            RawPayloads {
                offsets: Bytes::from(offsets),
                data: Bytes::from(data),
            },
        );
        assert_eq!(&*store.json(0), jsons[0].as_bytes());
        assert_eq!(store.get(2)["b"], json!("x"));
        assert!(store.get(1).is_empty());
        store.get_mut(0).insert("c".into(), json!(2));
        assert_eq!(store.get(0).len(), 2);
        store.retain(|s| s != 1);
        assert_eq!(store.len(), 2);
        assert_eq!(store.get(1)["b"], json!("x"));
    }
}
