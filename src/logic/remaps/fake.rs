// SPDX-License-Identifier: GPL-2.0

//! What the tests of `remaps` and its children share: a spare in memory
//! with write faults (`Disk`), a loaded writer over it (`Fixture`), a
//! recorder of every metadata write and the crash images it leaves, and the
//! golden images' devices.

use super::*;
use crate::logic::format::{self, check_copy, Header, SECTOR};
use crate::logic::geometry::{validate, DeviceFacts};
use crate::logic::message::{Message, RemapMsg};
use crate::logic::table_line::Features;
use crate::HostEnv;
extern crate std;
use crate::logic::testing::{geo, MIB};
use std::string::String;
use std::vec::Vec;

/// A message for `Remaps::handle`; the control messages are the
/// target's, refused here.
pub(crate) fn parse<'a>(words: &'a [&'a str]) -> Result<RemapMsg<'a>, crate::logic::Refusal> {
    match crate::logic::message::parse(words)? {
        Message::Remaps(m) => Ok(m),
        Message::Control(_) => Err(crate::logic::Refusal::new(c"not a remap message")),
    }
}

/// Bytes of the spare the tests keep in memory: every metadata area
/// they lay out fits.
pub(crate) const TEST_AREA: usize = 8 << 20;

/// The metadata area in memory, with an optional write fault.
#[derive(Clone)]
pub(crate) struct Disk {
    pub(crate) data: Vec<u8>,
    /// Writes that succeed before every further write fails.
    pub(crate) writes_left: Option<usize>,
    /// Writes done: (first sector, sectors).
    pub(crate) log: Vec<(u64, usize)>,
}

impl Disk {
    pub(crate) fn new() -> Self {
        Self {
            data: std::vec![0u8; TEST_AREA],
            writes_left: None,
            log: Vec::new(),
        }
    }
}

impl MetaIo for Disk {
    fn read(&mut self, sector: u64, buf: &mut [u8]) -> Result<(), ()> {
        // The spare is 64 MiB; what was never written reads as zeros.
        let at = sector as usize * SECTOR;
        if at + buf.len() > (64 * MIB) as usize * SECTOR {
            return Err(());
        }
        buf.fill(0);
        let have = self.data.len().saturating_sub(at).min(buf.len());
        if have > 0 {
            buf[..have].copy_from_slice(&self.data[at..at + have]);
        }
        Ok(())
    }
    fn write(&mut self, sector: u64, buf: &[u8], _durable: bool) -> Result<(), ()> {
        if let Some(n) = self.writes_left.as_mut() {
            if *n == 0 {
                return Err(());
            }
            *n -= 1;
        }
        let at = sector as usize * SECTOR;
        if self.data.len() < at + buf.len() {
            self.data.resize(at + buf.len(), 0);
        }
        self.data[at..at + buf.len()].copy_from_slice(buf);
        self.log.push((sector, buf.len() / SECTOR));
        Ok(())
    }
}

/// Checks that every copy on `disk` is valid; returns their headers.
pub(crate) fn all_copies_valid(disk: &mut Disk, layout: &Layout, what: &str) -> Vec<Header> {
    (0..layout.copies)
        .map(|i| {
            let at = layout.copy_start(i);
            let mut buf = std::vec![0u8; layout.copy_bytes()];
            disk.read(at, &mut buf).unwrap();
            check_copy(&buf, at, layout.area_sectors(), 131072, crc32fast::hash)
                .unwrap_or_else(|d| panic!("{what}: copy {i}: {d}"))
        })
        .collect()
}

/// The layout a target of geometry `g` on a 64 MiB spare finds (or
/// plans) with `copies` on its table line.
pub(crate) fn test_layout(io: &mut dyn MetaIo, g: &Geometry, copies: u32) -> Layout {
    try_layout(io, g, copies).unwrap()
}

pub(crate) fn try_layout(
    io: &mut dyn MetaIo,
    g: &Geometry,
    copies: u32,
) -> Result<Layout, LoadError> {
    let req = LayoutRequest {
        copies,
        max_slots: format::DEFAULT_MAX_SLOTS,
        format: false,
    };
    find_layout::<HostEnv>(io, g, 64 * MIB, &req, crc32fast::hash)
}

pub(crate) struct Fixture {
    pub(crate) t: RemapTable<HostEnv>,
    pub(crate) r: Remaps<HostEnv>,
    pub(crate) disk: Disk,
    pub(crate) events: Vec<Event>,
}

pub(crate) fn pair(bs: Option<u32>) -> Identity {
    Identity {
        uuid: [0; 16],
        main_sectors: 64 * MIB,
        spare_sectors: 64 * MIB,
        block_size: bs.unwrap_or(512),
    }
}

impl Fixture {
    pub(crate) fn new(bs: Option<u32>) -> Self {
        Self::on(bs, Disk::new()).unwrap()
    }

    /// A target on a blank spare formatted as version 2, by the code
    /// that writes version 2 (as dm-remap 0.4 did).
    pub(crate) fn v2(bs: Option<u32>) -> Self {
        Self::v2_with(bs, 5)
    }

    /// [`Fixture::v2`] with `copies` copies.
    pub(crate) fn v2_with(bs: Option<u32>, copies: u32) -> Self {
        let g = geo(bs);
        let mut disk = Disk::new();
        let layout = Layout::new(copies, 4096, 4096, g.spare_data_blocks).unwrap();
        let (t, mut r) = Remaps::new(g, layout, pair(bs), crc32fast::hash).unwrap();
        let mut events = Vec::new();
        r.load(&t, &mut disk, false, [9; 16], &mut |e| events.push(e))
            .unwrap();
        Self { t, r, disk, events }
    }

    /// A target loading the metadata already on `disk`.
    pub(crate) fn on(bs: Option<u32>, mut disk: Disk) -> Result<Self, LoadError> {
        let g = geo(bs);
        let layout = try_layout(&mut disk, &g, 5)?;
        let (t, mut r) = Remaps::new(g, layout, pair(bs), crc32fast::hash).unwrap();
        let mut events = Vec::new();
        r.load(&t, &mut disk, false, [9; 16], &mut |e| events.push(e))?;
        Ok(Self { t, r, disk, events })
    }

    pub(crate) fn msg(&mut self, line: &str) -> Result<String, String> {
        let words: Vec<&str> = line.split_whitespace().collect();
        let m = parse(&words).map_err(|e| String::from(e.as_str()))?;
        let mut out = String::new();
        let events = &mut self.events;
        self.r
            .handle(&self.t, &mut self.disk, m, &mut out, &mut |e| {
                events.push(e)
            })
            .map_err(|e| std::format!("{e}"))?;
        Ok(out)
    }

    pub(crate) fn state(&mut self) -> (String, String) {
        (
            self.msg("list 0 10000").unwrap(),
            self.msg("count").unwrap(),
        )
    }
}

/// Forwards to a [`Disk`] and notes whether main block `block` was
/// visible in the table while any metadata write was issued.
pub(crate) struct Spy<'a> {
    pub(crate) disk: &'a mut Disk,
    pub(crate) t: &'a RemapTable<HostEnv>,
    pub(crate) block: u64,
    pub(crate) seen: bool,
}

impl MetaIo for Spy<'_> {
    fn read(&mut self, sector: u64, buf: &mut [u8]) -> Result<(), ()> {
        self.disk.read(sector, buf)
    }
    fn write(&mut self, sector: u64, buf: &[u8], durable: bool) -> Result<(), ()> {
        self.seen |= self.t.lookup(self.block).is_some();
        self.disk.write(sector, buf, durable)
    }
}

/// A spare formatted with `copies` copies, 4096-byte blocks and main
/// block 100 remapped; its layout and the pool block of block 100.
pub(crate) fn one_remap_with_copies(copies: u32) -> (Disk, Layout, Option<u64>) {
    let g = geo(Some(4096));
    let mut disk = Disk::new();
    let layout = test_layout(&mut disk, &g, copies);
    let (t, mut r) = Remaps::<HostEnv>::new(g, layout, pair(Some(4096)), crc32fast::hash).unwrap();
    r.load(&t, &mut disk, false, [9; 16], &mut |_| {}).unwrap();
    let m = parse(&["add_remap", "800", "auto"]).unwrap();
    r.handle(&t, &mut disk, m, &mut String::new(), &mut |_| {})
        .unwrap();
    (disk, layout, t.lookup(100))
}

/// Loads `d` with `layout` and the `format` feature; the table and what
/// the load reported.
pub(crate) fn load_asking_format(
    d: &mut Disk,
    layout: Layout,
) -> (RemapTable<HostEnv>, Vec<Event>) {
    let g = geo(Some(4096));
    let (t, mut r) = Remaps::<HostEnv>::new(g, layout, pair(Some(4096)), crc32fast::hash).unwrap();
    let mut events = Vec::new();
    r.load(&t, d, true, [7; 16], &mut |e| events.push(e))
        .unwrap();
    (t, events)
}

/// Forwards to a [`Disk`], counting reads and failing every read that
/// covers sector `bad`.
pub(crate) struct BadSector<'a> {
    pub(crate) disk: &'a mut Disk,
    pub(crate) bad: Option<u64>,
    pub(crate) reads: usize,
}

impl MetaIo for BadSector<'_> {
    fn read(&mut self, sector: u64, buf: &mut [u8]) -> Result<(), ()> {
        self.reads += 1;
        let end = sector + (buf.len() / SECTOR) as u64;
        if self.bad.is_some_and(|b| (sector..end).contains(&b)) {
            return Err(());
        }
        self.disk.read(sector, buf)
    }
    fn write(&mut self, sector: u64, buf: &[u8], durable: bool) -> Result<(), ()> {
        self.disk.write(sector, buf, durable)
    }
}

/// Every write a metadata operation issues, in order: (sector, data,
/// durable), where durable means PREFLUSH + FUA.
#[derive(Clone, Default)]
pub(crate) struct Recorder {
    pub(crate) image: Vec<u8>,
    pub(crate) writes: Vec<(u64, Vec<u8>, bool)>,
}

impl MetaIo for Recorder {
    fn read(&mut self, sector: u64, buf: &mut [u8]) -> Result<(), ()> {
        let mut d = Disk {
            data: core::mem::take(&mut self.image),
            writes_left: None,
            log: Vec::new(),
        };
        let r = d.read(sector, buf);
        self.image = d.data;
        r
    }
    fn write(&mut self, sector: u64, buf: &[u8], durable: bool) -> Result<(), ()> {
        let at = sector as usize * SECTOR;
        self.image[at..at + buf.len()].copy_from_slice(buf);
        self.writes.push((sector, buf.to_vec(), durable));
        Ok(())
    }
}

/// What a write that was not yet durable left on the media at the crash.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Fate {
    Lost,
    Whole,
    /// Its first n sectors (a write torn at a sector boundary).
    Prefix(usize),
}

/// The states a crash can leave after `writes[..done]` completed, with
/// `writes[done]` (if any) in flight: everything up to the last durable
/// write that completed is on the media; each later write, the one in
/// flight included, may be lost, whole or torn at any sector boundary.
/// Calls `check` with each image (exhaustively up to `limit` images per
/// crash point, then a sample from `seed`); returns how many.
pub(crate) fn crash_images(
    base: &[u8],
    writes: &[(u64, Vec<u8>, bool)],
    done: usize,
    limit: usize,
    seed: u64,
    check: &mut dyn FnMut(&[u8], &str),
) -> usize {
    let durable_end = writes[..done]
        .iter()
        .rposition(|w| w.2)
        .map_or(0, |i| i + 1);
    let open = durable_end..(done + 1).min(writes.len());
    let fates_of = |w: &(u64, Vec<u8>, bool)| {
        let n = w.1.len() / SECTOR;
        let mut f = std::vec![Fate::Lost, Fate::Whole];
        f.extend((1..n).map(Fate::Prefix));
        f
    };
    let choices: Vec<Vec<Fate>> = writes[open.clone()].iter().map(fates_of).collect();
    let total: usize = choices.iter().map(|c| c.len()).product();
    let mut image = base.to_vec();
    for w in &writes[..durable_end] {
        let at = w.0 as usize * SECTOR;
        image[at..at + w.1.len()].copy_from_slice(&w.1);
    }
    let mut rng = crate::logic::TestRng(seed | 1);
    let mut next = |m: usize| rng.below(m as u64) as usize;
    let count = total.min(limit);
    let mut img = image.clone();
    for n in 0..count {
        let mut pick = if total <= limit { n } else { next(total) };
        let mut what = std::format!("after write {done} of {}", writes.len());
        for (w, c) in writes[open.clone()].iter().zip(&choices) {
            let fate = c[pick % c.len()];
            pick /= c.len();
            let at = w.0 as usize * SECTOR;
            let len = match fate {
                Fate::Lost => 0,
                Fate::Whole => w.1.len(),
                Fate::Prefix(k) => k * SECTOR,
            };
            img[at..at + len].copy_from_slice(&w.1[..len]);
            what.push_str(&std::format!(", sector {} {fate:?}", w.0));
        }
        check(&img, &what);
        // Back to the durable image for the next case.
        for w in &writes[open.clone()] {
            let at = w.0 as usize * SECTOR;
            img[at..at + w.1.len()].copy_from_slice(&image[at..at + w.1.len()]);
        }
    }
    count
}

/// The state a load of `image` gives: remaps, count, pending, retired.
pub(crate) fn loaded_state(image: &[u8], what: &str) -> (String, String, Vec<u64>, u64) {
    loaded_state_bs(image, Some(4096), what)
}

/// [`loaded_state`] for blocks of `bs`.
pub(crate) fn loaded_state_bs(
    image: &[u8],
    bs: Option<u32>,
    what: &str,
) -> (String, String, Vec<u64>, u64) {
    let disk = Disk {
        data: image.to_vec(),
        writes_left: None,
        log: Vec::new(),
    };
    let mut f =
        Fixture::on(bs, disk).unwrap_or_else(|e| panic!("{what}: the spare does not load: {e:?}"));
    let (l, c) = f.state();
    let layout = f.r.meta.layout;
    all_copies_valid(&mut f.disk, &layout, what);
    (l, c, f.r.pending().to_vec(), f.r.retired())
}

/// Runs `op` (named `name`) on `f` with its writes recorded, then loads
/// every image a crash at every point of it can leave (see
/// [`crash_images`]): what loads must be the state before or after; after
/// the last write (the operation has answered), the state after, in the
/// format version the operation left in memory. Returns the number of
/// images.
pub(crate) fn crash_cases(name: &str, mut f: Fixture, op: Op, seed: u64) -> usize {
    let bs = Some(f.r.geo.block_size).filter(|&b| b != 512);
    let loaded_state = |image: &[u8], what: &str| loaded_state_bs(image, bs, what);
    let mut cases = 0;
    let base = f.disk.data.clone();
    let old = loaded_state(&base, name);
    let mut rec = Recorder {
        image: base.clone(),
        writes: Vec::new(),
    };
    if name == "scanner check" {
        // The damage is there before the check starts.
        let at = f.r.meta.layout.copy_start(3) as usize * SECTOR + 100;
        rec.image[at] ^= 0xff;
    }
    let start = rec.image.clone();
    assert!(op(&mut f, &mut rec), "{name} failed");
    let new = loaded_state(&rec.image, name);
    let writes = rec.writes.clone();
    assert!(!writes.is_empty(), "{name} wrote nothing");
    cases += every_crash(&start, &writes, seed, &mut |img, what, answered| {
        let st = loaded_state(img, &std::format!("{name}: {what}"));
        if answered {
            assert_eq!(
                st, new,
                "{name}: {what}: the answered change is not what loads"
            );
        } else {
            assert!(
                st == old || st == new,
                "{name}: {what}: neither old nor new: {st:?}"
            );
        }
    });
    std::println!("{name}: {} writes, {cases} crash images", writes.len());
    let version = f.r.meta.layout.version;
    assert_eq!(loaded_version(&rec.image, bs), version, "{name}");
    cases
}

/// Calls `check` with every image a crash at every point of `writes` (made
/// on `start`) can leave ([`crash_images`], up to 256 per point, sampled
/// with `seed`), what the crash was, and whether it came after the last
/// write (the operation had answered). Returns the number of images.
pub(crate) fn every_crash(
    start: &[u8],
    writes: &[(u64, Vec<u8>, bool)],
    seed: u64,
    check: &mut dyn FnMut(&[u8], &str, bool),
) -> usize {
    (0..=writes.len())
        .map(|done| {
            crash_images(
                start,
                writes,
                done,
                256,
                seed ^ done as u64,
                &mut |img, what| check(img, what, done == writes.len()),
            )
        })
        .sum()
}

/// An operation of the crash enumeration: true if it reported success.
pub(crate) type Op = fn(&mut Fixture, &mut Recorder) -> bool;

/// The format version of the copy a load of `image` takes.
pub(crate) fn loaded_version(image: &[u8], bs: Option<u32>) -> u32 {
    let disk = Disk {
        data: image.to_vec(),
        writes_left: None,
        log: Vec::new(),
    };
    Fixture::on(bs, disk).unwrap().r.meta.layout.version
}

/// The seed of the crash enumerations' samples.
pub(crate) const CRASH_SEED: u64 = 0x5eed_d15c;

/// How many version-2 headers converting a version-2 spare of `copies`
/// copies (blocks of `bs`) leaves outside what the new copies write, to
/// be zeroed; 0 when it is refused.
pub(crate) fn leftover_v2_headers(bs: Option<u32>, copies: u32) -> usize {
    let mut f = Fixture::v2_with(bs, copies);
    let v2 = f.r.meta.layout;
    if f.msg("convert_metadata").is_err() {
        return 0;
    }
    let l = f.r.meta.layout;
    let written = (l.pending_offset() + f.r.pending_units(true)) * format::UNIT_SECTORS;
    (0..v2.copies)
        .filter(|&i| {
            let at = v2.copy_start(i);
            !(0..l.copies).any(|j| (l.copy_start(j)..l.copy_start(j) + written).contains(&at))
        })
        .count()
}

/// Runs message `line` on `f` with its metadata writes going to `io`.
pub(crate) fn msg_on(f: &mut Fixture, io: &mut Recorder, line: &str) -> bool {
    let words: Vec<&str> = line.split_whitespace().collect();
    let m = parse(&words).unwrap();
    f.r.handle(&f.t, io, m, &mut String::new(), &mut |_| {})
        .is_ok()
}

/// The state of `f` and the format version it has in memory.
pub(crate) fn versioned(f: &mut Fixture) -> ((String, String), u32) {
    (f.state(), f.r.meta.layout.version)
}

/// The geometry of a target over all of a `main`-sector main and a
/// `spare`-sector spare (512-byte logical blocks), with 4096-byte blocks.
pub(crate) fn geometry_4k(main: u64, spare: u64) -> Geometry {
    let d = |dev, sectors| DeviceFacts {
        dev,
        whole: dev,
        sectors,
        logical_block_size: 512,
    };
    let features = Features {
        block_size: Some(4096),
        ..Features::default()
    };
    validate(main, &d(1, main), &d(2, spare), &features).unwrap()
}

/// The devices of the golden images: a 32 MiB main and a 16 MiB spare
/// with 4096-byte blocks.
pub(crate) fn golden_pair() -> (Geometry, Identity) {
    let g = geometry_4k(65536, 32768);
    let id = Identity {
        uuid: [0; 16],
        main_sectors: 65536,
        spare_sectors: 32768,
        block_size: 4096,
    };
    (g, id)
}

/// Checks that the gzip file `path` holds `image`; with `env` set, writes
/// it first.
pub(crate) fn golden_image(image: &[u8], path: &str, env: &str) {
    if std::env::var_os(env).is_some() {
        let raw = std::env::temp_dir().join(std::format!("golden-{}.img", std::process::id()));
        std::fs::write(&raw, image).unwrap();
        let gz = std::process::Command::new("gzip")
            .args(["-9", "-n", "-c"])
            .arg(&raw)
            .output()
            .unwrap();
        std::fs::write(path, gz.stdout).unwrap();
        std::fs::remove_file(&raw).unwrap();
    }
    let out = std::process::Command::new("gzip")
        .args(["-d", "-c", path])
        .output()
        .expect("gzip");
    assert!(out.status.success(), "{path}");
    assert!(out.stdout == image, "{path} is not what the code writes");
}

#[allow(clippy::type_complexity)]
/// A pair of a `main`-sector main and a `spare`-sector spare, 4096-byte
/// blocks, `copies` copies (if formatted), loaded from `disk`.
pub(crate) fn open_with(
    main: u64,
    spare: u64,
    copies: u32,
    format: bool,
    disk: &mut dyn MetaIo,
) -> Result<(RemapTable<HostEnv>, Remaps<HostEnv>, Vec<Event>, Layout), LoadError> {
    let g = geometry_4k(main, spare);
    let req = LayoutRequest {
        copies,
        max_slots: format::DEFAULT_MAX_SLOTS,
        format,
    };
    let layout = find_layout::<HostEnv>(disk, &g, spare, &req, crc32fast::hash)?;
    let mut id = pair(Some(4096));
    id.main_sectors = main;
    id.spare_sectors = spare;
    let (t, mut r) = Remaps::<HostEnv>::new(g, layout, id, crc32fast::hash).unwrap();
    let mut events = Vec::new();
    r.load(&t, disk, format, [7; 16], &mut |e| events.push(e))?;
    Ok((t, r, events, layout))
}
