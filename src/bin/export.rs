// SPDX-License-Identifier: GPL-2.0

//! `dm-remap-tool export`: what a spare's metadata says, in the forms other
//! tools read. A dm-linear table that reaches the same data without the
//! module (main's runs, and the spare's blocks where main's are remapped),
//! and the remapped and pending blocks as `badblocks -o`, md `bad_blocks`
//! or plain sector lists. Pure functions of the metadata; the caller reads
//! the spare and the main's size.

/// A dm-linear table of `len` sectors: main (`main`) sector for sector,
/// except the runs `extents` lists (main sector, spare sector, sectors; by
/// main sector, not overlapping), which map to those sectors of `spare`.
/// Runs beyond `len` are cut at it.
pub(crate) fn dm_linear(extents: &[(u64, u64, u64)], len: u64, main: &str, spare: &str) -> String {
    let mut out = String::new();
    let mut at = 0;
    let mut line = |start: u64, n: u64, dev: &str, off: u64| {
        out.push_str(&format!("{start} {n} linear {dev} {off}\n"));
    };
    for &(m, s, n) in extents {
        if m >= len {
            break;
        }
        let n = n.min(len - m);
        if m > at {
            line(at, m - at, main, at);
        }
        line(m, n, spare, s);
        at = m + n;
    }
    if at < len {
        line(at, len - at, main, at);
    }
    out
}

/// The forms `export --format` writes a block list in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ListFormat {
    /// Each block's first 512-byte sector, one a line (what `pending` and
    /// `query` name blocks by).
    Sectors,
    /// Block numbers in units of `unit` bytes, one a line, as `badblocks -b
    /// unit -o` writes them (and `e2fsck -l` and `mke2fs -l` read them).
    Badblocks { unit: u64 },
    /// `start length` in sectors, runs merged, as md's `bad_blocks` sysfs
    /// file lists them.
    Md,
}

/// The blocks starting at main sectors `starts` (ascending, `bs` sectors
/// each) in format `f`.
pub(crate) fn block_list(starts: &[u64], bs: u64, f: ListFormat) -> String {
    let mut out = String::new();
    match f {
        ListFormat::Sectors => {
            for s in starts {
                out.push_str(&format!("{s}\n"));
            }
        }
        ListFormat::Badblocks { unit } => {
            let per = unit / 512;
            let mut last = None;
            for &s in starts {
                for b in s / per..(s + bs).div_ceil(per) {
                    if last.map_or(true, |l| b > l) {
                        out.push_str(&format!("{b}\n"));
                        last = Some(b);
                    }
                }
            }
        }
        ListFormat::Md => {
            let mut runs: Vec<(u64, u64)> = Vec::new();
            for &s in starts {
                match runs.last_mut() {
                    Some((r, n)) if *r + *n == s => *n += bs,
                    _ => runs.push((s, bs)),
                }
            }
            for (r, n) in runs {
                out.push_str(&format!("{r} {n}\n"));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_linear_table_covers_every_sector_once() {
        // Remapped: 8..16, 16..24 (one run), 40..48, and the last block.
        let ext = [(8, 1000, 16), (40, 1016, 8), (120, 1024, 8)];
        let t = dm_linear(&ext, 128, "/dev/m", "/dev/s");
        assert_eq!(
            t,
            "0 8 linear /dev/m 0\n8 16 linear /dev/s 1000\n24 16 linear /dev/m 24\n\
             40 8 linear /dev/s 1016\n48 72 linear /dev/m 48\n120 8 linear /dev/s 1024\n"
        );
        // Nothing remapped; a remap at 0; a run cut at the end.
        assert_eq!(dm_linear(&[], 64, "m", "s"), "0 64 linear m 0\n");
        assert_eq!(
            dm_linear(&[(0, 9, 8)], 64, "m", "s"),
            "0 8 linear s 9\n8 56 linear m 8\n"
        );
        assert_eq!(
            dm_linear(&[(60, 9, 8)], 64, "m", "s"),
            "0 60 linear m 0\n60 4 linear s 9\n"
        );
        assert_eq!(dm_linear(&[(64, 9, 8)], 64, "m", "s"), "0 64 linear m 0\n");
        // Every sector once, in order, for a scatter of runs.
        let ext: Vec<_> = (0..50u64)
            .map(|i| (i * 24 + (i % 3) * 8, 5000 + i * 8, 8))
            .collect();
        let t = dm_linear(&ext, 1200, "m", "s");
        let mut next = 0;
        for l in t.lines() {
            let w: Vec<u64> = l.split(' ').filter_map(|x| x.parse().ok()).collect();
            assert_eq!(w[0], next, "{l}");
            next += w[1];
        }
        assert_eq!(next, 1200);
    }

    #[test]
    fn block_lists_in_each_format() {
        let starts = [8, 16, 48, 4096];
        assert_eq!(
            block_list(&starts, 8, ListFormat::Sectors),
            "8\n16\n48\n4096\n"
        );
        assert_eq!(
            block_list(&starts, 8, ListFormat::Md),
            "8 16\n48 8\n4096 8\n"
        );
        assert_eq!(
            block_list(&starts, 8, ListFormat::Badblocks { unit: 4096 }),
            "1\n2\n6\n512\n"
        );
        // 1 KiB units: four per 4 KiB block.
        assert_eq!(
            block_list(&[8], 8, ListFormat::Badblocks { unit: 1024 }),
            "4\n5\n6\n7\n"
        );
        // 512-byte remap blocks in 4 KiB units: one unit, named once.
        assert_eq!(
            block_list(&[8, 9, 10, 17], 1, ListFormat::Badblocks { unit: 4096 }),
            "1\n2\n"
        );
        assert_eq!(block_list(&[], 8, ListFormat::Md), "");
    }
}
