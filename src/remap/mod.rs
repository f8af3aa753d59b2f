// SPDX-License-Identifier: GPL-2.0

//! The `remap` target: its state, the device-mapper hooks and the data path.
//!
//! The children hold what runs outside the data path, each in its own file,
//! and see this module's private fields:
//! - [`error_path`]: the worker's handling of failed bios and of writes to
//!   pending blocks (retry, remap, commit, publish);
//! - [`control`]: the messages about error handling and the scanner;
//! - [`scanner`]: the background scanner's steps;
//! - [`migrate`]: the move to the `migrate_to` spare on resume.
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

use crate::dm::bio::{Bio, Record, Stage};
use crate::dm::device::{self, DmDev};
use crate::dm::io::{self, IoClient, SpareIo};
use crate::dm::log::{dmr_err, dmr_info};
use crate::dm::rcu::KernelEnv;
use crate::dm::stats::Stats;
use crate::dm::target::{
    errno, CtrContext, CtrError, DeviceVisitor, EndIo, MapResult, QueueLimits, SpareClaim,
    StatusKind, Target, TargetOps,
};
use crate::dm::worker::{self, BlkStatus, OwnedBio, Worker, WorkerOps};
use crate::logic::emit::Emitter;
use crate::logic::format::{Identity, DEFAULT_COPIES, DEFAULT_MAX_SLOTS, PENDING_ROOM};
use crate::logic::geometry::{self, DevNumbers, DeviceFacts, Geometry};
use crate::logic::mem::RawArray;
use crate::logic::message::{self, ControlMsg, Message, MsgError, RemapMsg, ScanCmd};
use crate::logic::pending::PendingSet;
use crate::logic::policy::Policy;
use crate::logic::remaps::{self, check_spare, Event, LayoutRequest, LoadError, Remaps};
use crate::logic::routing;
use crate::logic::stats::Counter;
use crate::logic::status::{self, Info, ScanState, SpareLevel, State};
use crate::logic::table::{RemapTable, TableError};
use crate::logic::table_line::{self, Features};
use crate::logic::Refusal;
use core::fmt::Write;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use kernel::ffi::c_int;
use kernel::new_mutex;
use kernel::prelude::*;
use kernel::sync::Mutex;

mod control;
mod error_path;
mod migrate;
mod scanner;

/// The target type's name in table lines.
pub(crate) const NAME: &core::ffi::CStr = c"remap";
/// The target type's version, as `dmsetup targets` shows it.
pub(crate) const VERSION: [u32; 3] = [0, 4, 0];

/// The scanner's state.
struct Scan {
    /// Started (and not stopped).
    running: bool,
    /// Next main block to read.
    position: u64,
    /// Full passes completed.
    passes: u64,
    /// Bad blocks found (made pending).
    found: u64,
    /// When the last pass completed (ms since boot).
    last_pass_ms: Option<u64>,
    /// When the next step is due (ms since boot), to keep the average rate.
    due_ms: u64,
    /// Read buffer of `scan_chunk` bytes, while running.
    buf: Option<RawArray<u8, KernelEnv>>,
}

/// Everything behind the target's lock: the table's writer side, the spare
/// pool, the metadata state, the policy and the scanner.
struct Core {
    remaps: Remaps<KernelEnv>,
    policy: Policy,
    /// One block, for the error path's copies. The worker takes it out
    /// while it handles a bio (it reads and writes without the lock).
    buf: Option<RawArray<u8, KernelEnv>>,
    scan: Scan,
    /// Between `postsuspend` and `resume`.
    suspended: bool,
    /// Resumes so far: an `add_remaps carry` that copied without the lock
    /// tells by it that I/O may have run meanwhile.
    resumes: u64,
    /// An `add_remaps carry` copies without the lock; messages that change
    /// anything are refused meanwhile.
    carrying: bool,
    /// The move's progress while the remaps move to the `migrate_to`
    /// spare; messages that change anything are refused meanwhile.
    migration: Option<migrate::Migration>,
    /// Automatic remaps since the target was created (`error_threshold`).
    auto_remaps: u64,
    /// The spare level last reported in the log.
    reported: SpareLevel,
    /// The metadata generation the `metadata_commits` counter has counted
    /// up to.
    counted: u64,
    /// What the last device-mapper event (or the load) showed: the
    /// metadata generation, fail mode and the spare level. `None` until
    /// the metadata is loaded.
    evented: Option<(u64, bool, SpareLevel)>,
}

/// One remap target.
pub(crate) struct Remap {
    /// First field: dropped (flushed and destroyed) before the rest.
    worker: Worker,
    main: DmDev,
    spare: DmDev,
    features: Features,
    geometry: Geometry,
    /// Read by `map` under RCU; changed only by the holder of `core`.
    table: RemapTable<KernelEnv>,
    /// Main blocks whose next write goes to the spare; changed only by the
    /// holder of `core`.
    pending: PendingSet<KernelEnv>,
    /// Fail mode: a metadata commit failed; writes are refused.
    fail: AtomicBool,
    /// The policy's `auto_remap`, for `end_io`.
    auto_remap: AtomicBool,
    /// The scanner runs; `map` then notes foreground I/O in `busy`.
    scanning: AtomicBool,
    /// Foreground I/O happened since the scanner's last step.
    busy: AtomicBool,
    /// The main block the worker is writing (plus one; 0: none). `map`
    /// holds writes to it back for the worker, so none lands where the
    /// worker may have read the block from before it moves.
    relocating: AtomicU64,
    /// Counts the worker's writes (bumped after `relocating` is set). A
    /// write `map` issued under an older count may have landed where its
    /// block was moved away from: `end_io` checks it against the table.
    relocations: AtomicU64,
    /// Set from `postsuspend` until `resume`: a scanner step in flight
    /// ends after its current read.
    halt: AtomicBool,
    /// Messages, `preresume`, the worker and the scanner take the lock.
    core: Pin<KBox<Mutex<Core>>>,
    /// Metadata and error-path I/O.
    io_client: IoClient,
    /// The mapped device's counters (`/sys/module/dm_remap/stat/dm-N/`).
    stats: Stats,
    /// The spare is ours (no other remap target's).
    _claim: SpareClaim,
    /// `migrate_to`: the spare the remaps move to on resume.
    new_spare: Option<NewSpare>,
    /// The remaps live on `new_spare` now: `map` and the error path use it.
    on_new: AtomicBool,
    /// A move to `new_spare` copies: `map` sends writes to remapped blocks
    /// to the worker, which writes them to both spares once copied.
    copying: AtomicBool,
    /// The old spare's pool sectors below this one are copied.
    copy_cursor: AtomicU64,
    /// A write of the worker's to the new spare failed: the move stops.
    copy_failed: AtomicBool,
}

/// The spare a table line's `migrate_to` names.
struct NewSpare {
    dev: DmDev,
    /// The geometry over it (the pool starts where the old spare's does).
    geometry: Geometry,
    _claim: SpareClaim,
}

impl Remap {
    /// Counts a routed read or write (flushes and discards are not counted).
    #[cfg(not(dmr_no_stats))]
    #[inline]
    fn count(&self, bio: &Bio, to_spare: bool, bytes: u64) {
        if bio.is_read() {
            let remapped = to_spare.then_some(Counter::RemappedReads);
            self.stats.add_io(Counter::Reads, Counter::ReadBytes, remapped, bytes);
        } else if bio.is_write() {
            let remapped = to_spare.then_some(Counter::RemappedWrites);
            self.stats.add_io(Counter::Writes, Counter::WriteBytes, remapped, bytes);
        }
    }

    /// Publishes the state to sysfs, at the end of every section under the
    /// lock: the gauges, and the commits made since the last call (every
    /// commit, successful or not, advances the generation by one). Raises
    /// a device-mapper event when the section changed what monitoring
    /// watches: any metadata commit (remaps added, moved or removed, a
    /// block pending or healed, a spare block retired), fail mode starting
    /// or ending, the spare pool crossing `spare_low` or running out.
    fn update_stats(&self, c: &mut Core) {
        let generation = c.remaps.generation();
        self.stats
            .add(Counter::Commits, generation.saturating_sub(c.counted));
        c.counted = generation;
        let info = self.info(c);
        self.stats.set_gauges(&info.gauges());
        if c.remaps.loaded() {
            let now = (generation, self.fail.load(Ordering::Relaxed), info.spare);
            if c.evented.is_some_and(|e| e != now) {
                self.worker.event();
            }
            c.evented = Some(now);
        }
    }

    /// The state `status` reports and the gauges publish.
    fn info(&self, c: &Core) -> Info {
        let w = &c.remaps;
        let free = w.free_slots();
        Info {
            state: if !w.loaded() {
                State::Inactive
            } else if self.fail.load(Ordering::Relaxed) {
                State::Fail
            } else {
                State::Ok
            },
            block_size: self.geometry.block_size,
            remaps: self.table.len(),
            spare_used: w.spare_used(),
            spare_total: w.slots(),
            buckets: self.table.capacity(),
            resizes: w.resizes(),
            pending: w.pending().len() as u64,
            retired: w.retired(),
            spare: SpareLevel::of(free, w.slots(), c.policy.spare_low),
            auto_remap: c.policy.auto_remap,
            scan: scan_state(c),
            scan_position: c.scan.position * self.geometry.block_sectors,
            scan_passes: c.scan.passes,
            spare_free: free,
            scan_found: c.scan.found,
        }
    }

    /// Whether a block of a bio (at `origin`, of `size` bytes, as `map`
    /// recorded it) is the one the worker is writing, or is remapped now.
    fn moved_under(&self, origin: u64, size: u32) -> bool {
        let sectors = u64::from(size >> 9);
        if sectors == 0 {
            return false;
        }
        let first = self.block_of(origin);
        let last = self.block_of(origin + sectors - 1);
        let busy = self.relocating.load(Ordering::SeqCst);
        if busy != 0 && (first..=last).contains(&(busy - 1)) {
            return true;
        }
        !self.table.is_empty() && self.table.read(|t| (first..=last).any(|b| t.lookup(b).is_some()))
    }

    /// The spare the remaps live on.
    fn spare(&self) -> &DmDev {
        match &self.new_spare {
            Some(n) if self.on_new.load(Ordering::Acquire) => &n.dev,
            _ => &self.spare,
        }
    }

    fn spare_io(&self) -> SpareIo<'_> {
        SpareIo {
            client: &self.io_client,
            spare: self.spare(),
        }
    }

    fn bs_bytes(&self) -> usize {
        self.geometry.block_size as usize
    }

    /// The block holding main sector `sector`.
    fn block_of(&self, sector: u64) -> u64 {
        sector.checked_div(self.geometry.block_sectors).unwrap_or(0)
    }

    /// Enters fail mode (once).
    fn enter_fail(&self, dev: &str) {
        if !self.fail.swap(true, Ordering::AcqRel) {
            dmr_err!(
                "{}: metadata commit failed: fail mode, writes are refused until 'clear_fail'\n",
                dev
            );
            // Also here: a section may end without publishing its state
            // (a scanner step that finds its scan stopped).
            self.worker.event();
        }
    }

    /// Logs a change of the spare pool's level (once per change).
    fn report_spare(&self, dev: &str, c: &mut Core) {
        let (free, total) = (c.remaps.free_slots(), c.remaps.slots());
        let level = SpareLevel::of(free, total, c.policy.spare_low);
        if level == c.reported {
            return;
        }
        c.reported = level;
        match level {
            SpareLevel::Low => dmr_info!(
                "{}: spare pool low: {} of {} blocks free\n",
                dev,
                free,
                total
            ),
            SpareLevel::Exhausted => dmr_err!("{}: spare pool exhausted\n", dev),
            SpareLevel::Ok => {}
        }
    }
}

fn load_error(e: LoadError) -> CtrError {
    match e {
        LoadError::Refused(m) => CtrError::new(m, EINVAL),
        LoadError::Io => CtrError::new(c"Cannot read the spare's metadata area", EIO),
        LoadError::Write => CtrError::new(c"Cannot write the spare's metadata area", EIO),
        LoadError::NoMemory => CtrError::new(c"Cannot allocate metadata buffers", ENOMEM),
        LoadError::Newer(v) => {
            dmr_err!("spare metadata is format version {}; this module reads 2 and 3\n", v);
            CtrError::new(remaps::NEWER_VERSION, EINVAL)
        }
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

/// `ti->error` for a device `path` that `get_device` could not open with
/// `e`: `msg`, unless the kernel refused it (`EBUSY`) because it overlaps a
/// device the table holds, which `check` names.
fn lookup_error(
    path: &str,
    e: Error,
    msg: &'static core::ffi::CStr,
    check: impl FnOnce(DevNumbers) -> Result<(), Refusal>,
) -> CtrError {
    if e == EBUSY {
        if let Ok(Err(r)) = device::path_numbers(path).map(check) {
            return r.into();
        }
    }
    CtrError::new(msg, e)
}

/// `ti->error` for a spare (or `migrate_to` device) that `claim_spare`
/// could not claim with `e`: `busy` when another remap target has it.
fn claim_error(e: Error, busy: &'static core::ffi::CStr) -> CtrError {
    if e == EBUSY {
        CtrError::new(busy, e)
    } else {
        CtrError::new(c"Cannot allocate spare claim", e)
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
        Event::MainGrown { from, to } => dmr_info!(
            "{}: main grew from {} to {} sectors: metadata updated\n",
            dev,
            from,
            to
        ),
        Event::SpareGrown {
            from,
            to,
            pool_from,
            pool_to,
        } if pool_to > pool_from => dmr_info!(
            "{}: spare grew from {} to {} sectors: metadata updated; pool {} -> {} blocks\n",
            dev,
            from,
            to,
            pool_from,
            pool_to
        ),
        Event::SpareGrown {
            from,
            to,
            pool_from,
            ..
        } => dmr_info!(
            "{}: spare grew from {} to {} sectors: metadata updated; the pool keeps its {} blocks (no room in the metadata for more)\n",
            dev,
            from,
            to,
            pool_from
        ),
        Event::Formatted { copies } => {
            dmr_info!("{}: spare formatted with {} metadata copies\n", dev, copies)
        }
    }
}

impl TargetOps for Remap {
    fn ctr(ctx: &mut CtrContext<'_, Self>, args: &[&str]) -> Result<Self, CtrError> {
        let line = table_line::parse(args)?;
        let main = ctx
            .get_device(line.main)
            .map_err(|e| CtrError::new(c"Main device lookup failed", e))?;
        let main_no = facts(&main).numbers();
        let spare = ctx.get_device(line.spare).map_err(|e| {
            lookup_error(line.spare, e, c"Spare device lookup failed", |s| {
                geometry::check_apart(main_no, s)
            })
        })?;
        let claim = ctx
            .claim_spare(&spare)
            .map_err(|e| claim_error(e, c"Spare device is in use by another remap target"))?;
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
        let req = LayoutRequest {
            copies: line.features.copies.unwrap_or(DEFAULT_COPIES),
            max_slots: line.features.metadata_slots.unwrap_or(DEFAULT_MAX_SLOTS),
            format: line.features.format,
        };
        let mut sio = SpareIo {
            client: &io_client,
            spare: &spare,
        };
        let (layout, decision) =
            check_spare::<KernelEnv>(&mut sio, &geometry, &pair, &req, io::crc32)
                .map_err(load_error)?;
        // The pool starts where the spare's metadata layout puts it.
        let geometry = geometry.with_pool(layout.pool_start, spare.sectors());
        let new_spare = match line.migrate_to {
            Some(path) => Some(migrate::new_spare(
                ctx,
                path,
                &main,
                &spare,
                &line.features,
                &layout,
                decision,
                &io_client,
            )?),
            None => None,
        };
        let (table, remaps) =
            Remaps::new(geometry, layout, pair, io::crc32).map_err(|e| match e {
                TableError::TooWide => CtrError::new(
                    c"Main device too large for this block_size: use a larger block_size",
                    EINVAL,
                ),
                _ => CtrError::new(c"Cannot allocate remap table", ENOMEM),
            })?;
        line.features
            .policy
            .check(geometry.block_size)
            .map_err(CtrError::from)?;
        let buf = RawArray::new(geometry.block_size as usize)
            .ok_or_else(|| CtrError::new(c"Cannot allocate error-path buffer", ENOMEM))?;
        let pending = PendingSet::new(PENDING_ROOM)
            .ok_or_else(|| CtrError::new(c"Cannot allocate pending list", ENOMEM))?;
        let core = Core {
            remaps,
            policy: line.features.policy,
            buf: Some(buf),
            scan: Scan {
                running: false,
                position: 0,
                passes: 0,
                found: 0,
                last_pass_ms: None,
                due_ms: 0,
                buf: None,
            },
            suspended: true,
            resumes: 0,
            carrying: false,
            migration: None,
            auto_remaps: 0,
            reported: SpareLevel::Ok,
            counted: 0,
            evented: None,
        };
        let core = KBox::pin_init(new_mutex!(core), GFP_KERNEL)
            .map_err(|_| CtrError::new(c"Cannot allocate remap table", ENOMEM))?;
        let stats = ctx
            .stats()
            .ok_or_else(|| CtrError::new(c"Cannot allocate statistics", ENOMEM))?;
        // One empty flush for each device; discards are split and routed like
        // writes, so one clone.
        ctx.set_num_flush_bios(2);
        ctx.set_num_discard_bios(1);
        ctx.reserve_bio_data();
        let worker = ctx
            .worker()
            .ok_or_else(|| CtrError::new(c"Cannot create workqueue", ENOMEM))?;
        dmr_info!(
            "{}: main {} spare {}: block size {}, {} spare blocks\n",
            ctx.target().device_name(),
            main.name(),
            spare.name(),
            geometry.block_size,
            geometry.spare_data_blocks
        );
        Ok(Remap {
            worker,
            main,
            spare,
            auto_remap: AtomicBool::new(line.features.policy.auto_remap),
            features: line.features,
            geometry,
            table,
            pending,
            fail: AtomicBool::new(false),
            scanning: AtomicBool::new(false),
            busy: AtomicBool::new(false),
            relocating: AtomicU64::new(0),
            relocations: AtomicU64::new(0),
            halt: AtomicBool::new(false),
            core,
            io_client,
            stats,
            _claim: claim,
            new_spare,
            on_new: AtomicBool::new(false),
            copying: AtomicBool::new(false),
            copy_cursor: AtomicU64::new(0),
            copy_failed: AtomicBool::new(false),
        })
    }

    fn map(&self, ti: &Target, bio: &mut Bio) -> MapResult {
        // Before routing: see `relocations`.
        let epoch = self.relocations.load(Ordering::SeqCst);
        let size = bio.size();
        if size == 0 {
            // An empty flush: clone 0 goes to main, clone 1 to the spare.
            // Other empty bios go to main. Their errors go to the caller as
            // they are (device-mapper does not zero the per-bio data, so
            // `end_io` must be told).
            let flush = bio.is_preflush();
            let on_spare = flush && bio.target_bio_nr() == 1;
            bio.set_dev(if on_spare { self.spare() } else { &self.main });
            if !flush {
                bio.set_sector(ti.offset(bio.sector()));
            }
            bio.record(Record {
                origin: 0,
                epoch,
                stage: Stage::Mapped,
                on_spare,
                pass: true,
            });
            return MapResult::Remapped;
        }
        if !bio.is_read() && self.fail.load(Ordering::Relaxed) {
            // Fail mode: nothing that changes data is accepted.
            return MapResult::Kill;
        }
        if self.scanning.load(Ordering::Relaxed) && !self.busy.load(Ordering::Relaxed) {
            self.busy.store(true, Ordering::Relaxed);
        }
        let offset = ti.offset(bio.sector());
        let sectors = u64::from(size >> 9);
        let r = if self.table.is_empty() {
            routing::Route {
                to_spare: false,
                sector: offset,
                len: sectors,
            }
        } else {
            // One read-side section for the whole bio.
            self.table
                .read(|t| routing::route(&self.geometry, |b| t.lookup(b), offset, sectors))
        };
        let mut len = r.len;
        let mut deferred = false;
        if bio.is_write() {
            // A write to a pending block goes to the spare through the
            // worker (to a new spare block, or to the one whose read failed,
            // which then stops being pending), and so does one to the block
            // the worker is writing; the blocks before it go where they go
            // as usual.
            let (first, n) = routing::blocks_of(&self.geometry, offset, len);
            let mut held = None;
            if !self.pending.is_empty() && self.auto_remap.load(Ordering::Relaxed) {
                held = self.pending.first_in(first, n);
            }
            let busy = self.relocating.load(Ordering::SeqCst);
            if busy != 0 && (first..first + n).contains(&(busy - 1)) {
                held = Some(held.map_or(busy - 1, |p| p.min(busy - 1)));
            }
            if r.to_spare && self.copying.load(Ordering::Acquire) {
                // A move copies the spare: the worker writes both.
                held = Some(first);
            }
            let h = routing::hold(&self.geometry, offset, len, held);
            len = h.len;
            deferred = h.deferred;
        }
        if len < sectors {
            // `len < sectors <= u32::MAX >> 9`, so the cast is lossless.
            bio.accept_partial(len as u32);
        }
        bio.set_dev(if r.to_spare { self.spare() } else { &self.main });
        bio.set_sector(r.sector);
        bio.record(Record {
            origin: offset,
            epoch,
            stage: if deferred {
                Stage::Deferred
            } else {
                Stage::Mapped
            },
            on_spare: r.to_spare,
            pass: false,
        });
        #[cfg(not(dmr_no_stats))]
        self.count(bio, r.to_spare, len << 9);
        if deferred {
            self.worker.queue(bio);
            return MapResult::Submitted;
        }
        MapResult::Remapped
    }

    fn status(&self, _ti: &Target, kind: StatusKind, out: &mut Emitter<'_>) {
        // A result that does not fit is cut; device-mapper then retries with
        // a larger buffer, so the write error needs no handling here.
        let _ = match kind {
            StatusKind::Info => {
                let info = self.info(&self.core.lock());
                status::write_info(out, &info)
            }
            // Once moved, the line that serves the device as it is now.
            StatusKind::Table => table_line::write_canonical(
                out,
                self.main.name(),
                self.spare().name(),
                &self.features,
                match &self.new_spare {
                    Some(n) if !self.on_new.load(Ordering::Acquire) => Some(n.dev.name()),
                    _ => None,
                },
            ),
            StatusKind::Ima => write!(
                out,
                "target_name=remap,target_version={}.{}.{},main_device_name={},\
                 spare_device_name={},block_size={};",
                VERSION[0],
                VERSION[1],
                VERSION[2],
                self.main.name(),
                self.spare().name(),
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
        let mut c = self.core.lock();
        let r = match msg {
            _ if c.migration.is_some() && !msg.reads_only() => Err(MsgError::Migrating),
            _ if c.carrying && !msg.reads_only() => Err(MsgError::Carrying),
            Message::Control(m) => self.control(ti, &mut c, m, out),
            Message::Remaps(m) if m.changes_remaps() && self.fail.load(Ordering::Relaxed) => {
                Err(MsgError::FailMode)
            }
            Message::Remaps(RemapMsg::AddList { carry: true, items }) if c.suspended => {
                // Its copy runs without the lock.
                drop(c);
                let r = self.add_carried(dev, &mut sio, items, out);
                c = self.core.lock();
                r
            }
            Message::Remaps(RemapMsg::AddList { carry: true, .. }) => Err(MsgError::NotSuspended),
            Message::Remaps(m) => {
                let r = c
                    .remaps
                    .handle(&self.table, &mut sio, m, out, &mut |ev| log_event(dev, ev));
                // A failed commit, or one kept with copies missing it.
                let degraded = c.remaps.take_degraded();
                if degraded || matches!(r, Err(MsgError::Io)) {
                    self.enter_fail(dev);
                }
                r
            }
        };
        self.update_stats(&mut c);
        // Not when refused: the delayed work may be a move's next step.
        let stop_scan = r.is_ok() && msg == Message::Control(ControlMsg::Scan(ScanCmd::Stop));
        drop(c);
        if stop_scan {
            // Outside the lock: a running step takes it.
            self.worker.scan_cancel();
            let mut c = self.core.lock();
            if !c.scan.running {
                c.scan.buf = None;
            } else if !c.suspended {
                // A `scan start` came in between and queued a step, which
                // the cancel may have taken away: queue it again.
                self.worker.scan_after(0);
            }
        }
        r.map_err(|e| {
            dmr_err!("{}: {}: {}\n", dev, verb, e);
            errno(e.errno())
        })
    }

    fn iterate_devices(&self, ti: &Target, visit: &mut DeviceVisitor<'_>) -> c_int {
        // The spare's area is what the target uses of it: the metadata area
        // and the whole blocks of the pool, not a tail shorter than a block
        // (device-mapper checks the area against the queue limits).
        let used = |g: &Geometry| g.spare_data_start + g.spare_data_blocks * g.block_sectors;
        let r = match visit.visit(&self.main, 0, ti.len()) {
            0 => visit.visit(&self.spare, 0, used(&self.geometry)),
            r => r,
        };
        match &self.new_spare {
            Some(n) if r == 0 => visit.visit(&n.dev, 0, used(&n.geometry)),
            _ => r,
        }
    }

    fn io_hints(&self, _ti: &Target, limits: &mut QueueLimits) {
        limits.prefer_block_size(self.geometry.block_size, kernel::page::PAGE_SIZE as u32);
    }

    fn end_io(&self, _ti: &Target, bio: &mut Bio, status: BlkStatus) -> EndIo {
        if status.is_ok() {
            // The usual case costs one look at the record and a comparison
            // of the worker's write count (a read not even that).
            if bio.is_write() {
                let (rec, size) = bio.recorded();
                if rec.epoch != self.relocations.load(Ordering::SeqCst)
                    && !rec.pass
                    && !rec.stage.with_worker()
                    && self.moved_under(rec.origin, size)
                {
                    // Written where the worker has moved (or is moving) a
                    // block of it away from: write it again where the table
                    // says, before it is acknowledged.
                    bio.set_stage(Stage::Redo);
                    self.worker.queue(bio);
                    return EndIo::Incomplete;
                }
            }
            return EndIo::Done;
        }
        let (rec, _) = bio.recorded();
        if rec.stage.with_worker() {
            // Completed by the worker, which counted the error.
            return EndIo::Done;
        }
        let c = if rec.on_spare {
            Counter::SpareErrors
        } else {
            Counter::MainErrors
        };
        self.stats.add(c, 1);
        if rec.pass
            || !status.is_media_error()
            || !(bio.is_read() || bio.is_write())
            || !self.auto_remap.load(Ordering::Relaxed)
        {
            return EndIo::Done;
        }
        // Retry from the worker (process context), from where `map` saw it.
        bio.set_stage(Stage::Failed);
        self.worker.queue(bio);
        EndIo::Incomplete
    }

    fn postsuspend(&self, _ti: &Target) {
        // First, without the lock: a scanner step reading a slow disk
        // ends after its current read, and then waits for nothing here.
        self.halt.store(true, Ordering::Relaxed);
        self.core.lock().suspended = true;
        self.worker.scan_cancel();
    }

    fn resume(&self, _ti: &Target) {
        let mut c = self.core.lock();
        self.halt.store(false, Ordering::Relaxed);
        c.suspended = false;
        c.resumes += 1;
        if c.scan.running {
            c.scan.due_ms = worker::now_ms();
            self.worker.scan_after(0);
        }
        if c.migration.is_some() {
            self.worker.scan_after(0);
        }
    }

    fn preresume(&self, ti: &Target) -> Result {
        let dev = ti.device_name();
        let mut c = self.core.lock();
        if c.remaps.loaded() {
            return Ok(());
        }
        let mut sio = self.spare_io();
        let mut repairs = 0;
        let w = &mut c.remaps;
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
        self.pending.set(c.remaps.pending());
        self.report_spare(dev, &mut c);
        // Loading is not a commit.
        c.counted = c.remaps.generation();
        self.update_stats(&mut c);
        if let (Ok(()), Some(n)) = (&r, &self.new_spare) {
            self.start_migration(dev, &mut c, n);
        }
        r.map_err(|e| {
            let (why, err) = match e {
                LoadError::Refused(m) => (m.to_str().unwrap_or("refused"), EINVAL),
                LoadError::Io | LoadError::Write => ("metadata I/O failed", EIO),
                LoadError::NoMemory => ("out of memory", ENOMEM),
                LoadError::Newer(_) => ("newer format version", EINVAL),
            };
            dmr_err!("{}: cannot load metadata: {}\n", dev, why);
            err
        })
    }
}

/// The scanner's state as status reports it.
fn scan_state(c: &Core) -> ScanState {
    if !c.scan.running {
        ScanState::Idle
    } else if c.suspended {
        ScanState::Paused
    } else {
        ScanState::Running
    }
}

impl WorkerOps for Remap {
    fn worker(&self) -> &Worker {
        &self.worker
    }

    fn handle_bio(&self, ti: &Target, bio: OwnedBio) {
        self.finish_bio(ti, bio);
    }

    fn scan_step(&self, ti: &Target) {
        // A move's copy takes the scanner's place (`scan start` is refused
        // while it runs).
        if self.copying.load(Ordering::Acquire) {
            self.migrate_step(ti);
        } else {
            self.scan_next(ti);
        }
    }
}
