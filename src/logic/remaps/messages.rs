// SPDX-License-Identifier: GPL-2.0

//! The messages the writer handles (`Remaps::handle`): `add_remap`,
//! `remove_remap`, `clear_remaps`, `query`, `list`, `count`,
//! `convert_metadata` and `help`. Each checks all of its input before it
//! changes anything and commits before it returns.

use super::*;
use crate::logic::format;
use crate::logic::mem::{Env, RawArray};
use crate::logic::message::{MsgError, RemapMsg, SpareArg, HELP};
use crate::logic::routing::{route, Route};
use crate::logic::table::{target_buckets, Empty, Nodes, RemapTable, Retired};
use core::fmt::Write;

impl<E: Env> Remaps<E> {
    /// Executes `msg`; replies go to `out`, things to log to `ev`; changes
    /// are committed through `io` before this returns.
    ///
    /// May sleep (grace periods, metadata I/O); never call it on the I/O path.
    pub fn handle<W: Write>(
        &mut self,
        t: &RemapTable<E>,
        io: &mut dyn MetaIo,
        msg: RemapMsg,
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
        }

        self.resize_for(t, t.len() + n, ev);

        // Reserve the pool blocks, commit, and only then publish: until the
        // remaps are durable, I/O to the blocks still goes to main, so no
        // write is acknowledged on a spare block that a failed commit or a
        // power cut would disown. Undo everything if the commit fails or
        // memory runs out.
        // `n` fits the pool (checked above), so it fits `usize`. The table
        // nodes too are allocated before the commit, so that publishing
        // cannot fail once the remaps are durable.
        let mut slots = RawArray::<u64, E>::new(n as usize).ok_or(MsgError::NoMemory)?;
        let mut nodes = Nodes::<E>::new(n).ok_or(MsgError::NoMemory)?;
        let mut reserved = 0;
        let (mut lo, mut hi) = (u64::MAX, 0);
        for (i, slot) in slots.iter_mut().enumerate() {
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
            return Err(e);
        }
        for (i, &sb) in slots.iter().enumerate() {
            // Cannot fail: a node for each, no block remapped (checked
            // above, under the writer's lock), our own writer token.
            if let Some(node) = nodes.pop() {
                let _ = t.insert_node(&mut self.writer, first + i as u64, sb, node);
            }
        }

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
            // Dropping `retired` waits for readers and frees the nodes.
        }
        self.resize_for(t, t.len(), ev);
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

    /// Grows or shrinks the table for `entries` entries, if needed.
    pub(super) fn resize_for(
        &mut self,
        t: &RemapTable<E>,
        entries: u64,
        ev: &mut dyn FnMut(Event),
    ) {
        let old = t.buckets();
        let new = target_buckets(old, entries);
        if new == old {
            return;
        }
        ev(Event::Resizing {
            old,
            new,
            count: entries,
        });
        match t.resize(&mut self.writer, new) {
            Ok(()) => ev(Event::Resized { old, new }),
            Err(_) => ev(Event::ResizeFailed { old, new }),
        }
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
        heapsort_by_first(pairs);
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
