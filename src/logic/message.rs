// SPDX-License-Identifier: GPL-2.0

//! `dmsetup message <dev> 0 <message>`: parsing.
//!
//! Sectors are 512-byte sectors of the target (main) and of the spare device.

use super::number::parse_u64;
use super::policy::Setting;
use super::Refusal;
use core::fmt;

/// A spare location given to `add_remap`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SpareArg {
    /// Let the target pick free pool blocks.
    Auto,
    /// This sector of the spare device.
    Sector(u64),
}

/// `scan <command>`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScanCmd {
    /// Start (or continue) scanning.
    Start,
    /// Stop and forget the position.
    Stop,
    /// Report progress.
    Status,
}

/// A parsed message, by who handles it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Message<'a> {
    /// About the remaps: the writer's (`Remaps::handle`).
    Remaps(RemapMsg<'a>),
    /// About error handling and the scanner: the target's.
    Control(ControlMsg),
}

/// A message about the remaps (and `help`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RemapMsg<'a> {
    /// `help`
    Help,
    /// `count`
    Count,
    /// `query <main_sector>`
    Query(u64),
    /// `list [<start_block> [<max>]]`
    List {
        /// First main block to list from.
        start: u64,
        /// Most lines to print.
        max: u64,
    },
    /// `clear_remaps`
    Clear,
    /// `convert_metadata`: rewrites a version-2 spare as version 3.
    Convert,
    /// `add_remap <main_sector> <spare_sector|auto> [<nr_sectors>]`
    Add {
        /// First main sector.
        main: u64,
        /// Where the data goes.
        spare: SpareArg,
        /// Length in sectors (default: one block).
        nr: Option<u64>,
    },
    /// `add_remaps [carry] <main_sector>[+<nr_sectors>]...`
    AddList {
        /// Copy each block's data from main first (the target must be
        /// suspended).
        carry: bool,
        /// The ranges, checked for syntax.
        items: Extents<'a>,
    },
    /// `remove_remap <main_sector> [<nr_sectors>]`
    Remove {
        /// First main sector.
        main: u64,
        /// Length in sectors (default: one block).
        nr: Option<u64>,
    },
}

/// The ranges of `add_remaps`, `<main_sector>[+<nr_sectors>]` each: words
/// [`parse`] checked, read again where they are used (the message owns no
/// memory to hold them in).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Extents<'a>(&'a [&'a str]);

impl<'a> Extents<'a> {
    /// Checks every word; `None` if one is not a range.
    fn new(words: &'a [&'a str]) -> Option<Self> {
        words
            .iter()
            .all(|w| extent(w).is_some())
            .then_some(Self(words))
    }

    /// The ranges: first sector and length in sectors (`None`: one block).
    pub fn iter(&self) -> impl Iterator<Item = (u64, Option<u64>)> + 'a {
        self.0.iter().filter_map(|w| extent(w))
    }
}

/// `<sector>` or `<sector>+<nr_sectors>` (a positive length).
fn extent(w: &str) -> Option<(u64, Option<u64>)> {
    match w.split_once('+') {
        None => Some((parse_u64(w)?, None)),
        Some((s, n)) => match parse_u64(n)? {
            0 => None,
            n => Some((parse_u64(s)?, Some(n))),
        },
    }
}

impl RemapMsg<'_> {
    /// Whether it changes remaps (refused in fail mode).
    pub fn changes_remaps(&self) -> bool {
        match self {
            RemapMsg::Clear
            | RemapMsg::Convert
            | RemapMsg::Add { .. }
            | RemapMsg::AddList { .. }
            | RemapMsg::Remove { .. } => true,
            RemapMsg::Help | RemapMsg::Count | RemapMsg::Query(_) | RemapMsg::List { .. } => false,
        }
    }
}

impl Message<'_> {
    /// Whether the message only reads: what a target moving to another
    /// spare still answers.
    pub fn reads_only(&self) -> bool {
        match self {
            Message::Remaps(m) => !m.changes_remaps(),
            Message::Control(m) => matches!(
                m,
                ControlMsg::Pending
                    | ControlMsg::Lost
                    | ControlMsg::Policy
                    | ControlMsg::Scan(ScanCmd::Status)
            ),
        }
    }
}

/// A message about error handling (the pending list, fail mode, the
/// policy) and the scanner.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ControlMsg {
    /// `pending`
    Pending,
    /// `lost`
    Lost,
    /// `clear_pending [<main_sector>]`
    ClearPending(Option<u64>),
    /// `clear_fail`
    ClearFail,
    /// `set <name> <value>`, or `scan_rate <MiB/s>`
    Set(Setting),
    /// `policy`
    Policy,
    /// `scan start|stop|status`
    Scan(ScanCmd),
}

impl<'a> From<RemapMsg<'a>> for Message<'a> {
    fn from(m: RemapMsg<'a>) -> Self {
        Message::Remaps(m)
    }
}

impl From<ControlMsg> for Message<'_> {
    fn from(m: ControlMsg) -> Self {
        Message::Control(m)
    }
}

/// Why a message was refused. Nothing changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MsgError {
    /// Invalid input.
    Invalid(&'static str),
    /// Invalid input at this sector.
    At(&'static str, u64),
    /// The spare pool has too few free blocks.
    PoolFull {
        /// Blocks needed.
        need: u64,
        /// Blocks free.
        free: u64,
    },
    /// Memory ran short.
    NoMemory,
    /// Writing the metadata failed; the change was undone.
    Io,
    /// The table has not loaded its metadata yet (it loads on resume).
    NotLoaded,
    /// The metadata area cannot describe more pool blocks.
    MetadataFull {
        /// Pool blocks the metadata area can describe.
        slots: u64,
    },
    /// The target is in fail mode; nothing is changed until `clear_fail`.
    FailMode,
    /// The remaps are moving to the `migrate_to` spare; only messages that
    /// change nothing are answered meanwhile.
    Migrating,
    /// `add_remaps carry` on a device that is not suspended.
    NotSuspended,
    /// An `add_remaps carry` is copying; only messages that change nothing
    /// are answered meanwhile.
    Carrying,
}

impl fmt::Display for MsgError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MsgError::Invalid(s) => f.write_str(s),
            MsgError::At(s, sector) => write!(f, "{s} (sector {sector})"),
            MsgError::PoolFull { need, free } => {
                write!(f, "spare pool full: {need} blocks needed, {free} free")
            }
            MsgError::NoMemory => f.write_str("out of memory"),
            MsgError::Io => f.write_str("metadata write failed; change undone"),
            MsgError::NotLoaded => f.write_str("metadata not loaded yet; resume the device first"),
            MsgError::MetadataFull { slots } => write!(
                f,
                "metadata area full: it describes {slots} spare blocks and all are in use"
            ),
            MsgError::FailMode => f.write_str("fail mode: send clear_fail first"),
            MsgError::Migrating => {
                f.write_str("moving to the migrate_to spare; try again once it is done")
            }
            MsgError::NotSuspended => f.write_str(
                "carry copies data only while the device is suspended; suspend it first",
            ),
            MsgError::Carrying => {
                f.write_str("an add_remaps carry is copying; try again once it is done")
            }
        }
    }
}

/// The error number a refused message returns to its sender (`dmsetup`
/// prints it); the kernel side converts it to the kernel's own.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Errno {
    /// EINVAL: the message is wrong.
    Inval,
    /// ENOMEM.
    NoMem,
    /// ENOSPC: no room on the spare, in its pool or its metadata.
    NoSpc,
    /// EIO: the metadata cannot be written.
    Io,
    /// EBUSY: not yet (the metadata loads on resume).
    Busy,
}

impl MsgError {
    /// The error number the sender gets.
    pub fn errno(&self) -> Errno {
        match self {
            MsgError::NoMemory => Errno::NoMem,
            MsgError::PoolFull { .. } | MsgError::MetadataFull { .. } => Errno::NoSpc,
            MsgError::Io | MsgError::FailMode => Errno::Io,
            MsgError::NotLoaded
            | MsgError::Migrating
            | MsgError::NotSuspended
            | MsgError::Carrying => Errno::Busy,
            MsgError::Invalid(_) | MsgError::At(..) => Errno::Inval,
        }
    }
}

/// Lines `list` prints when no maximum is given.
pub const LIST_DEFAULT_MAX: u64 = 100;
/// The largest `list` maximum accepted.
pub const LIST_MAX: u64 = 10_000;

/// The `help` text: every message with its arguments.
pub const HELP: &str = "\
add_remap <main_sector> <spare_sector|auto> [<nr_sectors>]
add_remaps [carry] <main_sector>[+<nr_sectors>]...
remove_remap <main_sector> [<nr_sectors>]
clear_remaps
convert_metadata
query <main_sector>
list [<start_block> [<max>]]
count
pending
lost
clear_pending [<main_sector>]
clear_fail
set <auto_remap|read_retries|write_retries|error_threshold|spare_low|scan_chunk> <value>
policy
scan start|stop|status
scan_rate <MiB/s>
help";

fn num(s: &str, what: &'static core::ffi::CStr) -> Result<u64, Refusal> {
    parse_u64(s).ok_or(Refusal::new(what))
}

fn nr(s: Option<&&str>) -> Result<Option<u64>, Refusal> {
    match s {
        None => Ok(None),
        Some(s) => match parse_u64(s) {
            Some(0) | None => Err(Refusal::new(
                c"invalid nr_sectors: must be a positive decimal number",
            )),
            Some(n) => Ok(Some(n)),
        },
    }
}

/// Parses a message's words.
pub fn parse<'a>(args: &'a [&'a str]) -> Result<Message<'a>, Refusal> {
    let Some((verb, rest)) = args.split_first() else {
        return Err(Refusal::new(c"empty message; try 'help'"));
    };
    let is = |name: &str| verb.eq_ignore_ascii_case(name);
    let bad_main = c"invalid main sector: not a decimal number";
    if is("help") {
        match rest {
            [] => Ok(RemapMsg::Help.into()),
            _ => Err(Refusal::new(c"help takes no arguments")),
        }
    } else if is("count") {
        match rest {
            [] => Ok(RemapMsg::Count.into()),
            _ => Err(Refusal::new(c"count takes no arguments")),
        }
    } else if is("clear_remaps") {
        match rest {
            [] => Ok(RemapMsg::Clear.into()),
            _ => Err(Refusal::new(c"clear_remaps takes no arguments")),
        }
    } else if is("convert_metadata") {
        match rest {
            [] => Ok(RemapMsg::Convert.into()),
            _ => Err(Refusal::new(c"convert_metadata takes no arguments")),
        }
    } else if is("query") {
        match rest {
            [s] => Ok(RemapMsg::Query(num(s, bad_main)?).into()),
            _ => Err(Refusal::new(c"usage: query <main_sector>")),
        }
    } else if is("list") {
        if rest.len() > 2 {
            return Err(Refusal::new(c"usage: list [<start_block> [<max>]]"));
        }
        let start = match rest.first() {
            Some(s) => num(s, c"invalid start block: not a decimal number")?,
            None => 0,
        };
        let max = match rest.get(1) {
            Some(s) => match parse_u64(s) {
                Some(m) if (1..=LIST_MAX).contains(&m) => m,
                _ => return Err(Refusal::new(c"invalid max: must be from 1 to 10000")),
            },
            None => LIST_DEFAULT_MAX,
        };
        Ok(RemapMsg::List { start, max }.into())
    } else if is("add_remap") {
        if !(2..=3).contains(&rest.len()) {
            return Err(Refusal::new(
                c"usage: add_remap <main_sector> <spare_sector|auto> [<nr_sectors>]",
            ));
        }
        let main = num(rest[0], bad_main)?;
        let spare = if rest[1].eq_ignore_ascii_case("auto") {
            SpareArg::Auto
        } else {
            SpareArg::Sector(num(
                rest[1],
                c"invalid spare sector: not a decimal number or 'auto'",
            )?)
        };
        Ok(RemapMsg::Add {
            main,
            spare,
            nr: nr(rest.get(2))?,
        }
        .into())
    } else if is("add_remaps") {
        let usage = c"usage: add_remaps [carry] <main_sector>[+<nr_sectors>]...";
        let (carry, words) = match rest.split_first() {
            Some((w, more)) if w.eq_ignore_ascii_case("carry") => (true, more),
            _ => (false, rest),
        };
        if words.is_empty() {
            return Err(Refusal::new(usage));
        }
        let items = Extents::new(words).ok_or(Refusal::new(
            c"invalid range: use <main_sector> or <main_sector>+<nr_sectors> (decimal, nr_sectors > 0)",
        ))?;
        Ok(RemapMsg::AddList { carry, items }.into())
    } else if is("remove_remap") {
        if !(1..=2).contains(&rest.len()) {
            return Err(Refusal::new(
                c"usage: remove_remap <main_sector> [<nr_sectors>]",
            ));
        }
        Ok(RemapMsg::Remove {
            main: num(rest[0], bad_main)?,
            nr: nr(rest.get(1))?,
        }
        .into())
    } else if is("pending") {
        match rest {
            [] => Ok(ControlMsg::Pending.into()),
            _ => Err(Refusal::new(c"pending takes no arguments")),
        }
    } else if is("lost") {
        match rest {
            [] => Ok(ControlMsg::Lost.into()),
            _ => Err(Refusal::new(c"lost takes no arguments")),
        }
    } else if is("clear_pending") {
        match rest {
            [] => Ok(ControlMsg::ClearPending(None).into()),
            [s] => Ok(ControlMsg::ClearPending(Some(num(s, bad_main)?)).into()),
            _ => Err(Refusal::new(c"usage: clear_pending [<main_sector>]")),
        }
    } else if is("clear_fail") {
        match rest {
            [] => Ok(ControlMsg::ClearFail.into()),
            _ => Err(Refusal::new(c"clear_fail takes no arguments")),
        }
    } else if is("policy") {
        match rest {
            [] => Ok(ControlMsg::Policy.into()),
            _ => Err(Refusal::new(c"policy takes no arguments")),
        }
    } else if is("set") {
        match rest {
            [name, value] if *name != "scan_rate" => {
                Ok(ControlMsg::Set(Setting::parse(name, value)?).into())
            }
            [_, _] => Err(Refusal::new(
                c"use 'scan_rate <MiB/s>' to set the scan rate",
            )),
            _ => Err(Refusal::new(c"usage: set <name> <value>")),
        }
    } else if is("scan_rate") {
        match rest {
            [value] => Ok(ControlMsg::Set(Setting::parse("scan_rate", value)?).into()),
            _ => Err(Refusal::new(c"usage: scan_rate <MiB/s>")),
        }
    } else if is("scan") {
        match rest {
            [c] if c.eq_ignore_ascii_case("start") => Ok(ControlMsg::Scan(ScanCmd::Start).into()),
            [c] if c.eq_ignore_ascii_case("stop") => Ok(ControlMsg::Scan(ScanCmd::Stop).into()),
            [c] if c.eq_ignore_ascii_case("status") => Ok(ControlMsg::Scan(ScanCmd::Status).into()),
            _ => Err(Refusal::new(c"usage: scan start|stop|status")),
        }
    } else {
        Err(Refusal::new(c"unknown message; try 'help'"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    extern crate std;
    use std::vec::Vec;

    /// Parses `s`, whose words the message may borrow: leaked, as the
    /// tests are short-lived.
    fn p(s: &str) -> Result<Message<'static>, &'static str> {
        let s: &'static str = std::boxed::Box::leak(s.into());
        let v: Vec<&'static str> = s.split_whitespace().collect();
        parse(v.leak()).map_err(|r| r.as_str())
    }

    #[test]
    fn only_messages_that_change_nothing_read_only() {
        for m in [
            "help",
            "count",
            "query 8",
            "list",
            "list 0 5",
            "pending",
            "lost",
            "policy",
            "scan status",
        ] {
            assert!(p(m).unwrap().reads_only(), "{m}");
        }
        for m in [
            "add_remap 8 auto",
            "remove_remap 8",
            "clear_remaps",
            "convert_metadata",
            "clear_pending",
            "clear_fail",
            "set auto_remap on",
            "scan_rate 8",
            "scan start",
            "scan stop",
        ] {
            assert!(!p(m).unwrap().reads_only(), "{m}");
        }
        assert_eq!(MsgError::Migrating.errno(), Errno::Busy);
    }

    #[test]
    fn every_form() {
        assert_eq!(p("help"), Ok(RemapMsg::Help.into()));
        assert_eq!(p("HELP"), Ok(RemapMsg::Help.into()));
        assert_eq!(p("count"), Ok(RemapMsg::Count.into()));
        assert_eq!(p("clear_remaps"), Ok(RemapMsg::Clear.into()));
        assert_eq!(p("convert_metadata"), Ok(RemapMsg::Convert.into()));
        assert_eq!(
            p("convert_metadata 3"),
            Err("convert_metadata takes no arguments")
        );
        assert_eq!(p("query 17"), Ok(RemapMsg::Query(17).into()));
        assert_eq!(
            p("list"),
            Ok(RemapMsg::List {
                start: 0,
                max: LIST_DEFAULT_MAX
            }
            .into())
        );
        assert_eq!(
            p("list 5"),
            Ok(RemapMsg::List { start: 5, max: 100 }.into())
        );
        assert_eq!(
            p("list 5 7"),
            Ok(RemapMsg::List { start: 5, max: 7 }.into())
        );
        assert_eq!(
            p("add_remap 1010 5010 10"),
            Ok(RemapMsg::Add {
                main: 1010,
                spare: SpareArg::Sector(5010),
                nr: Some(10)
            }
            .into())
        );
        assert_eq!(
            p("add_remap 8 auto"),
            Ok(RemapMsg::Add {
                main: 8,
                spare: SpareArg::Auto,
                nr: None
            }
            .into())
        );
        let words = ["add_remaps", "carry", "8+16", "64"];
        match parse(&words) {
            Ok(Message::Remaps(RemapMsg::AddList { carry, items })) => {
                assert!(carry);
                assert_eq!(
                    items.iter().collect::<Vec<_>>(),
                    [(8, Some(16)), (64, None)]
                );
            }
            other => panic!("{other:?}"),
        }
        match p("ADD_REMAPS 0") {
            Ok(Message::Remaps(RemapMsg::AddList { carry, .. })) => assert!(!carry),
            other => panic!("{other:?}"),
        }
        assert_eq!(
            p("remove_remap 8"),
            Ok(RemapMsg::Remove { main: 8, nr: None }.into())
        );
        assert_eq!(p("pending"), Ok(ControlMsg::Pending.into()));
        assert_eq!(p("lost"), Ok(ControlMsg::Lost.into()));
        assert_eq!(
            p("clear_pending"),
            Ok(ControlMsg::ClearPending(None).into())
        );
        assert_eq!(
            p("clear_pending 8"),
            Ok(ControlMsg::ClearPending(Some(8)).into())
        );
        assert_eq!(p("clear_fail"), Ok(ControlMsg::ClearFail.into()));
        assert_eq!(p("policy"), Ok(ControlMsg::Policy.into()));
        assert_eq!(
            p("set auto_remap off"),
            Ok(ControlMsg::Set(Setting::AutoRemap(false)).into())
        );
        assert_eq!(
            p("scan_rate 8"),
            Ok(ControlMsg::Set(Setting::ScanRate(8)).into())
        );
        assert_eq!(p("scan start"), Ok(ControlMsg::Scan(ScanCmd::Start).into()));
        assert_eq!(p("scan STOP"), Ok(ControlMsg::Scan(ScanCmd::Stop).into()));
        assert_eq!(
            p("scan status"),
            Ok(ControlMsg::Scan(ScanCmd::Status).into())
        );
        assert_eq!(
            p("remove_remap 8 16"),
            Ok(RemapMsg::Remove {
                main: 8,
                nr: Some(16)
            }
            .into())
        );
    }

    #[test]
    fn every_bad_input() {
        let cases = [
            ("", "empty message"),
            ("frobnicate", "unknown message"),
            ("help me", "help takes no arguments"),
            ("count 1", "count takes no arguments"),
            ("clear_remaps now", "clear_remaps takes no arguments"),
            ("query", "usage: query"),
            ("query 1 2", "usage: query"),
            ("query x", "invalid main sector"),
            ("query -1", "invalid main sector"),
            ("list 1 2 3", "usage: list"),
            ("list x", "invalid start block"),
            ("list 0 0", "invalid max"),
            ("list 0 10001", "invalid max"),
            ("list 0 5x", "invalid max"),
            ("add_remaps", "usage: add_remaps"),
            ("add_remaps carry", "usage: add_remaps"),
            ("add_remaps 8+0", "invalid range"),
            ("add_remaps 8 x", "invalid range"),
            ("add_remaps 8+", "invalid range"),
            ("add_remaps +8", "invalid range"),
            ("add_remaps 8+8+8", "invalid range"),
            ("add_remaps carry carry", "invalid range"),
            ("add_remap", "usage: add_remap"),
            ("add_remap 1", "usage: add_remap"),
            ("add_remap 1 2 3 4", "usage: add_remap"),
            ("add_remap 1x 2", "invalid main sector"),
            ("add_remap 1 two", "invalid spare sector"),
            ("add_remap 1 2 0", "invalid nr_sectors"),
            ("add_remap 1 2 x", "invalid nr_sectors"),
            ("add_remap 18446744073709551616 2", "invalid main sector"),
            ("remove_remap", "usage: remove_remap"),
            ("remove_remap 1 2 3", "usage: remove_remap"),
            ("remove_remap z", "invalid main sector"),
            ("remove_remap 1 0", "invalid nr_sectors"),
            ("pending 1", "pending takes no arguments"),
            ("lost x", "lost takes no arguments"),
            ("clear_pending x", "invalid main sector"),
            ("clear_pending 1 2", "usage: clear_pending"),
            ("clear_fail 1", "clear_fail takes no arguments"),
            ("policy x", "policy takes no arguments"),
            ("set auto_remap", "usage: set"),
            ("set auto_remap maybe", "Invalid auto_remap"),
            ("set colour blue", "Unknown policy setting"),
            ("set scan_rate 5", "use 'scan_rate"),
            ("scan_rate", "usage: scan_rate"),
            ("scan_rate 0", "Invalid scan_rate"),
            ("scan", "usage: scan"),
            ("scan sideways", "usage: scan"),
        ];
        for (msg, want) in cases {
            let got = p(msg).expect_err(msg);
            assert!(got.contains(want), "{msg:?}: got {got:?}, want {want:?}");
        }
    }
}
