// SPDX-License-Identifier: GPL-2.0

//! `dmr-log-replay`: replays a dm-log-writes log onto an image and checks
//! the image at every crash point the log describes.
//!
//! ```text
//! dmr-log-replay --log LOG --replay IMAGE [--limit N] [--verbose] [--dump] [--check CMD [ARG...]]
//! ```
//!
//! The log (Documentation/admin-guide/device-mapper/log-writes.rst): block 0
//! holds the super {le64 magic, le64 version, le64 nr_entries, le32
//! sectorsize}; from block 1 on, each entry is one sectorsize block {le64
//! sector, le64 nr_sectors, le64 flags, le64 data_len} (sector and
//! nr_sectors in sectorsize units; a mark's text follows the struct),
//! followed by nr_sectors blocks of data for a write (none for a discard).
//!
//! Entries are applied in order (the first N with `--limit`): writes copy
//! their data to the image, discards zero their range. After every entry
//! carrying FLUSH or FUA, and at every MARK, a line `point NUMBER KIND ENTRY
//! [MARK]` goes to stdout and CMD runs (no shell) with DMR_POINT_KIND
//! (`flush`, `fua`, `flush+fua` or `mark`), DMR_POINT_ENTRY (the entry's
//! index, from 0), DMR_POINT_NUMBER (the point's, from 1) and DMR_POINT_MARK
//! (the mark's text, empty elsewhere) in its environment. `--dump` prints,
//! after each point's line and before CMD runs, what `dm-remap-tool dump
//! IMAGE` would print then: the same code, in this process, which saves a
//! process start per point (dear on a debug kernel); an image it cannot read
//! fails the point as the tool's exit status 2 would. `--verbose` lists
//! every entry on stderr. A failing CMD stops the
//! replay with exit status 1; a log that cannot be read whole, 2. The last
//! line is a summary of entries replayed and points checked by kind.

use std::fs::{File, OpenOptions};
use std::io::{BufReader, Read, Seek, SeekFrom, Write};
use std::process::{Command, ExitCode};

mod spare;

const USAGE: &str =
    "usage: dmr-log-replay --log LOG --replay IMAGE [--limit N] [--verbose] [--dump] \
                     [--check CMD [ARG...]]";

const MAGIC: u64 = 0x006A_7366_7773_6872;
const VERSION: u64 = 1;
const FLUSH: u64 = 1;
const FUA: u64 = 2;
const DISCARD: u64 = 4;
const MARK: u64 = 8;
/// Size of the entry struct at the start of an entry block.
const ENTRY_LEN: usize = 32;

/// A crash point: the image holds everything the log has up to `entry`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Point {
    /// `flush`, `fua`, `flush+fua` or `mark`.
    kind: &'static str,
    /// Index of the entry, from 0.
    entry: u64,
    /// The mark's text (empty for other points).
    mark: String,
}

/// What a replay did: entries applied, points checked by kind.
#[derive(Debug, Default, PartialEq, Eq)]
struct Summary {
    entries: u64,
    flush: u64,
    fua: u64,
    flush_fua: u64,
    mark: u64,
}

impl Summary {
    fn line(&self) -> String {
        format!(
            "replayed {} entries, checked {} points: {} flush, {} fua, {} flush+fua, {} mark",
            self.entries,
            self.flush + self.fua + self.flush_fua + self.mark,
            self.flush,
            self.fua,
            self.flush_fua,
            self.mark
        )
    }
}

fn le64(b: &[u8], at: usize) -> u64 {
    let mut x = [0u8; 8];
    x.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(x)
}

/// Why a replay stopped.
#[derive(Debug, PartialEq, Eq)]
enum Stop {
    /// The log or the image is unusable.
    Log(String),
    /// The check failed at a point.
    Check(String),
}

/// Reads exactly `buf.len()` bytes of the log or says where it ends.
fn read_log(log: &mut impl Read, buf: &mut [u8], what: &str) -> Result<(), Stop> {
    log.read_exact(buf).map_err(|e| {
        Stop::Log(if e.kind() == std::io::ErrorKind::UnexpectedEof {
            format!("log truncated: it ends inside {what}")
        } else {
            format!("reading {what}: {e}")
        })
    })
}

/// Replays the first `limit` entries of `log` (all if `None`) onto `image`
/// (`image_len` bytes), calling `check` at every crash point.
fn replay(
    mut log: impl Read,
    image: &mut (impl Write + Seek),
    image_len: u64,
    limit: Option<u64>,
    verbose: bool,
    check: &mut dyn FnMut(&Point) -> Result<(), String>,
) -> Result<Summary, Stop> {
    let mut sup = [0u8; 28];
    read_log(&mut log, &mut sup, "the super block")?;
    if le64(&sup, 0) != MAGIC {
        return Err(Stop::Log("not a dm-log-writes log (bad magic)".into()));
    }
    if le64(&sup, 8) != VERSION {
        return Err(Stop::Log(format!("log version {}, want 1", le64(&sup, 8))));
    }
    let nr_entries = le64(&sup, 16);
    let bs = u32::from_le_bytes([sup[24], sup[25], sup[26], sup[27]]) as usize;
    if bs < 512 || !bs.is_power_of_two() || bs > 1 << 16 {
        return Err(Stop::Log(format!("bad sector size {bs} in the super")));
    }
    let mut block = vec![0u8; bs];
    read_log(&mut log, &mut block[28..], "the super block")?;
    // Data moves in pieces of at most 1 MiB.
    let mut data = vec![0u8; bs.max(1 << 20)];
    let mut sum = Summary::default();
    for i in 0..limit.map_or(nr_entries, |l| l.min(nr_entries)) {
        let what = format!("entry {i} of {nr_entries}");
        read_log(&mut log, &mut block, &what)?;
        let (sector, nr, flags, data_len) = (
            le64(&block, 0),
            le64(&block, 8),
            le64(&block, 16),
            le64(&block, 24),
        );
        let start = sector.checked_mul(bs as u64);
        let len = nr.checked_mul(bs as u64);
        let end = start.zip(len).and_then(|(s, l)| s.checked_add(l));
        let (Some(start), Some(len), Some(end)) = (start, len, end) else {
            return Err(Stop::Log(format!("{what}: range overflows")));
        };
        if end > image_len {
            return Err(Stop::Log(format!(
                "{what}: sectors {sector}+{nr} end beyond the image ({image_len} bytes)"
            )));
        }
        let io = |e: std::io::Error| Stop::Log(format!("{what}: image: {e}"));
        image.seek(SeekFrom::Start(start)).map_err(io)?;
        let mut left = len;
        while left > 0 {
            let n = left.min(data.len() as u64) as usize;
            if flags & DISCARD != 0 {
                data[..n].fill(0);
            } else {
                read_log(&mut log, &mut data[..n], &format!("the data of {what}"))?;
            }
            image.write_all(&data[..n]).map_err(io)?;
            left -= n as u64;
        }
        sum.entries += 1;
        if verbose {
            eprintln!("entry {i}: sector {sector}, {nr} sectors, flags {flags:#x}");
        }
        let kind = match (flags & FLUSH != 0, flags & FUA != 0) {
            (true, true) => Some(("flush+fua", &mut sum.flush_fua)),
            (true, false) => Some(("flush", &mut sum.flush)),
            (false, true) => Some(("fua", &mut sum.fua)),
            (false, false) => None,
        };
        let mut points = Vec::new();
        if let Some((kind, n)) = kind {
            *n += 1;
            points.push((kind, String::new()));
        }
        if flags & MARK != 0 {
            let text = &block[ENTRY_LEN..ENTRY_LEN + (data_len as usize).min(bs - ENTRY_LEN)];
            let text = text.split(|&b| b == 0).next().unwrap_or_default();
            sum.mark += 1;
            points.push(("mark", String::from_utf8_lossy(text).into_owned()));
        }
        for (kind, mark) in points {
            let p = Point {
                kind,
                entry: i,
                mark,
            };
            check(&p).map_err(|e| {
                Stop::Check(format!("check failed at {} point, entry {i}: {e}", p.kind))
            })?;
        }
    }
    Ok(sum)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (mut log, mut img, mut limit, mut cmd) = (None, None, None, Vec::new());
    let (mut verbose, mut dump) = (false, false);
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--log" => log = it.next(),
            "--replay" => img = it.next(),
            "--verbose" => verbose = true,
            "--dump" => dump = true,
            "--limit" => match it.next().and_then(|n| n.parse().ok()) {
                Some(n) => limit = Some(n),
                None => {
                    eprintln!("{USAGE}");
                    return ExitCode::from(2);
                }
            },
            "--check" => {
                cmd = it.by_ref().cloned().collect();
                if cmd.is_empty() {
                    eprintln!("{USAGE}");
                    return ExitCode::from(2);
                }
            }
            _ => {
                eprintln!("{USAGE}");
                return ExitCode::from(2);
            }
        }
    }
    let (Some(log), Some(img)) = (log, img) else {
        eprintln!("{USAGE}");
        return ExitCode::from(2);
    };
    let open = || -> std::io::Result<(File, File, u64)> {
        let l = File::open(log)?;
        let mut i = OpenOptions::new().write(true).open(img)?;
        let n = i.seek(SeekFrom::End(0))?;
        Ok((l, i, n))
    };
    let (l, mut i, n) = match open() {
        Ok(x) => x,
        Err(e) => {
            eprintln!("dmr-log-replay: {e}");
            return ExitCode::from(2);
        }
    };
    let mut number = 0u64;
    let mut check = |p: &Point| -> Result<(), String> {
        number += 1;
        println!("point {number} {} {} {}", p.kind, p.entry, p.mark);
        if dump {
            let s = spare::read_spare(img).map_err(|e| format!("dump: {e}"))?;
            print!("{}", spare::dump_text(&s));
        }
        let Some((prog, rest)) = cmd.split_first() else {
            return Ok(());
        };
        let status = Command::new(prog)
            .args(rest)
            .env("DMR_POINT_KIND", p.kind)
            .env("DMR_POINT_ENTRY", p.entry.to_string())
            .env("DMR_POINT_NUMBER", number.to_string())
            .env("DMR_POINT_MARK", &p.mark)
            .status()
            .map_err(|e| format!("{prog}: {e}"))?;
        if status.success() {
            Ok(())
        } else {
            Err(format!("{} exited with {status}", cmd.join(" ")))
        }
    };
    let l = BufReader::with_capacity(1 << 20, l);
    match replay(l, &mut i, n, limit, verbose, &mut check) {
        Ok(sum) => {
            println!("{}", sum.line());
            ExitCode::SUCCESS
        }
        Err(Stop::Log(e)) => {
            eprintln!("dmr-log-replay: {e}");
            ExitCode::from(2)
        }
        Err(Stop::Check(e)) => {
            eprintln!("dmr-log-replay: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    /// A synthetic log with sector size `bs`.
    struct Log {
        bs: usize,
        entries: Vec<Vec<u8>>,
    }

    impl Log {
        fn new(bs: usize) -> Log {
            Log {
                bs,
                entries: Vec::new(),
            }
        }

        fn entry(&mut self, sector: u64, nr: u64, flags: u64, text: &str, data: &[u8]) {
            let mut b = vec![0u8; self.bs];
            for (k, v) in [sector, nr, flags, text.len() as u64].iter().enumerate() {
                b[k * 8..k * 8 + 8].copy_from_slice(&v.to_le_bytes());
            }
            b[ENTRY_LEN..ENTRY_LEN + text.len()].copy_from_slice(text.as_bytes());
            b.extend_from_slice(data);
            self.entries.push(b);
        }

        /// A write of `nr` blocks filled with `byte`, with `flags`.
        fn write(&mut self, sector: u64, nr: u64, byte: u8, flags: u64) {
            let data = vec![byte; nr as usize * self.bs];
            self.entry(sector, nr, flags, "", &data);
        }

        fn bytes(&self, nr_entries: u64) -> Vec<u8> {
            let mut b = vec![0u8; self.bs];
            b[0..8].copy_from_slice(&MAGIC.to_le_bytes());
            b[8..16].copy_from_slice(&VERSION.to_le_bytes());
            b[16..24].copy_from_slice(&nr_entries.to_le_bytes());
            b[24..28].copy_from_slice(&(self.bs as u32).to_le_bytes());
            for e in &self.entries {
                b.extend_from_slice(e);
            }
            b
        }
    }

    /// Replays `log` onto a zeroed image of `blocks` blocks; returns the
    /// summary and, per point, the point and the image then.
    #[allow(clippy::type_complexity)]
    fn run(log: &[u8], bs: usize, blocks: usize) -> (Result<Summary, Stop>, Vec<(Point, Vec<u8>)>) {
        run_limit(log, bs, blocks, None)
    }

    /// [`run`] of the first `limit` entries.
    #[allow(clippy::type_complexity)]
    fn run_limit(
        log: &[u8],
        bs: usize,
        blocks: usize,
        limit: Option<u64>,
    ) -> (Result<Summary, Stop>, Vec<(Point, Vec<u8>)>) {
        let img = std::cell::RefCell::new(Cursor::new(vec![0u8; blocks * bs]));
        let mut seen = Vec::new();
        let mut check = |p: &Point| {
            seen.push((p.clone(), img.borrow().get_ref().clone()));
            Ok(())
        };
        // The check reads the image the replay writes: hand the replay a
        // writer that goes through the same cell.
        struct W<'a>(&'a std::cell::RefCell<Cursor<Vec<u8>>>);
        impl Write for W<'_> {
            fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
                self.0.borrow_mut().write(b)
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        impl Seek for W<'_> {
            fn seek(&mut self, p: SeekFrom) -> std::io::Result<u64> {
                self.0.borrow_mut().seek(p)
            }
        }
        let r = replay(
            log,
            &mut W(&img),
            (blocks * bs) as u64,
            limit,
            false,
            &mut check,
        );
        (r, seen)
    }

    fn blocks_of(img: &[u8], bs: usize) -> Vec<u8> {
        img.chunks(bs)
            .map(|c| {
                assert!(c.iter().all(|&b| b == c[0]), "block not uniform");
                c[0]
            })
            .collect()
    }

    #[test]
    fn points_at_flush_fua_and_marks() {
        for bs in [512, 4096] {
            let mut l = Log::new(bs);
            l.write(1, 2, 0xaa, 0); // 0
            l.entry(0, 0, FLUSH, "", &[]); // 1: empty flush
            l.write(4, 1, 0xbb, FUA); // 2
            l.write(0, 1, 0xcc, FLUSH | FUA); // 3
            l.entry(0, 0, MARK, "add_remap 8", &[]); // 4
            l.entry(1, 1, DISCARD, "", &[]); // 5: no data follows
            l.write(5, 1, 0xdd, 0); // 6: after the last point
            l.entry(0, 0, MARK, "end", &[]); // 7
            let (r, seen) = run(&l.bytes(8), bs, 8);
            assert_eq!(
                r,
                Ok(Summary {
                    entries: 8,
                    flush: 1,
                    fua: 1,
                    flush_fua: 1,
                    mark: 2
                })
            );
            let got: Vec<_> = seen
                .iter()
                .map(|(p, img)| (p.kind, p.entry, p.mark.as_str(), blocks_of(img, bs)))
                .collect();
            assert_eq!(
                got,
                [
                    ("flush", 1, "", vec![0, 0xaa, 0xaa, 0, 0, 0, 0, 0]),
                    ("fua", 2, "", vec![0, 0xaa, 0xaa, 0, 0xbb, 0, 0, 0]),
                    ("flush+fua", 3, "", vec![0xcc, 0xaa, 0xaa, 0, 0xbb, 0, 0, 0]),
                    (
                        "mark",
                        4,
                        "add_remap 8",
                        vec![0xcc, 0xaa, 0xaa, 0, 0xbb, 0, 0, 0]
                    ),
                    ("mark", 7, "end", vec![0xcc, 0, 0xaa, 0, 0xbb, 0xdd, 0, 0]),
                ]
            );
        }
    }

    #[test]
    fn only_the_counted_entries_are_replayed() {
        let mut l = Log::new(512);
        l.write(0, 1, 1, FUA);
        l.write(1, 1, 2, FUA);
        l.write(2, 1, 3, FUA);
        let (r, seen) = run(&l.bytes(2), 512, 3);
        assert_eq!(r.map(|s| s.entries), Ok(2));
        assert_eq!(seen.len(), 2);
        // --limit: fewer still, and never more than the log counts.
        for (limit, want) in [(1, 1), (2, 2), (9, 3)] {
            let (r, seen) = run_limit(&l.bytes(3), 512, 3, Some(limit));
            assert_eq!(r.map(|s| s.entries), Ok(want));
            assert_eq!(
                blocks_of(&seen[want as usize - 1].1, 512)[..want as usize],
                [1, 2, 3][..want as usize]
            );
        }
    }

    #[test]
    fn truncated_log_is_refused() {
        let mut l = Log::new(4096);
        l.write(0, 2, 1, FUA);
        l.write(2, 1, 2, FUA);
        let full = l.bytes(2);
        // Inside the second entry's data, inside its entry block, and
        // inside the super.
        for (cut, want) in [
            (full.len() - 100, "the data of entry 1 of 2"),
            (4096 * 4 + 10, "entry 1 of 2"),
            (20, "the super block"),
        ] {
            let (r, _) = run(&full[..cut], 4096, 4);
            assert_eq!(
                r,
                Err(Stop::Log(format!("log truncated: it ends inside {want}")))
            );
        }
        // More entries announced than the log holds.
        let (r, seen) = run(&l.bytes(3), 4096, 4);
        assert_eq!(
            r,
            Err(Stop::Log(
                "log truncated: it ends inside entry 2 of 3".into()
            ))
        );
        assert_eq!(seen.len(), 2);
    }

    #[test]
    fn bad_super_and_ranges_are_refused() {
        let l = Log::new(512);
        let mut b = l.bytes(0);
        b[0] ^= 1;
        assert!(matches!(run(&b, 512, 1).0, Err(Stop::Log(e)) if e.contains("bad magic")));
        let mut b = l.bytes(0);
        b[24..28].copy_from_slice(&1000u32.to_le_bytes());
        assert!(matches!(run(&b, 512, 1).0, Err(Stop::Log(e)) if e.contains("sector size 1000")));
        let mut l = Log::new(512);
        l.write(3, 2, 1, 0);
        assert!(
            matches!(run(&l.bytes(1), 512, 4).0, Err(Stop::Log(e)) if e.contains("beyond the image"))
        );
    }

    #[test]
    fn a_failing_check_stops_the_replay() {
        let mut l = Log::new(512);
        l.write(0, 1, 1, FUA);
        l.entry(0, 0, MARK, "m", &[]);
        l.write(0, 1, 2, FUA);
        let mut calls = 0;
        let r = replay(
            Cursor::new(l.bytes(3)),
            &mut Cursor::new(vec![0u8; 512]),
            512,
            None,
            false,
            &mut |p| {
                calls += 1;
                if p.kind == "mark" {
                    Err(format!("mark {} missing a remap", p.mark))
                } else {
                    Ok(())
                }
            },
        );
        assert_eq!(
            r,
            Err(Stop::Check(
                "check failed at mark point, entry 1: mark m missing a remap".into()
            ))
        );
        assert_eq!(calls, 2);
    }
}
