// SPDX-License-Identifier: GPL-2.0

//! What the host tests of several files share.

use super::geometry::{validate, DeviceFacts, Geometry};
use super::table_line::Features;

/// Sectors of a MiB.
pub const MIB: u64 = 2048;

/// The geometry of a 64 MiB main and a 64 MiB spare, with `block_size`
/// (default 512 bytes).
pub fn geo(block_size: Option<u32>) -> Geometry {
    let d = |dev, sectors| DeviceFacts {
        dev,
        whole: dev,
        sectors,
        logical_block_size: 512,
    };
    validate(
        64 * MIB,
        &d(1, 64 * MIB),
        &d(2, 64 * MIB),
        &Features {
            block_size,
            ..Features::default()
        },
    )
    .unwrap()
}
