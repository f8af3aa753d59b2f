// SPDX-License-Identifier: GPL-2.0

//! Where things live on the spare device.
//!
//! The spare starts with a metadata area of at least [`METADATA_AREA_BYTES`];
//! the rest is the data pool that remapped blocks are copied to. The on-disk
//! format (`format.rs`) sizes the area of a version-3 spare to its pool and
//! records where the pool starts; version 2 used exactly this size. Until a
//! spare's layout is known, the pool is taken to start right after it.

/// Least size of the metadata area at the start of the spare, in bytes.
///
/// The data pool begins at spare sector 4096 or later, so the documented
/// `add_remap` examples with explicit spare sectors from 5000 on land in the
/// pool of small spares.
pub const METADATA_AREA_BYTES: u64 = 2 << 20;

/// Size of the metadata area in 512-byte sectors.
pub const METADATA_AREA_SECTORS: u64 = METADATA_AREA_BYTES / SECTOR_SIZE;

/// The kernel's sector: the unit of every offset and length in a bio.
pub const SECTOR_SIZE: u64 = 512;

/// Shift from bytes to sectors.
pub const SECTOR_SHIFT: u32 = 9;
