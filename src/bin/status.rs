// SPDX-License-Identifier: GPL-2.0

//! `dm-remap-tool status`: a remap device's table, status line and
//! statistics, in words a person reads or as JSON. The parsing and the
//! wording are here; reading `dmsetup` and sysfs is the caller's.

use dm_remap::logic::stats::{Counter, Snapshot};
use dm_remap::logic::status::{parse_info, Info, ScanState, SpareLevel, State};
use serde::Serialize;
use std::fmt::Write as _;

/// The status line's word for a state (`ok`, `low`, `running`, ...), which
/// is also its JSON value.
trait Word {
    fn word(&self) -> &'static str;
}

impl Word for State {
    fn word(&self) -> &'static str {
        self.as_str()
    }
}

impl Word for SpareLevel {
    fn word(&self) -> &'static str {
        self.as_str()
    }
}

impl Word for ScanState {
    fn word(&self) -> &'static str {
        self.as_str()
    }
}

fn words<W: Word, S: serde::Serializer>(w: &W, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(w.word())
}

/// A lower device as the table names it.
#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct Lower {
    /// `major:minor`, as in the table.
    pub dev: String,
    /// `/dev/<kernel name>`, when sysfs knows the device.
    pub path: Option<String>,
}

/// The I/O counters of the statistics tree (`/sys/module/dm_remap/stat`).
#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct Io {
    /// Read requests.
    pub reads: u64,
    /// Write requests.
    pub writes: u64,
    /// Bytes read.
    pub read_bytes: u64,
    /// Bytes written.
    pub write_bytes: u64,
    /// Reads sent to the spare.
    pub remapped_reads: u64,
    /// Writes sent to the spare.
    pub remapped_writes: u64,
    /// I/O errors of main.
    pub main_errors: u64,
    /// I/O errors of the spare.
    pub spare_errors: u64,
    /// Remaps made on I/O errors.
    pub auto_remaps: u64,
    /// Metadata commits.
    pub metadata_commits: u64,
}

impl Io {
    /// The counters of a statistics snapshot.
    pub fn of(s: &Snapshot) -> Self {
        let c = |x: Counter| s.c[x as usize];
        Io {
            reads: c(Counter::Reads),
            writes: c(Counter::Writes),
            read_bytes: c(Counter::ReadBytes),
            write_bytes: c(Counter::WriteBytes),
            remapped_reads: c(Counter::RemappedReads),
            remapped_writes: c(Counter::RemappedWrites),
            main_errors: c(Counter::MainErrors),
            spare_errors: c(Counter::SpareErrors),
            auto_remaps: c(Counter::AutoRemaps),
            metadata_commits: c(Counter::Commits),
        }
    }
}

/// The scanner's part of the status line.
#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct Scan {
    /// `idle`, `running` or `paused`.
    #[serde(serialize_with = "words")]
    pub state: ScanState,
    /// Next main sector it reads.
    pub position: u64,
    /// Full passes completed.
    pub passes: u64,
}

/// One remap device.
#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct Device {
    /// Its dmsetup name.
    pub name: String,
    /// Its kernel name (`dm-3`), when sysfs has it.
    pub kernel_name: Option<String>,
    /// Length in 512-byte sectors.
    pub sectors: u64,
    /// The main device.
    pub main: Lower,
    /// The spare device.
    pub spare: Lower,
    /// The table's optional arguments.
    pub options: Vec<String>,
    /// `ok`, `inactive` or `fail`.
    #[serde(serialize_with = "words")]
    pub state: State,
    /// Remap granularity in bytes.
    pub block_size: u32,
    /// Remapped blocks.
    pub remaps: u64,
    /// Spare pool blocks in use.
    pub spare_used: u64,
    /// Spare pool blocks usable.
    pub spare_total: u64,
    /// `ok`, `low` or `exhausted`.
    #[serde(serialize_with = "words")]
    pub spare_level: SpareLevel,
    /// Main blocks whose reads failed, waiting for a write.
    pub pending: u64,
    /// Spare blocks retired after write errors.
    pub retired: u64,
    /// Buckets of the remap hash table.
    pub buckets: u64,
    /// Hash table resizes since the table was loaded.
    pub resizes: u64,
    /// Whether I/O errors are remapped.
    pub auto_remap: bool,
    /// The background scanner.
    pub scan: Scan,
    /// The statistics' I/O counters, when the module's tree has the device.
    pub io: Option<Io>,
}

/// A remap table line (`<start> <len> remap <main> <spare> [<n> <opt>...]`):
/// its length, main, spare and options.
pub fn parse_table(line: &str) -> Option<(u64, String, String, Vec<String>)> {
    let w: Vec<&str> = line.split_whitespace().collect();
    let [_, len, "remap", main, spare, rest @ ..] = &w[..] else {
        return None;
    };
    let options = match rest {
        [] => Vec::new(),
        [n, opts @ ..] if n.parse::<usize>().ok() == Some(opts.len()) => {
            opts.iter().map(|o| o.to_string()).collect()
        }
        _ => return None,
    };
    Some((
        len.parse().ok()?,
        main.to_string(),
        spare.to_string(),
        options,
    ))
}

/// The status line's fields after `<start> <len> remap`.
pub fn parse_status(line: &str) -> Option<Info> {
    let w: Vec<&str> = line.split_whitespace().collect();
    match &w[..] {
        [_, _, "remap", rest @ ..] => parse_info(rest),
        _ => None,
    }
}

/// Puts a device together from its table and status lines; `lower` turns
/// `major:minor` into a path, `kname` and `io` come from sysfs.
pub fn device(
    name: &str,
    table: &str,
    status: &str,
    kname: Option<String>,
    io: Option<Io>,
    lower: impl Fn(&str) -> Option<String>,
) -> Result<Device, String> {
    let (sectors, main, spare, options) = parse_table(table)
        .ok_or_else(|| format!("{name} is not a remap device (table: {})", table.trim()))?;
    let i = parse_status(status).ok_or_else(|| {
        format!(
            "{name}: a status line this tool cannot read: {}",
            status.trim()
        )
    })?;
    let lower = |dev: String| Lower {
        path: lower(&dev),
        dev,
    };
    Ok(Device {
        name: name.to_string(),
        kernel_name: kname,
        sectors,
        main: lower(main),
        spare: lower(spare),
        options,
        state: i.state,
        block_size: i.block_size,
        remaps: i.remaps,
        spare_used: i.spare_used,
        spare_total: i.spare_total,
        spare_level: i.spare,
        pending: i.pending,
        retired: i.retired,
        buckets: i.buckets,
        resizes: i.resizes,
        auto_remap: i.auto_remap,
        scan: Scan {
            state: i.scan,
            position: i.scan_position,
            passes: i.scan_passes,
        },
        io,
    })
}

fn plural(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// The device in words, a heading and indented lines.
pub fn describe(d: &Device) -> String {
    let mut o = String::new();
    let lower = |l: &Lower| match &l.path {
        Some(p) => format!("{p} ({})", l.dev),
        None => l.dev.clone(),
    };
    let state = match d.state {
        State::Ok => "ok".to_string(),
        State::Inactive => {
            "inactive: the table is loaded but was never resumed (metadata not read yet)".into()
        }
        State::Fail => format!(
            "FAIL: a metadata commit failed; writes are refused until \
             `dmsetup message {} 0 clear_fail` (reads are served)",
            d.name
        ),
    };
    let _ = writeln!(
        o,
        "{}{}: {state}",
        d.name,
        d.kernel_name
            .as_ref()
            .map_or(String::new(), |k| format!(" ({k})"))
    );
    let _ = writeln!(o, "  main        {}, {} sectors", lower(&d.main), d.sectors);
    let _ = writeln!(o, "  spare       {}", lower(&d.spare));
    if !d.options.is_empty() {
        let _ = writeln!(o, "  options     {}", d.options.join(" "));
    }
    let _ = writeln!(
        o,
        "  remaps      {} of {} bytes",
        plural(d.remaps, "block", "blocks"),
        d.block_size
    );
    let pct = if d.spare_total == 0 {
        100.0
    } else {
        d.spare_used as f64 * 100.0 / d.spare_total as f64
    };
    let level = match d.spare_level {
        SpareLevel::Ok => "ok".to_string(),
        SpareLevel::Low => "LOW: at or below spare_low; plan a larger spare".to_string(),
        SpareLevel::Exhausted => {
            "EXHAUSTED: no free block; new bad blocks cannot be remapped".to_string()
        }
    };
    let _ = writeln!(
        o,
        "  spare pool  {} of {} used ({pct:.1}%), {level}",
        d.spare_used,
        plural(d.spare_total, "block", "blocks")
    );
    let _ = writeln!(
        o,
        "  pending     {}{}",
        plural(d.pending, "main block unreadable", "main blocks unreadable"),
        match d.pending {
            0 => "",
            1 => ": its data is lost unless a write replaces it",
            _ => ": their data is lost unless writes replace it",
        }
    );
    let _ = writeln!(
        o,
        "  retired     {} (write errors)",
        plural(d.retired, "spare block", "spare blocks")
    );
    let _ = writeln!(
        o,
        "  auto remap  {}",
        if d.auto_remap {
            "on: I/O errors on main are remapped"
        } else {
            "off: I/O errors pass through"
        }
    );
    let scan = match d.scan.state {
        ScanState::Idle => "idle".to_string(),
        ScanState::Running => format!("running, at sector {}", d.scan.position),
        ScanState::Paused => format!("paused (device suspended), at sector {}", d.scan.position),
    };
    let _ = writeln!(
        o,
        "  scanner     {scan}; {} completed",
        plural(d.scan.passes, "full pass", "full passes")
    );
    let _ = writeln!(
        o,
        "  hash table  {}, {} since the table was loaded",
        plural(d.buckets, "bucket", "buckets"),
        plural(d.resizes, "resize", "resizes")
    );
    if let Some(io) = &d.io {
        let _ = writeln!(
            o,
            "  I/O         {} ({} remapped), {} ({} remapped)",
            plural(io.reads, "read", "reads"),
            io.remapped_reads,
            plural(io.writes, "write", "writes"),
            io.remapped_writes
        );
        let _ = writeln!(
            o,
            "  errors      {} on main, {} on the spare; {}, {}",
            io.main_errors,
            io.spare_errors,
            plural(io.auto_remaps, "automatic remap", "automatic remaps"),
            plural(io.metadata_commits, "metadata commit", "metadata commits")
        );
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    const TABLE: &str = "0 131072 remap 7:0 7:1 2 block_size 4096";
    const STATUS: &str = "0 131072 remap ok 4096 3 3/3584 64 0 1 0 low on running 262144 2";

    #[test]
    fn table_lines() {
        assert_eq!(
            parse_table(TABLE),
            Some((
                131072,
                "7:0".into(),
                "7:1".into(),
                vec!["block_size".into(), "4096".into()]
            ))
        );
        assert_eq!(
            parse_table("0 8 remap 7:0 7:1"),
            Some((8, "7:0".into(), "7:1".into(), vec![]))
        );
        for bad in [
            "0 8 linear 7:0 0",
            "0 8 remap 7:0",
            "0 8 remap 7:0 7:1 3 block_size 4096",
            "0 x remap 7:0 7:1",
            "",
        ] {
            assert_eq!(parse_table(bad), None, "{bad}");
        }
    }

    #[test]
    fn words_and_json() {
        let lower = |d: &str| (d == "7:0").then(|| "/dev/loop0".to_string());
        let d = device("data", TABLE, STATUS, Some("dm-3".into()), None, lower).unwrap();
        let text = describe(&d);
        for line in [
            "data (dm-3): ok\n",
            "  main        /dev/loop0 (7:0), 131072 sectors\n",
            "  spare       7:1\n",
            "  options     block_size 4096\n",
            "  remaps      3 blocks of 4096 bytes\n",
            "  spare pool  3 of 3584 blocks used (0.1%), LOW: at or below spare_low",
            "  pending     1 main block unreadable: its data is lost",
            "  scanner     running, at sector 262144; 2 full passes completed\n",
        ] {
            assert!(text.contains(line), "{line:?} not in\n{text}");
        }
        assert!(!text.contains("  I/O "), "{text}");
        let j: serde_json::Value = serde_json::to_value(&d).unwrap();
        assert_eq!(j["kernel_name"], "dm-3");
        assert_eq!(j["main"]["path"], "/dev/loop0");
        assert_eq!(j["spare"]["path"], serde_json::Value::Null);
        assert_eq!(j["spare_level"], "low");
        assert_eq!(j["scan"]["position"], 262144);
        assert_eq!(j["io"], serde_json::Value::Null);

        let fail = STATUS.replacen(" ok ", " fail ", 1);
        let io = Io::of(&Snapshot::default());
        let d = device("data", TABLE, &fail, None, Some(io), |_| None).unwrap();
        let text = describe(&d);
        assert!(text.starts_with("data: FAIL: "), "{text}");
        assert!(text.contains("clear_fail"), "{text}");
        assert!(
            text.contains("  I/O         0 reads (0 remapped), 0 writes"),
            "{text}"
        );

        let e = device("lin", "0 8 linear 7:0 0", STATUS, None, None, |_| None).unwrap_err();
        assert!(e.contains("lin is not a remap device"), "{e}");
        let e = device("data", TABLE, "0 8 remap ok", None, None, |_| None).unwrap_err();
        assert!(e.contains("cannot read"), "{e}");
    }
}
