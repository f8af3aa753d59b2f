// SPDX-License-Identifier: GPL-2.0

//! Registering a device-mapper target type, and the trampolines from
//! device-mapper's C callbacks to a [`TargetOps`] implementation.

use super::bindings as b;
use super::bio::Bio;
use super::compat;
use super::device::DmDev;
use super::worker::{BlkStatus, Worker, WorkerOps};
use crate::logic::emit::Emitter;
use crate::logic::message::Errno;
use crate::logic::Refusal;
use core::marker::PhantomData;
use core::ptr::NonNull;
use kernel::error::to_result;
use kernel::ffi::{c_char, c_int, c_uint, c_void};
use kernel::prelude::*;
use kernel::types::Opaque;

/// What `map` did with a bio.
pub(crate) enum MapResult {
    /// The bio was re-addressed; device-mapper submits it.
    Remapped,
    /// The target took the bio and will complete it itself.
    Submitted,
    /// Fail the bio with an I/O error.
    Kill,
}

/// What `end_io` did with a completed bio.
pub(crate) enum EndIo {
    /// Complete it with its status.
    Done,
    /// The target took it over and completes it later (`OwnedBio`).
    Incomplete,
}

/// Which status device-mapper asks for.
pub(crate) enum StatusKind {
    /// `dmsetup status`.
    Info,
    /// `dmsetup table`: the canonical constructor arguments.
    Table,
    /// The IMA measurement record.
    Ima,
}

/// A constructor failure: the text for `ti->error` and the errno.
pub(crate) struct CtrError {
    msg: &'static core::ffi::CStr,
    err: Error,
}

impl CtrError {
    /// A failure with this message and errno.
    pub(crate) fn new(msg: &'static core::ffi::CStr, err: Error) -> Self {
        Self { msg, err }
    }
}

impl From<Refusal> for CtrError {
    fn from(r: Refusal) -> Self {
        Self::new(r.msg, EINVAL)
    }
}

/// The hooks of a device-mapper target, called by the trampolines below.
///
/// The target value is the private data of one `struct dm_target`. All hooks
/// but the constructor take `&self`: device-mapper calls `map` on many CPUs at
/// once, so shared state needs interior mutability.
pub(crate) trait TargetOps: Sized + Send + Sync {
    /// Builds a target from its table line (the arguments after the name).
    fn ctr(ctx: &mut CtrContext<'_, Self>, args: &[&str]) -> Result<Self, CtrError>;
    /// Routes a bio. Runs in the submitter's context: must not sleep.
    fn map(&self, ti: &Target, bio: &mut Bio) -> MapResult;
    /// Writes a status line.
    fn status(&self, ti: &Target, kind: StatusKind, out: &mut Emitter<'_>);
    /// Handles `dmsetup message`; text written to `out` goes back to dmsetup.
    fn message(&self, ti: &Target, args: &[&str], out: &mut Emitter<'_>) -> Result;
    /// Calls `visit` for each range of each underlying device in use.
    fn iterate_devices(&self, ti: &Target, visit: &mut DeviceVisitor<'_>) -> c_int;
    /// Adjusts the queue limits device-mapper stacked from the devices.
    fn io_hints(&self, ti: &Target, limits: &mut QueueLimits);
    /// Runs before the table goes live (and before every later resume). An
    /// error keeps the device suspended. May sleep and do I/O.
    fn preresume(&self, ti: &Target) -> Result;
    /// Sees every mapped bio complete with `status` (0: success). Runs in
    /// the completion context (possibly interrupt): must not sleep.
    fn end_io(&self, ti: &Target, bio: &mut Bio, status: BlkStatus) -> EndIo;
    /// After the device is suspended: no bio is in flight any more.
    fn postsuspend(&self, ti: &Target);
    /// The device resumes.
    fn resume(&self, ti: &Target);
}

/// A target's `struct dm_target`, outside the constructor.
///
/// # Invariants
///
/// The wrapped `dm_target` is valid for the lifetime of the reference and its
/// geometry fields (`begin`, `len`, `table`) do not change.
#[repr(transparent)]
pub(crate) struct Target(Opaque<b::dm_target>);

impl Target {
    /// # Safety
    ///
    /// `ti` must be a valid target for `'a` whose constructor has returned.
    unsafe fn from_raw<'a>(ti: *mut b::dm_target) -> &'a Target {
        // SAFETY: `repr(transparent)` over `Opaque<dm_target>`; validity comes
        // from the caller.
        unsafe { &*ti.cast::<Target>() }
    }

    fn raw(&self) -> *mut b::dm_target {
        self.0.get()
    }

    /// First sector of the target in the mapped device.
    #[inline]
    pub(crate) fn begin(&self) -> u64 {
        // SAFETY: Valid by the type invariant; `begin` is never written after
        // the table is built.
        unsafe { (*self.raw()).begin }
    }

    /// Length of the target in sectors.
    #[inline]
    pub(crate) fn len(&self) -> u64 {
        // SAFETY: As for `begin`.
        unsafe { (*self.raw()).len }
    }

    /// Offset of `sector` (of the mapped device) within the target.
    #[inline]
    pub(crate) fn offset(&self, sector: u64) -> u64 {
        sector.wrapping_sub(self.begin())
    }

    /// The mapped device's name in device-mapper's log lines (`major:minor`).
    pub(crate) fn device_name(&self) -> &str {
        // SAFETY: The table of a valid target is valid, and
        // `dm_table_device_name` returns the mapped device's name, a
        // NUL-terminated string that lives as long as the device.
        let name = unsafe { compat::str_at(b::dm_table_device_name((*self.raw()).table)) };
        name.unwrap_or("?")
    }
}

/// The constructor's access to its `struct dm_target`.
///
/// # Invariants
///
/// `ti` is the valid target under construction; only the constructor's
/// thread uses it until the constructor returns.
pub(crate) struct CtrContext<'a, T> {
    ti: NonNull<b::dm_target>,
    _ti: PhantomData<&'a mut b::dm_target>,
    /// The type whose constructor runs: its value becomes the target's
    /// private data.
    _t: PhantomData<fn() -> T>,
}

impl<T> CtrContext<'_, T> {
    /// The target (begin, length, device name).
    pub(crate) fn target(&self) -> &Target {
        // SAFETY: Valid by the type invariant. The private data is not set
        // yet, but `Target` does not touch it.
        unsafe { Target::from_raw(self.ti.as_ptr()) }
    }

    /// Opens an underlying device (a path or `major:minor`) with the table's
    /// mode.
    pub(crate) fn get_device(&mut self, path: &str) -> Result<DmDev> {
        let cpath = super::device::c_path(path)?;
        let ti = self.ti.as_ptr();
        let mut dev: *mut b::dm_dev = core::ptr::null_mut();
        // SAFETY: `ti` is valid (type invariant) and so is its table; `cpath`
        // is NUL-terminated; `dev` is a valid out-pointer.
        to_result(unsafe {
            let mode = b::dm_table_get_mode((*ti).table);
            b::dm_get_device(ti, cpath.as_ptr().cast::<c_char>(), mode, &mut dev)
        })?;
        let dev = NonNull::new(dev).ok_or(ENODEV)?;
        // SAFETY: `dev` was just got for `ti`; the `DmDev` ends up in the
        // target's private data or is dropped before the constructor returns.
        Ok(unsafe { DmDev::from_raw(self.ti, dev) })
    }

    /// Claims `dev` as this target's spare (see [`SpareClaim`]): `EBUSY`
    /// while another remap target holds it.
    pub(crate) fn claim_spare(&mut self, dev: &DmDev) -> Result<SpareClaim> {
        let mut claim: *mut c_void = core::ptr::null_mut();
        // SAFETY: `ti` is the valid target under construction (type
        // invariant), with its table; `claim` is a valid out-pointer.
        to_result(unsafe { b::dmr_claim_spare(self.ti.as_ptr(), dev.devt(), &mut claim) })?;
        NonNull::new(claim).map(SpareClaim).ok_or(ENOMEM)
    }

    /// A reference to the statistics of the target's mapped device.
    pub(crate) fn stats(&mut self) -> Option<super::stats::Stats> {
        // SAFETY: `ti` is the valid target under construction (type
        // invariant).
        unsafe { super::stats::Stats::get(self.ti.as_ptr()) }
    }

    /// How many empty flush bios device-mapper sends `map` per flush.
    pub(crate) fn set_num_flush_bios(&mut self, n: u32) {
        // SAFETY: Valid and exclusively ours during construction.
        unsafe { (*self.ti.as_ptr()).num_flush_bios = n }
    }

    /// Reserves the per-bio data the error path uses (see `Bio::record`).
    pub(crate) fn reserve_bio_data(&mut self) {
        // SAFETY: Valid and exclusively ours during construction; the size
        // is that of the structure `Bio::record` writes there.
        unsafe {
            (*self.ti.as_ptr()).per_io_data_size = core::mem::size_of::<super::bio::BioData>() as u32
        }
    }


    /// How many clones device-mapper sends `map` per discard.
    pub(crate) fn set_num_discard_bios(&mut self, n: u32) {
        // SAFETY: Valid and exclusively ours during construction.
        unsafe { (*self.ti.as_ptr()).num_discard_bios = n }
    }
}

impl<T: WorkerOps> CtrContext<'_, T> {
    /// Creates the target's worker (see `super::worker`), whose work calls
    /// back into the `T` this constructor builds: what `T::ctr` returns
    /// becomes the private data. Its callbacks run only once the target is
    /// constructed (nothing queues work before), and it is destroyed in the
    /// target's `Drop`.
    pub(crate) fn worker(&mut self) -> Option<Worker> {
        // SAFETY: `ti` is the target under construction, whose private data
        // will be a `T` (see above) whenever the worker calls back.
        unsafe { Worker::new::<T>(self.ti) }
    }
}

/// A spare held by one remap target: two targets writing one spare's
/// metadata would destroy each other's remaps. Released on drop.
pub(crate) struct SpareClaim(NonNull<c_void>);

// SAFETY: The claim is an opaque token, released under the C side's mutex
// from whichever thread drops it.
unsafe impl Send for SpareClaim {}
// SAFETY: `&SpareClaim` allows nothing.
unsafe impl Sync for SpareClaim {}

impl Drop for SpareClaim {
    fn drop(&mut self) {
        // SAFETY: From `dmr_claim_spare`, released once.
        unsafe { b::dmr_release_spare(self.0.as_ptr()) }
    }
}

/// Hands ranges of underlying devices to device-mapper's iterate callout.
pub(crate) struct DeviceVisitor<'a> {
    ti: *mut b::dm_target,
    callout: b::iterate_devices_callout_fn,
    data: *mut c_void,
    _p: PhantomData<&'a ()>,
}

impl DeviceVisitor<'_> {
    /// Reports `len` sectors of `dev` from `start`; non-zero stops the walk.
    pub(crate) fn visit(&mut self, dev: &DmDev, start: u64, len: u64) -> c_int {
        match self.callout {
            // SAFETY: device-mapper gave us the callout with its `data` for
            // this target; `dev` is one of the target's open devices.
            Some(f) => unsafe { f(self.ti, dev.as_ptr(), start, len, self.data) },
            None => 0,
        }
    }
}

/// The queue limits passed to `io_hints`.
#[repr(transparent)]
pub(crate) struct QueueLimits(Opaque<b::queue_limits>);

impl QueueLimits {
    /// Makes every I/O cover whole blocks of `block_size` bytes: raises the
    /// logical and physical block sizes and the minimum I/O size to it.
    /// Asks for I/O in units of `block_size` (the remap granularity)
    /// without requiring it: the logical block size stays the devices' own,
    /// so data laid out in those units on main (a file system, a partition
    /// table) still fits. The physical block size is raised up to a page
    /// (larger ones confuse tools that take it as a sector size).
    pub(crate) fn prefer_block_size(&mut self, block_size: u32, page: u32) {
        let l = self.0.get();
        // SAFETY: device-mapper passes valid limits for the duration of
        // `io_hints`, and nothing else touches them meanwhile.
        unsafe {
            (*l).physical_block_size = (*l).physical_block_size.max(block_size.min(page));
            (*l).io_min = (*l).io_min.max(block_size);
        }
    }
}

/// A registered target type; unregistered on drop.
pub(crate) struct Registration {
    tt: Pin<KBox<Opaque<b::target_type>>>,
}

// SAFETY: After registration device-mapper owns the `target_type` and
// serialises access to it with its own lock; we only pass its address to
// `dm_unregister_target`, which may be called from any thread.
unsafe impl Send for Registration {}
// SAFETY: No `&self` method exists.
unsafe impl Sync for Registration {}

impl Registration {
    /// Registers target type `name`, served by `T`.
    pub(crate) fn new<T: TargetOps>(
        module: &'static ThisModule,
        name: &'static core::ffi::CStr,
        version: [u32; 3],
    ) -> Result<Self> {
        let tt = KBox::pin(
            Opaque::new(b::target_type {
                features: u64::from(b::DM_TARGET_NOWAIT),
                name: compat::static_chars(name),
                module: module.as_ptr(),
                version,
                ctr: Some(ctr::<T>),
                dtr: Some(dtr::<T>),
                map: Some(map::<T>),
                status: Some(status::<T>),
                message: Some(message::<T>),
                iterate_devices: Some(iterate_devices::<T>),
                io_hints: Some(io_hints::<T>),
                preresume: Some(preresume::<T>),
                end_io: Some(end_io::<T>),
                postsuspend: Some(postsuspend::<T>),
                resume: Some(resume::<T>),
                ..Default::default()
            }),
            GFP_KERNEL,
        )?;
        // SAFETY: `tt` is a fully initialised target type at a stable address
        // (pinned) that outlives the registration: `Drop` unregisters it
        // before it is freed.
        to_result(unsafe { b::dm_register_target(tt.get()) })?;
        Ok(Self { tt })
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        // SAFETY: Registered in `new`; unregistered only here.
        unsafe { b::dm_unregister_target(self.tt.get()) }
    }
}

/// Collects C arguments as `&str`s.
///
/// # Safety
///
/// `argv` must hold `argc` valid NUL-terminated strings that outlive `'a`.
unsafe fn args<'a>(argc: c_uint, argv: *mut *mut c_char) -> Result<KVec<&'a str>, Refusal> {
    let n = argc as usize;
    let mut v = KVec::with_capacity(n, GFP_KERNEL)
        .map_err(|_| Refusal::new(c"Cannot allocate argument list"))?;
    for i in 0..n {
        // SAFETY: `i < argc`, and each entry is a valid string (caller).
        let s = unsafe { compat::str_at(*argv.add(i)) }
            .ok_or(Refusal::new(c"Arguments must be valid UTF-8"))?;
        // Cannot fail: the capacity was reserved above.
        v.push(s, GFP_KERNEL)
            .map_err(|_| Refusal::new(c"Cannot allocate argument list"))?;
    }
    Ok(v)
}

/// The kernel's error for a refused message's error number.
pub(crate) fn errno(e: Errno) -> Error {
    match e {
        Errno::Inval => EINVAL,
        Errno::NoMem => ENOMEM,
        Errno::NoSpc => ENOSPC,
        Errno::Io => EIO,
        Errno::Busy => EBUSY,
    }
}

/// # Safety
///
/// `ti` must be a valid target whose private data is a `T`.
unsafe fn private<'a, T>(ti: *mut b::dm_target) -> &'a T {
    // SAFETY: The constructor stored a `KBox<T>` there; it lives until `dtr`.
    unsafe { &*(*ti).private.cast::<T>() }
}

/// `ctr` hook.
///
/// # Safety
///
/// Called by device-mapper only: `ti` is the target under construction and
/// `argv` holds `argc` valid strings.
unsafe extern "C" fn ctr<T: TargetOps>(
    ti: *mut b::dm_target,
    argc: c_uint,
    argv: *mut *mut c_char,
) -> c_int {
    let Some(ti_nn) = NonNull::new(ti) else {
        return EINVAL.to_errno();
    };
    let fail = |msg: &'static core::ffi::CStr, err: Error| {
        // SAFETY: `ti` is valid; `error` takes a static string.
        unsafe { (*ti).error = compat::static_chars(msg).cast_mut() };
        err.to_errno()
    };
    // SAFETY: device-mapper passes `argc` valid strings that outlive the call.
    let args = match unsafe { args(argc, argv) } {
        Ok(a) => a,
        Err(r) => return fail(r.msg, EINVAL),
    };
    // INVARIANT: `ti` is valid and ours until we return.
    let mut ctx = CtrContext {
        ti: ti_nn,
        _ti: PhantomData,
        _t: PhantomData,
    };
    let target = match T::ctr(&mut ctx, &args) {
        Ok(t) => t,
        Err(e) => return fail(e.msg, e.err),
    };
    match KBox::new(target, GFP_KERNEL) {
        Ok(b) => {
            // SAFETY: `ti` is valid; `dtr` turns the pointer back into a box.
            unsafe { (*ti).private = KBox::into_raw(b).cast::<c_void>() };
            0
        }
        Err(_) => fail(c"Cannot allocate target context", ENOMEM),
    }
}

/// `dtr` hook.
///
/// # Safety
///
/// Called by device-mapper only, once, on a target whose `ctr` succeeded.
unsafe extern "C" fn dtr<T: TargetOps>(ti: *mut b::dm_target) {
    // SAFETY: `ti` is valid; its private data is the box stored by `ctr`,
    // taken back exactly once here.
    drop(unsafe { KBox::from_raw((*ti).private.cast::<T>()) });
}

/// `map` hook.
///
/// # Safety
///
/// Called by device-mapper only, on a constructed target, with a bio that
/// is ours until we return.
unsafe extern "C" fn map<T: TargetOps>(ti: *mut b::dm_target, bio: *mut b::bio) -> c_int {
    // SAFETY: device-mapper calls `map` on a constructed target with a bio
    // that is ours until we return.
    let (t, target, bio) = unsafe { (private::<T>(ti), Target::from_raw(ti), Bio::from_raw(bio)) };
    let r = match t.map(target, bio) {
        MapResult::Remapped => b::DM_MAPIO_REMAPPED,
        MapResult::Submitted => b::DM_MAPIO_SUBMITTED,
        MapResult::Kill => b::DM_MAPIO_KILL,
    };
    r as c_int
}

/// # Safety
///
/// `result` must be null or valid for `maxlen` bytes.
unsafe fn emitter<'a>(result: *mut c_char, maxlen: c_uint) -> Emitter<'a> {
    if result.is_null() {
        return Emitter::new(&mut []);
    }
    // SAFETY: Valid for `maxlen` bytes (caller).
    Emitter::new(unsafe { core::slice::from_raw_parts_mut(result.cast::<u8>(), maxlen as usize) })
}

/// `status` hook.
///
/// # Safety
///
/// Called by device-mapper only, on a constructed target, with a result
/// buffer of `maxlen` bytes.
unsafe extern "C" fn status<T: TargetOps>(
    ti: *mut b::dm_target,
    kind: b::status_type_t,
    _flags: c_uint,
    result: *mut c_char,
    maxlen: c_uint,
) {
    let kind = match kind {
        b::status_type_t_STATUSTYPE_INFO => StatusKind::Info,
        b::status_type_t_STATUSTYPE_TABLE => StatusKind::Table,
        b::status_type_t_STATUSTYPE_IMA => StatusKind::Ima,
        _ => return,
    };
    // SAFETY: A constructed target and a result buffer of `maxlen` bytes.
    let (t, target, mut out) =
        unsafe { (private::<T>(ti), Target::from_raw(ti), emitter(result, maxlen)) };
    t.status(target, kind, &mut out);
}

/// `message` hook.
///
/// # Safety
///
/// Called by device-mapper only, on a constructed target, with `argc` valid
/// strings and a result buffer of `maxlen` bytes.
unsafe extern "C" fn message<T: TargetOps>(
    ti: *mut b::dm_target,
    argc: c_uint,
    argv: *mut *mut c_char,
    result: *mut c_char,
    maxlen: c_uint,
) -> c_int {
    // SAFETY: A constructed target, `argc` valid strings and a result buffer
    // of `maxlen` bytes, all valid for the call.
    let (t, target, mut out, args) = unsafe {
        (
            private::<T>(ti),
            Target::from_raw(ti),
            emitter(result, maxlen),
            args(argc, argv),
        )
    };
    let Ok(args) = args else {
        return EINVAL.to_errno();
    };
    match t.message(target, &args, &mut out) {
        // 1 tells device-mapper that `result` holds text for dmsetup.
        Ok(()) => c_int::from(!out.is_empty()),
        Err(e) => e.to_errno(),
    }
}

/// `iterate_devices` hook.
///
/// # Safety
///
/// Called by device-mapper only, on a constructed target, with a callout and
/// its data.
unsafe extern "C" fn iterate_devices<T: TargetOps>(
    ti: *mut b::dm_target,
    callout: b::iterate_devices_callout_fn,
    data: *mut c_void,
) -> c_int {
    let mut visitor = DeviceVisitor {
        ti,
        callout,
        data,
        _p: PhantomData,
    };
    // SAFETY: A constructed target.
    let (t, target) = unsafe { (private::<T>(ti), Target::from_raw(ti)) };
    t.iterate_devices(target, &mut visitor)
}

/// `io_hints` hook.
///
/// # Safety
///
/// Called by device-mapper only, on a constructed target, with valid limits.
unsafe extern "C" fn io_hints<T: TargetOps>(ti: *mut b::dm_target, limits: *mut b::queue_limits) {
    // SAFETY: A constructed target; `limits` is valid and ours for the call
    // (`QueueLimits` is `repr(transparent)` over it).
    let (t, target, limits) = unsafe {
        (
            private::<T>(ti),
            Target::from_raw(ti),
            &mut *limits.cast::<QueueLimits>(),
        )
    };
    t.io_hints(target, limits);
}

/// `preresume` hook.
///
/// # Safety
///
/// Called by device-mapper only, on a constructed target, in process context.
unsafe extern "C" fn preresume<T: TargetOps>(ti: *mut b::dm_target) -> c_int {
    // SAFETY: A constructed target.
    let (t, target) = unsafe { (private::<T>(ti), Target::from_raw(ti)) };
    match t.preresume(target) {
        Ok(()) => 0,
        Err(e) => e.to_errno(),
    }
}

/// `end_io` hook.
///
/// # Safety
///
/// Called by device-mapper only, on a constructed target, with a bio of ours
/// that completed and a valid status pointer.
unsafe extern "C" fn end_io<T: TargetOps>(
    ti: *mut b::dm_target,
    bio: *mut b::bio,
    error: *mut b::blk_status_t,
) -> c_int {
    // SAFETY: A constructed target, a bio ours until we return, and a valid
    // (or null) status pointer.
    let (t, target, bio, status) = unsafe {
        (
            private::<T>(ti),
            Target::from_raw(ti),
            Bio::from_raw(bio),
            BlkStatus(if error.is_null() { 0 } else { *error }),
        )
    };
    match t.end_io(target, bio, status) {
        EndIo::Done => b::DM_ENDIO_DONE as c_int,
        EndIo::Incomplete => b::DM_ENDIO_INCOMPLETE as c_int,
    }
}

/// `postsuspend` hook.
///
/// # Safety
///
/// Called by device-mapper only, on a constructed target, in process context.
unsafe extern "C" fn postsuspend<T: TargetOps>(ti: *mut b::dm_target) {
    // SAFETY: A constructed target.
    let (t, target) = unsafe { (private::<T>(ti), Target::from_raw(ti)) };
    t.postsuspend(target)
}

/// `resume` hook.
///
/// # Safety
///
/// Called by device-mapper only, on a constructed target, in process context.
unsafe extern "C" fn resume<T: TargetOps>(ti: *mut b::dm_target) {
    // SAFETY: A constructed target.
    let (t, target) = unsafe { (private::<T>(ti), Target::from_raw(ti)) };
    t.resume(target)
}

/// The target and its private data, for callbacks of work the target queued.
///
/// # Safety
///
/// `ti` must be a constructed target of type `T` that is not being destroyed
/// concurrently (its work is flushed before `dtr` frees it).
pub(crate) unsafe fn from_callback<'a, T>(ti: *mut b::dm_target) -> (&'a T, &'a Target) {
    // SAFETY: Guaranteed by the caller.
    unsafe { (private::<T>(ti), Target::from_raw(ti)) }
}
