// SPDX-License-Identifier: GPL-2.0

//! Making the remaps durable: loading the newest valid copy (repairing the
//! others, or formatting a blank area), committing changes to every copy
//! (only what changed, and the headers last), verifying and rewriting the
//! copies, and converting a version-2 spare.

use super::discover::survey;
use super::*;
use crate::logic::format::{
    self, decide, encode_entries, encode_header, encode_pending, CopyState, Decision, Defect,
    Header, Layout, RETIRED, SECTOR,
};
use crate::logic::mem::{Env, RawArray};
use crate::logic::message::MsgError;
use crate::logic::table::RemapTable;

impl<E: Env> Remaps<E> {
    /// Loads the metadata: the newest valid copy becomes the table, stale and
    /// defective copies are rewritten, a blank area (or, with
    /// `format_requested`, an unusable one) is formatted with `uuid`.
    /// Loading twice does nothing.
    pub fn load(
        &mut self,
        t: &RemapTable<E>,
        io: &mut dyn MetaIo,
        format_requested: bool,
        uuid: [u8; 16],
        ev: &mut dyn FnMut(Event),
    ) -> Result<(), LoadError> {
        if self.meta.loaded {
            return Ok(());
        }
        let crc = self.meta.crc;
        let mut layout = self.meta.layout;
        let pair = self.meta.identity;
        let (mut states, mut buf) = survey::<E>(io, &layout, &pair, crc)?;
        if !states[..layout.copies as usize]
            .iter()
            .any(|s| matches!(s, CopyState::Valid(_)))
        {
            // The layout the constructor found may be gone: the table this
            // one replaces converted the spare meanwhile (the pool and its
            // size stay; only the copies moved).
            if let (Some(l), _) = discover::<E>(io, pair.spare_sectors, crc)? {
                if l != layout && l.pool_start == layout.pool_start && l.slots == layout.slots {
                    layout = l;
                    self.meta.layout = l;
                    (states, buf) = survey::<E>(io, &layout, &pair, crc)?;
                }
            }
        }
        let copies = layout.copies as usize;
        // A copy whose slots name one main block twice is defective too; try
        // the next best then.
        for _ in 0..copies {
            match decide(&states[..copies], &self.meta.identity, format_requested) {
                Decision::Refuse(m) => return Err(LoadError::Refused(m)),
                Decision::Format => {
                    self.meta.identity.uuid = uuid;
                    self.meta.generation = 1;
                    let _ = t.clear(&mut self.writer);
                    self.pool.reset();
                    self.clear_pending();
                    for i in 0..layout.copies {
                        self.write_copy(io, i)?;
                    }
                    ev(Event::Formatted {
                        copies: layout.copies,
                    });
                    self.meta.loaded = true;
                    return Ok(());
                }
                Decision::Load { copy, repair } => {
                    let at = layout.copy_start(copy);
                    io.read(at, &mut buf).map_err(|()| LoadError::Io)?;
                    let h = match states[copy as usize] {
                        CopyState::Valid(h) => h,
                        CopyState::Bad(_) => return Err(LoadError::Io),
                    };
                    match self.fill(t, &buf, &h, ev) {
                        Ok(()) => {}
                        Err(Some(d)) => {
                            states[copy as usize] = CopyState::Bad(d);
                            continue;
                        }
                        Err(None) => return Err(LoadError::NoMemory),
                    }
                    self.meta.identity = h.identity;
                    self.meta.generation = h.generation;
                    ev(Event::Loaded {
                        copy,
                        generation: h.generation,
                        remaps: h.remaps,
                    });
                    for i in 0..layout.copies {
                        if repair & (1 << i) != 0 {
                            self.write_copy(io, i)?;
                            let defect = match states[i as usize] {
                                CopyState::Bad(d) => d,
                                CopyState::Valid(c) => Defect::Stale {
                                    generation: c.generation,
                                },
                            };
                            ev(Event::Repaired { copy: i, defect });
                        }
                    }
                    if h.identity.main_sectors != pair.main_sectors {
                        // Grown (`serves`): record the new size in every
                        // copy, with a new generation.
                        self.meta.identity.main_sectors = pair.main_sectors;
                        self.rewrite_all(io).map_err(|e| match e {
                            MsgError::NoMemory => LoadError::NoMemory,
                            _ => LoadError::Write,
                        })?;
                        ev(Event::MainGrown {
                            from: h.identity.main_sectors,
                            to: pair.main_sectors,
                        });
                    }
                    self.meta.loaded = true;
                    return Ok(());
                }
            }
        }
        Err(LoadError::Refused(c"No usable metadata copy"))
    }

    /// Builds the table and pool from a validated copy image. `Err(Some)`: the
    /// copy is defective; `Err(None)`: out of memory.
    fn fill(
        &mut self,
        t: &RemapTable<E>,
        buf: &[u8],
        h: &Header,
        ev: &mut dyn FnMut(Event),
    ) -> Result<(), Option<Defect>> {
        let _ = t.clear(&mut self.writer);
        self.pool.reset();
        self.clear_pending();
        self.resize_for(t, h.remaps, ev);
        let l = h.layout;
        let copy = format::CopyView::new(buf, l).ok_or(None)?;
        for (slot, v) in (0..l.slots).zip(copy.slots()) {
            if v == 0 {
                continue;
            }
            if v == RETIRED {
                self.pool.retire(slot);
                continue;
            }
            let main = v - 1;
            match t.insert(&mut self.writer, main, slot) {
                Ok(()) => {}
                Err(crate::logic::table::TableError::Exists) => {
                    let _ = t.clear(&mut self.writer);
                    self.pool.reset();
                    return Err(Some(Defect::Duplicate { block: main }));
                }
                Err(_) => return Err(None),
            }
            self.pool.take(slot, main);
        }
        // The copy was validated: the list is ascending, distinct and inside
        // main, and no longer than the format allows.
        let mut n = 0;
        for block in copy.pending(h) {
            if n == self.pending_capacity() || block >= self.geo.main_blocks {
                let _ = t.clear(&mut self.writer);
                self.pool.reset();
                return Err(Some(Defect::BadPending {
                    at: l.unit_at(h.copy_index, l.pending_offset()),
                }));
            }
            self.pending_list[n] = block;
            n += 1;
        }
        self.meta.pending_len = n;
        self.meta.pending_dirty = false;
        Ok(())
    }

    /// Writes copy `i` whole from memory, at the current generation.
    fn write_copy(&mut self, io: &mut dyn MetaIo, i: u32) -> Result<(), LoadError> {
        let k1 = self.meta.layout.entry_units();
        let mut buf = self.units_buf(0, k1, true).ok_or(LoadError::NoMemory)?;
        self.write_units(io, &mut buf, i, (0, k1), true, self.meta.generation)
            .map_err(|()| LoadError::Write)
    }

    /// Pending units a commit writes: none unless `pending` (a version-2
    /// pending sector is written by every commit).
    pub(super) fn pending_units(&self, pending: bool) -> u64 {
        let l = &self.meta.layout;
        if l.version == format::FORMAT_V2 {
            1
        } else if pending {
            l.pending_units_for(self.pending().len())
        } else {
            0
        }
    }

    /// A buffer for [`Self::write_units`] of entry units `k0..k1`: on the
    /// heap (stack memory is not valid for I/O), and allocated before a
    /// commit writes anything, so that memory never runs out part-way.
    fn units_buf(&self, k0: u64, k1: u64, pending: bool) -> Option<RawArray<u8, E>> {
        let n = usize::try_from(k1.saturating_sub(k0)).ok()?;
        let p = self.pending_units(pending) as usize;
        RawArray::new((n + p + 1).checked_mul(self.meta.layout.unit())?)
    }

    /// Writes entry units `k0..k1` of copy `i` and, with `pending`, its
    /// pending units, then its header durably (the header's PREFLUSH makes
    /// the others durable first). The pending units directly follow the last
    /// entry unit: when `k1` is that unit they go out in one write.
    fn write_units(
        &mut self,
        io: &mut dyn MetaIo,
        buf: &mut [u8],
        i: u32,
        (k0, k1): (u64, u64),
        pending: bool,
        generation: u64,
    ) -> Result<(), ()> {
        let layout = self.meta.layout;
        let unit = layout.unit();
        let crc = self.meta.crc;
        let pending_at = layout.unit_at(i, layout.pending_offset());
        let (k0, k1) = (k0.min(k1), k1.min(layout.entry_units()));
        let n = k1.saturating_sub(k0) as usize;
        let p = self.pending_units(pending) as usize;
        // Entry units, the pending units, then the header.
        let (buf, hdr) = buf
            .get_mut(..(n + p + 1) * unit)
            .ok_or(())?
            .split_at_mut((n + p) * unit);
        for k in k0..k1 {
            let off = (k - k0) as usize * unit;
            encode_entries(
                unit,
                generation,
                layout.unit_at(i, 1 + k),
                self.pool.unit_slots(k, layout.slots_per_unit()),
                crc,
                &mut buf[off..off + unit],
            );
        }
        let per = layout.pending_per_unit();
        for j in 0..p {
            let list = self.pending();
            let from = (j * per).min(list.len());
            let off = (n + j) * unit;
            encode_pending(
                unit,
                generation,
                pending_at + j as u64 * layout.unit_sectors(),
                &list[from..],
                crc,
                &mut buf[off..off + unit],
            );
        }
        let first = layout.unit_at(i, 1 + k0);
        if n == 0 {
            if p != 0 {
                io.write(pending_at, buf, false)?;
            }
        } else if p == 0 || 1 + k1 == layout.pending_offset() {
            io.write(first, buf, false)?;
        } else {
            io.write(first, &buf[..n * unit], false)?;
            io.write(pending_at, &buf[n * unit..], false)?;
        }
        encode_header(
            &Header {
                identity: self.meta.identity,
                generation,
                copy_index: i,
                layout,
                remaps: self.pool.used(),
                retired: self.pool.retired(),
                pending: if layout.version == format::FORMAT_V2 {
                    0
                } else {
                    self.pending().len() as u64
                },
            },
            crc,
            hdr,
        );
        io.write(layout.copy_start(i), hdr, true)
    }

    /// The generation of the next commit. The largest is never written: a
    /// load refuses it.
    fn next_generation(&self) -> Result<u64, MsgError> {
        self.meta
            .generation
            .checked_add(1)
            .filter(|&g| g < u64::MAX)
            .ok_or(MsgError::Io)
    }

    /// [`Self::commit`] with no slot range: the header and, when the list
    /// changed, the pending units (and, as every commit, the entry units of
    /// pool blocks the error path changed in memory).
    pub fn commit_pending(&mut self, io: &mut dyn MetaIo) -> Result<(), MsgError> {
        self.commit(io, 1, 0)
    }

    /// Makes the in-memory state durable: the entry sectors holding slots
    /// `lo..=hi` (none when `lo > hi`), the pending sector and the header,
    /// copy after copy, with a new generation. The
    /// copies are never all in flight: each is complete (header written with
    /// FUA after a PREFLUSH) before the next begins, so a crash leaves at
    /// least one copy wholly old or wholly new.
    ///
    /// A write that fails gives the commit a defined outcome: on copy 0, no
    /// copy holds the change and `Err(Io)` tells the caller to undo it; on a
    /// later copy, copy 0 holds it whole and a load would take it, so it is
    /// kept and `Ok` returned, with [`Self::take_degraded`] set. Either way
    /// the next commit rewrites every copy at a generation above any on
    /// disk. Memory runs out (`NoMemory`) only before anything is written.
    pub fn commit(&mut self, io: &mut dyn MetaIo, lo: u64, hi: u64) -> Result<(), MsgError> {
        let generation = self.next_generation()?;
        let (lo, hi) = if self.meta.dirty.0 > self.meta.dirty.1 {
            (lo, hi)
        } else if lo > hi {
            self.meta.dirty
        } else {
            (lo.min(self.meta.dirty.0), hi.max(self.meta.dirty.1))
        };
        let l = self.meta.layout;
        let (k0, k1) = if self.meta.full_rewrite {
            (0, l.entry_units())
        } else if lo > hi {
            (0, 0)
        } else {
            (l.unit_of(lo), l.unit_of(hi) + 1)
        };
        let pending = self.meta.full_rewrite || self.meta.pending_dirty;
        let mut buf = self.units_buf(k0, k1, pending).ok_or(MsgError::NoMemory)?;
        for i in 0..l.copies {
            if self
                .write_units(io, &mut buf, i, (k0, k1), pending, generation)
                .is_err()
            {
                // Copies now disagree; make the next commit rewrite them all,
                // above any generation on disk.
                self.meta.full_rewrite = true;
                self.meta.generation = generation;
                if i == 0 {
                    // No copy holds the change (copy 0 is old or torn, the
                    // rest old): a load finds the old state. The caller
                    // undoes it in memory.
                    return Err(MsgError::Io);
                }
                // Copies 0..i hold the change whole, so a load takes it:
                // it is durable. Roll forward: keep it and report success,
                // and flag that copies lack it (the target enters fail
                // mode, and `clear_fail` rewrites them).
                self.meta.degraded = true;
                self.meta.dirty = (u64::MAX, 0);
                return Ok(());
            }
        }
        self.meta.generation = generation;
        self.meta.full_rewrite = false;
        self.meta.pending_dirty = false;
        self.meta.dirty = (u64::MAX, 0);
        Ok(())
    }

    /// The version-3 layout a version-2 spare converts to, in the same area
    /// (the pool keeps its place and its slots), and the order to write its
    /// copies in: the first one written leaves a version-2 copy untouched,
    /// so that a valid copy of the state exists at every point. As many
    /// copies as the version-2 spare had (2 at least), fewer when the area
    /// cannot hold them; `None` if no order is safe.
    fn conversion_plan(&self) -> Option<(Layout, u32)> {
        let v2 = self.meta.layout;
        let area = v2.pool_start / format::UNIT_SECTORS;
        // Sectors each version-2 copy uses.
        let used = |i: u32| {
            let at = v2.copy_start(i);
            at..at + v2.copy_units()
        };
        for copies in (1..=v2.copies.max(2)).rev() {
            let Some(stride) = format::strides(area / u64::from(copies)).last() else {
                continue;
            };
            let Some(l) = Layout::v3(copies, stride, v2.pool_start, v2.slots) else {
                continue;
            };
            let span = |j: u32| l.copy_start(j)..l.copy_start(j) + l.copy_units() * 8;
            let overlaps = |a: &core::ops::Range<u64>, b: &core::ops::Range<u64>| {
                a.start < b.end && b.start < a.end
            };
            // A copy to write first that spares some version-2 copy.
            let first =
                (0..copies).find(|&j| (0..v2.copies).any(|i| !overlaps(&span(j), &used(i))));
            if let Some(first) = first {
                return Some((l, first));
            }
        }
        None
    }

    /// Converts a version-2 spare to version 3 in place (`convert_metadata`):
    /// every remap, retired block and pending block is kept, and the pool
    /// stays where it is. The version-3 copies are written at the next
    /// generation, first the one that leaves a version-2 copy whole, so
    /// that at every point a load finds the state whole, in version 2 (the
    /// first version-3 copy unfinished) or 3 (it finished: its generation is
    /// newer). Then the version-2 headers left outside the new copies are
    /// zeroed, so that a stale version-2 copy can never be loaded instead.
    pub fn convert(&mut self, io: &mut dyn MetaIo) -> Result<Layout, MsgError> {
        if self.meta.layout.version != format::FORMAT_V2 {
            return Err(MsgError::Invalid("the spare is already format version 3"));
        }
        if self.meta.degraded || self.meta.full_rewrite {
            return Err(MsgError::FailMode);
        }
        let (l, first) = self.conversion_plan().ok_or(MsgError::Invalid(
            "no version-3 layout in the metadata area leaves a version-2 copy whole while it is written",
        ))?;
        let generation = self.next_generation()?;
        let v2 = self.meta.layout;
        self.meta.layout = l;
        let k1 = l.entry_units();
        let (Some(mut buf), Some(mut zero)) = (
            self.units_buf(0, k1, true),
            RawArray::<u8, E>::new(format::UNIT),
        ) else {
            self.meta.layout = v2;
            return Err(MsgError::NoMemory);
        };
        let order = core::iter::once(first).chain((0..l.copies).filter(|&j| j != first));
        for (n, j) in order.enumerate() {
            if self
                .write_units(io, &mut buf, j, (0, k1), true, generation)
                .is_err()
            {
                self.meta.generation = generation;
                self.meta.full_rewrite = true;
                if n == 0 {
                    // No version-3 copy is whole (or one is, of the same
                    // state): version 2 loads, as before. The next commit
                    // rewrites its copies above any generation on disk.
                    self.meta.layout = v2;
                    return Err(MsgError::Io);
                }
                // The first version-3 copy is whole and newest: converted,
                // with copies missing (fail mode; `clear_fail` rewrites
                // them).
                self.meta.degraded = true;
                return Ok(l);
            }
        }
        self.meta.generation = generation;
        self.meta.pending_dirty = false;
        self.meta.dirty = (u64::MAX, 0);
        // Version-2 headers outside what the new copies wrote (unit by
        // unit, as a 4Kn device needs): read, zero the header sector, write
        // back.
        let written = (l.pending_offset() + self.pending_units(true)) * format::UNIT_SECTORS;
        for i in 0..v2.copies {
            let at = v2.copy_start(i);
            let unit_at = at - at % format::UNIT_SECTORS;
            if (0..l.copies).any(|j| (l.copy_start(j)..l.copy_start(j) + written).contains(&at)) {
                continue;
            }
            if io.read(unit_at, &mut zero).is_err() {
                continue;
            }
            let o = ((at - unit_at) as usize) * SECTOR;
            if format::header_version(&zero[o..]) == Some(format::FORMAT_V2) {
                zero[o..o + SECTOR].fill(0);
                let _ = io.write(unit_at, &zero, true);
            }
        }
        Ok(l)
    }

    /// Rewrites every copy whole from memory (leaving fail mode); fails
    /// unless every copy was written.
    pub fn rewrite_all(&mut self, io: &mut dyn MetaIo) -> Result<(), MsgError> {
        self.meta.full_rewrite = true;
        self.commit_pending(io)?;
        if self.take_degraded() {
            return Err(MsgError::Io);
        }
        Ok(())
    }

    /// Whether a commit since the last call kept its change with copies
    /// missing it (see [`Self::commit`]); clears the flag.
    pub fn take_degraded(&mut self) -> bool {
        core::mem::take(&mut self.meta.degraded)
    }

    /// Reads every copy and rewrites those that are not a valid image of the
    /// current generation (stale, torn or damaged since they were written).
    /// Returns the number rewritten.
    pub fn verify(
        &mut self,
        io: &mut dyn MetaIo,
        ev: &mut dyn FnMut(Event),
    ) -> Result<u32, LoadError> {
        if !self.meta.loaded {
            return Ok(0);
        }
        let layout = self.meta.layout;
        let (states, _) = survey::<E>(io, &layout, &self.meta.identity, self.meta.crc)?;
        let mut n = 0;
        for i in 0..layout.copies {
            let defect = match states[i as usize] {
                CopyState::Valid(h)
                    if h.generation == self.meta.generation && h.identity == self.meta.identity =>
                {
                    continue
                }
                CopyState::Valid(c) => Defect::Stale {
                    generation: c.generation,
                },
                CopyState::Bad(d) => d,
            };
            self.write_copy(io, i)?;
            ev(Event::Repaired { copy: i, defect });
            n += 1;
        }
        Ok(n)
    }
}
