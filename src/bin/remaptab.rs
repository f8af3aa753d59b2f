// SPDX-License-Identifier: GPL-2.0

//! `/etc/remaptab`: the remap devices to set up at boot, one a line, in the
//! manner of crypttab and integritytab:
//!
//! ```text
//! # name   main                                spare                   options
//! data     /dev/disk/by-id/ata-WDC_WD40-part1  PARTUUID=5e1f…-02       block_size=4096,spare_low=5
//! backup   /dev/sdc                            /dev/sdd1               -
//! ```
//!
//! Devices are paths or `PARTUUID=`, `PARTLABEL=`, `UUID=` or `LABEL=`
//! names (looked up under `/dev/disk/by-*`). Options are the table line's
//! features, comma-separated, a value after `=` (`format` takes none); `-`
//! or nothing for none.

use dm_remap::logic::table_line;

/// One line of a remaptab.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Entry {
    /// 1-based line number, for messages.
    pub(crate) line: usize,
    pub(crate) name: String,
    pub(crate) main: String,
    pub(crate) spare: String,
    /// The table line's feature words (without their count).
    pub(crate) features: Vec<String>,
}

impl Entry {
    /// The table line for a main device of `sectors` sectors, the devices
    /// given as `main` and `spare` (resolved paths).
    pub(crate) fn table(&self, sectors: u64, main: &str, spare: &str) -> String {
        let mut t = format!("0 {sectors} remap {main} {spare}");
        if !self.features.is_empty() {
            t.push_str(&format!(
                " {} {}",
                self.features.len(),
                self.features.join(" ")
            ));
        }
        t
    }
}

/// The longest device-mapper name (DM_NAME_LEN less its NUL).
const NAME_MAX: usize = 127;

/// Parses a remaptab. An error names the line and what is wrong with it;
/// nothing is activated from a file with an error.
pub(crate) fn parse(text: &str) -> Result<Vec<Entry>, String> {
    let mut entries: Vec<Entry> = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        let content = raw.split('#').next().unwrap_or("").trim();
        if content.is_empty() {
            continue;
        }
        let fields: Vec<&str> = content.split_whitespace().collect();
        let err = |what: &str| format!("line {line}: {what}");
        let (name, main, spare, opts) = match fields[..] {
            [n, m, s] => (n, m, s, "-"),
            [n, m, s, o] => (n, m, s, o),
            _ => return Err(err("want <name> <main> <spare> [<options>|-]")),
        };
        if name.len() > NAME_MAX || name == "." || name == ".." || name.contains('/') {
            return Err(err(&format!(
                "'{name}' is not a device-mapper name (at most {NAME_MAX} bytes, no '/')"
            )));
        }
        if entries.iter().any(|e| e.name == name) {
            return Err(err(&format!("'{name}' is named twice")));
        }
        for d in [main, spare] {
            device_spec(d).map_err(|e| err(&e))?;
        }
        let mut features = Vec::new();
        if opts != "-" {
            for o in opts.split(',') {
                match o.split_once('=') {
                    Some((k, v)) if !k.is_empty() && !v.is_empty() => {
                        features.push(k.to_string());
                        features.push(v.to_string());
                    }
                    None if !o.is_empty() => features.push(o.to_string()),
                    _ => return Err(err(&format!("bad option '{o}' in '{opts}'"))),
                }
            }
        }
        // What the target would refuse, refused here, before anything runs.
        let count = features.len().to_string();
        let mut args = vec![main, spare];
        if !features.is_empty() {
            args.push(&count);
            args.extend(features.iter().map(String::as_str));
        }
        table_line::parse(&args).map_err(|r| err(r.as_str()))?;
        entries.push(Entry {
            line,
            name: name.to_string(),
            main: main.to_string(),
            spare: spare.to_string(),
            features,
        });
    }
    Ok(entries)
}

/// Where a device named in a remaptab is: a path, or a name looked up under
/// `/dev/disk/by-*`.
pub(crate) fn device_spec(spec: &str) -> Result<String, String> {
    for (prefix, dir) in [
        ("PARTUUID=", "by-partuuid"),
        ("PARTLABEL=", "by-partlabel"),
        ("UUID=", "by-uuid"),
        ("LABEL=", "by-label"),
    ] {
        if let Some(v) = spec.strip_prefix(prefix) {
            if v.is_empty() || v.contains('/') {
                return Err(format!("bad device name '{spec}'"));
            }
            let v = if prefix == "PARTUUID=" || prefix == "UUID=" {
                v.to_ascii_lowercase()
            } else {
                v.to_string()
            };
            return Ok(format!("/dev/disk/{dir}/{v}"));
        }
    }
    if spec.starts_with('/') {
        Ok(spec.to_string())
    } else {
        Err(format!(
            "'{spec}' is not a device: give a path or PARTUUID=, PARTLABEL=, UUID=, LABEL="
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_comments_and_options() {
        let t = "# a comment\n\n  data /dev/sdb PARTUUID=ABC-02 block_size=4096,format # why\n\
                 b\t/dev/sdc\t/dev/sdd -\nc /dev/sde /dev/sdf\n";
        let e = parse(t).unwrap();
        assert_eq!(e.len(), 3);
        assert_eq!(e[0].line, 3);
        assert_eq!(e[0].features, ["block_size", "4096", "format"]);
        assert_eq!(e[0].spare, "PARTUUID=ABC-02");
        assert!(e[1].features.is_empty() && e[2].features.is_empty());
        assert_eq!(
            e[0].table(2048, "/dev/sdb", "/dev/sdg2"),
            "0 2048 remap /dev/sdb /dev/sdg2 3 block_size 4096 format"
        );
        assert_eq!(
            e[1].table(8, "/dev/sdc", "/dev/sdd"),
            "0 8 remap /dev/sdc /dev/sdd"
        );
        assert_eq!(
            device_spec("PARTUUID=ABC-02").unwrap(),
            "/dev/disk/by-partuuid/abc-02"
        );
        assert_eq!(
            device_spec("LABEL=Spare").unwrap(),
            "/dev/disk/by-label/Spare"
        );
        assert_eq!(device_spec("/dev/x").unwrap(), "/dev/x");
    }

    #[test]
    fn every_bad_line_is_refused_with_its_number() {
        for (text, want) in [
            ("a /dev/x\n", "line 1: want <name>"),
            ("a /dev/x /dev/y - extra\n", "line 1: want <name>"),
            ("\na/b /dev/x /dev/y\n", "line 2: 'a/b' is not"),
            (
                "a /dev/x /dev/y\na /dev/z /dev/w\n",
                "line 2: 'a' is named twice",
            ),
            ("a sdb /dev/y\n", "line 1: 'sdb' is not a device"),
            ("a PARTUUID= /dev/y\n", "line 1: bad device name"),
            ("a /dev/x /dev/y block_size=\n", "line 1: bad option"),
            ("a /dev/x /dev/y ,format\n", "line 1: bad option"),
            ("a /dev/x /dev/y block_size=3000\n", "line 1: "),
            ("a /dev/x /dev/y frobnicate\n", "line 1: "),
            ("a /dev/x /dev/y spare_low=101\n", "line 1: "),
        ] {
            let e = parse(text).unwrap_err();
            assert!(e.starts_with(want), "{text:?}: {e}");
        }
        let long = "n".repeat(NAME_MAX + 1);
        assert!(parse(&format!("{long} /dev/x /dev/y\n")).is_err());
        assert!(parse(&format!("{} /dev/x /dev/y\n", &long[1..])).is_ok());
    }
}
