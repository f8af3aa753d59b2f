// SPDX-License-Identifier: GPL-2.0

//! `dm-remap-tool`: checks and dumps the metadata on a dm-remap spare (a block
//! device or an image file), with the same format code as the kernel module
//! and CRCs by `crc32fast`.
//!
//! ```text
//! dm-remap-tool check <spare>          report every problem; exit 1 if any
//! dm-remap-tool dump [--json] <spare>  header, copies and remaps
//! dm-remap-tool stats [--json|--prometheus] [<stat_dir>]
//!                                      the statistics tree (default
//!                                      /sys/module/dm_remap/stat)
//! dm-remap-tool monitor [--interval-ms N] [--count N] [<stat_dir>]
//!                                      samples the tree as CSV
//! dm-remap-tool activate [--tab FILE] [NAME...]
//!                                      creates the devices of /etc/remaptab
//!                                      (or FILE) that are not there yet
//! dm-remap-tool deactivate [--tab FILE] [NAME...]
//!                                      removes them
//! dm-remap-tool generate [--tab FILE] DIR [EARLY_DIR LATE_DIR]
//!                                      systemd generator: a unit per
//!                                      device of the remaptab, in DIR
//! dm-remap-tool export --dm-linear <main> <spare>
//!                                      a dm-linear table that reads the
//!                                      same data without the module
//! dm-remap-tool export --format sectors|badblocks|md [--block-size N]
//!                      [--remapped|--pending] <spare>
//!                                      the remapped and pending blocks
//! ```

mod export;
mod remaptab;
mod spare;

use dm_remap::logic::stats;
use spare::{
    dump_text, extents, pending_sectors, read_spare, retired_sectors, state_text, uuid, Spare,
};
use std::fmt::Write as _;
use std::process::ExitCode;

const USAGE: &str = "usage: dm-remap-tool check <spare>
       dm-remap-tool dump [--json] <spare>
       dm-remap-tool stats [--json|--prometheus] [<stat_dir>]
       dm-remap-tool monitor [--interval-ms N] [--count N] [<stat_dir>]
       dm-remap-tool activate [--tab FILE] [NAME...]
       dm-remap-tool deactivate [--tab FILE] [NAME...]
       dm-remap-tool generate [--tab FILE] DIR [EARLY_DIR LATE_DIR]
       dm-remap-tool export --dm-linear <main> <spare>
       dm-remap-tool export --format sectors|badblocks|md [--block-size N] [--remapped|--pending] <spare>";

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
fn generate(rest: &[&str]) -> ExitCode {
    let (tab, dirs) = match rest {
        ["--tab", f, dirs @ ..] => (*f, dirs),
        dirs => (REMAPTAB, dirs),
    };
    let dir = match dirs {
        [d] | [d, _, _] if !d.starts_with('-') => std::path::Path::new(d),
        _ => {
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
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

/// The spare's metadata for `export`: refused (with the reason) when the
/// spare holds none.
fn exported(path: &str) -> Result<Spare, String> {
    let s = read_spare(path)?;
    if s.best.is_none() {
        return Err(format!(
            "{path} holds no valid dm-remap metadata ({}); nothing to export",
            if s.blank {
                "blank"
            } else {
                "dm-remap-tool check says why"
            }
        ));
    }
    for p in &s.problems {
        eprintln!("dm-remap-tool: warning: {path}: {p}");
    }
    Ok(s)
}

/// `export --dm-linear <main> <spare>` and `export --format F [--block-size
/// N] [--remapped|--pending] <spare>`.
fn export_command(rest: &[&str]) -> Result<String, (u8, String)> {
    let usage = || (2, USAGE.to_string());
    let fail = |e: String| (1, e);
    if let ["--dm-linear", main, spare] = rest {
        let s = exported(spare).map_err(fail)?;
        let h = s.best.ok_or_else(usage)?;
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
    let (mut format, mut unit, mut which, mut spare) = (None, None, None, None);
    let mut it = rest.iter();
    while let Some(a) = it.next() {
        match *a {
            "--format" => format = it.next().copied(),
            "--block-size" => {
                unit = Some(
                    it.next()
                        .and_then(|v| v.parse::<u64>().ok())
                        .filter(|v| *v >= 512 && v.is_power_of_two())
                        .ok_or_else(|| (2, "--block-size wants a power of two from 512".into()))?,
                )
            }
            w @ ("--remapped" | "--pending") if which.is_none() => which = Some(w),
            p if !p.starts_with('-') && spare.is_none() => spare = Some(p),
            _ => return Err(usage()),
        }
    }
    let spare = spare.ok_or_else(usage)?;
    let s = exported(spare).map_err(fail)?;
    let bs = u64::from(s.best.ok_or_else(usage)?.identity.block_size) / 512;
    let f = match (format, unit) {
        (Some("sectors"), None) => export::ListFormat::Sectors,
        (Some("md"), None) => export::ListFormat::Md,
        (Some("badblocks"), u) => export::ListFormat::Badblocks {
            unit: u.unwrap_or(bs * 512),
        },
        _ => return Err(usage()),
    };
    let mut starts: Vec<u64> = Vec::new();
    if which != Some("--pending") {
        starts.extend(
            extents(&s)
                .iter()
                .flat_map(|&(m, _, n)| (m..m + n).step_by(bs as usize)),
        );
    }
    if which != Some("--remapped") {
        starts.extend(pending_sectors(&s));
    }
    starts.sort_unstable();
    starts.dedup();
    Ok(export::block_list(&starts, bs, f))
}

/// `activate` / `deactivate [--tab FILE] [NAME...]`.
fn remaptab_command(cmd: &str, rest: &[&str]) -> ExitCode {
    let (tab, names) = match rest {
        ["--tab", f, names @ ..] => (*f, names),
        names => (REMAPTAB, names),
    };
    if names.iter().any(|n| n.starts_with('-')) {
        eprintln!("{USAGE}");
        return ExitCode::from(2);
    }
    let entries = match selected(tab, names) {
        Ok(e) => e,
        Err(e) => {
            eprintln!("dm-remap-tool: {e}");
            return ExitCode::from(2);
        }
    };
    let mut failed = false;
    for e in &entries {
        let r = if cmd == "activate" {
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

fn print_stats(dir: &str, format: &str) -> ExitCode {
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
        "--prometheus" => stats::write_prometheus(&mut out, &list),
        "--json" => stats::write_json(&mut out, &list, &all).map(|()| out.push('\n')),
        _ => {
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
    print!("{out}");
    ExitCode::SUCCESS
}

fn json_str(s: &str) -> String {
    let mut o = String::new();
    let _ = stats::json_str(&mut o, s);
    o
}

fn dump_json(s: &Spare) -> String {
    let mut o = String::from("{");
    let _ = write!(
        o,
        "\"format_version\":{},",
        s.version.map_or("null".into(), |v| v.to_string())
    );
    let _ = write!(o, "\"blank\":{},", s.blank);
    let _ = write!(o, "\"spare_sectors\":{},", s.size_sectors);
    if let (Some(h), Some(l)) = (s.best, s.layout) {
        let _ = write!(
            o,
            "\"uuid\":{},\"generation\":{},\"block_size\":{},\"main_sectors\":{},\
             \"pool_start\":{},\"slots\":{},\"remaps\":{},\"retired_count\":{},\
             \"pending_count\":{},",
            json_str(&uuid(&h.identity.uuid)),
            h.generation,
            h.identity.block_size,
            h.identity.main_sectors,
            l.pool_start,
            l.slots,
            h.remaps,
            h.retired,
            s.pending.len()
        );
    }
    o.push_str("\"copies\":[");
    for (i, (at, st)) in s.copies.iter().enumerate() {
        let (text, generation) = state_text(st);
        if i > 0 {
            o.push(',');
        }
        let _ = write!(
            o,
            "{{\"index\":{i},\"sector\":{at},\"state\":{},\"generation\":{}}}",
            json_str(&text),
            generation.map_or("null".into(), |g| g.to_string())
        );
    }
    o.push_str("],\"extents\":[");
    for (i, (m, sp, n)) in extents(s).iter().enumerate() {
        if i > 0 {
            o.push(',');
        }
        let _ = write!(
            o,
            "{{\"main_sector\":{m},\"spare_sector\":{sp},\"nr_sectors\":{n}}}"
        );
    }
    let list = |o: &mut String, name: &str, v: &[u64]| {
        let _ = write!(o, "],\"{name}\":[");
        for (i, x) in v.iter().enumerate() {
            if i > 0 {
                o.push(',');
            }
            let _ = write!(o, "{x}");
        }
    };
    list(&mut o, "pending", &pending_sectors(s));
    list(&mut o, "retired", &retired_sectors(s));
    o.push_str("],\"problems\":[");
    for (i, p) in s.problems.iter().enumerate() {
        if i > 0 {
            o.push(',');
        }
        o.push_str(&json_str(p));
    }
    o.push_str("]}");
    o
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let words: Vec<&str> = args.iter().map(String::as_str).collect();
    match words[..] {
        ["stats"] => return print_stats(STAT_DIR, ""),
        ["stats", f @ ("--json" | "--prometheus")] => return print_stats(STAT_DIR, f),
        ["stats", f @ ("--json" | "--prometheus"), dir] => return print_stats(dir, f),
        ["stats", dir] => return print_stats(dir, ""),
        [cmd @ ("activate" | "deactivate"), ref rest @ ..] => return remaptab_command(cmd, rest),
        ["generate", ref rest @ ..] => return generate(rest),
        ["export", ref rest @ ..] => {
            return match export_command(rest) {
                Ok(out) => {
                    print!("{out}");
                    ExitCode::SUCCESS
                }
                Err((code, e)) => {
                    if code == 2 {
                        eprintln!("{e}");
                    } else {
                        eprintln!("dm-remap-tool: {e}");
                    }
                    ExitCode::from(code)
                }
            }
        }
        ["monitor", ref rest @ ..] => {
            let mut interval = 1000u64;
            let mut count = None;
            let mut dir = STAT_DIR;
            let mut it = rest.iter();
            while let Some(a) = it.next() {
                let num = |v: Option<&&str>| v.and_then(|v| v.parse::<u64>().ok());
                match *a {
                    "--interval-ms" => match num(it.next()) {
                        Some(v) if v > 0 => interval = v,
                        _ => {
                            eprintln!("{USAGE}");
                            return ExitCode::from(2);
                        }
                    },
                    "--count" => match num(it.next()) {
                        Some(v) => count = Some(v),
                        None => {
                            eprintln!("{USAGE}");
                            return ExitCode::from(2);
                        }
                    },
                    d => dir = d,
                }
            }
            return monitor(dir, interval, count);
        }
        _ => {}
    }
    let (cmd, json, path) = match words[..] {
        ["check", p] => ("check", false, p.to_string()),
        ["dump", p] => ("dump", false, p.to_string()),
        ["dump", "--json", p] => ("dump", true, p.to_string()),
        _ => {
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    let s = match read_spare(&path) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("dm-remap-tool: {e}");
            return ExitCode::from(2);
        }
    };
    match cmd {
        "check" => {
            if s.problems.is_empty() {
                match s.best {
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
            } else {
                for p in &s.problems {
                    println!("{path}: {p}");
                }
                ExitCode::FAILURE
            }
        }
        _ => {
            if json {
                println!("{}", dump_json(&s));
            } else {
                print!("{}", dump_text(&s));
            }
            ExitCode::SUCCESS
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
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
