// SPDX-License-Identifier: GPL-2.0

//! Synchronous metadata I/O on the spare (dm-io), CRC-32 and random bytes.

use super::bindings as b;
use super::device::DmDev;
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

impl IoClient {
    pub(super) fn raw(&self) -> *mut c_void {
        self.0.as_ptr()
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

impl SpareIo<'_> {
    fn io(&mut self, sector: u64, buf: *mut u8, len: usize, write: bool, durable: bool) -> Result<(), ()> {
        let sectors = u32::try_from(len / 512).map_err(|_| ())?;
        if len % 512 != 0 || sectors == 0 {
            return Err(());
        }
        // SAFETY: `buf` is valid for `len` bytes for the duration of this
        // synchronous call; the client and the spare's block device are
        // valid while borrowed.
        let r = unsafe {
            b::dmr_meta_io(
                self.client.0.as_ptr(),
                self.spare.bdev(),
                sector,
                buf.cast::<c_void>(),
                sectors,
                write,
                durable,
            )
        };
        if r == 0 {
            Ok(())
        } else {
            Err(())
        }
    }
}

impl MetaIo for SpareIo<'_> {
    fn read(&mut self, sector: u64, buf: &mut [u8]) -> Result<(), ()> {
        self.io(sector, buf.as_mut_ptr(), buf.len(), false, false)
    }

    fn write(&mut self, sector: u64, buf: &[u8], durable: bool) -> Result<(), ()> {
        // dm-io only reads from the buffer of a write.
        self.io(sector, buf.as_ptr().cast_mut(), buf.len(), true, durable)
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
