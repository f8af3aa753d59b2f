// SPDX-License-Identifier: GPL-2.0

//! `dm-remap-tool lost`: the main blocks whose data is gone, from a live
//! device's `lost` message or from a spare's metadata, in words or JSON,
//! optionally as the file system blocks they cover (what `debugfs icheck`
//! and `xfs_db` take).

use crate::spare::{pending_sectors, Spare};
use dm_remap::logic::status::Lost;
use serde::Serialize;
use std::fmt::Write as _;

/// The report of a spare's newest valid copy.
pub(crate) fn of_spare(s: &Spare) -> Option<Lost> {
    let h = s.best?;
    Some(Lost {
        block_bytes: u64::from(h.identity.block_size),
        pending: pending_sectors(s),
        unrecorded: h.unrecorded,
    })
}

/// Whether anything is lost.
pub(crate) fn any(l: &Lost) -> bool {
    !l.pending.is_empty() || l.unrecorded.count > 0
}

/// File system blocks of `fs` bytes that main sectors `first` to `last`
/// cover: (first, last).
fn fs_blocks(fs: u64, (first, last): (u64, u64)) -> (u64, u64) {
    (first * 512 / fs, (last * 512 + 511) / fs)
}

/// The main sectors of the pending block at sector `s`.
fn block_at(l: &Lost, s: u64) -> (u64, u64) {
    (s, s + l.block_sectors().max(1) - 1)
}

fn fs_words(fs: Option<u64>, sectors: (u64, u64)) -> String {
    match fs.map(|fs| fs_blocks(fs, sectors)) {
        None => String::new(),
        Some((a, b)) if a == b => format!(" (file system block {a})"),
        Some((a, b)) => format!(" (file system blocks {a}-{b})"),
    }
}

/// The report in words; `fs` is the file system's block size, when the
/// blocks it covers are wanted.
pub(crate) fn text(l: &Lost, source: &str, fs: Option<u64>) -> String {
    let mut o = String::new();
    if !any(l) {
        let _ = writeln!(
            o,
            "{source}: no data lost: no pending blocks, no unrecorded read errors"
        );
        return o;
    }
    let _ = writeln!(
        o,
        "{source}: {} main blocks of {} bytes lost (their reads failed; no write has \
         replaced them since)",
        l.pending.len(),
        l.block_bytes
    );
    for &s in &l.pending {
        let _ = writeln!(o, "main sector {s}{}", fs_words(fs, block_at(l, s)));
    }
    if let Some((a, b)) = l.unrecorded_sectors() {
        let _ = writeln!(
            o,
            "{source}: {} more failed reads were not listed (the pending list was full), \
             between main sectors {a} and {b}{}",
            l.unrecorded.count,
            fs_words(fs, (a, b))
        );
    }
    o
}

#[derive(Serialize)]
struct Unrecorded {
    count: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    first_sector: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    last_sector: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    fs_blocks: Option<(u64, u64)>,
}

#[derive(Serialize)]
struct Json<'a> {
    source: &'a str,
    block_size: u64,
    pending: &'a [u64],
    #[serde(skip_serializing_if = "Option::is_none")]
    fs_block_size: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    fs_blocks: Option<Vec<(u64, u64)>>,
    unrecorded: Unrecorded,
}

/// The report as one JSON object.
pub(crate) fn json(l: &Lost, source: &str, fs: Option<u64>) -> String {
    let range = l.unrecorded_sectors();
    let j = Json {
        source,
        block_size: l.block_bytes,
        pending: &l.pending,
        fs_block_size: fs,
        fs_blocks: fs.map(|fs| {
            l.pending
                .iter()
                .map(|&s| fs_blocks(fs, block_at(l, s)))
                .collect()
        }),
        unrecorded: Unrecorded {
            count: l.unrecorded.count,
            first_sector: range.map(|r| r.0),
            last_sector: range.map(|r| r.1),
            fs_blocks: fs.zip(range).map(|(fs, r)| fs_blocks(fs, r)),
        },
    };
    serde_json::to_string(&j).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Lost {
        Lost {
            block_bytes: 4096,
            pending: vec![8, 2048],
            unrecorded: dm_remap::logic::format::Unrecorded {
                count: 3,
                first: 512,
                last: 1024,
            },
        }
    }

    #[test]
    fn words_and_file_system_blocks() {
        let t = text(&sample(), "r0", Some(1024));
        assert_eq!(
            t,
            "r0: 2 main blocks of 4096 bytes lost (their reads failed; no write has \
             replaced them since)\n\
             main sector 8 (file system blocks 4-7)\n\
             main sector 2048 (file system blocks 1024-1027)\n\
             r0: 3 more failed reads were not listed (the pending list was full), between \
             main sectors 4096 and 8199 (file system blocks 2048-4099)\n"
        );
        assert!(text(&sample(), "r0", Some(4096)).contains("main sector 8 (file system block 1)\n"));
        assert!(!text(&sample(), "r0", None).contains("file system"));
        let none = Lost {
            block_bytes: 512,
            ..Lost::default()
        };
        assert!(!any(&none));
        assert_eq!(
            text(&none, "/dev/sdb", None),
            "/dev/sdb: no data lost: no pending blocks, no unrecorded read errors\n"
        );
    }

    #[test]
    fn json_report() {
        let v: serde_json::Value =
            serde_json::from_str(&json(&sample(), "r0", Some(4096))).unwrap();
        assert_eq!(
            v,
            serde_json::json!({
                "source": "r0",
                "block_size": 4096,
                "pending": [8, 2048],
                "fs_block_size": 4096,
                "fs_blocks": [[1, 1], [256, 256]],
                "unrecorded": {"count": 3, "first_sector": 4096, "last_sector": 8199,
                    "fs_blocks": [512, 1024]},
            })
        );
        let none = Lost {
            block_bytes: 512,
            ..Lost::default()
        };
        let v: serde_json::Value = serde_json::from_str(&json(&none, "x", None)).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"source": "x", "block_size": 512, "pending": [],
                "unrecorded": {"count": 0}})
        );
    }
}
