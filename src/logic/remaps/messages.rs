// SPDX-License-Identifier: GPL-2.0

//! The messages the writer handles (`Remaps::handle`): `add_remap`,
//! `add_remaps`, `remove_remap`, `clear_remaps`, `query`, `list`, `count`,
//! `convert_metadata` and `help`. Each checks all of its input before it
//! changes anything and commits before it returns.

use super::*;
use crate::logic::format;
use crate::logic::mem::{Env, RawArray};
use crate::logic::message::{Extents, MsgError, RemapMsg, SpareArg, HELP};
use crate::logic::routing::{route, Route};
use crate::logic::table::{Empty, RemapTable, Retired, RESCHED_EVERY};
use core::fmt::Write;

/// Most blocks one `add_remaps` takes: it bounds the memory the message
/// allocates and how long it holds the writer (and, with `carry`, the
/// suspended device).
pub const ADD_LIST_MAX: u64 = 1 << 20;

/// Spare blocks one `add_remaps carry` retires for failed writes before it
/// gives up (and undoes everything).
const ADD_LIST_RETIRES: usize = 8;

/// A pool block in an [`AddPlan`]: none (the block went pending, or its
/// block was retired).
const NO_SLOT: u64 = u64::MAX;

/// An `add_remaps` between [`Remaps::add_list_begin`] and
/// [`Remaps::add_list_finish`] (or [`Remaps::add_list_abort`]): the blocks
/// to remap, each with the pool block reserved for it and, with `carry`,
/// how its copy went ([`carry_copy`], which runs without the writer's
/// lock). Dropping it without either leaks the reservations until reload.
pub struct AddPlan<E: Env> {
    /// `[main block, pool block, outcome]`, sorted by main block.
    blocks: RawArray<[u64; 3], E>,
    n: usize,
    skipped: u64,
    buf: Option<RawArray<u8, E>>,
    /// Sectors per block and the pool's first sector: where the copy
    /// reads and writes, without the writer.
    block_sectors: u64,
    pool_start: u64,
}

/// A block's copy: not tried yet (or not asked for).
const COPY_NONE: u64 = 0;
/// Copied to its pool block.
const COPY_DONE: u64 = 1;
/// Main could not be read: the block goes pending.
const COPY_UNREADABLE: u64 = 2;
/// Its pool block failed the write: retired, and another tried.
const COPY_SPARE_FAILED: u64 = 3;

/// Copies each block of `plan` from main to its reserved pool block through
/// `data`, noting how it went. Touches nothing of the writer's: the target
/// runs it without the lock, so that status and messages do not wait for
/// main's reads (a failing disk can take minutes per block).
pub fn carry_copy<E: Env>(plan: &mut AddPlan<E>, data: &mut dyn DataIo) {
    let (bs, start) = (plan.block_sectors, plan.pool_start);
    let Some(buf) = plan.buf.as_deref_mut() else {
        return;
    };
    for p in plan.blocks[..plan.n].iter_mut() {
        if p[2] != COPY_NONE {
            continue;
        }
        p[2] = if data.read_main(p[0] * bs, buf).is_err() {
            COPY_UNREADABLE
        } else if data.write_spare(start + p[1] * bs, buf).is_err() {
            COPY_SPARE_FAILED
        } else {
            COPY_DONE
        };
    }
}

impl<E: Env> Remaps<E> {
    /// `add_remaps [carry] <main_sector>[+<nr_sectors>]...`: remaps every
    /// block of the ranges that is neither remapped nor pending, in one
    /// commit; replies `added A pending P skipped S`. With `carry` (and
    /// `data`, which the target passes only while suspended), each block's
    /// data is read from main and written to its spare block first; a block
    /// main cannot read goes on the pending list instead (its data is lost,
    /// as for a read error), and a spare block that fails the write is
    /// retired and another taken. Without `carry` the blocks read what the
    /// spare blocks hold, as with `add_remap`. All or nothing: a refusal or
    /// a failed commit changes nothing. (The target runs the three steps
    /// itself, the copy without its lock.)
    #[allow(clippy::too_many_arguments)]
    pub fn add_list<W: Write>(
        &mut self,
        t: &RemapTable<E>,
        io: &mut dyn MetaIo,
        data: Option<&mut dyn DataIo>,
        carry: bool,
        items: Extents<'_>,
        out: &mut W,
        ev: &mut dyn FnMut(Event),
    ) -> Result<(), MsgError> {
        if carry && data.is_none() {
            return Err(MsgError::NotSuspended);
        }
        let mut plan = self.add_list_begin(t, carry, items)?;
        let mut data = data;
        if let Some(d) = data.as_deref_mut() {
            carry_copy(&mut plan, d);
        }
        self.add_list_finish(t, io, plan, data, out, ev)
    }

    /// The first step of `add_remaps`: checks every range, finds the blocks
    /// to remap and reserves a pool block for each (memory only).
    /// Refused: nothing changed.
    pub fn add_list_begin(
        &mut self,
        t: &RemapTable<E>,
        carry: bool,
        items: Extents<'_>,
    ) -> Result<AddPlan<E>, MsgError> {
        // Every range checked, and the blocks counted, before anything
        // changes or is allocated.
        let mut total = 0u64;
        for (main, nr) in items.iter() {
            let (_, n) = self.blocks(main, nr)?;
            total = total.saturating_add(n);
        }
        if total > ADD_LIST_MAX {
            return Err(MsgError::Invalid(
                "more than 1048576 blocks in one add_remaps",
            ));
        }
        // `[main block, pool block, outcome]`, sorted, each block once.
        let mut blocks = RawArray::<[u64; 3], E>::new(total as usize).ok_or(MsgError::NoMemory)?;
        let mut k = 0;
        for (main, nr) in items.iter() {
            if let Ok((first, n)) = self.blocks(main, nr) {
                for b in first..first + n {
                    if let Some(p) = blocks.get_mut(k) {
                        *p = [b, NO_SLOT, COPY_NONE];
                        k += 1;
                    }
                }
            }
        }
        heapsort_by_first(&mut blocks[..k], E::cond_resched);
        let mut n = 0;
        let mut prev = None;
        for i in 0..k {
            if i % RESCHED_EVERY as usize == 0 {
                E::cond_resched();
            }
            let b = blocks[i][0];
            let repeat = prev == Some(b);
            prev = Some(b);
            if repeat || t.lookup(b).is_some() || self.pending().binary_search(&b).is_ok() {
                continue;
            }
            blocks[n] = [b, NO_SLOT, COPY_NONE];
            n += 1;
        }
        let skipped = total - n as u64;
        if self.pool.free() < n as u64 {
            if self.pool.total() < self.geo.spare_data_blocks {
                return Err(MsgError::MetadataFull {
                    slots: self.pool.total(),
                });
            }
            return Err(MsgError::PoolFull {
                need: n as u64,
                free: self.pool.free(),
            });
        }
        // The block buffer before any change (the table's room is reserved
        // in `add_list_finish`, before the commit).
        let buf = if carry && n > 0 {
            let bytes = (self.geo.block_sectors as usize) * format::SECTOR;
            Some(RawArray::<u8, E>::new(bytes).ok_or(MsgError::NoMemory)?)
        } else {
            None
        };
        let mut plan = AddPlan {
            blocks,
            n: 0,
            skipped,
            buf,
            block_sectors: self.geo.block_sectors,
            pool_start: self.slot_sector(0),
        };
        for i in 0..n {
            if i % RESCHED_EVERY as usize == 0 {
                E::cond_resched();
            }
            let b = plan.blocks[i][0];
            let Some(slot) = self.reserve(b) else {
                self.add_list_abort(plan);
                return Err(MsgError::NoMemory);
            };
            plan.blocks[i][1] = slot;
            plan.n = i + 1;
        }
        Ok(plan)
    }

    /// Undoes [`Self::add_list_begin`]: the reservations go back.
    pub fn add_list_abort(&mut self, plan: AddPlan<E>) {
        for p in &plan.blocks[..plan.n] {
            self.unreserve(p[1]);
        }
    }

    /// The last step of `add_remaps`: blocks main could not read go
    /// pending; a pool block that failed its write is retired and the block
    /// written to another through `data` (under the caller's lock: at most
    /// a few blocks); room in the table for every block, then one commit,
    /// and the remaps are published. Fails with nothing changed.
    pub fn add_list_finish<W: Write>(
        &mut self,
        t: &RemapTable<E>,
        io: &mut dyn MetaIo,
        mut plan: AddPlan<E>,
        mut data: Option<&mut dyn DataIo>,
        out: &mut W,
        ev: &mut dyn FnMut(Event),
    ) -> Result<(), MsgError> {
        let n = plan.n;
        if n == 0 {
            let _ = write!(out, "added 0 pending 0 skipped {}", plan.skipped);
            return Ok(());
        }
        let unrecorded = self.unrecorded;
        let mut retired = [[0u64; 2]; ADD_LIST_RETIRES];
        let mut nr_retired = 0;
        let (mut lo, mut hi) = (u64::MAX, 0);
        let mut failed = None;
        let bs = self.geo.block_sectors;
        'blocks: for i in 0..n {
            if i % RESCHED_EVERY as usize == 0 {
                E::cond_resched();
            }
            let [b, mut slot, outcome] = plan.blocks[i];
            if outcome == COPY_UNREADABLE {
                // Its reservation goes back; `PendingAdd::Full` counts it
                // as unrecorded.
                self.unreserve(slot);
                plan.blocks[i][1] = NO_SLOT;
                let _ = self.add_pending(b);
                continue;
            }
            let mut failed_write = outcome == COPY_SPARE_FAILED;
            while failed_write {
                if nr_retired == ADD_LIST_RETIRES {
                    failed = Some(MsgError::At(
                        "spare writes keep failing; nothing changed",
                        self.slot_sector(slot),
                    ));
                    break 'blocks;
                }
                self.retire_slot(slot);
                retired[nr_retired] = [slot, b];
                nr_retired += 1;
                plan.blocks[i][1] = NO_SLOT;
                let Some(s) = self.reserve(b) else {
                    failed = Some(MsgError::NoMemory);
                    break 'blocks;
                };
                slot = s;
                plan.blocks[i][1] = s;
                failed_write = match (data.as_deref_mut(), plan.buf.as_deref_mut()) {
                    (Some(d), Some(buf)) => {
                        d.read_main(b * bs, buf).is_err()
                            || d.write_spare(self.slot_sector(s), buf).is_err()
                    }
                    _ => true,
                };
            }
            lo = lo.min(slot);
            hi = hi.max(slot);
        }
        for &[slot, _] in &retired[..nr_retired] {
            lo = lo.min(slot);
            hi = hi.max(slot);
        }
        // Room in the table before the commit: once the remaps are durable,
        // publishing them must not fail.
        let mut old_mem = Retired::new();
        let mut res = None;
        if failed.is_none() {
            let keys = plan.blocks[..n]
                .iter()
                .filter(|p| p[1] != NO_SLOT)
                .map(|p| p[0]);
            match t.reserve_keys(&mut self.writer, keys, &mut old_mem) {
                Ok(r) => res = Some(r),
                Err(_) => failed = Some(MsgError::NoMemory),
            }
        }
        let failed = match failed {
            Some(e) => Some(e),
            None => self.commit(io, lo, hi).err(),
        };
        if let Some(e) = failed {
            for p in &plan.blocks[..n] {
                if p[1] != NO_SLOT {
                    self.unreserve(p[1]);
                } else {
                    self.remove_pending(p[0]);
                }
            }
            for &[slot, b] in &retired[..nr_retired] {
                self.unretire(slot, b);
                self.unreserve(slot);
            }
            self.unrecorded = unrecorded;
            drop(res);
            drop(old_mem);
            self.note_resize(t, ev);
            return Err(e);
        }
        let mut added = 0u64;
        if let Some(mut res) = res {
            for (i, p) in plan.blocks[..n].iter().enumerate() {
                if i % RESCHED_EVERY as usize == 0 {
                    E::cond_resched();
                }
                if p[1] == NO_SLOT {
                    continue;
                }
                // Cannot fail: room reserved for each, no block remapped
                // (checked when the plan was made, and changing messages
                // wait or are refused meanwhile), our own writer token, the
                // pool block in the pool.
                let _ = res.insert(&mut self.writer, p[0], p[1], &mut old_mem);
                added += 1;
            }
        }
        drop(old_mem);
        self.note_resize(t, ev);
        let pending = n as u64 - added;
        let _ = write!(
            out,
            "added {added} pending {pending} skipped {}",
            plan.skipped
        );
        Ok(())
    }

    /// Executes `msg`; replies go to `out`, things to log to `ev`; changes
    /// are committed through `io` before this returns.
    ///
    /// May sleep (grace periods, metadata I/O); never call it on the I/O path.
    pub fn handle<W: Write>(
        &mut self,
        t: &RemapTable<E>,
        io: &mut dyn MetaIo,
        msg: RemapMsg<'_>,
        out: &mut W,
        ev: &mut dyn FnMut(Event),
    ) -> Result<(), MsgError> {
        if !self.meta.loaded {
            return Err(MsgError::NotLoaded);
        }
        // Replies are best effort: text that does not fit the result buffer
        // is cut, and device-mapper tells dmsetup so.
        match msg {
            RemapMsg::Help => {
                let _ = out.write_str(HELP);
            }
            RemapMsg::Count => {
                let _ = write!(out, "{}", t.len());
            }
            RemapMsg::Query(sector) => {
                let r = self.query(t, sector)?;
                let dev = if r.to_spare { "spare" } else { "main" };
                let _ = write!(out, "{dev} {}", r.sector);
            }
            RemapMsg::List { start, max } => self.list(t, start, max, out)?,
            RemapMsg::Clear => {
                let n = self.clear(t, io)?;
                self.note_resize(t, ev);
                let _ = write!(out, "cleared {n}");
            }
            RemapMsg::Convert => {
                let l = self.convert(io)?;
                let _ = write!(
                    out,
                    "converted to format version 3: {} copies of {} units",
                    l.copies,
                    l.copy_sectors / format::UNIT_SECTORS
                );
            }
            RemapMsg::Add { main, spare, nr } => self.add(t, io, main, spare, nr, out, ev)?,
            // Without data I/O: `carry` is refused here (the target calls
            // `add_list` itself, with its devices, while suspended).
            RemapMsg::AddList { carry, items } => {
                self.add_list(t, io, None, carry, items, out, ev)?
            }
            RemapMsg::Remove { main, nr } => {
                let n = self.remove(t, io, main, nr, ev)?;
                let _ = write!(out, "removed {n}");
            } // Handled by the target (they concern its error handling and
              // scanner, not the table).
        }
        Ok(())
    }

    /// Checks that `main..main+nr` is block-aligned and inside the target;
    /// returns its first block and block count.
    fn blocks(&self, main: u64, nr: Option<u64>) -> Result<(u64, u64), MsgError> {
        let bs = self.geo.block_sectors;
        let nr = nr.unwrap_or(bs);
        if main % bs != 0 || nr % bs != 0 {
            return Err(MsgError::Invalid(
                "main sector and length must be multiples of the block size",
            ));
        }
        match main.checked_add(nr) {
            Some(end) if end <= self.geo.main_blocks * bs => Ok((main / bs, nr / bs)),
            _ => Err(MsgError::Invalid(
                "range extends beyond the end of the device",
            )),
        }
    }

    fn query(&self, t: &RemapTable<E>, sector: u64) -> Result<Route, MsgError> {
        if sector >= self.geo.main_blocks * self.geo.block_sectors {
            return Err(MsgError::Invalid("sector beyond the end of the device"));
        }
        Ok(route(&self.geo, |b| t.lookup(b), sector, 1))
    }

    #[allow(clippy::too_many_arguments)]
    fn add<W: Write>(
        &mut self,
        t: &RemapTable<E>,
        io: &mut dyn MetaIo,
        main: u64,
        spare: SpareArg,
        nr: Option<u64>,
        out: &mut W,
        ev: &mut dyn FnMut(Event),
    ) -> Result<(), MsgError> {
        let bs = self.geo.block_sectors;
        let (first, n) = self.blocks(main, nr)?;
        // Capacity first: it bounds `n` by the pool's size before anything
        // walks the range (a count as large as main would otherwise take
        // minutes to refuse).
        let explicit = match spare {
            SpareArg::Auto => {
                if self.pool.free() < n {
                    if self.pool.total() < self.geo.spare_data_blocks {
                        return Err(MsgError::MetadataFull {
                            slots: self.pool.total(),
                        });
                    }
                    return Err(MsgError::PoolFull {
                        need: n,
                        free: self.pool.free(),
                    });
                }
                None
            }
            SpareArg::Sector(s) => {
                let start = self.geo.spare_data_start;
                if s % bs != 0 {
                    return Err(MsgError::Invalid(
                        "spare sector must be a multiple of the block size",
                    ));
                }
                if s < start {
                    return Err(MsgError::At("spare range lies in the metadata area", s));
                }
                let pb = (s - start) / bs;
                if !matches!(pb.checked_add(n), Some(end) if end <= self.geo.spare_data_blocks) {
                    return Err(MsgError::Invalid(
                        "spare range extends beyond the spare's data pool",
                    ));
                }
                if pb + n > self.pool.total() {
                    return Err(MsgError::MetadataFull {
                        slots: self.pool.total(),
                    });
                }
                for i in 0..n {
                    if self.pool.in_use(pb + i) {
                        return Err(MsgError::At(
                            "spare range is already in use",
                            start + (pb + i) * bs,
                        ));
                    }
                }
                Some(pb)
            }
        };
        for b in first..first + n {
            if t.lookup(b).is_some() {
                return Err(MsgError::At("overlaps an existing remap", b * bs));
            }
            if b % RESCHED_EVERY == 0 {
                E::cond_resched();
            }
        }

        // Reserve the pool blocks and room in the table, commit, and only
        // then publish: until the remaps are durable, I/O to the blocks
        // still goes to main, so no write is acknowledged on a spare block
        // that a failed commit or a power cut would disown. Undo everything
        // if the commit fails or memory runs out. `n` fits the pool
        // (checked above), so it fits `usize`.
        let mut slots = RawArray::<u64, E>::new(n as usize).ok_or(MsgError::NoMemory)?;
        let mut old_mem = Retired::new();
        let res = t.reserve_keys(&mut self.writer, first..first + n, &mut old_mem);
        let Ok(mut res) = res else {
            drop(old_mem);
            self.note_resize(t, ev);
            return Err(MsgError::NoMemory);
        };
        let mut reserved = 0;
        let (mut lo, mut hi) = (u64::MAX, 0);
        for (i, slot) in slots.iter_mut().enumerate() {
            if i % RESCHED_EVERY as usize == 0 {
                E::cond_resched();
            }
            let main_block = first + i as u64;
            let sb = match explicit {
                Some(pb) => {
                    self.pool.take(pb + i as u64, main_block);
                    pb + i as u64
                }
                None => match self.pool.alloc(main_block) {
                    Some(b) => b,
                    None => break,
                },
            };
            *slot = sb;
            lo = lo.min(sb);
            hi = hi.max(sb);
            reserved += 1;
        }
        let failed = if reserved < slots.len() {
            Some(MsgError::NoMemory)
        } else {
            self.commit(io, lo, hi).err()
        };
        if let Some(e) = failed {
            for &sb in &slots[..reserved] {
                self.pool.release(sb);
            }
            drop(res);
            drop(old_mem);
            self.note_resize(t, ev);
            return Err(e);
        }
        for (i, &sb) in slots.iter().enumerate() {
            if i % RESCHED_EVERY as usize == 0 {
                E::cond_resched();
            }
            // Cannot fail: room reserved for each, no block remapped
            // (checked above, under the writer's lock), our own writer
            // token, the pool block in the pool.
            let _ = res.insert(&mut self.writer, first + i as u64, sb, &mut old_mem);
        }
        drop(res);
        drop(old_mem);
        self.note_resize(t, ev);

        // Reply: the new remaps as `<main_sector> <spare_sector> <nr_sectors>`.
        let mut extents = 0;
        let mut b = first;
        while b < first + n {
            let s0 = t.lookup(b).unwrap_or(0);
            let mut len = 1;
            while b + len < first + n && t.lookup(b + len) == Some(s0 + len) {
                len += 1;
            }
            if extents == ADD_REPLY_EXTENTS {
                let _ = write!(out, "...");
                break;
            }
            self.write_extent(out, extents > 0, b, s0, len);
            extents += 1;
            b += len;
        }
        Ok(())
    }

    fn remove(
        &mut self,
        t: &RemapTable<E>,
        io: &mut dyn MetaIo,
        main: u64,
        nr: Option<u64>,
        ev: &mut dyn FnMut(Event),
    ) -> Result<u64, MsgError> {
        let bs = self.geo.block_sectors;
        let (first, n) = self.blocks(main, nr)?;
        for b in first..first + n {
            if t.lookup(b).is_none() {
                return Err(MsgError::At("not remapped", b * bs));
            }
        }
        // Free the pool slots and commit first; only then unlink from the
        // table. If the commit fails, take the slots back: nothing changed.
        let (mut lo, mut hi) = (u64::MAX, 0);
        for b in first..first + n {
            if let Some(sb) = t.lookup(b) {
                self.pool.release(sb);
                lo = lo.min(sb);
                hi = hi.max(sb);
            }
        }
        if let Err(e) = self.commit(io, lo, hi) {
            for b in first..first + n {
                if let Some(sb) = t.lookup(b) {
                    self.pool.take(sb, b);
                }
            }
            return Err(e);
        }
        {
            let mut retired = Retired::new();
            for b in first..first + n {
                t.remove(&mut self.writer, b, &mut retired);
            }
            // Dropping `retired` waits for readers, which may have found
            // the entries, and frees what shrinking replaced.
        }
        self.note_resize(t, ev);
        Ok(n)
    }

    fn clear(&mut self, t: &RemapTable<E>, io: &mut dyn MetaIo) -> Result<u64, MsgError> {
        // Allocate first: once the commit is durable the clear must not fail.
        let empty = Empty::new().ok_or(MsgError::NoMemory)?;
        // Retired pool blocks stay retired.
        let used = self.pool.release_all();
        if let Err(e) = self.commit(io, 0, self.pool.total().saturating_sub(1)) {
            let pool = &mut self.pool;
            t.for_each(&self.writer, |m, s| {
                pool.take(s, m);
            });
            return Err(e);
        }
        // Only a foreign writer token fails, and ours is the table's.
        let n = t.clear_into(&mut self.writer, empty).unwrap_or(used);
        debug_assert_eq!(n, used);
        Ok(n)
    }

    /// Writes one run of remaps as `<main_sector> <spare_sector> <nr_sectors>`
    /// (after a newline unless it is the first line): `len` blocks from main
    /// block `main` to pool block `pool`.
    fn write_extent<W: Write>(&self, out: &mut W, newline: bool, main: u64, pool: u64, len: u64) {
        let bs = self.geo.block_sectors;
        if newline {
            let _ = out.write_char('\n');
        }
        let _ = write!(
            out,
            "{} {} {}",
            main * bs,
            self.geo.spare_data_start + pool * bs,
            len * bs
        );
    }

    fn list<W: Write>(
        &mut self,
        t: &RemapTable<E>,
        start: u64,
        max: u64,
        out: &mut W,
    ) -> Result<(), MsgError> {
        let mut n = 0usize;
        t.for_each(&self.writer, |m, _| n += usize::from(m >= start));
        if n == 0 {
            return Ok(());
        }
        let mut pairs = RawArray::<[u64; 2], E>::new(n).ok_or(MsgError::NoMemory)?;
        let mut i = 0;
        t.for_each(&self.writer, |m, s| {
            if m >= start && i < n {
                pairs[i] = [m, s];
                i += 1;
            }
        });
        let pairs = &mut pairs[..i];
        heapsort_by_first(pairs, E::cond_resched);
        let mut lines = 0;
        let mut k = 0;
        while k < pairs.len() {
            let [m0, s0] = pairs[k];
            let mut len = 1;
            while k + (len as usize) < pairs.len()
                && pairs[k + len as usize] == [m0 + len, s0 + len]
            {
                len += 1;
            }
            if lines == max {
                let _ = write!(out, "\nnext {m0}");
                break;
            }
            self.write_extent(out, lines > 0, m0, s0, len);
            lines += 1;
            k += len as usize;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::fake::*;
    use super::super::*;
    use super::*;

    use crate::logic::geometry::{validate, DeviceFacts};
    use crate::logic::message::MsgError;
    use crate::logic::routing::{route, Route};

    use crate::logic::table_line::Features;
    use crate::HostEnv;
    extern crate std;
    use crate::logic::testing::{geo, MIB};
    use std::string::String;
    use std::vec::Vec;

    #[test]
    fn add_remap_publishes_only_after_its_commit() {
        for writes_left in [None, Some(0), Some(3), Some(7)] {
            let mut f = Fixture::new(Some(4096));
            f.disk.writes_left = writes_left;
            let mut spy = Spy {
                disk: &mut f.disk,
                t: &f.t,
                block: 12,
                seen: false,
            };
            let m = parse(&["add_remap", "96", "auto", "16"]).unwrap();
            let r =
                f.r.handle(&f.t, &mut spy, m, &mut String::new(), &mut |_| {});
            assert!(!spy.seen, "published during the commit ({writes_left:?})");
            // Done once copy 0 is whole (2 writes).
            assert_eq!(
                r.is_ok(),
                writes_left.is_none_or(|n| n >= 2),
                "{writes_left:?}"
            );
            assert_eq!(f.t.lookup(12).is_some(), r.is_ok(), "{writes_left:?}");
            assert_eq!(f.t.lookup(13).is_some(), r.is_ok(), "{writes_left:?}");
        }
    }

    /// Main in memory with unreadable sectors, and a spare data area
    /// with sectors that fail writes: `add_remaps carry`'s devices.
    struct Devices {
        main: Vec<u8>,
        bad_main: Vec<u64>,
        spare: std::collections::BTreeMap<u64, Vec<u8>>,
        bad_spare: Vec<u64>,
    }

    impl Devices {
        fn new() -> Self {
            // 64 MiB of main, each 512-byte sector filled with its number.
            let mut main = std::vec![0u8; (64 * MIB) as usize * 512];
            for (i, s) in main.chunks_mut(512).enumerate() {
                s.fill((i % 251) as u8);
                s[..8].copy_from_slice(&(i as u64).to_le_bytes());
            }
            Self {
                main,
                bad_main: Vec::new(),
                spare: Default::default(),
                bad_spare: Vec::new(),
            }
        }
    }

    impl DataIo for Devices {
        fn read_main(&mut self, sector: u64, buf: &mut [u8]) -> Result<(), ()> {
            let n = (buf.len() / 512) as u64;
            if self
                .bad_main
                .iter()
                .any(|&b| (sector..sector + n).contains(&b))
            {
                return Err(());
            }
            let at = sector as usize * 512;
            buf.copy_from_slice(&self.main[at..at + buf.len()]);
            Ok(())
        }
        fn write_spare(&mut self, sector: u64, buf: &mut [u8]) -> Result<(), ()> {
            if self.bad_spare.contains(&sector) {
                return Err(());
            }
            self.spare.insert(sector, buf.to_vec());
            Ok(())
        }
    }

    fn add_list(
        f: &mut Fixture,
        data: Option<&mut dyn DataIo>,
        line: &str,
    ) -> Result<String, MsgError> {
        let words: Vec<&str> = line.split_whitespace().collect();
        let Ok(RemapMsg::AddList { carry, items }) = parse(&words) else {
            panic!("{line}");
        };
        let mut out = String::new();
        f.r.add_list(&f.t, &mut f.disk, data, carry, items, &mut out, &mut |_| {})
            .map(|()| out)
    }

    #[test]
    fn add_remaps_takes_scattered_ranges_in_one_commit() {
        let mut f = Fixture::new(Some(4096));
        f.msg("add_remap 64 auto").unwrap();
        let generation = f.r.generation();
        // Blocks 0, 8 (already remapped), 100..102 twice, 5000; sectors.
        let out = f.msg("add_remaps 0 64 800+24 808 40000").unwrap();
        assert_eq!(out, "added 5 pending 0 skipped 2");
        assert_eq!(f.r.generation(), generation + 1, "one commit");
        for b in [0, 8, 100, 101, 102, 5000] {
            assert!(f.t.lookup(b).is_some(), "block {b}");
        }
        assert_eq!(f.t.len(), 6);
        // Again: nothing to do, nothing written.
        let writes = f.disk.log.len();
        assert_eq!(
            f.msg("add_remaps 0 800+24").unwrap(),
            "added 0 pending 0 skipped 4"
        );
        assert_eq!(f.disk.log.len(), writes);
        // Refused as a whole: one bad range changes nothing.
        let before = f.state();
        for (line, want) in [
            ("add_remaps 8000 4", "multiples of the block size"),
            ("add_remaps 8000 131072", "beyond the end of the device"),
            ("add_remaps 8000 0+131080", "beyond the end of the device"),
            ("add_remaps carry 8000", "suspend"),
        ] {
            let e = f.msg(line).unwrap_err();
            assert!(e.contains(want), "{line}: {e}");
            assert_eq!(f.state(), before, "{line}");
        }
        // The reload finds what the commit wrote.
        let mut g = Fixture::on(Some(4096), f.disk.clone()).unwrap();
        assert_eq!(g.state(), f.state());
    }

    #[test]
    fn add_remaps_carry_copies_readable_blocks_and_makes_the_rest_pending() {
        let mut f = Fixture::new(Some(4096));
        let mut d = Devices::new();
        // Block 101 unreadable; the spare block the first copy takes fails.
        d.bad_main.push(101 * 8 + 3);
        let first = f.r.slot_sector(0);
        d.bad_spare.push(first);
        let out = add_list(&mut f, Some(&mut d), "add_remaps carry 800+24 4000").unwrap();
        assert_eq!(out, "added 3 pending 1 skipped 0");
        assert_eq!(f.r.pending(), [101]);
        assert_eq!(f.r.retired(), 1);
        assert_eq!(f.t.lookup(101), None);
        for b in [100u64, 102, 500] {
            let slot = f.t.lookup(b).expect("remapped");
            assert_ne!(
                f.r.slot_sector(slot),
                first,
                "block {b} on the failed block"
            );
            let at = (b * 4096) as usize;
            assert_eq!(
                d.spare.get(&f.r.slot_sector(slot)).map(|v| &v[..]),
                Some(&d.main[at..at + 4096]),
                "block {b}'s data"
            );
        }
        // All of it durable: a reload sees the remaps, the pending block
        // and the retired one.
        let mut g = Fixture::on(Some(4096), f.disk.clone()).unwrap();
        assert_eq!(g.state(), f.state());
        assert_eq!(g.r.pending(), [101]);
        assert_eq!(g.r.retired(), 1);
    }

    #[test]
    fn add_remaps_carry_that_fails_changes_nothing() {
        // A commit that fails at each of its writes, and a spare that fails
        // every write: the remaps, the pending list, the retired blocks and
        // the disk stay as they were.
        for writes_left in (0..8).map(Some).chain([None]) {
            let mut f = Fixture::new(Some(4096));
            f.msg("add_remap 0 auto 16").unwrap();
            let before = (f.state(), f.r.pending().to_vec(), f.r.retired());
            let mut d = Devices::new();
            d.bad_main.push(200 * 8);
            if writes_left.is_none() {
                d.bad_spare = (0..64).map(|s| f.r.slot_sector(s)).collect();
            }
            f.disk.writes_left = writes_left;
            let r = add_list(&mut f, Some(&mut d), "add_remaps carry 1600+16 2400");
            f.disk.writes_left = None;
            let after = (f.state(), f.r.pending().to_vec(), f.r.retired());
            let mut g = Fixture::on(Some(4096), f.disk.clone()).unwrap();
            assert_eq!(
                (g.state(), g.r.pending().to_vec(), g.r.retired()),
                after,
                "{writes_left:?}: disk and memory differ"
            );
            match r {
                Err(e) => assert_eq!(after, before, "{writes_left:?}: failed ({e}) but changed"),
                Ok(ref out) => {
                    assert_eq!(out, "added 2 pending 1 skipped 0", "{writes_left:?}");
                    assert!(writes_left.is_none_or(|n| n >= 2), "{writes_left:?}");
                }
            }
            if writes_left.is_none() {
                assert!(r.is_err(), "every spare write failed, yet: {r:?}");
            }
        }
    }

    #[test]
    fn huge_add_remap_is_refused_before_walking_its_range() {
        // 2^43 blocks of main: walking them for overlaps first would take
        // hours; the pool's size refuses the count at once.
        let main = 1u64 << 43;
        let d = |dev, sectors| DeviceFacts {
            dev,
            whole: dev,
            sectors,
            logical_block_size: 512,
        };
        let g = validate(main, &d(1, main), &d(2, 64 * MIB), &Features::default()).unwrap();
        let mut disk = Disk::new();
        let layout = test_layout(&mut disk, &g, 5);
        let mut id = pair(None);
        id.main_sectors = main;
        let (t, mut r) = Remaps::<HostEnv>::new(g, layout, id, crc32fast::hash).unwrap();
        r.load(&t, &mut disk, false, [9; 16], &mut |_| {}).unwrap();
        let start = std::time::Instant::now();
        for line in [
            std::format!("add_remap 0 auto {main}"),
            std::format!("add_remap 0 10240 {main}"),
        ] {
            let words: Vec<&str> = line.split_whitespace().collect();
            let m = parse(&words).unwrap();
            let e = r
                .handle(&t, &mut disk, m, &mut String::new(), &mut |_| {})
                .unwrap_err();
            assert!(
                matches!(
                    e,
                    MsgError::PoolFull { .. }
                        | MsgError::MetadataFull { .. }
                        | MsgError::Invalid(_)
                ),
                "{line}: {e}"
            );
        }
        assert!(start.elapsed().as_secs() < 5, "took {:?}", start.elapsed());
        assert_eq!(t.len(), 0);
        // Twice as many 512-byte blocks and a pool of 2^20 no longer pack
        // into a table word.
        let mut id = pair(None);
        id.main_sectors = main * 2;
        let g = validate(
            main * 2,
            &d(1, main * 2),
            &d(2, 64 * MIB),
            &Features::default(),
        )
        .unwrap();
        assert_eq!(
            Remaps::<HostEnv>::new(g, layout, id, crc32fast::hash).err(),
            Some(crate::logic::table::TableError::TooWide)
        );
    }

    #[test]
    fn out_of_memory_at_every_allocation_changes_nothing_or_everything() {
        // Every message that changes the table, with memory running out at
        // each of its allocations in turn: it either fails and changes
        // nothing (in memory and on disk), or succeeds and is durable.
        let cases = [
            "add_remap 800 auto 64",
            "add_remaps 800+64 16000 24000+16 16000",
            "add_remap 800 40960 8",
            "remove_remap 80 16",
            "clear_remaps",
        ];
        for line in cases {
            let mut outcomes = (0, 0);
            for budget in 0.. {
                let mut f = Fixture::new(Some(4096));
                f.msg("add_remap 80 auto 16").unwrap();
                f.msg("add_remap 8000 auto 24").unwrap();
                let before = f.state();
                crate::set_alloc_budget(Some(budget));
                let r = f.msg(line);
                crate::set_alloc_budget(None);
                let after = f.state();
                let mut g = Fixture::on(Some(4096), f.disk.clone()).expect("reloads");
                assert_eq!(
                    g.state(),
                    after,
                    "{line}, budget {budget}: disk and memory differ"
                );
                match r {
                    Err(e) => {
                        assert_eq!(
                            after, before,
                            "{line}, budget {budget}: failed ({e}) but changed"
                        );
                        outcomes.0 += 1;
                    }
                    Ok(_) => {
                        assert_ne!(after, before, "{line}, budget {budget}");
                        outcomes.1 += 1;
                        break;
                    }
                }
            }
            assert!(outcomes.1 == 1, "{line}: never succeeded");
        }
    }

    #[test]
    fn parsers_and_messages_survive_generated_input() {
        // Token soup for the message and table-line parsers: never a panic;
        // a message that is refused changes nothing (list, count, pending,
        // retired); an accepted table line's canonical form parses back to
        // the same line.
        let seed = 0x0bad_cafe_u64;
        std::println!("parser fuzz seed {seed:#x}");
        let mut rng = crate::logic::TestRng(seed);
        let words = [
            "add_remap",
            "remove_remap",
            "clear_remaps",
            "count",
            "list",
            "query",
            "help",
            "pending",
            "lost",
            "add_remaps",
            "carry",
            "8+8",
            "clear_pending",
            "clear_fail",
            "set",
            "policy",
            "scan",
            "scan_rate",
            "start",
            "stop",
            "status",
            "auto",
            "all",
            "block_size",
            "copies",
            "format",
            "auto_remap",
            "read_retries",
            "write_retries",
            "error_threshold",
            "spare_low",
            "scan_chunk",
            "on",
            "off",
            "0",
            "1",
            "8",
            "-1",
            "4096",
            "65536",
            "131072",
            "18446744073709551615",
            "18446744073709551616",
            "0x10",
            "1e3",
            "7:0",
            "/dev/loop0",
            "nan",
        ];
        let tok = |rng: &mut crate::logic::TestRng| -> String {
            if rng.below(3) == 0 {
                std::format!("{}", rng.next() >> rng.below(64))
            } else {
                String::from(words[rng.below(words.len() as u64) as usize])
            }
        };
        let mut f = Fixture::new(Some(4096));
        f.msg("add_remap 80 auto 16").unwrap();
        let (mut ok, mut refused) = (0, 0);
        for _ in 0..20000 {
            let n = rng.below(6) as usize;
            let line: Vec<String> = (0..n).map(|_| tok(&mut rng)).collect();
            let args: Vec<&str> = line.iter().map(|s| s.as_str()).collect();
            // The table line.
            if let Ok(tl) = crate::logic::table_line::parse(&args) {
                let mut canon = String::new();
                crate::logic::table_line::write_canonical(
                    &mut canon,
                    tl.main,
                    tl.spare,
                    &tl.features,
                    tl.migrate_to,
                )
                .unwrap();
                let back: Vec<&str> = canon.split(' ').collect();
                let again = crate::logic::table_line::parse(&back).unwrap();
                assert_eq!(again.features, tl.features, "{args:?} -> {canon}");
                assert_eq!(again.migrate_to, tl.migrate_to, "{args:?} -> {canon}");
            }
            // The message, on a live table.
            let Ok(m) = parse(&args) else {
                refused += 1;
                continue;
            };
            let before = (f.state(), f.r.pending().to_vec(), f.r.retired());
            let mut out = String::new();
            let r = f.r.handle(&f.t, &mut f.disk, m, &mut out, &mut |_| {});
            if r.is_err() {
                refused += 1;
                assert_eq!(
                    (f.state(), f.r.pending().to_vec(), f.r.retired()),
                    before,
                    "{args:?}"
                );
            } else {
                ok += 1;
            }
            if f.t.len() > 2000 {
                f.msg("clear_remaps").unwrap();
            }
        }
        std::println!("parser fuzz: {ok} accepted, {refused} refused");
        let st = f.state();
        assert_eq!(Fixture::on(Some(4096), f.disk.clone()).unwrap().state(), st);
    }

    #[test]
    fn seed_loop_resizes_as_documented() {
        let mut f = Fixture::new(None);
        for i in 1..=200u64 {
            let line = std::format!("add_remap {} {} 10", 1000 + i * 10, 15000 + i * 10);
            assert_eq!(
                f.msg(&line).unwrap(),
                std::format!("{} {} 10", 1000 + i * 10, 15000 + i * 10)
            );
        }
        assert_eq!(f.msg("count").unwrap(), "2000");
        let starts: Vec<_> = f
            .events
            .iter()
            .filter_map(|e| match e {
                Event::Resizing { old, new, count } => Some((*old, *new, *count)),
                _ => None,
            })
            .collect();
        // One line per message that changed the capacity: each rebuild
        // sizes a segment for 75 % load; beyond 512 slots a segment grows
        // a page at a time.
        assert_eq!(
            starts,
            [
                (14, 30, 20),
                (30, 62, 30),
                (62, 126, 60),
                (126, 254, 110),
                (254, 510, 220),
                (510, 1022, 440),
                (1022, 1534, 870),
                (1534, 2046, 1310),
                (2046, 2558, 1740)
            ]
        );
        assert_eq!(f.r.resizes(), 9);
        assert_eq!(f.msg("query 1015").unwrap(), "spare 15015");
        assert_eq!(f.msg("query 999").unwrap(), "main 999");
        // Consecutive remaps list as one extent.
        assert_eq!(f.msg("list").unwrap(), "1010 15010 2000");
        // Removing them all shrinks the table back to its first size, in
        // one line.
        f.events.clear();
        assert_eq!(f.msg("remove_remap 1010 2000").unwrap(), "removed 2000");
        assert_eq!(
            f.events,
            [
                Event::Resizing {
                    old: 2558,
                    new: 14,
                    count: 0
                },
                Event::Resized { old: 2558, new: 14 }
            ]
        );
    }

    #[test]
    fn routing_splits_at_boundaries() {
        let mut f = Fixture::new(None);
        f.msg("add_remap 100 15000 4").unwrap();
        f.msg("add_remap 104 19000 2").unwrap();
        let g = f.r.geo;
        let lk = |b| f.t.lookup(b);
        // Before the remaps: main up to sector 100.
        assert_eq!(
            route(&g, lk, 90, 20),
            Route {
                to_spare: false,
                sector: 90,
                len: 10
            }
        );
        // Into the first remap: 4 contiguous spare sectors, then a jump.
        assert_eq!(
            route(&g, lk, 100, 20),
            Route {
                to_spare: true,
                sector: 15000,
                len: 4
            }
        );
        assert_eq!(
            route(&g, lk, 104, 20),
            Route {
                to_spare: true,
                sector: 19000,
                len: 2
            }
        );
        assert_eq!(
            route(&g, lk, 106, 20),
            Route {
                to_spare: false,
                sector: 106,
                len: 20
            }
        );
    }

    #[test]
    fn routing_with_large_blocks() {
        let mut f = Fixture::new(Some(4096));
        f.msg("add_remap 16 auto 16").unwrap();
        let g = geo(Some(4096));
        let lk = |b| f.t.lookup(b);
        let r = route(&g, lk, 20, 100);
        assert!(r.to_spare);
        assert_eq!(r.sector, g.spare_data_start + 4);
        assert_eq!(r.len, 12);
        assert_eq!(route(&g, lk, 0, 100).len, 16);
    }

    #[test]
    fn remove_and_clear_restore_main() {
        let mut f = Fixture::new(None);
        f.msg("add_remap 0 auto 300").unwrap();
        assert_eq!(f.t.capacity(), 510);
        assert_eq!(f.r.spare_used(), 300);
        assert_eq!(f.msg("remove_remap 0 290").unwrap(), "removed 290");
        // 10 entries left: the segment shrinks to 32 slots.
        assert_eq!(f.t.capacity(), 30);
        assert_eq!(f.msg("query 5").unwrap(), "main 5");
        assert_eq!(f.msg("count").unwrap(), "10");
        assert_eq!(f.msg("clear_remaps").unwrap(), "cleared 10");
        assert_eq!(f.msg("count").unwrap(), "0");
        assert_eq!(f.r.spare_used(), 0);
        assert_eq!(f.msg("list").unwrap(), "");
    }

    #[test]
    fn refusals_change_nothing() {
        let mut f = Fixture::new(Some(4096));
        f.msg("add_remap 8 auto 8").unwrap();
        let before = (f.msg("list").unwrap(), f.r.spare_used());
        let cases = [
            ("add_remap 4 auto", "multiples of the block size"),
            ("add_remap 8 auto 4", "multiples of the block size"),
            (
                "add_remap 0 auto 16",
                "overlaps an existing remap (sector 8)",
            ),
            ("add_remap 131064 auto 16", "beyond the end of the device"),
            (
                "add_remap 16 96",
                "spare range lies in the metadata area (sector 96)",
            ),
            ("add_remap 16 4100", "multiple of the block size"),
            (
                "add_remap 16 4096",
                "spare range is already in use (sector 4096)",
            ),
            ("add_remap 16 131064 16", "beyond the spare's data pool"),
            ("add_remap 16 auto 1000000", "beyond the end of the device"),
            ("remove_remap 16", "not remapped (sector 16)"),
            ("remove_remap 8 16", "not remapped (sector 16)"),
            ("remove_remap 12", "multiples of the block size"),
            ("query 131072", "beyond the end"),
        ];
        for (m, want) in cases {
            let got = f.msg(m).expect_err(m);
            assert!(got.contains(want), "{m}: got {got:?}, want {want:?}");
            assert_eq!((f.msg("list").unwrap(), f.r.spare_used()), before, "{m}");
        }
    }

    #[test]
    fn pool_exhaustion() {
        let mut f = Fixture::new(Some(65536));
        // 62 MiB of pool in 64 KiB blocks: 992 blocks.
        assert_eq!(f.r.pool.total(), 992);
        f.msg("add_remap 0 auto 126976").unwrap();
        let e = f.msg("add_remap 126976 auto 128").unwrap_err();
        assert_eq!(e, "spare pool full: 1 blocks needed, 0 free");
    }

    #[test]
    fn list_pages() {
        let mut f = Fixture::new(None);
        for i in 0..5 {
            f.msg(&std::format!("add_remap {} auto", i * 10)).unwrap();
        }
        // The pool of a 64 MiB spare of 512-byte blocks starts after a
        // metadata area of 5 MiB (5 copies of 256 units).
        assert_eq!(f.r.geo.spare_data_start, 10240);
        assert_eq!(f.msg("list 0 2").unwrap(), "0 10240 1\n10 10241 1\nnext 20");
        assert_eq!(
            f.msg("list 20 2").unwrap(),
            "20 10242 1\n30 10243 1\nnext 40"
        );
        assert_eq!(f.msg("list 40 2").unwrap(), "40 10244 1");
    }
}
