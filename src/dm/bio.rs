// SPDX-License-Identifier: GPL-2.0

//! A borrowed `struct bio`, as device-mapper hands it to `map`.

use super::bindings as b;
use super::device::DmDev;
use kernel::types::Opaque;

/// A bio that device-mapper passed to a target.
///
/// # Invariants
///
/// The wrapped `struct bio` is valid and owned by the caller of the target
/// hook for as long as the reference exists; the target may modify its device
/// and sector, as every bio-based target does in `map`.
#[repr(transparent)]
pub(crate) struct Bio(Opaque<b::bio>);

impl Bio {
    /// Borrows a raw bio.
    ///
    /// # Safety
    ///
    /// `ptr` must point to a valid bio that the caller may modify for `'a`,
    /// and no other reference to it may be used during `'a`.
    pub(crate) unsafe fn from_raw<'a>(ptr: *mut b::bio) -> &'a mut Bio {
        // SAFETY: `Bio` is `repr(transparent)` over `Opaque<bio>`, which has the
        // layout of `bio`; validity and exclusivity come from the caller.
        unsafe { &mut *ptr.cast::<Bio>() }
    }

    pub(super) fn raw(&self) -> *mut b::bio {
        self.0.get()
    }

    /// First sector of the bio (relative to the device it is addressed to).
    #[inline]
    pub(crate) fn sector(&self) -> u64 {
        // SAFETY: By the type invariant the bio is valid.
        unsafe { (*self.raw()).bi_iter.bi_sector }
    }

    /// Points the bio at `sector`.
    #[inline]
    pub(crate) fn set_sector(&mut self, sector: u64) {
        // SAFETY: By the type invariant the bio is valid and ours to modify.
        unsafe { (*self.raw()).bi_iter.bi_sector = sector }
    }

    /// Size of the data in bytes (0 for an empty flush).
    #[inline]
    pub(crate) fn size(&self) -> u32 {
        // SAFETY: By the type invariant the bio is valid.
        unsafe { (*self.raw()).bi_iter.bi_size }
    }

    #[inline]
    fn opf(&self) -> u32 {
        // SAFETY: By the type invariant the bio is valid.
        unsafe { (*self.raw()).bi_opf }
    }

    /// Whether the bio reads (`REQ_OP_READ`).
    #[inline]
    pub(crate) fn is_read(&self) -> bool {
        self.opf() & b::REQ_OP_MASK == b::REQ_OP_READ
    }

    /// Whether the bio writes data (`REQ_OP_WRITE`).
    #[inline]
    pub(crate) fn is_write(&self) -> bool {
        self.opf() & b::REQ_OP_MASK == b::REQ_OP_WRITE
    }

    /// Whether the bio carries `REQ_FUA` or `REQ_PREFLUSH` (its data must be
    /// durable when it completes).
    #[inline]
    pub(crate) fn is_durable(&self) -> bool {
        self.opf() & (b::REQ_FUA | b::REQ_PREFLUSH) != 0
    }

    /// Records, for the error path (per-bio data), where the bio's data is,
    /// the target-relative main sector `origin` it covers and the error-path
    /// `flags` (`DMR_BIO_*`): what `end_io` and the worker go by, since a
    /// lower driver may change `bi_bdev` and `bi_sector` in place.
    #[inline]
    pub(crate) fn record(&mut self, origin: u64, flags: u32, epoch: u64) {
        // SAFETY: A bio of our target, whose per-bio data the constructor
        // reserved (`CtrContext::reserve_bio_data`).
        unsafe { b::dmr_bio_record(self.raw(), origin, flags, epoch) }
    }

    /// The relocation count [`Self::record`] recorded.
    #[inline]
    pub(crate) fn epoch(&self) -> u64 {
        // SAFETY: As in `record`.
        unsafe { b::dmr_bio_epoch(self.raw()) }
    }

    /// The size in bytes [`Self::record`] recorded (valid after
    /// completion, when `bi_size` is consumed).
    #[inline]
    pub(crate) fn recorded_size(&self) -> u32 {
        // SAFETY: As in `record`.
        unsafe { b::dmr_bio_recorded_size(self.raw()) }
    }

    /// The main sector [`Self::record`] recorded.
    #[inline]
    pub(crate) fn origin(&self) -> u64 {
        // SAFETY: As in `record`.
        unsafe { b::dmr_bio_origin(self.raw()) }
    }

    /// The error-path flags of the per-bio data (`DMR_BIO_*`).
    #[inline]
    pub(crate) fn flags(&self) -> u32 {
        // SAFETY: As in `record`.
        unsafe { b::dmr_bio_flags(self.raw()) }
    }

    /// Sets the error-path flags.
    #[inline]
    pub(crate) fn set_flags(&mut self, flags: u32) {
        // SAFETY: As in `record`.
        unsafe { b::dmr_bio_set_flags(self.raw(), flags) }
    }

    /// Whether the bio carries `REQ_PREFLUSH`.
    #[inline]
    pub(crate) fn is_preflush(&self) -> bool {
        self.opf() & b::REQ_PREFLUSH != 0
    }

    /// Which of a target's `num_flush_bios` (or discard) clones this is.
    #[inline]
    pub(crate) fn target_bio_nr(&self) -> u32 {
        // SAFETY: By the type invariant the bio is valid; the function only
        // reads device-mapper's per-bio data of a bio that it passed to us.
        unsafe { b::dm_bio_get_target_bio_nr(self.raw()) }
    }

    /// Keeps only the first `sectors` sectors of the bio for this call of
    /// `map`; device-mapper sends the rest as a new bio.
    ///
    /// Only for bios device-mapper did not duplicate (not the clones of a
    /// flush sent to several devices), and `sectors` must not exceed the
    /// bio's size; both hold for the read, write and discard bios the target
    /// splits.
    #[inline]
    pub(crate) fn accept_partial(&mut self, sectors: u32) {
        // SAFETY: The bio is a valid target bio of ours (type invariant);
        // callers pass a length within it.
        unsafe { b::dm_accept_partial_bio(self.raw(), sectors) }
    }

    /// Addresses the bio to `dev`.
    #[inline]
    pub(crate) fn set_dev(&mut self, dev: &DmDev) {
        // SAFETY: The bio is valid and ours to modify (type invariant); the
        // block device of an open `DmDev` is valid (its type invariant).
        unsafe { b::dmr_bio_set_dev(self.raw(), dev.bdev()) }
    }
}
