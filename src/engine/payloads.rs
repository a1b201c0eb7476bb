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

/// Where the payload of a slot past the base rows is kept.
#[derive(Clone, Copy, PartialEq, Eq)]
struct Span {
    start: u64,
    len: u32,
}

impl Span {
    /// The parsed cell is authoritative (changed in place, or empty when uninitialised).
    const CELL: Span = Span {
        start: u64::MAX,
        len: 0,
    };
}

/// Slots per chunk of cells: a chunk is allocated on the first parse of one of its payloads.
const CHUNK: usize = 16;
type Chunk = [OnceLock<Payload>; CHUNK];

/// What an unallocated chunk's empty payloads read as.
static EMPTY: OnceLock<Payload> = OnceLock::new();

/// Payloads by slot, kept as JSON and parsed on first use.
///
/// Payloads written since open are kept as their JSON in one growing buffer, like the base
/// rows' in the segment, rather than as the maps the caller built: a parsed map holds B-tree
/// nodes of eleven entries (about 650 bytes for `{"pct": 5}`, whose JSON is 9), and maps kept
/// from a large upsert would sit in the heap between the caller's freed vectors, so that
/// memory could not go back to the system (measured: 100K x 384 WordNet points upserted at
/// once left 394 MiB resident for 185 MiB held).
///
/// A payload never parsed costs about a bit for a base row and 17 bytes for one written
/// since open: the parsed cells come in chunks allocated on first use, and base rows need no
/// span (a cell and a span for every slot were 48 bytes: 4.6 MiB of a 100K database's heap).
pub(crate) struct PayloadStore {
    /// The parsed payloads, `CHUNK` slots a chunk.
    cells: Vec<OnceLock<Box<Chunk>>>,
    len: usize,
    raw: Option<RawPayloads>,
    /// The first `base_rows` slots are the raw rows, unless changed since open.
    base_rows: usize,
    /// One bit per base row: set once it changed, and then its cell is authoritative.
    base_changed: Vec<u64>,
    /// Where the payloads of the slots past the base rows are kept.
    spans: Vec<Span>,
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
            len: 0,
            raw: None,
            base_rows: 0,
            base_changed: Vec::new(),
            spans: Vec::new(),
            written: Vec::new(),
            unreadable: AtomicUsize::new(0),
            first_unreadable: OnceLock::new(),
        }
    }

    pub fn with_raw(rows: usize, raw: RawPayloads) -> Self {
        PayloadStore {
            cells: (0..rows.div_ceil(CHUNK)).map(|_| OnceLock::new()).collect(),
            len: rows,
            raw: Some(raw),
            base_rows: rows,
            base_changed: vec![0; rows.div_ceil(64)],
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
        self.len
    }

    /// Whether `slot`'s cell is authoritative.
    fn in_cell(&self, slot: usize) -> bool {
        match slot.checked_sub(self.base_rows) {
            None => self.base_changed[slot / 64] & (1 << (slot % 64)) != 0,
            Some(i) => self.spans[i] == Span::CELL,
        }
    }

    /// The JSON `slot`'s payload is kept as, unless its cell is authoritative.
    fn kept_json(&self, slot: usize) -> &[u8] {
        if self.in_cell(slot) {
            return &[];
        }
        match slot.checked_sub(self.base_rows) {
            None => self.raw.as_ref().map_or(&[], |raw| raw.get(slot)),
            Some(i) => {
                let Span { start, len } = self.spans[i];
                &self.written[start as usize..start as usize + len as usize]
            }
        }
    }

    /// The payload of `slot`, parsing it on first use.
    pub fn get(&self, slot: usize) -> &Payload {
        let chunk = &self.cells[slot / CHUNK];
        if chunk.get().is_none() && self.kept_json(slot).is_empty() {
            // An empty payload (or a tombstone) needs no chunk: a set cell has one.
            return EMPTY.get_or_init(Payload::new);
        }
        chunk.get_or_init(new_chunk)[slot % CHUNK]
            .get_or_init(|| self.parse(slot, self.kept_json(slot)))
    }

    /// `slot`'s cell, its chunk allocated if need be.
    fn cell_mut(&mut self, slot: usize) -> &mut OnceLock<Payload> {
        let chunk = &mut self.cells[slot / CHUNK];
        if chunk.get().is_none() {
            *chunk = OnceLock::from(new_chunk());
        }
        let chunk = chunk.get_mut().expect("allocated just above");
        &mut chunk[slot % CHUNK]
    }

    /// Takes `slot`'s parsed payload out of its cell, if parsed.
    fn take_cell(&mut self, slot: usize) -> Option<Payload> {
        self.cells[slot / CHUNK].get_mut()?[slot % CHUNK].take()
    }

    /// Room for `additional` more slots.
    pub fn reserve(&mut self, additional: usize) {
        let chunks = (self.len + additional).div_ceil(CHUNK);
        self.cells.reserve(chunks.saturating_sub(self.cells.len()));
        self.spans.reserve(additional);
    }

    /// Keeps `p` as JSON, or says the cell is to hold it: `None` (an empty cell) for an empty
    /// payload.
    fn store(&mut self, p: &Payload) -> (Option<Payload>, Span) {
        if p.is_empty() {
            return (None, Span::CELL);
        }
        let start = self.written.len();
        serde_json::to_writer(&mut self.written, p).expect("a JSON map always serialises");
        match u32::try_from(self.written.len() - start) {
            Ok(len) => (
                None,
                Span {
                    start: start as u64,
                    len,
                },
            ),
            Err(_) => {
                // Beyond 4 GiB for one payload: kept parsed rather than refused.
                self.written.truncate(start);
                (Some(p.clone()), Span::CELL)
            }
        }
    }

    /// Makes `slot`'s cell hold `value`, or be empty (and then read as an empty payload while
    /// authoritative).
    fn fill_cell(&mut self, slot: usize, value: Option<Payload>) {
        match value {
            Some(p) => *self.cell_mut(slot) = OnceLock::from(p),
            None => drop(self.take_cell(slot)),
        }
    }

    pub fn push(&mut self, p: &Payload) {
        let slot = self.len;
        self.len += 1;
        if slot / CHUNK == self.cells.len() {
            self.cells.push(OnceLock::new());
        }
        let (value, span) = self.store(p);
        self.spans.push(span);
        self.fill_cell(slot, value);
    }

    pub fn set(&mut self, slot: usize, p: &Payload) {
        match slot.checked_sub(self.base_rows) {
            // A base row cannot point at written JSON: its cell holds the new payload.
            None => {
                self.base_changed[slot / 64] |= 1 << (slot % 64);
                let value = (!p.is_empty()).then(|| p.clone());
                self.fill_cell(slot, value);
            }
            Some(i) => {
                let (value, span) = self.store(p);
                self.spans[i] = span;
                self.fill_cell(slot, value);
            }
        }
    }

    /// The payload of `slot` to change in place: its cell becomes authoritative.
    pub fn get_mut(&mut self, slot: usize) -> &mut Payload {
        let parsed = self
            .cells
            .get(slot / CHUNK)
            .and_then(OnceLock::get)
            .is_some_and(|chunk| chunk[slot % CHUNK].get().is_some());
        let value = (!parsed).then(|| self.parse(slot, self.kept_json(slot)));
        match slot.checked_sub(self.base_rows) {
            None => self.base_changed[slot / 64] |= 1 << (slot % 64),
            Some(i) => self.spans[i] = Span::CELL,
        }
        let cell = self.cell_mut(slot);
        if let Some(value) = value {
            *cell = OnceLock::from(value);
        }
        cell.get_mut().expect("initialised above")
    }

    /// The JSON of `slot`, without parsing and re-serialising a payload kept as JSON.
    pub fn json(&self, slot: usize) -> Cow<'_, [u8]> {
        if !self.in_cell(slot) {
            return Cow::Borrowed(self.kept_json(slot));
        }
        let p = self.get(slot);
        if p.is_empty() {
            Cow::Borrowed(&[])
        } else {
            Cow::Owned(serde_json::to_vec(p).expect("a JSON map always serialises"))
        }
    }

    /// Keeps only the slots for which `keep` holds, in order (compaction). Payloads kept as
    /// JSON stay JSON (in a new buffer, without the dropped ones), parsed ones stay parsed,
    /// and the base rows' raw bytes are released.
    pub fn retain(&mut self, keep: impl Fn(usize) -> bool) {
        let mut kept = PayloadStore::new();
        for slot in (0..self.len).filter(|&s| keep(s)) {
            let parsed = self.take_cell(slot);
            let span = match self.in_cell(slot) {
                true => Span::CELL,
                false => {
                    let json = self.kept_json(slot);
                    let start = kept.written.len();
                    kept.written.extend_from_slice(json);
                    Span {
                        start: start as u64,
                        len: json.len() as u32,
                    }
                }
            };
            let at = kept.len;
            kept.len += 1;
            if at / CHUNK == kept.cells.len() {
                kept.cells.push(OnceLock::new());
            }
            kept.spans.push(span);
            // An empty parsed payload needs no chunk: it reads as empty either way.
            kept.fill_cell(at, parsed.filter(|p| !p.is_empty()));
        }
        kept.unreadable = AtomicUsize::new(self.unreadable.load(Relaxed));
        kept.first_unreadable = std::mem::take(&mut self.first_unreadable);
        *self = kept;
    }

    /// Estimated heap bytes of the parsed payloads, plus the JSON kept for the unparsed ones
    /// written since open, plus the per-slot bookkeeping.
    pub fn heap_bytes(&self) -> usize {
        let chunks = || self.cells.iter().filter_map(OnceLock::get);
        let parsed: usize = chunks()
            .flat_map(|chunk| chunk.iter().filter_map(OnceLock::get))
            .map(heap_bytes)
            .sum();
        let bookkeeping = self.cells.capacity() * std::mem::size_of::<OnceLock<Box<Chunk>>>()
            + chunks().count() * std::mem::size_of::<Chunk>()
            + self.spans.capacity() * std::mem::size_of::<Span>()
            + self.base_changed.capacity() * 8;
        parsed + bookkeeping + self.written.capacity()
    }
}

fn new_chunk() -> Box<Chunk> {
    Box::new(std::array::from_fn(|_| OnceLock::new()))
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
        // Kept as JSON: nothing parsed (no chunk of cells even), and the JSON passes through
        // as it was written.
        assert!(store.cells.iter().all(|c| c.get().is_none()));
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

    fn raw(jsons: &[String]) -> RawPayloads {
        let mut offsets = Vec::new();
        let mut data = Vec::new();
        for j in jsons {
            offsets.extend_from_slice(&(data.len() as u64).to_le_bytes());
            data.extend_from_slice(j.as_bytes());
        }
        offsets.extend_from_slice(&(data.len() as u64).to_le_bytes());
        RawPayloads {
            offsets: Bytes::from(offsets),
            data: Bytes::from(data),
        }
    }

    #[test]
    fn unread_base_rows_cost_about_a_byte_and_their_changes_live_in_cells() {
        let jsons: Vec<String> = (0..100)
            .map(|i| match i {
                50 => String::new(),
                i => format!(r#"{{"i":{i}}}"#),
            })
            .collect();
        let mut store = PayloadStore::with_raw(100, raw(&jsons));
        let idle = store.heap_bytes();
        assert!(idle <= 2 * 100, "{idle} bytes for 100 unread rows");
        let chunks = |s: &PayloadStore| s.cells.iter().filter(|c| c.get().is_some()).count();
        assert!(store.get(50).is_empty());
        assert_eq!(chunks(&store), 0, "an empty payload needs no cell");
        assert_eq!(store.get(3)["i"], json!(3));
        assert_eq!(chunks(&store), 1, "one chunk of cells for one parse");
        assert!(store.heap_bytes() > idle);

        // A tombstone, a replacement and a change in place of base rows: their cells win.
        store.set(3, &Payload::new());
        assert!(store.get(3).is_empty());
        assert!(store.json(3).is_empty());
        store.set(4, json!({"x": 1}).as_object().unwrap());
        assert_eq!(&*store.json(4), br#"{"x":1}"#);
        store.get_mut(70).insert("y".into(), json!(2));
        assert_eq!(&*store.json(70), br#"{"i":70,"y":2}"#);
        store.push(json!({"n": 1}).as_object().unwrap());
        assert_eq!(&*store.json(100), br#"{"n":1}"#);
        assert_eq!(&*store.json(99), br#"{"i":99}"#, "untouched rows stay raw");

        store.retain(|s| s != 3);
        assert_eq!(store.len(), 100);
        assert_eq!(&*store.json(3), br#"{"x":1}"#);
        assert!(store.get(49).is_empty());
        assert_eq!(store.get(69)["y"], json!(2));
        assert_eq!(&*store.json(98), br#"{"i":99}"#);
        assert_eq!(&*store.json(99), br#"{"n":1}"#);
    }

    #[test]
    fn raw_payloads_parse_lazily_and_pass_through_untouched() {
        let jsons = [r#"{"a":1}"#, "", r#"{"b":"x"}"#].map(String::from);
        let mut store = PayloadStore::with_raw(3, raw(&jsons));
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
