// SPDX-License-Identifier: GPL-2.0

//! The `remap` target: table line → devices → routing.
//!
//! Construct: `<start> <len> remap <main_dev> <spare_dev> [<#feature_args> <feature_arg>...]`
//!
//! Data path: `map` looks each bio up in the RCU-protected remap table (not at
//! all while the table is empty), sends the longest piece that goes to one
//! place there, and lets device-mapper resubmit the rest. Empty flushes go to
//! both devices (one clone each).
//!
//! Metadata: the constructor reads the spare's metadata area and refuses a
//! spare it cannot use, without writing; the first `preresume` (when the table
//! takes over, so a previous table of the device can no longer change it)
//! loads it, repairing stale copies or formatting a blank area. Every message
//! that changes remaps commits before it returns.

use crate::dm::bio::Bio;
use crate::dm::device::DmDev;
use crate::dm::io::{self, IoClient, SpareIo};
use crate::dm::log::{dmr_err, dmr_info};
use crate::dm::rcu::KernelEnv;
use crate::dm::stats::Stats;
use crate::dm::target::{
    CtrContext, CtrError, DeviceVisitor, MapResult, QueueLimits, StatusKind, Target, TargetOps,
};
use crate::logic::emit::Emitter;
use crate::logic::format::{Identity, DEFAULT_COPIES};
use crate::logic::geometry::{self, DeviceFacts, Geometry};
use crate::logic::message;
use crate::logic::remaps::{self, check_spare, Event, LoadError, MsgError, Remaps};
use crate::logic::stats::{Counter, Gauge};
use crate::logic::status::{self, Info, State};
use crate::logic::table::RemapTable;
use crate::logic::table_line::{self, Features};
use core::fmt::Write;
use kernel::ffi::c_int;
use kernel::new_mutex;
use kernel::prelude::*;
use kernel::sync::Mutex;

/// The target type's name in table lines.
pub(crate) const NAME: &core::ffi::CStr = c"remap";
/// The target type's version, as `dmsetup targets` shows it.
pub(crate) const VERSION: [u32; 3] = [0, 3, 0];

/// One remap target.
pub(crate) struct Remap {
    main: DmDev,
    spare: DmDev,
    features: Features,
    geometry: Geometry,
    /// Read by `map` under RCU; changed only by the holder of `writer`.
    table: RemapTable<KernelEnv>,
    /// The table's writer side, the spare pool and the metadata state;
    /// messages and `preresume` take the lock.
    writer: Pin<KBox<Mutex<Remaps<KernelEnv>>>>,
    /// Metadata I/O on the spare.
    io_client: IoClient,
    /// The mapped device's counters (`/sys/module/dm_remap/stat/dm-N/`).
    stats: Stats,
}

impl Remap {
    /// Counts a routed read or write (flushes and discards are not counted).
    #[cfg(not(dmr_no_stats))]
    #[inline]
    fn count(&self, bio: &Bio, to_spare: bool, bytes: u64) {
        if bio.is_read() {
            self.stats.add(Counter::Reads, 1);
            self.stats.add(Counter::ReadBytes, bytes);
            if to_spare {
                self.stats.add(Counter::RemappedReads, 1);
            }
        } else if bio.is_write() {
            self.stats.add(Counter::Writes, 1);
            self.stats.add(Counter::WriteBytes, bytes);
            if to_spare {
                self.stats.add(Counter::RemappedWrites, 1);
            }
        }
    }

    /// Publishes the writer's state to the sysfs gauges.
    fn update_gauges(&self, w: &Remaps<KernelEnv>) {
        self.stats.set(Gauge::Remaps, self.table.len());
        self.stats.set(Gauge::SpareUsed, w.spare_used());
        self.stats.set(Gauge::SpareTotal, w.slots());
        self.stats.set(Gauge::Buckets, self.table.buckets());
        self.stats.set(Gauge::Resizes, self.table.resizes());
    }

    fn spare_io(&self) -> SpareIo<'_> {
        SpareIo {
            client: &self.io_client,
            spare: &self.spare,
        }
    }
}

fn load_error(e: LoadError) -> CtrError {
    match e {
        LoadError::Refused(m) => CtrError::new(m, EINVAL),
        LoadError::Io => CtrError::new(c"Cannot read the spare's metadata area", EIO),
        LoadError::NoMemory => CtrError::new(c"Cannot allocate metadata buffers", ENOMEM),
    }
}

fn facts(dev: &DmDev) -> DeviceFacts {
    DeviceFacts {
        dev: dev.devt(),
        whole: dev.whole_devt(),
        sectors: dev.sectors(),
        logical_block_size: dev.logical_block_size(),
    }
}

fn log_event(dev: &str, ev: Event) {
    match ev {
        Event::Resizing { old, new, count } => dmr_info!(
            "{}: Adaptive hash table resize: {} -> {} buckets (count={})\n",
            dev,
            old,
            new,
            count
        ),
        Event::Resized { old, new } => dmr_info!(
            "{}: Hash table resize complete: {} -> {} buckets\n",
            dev,
            old,
            new
        ),
        Event::ResizeFailed { old, new } => dmr_err!(
            "{}: Hash table resize {} -> {} failed: out of memory; keeping {} buckets\n",
            dev,
            old,
            new,
            old
        ),
        Event::Loaded {
            copy,
            generation,
            remaps,
        } => dmr_info!(
            "{}: metadata loaded from copy {} (generation {}, {} remaps)\n",
            dev,
            copy,
            generation,
            remaps
        ),
        Event::Repaired { copy, defect } => {
            dmr_info!("{}: metadata copy {} repaired ({})\n", dev, copy, defect)
        }
        Event::Formatted { copies } => {
            dmr_info!("{}: spare formatted with {} metadata copies\n", dev, copies)
        }
    }
}

impl TargetOps for Remap {
    fn ctr(ctx: &mut CtrContext<'_>, args: &[&str]) -> Result<Self, CtrError> {
        let line = table_line::parse(args)?;
        let main = ctx
            .get_device(line.main)
            .map_err(|e| CtrError::new(c"Main device lookup failed", e))?;
        let spare = ctx
            .get_device(line.spare)
            .map_err(|e| CtrError::new(c"Spare device lookup failed", e))?;
        let geometry = geometry::validate(
            ctx.target().len(),
            &facts(&main),
            &facts(&spare),
            &line.features,
        )?;
        let io_client =
            IoClient::new().ok_or_else(|| CtrError::new(c"Cannot create dm-io client", ENOMEM))?;
        let pair = Identity {
            uuid: [0; 16],
            main_sectors: main.sectors(),
            spare_sectors: spare.sectors(),
            block_size: geometry.block_size,
        };
        let copies = line.features.copies.unwrap_or(DEFAULT_COPIES);
        let mut sio = SpareIo {
            client: &io_client,
            spare: &spare,
        };
        let layout =
            Remaps::<KernelEnv>::layout(&mut sio, &geometry, copies, io::crc32).map_err(load_error)?;
        check_spare::<KernelEnv>(
            &mut sio,
            &layout,
            &geometry,
            &pair,
            line.features.format,
            io::crc32,
        )
        .map_err(load_error)?;
        let (table, remaps) = Remaps::new(geometry, layout, pair, io::crc32)
            .ok_or_else(|| CtrError::new(c"Cannot allocate remap table", ENOMEM))?;
        let writer = KBox::pin_init(new_mutex!(remaps), GFP_KERNEL)
            .map_err(|_| CtrError::new(c"Cannot allocate remap table", ENOMEM))?;
        let stats = ctx
            .stats()
            .ok_or_else(|| CtrError::new(c"Cannot allocate statistics", ENOMEM))?;
        // One empty flush for each device; discards are split and routed like
        // writes, so one clone.
        ctx.set_num_flush_bios(2);
        ctx.set_num_discard_bios(1);
        dmr_info!(
            "{}: main {} spare {}: block size {}, {} spare blocks\n",
            ctx.target().device_name(),
            main.name(),
            spare.name(),
            geometry.block_size,
            geometry.spare_data_blocks
        );
        Ok(Remap {
            main,
            spare,
            features: line.features,
            geometry,
            table,
            writer,
            io_client,
            stats,
        })
    }

    fn map(&self, ti: &Target, bio: &mut Bio) -> MapResult {
        let size = bio.size();
        if size == 0 {
            if bio.is_preflush() {
                // Empty flush: clone 0 goes to main, clone 1 to the spare.
                let dev = if bio.target_bio_nr() == 1 {
                    &self.spare
                } else {
                    &self.main
                };
                bio.set_dev(dev);
                return MapResult::Remapped;
            }
            bio.set_dev(&self.main);
            bio.set_sector(ti.offset(bio.sector()));
            return MapResult::Remapped;
        }
        let offset = ti.offset(bio.sector());
        let (to_spare, bytes) = if self.table.is_empty() {
            bio.set_dev(&self.main);
            bio.set_sector(offset);
            (false, u64::from(size))
        } else {
            let sectors = u64::from(size >> 9);
            // One read-side section for the whole bio.
            let r = self
                .table
                .read(|t| remaps::route(&self.geometry, |b| t.lookup(b), offset, sectors));
            if r.len < sectors {
                // `r.len < sectors <= u32::MAX >> 9`, so the cast is lossless.
                bio.accept_partial(r.len as u32);
            }
            bio.set_dev(if r.to_spare { &self.spare } else { &self.main });
            bio.set_sector(r.sector);
            (r.to_spare, r.len << 9)
        };
        #[cfg(not(dmr_no_stats))]
        self.count(bio, to_spare, bytes);
        #[cfg(dmr_no_stats)]
        let _ = (to_spare, bytes);
        MapResult::Remapped
    }

    fn status(&self, _ti: &Target, kind: StatusKind, out: &mut Emitter<'_>) {
        // A result that does not fit is cut; device-mapper then retries with
        // a larger buffer, so the write error needs no handling here.
        let _ = match kind {
            StatusKind::Info => {
                let (loaded, spare_used, spare_total) = {
                    let w = self.writer.lock();
                    (w.loaded(), w.spare_used(), w.slots())
                };
                status::write_info(
                out,
                &Info {
                    state: if loaded { State::Ok } else { State::Inactive },
                    block_size: self.geometry.block_size,
                    remaps: self.table.len(),
                    spare_used,
                    spare_total,
                    buckets: self.table.buckets(),
                    resizes: self.table.resizes(),
                },
            )
            }
            StatusKind::Table => table_line::write_canonical(
                out,
                self.main.name(),
                self.spare.name(),
                &self.features,
            ),
            StatusKind::Ima => write!(
                out,
                "target_name=remap,target_version={}.{}.{},main_device_name={},\
                 spare_device_name={},block_size={};",
                VERSION[0],
                VERSION[1],
                VERSION[2],
                self.main.name(),
                self.spare.name(),
                self.geometry.block_size
            ),
        };
    }

    fn message(&self, ti: &Target, args: &[&str], out: &mut Emitter<'_>) -> Result {
        let dev = ti.device_name();
        let verb = args.first().copied().unwrap_or("");
        let msg = match message::parse(args) {
            Ok(m) => m,
            Err(r) => {
                dmr_err!("{}: {}: {}\n", dev, verb, r.as_str());
                return Err(EINVAL);
            }
        };
        let mut sio = self.spare_io();
        let mut w = self.writer.lock();
        let generation = w.generation();
        let r = w.handle(&self.table, &mut sio, msg, out, &mut |ev| log_event(dev, ev));
        self.stats
            .add(Counter::Commits, w.generation().saturating_sub(generation));
        self.update_gauges(&w);
        drop(w);
        r.map_err(|e| {
            dmr_err!("{}: {}: {}\n", dev, verb, e);
            match e {
                MsgError::NoMemory => ENOMEM,
                MsgError::PoolFull { .. } | MsgError::MetadataFull { .. } => ENOSPC,
                MsgError::Io => EIO,
                MsgError::NotLoaded => EBUSY,
                MsgError::Invalid(_) | MsgError::At(..) => EINVAL,
            }
        })
    }

    fn iterate_devices(&self, ti: &Target, visit: &mut DeviceVisitor<'_>) -> c_int {
        match visit.visit(&self.main, 0, ti.len()) {
            0 => visit.visit(&self.spare, 0, self.spare.sectors()),
            r => r,
        }
    }

    fn io_hints(&self, _ti: &Target, limits: &mut QueueLimits) {
        limits.raise_block_size(self.geometry.block_size);
    }

    fn end_io(&self, _ti: &Target, bio: &Bio, status: u8) {
        if status != 0 {
            let c = if bio.is_on(&self.spare) {
                Counter::SpareErrors
            } else {
                Counter::MainErrors
            };
            self.stats.add(c, 1);
        }
    }

    fn preresume(&self, ti: &Target) -> Result {
        let dev = ti.device_name();
        let mut w = self.writer.lock();
        if w.loaded() {
            return Ok(());
        }
        let mut sio = self.spare_io();
        let mut repairs = 0;
        let r = w.load(
            &self.table,
            &mut sio,
            self.features.format,
            io::random_uuid(),
            &mut |ev| {
                if matches!(ev, Event::Repaired { .. }) {
                    repairs += 1;
                }
                log_event(dev, ev)
            },
        );
        self.stats.add(Counter::Repairs, repairs);
        self.update_gauges(&w);
        r.map_err(|e| {
            let (why, err) = match e {
                LoadError::Refused(m) => (m.to_str().unwrap_or("refused"), EINVAL),
                LoadError::Io => ("metadata I/O failed", EIO),
                LoadError::NoMemory => ("out of memory", ENOMEM),
            };
            dmr_err!("{}: cannot load metadata: {}\n", dev, why);
            err
        })
    }
}
