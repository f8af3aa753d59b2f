// SPDX-License-Identifier: GPL-2.0

//! The constructor's table line.
//!
//! ```text
//! <start> <len> remap <main_dev> <spare_dev> [<#feature_args> <feature_arg>...]
//! ```
//!
//! device-mapper hands the constructor everything after the target name. The
//! feature arguments follow the convention of dm-flakey and dm-thin: a count,
//! then that many words. Known features:
//!
//! - `block_size <bytes>`: the remap granularity, a power of two from the
//!   devices' logical block size up to [`MAX_BLOCK_SIZE`]. Default: the logical
//!   block size.
//! - `copies <n>`: metadata copies written when the spare is formatted, 1 to
//!   16 (default 5). A formatted spare keeps the count it was formatted with.
//! - `metadata_slots <n>`: pool blocks the metadata of a spare formatted
//!   by this table describes, 1 to [`MAX_METADATA_SLOTS`] (default: the whole
//!   pool, up to 1,048,576 blocks); it sizes the metadata area. A formatted
//!   spare keeps the size it was formatted with.
//! - `format`: allows formatting a spare whose metadata area holds no valid
//!   metadata of this device pair (garbage, or another pair's). Valid metadata
//!   of this pair is never overwritten.
//! - `migrate_to <dev>`: when the table is resumed, every remap moves, with
//!   its data, from the spare to `dev` (blank, at least as large, with the
//!   same logical block size), which the device then uses as its spare
//!   (docs/online-migration.md).
//! - the error-handling and scanner settings of [`super::policy`]
//!   (`auto_remap on|off`, `read_retries <n>`, `write_retries <n>`,
//!   `error_threshold <n>`, `spare_low <percent>`, `scan_rate <MiB/s>`,
//!   `scan_chunk <KiB>`), each followed by its value.

use super::number::{parse_u32, parse_u64};
use super::policy::{Policy, Setting};
use super::Refusal;

/// The largest remap block size accepted, in bytes.
pub const MAX_BLOCK_SIZE: u32 = 64 * 1024;

/// The most pool blocks `metadata_slots` may ask for: a copy of 64 GiB of
/// entry units at most.
pub const MAX_METADATA_SLOTS: u64 = 1 << 30;

/// The smallest remap block size accepted, in bytes.
pub const MIN_BLOCK_SIZE: u32 = 512;

/// Optional behaviour chosen on the table line.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Features {
    /// `block_size <bytes>`, if given.
    pub block_size: Option<u32>,
    /// `copies <n>`, if given.
    pub copies: Option<u32>,
    /// `metadata_slots <n>`, if given.
    pub metadata_slots: Option<u64>,
    /// `format`.
    pub format: bool,
    /// Error-handling and scanner settings (defaults unless given).
    pub policy: Policy,
}

impl Features {
    /// Number of feature words this set prints (the `<#feature_args>` value).
    pub fn arg_count(&self) -> u32 {
        let mut n = 0;
        if self.block_size.is_some() {
            n += 2;
        }
        if self.copies.is_some() {
            n += 2;
        }
        if self.metadata_slots.is_some() {
            n += 2;
        }
        if self.format {
            n += 1;
        }
        n + self.policy.arg_count()
    }
}

/// A parsed table line; the device strings borrow from the arguments.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TableLine<'a> {
    /// Path or `major:minor` of the main device.
    pub main: &'a str,
    /// Path or `major:minor` of the spare device.
    pub spare: &'a str,
    /// Feature arguments.
    pub features: Features,
    /// `migrate_to <dev>`: path or `major:minor` of the spare to move to.
    pub migrate_to: Option<&'a str>,
}

const USAGE: Refusal = Refusal::new(
    c"Invalid argument count: need <main_dev> <spare_dev> [<#feature_args> <feature_arg>...]",
);

/// Parses the arguments device-mapper gives the constructor.
pub fn parse<'a>(args: &[&'a str]) -> Result<TableLine<'a>, Refusal> {
    let (main, spare, rest) = match args {
        [main, spare, rest @ ..] => (*main, *spare, rest),
        _ => return Err(USAGE),
    };
    if main.is_empty() || spare.is_empty() {
        return Err(USAGE);
    }
    let (features, migrate_to) = parse_features(rest)?;
    Ok(TableLine {
        main,
        spare,
        features,
        migrate_to,
    })
}

fn parse_features<'a>(rest: &[&'a str]) -> Result<(Features, Option<&'a str>), Refusal> {
    let mut features = Features::default();
    let mut migrate_to = None;
    let (count, words) = match rest {
        [] => return Ok((features, migrate_to)),
        [count, words @ ..] => (*count, words),
    };
    let count = parse_u32(count).ok_or(Refusal::new(c"Invalid number of feature arguments"))?;
    if usize::try_from(count).ok() != Some(words.len()) {
        return Err(Refusal::new(
            c"Number of feature arguments does not match the arguments given",
        ));
    }
    let mut it = words.iter();
    let mut seen = 0u32;
    while let Some(word) = it.next() {
        match *word {
            name if Setting::is_name(name) => {
                let value = it
                    .next()
                    .ok_or(Refusal::new(c"Policy feature needs a value"))?;
                let setting = Setting::parse(name, value)?;
                let bit = 1 << setting.index();
                if seen & bit != 0 {
                    return Err(Refusal::new(c"Policy feature given twice"));
                }
                seen |= bit;
                features.policy.apply(setting);
            }
            "block_size" => {
                if features.block_size.is_some() {
                    return Err(Refusal::new(c"Feature block_size given twice"));
                }
                let value = it
                    .next()
                    .ok_or(Refusal::new(c"Feature block_size needs a value in bytes"))?;
                let bs = parse_u32(value)
                    .ok_or(Refusal::new(c"Invalid block_size: not a decimal number"))?;
                if !bs.is_power_of_two() || !(MIN_BLOCK_SIZE..=MAX_BLOCK_SIZE).contains(&bs) {
                    return Err(Refusal::new(
                        c"Invalid block_size: must be a power of two from 512 to 65536",
                    ));
                }
                features.block_size = Some(bs);
            }
            "copies" => {
                if features.copies.is_some() {
                    return Err(Refusal::new(c"Feature copies given twice"));
                }
                let value = it
                    .next()
                    .ok_or(Refusal::new(c"Feature copies needs a number"))?;
                match parse_u32(value) {
                    Some(n) if (1..=16).contains(&n) => features.copies = Some(n),
                    _ => return Err(Refusal::new(c"Invalid copies: must be from 1 to 16")),
                }
            }
            "metadata_slots" => {
                if features.metadata_slots.is_some() {
                    return Err(Refusal::new(c"Feature metadata_slots given twice"));
                }
                let value = it
                    .next()
                    .ok_or(Refusal::new(c"Feature metadata_slots needs a number"))?;
                match parse_u64(value) {
                    Some(n) if (1..=MAX_METADATA_SLOTS).contains(&n) => {
                        features.metadata_slots = Some(n)
                    }
                    _ => {
                        return Err(Refusal::new(
                            c"Invalid metadata_slots: must be from 1 to 1073741824",
                        ))
                    }
                }
            }
            "format" => {
                if features.format {
                    return Err(Refusal::new(c"Feature format given twice"));
                }
                features.format = true;
            }
            "migrate_to" => {
                if migrate_to.is_some() {
                    return Err(Refusal::new(c"Feature migrate_to given twice"));
                }
                match it.next() {
                    Some(dev) if !dev.is_empty() => migrate_to = Some(*dev),
                    _ => return Err(Refusal::new(c"Feature migrate_to needs a device")),
                }
            }
            _ => return Err(Refusal::new(c"Unknown feature argument")),
        }
    }
    Ok((features, migrate_to))
}

/// Writes the canonical table line (what `dmsetup table` prints after the
/// target name): device names as device-mapper knows them (`major:minor`),
/// then the feature group, omitted when empty.
pub fn write_canonical<W: core::fmt::Write>(
    w: &mut W,
    main: &str,
    spare: &str,
    features: &Features,
    migrate_to: Option<&str>,
) -> core::fmt::Result {
    write!(w, "{main} {spare}")?;
    let n = features.arg_count() + if migrate_to.is_some() { 2 } else { 0 };
    if n > 0 {
        write!(w, " {n}")?;
        if let Some(bs) = features.block_size {
            write!(w, " block_size {bs}")?;
        }
        if let Some(c) = features.copies {
            write!(w, " copies {c}")?;
        }
        if let Some(n) = features.metadata_slots {
            write!(w, " metadata_slots {n}")?;
        }
        if features.format {
            write!(w, " format")?;
        }
        features.policy.write_features(w)?;
        if let Some(dev) = migrate_to {
            write!(w, " migrate_to {dev}")?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    extern crate std;
    use std::string::String;
    use std::vec::Vec;

    fn p(line: &str) -> Result<TableLine<'_>, &'static str> {
        let args: Vec<&str> = line.split_whitespace().collect();
        parse(&args).map_err(|r| r.as_str())
    }

    #[test]
    fn minimal_line() {
        let t = p("/dev/loop0 /dev/loop1").unwrap();
        assert_eq!(t.main, "/dev/loop0");
        assert_eq!(t.spare, "/dev/loop1");
        assert_eq!(t.features, Features::default());
        assert_eq!(p("7:0 7:1 0").unwrap().features, Features::default());
    }

    #[test]
    fn block_size_feature() {
        let t = p("a b 2 block_size 4096").unwrap();
        assert_eq!(t.features.block_size, Some(4096));
        assert_eq!(t.features.arg_count(), 2);
    }

    #[test]
    fn refusals_name_the_problem() {
        let cases = [
            ("", "Invalid argument count"),
            ("a", "Invalid argument count"),
            ("a b x", "Invalid number of feature arguments"),
            ("a b -1", "Invalid number of feature arguments"),
            (
                "a b 2abc block_size 4096",
                "Invalid number of feature arguments",
            ),
            ("a b 1", "does not match"),
            ("a b 3 block_size 4096", "does not match"),
            ("a b 0 block_size", "does not match"),
            ("a b 1 block_size", "needs a value"),
            ("a b 2 block_size 4k", "not a decimal number"),
            ("a b 2 block_size 4096x", "not a decimal number"),
            ("a b 2 block_size 3000", "power of two"),
            ("a b 2 block_size 256", "power of two"),
            ("a b 2 block_size 131072", "power of two"),
            ("a b 2 block_size 0", "power of two"),
            ("a b 4 block_size 512 block_size 512", "given twice"),
            ("a b 1 frobnicate", "Unknown feature argument"),
            ("a b 2 BLOCK_SIZE 4096", "Unknown feature argument"),
            ("a b 1 copies", "Feature copies needs a number"),
            ("a b 2 copies 0", "Invalid copies"),
            ("a b 2 copies 17", "Invalid copies"),
            ("a b 4 copies 2 copies 3", "Feature copies given twice"),
            ("a b 2 format format", "Feature format given twice"),
            ("a b 1 migrate_to", "Feature migrate_to needs a device"),
            (
                "a b 4 migrate_to c migrate_to d",
                "Feature migrate_to given twice",
            ),
            (
                "a b 1 metadata_slots",
                "Feature metadata_slots needs a number",
            ),
            ("a b 2 metadata_slots 0", "Invalid metadata_slots"),
            ("a b 2 metadata_slots 1073741825", "Invalid metadata_slots"),
            ("a b 2 metadata_slots -5", "Invalid metadata_slots"),
            ("a b 2 metadata_slots 12k", "Invalid metadata_slots"),
            (
                "a b 4 metadata_slots 9 metadata_slots 9",
                "Feature metadata_slots given twice",
            ),
        ];
        for (line, want) in cases {
            let got = p(line).expect_err(line);
            assert!(got.contains(want), "{line:?}: got {got:?}, want {want:?}");
        }
    }

    #[test]
    fn canonical_round_trip() {
        for line in [
            "7:0 7:1",
            "7:0 7:1 2 block_size 4096",
            "7:0 7:1 5 block_size 4096 copies 3 format",
            "7:0 7:1 7 block_size 4096 copies 3 metadata_slots 1000000 format",
            "7:0 7:1 1 format",
            "7:0 7:1 6 block_size 512 auto_remap off scan_rate 64",
            "7:0 7:1 4 read_retries 0 error_threshold 5",
            "7:0 7:1 2 migrate_to 7:2",
            "7:0 7:1 5 block_size 4096 format migrate_to 7:2",
        ] {
            let t = p(line).unwrap();
            let mut s = String::new();
            write_canonical(&mut s, t.main, t.spare, &t.features, t.migrate_to).unwrap();
            assert_eq!(s, line);
        }
        assert_eq!(
            p("7:0 7:1 4 scan_rate 8 scan_rate 9"),
            Err("Policy feature given twice")
        );
        assert_eq!(
            p("7:0 7:1 1 spare_low"),
            Err("Policy feature needs a value")
        );
        assert_eq!(
            p("7:0 7:1 2 auto_remap maybe"),
            Err("Invalid auto_remap: must be on or off")
        );
        // Defaults given explicitly are accepted and not printed.
        let t = p("7:0 7:1 2 read_retries 2").unwrap();
        assert_eq!(t.features.arg_count(), 0);
        // An empty feature group is not printed.
        let t = p("7:0 7:1 0").unwrap();
        let mut s = String::new();
        write_canonical(&mut s, t.main, t.spare, &t.features, t.migrate_to).unwrap();
        assert_eq!(s, "7:0 7:1");
    }
}
