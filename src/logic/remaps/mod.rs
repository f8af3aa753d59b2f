// SPDX-License-Identifier: GPL-2.0

//! The writer side of the remaps: the messages that change or show the
//! remap table, and the metadata that makes them durable.
//!
//! Children: [`discover`] finds the metadata on a spare, [`metadata`] loads
//! and commits it, [`messages`] handles the writer's messages.
//!
//! [`Remaps`] is the writer side: it owns the table's [`Writer`] token, the spare pool and
//! the metadata state, and is kept behind a mutex by the target. Every message
//! checks all of its input before it changes anything, and undoes its own
//! partial work if memory or the metadata commit fails, so a refused message
//! changes nothing. A change is acknowledged only once it is on the spare in
//! every copy ([`Remaps::commit`]).

use super::format::{Crc, Defect, Identity, Layout, Unrecorded, PENDING_ROOM};
use super::geometry::Geometry;
use super::mem::{Env, RawArray};
use super::pool::SparePool;
use super::table::{RemapTable, Reservation, Retired, TableError, Writer, RESCHED_EVERY};
mod discover;
#[cfg(test)]
mod fake;
mod messages;
mod metadata;
mod migrate;

pub use discover::{check_spare, discover, LayoutRequest};
#[cfg(not(MODULE))]
pub use discover::{find_layout, interrupted_format};
pub use messages::carry_copy;
use metadata::Metadata;
pub use migrate::{check_new_spare, copy_run, spare_uuid, SwitchError};
#[cfg(not(MODULE))]
pub use migrate::{NewSpare, Switched};

/// Something the caller should log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    /// The table's capacity changed: segments of it were rebuilt larger or
    /// smaller (or split) by the message, load or remap just made. Logged
    /// once per such change, after it.
    Resizing {
        /// Buckets (slots of the open-addressing table) before.
        old: u64,
        /// Buckets after.
        new: u64,
        /// Entries now.
        count: u64,
    },
    /// The same resize, done (logged right after [`Event::Resizing`], the
    /// pair the original's monitoring scripts match).
    Resized {
        /// Buckets before.
        old: u64,
        /// Buckets after.
        new: u64,
    },
    /// Metadata loaded from a copy.
    Loaded {
        /// The copy.
        copy: u32,
        /// Its generation.
        generation: u64,
        /// Remaps in it.
        remaps: u64,
    },
    /// A stale or defective copy was rewritten.
    Repaired {
        /// The copy.
        copy: u32,
        /// What was wrong with it.
        defect: Defect,
    },
    /// Main has grown since the metadata was written; it now records the
    /// new size.
    MainGrown {
        /// Sectors recorded before.
        from: u64,
        /// Sectors now.
        to: u64,
    },
    /// The spare has grown since the metadata was written; it now records
    /// the new size, and the pool as many more blocks as the copies have
    /// room for ([`Layout::grown`](crate::logic::format::Layout::grown)).
    SpareGrown {
        /// Sectors recorded before.
        from: u64,
        /// Sectors now.
        to: u64,
        /// Pool blocks before.
        pool_from: u64,
        /// Pool blocks now.
        pool_to: u64,
    },
    /// A blank (or, as asked, unusable) metadata area was formatted.
    Formatted {
        /// Copies written.
        copies: u32,
    },
}

/// Reads and writes of the spare's metadata area.
pub trait MetaIo {
    /// Reads whole sectors from `sector` of the spare into `buf`.
    fn read(&mut self, sector: u64, buf: &mut [u8]) -> Result<(), ()>;
    /// Writes whole sectors; `durable`: everything written before is made
    /// durable first (PREFLUSH) and this write too (FUA).
    fn write(&mut self, sector: u64, buf: &[u8], durable: bool) -> Result<(), ()>;
}

/// The data I/O of `add_remaps carry`: one block at a time.
pub trait DataIo {
    /// Reads the main block at `sector` into `buf` (with the target's read
    /// retries).
    fn read_main(&mut self, sector: u64, buf: &mut [u8]) -> Result<(), ()>;
    /// Writes `buf` to the spare at `sector`.
    fn write_spare(&mut self, sector: u64, buf: &mut [u8]) -> Result<(), ()>;
}

/// Why metadata could not be loaded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LoadError {
    /// The spare is refused, with this reason.
    Refused(&'static core::ffi::CStr),
    /// Reading the metadata failed.
    Io,
    /// Writing the metadata failed (formatting, or repairing or updating
    /// a copy while loading).
    Write,
    /// Memory ran short.
    NoMemory,
    /// The spare holds metadata of this (newer) format version and none
    /// this module reads: refused with [`NEWER_VERSION`].
    Newer(u32),
}

/// Why a spare of a newer format version is refused.
pub const NEWER_VERSION: &core::ffi::CStr = c"Spare metadata has a newer format version than this module knows (3); use a newer dm-remap, or add the 'format' feature to overwrite it";

/// What [`Remaps::add_pending`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PendingAdd {
    /// The block is now on the pending list.
    Added,
    /// The block was on the list already; nothing changed.
    Present,
    /// The list is full: the block is counted in [`Remaps::unrecorded`]
    /// instead (commit it like an added block).
    Full,
    /// The block lies beyond main; nothing changed.
    OutOfRange,
}

/// Most extents an `add_remap` reply lists.
const ADD_REPLY_EXTENTS: usize = 8;

/// The writer side of a target's remaps. See the module documentation.
pub struct Remaps<E: Env> {
    writer: Writer,
    pool: SparePool<E>,
    /// Main blocks awaiting a remap, ascending: `pending_list[..pending_len]`
    /// (room for a version-3 copy's list; a version-2 spare uses 60).
    pending_list: RawArray<u64, E>,
    /// Pending blocks in `pending_list` (at most the layout's
    /// `pending_capacity`).
    pending_len: usize,
    /// Read errors the pending list had no room for.
    unrecorded: Unrecorded,
    /// Commits mark the copies "moved" (see [`Remaps::mark_moved`]).
    moved: bool,
    /// The table's capacity the last [`Event::Resizing`] reported.
    logged_capacity: u64,
    /// Resizes reported.
    resizes: u64,
    geo: Geometry,
    meta: Metadata,
}

impl<E: Env> Remaps<E> {
    /// An empty, not yet loaded table and its writer for a target of this
    /// geometry, whose devices form `pair`, with metadata in `layout`.
    /// Fails with [`TableError::NoMemory`], or [`TableError::TooWide`] when
    /// a main block and a pool index do not pack into one table word.
    pub fn new(
        geo: Geometry,
        layout: Layout,
        pair: Identity,
        crc: Crc,
    ) -> Result<(RemapTable<E>, Self), TableError> {
        // The pool never outgrows its layout or the default metadata size
        // (a grown spare or a migration grows it up to there).
        let pool_bound = layout.slots.max(super::format::DEFAULT_MAX_SLOTS);
        let (table, writer) = RemapTable::new(geo.main_blocks, pool_bound)?;
        let pool = SparePool::new(layout.slots, geo.main_blocks).ok_or(TableError::NoMemory)?;
        let pending_list = RawArray::new(PENDING_ROOM).ok_or(TableError::NoMemory)?;
        let geo = geo.with_pool(layout.pool_start, pair.spare_sectors);
        let meta = Metadata::new(layout, pair, crc);
        let logged_capacity = table.capacity();
        Ok((
            table,
            Self {
                writer,
                pool,
                pending_list,
                pending_len: 0,
                unrecorded: Unrecorded::default(),
                moved: false,
                logged_capacity,
                resizes: 0,
                geo,
                meta,
            },
        ))
    }

    /// Spare pool blocks in use.
    pub fn spare_used(&self) -> u64 {
        self.pool.used()
    }

    /// Whether the metadata has been loaded.
    pub fn loaded(&self) -> bool {
        self.meta.loaded
    }

    /// The current metadata generation.
    pub fn generation(&self) -> u64 {
        self.meta.generation
    }

    /// Pool blocks the metadata can describe.
    pub fn slots(&self) -> u64 {
        self.meta.layout.slots
    }

    /// Spare pool blocks retired (bad, never used again).
    pub fn retired(&self) -> u64 {
        self.pool.retired()
    }

    /// Retires pool block `slot`: it is never used again. Returns the main
    /// block it held, if any; the caller takes care of that block's remap
    /// (the table still names `slot` for it, the pool and the next commit no
    /// longer do). Changes memory only: commit with [`Remaps::commit`]
    /// (`lo = hi = slot`).
    pub fn retire_slot(&mut self, slot: u64) -> Option<u64> {
        self.touch(slot);
        self.pool.retire(slot)
    }

    /// Notes that pool block `slot` changed in memory: the next commit
    /// writes its entry sector whatever range it is given.
    fn touch(&mut self, slot: u64) {
        self.meta.dirty = metadata::span(self.meta.dirty, Some((slot, slot)));
    }

    /// The main blocks awaiting a remap, ascending.
    pub fn pending(&self) -> &[u64] {
        let n = self.pending_len.min(self.pending_capacity());
        &self.pending_list[..n]
    }

    /// Most blocks the pending list holds: what a copy of this spare's
    /// format lists (4,572 in version 3, 60 in version 2).
    pub fn pending_capacity(&self) -> usize {
        self.meta
            .layout
            .pending_capacity()
            .min(self.pending_list.len())
    }

    /// Puts main block `block` on the pending list. Changes memory only:
    /// commit with [`Remaps::commit_pending`] (the header and the pending
    /// units).
    pub fn add_pending(&mut self, block: u64) -> PendingAdd {
        if block >= self.geo.main_blocks {
            return PendingAdd::OutOfRange;
        }
        let cap = self.pending_capacity();
        let n = self.pending_len.min(cap);
        let list = &mut self.pending_list[..];
        let at = list[..n].partition_point(|&b| b < block);
        if at < n && list[at] == block {
            return PendingAdd::Present;
        }
        if n == cap {
            self.unrecorded.add(block);
            self.meta.pending_dirty = true;
            return PendingAdd::Full;
        }
        list.copy_within(at..n, at + 1);
        list[at] = block;
        self.pending_len = n + 1;
        self.meta.pending_dirty = true;
        PendingAdd::Added
    }

    /// Takes main block `block` off the pending list; false if it was not
    /// on it. Changes memory only, like [`Remaps::add_pending`].
    pub fn remove_pending(&mut self, block: u64) -> bool {
        let n = self.pending_len.min(self.pending_capacity());
        let list = &mut self.pending_list[..];
        let Ok(at) = list[..n].binary_search(&block) else {
            return false;
        };
        list.copy_within(at + 1..n, at);
        list[n - 1] = 0;
        self.pending_len = n - 1;
        self.meta.pending_dirty = true;
        true
    }

    /// Read errors the pending list had no room for (counted by
    /// [`Remaps::add_pending`] when it answers [`PendingAdd::Full`]).
    pub fn unrecorded(&self) -> Unrecorded {
        self.unrecorded
    }

    /// Adds the failures `o` counts to [`Remaps::unrecorded`] (a migration
    /// carries another spare's to this one). Changes memory only, like
    /// [`Remaps::add_pending`].
    #[cfg(not(MODULE))]
    pub fn add_unrecorded(&mut self, o: Unrecorded) {
        if o.count == 0 {
            return;
        }
        let u = &mut self.unrecorded;
        let n = u.count;
        u.add(o.first);
        u.add(o.last);
        u.count = n.saturating_add(o.count);
        self.meta.pending_dirty = true;
    }

    /// Empties the pending list and forgets the read errors it had no room
    /// for; returns how many blocks the list held. Changes memory only,
    /// like [`Remaps::add_pending`].
    pub fn clear_pending(&mut self) -> u64 {
        self.unrecorded = Unrecorded::default();
        let n = self.pending_len.min(self.pending_capacity());
        self.pending_list[..n].fill(0);
        self.pending_len = 0;
        self.meta.pending_dirty = true;
        n as u64
    }
}

/// The error path: remaps the target makes itself when I/O fails. The caller
/// writes the data to a reserved block, commits, and only then publishes, so
/// that nothing reaches a spare block before the metadata naming it is
/// durable.
impl<E: Env> Remaps<E> {
    /// Spare sector where pool block `slot` starts.
    pub fn slot_sector(&self, slot: u64) -> u64 {
        self.geo.spare_data_start + slot * self.geo.block_sectors
    }

    /// The pool block starting at spare sector `sector`, if it is one.
    #[cfg(test)]
    pub fn slot_at(&self, sector: u64) -> Option<u64> {
        let rel = sector.checked_sub(self.geo.spare_data_start)?;
        if rel.checked_rem(self.geo.block_sectors) != Some(0) {
            return None;
        }
        let slot = rel.checked_div(self.geo.block_sectors)?;
        (slot < self.pool.total()).then_some(slot)
    }

    /// The main block pool block `slot` holds.
    #[cfg(test)]
    pub fn holder(&self, slot: u64) -> Option<u64> {
        self.pool.holder(slot)
    }

    /// Free pool blocks.
    pub fn free_slots(&self) -> u64 {
        self.pool.free()
    }

    /// Reserves a free pool block for main block `main` (memory only);
    /// `None` when the pool is exhausted.
    pub fn reserve(&mut self, main: u64) -> Option<u64> {
        let slot = self.pool.alloc(main)?;
        self.touch(slot);
        Some(slot)
    }

    /// Returns a reserved block that was never committed.
    pub fn unreserve(&mut self, slot: u64) {
        self.touch(slot);
        self.pool.release(slot);
    }

    /// Undoes [`Self::retire`] of `slot`, which held `main`, after the
    /// commit recording it failed.
    pub fn unretire(&mut self, slot: u64, main: u64) {
        self.touch(slot);
        self.pool.unretire(slot, main);
    }

    /// Room in the table for one remap of a block known only later (the
    /// error path), taken before its commit so that publishing it cannot
    /// fail. `None` when memory is short.
    pub fn reserve_one<'t>(
        &mut self,
        t: &'t RemapTable<E>,
        ev: &mut dyn FnMut(Event),
    ) -> Option<Reservation<'t, E>> {
        let mut retired = Retired::new();
        let res = t.reserve(&mut self.writer, 1, &mut retired).ok();
        drop(retired);
        self.note_resize(t, ev);
        res
    }

    /// Publishes the committed remap `main → slot` to readers, in the room
    /// `res` holds (reserved before the commit: this cannot fail for
    /// memory); a block already remapped moves to `slot` in one step.
    /// Returns after a grace period when a block moved, so that no reader
    /// uses its old spare block any more.
    pub fn publish(
        &mut self,
        t: &RemapTable<E>,
        main: u64,
        slot: u64,
        mut res: Reservation<'_, E>,
        ev: &mut dyn FnMut(Event),
    ) {
        let mut retired = Retired::new();
        // Neither fails: the entry is there (or not) as checked, under the
        // writer's lock, with our own writer token, the pool block in range
        // and room reserved.
        if t.lookup(main).is_some() {
            let _ = t.replace(&mut self.writer, main, slot, &mut retired);
        } else {
            let _ = res.insert(&mut self.writer, main, slot, &mut retired);
        }
        drop(res);
        drop(retired);
        self.note_resize(t, ev);
    }

    /// Reports a change of the table's capacity since the last report, as
    /// one resize.
    pub(super) fn note_resize(&mut self, t: &RemapTable<E>, ev: &mut dyn FnMut(Event)) {
        let (old, new) = (self.logged_capacity, t.capacity());
        if old == new {
            return;
        }
        ev(Event::Resizing {
            old,
            new,
            count: t.len(),
        });
        ev(Event::Resized { old, new });
        self.logged_capacity = new;
        self.resizes += 1;
    }

    /// Resizes reported since the table was created.
    pub fn resizes(&self) -> u64 {
        self.resizes
    }
}

/// Sorts pairs by their first element, in place, in O(n log n) with no
/// allocation, calling `resched` every few thousand steps (a sort of a
/// million blocks is long). (`core`'s sort is avoided: its panic helpers are
/// unknown to the objtool of some kernels, which then warns about the
/// module.)
fn heapsort_by_first<const N: usize>(v: &mut [[u64; N]], resched: fn()) {
    fn sift_down<const N: usize>(v: &mut [[u64; N]], mut root: usize, end: usize) {
        loop {
            let mut child = 2 * root + 1;
            if child >= end {
                return;
            }
            if child + 1 < end && v[child][0] < v[child + 1][0] {
                child += 1;
            }
            if v[root][0] >= v[child][0] {
                return;
            }
            v.swap(root, child);
            root = child;
        }
    }
    let n = v.len();
    for i in (0..n / 2).rev() {
        sift_down(v, i, n);
        if i % RESCHED_EVERY as usize == 0 {
            resched();
        }
    }
    for end in (1..n).rev() {
        v.swap(0, end);
        sift_down(v, 0, end);
        if end % RESCHED_EVERY as usize == 0 {
            resched();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::fake::*;
    use super::*;

    use crate::logic::format::SECTOR;

    use crate::logic::message::MsgError;

    use crate::HostEnv;
    extern crate std;
    use crate::logic::testing::geo;

    use std::vec::Vec;

    #[test]
    fn blocks_retired_in_memory_reach_disk_with_the_next_commit() {
        // The error path retires pool blocks 0-7 (entry sector 0) when every
        // data write to them fails, then an `add_remap` commits pool block 61
        // (entry sector 1). The headers count 8 retired blocks, so entry
        // sector 0 must show them, or no copy validates.
        let mut f = Fixture::new(Some(4096));
        for want in 0..8 {
            let s = f.r.reserve(100).unwrap();
            assert_eq!(s, want);
            f.r.retire_slot(s);
        }
        let spare_sector = f.r.slot_sector(61);
        f.msg(&std::format!("add_remap 0 {spare_sector}")).unwrap();
        let layout = f.r.meta.layout;
        all_copies_valid(&mut f.disk, &layout, "after the add");
        let mut g = Fixture::on(Some(4096), f.disk.clone()).expect("reloads");
        assert_eq!(g.r.retired(), 8);
        assert_eq!(g.msg("count").unwrap(), "1");
    }

    #[test]
    fn a_write_failing_at_every_point_gives_the_outcome_reported() {
        // Every message that commits, with the n-th metadata write failing
        // for every n: the message either fails and changed nothing, or
        // succeeded and its change is what loads, whatever copies missed it.
        let cases = [
            "add_remap 800 auto 64",
            "add_remap 800 40960 8",
            "remove_remap 80 16",
            "clear_remaps",
        ];
        let mut n = 0;
        for line in cases {
            for k in 0.. {
                let mut f = Fixture::new(Some(4096));
                f.msg("add_remap 80 auto 16").unwrap();
                f.msg("add_remap 8000 auto 24").unwrap();
                let before = f.state();
                f.disk.writes_left = Some(k);
                let r = f.msg(line);
                let degraded = f.r.take_degraded();
                let exhausted = f.disk.writes_left == Some(0);
                f.disk.writes_left = None;
                let after = f.state();
                let reloaded = Fixture::on(Some(4096), f.disk.clone())
                    .unwrap_or_else(|e| panic!("{line}, write {k} fails: no load: {e:?}"))
                    .state();
                assert_eq!(
                    reloaded, after,
                    "{line}, write {k} fails: disk differs from memory"
                );
                match &r {
                    Err(_) => assert_eq!(after, before, "{line}, write {k}: failed but changed"),
                    Ok(_) => assert_ne!(after, before, "{line}, write {k}: done but unchanged"),
                }
                n += 1;
                if r.is_ok() && !degraded && !exhausted {
                    break;
                }
            }
        }
        std::println!("{n} write-failure cases");
        assert!(n > 40);
    }

    #[test]
    fn error_path_and_scanner_with_a_write_failing_at_every_point_load_old_or_new() {
        // What the error path and the scanner commit, with the n-th
        // metadata write failing for every n. The spare must load, into the
        // state before or after; into the state after where the operation
        // reported success with every copy written. After a failure the
        // module is in fail mode (writes refused), and `clear_fail`, which
        // rewrites every copy from memory, must leave the state in memory
        // as what loads. The relocations undo their memory changes when
        // their commit fails, as `remap/error_path.rs` does.
        type Step = fn(&mut Fixture) -> bool;
        let ops: [(&str, Step); 7] = [
            ("pending mark", |f| {
                f.r.add_pending(3000);
                f.r.commit_pending(&mut f.disk).is_ok()
            }),
            ("pending clear", |f| {
                f.r.clear_pending();
                f.r.commit_pending(&mut f.disk).is_ok()
            }),
            ("retire", |f| {
                let s = f.r.reserve(4000).unwrap();
                f.r.retire_slot(s);
                f.r.commit(&mut f.disk, s, s).is_ok()
            }),
            ("automatic remap", |f| {
                let node = f.r.reserve_one(&f.t, &mut |_| {}).unwrap();
                let s = f.r.reserve(2000).unwrap();
                let was_pending = f.r.remove_pending(2000);
                if f.r.commit(&mut f.disk, s, s).is_err() {
                    f.r.unreserve(s);
                    if was_pending {
                        f.r.add_pending(2000);
                    }
                    return false;
                }
                f.r.publish(&f.t, 2000, s, node, &mut |_| {});
                true
            }),
            ("relocate", |f| {
                let node = f.r.reserve_one(&f.t, &mut |_| {}).unwrap();
                let old = f.t.lookup(10).unwrap();
                let s = f.r.reserve(10).unwrap();
                f.r.retire_slot(old);
                if f.r.commit(&mut f.disk, s.min(old), s.max(old)).is_err() {
                    f.r.unreserve(s);
                    f.r.unretire(old, 10);
                    return false;
                }
                f.r.publish(&f.t, 10, s, node, &mut |_| {});
                true
            }),
            ("clear_fail", |f| f.r.rewrite_all(&mut f.disk).is_ok()),
            // Copy 3 damaged (below): the check rewrites it.
            ("scanner check", |f| {
                f.r.verify(&mut f.disk, &mut |_| {}).is_ok()
            }),
        ];
        let mem = |f: &mut Fixture| {
            let (l, c) = f.state();
            (l, c, f.r.pending().to_vec(), f.r.retired())
        };
        let mut n = 0;
        for (name, op) in ops {
            let start = || {
                let mut f = Fixture::new(Some(4096));
                f.msg("add_remap 80 auto 16").unwrap();
                f.msg("add_remap 8000 auto 24").unwrap();
                f.r.add_pending(2000);
                f.r.commit_pending(&mut f.disk).unwrap();
                if name == "scanner check" {
                    let at = f.r.meta.layout.copy_start(3) as usize * SECTOR + 100;
                    f.disk.data[at] ^= 0xff;
                }
                f
            };
            let old = loaded_state(&start().disk.data, name);
            let mut done = start();
            assert!(op(&mut done), "{name} fails without a failing write");
            let new = mem(&mut done);
            for k in 0.. {
                let mut f = start();
                f.disk.writes_left = Some(k);
                let ok = op(&mut f);
                let degraded = f.r.take_degraded();
                let exhausted = f.disk.writes_left == Some(0);
                f.disk.writes_left = None;
                let what = std::format!("{name}, write {k} fails");
                let loaded = loaded_state(&f.disk.data, &what);
                assert!(
                    loaded == old || loaded == new,
                    "{what}: neither old nor new"
                );
                if ok && !degraded {
                    assert_eq!(loaded, new, "{what}: reported done, not what loads");
                } else {
                    // Fail mode, then `clear_fail`.
                    f.r.rewrite_all(&mut f.disk).unwrap();
                    let now = mem(&mut f);
                    assert_eq!(
                        loaded_state(&f.disk.data, &what),
                        now,
                        "{what}: after clear_fail"
                    );
                    assert!(
                        now == old || now == new,
                        "{what}: memory neither old nor new"
                    );
                }
                n += 1;
                if ok && !degraded && !exhausted {
                    break;
                }
            }
        }
        // Formatting a blank spare with the n-th write failing: loading
        // fails (the device is not created) or succeeds; either way the
        // spare then loads, empty.
        for k in 0.. {
            let mut disk = Disk::new();
            disk.writes_left = Some(k);
            let g = geo(Some(4096));
            let layout = try_layout(&mut disk, &g, 5).unwrap();
            let (t, mut r) =
                Remaps::<HostEnv>::new(g, layout, pair(Some(4096)), crc32fast::hash).unwrap();
            let ok = r.load(&t, &mut disk, false, [9; 16], &mut |_| {}).is_ok();
            let exhausted = disk.writes_left == Some(0);
            disk.writes_left = None;
            let mut f = Fixture::on(Some(4096), disk)
                .unwrap_or_else(|e| panic!("format, write {k} fails: no load: {e:?}"));
            assert_eq!(f.msg("count").unwrap(), "0", "format, write {k} fails");
            n += 1;
            if ok && !exhausted {
                break;
            }
        }
        std::println!("{n} write-failure cases (error path, scanner, format)");
        assert!(n > 40);
    }

    #[test]
    fn heapsort_sorts() {
        let mut x = 0x1234_5678_u64;
        for n in [0usize, 1, 2, 3, 10, 257] {
            let mut v: Vec<[u64; 2]> = (0..n)
                .map(|i| {
                    x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
                    [x >> 40, i as u64]
                })
                .collect();
            let mut want = v.clone();
            want.sort_by_key(|p| p[0]);
            heapsort_by_first(&mut v, || {});
            let keys: Vec<u64> = v.iter().map(|p| p[0]).collect();
            let want_keys: Vec<u64> = want.iter().map(|p| p[0]).collect();
            assert_eq!(keys, want_keys);
        }
    }

    #[test]
    fn pending_list_stays_sorted_and_bounded() {
        let mut f = Fixture::new(None);
        assert_eq!(f.r.pending(), &[] as &[u64]);
        for b in [50, 10, 30, 10] {
            f.r.add_pending(b);
        }
        assert_eq!(f.r.pending(), &[10, 30, 50]);
        assert_eq!(f.r.add_pending(30), PendingAdd::Present);
        assert_eq!(f.r.add_pending(131072), PendingAdd::OutOfRange);
        assert_eq!(f.r.add_pending(131071), PendingAdd::Added);
        assert!(f.r.remove_pending(30));
        assert!(!f.r.remove_pending(30));
        assert_eq!(f.r.pending(), &[10, 50, 131071]);
        assert_eq!(f.r.clear_pending(), 3);
        assert_eq!(f.r.pending(), &[] as &[u64]);
        // Fill it from the top down: every insertion lands in front. A
        // version-3 spare has room for 4,572.
        let cap = f.r.pending_capacity();
        assert_eq!(cap, PENDING_ROOM);
        assert!(cap >= 4096);
        for b in (0..cap as u64).rev() {
            assert_eq!(f.r.add_pending(b * 2 + 1), PendingAdd::Added);
        }
        assert_eq!(f.r.add_pending(0), PendingAdd::Full);
        assert_eq!(f.r.add_pending(1), PendingAdd::Present);
        let want: Vec<u64> = (0..cap as u64).map(|b| b * 2 + 1).collect();
        assert_eq!(f.r.pending(), &want[..]);
        assert!(f.r.remove_pending(1));
        assert!(f.r.remove_pending(cap as u64 * 2 - 1));
        assert_eq!(f.r.pending(), &want[1..cap - 1]);
        assert_eq!(f.r.add_pending(0), PendingAdd::Added);
        assert_eq!(f.r.pending()[0], 0);
    }

    #[test]
    fn error_path_reserve_commit_publish_and_relocate() {
        let mut f = Fixture::new(Some(4096));
        // A failed write of main block 40: reserve, (write data), commit,
        // publish; nothing is visible before the publish.
        let slot = f.r.reserve(40).unwrap();
        assert_eq!(f.t.lookup(40), None);
        f.r.commit(&mut f.disk, slot, slot).unwrap();
        assert_eq!(f.t.lookup(40), None);
        let mut ev = |_e: Event| {};
        let node = f.r.reserve_one(&f.t, &mut ev).unwrap();
        f.r.publish(&f.t, 40, slot, node, &mut ev);
        assert_eq!(f.t.lookup(40), Some(slot));
        assert_eq!(f.r.slot_at(f.r.slot_sector(slot)), Some(slot));
        assert_eq!(f.r.slot_at(f.r.slot_sector(slot) + 1), None);
        assert_eq!(f.r.slot_at(4095), None);
        assert_eq!(f.r.holder(slot), Some(40));
        // Its spare block fails: retire it, move the block to a new one in
        // one step for readers.
        let new = f.r.reserve(40).unwrap();
        assert_ne!(new, slot);
        assert_eq!(f.r.retire_slot(slot), Some(40));
        f.r.commit(&mut f.disk, slot.min(new), slot.max(new))
            .unwrap();
        let node = f.r.reserve_one(&f.t, &mut ev).unwrap();
        f.r.publish(&f.t, 40, new, node, &mut ev);
        assert_eq!(f.t.lookup(40), Some(new));
        assert_eq!(f.t.len(), 1);
        let again = Fixture::on(Some(4096), f.disk.clone()).unwrap();
        assert_eq!(again.t.lookup(40), Some(new));
        assert_eq!(again.r.retired(), 1);
        // A commit that fails is undone in memory.
        let slot3 = f.r.reserve(41).unwrap();
        let old_free = f.r.free_slots();
        f.disk.writes_left = Some(0);
        assert_eq!(f.r.commit(&mut f.disk, slot3, slot3), Err(MsgError::Io));
        f.r.unreserve(slot3);
        assert_eq!(f.r.free_slots(), old_free + 1);
        // ... and so is a retirement.
        assert_eq!(f.r.retire_slot(new), Some(40));
        f.r.unretire(new, 40);
        assert_eq!(f.r.holder(new), Some(40));
        assert_eq!(f.r.retired(), 1);
        // Fail mode ends with a full rewrite once writes work again.
        f.disk.writes_left = None;
        f.r.rewrite_all(&mut f.disk).unwrap();
        let back = Fixture::on(Some(4096), f.disk.clone()).unwrap();
        assert_eq!(back.t.lookup(40), Some(new));
        assert_eq!(back.t.lookup(41), None);
    }
}
