//! What a storage holds, read without opening it: the manifest's identity and the database's
//! files with their sizes and format versions. No lock is taken and nothing is replayed or
//! changed, so it works on a database another process has open (as `grape info` does).

use serde::{Deserialize, Serialize};

use super::manifest::{self, Manifest};
use super::{segment, wal};
use crate::error::Result;
use crate::point::Distance;
use crate::storage::{io_error, OpenMode, Storage};

/// A database as stored: what its manifest says and the files of its current generation.
///
/// ```
/// use std::sync::Arc;
/// use grape_vector_db::{Distance, EmbeddedConfig, EmbeddedVectorDB, StoredDatabase};
/// use grape_vector_db::storage::MemoryStorage;
/// let storage = MemoryStorage::new();
/// assert!(StoredDatabase::read(&storage)?.is_none(), "nothing there yet");
/// let config = EmbeddedConfig::builder(3).distance(Distance::Dot).build()?;
/// drop(EmbeddedVectorDB::open_with_storage(config, Arc::new(storage.clone()))?);
/// let stored = StoredDatabase::read(&storage)?.expect("a database");
/// assert_eq!((stored.dimension, stored.distance), (3, Distance::Dot));
/// assert!(stored.files.iter().any(|f| f.name.starts_with("wal-") && f.format_version == Some(2)));
/// # Ok::<(), grape_vector_db::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredDatabase {
    /// Vector dimension.
    pub dimension: usize,
    /// Distance function.
    pub distance: Distance,
    /// The sparse vectors declared, by name (an open that declares none uses these).
    #[serde(default)]
    pub sparse_vectors: std::collections::BTreeMap<String, crate::SparseVectorConfig>,
    /// The named dense vectors declared, by name (the same).
    #[serde(default)]
    pub named_vectors: std::collections::BTreeMap<String, crate::DenseVectorConfig>,
    /// The current generation (bumped by every checkpoint).
    pub generation: u64,
    /// The manifest, the current segment (if any) and log.
    pub files: Vec<StoredFile>,
}

/// One file of a [`StoredDatabase`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredFile {
    /// Its name in the storage.
    pub name: String,
    /// Its size in bytes.
    pub bytes: u64,
    /// The format version in its header (`None` if the header cannot be read).
    pub format_version: Option<u32>,
}

impl StoredDatabase {
    /// Reads the manifest and the headers of the files it names; `None` for a storage without
    /// a database. A damaged manifest is an error (`Corrupt`); the other files are only
    /// described here (open or `grape verify` checks them).
    pub fn read(storage: &dyn Storage) -> Result<Option<StoredDatabase>> {
        let location = storage.location();
        let names = storage.list().map_err(io_error("list", &location))?;
        let Some(m) = Manifest::read(storage, &names)? else {
            return Ok(None);
        };
        let mut files = vec![describe(storage, manifest::NAME)?];
        if m.has_segment {
            files.push(describe(storage, &segment::file_name(m.generation))?);
        }
        files.push(describe(storage, &wal::file_name(m.generation))?);
        Ok(Some(StoredDatabase {
            dimension: m.dimension,
            distance: m.distance,
            sparse_vectors: m.sparse,
            named_vectors: m.named,
            generation: m.generation,
            files,
        }))
    }
}

/// A file's size and the version after its 8-byte magic (every file of the format has both).
fn describe(storage: &dyn Storage, name: &str) -> Result<StoredFile> {
    let file = storage
        .open(name, OpenMode::Existing)
        .map_err(io_error("open", name))?;
    let bytes = file.len().map_err(io_error("read", name))?;
    let mut header = [0u8; 12];
    let format_version = match file.read_at(0, &mut header) {
        Ok(()) if bytes >= 12 => Some(u32::from_le_bytes(
            header[8..12].try_into().expect("4 bytes"),
        )),
        _ => None,
    };
    Ok(StoredFile {
        name: name.to_owned(),
        bytes,
        format_version,
    })
}
