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

use super::format::{Crc, Defect, Identity, Layout, PENDING_ROOM};
use super::geometry::Geometry;
use super::mem::{Env, RawArray};
use super::pool::SparePool;
use super::table::{NodeBox, RemapTable, Retired, Writer};
mod discover;
mod messages;
mod metadata;

pub use discover::{check_spare, discover, LayoutRequest};
#[cfg(not(MODULE))]
pub use discover::{find_layout, interrupted_format};

/// Something the caller should log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    /// A resize starts.
    Resizing {
        /// Buckets before.
        old: u64,
        /// Buckets after.
        new: u64,
        /// Entries the new size is for.
        count: u64,
    },
    /// A resize finished.
    Resized {
        /// Buckets before.
        old: u64,
        /// Buckets after.
        new: u64,
    },
    /// A resize could not get memory; the table keeps its size.
    ResizeFailed {
        /// Buckets kept.
        old: u64,
        /// Buckets wanted.
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
    /// The list holds [`PENDING_MAX`] blocks; nothing changed.
    Full,
    /// The block lies beyond main; nothing changed.
    OutOfRange,
}

/// Persistence state.
struct Meta {
    layout: Layout,
    identity: Identity,
    generation: u64,
    crc: Crc,
    /// A commit failed part-way: the next one rewrites every copy whole.
    full_rewrite: bool,
    /// A commit failed after copy 0 was written whole: the change is
    /// durable and kept, but copies are missing it (see `commit`).
    degraded: bool,
    /// Pool blocks the error path changed in memory since the last
    /// successful commit (`lo..=hi`; none when `lo > hi`). Every commit
    /// writes their entry sectors too: headers count retired and used
    /// blocks, so a commit that wrote the header but not those sectors
    /// would leave no copy valid.
    dirty: (u64, u64),
    loaded: bool,
    /// Pending blocks in `Remaps::pending_list` (at most the layout's
    /// `pending_capacity`).
    pending_len: usize,
    /// The pending list changed since the last commit: the next one writes
    /// the pending units (version 3 writes them only then).
    pending_dirty: bool,
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
    geo: Geometry,
    meta: Meta,
}

impl<E: Env> Remaps<E> {
    /// An empty, not yet loaded table and its writer for a target of this
    /// geometry, whose devices form `pair`, with metadata in `layout`.
    pub fn new(
        geo: Geometry,
        layout: Layout,
        pair: Identity,
        crc: Crc,
    ) -> Option<(RemapTable<E>, Self)> {
        let (table, writer) = RemapTable::new()?;
        let pool = SparePool::new(layout.slots)?;
        let pending_list = RawArray::new(PENDING_ROOM)?;
        let geo = geo.with_pool(layout.pool_start, pair.spare_sectors);
        let meta = Meta {
            layout,
            identity: pair,
            generation: 0,
            crc,
            full_rewrite: false,
            degraded: false,
            dirty: (u64::MAX, 0),
            loaded: false,
            pending_len: 0,
            pending_dirty: false,
        };
        Some((
            table,
            Self {
                writer,
                pool,
                pending_list,
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
        let (lo, hi) = self.meta.dirty;
        self.meta.dirty = (lo.min(slot), hi.max(slot));
    }

    /// The main blocks awaiting a remap, ascending.
    pub fn pending(&self) -> &[u64] {
        let n = self.meta.pending_len.min(self.pending_capacity());
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
        let n = self.meta.pending_len.min(cap);
        let list = &mut self.pending_list[..];
        let at = list[..n].partition_point(|&b| b < block);
        if at < n && list[at] == block {
            return PendingAdd::Present;
        }
        if n == cap {
            return PendingAdd::Full;
        }
        list.copy_within(at..n, at + 1);
        list[at] = block;
        self.meta.pending_len = n + 1;
        self.meta.pending_dirty = true;
        PendingAdd::Added
    }

    /// Takes main block `block` off the pending list; false if it was not
    /// on it. Changes memory only, like [`Remaps::add_pending`].
    pub fn remove_pending(&mut self, block: u64) -> bool {
        let n = self.meta.pending_len.min(self.pending_capacity());
        let list = &mut self.pending_list[..];
        let Ok(at) = list[..n].binary_search(&block) else {
            return false;
        };
        list.copy_within(at + 1..n, at);
        list[n - 1] = 0;
        self.meta.pending_len = n - 1;
        self.meta.pending_dirty = true;
        true
    }

    /// Empties the pending list; returns how many blocks it held. Changes
    /// memory only, like [`Remaps::add_pending`].
    pub fn clear_pending(&mut self) -> u64 {
        let n = self.meta.pending_len.min(self.pending_capacity());
        self.pending_list[..n].fill(0);
        self.meta.pending_len = 0;
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

    /// Publishes the committed remap `main → slot` to readers, in `node`
    /// (allocated before the commit: this cannot fail for memory); a block
    /// already remapped moves to `slot` in one step.
    pub fn publish(
        &mut self,
        t: &RemapTable<E>,
        main: u64,
        slot: u64,
        node: NodeBox<E>,
        ev: &mut dyn FnMut(Event),
    ) {
        let mut retired = Retired::new();
        // Neither fails: the entry is there (or not) as checked, under the
        // writer's lock, with our own writer token.
        if t.lookup(main).is_some() {
            let _ = t.replace_node(&mut self.writer, main, slot, node, &mut retired);
        } else {
            self.resize_for(t, t.len() + 1, ev);
            let _ = t.insert_node(&mut self.writer, main, slot, node);
        }
    }
}

/// Sorts pairs by their first element, in place, in O(n log n) with no
/// allocation. (`core`'s sort is avoided: its panic helpers are unknown to the
/// objtool of some kernels, which then warns about the module.)
fn heapsort_by_first(v: &mut [[u64; 2]]) {
    fn sift_down(v: &mut [[u64; 2]], mut root: usize, end: usize) {
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
    }
    for end in (1..n).rev() {
        v.swap(0, end);
        sift_down(v, 0, end);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logic::format::PENDING_MAX;
    use crate::logic::format::{self, check_copy, encode_header, Decision, Header, SECTOR};
    use crate::logic::geometry::{validate, DeviceFacts};
    use crate::logic::message::{Message, MsgError, RemapMsg};
    use crate::logic::routing::{route, Route};
    use crate::logic::table::Nodes;
    use crate::logic::table_line::Features;
    use crate::HostEnv;
    extern crate std;
    use std::string::String;
    use std::vec::Vec;

    /// A message for `Remaps::handle`; the control messages are the
    /// target's, refused here.
    fn parse(words: &[&str]) -> Result<RemapMsg, crate::logic::Refusal> {
        match crate::logic::message::parse(words)? {
            Message::Remaps(m) => Ok(m),
            Message::Control(_) => Err(crate::logic::Refusal::new(c"not a remap message")),
        }
    }

    use crate::logic::testing::{geo, MIB};
    /// Bytes of the spare the tests keep in memory: every metadata area
    /// they lay out fits.
    const TEST_AREA: usize = 8 << 20;

    /// The metadata area in memory, with an optional write fault.
    #[derive(Clone)]
    struct Disk {
        data: Vec<u8>,
        /// Writes that succeed before every further write fails.
        writes_left: Option<usize>,
        /// Writes done: (first sector, sectors).
        log: Vec<(u64, usize)>,
    }

    impl Disk {
        fn new() -> Self {
            Self {
                data: std::vec![0u8; TEST_AREA],
                writes_left: None,
                log: Vec::new(),
            }
        }
    }

    impl MetaIo for Disk {
        fn read(&mut self, sector: u64, buf: &mut [u8]) -> Result<(), ()> {
            // The spare is 64 MiB; what was never written reads as zeros.
            let at = sector as usize * SECTOR;
            if at + buf.len() > (64 * MIB) as usize * SECTOR {
                return Err(());
            }
            buf.fill(0);
            let have = self.data.len().saturating_sub(at).min(buf.len());
            if have > 0 {
                buf[..have].copy_from_slice(&self.data[at..at + have]);
            }
            Ok(())
        }
        fn write(&mut self, sector: u64, buf: &[u8], _durable: bool) -> Result<(), ()> {
            if let Some(n) = self.writes_left.as_mut() {
                if *n == 0 {
                    return Err(());
                }
                *n -= 1;
            }
            let at = sector as usize * SECTOR;
            if self.data.len() < at + buf.len() {
                self.data.resize(at + buf.len(), 0);
            }
            self.data[at..at + buf.len()].copy_from_slice(buf);
            self.log.push((sector, buf.len() / SECTOR));
            Ok(())
        }
    }

    /// Checks that every copy on `disk` is valid; returns their headers.
    fn all_copies_valid(disk: &mut Disk, layout: &Layout, what: &str) -> Vec<Header> {
        (0..layout.copies)
            .map(|i| {
                let at = layout.copy_start(i);
                let mut buf = std::vec![0u8; layout.copy_bytes()];
                disk.read(at, &mut buf).unwrap();
                check_copy(&buf, at, layout.area_sectors(), 131072, crc32fast::hash)
                    .unwrap_or_else(|d| panic!("{what}: copy {i}: {d}"))
            })
            .collect()
    }

    /// The layout a target of geometry `g` on a 64 MiB spare finds (or
    /// plans) with `copies` on its table line.
    fn test_layout(io: &mut dyn MetaIo, g: &Geometry, copies: u32) -> Layout {
        try_layout(io, g, copies).unwrap()
    }

    fn try_layout(io: &mut dyn MetaIo, g: &Geometry, copies: u32) -> Result<Layout, LoadError> {
        let req = LayoutRequest {
            copies,
            max_slots: format::DEFAULT_MAX_SLOTS,
            format: false,
        };
        find_layout::<HostEnv>(io, g, 64 * MIB, &req, crc32fast::hash)
    }

    struct Fixture {
        t: RemapTable<HostEnv>,
        r: Remaps<HostEnv>,
        disk: Disk,
        events: Vec<Event>,
    }

    fn pair(bs: Option<u32>) -> Identity {
        Identity {
            uuid: [0; 16],
            main_sectors: 64 * MIB,
            spare_sectors: 64 * MIB,
            block_size: bs.unwrap_or(512),
        }
    }

    impl Fixture {
        fn new(bs: Option<u32>) -> Self {
            Self::on(bs, Disk::new()).unwrap()
        }

        /// A target on a blank spare formatted as version 2, by the code
        /// that writes version 2 (as dm-remap 0.4 did).
        fn v2(bs: Option<u32>) -> Self {
            Self::v2_with(bs, 5)
        }

        /// [`Fixture::v2`] with `copies` copies.
        fn v2_with(bs: Option<u32>, copies: u32) -> Self {
            let g = geo(bs);
            let mut disk = Disk::new();
            let layout = Layout::new(copies, 4096, 4096, g.spare_data_blocks).unwrap();
            let (t, mut r) = Remaps::new(g, layout, pair(bs), crc32fast::hash).unwrap();
            let mut events = Vec::new();
            r.load(&t, &mut disk, false, [9; 16], &mut |e| events.push(e))
                .unwrap();
            Self { t, r, disk, events }
        }

        /// A target loading the metadata already on `disk`.
        fn on(bs: Option<u32>, mut disk: Disk) -> Result<Self, LoadError> {
            let g = geo(bs);
            let layout = try_layout(&mut disk, &g, 5)?;
            let (t, mut r) = Remaps::new(g, layout, pair(bs), crc32fast::hash).unwrap();
            let mut events = Vec::new();
            r.load(&t, &mut disk, false, [9; 16], &mut |e| events.push(e))?;
            Ok(Self { t, r, disk, events })
        }

        fn msg(&mut self, line: &str) -> Result<String, String> {
            let words: Vec<&str> = line.split_whitespace().collect();
            let m = parse(&words).map_err(|e| String::from(e.as_str()))?;
            let mut out = String::new();
            let events = &mut self.events;
            self.r
                .handle(&self.t, &mut self.disk, m, &mut out, &mut |e| {
                    events.push(e)
                })
                .map_err(|e| std::format!("{e}"))?;
            Ok(out)
        }

        fn state(&mut self) -> (String, String) {
            (
                self.msg("list 0 10000").unwrap(),
                self.msg("count").unwrap(),
            )
        }
    }

    /// Forwards to a [`Disk`] and notes whether main block `block` was
    /// visible in the table while any metadata write was issued.
    struct Spy<'a> {
        disk: &'a mut Disk,
        t: &'a RemapTable<HostEnv>,
        block: u64,
        seen: bool,
    }

    impl MetaIo for Spy<'_> {
        fn read(&mut self, sector: u64, buf: &mut [u8]) -> Result<(), ()> {
            self.disk.read(sector, buf)
        }
        fn write(&mut self, sector: u64, buf: &[u8], durable: bool) -> Result<(), ()> {
            self.seen |= self.t.lookup(self.block).is_some();
            self.disk.write(sector, buf, durable)
        }
    }

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
    fn huge_add_remap_is_refused_before_walking_its_range() {
        // 2^44 blocks of main: walking them for overlaps first would take
        // hours; the pool's size refuses the count at once.
        let main = 1u64 << 44;
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
    }

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

    #[test]
    fn out_of_memory_at_every_allocation_changes_nothing_or_everything() {
        // Every message that changes the table, with memory running out at
        // each of its allocations in turn: it either fails and changes
        // nothing (in memory and on disk), or succeeds and is durable.
        let cases = [
            "add_remap 800 auto 64",
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

    /// A spare formatted with `copies` copies, 4096-byte blocks and main
    /// block 100 remapped; its layout and the pool block of block 100.
    fn one_remap_with_copies(copies: u32) -> (Disk, Layout, Option<u64>) {
        let g = geo(Some(4096));
        let mut disk = Disk::new();
        let layout = test_layout(&mut disk, &g, copies);
        let (t, mut r) =
            Remaps::<HostEnv>::new(g, layout, pair(Some(4096)), crc32fast::hash).unwrap();
        r.load(&t, &mut disk, false, [9; 16], &mut |_| {}).unwrap();
        let m = parse(&["add_remap", "800", "auto"]).unwrap();
        r.handle(&t, &mut disk, m, &mut String::new(), &mut |_| {})
            .unwrap();
        (disk, layout, t.lookup(100))
    }

    /// Loads `d` with `layout` and the `format` feature; the table and what
    /// the load reported.
    fn load_asking_format(d: &mut Disk, layout: Layout) -> (RemapTable<HostEnv>, Vec<Event>) {
        let g = geo(Some(4096));
        let (t, mut r) =
            Remaps::<HostEnv>::new(g, layout, pair(Some(4096)), crc32fast::hash).unwrap();
        let mut events = Vec::new();
        r.load(&t, d, true, [7; 16], &mut |e| events.push(e))
            .unwrap();
        (t, events)
    }

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

    /// Forwards to a [`Disk`], counting reads and failing every read that
    /// covers sector `bad`.
    struct BadSector<'a> {
        disk: &'a mut Disk,
        bad: Option<u64>,
        reads: usize,
    }

    impl MetaIo for BadSector<'_> {
        fn read(&mut self, sector: u64, buf: &mut [u8]) -> Result<(), ()> {
            self.reads += 1;
            let end = sector + (buf.len() / SECTOR) as u64;
            if self.bad.is_some_and(|b| (sector..end).contains(&b)) {
                return Err(());
            }
            self.disk.read(sector, buf)
        }
        fn write(&mut self, sector: u64, buf: &[u8], durable: bool) -> Result<(), ()> {
            self.disk.write(sector, buf, durable)
        }
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
    fn a_grown_main_keeps_its_remaps_and_a_shrunk_one_is_refused() {
        let mut f = Fixture::new(Some(4096));
        f.msg("add_remap 800 auto 16").unwrap();
        let before = f.state();
        let d = |dev, sectors| DeviceFacts {
            dev,
            whole: dev,
            sectors,
            logical_block_size: 512,
        };
        let open = |main: u64, disk: &mut Disk| {
            let features = Features {
                block_size: Some(4096),
                ..Features::default()
            };
            let g = validate(main, &d(1, main), &d(2, 64 * MIB), &features).unwrap();
            let layout = test_layout(disk, &g, 5);
            let mut id = pair(Some(4096));
            id.main_sectors = main;
            let (t, mut r) = Remaps::<HostEnv>::new(g, layout, id, crc32fast::hash).unwrap();
            let mut events = Vec::new();
            let res = r.load(&t, disk, false, [7; 16], &mut |e| events.push(e));
            (t, r, res, events, layout)
        };
        let mut disk = f.disk.clone();
        let (t, mut r, res, events, layout) = open(128 * MIB, &mut disk);
        res.expect("a grown main loads");
        assert!(events.contains(&Event::MainGrown {
            from: 64 * MIB,
            to: 128 * MIB
        }));
        let mut out = String::new();
        let m = parse(&["list", "0", "10000"]).unwrap();
        r.handle(&t, &mut disk, m, &mut out, &mut |_| {}).unwrap();
        assert_eq!(out, before.0);
        for h in all_copies_valid(&mut disk, &layout, "after growing") {
            assert_eq!(h.identity.main_sectors, 128 * MIB);
        }
        // Loaded again at the new size: nothing more to do.
        let (_, _, res, events, _) = open(128 * MIB, &mut disk);
        res.unwrap();
        assert!(!events.iter().any(|e| matches!(e, Event::MainGrown { .. })));
        // Back to the old, smaller size: another pair.
        let (_, _, res, _, _) = open(64 * MIB, &mut disk);
        assert!(matches!(res, Err(LoadError::Refused(_))), "{res:?}");
    }

    /// Every write a metadata operation issues, in order: (sector, data,
    /// durable), where durable means PREFLUSH + FUA.
    #[derive(Clone, Default)]
    struct Recorder {
        image: Vec<u8>,
        writes: Vec<(u64, Vec<u8>, bool)>,
    }

    impl MetaIo for Recorder {
        fn read(&mut self, sector: u64, buf: &mut [u8]) -> Result<(), ()> {
            let mut d = Disk {
                data: core::mem::take(&mut self.image),
                writes_left: None,
                log: Vec::new(),
            };
            let r = d.read(sector, buf);
            self.image = d.data;
            r
        }
        fn write(&mut self, sector: u64, buf: &[u8], durable: bool) -> Result<(), ()> {
            let at = sector as usize * SECTOR;
            self.image[at..at + buf.len()].copy_from_slice(buf);
            self.writes.push((sector, buf.to_vec(), durable));
            Ok(())
        }
    }

    /// What a write that was not yet durable left on the media at the crash.
    #[derive(Clone, Copy, Debug)]
    enum Fate {
        Lost,
        Whole,
        /// Its first n sectors (a write torn at a sector boundary).
        Prefix(usize),
    }

    /// The states a crash can leave after `writes[..done]` completed, with
    /// `writes[done]` (if any) in flight: everything up to the last durable
    /// write that completed is on the media; each later write, the one in
    /// flight included, may be lost, whole or torn at any sector boundary.
    /// Calls `check` with each image (exhaustively up to `limit` images per
    /// crash point, then a sample from `seed`); returns how many.
    fn crash_images(
        base: &[u8],
        writes: &[(u64, Vec<u8>, bool)],
        done: usize,
        limit: usize,
        seed: u64,
        check: &mut dyn FnMut(&[u8], &str),
    ) -> usize {
        let durable_end = writes[..done]
            .iter()
            .rposition(|w| w.2)
            .map_or(0, |i| i + 1);
        let open = durable_end..(done + 1).min(writes.len());
        let fates_of = |w: &(u64, Vec<u8>, bool)| {
            let n = w.1.len() / SECTOR;
            let mut f = std::vec![Fate::Lost, Fate::Whole];
            f.extend((1..n).map(Fate::Prefix));
            f
        };
        let choices: Vec<Vec<Fate>> = writes[open.clone()].iter().map(fates_of).collect();
        let total: usize = choices.iter().map(|c| c.len()).product();
        let mut image = base.to_vec();
        for w in &writes[..durable_end] {
            let at = w.0 as usize * SECTOR;
            image[at..at + w.1.len()].copy_from_slice(&w.1);
        }
        let mut rng = crate::logic::TestRng(seed | 1);
        let mut next = |m: usize| rng.below(m as u64) as usize;
        let count = total.min(limit);
        let mut img = image.clone();
        for n in 0..count {
            let mut pick = if total <= limit { n } else { next(total) };
            let mut what = std::format!("after write {done} of {}", writes.len());
            for (w, c) in writes[open.clone()].iter().zip(&choices) {
                let fate = c[pick % c.len()];
                pick /= c.len();
                let at = w.0 as usize * SECTOR;
                let len = match fate {
                    Fate::Lost => 0,
                    Fate::Whole => w.1.len(),
                    Fate::Prefix(k) => k * SECTOR,
                };
                img[at..at + len].copy_from_slice(&w.1[..len]);
                what.push_str(&std::format!(", sector {} {fate:?}", w.0));
            }
            check(&img, &what);
            // Back to the durable image for the next case.
            for w in &writes[open.clone()] {
                let at = w.0 as usize * SECTOR;
                img[at..at + w.1.len()].copy_from_slice(&image[at..at + w.1.len()]);
            }
        }
        count
    }

    /// The state a load of `image` gives: remaps, count, pending, retired.
    fn loaded_state(image: &[u8], what: &str) -> (String, String, Vec<u64>, u64) {
        loaded_state_bs(image, Some(4096), what)
    }

    /// [`loaded_state`] for blocks of `bs`.
    fn loaded_state_bs(
        image: &[u8],
        bs: Option<u32>,
        what: &str,
    ) -> (String, String, Vec<u64>, u64) {
        let disk = Disk {
            data: image.to_vec(),
            writes_left: None,
            log: Vec::new(),
        };
        let mut f = Fixture::on(bs, disk)
            .unwrap_or_else(|e| panic!("{what}: the spare does not load: {e:?}"));
        let (l, c) = f.state();
        let layout = f.r.meta.layout;
        all_copies_valid(&mut f.disk, &layout, what);
        (l, c, f.r.pending().to_vec(), f.r.retired())
    }

    /// Runs `op` (named `name`) on `f` with its writes recorded, then loads
    /// every image a crash at every point of it can leave (see
    /// [`crash_images`]): what loads must be the state before or after; after
    /// the last write (the operation has answered), the state after, in the
    /// format version the operation left in memory. Returns the number of
    /// images.
    fn crash_cases(name: &str, mut f: Fixture, op: Op, seed: u64) -> usize {
        let bs = Some(f.r.geo.block_size).filter(|&b| b != 512);
        let loaded_state = |image: &[u8], what: &str| loaded_state_bs(image, bs, what);
        let mut cases = 0;
        let base = f.disk.data.clone();
        let old = loaded_state(&base, name);
        let mut rec = Recorder {
            image: base.clone(),
            writes: Vec::new(),
        };
        if name == "scanner check" {
            // The damage is there before the check starts.
            let at = f.r.meta.layout.copy_start(3) as usize * SECTOR + 100;
            rec.image[at] ^= 0xff;
        }
        let start = rec.image.clone();
        assert!(op(&mut f, &mut rec), "{name} failed");
        let new = loaded_state(&rec.image, name);
        let writes = rec.writes.clone();
        assert!(!writes.is_empty(), "{name} wrote nothing");
        for done in 0..=writes.len() {
            cases += crash_images(
                &start,
                &writes,
                done,
                256,
                seed ^ done as u64,
                &mut |img, what| {
                    let st = loaded_state(img, &std::format!("{name}: {what}"));
                    if done == writes.len() {
                        assert_eq!(
                            st, new,
                            "{name}: {what}: the answered change is not what loads"
                        );
                    } else {
                        assert!(
                            st == old || st == new,
                            "{name}: {what}: neither old nor new: {st:?}"
                        );
                    }
                },
            );
        }
        std::println!("{name}: {} writes, {cases} crash images", writes.len());
        let version = f.r.meta.layout.version;
        assert_eq!(loaded_version(&rec.image, bs), version, "{name}");
        cases
    }

    /// An operation of the crash enumeration: true if it reported success.
    type Op = fn(&mut Fixture, &mut Recorder) -> bool;

    /// The format version of the copy a load of `image` takes.
    fn loaded_version(image: &[u8], bs: Option<u32>) -> u32 {
        let disk = Disk {
            data: image.to_vec(),
            writes_left: None,
            log: Vec::new(),
        };
        Fixture::on(bs, disk).unwrap().r.meta.layout.version
    }

    #[test]
    fn every_crash_point_of_every_metadata_write_loads_old_or_new() {
        // Each operation that writes metadata, run from the same start; a
        // crash at every point of it, with every write not yet durable lost,
        // whole or torn at every sector boundary (exhaustive up to 256
        // images per crash point, then 256 sampled with the seed printed).
        // What loads must be the state before or after; after the last
        // write (the operation has answered), the state after.
        let ops: [(&str, Op); 10] = [
            ("add_remap auto", |f, io| {
                msg_on(f, io, "add_remap 800 auto 64")
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
                let node = Nodes::<HostEnv>::new(1).unwrap().pop().unwrap();
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

    /// The seed of the crash enumerations' samples.
    const CRASH_SEED: u64 = 0x5eed_d15c;

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

    /// How many version-2 headers converting a version-2 spare of `copies`
    /// copies (blocks of `bs`) leaves outside what the new copies write, to
    /// be zeroed; 0 when it is refused.
    fn leftover_v2_headers(bs: Option<u32>, copies: u32) -> usize {
        let mut f = Fixture::v2_with(bs, copies);
        let v2 = f.r.meta.layout;
        if f.msg("convert_metadata").is_err() {
            return 0;
        }
        let l = f.r.meta.layout;
        let written = (l.pending_offset() + f.r.pending_units(true)) * format::UNIT_SECTORS;
        (0..v2.copies)
            .filter(|&i| {
                let at = v2.copy_start(i);
                !(0..l.copies).any(|j| (l.copy_start(j)..l.copy_start(j) + written).contains(&at))
            })
            .count()
    }

    /// Runs message `line` on `f` with its metadata writes going to `io`.
    fn msg_on(f: &mut Fixture, io: &mut Recorder, line: &str) -> bool {
        let words: Vec<&str> = line.split_whitespace().collect();
        let m = parse(&words).unwrap();
        f.r.handle(&f.t, io, m, &mut String::new(), &mut |_| {})
            .is_ok()
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
                )
                .unwrap();
                let back: Vec<&str> = canon.split(' ').collect();
                let again = crate::logic::table_line::parse(&back).unwrap();
                assert_eq!(again.features, tl.features, "{args:?} -> {canon}");
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
        assert!(
            matches!(again.events[..], [Event::Loaded { generation, remaps: 13, .. }] if generation == g)
        );
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
                let node = Nodes::<HostEnv>::new(1).unwrap().pop().unwrap();
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
                let node = Nodes::<HostEnv>::new(1).unwrap().pop().unwrap();
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

    /// The state of `f` and the format version it has in memory.
    fn versioned(f: &mut Fixture) -> ((String, String), u32) {
        (f.state(), f.r.meta.layout.version)
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

    /// The devices of the golden images: a 32 MiB main and a 16 MiB spare
    /// with 4096-byte blocks.
    fn golden_pair() -> (Geometry, Identity) {
        let d = |dev, sectors| DeviceFacts {
            dev,
            whole: dev,
            sectors,
            logical_block_size: 512,
        };
        let features = Features {
            block_size: Some(4096),
            ..Features::default()
        };
        let g = validate(65536, &d(1, 65536), &d(2, 32768), &features).unwrap();
        let id = Identity {
            uuid: [0; 16],
            main_sectors: 65536,
            spare_sectors: 32768,
            block_size: 4096,
        };
        (g, id)
    }

    /// Checks that the gzip file `path` holds `image`; with `env` set, writes
    /// it first.
    fn golden_image(image: &[u8], path: &str, env: &str) {
        if std::env::var_os(env).is_some() {
            let raw = std::env::temp_dir().join(std::format!("golden-{}.img", std::process::id()));
            std::fs::write(&raw, image).unwrap();
            let gz = std::process::Command::new("gzip")
                .args(["-9", "-n", "-c"])
                .arg(&raw)
                .output()
                .unwrap();
            std::fs::write(path, gz.stdout).unwrap();
            std::fs::remove_file(&raw).unwrap();
        }
        let out = std::process::Command::new("gzip")
            .args(["-d", "-c", path])
            .output()
            .expect("gzip");
        assert!(out.status.success(), "{path}");
        assert!(out.stdout == image, "{path} is not what the code writes");
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
        assert_eq!(
            starts,
            [(64, 256, 100), (256, 1024, 390), (1024, 4096, 1540)]
        );
        assert_eq!(f.t.resizes(), 3);
        assert_eq!(f.msg("query 1015").unwrap(), "spare 15015");
        assert_eq!(f.msg("query 999").unwrap(), "main 999");
        // Consecutive remaps list as one extent.
        assert_eq!(f.msg("list").unwrap(), "1010 15010 2000");
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
        assert_eq!(f.t.buckets(), 256);
        assert_eq!(f.r.spare_used(), 300);
        assert_eq!(f.msg("remove_remap 0 290").unwrap(), "removed 290");
        // 10 entries in 256 buckets: below 3/32 of 256, so back to 64.
        assert_eq!(f.t.buckets(), 64);
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
            heapsort_by_first(&mut v);
            let keys: Vec<u64> = v.iter().map(|p| p[0]).collect();
            let want_keys: Vec<u64> = want.iter().map(|p| p[0]).collect();
            assert_eq!(keys, want_keys);
        }
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
        assert_eq!(f.r.add_pending(0), PendingAdd::Full);
        let layout = f.r.meta.layout;
        for h in all_copies_valid(&mut f.disk, &layout, "full pending list") {
            assert_eq!(h.pending, cap as u64);
        }
        let mut g = Fixture::on(Some(4096), f.disk.clone()).expect("reloads");
        assert_eq!(g.r.pending(), &blocks[..]);
        // One block off the middle, committed: the rest loads as it was.
        assert!(g.r.remove_pending(blocks[2000]));
        g.r.commit_pending(&mut g.disk).unwrap();
        let h = Fixture::on(Some(4096), g.disk.clone()).expect("reloads");
        assert_eq!(h.r.pending().len(), cap - 1);
        assert!(h.r.pending().binary_search(&blocks[2000]).is_err());
        assert_eq!(h.r.pending()[2000], blocks[2001]);

        let mut v2 = Fixture::v2(Some(4096));
        assert_eq!(v2.r.pending_capacity(), PENDING_MAX);
        for b in 0..PENDING_MAX as u64 {
            assert_eq!(v2.r.add_pending(b * 2), PendingAdd::Added);
        }
        assert_eq!(v2.r.add_pending(1), PendingAdd::Full);
        v2.r.commit_pending(&mut v2.disk).unwrap();
        let again = Fixture::on(Some(4096), v2.disk.clone()).expect("v2 reloads");
        assert_eq!(again.r.pending().len(), PENDING_MAX);
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
    fn error_path_reserve_commit_publish_and_relocate() {
        let mut f = Fixture::new(Some(4096));
        // A failed write of main block 40: reserve, (write data), commit,
        // publish; nothing is visible before the publish.
        let slot = f.r.reserve(40).unwrap();
        assert_eq!(f.t.lookup(40), None);
        f.r.commit(&mut f.disk, slot, slot).unwrap();
        assert_eq!(f.t.lookup(40), None);
        let mut ev = |_e: Event| {};
        let node = || Nodes::<HostEnv>::new(1).unwrap().pop().unwrap();
        f.r.publish(&f.t, 40, slot, node(), &mut ev);
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
        f.r.publish(&f.t, 40, new, node(), &mut ev);
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
