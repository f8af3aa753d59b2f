// SPDX-License-Identifier: GPL-2.0

//! Synchronous I/O through dm-io (metadata, error path, scanner), CRC-32 and
//! random bytes.

use super::bindings as b;
use super::device::DmDev;
use super::rcu::KernelEnv;
use crate::logic::mem::RawArray;
use crate::logic::remaps::MetaIo;
use core::ptr::NonNull;
use kernel::ffi::c_void;

/// A dm-io client (its mempools); destroyed on drop.
pub(crate) struct IoClient(NonNull<c_void>);

// SAFETY: A dm-io client may be used from any thread; dm-io synchronises
// its own mempools.
unsafe impl Send for IoClient {}
// SAFETY: See `Send`.
unsafe impl Sync for IoClient {}

impl IoClient {
    /// A new client; `None` when memory is short. May sleep.
    pub(crate) fn new() -> Option<Self> {
        // SAFETY: Process context (constructor).
        NonNull::new(unsafe { b::dmr_io_client_create() }).map(Self)
    }
}

impl Drop for IoClient {
    fn drop(&mut self) {
        // SAFETY: Created by `dmr_io_client_create`, destroyed once; no I/O
        // uses it any more (it is only used under `&self` borrows).
        unsafe { b::dmr_io_client_destroy(self.0.as_ptr()) }
    }
}

/// Metadata I/O to a spare device through a dm-io client.
pub(crate) struct SpareIo<'a> {
    /// The client.
    pub(crate) client: &'a IoClient,
    /// The spare.
    pub(crate) spare: &'a DmDev,
}

/// How [`sync_io`] issues its request (`DMR_IO_*`).
pub(crate) mod flags {
    use super::b;
    /// Read (no flag).
    pub(crate) const READ: u32 = 0;
    /// Write.
    pub(crate) const WRITE: u32 = b::DMR_IO_WRITE;
    /// The write is on stable media when it completes.
    pub(crate) const FUA: u32 = b::DMR_IO_FUA;
    /// Flush everything written before the write.
    pub(crate) const PREFLUSH: u32 = b::DMR_IO_PREFLUSH;
    /// Idle I/O priority (the scanner).
    pub(crate) const IDLE: u32 = b::DMR_IO_IDLE;
    /// No retries below (`REQ_FAILFAST_*`, where the lower driver honours
    /// them): the caller retries, or moves on, itself.
    pub(crate) const FAILFAST: u32 = b::DMR_IO_FAILFAST;
}

/// Synchronous I/O of whole sectors of `dev` at `sector`, into `buf` or,
/// with [`flags::WRITE`], out of it. Sleeps; process context only.
pub(crate) fn sync_io(
    client: &IoClient,
    dev: &DmDev,
    sector: u64,
    buf: &mut [u8],
    flags: u32,
) -> Result<(), ()> {
    // SAFETY: `buf` is valid and exclusively ours for its length.
    unsafe { raw_io(client, dev, sector, buf.as_mut_ptr(), buf.len(), flags) }
}

/// # Safety
///
/// `buf` must be valid for `len` bytes for the call: writable for a read,
/// readable for a write (dm-io only reads from the buffer of a write).
unsafe fn raw_io(
    client: &IoClient,
    dev: &DmDev,
    sector: u64,
    buf: *mut u8,
    len: usize,
    flags: u32,
) -> Result<(), ()> {
    let sectors = u32::try_from(len / 512).map_err(|_| ())?;
    if len % 512 != 0 || sectors == 0 {
        return Err(());
    }
    // SAFETY: `buf` as the caller guarantees, for this synchronous call; the
    // client and the device are valid while borrowed.
    let r = unsafe {
        b::dmr_sync_io(
            client.0.as_ptr(),
            dev.bdev(),
            sector,
            buf.cast::<c_void>(),
            sectors,
            flags,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(())
    }
}

/// The device's logical blocks around a metadata I/O that is not aligned to
/// them, read into a buffer of their own.
struct Enclosing {
    buf: RawArray<u8, KernelEnv>,
    /// First sector of `buf`.
    first: u64,
    /// Byte offset in `buf` of the sector asked for.
    off: usize,
}

impl SpareIo<'_> {
    /// `None` when `len` bytes at `sector` are whole logical blocks of the
    /// spare; otherwise the blocks around them, read.
    fn enclosing(&self, sector: u64, len: usize) -> Result<Option<Enclosing>, ()> {
        let lbs = u64::from(self.spare.logical_block_size()).max(512) / 512;
        let sectors = (len / 512) as u64;
        if sector % lbs == 0 && sectors % lbs == 0 {
            return Ok(None);
        }
        let first = sector - sector % lbs;
        let end = sector.checked_add(sectors).ok_or(())?.div_ceil(lbs) * lbs;
        let bytes = usize::try_from((end - first) * 512).map_err(|_| ())?;
        // On the heap: stack memory is not valid for I/O.
        let mut buf = RawArray::<u8, KernelEnv>::new(bytes).ok_or(())?;
        sync_io(self.client, self.spare, first, &mut buf, flags::READ)?;
        let off = ((sector - first) * 512) as usize;
        Ok(Some(Enclosing { buf, first, off }))
    }
}

impl MetaIo for SpareIo<'_> {
    /// Reads of version 3 are whole 4 KiB units at 4 KiB offsets, which
    /// every device accepts. A version-2 copy lies at 512-byte offsets: on a
    /// device of larger logical blocks the enclosing blocks are read into a
    /// buffer of their own and the part asked for copied out.
    fn read(&mut self, sector: u64, buf: &mut [u8]) -> Result<(), ()> {
        let Some(e) = self.enclosing(sector, buf.len())? else {
            return sync_io(self.client, self.spare, sector, buf, flags::READ);
        };
        buf.copy_from_slice(e.buf.get(e.off..e.off + buf.len()).ok_or(())?);
        Ok(())
    }

    /// Writes of version 3 are whole units at unit offsets. A version-2
    /// sector on a device of larger logical blocks (a version-2 spare copied
    /// to a 4Kn disk, until it is converted) is merged into its enclosing
    /// blocks, read first, and those are written whole: the other sectors
    /// in them are this area's too, written only under the target's lock,
    /// so they are written back as they are.
    fn write(&mut self, sector: u64, buf: &[u8], durable: bool) -> Result<(), ()> {
        let f = if durable {
            flags::WRITE | flags::PREFLUSH | flags::FUA
        } else {
            flags::WRITE
        };
        if let Some(mut e) = self.enclosing(sector, buf.len())? {
            e.buf
                .get_mut(e.off..e.off + buf.len())
                .ok_or(())?
                .copy_from_slice(buf);
            return sync_io(self.client, self.spare, e.first, &mut e.buf, f);
        }
        // SAFETY: `buf` is valid for its length, and a write only reads it.
        unsafe {
            raw_io(
                self.client,
                self.spare,
                sector,
                buf.as_ptr().cast_mut(),
                buf.len(),
                f,
            )
        }
    }
}

/// CRC-32 (IEEE, as zlib computes it) by the kernel's `crc32_le`.
pub(crate) fn crc32(buf: &[u8]) -> u32 {
    // SAFETY: `buf` is valid for its length.
    unsafe { b::dmr_crc32(buf.as_ptr().cast::<c_void>(), buf.len()) }
}

/// Random bytes from the kernel's generator.
pub(crate) fn random_uuid() -> [u8; 16] {
    let mut u = [0u8; 16];
    // SAFETY: `u` is valid for 16 bytes.
    unsafe { b::dmr_random_bytes(u.as_mut_ptr().cast::<c_void>(), u.len()) };
    u
}
