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
use crate::logic::pool::SparePool;
use crate::logic::table::{RemapTable, Retired, TableError, RESCHED_EVERY};

/// The metadata on the spare: where its copies are, the generation they
/// hold, and what the next commit must write. Every metadata write goes
/// through it; what the copies record besides their headers comes in as
/// [`Contents`].
pub(super) struct Metadata {
    pub(super) layout: Layout,
    pub(super) identity: Identity,
    pub(super) generation: u64,
    pub(super) crc: Crc,
    /// A commit failed part-way: the next one rewrites every copy whole.
    pub(super) full_rewrite: bool,
    /// A commit failed after copy 0 was written whole: the change is
    /// durable and kept, but copies are missing it (see `commit`).
    pub(super) degraded: bool,
    /// Pool blocks the error path changed in memory since the last
    /// successful commit (`lo..=hi`), if any. Every commit
    /// writes their entry units too: headers count retired and used
    /// blocks, so a commit that wrote the header but not those units
    /// would leave no copy valid.
    pub(super) dirty: Option<(u64, u64)>,
    pub(super) loaded: bool,
    /// The pending list changed since the last commit: the next one writes
    /// the pending units (version 3 writes them only then).
    pub(super) pending_dirty: bool,
}

/// What the copies record besides their headers: the pool's slots and the
/// pending list.
pub(super) struct Contents<'a, E: Env> {
    pub(super) pool: &'a SparePool<E>,
    pub(super) pending: &'a [u64],
    pub(super) unrecorded: Unrecorded,
    /// The header's "moved" flag (see [`Remaps::mark_moved`]).
    pub(super) moved: bool,
}

/// What a commit writes of a copy besides its header: entry units
/// `entries.0..entries.1`, and the pending units when `pending`.
#[derive(Clone, Copy)]
struct Units {
    entries: (u64, u64),
    pending: bool,
}

/// The smallest range of pool blocks that holds both `a` and `b`.
pub(super) fn span(a: Option<(u64, u64)>, b: Option<(u64, u64)>) -> Option<(u64, u64)> {
    match (a, b) {
        (Some((a0, a1)), Some((b0, b1))) => Some((a0.min(b0), a1.max(b1))),
        (r, None) | (None, r) => r,
    }
}

impl Metadata {
    /// Not loaded yet: copies in `layout`, for the device pair `identity`.
    pub(super) fn new(layout: Layout, identity: Identity, crc: Crc) -> Self {
        Self {
            layout,
            identity,
            generation: 0,
            crc,
            full_rewrite: false,
            degraded: false,
            dirty: None,
            loaded: false,
            pending_dirty: false,
        }
    }

    /// Writes copy `i` whole from memory, at the current generation.
    pub(super) fn write_copy<E: Env>(
        &mut self,
        io: &mut dyn MetaIo,
        c: &Contents<'_, E>,
        i: u32,
    ) -> Result<(), LoadError> {
        let whole = Units {
            entries: (0, self.layout.entry_units()),
            pending: true,
        };
        let mut buf = self
            .units_buf::<E>(whole, c.pending.len())
            .ok_or(LoadError::NoMemory)?;
        self.write_units(io, &mut buf, i, whole, c, self.generation)
            .map_err(|()| LoadError::Write)
    }

    /// Pending units a commit writes for a list of `pending_len` blocks:
    /// none unless `pending` (a version-2 pending sector is written by
    /// every commit).
    pub(super) fn pending_units(&self, pending_len: usize, pending: bool) -> u64 {
        let l = &self.layout;
        if l.version == format::FORMAT_V2 {
            1
        } else if pending {
            l.pending_units_for(pending_len)
        } else {
            0
        }
    }

    /// A buffer for [`Self::write_units`] of `u`, with a pending list of
    /// `pending_len` blocks: on the heap (stack memory is not valid for
    /// I/O), and allocated before a commit writes anything, so that memory
    /// never runs out part-way.
    fn units_buf<E: Env>(&self, u: Units, pending_len: usize) -> Option<RawArray<u8, E>> {
        let (k0, k1) = u.entries;
        let n = usize::try_from(k1.saturating_sub(k0)).ok()?;
        let p = self.pending_units(pending_len, u.pending) as usize;
        RawArray::new((n + p + 1).checked_mul(self.layout.unit())?)
    }

    /// Writes the entry units `k0..k1` of `u` of copy `i` and, with
    /// `u.pending`, its pending units, then its header durably (the
    /// header's PREFLUSH makes the others durable first). The pending units
    /// directly follow the last entry unit: when `k1` is that unit they go
    /// out in one write.
    fn write_units<E: Env>(
        &self,
        io: &mut dyn MetaIo,
        buf: &mut [u8],
        i: u32,
        u: Units,
        c: &Contents<'_, E>,
        generation: u64,
    ) -> Result<(), ()> {
        let ((k0, k1), pending) = (u.entries, u.pending);
        let layout = self.layout;
        let unit = layout.unit();
        let crc = self.crc;
        let pending_at = layout.unit_at(i, layout.pending_offset());
        let (k0, k1) = (k0.min(k1), k1.min(layout.entry_units()));
        let n = k1.saturating_sub(k0) as usize;
        let p = self.pending_units(c.pending.len(), pending) as usize;
        // Entry units, the pending units, then the header.
        let (buf, hdr) = buf
            .get_mut(..(n + p + 1) * unit)
            .ok_or(())?
            .split_at_mut((n + p) * unit);
        for k in k0..k1 {
            if k % 64 == 0 {
                E::cond_resched();
            }
            let off = (k - k0) as usize * unit;
            encode_entries(
                unit,
                generation,
                layout.unit_at(i, 1 + k),
                c.pool.unit_slots(k, layout.slots_per_unit()),
                crc,
                &mut buf[off..off + unit],
            );
        }
        let per = layout.pending_per_unit();
        for j in 0..p {
            let list = c.pending;
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
                identity: self.identity,
                generation,
                copy_index: i,
                layout,
                remaps: c.pool.used(),
                retired: c.pool.retired(),
                pending: if layout.version == format::FORMAT_V2 {
                    0
                } else {
                    c.pending.len() as u64
                },
                unrecorded: if layout.version == format::FORMAT_V2 {
                    Unrecorded::default()
                } else {
                    c.unrecorded
                },
                moved: c.moved && layout.version != format::FORMAT_V2,
            },
            crc,
            hdr,
        );
        io.write(layout.copy_start(i), hdr, true)
    }

    /// The generation of the next commit. The largest is never written: a
    /// load refuses it.
    fn next_generation(&self) -> Result<u64, MsgError> {
        self.generation
            .checked_add(1)
            .filter(|&g| g < u64::MAX)
            .ok_or(MsgError::Io)
    }

    /// Makes `c` durable: the entry units holding pool blocks `lo..=hi` of
    /// `slots` (none with `None`), the pending units and the header,
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
    pub(super) fn commit<E: Env>(
        &mut self,
        io: &mut dyn MetaIo,
        c: &Contents<'_, E>,
        slots: Option<(u64, u64)>,
    ) -> Result<(), MsgError> {
        let generation = self.next_generation()?;
        let l = self.layout;
        let (k0, k1) = if self.full_rewrite {
            (0, l.entry_units())
        } else {
            match span(slots, self.dirty) {
                Some((lo, hi)) => (l.unit_of(lo), l.unit_of(hi) + 1),
                None => (0, 0),
            }
        };
        let units = Units {
            entries: (k0, k1),
            pending: self.full_rewrite || self.pending_dirty,
        };
        let mut buf = self
            .units_buf::<E>(units, c.pending.len())
            .ok_or(MsgError::NoMemory)?;
        for i in 0..l.copies {
            if self
                .write_units(io, &mut buf, i, units, c, generation)
                .is_err()
            {
                // Copies now disagree; make the next commit rewrite them all,
                // above any generation on disk.
                self.full_rewrite = true;
                self.generation = generation;
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
                self.degraded = true;
                self.dirty = None;
                return Ok(());
            }
        }
        self.generation = generation;
        self.full_rewrite = false;
        self.pending_dirty = false;
        self.dirty = None;
        Ok(())
    }

    /// The version-3 layout a version-2 spare converts to, in the same area
    /// (the pool keeps its place and its slots), and the order to write its
    /// copies in: the first one written leaves a version-2 copy untouched,
    /// so that a valid copy of the state exists at every point. As many
    /// copies as the version-2 spare had (2 at least), fewer when the area
    /// cannot hold them; `None` if no order is safe.
    fn conversion_plan(&self) -> Option<(Layout, u32)> {
        let v2 = self.layout;
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
    pub(super) fn convert<E: Env>(
        &mut self,
        io: &mut dyn MetaIo,
        c: &Contents<'_, E>,
    ) -> Result<Layout, MsgError> {
        if self.layout.version != format::FORMAT_V2 {
            return Err(MsgError::Invalid("the spare is already format version 3"));
        }
        if self.degraded || self.full_rewrite {
            return Err(MsgError::FailMode);
        }
        let (l, first) = self.conversion_plan().ok_or(MsgError::Invalid(
            "no version-3 layout in the metadata area leaves a version-2 copy whole while it is written",
        ))?;
        let generation = self.next_generation()?;
        let v2 = self.layout;
        self.layout = l;
        let whole = Units {
            entries: (0, l.entry_units()),
            pending: true,
        };
        let (Some(mut buf), Some(mut zero)) = (
            self.units_buf::<E>(whole, c.pending.len()),
            RawArray::<u8, E>::new(format::UNIT),
        ) else {
            self.layout = v2;
            return Err(MsgError::NoMemory);
        };
        let order = core::iter::once(first).chain((0..l.copies).filter(|&j| j != first));
        for (n, j) in order.enumerate() {
            if self
                .write_units(io, &mut buf, j, whole, c, generation)
                .is_err()
            {
                self.generation = generation;
                self.full_rewrite = true;
                if n == 0 {
                    // No version-3 copy is whole (or one is, of the same
                    // state): version 2 loads, as before. The next commit
                    // rewrites its copies above any generation on disk.
                    self.layout = v2;
                    return Err(MsgError::Io);
                }
                // The first version-3 copy is whole and newest: converted,
                // with copies missing (fail mode; `clear_fail` rewrites
                // them).
                self.degraded = true;
                return Ok(l);
            }
        }
        self.generation = generation;
        self.pending_dirty = false;
        self.dirty = None;
        // Version-2 headers outside what the new copies wrote (unit by
        // unit, as a 4Kn device needs): read, zero the header sector, write
        // back.
        let written =
            (l.pending_offset() + self.pending_units(c.pending.len(), true)) * format::UNIT_SECTORS;
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

    /// Reads every copy and rewrites those that are not a valid image of the
    /// current generation (stale, torn or damaged since they were written).
    /// Returns the number rewritten.
    pub(super) fn verify<E: Env>(
        &mut self,
        io: &mut dyn MetaIo,
        c: &Contents<'_, E>,
        ev: &mut dyn FnMut(Event),
    ) -> Result<u32, LoadError> {
        if !self.loaded {
            return Ok(0);
        }
        let layout = self.layout;
        let (states, _) = survey::<E>(io, &layout, &self.identity, self.crc)?;
        let mut n = 0;
        for i in 0..layout.copies {
            let defect = match states[i as usize] {
                CopyState::Valid(h)
                    if h.generation == self.generation && h.identity == self.identity =>
                {
                    continue
                }
                CopyState::Valid(c) => Defect::Stale {
                    generation: c.generation,
                },
                CopyState::Bad(d) => d,
            };
            self.write_copy(io, c, i)?;
            ev(Event::Repaired { copy: i, defect });
            n += 1;
        }
        Ok(n)
    }
}

impl<E: Env> Remaps<E> {
    /// What the copies record besides their headers, and the metadata
    /// that writes them.
    fn split(&mut self) -> (&mut Metadata, Contents<'_, E>) {
        let n = self.pending_len.min(self.pending_capacity());
        (
            &mut self.meta,
            Contents {
                pool: &self.pool,
                pending: &self.pending_list[..n],
                unrecorded: self.unrecorded,
                moved: self.moved,
            },
        )
    }

    /// Writes copy `i` whole from memory, at the current generation.
    fn write_copy(&mut self, io: &mut dyn MetaIo, i: u32) -> Result<(), LoadError> {
        let (meta, c) = self.split();
        meta.write_copy(io, &c, i)
    }

    /// Pending units a commit writes: none unless `pending` (a version-2
    /// pending sector is written by every commit).
    #[cfg(test)]
    pub(super) fn pending_units(&self, pending: bool) -> u64 {
        self.meta.pending_units(self.pending().len(), pending)
    }

    /// Makes the in-memory state durable: the entry units holding pool
    /// blocks `lo..=hi` (none when `lo > hi`; [`Self::commit_pending`]
    /// names that), the pending units when the list changed, and the
    /// header, copy after copy, with a new generation; see
    /// [`Metadata::commit`] for what a failed write leaves.
    pub fn commit(&mut self, io: &mut dyn MetaIo, lo: u64, hi: u64) -> Result<(), MsgError> {
        let slots = (lo <= hi).then_some((lo, hi));
        let (meta, c) = self.split();
        meta.commit(io, &c, slots)
    }

    /// [`Self::commit`] with no slot range: the header and, when the list
    /// changed, the pending units (and, as every commit, the entry units of
    /// pool blocks the error path changed in memory).
    pub fn commit_pending(&mut self, io: &mut dyn MetaIo) -> Result<(), MsgError> {
        let (meta, c) = self.split();
        meta.commit(io, &c, None)
    }

    /// Converts a version-2 spare to version 3 in place (`convert_metadata`);
    /// see [`Metadata::convert`].
    pub fn convert(&mut self, io: &mut dyn MetaIo) -> Result<Layout, MsgError> {
        let (meta, c) = self.split();
        meta.convert(io, &c)
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

    /// Marks every copy "moved" (the remaps and their data live on another
    /// spare now): a commit of the headers alone, copy after copy. From the
    /// first copy written on, a table refuses the spare (`format::decide`),
    /// so a crash part-way leaves it refused too. `Err(Io)` when copy 0
    /// could not be written (no copy marked).
    pub fn mark_moved(&mut self, io: &mut dyn MetaIo) -> Result<(), MsgError> {
        if self.meta.layout.version == format::FORMAT_V2 {
            return Err(MsgError::Invalid(
                "a version-2 spare cannot be marked: convert it first",
            ));
        }
        self.moved = true;
        let r = self.commit_pending(io);
        if r.is_err() {
            self.moved = false;
        }
        r
    }

    /// Whether a commit since the last call kept its change with copies
    /// missing it (see [`Self::commit`]); clears the flag.
    pub fn take_degraded(&mut self) -> bool {
        core::mem::take(&mut self.meta.degraded)
    }

    /// Reads every copy and rewrites those that are not a valid image of the
    /// current generation; see [`Metadata::verify`].
    pub fn verify(
        &mut self,
        io: &mut dyn MetaIo,
        ev: &mut dyn FnMut(Event),
    ) -> Result<u32, LoadError> {
        let (meta, c) = self.split();
        meta.verify(io, &c, ev)
    }

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
                    let main_grew = h.identity.main_sectors != pair.main_sectors;
                    let spare_grew = h.identity.spare_sectors != pair.spare_sectors;
                    // A grown spare's pool takes in the new blocks the
                    // copies have room for (up to the default metadata
                    // size).
                    let grown = spare_grew
                        .then(|| {
                            layout.grown(
                                pair.spare_sectors,
                                self.geo.block_sectors,
                                format::DEFAULT_MAX_SLOTS,
                            )
                        })
                        .flatten();
                    if let Some(l) = grown {
                        self.pool.grow(l.slots).ok_or(LoadError::NoMemory)?;
                        self.meta.layout = l;
                    }
                    if main_grew || spare_grew {
                        // Grown (`serves`): record the new sizes (and
                        // slots) in every copy, with a new generation. A
                        // crash part way leaves copies of either kind: the
                        // next load takes the newest whole one (`find_v3`),
                        // whose layout makes the others defective, and
                        // rewrites them.
                        self.meta.identity.main_sectors = pair.main_sectors;
                        self.meta.identity.spare_sectors = pair.spare_sectors;
                        self.rewrite_all(io).map_err(|e| match e {
                            MsgError::NoMemory => LoadError::NoMemory,
                            _ => LoadError::Write,
                        })?;
                    }
                    if main_grew {
                        ev(Event::MainGrown {
                            from: h.identity.main_sectors,
                            to: pair.main_sectors,
                        });
                    }
                    if spare_grew {
                        ev(Event::SpareGrown {
                            from: h.identity.spare_sectors,
                            to: pair.spare_sectors,
                            pool_from: layout.slots,
                            pool_to: self.meta.layout.slots,
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
        let l = h.layout;
        let copy = format::CopyView::new(buf, l).ok_or(None)?;
        let r = self.fill_table(t, &copy, l);
        self.note_resize(t, ev);
        r?;
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
        self.pending_len = n;
        if !h.unrecorded.valid(self.geo.main_blocks) {
            let _ = t.clear(&mut self.writer);
            self.pool.reset();
            self.pending_len = 0;
            return Err(Some(Defect::BadPending {
                at: l.copy_start(h.copy_index),
            }));
        }
        self.unrecorded = h.unrecorded;
        self.meta.pending_dirty = false;
        Ok(())
    }

    /// The remaps and retired blocks of a copy into the table and the pool
    /// (both empty). Room for all remaps is reserved first: one pass over
    /// the slots sizes each segment once, where inserting one by one would
    /// rebuild segments as they fill.
    fn fill_table(
        &mut self,
        t: &RemapTable<E>,
        copy: &format::CopyView<'_>,
        l: Layout,
    ) -> Result<(), Option<Defect>> {
        let mut old_mem = Retired::new();
        let keys = (0..l.slots)
            .zip(copy.slots())
            .filter(|&(_, v)| v != 0 && v != RETIRED)
            .map(|(_, v)| v - 1);
        let mut res = match t.reserve_keys(&mut self.writer, keys, &mut old_mem) {
            Ok(r) => r,
            // Main blocks were validated against main, so only memory.
            Err(_) => return Err(None),
        };
        for (slot, v) in (0..l.slots).zip(copy.slots()) {
            if slot % RESCHED_EVERY == 0 {
                E::cond_resched();
            }
            if v == 0 {
                continue;
            }
            if v == RETIRED {
                self.pool.retire(slot);
                continue;
            }
            let main = v - 1;
            match res.insert(&mut self.writer, main, slot, &mut old_mem) {
                Ok(()) => {}
                Err(TableError::Exists) => {
                    drop(res);
                    let _ = t.clear(&mut self.writer);
                    self.pool.reset();
                    return Err(Some(Defect::Duplicate { block: main }));
                }
                Err(_) => return Err(None),
            }
            self.pool.take(slot, main);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::fake::*;
    use super::super::*;
    use super::*;
    use crate::logic::format::{self, check_copy, encode_header, SECTOR};
    use crate::logic::format::{Unrecorded, PENDING_MAX};

    use crate::HostEnv;
    extern crate std;
    use crate::logic::testing::{geo, MIB};
    use std::string::String;
    use std::vec::Vec;

    #[test]
    fn a_header_with_the_largest_generation_is_refused() {
        // A crafted copy 0 at generation u64::MAX: loading it would make the
        // next commit's generation overflow.
        let mut f = Fixture::new(None);
        f.msg("add_remap 8 auto").unwrap();
        let mut disk = f.disk.clone();
        let layout = f.r.meta.layout;
        let mut hdr = std::vec![0u8; layout.unit()];
        disk.read(0, &mut hdr).unwrap();
        let mut h =
            format::decode_header(&hdr, 0, format::MIN_AREA_SECTORS, crc32fast::hash).unwrap();
        h.generation = u64::MAX;
        encode_header(&h, crc32fast::hash, &mut hdr);
        disk.write(0, &hdr, true).unwrap();
        assert_eq!(
            format::decode_header(&hdr, 0, format::MIN_AREA_SECTORS, crc32fast::hash),
            Err(Defect::BadGeneration)
        );
        let mut g = Fixture::on(None, disk).expect("loads from another copy");
        assert!(g.events.contains(&Event::Repaired {
            copy: 0,
            defect: Defect::BadGeneration
        }));
        g.msg("add_remap 16 auto").unwrap();
        assert_eq!(g.msg("count").unwrap(), "2");
        all_copies_valid(&mut g.disk, &layout, "after the repair");
    }

    /// Opens and loads a remap target with 4 KiB blocks over `disk` as
    /// the metadata area of a pair of `main` and `spare` sectors (the
    /// target as long as main): what a table line over grown (or shrunk)
    /// devices does.
    #[allow(clippy::type_complexity)]
    fn open_sized(
        main: u64,
        spare: u64,
        disk: &mut dyn MetaIo,
    ) -> Result<(RemapTable<HostEnv>, Remaps<HostEnv>, Vec<Event>, Layout), LoadError> {
        open_copies(main, spare, 5, disk)
    }

    /// [`open_sized`], formatting a blank area with `copies` copies.
    #[allow(clippy::type_complexity)]
    fn open_copies(
        main: u64,
        spare: u64,
        copies: u32,
        disk: &mut dyn MetaIo,
    ) -> Result<(RemapTable<HostEnv>, Remaps<HostEnv>, Vec<Event>, Layout), LoadError> {
        open_with(main, spare, copies, false, disk)
    }

    /// A 64 MiB pair of `copies` copies, with the `format` feature.
    #[allow(clippy::type_complexity)]
    fn open_format(
        copies: u32,
        disk: &mut dyn MetaIo,
    ) -> Result<(RemapTable<HostEnv>, Remaps<HostEnv>, Vec<Event>, Layout), LoadError> {
        open_with(64 * MIB, 64 * MIB, copies, true, disk)
    }

    #[test]
    fn a_grown_main_keeps_its_remaps_and_a_shrunk_one_is_refused() {
        let mut f = Fixture::new(Some(4096));
        f.msg("add_remap 800 auto 16").unwrap();
        let before = f.state();
        let mut disk = f.disk.clone();
        let (t, mut r, events, layout) =
            open_sized(128 * MIB, 64 * MIB, &mut disk).expect("a grown main loads");
        assert!(events.contains(&Event::MainGrown {
            from: 64 * MIB,
            to: 128 * MIB
        }));
        assert!(!events.iter().any(|e| matches!(e, Event::SpareGrown { .. })));
        let mut out = String::new();
        let m = parse(&["list", "0", "10000"]).unwrap();
        r.handle(&t, &mut disk, m, &mut out, &mut |_| {}).unwrap();
        assert_eq!(out, before.0);
        for h in all_copies_valid(&mut disk, &layout, "after growing") {
            assert_eq!(h.identity.main_sectors, 128 * MIB);
        }
        // Loaded again at the new size: nothing more to do.
        let (_, _, events, _) = open_sized(128 * MIB, 64 * MIB, &mut disk).unwrap();
        assert!(!events.iter().any(|e| matches!(e, Event::MainGrown { .. })));
        // Back to the old, smaller size: another pair.
        let res = open_sized(64 * MIB, 64 * MIB, &mut disk);
        assert!(matches!(res, Err(LoadError::Refused(_))), "{:?}", res.err());
    }

    #[test]
    fn a_grown_spare_keeps_its_remaps_and_pool_and_a_shrunk_one_is_refused() {
        let mut f = Fixture::new(Some(4096));
        f.msg("add_remap 800 auto 16").unwrap();
        f.r.add_pending(3000);
        f.r.commit_pending(&mut f.disk).unwrap();
        let before = f.state();
        let old_layout = f.r.meta.layout;
        let mut disk = f.disk.clone();
        // The spare doubled, and main grew too: one rewrite records both.
        let (t, mut r, events, layout) =
            open_sized(256 * MIB, 128 * MIB, &mut disk).expect("a grown spare loads");
        // The copies and the pool's start stay; the pool takes in what the
        // copies have room for.
        let want = old_layout
            .grown(128 * MIB, 8, format::DEFAULT_MAX_SLOTS)
            .unwrap();
        assert!(want.slots > old_layout.slots);
        assert_eq!(layout, old_layout, "the constructor found the old layout");
        assert_eq!(
            (want.copies, want.copy_sectors, want.pool_start),
            (
                old_layout.copies,
                old_layout.copy_sectors,
                old_layout.pool_start
            )
        );
        assert!(events.contains(&Event::SpareGrown {
            from: 64 * MIB,
            to: 128 * MIB,
            pool_from: old_layout.slots,
            pool_to: want.slots,
        }));
        assert!(events.contains(&Event::MainGrown {
            from: 64 * MIB,
            to: 256 * MIB
        }));
        let mut out = String::new();
        let m = parse(&["list", "0", "10000"]).unwrap();
        r.handle(&t, &mut disk, m, &mut out, &mut |_| {}).unwrap();
        assert_eq!(out, before.0);
        assert_eq!(r.pending(), [3000]);
        assert_eq!(r.slots(), want.slots);
        assert_eq!(r.free_slots(), want.slots - 2);
        for h in all_copies_valid(&mut disk, &want, "after the spare grew") {
            assert_eq!(h.identity.spare_sectors, 128 * MIB);
            assert_eq!(h.layout, want);
        }
        // Every new block can be handed out, and the pool ends there.
        let free = r.free_slots();
        let mut out = String::new();
        let (from, last) = (
            std::format!("{}", 64 * MIB),
            std::format!("{}", 256 * MIB - 8),
        );
        let nr = std::format!("{}", free * 8);
        let words = ["add_remap", &from, "auto", &nr];
        let m = parse(&words).unwrap();
        r.handle(&t, &mut disk, m, &mut out, &mut |_| {}).unwrap();
        assert_eq!(r.free_slots(), 0);
        let words = ["add_remap", &last, "auto"];
        let m = parse(&words).unwrap();
        assert!(r.handle(&t, &mut disk, m, &mut out, &mut |_| {}).is_err());
        drop((t, r));
        // Loaded again at the new size: nothing more to do, the pool full.
        let (_, r, events, layout) = open_sized(256 * MIB, 128 * MIB, &mut disk).unwrap();
        assert!(!events.iter().any(|e| matches!(e, Event::SpareGrown { .. })));
        assert_eq!((layout, r.free_slots()), (want, 0));
        drop(r);
        // Back to the old, smaller spare: another pair, refused unwritten.
        let image = disk.data.clone();
        let res = open_sized(256 * MIB, 64 * MIB, &mut disk);
        assert!(matches!(res, Err(LoadError::Refused(_))), "{:?}", res.err());
        assert!(disk.data == image, "a refused load wrote the spare");
    }

    #[test]
    fn every_crash_point_of_a_spare_growth_loads_the_same_remaps() {
        // The load that grows the pool rewrites every copy; a crash at any
        // point of it, with every write not yet durable lost, whole or torn,
        // must load the same remaps, pending and retired blocks, and finish
        // the growth, with every copy valid after that load. For 5 and 2
        // copies: with one, a crash during any commit tears the only copy.
        let seed = CRASH_SEED;
        std::println!("crash enumeration seed {seed:#x}");
        let state = |r: &mut Remaps<HostEnv>, t: &RemapTable<HostEnv>, io: &mut dyn MetaIo| {
            let mut out = String::new();
            let m = parse(&["list", "0", "10000"]).unwrap();
            r.handle(t, io, m, &mut out, &mut |_| {}).unwrap();
            (out, r.pending().to_vec(), r.retired())
        };
        let mut cases = 0;
        for copies in [5, 2] {
            let mut disk = Disk::new();
            let (t, mut r, _, old) = open_copies(64 * MIB, 64 * MIB, copies, &mut disk).unwrap();
            assert_eq!(old.copies, copies);
            for m in ["add_remap 80 auto 16", "add_remap 8000 auto 24"] {
                let words: Vec<&str> = m.split(' ').collect();
                r.handle(
                    &t,
                    &mut disk,
                    parse(&words).unwrap(),
                    &mut String::new(),
                    &mut |_| {},
                )
                .unwrap();
            }
            let s = r.reserve(4000).unwrap();
            r.retire_slot(s);
            r.add_pending(2000);
            r.commit(&mut disk, s, s).unwrap();
            let want = state(&mut r, &t, &mut disk);
            assert_eq!((want.1.len(), want.2), (1, 1));
            drop((t, r));
            let grown = old.grown(128 * MIB, 8, format::DEFAULT_MAX_SLOTS).unwrap();
            assert!(
                grown.entry_units() > old.entry_units(),
                "the pending units move"
            );
            let mut rec = Recorder {
                image: disk.data.clone(),
                writes: Vec::new(),
            };
            let start = rec.image.clone();
            let (t, mut r, _, _) = open_sized(64 * MIB, 128 * MIB, &mut rec).unwrap();
            assert_eq!(r.slots(), grown.slots);
            assert_eq!(state(&mut r, &t, &mut rec), want);
            let writes = rec.writes.clone();
            assert!(!writes.is_empty(), "growing wrote nothing");
            cases += every_crash(&start, &writes, seed, &mut |img, what, _| {
                let what = std::format!("{copies} copies: {what}");
                let mut disk = Disk {
                    data: img.to_vec(),
                    writes_left: None,
                    log: Vec::new(),
                };
                let (t, mut r, _, _) = open_sized(64 * MIB, 128 * MIB, &mut disk)
                    .unwrap_or_else(|e| panic!("{what}: the spare does not load: {e:?}"));
                assert_eq!(state(&mut r, &t, &mut disk), want, "{what}");
                // Whatever copy won, the load finished the growth.
                assert_eq!(r.slots(), grown.slots, "{what}");
                all_copies_valid(&mut disk, &grown, &what);
            });
        }
        std::println!("spare growth: {cases} crash images");
        assert!(cases > 200);
    }

    #[test]
    fn a_spare_marked_moved_is_refused_from_its_first_marked_copy_on() {
        // Marking writes each copy's header; a crash at any point, with the
        // writes not yet durable lost, whole or torn, leaves a spare that
        // loads as it was (nothing marked yet) or is refused (a copy
        // marked), never one that loads with a marked copy repaired away;
        // after the last write it is refused. `format` starts it afresh.
        let seed = CRASH_SEED;
        let mut cases = 0;
        for copies in [5, 2] {
            let mut disk = Disk::new();
            let (t, mut r, _, _) = open_copies(64 * MIB, 64 * MIB, copies, &mut disk).unwrap();
            r.handle(
                &t,
                &mut disk,
                parse(&["add_remap", "80", "auto", "16"]).unwrap(),
                &mut String::new(),
                &mut |_| {},
            )
            .unwrap();
            r.add_pending(2000);
            r.commit_pending(&mut disk).unwrap();
            let count = t.len();
            drop((t, r));
            let mut rec = Recorder {
                image: disk.data.clone(),
                writes: Vec::new(),
            };
            let start = rec.image.clone();
            let (_t, mut r, _, _) = open_copies(64 * MIB, 64 * MIB, copies, &mut rec).unwrap();
            rec.writes.clear();
            r.mark_moved(&mut rec).unwrap();
            let writes = rec.writes.clone();
            assert_eq!(writes.len(), copies as usize, "one header a copy");
            let mut refused = 0;
            cases += every_crash(&start, &writes, seed, &mut |img, what, answered| {
                let what = std::format!("{copies} copies: {what}");
                let mut disk = Disk {
                    data: img.to_vec(),
                    writes_left: None,
                    log: Vec::new(),
                };
                let marked = (0..copies).any(|i| {
                    let at = r.meta.layout.copy_start(i) as usize * SECTOR;
                    format::decode_header(
                        &img[at..at + format::UNIT],
                        at as u64 / 512,
                        4096,
                        crc32fast::hash,
                    )
                    .is_ok_and(|h| h.moved)
                });
                match open_copies(64 * MIB, 64 * MIB, copies, &mut disk) {
                    Ok((t, r, _, _)) => {
                        assert!(!marked && !answered, "{what}: a marked spare loaded");
                        assert_eq!((t.len(), r.pending()), (count, &[2000u64][..]), "{what}");
                    }
                    Err(LoadError::Refused(m)) => {
                        assert!(marked, "{what}: refused unmarked: {m:?}");
                        assert!(m.to_bytes().starts_with(b"Spare's remaps moved"), "{what}");
                        refused += 1;
                    }
                    Err(e) => panic!("{what}: {e:?}"),
                }
            });
            assert!(refused > 0);
            // `format` reuses it: empty, every copy valid, nothing moved.
            let mut disk = Disk {
                data: rec.image.clone(),
                writes_left: None,
                log: Vec::new(),
            };
            let (t, r, _, l) = open_format(copies, &mut disk).unwrap();
            assert_eq!((t.len(), r.pending().len()), (0, 0));
            for h in all_copies_valid(&mut disk, &l, "formatted after moved") {
                assert!(!h.moved);
            }
        }
        std::println!("marking moved: {cases} crash images");
    }

    #[test]
    fn a_spare_growth_whose_writes_fail_is_refused_and_done_by_the_next_load() {
        // The k-th write of the growth's rewrite fails (the spare's metadata
        // area gives out): the table is refused, and a load once the spare
        // works again finds every remap and finishes the growth.
        let mut f = Fixture::new(Some(4096));
        f.msg("add_remap 800 auto 16").unwrap();
        f.r.add_pending(3000);
        f.r.commit_pending(&mut f.disk).unwrap();
        let before = f.state();
        let old = f.r.meta.layout;
        let grown = old.grown(128 * MIB, 8, format::DEFAULT_MAX_SLOTS).unwrap();
        let mut writes = 0;
        loop {
            let mut disk = f.disk.clone();
            disk.writes_left = Some(writes);
            match open_sized(64 * MIB, 128 * MIB, &mut disk) {
                Err(e) => assert_eq!(e, LoadError::Write, "write {writes} failed"),
                Ok((_, r, _, _)) => {
                    assert_eq!(r.slots(), grown.slots);
                    break;
                }
            }
            disk.writes_left = None;
            let (t, mut r, _, _) = open_sized(64 * MIB, 128 * MIB, &mut disk)
                .unwrap_or_else(|e| panic!("after write {writes} failed: {e:?}"));
            assert_eq!(r.slots(), grown.slots, "after write {writes} failed");
            assert_eq!(r.pending(), [3000]);
            let mut out = String::new();
            let m = parse(&["list", "0", "10000"]).unwrap();
            r.handle(&t, &mut disk, m, &mut out, &mut |_| {}).unwrap();
            assert_eq!(out, before.0, "after write {writes} failed");
            all_copies_valid(&mut disk, &grown, "after a failed growth");
            writes += 1;
        }
        assert!(writes >= 10, "{writes}");
    }

    #[test]
    fn every_crash_point_of_every_metadata_write_loads_old_or_new() {
        // Each operation that writes metadata, run from the same start; a
        // crash at every point of it, with every write not yet durable lost,
        // whole or torn at every sector boundary (exhaustive up to 256
        // images per crash point, then 256 sampled with the seed printed).
        // What loads must be the state before or after; after the last
        // write (the operation has answered), the state after.
        let ops: [(&str, Op); 12] = [
            ("add_remap auto", |f, io| {
                msg_on(f, io, "add_remap 800 auto 64")
            }),
            ("add_remaps", |f, io| {
                msg_on(f, io, "add_remaps 800+64 24000 40000+16 56")
            }),
            ("add_remaps carry", |f, io| {
                // Main block 5000 cannot be read: it goes pending in the
                // same commit.
                struct Main;
                impl DataIo for Main {
                    fn read_main(&mut self, sector: u64, buf: &mut [u8]) -> Result<(), ()> {
                        buf.fill(sector as u8);
                        if sector == 40000 {
                            Err(())
                        } else {
                            Ok(())
                        }
                    }
                    fn write_spare(&mut self, _: u64, _: &mut [u8]) -> Result<(), ()> {
                        Ok(())
                    }
                }
                let words = ["add_remaps", "carry", "800+64", "40000+16"];
                let Ok(crate::logic::message::RemapMsg::AddList { carry, items }) = parse(&words)
                else {
                    return false;
                };
                f.r.add_list(
                    &f.t,
                    io,
                    Some(&mut Main),
                    carry,
                    items,
                    &mut String::new(),
                    &mut |_| {},
                )
                .is_ok()
            }),
            ("add_remap explicit", |f, io| {
                msg_on(f, io, "add_remap 800 40960 8")
            }),
            ("remove_remap", |f, io| msg_on(f, io, "remove_remap 80 16")),
            ("clear_remaps", |f, io| msg_on(f, io, "clear_remaps")),
            ("pending mark", |f, io| {
                f.r.add_pending(3000);
                f.r.commit_pending(io).is_ok()
            }),
            ("pending clear", |f, io| {
                f.r.clear_pending();
                f.r.commit_pending(io).is_ok()
            }),
            ("retire", |f, io| {
                let s = f.r.reserve(4000).unwrap();
                f.r.retire_slot(s);
                f.r.commit(io, s, s).is_ok()
            }),
            ("relocate", |f, io| {
                let old = f.t.lookup(10).unwrap();
                let s = f.r.reserve(10).unwrap();
                f.r.retire_slot(old);
                let ok = f.r.commit(io, s.min(old), s.max(old)).is_ok();
                let node = f.r.reserve_one(&f.t, &mut |_| {}).unwrap();
                f.r.publish(&f.t, 10, s, node, &mut |_| {});
                ok
            }),
            ("clear_fail", |f, io| f.r.rewrite_all(io).is_ok()),
            // Copy 3 damaged (below): the check rewrites it.
            ("scanner check", |f, io| f.r.verify(io, &mut |_| {}).is_ok()),
        ];
        let seed = CRASH_SEED;
        std::println!("crash enumeration seed {seed:#x}");
        let mut cases = 0;
        for (name, op) in ops {
            let mut f = Fixture::new(Some(4096));
            f.msg("add_remap 80 auto 16").unwrap();
            f.msg("add_remap 8000 auto 24").unwrap();
            f.r.add_pending(2000);
            f.r.commit_pending(&mut f.disk).unwrap();
            cases += crash_cases(name, f, op, seed);
        }
        std::println!("{cases} crash images loaded (messages, error path, scanner)");
        assert!(cases > 1000);
    }

    #[test]
    fn every_crash_point_of_a_conversion_loads_old_or_new() {
        // As `every_crash_point_of_every_metadata_write_loads_old_or_new`,
        // for `convert_metadata`.
        let seed = CRASH_SEED;
        std::println!("crash enumeration seed {seed:#x}");
        let mut cases = 0;
        // Converting a version-2 spare (written by the version-2 code) with
        // remaps, a retired block and a pending block, for 512-byte and
        // 4096-byte blocks.
        for bs in [None, Some(4096)] {
            let mut f = Fixture::v2(bs);
            f.msg("add_remap 80 auto 16").unwrap();
            f.msg("add_remap 8000 auto 24").unwrap();
            let s = f.r.reserve(4000).unwrap();
            f.r.retire_slot(s);
            f.r.add_pending(2000);
            f.r.commit(&mut f.disk, s, s).unwrap();
            cases += crash_cases(
                "convert_metadata",
                f,
                |f, io| msg_on(f, io, "convert_metadata"),
                seed,
            );
        }
        // And, for each block size, the first version-2 copy count whose
        // headers are partly left outside the new copies: zeroing them is
        // enumerated too.
        for bs in [None, Some(4096)] {
            let copies = (1..=format::MAX_COPIES)
                .find(|&c| leftover_v2_headers(bs, c) > 0)
                .expect("a copy count that leaves version-2 headers");
            let mut f = Fixture::v2_with(bs, copies);
            f.msg("add_remap 80 auto 16").unwrap();
            f.r.add_pending(2000);
            f.r.commit_pending(&mut f.disk).unwrap();
            cases += crash_cases(
                &std::format!("convert_metadata ({copies} version-2 copies, headers left over)"),
                f,
                |f, io| msg_on(f, io, "convert_metadata"),
                seed,
            );
        }
        std::println!("{cases} crash images loaded (conversions)");
        assert!(cases > 1000);
    }

    #[test]
    fn every_crash_point_of_formatting_loads_an_empty_spare() {
        // Formatting a blank spare: a crash anywhere leaves a spare that
        // loads (formatting again if no copy was finished), empty.
        let seed = CRASH_SEED;
        std::println!("crash enumeration seed {seed:#x}");
        let mut cases = 0;
        let blank = std::vec![0u8; TEST_AREA];
        let mut rec = Recorder {
            image: blank.clone(),
            writes: Vec::new(),
        };
        let g = geo(Some(4096));
        let layout = test_layout(&mut rec, &g, 5);
        let (t, mut r) =
            Remaps::<HostEnv>::new(g, layout, pair(Some(4096)), crc32fast::hash).unwrap();
        r.load(&t, &mut rec, false, [9; 16], &mut |_| {}).unwrap();
        let empty = loaded_state(&rec.image, "format");
        let before_op = cases;
        for done in 0..=rec.writes.len() {
            cases += crash_images(
                &blank,
                &rec.writes,
                done,
                256,
                seed ^ done as u64,
                &mut |img, what| {
                    assert_eq!(loaded_state(img, &std::format!("format: {what}")), empty);
                },
            );
        }
        std::println!(
            "format: {} writes, {} crash images",
            rec.writes.len(),
            cases - before_op
        );
        std::println!("{cases} crash images loaded (format)");
        assert!(cases > 1000);
    }

    #[test]
    fn blank_spare_is_formatted_and_reloads() {
        let mut f = Fixture::new(None);
        assert!(f.events.contains(&Event::Formatted { copies: 5 }));
        f.msg("add_remap 1010 15010 10").unwrap();
        f.msg("add_remap 0 auto 3").unwrap();
        let want = f.state();
        let g = f.r.generation();
        let mut again = Fixture::on(None, f.disk.clone()).unwrap();
        assert_eq!(again.state(), want);
        assert_eq!(again.r.generation(), g);
        // Loading resized the table for the 13 remaps.
        let events: Vec<_> = again
            .events
            .iter()
            .filter(|e| !matches!(e, Event::Resizing { .. } | Event::Resized { .. }))
            .collect();
        assert!(
            matches!(events[..], [Event::Loaded { generation, remaps: 13, .. }] if *generation == g)
        );
        assert!(again.events.contains(&Event::Resized { old: 14, new: 30 }));
        // The generation keeps growing across loads.
        again.msg("remove_remap 0 1").unwrap();
        assert_eq!(again.r.generation(), g + 1);
    }

    #[test]
    fn crash_at_every_write_of_a_commit_loads_old_or_new() {
        let mut f = Fixture::new(None);
        f.msg("add_remap 100 auto 70").unwrap();
        let old = f.state();
        let mut next = Fixture::on(None, f.disk.clone()).unwrap();
        next.msg("add_remap 500 auto 70").unwrap();
        let new = next.state();
        // 5 copies x (entry write + header write): the pending list did
        // not change.
        for k in 0..=10 {
            let mut g = Fixture::on(None, f.disk.clone()).unwrap();
            g.disk.writes_left = Some(k);
            let r = g.msg("add_remap 500 auto 70");
            // Done once copy 0 is whole (2 writes): a load takes it.
            assert_eq!(r.is_ok(), k >= 2, "k={k}");
            // The power is cut: memory is gone; what loads is what the
            // message said.
            let mut disk = g.disk.clone();
            disk.writes_left = None;
            let mut after = Fixture::on(None, disk).unwrap();
            let st = after.state();
            assert!(
                st == if r.is_ok() { new.clone() } else { old.clone() },
                "k={k}: {st:?}"
            );
            // Every copy is valid again after the load's repairs.
            let layout = after.r.meta.layout;
            all_copies_valid(&mut after.disk, &layout, &std::format!("k={k}"));
        }
    }

    #[test]
    fn corrupt_copies_are_repaired() {
        let mut f = Fixture::new(None);
        f.msg("add_remap 8 auto 16").unwrap();
        let want = f.state();
        let layout = f.r.meta.layout;
        // Damage all but one copy in different ways.
        let mut disk = f.disk.clone();
        let at = |i: u32| layout.copy_start(i) as usize * SECTOR;
        disk.data[at(0)..at(0) + SECTOR].fill(0); // zeroed header
        disk.data[at(1) + SECTOR + 20] ^= 0x10; // bit flip in an entry sector
        disk.data[at(2) + 100] ^= 1; // bit flip in the header
        let (a, b) = (at(3), at(4));
        let stale = f.disk.data[b..b + 2 * SECTOR].to_vec();
        disk.data[a..a + 2 * SECTOR].copy_from_slice(&stale); // copy 4's sectors at copy 3: wrong location
        let mut g = Fixture::on(None, disk).unwrap();
        assert_eq!(g.state(), want);
        let repaired: Vec<u32> = g
            .events
            .iter()
            .filter_map(|e| match e {
                Event::Repaired { copy, .. } => Some(*copy),
                _ => None,
            })
            .collect();
        assert_eq!(repaired, [0, 1, 2, 3]);
        // Reloading now finds every copy fine.
        let h = Fixture::on(None, g.disk.clone()).unwrap();
        assert!(!h.events.iter().any(|e| matches!(e, Event::Repaired { .. })));
    }

    #[test]
    fn failed_commit_changes_nothing() {
        // A write of copy 0 fails: no copy holds the change; it is undone.
        let mut f = Fixture::new(None);
        f.msg("add_remap 0 auto 4").unwrap();
        let before = f.state();
        f.disk.writes_left = Some(1);
        assert_eq!(
            f.msg("add_remap 8 auto 4").unwrap_err(),
            "metadata write failed; change undone"
        );
        assert_eq!(f.state(), before);
        f.disk.writes_left = Some(0);
        assert!(f.msg("remove_remap 0 4").is_err());
        assert_eq!(f.state(), before);
        f.disk.writes_left = Some(1);
        assert!(f.msg("clear_remaps").is_err());
        assert_eq!(f.state(), before);
        assert!(!f.r.take_degraded());
        f.disk.writes_left = None;
        assert_eq!(Fixture::on(None, f.disk.clone()).unwrap().state(), before);
        f.msg("add_remap 8 auto 4").unwrap();
        let want = f.state();
        assert_eq!(Fixture::on(None, f.disk.clone()).unwrap().state(), want);
        // A write of copy 1 fails: copy 0 holds the change whole, so it is
        // durable; it is kept, reported done, and flagged.
        let mid = f.state();
        f.disk.writes_left = Some(3);
        assert_eq!(f.msg("remove_remap 0 4").unwrap(), "removed 4");
        assert!(f.r.take_degraded());
        f.disk.writes_left = None;
        let want = f.state();
        assert_ne!(want, mid);
        assert_eq!(Fixture::on(None, f.disk.clone()).unwrap().state(), want);
    }

    #[test]
    fn converting_with_a_write_failing_at_every_point_gives_the_outcome_reported() {
        // `convert_metadata` with the n-th write failing, for every n: it
        // fails and the spare loads as version 2, or it succeeds (perhaps
        // with copies missing: fail mode) and loads as version 3; the
        // remaps, retired and pending blocks are the same either way, and
        // the next commit works and loads.
        let mut n = 0;
        for bs in [None, Some(4096)] {
            for k in 0.. {
                let mut f = Fixture::v2(bs);
                f.msg("add_remap 80 auto 16").unwrap();
                let s = f.r.reserve(4000).unwrap();
                f.r.retire_slot(s);
                f.r.add_pending(2000);
                f.r.commit(&mut f.disk, s, s).unwrap();
                let before = f.state();
                f.disk.writes_left = Some(k);
                let r = f.msg("convert_metadata");
                let degraded = f.r.take_degraded();
                let exhausted = f.disk.writes_left == Some(0);
                f.disk.writes_left = None;
                let mut again = Fixture::on(bs, f.disk.clone())
                    .unwrap_or_else(|e| panic!("write {k} fails: no load: {e:?}"));
                let want = if r.is_ok() { 3 } else { 2 };
                assert_eq!(versioned(&mut again), (before.clone(), want), "write {k}");
                assert_eq!(again.r.pending(), &[2000]);
                assert_eq!(again.r.retired(), 1);
                // The target goes on: a commit (all copies when one failed).
                if degraded || r.is_err() {
                    f.r.rewrite_all(&mut f.disk).unwrap();
                }
                f.msg("add_remap 12000 auto").unwrap();
                let after = versioned(&mut f);
                let mut third = Fixture::on(bs, f.disk.clone()).unwrap();
                assert_eq!(versioned(&mut third), after, "write {k}");
                let layout = third.r.meta.layout;
                all_copies_valid(&mut third.disk, &layout, "after the next commit");
                n += 1;
                if r.is_ok() && !degraded && !exhausted {
                    break;
                }
            }
        }
        std::println!("{n} conversion write-failure cases");
        assert!(n > 15);
    }

    #[test]
    fn every_version_2_copy_count_converts_or_is_refused_unchanged() {
        let (mut done, mut refused) = (0, 0);
        for bs in [None, Some(4096)] {
            for copies in 1..=format::MAX_COPIES {
                let mut f = Fixture::v2_with(bs, copies);
                f.msg("add_remap 80 auto 16").unwrap();
                let slots = f.r.slots();
                let bsec = f.r.geo.block_sectors;
                let n = (slots - 16).min(500) * bsec;
                f.msg(&std::format!("add_remap {} auto {n}", 8000 * bsec))
                    .unwrap();
                let before = f.state();
                let image = f.disk.data.clone();
                match f.msg("convert_metadata") {
                    Ok(reply) => {
                        assert!(
                            reply.starts_with("converted to format version 3"),
                            "{reply}"
                        );
                        let mut g = Fixture::on(bs, f.disk.clone()).unwrap();
                        assert_eq!(versioned(&mut g), (before, 3), "{copies} copies");
                        let layout = g.r.meta.layout;
                        assert_eq!(layout.pool_start, 4096);
                        assert_eq!(layout.slots, slots);
                        all_copies_valid(&mut g.disk, &layout, "converted");
                        // No version-2 header is left to load instead.
                        for c in 1..=format::MAX_COPIES {
                            let l2 = Layout::new(c, 4096, 4096, 1).unwrap();
                            for i in 0..c {
                                let at = l2.copy_start(i) as usize * SECTOR;
                                let h = &g.disk.data[at..at + SECTOR];
                                assert_ne!(format::header_version(h), Some(2), "{copies}: {at}");
                            }
                        }
                        assert_eq!(
                            g.msg("convert_metadata").unwrap_err(),
                            "the spare is already format version 3"
                        );
                        done += 1;
                    }
                    Err(e) => {
                        assert!(e.contains("no version-3 layout"), "{copies} copies: {e}");
                        assert!(f.disk.data == image, "{copies} copies: refused but written");
                        let mut g = Fixture::on(bs, f.disk.clone()).unwrap();
                        assert_eq!(versioned(&mut g), (before, 2));
                        refused += 1;
                    }
                }
            }
        }
        std::println!("version-2 copy counts: {done} converted, {refused} refused");
        assert!(done > 20 && refused > 0);
    }

    #[test]
    fn the_version_2_spare_of_the_guest_test_is_what_version_2_writes() {
        // tests/data/v2-spare.img.gz (tests/50-convert-v2.sh): the first
        // 2 MiB of a 16 MiB spare formatted as version 2 by the version-2
        // code, for a 32 MiB main with 4096-byte blocks: main sectors
        // 800+64 remapped (to pool blocks 0-7), 8000+8 to spare sector 16384,
        // pool block 20 retired, main block 3000 pending; generation 4.
        // `DMR_WRITE_V2_IMAGE=1 cargo test` writes it again.
        let (g, id) = golden_pair();
        let layout = Layout::new(5, 4096, 4096, g.spare_data_blocks).unwrap();
        let (t, r) = Remaps::new(g, layout, id, crc32fast::hash).unwrap();
        let mut f = Fixture {
            t,
            r,
            disk: Disk::new(),
            events: Vec::new(),
        };
        f.r.load(&f.t, &mut f.disk, false, [0x42; 16], &mut |_| {})
            .unwrap();
        f.msg("add_remap 800 auto 64").unwrap();
        f.msg("add_remap 8000 16384 8").unwrap();
        assert_eq!(f.r.retire_slot(20), None);
        f.r.add_pending(3000);
        f.r.commit(&mut f.disk, 20, 20).unwrap();
        assert_eq!(f.r.generation(), 4);
        golden_image(
            &f.disk.data[..2 << 20],
            concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/v2-spare.img.gz"),
            "DMR_WRITE_V2_IMAGE",
        );
    }

    #[test]
    fn the_version_4_spare_of_the_guest_test_is_a_version_3_spare_relabelled() {
        // tests/data/v4-spare.img.gz (tests/55-newer-version.sh): the first
        // 2 MiB of a 16 MiB spare formatted by this code for a 32 MiB main
        // with 4096-byte blocks, main sectors 800+8 remapped, then every
        // copy's header relabelled version 4 and sealed again: what a newer
        // dm-remap might write. This module refuses it and, asked to
        // `format`, formats over it. `DMR_WRITE_V4_IMAGE=1 cargo test`
        // writes it again.
        let (g, id) = golden_pair();
        let req = LayoutRequest {
            copies: 5,
            max_slots: format::DEFAULT_MAX_SLOTS,
            format: false,
        };
        let mut disk = Disk::new();
        let layout = find_layout::<HostEnv>(&mut disk, &g, 32768, &req, crc32fast::hash).unwrap();
        let (t, r) = Remaps::new(g, layout, id, crc32fast::hash).unwrap();
        let mut f = Fixture {
            t,
            r,
            disk,
            events: Vec::new(),
        };
        f.r.load(&f.t, &mut f.disk, false, [0x44; 16], &mut |_| {})
            .unwrap();
        f.msg("add_remap 800 auto 8").unwrap();
        let copies_end = layout.copy_start(layout.copies) as usize * SECTOR;
        assert!(copies_end <= 2 << 20);
        for i in 0..layout.copies {
            let at = layout.copy_start(i) as usize * SECTOR;
            let hdr = &mut f.disk.data[at..at + SECTOR];
            hdr[8..12].copy_from_slice(&4u32.to_le_bytes());
            format::seal(hdr, crc32fast::hash);
        }
        let image = &f.disk.data[..2 << 20];
        let mut spare = Disk::new();
        spare.data[..image.len()].copy_from_slice(image);
        assert_eq!(
            find_layout::<HostEnv>(&mut spare, &g, 32768, &req, crc32fast::hash).err(),
            Some(LoadError::Newer(4)),
            "not refused as newer"
        );
        golden_image(
            image,
            concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/v4-spare.img.gz"),
            "DMR_WRITE_V4_IMAGE",
        );
    }

    #[test]
    fn a_table_constructed_before_a_conversion_finished_loads_the_converted_spare() {
        // A table is loaded (its constructor finds version 2) while the live
        // one converts the spare; it is resumed after the conversion.
        let mut f = Fixture::v2(Some(4096));
        f.msg("add_remap 80 auto 16").unwrap();
        f.r.add_pending(2000);
        f.r.commit_pending(&mut f.disk).unwrap();
        let before = f.state();
        let g = geo(Some(4096));
        let v2 = try_layout(&mut f.disk, &g, 5).unwrap();
        assert_eq!(v2.version, format::FORMAT_V2);
        f.msg("convert_metadata").unwrap();
        let (t, mut r) = Remaps::<HostEnv>::new(g, v2, pair(Some(4096)), crc32fast::hash).unwrap();
        let mut disk = f.disk.clone();
        r.load(&t, &mut disk, false, [9; 16], &mut |_| {}).unwrap();
        assert_eq!(r.meta.layout, f.r.meta.layout);
        let mut g = Fixture {
            t,
            r,
            disk,
            events: Vec::new(),
        };
        assert_eq!(g.state(), before);
        assert_eq!(g.r.pending(), &[2000]);
        g.msg("add_remap 8000 auto 8").unwrap();
        assert_eq!(loaded_version(&g.disk.data, Some(4096)), 3);
    }

    #[test]
    fn a_full_pending_list_commits_and_loads() {
        // Version 3: 4,572 blocks over 9 units, each change committed alone
        // (the pending units only); version 2: one sector of 60.
        let mut f = Fixture::new(Some(4096));
        let cap = f.r.pending_capacity();
        assert_eq!(cap, PENDING_ROOM);
        let blocks: Vec<u64> = (0..cap as u64).map(|b| b * 3 + 1).collect();
        for &b in &blocks {
            assert_eq!(f.r.add_pending(b), PendingAdd::Added);
        }
        f.r.commit_pending(&mut f.disk).unwrap();
        let layout = f.r.meta.layout;
        for h in all_copies_valid(&mut f.disk, &layout, "full pending list") {
            assert_eq!(h.pending, cap as u64);
            assert_eq!(h.unrecorded, Unrecorded::default());
        }
        // Read errors past the list are counted, with their range, and
        // committed like the list.
        assert_eq!(f.r.add_pending(0), PendingAdd::Full);
        assert_eq!(f.r.add_pending(9000), PendingAdd::Full);
        assert_eq!(f.r.add_pending(0), PendingAdd::Full);
        assert_eq!(f.r.add_pending(blocks[7]), PendingAdd::Present);
        let u = Unrecorded {
            count: 3,
            first: 0,
            last: 9000,
        };
        assert_eq!(f.r.unrecorded(), u);
        // Another spare's count (a migration) adds in.
        let mut m = Fixture::new(Some(4096));
        m.r.add_unrecorded(Unrecorded::default());
        assert_eq!(m.r.unrecorded(), Unrecorded::default());
        m.r.add_unrecorded(u);
        m.r.add_unrecorded(Unrecorded {
            count: 2,
            first: 12_000,
            last: 12_001,
        });
        let want = Unrecorded {
            count: 5,
            first: 0,
            last: 12_001,
        };
        assert_eq!(m.r.unrecorded(), want);
        f.r.commit_pending(&mut f.disk).unwrap();
        for h in all_copies_valid(&mut f.disk, &layout, "unrecorded errors") {
            assert_eq!(h.unrecorded, u);
        }
        let mut g = Fixture::on(Some(4096), f.disk.clone()).expect("reloads");
        assert_eq!(g.r.pending(), &blocks[..]);
        assert_eq!(g.r.unrecorded(), u);
        // One block off the middle, committed: the rest loads as it was.
        assert!(g.r.remove_pending(blocks[2000]));
        g.r.commit_pending(&mut g.disk).unwrap();
        let h = Fixture::on(Some(4096), g.disk.clone()).expect("reloads");
        assert_eq!(h.r.pending().len(), cap - 1);
        assert!(h.r.pending().binary_search(&blocks[2000]).is_err());
        assert_eq!(h.r.pending()[2000], blocks[2001]);
        assert_eq!(h.r.unrecorded(), u);
        // Clearing the list forgets them too.
        let mut k = h;
        assert_eq!(k.r.clear_pending(), cap as u64 - 1);
        assert_eq!(k.r.unrecorded(), Unrecorded::default());
        k.r.commit_pending(&mut k.disk).unwrap();
        let k = Fixture::on(Some(4096), k.disk.clone()).expect("reloads");
        assert!(k.r.pending().is_empty());
        assert_eq!(k.r.unrecorded(), Unrecorded::default());

        let mut v2 = Fixture::v2(Some(4096));
        assert_eq!(v2.r.pending_capacity(), PENDING_MAX);
        for b in 0..PENDING_MAX as u64 {
            assert_eq!(v2.r.add_pending(b * 2), PendingAdd::Added);
        }
        assert_eq!(v2.r.add_pending(1), PendingAdd::Full);
        v2.r.commit_pending(&mut v2.disk).unwrap();
        let again = Fixture::on(Some(4096), v2.disk.clone()).expect("v2 reloads");
        assert_eq!(again.r.pending().len(), PENDING_MAX);
        // A version-2 header has no room for the count: memory only.
        assert_eq!(again.r.unrecorded(), Unrecorded::default());
    }

    #[test]
    fn pending_and_retired_round_trip() {
        let mut f = Fixture::new(None);
        f.msg("add_remap 0 auto 8").unwrap();
        // Retire a used pool block and a free one.
        assert_eq!(f.r.retire_slot(3), Some(3));
        assert_eq!(f.r.retire_slot(20), None);
        assert_eq!(f.r.retire_slot(20), None);
        assert_eq!(f.r.retired(), 2);
        assert_eq!(f.r.spare_used(), 7);
        for b in [700, 9, 4000] {
            assert_eq!(f.r.add_pending(b), PendingAdd::Added);
        }
        f.r.commit(&mut f.disk, 3, 20).unwrap();
        let g = f.r.generation();
        let layout = f.r.meta.layout;
        for h in all_copies_valid(&mut f.disk, &layout, "after commit") {
            assert_eq!((h.generation, h.remaps, h.retired), (g, 7, 2));
        }
        let mut again = Fixture::on(None, f.disk.clone()).unwrap();
        assert_eq!(again.r.pending(), &[9, 700, 4000]);
        assert_eq!(again.r.retired(), 2);
        assert_eq!(again.r.spare_used(), 7);
        assert!(again.r.pool.in_use(3) && again.r.pool.in_use(20));
        assert_eq!(again.r.pool.holder(3), None);
        assert_eq!(again.r.generation(), g);
        // Retired blocks are skipped by allocation and refused explicitly.
        assert_eq!(again.msg("add_remap 100 auto 1").unwrap(), "100 10248 1");
        assert_eq!(
            again.msg("add_remap 200 10260").unwrap_err(),
            "spare range is already in use (sector 10260)"
        );
        // clear_remaps keeps them retired (and the pending list as it is).
        assert_eq!(again.msg("clear_remaps").unwrap(), "cleared 8");
        assert_eq!(again.r.retired(), 2);
        let third = Fixture::on(None, again.disk.clone()).unwrap();
        assert_eq!(third.r.retired(), 2);
        assert_eq!(third.r.spare_used(), 0);
        assert_eq!(third.r.pending(), &[9, 700, 4000]);
        assert_eq!(third.r.pool.free(), third.r.slots() - 2);
    }

    #[test]
    fn verify_rewrites_stale_and_damaged_copies_only() {
        let mut f = Fixture::new(None);
        f.msg("add_remap 0 auto 8").unwrap();
        let layout = f.r.meta.layout;
        let mut ev = Vec::new();
        assert_eq!(f.r.verify(&mut f.disk, &mut |e| ev.push(e)).unwrap(), 0);
        // Damage an entry sector of copy 2 and the header of copy 4.
        let at = layout.unit_at(2, 1) as usize * SECTOR;
        f.disk.data[at + 20] ^= 0xff;
        let h4 = layout.copy_start(4) as usize * SECTOR;
        f.disk.data[h4 + 100] ^= 1;
        assert_eq!(f.r.verify(&mut f.disk, &mut |e| ev.push(e)).unwrap(), 2);
        assert!(matches!(
            ev[0],
            Event::Repaired {
                copy: 2,
                defect: Defect::BadCrc
            }
        ));
        assert!(matches!(ev[1], Event::Repaired { copy: 4, .. }));
        all_copies_valid(&mut f.disk, &layout, "after verify");
        assert_eq!(f.r.verify(&mut f.disk, &mut |e| ev.push(e)).unwrap(), 0);
    }

    #[test]
    fn commit_without_slots_rewrites_pending() {
        let mut f = Fixture::new(None);
        f.msg("add_remap 0 auto 4").unwrap();
        let layout = f.r.meta.layout;
        f.r.add_pending(77);
        f.disk.log.clear();
        f.r.commit_pending(&mut f.disk).unwrap();
        // Per copy: the pending unit, then the header; no entry unit.
        let want: Vec<(u64, usize)> = (0..5)
            .flat_map(|i| {
                [
                    (layout.unit_at(i, layout.pending_offset()), 8),
                    (layout.copy_start(i), 8),
                ]
            })
            .collect();
        assert_eq!(f.disk.log, want);
        all_copies_valid(&mut f.disk, &layout, "pending only");
        let again = Fixture::on(None, f.disk.clone()).unwrap();
        assert_eq!(again.r.pending(), &[77]);
        assert!(!again
            .events
            .iter()
            .any(|e| matches!(e, Event::Repaired { .. })));
        // Emptying the list is a commit like any other.
        f.r.clear_pending();
        f.r.commit(&mut f.disk, u64::MAX, 0).unwrap();
        assert_eq!(
            Fixture::on(None, f.disk.clone()).unwrap().r.pending(),
            &[] as &[u64]
        );
        // A change to the last entry unit goes out with the pending units
        // in one write when the list changed too...
        let last = layout.slots - 1;
        f.r.add_pending(78);
        f.disk.log.clear();
        f.r.commit(&mut f.disk, last, last).unwrap();
        let at = layout.copy_start(0);
        let unit = layout.unit_at(0, layout.entry_units());
        assert_eq!(f.disk.log[..2], [(unit, 16), (at, 8)]);
        // ... and alone when it did not: the pending unit stays older than
        // the header.
        f.disk.log.clear();
        f.r.commit(&mut f.disk, last, last).unwrap();
        assert_eq!(f.disk.log[..2], [(unit, 8), (at, 8)]);
        all_copies_valid(&mut f.disk, &layout, "pending unit older than header");
        assert_eq!(
            Fixture::on(None, f.disk.clone()).unwrap().r.pending(),
            &[78]
        );
    }

    #[test]
    fn torn_pending_sector_is_repaired_from_another_copy() {
        let mut f = Fixture::new(None);
        f.msg("add_remap 0 auto 4").unwrap();
        f.r.add_pending(5);
        f.r.commit_pending(&mut f.disk).unwrap();
        let g = f.r.generation();
        let layout = f.r.meta.layout;
        // A later commit changing only the pending list is cut after copy 0
        // and copy 1's pending sector: copy 0 is new, copy 1 torn.
        let mut g1 = Fixture::on(None, f.disk.clone()).unwrap();
        g1.r.add_pending(6);
        g1.disk.writes_left = Some(3);
        // Copy 0 is written whole, copy 1 torn: the change is kept.
        assert_eq!(g1.r.commit_pending(&mut g1.disk), Ok(()));
        assert!(g1.r.take_degraded());
        let mut disk = g1.disk.clone();
        disk.writes_left = None;
        let at1 = layout.copy_start(1);
        let mut buf = std::vec![0u8; layout.copy_bytes()];
        disk.read(at1, &mut buf).unwrap();
        assert_eq!(
            check_copy(&buf, at1, layout.area_sectors(), 131072, crc32fast::hash),
            Err(Defect::Torn {
                at: layout.unit_at(1, layout.pending_offset())
            })
        );
        let after = Fixture::on(None, disk).unwrap();
        assert_eq!(after.r.pending(), &[5, 6]);
        assert_eq!(after.r.generation(), g + 1);
        let repaired: Vec<(u32, Defect)> = after
            .events
            .iter()
            .filter_map(|e| match e {
                Event::Repaired { copy, defect } => Some((*copy, *defect)),
                _ => None,
            })
            .collect();
        assert_eq!(repaired[0].0, 1);
        assert!(matches!(repaired[0].1, Defect::Torn { .. }));
        assert_eq!(repaired.len(), 4);
        let mut disk = after.disk;
        all_copies_valid(&mut disk, &layout, "after repair");

        // A torn pending sector in the newest copy alone: the others, one
        // generation older, are loaded and it is rewritten from them.
        let mut disk = f.disk.clone();
        let pat = layout.unit_at(0, layout.pending_offset());
        let p = pat as usize * SECTOR;
        format::encode_pending(
            layout.unit(),
            g + 1,
            pat,
            &[1, 2],
            crc32fast::hash,
            &mut disk.data[p..p + layout.unit()],
        );
        let after = Fixture::on(None, disk).unwrap();
        assert_eq!(after.r.pending(), &[5]);
        assert_eq!(after.r.generation(), g);
        assert!(after.events.contains(&Event::Repaired {
            copy: 0,
            defect: Defect::Torn { at: pat }
        }));
    }

    #[test]
    fn crash_while_committing_pending_loads_old_or_new() {
        let mut f = Fixture::new(None);
        f.msg("add_remap 0 auto 4").unwrap();
        f.r.add_pending(10);
        f.r.commit_pending(&mut f.disk).unwrap();
        // 5 copies x (entry write + pending write + header write).
        for k in 0..=15 {
            let mut g = Fixture::on(None, f.disk.clone()).unwrap();
            g.r.add_pending(20);
            g.r.retire_slot(2);
            g.disk.writes_left = Some(k);
            // Done once copy 0 is whole (3 writes).
            let ok = g.r.commit(&mut g.disk, 2, 2).is_ok();
            assert_eq!(ok, k >= 3, "k={k}");
            let mut disk = g.disk.clone();
            disk.writes_left = None;
            let after = Fixture::on(None, disk).unwrap();
            let got = (after.r.pending().to_vec(), after.r.retired());
            let new = (std::vec![10, 20], 1);
            let old = (std::vec![10], 0);
            assert!(got == if ok { new.clone() } else { old }, "k={k}: {got:?}");
            if k == 15 {
                assert_eq!(got, new);
                assert_eq!(after.r.spare_used(), 3);
            }
            let layout = after.r.meta.layout;
            let mut disk = after.disk;
            all_copies_valid(&mut disk, &layout, &std::format!("k={k}"));
        }
    }
}
