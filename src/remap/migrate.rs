// SPDX-License-Identifier: GPL-2.0

//! `migrate_to <dev>`: every remap, with its data, moves to another spare
//! when the table is resumed, and the device goes on with that spare.
//!
//! The constructor checks the new spare without writing to it. The first
//! `preresume` loads the old spare's metadata and marks the new one; from
//! then on `map` sends every write to a remapped block to the worker, and
//! the worker's writes to pool blocks already copied go to both spares.
//! Once the device runs, the worker copies the pool blocks in use, a run at
//! a time (the scanner's delayed work, which the scanner does not use
//! meanwhile), then switches. Messages that would change anything are
//! refused until it is done. The steps and their crash safety are
//! [`crate::logic::remaps`]'s (`migrate.rs`); a failure at any of them
//! leaves the device on the old spare, with the new one marked so that no
//! table takes it for a spare.

use super::{facts, lookup_error, Core, NewSpare, Remap};
use crate::dm::device::DmDev;
use crate::dm::io::{self, IoClient, SpareIo};
use crate::dm::log::{dmr_err, dmr_info};
use crate::dm::rcu::KernelEnv;
use crate::dm::target::{CtrContext, CtrError, Target};
use crate::dm::worker;
use crate::logic::format::{Decision, Layout};
use crate::logic::geometry;
use crate::logic::mem::RawArray;
use crate::logic::remaps::{self, check_new_spare, LoadError, SwitchError};
use crate::logic::table_line::Features;
use core::sync::atomic::Ordering;
use kernel::prelude::*;

/// Bytes the copy moves per I/O (at least one block).
const COPY_CHUNK: usize = 256 * 1024;

/// Opens and checks the spare `path` names for a target over `main` and
/// `spare` (whose metadata `decision` and `layout` describe).
#[allow(clippy::too_many_arguments)]
pub(super) fn new_spare(
    ctx: &mut CtrContext<'_, Remap>,
    path: &str,
    main: &DmDev,
    spare: &DmDev,
    features: &Features,
    layout: &Layout,
    decision: Decision,
    client: &IoClient,
) -> Result<NewSpare, CtrError> {
    // Not main or the spare, nor a device that shares sectors with either
    // through a partition table: the copy would write over the data it
    // reads or over main's. The kernel does not open such a device while
    // the table holds the other (EBUSY); the check says why.
    let (main_no, spare_no) = (facts(main).numbers(), facts(spare).numbers());
    let apart = |n| geometry::check_migrate_to(n, main_no, spare_no);
    let dev = ctx
        .get_device(path)
        .map_err(|e| lookup_error(path, e, c"migrate_to device lookup failed", apart))?;
    apart(facts(&dev).numbers())?;
    let claim = ctx
        .claim_spare(&dev)
        .map_err(|e| super::claim_error(e, c"migrate_to device is in use by another remap target"))?;
    if dev.logical_block_size() != spare.logical_block_size() {
        return Err(CtrError::new(
            c"migrate_to device's logical block size differs from the spare's",
            EINVAL,
        ));
    }
    if dev.sectors() < spare.sectors() {
        return Err(CtrError::new(
            c"migrate_to device is smaller than the spare",
            EINVAL,
        ));
    }
    let geometry = geometry::validate(ctx.target().len(), &facts(main), &facts(&dev), features)?
        .with_pool(layout.pool_start, dev.sectors());
    let mut old = SpareIo { client, spare };
    let uuid = match decision {
        Decision::Load { .. } => remaps::spare_uuid::<KernelEnv>(&mut old, layout, io::crc32)
            .map_err(new_spare_error)?,
        _ => None,
    };
    let mut new = SpareIo { client, spare: &dev };
    check_new_spare::<KernelEnv>(
        &mut new,
        dev.sectors(),
        layout,
        &uuid.unwrap_or([0; 16]),
        io::crc32,
    )
        .map_err(new_spare_error)?;
    Ok(NewSpare {
        dev,
        geometry,
        _claim: claim,
    })
}

fn new_spare_error(e: LoadError) -> CtrError {
    match e {
        LoadError::Refused(m) => CtrError::new(m, EINVAL),
        LoadError::NoMemory => CtrError::new(c"Cannot allocate metadata buffers", ENOMEM),
        _ => CtrError::new(c"Cannot read the migrate_to device", EIO),
    }
}

/// A move in progress (in `Core`).
pub(super) struct Migration {
    /// The next pool block to look at.
    next: u64,
    /// Pool blocks in use when it started.
    blocks: u64,
    /// When it started (ms since boot).
    start_ms: u64,
    /// The copy's buffer: [`COPY_CHUNK`] bytes, or one block.
    buf: RawArray<u8, KernelEnv>,
}

impl Remap {
    /// Metadata I/O on the old spare and on `n`.
    fn both_spares<'a>(&'a self, n: &'a NewSpare) -> (SpareIo<'a>, SpareIo<'a>) {
        let io = |spare| SpareIo {
            client: &self.io_client,
            spare,
        };
        (io(&self.spare), io(&n.dev))
    }

    /// Starts the move to `n` (see the module documentation): marks `n`,
    /// and from here on `map` sends writes to remapped blocks to the worker,
    /// whose writes to blocks already copied go to both spares. The copy
    /// runs in the worker once the device resumes. Called from `preresume`
    /// under the lock, after the load.
    pub(super) fn start_migration(&self, dev: &str, c: &mut Core, n: &NewSpare) {
        let (_, mut new) = self.both_spares(n);
        let (from_name, to_name) = (self.spare.name(), n.dev.name());
        if self.fail.load(Ordering::Relaxed) {
            dmr_err!(
                "{}: fail mode: not moving to spare {}; send clear_fail and reload\n",
                dev,
                to_name
            );
            return;
        }
        let bs = self.bs_bytes();
        let Some(buf) =
            RawArray::<u8, KernelEnv>::new(COPY_CHUNK.max(bs)).or_else(|| RawArray::new(bs))
        else {
            dmr_err!("{}: out of memory: not moving to spare {}\n", dev, to_name);
            return;
        };
        if c.remaps.mark_taken(&mut new).is_err() {
            dmr_err!(
                "{}: cannot write to spare {}: not moving; the device stays on spare {}\n",
                dev,
                to_name,
                from_name
            );
            return;
        }
        let blocks = c.remaps.spare_used();
        c.migration = Some(Migration {
            next: 0,
            blocks,
            start_ms: worker::now_ms(),
            buf,
        });
        self.copy_failed.store(false, Ordering::Relaxed);
        self.copy_cursor
            .store(c.remaps.slot_sector(0), Ordering::Release);
        self.copying.store(true, Ordering::Release);
        dmr_info!(
            "{}: moving {} remapped blocks from spare {} to {}\n",
            dev,
            blocks,
            from_name,
            to_name
        );
    }

    /// One step of the move, in the worker: copies the next run of pool
    /// blocks in use (at most [`COPY_CHUNK`] bytes) under the lock, so that
    /// no write of the worker's to those blocks comes between the read and
    /// the write; or, when all are copied, switches to the new spare.
    pub(super) fn migrate_step(&self, ti: &Target) {
        let dev = ti.device_name();
        let Some(n) = &self.new_spare else {
            return;
        };
        let mut c = self.core.lock();
        if c.suspended || self.halt.load(Ordering::Relaxed) {
            // `resume` queues the next step.
            return;
        }
        let (mut old, mut new) = self.both_spares(n);
        if self.fail.load(Ordering::Relaxed) {
            self.stop_migration(dev, &mut c, n, "fail mode", None);
            return;
        }
        if self.copy_failed.load(Ordering::Acquire) {
            self.stop_migration(dev, &mut c, n, "write error on the new spare", None);
            return;
        }
        let Core {
            remaps, migration, ..
        } = &mut *c;
        let Some(m) = migration.as_mut() else {
            return;
        };
        let per = (m.buf.len() / self.bs_bytes()).max(1) as u64;
        let Some((first, k)) = remaps.used_run(m.next, per) else {
            self.finish_migration(dev, &mut c, n);
            return;
        };
        let (at, sectors) = remaps.run_sectors(first, k);
        match remaps::copy_run(&mut old, &mut new, at, sectors, &mut m.buf) {
            Ok(()) => {
                m.next = first + k;
                self.copy_cursor
                    .store(remaps.slot_sector(first + k), Ordering::Release);
                drop(c);
                self.worker.scan_after(0);
            }
            Err(true) => self.stop_migration(dev, &mut c, n, "read error on the old spare", Some(at)),
            Err(false) => self.stop_migration(dev, &mut c, n, "write error on the new spare", Some(at)),
        }
    }

    /// Ends a move that cannot finish: the device stays on the old spare,
    /// and the new one is marked (again) so that no table takes a part of
    /// it for a spare.
    fn stop_migration(
        &self,
        dev: &str,
        c: &mut Core,
        n: &NewSpare,
        why: &str,
        sector: Option<u64>,
    ) {
        self.copying.store(false, Ordering::Release);
        c.migration = None;
        let (_, mut new) = self.both_spares(n);
        let _ = c.remaps.mark_taken(&mut new);
        match sector {
            Some(at) => dmr_err!(
                "{}: moving to spare {} stopped: {} at sector {}; the device stays on spare {}\n",
                dev,
                n.dev.name(),
                why,
                at,
                self.spare.name()
            ),
            None => dmr_err!(
                "{}: moving to spare {} stopped: {}; the device stays on spare {}\n",
                dev,
                n.dev.name(),
                why,
                self.spare.name()
            ),
        }
        self.update_stats(c);
    }

    /// The last step: every block is on the new spare (and every write to
    /// one since went to both); writes its metadata, marks the old spare's
    /// copies, and routes everything to the new spare. Under the lock, so
    /// no write of the worker's comes between.
    fn finish_migration(&self, dev: &str, c: &mut Core, n: &NewSpare) {
        let (mut old, mut new) = self.both_spares(n);
        let (blocks, start) = match &c.migration {
            Some(m) => (m.blocks, m.start_ms),
            None => return,
        };
        let sw = match c.remaps.switch_to(&mut old, &mut new, n.dev.sectors()) {
            Ok(sw) => sw,
            Err(e) => {
                let why = match e {
                    SwitchError::NoMemory => "out of memory",
                    SwitchError::New => "its metadata could not be written",
                };
                self.stop_migration(dev, c, n, why, None);
                return;
            }
        };
        // First the route, then the end of the detour through the worker:
        // `map` that sees the detour gone sees the new spare.
        self.on_new.store(true, Ordering::Release);
        self.copying.store(false, Ordering::Release);
        c.migration = None;
        dmr_info!(
            "{}: moved {} remapped blocks from spare {} to {} in {} ms\n",
            dev,
            blocks,
            self.spare.name(),
            n.dev.name(),
            worker::now_ms().saturating_sub(start)
        );
        if !sw.old_marked {
            dmr_err!(
                "{}: spare {} could not be marked as moved: never put it in a table line again (dm-remap-tool retire)\n",
                dev,
                self.spare.name()
            );
        }
        match sw.pool {
            Ok((a, b)) if b > a => dmr_info!(
                "{}: spare pool grown from {} to {} blocks\n",
                dev,
                a,
                b
            ),
            Ok(_) => {}
            Err(_) => self.enter_fail(dev),
        }
        self.report_spare(dev, c);
        self.update_stats(c);
    }

    /// Writes `buf` at `sector` of the new spare too, when a move is copying
    /// and the pool block there is already copied; a failure stops the move
    /// at its next step. The worker's writes to the old spare's pool call
    /// this, under the lock.
    pub(super) fn mirror(&self, sector: u64, buf: &mut [u8]) {
        if !self.copying.load(Ordering::Acquire)
            || sector >= self.copy_cursor.load(Ordering::Acquire)
        {
            return;
        }
        if let Some(n) = &self.new_spare {
            if io::sync_io(&self.io_client, &n.dev, sector, buf, io::flags::WRITE).is_err() {
                self.copy_failed.store(true, Ordering::Release);
            }
        }
    }
}
