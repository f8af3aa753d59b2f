// SPDX-License-Identifier: GPL-2.0

//! The kernel's memory and RCU for the pure remap table ([`Env`]).

use super::bindings as b;
use crate::logic::mem::Env;
use core::alloc::Layout;
use core::ptr::NonNull;

/// Memory from `kvzalloc` and `vzalloc` in no-I/O scope, RCU from the
/// kernel.
pub(crate) struct KernelEnv;

// SAFETY: `kvzalloc` returns zeroed memory aligned to at least 8 bytes (we
// refuse stricter alignments), `vzalloc` zeroed page-aligned memory, and
// `kvfree` takes back either; `synchronize_rcu` waits for all pre-existing
// RCU read-side critical sections, which is what `read_lock`/`read_unlock`
// delimit.
unsafe impl Env for KernelEnv {
    fn alloc_zeroed(layout: Layout) -> Option<NonNull<u8>> {
        if layout.align() > 8 || layout.size() == 0 {
            return None;
        }
        // SAFETY: Any size may be asked for; failure returns null.
        NonNull::new(unsafe { b::dmr_kvzalloc_noio(layout.size()) }.cast::<u8>())
    }

    unsafe fn free(ptr: NonNull<u8>, _layout: Layout) {
        // SAFETY: `ptr` came from `dmr_kvzalloc_noio` (caller's contract).
        unsafe { b::dmr_kvfree(ptr.as_ptr().cast()) }
    }

    fn alloc_pages_zeroed(size: usize) -> Option<NonNull<u8>> {
        if size == 0 {
            return None;
        }
        // SAFETY: Any size may be asked for; failure returns null.
        NonNull::new(unsafe { b::dmr_vzalloc_noio(size) }.cast::<u8>())
    }

    unsafe fn free_pages(ptr: NonNull<u8>, _size: usize) {
        // SAFETY: `ptr` came from `dmr_vzalloc_noio` (caller's contract);
        // `kvfree` frees vmalloc'd memory too.
        unsafe { b::dmr_kvfree(ptr.as_ptr().cast()) }
    }

    fn cond_resched() {
        // SAFETY: Writers call it in process context, outside read-side
        // sections and spinlocks (the trait's contract).
        unsafe { b::dmr_cond_resched() }
    }

    fn synchronize() {
        // SAFETY: Called only from process context (messages, destructor).
        unsafe { b::synchronize_rcu() }
    }

    #[inline]
    fn read_lock() {
        // SAFETY: Paired with `read_unlock` by the table.
        unsafe { b::dmr_rcu_read_lock() }
    }

    #[inline]
    fn read_unlock() {
        // SAFETY: Ends the section `read_lock` began.
        unsafe { b::dmr_rcu_read_unlock() }
    }
}
