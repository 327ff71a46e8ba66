//! A record's value: one heap allocation holding a `u32` length word, the record's `u64`
//! version when it has one (docs/protocol.md §6.11) and then the bytes, owned through a thin
//! (8-byte) pointer.
//!
//! Why not `Box<[u8]>`: its pointer is 16 bytes (address and length), and every slot of the hash
//! table pays for it, filled or not. Keeping the length in the allocation instead saves about 13
//! bytes per record at the table's usual load, roughly 8% of a 100-byte record's memory, which is
//! what the memory target against Redis needs (docs/benchmarks.md).
//!
//! Why the version is optional: a record written without a version (Put, PutBatch, Update, a
//! dump of before versions) has version 0, and storing those 8 bytes would cost every such
//! record 16 bytes at glibc's 16-byte granularity (a 100-byte value: a 112-byte chunk becomes
//! 128). So the top bit of the length word says whether a version follows; values are at most
//! 16 MiB, far below that bit.

use std::alloc::{alloc, dealloc, handle_alloc_error, Layout};
use std::ptr::NonNull;

const LEN_BYTES: usize = 4;
const VERSION_BYTES: usize = 8;
/// Set in the length word when a version follows it.
const HAS_VERSION: u32 = 1 << 31;

pub struct Value {
    /// Points at `LEN_BYTES` of little-endian length word (the length, and [`HAS_VERSION`]),
    /// then, with that bit, `VERSION_BYTES` of little-endian version, then the bytes.
    ptr: NonNull<u8>,
}

// SAFETY: a Value owns its allocation exclusively, like a Box<[u8]>; nothing else aliases it.
unsafe impl Send for Value {}
// SAFETY: shared access only reads the allocation.
unsafe impl Sync for Value {}

/// Bytes before the value's bytes: the length word, and the version if there is one.
const fn header_bytes(versioned: bool) -> usize {
    if versioned {
        LEN_BYTES + VERSION_BYTES
    } else {
        LEN_BYTES
    }
}

fn layout_for(len: usize, versioned: bool) -> Layout {
    // Values are bounded far below 2 GiB (max_value_bytes ≤ 16 MiB), so this cannot overflow.
    Layout::from_size_align(header_bytes(versioned) + len, 1)
        .expect("value layout within isize::MAX")
}

impl Value {
    /// Bytes of the allocation a value of `len` bytes takes (length word, version if not 0,
    /// bytes): what the memory benchmark probes the allocator with.
    pub const fn allocation_len(len: usize, version: u64) -> usize {
        header_bytes(version != 0) + len
    }

    pub fn new(bytes: &[u8], version: u64) -> Value {
        let len = u32::try_from(bytes.len())
            .ok()
            .filter(|len| len & HAS_VERSION == 0)
            .expect("values are bounded below 2 GiB");
        let versioned = version != 0;
        let word = if versioned { len | HAS_VERSION } else { len };
        let layout = layout_for(bytes.len(), versioned);
        // SAFETY: the layout is at least LEN_BYTES (never zero-sized).
        let raw = unsafe { alloc(layout) };
        let Some(ptr) = NonNull::new(raw) else {
            handle_alloc_error(layout)
        };
        let start = header_bytes(versioned);
        // SAFETY: the allocation holds header_bytes + len bytes; the copies stay inside it, and
        // the sources do not overlap a fresh allocation.
        unsafe {
            std::ptr::copy_nonoverlapping(word.to_le_bytes().as_ptr(), ptr.as_ptr(), LEN_BYTES);
            if versioned {
                std::ptr::copy_nonoverlapping(
                    version.to_le_bytes().as_ptr(),
                    ptr.as_ptr().add(LEN_BYTES),
                    VERSION_BYTES,
                );
            }
            std::ptr::copy_nonoverlapping(bytes.as_ptr(), ptr.as_ptr().add(start), bytes.len());
        }
        Value { ptr }
    }

    fn word(&self) -> u32 {
        let mut word = [0u8; LEN_BYTES];
        // SAFETY: every Value starts with LEN_BYTES of length word, written by `new`.
        unsafe { std::ptr::copy_nonoverlapping(self.ptr.as_ptr(), word.as_mut_ptr(), LEN_BYTES) };
        u32::from_le_bytes(word)
    }

    fn is_versioned(&self) -> bool {
        self.word() & HAS_VERSION != 0
    }

    pub fn len(&self) -> usize {
        (self.word() & !HAS_VERSION) as usize
    }

    /// The version of the write that stored this value (0: written without one).
    pub fn version(&self) -> u64 {
        if !self.is_versioned() {
            return 0;
        }
        let mut version = [0u8; VERSION_BYTES];
        // SAFETY: a versioned Value holds VERSION_BYTES of version after its length word.
        unsafe {
            std::ptr::copy_nonoverlapping(
                self.ptr.as_ptr().add(LEN_BYTES),
                version.as_mut_ptr(),
                VERSION_BYTES,
            )
        };
        u64::from_le_bytes(version)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Asks the CPU to start loading the value's first bytes (its header and the start of its
    /// bytes) into the cache: a walk over many values (a dump reading a shard) prefetches a few
    /// ahead, so that it does not wait for memory once per value. A hint; it changes nothing.
    #[inline]
    pub fn prefetch(&self) {
        super::prefetch::prefetch_line(self.ptr.as_ptr());
        super::prefetch::prefetch_line(self.ptr.as_ptr().wrapping_add(64));
    }

    pub fn as_bytes(&self) -> &[u8] {
        let start = header_bytes(self.is_versioned());
        // SAFETY: `len` bytes follow the header inside the allocation, initialised by `new` or
        // `overwrite`, and live as long as `self`.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr().add(start), self.len()) }
    }

    /// Whether [`overwrite`](Self::overwrite) can take `len` bytes of `version` in place: the
    /// same length, and a version where there is room for one (both 0, or both not).
    pub fn fits(&self, len: usize, version: u64) -> bool {
        self.len() == len && self.is_versioned() == (version != 0)
    }

    /// Replaces the bytes and the version in place; they must [`fit`](Self::fits) (the common
    /// overwrite of a fixed-size record then costs no allocation).
    pub fn overwrite(&mut self, bytes: &[u8], version: u64) {
        assert!(
            self.fits(bytes.len(), version),
            "overwrite keeps the layout"
        );
        let versioned = self.is_versioned();
        // SAFETY: the same layout as the allocation's; `&mut self` is exclusive, and a borrowed
        // `bytes` cannot point into this allocation while we hold `&mut self`.
        unsafe {
            if versioned {
                std::ptr::copy_nonoverlapping(
                    version.to_le_bytes().as_ptr(),
                    self.ptr.as_ptr().add(LEN_BYTES),
                    VERSION_BYTES,
                );
            }
            std::ptr::copy_nonoverlapping(
                bytes.as_ptr(),
                self.ptr.as_ptr().add(header_bytes(versioned)),
                bytes.len(),
            )
        };
    }
}

impl Drop for Value {
    fn drop(&mut self) {
        // SAFETY: allocated by `new` with exactly this layout (length and versioning never
        // change).
        unsafe {
            dealloc(
                self.ptr.as_ptr(),
                layout_for(self.len(), self.is_versioned()),
            )
        };
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
        assert!(value.fits(5, 7));
        assert!(!value.fits(5, 0), "no room to drop the version in place");
        value.overwrite(b"world", 7);
        assert_eq!(value.as_bytes(), b"world");
        assert_eq!(value.version(), 7);
        let mut plain = Value::new(b"hello", 0);
        assert!(!plain.fits(5, 1), "no room for a version");
        plain.overwrite(b"HELLO", 0);
        assert_eq!((plain.as_bytes(), plain.version()), (&b"HELLO"[..], 0));
    }

    #[test]
    fn a_version_costs_its_bytes_only_when_there_is_one() {
        assert_eq!(Value::allocation_len(100, 0), 104);
        assert_eq!(Value::allocation_len(100, 1), 112);
        let value = Value::new(&[7; 100], 0);
        assert_eq!((value.len(), value.version()), (100, 0));
    }

    #[test]
    #[should_panic(expected = "overwrite keeps the layout")]
    fn overwrite_with_another_length_is_refused() {
        Value::new(b"abc", 0).overwrite(b"abcd", 0);
    }
}
