// SPDX-License-Identifier: GPL-2.0

//! The on-disk format of the metadata area (specified in
//! `docs/on-disk-format.md`): encoding, decoding, validation of copies and the
//! choice of the copy to load.
//!
//! The area holds `copies` equal copies at fixed places. A copy is a header
//! sector followed by entry sectors. Entry slot `i` describes spare pool block
//! `i`: the main block whose data it holds, plus one, or 0 when it is free.
//! Every sector carries a CRC-32 (IEEE, as zlib and `crc32fast` compute it),
//! its own location and a generation; a copy is only valid if none of its
//! entry sectors is newer than its header, which is written last.

use core::fmt;

/// Bytes of a sector.
pub const SECTOR: usize = 512;
/// Magic at the start of every header.
pub const MAGIC: [u8; 8] = *b"dmremap\0";
/// Version of this format.
pub const FORMAT_VERSION: u32 = 1;
/// Entry slots in one entry sector.
pub const SLOTS_PER_SECTOR: usize = 61;
/// Copies written by default.
pub const DEFAULT_COPIES: u32 = 5;
/// Most copies accepted.
pub const MAX_COPIES: u32 = 16;

/// A CRC-32 (IEEE) function: the kernel's `crc32_le` or `crc32fast`.
pub type Crc = fn(&[u8]) -> u32;

// Header field offsets.
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
const H_END: usize = 104;
// Entry sector offsets.
const E_GENERATION: usize = 0;
const E_LOCATION: usize = 8;
const E_SLOTS: usize = 16;
const E_END: usize = E_SLOTS + 8 * SLOTS_PER_SECTOR;
/// Both sector kinds end with the CRC of the bytes before it.
const CRC_AT: usize = SECTOR - 4;

const _: () = assert!(H_END <= CRC_AT);
const _: () = assert!(E_END <= CRC_AT);
const _: () = assert!(H_UUID + 16 == H_GENERATION);

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
    /// Whether `other` describes the same device pair (the UUID aside).
    pub fn same_pair(&self, other: &Identity) -> bool {
        self.main_sectors == other.main_sectors
            && self.spare_sectors == other.spare_sectors
            && self.block_size == other.block_size
    }
}

/// Where the copies live.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layout {
    /// Number of copies.
    pub copies: u32,
    /// Sectors per copy (header included).
    pub copy_sectors: u64,
    /// First sector of the data pool.
    pub pool_start: u64,
    /// Usable pool blocks: the pool, cut to what one copy can describe.
    pub slots: u64,
}

impl Layout {
    /// The layout of `copies` copies in an area of `area_sectors` for a pool
    /// of `pool_blocks` blocks starting at `pool_start`.
    pub fn new(copies: u32, area_sectors: u64, pool_start: u64, pool_blocks: u64) -> Option<Self> {
        if copies == 0 || copies > MAX_COPIES {
            return None;
        }
        let copy_sectors = area_sectors / u64::from(copies);
        if copy_sectors < 2 {
            return None;
        }
        let capacity = (copy_sectors - 1) * SLOTS_PER_SECTOR as u64;
        Some(Self {
            copies,
            copy_sectors,
            pool_start,
            slots: pool_blocks.min(capacity),
        })
    }

    /// First sector of copy `i` (its header).
    pub fn copy_start(&self, i: u32) -> u64 {
        u64::from(i) * self.copy_sectors
    }

    /// Entry sectors in use per copy.
    pub fn entry_sectors(&self) -> u64 {
        self.slots.div_ceil(SLOTS_PER_SECTOR as u64)
    }

    /// Entry sector (0-based, within a copy) holding `slot`.
    pub fn sector_of(slot: u64) -> u64 {
        slot / SLOTS_PER_SECTOR as u64
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
    /// Remaps in the copy.
    pub remaps: u64,
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
    /// An entry sector newer than its header: an interrupted commit.
    Torn {
        /// The entry sector's location.
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
            Defect::Torn { at } => write!(
                f,
                "interrupted commit (entry sector {at} newer than header)"
            ),
            Defect::BadSlot { slot } => write!(f, "slot {slot} names a block beyond main"),
            Defect::Duplicate { block } => write!(f, "main block {block} remapped twice"),
            Defect::BadCount { header, found } => {
                write!(f, "header counts {header} remaps, slots hold {found}")
            }
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

fn seal(b: &mut [u8], crc: Crc) {
    let c = crc(&b[..CRC_AT]);
    put_u32(b, CRC_AT, c);
}

fn check_crc(b: &[u8], crc: Crc) -> Result<(), Defect> {
    if b.iter().all(|&x| x == 0) {
        return Err(Defect::Blank);
    }
    if crc(&b[..CRC_AT]) != get_u32(b, CRC_AT) {
        return Err(Defect::BadCrc);
    }
    Ok(())
}

/// Writes header `h` for copy `h.copy_index` into `out` (one sector).
pub fn encode_header(h: &Header, crc: Crc, out: &mut [u8]) {
    let out = &mut out[..SECTOR];
    out.fill(0);
    out[H_MAGIC..H_MAGIC + 8].copy_from_slice(&MAGIC);
    put_u32(out, H_VERSION, FORMAT_VERSION);
    put_u32(out, H_COPY_INDEX, h.copy_index);
    put_u32(out, H_COPIES, h.layout.copies);
    put_u32(out, H_BLOCK_SIZE, h.identity.block_size);
    out[H_UUID..H_UUID + 16].copy_from_slice(&h.identity.uuid);
    put_u64(out, H_GENERATION, h.generation);
    put_u64(out, H_LOCATION, h.layout.copy_start(h.copy_index));
    put_u64(out, H_MAIN_SECTORS, h.identity.main_sectors);
    put_u64(out, H_SPARE_SECTORS, h.identity.spare_sectors);
    put_u64(out, H_POOL_START, h.layout.pool_start);
    put_u64(out, H_SLOTS, h.layout.slots);
    put_u32(out, H_ENTRY_SECTORS, (h.layout.copy_sectors - 1) as u32);
    put_u32(out, H_SLOTS_PER_SECTOR, SLOTS_PER_SECTOR as u32);
    put_u64(out, H_REMAPS, h.remaps);
    seal(out, crc);
}

/// Decodes the header read at sector `at` of an area of `area_sectors`.
pub fn decode_header(b: &[u8], at: u64, area_sectors: u64, crc: Crc) -> Result<Header, Defect> {
    let b = &b[..SECTOR];
    check_crc(b, crc)?;
    if b[H_MAGIC..H_MAGIC + 8] != MAGIC {
        return Err(Defect::BadMagic);
    }
    let version = get_u32(b, H_VERSION);
    if version != FORMAT_VERSION {
        return Err(Defect::BadVersion(version));
    }
    let copies = get_u32(b, H_COPIES);
    let copy_index = get_u32(b, H_COPY_INDEX);
    let pool_start = get_u64(b, H_POOL_START);
    let slots = get_u64(b, H_SLOTS);
    let layout = Layout::new(copies, area_sectors, pool_start, slots).ok_or(Defect::BadLayout)?;
    if copy_index >= copies
        || layout.slots != slots
        || u64::from(get_u32(b, H_ENTRY_SECTORS)) != layout.copy_sectors - 1
        || get_u32(b, H_SLOTS_PER_SECTOR) as usize != SLOTS_PER_SECTOR
    {
        return Err(Defect::BadLayout);
    }
    let found = get_u64(b, H_LOCATION);
    if found != at || layout.copy_start(copy_index) != at {
        return Err(Defect::BadLocation { found, at });
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
        generation: get_u64(b, H_GENERATION),
        copy_index,
        layout,
        remaps: get_u64(b, H_REMAPS),
    })
}

/// Writes an entry sector at `location` with generation `generation` holding
/// `slots` (each the main block plus one, or 0).
pub fn encode_entries(generation: u64, location: u64, slots: &[u64], crc: Crc, out: &mut [u8]) {
    let out = &mut out[..SECTOR];
    out.fill(0);
    put_u64(out, E_GENERATION, generation);
    put_u64(out, E_LOCATION, location);
    for (i, s) in slots.iter().take(SLOTS_PER_SECTOR).enumerate() {
        put_u64(out, E_SLOTS + 8 * i, *s);
    }
    seal(out, crc);
}

/// Decodes an entry sector read at `at`; returns its generation.
pub fn decode_entries(b: &[u8], at: u64, crc: Crc) -> Result<u64, Defect> {
    let b = &b[..SECTOR];
    check_crc(b, crc)?;
    let found = get_u64(b, E_LOCATION);
    if found != at {
        return Err(Defect::BadLocation { found, at });
    }
    Ok(get_u64(b, E_GENERATION))
}

/// Slot `i` (0..61) of an entry sector that decoded fine.
pub fn entry_slot(b: &[u8], i: usize) -> u64 {
    get_u64(b, E_SLOTS + 8 * i)
}

/// Validates a copy read whole into `buf` from sector `at` of an area of
/// `area_sectors`, for a main device of `main_blocks` blocks. Checks every
/// sector, the generations and the slot values; duplicates are found by the
/// loader (it needs a table for that).
pub fn check_copy(
    buf: &[u8],
    at: u64,
    area_sectors: u64,
    main_blocks: u64,
    crc: Crc,
) -> Result<Header, Defect> {
    let h = decode_header(buf, at, area_sectors, crc)?;
    let sectors = h.layout.entry_sectors() as usize;
    if buf.len() < (1 + sectors) * SECTOR {
        return Err(Defect::BadLayout);
    }
    let mut used = 0u64;
    for k in 0..sectors {
        let loc = at + 1 + k as u64;
        let s = &buf[(1 + k) * SECTOR..(2 + k) * SECTOR];
        let generation = decode_entries(s, loc, crc)?;
        if generation > h.generation {
            return Err(Defect::Torn { at: loc });
        }
        for i in 0..SLOTS_PER_SECTOR {
            let slot = (k * SLOTS_PER_SECTOR + i) as u64;
            let v = entry_slot(s, i);
            if v == 0 {
                continue;
            }
            if slot >= h.layout.slots || v > main_blocks {
                return Err(Defect::BadSlot { slot });
            }
            used += 1;
        }
    }
    if used != h.remaps {
        return Err(Defect::BadCount {
            header: h.remaps,
            found: used,
        });
    }
    Ok(h)
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
/// none (garbage, or metadata of another pair).
pub fn decide(states: &[CopyState], pair: &Identity, format: bool) -> Decision {
    let mut best: Option<(u32, u64)> = None;
    let mut foreign = false;
    for (i, s) in states.iter().enumerate() {
        if let CopyState::Valid(h) = s {
            if !h.identity.same_pair(pair) {
                foreign = true;
                continue;
            }
            if best.is_none_or_older(h.generation) {
                best = Some((i as u32, h.generation));
            }
        }
    }
    if let Some((copy, generation)) = best {
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
            c"Spare belongs to a different device pair (sizes or block size differ); add the 'format' feature to overwrite it",
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

trait OlderThan {
    fn is_none_or_older(&self, generation: u64) -> bool;
}

impl OlderThan for Option<(u32, u64)> {
    fn is_none_or_older(&self, generation: u64) -> bool {
        match self {
            None => true,
            Some((_, g)) => *g < generation,
        }
    }
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
        }
    }

    #[test]
    fn crc_agreement_vector() {
        assert_eq!(crc(b"123456789"), 0xcbf4_3926);
        assert_eq!(crc_bitwise(b"123456789"), 0xcbf4_3926);
        let mut s = [0u8; SECTOR];
        encode_header(&header(2, 9), crc, &mut s);
        assert_eq!(crc(&s[..CRC_AT]), crc_bitwise(&s[..CRC_AT]));
    }

    /// A copy built byte by byte from the tables of `docs/on-disk-format.md`
    /// (not with the encoder) decodes to what the doc says it holds.
    #[test]
    fn golden_image_from_the_doc() {
        fn le(b: &mut [u8], at: usize, v: u64, n: usize) {
            b[at..at + n].copy_from_slice(&v.to_le_bytes()[..n]);
        }
        // 5 copies, copy 1 at sector 819, 512-byte blocks, 100 usable slots.
        let mut hdr = [0u8; 512];
        hdr[0..8].copy_from_slice(b"dmremap\0");
        le(&mut hdr, 8, 1, 4); // format version
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
        le(&mut hdr, 88, 818, 4); // entry sectors per copy
        le(&mut hdr, 92, 61, 4); // slots per entry sector
        le(&mut hdr, 96, 2, 8); // remaps
        let c = crc32fast::hash(&hdr[..508]);
        le(&mut hdr, 508, u64::from(c), 4);

        let mut e0 = [0u8; 512];
        le(&mut e0, 0, 77, 8); // generation
        le(&mut e0, 8, 820, 8); // self-location
        le(&mut e0, 16 + 8 * 3, 11, 8); // slot 3: main block 10
        let c = crc32fast::hash(&e0[..508]);
        le(&mut e0, 508, u64::from(c), 4);
        let mut e1 = [0u8; 512];
        le(&mut e1, 0, 76, 8);
        le(&mut e1, 8, 821, 8);
        le(&mut e1, 16 + 8 * (99 - 61), 501, 8); // slot 99: main block 500
        let c = crc32fast::hash(&e1[..508]);
        le(&mut e1, 508, u64::from(c), 4);

        let mut image = std::vec::Vec::new();
        image.extend_from_slice(&hdr);
        image.extend_from_slice(&e0);
        image.extend_from_slice(&e1);
        let h = check_copy(&image, 819, 4096, 65536, crc).unwrap();
        assert_eq!(h.copy_index, 1);
        assert_eq!(h.generation, 77);
        assert_eq!(h.remaps, 2);
        assert_eq!(h.identity.uuid, [0xab; 16]);
        assert_eq!(h.identity.main_sectors, 65536);
        assert_eq!(h.identity.spare_sectors, 32768);
        assert_eq!(h.identity.block_size, 512);
        assert_eq!(h.layout.pool_start, 4096);
        assert_eq!(h.layout.slots, 100);
        assert_eq!(h.layout.copy_sectors, 819);
        assert_eq!(entry_slot(&e0, 3), 11);
        assert_eq!(entry_slot(&e1, 38), 501);
        // And the encoder produces the same header bytes.
        let mut again = [0u8; 512];
        encode_header(&h, crc, &mut again);
        assert_eq!(again, hdr);
    }

    #[test]
    fn layout_numbers() {
        let l = Layout::new(5, 4096, 4096, 126976).unwrap();
        assert_eq!(l.copy_sectors, 819);
        assert_eq!(l.slots, 818 * 61);
        assert_eq!(l.copy_start(4), 3276);
        assert_eq!(l.entry_sectors(), 818);
        let small = Layout::new(5, 4096, 4096, 100).unwrap();
        assert_eq!(small.slots, 100);
        assert_eq!(small.entry_sectors(), 2);
        assert!(Layout::new(0, 4096, 4096, 1).is_none());
        assert!(Layout::new(17, 4096, 4096, 1).is_none());
        assert!(Layout::new(3000, 4096, 4096, 1).is_none());
    }

    #[test]
    fn header_round_trip_and_defects() {
        let h = header(3, 42);
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
        let mut v2 = s;
        put_u32(&mut v2, H_VERSION, 2);
        seal(&mut v2, crc);
        assert_eq!(
            decode_header(&v2, at, 4096, crc),
            Err(Defect::BadVersion(2))
        );
    }

    #[test]
    fn entries_round_trip() {
        let mut s = [0u8; SECTOR];
        let slots: [u64; 3] = [0, 11, 5];
        encode_entries(8, 100, &slots, crc, &mut s);
        assert_eq!(decode_entries(&s, 100, crc), Ok(8));
        assert_eq!(entry_slot(&s, 1), 11);
        assert_eq!(entry_slot(&s, 60), 0);
        assert!(decode_entries(&s, 101, crc).is_err());
    }

    /// Builds a whole copy image for `slots`.
    fn copy_image(h: &Header, slots: &[u64], entry_generation: u64) -> std::vec::Vec<u8> {
        extern crate std;
        let at = h.layout.copy_start(h.copy_index);
        let n = h.layout.entry_sectors() as usize;
        let mut v = std::vec![0u8; (1 + n) * SECTOR];
        encode_header(h, crc, &mut v[..SECTOR]);
        for k in 0..n {
            let lo = (k * SLOTS_PER_SECTOR).min(slots.len());
            let hi = ((k + 1) * SLOTS_PER_SECTOR).min(slots.len());
            encode_entries(
                entry_generation,
                at + 1 + k as u64,
                &slots[lo..hi],
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
        // Foreign metadata is refused, unless formatting is asked for.
        let mut other = header(0, 3);
        other.identity.main_sectors = 999;
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
}
