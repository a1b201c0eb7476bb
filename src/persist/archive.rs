//! A whole database as one byte string: every file of a database directory, packed. This is how
//! a database moves between native files, OPFS and IndexedDB (`export_archive` /
//! `import_archive`); the files inside are the native format, unchanged. FORMAT.md has the bytes.

use super::codec::{self, Reader};
use super::manifest;
use crate::error::{Error, Result};
use crate::storage::OpenMode;
use crate::storage::{io_error, Storage};

const MAGIC: &[u8; 8] = b"GRAPEPAK";
pub(crate) const VERSION: u32 = 1;
const NAME: &str = "archive";

/// Packs every file of `storage` (a database directory, not open for writing).
pub(crate) fn pack(storage: &dyn Storage) -> Result<Vec<u8>> {
    let names = storage
        .list()
        .map_err(io_error("list", &storage.location()))?;
    let mut out = MAGIC.to_vec();
    codec::put_u32(&mut out, VERSION);
    codec::put_u32(&mut out, names.len() as u32);
    for name in &names {
        let data = storage.read_all(name).map_err(io_error("read", name))?;
        codec::put_u32(&mut out, name.len() as u32);
        out.extend_from_slice(name.as_bytes());
        codec::put_u64(&mut out, data.len() as u64);
        out.extend_from_slice(&data);
    }
    let crc = codec::crc(&out);
    codec::put_u32(&mut out, crc);
    Ok(out)
}

/// Unpacks `archive` into the empty `dest`, the manifest last, so that an interrupted import
/// leaves no database (the next open finds no manifest and starts from empty, removing the rest).
pub(crate) fn unpack(archive: &[u8], dest: &dyn Storage) -> Result<()> {
    let body = check_envelope(archive)?;
    let files = parse_files(&archive[..body])?;
    // Held until the import is complete, so no database opens half of it.
    let _lock = dest.lock()?;
    let existing = dest.list().map_err(io_error("list", &dest.location()))?;
    if !existing.is_empty() {
        return Err(Error::InvalidArgument(format!(
            "import destination {} is not empty",
            dest.location()
        )));
    }
    // The manifest last: until it exists, the destination holds no database.
    let (manifest, others): (Vec<_>, Vec<_>) =
        files.into_iter().partition(|(n, _)| *n == manifest::NAME);
    for (name, data) in others.into_iter().chain(manifest) {
        write_file(dest, name, data)?;
    }
    dest.sync_dir().map_err(io_error("sync", &dest.location()))
}

/// For damage found outside the reader (envelope, file list), which has no position to report.
fn corrupt(offset: usize, detail: &str) -> Error {
    Error::Corrupt {
        file: NAME.to_owned(),
        offset: offset as u64,
        detail: detail.to_owned(),
    }
}

/// Magic and checksum first, so a damaged archive is reported as such, not by a garbled field.
fn check_envelope(archive: &[u8]) -> Result<usize> {
    if archive.len() < 20 || &archive[..8] != MAGIC {
        return Err(corrupt(0, "not a Grape Vector DB archive (bad magic)"));
    }
    let body = archive.len() - 4;
    let stored = u32::from_le_bytes(archive[body..].try_into().expect("4 bytes"));
    if codec::crc(&archive[..body]) != stored {
        return Err(corrupt(
            body,
            "checksum mismatch (truncated or damaged archive)",
        ));
    }
    Ok(body)
}

/// Parses and checks every file before the destination is touched, so a bad archive writes nothing.
fn parse_files(archive: &[u8]) -> Result<Vec<(&str, &[u8])>> {
    let mut r = Reader::new(&archive[8..], NAME, 8);
    let version = r.u32()?;
    if version > VERSION {
        return Err(Error::UnsupportedFormat {
            file: NAME.to_owned(),
            found: version,
            supported: VERSION,
        });
    }
    let count = r.count(12)?;
    let mut files = Vec::with_capacity(count);
    for _ in 0..count {
        let len = r.u32()? as usize;
        let name =
            std::str::from_utf8(r.bytes(len)?).map_err(|_| r.corrupt("file name is not UTF-8"))?;
        // Only a database's own files: never a path, a `LOCK` or anything else.
        if !super::is_database_file(name) {
            return Err(r.corrupt(format!("{name:?} is not a database file name")));
        }
        let size = usize::try_from(r.u64()?).map_err(|_| r.corrupt("file too large"))?;
        files.push((name, r.bytes(size)?));
    }
    if !r.is_empty() {
        return Err(r.corrupt("bytes after the last file"));
    }
    if !files.iter().any(|(n, _)| *n == manifest::NAME) {
        return Err(corrupt(8, "the archive holds no MANIFEST"));
    }
    Ok(files)
}

/// Through a temporary name, synced before the rename, so a file under its own name is complete.
fn write_file(dest: &dyn Storage, name: &str, data: &[u8]) -> Result<()> {
    let tmp = format!("{name}.tmp");
    let file = dest
        .open(&tmp, OpenMode::CreateIfMissing)
        .map_err(io_error("create", &tmp))?;
    file.write_at(0, data).map_err(io_error("write", &tmp))?;
    file.sync().map_err(io_error("sync", &tmp))?;
    drop(file);
    dest.rename(&tmp, name).map_err(io_error("rename", name))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::MemoryStorage;

    const LOG: &str = "wal-0000000000000001.log";

    fn sample() -> MemoryStorage {
        let s = MemoryStorage::new();
        s.open("MANIFEST", OpenMode::CreateIfMissing)
            .unwrap()
            .write_at(0, b"m")
            .unwrap();
        s.open(LOG, OpenMode::CreateIfMissing)
            .unwrap()
            .write_at(0, b"log bytes")
            .unwrap();
        s
    }

    #[test]
    fn round_trip_and_damage() {
        let packed = pack(&sample()).unwrap();
        let dest = MemoryStorage::new();
        unpack(&packed, &dest).unwrap();
        assert_eq!(dest.list().unwrap(), vec!["MANIFEST", LOG]);
        assert_eq!(&*dest.read_all(LOG).unwrap(), b"log bytes");
        assert!(
            matches!(unpack(&packed, &dest), Err(Error::InvalidArgument(_))),
            "not empty"
        );
        for cut in [0, 10, packed.len() - 1] {
            assert!(matches!(
                unpack(&packed[..cut], &MemoryStorage::new()),
                Err(Error::Corrupt { .. })
            ));
        }
        let mut flipped = packed.clone();
        flipped[30] ^= 4;
        assert!(matches!(
            unpack(&flipped, &MemoryStorage::new()),
            Err(Error::Corrupt { .. })
        ));
    }

    #[test]
    fn only_database_files_are_imported_and_under_the_lock() {
        for name in [
            "LOCK",
            "../x",
            ".hidden",
            "seg-1.seg",
            "notes.txt",
            "MANIFEST.tmp",
        ] {
            let s = sample();
            s.open(name, OpenMode::CreateIfMissing)
                .unwrap()
                .write_at(0, b"x")
                .unwrap();
            let err = unpack(&pack(&s).unwrap(), &MemoryStorage::new()).unwrap_err();
            assert!(
                err.to_string().contains("not a database file"),
                "{name}: {err}"
            );
        }
        let dest = MemoryStorage::new();
        let _held = dest.lock().unwrap();
        assert!(matches!(
            unpack(&pack(&sample()).unwrap(), &dest),
            Err(Error::AlreadyOpen(_))
        ));
        assert!(dest.list().unwrap().is_empty());
    }
}
