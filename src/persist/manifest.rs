//! The manifest: which segment and which log make up the database, replaced atomically.
//! See FORMAT.md for the bytes.

use crate::error::{Error, Result};
use crate::point::Distance;
use crate::storage::{io_error, Storage};

use super::codec::{self, Reader};
use super::segment::{distance_code, distance_from_code};

pub(crate) const NAME: &str = "MANIFEST";
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

    /// Reads the manifest, or `None` if the directory has none.
    pub fn read(storage: &dyn Storage) -> Result<Option<Manifest>> {
        if !storage
            .list()
            .map_err(io_error("list", &storage.location()))?
            .iter()
            .any(|n| n == NAME)
        {
            return Ok(None);
        }
        let bytes = storage.read_all(NAME).map_err(io_error("read", NAME))?;
        let corrupt = |offset: u64, detail: &str| Error::Corrupt {
            file: NAME.to_owned(),
            offset,
            detail: detail.to_owned(),
        };
        if bytes.len() != BYTES || &bytes[..8] != MAGIC {
            return Err(corrupt(
                0,
                "not a grape-vector-db manifest (bad magic or size)",
            ));
        }
        let mut r = Reader::new(&bytes[8..], NAME, 8);
        let version = r.u32()?;
        if version > VERSION {
            return Err(Error::UnsupportedFormat {
                file: NAME.to_owned(),
                found: version,
                supported: VERSION,
            });
        }
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

    /// Replaces the manifest atomically: temp file, fsync, rename, fsync of the directory.
    pub fn write(&self, storage: &dyn Storage) -> Result<()> {
        let tmp = format!("{NAME}.tmp");
        let file = storage.open(&tmp, true).map_err(io_error("create", &tmp))?;
        file.set_len(0).map_err(io_error("truncate", &tmp))?;
        file.write_at(0, &self.encode())
            .map_err(io_error("write", &tmp))?;
        file.sync().map_err(io_error("sync", &tmp))?;
        drop(file);
        storage
            .rename(&tmp, NAME)
            .map_err(io_error("rename", &tmp))?;
        storage
            .sync_dir()
            .map_err(io_error("sync", &storage.location()))
    }
}
