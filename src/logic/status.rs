// SPDX-License-Identifier: GPL-2.0

//! The `dmsetup status` line.
//!
//! ```text
//! <state> <block_size> <remaps> <spare_used>/<spare_total> <buckets> <resizes>
//!   <pending> <retired> <spare_level> <auto_remap> <scan> <scan_position> <scan_passes>
//! ```
//!
//! Fields are separated by one space and never reordered or removed; new
//! fields are only ever appended, so parsers that split on spaces keep
//! working. `docs/usage.md` describes each field.

use super::stats::{Gauge, GAUGES};
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
    /// Main blocks whose reads failed, waiting for a write.
    pub pending: u64,
    /// Spare blocks retired after write errors.
    pub retired: u64,
    /// How full the spare pool is.
    pub spare: SpareLevel,
    /// Whether errors are handled (`auto_remap`).
    pub auto_remap: bool,
    /// Scanner state.
    pub scan: ScanState,
    /// Next main sector the scanner reads.
    pub scan_position: u64,
    /// Full passes the scanner completed.
    pub scan_passes: u64,
    /// Spare data blocks free (the statistics' gauge, not in the line).
    pub spare_free: u64,
    /// Bad blocks the scanner found (the statistics' gauge, not in the
    /// line).
    pub scan_found: u64,
}

impl Info {
    /// The statistics' gauges, indexed by [`Gauge`]: what the status line
    /// reports, as numbers.
    pub fn gauges(&self) -> [u64; GAUGES] {
        let mut g = [0; GAUGES];
        for (gauge, v) in [
            (Gauge::Remaps, self.remaps),
            (Gauge::SpareUsed, self.spare_used),
            (Gauge::SpareTotal, self.spare_total),
            (Gauge::Buckets, self.buckets),
            (Gauge::Resizes, self.resizes),
            (Gauge::Pending, self.pending),
            (Gauge::Retired, self.retired),
            (Gauge::FailMode, u64::from(self.state == State::Fail)),
            (Gauge::SpareFree, self.spare_free),
            (Gauge::ScanPosition, self.scan_position),
            (Gauge::ScanPasses, self.scan_passes),
            (Gauge::ScanFound, self.scan_found),
        ] {
            g[gauge as usize] = v;
        }
        g
    }
}

/// How full the spare pool is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SpareLevel {
    /// Above the `spare_low` threshold.
    Ok,
    /// At or below it.
    Low,
    /// No free block left.
    Exhausted,
}

impl SpareLevel {
    /// The level of a pool with `free` of `total` blocks free.
    pub fn of(free: u64, total: u64, spare_low: u32) -> Self {
        if free == 0 {
            SpareLevel::Exhausted
        } else if super::policy::spare_is_low(free, total, spare_low) {
            SpareLevel::Low
        } else {
            SpareLevel::Ok
        }
    }

    /// The word printed in the status line.
    pub fn as_str(self) -> &'static str {
        match self {
            SpareLevel::Ok => "ok",
            SpareLevel::Low => "low",
            SpareLevel::Exhausted => "exhausted",
        }
    }
}

/// What the scanner is doing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScanState {
    /// Not started, or stopped.
    Idle,
    /// Scanning.
    Running,
    /// Started, but the device is suspended.
    Paused,
}

impl ScanState {
    /// The word printed in the status line.
    pub fn as_str(self) -> &'static str {
        match self {
            ScanState::Idle => "idle",
            ScanState::Running => "running",
            ScanState::Paused => "paused",
        }
    }
}

/// Operating state of a remap target.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    /// Serving I/O normally.
    Ok,
    /// Constructed but not resumed yet: metadata not loaded, messages refused.
    Inactive,
    /// A metadata commit failed: writes are refused until `clear_fail`.
    Fail,
}

impl State {
    /// The word printed in the status line.
    pub fn as_str(self) -> &'static str {
        match self {
            State::Ok => "ok",
            State::Inactive => "inactive",
            State::Fail => "fail",
        }
    }
}

/// Writes the INFO status line.
pub fn write_info<W: Write>(w: &mut W, info: &Info) -> fmt::Result {
    write!(
        w,
        "{} {} {} {}/{} {} {} {} {} {} {} {} {} {}",
        info.state.as_str(),
        info.block_size,
        info.remaps,
        info.spare_used,
        info.spare_total,
        info.buckets,
        info.resizes,
        info.pending,
        info.retired,
        info.spare.as_str(),
        if info.auto_remap { "on" } else { "off" },
        info.scan.as_str(),
        info.scan_position,
        info.scan_passes
    )
}

/// Reads back a status line [`write_info`] wrote (the words after
/// `<start> <len> remap`); words appended by later versions are ignored.
/// `spare_free` is what the line implies (total less used); `scan_found`,
/// not in the line, is 0. `None` for anything else.
#[cfg(not(MODULE))]
pub fn parse_info(words: &[&str]) -> Option<Info> {
    let [state, block_size, remaps, pool, buckets, resizes, pending, retired, spare, auto, scan, scan_position, scan_passes, ..] =
        words
    else {
        return None;
    };
    let word = |w: &str, all: &[&'static str]| all.iter().position(|a| *a == w);
    let (used, total) = pool.split_once('/')?;
    let (spare_used, spare_total): (u64, u64) = (used.parse().ok()?, total.parse().ok()?);
    Some(Info {
        state: [State::Ok, State::Inactive, State::Fail][word(state, &["ok", "inactive", "fail"])?],
        block_size: block_size.parse().ok()?,
        remaps: remaps.parse().ok()?,
        spare_used,
        spare_total,
        buckets: buckets.parse().ok()?,
        resizes: resizes.parse().ok()?,
        pending: pending.parse().ok()?,
        retired: retired.parse().ok()?,
        spare: [SpareLevel::Ok, SpareLevel::Low, SpareLevel::Exhausted]
            [word(spare, &["ok", "low", "exhausted"])?],
        auto_remap: [true, false][word(auto, &["on", "off"])?],
        scan: [ScanState::Idle, ScanState::Running, ScanState::Paused]
            [word(scan, &["idle", "running", "paused"])?],
        scan_position: scan_position.parse().ok()?,
        scan_passes: scan_passes.parse().ok()?,
        spare_free: spare_total.checked_sub(spare_used)?,
        scan_found: 0,
    })
}

/// The `lost` message's reply: the main blocks whose data is gone.
///
/// ```text
/// blocks <block_bytes> pending <n> unrecorded <count> [<first> <last>]
/// <sector> <sector> ...
/// ```
///
/// The first line gives the block size, the pending blocks' count and the
/// failed reads the full list had no room for, with the main sectors of the
/// lowest and highest of them when there are any. The second line, present
/// when `n > 0`, lists the pending blocks by main sector, ascending.
pub fn write_lost<W: Write>(
    w: &mut W,
    block_sectors: u64,
    pending: &[u64],
    unrecorded: &super::format::Unrecorded,
) -> fmt::Result {
    let u = unrecorded;
    write!(
        w,
        "blocks {} pending {} unrecorded {}",
        block_sectors << 9,
        pending.len(),
        u.count
    )?;
    if u.count > 0 {
        write!(w, " {} {}", u.first * block_sectors, u.last * block_sectors)?;
    }
    for (i, b) in pending.iter().enumerate() {
        write!(w, "{}{}", if i > 0 { " " } else { "\n" }, b * block_sectors)?;
    }
    Ok(())
}

/// The `lost` reply [`write_lost`] wrote, read back (or the same report
/// made from a spare's metadata).
#[cfg(not(MODULE))]
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Lost {
    /// Block size in bytes.
    pub block_bytes: u64,
    /// Pending blocks, by main sector.
    pub pending: std::vec::Vec<u64>,
    /// Failed reads not listed, by main block.
    pub unrecorded: super::format::Unrecorded,
}

#[cfg(not(MODULE))]
impl Lost {
    /// Sectors of a block.
    pub fn block_sectors(&self) -> u64 {
        self.block_bytes / 512
    }

    /// The main sectors the unrecorded failures span (see
    /// [`super::format::Unrecorded::sectors`]).
    pub fn unrecorded_sectors(&self) -> Option<(u64, u64)> {
        self.unrecorded.sectors(self.block_sectors())
    }
}

/// Reads back a reply [`write_lost`] wrote; `None` for anything else (a
/// reply cut short by a small result buffer has fewer sectors than its
/// count).
#[cfg(not(MODULE))]
pub fn parse_lost(reply: &str) -> Option<Lost> {
    let mut lines = reply.trim_end().lines();
    let head: std::vec::Vec<&str> = lines.next()?.split_whitespace().collect();
    let num = |w: &str| w.parse::<u64>().ok();
    let (block_bytes, n, count, range) = match head[..] {
        ["blocks", b, "pending", n, "unrecorded", u] => (num(b)?, num(n)?, num(u)?, None),
        ["blocks", b, "pending", n, "unrecorded", u, f, l] => {
            (num(b)?, num(n)?, num(u)?, Some((num(f)?, num(l)?)))
        }
        _ => return None,
    };
    let bs = block_bytes / 512;
    let unrecorded = match range {
        None if count == 0 => super::format::Unrecorded::default(),
        Some((f, l)) if count > 0 && bs > 0 && f % bs == 0 && l % bs == 0 && f <= l => {
            super::format::Unrecorded {
                count,
                first: f / bs,
                last: l / bs,
            }
        }
        _ => return None,
    };
    let pending = match lines.next() {
        Some(l) => l
            .split(' ')
            .map(num)
            .collect::<Option<std::vec::Vec<u64>>>()?,
        None => std::vec::Vec::new(),
    };
    if pending.len() as u64 != n || lines.next().is_some() {
        return None;
    }
    Some(Lost {
        block_bytes,
        pending,
        unrecorded,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    extern crate std;
    use std::string::String;

    #[test]
    fn lost_reply_round_trip() {
        use crate::logic::format::Unrecorded;
        let mut s = String::new();
        write_lost(&mut s, 8, &[], &Unrecorded::default()).unwrap();
        assert_eq!(s, "blocks 4096 pending 0 unrecorded 0");
        assert_eq!(
            parse_lost(&s),
            Some(Lost {
                block_bytes: 4096,
                ..Lost::default()
            })
        );
        let u = Unrecorded {
            count: 7,
            first: 3,
            last: 90,
        };
        s.clear();
        write_lost(&mut s, 8, &[1, 2, 1000], &u).unwrap();
        assert_eq!(s, "blocks 4096 pending 3 unrecorded 7 24 720\n8 16 8000");
        assert_eq!(
            parse_lost(&(s.clone() + "\n")),
            Some(Lost {
                block_bytes: 4096,
                pending: std::vec![8, 16, 8000],
                unrecorded: u,
            })
        );
        // Cut short, or not a reply of ours.
        for bad in [
            &s[..s.len() - 5],
            "blocks 4096 pending 0 unrecorded 1",
            "blocks 4096 pending 0 unrecorded 0 1 2",
            "blocks 4096 pending 0 unrecorded 2 8 9",
            "blocks 4096 pending 0 unrecorded 2 16 8",
            "blocks 4096 pending 1 unrecorded 0",
            "cleared 3",
            "",
        ] {
            assert_eq!(parse_lost(bad), None, "{bad:?}");
        }
    }

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
                pending: 2,
                retired: 1,
                spare: SpareLevel::of(5, 100, 10),
                auto_remap: true,
                scan: ScanState::Paused,
                scan_position: 4096,
                scan_passes: 3,
                spare_free: 5,
                scan_found: 7,
            },
        )
        .unwrap();
        assert_eq!(s, "ok 512 0 0/122880 64 0 2 1 low on paused 4096 3");
        assert_eq!(SpareLevel::of(0, 100, 10), SpareLevel::Exhausted);
        assert_eq!(SpareLevel::of(50, 100, 10), SpareLevel::Ok);
    }

    /// Every number different.
    fn sample() -> Info {
        Info {
            state: State::Fail,
            block_size: 4096,
            remaps: 2,
            spare_used: 3,
            spare_total: 4,
            buckets: 5,
            resizes: 6,
            pending: 7,
            retired: 8,
            spare: SpareLevel::Ok,
            auto_remap: true,
            scan: ScanState::Running,
            scan_position: 10,
            scan_passes: 11,
            spare_free: 9,
            scan_found: 12,
        }
    }

    #[test]
    fn every_gauge_comes_from_the_status() {
        let info = sample();
        assert_eq!(info.gauges(), [2, 3, 4, 5, 6, 7, 8, 1, 9, 10, 11, 12]);
        let ok = Info {
            state: State::Ok,
            ..info
        };
        assert_eq!(ok.gauges()[Gauge::FailMode as usize], 0);
    }

    #[test]
    fn parse_reads_back_what_write_wrote() {
        // What the line cannot carry: the free blocks it implies, no
        // scanner findings.
        let mut info = Info {
            spare_free: 1,
            scan_found: 0,
            ..sample()
        };
        for (state, spare, scan, auto) in [
            (State::Ok, SpareLevel::Ok, ScanState::Idle, true),
            (
                State::Inactive,
                SpareLevel::Exhausted,
                ScanState::Running,
                false,
            ),
            (State::Fail, SpareLevel::Low, ScanState::Paused, true),
        ] {
            info = Info {
                state,
                spare,
                scan,
                auto_remap: auto,
                ..info
            };
            let mut s = String::new();
            write_info(&mut s, &info).unwrap();
            let words: std::vec::Vec<&str> = s.split(' ').collect();
            assert_eq!(parse_info(&words), Some(info), "{s}");
            // A field appended by a later version is ignored.
            let mut more = words.clone();
            more.push("later");
            assert_eq!(parse_info(&more), Some(info));
        }
        for bad in [
            "ok 4096 2 3/4 5 6 7 8 low off paused 10",
            "good 4096 2 3/4 5 6 7 8 low off paused 10 11",
            "ok 4096 2 3-4 5 6 7 8 low off paused 10 11",
            "ok 4096 2 5/4 5 6 7 8 low off paused 10 11",
            "ok 4096 x 3/4 5 6 7 8 low off paused 10 11",
            "ok 4096 2 3/4 5 6 7 8 low maybe paused 10 11",
        ] {
            let words: std::vec::Vec<&str> = bad.split(' ').collect();
            assert_eq!(parse_info(&words), None, "{bad}");
        }
    }
}
