// SPDX-License-Identifier: GPL-2.0

//! Error-handling and scanner policy: what the table line's feature
//! arguments and the `set` / `scan_rate` messages choose.
//!
//! | name | values | default | meaning |
//! |---|---|---|---|
//! | `auto_remap` | `on`, `off` | on | remap blocks whose writes fail; retry and track failed reads |
//! | `read_retries` | 0–16 | 2 | extra reads of a failed block before the read fails |
//! | `write_retries` | 0–16 | 1 | extra writes of a failed block to main before it is remapped |
//! | `error_threshold` | 0–2^32 | 0 | automatic remaps after which `auto_remap` turns itself off (0: never) |
//! | `spare_low` | 0–100 | 10 | percent of free spare blocks at or below which the pool is low |
//! | `scan_rate` | 1–1024 | 4 | scanner rate limit in MiB/s |
//! | `scan_chunk` | 4–4096 | 256 | scanner read size in KiB (a multiple of the block size) |

use super::number::{parse_u32, parse_u64};
use super::Refusal;
use core::fmt::{self, Write};

/// One policy value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Setting {
    /// `auto_remap on|off`
    AutoRemap(bool),
    /// `read_retries <n>`
    ReadRetries(u32),
    /// `write_retries <n>`
    WriteRetries(u32),
    /// `error_threshold <n>`
    ErrorThreshold(u64),
    /// `spare_low <percent>`
    SpareLow(u32),
    /// `scan_rate <MiB/s>`
    ScanRate(u32),
    /// `scan_chunk <KiB>`
    ScanChunk(u32),
}

/// Names of the settings, in the order they print.
pub const NAMES: [&str; 7] = [
    "auto_remap",
    "read_retries",
    "write_retries",
    "error_threshold",
    "spare_low",
    "scan_rate",
    "scan_chunk",
];

/// Most retries accepted.
pub const MAX_RETRIES: u32 = 16;
/// Largest scanner rate in MiB/s.
pub const MAX_SCAN_RATE: u32 = 1024;
/// Smallest and largest scanner chunk in KiB.
pub const SCAN_CHUNK_KIB: (u32, u32) = (4, 4096);

impl Setting {
    /// Index of the setting in [`NAMES`].
    pub fn index(&self) -> usize {
        match self {
            Setting::AutoRemap(_) => 0,
            Setting::ReadRetries(_) => 1,
            Setting::WriteRetries(_) => 2,
            Setting::ErrorThreshold(_) => 3,
            Setting::SpareLow(_) => 4,
            Setting::ScanRate(_) => 5,
            Setting::ScanChunk(_) => 6,
        }
    }

    /// Whether `name` names a setting.
    pub fn is_name(name: &str) -> bool {
        NAMES.contains(&name)
    }

    /// Parses `<name> <value>`.
    pub fn parse(name: &str, value: &str) -> Result<Setting, Refusal> {
        let retries = |v: &str| match parse_u32(v) {
            Some(n) if n <= MAX_RETRIES => Ok(n),
            _ => Err(Refusal::new(c"Invalid retry count: must be from 0 to 16")),
        };
        match name {
            "auto_remap" => match value {
                "on" => Ok(Setting::AutoRemap(true)),
                "off" => Ok(Setting::AutoRemap(false)),
                _ => Err(Refusal::new(c"Invalid auto_remap: must be on or off")),
            },
            "read_retries" => Ok(Setting::ReadRetries(retries(value)?)),
            "write_retries" => Ok(Setting::WriteRetries(retries(value)?)),
            "error_threshold" => match parse_u64(value) {
                Some(n) if n <= u64::from(u32::MAX) => Ok(Setting::ErrorThreshold(n)),
                _ => Err(Refusal::new(
                    c"Invalid error_threshold: must be a number from 0 to 4294967295",
                )),
            },
            "spare_low" => match parse_u32(value) {
                Some(n) if n <= 100 => Ok(Setting::SpareLow(n)),
                _ => Err(Refusal::new(
                    c"Invalid spare_low: must be a percentage from 0 to 100",
                )),
            },
            "scan_rate" => match parse_u32(value) {
                Some(n) if (1..=MAX_SCAN_RATE).contains(&n) => Ok(Setting::ScanRate(n)),
                _ => Err(Refusal::new(
                    c"Invalid scan_rate: must be from 1 to 1024 MiB/s",
                )),
            },
            "scan_chunk" => match parse_u32(value) {
                Some(n) if (SCAN_CHUNK_KIB.0..=SCAN_CHUNK_KIB.1).contains(&n) => {
                    Ok(Setting::ScanChunk(n))
                }
                _ => Err(Refusal::new(
                    c"Invalid scan_chunk: must be from 4 to 4096 KiB",
                )),
            },
            _ => Err(Refusal::new(c"Unknown policy setting")),
        }
    }
}

/// The policy in force.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Policy {
    /// Remap on write errors, retry and track read errors.
    pub auto_remap: bool,
    /// Extra reads of a failed block.
    pub read_retries: u32,
    /// Extra writes of a failed block to main.
    pub write_retries: u32,
    /// Automatic remaps after which `auto_remap` turns off; 0: never.
    pub error_threshold: u64,
    /// Percent of free spare blocks at or below which the pool is low.
    pub spare_low: u32,
    /// Scanner rate in MiB/s.
    pub scan_rate: u32,
    /// Scanner read size in KiB.
    pub scan_chunk: u32,
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            auto_remap: true,
            read_retries: 2,
            write_retries: 1,
            error_threshold: 0,
            spare_low: 10,
            scan_rate: 4,
            scan_chunk: 256,
        }
    }
}

impl Policy {
    /// Applies one setting.
    pub fn apply(&mut self, s: Setting) {
        match s {
            Setting::AutoRemap(v) => self.auto_remap = v,
            Setting::ReadRetries(v) => self.read_retries = v,
            Setting::WriteRetries(v) => self.write_retries = v,
            Setting::ErrorThreshold(v) => self.error_threshold = v,
            Setting::SpareLow(v) => self.spare_low = v,
            Setting::ScanRate(v) => self.scan_rate = v,
            Setting::ScanChunk(v) => self.scan_chunk = v,
        }
    }

    /// Checks what depends on the block size: the scanner chunk must hold
    /// whole blocks.
    pub fn check(&self, block_size: u32) -> Result<(), Refusal> {
        let chunk = u64::from(self.scan_chunk) * 1024;
        if chunk.checked_rem(u64::from(block_size)) != Some(0) {
            return Err(Refusal::new(
                c"Invalid scan_chunk: must be a multiple of the block size",
            ));
        }
        Ok(())
    }

    /// Setting `i` (in [`NAMES`] order) as a number (`auto_remap`: 1 or 0).
    fn get(&self, i: usize) -> u64 {
        match i {
            0 => u64::from(self.auto_remap),
            1 => u64::from(self.read_retries),
            2 => u64::from(self.write_retries),
            3 => self.error_threshold,
            4 => u64::from(self.spare_low),
            5 => u64::from(self.scan_rate),
            _ => u64::from(self.scan_chunk),
        }
    }

    fn value(&self, i: usize, w: &mut dyn Write) -> fmt::Result {
        match i {
            0 => w.write_str(if self.auto_remap { "on" } else { "off" }),
            _ => write!(w, "{}", self.get(i)),
        }
    }

    fn differs(&self, i: usize) -> bool {
        self.get(i) != Policy::default().get(i)
    }

    /// Feature words this policy prints on the table line (non-defaults).
    pub fn arg_count(&self) -> u32 {
        (0..NAMES.len()).filter(|&i| self.differs(i)).count() as u32 * 2
    }

    /// Writes ` <name> <value>` for each setting that differs from the
    /// default (the table line's feature words).
    pub fn write_features<W: Write>(&self, w: &mut W) -> fmt::Result {
        for (i, name) in NAMES.iter().enumerate() {
            if self.differs(i) {
                write!(w, " {name} ")?;
                self.value(i, w)?;
            }
        }
        Ok(())
    }

    /// Writes every setting as `<name> <value>` pairs (the `policy` reply).
    pub fn write_all<W: Write>(&self, w: &mut W) -> fmt::Result {
        for (i, name) in NAMES.iter().enumerate() {
            if i > 0 {
                w.write_char(' ')?;
            }
            write!(w, "{name} ")?;
            self.value(i, w)?;
        }
        Ok(())
    }

    /// Milliseconds the scanner waits after reading `bytes` to stay at
    /// `scan_rate`.
    pub fn scan_delay_ms(&self, bytes: u64) -> u64 {
        // bytes / (rate MiB/s) in ms, rounded up.
        bytes
            .saturating_mul(1000)
            .div_ceil(u64::from(self.scan_rate.max(1)) << 20)
    }
}

/// Whether a pool of `total` blocks with `free` free is low under
/// `spare_low` percent.
pub fn spare_is_low(free: u64, total: u64, spare_low: u32) -> bool {
    total > 0 && free * 100 <= total * u64::from(spare_low)
}

#[cfg(test)]
mod tests {
    use super::*;
    extern crate std;
    use std::string::String;

    #[test]
    fn parse_and_print() {
        let mut p = Policy::default();
        let mut s = String::new();
        p.write_all(&mut s).unwrap();
        assert_eq!(
            s,
            "auto_remap on read_retries 2 write_retries 1 error_threshold 0 spare_low 10 \
             scan_rate 4 scan_chunk 256"
        );
        assert_eq!(p.arg_count(), 0);
        p.apply(Setting::parse("auto_remap", "off").unwrap());
        p.apply(Setting::parse("scan_rate", "64").unwrap());
        let mut f = String::new();
        p.write_features(&mut f).unwrap();
        assert_eq!(f, " auto_remap off scan_rate 64");
        assert_eq!(p.arg_count(), 4);
        assert!(Setting::parse("read_retries", "17").is_err());
        assert!(Setting::parse("spare_low", "101").is_err());
        assert!(Setting::parse("scan_rate", "0").is_err());
        assert!(Setting::parse("scan_chunk", "3").is_err());
        assert!(Setting::parse("auto_remap", "yes").is_err());
        assert!(Setting::parse("bogus", "1").is_err());
        assert!(Policy::default().check(4096).is_ok());
        let mut q = Policy::default();
        q.apply(Setting::ScanChunk(4));
        assert!(q.check(8192).is_err());
    }

    #[test]
    fn delays_and_low() {
        let p = Policy::default();
        // 256 KiB at 4 MiB/s: 62.5 ms, rounded up.
        assert_eq!(p.scan_delay_ms(256 << 10), 63);
        assert!(spare_is_low(10, 100, 10));
        assert!(!spare_is_low(11, 100, 10));
        assert!(spare_is_low(0, 100, 0));
        assert!(!spare_is_low(0, 0, 10));
    }
}
