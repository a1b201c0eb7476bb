//! `GrapeDB.open`'s options: read from JS and mapped onto the Rust API's [`EmbeddedConfig`].
//!
//! The JS names (camelCase, `hnsw: false`, `durability: "batched"`) are the npm package's; the
//! engine knows only its own config, so the mapping is written once, here, and unit-tested.

use js_sys::Reflect;
use serde::Deserialize;
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;

use super::convert::{js_error, json};
use std::collections::BTreeMap;

use crate::{
    Bm25Config, DenseVectorConfig, Distance, Durability, EmbeddedConfig, Error, HnswConfig,
    LogRecovery, Modifier, Quantization, SparseVectorConfig,
};

#[derive(Deserialize, Default, Clone, Copy, PartialEq)]
#[serde(rename_all = "lowercase")]
pub(super) enum StorageKind {
    #[default]
    Auto,
    Opfs,
    Indexeddb,
    Memory,
    /// Node's file system (`node:fs`), in the directory `path` names.
    Fs,
}

#[derive(Deserialize, Default, Clone, Copy, PartialEq)]
#[serde(rename_all = "camelCase")]
enum JsDurability {
    #[default]
    Batched,
    OnFlush,
    Sync,
}

#[derive(Deserialize, Default, Clone, Copy, PartialEq)]
#[serde(rename_all = "camelCase")]
enum JsLogRecovery {
    #[default]
    Strict,
    Salvage,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum HnswOption {
    Off(bool),
    On(HnswOptions),
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct HnswOptions {
    m: Option<usize>,
    ef_construction: Option<usize>,
    ef: Option<usize>,
    full_scan_threshold: Option<usize>,
}

/// BM25's parameters from `{ k, b, avgLen }`, each optional (by hand: a derived reader costs
/// the wasm module more than these lines).
fn bm25_options(given: &serde_json::Value) -> Result<Bm25Config, String> {
    let fields = given.as_object().ok_or("expected true or an object")?;
    let mut c = Bm25Config::default();
    for (key, v) in fields {
        let slot = match key.as_str() {
            "k" => &mut c.k,
            "b" => &mut c.b,
            "avgLen" => &mut c.avg_len,
            _ => {
                return Err(format!(
                    "unknown field `{key}`, expected `k`, `b` or `avgLen`"
                ))
            }
        };
        *slot = v
            .as_f64()
            .ok_or_else(|| format!("`{key}` must be a number"))? as f32;
    }
    Ok(c)
}

/// A named vector's `{ size, distance }`, both required (by hand, as [`bm25_options`]).
fn named_vector(given: &serde_json::Value) -> Result<DenseVectorConfig, String> {
    let fields = given.as_object().ok_or("expected an object")?;
    if let Some(key) = fields.keys().find(|k| *k != "size" && *k != "distance") {
        return Err(format!("unknown field `{key}`"));
    }
    let size = fields
        .get("size")
        .and_then(serde_json::Value::as_u64)
        .ok_or("`size` must be a positive integer")?;
    let distance = fields.get("distance").ok_or("`distance` is missing")?;
    let distance = Distance::deserialize(distance).map_err(|e| format!("`distance`: {e}"))?;
    Ok(DenseVectorConfig {
        size: size as usize,
        distance,
    })
}

/// A sparse vector's declaration: `{ modifier?: "none" | "idf", bm25?: true | { k, b, avgLen } }`.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct SparseOptions {
    /// Default: `"idf"` with `bm25` (what BM25 needs), else `"none"`, as Qdrant's.
    modifier: Option<Modifier>,
    /// `true`, or `{ k, b, avgLen }`: read in [`SparseOptions::config`], so that a
    /// misspelt parameter is named (serde's untagged enums say only that nothing matched).
    bm25: Option<serde_json::Value>,
}

impl SparseOptions {
    fn config(&self, name: &str) -> Result<SparseVectorConfig, Error> {
        let bm25 = match &self.bm25 {
            None | Some(serde_json::Value::Bool(false)) => None,
            Some(serde_json::Value::Bool(true)) => Some(Bm25Config::default()),
            Some(given) => Some(bm25_options(given).map_err(|e| {
                Error::InvalidConfig(format!(
                    "open options: sparseVectors.{name}.bm25: {e} (true, or {{ k, b, avgLen }})"
                ))
            })?),
        };
        let implied = match bm25 {
            Some(_) => Modifier::Idf,
            None => Modifier::None,
        };
        Ok(SparseVectorConfig {
            modifier: self.modifier.unwrap_or(implied),
            bm25,
        })
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(super) struct OpenOptions {
    #[serde(default = "default_name")]
    pub(super) name: String,
    dimension: usize,
    #[serde(default)]
    distance: Distance,
    #[serde(default)]
    pub(super) storage: StorageKind,
    /// The directory of a database on Node's file system (`storage: "fs"`, or `"auto"` in
    /// Node), relative to the working directory.
    pub(super) path: Option<String>,
    #[serde(default)]
    durability: JsDurability,
    #[serde(default = "default_flush_ms")]
    flush_interval_ms: u32,
    #[serde(default)]
    pub(super) read_only: bool,
    #[serde(default)]
    pub(super) persist: bool,
    hnsw: Option<HnswOption>,
    /// `"none"`, `"sq8"` or `"binary"`, as [`Quantization`].
    #[serde(default)]
    quantization: Quantization,
    /// Keep the vectors of the last checkpoint in storage, read only when needed (with
    /// `quantization`), as `EmbeddedConfig::vectors_on_disk`.
    #[serde(default)]
    vectors_on_disk: bool,
    #[serde(default)]
    payload_indexes: Vec<String>,
    /// Sparse vectors by name, beside the dense one (see [`SparseOptions`]).
    #[serde(default)]
    sparse_vectors: BTreeMap<String, SparseOptions>,
    /// Dense vectors by name beside the unnamed one: `{ size, distance }` each, as Qdrant's
    /// (read in [`named_vector`]).
    #[serde(default)]
    named_vectors: BTreeMap<String, serde_json::Value>,
    max_points: Option<usize>,
    max_memory_mb: Option<usize>,
    #[serde(default)]
    enable_warmup: bool,
    #[serde(default)]
    log_recovery: JsLogRecovery,
    /// The archive to import, as given (bytes, a `Blob`, a stream...): read separately, see
    /// [`OpenOptions::from_js`], and piece by piece by `backend::import`.
    #[serde(skip)]
    pub(super) import: Option<JsValue>,
}

fn default_name() -> String {
    "default".to_owned()
}

fn default_flush_ms() -> u32 {
    100
}

impl OpenOptions {
    /// The options object of `GrapeDB.open`. Through JSON, so that unknown (misspelt) options
    /// are refused; `import` is taken out first, as JSON would turn its bytes into an object.
    pub(super) fn from_js(options: JsValue) -> Result<OpenOptions, JsValue> {
        let import = Reflect::get(&options, &"import".into())
            .ok()
            .filter(|v| !v.is_undefined() && !v.is_null());
        let rest = js_sys::Object::assign(&js_sys::Object::new(), options.unchecked_ref());
        let _ = Reflect::delete_property(&rest, &"import".into());
        let mut options: OpenOptions =
            serde_json::from_value(json(rest.into(), "open options")?)
                .map_err(|e| js_error(Error::InvalidConfig(format!("open options: {e}"))))?;
        options.import = import;
        Ok(options)
    }

    pub(super) fn config(&self) -> Result<EmbeddedConfig, Error> {
        let mut b = EmbeddedConfig::builder(self.dimension).distance(self.distance);
        if let Some(max) = self.max_points {
            b = b.max_points(max);
        }
        if let Some(mb) = self.max_memory_mb {
            b = b.max_memory_mb(mb);
        }
        for key in &self.payload_indexes {
            b = b.payload_index(key.clone());
        }
        for (name, sparse) in &self.sparse_vectors {
            b = b.sparse_vector(name.clone(), sparse.config(name)?);
        }
        for (name, given) in &self.named_vectors {
            let v = named_vector(given).map_err(|e| {
                Error::InvalidConfig(format!(
                    "open options: namedVectors.{name}: {e} ({{ size, distance }})"
                ))
            })?;
            b = b.named_vector(name.clone(), v.size, v.distance);
        }
        b = b
            .hnsw(self.hnsw())
            .quantization(self.quantization)
            .vectors_on_disk(self.vectors_on_disk);
        // The engine's log durability: OPFS and Node's files can fsync a write before
        // returning; the other modes buffer and become durable at `flush()` (called on a timer for "batched").
        b = b.durability(match self.durability {
            JsDurability::Sync => Durability::Sync,
            _ => Durability::OnFlush,
        });
        b = b.log_recovery(match self.log_recovery {
            JsLogRecovery::Strict => LogRecovery::Strict,
            JsLogRecovery::Salvage => LogRecovery::Salvage,
        });
        b.enable_warmup(self.enable_warmup).build()
    }

    /// The graph's parameters: the defaults unless some are given, none for `hnsw: false`.
    fn hnsw(&self) -> Option<HnswConfig> {
        match &self.hnsw {
            None | Some(HnswOption::Off(true)) => Some(HnswConfig::default()),
            Some(HnswOption::Off(false)) => None,
            Some(HnswOption::On(h)) => {
                let d = HnswConfig::default();
                Some(HnswConfig {
                    m: h.m.unwrap_or(d.m),
                    ef_construction: h.ef_construction.unwrap_or(d.ef_construction),
                    ef: h.ef.unwrap_or(d.ef),
                    full_scan_threshold: h.full_scan_threshold.unwrap_or(d.full_scan_threshold),
                })
            }
        }
    }

    /// Refuses options the storage `kind` cannot honour: `durability: "sync"` where writes are
    /// not through before returning (OPFS and Node's files are), and a `path` anywhere but on
    /// Node's file system.
    pub(super) fn check_for(&self, kind: StorageKind) -> Result<(), Error> {
        if self.durability == JsDurability::Sync
            && !matches!(kind, StorageKind::Opfs | StorageKind::Fs)
        {
            return Err(Error::InvalidConfig(
                "durability \"sync\" needs OPFS (a dedicated worker) or Node's files; IndexedDB \
                 commits at flush(): use \"batched\" or \"onFlush\""
                    .into(),
            ));
        }
        if self.path.is_some() && kind != StorageKind::Fs {
            return Err(Error::InvalidConfig(
                "path names a directory of Node's file system (storage \"fs\"); in a browser \
                 a database is found by its name"
                    .into(),
            ));
        }
        Ok(())
    }

    /// The directory of a database on Node's file system: `path`, else the name.
    pub(super) fn directory(&self) -> &str {
        self.path.as_deref().unwrap_or(&self.name)
    }

    /// The delay of the flush after a write ("batched"), where the storage outlives the page;
    /// `None` where flushes are left to `flush()`.
    pub(super) fn flush_timer(&self, durable: bool) -> Option<u32> {
        (durable && self.durability == JsDurability::Batched).then_some(self.flush_interval_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wasm_bindgen_test::wasm_bindgen_test;

    #[wasm_bindgen_test]
    fn options_map_onto_the_rust_config() {
        let options: OpenOptions = serde_json::from_str(
            r#"{"dimension": 4, "distance": "Dot", "hnsw": {"m": 8}, "maxPoints": 10}"#,
        )
        .unwrap();
        let config = options.config().unwrap();
        assert_eq!(config.distance, Distance::Dot);
        assert_eq!(config.hnsw.unwrap().m, 8);
        assert_eq!(config.max_points, Some(10));
        assert_eq!(config.durability, Durability::OnFlush);
        let sq8: OpenOptions =
            serde_json::from_str(r#"{"dimension": 4, "quantization": "sq8"}"#).unwrap();
        assert_eq!(sq8.config().unwrap().quantization, Quantization::Sq8);
        let binary: OpenOptions =
            serde_json::from_str(r#"{"dimension": 4, "quantization": "binary"}"#).unwrap();
        assert_eq!(binary.config().unwrap().quantization, Quantization::Binary);
        let on_disk: OpenOptions = serde_json::from_str(
            r#"{"dimension": 4, "quantization": "sq8", "vectorsOnDisk": true}"#,
        )
        .unwrap();
        assert!(on_disk.config().unwrap().vectors_on_disk);
        let alone: OpenOptions =
            serde_json::from_str(r#"{"dimension": 4, "vectorsOnDisk": true}"#).unwrap();
        assert!(matches!(alone.config(), Err(Error::InvalidConfig(_))));
        let off: OpenOptions = serde_json::from_str(r#"{"dimension": 4, "hnsw": false}"#).unwrap();
        assert!(off.config().unwrap().hnsw.is_none());
        assert!(serde_json::from_str::<OpenOptions>(r#"{"dimension": 4, "typo": 1}"#).is_err());
        let sparse: OpenOptions = serde_json::from_str(
            r#"{"dimension": 4, "sparseVectors": {"words": {"bm25": true}, "tags": {},
                "idf": {"modifier": "idf"}, "tuned": {"bm25": {"k": 1.5, "avgLen": 20}}}}"#,
        )
        .unwrap();
        let declared = sparse.config().unwrap().sparse_vectors;
        assert_eq!(declared["words"], SparseVectorConfig::bm25());
        assert_eq!(declared["tags"], SparseVectorConfig::default());
        assert_eq!(declared["idf"].modifier, Modifier::Idf);
        let tuned = declared["tuned"].bm25.unwrap();
        assert_eq!((tuned.k, tuned.b, tuned.avg_len), (1.5, 0.75, 20.0));
        assert!(serde_json::from_str::<OpenOptions>(
            r#"{"dimension": 4, "sparseVectors": {"w": {"modifier": "bm25"}}}"#
        )
        .is_err());
        let misspelt: OpenOptions = serde_json::from_str(
            r#"{"dimension": 4, "sparseVectors": {"w": {"bm25": {"k1": 1}}}}"#,
        )
        .unwrap();
        assert!(matches!(misspelt.config(), Err(Error::InvalidConfig(m))
            if m.contains("sparseVectors.w.bm25: unknown field `k1`")));
        let negative: OpenOptions = serde_json::from_str(
            r#"{"dimension": 4, "sparseVectors": {"w": {"bm25": {"k": -1}}}}"#,
        )
        .unwrap();
        assert!(matches!(negative.config(), Err(Error::InvalidConfig(_))));
    }
}
