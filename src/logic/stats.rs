// SPDX-License-Identifier: GPL-2.0

//! What the files under `/sys/module/dm_remap/stat/<dev>/` say.
//!
//! The counters are kept per CPU by the FFI layer (`src/stats.c`); this module
//! turns a snapshot of them into file contents. `docs/sysfs.md` documents
//! every file.

use core::fmt::{self, Write};

/// Event counters (same order as `enum dmr_counter` in
/// `include/dm_remap_stats.h`).
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

/// Values set by the live table (same order as `enum dmr_gauge`).
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

#[cfg(not(MODULE))]
/// The one-value files and `summary`, by the id `src/stats.c` passes (its
/// `DMR_A_*`).
pub const FILES: [&str; 30] = [
    "read_cnt",
    "write_cnt",
    "total_cnt",
    "read_avr_bs",
    "write_avr_bs",
    "total_avr_bs",
    "summary",
    "remaps",
    "remapped_reads",
    "remapped_writes",
    "spare_used",
    "spare_total",
    "hash_buckets",
    "hash_resizes",
    "main_errors",
    "spare_errors",
    "auto_remaps",
    "metadata_commits",
    "metadata_repairs",
    "read_bytes",
    "write_bytes",
    "pending",
    "retired",
    "fail_mode",
    "spare_free",
    "scan_position",
    "scan_passes",
    "scan_found",
    "pending_marked",
    "scan_bytes",
];

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
        Some(match id {
            0 => self.c(Counter::Reads),
            1 => self.c(Counter::Writes),
            2 => self.total(),
            3 => average(self.c(Counter::ReadBytes), self.c(Counter::Reads)),
            4 => average(self.c(Counter::WriteBytes), self.c(Counter::Writes)),
            5 => average(self.total_bytes(), self.total()),
            7 => self.g(Gauge::Remaps),
            8 => self.c(Counter::RemappedReads),
            9 => self.c(Counter::RemappedWrites),
            10 => self.g(Gauge::SpareUsed),
            11 => self.g(Gauge::SpareTotal),
            12 => self.g(Gauge::Buckets),
            13 => self.g(Gauge::Resizes),
            14 => self.c(Counter::MainErrors),
            15 => self.c(Counter::SpareErrors),
            16 => self.c(Counter::AutoRemaps),
            17 => self.c(Counter::Commits),
            18 => self.c(Counter::Repairs),
            19 => self.c(Counter::ReadBytes),
            20 => self.c(Counter::WriteBytes),
            21 => self.g(Gauge::Pending),
            22 => self.g(Gauge::Retired),
            23 => self.g(Gauge::FailMode),
            24 => self.g(Gauge::SpareFree),
            25 => self.g(Gauge::ScanPosition),
            26 => self.g(Gauge::ScanPasses),
            27 => self.g(Gauge::ScanFound),
            28 => self.c(Counter::PendingMarked),
            29 => self.c(Counter::ScanBytes),
            _ => return None,
        })
    }
}

#[cfg(not(MODULE))]
/// The name of file `id`.
pub fn file_name(id: u32) -> Option<&'static str> {
    FILES.get(id as usize).copied()
}

/// Writes file `id` of `s`.
pub fn render<W: Write>(id: u32, s: &Snapshot, w: &mut W) -> fmt::Result {
    if id == 6 {
        return write_summary(s, w);
    }
    match s.value(id) {
        Some(v) => writeln!(w, "{v}"),
        None => Err(fmt::Error),
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
/// Sysfs files that hold each counter and gauge (for reading the tree back).
const COUNTER_FILES: [&str; COUNTERS] = [
    "read_cnt",
    "write_cnt",
    "read_bytes",
    "write_bytes",
    "remapped_reads",
    "remapped_writes",
    "main_errors",
    "spare_errors",
    "auto_remaps",
    "metadata_commits",
    "metadata_repairs",
    "pending_marked",
    "scan_bytes",
];
#[cfg(not(MODULE))]
const GAUGE_FILES: [&str; GAUGES] = [
    "remaps",
    "spare_used",
    "spare_total",
    "hash_buckets",
    "hash_resizes",
    "pending",
    "retired",
    "fail_mode",
    "spare_free",
    "scan_position",
    "scan_passes",
    "scan_found",
];

#[cfg(not(MODULE))]
impl Snapshot {
    /// Rebuilds a snapshot from the files of a stat directory; `file` returns
    /// a file's number. `None` if one is missing.
    pub fn from_files(file: impl Fn(&str) -> Option<u64>) -> Option<Snapshot> {
        let mut s = Snapshot::default();
        for (i, f) in COUNTER_FILES.iter().enumerate() {
            s.c[i] = file(f)?;
        }
        for (i, f) in GAUGE_FILES.iter().enumerate() {
            s.g[i] = file(f)?;
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
/// Writes `s` as a JSON string literal.
pub fn json_str<W: Write>(w: &mut W, s: &str) -> fmt::Result {
    w.write_char('"')?;
    for c in s.chars() {
        match c {
            '"' => w.write_str("\\\"")?,
            '\\' => w.write_str("\\\\")?,
            c if (c as u32) < 0x20 => write!(w, "\\u{:04x}", c as u32)?,
            c => w.write_char(c)?,
        }
    }
    w.write_char('"')
}

#[cfg(not(MODULE))]
fn json_values<W: Write>(w: &mut W, s: &Snapshot) -> fmt::Result {
    let mut first = true;
    for (id, f) in FILES.iter().enumerate() {
        if let Some(v) = s.value(id as u32) {
            if !first {
                w.write_char(',')?;
            }
            first = false;
            write!(w, "\"{f}\":{v}")?;
        }
    }
    Ok(())
}

#[cfg(not(MODULE))]
/// The stat tree as JSON: `{"devices":{"dm-0":{"name":..,"dev":..,<files>}},
/// "all_devs":{<files>}}`, every one-value file as a number.
pub fn write_json<W: Write>(w: &mut W, devices: &[Device<'_>], all: &Snapshot) -> fmt::Result {
    w.write_str("{\"devices\":{")?;
    for (i, d) in devices.iter().enumerate() {
        if i > 0 {
            w.write_char(',')?;
        }
        json_str(w, d.kname)?;
        w.write_str(":{\"name\":")?;
        json_str(w, d.name)?;
        w.write_str(",\"dev\":")?;
        json_str(w, d.dev)?;
        w.write_char(',')?;
        json_values(w, &d.stats)?;
        w.write_char('}')?;
    }
    w.write_str("},\"all_devs\":{")?;
    json_values(w, all)?;
    w.write_str("}}")
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
    let families: [Family<'_>; 16] = [
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
            "Spare pool blocks in use and usable.",
            &[
                ("state=\"used\"", |s| s.g[Gauge::SpareUsed as usize]),
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
    fn files_round_trip() {
        let s = snap();
        let back = Snapshot::from_files(|f| {
            let id = FILES.iter().position(|x| *x == f)? as u32;
            let mut out = String::new();
            render(id, &s, &mut out).ok()?;
            out.trim().parse().ok()
        })
        .unwrap();
        assert_eq!(back, s);
    }

    #[test]
    fn json_export() {
        let s = snap();
        let devs = [Device {
            kname: "dm-0",
            name: "we\"ird",
            dev: "253:0",
            stats: s,
        }];
        let mut out = String::new();
        write_json(&mut out, &devs, &s).unwrap();
        assert!(out.starts_with(
            "{\"devices\":{\"dm-0\":{\"name\":\"we\\\"ird\",\"dev\":\"253:0\",\"read_cnt\":50,"
        ));
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["devices"]["dm-0"]["total_avr_bs"], 5461);
        assert_eq!(v["devices"]["dm-0"]["name"], "we\"ird");
        assert_eq!(v["all_devs"]["write_bytes"], 409600);
        assert!(v["all_devs"].get("summary").is_none());
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
        assert_eq!(scrape.samples.len(), 2 * 21);
        assert_eq!(scrape.docs.len(), 16);
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
