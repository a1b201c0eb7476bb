//! A whole database as one byte string: every file of a database directory, packed. This is how
//! a database moves between native files, OPFS and IndexedDB (`export_archive` /
//! `import_archive`); the files inside are the native format, unchanged. FORMAT.md has the bytes.
//!
//! Both ways stream: [`pack`] writes file by file in pieces, and [`Unpacker`] takes the archive
//! in pieces as they arrive (a download, a file read in chunks), so neither side ever holds the
//! whole archive: a database of a million vectors is an archive of gigabytes, more than a
//! browser tab's WebAssembly memory.

use std::io::Write;

use super::is_database_file;
use super::manifest;
use crate::error::{Error, Result};
use crate::storage::{io_error, OpenMode, Storage, StorageFile};

const MAGIC: &[u8; 8] = b"GRAPEPAK";
pub(crate) const VERSION: u32 = 1;
const NAME: &str = "archive";
/// Bytes read from a file and written out at a time by [`pack`].
const PIECE: usize = 1 << 20;
/// The longest file name an archive may hold: ours are at most 24 bytes, and a longer length
/// field is damage, not a name to gather.
const MAX_NAME: usize = 64;
/// The largest manifest an archive may hold: it is kept in memory until the rest is written
/// (ours are a few hundred bytes).
const MAX_MANIFEST: u64 = 1 << 20;

/// Writes every file of `storage` (a database directory, not open for writing) to `out` as
/// one archive, each file in pieces of [`PIECE`] bytes. Generic, so that packing into a `Vec`
/// (the browser's only use) does not bring in the machinery of `dyn Write`.
pub(crate) fn pack<W: Write + ?Sized>(storage: &dyn Storage, out: &mut W) -> Result<()> {
    let names = storage
        .list()
        .map_err(io_error("list", &storage.location()))?;
    let write_err = |e| Error::io("write", NAME, e);
    let mut crc = 0;
    let mut put = |bytes: &[u8]| -> Result<()> {
        crc = crate::checksum::crc32c_append(crc, bytes);
        out.write_all(bytes).map_err(write_err)
    };
    put(MAGIC)?;
    put(&VERSION.to_le_bytes())?;
    put(&(names.len() as u32).to_le_bytes())?;
    let mut piece = Vec::new();
    for name in &names {
        let file = storage
            .open(name, OpenMode::Existing)
            .map_err(io_error("open", name))?;
        let len = file.len().map_err(io_error("read", name))?;
        put(&(name.len() as u32).to_le_bytes())?;
        put(name.as_bytes())?;
        put(&len.to_le_bytes())?;
        let mut at = 0;
        while at < len {
            piece.resize((len - at).min(PIECE as u64) as usize, 0);
            file.read_at(at, &mut piece)
                .map_err(io_error("read", name))?;
            put(&piece)?;
            at += piece.len() as u64;
        }
    }
    out.write_all(&crc.to_le_bytes()).map_err(write_err)?;
    out.flush().map_err(write_err)
}

/// Unpacks an archive into the empty `dest` as its bytes arrive ([`Unpacker::push`]), then
/// commits it ([`Unpacker::finish`]).
///
/// Each file is written under a `.tmp` name as its bytes come; nothing takes its own name until
/// the whole archive is in and its checksum holds. Then the files are renamed, the manifest
/// last: until it exists the destination holds no database, so an import that stops anywhere
/// (bad bytes, a failed write, a dropped download, a crash) leaves none. An unpacker dropped
/// unfinished removes what it wrote; after a crash the next open removes the `.tmp` files.
/// The destination's lock is held throughout, so no database opens half of it.
pub(crate) struct Unpacker<'a> {
    dest: &'a dyn Storage,
    _lock: Box<dyn Send + Sync>,
    /// CRC32C of every byte consumed before the trailer.
    crc: u32,
    /// Bytes consumed: where the next byte sits in the archive, for error messages.
    at: u64,
    /// A field being gathered across pushes.
    field: Vec<u8>,
    step: Step,
    /// Files still to come after the current one.
    files_left: u32,
    /// Files written under their `.tmp` names, in order.
    written: Vec<String>,
    manifest: Option<Vec<u8>>,
    committed: bool,
}

/// Where an [`Unpacker`] is in the archive.
enum Step {
    Magic,
    Header,
    NameLength,
    Name(usize),
    Size(String),
    Data {
        name: String,
        sink: Sink,
        left: u64,
    },
    Checksum,
    Done,
    /// A version this build cannot parse: the rest is only checksummed, so that the error says
    /// `UnsupportedFormat` for a genuine newer archive and `Corrupt` for a damaged one.
    /// `tail` holds the last (up to) four bytes seen, the candidate checksum.
    Unsupported {
        version: u32,
        tail: Vec<u8>,
    },
}

/// Where a file's bytes go.
enum Sink {
    Manifest(Vec<u8>),
    File {
        file: Box<dyn StorageFile>,
        written: u64,
    },
}

impl<'a> Unpacker<'a> {
    /// Takes `dest`'s lock and checks that it is empty (`Error::InvalidArgument` otherwise).
    pub(crate) fn new(dest: &'a dyn Storage) -> Result<Unpacker<'a>> {
        let lock = super::lock_empty(dest, "import")?;
        Ok(Unpacker {
            dest,
            _lock: lock,
            crc: 0,
            at: 0,
            field: Vec::new(),
            step: Step::Magic,
            files_left: 0,
            written: Vec::new(),
            manifest: None,
            committed: false,
        })
    }

    /// Takes the next bytes of the archive, writing what they complete. Damage found so far is
    /// `Error::Corrupt` (damage inside a file's bytes shows at [`Unpacker::finish`], by the
    /// checksum); after an error the unpacker is spent: drop it.
    pub(crate) fn push(&mut self, mut input: &[u8]) -> Result<()> {
        while !input.is_empty() {
            self.step(&mut input)?;
        }
        Ok(())
    }

    /// Checks that the archive was whole and sound, then gives its files their names, the
    /// manifest last.
    pub(crate) fn finish(mut self) -> Result<()> {
        match std::mem::replace(&mut self.step, Step::Done) {
            Step::Done => {}
            Step::Unsupported { version, tail } => {
                let stored = <[u8; 4]>::try_from(tail.as_slice())
                    .ok()
                    .map(u32::from_le_bytes);
                return Err(if stored == Some(self.crc) {
                    Error::UnsupportedFormat {
                        file: NAME.to_owned(),
                        found: version,
                        supported: VERSION,
                    }
                } else {
                    self.corrupt_at(self.at, "checksum mismatch (truncated or damaged archive)")
                });
            }
            _ => {
                return Err(self.corrupt_at(
                    self.at,
                    "the archive ends early (truncated or damaged archive)",
                ))
            }
        }
        let Some(manifest) = self.manifest.take() else {
            return Err(self.corrupt_at(8, "the archive holds no MANIFEST"));
        };
        for name in &self.written {
            self.dest
                .rename(&tmp_name(name), name)
                .map_err(io_error("rename", name))?;
        }
        write_file(self.dest, manifest::NAME, &manifest)?;
        self.dest
            .sync_dir()
            .map_err(io_error("sync", &self.dest.location()))?;
        self.committed = true;
        Ok(())
    }

    /// Consumes some of `input`: a field's bytes, or a file's.
    fn step(&mut self, input: &mut &[u8]) -> Result<()> {
        match &mut self.step {
            Step::Data { .. } => self.data(input),
            Step::Unsupported { tail, .. } => {
                // Everything but the last four bytes seen is under the checksum.
                tail.extend_from_slice(input);
                let covered = tail.len().saturating_sub(4);
                self.crc = crate::checksum::crc32c_append(self.crc, &tail[..covered]);
                tail.drain(..covered);
                self.at += input.len() as u64;
                *input = &[];
                Ok(())
            }
            Step::Done => Err(self.corrupt_at(self.at, "bytes after the archive's checksum")),
            Step::Magic => self.field(input, 8, Self::magic),
            Step::Header => self.field(input, 8, Self::header),
            Step::NameLength => self.field(input, 4, Self::name_length),
            Step::Name(len) => {
                let len = *len;
                self.field(input, len, Self::name)
            }
            Step::Size(_) => self.field(input, 8, Self::size),
            Step::Checksum => self.field(input, 4, Self::checksum),
        }
    }

    /// Gathers a field of `len` bytes across pushes, then hands it to `then` with its offset.
    fn field(
        &mut self,
        input: &mut &[u8],
        len: usize,
        then: fn(&mut Self, Vec<u8>, u64) -> Result<()>,
    ) -> Result<()> {
        let take = (len - self.field.len()).min(input.len());
        self.field.extend_from_slice(&input[..take]);
        *input = &input[take..];
        if self.field.len() < len {
            return Ok(());
        }
        let field = std::mem::take(&mut self.field);
        let at = self.at;
        self.at += len as u64;
        if !matches!(self.step, Step::Checksum) {
            self.crc = crate::checksum::crc32c_append(self.crc, &field);
        }
        then(self, field, at)
    }

    fn magic(&mut self, field: Vec<u8>, at: u64) -> Result<()> {
        if field != MAGIC {
            return Err(self.corrupt_at(at, "not a Grape Vector DB archive (bad magic)"));
        }
        self.step = Step::Header;
        Ok(())
    }

    fn header(&mut self, field: Vec<u8>, _at: u64) -> Result<()> {
        let version = u32_at(&field, 0);
        self.files_left = u32_at(&field, 4);
        self.step = if version > VERSION {
            Step::Unsupported {
                version,
                tail: Vec::new(),
            }
        } else {
            self.next_file()
        };
        Ok(())
    }

    /// The step after a file (or the header): the next file's name, or the checksum.
    fn next_file(&mut self) -> Step {
        if self.files_left == 0 {
            return Step::Checksum;
        }
        self.files_left -= 1;
        Step::NameLength
    }

    fn name_length(&mut self, field: Vec<u8>, at: u64) -> Result<()> {
        let len = u32_at(&field, 0) as usize;
        if !(1..=MAX_NAME).contains(&len) {
            return Err(self.corrupt_at(at, format!("a file name of {len} bytes")));
        }
        self.step = Step::Name(len);
        Ok(())
    }

    fn name(&mut self, field: Vec<u8>, at: u64) -> Result<()> {
        let name =
            String::from_utf8(field).map_err(|_| self.corrupt_at(at, "file name is not UTF-8"))?;
        // Only a database's own files: never a path, a `LOCK` or anything else.
        if !is_database_file(&name) {
            return Err(self.corrupt_at(at, format!("{name:?} is not a database file name")));
        }
        if self.written.contains(&name) || (name == manifest::NAME && self.manifest.is_some()) {
            return Err(self.corrupt_at(at, format!("{name} is in the archive twice")));
        }
        self.step = Step::Size(name);
        Ok(())
    }

    fn size(&mut self, field: Vec<u8>, at: u64) -> Result<()> {
        let Step::Size(name) = std::mem::replace(&mut self.step, Step::Done) else {
            unreachable!("size follows a name");
        };
        let left = u64::from_le_bytes(field.try_into().expect("8 bytes"));
        let sink = if name == manifest::NAME {
            if left > MAX_MANIFEST {
                return Err(self.corrupt_at(at, format!("a MANIFEST of {left} bytes")));
            }
            Sink::Manifest(Vec::with_capacity(left as usize))
        } else {
            let tmp = tmp_name(&name);
            // Recorded before it exists, so that a failed import removes it whatever happens.
            self.written.push(name.clone());
            let file = self
                .dest
                .open(&tmp, OpenMode::CreateIfMissing)
                .map_err(io_error("create", &tmp))?;
            Sink::File { file, written: 0 }
        };
        self.step = Step::Data { name, sink, left };
        self.end_of_data()
    }

    /// A file's bytes, straight to its `.tmp` file (or the manifest's buffer).
    fn data(&mut self, input: &mut &[u8]) -> Result<()> {
        let Step::Data { name, sink, left } = &mut self.step else {
            unreachable!("data steps only");
        };
        let take = (*left).min(input.len() as u64) as usize;
        let (bytes, rest) = input.split_at(take);
        match sink {
            Sink::Manifest(buffer) => buffer.extend_from_slice(bytes),
            Sink::File { file, written } => {
                file.write_at(*written, bytes)
                    .map_err(io_error("write", &tmp_name(name)))?;
                *written += take as u64;
            }
        }
        *left -= take as u64;
        self.crc = crate::checksum::crc32c_append(self.crc, bytes);
        self.at += take as u64;
        *input = rest;
        self.end_of_data()
    }

    /// After a file's last byte: the manifest kept for the end, any other file synced (its
    /// bytes durable before the manifest may name it).
    fn end_of_data(&mut self) -> Result<()> {
        if !matches!(self.step, Step::Data { left: 0, .. }) {
            return Ok(());
        }
        let Step::Data { name, sink, .. } = std::mem::replace(&mut self.step, Step::Done) else {
            unreachable!("checked above");
        };
        match sink {
            Sink::Manifest(buffer) => self.manifest = Some(buffer),
            Sink::File { file, .. } => file.sync().map_err(io_error("sync", &tmp_name(&name)))?,
        }
        self.step = self.next_file();
        Ok(())
    }

    fn checksum(&mut self, field: Vec<u8>, at: u64) -> Result<()> {
        if u32_at(&field, 0) != self.crc {
            return Err(self.corrupt_at(at, "checksum mismatch (truncated or damaged archive)"));
        }
        self.step = Step::Done;
        Ok(())
    }

    /// Damage at byte `offset` of the archive.
    fn corrupt_at(&self, offset: u64, detail: impl Into<String>) -> Error {
        Error::Corrupt {
            file: NAME.to_owned(),
            offset,
            detail: detail.into(),
        }
    }
}

impl Drop for Unpacker<'_> {
    /// An import that did not finish leaves nothing: the manifest goes first (so no half
    /// database is ever named), then every file written. Best effort: what a failing storage
    /// keeps, the next open removes (no manifest names it).
    fn drop(&mut self) {
        if self.committed {
            return;
        }
        // The file being written is closed first: some systems refuse to remove an open file.
        self.step = Step::Done;
        let _ = self.dest.remove(manifest::NAME);
        let _ = self.dest.remove(&tmp_name(manifest::NAME));
        for name in &self.written {
            let _ = self.dest.remove(&tmp_name(name));
            let _ = self.dest.remove(name);
        }
    }
}

/// Unpacks the whole `archive` into the empty `dest` (see [`Unpacker`]).
pub(crate) fn unpack(archive: &[u8], dest: &dyn Storage) -> Result<()> {
    let mut unpacker = Unpacker::new(dest)?;
    unpacker.push(archive)?;
    unpacker.finish()
}

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes"))
}

fn tmp_name(name: &str) -> String {
    format!("{name}.tmp")
}

/// Through a temporary name, synced before the rename, so a file under its own name is complete.
fn write_file(dest: &dyn Storage, name: &str, data: &[u8]) -> Result<()> {
    let tmp = tmp_name(name);
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
    use crate::persist::codec;
    use crate::storage::MemoryStorage;

    const LOG: &str = "wal-0000000000000001.log";
    const SEGMENT: &str = "seg-0000000000000001.seg";

    fn sample() -> MemoryStorage {
        let s = MemoryStorage::new();
        for (name, bytes) in [
            ("MANIFEST", &b"m"[..]),
            (LOG, b"log bytes"),
            (SEGMENT, &[7u8; 3000][..]),
        ] {
            s.open(name, OpenMode::CreateIfMissing)
                .unwrap()
                .write_at(0, bytes)
                .unwrap();
        }
        s.open("wal-0000000000000002.log", OpenMode::CreateIfMissing)
            .unwrap();
        s
    }

    fn packed(s: &dyn Storage) -> Vec<u8> {
        let mut out = Vec::new();
        pack(s, &mut out).unwrap();
        out
    }

    /// What `dest` holds, name and bytes.
    fn contents(dest: &dyn Storage) -> Vec<(String, Vec<u8>)> {
        let names = dest.list().unwrap();
        names
            .into_iter()
            .map(|n| {
                let bytes = dest.read_all(&n).unwrap().to_vec();
                (n, bytes)
            })
            .collect()
    }

    /// The archive pushed in pieces of `piece` bytes.
    fn unpack_in_pieces(archive: &[u8], piece: usize, dest: &dyn Storage) -> Result<()> {
        let mut unpacker = Unpacker::new(dest)?;
        for chunk in archive.chunks(piece) {
            unpacker.push(chunk)?;
        }
        unpacker.finish()
    }

    #[test]
    fn round_trip_in_any_pieces() {
        let source = sample();
        let archive = packed(&source);
        let whole = MemoryStorage::new();
        unpack(&archive, &whole).unwrap();
        assert_eq!(contents(&whole), contents(&source));
        assert_eq!(whole.list().unwrap().len(), 4, "the empty log too");
        for piece in [1, 2, 3, 5, 7, 16, 100, 1000, 4096] {
            let dest = MemoryStorage::new();
            unpack_in_pieces(&archive, piece, &dest).unwrap();
            assert_eq!(contents(&dest), contents(&source), "pieces of {piece}");
        }
        assert!(
            matches!(unpack(&archive, &whole), Err(Error::InvalidArgument(_))),
            "not empty"
        );
    }

    #[test]
    fn damage_anywhere_is_refused_and_leaves_nothing() {
        let archive = packed(&sample());
        for cut in 0..archive.len() {
            let dest = MemoryStorage::new();
            let err = unpack_in_pieces(&archive[..cut], 7, &dest).unwrap_err();
            assert!(matches!(err, Error::Corrupt { .. }), "cut at {cut}: {err}");
            assert!(dest.list().unwrap().is_empty(), "cut at {cut}");
        }
        for at in 0..archive.len() {
            for bit in [0, 3, 7] {
                let mut flipped = archive.clone();
                flipped[at] ^= 1 << bit;
                let dest = MemoryStorage::new();
                let err = unpack_in_pieces(&flipped, 1000, &dest).unwrap_err();
                assert!(
                    matches!(err, Error::Corrupt { .. }),
                    "bit {bit} of byte {at}: {err}"
                );
                assert!(dest.list().unwrap().is_empty(), "bit {bit} of byte {at}");
            }
        }
        let mut longer = archive.clone();
        longer.push(0);
        let err = unpack(&longer, &MemoryStorage::new()).unwrap_err();
        assert!(
            err.to_string().contains("after the archive's checksum"),
            "{err}"
        );
    }

    /// A newer version with a sound checksum is reported as such; damaged, as damage.
    #[test]
    fn a_newer_version_is_unsupported_not_corrupt() {
        let mut newer = packed(&sample());
        newer[8] = 9;
        let body = newer.len() - 4;
        let crc = codec::crc(&newer[..body]);
        newer[body..].copy_from_slice(&crc.to_le_bytes());
        for piece in [1, 3, newer.len()] {
            let err = unpack_in_pieces(&newer, piece, &MemoryStorage::new()).unwrap_err();
            assert!(
                matches!(err, Error::UnsupportedFormat { found: 9, .. }),
                "pieces of {piece}: {err}"
            );
        }
        newer[body] ^= 1;
        let err = unpack(&newer, &MemoryStorage::new()).unwrap_err();
        assert!(matches!(err, Error::Corrupt { .. }), "{err}");
    }

    /// An archive of `files` (name, bytes) as `pack` would write it, without its checks.
    fn archive_of(files: &[(&str, &[u8])]) -> Vec<u8> {
        let mut out = MAGIC.to_vec();
        codec::put_u32(&mut out, VERSION);
        codec::put_u32(&mut out, files.len() as u32);
        for (name, data) in files {
            codec::put_u32(&mut out, name.len() as u32);
            out.extend_from_slice(name.as_bytes());
            codec::put_u64(&mut out, data.len() as u64);
            out.extend_from_slice(data);
        }
        let crc = codec::crc(&out);
        codec::put_u32(&mut out, crc);
        out
    }

    #[test]
    fn only_database_files_once_each_with_a_manifest() {
        for name in [
            "LOCK",
            "../x",
            ".hidden",
            "seg-1.seg",
            "notes.txt",
            "MANIFEST.tmp",
        ] {
            let archive = archive_of(&[("MANIFEST", b"m"), (name, b"x")]);
            let err = unpack(&archive, &MemoryStorage::new()).unwrap_err();
            assert!(
                err.to_string().contains("not a database file"),
                "{name}: {err}"
            );
        }
        let twice = archive_of(&[("MANIFEST", b"m"), (LOG, b"a"), (LOG, b"b")]);
        let err = unpack(&twice, &MemoryStorage::new()).unwrap_err();
        assert!(err.to_string().contains("twice"), "{err}");
        let dest = MemoryStorage::new();
        let err = unpack(&archive_of(&[(LOG, b"a")]), &dest).unwrap_err();
        assert!(err.to_string().contains("no MANIFEST"), "{err}");
        assert!(dest.list().unwrap().is_empty());
    }

    #[test]
    fn under_the_destination_lock() {
        let dest = MemoryStorage::new();
        let _held = dest.lock().unwrap();
        assert!(matches!(
            unpack(&packed(&sample()), &dest),
            Err(Error::AlreadyOpen(_))
        ));
        assert!(dest.list().unwrap().is_empty());
    }
}
