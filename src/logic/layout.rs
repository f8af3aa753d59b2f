// SPDX-License-Identifier: GPL-2.0

//! Where things live on the spare device.
//!
//! The spare starts with a metadata area of [`METADATA_AREA_BYTES`]; the rest
//! is the data pool that remapped blocks are copied to. The on-disk format of
//! the metadata area will be specified with the persistence format; this module only
//! fixes its size and place so that nothing else ever allocates from it.

/// Size of the metadata area at the start of the spare, in bytes.
///
/// Reserved whole: the data pool begins right after it, at spare sector 4096.
/// Kept small enough that the documented `add_remap` examples with explicit
/// spare sectors from 5000 on land in the pool.
pub const METADATA_AREA_BYTES: u64 = 2 << 20;

/// Size of the metadata area in 512-byte sectors.
pub const METADATA_AREA_SECTORS: u64 = METADATA_AREA_BYTES / SECTOR_SIZE;

/// The kernel's sector: the unit of every offset and length in a bio.
pub const SECTOR_SIZE: u64 = 512;

/// Shift from bytes to sectors.
pub const SECTOR_SHIFT: u32 = 9;
