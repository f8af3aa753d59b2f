//! The guest test suite on several guests at once.
//!
//! Every guest boots the same kernel and image and asks the host for its next
//! test over a control port (a second serial port on a UNIX socket, see
//! `scripts/guest/guest-tests.sh`); the host hands out the tests from one queue,
//! longest first (by the times of earlier runs), so the guests finish close
//! together. Each guest checks its own kernel log per test and runs its own
//! kmemleak scan at the end; the host merges the scans into one result.
//!
//! A guest that stops without finishing (panic, time limit) fails the test it
//! was running, and another guest is booted for the tests still queued.
//!
//! A test that measures speed has a line `# dmr-guest: icount` in its header
//! comment: it
//! runs on a guest under `-icount shift=1,sleep=off`, whose clock counts the
//! guest's instructions (2 ns each), so what the other guests do to the
//! host's CPUs does not change its figures. That guest runs only such tests:
//! instruction counting runs the guest's two vCPUs on one host thread, about
//! 1.5 times slower than the plain guests for the same work. (Shift 1, not
//! the benchmark's 0: such tests run for fixed guest seconds, which then take
//! half the instructions; the emulated CPU is slower, so background work
//! weighs twice as much against the foreground.)

use std::collections::{BTreeMap, VecDeque};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Result of one test (or of the merged kmemleak check).
#[derive(Clone, Debug)]
pub struct Outcome {
    pub name: String,
    pub pass: bool,
    pub secs: String,
    pub reason: String,
    /// Wall-clock seconds on the host, from handing the test out to its
    /// result (the guest's own clock runs slow under icount).
    pub wall: Option<u64>,
}

/// A guest test.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Test {
    pub name: String,
    /// Needs an instruction-counted guest.
    pub icount: bool,
}

/// The instruction-counted guest's `-icount shift` (2^shift ns per
/// instruction).
const ICOUNT_SHIFT: u32 = 1;

/// What a test's header comment (its leading `#` lines) asks of the runner.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Header {
    /// `# dmr-guest: icount`: an instruction-counted guest.
    pub icount: bool,
    /// `# dmr-needs: CONFIG_A CONFIG_B` (any number of such lines): the
    /// kernel options the test needs.
    pub needs: Vec<String>,
}

/// Reads the runner's markers from a test's header comment.
pub fn header(text: &str) -> Header {
    let mut h = Header::default();
    for l in text.lines().take_while(|l| l.starts_with('#')) {
        if l.trim_end() == "# dmr-guest: icount" {
            h.icount = true;
        } else if let Some(n) = l.strip_prefix("# dmr-needs:") {
            h.needs.extend(n.split_whitespace().map(str::to_string));
        }
    }
    h
}

/// The options a kernel's `.config` turns on (built in or as a module).
pub fn enabled_options(config: &str) -> std::collections::BTreeSet<String> {
    config
        .lines()
        .filter_map(|l| l.split_once('='))
        .filter(|(k, v)| k.starts_with("CONFIG_") && (*v == "y" || *v == "m"))
        .map(|(k, _)| k.to_string())
        .collect()
}

/// Of `needs`, the options `enabled` lacks.
pub fn missing(needs: &[String], enabled: &std::collections::BTreeSet<String>) -> Vec<String> {
    needs
        .iter()
        .filter(|n| !enabled.contains(*n))
        .cloned()
        .collect()
}

/// What the suite needs to boot a guest.
pub struct Plan<'a> {
    /// `scripts/host/run-guest.sh`.
    pub runner: &'a Path,
    pub kdir: &'a Path,
    pub image: &'a Path,
    /// Seconds after which a guest is killed.
    pub timeout: u64,
    /// Plain guests at once (an instruction-counted one comes on top while
    /// tests need it).
    pub jobs: usize,
    /// Where the control sockets go (private to this run).
    pub dir: &'a Path,
}

/// Totals of a suite run.
pub struct Report {
    pub outcomes: Vec<Outcome>,
    /// Tests that no guest ran (every guest stopped).
    pub not_run: Vec<String>,
    /// Guests that stopped without finishing.
    pub broken_guests: usize,
}

struct Shared {
    /// Tests for any guest.
    queue: VecDeque<String>,
    /// Tests for an instruction-counted guest.
    icount: VecDeque<String>,
    outcomes: Vec<Outcome>,
    broken_guests: usize,
    /// Guests booted so far (numbers them).
    booted: usize,
}

impl Shared {
    fn queue(&mut self, icount: bool) -> &mut VecDeque<String> {
        if icount {
            &mut self.icount
        } else {
            &mut self.queue
        }
    }

    /// The next test for a guest of that kind.
    fn next(&mut self, icount: bool) -> Option<String> {
        self.queue(icount).pop_front()
    }

    fn has_work(&mut self, icount: bool) -> bool {
        !self.queue(icount).is_empty()
    }
}

/// Runs `tests` (in this order of priority) on up to `plan.jobs` guests, one
/// of them instruction-counted when some test needs it.
pub fn run(plan: &Plan, tests: Vec<Test>) -> Report {
    let (counted, plain): (Vec<Test>, Vec<Test>) = tests.into_iter().partition(|t| t.icount);
    let with_icount = !counted.is_empty();
    // Plain guests (at least one, for the leak check when no test is
    // selected), then the instruction-counted one.
    let plain_slots = if plain.is_empty() && with_icount {
        0
    } else {
        plan.jobs.clamp(1, plain.len().max(1))
    };
    let shared = Arc::new(Mutex::new(Shared {
        queue: plain.into_iter().map(|t| t.name).collect(),
        icount: counted.into_iter().map(|t| t.name).collect(),
        outcomes: Vec::new(),
        broken_guests: 0,
        booted: 0,
    }));
    std::thread::scope(|s| {
        for i in 0..plain_slots + usize::from(with_icount) {
            let shared = Arc::clone(&shared);
            let icount = i == plain_slots;
            s.spawn(move || slot(plan, &shared, icount));
        }
    });
    let sh = Arc::try_unwrap(shared)
        .ok()
        .expect("every guest thread has ended")
        .into_inner()
        .unwrap_or_else(|e| e.into_inner());
    Report {
        outcomes: sh.outcomes,
        not_run: sh.icount.into_iter().chain(sh.queue).collect(),
        broken_guests: sh.broken_guests,
    }
}

/// One place for a guest: boots a guest, and another while tests are queued
/// and the previous guest stopped without finishing (at most one replacement
/// per slot, so a kernel that cannot boot does not loop).
fn slot(plan: &Plan, shared: &Arc<Mutex<Shared>>, icount: bool) {
    let mut replacements = 1;
    let mut first = true;
    loop {
        let n = {
            let mut sh = lock(shared);
            if !first && !sh.has_work(icount) {
                return;
            }
            sh.booted += 1;
            sh.booted
        };
        first = false;
        match guest(plan, shared, n, icount) {
            Ok(true) => return,
            Ok(false) | Err(_) if replacements > 0 => {
                lock(shared).broken_guests += 1;
                replacements -= 1;
            }
            Ok(false) | Err(_) => {
                lock(shared).broken_guests += 1;
                return;
            }
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The test a guest is running, as far as the host knows, and since when.
type Current = Arc<Mutex<Option<(String, Instant)>>>;

/// Boots guest `n` and serves it tests until it stops. Returns whether it
/// finished (printed its summary).
fn guest(
    plan: &Plan,
    shared: &Arc<Mutex<Shared>>,
    n: usize,
    icount: bool,
) -> std::io::Result<bool> {
    let sock = plan.dir.join(format!("ctl-{n}.sock"));
    let _ = std::fs::remove_file(&sock);
    if icount {
        eprintln!("[xtask] guest {n} is instruction-counted (-icount shift={ICOUNT_SHIFT})");
    }
    let mut child = Command::new("bash")
        .arg(plan.runner)
        .args(icount.then(|| format!("--icount={ICOUNT_SHIFT}")))
        .args(["--timeout", &plan.timeout.to_string()])
        .arg("--control")
        .arg(&sock)
        .arg(plan.kdir)
        .arg(plan.image)
        .stdout(Stdio::piped())
        .stdin(Stdio::null())
        .spawn()?;
    let stdout = child.stdout.take().ok_or(std::io::ErrorKind::BrokenPipe)?;
    let current: Current = Arc::default();
    let finished = std::thread::scope(|s| {
        let reader = {
            let current = Arc::clone(&current);
            s.spawn(move || console(stdout, shared, &current, n))
        };
        match connect(&sock, &mut child) {
            Some(stream) => serve(stream, shared, &current, icount),
            // QEMU waits for the client before it starts the guest; one
            // that never listens is ended: `timeout` passes TERM on to it.
            None => {
                let _ = Command::new("pkill")
                    .args(["-TERM", "-P", &child.id().to_string()])
                    .status();
                let _ = child.kill();
            }
        }
        reader.join().unwrap_or(false)
    });
    let status = child.wait()?;
    let _ = std::fs::remove_file(&sock);
    if !finished {
        let running = lock(&current).take().map(|(name, _)| name);
        let what = match status.code() {
            Some(124) => "timed out".to_string(),
            Some(c) => format!("stopped (exit status {c})"),
            None => "was killed".to_string(),
        };
        // The test it was running fails; a guest that stopped between tests
        // (booting, or in its leak check) fails under its own name, so that
        // the closing count shows every failure.
        let (name, reason) = match running {
            Some(name) => (
                name,
                format!("guest {n} {what} during this test; console tail above"),
            ),
            None => (
                format!("guest-{n}"),
                format!("guest {n} {what} between tests; console tail above"),
            ),
        };
        println!("FAIL {name} (guest {n}): {reason}");
        lock(shared).outcomes.push(Outcome {
            name,
            pass: false,
            secs: "?".into(),
            reason,
            wall: None,
        });
    }
    Ok(finished)
}

/// Connects to the guest's control socket once QEMU listens on it.
fn connect(sock: &Path, child: &mut Child) -> Option<UnixStream> {
    let start = Instant::now();
    loop {
        if let Ok(s) = UnixStream::connect(sock) {
            return Some(s);
        }
        if !matches!(child.try_wait(), Ok(None)) || start.elapsed() > Duration::from_secs(120) {
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Answers the guest's requests for tests until it closes the port.
fn serve(stream: UnixStream, shared: &Mutex<Shared>, current: &Current, icount: bool) {
    let Ok(mut out) = stream.try_clone() else {
        return;
    };
    for line in BufReader::new(stream).lines() {
        let Ok(line) = line else { return };
        if line.trim() != "NEXT" {
            continue;
        }
        let next = lock(shared).next(icount);
        let answer = next.clone().unwrap_or_else(|| "DONE".into());
        *lock(current) = next.map(|name| (name, Instant::now()));
        if writeln!(out, "{answer}").is_err() {
            return;
        }
    }
}

/// Reads a guest's console: prints each result with the lines that follow it
/// as one block, records the outcomes. Returns whether the summary came.
fn console(
    stdout: impl std::io::Read,
    shared: &Mutex<Shared>,
    current: &Current,
    n: usize,
) -> bool {
    let mut block: Vec<String> = Vec::new();
    let flush = |block: &mut Vec<String>| {
        if !block.is_empty() {
            let text = block.join("\n");
            let _sh = lock(shared);
            println!("{text}");
            block.clear();
        }
    };
    let mut finished = false;
    for line in BufReader::new(stdout).split(b'\n') {
        let Ok(line) = line else { break };
        let line = String::from_utf8_lossy(&line).into_owned();
        if let Some(r) = line.strip_prefix("DMR-RESULT ") {
            flush(&mut block);
            let mut f = r.splitn(4, ' ');
            let mut o = Outcome {
                pass: f.next() == Some("PASS"),
                name: f.next().unwrap_or("?").to_string(),
                secs: f.next().unwrap_or("?").to_string(),
                reason: f.next().unwrap_or("").to_string(),
                wall: None,
            };
            {
                let mut cur = lock(current);
                if let Some((name, since)) = cur.as_ref() {
                    if *name == o.name {
                        o.wall = Some(since.elapsed().as_secs());
                        *cur = None;
                    }
                }
            }
            block.push(if o.pass {
                format!("PASS {} ({} s, guest {n})", o.name, o.secs)
            } else {
                format!("FAIL {} ({} s, guest {n}): {}", o.name, o.secs, o.reason)
            });
            lock(shared).outcomes.push(o);
        } else if line.starts_with("DMR-SUMMARY ") {
            finished = true;
        } else {
            block.push(line);
        }
    }
    flush(&mut block);
    finished
}

/// Merges the kmemleak results of the guests into one: it passes when every
/// guest that scanned found nothing.
pub fn merge_kmemleak(outcomes: Vec<Outcome>) -> Vec<Outcome> {
    let (leak, mut rest): (Vec<_>, Vec<_>) =
        outcomes.into_iter().partition(|o| o.name == "kmemleak");
    if let Some(first) = leak.first() {
        let failed: Vec<&Outcome> = leak.iter().filter(|o| !o.pass).collect();
        rest.push(Outcome {
            name: first.name.clone(),
            pass: failed.is_empty(),
            secs: leak
                .iter()
                .filter_map(|o| o.secs.parse::<u64>().ok())
                .max()
                .map_or("?".into(), |s| s.to_string()),
            reason: failed.first().map_or(String::new(), |o| o.reason.clone()),
            wall: None,
        });
    }
    rest
}

/// Seconds each test took in earlier runs: the committed `tests/durations`,
/// overridden by what the last runs on this machine measured.
pub fn durations(files: &[&Path]) -> BTreeMap<String, u64> {
    let mut d = BTreeMap::new();
    for f in files {
        if let Ok(text) = std::fs::read_to_string(f) {
            d.extend(parse_durations(&text));
        }
    }
    d
}

fn parse_durations(text: &str) -> impl Iterator<Item = (String, u64)> + '_ {
    text.lines().filter_map(|l| {
        let mut f = l.split_whitespace();
        let name = f.next().filter(|n| !n.starts_with('#'))?;
        let secs = f.next()?.parse().ok()?;
        Some((name.to_string(), secs))
    })
}

/// Writes `d` in the format `durations` reads.
pub fn format_durations(d: &BTreeMap<String, u64>) -> String {
    d.iter().map(|(n, s)| format!("{n} {s}\n")).collect()
}

/// Orders tests longest first; a test without a known time goes first (it
/// may be long), then by name.
pub fn order(mut tests: Vec<String>, known: &BTreeMap<String, u64>) -> Vec<String> {
    tests.sort_by(|a, b| {
        let (sa, sb) = (
            known.get(a).copied().unwrap_or(u64::MAX),
            known.get(b).copied().unwrap_or(u64::MAX),
        );
        sb.cmp(&sa).then_with(|| a.cmp(b))
    });
    tests
}

#[cfg(test)]
mod tests {
    use super::*;

    fn o(name: &str, pass: bool, secs: &str) -> Outcome {
        Outcome {
            name: name.into(),
            pass,
            secs: secs.into(),
            reason: if pass { "" } else { "kmemleak reports leaks" }.into(),
            wall: None,
        }
    }

    #[test]
    fn kmemleak_results_merge_into_one() {
        let m = merge_kmemleak(vec![
            o("kmemleak", true, "8"),
            o("01-a", true, "3"),
            o("kmemleak", true, "9"),
        ]);
        assert_eq!(m.len(), 2);
        assert!(m[1].pass && m[1].secs == "9");
        let m = merge_kmemleak(vec![o("kmemleak", true, "8"), o("kmemleak", false, "7")]);
        assert_eq!(m.len(), 1);
        assert!(!m[0].pass);
        assert_eq!(m[0].reason, "kmemleak reports leaks");
        assert_eq!(merge_kmemleak(vec![o("01-a", false, "1")]).len(), 1);
    }

    #[test]
    fn icount_marker_in_the_header_only() {
        assert!(header("# A test.\n# dmr-guest: icount\n. /tests/lib.sh\n").icount);
        assert!(!header("# A test.\n. /tests/lib.sh\n# dmr-guest: icount\n").icount);
        assert!(!header("# dmr-guest: icountx\n").icount);
    }

    #[test]
    fn needs_come_from_the_header_and_the_config() {
        let t = "# A test.\n# dmr-needs: CONFIG_DM_DUST\n# dmr-needs: CONFIG_A CONFIG_B\n\
                 . /tests/lib.sh\n# dmr-needs: CONFIG_LATE\n";
        assert_eq!(header(t).needs, ["CONFIG_DM_DUST", "CONFIG_A", "CONFIG_B"]);
        assert!(header("# dmr-needs:\n. /tests/lib.sh\n").needs.is_empty());
        let on = enabled_options(
            "CONFIG_A=y\nCONFIG_B=m\n# CONFIG_DM_DUST is not set\nCONFIG_C=\"x\"\nCONFIG_D=n\n",
        );
        assert_eq!(on.iter().collect::<Vec<_>>(), ["CONFIG_A", "CONFIG_B"]);
        assert_eq!(missing(&header(t).needs, &on), ["CONFIG_DM_DUST"]);
    }

    #[test]
    fn each_kind_of_guest_takes_its_own_tests() {
        let mut sh = Shared {
            queue: ["a".to_string()].into(),
            icount: ["b".to_string()].into(),
            outcomes: Vec::new(),
            broken_guests: 0,
            booted: 0,
        };
        assert!(sh.has_work(false) && sh.has_work(true));
        assert_eq!(sh.next(true).as_deref(), Some("b"));
        assert_eq!(sh.next(true), None);
        assert!(!sh.has_work(true) && sh.has_work(false));
        assert_eq!(sh.next(false).as_deref(), Some("a"));
        assert!(!sh.has_work(false));
    }

    #[test]
    fn longest_first_unknown_before_all() {
        let known = parse_durations("# name seconds\n01-a 5\n02-b 50\n03-c 5\nbad\n04-d x\n")
            .collect::<BTreeMap<_, _>>();
        assert_eq!(known.len(), 3);
        let t = ["01-a", "02-b", "03-c", "05-new"]
            .map(String::from)
            .to_vec();
        assert_eq!(order(t, &known), ["05-new", "02-b", "01-a", "03-c"]);
        let text = format_durations(&known);
        assert_eq!(parse_durations(&text).count(), 3);
    }
}
