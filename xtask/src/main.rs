//! Developer commands for dm-remap.
//!
//! ```text
//! cargo xtask test   [--linux SERIES] [--filter REGEX] [--jobs N] [--host-only] [--guest-only]
//! cargo xtask bench  [--linux SERIES] [--rounds N] [--runtime S]
//! cargo xtask demo   [--linux SERIES] [--kernel debug|perf]
//! cargo xtask guest  [--linux SERIES] [--kernel debug|perf] [--icount] [--timeout S] [--file F]... [--script FILE] [-- CMD...]
//! cargo xtask monitor [--linux SERIES] [--kernel debug|perf] [--out DIR]
//! cargo xtask kernel [--linux SERIES] [--kernel debug|perf]
//! cargo xtask build  [--linux SERIES] [--kernel debug|perf] [--kdir DIR] [--clippy] [--no-stats]
//! ```
//!
//! SERIES is a kernel series of `kernel/versions` (6.12, 7.3).
//!
//! Every command installs what the machine lacks (`scripts/host/setup.sh`) and
//! builds what it needs (kernel, module, guest image), reusing the cache.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::Instant;
use xshell::{cmd, Shell};

mod bench;
mod suite;

type Result<T = ()> = std::result::Result<T, Box<dyn std::error::Error>>;

const USAGE: &str = "\
usage: cargo xtask <command> [options]

commands:
  test    host checks (fmt, clippy, cargo test) once, then for each kernel
          series (all of kernel/versions, or --linux) the module build (also
          with CLIPPY=1; no warnings allowed) and the guest test suite on its
          debug kernel; then, without --linux and when a Debian 13 root is
          cached or can be made, the suite on Debian's own kernel with the
          module from `dkms build`; tests that need an option a kernel we
          did not configure lacks (`# dmr-needs:`) are listed as not run;
          ends with `N passed, N failed` over everything
            --filter REGEX   run only the guest tests whose names match
                             (grep -E; `kmemleak` names the leak check)
            --jobs N         guests at once (default: one per CPU; plus
                             one instruction-counted guest for the tests
                             that ask for it)
            --host-only      skip the kernel, module and guest
            --guest-only     skip the host checks
  bench   fio 4 KiB random and 128 KiB sequential reads and writes on
          null_blk, dm-linear and dm-remap with 0, 10k, 100k and 1M remaps
          (whole device, and remapped blocks only), bulk import times, the
          longest read while the table resizes, memory per remap, and the
          error path's cost (auto-remapping writes, commits on a spare with
          10 ms flushes); perf kernel, instruction-counted time; prints the
          rows (format: scripts/guest/bench.sh), writes docs/benchmarks.md
          and docs/benchmarks.png
            --rounds N       rounds per phase (default 2)
            --runtime S      guest seconds per fio run (default 1)
  coverage
          region, function and line coverage of the host tests over the
          module's pure logic (src/logic/), per file (scripts/host/coverage.sh)
  demo    boots the guest and walks through creating and using a remap device
  guest   boots the guest with the module and tools ready and runs FILE or CMD,
          returning its output and exit status; with neither, a shell
            --script FILE    run FILE (copied into the guest)
            --file F         also copy F to /run/files/ (repeatable)
            -- CMD...        run CMD
            --icount         instruction-counted guest time (for benchmarks)
            --timeout S      kill the guest after S seconds (default 1800)
  monitor runs a workload in the guest (perf kernel by default) while sampling
          the statistics, and plots the series to a PNG
            --out DIR        where series.csv and monitor.png go
                             (default: target/monitor)
  kernel  builds the test kernel (or finds it in the cache) and prints its path
  build   builds dm_remap.ko against the test kernel (or --kdir DIR)
            --clippy         build with the kernel's CLIPPY=1
            --no-stats       compile the I/O counting out (to measure its cost)

common options:
  --linux SERIES       kernel series, a line of kernel/versions: 6.12 or 7.3
                       (default: 6.12; `test`: every series and debian), or debian:
                       Debian 13's own kernel (kernel/debian) with the module
                       built by `dkms build` in a Debian 13 root
  --kernel debug|perf  kernel flavour (default: debug)
";

fn main() -> ExitCode {
    match run() {
        Ok(code) => code,
        Err(e) => {
            eprintln!("xtask: error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Parsed command-line options (shared by all commands).
#[derive(Default)]
struct Opts {
    flavour: String,
    linux: Option<String>,
    filter: Option<String>,
    host_only: bool,
    guest_only: bool,
    script: Option<PathBuf>,
    cmd: Vec<String>,
    icount: bool,
    timeout: Option<u64>,
    kdir: Option<PathBuf>,
    clippy: bool,
    no_stats: bool,
    files: Vec<PathBuf>,
    out: Option<PathBuf>,
    flavour_given: bool,
    jobs: Option<usize>,
    rounds: Option<u32>,
    runtime: Option<u32>,
}

fn parse(args: &[String]) -> Result<Opts> {
    let mut o = Opts {
        flavour: "debug".into(),
        ..Opts::default()
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = |name: &str| {
            it.next()
                .cloned()
                .ok_or_else(|| format!("{name} needs a value"))
        };
        match a.as_str() {
            "--kernel" => {
                o.flavour = value("--kernel")?;
                o.flavour_given = true;
            }
            "--linux" => o.linux = Some(value("--linux")?),
            "--out" => o.out = Some(PathBuf::from(value("--out")?)),
            "--filter" => o.filter = Some(value("--filter")?),
            "--script" => o.script = Some(PathBuf::from(value("--script")?)),
            "--timeout" => o.timeout = Some(value("--timeout")?.parse()?),
            "--jobs" => o.jobs = Some(positive(&value("--jobs")?, "--jobs")? as usize),
            "--kdir" => o.kdir = Some(PathBuf::from(value("--kdir")?)),
            "--rounds" => o.rounds = Some(positive(&value("--rounds")?, "--rounds")?),
            "--runtime" => o.runtime = Some(positive(&value("--runtime")?, "--runtime")?),
            "--host-only" => o.host_only = true,
            "--guest-only" => o.guest_only = true,
            "--icount" => o.icount = true,
            "--clippy" => o.clippy = true,
            "--no-stats" => o.no_stats = true,
            "--file" => o.files.push(PathBuf::from(value("--file")?)),
            "--" => {
                o.cmd = it.by_ref().cloned().collect();
            }
            other => return Err(format!("unknown option '{other}'\n\n{USAGE}").into()),
        }
    }
    if o.flavour != "debug" && o.flavour != "perf" {
        return Err(format!("--kernel takes debug or perf, not '{}'", o.flavour).into());
    }
    Ok(o)
}

/// `--linux debian`: Debian 13's own kernel image (kernel/debian), with the
/// module built by DKMS (scripts/host/debian.sh).
const DEBIAN: &str = "debian";

/// The kernel series of `kernel/versions` (its first column), in order.
fn parse_versions(text: &str) -> Vec<String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_string)
        .collect()
}

/// The series a command runs on: `--linux` (which must be one of `known`),
/// else every known series when `all`, else the first.
fn select_series(linux: Option<&str>, known: &[String], all: bool) -> Result<Vec<String>> {
    match linux {
        Some(l) if l == DEBIAN || known.iter().any(|k| k == l) => Ok(vec![l.to_string()]),
        Some(l) => Err(format!(
            "--linux takes a series of kernel/versions ({}) or {DEBIAN}, not '{l}'",
            known.join(", ")
        )
        .into()),
        None if all => Ok(known.to_vec()),
        None => Ok(known.iter().take(1).cloned().collect()),
    }
}

fn positive(v: &str, name: &str) -> Result<u32> {
    match v.parse() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(format!("{name} takes a positive number, not '{v}'").into()),
    }
}

fn run() -> Result<ExitCode> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some((command, rest)) = args.split_first() else {
        eprint!("{USAGE}");
        return Ok(ExitCode::FAILURE);
    };
    let opts = parse(rest)?;
    let x = Xtask::new()?;
    match command.as_str() {
        "test" => x.test(&opts),
        "bench" => x.bench(&opts),
        "demo" => x.demo(&opts),
        "coverage" => {
            cmd!(x.sh, "bash scripts/host/coverage.sh").run()?;
            Ok(ExitCode::SUCCESS)
        }
        "monitor" => x.monitor(&opts),
        "guest" => x.guest(&opts),
        "kernel" => {
            x.setup()?;
            let series = x.one_series(&opts)?;
            println!("{}", x.kernel(&series, &opts.flavour)?.display());
            Ok(ExitCode::SUCCESS)
        }
        "build" => {
            x.setup()?;
            let kdir = match &opts.kdir {
                Some(k) => k.clone(),
                None => x.kernel(&x.one_series(&opts)?, &opts.flavour)?,
            };
            let ko = x.module_with(&kdir, opts.clippy, opts.no_stats)?;
            // The build directory is private to this run; keep the module.
            let name = kdir.file_name().ok_or("bad kernel directory")?;
            let keep = x
                .cache
                .join("module")
                .join(format!("{}.ko", name.to_string_lossy()));
            std::fs::copy(&ko, &keep)?;
            println!("{}", keep.display());
            Ok(ExitCode::SUCCESS)
        }
        "help" | "--help" | "-h" => {
            print!("{USAGE}");
            Ok(ExitCode::SUCCESS)
        }
        other => Err(format!("unknown command '{other}'\n\n{USAGE}").into()),
    }
}

struct Xtask {
    sh: Shell,
    root: PathBuf,
    /// `$DMR_CACHE` (`scripts/host/common.sh`).
    cache: PathBuf,
    /// The LLVM tools' suffix, `$DMR_LLVM` (`scripts/host/common.sh`).
    llvm: String,
}

impl Drop for Xtask {
    fn drop(&mut self) {
        // Remove this run's private files and module build directories.
        let _ = std::fs::remove_dir_all(self.private_dir());
        let suffix = format!("-{}", std::process::id());
        if let Ok(entries) = std::fs::read_dir(self.cache.join("module")) {
            for e in entries.flatten() {
                if e.file_name().to_string_lossy().ends_with(&suffix) {
                    let _ = std::fs::remove_dir_all(e.path());
                }
            }
        }
    }
}

impl Xtask {
    fn new() -> Result<Self> {
        let sh = Shell::new()?;
        let root = Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .ok_or("xtask has no parent directory")?
            .to_path_buf();
        sh.change_dir(&root);
        // The cache directory and the LLVM suffix, from the one place that
        // sets them for every script.
        let out = Command::new("bash")
            .arg("-c")
            .arg(r#". scripts/host/common.sh && printf '%s\n%s\n' "$DMR_CACHE" "$DMR_LLVM""#)
            .current_dir(&root)
            .output()?;
        let settings = String::from_utf8_lossy(&out.stdout).into_owned();
        let mut lines = settings.lines();
        let (Some(cache), Some(llvm)) = (lines.next(), lines.next()) else {
            return Err("scripts/host/common.sh printed no settings".into());
        };
        Ok(Self {
            cache: PathBuf::from(cache),
            llvm: llvm.to_string(),
            sh,
            root,
        })
    }

    /// A directory for this run's own files (removed when it ends), so that
    /// two xtask commands at once do not share them.
    fn private_dir(&self) -> PathBuf {
        self.cache
            .join("guest")
            .join(format!("run-{}", std::process::id()))
    }

    /// Installs what the machine lacks.
    fn setup(&self) -> Result {
        let t = Instant::now();
        cmd!(self.sh, "bash scripts/host/setup.sh").run()?;
        step("setup", t);
        Ok(())
    }

    /// The kernel series a command runs on (`--linux`, or all of
    /// `kernel/versions` when `all`, or its first).
    fn series(&self, o: &Opts, all: bool) -> Result<Vec<String>> {
        let text = std::fs::read_to_string(self.root.join("kernel/versions"))?;
        select_series(o.linux.as_deref(), &parse_versions(&text), all)
    }

    fn one_series(&self, o: &Opts) -> Result<String> {
        self.series(o, false)?
            .pop()
            .ok_or_else(|| "kernel/versions names no kernel".into())
    }

    /// Builds or finds the kernel of `series` and `flavour`; returns its
    /// build directory.
    fn kernel(&self, series: &str, flavour: &str) -> Result<PathBuf> {
        let t = Instant::now();
        let out = if series == DEBIAN {
            cmd!(self.sh, "bash scripts/host/debian.sh kernel").read()?
        } else {
            cmd!(self.sh, "bash scripts/host/kernel.sh {series} {flavour}").read()?
        };
        let kdir = PathBuf::from(out.lines().last().ok_or("kernel.sh printed nothing")?);
        if series == DEBIAN {
            step("Debian's own kernel", t);
        } else {
            step(&format!("{series} {flavour} kernel"), t);
        }
        Ok(kdir)
    }

    /// The systemd generator (`scripts/systemd/dm-remap-generator`, which
    /// runs `dm-remap-tool generate`) over a sample remaptab: the unit names
    /// it writes and the device units it binds to must be what
    /// `systemd-escape` makes of them, and `systemd-analyze verify` must
    /// pass the units, in a scratch root where the commands they run exist.
    fn verify_units(&self) -> Result {
        let root = self.private_dir().join("units");
        let _ = std::fs::remove_dir_all(&root);
        let units = root.join("usr/lib/systemd/system");
        for d in ["usr/sbin", "sbin", "etc"] {
            std::fs::create_dir_all(root.join(d))?;
        }
        std::fs::create_dir_all(&units)?;
        let exe: std::fs::Permissions = std::os::unix::fs::PermissionsExt::from_mode(0o755);
        for p in ["usr/sbin/dm-remap-tool", "sbin/modprobe"] {
            std::fs::write(root.join(p), "#!/bin/sh\n")?;
            std::fs::set_permissions(root.join(p), exe.clone())?;
        }
        let gen = self.root.join("scripts/systemd/dm-remap-generator");
        cmd!(self.sh, "sh -n {gen}").run()?;
        let tab = root.join("etc/remaptab");
        let lines = [
            (
                "root-disk",
                "PARTUUID=5E1F09C2-02",
                "/dev/disk/by-partuuid/5e1f09c2-02",
                "/dev/disk/by-id/ata-WDC_WD40EFRX-part1",
                "block_size=4096",
            ),
            (
                "backup.1",
                "/dev/sdc",
                "/dev/sdc",
                "/dev/disk/by-path/pci-0000:00:1f.2-ata-1",
                "-",
            ),
        ];
        let mut text = String::from("# name main spare options\n");
        for (n, m, _, s, o) in lines {
            text.push_str(&format!("{n} {m} {s} {o}\n"));
        }
        std::fs::write(&tab, text)?;
        cmd!(
            self.sh,
            "cargo run --quiet -p dm-remap --bin dm-remap-tool -- generate --tab {tab} {units}"
        )
        .run()?;
        let mut names = Vec::new();
        for (n, _, main, spare, _) in lines {
            let unit = cmd!(self.sh, "systemd-escape --template=dm-remap@.service {n}").read()?;
            let text = std::fs::read_to_string(units.join(&unit))
                .map_err(|e| format!("the generator wrote no {unit}: {e}"))?;
            let devs = cmd!(
                self.sh,
                "systemd-escape --path --suffix=device {main} {spare}"
            )
            .read()?;
            if !text.contains(&format!("\nBindsTo={devs}\n")) {
                return Err(format!("{unit} is not bound to {devs}:\n{text}").into());
            }
            let mapped = cmd!(
                self.sh,
                "systemd-escape --path --suffix=device /dev/mapper/{n}"
            )
            .read()?;
            for link in [
                format!("sysinit.target.wants/{unit}"),
                format!("{mapped}.requires/{unit}"),
            ] {
                if !units.join(&link).exists() {
                    return Err(format!("the generator made no {link}").into());
                }
            }
            names.push(unit);
        }
        cmd!(self.sh, "systemd-analyze verify --root={root} {names...}").run()?;
        let _ = std::fs::remove_dir_all(&root);
        Ok(())
    }

    /// `make install` into a scratch root: the tool, both man pages and the
    /// boot files land where the docs say; `man` (where installed) renders
    /// the pages without a warning.
    fn verify_install(&self) -> Result {
        let root = self.private_dir().join("install");
        let _ = std::fs::remove_dir_all(&root);
        cmd!(
            self.sh,
            "cargo build --quiet -p dm-remap --bin dm-remap-tool"
        )
        .run()?;
        let tool = self.root.join("target/debug/dm-remap-tool");
        cmd!(self.sh, "make -s install DESTDIR={root} TOOL={tool}").run()?;
        for f in [
            "usr/sbin/dm-remap-tool",
            "usr/share/man/man4/dm-remap.4",
            "usr/share/man/man8/dm-remap-tool.8",
            "usr/lib/systemd/system-generators/dm-remap-generator",
            "usr/share/initramfs-tools/hooks/dm-remap",
        ] {
            if !root.join(f).is_file() {
                return Err(format!("make install left no {f}").into());
            }
        }
        for page in ["man4/dm-remap.4", "man8/dm-remap-tool.8"] {
            let p = root.join("usr/share/man").join(page);
            // Rendered, its warnings (on stderr) kept; no man, no check.
            let out = std::process::Command::new("man")
                .args(["--warnings", "-l"])
                .arg(&p)
                .env("MANWIDTH", "80")
                .env("MAN_KEEP_FORMATTING", "0")
                .output();
            if let Ok(out) = out {
                let warnings = String::from_utf8_lossy(&out.stderr);
                if !out.status.success() || !warnings.trim().is_empty() {
                    return Err(format!("man {page}: {warnings}").into());
                }
            }
        }
        let _ = std::fs::remove_dir_all(&root);
        Ok(())
    }

    /// The Debian 13 root `--linux debian` builds in, made once.
    fn debian_root(&self) -> Result<PathBuf> {
        self.debian_sh("root", "Debian 13 root")
    }

    /// Builds the module for Debian's own kernel with `dkms build` in a
    /// Debian 13 root, as a user's machine does; returns its path.
    fn dkms_module(&self) -> Result<PathBuf> {
        self.debian_sh("module", "dkms build (Debian 13 root)")
    }

    /// Runs `scripts/host/debian.sh WHAT` and returns the path it prints.
    fn debian_sh(&self, what: &str, label: &str) -> Result<PathBuf> {
        let t = Instant::now();
        let out = cmd!(self.sh, "bash scripts/host/debian.sh {what}").read()?;
        step(label, t);
        Ok(PathBuf::from(
            out.lines().last().ok_or("debian.sh printed nothing")?,
        ))
    }

    /// Builds the module against `kdir` in a private copy of the sources and
    /// returns the path of `dm_remap.ko`. Any compiler warning fails the build.
    fn module(&self, kdir: &Path, clippy: bool) -> Result<PathBuf> {
        self.module_with(kdir, clippy, false)
    }

    fn module_with(&self, kdir: &Path, clippy: bool, no_stats: bool) -> Result<PathBuf> {
        let t = Instant::now();
        let name = kdir
            .file_name()
            .ok_or("bad kernel directory")?
            .to_string_lossy()
            .into_owned();
        // Private to this run: two xtask commands may build at once.
        let dir = self
            .cache
            .join("module")
            .join(format!("{name}-{}", std::process::id()));
        if dir.exists() {
            std::fs::remove_dir_all(&dir)?;
        }
        std::fs::create_dir_all(&dir)?;
        for item in ["Kbuild", "Makefile", "src", "include"] {
            let src = self.root.join(item);
            cmd!(self.sh, "cp -r {src} {dir}").run()?;
        }
        let (kbuild, scripts) = (self.root.join("scripts/kbuild"), dir.join("scripts"));
        cmd!(self.sh, "mkdir -p {scripts}").run()?;
        cmd!(self.sh, "cp -r {kbuild} {scripts}").run()?;
        let clippy_arg = if clippy { "CLIPPY=1" } else { "CLIPPY=" };
        let output = Command::new("make")
            .args(["-C"])
            .arg(kdir)
            .arg(format!("M={}", dir.display()))
            .arg(format!("LLVM={}", self.llvm))
            .arg(clippy_arg)
            .args(no_stats.then_some("DMR_NO_STATS=1"))
            .env("PATH", path_with_cargo_bin())
            // `cargo xtask` runs with cargo's package variables set; clippy
            // would take this crate's rust-version for the kernel's msrv.
            .env_remove("CARGO_PKG_RUST_VERSION")
            .output()?;
        let log = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        if !output.status.success() {
            eprintln!("{log}");
            return Err("module build failed".into());
        }
        if log.contains("warning:") || log.contains("warning[") {
            eprintln!("{log}");
            return Err("module build printed warnings".into());
        }
        step(
            &format!("module build{}", if clippy { " (CLIPPY=1)" } else { "" }),
            t,
        );
        Ok(dir.join("dm_remap.ko"))
    }

    /// Builds the host tools (release, statically linked) for the guest and
    /// returns the paths of `dm-remap-tool` and `dmr-log-replay`. Static: under
    /// the debug kernel on TCG a process start costs in proportion to the
    /// pages it maps (scripts/host/lvm2-static.sh), and every guest test ends
    /// with `dm-remap-tool check` of its spares. The explicit target keeps
    /// these builds apart from the host's.
    fn tools(&self) -> Result<(PathBuf, PathBuf)> {
        const TARGET: &str = "x86_64-unknown-linux-gnu";
        let t = Instant::now();
        {
            let _flags = self
                .sh
                .push_env("RUSTFLAGS", "-C target-feature=+crt-static");
            cmd!(
                self.sh,
                "cargo build --release --quiet --target {TARGET} -p dm-remap --bin dm-remap-tool --bin dmr-log-replay"
            )
            .run()?;
        }
        step("dm-remap-tool, dmr-log-replay", t);
        let dir = self.root.join("target").join(TARGET).join("release");
        Ok((dir.join("dm-remap-tool"), dir.join("dmr-log-replay")))
    }

    /// Builds the guest image around `job` and returns its path.
    fn initramfs(&self, kdir: &Path, ko: &Path, job: &Path, files: &[PathBuf]) -> Result<PathBuf> {
        let (tool, replay) = self.tools()?;
        let _env = self.sh.push_env("DMR_TOOL", &tool);
        let _env2 = self.sh.push_env("DMR_REPLAY", &replay);
        // A distribution kernel's modules the guest loads first.
        let kmods = kdir.join("kmods");
        let _env3 = kmods
            .is_dir()
            .then(|| self.sh.push_env("DMR_KMODS", &kmods));
        let t = Instant::now();
        let dir = self.cache.join("guest");
        std::fs::create_dir_all(&dir)?;
        let img = dir.join(format!("initramfs-{}.cpio.gz", std::process::id()));
        cmd!(
            self.sh,
            "bash scripts/host/initramfs.sh {img} {ko} {job} {files...}"
        )
        .run()?;
        step("guest image", t);
        Ok(img)
    }

    /// Boots the guest; calls `on_line` for every line of the job's output.
    /// Returns the job's exit status.
    fn boot(
        &self,
        kdir: &Path,
        img: &Path,
        icount: bool,
        timeout: u64,
        mut on_line: impl FnMut(&str),
    ) -> Result<i32> {
        let mut c = Command::new("bash");
        c.arg(self.root.join("scripts/host/run-guest.sh"));
        if icount {
            c.arg("--icount");
        }
        c.args(["--timeout", &timeout.to_string()])
            .arg(kdir)
            .arg(img)
            .stdout(Stdio::piped())
            .stdin(Stdio::null());
        let mut child = c.spawn()?;
        let stdout = child.stdout.take().ok_or("no guest output")?;
        for line in BufReader::new(stdout).split(b'\n') {
            on_line(&String::from_utf8_lossy(&line?));
        }
        let status = child.wait()?;
        let _ = std::fs::remove_file(img);
        Ok(status.code().unwrap_or(125))
    }

    fn prepare_guest(&self, o: &Opts, flavour: &str) -> Result<(PathBuf, PathBuf)> {
        self.setup()?;
        self.kernel_and_module(o, flavour)
    }

    /// The kernel of `--linux` and `flavour`, and the module for it.
    fn kernel_and_module(&self, o: &Opts, flavour: &str) -> Result<(PathBuf, PathBuf)> {
        let series = self.one_series(o)?;
        let kdir = self.kernel(&series, flavour)?;
        let ko = if series == DEBIAN {
            self.dkms_module()?
        } else {
            self.module(&kdir, false)?
        };
        Ok((kdir, ko))
    }

    fn test(&self, o: &Opts) -> Result<ExitCode> {
        let start = Instant::now();
        self.setup()?;
        let all = self.series(o, true)?;
        if !o.guest_only {
            let t = Instant::now();
            cmd!(self.sh, "cargo fmt --all --check").run()?;
            cmd!(
                self.sh,
                "cargo clippy --workspace --all-targets --quiet -- -D warnings"
            )
            .run()?;
            cmd!(self.sh, "cargo test --workspace --quiet").run()?;
            self.verify_units()?;
            self.verify_install()?;
            step("host checks and tests", t);
        }
        if o.host_only {
            return Ok(ExitCode::SUCCESS);
        }
        // Every kernel's module builds before any suite runs: a build that
        // fails on one kernel shows at once, not after another's suite.
        let mut all = all;
        let mut unavailable = None;
        if o.linux.is_none() {
            // Debian's own kernel too, when a Debian 13 root is cached or
            // can be made (mmdebstrap and the archive reachable); otherwise
            // the run says why it left that kernel out.
            match self.debian_root() {
                Ok(_) => all.push(DEBIAN.to_string()),
                Err(e) => unavailable = Some(format!("Linux {DEBIAN}: not run ({e})")),
            }
        }
        let mut kernels = Vec::new();
        let mut refusals_failed = false;
        let mut boot_failed = false;
        for series in &all {
            let kdir = self.kernel(series, "debug")?;
            let ko = if series == DEBIAN {
                let ko = self.dkms_module()?;
                // The build's refusals, each staged in the Debian root.
                let t = Instant::now();
                if cmd!(self.sh, "bash scripts/host/debian.sh refusals")
                    .run()
                    .is_err()
                {
                    refusals_failed = true;
                }
                step("DKMS build refusals", t);
                // The initramfs-tools hook and boot scripts: Debian's kernel
                // booting with its root file system on a remap device.
                let t = Instant::now();
                let (tool, _) = self.tools()?;
                if cmd!(self.sh, "bash scripts/host/debian.sh boot {ko} {tool}")
                    .run()
                    .is_err()
                {
                    boot_failed = true;
                }
                step("initramfs-tools: root on a remap device", t);
                ko
            } else {
                self.module(&kdir, true)?;
                self.module(&kdir, false)?
            };
            kernels.push((series.as_str(), kdir, ko));
        }
        // Not the perf kernels: a third and fourth kernel build would put a
        // fresh machine's run over its 45 minutes. `cargo xtask bench`
        // builds the module against its perf kernel with the same rule (no
        // warnings).

        let (tests, kmemleak) = self.guest_tests(o.filter.as_deref())?;
        let (mut passed, mut failed, mut broken) = (0, 0, 0);
        let mut failures = Vec::new();
        if refusals_failed {
            failed += 1;
            failures.push(format!("{DEBIAN}/dkms-refusals"));
        }
        if boot_failed {
            failed += 1;
            failures.push(format!("{DEBIAN}/initramfs-tools-boot"));
        }
        let mut summaries = Vec::new();
        let mut skipped = Vec::new();
        for (series, kdir, ko) in &kernels {
            if *series == DEBIAN {
                println!("== Linux {series}: guest suite on Debian's own kernel ==");
            } else {
                println!("== Linux {series}: guest suite on the debug kernel ==");
            }
            let r = self.suite(o, series, kdir, ko, &tests, kmemleak)?;
            let not_run = if r.not_run.is_empty() {
                String::new()
            } else {
                format!(", {} not run", r.not_run.len())
            };
            summaries.push(format!(
                "Linux {series}: {} passed, {} failed{not_run} ({} s)",
                r.passed, r.failed, r.wall
            ));
            skipped.extend(r.not_run.iter().map(|n| format!("{series}/{n}")));
            eprintln!(
                "[xtask] Linux {series} guest suite: {} s, {} s of passing tests (host clock)",
                r.wall, r.test_secs
            );
            passed += r.passed;
            failed += r.failed;
            broken += r.broken_guests;
            failures.extend(r.failures.iter().map(|f| format!("{series}/{f}")));
        }
        summaries.extend(unavailable);
        for line in &summaries {
            println!("{line}");
        }
        if !skipped.is_empty() {
            println!("not run: {}", skipped.join(" "));
        }
        if !failures.is_empty() {
            println!("failed: {}", failures.join(" "));
        }
        eprintln!(
            "[xtask] cargo xtask test took {} s",
            start.elapsed().as_secs()
        );
        println!("{passed} passed, {failed} failed");
        Ok(if failed == 0 && broken == 0 {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        })
    }

    /// Runs `tests` (and the leak check when `kmemleak`) on the debug kernel
    /// `kdir` of `series` with module `ko`.
    fn suite(
        &self,
        o: &Opts,
        series: &str,
        kdir: &Path,
        ko: &Path,
        tests: &[String],
        kmemleak: bool,
    ) -> Result<SuiteResult> {
        let guest_dir = self.cache.join("guest");
        std::fs::create_dir_all(&guest_dir)?;
        let private = self.private_dir();
        std::fs::create_dir_all(&private)?;
        // What each test needs (`# dmr-needs:`), against what this kernel
        // has. Our kernels must have all of it (their fragments say so);
        // a kernel we did not configure may lack some, and the tests that
        // need it are listed as not run, with the reason.
        let config = std::fs::read_to_string(kdir.join(".config"))
            .map_err(|e| format!("{}: {e}", kdir.join(".config").display()))?;
        let enabled = suite::enabled_options(&config);
        let ours = series != DEBIAN;
        let mut not_run = Vec::new();
        let mut failures = Vec::new();
        let mut lacks = |name: &str, missing: Vec<String>| {
            let what = missing.join(", ");
            if ours {
                println!(
                    "FAIL {name}: needs {what}, which this debug kernel lacks \
                     (kernel/debug.config must turn it on)"
                );
                failures.push(name.to_string());
            } else {
                println!("NOT RUN {name}: needs {what}, which Linux {series} lacks");
                not_run.push(format!("{name} ({what})"));
            }
        };
        let kmemleak = kmemleak && {
            let missing = suite::missing(&["CONFIG_DEBUG_KMEMLEAK".into()], &enabled);
            let has = missing.is_empty();
            if !has {
                lacks("kmemleak", missing);
            }
            has
        };
        // Each test's header, read once: what it needs, and its guest.
        let mut runnable = std::collections::BTreeMap::new();
        for name in tests {
            let text = std::fs::read_to_string(self.root.join(format!("tests/{name}.sh")))
                .unwrap_or_default();
            let h = suite::header(&text);
            let missing = suite::missing(&h.needs, &enabled);
            if missing.is_empty() {
                runnable.insert(name.clone(), h.icount);
            } else {
                lacks(name, missing);
            }
        }

        let conf = private.join("dmr-test.conf");
        std::fs::write(&conf, format!("KMEMLEAK={}\n", u8::from(kmemleak)))?;
        let job = self.root.join("scripts/guest/guest-tests.sh");
        let img = self.initramfs(kdir, ko, &job, &[conf])?;

        // Longest first, by the times of earlier runs on this kernel.
        let times = guest_dir.join(format!("durations-{series}"));
        let committed = self.root.join("tests/durations");
        let known = suite::durations(&[&committed, &times]);
        let tests = suite::order(runnable.keys().cloned().collect(), &known)
            .into_iter()
            .map(|name| {
                let icount = runnable[&name];
                suite::Test { name, icount }
            })
            .collect();
        let jobs = o.jobs.unwrap_or_else(default_jobs);
        let t = Instant::now();
        let runner = self.root.join("scripts/host/run-guest.sh");
        let plan = suite::Plan {
            runner: &runner,
            kdir,
            image: &img,
            timeout: o.timeout.unwrap_or(3600),
            jobs,
            dir: &private,
        };
        let report = suite::run(&plan, tests);
        let _ = std::fs::remove_file(&img);
        let wall = t.elapsed().as_secs();
        step(&format!("Linux {series} guest suite"), t);

        let outcomes = suite::merge_kmemleak(report.outcomes);
        let mut measured = suite::durations(&[&times]);
        let mut test_secs = 0;
        for o in &outcomes {
            if let (true, Some(s)) = (o.pass, o.wall) {
                measured.insert(o.name.clone(), s);
                test_secs += s;
            }
        }
        std::fs::write(&times, suite::format_durations(&measured))?;

        let passed = outcomes.iter().filter(|o| o.pass).count();
        failures.extend(outcomes.iter().filter(|o| !o.pass).map(|o| o.name.clone()));
        for name in &report.not_run {
            println!("FAIL {name}: not run (the guests stopped)");
            failures.push(name.clone());
        }
        if kmemleak && !outcomes.iter().any(|o| o.name == "kmemleak") {
            println!("FAIL kmemleak: no guest finished its leak check");
            failures.push("kmemleak".into());
        }
        if report.broken_guests > 0 {
            println!("{} guest(s) stopped before finishing", report.broken_guests);
        }
        Ok(SuiteResult {
            passed,
            failed: failures.len(),
            failures,
            not_run,
            broken_guests: report.broken_guests,
            wall,
            test_secs,
        })
    }

    /// The guest tests (`tests/NN-*.sh`, by name without `.sh`) that match
    /// `filter` (grep -E), and whether the kmemleak check does.
    fn guest_tests(&self, filter: Option<&str>) -> Result<(Vec<String>, bool)> {
        let mut names: Vec<String> = std::fs::read_dir(self.root.join("tests"))?
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let n = e.file_name().to_string_lossy().into_owned();
                let stem = n.strip_suffix(".sh")?;
                stem.starts_with(|c: char| c.is_ascii_digit())
                    .then(|| stem.to_string())
            })
            .collect();
        names.sort();
        let Some(filter) = filter.filter(|f| !f.is_empty()) else {
            return Ok((names, true));
        };
        let mut input = names.join("\n");
        input.push_str("\nkmemleak\n");
        let out = cmd!(self.sh, "grep -E -e {filter}")
            .stdin(input)
            .ignore_status()
            .read()?;
        let matched: Vec<&str> = out.lines().collect();
        let kmemleak = matched.contains(&"kmemleak");
        names.retain(|n| matched.contains(&n.as_str()));
        if names.is_empty() && !kmemleak {
            return Err(format!("--filter '{filter}' matches no guest test").into());
        }
        Ok((names, kmemleak))
    }

    fn bench(&self, o: &Opts) -> Result<ExitCode> {
        // Which tree the figures are of: HEAD, dirty if anything but the
        // report itself differs from it before the module and the guest
        // image copy the tree or after.
        let dirty = || -> Result<bool> {
            let changes = cmd!(
                self.sh,
                "git status --porcelain -- . :!docs/benchmarks.md :!docs/benchmarks.png"
            )
            .read()?;
            Ok(!changes.trim().is_empty())
        };
        let mut commit = cmd!(self.sh, "git rev-parse --short HEAD").read()?;
        let dirty_before = dirty()?;
        cmd!(self.sh, "bash scripts/host/setup.sh --plot").run()?;
        let series = self.one_series(o)?;
        let (kdir, ko) = self.kernel_and_module(o, "perf")?;
        let dir = self.private_dir();
        std::fs::create_dir_all(&dir)?;
        let conf = dir.join("bench.conf");
        std::fs::write(
            &conf,
            format!(
                "ROUNDS={}\nRUNTIME={}\n",
                o.rounds.unwrap_or(2),
                o.runtime.unwrap_or(1)
            ),
        )?;
        let job = self.root.join("scripts/guest/bench.sh");
        let img = self.initramfs(&kdir, &ko, &job, &[conf])?;
        if dirty_before || dirty()? {
            commit.push_str("-dirty");
        }
        let t = Instant::now();
        let mut block = String::new();
        let mut inside = false;
        let rc = self.boot(&kdir, &img, true, o.timeout.unwrap_or(3600), |l| match l {
            "DMR-BENCH-BEGIN" => inside = true,
            "DMR-BENCH-END" => inside = false,
            _ => {
                if inside {
                    block.push_str(l);
                    block.push('\n');
                }
                println!("{l}")
            }
        })?;
        step("bench", t);
        if rc != 0 || block.is_empty() {
            return Err(format!("the bench job failed (exit status {rc})").into());
        }
        let report = bench::parse(&block)?;
        let out = self.root.join("target/bench");
        std::fs::create_dir_all(&out)?;
        let rows = out.join("bench.txt");
        std::fs::write(&rows, &block)?;
        let png = self.root.join("docs/benchmarks.png");
        cmd!(
            self.sh,
            "/usr/bin/python3 scripts/host/plot-bench.py {rows} {png}"
        )
        .run()?;
        let date = cmd!(self.sh, "date -u '+%Y-%m-%d %H:%M UTC'").read()?;
        let md = bench::markdown(
            &report,
            &bench::Meta {
                commit,
                series,
                date,
            },
        );
        let doc = self.root.join("docs/benchmarks.md");
        std::fs::write(&doc, md)?;
        for g in report.goals() {
            let met = match g.met {
                Some(true) => "met",
                Some(false) => "NOT MET",
                None => "not measured",
            };
            println!("goal: {} -- {} -- {met}", g.what, g.measured);
        }
        println!("report: {}\nplot:   {}", doc.display(), png.display());
        Ok(ExitCode::SUCCESS)
    }

    fn demo(&self, o: &Opts) -> Result<ExitCode> {
        let (kdir, ko) = self.prepare_guest(o, &o.flavour)?;
        let job = self.root.join("scripts/guest/demo.sh");
        let img = self.initramfs(&kdir, &ko, &job, &[])?;
        let rc = self.boot(&kdir, &img, false, o.timeout.unwrap_or(1800), |l| {
            println!("{l}")
        })?;
        Ok(exit_code(rc))
    }

    fn monitor(&self, o: &Opts) -> Result<ExitCode> {
        let flavour = if o.flavour_given { &o.flavour } else { "perf" };
        cmd!(self.sh, "bash scripts/host/setup.sh --plot").run()?;
        let (kdir, ko) = self.kernel_and_module(o, flavour)?;
        let job = self.root.join("scripts/guest/monitor-workload.sh");
        let img = self.initramfs(&kdir, &ko, &job, &[])?;
        let mut series = String::new();
        let mut inside = false;
        let rc = self.boot(&kdir, &img, false, o.timeout.unwrap_or(1800), |l| match l {
            "DMR-SERIES-BEGIN" => inside = true,
            "DMR-SERIES-END" => inside = false,
            _ if inside => {
                series.push_str(l);
                series.push('\n');
            }
            _ => println!("{l}"),
        })?;
        if rc != 0 || series.is_empty() {
            return Err(format!("the monitor workload failed (exit status {rc})").into());
        }
        let out = o
            .out
            .clone()
            .unwrap_or_else(|| self.root.join("target/monitor"));
        std::fs::create_dir_all(&out)?;
        let csv = out.join("series.csv");
        let png = out.join("monitor.png");
        std::fs::write(&csv, series)?;
        cmd!(
            self.sh,
            "/usr/bin/python3 scripts/host/plot-monitor.py {csv} {png}"
        )
        .run()?;
        println!("series: {}\nplot:   {}", csv.display(), png.display());
        Ok(ExitCode::SUCCESS)
    }

    fn guest(&self, o: &Opts) -> Result<ExitCode> {
        if o.script.is_some() && !o.cmd.is_empty() {
            return Err("give either --script FILE or -- CMD, not both".into());
        }
        let (kdir, ko) = self.prepare_guest(o, &o.flavour)?;
        let dir = self.cache.join("guest");
        std::fs::create_dir_all(&dir)?;
        let job = dir.join(format!("job-{}.sh", std::process::id()));
        let mut files = o
            .files
            .iter()
            .map(std::fs::canonicalize)
            .collect::<std::io::Result<Vec<_>>>()?;
        let batch = match (&o.script, o.cmd.is_empty()) {
            (Some(file), _) => {
                let name = file
                    .file_name()
                    .ok_or("--script needs a file")?
                    .to_string_lossy()
                    .into_owned();
                files.insert(0, std::fs::canonicalize(file)?);
                Some(format!("exec sh /run/files/{name}\n"))
            }
            (None, false) => {
                let line: Vec<String> = o.cmd.iter().map(|a| shell_quote(a)).collect();
                Some(format!("{}\n", line.join(" ")))
            }
            (None, true) => None,
        };
        if let Some(script) = batch {
            std::fs::write(&job, script)?;
            let img = self.initramfs(&kdir, &ko, &job, &files)?;
            let _ = std::fs::remove_file(&job);
            let rc = self.boot(&kdir, &img, o.icount, o.timeout.unwrap_or(1800), |l| {
                println!("{l}")
            })?;
            return Ok(exit_code(rc));
        }
        // No script and no command: an interactive shell.
        std::fs::write(&job, "exit 0\n")?;
        let img = self.initramfs(&kdir, &ko, &job, &files)?;
        let _ = std::fs::remove_file(&job);
        let status = Command::new("bash")
            .arg(self.root.join("scripts/host/run-guest.sh"))
            .arg("--shell")
            .arg(&kdir)
            .arg(&img)
            .status()?;
        let _ = std::fs::remove_file(&img);
        Ok(exit_code(status.code().unwrap_or(1)))
    }
}

/// One kernel's guest suite, as `cargo xtask test` reports it.
struct SuiteResult {
    passed: usize,
    failed: usize,
    /// The names of the failed tests.
    failures: Vec<String>,
    /// Tests a kernel we did not configure cannot run, each with the
    /// options it lacks.
    not_run: Vec<String>,
    broken_guests: usize,
    /// Seconds the suite took, and the passing tests' seconds summed.
    wall: u64,
    test_secs: u64,
}

/// Plain guests at once: one per CPU (a guest keeps about one CPU busy).
fn default_jobs() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get())
}

fn exit_code(rc: i32) -> ExitCode {
    ExitCode::from(u8::try_from(rc).unwrap_or(1))
}

/// Quotes `s` for a POSIX shell.
fn shell_quote(s: &str) -> String {
    if !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./=:,+@%".contains(&b))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// PATH with cargo's bin directory, where setup installs bindgen.
fn path_with_cargo_bin() -> String {
    let path = std::env::var("PATH").unwrap_or_default();
    match std::env::var("HOME") {
        Ok(home) => format!("{home}/.cargo/bin:{path}"),
        Err(_) => path,
    }
}

fn step(what: &str, t: Instant) {
    eprintln!("[xtask] {what}: {:.1} s", t.elapsed().as_secs_f64());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting() {
        assert_eq!(shell_quote("dmsetup"), "dmsetup");
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
        assert_eq!(shell_quote(""), "''");
    }

    #[test]
    fn options() {
        let a: Vec<String> = ["--kernel", "perf", "--icount", "--", "echo", "hi"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let o = parse(&a).unwrap();
        assert_eq!(o.flavour, "perf");
        assert!(o.icount);
        assert_eq!(o.cmd, ["echo", "hi"]);
        assert!(parse(&["--kernel".to_string(), "x".to_string()]).is_err());
        assert!(parse(&["--bogus".to_string()]).is_err());
    }

    #[test]
    fn kernel_series() {
        let known = parse_versions(
            "# comment\n\n6.12 linux-source-6.12 1 a b\n7.3 linux-source-7.3 2 c d\n",
        );
        assert_eq!(known, ["6.12", "7.3"]);
        assert_eq!(select_series(None, &known, true).unwrap(), ["6.12", "7.3"]);
        assert_eq!(select_series(None, &known, false).unwrap(), ["6.12"]);
        assert_eq!(select_series(Some("7.3"), &known, true).unwrap(), ["7.3"]);
        assert!(select_series(Some("7.2"), &known, true).is_err());
        assert_eq!(
            select_series(Some("debian"), &known, true).unwrap(),
            ["debian"]
        );
        let o = parse(&["--linux".to_string(), "7.3".to_string()]).unwrap();
        assert_eq!(o.linux.as_deref(), Some("7.3"));
    }
}
