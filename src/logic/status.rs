// SPDX-License-Identifier: GPL-2.0

//! The `dmsetup status` line.
//!
//! ```text
//! <state> <block_size> <remaps> <spare_used>/<spare_total> <buckets> <resizes>
//! ```
//!
//! Fields are separated by one space and never reordered or removed; new
//! fields are only ever appended, so parsers that split on spaces keep
//! working. `docs/usage.md` describes each field.

use core::fmt::{self, Write};

/// What the status line reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Info {
    /// Operating state.
    pub state: State,
    /// Remap granularity in bytes.
    pub block_size: u32,
    /// Number of remapped blocks.
    pub remaps: u64,
    /// Spare data blocks in use.
    pub spare_used: u64,
    /// Spare data blocks in all.
    pub spare_total: u64,
    /// Buckets of the remap hash table.
    pub buckets: u64,
    /// Resizes of the remap hash table since the target was created.
    pub resizes: u64,
}

/// Operating state of a remap target.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    /// Serving I/O normally.
    Ok,
    /// Constructed but not resumed yet: metadata not loaded, messages refused.
    Inactive,
}

impl State {
    /// The word printed in the status line.
    pub fn as_str(self) -> &'static str {
        match self {
            State::Ok => "ok",
            State::Inactive => "inactive",
        }
    }
}

/// Writes the INFO status line.
pub fn write_info<W: Write>(w: &mut W, info: &Info) -> fmt::Result {
    write!(
        w,
        "{} {} {} {}/{} {} {}",
        info.state.as_str(),
        info.block_size,
        info.remaps,
        info.spare_used,
        info.spare_total,
        info.buckets,
        info.resizes
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    extern crate std;
    use std::string::String;

    #[test]
    fn info_line() {
        let mut s = String::new();
        write_info(
            &mut s,
            &Info {
                state: State::Ok,
                block_size: 512,
                remaps: 0,
                spare_used: 0,
                spare_total: 122880,
                buckets: 64,
                resizes: 0,
            },
        )
        .unwrap();
        assert_eq!(s, "ok 512 0 0/122880 64 0");
    }
}
