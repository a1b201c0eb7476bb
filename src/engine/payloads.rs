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

/// Where a slot's payload is authoritative.
#[derive(Clone, Copy, PartialEq, Eq)]
struct Span {
    start: u64,
    len: u32,
}

impl Span {
    /// The base row's raw JSON (empty beyond the base rows, or without raw payloads).
    const BASE: Span = Span {
        start: u64::MAX,
        len: 0,
    };
    /// The parsed cell, always initialised (changed in place, or empty).
    const CELL: Span = Span {
        start: u64::MAX - 1,
        len: 0,
    };
}

/// Payloads by slot, kept as JSON and parsed on first use.
///
/// Payloads written since open are kept as their JSON in one growing buffer, like the base
/// rows' in the segment, rather than as the maps the caller built: a parsed map holds B-tree
/// nodes of eleven entries (about 650 bytes for `{"pct": 5}`, whose JSON is 9), and maps kept
/// from a large upsert would sit in the heap between the caller's freed vectors, so that
/// memory could not go back to the system (measured: 100K x 384 WordNet points upserted at
/// once left 394 MiB resident for 185 MiB held).
pub(crate) struct PayloadStore {
    cells: Vec<OnceLock<Payload>>,
    spans: Vec<Span>,
    raw: Option<RawPayloads>,
    /// The JSON of payloads written since open (or kept by compaction); `spans` say whose.
    written: Vec<u8>,
    /// Base payloads found not to parse, and the first of their rows (see [`Self::unreadable`]).
    unreadable: AtomicUsize,
    first_unreadable: OnceLock<usize>,
}

impl PayloadStore {
    pub fn new() -> Self {
        PayloadStore {
            cells: Vec::new(),
            spans: Vec::new(),
            raw: None,
            written: Vec::new(),
            unreadable: AtomicUsize::new(0),
            first_unreadable: OnceLock::new(),
        }
    }

    pub fn with_raw(rows: usize, raw: RawPayloads) -> Self {
        PayloadStore {
            cells: (0..rows).map(|_| OnceLock::new()).collect(),
            spans: vec![Span::BASE; rows],
            raw: Some(raw),
            ..Self::new()
        }
    }

    /// Parses the payload JSON of `slot`. The segment's checksums held at open and its writer
    /// wrote `serde_json` output (as did `Self::store` for written ones), so a failure means
    /// the file was altered or written by a faulty writer (its checksums recomputed): the
    /// payload reads as empty, and the count reported here makes the health check critical,
    /// rather than a panic mid-search.
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

    /// The JSON `slot`'s payload is kept as, unless its cell is authoritative.
    fn kept_json(&self, slot: usize) -> &[u8] {
        match self.spans[slot] {
            Span::BASE => self.raw.as_ref().map_or(&[], |raw| raw.get(slot)),
            Span::CELL => &[],
            Span { start, len } => &self.written[start as usize..start as usize + len as usize],
        }
    }

    /// The payload of `slot`, parsing it on first use.
    pub fn get(&self, slot: usize) -> &Payload {
        self.cells[slot].get_or_init(|| self.parse(slot, self.kept_json(slot)))
    }

    /// Room for `additional` more slots.
    pub fn reserve(&mut self, additional: usize) {
        self.cells.reserve(additional);
        self.spans.reserve(additional);
    }

    /// Keeps `p` as JSON (an empty one as an empty cell, which holds no heap).
    fn store(&mut self, p: &Payload) -> (OnceLock<Payload>, Span) {
        if p.is_empty() {
            return (OnceLock::from(Payload::new()), Span::CELL);
        }
        let start = self.written.len();
        serde_json::to_writer(&mut self.written, p).expect("a JSON map always serialises");
        let len = u32::try_from(self.written.len() - start).unwrap_or_else(|_| {
            // Beyond 4 GiB for one payload: kept parsed rather than refused.
            self.written.truncate(start);
            0
        });
        match len {
            0 => (OnceLock::from(p.clone()), Span::CELL),
            _ => (
                OnceLock::new(),
                Span {
                    start: start as u64,
                    len,
                },
            ),
        }
    }

    pub fn push(&mut self, p: &Payload) {
        let (cell, span) = self.store(p);
        self.cells.push(cell);
        self.spans.push(span);
    }

    pub fn set(&mut self, slot: usize, p: &Payload) {
        (self.cells[slot], self.spans[slot]) = self.store(p);
    }

    /// The payload of `slot` to change in place: its cell becomes authoritative.
    pub fn get_mut(&mut self, slot: usize) -> &mut Payload {
        self.get(slot);
        self.spans[slot] = Span::CELL;
        self.cells[slot].get_mut().expect("initialised just above")
    }

    /// The JSON of `slot`, without parsing and re-serialising a payload kept as JSON.
    pub fn json(&self, slot: usize) -> Cow<'_, [u8]> {
        match self.spans[slot] {
            Span::CELL => {
                let p = self.get(slot);
                if p.is_empty() {
                    Cow::Borrowed(&[])
                } else {
                    Cow::Owned(serde_json::to_vec(p).expect("a JSON map always serialises"))
                }
            }
            _ => Cow::Borrowed(self.kept_json(slot)),
        }
    }

    /// Keeps only the slots for which `keep` holds, in order (compaction). Payloads kept as
    /// JSON stay JSON (in a new buffer, without the dropped ones), parsed ones stay parsed,
    /// and the base rows' raw bytes are released.
    pub fn retain(&mut self, keep: impl Fn(usize) -> bool) {
        let mut kept = PayloadStore::new();
        for slot in (0..self.cells.len()).filter(|&s| keep(s)) {
            match (self.spans[slot], self.cells[slot].take()) {
                (Span::CELL, Some(p)) => {
                    kept.cells.push(OnceLock::from(p));
                    kept.spans.push(Span::CELL);
                }
                (_, parsed) => {
                    let json = self.kept_json(slot);
                    let start = kept.written.len();
                    kept.written.extend_from_slice(json);
                    kept.cells
                        .push(parsed.map_or_else(OnceLock::new, OnceLock::from));
                    kept.spans.push(match json.len() {
                        0 => Span::BASE,
                        len => Span {
                            start: start as u64,
                            len: len as u32,
                        },
                    });
                }
            }
        }
        kept.unreadable = AtomicUsize::new(self.unreadable.load(Relaxed));
        kept.first_unreadable = std::mem::take(&mut self.first_unreadable);
        *self = kept;
    }

    /// Estimated heap bytes of the parsed payloads, plus the JSON kept for the unparsed ones
    /// written since open, plus the per-slot bookkeeping.
    pub fn heap_bytes(&self) -> usize {
        let parsed: usize = self
            .cells
            .iter()
            .filter_map(OnceLock::get)
            .map(heap_bytes)
            .sum();
        let per_slot = self.cells.capacity() * std::mem::size_of::<OnceLock<Payload>>()
            + self.spans.capacity() * std::mem::size_of::<Span>();
        parsed + per_slot + self.written.capacity()
    }
}

/// An estimate of the heap bytes a payload holds: its B-tree nodes (eleven entries each, most
/// of a node's 632 bytes unused in a small map), strings and arrays. Exact accounting would
/// need a custom allocator; `tests/memory.rs` holds this to within a quarter of one.
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
    const ENTRIES: usize = 11;
    let leaf = ENTRIES * std::mem::size_of::<(String, Value)>() + 16;
    let nodes = match p.len() {
        0 => 0,
        n if n <= ENTRIES => 1,
        // Filled by inserts, nodes split into halves: about eight entries a node.
        n => n.div_ceil(8) + n.div_ceil(64),
    };
    nodes * leaf
        + p.iter()
            .map(|(k, v)| k.capacity() + value(v))
            .sum::<usize>()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn written_payloads_stay_json_until_read_and_changes_win() {
        let mut store = PayloadStore::new();
        let a = json!({"pct": 5, "tag": "x"});
        store.push(a.as_object().unwrap());
        store.push(&Payload::new());
        store.push(json!({"b": [1, 2]}).as_object().unwrap());
        // Kept as JSON: nothing parsed, and the JSON passes through as it was written.
        assert!(store
            .cells
            .iter()
            .all(|c| c.get().is_none() || c.get().unwrap().is_empty()));
        assert_eq!(&*store.json(0), serde_json::to_vec(&a).unwrap().as_slice());
        assert!(matches!(store.json(0), Cow::Borrowed(_)));
        assert!(store.json(1).is_empty());
        let unparsed = store.heap_bytes();
        assert_eq!(store.get(0)["pct"], json!(5));
        assert!(store.heap_bytes() > unparsed, "a parsed map counts");
        // A change in place is what the JSON says from then on.
        store.get_mut(0).insert("c".into(), json!(true));
        assert_eq!(
            serde_json::from_slice::<Value>(&store.json(0)).unwrap(),
            json!({"pct": 5, "tag": "x", "c": true})
        );
        // Replaced, then compacted: the survivors keep their payloads, changed or not.
        store.set(2, json!({"d": 1}).as_object().unwrap());
        store.retain(|s| s != 1);
        assert_eq!(store.len(), 2);
        assert_eq!(store.get(0)["c"], json!(true));
        assert_eq!(&*store.json(1), br#"{"d":1}"#);
        assert_eq!(store.written.len(), 7, "only the survivors' JSON is kept");
    }

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
