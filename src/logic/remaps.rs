// SPDX-License-Identifier: GPL-2.0

//! What remaps mean: routing of I/O, and the messages that change or show
//! the remap table.
//!
//! [`route`] is the I/O path's question "where does this piece go". [`Remaps`]
//! is the writer side: it owns the table's [`Writer`] token and the spare pool,
//! and is kept behind a mutex by the target. Every message checks all of its
//! input before it changes anything, and undoes its own partial work if memory
//! runs out, so a refused message changes nothing.

use super::geometry::Geometry;
use super::mem::{Env, RawArray};
use super::message::{Message, SpareArg, HELP};
use super::pool::SparePool;
use super::table::{target_buckets, RemapTable, Retired, Writer};
use core::fmt::{self, Write};

/// Where a piece of a bio goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Route {
    /// To the spare (true) or to main.
    pub to_spare: bool,
    /// Sector on that device.
    pub sector: u64,
    /// Sectors from the start of the bio that go there in one piece.
    pub len: u64,
}

/// Routes the first piece of an I/O of `sectors` sectors at target offset
/// `offset`: the longest prefix whose blocks all go to main, or all go to
/// consecutive spare blocks. `lookup` is the table's lookup. The loop runs at
/// most once per block of the I/O.
pub fn route(
    geo: &Geometry,
    lookup: impl Fn(u64) -> Option<u64>,
    offset: u64,
    sectors: u64,
) -> Route {
    let bs = geo.block_sectors;
    let block = offset / bs;
    let in_block = offset % bs;
    let first = lookup(block);
    let mut len = (bs - in_block).min(sectors);
    let mut next = block + 1;
    while len < sectors {
        let contiguous = match (first, lookup(next)) {
            (None, None) => true,
            (Some(s0), Some(s)) => Some(s) == s0.checked_add(next - block),
            _ => false,
        };
        if !contiguous {
            break;
        }
        len = (len + bs).min(sectors);
        next += 1;
    }
    match first {
        None => Route {
            to_spare: false,
            sector: offset,
            len,
        },
        Some(s) => Route {
            to_spare: true,
            sector: geo.spare_data_start + s * bs + in_block,
            len,
        },
    }
}

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
}

/// Why a message was refused. Nothing changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MsgError {
    /// Invalid input.
    Invalid(&'static str),
    /// Invalid input at this sector.
    At(&'static str, u64),
    /// The spare pool has too few free blocks.
    PoolFull {
        /// Blocks needed.
        need: u64,
        /// Blocks free.
        free: u64,
    },
    /// Memory ran short.
    NoMemory,
}

impl fmt::Display for MsgError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MsgError::Invalid(s) => f.write_str(s),
            MsgError::At(s, sector) => write!(f, "{s} (sector {sector})"),
            MsgError::PoolFull { need, free } => {
                write!(f, "spare pool full: {need} blocks needed, {free} free")
            }
            MsgError::NoMemory => f.write_str("out of memory"),
        }
    }
}

/// Most extents an `add_remap` reply lists.
const ADD_REPLY_EXTENTS: usize = 8;

/// The writer side of a target's remaps. See the module documentation.
pub struct Remaps<E: Env> {
    writer: Writer,
    pool: SparePool<E>,
    geo: Geometry,
}

impl<E: Env> Remaps<E> {
    /// An empty table and its writer for a target of this geometry.
    pub fn new(geo: Geometry) -> Option<(RemapTable<E>, Self)> {
        let (table, writer) = RemapTable::new()?;
        let pool = SparePool::new(geo.spare_data_blocks)?;
        Some((table, Self { writer, pool, geo }))
    }

    /// Spare pool blocks in use.
    pub fn spare_used(&self) -> u64 {
        self.pool.used()
    }

    /// Executes `msg`; replies go to `out`, things to log to `ev`.
    ///
    /// May sleep (grace periods); never call it on the I/O path.
    pub fn handle<W: Write>(
        &mut self,
        t: &RemapTable<E>,
        msg: Message,
        out: &mut W,
        ev: &mut dyn FnMut(Event),
    ) -> Result<(), MsgError> {
        // Replies are best effort: text that does not fit the result buffer
        // is cut, and device-mapper tells dmsetup so.
        match msg {
            Message::Help => {
                let _ = out.write_str(HELP);
            }
            Message::Count => {
                let _ = write!(out, "{}", t.len());
            }
            Message::Query(sector) => {
                let r = self.query(t, sector)?;
                let dev = if r.to_spare { "spare" } else { "main" };
                let _ = write!(out, "{dev} {}", r.sector);
            }
            Message::List { start, max } => self.list(t, start, max, out)?,
            Message::Clear => {
                let n = t.clear(&mut self.writer).map_err(|_| MsgError::NoMemory)?;
                self.pool.reset();
                let _ = write!(out, "cleared {n}");
            }
            Message::Add { main, spare, nr } => self.add(t, main, spare, nr, out, ev)?,
            Message::Remove { main, nr } => {
                let n = self.remove(t, main, nr, ev)?;
                let _ = write!(out, "removed {n}");
            }
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

    fn add<W: Write>(
        &mut self,
        t: &RemapTable<E>,
        main: u64,
        spare: SpareArg,
        nr: Option<u64>,
        out: &mut W,
        ev: &mut dyn FnMut(Event),
    ) -> Result<(), MsgError> {
        let bs = self.geo.block_sectors;
        let (first, n) = self.blocks(main, nr)?;
        for b in first..first + n {
            if t.lookup(b).is_some() {
                return Err(MsgError::At("overlaps an existing remap", b * bs));
            }
        }
        let explicit = match spare {
            SpareArg::Auto => {
                if self.pool.free() < n {
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
                if !matches!(pb.checked_add(n), Some(end) if end <= self.pool.total()) {
                    return Err(MsgError::Invalid(
                        "spare range extends beyond the spare's data pool",
                    ));
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

        self.resize_for(t, t.len() + n, ev);

        // Insert block by block; undo everything if memory runs out.
        let mut done = 0;
        let mut failed = false;
        while done < n {
            let sb = match explicit {
                Some(pb) => {
                    self.pool.take(pb + done);
                    pb + done
                }
                None => match self.pool.alloc() {
                    Some(b) => b,
                    None => {
                        failed = true;
                        break;
                    }
                },
            };
            if t.insert(&mut self.writer, first + done, sb).is_err() {
                self.pool.release(sb);
                failed = true;
                break;
            }
            done += 1;
        }
        if failed {
            let mut retired = Retired::new();
            for b in first..first + done {
                if let Some(sb) = t.remove(&mut self.writer, b, &mut retired) {
                    self.pool.release(sb);
                }
            }
            return Err(MsgError::NoMemory);
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
            if extents > 0 {
                let _ = out.write_char('\n');
            }
            let _ = write!(
                out,
                "{} {} {}",
                b * bs,
                self.geo.spare_data_start + s0 * bs,
                len * bs
            );
            extents += 1;
            b += len;
        }
        Ok(())
    }

    fn remove(
        &mut self,
        t: &RemapTable<E>,
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
        {
            let mut retired = Retired::new();
            for b in first..first + n {
                if let Some(sb) = t.remove(&mut self.writer, b, &mut retired) {
                    self.pool.release(sb);
                }
            }
            // Dropping `retired` waits for readers and frees the nodes.
        }
        self.resize_for(t, t.len(), ev);
        Ok(n)
    }

    /// Grows or shrinks the table for `entries` entries, if needed.
    fn resize_for(&mut self, t: &RemapTable<E>, entries: u64, ev: &mut dyn FnMut(Event)) {
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
        let bs = self.geo.block_sectors;
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
            if lines > 0 {
                let _ = out.write_char('\n');
            }
            let _ = write!(
                out,
                "{} {} {}",
                m0 * bs,
                self.geo.spare_data_start + s0 * bs,
                len * bs
            );
            lines += 1;
            k += len as usize;
        }
        Ok(())
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
    use crate::logic::geometry::{validate, DeviceFacts};
    use crate::logic::message::parse;
    use crate::logic::table_line::Features;
    use crate::HostEnv;
    extern crate std;
    use std::string::String;
    use std::vec::Vec;

    const MIB: u64 = 2048;

    fn geo(block_size: Option<u32>) -> Geometry {
        let d = |dev, sectors| DeviceFacts {
            dev,
            whole: dev,
            sectors,
            logical_block_size: 512,
        };
        validate(
            64 * MIB,
            &d(1, 64 * MIB),
            &d(2, 64 * MIB),
            &Features { block_size },
        )
        .unwrap()
    }

    struct Fixture {
        t: RemapTable<HostEnv>,
        r: Remaps<HostEnv>,
        events: Vec<Event>,
    }

    impl Fixture {
        fn new(bs: Option<u32>) -> Self {
            let (t, r) = Remaps::new(geo(bs)).unwrap();
            Self {
                t,
                r,
                events: Vec::new(),
            }
        }

        fn msg(&mut self, line: &str) -> Result<String, String> {
            let words: Vec<&str> = line.split_whitespace().collect();
            let m = parse(&words).map_err(|e| String::from(e.as_str()))?;
            let mut out = String::new();
            let events = &mut self.events;
            self.r
                .handle(&self.t, m, &mut out, &mut |e| events.push(e))
                .map_err(|e| std::format!("{e}"))?;
            Ok(out)
        }
    }

    #[test]
    fn seed_loop_resizes_as_documented() {
        let mut f = Fixture::new(None);
        for i in 1..=200u64 {
            let line = std::format!("add_remap {} {} 10", 1000 + i * 10, 5000 + i * 10);
            assert_eq!(
                f.msg(&line).unwrap(),
                std::format!("{} {} 10", 1000 + i * 10, 5000 + i * 10)
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
        assert_eq!(f.msg("query 1015").unwrap(), "spare 5015");
        assert_eq!(f.msg("query 999").unwrap(), "main 999");
        // Consecutive remaps list as one extent.
        assert_eq!(f.msg("list").unwrap(), "1010 5010 2000");
    }

    #[test]
    fn routing_splits_at_boundaries() {
        let mut f = Fixture::new(None);
        f.msg("add_remap 100 5000 4").unwrap();
        f.msg("add_remap 104 9000 2").unwrap();
        let g = geo(None);
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
                sector: 5000,
                len: 4
            }
        );
        assert_eq!(
            route(&g, lk, 104, 20),
            Route {
                to_spare: true,
                sector: 9000,
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
        assert_eq!(f.msg("list 0 2").unwrap(), "0 4096 1\n10 4097 1\nnext 20");
        assert_eq!(f.msg("list 20 2").unwrap(), "20 4098 1\n30 4099 1\nnext 40");
        assert_eq!(f.msg("list 40 2").unwrap(), "40 4100 1");
    }
}
