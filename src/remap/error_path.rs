// SPDX-License-Identifier: GPL-2.0

//! The error path.
//!
//! `end_io` hands a bio whose I/O failed to the target's worker (an ordered
//! workqueue, so one bio at a time, in process context); `map` hands it a
//! write to a pending block. The worker goes through the bio block by block
//! (reads and writes to main without the target's lock, see
//! `Remap::finish_bio`):
//!
//! - a write to main is retried (`write_retries`); a block that still fails
//!   gets a spare block: the data is written there, the metadata committed
//!   on every copy, and only then is the remap published and the bio
//!   completed, successfully;
//! - a write to a spare block that fails is retried, then the block is
//!   retired and the data goes to a new one the same way;
//! - a read is retried (`read_retries`) block by block; what reads back is
//!   returned, a block that keeps failing (on main, or on the spare block it
//!   is remapped to) becomes pending and the bio fails with EIO; a write to
//!   it later replaces what was lost (on a new spare block, or on the spare
//!   block whose read failed) and takes it off the list. A failure the full
//!   list has no room for is counted (how many, lowest and highest block).
//!
//! Publishing only after the commit means no I/O reaches a spare block before
//! the metadata naming it is durable. While a block is being remapped, other
//! I/O to it still goes to main: if it fails it queues behind the remap and is
//! then served from the spare; if it succeeds it was issued before the failed
//! write completed, so the block layer gives it no order relative to that
//! write.
//!
//! A commit that fails puts the target in fail mode: the bio that needed it
//! fails, and `map` refuses writes until `clear_fail` rewrites the metadata.

use super::{log_event, Core, Remap};
use crate::dm::io::{self, SpareIo};
use crate::dm::log::{dmr_err, dmr_info};
use crate::dm::target::Target;
use crate::dm::bio::Stage;
use crate::dm::worker::{BlockError, OwnedBio};
use crate::logic::emit::Emitter;
use crate::logic::message::{Extents, MsgError};
use crate::logic::remaps::{self, DataIo, PendingAdd};
use crate::logic::routing::pieces;
use crate::logic::stats::Counter;
use core::sync::atomic::Ordering;

/// The device an I/O of the error path goes to.
#[derive(Clone, Copy)]
enum Dev {
    Main,
    Spare,
}

/// What an I/O of the error path does.
#[derive(Clone, Copy)]
enum Op {
    Read,
    Write,
    /// A write the bio asked to be durable when it completes.
    WriteFua,
}

/// Attempts at one block of a bio with the I/O done without the lock, before
/// one with the lock held throughout (each attempt after the first follows a
/// message that moved the block meanwhile).
const PIECE_ATTEMPTS: u32 = 3;

/// New spare blocks tried for one block before giving up.
const RELOCATE_ATTEMPTS: u32 = 8;

/// The data I/O of `add_remaps carry`: the error path's, with its read
/// retries.
pub(super) struct CarryIo<'a> {
    pub(super) target: &'a Remap,
    pub(super) read_retries: u32,
}

impl DataIo for CarryIo<'_> {
    fn read_main(&mut self, sector: u64, buf: &mut [u8]) -> Result<(), ()> {
        self.target
            .retried(Dev::Main, Op::Read, self.read_retries, sector, buf)
            .then_some(())
            .ok_or(())
    }

    fn write_spare(&mut self, sector: u64, buf: &mut [u8]) -> Result<(), ()> {
        self.target
            .io(Dev::Spare, Op::Write, sector, buf)
            .then_some(())
            .ok_or(())
    }
}

impl Remap {
    /// `add_remaps carry` on the suspended device: the plan under the lock,
    /// the copy without it (main's reads may take minutes on a failing
    /// disk; status and read-only messages answer meanwhile, changing ones
    /// are refused), then the commit under it again, unless the device was
    /// resumed in between (I/O may have written a block after its copy).
    pub(super) fn add_carried(
        &self,
        dev: &str,
        sio: &mut SpareIo<'_>,
        items: Extents<'_>,
        out: &mut Emitter<'_>,
    ) -> Result<(), MsgError> {
        let mut c = self.core.lock();
        let mut plan = c.remaps.add_list_begin(&self.table, true, items)?;
        let (read_retries, resumes) = (c.policy.read_retries, c.resumes);
        c.carrying = true;
        drop(c);
        let mut d = CarryIo {
            target: self,
            read_retries,
        };
        remaps::carry_copy(&mut plan, &mut d);
        let mut c = self.core.lock();
        c.carrying = false;
        if c.resumes != resumes || !c.suspended {
            c.remaps.add_list_abort(plan);
            return Err(MsgError::NotSuspended);
        }
        let r = c.remaps.add_list_finish(
            &self.table,
            sio,
            plan,
            Some(&mut d),
            out,
            &mut |ev| log_event(dev, ev),
        );
        self.pending.set(c.remaps.pending());
        if c.remaps.take_degraded() || matches!(r, Err(MsgError::Io)) {
            self.enter_fail(dev);
        }
        r
    }

    /// Commits after a change of the error path: the entry units of pool
    /// blocks `lo..=hi` with `Some((lo, hi))`, none with `None` (a change of
    /// the pending list only); the pending list whenever it changed. A
    /// failed write enters fail mode (out of memory writes nothing).
    pub(super) fn commit(&self, dev: &str, c: &mut Core, slots: Option<(u64, u64)>) -> bool {
        let mut sio = self.spare_io();
        let r = match slots {
            Some((lo, hi)) => c.remaps.commit(&mut sio, lo, hi),
            None => c.remaps.commit_pending(&mut sio),
        };
        match r {
            Ok(()) => {
                if c.remaps.take_degraded() {
                    // Durable in copy 0 on, missing from a later copy.
                    self.enter_fail(dev);
                }
                true
            }
            Err(MsgError::NoMemory) => false,
            Err(_) => {
                self.enter_fail(dev);
                false
            }
        }
    }

    /// One synchronous I/O of the error path to `dev`.
    fn io(&self, dev: Dev, op: Op, sector: u64, buf: &mut [u8]) -> bool {
        let d = match dev {
            Dev::Main => &self.main,
            Dev::Spare => self.spare(),
        };
        let f = match op {
            // Reads fail fast: `read_retries` is the retry policy.
            Op::Read => io::flags::READ | io::flags::FAILFAST,
            Op::Write => io::flags::WRITE,
            Op::WriteFua => io::flags::WRITE | io::flags::FUA,
        };
        let ok = io::sync_io(&self.io_client, d, sector, buf, f).is_ok();
        if ok && matches!(dev, Dev::Spare) && !matches!(op, Op::Read) {
            self.mirror(sector, buf);
        }
        ok
    }

    /// `op` on `dev` with `retries` retries.
    fn retried(&self, dev: Dev, op: Op, retries: u32, sector: u64, buf: &mut [u8]) -> bool {
        (0..=retries).any(|_| self.io(dev, op, sector, buf))
    }

    /// Completes a bio the worker took over: one that failed, one `map`
    /// deferred (a write to a pending block or to the block being written
    /// here), or a write that landed where its block has moved away from
    /// (`REDO`). Goes block by block; a write that covers only part of a
    /// block is merged into the rest of the block, read from where the
    /// table puts it (an unreadable remainder makes the block pending and
    /// the write fails, as a read of it would).
    ///
    /// Reads, and writes to main, run without the target's lock (each with
    /// its retries, which on a dying disk may take minutes), so that status,
    /// messages and suspend do not wait for them. Afterwards, under the
    /// lock, the table must still put the block where the I/O went; if a
    /// message moved it meanwhile, the block is done again from where it is
    /// now ([`PIECE_ATTEMPTS`] times, then with the lock held throughout).
    /// A write to a spare block, a relocation (write, commit, publish) and
    /// every metadata commit hold the lock, as messages do: a spare block
    /// whose remap a message removed may already hold another main block.
    pub(super) fn finish_bio(&self, ti: &Target, mut bio: OwnedBio) {
        let dev = ti.device_name();
        bio.restore();
        // By the main sector `map` recorded: where the bio was sent then
        // (and where its clone's `bi_bdev` points now) does not matter; the
        // block is retried wherever the table puts it now.
        let (rec, size, write, fua) = {
            let b = bio.bio();
            (b.recorded().0, b.size(), b.is_write(), b.is_durable())
        };
        let sector = rec.origin;
        let deferred = rec.stage == Stage::Deferred;
        let redo = rec.stage == Stage::Redo;
        let bs = self.geometry.block_sectors;
        let bs_bytes = self.bs_bytes();
        let mut c = self.core.lock();
        // Only the worker takes the buffer, one bio at a time (an ordered
        // workqueue), and puts it back before it completes the bio.
        let Some(mut buf) = c.buf.take() else {
            drop(c);
            bio.complete(Err(BlockError::Resource));
            return;
        };
        let mut status = Ok(());
        let mut pending_changed = false;
        if !c.remaps.loaded() || size % 512 != 0 || buf.len() < bs_bytes {
            status = Err(BlockError::Io);
        }
        let sectors = if status.is_ok() { u64::from(size >> 9) } else { 0 };
        for p in pieces(&self.geometry, sector, sectors) {
            // Pieces are at most one block, inside the bio: the casts are
            // lossless.
            let off = (p.skip << 9) as u32;
            let n = (p.len << 9) as usize;
            let merge = write && p.len != bs;
            if merge {
                // Merged into the rest of the block as read now: a write to
                // another sector of it must not land where it was read
                // from, unseen (see `guard`).
                self.guard(p.block);
            }
            let mut st = Err(BlockError::Io);
            for attempt in 0..=PIECE_ATTEMPTS {
                let unlocked = attempt < PIECE_ATTEMPTS;
                let at = self.table.lookup(p.block);
                if write && redo && at.is_none() {
                    // Still on main, where it was written.
                    st = Ok(());
                    break;
                }
                let (read_retries, write_retries) =
                    (c.policy.read_retries, c.policy.write_retries);
                if write && !merge {
                    // The whole block: a write to it in flight meanwhile
                    // overlaps this one, and either may end up on top.
                    bio.copy_out(off, &mut buf[..n]);
                } else {
                    // A read, or the block a partial write is merged into.
                    let (in_block, len) = if write { (0, bs) } else { (p.in_block, p.len) };
                    let (on, from) = match at {
                        Some(slot) => (Dev::Spare, c.remaps.slot_sector(slot) + in_block),
                        None => (Dev::Main, p.block * bs + in_block),
                    };
                    let dst = &mut buf[..(len << 9) as usize];
                    let ok = if unlocked {
                        drop(c);
                        let ok = self.retried(on, Op::Read, read_retries, from, dst);
                        c = self.core.lock();
                        if self.table.lookup(p.block) != at {
                            continue;
                        }
                        ok
                    } else {
                        self.retried(on, Op::Read, read_retries, from, dst)
                    };
                    if !ok {
                        // On main or on its spare block: the block's data
                        // is gone until a write replaces it.
                        let spare = at.map(|_| from - in_block);
                        pending_changed |= self.mark_pending(dev, &mut c, p.block, spare);
                        st = Err(BlockError::Io);
                        break;
                    }
                    if !write {
                        bio.copy_in(off, &buf[..n]);
                        st = Ok(());
                        break;
                    }
                    let at = (p.in_block << 9) as usize;
                    bio.copy_out(off, &mut buf[at..at + n]);
                }
                let data = &mut buf[..bs_bytes];
                let op = if fua { Op::WriteFua } else { Op::Write };
                st = match at {
                    Some(slot) => {
                        let to = c.remaps.slot_sector(slot);
                        if self.retried(Dev::Spare, op, write_retries, to, data) {
                            // Its spare block could not be read; this write
                            // replaced what was lost.
                            if self.unpend(dev, &mut c, p.block) {
                                dmr_info!(
                                    "{}: pending sector {} rewritten on spare sector {}\n",
                                    dev,
                                    p.block * bs,
                                    to
                                );
                            }
                            Ok(())
                        } else {
                            self.relocate(dev, &mut c, data, p.block, Some(slot))
                        }
                    }
                    None => {
                        let pending = c.remaps.pending().contains(&p.block);
                        let skip_main = deferred && pending && c.policy.auto_remap;
                        let to = p.block * bs;
                        let written = if skip_main {
                            false
                        } else if unlocked {
                            drop(c);
                            let ok = self.retried(Dev::Main, op, write_retries, to, data);
                            c = self.core.lock();
                            if self.table.lookup(p.block).is_some() {
                                continue;
                            }
                            ok
                        } else {
                            self.retried(Dev::Main, op, write_retries, to, data)
                        };
                        if written {
                            // Written fine after all: the drive reassigned
                            // the sector.
                            self.unpend(dev, &mut c, p.block);
                            Ok(())
                        } else {
                            self.relocate(dev, &mut c, data, p.block, None)
                        }
                    }
                };
                break;
            }
            if merge {
                self.relocating.store(0, Ordering::SeqCst);
            }
            if st.is_err() {
                status = st;
                if write {
                    // Later blocks would hit the same condition (fail mode,
                    // no spare left); the bio fails anyway.
                    break;
                }
            }
        }
        if pending_changed {
            self.pending.set(c.remaps.pending());
            self.commit(dev, &mut c, None);
        }
        c.buf = Some(buf);
        self.update_stats(&mut c);
        drop(c);
        bio.complete(status);
    }

    /// Takes main block `block` off the pending list, if it is there (a
    /// write replaced its lost data in place), and commits that; whether it
    /// was.
    fn unpend(&self, dev: &str, c: &mut Core, block: u64) -> bool {
        if !c.remaps.remove_pending(block) {
            return false;
        }
        self.pending.set(c.remaps.pending());
        self.commit(dev, c, None);
        true
    }

    /// Holds writes to main block `block` back in `map` while the worker
    /// writes it, and makes writes issued before in flight to it check the
    /// table when they complete (see `Remap::relocations`).
    fn guard(&self, block: u64) {
        self.relocating.store(block + 1, Ordering::SeqCst);
        self.relocations.fetch_add(1, Ordering::SeqCst);
    }

    /// Makes main block `block` pending (memory only): a read of it failed
    /// on main or, when `spare` names it, on the spare block it is remapped
    /// to. A block the full list has no room for is counted as unrecorded.
    /// Returns whether there is something to commit.
    pub(super) fn mark_pending(
        &self,
        dev: &str,
        c: &mut Core,
        block: u64,
        spare: Option<u64>,
    ) -> bool {
        let sector = block * self.geometry.block_sectors;
        match c.remaps.add_pending(block) {
            PendingAdd::Added => {
                self.stats.add(Counter::PendingMarked, 1);
                match spare {
                    Some(at) => dmr_err!(
                        "{}: read error on spare sector {} (main sector {}): pending\n",
                        dev,
                        at,
                        sector
                    ),
                    None => dmr_err!("{}: read error on main sector {}: pending\n", dev, sector),
                }
                true
            }
            PendingAdd::Full => {
                dmr_err!(
                    "{}: read error on main sector {}: pending list full, not recorded ({} unrecorded)\n",
                    dev,
                    sector,
                    c.remaps.unrecorded().count
                );
                true
            }
            PendingAdd::Present | PendingAdd::OutOfRange => false,
        }
    }

    /// Moves main block `block` (data in `data`, one block) to a new spare
    /// block, retiring `old` (its failed spare block) if given: write,
    /// commit, publish. Fails with `NoSpace` when the pool has no free block
    /// left, `Resource` without memory, `Io` otherwise.
    fn relocate(
        &self,
        dev: &str,
        c: &mut Core,
        data: &mut [u8],
        block: u64,
        old: Option<u64>,
    ) -> Result<(), BlockError> {
        let sector = block * self.geometry.block_sectors;
        let threshold = c.policy.error_threshold;
        if !c.policy.auto_remap || (threshold != 0 && c.auto_remaps >= threshold) {
            return Err(BlockError::Io);
        }
        // Room in the table first: once the remap is durable, publishing
        // it must not fail.
        let Some(room) = c.remaps.reserve_one(&self.table, &mut |ev| log_event(dev, ev)) else {
            return Err(BlockError::Resource);
        };
        let (mut lo, mut hi) = (u64::MAX, 0u64);
        let mut slot = None;
        for _ in 0..RELOCATE_ATTEMPTS {
            let Some(s) = c.remaps.reserve(block) else {
                break;
            };
            lo = lo.min(s);
            hi = hi.max(s);
            let at = c.remaps.slot_sector(s);
            if self.io(Dev::Spare, Op::Write, at, data) {
                slot = Some(s);
                break;
            }
            c.remaps.retire_slot(s);
            dmr_err!("{}: spare sector {} failed: retired\n", dev, at);
        }
        let Some(slot) = slot else {
            if lo <= hi {
                // Record the retired blocks now, so that the metadata never
                // counts blocks its entry sectors do not show (the next
                // commit would write them anyway), and a reload does not
                // hand them out again.
                self.commit(dev, c, Some((lo, hi)));
            }
            self.report_spare(dev, c);
            if c.remaps.free_slots() == 0 {
                dmr_err!(
                    "{}: no spare block for main sector {}: write failed\n",
                    dev,
                    sector
                );
                return Err(BlockError::NoSpace);
            }
            return Err(BlockError::Io);
        };
        if let Some(o) = old {
            c.remaps.retire_slot(o);
            lo = lo.min(o);
            hi = hi.max(o);
        }
        let was_pending = c.remaps.remove_pending(block);
        if !self.commit(dev, c, Some((lo, hi))) {
            c.remaps.unreserve(slot);
            if let Some(o) = old {
                c.remaps.unretire(o, block);
            }
            if was_pending {
                c.remaps.add_pending(block);
            }
            return Err(BlockError::Io);
        }
        c.remaps.publish(&self.table, block, slot, room, &mut |ev| {
            log_event(dev, ev)
        });
        self.pending.set(c.remaps.pending());
        c.auto_remaps += 1;
        self.stats.add(Counter::AutoRemaps, 1);
        let to = c.remaps.slot_sector(slot);
        match old {
            Some(o) => dmr_err!(
                "{}: spare sector {} failed: retired; main sector {} now at spare sector {}\n",
                dev,
                c.remaps.slot_sector(o),
                sector,
                to
            ),
            None if was_pending => dmr_info!(
                "{}: pending sector {} rewritten: remapped to spare sector {}\n",
                dev,
                sector,
                to
            ),
            None => dmr_err!(
                "{}: write error on main sector {}: remapped to spare sector {}\n",
                dev,
                sector,
                to
            ),
        }
        if threshold != 0 && c.auto_remaps >= threshold && c.policy.auto_remap {
            c.policy.auto_remap = false;
            self.auto_remap.store(false, Ordering::Relaxed);
            dmr_err!("{}: error threshold {} reached; auto_remap off\n", dev, threshold);
        }
        self.report_spare(dev, c);
        Ok(())
    }
}
