//! [`Bytes`]: an immutable, cheaply clonable view of bytes that may live in a memory map (like
//! tantivy's `OwnedBytes`). The engine uses segment sections in place through it, and the
//! storage backends hand them out; it does no I/O itself, so the engine depends on this module
//! and not on the storage layer.

use std::fmt;
use std::io;
use std::ops::{Deref, Range};
use std::sync::Arc;

/// An immutable, cheaply clonable view of bytes that may live in a memory map.
///
/// ```
/// use grape_vector_db::storage::Bytes;
/// let b = Bytes::from(vec![1u8, 2, 3, 4]);
/// assert_eq!(&*b.slice(1..3), &[2, 3]);
/// ```
#[derive(Clone)]
pub struct Bytes {
    owner: Arc<dyn AsRef<[u8]> + Send + Sync>,
    range: Range<usize>,
}

impl Bytes {
    /// Wraps anything that owns bytes (a `Vec<u8>`, a memory map).
    ///
    /// ```
    /// let b = grape_vector_db::storage::Bytes::new(vec![7u8; 4]);
    /// assert_eq!(b.len(), 4);
    /// ```
    pub fn new(owner: impl AsRef<[u8]> + Send + Sync + 'static) -> Self {
        let len = owner.as_ref().len();
        Bytes {
            owner: Arc::new(owner),
            range: 0..len,
        }
    }

    /// A sub-range, sharing the same owner. Panics if out of bounds (callers check lengths
    /// against the file first).
    ///
    /// ```
    /// let b = grape_vector_db::storage::Bytes::from(vec![1u8, 2, 3]);
    /// assert_eq!(b.slice(2..3).len(), 1);
    /// ```
    pub fn slice(&self, range: Range<usize>) -> Bytes {
        assert!(range.start <= range.end && range.end <= self.range.len());
        Bytes {
            owner: self.owner.clone(),
            range: self.range.start + range.start..self.range.start + range.end,
        }
    }
}

impl Bytes {
    /// `len` bytes filled by `fill` (typically a file read) in a buffer that starts on a
    /// 64-byte boundary, as a memory map does. Backends that read whole files into memory use
    /// it so a segment's vectors, laid out on cache lines, stay on cache lines: misaligned, each
    /// vector spans one more line and graph search is measurably slower.
    ///
    /// ```
    /// let b = grape_vector_db::storage::Bytes::read_aligned(100, |buf| {
    ///     buf.fill(7);
    ///     Ok(())
    /// })?;
    /// assert_eq!((b.len(), b[99], b.as_ptr() as usize % 64), (100, 7, 0));
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn read_aligned(
        len: usize,
        fill: impl FnOnce(&mut [u8]) -> io::Result<()>,
    ) -> io::Result<Bytes> {
        let mut buf = AlignedBuf {
            lines: vec![CacheLine([0; 64]); len.div_ceil(64)],
            len,
        };
        fill(&mut bytemuck::cast_slice_mut(&mut buf.lines)[..len])?;
        Ok(Bytes::new(buf))
    }

    /// A 64-byte-aligned copy of `data` (see [`Bytes::read_aligned`]).
    ///
    /// ```
    /// let b = grape_vector_db::storage::Bytes::copy_aligned(&[1, 2, 3]);
    /// assert_eq!((&*b, b.as_ptr() as usize % 64), (&[1u8, 2, 3][..], 0));
    /// ```
    pub fn copy_aligned(data: &[u8]) -> Bytes {
        Self::read_aligned(data.len(), |buf| {
            buf.copy_from_slice(data);
            Ok(())
        })
        .expect("copying cannot fail")
    }
}

/// One cache line of bytes: a `Vec` of these is 64-byte aligned.
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
#[repr(C, align(64))]
struct CacheLine([u8; 64]);

/// The owner behind [`Bytes::read_aligned`].
struct AlignedBuf {
    lines: Vec<CacheLine>,
    len: usize,
}

impl AsRef<[u8]> for AlignedBuf {
    fn as_ref(&self) -> &[u8] {
        &bytemuck::cast_slice(&self.lines)[..self.len]
    }
}

impl From<Vec<u8>> for Bytes {
    fn from(v: Vec<u8>) -> Self {
        Bytes::new(v)
    }
}

impl Deref for Bytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &(*self.owner).as_ref()[self.range.clone()]
    }
}

impl fmt::Debug for Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Bytes({} bytes)", self.len())
    }
}
