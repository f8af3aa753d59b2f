// SPDX-License-Identifier: GPL-2.0

//! `dmsetup message <dev> 0 <message>`: parsing.
//!
//! Sectors are 512-byte sectors of the target (main) and of the spare device.

use super::number::parse_u64;
use super::policy::Setting;
use super::Refusal;

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

/// A parsed message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Message {
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
    /// `remove_remap <main_sector> [<nr_sectors>]`
    Remove {
        /// First main sector.
        main: u64,
        /// Length in sectors (default: one block).
        nr: Option<u64>,
    },
    /// `pending`
    Pending,
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

/// Lines `list` prints when no maximum is given.
pub const LIST_DEFAULT_MAX: u64 = 100;
/// The largest `list` maximum accepted.
pub const LIST_MAX: u64 = 10_000;

/// The `help` text: every message with its arguments.
pub const HELP: &str = "\
add_remap <main_sector> <spare_sector|auto> [<nr_sectors>]
remove_remap <main_sector> [<nr_sectors>]
clear_remaps
convert_metadata
query <main_sector>
list [<start_block> [<max>]]
count
pending
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
pub fn parse(args: &[&str]) -> Result<Message, Refusal> {
    let Some((verb, rest)) = args.split_first() else {
        return Err(Refusal::new(c"empty message; try 'help'"));
    };
    let is = |name: &str| verb.eq_ignore_ascii_case(name);
    let bad_main = c"invalid main sector: not a decimal number";
    if is("help") {
        match rest {
            [] => Ok(Message::Help),
            _ => Err(Refusal::new(c"help takes no arguments")),
        }
    } else if is("count") {
        match rest {
            [] => Ok(Message::Count),
            _ => Err(Refusal::new(c"count takes no arguments")),
        }
    } else if is("clear_remaps") {
        match rest {
            [] => Ok(Message::Clear),
            _ => Err(Refusal::new(c"clear_remaps takes no arguments")),
        }
    } else if is("convert_metadata") {
        match rest {
            [] => Ok(Message::Convert),
            _ => Err(Refusal::new(c"convert_metadata takes no arguments")),
        }
    } else if is("query") {
        match rest {
            [s] => Ok(Message::Query(num(s, bad_main)?)),
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
        Ok(Message::List { start, max })
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
        Ok(Message::Add {
            main,
            spare,
            nr: nr(rest.get(2))?,
        })
    } else if is("remove_remap") {
        if !(1..=2).contains(&rest.len()) {
            return Err(Refusal::new(
                c"usage: remove_remap <main_sector> [<nr_sectors>]",
            ));
        }
        Ok(Message::Remove {
            main: num(rest[0], bad_main)?,
            nr: nr(rest.get(1))?,
        })
    } else if is("pending") {
        match rest {
            [] => Ok(Message::Pending),
            _ => Err(Refusal::new(c"pending takes no arguments")),
        }
    } else if is("clear_pending") {
        match rest {
            [] => Ok(Message::ClearPending(None)),
            [s] => Ok(Message::ClearPending(Some(num(s, bad_main)?))),
            _ => Err(Refusal::new(c"usage: clear_pending [<main_sector>]")),
        }
    } else if is("clear_fail") {
        match rest {
            [] => Ok(Message::ClearFail),
            _ => Err(Refusal::new(c"clear_fail takes no arguments")),
        }
    } else if is("policy") {
        match rest {
            [] => Ok(Message::Policy),
            _ => Err(Refusal::new(c"policy takes no arguments")),
        }
    } else if is("set") {
        match rest {
            [name, value] if *name != "scan_rate" => Ok(Message::Set(Setting::parse(name, value)?)),
            [_, _] => Err(Refusal::new(
                c"use 'scan_rate <MiB/s>' to set the scan rate",
            )),
            _ => Err(Refusal::new(c"usage: set <name> <value>")),
        }
    } else if is("scan_rate") {
        match rest {
            [value] => Ok(Message::Set(Setting::parse("scan_rate", value)?)),
            _ => Err(Refusal::new(c"usage: scan_rate <MiB/s>")),
        }
    } else if is("scan") {
        match rest {
            [c] if c.eq_ignore_ascii_case("start") => Ok(Message::Scan(ScanCmd::Start)),
            [c] if c.eq_ignore_ascii_case("stop") => Ok(Message::Scan(ScanCmd::Stop)),
            [c] if c.eq_ignore_ascii_case("status") => Ok(Message::Scan(ScanCmd::Status)),
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

    fn p(s: &str) -> Result<Message, &'static str> {
        let v: Vec<&str> = s.split_whitespace().collect();
        parse(&v).map_err(|r| r.as_str())
    }

    #[test]
    fn every_form() {
        assert_eq!(p("help"), Ok(Message::Help));
        assert_eq!(p("HELP"), Ok(Message::Help));
        assert_eq!(p("count"), Ok(Message::Count));
        assert_eq!(p("clear_remaps"), Ok(Message::Clear));
        assert_eq!(p("convert_metadata"), Ok(Message::Convert));
        assert_eq!(
            p("convert_metadata 3"),
            Err("convert_metadata takes no arguments")
        );
        assert_eq!(p("query 17"), Ok(Message::Query(17)));
        assert_eq!(
            p("list"),
            Ok(Message::List {
                start: 0,
                max: LIST_DEFAULT_MAX
            })
        );
        assert_eq!(p("list 5"), Ok(Message::List { start: 5, max: 100 }));
        assert_eq!(p("list 5 7"), Ok(Message::List { start: 5, max: 7 }));
        assert_eq!(
            p("add_remap 1010 5010 10"),
            Ok(Message::Add {
                main: 1010,
                spare: SpareArg::Sector(5010),
                nr: Some(10)
            })
        );
        assert_eq!(
            p("add_remap 8 auto"),
            Ok(Message::Add {
                main: 8,
                spare: SpareArg::Auto,
                nr: None
            })
        );
        assert_eq!(
            p("remove_remap 8"),
            Ok(Message::Remove { main: 8, nr: None })
        );
        assert_eq!(p("pending"), Ok(Message::Pending));
        assert_eq!(p("clear_pending"), Ok(Message::ClearPending(None)));
        assert_eq!(p("clear_pending 8"), Ok(Message::ClearPending(Some(8))));
        assert_eq!(p("clear_fail"), Ok(Message::ClearFail));
        assert_eq!(p("policy"), Ok(Message::Policy));
        assert_eq!(
            p("set auto_remap off"),
            Ok(Message::Set(Setting::AutoRemap(false)))
        );
        assert_eq!(p("scan_rate 8"), Ok(Message::Set(Setting::ScanRate(8))));
        assert_eq!(p("scan start"), Ok(Message::Scan(ScanCmd::Start)));
        assert_eq!(p("scan STOP"), Ok(Message::Scan(ScanCmd::Stop)));
        assert_eq!(p("scan status"), Ok(Message::Scan(ScanCmd::Status)));
        assert_eq!(
            p("remove_remap 8 16"),
            Ok(Message::Remove {
                main: 8,
                nr: Some(16)
            })
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
