//! The one error type of the crate.
//!
//! Every fallible call returns [`Result<T>`](Result). Messages say what was wrong and what to do
//! about it, in the style of a compiler diagnostic, because they are often read by an app developer
//! who did not write the failing call.

use std::fmt;
use std::io;
use std::sync::Arc;
use std::time::Duration;

/// Result alias used by every fallible function of the crate.
///
/// ```
/// fn check(dim: usize) -> grape_vector_db::Result<usize> {
///     Ok(dim)
/// }
/// assert_eq!(check(3).unwrap(), 3);
/// ```
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in a call to the database.
///
/// The enum is `#[non_exhaustive]`: later versions add variants (storage, lifecycle) without a
/// breaking change, so match with a wildcard arm.
///
/// ```
/// use grape_vector_db::{Distance, EmbeddedConfig, EmbeddedVectorDB, Error, Point};
///
/// let db = EmbeddedVectorDB::open(EmbeddedConfig::builder(3).build()?)?;
/// let err = db.upsert(vec![Point::new(1, vec![1.0, 2.0])]).unwrap_err();
/// assert!(matches!(err, Error::DimensionMismatch { expected: 3, found: 2 }));
/// # Ok::<(), Error>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Error {
    /// A vector's length differs from the database's dimension.
    DimensionMismatch {
        /// The dimension the database was opened with.
        expected: usize,
        /// The length of the vector that was passed.
        found: usize,
    },
    /// A vector component is NaN or infinite.
    NonFiniteComponent {
        /// Index of the first offending component.
        index: usize,
        /// Its value.
        value: f32,
    },
    /// A vector of all zeros (or an empty one) was given to a cosine database, where it has no
    /// direction and so no similarity to anything.
    ZeroVector,
    /// A filter could not be understood (Qdrant's filter JSON, with the path to the bad part).
    MalformedFilter(String),
    /// A point, search request or other argument could not be understood (wrong shape or type).
    MalformedRequest(String),
    /// A request is well formed but one of its values is out of range.
    InvalidArgument(String),
    /// A point id that is neither an unsigned integer nor a UUID.
    InvalidPointId(String),
    /// The payload of a point is not a JSON object (Qdrant's payloads are always objects).
    PayloadNotObject,
    /// A point that does not exist was named where one is required.
    UnknownId(String),
    /// A configured limit would be exceeded.
    LimitExceeded {
        /// Which limit (`max_points`, `max_search_limit`, ...).
        limit: &'static str,
        /// The configured maximum.
        max: usize,
        /// What the request asked for.
        requested: usize,
    },
    /// The configuration is invalid, or does not match the database on disk.
    InvalidConfig(String),
    /// An operating-system or storage error while reading or writing a file.
    Io {
        /// What was being done (`"write"`, `"sync"`, ...).
        op: &'static str,
        /// The file (or directory) concerned.
        file: String,
        /// The underlying error, also given by `std::error::Error::source`.
        cause: IoCause,
    },
    /// The disk (or the browser's storage quota) is full. Nothing was half-written: the write
    /// that hit the limit was not applied, and what was acknowledged before is intact.
    StorageFull {
        /// What was being done.
        op: &'static str,
        /// The file concerned.
        file: String,
        /// The underlying error, also given by `std::error::Error::source`.
        cause: IoCause,
    },
    /// A file of the database is damaged: a checksum, length or magic number is wrong.
    Corrupt {
        /// The damaged file.
        file: String,
        /// Byte offset of the damaged part.
        offset: u64,
        /// What is wrong.
        detail: String,
    },
    /// A file was written by a format version this build does not know.
    UnsupportedFormat {
        /// The file.
        file: String,
        /// The version found in it.
        found: u32,
        /// The newest version this build reads.
        supported: u32,
    },
    /// The database directory is already open (in this process or another one).
    AlreadyOpen(String),
    /// A write failed in a way that leaves the log's end unknown; the database refuses further
    /// writes until it is reopened (which recovers to the last complete record).
    WriterPoisoned(String),
    /// Opening took longer than `EmbeddedConfig::startup_timeout`; the directory lock was
    /// released and nothing was changed.
    StartupTimeout {
        /// The phase that ended past the limit (`"segments"`, `"wal_replay"`, ...).
        phase: &'static str,
        /// Time spent opening.
        elapsed: Duration,
        /// The configured limit.
        limit: Duration,
    },
    /// The database was opened read-only (another tab or worker writes it): writes are refused.
    ReadOnly(String),
    /// `close` has started: the call was not run.
    ShuttingDown,
    /// The database is closed: the call was not run.
    Closed,
    /// `close` waited `shutdown_timeout` and calls were still running; the database stays in
    /// `Shutting` (refusing new calls) and `close` can be called again.
    ShutdownTimeout {
        /// How long close waited.
        waited: Duration,
        /// The calls still in flight, by kind (`"1 upsert, 2 search"`).
        still_running: String,
    },
    /// An upsert would take the database past `max_memory_mb`; nothing was stored.
    MemoryBudgetExceeded {
        /// The configured budget in bytes.
        budget: usize,
        /// Bytes held before the upsert.
        used: usize,
        /// Bytes the upsert would add.
        needed: usize,
    },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::DimensionMismatch { expected, found } => write!(
                f,
                "vector has {found} components but the database holds {expected}-dimensional \
                 vectors; embed with the same model the database was created for"
            ),
            Error::NonFiniteComponent { index, value } => write!(
                f,
                "vector component {index} is {value}; every component must be a finite number"
            ),
            Error::ZeroVector => write!(
                f,
                "vector is all zeros, which has no direction for cosine similarity; \
                 use a non-zero vector or a Dot/Euclid database"
            ),
            Error::MalformedFilter(msg) => write!(f, "malformed filter: {msg}"),
            Error::MalformedRequest(msg) => write!(f, "malformed request: {msg}"),
            Error::InvalidArgument(msg) => write!(f, "invalid argument: {msg}"),
            Error::InvalidPointId(msg) => write!(
                f,
                "invalid point id {msg}: ids are unsigned integers or UUID strings (derive \
                 one from any other string key with idFromString in JS, PointId::from_name in \
                 Rust)"
            ),
            Error::PayloadNotObject => write!(
                f,
                "payload must be a JSON object such as {{\"color\": \"red\"}}"
            ),
            Error::UnknownId(id) => write!(f, "no point with id {id}"),
            Error::LimitExceeded {
                limit,
                max,
                requested,
            } => write!(
                f,
                "{limit} is {max} but the request needs {requested}; \
                 raise it in EmbeddedConfig if this is intended"
            ),
            Error::InvalidConfig(msg) => write!(f, "invalid configuration: {msg}"),
            Error::Io { op, file, cause } => write!(f, "could not {op} {file}: {cause}"),
            Error::StorageFull { op, file, cause } => write!(
                f,
                "could not {op} {file}: storage is full ({cause}); the write was not applied: \
                 free space (delete points and compact, or other files) or raise the quota"
            ),
            Error::Corrupt {
                file,
                offset,
                detail,
            } => write!(
                f,
                "{file} is damaged at byte {offset}: {detail}; restore it from a snapshot"
            ),
            Error::UnsupportedFormat {
                file,
                found,
                supported,
            } => write!(
                f,
                "{file} has format version {found}, but this build reads versions up to \
                 {supported}; open it with a newer grape-vector-db"
            ),
            Error::AlreadyOpen(dir) => write!(
                f,
                "{dir} is already open in this or another process; close it there first, \
                 or share one EmbeddedVectorDB handle (it is cheap to clone)"
            ),
            Error::WriterPoisoned(why) => write!(
                f,
                "the write-ahead log could not be restored after a failed write ({why}); \
                 writes are refused until the database is reopened"
            ),
            Error::StartupTimeout {
                phase,
                elapsed,
                limit,
            } => write!(
                f,
                "opening took {elapsed:?} (past the startup_timeout of {limit:?}) by the end of \
                 the {phase} phase; the database was left unchanged and unlocked"
            ),
            Error::ReadOnly(why) => write!(
                f,
                "the database is open read-only ({why}); writes are refused: close the writer \
                 and reopen without readOnly to write"
            ),
            Error::ShuttingDown => write!(f, "the database is shutting down; the call was not run"),
            Error::Closed => write!(f, "the database is closed; open it again to use it"),
            Error::ShutdownTimeout {
                waited,
                still_running,
            } => write!(
                f,
                "close waited {waited:?} and calls were still running ({still_running}); new \
                 calls are refused, call close again to finish"
            ),
            Error::MemoryBudgetExceeded {
                budget,
                used,
                needed,
            } => write!(
                f,
                "the upsert needs {needed} more bytes but {used} of the max_memory_mb budget of \
                 {budget} bytes are in use; nothing was stored (delete points, compact, or raise \
                 max_memory_mb)"
            ),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io { cause, .. } | Error::StorageFull { cause, .. } => Some(cause.error()),
            _ => None,
        }
    }
}

/// The operating system's (or a storage backend's) own error behind [`Error::Io`] and
/// [`Error::StorageFull`], shared so that [`Error`] stays `Clone`.
///
/// ```
/// use std::error::Error as _;
/// let err = grape_vector_db::Error::io("read", "seg-1.seg", std::io::ErrorKind::NotFound.into());
/// let grape_vector_db::Error::Io { cause, .. } = &err else { unreachable!() };
/// assert_eq!(cause.kind(), std::io::ErrorKind::NotFound);
/// assert!(err.source().is_some());
/// ```
#[derive(Debug, Clone)]
pub struct IoCause(Arc<io::Error>);

impl IoCause {
    /// The kind of the underlying error.
    pub fn kind(&self) -> io::ErrorKind {
        self.0.kind()
    }

    /// The underlying error.
    pub fn error(&self) -> &io::Error {
        &self.0
    }
}

impl From<io::Error> for IoCause {
    fn from(e: io::Error) -> Self {
        IoCause(Arc::new(e))
    }
}

/// Equal when kind and message are: `io::Error` itself cannot be compared.
impl PartialEq for IoCause {
    fn eq(&self, other: &Self) -> bool {
        self.kind() == other.kind() && self.0.to_string() == other.0.to_string()
    }
}

impl fmt::Display for IoCause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl Error {
    /// The error of a failed I/O call `op` on `file`: [`Error::StorageFull`] when the disk or
    /// quota is full, [`Error::Io`] otherwise. For storage backends written outside this crate.
    ///
    /// ```
    /// use std::io::{Error as IoError, ErrorKind};
    /// use grape_vector_db::Error;
    /// let full = Error::io("write", "wal-1.log", IoError::from(ErrorKind::StorageFull));
    /// assert_eq!(full.code(), "StorageFull");
    /// assert_eq!(Error::io("sync", "dir", IoError::other("EIO")).code(), "Io");
    /// ```
    pub fn io(op: &'static str, file: impl Into<String>, err: io::Error) -> Error {
        let file = file.into();
        match err.kind() {
            io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded => Error::StorageFull {
                op,
                file,
                cause: err.into(),
            },
            _ => Error::Io {
                op,
                file,
                cause: err.into(),
            },
        }
    }

    /// A short, stable, machine-readable name of the variant (used as the `code` of JS errors).
    ///
    /// ```
    /// assert_eq!(grape_vector_db::Error::ZeroVector.code(), "ZeroVector");
    /// ```
    pub fn code(&self) -> &'static str {
        match self {
            Error::DimensionMismatch { .. } => "DimensionMismatch",
            Error::NonFiniteComponent { .. } => "NonFiniteComponent",
            Error::ZeroVector => "ZeroVector",
            Error::MalformedFilter(_) => "MalformedFilter",
            Error::MalformedRequest(_) => "MalformedRequest",
            Error::InvalidArgument(_) => "InvalidArgument",
            Error::InvalidPointId(_) => "InvalidPointId",
            Error::PayloadNotObject => "PayloadNotObject",
            Error::UnknownId(_) => "UnknownId",
            Error::LimitExceeded { .. } => "LimitExceeded",
            Error::InvalidConfig(_) => "InvalidConfig",
            Error::Io { .. } => "Io",
            Error::StorageFull { .. } => "StorageFull",
            Error::Corrupt { .. } => "Corrupt",
            Error::UnsupportedFormat { .. } => "UnsupportedFormat",
            Error::AlreadyOpen(_) => "AlreadyOpen",
            Error::WriterPoisoned(_) => "WriterPoisoned",
            Error::StartupTimeout { .. } => "StartupTimeout",
            Error::ReadOnly(_) => "ReadOnly",
            Error::ShuttingDown => "ShuttingDown",
            Error::Closed => "Closed",
            Error::ShutdownTimeout { .. } => "ShutdownTimeout",
            Error::MemoryBudgetExceeded { .. } => "MemoryBudgetExceeded",
        }
    }
}
