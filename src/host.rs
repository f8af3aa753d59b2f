// SPDX-License-Identifier: GPL-2.0

//! Host build of dm-remap's pure logic.
//!
//! The kernel module compiles `src/logic/` into itself; this crate compiles the
//! very same files for the host so that `cargo test` checks them and host tools
//! share them. [`HostEnv`] stands in for the kernel's memory and RCU.

#![no_std]

extern crate std;

pub mod logic;

use core::alloc::Layout;
use core::ptr::NonNull;
use std::sync::RwLock;

static RCU: RwLock<()> = RwLock::new(());

std::thread_local! {
    static READ_GUARDS: core::cell::RefCell<std::vec::Vec<std::sync::RwLockReadGuard<'static, ()>>> =
        const { core::cell::RefCell::new(std::vec::Vec::new()) };
}

/// The host environment of the remap table: the global allocator, and a
/// read-write lock as RCU (readers share it; a grace period takes it
/// exclusively once, which waits for every reader that started before).
pub struct HostEnv;

std::thread_local! {
    static ALLOC_BUDGET: core::cell::Cell<Option<usize>> = const { core::cell::Cell::new(None) };
}

/// Makes this thread's allocations through [`HostEnv`] fail after `n` more
/// succeed (`None`: never), to enumerate out-of-memory paths in tests.
pub fn set_alloc_budget(n: Option<usize>) {
    ALLOC_BUDGET.with(|c| c.set(n));
}

/// Whether this thread's allocation budget refuses the next allocation
/// (and counts it down when not).
fn refused() -> bool {
    ALLOC_BUDGET.with(|c| match c.get() {
        Some(0) => true,
        Some(n) => {
            c.set(Some(n - 1));
            false
        }
        None => false,
    })
}

/// The layout [`HostEnv`] gives an allocation in pages: page-aligned.
fn page_layout(size: usize) -> Option<Layout> {
    Layout::from_size_align(size, logic::mem::PAGE_BYTES).ok()
}

// SAFETY: The global allocator returns zeroed memory of the layout (a
// page-aligned one for `alloc_pages_zeroed`) and takes it back; the write
// lock is granted only after every read guard taken before it has been
// released.
#[allow(unsafe_code)]
unsafe impl logic::mem::Env for HostEnv {
    fn alloc_zeroed(layout: Layout) -> Option<NonNull<u8>> {
        if layout.size() == 0 || refused() {
            return None;
        }
        // SAFETY: The layout has a non-zero size.
        NonNull::new(unsafe { std::alloc::alloc_zeroed(layout) })
    }

    unsafe fn free(ptr: NonNull<u8>, layout: Layout) {
        // SAFETY: The caller passes back what `alloc_zeroed(layout)` returned.
        unsafe { std::alloc::dealloc(ptr.as_ptr(), layout) }
    }

    fn alloc_pages_zeroed(size: usize) -> Option<NonNull<u8>> {
        let layout = page_layout(size)?;
        if size == 0 || refused() {
            return None;
        }
        // SAFETY: The layout has a non-zero size.
        NonNull::new(unsafe { std::alloc::alloc_zeroed(layout) })
    }

    unsafe fn free_pages(ptr: NonNull<u8>, size: usize) {
        if let Some(layout) = page_layout(size) {
            // SAFETY: The caller passes back what `alloc_pages_zeroed(size)`
            // returned, allocated with this layout.
            unsafe { std::alloc::dealloc(ptr.as_ptr(), layout) }
        }
    }

    fn synchronize() {
        drop(RCU.write().unwrap_or_else(|e| e.into_inner()));
    }

    fn read_lock() {
        let g = RCU.read().unwrap_or_else(|e| e.into_inner());
        READ_GUARDS.with(|v| v.borrow_mut().push(g));
    }

    fn read_unlock() {
        READ_GUARDS.with(|v| drop(v.borrow_mut().pop()));
    }
}
