//! The process's allocator: mimalloc.
//!
//! Healing and classifying make and drop many small strings and maps per message; mimalloc's
//! thread-local free lists halve what glibc's allocator costs there (see `bench`). The `mimalloc`
//! crate's allocator asks for every block through `mi_malloc_aligned`, whose general path costs
//! about 100 instructions even for the alignment every block has anyway; this one uses
//! `mi_malloc` for those, about 660 fewer instructions per classified message (callgrind).
//!
//! mimalloc 3 keeps freed pages for a second before it gives them back to the system; the healer
//! frees a batch's memory as the next one arrives, so that delay added up to 8–10 MiB of peak
//! resident memory at 500 messages per batch. [`return_freed_memory_promptly`] sets it to 100 ms:
//! peak memory at batch 500 fell from 45–55 to 37–45 MiB for no measurable loss of speed (`bench`).
//! At 10 ms (mimalloc 2's delay) it fell a little further, but pages were given back and faulted
//! in again all the time: the classification loop took 80,000 page faults per 210,000 messages,
//! against 220 at a second and 7,000 at 100 ms.

use libmimalloc_sys as mi;
use std::alloc::{GlobalAlloc, Layout};
use std::ffi::c_void;

/// Every mimalloc block is aligned to at least this (its size classes are multiples of a word).
const WORD_ALIGNED: usize = std::mem::size_of::<usize>();

/// mimalloc as the global allocator.
pub struct Mimalloc;

/// `mi_option_purge_delay` in the `mi_option_e` enum of the mimalloc 3 sources that
/// `libmimalloc-sys` builds (`c_src/mimalloc/v3/include/mimalloc.h`); its Rust bindings predate it.
const PURGE_DELAY_OPTION: mi::mi_option_t = 15;

/// The purge delay, in milliseconds, unless `MIMALLOC_PURGE_DELAY` sets one.
const PURGE_DELAY_MS: std::ffi::c_long = 100;

/// Give freed memory back to the system after [`PURGE_DELAY_MS`] instead of mimalloc 3's second,
/// unless the environment's `MIMALLOC_PURGE_DELAY` says otherwise. Call it first thing in `main`.
pub fn return_freed_memory_promptly() {
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
        // SAFETY: a plain FFI call; mimalloc options may be set at any time.
        unsafe { mi::mi_option_set(PURGE_DELAY_OPTION, PURGE_DELAY_MS) }
    }
}

// SAFETY: every block comes from mimalloc with at least the layout's size and alignment (plain
// `mi_malloc` only where the alignment is at most a word, which every mimalloc block has), and
// every block is given back to mimalloc.
unsafe impl GlobalAlloc for Mimalloc {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: plain FFI calls; mimalloc returns null when it is out of memory.
        unsafe {
            if layout.align() <= WORD_ALIGNED {
                mi::mi_malloc(layout.size()).cast()
            } else {
                mi::mi_malloc_aligned(layout.size(), layout.align()).cast()
            }
        }
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as in `alloc`.
        unsafe {
            if layout.align() <= WORD_ALIGNED {
                mi::mi_zalloc(layout.size()).cast()
            } else {
                mi::mi_zalloc_aligned(layout.size(), layout.align()).cast()
            }
        }
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, _layout: Layout) {
        // SAFETY: `ptr` was allocated by this allocator, i.e. by mimalloc.
        unsafe { mi::mi_free(ptr.cast::<c_void>()) }
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: `ptr` was allocated by mimalloc with `layout`'s alignment, which is kept.
        unsafe {
            if layout.align() <= WORD_ALIGNED {
                mi::mi_realloc(ptr.cast::<c_void>(), new_size).cast()
            } else {
                mi::mi_realloc_aligned(ptr.cast::<c_void>(), new_size, layout.align()).cast()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn freed_memory_goes_back_after_a_tenth_of_a_second_instead_of_a_second() {
        // SAFETY: plain FFI calls reading an option.
        let purge_delay = || unsafe { mi::mi_option_get(PURGE_DELAY_OPTION) };
        if std::env::var_os("MIMALLOC_PURGE_DELAY").is_some() {
            return;
        }
        // mimalloc 3's default purge delay: the option number is the one meant.
        assert_eq!(purge_delay(), 1000);
        return_freed_memory_promptly();
        assert_eq!(purge_delay(), PURGE_DELAY_MS);
    }

    #[test]
    fn blocks_have_their_layouts_alignment_and_keep_their_bytes() {
        for align in [1, 2, 4, 8, 16, 32, 64, 4096] {
            for size in [1, 7, 8, 24, 100, 1 << 20] {
                let layout = Layout::from_size_align(size, align).unwrap();
                // SAFETY: sizes are non-zero; each block is written within its size and freed
                // once with its layout.
                unsafe {
                    let block = Mimalloc.alloc(layout);
                    assert!(!block.is_null());
                    assert_eq!(block as usize % align, 0, "size {size} align {align}");
                    block.write_bytes(0xAB, size);
                    let grown = Mimalloc.realloc(block, layout, size * 2);
                    assert_eq!(grown as usize % align, 0, "grown, align {align}");
                    assert_eq!(*grown.add(size - 1), 0xAB);
                    Mimalloc.dealloc(grown, Layout::from_size_align(size * 2, align).unwrap());
                    let zeroed = Mimalloc.alloc_zeroed(layout);
                    assert_eq!(zeroed as usize % align, 0);
                    assert!((0..size).all(|i| *zeroed.add(i) == 0));
                    Mimalloc.dealloc(zeroed, layout);
                }
            }
        }
    }
}
