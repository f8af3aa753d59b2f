// SPDX-License-Identifier: GPL-2.0

//! `migrate_to <dev>`: every remap, with its data, moves to another spare
//! when the table is resumed, and the device goes on with that spare.
//!
//! The constructor checks the new spare without writing to it. The first
//! `preresume` loads the old spare's metadata and then moves: the device is
//! suspended, so no bio, no error-path step and no scanner step runs, and
//! messages that would change anything are refused until it is done (status
//! and the read-only messages are answered; the copy runs without the lock).
//! The steps and their crash safety are [`crate::logic::remaps`]'s
//! (`migrate.rs`); a failure at any of them leaves the device on the old
//! spare, with the new one marked so that no table takes it for a spare.

use super::{facts, NewSpare, Remap};
use crate::dm::device::DmDev;
use crate::dm::io::{self, IoClient, SpareIo};
use crate::dm::log::{dmr_err, dmr_info};
use crate::dm::rcu::KernelEnv;
use crate::dm::target::{CtrContext, CtrError};
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
    let dev = ctx
        .get_device(path)
        .map_err(|e| CtrError::new(c"migrate_to device lookup failed", e))?;
    if dev.devt() == main.devt() || dev.devt() == spare.devt() {
        return Err(CtrError::new(
            c"migrate_to names the main or the spare device",
            EINVAL,
        ));
    }
    let claim = ctx.claim_spare(&dev).map_err(|e| {
        if e == EBUSY {
            CtrError::new(c"migrate_to device is in use by another remap target", e)
        } else {
            CtrError::new(c"Cannot allocate spare claim", e)
        }
    })?;
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

impl Remap {
    /// Moves the remaps to `n` (see the module documentation); logs what
    /// happened. Called from `preresume` without the lock, after the load.
    pub(super) fn migrate(&self, dev: &str, n: &NewSpare) {
        let mut old = SpareIo {
            client: &self.io_client,
            spare: &self.spare,
        };
        let mut new = SpareIo {
            client: &self.io_client,
            spare: &n.dev,
        };
        let (from_name, to_name) = (self.spare.name(), n.dev.name());
        let start = worker::now_ms();
        let bs = self.bs_bytes();
        let blocks = {
            let mut c = self.core.lock();
            if self.fail.load(Ordering::Relaxed) {
                dmr_err!(
                    "{}: fail mode: not moving to spare {}; send clear_fail and reload\n",
                    dev,
                    to_name
                );
                return;
            }
            if c.remaps.mark_taken(&mut new).is_err() {
                dmr_err!(
                    "{}: cannot write to spare {}: not moving; the device stays on spare {}\n",
                    dev,
                    to_name,
                    from_name
                );
                return;
            }
            c.migrating = true;
            c.remaps.used_blocks()
        };
        dmr_info!(
            "{}: moving {} remapped blocks from spare {} to {}\n",
            dev,
            blocks,
            from_name,
            to_name
        );
        let buf = RawArray::<u8, KernelEnv>::new(COPY_CHUNK.max(bs))
            .or_else(|| RawArray::new(bs));
        let stopped = match buf {
            Some(mut buf) => self.copy_used(&mut old, &mut new, &mut buf),
            None => Some(("out of memory", 0)),
        };
        let mut c = self.core.lock();
        if let Some((why, sector)) = stopped {
            let _ = c.remaps.mark_taken(&mut new);
            c.migrating = false;
            dmr_err!(
                "{}: moving to spare {} stopped: {} at sector {}; the device stays on spare {}\n",
                dev,
                to_name,
                why,
                sector,
                from_name
            );
            return;
        }
        match c.remaps.switch_to(&mut old, &mut new, n.dev.sectors()) {
            Err(e) => {
                let _ = c.remaps.mark_taken(&mut new);
                let why = match e {
                    SwitchError::NoMemory => "out of memory",
                    SwitchError::New => "its metadata could not be written",
                };
                dmr_err!(
                    "{}: moving to spare {} stopped: {}; the device stays on spare {}\n",
                    dev,
                    to_name,
                    why,
                    from_name
                );
            }
            Ok(sw) => {
                self.on_new.store(true, Ordering::Release);
                dmr_info!(
                    "{}: moved {} remapped blocks from spare {} to {} in {} ms\n",
                    dev,
                    blocks,
                    from_name,
                    to_name,
                    worker::now_ms().saturating_sub(start)
                );
                if !sw.old_marked {
                    dmr_err!(
                        "{}: spare {} could not be marked as moved: never put it in a table line again (dm-remap-tool retire)\n",
                        dev,
                        from_name
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
            }
        }
        c.migrating = false;
        self.report_spare(dev, &mut c);
        self.update_stats(&mut c);
    }

    /// Copies every pool block in use from `old` to `new`, a run at a time,
    /// taking the lock only to find the next run. `Some` says what failed,
    /// and where (an old spare's sector).
    fn copy_used(
        &self,
        old: &mut SpareIo<'_>,
        new: &mut SpareIo<'_>,
        buf: &mut [u8],
    ) -> Option<(&'static str, u64)> {
        let per = (buf.len() / self.bs_bytes()).max(1) as u64;
        let mut from = 0;
        loop {
            let run = {
                let c = self.core.lock();
                c.remaps
                    .used_run(from, per)
                    .map(|(first, k)| (first + k, c.remaps.run_sectors(first, k)))
            };
            let (next, (at, sectors)) = run?;
            match remaps::copy_run(old, new, at, sectors, buf) {
                Ok(()) => from = next,
                Err(true) => return Some(("read error on the old spare", at)),
                Err(false) => return Some(("write error on the new spare", at)),
            }
        }
    }
}
