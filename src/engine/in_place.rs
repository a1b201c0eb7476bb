//! [`InPlace`]: a section of a segment used where it lies (in a memory map, or a buffer read
//! whole), so that opening copies nothing it does not have to.

use crate::bytes::Bytes;

/// A section of a segment used in place (graph layer 0, sketches, payload index lists) until a
/// write needs its own copy; decoded into an owned copy at once when the bytes are not aligned
/// for `T`.
pub(super) enum InPlace<T: bytemuck::Pod> {
    Mapped(Bytes),
    Owned(Vec<T>),
}

impl<T: bytemuck::Pod> InPlace<T> {
    /// `bytes` as `T`s: in place when aligned (a memory map and `Bytes::read_aligned` always
    /// are), else copied.
    pub fn new(bytes: Bytes) -> Self {
        if bytemuck::try_cast_slice::<u8, T>(&bytes).is_ok() {
            InPlace::Mapped(bytes)
        } else {
            let mut owned = vec![T::zeroed(); bytes.len() / std::mem::size_of::<T>()];
            let len = std::mem::size_of_val(owned.as_slice());
            bytemuck::cast_slice_mut::<T, u8>(&mut owned).copy_from_slice(&bytes[..len]);
            InPlace::Owned(owned)
        }
    }

    pub fn slice(&self) -> &[T] {
        match self {
            InPlace::Mapped(b) => bytemuck::cast_slice(b),
            InPlace::Owned(v) => v,
        }
    }

    /// The section as an owned, writable copy, taken on the first call. The copy has room for
    /// an eighth more: the write that needs it is usually the first of many that append, and
    /// growing a full copy at once would hold the section three times over for a moment (the
    /// original, the copy, the grown copy), which WebAssembly memory keeps for good.
    pub fn owned(&mut self) -> &mut Vec<T> {
        if let InPlace::Mapped(b) = self {
            let slice: &[T] = bytemuck::cast_slice(b);
            let mut owned = Vec::with_capacity(slice.len() + slice.len() / 8);
            owned.extend_from_slice(slice);
            *self = InPlace::Owned(owned);
        }
        match self {
            InPlace::Owned(v) => v,
            InPlace::Mapped(_) => unreachable!("converted above"),
        }
    }
}

/// Makes room in `v` for `additional` more, growing by an eighth (not doubling) when it is
/// full: the graph's lists grow a node at a time, and at a million nodes doubling would
/// reserve (and, in WebAssembly, keep) hundreds of MiB ahead of need.
pub(super) fn room_for<T>(v: &mut Vec<T>, additional: usize) {
    if v.len() + additional > v.capacity() {
        v.reserve_exact(additional.max(v.len() / 8));
    }
}
