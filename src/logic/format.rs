// SPDX-License-Identifier: GPL-2.0

//! The on-disk format of the metadata area (specified in
//! `docs/on-disk-format.md`): encoding, decoding, validation of copies and the
//! choice of the copy to load.
//!
//! The area holds `copies` equal copies. A copy is a header unit, the entry
//! units, and the pending units. Entry slot `i` describes spare pool block
//! `i`: the main block whose data it holds, plus one, 0 when it is free, or
//! [`RETIRED`] when the pool block is bad. The pending units list main blocks
//! awaiting a remap. Every unit carries a CRC-32 (IEEE, as zlib and
//! `crc32fast` compute it), its own location and a generation; a copy is only
//! valid if none of its units is newer than its header, which is written
//! last.
//!
//! Version 3 (written by this module) uses units of [`UNIT`] bytes at 4 KiB
//! aligned offsets, copy `i` at `i × stride`; version 2 (still read, and
//! converted on request) used 512-byte sectors at `i × ⌊4096 / copies⌋`.

use core::fmt;

/// Bytes of a sector: the kernel's unit of every offset and length in a
/// bio, and the unit of version 2.
pub const SECTOR: usize = 512;
/// Shift from bytes to sectors.
pub const SECTOR_SHIFT: u32 = 9;
/// Bytes of a metadata unit of version 3.
pub const UNIT: usize = 4096;
/// Sectors of a version-3 unit.
pub const UNIT_SECTORS: u64 = (UNIT / SECTOR) as u64;
/// Magic at the start of every header.
pub const MAGIC: [u8; 8] = *b"dmremap\0";
/// Version of the format this module writes.
pub const FORMAT_VERSION: u32 = 3;
/// The previous version: read, and converted when the operator asks.
pub const FORMAT_V2: u32 = 2;
/// Entry slots in one version-2 entry sector.
pub const SLOTS_PER_SECTOR: usize = 61;
/// Entry slots in one version-3 entry unit.
pub const SLOTS_PER_UNIT: usize = (UNIT - 24) / 8;
/// Main blocks one version-3 pending unit lists.
pub const PENDING_PER_UNIT: usize = (UNIT - 32) / 8;
/// Pending units of a version-3 copy: room for [`PENDING_ROOM`] blocks.
pub const PENDING_UNITS: u64 = 9;
/// Main blocks the pending units of a version-3 copy have room for.
pub const PENDING_ROOM: usize = PENDING_UNITS as usize * PENDING_PER_UNIT;
/// Copies written by default.
pub const DEFAULT_COPIES: u32 = 5;
/// Most copies accepted.
pub const MAX_COPIES: u32 = 16;
/// Slot value of a spare pool block that is bad and never used again.
pub const RETIRED: u64 = u64::MAX;
/// Main blocks a version-2 pending sector lists (and so the most a
/// version-2 spare keeps pending).
pub const PENDING_MAX: usize = 60;
/// Size of the version-2 metadata area (2 MiB), and the least a version-3
/// area takes: the pool never starts before sector 4096, so the documented
/// `add_remap` examples with explicit spare sectors from 5000 on land in the
/// pool of small spares. Until a spare's layout is known, the pool is taken
/// to start right after it.
pub const MIN_AREA_SECTORS: u64 = 4096;
/// Pool blocks a version-3 spare describes by default: the whole pool, up to
/// this many (feature `metadata_slots` changes it).
pub const DEFAULT_MAX_SLOTS: u64 = 1 << 20;
/// Largest stride (units per copy) a version-3 header may name.
pub const MAX_STRIDE_UNITS: u64 = 3 << 20;

/// A CRC-32 (IEEE) function: the kernel's `crc32_le` or `crc32fast`.
pub type Crc = fn(&[u8]) -> u32;

// Header field offsets (both versions up to H_RETIRED).
const H_MAGIC: usize = 0;
const H_VERSION: usize = 8;
const H_COPY_INDEX: usize = 12;
const H_COPIES: usize = 16;
const H_BLOCK_SIZE: usize = 20;
const H_UUID: usize = 24;
const H_GENERATION: usize = 40;
const H_LOCATION: usize = 48;
const H_MAIN_SECTORS: usize = 56;
const H_SPARE_SECTORS: usize = 64;
const H_POOL_START: usize = 72;
const H_SLOTS: usize = 80;
const H_ENTRY_SECTORS: usize = 88;
const H_SLOTS_PER_SECTOR: usize = 92;
const H_REMAPS: usize = 96;
const H_RETIRED: usize = 104;
// Version 3 only.
const H_STRIDE: usize = 112;
const H_PENDING_UNITS: usize = 120;
const H_PENDING_PER_UNIT: usize = 124;
const H_PENDING: usize = 128;
const H_UNRECORDED: usize = 136;
const H_UNRECORDED_FIRST: usize = 144;
const H_UNRECORDED_LAST: usize = 152;
const H_FLAGS: usize = 160;
const H3_END: usize = 168;
/// Header flag: the spare's remaps moved to another spare.
const FLAG_MOVED: u64 = 1;
// Entry unit offsets.
const E_GENERATION: usize = 0;
const E_LOCATION: usize = 8;
const E_SLOTS: usize = 16;
// Pending unit offsets.
const P_GENERATION: usize = 0;
const P_LOCATION: usize = 8;
const P_COUNT: usize = 16;
const P_ZERO: usize = 20;
const P_BLOCKS: usize = 24;

/// Every unit kind ends with the CRC of the bytes before it.
const fn crc_at(unit: usize) -> usize {
    unit - 4
}
/// Entry slots in a unit of `unit` bytes.
const fn slots_in(unit: usize) -> usize {
    (unit - E_SLOTS - 8) / 8
}
/// Pending blocks in a unit of `unit` bytes.
const fn pending_in(unit: usize) -> usize {
    (unit - P_BLOCKS - 8) / 8
}

const _: () = assert!(H3_END <= crc_at(SECTOR));
const _: () = assert!(H_UUID + 16 == H_GENERATION);
const _: () = assert!(H_REMAPS + 8 == H_RETIRED);
// Version 3's fields follow version 2's, and all end before the CRC.
const _: () = assert!(H_RETIRED + 8 == H_STRIDE);
const _: () = assert!(H_STRIDE < H3_END);
const _: () = assert!(H_PENDING + 8 == H_UNRECORDED && H_UNRECORDED_LAST + 8 == H_FLAGS);
const _: () = assert!(H_FLAGS + 8 == H3_END);
const _: () = assert!(P_COUNT + 4 == P_ZERO);
const _: () = assert!(P_ZERO + 4 == P_BLOCKS);
const _: () = assert!(slots_in(SECTOR) == SLOTS_PER_SECTOR);
const _: () = assert!(slots_in(UNIT) == SLOTS_PER_UNIT);
const _: () = assert!(SLOTS_PER_UNIT == 509);
const _: () = assert!(pending_in(SECTOR) == PENDING_MAX);
const _: () = assert!(pending_in(UNIT) == PENDING_PER_UNIT);
const _: () = assert!(PENDING_ROOM >= 4096);
const _: () = assert!(E_SLOTS + 8 * SLOTS_PER_UNIT + 4 == crc_at(UNIT));
const _: () = assert!(P_BLOCKS + 8 * PENDING_PER_UNIT + 4 == crc_at(UNIT));

/// Who a spare belongs to: fixed when the spare is formatted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Identity {
    /// Random at format time.
    pub uuid: [u8; 16],
    /// Size of the main device in sectors.
    pub main_sectors: u64,
    /// Size of the spare device in sectors.
    pub spare_sectors: u64,
    /// Remap granularity in bytes.
    pub block_size: u32,
}

impl Identity {
    /// Whether metadata recorded for `recorded` serves this pair: the same
    /// pair, or one whose main or spare has grown since (`lvextend`, a
    /// larger partition): every remap still names a block inside main, and
    /// the metadata area and pool still lie on the spare. A main or spare
    /// that shrank, or another block size, is another pair.
    pub fn serves(&self, recorded: &Identity) -> bool {
        recorded.main_sectors <= self.main_sectors
            && recorded.spare_sectors <= self.spare_sectors
            && self.block_size == recorded.block_size
    }
}

/// Whether `units` is a stride a version-3 spare may use: at most two
/// significant bits (`2^k` or `3 × 2^k`), so that a loader finds the copies
/// by probing few places.
pub fn valid_stride(units: u64) -> bool {
    units != 0
        && units <= MAX_STRIDE_UNITS
        && (units.is_power_of_two() || (units % 3 == 0 && (units / 3).is_power_of_two()))
}

/// The valid strides in ascending order, up to `max` units.
pub fn strides(max: u64) -> impl Iterator<Item = u64> {
    // 1, then 2^k and 3 × 2^(k-1) for k ≥ 1: 1, 2, 3, 4, 6, 8, 12, ...
    core::iter::once(1)
        .chain((1..40u32).flat_map(|k| [1u64 << k, 3u64 << (k - 1)]))
        .take_while(move |&s| s <= max.min(MAX_STRIDE_UNITS))
}

/// Where the copies live.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layout {
    /// Format version: 2 (sectors) or 3 (4 KiB units).
    pub version: u32,
    /// Number of copies.
    pub copies: u32,
    /// Sectors per copy (the stride): copy `i` starts at `i × copy_sectors`.
    pub copy_sectors: u64,
    /// First sector of the data pool.
    pub pool_start: u64,
    /// Usable pool blocks: the pool, cut to what one copy can describe.
    pub slots: u64,
}

impl Layout {
    /// The version-2 layout of `copies` copies in an area of `area_sectors`
    /// for a pool of `pool_blocks` blocks starting at `pool_start`.
    pub fn new(copies: u32, area_sectors: u64, pool_start: u64, pool_blocks: u64) -> Option<Self> {
        if copies == 0 || copies > MAX_COPIES {
            return None;
        }
        let copy_sectors = area_sectors / u64::from(copies);
        // A header, at least one entry sector and the pending sector.
        if copy_sectors < 3 {
            return None;
        }
        let capacity = (copy_sectors - 2) * SLOTS_PER_SECTOR as u64;
        Some(Self {
            version: FORMAT_V2,
            copies,
            copy_sectors,
            pool_start,
            slots: pool_blocks.min(capacity),
        })
    }

    /// The version-3 layout of `copies` copies `stride` units apart,
    /// describing `slots` pool blocks from `pool_start`; `None` if these do
    /// not fit together.
    pub fn v3(copies: u32, stride: u64, pool_start: u64, slots: u64) -> Option<Self> {
        let l = Self {
            version: FORMAT_VERSION,
            copies,
            copy_sectors: stride.checked_mul(UNIT_SECTORS)?,
            pool_start,
            slots,
        };
        let fits = (1..=MAX_COPIES).contains(&copies)
            && valid_stride(stride)
            && slots != 0
            && 1 + l.entry_units() + PENDING_UNITS <= stride
            && pool_start % UNIT_SECTORS == 0
            && pool_start >= MIN_AREA_SECTORS
            && pool_start >= l.area_sectors();
        fits.then_some(l)
    }

    /// The version-3 layout for a new spare of `spare_sectors` with blocks
    /// of `block_sectors`: `copies` copies describing the whole pool, up to
    /// `max_slots` blocks. The pool starts after the area, at sector 4096 or
    /// later, aligned to the block size; its size depends on the area's, so
    /// the two are solved together.
    pub fn plan(
        copies: u32,
        spare_sectors: u64,
        block_sectors: u64,
        max_slots: u64,
    ) -> Option<Self> {
        let align = block_sectors.max(UNIT_SECTORS);
        let pool = |area: u64| -> Option<(u64, u64)> {
            let start = area.div_ceil(align).checked_mul(align)?;
            Some((
                start,
                spare_sectors
                    .checked_sub(start)?
                    .checked_div(block_sectors)?,
            ))
        };
        let mut slots = max_slots.min(pool(MIN_AREA_SECTORS)?.1);
        // Each round shrinks `slots` to what the pool left by its area
        // holds; the second round finds the same area or a smaller one.
        for _ in 0..4 {
            if slots == 0 {
                return None;
            }
            let need = 1 + slots.div_ceil(SLOTS_PER_UNIT as u64) + PENDING_UNITS;
            let stride = strides(MAX_STRIDE_UNITS).find(|&s| s >= need)?;
            let area = (u64::from(copies) * stride * UNIT_SECTORS).max(MIN_AREA_SECTORS);
            let (start, blocks) = pool(area)?;
            if blocks >= slots {
                let room = (stride - 1 - PENDING_UNITS) * SLOTS_PER_UNIT as u64;
                return Self::v3(copies, stride, start, blocks.min(max_slots).min(room));
            }
            slots = blocks;
        }
        None
    }

    /// Bytes of one unit: 512 (version 2) or 4096.
    pub fn unit(&self) -> usize {
        if self.version == FORMAT_V2 {
            SECTOR
        } else {
            UNIT
        }
    }

    /// Sectors of one unit.
    pub fn unit_sectors(&self) -> u64 {
        (self.unit() / SECTOR) as u64
    }

    /// Entry slots in one entry unit.
    pub fn slots_per_unit(&self) -> usize {
        slots_in(self.unit())
    }

    /// Main blocks in one pending unit.
    pub fn pending_per_unit(&self) -> usize {
        pending_in(self.unit())
    }

    /// Pending units per copy.
    pub fn pending_units(&self) -> u64 {
        if self.version == FORMAT_V2 {
            1
        } else {
            PENDING_UNITS
        }
    }

    /// Main blocks the pending units have room for.
    pub fn pending_room(&self) -> usize {
        self.pending_units() as usize * self.pending_per_unit()
    }

    /// Sectors of the area the copies take.
    pub fn area_sectors(&self) -> u64 {
        if self.version == FORMAT_V2 {
            MIN_AREA_SECTORS
        } else {
            u64::from(self.copies) * self.copy_sectors
        }
    }

    /// Entry units one copy has room for.
    pub fn entry_room(&self) -> u64 {
        (self.copy_sectors / self.unit_sectors()).saturating_sub(1 + self.pending_units())
    }

    /// First sector of copy `i` (its header).
    pub fn copy_start(&self, i: u32) -> u64 {
        u64::from(i) * self.copy_sectors
    }

    /// Sector of unit `u` of copy `i` (0: the header).
    pub fn unit_at(&self, i: u32, u: u64) -> u64 {
        self.copy_start(i) + u * self.unit_sectors()
    }

    /// The layout this one becomes on a spare grown to `spare_sectors`,
    /// with blocks of `block_sectors`: the same copies at the same places
    /// and the same pool start, describing more of the pool, as far as a
    /// copy has room for (its pending units move up behind the entry
    /// units) and up to `max_slots`. `None` when it describes no more than
    /// now (a version-2 spare never grows).
    pub fn grown(&self, spare_sectors: u64, block_sectors: u64, max_slots: u64) -> Option<Self> {
        if self.version != FORMAT_VERSION || block_sectors == 0 {
            return None;
        }
        let stride = self.copy_sectors / UNIT_SECTORS;
        let room = stride.checked_sub(1 + PENDING_UNITS)? * SLOTS_PER_UNIT as u64;
        let pool = spare_sectors.checked_sub(self.pool_start)? / block_sectors;
        let slots = pool.min(room).min(max_slots.max(self.slots));
        if slots <= self.slots {
            return None;
        }
        Self::v3(self.copies, stride, self.pool_start, slots)
    }

    /// Entry units in use per copy.
    pub fn entry_units(&self) -> u64 {
        self.slots.div_ceil(self.slots_per_unit() as u64)
    }

    /// Place of the first pending unit, in units from the start of a copy:
    /// right after the entry units in use.
    pub fn pending_offset(&self) -> u64 {
        1 + self.entry_units()
    }

    /// Units a copy uses: header, entry units, pending units.
    pub fn copy_units(&self) -> u64 {
        self.pending_offset() + self.pending_units()
    }

    /// Bytes a copy uses.
    pub fn copy_bytes(&self) -> usize {
        self.copy_units() as usize * self.unit()
    }

    /// Entry unit (0-based, within a copy) holding `slot`.
    pub fn unit_of(&self, slot: u64) -> u64 {
        slot / self.slots_per_unit() as u64
    }

    /// Most main blocks a copy lists as pending.
    pub fn pending_capacity(&self) -> usize {
        if self.version == FORMAT_V2 {
            PENDING_MAX
        } else {
            PENDING_ROOM
        }
    }

    /// Pending units a list of `n` blocks fills.
    pub fn pending_units_for(&self, n: usize) -> u64 {
        if self.version == FORMAT_V2 {
            1
        } else {
            n.div_ceil(self.pending_per_unit()) as u64
        }
    }
}

/// A decoded header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    /// The device pair.
    pub identity: Identity,
    /// Generation: grows by one with every commit, never goes back.
    pub generation: u64,
    /// Which copy this is.
    pub copy_index: u32,
    /// The layout all copies share.
    pub layout: Layout,
    /// Remaps in the copy (slots holding a main block).
    pub remaps: u64,
    /// Retired pool blocks in the copy (slots holding [`RETIRED`]).
    pub retired: u64,
    /// Pending main blocks the copy lists (version 3; 0 for version 2,
    /// whose pending sector carries its own count).
    pub pending: u64,
    /// Read errors the pending list had no room for (version 3; always
    /// none for version 2).
    pub unrecorded: Unrecorded,
    /// The remaps moved to another spare: a table must not use this one
    /// (version 3; `dm-remap-tool retire` sets it).
    pub moved: bool,
}

/// Main blocks whose reads failed while the pending list was full: how many
/// failures (a block that fails twice counts twice: nothing remembers it)
/// and the lowest and highest block among them. Their data is as lost as a pending block's,
/// but only this summary of them survives.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Unrecorded {
    /// Failures counted; 0 when none (then `first` and `last` are 0).
    pub count: u64,
    /// Lowest main block among them.
    pub first: u64,
    /// Highest main block among them.
    pub last: u64,
}

impl Unrecorded {
    /// Counts a failed read of main block `block`.
    pub fn add(&mut self, block: u64) {
        if self.count == 0 {
            (self.first, self.last) = (block, block);
        } else {
            self.first = self.first.min(block);
            self.last = self.last.max(block);
        }
        self.count = self.count.saturating_add(1);
    }

    /// The main sectors the blocks span, for blocks of `block_sectors`: the
    /// first sector of the lowest block and the last of the highest;
    /// `None` when none failed.
    #[cfg(not(MODULE))]
    pub fn sectors(&self, block_sectors: u64) -> Option<(u64, u64)> {
        (self.count > 0).then(|| {
            (
                self.first.saturating_mul(block_sectors),
                self.last
                    .saturating_add(1)
                    .saturating_mul(block_sectors)
                    .saturating_sub(1),
            )
        })
    }

    /// Whether the summary is consistent and names blocks below
    /// `main_blocks`.
    pub fn valid(&self, main_blocks: u64) -> bool {
        if self.count == 0 {
            self.first == 0 && self.last == 0
        } else {
            self.first <= self.last && self.last < main_blocks
        }
    }
}

/// What is wrong with a sector or a copy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Defect {
    /// The sector is all zeros (never written).
    Blank,
    /// Not our magic.
    BadMagic,
    /// A format version we do not know.
    BadVersion(u32),
    /// The CRC does not match.
    BadCrc,
    /// The sector says it lives elsewhere.
    BadLocation {
        /// Where it says it is.
        found: u64,
        /// Where it was read.
        at: u64,
    },
    /// Layout fields that contradict each other or this area.
    BadLayout,
    /// A generation no commit can follow (the largest value): never
    /// written by a commit, so crafted or damaged.
    BadGeneration,
    /// A whole, valid copy of an older generation than the one loaded (a
    /// commit stopped before it reached this copy).
    Stale {
        /// The copy's generation.
        generation: u64,
    },
    /// An entry or pending sector newer than its header: an interrupted
    /// commit.
    Torn {
        /// The sector's location.
        at: u64,
    },
    /// A pending sector older than its header (every commit writes it).
    StalePending {
        /// The pending sector's location.
        at: u64,
    },
    /// A pending sector whose list is invalid: too long, not ascending,
    /// naming a block beyond main, or with non-zero reserved bytes.
    BadPending {
        /// The pending sector's location.
        at: u64,
    },
    /// A slot names a main block beyond the device.
    BadSlot {
        /// The slot.
        slot: u64,
    },
    /// A main block held by two slots.
    Duplicate {
        /// The main block.
        block: u64,
    },
    /// The header's remap count disagrees with the slots.
    BadCount {
        /// Count in the header.
        header: u64,
        /// Used slots found.
        found: u64,
    },
    /// The header's count of retired pool blocks disagrees with the slots.
    BadRetired {
        /// Count in the header.
        header: u64,
        /// Retired slots found.
        found: u64,
    },
    /// The copy could not be read.
    Unreadable,
}

impl fmt::Display for Defect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Defect::Blank => f.write_str("blank"),
            Defect::BadMagic => f.write_str("bad magic"),
            Defect::BadVersion(v) => write!(f, "unknown format version {v}"),
            Defect::BadCrc => f.write_str("bad CRC"),
            Defect::BadLocation { found, at } => {
                write!(f, "sector at {at} claims location {found}")
            }
            Defect::BadLayout => f.write_str("inconsistent layout"),
            Defect::BadGeneration => f.write_str("generation out of range"),
            Defect::Stale { generation } => write!(f, "stale: generation {generation}"),
            Defect::Torn { at } => {
                write!(f, "interrupted commit (sector {at} newer than header)")
            }
            Defect::StalePending { at } => {
                write!(f, "pending sector {at} older than header")
            }
            Defect::BadPending { at } => write!(f, "pending sector {at} lists invalid blocks"),
            Defect::BadSlot { slot } => write!(f, "slot {slot} names a block beyond main"),
            Defect::Duplicate { block } => write!(f, "main block {block} remapped twice"),
            Defect::BadCount { header, found } => {
                write!(f, "header counts {header} remaps, slots hold {found}")
            }
            Defect::BadRetired { header, found } => write!(
                f,
                "header counts {header} retired pool blocks, slots hold {found}"
            ),
            Defect::Unreadable => f.write_str("read error"),
        }
    }
}

fn get_u32(b: &[u8], at: usize) -> u32 {
    let mut x = [0u8; 4];
    x.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(x)
}

fn get_u64(b: &[u8], at: usize) -> u64 {
    let mut x = [0u8; 8];
    x.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(x)
}

fn put_u32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_le_bytes());
}

fn put_u64(b: &mut [u8], at: usize, v: u64) {
    b[at..at + 8].copy_from_slice(&v.to_le_bytes());
}

/// Seals one unit (`b` is exactly one unit long): its last 4 bytes become
/// the CRC of the rest.
pub(crate) fn seal(b: &mut [u8], crc: Crc) {
    let at = crc_at(b.len());
    let c = crc(&b[..at]);
    put_u32(b, at, c);
}

fn check_crc(b: &[u8], crc: Crc) -> Result<(), Defect> {
    if b.iter().all(|&x| x == 0) {
        return Err(Defect::Blank);
    }
    let at = crc_at(b.len());
    if crc(&b[..at]) != get_u32(b, at) {
        return Err(Defect::BadCrc);
    }
    Ok(())
}

/// Writes header `h` for copy `h.copy_index` into `out` (one unit of its
/// layout's version).
pub fn encode_header(h: &Header, crc: Crc, out: &mut [u8]) {
    let l = &h.layout;
    let out = &mut out[..l.unit()];
    out.fill(0);
    out[H_MAGIC..H_MAGIC + 8].copy_from_slice(&MAGIC);
    put_u32(out, H_VERSION, l.version);
    put_u32(out, H_COPY_INDEX, h.copy_index);
    put_u32(out, H_COPIES, l.copies);
    put_u32(out, H_BLOCK_SIZE, h.identity.block_size);
    out[H_UUID..H_UUID + 16].copy_from_slice(&h.identity.uuid);
    put_u64(out, H_GENERATION, h.generation);
    put_u64(out, H_LOCATION, l.copy_start(h.copy_index));
    put_u64(out, H_MAIN_SECTORS, h.identity.main_sectors);
    put_u64(out, H_SPARE_SECTORS, h.identity.spare_sectors);
    put_u64(out, H_POOL_START, l.pool_start);
    put_u64(out, H_SLOTS, l.slots);
    put_u32(out, H_ENTRY_SECTORS, l.entry_room() as u32);
    put_u32(out, H_SLOTS_PER_SECTOR, l.slots_per_unit() as u32);
    put_u64(out, H_REMAPS, h.remaps);
    put_u64(out, H_RETIRED, h.retired);
    if l.version != FORMAT_V2 {
        put_u64(out, H_STRIDE, l.copy_sectors / UNIT_SECTORS);
        put_u32(out, H_PENDING_UNITS, l.pending_units() as u32);
        put_u32(out, H_PENDING_PER_UNIT, l.pending_per_unit() as u32);
        put_u64(out, H_PENDING, h.pending);
        put_u64(out, H_UNRECORDED, h.unrecorded.count);
        put_u64(out, H_UNRECORDED_FIRST, h.unrecorded.first);
        put_u64(out, H_UNRECORDED_LAST, h.unrecorded.last);
        put_u64(out, H_FLAGS, if h.moved { FLAG_MOVED } else { 0 });
    }
    // Version 3 too: the header is the unit's first sector, the rest zero,
    // so that a write torn at a sector boundary leaves it whole or absent.
    seal(&mut out[..SECTOR], crc);
}

/// The version a header unit claims: `Some` when `b` starts with our magic.
pub fn header_version(b: &[u8]) -> Option<u32> {
    (b.len() >= SECTOR && b[H_MAGIC..H_MAGIC + 8] == MAGIC).then(|| get_u32(b, H_VERSION))
}

/// Decodes the header read at sector `at`. A version-2 header is one sector
/// (the area it lays copies out in is `area_sectors`); a version-3 header is
/// one [`UNIT`], and `b` must hold it whole. A header of a later version
/// (its unit's CRC correct) is [`Defect::BadVersion`].
pub fn decode_header(b: &[u8], at: u64, area_sectors: u64, crc: Crc) -> Result<Header, Defect> {
    let s = b.get(..SECTOR).ok_or(Defect::BadLayout)?;
    match header_version(s) {
        Some(FORMAT_V2) => decode_v2(s, at, area_sectors, crc),
        Some(v) if v >= FORMAT_VERSION => {
            // Every version from 3 on starts with a header sector sealed
            // like this one.
            check_crc(s, crc)?;
            if v > FORMAT_VERSION {
                return Err(Defect::BadVersion(v));
            }
            decode_v3(b.get(..UNIT).ok_or(Defect::BadLayout)?, at)
        }
        Some(v) => {
            check_crc(s, crc)?;
            Err(Defect::BadVersion(v))
        }
        None => {
            check_crc(s, crc)?;
            Err(Defect::BadMagic)
        }
    }
}

fn decode_v2(b: &[u8], at: u64, area_sectors: u64, crc: Crc) -> Result<Header, Defect> {
    check_crc(b, crc)?;
    let copies = get_u32(b, H_COPIES);
    let pool_start = get_u64(b, H_POOL_START);
    let slots = get_u64(b, H_SLOTS);
    let layout = Layout::new(copies, area_sectors, pool_start, slots).ok_or(Defect::BadLayout)?;
    if layout.slots != slots
        || u64::from(get_u32(b, H_ENTRY_SECTORS)) != layout.copy_sectors - 2
        || get_u32(b, H_SLOTS_PER_SECTOR) as usize != SLOTS_PER_SECTOR
    {
        return Err(Defect::BadLayout);
    }
    header_rest(b, at, layout, 0)
}

fn decode_v3(b: &[u8], at: u64) -> Result<Header, Defect> {
    let layout = Layout::v3(
        get_u32(b, H_COPIES),
        get_u64(b, H_STRIDE),
        get_u64(b, H_POOL_START),
        get_u64(b, H_SLOTS),
    )
    .ok_or(Defect::BadLayout)?;
    let pending = get_u64(b, H_PENDING);
    let unrecorded = Unrecorded {
        count: get_u64(b, H_UNRECORDED),
        first: get_u64(b, H_UNRECORDED_FIRST),
        last: get_u64(b, H_UNRECORDED_LAST),
    };
    let bs = u64::from(get_u32(b, H_BLOCK_SIZE) / 512);
    let main_blocks = get_u64(b, H_MAIN_SECTORS).checked_div(bs).unwrap_or(0);
    if u64::from(get_u32(b, H_ENTRY_SECTORS)) != layout.entry_room()
        || get_u32(b, H_SLOTS_PER_SECTOR) as usize != SLOTS_PER_UNIT
        || u64::from(get_u32(b, H_PENDING_UNITS)) != PENDING_UNITS
        || get_u32(b, H_PENDING_PER_UNIT) as usize != PENDING_PER_UNIT
        || pending > PENDING_ROOM as u64
        || !unrecorded.valid(main_blocks)
        || get_u64(b, H_FLAGS) & !FLAG_MOVED != 0
        || b[H3_END..crc_at(SECTOR)].iter().any(|&x| x != 0)
        || b[SECTOR..].iter().any(|&x| x != 0)
    {
        return Err(Defect::BadLayout);
    }
    let mut h = header_rest(b, at, layout, pending)?;
    h.unrecorded = unrecorded;
    h.moved = get_u64(b, H_FLAGS) & FLAG_MOVED != 0;
    Ok(h)
}

/// The fields both versions share, once the layout is known.
fn header_rest(b: &[u8], at: u64, layout: Layout, pending: u64) -> Result<Header, Defect> {
    let copy_index = get_u32(b, H_COPY_INDEX);
    if copy_index >= layout.copies {
        return Err(Defect::BadLayout);
    }
    let found = get_u64(b, H_LOCATION);
    if found != at || layout.copy_start(copy_index) != at {
        return Err(Defect::BadLocation { found, at });
    }
    let generation = get_u64(b, H_GENERATION);
    if generation == u64::MAX {
        return Err(Defect::BadGeneration);
    }
    let mut uuid = [0u8; 16];
    uuid.copy_from_slice(&b[H_UUID..H_UUID + 16]);
    Ok(Header {
        identity: Identity {
            uuid,
            main_sectors: get_u64(b, H_MAIN_SECTORS),
            spare_sectors: get_u64(b, H_SPARE_SECTORS),
            block_size: get_u32(b, H_BLOCK_SIZE),
        },
        generation,
        copy_index,
        layout,
        remaps: get_u64(b, H_REMAPS),
        retired: get_u64(b, H_RETIRED),
        pending,
        unrecorded: Unrecorded::default(),
        moved: false,
    })
}

/// Writes an entry unit of `unit` bytes at `location` with generation
/// `generation` holding `slots` (each the main block plus one, or 0).
pub fn encode_entries(
    unit: usize,
    generation: u64,
    location: u64,
    slots: impl IntoIterator<Item = u64>,
    crc: Crc,
    out: &mut [u8],
) {
    let out = &mut out[..unit];
    out.fill(0);
    put_u64(out, E_GENERATION, generation);
    put_u64(out, E_LOCATION, location);
    for (i, s) in slots.into_iter().take(slots_in(unit)).enumerate() {
        put_u64(out, E_SLOTS + 8 * i, s);
    }
    seal(out, crc);
}

/// Decodes an entry unit of `unit` bytes read at `at`; returns its
/// generation.
pub fn decode_entries(unit: usize, b: &[u8], at: u64, crc: Crc) -> Result<u64, Defect> {
    let b = b.get(..unit).ok_or(Defect::BadLayout)?;
    check_crc(b, crc)?;
    let found = get_u64(b, E_LOCATION);
    if found != at {
        return Err(Defect::BadLocation { found, at });
    }
    Ok(get_u64(b, E_GENERATION))
}

/// Slot `i` of an entry unit that decoded fine.
pub fn entry_slot(b: &[u8], i: usize) -> u64 {
    get_u64(b, E_SLOTS + 8 * i)
}

/// A copy read whole (header, entry units, pending units: `copy_bytes` of
/// its layout), as the module and the tool both read it.
#[derive(Clone, Copy)]
pub struct CopyView<'a> {
    buf: &'a [u8],
    layout: Layout,
}

impl<'a> CopyView<'a> {
    /// The copy in `buf`, of `layout`; `None` if `buf` is shorter than a
    /// copy.
    pub fn new(buf: &'a [u8], layout: Layout) -> Option<Self> {
        (buf.len() >= layout.copy_bytes()).then_some(CopyView { buf, layout })
    }

    /// The slot of pool block `slot` (main block + 1, 0 when free,
    /// [`RETIRED`]); 0 past the last.
    pub fn slot(&self, slot: u64) -> u64 {
        if slot >= self.layout.slots {
            return 0;
        }
        let unit = self.layout.unit();
        let k = self.layout.unit_of(slot) as usize;
        let i = slot as usize % self.layout.slots_per_unit();
        self.buf
            .get((1 + k) * unit..(2 + k) * unit)
            .map_or(0, |u| entry_slot(u, i))
    }

    /// Every pool block's slot, in order.
    pub fn slots(&self) -> impl Iterator<Item = u64> + Clone + '_ {
        (0..self.layout.slots).map(|s| self.slot(s))
    }

    /// The pending list, block by block, of a copy [`check_copy`] accepted
    /// with header `h`.
    pub fn pending(&self, h: &Header) -> impl Iterator<Item = u64> + 'a {
        pending_list(self.buf, h)
    }
}

/// Writes a pending unit of `unit` bytes at `location` with generation
/// `generation` listing `blocks` (main blocks, ascending and distinct; as
/// many as the unit holds are written).
pub fn encode_pending(
    unit: usize,
    generation: u64,
    location: u64,
    blocks: &[u64],
    crc: Crc,
    out: &mut [u8],
) {
    let out = &mut out[..unit];
    out.fill(0);
    let blocks = &blocks[..blocks.len().min(pending_in(unit))];
    put_u64(out, P_GENERATION, generation);
    put_u64(out, P_LOCATION, location);
    put_u32(out, P_COUNT, blocks.len() as u32);
    for (i, b) in blocks.iter().enumerate() {
        put_u64(out, P_BLOCKS + 8 * i, *b);
    }
    seal(out, crc);
}

/// Decodes a pending unit of `unit` bytes read at `at` for a main device of
/// `main_blocks` blocks; returns its generation and how many blocks it
/// lists.
pub fn decode_pending(
    unit: usize,
    b: &[u8],
    at: u64,
    main_blocks: u64,
    crc: Crc,
) -> Result<(u64, usize), Defect> {
    let b = b.get(..unit).ok_or(Defect::BadLayout)?;
    check_crc(b, crc)?;
    let found = get_u64(b, P_LOCATION);
    if found != at {
        return Err(Defect::BadLocation { found, at });
    }
    let bad = Err(Defect::BadPending { at });
    let max = pending_in(unit);
    let count = get_u32(b, P_COUNT) as usize;
    let end = P_BLOCKS + 8 * max;
    if count > max || get_u32(b, P_ZERO) != 0 || get_u32(b, end) != 0 {
        return bad;
    }
    let mut prev: Option<u64> = None;
    for i in 0..max {
        let block = pending_block(b, i);
        if i >= count {
            if block != 0 {
                return bad;
            }
            continue;
        }
        let ascending = match prev {
            Some(p) => p < block,
            None => true,
        };
        if !ascending || block >= main_blocks {
            return bad;
        }
        prev = Some(block);
    }
    Ok((get_u64(b, P_GENERATION), count))
}

/// Block `i` of a pending unit that decoded fine.
pub fn pending_block(b: &[u8], i: usize) -> u64 {
    get_u64(b, P_BLOCKS + 8 * i)
}

/// Validates a copy read whole into `buf` (its header, entry units and
/// pending units: [`Layout::copy_bytes`]) from sector `at` (of an area of
/// `area_sectors`, for version 2), for a main device of `main_blocks`
/// blocks. Checks every unit, the generations, the slot values, the counts
/// and the pending list; duplicates are found by the loader (it needs a
/// table for that).
pub fn check_copy(
    buf: &[u8],
    at: u64,
    area_sectors: u64,
    main_blocks: u64,
    crc: Crc,
) -> Result<Header, Defect> {
    let h = decode_header(buf, at, area_sectors, crc)?;
    let l = h.layout;
    let unit = l.unit();
    // Blocks are checked against the main the header records too: a copy
    // written for a larger main is a whole copy of another pair (`decide`
    // tells them apart), not a damaged one.
    let bs = u64::from(h.identity.block_size / 512).max(1);
    let main_blocks = main_blocks.min(h.identity.main_sectors / bs);
    let units = l.entry_units() as usize;
    if buf.len() < l.copy_bytes() {
        return Err(Defect::BadLayout);
    }
    let spu = l.slots_per_unit();
    let mut used = 0u64;
    let mut retired = 0u64;
    for k in 0..units {
        let loc = l.unit_at(h.copy_index, 1 + k as u64);
        let s = &buf[(1 + k) * unit..(2 + k) * unit];
        let generation = decode_entries(unit, s, loc, crc)?;
        if generation > h.generation {
            return Err(Defect::Torn { at: loc });
        }
        for i in 0..spu {
            let slot = (k * spu + i) as u64;
            let v = entry_slot(s, i);
            if v == 0 {
                continue;
            }
            if v == RETIRED && slot < l.slots {
                retired += 1;
                continue;
            }
            if slot >= l.slots || v > main_blocks {
                return Err(Defect::BadSlot { slot });
            }
            used += 1;
        }
    }
    check_pending(buf, &h, main_blocks, crc)?;
    if used != h.remaps {
        return Err(Defect::BadCount {
            header: h.remaps,
            found: used,
        });
    }
    if retired != h.retired {
        return Err(Defect::BadRetired {
            header: h.retired,
            found: retired,
        });
    }
    Ok(h)
}

/// Checks the pending units of a copy whose header `h` decoded. Version 2:
/// one sector, exactly as new as the header (every commit writes it).
/// Version 3: the units that the header's count fills, none newer than the
/// header (they are written only when the list changes), full but for the
/// last, ascending across units.
fn check_pending(buf: &[u8], h: &Header, main_blocks: u64, crc: Crc) -> Result<(), Defect> {
    let l = h.layout;
    let unit = l.unit();
    let p = l.pending_offset();
    if l.version == FORMAT_V2 {
        let loc = l.unit_at(h.copy_index, p);
        let o = p as usize * unit;
        let (generation, _) = decode_pending(unit, &buf[o..o + unit], loc, main_blocks, crc)?;
        if generation > h.generation {
            return Err(Defect::Torn { at: loc });
        }
        if generation < h.generation {
            return Err(Defect::StalePending { at: loc });
        }
        return Ok(());
    }
    let per = l.pending_per_unit();
    let total = h.pending as usize;
    let mut prev: Option<u64> = None;
    for j in 0..l.pending_units_for(total) {
        let loc = l.unit_at(h.copy_index, p + j);
        let o = (p + j) as usize * unit;
        let s = &buf[o..o + unit];
        let (generation, count) = decode_pending(unit, s, loc, main_blocks, crc)?;
        if generation > h.generation {
            return Err(Defect::Torn { at: loc });
        }
        let want = (total - j as usize * per).min(per);
        if count != want || prev.is_some_and(|b| pending_block(s, 0) <= b) {
            return Err(Defect::BadPending { at: loc });
        }
        prev = Some(pending_block(s, count - 1));
    }
    Ok(())
}

/// The pending list of a copy that [`check_copy`] accepted, block by block.
pub fn pending_list<'a>(buf: &'a [u8], h: &Header) -> impl Iterator<Item = u64> + 'a {
    let l = h.layout;
    let unit = l.unit();
    let per = l.pending_per_unit();
    let p = l.pending_offset() as usize;
    let total = if l.version == FORMAT_V2 {
        get_u32(&buf[p * unit..], P_COUNT) as usize
    } else {
        h.pending as usize
    };
    (0..total.min(l.pending_room())).map(move |i| {
        let o = (p + i / per) * unit;
        pending_block(&buf[o..o + unit], i % per)
    })
}

/// What a copy turned out to be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CopyState {
    /// Valid, with this header.
    Valid(Header),
    /// Not valid.
    Bad(Defect),
}

/// What to do with a spare's metadata area.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Load copy `copy`; rewrite the copies whose bit is set in `repair`
    /// (stale or defective).
    Load {
        /// The copy to load.
        copy: u32,
        /// Copies to rewrite, one bit each.
        repair: u32,
    },
    /// Format the area: it is blank, or the table line asked for it.
    Format,
    /// Refuse the spare, with this reason.
    Refuse(&'static core::ffi::CStr),
}

/// Chooses what to do given each copy's state, the device pair the table
/// line describes, and whether it carries the `format` feature.
///
/// The newest valid copy of this device pair wins; every copy that is not
/// identical in generation is repaired. `format` never overwrites valid
/// metadata of this pair: it only allows formatting over an area that holds
/// none (garbage, or metadata of another pair). A spare whose remaps moved
/// to another (a copy of this pair says so) is refused, or with `format`
/// formatted afresh: its remaps and their data are the other spare's now.
pub fn decide(states: &[CopyState], pair: &Identity, format: bool) -> Decision {
    let foreign = states
        .iter()
        .any(|s| matches!(s, CopyState::Valid(h) if !pair.serves(&h.identity)));
    let moved = states
        .iter()
        .any(|s| matches!(s, CopyState::Valid(h) if h.moved && pair.serves(&h.identity)));
    if moved {
        // Any copy: retiring marks the copies one by one, and one marked
        // copy already means the remaps live elsewhere now. Loading it would
        // serve their old data; `format` starts it afresh instead.
        if format {
            return Decision::Format;
        }
        return Decision::Refuse(
            c"Spare's remaps moved to another spare (dm-remap-tool migrate, retire); put that spare in the table line, or add the 'format' feature to reuse this one",
        );
    }
    if let Some((copy, h)) = newest_valid(states, |h| pair.serves(&h.identity)) {
        let generation = h.generation;
        let mut repair = 0;
        for (i, s) in states.iter().enumerate() {
            let fine = matches!(s, CopyState::Valid(h)
                if h.generation == generation && h.identity == headers_identity(states, copy));
            if !fine {
                repair |= 1 << i;
            }
        }
        return Decision::Load { copy, repair };
    }
    if format || states.iter().all(|s| *s == CopyState::Bad(Defect::Blank)) {
        return Decision::Format;
    }
    if foreign {
        Decision::Refuse(
            c"Spare belongs to a different device pair (main or spare smaller, or block size differs); add the 'format' feature to overwrite it",
        )
    } else {
        Decision::Refuse(
            c"Spare has no valid metadata and is not blank; add the 'format' feature to overwrite it",
        )
    }
}

fn headers_identity(states: &[CopyState], copy: u32) -> Identity {
    match states.get(copy as usize) {
        Some(CopyState::Valid(h)) => h.identity,
        _ => Identity {
            uuid: [0; 16],
            main_sectors: 0,
            spare_sectors: 0,
            block_size: 0,
        },
    }
}

/// The newest valid copy among `states` whose header `pick` accepts (the
/// first of equals), with its index: what the module loads (of the copies
/// of its device pair) and what the tool reports (of any).
pub fn newest_valid(states: &[CopyState], pick: impl Fn(&Header) -> bool) -> Option<(u32, Header)> {
    let mut best: Option<(u32, Header)> = None;
    for (i, s) in states.iter().enumerate() {
        if let CopyState::Valid(h) = s {
            // Not `map_or(true, ..)`: see `remaps::discover`.
            let newer = match best {
                Some((_, b)) => b.generation < h.generation,
                None => true,
            };
            if pick(h) && newer {
                best = Some((i as u32, *h));
            }
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    fn crc(b: &[u8]) -> u32 {
        crc32fast::hash(b)
    }

    /// The textbook CRC-32 (IEEE, reflected, init and final xor all ones),
    /// bit by bit: what the kernel's `~crc32_le(~0, ...)` computes.
    fn crc_bitwise(b: &[u8]) -> u32 {
        let mut c = !0u32;
        for &x in b {
            c ^= u32::from(x);
            for _ in 0..8 {
                c = if c & 1 != 0 {
                    (c >> 1) ^ 0xedb8_8320
                } else {
                    c >> 1
                };
            }
        }
        !c
    }

    fn pair() -> Identity {
        Identity {
            uuid: [7; 16],
            main_sectors: 131072,
            spare_sectors: 131072,
            block_size: 512,
        }
    }

    fn header(copy_index: u32, generation: u64) -> Header {
        Header {
            identity: pair(),
            generation,
            copy_index,
            layout: Layout::new(5, 4096, 4096, 126976).unwrap(),
            remaps: 0,
            retired: 0,
            pending: 0,
            unrecorded: Unrecorded::default(),
            moved: false,
        }
    }

    #[test]
    fn a_layout_grows_as_far_as_its_copies_have_room() {
        // 64 MiB with 4 KiB blocks: 15,872 pool blocks, 32 entry units, a
        // stride of 48 units (room for 38 entry units: 19,342 slots).
        let l = Layout::plan(5, 131_072, 8, DEFAULT_MAX_SLOTS).unwrap();
        assert_eq!((l.slots, l.copy_sectors / UNIT_SECTORS), (15_872, 48));
        let room = (48 - 1 - PENDING_UNITS) * SLOTS_PER_UNIT as u64;
        // The pool on a larger spare, up to the room, up to max_slots.
        let g = l.grown(131_072 + 8 * 1000, 8, DEFAULT_MAX_SLOTS).unwrap();
        assert_eq!(g.slots, 16_872);
        assert_eq!(
            (g.version, g.copies, g.copy_sectors, g.pool_start),
            (l.version, l.copies, l.copy_sectors, l.pool_start)
        );
        assert_eq!(g.entry_units(), 34);
        assert_eq!(l.grown(1 << 30, 8, DEFAULT_MAX_SLOTS).unwrap().slots, room);
        assert_eq!(l.grown(1 << 30, 8, 16_000).unwrap().slots, 16_000);
        // Nothing more to describe: the same spare, a few sectors more, a
        // cap below what it has.
        assert_eq!(l.grown(131_072, 8, DEFAULT_MAX_SLOTS), None);
        assert_eq!(l.grown(131_072 + 7, 8, DEFAULT_MAX_SLOTS), None);
        assert_eq!(l.grown(1 << 30, 8, 100), None);
        // A full stride and version 2 never grow.
        let full = Layout::v3(5, 48, l.pool_start, room).unwrap();
        assert_eq!(full.grown(1 << 30, 8, DEFAULT_MAX_SLOTS), None);
        let v2 = Layout::new(5, 4096, 4096, 1000).unwrap();
        assert_eq!(v2.grown(1 << 30, 1, DEFAULT_MAX_SLOTS), None);
    }

    #[test]
    fn crc_agreement_vector() {
        assert_eq!(crc(b"123456789"), 0xcbf4_3926);
        assert_eq!(crc_bitwise(b"123456789"), 0xcbf4_3926);
        let mut s = [0u8; SECTOR];
        encode_header(&header(2, 9), crc, &mut s);
        assert_eq!(crc(&s[..crc_at(SECTOR)]), crc_bitwise(&s[..crc_at(SECTOR)]));
    }

    /// A copy built byte by byte from the tables of `docs/on-disk-format.md`
    /// (not with the encoder) decodes to what the doc says it holds.
    #[test]
    fn golden_image_from_the_doc() {
        fn le(b: &mut [u8], at: usize, v: u64, n: usize) {
            b[at..at + n].copy_from_slice(&v.to_le_bytes()[..n]);
        }
        // 5 copies, copy 1 at sector 819, 512-byte blocks, 100 usable slots:
        // header at 819, entry sectors at 820 and 821, pending sector at 822.
        let mut hdr = [0u8; 512];
        hdr[0..8].copy_from_slice(b"dmremap\0");
        le(&mut hdr, 8, 2, 4); // format version
        le(&mut hdr, 12, 1, 4); // copy index
        le(&mut hdr, 16, 5, 4); // copies
        le(&mut hdr, 20, 512, 4); // block size
        hdr[24..40].copy_from_slice(&[0xab; 16]); // uuid
        le(&mut hdr, 40, 77, 8); // generation
        le(&mut hdr, 48, 819, 8); // self-location
        le(&mut hdr, 56, 65536, 8); // main sectors
        le(&mut hdr, 64, 32768, 8); // spare sectors
        le(&mut hdr, 72, 4096, 8); // pool start
        le(&mut hdr, 80, 100, 8); // usable slots
        le(&mut hdr, 88, 817, 4); // entry sectors per copy
        le(&mut hdr, 92, 61, 4); // slots per entry sector
        le(&mut hdr, 96, 2, 8); // remaps
        le(&mut hdr, 104, 2, 8); // retired
        let c = crc32fast::hash(&hdr[..508]);
        le(&mut hdr, 508, u64::from(c), 4);

        let mut e0 = [0u8; 512];
        le(&mut e0, 0, 77, 8); // generation
        le(&mut e0, 8, 820, 8); // self-location
        le(&mut e0, 16 + 8 * 3, 11, 8); // slot 3: main block 10
        le(&mut e0, 16 + 8 * 5, u64::MAX, 8); // slot 5: retired
        let c = crc32fast::hash(&e0[..508]);
        le(&mut e0, 508, u64::from(c), 4);
        let mut e1 = [0u8; 512];
        le(&mut e1, 0, 76, 8);
        le(&mut e1, 8, 821, 8);
        le(&mut e1, 16 + 8 * (99 - 61), 501, 8); // slot 99: main block 500
        le(&mut e1, 16, u64::MAX, 8); // slot 61: retired
        let c = crc32fast::hash(&e1[..508]);
        le(&mut e1, 508, u64::from(c), 4);
        let mut pend = [0u8; 512];
        le(&mut pend, 0, 77, 8); // generation
        le(&mut pend, 8, 822, 8); // self-location
        le(&mut pend, 16, 3, 4); // count
        le(&mut pend, 24, 4, 8); // main block 4
        le(&mut pend, 32, 10, 8); // main block 10
        le(&mut pend, 40, 65535, 8); // main block 65535, the last
        let c = crc32fast::hash(&pend[..508]);
        le(&mut pend, 508, u64::from(c), 4);

        let mut image = std::vec::Vec::new();
        image.extend_from_slice(&hdr);
        image.extend_from_slice(&e0);
        image.extend_from_slice(&e1);
        image.extend_from_slice(&pend);
        let h = check_copy(&image, 819, 4096, 65536, crc).unwrap();
        assert_eq!(h.copy_index, 1);
        assert_eq!(h.generation, 77);
        assert_eq!(h.remaps, 2);
        assert_eq!(h.retired, 2);
        assert_eq!(h.layout.pending_offset(), 3);
        assert_eq!(h.identity.uuid, [0xab; 16]);
        assert_eq!(h.identity.main_sectors, 65536);
        assert_eq!(h.identity.spare_sectors, 32768);
        assert_eq!(h.identity.block_size, 512);
        assert_eq!(h.layout.pool_start, 4096);
        assert_eq!(h.layout.slots, 100);
        assert_eq!(h.layout.copy_sectors, 819);
        assert_eq!(entry_slot(&e0, 3), 11);
        assert_eq!(entry_slot(&e1, 38), 501);
        assert_eq!(entry_slot(&e1, 0), RETIRED);
        assert_eq!(decode_pending(SECTOR, &pend, 822, 65536, crc), Ok((77, 3)));
        assert_eq!(
            [0, 1, 2, 3].map(|i| pending_block(&pend, i)),
            [4, 10, 65535, 0]
        );
        // And the encoders produce the same bytes.
        let mut again = [0u8; 512];
        encode_header(&h, crc, &mut again);
        assert_eq!(again, hdr);
        encode_pending(SECTOR, 77, 822, &[4, 10, 65535], crc, &mut again);
        assert_eq!(again, pend);
        // One block beyond main makes the copy invalid.
        assert_eq!(
            check_copy(&image, 819, 4096, 65535, crc),
            Err(Defect::BadPending { at: 822 })
        );
    }

    #[test]
    fn layout_numbers() {
        let l = Layout::new(5, 4096, 4096, 126976).unwrap();
        assert_eq!(l.copy_sectors, 819);
        assert_eq!(l.slots, 817 * 61);
        assert_eq!(l.slots, 49_837);
        assert_eq!(l.copy_start(4), 3276);
        assert_eq!(l.entry_units(), 817);
        assert_eq!(l.pending_offset(), 818);
        let two = Layout::new(2, 4096, 4096, 1 << 20).unwrap();
        assert_eq!(two.slots, 124_806);
        assert_eq!(two.pending_offset(), 2047);
        let small = Layout::new(5, 4096, 4096, 100).unwrap();
        assert_eq!(small.slots, 100);
        assert_eq!(small.entry_units(), 2);
        assert_eq!(small.pending_offset(), 3);
        // A copy needs a header, an entry sector and a pending sector.
        assert!(Layout::new(1, 2, 4096, 1).is_none());
        assert_eq!(Layout::new(1, 3, 4096, 1000).unwrap().slots, 61);
        assert!(Layout::new(0, 4096, 4096, 1).is_none());
        assert!(Layout::new(17, 4096, 4096, 1).is_none());
        assert!(Layout::new(3000, 4096, 4096, 1).is_none());
    }

    #[test]
    fn header_round_trip_and_defects() {
        let mut h = header(3, 42);
        h.remaps = 12;
        h.retired = 5;
        let at = h.layout.copy_start(3);
        let mut s = [0u8; SECTOR];
        encode_header(&h, crc, &mut s);
        assert_eq!(decode_header(&s, at, 4096, crc), Ok(h));
        assert_eq!(
            decode_header(&s, at + 1, 4096, crc),
            Err(Defect::BadLocation {
                found: at,
                at: at + 1
            })
        );
        assert_eq!(
            decode_header(&[0u8; SECTOR], at, 4096, crc),
            Err(Defect::Blank)
        );
        let mut flipped = s;
        flipped[41] ^= 4;
        assert_eq!(decode_header(&flipped, at, 4096, crc), Err(Defect::BadCrc));
        let mut other = s;
        other[0] = b'X';
        seal(&mut other, crc);
        assert_eq!(decode_header(&other, at, 4096, crc), Err(Defect::BadMagic));
        assert_eq!(get_u64(&s, 104), 5);
        // Version 1 is not read (it never shipped), nor 0.
        for v in [0, 1] {
            let mut old = s;
            put_u32(&mut old, H_VERSION, v);
            seal(&mut old, crc);
            assert_eq!(
                decode_header(&old, at, 4096, crc),
                Err(Defect::BadVersion(v))
            );
        }
        // Entry sectors per copy are `copy_sectors - 2`.
        assert_eq!(get_u32(&s, H_ENTRY_SECTORS), 817);
        let mut es = s;
        put_u32(&mut es, H_ENTRY_SECTORS, 818);
        seal(&mut es, crc);
        assert_eq!(decode_header(&es, at, 4096, crc), Err(Defect::BadLayout));
    }

    #[test]
    fn pending_round_trip_and_defects() {
        let mut s = [0u8; SECTOR];
        encode_pending(SECTOR, 9, 822, &[], crc, &mut s);
        assert_eq!(decode_pending(SECTOR, &s, 822, 100, crc), Ok((9, 0)));
        encode_pending(SECTOR, 9, 822, &[0, 5, 99], crc, &mut s);
        assert_eq!(decode_pending(SECTOR, &s, 822, 100, crc), Ok((9, 3)));
        assert_eq!(pending_block(&s, 2), 99);
        assert_eq!(
            decode_pending(SECTOR, &s, 823, 100, crc),
            Err(Defect::BadLocation {
                found: 822,
                at: 823
            })
        );
        assert_eq!(
            decode_pending(SECTOR, &s, 822, 99, crc),
            Err(Defect::BadPending { at: 822 })
        );
        let full: std::vec::Vec<u64> = (0..PENDING_MAX as u64 + 5).collect();
        encode_pending(SECTOR, 9, 822, &full, crc, &mut s);
        assert_eq!(
            decode_pending(SECTOR, &s, 822, 100, crc),
            Ok((9, PENDING_MAX))
        );
        assert_eq!(pending_block(&s, PENDING_MAX - 1), PENDING_MAX as u64 - 1);
        // Each broken rule, with a valid CRC: (offset, width, value) put
        // into a sector listing 3 and 7.
        let bad = |at: usize, width: usize, v: u64| {
            let mut b = [0u8; SECTOR];
            encode_pending(SECTOR, 9, 822, &[3, 7], crc, &mut b);
            b[at..at + width].copy_from_slice(&v.to_le_bytes()[..width]);
            seal(&mut b, crc);
            decode_pending(SECTOR, &b, 822, 100, crc)
        };
        assert_eq!(bad(P_BLOCKS + 8, 8, 7), Ok((9, 2)));
        let cases = [
            (P_BLOCKS + 8, 8, 3),  // duplicate
            (P_BLOCKS + 8, 8, 2),  // descending
            (P_BLOCKS + 16, 8, 8), // beyond the count
            (P_COUNT, 4, PENDING_MAX as u64 + 1),
            (P_ZERO, 4, 1),
            ((P_BLOCKS + 8 * PENDING_MAX), 4, 1),
        ];
        for (at, width, v) in cases {
            assert_eq!(
                bad(at, width, v),
                Err(Defect::BadPending { at: 822 }),
                "{at}"
            );
        }
        let mut flipped = s;
        flipped[30] ^= 1;
        assert_eq!(
            decode_pending(SECTOR, &flipped, 822, 100, crc),
            Err(Defect::BadCrc)
        );
        assert_eq!(
            decode_pending(SECTOR, &[0u8; SECTOR], 822, 100, crc),
            Err(Defect::Blank)
        );
    }

    #[test]
    fn entries_round_trip() {
        let mut s = [0u8; SECTOR];
        let slots: [u64; 3] = [0, 11, 5];
        encode_entries(SECTOR, 8, 100, slots, crc, &mut s);
        assert_eq!(decode_entries(SECTOR, &s, 100, crc), Ok(8));
        assert_eq!(entry_slot(&s, 1), 11);
        assert_eq!(entry_slot(&s, 60), 0);
        assert!(decode_entries(SECTOR, &s, 101, crc).is_err());
    }

    /// Builds a whole copy image for `slots`.
    fn copy_image(h: &Header, slots: &[u64], entry_generation: u64) -> std::vec::Vec<u8> {
        copy_image_pending(h, slots, entry_generation, &[], h.generation)
    }

    /// Builds a whole copy image for `slots` and the pending list `pending`.
    fn copy_image_pending(
        h: &Header,
        slots: &[u64],
        entry_generation: u64,
        pending: &[u64],
        pending_generation: u64,
    ) -> std::vec::Vec<u8> {
        extern crate std;
        let at = h.layout.copy_start(h.copy_index);
        let n = h.layout.entry_units() as usize;
        let mut v = std::vec![0u8; (2 + n) * SECTOR];
        encode_pending(
            SECTOR,
            pending_generation,
            at + h.layout.pending_offset(),
            pending,
            crc,
            &mut v[(1 + n) * SECTOR..],
        );
        encode_header(h, crc, &mut v[..SECTOR]);
        for k in 0..n {
            let lo = (k * SLOTS_PER_SECTOR).min(slots.len());
            let hi = ((k + 1) * SLOTS_PER_SECTOR).min(slots.len());
            encode_entries(
                SECTOR,
                entry_generation,
                at + 1 + k as u64,
                slots[lo..hi].iter().copied(),
                crc,
                &mut v[(1 + k) * SECTOR..(2 + k) * SECTOR],
            );
        }
        v
    }

    #[test]
    fn copy_checks() {
        extern crate std;
        let mut h = header(1, 5);
        h.layout = Layout::new(5, 4096, 4096, 200).unwrap();
        let mut slots = std::vec![0u64; 200];
        slots[3] = 10;
        slots[150] = 99;
        h.remaps = 2;
        let at = h.layout.copy_start(1);
        let img = copy_image(&h, &slots, 5);
        assert_eq!(check_copy(&img, at, 4096, 1000, crc), Ok(h));
        // A slot beyond main.
        assert_eq!(
            check_copy(&img, at, 4096, 50, crc),
            Err(Defect::BadSlot { slot: 150 })
        );
        // Torn: an entry sector newer than the header.
        let torn = copy_image(&h, &slots, 6);
        assert!(matches!(
            check_copy(&torn, at, 4096, 1000, crc),
            Err(Defect::Torn { .. })
        ));
        // Count mismatch.
        let mut h3 = h;
        h3.remaps = 3;
        let bad = copy_image(&h3, &slots, 5);
        assert_eq!(
            check_copy(&bad, at, 4096, 1000, crc),
            Err(Defect::BadCount {
                header: 3,
                found: 2
            })
        );
        // A flipped bit in an entry sector.
        let mut flip = img.clone();
        flip[SECTOR * 3 + 40] ^= 1;
        assert_eq!(check_copy(&flip, at, 4096, 1000, crc), Err(Defect::BadCrc));
        // Too short a buffer: the pending sector is part of the copy.
        assert_eq!(
            check_copy(&img[..img.len() - SECTOR], at, 4096, 1000, crc),
            Err(Defect::BadLayout)
        );
    }

    #[test]
    fn copies_with_retired_slots_and_pending_blocks() {
        extern crate std;
        let mut h = header(2, 8);
        h.layout = Layout::new(5, 4096, 4096, 130).unwrap();
        let at = h.layout.copy_start(2);
        let pend_at = at + 1 + 3;
        let mut slots = std::vec![0u64; 130];
        slots[0] = 5;
        slots[1] = RETIRED;
        slots[64] = 900;
        slots[129] = RETIRED;
        h.remaps = 2;
        h.retired = 2;
        let img = copy_image_pending(&h, &slots, 7, &[2, 40, 999], 8);
        assert_eq!(img.len(), 5 * SECTOR);
        assert_eq!(check_copy(&img, at, 4096, 1000, crc), Ok(h));
        // The retired count must agree with the slots.
        let mut h1 = h;
        h1.retired = 1;
        assert_eq!(
            check_copy(
                &copy_image_pending(&h1, &slots, 7, &[], 8),
                at,
                4096,
                1000,
                crc
            ),
            Err(Defect::BadRetired {
                header: 1,
                found: 2
            })
        );
        // Retired slots are not remaps.
        let mut h2 = h;
        h2.remaps = 4;
        h2.retired = 0;
        assert_eq!(
            check_copy(
                &copy_image_pending(&h2, &slots, 7, &[], 8),
                at,
                4096,
                1000,
                crc
            ),
            Err(Defect::BadCount {
                header: 4,
                found: 2
            })
        );
        // RETIRED past the usable slots is a bad slot.
        let mut beyond = slots.clone();
        beyond.push(RETIRED);
        let mut h3 = h;
        h3.retired = 3;
        assert_eq!(
            check_copy(
                &copy_image_pending(&h3, &beyond, 7, &[], 8),
                at,
                4096,
                1000,
                crc
            ),
            Err(Defect::BadSlot { slot: 130 })
        );
        // A pending sector newer than the header: an interrupted commit.
        assert_eq!(
            check_copy(
                &copy_image_pending(&h, &slots, 7, &[2], 9),
                at,
                4096,
                1000,
                crc
            ),
            Err(Defect::Torn { at: pend_at })
        );
        // Older: every commit writes it, so this copy lost a write.
        assert_eq!(
            check_copy(
                &copy_image_pending(&h, &slots, 7, &[2], 7),
                at,
                4096,
                1000,
                crc
            ),
            Err(Defect::StalePending { at: pend_at })
        );
        // A pending block beyond main.
        assert_eq!(
            check_copy(&img, at, 4096, 999, crc),
            Err(Defect::BadPending { at: pend_at })
        );
        // A pending sector that was never written.
        let mut blank = img.clone();
        blank[4 * SECTOR..].fill(0);
        assert_eq!(check_copy(&blank, at, 4096, 1000, crc), Err(Defect::Blank));
    }

    #[test]
    fn decisions_under_every_combination() {
        let p = pair();
        let states_for = |mask: u32, kinds: &[u8]| -> std::vec::Vec<CopyState> {
            extern crate std;
            (0..5u32)
                .map(|i| {
                    let bit = (mask >> (2 * i)) & 3;
                    match kinds[bit as usize] {
                        b'v' => CopyState::Valid(header(i, 10)),
                        b's' => CopyState::Valid(header(i, 9)),
                        b'z' => CopyState::Bad(Defect::Blank),
                        _ => CopyState::Bad(Defect::BadCrc),
                    }
                })
                .collect()
        };
        extern crate std;
        // Each copy is valid (v), stale (s), zeroed (z) or corrupt (c).
        for mask in 0..(1u32 << 10) {
            let states = states_for(mask, b"vszc");
            let d = decide(&states, &p, false);
            let kinds: std::vec::Vec<u32> = (0..5).map(|i| (mask >> (2 * i)) & 3).collect();
            let newest = if kinds.contains(&0) {
                Some(0)
            } else if kinds.contains(&1) {
                Some(1)
            } else {
                None
            };
            match newest {
                Some(k) => {
                    let copy = kinds.iter().position(|&x| x == k).unwrap() as u32;
                    let repair = (0..5).filter(|&i| kinds[i] != k).fold(0, |m, i| m | 1 << i);
                    assert_eq!(d, Decision::Load { copy, repair }, "{kinds:?}");
                }
                None if kinds.iter().all(|&x| x == 2) => assert_eq!(d, Decision::Format),
                None => assert!(matches!(d, Decision::Refuse(_)), "{kinds:?}"),
            }
        }
        // A main that grew since is the same pair.
        let mut grown = header(0, 3);
        grown.identity.main_sectors = p.main_sectors - 8;
        let states = [CopyState::Valid(grown), CopyState::Bad(Defect::Blank)];
        assert!(matches!(
            decide(&states, &p, false),
            Decision::Load { copy: 0, .. }
        ));
        // So is a spare that grew; one that shrank is not.
        let mut grown = header(0, 3);
        grown.identity.spare_sectors = p.spare_sectors - 8;
        let states = [CopyState::Valid(grown), CopyState::Bad(Defect::Blank)];
        assert!(matches!(
            decide(&states, &p, false),
            Decision::Load { copy: 0, .. }
        ));
        let mut shrunk = header(0, 3);
        shrunk.identity.spare_sectors = p.spare_sectors + 8;
        let states = [CopyState::Valid(shrunk), CopyState::Bad(Defect::Blank)];
        assert!(matches!(decide(&states, &p, false), Decision::Refuse(_)));
        // Foreign metadata (here: a main that shrank) is refused, unless
        // formatting is asked for.
        let mut other = header(0, 3);
        other.identity.main_sectors = p.main_sectors + 8;
        let states = [CopyState::Valid(other), CopyState::Bad(Defect::Blank)];
        assert!(
            matches!(decide(&states, &p, false), Decision::Refuse(m) if m.to_str().unwrap().contains("different device pair"))
        );
        assert_eq!(decide(&states, &p, true), Decision::Format);
        // `format` never overwrites valid metadata of this pair.
        let states = [
            CopyState::Valid(header(0, 3)),
            CopyState::Bad(Defect::BadCrc),
        ];
        assert_eq!(
            decide(&states, &p, true),
            Decision::Load { copy: 0, repair: 2 }
        );
    }
    /// A version-3 copy built byte by byte from the tables of
    /// `docs/on-disk-format.md` (not with the encoder) decodes to what the
    /// doc says it holds.
    #[test]
    fn golden_v3_image_from_the_doc() {
        fn le(b: &mut [u8], at: usize, v: u64, n: usize) {
            b[at..at + n].copy_from_slice(&v.to_le_bytes()[..n]);
        }
        fn seal_at(b: &mut [u8], end: usize) {
            let c = crc32fast::hash(&b[..end - 4]);
            le(b, end - 4, u64::from(c), 4);
        }
        // 3 copies, stride 12 units (96 sectors), copy 1 at sector 96,
        // 4096-byte blocks, 600 usable slots (2 entry units), pool at 4096;
        // units of copy 1: header 96, entries 104 and 112, pending 120...
        let mut hdr = [0u8; 4096];
        hdr[0..8].copy_from_slice(b"dmremap\0");
        le(&mut hdr, 8, 3, 4); // format version
        le(&mut hdr, 12, 1, 4); // copy index
        le(&mut hdr, 16, 3, 4); // copies
        le(&mut hdr, 20, 4096, 4); // block size
        hdr[24..40].copy_from_slice(&[0xcd; 16]); // uuid
        le(&mut hdr, 40, 9, 8); // generation
        le(&mut hdr, 48, 96, 8); // self-location (sectors)
        le(&mut hdr, 56, 65536, 8); // main sectors
        le(&mut hdr, 64, 8192, 8); // spare sectors
        le(&mut hdr, 72, 4096, 8); // pool start
        le(&mut hdr, 80, 600, 8); // usable slots
        le(&mut hdr, 88, 2, 4); // entry units a copy has room for: 12 - 1 - 9
        le(&mut hdr, 92, 509, 4); // slots per entry unit
        le(&mut hdr, 96, 1, 8); // remaps
        le(&mut hdr, 104, 1, 8); // retired
        le(&mut hdr, 112, 12, 8); // stride in units
        le(&mut hdr, 120, 9, 4); // pending units
        le(&mut hdr, 124, 508, 4); // blocks per pending unit
        le(&mut hdr, 128, 2, 8); // pending blocks
        seal_at(&mut hdr[..512], 512); // the header's CRC ends its first sector

        let mut e0 = [0u8; 4096];
        le(&mut e0, 0, 8, 8); // generation: older than the header is fine
        le(&mut e0, 8, 104, 8); // self-location
        le(&mut e0, 16 + 8 * 7, 33, 8); // slot 7: main block 32
        seal_at(&mut e0, 4096);
        let mut e1 = [0u8; 4096];
        le(&mut e1, 0, 9, 8);
        le(&mut e1, 8, 112, 8);
        le(&mut e1, 16 + 8 * (599 - 509), u64::MAX, 8); // slot 599: retired
        seal_at(&mut e1, 4096);
        let mut p0 = [0u8; 4096];
        le(&mut p0, 0, 5, 8); // generation: written when the list last changed
        le(&mut p0, 8, 120, 8); // self-location
        le(&mut p0, 16, 2, 4); // count in this unit
        le(&mut p0, 24, 3, 8); // main block 3
        le(&mut p0, 32, 8191, 8); // main block 8191, the last
        seal_at(&mut p0, 4096);

        let mut image = std::vec::Vec::new();
        for u in [&hdr, &e0, &e1, &p0] {
            image.extend_from_slice(u);
        }
        // The 8 other pending units are not read (2 blocks fill one).
        image.resize(12 * 4096, 0xee);
        let h = check_copy(&image, 96, 0, 8192, crc).unwrap();
        assert_eq!(h.layout, Layout::v3(3, 12, 4096, 600).unwrap());
        assert_eq!(h.layout.copy_start(2), 192);
        assert_eq!((h.copy_index, h.generation), (1, 9));
        assert_eq!((h.remaps, h.retired, h.pending), (1, 1, 2));
        assert_eq!(h.identity.uuid, [0xcd; 16]);
        assert_eq!(h.identity.block_size, 4096);
        assert_eq!(
            pending_list(&image, &h).collect::<std::vec::Vec<_>>(),
            [3, 8191]
        );
        // The encoders produce the same bytes.
        let mut again = [0u8; 4096];
        encode_header(&h, crc, &mut again);
        assert_eq!(again, hdr);
        encode_pending(UNIT, 5, 120, &[3, 8191], crc, &mut again);
        assert_eq!(again, p0);
        // An entry unit newer than the header: torn.
        let mut torn = image.clone();
        le(&mut torn[4096..], 0, 10, 8);
        seal_at(&mut torn[4096..8192], 4096);
        assert_eq!(
            check_copy(&torn, 96, 0, 8192, crc),
            Err(Defect::Torn { at: 104 })
        );
        // A pending block beyond main.
        assert_eq!(
            check_copy(&image, 96, 0, 8191, crc),
            Err(Defect::BadPending { at: 120 })
        );
        // Anything in the header unit after its first sector.
        let mut tail = image.clone();
        tail[600] = 1;
        assert_eq!(check_copy(&tail, 96, 0, 8192, crc), Err(Defect::BadLayout));
    }

    #[test]
    fn a_newer_version_is_named_and_an_older_header_of_ours_is_not_blank() {
        let mut h = header(0, 4);
        h.layout = Layout::v3(5, 12, 4096, 100).unwrap();
        let mut u = [0u8; UNIT];
        encode_header(&h, crc, &mut u);
        assert_eq!(decode_header(&u, 0, 0, crc), Ok(h));
        for v in [4, 17, u32::MAX] {
            let mut newer = u;
            put_u32(&mut newer, H_VERSION, v);
            seal(&mut newer[..SECTOR], crc);
            assert_eq!(decode_header(&newer, 0, 0, crc), Err(Defect::BadVersion(v)));
            // Not sealed: damage, not a version.
            let mut flipped = newer;
            flipped[41] ^= 1;
            assert_eq!(decode_header(&flipped, 0, 0, crc), Err(Defect::BadCrc));
        }
        // A version-3 header in too short a buffer.
        assert_eq!(
            decode_header(&u[..SECTOR], 0, 0, crc),
            Err(Defect::BadLayout)
        );
    }

    #[test]
    fn unrecorded_read_errors_round_trip_and_are_checked() {
        // A version-3 header of a 64 MiB main with 4 KiB blocks (16,384).
        let layout = Layout::plan(5, 65536, 8, DEFAULT_MAX_SLOTS).unwrap();
        let mut h = Header {
            identity: Identity {
                block_size: 4096,
                ..pair()
            },
            layout,
            ..header(0, 7)
        };
        h.identity.main_sectors = 131_072;
        let mut u = Unrecorded::default();
        assert!(u.valid(1));
        for b in [900, 40, 16_383, 40] {
            u.add(b);
        }
        assert_eq!((u.count, u.first, u.last), (4, 40, 16_383));
        h.unrecorded = u;
        let mut unit = std::vec![0u8; UNIT];
        encode_header(&h, crc, &mut unit);
        assert_eq!(get_u64(&unit, 136), 4);
        assert_eq!(decode_header(&unit, 0, 4096, crc), Ok(h));
        // Inconsistent summaries, CRC intact: a count without blocks,
        // blocks without a count, first after last, a block beyond main.
        for (count, first, last) in [(0, 1, 1), (0, 0, 5), (3, 9, 8), (1, 0, 16_384)] {
            let mut b = unit.clone();
            put_u64(&mut b, H_UNRECORDED, count);
            put_u64(&mut b, H_UNRECORDED_FIRST, first);
            put_u64(&mut b, H_UNRECORDED_LAST, last);
            seal(&mut b[..SECTOR], crc);
            assert_eq!(
                decode_header(&b, 0, 4096, crc),
                Err(Defect::BadLayout),
                "{count} {first} {last}"
            );
        }
        // Version 2 has no room for it: never written, never read.
        let mut v2 = header(3, 42);
        v2.unrecorded = u;
        let mut s = [0u8; SECTOR];
        encode_header(&v2, crc, &mut s);
        assert!(s[136..SECTOR - 4].iter().all(|&x| x == 0));
        v2.unrecorded = Unrecorded::default();
        assert_eq!(
            decode_header(&s, v2.layout.copy_start(3), 4096, crc),
            Ok(v2)
        );
    }

    #[test]
    fn v3_layout_arithmetic() {
        // Strides have at most two significant bits, ascending.
        let s: std::vec::Vec<u64> = strides(64).collect();
        assert_eq!(s, [1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64]);
        assert!(strides(u64::MAX).all(valid_stride));
        assert_eq!(strides(u64::MAX).count(), 43);
        // A small spare: 16 MiB, 512-byte blocks: 28,672 blocks, 57 entry
        // units + header + 9 pending = 67 -> stride 96; 5 copies = 1.875 MiB,
        // so the area stays 2 MiB and the pool at 4096.
        let l = Layout::plan(5, 32768, 1, DEFAULT_MAX_SLOTS).unwrap();
        assert_eq!((l.copy_sectors, l.pool_start, l.slots), (768, 4096, 28_672));
        assert_eq!(l.entry_units(), 57);
        // 1,000,000 blocks of 4 KiB (a 3.9 GB spare): 1965 entry units,
        // 1975 with header and pending units -> stride 2048 units (8 MiB);
        // 5 copies: 40 MiB, 1 % of the pool.
        let spare = 1_000_000 * 8 + 40 * 2048;
        let l = Layout::plan(5, spare, 8, DEFAULT_MAX_SLOTS).unwrap();
        assert_eq!(l.copy_sectors, 2048 * 8);
        assert_eq!(l.pool_start, 40 * 2048);
        assert_eq!(l.slots, 1_000_000);
        assert_eq!(l.entry_units(), 1965);
        assert_eq!(l.area_sectors() * 512, 40 << 20);
        // 1,048,576 blocks (the default most) and more: the default stops
        // at 2^20 slots; stride 3072 units (12 MiB), 5 copies 60 MiB.
        let l = Layout::plan(5, 1 << 30, 8, DEFAULT_MAX_SLOTS).unwrap();
        assert_eq!(l.slots, DEFAULT_MAX_SLOTS);
        assert_eq!(l.copy_sectors, 3072 * 8);
        assert_eq!(l.area_sectors() * 512, 60 << 20);
        // `metadata_slots` asks for more.
        let l = Layout::plan(2, 1 << 40, 8, 4_000_000).unwrap();
        assert_eq!(l.slots, 4_000_000);
        assert!(l.entry_room() * SLOTS_PER_UNIT as u64 >= 4_000_000);
        // The pool is aligned to the block size and starts after the area.
        let l = Layout::plan(3, 1 << 22, 128, DEFAULT_MAX_SLOTS).unwrap();
        assert_eq!(l.pool_start % 128, 0);
        assert!(l.pool_start >= l.area_sectors().max(4096));
        // Every plan is a layout a header may name.
        for copies in 1..=MAX_COPIES {
            for spare in [4096 + 8, 8192, 1 << 16, 1 << 21, 1 << 26] {
                for bs in [1, 8, 128] {
                    if let Some(l) = Layout::plan(copies, spare, bs, DEFAULT_MAX_SLOTS) {
                        let again = Layout::v3(copies, l.copy_sectors / 8, l.pool_start, l.slots);
                        assert_eq!(again, Some(l));
                        assert!(l.pool_start + l.slots * bs <= spare);
                        assert!(l.copy_units() <= l.copy_sectors / 8);
                    }
                }
            }
        }
        // Too small: no block after the area.
        assert!(Layout::plan(5, 4096, 8, DEFAULT_MAX_SLOTS).is_none());
        // Layouts a header may not name.
        assert!(Layout::v3(0, 12, 4096, 1).is_none());
        assert!(Layout::v3(17, 12, 4096, 1).is_none());
        assert!(Layout::v3(1, 10, 4096, 1).is_none()); // not 2 bits
        assert!(Layout::v3(1, 8, 4096, 1).is_none()); // no room
        assert!(Layout::v3(1, 12, 4096, 0).is_none());
        assert!(Layout::v3(1, 12, 4097, 1).is_none());
        assert!(Layout::v3(1, 12, 2048, 1).is_none()); // pool below 4096
        assert!(Layout::v3(16, 48, 4096, 1).is_none()); // area past the pool
        assert!(Layout::v3(1, 12, 4096, 2 * 509 + 1).is_none());
        assert!(Layout::v3(1, 12, 4096, 2 * 509).is_some());
    }
}
