// SPDX-License-Identifier: GPL-2.0

//! The `remap` target: table line → devices → routing.
//!
//! Construct: `<start> <len> remap <main_dev> <spare_dev> [<#feature_args> <feature_arg>...]`
//!
//! Data path: `map` addresses every bio to main at the same offset; empty
//! flushes go to both devices (one clone each), discards to main.

use crate::dm::bio::Bio;
use crate::dm::device::DmDev;
use crate::dm::log::{dmr_err, dmr_info};
use crate::dm::target::{
    CtrContext, CtrError, DeviceVisitor, MapResult, QueueLimits, StatusKind, Target, TargetOps,
};
use crate::logic::emit::Emitter;
use crate::logic::geometry::{self, DeviceFacts, Geometry};
use crate::logic::status::{self, Info, State};
use crate::logic::table_line::{self, Features};
use core::fmt::Write;
use kernel::ffi::c_int;
use kernel::prelude::*;

/// The target type's name in table lines.
pub(crate) const NAME: &core::ffi::CStr = c"remap";
/// The target type's version, as `dmsetup targets` shows it.
pub(crate) const VERSION: [u32; 3] = [0, 1, 0];

/// Messages `dmsetup message <dev> 0 ...` accepts, one per line for `help`.
const HELP: &str = "help";

/// One remap target.
pub(crate) struct Remap {
    main: DmDev,
    spare: DmDev,
    features: Features,
    geometry: Geometry,
}

fn facts(dev: &DmDev) -> DeviceFacts {
    DeviceFacts {
        dev: dev.devt(),
        whole: dev.whole_devt(),
        sectors: dev.sectors(),
        logical_block_size: dev.logical_block_size(),
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
        // One empty flush for each device; discards only concern main.
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
        })
    }

    fn map(&self, ti: &Target, bio: &mut Bio) -> MapResult {
        if bio.size() == 0 && bio.is_preflush() {
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
        MapResult::Remapped
    }

    fn status(&self, _ti: &Target, kind: StatusKind, out: &mut Emitter<'_>) {
        // A result that does not fit is cut; device-mapper then retries with
        // a larger buffer, so the write error needs no handling here.
        let _ = match kind {
            StatusKind::Info => status::write_info(
                out,
                &Info {
                    state: State::Ok,
                    block_size: self.geometry.block_size,
                    remaps: 0,
                    spare_used: 0,
                    spare_total: self.geometry.spare_data_blocks,
                },
            ),
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
        match args {
            ["help"] => {
                let _ = out.write_str(HELP);
                Ok(())
            }
            [] => Err(EINVAL),
            [verb, ..] => {
                dmr_err!("{}: unknown message '{}'; try 'help'\n", ti.device_name(), verb);
                Err(EINVAL)
            }
        }
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
}
