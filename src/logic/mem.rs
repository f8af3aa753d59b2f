// SPDX-License-Identifier: GPL-2.0

//! What the remap table needs from its environment: memory and RCU.
//!
//! The kernel module implements [`Env`] with `kvzalloc`/`kvfree` and
//! `vzalloc` (no I/O recursion) and real RCU (`rcu_read_lock`,
//! `synchronize_rcu`); the host tests implement it with the global allocator
//! and a read-write lock whose write side stands in for a grace period.
//!
//! Two ways to allocate, for what each costs in the kernel:
//! - [`Env::alloc_zeroed`] (`kvzalloc`): kmalloc's size classes, powers of
//!   two up to a page ([`kmalloc_bytes`] counts it so). Above a page
//!   `kvzalloc` tries kmalloc first, which takes a power-of-two number of
//!   pages: meant for small objects and short-lived arrays.
//! - [`Env::alloc_pages_zeroed`] (`vzalloc`): whole pages
//!   ([`page_bytes`]), for large arrays that live long.

use core::alloc::Layout;
use core::marker::PhantomData;
use core::ptr::NonNull;

/// Bytes of a page, the unit of [`Env::alloc_pages_zeroed`].
pub const PAGE_BYTES: usize = 4096;

/// What an [`Env::alloc_zeroed`] of `size` bytes takes at most in the
/// kernel: a power of two, at least 8 bytes.
pub fn kmalloc_bytes(size: usize) -> usize {
    size.checked_next_power_of_two()
        .unwrap_or(usize::MAX)
        .max(8)
}

/// What an [`Env::alloc_pages_zeroed`] of `size` bytes takes: whole pages.
pub fn page_bytes(size: usize) -> usize {
    size.div_ceil(PAGE_BYTES).saturating_mul(PAGE_BYTES)
}

/// Memory and read-side protection for the lock-free table.
///
/// # Safety
///
/// Implementations must return zeroed memory of at least the layout's size
/// and alignment (or `None`) from [`Env::alloc_zeroed`], zeroed memory of at
/// least the size, aligned to 8 bytes, from [`Env::alloc_pages_zeroed`],
/// accept back exactly what they returned, and make [`Env::synchronize`]
/// return only after every read-side section that started before the call
/// has ended.
pub unsafe trait Env {
    /// Allocates zeroed memory; `None` when memory is short.
    fn alloc_zeroed(layout: Layout) -> Option<NonNull<u8>>;
    /// Frees memory from [`Env::alloc_zeroed`].
    ///
    /// # Safety
    ///
    /// `ptr` came from `alloc_zeroed(layout)` and is not used afterwards.
    unsafe fn free(ptr: NonNull<u8>, layout: Layout);
    /// Allocates `size` zeroed bytes in whole pages (`vzalloc`: no
    /// power-of-two rounding), for arrays above a page; `None` when memory
    /// is short or `size` is 0.
    #[cfg_attr(MODULE, allow(dead_code))]
    fn alloc_pages_zeroed(size: usize) -> Option<NonNull<u8>>;
    /// Frees memory from [`Env::alloc_pages_zeroed`].
    ///
    /// # Safety
    ///
    /// `ptr` came from `alloc_pages_zeroed(size)` and is not used
    /// afterwards.
    #[cfg_attr(MODULE, allow(dead_code))]
    unsafe fn free_pages(ptr: NonNull<u8>, size: usize);
    /// Waits for a grace period. May sleep; never called on the I/O path.
    fn synchronize();
    /// Enters a read-side critical section (`rcu_read_lock`).
    fn read_lock();
    /// Leaves it (`rcu_read_unlock`).
    fn read_unlock();
    /// Lets other tasks run if they are waiting (`cond_resched`): called
    /// by writers every so often in long loops, so that a kernel without
    /// preemption does not hold the CPU from I/O submitters for the length
    /// of a bulk message. Process context only, never under a spinlock or
    /// inside a read-side section.
    fn cond_resched() {}
}

/// Types for which all-zero bytes are a valid value.
///
/// # Safety
///
/// Zeroed memory must be a valid value of the type.
pub unsafe trait Zeroable {}
// SAFETY: Zero is a valid integer.
unsafe impl Zeroable for u8 {}
// SAFETY: Zero is a valid integer.
unsafe impl Zeroable for u32 {}
// SAFETY: Zero is a valid integer.
unsafe impl Zeroable for u64 {}
// SAFETY: Zero is a valid integer.
unsafe impl Zeroable for core::sync::atomic::AtomicU64 {}
// SAFETY: Zero is a valid pair of integers.
unsafe impl Zeroable for [u64; 2] {}
// SAFETY: Zero is a valid triple of integers.
unsafe impl Zeroable for [u64; 3] {}
// SAFETY: A null pointer is a valid `AtomicPtr`.
unsafe impl<T> Zeroable for core::sync::atomic::AtomicPtr<T> {}

/// A fixed-size, zero-initialised array from [`Env`], freed on drop.
pub struct RawArray<T: Zeroable, E: Env> {
    ptr: NonNull<T>,
    len: usize,
    _p: PhantomData<(T, E)>,
}

// SAFETY: `RawArray` owns its elements like a `Box<[T]>` does.
unsafe impl<T: Zeroable + Send, E: Env> Send for RawArray<T, E> {}
// SAFETY: As for `Send`; shared access only hands out `&T`.
unsafe impl<T: Zeroable + Sync, E: Env> Sync for RawArray<T, E> {}

impl<T: Zeroable, E: Env> RawArray<T, E> {
    /// `len` zeroed elements, or `None` when memory is short.
    pub fn new(len: usize) -> Option<Self> {
        let layout = Layout::array::<T>(len.max(1)).ok()?;
        let ptr = E::alloc_zeroed(layout)?.cast::<T>();
        Some(Self {
            ptr,
            len,
            _p: PhantomData,
        })
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the array has no elements.
    #[cfg(not(MODULE))]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl<T: Zeroable, E: Env> core::ops::Deref for RawArray<T, E> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        // SAFETY: `ptr` holds `len` initialised (zeroed, `Zeroable`) elements
        // owned by `self`.
        unsafe { core::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl<T: Zeroable, E: Env> core::ops::DerefMut for RawArray<T, E> {
    fn deref_mut(&mut self) -> &mut [T] {
        // SAFETY: As for `deref`, and `&mut self` is exclusive.
        unsafe { core::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }
}

impl<T: Zeroable, E: Env> Drop for RawArray<T, E> {
    fn drop(&mut self) {
        // Elements are plain data (integers, atomics): nothing to drop.
        if let Ok(layout) = Layout::array::<T>(self.len.max(1)) {
            // SAFETY: Allocated in `new` with this layout; dropped once.
            unsafe { E::free(self.ptr.cast(), layout) };
        }
    }
}
