// SPDX-License-Identifier: GPL-2.0

//! Underlying devices opened through `dm_get_device`.

use super::bindings as b;
use crate::logic::geometry::DevNumbers;
use core::ptr::NonNull;
use kernel::error::to_result;
use kernel::ffi::c_char;
use kernel::prelude::*;

/// `path` as a NUL-terminated string, for the kernel's path lookups.
pub(crate) fn c_path(path: &str) -> Result<KVec<u8>> {
    let mut cpath = KVec::with_capacity(path.len() + 1, GFP_KERNEL)?;
    cpath.extend_from_slice(path.as_bytes(), GFP_KERNEL)?;
    cpath.push(0, GFP_KERNEL)?;
    Ok(cpath)
}

/// The numbers of the device `path` names (as a table line does), found
/// without claiming it: for when `dm_get_device` failed with `EBUSY`, which
/// it does for a device that overlaps one a table holds.
pub(crate) fn path_numbers(path: &str) -> Result<DevNumbers> {
    let cpath = c_path(path)?;
    let (mut dev, mut whole) = (0, 0);
    // SAFETY: `cpath` is NUL-terminated; `dev` and `whole` are valid
    // out-pointers.
    to_result(unsafe {
        b::dmr_path_devts(cpath.as_ptr().cast::<c_char>(), &mut dev, &mut whole)
    })?;
    Ok(DevNumbers { dev, whole })
}

/// A device a target opened with `dm_get_device`; put back on drop.
///
/// # Invariants
///
/// `dev` was returned by `dm_get_device` for the target `ti` and has not been
/// put. The value lives in the target's private data, which device-mapper
/// drops in the destructor (or the constructor drops on failure) while `ti`
/// is still valid.
pub(crate) struct DmDev {
    ti: NonNull<b::dm_target>,
    dev: NonNull<b::dm_dev>,
}

// SAFETY: A `dm_dev` is shared by device-mapper between all CPUs; the methods
// only read fields that are fixed while the device is open, and
// `dm_put_device` may be called from any thread in process context.
unsafe impl Send for DmDev {}
// SAFETY: See `Send`: every `&self` method only reads immutable fields.
unsafe impl Sync for DmDev {}

impl DmDev {
    /// Wraps a device just returned by `dm_get_device` for `ti`.
    ///
    /// # Safety
    ///
    /// `dev` must come from a successful `dm_get_device(ti, ...)` and must not
    /// be put elsewhere; the value must be dropped while `ti` is valid.
    pub(crate) unsafe fn from_raw(ti: NonNull<b::dm_target>, dev: NonNull<b::dm_dev>) -> Self {
        // INVARIANT: Guaranteed by the caller.
        Self { ti, dev }
    }

    pub(crate) fn as_ptr(&self) -> *mut b::dm_dev {
        self.dev.as_ptr()
    }

    pub(crate) fn bdev(&self) -> *mut b::block_device {
        // SAFETY: The device is open (type invariant), so `dev` is valid.
        unsafe { (*self.dev.as_ptr()).bdev }
    }

    /// The device's name as device-mapper prints it in tables: `major:minor`.
    pub(crate) fn name(&self) -> &str {
        // SAFETY: The device is open; `name` is a NUL-terminated array that
        // `dm_get_device` filled in and never changes afterwards.
        let name = unsafe { super::compat::str_at((*self.dev.as_ptr()).name.as_ptr()) };
        name.unwrap_or("?")
    }

    /// Logical block size in bytes.
    pub(crate) fn logical_block_size(&self) -> u32 {
        // SAFETY: The block device of an open `dm_dev` is valid.
        unsafe { b::dmr_bdev_logical_block_size(self.bdev()) }
    }

    /// Size in 512-byte sectors.
    pub(crate) fn sectors(&self) -> u64 {
        // SAFETY: The block device of an open `dm_dev` is valid.
        unsafe { b::dmr_bdev_nr_sectors(self.bdev()) }
    }

    /// The device number.
    pub(crate) fn devt(&self) -> u32 {
        // SAFETY: The block device of an open `dm_dev` is valid.
        unsafe { b::dmr_bdev_dev(self.bdev()) }
    }

    /// The device number of the whole disk this device is (part of).
    pub(crate) fn whole_devt(&self) -> u32 {
        // SAFETY: The block device of an open `dm_dev` is valid.
        unsafe { b::dmr_bdev_whole_dev(self.bdev()) }
    }
}

impl Drop for DmDev {
    fn drop(&mut self) {
        // SAFETY: By the type invariant `dev` was got for `ti`, is put only
        // here, and `ti` is still valid.
        unsafe { b::dm_put_device(self.ti.as_ptr(), self.dev.as_ptr()) }
    }
}
