//! Native backend: a directory of ordinary files.

use crate::storage::OpenMode;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};

use super::owner::{self, OwnerHost, LOCK_FILE};
use super::{Bytes, Storage, StorageFile, StorageSpace};
use crate::error::{Error, Result};

/// A database directory on the local file system. Immutable files are memory-mapped by
/// [`Storage::read_all`], so vectors are used in place.
///
/// ```
/// use grape_vector_db::storage::{FsStorage, OpenMode, Storage};
/// let dir = std::env::temp_dir().join(format!("grape-doc-fs-{}", std::process::id()));
/// let fs = FsStorage::create(&dir)?;
/// fs.open("a", OpenMode::CreateIfMissing)?.write_at(0, b"abc")?;
/// assert_eq!(&*fs.read_all("a")?, b"abc");
/// # std::fs::remove_dir_all(&dir).unwrap();
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct FsStorage {
    dir: PathBuf,
}

impl FsStorage {
    /// Uses `dir`, creating it (and its parents) if needed.
    ///
    /// ```
    /// let dir = std::env::temp_dir().join(format!("grape-doc-create-{}", std::process::id()));
    /// grape_vector_db::storage::FsStorage::create(&dir)?;
    /// assert!(dir.is_dir());
    /// # std::fs::remove_dir_all(&dir).unwrap();
    /// # Ok::<(), grape_vector_db::Error>(())
    /// ```
    pub fn create(dir: impl AsRef<Path>) -> Result<Self> {
        let dir = dir.as_ref().to_path_buf();
        let io_err = |op: &'static str, path: &Path| {
            let file = path.display().to_string();
            move |e: io::Error| Error::io(op, file, e)
        };
        // The directories this call creates: their names are durable only once each parent
        // is synced, or a power loss could take the whole database directory away.
        let created: Vec<&Path> = dir.ancestors().take_while(|p| !p.exists()).collect();
        fs::create_dir_all(&dir).map_err(io_err("create directory", &dir))?;
        for made in created {
            if let Some(parent) = made.parent().filter(|p| !p.as_os_str().is_empty()) {
                sync_dir(parent).map_err(io_err("sync directory", parent))?;
            }
        }
        Ok(FsStorage { dir })
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
}

/// A held directory: the flock on `LOCK` (its file), and the owner record if claimed.
struct DirLock {
    owner: Option<(NativeHost, owner::Claim)>,
    _file: File,
}

impl Drop for DirLock {
    fn drop(&mut self) {
        // Before the flock goes: another native process may claim the record once it has it.
        if let Some((host, claim)) = &self.owner {
            owner::release(host, claim);
        }
    }
}

/// The owner protocol's operations on the files of a directory.
struct NativeHost(PathBuf);

impl OwnerHost for NativeHost {
    fn write(&self, name: &str, content: &[u8]) -> io::Result<()> {
        fs::write(self.0.join(name), content)
    }
    fn link(&self, from: &str, to: &str) -> io::Result<()> {
        fs::hard_link(self.0.join(from), self.0.join(to))
    }
    fn read(&self, name: &str) -> io::Result<Vec<u8>> {
        fs::read(self.0.join(name))
    }
    fn rename(&self, from: &str, to: &str) -> io::Result<()> {
        fs::rename(self.0.join(from), self.0.join(to))
    }
    fn remove(&self, name: &str) -> io::Result<()> {
        match fs::remove_file(self.0.join(name)) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            other => other,
        }
    }
    fn pid(&self) -> u32 {
        std::process::id()
    }
    fn started(&self) -> Option<u64> {
        None
    }
    fn holds_flock(&self) -> bool {
        true
    }
    #[cfg(unix)]
    fn host(&self) -> String {
        let mut name = [0u8; 256];
        // SAFETY: `gethostname` writes at most `name.len()` bytes into the buffer we own; a
        // name that fills it is cut, and the NUL search below stays within the buffer.
        // Exercised by every native open (the owner-record test in `tests/durability.rs`).
        if unsafe { libc::gethostname(name.as_mut_ptr().cast(), name.len()) } != 0 {
            return "localhost".to_owned();
        }
        let end = name.iter().position(|&b| b == 0).unwrap_or(name.len());
        String::from_utf8_lossy(&name[..end]).into_owned()
    }
    #[cfg(not(unix))]
    fn host(&self) -> String {
        "localhost".to_owned()
    }
    #[cfg(unix)]
    fn alive(&self, pid: u32) -> bool {
        let Ok(pid) = libc::pid_t::try_from(pid) else {
            return true;
        };
        // SAFETY: signal 0 sends nothing; it only checks that the process exists (EPERM: it
        // exists, owned by someone else). Exercised by the stale-record tests.
        let sent = unsafe { libc::kill(pid, 0) };
        sent == 0 || io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
    }
    #[cfg(not(unix))]
    fn alive(&self, _: u32) -> bool {
        true
    }
}

/// Makes the entries of directory `dir` durable (on Windows, renames are durable without it).
fn sync_dir(dir: &Path) -> io::Result<()> {
    #[cfg(unix)]
    File::open(dir)?.sync_all()?;
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

struct FsFile(File);

#[cfg(unix)]
impl StorageFile for FsFile {
    fn len(&self) -> io::Result<u64> {
        Ok(self.0.metadata()?.len())
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        std::os::unix::fs::FileExt::read_exact_at(&self.0, buf, offset)
    }

    fn write_at(&self, offset: u64, data: &[u8]) -> io::Result<()> {
        std::os::unix::fs::FileExt::write_all_at(&self.0, data, offset)
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.0.set_len(len)
    }

    fn sync(&self) -> io::Result<()> {
        self.0.sync_data()
    }

    fn advise_random_reads(&self) {
        #[cfg(any(target_os = "linux", target_os = "android", target_os = "freebsd"))]
        {
            use std::os::fd::AsRawFd;
            // SAFETY: the descriptor is open for the whole call; the advice changes no memory
            // of this process. Exercised by every open of a directory with vectors on disk
            // (tests/quantization.rs, benches/memory.rs).
            unsafe { libc::posix_fadvise(self.0.as_raw_fd(), 0, 0, libc::POSIX_FADV_RANDOM) };
        }
    }
}

#[cfg(windows)]
impl StorageFile for FsFile {
    fn len(&self) -> io::Result<u64> {
        Ok(self.0.metadata()?.len())
    }

    fn read_at(&self, mut offset: u64, mut buf: &mut [u8]) -> io::Result<()> {
        use std::os::windows::fs::FileExt;
        while !buf.is_empty() {
            match self.0.seek_read(buf, offset)? {
                0 => return Err(io::ErrorKind::UnexpectedEof.into()),
                n => {
                    buf = &mut buf[n..];
                    offset += n as u64;
                }
            }
        }
        Ok(())
    }

    fn write_at(&self, mut offset: u64, mut data: &[u8]) -> io::Result<()> {
        use std::os::windows::fs::FileExt;
        while !data.is_empty() {
            let n = self.0.seek_write(data, offset)?;
            data = &data[n..];
            offset += n as u64;
        }
        Ok(())
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.0.set_len(len)
    }

    fn sync(&self) -> io::Result<()> {
        self.0.sync_data()
    }
}

impl Storage for FsStorage {
    fn open(&self, name: &str, mode: OpenMode) -> io::Result<Box<dyn StorageFile>> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(mode == OpenMode::CreateIfMissing)
            .truncate(false)
            .open(self.path(name))?;
        Ok(Box::new(FsFile(file)))
    }

    fn maps_files(&self) -> bool {
        true
    }

    fn read_all(&self, name: &str) -> io::Result<Bytes> {
        let file = File::open(self.path(name))?;
        if file.metadata()?.len() == 0 {
            // Mapping an empty file fails on some systems; there is nothing to map anyway.
            return Ok(Bytes::from(Vec::new()));
        }
        // SAFETY: `read_all` is only used for immutable files (segments, the manifest), which
        // this crate never writes after creating them, and the directory is under our exclusive
        // lock. Another program changing them behind our back is outside the contract, as with
        // every database that maps its files. Exercised by every reopen test.
        // Not populated: a database that keeps its vectors on disk never touches their pages.
        let map = unsafe { memmap2::MmapOptions::new().map(&file)? };
        Ok(Bytes::new(map))
    }

    fn list(&self) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in fs::read_dir(&self.dir)? {
            let entry = entry?;
            if entry.file_type()?.is_file() {
                if let Some(name) = entry.file_name().to_str() {
                    if !name.starts_with(LOCK_FILE) {
                        names.push(name.to_owned());
                    }
                }
            }
        }
        names.sort_unstable();
        Ok(names)
    }

    fn remove(&self, name: &str) -> io::Result<()> {
        match fs::remove_file(self.path(name)) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            other => other,
        }
    }

    fn rename(&self, from: &str, to: &str) -> io::Result<()> {
        fs::rename(self.path(from), self.path(to))
    }

    fn sync_dir(&self) -> io::Result<()> {
        sync_dir(&self.dir)
    }

    fn lock(&self) -> Result<Box<dyn Send + Sync>> {
        let path = self.path(LOCK_FILE);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| Error::io("open lock file", path.display().to_string(), e))?;
        // An advisory lock on an open file description: a second open in this process or any
        // other fails, and the OS drops it when the file is closed or the process dies.
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(Error::AlreadyOpen(self.location()))
            }
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(Error::io("lock", path.display().to_string(), e))
            }
        }
        // The owner record, for Node processes, which cannot see `flock`. A file system
        // without hard links cannot hold one; Node refuses such a directory (its claim fails),
        // so natively the flock alone is enough there.
        let host = NativeHost(self.dir.clone());
        let owner = match owner::claim(&host, &self.location()) {
            Ok(claim) => Some((host, claim)),
            Err(e @ Error::AlreadyOpen(_)) => return Err(e),
            Err(_) => None,
        };
        Ok(Box::new(DirLock { owner, _file: file }))
    }

    fn location(&self) -> String {
        self.dir.display().to_string()
    }

    #[cfg(unix)]
    fn space(&self) -> io::Result<Option<StorageSpace>> {
        use std::os::unix::ffi::OsStrExt;
        let path = std::ffi::CString::new(self.dir.as_os_str().as_bytes())
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        // SAFETY: `statvfs` only writes into the zeroed struct we pass, and reads the path, a
        // NUL-terminated string that outlives the call. Exercised by the disk health tests.
        let stat = unsafe {
            let mut stat: libc::statvfs = std::mem::zeroed();
            if libc::statvfs(path.as_ptr(), &mut stat) != 0 {
                return Err(io::Error::last_os_error());
            }
            stat
        };
        let frsize = stat.f_frsize as u64;
        Ok(Some(StorageSpace {
            // Blocks available to unprivileged users: what a write can rely on.
            free: stat.f_bavail as u64 * frsize,
            total: stat.f_blocks as u64 * frsize,
        }))
    }
}
