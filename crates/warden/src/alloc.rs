//! The binaries' global allocator ([`HostAllocator`]): mimalloc for small blocks, the system's
//! allocator for large ones.
//!
//! Why mimalloc: the ledger's writer thread frees the rows and records the run path allocated,
//! and glibc's malloc serialises each such free on the allocating thread's arena lock — seen
//! under `perf` as `futex` wake-ups on the run path (23,107 for 30,000 sequential runs with the
//! ledger; 2,364 with mimalloc). Why not mimalloc alone: it grows a large block by copying it
//! where glibc remaps it (`mremap`), so a buffer that doubles towards a read bound holds the old
//! and the new copy at once, and its freed copies stay resident for a while — a hostile 64 MiB
//! line on `warden mcp`'s standard input raised the peak by 2.4× the 16 MiB line bound instead
//! of under 1.5× (the e2e test `a_line_over_the_limit_is_dropped_unkept_and_the_connection_goes_on`).
//! Blocks of [`LARGE`] bytes and more are rare on the run path and stay the system's.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};

use mimalloc::MiMalloc;

/// Blocks this large or larger come from the system's allocator.
pub const LARGE: usize = 256 << 10;

/// mimalloc below [`LARGE`] bytes, the system's allocator from there (see the module docs).
///
/// A block is always freed by the allocator that made it: which one is decided by the block's
/// size, and `dealloc` and `realloc` are given the size it was allocated with.
#[derive(Debug, Default, Clone, Copy)]
pub struct HostAllocator;

/// Whether a block of `size` bytes belongs to the system's allocator.
fn large(size: usize) -> bool {
    size >= LARGE
}

// SAFETY: every method forwards to one of two sound allocators, chosen by the block's size,
// which `GlobalAlloc`'s contract makes the same at allocation and at release; a block that
// crosses `LARGE` in `realloc` is moved to the other allocator by allocate, copy, free.
unsafe impl GlobalAlloc for HostAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's contract (a non-zero size) is passed on unchanged.
        unsafe {
            if large(layout.size()) {
                System.alloc(layout)
            } else {
                MiMalloc.alloc(layout)
            }
        }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as `alloc`.
        unsafe {
            if large(layout.size()) {
                System.alloc_zeroed(layout)
            } else {
                MiMalloc.alloc_zeroed(layout)
            }
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` was allocated with `layout`'s size, so by the allocator chosen here.
        unsafe {
            if large(layout.size()) {
                System.dealloc(ptr, layout);
            } else {
                MiMalloc.dealloc(ptr, layout);
            }
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: `ptr` belongs to the allocator `layout.size()` chooses; a move between the
        // two allocates `new_size` bytes with the same alignment (valid by `realloc`'s
        // contract), copies the bytes both sizes hold and frees the old block with its layout.
        unsafe {
            match (large(layout.size()), large(new_size)) {
                (true, true) => System.realloc(ptr, layout, new_size),
                (false, false) => MiMalloc.realloc(ptr, layout, new_size),
                _ => {
                    let new_layout = Layout::from_size_align_unchecked(new_size, layout.align());
                    let new = self.alloc(new_layout);
                    if !new.is_null() {
                        std::ptr::copy_nonoverlapping(ptr, new, layout.size().min(new_size));
                        self.dealloc(ptr, layout);
                    }
                    new
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A block grown and shrunk across [`LARGE`] keeps its bytes, and each allocator frees
    /// only its own (a mismatch would abort the test process).
    #[test]
    fn a_block_keeps_its_bytes_across_the_two_allocators() {
        let a = HostAllocator;
        let small = Layout::from_size_align(1000, 8).unwrap();
        // SAFETY: each pointer is used with the layout it was allocated or reallocated with.
        unsafe {
            let p = a.alloc(small);
            assert!(!p.is_null());
            for i in 0..1000 {
                *p.add(i) = (i % 251) as u8;
            }
            let big = a.realloc(p, small, LARGE * 2);
            assert!(!big.is_null());
            assert!((0..1000).all(|i| *big.add(i) == (i % 251) as u8));
            let big_layout = Layout::from_size_align(LARGE * 2, 8).unwrap();
            let bigger = a.realloc(big, big_layout, LARGE * 4);
            assert!((0..1000).all(|i| *bigger.add(i) == (i % 251) as u8));
            let bigger_layout = Layout::from_size_align(LARGE * 4, 8).unwrap();
            let back = a.realloc(bigger, bigger_layout, 500);
            assert!((0..500).all(|i| *back.add(i) == (i % 251) as u8));
            a.dealloc(back, Layout::from_size_align(500, 8).unwrap());
            let z = a.alloc_zeroed(big_layout);
            assert!((0..LARGE * 2).step_by(4096).all(|i| *z.add(i) == 0));
            a.dealloc(z, big_layout);
        }
    }
}
