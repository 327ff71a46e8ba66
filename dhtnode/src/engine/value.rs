//! A record's value: one heap allocation holding a `u32` length, the record's `u64` version
//! (docs/protocol.md §6.11; 0 for a write without one) and then the bytes, owned through a thin
//! (8-byte) pointer. The version costs 8 bytes a record, in the allocation it already has.
//!
//! Why not `Box<[u8]>`: its pointer is 16 bytes (address and length), and every slot of the hash
//! table pays for it, filled or not. Keeping the length in the allocation instead saves about 13
//! bytes per record at the table's usual load, roughly 8% of a 100-byte record's memory, which is
//! what the memory target against Redis needs (docs/benchmarks.md).

use std::alloc::{alloc, dealloc, handle_alloc_error, Layout};
use std::ptr::NonNull;

const LEN_BYTES: usize = 4;
const VERSION_BYTES: usize = 8;
/// Where the value's bytes start in the allocation.
const HEADER_BYTES: usize = LEN_BYTES + VERSION_BYTES;

pub struct Value {
    /// Points at `LEN_BYTES` of little-endian length, `VERSION_BYTES` of little-endian version,
    /// then that many bytes.
    ptr: NonNull<u8>,
}

// SAFETY: a Value owns its allocation exclusively, like a Box<[u8]>; nothing else aliases it.
unsafe impl Send for Value {}
// SAFETY: shared access only reads the allocation.
unsafe impl Sync for Value {}

fn layout_for(len: usize) -> Layout {
    // Values are bounded far below 4 GiB (max_value_bytes ≤ 16 MiB), so this cannot overflow.
    Layout::from_size_align(HEADER_BYTES + len, 1).expect("value layout within isize::MAX")
}

impl Value {
    pub fn new(bytes: &[u8], version: u64) -> Value {
        let len = u32::try_from(bytes.len()).expect("values are bounded below 4 GiB");
        let layout = layout_for(bytes.len());
        // SAFETY: the layout is at least LEN_BYTES (never zero-sized).
        let raw = unsafe { alloc(layout) };
        let Some(ptr) = NonNull::new(raw) else {
            handle_alloc_error(layout)
        };
        // SAFETY: the allocation holds HEADER_BYTES + len bytes; the copies stay inside it, and
        // the source does not overlap a fresh allocation.
        unsafe {
            std::ptr::copy_nonoverlapping(len.to_le_bytes().as_ptr(), ptr.as_ptr(), LEN_BYTES);
            std::ptr::copy_nonoverlapping(
                bytes.as_ptr(),
                ptr.as_ptr().add(HEADER_BYTES),
                bytes.len(),
            );
        }
        let mut value = Value { ptr };
        value.set_version(version);
        value
    }

    pub fn len(&self) -> usize {
        let mut len = [0u8; LEN_BYTES];
        // SAFETY: every Value starts with LEN_BYTES of length, written by `new`.
        unsafe { std::ptr::copy_nonoverlapping(self.ptr.as_ptr(), len.as_mut_ptr(), LEN_BYTES) };
        u32::from_le_bytes(len) as usize
    }

    /// The version of the write that stored this value.
    pub fn version(&self) -> u64 {
        let mut version = [0u8; VERSION_BYTES];
        // SAFETY: every Value holds VERSION_BYTES of version after its length, written by `new`.
        unsafe {
            std::ptr::copy_nonoverlapping(
                self.ptr.as_ptr().add(LEN_BYTES),
                version.as_mut_ptr(),
                VERSION_BYTES,
            )
        };
        u64::from_le_bytes(version)
    }

    fn set_version(&mut self, version: u64) {
        // SAFETY: the version field lies inside the allocation; `&mut self` is exclusive.
        unsafe {
            std::ptr::copy_nonoverlapping(
                version.to_le_bytes().as_ptr(),
                self.ptr.as_ptr().add(LEN_BYTES),
                VERSION_BYTES,
            )
        };
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn as_bytes(&self) -> &[u8] {
        // SAFETY: `len` bytes follow the length field inside the allocation, initialised by
        // `new` or `overwrite`, and live as long as `self`.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr().add(HEADER_BYTES), self.len()) }
    }

    /// Replaces the bytes and the version in place; `bytes` must have the current length (the
    /// common overwrite of a fixed-size record then costs no allocation).
    pub fn overwrite(&mut self, bytes: &[u8], version: u64) {
        assert_eq!(bytes.len(), self.len(), "overwrite keeps the length");
        // SAFETY: same length as the allocation's value area; `&mut self` is exclusive, and a
        // borrowed `bytes` cannot point into this allocation while we hold `&mut self`.
        unsafe {
            std::ptr::copy_nonoverlapping(
                bytes.as_ptr(),
                self.ptr.as_ptr().add(HEADER_BYTES),
                bytes.len(),
            )
        };
        self.set_version(version);
    }
}

impl Drop for Value {
    fn drop(&mut self) {
        // SAFETY: allocated by `new` with exactly this layout (the length never changes).
        unsafe { dealloc(self.ptr.as_ptr(), layout_for(self.len())) };
    }
}

impl std::ops::Deref for Value {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        self.as_bytes()
    }
}

impl std::fmt::Debug for Value {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Value")
            .field("len", &self.len())
            .field("version", &self.version())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_keep_their_bytes_and_length() {
        for len in [0usize, 1, 3, 4, 100, 65_536] {
            let bytes: Vec<u8> = (0..len).map(|i| (i * 7) as u8).collect();
            let value = Value::new(&bytes, len as u64 * 3);
            assert_eq!(value.len(), len);
            assert_eq!(value.version(), len as u64 * 3);
            assert_eq!(value.as_bytes(), &bytes[..]);
            assert_eq!(&*value, &bytes[..]);
        }
        assert_eq!(std::mem::size_of::<Value>(), 8);
        assert_eq!(std::mem::size_of::<Option<Value>>(), 8);
    }

    #[test]
    fn overwrite_in_place_keeps_the_length() {
        let mut value = Value::new(b"hello", u64::MAX);
        value.overwrite(b"world", 7);
        assert_eq!(value.as_bytes(), b"world");
        assert_eq!(value.version(), 7);
    }

    #[test]
    #[should_panic(expected = "overwrite keeps the length")]
    fn overwrite_with_another_length_is_refused() {
        Value::new(b"abc", 0).overwrite(b"abcd", 0);
    }
}
