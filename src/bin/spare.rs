// SPDX-License-Identifier: GPL-2.0

//! What `dm-remap-tool` learns about a spare, and its `dump` text: shared by
//! `dm-remap-tool` and `dmr-log-replay --dump`, which prints the same dump
//! at every crash point without a process per point.

use dm_remap::logic::format::{
    check_copy, decode_header, newest_valid, CopyState, CopyView, Defect, Header, Layout,
    MIN_AREA_SECTORS, RETIRED, SECTOR,
};
use dm_remap::logic::remaps::{self, MetaIo};
use dm_remap::HostEnv;
use std::collections::HashMap;
use std::fmt::Write as _;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};

fn crc(b: &[u8]) -> u32 {
    crc32fast::hash(b)
}

/// What the tool learns about a spare.
pub(crate) struct Spare {
    pub(crate) size_sectors: u64,
    pub(crate) layout: Option<Layout>,
    pub(crate) copies: Vec<(u64, CopyState)>,
    /// Slot values (main block + 1, or `RETIRED`) of the newest valid copy.
    pub(crate) slots: Vec<u64>,
    /// Main blocks on the pending list of the newest valid copy.
    pub(crate) pending: Vec<u64>,
    pub(crate) best: Option<Header>,
    pub(crate) problems: Vec<String>,
    pub(crate) blank: bool,
    /// Blank because formatting stopped before copy 0's header was written
    /// (the units before it are there, and hold nothing).
    pub(crate) interrupted_format: bool,
    /// Format version of the newest valid copy.
    pub(crate) version: Option<u32>,
}

/// A spare (device or image file) read through the metadata I/O trait the
/// module uses; reads past its end fail.
struct SpareFile {
    file: File,
    size: u64,
}

impl MetaIo for SpareFile {
    fn read(&mut self, sector: u64, buf: &mut [u8]) -> Result<(), ()> {
        let at = sector.checked_mul(512).ok_or(())?;
        if at.saturating_add(buf.len() as u64) > self.size {
            return Err(());
        }
        self.file.seek(SeekFrom::Start(at)).map_err(|_| ())?;
        self.file.read_exact(buf).map_err(|_| ())
    }
    fn write(&mut self, _sector: u64, _buf: &[u8], _durable: bool) -> Result<(), ()> {
        Err(())
    }
}

pub(crate) fn read_spare(path: &str) -> Result<Spare, String> {
    let mut file = File::open(path).map_err(|e| format!("{path}: {e}"))?;
    let size = file
        .seek(SeekFrom::End(0))
        .map_err(|e| format!("{path}: {e}"))?;
    let mut io = SpareFile { file, size };
    // Blank: the least area any version takes is zero.
    let mut area = vec![0u8; (MIN_AREA_SECTORS as usize * SECTOR).min(size as usize)];
    io.read(0, &mut area)
        .map_err(|()| format!("{path}: read error"))?;
    let mut s = Spare {
        size_sectors: size / SECTOR as u64,
        layout: None,
        copies: Vec::new(),
        slots: Vec::new(),
        pending: Vec::new(),
        best: None,
        problems: Vec::new(),
        blank: area.iter().all(|&b| b == 0),
        interrupted_format: false,
        version: None,
    };
    if s.blank {
        return Ok(s);
    }
    // The layout, found as the module finds it.
    let (layout, newer) = remaps::discover::<HostEnv>(&mut io, s.size_sectors, crc)
        .map_err(|e| format!("{path}: {e:?}"))?;
    let Some(layout) = layout else {
        if newer.is_none() && remaps::interrupted_format(&area, crc) {
            // Formatting stopped before copy 0's header: the module
            // formats it again, nothing was stored.
            s.blank = true;
            s.interrupted_format = true;
            return Ok(s);
        }
        s.problems.push(match newer {
            Some(v) => format!("format version {v} is newer than this tool knows"),
            None => "no valid header in any copy, and the metadata area is not blank".into(),
        });
        return Ok(s);
    };
    s.layout = Some(layout);
    let mut bufs = Vec::new();
    for i in 0..layout.copies {
        let at = layout.copy_start(i);
        let mut buf = vec![0u8; layout.copy_bytes()];
        let mut state = match io.read(at, &mut buf) {
            Err(()) => CopyState::Bad(Defect::Unreadable),
            Ok(()) => {
                let main_blocks = decode_header(&buf, at, layout.area_sectors(), crc)
                    .map(|h| {
                        h.identity.main_sectors / (u64::from(h.identity.block_size) / 512).max(1)
                    })
                    .unwrap_or(u64::MAX);
                match check_copy(&buf, at, layout.area_sectors(), main_blocks, crc) {
                    Ok(h) if h.layout == layout => CopyState::Valid(h),
                    Ok(_) => CopyState::Bad(Defect::BadLayout),
                    Err(d) => CopyState::Bad(d),
                }
            }
        };
        if let CopyState::Valid(h) = state {
            if let Some(block) = duplicate(&buf, &h) {
                state = CopyState::Bad(Defect::Duplicate { block });
            }
        }
        s.copies.push((at, state));
        bufs.push(buf);
    }
    let states: Vec<CopyState> = s.copies.iter().map(|&(_, st)| st).collect();
    // The newest valid copy, as the module chooses among its pair's.
    let Some((bi, bh)) = newest_valid(&states, |_| true) else {
        s.problems.push("no valid metadata copy".into());
        for (i, (at, st)) in s.copies.iter().enumerate() {
            if let CopyState::Bad(d) = st {
                s.problems.push(format!("copy {i} (sector {at}): {d}"));
            }
        }
        return Ok(s);
    };
    s.version = Some(layout.version);
    let view = |i: usize| CopyView::new(&bufs[i], layout).expect("read whole");
    let best = view(bi as usize);
    s.slots = best.slots().collect();
    // The copy was validated, its pending units with it.
    s.pending = best.pending(&bh).collect();
    s.best = Some(bh);
    // Every copy must be valid, as new as the best and hold the same slots.
    for (i, (at, st)) in s.copies.iter().enumerate() {
        match st {
            CopyState::Bad(d) => s.problems.push(format!("copy {i} (sector {at}): {d}")),
            CopyState::Valid(h) if h.generation != bh.generation => s.problems.push(format!(
                "copy {i} (sector {at}): stale (generation {}, newest {})",
                h.generation, bh.generation
            )),
            CopyState::Valid(h) if h.identity != bh.identity => s
                .problems
                .push(format!("copy {i} (sector {at}): another device pair")),
            CopyState::Valid(h) => {
                let copy = view(i);
                let slots_differ = !copy.slots().eq(s.slots.iter().copied());
                if slots_differ {
                    s.problems.push(format!(
                        "copy {i} (sector {at}): same generation, different remaps"
                    ));
                }
                if !copy.pending(h).eq(s.pending.iter().copied()) {
                    s.problems.push(format!(
                        "copy {i} (sector {at}): same generation, different pending blocks"
                    ));
                }
            }
        }
    }
    // A spare that grew since (the module records the new size when it
    // next loads the metadata) is fine; one that shrank has lost part of
    // its pool.
    if bh.identity.spare_sectors > s.size_sectors {
        s.problems.push(format!(
            "header says the spare has {} sectors, the device has {}",
            bh.identity.spare_sectors, s.size_sectors
        ));
    }
    Ok(s)
}

/// A main block two slots of the copy in `buf` name, if any.
fn duplicate(buf: &[u8], h: &Header) -> Option<u64> {
    let mut seen = HashMap::new();
    let copy = CopyView::new(buf, h.layout)?;
    for (slot, v) in copy.slots().enumerate() {
        if v != 0 && v != RETIRED && seen.insert(v - 1, slot).is_some() {
            return Some(v - 1);
        }
    }
    None
}

/// The remaps as `(main_sector, spare_sector, nr_sectors)` runs, sorted.
pub(crate) fn extents(s: &Spare) -> Vec<(u64, u64, u64)> {
    let (Some(h), Some(l)) = (s.best, s.layout) else {
        return Vec::new();
    };
    let bs = u64::from(h.identity.block_size) / 512;
    let mut pairs: Vec<(u64, u64)> = s
        .slots
        .iter()
        .enumerate()
        .filter(|(_, &v)| v != 0 && v != RETIRED)
        .map(|(slot, &v)| (v - 1, slot as u64))
        .collect();
    pairs.sort_unstable();
    let mut out: Vec<(u64, u64, u64)> = Vec::new();
    for (m, p) in pairs {
        let (ms, ss) = (m * bs, l.pool_start + p * bs);
        match out.last_mut() {
            Some((m0, s0, n)) if *m0 + *n == ms && *s0 + *n == ss => *n += bs,
            _ => out.push((ms, ss, bs)),
        }
    }
    out
}

/// The retired pool blocks, as spare sectors, ascending.
pub(crate) fn retired_sectors(s: &Spare) -> Vec<u64> {
    let (Some(h), Some(l)) = (s.best, s.layout) else {
        return Vec::new();
    };
    let bs = u64::from(h.identity.block_size) / 512;
    s.slots
        .iter()
        .enumerate()
        .filter(|(_, &v)| v == RETIRED)
        .map(|(slot, _)| l.pool_start + slot as u64 * bs)
        .collect()
}

/// The pending main blocks, as main sectors, ascending.
pub(crate) fn pending_sectors(s: &Spare) -> Vec<u64> {
    let Some(h) = s.best else {
        return Vec::new();
    };
    let bs = u64::from(h.identity.block_size) / 512;
    s.pending.iter().map(|b| b * bs).collect()
}

pub(crate) fn uuid(u: &[u8; 16]) -> String {
    let mut s = String::new();
    for (i, b) in u.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            s.push('-');
        }
        let _ = write!(s, "{b:02x}");
    }
    s
}

pub(crate) fn state_text(st: &CopyState) -> (String, Option<u64>) {
    match st {
        CopyState::Valid(h) => ("valid".into(), Some(h.generation)),
        CopyState::Bad(d) => (d.to_string(), None),
    }
}

pub(crate) fn dump_text(s: &Spare) -> String {
    let mut o = String::new();
    if s.blank {
        o.push_str(if s.interrupted_format {
            "blank metadata area (formatting interrupted before copy 0's header)\n"
        } else {
            "blank metadata area (never formatted)\n"
        });
        return o;
    }
    if let (Some(h), Some(l)) = (s.best, s.layout) {
        let _ = writeln!(o, "format version {}", l.version);
        let _ = writeln!(o, "uuid           {}", uuid(&h.identity.uuid));
        let _ = writeln!(o, "generation     {}", h.generation);
        let _ = writeln!(o, "block size     {}", h.identity.block_size);
        let _ = writeln!(o, "main sectors   {}", h.identity.main_sectors);
        if h.identity.spare_sectors < s.size_sectors {
            let _ = writeln!(
                o,
                "spare sectors  {} (the device has grown to {}; recorded at the next load)",
                h.identity.spare_sectors, s.size_sectors
            );
        } else {
            let _ = writeln!(o, "spare sectors  {}", h.identity.spare_sectors);
        }
        let _ = writeln!(o, "pool start     {}", l.pool_start);
        let _ = writeln!(o, "slots          {}", l.slots);
        let _ = writeln!(o, "remaps         {}", h.remaps);
        let _ = writeln!(o, "retired        {}", h.retired);
        let _ = writeln!(o, "pending        {}", s.pending.len());
        if h.moved {
            let _ = writeln!(
                o,
                "moved          yes: the remaps moved to another spare; tables refuse this one"
            );
        }
        let u = h.unrecorded;
        if let Some((a, b)) = u.sectors(u64::from(h.identity.block_size) / 512) {
            let _ = writeln!(
                o,
                "unrecorded     {} failed reads, main sectors {a} to {b} (the pending list was full)",
                u.count
            );
        }
    }
    for (i, (at, st)) in s.copies.iter().enumerate() {
        let (text, generation) = state_text(st);
        match generation {
            Some(g) => {
                let _ = writeln!(o, "copy {i} at sector {at}: {text}, generation {g}");
            }
            None => {
                let _ = writeln!(o, "copy {i} at sector {at}: {text}");
            }
        }
    }
    for (m, sp, n) in extents(s) {
        let _ = writeln!(o, "{m} {sp} {n}");
    }
    for m in pending_sectors(s) {
        let _ = writeln!(o, "pending main sector {m}");
    }
    for sp in retired_sectors(s) {
        let _ = writeln!(o, "retired spare sector {sp}");
    }
    for p in &s.problems {
        let _ = writeln!(o, "problem: {p}");
    }
    o
}
