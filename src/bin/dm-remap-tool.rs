// SPDX-License-Identifier: GPL-2.0

//! `dm-remap-tool`: checks, dumps and exports the metadata on a dm-remap
//! spare (a block device or an image file), with the same format code as
//! the kernel module and CRCs by `crc32fast`; shows, activates and monitors
//! remap devices. `dm-remap-tool --help` and `dm-remap-tool help COMMAND`
//! list the commands and their options (docs/man/dm-remap-tool.8 has them
//! with examples).

mod export;
mod import;
mod lost;
mod migrate;
mod remaptab;
mod spare;
mod status;

use clap::{ArgGroup, Args, Parser, Subcommand, ValueEnum};
use dm_remap::logic::remaps as remaps_io;
use dm_remap::logic::stats;
use serde::ser::{SerializeMap, Serializer};
use serde::Serialize;
use spare::{
    dump_text, extents, pending_sectors, read_spare, retired_sectors, state_text, uuid, Spare,
};
use std::fmt::Write as _;
use std::process::ExitCode;

/// The remaptab `activate` and `deactivate` read unless given `--tab`.
const REMAPTAB: &str = "/etc/remaptab";

/// Runs `dmsetup ARGS`; its stdout, or its stderr as the error.
fn dmsetup(args: &[&str]) -> Result<String, String> {
    let out = std::process::Command::new("dmsetup")
        .args(args)
        .output()
        .map_err(|e| format!("cannot run dmsetup: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
    }
}

/// `major:minor` of block device `path`.
fn devt(path: &str) -> Result<String, String> {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let m = std::fs::metadata(path).map_err(|e| format!("{path}: {e}"))?;
    if !m.file_type().is_block_device() {
        return Err(format!("{path} is not a block device"));
    }
    let r = m.rdev();
    let major = ((r >> 8) & 0xfff) | ((r >> 32) & !0xfff);
    let minor = (r & 0xff) | ((r >> 12) & !0xff);
    Ok(format!("{major}:{minor}"))
}

/// Size of block device `path` in 512-byte sectors.
fn sectors(path: &str) -> Result<u64, String> {
    use std::io::{Seek, SeekFrom};
    let mut f = std::fs::File::open(path).map_err(|e| format!("{path}: {e}"))?;
    let bytes = f
        .seek(SeekFrom::End(0))
        .map_err(|e| format!("{path}: {e}"))?;
    Ok(bytes / 512)
}

/// The entries of remaptab `tab` that `names` select (all when empty).
fn selected(tab: &str, names: &[&str]) -> Result<Vec<remaptab::Entry>, String> {
    let text = std::fs::read_to_string(tab).map_err(|e| format!("{tab}: {e}"))?;
    let entries = remaptab::parse(&text).map_err(|e| format!("{tab}: {e}"))?;
    if let Some(n) = names
        .iter()
        .find(|n| !entries.iter().any(|e| e.name == **n))
    {
        return Err(format!("{tab} has no device named '{n}'"));
    }
    Ok(entries
        .into_iter()
        .filter(|e| names.is_empty() || names.contains(&e.name.as_str()))
        .collect())
}

/// The live table of dm device `name` (empty for a device without one), or
/// `None` when there is no such device.
fn live_table(name: &str) -> Option<String> {
    dmsetup(&["table", name]).ok()
}

/// Activates one entry: creates its device unless it is already there
/// (then checks it is this entry's). Returns what it did.
fn activate_one(e: &remaptab::Entry) -> Result<String, String> {
    let main = std::fs::canonicalize(remaptab::device_spec(&e.main)?)
        .map_err(|err| format!("main {}: {err}", e.main))?;
    let spare = std::fs::canonicalize(remaptab::device_spec(&e.spare)?)
        .map_err(|err| format!("spare {}: {err}", e.spare))?;
    let (main, spare) = (main.to_string_lossy(), spare.to_string_lossy());
    let (main_dt, spare_dt) = (devt(&main)?, devt(&spare)?);
    if let Some(t) = live_table(&e.name) {
        let w: Vec<&str> = t.split_whitespace().collect();
        return if w.get(2..5) == Some(&["remap", main_dt.as_str(), spare_dt.as_str()][..]) {
            Ok("already active".into())
        } else {
            Err(format!(
                "a device named {} exists with another table ({}); not touched",
                e.name,
                t.trim()
            ))
        };
    }
    let size = sectors(&main)?;
    // A spare that holds another pair's metadata is refused here with the
    // reason (the target refuses it too, without writing).
    let s = spare::read_spare(&spare)?;
    if let Some(h) = s.best {
        if h.identity.main_sectors > size {
            return Err(format!(
                "spare {spare} holds the metadata of another device pair (its main has {} \
                 sectors, {main} has {size}); not activated",
                h.identity.main_sectors
            ));
        }
    } else if !s.blank && !e.features.iter().any(|f| f == "format") {
        return Err(format!(
            "spare {spare} holds neither dm-remap metadata nor blank space; add 'format' to \
             its options to format it; not activated"
        ));
    }
    let table = e.table(size, &main, &spare);
    dmsetup(&["create", &e.name, "--table", &table]).map_err(|err| {
        format!("dmsetup create failed ({err}); the kernel log says why (dmesg | grep remap)")
    })?;
    Ok(format!("activated: {table}"))
}

/// Removes one entry's device, if it is there and a remap device.
fn deactivate_one(e: &remaptab::Entry) -> Result<String, String> {
    let Some(t) = live_table(&e.name) else {
        return Ok("not active".into());
    };
    if t.split_whitespace().nth(2) != Some("remap") {
        return Err(format!(
            "{} is not a remap device ({}); not touched",
            e.name,
            t.trim()
        ));
    }
    dmsetup(&["remove", &e.name]).map_err(|err| format!("dmsetup remove failed: {err}"))?;
    Ok("deactivated".into())
}

/// `generate [--tab FILE] DIR [EARLY_DIR LATE_DIR]`: as a systemd
/// generator (scripts/systemd/dm-remap-generator runs it), writes a unit per
/// device of the remaptab into DIR, wanted by `sysinit.target` and required
/// by the mapped device's device unit. No remaptab: nothing. A remaptab with
/// an error: nothing, and the error (the journal shows a generator's
/// stderr).
fn generate(tab: &str, dir: &std::path::Path) -> ExitCode {
    let text = match std::fs::read_to_string(tab) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("dm-remap-tool: {tab}: {e}");
            return ExitCode::FAILURE;
        }
    };
    let units = remaptab::parse(&text)
        .map_err(|e| format!("{tab}: {e}; no units generated"))
        .and_then(|entries| {
            entries
                .iter()
                .map(|e| {
                    remaptab::unit(tab, e).map_err(|err| format!("{tab}: line {}: {err}", e.line))
                })
                .collect::<Result<Vec<_>, _>>()
        });
    let units = match units {
        Ok(u) => u,
        Err(e) => {
            eprintln!("dm-remap-tool: {e}");
            return ExitCode::FAILURE;
        }
    };
    let write = |u: &remaptab::Unit| -> std::io::Result<()> {
        std::fs::write(dir.join(&u.name), &u.text)?;
        for by in [
            format!("{}.wants", u.wanted_by),
            format!("{}.requires", u.required_by),
        ] {
            let d = dir.join(by);
            std::fs::create_dir_all(&d)?;
            let link = d.join(&u.name);
            let _ = std::fs::remove_file(&link);
            std::os::unix::fs::symlink(format!("../{}", u.name), link)?;
        }
        Ok(())
    };
    for u in &units {
        if let Err(e) = write(u) {
            eprintln!(
                "dm-remap-tool: writing {} in {}: {e}",
                u.name,
                dir.display()
            );
            return ExitCode::FAILURE;
        }
    }
    ExitCode::SUCCESS
}

/// The metadata of spare `path`, for a command that needs some (`verb`
/// says what it would do with it): refused with exit status 2 when the spare
/// cannot be read, 1 when it holds none; the problems `check` would list
/// are warnings.
fn spare_with_metadata(path: &str, verb: &str) -> Result<Spare, (u8, String)> {
    let s = read_spare(path).map_err(|e| (2, e))?;
    if s.best.is_none() {
        return Err((
            1,
            format!(
                "{path} holds no valid dm-remap metadata ({}); nothing to {verb}",
                if s.blank {
                    "blank"
                } else {
                    "dm-remap-tool check says why"
                }
            ),
        ));
    }
    for p in &s.problems {
        eprintln!("dm-remap-tool: warning: {path}: {p}");
    }
    Ok(s)
}

/// What `export` prints.
#[derive(Args, Debug)]
#[command(group(ArgGroup::new("what").required(true).args(["dm_linear", "format"])))]
struct Export {
    /// A dm-linear table (on stdout) that maps main's sectors to main and
    /// the remapped ones to the spare: the same data without the module
    #[arg(long, num_args = 2, value_names = ["MAIN", "SPARE"])]
    dm_linear: Option<Vec<String>>,
    /// A list of the remapped and pending blocks of the spare's main:
    /// sectors (one start sector a line), badblocks (`badblocks -o`
    /// numbering, in --block-size units) or md (`start length` in sectors,
    /// runs merged)
    #[arg(long, value_enum, value_name = "FORMAT", requires = "spare")]
    format: Option<ListKind>,
    /// With --format badblocks: the block size of the numbers (a power of
    /// two from 512; default the remap block size)
    #[arg(long, value_name = "BYTES", value_parser = block_size, requires = "format")]
    block_size: Option<u64>,
    /// List only the remapped blocks
    #[arg(long, conflicts_with = "pending", requires = "format")]
    remapped: bool,
    /// List only the pending blocks (reads failed, no write since)
    #[arg(long, requires = "format")]
    pending: bool,
    /// The spare, with --format
    #[arg(conflicts_with = "dm_linear")]
    spare: Option<String>,
}

/// The block lists `export --format` prints.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum ListKind {
    /// One start sector a line.
    Sectors,
    /// `badblocks -o` block numbers.
    Badblocks,
    /// md's `bad_blocks` format, `start length` in sectors.
    Md,
}

fn block_size(v: &str) -> Result<u64, String> {
    v.parse::<u64>()
        .ok()
        .filter(|v| *v >= 512 && v.is_power_of_two())
        .ok_or_else(|| "a power of two from 512".to_string())
}

/// `export`: the table or list, or (exit status, reason).
fn export_command(args: &Export) -> Result<String, (u8, String)> {
    let fail = |e: String| (1, e);
    if let Some([main, spare]) = args.dm_linear.as_deref() {
        let s = spare_with_metadata(spare, "export")?;
        let h = s.best.ok_or_else(|| fail("no metadata".into()))?;
        let len = sectors(main).map_err(fail)?;
        if len < h.identity.main_sectors {
            return Err(fail(format!(
                "{main} has {len} sectors, but {spare} holds the metadata of a main of {}: \
                 not the main of this spare",
                h.identity.main_sectors
            )));
        }
        return Ok(export::dm_linear(&extents(&s), len, main, spare));
    }
    let (Some(kind), Some(spare)) = (args.format, args.spare.as_deref()) else {
        return Err((2, "--dm-linear MAIN SPARE or --format FORMAT SPARE".into()));
    };
    let f = match (kind, args.block_size) {
        (ListKind::Sectors | ListKind::Md, Some(_)) => {
            return Err((
                2,
                "--block-size goes with --format badblocks only (sectors and md count \
                 512-byte sectors)"
                    .into(),
            ))
        }
        (ListKind::Sectors, None) => export::ListFormat::Sectors,
        (ListKind::Md, None) => export::ListFormat::Md,
        (ListKind::Badblocks, u) => export::ListFormat::Badblocks {
            unit: u.unwrap_or(0),
        },
    };
    let s = spare_with_metadata(spare, "export")?;
    let bs = u64::from(
        s.best
            .ok_or_else(|| fail("no metadata".into()))?
            .identity
            .block_size,
    ) / 512;
    let f = match f {
        export::ListFormat::Badblocks { unit: 0 } => {
            export::ListFormat::Badblocks { unit: bs * 512 }
        }
        f => f,
    };
    let mut starts: Vec<u64> = Vec::new();
    if !args.pending {
        starts.extend(
            extents(&s)
                .iter()
                .flat_map(|&(m, _, n)| (m..m + n).step_by(bs as usize)),
        );
    }
    if !args.remapped {
        starts.extend(pending_sectors(&s));
    }
    starts.sort_unstable();
    starts.dedup();
    Ok(export::block_list(&starts, bs, f))
}

/// `activate` / `deactivate [--tab FILE] [NAME...]`.
fn remaptab_command(activate: bool, tab: &str, names: &[String]) -> ExitCode {
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let entries = match selected(tab, &names) {
        Ok(e) => e,
        Err(e) => {
            eprintln!("dm-remap-tool: {e}");
            return ExitCode::from(2);
        }
    };
    let mut failed = false;
    for e in &entries {
        let r = if activate {
            activate_one(e)
        } else {
            deactivate_one(e)
        };
        match r {
            Ok(what) => println!("{}: {what}", e.name),
            Err(why) => {
                eprintln!("dm-remap-tool: {}: {why}", e.name);
                failed = true;
            }
        }
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// Columns of the monitor's CSV after `t_ms,device,name`.
const SERIES: [&str; 10] = [
    "read_cnt",
    "write_cnt",
    "read_bytes",
    "write_bytes",
    "remapped_reads",
    "remapped_writes",
    "remaps",
    "spare_used",
    "spare_total",
    "metadata_commits",
];

/// Samples the stat tree every `interval_ms` (`count` times, or until
/// killed), one CSV line per device and sample, to stdout.
fn monitor(dir: &str, interval_ms: u64, count: Option<u64>) -> ExitCode {
    let start = std::time::Instant::now();
    println!("t_ms,device,name,{}", SERIES.join(","));
    let mut n = 0u64;
    loop {
        let t = start.elapsed().as_millis();
        let (devs, all) = match read_stats(dir) {
            Ok(x) => x,
            Err(e) => {
                eprintln!("dm-remap-tool: {e}");
                return ExitCode::from(2);
            }
        };
        let mut out = String::new();
        let rows = devs
            .iter()
            .map(|(k, n, _, s)| (k.as_str(), n.as_str(), s))
            .chain(std::iter::once(("all_devs", "", &all)));
        for (k, name, s) in rows {
            let _ = write!(out, "{t},{k},{name}");
            for f in SERIES {
                let id = stats::file_id(f).unwrap_or(0);
                let _ = write!(out, ",{}", s.value(id).unwrap_or(0));
            }
            out.push('\n');
        }
        print!("{out}");
        n += 1;
        if count.is_some_and(|c| n >= c) {
            return ExitCode::SUCCESS;
        }
        std::thread::sleep(std::time::Duration::from_millis(interval_ms));
    }
}

/// Where the module keeps its statistics.
const STAT_DIR: &str = "/sys/module/dm_remap/stat";

/// Reads a statistics directory: (kernel name, name, dev, snapshot) per
/// device, and all_devs.
#[allow(clippy::type_complexity)]
fn read_stats(
    dir: &str,
) -> Result<
    (
        Vec<(String, String, String, stats::Snapshot)>,
        stats::Snapshot,
    ),
    String,
> {
    let read = |d: &std::path::Path, f: &str| -> Option<String> {
        std::fs::read_to_string(d.join(f))
            .ok()
            .map(|s| s.trim().to_string())
    };
    let snapshot = |d: &std::path::Path| {
        stats::Snapshot::from_files(|f| read(d, f)?.parse().ok())
            .ok_or_else(|| format!("{}: missing or bad statistics files", d.display()))
    };
    let mut devices = Vec::new();
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .map_err(|e| format!("{dir}: {e}"))?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.is_dir() && p.file_name().is_some_and(|n| n != "all_devs"))
        .collect();
    entries.sort();
    for d in entries {
        let kname = d
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let name = read(&d, "name").unwrap_or_default();
        let dev = read(&d, "dev").unwrap_or_default();
        devices.push((kname, name, dev, snapshot(&d)?));
    }
    let all = snapshot(&std::path::Path::new(dir).join("all_devs"))?;
    Ok((devices, all))
}

/// One snapshot's files as a JSON object, in the tree's order; `who` adds
/// a device's `name` and `dev` first.
struct Values<'a> {
    who: Option<(&'a str, &'a str)>,
    stats: &'a stats::Snapshot,
}

impl Serialize for Values<'_> {
    fn serialize<S: Serializer>(&self, ser: S) -> Result<S::Ok, S::Error> {
        let mut m = ser.serialize_map(None)?;
        if let Some((name, dev)) = self.who {
            m.serialize_entry("name", name)?;
            m.serialize_entry("dev", dev)?;
        }
        for id in 0..stats::FILES.len() as u32 {
            if let (Some(f), Some(v)) = (stats::file_name(id), self.stats.value(id)) {
                m.serialize_entry(f, &v)?;
            }
        }
        m.end()
    }
}

/// The stat tree as JSON: `{"devices":{"dm-0":{"name":..,"dev":..,<files>}},
/// "all_devs":{<files>}}`, every one-value file as a number.
struct Tree<'a> {
    devices: &'a [stats::Device<'a>],
    all: &'a stats::Snapshot,
}

impl Serialize for Tree<'_> {
    fn serialize<S: Serializer>(&self, ser: S) -> Result<S::Ok, S::Error> {
        struct Devices<'a>(&'a [stats::Device<'a>]);
        impl Serialize for Devices<'_> {
            fn serialize<S: Serializer>(&self, ser: S) -> Result<S::Ok, S::Error> {
                let mut m = ser.serialize_map(Some(self.0.len()))?;
                for d in self.0 {
                    let v = Values {
                        who: Some((d.name, d.dev)),
                        stats: &d.stats,
                    };
                    m.serialize_entry(d.kname, &v)?;
                }
                m.end()
            }
        }
        let mut m = ser.serialize_map(Some(2))?;
        m.serialize_entry("devices", &Devices(self.devices))?;
        m.serialize_entry(
            "all_devs",
            &Values {
                who: None,
                stats: self.all,
            },
        )?;
        m.end()
    }
}

/// How `stats` renders the tree.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum StatsFormat {
    Summary,
    Json,
    Prometheus,
}

/// Writes `text` to `path` atomically: a temporary file beside it (a name
/// node_exporter's textfile collector skips: it reads `*.prom` only),
/// flushed, then renamed over it, so a reader sees the old file or the new
/// one, never a part.
fn write_atomically(path: &std::path::Path, text: &str) -> std::io::Result<()> {
    use std::io::Write as _;
    let name = path
        .file_name()
        .ok_or_else(|| std::io::Error::other("not a file name"))?;
    let tmp = path.with_file_name(format!(
        ".{}.{}.tmp",
        name.to_string_lossy(),
        std::process::id()
    ));
    let r = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if r.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    r
}

fn print_stats(dir: &str, format: StatsFormat, textfile: Option<&str>) -> ExitCode {
    let (devs, all) = match read_stats(dir) {
        Ok(x) => x,
        Err(e) => {
            eprintln!("dm-remap-tool: {e}");
            return ExitCode::from(2);
        }
    };
    let list: Vec<stats::Device<'_>> = devs
        .iter()
        .map(|(k, n, d, s)| stats::Device {
            kname: k,
            name: n,
            dev: d,
            stats: *s,
        })
        .collect();
    let mut out = String::new();
    let r = match format {
        StatsFormat::Prometheus => stats::write_prometheus(&mut out, &list),
        StatsFormat::Json => match serde_json::to_string(&Tree {
            devices: &list,
            all: &all,
        }) {
            Ok(j) => {
                out = j + "\n";
                Ok(())
            }
            Err(_) => Err(std::fmt::Error),
        },
        StatsFormat::Summary => {
            for d in &list {
                let _ = writeln!(out, "{} ({}, {}):", d.kname, d.name, d.dev);
                let _ = stats::write_summary(&d.stats, &mut out);
            }
            let _ = writeln!(out, "all_devs:");
            stats::write_summary(&all, &mut out)
        }
    };
    if r.is_err() {
        return ExitCode::FAILURE;
    }
    match textfile {
        Some(f) => {
            if let Err(e) = write_atomically(std::path::Path::new(f), &out) {
                eprintln!("dm-remap-tool: {f}: {e}");
                return ExitCode::FAILURE;
            }
        }
        None => print!("{out}"),
    }
    ExitCode::SUCCESS
}

/// `dump --json`: the spare's metadata as one object.
#[derive(Serialize)]
struct DumpJson {
    format_version: Option<u32>,
    blank: bool,
    spare_sectors: u64,
    #[serde(flatten)]
    header: Option<DumpHeader>,
    copies: Vec<DumpCopy>,
    extents: Vec<DumpExtent>,
    pending: Vec<u64>,
    retired: Vec<u64>,
    problems: Vec<String>,
}

#[derive(Serialize)]
struct DumpHeader {
    uuid: String,
    generation: u64,
    block_size: u32,
    main_sectors: u64,
    pool_start: u64,
    slots: u64,
    remaps: u64,
    retired_count: u64,
    pending_count: usize,
    unrecorded_count: u64,
    moved: bool,
}

#[derive(Serialize)]
struct DumpCopy {
    index: usize,
    sector: u64,
    state: String,
    generation: Option<u64>,
}

#[derive(Serialize)]
struct DumpExtent {
    main_sector: u64,
    spare_sector: u64,
    nr_sectors: u64,
}

fn dump_json(s: &Spare) -> String {
    let header = match (s.best, s.layout) {
        (Some(h), Some(l)) => Some(DumpHeader {
            uuid: uuid(&h.identity.uuid),
            generation: h.generation,
            block_size: h.identity.block_size,
            main_sectors: h.identity.main_sectors,
            pool_start: l.pool_start,
            slots: l.slots,
            remaps: h.remaps,
            retired_count: h.retired,
            pending_count: s.pending.len(),
            unrecorded_count: h.unrecorded.count,
            moved: h.moved,
        }),
        _ => None,
    };
    let d = DumpJson {
        format_version: s.version,
        blank: s.blank,
        spare_sectors: s.size_sectors,
        header,
        copies: s
            .copies
            .iter()
            .enumerate()
            .map(|(index, (at, st))| {
                let (state, generation) = state_text(st);
                DumpCopy {
                    index,
                    sector: *at,
                    state,
                    generation,
                }
            })
            .collect(),
        extents: extents(s)
            .into_iter()
            .map(|(main_sector, spare_sector, nr_sectors)| DumpExtent {
                main_sector,
                spare_sector,
                nr_sectors,
            })
            .collect(),
        pending: pending_sectors(s),
        retired: retired_sectors(s),
        problems: s.problems.clone(),
    };
    serde_json::to_string(&d).unwrap_or_default()
}

/// Exit status: 0 done (check: the metadata is clean; lost: nothing lost); 1
/// a problem found or an operation failed (check: problems listed; lost:
/// blocks lost; activate, deactivate,
/// status: some device not done or not found); 2 bad usage, or an input
/// that cannot be read (a spare, the statistics tree, a remaptab).
const EXIT_STATUS: &str = "Exit status: 0 done (check: the metadata is clean; lost: no \
data lost); 1 a problem found or an operation failed (check: the problems are listed; lost: \
blocks are lost; activate, \
deactivate, status: a device not done or not found); 2 bad usage, or an input that \
cannot be read (a spare, the statistics tree, a remaptab).";

/// dm-remap-tool: the metadata of dm-remap spares, and dm-remap devices
#[derive(Parser, Debug)]
#[command(name = "dm-remap-tool", version, after_help = EXIT_STATUS)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Check a spare's metadata: every copy, CRC and entry; exit 1 on any
    /// problem
    Check {
        /// The spare: a block device or an image file
        spare: String,
    },
    /// Print a spare's metadata: header, copies, remaps, pending and retired
    /// blocks
    Dump {
        /// One JSON object instead of text
        #[arg(long)]
        json: bool,
        /// The spare: a block device or an image file
        spare: String,
    },
    /// Show remap devices: table, state, spare pool, pending blocks,
    /// scanner and I/O counters
    Status {
        /// One JSON object ({"devices":[...]}) instead of text
        #[arg(long)]
        json: bool,
        /// Devices to show (default: every remap device)
        names: Vec<String>,
    },
    /// Print the statistics tree: a summary, JSON or Prometheus text
    Stats {
        /// JSON: {"devices":{"dm-0":{...}},"all_devs":{...}}
        #[arg(long, conflicts_with = "prometheus")]
        json: bool,
        /// Prometheus text exposition format, labels `device` (dm-0) and
        /// `name`
        #[arg(long)]
        prometheus: bool,
        /// With --prometheus: replace FILE atomically instead of printing
        /// (node_exporter's textfile collector directory)
        #[arg(long, value_name = "FILE", requires = "prometheus")]
        textfile: Option<String>,
        /// The statistics tree
        #[arg(default_value = STAT_DIR)]
        stat_dir: String,
    },
    /// Sample the statistics tree as CSV, a line per device and sample
    Monitor {
        /// Milliseconds between samples
        #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..))]
        interval_ms: u64,
        /// Stop after N samples (default: until killed)
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
        count: Option<u64>,
        /// The statistics tree
        #[arg(default_value = STAT_DIR)]
        stat_dir: String,
    },
    /// Create the devices of the remaptab that are not there yet
    Activate {
        /// The remaptab
        #[arg(long, value_name = "FILE", default_value = REMAPTAB)]
        tab: String,
        /// Devices to activate (default: all of the remaptab)
        names: Vec<String>,
    },
    /// Remove the remaptab's devices that are there
    Deactivate {
        /// The remaptab
        #[arg(long, value_name = "FILE", default_value = REMAPTAB)]
        tab: String,
        /// Devices to deactivate (default: all of the remaptab)
        names: Vec<String>,
    },
    /// systemd generator: a unit per device of the remaptab, in DIR
    Generate {
        /// The remaptab
        #[arg(long, value_name = "FILE", default_value = REMAPTAB)]
        tab: String,
        /// Where the units go (the generator's normal directory)
        dir: std::path::PathBuf,
        /// The generator's early directory (unused)
        #[arg(requires = "late_dir")]
        early_dir: Option<std::path::PathBuf>,
        /// The generator's late directory (unused)
        late_dir: Option<std::path::PathBuf>,
    },
    /// Export the remaps: a dm-linear table that reads the same data
    /// without the module, or the remapped and pending blocks as a list
    Export(Export),
    /// List the main blocks whose data is lost (pending blocks, and read
    /// errors the full pending list could not record); exit 1 when there
    /// are any
    Lost {
        /// One JSON object instead of text
        #[arg(long)]
        json: bool,
        /// Also give the blocks of a file system of this block size on the
        /// remap device (what `debugfs -R icheck` and `xfs_db` take)
        #[arg(long, value_name = "BYTES", value_parser = block_size)]
        fs_block_size: Option<u64>,
        /// A remap device (its name, or /dev/mapper/NAME: asks the module),
        /// or a spare (a block device or an image file: reads its metadata)
        device: String,
    },
    /// Mark a spare whose remaps moved to another (after migrate, once the
    /// device runs on the new spare): tables refuse it from then on
    Retire {
        /// The old spare
        spare: String,
    },
    /// Remap the blocks a list names (badblocks -o, md's bad_blocks, or
    /// sectors) on a remap device, in as few commits as the limits allow
    Import {
        /// What the list holds
        #[arg(long, value_enum, default_value = "badblocks")]
        format: import::Format,
        /// With --format badblocks: the list's block size in bytes
        /// (badblocks -b)
        #[arg(short = 'b', long = "block-size", value_name = "BYTES", default_value_t = 1024, value_parser = block_size)]
        list_block_size: u64,
        /// Copy each block's data from main first; the device is suspended
        /// for each message (at most --batch blocks). Without it the blocks
        /// read what their spare blocks hold
        #[arg(long)]
        carry: bool,
        /// Most blocks per message (default 4096 with --carry, else
        /// 1048576, the module's limit)
        #[arg(long, value_name = "BLOCKS", value_parser = clap::value_parser!(u64).range(1..=1048576))]
        batch: Option<u64>,
        /// The remap device (its name, or /dev/mapper/NAME)
        device: String,
        /// The list; - for standard input
        list: String,
    },
    /// Move every remap, with its data, and the pending blocks from a spare
    /// to another (larger) one, while no table uses either
    Migrate {
        /// Overwrite a new spare whose metadata area is not blank but holds
        /// no valid dm-remap metadata (say, a migration that stopped)
        #[arg(long)]
        force: bool,
        /// The spare the remap device used
        old: String,
        /// The spare to move to (blank)
        new: String,
    },
}

/// Block device `path`'s `/sys/dev/block/M:m`, or `None` for a file.
fn sys_block(path: &str) -> Option<std::path::PathBuf> {
    devt(path)
        .ok()
        .map(|d| std::path::PathBuf::from(format!("/sys/dev/block/{d}")))
}

/// Logical block size of `path`: a block device's (a partition's is its
/// disk's), 512 for a file.
fn logical_block_size(path: &str) -> u32 {
    let Some(d) = sys_block(path) else {
        return 512;
    };
    ["queue/logical_block_size", "../queue/logical_block_size"]
        .iter()
        .find_map(|f| std::fs::read_to_string(d.join(f)).ok()?.trim().parse().ok())
        .unwrap_or(512)
}

/// What holds block device `path` open (device-mapper, md), if anything.
fn holders(path: &str) -> Vec<String> {
    sys_block(path)
        .and_then(|d| std::fs::read_dir(d.join("holders")).ok())
        .map(|r| {
            r.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// `lost [--json] [--fs-block-size BYTES] NAME|SPARE`: the report, and
/// whether anything is lost; or (exit status, reason).
fn lost_command(device: &str, json: bool, fs: Option<u64>) -> Result<(String, bool), (u8, String)> {
    let name = device.strip_prefix("/dev/mapper/");
    let report = match name {
        Some(n) => Some(n),
        None if !std::path::Path::new(device).exists() => Some(device),
        None => None,
    };
    let l = match report {
        Some(n) => {
            let table = dmsetup(&["table", n]).map_err(|e| {
                (
                    2,
                    format!("{device}: neither a spare (no such file) nor a device: {e}"),
                )
            })?;
            if !table.lines().any(|t| status::parse_table(t).is_some()) {
                return Err((2, format!("{n} is not a remap device")));
            }
            let reply = dmsetup(&["message", n, "0", "lost"])
                .map_err(|e| (1, format!("{n}: the lost message failed: {e}")))?;
            dm_remap::logic::status::parse_lost(&reply).ok_or_else(|| {
                (
                    1,
                    format!("{n}: the module's reply to lost was not understood: {reply:?}"),
                )
            })?
        }
        None => {
            let s = spare_with_metadata(device, "report")?;
            lost::of_spare(&s).ok_or_else(|| (1, "no metadata".to_string()))?
        }
    };
    let out = if json {
        lost::json(&l, device, fs) + "\n"
    } else {
        lost::text(&l, device, fs)
    };
    Ok((out, lost::any(&l)))
}

/// Ranges per `add_remaps` message: a few hundred KiB of text at most.
const IMPORT_MAX_WORDS: usize = 10_000;

/// `import`: the summary, or (exit status, reason).
fn import_command(
    device: &str,
    list: &str,
    format: import::Format,
    list_block_size: u64,
    carry: bool,
    batch: Option<u64>,
) -> Result<String, (u8, String)> {
    let name = device.strip_prefix("/dev/mapper/").unwrap_or(device);
    let fail = |e: String| (1, e);
    let (table, status) = dmsetup(&["table", name])
        .and_then(|t| Ok((t, dmsetup(&["status", name])?)))
        .map_err(|e| fail(format!("{name}: {e}")))?;
    let (sectors, ..) =
        status::parse_table(&table).ok_or_else(|| fail(format!("{name} is not a remap device")))?;
    let info = status::parse_status(&status)
        .ok_or_else(|| fail(format!("{name}: a status line this tool cannot read")))?;
    let text = if list == "-" {
        std::io::read_to_string(std::io::stdin())
    } else {
        std::fs::read_to_string(list)
    }
    .map_err(|e| fail(format!("{list}: {e}")))?;
    let bs = u64::from(info.block_size) / 512;
    let ranges = import::parse(&text, format, list_block_size)
        .and_then(|r| import::blocks(r, bs, sectors))
        .map_err(|e| fail(format!("{list}: {e}")))?;
    let batch = batch.unwrap_or(if carry { 4096 } else { 1 << 20 });
    let messages = import::messages(&ranges, bs, carry, batch, IMPORT_MAX_WORDS);
    let mut total = [0u64; 3];
    for (i, m) in messages.iter().enumerate() {
        let done = |total: &[u64; 3]| {
            format!(
                "{} of {} messages done: added {}, pending {}, skipped {}",
                i,
                messages.len(),
                total[0],
                total[1],
                total[2]
            )
        };
        let mut args = vec!["message", name, "0"];
        args.extend(m.iter().map(String::as_str));
        let reply = if carry {
            // Suspended, no write is in flight while a block is copied.
            dmsetup(&["suspend", name])
                .map_err(|e| fail(format!("{name}: suspend failed: {e}; {}", done(&total))))?;
            let r = dmsetup(&args);
            dmsetup(&["resume", name]).map_err(|e| {
                fail(format!(
                    "{name}: resume failed: {e}; the device stays suspended until `dmsetup resume {name}`; {}",
                    done(&total)
                ))
            })?;
            r
        } else {
            dmsetup(&args)
        };
        let reply = reply.map_err(|e| {
            fail(format!(
                "{name}: add_remaps failed: {} (the kernel log says why: dmesg | grep remap); {}",
                e.trim(),
                done(&total)
            ))
        })?;
        let got = import::parse_reply(&reply).ok_or_else(|| {
            fail(format!(
                "{name}: the module's reply to add_remaps was not understood: {reply:?}"
            ))
        })?;
        for (t, g) in total.iter_mut().zip(got) {
            *t += g;
        }
    }
    let mut out = format!(
        "{name}: added {}, pending {}, skipped {} (already remapped or pending) in {} messages\n",
        total[0],
        total[1],
        total[2],
        messages.len()
    );
    if total[1] > 0 {
        let _ = writeln!(
            out,
            "{name}: {} blocks could not be read from main: their data is lost until written (dm-remap-tool lost {name})",
            total[1]
        );
    }
    Ok(out)
}

/// A spare opened for writing through the metadata I/O trait; a durable
/// write is followed by `fdatasync` (which flushes a disk's cache).
struct SpareWriter {
    file: std::fs::File,
    size: u64,
}

impl remaps_io::MetaIo for SpareWriter {
    fn read(&mut self, sector: u64, buf: &mut [u8]) -> Result<(), ()> {
        use std::os::unix::fs::FileExt;
        let at = sector.checked_mul(512).ok_or(())?;
        if at.saturating_add(buf.len() as u64) > self.size {
            return Err(());
        }
        self.file.read_exact_at(buf, at).map_err(|_| ())
    }
    fn write(&mut self, sector: u64, buf: &[u8], durable: bool) -> Result<(), ()> {
        use std::os::unix::fs::FileExt;
        let at = sector.checked_mul(512).ok_or(())?;
        if at.saturating_add(buf.len() as u64) > self.size {
            return Err(());
        }
        self.file.write_all_at(buf, at).map_err(|_| ())?;
        if durable {
            self.file.sync_data().map_err(|_| ())?;
        }
        Ok(())
    }
}

/// Refuses (exit status 1) a device that something holds open (a table).
fn not_in_use(path: &str) -> Result<(), (u8, String)> {
    let h = holders(path);
    if h.is_empty() {
        return Ok(());
    }
    Err((
        1,
        format!(
            "{path} is in use (held by {}): remove the remap device first (dmsetup remove)",
            h.join(", ")
        ),
    ))
}

/// `retire SPARE`: marks every metadata copy of a spare whose remaps moved
/// to another (after `migrate`, once the device runs on the new spare), so
/// that no table line can bring its old data back.
fn retire_command(path: &str) -> Result<String, (u8, String)> {
    use dm_remap::logic::remaps::Remaps;
    let fail = |e: String| (1, e);
    not_in_use(path)?;
    let s = spare_with_metadata(path, "retire")?;
    let (Some(h), Some(layout)) = (s.best, s.layout) else {
        return Err(fail("no metadata".into()));
    };
    if h.moved {
        return Ok(format!("{path} is retired already\n"));
    }
    let g = migrate::pair_geometry(
        &h.identity,
        h.identity.spare_sectors,
        logical_block_size(path),
    )
    .map_err(|r| {
        fail(format!(
            "{path}: its metadata describes no usable pair: {r}"
        ))
    })?;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .map_err(|e| fail(format!("{path}: {e}")))?;
    let mut io = SpareWriter {
        file,
        size: s.size_sectors * 512,
    };
    let crc = |b: &[u8]| crc32fast::hash(b);
    let (t, mut r) = Remaps::<dm_remap::HostEnv>::new(g, layout, h.identity, crc)
        .map_err(|e| fail(format!("cannot build the remap table: {e}")))?;
    r.load(&t, &mut io, false, h.identity.uuid, &mut |_| {})
        .map_err(|e| fail(format!("{path}: its metadata does not load: {e:?}")))?;
    r.mark_moved(&mut io).map_err(|e| {
        fail(format!(
            "{path}: marking failed ({e:?}); nothing was marked"
        ))
    })?;
    if r.take_degraded() {
        eprintln!(
            "dm-remap-tool: warning: {path}: some copies could not be written; copy 0 is \
             marked, so a table refuses the spare all the same"
        );
    }
    Ok(format!(
        "{path}: retired: a table refuses it from now on ({} remaps and {} pending blocks \
         stay recorded, for dump and export; the 'format' feature reuses it)\n",
        t.len(),
        r.pending().len()
    ))
}

/// `migrate [--force] OLD NEW`.
fn migrate_command(old_path: &str, new_path: &str, force: bool) -> Result<String, (u8, String)> {
    let fail = |e: String| (1, e);
    let same = match (
        std::fs::canonicalize(old_path),
        std::fs::canonicalize(new_path),
    ) {
        (Ok(a), Ok(b)) => {
            a == b
                || devt(old_path)
                    .ok()
                    .is_some_and(|d| devt(new_path).ok() == Some(d))
        }
        (Err(e), _) => return Err((2, format!("{old_path}: {e}"))),
        (_, Err(e)) => return Err((2, format!("{new_path}: {e}"))),
    };
    if same {
        return Err((2, format!("{old_path} and {new_path} are the same device")));
    }
    for p in [old_path, new_path] {
        not_in_use(p)?;
    }
    let old = spare_with_metadata(old_path, "migrate")?;
    let new = read_spare(new_path).map_err(|e| (2, e))?;
    if let Some(h) = new.best {
        return Err(fail(format!(
            "{new_path} holds dm-remap metadata (uuid {}, {} remaps): not overwritten; \
             wipe it first if it is no longer needed",
            uuid(&h.identity.uuid),
            h.remaps
        )));
    }
    let (lo, ln) = (logical_block_size(old_path), logical_block_size(new_path));
    if lo != ln {
        return Err(fail(format!(
            "{new_path} has {ln}-byte logical blocks, {old_path} (and so main) {lo}-byte ones: \
             a remap device's main and spare must match"
        )));
    }
    let plan = migrate::plan(&old, new.size_sectors, ln).map_err(fail)?;
    let mut files = migrate::Files::open(old_path, new_path)
        .map_err(|e| fail(format!("{old_path} or {new_path}: {e}")))?;
    if !force {
        use std::os::unix::fs::FileExt;
        let mut area = vec![0u8; plan.layout.pool_start as usize * 512];
        files
            .new
            .read_exact_at(&mut area, 0)
            .map_err(|e| fail(format!("{new_path}: {e}")))?;
        if area.iter().any(|&b| b != 0) {
            return Err(fail(format!(
                "{new_path}'s first {} sectors (the metadata area it needs) are not blank: \
                 a file system, a partition table, or a migration that stopped; give --force \
                 to overwrite them",
                plan.layout.pool_start
            )));
        }
    }
    let start = std::time::Instant::now();
    let stopped = |(i, e): migrate::Stop, of: usize| {
        // Stopped among the headers, after one landed: that copy is whole
        // and the data under it durable, so the new spare is usable.
        let whole = read_spare(new_path).is_ok_and(|n| n.best.is_some());
        fail(if whole {
            format!(
                "migration stopped at step {i} of {of}: {e}; {new_path} holds a whole copy of \
                 the result all the same (a table loads it and rewrites the other copies); \
                 {old_path} is unchanged"
            )
        } else {
            format!(
                "migration stopped at step {i} of {of}: {e}; {new_path} is not usable yet (a \
                 table refuses it) and {old_path} is unchanged: run migrate again with --force"
            )
        })
    };
    let data = plan.data_steps();
    let lost = migrate::run(&plan, &data, &mut files).map_err(|s| stopped(s, data.len()))?;
    let meta = plan.metadata_steps(&lost).map_err(fail)?;
    migrate::run(&plan, &meta, &mut files)
        .map_err(|(i, e)| stopped((data.len() + i, e), data.len() + meta.len()))?;
    for b in &lost {
        eprintln!(
            "dm-remap-tool: {old_path} cannot read the spare block of main block {b} \
             (main sector {}): its data is lost; it is pending on {new_path}",
            b * plan.block_sectors
        );
    }
    let h = old.best.map(|h| h.identity.block_size).unwrap_or(512);
    Ok(format!(
        "migrated {} remapped blocks ({} runs, {} KiB of data) and {} pending blocks \
         from {old_path} to {new_path} in {:.1} s{}\n\
         {new_path}: pool of {} blocks, {} free ({old_path}: {}, {} free)\n\
         use {new_path} in place of {old_path} in the table line (and /etc/remaptab); once \
         the device runs on it, `dm-remap-tool retire {old_path}`\n",
        plan.blocks - lost.len() as u64,
        plan.runs.len(),
        (plan.blocks - lost.len() as u64) * u64::from(h) / 1024,
        old.pending.len(),
        start.elapsed().as_secs_f64(),
        if lost.is_empty() {
            String::new()
        } else {
            format!(
                "; {} blocks the old spare could not read are pending now",
                lost.len()
            )
        },
        plan.layout.slots,
        plan.layout.slots - (plan.blocks - lost.len() as u64),
        old.layout.map_or(0, |l| l.slots),
        old.layout
            .map_or(0, |l| l.slots)
            .saturating_sub(old.slots.iter().filter(|&&v| v != 0).count() as u64),
    ))
}

fn check(path: &str, s: &Spare) -> ExitCode {
    if !s.problems.is_empty() {
        for p in &s.problems {
            println!("{path}: {p}");
        }
        return ExitCode::FAILURE;
    }
    match s.best {
        Some(h) if h.moved => println!(
            "{path}: retired (its remaps moved to another spare; a table refuses it, the \
             'format' feature reuses it): {} copies, generation {}, {} remaps, {} pending blocks",
            s.copies.len(),
            h.generation,
            h.remaps,
            s.pending.len()
        ),
        Some(h) => println!(
            "{path}: clean: {} copies, generation {}, {} remaps, \
             {} retired pool blocks, {} pending blocks",
            s.copies.len(),
            h.generation,
            h.remaps,
            h.retired,
            s.pending.len()
        ),
        None if s.interrupted_format => println!(
            "{path}: blank metadata area (formatting interrupted before \
             copy 0's header; it formats again)"
        ),
        None => println!("{path}: blank metadata area (never formatted)"),
    }
    ExitCode::SUCCESS
}

/// `status [--json] [NAME...]`.
fn status_command(json: bool, names: &[String]) -> ExitCode {
    let mut failed = false;
    let mut devices = Vec::new();
    let names: Vec<String> = if names.is_empty() {
        match dmsetup(&["table", "--target", "remap"]) {
            Ok(t) => t
                .lines()
                .filter_map(|l| l.split_once(": ").map(|(n, _)| n.to_string()))
                .collect(),
            Err(e) => {
                eprintln!("dm-remap-tool: dmsetup table: {e}");
                return ExitCode::from(2);
            }
        }
    } else {
        names.to_vec()
    };
    let stat = read_stats(STAT_DIR).map(|(d, _)| d).unwrap_or_default();
    for name in &names {
        let lines = dmsetup(&["table", name]).and_then(|t| Ok((t, dmsetup(&["status", name])?)));
        let (table, status) = match lines {
            Ok(x) => x,
            Err(e) => {
                eprintln!("dm-remap-tool: {name}: {e}");
                failed = true;
                continue;
            }
        };
        let kname = kernel_name(name);
        let io = kname.as_ref().and_then(|k| {
            stat.iter()
                .find(|(kn, ..)| kn == k)
                .map(|(.., s)| status::Io::of(s))
        });
        match status::device(name, &table, &status, kname, io, lower_path) {
            Ok(d) => devices.push(d),
            Err(e) => {
                eprintln!("dm-remap-tool: {e}");
                failed = true;
            }
        }
    }
    if json {
        #[derive(Serialize)]
        struct All<'a> {
            devices: &'a [status::Device],
        }
        println!(
            "{}",
            serde_json::to_string(&All { devices: &devices }).unwrap_or_default()
        );
    } else {
        let text: Vec<String> = devices.iter().map(status::describe).collect();
        print!("{}", text.join("\n"));
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// The kernel name (`dm-3`) of dm device `name`, from sysfs.
fn kernel_name(name: &str) -> Option<String> {
    std::fs::read_dir("/sys/block")
        .ok()?
        .flatten()
        .find_map(|e| {
            let n = std::fs::read_to_string(e.path().join("dm/name")).ok()?;
            (n.trim() == name).then(|| e.file_name().to_string_lossy().into_owned())
        })
}

/// `/dev/<kernel name>` of block device `major:minor`, from sysfs.
fn lower_path(devt: &str) -> Option<String> {
    let p = std::fs::read_link(format!("/sys/dev/block/{devt}")).ok()?;
    Some(format!("/dev/{}", p.file_name()?.to_string_lossy()))
}

fn main() -> ExitCode {
    match Cli::parse().cmd {
        Cmd::Check { spare } => match read_spare(&spare) {
            Ok(s) => check(&spare, &s),
            Err(e) => {
                eprintln!("dm-remap-tool: {e}");
                ExitCode::from(2)
            }
        },
        Cmd::Dump { json, spare } => match read_spare(&spare) {
            Ok(s) => {
                if json {
                    println!("{}", dump_json(&s));
                } else {
                    print!("{}", dump_text(&s));
                }
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("dm-remap-tool: {e}");
                ExitCode::from(2)
            }
        },
        Cmd::Status { json, names } => status_command(json, &names),
        Cmd::Stats {
            json,
            prometheus,
            textfile,
            stat_dir,
        } => {
            let f = match (json, prometheus) {
                (true, _) => StatsFormat::Json,
                (_, true) => StatsFormat::Prometheus,
                _ => StatsFormat::Summary,
            };
            print_stats(&stat_dir, f, textfile.as_deref())
        }
        Cmd::Monitor {
            interval_ms,
            count,
            stat_dir,
        } => monitor(&stat_dir, interval_ms, count),
        Cmd::Activate { tab, names } => remaptab_command(true, &tab, &names),
        Cmd::Deactivate { tab, names } => remaptab_command(false, &tab, &names),
        Cmd::Generate { tab, dir, .. } => generate(&tab, &dir),
        Cmd::Import {
            format,
            list_block_size,
            carry,
            batch,
            device,
            list,
        } => answer(import_command(
            &device,
            &list,
            format,
            list_block_size,
            carry,
            batch,
        )),
        Cmd::Migrate { force, old, new } => answer(migrate_command(&old, &new, force)),
        Cmd::Retire { spare } => answer(retire_command(&spare)),
        Cmd::Export(args) => answer(export_command(&args)),
        Cmd::Lost {
            json,
            fs_block_size,
            device,
        } => match lost_command(&device, json, fs_block_size) {
            Ok((out, any)) => {
                print!("{out}");
                if any {
                    ExitCode::FAILURE
                } else {
                    ExitCode::SUCCESS
                }
            }
            Err(e) => answer(Err(e)),
        },
    }
}

/// Prints a command's output, or its reason on stderr; its exit status.
fn answer(r: Result<String, (u8, String)>) -> ExitCode {
    match r {
        Ok(out) => {
            print!("{out}");
            ExitCode::SUCCESS
        }
        Err((code, e)) => {
            eprintln!("dm-remap-tool: {e}");
            ExitCode::from(code)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;
    use dm_remap::logic::format::{self, Identity};
    use dm_remap::logic::geometry::{validate, DeviceFacts};
    use dm_remap::logic::message::{parse, Message};
    use dm_remap::logic::remaps::{self, LayoutRequest, MetaIo, Remaps};
    use dm_remap::logic::table_line::Features;
    use dm_remap::HostEnv;
    use std::io::{Read, Seek, SeekFrom, Write as _};

    fn crc(b: &[u8]) -> u32 {
        crc32fast::hash(b)
    }

    /// A spare image file written by the module's own commit code.
    struct Image(std::fs::File);

    impl MetaIo for Image {
        fn read(&mut self, sector: u64, buf: &mut [u8]) -> Result<(), ()> {
            self.0.seek(SeekFrom::Start(sector * 512)).map_err(|_| ())?;
            self.0.read_exact(buf).map_err(|_| ())
        }
        fn write(&mut self, sector: u64, buf: &[u8], _durable: bool) -> Result<(), ()> {
            self.0.seek(SeekFrom::Start(sector * 512)).map_err(|_| ())?;
            self.0.write_all(buf).map_err(|_| ())
        }
    }

    /// With `bad`: pool blocks retired, main blocks pending, in one more
    /// commit.
    fn make_image(path: &std::path::Path, bad: bool) {
        make_image_with(path, bad, 0);
    }

    /// [`make_image`], with `bad`: and then `more` pending blocks from main
    /// block 10,000 on, as many as fit and the rest unrecorded.
    fn make_image_with(path: &std::path::Path, bad: bool, more: u64) {
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)
            .unwrap();
        f.set_len(16 << 20).unwrap();
        let mut img = Image(f);
        let d = |dev, sectors| DeviceFacts {
            dev,
            whole: dev,
            sectors,
            logical_block_size: 512,
        };
        let g = validate(32768, &d(1, 32768), &d(2, 32768), &Features::default()).unwrap();
        let pair = Identity {
            uuid: [0; 16],
            main_sectors: 32768,
            spare_sectors: 32768,
            block_size: 512,
        };
        let req = LayoutRequest {
            copies: 5,
            max_slots: format::DEFAULT_MAX_SLOTS,
            format: false,
        };
        let layout = remaps::find_layout::<HostEnv>(&mut img, &g, 32768, &req, crc).unwrap();
        // 28,672 pool blocks: 57 entry units, 5 copies 96 units apart.
        assert_eq!((layout.version, layout.copy_sectors), (3, 768));
        assert_eq!((layout.pool_start, layout.slots), (4096, 28_672));
        let (t, mut r) = Remaps::<HostEnv>::new(g, layout, pair, crc).unwrap();
        r.load(&t, &mut img, false, [3; 16], &mut |_| {}).unwrap();
        for m in ["add_remap 100 auto 10", "add_remap 7 5000"] {
            let words: Vec<&str> = m.split_whitespace().collect();
            let mut out = String::new();
            let Ok(Message::Remaps(msg)) = parse(&words) else {
                panic!("{m}: not a remap message");
            };
            r.handle(&t, &mut img, msg, &mut out, &mut |_| {}).unwrap();
        }
        if bad {
            // Pool block 2 held main block 102; block 20 was free.
            assert_eq!(r.retire_slot(2), Some(102));
            assert_eq!(r.retire_slot(20), None);
            for b in [3000, 5, 102] {
                r.add_pending(b);
            }
            for b in 10_000..10_000 + more {
                r.add_pending(b);
            }
            r.commit(&mut img, 2, 20).unwrap();
        }
    }

    #[test]
    fn checks_dumps_and_finds_damage() {
        let dir = std::env::temp_dir().join(format!("dmr-tool-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("spare.img");
        make_image(&path, false);
        let p = path.to_str().unwrap();
        let s = read_spare(p).unwrap();
        assert!(s.problems.is_empty(), "{:?}", s.problems);
        assert_eq!(extents(&s), vec![(7, 5000, 1), (100, 4096, 10)]);
        let text = dump_text(&s);
        assert!(text.contains("generation     3"), "{text}");
        assert!(
            text.contains("retired        0\npending        0\n"),
            "{text}"
        );
        let json: serde_json::Value = serde_json::from_str(&dump_json(&s)).unwrap();
        assert_eq!(json["remaps"], 11);
        assert_eq!(json["copies"].as_array().unwrap().len(), 5);
        assert_eq!(json["extents"][1]["spare_sector"], 4096);
        assert_eq!(json["pending"], serde_json::json!([]));
        assert_eq!(json["retired"], serde_json::json!([]));

        // Flip a bit in copy 2's first entry unit.
        let mut f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .unwrap();
        let at = (2 * 768 + 8) * 512 + 30;
        let mut b = [0u8; 1];
        f.seek(SeekFrom::Start(at)).unwrap();
        f.read_exact(&mut b).unwrap();
        b[0] ^= 0x40;
        f.seek(SeekFrom::Start(at)).unwrap();
        f.write_all(&b).unwrap();
        drop(f);
        let s = read_spare(p).unwrap();
        assert_eq!(s.problems, vec![format!("copy 2 (sector 1536): bad CRC")]);
        assert_eq!(extents(&s).len(), 2);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn dumps_pending_and_retired_blocks() {
        let dir = std::env::temp_dir().join(format!("dmr-tool-p-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("spare.img");
        make_image(&path, true);
        let p = path.to_str().unwrap();
        let s = read_spare(p).unwrap();
        assert!(s.problems.is_empty(), "{:?}", s.problems);
        assert_eq!(s.pending, [5, 102, 3000]);
        assert_eq!(pending_sectors(&s), [5, 102, 3000]);
        assert_eq!(retired_sectors(&s), [4098, 4116]);
        // Main block 102 lost its remap when its pool block was retired.
        assert_eq!(
            extents(&s),
            vec![(7, 5000, 1), (100, 4096, 2), (103, 4099, 7)]
        );
        let text = dump_text(&s);
        for line in [
            "remaps         10\n",
            "retired        2\n",
            "pending        3\n",
            "pending main sector 5\npending main sector 102\npending main sector 3000\n",
            "retired spare sector 4098\nretired spare sector 4116\n",
        ] {
            assert!(text.contains(line), "{line:?} not in {text}");
        }
        let json: serde_json::Value = serde_json::from_str(&dump_json(&s)).unwrap();
        assert_eq!(json["remaps"], 10);
        assert_eq!(json["retired_count"], 2);
        assert_eq!(json["pending_count"], 3);
        assert_eq!(json["pending"], serde_json::json!([5, 102, 3000]));
        assert_eq!(json["retired"], serde_json::json!([4098, 4116]));

        // Damage copy 3's pending unit (after 57 entry units for 28,672
        // pool blocks): check names it; the others still agree.
        let l = s.layout.unwrap();
        assert_eq!(l.pending_offset(), 58);
        let mut f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .unwrap();
        let at = (3 * 768 + 58 * 8) * 512 + 40;
        f.seek(SeekFrom::Start(at)).unwrap();
        f.write_all(&[0xff]).unwrap();
        drop(f);
        let s = read_spare(p).unwrap();
        assert_eq!(s.problems, vec![format!("copy 3 (sector 2304): bad CRC")]);
        assert_eq!(s.pending, [5, 102, 3000]);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn copies_with_different_pending_lists_are_reported() {
        let dir = std::env::temp_dir().join(format!("dmr-tool-d-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("spare.img");
        make_image(&path, true);
        let p = path.to_str().unwrap();
        // Rewrite copy 4's pending unit, validly, with another list.
        let s = read_spare(p).unwrap();
        let (h, l) = (s.best.unwrap(), s.layout.unwrap());
        let at = l.unit_at(4, l.pending_offset());
        let mut sector = [0u8; format::UNIT];
        format::encode_pending(l.unit(), h.generation, at, &[5, 6, 7], crc, &mut sector);
        let mut f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        f.seek(SeekFrom::Start(at * 512)).unwrap();
        f.write_all(&sector).unwrap();
        drop(f);
        let s = read_spare(p).unwrap();
        assert_eq!(
            s.problems,
            vec![format!(
                "copy 4 (sector 3072): same generation, different pending blocks"
            )]
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn version_is_the_modules() {
        let conf = include_str!("../../dkms.conf");
        assert!(
            conf.contains(&format!(
                "\nPACKAGE_VERSION=\"{}\"\n",
                env!("CARGO_PKG_VERSION")
            )),
            "Cargo.toml's version is not dkms.conf's PACKAGE_VERSION"
        );
    }

    #[test]
    fn stats_json_keeps_the_trees_order() {
        use stats::{Counter, Gauge};
        let mut s = stats::Snapshot::default();
        s.c[Counter::Reads as usize] = 50;
        s.c[Counter::ReadBytes as usize] = 50 * 8192;
        s.c[Counter::Writes as usize] = 100;
        s.c[Counter::WriteBytes as usize] = 100 * 4096;
        s.g[Gauge::Remaps as usize] = 8;
        let devs = [stats::Device {
            kname: "dm-0",
            name: "we\"ird",
            dev: "253:0",
            stats: s,
        }];
        let out = serde_json::to_string(&Tree {
            devices: &devs,
            all: &s,
        })
        .unwrap();
        assert!(out.starts_with(
            "{\"devices\":{\"dm-0\":{\"name\":\"we\\\"ird\",\"dev\":\"253:0\",\"read_cnt\":50,\"write_cnt\":100,"
        ), "{out}");
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["devices"]["dm-0"]["total_avr_bs"], 5461);
        assert_eq!(v["devices"]["dm-0"]["remaps"], 8);
        assert_eq!(v["all_devs"]["write_bytes"], 409600);
        assert!(v["all_devs"].get("name").is_none());
        assert!(v["all_devs"].get("summary").is_none());
    }

    #[test]
    fn textfile_is_replaced_whole() {
        let dir = std::env::temp_dir().join(format!("dmr-tool-t-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("dm_remap.prom");
        std::fs::write(&f, "old\n").unwrap();
        write_atomically(&f, "new\n").unwrap();
        assert_eq!(std::fs::read_to_string(&f).unwrap(), "new\n");
        let left: Vec<_> = std::fs::read_dir(&dir).unwrap().flatten().collect();
        assert_eq!(left.len(), 1, "a temporary file was left behind");
        // A directory that is not there: an error, nothing written.
        assert!(write_atomically(&dir.join("no/such.prom"), "x").is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// Parses a command line as main does.
    fn cli(line: &str) -> Result<Cmd, clap::error::ErrorKind> {
        Cli::try_parse_from(std::iter::once("dm-remap-tool").chain(line.split_whitespace()))
            .map(|c| c.cmd)
            .map_err(|e| e.kind())
    }

    #[test]
    fn command_lines() {
        use clap::error::ErrorKind as K;
        assert!(matches!(cli("check /dev/x"), Ok(Cmd::Check { spare }) if spare == "/dev/x"));
        assert!(matches!(
            cli("dump --json s"),
            Ok(Cmd::Dump { json: true, .. })
        ));
        assert!(matches!(
            cli("stats"),
            Ok(Cmd::Stats { json: false, prometheus: false, textfile: None, stat_dir }) if stat_dir == STAT_DIR
        ));
        assert!(matches!(
            cli("stats --prometheus --textfile /x/d.prom /t"),
            Ok(Cmd::Stats { prometheus: true, textfile: Some(f), stat_dir, .. }) if f == "/x/d.prom" && stat_dir == "/t"
        ));
        assert!(matches!(
            cli("monitor --interval-ms 100 --count 3"),
            Ok(Cmd::Monitor {
                interval_ms: 100,
                count: Some(3),
                ..
            })
        ));
        assert!(
            matches!(cli("status"), Ok(Cmd::Status { json: false, names }) if names.is_empty())
        );
        assert!(
            matches!(cli("status --json a b"), Ok(Cmd::Status { json: true, names }) if names == ["a", "b"])
        );
        assert!(matches!(
            cli("activate"),
            Ok(Cmd::Activate { tab, names }) if tab == REMAPTAB && names.is_empty()
        ));
        assert!(matches!(
            cli("deactivate --tab /t r1"),
            Ok(Cmd::Deactivate { tab, names }) if tab == "/t" && names == ["r1"]
        ));
        assert!(matches!(
            cli("generate /run/g /run/e /run/l"),
            Ok(Cmd::Generate { .. })
        ));
        assert!(
            matches!(cli("generate --tab /t /run/g"), Ok(Cmd::Generate { tab, .. }) if tab == "/t")
        );
        assert!(matches!(
            cli("export --dm-linear /m /s"),
            Ok(Cmd::Export(Export { dm_linear: Some(v), spare: None, .. })) if v == ["/m", "/s"]
        ));
        assert!(matches!(
            cli("export --format badblocks --block-size 1024 --pending /s"),
            Ok(Cmd::Export(Export {
                format: Some(ListKind::Badblocks),
                block_size: Some(1024),
                pending: true,
                remapped: false,
                ..
            }))
        ));
        for (bad, kind) in [
            ("", K::DisplayHelpOnMissingArgumentOrSubcommand),
            ("frobnicate", K::InvalidSubcommand),
            ("check", K::MissingRequiredArgument),
            ("check a b", K::UnknownArgument),
            ("dump --xml s", K::UnknownArgument),
            ("stats --json --prometheus", K::ArgumentConflict),
            ("stats --textfile /x", K::MissingRequiredArgument),
            ("monitor --interval-ms 0", K::ValueValidation),
            ("monitor --count x", K::ValueValidation),
            ("monitor --count 0", K::ValueValidation),
            ("activate --tab", K::InvalidValue),
            ("activate -x", K::UnknownArgument),
            ("generate", K::MissingRequiredArgument),
            ("generate a b", K::MissingRequiredArgument),
            ("generate a b c d", K::UnknownArgument),
            ("export", K::MissingRequiredArgument),
            ("export /s", K::MissingRequiredArgument),
            ("export --dm-linear /m", K::WrongNumberOfValues),
            ("export --dm-linear /m /s /x", K::ArgumentConflict),
            ("export --dm-linear /m /s --format md", K::ArgumentConflict),
            ("export --format sectors", K::MissingRequiredArgument),
            ("export --format nope /s", K::InvalidValue),
            (
                "export --format badblocks --block-size 1000 /s",
                K::ValueValidation,
            ),
            (
                "export --format badblocks --block-size 256 /s",
                K::ValueValidation,
            ),
            (
                "export --format md --remapped --pending /s",
                K::ArgumentConflict,
            ),
            ("export --block-size 512 /s", K::MissingRequiredArgument),
        ] {
            match cli(bad) {
                Ok(c) => panic!("{bad:?} accepted: {c:?}"),
                Err(k) => assert_eq!(k, kind, "{bad:?}"),
            }
        }
        assert_eq!(cli("--help").unwrap_err(), K::DisplayHelp);
        assert_eq!(cli("export --help").unwrap_err(), K::DisplayHelp);
        assert_eq!(cli("--version").unwrap_err(), K::DisplayVersion);
        Cli::command().debug_assert();
    }

    /// A man page's text with roff's `\-` read as `-`.
    fn man(page: &str) -> String {
        page.replace("\\-", "-")
    }

    #[test]
    fn the_tools_man_page_has_every_command_and_option() {
        let page = man(include_str!("../../docs/man/dm-remap-tool.8"));
        let cmd = Cli::command();
        for sub in cmd.get_subcommands() {
            let name = sub.get_name();
            assert!(
                page.contains(&format!(".B dm-remap-tool {name}")),
                "{name} not in the SYNOPSIS"
            );
            assert!(
                page.contains(&format!(".TP\n.BR {name} "))
                    || page.contains(&format!(".TP\n.BI {name} "))
                    || page.contains(&format!(".TP\n.BI \"{name} ")),
                "{name} not under COMMANDS"
            );
            for arg in sub.get_arguments() {
                if let Some(long) = arg.get_long() {
                    assert!(
                        page.contains(&format!("--{long}")),
                        "{name} --{long} not in the page"
                    );
                }
                let values = if arg.get_action().takes_values() {
                    arg.get_possible_values()
                } else {
                    Vec::new()
                };
                for v in values {
                    assert!(
                        page.contains(v.get_name()),
                        "{name} value {} not in the page",
                        v.get_name()
                    );
                }
            }
        }
        for code in ["0", "1", "2"] {
            assert!(
                page.contains(&format!(".TP\n.B {code}\n")),
                "exit status {code}"
            );
        }
    }

    #[test]
    fn the_targets_man_page_has_every_message_feature_and_status_field() {
        use dm_remap::logic::{message, policy};
        let page = man(include_str!("../../docs/man/dm-remap.4"));
        for line in message::HELP.lines() {
            let verb = line.split_whitespace().next().unwrap();
            assert!(
                page.contains(&format!(".BI {verb} "))
                    || page.contains(&format!(".B {verb}\n"))
                    || page.contains(&format!(".BR {verb} ")),
                "message {verb} not in dm-remap.4"
            );
        }
        for f in ["block_size", "copies", "metadata_slots", "format"]
            .into_iter()
            .chain(policy::NAMES)
        {
            assert!(
                page.contains(&format!(".BI {f} "))
                    || page.contains(&format!(".B {f}\n"))
                    || page.contains(&format!(".BR {f} ")),
                "feature {f} not in dm-remap.4"
            );
        }
        for field in [
            "state",
            "block_size",
            "remaps",
            "spare_used",
            "spare_total",
            "buckets",
            "resizes",
            "pending",
            "retired",
            "spare_level",
            "auto_remap",
            "scan",
            "scan_position",
            "scan_passes",
        ] {
            assert!(
                page.contains(field),
                "status field {field} not in dm-remap.4"
            );
        }
        assert!(page.contains(concat!(
            "target remap ",
            env!("CARGO_PKG_VERSION"),
            " registered"
        )));
        for p in [&page, &man(include_str!("../../docs/man/dm-remap-tool.8"))] {
            assert!(
                p.contains(concat!("\"dm-remap ", env!("CARGO_PKG_VERSION"), "\"")),
                "a man page's header names another version"
            );
        }
    }

    #[test]
    fn export_refuses_a_block_size_without_badblocks() {
        for line in [
            "export --format md --block-size 4096 /s",
            "export --format sectors --block-size 512 /s",
        ] {
            let Ok(Cmd::Export(e)) = cli(line) else {
                panic!("{line} not parsed");
            };
            assert!(
                matches!(export_command(&e), Err((2, m)) if m.contains("badblocks only")),
                "{line}"
            );
        }
    }

    /// Images of an old spare (16 MiB, made by [`make_image`], its pool
    /// full of a pattern) and a new blank one of `new_mib`.
    fn migration_images(dir: &std::path::Path, new_mib: u64) -> (String, String) {
        let old = dir.join("old.img");
        make_image(&old, true);
        let mut f = std::fs::OpenOptions::new().write(true).open(&old).unwrap();
        let pattern: Vec<u8> = (0..(12u32 << 20))
            .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
            .collect();
        f.seek(SeekFrom::Start(4096 * 512)).unwrap();
        f.write_all(&pattern).unwrap();
        let new = dir.join("new.img");
        std::fs::write(&new, vec![0u8; (new_mib << 20) as usize]).unwrap();
        (old.to_str().unwrap().into(), new.to_str().unwrap().into())
    }

    /// The data of every remapped main sector as `spare` maps it.
    fn remapped_data(path: &str) -> Vec<(u64, Vec<u8>)> {
        let s = read_spare(path).unwrap();
        let img = std::fs::read(path).unwrap();
        let mut out = Vec::new();
        for (m, sp, n) in extents(&s) {
            for k in 0..n {
                let at = ((sp + k) * 512) as usize;
                out.push((m + k, img[at..at + 512].to_vec()));
            }
        }
        out
    }

    /// Writes steps to images in memory; the old image's sectors in `bad`
    /// do not read.
    struct Images {
        old: Vec<u8>,
        new: Vec<u8>,
        bad: Vec<u64>,
    }

    impl migrate::Target for Images {
        fn write(&mut self, sector: u64, data: &[u8]) -> std::io::Result<()> {
            let at = sector as usize * 512;
            self.new[at..at + data.len()].copy_from_slice(data);
            Ok(())
        }
        fn read_old(&mut self, from: u64, buf: &mut [u8]) -> std::io::Result<bool> {
            let n = buf.len() as u64 / 512;
            if self.bad.iter().any(|b| (from..from + n).contains(b)) {
                return Ok(false);
            }
            let at = from as usize * 512;
            buf.copy_from_slice(&self.old[at..at + buf.len()]);
            Ok(true)
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn lost_blocks_are_reported_and_migrate_with_the_unrecorded_count() {
        // 3 pending blocks, then 4,571 more from block 10,000: 4,569 fit,
        // 14,569 and 14,570 do not.
        let (dir, old) = scratch_image("lost", 4571);
        let clean = dir.join("clean.img");
        make_image(&clean, false);
        let c = clean.to_str().unwrap();
        let (out, any) = lost_command(c, false, None).unwrap();
        assert!(!any);
        assert_eq!(
            out,
            format!("{c}: no data lost: no pending blocks, no unrecorded read errors\n")
        );
        let o = old.to_str().unwrap();
        let (out, any) = lost_command(o, false, Some(4096)).unwrap();
        assert!(any);
        assert!(
            out.starts_with(&format!("{o}: 4572 main blocks of 512 bytes lost")),
            "{out}"
        );
        assert!(
            out.contains("\nmain sector 5 (file system block 0)\nmain sector 102 "),
            "{out}"
        );
        assert!(
            out.ends_with(
                "2 more failed reads were not listed (the pending list was full), between \
                 main sectors 14569 and 14570 (file system block 1821)\n"
            ),
            "{out}"
        );
        let dump = dump_text(&read_spare(o).unwrap());
        assert!(
            dump.contains("unrecorded     2 failed reads, main sectors 14569 to 14570"),
            "{dump}"
        );
        // Migration carries the list and the count.
        let new = dir.join("new.img");
        std::fs::write(&new, vec![0u8; 24 << 20]).unwrap();
        let n = new.to_str().unwrap();
        migrate_command(o, n, false).unwrap();
        let (so, sn) = (read_spare(o).unwrap(), read_spare(n).unwrap());
        assert_eq!(sn.pending, so.pending);
        assert_eq!(sn.pending.len(), 4572);
        assert_eq!(
            sn.best.unwrap().unrecorded,
            format::Unrecorded {
                count: 2,
                first: 14_569,
                last: 14_570
            }
        );
        let v: serde_json::Value =
            serde_json::from_str(&lost_command(n, true, None).unwrap().0).unwrap();
        assert_eq!(v["unrecorded"]["count"], 2);
        assert_eq!(v["pending"].as_array().unwrap().len(), 4572);
        // Not a spare, not a device: exit 2.
        assert_eq!(
            lost_command(dir.join("none").to_str().unwrap(), false, None)
                .unwrap_err()
                .0,
            2
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// A fresh scratch directory for test `tag`, holding the image of
    /// [`make_image_with`] as `old.img`, and that image's path.
    fn scratch_image(tag: &str, more: u64) -> (std::path::PathBuf, std::path::PathBuf) {
        let dir = std::env::temp_dir().join(format!("dmr-tool-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let img = dir.join("old.img");
        make_image_with(&img, true, more);
        (dir, img)
    }

    #[test]
    fn a_retired_spare_is_refused_and_reported() {
        let (dir, img) = scratch_image("retire", 0);
        let p = img.to_str().unwrap();
        let before = read_spare(p).unwrap();
        let out = retire_command(p).unwrap();
        assert!(
            out.starts_with(&format!("{p}: retired: a table refuses it")),
            "{out}"
        );
        let s = read_spare(p).unwrap();
        assert!(s.problems.is_empty(), "{:?}", s.problems);
        let h = s.best.unwrap();
        assert!(h.moved);
        assert_eq!(h.generation, before.best.unwrap().generation + 1);
        // Everything stays recorded for dump, export and lost.
        assert_eq!(extents(&s), extents(&before));
        assert_eq!(s.pending, before.pending);
        assert!(
            dump_text(&s).contains("\nmoved          yes: "),
            "{}",
            dump_text(&s)
        );
        let v: serde_json::Value = serde_json::from_str(&dump_json(&s)).unwrap();
        assert_eq!(v["moved"], true);
        assert_eq!(
            retire_command(p).unwrap(),
            format!("{p} is retired already\n")
        );
        // What a table line over it meets.
        let g = migrate::pair_geometry(&h.identity, 32768, 512).unwrap();
        let req = LayoutRequest {
            copies: 5,
            max_slots: format::DEFAULT_MAX_SLOTS,
            format: false,
        };
        let mut io = Image(std::fs::File::open(&img).unwrap());
        let e = remaps::check_spare::<HostEnv>(&mut io, &g, &h.identity, &req, crc).unwrap_err();
        assert!(
            matches!(e, remaps::LoadError::Refused(m) if m.to_bytes().starts_with(b"Spare's remaps moved")),
            "{e:?}"
        );
        let (_, d) = remaps::check_spare::<HostEnv>(
            &mut io,
            &g,
            &h.identity,
            &LayoutRequest {
                format: true,
                ..req
            },
            crc,
        )
        .unwrap();
        assert_eq!(d, format::Decision::Format);
        // Not a spare with metadata: refused.
        let blank = dir.join("blank.img");
        std::fs::write(&blank, vec![0u8; 16 << 20]).unwrap();
        let e = retire_command(blank.to_str().unwrap()).unwrap_err();
        assert!(e.0 == 1 && e.1.contains("nothing to retire"), "{e:?}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn migration_moves_every_remap_its_data_and_the_pending_list() {
        let dir = std::env::temp_dir().join(format!("dmr-tool-m-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (old, new) = migration_images(&dir, 32);
        let before = std::fs::read(&old).unwrap();
        let out = migrate_command(&old, &new, false).unwrap();
        assert!(
            out.starts_with(
                "migrated 10 remapped blocks (3 runs, 5 KiB of data) and 3 pending blocks"
            ),
            "{out}"
        );
        assert_eq!(
            std::fs::read(&old).unwrap(),
            before,
            "the old spare was written"
        );
        let (o, n) = (read_spare(&old).unwrap(), read_spare(&new).unwrap());
        assert!(n.problems.is_empty(), "{:?}", n.problems);
        let (ho, hn) = (o.best.unwrap(), n.best.unwrap());
        assert_eq!(hn.identity.uuid, ho.identity.uuid);
        assert_eq!(hn.identity.main_sectors, ho.identity.main_sectors);
        assert_eq!(hn.identity.spare_sectors, 32 << 11);
        assert_eq!(n.pending, o.pending);
        assert_eq!(hn.retired, 0, "retired blocks are the old spare's");
        assert!(n.layout.unwrap().slots > o.layout.unwrap().slots);
        assert_eq!(remapped_data(&new), remapped_data(&old));
        // Again onto the now used spare: refused, unless... never: it holds
        // valid metadata.
        let e = migrate_command(&old, &new, true).unwrap_err();
        assert!(e.0 == 1 && e.1.contains("holds dm-remap metadata"), "{e:?}");
        // Refused: the same spare; a spare with other data unless --force; a
        // spare too small for the remaps; an old spare without metadata.
        assert_eq!(migrate_command(&old, &old, false).unwrap_err().0, 2);
        std::fs::write(&new, vec![1u8; 32 << 20]).unwrap();
        let e = migrate_command(&old, &new, false).unwrap_err();
        assert!(
            e.1.contains("not blank") && e.1.contains("--force"),
            "{e:?}"
        );
        migrate_command(&old, &new, true).unwrap();
        assert_eq!(remapped_data(&new), remapped_data(&old));
        std::fs::write(&new, vec![0u8; 2 << 20]).unwrap();
        let e = migrate_command(&old, &new, false).unwrap_err();
        assert_eq!(e.0, 1, "{e:?}");
        let e = migrate_command(&new, &old, false).unwrap_err();
        assert!(e.1.contains("no valid dm-remap metadata"), "{e:?}");
        assert_eq!(
            std::fs::read(&old).unwrap(),
            before,
            "the old spare was written"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// In a fresh directory named by `tag`: the old image of
    /// [`migration_images`], what the tool reads of it, its migration to a
    /// blank 24 MiB spare, and the images to run it on (old sectors in
    /// `bad` unreadable).
    fn planned(
        tag: &str,
        bad: Vec<u64>,
    ) -> (std::path::PathBuf, String, Spare, migrate::Plan, Images) {
        let dir = std::env::temp_dir().join(format!("dmr-tool-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (old, _) = migration_images(&dir, 24);
        let o = read_spare(&old).unwrap();
        let plan = migrate::plan(&o, 24 << 11, 512).unwrap();
        let img = Images {
            old: std::fs::read(&old).unwrap(),
            new: vec![0u8; 24 << 20],
            bad,
        };
        (dir, old, o, plan, img)
    }

    #[test]
    fn a_migration_stopped_anywhere_leaves_a_new_spare_a_table_refuses_or_a_whole_one() {
        // Every prefix of the steps, with the writes since the last flush
        // each kept or lost: the new spare either has no valid copy and is
        // not blank (a table refuses it; nothing before the first step is
        // the blank spare it was), or it is the whole result, data included.
        let (dir, old, o, plan, mut whole) = planned("c", Vec::new());
        let steps = plan.steps();
        let old_img = whole.old.clone();
        assert_eq!(
            migrate::run(&plan, &steps, &mut whole).unwrap(),
            Vec::<u64>::new()
        );
        let path = dir.join("crash.img");
        let p = path.to_str().unwrap();
        std::fs::write(&path, &whole.new).unwrap();
        let want = remapped_data(p);
        assert_eq!(want, remapped_data(&old));
        let mut cases = 0;
        for k in 0..=steps.len() {
            let durable = steps[..k]
                .iter()
                .rposition(|s| *s == migrate::Step::Flush)
                .map_or(0, |i| i + 1);
            for upto in (durable..=k).collect::<std::collections::BTreeSet<_>>() {
                // Steps before `durable` are on disk; of the rest, those
                // before `upto` too (each unflushed write kept or lost in
                // order; a torn write is caught by the CRCs the same way).
                let mut img = Images {
                    old: old_img.clone(),
                    new: vec![0u8; 24 << 20],
                    bad: Vec::new(),
                };
                migrate::run(&plan, &steps[..upto], &mut img).unwrap();
                std::fs::write(&path, &img.new).unwrap();
                let s = read_spare(p).unwrap();
                match s.best {
                    None if upto == 0 => assert!(s.blank, "{k}/{upto}"),
                    None => assert!(
                        !s.blank,
                        "stopped at {k}/{upto}: blank, so a table would format it"
                    ),
                    Some(_) => {
                        assert!(
                            s.problems.is_empty() || upto < steps.len(),
                            "{:?}",
                            s.problems
                        );
                        assert_eq!(remapped_data(p), want, "stopped at {k}/{upto}");
                        assert_eq!(s.pending, o.pending);
                    }
                }
                cases += 1;
            }
        }
        assert!(cases > steps.len());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn blocks_the_old_spare_cannot_read_become_pending() {
        // The old spare's blocks of main blocks 7 (sector 5000) and 104
        // (sector 4100) do not read: everything else moves, those two are
        // pending on the new spare (their data is gone), beside the three
        // that were.
        let (dir, old, _, plan, mut img) = planned("u", vec![5000, 4100]);
        let data = plan.data_steps();
        let mut lost = migrate::run(&plan, &data, &mut img).unwrap();
        lost.sort_unstable();
        assert_eq!(lost, [7, 104]);
        let meta = plan.metadata_steps(&lost).unwrap();
        assert_eq!(
            migrate::run(&plan, &meta, &mut img).unwrap(),
            Vec::<u64>::new()
        );
        let path = dir.join("new.img");
        std::fs::write(&path, &img.new).unwrap();
        let p = path.to_str().unwrap();
        let n = read_spare(p).unwrap();
        assert!(n.problems.is_empty(), "{:?}", n.problems);
        assert_eq!(n.pending, [5, 7, 102, 104, 3000]);
        let want: Vec<_> = remapped_data(&old)
            .into_iter()
            .filter(|(m, _)| *m != 7 && *m != 104)
            .collect();
        assert_eq!(remapped_data(p), want);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn monitor_columns_are_files() {
        for f in SERIES {
            assert!(stats::file_id(f).is_some(), "{f} is not a stat file");
        }
    }

    #[test]
    fn blank_and_garbage() {
        let dir = std::env::temp_dir().join(format!("dmr-tool-b-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("blank.img");
        std::fs::write(&path, vec![0u8; 4 << 20]).unwrap();
        let s = read_spare(path.to_str().unwrap()).unwrap();
        assert!(s.blank && s.problems.is_empty());
        std::fs::write(&path, vec![0x5au8; 4 << 20]).unwrap();
        let s = read_spare(path.to_str().unwrap()).unwrap();
        assert!(!s.problems.is_empty());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
