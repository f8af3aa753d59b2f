// SPDX-License-Identifier: GPL-2.0

//! Checks a main/spare pair and derives the layout the target works with.

use super::format::{MIN_AREA_SECTORS, SECTOR_SHIFT};
use super::table_line::Features;
use super::Refusal;

/// What the constructor learns about one underlying device.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DeviceFacts {
    /// The device number (`dev_t`).
    pub dev: u32,
    /// The device number of the whole disk it belongs to (itself if whole).
    pub whole: u32,
    /// Size in 512-byte sectors.
    pub sectors: u64,
    /// Logical block size in bytes.
    pub logical_block_size: u32,
}

impl DeviceFacts {
    /// The device's numbers, which tell whether it overlaps another.
    pub fn numbers(&self) -> DevNumbers {
        DevNumbers {
            dev: self.dev,
            whole: self.whole,
        }
    }
}

/// A device number (`dev_t`) and that of the whole disk the device is (part
/// of): all it takes to tell whether two devices share sectors.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DevNumbers {
    /// The device number.
    pub dev: u32,
    /// The device number of the whole disk (itself if whole).
    pub whole: u32,
}

/// How two devices share sectors.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Overlap {
    /// They are the same device.
    Same,
    /// One is a partition of the other, a whole disk.
    Nested,
}

impl DevNumbers {
    fn is_partition(self) -> bool {
        self.dev != self.whole
    }

    /// Whether and how this device and `other` share sectors. Two
    /// partitions of one disk do not; a partition lies within its disk.
    pub fn overlap(self, other: DevNumbers) -> Option<Overlap> {
        if self.dev == other.dev {
            Some(Overlap::Same)
        } else if self.whole == other.whole && !(self.is_partition() && other.is_partition()) {
            Some(Overlap::Nested)
        } else {
            None
        }
    }
}

/// Refuses a main and a spare that share sectors.
pub fn check_apart(main: DevNumbers, spare: DevNumbers) -> Result<(), Refusal> {
    match main.overlap(spare) {
        Some(Overlap::Same) => Err(Refusal::new(c"Main and spare are the same device")),
        Some(Overlap::Nested) => Err(Refusal::new(
            c"Main and spare overlap: one is a partition of the other",
        )),
        None => Ok(()),
    }
}

/// Refuses a `migrate_to` device that shares sectors with main or the spare:
/// the move would copy the spare's blocks over main's data or over the
/// spare's own metadata and pool.
pub fn check_migrate_to(
    new: DevNumbers,
    main: DevNumbers,
    spare: DevNumbers,
) -> Result<(), Refusal> {
    for d in [main, spare] {
        match new.overlap(d) {
            Some(Overlap::Same) => {
                return Err(Refusal::new(
                    c"migrate_to names the main or the spare device",
                ))
            }
            Some(Overlap::Nested) => {
                return Err(Refusal::new(
                    c"migrate_to device overlaps the main or the spare device: one is a partition of the other",
                ))
            }
            None => {}
        }
    }
    Ok(())
}

/// The validated layout of a remap target.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Geometry {
    /// Remap granularity in bytes.
    pub block_size: u32,
    /// Remap granularity in sectors (a power of two).
    pub block_sectors: u64,
    /// Blocks of main covered by the target.
    pub main_blocks: u64,
    /// First sector of the spare's data pool (right after the metadata area).
    pub spare_data_start: u64,
    /// Blocks in the spare's data pool.
    pub spare_data_blocks: u64,
}

impl Geometry {
    /// This geometry with the data pool starting at `start` on a spare of
    /// `spare_sectors`: where the metadata layout puts it.
    pub fn with_pool(mut self, start: u64, spare_sectors: u64) -> Self {
        self.spare_data_start = start;
        // `checked_div`: the block size is validated non-zero, but a division
        // the compiler cannot prove safe would be a panic path in the module.
        self.spare_data_blocks = spare_sectors
            .saturating_sub(start)
            .checked_div(self.block_sectors)
            .unwrap_or(0);
        self
    }
}

/// Validates the devices of a table line against each other and the target.
///
/// `target_len` is the target's length in sectors (the table line's `<len>`).
pub fn validate(
    target_len: u64,
    main: &DeviceFacts,
    spare: &DeviceFacts,
    features: &Features,
) -> Result<Geometry, Refusal> {
    check_apart(main.numbers(), spare.numbers())?;
    if main.logical_block_size != spare.logical_block_size {
        return Err(Refusal::new(
            c"Main and spare have different logical block sizes",
        ));
    }
    let lbs = main.logical_block_size;
    if lbs < 512 || !lbs.is_power_of_two() {
        return Err(Refusal::new(c"Unsupported logical block size"));
    }
    let block_size = features.block_size.unwrap_or(lbs);
    if block_size < lbs {
        return Err(Refusal::new(
            c"block_size is smaller than the devices' logical block size",
        ));
    }
    let block_sectors = u64::from(block_size) >> SECTOR_SHIFT;
    if target_len > main.sectors {
        return Err(Refusal::new(c"Target is longer than the main device"));
    }
    if target_len % block_sectors != 0 {
        return Err(Refusal::new(
            c"Target length is not a multiple of the block size",
        ));
    }
    if spare.sectors < MIN_AREA_SECTORS + block_sectors {
        return Err(Refusal::new(
            c"Spare device too small: it needs a 2 MiB metadata area plus one data block",
        ));
    }
    Ok(Geometry {
        block_size,
        block_sectors,
        main_blocks: target_len / block_sectors,
        spare_data_start: MIN_AREA_SECTORS,
        spare_data_blocks: (spare.sectors - MIN_AREA_SECTORS) / block_sectors,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 2048;

    fn dev(dev: u32, sectors: u64) -> DeviceFacts {
        DeviceFacts {
            dev,
            whole: dev,
            sectors,
            logical_block_size: 512,
        }
    }

    fn err(r: Result<Geometry, Refusal>) -> &'static str {
        r.expect_err("should be refused").as_str()
    }

    #[test]
    fn default_layout() {
        let g = validate(
            64 * MIB,
            &dev(1, 64 * MIB),
            &dev(2, 64 * MIB),
            &Features::default(),
        )
        .unwrap();
        assert_eq!(g.block_size, 512);
        assert_eq!(g.block_sectors, 1);
        assert_eq!(g.main_blocks, 64 * MIB);
        assert_eq!(g.spare_data_start, 2 * MIB);
        assert_eq!(g.spare_data_blocks, 62 * MIB);
    }

    #[test]
    fn raised_block_size() {
        let f = Features {
            block_size: Some(4096),
            ..Features::default()
        };
        let g = validate(64 * MIB, &dev(1, 64 * MIB), &dev(2, 5 * MIB), &f).unwrap();
        assert_eq!(g.block_sectors, 8);
        assert_eq!(g.main_blocks, 8 * MIB);
        assert_eq!(g.spare_data_blocks, 3 * MIB / 8);
        assert!(err(validate(
            64 * MIB - 1,
            &dev(1, 64 * MIB),
            &dev(2, 5 * MIB),
            &f
        ))
        .contains("not a multiple"));
    }

    #[test]
    fn spare_boundary() {
        let f = Features::default();
        // Exactly the metadata area plus one block: accepted, one data block.
        let g = validate(MIB, &dev(1, MIB), &dev(2, 2 * MIB + 1), &f).unwrap();
        assert_eq!(g.spare_data_blocks, 1);
        // One sector short.
        assert!(err(validate(MIB, &dev(1, MIB), &dev(2, 2 * MIB), &f)).contains("too small"));
    }

    #[test]
    fn refusals() {
        let f = Features::default();
        assert!(err(validate(MIB, &dev(1, MIB), &dev(1, 8 * MIB), &f)).contains("same device"));
        assert!(err(validate(MIB + 1, &dev(1, MIB), &dev(2, 8 * MIB), &f)).contains("longer"));
        let mut s = dev(2, 8 * MIB);
        s.logical_block_size = 4096;
        assert!(err(validate(MIB, &dev(1, MIB), &s, &f)).contains("different logical"));
        let mut m = dev(1, MIB);
        m.logical_block_size = 4096;
        s.logical_block_size = 4096;
        let small = Features {
            block_size: Some(512),
            ..Features::default()
        };
        assert!(err(validate(MIB, &m, &s, &small)).contains("smaller than"));
    }

    #[test]
    fn partitions() {
        let f = Features::default();
        let whole = dev(0x800, 16 * MIB);
        let p1 = DeviceFacts {
            dev: 0x801,
            whole: 0x800,
            sectors: 8 * MIB,
            logical_block_size: 512,
        };
        let p2 = DeviceFacts { dev: 0x802, ..p1 };
        assert!(err(validate(MIB, &whole, &p1, &f)).contains("overlap"));
        assert!(err(validate(MIB, &p1, &whole, &f)).contains("overlap"));
        // Two partitions of one disk do not overlap.
        validate(MIB, &p1, &p2, &f).unwrap();
    }

    #[test]
    fn migrate_to_apart() {
        let no = |dev, whole| DevNumbers { dev, whole };
        let (disk, p1, p2, p3) = (
            no(0x800, 0x800),
            no(0x801, 0x800),
            no(0x802, 0x800),
            no(0x803, 0x800),
        );
        let other = no(0x810, 0x810);
        let refused = |new, main, spare| {
            check_migrate_to(new, main, spare)
                .expect_err("should be refused")
                .as_str()
        };
        // main or the spare itself
        assert!(refused(other, other, p1).contains("names the main or the spare"));
        assert!(refused(p1, other, p1).contains("names the main or the spare"));
        // the whole disk of a partition of main or the spare
        assert!(refused(disk, other, p1).contains("overlaps the main or the spare"));
        assert!(refused(disk, p1, other).contains("overlaps the main or the spare"));
        // a partition of the disk main or the spare is
        assert!(refused(p1, other, disk).contains("overlaps the main or the spare"));
        assert!(refused(p1, disk, other).contains("overlaps the main or the spare"));
        // Another partition of the disk that holds main and the spare,
        // and another disk, are apart.
        check_migrate_to(p3, p1, p2).unwrap();
        check_migrate_to(other, p1, p2).unwrap();
        check_migrate_to(p1, other, no(0x820, 0x820)).unwrap();
    }
}
