// SPDX-License-Identifier: GPL-2.0

//! dm-remap: a device-mapper target that keeps a disk with failing sectors in
//! service by redirecting its bad blocks to a spare device.
//!
//! Layers (see `docs/architecture.md`):
//! - [`dm`]: the FFI layer, small safe wrappers over the kernel's C API; the
//!   only place with `unsafe`.
//! - [`logic`]: pure Rust shared unchanged with the host crate (`src/host.rs`)
//!   and tested there.
//! - [`remap`]: the target itself, written against the two above.

use kernel::prelude::*;

mod dm;
// `pub` for the host crate (`src/host.rs`), which exports it.
#[allow(unreachable_pub)]
mod logic;
mod remap;

dm::compat::module_with_author! {
    type: DmRemap,
    name: "dm_remap",
    author: "dm-remap developers",
    description: "device-mapper target that remaps bad blocks of a main device to a spare",
    license: "GPL",
    alias: ["dm-remap"],
}

struct DmRemap {
    // Dropped in this order: the target type goes before the stat tree.
    _target: dm::target::Registration,
    _stats: dm::stats::StatsTree,
}

impl kernel::Module for DmRemap {
    fn init(module: &'static ThisModule) -> Result<Self> {
        let stats = dm::stats::StatsTree::new()?;
        let reg = dm::target::Registration::new::<remap::Remap>(
            module,
            remap::NAME,
            remap::VERSION,
        )?;
        let [a, b, c] = remap::VERSION;
        dm::log::dmr_info!("target remap {}.{}.{} registered\n", a, b, c);
        Ok(DmRemap {
            _target: reg,
            _stats: stats,
        })
    }
}

impl Drop for DmRemap {
    fn drop(&mut self) {
        dm::log::dmr_info!("unloading\n");
    }
}
