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
                if h.layout.copies == c && best.map_or(true, |(g, _)| h.generation > g) {
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
    // header that disagrees is crafted or damaged).
    let best = seen
        .iter()
        .filter_map(|&(g, l, n)| l.map(|l| (g, n, l)))
        .max_by_key(|&(g, n, l)| (g, n, l.copies))
        .map(|(g, _, l)| (g, l));
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
