//! Transparent huge pages for the node's heap: the records (one allocation per value) and the
//! shards' hash tables live in glibc's main heap, and a Get or Put at random keys touches three
//! of its cache lines that are rarely cached (the table's control bytes, its bucket, the value).
//! With 4 KiB pages each of those is also a TLB miss and a page walk; with 2 MiB pages the walk
//! mostly hits. `perf record` of the node at P=16 put 50% of its time on those three loads
//! (docs/benchmarks.md, "dht: the request hot path"), and huge pages for the heap raised P=16
//! throughput by about a fifth.
//!
//! glibc asks the kernel for huge pages only when told at start (`GLIBC_TUNABLES=
//! glibc.malloc.hugetlb=1`), and most systems (Debian's default) give them only to memory
//! advised with `madvise(MADV_HUGEPAGE)`. [`HugePageHeap`] does what that tunable does, from
//! inside the process: it wraps the system allocator, and whenever the heap's top (the program
//! break) has grown it advises the new part. [`init`] makes glibc grow the heap in large steps,
//! so that little of each step is touched before it is advised (a 2 MiB range already touched
//! in 4 KiB pages stays so). `transparent_hugepage/enabled = never` on the system turns it off;
//! memory of other threads' arenas and of large (`mmap`ed) allocations is left as it is.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

/// How much glibc adds to each growth of the heap (`M_TOP_PAD`; its default is 128 KiB): the
/// pages of a step that its first allocation touches before the step is advised stay small.
const HEAP_STEP_BYTES: i32 = 64 * 1024 * 1024;

/// The heap's top when it was last looked at; 0 before the first allocation.
static SEEN_TOP: AtomicUsize = AtomicUsize::new(0);

/// The global allocator of the `dhtnode` binary: the system allocator, advising the heap's
/// growth for huge pages.
pub struct HugePageHeap;

// SAFETY: every allocation is the system allocator's, unchanged; `advise_heap_growth` only
// reads the program break and advises address ranges, which changes no memory's contents.
unsafe impl GlobalAlloc for HugePageHeap {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's contract is the system allocator's.
        let ptr = unsafe { System.alloc(layout) };
        advise_heap_growth();
        ptr
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as for `alloc`.
        let ptr = unsafe { System.alloc_zeroed(layout) };
        advise_heap_growth();
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `alloc` above, i.e. from the system allocator.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: as for `dealloc`.
        let new = unsafe { System.realloc(ptr, layout, new_size) };
        advise_heap_growth();
        new
    }
}

/// Sets glibc's heap growth step ([`HEAP_STEP_BYTES`]). Called first thing in `main`.
pub fn init() {
    // SAFETY: mallopt only changes a malloc parameter; a refusal (0) leaves the default.
    unsafe { libc::mallopt(libc::M_TOP_PAD, HEAP_STEP_BYTES) };
}

/// Advises the part of the heap added since the last look for huge pages. Cheap when the heap
/// did not grow: `sbrk(0)` returns glibc's copy of the break, without a system call.
fn advise_heap_growth() {
    // SAFETY: sbrk(0) moves nothing; it returns the current program break.
    let top = unsafe { libc::sbrk(0) } as usize;
    let seen = SEEN_TOP.load(Ordering::Relaxed);
    if top == seen || top == usize::MAX {
        return;
    }
    if SEEN_TOP
        .compare_exchange(seen, top, Ordering::Relaxed, Ordering::Relaxed)
        .is_err()
    {
        // Another thread looked at the same moment; the next allocation advises what is left.
        return;
    }
    // The first look and a heap that shrank only note the top; a growth is advised.
    if seen == 0 || top < seen {
        return;
    }
    let start = seen & !4095;
    // SAFETY: madvise with MADV_HUGEPAGE changes how the kernel backs the range, never its
    // contents; [start, top) is the heap's own range, mapped by glibc's brk. An error (THP not
    // built into the kernel) leaves the pages as they were.
    unsafe { libc::madvise(start as *mut libc::c_void, top - start, libc::MADV_HUGEPAGE) };
}
