// SPDX-License-Identifier: GPL-2.0

//! Finding the metadata on a spare: where its copies are (the layout, from
//! the newest header found at any place a copy may be, so a lost copy 0
//! hides nothing), what each copy holds, and whether a table line may use
//! the spare. Reads only; what the constructor runs.

use super::*;
use crate::logic::format::{
    self, check_copy, decide, CopyState, Crc, Decision, Defect, Header, Identity, Layout, SECTOR,
};
use crate::logic::geometry::Geometry;
use crate::logic::mem::{Env, RawArray};

/// Reads every copy of `layout` and validates it.
pub(super) fn survey<E: Env>(
    io: &mut dyn MetaIo,
    layout: &Layout,
    pair: &Identity,
    crc: Crc,
) -> Result<([CopyState; format::MAX_COPIES as usize], RawArray<u8, E>), LoadError> {
    // Header, entry units and pending units.
    let mut buf = RawArray::<u8, E>::new(layout.copy_bytes()).ok_or(LoadError::NoMemory)?;
    let mut states = [CopyState::Bad(Defect::Blank); format::MAX_COPIES as usize];
    for i in 0..layout.copies {
        let at = layout.copy_start(i);
        states[i as usize] = match io.read(at, &mut buf) {
            Err(()) => CopyState::Bad(Defect::Unreadable),
            // Bounded by the main each header records (`check_copy`): whether
            // that main is ours is `decide`'s question.
            Ok(()) => match check_copy(&buf, at, layout.area_sectors(), u64::MAX, crc) {
                // Another pair's metadata is valid, just not ours: `decide`
                // tells the two apart.
                Ok(h) if h.layout == *layout || !pair.serves(&h.identity) => CopyState::Valid(h),
                Ok(_) => CopyState::Bad(Defect::BadLayout),
                // Blank means the whole copy, not just its header, or a
                // format that stopped before this copy's header: only empty
                // units of generation 1, our own, at their places.
                Err(Defect::Blank) if !unfinished_format(&buf, layout, i, crc) => {
                    CopyState::Bad(Defect::BadMagic)
                }
                // A copy formatting was writing when the machine stopped:
                // an empty generation-1 header over units torn on their way
                // to disk. It holds nothing, like a blank one.
                Err(_) if empty_format(&buf, layout, i, crc) => CopyState::Bad(Defect::Blank),
                Err(d) => CopyState::Bad(d),
            },
        };
    }
    Ok((states, buf))
}

/// Whether copy `i` of `layout`, whose header is blank, holds nothing but
/// what formatting writes before the header: each other unit zero, or an
/// empty entry or pending unit of generation 1 that names its own place
/// (CRC-checked). Such a copy is blank for `decide`: a crash while
/// formatting leaves a spare that formats again, with nothing lost. Anything
/// else (data that is not ours) is not blank.
fn unfinished_format(copy: &[u8], layout: &Layout, i: u32, crc: Crc) -> bool {
    let unit = layout.unit();
    copy.chunks(unit).enumerate().skip(1).all(|(k, s)| {
        formatted_empty(
            s,
            unit,
            layout.slots_per_unit(),
            layout.unit_at(i, k as u64),
            crc,
        )
    })
}

/// Whether `s`, the unit of `unit` bytes at sector `loc`, is zero or what
/// formatting writes there before any header: an empty generation-1 entry
/// unit (of `slots` slots) or pending unit naming its own place, or such an
/// entry unit torn on its way to disk.
fn formatted_empty(s: &[u8], unit: usize, slots: usize, loc: u64, crc: Crc) -> bool {
    s.iter().all(|&b| b == 0)
        || (s.len() == unit
            && ((format::decode_entries(unit, s, loc, crc) == Ok(1)
                && (0..slots).all(|i| format::entry_slot(s, i) == 0))
                || format::decode_pending(unit, s, loc, 0, crc) == Ok((1, 0))
                || empty_entries_torn(s, loc)))
}

/// Whether copy `i` of `layout` is what formatting writes, cut short: a
/// header of generation 1 with no remaps, retired or pending blocks, and
/// units as [`unfinished_format`] allows.
fn empty_format(copy: &[u8], layout: &Layout, i: u32, crc: Crc) -> bool {
    let at = layout.copy_start(i);
    matches!(format::decode_header(copy, at, layout.area_sectors(), crc),
        Ok(h) if h.generation == 1 && h.remaps == 0 && h.retired == 0 && h.pending == 0
            && h.layout == *layout)
        && unfinished_format(copy, layout, i, crc)
}

/// Whether `s` is an empty generation-1 entry unit for `loc` torn by a
/// crash: its first sector as formatting writes it (generation 1, its
/// location, no slots), every other sector either zero or as written (the
/// CRC at its end is the only other non-zero field).
fn empty_entries_torn(s: &[u8], loc: u64) -> bool {
    let Some((first, rest)) = s.split_first_chunk::<SECTOR>() else {
        return false;
    };
    let head = first[..8] == 1u64.to_le_bytes()
        && first[8..16] == loc.to_le_bytes()
        && first[16..].iter().all(|&b| b == 0);
    let end = rest.len().saturating_sub(4);
    head && rest[..end].iter().all(|&b| b == 0)
}

/// Whether `area`, the start of a spare with no valid header anywhere,
/// holds nothing but what formatting writes before copy 0's header: unit 0
/// (where that header goes) zero, and every other unit zero, an empty
/// generation-1 entry or pending unit naming its own place, or one torn on
/// its way to disk. Without a header there is no layout to go by; copy 0
/// starts at sector 0 whatever the layout, so its units are where they are
/// checked here. The module formats such a spare again (nothing is lost);
/// `dm-remap-tool` calls it blank for the same reason.
#[cfg(not(MODULE))]
pub fn interrupted_format(area: &[u8], crc: Crc) -> bool {
    let unit = format::UNIT;
    if area.len() < unit {
        return false;
    }
    let (head, rest) = area.split_at(unit);
    head.iter().all(|&b| b == 0)
        && rest.chunks(unit).enumerate().all(|(k, s)| {
            let loc = (k as u64 + 1) * format::UNIT_SECTORS;
            formatted_empty(s, unit, format::SLOTS_PER_UNIT, loc, crc)
        })
}

/// The layout of the newest header found, with its generation.
type Found = Option<(u64, Layout)>;

/// The spare's first [`format::MIN_AREA_SECTORS`] sectors, read in one
/// piece when that works: most places a header may be (every version-2 one,
/// and the version-3 ones of the smaller strides) lie there, and one read
/// beats a few hundred on a spare that has none. When the read fails (one
/// unreadable sector must not hide the rest), each place is read on its own.
struct Head<E: Env> {
    buf: RawArray<u8, E>,
    whole: bool,
}

impl<E: Env> Head<E> {
    fn read(io: &mut dyn MetaIo) -> Result<Self, LoadError> {
        // On the heap: stack memory is not valid for I/O.
        let mut buf = RawArray::<u8, E>::new(format::MIN_AREA_SECTORS as usize * SECTOR)
            .ok_or(LoadError::NoMemory)?;
        let whole = io.read(0, &mut buf).is_ok();
        Ok(Self { buf, whole })
    }

    /// The `len` bytes at sector `at`, if the head was read and holds them.
    fn get(&self, at: u64, len: usize) -> Option<&[u8]> {
        if !self.whole {
            return None;
        }
        let o = usize::try_from(at).ok()?.checked_mul(SECTOR)?;
        self.buf.get(o..o.checked_add(len)?)
    }
}

/// The version-2 layout recorded in the newest valid version-2 header found
/// at any place where some copy count puts a copy, with its generation.
fn find_v2<E: Env>(io: &mut dyn MetaIo, head: &Head<E>, crc: Crc) -> Result<Found, LoadError> {
    let area = format::MIN_AREA_SECTORS;
    let mut one = RawArray::<u8, E>::new(SECTOR).ok_or(LoadError::NoMemory)?;
    let mut best: Option<(u64, Layout)> = None;
    for c in 1..=format::MAX_COPIES {
        let Some(l) = Layout::new(c, area, area, 1) else {
            continue;
        };
        for i in 0..c {
            let at = l.copy_start(i);
            let s = if let Some(s) = head.get(at, SECTOR) {
                s
            } else if io.read(at, &mut one).is_ok() {
                &one[..]
            } else {
                continue;
            };
            if format::header_version(s) != Some(format::FORMAT_V2) {
                continue;
            }
            if let Ok(h) = format::decode_header(s, at, area, crc) {
                // Not `map_or(true, ..)`: newer clippy asks for
                // `is_none_or`, which rustc 1.78 lacks.
                let newer = match best {
                    Some((g, _)) => h.generation > g,
                    None => true,
                };
                if h.layout.copies == c && newer {
                    best = Some((h.generation, h.layout));
                }
            }
        }
    }
    Ok(best)
}

/// The version-3 layout recorded in the newest valid header found at unit
/// 0 or, when that is not one, at copy `i` (1–15) of every stride the spare
/// can hold; and the newest version found that this module does not know.
fn find_v3<E: Env>(
    io: &mut dyn MetaIo,
    head: &Head<E>,
    spare_sectors: u64,
    crc: Crc,
) -> Result<(Found, Option<u32>), LoadError> {
    // On the heap: stack memory is not valid for I/O.
    let mut one = RawArray::<u8, E>::new(format::UNIT).ok_or(LoadError::NoMemory)?;
    // Each layout found, with its generation and how many headers name it.
    let mut seen = [(0u64, None::<Layout>, 0u32); format::MAX_COPIES as usize];
    let mut newer: Option<u32> = None;
    let mut look = |at: u64, index: u32, seen: &mut [(u64, Option<Layout>, u32)]| {
        if at.saturating_add(format::UNIT_SECTORS) > spare_sectors {
            return;
        }
        let unit = match head.get(at, format::UNIT) {
            Some(u) => u,
            None if io.read(at, &mut one).is_ok() => &one[..],
            None => return,
        };
        match format::decode_header(unit, at, format::MIN_AREA_SECTORS, crc) {
            Ok(h)
                if h.layout.version == format::FORMAT_VERSION
                    && fits(&h, spare_sectors)
                    && h.copy_index == index =>
            {
                let key = (h.generation, Some(h.layout));
                if let Some(e) = seen.iter_mut().find(|e| (e.0, e.1) == key || e.1.is_none()) {
                    *e = (h.generation, Some(h.layout), e.2 + 1);
                }
            }
            Err(Defect::BadVersion(v)) if v > format::FORMAT_VERSION => {
                newer = Some(newer.map_or(v, |n| n.max(v)));
            }
            _ => {}
        }
    };
    look(0, 0, &mut seen);
    // With copy 0's header: the other places of its stride. Without: every
    // place some stride and copy index put a header (a header at `i × s`
    // names its own location, so it is found only where it belongs).
    let units = spare_sectors / format::UNIT_SECTORS;
    let stride = seen[0].1.map(|l| l.copy_sectors / format::UNIT_SECTORS);
    for s in format::strides(units / 2) {
        if stride.is_some_and(|x| x != s) {
            continue;
        }
        for i in 1..format::MAX_COPIES {
            let at = u64::from(i) * s * format::UNIT_SECTORS;
            if at >= spare_sectors {
                break;
            }
            look(at, i, &mut seen);
        }
    }
    // The newest generation; among layouts of that generation, the one
    // most headers name (commits write every copy with the same layout: a
    // header that disagrees is crafted or damaged). But a layout none of
    // whose copies is whole gives way to the newest one that has one: a
    // load that grows the pool rewrites every copy with more slots, and a
    // crash after the first copy's header but before the rest of that copy
    // leaves the newest header naming a layout no copy has whole yet.
    let mut found = [(0u64, 0u32, 0u32, None::<Layout>); format::MAX_COPIES as usize];
    for (f, &(g, l, n)) in found.iter_mut().zip(seen.iter()) {
        *f = (g, n, l.map_or(0, |l| l.copies), l);
    }
    found.sort_unstable_by_key(|&(g, n, c, _)| core::cmp::Reverse((g, n, c)));
    let best = found.iter().find_map(|&(g, _, _, l)| l.map(|l| (g, l)));
    for &(g, _, _, l) in &found {
        if let Some(l) = l {
            if any_valid::<E>(io, &l, crc)? {
                return Ok((Some((g, l)), newer));
            }
        }
    }
    Ok((best, newer))
}

/// The layout of the newest valid header on the spare behind `io` (of
/// `spare_sectors`), version 3 or 2, if any; and the newest format version
/// found that this module does not know, if any.
pub fn discover<E: Env>(
    io: &mut dyn MetaIo,
    spare_sectors: u64,
    crc: Crc,
) -> Result<(Option<Layout>, Option<u32>), LoadError> {
    let head = Head::<E>::read(io)?;
    let (v3, newer) = find_v3::<E>(io, &head, spare_sectors, crc)?;
    let v2 = find_v2::<E>(io, &head, crc)?;
    drop(head);
    // Both versions (a conversion stopped part-way): the newer header's
    // layout, unless none of its copies is valid and one of the other's is.
    let found = match (v3, v2) {
        (Some((g3, l3)), Some((g2, l2))) => {
            let (first, other) = if g2 > g3 { (l2, l3) } else { (l3, l2) };
            if !any_valid::<E>(io, &first, crc)? && any_valid::<E>(io, &other, crc)? {
                Some(other)
            } else {
                Some(first)
            }
        }
        (Some((_, l)), None) | (None, Some((_, l))) => Some(l),
        (None, None) => None,
    };
    Ok((found, newer))
}

/// Whether some copy of `layout` is valid.
fn any_valid<E: Env>(io: &mut dyn MetaIo, layout: &Layout, crc: Crc) -> Result<bool, LoadError> {
    let mut buf = RawArray::<u8, E>::new(layout.copy_bytes()).ok_or(LoadError::NoMemory)?;
    for i in 0..layout.copies {
        let at = layout.copy_start(i);
        if io.read(at, &mut buf).is_ok()
            && matches!(check_copy(&buf, at, layout.area_sectors(), u64::MAX, crc),
                Ok(h) if h.layout == *layout)
        {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Whether the pool `h` describes lies on a spare of `spare_sectors`,
/// aligned to its blocks.
fn fits(h: &Header, spare_sectors: u64) -> bool {
    let bs = u64::from(h.identity.block_size / 512);
    let l = &h.layout;
    bs != 0
        && l.pool_start % bs == 0
        && l.slots
            .checked_mul(bs)
            .and_then(|n| n.checked_add(l.pool_start))
            .is_some_and(|end| end <= spare_sectors)
}

/// What a table line asks of the metadata layout of a new spare.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LayoutRequest {
    /// Copies (`copies`).
    pub copies: u32,
    /// Most pool blocks described (`metadata_slots`).
    pub max_slots: u64,
    /// `format`.
    pub format: bool,
}

/// The layout of the copies on a spare: the newest valid header found
/// (version 3 or 2; a spare whose copy 0 is lost is found by its other
/// copies) gives it; a spare with none is laid out as a new version-3 spare
/// for `req`. A header of a newer version than this module knows refuses the
/// spare (unless formatting is asked for).
pub fn find_layout<E: Env>(
    io: &mut dyn MetaIo,
    geo: &Geometry,
    spare_sectors: u64,
    req: &LayoutRequest,
    crc: Crc,
) -> Result<Layout, LoadError> {
    let (found, newer) = discover::<E>(io, spare_sectors, crc)?;
    if let Some(l) = found {
        return Ok(l);
    }
    if let (Some(v), false) = (newer, req.format) {
        return Err(LoadError::Newer(v));
    }
    plan(geo, spare_sectors, req)
}

/// The version-3 layout of a new spare.
fn plan(geo: &Geometry, spare_sectors: u64, req: &LayoutRequest) -> Result<Layout, LoadError> {
    Layout::plan(req.copies, spare_sectors, geo.block_sectors, req.max_slots).ok_or(
        LoadError::Refused(c"Spare device too small for its metadata and one data block"),
    )
}

/// Finds the layout of the spare behind `io` (see [`find_layout`]) and
/// checks, without writing, whether the spare can be used by a target whose
/// devices form `pair`: what the constructor runs. A spare to be formatted
/// is laid out as a new version-3 spare, whatever it held.
pub fn check_spare<E: Env>(
    io: &mut dyn MetaIo,
    geo: &Geometry,
    pair: &Identity,
    req: &LayoutRequest,
    crc: Crc,
) -> Result<(Layout, Decision), LoadError> {
    let layout = find_layout::<E>(io, geo, pair.spare_sectors, req, crc)?;
    let (states, _) = survey::<E>(io, &layout, pair, crc)?;
    match decide(&states[..layout.copies as usize], pair, req.format) {
        Decision::Refuse(m) => Err(LoadError::Refused(m)),
        Decision::Format if layout.version != format::FORMAT_VERSION => {
            Ok((plan(geo, pair.spare_sectors, req)?, Decision::Format))
        }
        d => Ok((layout, d)),
    }
}

#[cfg(test)]
mod tests {
    use super::super::fake::*;
    use super::super::*;
    use super::*;

    use crate::logic::format::{self, Decision, SECTOR};

    use crate::HostEnv;
    extern crate std;
    use crate::logic::testing::{geo, MIB};

    use std::vec::Vec;

    #[test]
    fn copies_are_found_when_copy_0_is_lost() {
        // Formatted with 2 copies; then sector 0 (copy 0's header) is lost.
        // A table line with the default 5 copies must still find copy 1,
        // load it, and not format over it even when asked to.
        let g = geo(Some(4096));
        let (disk, layout, slot) = one_remap_with_copies(2);
        assert_eq!(layout.copies, 2);
        for garbage in [0u8, 0x5a] {
            let mut d = disk.clone();
            d.data[..SECTOR].fill(garbage);
            let found = test_layout(&mut d, &g, 5);
            assert_eq!(found.copies, 2, "garbage {garbage:#x}");
            let (t2, events) = load_asking_format(&mut d, found);
            assert!(
                events.iter().any(|e| matches!(
                    e,
                    Event::Loaded {
                        copy: 1,
                        remaps: 1,
                        ..
                    }
                )),
                "{events:?}"
            );
            assert!(!events.iter().any(|e| matches!(e, Event::Formatted { .. })));
            assert_eq!(t2.lookup(100), slot);
            all_copies_valid(&mut d, &found, "after the repair");
        }
    }

    #[test]
    fn copies_are_found_with_unit_0_and_all_but_one_copy_lost() {
        // For every copy count: formatted with n copies, one remap; then
        // unit 0 and every copy but copy k are overwritten with garbage. A
        // table line asking for another count finds copy k by probing, and
        // loads it; `format` does not format over it.
        let g = geo(Some(4096));
        let mut probes = 0;
        for n in 1..=format::MAX_COPIES {
            let (disk, layout, _) = one_remap_with_copies(n);
            assert_eq!(layout.copies, n);
            for k in 1..n {
                let mut d = disk.clone();
                for i in (0..n).filter(|&i| i != k) {
                    let at = layout.copy_start(i) as usize * SECTOR;
                    d.data[at..at + layout.copy_bytes()].fill(0x5a);
                }
                let found = test_layout(&mut d, &g, 17 - n);
                assert_eq!(found, layout, "{n} copies, copy {k} left");
                let (_, events) = load_asking_format(&mut d, found);
                assert!(
                    events
                        .iter()
                        .any(|e| matches!(e, Event::Loaded { copy, remaps: 1, .. } if *copy == k)),
                    "{n} copies, copy {k}: {events:?}"
                );
                assert!(!events.iter().any(|e| matches!(e, Event::Formatted { .. })));
                all_copies_valid(&mut d, &found, "after the repair");
                probes += 1;
            }
            // Every copy lost: garbage, refused without `format`.
            let mut d = disk.clone();
            for i in 0..n {
                let at = layout.copy_start(i) as usize * SECTOR;
                d.data[at..at + layout.copy_bytes()].fill(0x5a);
            }
            assert!(matches!(
                Fixture::on(Some(4096), d),
                Err(LoadError::Refused(_))
            ));
        }
        std::println!("copies found by probing in {probes} cases");
    }

    #[test]
    fn layout_is_found_past_an_unreadable_sector_and_a_blank_spare_costs_few_reads() {
        // One unreadable sector at the start of the spare (copy 0's header,
        // or another sector of its unit) fails the read of the first 2 MiB
        // in one piece: each place is then read on its own, and the other
        // copies are found.
        let (disk, layout, _) = one_remap_with_copies(3);
        for bad in [0, 1, 7] {
            let mut d = disk.clone();
            let mut io = BadSector {
                disk: &mut d,
                bad: Some(bad),
                reads: 0,
            };
            let found = discover::<HostEnv>(&mut io, 64 * MIB, crc32fast::hash).unwrap();
            assert_eq!(found, (Some(layout), None), "sector {bad} unreadable");
        }
        // A blank 64 MiB spare: the first 2 MiB in one read, then only the
        // places beyond it (329 places in all, 180 of them in the first 2 MiB).
        let mut blank = Disk::new();
        let mut io = BadSector {
            disk: &mut blank,
            bad: None,
            reads: 0,
        };
        let found = discover::<HostEnv>(&mut io, 64 * MIB, crc32fast::hash).unwrap();
        assert_eq!(found, (None, None));
        assert_eq!(io.reads, 1 + (329 - 180), "reads of a blank spare");
    }

    #[test]
    fn a_newer_format_version_is_refused_and_kept() {
        let mut f = Fixture::new(Some(4096));
        f.msg("add_remap 800 auto").unwrap();
        let layout = f.r.meta.layout;
        let mut disk = f.disk.clone();
        for i in 0..layout.copies {
            let at = layout.copy_start(i) as usize * SECTOR;
            let hdr = &mut disk.data[at..at + SECTOR];
            hdr[8..12].copy_from_slice(&4u32.to_le_bytes());
            format::seal(hdr, crc32fast::hash);
        }
        let before = disk.data.clone();
        let e = Fixture::on(Some(4096), disk.clone()).err();
        assert_eq!(e, Some(LoadError::Newer(4)));
        assert!(NEWER_VERSION
            .to_str()
            .unwrap()
            .contains("newer format version"));
        assert_eq!(disk.data, before, "nothing written");
        // With `format`, it is formatted over.
        let g = geo(Some(4096));
        let req = LayoutRequest {
            copies: 5,
            max_slots: format::DEFAULT_MAX_SLOTS,
            format: true,
        };
        let (l, d) =
            check_spare::<HostEnv>(&mut disk, &g, &pair(Some(4096)), &req, crc32fast::hash)
                .unwrap();
        assert_eq!((l, d), (layout, Decision::Format));
    }

    #[test]
    fn the_loader_survives_crafted_and_damaged_spares() {
        // A spare is untrusted input (a disk plugged in). Valid images with
        // remaps, a pending block and a retired block, then every field of
        // header, entry and pending sectors set to edge values and re-sealed
        // with a correct CRC (so the checks behind the CRC are reached), or
        // bytes flipped without re-sealing, 1-4 at a time. The loader must
        // never panic; what it accepts must be consistent (every copy valid
        // after its repairs, the table and the pool agreeing) and durable.
        let seed = 0xf022_1e55_u64;
        std::println!("loader fuzz seed {seed:#x}");
        let mut rng = crate::logic::TestRng(seed);
        let mut f = Fixture::new(Some(4096));
        f.msg("add_remap 80 auto 16").unwrap();
        f.msg("add_remap 8000 40960 24").unwrap();
        f.r.add_pending(2000);
        let s = f.r.reserve(100).unwrap();
        f.r.retire_slot(s);
        f.r.commit(&mut f.disk, s, s).unwrap();
        let base = f.disk.data.clone();
        let layout = f.r.meta.layout;
        let main_blocks = f.r.geo.main_blocks;
        // (offset, width) of every field (docs/on-disk-format.md).
        let header: &[(usize, usize)] = &[
            (8, 4),
            (12, 4),
            (16, 4),
            (20, 4),
            (40, 8),
            (48, 8),
            (56, 8),
            (64, 8),
            (72, 8),
            (80, 8),
            (88, 4),
            (92, 4),
            (96, 8),
            (104, 8),
            (112, 8),
            (120, 4),
            (124, 4),
            (128, 8),
        ];
        let edge = |rng: &mut crate::logic::TestRng, g: u64| -> u64 {
            let v = [
                0,
                1,
                2,
                60,
                61,
                62,
                9,
                508,
                509,
                4572,
                512,
                4096,
                4095,
                u64::from(u32::MAX),
                u64::MAX,
                u64::MAX - 1,
                main_blocks - 1,
                main_blocks,
                main_blocks + 1,
                layout.slots,
                layout.slots + 1,
                g,
                g.wrapping_add(1),
                g.wrapping_sub(1),
                rng.next(),
            ];
            v[rng.below(v.len() as u64) as usize]
        };
        let (mut accepted, mut refused) = (0, 0);
        for _ in 0..2000 {
            let mut img = base.clone();
            for _ in 0..1 + rng.below(4) {
                // One copy, or (a third of the time) the same change in
                // every copy: a consistently crafted spare.
                let all = rng.below(3) == 0;
                let first = rng.below(u64::from(layout.copies)) as u32;
                let copies = if all {
                    0..layout.copies
                } else {
                    first..first + 1
                };
                // Header, an entry unit or a pending unit.
                let unit = layout.unit();
                let k = match rng.below(3) {
                    0 => 0,
                    1 => 1 + rng.below(layout.entry_units()),
                    _ => layout.pending_offset() + rng.below(2),
                };
                let o = layout.unit_at(first, k) as usize * SECTOR;
                let g = u64::from_le_bytes(img[o + 40..o + 48].try_into().unwrap());
                let (off, width) = match k {
                    0 => header[rng.below(header.len() as u64) as usize],
                    _ if k >= layout.pending_offset() => {
                        let i = rng.below(2 + 1 + format::PENDING_PER_UNIT as u64) as usize;
                        match i {
                            0 | 1 => (8 * i, 8),
                            2 => (16, 4),
                            _ => (24 + 8 * (i - 3), 8),
                        }
                    }
                    _ => (8 * rng.below(2 + format::SLOTS_PER_UNIT as u64) as usize, 8),
                };
                let v = edge(&mut rng, g);
                let damage =
                    (rng.below(8) == 0).then(|| (rng.below(unit as u64) as usize, rng.below(8)));
                for copy in copies {
                    let o = layout.unit_at(copy, k) as usize * SECTOR;
                    let u = &mut img[o..o + unit];
                    u[off..off + width].copy_from_slice(&v.to_le_bytes()[..width]);
                    match damage {
                        // Damage without a matching CRC.
                        Some((b, bit)) => u[b] ^= 1 << bit,
                        // A header is sealed in its first sector.
                        None if k == 0 => format::seal(&mut u[..SECTOR], crc32fast::hash),
                        None => format::seal(u, crc32fast::hash),
                    }
                }
            }
            let disk = Disk {
                data: img,
                writes_left: None,
                log: Vec::new(),
            };
            let Ok(mut g) = Fixture::on(Some(4096), disk) else {
                refused += 1;
                continue;
            };
            accepted += 1;
            // A header crafted in every copy alike may name another layout:
            // the copies of the layout loaded must be valid.
            let loaded = g.r.meta.layout;
            all_copies_valid(&mut g.disk, &loaded, "an accepted image after its repairs");
            assert_eq!(g.t.len(), g.r.spare_used(), "table and pool disagree");
            let st = g.state();
            let again = Fixture::on(Some(4096), g.disk.clone());
            assert_eq!(again.map(|mut a| a.state()), Ok(st), "{:?}", g.events);
            // And it works: a change commits and loads again.
            if g.msg("add_remap 12000 auto").is_ok() {
                let st = g.state();
                assert_eq!(Fixture::on(Some(4096), g.disk.clone()).unwrap().state(), st);
            }
        }
        std::println!("loader fuzz: {accepted} accepted, {refused} refused");
        assert!(accepted > 0 && refused > 0);
    }

    #[test]
    fn a_format_stopped_before_copy_0s_header_is_an_interrupted_format() {
        // Formatting a blank spare, stopped after each write before the one
        // of copy 0's header: the area is what `dm-remap-tool` calls blank
        // (and the module formats again), also with the last write torn
        // after its first sector. Not so with a unit moved off its place, or
        // one unit of data that is not ours.
        let area = format::MIN_AREA_SECTORS as usize * SECTOR;
        let mut stopped = 0;
        for n in 0.. {
            let mut disk = Disk::new();
            disk.writes_left = Some(n);
            let g = geo(None);
            let layout = try_layout(&mut disk, &g, 5).unwrap();
            let (t, mut r) =
                Remaps::<HostEnv>::new(g, layout, pair(None), crc32fast::hash).unwrap();
            let _ = r.load(&t, &mut disk, false, [9; 16], &mut |_| {});
            if disk.data[..SECTOR].iter().any(|&b| b != 0) {
                break;
            }
            stopped += 1;
            assert!(
                interrupted_format(&disk.data[..area], crc32fast::hash),
                "{n} writes"
            );
            if let Some(&(at, len)) = disk.log.last() {
                let mut torn = disk.data.clone();
                let from = (at as usize + 1) * SECTOR;
                torn[from..(at as usize + len) * SECTOR].fill(0);
                assert!(
                    interrupted_format(&torn[..area], crc32fast::hash),
                    "{n} torn"
                );
                let mut moved = disk.data[..area].to_vec();
                let u = at as usize * SECTOR;
                moved.copy_within(u..u + format::UNIT, u + format::UNIT);
                moved[u..u + format::UNIT].fill(0);
                assert!(!interrupted_format(&moved, crc32fast::hash), "{n} moved");
            }
            let mut foreign = disk.data[..area].to_vec();
            foreign[5 * format::UNIT + 100] = 1;
            assert!(
                !interrupted_format(&foreign, crc32fast::hash),
                "{n} foreign"
            );
        }
        // The entry and pending units of copy 0, one write each or more.
        assert!(stopped >= 2, "{stopped}");
        let mut header = std::vec![0u8; area];
        header[0] = 1;
        assert!(!interrupted_format(&header, crc32fast::hash));
    }

    #[test]
    fn unusable_areas_are_refused_unless_formatting() {
        let mut disk = Disk::new();
        disk.data[12345] = 1;
        assert!(matches!(
            Fixture::on(None, disk.clone()),
            Err(LoadError::Refused(m)) if m.to_str().unwrap().contains("not blank")
        ));
        // Metadata of another device pair.
        let f = Fixture::new(Some(4096));
        assert!(matches!(
            Fixture::on(None, f.disk.clone()),
            Err(LoadError::Refused(m)) if m.to_str().unwrap().contains("different device pair")
        ));
    }

    #[test]
    fn full_metadata_area_is_refused() {
        // Formatted to describe fewer blocks than the pool has
        // (`metadata_slots 49837`).
        let g = geo(None);
        let mut disk = Disk::new();
        let layout = Layout::plan(5, 64 * MIB, 1, 49_837).unwrap();
        let (t, mut r) = Remaps::<HostEnv>::new(g, layout, pair(None), crc32fast::hash).unwrap();
        r.load(&t, &mut disk, false, [9; 16], &mut |_| {}).unwrap();
        let mut f = Fixture {
            t,
            r,
            disk,
            events: Vec::new(),
        };
        let slots = f.r.slots();
        assert_eq!(slots, 49_837);
        // 5 copies of 128 units.
        assert_eq!(f.r.geo.spare_data_start, 5120);
        f.msg(&std::format!("add_remap 0 auto {slots}")).unwrap();
        assert_eq!(
            f.msg(&std::format!("add_remap {slots} auto")).unwrap_err(),
            std::format!(
                "metadata area full: it describes {slots} spare blocks and all are in use"
            )
        );
        let beyond = 5120 + slots;
        assert!(f
            .msg(&std::format!("add_remap {} {beyond}", slots + 8))
            .unwrap_err()
            .starts_with("metadata area full"));
    }
}
