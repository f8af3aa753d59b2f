// SPDX-License-Identifier: GPL-2.0

//! Per-device statistics: safe handles over `src/stats.c`, and the callback
//! through which its sysfs files are formatted by `logic::stats`.

use super::bindings as b;
use crate::logic::emit::Emitter;
use crate::logic::stats::{self, Counter, Snapshot, COUNTERS, GAUGES};
use core::ptr::NonNull;
use kernel::error::to_result;
use kernel::ffi::{c_char, c_uint, c_void};
use kernel::prelude::*;

/// The `/sys/module/dm_remap/stat` tree; removed on drop.
pub(crate) struct StatsTree(());

impl StatsTree {
    /// Creates `stat/` and `stat/all_devs/`.
    pub(crate) fn new() -> Result<Self> {
        // SAFETY: Called once, from module init (process context).
        to_result(unsafe { b::dmr_stats_init() })?;
        Ok(Self(()))
    }
}

impl Drop for StatsTree {
    fn drop(&mut self) {
        // SAFETY: Created in `new`; every device's statistics are gone by now
        // (the target type is unregistered first, so no table remains).
        unsafe { b::dmr_stats_exit() }
    }
}

/// A reference to one mapped device's statistics; dropped with the table.
pub(crate) struct Stats(NonNull<c_void>);

// SAFETY: The statistics object is shared by the tables of a device; adding
// is per CPU and setting is atomic, so any thread may use it.
unsafe impl Send for Stats {}
// SAFETY: See `Send`.
unsafe impl Sync for Stats {}

impl Stats {
    /// Takes a reference to the statistics of `ti`'s mapped device, creating
    /// its sysfs directory if this is its first table.
    ///
    /// # Safety
    ///
    /// `ti` must be a valid target under construction.
    pub(crate) unsafe fn get(ti: *mut b::dm_target) -> Option<Self> {
        // SAFETY: Guaranteed by the caller; process context.
        NonNull::new(unsafe { b::dmr_stats_get(ti) }).map(Self)
    }

    /// Adds `v` to a counter. Cheap: no lock, no shared cache line.
    #[inline]
    pub(crate) fn add(&self, c: Counter, v: u64) {
        // SAFETY: A live reference from `dmr_stats_get`; the counter id is
        // one of the enum's.
        unsafe { b::dmr_stats_add(self.0.as_ptr(), c as c_uint, v) }
    }

    /// Counts one routed request of `bytes` bytes: adds 1 to `ops` and to
    /// `remapped` (if any), `bytes` to `bytes_counter`. One call for what
    /// `map` counts per bio.
    #[inline]
    pub(crate) fn add_io(
        &self,
        ops: Counter,
        bytes_counter: Counter,
        remapped: Option<Counter>,
        bytes: u64,
    ) {
        let remapped = remapped.map_or(c_uint::MAX, |c| c as c_uint);
        // SAFETY: As for `add`; the C side ignores ids out of range (the
        // `None` above).
        unsafe {
            b::dmr_stats_add_io(
                self.0.as_ptr(),
                ops as c_uint,
                bytes_counter as c_uint,
                remapped,
                bytes,
            )
        }
    }

    /// Sets every gauge, indexed by `logic::stats::Gauge`.
    pub(crate) fn set_gauges(&self, values: &[u64; GAUGES]) {
        // SAFETY: As for `add`; `values` holds the `DMR_NR_GAUGES` values
        // the C side reads (checked below).
        unsafe { b::dmr_stats_set_gauges(self.0.as_ptr(), values.as_ptr()) }
    }
}

impl Drop for Stats {
    fn drop(&mut self) {
        // SAFETY: The reference taken in `get`, given back once.
        unsafe { b::dmr_stats_put(self.0.as_ptr()) }
    }
}

/// Formats sysfs file `attr` from a snapshot into `buf` (`len` bytes);
/// returns the length written. Called by `src/stats.c`.
///
/// # Safety
///
/// `counters` and `gauges` point to `COUNTERS` and `GAUGES` values and `buf`
/// to `len` writable bytes.
#[no_mangle]
pub(crate) unsafe extern "C" fn dmr_stats_format(
    attr: c_uint,
    counters: *const u64,
    gauges: *const u64,
    buf: *mut c_char,
    len: usize,
) -> isize {
    let mut s = Snapshot::default();
    // SAFETY: Valid for COUNTERS and GAUGES values (caller).
    unsafe {
        s.c.copy_from_slice(core::slice::from_raw_parts(counters, COUNTERS));
        s.g.copy_from_slice(core::slice::from_raw_parts(gauges, GAUGES));
    }
    // SAFETY: `buf` is valid for `len` bytes (caller).
    let mut out = Emitter::new(unsafe { core::slice::from_raw_parts_mut(buf.cast::<u8>(), len) });
    match stats::render(attr, &s, &mut out) {
        Ok(()) => out.len() as isize,
        Err(_) => EINVAL.to_errno() as isize,
    }
}

/// The name of statistics file `attr` (a static NUL-terminated string), or
/// null past the last: `src/stats.c` names its sysfs attributes with it.
#[no_mangle]
pub(crate) extern "C" fn dmr_stats_file_name(attr: c_uint) -> *const c_char {
    stats::FILES
        .get(attr as usize)
        .map_or(core::ptr::null(), |f| super::compat::static_chars(f.name))
}

// The C side sizes its arrays by these; `logic::stats` declares them.
const _: () = assert!(b::DMR_NR_COUNTERS as usize == COUNTERS);
const _: () = assert!(b::DMR_NR_GAUGES as usize == GAUGES);
const _: () = assert!(b::DMR_NR_FILES as usize == stats::FILES.len());
