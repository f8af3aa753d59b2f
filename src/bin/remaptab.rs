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

/// systemd's escaping of a unit name's parts (`systemd-escape`, and with
/// `path` set `systemd-escape --path`): `/` becomes `-`, every byte but
/// ASCII letters, digits, `:`, `_` and a `.` that does not lead becomes
/// `\xNN`. A path is first made simple (no repeated, leading or trailing
/// `/`, no `.` components); the root is `-`.
pub(crate) fn unit_escape(s: &str, path: bool) -> String {
    let simple;
    let s = if path {
        simple = s
            .split('/')
            .filter(|c| !c.is_empty() && *c != ".")
            .collect::<Vec<_>>()
            .join("/");
        if simple.is_empty() {
            return "-".into();
        }
        simple.as_str()
    } else {
        s
    };
    let mut o = String::new();
    for (i, b) in s.bytes().enumerate() {
        match b {
            b'/' => o.push('-'),
            b'.' if i > 0 => o.push('.'),
            b if b.is_ascii_alphanumeric() || b == b':' || b == b'_' => o.push(b as char),
            b => o.push_str(&format!("\\x{b:02x}")),
        }
    }
    o
}

/// `s` as one word of a unit file's command line: quoted, with `\`, `"`,
/// the specifier `%` and the variable `$` escaped.
fn exec_word(s: &str) -> String {
    let mut o = String::from("\"");
    for c in s.chars() {
        match c {
            '\\' => o.push_str("\\\\"),
            '"' => o.push_str("\\\""),
            '%' => o.push_str("%%"),
            '$' => o.push_str("$$"),
            c if c.is_control() => o.push_str(&format!("\\x{:02x}", c as u32)),
            c => o.push(c),
        }
    }
    o.push('"');
    o
}

/// A unit the generator writes: its file name, its text, and the units
/// whose `.requires`/`.wants` directories get a link to it.
pub(crate) struct Unit {
    pub(crate) name: String,
    pub(crate) text: String,
    pub(crate) wanted_by: String,
    pub(crate) required_by: String,
}

/// The systemd unit that activates `e` of remaptab `tab`: started once both
/// its disks are there (bound to their device units, so no wait for all of
/// udev to settle), before local file systems mount and LVM activates, and
/// stopped after they unmount. `/dev/mapper/<name>` requires it, so a mount
/// of the mapped device pulls it in.
pub(crate) fn unit(tab: &str, e: &Entry) -> Result<Unit, String> {
    let dev = |spec: &str| device_spec(spec).map(|p| format!("{}.device", unit_escape(&p, true)));
    let (main, spare) = (dev(&e.main)?, dev(&e.spare)?);
    let name = format!("dm-remap@{}.service", unit_escape(&e.name, false));
    let (t, n) = (exec_word(tab), exec_word(&e.name));
    let text = format!(
        "# Generated by dm-remap-tool generate from {tab}, line {line}.
[Unit]
Description=dm-remap device {desc}
Documentation=file:/usr/share/doc/dm-remap/usage.md
SourcePath={tab}
DefaultDependencies=no
IgnoreOnIsolate=true
BindsTo={main} {spare}
After={main} {spare} systemd-modules-load.service
Wants=local-fs-pre.target
Before=local-fs-pre.target blk-availability.service lvm2-activation-early.service
Conflicts=umount.target
Before=umount.target

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStartPre=-/sbin/modprobe dm_remap
ExecStart=/usr/sbin/dm-remap-tool activate --tab {t} {n}
ExecStop=/usr/sbin/dm-remap-tool deactivate --tab {t} {n}
",
        line = e.line,
        desc = e.name.replace('%', "%%"),
    );
    Ok(Unit {
        name,
        text,
        wanted_by: "sysinit.target".into(),
        required_by: format!("dev-mapper-{}.device", unit_escape(&e.name, false)),
    })
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

    #[test]
    fn unit_names_escape_as_systemd_does() {
        // What `systemd-escape` and `systemd-escape --path` print.
        for (s, path, want) in [
            ("/dev/sdb", true, "dev-sdb"),
            (
                "/dev/disk/by-id/ata-WDC_WD40-part1",
                true,
                "dev-disk-by\\x2did-ata\\x2dWDC_WD40\\x2dpart1",
            ),
            ("//dev//./sdb/", true, "dev-sdb"),
            ("/", true, "-"),
            (
                "/dev/disk/by-partlabel/my spare",
                true,
                "dev-disk-by\\x2dpartlabel-my\\x20spare",
            ),
            ("/dev/.hidden", true, "dev-.hidden"),
            (".data", false, "\\x2edata"),
            ("data-1", false, "data\\x2d1"),
            ("ümlaut", false, "\\xc3\\xbcmlaut"),
        ] {
            assert_eq!(unit_escape(s, path), want, "{s}");
        }
    }

    #[test]
    fn a_unit_per_device_bound_to_its_disks() {
        let e = parse("# x\nroot-disk PARTUUID=AB-02 /dev/sdc1 block_size=4096\n").unwrap();
        let u = unit("/etc/remaptab", &e[0]).unwrap();
        assert_eq!(u.name, "dm-remap@root\\x2ddisk.service");
        assert_eq!(u.required_by, "dev-mapper-root\\x2ddisk.device");
        assert_eq!(u.wanted_by, "sysinit.target");
        assert!(u.text.contains("line 2."));
        assert!(u
            .text
            .contains("\nBindsTo=dev-disk-by\\x2dpartuuid-ab\\x2d02.device dev-sdc1.device\n"));
        assert!(u.text.contains(
            "\nExecStart=/usr/sbin/dm-remap-tool activate --tab \"/etc/remaptab\" \"root-disk\"\n"
        ));
        let e = parse("a%b$c\"d /dev/x /dev/y\n").unwrap();
        let u = unit("/etc/my tab", &e[0]).unwrap();
        assert!(u
            .text
            .contains("deactivate --tab \"/etc/my tab\" \"a%%b$$c\\\"d\"\n"));
        assert!(u.text.contains("Description=dm-remap device a%%b$c\"d\n"));
    }
}
