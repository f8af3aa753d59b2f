// SPDX-License-Identifier: GPL-2.0

//! What the files under `/sys/module/dm_remap/stat/<dev>/` say.
//!
//! The counters are kept per CPU by the FFI layer (`src/stats.c`); this module
//! turns a snapshot of them into file contents. `docs/sysfs.md` documents
//! every file.

use core::ffi::CStr;
use core::fmt::{self, Write};

/// Event counters, kept per CPU by `src/stats.c` (`DMR_NR_COUNTERS` of
/// them, checked at compile time), by this id.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum Counter {
    /// Read bios (pieces of bios split at remap boundaries count apiece).
    Reads = 0,
    /// Write bios.
    Writes = 1,
    /// Bytes read.
    ReadBytes = 2,
    /// Bytes written.
    WriteBytes = 3,
    /// Read bios sent to the spare.
    RemappedReads = 4,
    /// Write bios sent to the spare.
    RemappedWrites = 5,
    /// I/O errors from main.
    MainErrors = 6,
    /// I/O errors from the spare.
    SpareErrors = 7,
    /// Remaps made automatically on errors.
    AutoRemaps = 8,
    /// Metadata commits.
    Commits = 9,
    /// Metadata copies repaired.
    Repairs = 10,
    /// Main blocks that became pending after read errors.
    PendingMarked = 11,
    /// Bytes the scanner read from main.
    ScanBytes = 12,
}

/// Number of counters.
pub const COUNTERS: usize = 13;

/// Values set by the live table (`DMR_NR_GAUGES` of them), by this id.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum Gauge {
    /// Remapped blocks.
    Remaps = 0,
    /// Spare pool blocks in use.
    SpareUsed = 1,
    /// Usable spare pool blocks.
    SpareTotal = 2,
    /// Hash table buckets.
    Buckets = 3,
    /// Hash table resizes.
    Resizes = 4,
    /// Pending main blocks.
    Pending = 5,
    /// Retired spare blocks.
    Retired = 6,
    /// 1 in fail mode, else 0.
    FailMode = 7,
    /// Free spare pool blocks.
    SpareFree = 8,
    /// Next main sector the scanner reads.
    ScanPosition = 9,
    /// Full scanner passes.
    ScanPasses = 10,
    /// Bad blocks the scanner found.
    ScanFound = 11,
}

/// Number of gauges.
pub const GAUGES: usize = 12;

/// What a statistics file shows.
#[derive(Clone, Copy, Debug)]
pub enum Show {
    /// A counter.
    Counter(Counter),
    /// A gauge.
    Gauge(Gauge),
    /// A value computed from the others.
    Derived(fn(&Snapshot) -> u64),
    /// The multi-line `summary`.
    Summary,
}

/// One statistics file of a stat directory.
#[derive(Clone, Copy, Debug)]
pub struct File {
    /// Its name (NUL-terminated: sysfs takes it as it is).
    pub name: &'static CStr,
    /// What it shows.
    pub show: Show,
}

/// Every statistics file of `/sys/module/dm_remap/stat/<dev>/` (and of
/// `all_devs`), by the id `src/stats.c` passes back to [`render`]: the one
/// declaration the sysfs attributes, the values, reading a tree back and the
/// tool's names all come from. (`name`, `dev` and `reset` are the C side's
/// own.)
pub const FILES: [File; 30] = [
    File {
        name: c"read_cnt",
        show: Show::Counter(Counter::Reads),
    },
    File {
        name: c"write_cnt",
        show: Show::Counter(Counter::Writes),
    },
    File {
        name: c"total_cnt",
        show: Show::Derived(Snapshot::total),
    },
    File {
        name: c"read_avr_bs",
        show: Show::Derived(read_avg),
    },
    File {
        name: c"write_avr_bs",
        show: Show::Derived(write_avg),
    },
    File {
        name: c"total_avr_bs",
        show: Show::Derived(total_avg),
    },
    File {
        name: c"summary",
        show: Show::Summary,
    },
    File {
        name: c"remaps",
        show: Show::Gauge(Gauge::Remaps),
    },
    File {
        name: c"remapped_reads",
        show: Show::Counter(Counter::RemappedReads),
    },
    File {
        name: c"remapped_writes",
        show: Show::Counter(Counter::RemappedWrites),
    },
    File {
        name: c"spare_used",
        show: Show::Gauge(Gauge::SpareUsed),
    },
    File {
        name: c"spare_total",
        show: Show::Gauge(Gauge::SpareTotal),
    },
    File {
        name: c"hash_buckets",
        show: Show::Gauge(Gauge::Buckets),
    },
    File {
        name: c"hash_resizes",
        show: Show::Gauge(Gauge::Resizes),
    },
    File {
        name: c"main_errors",
        show: Show::Counter(Counter::MainErrors),
    },
    File {
        name: c"spare_errors",
        show: Show::Counter(Counter::SpareErrors),
    },
    File {
        name: c"auto_remaps",
        show: Show::Counter(Counter::AutoRemaps),
    },
    File {
        name: c"metadata_commits",
        show: Show::Counter(Counter::Commits),
    },
    File {
        name: c"metadata_repairs",
        show: Show::Counter(Counter::Repairs),
    },
    File {
        name: c"read_bytes",
        show: Show::Counter(Counter::ReadBytes),
    },
    File {
        name: c"write_bytes",
        show: Show::Counter(Counter::WriteBytes),
    },
    File {
        name: c"pending",
        show: Show::Gauge(Gauge::Pending),
    },
    File {
        name: c"retired",
        show: Show::Gauge(Gauge::Retired),
    },
    File {
        name: c"fail_mode",
        show: Show::Gauge(Gauge::FailMode),
    },
    File {
        name: c"spare_free",
        show: Show::Gauge(Gauge::SpareFree),
    },
    File {
        name: c"scan_position",
        show: Show::Gauge(Gauge::ScanPosition),
    },
    File {
        name: c"scan_passes",
        show: Show::Gauge(Gauge::ScanPasses),
    },
    File {
        name: c"scan_found",
        show: Show::Gauge(Gauge::ScanFound),
    },
    File {
        name: c"pending_marked",
        show: Show::Counter(Counter::PendingMarked),
    },
    File {
        name: c"scan_bytes",
        show: Show::Counter(Counter::ScanBytes),
    },
];

fn read_avg(s: &Snapshot) -> u64 {
    average(s.c(Counter::ReadBytes), s.c(Counter::Reads))
}

fn write_avg(s: &Snapshot) -> u64 {
    average(s.c(Counter::WriteBytes), s.c(Counter::Writes))
}

fn total_avg(s: &Snapshot) -> u64 {
    average(s.total_bytes(), s.total())
}

/// A snapshot of one device's (or all devices') statistics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// Counters, indexed by [`Counter`].
    pub c: [u64; COUNTERS],
    /// Gauges, indexed by [`Gauge`].
    pub g: [u64; GAUGES],
}

/// `bytes / reqs`, or 0 without requests.
pub fn average(bytes: u64, reqs: u64) -> u64 {
    bytes.checked_div(reqs).unwrap_or(0)
}

impl Snapshot {
    fn c(&self, c: Counter) -> u64 {
        self.c[c as usize]
    }

    fn g(&self, g: Gauge) -> u64 {
        self.g[g as usize]
    }

    /// Total requests.
    pub fn total(&self) -> u64 {
        self.c(Counter::Reads)
            .saturating_add(self.c(Counter::Writes))
    }

    /// Total bytes.
    pub fn total_bytes(&self) -> u64 {
        self.c(Counter::ReadBytes)
            .saturating_add(self.c(Counter::WriteBytes))
    }

    /// The value of a one-number file, by its id.
    pub fn value(&self, id: u32) -> Option<u64> {
        match FILES.get(id as usize)?.show {
            Show::Counter(c) => Some(self.c(c)),
            Show::Gauge(g) => Some(self.g(g)),
            Show::Derived(f) => Some(f(self)),
            Show::Summary => None,
        }
    }
}

#[cfg(not(MODULE))]
/// The name of file `id`.
pub fn file_name(id: u32) -> Option<&'static str> {
    FILES.get(id as usize)?.name.to_str().ok()
}

/// The id of the file named `name`.
#[cfg(not(MODULE))]
pub fn file_id(name: &str) -> Option<u32> {
    FILES
        .iter()
        .position(|f| f.name.to_bytes() == name.as_bytes())
        .map(|i| i as u32)
}

/// Writes file `id` of `s`.
pub fn render<W: Write>(id: u32, s: &Snapshot, w: &mut W) -> fmt::Result {
    match FILES.get(id as usize).map(|f| f.show) {
        Some(Show::Summary) => write_summary(s, w),
        _ => match s.value(id) {
            Some(v) => writeln!(w, "{v}"),
            None => Err(fmt::Error),
        },
    }
}

/// The `summary` file: dmp's layout, then the remap block.
pub fn write_summary<W: Write>(s: &Snapshot, w: &mut W) -> fmt::Result {
    for (name, reqs, bytes) in [
        ("read", s.c(Counter::Reads), s.c(Counter::ReadBytes)),
        ("write", s.c(Counter::Writes), s.c(Counter::WriteBytes)),
        ("total", s.total(), s.total_bytes()),
    ] {
        writeln!(
            w,
            "{name}:\n\treqs: {reqs}\n\tavg size: {}",
            average(bytes, reqs)
        )?;
    }
    writeln!(w, "remap:")?;
    writeln!(w, "\tremaps: {}", s.g(Gauge::Remaps))?;
    writeln!(w, "\tremapped reads: {}", s.c(Counter::RemappedReads))?;
    writeln!(w, "\tremapped writes: {}", s.c(Counter::RemappedWrites))?;
    writeln!(
        w,
        "\tspare used: {}/{}",
        s.g(Gauge::SpareUsed),
        s.g(Gauge::SpareTotal)
    )?;
    writeln!(w, "\thash buckets: {}", s.g(Gauge::Buckets))?;
    writeln!(w, "\thash resizes: {}", s.g(Gauge::Resizes))?;
    writeln!(w, "\tmain errors: {}", s.c(Counter::MainErrors))?;
    writeln!(w, "\tspare errors: {}", s.c(Counter::SpareErrors))?;
    writeln!(w, "\tauto remaps: {}", s.c(Counter::AutoRemaps))?;
    writeln!(w, "\tmetadata commits: {}", s.c(Counter::Commits))?;
    writeln!(w, "\tmetadata repairs: {}", s.c(Counter::Repairs))?;
    writeln!(w, "\tpending: {}", s.g(Gauge::Pending))?;
    writeln!(w, "\tpending marked: {}", s.c(Counter::PendingMarked))?;
    writeln!(w, "\tretired: {}", s.g(Gauge::Retired))?;
    writeln!(w, "\tspare free: {}", s.g(Gauge::SpareFree))?;
    writeln!(w, "\tfail mode: {}", s.g(Gauge::FailMode))?;
    writeln!(w, "scan:")?;
    writeln!(w, "\tposition: {}", s.g(Gauge::ScanPosition))?;
    writeln!(w, "\tpasses: {}", s.g(Gauge::ScanPasses))?;
    writeln!(w, "\tfound: {}", s.g(Gauge::ScanFound))?;
    writeln!(w, "\tbytes: {}", s.c(Counter::ScanBytes))
}

#[cfg(not(MODULE))]
impl Snapshot {
    /// Rebuilds a snapshot from the files of a stat directory; `file` returns
    /// a file's number. `None` if one is missing.
    pub fn from_files(file: impl Fn(&str) -> Option<u64>) -> Option<Snapshot> {
        let mut s = Snapshot::default();
        for f in &FILES {
            let name = f.name.to_str().ok()?;
            match f.show {
                Show::Counter(c) => s.c[c as usize] = file(name)?,
                Show::Gauge(g) => s.g[g as usize] = file(name)?,
                Show::Derived(_) | Show::Summary => {}
            }
        }
        Some(s)
    }
}

#[cfg(not(MODULE))]
/// One device, as the exporters see it.
#[derive(Clone, Copy, Debug)]
pub struct Device<'a> {
    /// Kernel name (`dm-0`).
    pub kname: &'a str,
    /// dmsetup name.
    pub name: &'a str,
    /// `major:minor`.
    pub dev: &'a str,
    /// Its statistics.
    pub stats: Snapshot,
}

#[cfg(not(MODULE))]
fn label<W: Write>(w: &mut W, s: &str) -> fmt::Result {
    for c in s.chars() {
        match c {
            '\\' => w.write_str("\\\\")?,
            '"' => w.write_str("\\\"")?,
            '\n' => w.write_str("\\n")?,
            c => w.write_char(c)?,
        }
    }
    Ok(())
}

#[cfg(not(MODULE))]
/// Picks one value out of a snapshot.
type Pick = fn(&Snapshot) -> u64;
#[cfg(not(MODULE))]
/// A metric family: name, type, help, and its series (extra labels, value).
type Family<'a> = (&'a str, &'a str, &'a str, &'a [(&'a str, Pick)]);

#[cfg(not(MODULE))]
/// The stat tree in Prometheus' text exposition format (version 0.0.4), one
/// family per kind of value, labelled by device; `all_devs` is left out
/// (`sum()` over the devices gives it).
pub fn write_prometheus<W: Write>(w: &mut W, devices: &[Device<'_>]) -> fmt::Result {
    let families: [Family<'_>; 19] = [
        (
            "requests_total",
            "counter",
            "Read and write requests.",
            &[
                ("direction=\"read\"", |s| s.c[Counter::Reads as usize]),
                ("direction=\"write\"", |s| s.c[Counter::Writes as usize]),
            ],
        ),
        (
            "bytes_total",
            "counter",
            "Bytes read and written.",
            &[
                ("direction=\"read\"", |s| s.c[Counter::ReadBytes as usize]),
                ("direction=\"write\"", |s| s.c[Counter::WriteBytes as usize]),
            ],
        ),
        (
            "remapped_requests_total",
            "counter",
            "Requests sent to the spare.",
            &[
                ("direction=\"read\"", |s| {
                    s.c[Counter::RemappedReads as usize]
                }),
                ("direction=\"write\"", |s| {
                    s.c[Counter::RemappedWrites as usize]
                }),
            ],
        ),
        (
            "remaps",
            "gauge",
            "Remapped blocks.",
            &[("", |s| s.g[Gauge::Remaps as usize])],
        ),
        (
            "spare_blocks",
            "gauge",
            "Spare pool blocks in use, free and usable.",
            &[
                ("state=\"used\"", |s| s.g[Gauge::SpareUsed as usize]),
                ("state=\"free\"", |s| s.g[Gauge::SpareFree as usize]),
                ("state=\"total\"", |s| s.g[Gauge::SpareTotal as usize]),
            ],
        ),
        (
            "hash_buckets",
            "gauge",
            "Buckets of the remap hash table.",
            &[("", |s| s.g[Gauge::Buckets as usize])],
        ),
        (
            "hash_resizes_total",
            "counter",
            "Resizes of the remap hash table.",
            &[("", |s| s.g[Gauge::Resizes as usize])],
        ),
        (
            "io_errors_total",
            "counter",
            "I/O errors seen, by device.",
            &[
                ("source=\"main\"", |s| s.c[Counter::MainErrors as usize]),
                ("source=\"spare\"", |s| s.c[Counter::SpareErrors as usize]),
            ],
        ),
        (
            "auto_remaps_total",
            "counter",
            "Remaps made on I/O errors.",
            &[("", |s| s.c[Counter::AutoRemaps as usize])],
        ),
        (
            "metadata_commits_total",
            "counter",
            "Metadata commits.",
            &[("", |s| s.c[Counter::Commits as usize])],
        ),
        (
            "metadata_repairs_total",
            "counter",
            "Metadata copies repaired.",
            &[("", |s| s.c[Counter::Repairs as usize])],
        ),
        (
            "pending_blocks",
            "gauge",
            "Main blocks whose reads failed, waiting for a write.",
            &[("", |s| s.g[Gauge::Pending as usize])],
        ),
        (
            "retired_blocks",
            "gauge",
            "Spare blocks retired after write errors.",
            &[("", |s| s.g[Gauge::Retired as usize])],
        ),
        (
            "fail_mode",
            "gauge",
            "1 while writes are refused after a failed metadata commit.",
            &[("", |s| s.g[Gauge::FailMode as usize])],
        ),
        (
            "scan_passes_total",
            "counter",
            "Full passes of the background scanner.",
            &[("", |s| s.g[Gauge::ScanPasses as usize])],
        ),
        (
            "scan_bytes_total",
            "counter",
            "Bytes the background scanner read.",
            &[("", |s| s.c[Counter::ScanBytes as usize])],
        ),
        (
            "scan_position_sectors",
            "gauge",
            "Next main sector the background scanner reads.",
            &[("", |s| s.g[Gauge::ScanPosition as usize])],
        ),
        (
            "scan_found_total",
            "counter",
            "Bad blocks the background scanner found.",
            &[("", |s| s.g[Gauge::ScanFound as usize])],
        ),
        (
            "pending_marked_total",
            "counter",
            "Main blocks that became pending after read errors.",
            &[("", |s| s.c[Counter::PendingMarked as usize])],
        ),
    ];
    for (name, kind, help, series) in families {
        writeln!(w, "# HELP dm_remap_{name} {help}")?;
        writeln!(w, "# TYPE dm_remap_{name} {kind}")?;
        for d in devices {
            for (extra, pick) in series {
                write!(w, "dm_remap_{name}{{device=\"")?;
                label(w, d.kname)?;
                w.write_str("\",name=\"")?;
                label(w, d.name)?;
                w.write_char('"')?;
                if !extra.is_empty() {
                    write!(w, ",{extra}")?;
                }
                writeln!(w, "}} {}", pick(&d.stats))?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    extern crate std;
    use std::string::String;

    #[test]
    fn every_counter_and_gauge_has_one_file() {
        let mut c = [0; COUNTERS];
        let mut g = [0; GAUGES];
        for f in &FILES {
            match f.show {
                Show::Counter(x) => c[x as usize] += 1,
                Show::Gauge(x) => g[x as usize] += 1,
                Show::Derived(_) | Show::Summary => {}
            }
        }
        assert_eq!((c, g), ([1; COUNTERS], [1; GAUGES]));
        let mut names: std::vec::Vec<_> = FILES.iter().map(|f| f.name).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), FILES.len());
    }

    #[test]
    fn files_round_trip() {
        let s = snap();
        let back = Snapshot::from_files(|f| {
            let id = file_id(f)?;
            let mut out = String::new();
            render(id, &s, &mut out).ok()?;
            out.trim().parse().ok()
        })
        .unwrap();
        assert_eq!(back, s);
    }

    #[test]
    fn prometheus_exports_every_counter_and_gauge_once() {
        // Values no sum of two others gives.
        let mut s = Snapshot::default();
        for (i, c) in s.c.iter_mut().enumerate() {
            *c = 1_000_003 * (i as u64 + 1);
        }
        for (i, g) in s.g.iter_mut().enumerate() {
            *g = 7 + 1_000_003_000 * (i as u64 + 1);
        }
        let devs = [Device {
            kname: "dm-0",
            name: "a",
            dev: "253:0",
            stats: s,
        }];
        let mut out = String::new();
        write_prometheus(&mut out, &devs).unwrap();
        let values: std::vec::Vec<u64> = out
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| l.rsplit(' ').next()?.parse().ok())
            .collect();
        for v in s.c.iter().chain(s.g.iter()) {
            assert_eq!(
                values.iter().filter(|&&x| x == *v).count(),
                1,
                "{v} in\n{out}"
            );
        }
    }

    #[test]
    fn prometheus_export_parses() {
        let s = snap();
        let devs = [
            Device {
                kname: "dm-0",
                name: "a",
                dev: "253:0",
                stats: s,
            },
            Device {
                kname: "dm-1",
                name: "b",
                dev: "253:1",
                stats: Snapshot::default(),
            },
        ];
        let mut out = String::new();
        write_prometheus(&mut out, &devs).unwrap();
        assert!(out.contains(
            "dm_remap_requests_total{device=\"dm-0\",name=\"a\",direction=\"write\"} 100\n"
        ));
        let lines = out.lines().map(|l| Ok(String::from(l)));
        let scrape = prometheus_parse::Scrape::parse(lines).unwrap();
        let writes = scrape
            .samples
            .iter()
            .find(|x| {
                x.metric == "dm_remap_bytes_total"
                    && x.labels.get("device") == Some("dm-0")
                    && x.labels.get("direction") == Some("write")
            })
            .unwrap();
        assert!(matches!(writes.value, prometheus_parse::Value::Counter(v) if v == 409600.0));
        assert_eq!(scrape.samples.len(), 2 * 25);
        assert_eq!(scrape.docs.len(), 19);
    }

    fn snap() -> Snapshot {
        let mut s = Snapshot::default();
        s.c[Counter::Reads as usize] = 50;
        s.c[Counter::ReadBytes as usize] = 50 * 8192;
        s.c[Counter::Writes as usize] = 100;
        s.c[Counter::WriteBytes as usize] = 100 * 4096;
        s.c[Counter::RemappedWrites as usize] = 3;
        s.c[Counter::Commits as usize] = 2;
        s.g[Gauge::Remaps as usize] = 8;
        s.g[Gauge::SpareUsed as usize] = 8;
        s.g[Gauge::SpareTotal as usize] = 28672;
        s.g[Gauge::Buckets as usize] = 64;
        s
    }

    fn file(id: u32, s: &Snapshot) -> String {
        let mut out = String::new();
        render(id, s, &mut out).unwrap();
        out
    }

    #[test]
    fn dmp_files() {
        let s = snap();
        assert_eq!(file(0, &s), "50\n");
        assert_eq!(file(1, &s), "100\n");
        assert_eq!(file(2, &s), "150\n");
        assert_eq!(file(3, &s), "8192\n");
        assert_eq!(file(4, &s), "4096\n");
        assert_eq!(file(5, &s), "5461\n");
        assert_eq!(file_name(5), Some("total_avr_bs"));
        assert_eq!(file(19, &s), "409600\n");
        assert_eq!(file_name(30), None);
    }

    #[test]
    fn no_division_by_zero() {
        let s = Snapshot::default();
        for id in 0..30 {
            let _ = file(id, &s);
        }
        assert_eq!(file(5, &s), "0\n");
        let mut w = Snapshot::default();
        w.c[Counter::Writes as usize] = 2;
        w.c[Counter::WriteBytes as usize] = 1024;
        // Reads' average divides by reads, not by all requests.
        assert_eq!(file(3, &w), "0\n");
        assert_eq!(file(4, &w), "512\n");
    }

    #[test]
    fn summary_layout() {
        assert_eq!(
            file(6, &snap()),
            "read:\n\treqs: 50\n\tavg size: 8192\n\
             write:\n\treqs: 100\n\tavg size: 4096\n\
             total:\n\treqs: 150\n\tavg size: 5461\n\
             remap:\n\tremaps: 8\n\tremapped reads: 0\n\tremapped writes: 3\n\
             \tspare used: 8/28672\n\thash buckets: 64\n\thash resizes: 0\n\
             \tmain errors: 0\n\tspare errors: 0\n\tauto remaps: 0\n\
             \tmetadata commits: 2\n\tmetadata repairs: 0\n\tpending: 0\n\
             \tpending marked: 0\n\tretired: 0\n\tspare free: 0\n\tfail mode: 0\n\
             scan:\n\tposition: 0\n\tpasses: 0\n\tfound: 0\n\tbytes: 0\n"
        );
    }
}
