// SPDX-License-Identifier: GPL-2.0

//! `import`: a list of bad blocks (from `badblocks -o`, md's `bad_blocks`,
//! or plain sectors) turned into as few `add_remaps` messages as the limits
//! allow. The lists are read and checked here; sending them is the caller's.

use clap::ValueEnum;

/// What a list file holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// `badblocks -o`: a block number per line, in blocks of `-b` bytes
    /// (badblocks' default is 1024)
    Badblocks,
    /// md's `bad_blocks` (sysfs): `<first sector> <sectors>` per line
    Md,
    /// A 512-byte sector number per line
    Sectors,
}

/// Ranges `[start, end)` of 512-byte sectors a list names, in the order
/// given; blank lines and `#` comments skipped. An error names the line.
pub fn parse(text: &str, format: Format, list_block: u64) -> Result<Vec<(u64, u64)>, String> {
    let per = list_block / 512;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let bad = |what: &str| format!("line {}: {what}: {line:?}", i + 1);
        let num = |s: &str| s.parse::<u64>().map_err(|_| bad("not a decimal number"));
        let w: Vec<&str> = line.split_whitespace().collect();
        let (start, len) = match (format, &w[..]) {
            (Format::Badblocks, [b]) => (
                num(b)?.checked_mul(per).ok_or_else(|| bad("too large"))?,
                per,
            ),
            (Format::Md, [s, n]) => match num(n)? {
                0 => return Err(bad("a range of 0 sectors")),
                n => (num(s)?, n),
            },
            (Format::Sectors, [s]) => (num(s)?, 1),
            (Format::Md, _) => return Err(bad("expected <first sector> <sectors>")),
            _ => return Err(bad("expected one number")),
        };
        let end = start.checked_add(len).ok_or_else(|| bad("too large"))?;
        out.push((start, end));
    }
    Ok(out)
}

/// The ranges widened to whole blocks of `block_sectors` and merged, in
/// ascending order: what `add_remaps` takes. Refuses a range past
/// `device_sectors` (a list for another device, or another block size).
pub fn blocks(
    mut ranges: Vec<(u64, u64)>,
    block_sectors: u64,
    device_sectors: u64,
) -> Result<Vec<(u64, u64)>, String> {
    ranges.sort_unstable();
    let mut out: Vec<(u64, u64)> = Vec::new();
    for (s, e) in ranges {
        if e > device_sectors {
            return Err(format!(
                "sectors {s}..{e} lie beyond the device's end ({device_sectors} sectors): \
                 a list of another device, or of another block size (-b)?"
            ));
        }
        let s = s - s % block_sectors;
        let e = e.div_ceil(block_sectors) * block_sectors;
        match out.last_mut() {
            Some(last) if s <= last.1 => last.1 = last.1.max(e),
            _ => out.push((s, e)),
        }
    }
    Ok(out)
}

/// The `add_remaps` messages for `ranges` (from [`blocks`]): each at most
/// `max_blocks` blocks of `block_sectors` and `max_words` ranges, so that a
/// message stays within the module's limit and, with `carry`, the device
/// is not held suspended for long. Ranges longer than a message are split.
pub fn messages(
    ranges: &[(u64, u64)],
    block_sectors: u64,
    carry: bool,
    max_blocks: u64,
    max_words: usize,
) -> Vec<Vec<String>> {
    let head = || {
        let mut m = vec!["add_remaps".to_string()];
        if carry {
            m.push("carry".to_string());
        }
        m
    };
    let mut out = Vec::new();
    let mut m = head();
    let mut blocks = 0;
    for &(s, e) in ranges {
        let mut s = s;
        while s < e {
            if blocks == max_blocks || m.len() - 1 - usize::from(carry) == max_words {
                out.push(std::mem::replace(&mut m, head()));
                blocks = 0;
            }
            let n = ((e - s) / block_sectors).min(max_blocks - blocks);
            m.push(format!("{s}+{}", n * block_sectors));
            blocks += n;
            s += n * block_sectors;
        }
    }
    if m.len() > 1 + usize::from(carry) {
        out.push(m);
    }
    out
}

/// `added A pending P skipped S`, the module's reply to `add_remaps`.
pub fn parse_reply(reply: &str) -> Option<[u64; 3]> {
    let w: Vec<&str> = reply.split_whitespace().collect();
    match &w[..] {
        ["added", a, "pending", p, "skipped", s] => {
            Some([a.parse().ok()?, p.parse().ok()?, s.parse().ok()?])
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_three_formats() {
        let bb = "10\n# a comment\n\n11 # inline\n";
        assert_eq!(
            parse(bb, Format::Badblocks, 1024).unwrap(),
            [(20, 22), (22, 24)]
        );
        assert_eq!(
            parse(bb, Format::Badblocks, 4096).unwrap(),
            [(80, 88), (88, 96)]
        );
        assert_eq!(
            parse("100 8\n 7 1\n", Format::Md, 0).unwrap(),
            [(100, 108), (7, 8)]
        );
        assert_eq!(
            parse("5\n9\n", Format::Sectors, 0).unwrap(),
            [(5, 6), (9, 10)]
        );
        for (text, f, want) in [
            ("x\n", Format::Sectors, "line 1: not a decimal number"),
            ("1\n2 3\n", Format::Sectors, "line 2: expected one number"),
            (
                "1\n",
                Format::Md,
                "line 1: expected <first sector> <sectors>",
            ),
            ("1 0\n", Format::Md, "line 1: a range of 0 sectors"),
            ("-1\n", Format::Badblocks, "line 1: not a decimal number"),
            (
                "18446744073709551615\n",
                Format::Badblocks,
                "line 1: too large",
            ),
            ("18446744073709551615 2\n", Format::Md, "line 1: too large"),
        ] {
            let e = parse(text, f, 1024).unwrap_err();
            assert!(e.starts_with(want), "{text:?}: {e}");
        }
    }

    #[test]
    fn ranges_widen_to_blocks_and_merge() {
        // 4 KiB blocks: sector 9 is in block 8..16; 15..17 spans two.
        let r = blocks(vec![(15, 17), (9, 10), (100, 101), (40, 48)], 8, 200).unwrap();
        assert_eq!(r, [(8, 24), (40, 48), (96, 104)]);
        // Adjacent ranges merge too.
        assert_eq!(blocks(vec![(0, 8), (8, 16)], 8, 16).unwrap(), [(0, 16)]);
        assert!(blocks(vec![(195, 201)], 8, 200)
            .unwrap_err()
            .contains("beyond the device's end"));
    }

    #[test]
    fn messages_keep_to_their_limits() {
        let r = [(0, 8), (16, 64), (80, 88)];
        let m = messages(&r, 8, false, 1 << 20, 1000);
        assert_eq!(m, [["add_remaps", "0+8", "16+48", "80+8"]]);
        // At most 3 blocks: the long range splits.
        let m = messages(&r, 8, true, 3, 1000);
        assert_eq!(
            m,
            [
                vec!["add_remaps", "carry", "0+8", "16+16"],
                vec!["add_remaps", "carry", "32+24"],
                vec!["add_remaps", "carry", "56+8", "80+8"],
            ]
        );
        // At most 2 ranges.
        let m = messages(&r, 8, false, 100, 2);
        assert_eq!(
            m,
            [
                vec!["add_remaps", "0+8", "16+48"],
                vec!["add_remaps", "80+8"]
            ]
        );
        assert!(messages(&[], 8, true, 100, 2).is_empty());
    }

    #[test]
    fn replies() {
        assert_eq!(parse_reply("added 3 pending 1 skipped 0"), Some([3, 1, 0]));
        assert_eq!(parse_reply("added 3"), None);
    }
}
