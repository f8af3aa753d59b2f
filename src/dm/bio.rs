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

    /// The target's per-bio data of this bio (one call into device-mapper).
    #[inline]
    fn data(&self) -> *mut BioData {
        // SAFETY: A bio of our target (type invariant), whose per-bio data of
        // `size_of::<BioData>()` bytes the constructor reserved
        // (`CtrContext::reserve_bio_data`).
        unsafe { b::dm_per_bio_data(self.raw(), core::mem::size_of::<BioData>()).cast() }
    }

    /// Records in the per-bio data where the bio's data is now, with `rec`:
    /// what `end_io` and the worker go by, since a lower driver may change
    /// `bi_bdev`, `bi_sector` and `bi_iter` in place. `map` records every
    /// bio it does not kill, before anything else reads the record.
    #[inline]
    pub(crate) fn record(&mut self, rec: Record) {
        let d = self.data();
        // SAFETY: The bio is valid (type invariant); `d` points to its
        // per-bio data, suitably aligned (`BioData`'s assertions), which only
        // the holder of the bio touches.
        unsafe {
            d.write(BioData {
                iter: (*self.raw()).bi_iter,
                origin: rec.origin,
                epoch: rec.epoch,
                stage: rec.stage as u8,
                on_spare: u8::from(rec.on_spare),
                pass: u8::from(rec.pass),
            })
        }
    }

    /// What [`Self::record`] recorded, and the bio's size in bytes then
    /// (valid after completion, when the bio's own `bi_iter` is consumed).
    #[inline]
    pub(crate) fn recorded(&self) -> (Record, u32) {
        let d = self.data();
        // SAFETY: As in `record`; `map` recorded it before any reader.
        let d = unsafe { &*d };
        let rec = Record {
            origin: d.origin,
            epoch: d.epoch,
            stage: Stage::from_u8(d.stage),
            on_spare: d.on_spare != 0,
            pass: d.pass != 0,
        };
        (rec, d.iter.bi_size)
    }

    /// Moves the bio on to `stage` (the rest of the record stays).
    #[inline]
    pub(crate) fn set_stage(&mut self, stage: Stage) {
        let d = self.data();
        // SAFETY: As in `record`.
        unsafe { (*d).stage = stage as u8 }
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

/// Who has a bio the target mapped, as its per-bio data records it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum Stage {
    /// `map` sent it to a device.
    Mapped = 0,
    /// `map` queued it to the worker without submitting it (a write to a
    /// pending block, or to the block the worker is writing).
    Deferred = 1,
    /// It failed, and `end_io` handed it to the worker.
    Failed = 2,
    /// Written fine, but where a relocation moved its block away from
    /// meanwhile: `end_io` handed it to the worker, which writes it again
    /// where the table says.
    Redo = 3,
}

impl Stage {
    fn from_u8(v: u8) -> Self {
        match v {
            1 => Stage::Deferred,
            2 => Stage::Failed,
            3 => Stage::Redo,
            _ => Stage::Mapped,
        }
    }

    /// Whether the worker has (or had) the bio.
    pub(crate) fn with_worker(self) -> bool {
        self != Stage::Mapped
    }
}

/// What `map` records of a bio (see [`Bio::record`]).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Record {
    /// The target-relative main sector the bio covers.
    pub(crate) origin: u64,
    /// The target's relocation count when `map` saw the bio.
    pub(crate) epoch: u64,
    pub(crate) stage: Stage,
    /// `map` sent it to the spare.
    pub(crate) on_spare: bool,
    /// Its errors go to the caller as they are (empty bios: the clones of a
    /// flush, which go to both devices).
    pub(crate) pass: bool,
}

/// The target's per-bio data (`ti->per_io_data_size` bytes in front of
/// every clone device-mapper hands to `map`). Plain bytes for the flags, so
/// no bit pattern is invalid; device-mapper does not zero it, and `map`
/// writes it whole.
#[repr(C)]
pub(crate) struct BioData {
    /// The bio's `bi_iter` as `map` saw it (dm-raid1's `dm_bio_record`
    /// saves it for the same reason).
    iter: b::bvec_iter,
    origin: u64,
    epoch: u64,
    stage: u8,
    on_spare: u8,
    pass: u8,
}

// device-mapper places the per-bio data right in front of its own
// 8-byte-aligned structure: a size that keeps that alignment, and no more
// alignment asked.
const _: () = assert!(core::mem::size_of::<BioData>() % 8 == 0);
const _: () = assert!(core::mem::align_of::<BioData>() <= 8);

/// Restores a bio's `bi_iter` to what [`Bio::record`] saw.
///
/// # Safety
///
/// `bio` must be a valid bio of the target, recorded by `map`, owned by the
/// caller.
pub(super) unsafe fn restore(bio: *mut b::bio) {
    // SAFETY: Valid and recorded (caller); the per-bio data is reserved.
    unsafe {
        let d = b::dm_per_bio_data(bio, core::mem::size_of::<BioData>()).cast::<BioData>();
        (*bio).bi_iter = (*d).iter;
    }
}
