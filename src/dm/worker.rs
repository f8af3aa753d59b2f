// SPDX-License-Identifier: GPL-2.0

//! The target's worker: an ordered workqueue that runs the error path and
//! the scanner in process context (`src/worker.c`), and the bios it owns.
//!
//! The work functions call back through two trampolines generic over
//! [`WorkerOps`], handed to the C side when the worker is created (the way
//! `TargetOps` is handed to device-mapper), so the target's code exports no
//! symbols of its own.

use super::bindings as b;
use super::bio::Bio;
use super::target::{from_callback, Target};
use core::ptr::NonNull;
use kernel::ffi::c_void;

/// One target's workqueue; destroyed on drop.
///
/// # Invariants
///
/// `0` was returned by `dmr_worker_create` and is destroyed only by `Drop`.
pub(crate) struct Worker(NonNull<b::dmr_worker>);

// SAFETY: The C side locks its bio list and workqueues are thread-safe.
unsafe impl Send for Worker {}
// SAFETY: See `Send`.
unsafe impl Sync for Worker {}

impl Worker {
    /// A worker whose work functions call back into `T`, the target `ti`'s
    /// private data.
    ///
    /// # Safety
    ///
    /// `ti` must stay valid, with its private data set to a `T`, whenever
    /// work of this worker runs: work is queued only after construction, and
    /// the worker is dropped before the private data is freed.
    pub(crate) unsafe fn new<T: WorkerOps>(ti: NonNull<b::dm_target>) -> Option<Self> {
        // SAFETY: `ti` is valid (caller); the name is a valid string the
        // workqueue copies.
        let p = unsafe {
            let name = b::dm_table_device_name((*ti.as_ptr()).table);
            b::dmr_worker_create(name, ti.as_ptr(), Some(run_bios::<T>), Some(run_scan::<T>))
        };
        // INVARIANT: Just created.
        NonNull::new(p).map(Self)
    }

    /// Hands `bio` to the worker, which completes it later. Any context.
    pub(crate) fn queue(&self, bio: &mut Bio) {
        // SAFETY: The worker is valid (type invariant); the caller gives up
        // the bio (`map` returns SUBMITTED, `end_io` INCOMPLETE).
        unsafe { b::dmr_worker_queue_bio(self.0.as_ptr(), bio.raw()) }
    }

    /// The next queued bio.
    pub(crate) fn pop(&self) -> Option<OwnedBio> {
        // SAFETY: The worker is valid (type invariant).
        let p = unsafe { b::dmr_worker_pop_bio(self.0.as_ptr()) };
        // INVARIANT: A queued bio was handed over to the worker, and popping
        // takes it off the list: we own it until we complete it.
        NonNull::new(p).map(OwnedBio)
    }

    /// Runs the scanner's next step after `delay_ms` (unless queued).
    pub(crate) fn scan_after(&self, delay_ms: u32) {
        // SAFETY: The worker is valid (type invariant).
        unsafe { b::dmr_worker_scan_schedule(self.0.as_ptr(), delay_ms) }
    }

    /// Raises a device-mapper table event (`dmsetup wait`, the event
    /// counter of `dmsetup info`, dmeventd) from the worker. Any context;
    /// events raised before the worker gets to it make one.
    pub(crate) fn event(&self) {
        // SAFETY: The worker is valid (type invariant).
        unsafe { b::dmr_worker_event(self.0.as_ptr()) }
    }

    /// Cancels the scanner's next step and waits for a running one. Process
    /// context; the caller must not hold a lock the step takes.
    pub(crate) fn scan_cancel(&self) {
        // SAFETY: The worker is valid (type invariant).
        unsafe { b::dmr_worker_scan_cancel(self.0.as_ptr()) }
    }
}

/// What a target's worker runs, one at a time, in process context.
pub(crate) trait WorkerOps: Sized + Send + Sync {
    /// The target's worker.
    fn worker(&self) -> &Worker;
    /// Completes a bio taken off the worker's queue (handed over by `map`
    /// or `end_io`).
    fn handle_bio(&self, ti: &Target, bio: OwnedBio);
    /// One step of the scanner.
    fn scan_step(&self, ti: &Target);
}

/// Work callback: handles every queued bio.
///
/// # Safety
///
/// Called by the C worker only, with the target it was created for (see
/// [`Worker::new`]).
unsafe extern "C" fn run_bios<T: WorkerOps>(ti: *mut b::dm_target) {
    // SAFETY: The worker of a constructed target of type `T` calls back
    // with it; work is flushed before the target is freed.
    let (t, target) = unsafe { from_callback::<T>(ti) };
    while let Some(bio) = t.worker().pop() {
        t.handle_bio(target, bio);
    }
}

/// Work callback: one step of the scanner.
///
/// # Safety
///
/// As for [`run_bios`].
unsafe extern "C" fn run_scan<T: WorkerOps>(ti: *mut b::dm_target) {
    // SAFETY: As in `run_bios`; the scan work is cancelled in `postsuspend`
    // and in the worker's destruction, before the target is freed.
    let (t, target) = unsafe { from_callback::<T>(ti) };
    t.scan_step(target);
}

impl Drop for Worker {
    fn drop(&mut self) {
        // SAFETY: Valid (type invariant), destroyed once.
        unsafe { b::dmr_worker_destroy(self.0.as_ptr()) }
    }
}

/// A bio the worker owns: it must be completed exactly once, with
/// [`OwnedBio::complete`].
///
/// # Invariants
///
/// `0` is a valid bio of the target that nobody else touches until it is
/// completed.
#[must_use = "a bio the worker took must be completed, or its submitter waits forever"]
pub(crate) struct OwnedBio(NonNull<b::bio>);

impl OwnedBio {
    fn raw(&self) -> *mut b::bio {
        self.0.as_ptr()
    }

    /// Puts the bio's data position back to what `map` saw.
    pub(crate) fn restore(&mut self) {
        // SAFETY: Owned and valid (type invariant); `map` recorded it.
        unsafe { super::bio::restore(self.raw()) }
    }

    /// A borrowed view, for the accessors of [`Bio`].
    pub(crate) fn bio(&mut self) -> &mut Bio {
        // SAFETY: Owned and valid (type invariant), borrowed mutably.
        unsafe { Bio::from_raw(self.raw()) }
    }

    /// Copies `buf.len()` bytes at byte `offset` of the bio's data into
    /// `buf`.
    pub(crate) fn copy_out(&mut self, offset: u32, buf: &mut [u8]) {
        let len = u32::try_from(buf.len()).unwrap_or(u32::MAX);
        // SAFETY: Owned bio (type invariant); `buf` is valid for `len` bytes.
        unsafe {
            b::dmr_bio_copy(self.raw(), offset, buf.as_mut_ptr().cast::<c_void>(), len, false)
        }
    }

    /// Copies `buf` into the bio's data at byte `offset`.
    pub(crate) fn copy_in(&mut self, offset: u32, buf: &[u8]) {
        let len = u32::try_from(buf.len()).unwrap_or(u32::MAX);
        // SAFETY: Owned bio (type invariant); `buf` is valid for `len` bytes
        // and only read.
        unsafe {
            b::dmr_bio_copy(
                self.raw(),
                offset,
                buf.as_ptr().cast_mut().cast::<c_void>(),
                len,
                true,
            )
        }
    }

    /// Completes the bio, successfully or with the error.
    pub(crate) fn complete(self, r: Result<(), BlockError>) {
        // SAFETY: Owned (type invariant); completing gives it up, and `self`
        // is consumed.
        unsafe { b::dmr_bio_complete(self.raw(), blk_status(r)) }
    }
}

/// How a bio the target handled completed: a `blk_status_t`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct BlkStatus(pub(super) u8);

impl BlkStatus {
    /// Success.
    pub(crate) fn is_ok(self) -> bool {
        self.0 == b::BLK_STS_OK
    }

    /// Whether the medium failed (what the error path handles); not for
    /// `BLK_STS_AGAIN` of a NOWAIT bio, unsupported operations and the like,
    /// which pass through.
    pub(crate) fn is_media_error(self) -> bool {
        self.0 == b::BLK_STS_IOERR || self.0 == b::BLK_STS_MEDIUM
    }
}

/// Why the worker fails a bio.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum BlockError {
    /// I/O error (`BLK_STS_IOERR`, EIO).
    Io,
    /// No spare block left (`BLK_STS_NOSPC`, ENOSPC).
    NoSpace,
    /// Out of memory (`BLK_STS_RESOURCE`).
    Resource,
}

/// The `blk_status_t` of an outcome.
fn blk_status(r: Result<(), BlockError>) -> u8 {
    match r {
        Ok(()) => b::BLK_STS_OK,
        Err(BlockError::Io) => b::BLK_STS_IOERR,
        Err(BlockError::NoSpace) => b::BLK_STS_NOSPC,
        Err(BlockError::Resource) => b::BLK_STS_RESOURCE,
    }
}

/// Milliseconds since boot (jiffies), for rates and ages.
pub(crate) fn now_ms() -> u64 {
    // SAFETY: Reads jiffies.
    unsafe { b::dmr_jiffies_ms() }
}
