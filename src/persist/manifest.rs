//! The manifest: which segment and which log make up the database, replaced atomically.
//! See FORMAT.md for the bytes.

use crate::error::{Error, Result};
use crate::point::Distance;
use crate::storage::OpenMode;
use crate::storage::{io_error, Storage};

use super::codec::{self, Reader};
use super::segment::{distance_code, distance_from_code};

pub(crate) const NAME: &str = "MANIFEST";
/// The next manifest, written in full before it is renamed over [`NAME`].
pub(crate) const TMP: &str = "MANIFEST.tmp";
const MAGIC: &[u8; 8] = b"GRAPEMAN";
pub(crate) const VERSION: u32 = 1;
pub(crate) const BYTES: usize = 48;

/// The database's identity and current files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Manifest {
    pub dimension: usize,
    pub distance: Distance,
    /// Bumped by every checkpoint; names the segment and log.
    pub generation: u64,
    /// Whether `seg-<generation>` exists (a new database has only a log).
    pub has_segment: bool,
}

impl Manifest {
    fn encode(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(BYTES);
        b.extend_from_slice(MAGIC);
        codec::put_u32(&mut b, VERSION);
        codec::put_u32(&mut b, self.dimension as u32);
        b.push(distance_code(self.distance));
        b.push(u8::from(self.has_segment));
        b.extend_from_slice(&[0; 6]);
        codec::put_u64(&mut b, self.generation);
        let crc = codec::crc(&b);
        codec::put_u32(&mut b, crc);
        b.resize(BYTES, 0);
        b
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
                &[(1, 32)],
            ));
        }
        if bytes.len() != BYTES {
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
        if has_segment > 1 || dimension == 0 {
            return Err(corrupt(17, "invalid field"));
        }
        Ok(Some(Manifest {
            dimension,
            distance,
            generation,
            has_segment: has_segment == 1,
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
