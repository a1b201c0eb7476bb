//! The manifest: which segment and which log make up the database, replaced atomically.
//! See FORMAT.md for the bytes.

use std::collections::BTreeMap;

use crate::config::{DenseVectorConfig, Modifier, SparseVectorConfig};
use crate::error::{Error, Result};
use crate::point::Distance;
use crate::storage::OpenMode;
use crate::storage::{io_error, Storage};
use crate::Bm25Config;

use super::codec::{self, Reader};
use super::segment::{distance_code, distance_from_code};

pub(crate) const NAME: &str = "MANIFEST";
/// The next manifest, written in full before it is renamed over [`NAME`].
pub(crate) const TMP: &str = "MANIFEST.tmp";
const MAGIC: &[u8; 8] = b"GRAPEMAN";
/// Version 2 adds the declarations of sparse vectors after version 1's bytes, version 3 those
/// of named dense vectors after version 2's; a database without them still writes the
/// earlier version, which older readers open.
pub(crate) const VERSION: u32 = 3;
/// The size of version 1, and of version 2's first part (the same fields).
pub(crate) const BYTES: usize = 48;

/// The database's identity and current files.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Manifest {
    pub dimension: usize,
    pub distance: Distance,
    /// Bumped by every checkpoint; names the segment and log.
    pub generation: u64,
    /// Whether `seg-<generation>` exists (a new database has only a log).
    pub has_segment: bool,
    /// The sparse vectors declared, by name: how they are searched and turned from text,
    /// which no point carries, so that an open that declares none (the `grape` CLI, a later
    /// version of an app) searches them as they were declared.
    pub sparse: BTreeMap<String, SparseVectorConfig>,
    /// The named dense vectors declared, by name, for the same reason (a database with no
    /// segment yet holds them in its log alone).
    pub named: BTreeMap<String, DenseVectorConfig>,
}

impl Manifest {
    fn encode(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(BYTES);
        b.extend_from_slice(MAGIC);
        let version = match (self.sparse.is_empty(), self.named.is_empty()) {
            (true, true) => 1,
            (false, true) => 2,
            (_, false) => VERSION,
        };
        codec::put_u32(&mut b, version);
        codec::put_u32(&mut b, self.dimension as u32);
        b.push(distance_code(self.distance));
        b.push(u8::from(self.has_segment));
        b.extend_from_slice(&[0; 6]);
        codec::put_u64(&mut b, self.generation);
        let crc = codec::crc(&b);
        codec::put_u32(&mut b, crc);
        b.resize(BYTES, 0);
        if version >= 2 {
            // The declarations, then their checksum: u32 count; per declaration its name (u32
            // length, UTF-8), modifier (u8), BM25 flag (u8) and parameters (3 x f32).
            let start = b.len();
            codec::put_u32(&mut b, self.sparse.len() as u32);
            for (name, c) in &self.sparse {
                codec::put_u32(&mut b, name.len() as u32);
                b.extend_from_slice(name.as_bytes());
                b.push(match c.modifier {
                    Modifier::None => 0,
                    Modifier::Idf => 1,
                });
                b.push(u8::from(c.bm25.is_some()));
                let p = c.bm25.unwrap_or(Bm25Config {
                    k: 0.0,
                    b: 0.0,
                    avg_len: 0.0,
                });
                codec::put_f32s(&mut b, &[p.k, p.b, p.avg_len]);
            }
            let crc = codec::crc(&b[start..]);
            codec::put_u32(&mut b, crc);
        }
        if version >= 3 {
            // The same for named dense vectors: u32 count; per declaration its name (u32
            // length, UTF-8), dimension (u32) and distance (u8).
            let start = b.len();
            codec::put_u32(&mut b, self.named.len() as u32);
            for (name, c) in &self.named {
                codec::put_u32(&mut b, name.len() as u32);
                b.extend_from_slice(name.as_bytes());
                codec::put_u32(&mut b, c.size as u32);
                b.push(distance_code(c.distance));
            }
            let crc = codec::crc(&b[start..]);
            codec::put_u32(&mut b, crc);
        }
        b
    }

    /// The declarations after the first [`BYTES`]: version 2's of sparse vectors, then
    /// version 3's of named dense vectors, each block followed by its checksum.
    fn read_declarations(bytes: &[u8], version: u32) -> Result<Declarations> {
        let mut at = BYTES;
        let sparse = read_block(bytes, &mut at, "sparse", read_sparse)?;
        let named = match version {
            3.. => read_block(bytes, &mut at, "named vector", read_named)?,
            _ => BTreeMap::new(),
        };
        if at != bytes.len() {
            return Err(corrupt(at, "bytes after the declarations".into()));
        }
        Ok((sparse, named))
    }

    /// Reads the manifest, or `None` if the directory (whose files are `names`) has none.
    pub fn read(storage: &dyn Storage, names: &[String]) -> Result<Option<Manifest>> {
        if !names.iter().any(|n| n == NAME) {
            return Ok(None);
        }
        let bytes = storage.read_all(NAME).map_err(io_error("read", NAME))?;
        let corrupt = |offset: u64, detail: &str| Error::Corrupt {
            file: NAME.to_owned(),
            offset,
            detail: detail.to_owned(),
        };
        if bytes.len() < 12 || &bytes[..8] != MAGIC {
            return Err(corrupt(0, "not a grape-vector-db manifest (bad magic)"));
        }
        let version = u32::from_le_bytes(bytes[8..12].try_into().expect("4 bytes"));
        if version > VERSION || version == 0 {
            return Err(codec::newer_or_damaged(
                &bytes,
                NAME,
                version,
                VERSION,
                &[(1, 32), (2, 32), (3, 32)],
            ));
        }
        if bytes.len() < BYTES || (version == 1 && bytes.len() != BYTES) {
            return Err(corrupt(0, "the manifest has the wrong size"));
        }
        let mut r = Reader::new(&bytes[12..], NAME, 12);
        let dimension = r.u32()? as usize;
        let distance = distance_from_code(r.u8()?);
        let has_segment = r.u8()?;
        r.bytes(6)?;
        let generation = r.u64()?;
        let crc = r.u32()?;
        if codec::crc(&bytes[..32]) != crc {
            return Err(corrupt(32, "manifest checksum mismatch"));
        }
        let distance = distance.ok_or_else(|| corrupt(16, "unknown distance code"))?;
        if has_segment > 1 {
            return Err(corrupt(17, "invalid field"));
        }
        let (sparse, named): Declarations = match version {
            1 => Default::default(),
            _ => Self::read_declarations(&bytes, version)?,
        };
        // Dimension 0: a database of named vectors only.
        if dimension == 0 && named.is_empty() {
            return Err(corrupt(12, "invalid field"));
        }
        Ok(Some(Manifest {
            dimension,
            distance,
            generation,
            has_segment: has_segment == 1,
            sparse,
            named,
        }))
    }

    /// Writes the manifest durably as [`TMP`], not yet in effect (see [`Manifest::commit`]).
    pub fn stage(&self, storage: &dyn Storage) -> Result<()> {
        let file = storage
            .open(TMP, OpenMode::CreateIfMissing)
            .map_err(io_error("create", TMP))?;
        file.set_len(0).map_err(io_error("truncate", TMP))?;
        file.write_at(0, &self.encode())
            .map_err(io_error("write", TMP))?;
        file.sync().map_err(io_error("sync", TMP))
    }

    /// Renames the staged manifest over the current one and syncs the directory: the commit
    /// point of a checkpoint. After an error here, the disk may name either manifest.
    pub fn commit(storage: &dyn Storage) -> Result<()> {
        storage.rename(TMP, NAME).map_err(io_error("rename", TMP))?;
        storage
            .sync_dir()
            .map_err(io_error("sync", &storage.location()))
    }
}

/// The sparse and the named dense vectors declared.
type Declarations = (
    BTreeMap<String, SparseVectorConfig>,
    BTreeMap<String, DenseVectorConfig>,
);

fn corrupt(offset: usize, detail: String) -> Error {
    Error::Corrupt {
        file: NAME.to_owned(),
        offset: offset as u64,
        detail,
    }
}

/// The block of declarations at `at`, read by `read`, then checked against the checksum
/// after it; `at` moves past both.
fn read_block<T>(
    bytes: &[u8],
    at: &mut usize,
    what: &str,
    read: impl FnOnce(&mut Reader, usize) -> Result<T>,
) -> Result<T> {
    let mut r = Reader::new(&bytes[*at..], NAME, *at as u64);
    let found = read(&mut r, *at)?;
    let end = *at + r.position();
    let Some(crc) = bytes.get(end..end + 4) else {
        return Err(corrupt(
            end,
            format!("the {what} declarations are cut short"),
        ));
    };
    if codec::crc(&bytes[*at..end]).to_le_bytes() != crc {
        return Err(corrupt(
            end,
            format!("{what} declarations checksum mismatch"),
        ));
    }
    *at = end + 4;
    Ok(found)
}

/// Sparse vectors: u32 count; per declaration its name (u32 length, UTF-8), modifier (u8),
/// BM25 flag (u8) and parameters (3 x f32). `base`: where the block starts.
fn read_sparse(r: &mut Reader, base: usize) -> Result<BTreeMap<String, SparseVectorConfig>> {
    let mut sparse = BTreeMap::new();
    for _ in 0..r.count(18)? {
        let at = base + r.position();
        let len = r.count(1)?;
        let name = std::str::from_utf8(r.bytes(len)?)
            .map_err(|_| corrupt(at, "a sparse vector's name is not UTF-8".into()))?;
        let modifier = match r.u8()? {
            0 => Modifier::None,
            1 => Modifier::Idf,
            m => return Err(corrupt(at, format!("unknown modifier code {m}"))),
        };
        let has_bm25 = r.u8()?;
        let p = r.f32s(3)?;
        let bm25 = match has_bm25 {
            0 => None,
            1 => Some(Bm25Config {
                k: p[0],
                b: p[1],
                avg_len: p[2],
            }),
            f => return Err(corrupt(at, format!("invalid BM25 flag {f}"))),
        };
        let c = SparseVectorConfig { modifier, bm25 };
        if name.is_empty() || sparse.insert(name.to_owned(), c).is_some() {
            return Err(corrupt(
                at,
                format!("sparse vector name {name:?} is empty or repeated"),
            ));
        }
    }
    Ok(sparse)
}

/// Named dense vectors: u32 count; per declaration its name (u32 length, UTF-8), dimension
/// (u32) and distance (u8).
fn read_named(r: &mut Reader, base: usize) -> Result<BTreeMap<String, DenseVectorConfig>> {
    let mut named = BTreeMap::new();
    for _ in 0..r.count(10)? {
        let at = base + r.position();
        let len = r.count(1)?;
        let name = std::str::from_utf8(r.bytes(len)?)
            .map_err(|_| corrupt(at, "a named vector's name is not UTF-8".into()))?;
        let size = r.u32()? as usize;
        let distance = distance_from_code(r.u8()?)
            .filter(|_| (1..=crate::MAX_DIMENSION).contains(&size))
            .ok_or_else(|| corrupt(at, format!("vector {name:?}: invalid size or distance")))?;
        let c = DenseVectorConfig { size, distance };
        if name.is_empty() || named.insert(name.to_owned(), c).is_some() {
            return Err(corrupt(
                at,
                format!("named vector {name:?} is empty or repeated"),
            ));
        }
    }
    Ok(named)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::MemoryStorage;

    fn written(m: &Manifest) -> (MemoryStorage, Vec<u8>) {
        let storage = MemoryStorage::new();
        m.stage(&storage).unwrap();
        Manifest::commit(&storage).unwrap();
        let bytes = storage.read_all(NAME).unwrap().to_vec();
        (storage, bytes)
    }

    fn read_bytes(bytes: &[u8]) -> Result<Option<Manifest>> {
        let storage = MemoryStorage::new();
        let file = storage.open(NAME, OpenMode::CreateIfMissing).unwrap();
        file.write_at(0, bytes).unwrap();
        Manifest::read(&storage, &[NAME.to_owned()])
    }

    fn declaring() -> Manifest {
        let tuned = Bm25Config {
            k: 1.5,
            b: 0.5,
            avg_len: 15.0,
        };
        Manifest {
            dimension: 384,
            distance: Distance::Cosine,
            generation: 7,
            has_segment: true,
            sparse: [
                ("tags".to_owned(), SparseVectorConfig::default()),
                (
                    "words ✓".to_owned(),
                    SparseVectorConfig {
                        modifier: Modifier::Idf,
                        bm25: Some(tuned),
                    },
                ),
            ]
            .into(),
            named: [
                (
                    "image".to_owned(),
                    DenseVectorConfig {
                        size: 512,
                        distance: Distance::Dot,
                    },
                ),
                (
                    "title ✓".to_owned(),
                    DenseVectorConfig {
                        size: 3,
                        distance: Distance::Manhattan,
                    },
                ),
            ]
            .into(),
        }
    }

    #[test]
    fn declarations_round_trip_and_a_manifest_without_them_stays_version_1() {
        let m = declaring();
        let (storage, bytes) = written(&m);
        assert_eq!(bytes[8..12], 3u32.to_le_bytes());
        assert_eq!(
            Manifest::read(&storage, &[NAME.to_owned()]).unwrap(),
            Some(m)
        );
        // Sparse vectors alone: version 2, as before named vectors.
        let sparse = Manifest {
            named: BTreeMap::new(),
            ..declaring()
        };
        let (storage, bytes) = written(&sparse);
        assert_eq!(bytes[8..12], 2u32.to_le_bytes());
        assert_eq!(
            Manifest::read(&storage, &[NAME.to_owned()]).unwrap(),
            Some(sparse)
        );
        let plain = Manifest {
            sparse: BTreeMap::new(),
            named: BTreeMap::new(),
            ..declaring()
        };
        let (storage, bytes) = written(&plain);
        assert_eq!(
            (bytes.len(), &bytes[8..12]),
            (BYTES, &1u32.to_le_bytes()[..])
        );
        assert_eq!(
            Manifest::read(&storage, &[NAME.to_owned()]).unwrap(),
            Some(plain)
        );
    }

    #[test]
    fn every_flipped_bit_and_cut_of_the_declarations_is_refused() {
        let original = declaring();
        let (_, bytes) = written(&original);
        for at in 0..bytes.len() {
            for bit in 0..8 {
                let mut damaged = bytes.clone();
                damaged[at] ^= 1 << bit;
                match read_bytes(&damaged) {
                    Err(Error::Corrupt { .. } | Error::UnsupportedFormat { .. }) => {}
                    // The first part's padding (36..48) is outside its checksum, and unread.
                    Ok(Some(m)) if (36..BYTES).contains(&at) => assert_eq!(m, original),
                    other => panic!("byte {at} bit {bit}: {other:?}"),
                }
            }
        }
        for cut in 0..bytes.len() {
            assert!(
                matches!(read_bytes(&bytes[..cut]), Err(Error::Corrupt { .. })),
                "cut at {cut}"
            );
        }
    }
}
