// SPDX-License-Identifier: GPL-2.0

//! Moving every remap, with its data, to another spare while the target
//! is in use (`migrate_to` on the table line; docs/online-migration.md).
//!
//! The target copies in the background while it serves I/O: its worker
//! copies one run of pool blocks at a time under the target's lock, and
//! writes every write routed to the spare meanwhile, to the old spare and,
//! once the block is copied, to the new one too. Messages that change the
//! remaps are refused until the switch. The steps:
//!
//! 1. [`check_new_spare`] (in the constructor): the new spare is blank,
//!    carries the marker of an earlier attempt, or holds a copy of this very
//!    pair's metadata (an attempt that stopped after writing it).
//! 2. [`Remaps::mark_taken`]: a unit of `0xff` bytes over every copy's first
//!    entry unit. No loader takes the new spare for blank or for a spare
//!    from then on, so a stop before the switch cannot leave it loadable
//!    with half its data.
//! 3. [`Remaps::used_run`] and [`copy_run`]: every pool block in use
//!    goes to the same pool block of the new spare. The new spare keeps the
//!    old one's layout (same copies at the same places, same pool start),
//!    so slot numbers, and with them the remap table, stay as they are.
//! 4. [`Remaps::switch_to`]: the marker again, durable (its PREFLUSH makes
//!    the copied data durable); the old spare's metadata, written whole to
//!    the new spare; then every copy of the old spare marked "moved" (a table
//!    refuses it from the first marked copy on); then the new spare's pool
//!    grown to its size, as a reload over a grown spare does.
//!
//! At every point a crash leaves the old spare current and the new one
//! refused or holding the same state, or the old one refused and the new one
//! current (the host test below enumerates the writes).

use super::*;
use crate::logic::format::{self, UNIT};
use crate::logic::message::MsgError;

/// What [`check_new_spare`] found on the new spare.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NewSpare {
    /// Its metadata area is all zeros.
    Blank,
    /// It carries the marker of an earlier attempt ([`Remaps::mark_taken`]).
    Marked,
    /// A copy of this pair's metadata, written by an earlier attempt that
    /// stopped before the switch.
    Ours,
}

/// Whether the spare behind `io` may become the spare of the pair whose
/// metadata has `uuid` and `layout` (the layout the new spare gets): see
/// [`NewSpare`]; anything else is refused, since it may hold someone's
/// data.
pub fn check_new_spare<E: Env>(
    io: &mut dyn MetaIo,
    new_sectors: u64,
    layout: &Layout,
    uuid: &[u8; 16],
    crc: Crc,
) -> Result<NewSpare, LoadError> {
    if layout.version != format::FORMAT_VERSION {
        return Err(LoadError::Refused(
            c"A version-2 spare cannot migrate; convert it first (convert_metadata)",
        ));
    }
    // Metadata anywhere (another spare's layout may differ from ours).
    if let (Some(l), _) = discover::<E>(io, new_sectors, crc)? {
        return match newest_header::<E>(io, &l, crc)? {
            Some(h) if h.identity.uuid == *uuid && !h.moved && l == *layout => Ok(NewSpare::Ours),
            _ => Err(LoadError::Refused(
                c"The migrate_to spare holds dm-remap metadata of its own; wipe it to move to it",
            )),
        };
    }
    let mut buf = RawArray::<u8, E>::new(layout.copy_bytes()).ok_or(LoadError::NoMemory)?;
    let unit = buf.get_mut(..UNIT).ok_or(LoadError::NoMemory)?;
    io.read(layout.unit_at(0, 1), unit)
        .map_err(|()| LoadError::Io)?;
    if unit.iter().all(|&b| b == 0xff) {
        return Ok(NewSpare::Marked);
    }
    let per = (buf.len() / format::SECTOR) as u64;
    let mut at = 0;
    while at < layout.pool_start {
        let n = (layout.pool_start - at).min(per) as usize;
        let b = &mut buf[..n * format::SECTOR];
        io.read(at, b).map_err(|()| LoadError::Io)?;
        if b.iter().any(|&x| x != 0) {
            return Err(LoadError::Refused(
                c"The migrate_to spare's metadata area is not blank (a file system, a partition table, or a migration that stopped); wipe it to move to it",
            ));
        }
        at += n as u64;
    }
    Ok(NewSpare::Blank)
}

/// Copies `sectors` sectors at `at` from `old` to the same place on `new`
/// through `buf` (a whole number of sectors, at least one). `Err` names the
/// side that failed: `true` a read of `old`.
pub fn copy_run(
    old: &mut dyn MetaIo,
    new: &mut dyn MetaIo,
    at: u64,
    sectors: u64,
    buf: &mut [u8],
) -> Result<(), bool> {
    let per = (buf.len() / format::SECTOR) as u64;
    if per == 0 {
        return Err(true);
    }
    let mut done = 0;
    while done < sectors {
        let k = per.min(sectors - done);
        let b = &mut buf[..k as usize * format::SECTOR];
        old.read(at + done, b).map_err(|()| true)?;
        new.write(at + done, b, false).map_err(|()| false)?;
        done += k;
    }
    Ok(())
}

/// The header of the newest valid copy on the spare behind `io` in
/// `layout`, of whichever device pair, if any.
fn newest_header<E: Env>(
    io: &mut dyn MetaIo,
    layout: &Layout,
    crc: Crc,
) -> Result<Option<format::Header>, LoadError> {
    // A pair that serves no recorded one (no header records block size 0):
    // every valid copy counts, whatever its layout.
    let anyone = format::Identity {
        uuid: [0; 16],
        main_sectors: 0,
        spare_sectors: 0,
        block_size: 0,
    };
    let (states, _) = discover::survey::<E>(io, layout, &anyone, crc)?;
    let copies = states.get(..layout.copies as usize).unwrap_or(&states);
    Ok(format::newest_valid(copies, |_| true).map(|(_, h)| h))
}

/// The uuid of the newest valid copy on the spare behind `io` in `layout`,
/// if any.
pub fn spare_uuid<E: Env>(
    io: &mut dyn MetaIo,
    layout: &Layout,
    crc: Crc,
) -> Result<Option<[u8; 16]>, LoadError> {
    Ok(newest_header::<E>(io, layout, crc)?.map(|h| h.identity.uuid))
}

/// Why [`Remaps::switch_to`] did not switch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SwitchError {
    /// Writing the new spare's metadata failed; the old spare stays
    /// current (the caller marks the new one taken again).
    New,
    /// Memory ran short; nothing was written.
    NoMemory,
}

/// What [`Remaps::switch_to`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Switched {
    /// Every copy of the old spare marked "moved"; `false` when copy 0
    /// could not be written (a table may still load the old spare: the
    /// caller says so).
    pub old_marked: bool,
    /// Pool blocks before and after growing onto the new spare; `Err` when
    /// that commit failed (the caller enters fail mode, as for any commit).
    pub pool: Result<(u64, u64), MsgError>,
}

impl<E: Env> Remaps<E> {
    /// Writes the marker over every copy's first entry unit on the spare
    /// behind `new`, the last write durable.
    pub fn mark_taken(&self, new: &mut dyn MetaIo) -> Result<(), MsgError> {
        let l = self.meta.layout;
        let mut unit = RawArray::<u8, E>::new(l.unit()).ok_or(MsgError::NoMemory)?;
        unit.fill(0xff);
        for i in 0..l.copies {
            new.write(l.unit_at(i, 1), &unit, i + 1 == l.copies)
                .map_err(|()| MsgError::Io)?;
        }
        Ok(())
    }

    /// The first run of pool blocks in use at or after `from`, at most `max`
    /// long: (first block, blocks).
    pub fn used_run(&self, from: u64, max: u64) -> Option<(u64, u64)> {
        let total = self.pool.total();
        let first = (from..total).find(|&s| self.pool.holder(s).is_some())?;
        let mut n = 1;
        while n < max && first + n < total && self.pool.holder(first + n).is_some() {
            n += 1;
        }
        Some((first, n))
    }

    /// Spare sectors of pool blocks `first..first + n`: (start, sectors).
    pub fn run_sectors(&self, first: u64, n: u64) -> (u64, u64) {
        (self.slot_sector(first), n * self.geo.block_sectors)
    }

    /// Makes the spare behind `new` (of `new_sectors`, holding a copy of
    /// every pool block in use) the spare: see the module documentation.
    pub fn switch_to(
        &mut self,
        old: &mut dyn MetaIo,
        new: &mut dyn MetaIo,
        new_sectors: u64,
    ) -> Result<Switched, SwitchError> {
        // Again, durable: its PREFLUSH makes the copied data durable before
        // any header names it.
        match self.mark_taken(new) {
            Ok(()) => {}
            Err(MsgError::NoMemory) => return Err(SwitchError::NoMemory),
            Err(_) => return Err(SwitchError::New),
        }
        match self.rewrite_all(new) {
            Ok(()) => {}
            Err(MsgError::NoMemory) => return Err(SwitchError::NoMemory),
            Err(_) => return Err(SwitchError::New),
        }
        let old_marked = self.mark_moved(old).is_ok();
        // The marks are the old spare's; the new one serves the remaps.
        self.moved = false;
        let _ = self.take_degraded();
        let from = self.pool.total();
        self.meta.identity.spare_sectors = new_sectors;
        self.geo = self.geo.with_pool(self.geo.spare_data_start, new_sectors);
        let grown = self.meta.layout.grown(
            new_sectors,
            self.geo.block_sectors,
            format::DEFAULT_MAX_SLOTS,
        );
        if let Some(l) = grown {
            if self.pool.grow(l.slots).is_none() {
                return Ok(Switched {
                    old_marked,
                    pool: Err(MsgError::NoMemory),
                });
            }
            self.meta.layout = l;
        }
        // Every copy again, recording the new spare's size (and pool).
        let pool = self.rewrite_all(new).map(|()| (from, self.pool.total()));
        Ok(Switched { old_marked, pool })
    }
}

#[cfg(test)]
mod tests {
    use super::super::fake::*;
    use super::*;
    use crate::logic::format::SECTOR;
    use crate::logic::testing::MIB;
    use crate::HostEnv;
    extern crate std;
    use core::cell::RefCell;
    use std::string::String;
    use std::vec::Vec;

    /// Both spares' first bytes in one recorded image (the old one first,
    /// the new one at `HALF`), so that a crash enumeration covers the writes
    /// to both in the order they were issued.
    const HALF: usize = TEST_AREA;

    struct Side<'a>(&'a RefCell<Recorder>, bool);

    impl MetaIo for Side<'_> {
        fn read(&mut self, sector: u64, buf: &mut [u8]) -> Result<(), ()> {
            let at = sector as usize * SECTOR + if self.1 { HALF } else { 0 };
            buf.fill(0);
            let n = HALF.saturating_sub(sector as usize * SECTOR).min(buf.len());
            if n > 0 {
                buf[..n].copy_from_slice(&self.0.borrow().image[at..at + n]);
            }
            Ok(())
        }
        fn write(&mut self, sector: u64, buf: &[u8], durable: bool) -> Result<(), ()> {
            assert!(sector as usize * SECTOR + buf.len() <= HALF);
            let off = if self.1 { (HALF / SECTOR) as u64 } else { 0 };
            self.0.borrow_mut().write(sector + off, buf, durable)
        }
    }

    /// The state a spare image loads to (remaps, count, pending), with the
    /// spare `spare` sectors large, or why it does not load.
    fn load(image: &[u8], spare: u64) -> Result<(String, String, Vec<u64>), LoadError> {
        let mut disk = Disk {
            data: image.to_vec(),
            writes_left: None,
            log: Vec::new(),
        };
        let (t, mut r, _, _) = open_with(64 * MIB, spare, 5, false, &mut disk)?;
        let mut f = Fixture {
            t,
            r,
            disk,
            events: Vec::new(),
        };
        let (l, c) = f.state();
        r = f.r;
        Ok((l, c, r.pending().to_vec()))
    }

    /// Runs a whole migration of `f` to a 128 MiB spare; every I/O goes
    /// through `rec`.
    fn migrate(f: &mut Fixture, rec: &RefCell<Recorder>) -> Switched {
        let uuid = f.r.meta.identity.uuid;
        let layout = f.r.meta.layout;
        let check = |rec| {
            check_new_spare::<HostEnv>(
                &mut Side(rec, true),
                128 * MIB,
                &layout,
                &uuid,
                crc32fast::hash,
            )
        };
        assert_eq!(check(rec), Ok(NewSpare::Blank));
        f.r.mark_taken(&mut Side(rec, true)).unwrap();
        assert_eq!(check(rec), Ok(NewSpare::Marked));
        // Runs of up to 3 blocks, copied 2 blocks at a time.
        let mut buf = std::vec![0u8; 2 * 4096];
        let mut from = 0;
        while let Some((first, n)) = f.r.used_run(from, 3) {
            let (at, sectors) = f.r.run_sectors(first, n);
            copy_run(
                &mut Side(rec, false),
                &mut Side(rec, true),
                at,
                sectors,
                &mut buf,
            )
            .unwrap();
            from = first + n;
        }
        let (mut old, mut new) = (Side(rec, false), Side(rec, true));
        f.r.switch_to(&mut old, &mut new, 128 * MIB).unwrap()
    }

    #[test]
    fn a_crash_anywhere_in_a_migration_leaves_one_current_spare() {
        for copies in [3] {
            let (disk, _, _) = one_remap_with_copies(copies);
            let (t, r, _, _) =
                open_with(64 * MIB, 64 * MIB, copies, false, &mut disk.clone()).unwrap();
            let mut f = Fixture {
                t,
                r,
                disk,
                events: Vec::new(),
            };
            f.msg("add_remap 64 auto 24").unwrap();
            f.msg("add_remap 2400 auto 8").unwrap();
            let _ = f.r.add_pending(77);
            f.r.commit_pending(&mut f.disk).unwrap();
            let before = {
                let (l, c) = f.state();
                (l, c, f.r.pending().to_vec())
            };
            // The spares: the old one's metadata, a pattern in each pool
            // block in use, and a blank new one.
            let mut base = std::vec![0u8; 2 * HALF];
            base[..HALF].copy_from_slice(&f.disk.data[..HALF]);
            let mut used = Vec::new();
            for slot in 0..f.r.pool.total() {
                if f.r.pool.holder(slot).is_some() {
                    let at = f.r.slot_sector(slot) as usize * SECTOR;
                    base[at..at + 4096].fill(slot as u8 + 1);
                    used.push(at);
                }
            }
            assert_eq!(used.len(), 5);
            let rec = RefCell::new(Recorder {
                image: base.clone(),
                writes: Vec::new(),
            });
            let sw = migrate(&mut f, &rec);
            assert!(sw.old_marked);
            let (from, to) = sw.pool.unwrap();
            assert!(to > from, "the pool grew: {from} -> {to}");
            let writes = rec.borrow().writes.clone();
            let blank = load(&std::vec![0u8; HALF], 128 * MIB).unwrap();
            let images = every_crash(&base, &writes, 7, &mut |img, what, answered| {
                let old = load(&img[..HALF], 64 * MIB);
                let new = load(&img[HALF..], 128 * MIB);
                let data_moved = used
                    .iter()
                    .all(|&at| img[at..at + 4096] == img[HALF + at..HALF + at + 4096]);
                match (old, new) {
                    (Ok(o), Err(_)) => {
                        assert!(!answered, "{what}: answered, yet the old spare loads");
                        assert_eq!(o, before, "{what}");
                    }
                    (Ok(o), Ok(n)) => {
                        assert!(!answered, "{what}: answered, yet the old spare loads");
                        assert_eq!(o, before, "{what}");
                        // Still blank (nothing reached it): a table formats
                        // it, as before the migration began.
                        if n != blank {
                            assert_eq!(n, before, "{what}: the new spare");
                            assert!(data_moved, "{what}: the new spare loads without the data");
                        }
                    }
                    (Err(e), Ok(n)) => {
                        assert!(
                            matches!(e, LoadError::Refused(m) if m.to_bytes().starts_with(b"Spare's remaps moved")),
                            "{what}: {e:?}"
                        );
                        assert_eq!(n, before, "{what}: the new spare");
                        assert!(data_moved, "{what}: the new spare loads without the data");
                    }
                    (Err(e), Err(g)) => panic!("{what}: neither spare loads: {e:?} / {g:?}"),
                }
            });
            std::println!(
                "migration, {copies} copies: {} writes, {images} crash images",
                writes.len()
            );
        }
    }

    #[test]
    fn a_new_spare_is_taken_only_when_blank_marked_or_ours() {
        let (disk, _, _) = one_remap_with_copies(2);
        let mut f = Fixture::on(Some(4096), disk).unwrap();
        let layout = f.r.meta.layout;
        let uuid = f.r.meta.identity.uuid;
        let check =
            |d: &mut Disk| check_new_spare::<HostEnv>(d, 64 * MIB, &layout, &uuid, crc32fast::hash);
        let refused = |r: Result<NewSpare, LoadError>, what: &[u8]| match r {
            Err(LoadError::Refused(m)) => {
                let m = m.to_bytes();
                assert!(m.windows(what.len()).any(|w| w == what), "{m:?}");
            }
            r => panic!("not refused: {r:?}"),
        };
        assert_eq!(check(&mut Disk::new()), Ok(NewSpare::Blank));
        // A file system's superblock.
        let mut d = Disk::new();
        d.data[1024..1040].fill(0x53);
        refused(check(&mut d), b"not blank");
        // A spare of its own (the old spare itself is another pair's once
        // its uuid differs).
        let mut other = f.disk.clone();
        refused(
            check_new_spare::<HostEnv>(&mut other, 64 * MIB, &layout, &[1; 16], crc32fast::hash),
            b"of its own",
        );
        // This pair's metadata: an attempt that stopped after writing it.
        assert_eq!(check(&mut f.disk.clone()), Ok(NewSpare::Ours));
        // Marked, over anything.
        let mut d = Disk::new();
        d.data[1024..1040].fill(0x53);
        f.r.mark_taken(&mut d).unwrap();
        assert_eq!(check(&mut d), Ok(NewSpare::Marked));
        // Marking the old spare's copies makes them all invalid: a loader
        // refuses it.
        let mut d = f.disk.clone();
        f.r.mark_taken(&mut d).unwrap();
        assert!(Fixture::on(Some(4096), d).is_err());
        // Moved: refused like any other pair's.
        let mut d = f.disk.clone();
        f.r.mark_moved(&mut d).unwrap();
        refused(check(&mut d), b"of its own");
    }

    #[test]
    fn a_failed_write_to_the_new_spare_keeps_the_old_one() {
        let (disk, _, _) = one_remap_with_copies(5);
        let mut f = Fixture::on(Some(4096), disk).unwrap();
        f.msg("add_remap 64 auto 24").unwrap();
        let before = f.state();
        for n in 0..12 {
            let mut new = Disk::new();
            new.writes_left = Some(n);
            let mut g = Fixture::on(Some(4096), f.disk.clone()).unwrap();
            let mut old = g.disk.clone();
            old.log.clear();
            match g.r.switch_to(&mut old, &mut new, 128 * MIB) {
                Err(SwitchError::New) => {
                    // The old spare is untouched and still loads.
                    assert!(old.log.is_empty(), "{n}");
                    let mut h = Fixture::on(Some(4096), old).unwrap();
                    assert_eq!(h.state(), before, "{n}");
                }
                Ok(sw) => {
                    assert!(sw.old_marked, "{n}");
                    assert!(sw.pool.is_err(), "{n}: the growth commit failed");
                }
                Err(e) => panic!("{n}: {e:?}"),
            }
        }
    }
}
