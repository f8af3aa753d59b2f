//! `cargo xtask bench`'s report: the rows the guest job
//! (`scripts/guest/bench.sh`, format "dm-remap bench 2") prints between
//! `DMR-BENCH-BEGIN` and `DMR-BENCH-END`, turned into `docs/benchmarks.md`,
//! with the performance goals checked against them.

use std::collections::BTreeMap;
use std::fmt::Write;

/// One data path row: `<workload> <region> <device> <remaps> <IOPS> <ratio> <to_spare>`.
#[derive(Debug, PartialEq)]
pub struct Row {
    pub workload: String,
    pub region: String,
    pub device: String,
    pub remaps: Option<u64>,
    pub iops: f64,
    pub ratio: f64,
    pub to_spare: Option<f64>,
}

/// What the guest printed.
#[derive(Debug, Default)]
pub struct Report {
    pub header: String,
    pub settings: String,
    pub kernel: String,
    pub rows: Vec<Row>,
    /// The other rows (`import`, `memory`, `commit-wait`, ...): name, then
    /// the first row's values for that name and count (`import 100000`
    /// keyed as `import 100000`).
    pub figures: BTreeMap<String, Vec<f64>>,
    /// Every line, as printed.
    pub text: String,
}

const WORKLOADS: [&str; 4] = ["randread", "randwrite", "read", "write"];

/// Rows whose second word is a count, part of the key (`import 100000`).
const COUNTED: [&str; 4] = ["import", "import-carry", "memory", "memory-peak"];

pub fn parse(block: &str) -> Result<Report, String> {
    let mut r = Report {
        text: block.to_string(),
        ..Report::default()
    };
    for line in block.lines() {
        let w: Vec<&str> = line.split_whitespace().collect();
        match w.as_slice() {
            [] => {}
            ["dm-remap", "bench", _] => r.header = line.to_string(),
            [first, ..] if first.ends_with(':') => {
                let rest = line[first.len()..].trim().to_string();
                match *first {
                    "settings:" => r.settings = rest,
                    "kernel:" => r.kernel = rest,
                    _ => {}
                }
            }
            ["workload", ..] => {}
            [wl, region, device, remaps, iops, ratio, spare] if WORKLOADS.contains(wl) => {
                let num = |s: &str| {
                    s.parse::<f64>()
                        .map_err(|_| format!("bad number in '{line}'"))
                };
                r.rows.push(Row {
                    workload: wl.to_string(),
                    region: region.to_string(),
                    device: device.to_string(),
                    remaps: remaps.parse().ok(),
                    iops: num(iops)?,
                    ratio: num(ratio)?,
                    to_spare: spare.parse().ok(),
                });
            }
            [name, rest @ ..] => {
                let (key, values) = match rest {
                    [n, v @ ..] if COUNTED.contains(name) => (format!("{name} {n}"), v),
                    v => (name.to_string(), v),
                };
                let values = values
                    .iter()
                    .map(|s| {
                        s.parse::<f64>()
                            .map_err(|_| format!("bad number in '{line}'"))
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                r.figures.insert(key, values);
            }
        }
    }
    if r.header != "dm-remap bench 2" {
        return Err(format!("expected 'dm-remap bench 2', got '{}'", r.header));
    }
    if r.rows.is_empty() {
        return Err("no data path rows".into());
    }
    Ok(r)
}

/// A performance goal and what the run measured for it.
pub struct Goal {
    pub what: &'static str,
    pub measured: String,
    /// None: the run lacks the rows to tell.
    pub met: Option<bool>,
}

impl Report {
    fn figure(&self, key: &str, i: usize) -> Option<f64> {
        self.figures.get(key).and_then(|v| v.get(i)).copied()
    }

    /// The remap count of the last phase (about a million).
    fn top(&self) -> Option<u64> {
        self.rows.iter().filter_map(|r| r.remaps).max()
    }

    /// The lowest ratio among dm-remap's rows of `region` at `remaps`, and
    /// its workload.
    fn worst(&self, region: &str, remaps: Option<u64>) -> Option<(f64, &str)> {
        self.rows
            .iter()
            .filter(|r| r.device == "remap" && r.region == region && r.remaps == remaps)
            .map(|r| (r.ratio, r.workload.as_str()))
            .min_by(|a, b| a.0.total_cmp(&b.0))
    }

    pub fn goals(&self) -> Vec<Goal> {
        let ratio = |what, region, remaps, min: f64| {
            let w = self.worst(region, remaps);
            Goal {
                what,
                measured: w.map_or("-".into(), |(v, wl)| format!("{v:.3} ({wl})")),
                met: w.map(|(v, _)| v >= min),
            }
        };
        let below = |what, value: Option<f64>, unit: &str, max: f64| Goal {
            what,
            measured: value.map_or("-".into(), |v| format!("{v:.0} {unit}")),
            met: value.map(|v| v < max),
        };
        let commit_waits = match (self.figure("commit-wait", 0), self.figure("remap-wait", 0)) {
            (Some(a), Some(b)) => Some(a.max(b)),
            _ => None,
        };
        let resize = below(
            "no I/O waits > 1 ms for a resize (longest read around the import from 900k to 1M remaps)",
            self.figure("resize-wait", 0),
            "µs",
            1000.0,
        );
        vec![
            ratio(
                "unremapped: dm-remap at 0 remaps ≥ 0.99 of dm-linear",
                "all",
                Some(0),
                0.99,
            ),
            ratio(
                "1M remaps, whole device (mostly misses) ≥ 0.97",
                "all",
                self.top(),
                0.97,
            ),
            ratio(
                "1M remaps, remapped blocks only (hits) ≥ 0.95",
                "hits",
                self.top(),
                0.95,
            ),
            Goal {
                measured: match self.figure("add-wait", 0) {
                    Some(a) => format!("{} (the last block alone: {a:.0} µs)", resize.measured),
                    None => resize.measured,
                },
                ..resize
            },
            below(
                "100,000 blocks imported and durable < 10 s",
                self.figure("import 100000", 0),
                "ms",
                10_000.0,
            ),
            below(
                "1,000,000 blocks imported and durable < 60 s",
                self.figure("import 1000000", 0),
                "ms",
                60_000.0,
            ),
            below(
                "unrelated I/O never waits for a commit (longest read beside commits < the 10 ms flush)",
                commit_waits,
                "µs",
                10_000.0,
            ),
        ]
    }
}

/// Where and how the run happened, for the report's header.
pub struct Meta {
    pub commit: String,
    pub series: String,
    pub date: String,
}

/// The meaning of the rows after the data path table, as the guest job's
/// header describes them.
const FIGURES: [(&str, &str); 11] = [
    ("import", "guest ms to import the first N scattered blocks (`dm-remap-tool import --format sectors`, durable when it returns; sum of the commands)"),
    ("import-carry", "guest ms to import 10,000 more with `--carry` (suspend, copy, commit, resume per 4096 blocks)"),
    ("resize-wait", "max and p99 latency (µs) of fio randread 4 KiB qd1 around the import of blocks 900,001 to 999,999, which rebuilds and splits segments of the table; the resizes it logged"),
    ("add-wait", "the same around the import of the millionth block alone"),
    ("memory", "growth of Slab + VmallocUsed per remap after the import (bytes)"),
    ("memory-peak", "the highest growth sampled (every 50 ms) during the import, per remap at its end (bytes)"),
    ("write-good", "mean and max latency (µs) of O_DIRECT 4 KiB writes (qd1) to good blocks, spare behind 10 ms flushes"),
    ("write-remap", "the same for writes that hit a bad block and are remapped automatically (retry, spare write, commit)"),
    ("commit", "guest ms of one `add_remap` (one block, one metadata commit, with the start of dmsetup), mean of 20"),
    ("commit-wait", "max and p99 latency (µs) of fio randread 4 KiB qd1 on unremapped blocks during those commits"),
    ("remap-wait", "the same during remapping writes"),
];

fn meaning(key: &str) -> &'static str {
    let name = key.split(' ').next().unwrap_or(key);
    FIGURES
        .iter()
        .find(|(n, _)| *n == name)
        .map_or("", |(_, m)| m)
}

pub fn markdown(r: &Report, m: &Meta) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "<!-- Generated by `cargo xtask bench` (xtask/src/bench.rs); do not edit, run it again. -->\n\
         # Benchmarks\n\n\
         Generated by `cargo xtask bench` on {} from commit `{}`, on the {} perf kernel \
         ({}), under QEMU with `-icount shift=0,sleep=off`: every figure is guest time, \
         which counts instructions (1 ns each), so figures repeat from run to run but are \
         not a real machine's. Format: {}; settings: {}.\n",
        m.date, m.commit, m.series, r.kernel, r.header, r.settings
    );
    s.push_str("## Goals\n\n| goal | measured | met |\n|---|---|---|\n");
    for g in r.goals() {
        let met = match g.met {
            Some(true) => "yes",
            Some(false) => "**no**",
            None => "not measured",
        };
        let _ = writeln!(s, "| {} | {} | {} |", g.what, g.measured, met);
    }
    s.push_str(
        "\n## Data path\n\n![IOPS against remap count](benchmarks.png)\n\n\
         | workload | region | device | remaps | IOPS | ratio to dm-linear | sent to spare |\n\
         |---|---|---|---:|---:|---:|---:|\n",
    );
    let dash = |v: Option<String>| v.unwrap_or_else(|| "-".into());
    for row in &r.rows {
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {:.0} | {:.3} | {} |",
            row.workload,
            row.region,
            row.device,
            dash(row.remaps.map(|n| n.to_string())),
            row.iops,
            row.ratio,
            dash(row.to_spare.map(|v| format!("{v:.4}"))),
        );
    }
    s.push_str(
        "\n## Imports, resizes, memory, error path\n\n| row | values | meaning |\n|---|---|---|\n",
    );
    for line in r.text.lines() {
        let w: Vec<&str> = line.split_whitespace().collect();
        let Some(name) = w.first() else { continue };
        if WORKLOADS.contains(name)
            || ["dm-remap", "settings:", "kernel:", "workload"].contains(name)
        {
            continue;
        }
        let (key, values) = if COUNTED.contains(name) && w.len() > 1 {
            (format!("{name} {}", w[1]), &w[2..])
        } else {
            (name.to_string(), &w[1..])
        };
        let _ = writeln!(s, "| `{key}` | {} | {} |", values.join(" "), meaning(&key));
    }
    s.push_str(METHOD);
    let _ = writeln!(s, "\n## Output\n\n```text\n{}```", r.text);
    s
}

const METHOD: &str = "
## Method

One guest run on the perf kernel (`scripts/guest/bench.sh` has the details
and the row format). The guest has one CPU under instruction counting and
the perf kernel of 6.12 no preemption, so whatever the kernel does without
yielding delays every other task. Latencies are fio's total latency
(submission to completion), in guest µs.

Data path: main is a 16 GiB null_blk device and the spare 5 GiB, both
without memory backing, so nothing below the mapping costs time;
`block_size 4096`, so the pool holds 1,048,576 blocks. fio (io_uring, queue
depth 32, 2 jobs each on its half of the region, `--runtime` guest seconds
per run) runs 4 KiB random reads and writes and 128 KiB sequential reads
and writes on main itself (raw, at 0 remaps), dm-linear and dm-remap, taking
turns in `--rounds` rounds, in phases of 0, 10,000, 100,000 and 1,000,000
scattered remaps (block i × 2654435761 mod 2^22), each reached by importing
more of the same list. Region `all` is the whole device (mostly misses: at
1M a quarter of the blocks are remapped, and a 128 KiB request spans 32
blocks, so `sent to spare` is higher there); region `hits` is a 32 MiB
region at 8 GiB whose 8,192 blocks are all remapped (added with one
`add_remaps` after the first 10,000 scattered ones), in the table that also
holds the scattered remaps, so every lookup walks a table of that size (fio
cannot be confined to scattered blocks); its dm-linear rows run on the same
region. A ratio is dm-remap's IOPS over dm-linear's in the same phase and
region; `remaps` is the device's count then (scattered plus the region).
Imports are timed per command on that device and summed.

Resizes: the table rebuilds a segment (or splits it in two) whenever one
would pass 85 % full, so from 900,000 to 1M remaps it resizes many times. A
fresh device imports 900,000 blocks, then blocks 900,001 to 999,999 with
fio randread 4 KiB at queue depth 1 on the device around them
(`resize-wait`, with the resizes the import logged), then the millionth
block alone the same way (`add-wait`: what an import costs the reads
anyway). Memory is Slab + VmallocUsed, sampled every
50 ms during these imports.

Error path: a 1 GiB null_blk main with bad blocks (null_blk `badblocks`)
and a 16 MiB spare behind dm-delay whose flushes take 10 ms (a
memory-backed null_blk with a write cache, so that flushes reach dm-delay;
reads and writes are not delayed). 32 O_DIRECT 4 KiB writes hit bad blocks
and are remapped by the error path; 20 `add_remap` messages commit one block
each; fio randread qd1 on unremapped blocks runs beside each. A read that
waited for a commit would take at least the 10 ms flush. dm-delay's worker
polls while a flush waits, and takes the CPU from the reads meanwhile.
";

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "dm-remap bench 2
settings: fio io_uring qd32
kernel: 6.12.117 2 CPUs
workload  region device   remaps       IOPS   ratio  to_spare
randread  all    raw           -     100000   1.010         -
randread  all    linear        -      99000   1.000         -
randread  all    remap         0      98500   0.995    0.0000
randread  all    remap   1006000      97000   0.980    0.2400
randread  hits   linear        -      99000   1.000         -
randread  hits   remap   1006000      93000   0.940    1.0000
import 100000 4000
import 1000000 52000
resize-wait 240 40 1
commit-wait 90 30
remap-wait 12000 40
";

    #[test]
    fn parses_and_checks_goals() {
        let r = parse(SAMPLE).unwrap();
        assert_eq!(r.rows.len(), 6);
        assert_eq!(r.rows[3].remaps, Some(1006000));
        assert_eq!(r.rows[0].to_spare, None);
        assert_eq!(r.figure("import 1000000", 0), Some(52000.0));
        assert_eq!(r.figure("resize-wait", 2), Some(1.0));
        let met: Vec<Option<bool>> = r.goals().iter().map(|g| g.met).collect();
        assert_eq!(
            met,
            [
                Some(true),
                Some(true),
                Some(false),
                Some(true),
                Some(true),
                Some(true),
                Some(false)
            ]
        );
        let md = markdown(
            &r,
            &Meta {
                commit: "abc1234".into(),
                series: "6.12".into(),
                date: "2026-12-01".into(),
            },
        );
        assert!(md.contains("| randread | hits | remap | 1006000 | 93000 | 0.940 | 1.0000 |"));
        assert!(md.contains("| `import 100000` | 4000 |"));
    }

    #[test]
    fn refuses_other_formats() {
        assert!(parse("dm-remap bench 1\nrandread linear 1 1 -\n").is_err());
        assert!(parse("dm-remap bench 2\n").is_err());
    }
}
